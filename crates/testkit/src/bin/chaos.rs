//! `chaos`: the fault suite as a program. `chaos` runs the fixed CI profile; `chaos --soak 1h`
//! draws random steps from the seed for that long. Needs root (network namespaces) and the
//! workspace binaries (`cargo build --workspace --bins`).

use clap::Parser;
use std::time::Duration;
use swarm_testkit::chaos::run::{self, Fault, Options, Plan, Step};

#[derive(Parser, Debug)]
#[command(name = "chaos", about = "fault suite over real swarmd clusters")]
struct Args {
    /// Seed of the workload choices and the fault schedule (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Run random steps for this long (e.g. `1h`) instead of the CI profile.
    #[arg(long, value_parser = humantime_secs)]
    soak: Option<Duration>,
    /// In a soak, how long each cluster lives before the next (sizes alternate 3 and 5
    /// managers).
    #[arg(long, default_value = "10m", value_parser = humantime_secs)]
    per_cluster: Duration,
    /// Only these faults (comma-separated names, e.g. `KillLeader,CutWorker`), each once on a
    /// 3-manager cluster (5 for the faults that need it).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also start a rolling update / a scale change during each `--only` fault.
    #[arg(long)]
    update: bool,
    #[arg(long)]
    scale: bool,
    #[arg(long, default_value_t = 3)]
    clients: usize,
    /// `--node-down-grace` of every daemon.
    #[arg(long, default_value = "3s", value_parser = humantime_secs)]
    node_down_grace: Duration,
    /// Where histories (and logs of failed clusters) go.
    #[arg(long, default_value = "target/chaos")]
    out: std::path::PathBuf,
}

fn humantime_secs(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: u64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("bad duration unit in {s:?}: use ms, s, m or h")),
    })
}

/// SIGINT/SIGTERM stop the run after the current step, so that it heals and removes its
/// namespaces, mounts and cgroups instead of leaving them behind. (Handlers, not a blocked
/// signal mask: the daemons this program starts would inherit the mask and ignore SIGTERM.)
fn handle_stop_signals() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                eprintln!("chaos: stopping after the current step");
                run::request_stop();
            }
        })
    });
    Ok(())
}

fn main() -> anyhow::Result<()> {
    handle_stop_signals()?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let a = Args::parse();
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1)
    });
    let mut repro = format!("target/debug/chaos --seed {seed}");
    let plans = if let Some(total) = a.soak {
        repro.push_str(&format!(
            " --soak {}s --per-cluster {}s",
            total.as_secs(),
            a.per_cluster.as_secs()
        ));
        run::soak_plans(total, a.per_cluster)
    } else if !a.only.is_empty() {
        let mut three = Vec::new();
        let mut five = Vec::new();
        for name in &a.only {
            let f = Fault::parse(name).ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown fault {name:?}; one of: {}",
                    Fault::ALL.map(|f| f.name()).join(", ")
                )
            })?;
            let s = Step::new(f, a.update, a.scale);
            if matches!(f, Fault::KillMinority | Fault::PartitionLeaderMinority) {
                five.push(s);
            } else {
                three.push(s);
            }
        }
        repro.push_str(&format!(" --only {}", a.only.join(",")));
        if a.update {
            repro.push_str(" --update");
        }
        if a.scale {
            repro.push_str(" --scale");
        }
        [(3, three), (5, five)]
            .into_iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(m, steps)| Plan {
                managers: m,
                workers: 2,
                steps,
                random_for: None,
            })
            .collect()
    } else {
        let mut p = run::ci_plans();
        p.extend(run::netem_plans());
        p
    };
    let opts = Options {
        seed,
        plans,
        out_dir: a.out,
        clients: a.clients,
        node_down_grace: a.node_down_grace,
        repro,
    };
    let started = std::time::Instant::now();
    let report = run::run(&opts);
    // The summary ends with the count line: ok, with anomalies, skipped.
    println!("{}", report.summary());
    println!("took {:.0}s", started.elapsed().as_secs_f64());
    // Outside CI a machine may lack a fault's kernel feature: the skips are counted and said,
    // not failed; in CI they fail the run (`Report::verdict`).
    let skipped = report
        .verdict(std::env::var_os("CI").is_some())
        .map_err(anyhow::Error::msg)?;
    if !skipped.is_empty() {
        eprintln!(
            "warning: {} step(s) skipped or never ran; they checked nothing (in CI this fails): {skipped:?}",
            report.skipped_steps()
        );
    }
    Ok(())
}
