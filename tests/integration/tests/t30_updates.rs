//! Rolling updates, rollback and health checks across three hosts with real containers. Two
//! images built from the busybox rootfs, `busybox:v1` and `busybox:v2`, differ in
//! `/etc/image-version`, which the test reads inside each running container.

use std::time::Duration;
use swarm_integration::{
    hosts_cluster_with, import, init_tracing, json_lines, pids_of, running, tasks, versions_of,
    LONG,
};
use swarm_testkit::{wait_until, Cluster};
use tracing::info;

/// `salt` keeps the container command lines of concurrently running tests apart.
fn setup(managers: usize, salt: u32) -> (swarm_testkit::netns::Hosts, Cluster, String) {
    let (h, c) = hosts_cluster_with(3, managers, &[]);
    for i in 0..3 {
        import(&c, i, "busybox:v1", "v1");
        import(&c, i, "busybox:v2", "v2");
    }
    let marker = format!("{}", 76_400 + (std::process::id() % 10_000) * 10 + salt);
    (h, c, marker)
}

fn update_state(c: &Cluster, via: usize, svc: &str) -> (String, String) {
    let v: serde_json::Value = c
        .ctl(via, &["service", "inspect", svc])
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    let st = &v[0]["update_status"];
    (
        st["state"].as_str().unwrap_or("").to_string(),
        st["message"].as_str().unwrap_or("").to_string(),
    )
}

fn create_v1(c: &Cluster, cmd_marker: &str, extra: &[&str]) {
    let mut args = vec!["service", "create", "--name", "web", "--replicas", "6"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["busybox:v1", "sleep", cmd_marker]);
    c.ctl(0, &args).unwrap();
    let cmd = format!("sleep {cmd_marker}");
    wait_until("6 running on v1", LONG, || {
        let v = versions_of(&cmd);
        (v.len() == 6 && v.iter().all(|x| x == "v1")).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:?}\n{}", tasks(c, 0, "web"), c.dump()));
}

/// Polls during an update: (min running, max running) until all 6 run `want` and the update
/// state is `done_state`.
fn watch_update(
    c: &Cluster,
    via: usize,
    cmd: &str,
    want: &str,
    done_state: &str,
) -> (usize, usize) {
    let (mut min, mut max) = (usize::MAX, 0);
    wait_until("update to finish", Duration::from_secs(120), || {
        let v = versions_of(cmd);
        min = min.min(v.len());
        max = max.max(v.len());
        let (state, _) = update_state(c, via, "web");
        (v.len() == 6 && v.iter().all(|x| x == want) && state == done_state).then_some(())
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {:?} {:?}\n{:?}",
            versions_of(cmd),
            update_state(c, via, "web"),
            tasks(c, via, "web")
        )
    });
    (min, max)
}

#[test]
fn rolling_update_stop_first_then_start_first() {
    init_tracing();
    let (_h, c, marker) = setup(1, 1);
    let cmd = format!("sleep {marker}");
    create_v1(&c, &marker, &[]);

    info!("phase: v1 → v2, parallelism 2, stop-first: never fewer than 4 running");
    c.ctl(
        0,
        &[
            "service",
            "update",
            "--image",
            "busybox:v2",
            "--update-parallelism",
            "2",
            "web",
        ],
    )
    .unwrap();
    let (min, max) = watch_update(&c, 0, &cmd, "v2", "completed");
    info!(min, max, "running containers during the stop-first update");
    assert!(
        min >= 4,
        "stop-first with parallelism 2 kept only {min} running"
    );
    assert!(max <= 6, "stop-first ran {max} > 6");

    info!("phase: v2 → v1, parallelism 2, start-first: never more than 8 running");
    c.ctl(
        0,
        &[
            "service",
            "update",
            "--image",
            "busybox:v1",
            "--update-order",
            "start-first",
            "web",
        ],
    )
    .unwrap();
    let (min, max) = watch_update(&c, 0, &cmd, "v1", "completed");
    info!(min, max, "running containers during the start-first update");
    assert!(max <= 8, "start-first with parallelism 2 ran {max} > 8");
    assert!(min >= 6, "start-first dropped to {min}");

    info!("phase: history and rollback --to-version");
    let hist = c.ctl(0, &["service", "history", "web"]).unwrap();
    assert!(hist.contains("busybox:v2"), "{hist}");
    c.ctl(0, &["service", "rollback", "--to-version", "2", "web"])
        .unwrap();
    watch_update(&c, 0, &cmd, "v2", "rollback_completed");
    let out = c
        .ctl_raw(0, &["service", "rollback", "--to-version", "99", "web"])
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no spec version 99"));
    c.ctl(0, &["service", "rm", "web"]).unwrap();
    wait_until("containers gone", LONG, || {
        pids_of(&cmd).is_empty().then_some(())
    })
    .unwrap();
}

#[test]
fn failing_update_rolls_back_and_unhealthy_update_pauses() {
    init_tracing();
    let (_h, c, marker) = setup(1, 2);
    let cmd = format!("sleep {marker}");
    create_v1(&c, &marker, &["--restart-delay", "1s"]);

    info!("phase: update to a command that exits 1, failure action rollback → back on v1");
    c.ctl(
        0,
        &[
            "service",
            "update",
            "--image",
            "busybox:v2",
            "--args",
            "sh -c 'exit 1'",
            "--update-parallelism",
            "2",
            "--update-failure-action",
            "rollback",
            "--update-monitor",
            "2s",
            "web",
        ],
    )
    .unwrap();
    let state = wait_until("automatic rollback", Duration::from_secs(120), || {
        let (state, msg) = update_state(&c, 0, "web");
        (state == "rollback_completed").then_some(msg)
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {:?}\n{:?}",
            update_state(&c, 0, "web"),
            tasks(&c, 0, "web")
        )
    });
    info!(%state, "rolled back");
    wait_until("6 running on v1 again", LONG, || {
        let v = versions_of(&cmd);
        (v.len() == 6 && v.iter().all(|x| x == "v1") && running(&c, 0, "web").len() == 6)
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{:?}", versions_of(&cmd), tasks(&c, 0, "web")));

    info!("phase: update whose health check fails → paused, reason shown");
    c.ctl(
        0,
        &[
            "service",
            "update",
            "--image",
            "busybox:v2",
            "--health-cmd",
            "test -e /nonexistent",
            "--health-interval",
            "500ms",
            "--health-retries",
            "2",
            "--health-timeout",
            "2s",
            "web",
        ],
    )
    .unwrap();
    let msg = wait_until("update paused", Duration::from_secs(120), || {
        let (state, msg) = update_state(&c, 0, "web");
        (state == "paused").then_some(msg)
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {:?}\n{:?}",
            update_state(&c, 0, "web"),
            tasks(&c, 0, "web")
        )
    });
    assert!(msg.contains("unhealthy"), "{msg}");
    let ps = c.ctl(0, &["service", "ps", "--no-trunc", "web"]).unwrap();
    assert!(ps.contains("unhealthy"), "service ps shows why: {ps}");
    let ls = json_lines(&c.ctl(0, &["service", "ls", "--format", "json"]).unwrap());
    assert_eq!(ls[0]["UpdateStatus"], "paused");
    assert!(
        running(&c, 0, "web").len() >= 5,
        "a paused update leaves the rest running"
    );
}

#[test]
fn update_survives_leader_failure() {
    init_tracing();
    let (_h, mut c, marker) = setup(3, 3);
    let cmd = format!("sleep {marker}");
    create_v1(&c, &marker, &[]);
    let leader = c.leader(0).expect("leader");
    let other = (0..3).find(|i| *i != leader).unwrap();

    info!("phase: slow update (parallelism 1, delay 2s); kill the leader midway");
    c.ctl(
        other,
        &[
            "service",
            "update",
            "--image",
            "busybox:v2",
            "--update-delay",
            "2s",
            "web",
        ],
    )
    .unwrap();
    wait_until("2 tasks on v2", LONG, || {
        (versions_of(&cmd).iter().filter(|v| *v == "v2").count() >= 2).then_some(())
    })
    .unwrap();
    c.kill(leader);
    c.kill_containers(leader);

    info!("phase: the new leader finishes the update");
    watch_update(&c, other, &cmd, "v2", "completed");
    // No slot was updated twice: one v2 task per slot in the history.
    let ts = tasks(&c, other, "web");
    let mut per_slot = std::collections::HashMap::new();
    for t in ts.iter().filter(|t| t["Image"] == "busybox:v2") {
        let name = t["Name"]
            .as_str()
            .unwrap()
            .trim_start_matches(" \\_ ")
            .to_string();
        *per_slot.entry(name).or_insert(0) += 1;
    }
    info!(?per_slot, "v2 tasks per slot");
    assert_eq!(per_slot.len(), 6);
}

/// `swarmctl` under `timeout`: a follow that never ends fails the test instead of hanging it.
fn ctl_bounded(c: &Cluster, args: &[&str]) -> std::process::Output {
    std::process::Command::new("timeout")
        .arg("180")
        .arg(swarm_testkit::bin("swarmctl"))
        .arg("-H")
        .arg(c.nodes[0].host())
        .args(args)
        .output()
        .expect("run swarmctl")
}

#[test]
fn detach_false_follows_convergence_and_exits_1_on_a_rolled_back_update() {
    init_tracing();
    let (_h, c, marker) = setup(1, 3);
    info!("phase: create --detach=false waits until every task runs, then verifies");
    let out = ctl_bounded(
        &c,
        &[
            "service",
            "create",
            "--detach=false",
            "--name",
            "conv",
            "--replicas",
            "3",
            "--update-monitor",
            "1s",
            "--restart-delay",
            "1s",
            "busybox:v1",
            "sleep",
            &marker,
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for want in [
        "overall progress: 3 out of 3 tasks",
        "1/3: running",
        "verify: Waiting 1 seconds to verify that tasks are stable...",
        "verify: Service conv converged",
    ] {
        assert!(stdout.contains(want), "{want:?} missing from:\n{stdout}");
    }
    assert_eq!(
        running(&c, 0, "conv").len(),
        3,
        "it returned only once converged"
    );

    info!("phase: update --detach=false to a crashing command: rolled back, exit status 1");
    let out = ctl_bounded(
        &c,
        &[
            "service",
            "update",
            "--detach=false",
            "--image",
            "busybox:v2",
            "--args",
            "sh -c 'exit 1'",
            "--update-failure-action",
            "rollback",
            "--update-monitor",
            "2s",
            "conv",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("rollback: update failed, rolling back: task"),
        "the rollback is shown as such:\n{stdout}"
    );
    assert!(
        stderr.contains("conv: update rolled back: task")
            && !stderr.contains("update rolled back: update rolled back"),
        "why, once:\n{stderr}"
    );

    info!("phase: scale --detach=false");
    let out = ctl_bounded(&c, &["service", "scale", "--detach=false", "conv=1"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("overall progress: 1 out of 1 tasks"),
        "{stdout}"
    );
    // Without a terminal and without --detach=false, commands return at once (scripts).
    let out = ctl_bounded(&c, &["service", "scale", "conv=2"]);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("overall progress"));
}
