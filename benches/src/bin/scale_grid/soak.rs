//! Phase `soak`: rounds of create 10k / remove, RSS per round.

use super::*;

/// Soak: rounds of create → running → remove → gone; the managers' RSS per round.
pub(crate) async fn phase_soak(args: &Args) -> anyhow::Result<()> {
    let c = cluster(args, &[])?;
    let (cal, agents) = calibrate_and_join(args, &c).await?;
    println!(
        "### Soak: {} rounds of {} tasks ({} managers, {} fake agents)",
        args.soak_rounds, args.soak_replicas, args.managers, args.agents
    );
    calibration_line(cal);
    println!("| round | create → all running | tasks/s | remove → all gone | leader RSS at running | leader RSS after remove | followers' RSS after remove |");
    println!("|---:|---:|---:|---:|---:|---:|---|");
    let mut at_running = Vec::new();
    for round in 0..args.soak_rounds {
        let l = leader(&c);
        let name = format!("soak{round}");
        let up = probe::create_and_wait_running(&c, l, &name, args.soak_replicas, false).await?;
        let running = rss_mib(pid(&c, l));
        heap_dump(args, pid(&c, l), &format!("round {}: running", round + 1)).await?;
        let down = probe::remove_and_wait_gone(&c, l, &name).await?;
        let after = rss_mib(pid(&c, l));
        heap_dump(args, pid(&c, l), &format!("round {}: removed", round + 1)).await?;
        let followers: Vec<String> = (0..c.nodes.len())
            .filter(|&i| i != l)
            .map(|i| format!("{:.0}", rss_mib(pid(&c, i))))
            .collect();
        at_running.push(running);
        println!(
            "| {} | {:.2} s | {:.0} | {:.2} s | {running:.0} MiB | {after:.0} MiB | {} MiB |",
            round + 1,
            up.as_secs_f64(),
            args.soak_replicas as f64 / up.as_secs_f64(),
            down.as_secs_f64(),
            followers.join(", ")
        );
    }
    if at_running.len() >= 2 {
        let (second, last) = (at_running[1], at_running[at_running.len() - 1]);
        println!();
        println!(
            "Leader RSS at running, last round vs round 2: {last:.0} vs {second:.0} MiB ({:+.1} %; target within 10 %).",
            (last / second - 1.0) * 100.0
        );
    }
    println!();
    keep_logs(args, "soak", &c);
    drop(agents);
    Ok(())
}
