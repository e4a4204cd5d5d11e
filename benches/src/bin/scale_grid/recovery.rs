//! Phase `recovery`: 100k tasks in the store; snapshot size, restart, join and failover.

use super::*;

/// Recovery with many tasks in the store: snapshot size, a manager restart to serving, a new
/// manager joining to voting, a leader kill to the next write.
pub(crate) async fn phase_recovery(args: &Args) -> anyhow::Result<()> {
    let interval = args.recovery_snapshot_interval.to_string();
    let mut c = cluster(args, &["--raft-snapshot-interval", &interval])?;
    let (cal, agents) = calibrate_and_join(args, &c).await?;
    let n = args.recovery_tasks;
    let l = leader(&c);
    let up = probe::create_and_wait_running(&c, l, "recovery", n, false).await?;
    let created_at = std::time::SystemTime::now() - up;
    let mut rows = vec![format!(
        "| create {n} → all running | {:.2} s | |",
        up.as_secs_f64()
    )];

    // The newest snapshot, if it was taken after the create began (it holds the tasks).
    rows.push(match snapshot_file(&c, l) {
        Some((b, at)) if at >= created_at => format!(
            "| leader's newest snapshot | {:.1} MiB | {:.0} bytes per task, written {:.1} s after the create began; state dir {:.0} MiB |",
            b as f64 / MIB,
            b as f64 / n as f64,
            at.duration_since(created_at).unwrap_or_default().as_secs_f64(),
            dir_bytes(c.state_dir(l)) as f64 / MIB
        ),
        _ => format!(
            "| leader's newest snapshot | none since the create began | state dir {:.0} MiB |",
            dir_bytes(c.state_dir(l)) as f64 / MIB
        ),
    });
    let rss: Vec<String> = (0..c.nodes.len())
        .map(|i| format!("{:.0}", rss_mib(pid(&c, i))))
        .collect();
    rows.push(format!(
        "| managers' RSS with all tasks | {} MiB | leader first: n{} |",
        rss.join(", "),
        l + 1
    ));

    // At rest with every task running: what the leader's periodic control-loop pass costs
    // (after the burst's tail: status reports, its snapshot, the log's purge).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let lp = pid(&c, l);
    let (cpu0, t0) = (cpu_seconds(lp), Instant::now());
    tokio::time::sleep(Duration::from_secs(20)).await;
    rows.push(format!(
        "| leader's CPU at rest, all tasks running | {:.3} cores | over {:.0} s, from 10 s after all ran |",
        (cpu_seconds(lp) - cpu0) / t0.elapsed().as_secs_f64(),
        t0.elapsed().as_secs_f64()
    ));

    // A follower killed and started again: until it answers a linearizable read.
    let f = (0..c.nodes.len())
        .find(|&i| i != l)
        .context("no follower")?;
    c.kill(f);
    let t0 = Instant::now();
    c.restart(f)?;
    c.wait_ready(f)?;
    rows.push(format!(
        "| follower SIGKILLed → restarted and serving (`cluster inspect`) | {:.2} s | its RSS after: {:.0} MiB |",
        t0.elapsed().as_secs_f64(),
        rss_mib(pid(&c, f))
    ));

    // A new manager: from start to a reachable voter.
    let t0 = Instant::now();
    let j = c.join_manager(l)?;
    rows.push(format!(
        "| new manager started → voting (a snapshot install, if the log behind it was purged) | {:.2} s | its RSS after: {:.0} MiB |",
        t0.elapsed().as_secs_f64(),
        rss_mib(pid(&c, j))
    ));

    // The leader killed: until a write through a survivor commits. A new attempt starts
    // every 100 ms (each may wait up to 10 s), so the time is when the cluster first took a
    // write, not when one unlucky attempt gave up.
    tokio::time::sleep(Duration::from_secs(args.failover_settle_secs)).await;
    let l = leader(&c);
    let s = (0..c.nodes.len())
        .find(|&i| i != l)
        .context("no survivor")?;
    let client = c.client(s).await?;
    c.kill(l);
    let t0 = Instant::now();
    let killed_at = utc_time_of_day(std::time::SystemTime::now());
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<Duration>(1);
    let mut attempts = tokio::task::JoinSet::new();
    let first = loop {
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(60),
            "no write 60 s after the leader was killed"
        );
        let mut client = client.clone();
        let done = done_tx.clone();
        let k = attempts.len();
        attempts.spawn(async move {
            let req = CreateServiceRequest {
                spec: empty_service(&format!("after-failover-{k}")),
                ..Default::default()
            };
            let r = tokio::time::timeout(Duration::from_secs(10), client.create_service(req));
            if let Ok(Ok(_)) = r.await {
                let _ = done.try_send(t0.elapsed());
            }
        });
        tokio::select! {
            Some(at) = done_rx.recv() => break at,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    };
    let tried = attempts.len();
    attempts.abort_all();
    rows.push(format!(
        "| leader SIGKILLed {} → first write committed (through a survivor) | {:.2} s | {tried} attempts started, one every 100 ms; killed at {killed_at} UTC (to match the managers' logs) |",
        match args.failover_settle_secs {
            0 => "right after the join".to_string(),
            n => format!("{n} s after the join"),
        },
        first.as_secs_f64()
    ));

    println!(
        "### Recovery with {n} tasks in the store ({} managers, {} fake agents, `--raft-snapshot-interval {}`)",
        args.managers, args.agents, args.recovery_snapshot_interval
    );
    calibration_line(cal);
    println!("| what | measured | notes |");
    println!("|---|---:|---|");
    for r in rows {
        println!("{r}");
    }
    println!();
    keep_logs(args, "recovery", &c);
    drop(agents);
    Ok(())
}

/// `HH:MM:SS.mmm` of `t` in UTC, the form the managers' log timestamps use.
fn utc_time_of_day(t: std::time::SystemTime) -> String {
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}
