//! A host runs a thousand containers: a 1,000-replica service on ONE host reaches 1,000 real
//! running containers (nothing holds a thread per container, so nothing stalls at the
//! blocking pool's 512), and removing the service leaves nothing behind.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use swarm_integration::{hosts_cluster, init_tracing, json_lines, pids_of, tasks};
use swarm_testkit::{wait_until, Cluster};
use tracing::info;

const REPLICAS: usize = 1_000;
/// Generous: this machine has two cores, and the test also runs in a debug build.
const CONVERGE: Duration = Duration::from_secs(420);

/// Task count per (desired, current state) for the failure message and progress lines.
fn summary(c: &Cluster, service: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for t in tasks(c, 0, service) {
        let cur = t["CurrentState"].as_str().unwrap_or("");
        let cur = cur.split_whitespace().next().unwrap_or("");
        *m.entry(format!(
            "{}/{cur}",
            t["DesiredState"].as_str().unwrap_or("")
        ))
        .or_default() += 1;
    }
    m
}

fn threads_of(pid: u32) -> Option<usize> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

/// Everything a node's runtime keeps per container: state dirs, cgroups, overlay mounts.
fn leftovers(c: &Cluster, i: usize) -> Vec<String> {
    let state = c.state_dir(i);
    let mut out = Vec::new();
    let cdir = state.join("containers").join("containers");
    if let Ok(rd) = std::fs::read_dir(&cdir) {
        out.extend(
            rd.flatten()
                .map(|e| format!("state dir {}", e.path().display())),
        );
    }
    for d in swarm_testkit::cgroup_dirs(state) {
        if let Ok(rd) = std::fs::read_dir(&d) {
            out.extend(
                rd.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| format!("cgroup {}", e.path().display())),
            );
        }
    }
    let prefix = state.display().to_string();
    if let Ok(m) = std::fs::read_to_string("/proc/self/mountinfo") {
        out.extend(
            m.lines()
                .filter_map(|l| l.split_whitespace().nth(4))
                .filter(|t| t.starts_with(&prefix))
                .map(|t| format!("mount {t}")),
        );
    }
    let tdb = state.join("agent").join("tasks");
    if let Ok(rd) = std::fs::read_dir(&tdb) {
        out.extend(
            rd.flatten()
                .map(|e| format!("task db {}", e.path().display())),
        );
    }
    out
}

#[test]
fn a_thousand_replicas_run_on_one_host_and_go_away() {
    init_tracing();
    let (_hosts, c) = hosts_cluster(1, &["--log-level", "info"]);
    let marker = format!("{}", 66_400 + std::process::id() % 10_000);
    let cmd = format!("sleep {marker}");
    let swarmd = c.nodes[0].pid().expect("swarmd runs");
    let threads_idle = threads_of(swarmd).unwrap_or(0);

    info!("phase: create {REPLICAS} replicas on the one host");
    let start = Instant::now();
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "many",
            "--replicas",
            &REPLICAS.to_string(),
            "--restart-condition",
            "none",
            "busybox",
            "sleep",
            &marker,
        ],
    )
    .unwrap();
    let mut last_log = Instant::now();
    wait_until("1,000 running tasks and containers", CONVERGE, || {
        let s = summary(&c, "many");
        let running = s.get("Running/Running").copied().unwrap_or(0);
        let pids = pids_of(&cmd).len();
        if last_log.elapsed() > Duration::from_secs(15) {
            info!(?s, pids, elapsed = ?start.elapsed(), "progress");
            last_log = Instant::now();
        }
        (running == REPLICAS && pids == REPLICAS).then_some(())
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}\ntasks: {:?}\ncontainer processes: {}\nswarmd threads: {:?}\n{}",
            summary(&c, "many"),
            pids_of(&cmd).len(),
            threads_of(swarmd),
            c.dump()
        )
    });
    let took = start.elapsed();
    let threads = threads_of(swarmd).unwrap_or(0);
    info!(?took, threads_idle, threads, "all {REPLICAS} running");
    let ls = json_lines(&c.ctl(0, &["service", "ls", "--format", "json"]).unwrap());
    assert_eq!(ls[0]["Replicas"], format!("{REPLICAS}/{REPLICAS}"));
    // Threads do not follow the container count: tokio's workers, at most 16 runtime calls
    // on the blocking pool (plus idle ones not yet reaped), and a handful of others.
    assert!(
        threads < 100,
        "swarmd has {threads} threads with {REPLICAS} containers (idle: {threads_idle})"
    );

    info!("phase: service rm → every container and everything it used goes away");
    let start = Instant::now();
    c.ctl(0, &["service", "rm", "many"]).unwrap();
    wait_until("no container left", CONVERGE, || {
        (pids_of(&cmd).is_empty() && leftovers(&c, 0).is_empty()).then_some(())
    })
    .unwrap_or_else(|e| {
        let left = leftovers(&c, 0);
        panic!(
            "{e}\ncontainer processes: {}\nleft behind ({}): {:?}\ntasks: {:?}\n{}",
            pids_of(&cmd).len(),
            left.len(),
            &left[..left.len().min(20)],
            summary(&c, "many"),
            c.dump()
        )
    });
    info!(took = ?start.elapsed(), "all gone");
    assert!(
        c.ctl(0, &["service", "ls", "-q"])
            .unwrap()
            .trim()
            .is_empty(),
        "the service is still listed"
    );
}
