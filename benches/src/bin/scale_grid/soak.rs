//! Phase `soak`: rounds of create 10k / remove, RSS per round.

use super::*;

/// How long after a round's tasks all run the leader's RSS is read again: the burst's freed
/// pages are handed back within about a second (`swarmd`'s allocator, `alloc.rs`), so the
/// reading at running depends on where in that second it falls.
const SETTLE_SECS: u64 = 3;

/// Soak: rounds of create → running → remove → gone; the managers' RSS per round.
pub(crate) async fn phase_soak(args: &Args) -> anyhow::Result<()> {
    let c = cluster(args, &[])?;
    let (cal, agents) = calibrate_and_join(args, &c).await?;
    println!(
        "### Soak: {} rounds of {} tasks ({} managers, {} fake agents)",
        args.soak_rounds, args.soak_replicas, args.managers, args.agents
    );
    calibration_line(cal);
    sockets_line(&c);
    println!();
    println!("| round | create → all running | tasks/s | remove → all gone | leader RSS at running → {SETTLE_SECS} s later | at running: anonymous / file-backed RSS, threads | allocator at running: allocated / active / resident | leader RSS after remove | followers' RSS after remove |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let (mut at_running, mut settled_rss) = (Vec::new(), Vec::new());
    for round in 0..args.soak_rounds {
        let l = leader(&c);
        let name = format!("soak{round}");
        let up = probe::create_and_wait_running(&c, l, &name, args.soak_replicas, false).await?;
        let running = rss_mib(pid(&c, l));
        let kind = |f: &str| status_kb(pid(&c, l), f).unwrap_or(0);
        let parts = format!(
            "{:.1} / {:.1} MiB, {}",
            kind("RssAnon:") as f64 / 1024.0,
            kind("RssFile:") as f64 / 1024.0,
            kind("Threads:")
        );
        let alloc = allocator(&c, l)
            .map(|[a, b, r]| format!("{a:.1} / {b:.1} / {r:.1} MiB"))
            .unwrap_or_else(|| "–".into());
        heap_dump(args, pid(&c, l), &format!("round {}: running", round + 1)).await?;
        tokio::time::sleep(Duration::from_secs(SETTLE_SECS)).await;
        let settled = rss_mib(pid(&c, l));
        let down = probe::remove_and_wait_gone(&c, l, &name).await?;
        let after = rss_mib(pid(&c, l));
        heap_dump(args, pid(&c, l), &format!("round {}: removed", round + 1)).await?;
        let followers: Vec<String> = (0..c.nodes.len())
            .filter(|&i| i != l)
            .map(|i| format!("{:.0}", rss_mib(pid(&c, i))))
            .collect();
        at_running.push(running);
        settled_rss.push(settled);
        println!(
            "| {} | {:.2} s | {:.0} | {:.2} s | {running:.0} → {settled:.0} MiB | {parts} | {alloc} | {after:.0} MiB | {} MiB |",
            round + 1,
            up.as_secs_f64(),
            args.soak_replicas as f64 / up.as_secs_f64(),
            down.as_secs_f64(),
            followers.join(", ")
        );
    }
    for (when, rss) in [
        ("at running", &at_running),
        (&*format!("{SETTLE_SECS} s after running"), &settled_rss),
    ] {
        if let [_, second, ..] = rss[..] {
            let last = rss[rss.len() - 1];
            println!();
            println!(
                "Leader RSS {when}, last round vs round 2: {last:.0} vs {second:.0} MiB ({:+.1} %; target within 10 %).",
                (last / second - 1.0) * 100.0
            );
        }
    }
    println!();
    keep_logs(args, "soak", &c);
    drop(agents);
    Ok(())
}
