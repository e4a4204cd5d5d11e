//! Networks end to end on three network-namespace hosts with real containers: two tasks of
//! one service on different hosts reach each other over an overlay (VXLAN between the hosts);
//! a task on an `--internal` network cannot leave it while one on a normal network can; two
//! networks are isolated from each other; connectivity survives killing and restarting every
//! `swarmd`; removing a network in use is refused naming the service; and once a host's tasks
//! are gone, nothing the node installed (links, nftables table) is left in its namespace.

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

    info!("phase: once a host's tasks are gone, nothing the node installed is left");
    for s in ["web", "inner", "iso"] {
        c.ctl(0, &["service", "rm", s]).unwrap();
    }
    wait_until("containers gone", LONG, || {
        (pids_of("sleep 3801").is_empty()
            && pids_of("sleep 3802").is_empty()
            && pids_of("sleep 3803").is_empty())
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
