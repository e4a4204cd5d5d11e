//! Library-API benchmark: container start latency as the agent pays it (no process spawn per
//! call besides the container's own helper), and the memory a running container costs beyond
//! its workload (our init, pid 1 inside the container).
//!
//! `bench_api <busybox-rootfs-dir> [iterations]` (root; build with --release).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use swarm_runtime::spec::{ContainerSpec, ProcessSpec, RootfsSpec};
use swarm_runtime::{Runtime, RuntimeConfig};

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn rss_kb(pid: i32, key: &str) -> u64 {
    let f = format!("/proc/{pid}/smaps_rollup");
    std::fs::read_to_string(f)
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

fn main() {
    swarm_runtime::init::maybe_run_init();
    let args: Vec<String> = std::env::args().collect();
    let rootfs = PathBuf::from(args.get(1).expect("usage: bench_api ROOTFS [N]"));
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
    let root = std::env::temp_dir().join(format!("swarm-bench-api-{}", std::process::id()));
    let rt = Runtime::new(RuntimeConfig::new(&root, "swarm-bench-api")).expect("runtime");
    let spec = |id: &str, args: &[&str]| {
        ContainerSpec::new(
            id,
            RootfsSpec::Directory {
                path: rootfs.clone(),
                readonly: true,
            },
            ProcessSpec {
                args: args.iter().map(|s| s.to_string()).collect(),
                env: vec!["PATH=/bin".into()],
                cwd: "/".into(),
                user: "0".into(),
            },
        )
    };
    // Warm-up (also makes the sealed helper copy, once per Runtime).
    for i in 0..5 {
        let id = format!("warm{i}");
        rt.create(spec(&id, &["/bin/true"])).unwrap();
        rt.start(&id).unwrap();
        rt.wait(&id, Some(Duration::from_secs(10))).unwrap();
        rt.remove(&id, true).unwrap();
    }
    let (mut create, mut start, mut full) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let id = format!("b{i}");
        let t0 = Instant::now();
        rt.create(spec(&id, &["/bin/true"])).unwrap();
        let t1 = Instant::now();
        rt.start(&id).unwrap();
        let t2 = Instant::now();
        rt.wait(&id, Some(Duration::from_secs(10))).unwrap();
        rt.remove(&id, true).unwrap();
        let t3 = Instant::now();
        create.push((t1 - t0).as_secs_f64() * 1e3);
        start.push((t2 - t1).as_secs_f64() * 1e3);
        full.push((t3 - t0).as_secs_f64() * 1e3);
    }
    println!("library API, {n} runs of /bin/true (ms): create p50 {:.2} p90 {:.2} | start p50 {:.3} | create+start+wait+remove p50 {:.2} p90 {:.2}",
        pct(&mut create, 0.5), pct(&mut create, 0.9), pct(&mut start, 0.5), pct(&mut full, 0.5), pct(&mut full, 0.9));
    // Memory per running container beyond its workload: the init (pid 1 inside).
    let k = 10;
    let mut inits = Vec::new();
    for i in 0..k {
        let id = format!("mem{i}");
        let info = rt.create(spec(&id, &["/bin/sleep", "60"])).unwrap();
        rt.start(&id).unwrap();
        inits.push((id, info.pid));
    }
    std::thread::sleep(Duration::from_millis(300));
    let (mut rss, mut pss, mut uss) = (0, 0, 0);
    for (_, pid) in &inits {
        rss += rss_kb(*pid, "Rss:");
        pss += rss_kb(*pid, "Pss:");
        uss += rss_kb(*pid, "Private_Clean:") + rss_kb(*pid, "Private_Dirty:");
    }
    println!(
        "per running container, our init (pid 1 inside), mean of {k}: RSS {} kB, PSS {} kB, private {} kB; no other helper process per container",
        rss / k as u64, pss / k as u64, uss / k as u64
    );
    for (id, _) in inits {
        rt.remove(&id, true).unwrap();
    }
    let _ = std::fs::remove_dir_all(&root);
    if let Ok(h) = swarm_runtime::cgroup::detect() {
        let _ = swarm_runtime::cgroup::Cgroup::new(h, "", "swarm-bench-api").remove();
    }
}
