//! End-to-end tests over real `swarmd`/`swarmctl` binaries live in `tests/`; this library
//! holds what they share.
#![forbid(unsafe_code)]

pub mod docker;

use std::time::Duration;
use swarm_testkit::Cluster;

/// Installs a test logger once (phase lines go to the test's output).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_test_writer()
        .try_init();
}

/// Starts a cluster of `n` managers (first one creates it, the rest join with a manager
/// token) and waits until every one of them is a reachable voter.
pub fn managers(n: usize, extra: &[&str]) -> Cluster {
    let mut c = Cluster::new();
    c.extra_args = extra.iter().map(|s| s.to_string()).collect();
    c.init().expect("first manager starts");
    for _ in 1..n {
        c.join_manager(0)
            .unwrap_or_else(|e| panic!("manager joins: {e:#}\n{}", c.dump()));
    }
    c
}

/// Parses `--format json` list output (one object per line).
pub fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// Service names as listed by node `i` (`--stale` reads that node's own copy).
pub fn service_names(c: &Cluster, i: usize, stale: bool) -> anyhow::Result<Vec<String>> {
    let mut args = vec!["service", "ls", "--format", "json"];
    if stale {
        args.push("--stale");
    }
    let out = c.ctl(i, &args)?;
    let mut v: Vec<String> = json_lines(&out)
        .into_iter()
        .map(|o| o["Name"].as_str().unwrap_or_default().to_string())
        .collect();
    v.sort();
    Ok(v)
}

pub const LONG: Duration = Duration::from_secs(60);

/// A rootfs tarball of busybox (from Debian's busybox-static) with `/etc/image-version`
/// containing `marker`; built once per marker under the build's `target/test-images` (never
/// in /tmp, where it would outlive the tests).
pub fn busybox_tar(marker: &str) -> std::path::PathBuf {
    // Tests of one process run concurrently: build each variant once, and atomically (test
    // processes running side by side each write their own partial file, then rename).
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-images");
    std::fs::create_dir_all(&dir).expect("create target/test-images");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/busybox-rootfs.sh");
    // Keyed by the script's content too, so a changed script builds a new image.
    let key = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::fs::read(&script).unwrap_or_default().hash(&mut h);
        h.finish()
    };
    let out = dir.join(format!("busybox-{marker}-{key:016x}.tar"));
    if !out.exists() {
        let tmp = dir.join(format!("busybox-{marker}.{}.partial", std::process::id()));
        let st = std::process::Command::new(script)
            .arg(&tmp)
            .arg(marker)
            .status()
            .expect("run deploy/busybox-rootfs.sh");
        assert!(
            st.success(),
            "building the busybox image failed (is busybox-static installed?)"
        );
        std::fs::rename(&tmp, &out).expect("rename the busybox tarball into place");
    }
    out
}

/// Network-namespace hosts and a cluster on them: host 0 runs the first manager, the others
/// join as workers. Every node has the busybox image. Fails the test (never skips it) when
/// this machine cannot create network namespaces: CI runs as root with iproute2 installed.
pub fn hosts_cluster(n: usize, extra: &[&str]) -> (swarm_testkit::netns::Hosts, Cluster) {
    hosts_cluster_with(n, 1, extra)
}

/// Like [`hosts_cluster`] with the first `managers` hosts joined as managers.
pub fn hosts_cluster_with(
    n: usize,
    managers: usize,
    extra: &[&str],
) -> (swarm_testkit::netns::Hosts, Cluster) {
    if let Err(why) = swarm_testkit::netns::available() {
        panic!("multi-host tests need network namespaces (root, iproute2, iptables): {why}");
    }
    let mut hosts = swarm_testkit::netns::Hosts::new().expect("create test bridge");
    for _ in 0..n {
        hosts.add().expect("add a netns host");
    }
    let mut c = Cluster::new();
    c.extra_args = extra.iter().map(|s| s.to_string()).collect();
    c.init_on(&hosts, 0)
        .unwrap_or_else(|e| panic!("manager starts: {e:#}"));
    let token = c.token(0, "worker").unwrap();
    let mtoken = c.token(0, "manager").unwrap();
    for h in 1..n {
        let t = if h < managers { &mtoken } else { &token };
        c.join_on(&hosts, h, 0, t).unwrap();
    }
    for i in 0..n {
        wait_socket(&c, i);
        import(&c, i, "busybox:latest", "v1");
    }
    swarm_testkit::wait_until("all nodes ready", LONG, || {
        let nodes = json_lines(&c.ctl(0, &["node", "ls", "--format", "json"]).ok()?);
        (nodes.len() == n && nodes.iter().all(|v| v["Status"] == "Ready")).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    (hosts, c)
}

/// Waits until node `i` serves its control socket (workers have one too).
pub fn wait_socket(c: &Cluster, i: usize) {
    swarm_testkit::wait_until("control socket", LONG, || c.ctl(i, &["image", "ls"]).ok())
        .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
}

/// Imports the busybox image (variant `marker`) as `name` on node `i`.
pub fn import(c: &Cluster, i: usize, name: &str, marker: &str) {
    let tar = busybox_tar(marker);
    c.ctl(i, &["image", "import", tar.to_str().unwrap(), name])
        .unwrap_or_else(|e| panic!("import on n{}: {e}", i + 1));
}

/// Tasks of a service as `service ps --format json` shows them.
pub fn tasks(c: &Cluster, via: usize, service: &str) -> Vec<serde_json::Value> {
    c.ctl(via, &["service", "ps", service, "--format", "json"])
        .map(|s| json_lines(&s))
        .unwrap_or_default()
}

/// Tasks of a service that are desired and observed running: (task name, node hostname).
pub fn running(c: &Cluster, via: usize, service: &str) -> Vec<(String, String)> {
    tasks(c, via, service)
        .into_iter()
        .filter(|t| {
            t["DesiredState"] == "Running"
                && t["CurrentState"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("Running")
        })
        .map(|t| {
            (
                t["Name"].as_str().unwrap_or("").to_string(),
                t["Node"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Pids of processes whose command line is exactly `cmdline` (space-separated).
pub fn pids_of(cmdline: &str) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
                let s = String::from_utf8_lossy(&c).replace('\0', " ");
                if s.trim_end() == cmdline {
                    out.push(pid);
                }
            }
        }
    }
    out.sort();
    out
}

/// What `/etc/image-version` says inside each running container whose command line is
/// `cmdline` (read through /proc/PID/root): the image variant each one runs.
pub fn versions_of(cmdline: &str) -> Vec<String> {
    pids_of(cmdline)
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/root/etc/image-version")).ok())
        .map(|s| s.trim().to_string())
        .collect()
}
