//! What a user namespace (`swarmd --userns-remap`) costs a container, measured through the
//! library API as the agent pays it: the same busybox image (one layer, imported into an image
//! store) started with and without id maps, interleaved so both see the same machine; then
//! on chowned copies of the layers (the fallback where idmapped mounts do not work); the two
//! steps the remap adds, alone (making the namespace, one idmapped layer mount); and what the
//! chowned copy costs once (Docker makes one of every image). No extra process or memory stays per container: the namespace is held by the
//! container's own init.
//!
//! `bench_userns <busybox-rootfs-dir> [iterations]` (root; build with --release).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use swarm_runtime::spec::{ContainerSpec, ProcessSpec, RootfsSpec};
use swarm_runtime::userns::{IdMap, IdRange};
use swarm_runtime::{ImageConfig, ImageStore, Runtime, RuntimeConfig};

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn map() -> IdMap {
    let r = vec![IdRange {
        container: 0,
        host: 100_000,
        size: 65_536,
    }];
    IdMap {
        uids: r.clone(),
        gids: r,
    }
}

fn du(p: &Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    std::fs::read_dir(p)
        .map(|d| d.flatten().map(|e| du(&e.path())).sum())
        .unwrap_or(0)
}

fn main() {
    swarm_runtime::init::maybe_run_init();
    let args: Vec<String> = std::env::args().collect();
    let rootfs = PathBuf::from(args.get(1).expect("usage: bench_userns ROOTFS [N]"));
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
    let work = std::env::temp_dir().join(format!("swarm-bench-userns-{}", std::process::id()));
    let store = ImageStore::open(work.join("images")).expect("image store");
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", &rootfs).expect("tar the rootfs");
    store
        .import_rootfs_tar(
            &b.into_inner().unwrap()[..],
            "busybox:bench",
            ImageConfig::default(),
        )
        .expect("import");
    let layers = store.prepare("busybox:bench").expect("prepare").layers;
    let rt = Runtime::new(RuntimeConfig::new(work.join("state"), "swarm-bench-userns"))
        .expect("runtime");
    // The fallback where idmapped mounts do not work: chowned copies, made once.
    let t = Instant::now();
    let copies = store
        .remapped_layers(&layers, &map())
        .expect("chowned copies");
    let copy_ms = t.elapsed().as_secs_f64() * 1e3;
    let copy_bytes = du(&copies[0]);
    // 0 plain, 1 userns with idmapped layers, 2 userns on the chowned copies.
    let spec = |id: &str, mode: u8| {
        let mut s = ContainerSpec::new(
            id,
            RootfsSpec::Layers {
                lower: if mode == 2 {
                    copies.clone()
                } else {
                    layers.clone()
                },
            },
            ProcessSpec {
                args: vec!["/bin/true".into()],
                env: vec!["PATH=/bin".into()],
                cwd: "/".into(),
                user: "0".into(),
            },
        );
        s.user_namespace = (mode > 0).then(map);
        s.layers_remapped = mode == 2;
        s
    };
    let once = |id: &str, mode: u8| -> f64 {
        let t0 = Instant::now();
        rt.create(spec(id, mode)).unwrap();
        rt.start(id).unwrap();
        let st = rt.wait(id, Some(Duration::from_secs(10))).unwrap();
        assert_eq!(st.code, 0, "{id}");
        rt.remove(id, true).unwrap();
        t0.elapsed().as_secs_f64() * 1e3
    };
    for i in 0..6 {
        once(&format!("warm{i}"), (i % 3) as u8);
    }
    let (mut plain, mut remap, mut copied) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        plain.push(once(&format!("p{i}"), 0));
        remap.push(once(&format!("r{i}"), 1));
        copied.push(once(&format!("c{i}"), 2));
    }
    let (p50, r50, c50) = (
        pct(&mut plain, 0.5),
        pct(&mut remap, 0.5),
        pct(&mut copied, 0.5),
    );
    println!(
        "lifecycle of /bin/true from image layers, {n} interleaved runs each (ms): plain p50 {p50:.2} p90 {:.2} | userns p50 {r50:.2} p90 {:.2} (+{:.2}, {:.2}x) | userns on chowned copies p50 {c50:.2} p90 {:.2} (+{:.2})",
        pct(&mut plain, 0.9),
        pct(&mut remap, 0.9),
        r50 - p50,
        r50 / p50,
        pct(&mut copied, 0.9),
        c50 - p50,
    );
    // The two added steps alone.
    let m = map();
    let mut mk = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let fd = swarm_runtime::userns::create_namespace(&m).expect("userns");
        mk.push(t.elapsed().as_secs_f64() * 1e3);
        drop(fd);
    }
    let fd = swarm_runtime::userns::create_namespace(&m).expect("userns");
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare mount ns");
    swarm_runtime::sys::mount(
        None,
        Path::new("/"),
        None,
        libc::MS_PRIVATE | libc::MS_REC,
        None,
    )
    .expect("make / private");
    let target = work.join("idmapped");
    std::fs::create_dir_all(&target).unwrap();
    let mut idm = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        swarm_runtime::userns::idmapped_bind(
            &layers[0],
            &target,
            std::os::fd::AsRawFd::as_raw_fd(&fd),
        )
        .expect("idmapped mount");
        idm.push(t.elapsed().as_secs_f64() * 1e3);
        swarm_runtime::sys::umount2(&target, libc::MNT_DETACH).expect("unmount");
    }
    println!(
        "steps alone (ms): make the user namespace p50 {:.3} p90 {:.3} | one idmapped layer mount p50 {:.3} p90 {:.3}",
        pct(&mut mk, 0.5),
        pct(&mut mk, 0.9),
        pct(&mut idm, 0.5),
        pct(&mut idm, 0.9)
    );
    println!(
        "chowned copies (the fallback, and what Docker always does): {copy_ms:.1} ms once per layer and map, {:.1} MiB of disk for this image; idmapped layers copy nothing",
        copy_bytes as f64 / (1 << 20) as f64
    );
    drop(rt);
    let _ = std::fs::remove_dir_all(&work);
    if let Ok(h) = swarm_runtime::cgroup::detect() {
        let _ = swarm_runtime::cgroup::Cgroup::new(h, "", "swarm-bench-userns").remove();
    }
}
