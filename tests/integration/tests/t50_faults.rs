//! Manager failures: leader loss, full restarts, quorum loss and catching up by snapshot.

use nix::sys::signal::Signal;
use std::time::{Duration, Instant};
use swarm_api::control::{CreateServiceRequest, StatusRequest};
use swarm_integration::{init_tracing, managers, service_names, LONG};
use swarm_testkit::wait_until;
use swarm_types::spec::ServiceSpec;
use tracing::info;

fn spec(name: &str) -> Vec<u8> {
    swarm_api::wire::to_bytes(&ServiceSpec::replicated(name, "busybox", 1))
}

/// Manager `i`'s Raft status (applied, snapshot and purged indexes).
fn status(
    rt: &tokio::runtime::Runtime,
    c: &swarm_testkit::Cluster,
    i: usize,
) -> swarm_api::control::StatusResponse {
    rt.block_on(async {
        c.client(i)
            .await
            .unwrap()
            .status(StatusRequest {})
            .await
            .unwrap()
            .into_inner()
    })
}

#[test]
fn leader_failover_loses_nothing_acknowledged_and_killed_manager_catches_up() {
    init_tracing();
    let mut c = managers(3, &[]);
    let leader = c.leader(0).expect("a leader");
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();

    info!("phase: writes through a follower while the leader is SIGKILLed");
    let mut acked = Vec::new();
    for i in 0..10 {
        let n = format!("before{i}");
        c.ctl(others[0], &["service", "create", "--name", &n, "busybox"])
            .unwrap();
        acked.push(n);
    }
    c.kill(leader);
    let killed_at = Instant::now();
    let mut first_ok = None;
    let mut i = 0;
    while killed_at.elapsed() < Duration::from_secs(30) && acked.len() < 30 {
        let n = format!("during{i}");
        i += 1;
        if c.ctl(
            others[i % 2],
            &["service", "create", "--name", &n, "busybox"],
        )
        .is_ok()
        {
            first_ok.get_or_insert(killed_at.elapsed());
            acked.push(n);
        }
    }
    let first_ok =
        first_ok.unwrap_or_else(|| panic!("no write accepted after leader loss\n{}", c.dump()));
    info!(?first_ok, "first write accepted after leader kill");

    info!("phase: a new leader among the survivors; every acknowledged write is there");
    let new_leader = wait_until("new leader", LONG, || {
        c.leader(others[0]).filter(|l| *l != leader)
    })
    .unwrap();
    assert!(others.contains(&new_leader));
    let names = service_names(&c, others[1], false).unwrap();
    for n in &acked {
        assert!(names.contains(n), "acknowledged write {n} lost");
    }

    info!("phase: the killed manager restarts with the same command line and catches up");
    c.restart(leader).unwrap();
    c.wait_ready(leader).unwrap();
    wait_until("restarted manager has every write", LONG, || {
        let names = service_names(&c, leader, true).ok()?;
        acked.iter().all(|n| names.contains(n)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
}

#[test]
fn full_cluster_restart_keeps_all_state() {
    init_tracing();
    let mut c = managers(3, &[]);
    for i in 0..5 {
        c.ctl(
            i % 3,
            &["service", "create", "--name", &format!("svc{i}"), "busybox"],
        )
        .unwrap();
    }
    c.ctl(0, &["node", "update", "--label-add", "zone=east", "n2"])
        .unwrap();
    let token = c.token(0, "worker").unwrap();

    info!("phase: stop all three managers (one by SIGKILL), start them again");
    c.stop(0);
    c.kill(1);
    c.stop(2);
    for i in 0..3 {
        c.restart(i).unwrap();
    }
    for i in 0..3 {
        c.wait_ready(i)
            .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    }

    info!("phase: services, node labels and tokens are all there");
    let names = service_names(&c, 1, false).unwrap();
    assert_eq!(names, (0..5).map(|i| format!("svc{i}")).collect::<Vec<_>>());
    let n2: serde_json::Value =
        serde_json::from_str(&c.ctl(2, &["node", "inspect", "n2"]).unwrap()).unwrap();
    assert_eq!(n2[0]["spec"]["labels"]["zone"], "east");
    assert_eq!(c.token(1, "worker").unwrap(), token);
    c.ctl(1, &["service", "create", "--name", "after", "busybox"])
        .unwrap();
}

#[test]
fn write_without_quorum_fails_fast_with_a_clear_error() {
    init_tracing();
    let mut c = managers(3, &[]);
    c.ctl(0, &["service", "create", "--name", "web", "busybox"])
        .unwrap();

    for survivor_is_leader in [false, true] {
        info!(survivor_is_leader, "phase: stop two of three managers");
        let leader = c.leader(0).expect("leader");
        let survivor = if survivor_is_leader {
            leader
        } else {
            (0..3).find(|i| *i != leader).unwrap()
        };
        for i in (0..3).filter(|i| *i != survivor) {
            c.kill(i);
        }
        // The survivor has noticed when it reports both others unreachable.
        wait_until("the survivor sees two managers unreachable", LONG, || {
            let out = c
                .ctl(survivor, &["node", "ls", "--stale", "--format", "json"])
                .ok()?;
            let unreachable = swarm_integration::json_lines(&out)
                .iter()
                .filter(|n| n["ManagerStatus"] == "Unreachable")
                .count();
            (unreachable == 2).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
        let start = Instant::now();
        let err = c
            .ctl(
                survivor,
                &["service", "create", "--name", "lost", "busybox"],
            )
            .expect_err("a write without quorum must fail")
            .to_string();
        let took = start.elapsed();
        info!(?took, %err, "write refused");
        // Refused before it reached a log ("no quorum"), or proposed by a leader that then
        // found no quorum ("outcome unknown"): either way the count is named, and only the
        // first may promise that nothing was written.
        let certain = err.contains("no quorum: 1 of 3 managers reachable");
        assert!(
            certain || err.contains("outcome unknown") && err.contains("1 of 3 managers reachable"),
            "{err}"
        );
        assert!(
            took < Duration::from_secs(4),
            "the write took {took:?}; it must fail fast"
        );
        let rerr = c
            .ctl(survivor, &["service", "ls"])
            .expect_err("linearizable read needs quorum")
            .to_string();
        assert!(rerr.contains("no quorum"), "{rerr}");
        let stale = service_names(&c, survivor, true).unwrap();
        assert!(
            stale.contains(&"web".to_string()),
            "stale reads still work: {stale:?}"
        );
        assert!(
            !stale.contains(&"lost".to_string()),
            "the refused write is not there (yet)"
        );

        info!("phase: bring the others back; writes work again");
        for i in (0..3).filter(|i| *i != survivor) {
            c.restart(i).unwrap();
        }
        wait_until("writes accepted again", LONG, || {
            c.ctl(
                survivor,
                &[
                    "service",
                    "create",
                    "--name",
                    &format!("back{survivor_is_leader}"),
                    "busybox",
                ],
            )
            .ok()
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
        let names = service_names(&c, survivor, false).unwrap();
        if certain {
            assert!(
                !names.contains(&"lost".to_string()),
                "a write refused as not applied was applied: {err}"
            );
        } else if names.contains(&"lost".to_string()) {
            info!("the unconfirmed write applied once quorum returned, as its error allowed");
            c.ctl(survivor, &["service", "rm", "lost"]).unwrap();
        }
    }
}

#[test]
fn manager_down_through_2000_writes_catches_up_by_snapshot() {
    init_tracing();
    let mut c = managers(
        3,
        &[
            "--raft-snapshot-interval",
            "100",
            "--raft-logs-to-keep",
            "20",
        ],
    );
    let leader = c.leader(0).unwrap();
    let lagging = (0..3).find(|i| *i != leader).unwrap();
    let writer = (0..3).find(|i| *i != lagging).unwrap();

    info!("phase: stop one follower, write 2000 services through the others");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let lagging_applied = status(&rt, &c, lagging).applied_index;
    c.kill(lagging);
    rt.block_on(async {
        let client = c.client(writer).await.unwrap();
        let mut set = tokio::task::JoinSet::new();
        for w in 0..16 {
            let mut cl = client.clone();
            set.spawn(async move {
                for k in 0..125 {
                    // A debug build snapshotting every 100 entries under this load can hold
                    // an election; a write refused with "nothing was written" is retried, as
                    // its error asks (at most a few times: this is not the test's subject).
                    let mut refused = 0;
                    loop {
                        let r = cl
                            .create_service(CreateServiceRequest {
                                spec: spec(&format!("s{w}-{k}")),
                                ..Default::default()
                            })
                            .await;
                        match r {
                            Ok(_) => break,
                            Err(e)
                                if refused < 5 && e.message().contains("nothing was written") =>
                            {
                                refused += 1;
                                info!(error = %e.message(), "write refused during an election; retrying");
                            }
                            Err(e) => panic!("write: {e:?}"),
                        }
                    }
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    });
    let lead = status(&rt, &c, leader);
    info!(
        purged = lead.purged_index,
        snapshot = lead.snapshot_index,
        "leader log compacted"
    );
    // Writes are coalesced into fewer Raft entries than writes; what matters is that the
    // leader's snapshot and compaction moved past everything the stopped follower has.
    assert!(
        lead.snapshot_index > lagging_applied + 50,
        "leader took snapshots: {lead:?}"
    );
    assert!(
        lead.purged_index > lagging_applied,
        "leader compacted its log past the follower's last entry ({lagging_applied}): {lead:?}"
    );

    info!("phase: restart the follower; it can only catch up by installing the snapshot");
    c.restart(lagging).unwrap();
    c.wait_ready(lagging).unwrap();
    wait_until("follower has all 2000 services", LONG, || {
        let n = service_names(&c, lagging, true).ok()?.len();
        (n == 2000).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    let st = status(&rt, &c, lagging);
    assert!(
        st.snapshot_index > 0,
        "follower installed a snapshot: {st:?}"
    );
    c.signal(lagging, Signal::SIGTERM);
}

#[test]
fn a_manager_compacts_its_log_once_writes_stop() {
    // Between bursts the log since the last snapshot is held in memory until the next one;
    // the size threshold (32 MiB) and the entry count (10,000) are far off here, so only
    // compaction at rest can take this snapshot.
    init_tracing();
    let c = managers(1, &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let before = status(&rt, &c, 0).snapshot_index;
    info!("phase: write ~2 MiB of log in 100 services, then stop writing");
    rt.block_on(async {
        let mut cl = c.client(0).await.unwrap();
        for i in 0..100 {
            let mut s = ServiceSpec::replicated(&format!("big{i}"), "busybox", 0);
            s.task.container.env = vec![format!("PAD={}", "x".repeat(20 << 10))];
            cl.create_service(CreateServiceRequest {
                spec: swarm_api::wire::to_bytes(&s),
                ..Default::default()
            })
            .await
            .unwrap();
        }
    });
    let written = status(&rt, &c, 0).applied_index;
    let st = wait_until("a snapshot at rest covers the writes", LONG, || {
        let st = status(&rt, &c, 0);
        (st.snapshot_index >= written).then_some(st)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    assert!(st.snapshot_index > before, "{st:?}");
    assert_eq!(
        service_names(&c, 0, false).unwrap().len(),
        100,
        "the services survive compaction"
    );
}

#[test]
fn watchers_of_a_follower_are_told_to_resync_when_it_installs_a_snapshot() {
    init_tracing();
    let c = managers(
        3,
        &[
            "--raft-snapshot-interval",
            "100",
            "--raft-logs-to-keep",
            "20",
        ],
    );
    let leader = c.leader(0).unwrap();
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        info!("phase: watch the follower, then pause it");
        let mut watch = c
            .client(follower)
            .await
            .unwrap()
            .watch(swarm_api::control::WatchRequest::default())
            .await
            .unwrap()
            .into_inner();
        c.signal(follower, Signal::SIGSTOP);

        info!("phase: 400 writes while it sleeps; the leader compacts past it");
        let mut client = c.client(leader).await.unwrap();
        for k in 0..400 {
            client
                .create_service(CreateServiceRequest {
                    spec: spec(&format!("w{k}")),
                    ..Default::default()
                })
                .await
                .expect("write with 2 of 3 managers");
        }
        c.signal(follower, Signal::SIGCONT);

        info!("phase: the follower catches up by snapshot and its watchers get a reset");
        let got = tokio::time::timeout(LONG, async {
            while let Some(ev) = watch.message().await.expect("watch stream") {
                if ev.reset {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(
            got,
            Ok(true),
            "no reset event after a snapshot install\n{}",
            c.dump()
        );
    });
    wait_until("the follower serves all 400 services", LONG, || {
        (service_names(&c, follower, true).ok()?.len() == 400).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
}

/// Regression (chaos suite, DemotePromote): a manager demoted while it is paused is removed
/// from Raft before its own store learns the new role. It must still become a worker when it
/// wakes up: its certificate renewal is signed by the leader, not by its own stale manager
/// (which kept issuing manager certificates, so the node never switched), and `node.role`
/// then says worker.
#[test]
fn manager_demoted_while_paused_becomes_a_worker_when_it_wakes() {
    init_tracing();
    let c = managers(3, &[]);
    let leader = c.leader(0).expect("a leader");
    for round in 0..2 {
        let f = (0..3).find(|i| *i != leader).unwrap();
        let name = c.nodes[f].name.clone();
        info!(round, %name, "phase: pause a follower and demote it");
        c.signal(f, Signal::SIGSTOP);
        let out = c.ctl(leader, &["node", "demote", &name]);
        c.signal(f, Signal::SIGCONT);
        out.unwrap_or_else(|e| panic!("demote {name}: {e}\n{}", c.dump()));

        info!(round, %name, "phase: it wakes up and runs as a worker");
        wait_until(&format!("{name} runs as a worker"), LONG, || {
            let v: serde_json::Value =
                serde_json::from_str(&c.ctl(leader, &["node", "inspect", &name]).ok()?).ok()?;
            (v[0]["role"] == "worker"
                && v[0]["manager_status"].is_null()
                && v[0]["status"]["state"] == "ready")
                .then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));

        info!(round, %name, "phase: promote it back; it is a voter again");
        c.ctl(leader, &["node", "promote", &name]).unwrap();
        wait_until(&format!("{name} is a reachable manager"), LONG, || {
            let out = c.ctl(leader, &["node", "ls", "--format", "json"]).ok()?;
            swarm_integration::json_lines(&out)
                .iter()
                .any(|v| v["Hostname"] == name.as_str() && v["ManagerStatus"] == "Reachable")
                .then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    }
}

/// Regression (CI, 2026-12-02): a manager demoted and promoted again before it ever ran as a
/// worker keeps its manager certificate, but the leader removed its old Raft id and gave the
/// node a new one. It must rejoin under the new id; it used to see "desired role = manager =
/// my role", do nothing, and stay out of the membership for good.
#[test]
fn manager_demoted_and_promoted_while_paused_rejoins_raft() {
    init_tracing();
    let c = managers(3, &[]);
    let leader = c.leader(0).expect("a leader");
    let f = (0..3).find(|i| *i != leader).unwrap();
    let name = c.nodes[f].name.clone();
    info!(%name, "phase: pause a follower, demote it and promote it back while it sleeps");
    c.signal(f, Signal::SIGSTOP);
    let demoted = c.ctl(leader, &["node", "demote", &name]);
    let promoted = c.ctl(leader, &["node", "promote", &name]);
    c.signal(f, Signal::SIGCONT);
    demoted.unwrap_or_else(|e| panic!("demote {name}: {e}\n{}", c.dump()));
    promoted.unwrap_or_else(|e| panic!("promote {name}: {e}\n{}", c.dump()));

    info!(%name, "phase: it wakes up and rejoins Raft under its new id");
    wait_until(&format!("{name} is a reachable manager"), LONG, || {
        let out = c.ctl(leader, &["node", "ls", "--format", "json"]).ok()?;
        swarm_integration::json_lines(&out)
            .iter()
            .any(|v| v["Hostname"] == name.as_str() && v["ManagerStatus"] == "Reachable")
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    // A write through the rejoined manager commits: it is a working member, not a stray.
    // (The leader may list it as reachable a moment before its restart in the manager role
    // has bound its control socket again: retry until the socket answers.)
    wait_until(&format!("a write through {name}"), LONG, || {
        c.ctl(
            f,
            &[
                "service", "create", "-d", "--name", "after", "busybox", "sleep", "1d",
            ],
        )
        .ok()
        .or_else(|| {
            // A retry after a create that did commit finds the service.
            c.ctl(f, &["service", "inspect", "after"]).ok()
        })
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
}

/// Regression (chaos suite, TotalRestart, seed 7): every manager SIGKILLed right after an
/// acknowledged write. The leader comes back leading in the same term (openraft restores it
/// at once) with a commit index that may predate the write (it is saved without a flush), and
/// its first linearizable reads used that stale index: the acknowledged write was missing.
/// Every read that succeeds after the restart must see the write.
#[test]
fn reads_after_a_total_restart_see_the_last_acknowledged_write() {
    init_tracing();
    let mut c = managers(3, &[]);
    for round in 0..3 {
        let leader = c.leader(0).expect("a leader");
        let label = format!("round={round}");
        info!(
            round,
            "phase: write through the leader, then SIGKILL every manager at once"
        );
        c.ctl(leader, &["node", "update", "--label-add", &label, "n1"])
            .unwrap();
        for i in 0..3 {
            c.kill(i);
        }
        for i in 0..3 {
            c.restart(i).unwrap();
        }
        info!(
            round,
            "phase: the first reads that succeed, through every manager"
        );
        let start = Instant::now();
        let mut seen = 0;
        while start.elapsed() < LONG && seen < 20 {
            for i in [leader, (leader + 1) % 3, (leader + 2) % 3] {
                if let Ok(out) = c.ctl(i, &["node", "inspect", "n1"]) {
                    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
                    assert_eq!(
                        v[0]["spec"]["labels"]["round"],
                        round.to_string().as_str(),
                        "a linearizable read through n{} after the restart misses the acknowledged write",
                        i + 1
                    );
                    seen += 1;
                }
            }
        }
        assert!(
            seen > 0,
            "no read succeeded after the restart\n{}",
            c.dump()
        );
        c.wait_ready(leader).unwrap();
    }
}
