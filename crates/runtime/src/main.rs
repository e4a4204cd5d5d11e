//! `swarm-runtime`: runc-compatible CLI over OCI bundles. Dispatches the hidden init mode
//! first, then hands argv to the CLI (`bin_cli/cli.rs`), which lives in the binary: the
//! library is the runtime, not its command line.

#[path = "bin_cli/cli.rs"]
mod cli;
#[path = "bin_cli/events.rs"]
mod events;
#[path = "bin_cli/update.rs"]
mod update;

fn main() {
    swarm_runtime::init::maybe_run_init();
    std::process::exit(cli::main(std::env::args().skip(1).collect()));
}
