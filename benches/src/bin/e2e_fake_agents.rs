//! End-to-end orchestration throughput through Raft with many fake agents.
//!
//! Starts real `swarmd` managers (separate processes, durable Raft on disk), joins N in-process
//! agents that run the real agent code (dispatcher session, controllers, batched status
//! reports) over a fake executor, then measures how fast `service create --replicas R` reaches
//! R running tasks (as `ListServices` counts them, the numbers `service ls` shows), and how
//! fast the tasks are removed again.

use clap::Parser;
use std::time::Duration;
use swarm_benches::fleet::Fleet;
use swarm_benches::probe;
use swarm_testkit::procstat::rss_mib;
use swarm_testkit::Cluster;

#[derive(Parser, Debug)]
struct Args {
    /// Managers (1, 3, 5).
    #[arg(long, default_value_t = 3)]
    managers: usize,
    /// Fake agents.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Replicas of the service.
    #[arg(long, default_value_t = 10_000)]
    replicas: u64,
    /// Managers' `--log-level` (a level or tracing directives).
    #[arg(long, default_value = "warn")]
    manager_log: String,
    /// Print (elapsed, running) every 100 ms while a service converges.
    #[arg(long)]
    timeline: bool,
    /// Where the fake agents keep their local task databases.
    #[arg(long, default_value = "/dev/shm")]
    agent_state_dir: std::path::PathBuf,
    /// Rounds (each: create, wait running, remove, wait gone).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    swarm_benches::prepare_process();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    eprintln!("starting {} managers", args.managers);
    let mut c = Cluster::new();
    c.extra_args = vec![
        "--executor".into(),
        "fake".into(),
        "--log-level".into(),
        args.manager_log.clone(),
    ];
    c.init()?;
    for _ in 1..args.managers {
        c.join_manager(0)?;
    }
    let token = c.token(0, "worker")?;
    let addrs: Vec<String> = c.nodes.iter().map(|d| d.addr.clone()).collect();
    let dir = tempfile::tempdir_in(&args.agent_state_dir)?;
    let fleet = Fleet {
        addrs,
        token,
        count: args.agents,
        hostname_prefix: "fake".into(),
        state_dir: dir.path().to_path_buf(),
        concurrent_joins: 1,
    };

    rt.block_on(async {
        eprintln!("joining {} fake agents", args.agents);
        let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let joined = fleet.start(stop_rx).await?;
        eprintln!("joined in {joined:?}; waiting for all nodes ready");
        probe::wait_nodes_ready(&c, 0, args.agents + args.managers, Duration::from_secs(120))
            .await?;
        println!("| round | replicas | create → all running | tasks/s | remove → all gone | managers' RSS at all running |");
        println!("|---:|---:|---:|---:|---:|---|");
        for round in 0..args.rounds {
            let name = format!("bench{round}");
            let up = probe::create_and_wait_running(&c, 0, &name, args.replicas, args.timeline)
                .await?;
            let rss: Vec<String> = c
                .nodes
                .iter()
                .map(|n| match n.pid().and_then(rss_mib) {
                    Some(m) => format!("{m} MiB"),
                    None => "?".into(),
                })
                .collect();
            let down = probe::remove_and_wait_gone(&c, 0, &name).await?;
            println!(
                "| {} | {} | {:.2} s | {:.0} | {:.2} s | {} |",
                round + 1,
                args.replicas,
                up.as_secs_f64(),
                args.replicas as f64 / up.as_secs_f64(),
                down.as_secs_f64(),
                rss.join(", ")
            );
        }
        anyhow::Ok(())
    })?;
    Ok(())
}
