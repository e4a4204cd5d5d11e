//! `swarm-runtime events`: a container's cgroup statistics as runc prints them (`--stats`: one
//! record; otherwise one every `--interval`, plus an `oom` record whenever the kernel killed a
//! process of the container for memory, until the container stops).

use swarm_runtime::runtime::{ContainerStatus, Runtime, RuntimeError};

/// runc's `--interval` syntax (Go durations): `500ms`, `5s`, `1m`.
pub fn parse_interval(v: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = v
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| v.split_at(i))
        .ok_or_else(|| format!("--interval {v:?}: give a unit (500ms, 5s, 1m)"))?;
    let n: f64 = num
        .parse()
        .map_err(|_| format!("--interval {v:?}: expected a number and a unit"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("--interval {v:?}: unit must be ms, s or m")),
    };
    if secs <= 0.0 || !secs.is_finite() {
        return Err(format!("--interval {v:?}: must be above 0"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// One `stats` record, runc-shaped (the fields this runtime measures).
pub fn stats_record(rt: &Runtime, id: &str) -> Result<serde_json::Value, RuntimeError> {
    let s = rt.stats(id)?;
    let pids_limit = rt.resources(id).ok().and_then(|r| r.pids_max);
    Ok(serde_json::json!({
        "type": "stats",
        "id": id,
        "data": {
            "cpu": {"usage": {"total": s.cpu_usage_ns}},
            "memory": {"usage": {
                "usage": s.memory_bytes,
                "max": s.memory_peak_bytes,
                "limit": s.memory_limit_bytes.unwrap_or(u64::MAX),
            }},
            "pids": {"current": s.pids, "limit": pids_limit.unwrap_or(0)},
        }
    }))
}

/// Prints records until the container stops; returns the exit code.
pub fn follow(rt: &Runtime, id: &str, every: std::time::Duration) -> Result<i32, RuntimeError> {
    let mut ooms = rt.stats(id)?.oom_kills;
    loop {
        if rt.inspect(id)?.status == ContainerStatus::Stopped {
            return Ok(0);
        }
        let now = rt.stats(id)?.oom_kills;
        if now > ooms {
            println!("{}", serde_json::json!({"type": "oom", "id": id}));
            ooms = now;
        }
        println!("{}", stats_record(rt, id)?);
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_read_like_go_durations() {
        assert_eq!(parse_interval("5s").unwrap().as_millis(), 5000);
        assert_eq!(parse_interval("500ms").unwrap().as_millis(), 500);
        assert_eq!(parse_interval("1.5m").unwrap().as_secs(), 90);
        for bad in ["5", "s", "0s", "5h", "-1s"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }
}
