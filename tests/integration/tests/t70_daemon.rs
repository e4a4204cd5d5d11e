//! `swarmd` as a daemon: SIGTERM stops it within seconds while its containers keep running,
//! and the next start re-adopts them (same process, not restarted).

use std::time::{Duration, Instant};
use swarm_integration::{hosts_cluster, init_tracing, pids_of, running, tasks, LONG};
use swarm_testkit::wait_until;
use tracing::info;

/// How long SIGTERM may take to stop swarmd.
const STOP_WITHIN: Duration = Duration::from_secs(5);

fn readoptions(c: &swarm_testkit::Cluster, i: usize) -> usize {
    std::fs::read_to_string(&c.nodes[i].log)
        .unwrap_or_default()
        .matches("re-adopted running container")
        .count()
}

#[test]
fn sigterm_stops_swarmd_and_leaves_containers_for_readoption() {
    init_tracing();
    let (_hosts, mut c) = hosts_cluster(1, &[]);
    let marker = format!("{}", 76_400 + std::process::id() % 10_000);
    let cmd = format!("sleep {marker}");

    info!("phase: one running container");
    c.ctl(
        0,
        &[
            "service", "create", "--name", "keeper", "busybox", "sleep", &marker,
        ],
    )
    .unwrap();
    let pid = wait_until("the container runs", LONG, || {
        let p = pids_of(&cmd);
        (p.len() == 1 && running(&c, 0, "keeper").len() == 1).then(|| p[0])
    })
    .unwrap_or_else(|e| panic!("{e}\n{:?}\n{}", tasks(&c, 0, "keeper"), c.dump()));
    let task_before = tasks(&c, 0, "keeper")[0]["ID"].clone();

    info!("phase: SIGTERM → swarmd exits within {STOP_WITHIN:?}, successfully");
    let sent = Instant::now();
    c.signal(0, nix::sys::signal::Signal::SIGTERM);
    let status = loop {
        let child = c.nodes[0].child.as_mut().expect("swarmd was started");
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            sent.elapsed() < STOP_WITHIN,
            "swarmd still running {STOP_WITHIN:?} after SIGTERM\n{}",
            c.dump()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = sent.elapsed();
    c.nodes[0].child = None;
    info!(?took, ?status, "swarmd stopped");
    assert!(status.success(), "exit status {status:?}\n{}", c.dump());

    info!("phase: the container still runs without its daemon");
    assert_eq!(pids_of(&cmd), vec![pid], "the container was stopped");

    info!("phase: same command line again → the task is re-adopted, not restarted");
    assert_eq!(readoptions(&c, 0), 0);
    c.restart(0).unwrap();
    swarm_integration::wait_socket(&c, 0);
    wait_until("the agent re-adopts the container", LONG, || {
        (readoptions(&c, 0) == 1).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    assert_eq!(pids_of(&cmd), vec![pid], "the container was restarted");
    let after = wait_until("the task reported running", LONG, || {
        let t = tasks(&c, 0, "keeper");
        (running(&c, 0, "keeper").len() == 1).then_some(t)
    })
    .unwrap_or_else(|e| panic!("{e}\n{:?}\n{}", tasks(&c, 0, "keeper"), c.dump()));
    assert_eq!(after.len(), 1, "no replacement task: {after:?}");
    assert_eq!(after[0]["ID"], task_before, "{after:?}");

    info!("phase: clean up");
    c.ctl(0, &["service", "rm", "keeper"]).unwrap();
    wait_until("container gone", LONG, || {
        pids_of(&cmd).is_empty().then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
}
