//! Builds on real containers (root, busybox-static, the `swarm-runtime` binary built beside
//! the tests, as `scripts/test` does): instructions, the context rules, the cache, and errors.

use super::*;
use std::fs;
use std::time::Duration;
use swarm_runtime::spec::{resolve_process, ProcessOverrides, RootfsSpec};
use swarm_runtime::{ContainerSpec, RuntimeConfig};

struct Env {
    rt: Runtime,
    store: ImageStore,
    dir: tempfile::TempDir,
    cgroup: String,
}

impl Drop for Env {
    fn drop(&mut self) {
        for c in self.rt.list().unwrap_or_default() {
            let _ = self.rt.remove(&c.id, true);
        }
        if let Ok(h) = swarm_runtime::cgroup::detect() {
            let _ = swarm_runtime::cgroup::Cgroup::new(h, "", &self.cgroup).remove();
        }
    }
}

/// A runtime and an image store holding `busybox:test` (Debian's busybox-static).
fn env() -> Env {
    assert_eq!(euid(), 0, "builds need root (CI runs as root)");
    let helper = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("swarm-runtime"))
        .unwrap();
    assert!(
        helper.exists(),
        "{} is missing: build the binaries first (cargo build --workspace --bins; scripts/test does)",
        helper.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::create_dir_all(rootfs.join("etc")).unwrap();
    fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .expect("busybox-static must be installed (CI installs it)");
    for t in ["sh", "ls", "cat", "echo", "rm", "pwd", "test", "mkdir"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(t)).unwrap();
    }
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", &rootfs).unwrap();
    let store = ImageStore::open(dir.path().join("images")).unwrap();
    store
        .import_rootfs_tar(
            &b.into_inner().unwrap()[..],
            "busybox:test",
            Default::default(),
        )
        .unwrap();
    // One cgroup per test: tests run side by side, and dropping an Env removes its cgroup
    // (killing what runs in it).
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let cgroup = format!("swarm-build-test-{}-{seq}", std::process::id());
    let mut cfg = RuntimeConfig::new(dir.path().join("state"), cgroup.clone());
    cfg.helper_binary = Some(helper);
    let rt = Runtime::new(cfg).unwrap();
    Env {
        rt,
        store,
        dir,
        cgroup,
    }
}

/// The effective uid, from /proc (this crate has no unsafe code).
fn euid() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    uids.split_whitespace().nth(2).unwrap().parse().unwrap()
}

impl Env {
    fn builder(&self) -> Builder<'_> {
        Builder {
            network: None,
            fetch: None,
            rt: &self.rt,
            store: &self.store,
            dir: self.dir.path().join("build"),
        }
    }

    fn context(&self, files: &[(&str, &str)]) -> PathBuf {
        let c = self.dir.path().join("context");
        let _ = fs::remove_dir_all(&c);
        for (p, body) in files {
            let p = c.join(p);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, body).unwrap();
        }
        c
    }

    fn build(
        &self,
        context: &Path,
        dockerfile: &str,
        args: &[(&str, &str)],
    ) -> (Result<Digest, BuildError>, Vec<Event>) {
        let mut events = Vec::new();
        let req = Request {
            context: context.to_path_buf(),
            dockerfile: dockerfile.into(),
            dockerfile_name: "Dockerfile".into(),
            build_args: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            tags: vec!["app:1".into()],
            ..Default::default()
        };
        let r = self.builder().build(&req, &mut |e| events.push(e));
        (r, events)
    }

    /// Runs `sh -c script` in a container of `image` with the image's config; its output.
    fn run(&self, image: &str, script: &str) -> String {
        let p = self.store.prepare(image).unwrap();
        let o = ProcessOverrides {
            entrypoint: Some(vec!["sh".into(), "-c".into(), script.into()]),
            cmd: Some(vec![]),
            ..Default::default()
        };
        let spec = ContainerSpec::new(
            "check",
            RootfsSpec::Layers { lower: p.layers },
            resolve_process(&p.config, &o).unwrap(),
        );
        self.rt.create(spec).unwrap();
        self.rt.start("check").unwrap();
        self.rt
            .wait("check", Some(Duration::from_secs(30)))
            .unwrap();
        let out: String = self
            .rt
            .logs("check", None)
            .unwrap()
            .into_iter()
            .map(|e| e.log)
            .collect();
        self.rt.remove("check", true).unwrap();
        out
    }
}

const DOCKERFILE: &str = r#"ARG BASE=busybox:test
FROM ${BASE} AS base
ARG GREETING=hello
ENV APP=/app
WORKDIR $APP
COPY data.txt sub/ ./
RUN echo "$GREETING from run" > run.txt && rm /bin/ls
COPY --chmod=0600 <<EOF /app/here.txt
inline
EOF
EXPOSE 8080
LABEL stage=one
CMD ["cat", "/app/run.txt"]
"#;

fn files(data: &str) -> Vec<(&'static str, String)> {
    vec![
        ("data.txt", data.to_string()),
        ("sub/a.txt", "from sub\n".into()),
        ("secret.txt", "never copied\n".into()),
        (".dockerignore", "secret.txt\n".into()),
    ]
}

fn ctx(e: &Env, data: &str) -> PathBuf {
    let f = files(data);
    let v: Vec<(&str, &str)> = f.iter().map(|(p, b)| (*p, b.as_str())).collect();
    e.context(&v)
}

fn cached(events: &[Event]) -> usize {
    events.iter().filter(|e| **e == Event::Cached).count()
}

#[test]
fn a_dockerfile_builds_an_image_that_runs_with_what_its_steps_left() {
    let e = env();
    let c = ctx(&e, "data one\n");
    let (d1, events) = e.build(&c, DOCKERFILE, &[]);
    let d1 = d1.unwrap_or_else(|err| panic!("{err}\n{events:?}"));
    assert!(
        events.contains(&Event::Step {
            n: 1,
            total: 10,
            text: "FROM ${BASE} AS base".into()
        }),
        "{events:?}"
    );
    let out = e.run("app:1", "pwd; cat run.txt data.txt a.txt here.txt; ls /bin/ls 2>/dev/null || echo ls-gone; test -e secret.txt || echo no-secret; echo $APP");
    assert_eq!(
        out,
        "/app\nhello from run\ndata one\nfrom sub\ninline\nls-gone\nno-secret\n/app\n"
    );
    let cfg = e.store.config("app:1").unwrap();
    assert_eq!(
        cfg.cmd,
        Some(vec!["cat".to_string(), "/app/run.txt".into()])
    );
    assert!(cfg.exposed_ports.contains_key("8080/tcp"), "{cfg:?}");
    assert_eq!(cfg.labels.get("stage").map(String::as_str), Some("one"));
    assert_eq!(cfg.working_dir.as_deref(), Some("/app"));
    assert!(
        !cfg.env.iter().any(|v| v.starts_with("GREETING")),
        "build args stay out of the image: {cfg:?}"
    );

    // Nothing changed: every step after FROM from the cache, the same image.
    let (d2, events) = e.build(&c, DOCKERFILE, &[]);
    assert_eq!(d2.unwrap(), d1);
    assert_eq!(
        cached(&events),
        8,
        "ENV WORKDIR COPY RUN COPY EXPOSE LABEL CMD: {events:?}"
    );

    // One COPY input changed: the steps before it cached, it and the rest rebuilt.
    let c = ctx(&e, "data two\n");
    let (d3, events) = e.build(&c, DOCKERFILE, &[]);
    let d3 = d3.unwrap();
    assert_ne!(d3, d1);
    assert_eq!(cached(&events), 2, "ENV and WORKDIR only: {events:?}");
    assert_eq!(e.run("app:1", "cat data.txt"), "data two\n");

    // A build argument reaches RUN.
    let (_, _) = e.build(&c, DOCKERFILE, &[("GREETING", "hi")]);
    assert_eq!(e.run("app:1", "cat run.txt"), "hi from run\n");
}

#[test]
fn bad_steps_say_where_and_why() {
    let e = env();
    let c = ctx(&e, "x\n");
    let cases = [
        ("FROM busybox:test\nRUN false\n", "Dockerfile:2: the command [\"/bin/sh\", \"-c\", \"false\"] returned a non-zero code: 1"),
        ("FROM busybox:test\nCOPY ../outside /x\n", "Dockerfile:2: ../outside is outside the build context"),
        ("FROM busybox:test\nCOPY secret.txt /x\n", "Dockerfile:2: secret.txt: excluded by .dockerignore"),
        ("FROM busybox:test\nCOPY nothing-*.txt /x/\n", "Dockerfile:2: no source files were specified or matched"),
        ("FROM nosuch:1\n", "Dockerfile:1: image nosuch:1 is not on this node"),
        ("FROM busybox:test AS base\nFROM busybox:test\nCOPY --from=base /nothing /b\n", "Dockerfile:3: /nothing: not found in --from=base"),
        ("FROM busybox:test\nCOPY --from=nosuch:2 /a /b\n", "Dockerfile:2: --from=nosuch:2: no stage has that name and the image nosuch:2 is not on this node"),
        ("FROM busybox:test AS base\nFROM busybox:test\nCOPY --from=base ../../etc/x /b\n", "Dockerfile:3: ../../etc/x is outside --from=base"),
        ("FROM busybox:test\nCOPY --chown=nobody data.txt /x\n", "Dockerfile:2: --chown=nobody: no nobody in the image's /etc/passwd"),
        ("FROM busybox:test\nCOPY --chown=0:wheel data.txt /x\n", "Dockerfile:2: --chown=0:wheel: wheel is a name, and the image has no readable /etc/group"),
    ];
    for (df, want) in cases {
        let (r, events) = e.build(&c, df, &[]);
        let err = r.expect_err(df).to_string();
        assert!(
            err.contains(want),
            "{df:?}:\n got  {err}\n want {want}\n{events:?}"
        );
    }
    assert!(
        e.rt.list().unwrap().is_empty(),
        "a failed RUN leaves no container"
    );
}

const MULTI_STAGE: &str = r#"FROM busybox:test AS tools
RUN mkdir -p /out/deep && echo built > /out/deep/made.txt && ln -s /out/deep/made.txt /out/link
FROM scratch AS empty
FROM busybox:test
COPY --from=tools /out/deep/made.txt /app/
COPY --from=0 /out/link /app/via-link
COPY --from=tools /out /copied
COPY --from=busybox:test /etc/passwd /app/passwd
USER 1000
"#;

#[test]
fn copy_from_reads_an_earlier_stage_or_an_image_and_follows_links_inside_it() {
    let e = env();
    let c = e.context(&[("x", "x\n")]);
    let (d1, events) = e.build(&c, MULTI_STAGE, &[]);
    let d1 = d1.unwrap_or_else(|err| panic!("{err}\n{events:?}"));
    let out = e.run(
        "app:1",
        "cat /app/made.txt /app/via-link /copied/deep/made.txt; busybox readlink /copied/link; busybox head -c 4 /app/passwd; echo; busybox id -u",
    );
    assert_eq!(out, "built\nbuilt\nbuilt\n/out/deep/made.txt\nroot\n1000\n");
    // The stage's files are read from a view that is gone after the build.
    let left: Vec<_> = fs::read_dir(e.dir.path().join("build"))
        .unwrap()
        .flatten()
        .filter(|f| f.file_name().to_string_lossy().starts_with("view-"))
        .collect();
    assert!(left.is_empty(), "views left behind: {left:?}");
    let (d2, events) = e.build(&c, MULTI_STAGE, &[]);
    assert_eq!(d2.unwrap(), d1, "an unchanged multi-stage build is cached");
    assert_eq!(cached(&events), 6, "{events:?}");
}

#[test]
fn links_in_the_context_resolve_inside_it_never_to_host_files() {
    let e = env();
    let c = e.context(&[
        ("inside.txt", "inside\n"),
        ("etc/passwd", "context passwd\n"),
    ]);
    std::os::unix::fs::symlink("/etc/passwd", c.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("../../../../../etc/passwd", c.join("up-link")).unwrap();
    std::os::unix::fs::symlink("inside.txt", c.join("rel-link")).unwrap();
    std::os::unix::fs::symlink("/nothing/here", c.join("dangling")).unwrap();
    let df = "FROM busybox:test\nCOPY abs-link up-link rel-link /got/\nCOPY *-link /glob/\n";
    let (r, events) = e.build(&c, df, &[]);
    r.unwrap_or_else(|err| panic!("{err}\n{events:?}"));
    let out = e.run(
        "app:1",
        "cat /got/abs-link /got/up-link /got/rel-link /glob/abs-link",
    );
    assert_eq!(
        out,
        "context passwd\ncontext passwd\ninside\ncontext passwd\n"
    );
    let (r, _) = e.build(&c, "FROM busybox:test\nCOPY dangling /x\n", &[]);
    let err = r.unwrap_err().to_string();
    assert!(
        err.contains("dangling: not found in the build context"),
        "{err}"
    );
}

/// A tar archive with a directory, a file (mode 0750, owner 1234), a symlink and a hard link.
fn archive(gzip: bool, hostile: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h, "pkg/", std::io::empty()).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o750);
    h.set_uid(1234);
    h.set_gid(1234);
    h.set_size(4);
    b.append_data(&mut h, "pkg/run.sh", &b"hey\n"[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "pkg/link", "run.sh").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Link);
    h.set_size(0);
    b.append_link(&mut h, "pkg/hard", "pkg/run.sh").unwrap();
    if hostile {
        // Written raw: the tar crate's builder refuses `..` itself.
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.as_old_mut().name[..13].copy_from_slice(b"../../etc/evi");
        h.set_cksum();
        b.append(&h, &b"x\n"[..]).unwrap();
    }
    let tar = b.into_inner().unwrap();
    if !gzip {
        return tar;
    }
    use std::io::Write;
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(&tar).unwrap();
    z.finish().unwrap()
}

#[test]
fn add_unpacks_local_tar_archives_and_copies_other_files() {
    let e = env();
    let c = e.context(&[("notes.tar", "not really a tar\n")]);
    fs::write(c.join("pkg.tar.gz"), archive(true, false)).unwrap();
    fs::write(c.join("plain.tar"), archive(false, false)).unwrap();
    fs::write(c.join("evil.tar"), archive(false, true)).unwrap();
    fs::write(c.join("x.tar.bz2"), b"BZh91AY&SY").unwrap();
    let df = "FROM busybox:test\nADD pkg.tar.gz /opt/\nADD plain.tar /plain\nADD notes.tar /notes.tar\nADD --unpack=false plain.tar /kept.tar\nADD --chown=7:8 plain.tar /owned/\n";
    let (r, events) = e.build(&c, df, &[]);
    r.unwrap_or_else(|err| panic!("{err}\n{events:?}"));
    let out = e.run(
        "app:1",
        "cat /opt/pkg/run.sh /opt/pkg/link /plain/pkg/hard /notes.tar; busybox stat -c '%a %u' /opt/pkg/run.sh; busybox stat -c '%u:%g' /owned/pkg/run.sh; busybox stat -c %h /opt/pkg/run.sh; test -f /kept.tar && echo kept",
    );
    assert_eq!(
        out,
        "hey\nhey\nhey\nnot really a tar\n750 1234\n7:8\n2\nkept\n"
    );
    for (df, want) in [
        (
            "FROM busybox:test\nADD evil.tar /x/\n",
            "evil.tar: ../../etc/evi is outside the archive's destination",
        ),
        (
            "FROM busybox:test\nADD x.tar.bz2 /x/\n",
            "x.tar.bz2: a bzip2-compressed archive",
        ),
        (
            "FROM busybox:test\nADD https://example.invalid/a /a\n",
            "this builder cannot download (no HTTP client)",
        ),
    ] {
        let (r, _) = e.build(&c, df, &[]);
        let err = r.expect_err(df).to_string();
        assert!(err.contains(want), "{df:?}: {err}");
    }
}

#[test]
fn run_output_streams_while_the_step_runs() {
    let e = env();
    let c = e.context(&[("x", "x\n")]);
    let req = Request {
        context: c,
        dockerfile: "FROM busybox:test\nRUN echo first; busybox sleep 1; echo second\n".into(),
        dockerfile_name: "Dockerfile".into(),
        ..Default::default()
    };
    let mut seen: Vec<(String, std::time::Instant)> = Vec::new();
    e.builder()
        .build(&req, &mut |ev| {
            if let Event::Output(o) = ev {
                seen.push((o, std::time::Instant::now()));
            }
        })
        .unwrap();
    let text: String = seen.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(text, "first\nsecond\n");
    // "first" came out a second before "second": while the step ran, not at its end.
    assert!(
        seen.len() == 2 && seen[1].1 - seen[0].1 >= Duration::from_millis(500),
        "{seen:?}"
    );
}

#[test]
fn independent_stages_run_at_the_same_time_and_report_in_file_order() {
    let e = env();
    let c = e.context(&[("x", "x\n")]);
    let span =
        "cut -d' ' -f1 /proc/uptime > /start; busybox sleep 2; cut -d' ' -f1 /proc/uptime > /end";
    let df = format!(
        "FROM busybox:test AS a\nRUN {span}\nFROM busybox:test AS b\nRUN {span}\nFROM busybox:test\nCOPY --from=a /start /end /a/\nCOPY --from=b /start /end /b/\n"
    );
    let (r, events) = e.build(&c, &df, &[]);
    r.unwrap_or_else(|err| panic!("{err}\n{events:?}"));
    let steps: Vec<usize> = events
        .iter()
        .filter_map(|ev| match ev {
            Event::Step { n, .. } => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(steps, (1..=7).collect::<Vec<_>>(), "{events:?}");
    let out = e.run("app:1", "cat /a/start /a/end /b/start /b/end");
    let t: Vec<f64> = out.lines().map(|l| l.parse().unwrap()).collect();
    // Each stage's RUN lasted 2 s; they overlap only if they ran at the same time.
    assert!(
        t[0] < t[3] && t[2] < t[1],
        "a {}..{}, b {}..{}",
        t[0],
        t[1],
        t[2],
        t[3]
    );
}

#[test]
fn a_failing_stage_fails_the_build_and_stops_the_others() {
    let e = env();
    let c = e.context(&[("x", "x\n")]);
    let df = "FROM busybox:test AS a\nRUN exit 4\nFROM busybox:test AS b\nRUN busybox sleep 1\nRUN echo never-after-a-failed\nFROM busybox:test\nCOPY --from=a /x /a\nCOPY --from=b /x /b\n";
    let (r, events) = e.build(&c, df, &[]);
    let err = r.unwrap_err().to_string();
    assert!(err.contains("Dockerfile:2: the command"), "{err}");
    assert!(
        !events.contains(&Event::Output("never-after-a-failed\n".into())),
        "{events:?}"
    );
    assert!(e.rt.list().unwrap().is_empty(), "no container left");
}

#[test]
fn cache_from_an_image_stands_in_for_run_steps_on_a_node_without_cache() {
    let e = env();
    let c = e.context(&[("data.txt", "data\n")]);
    let df = "FROM busybox:test\nENV A=1\nRUN cut -d' ' -f1 /proc/uptime > /made\nCOPY data.txt /\nRUN cat /made > /again\n";
    let build = |df: &str, cache_from: &[&str]| {
        let mut events = Vec::new();
        let req = Request {
            context: c.clone(),
            dockerfile: df.into(),
            dockerfile_name: "Dockerfile".into(),
            tags: vec!["app:2".into()],
            cache_from: cache_from.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let r = e.builder().build(&req, &mut |ev| events.push(ev));
        (r.unwrap_or_else(|err| panic!("{err}\n{events:?}")), events)
    };
    let (first, _) = build(df, &[]);
    e.store.tag("source:1", &first).unwrap();
    let made = e.run("source:1", "cat /made /again");
    // Another node: no build cache.
    e.store.cache_clear().unwrap();
    let (_, events) = build(df, &["source:1"]);
    assert_eq!(
        cached(&events),
        2,
        "both RUNs from the source (ENV and COPY are redone): {events:?}"
    );
    assert!(
        !events.iter().any(|ev| matches!(ev, Event::Output(_))),
        "no RUN ran: {events:?}"
    );
    assert_eq!(
        e.run("app:2", "cat /made /again"),
        made,
        "the source's layers"
    );
    // A changed step before a RUN: from there on nothing comes from the source.
    e.store.cache_clear().unwrap();
    let changed = df.replace("ENV A=1", "ENV A=2");
    let (_, events) = build(&changed, &["source:1"]);
    assert_ne!(e.run("app:2", "cat /made /again"), made, "{events:?}");
    let err = e
        .builder()
        .build(
            &Request {
                context: c.clone(),
                dockerfile: df.into(),
                dockerfile_name: "Dockerfile".into(),
                cache_from: vec!["nosuch:1".into()],
                ..Default::default()
            },
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("--cache-from nosuch:1"), "{err}");
}

const MOUNTS: &str = r#"FROM busybox:test AS tools
RUN mkdir -p /out && echo from-stage > /out/tool.txt
FROM busybox:test
WORKDIR /src
RUN --mount=type=cache,target=/var/cache/app,id=app \
    echo run >> /var/cache/app/runs && busybox wc -l < /var/cache/app/runs > /count
RUN --mount=type=bind,source=data.txt,target=/in/data.txt \
    --mount=type=bind,from=tools,source=/out,target=/tools \
    cat /in/data.txt /tools/tool.txt > /bound.txt
RUN --mount=type=bind,target=ctx,rw busybox touch ctx/scribble && ls ctx > /ctx-list
RUN --mount=type=tmpfs,target=/scratch,size=1m \
    busybox grep -q ' /scratch tmpfs' /proc/mounts && echo big > /scratch/x && echo tmpfs-ok > /tmpfs.txt
RUN <<EOF
echo "script line one" > /heredoc.txt
echo "two: $((1 + 1))" >> /heredoc.txt
EOF
RUN cat <<A > /a.txt && cat <<-B > /b.txt
alpha
A
	beta
	B
RUN <<EOF
#!/bin/sh
echo "shebang $0" > /shebang.txt
EOF
"#;

#[test]
fn run_mounts_and_heredocs_give_the_step_what_it_asks_and_leave_no_trace_in_the_layer() {
    let e = env();
    let c = e.context(&[("data.txt", "from-context\n")]);
    let (d1, events) = e.build(&c, MOUNTS, &[]);
    let d1 = d1.unwrap_or_else(|err| panic!("{err}\n{events:?}"));
    let out = e.run(
        d1.as_str(),
        "cat /count /bound.txt /ctx-list /tmpfs.txt /heredoc.txt /a.txt /b.txt /shebang.txt; \
         for p in /var/cache/app /in /tools /src/ctx /scratch /dev/pipes; do test -e $p && echo LEFT $p; done; true",
    );
    let want = "1\nfrom-context\nfrom-stage\ndata.txt\nscribble\ntmpfs-ok\nscript line one\ntwo: 2\nalpha\nbeta\nshebang /dev/pipes/EOF\n";
    assert_eq!(out, want);
    assert!(
        !c.join("scribble").exists(),
        "a rw bind writes to a throw-away copy, never the context"
    );

    // The cache mount outlives the build; a change to a bound file rebuilds its step.
    fs::write(c.join("data.txt"), "changed\n").unwrap();
    let (d2, events) = e.build(&c, MOUNTS, &[]);
    let d2 = d2.unwrap_or_else(|err| panic!("{err}\n{events:?}"));
    assert_ne!(d1, d2);
    // The stage's RUN, WORKDIR and the cache-mount RUN are cached; the bind RUN and all
    // after it (their parent changed) are not.
    assert_eq!(cached(&events), 3, "{events:?}");
    assert!(e
        .run(d2.as_str(), "cat /bound.txt")
        .starts_with("changed\n"));
    let (d3, events) = e.build(
        &c,
        &MOUNTS.replace("id=app \\", "id=app,sharing=locked \\"),
        &[],
    );
    d3.unwrap_or_else(|err| panic!("{err}\n{events:?}"));
    let dir = run_extras::cache_mounts_dir(e.store.root());
    let runs: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|d| d.path().is_dir())
        .map(|d| fs::read_to_string(d.path().join("runs")).unwrap())
        .collect();
    assert_eq!(runs, ["run\nrun\n"], "one cache dir for id=app, used twice");
    assert_eq!(run_extras::clear_cache_mounts(e.store.root()).unwrap(), 1);
    assert!(!fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .any(|d| d.path().is_dir()));

    for (df, want) in [
        (
            "FROM busybox:test\nRUN --mount=type=bind,source=../../etc,target=/x true\n",
            "Dockerfile:2: --mount=type=bind,source=../../etc,target=/x: source \"../../etc\" in the build context",
        ),
        (
            "FROM busybox:test\nRUN --mount=type=ssh true\n",
            "type=ssh mounts are not supported by this builder yet",
        ),
        (
            "FROM busybox:test\nRUN --security=insecure true\n",
            "RUN --security=insecure is not allowed",
        ),
    ] {
        let (r, _) = e.build(&c, df, &[]);
        let err = r.expect_err(df).to_string();
        assert!(err.contains(want), "{df:?}:\n got  {err}\n want {want}");
    }
}

#[test]
fn onbuild_triggers_run_in_the_build_that_starts_from_the_image() {
    let e = env();
    let c = e.context(&[("data.txt", "ctx data\n")]);
    let base = "FROM busybox:test\nONBUILD COPY data.txt /from-trigger.txt\nONBUILD RUN echo triggered > /ran.txt\n";
    let (d, events) = e.build(&c, base, &[]);
    let d = d.unwrap_or_else(|err| panic!("{err}\n{events:?}"));
    assert_eq!(
        e.store.config(d.as_str()).unwrap().on_build,
        [
            "COPY data.txt /from-trigger.txt",
            "RUN echo triggered > /ran.txt"
        ]
    );
    assert!(
        e.run(d.as_str(), "test -e /ran.txt || echo none")
            .starts_with("none"),
        "the triggers do not run in the image that declares them"
    );
    e.store.tag("base:1", &d).unwrap();
    let (d2, events) = e.build(
        &c,
        "FROM base:1\nRUN cat /from-trigger.txt /ran.txt > /both.txt\n",
        &[],
    );
    let d2 = d2.unwrap_or_else(|err| panic!("{err}\n{events:?}"));
    assert!(
        events.contains(&Event::Output("# Executing 2 build triggers\n".into())),
        "{events:?}"
    );
    assert_eq!(e.run(d2.as_str(), "cat /both.txt"), "ctx data\ntriggered\n");
    assert!(
        e.store.config(d2.as_str()).unwrap().on_build.is_empty(),
        "an image does not pass its base's triggers on"
    );

    let (d3, _) = e.build(&c, "FROM busybox:test\nONBUILD COPY nothing.txt /x\n", &[]);
    e.store.tag("base:2", &d3.unwrap()).unwrap();
    let err = e
        .build(&c, "FROM base:2\nRUN true\n", &[])
        .0
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("Dockerfile:1: ONBUILD trigger \"COPY nothing.txt /x\" of the base image:")
            && err.contains("nothing.txt"),
        "{err}"
    );
}

#[test]
fn a_secret_reaches_only_the_run_that_mounts_it_and_never_the_image_or_the_cache() {
    let e = env();
    let c = e.context(&[("data.txt", "x\n")]);
    let df = r#"FROM busybox:test
RUN --mount=type=secret,id=tok test "$(cat /run/secrets/tok)" = s3cret && echo file-ok > /ok
RUN --mount=type=secret,id=tok,env=TOK,target=/etc/tok,mode=0440,uid=5 \
    test "$TOK" = s3cret && ls -ln /etc/tok > /ls.txt
RUN --mount=type=secret,id=absent echo skipped > /absent
RUN test -z "$TOK" && echo no-env-here > /later
"#;
    let build = |secret: &str| {
        let mut events = Vec::new();
        let req = Request {
            context: c.clone(),
            dockerfile: df.into(),
            dockerfile_name: "Dockerfile".into(),
            tags: vec!["sec:1".into()],
            secrets: Secrets([("tok".to_string(), secret.as_bytes().to_vec())].into()),
            ..Default::default()
        };
        let r = e.builder().build(&req, &mut |ev| events.push(ev));
        (r, events)
    };
    let (d, events) = build("s3cret");
    let d = d.unwrap_or_else(|err| panic!("{err}\n{events:?}"));
    let out = e.run(
        d.as_str(),
        "cat /ok /absent /later; busybox cut -c1-15 /ls.txt; busybox awk '{print $3}' /ls.txt; \
         test -e /run/secrets && echo LEFT /run/secrets; test -e /etc/tok && echo LEFT /etc/tok; true",
    );
    assert_eq!(out, "file-ok\nskipped\nno-env-here\n-r--r-----    1\n5\n");
    // The secret's value is not part of any step's key: another value changes nothing.
    let (d2, events) = build("other");
    assert_eq!(d2.unwrap(), d);
    assert_eq!(cached(&events), 4, "{events:?}");

    let req = Request {
        context: c.clone(),
        dockerfile: "FROM busybox:test\nRUN --mount=type=secret,id=need,required true\n".into(),
        dockerfile_name: "Dockerfile".into(),
        ..Default::default()
    };
    let err = e
        .builder()
        .build(&req, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Dockerfile:2: --mount=type=secret,id=need,required: secret need is required but the build has none"),
        "{err}"
    );
    assert!(!format!("{:?}", Secrets([("k".into(), b"v".to_vec())].into())).contains('v'));
}

#[test]
fn copy_takes_owner_names_from_the_image_excludes_patterns_and_keeps_parents() {
    let e = env();
    let c = e.context(&[
        ("data.txt", "d\n"),
        ("docs/a.md", "a\n"),
        ("docs/b.txt", "b\n"),
        ("src/x/deep/f.rs", "f\n"),
        ("src/y/deep/g.rs", "g\n"),
    ]);
    let df = r#"FROM busybox:test
RUN echo 'app:x:1000:1001::/:/bin/sh' >> /etc/passwd && echo 'staff:x:50:' > /etc/group
COPY --chown=app data.txt /owned/user-only.txt
COPY --chown=app:staff data.txt /owned/both.txt
COPY --exclude=*.md docs /docs/
COPY --exclude=docs/*.txt --exclude=src . /all/
COPY --parents src/*/deep/*.rs /kept/
"#;
    let (d, events) = e.build(&c, df, &[]);
    let d = d.unwrap_or_else(|err| panic!("{err}\n{events:?}"));
    let out = e.run(
        d.as_str(),
        "ls -ln /owned | busybox awk 'NR>1 {print $3, $4, $9}'; ls /docs; ls /all /all/docs; \
         cat /kept/src/x/deep/f.rs /kept/src/y/deep/g.rs",
    );
    assert_eq!(
        out,
        "1000 50 both.txt\n1000 1000 user-only.txt\nb.txt\n/all:\ndata.txt\ndocs\n\n/all/docs:\na.md\nf\ng\n"
    );
}

/// Serves ADD's URLs from memory.
struct Files(std::collections::HashMap<&'static str, Vec<u8>>);

impl Fetch for Files {
    fn fetch(&self, url: &str, dest: &Path, limit: u64) -> Result<Option<u64>, String> {
        let body = self.0.get(url).ok_or_else(|| format!("{url}: 404"))?;
        assert!(limit >= body.len() as u64);
        fs::write(dest, body).map_err(|e| e.to_string())?;
        Ok(Some(1_700_000_000))
    }
}

#[test]
fn add_downloads_urls_checks_their_checksum_and_never_unpacks_them() {
    let e = env();
    let c = e.context(&[("data.txt", "d\n")]);
    let tarball = archive(false, false);
    let files = Files(
        [
            (
                "http://files.test/dir/tool.sh",
                b"#!/bin/sh\necho tool\n".to_vec(),
            ),
            ("https://files.test/a.tar?v=1", tarball.clone()),
        ]
        .into(),
    );
    let sum = {
        use sha2::Digest as _;
        sha2::Sha256::digest(b"#!/bin/sh\necho tool\n")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let build = |df: &str| {
        let b = Builder {
            fetch: Some(&files),
            ..e.builder()
        };
        let req = Request {
            context: c.clone(),
            dockerfile: df.into(),
            dockerfile_name: "Dockerfile".into(),
            tags: vec!["add:1".into()],
            ..Default::default()
        };
        b.build(&req, &mut |_| {})
    };
    let df = format!(
        "FROM busybox:test\nADD --checksum=sha256:{sum} http://files.test/dir/tool.sh /opt/\nADD https://files.test/a.tar?v=1 /opt/\nADD http://files.test/dir/tool.sh /renamed\n"
    );
    let d = build(&df).unwrap();
    let out = e.run(
        d.as_str(),
        "ls -l /opt/tool.sh | busybox cut -c1-10; cat /opt/tool.sh; test -f /opt/a.tar && echo kept-as-file; \
         busybox stat -c %Y /renamed",
    );
    assert_eq!(
        out,
        "-rw-------\n#!/bin/sh\necho tool\nkept-as-file\n1700000000\n"
    );
    for (df, want) in [
        (
            "FROM busybox:test\nADD --checksum=sha256:00 http://files.test/dir/tool.sh /x\n"
                .to_string(),
            "checksum mismatch: --checksum says sha256:00, the download is sha256:".to_string(),
        ),
        (
            "FROM busybox:test\nADD http://files.test/missing /x\n".into(),
            "Dockerfile:2: http://files.test/missing: 404".into(),
        ),
        (
            "FROM busybox:test\nADD git@github.com:x/y.git /x\n".into(),
            "not found in the build context".into(),
        ),
        (
            "FROM busybox:test\nADD ftp://files.test/x /x\n".into(),
            "ADD fetches http and https URLs only".into(),
        ),
        (
            "FROM busybox:test\nADD --checksum=sha256:00 data.txt /x\n".into(),
            "ADD --checksum is for URL sources only".into(),
        ),
    ] {
        let err = build(&df).expect_err(&df).to_string();
        assert!(err.contains(&want), "{df:?}:\n got  {err}\n want {want}");
    }
}
