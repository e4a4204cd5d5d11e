//! Networks end to end on three network-namespace hosts with real containers: two tasks of
//! one service on different hosts reach each other over an overlay (VXLAN between the hosts);
//! a task on an `--internal` network cannot leave it while one on a normal network can; two
//! networks are isolated from each other; connectivity survives killing and restarting every
//! `swarmd`; removing a network in use is refused naming the service; and once a host's tasks
//! are gone, nothing the node installed (links, nftables table) is left in its namespace.
//! Tasks without `--network` get their node's default bridge (an address, NAT outside,
//! isolated from cluster networks, addresses kept across restarts); `--network none` only
//! loopback.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;
use swarm_integration::{hosts_cluster, init_tracing, json_lines, pids_of, running, LONG};
use swarm_testkit::{wait_until, Cluster};
use tracing::info;

/// Runs `args` inside the network namespace of process `pid` (the host's busybox and
/// iproute2, the container's interfaces). Returns (success, stdout + stderr).
fn in_netns(pid: i32, args: &[&str]) -> (bool, String) {
    let out = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .arg("--")
        .args(args)
        .output()
        .expect("run nsenter");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn ping(from_pid: i32, to: &str) -> (bool, String) {
    in_netns(from_pid, &["busybox", "ping", "-c", "1", "-W", "1", to])
}

/// The IPv4 address of `eth0` in the namespace of `pid`.
fn eth0_addr(pid: i32) -> Option<String> {
    let (ok, out) = in_netns(pid, &["ip", "-j", "-4", "addr", "show", "dev", "eth0"]);
    if !ok {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    v[0]["addr_info"][0]["local"].as_str().map(String::from)
}

/// Waits until `n` tasks of `service` run and `n` containers with `cmdline` exist; returns
/// their pids and the nodes the tasks run on.
fn wait_tasks(c: &Cluster, service: &str, cmdline: &str, n: usize) -> (Vec<i32>, BTreeSet<String>) {
    wait_until(&format!("{n} {service} tasks running"), LONG, || {
        let r = running(c, 0, service);
        let pids = pids_of(cmdline);
        (r.len() == n && pids.len() == n).then(|| (pids, r.into_iter().map(|t| t.1).collect()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()))
}

/// Links and nftables tables of node `tag` inside host namespace `ns`.
fn node_leftovers(ns: &str, tag: &str) -> Vec<String> {
    let mut out = Vec::new();
    let links = Command::new("ip")
        .args(["-n", ns, "-o", "link", "show"])
        .output()
        .expect("ip link");
    for l in String::from_utf8_lossy(&links.stdout).lines() {
        let name = l
            .split(": ")
            .nth(1)
            .unwrap_or("")
            .split('@')
            .next()
            .unwrap_or("");
        if name.starts_with(&format!("sb{tag}"))
            || name.starts_with(&format!("sv{tag}"))
            || name.starts_with(&format!("se{tag}"))
        {
            out.push(format!("link {name}"));
        }
    }
    let tables = Command::new("nsenter")
        .args([
            &format!("--net=/var/run/netns/{ns}"),
            "--",
            "nft",
            "list",
            "tables",
        ])
        .output()
        .expect("nft list tables");
    for l in String::from_utf8_lossy(&tables.stdout).lines() {
        if l.contains(&format!("swarm-{tag}")) {
            out.push(l.to_string());
        }
    }
    out
}

#[test]
fn overlay_networks_connect_tasks_across_hosts_and_isolate_networks() {
    init_tracing();
    let (hosts, mut c) = hosts_cluster(3, &[]);
    let nodes = json_lines(&c.ctl(0, &["node", "ls", "--format", "json"]).unwrap());
    let tags: Vec<(String, String)> = nodes
        .iter()
        .map(|n| {
            (
                n["Hostname"].as_str().unwrap().to_string(),
                n["ID"].as_str().unwrap().trim_end_matches(" *")[..5].to_string(),
            )
        })
        .collect();

    info!("phase: networks are created with the subnets asked for");
    c.ctl(
        0,
        &[
            "network",
            "create",
            "-d",
            "overlay",
            "--subnet",
            "10.77.1.0/24",
            "ov",
        ],
    )
    .unwrap();
    c.ctl(
        0,
        &[
            "network",
            "create",
            "-d",
            "overlay",
            "--subnet",
            "10.77.2.0/24",
            "--internal",
            "inner",
        ],
    )
    .unwrap();
    c.ctl(
        0,
        &[
            "network",
            "create",
            "-d",
            "overlay",
            "--subnet",
            "10.77.3.0/24",
            "other",
        ],
    )
    .unwrap();
    let ls = json_lines(&c.ctl(0, &["network", "ls", "--format", "json"]).unwrap());
    assert_eq!(ls.len(), 3, "{ls:?}");

    info!("phase: two tasks of one service on two hosts reach each other over the overlay");
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "2",
            "--replicas-max-per-node",
            "1",
            "--network",
            "ov",
            "busybox",
            "sleep",
            "3801",
        ],
    )
    .unwrap();
    let (web, web_nodes) = wait_tasks(&c, "web", "sleep 3801", 2);
    assert_eq!(
        web_nodes.len(),
        2,
        "the two tasks run on two hosts: {web_nodes:?}"
    );
    let addrs: Vec<String> = web
        .iter()
        .map(|p| eth0_addr(*p).unwrap_or_else(|| panic!("task container {p} has no eth0 address")))
        .collect();
    assert_ne!(addrs[0], addrs[1]);
    for a in &addrs {
        assert!(a.starts_with("10.77.1."), "{a} is on the overlay's subnet");
    }
    fn reach(c: &Cluster, from: i32, to: &str, what: &str) {
        wait_until(what, Duration::from_secs(30), || {
            ping(from, to).0.then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", ping(from, to).1, c.dump()));
    }
    reach(&c, web[0], &addrs[1], "task 1 pings task 2 across hosts");
    reach(&c, web[1], &addrs[0], "task 2 pings task 1 across hosts");
    // The outside (the test bridge's address in the root namespace) is reachable from a
    // normal network through the host's NAT: the internal check below can fail.
    let outside = {
        let ip = &hosts.ips[0];
        format!("{}.254", &ip[..ip.rfind('.').unwrap()])
    };
    reach(
        &c,
        web[0],
        &outside,
        "a task on a normal network reaches the outside",
    );

    info!("phase: a task on an internal network cannot leave it");
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "inner",
            "--network",
            "inner",
            "busybox",
            "sleep",
            "3802",
        ],
    )
    .unwrap();
    let (inner, _) = wait_tasks(&c, "inner", "sleep 3802", 1);
    let (ok, out) = ping(inner[0], &outside);
    assert!(!ok, "an internal task reached {outside}: {out}");
    let (ok, out) = ping(inner[0], &hosts.ips[1]);
    assert!(!ok, "an internal task reached host {}: {out}", hosts.ips[1]);

    info!("phase: two networks are isolated from each other");
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "iso",
            "--mode",
            "global",
            "--network",
            "other",
            "busybox",
            "sleep",
            "3803",
        ],
    )
    .unwrap();
    let (iso, _) = wait_tasks(&c, "iso", "sleep 3803", 3);
    for p in &iso {
        for a in &addrs {
            let (ok, out) = ping(*p, a);
            assert!(
                !ok,
                "a task on network other reached {a} on network ov: {out}"
            );
        }
    }

    info!("phase: removing a network in use is refused, naming the service");
    let out = c.ctl_raw(0, &["network", "rm", "ov"]).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("in use by service web"),
        "{err}"
    );

    info!("phase: every swarmd killed and restarted: same containers, still connected");
    for i in 0..3 {
        c.restart(i).unwrap();
    }
    swarm_integration::wait_socket(&c, 0);
    reach(
        &c,
        web[0],
        &addrs[1],
        "task 1 pings task 2 after the restarts",
    );
    reach(
        &c,
        web[1],
        &addrs[0],
        "task 2 pings task 1 after the restarts",
    );
    assert_eq!(
        pids_of("sleep 3801"),
        web,
        "the containers were not restarted"
    );
    // A task created after the restart joins the same overlay and reaches the old ones.
    c.ctl(0, &["service", "scale", "web=3"]).unwrap();
    let (web3, _) = wait_tasks(&c, "web", "sleep 3801", 3);
    let new = *web3
        .iter()
        .find(|p| !web.contains(p))
        .expect("a new container");
    for a in &addrs {
        reach(
            &c,
            new,
            a,
            "a task started after the restarts reaches the old ones",
        );
    }

    info!("phase: a host removed from the cluster stops its tasks and removes what it installed");
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "edge",
            "--mode",
            "global",
            "--network",
            "ov",
            "busybox",
            "sleep",
            "3804",
        ],
    )
    .unwrap();
    wait_tasks(&c, "edge", "sleep 3804", 3);
    let (_, tag3) = tags.iter().find(|(h, _)| h == "n3").expect("node n3");
    let containers_of_n3 = || {
        std::fs::read_dir(c.nodes[2].state_dir.join("containers/containers"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert!(containers_of_n3() > 0, "n3 runs a task of edge");
    assert!(
        !node_leftovers(&hosts.names[2], tag3).is_empty(),
        "n3 has its overlay"
    );
    let offset = c.nodes[2].log_len();
    c.ctl(0, &["node", "rm", "--force", "n3"]).unwrap();
    wait_until(
        "n3 removed its containers and what it installed",
        LONG,
        || {
            (containers_of_n3() == 0 && node_leftovers(&hosts.names[2], tag3).is_empty())
                .then_some(())
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {} containers, {:?}\n{}",
            containers_of_n3(),
            node_leftovers(&hosts.names[2], tag3),
            c.dump()
        )
    });
    assert!(c.nodes[2]
        .log_since(offset)
        .contains("this node was removed from the cluster"));
    wait_tasks(&c, "edge", "sleep 3804", 2);

    info!("phase: once a host's tasks are gone, nothing the node installed is left");
    for s in ["web", "inner", "iso", "edge"] {
        c.ctl(0, &["service", "rm", s]).unwrap();
    }
    wait_until("containers gone", LONG, || {
        (pids_of("sleep 3801").is_empty()
            && pids_of("sleep 3802").is_empty()
            && pids_of("sleep 3803").is_empty()
            && pids_of("sleep 3804").is_empty())
        .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    for (i, ns) in hosts.names.iter().enumerate() {
        let (_, tag) = &tags
            .iter()
            .find(|(h, _)| *h == format!("n{}", i + 1))
            .expect("node of host");
        wait_until(&format!("host {ns} clean"), Duration::from_secs(20), || {
            node_leftovers(ns, tag).is_empty().then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", node_leftovers(ns, tag), c.dump()));
    }
    for n in ["ov", "inner", "other"] {
        wait_until(
            &format!("network {n} removable"),
            Duration::from_secs(30),
            || c.ctl(0, &["network", "rm", n]).ok(),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    }
    assert!(json_lines(&c.ctl(0, &["network", "ls", "--format", "json"]).unwrap()).is_empty());
}

/// 500 tasks on one overlay /16 hold 500 distinct addresses inside it, as the managers
/// allocated them and `network inspect --verbose` shows them (fake containers: this is the
/// cluster's address management end to end, not the data plane).
#[test]
fn five_hundred_tasks_on_one_overlay_slash_16_get_distinct_addresses() {
    init_tracing();
    let mut c = Cluster::new();
    c.extra_args = vec!["--executor".into(), "fake".into()];
    c.init().unwrap();
    c.ctl(
        0,
        &[
            "network",
            "create",
            "--driver",
            "overlay",
            "--subnet",
            "10.99.0.0/16",
            "big",
        ],
    )
    .unwrap();
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "many",
            "--replicas",
            "500",
            "--network",
            "big",
            "busybox",
        ],
    )
    .unwrap();
    wait_until("500 tasks running", LONG, || {
        (running(&c, 0, "many").len() == 500).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    let out = c
        .ctl(0, &["network", "inspect", "--verbose", "big"])
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let svc = &v[0]["Services"]["many"];
    let vip = svc["VIP"].as_str().unwrap().to_string();
    let addrs: Vec<String> = svc["Tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["Info"]["State"] == "running")
        .map(|t| t["EndpointIP"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(addrs.len(), 500, "{svc}");
    let distinct: BTreeSet<&String> = addrs.iter().collect();
    assert_eq!(distinct.len(), 500, "no address twice");
    for a in &addrs {
        assert!(a.starts_with("10.99."), "{a} inside 10.99.0.0/16");
        assert_ne!(a, &vip, "no task holds the service's virtual IP");
        assert_ne!(a, "10.99.0.1", "no task holds the gateway");
    }
}

/// The addresses the node's default bridge handed out inside host namespace `ns`: what each
/// task's host-side veth carries in its alias (`swarm-addr:ADDR:TASK`).
fn bridge_addrs(ns: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-n", ns, "-j", "link", "show"])
        .output()
        .expect("ip link");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.as_array()
        .into_iter()
        .flatten()
        // Ports of a default bridge (`sb<tag>-0`); veths on cluster networks carry the alias too.
        .filter(|l| l["master"].as_str().is_some_and(|m| m.ends_with("-0")))
        .filter_map(|l| {
            let alias = l["ifalias"].as_str()?.strip_prefix("swarm-addr:")?;
            Some(alias.split(':').next()?.to_string())
        })
        .collect()
}

#[test]
fn tasks_without_a_network_get_their_node_s_default_bridge() {
    init_tracing();
    let (hosts, mut c) = hosts_cluster(2, &[]);
    let outside = {
        let ip = &hosts.ips[0];
        format!("{}.254", &ip[..ip.rfind('.').unwrap()])
    };

    info!(
        "phase: a task without --network has an address on its node's bridge and reaches outside"
    );
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "plain",
            "--replicas",
            "3",
            "busybox",
            "sleep",
            "3811",
        ],
    )
    .unwrap();
    let (plain, _) = wait_tasks(&c, "plain", "sleep 3811", 3);
    for p in &plain {
        let a = eth0_addr(*p).unwrap_or_else(|| panic!("task container {p} has no eth0 address"));
        assert!(
            a.starts_with("172.") || a.starts_with("192.168."),
            "{a} is in Docker's default bridge pools"
        );
        wait_until(
            "a task on the default bridge reaches the outside",
            Duration::from_secs(30),
            || ping(*p, &outside).0.then_some(()),
        )
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", ping(*p, &outside).1, c.dump()));
        let (_, resolv) = in_netns(*p, &["cat", &format!("/proc/{p}/root/etc/resolv.conf")]);
        assert!(
            resolv.contains("nameserver 172.") || resolv.contains("nameserver 192.168."),
            "{resolv}"
        );
    }

    info!("phase: --network none gives only a loopback interface");
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "lonely",
            "--network",
            "none",
            "busybox",
            "sleep",
            "3812",
        ],
    )
    .unwrap();
    let (lonely, _) = wait_tasks(&c, "lonely", "sleep 3812", 1);
    let (ok, links) = in_netns(lonely[0], &["ip", "-o", "link", "show"]);
    assert!(
        ok && links.lines().count() == 1 && links.contains("lo:"),
        "{links}"
    );
    let pretty = c
        .ctl(0, &["service", "inspect", "--pretty", "lonely"])
        .unwrap();
    assert!(
        pretty.contains("Networks:") && pretty.contains("none"),
        "{pretty}"
    );

    info!("phase: the default bridge is isolated from cluster networks");
    c.ctl(
        0,
        &[
            "network",
            "create",
            "-d",
            "overlay",
            "--subnet",
            "10.78.1.0/24",
            "ov",
        ],
    )
    .unwrap();
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "ov",
            "--mode",
            "global",
            "--network",
            "ov",
            "busybox",
            "sleep",
            "3813",
        ],
    )
    .unwrap();
    let (ov, _) = wait_tasks(&c, "ov", "sleep 3813", 2);
    for o in &ov {
        let a = eth0_addr(*o).expect("overlay task address");
        for p in &plain {
            let (ok, out) = ping(*p, &a);
            assert!(
                !ok,
                "a default-bridge task reached {a} on network ov: {out}"
            );
        }
    }

    info!("phase: the names of the predefined networks are refused for cluster networks");
    let out = c.ctl_raw(0, &["network", "create", "bridge"]).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("reserved"), "{err}");
    let out = c
        .ctl_raw(
            0,
            &[
                "service",
                "create",
                "--network",
                "host",
                "busybox",
                "sleep",
                "1",
            ],
        )
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("host networking"),
        "{err}"
    );

    info!("phase: every swarmd restarted: same addresses; new tasks get addresses nobody holds");
    for i in 0..2 {
        c.restart(i).unwrap();
    }
    swarm_integration::wait_socket(&c, 0);
    assert_eq!(
        pids_of("sleep 3811"),
        plain,
        "the containers were not restarted"
    );
    c.ctl(0, &["service", "scale", "plain=6"]).unwrap();
    let (plain6, _) = wait_tasks(&c, "plain", "sleep 3811", 6);
    let mut total = 0;
    for ns in &hosts.names {
        let addrs = bridge_addrs(ns);
        let distinct: BTreeSet<&String> = addrs.iter().collect();
        assert_eq!(
            distinct.len(),
            addrs.len(),
            "host {ns} handed out one address twice: {addrs:?}"
        );
        total += addrs.len();
    }
    assert_eq!(total, 6, "one default-bridge address per task");
    for p in &plain6 {
        wait_until(
            "every task reaches the outside after the restarts",
            Duration::from_secs(30),
            || ping(*p, &outside).0.then_some(()),
        )
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", ping(*p, &outside).1, c.dump()));
    }

    info!("phase: once the tasks are gone, the default bridge and its rules are gone");
    let tags: Vec<(String, String)> =
        json_lines(&c.ctl(0, &["node", "ls", "--format", "json"]).unwrap())
            .iter()
            .map(|n| {
                (
                    n["Hostname"].as_str().unwrap().to_string(),
                    n["ID"].as_str().unwrap().trim_end_matches(" *")[..5].to_string(),
                )
            })
            .collect();
    for s in ["plain", "lonely", "ov"] {
        c.ctl(0, &["service", "rm", s]).unwrap();
    }
    wait_until("containers gone", LONG, || {
        (pids_of("sleep 3811").is_empty()
            && pids_of("sleep 3812").is_empty()
            && pids_of("sleep 3813").is_empty())
        .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    for (i, ns) in hosts.names.iter().enumerate() {
        let (_, tag) = tags
            .iter()
            .find(|(h, _)| *h == format!("n{}", i + 1))
            .expect("node of host");
        wait_until(&format!("host {ns} clean"), Duration::from_secs(20), || {
            node_leftovers(ns, tag).is_empty().then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", node_leftovers(ns, tag), c.dump()));
    }
}

/// The daemon log without its colour escapes.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `iperf3` from `from_ns` (a `nsenter --net=` target) to `addr`: Gbit/s received.
fn iperf(server_ns: &str, from_ns: &str, addr: &str) -> f64 {
    let mut server = Command::new("nsenter")
        .args([
            &format!("--net={server_ns}"),
            "--",
            "iperf3",
            "-s",
            "-1",
            "-p",
            "5201",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start iperf3 server (apt-get install iperf3)");
    std::thread::sleep(Duration::from_millis(500));
    let out = Command::new("nsenter")
        .args([
            &format!("--net={from_ns}"),
            "--",
            "iperf3",
            "-c",
            addr,
            "-p",
            "5201",
            "-t",
            "5",
            "-J",
        ])
        .output()
        .expect("run iperf3 client");
    let _ = server.kill();
    let _ = server.wait();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("iperf3 json: {e}: {}", String::from_utf8_lossy(&out.stdout)));
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("no throughput in {v}"))
        / 1e9
}

/// busybox ping, 200 echoes 10 ms apart: (min, avg, max) round trip in ms.
fn rtt(from_ns: &str, addr: &str) -> (f64, f64, f64) {
    let out = Command::new("nsenter")
        .args([
            &format!("--net={from_ns}"),
            "--",
            "busybox",
            "ping",
            "-q",
            "-c",
            "200",
            "-i",
            "0.01",
            addr,
        ])
        .output()
        .expect("run ping");
    let s = String::from_utf8_lossy(&out.stdout);
    let line = s
        .lines()
        .find(|l| l.contains("min/avg/max"))
        .unwrap_or_else(|| panic!("no ping summary: {s}"));
    let nums: Vec<f64> = line
        .split('=')
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches(" ms")
        .split('/')
        .map(|x| x.parse().unwrap())
        .collect();
    (nums[0], nums[1], nums[2])
}

/// Throughput and latency container to container on one host (bridge network) and across
/// hosts (VXLAN overlay), against the veth + bridge path between the two host namespaces that
/// the overlay itself runs over; and the time the agent's network setup adds to a task start.
/// Run with `deploy/bench/network.sh` (needs iperf3).
#[test]
#[ignore = "benchmark: deploy/bench/network.sh"]
fn bench_network_throughput_latency_and_setup_time() {
    init_tracing();
    let (hosts, c) = hosts_cluster(2, &[]);
    for (driver, subnet, name) in [
        ("bridge", "10.78.1.0/24", "br"),
        ("overlay", "10.78.2.0/24", "ov"),
    ] {
        c.ctl(
            0,
            &["network", "create", "-d", driver, "--subnet", subnet, name],
        )
        .unwrap();
    }
    let place = |name: &str, node: &str, net: &str, marker: &str| {
        c.ctl(
            0,
            &[
                "service",
                "create",
                "--name",
                name,
                "--detach",
                "--constraint",
                &format!("node.hostname=={node}"),
                "--network",
                net,
                "busybox",
                "sleep",
                marker,
            ],
        )
        .unwrap();
    };
    place("b1", "n1", "br", "3901");
    place("b2", "n1", "br", "3902");
    place("o1", "n1", "ov", "3903");
    place("o2", "n2", "ov", "3904");
    let pid = |marker: &str, svc: &str| wait_tasks(&c, svc, &format!("sleep {marker}"), 1).0[0];
    let (b1, b2, o1, o2) = (
        pid("3901", "b1"),
        pid("3902", "b2"),
        pid("3903", "o1"),
        pid("3904", "o2"),
    );
    let ns = |p: i32| format!("/proc/{p}/ns/net");
    let host_ns = |i: usize| format!("/var/run/netns/{}", hosts.names[i]);
    let b2_addr = eth0_addr(b2).unwrap();
    let o2_addr = eth0_addr(o2).unwrap();
    // The overlay path must work before it is measured.
    wait_until("o1 reaches o2", LONG, || ping(o1, &o2_addr).0.then_some(()))
        .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    wait_until("b1 reaches b2", LONG, || ping(b1, &b2_addr).0.then_some(()))
        .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));

    let mut rows = Vec::new();
    for (what, server, client, addr) in [
        (
            "host n1 → host n2 (veth + test bridge, the path VXLAN runs over)",
            host_ns(1),
            host_ns(0),
            hosts.ips[1].clone(),
        ),
        (
            "task → task, same host, bridge network",
            ns(b2),
            ns(b1),
            b2_addr.clone(),
        ),
        (
            "task → task, across hosts, overlay (VXLAN)",
            ns(o2),
            ns(o1),
            o2_addr.clone(),
        ),
    ] {
        let gbps = iperf(&server, &client, &addr);
        let (min, avg, max) = rtt(&client, &addr);
        println!("{what}: {gbps:.2} Gbit/s, rtt min/avg/max {min:.3}/{avg:.3}/{max:.3} ms");
        rows.push(format!(
            "| {what} | {gbps:.2} | {min:.3} / {avg:.3} / {max:.3} |"
        ));
    }

    // The agent logs the time of each container's network setup (between create and start).
    let setup_times = |text: &str| -> Vec<f64> {
        let log = strip_ansi(text);
        let mut v: Vec<f64> = log
            .lines()
            .filter(|l| l.contains("network setup"))
            .filter_map(|l| {
                let v = l.split("elapsed=").nth(1)?.split_whitespace().next()?;
                if let Some(x) = v.strip_suffix("ms") {
                    x.parse::<f64>().ok()
                } else if let Some(x) = v.strip_suffix("µs") {
                    x.parse::<f64>().ok().map(|u| u / 1000.0)
                } else {
                    v.strip_suffix('s')?.parse::<f64>().ok().map(|s| s * 1000.0)
                }
            })
            .collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v
    };
    let first: Vec<f64> = c
        .nodes
        .iter()
        .flat_map(|n| setup_times(&n.log_since(0)))
        .collect();
    // Ten more tasks on a network that already exists on the host: the steady-state cost.
    let mark = c.nodes[0].log_len();
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "many",
            "--detach",
            "--replicas",
            "10",
            "--constraint",
            "node.hostname==n1",
            "--network",
            "br",
            "busybox",
            "sleep",
            "3905",
        ],
    )
    .unwrap();
    wait_tasks(&c, "many", "sleep 3905", 10);
    let setup_ms = setup_times(&c.nodes[0].log_since(mark));
    let work_ms = setup_times(
        &strip_ansi(&c.nodes[0].log_since(mark))
            .replace("elapsed=", "waited=")
            .replace("work=", "elapsed="),
    );
    println!("\nnetwork setup, first containers of each network on a host (ms): {first:?}");
    println!("\n| path | throughput Gbit/s | rtt ms min / avg / max |\n|---|---:|---|");
    for r in rows {
        println!("{r}");
    }
    println!(
        "network setup, 10 more containers on an existing bridge network (ms): median {:.1}, {:?}",
        setup_ms.get(setup_ms.len() / 2).copied().unwrap_or(0.0),
        setup_ms
    );
    println!(
        "  of which the setup itself (without waiting for a runtime slot): median {:.1}, {:?}",
        work_ms.get(work_ms.len() / 2).copied().unwrap_or(0.0),
        work_ms
    );
    let phases = |since: usize| {
        for l in strip_ansi(&c.nodes[0].log_since(since))
            .lines()
            .filter(|l| l.contains("network plumbing phases"))
        {
            println!("    {}", l.split("phases").nth(1).unwrap_or(l).trim());
        }
    };
    println!("  phases (time since the setup began; the rest of total is nft in the container):");
    phases(mark);

    // One task at a time (each running before the next is created): the cost without
    // contention, with a VIP (its load-balancing rules go into the container with nft) and
    // with DNS round robin (no rules: netlink only).
    for (m, mode) in ["vip", "dnsrr"].into_iter().enumerate() {
        let mark = c.nodes[0].log_len();
        for k in 0..5 {
            let name = format!("seq-{mode}-{k}");
            let cmd = format!("39{m}{k}7");
            c.ctl(
                0,
                &[
                    "service",
                    "create",
                    "--name",
                    &name,
                    "--detach",
                    "--endpoint-mode",
                    mode,
                    "--constraint",
                    "node.hostname==n1",
                    "--network",
                    "br",
                    "busybox",
                    "sleep",
                    &cmd,
                ],
            )
            .unwrap();
            wait_tasks(&c, &name, &format!("sleep {cmd}"), 1);
        }
        let seq = setup_times(&c.nodes[0].log_since(mark));
        println!(
            "network setup, 5 tasks one after another, endpoint mode {mode} (ms): median {:.1}, {:?}",
            seq.get(seq.len() / 2).copied().unwrap_or(0.0),
            seq
        );
        phases(mark);
    }
}
