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
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 23 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
35 30 0:31 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
36 30 0:32 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer
";

    #[test]
    fn hybrid_uses_v1_controllers() {
        let h = parse_mountinfo(HYBRID).unwrap();
        assert_eq!(
            h,
            Hierarchy::V1 {
                memory: Some("/sys/fs/cgroup/memory".into()),
                cpu: Some("/sys/fs/cgroup/cpu,cpuacct".into()),
                cpuacct: Some("/sys/fs/cgroup/cpu,cpuacct".into()),
                pids: Some("/sys/fs/cgroup/pids".into()),
                freezer: Some("/sys/fs/cgroup/freezer".into()),
            }
        );
        let cg = Cgroup::new(h, "/swarm-a/", "c1");
        // cpu and cpuacct share a mount: one directory.
        assert_eq!(cg.dirs().len(), 4);
        assert!(cg.dirs()[0].ends_with("memory/swarm-a/c1"));
    }

    #[test]
    fn unified_is_v2() {
        let mi = "25 1 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            parse_mountinfo(mi),
            Some(Hierarchy::V2("/sys/fs/cgroup".into()))
        );
        assert_eq!(parse_mountinfo("1 1 0:1 / / rw - ext4 /dev/sda rw\n"), None);
    }

    /// A v1 hierarchy under `r` with the given controllers mounted (`cpu` is shared with
    /// `cpuacct`, as on most hosts).
    fn v1_at(r: &Path, controllers: &[&str]) -> Hierarchy {
        let at = |name: &str| controllers.contains(&name).then(|| r.join(name));
        Hierarchy::V1 {
            memory: at("memory"),
            cpu: at("cpu"),
            cpuacct: at("cpu"),
            pids: at("pids"),
            freezer: at("freezer"),
        }
    }

    /// What a file of the fake hierarchy holds.
    fn read(p: &Path) -> String {
        fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn limits() -> Resources {
        Resources {
            memory_bytes: Some(64 << 20),
            cpu_quota_us: Some(50_000),
            cpu_period_us: None,
            pids_max: Some(100),
        }
    }

    #[test]
    fn v2_enables_controllers_down_to_the_parent_then_writes_the_limits() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let cg = Cgroup::new(Hierarchy::V2(r.into()), "/swarm/n1/", "c1");
        // The kernel makes memory.swap.max with the directory; only then is swap turned off.
        fs::create_dir_all(r.join("swarm/n1/c1")).unwrap();
        fs::write(r.join("swarm/n1/c1/memory.swap.max"), "max").unwrap();
        cg.create(&limits()).unwrap();
        for anc in ["", "swarm", "swarm/n1"] {
            assert_eq!(
                read(&r.join(anc).join("cgroup.subtree_control")),
                "+memory +cpu +pids",
                "controllers enabled in /{anc}"
            );
        }
        let d = r.join("swarm/n1/c1");
        assert!(
            !d.join("cgroup.subtree_control").exists(),
            "not in the leaf"
        );
        assert_eq!(read(&d.join("memory.max")), (64u64 << 20).to_string());
        assert_eq!(read(&d.join("memory.swap.max")), "0");
        assert_eq!(read(&d.join("cpu.max")), "50000 100000");
        assert_eq!(read(&d.join("pids.max")), "100");
        assert_eq!(cg.dirs(), vec![d]);
    }

    #[test]
    fn v1_writes_each_limit_in_its_controller_and_no_swap_file_it_lacks() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let h = v1_at(r, &["memory", "cpu", "pids"]);
        let cg = Cgroup::new(h, "swarm", "c1");
        let res = Resources {
            cpu_period_us: Some(20_000),
            ..limits()
        };
        cg.create(&res).unwrap();
        let mem = r.join("memory/swarm/c1");
        assert_eq!(
            read(&mem.join("memory.limit_in_bytes")),
            (64u64 << 20).to_string()
        );
        assert!(!mem.join("memory.memsw.limit_in_bytes").exists());
        let cpu = r.join("cpu/swarm/c1");
        assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "20000");
        assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read(&r.join("pids/swarm/c1/pids.max")), "100");
        assert!(!r.join("cgroup.subtree_control").exists());
        // Unlimited resources write nothing.
        let other = Cgroup::new(cg.hierarchy.clone(), "swarm", "c2");
        other.create(&Resources::default()).unwrap();
        assert_eq!(fs::read_dir(r.join("memory/swarm/c2")).unwrap().count(), 0);
    }

    #[test]
    fn processes_go_into_every_directory_and_are_read_back() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let h = v1_at(r, &["memory", "cpu", "pids", "freezer"]);
        let cg = Cgroup::new(h, "swarm", "c1");
        cg.create(&Resources::default()).unwrap();
        cg.add_process(4242).unwrap();
        for d in cg.dirs() {
            assert_eq!(read(&d.join("cgroup.procs")), "4242");
        }
        assert_eq!(cg.pids(), vec![4242]);
    }

    #[test]
    fn stats_and_oom_kills_are_read_from_the_kernel_files() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let v2 = Cgroup::new(Hierarchy::V2(r.into()), "swarm", "c1");
        v2.create(&Resources::default()).unwrap();
        let d = r.join("swarm/c1");
        for (f, v) in [
            ("memory.current", "1000\n"),
            ("memory.peak", "2000\n"),
            ("memory.max", "max\n"),
            ("cpu.stat", "usage_usec 1500\nuser_usec 1000\n"),
            ("memory.events", "low 0\noom 3\noom_kill 2\n"),
            ("cgroup.procs", "7\n8\n"),
        ] {
            fs::write(d.join(f), v).unwrap();
        }
        let s = v2.stats();
        assert_eq!(
            (s.memory_bytes, s.memory_peak_bytes, s.memory_limit_bytes),
            (1000, 2000, None)
        );
        assert_eq!((s.cpu_usage_ns, s.pids, s.oom_kills), (1_500_000, 2, 2));

        let h = v1_at(r, &["memory", "cpu"]);
        let v1 = Cgroup::new(h, "swarm", "c1");
        v1.create(&Resources::default()).unwrap();
        let m = r.join("memory/swarm/c1");
        // The v1 "unlimited" value is a page-rounded i64::MAX: no limit.
        fs::write(m.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        fs::write(m.join("memory.usage_in_bytes"), "4096\n").unwrap();
        fs::write(
            m.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\n",
        )
        .unwrap();
        fs::write(r.join("cpu/swarm/c1/cpuacct.usage"), "123\n").unwrap();
        let s = v1.stats();
        assert_eq!((s.memory_bytes, s.memory_limit_bytes), (4096, None));
        assert_eq!(
            (s.cpu_usage_ns, s.oom_kills),
            (123, 0),
            "no oom_kill line: 0"
        );
    }

    #[test]
    fn freeze_writes_the_request_and_waits_for_the_kernel_to_confirm() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let v2 = Cgroup::new(Hierarchy::V2(r.into()), "swarm", "c1");
        v2.create(&Resources::default()).unwrap();
        let d = r.join("swarm/c1");
        fs::write(d.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        v2.freeze(true).unwrap();
        assert_eq!(read(&d.join("cgroup.freeze")), "1");
        assert!(v2.frozen());

        // v1: freezer.state is both the request and the answer.
        let h = v1_at(r, &["freezer"]);
        let v1 = Cgroup::new(h, "swarm", "c1");
        v1.create(&Resources::default()).unwrap();
        v1.freeze(true).unwrap();
        assert!(v1.frozen());
        v1.freeze(false).unwrap();
        assert_eq!(read(&r.join("freezer/swarm/c1/freezer.state")), "THAWED");

        let none = Cgroup::new(v1_at(r, &[]), "swarm", "c1");
        assert!(matches!(none.freeze(true), Err(CgroupError::NoFreezer)));
    }

    #[test]
    fn remove_deletes_every_directory_and_is_idempotent() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let h = v1_at(r, &["memory", "cpu", "pids"]);
        let cg = Cgroup::new(h, "swarm", "c1");
        cg.create(&Resources::default()).unwrap();
        assert!(cg.dirs().iter().all(|d| d.is_dir()));
        cg.remove().unwrap();
        assert!(cg.dirs().iter().all(|d| !d.exists()));
        cg.remove().unwrap();
        assert!(r.join("memory/swarm").is_dir(), "the parent stays");
    }
}
