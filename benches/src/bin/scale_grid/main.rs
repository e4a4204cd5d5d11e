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
use swarm_testkit::procstat::{cpu_seconds, rss_kib, status_kb};
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
    /// Recovery phase: seconds to wait after the join before the leader is killed (0: at
    /// once, while the restart's and the join's writes are still being flushed, as the grid
    /// has always measured; a few seconds measure a settled cluster's failover instead).
    #[arg(long, default_value_t = 0)]
    failover_settle_secs: u64,
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
    /// Tasks phase: ask the leader for a heap profile before each create and once it has
    /// settled; soak phase: once all of a round's tasks run and once they are gone. Into this
    /// directory (the managers' `SWARM_HEAP_PROFILE`). Needs a `swarmd`
    /// built with the `heap-profile` feature; `deploy/bench/scale/heap_profile.sh` sets it up.
    #[arg(long)]
    heap_dumps: Option<std::path::PathBuf>,
}

mod common;
mod nodes;
mod recovery;
mod services;
mod soak;
mod tasks;

use common::*;
use nodes::phase_nodes;
use recovery::phase_recovery;
use services::phase_services;
use soak::phase_soak;
use tasks::phase_tasks;

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
