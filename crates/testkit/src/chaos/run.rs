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

mod checks;
mod inject;
mod plan;
mod queries;
mod report;
mod step;
pub use plan::*;
pub use report::*;

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
        planned: opts.plans.iter().map(|p| p.steps.len()).sum(),
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
