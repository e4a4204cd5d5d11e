//! The executor of a mount plan: runs each [`MountOp`] inside the init's private mount
//! namespace through [`MountSys`], deciding which targets are created and with which kind and
//! owner, which flags each mount and remount gets, how a path is masked, and where a failure
//! stops with which [`MountError`]. It makes no kernel call itself (all go through the seam,
//! [`HostMounts`] in production) and never decides what to mount (that is [`plan`]).

use super::*;

/// Applies `ops` under the mounted rootfs; mount targets it creates belong to `owner` (the
/// host ids of a user namespace's root) when given.
pub fn apply(
    rootfs_dir: &Path,
    ops: &[MountOp],
    owner: Option<(u32, u32)>,
) -> Result<(), MountError> {
    apply_with(&mut HostMounts, rootfs_dir, ops, owner)
}

/// [`apply`] through the calls of `sys`; stops at the first failing op.
pub(super) fn apply_with<S: MountSys>(
    sys: &mut S,
    rootfs_dir: &Path,
    ops: &[MountOp],
    owner: Option<(u32, u32)>,
) -> Result<(), MountError> {
    let root = sys
        .open_root(rootfs_dir)
        .map_err(|source| MountError::Target {
            target: rootfs_dir.into(),
            source,
        })?;
    for op in ops {
        apply_one(sys, &root, op, owner)?;
    }
    Ok(())
}

/// The `/proc/self/fd/N` path a mount reaches an open target through.
fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Creates `path` (and missing parents) inside the rootfs, never leaving it, and returns an
/// `O_PATH` fd to it. What it creates belongs to `owner` (host ids) when given.
fn ensure_target<S: MountSys>(
    sys: &mut S,
    root: &S::Fd,
    path: &Path,
    kind: TargetKind,
    owner: Option<(u32, u32)>,
) -> io::Result<S::Fd> {
    if let Ok(fd) = sys.open_in_root(root, path, libc::O_PATH) {
        return Ok(fd);
    }
    let mut cur = PathBuf::from("/");
    let comps: Vec<_> = path.components().skip(1).collect();
    for (i, c) in comps.iter().enumerate() {
        let parent = sys.open_in_root(root, &cur, libc::O_PATH | libc::O_DIRECTORY)?;
        cur.push(c);
        if sys.open_in_root(root, &cur, libc::O_PATH).is_ok() {
            continue;
        }
        let name = c.as_os_str();
        let last = i + 1 == comps.len();
        let made = if last && kind == TargetKind::File {
            sys.create_file(&parent, name, 0o644)
        } else {
            sys.mkdir(&parent, name, 0o755)
        };
        match made {
            // Made meanwhile by someone else: not ours to chown.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
            Ok(()) => {
                if let Some((uid, gid)) = owner {
                    sys.chown(&parent, name, uid, gid)?;
                }
            }
        }
    }
    sys.open_in_root(root, path, libc::O_PATH)
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

fn apply_one<S: MountSys>(
    sys: &mut S,
    root: &S::Fd,
    op: &MountOp,
    owner: Option<(u32, u32)>,
) -> Result<(), MountError> {
    match op {
        MountOp::Fs {
            fstype,
            source,
            target,
            flags,
            data,
        } => {
            let fd =
                ensure_target(sys, root, target, TargetKind::Dir, owner).map_err(terr(target))?;
            sys.mount(
                Some(Path::new(source)),
                &fd_path(&fd),
                Some(fstype),
                *flags,
                data.as_deref(),
            )
            .map_err(merr(fstype, target))
        }
        MountOp::Confine { path } => confine(path, &mut |p| readlink_in_root(sys, root, p))
            .map(|_| ())
            .map_err(|reason| MountError::Escape {
                target: path.clone(),
                reason,
            }),
        MountOp::Bind { .. } => bind(sys, root, op, owner),
        MountOp::Symlink { target, link } => symlink(sys, root, target, link),
        MountOp::Mask { path } => mask(sys, root, path),
        MountOp::ReadOnly { path } => read_only(sys, root, path),
    }
}

/// A bind mount (populated first when asked), remounted with its flags, then given its
/// propagation; each step re-resolves the target, which now shows the new mount.
fn bind<S: MountSys>(
    sys: &mut S,
    root: &S::Fd,
    op: &MountOp,
    owner: Option<(u32, u32)>,
) -> Result<(), MountError> {
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
    let fd = ensure_target(sys, root, target, *kind, owner).map_err(terr(target))?;
    let fp = fd_path(&fd);
    if *copy_up && *kind == TargetKind::Dir {
        sys.copy_up(&fp, source).map_err(|e| MountError::CopyUp {
            target: target.clone(),
            source_dir: source.clone(),
            source: e,
        })?;
    }
    sys.mount(Some(source), &fp, None, libc::MS_BIND | libc::MS_REC, None)
        .map_err(merr("bind", target))?;
    let fd2 = sys
        .open_in_root(root, target, libc::O_PATH)
        .map_err(terr(target))?;
    let ro = if *readonly { libc::MS_RDONLY } else { 0 };
    sys.mount(
        None,
        &fd_path(&fd2),
        None,
        libc::MS_BIND | libc::MS_REMOUNT | flags | ro,
        None,
    )
    .map_err(merr("bind remount", target))?;
    if let Some(p) = propagation {
        let fd3 = sys
            .open_in_root(root, target, libc::O_PATH)
            .map_err(terr(target))?;
        sys.mount(None, &fd_path(&fd3), None, p.flags(), None)
            .map_err(merr("bind propagation", target))?;
    }
    Ok(())
}

/// A symlink at `link` (kept as it is when something already exists there).
fn symlink<S: MountSys>(
    sys: &mut S,
    root: &S::Fd,
    target: &str,
    link: &Path,
) -> Result<(), MountError> {
    let parent = link.parent().unwrap_or(Path::new("/"));
    let pfd = sys
        .open_in_root(root, parent, libc::O_PATH | libc::O_DIRECTORY)
        .map_err(terr(link))?;
    match sys.symlink(target, &pfd, link.file_name().unwrap_or_default()) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(MountError::Target {
            target: link.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Hides `path`: an empty read-only tmpfs over a directory, /dev/null over anything else.
fn mask<S: MountSys>(sys: &mut S, root: &S::Fd, path: &Path) -> Result<(), MountError> {
    let Some(fd) = open_if_present(sys, root, path)? else {
        return Ok(()); // nothing to hide
    };
    let file_type = sys.file_type(&fd).map_err(terr(path))?;
    if file_type == libc::S_IFDIR {
        sys.mount(
            Some(Path::new("tmpfs")),
            &fd_path(&fd),
            Some("tmpfs"),
            libc::MS_RDONLY | NOSUID | NODEV | NOEXEC,
            Some("size=0"),
        )
        .map_err(merr("mask tmpfs", path))
    } else {
        sys.mount(
            Some(Path::new("/dev/null")),
            &fd_path(&fd),
            None,
            libc::MS_BIND,
            None,
        )
        .map_err(merr("mask", path))
    }
}

/// `path` in the rootfs, or `None` when it does not exist. Any other failure is an error, as
/// in runc: a masked or read-only path that exists but cannot be reached would otherwise stay
/// visible and writable without a word.
fn open_if_present<S: MountSys>(
    sys: &mut S,
    root: &S::Fd,
    path: &Path,
) -> Result<Option<S::Fd>, MountError> {
    match sys.open_in_root(root, path, libc::O_PATH) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => Ok(None),
        Err(e) => Err(terr(path)(e)),
    }
}

/// Binds `path` onto itself read-only (when it exists).
fn read_only<S: MountSys>(sys: &mut S, root: &S::Fd, path: &Path) -> Result<(), MountError> {
    let Some(fd) = open_if_present(sys, root, path)? else {
        return Ok(());
    };
    sys.mount(
        Some(&fd_path(&fd)),
        &fd_path(&fd),
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .map_err(merr("readonly bind", path))?;
    let fd2 = sys
        .open_in_root(root, path, libc::O_PATH)
        .map_err(terr(path))?;
    sys.mount(
        None,
        &fd_path(&fd2),
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | NOSUID | NODEV | NOEXEC,
        None,
    )
    .map_err(merr("readonly remount", path))
}

#[cfg(test)]
mod recorder;
#[cfg(test)]
mod tests;
