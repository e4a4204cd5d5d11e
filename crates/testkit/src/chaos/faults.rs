//! Faults below the daemons, each with its undo: packet filters and traffic shaping inside the
//! hosts' network namespaces, a small tmpfs under a manager's state dir that can be filled, a
//! cgroup CPU quota, and a per-process wall clock (libfaketime). Process faults (SIGKILL,
//! SIGSTOP) are `Cluster` methods. Every guard undoes its fault when dropped, also when a run
//! fails half-way.

use crate::netns::Hosts;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a fault could not be injected on this machine (reported as skipped, never silently).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{fault}: {reason}")]
pub struct Unsupported {
    pub fault: &'static str,
    pub reason: String,
}

/// A fault that failed to apply or undo.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct FaultError {
    pub what: String,
    pub detail: String,
}

fn run(what: &str, args: &[&str]) -> Result<(), FaultError> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| FaultError {
            what: what.to_string(),
            detail: format!("run {}: {e}", args[0]),
        })?;
    if !out.status.success() {
        return Err(FaultError {
            what: what.to_string(),
            detail: format!(
                "{} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

/// Packet faults between hosts (one `swarmd` per host). Rules live in two chains of each
/// host's own namespace (`CHAOS_IN` from INPUT, `CHAOS_OUT` from OUTPUT), so the host's
/// iptables (Docker's FORWARD policy) is never touched and a deleted namespace takes them
/// along.
pub struct Net {
    ns: Vec<String>,
    ips: Vec<String>,
    /// Hosts with a qdisc to delete on heal.
    shaped: std::sync::Mutex<std::collections::BTreeSet<usize>>,
}

impl Net {
    pub fn new(hosts: &Hosts) -> Result<Net, FaultError> {
        let net = Net {
            ns: hosts.names.clone(),
            ips: hosts.ips.clone(),
            shaped: Default::default(),
        };
        for h in 0..net.ns.len() {
            for (chain, hook) in [("CHAOS_IN", "INPUT"), ("CHAOS_OUT", "OUTPUT")] {
                net.ipt(h, &["-N", chain])?;
                net.ipt(h, &["-I", hook, "-j", chain])?;
            }
        }
        Ok(net)
    }

    fn nsenter(&self, h: usize) -> String {
        format!("--net=/var/run/netns/{}", self.ns[h])
    }

    fn ipt(&self, h: usize, args: &[&str]) -> Result<(), FaultError> {
        let ns = self.nsenter(h);
        let mut a = vec!["nsenter", ns.as_str(), "--", "iptables", "-w"];
        a.extend_from_slice(args);
        run(&format!("iptables in host {}", h + 1), &a)
    }

    /// Drops every packet `from` sends to `to` (one way: `to` can still send to `from`, though
    /// TCP connections then stall both ways for lack of acknowledgements).
    pub fn block(&self, from: usize, to: usize) -> Result<(), FaultError> {
        self.ipt(
            from,
            &["-A", "CHAOS_OUT", "-d", &self.ips[to], "-j", "DROP"],
        )?;
        self.ipt(to, &["-A", "CHAOS_IN", "-s", &self.ips[from], "-j", "DROP"])
    }

    /// Cuts host `h` off from every other host, both ways.
    pub fn isolate(&self, h: usize) -> Result<(), FaultError> {
        self.ipt(h, &["-A", "CHAOS_IN", "-i", "eth0", "-j", "DROP"])?;
        self.ipt(h, &["-A", "CHAOS_OUT", "-o", "eth0", "-j", "DROP"])
    }

    /// Splits the hosts into two sides that cannot talk to each other.
    pub fn partition(&self, a: &[usize], b: &[usize]) -> Result<(), FaultError> {
        for &x in a {
            for &y in b {
                self.block(x, y)?;
                self.block(y, x)?;
            }
        }
        Ok(())
    }

    /// Drops `percent` of host `h`'s packets in each direction (the iptables `statistic`
    /// match; used instead of netem's loss so that loss works where netem is missing).
    pub fn loss(&self, h: usize, percent: u32) -> Result<(), FaultError> {
        let p = format!("{:.3}", percent as f64 / 100.0);
        for (chain, dir) in [("CHAOS_IN", "-i"), ("CHAOS_OUT", "-o")] {
            self.ipt(
                h,
                &[
                    "-A",
                    chain,
                    dir,
                    "eth0",
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &p,
                    "-j",
                    "DROP",
                ],
            )?;
        }
        Ok(())
    }

    /// Adds `ms` of latency (± 20 %) to everything host `h` sends, with `tc netem`.
    pub fn latency(&self, h: usize, ms: u32) -> Result<Result<(), Unsupported>, FaultError> {
        let ns = self.nsenter(h);
        let delay = format!("{ms}ms");
        let jitter = format!("{}ms", ms / 5);
        let out = Command::new("nsenter")
            .args([
                ns.as_str(),
                "--",
                "tc",
                "qdisc",
                "replace",
                "dev",
                "eth0",
                "root",
            ])
            .args(["netem", "delay", &delay, &jitter])
            .output()
            .map_err(|e| FaultError {
                what: "tc".into(),
                detail: e.to_string(),
            })?;
        if !out.status.success() {
            return Ok(Err(Unsupported {
                fault: "latency",
                reason: format!(
                    "tc netem is not available ({}); this kernel lacks sch_netem (CONFIG_NET_SCH_NETEM)",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            }));
        }
        self.shaped.lock().expect("shaped lock").insert(h);
        Ok(Ok(()))
    }

    /// Limits host `h`'s outgoing bandwidth with a token bucket (`tc tbf`): a slow link.
    pub fn slow_link(&self, h: usize, kbit: u32) -> Result<Result<(), Unsupported>, FaultError> {
        let ns = self.nsenter(h);
        let rate = format!("{kbit}kbit");
        let out = Command::new("nsenter")
            .args([
                ns.as_str(),
                "--",
                "tc",
                "qdisc",
                "replace",
                "dev",
                "eth0",
                "root",
            ])
            .args(["tbf", "rate", &rate, "burst", "16kb", "latency", "500ms"])
            .output()
            .map_err(|e| FaultError {
                what: "tc".into(),
                detail: e.to_string(),
            })?;
        if !out.status.success() {
            return Ok(Err(Unsupported {
                fault: "slow link",
                reason: format!(
                    "tc tbf is not available ({}); this kernel lacks sch_tbf (CONFIG_NET_SCH_TBF)",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            }));
        }
        self.shaped.lock().expect("shaped lock").insert(h);
        Ok(Ok(()))
    }

    /// Removes every packet rule and qdisc.
    pub fn heal(&self) -> Result<(), FaultError> {
        let mut first_err = None;
        for h in 0..self.ns.len() {
            for chain in ["CHAOS_IN", "CHAOS_OUT"] {
                if let Err(e) = self.ipt(h, &["-F", chain]) {
                    first_err.get_or_insert(e);
                }
            }
        }
        let shaped: Vec<usize> = std::mem::take(&mut *self.shaped.lock().expect("shaped lock"))
            .into_iter()
            .collect();
        for h in shaped {
            let ns = self.nsenter(h);
            let _ = Command::new("nsenter")
                .args([
                    ns.as_str(),
                    "--",
                    "tc",
                    "qdisc",
                    "del",
                    "dev",
                    "eth0",
                    "root",
                ])
                .output();
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = self.heal();
    }
}

/// A small tmpfs mounted at a node's state dir before the node starts; `fill` takes all its
/// free space, `free` gives it back. Unmounted on drop.
pub struct Disk {
    pub mount: PathBuf,
    ballast: PathBuf,
}

impl Disk {
    pub fn mount(dir: &Path, size_mb: u32) -> Result<Disk, FaultError> {
        std::fs::create_dir_all(dir).map_err(|e| FaultError {
            what: format!("create {}", dir.display()),
            detail: e.to_string(),
        })?;
        let opts = format!("size={size_mb}m,mode=0700");
        run(
            "mount tmpfs",
            &[
                "mount",
                "-t",
                "tmpfs",
                "-o",
                &opts,
                "chaos-disk",
                &dir.to_string_lossy(),
            ],
        )?;
        Ok(Disk {
            mount: dir.to_path_buf(),
            ballast: dir.join("chaos-ballast"),
        })
    }

    /// Fills the file system until a write fails with "no space left".
    pub fn fill(&self) -> Result<u64, FaultError> {
        use std::io::Write;
        let mut f = std::fs::File::create(&self.ballast).map_err(|e| FaultError {
            what: "create ballast".into(),
            detail: e.to_string(),
        })?;
        let chunk = vec![0u8; 1 << 20];
        let mut written = 0u64;
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(_) => break,
            }
        }
        let small = [0u8; 512];
        while let Ok(n) = f.write(&small) {
            if n == 0 {
                break;
            }
            written += n as u64;
        }
        Ok(written)
    }

    pub fn free(&self) {
        let _ = std::fs::remove_file(&self.ballast);
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        self.free();
        let _ = nix::mount::umount2(&self.mount, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A CPU quota on one process (cgroup v1 `cpu` controller, or v2 `cpu.max`).
pub struct Cpu {
    dir: PathBuf,
    pid: u32,
    /// The process's cgroup before (its `cgroup.procs`), to move it back.
    home: PathBuf,
}

fn cgroup_cpu_root() -> Result<(PathBuf, bool), Unsupported> {
    let v1 = Path::new("/sys/fs/cgroup/cpu");
    if v1.join("cpu.cfs_quota_us").exists() {
        return Ok((v1.to_path_buf(), true));
    }
    let v2 = Path::new("/sys/fs/cgroup");
    if std::fs::read_to_string(v2.join("cgroup.controllers"))
        .is_ok_and(|c| c.split_whitespace().any(|x| x == "cpu"))
    {
        return Ok((v2.to_path_buf(), false));
    }
    Err(Unsupported {
        fault: "cpu starvation",
        reason: "this kernel lacks a cgroup cpu controller (neither /sys/fs/cgroup/cpu nor cgroup v2 with cpu)"
            .into(),
    })
}

impl Cpu {
    /// Moves `pid` (all its threads) into a new cgroup limited to `percent` of one CPU.
    pub fn starve(pid: u32, percent: u32) -> Result<Result<Cpu, Unsupported>, FaultError> {
        let (root, v1) = match cgroup_cpu_root() {
            Ok(r) => r,
            Err(u) => return Ok(Err(u)),
        };
        let rel = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    let mut parts = l.splitn(3, ':');
                    let (_, ctl, path) = (parts.next()?, parts.next()?, parts.next()?);
                    let hit = if v1 {
                        ctl.split(',').any(|c| c == "cpu")
                    } else {
                        ctl.is_empty()
                    };
                    hit.then(|| path.trim_start_matches('/').to_string())
                })
            })
            .unwrap_or_default();
        let home = root.join(rel);
        let dir = root.join(format!("swarm-chaos-cpu-{pid}"));
        let shown = dir.display().to_string();
        let err = |what: &str, e: std::io::Error| FaultError {
            what: format!("{what} {shown}"),
            detail: e.to_string(),
        };
        std::fs::create_dir_all(&dir).map_err(|e| err("create", e))?;
        let period = 100_000u64;
        let quota = period * percent as u64 / 100;
        if v1 {
            std::fs::write(dir.join("cpu.cfs_period_us"), period.to_string())
                .map_err(|e| err("write period", e))?;
            std::fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string())
                .map_err(|e| err("write quota", e))?;
        } else {
            std::fs::write(dir.join("cpu.max"), format!("{quota} {period}"))
                .map_err(|e| err("write cpu.max", e))?;
        }
        let cpu = Cpu { dir, pid, home };
        std::fs::write(cpu.dir.join("cgroup.procs"), pid.to_string())
            .map_err(|e| err("move pid into", e))?;
        Ok(Ok(cpu))
    }
}

impl Drop for Cpu {
    fn drop(&mut self) {
        let _ = std::fs::write(self.home.join("cgroup.procs"), self.pid.to_string());
        // Threads or children that raced the move go to the root of the hierarchy.
        if let Ok(left) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            let root = self.dir.parent().map(Path::to_path_buf).unwrap_or_default();
            for p in left.lines() {
                let _ = std::fs::write(root.join("cgroup.procs"), p);
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// The libfaketime library (Debian's `libfaketime`), if installed.
pub fn faketime_lib() -> Result<PathBuf, Unsupported> {
    for p in [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
    ] {
        if Path::new(p).exists() {
            return Ok(PathBuf::from(p));
        }
    }
    Err(Unsupported {
        fault: "clock jump",
        reason: "libfaketime is not installed (apt-get install libfaketime): a wall-clock jump needs a per-process fake clock".into(),
    })
}

/// A per-process wall clock: the daemon runs with libfaketime preloaded, reading its offset
/// from a file (re-read at most once a second). Only `CLOCK_REALTIME` moves, as an NTP step
/// would; monotonic clocks (timeouts, elections) are untouched.
pub struct Clock {
    pub file: PathBuf,
}

impl Clock {
    /// The environment a daemon needs for this clock; the offset starts at 0.
    pub fn env(lib: &Path, file: &Path) -> Result<Vec<(String, String)>, FaultError> {
        std::fs::write(file, "+0\n").map_err(|e| FaultError {
            what: format!("write {}", file.display()),
            detail: e.to_string(),
        })?;
        Ok(vec![
            ("LD_PRELOAD".into(), lib.display().to_string()),
            ("FAKETIME_TIMESTAMP_FILE".into(), file.display().to_string()),
            ("FAKETIME_CACHE_DURATION".into(), "1".into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
            ("FAKETIME_DONT_RESET".into(), "1".into()),
        ])
    }

    /// Sets the wall-clock offset (seconds; negative jumps back).
    pub fn set(&self, secs: i64) -> Result<(), FaultError> {
        std::fs::write(&self.file, format!("{secs:+}\n")).map_err(|e| FaultError {
            what: format!("write {}", self.file.display()),
            detail: e.to_string(),
        })
    }
}

impl Drop for Clock {
    fn drop(&mut self) {
        let _ = self.set(0);
    }
}
