//! Service discovery end to end on three network-namespace hosts with real containers: a
//! client task resolves `web` (its virtual IP) and `tasks.web` (every replica) through the
//! node's DNS server, and requests to the VIP reach every replica; a published port answers
//! on every host's address (the routing mesh) and spreads over the replicas; scaling down
//! takes the stopped task out of DNS; scaling 1 → 5 spreads requests over all five;
//! switching to dnsrr drops the VIP;
//! host-mode ports answer only where a task runs;
//! `traffic=local` keeps the client's address; a rolling update under steady load through
//! the mesh fails no request; and after the workers' `swarmd` are killed and restarted, DNS,
//! the VIP and the mesh answer as before.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use swarm_integration::{hosts_cluster, import, init_tracing, json_lines, pids_of, running, LONG};
use swarm_testkit::{wait_until, Cluster};
use tracing::info;

/// `curl` of `url` (2 s timeout), inside the network namespace of `pid` or, with `None`, from
/// the test's own namespace (on the hosts' bridge). (Debian's static busybox wget crashes
/// resolving even a literal address.)
fn get(pid: Option<i32>, url: &str) -> Result<String, String> {
    let mut c = Command::new("nsenter");
    if let Some(pid) = pid {
        c.arg(format!("--net=/proc/{pid}/ns/net"));
    }
    let out = c
        .args(["--", "curl", "-sS", "-m", "2", url])
        .output()
        .expect("run curl");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// The A records `busybox nslookup NAME` finds through the container's own nameserver (the
/// one its `/etc/resolv.conf` names), sorted; empty when the name does not resolve.
fn resolve(pid: i32, name: &str) -> Vec<String> {
    let conf = std::fs::read_to_string(format!("/proc/{pid}/root/etc/resolv.conf"))
        .expect("the container's resolv.conf");
    let server = conf
        .lines()
        .find_map(|l| l.strip_prefix("nameserver "))
        .expect("a nameserver")
        .trim()
        .to_string();
    let out = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["--", "busybox", "nslookup", "-type=a", name, &server])
        .output()
        .expect("run busybox nslookup");
    let text = String::from_utf8_lossy(&out.stdout);
    // Answers follow the server's own lines ("Server:", "Address: SERVER:53").
    let mut addrs: Vec<String> = text
        .split("Name:")
        .skip(1)
        .flat_map(|block| {
            block
                .lines()
                .filter_map(|l| l.trim().strip_prefix("Address:"))
                .map(|a| a.trim().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    addrs.sort();
    addrs
}

/// `n` requests to `url`: how many each responder (page body) answered, and the failures.
fn spread(pid: Option<i32>, url: &str, n: usize) -> (BTreeMap<String, usize>, Vec<String>) {
    let mut by = BTreeMap::new();
    let mut failed = Vec::new();
    for _ in 0..n {
        match get(pid, url) {
            Ok(body) => *by.entry(body).or_default() += 1,
            Err(e) => failed.push(e),
        }
    }
    (by, failed)
}

fn service_json(c: &Cluster, name: &str) -> serde_json::Value {
    let text = c.ctl(0, &["service", "inspect", name]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_array().map(|a| a[0].clone()).unwrap_or(v)
}

/// A web server answering with its task's hostname on port `port`.
fn web_cmd(port: u16) -> String {
    format!("mkdir -p /www && hostname > /www/index.html && exec httpd -f -vv -p {port} -h /www")
}

fn wait_running(c: &Cluster, service: &str, n: usize) -> Vec<(String, String)> {
    wait_until(&format!("{n} {service} tasks running"), LONG, || {
        let r = running(c, 0, service);
        (r.len() == n).then_some(r)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()))
}

/// Creates the overlay `front` on `subnet`, `web` (3 replicas, one per host, published on
/// 8080, running `cmd`, with `web_args`) and a `client` sleeping `marker` (with
/// `client_args`); waits until all run. Returns the client's pid and web's VIP.
fn web_and_client(
    c: &Cluster,
    subnet: &str,
    web_args: &[&str],
    cmd: &str,
    client_args: &[&str],
    marker: &str,
) -> (i32, String) {
    c.ctl(
        0,
        &[
            "network", "create", "-d", "overlay", "--subnet", subnet, "front",
        ],
    )
    .unwrap();
    let mut args = vec![
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "3",
        "--replicas-max-per-node",
        "1",
        "--network",
        "front",
        "-p",
        "8080:80",
    ];
    args.extend_from_slice(web_args);
    args.extend_from_slice(&["busybox", "sh", "-c", cmd]);
    c.ctl(0, &args).unwrap();
    let mut args = vec![
        "service",
        "create",
        "--name",
        "client",
        "--network",
        "front",
    ];
    args.extend_from_slice(client_args);
    args.extend_from_slice(&["busybox", "sleep", marker]);
    c.ctl(0, &args).unwrap();
    let web_tasks = wait_running(c, "web", 3);
    let nodes: BTreeSet<&String> = web_tasks.iter().map(|t| &t.1).collect();
    assert_eq!(nodes.len(), 3, "one replica per host: {web_tasks:?}");
    wait_running(c, "client", 1);
    let client = wait_until("the client container", LONG, || {
        pids_of(&format!("sleep {marker}")).first().copied()
    })
    .unwrap();
    let svc = service_json(c, "web");
    let vip = svc["endpoint"]["virtual_ips"][0]["addr"]
        .as_str()
        .unwrap_or_else(|| panic!("web has a virtual IP: {svc}"))
        .split('/')
        .next()
        .unwrap()
        .to_string();
    (client, vip)
}

#[test]
fn services_resolve_balance_and_publish_ports_across_hosts() {
    init_tracing();
    let (hosts, mut c) = hosts_cluster(3, &[]);
    for i in 0..3 {
        import(&c, i, "busybox:v2", "v2");
    }
    info!("phase: three web replicas on three hosts, published on 8080, and a client");
    let (client, vip) = web_and_client(
        &c,
        "10.78.1.0/24",
        &["--update-parallelism", "1", "--update-delay", "1s"],
        &web_cmd(80),
        &[],
        "3901",
    );
    assert!(
        vip.starts_with("10.78.1."),
        "the VIP is on the network: {vip}"
    );

    info!("phase: DNS answers the VIP for the name and every replica for tasks.NAME");
    let answers = wait_until("web resolves to its VIP", LONG, || {
        let a = resolve(client, "web");
        (a == [vip.clone()]).then_some(a)
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", resolve(client, "web"), c.dump()));
    info!(?answers, "web");
    let replicas = wait_until("tasks.web lists three replicas", LONG, || {
        let a = resolve(client, "tasks.web");
        (a.len() == 3).then_some(a)
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", resolve(client, "tasks.web"), c.dump()));
    assert!(replicas
        .iter()
        .all(|a| a.starts_with("10.78.1.") && *a != vip));

    info!("phase: the VIP spreads 200 requests over every replica");
    let (by, failed) = spread(Some(client), &format!("http://{vip}/"), 200);
    info!(?by, "responders through the VIP");
    if !failed.is_empty() {
        let diag = |args: &[&str]| {
            let o = Command::new("nsenter")
                .arg(format!("--net=/proc/{client}/ns/net"))
                .arg("--")
                .args(args)
                .output()
                .unwrap();
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        };
        let direct: Vec<_> = replicas
            .iter()
            .map(|a| get(Some(client), &format!("http://{a}/")))
            .collect();
        panic!(
            "requests to the VIP failed: {:?}\nruleset: {}\nroutes: {}\ndirect: {direct:?}\n{}",
            &failed[..3.min(failed.len())],
            diag(&["nft", "list", "ruleset"]),
            diag(&["ip", "route"]),
            c.dump()
        );
    }
    assert_eq!(by.len(), 3, "every replica answers through the VIP: {by:?}");

    info!("phase: the published port answers on every host's address and spreads");
    for ip in &hosts.ips {
        let url = format!("http://{ip}:8080/");
        wait_until(&format!("{url} answers"), LONG, || get(None, &url).ok())
            .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", get(None, &url), c.dump()));
    }
    let (by, failed) = spread(None, &format!("http://{}:8080/", hosts.ips[0]), 200);
    info!(?by, "responders through host 1's published port");
    assert!(
        failed.is_empty(),
        "requests through the mesh failed: {failed:?}"
    );
    assert_eq!(by.len(), 3, "the mesh reaches every replica: {by:?}");

    info!("phase: a rolling update under steady load through the mesh fails no request");
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let load = {
        let (stop, ok, bad, errors) = (stop.clone(), ok.clone(), bad.clone(), errors.clone());
        let url = format!("http://{}:8080/", hosts.ips[1]);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match get(None, &url) {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        let at = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap_or_default();
                        errors
                            .lock()
                            .unwrap()
                            .push(format!("at {:.3}: {e}", at.as_secs_f64()));
                        bad.fetch_add(1, Ordering::Relaxed)
                    }
                };
                // About 50 requests a second.
                std::thread::sleep(Duration::from_millis(20).saturating_sub(t.elapsed()));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    c.ctl(
        0,
        &[
            "service",
            "update",
            "--image",
            "busybox:v2",
            "--detach=false",
            "web",
        ],
    )
    .unwrap_or_else(|e| panic!("update: {e}\n{}", c.dump()));
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let (ok, bad) = (ok.load(Ordering::Relaxed), bad.load(Ordering::Relaxed));
    info!(ok, bad, "requests during the rolling update");
    assert!(ok > 100, "the load ran through the update: {ok} requests");
    assert_eq!(
        bad,
        0,
        "requests failed during the update: {:?}",
        errors.lock().unwrap()
    );

    info!("phase: after the workers' swarmd are killed and restarted, nothing is stale");
    for i in [1, 2] {
        c.restart(i).unwrap();
    }
    // The containers kept running; the agents adopt them, their DNS servers come back on
    // the adopted bridges and the ports and VIP rules are reloaded from the first view.
    wait_until("tasks.web answers three after the restarts", LONG, || {
        (resolve(client, "tasks.web").len() == 3).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", resolve(client, "tasks.web"), c.dump()));
    let mesh2 = format!("http://{}:8080/", hosts.ips[1]);
    wait_until("host 2's published port answers again", LONG, || {
        let (by, failed) = spread(None, &mesh2, 60);
        (failed.is_empty() && by.len() == 3).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", spread(None, &mesh2, 10), c.dump()));
    let (by, failed) = spread(Some(client), &format!("http://{vip}/"), 60);
    assert!(failed.is_empty(), "the VIP after the restarts: {failed:?}");
    assert_eq!(
        by.len(),
        3,
        "every replica behind the VIP after the restarts: {by:?}"
    );

    info!("phase: a task scaled away leaves DNS");
    c.ctl(0, &["service", "scale", "web=2", "--detach"])
        .unwrap();
    let t0 = Instant::now();
    wait_until("tasks.web lists two replicas", LONG, || {
        (resolve(client, "tasks.web").len() == 2).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", resolve(client, "tasks.web"), c.dump()));
    info!(elapsed = ?t0.elapsed(), "the scaled-away task left DNS (includes the scale request)");
    let (by, failed) = spread(Some(client), &format!("http://{vip}/"), 40);
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(by.len(), 2, "two replicas behind the VIP: {by:?}");

    info!("phase: scaling 1 → 5 spreads the requests to the VIP over all five");
    let many = web_cmd(80);
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "many",
            "--network",
            "front",
            "busybox",
            "sh",
            "-c",
            &many,
        ],
    )
    .unwrap();
    wait_running(&c, "many", 1);
    info!("many runs");
    let many_vip = wait_until("many resolves", LONG, || {
        resolve(client, "many").into_iter().next()
    })
    .unwrap();
    // The client's host balances the VIP once its view has the task running.
    wait_until("many's VIP answers", LONG, || {
        get(Some(client), &format!("http://{many_vip}/")).ok()
    })
    .unwrap();
    let (by, failed) = spread(Some(client), &format!("http://{many_vip}/"), 20);
    assert!(failed.is_empty() && by.len() == 1, "{by:?} {failed:?}");
    c.ctl(0, &["service", "scale", "many=5", "--detach"])
        .unwrap();
    wait_running(&c, "many", 5);
    info!("five run");
    let t0 = Instant::now();
    wait_until("tasks.many lists five", LONG, || {
        (resolve(client, "tasks.many").len() == 5).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", resolve(client, "tasks.many")));
    info!(elapsed = ?t0.elapsed(), "tasks.many lists five");
    let (by, failed) = spread(Some(client), &format!("http://{many_vip}/"), 200);
    info!(?by, "responders after scaling to 5");
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(by.len(), 5, "all five replicas answer: {by:?}");

    info!("phase: switching to dnsrr drops the VIP: the name resolves to the tasks");
    c.ctl(
        0,
        &[
            "service",
            "update",
            "--endpoint-mode",
            "dnsrr",
            "--detach",
            "many",
        ],
    )
    .unwrap();
    let tasks_many = resolve(client, "tasks.many");
    wait_until("many resolves to its five tasks", LONG, || {
        (resolve(client, "many") == tasks_many).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?} vs {tasks_many:?}", resolve(client, "many")));
    let svc = service_json(&c, "many");
    assert!(
        svc["endpoint"]["virtual_ips"]
            .as_array()
            .is_none_or(|v| v.is_empty()),
        "no VIP is kept in dnsrr mode: {}",
        svc["endpoint"]
    );

    info!("phase: a host-mode port answers only where its task runs");
    let hm = web_cmd(81);
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "hm",
            "--network",
            "front",
            "--publish",
            "published=9090,target=81,mode=host",
            "busybox",
            "sh",
            "-c",
            &hm,
        ],
    )
    .unwrap();
    let hm_node = wait_running(&c, "hm", 1)[0].1.clone();
    // Node nK runs on host K.
    let node_ip = |hostname: &str| -> String {
        let k: usize = hostname.trim_start_matches('n').parse().expect("node nK");
        hosts.ips[k - 1].clone()
    };
    let hm_ip = node_ip(&hm_node);
    let url = format!("http://{hm_ip}:9090/");
    wait_until("the host-mode port answers on its host", LONG, || {
        get(None, &url).ok()
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", get(None, &url), c.dump()));
    for ip in hosts.ips.iter().filter(|ip| **ip != hm_ip) {
        let r = get(None, &format!("http://{ip}:9090/"));
        assert!(
            r.is_err(),
            "host {ip} without the task answered on 9090: {r:?}"
        );
    }

    info!("phase: traffic=local answers only where a task runs, with the client's address");
    let loc = web_cmd(82);
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "loc",
            "--publish",
            "published=8181,target=82,traffic=local",
            "busybox",
            "sh",
            "-c",
            &loc,
        ],
    )
    .unwrap();
    let loc_node = wait_running(&c, "loc", 1)[0].1.clone();
    let loc_ip = node_ip(&loc_node);
    let url = format!("http://{loc_ip}:8181/");
    wait_until("the local-traffic port answers on its host", LONG, || {
        get(None, &url).ok()
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", get(None, &url), c.dump()));
    for ip in hosts.ips.iter().filter(|ip| **ip != loc_ip) {
        let r = get(None, &format!("http://{ip}:8181/"));
        assert!(r.is_err(), "host {ip} without a loc task answered: {r:?}");
    }
    // The test's own address on the hosts' bridge is what httpd -v logs.
    let me = {
        let ip = &hosts.ips[0];
        format!("{}.254", &ip[..ip.rfind('.').unwrap()])
    };
    // httpd logs to stderr, which `service logs` writes to its own stderr, as Docker does.
    let logs = || {
        c.ctl_raw(0, &["service", "logs", "loc"]).map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
    };
    let logs = wait_until("the task logged the client's address", LONG, || {
        let l = logs().ok()?;
        l.contains(&me).then_some(l)
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", logs()));
    info!(logs = %logs.lines().last().unwrap_or(""), "loc saw the client");
    // Published without a network: the service joined the ingress network.
    let nets = json_lines(&c.ctl(0, &["network", "ls", "--format", "json"]).unwrap());
    assert!(nets.iter().any(|n| n["Name"] == "ingress"), "{nets:?}");
    drop(c);
    drop(hosts);
}

/// `ab` (apache2-utils) against `url` from the network namespace at `netns` (a path, or the
/// test's own with `None`): (requests/s, p50 ms, p99 ms, failed).
fn ab(netns: Option<&str>, url: &str, n: usize, conc: usize) -> (f64, f64, f64, u64) {
    let mut c = Command::new("nsenter");
    if let Some(ns) = netns {
        c.arg(format!("--net={ns}"));
    }
    let out = c
        .args([
            "--",
            "ab",
            "-q",
            "-n",
            &n.to_string(),
            "-c",
            &conc.to_string(),
            url,
        ])
        .output()
        .expect("run ab (apt-get install apache2-utils)");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |prefix: &str| -> f64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "no {prefix:?} in ab's output:\n{text}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    };
    (
        field("Requests per second:"),
        field("50%"),
        field("99%"),
        field("Failed requests:") as u64,
    )
}

/// Requests/s and latency straight to a task, through a VIP and through the routing mesh, and
/// how long a scaled-away task stays in DNS. Run with `deploy/bench/discovery.sh`.
#[test]
#[ignore = "benchmark: deploy/bench/discovery.sh"]
fn bench_routing_mesh_and_vip_against_a_task_directly() {
    init_tracing();
    let (hosts, c) = hosts_cluster(3, &[]);
    let web = web_cmd(80).replace("-vv ", "");
    let (client, vip) = web_and_client(
        &c,
        "10.79.1.0/24",
        &[],
        &web,
        &["--constraint", "node.hostname==n1"],
        "3911",
    );
    wait_until("tasks.web", LONG, || {
        (resolve(client, "tasks.web").len() == 3).then_some(())
    })
    .unwrap();
    // The replica on n1, the client's host: straight there, no translation.
    let direct = wait_until("the local replica's address", LONG, || {
        resolve(client, "tasks.web")
            .into_iter()
            .find(|a| get(Some(client), &format!("http://{a}/")).is_ok())
    })
    .unwrap();
    let client_ns = format!("/proc/{client}/ns/net");
    let host1 = format!("http://{}:8080/", hosts.ips[0]);
    wait_until("mesh", LONG, || get(None, &host1).ok()).unwrap();
    let (n, conc) = (20_000, 16);
    println!("| path | requests/s | p50 ms | p99 ms | failed |");
    println!("|---|---|---|---|---|");
    for round in 0..2 {
        for (what, ns, url) in [
            (
                "straight to a task (container → task)",
                Some(client_ns.as_str()),
                format!("http://{direct}/"),
            ),
            (
                "virtual IP (container → VIP → any task)",
                Some(client_ns.as_str()),
                format!("http://{vip}/"),
            ),
            (
                "routing mesh (outside → host 1:8080 → any task)",
                None,
                host1.clone(),
            ),
        ] {
            let (rps, p50, p99, failed) = ab(ns, &url, n, conc);
            println!(
                "| {what} (round {}) | {rps:.0} | {p50} | {p99} | {failed} |",
                round + 1
            );
        }
    }
    // How long a scaled-away task stays in DNS: from the scale request to the answer without
    // it, seen from the client on n1.
    let mut gone = Vec::new();
    for k in 0..5 {
        let to = if k % 2 == 0 { "2" } else { "3" };
        let want = to.parse::<usize>().unwrap();
        let t0 = Instant::now();
        c.ctl(0, &["service", "scale", &format!("web={to}"), "--detach"])
            .unwrap();
        if want == 2 {
            wait_until("DNS follows", LONG, || {
                (resolve(client, "tasks.web").len() == 2).then_some(())
            })
            .unwrap();
            gone.push(t0.elapsed());
        } else {
            wait_running(&c, "web", 3);
            wait_until("DNS follows", LONG, || {
                (resolve(client, "tasks.web").len() == 3).then_some(())
            })
            .unwrap();
        }
    }
    println!("scale 3 → 2, request to the task gone from tasks.web: {gone:?}");
}
