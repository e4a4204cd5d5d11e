//! Mounts, volumes and process knobs of services, end to end over real binaries: one manager
//! on loopback running real busybox containers.
//!
//! - a named volume is created on first use, populated from the image unless `volume-nocopy`,
//!   survives `service update --force`, is listed and inspected, and cannot be removed while
//!   a container uses it (then `volume rm` and `volume prune` remove it);
//! - a read-only bind mount is read-only; a tmpfs size is enforced; `--ulimit nofile` is what
//!   the container sees; `--read-only` makes the rootfs read-only; `--cap-drop ALL` takes
//!   CAP_CHOWN and CAP_NET_RAW (ping) away; `--user 1000` cannot write root-owned paths;
//!   `--stop-signal` is the signal the workload gets on removal;
//! - a bind source that does not exist rejects the task with a clear message;
//! - under `swarmd --userns-remap default` a task's root is the subordinate uid on the host,
//!   owns the image's files and its new volumes, keeps its volume across `update --force`,
//!   and a privileged task stays in the host's user namespace.

use std::path::{Path, PathBuf};
use swarm_integration::{import, init_tracing, json_lines, managers, running, tasks, LONG};
use swarm_testkit::wait_until;
use tracing::info;

/// A host directory for one test, removed when the test ends (even on failure).
struct HostDir(PathBuf);

impl HostDir {
    fn new(tag: &str) -> HostDir {
        let p = std::env::temp_dir().join(format!("swarm-t65-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        HostDir(p)
    }
    fn sub(&self, name: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.0.join(name);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }
}

impl Drop for HostDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read_when(path: &Path, what: &str, done: impl Fn(&str) -> bool) -> String {
    wait_until(what, LONG, || {
        std::fs::read_to_string(path).ok().filter(|s| done(s))
    })
    .unwrap_or_else(|e| panic!("{e}: {}", path.display()))
}

#[test]
fn a_named_volume_outlives_its_tasks_and_is_managed_per_node() {
    init_tracing();
    let c = managers(1, &[]);
    import(&c, 0, "busybox:latest", "v1");
    let sd = c.state_dir(0).to_path_buf();
    let (data, etc) = (
        format!("t65-data-{}", std::process::id()),
        format!("t65-etc-{}", std::process::id()),
    );

    info!(
        "phase: a service writes into a named volume; a second volume is populated from the image"
    );
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "vol",
            "--mount",
            &format!("type=volume,source={data},target=/data,volume-label=team=t65"),
            "--mount",
            &format!("source={etc},target=/etc"),
            "busybox",
            "sh",
            "-c",
            "hostname >> /data/starts; exec sleep 100000",
        ],
    )
    .unwrap();
    let starts = sd.join("volumes").join(&data).join("_data/starts");
    let first = read_when(&starts, "first task wrote into the volume", |s| {
        s.lines().count() == 1
    });
    let copied = sd.join("volumes").join(&etc).join("_data/image-version");
    assert_eq!(
        std::fs::read_to_string(&copied).unwrap().trim(),
        "v1",
        "the image's /etc was copied into the new volume"
    );
    assert!(
        !sd.join("volumes")
            .join(&data)
            .join("_data/image-version")
            .exists(),
        "/data was empty in the image: nothing copied"
    );

    info!("phase: service update --force replaces the task; the new one sees the same data");
    c.ctl(0, &["service", "update", "--force", "vol"]).unwrap();
    let both = read_when(&starts, "the replacement task appended", |s| {
        s.lines().count() == 2
    });
    assert!(both.starts_with(&first), "{both}");
    wait_until("one running task", LONG, || {
        (running(&c, 0, "vol").len() == 1).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:?}", tasks(&c, 0, "vol")));

    info!("phase: volume ls and inspect; removal refused while in use");
    let ls = json_lines(&c.ctl(0, &["volume", "ls", "--format", "json"]).unwrap());
    let names: Vec<&str> = ls.iter().filter_map(|v| v["Name"].as_str()).collect();
    assert!(
        names.contains(&data.as_str()) && names.contains(&etc.as_str()),
        "{ls:?}"
    );
    let insp: serde_json::Value =
        serde_json::from_str(&c.ctl(0, &["volume", "inspect", &data]).unwrap()).unwrap();
    assert_eq!(insp[0]["Driver"], "local");
    assert_eq!(insp[0]["Labels"]["team"], "t65");
    // The replaced task's container (stopped, kept until the task is reaped) still counts,
    // as a stopped container does in Docker.
    assert!(
        insp[0]["UsageData"]["RefCount"].as_u64() >= Some(1),
        "{insp}"
    );
    assert_eq!(
        insp[0]["Mountpoint"].as_str().unwrap(),
        sd.join("volumes")
            .join(&data)
            .join("_data")
            .to_str()
            .unwrap()
    );
    let o = c.ctl_raw(0, &["volume", "rm", &data]).unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("volume {data} is in use by")),
        "{err}"
    );
    assert!(starts.exists());
    let o = c
        .ctl_raw(0, &["volume", "ls", "--node", "nosuchnode"])
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--node nosuchnode"), "{err}");
    let me = c.ctl(0, &["volume", "ls", "-q", "--node", "self"]).unwrap();
    assert!(me.contains(&data), "{me}");

    info!("phase: after the service is gone, rm and prune remove the volumes");
    c.ctl(0, &["service", "rm", "vol"]).unwrap();
    wait_until("volume rm once the containers are removed", LONG, || {
        c.ctl(0, &["volume", "rm", &data]).ok()
    })
    .unwrap();
    assert!(!sd.join("volumes").join(&data).exists());
    let out = c.ctl(0, &["volume", "prune", "-f"]).unwrap();
    assert!(out.contains(&etc), "{out}");
    assert_eq!(c.ctl(0, &["volume", "ls", "-q"]).unwrap().trim(), "");
    let o = c.ctl_raw(0, &["volume", "inspect", &etc]).unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such volume"));
}

#[test]
fn binds_tmpfs_and_process_flags_do_what_they_say() {
    init_tracing();
    let c = managers(1, &[]);
    import(&c, 0, "busybox:latest", "v1");
    let host = HostDir::new("knobs");
    let out = host.sub("out", 0o755);
    let ro = host.sub("ro", 0o755);
    let user_out = host.sub("user", 0o777);

    info!("phase: read-only bind, tmpfs size, ulimit, read-only rootfs, cap-drop ALL");
    let script = "touch /ro/x 2>/dev/null && echo RO-WRITABLE || echo RO-OK; \
         dd if=/dev/zero of=/t/big bs=1024 count=4096 2>/dev/null && echo TMPFS-UNBOUNDED || echo TMPFS-FULL; \
         echo NOFILE=$(ulimit -n); \
         touch /rootfile 2>/dev/null && echo ROOTFS-WRITABLE || echo ROOTFS-RO; \
         chown 1:1 /t 2>/dev/null && echo CHOWN-OK || echo CHOWN-DENIED; \
         ping -c 1 -W 1 127.0.0.1 >/dev/null 2>&1 && echo PING-OK || echo PING-DENIED; \
         grep CapEff /proc/self/status; echo DONE; exec sleep 100000";
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "knobs",
            "--mount",
            &format!("type=bind,source={},target=/out", out.display()),
            "--mount",
            &format!("type=bind,source={},target=/ro,readonly", ro.display()),
            "--mount",
            "type=tmpfs,target=/t,tmpfs-size=1m",
            "--ulimit",
            "nofile=1234:2345",
            "--read-only",
            "--cap-drop",
            "ALL",
            "busybox",
            "sh",
            "-c",
            &format!("({script}) > /out/result 2>&1"),
        ],
    )
    .unwrap();
    let r = read_when(&out.join("result"), "the knobs report", |s| {
        s.contains("DONE")
    });
    info!("report:\n{r}");
    for want in [
        "RO-OK",
        "TMPFS-FULL",
        "NOFILE=1234",
        "ROOTFS-RO",
        "CHOWN-DENIED",
        "PING-DENIED",
        "CapEff:\t0000000000000000",
    ] {
        assert!(r.contains(want), "{want} missing:\n{r}");
    }
    assert!(!ro.join("x").exists());
    let insp: serde_json::Value =
        serde_json::from_str(&c.ctl(0, &["service", "inspect", "knobs"]).unwrap()).unwrap();
    let cs = &insp[0]["spec"]["task"]["container"];
    assert_eq!(cs["mounts"][1]["readonly"], true, "{cs}");
    assert_eq!(cs["mounts"][2]["tmpfs_size_bytes"], 1 << 20, "{cs}");
    assert_eq!(cs["options"]["cap_drop"][0], "ALL", "{cs}");

    info!("phase: the same checks with the default capabilities: chown and ping work");
    c.ctl(
        0,
        &[
            "service",
            "update",
            "--cap-drop",
            "CHOWN",
            "--cap-add",
            "ALL",
            "--args",
            &format!("sh -c '({script}) > /out/result2 2>&1'"),
            "knobs",
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let r = read_when(&out.join("result2"), "the second report", |s| {
        s.contains("DONE")
    });
    assert!(r.contains("CHOWN-DENIED"), "CHOWN dropped explicitly:\n{r}");
    assert!(r.contains("PING-OK"), "NET_RAW kept:\n{r}");

    info!("phase: --user 1000 cannot write root-owned paths; --stop-signal reaches the workload");
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "user",
            "--user",
            "1000",
            "--stop-signal",
            "SIGUSR1",
            "--mount",
            &format!("type=bind,source={},target=/out", user_out.display()),
            "busybox",
            "sh",
            "-c",
            "(id -u; touch /etc/x 2>/dev/null && echo ETC-WRITABLE || echo ETC-DENIED; \
              touch /out/mine && echo OUT-OK; echo DONE) > /out/result 2>&1; \
             trap 'echo GOT-USR1 > /out/signal; exit 0' USR1; while true; do sleep 1; done",
        ],
    )
    .unwrap();
    let r = read_when(&user_out.join("result"), "the user report", |s| {
        s.contains("DONE")
    });
    assert!(r.starts_with("1000\n"), "{r}");
    assert!(r.contains("ETC-DENIED") && r.contains("OUT-OK"), "{r}");
    c.ctl(0, &["service", "rm", "user"]).unwrap();
    read_when(&user_out.join("signal"), "SIGUSR1 on removal", |s| {
        s.contains("GOT-USR1")
    });

    info!("phase: a bind source that does not exist rejects the task, nothing is created");
    let missing = host.0.join("missing");
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "nosrc",
            "--mount",
            &format!("type=bind,source={},target=/data", missing.display()),
            "busybox",
            "sleep",
            "100000",
        ],
    )
    .unwrap();
    let err = wait_until("the task is rejected", LONG, || {
        tasks(&c, 0, "nosrc")
            .into_iter()
            .filter_map(|t| t["Error"].as_str().map(str::to_string))
            .find(|e| !e.is_empty())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:?}", tasks(&c, 0, "nosrc")));
    assert!(err.contains("does not exist on this node"), "{err}");
    assert!(!missing.exists());

    info!("phase: bad flags are refused before anything is written");
    for (flag, val, want) in [
        (
            "--mount",
            "type=volume,source=v,target=/x,volume-driver=nfs",
            "only the local driver",
        ),
        ("--sysctl", "kernel.panic=1", "not namespaced"),
        ("--cap-add", "FLY", "unknown capability"),
        ("--ulimit", "nofile=2:1", "above the hard limit"),
        ("--stop-signal", "SIGNOPE", "unknown signal"),
    ] {
        let o = c
            .ctl_raw(0, &["service", "create", flag, val, "busybox"])
            .unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert_ne!(o.status.code(), Some(0), "{flag} {val}");
        assert!(e.contains(want), "{flag} {val}: {e}");
    }
}

/// The first host uid `swarmremap` owns in /etc/subuid (`--userns-remap default` adds it).
fn swarmremap_start() -> u32 {
    let text = std::fs::read_to_string("/etc/subuid").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("swarmremap:"))
        .and_then(|r| r.split(':').next())
        .and_then(|s| s.parse().ok())
        .expect("swarmd --userns-remap default gave swarmremap subordinate ids")
}

/// Host `Uid:` of the process whose command line is exactly `argv`.
fn host_uid_of(argv: &[&str]) -> Option<u32> {
    let want = argv.join("\0") + "\0";
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if cmd == want.as_bytes() {
            let st = std::fs::read_to_string(e.path().join("status")).ok()?;
            return st
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok());
        }
    }
    None
}

#[test]
fn userns_remap_runs_tasks_as_unprivileged_host_ids() {
    remapped_tasks(&["--userns-remap", "default"]);
}

/// The same through chowned copies of the layers (the fallback where idmapped mounts do not
/// work, forced by a test hook).
#[test]
fn userns_remap_on_chowned_layer_copies_runs_tasks_alike() {
    remapped_tasks(&["--userns-remap", "default", "--userns-remap-copy"]);
}

fn remapped_tasks(flags: &[&str]) {
    use std::os::unix::fs::MetadataExt;
    init_tracing();
    let c = managers(1, flags);
    let start = swarmremap_start();
    import(&c, 0, "busybox:latest", "v1");
    let sd = c.state_dir(0).to_path_buf();
    let pid = std::process::id();
    let (data, etc) = (format!("t65-rdata-{pid}"), format!("t65-retc-{pid}"));
    let marker = format!("{}{pid}", 10 + flags.len());

    info!("phase: a remapped task is root inside, the subordinate uid outside");
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "remap",
            "--mount",
            &format!("type=volume,source={data},target=/data"),
            "--mount",
            &format!("source={etc},target=/etc"),
            "busybox",
            "sh",
            "-c",
            &format!(
                "(id -u; cat /proc/self/uid_map; touch /etc/x && echo ETC-WRITABLE) >> /data/report; \
                 hostname >> /data/starts; exec sleep {marker}"
            ),
        ],
    )
    .unwrap();
    let vol = sd.join("volumes").join(&data).join("_data");
    let report = read_when(&vol.join("report"), "the task's report", |s| {
        s.contains("ETC-WRITABLE")
    });
    let lines: Vec<Vec<&str>> = report
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["0"], "{report}");
    assert_eq!(
        lines[1],
        ["0", start.to_string().as_str(), "65536"],
        "{report}"
    );
    let uid = wait_until("the workload process", LONG, || {
        host_uid_of(&["sleep", &marker])
    })
    .unwrap();
    assert_eq!(uid, start, "the workload's host uid");
    for p in [vol.clone(), vol.join("report")] {
        assert_eq!(
            std::fs::metadata(&p).unwrap().uid(),
            start,
            "{}",
            p.display()
        );
    }
    // The image's /etc, copied into the new volume through the idmapped layers.
    let passwd = sd.join("volumes").join(&etc).join("_data/passwd");
    assert_eq!(std::fs::metadata(&passwd).unwrap().uid(), start);
    // Copies of the layers exist only when asked for.
    let copies = sd.join("images/layers-remap");
    let copied = std::fs::read_dir(&copies).map(|d| d.count()).unwrap_or(0) > 0;
    assert_eq!(
        copied,
        flags.contains(&"--userns-remap-copy"),
        "{}",
        copies.display()
    );

    info!("phase: the volume survives service update --force; the new task is remapped too");
    c.ctl(0, &["service", "update", "--force", "remap"])
        .unwrap();
    read_when(&vol.join("starts"), "the replacement task appended", |s| {
        s.lines().count() == 2
    });
    wait_until("one running task", LONG, || {
        (running(&c, 0, "remap").len() == 1).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:?}", tasks(&c, 0, "remap")));
    assert_eq!(
        wait_until("the new workload", LONG, || host_uid_of(&[
            "sleep", &marker
        ]))
        .unwrap(),
        start
    );
    c.ctl(0, &["service", "rm", "remap"]).unwrap();

    info!("phase: a privileged task stays in the host's user namespace");
    let out = HostDir::new(&format!("remap-priv{}", flags.len()));
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "priv",
            "--privileged",
            "--mount",
            &format!("type=bind,source={},target=/out", out.0.display()),
            "busybox",
            "sh",
            "-c",
            "cat /proc/self/uid_map > /out/map; exec sleep 100000",
        ],
    )
    .unwrap();
    let map = read_when(&out.0.join("map"), "the privileged task's map", |s| {
        !s.is_empty()
    });
    assert_eq!(
        map.split_whitespace().collect::<Vec<_>>(),
        ["0", "0", "4294967295"]
    );
    c.ctl(0, &["service", "rm", "priv"]).unwrap();
}
