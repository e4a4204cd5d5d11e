//! `swarmd`: one daemon per host. Every node runs the agent; manager nodes also run the
//! manager (Raft member, control API, node membership). This crate composes them: it decides
//! between creating a cluster, joining one and resuming from the state dir.
#![forbid(unsafe_code)]

mod agent;
mod agent_route;
mod allocator;
mod args;
mod host;
mod identity;
mod membership;
mod metrics;
mod node;
mod registry;
mod renewal;
mod server;
mod userns_remap;
mod worker_nodes;

pub use allocator::{report_allocator_stats, set_up_workers_with, AllocatorStats};
pub use args::Args;
pub use node::run;

/// Builds the tokio runtime and runs the daemon until SIGTERM/SIGINT. Returns within a few
/// seconds of the signal: containers are left running (the next start re-adopts them), and a
/// runtime call still in flight on the blocking pool is not waited for beyond
/// [`BLOCKING_GRACE`] (what it leaves behind is what a crash would, which re-adoption handles).
pub fn run_blocking(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(allocator::on_worker_park)
        .build()?;
    let res = rt.block_on(run(args));
    rt.shutdown_timeout(BLOCKING_GRACE);
    res
}

/// How long an exiting swarmd waits for calls still running on tokio's blocking pool.
pub const BLOCKING_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
