//! Cluster formation, replication of reads and writes across managers, joining with tokens.

use std::time::Duration;
use swarm_integration::{init_tracing, json_lines, managers, service_names};
use swarm_testkit::{wait_until, Cluster};
use tracing::info;

#[test]
fn three_managers_form_one_cluster_and_serve_the_same_state() {
    init_tracing();
    info!("phase: start a manager, join two more with the manager token");
    let c = managers(3, &[]);

    info!("phase: every manager sees three managers, exactly one leader");
    for i in 0..3 {
        let nodes = json_lines(&c.ctl(i, &["node", "ls", "--format", "json"]).unwrap());
        assert_eq!(nodes.len(), 3, "node ls on n{}: {nodes:?}", i + 1);
        let leaders = nodes
            .iter()
            .filter(|n| n["ManagerStatus"] == "Leader")
            .count();
        assert_eq!(leaders, 1, "exactly one leader: {nodes:?}");
        assert!(nodes
            .iter()
            .all(|n| n["ManagerStatus"] == "Leader" || n["ManagerStatus"] == "Reachable"));
        assert_eq!(nodes.iter().filter(|n| n["Self"] == true).count(), 1);
    }

    info!("phase: a service created through each manager is read back through the others");
    for i in 0..3 {
        let name = format!("web{i}");
        c.ctl(
            i,
            &[
                "service",
                "create",
                "--name",
                &name,
                "--replicas",
                "3",
                "busybox",
                "sleep",
                "1d",
            ],
        )
        .unwrap();
        for j in 0..3 {
            let names = service_names(&c, j, false).unwrap();
            assert!(names.contains(&name), "n{} misses {name}: {names:?}", j + 1);
        }
    }
    let inspect: serde_json::Value =
        serde_json::from_str(&c.ctl(2, &["service", "inspect", "web0"]).unwrap()).unwrap();
    assert_eq!(inspect[0]["spec"]["mode"]["replicated"]["replicas"], 3);
    assert_eq!(
        inspect[0]["spec"]["task"]["container"]["args"],
        serde_json::json!(["sleep", "1d"])
    );

    info!("phase: updates with a stale version are refused, through a follower too");
    let follower = (0..3).find(|i| c.leader(0) != Some(*i)).unwrap();
    c.ctl(follower, &["service", "scale", "web1=5"]).unwrap();
    let ls = json_lines(&c.ctl(0, &["service", "ls", "--format", "json"]).unwrap());
    let web1 = ls.iter().find(|s| s["Name"] == "web1").unwrap();
    assert_eq!(web1["Replicas"], "0/5");
}

#[test]
fn nodes_join_with_tokens_and_bad_tokens_are_refused() {
    init_tracing();
    let mut c = Cluster::new();
    c.init().unwrap();
    let worker_token = c.token(0, "worker").unwrap();
    let manager_token = c.token(0, "manager").unwrap();
    assert!(worker_token.starts_with("SWMTKN-1-"));
    assert_ne!(worker_token, manager_token);

    info!("phase: a worker joins with the worker token and shows up without manager status");
    let w = c.join(0, &worker_token).unwrap();
    wait_until(
        "worker to be listed as ready",
        Duration::from_secs(30),
        || {
            let nodes = json_lines(&c.ctl(0, &["node", "ls", "--format", "json"]).ok()?);
            nodes
                .iter()
                .find(|n| n["Hostname"] == c.nodes[w].name.as_str())
                .filter(|n| n["Status"] == "Ready" && n["ManagerStatus"] == "")
                .map(|_| ())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));

    info!("phase: a malformed token, a token of another cluster and a rotated token are refused");
    let run_join = |c: &mut Cluster, token: &str| -> String {
        let i = c.join(0, token).unwrap();
        let status = c.nodes[i].child.as_mut().unwrap().wait().unwrap();
        assert!(!status.success(), "join with {token} must fail");
        c.nodes[i].log_tail(5)
    };
    let log = run_join(&mut c, "SWMTKN-1-garbage");
    assert!(log.contains("invalid join token"), "{log}");

    let mut other = Cluster::new();
    other.init().unwrap();
    let foreign = other.token(0, "worker").unwrap();
    let log = run_join(&mut c, &foreign);
    assert!(log.contains("different cluster"), "{log}");

    c.ctl(0, &["cluster", "join-token", "worker", "--rotate"])
        .unwrap();
    let rotated = c.token(0, "worker").unwrap();
    assert_ne!(rotated, worker_token);
    let log = run_join(&mut c, &worker_token);
    assert!(log.contains("secret is not valid"), "{log}");

    info!("phase: the rotated token works and the joined worker was not affected");
    let w2 = c.join(0, &rotated).unwrap();
    wait_until("second worker ready", Duration::from_secs(30), || {
        let nodes = json_lines(&c.ctl(0, &["node", "ls", "--format", "json"]).ok()?);
        let ready = |name: &str| {
            nodes
                .iter()
                .any(|n| n["Hostname"] == name && n["Status"] == "Ready")
        };
        (ready(&c.nodes[w].name) && ready(&c.nodes[w2].name)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
}

#[test]
fn invalid_input_gets_clear_errors_and_writes_nothing() {
    init_tracing();
    let mut c = Cluster::new();
    c.init().unwrap();
    c.ctl(0, &["service", "create", "--name", "web", "busybox"])
        .unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["service", "create", "--name", "web", "busybox"],
            "already in use",
        ),
        (
            &["service", "create", "--replicas", "-1", "busybox"],
            "between 0",
        ),
        (
            &["service", "create", "--replicas", "1000000000", "busybox"],
            "between 0",
        ),
        (
            &["service", "create", "--name", "bad name", "busybox"],
            "invalid service name",
        ),
        (
            &[
                "service",
                "create",
                "--constraint",
                "node.labels.zone=east",
                "busybox",
            ],
            "invalid constraint",
        ),
        (
            &["service", "create", "--mode", "sometimes", "busybox"],
            "invalid --mode",
        ),
        (
            &["service", "create", "--limit-memory", "lots", "busybox"],
            "invalid size",
        ),
        (&["service", "inspect", "nope"], "service nope not found"),
        (&["service", "scale", "web"], "invalid scale specifier"),
        (&["service", "scale", "nope=2"], "not found"),
        (
            &["service", "update", "--image", "", "web"],
            "needs an image",
        ),
        (
            &["node", "update", "--availability", "sleepy", "n1"],
            "invalid availability",
        ),
        (&["node", "inspect", "ghost"], "node ghost not found"),
        (&["cluster", "join-token", "admin"], "unknown role"),
    ];
    for (args, want) in cases {
        let out = c.ctl_raw(0, args).unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(err.contains(want), "{args:?}: expected {want:?} in {err:?}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    let names = service_names(&c, 0, false).unwrap();
    assert_eq!(names, vec!["web".to_string()], "nothing else was written");
    let out = std::process::Command::new(swarm_testkit::bin("swarmctl"))
        .args(["-H", "unix:///nonexistent/swarmd.sock", "node", "ls"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is swarmd running there?"));
}

#[test]
fn metrics_endpoint_reports_raft_and_store_state() {
    init_tracing();
    let port = swarm_testkit::free_port();
    let mut c = Cluster::new();
    c.extra_args = vec!["--metrics-addr".into(), format!("127.0.0.1:{port}")];
    c.init().unwrap();
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "m1",
            "--replicas",
            "0",
            "busybox",
        ],
    )
    .unwrap();
    let scrape = || swarm_testkit::metrics::scrape(&format!("127.0.0.1:{port}")).unwrap();
    let m = scrape();
    assert!(m.starts_with("HTTP/1.1 200"), "{m}");
    assert!(m.contains("swarm_raft_leader 1"), "{m}");
    assert!(m.contains("swarm_store_objects{kind=\"service\"} 1"), "{m}");
    // Memory: the process's resident set, and the allocator's counts, each including the one
    // before it (jemalloc's resident is an upper bound: it may exceed the process's RSS).
    let gauge = |series: &str| {
        swarm_testkit::metrics::gauge(&m, series).unwrap_or_else(|| panic!("no {series} in\n{m}"))
    };
    assert!(
        gauge("process_resident_memory_bytes") > (4 << 20) as f64,
        "{m}"
    );
    let [allocated, active, resident] = ["allocated", "active", "resident"]
        .map(|k| gauge(&format!("swarm_allocator_bytes{{kind=\"{k}\"}}")));
    assert!(
        allocated > 0.0 && allocated <= active && active <= resident,
        "{m}"
    );
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "m2",
            "--replicas",
            "0",
            "busybox",
        ],
    )
    .unwrap();
    assert!(scrape().contains("swarm_store_objects{kind=\"service\"} 2"));
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = &stat[stat.rfind(") ").unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks
        / nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .unwrap()
            .unwrap() as f64
}

#[test]
fn metrics_accept_backs_off_when_out_of_file_descriptors() {
    init_tracing();
    let port = swarm_testkit::free_port();
    let mut c = Cluster::new();
    c.extra_args = vec!["--metrics-addr".into(), format!("127.0.0.1:{port}")];
    c.init().unwrap();
    let pid = c.nodes[0].pid().expect("swarmd runs");

    info!("phase: cap swarmd's open files at what it has open now, then connect");
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
        + 2;
    let st = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={open}:{open}"),
        ])
        .status()
        .expect("prlimit (util-linux) is installed");
    assert!(st.success());
    let conns: Vec<std::net::TcpStream> = (0..20)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    assert!(!conns.is_empty(), "connections wait in the listen backlog");

    info!("phase: accept fails with EMFILE; the loop must not spin on it");
    let before = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_seconds(pid) - before;
    assert!(
        used < 1.0,
        "swarmd burnt {used:.2} CPU-seconds in 3 s while accept failed (a spinning accept loop burns ~3)\n{}",
        c.nodes[0].log_tail(20)
    );
    drop(conns);
}

/// `service ls --format json` rows of node `i` by name: the Replicas column.
fn replicas(c: &Cluster, i: usize, name: &str) -> Option<String> {
    json_lines(&c.ctl(i, &["service", "ls", "--format", "json"]).ok()?)
        .into_iter()
        .find(|s| s["Name"] == name)
        .map(|s| s["Replicas"].as_str().unwrap_or("").to_string())
}

#[test]
fn one_manager_cluster_runs_services_and_keeps_them_across_a_restart() {
    init_tracing();
    let mut c = managers(1, &["--executor", "fake"]);
    let nodes = json_lines(&c.ctl(0, &["node", "ls", "--format", "json"]).unwrap());
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["ManagerStatus"], "Leader", "{nodes:?}");
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "solo",
            "--replicas",
            "2",
            "busybox",
        ],
    )
    .unwrap();
    wait_until("2/2 running", swarm_integration::LONG, || {
        (replicas(&c, 0, "solo")? == "2/2").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));

    info!("phase: SIGKILL the only manager and start it again with the same command line");
    c.kill(0);
    c.restart(0).unwrap();
    c.wait_ready(0).unwrap();
    c.ctl(0, &["service", "scale", "solo=3"]).unwrap();
    wait_until(
        "3/3 running after the restart",
        swarm_integration::LONG,
        || (replicas(&c, 0, "solo")? == "3/3").then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
}

#[test]
fn five_managers_tolerate_two_failures_and_refuse_writes_at_three() {
    init_tracing();
    let mut c = managers(5, &["--executor", "fake"]);
    let nodes = json_lines(&c.ctl(0, &["node", "ls", "--format", "json"]).unwrap());
    assert_eq!(nodes.len(), 5, "{nodes:?}");
    assert_eq!(
        nodes
            .iter()
            .filter(|n| n["ManagerStatus"] == "Leader")
            .count(),
        1,
        "{nodes:?}"
    );

    info!("phase: kill the leader and one more manager; the other three go on");
    let first = c.leader(0).expect("a leader");
    let second = (0..5).find(|i| *i != first).unwrap();
    c.kill(first);
    c.kill(second);
    let alive: Vec<usize> = (0..5).filter(|i| *i != first && *i != second).collect();
    let via = alive[0];
    wait_until(
        "a write with 3 of 5 managers",
        swarm_integration::LONG,
        || {
            c.ctl(
                via,
                &["service", "create", "--name", "three-of-five", "busybox"],
            )
            .ok()
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    for i in &alive {
        assert!(service_names(&c, *i, false)
            .unwrap()
            .contains(&"three-of-five".to_string()));
    }

    info!("phase: a third failure loses quorum: writes fail, naming the count");
    c.kill(alive[2]);
    let err = wait_until(
        "writes refused without quorum",
        swarm_integration::LONG,
        || {
            c.ctl(via, &["service", "create", "--name", "lost", "busybox"])
                .err()
                .map(|e| e.to_string())
                .filter(|e| e.contains("no quorum"))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    assert!(err.contains("2 of 5"), "{err}");

    info!("phase: one manager back restores quorum");
    c.restart(first).unwrap();
    wait_until("writes again with 3 of 5", swarm_integration::LONG, || {
        c.ctl(via, &["service", "create", "--name", "back", "busybox"])
            .ok()
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
}

#[test]
fn oversized_input_is_refused_with_its_limit_and_lists_stay_within_the_message_limit() {
    init_tracing();
    let mut c = Cluster::new();
    c.extra_args = vec!["--executor".into(), "fake".into()];
    c.init().unwrap();

    info!("phase: the CLI gets the limit, not its input echoed back");
    let label = format!("big={}", "x".repeat(100 * 1024));
    let out = c
        .ctl_raw(
            0,
            &[
                "service", "create", "--name", "big", "--label", &label, "busybox",
            ],
        )
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("the limit is 65536 bytes"), "{err}");
    assert!(
        err.len() < 1024,
        "the error repeats the input: {} bytes",
        err.len()
    );
    let mut args = vec!["service", "create", "--name", "wide"];
    let envs: Vec<String> = (0..5)
        .map(|i| format!("V{i}={}", "y".repeat(60 * 1024)))
        .collect();
    for e in &envs {
        args.extend(["--env", e.as_str()]);
    }
    args.push("busybox");
    let out = c.ctl_raw(0, &args).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("the limit is 262144 bytes"), "{err}");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use swarm_api::control::CreateServiceRequest;
        let mut client = c.client(0).await.unwrap();
        info!("phase: a 15 MiB label and a 1 MiB name through the API");
        let mut spec = swarm_types::spec::ServiceSpec::replicated("huge", "busybox", 0);
        spec.labels.insert("big".into(), "x".repeat(15 << 20));
        let e = client
            .create_service(CreateServiceRequest {
                spec: swarm_api::wire::to_bytes(&spec),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().len() < 1024, "{} bytes", e.message().len());
        let spec = swarm_types::spec::ServiceSpec::replicated(&"n".repeat(1 << 20), "busybox", 0);
        let e = client
            .create_service(CreateServiceRequest {
                spec: swarm_api::wire::to_bytes(&spec),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().len() < 1024, "{} bytes", e.message().len());

        info!("phase: 90 services of ~200 KiB each (18 MiB): each within the limits");
        let mut set = tokio::task::JoinSet::new();
        for w in 0..9 {
            let mut cl = client.clone();
            set.spawn(async move {
                for k in 0..10 {
                    let mut spec = swarm_types::spec::ServiceSpec::replicated(
                        &format!("fat{w}-{k}"),
                        "busybox",
                        0,
                    );
                    for i in 0..4 {
                        spec.labels.insert(format!("l{i}"), "z".repeat(50 * 1024));
                    }
                    cl.create_service(CreateServiceRequest {
                        spec: swarm_api::wire::to_bytes(&spec),
                        ..Default::default()
                    })
                    .await
                    .expect("a spec under the limits is accepted");
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    });
    info!("phase: listing them all works (pages stay under the message limit)");
    let names = service_names(&c, 0, false).unwrap();
    assert_eq!(names.len(), 90, "{}", names.len());
}
