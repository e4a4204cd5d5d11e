//! On-disk state of a container, the only thing that survives the supervising process:
//! `<root>/containers/<id>/` holds `config.json` (the spec), `state.json` (init pid and its
//! start time, written once the container is created), `exit.json` (written by the container's
//! init when the workload exits), `start.fifo` (until started), `container.log`, `init.err`,
//! and `upper/`, `work/`, `rootfs/` for overlay rootfs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::spec::ContainerSpec;

/// Errors reading or writing state files.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: invalid state file: {source}; remove the container with --force")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// What the runtime writes to `config.json`: the spec plus where its cgroup lives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredConfig {
    pub spec: ContainerSpec,
    pub cgroup_dirs: Vec<PathBuf>,
    pub cgroup_parent: String,
    pub bundle: Option<PathBuf>,
    pub created: String,
}

/// Written by the create helper once the container init is ready.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct InitState {
    pub pid: i32,
    pub start_time: u64,
    /// The descriptor number, in the init, of the workload's user namespace (`exec` opens
    /// `/proc/<pid>/fd/<n>` to join it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns_fd: Option<i32>,
}

/// Written by the container init right before it exits (write, then rename into place), so
/// once the init is gone the record is there — or it never will be: then the runtime records
/// either the SIGKILL it sent itself (a created container killed before start) or, for an
/// init that died without writing it, an explicit "exit status lost" ([`EXIT_STATUS_LOST`]).
/// The runtime's records never replace one that exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub finished: String,
    #[serde(default)]
    pub oom_killed: bool,
    #[serde(default)]
    pub error: Option<String>,
}

/// The `error` of an exit record written for an init that ended without recording its exit.
pub const EXIT_STATUS_LOST: &str =
    "exit status lost: the container's init ended without recording it (killed from outside the runtime?)";

/// Paths of one container's state dir.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: PathBuf) -> Self {
        StateDir { dir }
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    pub fn init_state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn exit(&self) -> PathBuf {
        self.dir.join("exit.json")
    }
    pub fn fifo(&self) -> PathBuf {
        self.dir.join("start.fifo")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("container.log")
    }
    pub fn init_err(&self) -> PathBuf {
        self.dir.join("init.err")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    pub fn started_marker(&self) -> PathBuf {
        self.dir.join("started")
    }
}

/// Writes JSON atomically (tmp + rename).
pub fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<(), StateError> {
    let tmp = path.with_extension("tmp");
    let b = serde_json::to_vec(v).expect("state serializes");
    fs::write(&tmp, b).map_err(|source| StateError::Io {
        path: tmp.clone(),
        source,
    })?;
    fs::rename(&tmp, path).map_err(|source| StateError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes JSON durably unless `path` already exists: `Ok(false)` (and nothing written) when it
/// does. For records that must never replace what another writer put there first.
pub fn write_json_new<T: Serialize>(path: &Path, v: &T) -> Result<bool, StateError> {
    use std::io::Write;
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp.{}.{n}", std::process::id()));
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StateError::Io { path, source }
    };
    let b = serde_json::to_vec(v).expect("state serializes");
    let res = fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&b))
        .map_err(io_err(&tmp))
        .and_then(|_| match crate::sys::rename_noreplace(&tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_err(path)(e)),
        });
    if !matches!(res, Ok(true)) {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Reads JSON; `Ok(None)` when the file does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| StateError::Json {
                path: path.to_path_buf(),
                source,
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}
