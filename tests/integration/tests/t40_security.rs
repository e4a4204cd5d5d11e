//! Cluster security: mutual TLS with role checks, CA-pinned joins, removed nodes, certificate
//! renewal, admin client bundles and on-disk permissions.

use std::os::unix::fs::PermissionsExt;
use swarm_api::control::control_client::ControlClient;
use swarm_api::raft::raft_client::RaftClient;
use swarm_integration::{init_tracing, json_lines, LONG};
use swarm_testkit::{wait_until, Cluster};
use tonic::Code;
use tracing::info;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// TLS client configuration made from a node's own certificate files.
fn config_of(c: &Cluster, i: usize) -> std::sync::Arc<rustls::ClientConfig> {
    let d = c.state_dir(i).join("certs");
    let r = |n: &str| std::fs::read_to_string(d.join(n)).unwrap();
    let certs =
        swarm_api::tls::NodeCerts::new(&r("ca.crt"), &r("node.crt"), &r("node.key")).unwrap();
    swarm_api::tls::client_config(&certs).unwrap()
}

fn cluster_with_worker(extra: &[&str]) -> (Cluster, usize) {
    let mut c = Cluster::new();
    c.extra_args = extra.iter().map(|s| s.to_string()).collect();
    c.init().unwrap();
    let token = c.token(0, "worker").unwrap();
    let w = c.join(0, &token).unwrap();
    let name = c.nodes[w].name.clone();
    wait_until("worker ready", LONG, || {
        let nodes = json_lines(&c.ctl(0, &["node", "ls", "--format", "json"]).ok()?);
        nodes
            .iter()
            .any(|n| n["Hostname"] == name.as_str() && n["Status"] == "Ready")
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    (c, w)
}

/// The node id in node `i`'s `node.json`.
fn node_id_of(c: &Cluster, i: usize) -> String {
    serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(c.state_dir(i).join("node.json")).unwrap(),
    )
    .unwrap()["node_id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn denied<T: std::fmt::Debug>(what: &str, r: Result<T, tonic::Status>) {
    match r {
        Err(s) if s.code() == Code::PermissionDenied => {}
        other => panic!("{what}: expected PermissionDenied, got {other:?}"),
    }
}

#[test]
fn worker_certificate_reaches_neither_control_nor_raft_and_plaintext_is_refused() {
    init_tracing();
    let (c, w) = cluster_with_worker(&[]);
    let addr = c.nodes[0].addr.clone();
    let worker_cfg = config_of(&c, w);
    let worker_id = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(c.state_dir(w).join("node.json")).unwrap(),
    )
    .unwrap()["node_id"]
        .as_str()
        .unwrap()
        .to_string();
    rt().block_on(async {
        info!("phase: a worker certificate calls every control RPC");
        let ch = swarm_api::tls::connect(&addr, worker_cfg.clone())
            .await
            .unwrap();
        let mut ctl = ControlClient::new(ch.clone());
        use swarm_api::control::*;
        denied("status", ctl.status(StatusRequest {}).await);
        denied(
            "list services",
            ctl.list_services(ListRequest::default()).await,
        );
        denied("get service", ctl.get_service(GetRequest::default()).await);
        denied(
            "create service",
            ctl.create_service(CreateServiceRequest::default()).await,
        );
        denied(
            "update service",
            ctl.update_service(UpdateServiceRequest::default()).await,
        );
        denied(
            "scale service",
            ctl.scale_service(ScaleServiceRequest::default()).await,
        );
        denied(
            "remove service",
            ctl.remove_service(RemoveRequest::default()).await,
        );
        denied(
            "rollback service",
            ctl.rollback_service(RollbackServiceRequest::default())
                .await,
        );
        denied("list tasks", ctl.list_tasks(ListRequest::default()).await);
        denied("list nodes", ctl.list_nodes(ListRequest::default()).await);
        denied("get node", ctl.get_node(GetRequest::default()).await);
        denied(
            "update node",
            ctl.update_node(UpdateNodeRequest::default()).await,
        );
        denied(
            "remove node",
            ctl.remove_node(RemoveRequest::default()).await,
        );
        denied("get cluster", ctl.get_cluster(GetRequest::default()).await);
        denied(
            "rotate token",
            ctl.rotate_join_token(RotateJoinTokenRequest::default())
                .await,
        );
        denied(
            "issue client cert",
            ctl.issue_client_cert(IssueClientCertRequest::default())
                .await,
        );
        denied("watch", ctl.watch(WatchRequest::default()).await);

        info!("phase: ... and every raft RPC");
        let mut raft = RaftClient::new(ch.clone());
        use swarm_api::raft::*;
        denied("append", raft.append_entries(RaftPayload::default()).await);
        denied("vote", raft.vote(RaftPayload::default()).await);
        denied(
            "snapshot",
            raft.install_snapshot(RaftPayload::default()).await,
        );
        denied(
            "forward write",
            raft.forward_write(ForwardWriteRequest::default()).await,
        );
        denied("read index", raft.read_index(ReadIndexRequest {}).await);

        info!("phase: a worker may not promote itself or speak for another node");
        let mut nodes = swarm_api::node::node_service_client::NodeServiceClient::new(ch.clone());
        let worker_token = c.token(0, "worker").unwrap();
        let r = nodes
            .promote_self(swarm_api::node::ManagerPromoteRequest {
                node_id: worker_id.clone(),
                token: worker_token,
            })
            .await;
        denied("promote with a worker token", r);
        let r = nodes
            .heartbeat(swarm_api::node::HeartbeatRequest {
                node_id: "someoneelse".into(),
                ..Default::default()
            })
            .await;
        denied("heartbeat for another node", r);
        // Its own heartbeat is fine.
        nodes
            .heartbeat(swarm_api::node::HeartbeatRequest {
                node_id: worker_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap();

        info!("phase: a plaintext client gets nowhere");
        let plain =
            swarm_api::transport::connect(&swarm_api::transport::Target::Tcp(addr.clone())).await;
        if let Ok(ch) = plain {
            let r = ControlClient::new(ch).status(StatusRequest {}).await;
            assert!(r.is_err(), "plaintext call must fail: {r:?}");
        }

        info!("phase: a join that pins another CA never talks to this manager");
        let wrong = swarm_api::tls::pinned_client_config(&"0".repeat(50)).unwrap();
        let err = swarm_api::tls::connect(&addr, wrong)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not match the join token"), "{err}");
    });
}

#[test]
fn certificates_renew_without_disturbing_tasks_and_removed_nodes_stay_out() {
    init_tracing();
    let (mut c, w) = cluster_with_worker(&[
        "--executor",
        "fake",
        "--cert-expiry",
        "1h",
        "--cert-renew-after",
        "3s",
    ]);
    let cert_path = c.state_dir(w).join("certs/node.crt");
    let first = std::fs::read_to_string(&cert_path).unwrap();
    let (_, total) = swarm_api::tls::validity_of(&first).unwrap();
    assert!(
        (3600..=4000).contains(&total),
        "--cert-expiry 1h gives a 1h certificate: {total}s"
    );
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "pinned",
            "--replicas",
            "2",
            "--constraint",
            "node.role==worker",
            "busybox",
            "sleep",
            "1d",
        ],
    )
    .unwrap();
    let ids = wait_until("2 tasks running on the worker", LONG, || {
        let t = json_lines(
            &c.ctl(0, &["service", "ps", "pinned", "--format", "json"])
                .ok()?,
        );
        let running: Vec<String> = t
            .iter()
            .filter(|t| {
                t["CurrentState"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("Running")
            })
            .map(|t| t["ID"].as_str().unwrap().to_string())
            .collect();
        (running.len() == 2).then_some(running)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));

    info!("phase: the worker renews its certificate");
    wait_until("a renewed certificate", LONG, || {
        let now = std::fs::read_to_string(&cert_path).ok()?;
        (now != first).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    wait_until("the worker logged its renewal", LONG, || {
        c.nodes[w]
            .log_tail(400)
            .contains("node certificate renewed")
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    let nodes = json_lines(&c.ctl(0, &["node", "ls", "--format", "json"]).unwrap());
    assert!(nodes.iter().all(|n| n["Status"] == "Ready"), "{nodes:?}");
    let t = json_lines(
        &c.ctl(0, &["service", "ps", "pinned", "--format", "json"])
            .unwrap(),
    );
    let still: Vec<String> = t
        .iter()
        .filter(|t| {
            t["CurrentState"]
                .as_str()
                .unwrap_or("")
                .starts_with("Running")
        })
        .map(|t| t["ID"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(still, ids, "renewal does not restart tasks");
    assert!(c.nodes[w]
        .log_tail(200)
        .contains("node certificate renewed"));

    info!("phase: stop the worker, remove it, start it again: it is refused");
    c.kill(w);
    let name = c.nodes[w].name.clone();
    c.ctl(0, &["node", "rm", "--force", &name]).unwrap();
    let cfg = config_of(&c, w);
    let offset = c.nodes[w].log_len();
    c.restart(w).unwrap();
    wait_until("the removed node is told it was removed", LONG, || {
        c.nodes[w]
            .log_since(offset)
            .contains("it was removed")
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.nodes[w].log_tail(40)));
    let nodes = json_lines(&c.ctl(0, &["node", "ls", "--format", "json"]).unwrap());
    assert!(
        !nodes.iter().any(|n| n["Hostname"] == name.as_str()),
        "removed node came back: {nodes:?}"
    );
    rt().block_on(async {
        let ch = swarm_api::tls::connect(&c.nodes[0].addr, cfg)
            .await
            .unwrap();
        let r = swarm_api::dispatcher::dispatcher_client::DispatcherClient::new(ch)
            .session(swarm_api::dispatcher::SessionRequest {
                node_id: "x".into(),
            })
            .await;
        denied("session with a removed node's certificate", r);
    });
}

#[test]
fn admin_bundle_works_over_tcp_and_state_is_private() {
    init_tracing();
    let mut c = Cluster::new();
    c.init().unwrap();
    let tcp = format!("tcp://{}", c.nodes[0].addr);
    let bin = swarm_testkit::bin("swarmctl");

    info!("phase: without a bundle, TCP is refused with the fix in the message");
    let out = std::process::Command::new(&bin)
        .args(["-H", &tcp, "node", "ls"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("client-bundle"));

    info!("phase: an admin bundle from the socket works over TCP");
    let dir = c.dir.path().join("bundle");
    c.ctl(
        0,
        &["cluster", "ca", "client-bundle", dir.to_str().unwrap()],
    )
    .unwrap();
    let out = std::process::Command::new(&bin)
        .args([
            "-H",
            &tcp,
            "--tls-dir",
            dir.to_str().unwrap(),
            "node",
            "ls",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_lines(&String::from_utf8_lossy(&out.stdout)).len(), 1);
    assert_eq!(
        std::fs::metadata(dir.join("key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    info!("phase: state dir, certificates and socket are root-only");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let sd = c.state_dir(0).to_path_buf();
    assert_eq!(mode(&sd), 0o700);
    assert_eq!(mode(&sd.join("certs")), 0o700);
    for f in [
        "certs/node.key",
        "certs/node.crt",
        "certs/ca.crt",
        "node.json",
        "swarmd.sock",
    ] {
        assert_eq!(mode(&sd.join(f)), 0o600, "{f}");
    }
    assert!(
        !sd.join("certs/ca.key").exists(),
        "the CA key lives only in the replicated store"
    );
}

fn managers_of(c: &Cluster, via: usize) -> Vec<(String, String)> {
    json_lines(
        &c.ctl(via, &["node", "ls", "--format", "json"])
            .unwrap_or_default(),
    )
    .into_iter()
    .filter(|n| n["ManagerStatus"] != "")
    .map(|n| {
        (
            n["Hostname"].as_str().unwrap_or("").to_string(),
            n["ManagerStatus"].as_str().unwrap_or("").to_string(),
        )
    })
    .collect()
}

#[test]
fn promote_and_demote_under_writes_and_refuse_quorum_loss() {
    init_tracing();
    let mut c = Cluster::new();
    c.extra_args = vec!["--executor".into(), "fake".into()];
    c.init().unwrap();
    let token = c.token(0, "worker").unwrap();
    for _ in 0..3 {
        c.join(0, &token).unwrap();
    }
    wait_until("4 nodes ready", LONG, || {
        let n = json_lines(&c.ctl(0, &["node", "ls", "--format", "json"]).ok()?);
        (n.len() == 4 && n.iter().all(|n| n["Status"] == "Ready")).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));

    info!("phase: promote n2 and n3");
    c.ctl(0, &["node", "promote", "n2", "n3"]).unwrap();
    wait_until("3 managers", LONG, || {
        let m = managers_of(&c, 0);
        (m.len() == 3 && m.iter().all(|(_, s)| s == "Leader" || s == "Reachable")).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:?}\n{}", managers_of(&c, 0), c.dump()));
    // The promoted nodes now serve the control API themselves.
    swarm_testkit::wait_until("n2 serves the control API", LONG, || {
        c.ctl(1, &["node", "ls"]).ok()
    })
    .unwrap();

    info!("phase: demote the leader while writes go on through n2");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let host = c.nodes[1].host();
    let writer = {
        let (stop, acked) = (stop.clone(), acked.clone());
        let bin = swarm_testkit::bin("swarmctl");
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let name = format!("w{i}");
                i += 1;
                let ok = std::process::Command::new(&bin)
                    .args([
                        "-H",
                        &host,
                        "service",
                        "create",
                        "--name",
                        &name,
                        "--replicas",
                        "0",
                        "busybox",
                    ])
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false);
                if ok {
                    acked.lock().unwrap().push(name);
                }
            }
        })
    };
    wait_until("the writer's first acknowledged write", LONG, || {
        (!acked.lock().unwrap().is_empty()).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    let leader = c.leader(1).expect("leader");
    let leader_name = c.nodes[leader].name.clone();
    c.ctl(1, &["node", "demote", &leader_name]).unwrap();
    let other_leader = if leader == 1 { 2 } else { 1 };
    wait_until("two managers, a new leader", LONG, || {
        let m = managers_of(&c, other_leader);
        (m.len() == 2
            && m.iter().any(|(_, s)| s == "Leader")
            && !m.iter().any(|(n, _)| *n == leader_name))
        .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:?}\n{}", managers_of(&c, other_leader), c.dump()));
    let so_far = acked.lock().unwrap().len();
    wait_until("writes acknowledged under the new leader", LONG, || {
        (acked.lock().unwrap().len() >= so_far + 5).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    info!(writes = acked.len(), "acknowledged during the demotion");
    assert!(!acked.is_empty(), "writes went through during the demotion");
    let names = swarm_integration::service_names(&c, other_leader, false).unwrap();
    for n in &acked {
        assert!(names.contains(n), "acknowledged write {n} lost");
    }

    info!("phase: with one of three managers down, demoting another is refused");
    c.ctl(other_leader, &["node", "promote", "n4"]).unwrap();
    // n4 must be a voter (Reachable), not only asked to become a manager, before it dies.
    wait_until("3 managers again", LONG, || {
        let m = managers_of(&c, other_leader);
        (m.len() == 3 && m.iter().all(|(_, s)| s == "Leader" || s == "Reachable")).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:?}\n{}", managers_of(&c, other_leader), c.dump()));
    c.kill(3);
    wait_until("the leader sees n4 unreachable", LONG, || {
        managers_of(&c, other_leader)
            .iter()
            .any(|(n, st)| n == "n4" && st == "Unreachable")
            .then_some(())
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{:?}\n{:?}\n{}",
            managers_of(&c, other_leader),
            c.ctl(other_leader, &["node", "ls"]),
            c.dump()
        )
    });
    let survivor = (1..3).find(|i| *i != other_leader).unwrap();
    let target = c.nodes[survivor].name.clone();
    let out = c
        .ctl_raw(other_leader, &["node", "demote", &target])
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "demote must be refused");
    assert!(err.contains("would lose quorum"), "{err}");
    assert_eq!(managers_of(&c, other_leader).len(), 3, "nothing changed");
}

/// A worker that slept through the whole change of managers (it knew only n1; n2 was
/// promoted and n1 demoted meanwhile) finds n2 through n1, which now answers as a worker and
/// names the managers it knows, instead of heartbeating into the void forever.
#[test]
fn a_worker_that_knew_only_a_demoted_manager_finds_the_new_one() {
    use nix::sys::signal::Signal;
    init_tracing();
    let mut c = Cluster::new();
    c.extra_args = vec!["--executor".into(), "fake".into()];
    c.init().unwrap();
    let token = c.token(0, "worker").unwrap();
    c.join(0, &token).unwrap();
    let w = c.join(0, &token).unwrap();
    let nodes_of = |c: &Cluster, via: usize| {
        json_lines(
            &c.ctl(via, &["node", "ls", "--format", "json"])
                .unwrap_or_default(),
        )
    };
    wait_until("3 nodes ready", LONG, || {
        let n = nodes_of(&c, 0);
        (n.len() == 3 && n.iter().all(|n| n["Status"] == "Ready")).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));

    info!("phase: n3 sleeps while n2 is promoted and n1 demoted");
    c.signal(w, Signal::SIGSTOP);
    c.ctl(0, &["node", "promote", "n2"]).unwrap();
    wait_until("2 managers", LONG, || {
        let m = managers_of(&c, 0);
        (m.len() == 2 && m.iter().all(|(_, s)| s == "Leader" || s == "Reachable")).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:?}\n{}", managers_of(&c, 0), c.dump()));
    wait_until("n2 serves the control API", LONG, || {
        c.ctl(1, &["node", "ls"]).ok()
    })
    .unwrap();
    let n1_log = c.nodes[0].log_len();
    c.ctl(1, &["node", "demote", "n1"]).unwrap();
    // Until its process restarts as a worker, n1 still answers heartbeats as a manager (and
    // would name n2): wait for the restart itself, not only for the store to say so.
    wait_until(
        "n1 restarted as a worker, n2 the only manager",
        LONG,
        || {
            (c.nodes[0].log_since(n1_log).contains("worker running")
                && managers_of(&c, 1).len() == 1)
                .then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{:?}\n{}", nodes_of(&c, 1), c.dump()));

    info!("phase: n3 wakes up knowing only n1");
    c.signal(w, Signal::SIGCONT);
    c.ctl(
        1,
        &[
            "service",
            "create",
            "--name",
            "everywhere",
            "--mode",
            "global",
            "busybox",
        ],
    )
    .unwrap();
    wait_until("n3 runs its task of the global service", LONG, || {
        swarm_integration::running(&c, 1, "everywhere")
            .iter()
            .any(|(_, node)| node == "n3")
            .then_some(())
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{:?}\n{:?}\n{}",
            swarm_integration::tasks(&c, 1, "everywhere"),
            nodes_of(&c, 1),
            c.dump()
        )
    });
}

#[test]
fn node_rpcs_act_only_for_the_certificate_s_node_also_through_a_follower() {
    init_tracing();
    let mut c = swarm_integration::managers(3, &["--executor", "fake"]);
    let leader = c.leader(0).expect("a leader");
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let token = c.token(0, "worker").unwrap();
    let w = c.join(follower, &token).unwrap();
    let wname = c.nodes[w].name.clone();
    wait_until("worker ready", LONG, || {
        let nodes = json_lines(&c.ctl(0, &["node", "ls", "--format", "json"]).ok()?);
        nodes
            .iter()
            .any(|n| n["Hostname"] == wname.as_str() && n["Status"] == "Ready")
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    let worker_id = node_id_of(&c, w);
    let other_id = node_id_of(&c, leader);
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "spread",
            "--replicas",
            "8",
            "busybox",
            "sleep",
            "1d",
        ],
    )
    .unwrap();
    let ps = wait_until("8 tasks running on 4 nodes", LONG, || {
        let t = json_lines(
            &c.ctl(0, &["service", "ps", "spread", "--format", "json"])
                .ok()?,
        );
        let running = t
            .iter()
            .filter(|t| {
                t["CurrentState"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("Running")
            })
            .count();
        (running == 8 && t.iter().any(|t| t["Node"] == wname.as_str())).then_some(t)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    drop(ps);
    // Full task ids (tables truncate them) with their nodes, from the control API.
    let all: Vec<swarm_types::Task> = rt().block_on(async {
        let mut s = c
            .client(0)
            .await
            .unwrap()
            .list_tasks(swarm_api::control::ListRequest::default())
            .await
            .unwrap()
            .into_inner();
        let mut out = Vec::new();
        while let Some(page) = s.message().await.unwrap() {
            for o in page.objects {
                if let swarm_types::Object::Task(t) =
                    swarm_api::wire::from_bytes("task", &o).unwrap()
                {
                    out.push(t);
                }
            }
        }
        out
    });
    let on_worker =
        |t: &&swarm_types::Task| t.node_id.as_ref().map(|n| n.as_str()) == Some(worker_id.as_str());
    let own_task = all.iter().find(on_worker).unwrap().id.to_string();
    let foreign_task = all
        .iter()
        .find(|t| !on_worker(t) && t.node_id.is_some())
        .unwrap()
        .id
        .to_string();

    rt().block_on(async {
        use swarm_api::dispatcher::dispatcher_client::DispatcherClient;
        use swarm_api::dispatcher::*;
        use swarm_api::node::node_service_client::NodeServiceClient;
        use swarm_api::node::HeartbeatRequest;
        let ch = swarm_api::tls::connect(&c.nodes[follower].addr, config_of(&c, w))
            .await
            .unwrap();

        info!("phase: a worker's heartbeat through a follower reaches the leader on its behalf");
        let mut nodes = NodeServiceClient::new(ch.clone());
        nodes
            .heartbeat(HeartbeatRequest {
                node_id: worker_id.clone(),
                ..Default::default()
            })
            .await
            .expect("own heartbeat through a follower");
        denied(
            "heartbeat for another node through a follower",
            nodes
                .heartbeat(HeartbeatRequest {
                    node_id: other_id.clone(),
                    ..Default::default()
                })
                .await,
        );

        info!("phase: a worker may not claim to forward for another node");
        let mut req = tonic::Request::new(HeartbeatRequest {
            node_id: other_id.clone(),
            ..Default::default()
        });
        req.metadata_mut()
            .insert(swarm_api::tls::ON_BEHALF_OF, other_id.parse().unwrap());
        denied("on-behalf-of from a worker", nodes.heartbeat(req).await);

        info!("phase: a session streams only the certificate's own node");
        let mut disp = DispatcherClient::new(ch.clone());
        denied(
            "session for another node",
            disp.session(SessionRequest {
                node_id: other_id.clone(),
            })
            .await,
        );
        let mut own = disp
            .session(SessionRequest {
                node_id: worker_id.clone(),
            })
            .await
            .expect("own session")
            .into_inner();
        let first = own
            .message()
            .await
            .expect("session message")
            .expect("a message");
        assert!(first.full, "a session starts with the full set");

        info!("phase: a batch with a foreign task: that item is refused, the rest applies");
        let status = |state: swarm_types::task::TaskState| {
            swarm_api::wire::to_bytes(&swarm_types::objects::TaskStatus {
                state,
                message: "reported by a test".into(),
                ..Default::default()
            })
        };
        let resp = disp
            .update_task_status(UpdateTaskStatusRequest {
                node_id: worker_id.clone(),
                updates: vec![
                    TaskStatusUpdate {
                        task_id: foreign_task.clone(),
                        status: status(swarm_types::task::TaskState::Failed),
                    },
                    TaskStatusUpdate {
                        task_id: own_task.clone(),
                        status: status(swarm_types::task::TaskState::Running),
                    },
                    TaskStatusUpdate {
                        task_id: "no-such-task".into(),
                        status: b"not a status".to_vec(),
                    },
                ],
            })
            .await
            .expect("a batch with bad items is answered, not refused whole")
            .into_inner();
        let mut refused: Vec<&str> = resp.rejected.iter().map(|r| r.task_id.as_str()).collect();
        refused.sort();
        let mut want = vec![foreign_task.as_str(), "no-such-task"];
        want.sort();
        assert_eq!(refused, want, "{:?}", resp.rejected);
    });
    let t = json_lines(
        &c.ctl(0, &["service", "ps", "spread", "--format", "json"])
            .unwrap(),
    );
    let foreign = t
        .iter()
        .find(|t| foreign_task.starts_with(t["ID"].as_str().unwrap_or("-")))
        .unwrap();
    assert!(
        foreign["CurrentState"]
            .as_str()
            .unwrap_or("")
            .starts_with("Running"),
        "a refused report changed nothing: {foreign}"
    );
}

#[test]
fn a_node_whose_runtime_cannot_open_is_down_with_the_reason_and_gets_no_tasks() {
    init_tracing();
    let mut c = Cluster::new();
    c.extra_args = vec!["--executor".into(), "fake".into()];
    c.init().unwrap();
    let token = c.token(0, "worker").unwrap();

    info!("phase: a worker whose image store is unusable (a file where its directory goes)");
    let name = format!("n{}", c.nodes.len() + 1);
    let state = c.dir.path().join(&name);
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("images"), "not a directory").unwrap();
    let join = c.nodes[0].addr.clone();
    // Only this node runs the real executor (and cannot open it).
    c.extra_args.clear();
    let w = c
        .add_on(
            &["--join".into(), join, "--token".into(), token],
            None,
            Vec::new(),
        )
        .unwrap();
    assert_eq!(c.nodes[w].name, name);
    let node = wait_until("the broken node is down with its reason", LONG, || {
        let out = c.ctl(0, &["node", "inspect", &name]).ok()?;
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        let n = v.as_array()?.first()?.clone();
        let msg = n["status"]["message"].as_str().unwrap_or("").to_string();
        (n["status"]["state"] == "down" && msg.contains("container runtime unavailable"))
            .then_some(n)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    info!(status = %node["status"], "broken node");
    let ls = json_lines(&c.ctl(0, &["node", "ls", "--format", "json"]).unwrap());
    let row = ls.iter().find(|n| n["Hostname"] == name.as_str()).unwrap();
    assert_eq!(row["Status"], "Down", "{row}");

    info!("phase: its share of a service runs elsewhere");
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "4",
            "busybox",
            "sleep",
            "1d",
        ],
    )
    .unwrap();
    let t = wait_until("4 tasks running", LONG, || {
        let t = json_lines(
            &c.ctl(0, &["service", "ps", "web", "--format", "json"])
                .ok()?,
        );
        (t.iter()
            .filter(|t| {
                t["CurrentState"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("Running")
            })
            .count()
            == 4)
            .then_some(t)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    assert!(
        t.iter().all(|t| t["Node"] != name.as_str()),
        "no task on the broken node: {t:?}"
    );
}
