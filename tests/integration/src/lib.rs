//! End-to-end tests over real `swarmd`/`swarmctl` binaries live in `tests/`; this library
//! holds what they share.
#![forbid(unsafe_code)]

use std::time::Duration;
use swarm_testkit::Cluster;

/// Installs a test logger once (phase lines go to the test's output).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_test_writer()
        .try_init();
}

/// Starts a cluster of `n` managers (first one creates it, the rest join with a manager
/// token) and waits until every one of them is a reachable voter.
pub fn managers(n: usize, extra: &[&str]) -> Cluster {
    let mut c = Cluster::new();
    c.extra_args = extra.iter().map(|s| s.to_string()).collect();
    c.init().expect("first manager starts");
    for _ in 1..n {
        c.join_manager(0)
            .unwrap_or_else(|e| panic!("manager joins: {e:#}\n{}", c.dump()));
    }
    c
}

/// Parses `--format json` list output (one object per line).
pub fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// Service names as listed by node `i` (`--stale` reads that node's own copy).
pub fn service_names(c: &Cluster, i: usize, stale: bool) -> anyhow::Result<Vec<String>> {
    let mut args = vec!["service", "ls", "--format", "json"];
    if stale {
        args.push("--stale");
    }
    let out = c.ctl(i, &args)?;
    let mut v: Vec<String> = json_lines(&out)
        .into_iter()
        .map(|o| o["Name"].as_str().unwrap_or_default().to_string())
        .collect();
    v.sort();
    Ok(v)
}

pub const LONG: Duration = Duration::from_secs(60);
