//! The runtime executor with real busybox containers (root only): waiting for containers,
//! grace periods and health-check execs hold no thread, so a tokio runtime with two blocking
//! threads runs more containers than it has threads, and still creates, inspects and stops.
//!
//! Runs without the libtest harness: this binary is also the runtime's helper (its `main`
//! calls `maybe_run_init` first), like `swarmd`.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_agent::executor::{ContainerState, Executor, MAX_EXEC_OUTPUT};
use swarm_agent::runtime_exec::RuntimeExecutor;
use swarm_types::objects::{Meta, TaskStatus};
use swarm_types::task::TaskState;
use swarm_types::{ServiceId, Task, TaskId};

const BUSYBOX: &str = "/bin/busybox";
const IMAGE: &str = "busybox:agent-test";
/// More containers than blocking threads: a thread per waiting container would hang here.
const CONTAINERS: usize = 6;
const BLOCKING_THREADS: usize = 2;

type TestFn = fn(&Env);

fn main() {
    swarm_runtime::init::maybe_run_init();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata("/proc/self").map(|m| m.uid()).ok(),
        Some(0),
        "these tests need root (CI runs as root)"
    );
    assert!(
        Path::new(BUSYBOX).is_file(),
        "{BUSYBOX} not found: install busybox-static"
    );
    let tests: &[(&str, TestFn)] = &[
        (
            "waits_hold_no_thread_and_stop_ends_them",
            waits_hold_no_thread_and_stop_ends_them,
        ),
        ("stop_escalates_after_the_grace_period", stop_escalates),
        ("exec_runs_async_with_capped_output_and_timeout", exec_runs),
    ];
    for (name, t) in tests {
        eprintln!("test {name} ...");
        let env = Env::new(name);
        t(&env);
        eprintln!("test {name} ... ok");
    }
    eprintln!("test result: ok. {} passed", tests.len());
}

/// A node's state dir with the busybox image, an executor on its own cgroup parent, and a
/// tokio runtime with only [`BLOCKING_THREADS`] blocking threads. Drop removes containers and
/// cgroups, also after a failed assertion.
struct Env {
    exec: Arc<RuntimeExecutor>,
    rt: tokio::runtime::Runtime,
    cgroup_parent: String,
    _dir: tempfile::TempDir,
}

impl Env {
    fn new(name: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
        std::fs::create_dir_all(rootfs.join("tmp")).unwrap();
        for a in ["sh", "sleep", "echo", "seq", "true", "test", "mkdir"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
        }
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        let mut b = tar::Builder::new(Vec::new());
        b.follow_symlinks(false);
        b.append_dir_all(".", &rootfs).unwrap();
        let tar = b.into_inner().unwrap();
        let state = dir.path().join("state");
        let cgroup_parent = format!("swarm-agent-test-{}-{name}", std::process::id());
        let exec = RuntimeExecutor::open(&state, &cgroup_parent).unwrap();
        exec.images()
            .store()
            .import_rootfs_tar(&tar[..], IMAGE, Default::default())
            .unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(BLOCKING_THREADS)
            .enable_all()
            .build()
            .unwrap();
        Env {
            exec: Arc::new(exec),
            rt,
            cgroup_parent,
            _dir: dir,
        }
    }

    /// Runs `f` on the runtime, failing (not hanging) after `limit`.
    fn run<T>(&self, what: &str, limit: Duration, f: impl Future<Output = T>) -> T {
        self.rt
            .block_on(async { tokio::time::timeout(limit, f).await })
            .unwrap_or_else(|_| panic!("timed out after {limit:?}: {what}"))
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let root = self._dir.path().join("state").join("containers");
        if let Ok(rt) = swarm_runtime::Runtime::new(swarm_runtime::RuntimeConfig::new(
            &root,
            self.cgroup_parent.clone(),
        )) {
            for c in rt.list().unwrap_or_default() {
                let _ = rt.remove(&c.id, true);
            }
        }
        if let Ok(h) = swarm_runtime::cgroup::detect() {
            let _ = swarm_runtime::cgroup::Cgroup::new(h, "", &self.cgroup_parent).remove();
        }
    }
}

fn task(id: &str, args: &[&str]) -> Task {
    let mut spec = swarm_types::spec::TaskSpec::default();
    spec.container.image = IMAGE.into();
    spec.container.command = args.iter().map(|s| s.to_string()).collect();
    Task {
        id: TaskId::new(id),
        meta: Meta::default(),
        service_id: ServiceId::new("svc"),
        slot: 1,
        node_id: None,
        service_name: "test".into(),
        spec_version: 1,
        spec: spec.into(),
        desired_state: TaskState::Running,
        status: TaskStatus::default(),
        restarts: 0,
        networks: Vec::new(),
    }
}

async fn run_container(exec: &RuntimeExecutor, id: &str, args: &[&str]) {
    exec.prepare(&task(id, args)).await.unwrap();
    exec.start(id).await.unwrap();
}

fn waits_hold_no_thread_and_stop_ends_them(env: &Env) {
    let exec = env.exec.clone();
    let ids: Vec<String> = (0..CONTAINERS).map(|i| format!("sleeper{i}")).collect();
    eprintln!(
        "phase: {CONTAINERS} containers, each waited for, on {BLOCKING_THREADS} blocking threads"
    );
    let waits = env.run("create, start and wait", Duration::from_secs(120), async {
        let mut waits = Vec::new();
        for id in &ids {
            run_container(&exec, id, &["sleep", "600"]).await;
            let (e, id) = (exec.clone(), id.clone());
            waits.push(tokio::spawn(async move { e.wait(&id).await }));
        }
        waits
    });
    eprintln!("phase: every container still answers inspect; no wait has resolved");
    env.run("inspect while waiting", Duration::from_secs(60), async {
        for id in &ids {
            assert_eq!(
                exec.inspect(id).await.unwrap(),
                Some(ContainerState::Running),
                "{id}"
            );
        }
    });
    assert!(
        waits.iter().all(|w| !w.is_finished()),
        "a wait resolved early"
    );
    eprintln!("phase: stop all → each wait resolves with the SIGTERM exit");
    env.run("stop and collect", Duration::from_secs(120), async {
        for id in &ids {
            exec.stop(id, Duration::from_secs(10)).await.unwrap();
        }
        for w in waits {
            let exit = w.await.unwrap().unwrap();
            assert_eq!((exit.code, exit.error), (128 + libc::SIGTERM, None));
        }
        for id in &ids {
            exec.remove(id).await.unwrap();
            assert_eq!(exec.inspect(id).await.unwrap(), None);
        }
    });
}

fn stop_escalates(env: &Env) {
    let exec = env.exec.clone();
    env.run("stubborn container", Duration::from_secs(60), async {
        run_container(
            &exec,
            "stubborn",
            &[
                "sh",
                "-c",
                "trap '' TERM; mkdir /tmp/ready; sleep 600 & wait; sleep 600",
            ],
        )
        .await;
        // SIGTERM must come after the trap is set.
        loop {
            let probe = vec!["test".into(), "-d".into(), "/tmp/ready".into()];
            if exec
                .exec("stubborn", probe, Duration::from_secs(10))
                .await
                .unwrap()
                .0
                == 0
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let t = Instant::now();
        exec.stop("stubborn", Duration::from_millis(500))
            .await
            .unwrap();
        assert!(
            t.elapsed() >= Duration::from_millis(500),
            "killed before the grace period"
        );
        let exit = exec.wait("stubborn").await.unwrap();
        assert_eq!((exit.code, exit.error), (128 + libc::SIGKILL, None));
    });
}

fn exec_runs(env: &Env) {
    let exec = env.exec.clone();
    env.run("exec", Duration::from_secs(60), async {
        run_container(&exec, "probed", &["sleep", "600"]).await;
        let (code, out) = exec
            .exec(
                "probed",
                vec!["sh".into(), "-c".into(), "echo hi; exit 3".into()],
                Duration::from_secs(20),
            )
            .await
            .unwrap();
        assert_eq!((code, out.as_str()), (3, "hi\n"));
        let (code, out) = exec
            .exec(
                "probed",
                vec!["seq".into(), "1".into(), "100000".into()],
                Duration::from_secs(20),
            )
            .await
            .unwrap();
        assert_eq!(code, 0);
        assert_eq!(out.len(), MAX_EXEC_OUTPUT, "output capped");
        assert!(out.starts_with("1\n2\n3\n"));
        let t = Instant::now();
        let (code, out) = exec
            .exec(
                "probed",
                vec!["sleep".into(), "600".into()],
                Duration::from_millis(300),
            )
            .await
            .unwrap();
        assert_eq!(code, 128 + libc::SIGKILL);
        assert!(out.contains("exceeded timeout"), "{out}");
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        exec.stop("probed", Duration::from_secs(5)).await.unwrap();
    });
}
