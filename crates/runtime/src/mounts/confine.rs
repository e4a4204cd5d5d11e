//! Confining a mount target inside the rootfs (symlinks resolved component by component,
//! refused when they climb out), and the copy of the image's content into an empty volume; it
//! reads the rootfs only through [`MountSys`] and writes nothing but the volume being populated.

use super::*;

/// The target of `path` when it is a symlink inside the rootfs (`None` when it is not one or
/// does not exist, or on any other failure). `path` has no symlink in its parent components
/// (see [`confine`]).
pub(super) fn readlink_in_root<S: MountSys>(
    sys: &mut S,
    root: &S::Fd,
    path: &Path,
) -> Option<PathBuf> {
    let parent = path.parent()?;
    let name = path.file_name()?;
    let pfd = sys
        .open_in_root(root, parent, libc::O_PATH | libc::O_DIRECTORY)
        .ok()?;
    sys.readlink(&pfd, name).ok()
}

/// Most symlinks followed while confining one path (the kernel's own limit).
pub(super) const MAX_SYMLINKS: usize = 40;

/// Resolves a container path component by component, following symlinks (`readlink` gives
/// the target of a path whose parents are already resolved, `None` when it is no symlink),
/// and refuses a path that leaves the rootfs: a symlink whose relative target climbs above
/// the root (`../../..`), which followed on the host would point outside the container.
/// Absolute symlink targets are container paths (they restart at the container's root, as
/// Docker and runc resolve them). Returns the resolved path or the reason for refusing.
pub fn confine(
    path: &Path,
    readlink: &mut dyn FnMut(&Path) -> Option<PathBuf>,
) -> Result<PathBuf, String> {
    use std::collections::VecDeque;
    use std::path::Component;
    let mut todo: VecDeque<std::ffi::OsString> = VecDeque::new();
    let push_front = |todo: &mut VecDeque<std::ffi::OsString>, p: &Path| {
        let mut parts: Vec<std::ffi::OsString> = Vec::new();
        for c in p.components() {
            match c {
                Component::Normal(n) => parts.push(n.to_os_string()),
                Component::ParentDir => parts.push("..".into()),
                _ => {}
            }
        }
        for part in parts.into_iter().rev() {
            todo.push_front(part);
        }
    };
    push_front(&mut todo, path);
    let mut cur = PathBuf::from("/");
    let mut followed = 0;
    let mut via: Option<(PathBuf, PathBuf)> = None;
    while let Some(part) = todo.pop_front() {
        if part == ".." {
            if cur == Path::new("/") {
                let how = match &via {
                    Some((link, t)) => format!(
                        "the symlink {} -> {} leads out of the container's root filesystem",
                        link.display(),
                        t.display()
                    ),
                    None => "it leads out of the container's root filesystem".into(),
                };
                return Err(how);
            }
            cur.pop();
            continue;
        }
        let next = cur.join(&part);
        match readlink(&next) {
            Some(t) => {
                followed += 1;
                if followed > MAX_SYMLINKS {
                    return Err(format!("too many levels of symlinks at {}", next.display()));
                }
                if t.is_absolute() {
                    cur = PathBuf::from("/");
                }
                push_front(&mut todo, &t);
                via = Some((next, t));
            }
            None => cur = next,
        }
    }
    Ok(cur)
}

/// Copies the directory tree at `from` into `to` when `to` is an empty directory (Docker's
/// population of a new volume from the image): modes and owners kept, symlinks copied as
/// symlinks, device nodes, sockets and fifos skipped.
pub(super) fn copy_up_into(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if std::fs::read_dir(to)?.next().is_some() {
        return Ok(());
    }
    // `from` is a /proc/self/fd magic link to the resolved target: follow it.
    let meta = std::fs::metadata(from)?;
    if !meta.is_dir() {
        return Ok(());
    }
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    copy_tree(from, to, 0)
}

pub(super) fn copy_tree(from: &Path, to: &Path, depth: usize) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if depth > 256 {
        return Err(io::Error::other("directory tree deeper than 256 levels"));
    }
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let src = e.path();
        let dst = to.join(e.file_name());
        let m = std::fs::symlink_metadata(&src)?;
        let ft = m.file_type();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
            std::os::unix::fs::lchown(&dst, Some(m.uid()), Some(m.gid()))?;
            continue;
        } else if ft.is_dir() {
            std::fs::create_dir(&dst)?;
            copy_tree(&src, &dst, depth + 1)?;
        } else if ft.is_file() {
            std::fs::copy(&src, &dst)?;
        } else {
            continue;
        }
        // Owner first: chown clears set-id bits, which the mode then restores.
        std::os::unix::fs::lchown(&dst, Some(m.uid()), Some(m.gid()))?;
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
    }
    Ok(())
}
