//! `swarmd`: parses the command line and hands over to `swarm_node::run`.
use clap::Parser;

mod alloc;
#[cfg(feature = "heap-profile")]
mod heap_profile;

fn main() -> std::process::ExitCode {
    // The runtime re-executes this binary to set up containers; that mode never returns.
    swarm_runtime::init::maybe_run_init();
    // Before any thread exists: the managers' memory after bursts of task writes.
    alloc::set_up_daemon();
    let args = swarm_node::Args::parse();
    match swarm_node::run_blocking(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("swarmd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
