//! Phase `nodes`: 100, 1,000, 5,000 idle agents, a 10k create among them, and the time to
//! mark a killed agent down.

use super::*;

/// Nodes: fleets of 100, 1,000, 5,000 agents, idle and under a create; heartbeat cost,
/// session memory and how long a dead node takes to be marked down.
pub(crate) async fn phase_nodes(args: &Args) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let mut cals = Vec::new();
    for &n in &args.node_sizes {
        let c = cluster(args, &[])?;
        cals.push(calibrate(&c, args.calibration_writes).await?);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let l = leader(&c);
        let base = rss_mib(pid(&c, l));
        let agents = Agents::start(&c, n, "fake")?;
        probe::wait_nodes_ready(&c, l, n + args.managers, Duration::from_secs(600)).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (lc0, ac0, t0) = (
            cpu_seconds(pid(&c, l)),
            cpu_seconds(agents.pid()),
            Instant::now(),
        );
        tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
        let secs = t0.elapsed().as_secs_f64();
        let leader_cores = (cpu_seconds(pid(&c, l)) - lc0) / secs;
        let agent_cores = (cpu_seconds(agents.pid()) - ac0) / secs;
        let idle_rss = rss_mib(pid(&c, l));
        let lc1 = cpu_seconds(pid(&c, l));
        let up = probe::create_and_wait_running(&c, l, "nodes", args.node_tasks, false).await?;
        let create_cpu = cpu_seconds(pid(&c, l)) - lc1;
        probe::remove_and_wait_gone(&c, l, "nodes").await?;
        let down = time_to_down(&c, l).await?;
        keep_logs(args, &format!("nodes{n}"), &c);
        rows.push(format!(
            "| {n} | {:.1} s | {leader_cores:.3} | {:.1} | {agent_cores:.2} | {base:.0} → {idle_rss:.0} MiB | {:.1} | {:.2} s | {:.0} | {create_cpu:.1} | {:.2} s |",
            agents.joined_in.as_secs_f64(),
            leader_cores * 1e6 / n as f64,
            (idle_rss - base) * 1024.0 / n as f64,
            up.as_secs_f64(),
            args.node_tasks as f64 / up.as_secs_f64(),
            down.as_secs_f64(),
        ));
    }
    println!(
        "### Nodes ({} managers, a fresh cluster per fleet size, fake agents in their own process)",
        args.managers
    );
    println!();
    let cals: Vec<String> = cals.iter().map(|r| format!("{r:.0}")).collect();
    println!(
        "Calibration: {} single-client writes/s on the clusters of the rows below, in order.",
        cals.join(", ")
    );
    println!();
    println!("| agents | all joined | leader cores idle | leader CPU-µs per node per second | agents' cores idle | leader RSS no agents → idle fleet | KiB per node | create {} → running | tasks/s | leader CPU-s (create) | killed agent → marked down |", args.node_tasks);
    println!("|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|");
    for r in rows {
        println!("{r}");
    }
    println!();
    Ok(())
}

/// Starts one more agent in its own process, kills it, and times until the manager `l` lists
/// it Down.
async fn time_to_down(c: &Cluster, l: usize) -> anyhow::Result<Duration> {
    let probe_agent = Agents::start(c, 1, "victim")?;
    let host = "victim00000";
    let state = |out: &str| -> Option<String> {
        out.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["Hostname"] == host)
            .and_then(|v| v["Status"].as_str().map(str::to_string))
    };
    let t0 = Instant::now();
    loop {
        let out = c.ctl(l, &["node", "ls", "--format", "json", "--stale"])?;
        if state(&out).as_deref() == Some("Ready") {
            break;
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(60),
            "{host} not ready after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(probe_agent);
    let t0 = Instant::now();
    loop {
        let out = c.ctl(l, &["node", "ls", "--format", "json", "--stale"])?;
        if state(&out).as_deref() == Some("Down") {
            return Ok(t0.elapsed());
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(120),
            "{host} not down after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
