//! The container's mount table as a pure plan ([`plan`]) plus the code that applies it inside
//! the init's private mount namespace ([`apply`]).
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

mod confine;
mod plan;
mod rootfs;
pub use confine::*;
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

const RESOLVE_IN_ROOT: u64 = 0x10;
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `openat2(root, path, RESOLVE_IN_ROOT)`: symlinks are resolved as if `root` were `/`.
fn open_in_root(root: RawFd, path: &Path, flags: i32) -> io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let c = sys::cstr(rel)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: valid C string and open_how struct alive for the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root,
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Creates `path` (and missing parents) inside the rootfs, never leaving it, and returns an
/// `O_PATH` fd to it. What it creates belongs to `owner` (host ids) when given.
fn ensure_target(
    root: RawFd,
    path: &Path,
    kind: TargetKind,
    owner: Option<(u32, u32)>,
) -> io::Result<OwnedFd> {
    if let Ok(fd) = open_in_root(root, path, libc::O_PATH) {
        return Ok(fd);
    }
    let mut cur = PathBuf::from("/");
    let comps: Vec<_> = path.components().skip(1).collect();
    for (i, c) in comps.iter().enumerate() {
        let parent = open_in_root(root, &cur, libc::O_PATH | libc::O_DIRECTORY)?;
        cur.push(c);
        if open_in_root(root, &cur, libc::O_PATH).is_ok() {
            continue;
        }
        let name = sys::cstr(Path::new(c.as_os_str()))?;
        let last = i + 1 == comps.len();
        // SAFETY: valid C string; parent is an O_PATH dir fd (allowed for *at creation calls).
        let r = if last && kind == TargetKind::File {
            let fd = unsafe {
                libc::openat(
                    parent.as_raw_fd(),
                    name.as_ptr(),
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_WRONLY
                        | libc::O_CLOEXEC
                        | libc::O_NOFOLLOW,
                    0o644,
                )
            };
            if fd >= 0 {
                // SAFETY: closing the fd we just opened.
                unsafe { libc::close(fd) };
            }
            fd
        } else {
            // SAFETY: valid C string and dir fd.
            unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o755) }
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::AlreadyExists {
                return Err(e);
            }
        } else if let Some((uid, gid)) = owner {
            // SAFETY: valid C string and dir fd; never follows a symlink.
            let r = unsafe {
                libc::fchownat(
                    parent.as_raw_fd(),
                    name.as_ptr(),
                    uid,
                    gid,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    open_in_root(root, path, libc::O_PATH)
}

fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Applies `ops` under the mounted rootfs; mount targets it creates belong to `owner` (the
/// host ids of a user namespace's root) when given.
pub fn apply(
    rootfs_dir: &Path,
    ops: &[MountOp],
    owner: Option<(u32, u32)>,
) -> Result<(), MountError> {
    let root = sys::openat(
        libc::AT_FDCWD,
        rootfs_dir,
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    )
    .map_err(|source| MountError::Target {
        target: rootfs_dir.into(),
        source,
    })?;
    let r = root.as_raw_fd();
    for op in ops {
        apply_one(r, op, owner)?;
    }
    Ok(())
}

fn terr(t: &Path) -> impl FnOnce(io::Error) -> MountError {
    let t = t.to_path_buf();
    move |source| MountError::Target { target: t, source }
}

fn merr(what: &str, t: &Path) -> impl FnOnce(io::Error) -> MountError {
    let what = what.to_string();
    let t = t.to_path_buf();
    move |source| MountError::Mount {
        what,
        target: t,
        source,
    }
}

fn apply_one(root: RawFd, op: &MountOp, owner: Option<(u32, u32)>) -> Result<(), MountError> {
    match op {
        MountOp::Fs {
            fstype,
            source,
            target,
            flags,
            data,
        } => {
            let fd = ensure_target(root, target, TargetKind::Dir, owner).map_err(terr(target))?;
            sys::mount(
                Some(Path::new(source)),
                &fd_path(&fd),
                Some(fstype),
                *flags,
                data.as_deref(),
            )
            .map_err(merr(fstype, target))
        }
        MountOp::Confine { path } => confine(path, &mut |p| readlink_in_root(root, p))
            .map(|_| ())
            .map_err(|reason| MountError::Escape {
                target: path.clone(),
                reason,
            }),
        MountOp::Bind { .. } => bind(root, op, owner),
        MountOp::Symlink { target, link } => symlink(root, target, link),
        MountOp::Mask { path } => mask(root, path),
        MountOp::ReadOnly { path } => read_only(root, path),
    }
}

/// A bind mount (populated first when asked), remounted with its flags, then given its
/// propagation; each step re-resolves the target, which now shows the new mount.
fn bind(root: RawFd, op: &MountOp, owner: Option<(u32, u32)>) -> Result<(), MountError> {
    let MountOp::Bind {
        source,
        target,
        kind,
        readonly,
        flags,
        propagation,
        copy_up,
    } = op
    else {
        unreachable!("bind() takes MountOp::Bind");
    };
    let fd = ensure_target(root, target, *kind, owner).map_err(terr(target))?;
    let fp = fd_path(&fd);
    if *copy_up && *kind == TargetKind::Dir {
        copy_up_into(&fp, source).map_err(|e| MountError::CopyUp {
            target: target.clone(),
            source_dir: source.clone(),
            source: e,
        })?;
    }
    sys::mount(Some(source), &fp, None, libc::MS_BIND | libc::MS_REC, None)
        .map_err(merr("bind", target))?;
    let fd2 = open_in_root(root, target, libc::O_PATH).map_err(terr(target))?;
    let ro = if *readonly { libc::MS_RDONLY } else { 0 };
    sys::mount(
        None,
        &fd_path(&fd2),
        None,
        libc::MS_BIND | libc::MS_REMOUNT | flags | ro,
        None,
    )
    .map_err(merr("bind remount", target))?;
    if let Some(p) = propagation {
        let fd3 = open_in_root(root, target, libc::O_PATH).map_err(terr(target))?;
        sys::mount(None, &fd_path(&fd3), None, p.flags(), None)
            .map_err(merr("bind propagation", target))?;
    }
    Ok(())
}

fn symlink(root: RawFd, target: &str, link: &Path) -> Result<(), MountError> {
    let parent = link.parent().unwrap_or(Path::new("/"));
    let pfd = open_in_root(root, parent, libc::O_PATH | libc::O_DIRECTORY).map_err(terr(link))?;
    let t = sys::cstr(Path::new(target)).map_err(terr(link))?;
    let n = sys::cstr(Path::new(link.file_name().unwrap_or_default())).map_err(terr(link))?;
    // SAFETY: valid C strings and an O_PATH dir fd.
    let rc = unsafe { libc::symlinkat(t.as_ptr(), pfd.as_raw_fd(), n.as_ptr()) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(MountError::Target {
                target: link.to_path_buf(),
                source: e,
            });
        }
    }
    Ok(())
}

/// Hides `path`: an empty read-only tmpfs over a directory, /dev/null over anything else.
fn mask(root: RawFd, path: &Path) -> Result<(), MountError> {
    let Ok(fd) = open_in_root(root, path, libc::O_PATH) else {
        return Ok(()); // nothing to hide
    };
    let mut st: libc::stat = unsafe_zeroed_stat();
    // SAFETY: fstat on an O_PATH fd with a valid buffer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Ok(());
    }
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        sys::mount(
            Some(Path::new("tmpfs")),
            &fd_path(&fd),
            Some("tmpfs"),
            libc::MS_RDONLY | NOSUID | NODEV | NOEXEC,
            Some("size=0"),
        )
        .map_err(merr("mask tmpfs", path))
    } else {
        sys::mount(
            Some(Path::new("/dev/null")),
            &fd_path(&fd),
            None,
            libc::MS_BIND,
            None,
        )
        .map_err(merr("mask", path))
    }
}

/// Binds `path` onto itself read-only (when it exists).
fn read_only(root: RawFd, path: &Path) -> Result<(), MountError> {
    let Ok(fd) = open_in_root(root, path, libc::O_PATH) else {
        return Ok(());
    };
    sys::mount(
        Some(&fd_path(&fd)),
        &fd_path(&fd),
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .map_err(merr("readonly bind", path))?;
    let fd2 = open_in_root(root, path, libc::O_PATH).map_err(terr(path))?;
    sys::mount(
        None,
        &fd_path(&fd2),
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | NOSUID | NODEV | NOEXEC,
        None,
    )
    .map_err(merr("readonly remount", path))
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

    fn spec() -> ContainerSpec {
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
