//! The lifecycle API the agent uses: [`Runtime`] over a state root.
//!
//! Invariants:
//! - All container state lives under `<root>/containers/<id>/` ([`crate::state`]); a new
//!   `Runtime` on the same root sees every container again (re-adoption), with exit status and
//!   logs, because the container's own init writes them there.
//! - Containers are started only by spawning the helper binary (a sealed memfd copy, see
//!   [`crate::selfexe`]) with `std::process::Command`: safe from a multi-threaded tokio process.
//! - The init pid is always checked together with its start time, so a recycled pid is never
//!   signalled; whether the init runs is decided by its pidfd, never by a failed read of
//!   `/proc` (which a loaded host turns into `EMFILE`).
//! - Once the init is gone its exit record is on disk, or it never will be (the init writes it
//!   before exiting): no clock decides a container's outcome. An init that died without
//!   recording is reported as "exit status lost", explicitly.
//! - Calls block (at most for the timeouts given); call them from `spawn_blocking` in async
//!   code. Nothing needs a thread per container: [`Runtime::init_pidfd`] gives a pidfd to wait
//!   on with epoll. The API knows nothing about tasks or services.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cgroup::{self, Cgroup, CgroupError, CgroupStats, Hierarchy};
use crate::init::{ExecRequest, INIT_ARG};
use crate::logs::{self, LogEntry, LogError, LogFollower};
use crate::selfexe::SealedExe;
use crate::spec::{ContainerSpec, RootfsSpec, SpecError};
use crate::state::{
    self, ExitRecord, InitState, StateDir, StateError, StoredConfig, EXIT_STATUS_LOST,
};
use crate::sys;

mod create;
mod exec;
mod pause;
mod stop;
mod update;

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
    #[error("cannot tell whether the init (pid {pid}) of container {id:?} runs: {source}")]
    InitProbe {
        id: String,
        pid: i32,
        source: io::Error,
    },
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
    /// Protect the helper binary with a read-only bind mount in a private mount namespace of
    /// this process instead of a sealed memfd copy ([`SealedExe::read_only_self`]): for a
    /// short-lived single-threaded caller (the CLI), where the copy would be paid per call.
    /// Falls back to the copy when the mount namespace cannot be made.
    pub helper_read_only_bind: bool,
}

impl RuntimeConfig {
    pub fn new(root: impl Into<PathBuf>, cgroup_parent: impl Into<String>) -> Self {
        RuntimeConfig {
            root: root.into(),
            cgroup_parent: cgroup_parent.into(),
            helper_binary: None,
            helper_read_only_bind: false,
        }
    }
}

/// Lifecycle status, runc's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStatus {
    Created,
    Running,
    /// Running, with every process frozen (`pause`).
    Paused,
    Stopped,
}

impl std::fmt::Display for ContainerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ContainerStatus::Created => "created",
            ContainerStatus::Running => "running",
            ContainerStatus::Paused => "paused",
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

/// The record for an init that is gone without having written one: the OOM killer's doing
/// when the cgroup counted a kill, otherwise unknown — said so, never guessed.
fn lost_exit(oom_killed: bool) -> ExitRecord {
    let finished = crate::timefmt::rfc3339_now();
    if oom_killed {
        ExitRecord {
            code: None,
            signal: Some(libc::SIGKILL),
            finished,
            oom_killed,
            error: None,
        }
    } else {
        ExitRecord {
            code: Some(255),
            signal: None,
            finished,
            oom_killed,
            error: Some(EXIT_STATUS_LOST.into()),
        }
    }
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
    /// Detached exec: the helper writes the command's host pid here and exits once the
    /// command runs; whoever spawned the helper (a subreaper) reaps the command.
    pub detach_pid_file: Option<PathBuf>,
    /// Run the command on a terminal whose master is sent to this unix socket (runc's
    /// `exec --tty --console-socket`).
    pub console_socket: Option<PathBuf>,
}

/// Result of [`Runtime::exec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub timed_out: bool,
}

/// A container's init process as the kernel reports it.
enum Init {
    /// No `state.json`: the create helper has not reported an init (creating, or a failed
    /// create).
    Unknown,
    /// Running, or created and waiting for `start`. The pidfd is that very process: it was
    /// opened first and the start time checked afterwards.
    Alive { pid: i32, pidfd: OwnedFd },
    /// Exited (a zombie or reaped): whatever it wrote is on disk, and it writes nothing more.
    Gone,
}

/// How long a stop waits for the init after killing the workload, and again after killing
/// the init itself.
pub const KILL_WAIT: Duration = Duration::from_secs(10);

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
        let bound = (self.cfg.helper_read_only_bind && self.cfg.helper_binary.is_none())
            .then(SealedExe::read_only_self)
            .and_then(|r| {
                r.map_err(
                    |e| tracing::debug!(error = %e, "no read-only bind of the binary; copying it"),
                )
                .ok()
            });
        let h = match bound {
            Some(h) => h,
            None => SealedExe::copy_of(&exe).map_err(|source| RuntimeError::Helper {
                path: exe.clone(),
                source,
            })?,
        };
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

    /// Records the exit of an init that is gone without having recorded it, unless a record
    /// exists by now; returns the record that is on disk.
    fn record_exit_once(&self, sd: &StateDir, rec: ExitRecord) -> Result<ExitRecord, RuntimeError> {
        if state::write_json_new(&sd.exit(), &rec)? {
            return Ok(rec);
        }
        Ok(state::read_json(&sd.exit())?.unwrap_or(rec))
    }

    fn to_exit_status(&self, rec: &ExitRecord, cg: &Cgroup) -> ExitStatus {
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
        // The init first, then its record: a record missing after the init was seen gone can
        // never appear any more (the init writes it before exiting).
        let init = self.init(&sd, id)?;
        let exit: Option<ExitRecord> = state::read_json(&sd.exit())?;
        let pid = match &init {
            Init::Alive { pid, .. } => *pid,
            _ => 0,
        };
        let status = match (&init, &exit) {
            (Init::Alive { .. }, None) if sd.fifo().exists() => ContainerStatus::Created,
            (Init::Alive { .. }, None) if cg.frozen() => ContainerStatus::Paused,
            (Init::Alive { .. }, None) => ContainerStatus::Running,
            _ => ContainerStatus::Stopped,
        };
        let exit = match (exit, &init) {
            (Some(r), _) => Some(r),
            (None, Init::Gone) => Some(self.record_exit_once(&sd, lost_exit(cg.oom_kills() > 0))?),
            (None, _) => None,
        }
        .filter(|_| status == ContainerStatus::Stopped)
        .map(|r| self.to_exit_status(&r, &cg));
        Ok(ContainerInfo {
            id: id.into(),
            status,
            pid,
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

    /// Waits until the container stopped; `None` timeout waits forever. Blocks the calling
    /// thread: code that waits for many containers uses [`Runtime::init_pidfd`] instead.
    pub fn wait(&self, id: &str, timeout: Option<Duration>) -> Result<ExitStatus, RuntimeError> {
        let (sd, _) = self.existing(id)?;
        if let Init::Alive { pidfd, .. } = self.init(&sd, id)? {
            let ms = timeout.map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as i32);
            if !sys::poll_readable(pidfd.as_raw_fd(), ms).map_err(ioe(&sd.init_state()))? {
                return Err(RuntimeError::Timeout {
                    id: id.into(),
                    after: timeout.unwrap_or_default(),
                });
            }
        }
        self.exit_status(id)
    }

    /// A pidfd on the container's init while it runs (or waits for `start`); `None` once it
    /// is gone. The fd becomes readable when the init exits: register it with epoll (tokio's
    /// `AsyncFd`) to wait for any number of containers without a thread each, then ask
    /// [`Runtime::exit_status`], which answers at once.
    pub fn init_pidfd(&self, id: &str) -> Result<Option<OwnedFd>, RuntimeError> {
        let (sd, _) = self.existing(id)?;
        Ok(match self.init(&sd, id)? {
            Init::Alive { pidfd, .. } => Some(pidfd),
            Init::Gone | Init::Unknown => None,
        })
    }

    /// How a stopped container ended: what its init recorded, or an explicit "exit status
    /// lost" record when the init died without recording (the same answer on every call).
    /// An error while the container runs or when it never got an init.
    pub fn exit_status(&self, id: &str) -> Result<ExitStatus, RuntimeError> {
        let info = self.inspect(id)?;
        info.exit.ok_or(RuntimeError::InvalidState {
            id: id.into(),
            status: info.status,
            hint: if info.status == ContainerStatus::Stopped {
                "it never had an init (its create failed or is still running)"
            } else {
                "it has not exited yet; wait for it first"
            },
        })
    }

    /// The json-file log of container `id` (it may not exist).
    pub fn log_path(&self, id: &str) -> Result<PathBuf, RuntimeError> {
        Ok(self.state_dir(id)?.log())
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

    /// The limits a container has now (as created, then updated).
    pub fn resources(&self, id: &str) -> Result<crate::spec::Resources, RuntimeError> {
        Ok(self.existing(id)?.1.spec.resources)
    }

    /// The overlay upper directory of a container on image layers: everything it wrote,
    /// replaced and deleted (`image::diff::write_layer` turns it into a layer); `None` for a
    /// container on a plain directory.
    pub fn upper_dir(&self, id: &str) -> Result<Option<PathBuf>, RuntimeError> {
        let (sd, cfg) = self.existing(id)?;
        Ok(matches!(cfg.spec.rootfs, RootfsSpec::Layers { .. }).then(|| sd.upper()))
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
