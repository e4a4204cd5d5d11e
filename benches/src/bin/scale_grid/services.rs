//! Phase `services`: 1k, 10k, 100k 0-replica services; memory per service and `service ls`.

use super::*;

/// Services: 1k, 10k, 100k 0-replica services; memory per service and `service ls`.
pub(crate) async fn phase_services(args: &Args) -> anyhow::Result<()> {
    let c = cluster(args, &[])?;
    let cal = calibrate(&c, args.calibration_writes).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let l = leader(&c);
    let base = rss_mib(pid(&c, l));
    println!(
        "### Services ({} managers, 0-replica services, {} concurrent writers)",
        args.managers, args.service_clients
    );
    calibration_line(cal);
    println!("| services | created in | writes/s | leader RSS | KiB per service over no services | KiB per service over 30 MiB | state dir (leader) | `service ls` (median of 3) | `service ls -q` |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut have = 0;
    for &n in &args.service_sizes {
        let t0 = Instant::now();
        create_services(&c, l, "svc", have, n, args.service_clients).await?;
        let took = t0.elapsed();
        let created = n - have;
        have = n;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss = rss_mib(pid(&c, l));
        let ls = |quiet: bool| -> anyhow::Result<f64> {
            let mut v = Vec::new();
            for _ in 0..3 {
                let t = Instant::now();
                let a: &[&str] = if quiet {
                    &["service", "ls", "-q"]
                } else {
                    &["service", "ls"]
                };
                let out = c.ctl(l, a)?;
                v.push(t.elapsed().as_secs_f64());
                anyhow::ensure!(
                    out.lines().count() >= n,
                    "service ls listed {} of {n}",
                    out.lines().count()
                );
            }
            Ok(median(v))
        };
        println!(
            "| {n} | {:.2} s | {:.0} | {rss:.0} MiB | {:.2} | {:.2} | {:.1} MiB | {:.3} s | {:.3} s |",
            took.as_secs_f64(),
            created as f64 / took.as_secs_f64(),
            (rss - base) * 1024.0 / n as f64,
            (rss - 30.0).max(0.0) * 1024.0 / n as f64,
            dir_bytes(c.state_dir(l)) as f64 / MIB,
            ls(false)?,
            ls(true)?,
        );
    }
    keep_logs(args, "services", &c);
    println!();
    Ok(())
}
