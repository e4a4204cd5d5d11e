//! The fault suite's fixed-seed CI profile (issue 18): a 3-manager and a 5-manager cluster
//! with 2 workers each (network-namespace hosts, fake executor) go through every fault —
//! leader SIGKILL, pause, isolation, one-way partition, packet loss, full disk, CPU
//! starvation, clock jump, a cut-off worker, quorum loss, demote/promote, total restart, a
//! minority kill and a minority partition — several with a rolling update and a scale change
//! in flight, under a concurrent client workload. Fails on any anomaly: a history that is not
//! linearizable, a lost acknowledged write, a container restarted by a control-plane fault,
//! more running tasks than replicas, a cut-off worker's tasks replaced before heartbeat
//! timeout + grace (or surplus left after heal), a cluster that does not recover. The failure
//! message has the seed, the command that repeats the run, and the history.
//!
//! Leader latency (sch_netem) has its own ignored test: this machine's kernel lacks netem.
//! `CHAOS_SEED=N` runs it with another seed; `target/debug/chaos` is the same suite as a
//! program (`--soak 1h` for releases).

use swarm_testkit::chaos::run::{self, Options};
use tracing::info;

const SEED: u64 = 20_261_202;

#[test]
fn chaos_ci_profile_finds_no_anomaly() {
    profile(run::ci_plans(), "chaos_ci_profile_finds_no_anomaly --");
}

/// Leader latency needs sch_netem, which the CI machine's kernel does not have: ignored (so
/// cargo counts it as such) rather than passing with the step skipped. Where the kernel has
/// it: `cargo test -p swarm-integration --test t55_chaos -- --ignored`.
#[test]
#[ignore = "needs the kernel's sch_netem (CONFIG_NET_SCH_NETEM); run with --ignored where present"]
fn chaos_latency_fault_finds_no_anomaly() {
    profile(
        run::netem_plans(),
        "chaos_latency_fault_finds_no_anomaly -- --ignored",
    );
}

/// Runs `plans` and fails on any anomaly, and on any skipped step (it checked nothing).
fn profile(plans: Vec<run::Plan>, test: &str) {
    swarm_integration::init_tracing();
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEED);
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/chaos");
    let opts = Options {
        seed,
        plans,
        out_dir: out,
        clients: 3,
        node_down_grace: std::time::Duration::from_secs(3),
        repro: format!(
            "CHAOS_SEED={seed} cargo test -p swarm-integration --test t55_chaos {test} --nocapture   (or: target/debug/chaos --seed {seed})"
        ),
    };
    info!(seed, "phase: chaos CI profile");
    let started = std::time::Instant::now();
    let report = run::run(&opts);
    let summary = report.summary();
    println!("{summary}");
    info!(took = ?started.elapsed(), steps = report.steps.len(), skipped = ?report.skipped(), "phase: checked");
    // Every fault ran (or said why not): a profile that silently ran nothing must fail.
    let planned: usize = opts.plans.iter().map(|p| p.steps.len()).sum();
    assert_eq!(
        report.steps.len(),
        planned,
        "not every step ran (seed {seed}):\n{summary}"
    );
    // A skipped step checked nothing: the test fails rather than report `ok` for it (in CI
    // and out). Faults this kernel cannot do have their own ignored test (netem above).
    let skipped = report.skipped_steps();
    println!(
        "chaos profile: {} steps checked, {skipped} skipped",
        planned - skipped
    );
    if let Err(e) = report.verdict(true) {
        panic!("{e}\n{summary}");
    }
}
