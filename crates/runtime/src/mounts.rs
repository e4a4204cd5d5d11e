//! The container's mounts: the plan's types and errors, the pure plan ([`plan`]), its executor
//! ([`apply()`], whose kernel calls go through the `MountSys` seam of `host`), the rootfs,
//! `pivot_root` and the read-only root; none of it may mount anything outside the init's
//! private mount namespace.
//!
//! Every target is resolved inside the new rootfs with `openat2(RESOLVE_IN_ROOT)` and mounted
//! through `/proc/self/fd/N`, so a hostile image whose `/dev` or `/proc` is a symlink to a host
//! path cannot redirect a mount onto the host. Device isolation does not depend on the devices
//! cgroup (absent on cgroup v2 without BPF): the rootfs and every tmpfs are mounted `nodev`,
//! and the few device nodes are bind mounts of the host's `/dev/null` & co; a node made with
//! CAP_MKNOD inside the container is therefore unusable.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use crate::spec::{ContainerSpec, MountSpec, Propagation, RootfsSpec};
use crate::sys;

mod apply;
mod confine;
mod host;
mod plan;
mod rootfs;
pub use apply::apply;
pub use confine::*;
use host::{HostMounts, MountSys};
pub use plan::*;
pub use rootfs::*;

/// Errors of mount setup.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount {what} on {target}: {source}")]
    Mount {
        what: String,
        target: PathBuf,
        source: io::Error,
    },
    #[error("cannot prepare mount target {target} inside the rootfs: {source}")]
    Target { target: PathBuf, source: io::Error },
    #[error("mount target {target} is refused: {reason}")]
    Escape { target: PathBuf, reason: String },
    #[error("cannot copy the image's content at {target} into {source_dir}: {source}")]
    CopyUp {
        target: PathBuf,
        source_dir: PathBuf,
        source: io::Error,
    },
}

/// Docker's masked paths.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

pub use crate::privilege::DEVICES;

const NOSUID: libc::c_ulong = libc::MS_NOSUID;
const NODEV: libc::c_ulong = libc::MS_NODEV;
const NOEXEC: libc::c_ulong = libc::MS_NOEXEC;

/// Whether a target must be a directory or a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Dir,
    File,
}

/// One step of the plan. Container paths are absolute inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountOp {
    /// Mount a filesystem (`source` is the fs "device" name).
    Fs {
        fstype: &'static str,
        source: String,
        target: PathBuf,
        flags: libc::c_ulong,
        data: Option<String>,
    },
    /// Bind-mount a host path (made read-only with a remount when asked).
    Bind {
        source: PathBuf,
        target: PathBuf,
        kind: TargetKind,
        readonly: bool,
        flags: libc::c_ulong,
        /// Propagation set on the new mount (user mounts; the default mounts keep the
        /// namespace's).
        propagation: Option<Propagation>,
        /// Populate an empty source directory from the rootfs' content at the target first.
        copy_up: bool,
    },
    /// Refuse a user mount target whose path leaves the rootfs through a symlink (see
    /// [`confine`]).
    Confine { path: PathBuf },
    /// Create a symlink inside the container.
    Symlink { target: String, link: PathBuf },
    /// Hide a path: /dev/null over files, a read-only tmpfs over directories.
    Mask { path: PathBuf },
    /// Bind a path onto itself read-only.
    ReadOnly { path: PathBuf },
}

/// `pivot_root` into `rootfs_dir` and detach the old root (never chroot).
pub fn pivot(rootfs_dir: &Path) -> Result<(), MountError> {
    let e = |what: &str| {
        let what = what.to_string();
        move |source| MountError::Mount {
            what,
            target: rootfs_dir.to_path_buf(),
            source,
        }
    };
    std::env::set_current_dir(rootfs_dir).map_err(e("chdir"))?;
    sys::pivot_root(Path::new("."), Path::new(".")).map_err(e("pivot_root"))?;
    // The old root is now stacked on top of "/": make it private so its unmount does not
    // propagate, then detach it.
    sys::mount(
        None,
        Path::new("."),
        None,
        libc::MS_SLAVE | libc::MS_REC,
        None,
    )
    .map_err(e("old root rslave"))?;
    sys::umount2(Path::new("."), libc::MNT_DETACH).map_err(e("detach old root"))?;
    std::env::set_current_dir("/").map_err(e("chdir /"))?;
    Ok(())
}

/// Remounts `/` read-only (after pivot).
pub fn readonly_root() -> Result<(), MountError> {
    sys::mount(
        None,
        Path::new("/"),
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | NODEV,
        None,
    )
    .map_err(|source| MountError::Mount {
        what: "readonly rootfs".into(),
        target: "/".into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{ProcessSpec, RootfsSpec};

    /// A container on image layers with a 1 MiB tmpfs on /run (also the executor's tests').
    pub(in crate::mounts) fn spec() -> ContainerSpec {
        let mut s = ContainerSpec::new(
            "c",
            RootfsSpec::Layers { lower: vec![] },
            ProcessSpec::default(),
        );
        s.mounts.push(MountSpec::Tmpfs {
            destination: "/run".into(),
            size_bytes: Some(1 << 20),
            mode: None,
        });
        s
    }

    /// A fake rootfs: symlinks by container path.
    fn links(l: &[(&str, &str)]) -> impl FnMut(&Path) -> Option<PathBuf> {
        let m: std::collections::HashMap<PathBuf, PathBuf> = l
            .iter()
            .map(|(a, b)| (PathBuf::from(a), PathBuf::from(b)))
            .collect();
        move |p: &Path| m.get(p).cloned()
    }

    #[test]
    fn confine_follows_symlinks_inside_and_refuses_escapes() {
        let mut l = links(&[
            ("/var/run", "/run"),
            ("/data", "srv/data"),
            ("/evil", "../../../../etc"),
            ("/srv/up", "../../x"),
            ("/loop", "/loop"),
            ("/a/b", "../../../host"),
        ]);
        assert_eq!(
            confine(Path::new("/var/run/x.sock"), &mut l).unwrap(),
            PathBuf::from("/run/x.sock")
        );
        assert_eq!(
            confine(Path::new("/data/db"), &mut l).unwrap(),
            PathBuf::from("/srv/data/db")
        );
        let e = confine(Path::new("/evil/passwd"), &mut l).unwrap_err();
        assert!(e.contains("/evil -> ../../../../etc"), "{e}");
        assert!(confine(Path::new("/srv/up"), &mut l).is_err());
        assert!(confine(Path::new("/a/b/c"), &mut l).is_err());
        let e = confine(Path::new("/loop/x"), &mut l).unwrap_err();
        assert!(e.contains("too many levels"), "{e}");
        assert_eq!(
            confine(Path::new("/plain/dir"), &mut l).unwrap(),
            PathBuf::from("/plain/dir")
        );
    }

    #[test]
    fn user_mounts_are_confined_and_keep_their_propagation() {
        let mut s = spec();
        s.mounts.push(MountSpec::Bind {
            source: "/".into(),
            destination: "/host".into(),
            readonly: true,
            propagation: Propagation::Rslave,
            copy_up: false,
        });
        let ops = plan(&s);
        let bind = ops
            .iter()
            .position(|o| matches!(o, MountOp::Bind { target, .. } if target == Path::new("/host")))
            .unwrap();
        assert_eq!(
            ops[bind - 1],
            MountOp::Confine {
                path: "/host".into()
            }
        );
        assert!(matches!(
            &ops[bind],
            MountOp::Bind {
                readonly: true,
                propagation: Some(Propagation::Rslave),
                kind: TargetKind::Dir,
                ..
            }
        ));
        assert!(ops.contains(&MountOp::Confine {
            path: "/run".into()
        }));
    }

    #[test]
    fn plan_orders_proc_before_masks_and_devices_inside_dev() {
        let ops = plan(&spec());
        let pos = |pred: &dyn Fn(&MountOp) -> bool| ops.iter().position(pred).unwrap();
        let proc_ = pos(&|o| matches!(o, MountOp::Fs { fstype: "proc", .. }));
        let dev = pos(&|o| matches!(o, MountOp::Fs { target, .. } if target == Path::new("/dev")));
        let null =
            pos(&|o| matches!(o, MountOp::Bind { target, .. } if target == Path::new("/dev/null")));
        let kcore =
            pos(&|o| matches!(o, MountOp::Mask { path } if path == Path::new("/proc/kcore")));
        let sys_ro =
            pos(&|o| matches!(o, MountOp::ReadOnly { path } if path == Path::new("/proc/sys")));
        assert!(proc_ < kcore && proc_ < sys_ro && dev < null);
        // User tmpfs is nodev with the requested size.
        assert!(ops.iter().any(
            |o| matches!(o, MountOp::Fs { target, flags, data: Some(d), .. }
            if target == Path::new("/run") && flags & NODEV != 0 && d.contains("size=1048576"))
        ));
        // Every tmpfs/proc/sys mount is nodev except devpts.
        for o in &ops {
            if let MountOp::Fs { fstype, flags, .. } = o {
                if *fstype != "devpts" {
                    assert!(flags & NODEV != 0, "{fstype} must be nodev");
                }
            }
        }
        for p in READONLY_PATHS {
            assert!(ops.contains(&MountOp::ReadOnly {
                path: PathBuf::from(p)
            }));
        }
    }
}
