//! `service logs` end to end on three network-namespace hosts (all managers) with real
//! containers: lines written by tasks on two hosts come back through the managers with
//! Docker's prefix; `--tail` and `--no-task-ids` shape them; `-f` keeps streaming through a
//! leader kill and picks up a task that starts later; an unknown service is a clear error.

use std::collections::BTreeSet;
use std::io::Read;
use std::process::{Command, Stdio};
use swarm_integration::{hosts_cluster_with, init_tracing, running, LONG};
use swarm_testkit::{bin, wait_until};
use tracing::info;

/// `(task prefix, node)` of each `web.1.<id>@node    | text` line.
fn sources(out: &str) -> BTreeSet<(String, String)> {
    out.lines()
        .filter_map(|l| {
            let (prefix, _) = l.split_once("    | ")?;
            let (task, node) = prefix.rsplit_once('@')?;
            Some((task.to_string(), node.to_string()))
        })
        .collect()
}

/// A follower's output file read so far.
fn read_file(p: &std::path::Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(p) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

#[test]
fn service_logs_come_from_every_host_and_follow_survives_a_leader_kill() {
    init_tracing();
    let (_hosts, mut c) = hosts_cluster_with(3, 3, &[]);
    let script =
        "i=0; while true; do echo \"tick $i\"; echo \"oops $i\" >&2; i=$((i+1)); sleep 0.2; done";
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "talk",
            "--replicas",
            "2",
            "--detach",
            "busybox:latest",
            "sh",
            "-c",
            script,
        ],
    )
    .unwrap();
    wait_until("2 talk tasks running on 2 hosts", LONG, || {
        let r = running(&c, 0, "talk");
        let hosts: BTreeSet<_> = r.iter().map(|t| t.1.clone()).collect();
        (r.len() == 2 && hosts.len() == 2).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));

    info!("phase: one-shot logs from both hosts, through any manager");
    let leader = c.leader(0).expect("a leader");
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let (out, err) = wait_until("lines of both tasks", LONG, || {
        let o = c.ctl_raw(follower, &["service", "logs", "talk"]).ok()?;
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        (o.status.success() && sources(&out).len() == 2 && sources(&err).len() == 2)
            .then_some((out, err))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    let names: BTreeSet<String> = c.nodes.iter().map(|n| n.name.clone()).collect();
    for (task, node) in sources(&out) {
        assert!(task.starts_with("talk."), "task prefix {task}");
        assert!(names.contains(&node), "node {node} is one of {names:?}");
    }
    // stdout lines on stdout, stderr lines on stderr.
    assert!(out.contains("| tick 0") && !out.contains("| oops"), "{out}");
    assert!(err.contains("| oops 0"), "{err}");

    // The tail counts the lines of both streams (the last one is often a stderr line).
    let o = c
        .ctl_raw(
            follower,
            &["service", "logs", "--tail", "1", "--no-task-ids", "talk"],
        )
        .unwrap();
    assert!(o.status.success());
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(out.lines().count(), 2, "one line per task:\n{out}");
    for (task, _) in sources(&out) {
        assert!(
            task == "talk.1" || task == "talk.2",
            "no task id with --no-task-ids: {task}"
        );
    }

    let e = c.ctl(follower, &["service", "logs", "nope"]).unwrap_err();
    assert!(e.to_string().contains("not found"), "{e}");

    info!("phase: -f through a follower keeps streaming while the leader is killed");
    let file = c.next_state_dir().with_extension("follow.out");
    let mut follow = Command::new(bin("swarmctl"))
        .arg("-H")
        .arg(c.nodes[follower].host())
        .args(["service", "logs", "-f", "--tail", "0", "talk"])
        .stdout(std::fs::File::create(&file).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("follow streams both tasks", LONG, || {
        (sources(&read_file(&file)).len() == 2).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    c.kill(leader);
    let mark = read_file(&file).len();
    let alive: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    wait_until("a new leader", LONG, || {
        alive
            .iter()
            .find_map(|i| c.leader(*i).filter(|l| *l != leader))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    // Lines keep coming from the task on a host that is still up.
    let survivors: BTreeSet<String> = alive.iter().map(|i| c.nodes[*i].name.clone()).collect();
    wait_until("lines after the leader kill", LONG, || {
        let after = read_file(&file)[mark..].to_string();
        sources(&after)
            .iter()
            .any(|(_, n)| survivors.contains(n))
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));

    info!("phase: a task that starts later is picked up");
    let before = sources(&read_file(&file));
    c.ctl(alive[0], &["service", "scale", "talk=4", "--detach"])
        .unwrap();
    wait_until("a new task's lines in the follow stream", LONG, || {
        let now = sources(&read_file(&file));
        now.iter()
            .any(|s| {
                !before.contains(s) && (s.0.starts_with("talk.3") || s.0.starts_with("talk.4"))
            })
            .then_some(())
    })
    .unwrap_or_else(|e| {
        let _ = follow.kill();
        let mut err = String::new();
        let _ = follow.stderr.take().unwrap().read_to_string(&mut err);
        panic!("{e}\nfollow stderr: {err}\n{}", c.dump())
    });
    // No line is printed twice across the reconnect.
    let all = read_file(&file);
    let mut seen = BTreeSet::new();
    for l in all.lines() {
        assert!(seen.insert(l.to_string()), "line printed twice: {l}");
    }
    let _ = follow.kill();
    let _ = follow.wait();
    let _ = std::fs::remove_file(&file);
}
