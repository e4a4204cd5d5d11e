//! Phase `tasks`: create and remove 1k, 10k, 100k replicas on 1,000 agents.

use super::*;

/// Seconds the leader is left alone after all tasks run before its RSS is read again.
const SETTLE_SECS: u64 = 10;

/// Tasks: 1k, 10k, 100k replicas on one fleet; time, rate, CPU and memory per task.
pub(crate) async fn phase_tasks(args: &Args) -> anyhow::Result<()> {
    let c = cluster(args, &[])?;
    let (cal, agents) = calibrate_and_join(args, &c).await?;
    println!(
        "### Tasks ({} managers, {} fake agents in their own process)",
        args.managers, args.agents
    );
    calibration_line(cal);
    sockets_line(&c);
    println!();
    println!("| tasks | create → all running | tasks/s | leader CPU-s | managers' CPU-s per 1,000 tasks | agents' CPU-s | leader RSS before → running → {SETTLE_SECS} s later | KiB per task over before | KiB per task over before, {SETTLE_SECS} s later | KiB per task over 30 MiB | remove → all gone | managers' CPU-s (remove) |");
    println!("|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|");
    for (round, &n) in args.task_sizes.iter().enumerate() {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let l = leader(&c);
        let before = rss_mib(pid(&c, l));
        heap_dump(args, pid(&c, l), &format!("{n} tasks: before")).await?;
        let (lc0, mc0, ac0) = (
            cpu_seconds(pid(&c, l)),
            managers_cpu(&c),
            cpu_seconds(agents.pid()),
        );
        let name = format!("tasks{round}");
        let up = probe::create_and_wait_running(&c, l, &name, n, false).await?;
        let (lc1, mc1, ac1) = (
            cpu_seconds(pid(&c, l)),
            managers_cpu(&c),
            cpu_seconds(agents.pid()),
        );
        let running = rss_mib(pid(&c, l));
        // What the leader keeps once the burst is over (the column before includes its
        // transient peak): the feed, the sessions' messages and the snapshot are done by now.
        tokio::time::sleep(Duration::from_secs(SETTLE_SECS)).await;
        let settled = rss_mib(pid(&c, l));
        heap_dump(
            args,
            pid(&c, l),
            &format!("{n} tasks: {SETTLE_SECS} s after running"),
        )
        .await?;
        let down = probe::remove_and_wait_gone(&c, l, &name).await?;
        let mc2 = managers_cpu(&c);
        println!(
            "| {n} | {:.2} s | {:.0} | {:.1} | {:.2} | {:.1} | {before:.0} → {running:.0} → {settled:.0} MiB | {:.2} | {:.2} | {:.2} | {:.2} s | {:.1} |",
            up.as_secs_f64(),
            n as f64 / up.as_secs_f64(),
            lc1 - lc0,
            (mc1 - mc0) / (n as f64 / 1000.0),
            ac1 - ac0,
            (running - before) * 1024.0 / n as f64,
            (settled - before) * 1024.0 / n as f64,
            (running - 30.0).max(0.0) * 1024.0 / n as f64,
            down.as_secs_f64(),
            mc2 - mc1,
        );
    }
    println!();
    keep_logs(args, "tasks", &c);
    drop(agents);
    Ok(())
}
