//! How every cost of the control plane grows with the size of the work: a grid of tasks,
//! nodes and services, recovery with many tasks in the store, and a soak of repeated bursts.
//!
//! Real `swarmd` managers (release build, durable Raft, mutual TLS) on loopback; fake agents
//! (the real agent code over the fake executor) in a process of their own (`fake_agents`), so
//! the managers' CPU and memory are measured apart from the agents'. Each phase starts its own
//! cluster, so one phase's allocator history does not blur the next one's memory. Every table
//! is printed with the cluster's single-client write rate as its calibration (this machine's
//! speed of the moment): compare ratios to it across machines, not absolute rates.

use anyhow::Context as _;
use clap::Parser;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use swarm_api::control::CreateServiceRequest;
use swarm_benches::probe;
use swarm_testkit::procstat::{cpu_seconds, rss_kib};
use swarm_testkit::Cluster;
use swarm_types::spec::ServiceSpec;

#[derive(Parser, Debug, Clone)]
struct Args {
    /// Phases, comma separated: tasks, nodes, services, recovery, soak.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "tasks,nodes,services,recovery,soak"
    )]
    phases: Vec<String>,
    /// Managers per cluster.
    #[arg(long, default_value_t = 3)]
    managers: usize,
    /// Fake agents of the tasks, recovery and soak phases.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Tasks phase: replicas of each measured service (one after the other, each removed
    /// before the next).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    task_sizes: Vec<u64>,
    /// Nodes phase: fleet sizes (a fresh cluster each).
    #[arg(long, value_delimiter = ',', default_value = "100,1000,5000")]
    node_sizes: Vec<usize>,
    /// Nodes phase: seconds the fleet is watched idle.
    #[arg(long, default_value_t = 20)]
    idle_secs: u64,
    /// Nodes phase: replicas created on each fleet.
    #[arg(long, default_value_t = 10_000)]
    node_tasks: u64,
    /// Services phase: how many services exist at each measurement (cumulative).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    service_sizes: Vec<usize>,
    /// Services phase: concurrent writers creating the services.
    #[arg(long, default_value_t = 64)]
    service_clients: usize,
    /// Recovery phase: tasks in the store while managers restart, join and fail over.
    #[arg(long, default_value_t = 100_000)]
    recovery_tasks: u64,
    /// Recovery phase: the managers' `--raft-snapshot-interval` (swarmd's default; the log's
    /// size makes a snapshot due long before that many entries of 100k tasks).
    #[arg(long, default_value_t = 10_000)]
    recovery_snapshot_interval: u64,
    /// Soak phase: rounds of create → running → remove → gone.
    #[arg(long, default_value_t = 50)]
    soak_rounds: usize,
    /// Soak phase: replicas per round.
    #[arg(long, default_value_t = 10_000)]
    soak_replicas: u64,
    /// Single-client writes that calibrate each cluster.
    #[arg(long, default_value_t = 300)]
    calibration_writes: usize,
    /// Managers' `--log-level`.
    #[arg(long, default_value = "warn")]
    manager_log: String,
    /// An extra `swarmd` argument for every manager of every phase (repeat it, one word each:
    /// `--swarmd-arg=--raft-snapshot-interval --swarmd-arg=1000`).
    #[arg(long, allow_hyphen_values = true)]
    swarmd_arg: Vec<String>,
    /// Copy every manager's log here (as `<phase>-<node>.log`) before a phase's cluster goes.
    #[arg(long)]
    keep_logs: Option<std::path::PathBuf>,
}

/// Copies the managers' logs of `c` into `--keep-logs`, if given.
fn keep_logs(args: &Args, phase: &str, c: &Cluster) {
    let Some(dir) = &args.keep_logs else { return };
    let _ = std::fs::create_dir_all(dir);
    for d in &c.nodes {
        let to = dir.join(format!("{phase}-{}.log", d.name));
        if let Err(e) = std::fs::copy(&d.log, &to) {
            eprintln!("cannot keep {}: {e}", d.log.display());
        }
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// The fake agents' process; killed when dropped.
struct Agents {
    child: Child,
    joined_in: Duration,
}

impl Agents {
    /// Starts `count` fake agents joined to `c` and waits until they have all joined.
    fn start(c: &Cluster, count: usize, prefix: &str) -> anyhow::Result<Agents> {
        let token = c.token(0, "worker")?;
        let addrs: Vec<String> = c.nodes.iter().map(|d| d.addr.clone()).collect();
        let mut child = Command::new(swarm_testkit::bin("fake_agents"))
            .args(["--join", &addrs.join(","), "--token", &token])
            .args(["--count", &count.to_string(), "--hostname-prefix", prefix])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("start fake_agents (build it: cargo build --release -p swarm-benches)")?;
        let t0 = Instant::now();
        let mut line = String::new();
        let stdout = child.stdout.take().context("fake_agents stdout")?;
        BufReader::new(stdout).read_line(&mut line)?;
        if !line.starts_with("joined") {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("fake_agents failed to join {count} agents (said {line:?})");
        }
        Ok(Agents {
            child,
            joined_in: t0.elapsed(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh cluster of `managers` managers on the fake executor.
fn cluster(args: &Args, extra: &[&str]) -> anyhow::Result<Cluster> {
    let mut c = Cluster::new();
    c.extra_args = ["--executor", "fake", "--log-level", &args.manager_log]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .chain(args.swarmd_arg.iter().cloned())
        .collect();
    c.init()?;
    for _ in 1..args.managers {
        c.join_manager(0)?;
    }
    Ok(c)
}

fn leader(c: &Cluster) -> usize {
    (0..c.nodes.len())
        .filter(|&i| c.nodes[i].pid().is_some())
        .find_map(|i| c.leader(i))
        .unwrap_or(0)
}

fn pid(c: &Cluster, i: usize) -> u32 {
    c.nodes[i].pid().unwrap_or(0)
}

fn rss_mib(pid: u32) -> f64 {
    rss_kib(pid).unwrap_or(0) as f64 / 1024.0
}

/// CPU seconds of every running manager, summed.
fn managers_cpu(c: &Cluster) -> f64 {
    c.nodes
        .iter()
        .filter_map(|d| d.pid())
        .map(cpu_seconds)
        .sum()
}

/// A 0-replica service spec (a write with no tasks behind it).
fn empty_service(name: &str) -> Vec<u8> {
    swarm_api::wire::to_bytes(&ServiceSpec::replicated(name, "busybox", 0))
}

/// Creates 0-replica services `<prefix>-<from..to>` through manager `i` with `clients`
/// concurrent writers, each on its own connection.
async fn create_services(
    c: &Cluster,
    i: usize,
    prefix: &str,
    from: usize,
    to: usize,
    clients: usize,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicUsize::new(from));
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..clients.max(1) {
        let mut client = c.client(i).await?;
        let next = next.clone();
        let prefix = prefix.to_string();
        writers.spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= to {
                    return anyhow::Ok(());
                }
                let req = CreateServiceRequest {
                    spec: empty_service(&format!("{prefix}-{k}")),
                    ..Default::default()
                };
                client
                    .create_service(req)
                    .await
                    .with_context(|| format!("create {prefix}-{k}"))?;
            }
        });
    }
    while let Some(r) = writers.join_next().await {
        r??;
    }
    Ok(())
}

/// Single-client durable writes per second on `c` (0-replica services, removed afterwards):
/// the calibration printed beside every table.
async fn calibrate(c: &Cluster, writes: usize) -> anyhow::Result<f64> {
    let l = leader(c);
    let t0 = Instant::now();
    create_services(c, l, "calibration", 0, writes, 1).await?;
    let rate = writes as f64 / t0.elapsed().as_secs_f64();
    let mut client = c.client(l).await?;
    for k in 0..writes {
        client
            .remove_service(swarm_api::control::RemoveRequest {
                reference: format!("calibration-{k}"),
                force: false,
            })
            .await?;
    }
    Ok(rate)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Calibrates `c`, then joins `--agents` fake agents in their own process and waits until
/// they are all ready.
async fn calibrate_and_join(args: &Args, c: &Cluster) -> anyhow::Result<(f64, Agents)> {
    let cal = calibrate(c, args.calibration_writes).await?;
    let agents = Agents::start(c, args.agents, "fake")?;
    probe::wait_nodes_ready(c, 0, args.agents + args.managers, Duration::from_secs(300)).await?;
    Ok((cal, agents))
}

fn calibration_line(rate: f64) {
    println!();
    println!("Calibration: {rate:.0} single-client writes/s on this cluster.");
    println!();
}

/// Tasks: 1k, 10k, 100k replicas on one fleet; time, rate, CPU and memory per task.
async fn phase_tasks(args: &Args) -> anyhow::Result<()> {
    let c = cluster(args, &[])?;
    let (cal, agents) = calibrate_and_join(args, &c).await?;
    println!(
        "### Tasks ({} managers, {} fake agents in their own process)",
        args.managers, args.agents
    );
    calibration_line(cal);
    println!("| tasks | create → all running | tasks/s | leader CPU-s | managers' CPU-s per 1,000 tasks | agents' CPU-s | leader RSS before → running | KiB per task over before | KiB per task over 30 MiB | remove → all gone | managers' CPU-s (remove) |");
    println!("|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|");
    for (round, &n) in args.task_sizes.iter().enumerate() {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let l = leader(&c);
        let before = rss_mib(pid(&c, l));
        let (lc0, mc0, ac0) = (
            cpu_seconds(pid(&c, l)),
            managers_cpu(&c),
            cpu_seconds(agents.pid()),
        );
        let name = format!("tasks{round}");
        let up = probe::create_and_wait_running(&c, l, &name, n, false).await?;
        let (lc1, mc1, ac1) = (
            cpu_seconds(pid(&c, l)),
            managers_cpu(&c),
            cpu_seconds(agents.pid()),
        );
        let running = rss_mib(pid(&c, l));
        let down = probe::remove_and_wait_gone(&c, l, &name).await?;
        let mc2 = managers_cpu(&c);
        println!(
            "| {n} | {:.2} s | {:.0} | {:.1} | {:.2} | {:.1} | {before:.0} → {running:.0} MiB | {:.2} | {:.2} | {:.2} s | {:.1} |",
            up.as_secs_f64(),
            n as f64 / up.as_secs_f64(),
            lc1 - lc0,
            (mc1 - mc0) / (n as f64 / 1000.0),
            ac1 - ac0,
            (running - before) * 1024.0 / n as f64,
            (running - 30.0).max(0.0) * 1024.0 / n as f64,
            down.as_secs_f64(),
            mc2 - mc1,
        );
    }
    println!();
    keep_logs(args, "tasks", &c);
    drop(agents);
    Ok(())
}

/// Nodes: fleets of 100, 1,000, 5,000 agents, idle and under a create; heartbeat cost,
/// session memory and how long a dead node takes to be marked down.
async fn phase_nodes(args: &Args) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let mut cals = Vec::new();
    for &n in &args.node_sizes {
        let c = cluster(args, &[])?;
        cals.push(calibrate(&c, args.calibration_writes).await?);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let l = leader(&c);
        let base = rss_mib(pid(&c, l));
        let agents = Agents::start(&c, n, "fake")?;
        probe::wait_nodes_ready(&c, l, n + args.managers, Duration::from_secs(600)).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (lc0, ac0, t0) = (
            cpu_seconds(pid(&c, l)),
            cpu_seconds(agents.pid()),
            Instant::now(),
        );
        tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
        let secs = t0.elapsed().as_secs_f64();
        let leader_cores = (cpu_seconds(pid(&c, l)) - lc0) / secs;
        let agent_cores = (cpu_seconds(agents.pid()) - ac0) / secs;
        let idle_rss = rss_mib(pid(&c, l));
        let lc1 = cpu_seconds(pid(&c, l));
        let up = probe::create_and_wait_running(&c, l, "nodes", args.node_tasks, false).await?;
        let create_cpu = cpu_seconds(pid(&c, l)) - lc1;
        probe::remove_and_wait_gone(&c, l, "nodes").await?;
        let down = time_to_down(&c, l).await?;
        keep_logs(args, &format!("nodes{n}"), &c);
        rows.push(format!(
            "| {n} | {:.1} s | {leader_cores:.3} | {:.1} | {agent_cores:.2} | {base:.0} → {idle_rss:.0} MiB | {:.1} | {:.2} s | {:.0} | {create_cpu:.1} | {:.2} s |",
            agents.joined_in.as_secs_f64(),
            leader_cores * 1e6 / n as f64,
            (idle_rss - base) * 1024.0 / n as f64,
            up.as_secs_f64(),
            args.node_tasks as f64 / up.as_secs_f64(),
            down.as_secs_f64(),
        ));
    }
    println!(
        "### Nodes ({} managers, a fresh cluster per fleet size, fake agents in their own process)",
        args.managers
    );
    println!();
    let cals: Vec<String> = cals.iter().map(|r| format!("{r:.0}")).collect();
    println!(
        "Calibration: {} single-client writes/s on the clusters of the rows below, in order.",
        cals.join(", ")
    );
    println!();
    println!("| agents | all joined | leader cores idle | leader CPU-µs per node per second | agents' cores idle | leader RSS no agents → idle fleet | KiB per node | create {} → running | tasks/s | leader CPU-s (create) | killed agent → marked down |", args.node_tasks);
    println!("|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|");
    for r in rows {
        println!("{r}");
    }
    println!();
    Ok(())
}

/// Starts one more agent in its own process, kills it, and times until the manager `l` lists
/// it Down.
async fn time_to_down(c: &Cluster, l: usize) -> anyhow::Result<Duration> {
    let probe_agent = Agents::start(c, 1, "victim")?;
    let host = "victim00000";
    let state = |out: &str| -> Option<String> {
        out.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["Hostname"] == host)
            .and_then(|v| v["Status"].as_str().map(str::to_string))
    };
    let t0 = Instant::now();
    loop {
        let out = c.ctl(l, &["node", "ls", "--format", "json", "--stale"])?;
        if state(&out).as_deref() == Some("Ready") {
            break;
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(60),
            "{host} not ready after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(probe_agent);
    let t0 = Instant::now();
    loop {
        let out = c.ctl(l, &["node", "ls", "--format", "json", "--stale"])?;
        if state(&out).as_deref() == Some("Down") {
            return Ok(t0.elapsed());
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(120),
            "{host} not down after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Services: 1k, 10k, 100k 0-replica services; memory per service and `service ls`.
async fn phase_services(args: &Args) -> anyhow::Result<()> {
    let c = cluster(args, &[])?;
    let cal = calibrate(&c, args.calibration_writes).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let l = leader(&c);
    let base = rss_mib(pid(&c, l));
    println!(
        "### Services ({} managers, 0-replica services, {} concurrent writers)",
        args.managers, args.service_clients
    );
    calibration_line(cal);
    println!("| services | created in | writes/s | leader RSS | KiB per service over no services | KiB per service over 30 MiB | state dir (leader) | `service ls` (median of 3) | `service ls -q` |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut have = 0;
    for &n in &args.service_sizes {
        let t0 = Instant::now();
        create_services(&c, l, "svc", have, n, args.service_clients).await?;
        let took = t0.elapsed();
        let created = n - have;
        have = n;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss = rss_mib(pid(&c, l));
        let ls = |quiet: bool| -> anyhow::Result<f64> {
            let mut v = Vec::new();
            for _ in 0..3 {
                let t = Instant::now();
                let a: &[&str] = if quiet {
                    &["service", "ls", "-q"]
                } else {
                    &["service", "ls"]
                };
                let out = c.ctl(l, a)?;
                v.push(t.elapsed().as_secs_f64());
                anyhow::ensure!(
                    out.lines().count() >= n,
                    "service ls listed {} of {n}",
                    out.lines().count()
                );
            }
            Ok(median(v))
        };
        println!(
            "| {n} | {:.2} s | {:.0} | {rss:.0} MiB | {:.2} | {:.2} | {:.1} MiB | {:.3} s | {:.3} s |",
            took.as_secs_f64(),
            created as f64 / took.as_secs_f64(),
            (rss - base) * 1024.0 / n as f64,
            (rss - 30.0).max(0.0) * 1024.0 / n as f64,
            dir_bytes(c.state_dir(l)) as f64 / MIB,
            ls(false)?,
            ls(true)?,
        );
    }
    keep_logs(args, "services", &c);
    println!();
    Ok(())
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Manager `i`'s snapshot file: its size and when it was written.
fn snapshot_file(c: &Cluster, i: usize) -> Option<(u64, std::time::SystemTime)> {
    let mut found = None;
    walk(c.state_dir(i), &mut |p, m| {
        if p.file_name().and_then(|n| n.to_str()) == Some("state-machine.snapshot") {
            found = m.modified().ok().map(|t| (m.len(), t));
        }
    });
    found
}

fn walk(dir: &std::path::Path, f: &mut dyn FnMut(&std::path::Path, &std::fs::Metadata)) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            walk(&e.path(), f);
        } else {
            f(&e.path(), &m);
        }
    }
}

/// Recovery with many tasks in the store: snapshot size, a manager restart to serving, a new
/// manager joining to voting, a leader kill to the next write.
async fn phase_recovery(args: &Args) -> anyhow::Result<()> {
    let interval = args.recovery_snapshot_interval.to_string();
    let mut c = cluster(args, &["--raft-snapshot-interval", &interval])?;
    let (cal, agents) = calibrate_and_join(args, &c).await?;
    let n = args.recovery_tasks;
    let l = leader(&c);
    let up = probe::create_and_wait_running(&c, l, "recovery", n, false).await?;
    let created_at = std::time::SystemTime::now() - up;
    let mut rows = vec![format!(
        "| create {n} → all running | {:.2} s | |",
        up.as_secs_f64()
    )];

    // The newest snapshot, if it was taken after the create began (it holds the tasks).
    rows.push(match snapshot_file(&c, l) {
        Some((b, at)) if at >= created_at => format!(
            "| leader's newest snapshot | {:.1} MiB | {:.0} bytes per task, written {:.1} s after the create began; state dir {:.0} MiB |",
            b as f64 / MIB,
            b as f64 / n as f64,
            at.duration_since(created_at).unwrap_or_default().as_secs_f64(),
            dir_bytes(c.state_dir(l)) as f64 / MIB
        ),
        _ => format!(
            "| leader's newest snapshot | none since the create began | state dir {:.0} MiB |",
            dir_bytes(c.state_dir(l)) as f64 / MIB
        ),
    });
    let rss: Vec<String> = (0..c.nodes.len())
        .map(|i| format!("{:.0}", rss_mib(pid(&c, i))))
        .collect();
    rows.push(format!(
        "| managers' RSS with all tasks | {} MiB | leader first: n{} |",
        rss.join(", "),
        l + 1
    ));

    // A follower killed and started again: until it answers a linearizable read.
    let f = (0..c.nodes.len())
        .find(|&i| i != l)
        .context("no follower")?;
    c.kill(f);
    let t0 = Instant::now();
    c.restart(f)?;
    c.wait_ready(f)?;
    rows.push(format!(
        "| follower SIGKILLed → restarted and serving (`cluster inspect`) | {:.2} s | its RSS after: {:.0} MiB |",
        t0.elapsed().as_secs_f64(),
        rss_mib(pid(&c, f))
    ));

    // A new manager: from start to a reachable voter.
    let t0 = Instant::now();
    let j = c.join_manager(l)?;
    rows.push(format!(
        "| new manager started → voting (a snapshot install, if the log behind it was purged) | {:.2} s | its RSS after: {:.0} MiB |",
        t0.elapsed().as_secs_f64(),
        rss_mib(pid(&c, j))
    ));

    // The leader killed: until a write through a survivor commits. A new attempt starts
    // every 100 ms (each may wait up to 10 s), so the time is when the cluster first took a
    // write, not when one unlucky attempt gave up.
    let l = leader(&c);
    let s = (0..c.nodes.len())
        .find(|&i| i != l)
        .context("no survivor")?;
    let client = c.client(s).await?;
    c.kill(l);
    let t0 = Instant::now();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<Duration>(1);
    let mut attempts = tokio::task::JoinSet::new();
    let first = loop {
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(60),
            "no write 60 s after the leader was killed"
        );
        let mut client = client.clone();
        let done = done_tx.clone();
        let k = attempts.len();
        attempts.spawn(async move {
            let req = CreateServiceRequest {
                spec: empty_service(&format!("after-failover-{k}")),
                ..Default::default()
            };
            let r = tokio::time::timeout(Duration::from_secs(10), client.create_service(req));
            if let Ok(Ok(_)) = r.await {
                let _ = done.try_send(t0.elapsed());
            }
        });
        tokio::select! {
            Some(at) = done_rx.recv() => break at,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    };
    let tried = attempts.len();
    attempts.abort_all();
    rows.push(format!(
        "| leader SIGKILLed → first write committed (through a survivor) | {:.2} s | {tried} attempts started, one every 100 ms |",
        first.as_secs_f64()
    ));

    println!(
        "### Recovery with {n} tasks in the store ({} managers, {} fake agents, `--raft-snapshot-interval {}`)",
        args.managers, args.agents, args.recovery_snapshot_interval
    );
    calibration_line(cal);
    println!("| what | measured | notes |");
    println!("|---|---:|---|");
    for r in rows {
        println!("{r}");
    }
    println!();
    keep_logs(args, "recovery", &c);
    drop(agents);
    Ok(())
}

/// Soak: rounds of create → running → remove → gone; the managers' RSS per round.
async fn phase_soak(args: &Args) -> anyhow::Result<()> {
    let c = cluster(args, &[])?;
    let (cal, agents) = calibrate_and_join(args, &c).await?;
    println!(
        "### Soak: {} rounds of {} tasks ({} managers, {} fake agents)",
        args.soak_rounds, args.soak_replicas, args.managers, args.agents
    );
    calibration_line(cal);
    println!("| round | create → all running | tasks/s | remove → all gone | leader RSS at running | leader RSS after remove | followers' RSS after remove |");
    println!("|---:|---:|---:|---:|---:|---:|---|");
    let mut at_running = Vec::new();
    for round in 0..args.soak_rounds {
        let l = leader(&c);
        let name = format!("soak{round}");
        let up = probe::create_and_wait_running(&c, l, &name, args.soak_replicas, false).await?;
        let running = rss_mib(pid(&c, l));
        let down = probe::remove_and_wait_gone(&c, l, &name).await?;
        let after = rss_mib(pid(&c, l));
        let followers: Vec<String> = (0..c.nodes.len())
            .filter(|&i| i != l)
            .map(|i| format!("{:.0}", rss_mib(pid(&c, i))))
            .collect();
        at_running.push(running);
        println!(
            "| {} | {:.2} s | {:.0} | {:.2} s | {running:.0} MiB | {after:.0} MiB | {} MiB |",
            round + 1,
            up.as_secs_f64(),
            args.soak_replicas as f64 / up.as_secs_f64(),
            down.as_secs_f64(),
            followers.join(", ")
        );
    }
    if at_running.len() >= 2 {
        let (second, last) = (at_running[1], at_running[at_running.len() - 1]);
        println!();
        println!(
            "Leader RSS at running, last round vs round 2: {last:.0} vs {second:.0} MiB ({:+.1} %; target within 10 %).",
            (last / second - 1.0) * 100.0
        );
    }
    println!();
    keep_logs(args, "soak", &c);
    drop(agents);
    Ok(())
}

/// Sizes of zero would divide by zero or measure nothing: refused with the flag that said so.
fn check_sizes(a: &Args) -> anyhow::Result<()> {
    let counts = [
        ("--managers", a.managers as u64),
        ("--agents", a.agents as u64),
        ("--idle-secs", a.idle_secs),
        ("--node-tasks", a.node_tasks),
        ("--service-clients", a.service_clients as u64),
        ("--recovery-tasks", a.recovery_tasks),
        ("--soak-replicas", a.soak_replicas),
        ("--calibration-writes", a.calibration_writes as u64),
    ];
    for (flag, n) in counts {
        anyhow::ensure!(n > 0, "{flag} must be at least 1");
    }
    let lists = [
        ("--task-sizes", a.task_sizes.clone()),
        (
            "--node-sizes",
            a.node_sizes.iter().map(|&n| n as u64).collect(),
        ),
        (
            "--service-sizes",
            a.service_sizes.iter().map(|&n| n as u64).collect(),
        ),
    ];
    for (flag, sizes) in lists {
        anyhow::ensure!(
            sizes.iter().all(|&n| n > 0),
            "{flag} must list sizes of at least 1 (got {sizes:?})"
        );
    }
    anyhow::ensure!(
        a.service_sizes.windows(2).all(|w| w[0] < w[1]),
        "--service-sizes are cumulative totals and must grow (got {:?})",
        a.service_sizes
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    for p in &args.phases {
        anyhow::ensure!(
            ["tasks", "nodes", "services", "recovery", "soak"].contains(&p.as_str()),
            "unknown phase {p:?}: use tasks, nodes, services, recovery or soak"
        );
    }
    check_sizes(&args)?;
    swarm_benches::prepare_process();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    for p in &args.phases {
        eprintln!("phase {p}");
        rt.block_on(async {
            match p.as_str() {
                "tasks" => phase_tasks(&args).await,
                "nodes" => phase_nodes(&args).await,
                "services" => phase_services(&args).await,
                "recovery" => phase_recovery(&args).await,
                _ => phase_soak(&args).await,
            }
        })
        .with_context(|| format!("phase {p}"))?;
    }
    Ok(())
}
