//! The runtime-level container spec (what the agent asks for) and the pure merge rules that turn
//! an image config plus task overrides into the process to run (Docker semantics).
//!
//! Everything here is plain data and pure functions: serialized into the container's state dir
//! and read back by the init process, and unit-tested without root.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::image::ImageConfig;

pub use crate::image::DEFAULT_PATH;

/// Errors of spec validation and merging.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("invalid container id {id:?}: use 1-64 characters from [A-Za-z0-9_.-], not starting with '.'")]
    InvalidId { id: String },
    #[error("no command to run: the image has no Entrypoint/Cmd and the task sets none")]
    NoCommand,
    #[error("invalid {what} {path:?}: must be an absolute path without `..` components")]
    InvalidPath { what: &'static str, path: String },
    #[error(
        "workdir {path:?} is not allowed: it points into /proc, which could reach host resources"
    )]
    ProcWorkdir { path: String },
    #[error("invalid user {user:?}: {reason}")]
    InvalidUser { user: String, reason: String },
    #[error("invalid environment entry {entry:?}: expected KEY=VALUE")]
    InvalidEnv { entry: String },
    #[error(transparent)]
    Options(#[from] crate::options::OptionsError),
    #[error("bind source {path:?} does not exist on this host: create it first (bind sources are never created implicitly)")]
    MissingBindSource { path: String },
    #[error("{0}")]
    Console(&'static str),
    #[error("{0}")]
    Update(&'static str),
    #[error(transparent)]
    UserNamespace(#[from] crate::userns::UsernsError),
    #[error("a privileged container cannot run in a user namespace: run it in the host's (Docker: --userns=host)")]
    PrivilegedUserns,
    #[error("layers_remapped needs a user_namespace: chowned layer copies belong to its ids")]
    RemappedLayersWithoutUserns,
}

/// Where the container's root filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RootfsSpec {
    /// Overlayfs of unpacked image layers (lowest first); upper/work dirs live in the state dir.
    Layers { lower: Vec<PathBuf> },
    /// An existing directory (OCI bundle rootfs), bind-mounted.
    Directory { path: PathBuf, readonly: bool },
}

/// Network mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// A private network namespace with only `lo` (up).
    #[default]
    None,
    /// Share the host's network namespace.
    Host,
}

/// What happens to the container's stdout/stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StdioMode {
    /// Captured by the container init into a timestamped log file in the state dir.
    #[default]
    Log,
    /// Inherited from the process that creates the container (runc-style foreground `run`).
    Inherit,
    /// A terminal: the workload's stdin, stdout and stderr are the slave of a pty from the
    /// container's own devpts, whose master is sent during create to the unix socket
    /// `ContainerSpec::console_socket` (runc's `--console-socket`; the receiver, e.g.
    /// containerd's shim, does the I/O and the resizing).
    Console,
}

/// Mount propagation of a bind mount (Docker's `bind-propagation`; default `rprivate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Propagation {
    Private,
    #[default]
    Rprivate,
    Shared,
    Rshared,
    Slave,
    Rslave,
}

impl Propagation {
    /// The `mount(2)` flags that set this propagation.
    pub fn flags(self) -> libc::c_ulong {
        match self {
            Propagation::Private => libc::MS_PRIVATE,
            Propagation::Rprivate => libc::MS_PRIVATE | libc::MS_REC,
            Propagation::Shared => libc::MS_SHARED,
            Propagation::Rshared => libc::MS_SHARED | libc::MS_REC,
            Propagation::Slave => libc::MS_SLAVE,
            Propagation::Rslave => libc::MS_SLAVE | libc::MS_REC,
        }
    }
}

/// An extra mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum MountSpec {
    Bind {
        source: PathBuf,
        destination: PathBuf,
        readonly: bool,
        #[serde(default)]
        propagation: Propagation,
        /// When the source is an empty directory, first copy what the rootfs holds at the
        /// destination into it (Docker's volume population; `volume-nocopy` turns it off).
        #[serde(default)]
        copy_up: bool,
    },
    Tmpfs {
        destination: PathBuf,
        size_bytes: Option<u64>,
        mode: Option<u32>,
    },
}

impl MountSpec {
    pub fn destination(&self) -> &Path {
        match self {
            MountSpec::Bind { destination, .. } | MountSpec::Tmpfs { destination, .. } => {
                destination
            }
        }
    }
}

/// Resource limits; `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Resources {
    pub memory_bytes: Option<u64>,
    /// CPU quota in microseconds per `cpu_period_us` (default period 100 ms).
    pub cpu_quota_us: Option<u64>,
    pub cpu_period_us: Option<u64>,
    pub pids_max: Option<u64>,
}

impl Resources {
    /// Docker's `--cpus` equivalent.
    pub fn with_cpus(mut self, cpus: f64) -> Self {
        let period = 100_000u64;
        self.cpu_period_us = Some(period);
        self.cpu_quota_us = Some((cpus * period as f64).round() as u64);
        self
    }
}

/// The fully resolved process of a container.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProcessSpec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    /// `user`, `uid`, `user:group` or `uid:gid`; resolved against the container's /etc/passwd.
    pub user: String,
}

/// Task-level overrides of an image config (Docker `run` semantics).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProcessOverrides {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    /// `KEY=VALUE` entries; they replace image entries with the same key.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
}

/// Everything the runtime needs to create a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub id: String,
    pub rootfs: RootfsSpec,
    pub process: ProcessSpec,
    pub hostname: Option<String>,
    #[serde(default)]
    pub mounts: Vec<MountSpec>,
    #[serde(default)]
    pub network: NetworkMode,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub stdio: StdioMode,
    /// Where a `Console` container's pty master goes (a listening unix socket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_socket: Option<PathBuf>,
    /// Mount the rootfs read-only.
    #[serde(default)]
    pub readonly_rootfs: bool,
    /// Free-form labels, stored with the container (e.g. the agent's task id).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Capabilities, ulimits, sysctls, groups, oom score, tty, /etc files.
    #[serde(default)]
    pub options: crate::options::ContainerOptions,
    /// Run the workload in a user namespace with these maps (`swarmd --userns-remap`, OCI
    /// `linux.uidMappings`); image layers are then mounted idmapped through it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_namespace: Option<crate::userns::IdMap>,
    /// The layers already belong to the user namespace's ids (chowned copies, from
    /// `ImageStore::remapped_layers`, where idmapped mounts do not work): mounted as they are.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub layers_remapped: bool,
}

impl ContainerSpec {
    /// A spec with defaults for everything but id, rootfs and process.
    pub fn new(id: impl Into<String>, rootfs: RootfsSpec, process: ProcessSpec) -> Self {
        ContainerSpec {
            id: id.into(),
            rootfs,
            process,
            hostname: None,
            mounts: Vec::new(),
            network: NetworkMode::None,
            resources: Resources::default(),
            stdio: StdioMode::Log,
            console_socket: None,
            readonly_rootfs: false,
            labels: Default::default(),
            options: Default::default(),
            user_namespace: None,
            layers_remapped: false,
        }
    }

    /// Checks ids and paths; called by the runtime before anything touches the system.
    pub fn validate(&self) -> Result<(), SpecError> {
        validate_id(&self.id)?;
        if self.process.args.is_empty() {
            return Err(SpecError::NoCommand);
        }
        validate_workdir(&self.process.cwd)?;
        for e in &self.process.env {
            if !e.contains('=') || e.starts_with('=') {
                return Err(SpecError::InvalidEnv { entry: e.clone() });
            }
        }
        parse_user(&self.process.user)?;
        self.options.validate(self.network == NetworkMode::Host)?;
        if let Some(map) = &self.user_namespace {
            map.validate()?;
            if self.options.privileged {
                return Err(SpecError::PrivilegedUserns);
            }
        } else if self.layers_remapped {
            return Err(SpecError::RemappedLayersWithoutUserns);
        }
        match (self.stdio, &self.console_socket) {
            (StdioMode::Console, None) => return Err(SpecError::Console(
                "a terminal needs a console socket to send its master to (--console-socket)",
            )),
            (StdioMode::Console, Some(_)) | (_, None) => {}
            (_, Some(_)) => return Err(SpecError::Console(
                "a console socket is only used by a container with a terminal (process.terminal = true)",
            )),
        }
        for m in &self.mounts {
            let d = m.destination().to_string_lossy().to_string();
            clean_container_path(&d).ok_or(SpecError::InvalidPath {
                what: "mount destination",
                path: d.clone(),
            })?;
            if let MountSpec::Bind { source, .. } = m {
                if !source.is_absolute() {
                    return Err(SpecError::InvalidPath {
                        what: "bind source",
                        path: source.display().to_string(),
                    });
                }
                if std::fs::metadata(source).is_err() {
                    return Err(SpecError::MissingBindSource {
                        path: source.display().to_string(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Container ids double as directory and cgroup names: keep them boring.
pub fn validate_id(id: &str) -> Result<(), SpecError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(SpecError::InvalidId { id: id.into() })
    }
}

pub use crate::paths::clean_container_path;

/// A workdir must be a clean absolute path outside /proc (`/proc/self/fd/N` could name a host
/// directory fd: CVE-2024-21626).
pub fn validate_workdir(cwd: &str) -> Result<PathBuf, SpecError> {
    let p = clean_container_path(cwd).ok_or(SpecError::InvalidPath {
        what: "workdir",
        path: cwd.into(),
    })?;
    if p.starts_with("/proc") {
        return Err(SpecError::ProcWorkdir { path: cwd.into() });
    }
    Ok(p)
}

/// Merges `KEY=VALUE` lists: later entries replace earlier ones with the same key, order kept.
pub fn merge_env(base: &[String], overrides: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in base.iter().chain(overrides) {
        let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
        if let Some(slot) = out
            .iter_mut()
            .find(|x| x.split_once('=').map_or(x.as_str(), |(k, _)| k) == key)
        {
            *slot = e.clone();
        } else {
            out.push(e.clone());
        }
    }
    out
}

/// Docker's rules: an overridden entrypoint drops the image's cmd unless a cmd is given too;
/// env merged by key; PATH defaulted; workdir defaults to `/`; user to root.
pub fn resolve_process(
    image: &ImageConfig,
    o: &ProcessOverrides,
) -> Result<ProcessSpec, SpecError> {
    let entrypoint = o
        .entrypoint
        .clone()
        .or_else(|| image.entrypoint.clone())
        .unwrap_or_default();
    let cmd = match (&o.cmd, &o.entrypoint) {
        (Some(c), _) => c.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => image.cmd.clone().unwrap_or_default(),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    let mut env = merge_env(&image.env, &o.env);
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    let cwd = o
        .workdir
        .clone()
        .or_else(|| image.working_dir.clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    validate_workdir(&cwd)?;
    let user = o
        .user
        .clone()
        .or_else(|| image.user.clone())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "0".into());
    parse_user(&user)?;
    Ok(ProcessSpec {
        args,
        env,
        cwd,
        user,
    })
}

mod user;
pub use user::*;

#[cfg(test)]
mod tests {
    use super::*;

    fn img() -> ImageConfig {
        ImageConfig {
            user: Some("app".into()),
            env: vec!["PATH=/bin".into(), "A=1".into()],
            entrypoint: Some(vec!["/entry".into()]),
            cmd: Some(vec!["serve".into()]),
            working_dir: Some("/srv".into()),
            healthcheck: None,
            ..Default::default()
        }
    }

    #[test]
    fn image_defaults_apply() {
        let p = resolve_process(&img(), &ProcessOverrides::default()).unwrap();
        assert_eq!(p.args, vec!["/entry", "serve"]);
        assert_eq!(p.cwd, "/srv");
        assert_eq!(p.user, "app");
        assert_eq!(p.env, vec!["PATH=/bin", "A=1"]);
    }

    #[test]
    fn entrypoint_override_drops_image_cmd() {
        let o = ProcessOverrides {
            entrypoint: Some(vec!["/bin/sh".into()]),
            ..Default::default()
        };
        assert_eq!(resolve_process(&img(), &o).unwrap().args, vec!["/bin/sh"]);
        let o = ProcessOverrides {
            cmd: Some(vec!["x".into()]),
            env: vec!["A=2".into(), "B=3".into()],
            ..Default::default()
        };
        let p = resolve_process(&img(), &o).unwrap();
        assert_eq!(p.args, vec!["/entry", "x"]);
        assert_eq!(p.env, vec!["PATH=/bin", "A=2", "B=3"]);
    }

    #[test]
    fn defaults_path_workdir_and_user() {
        let o = ProcessOverrides {
            cmd: Some(vec!["true".into()]),
            ..Default::default()
        };
        let p = resolve_process(&ImageConfig::default(), &o).unwrap();
        assert_eq!(p.env[0], format!("PATH={DEFAULT_PATH}"));
        assert_eq!(p.cwd, "/");
        assert_eq!(p.user, "0");
        assert!(matches!(
            resolve_process(&ImageConfig::default(), &ProcessOverrides::default()),
            Err(SpecError::NoCommand)
        ));
    }

    #[test]
    fn workdir_rules() {
        assert!(validate_workdir("/proc/self/fd/7").is_err());
        assert!(validate_workdir("/a/../../etc").is_err());
        assert!(validate_workdir("relative").is_err());
        assert_eq!(validate_workdir("/a/./b/").unwrap(), PathBuf::from("/a/b"));
    }

    #[test]
    fn ids() {
        assert!(validate_id("web.1_abc-2").is_ok());
        for bad in ["", "../x", ".hidden", "a/b", &"x".repeat(65)] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_merge_keeps_order_and_replaces() {
        let m = merge_env(&["A=1".into(), "B=2".into()], &["B=3".into(), "C=4".into()]);
        assert_eq!(m, vec!["A=1", "B=3", "C=4"]);
    }
}
