//! A fleet of fake agents in a process of its own, so a benchmark can measure the managers
//! and the agents apart (CPU, memory). Joins `--count` agents with a worker token, prints
//! `joined <count> in <seconds> s` on stdout, then runs them until its stdin closes (the
//! benchmark holds the pipe; if it dies, the fleet goes with it) or it is killed.

use clap::Parser;
use std::io::Read as _;
use swarm_benches::fleet::Fleet;

#[derive(Parser, Debug)]
struct Args {
    /// Managers' addresses, comma separated (agent i joins through the (i mod n)-th).
    #[arg(long, value_delimiter = ',', required = true)]
    join: Vec<String>,
    /// A worker join token (`swarmctl cluster join-token worker -q`).
    #[arg(long)]
    token: String,
    /// How many agents.
    #[arg(long)]
    count: usize,
    /// Hostnames are `<prefix><index>`; give each fleet of one cluster its own.
    #[arg(long, default_value = "fake")]
    hostname_prefix: String,
    /// Where the agents keep their local task databases (a directory per agent is made in a
    /// new temporary directory here and removed at exit).
    #[arg(long, default_value = "/dev/shm")]
    state_dir: std::path::PathBuf,
    /// Joins in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrent_joins: usize,
    /// Worker threads of the agents' runtime (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.count > 0, "--count must be at least 1");
    swarm_benches::prepare_process();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        rt.worker_threads(args.threads);
    }
    let rt = rt.enable_all().build()?;
    let dir = tempfile::tempdir_in(&args.state_dir)?;
    let fleet = Fleet {
        addrs: args.join.clone(),
        token: args.token.clone(),
        count: args.count,
        hostname_prefix: args.hostname_prefix.clone(),
        state_dir: dir.path().to_path_buf(),
        concurrent_joins: args.concurrent_joins,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let took = rt.block_on(fleet.start(stop_rx))?;
    println!("joined {} in {:.2} s", args.count, took.as_secs_f64());
    // Run until the benchmark closes our stdin.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    let _ = stop_tx.send(true);
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    drop(dir);
    Ok(())
}
