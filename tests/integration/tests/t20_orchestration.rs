//! Orchestration across hosts: three network-namespace hosts (one manager, two workers), real
//! containers from a busybox image.

use std::collections::HashMap;
use std::time::{Duration, Instant};
use swarm_integration::{hosts_cluster, init_tracing, json_lines, pids_of, running, tasks, LONG};
use swarm_testkit::wait_until;
use tracing::info;

fn per_node(r: &[(String, String)]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for (_, n) in r {
        *m.entry(n.clone()).or_default() += 1;
    }
    m
}

#[test]
fn replicated_service_runs_spreads_heals_and_scales() {
    init_tracing();
    let (_hosts, mut c) = hosts_cluster(3, &["--node-down-grace", "1s"]);
    let marker = format!("{}", 86_400 + std::process::id() % 10_000);
    let cmd = format!("sleep {marker}");

    info!("phase: create 3 replicas → 3 running containers, one per host");
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "sleeper",
            "--replicas",
            "3",
            "busybox",
            "sleep",
            &marker,
        ],
    )
    .unwrap();
    let r = wait_until("3 running tasks", LONG, || {
        let r = running(&c, 0, "sleeper");
        (r.len() == 3).then_some(r)
    })
    .unwrap_or_else(|e| panic!("{e}\n{:?}\n{}", tasks(&c, 0, "sleeper"), c.dump()));
    assert_eq!(per_node(&r).len(), 3, "spread over the three hosts: {r:?}");
    let pids = wait_until("3 container processes", LONG, || {
        let p = pids_of(&cmd);
        (p.len() == 3).then_some(p)
    })
    .unwrap();
    let ls = json_lines(&c.ctl(0, &["service", "ls", "--format", "json"]).unwrap());
    assert_eq!(ls[0]["Replicas"], "3/3");

    info!("phase: kill a container → its task is replaced");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pids[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("replacement running", LONG, || {
        let p = pids_of(&cmd);
        (p.len() == 3 && !p.contains(&pids[0]) && running(&c, 0, "sleeper").len() == 3)
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:?}", tasks(&c, 0, "sleeper")));
    let failed = tasks(&c, 0, "sleeper")
        .into_iter()
        .filter(|t| {
            t["CurrentState"]
                .as_str()
                .unwrap_or("")
                .starts_with("Failed")
        })
        .count();
    assert_eq!(failed, 1, "the killed task is kept as history");

    info!("phase: restart a worker's agent alone → no container restarted");
    let before = pids_of(&cmd);
    let on_n2 = running(&c, 0, "sleeper")
        .iter()
        .filter(|(_, node)| node == "n2")
        .count();
    assert!(on_n2 >= 1, "n2 runs a task");
    let offset = c.nodes[1].log_len();
    c.restart(1).unwrap();
    swarm_integration::wait_socket(&c, 1);
    // The events that could disturb a container: re-adoption from the local task db, then
    // the manager's full assignment set (anything missing from it would be stopped).
    wait_until(
        "n2 re-adopted its containers and applied its assignments",
        LONG,
        || {
            let log = c.nodes[1].log_since(offset);
            (log.matches("re-adopted running container").count() == on_n2
                && log.contains("full assignment set applied"))
            .then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.nodes[1].log_tail(50)));
    assert_eq!(
        pids_of(&cmd),
        before,
        "containers survive an agent restart untouched"
    );
    assert_eq!(running(&c, 0, "sleeper").len(), 3);

    info!("phase: SIGKILL worker n3's swarmd and its containers → tasks move within 10 s of node down");
    c.kill(2);
    let killed = c.kill_containers(2);
    assert!(killed >= 1, "n3 ran a container");
    wait_until("n3 marked down", LONG, || {
        let nodes = json_lines(&c.ctl(0, &["node", "ls", "--format", "json"]).ok()?);
        nodes
            .iter()
            .any(|n| n["Hostname"] == "n3" && n["Status"] == "Down")
            .then_some(())
    })
    .unwrap();
    let down_at = Instant::now();
    let r = wait_until("3 running on n1/n2", Duration::from_secs(30), || {
        let r = running(&c, 0, "sleeper");
        (r.len() == 3 && r.iter().all(|(_, n)| n != "n3")).then_some(r)
    })
    .unwrap_or_else(|e| panic!("{e}\n{:?}\n{}", tasks(&c, 0, "sleeper"), c.dump()));
    let took = down_at.elapsed();
    info!(?took, "tasks rescheduled after node down");
    assert!(took < Duration::from_secs(10), "rescheduling took {took:?}");
    assert_eq!(per_node(&r).len(), 2);

    info!("phase: drain n2 (following it) → its tasks move to n1");
    let out = c
        .ctl(
            0,
            &[
                "node",
                "update",
                "--availability",
                "drain",
                "--detach=false",
                "n2",
            ],
        )
        .unwrap();
    assert!(out.contains("n2: drained"), "{out}");
    // When the command returns, nothing runs on n2 any more.
    assert!(
        running(&c, 0, "sleeper").iter().all(|(_, n)| n != "n2"),
        "{:?}",
        tasks(&c, 0, "sleeper")
    );
    wait_until("all on n1", LONG, || {
        let r = running(&c, 0, "sleeper");
        (r.len() == 3 && r.iter().all(|(_, n)| n == "n1")).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:?}", tasks(&c, 0, "sleeper")));
    c.ctl(0, &["node", "update", "--availability", "active", "n2"])
        .unwrap();

    info!("phase: scale 3 → 10 → 0");
    c.ctl(0, &["service", "scale", "sleeper=10"]).unwrap();
    wait_until("10 running", LONG, || {
        (running(&c, 0, "sleeper").len() == 10 && pids_of(&cmd).len() == 10).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:?}", tasks(&c, 0, "sleeper")));
    c.ctl(0, &["service", "scale", "sleeper=0"]).unwrap();
    wait_until("0 running", LONG, || {
        (running(&c, 0, "sleeper").is_empty() && pids_of(&cmd).is_empty()).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:?}", tasks(&c, 0, "sleeper")));

    info!("phase: service rm removes its tasks");
    c.ctl(0, &["service", "scale", "sleeper=2"]).unwrap();
    wait_until("2 running", LONG, || {
        (pids_of(&cmd).len() == 2).then_some(())
    })
    .unwrap();
    c.ctl(0, &["service", "rm", "sleeper"]).unwrap();
    wait_until("containers gone", LONG, || {
        pids_of(&cmd).is_empty().then_some(())
    })
    .unwrap();
}

#[test]
fn global_services_constraints_and_missing_images() {
    init_tracing();
    let (hosts, mut c) = hosts_cluster(3, &[]);
    let marker = format!("{}", 96_400 + std::process::id() % 10_000);
    let cmd = format!("sleep {marker}");

    info!("phase: a global service runs one task per node");
    c.ctl(
        0,
        &[
            "service", "create", "--name", "agent", "--mode", "global", "busybox", "sleep", &marker,
        ],
    )
    .unwrap();
    wait_until("3 global tasks", LONG, || {
        let r = running(&c, 0, "agent");
        (r.len() == 3 && pids_of(&cmd).len() == 3).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:?}\n{}", tasks(&c, 0, "agent"), c.dump()));

    info!("phase: a host that joins later gets one too");
    let mut hosts = hosts;
    let h = hosts.add().unwrap();
    let token = c.token(0, "worker").unwrap();
    let i = c.join_on(&hosts, h, 0, &token).unwrap();
    swarm_integration::wait_socket(&c, i);
    swarm_integration::import(&c, i, "busybox:latest", "v1");
    wait_until("4 global tasks", LONG, || {
        (running(&c, 0, "agent").len() == 4).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:?}\n{}", tasks(&c, 0, "agent"), c.dump()));

    info!("phase: a constraint no node satisfies → pending with the reason");
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "picky",
            "--constraint",
            "node.labels.zone==east",
            "busybox",
            "sleep",
            "1d",
        ],
    )
    .unwrap();
    let reason = wait_until("a not-placed reason", LONG, || {
        let t = tasks(&c, 0, "picky");
        let t = t.first()?;
        let s = c.ctl(0, &["service", "ps", "--no-trunc", "picky"]).ok()?;
        (t["CurrentState"].as_str()?.starts_with("Pending") && s.contains("constraint"))
            .then_some(s)
    })
    .unwrap_or_else(|e| panic!("{e}\n{:?}", tasks(&c, 0, "picky")));
    info!(%reason, "service ps shows");
    let inspect: serde_json::Value =
        serde_json::from_str(&c.ctl(0, &["service", "inspect", "picky"]).unwrap()).unwrap();
    assert!(inspect.is_array());
    let ps = c
        .ctl(0, &["service", "ps", "picky", "--format", "json"])
        .unwrap();
    assert!(!ps.is_empty());
    let task_json = c.ctl(0, &["node", "ps", "n1"]).unwrap();
    assert!(!task_json.contains("picky"));
    let status_msg = reason;
    assert!(
        status_msg.contains("4 nodes: constraint node.labels.zone==east not met"),
        "{status_msg}"
    );

    info!("phase: adding the label places the task");
    c.ctl(0, &["node", "update", "--label-add", "zone=east", "n2"])
        .unwrap();
    wait_until("picky running on n2", LONG, || {
        let r = running(&c, 0, "picky");
        (r.len() == 1 && r[0].1 == "n2").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:?}", tasks(&c, 0, "picky")));

    info!("phase: an image missing on the host rejects the task with the error shown");
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "ghost",
            "--constraint",
            "node.hostname==n3",
            "--restart-condition",
            "none",
            "nosuchimage:1",
            "true",
        ],
    )
    .unwrap();
    let err = wait_until("rejected with an error", LONG, || {
        let t = tasks(&c, 0, "ghost");
        let t = t.first()?;
        (t["CurrentState"].as_str()?.starts_with("Rejected"))
            .then(|| t["Error"].as_str().unwrap_or("").to_string())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:?}", tasks(&c, 0, "ghost")));
    assert!(err.contains("nosuchimage"), "{err}");
    c.ctl(0, &["service", "rm", "agent", "picky", "ghost"])
        .unwrap();
    wait_until("containers gone", LONG, || {
        pids_of(&cmd).is_empty().then_some(())
    })
    .unwrap();
}
