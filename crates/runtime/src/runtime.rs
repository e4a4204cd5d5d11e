//! The lifecycle API the agent uses: [`Runtime`] over a state root.
//!
//! Invariants:
//! - All container state lives under `<root>/containers/<id>/` ([`crate::state`]); a new
//!   `Runtime` on the same root sees every container again (re-adoption), with exit status and
//!   logs, because the container's own init writes them there.
//! - Containers are started only by spawning the helper binary (a sealed memfd copy, see
//!   [`crate::selfexe`]) with `std::process::Command`: safe from a multi-threaded tokio process.
//! - The init pid is always checked together with its start time, so a recycled pid is never
//!   signalled.
//! - Calls block (at most for the timeouts given); call them from `spawn_blocking` in async
//!   code. The API knows nothing about tasks or services.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cgroup::{self, Cgroup, CgroupError, CgroupStats, Hierarchy};
use crate::init::{ExecRequest, INIT_ARG};
use crate::logs::{self, LogEntry, LogError, LogFollower};
use crate::selfexe::SealedExe;
use crate::spec::{ContainerSpec, RootfsSpec, SpecError};
use crate::state::{self, ExitRecord, InitState, StateDir, StateError, StoredConfig};
use crate::sys;

/// Errors of the lifecycle API.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("container {id:?} already exists; remove it first")]
    AlreadyExists { id: String },
    #[error("container {id:?} not found")]
    NotFound { id: String },
    #[error("container {id:?} is {status}; {hint}")]
    InvalidState {
        id: String,
        status: ContainerStatus,
        hint: &'static str,
    },
    #[error("cannot create container {id:?}: {message}")]
    CreateFailed { id: String, message: String },
    #[error("cannot start helper {path}: {source}; check RuntimeConfig::helper_binary")]
    Helper { path: PathBuf, source: io::Error },
    #[error("timed out after {after:?} waiting for container {id:?}")]
    Timeout { id: String, after: Duration },
}

fn ioe(path: &Path) -> impl FnOnce(io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Configuration of one runtime instance.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// State root; containers live in `<root>/containers/<id>`.
    pub root: PathBuf,
    /// cgroup parent (relative to each hierarchy root), unique per swarmd instance.
    pub cgroup_parent: String,
    /// Binary that handles [`crate::init::maybe_run_init`]; default `/proc/self/exe`.
    pub helper_binary: Option<PathBuf>,
}

impl RuntimeConfig {
    pub fn new(root: impl Into<PathBuf>, cgroup_parent: impl Into<String>) -> Self {
        RuntimeConfig {
            root: root.into(),
            cgroup_parent: cgroup_parent.into(),
            helper_binary: None,
        }
    }
}

/// Lifecycle status, runc's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStatus {
    Created,
    Running,
    Stopped,
}

impl std::fmt::Display for ContainerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ContainerStatus::Created => "created",
            ContainerStatus::Running => "running",
            ContainerStatus::Stopped => "stopped",
        })
    }
}

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Shell-style code: the exit code, or 128 + signal.
    pub code: i32,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    pub finished: String,
    /// Set when the process could not be started (e.g. exec failed).
    pub error: Option<String>,
}

/// A container as seen by `list`/`inspect`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub id: String,
    pub status: ContainerStatus,
    /// Host pid of the container's init (0 when stopped).
    pub pid: i32,
    pub created: String,
    pub bundle: Option<PathBuf>,
    pub rootfs: PathBuf,
    pub exit: Option<ExitStatus>,
    pub labels: std::collections::BTreeMap<String, String>,
}

/// Resource usage.
pub type ContainerStats = CgroupStats;

/// A command to run inside a running container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecSpec {
    pub args: Vec<String>,
    /// Extra `KEY=VALUE` on top of the container's env.
    pub env: Vec<String>,
    pub user: Option<String>,
    pub cwd: Option<String>,
    /// Kill the command after this long (exit code 137 then).
    pub timeout: Option<Duration>,
}

/// Result of [`Runtime::exec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub timed_out: bool,
}

/// The runtime: one per state root.
pub struct Runtime {
    cfg: RuntimeConfig,
    hierarchy: Hierarchy,
    helper_cell: std::sync::OnceLock<SealedExe>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("cfg", &self.cfg).finish()
    }
}

impl Runtime {
    /// Opens (creating) the state root and seals a copy of the helper binary.
    pub fn new(cfg: RuntimeConfig) -> Result<Self, RuntimeError> {
        let cdir = cfg.root.join("containers");
        fs::create_dir_all(&cdir).map_err(ioe(&cdir))?;
        let hierarchy = cgroup::detect()?;
        Ok(Runtime {
            cfg,
            hierarchy,
            helper_cell: std::sync::OnceLock::new(),
        })
    }

    /// The sealed helper copy, made on first use (create/exec) and reused afterwards.
    fn helper(&self) -> Result<&SealedExe, RuntimeError> {
        if let Some(h) = self.helper_cell.get() {
            return Ok(h);
        }
        let exe = self
            .cfg
            .helper_binary
            .clone()
            .unwrap_or_else(|| PathBuf::from("/proc/self/exe"));
        let h = SealedExe::copy_of(&exe).map_err(|source| RuntimeError::Helper {
            path: exe.clone(),
            source,
        })?;
        Ok(self.helper_cell.get_or_init(|| h))
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.cfg
    }

    fn state_dir(&self, id: &str) -> Result<StateDir, RuntimeError> {
        crate::spec::validate_id(id)?;
        Ok(StateDir::new(self.cfg.root.join("containers").join(id)))
    }

    fn existing(&self, id: &str) -> Result<(StateDir, StoredConfig), RuntimeError> {
        let sd = self.state_dir(id)?;
        let cfg: StoredConfig = state::read_json(&sd.config())?
            .ok_or_else(|| RuntimeError::NotFound { id: id.to_string() })?;
        Ok((sd, cfg))
    }

    fn cgroup(&self, cfg: &StoredConfig) -> Cgroup {
        Cgroup::new(self.hierarchy.clone(), &cfg.cgroup_parent, &cfg.spec.id)
    }

    /// Creates a container: namespaces, cgroup, rootfs and mounts are ready and the process is
    /// resolved, but not started. Returns after the container init reported ready.
    pub fn create(&self, spec: ContainerSpec) -> Result<ContainerInfo, RuntimeError> {
        self.create_with_bundle(spec, None)
    }

    /// [`Runtime::create`] recording an OCI bundle path (for runc's `state`).
    pub fn create_with_bundle(
        &self,
        spec: ContainerSpec,
        bundle: Option<PathBuf>,
    ) -> Result<ContainerInfo, RuntimeError> {
        spec.validate()?;
        let id = spec.id.clone();
        let sd = self.state_dir(&id)?;
        match fs::create_dir(&sd.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(RuntimeError::AlreadyExists { id })
            }
            Err(e) => return Err(ioe(&sd.dir)(e)),
        }
        let res = self.create_inner(spec, bundle, &sd);
        if res.is_err() {
            let _ = self.cleanup(&sd, None);
        }
        res
    }

    fn create_inner(
        &self,
        spec: ContainerSpec,
        bundle: Option<PathBuf>,
        sd: &StateDir,
    ) -> Result<ContainerInfo, RuntimeError> {
        let id = spec.id.clone();
        let cg = Cgroup::new(self.hierarchy.clone(), &self.cfg.cgroup_parent, &id);
        cg.create(&spec.resources)?;
        for d in [sd.rootfs()]
            .into_iter()
            .chain(matches!(spec.rootfs, RootfsSpec::Layers { .. }).then(|| sd.upper()))
            .chain(matches!(spec.rootfs, RootfsSpec::Layers { .. }).then(|| sd.work()))
        {
            fs::create_dir_all(&d).map_err(ioe(&d))?;
        }
        let fifo = sys::cstr(&sd.fifo()).map_err(ioe(&sd.fifo()))?;
        // SAFETY: valid C string.
        if unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) } != 0 {
            return Err(ioe(&sd.fifo())(io::Error::last_os_error()));
        }
        let stored = StoredConfig {
            cgroup_dirs: cg.dirs(),
            cgroup_parent: self.cfg.cgroup_parent.clone(),
            bundle,
            created: crate::timefmt::rfc3339_now(),
            spec,
        };
        state::write_json(&sd.config(), &stored)?;
        let helper = self.helper()?;
        let inherit = stored.spec.stdio == crate::spec::StdioMode::Inherit;
        let mut cmd = Command::new(helper.exec_path());
        cmd.arg(INIT_ARG).arg("create").arg(&sd.dir);
        if !inherit {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
        }
        let status = cmd.status().map_err(|source| RuntimeError::Helper {
            path: helper.exec_path(),
            source,
        })?;
        if !status.success() {
            let message = fs::read_to_string(sd.init_err())
                .unwrap_or_else(|_| format!("helper exited with {status}"));
            return Err(RuntimeError::CreateFailed { id, message });
        }
        self.inspect(&stored.spec.id)
    }

    /// Starts the workload of a created container.
    pub fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let (sd, _) = self.existing(id)?;
        let info = self.inspect(id)?;
        if info.status != ContainerStatus::Created {
            return Err(RuntimeError::InvalidState {
                id: id.into(),
                status: info.status,
                hint: "only a created container can be started",
            });
        }
        let fifo = sd.fifo();
        let f = sys::openat(libc::AT_FDCWD, &fifo, libc::O_RDONLY | libc::O_NONBLOCK, 0)
            .map_err(ioe(&fifo))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if sys::poll_readable(f.as_raw_fd(), 100).map_err(ioe(&fifo))? {
                let mut b = [0u8; 1];
                // SAFETY: read one byte into a local buffer.
                let n = unsafe { libc::read(f.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
                if n == 1 {
                    break;
                }
            }
            if !sys::process_alive(info.pid) || Instant::now() > deadline {
                return Err(RuntimeError::InvalidState {
                    id: id.into(),
                    status: ContainerStatus::Stopped,
                    hint: "its init exited before start; remove it and create it again",
                });
            }
        }
        let _ = fs::write(sd.started_marker(), crate::timefmt::rfc3339_now());
        let _ = fs::remove_file(&fifo);
        Ok(())
    }

    fn init_state(&self, sd: &StateDir) -> Result<Option<InitState>, RuntimeError> {
        Ok(state::read_json(&sd.init_state())?)
    }

    /// The live init pid, if the init is still running (pid + start time match).
    fn live_pid(&self, sd: &StateDir) -> Result<Option<i32>, RuntimeError> {
        Ok(self.init_state(sd)?.and_then(|st| {
            (sys::process_start_time(st.pid) == Some(st.start_time) && sys::process_alive(st.pid))
                .then_some(st.pid)
        }))
    }

    fn exit_status(&self, rec: &ExitRecord, cg: &Cgroup) -> ExitStatus {
        let code = rec
            .code
            .unwrap_or_else(|| 128 + rec.signal.unwrap_or(libc::SIGKILL));
        ExitStatus {
            code,
            signal: rec.signal,
            oom_killed: rec.oom_killed || cg.oom_kills() > 0,
            finished: rec.finished.clone(),
            error: rec.error.clone(),
        }
    }

    /// Current state of one container.
    pub fn inspect(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        let (sd, cfg) = self.existing(id)?;
        let cg = self.cgroup(&cfg);
        let pid = self.live_pid(&sd)?;
        let exit: Option<ExitRecord> = state::read_json(&sd.exit())?;
        let status = match (pid, &exit) {
            (Some(_), None) if sd.fifo().exists() => ContainerStatus::Created,
            (Some(_), None) => ContainerStatus::Running,
            _ => ContainerStatus::Stopped,
        };
        let exit = match (status, exit) {
            (ContainerStatus::Stopped, Some(r)) => Some(self.exit_status(&r, &cg)),
            (ContainerStatus::Stopped, None) if self.init_state(&sd)?.is_some() => {
                // The init itself was SIGKILLed (no exit.json): record that once.
                let rec = ExitRecord {
                    code: None,
                    signal: Some(libc::SIGKILL),
                    finished: crate::timefmt::rfc3339_now(),
                    oom_killed: cg.oom_kills() > 0,
                    error: None,
                };
                let _ = state::write_json(&sd.exit(), &rec);
                Some(self.exit_status(&rec, &cg))
            }
            _ => None,
        };
        Ok(ContainerInfo {
            id: id.into(),
            status,
            pid: pid.unwrap_or(0),
            created: cfg.created,
            bundle: cfg.bundle,
            rootfs: sd.rootfs(),
            exit,
            labels: cfg.spec.labels,
        })
    }

    /// All containers under this root (including ones created by earlier `Runtime`s).
    pub fn list(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let cdir = self.cfg.root.join("containers");
        let mut out = Vec::new();
        let mut names: Vec<String> = fs::read_dir(&cdir)
            .map_err(ioe(&cdir))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        for n in names {
            match self.inspect(&n) {
                Ok(i) => out.push(i),
                Err(RuntimeError::NotFound { .. }) | Err(RuntimeError::Spec(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Waits until the container stopped; `None` timeout waits forever.
    pub fn wait(&self, id: &str, timeout: Option<Duration>) -> Result<ExitStatus, RuntimeError> {
        let (sd, _) = self.existing(id)?;
        if let Some(pid) = self.live_pid(&sd)? {
            let start = Instant::now();
            match sys::pidfd_open(pid) {
                Ok(pfd) => loop {
                    let left = timeout.map(|t| t.saturating_sub(start.elapsed()));
                    let ms = left.map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as i32);
                    let ready =
                        sys::poll_readable(pfd.as_raw_fd(), ms).map_err(ioe(&sd.init_state()))?;
                    if ready || !sys::process_alive(pid) {
                        break;
                    }
                    if left.is_some_and(|d| d.is_zero()) {
                        return Err(RuntimeError::Timeout {
                            id: id.into(),
                            after: timeout.unwrap_or_default(),
                        });
                    }
                },
                Err(_) => {
                    while sys::process_alive(pid) {
                        if timeout.is_some_and(|t| start.elapsed() > t) {
                            return Err(RuntimeError::Timeout {
                                id: id.into(),
                                after: timeout.unwrap_or_default(),
                            });
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        }
        // The init writes exit.json right before it exits; tolerate a short delay.
        let deadline = Instant::now() + Duration::from_millis(500);
        while !sd.exit().exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.inspect(id)?
            .exit
            .ok_or_else(|| RuntimeError::InvalidState {
                id: id.into(),
                status: ContainerStatus::Created,
                hint: "it was never started",
            })
    }

    /// Host pid of the workload (inner pid 2, the init's child).
    fn workload_pid(&self, cfg: &StoredConfig, init: i32) -> Option<i32> {
        let cg = self.cgroup(cfg);
        cg.pids().into_iter().filter(|p| *p != init).find(|p| {
            fs::read_to_string(format!("/proc/{p}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("NSpid:"))
                        .map(|l| l.split_whitespace().last() == Some("2"))
                })
                .unwrap_or(false)
        })
    }

    /// Sends a signal. SIGKILL goes to the workload directly (the init then records it);
    /// other signals go to the init, which forwards them.
    pub fn signal(&self, id: &str, sig: i32) -> Result<(), RuntimeError> {
        let (sd, cfg) = self.existing(id)?;
        let Some(pid) = self.live_pid(&sd)? else {
            return Err(RuntimeError::InvalidState {
                id: id.into(),
                status: ContainerStatus::Stopped,
                hint: "there is no process to signal",
            });
        };
        let (target, sig) = if sd.fifo().exists() {
            // Created, not started: only the init exists and it ignores catchable signals.
            (pid, libc::SIGKILL)
        } else if sig == libc::SIGKILL {
            (self.workload_pid(&cfg, pid).unwrap_or(pid), sig)
        } else {
            (pid, sig)
        };
        let pfd = sys::pidfd_open(target).map_err(ioe(&sd.init_state()))?;
        sys::pidfd_send_signal(pfd.as_raw_fd(), sig).map_err(ioe(&sd.init_state()))
    }

    /// Sends a signal to every process of the container's cgroup (runc's `kill --all`), not
    /// only to its init.
    pub fn signal_all(&self, id: &str, sig: i32) -> Result<(), RuntimeError> {
        let (sd, cfg) = self.existing(id)?;
        if self.live_pid(&sd)?.is_none() {
            return Err(RuntimeError::InvalidState {
                id: id.into(),
                status: ContainerStatus::Stopped,
                hint: "there is no process to signal",
            });
        }
        // Created, not started: only the init exists and it ignores catchable signals (as in
        // `signal`).
        let sig = if sd.fifo().exists() {
            libc::SIGKILL
        } else {
            sig
        };
        self.cgroup(&cfg).kill_all(sig);
        Ok(())
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL; returns the exit status.
    pub fn stop(&self, id: &str, grace: Duration) -> Result<ExitStatus, RuntimeError> {
        let info = self.inspect(id)?;
        if info.status == ContainerStatus::Stopped {
            return self.wait(id, None);
        }
        let _ = self.signal(id, libc::SIGTERM);
        match self.wait(id, Some(grace)) {
            Ok(s) => Ok(s),
            Err(RuntimeError::Timeout { .. }) => {
                let _ = self.signal(id, libc::SIGKILL);
                self.wait(id, Some(Duration::from_secs(10)))
            }
            Err(e) => Err(e),
        }
    }

    /// Removes a stopped container (`force` kills a running one first): cgroup, state, logs.
    pub fn remove(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        let (sd, cfg) = self.existing(id)?;
        // The container's init records the exit status just before it exits itself: a
        // container reported stopped may still have its init for a moment. Give it that moment.
        if !force && self.inspect(id)?.status == ContainerStatus::Stopped {
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while self.live_pid(&sd)?.is_some() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if let Some(pid) = self.live_pid(&sd)? {
            if !force {
                return Err(RuntimeError::InvalidState {
                    id: id.into(),
                    status: self.inspect(id)?.status,
                    hint: "stop it first or remove with force",
                });
            }
            if let Ok(pfd) = sys::pidfd_open(pid) {
                let _ = sys::pidfd_send_signal(pfd.as_raw_fd(), libc::SIGKILL);
            }
            let _ = self.wait(id, Some(Duration::from_secs(10)));
        }
        self.cleanup(&sd, Some(&cfg))
    }

    fn cleanup(&self, sd: &StateDir, cfg: Option<&StoredConfig>) -> Result<(), RuntimeError> {
        let id = sd
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let parent = cfg.map_or(self.cfg.cgroup_parent.as_str(), |c| &c.cgroup_parent);
        Cgroup::new(self.hierarchy.clone(), parent, &id).remove()?;
        match fs::remove_dir_all(&sd.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ioe(&sd.dir)(e)),
        }
    }

    /// Runs a command inside a running container (for health checks) and collects its output.
    pub fn exec(&self, id: &str, spec: ExecSpec) -> Result<ExecOutput, RuntimeError> {
        let (sd, _) = self.existing(id)?;
        if self.inspect(id)?.status != ContainerStatus::Running {
            return Err(RuntimeError::InvalidState {
                id: id.into(),
                status: self.inspect(id)?.status,
                hint: "exec needs a running container",
            });
        }
        let req = ExecRequest {
            args: spec.args,
            env: spec.env,
            user: spec.user,
            cwd: spec.cwd,
        };
        let helper = self.helper()?;
        let mut child = Command::new(helper.exec_path())
            .arg(INIT_ARG)
            .arg("exec")
            .arg(&sd.dir)
            .arg(serde_json::to_string(&req).expect("exec request serializes"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| RuntimeError::Helper {
                path: helper.exec_path(),
                source,
            })?;
        let mut out = child.stdout.take().expect("piped");
        let mut err = child.stderr.take().expect("piped");
        let t_out = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = out.read_to_end(&mut v);
            v
        });
        let t_err = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = err.read_to_end(&mut v);
            v
        });
        let start = Instant::now();
        let mut timed_out = false;
        let status = loop {
            if let Some(s) = child.try_wait().map_err(ioe(&sd.dir))? {
                break s;
            }
            if spec.timeout.is_some_and(|t| start.elapsed() > t) {
                timed_out = true;
                let _ = child.kill();
                break child.wait().map_err(ioe(&sd.dir))?;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        use std::os::unix::process::ExitStatusExt;
        let code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        Ok(ExecOutput {
            code,
            stdout: t_out.join().unwrap_or_default(),
            stderr: t_err.join().unwrap_or_default(),
            timed_out,
        })
    }

    /// Log entries so far (last `tail` when given).
    pub fn logs(&self, id: &str, tail: Option<usize>) -> Result<Vec<LogEntry>, RuntimeError> {
        let (sd, _) = self.existing(id)?;
        Ok(logs::read_log(&sd.log(), tail)?)
    }

    /// Follows the log until the container stops (blocking iterator).
    pub fn follow_logs(&self, id: &str, tail: Option<usize>) -> Result<LogFollower, RuntimeError> {
        let (sd, _) = self.existing(id)?;
        let exit = sd.exit();
        Ok(LogFollower::open(
            &sd.log(),
            tail,
            Box::new(move || exit.exists()),
        )?)
    }

    /// cgroup usage of a container.
    pub fn stats(&self, id: &str) -> Result<ContainerStats, RuntimeError> {
        let (_, cfg) = self.existing(id)?;
        Ok(self.cgroup(&cfg).stats())
    }

    /// The image layers (overlay lower dirs) of one container, lowest first; empty for a
    /// container on a plain directory.
    pub fn lower_dirs(&self, id: &str) -> Result<Vec<PathBuf>, RuntimeError> {
        let (_, cfg) = self.existing(id)?;
        Ok(match cfg.spec.rootfs {
            RootfsSpec::Layers { lower } => lower,
            _ => Vec::new(),
        })
    }

    /// Lower dirs used by existing containers (pass to `ImageStore::gc`).
    pub fn layers_in_use(&self) -> Result<HashSet<PathBuf>, RuntimeError> {
        let mut set = HashSet::new();
        for c in self.list()? {
            let (_, cfg) = self.existing(&c.id)?;
            if let RootfsSpec::Layers { lower } = cfg.spec.rootfs {
                set.extend(lower);
            }
        }
        Ok(set)
    }
}
