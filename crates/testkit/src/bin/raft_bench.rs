//! Control-plane benchmark: three `swarmd` managers on loopback with durable (fsynced) Raft
//! storage. Measures committed writes per second and latency at 1 and N concurrent clients,
//! leader failover time (SIGKILL → next committed write), idle resident memory, and the
//! on-disk size of the state dirs after many writes and a snapshot.
//!
//! Progress goes to stderr; a markdown report goes to stdout. Every daemon is killed when the
//! harness is dropped (also on errors).
#![forbid(unsafe_code)]

use anyhow::{anyhow, bail, Context as _};
use clap::Parser;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use swarm_api::control::control_client::ControlClient;
use swarm_api::control::{CreateServiceRequest, StatusRequest, StatusResponse};
use swarm_testkit::{wait_until, Cluster};
use swarm_types::spec::ServiceSpec;
use tokio::runtime::Runtime;
use tonic::transport::Channel;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "raft_bench",
    about = "Benchmark the swarm control plane (3 managers on loopback, durable storage)"
)]
struct Args {
    /// Writes measured with one client (to the leader).
    #[arg(long, default_value_t = 5_000)]
    writes_single: usize,
    /// Writes measured with `--clients` concurrent clients (to the leader).
    #[arg(long, default_value_t = 50_000)]
    writes_concurrent: usize,
    /// Writes measured with `--clients` concurrent clients sent to a follower (forwarded).
    #[arg(long, default_value_t = 20_000)]
    writes_follower: usize,
    /// Concurrent clients (each on its own connection).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Unmeasured writes before each measured run.
    #[arg(long, default_value_t = 500)]
    warmup: usize,
    /// Leader failover trials.
    #[arg(long, default_value_t = 20)]
    failover_trials: usize,
    /// Seconds the fresh cluster idles before its managers' RSS is read.
    #[arg(long, default_value_t = 5)]
    idle_secs: u64,
    /// Writes before the state dirs are measured (on a fresh cluster).
    #[arg(long, default_value_t = 100_000)]
    disk_writes: usize,
    /// `--raft-snapshot-interval` given to every manager.
    #[arg(long, default_value_t = 10_000)]
    snapshot_interval: u64,
    /// `--log-level` given to every manager.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Replicas of each created service (0 keeps the benchmark to pure Raft writes: no tasks).
    #[arg(long, default_value_t = 0)]
    replicas: u64,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 10)]
    request_timeout_secs: u64,
    /// Extra flag for every swarmd (repeatable), e.g. `--swarmd-arg=--raft-election-timeout-ms=250`.
    #[arg(long = "swarmd-arg", allow_hyphen_values = true)]
    swarmd_args: Vec<String>,
    /// Phases to run, comma separated: rss, throughput, failover, disk.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "rss,throughput,failover,disk"
    )]
    phases: Vec<String>,
}

const N: usize = 3;

fn log(msg: impl AsRef<str>) {
    eprintln!("[raft_bench {:>8.1}s] {}", elapsed_s(), msg.as_ref());
}

fn elapsed_s() -> f64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

fn spec_bytes(name: &str, replicas: u64) -> Vec<u8> {
    swarm_api::wire::to_bytes(&ServiceSpec::replicated(name, "busybox", replicas))
}

/// A 3-manager cluster plus node-id ↔ index mapping.
struct Bench {
    c: Cluster,
    node_ids: Vec<String>,
    args: Args,
    rt: Runtime,
}

async fn connect(socket: &Path) -> anyhow::Result<ControlClient<Channel>> {
    let t = swarm_api::transport::Target::Unix(socket.display().to_string());
    let ch = tokio::time::timeout(Duration::from_secs(5), swarm_api::transport::connect(&t))
        .await
        .map_err(|_| anyhow!("connecting to {} timed out", socket.display()))??;
    Ok(ControlClient::new(ch))
}

async fn status_of(socket: &Path) -> anyhow::Result<StatusResponse> {
    let mut c = connect(socket).await?;
    let r = tokio::time::timeout(Duration::from_secs(3), c.status(StatusRequest {}))
        .await
        .map_err(|_| anyhow!("status on {} timed out", socket.display()))??;
    Ok(r.into_inner())
}

impl Bench {
    fn start(args: &Args, rt: Runtime) -> anyhow::Result<Bench> {
        let mut c = Cluster::new();
        c.extra_args = vec![
            "--log-level".into(),
            args.log_level.clone(),
            "--raft-snapshot-interval".into(),
            args.snapshot_interval.to_string(),
        ];
        c.extra_args.extend(args.swarmd_args.iter().cloned());
        c.init().context("first manager")?;
        for _ in 1..N {
            c.join_manager(0)
                .map_err(|e| anyhow!("manager join: {e:#}\n{}", c.dump()))?;
        }
        let mut node_ids = Vec::new();
        for i in 0..N {
            let s = rt.block_on(status_of(&c.nodes[i].socket()))?;
            node_ids.push(s.node_id);
        }
        let mut b = Bench {
            c,
            node_ids,
            args: args.clone(),
            rt,
        };
        b.wait_healthy(None, Duration::from_secs(60))?;
        Ok(b)
    }

    fn socket(&self, i: usize) -> PathBuf {
        self.c.nodes[i].socket()
    }

    fn status(&self, i: usize) -> anyhow::Result<StatusResponse> {
        self.rt.block_on(status_of(&self.socket(i)))
    }

    fn index_of(&self, node_id: &str) -> Option<usize> {
        self.node_ids.iter().position(|n| n == node_id)
    }

    /// Waits until every manager answers, all agree on one leader, the leader reports one
    /// leader and two reachable managers, and (when given) node `caught_up` has applied the
    /// leader's commit index as it was when the wait started. Returns the leader's index.
    fn wait_healthy(
        &mut self,
        caught_up: Option<usize>,
        timeout: Duration,
    ) -> anyhow::Result<usize> {
        let mut target: Option<u64> = None;
        let mut last_err = String::new();
        let start = Instant::now();
        loop {
            match self.check_healthy(caught_up, &mut target) {
                Ok(Some(l)) => return Ok(l),
                Ok(None) => {}
                Err(e) => last_err = format!("{e:#}"),
            }
            if start.elapsed() > timeout {
                bail!(
                    "cluster not healthy after {timeout:?} (last: {last_err})\n{}",
                    self.c.dump()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn check_healthy(
        &mut self,
        caught_up: Option<usize>,
        target: &mut Option<u64>,
    ) -> anyhow::Result<Option<usize>> {
        let mut st = Vec::new();
        for i in 0..N {
            if !self.c.nodes[i].is_running() {
                bail!(
                    "{} is not running:\n{}",
                    self.c.nodes[i].name,
                    self.c.nodes[i].log_tail(30)
                );
            }
            st.push(self.status(i)?);
        }
        let lid = &st[0].leader_node_id;
        if lid.is_empty() || st.iter().any(|s| &s.leader_node_id != lid) {
            return Ok(None);
        }
        let l = self
            .index_of(lid)
            .ok_or_else(|| anyhow!("unknown leader node id {lid}"))?;
        let ls = &st[l];
        let leaders = ls.managers.iter().filter(|m| m.status == "leader").count();
        let reachable = ls
            .managers
            .iter()
            .filter(|m| m.status == "reachable")
            .count();
        if leaders != 1 || reachable != N - 1 {
            return Ok(None);
        }
        if let Some(k) = caught_up {
            let t = *target.get_or_insert(ls.commit_index);
            if st[k].applied_index < t {
                return Ok(None);
            }
        }
        Ok(Some(l))
    }

    fn leader(&mut self) -> anyhow::Result<usize> {
        self.wait_healthy(None, Duration::from_secs(30))
    }
}

// ---------------------------------------------------------------------------------------------
// Phase 1: throughput and latency

struct WriteStats {
    ok: usize,
    errors: usize,
    first_errors: Vec<String>,
    wall: Duration,
    lat_us: Vec<u64>,
}

impl WriteStats {
    fn per_sec(&self) -> f64 {
        self.ok as f64 / self.wall.as_secs_f64()
    }
    fn pct_ms(&self, q: f64) -> f64 {
        pct(&self.lat_us, q) as f64 / 1000.0
    }
}

/// Value at quantile `q` (nearest rank) of a sorted slice.
fn pct(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// `n` create_service writes named `<prefix>-<i>` by `clients` concurrent clients, each on its
/// own connection to `socket`.
async fn run_writes(
    socket: PathBuf,
    n: usize,
    clients: usize,
    prefix: String,
    replicas: u64,
    timeout: Duration,
) -> anyhow::Result<WriteStats> {
    let mut conns = Vec::new();
    for _ in 0..clients {
        conns.push(connect(&socket).await?);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(clients + 1));
    let mut tasks = Vec::new();
    for mut client in conns {
        let next = next.clone();
        let barrier = barrier.clone();
        let prefix = prefix.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = Vec::new();
            barrier.wait().await;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let req = CreateServiceRequest {
                    spec: spec_bytes(&format!("{prefix}-{i}"), replicas),
                    ..Default::default()
                };
                let t0 = Instant::now();
                match tokio::time::timeout(timeout, client.create_service(req)).await {
                    Ok(Ok(_)) => lat.push(t0.elapsed().as_micros() as u64),
                    Ok(Err(s)) => errors.push(format!("{:?}: {}", s.code(), s.message())),
                    Err(_) => errors.push(format!("client timeout after {timeout:?}")),
                }
            }
            (lat, errors)
        }));
    }
    barrier.wait().await;
    let start = Instant::now();
    let mut lat_us = Vec::with_capacity(n);
    let mut errs = Vec::new();
    for t in tasks {
        let (l, e) = t.await.context("writer task panicked")?;
        lat_us.extend(l);
        errs.extend(e);
    }
    let wall = start.elapsed();
    lat_us.sort_unstable();
    Ok(WriteStats {
        ok: lat_us.len(),
        errors: errs.len(),
        first_errors: errs.into_iter().take(5).collect(),
        wall,
        lat_us,
    })
}

impl Bench {
    fn writes(
        &self,
        node: usize,
        n: usize,
        clients: usize,
        prefix: &str,
    ) -> anyhow::Result<WriteStats> {
        let s = self.rt.block_on(run_writes(
            self.socket(node),
            n,
            clients,
            prefix.to_string(),
            self.args.replicas,
            Duration::from_secs(self.args.request_timeout_secs),
        ))?;
        if s.errors > 0 {
            log(format!(
                "{prefix}: {} of {n} writes failed, e.g. {:?}",
                s.errors, s.first_errors
            ));
        }
        if s.errors * 100 > n {
            bail!(
                "{prefix}: too many failed writes ({} of {n}): {:?}\n{}",
                s.errors,
                s.first_errors,
                self.c.dump()
            );
        }
        Ok(s)
    }

    fn measured(
        &self,
        label: &str,
        node: usize,
        n: usize,
        clients: usize,
        prefix: &str,
    ) -> anyhow::Result<(WriteStats, CpuUse)> {
        if self.args.warmup > 0 {
            self.writes(node, self.args.warmup, clients, &format!("{prefix}w"))?;
        }
        let before = self.status(node)?;
        let cpu0 = self.cpu_sample();
        let s = self.writes(node, n, clients, prefix)?;
        let cpu = self.cpu_since(&cpu0);
        let after = self.status(node)?;
        log(format!(
            "{label}: {} ok, {:.0} writes/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms \
             (raft log advanced {} entries; CPU cores: swarmd {:.2}, bench {:.2}, other {:.2})",
            s.ok,
            s.per_sec(),
            s.pct_ms(0.50),
            s.pct_ms(0.99),
            s.pct_ms(1.0),
            after.commit_index.saturating_sub(before.commit_index),
            cpu.swarmd,
            cpu.bench,
            cpu.other
        ));
        Ok((s, cpu))
    }
}

// ---------------------------------------------------------------------------------------------
// CPU accounting: where the machine's CPU went during a measured run (other processes on this
// 2-core machine, e.g. a concurrent build, skew the numbers; this makes that visible).

/// (busy, total) clock ticks of the whole machine.
fn machine_ticks() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

struct CpuSample {
    at: Instant,
    swarmd: u64,
    me: u64,
    busy: u64,
}

/// CPU used during a run, in cores (1.0 = one core fully busy).
struct CpuUse {
    swarmd: f64,
    bench: f64,
    other: f64,
}

impl Bench {
    fn cpu_sample(&self) -> CpuSample {
        let swarmd = self
            .c
            .nodes
            .iter()
            .filter_map(|d| d.pid())
            .map(|p| swarm_testkit::procstat::cpu_ticks(&p.to_string()))
            .sum();
        CpuSample {
            at: Instant::now(),
            swarmd,
            me: swarm_testkit::procstat::cpu_ticks("self"),
            busy: machine_ticks().0,
        }
    }

    fn cpu_since(&self, a: &CpuSample) -> CpuUse {
        let b = self.cpu_sample();
        let ticks = b.at.duration_since(a.at).as_secs_f64() * clk_tck();
        let cores = |t: u64| t as f64 / ticks;
        let swarmd = cores(b.swarmd.saturating_sub(a.swarmd));
        let bench = cores(b.me.saturating_sub(a.me));
        let busy = cores(b.busy.saturating_sub(a.busy));
        CpuUse {
            swarmd,
            bench,
            other: (busy - swarmd - bench).max(0.0),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Phase 2: failover

struct Trial {
    took: Duration,
    /// When a survivor first reported a new leader (None: not seen before the first write).
    new_leader: Option<Duration>,
    attempts: usize,
    errors: BTreeMap<String, usize>,
}

/// Issues a write every `every`, alternating between `targets`, until one succeeds; returns
/// the time from `t0` to the first acknowledgement.
async fn first_write_after(
    t0: Instant,
    targets: Vec<ControlClient<Channel>>,
    old_leader: String,
    prefix: String,
    replicas: u64,
    every: Duration,
    give_up: Duration,
) -> anyhow::Result<Trial> {
    let mut set = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut attempts = 0usize;
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    // Polls the survivors' status for the moment one of them knows a new leader.
    let seen = Arc::new(std::sync::Mutex::new(None::<Duration>));
    let poller = {
        let seen = seen.clone();
        let mut cs = targets.clone();
        tokio::spawn(async move {
            loop {
                for c in cs.iter_mut() {
                    let r = tokio::time::timeout(
                        Duration::from_millis(500),
                        c.status(StatusRequest {}),
                    )
                    .await;
                    if let Ok(Ok(r)) = r {
                        let l = &r.get_ref().leader_node_id;
                        if !l.is_empty() && *l != old_leader {
                            *seen.lock().expect("lock") = Some(t0.elapsed());
                            return;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let res = loop {
        tokio::select! {
            _ = tick.tick() => {
                if t0.elapsed() > give_up {
                    break Err(anyhow!("no write committed within {give_up:?} of the leader kill; errors: {errors:?}"));
                }
                if set.len() < 1000 {
                    let mut c = targets[attempts % targets.len()].clone();
                    let req = CreateServiceRequest {
                        spec: spec_bytes(&format!("{prefix}-{attempts}"), replicas),
                        ..Default::default()
                    };
                    attempts += 1;
                    set.spawn(async move {
                        match tokio::time::timeout(Duration::from_secs(5), c.create_service(req)).await {
                            Ok(Ok(_)) => Ok(Instant::now()),
                            Ok(Err(s)) => Err(format!("{:?}: {}", s.code(), first_words(s.message()))),
                            Err(_) => Err("client timeout 5s".to_string()),
                        }
                    });
                }
            }
            Some(r) = set.join_next(), if !set.is_empty() => {
                match r.context("attempt task")? {
                    Ok(at) => break Ok(at.duration_since(t0)),
                    Err(e) => *errors.entry(e).or_default() += 1,
                }
            }
        }
    };
    set.abort_all();
    poller.abort();
    let new_leader = *seen.lock().expect("lock");
    Ok(Trial {
        took: res?,
        new_leader,
        attempts,
        errors,
    })
}

/// An error message without the numbers that vary (for grouping).
fn first_words(m: &str) -> String {
    m.chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .take(80)
        .collect()
}

impl Bench {
    fn failover(&mut self, trials: usize) -> anyhow::Result<Vec<Trial>> {
        let mut out = Vec::new();
        for t in 0..trials {
            let leader = self.leader()?;
            let survivors: Vec<usize> = (0..N).filter(|i| *i != leader).collect();
            let clients = self.rt.block_on(async {
                let mut v = Vec::new();
                for &i in &survivors {
                    v.push(connect(&self.socket(i)).await?);
                }
                anyhow::Ok(v)
            })?;
            // Let the survivors' connections settle and heartbeats flow.
            std::thread::sleep(Duration::from_millis(300));
            let t0 = Instant::now();
            self.c.kill(leader);
            let trial = self.rt.block_on(first_write_after(
                t0,
                clients,
                self.node_ids[leader].clone(),
                format!("fo{t}"),
                self.args.replicas,
                Duration::from_millis(10),
                Duration::from_secs(30),
            ));
            let trial =
                trial.map_err(|e| anyhow!("failover trial {t}: {e:#}\n{}", self.c.dump()))?;
            log(format!(
                "failover trial {t}: killed {} (leader), new leader known after {:?} ms, \
                 first committed write after {:.0} ms ({} attempts, failures: {:?})",
                self.c.nodes[leader].name,
                trial.new_leader.map(|d| d.as_millis()),
                trial.took.as_secs_f64() * 1000.0,
                trial.attempts,
                trial.errors
            ));
            out.push(trial);
            self.c.restart(leader)?;
            self.c.wait_ready(leader)?;
            self.wait_healthy(Some(leader), Duration::from_secs(60))?;
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Phase 3: resident memory

/// Processes whose `comm` is exactly `name`.
fn pids_named(name: &str) -> Vec<u32> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
                if comm.trim() == name {
                    v.push(pid);
                }
            }
        }
    }
    v.sort_unstable();
    v
}

fn mb(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

impl Bench {
    fn rss_table(&mut self, title: &str) -> anyhow::Result<String> {
        let mut s = String::new();
        writeln!(s, "| {title} | VmRSS | VmHWM (peak) |")?;
        writeln!(s, "|---|---:|---:|")?;
        for i in 0..N {
            let pid = self.c.nodes[i]
                .pid()
                .ok_or_else(|| anyhow!("{} not running", self.c.nodes[i].name))?;
            let rss = swarm_testkit::procstat::status_kb(pid, "VmRSS:")
                .ok_or_else(|| anyhow!("no VmRSS for {pid}"))?;
            let hwm = swarm_testkit::procstat::status_kb(pid, "VmHWM:").unwrap_or(0);
            writeln!(
                s,
                "| swarmd manager {} (pid {pid}) | {} | {} |",
                self.c.nodes[i].name,
                mb(rss),
                mb(hwm)
            )?;
        }
        Ok(s)
    }
}

fn docker_rss() -> String {
    let mut s = String::new();
    for name in ["dockerd", "containerd"] {
        let pids = pids_named(name);
        if pids.is_empty() {
            let _ = writeln!(s, "| {name} | not running | |");
        }
        for pid in pids {
            let rss = swarm_testkit::procstat::status_kb(pid, "VmRSS:").unwrap_or(0);
            let hwm = swarm_testkit::procstat::status_kb(pid, "VmHWM:").unwrap_or(0);
            let _ = writeln!(s, "| {name} (pid {pid}) | {} | {} |", mb(rss), mb(hwm));
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Phase 4: disk

/// `du -sb` (apparent bytes) and `du -sk` (allocated KiB) of a path.
fn du(path: &Path) -> anyhow::Result<(u64, u64)> {
    let run = |flag: &str| -> anyhow::Result<u64> {
        let out = std::process::Command::new("du")
            .arg(flag)
            .arg(path)
            .output()
            .context("run du")?;
        if !out.status.success() {
            bail!(
                "du {flag} {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow!("unexpected du output"))
    };
    Ok((run("-sb")?, run("-sk")?))
}

// ---------------------------------------------------------------------------------------------

fn machine() -> String {
    let cmd = |c: &str, a: &[&str]| {
        std::process::Command::new(c)
            .args(a)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|_| "?".into())
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let mem = proc_meminfo_total().unwrap_or_else(|| "?".into());
    let fs = cmd("df", &["-T", &std::env::temp_dir().display().to_string()]);
    let fs = fs
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(1).map(|t| t.to_string()))
        .unwrap_or_else(|| "?".into());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "nproc {}, {cpu}, {mem} RAM, kernel {}, state dirs on {} ({fs}); load average at start {}",
        cmd("nproc", &[]),
        cmd("uname", &["-r"]),
        std::env::temp_dir().display(),
        load.join(" ")
    )
}

fn proc_meminfo_total() -> Option<String> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = s
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
}

fn write_row(out: &mut String, what: &str, node: &str, clients: usize, r: &(WriteStats, CpuUse)) {
    let (s, c) = r;
    let _ = writeln!(
        out,
        "| {what} | {node} | {clients} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.2} / {:.2} / {:.2} |",
        s.ok,
        s.per_sec(),
        s.pct_ms(0.50),
        s.pct_ms(0.99),
        s.pct_ms(1.0),
        s.errors,
        c.swarmd,
        c.bench,
        c.other
    );
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("raft_bench: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    for p in &args.phases {
        if !["rss", "throughput", "failover", "disk"].contains(&p.as_str()) {
            bail!("unknown phase {p:?}: expected rss, throughput, failover or disk");
        }
    }
    let phase = |p: &str| args.phases.iter().any(|x| x == p);
    let rt = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("tokio runtime")
    };
    log(format!(
        "swarmd from {}",
        swarm_testkit::bin("swarmd").display()
    ));
    let mut report = String::new();
    writeln!(report, "Machine: {}", machine())?;
    writeln!(report)?;

    if phase("rss") || phase("throughput") || phase("failover") {
        log("starting 3 managers");
        let mut b = Bench::start(&args, rt()?)?;
        let leader = b.leader()?;
        let follower = (0..N).find(|i| *i != leader).expect("a follower");
        log(format!("cluster up; leader {}", b.c.nodes[leader].name));

        if phase("rss") {
            log(format!("idling {} s before reading RSS", args.idle_secs));
            std::thread::sleep(Duration::from_secs(args.idle_secs));
            writeln!(
                report,
                "### Idle resident memory (fresh 3-manager cluster, {} s idle)\n",
                args.idle_secs
            )?;
            let t = b.rss_table("process")?;
            write!(report, "{t}")?;
            write!(report, "{}", docker_rss())?;
            writeln!(report)?;
        }

        if phase("throughput") {
            let mut t = String::new();
            writeln!(
                t,
                "### Durable writes (`CreateService`, {} replicas)\n",
                args.replicas
            )?;
            writeln!(t, "| run | sent to | clients | writes | writes/s | p50 ms | p99 ms | max ms | errors | CPU cores: 3×swarmd / bench / other |")?;
            writeln!(t, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")?;
            let s = b.measured("1 client -> leader", leader, args.writes_single, 1, "s1")?;
            write_row(&mut t, "sequential", "leader", 1, &s);
            let s = b.measured(
                &format!("{} clients -> leader", args.clients),
                leader,
                args.writes_concurrent,
                args.clients,
                "s64",
            )?;
            write_row(&mut t, "concurrent", "leader", args.clients, &s);
            let s = b.measured(
                &format!("{} clients -> follower", args.clients),
                follower,
                args.writes_follower,
                args.clients,
                "f64",
            )?;
            write_row(
                &mut t,
                "concurrent, forwarded",
                "follower",
                args.clients,
                &s,
            );
            writeln!(t)?;
            write!(report, "{t}")?;
            if b.leader()? != leader {
                log("WARNING: the leader changed during the throughput runs");
                writeln!(
                    report,
                    "WARNING: the leader changed during the throughput runs.\n"
                )?;
            }
            let t = b.rss_table("after the throughput runs")?;
            writeln!(report, "{t}")?;
        }

        if phase("failover") && args.failover_trials > 0 {
            log(format!("{} failover trials", args.failover_trials));
            let trials = b.failover(args.failover_trials)?;
            let mut ms: Vec<u64> = trials.iter().map(|t| t.took.as_millis() as u64).collect();
            ms.sort_unstable();
            let attempts: usize = trials.iter().map(|t| t.attempts).sum();
            let mut errs: BTreeMap<String, usize> = BTreeMap::new();
            for t in &trials {
                for (k, v) in &t.errors {
                    *errs.entry(k.clone()).or_default() += v;
                }
            }
            writeln!(report, "### Leader failover (SIGKILL leader → first committed write through a survivor), {} trials\n", ms.len())?;
            writeln!(report, "| min | median | p90 | worst | mean |")?;
            writeln!(report, "|---:|---:|---:|---:|---:|")?;
            writeln!(
                report,
                "| {} ms | {} ms | {} ms | {} ms | {:.0} ms |\n",
                pct(&ms, 0.0),
                pct(&ms, 0.5),
                pct(&ms, 0.9),
                pct(&ms, 1.0),
                ms.iter().sum::<u64>() as f64 / ms.len().max(1) as f64
            )?;
            writeln!(report, "All trials (ms, sorted): {ms:?}\n")?;
            let mut el: Vec<u64> = trials
                .iter()
                .filter_map(|t| t.new_leader.map(|d| d.as_millis() as u64))
                .collect();
            el.sort_unstable();
            writeln!(
                report,
                "Time until a survivor reported a new leader (polled every ~5 ms; {} of {} trials \
                 seen before the first write): median {} ms, worst {} ms; all: {el:?}\n",
                el.len(),
                trials.len(),
                pct(&el, 0.5),
                pct(&el, 1.0)
            )?;
            writeln!(
                report,
                "Writes were attempted every 10 ms, alternating between the two survivors \
                 ({attempts} attempts in total); failed attempts by error: {errs:?}\n"
            )?;
        }
        drop(b);
    }

    if phase("disk") {
        log(format!(
            "disk: fresh cluster, {} writes with {} clients, snapshot interval {}",
            args.disk_writes, args.clients, args.snapshot_interval
        ));
        let mut b = Bench::start(&args, rt()?)?;
        let leader = b.leader()?;
        let s = b.writes(leader, args.disk_writes, args.clients, "d")?;
        log(format!(
            "disk: {} writes in {:.1} s ({:.0}/s)",
            s.ok,
            s.wall.as_secs_f64(),
            s.per_sec()
        ));
        // Wait until every manager has taken the snapshot the last writes made due and has
        // applied everything.
        let commit = b.status(leader)?.commit_index;
        let want = commit.saturating_sub(args.snapshot_interval);
        let mut st = Vec::new();
        wait_until(
            "a snapshot on every manager",
            Duration::from_secs(120),
            || {
                st.clear();
                for i in 0..N {
                    let s = b.status(i).ok()?;
                    if s.snapshot_index < want || s.applied_index < commit {
                        return None;
                    }
                    st.push(s);
                }
                Some(())
            },
        )
        .map_err(|e| {
            let now: Vec<String> = (0..N)
                .map(|i| match b.status(i) {
                    Ok(s) => format!(
                        "{}: snapshot {} applied {} purged {}",
                        b.c.nodes[i].name, s.snapshot_index, s.applied_index, s.purged_index
                    ),
                    Err(e) => format!("{}: {e:#}", b.c.nodes[i].name),
                })
                .collect();
            anyhow!("{e:#} (want snapshot ≥ {want}, applied ≥ {commit}): {now:?}")
        })?;
        // sled flushes in the background every second.
        std::thread::sleep(Duration::from_secs(2));
        writeln!(
            report,
            "### State dir after {} writes (fresh cluster, `--raft-snapshot-interval {}`), commit index {commit}\n",
            s.ok, args.snapshot_interval
        )?;
        writeln!(report, "| manager | snapshot index | purged index | state dir (du -sb) | raft/ (du -sb) | state dir allocated (du -sk) |")?;
        writeln!(report, "|---|---:|---:|---:|---:|---:|")?;
        for i in 0..N {
            let s = b.status(i)?;
            let (all_b, all_k) = du(b.c.state_dir(i))?;
            let (raft_b, _) = du(&b.c.state_dir(i).join("raft"))?;
            writeln!(
                report,
                "| {} | {} | {} | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
                b.c.nodes[i].name,
                s.snapshot_index,
                s.purged_index,
                all_b as f64 / 1048576.0,
                raft_b as f64 / 1048576.0,
                all_k as f64 / 1024.0
            )?;
        }
        writeln!(report)?;
        let t = b.rss_table(&format!("RSS holding {} services", s.ok))?;
        writeln!(report, "{t}")?;
        drop(b);
    }

    print!("{report}");
    Ok(())
}
