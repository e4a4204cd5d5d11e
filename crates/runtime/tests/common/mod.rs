//! Shared harness for the root-only integration tests: a busybox image built from Debian's
//! busybox-static package, a Runtime on a temp state root with its own cgroup parent, and a
//! Drop guard that force-removes containers, cgroups and state even when a test fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use swarm_runtime::spec::{resolve_process, ContainerSpec, ProcessOverrides, RootfsSpec};
use swarm_runtime::{ImageConfig, ImageStore, Runtime, RuntimeConfig};

pub const BUSYBOX: &str = "/bin/busybox";
const APPLETS: &[&str] = &[
    "sh", "true", "false", "sleep", "cat", "ls", "id", "echo", "env", "pwd", "grep", "head", "tr",
    "seq", "hostname", "touch", "mkdir", "wc", "dd", "kill", "ps", "chown", "stat", "tty", "mount",
];

/// Fails (not skips) when busybox-static is missing: CI must install it.
pub fn require_root_and_busybox() {
    let uid = nix::unistd::getuid().as_raw();
    assert_eq!(uid, 0, "these tests need root (CI runs as root)");
    assert!(
        Path::new(BUSYBOX).is_file(),
        "{BUSYBOX} not found: install Debian's busybox-static (apt-get install -y busybox-static)"
    );
}

/// Writes a busybox rootfs into `dir`.
pub fn busybox_rootfs(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::copy(BUSYBOX, dir.join("bin/busybox")).unwrap();
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(a)).unwrap();
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("etc/group"),
        "root:x:0:\napp:x:1000:\nwheel:x:10:app\nnogroup:x:65534:\n",
    )
    .unwrap();
}

static SEQ: AtomicU32 = AtomicU32::new(0);

pub struct Harness {
    pub rt: Option<Runtime>,
    pub store: ImageStore,
    pub layers: Vec<PathBuf>,
    pub image: ImageConfig,
    pub root: PathBuf,
    pub cgroup_parent: String,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub fn new() -> Self {
        require_root_and_busybox();
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        busybox_rootfs(&rootfs);
        let mut b = tar::Builder::new(Vec::new());
        b.follow_symlinks(false);
        b.append_dir_all(".", &rootfs).unwrap();
        let tar = b.into_inner().unwrap();
        let store = ImageStore::open(dir.path().join("images")).unwrap();
        store
            .import_rootfs_tar(
                &tar[..],
                "busybox:test",
                ImageConfig {
                    cmd: Some(vec!["sh".into()]),
                    ..Default::default()
                },
            )
            .unwrap();
        let prepared = store.prepare("busybox:test").unwrap();
        let root = dir.path().join("state");
        let cgroup_parent = format!(
            "swarm-rt-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let mut cfg = RuntimeConfig::new(&root, cgroup_parent.clone());
        cfg.helper_binary = Some(PathBuf::from(env!("CARGO_BIN_EXE_swarm-runtime")));
        let rt = Runtime::new(cfg).unwrap();
        Harness {
            rt: Some(rt),
            store,
            layers: prepared.layers,
            image: prepared.config,
            root,
            cgroup_parent,
            _dir: dir,
        }
    }

    pub fn rt(&self) -> &Runtime {
        self.rt.as_ref().unwrap()
    }

    /// A spec running `sh -c script` from the busybox image.
    pub fn spec(&self, id: &str, script: &str) -> ContainerSpec {
        let o = ProcessOverrides {
            cmd: Some(vec!["sh".into(), "-c".into(), script.into()]),
            ..Default::default()
        };
        self.spec_with(id, o)
    }

    pub fn spec_with(&self, id: &str, o: ProcessOverrides) -> ContainerSpec {
        let p = resolve_process(&self.image, &o).unwrap();
        ContainerSpec::new(
            id,
            RootfsSpec::Layers {
                lower: self.layers.clone(),
            },
            p,
        )
    }

    /// Drops and recreates the Runtime on the same root (a supervising-process restart).
    pub fn restart_runtime(&mut self) {
        self.rt = None;
        let mut cfg = RuntimeConfig::new(&self.root, self.cgroup_parent.clone());
        cfg.helper_binary = Some(PathBuf::from(env!("CARGO_BIN_EXE_swarm-runtime")));
        self.rt = Some(Runtime::new(cfg).unwrap());
    }

    pub fn log_text(&self, id: &str) -> String {
        self.rt()
            .logs(id, None)
            .unwrap()
            .into_iter()
            .map(|e| e.log)
            .collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(rt) = &self.rt {
            for c in rt.list().unwrap_or_default() {
                let _ = rt.remove(&c.id, true);
            }
        }
        if let Ok(h) = swarm_runtime::cgroup::detect() {
            let _ = swarm_runtime::cgroup::Cgroup::new(h, "", &self.cgroup_parent).remove();
        }
    }
}

/// Polls `f` until it returns true or the deadline passes.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
