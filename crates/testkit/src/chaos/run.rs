//! The scenario runner: builds a cluster of real `swarmd` processes on network-namespace hosts
//! (fake executor), runs the workload, and walks through steps — each a fault, optionally
//! with a rolling update and a scale change issued while it is in effect — checking after
//! every step what the issue asks for.

use super::checker;
use super::faults::{self, Clock, Cpu, Disk, Net, Unsupported};
use super::history::{Input, Op, Outcome, Value};
use super::rng::Rng;
use super::workload::{self, Shared};
use crate::netns::Hosts;
use crate::Cluster;
use nix::sys::signal::Signal;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use swarm_api::control::{CreateServiceRequest, ListRequest, StatusRequest};
use swarm_types::objects::NodeState;
use swarm_types::spec::{NodeRole, ServiceMode, ServiceSpec};
use swarm_types::task::TaskState;
use swarm_types::{Node, Object, Service, Task};
use tracing::info;

/// What can go wrong in a step. Targets are chosen when the step starts (the leader then, a
/// follower, a worker).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// No fault: the workload alone (and a rolling update or scale if asked).
    None,
    /// SIGKILL the leader, restart it with the same command line.
    KillLeader,
    KillFollower,
    /// SIGSTOP the leader, SIGCONT later (a paused leader that wakes up still "leading").
    PauseLeader,
    /// Drop all traffic to and from the leader's host.
    IsolateLeader,
    /// Leader and one follower on one side, the other managers and the workers on the other.
    PartitionLeaderMinority,
    /// The leader's packets to every other host are dropped; it still receives.
    OneWayLeaderOut,
    /// 30 % packet loss both ways at the leader's host.
    LossLeader,
    /// 150 ms of latency at the leader's host (tc netem).
    LatencyLeader,
    /// 256 kbit/s out of the leader's host (tc tbf).
    SlowLinkLeader,
    /// The manager whose state dir is on a small tmpfs runs out of space.
    DiskFull,
    /// The leader gets 3 % of one CPU (cgroup quota).
    CpuStarveLeader,
    /// The leader's wall clock jumps ahead 90 s, then back.
    ClockJumpLeader,
    /// A worker is cut off for longer than heartbeat timeout + node-down grace.
    CutWorker,
    /// SIGKILL a minority of managers including the leader (5 managers: 2).
    KillMinority,
    /// SIGKILL a majority of managers including the leader: writes must be refused, then work
    /// again.
    QuorumLoss,
    /// Pause a follower, demote it, resume it (it restarts as a worker), promote it back.
    DemotePromote,
    /// SIGKILL every node, start them all again.
    TotalRestart,
}

impl Fault {
    pub const ALL: [Fault; 18] = [
        Fault::None,
        Fault::KillLeader,
        Fault::KillFollower,
        Fault::PauseLeader,
        Fault::IsolateLeader,
        Fault::PartitionLeaderMinority,
        Fault::OneWayLeaderOut,
        Fault::LossLeader,
        Fault::LatencyLeader,
        Fault::SlowLinkLeader,
        Fault::DiskFull,
        Fault::CpuStarveLeader,
        Fault::ClockJumpLeader,
        Fault::CutWorker,
        Fault::KillMinority,
        Fault::QuorumLoss,
        Fault::DemotePromote,
        Fault::TotalRestart,
    ];

    pub fn name(self) -> String {
        format!("{self:?}")
    }

    pub fn parse(s: &str) -> Option<Fault> {
        Fault::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
    }

    /// How long the fault is held before it is undone.
    fn hold(self, grace: Duration) -> Duration {
        match self {
            Fault::None => Duration::from_secs(3),
            Fault::KillLeader | Fault::KillFollower | Fault::KillMinority => Duration::from_secs(3),
            Fault::PauseLeader => Duration::from_secs(4),
            Fault::QuorumLoss => Duration::from_secs(4),
            Fault::ClockJumpLeader => Duration::from_millis(3500),
            Fault::CutWorker => super::HEARTBEAT_TIMEOUT + grace + Duration::from_secs(4),
            Fault::LossLeader | Fault::SlowLinkLeader | Fault::CpuStarveLeader => {
                Duration::from_secs(6)
            }
            _ => Duration::from_secs(5),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub fault: Fault,
    /// Start a rolling update of the step's service while the fault is in effect.
    pub update: bool,
    /// Change its replica count while the fault is in effect.
    pub scale: bool,
}

impl Step {
    pub const fn new(fault: Fault, update: bool, scale: bool) -> Step {
        Step {
            fault,
            update,
            scale,
        }
    }
    pub fn label(&self) -> String {
        let mut s = self.fault.name();
        if self.update {
            s.push_str("+update");
        }
        if self.scale {
            s.push_str("+scale");
        }
        s
    }
}

/// One cluster and what to do to it.
#[derive(Clone, Debug)]
pub struct Plan {
    pub managers: usize,
    pub workers: usize,
    /// Fixed steps; with `random_for`, steps are drawn from the seed until that much time
    /// passed.
    pub steps: Vec<Step>,
    pub random_for: Option<Duration>,
}

impl Plan {
    pub fn label(&self) -> String {
        format!("{}m+{}w", self.managers, self.workers)
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    pub seed: u64,
    pub plans: Vec<Plan>,
    /// Histories and, for failed plans, daemon logs go here.
    pub out_dir: PathBuf,
    pub clients: usize,
    pub node_down_grace: Duration,
    /// The command that reproduces this run (printed with every failure).
    pub repro: String,
}

/// The fixed-seed profile CI runs (about 4 minutes on two cores).
/// The faults that need the kernel's `sch_netem` for delay (CONFIG_NET_SCH_NETEM), which
/// the CI machine's kernel lacks: their own profile, so that a test can be marked ignored
/// (counted as such) instead of passing with a skipped step.
pub fn netem_plans() -> Vec<Plan> {
    vec![Plan {
        managers: 3,
        workers: 2,
        steps: vec![Step::new(Fault::LatencyLeader, false, false)],
        random_for: None,
    }]
}

/// The fixed CI profile: every fault but the `netem_plans` ones.
pub fn ci_plans() -> Vec<Plan> {
    use Fault::{
        ClockJumpLeader, CpuStarveLeader, CutWorker, DemotePromote, DiskFull, IsolateLeader,
        KillLeader, KillMinority, LossLeader, OneWayLeaderOut, PartitionLeaderMinority,
        PauseLeader, QuorumLoss, TotalRestart,
    };
    vec![
        Plan {
            managers: 3,
            workers: 2,
            steps: vec![
                Step::new(KillLeader, true, false),
                Step::new(PauseLeader, false, true),
                Step::new(IsolateLeader, true, true),
                Step::new(OneWayLeaderOut, false, false),
                Step::new(LossLeader, true, false),
                Step::new(DiskFull, true, false),
                Step::new(CpuStarveLeader, false, true),
                // With a rolling update across the jump: updates are paced on the leader's
                // monotonic observations (RELIABILITY.md finding 6).
                Step::new(ClockJumpLeader, true, true),
                Step::new(CutWorker, false, false),
                Step::new(QuorumLoss, false, false),
                Step::new(DemotePromote, false, false),
                Step::new(TotalRestart, true, false),
            ],
            random_for: None,
        },
        Plan {
            managers: 5,
            workers: 2,
            steps: vec![
                Step::new(KillMinority, true, false),
                Step::new(PartitionLeaderMinority, false, true),
                Step::new(IsolateLeader, true, true),
            ],
            random_for: None,
        },
    ]
}

/// The soak profile: random steps on a 3-manager and a 5-manager cluster in turn, each
/// cluster for `per_cluster`, until `total` has passed.
pub fn soak_plans(total: Duration, per_cluster: Duration) -> Vec<Plan> {
    let n = (total.as_secs() / per_cluster.as_secs().max(1)).max(1);
    (0..n)
        .map(|i| Plan {
            managers: if i % 2 == 0 { 3 } else { 5 },
            workers: 2,
            steps: Vec::new(),
            random_for: Some(per_cluster),
        })
        .collect()
}

/// What one step showed.
#[derive(Clone, Debug, Default)]
pub struct StepReport {
    pub plan: String,
    pub index: usize,
    pub label: String,
    pub target: String,
    pub skipped: Option<String>,
    /// Fault to the first acknowledged write that began after it.
    pub failover: Option<Duration>,
    /// Heal to the first acknowledged write that began after it.
    pub recovery: Option<Duration>,
    /// Longest stretch of the step without any acknowledged write.
    pub max_gap: Duration,
    pub writes_ok: usize,
    pub writes_failed: usize,
    /// Of the failed writes, those a manager refused for lack of a leader or quorum (the rest
    /// are conflicts, "already exists", "not found", or a manager that was down).
    pub writes_refused: usize,
    pub writes_unknown: usize,
    pub reads_ok: usize,
    /// Cut-off worker: fault to the replacement of its task.
    pub replaced_after: Option<Duration>,
    pub anomalies: Vec<String>,
    pub notes: Vec<String>,
    pub duration: Duration,
}

#[derive(Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub steps: Vec<StepReport>,
    /// Problems outside a step (cluster setup).
    pub errors: Vec<String>,
    pub history_files: Vec<PathBuf>,
    pub repro: String,
}

impl Report {
    pub fn anomalies(&self) -> usize {
        self.steps.iter().map(|s| s.anomalies.len()).sum::<usize>() + self.errors.len()
    }

    pub fn skipped(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter_map(|s| {
                s.skipped
                    .as_ref()
                    .map(|r| format!("{} {}: {r}", s.plan, s.label))
            })
            .collect()
    }

    /// A table for humans: one line per step, then the anomalies in full.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "chaos run, seed {}; reproduce with: {}\n{:<6} {:>3} {:<34} {:<10} {:>9} {:>9} {:>8} {:>6} {:>6} {:>6} {:>7} {:>8}  {}\n",
            self.seed, self.repro, "plan", "#", "step", "target", "failover", "recovery", "max-gap",
            "w-ok", "w-fail", "w-unk", "reads", "replace", "result"
        );
        let ms = |d: Option<Duration>| {
            d.map(|d| format!("{:.2}s", d.as_secs_f64()))
                .unwrap_or_else(|| "-".into())
        };
        for s in &self.steps {
            let result = if let Some(r) = &s.skipped {
                format!("SKIPPED ({r})")
            } else if s.anomalies.is_empty() {
                "ok".into()
            } else {
                format!("{} ANOMALIES", s.anomalies.len())
            };
            out.push_str(&format!(
                "{:<6} {:>3} {:<34} {:<10} {:>9} {:>9} {:>8} {:>6} {:>6} {:>6} {:>7} {:>8}  {}\n",
                s.plan,
                s.index,
                s.label,
                s.target,
                ms(s.failover),
                ms(s.recovery),
                format!("{:.2}s", s.max_gap.as_secs_f64()),
                s.writes_ok,
                s.writes_failed,
                s.writes_unknown,
                s.reads_ok,
                ms(s.replaced_after),
                result
            ));
        }
        for e in &self.errors {
            out.push_str(&format!("ERROR: {e}\n"));
        }
        for s in &self.steps {
            for a in &s.anomalies {
                out.push_str(&format!(
                    "ANOMALY in {} step {} ({}): {a}\n",
                    s.plan, s.index, s.label
                ));
            }
            for n in &s.notes {
                out.push_str(&format!(
                    "note {} step {} ({}): {n}\n",
                    s.plan, s.index, s.label
                ));
            }
        }
        out.push_str(&self.by_fault());
        out.push_str(&format!("histories: {:?}\n", self.history_files));
        out
    }

    /// Numbers per cluster size and fault (steps with and without an update or scale
    /// together): how many ran, failover median and worst (fault to the first acknowledged
    /// write that began after it), longest window without an acknowledged write, writes
    /// refused (certainly not applied) and with unknown outcome, anomalies.
    pub fn by_fault(&self) -> String {
        let mut groups: BTreeMap<(String, String), Vec<&StepReport>> = BTreeMap::new();
        for s in self.steps.iter().filter(|s| s.skipped.is_none()) {
            let fault = s.label.split('+').next().unwrap_or_default().to_string();
            groups.entry((s.plan.clone(), fault)).or_default().push(s);
        }
        let mut out = format!(
            "\nper fault:\n{:<6} {:<24} {:>5} {:>10} {:>10} {:>11} {:>8} {:>8} {:>9} {:>9}\n",
            "plan",
            "fault",
            "steps",
            "fo-median",
            "fo-worst",
            "gap-worst",
            "refused",
            "unknown",
            "acked",
            "anomalies"
        );
        for ((plan, fault), steps) in &groups {
            let mut fo: Vec<Duration> = steps.iter().filter_map(|s| s.failover).collect();
            fo.sort();
            let med = fo.get(fo.len() / 2).copied();
            let worst = fo.last().copied();
            let gap = steps.iter().map(|s| s.max_gap).max().unwrap_or_default();
            let f = |d: Option<Duration>| {
                d.map(|d| format!("{:.2}s", d.as_secs_f64()))
                    .unwrap_or_else(|| "-".into())
            };
            out.push_str(&format!(
                "{:<6} {:<24} {:>5} {:>10} {:>10} {:>11} {:>8} {:>8} {:>9} {:>9}\n",
                plan,
                fault,
                steps.len(),
                f(med),
                f(worst),
                format!("{:.2}s", gap.as_secs_f64()),
                steps.iter().map(|s| s.writes_refused).sum::<usize>(),
                steps.iter().map(|s| s.writes_unknown).sum::<usize>(),
                steps.iter().map(|s| s.writes_ok).sum::<usize>(),
                steps.iter().map(|s| s.anomalies.len()).sum::<usize>(),
            ));
        }
        out
    }
}

/// A running cluster with its hosts and fault tools. Field order is drop order: daemons
/// first, then packet rules, then the namespaces.
struct Env {
    cluster: Cluster,
    disk: Option<Disk>,
    clocks: BTreeMap<usize, Clock>,
    net: Net,
    _hosts: Hosts,
    managers: Vec<usize>,
    workers: Vec<usize>,
    disk_node: Option<usize>,
    skipped_setup: Vec<Unsupported>,
}

const LONG: Duration = Duration::from_secs(60);

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Asks a run to stop after the current step (a signal handler calls this); the run then
/// heals, reports what it has, and cleans up.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

fn build(plan: &Plan, opts: &Options) -> anyhow::Result<Env> {
    if let Err(why) = crate::netns::available() {
        anyhow::bail!("the chaos suite needs network namespaces (root, iproute2, iptables): {why}");
    }
    let n = plan.managers + plan.workers;
    let mut hosts = Hosts::new()?;
    for _ in 0..n {
        hosts.add()?;
    }
    let net = Net::new(&hosts)?;
    let mut cluster = Cluster::new();
    cluster.extra_args = vec![
        "--executor".into(),
        "fake".into(),
        "--node-down-grace".into(),
        format!("{}ms", opts.node_down_grace.as_millis()),
        "--log-level".into(),
        "info".into(),
    ];
    let mut skipped_setup = Vec::new();
    let lib = match faults::faketime_lib() {
        Ok(l) => Some(l),
        Err(u) => {
            skipped_setup.push(u);
            None
        }
    };
    let mut clocks = BTreeMap::new();
    let mut disk = None;
    let disk_node = plan.managers.checked_sub(1).filter(|_| plan.managers > 1);
    let managers: Vec<usize> = (0..plan.managers).collect();
    let workers: Vec<usize> = (plan.managers..n).collect();
    let mut mtoken = String::new();
    let mut wtoken = String::new();
    for h in 0..n {
        if let Some(lib) = lib.as_ref().filter(|_| h < plan.managers) {
            let file = cluster.dir.path().join(format!("n{}.faketime", h + 1));
            cluster.next_env = Clock::env(lib, &file)?;
            clocks.insert(h, Clock { file });
        }
        if Some(h) == disk_node {
            disk = Some(Disk::mount(&cluster.next_state_dir(), 96)?);
        }
        if h == 0 {
            cluster.init_on(&hosts, 0)?;
            mtoken = cluster.token(0, "manager")?;
            wtoken = cluster.token(0, "worker")?;
        } else {
            let t = if h < plan.managers { &mtoken } else { &wtoken };
            cluster.join_on(&hosts, h, 0, t)?;
            if h < plan.managers {
                cluster.wait_ready(h)?;
            }
        }
    }
    let env = Env {
        cluster,
        disk,
        clocks,
        net,
        _hosts: hosts,
        managers,
        workers,
        disk_node,
        skipped_setup,
    };
    Ok(env)
}

/// Runs every plan; never panics on an anomaly (the caller decides).
pub fn run(opts: &Options) -> Report {
    let mut report = Report {
        seed: opts.seed,
        repro: opts.repro.clone(),
        ..Default::default()
    };
    let _ = std::fs::create_dir_all(&opts.out_dir);
    let root = Rng::new(opts.seed);
    for (pi, plan) in opts.plans.iter().enumerate() {
        if stop_requested() {
            break;
        }
        let rng = root.fork(1000 + pi as u64);
        info!(plan = %plan.label(), seed = opts.seed, "chaos: building cluster");
        let env = match build(plan, opts) {
            Ok(e) => e,
            Err(e) => {
                report
                    .errors
                    .push(format!("{}: cluster setup failed: {e:#}", plan.label()));
                continue;
            }
        };
        let history = opts.out_dir.join(format!(
            "history-{}-seed{}-{pi}.jsonl",
            plan.label(),
            opts.seed
        ));
        report.history_files.push(history.clone());
        let before = report.anomalies();
        let mut runner = Runner::new(env, plan, opts, rng, history);
        runner.run_plan(&mut report);
        if report.anomalies() > before {
            runner.save_logs(&opts.out_dir.join(format!(
                "logs-{}-seed{}-{pi}",
                plan.label(),
                opts.seed
            )));
        }
        runner.shutdown();
    }
    report
}

/// One plan in progress.
struct Runner {
    env: Env,
    plan: Plan,
    opts: Options,
    rng: Rng,
    rt: tokio::runtime::Runtime,
    shared: Arc<Shared>,
    history_file: PathBuf,
    /// How much of the shared history was written out.
    flushed: usize,
    names: Vec<String>,
    /// Expected running canary tasks (replicated + global).
    canary_replicas: u64,
}

pub const CANARY: &str = "canary";
pub const CANARY_GLOBAL: &str = "canary-g";
const RUNNER: usize = 100;

impl Runner {
    fn new(env: Env, plan: &Plan, opts: &Options, rng: Rng, history_file: PathBuf) -> Runner {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let nodes: Vec<(String, PathBuf)> = env
            .cluster
            .nodes
            .iter()
            .map(|d| (d.name.clone(), d.socket()))
            .collect();
        let names = nodes.iter().map(|n| n.0.clone()).collect();
        let shared = Shared::new(nodes, env.managers.clone());
        Runner {
            env,
            plan: plan.clone(),
            opts: opts.clone(),
            rng,
            rt,
            shared,
            history_file,
            flushed: 0,
            names,
            canary_replicas: 2,
        }
    }

    fn now(&self) -> Duration {
        self.shared.now()
    }

    fn run_plan(&mut self, report: &mut Report) -> usize {
        for u in &self.env.skipped_setup {
            info!("chaos: {u}");
        }
        if let Err(e) = self.setup_canaries() {
            report.errors.push(format!(
                "{}: canary services did not start: {e}\n{}",
                self.plan.label(),
                self.env.cluster.dump()
            ));
            return 0;
        }
        for c in 0..self.opts.clients {
            let s = self.shared.clone();
            let r = self.rng.fork(c as u64 + 1);
            self.rt.spawn(workload::client(s, c, r));
        }
        self.rt.spawn(workload::sampler(self.shared.clone()));
        let started = Instant::now();
        let mut i = 0;
        loop {
            if stop_requested() {
                info!("chaos: stop requested");
                break;
            }
            let step = match self.plan.random_for {
                None => match self.plan.steps.get(i) {
                    Some(s) => *s,
                    None => break,
                },
                Some(d) => {
                    if started.elapsed() >= d {
                        break;
                    }
                    self.random_step()
                }
            };
            let r = self.run_step(i, step);
            let bad = !r.anomalies.is_empty();
            info!(
                plan = %self.plan.label(), step = i, label = %r.label, anomalies = r.anomalies.len(),
                failover = ?r.failover, recovery = ?r.recovery, max_gap = ?r.max_gap,
                "chaos: step done"
            );
            report.steps.push(r);
            i += 1;
            if bad && self.plan.random_for.is_some() {
                // Keep going in a soak: the report has the evidence; the cluster may be in a
                // bad state, so the next step's health check decides.
            }
        }
        self.shared.stop.store(true, Ordering::Relaxed);
        self.flush_history();
        i
    }

    fn random_step(&mut self) -> Step {
        let mut candidates: Vec<Fault> = Fault::ALL.to_vec();
        if self.plan.managers < 5 {
            candidates
                .retain(|f| *f != Fault::KillMinority && *f != Fault::PartitionLeaderMinority);
        }
        // Rare heavy steps.
        let fault = loop {
            let f = *self.rng.pick(&candidates);
            if matches!(
                f,
                Fault::TotalRestart | Fault::QuorumLoss | Fault::DemotePromote
            ) && !self.rng.chance(0.35)
            {
                continue;
            }
            break f;
        };
        Step::new(fault, self.rng.chance(0.5), self.rng.chance(0.4))
    }

    fn shutdown(self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.rt.shutdown_timeout(Duration::from_secs(2));
    }

    fn save_logs(&self, dir: &std::path::Path) {
        let _ = std::fs::create_dir_all(dir);
        for d in &self.env.cluster.nodes {
            let _ = std::fs::copy(&d.log, dir.join(format!("{}.log", d.name)));
        }
        eprintln!("chaos: daemon logs saved in {}", dir.display());
    }

    fn flush_history(&mut self) {
        let h = self.shared.history.lock().expect("history lock");
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.history_file)
        {
            for op in &h[self.flushed..] {
                let _ = writeln!(f, "{}", op.json());
            }
        }
        self.flushed = h.len();
    }

    // ----- cluster views -------------------------------------------------------------------

    /// Runs `f` against the first manager that answers.
    fn with_manager<T>(
        &self,
        f: impl Fn(
            workload::Client,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, tonic::Status>> + Send>,
        >,
    ) -> Result<T, String> {
        let managers = self.shared.managers.lock().expect("managers lock").clone();
        let mut last = String::from("no manager");
        for m in managers {
            let sock = self.env.cluster.nodes[m].socket();
            let r = self.rt.block_on(async {
                let c = workload::connect(&sock).await.map_err(|e| e.to_string())?;
                tokio::time::timeout(Duration::from_secs(4), f(c))
                    .await
                    .map_err(|_| "timed out".to_string())?
                    .map_err(|s| s.message().to_string())
            });
            match r {
                Ok(v) => return Ok(v),
                Err(e) => last = format!("{}: {e}", self.names[m]),
            }
        }
        Err(last)
    }

    fn nodes(&self, stale: bool) -> Result<Vec<Node>, String> {
        self.with_manager(move |mut c| {
            Box::pin(async move {
                let mut s = c
                    .list_nodes(ListRequest {
                        stale,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                let mut out = Vec::new();
                while let Some(p) = s.message().await? {
                    for o in p.objects {
                        if let Ok(Object::Node(n)) = serde_json::from_slice(&o) {
                            out.push(n);
                        }
                    }
                }
                Ok(out)
            })
        })
    }

    fn tasks(&self, service: &str) -> Result<Vec<Task>, String> {
        let service = service.to_string();
        self.with_manager(move |mut c| {
            let service = service.clone();
            Box::pin(async move {
                let mut s = c
                    .list_tasks(ListRequest {
                        service,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                let mut out = Vec::new();
                while let Some(p) = s.message().await? {
                    for o in p.objects {
                        if let Ok(Object::Task(t)) = serde_json::from_slice(&o) {
                            out.push(t);
                        }
                    }
                }
                Ok(out)
            })
        })
    }

    fn services(&self) -> Result<Vec<Service>, String> {
        self.with_manager(move |mut c| {
            Box::pin(async move {
                let mut s = c.list_services(ListRequest::default()).await?.into_inner();
                let mut out = Vec::new();
                while let Some(p) = s.message().await? {
                    for o in p.objects {
                        if let Ok(Object::Service(t)) = serde_json::from_slice(&o) {
                            out.push(t);
                        }
                    }
                }
                Ok(out)
            })
        })
    }

    fn index_of_host(&self, hostname: &str) -> Option<usize> {
        self.names.iter().position(|n| n == hostname)
    }

    /// The current leader's node index, as the managers report it.
    fn leader(&self) -> Option<usize> {
        let st = self
            .with_manager(|mut c| {
                Box::pin(async move { Ok(c.status(StatusRequest {}).await?.into_inner()) })
            })
            .ok()?;
        if st.leader_node_id.is_empty() {
            return None;
        }
        let nodes = self.nodes(true).ok()?;
        let host = nodes
            .iter()
            .find(|n| n.id.as_str() == st.leader_node_id)?
            .description
            .hostname
            .clone();
        self.index_of_host(&host)
    }

    fn wait_leader(&self) -> Result<usize, String> {
        crate::wait_until("a leader", LONG, || self.leader()).map_err(|e| e.to_string())
    }

    /// Every node ready, every manager a reachable voter, a leader; `Err` says what is not.
    fn healthy(&self) -> Result<(), String> {
        let nodes = self.nodes(false)?;
        let want = self.env.managers.len() + self.env.workers.len();
        if nodes.len() != want {
            return Err(format!("{} nodes listed, {want} expected", nodes.len()));
        }
        for n in &nodes {
            if n.status.state != NodeState::Ready {
                return Err(format!(
                    "{} is {}: {}",
                    n.description.hostname,
                    n.status.state.as_str(),
                    n.status.message
                ));
            }
        }
        let st = self.with_manager(|mut c| {
            Box::pin(async move { Ok(c.status(StatusRequest {}).await?.into_inner()) })
        })?;
        let voters: Vec<_> = st.managers.iter().filter(|m| m.voter).collect();
        if voters.len() != self.env.managers.len() {
            return Err(format!(
                "{} voters, {} managers expected",
                voters.len(),
                self.env.managers.len()
            ));
        }
        if let Some(m) = voters.iter().find(|m| m.status == "unreachable") {
            return Err(format!("manager {} is unreachable", m.addr));
        }
        Ok(())
    }

    fn wait_healthy(&self, timeout: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < timeout {
            match self.healthy() {
                Ok(()) => return Ok(start.elapsed()),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Err(format!("not healthy after {timeout:?}: {last}"))
    }

    // ----- canaries ------------------------------------------------------------------------

    fn setup_canaries(&mut self) -> Result<(), String> {
        self.wait_healthy(LONG)?;
        let mut r = ServiceSpec::replicated(CANARY, "busybox:latest", self.canary_replicas);
        r.task.placement.constraints = vec!["node.role==worker".into()];
        let mut g = ServiceSpec::replicated(CANARY_GLOBAL, "busybox:latest", 0);
        g.mode = ServiceMode::Global;
        g.task.placement.constraints = vec!["node.role==worker".into()];
        for spec in [r, g] {
            let b = swarm_api::wire::to_bytes(&spec);
            self.with_manager(move |mut c| {
                let b = b.clone();
                Box::pin(async move {
                    c.create_service(CreateServiceRequest {
                        spec: b,
                        ..Default::default()
                    })
                    .await?;
                    Ok(())
                })
            })?;
        }
        self.wait_canaries(LONG)
    }

    /// Live canary tasks: id → (node hostname, running since).
    fn canary_tasks(&self) -> Result<BTreeMap<String, (String, u64, TaskState)>, String> {
        let nodes = self.nodes(true)?;
        let host = |id: &Option<swarm_types::NodeId>| {
            id.as_ref()
                .and_then(|id| nodes.iter().find(|n| n.id == *id))
                .map(|n| n.description.hostname.clone())
                .unwrap_or_default()
        };
        let mut out = BTreeMap::new();
        for s in [CANARY, CANARY_GLOBAL] {
            for t in self.tasks(s)? {
                if t.desired_state == TaskState::Running {
                    out.insert(
                        t.id.to_string(),
                        (host(&t.node_id), t.status.timestamp, t.status.state),
                    );
                }
            }
        }
        Ok(out)
    }

    fn wait_canaries(&self, timeout: Duration) -> Result<(), String> {
        let want = self.canary_replicas as usize + self.env.workers.len();
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < timeout {
            match self.canary_tasks() {
                Ok(t) => {
                    let running = t.values().filter(|v| v.2 == TaskState::Running).count();
                    if running == want && t.len() == want {
                        return Ok(());
                    }
                    last = format!(
                        "{running} of {want} canary tasks running ({} live)",
                        t.len()
                    );
                }
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Err(format!("canaries not settled after {timeout:?}: {last}"))
    }

    // ----- a step --------------------------------------------------------------------------

    fn exec(&self, node: usize, key: &str, input: Input) -> Op {
        let s = self.shared.clone();
        let key = key.to_string();
        self.rt
            .block_on(async move { s.exec(RUNNER, node, &key, input).await })
    }

    fn random_manager(&mut self) -> usize {
        let m = self.shared.managers.lock().expect("managers lock").clone();
        *self.rng.pick(&m)
    }

    /// Runs `input` until it is acknowledged (a create that "already exists" counts: the
    /// service is there).
    fn exec_until_ok(&mut self, key: &str, input: Input, timeout: Duration) -> Result<Op, String> {
        let start = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let m = self.random_manager();
            // Every write carries its own id, retries too: the checker tells writes apart by
            // it (a read of a retried value must not be credited to a failed attempt).
            let this = match &input {
                Input::Create(v) | Input::Update(v) if attempt > 1 => {
                    let v = Value {
                        w: format!("{}#{attempt}", v.w),
                        ..v.clone()
                    };
                    if matches!(input, Input::Create(_)) {
                        Input::Create(v)
                    } else {
                        Input::Update(v)
                    }
                }
                i => i.clone(),
            };
            let op = self.exec(m, key, this);
            match &op.outcome {
                Outcome::Ok(_) => return Ok(op),
                Outcome::Fail(e) if e.contains("AlreadyExists") => return Ok(op),
                Outcome::Fail(e) | Outcome::Unknown(e) => {
                    if start.elapsed() > timeout {
                        return Err(format!(
                            "{} {key} not done after {timeout:?}: {e}",
                            input.name()
                        ));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn run_step(&mut self, index: usize, step: Step) -> StepReport {
        let started = Instant::now();
        let mut rep = StepReport {
            plan: self.plan.label(),
            index,
            label: step.label(),
            ..Default::default()
        };
        info!(plan = %rep.plan, step = index, label = %rep.label, "chaos: phase: step begins");
        if let Err(e) = self.wait_healthy(LONG) {
            // A previous step left it broken (already reported there): undo everything and try
            // once more.
            info!("chaos: not healthy before step {index}: {e}; healing all");
            self.heal_all();
            if let Err(e) = self.wait_healthy(LONG) {
                rep.anomalies.push(format!(
                    "cluster not healthy before the step, even after healing all: {e}\n{}",
                    self.env.cluster.dump()
                ));
                return rep;
            }
        }
        let _ = self.wait_canaries(Duration::from_secs(20));
        // Skip early what this machine cannot do.
        if let Some(reason) = self.unsupported(step.fault) {
            info!("chaos: skipped {}: {reason}", step.fault.name());
            rep.skipped = Some(reason);
            return rep;
        }
        let keys = [format!("s{index}-a"), format!("s{index}-b")];
        let roll = format!("s{index}-roll");
        for k in &keys {
            let v = Value {
                w: format!("init-{k}"),
                replicas: 1,
                gen: "g0".into(),
            };
            if let Err(e) = self.exec_until_ok(k, Input::Create(v), Duration::from_secs(30)) {
                rep.anomalies
                    .push(format!("could not create {k} before the fault: {e}"));
                return rep;
            }
        }
        let roll_v = Value {
            w: format!("init-{roll}"),
            replicas: 3,
            gen: "g0".into(),
        };
        if let Err(e) = self.exec_until_ok(&roll, Input::Create(roll_v), Duration::from_secs(30)) {
            rep.anomalies.push(format!("could not create {roll}: {e}"));
            return rep;
        }
        let _ = crate::wait_until("roll service running", Duration::from_secs(30), || {
            let s = self.services().ok()?;
            let r = s.iter().find(|s| s.spec.name == roll)?;
            (r.status.as_ref()?.running_tasks == 3).then_some(())
        });
        let before = match self.canary_tasks() {
            Ok(c) => c,
            Err(e) => {
                rep.anomalies.push(format!("cannot list canary tasks: {e}"));
                return rep;
            }
        };
        let canary_ids_before = self.all_canary_ids().unwrap_or_default();
        *self.shared.keys.lock().expect("keys lock") = keys.to_vec();
        // Gaps are measured from here: the clients write from now on.
        let step_t0 = self.now();
        std::thread::sleep(Duration::from_millis(1500));

        info!(step = index, fault = ?step.fault, "chaos: phase: inject");
        let fault_at = self.now();
        let mut active = match self.inject(step.fault) {
            Ok(a) => a,
            Err(InjectError::Skip(u)) => {
                info!("chaos: skipped {}: {u}", step.fault.name());
                rep.skipped = Some(u.reason);
                self.heal_all();
                *self.shared.keys.lock().expect("keys lock") = Vec::new();
                return rep;
            }
            Err(InjectError::Fail(e)) => {
                rep.anomalies
                    .push(format!("could not inject {}: {e}", step.fault.name()));
                self.heal_all();
                return rep;
            }
        };
        rep.target = active.target.clone();
        // The rolling update and the scale change go out while the fault holds.
        let mut bg = Vec::new();
        if step.update {
            std::thread::sleep(Duration::from_millis(300));
            let m = self.random_manager();
            let v = Value {
                w: format!("upd-{roll}"),
                replicas: 3,
                gen: format!("g-upd-{index}"),
            };
            let s = self.shared.clone();
            let r = roll.clone();
            bg.push(
                self.rt
                    .spawn(async move { s.exec(RUNNER, m, &r, Input::Update(v)).await }),
            );
        }
        if step.scale {
            std::thread::sleep(Duration::from_millis(1200));
            let m = self.random_manager();
            let to = if self.rng.chance(0.5) { 5 } else { 1 };
            let s = self.shared.clone();
            let r = roll.clone();
            bg.push(
                self.rt
                    .spawn(async move { s.exec(RUNNER, m, &r, Input::Scale(to)).await }),
            );
        }
        let hold = step.fault.hold(self.opts.node_down_grace);
        if step.fault == Fault::CutWorker {
            self.watch_cut_worker(&mut active, &before, fault_at, hold, &mut rep);
        } else {
            let until = fault_at + hold;
            while self.now() < until {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        info!(step = index, "chaos: phase: heal");
        let heal_at = self.now();
        self.heal(&mut active, &mut rep);

        // Liveness: writes are accepted again soon after the heal.
        let recovered = crate::wait_until(
            "an acknowledged write after heal",
            Duration::from_secs(30),
            || {
                let h = self.shared.history.lock().expect("history lock");
                h.iter()
                    .filter(|o| {
                        o.input.is_write() && o.outcome == Outcome::Ok(None) && o.start >= heal_at
                    })
                    .map(|o| o.end)
                    .min()
            },
        );
        match recovered {
            Ok(t) => rep.recovery = Some(t.saturating_sub(heal_at)),
            Err(_) => rep.anomalies.push(format!(
                "no write acknowledged within 30s after the heal\n{}",
                self.env.cluster.dump()
            )),
        }
        if let Err(e) = self.wait_healthy(LONG) {
            rep.anomalies.push(format!(
                "cluster did not recover after the heal: {e}\n{}",
                self.env.cluster.dump()
            ));
        }
        if let Err(e) = self.wait_canaries(LONG) {
            rep.anomalies.push(format!(
                "canary services did not converge after the heal: {e}"
            ));
        }

        if let Some(mine) = active.after_cut.take() {
            self.check_after_cut(&mine, &canary_ids_before, &mut rep);
        }

        info!(step = index, "chaos: phase: quiesce and check");
        self.shared.keys.lock().expect("keys lock").clear();
        let _ = crate::wait_until(
            "clients done with the step's keys",
            workload::OP_TIMEOUT * 2,
            || {
                keys.iter()
                    .all(|k| self.shared.in_flight(k) == 0)
                    .then_some(())
            },
        );
        for h in bg {
            let _ = self.rt.block_on(h);
        }
        let mut all_keys: Vec<String> = keys.to_vec();
        all_keys.push(roll.clone());
        for k in &all_keys {
            if let Err(e) = self.exec_until_ok(k, Input::Read, Duration::from_secs(30)) {
                rep.anomalies
                    .push(format!("final read of {k} failed after the heal: {e}"));
            }
        }
        // The rolling update and scale change finish once the fault is gone.
        let conv = crate::wait_until("the step's service converges", LONG, || {
            let s = self.services().ok()?;
            let r = s.iter().find(|s| s.spec.name == roll)?;
            let st = r.status.as_ref()?;
            let updating = r
                .update_status
                .as_ref()
                .is_some_and(|u| u.state.is_active());
            (st.running_tasks == st.desired_tasks && !updating).then_some(())
        });
        if conv.is_err() {
            let s = self.services().unwrap_or_default();
            let r = s.iter().find(|s| s.spec.name == roll);
            rep.anomalies.push(format!(
                "{roll} did not converge within {LONG:?} after the heal (rolling update or scale stuck): status {:?}, update {:?}",
                r.and_then(|r| r.status.clone()),
                r.and_then(|r| r.update_status.clone())
            ));
        }

        // Linearizability and lost writes, per key.
        let ops: Vec<Op> = {
            let h = self.shared.history.lock().expect("history lock");
            h.iter()
                .filter(|o| all_keys.contains(&o.key))
                .cloned()
                .collect()
        };
        for k in &all_keys {
            let kops: Vec<&Op> = ops.iter().filter(|o| &o.key == k).collect();
            let checked = checker::check_key(k, &kops);
            if let Ok(n) = checked {
                if n > checker::BUDGET {
                    rep.notes.push(format!(
                        "linearizability of {k} inconclusive: gave up after {n} configurations ({} operations)",
                        kops.len()
                    ));
                }
            }
            if let Err(e) = checked {
                rep.anomalies.push(format!(
                    "history of {k} is not linearizable: {}\nlongest linearizable prefix: {:?}\nhistory of {k}:\n  {}",
                    e.stuck_at,
                    e.longest_prefix,
                    kops.iter().map(|o| o.line()).collect::<Vec<_>>().join("\n  ")
                ));
            }
            for l in checker::lost_writes(&kops) {
                rep.anomalies.push(l);
            }
        }
        // No container restarted by a control-plane fault.
        match self.canary_tasks() {
            Ok(after) => {
                for (id, (host, ts, state)) in &before {
                    if *state != TaskState::Running || active.faulted.contains(host) {
                        continue;
                    }
                    match after.get(id) {
                        Some((h2, ts2, TaskState::Running)) if h2 == host && ts2 == ts => {}
                        other => rep.anomalies.push(format!(
                            "canary task {id} on {host} (not faulted) was restarted or replaced by the fault: now {other:?}"
                        )),
                    }
                }
            }
            Err(e) => rep
                .anomalies
                .push(format!("cannot list canary tasks after the step: {e}")),
        }
        // Running-task bound, from the sampler.
        for v in std::mem::take(&mut *self.shared.violations.lock().expect("violations lock")) {
            rep.anomalies
                .push(format!("more running tasks than replicas: {v}"));
        }
        let seen =
            std::mem::take(&mut *self.shared.observations.lock().expect("observations lock"));
        if !seen.is_empty() {
            rep.notes.push(format!(
                "{} transient surpluses (a scale-down not yet acted on), first: {}",
                seen.len(),
                seen[0]
            ));
        }
        rep.notes.append(&mut active.notes);
        self.metrics(&mut rep, &ops, step_t0, fault_at, heal_at);
        // Clean up the step's services (best effort, not checked).
        for k in &all_keys {
            let m = self.random_manager();
            let _ = self.exec(m, k, Input::Remove);
        }
        self.flush_history();
        rep.duration = started.elapsed();
        if !rep.anomalies.is_empty() {
            eprintln!(
                "chaos: ANOMALY in {} step {index} ({}); seed {}; reproduce with: {}",
                rep.plan, rep.label, self.opts.seed, self.opts.repro
            );
            for a in &rep.anomalies {
                eprintln!("chaos: ANOMALY: {a}");
            }
        }
        rep
    }

    fn metrics(
        &self,
        rep: &mut StepReport,
        ops: &[Op],
        step_t0: Duration,
        fault_at: Duration,
        heal_at: Duration,
    ) {
        let writes: Vec<&Op> = ops
            .iter()
            .filter(|o| o.input.is_write() && o.client != RUNNER)
            .collect();
        rep.writes_ok = writes
            .iter()
            .filter(|o| o.outcome == Outcome::Ok(None))
            .count();
        rep.writes_failed = writes
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::Fail(_)))
            .count();
        rep.writes_refused = writes
            .iter()
            .filter(|o| matches!(&o.outcome, Outcome::Fail(e) if e.starts_with("Unavailable")))
            .count();
        rep.writes_unknown = writes
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::Unknown(_)))
            .count();
        rep.reads_ok = ops
            .iter()
            .filter(|o| o.input == Input::Read && matches!(o.outcome, Outcome::Ok(_)))
            .count();
        let all = self.shared.history.lock().expect("history lock");
        let mut acks: Vec<Duration> = all
            .iter()
            .filter(|o| o.input.is_write() && o.outcome == Outcome::Ok(None) && o.end >= step_t0)
            .map(|o| o.end)
            .collect();
        acks.sort();
        rep.failover = all
            .iter()
            .filter(|o| o.input.is_write() && o.outcome == Outcome::Ok(None) && o.start >= fault_at)
            .map(|o| o.end.saturating_sub(fault_at))
            .min();
        let end = heal_at.max(acks.last().copied().unwrap_or(heal_at));
        let mut prev = step_t0;
        let mut gap = Duration::ZERO;
        for a in acks.iter().filter(|a| **a <= end) {
            gap = gap.max(a.saturating_sub(prev));
            prev = *a;
        }
        rep.max_gap = gap;
    }

    fn unsupported(&self, f: Fault) -> Option<String> {
        match f {
            Fault::ClockJumpLeader if self.env.clocks.is_empty() => Some(
                faults::faketime_lib()
                    .err()
                    .map(|u| u.reason)
                    .unwrap_or_else(|| "no fake clocks".into()),
            ),
            Fault::DiskFull if self.env.disk.is_none() => Some("needs 2+ managers".into()),
            Fault::CutWorker | Fault::TotalRestart if self.env.workers.is_empty() => {
                Some("no workers".into())
            }
            Fault::PartitionLeaderMinority | Fault::KillMinority if self.env.managers.len() < 5 => {
                Some("needs 5 managers".into())
            }
            _ => None,
        }
    }

    fn followers(&self, leader: usize) -> Vec<usize> {
        self.env
            .managers
            .iter()
            .copied()
            .filter(|m| *m != leader)
            .collect()
    }

    fn inject(&mut self, f: Fault) -> Result<Active, InjectError> {
        let mut a = Active::default();
        let e = |x: faults::FaultError| InjectError::Fail(x.to_string());
        let need_leader = !matches!(
            f,
            Fault::None | Fault::DiskFull | Fault::CutWorker | Fault::TotalRestart
        );
        let leader = if need_leader { self.wait_leader()? } else { 0 };
        let name = |i: usize| self.names[i].clone();
        match f {
            Fault::None => a.target = "-".into(),
            Fault::KillLeader => {
                self.env.cluster.kill(leader);
                a.killed.push(leader);
                a.target = name(leader);
                a.faulted.insert(name(leader));
            }
            Fault::KillFollower => {
                let fo = *self.rng.pick(&self.followers(leader));
                self.env.cluster.kill(fo);
                a.killed.push(fo);
                a.target = name(fo);
                a.faulted.insert(name(fo));
            }
            Fault::KillMinority | Fault::QuorumLoss => {
                let n = self.env.managers.len();
                let count = if f == Fault::KillMinority {
                    (n - 1) / 2
                } else {
                    n / 2 + 1
                };
                let mut victims = vec![leader];
                let mut rest = self.followers(leader);
                while victims.len() < count && !rest.is_empty() {
                    let i = self.rng.below(rest.len() as u64) as usize;
                    victims.push(rest.remove(i));
                }
                for v in &victims {
                    self.env.cluster.kill(*v);
                    a.killed.push(*v);
                    a.faulted.insert(name(*v));
                }
                a.target = victims
                    .iter()
                    .map(|v| name(*v))
                    .collect::<Vec<_>>()
                    .join(",");
            }
            Fault::PauseLeader => {
                self.env.cluster.signal(leader, Signal::SIGSTOP);
                a.paused.push(leader);
                a.target = name(leader);
            }
            Fault::IsolateLeader => {
                self.env.net.isolate(leader).map_err(e)?;
                a.net = true;
                a.target = name(leader);
            }
            Fault::PartitionLeaderMinority => {
                let mut side: Vec<usize> = vec![leader];
                let fo = self.followers(leader);
                side.push(*self.rng.pick(&fo));
                let other: Vec<usize> = (0..self.names.len())
                    .filter(|i| !side.contains(i))
                    .collect();
                self.env.net.partition(&side, &other).map_err(e)?;
                a.net = true;
                a.target = side.iter().map(|v| name(*v)).collect::<Vec<_>>().join(",");
            }
            Fault::OneWayLeaderOut => {
                for o in (0..self.names.len()).filter(|o| *o != leader) {
                    self.env.net.block(leader, o).map_err(e)?;
                }
                a.net = true;
                a.target = name(leader);
            }
            Fault::LossLeader => {
                self.env.net.loss(leader, 30).map_err(e)?;
                a.net = true;
                a.target = name(leader);
            }
            Fault::LatencyLeader => {
                self.env
                    .net
                    .latency(leader, 150)
                    .map_err(e)?
                    .map_err(InjectError::Skip)?;
                a.net = true;
                a.target = name(leader);
            }
            Fault::SlowLinkLeader => {
                self.env
                    .net
                    .slow_link(leader, 256)
                    .map_err(e)?
                    .map_err(InjectError::Skip)?;
                a.net = true;
                a.target = name(leader);
            }
            Fault::DiskFull => {
                let d = self.env.disk_node.ok_or("no disk node")?;
                let bytes = self.env.disk.as_ref().ok_or("no disk")?.fill().map_err(e)?;
                a.disk = true;
                a.target = name(d);
                a.notes
                    .push(format!("filled {}'s state dir with {bytes} bytes", name(d)));
            }
            Fault::CpuStarveLeader => {
                let pid = self.env.cluster.nodes[leader]
                    .pid()
                    .ok_or("leader has no pid")?;
                a.cpu = Some(Cpu::starve(pid, 3).map_err(e)?.map_err(InjectError::Skip)?);
                a.target = name(leader);
            }
            Fault::ClockJumpLeader => {
                let secs = 90i64;
                let c = self
                    .env
                    .clocks
                    .get(&leader)
                    .ok_or("leader has no fake clock")?;
                c.set(secs).map_err(e)?;
                a.clock = Some(leader);
                a.target = format!("{}{secs:+}s", name(leader));
                // libfaketime re-reads the offset once a second.
                std::thread::sleep(Duration::from_millis(1100));
            }
            Fault::CutWorker => {
                let w = *self.rng.pick(&self.env.workers);
                self.env.net.isolate(w).map_err(e)?;
                a.net = true;
                a.target = name(w);
                a.faulted.insert(name(w));
                a.cut_worker = Some(w);
            }
            Fault::DemotePromote => {
                let fo = *self.rng.pick(&self.followers(leader));
                a.target = name(fo);
                a.faulted.insert(name(fo));
                self.env.cluster.signal(fo, Signal::SIGSTOP);
                a.paused.push(fo);
                // Clients stop using it: it is about to leave the managers.
                self.shared
                    .managers
                    .lock()
                    .expect("managers lock")
                    .retain(|m| *m != fo);
                let out = self.env.cluster.ctl(leader, &["node", "demote", &name(fo)]);
                a.notes
                    .push(format!("demote {} while paused: {out:?}", name(fo)));
                if out.is_err() {
                    return Err(format!("demoting paused {} failed: {out:?}", name(fo)).into());
                }
                a.demoted = Some(fo);
            }
            Fault::TotalRestart => {
                for i in 0..self.names.len() {
                    self.env.cluster.kill(i);
                    a.killed.push(i);
                    a.faulted.insert(name(i));
                }
                a.target = "all".into();
            }
        }
        Ok(a)
    }

    /// Undoes every fault this harness can inject, whatever is active: packet rules and
    /// qdiscs, paused processes, fake clocks, the full disk, and restarts daemons that are
    /// not running.
    pub fn heal_all(&mut self) {
        let _ = self.env.net.heal();
        for i in 0..self.names.len() {
            self.env.cluster.signal(i, Signal::SIGCONT);
        }
        for c in self.env.clocks.values() {
            let _ = c.set(0);
        }
        if let Some(d) = &self.env.disk {
            d.free();
        }
        for i in 0..self.names.len() {
            if !self.env.cluster.nodes[i].is_running() {
                let _ = self.env.cluster.restart(i);
            }
        }
        let mut m = self.shared.managers.lock().expect("managers lock");
        for i in &self.env.managers {
            if !m.contains(i) {
                m.push(*i);
            }
        }
    }

    /// Undoes whatever `a` holds.
    fn heal(&mut self, a: &mut Active, rep: &mut StepReport) {
        for p in a.paused.drain(..) {
            self.env.cluster.signal(p, Signal::SIGCONT);
        }
        if a.net {
            if let Err(e) = self.env.net.heal() {
                rep.anomalies
                    .push(format!("healing the network failed: {e}"));
            }
        }
        a.cpu = None;
        if let Some(c) = a.clock.take() {
            if let Some(c) = self.env.clocks.get(&c) {
                let _ = c.set(0);
            }
        }
        if a.disk {
            if let Some(d) = &self.env.disk {
                d.free();
            }
            if let Some(n) = self.env.disk_node {
                // Either it serves again on its own, or it has exited (fail-stop) and a
                // supervisor would start it again; a manager that does neither is caught by
                // the health check that follows.
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(20) {
                    if !self.env.cluster.nodes[n].is_running() {
                        a.notes.push(format!(
                            "{} exited on the full disk (restarted, as a supervisor would): {}",
                            self.names[n],
                            self.env.cluster.nodes[n]
                                .log_tail(400)
                                .lines()
                                .rfind(|l| l.contains("raft stopped"))
                                .unwrap_or("")
                        ));
                        a.killed.push(n);
                        break;
                    }
                    if self.env.cluster.ctl(n, &["cluster", "inspect"]).is_ok() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
        }
        for k in std::mem::take(&mut a.killed) {
            if let Err(e) = self.env.cluster.restart(k) {
                rep.anomalies
                    .push(format!("restarting {} failed: {e}", self.names[k]));
            }
        }
        if let Some(fo) = a.demoted.take() {
            let name = self.names[fo].clone();
            // It learns its new role from its next heartbeat and restarts as a worker.
            let demoted = crate::wait_until(&format!("{name} is a worker"), LONG, || {
                let n = self.nodes(false).ok()?;
                n.iter()
                    .find(|n| n.description.hostname == name)
                    .filter(|n| n.role == NodeRole::Worker && n.status.state == NodeState::Ready)
                    .map(|_| ())
            });
            if let Err(e) = demoted {
                rep.anomalies
                    .push(format!("{e}\n{}", self.env.cluster.dump()));
            }
            let leader = self.wait_leader().unwrap_or(0);
            let out = crate::wait_until(&format!("{name} promoted back"), LONG, || {
                self.env
                    .cluster
                    .ctl(leader, &["node", "promote", &name])
                    .ok()
            });
            if let Err(e) = out {
                rep.anomalies.push(format!("promoting {name} back: {e}"));
            }
            let back = crate::wait_until(
                &format!("{name} is a voter again"),
                Duration::from_secs(90),
                || {
                    let st = self
                        .with_manager(|mut c| {
                            Box::pin(
                                async move { Ok(c.status(StatusRequest {}).await?.into_inner()) },
                            )
                        })
                        .ok()?;
                    let voters = st
                        .managers
                        .iter()
                        .filter(|m| m.voter && m.status != "unreachable")
                        .count();
                    (voters == self.env.managers.len()).then_some(())
                },
            );
            if let Err(e) = back {
                rep.anomalies
                    .push(format!("{e}\n{}", self.env.cluster.dump()));
            }
            let mut m = self.shared.managers.lock().expect("managers lock");
            if !m.contains(&fo) {
                m.push(fo);
            }
        }
    }

    /// Every canary task id, live or not.
    fn all_canary_ids(&self) -> Result<BTreeSet<String>, String> {
        let mut out = BTreeSet::new();
        for s in [CANARY, CANARY_GLOBAL] {
            out.extend(self.tasks(s)?.into_iter().map(|t| t.id.to_string()));
        }
        Ok(out)
    }

    /// After a cut-off worker is back: its replaced tasks stop (the surplus goes), and nothing
    /// churns: one new task per task it lost, and the set stays put.
    fn check_after_cut(
        &mut self,
        mine: &BTreeSet<String>,
        ids_before: &BTreeSet<String>,
        rep: &mut StepReport,
    ) {
        let stopped = crate::wait_until(
            "the cut-off worker's old tasks stop",
            Duration::from_secs(30),
            || {
                let mut all = Vec::new();
                for s in [CANARY, CANARY_GLOBAL] {
                    all.extend(self.tasks(s).ok()?);
                }
                all.iter()
                    .filter(|t| mine.contains(t.id.as_str()))
                    .all(|t| t.status.state.is_terminal())
                    .then_some(())
            },
        );
        if let Err(e) = stopped {
            rep.anomalies
                .push(format!("surplus not removed after the heal: {e}"));
        }
        let first = self.canary_tasks().unwrap_or_default();
        std::thread::sleep(Duration::from_secs(3));
        let second = self.canary_tasks().unwrap_or_default();
        if first.keys().ne(second.keys()) {
            rep.anomalies.push(format!(
                "canary tasks churn after the heal: {:?} then {:?}",
                first.keys().collect::<Vec<_>>(),
                second.keys().collect::<Vec<_>>()
            ));
        }
        let new: Vec<String> = self
            .all_canary_ids()
            .unwrap_or_default()
            .into_iter()
            .filter(|id| !ids_before.contains(id))
            .collect();
        if new.len() > mine.len() {
            rep.anomalies.push(format!(
                "thrash: {} canary tasks created for {} lost on the cut-off worker: {new:?}",
                new.len(),
                mine.len()
            ));
        }
    }

    /// Holds a worker's cut for `hold`, watching when its canary task is replaced, then checks
    /// the replacement came no sooner than heartbeat timeout + grace (the last heartbeat may
    /// have come up to one period before the cut), and no later than a few seconds after.
    fn watch_cut_worker(
        &mut self,
        a: &mut Active,
        before: &BTreeMap<String, (String, u64, TaskState)>,
        fault_at: Duration,
        hold: Duration,
        rep: &mut StepReport,
    ) {
        let w = a.cut_worker.expect("cut worker");
        let host = self.names[w].clone();
        let mine: BTreeSet<String> = before
            .iter()
            .filter(|(_, v)| v.0 == host)
            .map(|(k, _)| k.clone())
            .collect();
        let mut replaced = None;
        while self.now() < fault_at + hold {
            if replaced.is_none() {
                if let Ok(now) = self.canary_tasks() {
                    // A task of the cut worker is no longer desired running.
                    if mine.iter().any(|id| !now.contains_key(id)) {
                        replaced = Some(self.now().saturating_sub(fault_at));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let grace = self.opts.node_down_grace;
        let min = super::HEARTBEAT_TIMEOUT - super::HEARTBEAT_PERIOD + grace;
        let max = super::HEARTBEAT_TIMEOUT + grace + Duration::from_secs(3);
        rep.replaced_after = replaced;
        match replaced {
            None => rep.anomalies.push(format!(
                "the cut-off worker {host}'s tasks were not replaced within {hold:?} (expected by {max:?})"
            )),
            Some(t) if t + Duration::from_millis(300) < min => rep.anomalies.push(format!(
                "the cut-off worker {host}'s tasks were replaced after {t:?}, before heartbeat timeout + grace ({min:?} at the earliest)"
            )),
            Some(t) if t > max => rep.anomalies.push(format!(
                "the cut-off worker {host}'s tasks were replaced only after {t:?} (expected by {max:?})"
            )),
            _ => {}
        }
        a.after_cut = Some(mine);
        a.notes
            .push(format!("{host}'s canary tasks replaced after {replaced:?}"));
    }
}

/// Why a fault was not injected.
enum InjectError {
    /// This machine cannot do it (reported as skipped, with the reason).
    Skip(Unsupported),
    Fail(String),
}

impl From<String> for InjectError {
    fn from(s: String) -> Self {
        InjectError::Fail(s)
    }
}

impl From<&str> for InjectError {
    fn from(s: &str) -> Self {
        InjectError::Fail(s.to_string())
    }
}

/// What a step has done that heal must undo.
#[derive(Default)]
struct Active {
    target: String,
    killed: Vec<usize>,
    paused: Vec<usize>,
    net: bool,
    disk: bool,
    cpu: Option<Cpu>,
    clock: Option<usize>,
    demoted: Option<usize>,
    cut_worker: Option<usize>,
    after_cut: Option<BTreeSet<String>>,
    /// Hostnames whose own process or link was faulted (their tasks may legitimately move).
    faulted: BTreeSet<String>,
    notes: Vec<String>,
}
