//! `swarmctl`: parses the command line and hands over to `swarm_cli::run`.
use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = swarm_cli::Cli::parse();
    swarm_cli::run_blocking(cli)
}
