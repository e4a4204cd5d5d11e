//! `swarmctl image build` (issue 19) through the real binaries: a multi-stage Dockerfile over
//! the busybox base (COPY --from, ARG, ENV, USER, WORKDIR, HEALTHCHECK, .dockerignore) is
//! built on a manager, pushed to the cluster registry and runs as a 3-replica service on three
//! netns hosts; a build sent through the manager to a worker (`--node`) pulls its FROM image
//! from the registry, takes a `--secret`, a cache mount and an `ADD` of a URL served by another
//! host; an unchanged rebuild
//! is fully cached, a changed COPY input rebuilds from that step on; hostile contexts are
//! refused. Docker's engine on this machine pulls the image we
//! built and runs it with the same CMD, ENV, USER and WORKDIR.

use std::path::Path;
use swarm_integration::docker::DockerLogin;
use swarm_integration::{
    hosts_cluster, import, init_tracing, managers, running, wait_socket, LONG,
};
use swarm_testkit::wait_until;
use tracing::info;

const DOCKERFILE: &str = r#"ARG BASE=busybox:latest
FROM ${BASE} AS build
ARG VERSION=0
WORKDIR /src
COPY app.sh ./
RUN mkdir -p /out && sed "s/@VERSION@/$VERSION/" app.sh > /out/app.sh && chmod 755 /out/app.sh
FROM ${BASE}
ENV GREETING=hello
WORKDIR /app
COPY --from=build /out/app.sh /app/app.sh
COPY data/ /app/data/
USER 1000
HEALTHCHECK --interval=1s --timeout=3s CMD test -x /app/app.sh
CMD ["/app/app.sh"]
"#;

const APP: &str = "#!/bin/sh\necho \"$GREETING v@VERSION@ as $(id -u) in $(pwd): $(ls /app/data | tr '\\n' ' ')$(cat /app/data/keep.txt)\"\nexec sleep 3600\n";

/// Cacheable steps of DOCKERFILE (everything but FROM and ARG): 3 in the first stage, 7 in
/// the second.
const CACHEABLE: usize = 10;

fn context(dir: &Path, keep: &str) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::write(dir.join("app.sh"), APP).unwrap();
    std::fs::write(dir.join("data/keep.txt"), keep).unwrap();
    std::fs::write(dir.join("data/skip.log"), "never in the image\n").unwrap();
    std::fs::write(dir.join(".dockerignore"), "data/*.log\n").unwrap();
}

/// `swarmctl image build ARGS…` on node `i`: its output.
fn build(c: &swarm_testkit::Cluster, i: usize, args: &[&str]) -> anyhow::Result<String> {
    let mut a = vec!["image", "build"];
    a.extend_from_slice(args);
    c.ctl(i, &a)
}

/// The digest `Successfully built …` names, and how many steps came from the cache.
fn built(out: &str) -> (String, usize) {
    let digest = out
        .lines()
        .find_map(|l| l.strip_prefix("Successfully built "))
        .unwrap_or_else(|| panic!("no digest in the build output:\n{out}"))
        .trim()
        .to_string();
    (digest, out.matches("---> Using cache").count())
}

#[test]
fn a_multi_stage_build_runs_as_a_service_on_three_hosts_and_rebuilds_from_the_cache() {
    init_tracing();
    let (hosts, c) = hosts_cluster(3, &[]);
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    context(&ctx, "one");
    let ctx_s = ctx.to_str().unwrap();

    info!("phase: build on the manager and push to the cluster registry");
    let out = build(
        &c,
        0,
        &["-t", "app:1", "--build-arg", "VERSION=7", "--push", ctx_s],
    )
    .unwrap_or_else(|e| panic!("build: {e}\n{}", c.dump()));
    info!("build output:\n{out}");
    let (d1, hits) = built(&out);
    assert_eq!(hits, 0, "a first build has nothing cached:\n{out}");
    assert!(out.contains("Step 1/13 : FROM ${BASE} AS build"), "{out}");
    assert!(out.contains("app:1: pushed"), "{out}");

    info!("phase: the manager's socket sends a build to worker n3 (--node), which pulls FROM from the registry");
    let derived = tmp.path().join("derived");
    std::fs::create_dir_all(&derived).unwrap();
    std::fs::write(
        derived.join("Dockerfile"),
        "FROM app:1\nUSER 0\nRUN test -x /app/app.sh && echo derived > /app/derived.txt\n",
    )
    .unwrap();
    let out = build(
        &c,
        0,
        &["--node", "n3", "-t", "derived:1", derived.to_str().unwrap()],
    )
    .unwrap_or_else(|e| panic!("build on a worker: {e}\n{}", c.dump()));
    assert!(out.contains("Pulling app:1"), "{out}");
    let images = c.ctl(2, &["image", "ls"]).unwrap();
    assert!(
        images.contains(&d1) && images.contains("derived:1"),
        "the image is in n3's store:\n{images}"
    );
    let here = c.ctl(0, &["image", "ls"]).unwrap();
    assert!(!here.contains("derived"), "not in the manager's:\n{here}");
    // A worker's socket reaches no other node; the error says where to go instead.
    let err = build(
        &c,
        2,
        &["--node", "n1", "-t", "derived:2", derived.to_str().unwrap()],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("only a manager reaches other nodes") && err.contains("is a worker"),
        "{err}"
    );
    let err = build(
        &c,
        0,
        &[
            "--node",
            "nosuch",
            "-t",
            "derived:2",
            derived.to_str().unwrap(),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("--node nosuch"), "{err}");
    // Volumes of another node, by hostname, through the manager.
    let vols = c.ctl(0, &["volume", "ls", "--node", "n2"]).unwrap();
    assert!(vols.starts_with("DRIVER"), "{vols}");

    info!("phase: a build secret and a cache mount, on n3 through the manager");
    let sec = tmp.path().join("secret-ctx");
    std::fs::create_dir_all(&sec).unwrap();
    std::fs::write(
        sec.join("Dockerfile"),
        "FROM app:1\nUSER 0\nRUN --mount=type=secret,id=tok test \"$(md5sum < /run/secrets/tok)\" = \"$(echo -n s3cret | md5sum)\" && echo ok > /secret-ok\nRUN --mount=type=cache,target=/var/cache/t echo run >> /var/cache/t/n && cp /var/cache/t/n /runs\n",
    )
    .unwrap();
    let tok = tmp.path().join("tok");
    std::fs::write(&tok, "s3cret").unwrap();
    let secret = format!("id=tok,src={}", tok.display());
    let out = build(
        &c,
        0,
        &[
            "--node",
            "n3",
            "--secret",
            &secret,
            "-t",
            "secret:1",
            sec.to_str().unwrap(),
        ],
    )
    .unwrap_or_else(|e| panic!("build with a secret: {e}\n{}", c.dump()));
    assert!(
        out.matches("s3cret").count() == 1,
        "only the Dockerfile's own line shows it:\n{out}"
    );
    let images = c.ctl(2, &["image", "ls"]).unwrap();
    assert!(images.contains("secret"), "{images}");

    info!("phase: ADD of a URL that a host of the test network serves, built on n3");
    let www = tmp.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("tool.txt"), "served\n").unwrap();
    let web_ip = c.nodes[0].addr.split(':').next().unwrap().to_string();
    let _web = WebServer::start(&hosts, 0, &web_ip, &www);
    let add = tmp.path().join("add-ctx");
    std::fs::create_dir_all(&add).unwrap();
    std::fs::write(
        add.join("Dockerfile"),
        format!("FROM app:1\nUSER 0\nADD http://{web_ip}:8765/tool.txt /opt/\nRUN test \"$(cat /opt/tool.txt)\" = served\n"),
    )
    .unwrap();
    build(
        &c,
        0,
        &["--node", "n3", "-t", "added:1", add.to_str().unwrap()],
    )
    .unwrap_or_else(|e| panic!("ADD of a URL: {e}\n{}", c.dump()));

    info!("phase: another worker, no cache of its own, takes the RUN layer from --cache-from");
    // Workers may not push: the manager builds and pushes the same Dockerfile.
    build(
        &c,
        0,
        &["-t", "derived:1", "--push", derived.to_str().unwrap()],
    )
    .unwrap();
    let out = build(
        &c,
        1,
        &[
            "-t",
            "derived:1",
            "--cache-from",
            "derived:1",
            derived.to_str().unwrap(),
        ],
    )
    .unwrap_or_else(|e| panic!("--cache-from: {e}\n{}", c.dump()));
    let (_, hits) = built(&out);
    assert_eq!(hits, 1, "its RUN from derived:1:\n{out}");

    info!("phase: RUN reaches another host from the worker's default bridge; --network=none has loopback only");
    let host0 = c.nodes[0].addr.split(':').next().unwrap().to_string();
    let net = tmp.path().join("net");
    std::fs::create_dir_all(&net).unwrap();
    std::fs::write(
        net.join("Dockerfile"),
        "FROM busybox:latest\nARG TARGET\nRUN ip -4 addr show eth0 && ping -c 1 -W 5 $TARGET && grep nameserver /etc/resolv.conf\nRUN --network=none sh -c '! ip link show eth0 2>/dev/null'\nRUN --network=none sh -c 'test ! -e /etc/hostname && test ! -e /etc/resolv.conf && test ! -e /etc/hosts'\n",
    )
    .unwrap();
    let target = format!("TARGET={host0}");
    let out = build(
        &c,
        2,
        &["-t", "net:1", "--build-arg", &target, net.to_str().unwrap()],
    )
    .unwrap_or_else(|e| panic!("RUN with a network: {e}\n{}", c.dump()));
    assert!(out.contains("1 packets received"), "{out}");
    assert!(out.contains("nameserver "), "{out}");
    // `image build --network none`: the same first RUN has no eth0 (and no cache entry:
    // it never ran without a network).
    let err = build(
        &c,
        2,
        &[
            "--network",
            "none",
            "-t",
            "net:2",
            "--build-arg",
            &target,
            net.to_str().unwrap(),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("returned a non-zero code"), "{err}");

    info!("phase: a 3-replica service of it, one task per host");
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "app",
            "--replicas",
            "3",
            "--replicas-max-per-node",
            "1",
            "app:1",
        ],
    )
    .unwrap();
    let on = wait_until("3 healthy tasks on 3 hosts", LONG, || {
        let r = running(&c, 0, "app");
        let mut nodes: Vec<String> = r.iter().map(|(_, n)| n.clone()).collect();
        nodes.sort();
        nodes.dedup();
        (r.len() == 3 && nodes.len() == 3).then_some(nodes)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    info!("running on {on:?}");
    let logs = wait_until("three greetings in the logs", LONG, || {
        let l = c.ctl(0, &["service", "logs", "app"]).ok()?;
        (l.matches("hello v7 as 1000 in /app: keep.txt one").count() == 3).then_some(l)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    assert!(!logs.contains("skip.log"), ".dockerignore: {logs}");
    let ps = c.ctl(0, &["service", "ps", "app"]).unwrap();
    assert_eq!(
        ps.matches("(healthy)").count(),
        3,
        "HEALTHCHECK runs:\n{ps}"
    );

    info!("phase: nothing changed: every step from the cache, the same image");
    let out = build(&c, 0, &["-t", "app:1", "--build-arg", "VERSION=7", ctx_s]).unwrap();
    let (d2, hits) = built(&out);
    assert_eq!(d2, d1, "{out}");
    assert_eq!(hits, CACHEABLE, "{out}");

    info!("phase: one COPY input changed: rebuilt from that step on");
    std::fs::write(ctx.join("data/keep.txt"), "two").unwrap();
    let out = build(
        &c,
        0,
        &["-t", "app:2", "--build-arg", "VERSION=7", "--push", ctx_s],
    )
    .unwrap();
    let (d3, hits) = built(&out);
    assert_ne!(d3, d1);
    // The first stage (3) and ENV, WORKDIR, COPY --from of the second.
    assert_eq!(hits, 6, "{out}");
    c.ctl(
        0,
        &[
            "service",
            "update",
            "--image",
            "app:2",
            "--detach=false",
            "app",
        ],
    )
    .unwrap_or_else(|e| panic!("update: {e}\n{}", c.dump()));
    wait_until("the new version's greeting from every host", LONG, || {
        let l = c.ctl(0, &["service", "logs", "app"]).ok()?;
        (l.matches("keep.txt two").count() == 3).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));

    info!("phase: the cache outlives garbage collection, until prune --build-cache");
    let pruned = c.ctl(0, &["image", "prune", "-f"]).unwrap();
    info!("prune: {pruned}");
    let again = ["-t", "app:2", "--build-arg", "VERSION=7", ctx_s];
    let out = build(&c, 0, &again).unwrap();
    assert_eq!(built(&out), (d3.clone(), CACHEABLE), "{out}");
    let pruned = c
        .ctl(0, &["image", "prune", "-f", "--build-cache"])
        .unwrap();
    assert!(pruned.contains("steps forgotten"), "{pruned}");
    assert!(!pruned.contains("Build cache: 0 "), "{pruned}");
    let out = build(&c, 0, &again).unwrap();
    let (_, hits) = built(&out);
    assert_eq!(hits, 0, "nothing cached after prune --build-cache:\n{out}");

    info!("phase: hostile contexts are refused");
    let evil = tmp.path().join("evil");
    std::fs::create_dir_all(&evil).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", evil.join("shadow")).unwrap();
    let cases: [(&str, &str); 3] = [
        (
            "FROM busybox:latest\nCOPY ../../../etc/shadow /x\n",
            "Dockerfile:2: ../../../etc/shadow is outside the build context",
        ),
        // The link resolves inside the context, where there is no /etc/shadow.
        (
            "FROM busybox:latest\nCOPY shadow /x\n",
            "Dockerfile:2: shadow: not found in the build context",
        ),
        (
            "FROM busybox:latest\nRUN --network=host true\n",
            "Dockerfile:2: RUN --network=host is not allowed",
        ),
    ];
    for (df, want) in cases {
        std::fs::write(evil.join("Dockerfile"), df).unwrap();
        let err = build(&c, 0, &["-t", "evil:1", evil.to_str().unwrap()])
            .expect_err(df)
            .to_string();
        assert!(err.contains(want), "{df:?}:\n got  {err}\n want {want}");
    }
    let err = build(&c, 0, &["-f", "/etc/passwd", evil.to_str().unwrap()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the Dockerfile must be inside the build context"),
        "{err}"
    );
    std::fs::write(
        evil.join("Dockerfile"),
        "FROM busybox:latest\nRUN touch /x\n",
    )
    .unwrap();
    let err = build(&c, 0, &["-t", "Evil:1", evil.to_str().unwrap()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("-t Evil:1: not a valid image name"), "{err}");
    let images = c.ctl(0, &["image", "ls"]).unwrap();
    assert!(
        !images.contains("evil"),
        "a refused build tags nothing:\n{images}"
    );
}

/// Docker's engine pulls what we built from the cluster registry and runs it as we do.
#[test]
fn docker_runs_the_image_we_built() {
    init_tracing();
    let c = managers(1, &[]);
    wait_socket(&c, 0);
    import(&c, 0, "busybox:latest", "v1");
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    context(&ctx, "docker");
    let repo = format!("t87-{}/app:1", std::process::id());
    let out = build(
        &c,
        0,
        &[
            "-t",
            &repo,
            "--build-arg",
            "VERSION=3",
            "--push",
            ctx.to_str().unwrap(),
        ],
    )
    .unwrap_or_else(|e| panic!("build: {e}\n{}", c.dump()));
    let (digest, _) = built(&out);

    let mut d = DockerLogin::new(&c, 0, tmp.path(), false);
    let image = format!("{}/{repo}", d.registry);
    d.images.push(image.clone());
    let pulled = d.docker(&["pull", &image]);
    assert!(
        pulled.contains(&digest),
        "Docker pulls our manifest as it is:\n{pulled}"
    );
    let config = d.docker(&["image", "inspect", "--format", "{{json .Config}}", &image]);
    let config: serde_json::Value = serde_json::from_str(config.trim()).unwrap();
    assert_eq!(config["User"], "1000", "{config}");
    assert_eq!(config["WorkingDir"], "/app", "{config}");
    assert_eq!(
        config["Cmd"],
        serde_json::json!(["/app/app.sh"]),
        "{config}"
    );
    assert!(
        config["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "GREETING=hello"),
        "{config}"
    );
    assert_eq!(
        config["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "test -x /app/app.sh"]),
        "{config}"
    );
    // The image's own CMD, as our service runs it: the same greeting.
    let name = format!("t87-{}", std::process::id());
    let _rm = RmContainer(name.clone());
    d.docker(&["run", "-d", "--name", &name, "--network", "none", &image]);
    wait_until("Docker's container greets", LONG, || {
        let o = std::process::Command::new("docker")
            .args(["logs", &name])
            .output()
            .ok()?;
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        out.contains("hello v3 as 1000 in /app: keep.txt docker")
            .then_some(())
    })
    .unwrap_or_else(|e| {
        let o = std::process::Command::new("docker")
            .args(["logs", &name])
            .output()
            .unwrap();
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
}

/// Removes a Docker container when the test ends.
/// `python3 -m http.server` inside a test host's network namespace, killed on drop.
struct WebServer(std::process::Child);

impl WebServer {
    fn start(hosts: &swarm_testkit::netns::Hosts, i: usize, ip: &str, dir: &Path) -> WebServer {
        let mut cmd = hosts.exec_prefix(i);
        cmd.extend(
            [
                "python3",
                "-m",
                "http.server",
                "8765",
                "--bind",
                ip,
                "--directory",
                dir.to_str().unwrap(),
            ]
            .map(String::from),
        );
        let child = std::process::Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 (CI installs it)");
        let server = WebServer(child);
        let mut probe = hosts.exec_prefix(i);
        probe.extend(
            [
                "python3",
                "-c",
                "import socket,sys; socket.create_connection((sys.argv[1], 8765), 1)",
                ip,
            ]
            .map(String::from),
        );
        wait_until("the web server answers", LONG, || {
            std::process::Command::new(&probe[0])
                .args(&probe[1..])
                .status()
                .ok()
                .filter(|s| s.success())
        })
        .unwrap();
        server
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct RmContainer(String);

impl Drop for RmContainer {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &self.0])
            .output();
    }
}
