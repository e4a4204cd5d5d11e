//! What a user namespace (`swarmd --userns-remap`) costs a container, measured through the
//! library API as the agent pays it: the same busybox image (one layer, imported into an image
//! store) started with and without id maps, interleaved so both see the same machine; then
//! the two steps the remap adds, alone (making the namespace, one idmapped layer mount), and
//! what the alternative Docker uses — a chowned copy of the image per remap — costs for this
//! image. No extra process or memory stays per container: the namespace is held by the
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

fn copy_chowned(from: &Path, to: &Path, shift: u32) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut n = 0;
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let m = std::fs::symlink_metadata(&src)?;
        if m.is_dir() {
            n += copy_chowned(&src, &dst, shift)?;
        } else if m.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else {
            n += std::fs::copy(&src, &dst)?;
        }
        std::os::unix::fs::lchown(&dst, Some(m.uid() + shift), Some(m.gid() + shift))?;
    }
    Ok(n)
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
    let spec = |id: &str, remap: bool| {
        let mut s = ContainerSpec::new(
            id,
            RootfsSpec::Layers {
                lower: layers.clone(),
            },
            ProcessSpec {
                args: vec!["/bin/true".into()],
                env: vec!["PATH=/bin".into()],
                cwd: "/".into(),
                user: "0".into(),
            },
        );
        s.user_namespace = remap.then(map);
        s
    };
    let once = |id: &str, remap: bool| -> f64 {
        let t0 = Instant::now();
        rt.create(spec(id, remap)).unwrap();
        rt.start(id).unwrap();
        let st = rt.wait(id, Some(Duration::from_secs(10))).unwrap();
        assert_eq!(st.code, 0, "{id}");
        rt.remove(id, true).unwrap();
        t0.elapsed().as_secs_f64() * 1e3
    };
    for i in 0..5 {
        once(&format!("warm{i}"), i % 2 == 0);
    }
    let (mut plain, mut remap) = (Vec::new(), Vec::new());
    for i in 0..n {
        plain.push(once(&format!("p{i}"), false));
        remap.push(once(&format!("r{i}"), true));
    }
    let (p50, r50) = (pct(&mut plain, 0.5), pct(&mut remap, 0.5));
    println!(
        "lifecycle of /bin/true from image layers, {n} interleaved runs each (ms): plain p50 {p50:.2} p90 {:.2} | userns p50 {r50:.2} p90 {:.2} | added p50 {:.2} ({:.2}x)",
        pct(&mut plain, 0.9),
        pct(&mut remap, 0.9),
        r50 - p50,
        r50 / p50
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
    let t = Instant::now();
    let bytes = copy_chowned(&layers[0], &work.join("chowned"), 100_000).expect("copy");
    println!(
        "the alternative, a chowned copy of this image per remap (Docker's): {:.1} ms and {:.1} MiB of disk; idmapped layers copy nothing",
        t.elapsed().as_secs_f64() * 1e3,
        bytes as f64 / (1 << 20) as f64
    );
    drop(rt);
    let _ = std::fs::remove_dir_all(&work);
    if let Ok(h) = swarm_runtime::cgroup::detect() {
        let _ = swarm_runtime::cgroup::Cgroup::new(h, "", "swarm-bench-userns").remove();
    }
}
