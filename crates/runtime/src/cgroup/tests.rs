//! Tests of the cgroup module on v1 and v2 hierarchies rooted in a temporary directory (no
//! root, no kernel cgroups touched).

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
