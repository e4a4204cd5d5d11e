//! Node-local named volumes (Docker's `local` driver): a directory per volume under
//! `<state>/volumes/<name>/_data`, created on the first task that mounts it and kept across
//! task replacements until removed. With `volume-opt` (`type`, `device`, `o`) the volume's
//! directory is a mount of that filesystem, made on creation and undone on removal.
//!
//! A volume is "in use" while any container on this node (running or not yet removed) has it
//! mounted; removal refuses such a volume. Containers name their volumes in the
//! [`VOLUMES_LABEL`] label. Creations hold the gate shared from resolving a volume until the
//! container exists; removals hold it exclusively, so no volume disappears under a task
//! being created.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use swarm_runtime::Runtime;
use swarm_types::container::{validate_volume_name, Mount};

/// Container label listing the volumes it mounts (comma-separated).
pub const VOLUMES_LABEL: &str = "swarm.volumes";

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("no such volume: {0}")]
    NotFound(String),
    #[error("volume {name} is in use by {count} container{s} ({first}): remove the tasks using it first", s = if *count == 1 { "" } else { "s" })]
    InUse {
        name: String,
        count: usize,
        first: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("volume {name}: {what}: {source}")]
    Io {
        name: String,
        what: String,
        source: std::io::Error,
    },
    #[error("volume {name} exists with other driver options ({have}); remove it first or use the same options")]
    OptionsDiffer { name: String, have: String },
    #[error("{0}")]
    Runtime(String),
}

/// What `volume.json` records (Docker's `volume inspect` fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMeta {
    pub name: String,
    pub driver: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub created_at: String,
}

/// A volume as listed: its record, where its data is, and the containers using it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub meta: VolumeMeta,
    pub mountpoint: PathBuf,
    pub used_by: Vec<String>,
}

pub struct Volumes {
    root: PathBuf,
    runtime: Arc<Runtime>,
    gate: tokio::sync::RwLock<()>,
    /// Host uid and gid new volumes' roots belong to (the remapped root under
    /// `--userns-remap`; root otherwise).
    owner: std::sync::Mutex<(u32, u32)>,
}

fn io(name: &str, what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VolumeError {
    let (name, what) = (name.to_string(), what.into());
    move |source| VolumeError::Io { name, what, source }
}

/// `mount(2)` flags and data of the local driver's `o` option.
fn mount_flags(o: &str) -> (libc::c_ulong, String) {
    let mut flags = 0;
    let mut data = Vec::new();
    for part in o.split(',').filter(|p| !p.is_empty()) {
        match part {
            "ro" => flags |= libc::MS_RDONLY,
            "rw" => {}
            "nosuid" => flags |= libc::MS_NOSUID,
            "nodev" => flags |= libc::MS_NODEV,
            "noexec" => flags |= libc::MS_NOEXEC,
            "bind" => flags |= libc::MS_BIND,
            "rbind" => flags |= libc::MS_BIND | libc::MS_REC,
            "sync" => flags |= libc::MS_SYNCHRONOUS,
            "noatime" => flags |= libc::MS_NOATIME,
            other => data.push(other.to_string()),
        }
    }
    (flags, data.join(","))
}

impl Volumes {
    pub fn new(state_dir: &Path, runtime: Arc<Runtime>) -> Arc<Self> {
        Arc::new(Volumes {
            root: state_dir.join("volumes"),
            runtime,
            gate: tokio::sync::RwLock::new(()),
            owner: std::sync::Mutex::new((0, 0)),
        })
    }

    /// New volumes' roots belong to `uid:gid` (the container root's host ids).
    pub fn set_owner(&self, uid: u32, gid: u32) {
        *self.owner.lock().unwrap_or_else(|e| e.into_inner()) = (uid, gid);
    }

    fn chown_root(&self, name: &str, data: &Path) -> Result<(), VolumeError> {
        let (uid, gid) = *self.owner.lock().unwrap_or_else(|e| e.into_inner());
        if (uid, gid) == (0, 0) {
            return Ok(());
        }
        std::os::unix::fs::lchown(data, Some(uid), Some(gid))
            .map_err(io(name, "give its root to the remapped root"))
    }

    /// Held by a container creation from [`Volumes::ensure`] until the container exists.
    pub async fn shared(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().await
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The data directory of the volume a mount names, creating the volume (and mounting its
    /// driver options) when this is its first use on this node. Blocking.
    pub fn ensure(&self, m: &Mount) -> Result<PathBuf, VolumeError> {
        let name = m.source.as_str();
        validate_volume_name(name).map_err(VolumeError::Invalid)?;
        let dir = self.dir(name);
        let data = dir.join("_data");
        if let Some(meta) = self.read_meta(name)? {
            if !m.volume_options.is_empty() && meta.options != m.volume_options {
                return Err(VolumeError::OptionsDiffer {
                    name: name.into(),
                    have: format!("{:?}", meta.options),
                });
            }
            self.mount_options(&meta, &data)?;
            return Ok(data);
        }
        std::fs::create_dir_all(&self.root).map_err(io(name, "create the volumes dir"))?;
        // Built under a temporary name and renamed into place: a volume either exists whole
        // or not at all.
        let tmp = self
            .root
            .join(format!(".new-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(tmp.join("_data")).map_err(io(name, "create its directory"))?;
        self.chown_root(name, &tmp.join("_data"))?;
        let meta = VolumeMeta {
            name: name.into(),
            driver: "local".into(),
            labels: m.volume_labels.clone(),
            options: m.volume_options.clone(),
            created_at: swarm_runtime::timefmt::rfc3339_now(),
        };
        let body = serde_json::to_vec_pretty(&meta).expect("volume meta serializes");
        std::fs::write(tmp.join("volume.json"), body).map_err(io(name, "write volume.json"))?;
        match std::fs::rename(&tmp, &dir) {
            Ok(()) => {}
            // Created meanwhile by another task: use that one.
            Err(_) if dir.join("volume.json").exists() => {
                let _ = std::fs::remove_dir_all(&tmp);
            }
            Err(e) => return Err(io(name, "create it")(e)),
        }
        self.mount_options(&meta, &data)?;
        if meta.options.contains_key("type") {
            // A driver's filesystem is mounted over `_data`: its root is the one containers see.
            self.chown_root(name, &data)?;
        }
        tracing::info!(volume = name, "volume created");
        Ok(data)
    }

    /// Mounts the driver options over `_data` unless already mounted there.
    fn mount_options(&self, meta: &VolumeMeta, data: &Path) -> Result<(), VolumeError> {
        let (Some(fstype), Some(device)) = (meta.options.get("type"), meta.options.get("device"))
        else {
            return Ok(());
        };
        if is_mountpoint(data) {
            return Ok(());
        }
        let (flags, opts) = mount_flags(meta.options.get("o").map_or("", String::as_str));
        let fstype = (fstype != "none").then_some(fstype.as_str());
        swarm_runtime::sys::mount(
            Some(Path::new(device)),
            data,
            fstype,
            flags | libc::MS_NODEV | libc::MS_NOSUID,
            (!opts.is_empty()).then_some(opts.as_str()),
        )
        .map_err(io(&meta.name, format!("mount {device} ({fstype:?})")))
    }

    fn read_meta(&self, name: &str) -> Result<Option<VolumeMeta>, VolumeError> {
        match std::fs::read(self.dir(name).join("volume.json")) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| VolumeError::Invalid(format!("volume {name}: bad volume.json: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(name, "read volume.json")(e)),
        }
    }

    /// Container ids by volume name.
    fn users(&self) -> Result<BTreeMap<String, Vec<String>>, VolumeError> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for c in self
            .runtime
            .list()
            .map_err(|e| VolumeError::Runtime(e.to_string()))?
        {
            if let Some(v) = c.labels.get(VOLUMES_LABEL) {
                for n in v.split(',').filter(|n| !n.is_empty()) {
                    out.entry(n.to_string()).or_default().push(c.id.clone());
                }
            }
        }
        Ok(out)
    }

    /// Every volume of this node, by name. Blocking.
    pub fn list(&self) -> Result<Vec<VolumeInfo>, VolumeError> {
        let users = self.users()?;
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io("*", "list volumes")(e)),
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue;
            }
            if let Some(meta) = self.read_meta(&name)? {
                out.push(VolumeInfo {
                    mountpoint: self.dir(&name).join("_data"),
                    used_by: users.get(&name).cloned().unwrap_or_default(),
                    meta,
                });
            }
        }
        out.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        Ok(out)
    }

    /// The named volumes (all must exist). Blocking.
    pub fn inspect(&self, names: &[String]) -> Result<Vec<VolumeInfo>, VolumeError> {
        let all = self.list()?;
        names
            .iter()
            .map(|n| {
                all.iter()
                    .find(|v| &v.meta.name == n)
                    .cloned()
                    .ok_or_else(|| VolumeError::NotFound(n.clone()))
            })
            .collect()
    }

    fn remove_one(&self, v: &VolumeInfo) -> Result<(), VolumeError> {
        let name = &v.meta.name;
        if is_mountpoint(&v.mountpoint) {
            swarm_runtime::sys::umount2(&v.mountpoint, libc::MNT_DETACH)
                .map_err(io(name, "unmount its driver mount"))?;
        }
        // Renamed out of the way first, so a half-deleted volume is never found by name.
        let gone = self.root.join(format!(".rm-{name}-{}", std::process::id()));
        std::fs::rename(self.dir(name), &gone).map_err(io(name, "remove it"))?;
        std::fs::remove_dir_all(&gone).map_err(io(name, "delete its data"))?;
        tracing::info!(volume = %name, "volume removed");
        Ok(())
    }

    /// Removes the named volumes; all must exist and be unused, or none is removed.
    pub async fn remove(self: &Arc<Self>, names: Vec<String>) -> Result<Vec<String>, VolumeError> {
        if names.is_empty() {
            return Err(VolumeError::Invalid(
                "name at least one volume to remove".into(),
            ));
        }
        let _g = self.gate.write().await;
        let me = self.clone();
        blocking(move || {
            let vols = me.inspect(&names)?;
            for v in &vols {
                if let Some(first) = v.used_by.first() {
                    return Err(VolumeError::InUse {
                        name: v.meta.name.clone(),
                        count: v.used_by.len(),
                        first: first.clone(),
                    });
                }
            }
            for v in &vols {
                me.remove_one(v)?;
            }
            Ok(names)
        })
        .await
    }

    /// Removes every volume no container uses; returns their names and the bytes freed.
    pub async fn prune(self: &Arc<Self>) -> Result<(Vec<String>, u64), VolumeError> {
        let _g = self.gate.write().await;
        let me = self.clone();
        blocking(move || {
            let mut removed = Vec::new();
            let mut bytes = 0;
            for v in me.list()? {
                if v.used_by.is_empty() {
                    let size = if is_mountpoint(&v.mountpoint) {
                        0
                    } else {
                        du(&v.mountpoint)
                    };
                    me.remove_one(&v)?;
                    bytes += size;
                    removed.push(v.meta.name);
                }
            }
            Ok((removed, bytes))
        })
        .await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, VolumeError> + Send + 'static,
) -> Result<T, VolumeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| VolumeError::Runtime(format!("volume call panicked: {e}")))?
}

/// Whether `p` is the root of a mount (its device differs from its parent's).
fn is_mountpoint(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(p), p.parent().map(std::fs::metadata)) {
        (Ok(a), Some(Ok(b))) => a.dev() != b.dev(),
        _ => false,
    }
}

/// Bytes of regular files under `p` (not following symlinks).
fn du(p: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                total += m.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_driver_mount_options_split_into_flags_and_data() {
        let (f, d) = mount_flags("size=64m,ro,uid=1000,nosuid");
        assert_eq!(f, libc::MS_RDONLY | libc::MS_NOSUID);
        assert_eq!(d, "size=64m,uid=1000");
        let (f, d) = mount_flags("bind");
        assert_eq!((f, d.as_str()), (libc::MS_BIND, ""));
    }
}
