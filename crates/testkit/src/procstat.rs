//! What a process costs, read from /proc: CPU time and memory of benchmarked daemons. Reads
//! only; never signals or changes a process.

/// utime + stime of a process (all threads), in clock ticks; `pid` may be `"self"`. 0 when
/// the process is gone.
pub fn cpu_ticks(pid: &str) -> u64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some(rest) = s.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

/// Clock ticks per second (`USER_HZ`; 100 on every Linux this runs on).
pub const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds a process has used so far (0 when gone).
pub fn cpu_seconds(pid: u32) -> f64 {
    cpu_ticks(&pid.to_string()) as f64 / TICKS_PER_SECOND
}

/// A `kB` field of `/proc/<pid>/status` (`"VmRSS:"`, `"VmHWM:"`, …).
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Resident memory of a process in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kb(pid, "VmRSS:")
}

/// Resident memory of a process in MiB.
pub fn rss_mib(pid: u32) -> Option<u64> {
    rss_kib(pid).map(|k| k / 1024)
}
