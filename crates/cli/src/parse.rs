//! Parsers for flag values with docker's syntax: memory sizes, CPU counts, durations,
//! `KEY=VALUE` pairs, replica counts.

use std::collections::BTreeMap;
use std::time::Duration;

/// `512m`, `1g`, `100MiB`, `1024` → bytes (1024-based, like docker's RAMInBytes).
pub fn memory(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| {
        format!("invalid size {s:?}: expected a number with an optional unit b, k, m, g")
    })?;
    let mult: f64 = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0f64.powi(4),
        _ => {
            return Err(format!(
                "invalid size {s:?}: unknown unit {unit:?} (use b, k, m, g)"
            ))
        }
    };
    Ok((n * mult) as i64)
}

/// `0.5` CPUs → nano CPUs.
pub fn cpus(s: &str) -> Result<i64, String> {
    let n: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid CPU count {s:?}: expected a decimal such as 0.5"))?;
    if !(0.0..=1024.0).contains(&n) {
        return Err(format!(
            "invalid CPU count {s:?}: expected between 0 and 1024"
        ));
    }
    Ok((n * 1e9) as i64)
}

/// `10s`, `1m30s`, `500ms`.
pub fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?}: {e} (examples: 10s, 1m30s, 500ms)"))
}

/// Replica counts: clear messages for negatives and absurd values.
pub fn replicas(s: &str) -> Result<u64, String> {
    let n: i128 = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid replica count {s:?}: expected a whole number"))?;
    if n < 0 || n > swarm_types::spec::MAX_REPLICAS as i128 {
        return Err(format!(
            "invalid replica count {n}: it must be between 0 and {}",
            swarm_types::spec::MAX_REPLICAS
        ));
    }
    Ok(n as u64)
}

/// `KEY=VALUE` (or `KEY` alone, meaning an empty value, like docker labels).
pub fn key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').unwrap_or((s, ""));
    if k.is_empty() {
        return Err(format!("invalid key/value {s:?}: the key is empty"));
    }
    Ok((k.to_string(), v.to_string()))
}

pub fn labels(list: &[String]) -> Result<BTreeMap<String, String>, String> {
    list.iter().map(|s| key_value(s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units() {
        assert_eq!(memory("512m").unwrap(), 512 * 1024 * 1024);
        assert_eq!(memory("1g").unwrap(), 1 << 30);
        assert_eq!(memory("100MiB").unwrap(), 100 << 20);
        assert_eq!(memory("1024").unwrap(), 1024);
        assert!(memory("lots").is_err());
        assert!(memory("5x").is_err());
    }

    #[test]
    fn cpus_and_replicas() {
        assert_eq!(cpus("0.5").unwrap(), 500_000_000);
        assert!(cpus("-1").is_err());
        assert_eq!(replicas("3").unwrap(), 3);
        assert!(replicas("-1").unwrap_err().contains("between 0"));
        assert!(replicas("1000000000").is_err());
        assert!(replicas("three").is_err());
    }

    #[test]
    fn durations_and_pairs() {
        assert_eq!(duration("1m30s").unwrap(), Duration::from_secs(90));
        assert!(duration("soon").is_err());
        assert_eq!(key_value("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(key_value("a").unwrap(), ("a".into(), "".into()));
        assert!(key_value("=x").is_err());
    }
}

/// A point in time as Docker's `--since`/`--until` take it: RFC 3339, a Unix timestamp, or a
/// duration before now (`10m`).
pub fn time(s: &str) -> Result<std::time::SystemTime, String> {
    time_at(s, std::time::SystemTime::now())
}

pub fn time_at(s: &str, now: std::time::SystemTime) -> Result<std::time::SystemTime, String> {
    use std::time::{Duration, SystemTime};
    let s = s.trim();
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return Err(format!("{s:?} is not a Unix timestamp"));
        }
        return Ok(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs));
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return now
            .checked_sub(d)
            .ok_or_else(|| format!("{s:?} reaches before 1970"));
    }
    Err(format!(
        "{s:?} is not a time: use RFC 3339 (2026-12-03T10:00:00Z), a Unix timestamp (1796292000), or a duration before now (10m, 2h)"
    ))
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn a_duration_counts_back_from_now() {
        let now = humantime::parse_rfc3339("2026-12-03T10:00:00Z").unwrap();
        assert_eq!(
            super::time_at("10m", now).unwrap(),
            humantime::parse_rfc3339("2026-12-03T09:50:00Z").unwrap()
        );
    }
}
