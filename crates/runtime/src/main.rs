//! `swarm-runtime`: runc-compatible CLI over OCI bundles. Thin: dispatches the hidden init mode,
//! then hands argv to [`swarm_runtime::cli::main`].

fn main() {
    swarm_runtime::init::maybe_run_init();
    std::process::exit(swarm_runtime::cli::main(std::env::args().skip(1).collect()));
}
