//! `swarm-runtime update`: the limits to change, from `--resources FILE|-` (an OCI
//! `LinuxResources` document, which containerd's shim sends for `docker update`) and runc's
//! flags. Every field swarm-runtime cannot apply is refused when it asks for something,
//! never dropped.

use swarm_runtime::spec::Resources;

/// `--memory`, `--cpu-quota`, `--cpu-period`, `--pids-limit` (runc's names).
pub const FLAGS: &[&str] = &["--memory", "--cpu-quota", "--cpu-period", "--pids-limit"];

/// runc update flags for limits swarm-runtime does not manage, and why.
pub fn unsupported(flag: &str) -> Option<&'static str> {
    Some(match flag {
        "--memory-swap" => "swap is always off in swarm-runtime containers (the memory limit covers memory and swap)",
        "--memory-reservation" | "--kernel-memory" | "--kernel-memory-tcp" => {
            "swarm-runtime sets only the memory limit"
        }
        "--cpu-shares" | "--cpuset-cpus" | "--cpuset-mems" | "--cpu-rt-period"
        | "--cpu-rt-runtime" | "--cpu-idle" => {
            "swarm-runtime sets only the CPU quota and period (Docker's --cpus)"
        }
        "--blkio-weight" | "--l3-cache-schema" | "--mem-bw-schema" => {
            "swarm-runtime has no block-I/O or resctrl limits"
        }
        _ => return None,
    })
}

fn positive(flag: &str, v: &str) -> Result<u64, String> {
    let n: i64 = v
        .parse()
        .map_err(|_| format!("{flag} {v:?}: expected a number"))?;
    u64::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{flag} {v}: must be above 0 (removing a limit is not supported)"))
}

/// Limits from runc's flags (`(flag, value)` pairs, flags from [`FLAGS`]).
pub fn from_flags(flags: &[(String, String)]) -> Result<Resources, String> {
    let mut r = Resources::default();
    for (f, v) in flags {
        let n = match f.as_str() {
            // runc accepts suffixes here (64m); so do we, in binary units like runc.
            "--memory" => memory(v)?,
            other => positive(other, v)?,
        };
        match f.as_str() {
            "--memory" => r.memory_bytes = Some(n),
            "--cpu-quota" => r.cpu_quota_us = Some(n),
            "--cpu-period" => r.cpu_period_us = Some(n),
            "--pids-limit" => r.pids_max = Some(n),
            _ => unreachable!("only FLAGS reach here"),
        }
    }
    Ok(r)
}

fn memory(v: &str) -> Result<u64, String> {
    let lower = v.to_ascii_lowercase();
    let (num, mult) = match lower.trim_end_matches('b').char_indices().last() {
        Some((i, 'k')) => (&lower[..i], 1u64 << 10),
        Some((i, 'm')) => (&lower[..i], 1 << 20),
        Some((i, 'g')) => (&lower[..i], 1 << 30),
        _ => (lower.trim_end_matches('b'), 1),
    };
    let n = positive("--memory", num)?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("--memory {v}: too large"))
}

/// Limits from an OCI `LinuxResources` JSON document.
pub fn from_json(body: &[u8]) -> Result<Resources, String> {
    let r: oci_spec::runtime::LinuxResources = serde_json::from_slice(body)
        .map_err(|e| format!("--resources: not OCI LinuxResources JSON: {e}"))?;
    let refuse =
        |field: &str, why: &str| Err(format!("--resources: {field} is not supported: {why}"));
    let mut out = Resources::default();
    if let Some(m) = r.memory() {
        out.memory_bytes = match m.limit() {
            None | Some(0) => None,
            Some(l) if l > 0 => Some(l as u64),
            Some(_) => {
                return refuse(
                    "a negative memory.limit",
                    "removing a memory limit is not supported",
                )
            }
        };
        // Docker sends swap equal to the limit (or -1/unset) for "no extra swap"; anything else
        // asks for swap, which these containers never get.
        match m.swap() {
            None | Some(0) | Some(-1) => {}
            Some(s) if Some(s) == m.limit() => {}
            Some(_) => {
                return refuse(
                    "memory.swap",
                    "swap is always off (the memory limit covers memory and swap)",
                )
            }
        }
        if m.reservation().is_some_and(|v| v > 0) {
            return refuse("memory.reservation", "only the memory limit is set");
        }
        if m.kernel().is_some_and(|v| v > 0) || m.kernel_tcp().is_some_and(|v| v > 0) {
            return refuse("memory.kernel", "only the memory limit is set");
        }
        if m.disable_oom_killer() == Some(true) {
            return refuse("memory.disableOOMKiller", "the OOM killer always applies");
        }
    }
    if let Some(c) = r.cpu() {
        out.cpu_quota_us = match c.quota() {
            None | Some(0) => None,
            Some(q) if q > 0 => Some(q as u64),
            Some(_) => {
                return refuse(
                    "a negative cpu.quota",
                    "removing a CPU limit is not supported",
                )
            }
        };
        out.cpu_period_us = c.period().filter(|p| *p > 0);
        if c.cpus().as_deref().is_some_and(|s| !s.is_empty())
            || c.mems().as_deref().is_some_and(|s| !s.is_empty())
        {
            return refuse("cpu.cpus/cpu.mems", "swarm-runtime sets no cpuset");
        }
        if c.realtime_runtime().is_some_and(|v| v != 0)
            || c.realtime_period().is_some_and(|v| v != 0)
        {
            return refuse("cpu.realtime*", "no realtime scheduling limits");
        }
        // Shares (relative weight) are left alone: the runtime sets none at create either, and
        // containerd sends the value the container already has.
    }
    if let Some(p) = r.pids() {
        out.pids_max = match p.limit() {
            0 => None,
            l if l > 0 => Some(l as u64),
            _ => {
                return refuse(
                    "a negative pids.limit",
                    "removing a pids limit is not supported",
                )
            }
        };
    }
    if r.block_io().as_ref().is_some_and(|b| {
        b.weight().is_some_and(|w| w > 0)
            || b.weight_device().as_ref().is_some_and(|v| !v.is_empty())
            || b.throttle_read_bps_device()
                .as_ref()
                .is_some_and(|v| !v.is_empty())
            || b.throttle_write_bps_device()
                .as_ref()
                .is_some_and(|v| !v.is_empty())
    }) {
        return refuse("blockIO", "no block-I/O limits");
    }
    if r.hugepage_limits().as_ref().is_some_and(|v| !v.is_empty()) {
        return refuse("hugepageLimits", "no hugepage limits");
    }
    if r.unified().as_ref().is_some_and(|v| !v.is_empty()) {
        return refuse("unified", "no raw cgroup v2 settings");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_json_give_the_same_limits() {
        let flags: Vec<(String, String)> = [
            ("--memory", "64m"),
            ("--cpu-quota", "50000"),
            ("--cpu-period", "100000"),
            ("--pids-limit", "50"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let want = Resources {
            memory_bytes: Some(64 << 20),
            cpu_quota_us: Some(50_000),
            cpu_period_us: Some(100_000),
            pids_max: Some(50),
        };
        assert_eq!(from_flags(&flags).unwrap(), want);
        let json = br#"{"memory":{"limit":67108864,"swap":67108864},"cpu":{"shares":0,"quota":50000,"period":100000,"cpus":"","mems":""},"pids":{"limit":50},"blockIO":{}}"#;
        assert_eq!(from_json(json).unwrap(), want);
        assert_eq!(from_json(b"{}").unwrap(), Resources::default());
    }

    #[test]
    fn what_cannot_be_applied_is_refused_by_name() {
        for (json, says) in [
            (
                &br#"{"memory":{"limit":1000000,"swap":4000000}}"#[..],
                "memory.swap",
            ),
            (br#"{"memory":{"reservation":1000}}"#, "memory.reservation"),
            (br#"{"cpu":{"cpus":"0-1"}}"#, "cpu.cpus"),
            (br#"{"pids":{"limit":-1}}"#, "a negative pids.limit"),
            (br#"{"blockIO":{"weight":300}}"#, "blockIO"),
            (br#"not json"#, "not OCI LinuxResources JSON"),
        ] {
            let e = from_json(json).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
        for (f, v, says) in [
            ("--memory", "0", "must be above 0"),
            ("--pids-limit", "-1", "must be above 0"),
            ("--cpu-quota", "lots", "expected a number"),
        ] {
            let e = from_flags(&[(f.into(), v.into())]).unwrap_err();
            assert!(e.contains(says), "{f} {v}: {e}");
        }
        assert!(unsupported("--cpuset-cpus").is_some());
        assert!(unsupported("--memory").is_none());
    }
}
