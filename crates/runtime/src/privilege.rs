//! What a container may reach beyond the default confinement: Docker's `--privileged`,
//! `--device` and `--security-opt seccomp=…`. Plain data and the checks on it, plus the
//! host's device list a privileged container gets; [`crate::mounts`] and [`crate::init`]
//! apply it. Device access is granted by bind-mounting the host's node (every other mount is
//! `nodev`), not by the devices cgroup.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::seccomp::{Profile, ProfileError};

/// Device nodes every container gets, bind-mounted from the host.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// The seccomp filter of a container.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeccompMode {
    /// The built-in allowlist, equivalent to Docker's default profile.
    #[default]
    Default,
    /// No filter (`seccomp=unconfined`; also what `--privileged` means).
    Unconfined,
    /// A profile in Docker's JSON format.
    Profile(String),
}

/// A host device made available inside the container (`--device HOST[:CONTAINER[:PERMS]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceMapping {
    pub host: PathBuf,
    pub container: PathBuf,
    /// Docker's `rwm`, where `rw` is required: access is granted by bind-mounting the node,
    /// and the kernel lets a device on a read-only mount be written, so read-only or
    /// write-only access cannot be enforced (no devices cgroup). `m` is accepted and grants
    /// nothing more: a node made with mknod inside the container is unusable (`nodev`).
    pub permissions: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PrivilegeError {
    #[error("--device {path:?}: {reason}")]
    Device { path: PathBuf, reason: String },
    #[error("--privileged grants every capability: drop --cap-drop or --privileged")]
    PrivilegedCapDrop,
    #[error("--privileged runs without seccomp: drop --security-opt seccomp=... or --privileged")]
    PrivilegedSeccomp,
    #[error(transparent)]
    Profile(#[from] ProfileError),
}

/// An absolute path without `..`, `.` or empty components.
fn clean_absolute(p: &Path) -> bool {
    p.is_absolute()
        && p.components()
            .skip(1)
            .all(|c| matches!(c, Component::Normal(_)))
}

/// Checks a device mapping (without touching the host: see [`resolve_devices`]).
pub fn check_device(d: &DeviceMapping) -> Result<(), PrivilegeError> {
    let err = |path: &Path, reason: &str| PrivilegeError::Device {
        path: path.to_path_buf(),
        reason: reason.into(),
    };
    if !clean_absolute(&d.host) {
        return Err(err(
            &d.host,
            "the host path must be absolute, without . or .. (such as /dev/fuse)",
        ));
    }
    if !clean_absolute(&d.container) || d.container == Path::new("/") {
        return Err(err(
            &d.container,
            "the container path must be absolute, without . or .. (such as /dev/fuse)",
        ));
    }
    let p = &d.permissions;
    if p.is_empty() || !p.chars().all(|c| "rwm".contains(c)) {
        return Err(err(&d.host, "permissions are letters of rwm (such as rw)"));
    }
    if !(p.contains('r') && p.contains('w')) {
        return Err(err(
            &d.host,
            "permissions must include r and w (such as rwm): device access is granted by a bind mount, which cannot make a device read-only or write-only",
        ));
    }
    Ok(())
}

/// Checks every device of a container on the host at create time: each must exist and be a
/// character or block device. With `privileged`, every device of the host's `/dev` is added
/// (as Docker does), apart from those the container gets anyway.
pub fn resolve_devices(
    devices: &mut Vec<DeviceMapping>,
    privileged: bool,
) -> Result<(), PrivilegeError> {
    use std::os::unix::fs::FileTypeExt;
    for d in devices.iter() {
        let meta = std::fs::metadata(&d.host).map_err(|e| PrivilegeError::Device {
            path: d.host.clone(),
            reason: format!("cannot use it: {e}"),
        })?;
        let t = meta.file_type();
        if !t.is_char_device() && !t.is_block_device() {
            return Err(PrivilegeError::Device {
                path: d.host.clone(),
                reason: "is not a device node (use --mount type=bind for files and directories)"
                    .into(),
            });
        }
    }
    if privileged {
        let mut taken: std::collections::BTreeSet<PathBuf> =
            devices.iter().map(|d| d.container.clone()).collect();
        for path in host_devices(Path::new("/dev")) {
            if taken.insert(path.clone()) {
                devices.push(DeviceMapping {
                    host: path.clone(),
                    container: path,
                    permissions: "rwm".into(),
                });
            }
        }
    }
    Ok(())
}

/// Device nodes under `dev` a privileged container gets: every character and block device,
/// except what every container has anyway (`null`, `tty`, … and its own ptys) and the host's
/// console.
pub fn host_devices(dev: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    const SKIP_DIRS: &[&str] = &["pts", "shm", "mqueue", "fd", "hugepages", ".udev", ".lxc"];
    const SKIP: &[&str] = &["console", "ptmx"];
    let mut out = Vec::new();
    let mut todo = vec![dev.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let (Ok(t), name) = (e.file_type(), e.file_name()) else {
                continue;
            };
            let name = name.to_string_lossy().into_owned();
            let top = dir == dev;
            if t.is_dir() {
                if !(top && SKIP_DIRS.contains(&name.as_str())) {
                    todo.push(e.path());
                }
            } else if (t.is_char_device() || t.is_block_device())
                && !(top && (SKIP.contains(&name.as_str()) || DEVICES.contains(&name.as_str())))
            {
                let path = e.path();
                let rel = path.strip_prefix(dev).unwrap_or(&path);
                out.push(Path::new("/dev").join(rel));
            }
        }
    }
    out.sort();
    out
}

/// Checks the privilege settings of a container whose capability set is `caps`.
pub fn check(
    privileged: bool,
    cap_drop: &[String],
    devices: &[DeviceMapping],
    seccomp: &SeccompMode,
    caps: u64,
) -> Result<(), PrivilegeError> {
    if privileged && !cap_drop.is_empty() {
        return Err(PrivilegeError::PrivilegedCapDrop);
    }
    for d in devices {
        check_device(d)?;
    }
    if let SeccompMode::Profile(json) = seccomp {
        if privileged {
            return Err(PrivilegeError::PrivilegedSeccomp);
        }
        Profile::parse(json)?.compile(caps, crate::seccomp::running_kernel())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(host: &str, container: &str, perms: &str) -> DeviceMapping {
        DeviceMapping {
            host: host.into(),
            container: container.into(),
            permissions: perms.into(),
        }
    }

    #[test]
    fn device_mappings_are_checked() {
        check_device(&dev("/dev/fuse", "/dev/fuse", "rwm")).unwrap();
        check_device(&dev("/dev/fuse", "/dev/f", "wr")).unwrap();
        for (d, says) in [
            (dev("dev/fuse", "/dev/fuse", "rw"), "absolute"),
            (dev("/dev/../etc/shadow", "/dev/x", "rw"), "absolute"),
            (dev("/dev/fuse", "/dev/../../etc", "rw"), "container path"),
            (dev("/dev/fuse", "/", "rw"), "container path"),
            (dev("/dev/fuse", "/dev/fuse", "rx"), "rwm"),
            (dev("/dev/fuse", "/dev/fuse", "w"), "include r and w"),
            (dev("/dev/fuse", "/dev/fuse", "r"), "include r and w"),
        ] {
            let e = check_device(&d).unwrap_err().to_string();
            assert!(e.contains(says), "{d:?}: {e}");
        }
    }

    #[test]
    fn only_device_nodes_resolve_and_privileged_adds_the_hosts() {
        let mut v = vec![dev("/dev/null", "/dev/mynull", "rw")];
        resolve_devices(&mut v, false).unwrap();
        assert_eq!(v.len(), 1);
        let mut v = vec![dev("/etc/hostname", "/dev/x", "rw")];
        let e = resolve_devices(&mut v, false).unwrap_err().to_string();
        assert!(e.contains("not a device node"), "{e}");
        let mut v = vec![dev("/dev/no-such-device", "/dev/x", "rw")];
        let e = resolve_devices(&mut v, false).unwrap_err().to_string();
        assert!(e.contains("cannot use it"), "{e}");
        let all = host_devices(Path::new("/dev"));
        assert!(
            !all.iter().any(|p| p == Path::new("/dev/null")),
            "null is there anyway"
        );
        assert!(
            !all.iter().any(|p| p.starts_with("/dev/pts")),
            "the host's ptys never"
        );
        assert!(!all.iter().any(|p| p == Path::new("/dev/console")));
    }

    #[test]
    fn privileged_refuses_what_contradicts_it() {
        assert_eq!(
            check(true, &["NET_RAW".into()], &[], &SeccompMode::Default, 0),
            Err(PrivilegeError::PrivilegedCapDrop)
        );
        let p = SeccompMode::Profile(r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#.into());
        assert_eq!(
            check(true, &[], &[], &p, 0),
            Err(PrivilegeError::PrivilegedSeccomp)
        );
        check(false, &[], &[], &p, 0).unwrap();
        check(true, &[], &[], &SeccompMode::Unconfined, 0).unwrap();
        let bad = SeccompMode::Profile("{".into());
        assert!(check(false, &[], &[], &bad, 0)
            .unwrap_err()
            .to_string()
            .contains("not valid JSON"));
    }
}
