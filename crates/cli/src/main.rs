//! `swarmctl`: parses the command line and hands over to `swarm_cli::run`.

fn main() -> std::process::ExitCode {
    // Like other command-line tools, end quietly when the reader of our output goes away
    // (`swarmctl service ls | head -1`) instead of failing on the next write.
    // SAFETY: called first, before any thread exists; restores the default disposition.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = swarm_cli::parse_args();
    swarm_cli::run_blocking(cli)
}
