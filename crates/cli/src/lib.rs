//! `swarmctl`, the command-line client of the control API. Docker's noun/verb tree
//! (`service create`, `node ls`, ...) with docker's flag names, table layouts and
//! `--format json` keys, so scripts written for `docker` keep working.
#![forbid(unsafe_code)]

pub mod client;
pub mod commands;
pub mod docker_auth;
pub mod output;
pub mod parse;
pub mod template;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "swarmctl",
    version,
    about = "control a swarm cluster",
    propagate_version = true
)]
pub struct Cli {
    /// Manager to talk to: unix:///path/to/swarmd.sock, tcp://HOST:PORT or HOST:PORT.
    #[arg(
        short = 'H',
        long,
        global = true,
        env = "SWARM_HOST",
        default_value = "unix:///var/lib/swarmd/swarmd.sock"
    )]
    pub host: String,
    /// Read from the contacted manager's copy without confirming with the leader.
    #[arg(long, global = true)]
    pub stale: bool,
    /// Directory with an admin client bundle (ca.pem, cert.pem, key.pem) for TCP hosts; make
    /// one with `swarmctl cluster ca client-bundle DIR` on a manager.
    #[arg(long, global = true, env = "SWARM_TLS_DIR")]
    pub tls_dir: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process; boxing the large variant buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Manage services.
    #[command(subcommand)]
    Service(commands::service::ServiceCmd),
    /// Manage nodes.
    #[command(subcommand)]
    Node(commands::node::NodeCmd),
    /// Manage the cluster.
    #[command(subcommand)]
    Cluster(commands::cluster::ClusterCmd),
    /// Manage networks.
    #[command(subcommand)]
    Network(commands::network::NetworkCmd),
    /// Manage images of the local node.
    #[command(subcommand)]
    Image(commands::image::ImageCmd),
    /// Access to the cluster registry.
    #[command(subcommand)]
    Registry(commands::registry::RegistryCmd),
    /// Containers of the local node (`container logs`).
    #[command(subcommand)]
    Container(commands::container::ContainerCmd),
    /// Manage volumes of the local node.
    #[command(subcommand)]
    Volume(commands::volume::VolumeCmd),
    /// Get real-time events from the cluster (services, nodes, tasks, networks).
    Events(commands::events::EventsArgs),
    /// Show client and server versions.
    Version,
    /// Print a shell completion script: `source <(swarmctl completion bash)`, or write it to
    /// your shell's completion directory.
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// The command line: `Cli`'s, with the global options listed once, in the top-level help.
/// Every subcommand still accepts them (as Docker users type `service ls --stale`), through
/// hidden copies that stop clap from repeating them in each subcommand's help.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let globals: Vec<clap::Arg> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set())
        .map(|a| a.clone().hide(true))
        .collect();
    fn hide_in(mut sc: clap::Command, globals: &[clap::Arg]) -> clap::Command {
        for a in globals {
            sc = sc.arg(a.clone());
        }
        sc.mut_subcommands(|c| hide_in(c, globals))
    }
    cmd.mut_subcommands(|sc| hide_in(sc, &globals))
        .after_help("Global options (-H, --stale, --tls-dir) go before or after the command.")
}

/// Parses the process's arguments with [`command`] (usage errors exit 2, like clap's).
pub fn parse_args() -> Cli {
    use clap::FromArgMatches;
    let m = command().get_matches();
    Cli::from_arg_matches(&m).unwrap_or_else(|e| e.exit())
}

/// Runs a command; errors go to stderr. Exit status: 0 success, 1 the command failed (or a
/// followed service did not converge), 2 the command line was wrong (clap's usage errors).
pub fn run_blocking(cli: Cli) -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("swarmctl: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("swarmctl: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Completion { shell } = cli.command {
        use clap::CommandFactory;
        use std::io::Write;
        // Into memory first: the generator panics on a closed pipe (`| head`).
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "swarmctl", &mut script);
        let mut out = std::io::stdout().lock();
        return match out.write_all(&script).and_then(|()| out.flush()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            r => Ok(r?),
        };
    }
    let mut ctx = client::Context::new(&cli.host, cli.stale)?;
    ctx.tls_dir = cli.tls_dir.clone();
    let res = match cli.command {
        Command::Service(c) => commands::service::run(&ctx, c).await,
        Command::Node(c) => commands::node::run(&ctx, c).await,
        Command::Cluster(c) => commands::cluster::run(&ctx, c).await,
        Command::Image(c) => commands::image::run(&ctx, c).await,
        Command::Registry(c) => commands::registry::run(&ctx, c).await,
        Command::Volume(c) => commands::volume::run(&ctx, c).await,
        Command::Network(c) => commands::network::run(&ctx, c).await,
        Command::Events(a) => commands::events::run(&ctx, a).await,
        Command::Container(c) => commands::container::run(&ctx, c).await,
        Command::Version => commands::version(&ctx).await,
        Command::Completion { .. } => unreachable!("handled above"),
    };
    match res {
        Err(e) => Err(ctx.explain(e).await),
        ok => ok,
    }
}

#[cfg(test)]
mod tests {
    use clap::FromArgMatches;

    #[test]
    fn global_options_are_listed_once_and_accepted_everywhere() {
        let mut top = super::command();
        let help = top.render_help().to_string();
        assert!(help.contains("--host"), "{help}");
        let mut ls = super::command();
        let ls = ls
            .find_subcommand_mut("service")
            .unwrap()
            .find_subcommand_mut("ls")
            .unwrap();
        let sub_help = ls.render_help().to_string();
        assert!(!sub_help.contains("--host"), "{sub_help}");
        let m = super::command()
            .try_get_matches_from([
                "swarmctl",
                "service",
                "ls",
                "--stale",
                "-H",
                "unix:///x.sock",
            ])
            .unwrap();
        let cli = super::Cli::from_arg_matches(&m).unwrap();
        assert!(cli.stale);
        assert_eq!(cli.host, "unix:///x.sock");
    }
}
