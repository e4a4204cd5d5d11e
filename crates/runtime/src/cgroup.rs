//! cgroups v1 and v2: detection, per-container groups under a configurable parent, limits,
//! stats, OOM detection and removal.
//!
//! Detection: if `/sys/fs/cgroup` itself is a cgroup2 mount the host is unified (v2). Otherwise
//! the v1 hierarchies are found in `/proc/self/mountinfo` (this also covers hybrid hosts, whose
//! `unified` tree has no useful controllers). Each runtime instance puts its containers under
//! `<parent>/<id>` so several `swarmd` coexist.
//!
//! Every kernel interface here is a file under the hierarchy's mount points, so the
//! filesystem is this module's seam: the unit tests root a hierarchy in a temporary directory
//! and check what each operation writes and reads, without root or a cgroup mount.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::spec::Resources;

/// Errors of cgroup management.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("no usable cgroup hierarchy found: mount cgroup2 on /sys/fs/cgroup or the v1 memory, cpu, cpuacct and pids controllers")]
    NoHierarchy,
    #[error("cgroup {path} still has processes after killing them; retry the removal")]
    Busy { path: PathBuf },
    #[error("no freezer cgroup controller here (cgroup v1 without `freezer` mounted): pause and resume need it")]
    NoFreezer,
    #[error("cgroup {path} did not become {} within 5 s", if *frozen { "frozen" } else { "thawed" })]
    Freeze { path: PathBuf, frozen: bool },
}

fn ioe(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The host's cgroup layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// cgroup v2 mounted at this path.
    V2(PathBuf),
    /// cgroup v1 mount points of the controllers we use.
    V1 {
        memory: Option<PathBuf>,
        cpu: Option<PathBuf>,
        cpuacct: Option<PathBuf>,
        pids: Option<PathBuf>,
        /// For pause/resume.
        freezer: Option<PathBuf>,
    },
}

/// Parses `/proc/self/mountinfo` content into a hierarchy.
pub fn parse_mountinfo(mountinfo: &str) -> Option<Hierarchy> {
    let mut v1 = (None, None, None, None, None);
    let mut v2_root: Option<PathBuf> = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let lf: Vec<&str> = left.split(' ').collect();
        let rf: Vec<&str> = right.split(' ').collect();
        if lf.len() < 5 || rf.len() < 3 {
            continue;
        }
        let mnt = PathBuf::from(lf[4]);
        match rf[0] {
            "cgroup2" if mnt == Path::new("/sys/fs/cgroup") => v2_root = Some(mnt),
            "cgroup" => {
                let opts: Vec<&str> = rf[2].split(',').collect();
                let has = |c: &str| opts.contains(&c);
                if has("memory") {
                    v1.0 = Some(mnt.clone());
                }
                if has("cpu") {
                    v1.1 = Some(mnt.clone());
                }
                if has("cpuacct") {
                    v1.2 = Some(mnt.clone());
                }
                if has("pids") {
                    v1.3 = Some(mnt.clone());
                }
                if has("freezer") {
                    v1.4 = Some(mnt.clone());
                }
            }
            _ => {}
        }
    }
    if let Some(r) = v2_root {
        return Some(Hierarchy::V2(r));
    }
    if v1.0.is_none() && v1.1.is_none() && v1.3.is_none() {
        return None;
    }
    Some(Hierarchy::V1 {
        memory: v1.0,
        cpu: v1.1,
        cpuacct: v1.2,
        pids: v1.3,
        freezer: v1.4,
    })
}

/// Detects the running host's hierarchy.
pub fn detect() -> Result<Hierarchy, CgroupError> {
    let p = Path::new("/proc/self/mountinfo");
    let mi = fs::read_to_string(p).map_err(ioe(p))?;
    parse_mountinfo(&mi).ok_or(CgroupError::NoHierarchy)
}

/// Resource usage of a container's cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CgroupStats {
    pub memory_bytes: u64,
    pub memory_peak_bytes: u64,
    pub memory_limit_bytes: Option<u64>,
    pub cpu_usage_ns: u64,
    pub pids: u64,
    pub oom_kills: u64,
}

/// One container's cgroup (a directory per v1 controller, or one v2 directory).
#[derive(Debug, Clone)]
pub struct Cgroup {
    hierarchy: Hierarchy,
    /// Relative path below each hierarchy root, e.g. `swarm-runtime/web.1`.
    rel: PathBuf,
}

fn write(path: &Path, v: &str) -> Result<(), CgroupError> {
    fs::write(path, v).map_err(ioe(path))
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn keyed(path: &Path, key: &str) -> Option<u64> {
    fs::read_to_string(path).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

impl Cgroup {
    pub fn new(hierarchy: Hierarchy, parent: &str, id: &str) -> Self {
        Cgroup {
            hierarchy,
            rel: Path::new(parent.trim_matches('/')).join(id),
        }
    }

    /// All directories of this cgroup (one per v1 controller, deduplicated).
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = match &self.hierarchy {
            Hierarchy::V2(root) => vec![root.join(&self.rel)],
            Hierarchy::V1 {
                memory,
                cpu,
                cpuacct,
                pids,
                freezer,
            } => [memory, cpu, cpuacct, pids, freezer]
                .into_iter()
                .flatten()
                .map(|r| r.join(&self.rel))
                .collect(),
        };
        v.dedup();
        v
    }

    fn mem_dir(&self) -> Option<PathBuf> {
        match &self.hierarchy {
            Hierarchy::V2(r) => Some(r.join(&self.rel)),
            Hierarchy::V1 { memory, .. } => memory.as_ref().map(|r| r.join(&self.rel)),
        }
    }

    /// Creates the directories and applies `res`.
    pub fn create(&self, res: &Resources) -> Result<(), CgroupError> {
        if let Hierarchy::V2(root) = &self.hierarchy {
            // Enable controllers from the root down to our parent.
            let mut cur = root.clone();
            for comp in self.rel.parent().into_iter().flat_map(|p| p.components()) {
                let sc = cur.join("cgroup.subtree_control");
                let _ = fs::write(&sc, "+memory +cpu +pids");
                cur.push(comp);
                fs::create_dir_all(&cur).map_err(ioe(&cur))?;
            }
            let sc = cur.join("cgroup.subtree_control");
            let _ = fs::write(&sc, "+memory +cpu +pids");
        }
        for d in self.dirs() {
            fs::create_dir_all(&d).map_err(ioe(&d))?;
        }
        self.apply(res)
    }

    /// Writes resource limits.
    pub fn apply(&self, res: &Resources) -> Result<(), CgroupError> {
        match &self.hierarchy {
            Hierarchy::V2(root) => {
                let d = root.join(&self.rel);
                if let Some(m) = res.memory_bytes {
                    write(&d.join("memory.max"), &m.to_string())?;
                    let swap = d.join("memory.swap.max");
                    if swap.exists() {
                        write(&swap, "0")?;
                    }
                }
                if let Some(q) = res.cpu_quota_us {
                    let period = res.cpu_period_us.unwrap_or(100_000);
                    write(&d.join("cpu.max"), &format!("{q} {period}"))?;
                }
                if let Some(p) = res.pids_max {
                    write(&d.join("pids.max"), &p.to_string())?;
                }
            }
            Hierarchy::V1 {
                memory, cpu, pids, ..
            } => {
                if let (Some(m), Some(root)) = (res.memory_bytes, memory) {
                    let d = root.join(&self.rel);
                    write(&d.join("memory.limit_in_bytes"), &m.to_string())?;
                    let sw = d.join("memory.memsw.limit_in_bytes");
                    if sw.exists() {
                        write(&sw, &m.to_string())?;
                    }
                }
                if let (Some(q), Some(root)) = (res.cpu_quota_us, cpu) {
                    let d = root.join(&self.rel);
                    let period = res.cpu_period_us.unwrap_or(100_000);
                    write(&d.join("cpu.cfs_period_us"), &period.to_string())?;
                    write(&d.join("cpu.cfs_quota_us"), &q.to_string())?;
                }
                if let (Some(p), Some(root)) = (res.pids_max, pids) {
                    write(&root.join(&self.rel).join("pids.max"), &p.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// Moves process `pid` into every directory of this cgroup.
    pub fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        for d in self.dirs() {
            write(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Pids currently in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        let Some(d) = self.dirs().into_iter().next() else {
            return Vec::new();
        };
        fs::read_to_string(d.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Number of OOM kills in this cgroup so far.
    pub fn oom_kills(&self) -> u64 {
        let Some(d) = self.mem_dir() else { return 0 };
        match &self.hierarchy {
            Hierarchy::V2(_) => keyed(&d.join("memory.events"), "oom_kill").unwrap_or(0),
            Hierarchy::V1 { .. } => keyed(&d.join("memory.oom_control"), "oom_kill")
                .filter(|n| *n > 0)
                // Kernels before 4.13 have no oom_kill counter: failcnt > 0 with the process
                // SIGKILLed is the best signal left.
                .unwrap_or(0),
        }
    }

    /// Current usage.
    pub fn stats(&self) -> CgroupStats {
        let mut s = CgroupStats {
            oom_kills: self.oom_kills(),
            pids: self.pids().len() as u64,
            ..Default::default()
        };
        match &self.hierarchy {
            Hierarchy::V2(root) => {
                let d = root.join(&self.rel);
                s.memory_bytes = read_u64(&d.join("memory.current")).unwrap_or(0);
                s.memory_peak_bytes = read_u64(&d.join("memory.peak")).unwrap_or(0);
                s.memory_limit_bytes = read_u64(&d.join("memory.max"));
                s.cpu_usage_ns = keyed(&d.join("cpu.stat"), "usage_usec").unwrap_or(0) * 1000;
            }
            Hierarchy::V1 {
                memory, cpuacct, ..
            } => {
                if let Some(r) = memory {
                    let d = r.join(&self.rel);
                    s.memory_bytes = read_u64(&d.join("memory.usage_in_bytes")).unwrap_or(0);
                    s.memory_peak_bytes =
                        read_u64(&d.join("memory.max_usage_in_bytes")).unwrap_or(0);
                    s.memory_limit_bytes =
                        read_u64(&d.join("memory.limit_in_bytes")).filter(|l| *l < (1u64 << 62));
                }
                if let Some(r) = cpuacct {
                    s.cpu_usage_ns =
                        read_u64(&r.join(&self.rel).join("cpuacct.usage")).unwrap_or(0);
                }
            }
        }
        s
    }

    /// Kills every process in the cgroup.
    pub fn kill_all(&self, sig: i32) {
        for pid in self.pids() {
            // SAFETY: kill with integer arguments.
            unsafe { libc::kill(pid, sig) };
        }
    }

    /// The freezer's directory and whether it is v2's (`cgroup.freeze`).
    fn freezer_dir(&self) -> Option<(PathBuf, bool)> {
        match &self.hierarchy {
            Hierarchy::V2(r) => Some((r.join(&self.rel), true)),
            Hierarchy::V1 { freezer, .. } => freezer.as_ref().map(|r| (r.join(&self.rel), false)),
        }
    }

    /// Whether every process of the cgroup is frozen (`pause`).
    pub fn frozen(&self) -> bool {
        match self.freezer_dir() {
            Some((d, true)) => keyed(&d.join("cgroup.events"), "frozen") == Some(1),
            Some((d, false)) => {
                fs::read_to_string(d.join("freezer.state")).is_ok_and(|s| s.trim() == "FROZEN")
            }
            None => false,
        }
    }

    /// Freezes (`pause`) or thaws (`resume`) every process of the cgroup, and waits until the
    /// kernel says it is done (up to 5 s).
    pub fn freeze(&self, frozen: bool) -> Result<(), CgroupError> {
        let (d, v2) = self.freezer_dir().ok_or(CgroupError::NoFreezer)?;
        if v2 {
            write(&d.join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
        } else {
            write(
                &d.join("freezer.state"),
                if frozen { "FROZEN" } else { "THAWED" },
            )?;
        }
        let start = std::time::Instant::now();
        while self.frozen() != frozen {
            if start.elapsed() > std::time::Duration::from_secs(5) {
                return Err(CgroupError::Freeze { path: d, frozen });
            }
            if !v2 && frozen {
                // v1 may stay FREEZING while a task is busy in the kernel: ask again.
                let _ = write(&d.join("freezer.state"), "FROZEN");
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Ok(())
    }

    /// Kills remaining processes and removes the directories (idempotent).
    pub fn remove(&self) -> Result<(), CgroupError> {
        // Frozen (paused) processes die only once thawed.
        if self.frozen() {
            let _ = self.freeze(false);
        }
        for d in self.dirs() {
            if !d.exists() {
                continue;
            }
            let mut tries = 0;
            loop {
                match fs::remove_dir(&d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 2000 => {
                        tries += 1;
                        self.kill_all(libc::SIGKILL);
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        return Err(CgroupError::Busy { path: d })
                    }
                    Err(source) => return Err(CgroupError::Io { path: d, source }),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
