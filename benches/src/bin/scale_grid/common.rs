//! What every phase uses: the fake-agent process, the managers' pids, RSS and CPU, service
//! writes, the calibration rate and the state-dir readers. It prints no table.

use super::*;

pub(crate) const MIB: f64 = 1024.0 * 1024.0;

/// The fake agents' process; stopped when dropped.
pub(crate) struct Agents {
    child: Child,
    pub(crate) joined_in: Duration,
}

impl Agents {
    /// Starts `count` fake agents joined to `c` and waits until they have all joined.
    pub(crate) fn start(c: &Cluster, count: usize, prefix: &str) -> anyhow::Result<Agents> {
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

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Agents {
    /// Closes the agents' stdin, which they take as the end (they then remove their task
    /// databases from /dev/shm: a SIGKILL left ~400 MiB there per run, until tmpfs was full),
    /// and kills them only if they have not exited 5 s later.
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh cluster of `managers` managers on the fake executor.
pub(crate) fn cluster(args: &Args, extra: &[&str]) -> anyhow::Result<Cluster> {
    let mut c = Cluster::new();
    let base: Vec<String> = ["--executor", "fake", "--log-level", &args.manager_log]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .chain(args.swarmd_arg.iter().cloned())
        .collect();
    // Each manager serves its metrics on a port of its own (`allocator`).
    let with_metrics = |base: &[String]| {
        let mut a = base.to_vec();
        a.extend([
            "--metrics-addr".into(),
            format!("127.0.0.1:{}", swarm_testkit::free_port()),
        ]);
        a
    };
    c.extra_args = with_metrics(&base);
    c.init()?;
    for _ in 1..args.managers {
        c.extra_args = with_metrics(&base);
        c.join_manager(0)?;
    }
    c.extra_args = base;
    Ok(c)
}

/// What manager `i`'s allocator holds, in MiB: allocated, active, resident (its
/// `swarm_allocator_bytes` gauges); `None` if it serves no metrics or has no such counts.
pub(crate) fn allocator(c: &Cluster, i: usize) -> Option<[f64; 3]> {
    use swarm_testkit::metrics::{gauge, scrape};
    let args = &c.nodes[i].args;
    let addr = args.get(args.iter().position(|a| a == "--metrics-addr")? + 1)?;
    let text = scrape(addr).ok()?;
    let mib = |kind: &str| {
        Some(gauge(&text, &format!("swarm_allocator_bytes{{kind=\"{kind}\"}}"))? / MIB)
    };
    Some([mib("allocated")?, mib("active")?, mib("resident")?])
}

pub(crate) fn leader(c: &Cluster) -> usize {
    (0..c.nodes.len())
        .filter(|&i| c.nodes[i].pid().is_some())
        .find_map(|i| c.leader(i))
        .unwrap_or(0)
}

pub(crate) fn pid(c: &Cluster, i: usize) -> u32 {
    c.nodes[i].pid().unwrap_or(0)
}

/// How many sockets process `pid` has open (0 if it cannot be read).
pub(crate) fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|t| t.to_string_lossy().starts_with("socket:"))
                .count()
        })
        .unwrap_or(0)
}

pub(crate) fn rss_mib(pid: u32) -> f64 {
    rss_kib(pid).unwrap_or(0) as f64 / 1024.0
}

/// CPU seconds of every running manager, summed.
pub(crate) fn managers_cpu(c: &Cluster) -> f64 {
    c.nodes
        .iter()
        .filter_map(|d| d.pid())
        .map(cpu_seconds)
        .sum()
}

/// A 0-replica service spec (a write with no tasks behind it).
pub(crate) fn empty_service(name: &str) -> Vec<u8> {
    swarm_api::wire::to_bytes(&ServiceSpec::replicated(name, "busybox", 0))
}

/// Creates 0-replica services `<prefix>-<from..to>` through manager `i` with `clients`
/// concurrent writers, each on its own connection.
pub(crate) async fn create_services(
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
pub(crate) async fn calibrate(c: &Cluster, writes: usize) -> anyhow::Result<f64> {
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

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Calibrates `c`, then joins `--agents` fake agents in their own process and waits until
/// they are all ready.
pub(crate) async fn calibrate_and_join(args: &Args, c: &Cluster) -> anyhow::Result<(f64, Agents)> {
    let cal = calibrate(c, args.calibration_writes).await?;
    let agents = Agents::start(c, args.agents, "fake")?;
    probe::wait_nodes_ready(c, 0, args.agents + args.managers, Duration::from_secs(300)).await?;
    Ok((cal, agents))
}

pub(crate) fn calibration_line(rate: f64) {
    println!();
    println!("Calibration: {rate:.0} single-client writes/s on this cluster.");
    println!();
}

/// Bytes of the files under `dir`.
pub(crate) fn dir_bytes(dir: &std::path::Path) -> u64 {
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
pub(crate) fn snapshot_file(c: &Cluster, i: usize) -> Option<(u64, std::time::SystemTime)> {
    let mut found = None;
    walk(c.state_dir(i), &mut |p, m| {
        if p.file_name().and_then(|n| n.to_str()) == Some("state-machine.snapshot") {
            found = m.modified().ok().map(|t| (m.len(), t));
        }
    });
    found
}

pub(crate) fn walk(dir: &std::path::Path, f: &mut dyn FnMut(&std::path::Path, &std::fs::Metadata)) {
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

/// With `--heap-dumps DIR`: has the manager `pid` write a heap profile (see `swarmd`'s
/// `heap_profile.rs`) and prints its path, labelled, on stderr.
pub(crate) async fn heap_dump(args: &Args, pid: u32, label: &str) -> anyhow::Result<()> {
    let Some(dir) = &args.heap_dumps else {
        return Ok(());
    };
    let profiles = || -> std::collections::BTreeSet<std::path::PathBuf> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                            n.starts_with(&format!("heap.{pid}.")) && n.ends_with(".stats")
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let old = profiles();
    std::fs::write(dir.join(format!("dump.{pid}")), b"")
        .with_context(|| format!("cannot write to --heap-dumps {}", dir.display()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some(stats) = profiles().difference(&old).next() {
            let heap = stats.with_extension("");
            let line = std::fs::read_to_string(stats).unwrap_or_default();
            eprintln!(
                "heap profile, {label}: {} ({})",
                heap.display(),
                line.trim()
            );
            return Ok(());
        }
    }
    anyhow::bail!(
        "the leader (pid {pid}) wrote no heap profile into {} within 10 s: run a swarmd built \
         with `--features heap-profile`, with SWARM_HEAP_PROFILE={} and \
         _RJEM_MALLOC_CONF=prof:true in its environment (deploy/bench/scale/heap_profile.sh)",
        dir.display(),
        dir.display()
    )
}

/// Prints each manager's open sockets once the agents joined. Where the agents' connections
/// are moves a manager's RSS by 20–40 MiB (their HTTP/2 buffers), so every table that
/// compares RSS says it.
pub(crate) fn sockets_line(c: &Cluster) {
    let l = leader(c);
    let others: Vec<String> = (0..c.nodes.len())
        .filter(|&i| i != l)
        .map(|i| open_sockets(pid(c, i)).to_string())
        .collect();
    println!(
        "Open sockets once the agents joined (mostly their connections, ~25 KiB of RSS each): leader {}, followers {}.",
        open_sockets(pid(c, l)),
        others.join(", ")
    );
}
