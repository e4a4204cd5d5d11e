//! `swarmd`: one daemon per host. Every node runs the agent; manager nodes also run the
//! manager (Raft member, control API, node membership). This crate composes them: it decides
//! between creating a cluster, joining one and resuming from the state dir.
#![forbid(unsafe_code)]

mod args;
mod identity;
mod metrics;
mod node;
mod server;

pub use args::Args;
pub use node::run;

/// Builds the tokio runtime and runs the daemon until SIGTERM/SIGINT.
pub fn run_blocking(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}
