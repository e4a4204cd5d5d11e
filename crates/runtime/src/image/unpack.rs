//! Safe extraction of an image layer tarball into a directory, producing an overlayfs lower dir.
//!
//! Threat model: the tarball is hostile. Nothing may be created, modified or followed outside
//! the target directory. The rules:
//! - entry names are sanitized first ([`sanitize_entry_path`]): absolute paths and `..`
//!   components are refused with a typed error (not silently rewritten);
//! - parent directories are resolved with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`, so
//!   a symlink created by an earlier entry cannot redirect a later write outside the root
//!   (`EXDEV` becomes [`UnpackError::SymlinkEscape`]);
//! - the final component is created with `*at` calls on that parent fd, files with
//!   `O_CREAT | O_EXCL | O_NOFOLLOW` after unlinking whatever was there, so a symlink at the final
//!   component is replaced, never written through;
//! - hardlink targets go through the same sanitizing and resolution and are linked without
//!   following symlinks;
//! - character and block devices are refused unless `allow_devices` is set;
//! - OCI whiteouts become overlayfs whiteouts: `.wh.NAME` → a 0:0 character device `NAME`,
//!   `.wh..wh..opq` → the `trusted.overlay.opaque=y` xattr on the directory.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use crate::sys;

/// Errors of layer extraction. Every variant names the offending entry.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {path:?} is an absolute path; refusing to extract it (rebuild the image with relative paths)")]
    AbsolutePath { path: PathBuf },
    #[error("layer entry {path:?} contains a `..` component; refusing to extract it")]
    ParentComponent { path: PathBuf },
    #[error("layer entry {path:?} would be written through a symlink that leaves the root")]
    SymlinkEscape { path: PathBuf },
    #[error("layer entry {path:?} is a hardlink to {target:?} outside the layer root")]
    HardlinkEscape { path: PathBuf, target: PathBuf },
    #[error("layer entry {path:?} is a device node; device nodes are only allowed for privileged imports")]
    DeviceNode { path: PathBuf },
    #[error("layer entry {path:?} has unsupported type {kind:?}")]
    UnsupportedEntry { path: PathBuf, kind: String },
    #[error("cannot read layer archive: {source}")]
    Archive { source: io::Error },
    #[error("cannot extract {path:?}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Options for [`unpack_layer`].
#[derive(Debug, Clone, Copy, Default)]
pub struct UnpackOptions {
    /// Allow character/block device entries (privileged imports only).
    pub allow_devices: bool,
}

/// Validates a tar entry name and returns it as a clean relative path (`.` components removed).
/// Returns `Ok(None)` for the root entry itself (`./`).
pub fn sanitize_entry_path(raw: &Path) -> Result<Option<PathBuf>, UnpackError> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => {
                return Err(UnpackError::AbsolutePath {
                    path: raw.to_path_buf(),
                })
            }
            Component::ParentDir => {
                return Err(UnpackError::ParentComponent {
                    path: raw.to_path_buf(),
                })
            }
            Component::CurDir => {}
            Component::Normal(n) => out.push(n),
        }
    }
    Ok(if out.as_os_str().is_empty() {
        None
    } else {
        Some(out)
    })
}

/// Summary of one extraction.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UnpackStats {
    pub entries: u64,
    pub whiteouts: u64,
    pub bytes: u64,
}

/// The extended attributes of an entry (PAX `SCHILY.xattr.*` records) that an image may set:
/// `security.capability` (file capabilities, e.g. of `ping`) and `user.*` — what the layer
/// writer keeps. `trusted.*` (overlayfs' own attributes), `security.selinux` and others are
/// not taken from images.
fn kept_xattrs<R: Read>(
    entry: &mut tar::Entry<'_, R>,
) -> Result<Vec<(String, Vec<u8>)>, UnpackError> {
    let mut out = Vec::new();
    let Some(exts) = entry
        .pax_extensions()
        .map_err(|source| UnpackError::Archive { source })?
    else {
        return Ok(out);
    };
    for ext in exts {
        let ext = ext.map_err(|source| UnpackError::Archive { source })?;
        let Ok(key) = ext.key() else { continue };
        let Some(name) = key.strip_prefix("SCHILY.xattr.") else {
            continue;
        };
        let keep = name == "security.capability"
            || (name.starts_with("user.") && !name.starts_with("user.overlay."));
        if keep {
            out.push((name.to_string(), ext.value_bytes().to_vec()));
        }
    }
    Ok(out)
}

fn set_xattrs(fd: &OwnedFd, xattrs: &[(String, Vec<u8>)]) -> io::Result<()> {
    for (name, value) in xattrs {
        match sys::fsetxattr(fd.as_raw_fd(), name, value) {
            // A layer store on a filesystem without user xattrs still unpacks.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) && name.starts_with("user.") => {}
            r => r?,
        }
    }
    Ok(())
}

/// Extracts the (uncompressed) tar stream `reader` into the existing directory `root`.
pub fn unpack_layer<R: Read>(
    reader: R,
    root: &Path,
    opts: UnpackOptions,
) -> Result<UnpackStats, UnpackError> {
    let root_fd = sys::openat(libc::AT_FDCWD, root, libc::O_RDONLY | libc::O_DIRECTORY, 0)
        .map_err(|source| UnpackError::Io {
            path: root.to_path_buf(),
            source,
        })?;
    let mut archive = tar::Archive::new(reader);
    let mut stats = UnpackStats::default();
    let mut dir_times: Vec<(PathBuf, u64)> = Vec::new();
    let entries = archive
        .entries()
        .map_err(|source| UnpackError::Archive { source })?;
    for entry in entries {
        let mut entry = entry.map_err(|source| UnpackError::Archive { source })?;
        let raw = entry
            .path()
            .map_err(|source| UnpackError::Archive { source })?
            .into_owned();
        let Some(rel) = sanitize_entry_path(&raw)? else {
            continue;
        };
        unpack_entry(&mut entry, rel, &root_fd, &opts, &mut stats, &mut dir_times)?;
    }
    // Directory mtimes last: writing children changes them.
    for (rel, mtime) in dir_times.into_iter().rev() {
        let parent_rel = rel.parent().unwrap_or(Path::new(""));
        if let Ok(parent) = open_parent(&root_fd, parent_rel, &rel) {
            let _ = set_times_at(
                parent.as_raw_fd(),
                Path::new(rel.file_name().expect("has name")),
                mtime,
            );
        }
    }
    Ok(stats)
}

/// One entry of a layer: whiteouts become overlay whiteouts, everything else is created
/// beneath `root_fd` (never outside it) with its owner, mode, extended attributes and time;
/// directory times are set at the end (`dir_times`).
fn unpack_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    rel: PathBuf,
    root_fd: &OwnedFd,
    opts: &UnpackOptions,
    stats: &mut UnpackStats,
    dir_times: &mut Vec<(PathBuf, u64)>,
) -> Result<(), UnpackError> {
    stats.entries += 1;
    let name = rel.file_name().expect("sanitized path has a file name");
    let parent_rel = rel.parent().unwrap_or(Path::new(""));
    let parent = open_parent(root_fd, parent_rel, &rel)?;
    let pfd = parent.as_raw_fd();
    let io_err = |source: io::Error| UnpackError::Io {
        path: rel.clone(),
        source,
    };
    let name_str = name.to_string_lossy();
    // Whiteouts.
    if name_str == ".wh..wh..opq" {
        sys::fsetxattr(pfd, "trusted.overlay.opaque", b"y").map_err(io_err)?;
        stats.whiteouts += 1;
        return Ok(());
    }
    if let Some(hidden) = name_str.strip_prefix(".wh.") {
        let hidden = Path::new(hidden);
        remove_existing(pfd, hidden).map_err(io_err)?;
        mknod_at(pfd, hidden, libc::S_IFCHR, 0).map_err(io_err)?;
        stats.whiteouts += 1;
        return Ok(());
    }
    let xattrs = kept_xattrs(entry)?;
    let header = entry.header();
    let mode = header.mode().unwrap_or(0o644) & 0o7777;
    let uid = header.uid().unwrap_or(0) as u32;
    let gid = header.gid().unwrap_or(0) as u32;
    let mtime = header.mtime().unwrap_or(0);
    let kind = header.entry_type();
    let name_p = Path::new(name);
    match kind {
        tar::EntryType::Directory => {
            let d = ensure_dir(pfd, name_p).map_err(io_err)?;
            fchown_fd(&d, uid, gid).map_err(io_err)?;
            fchmod_fd(&d, mode).map_err(io_err)?;
            set_xattrs(&d, &xattrs).map_err(io_err)?;
            dir_times.push((rel.clone(), mtime));
        }
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            remove_existing(pfd, name_p).map_err(io_err)?;
            let fd = sys::openat(
                pfd,
                name_p,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                0o600,
            )
            .map_err(io_err)?;
            let mut f = File::from(fd);
            stats.bytes += io::copy(entry, &mut f).map_err(io_err)?;
            let fd = OwnedFd::from(f);
            fchown_fd(&fd, uid, gid).map_err(io_err)?;
            fchmod_fd(&fd, mode).map_err(io_err)?;
            // After chown and chmod, which clear a file capability.
            set_xattrs(&fd, &xattrs).map_err(io_err)?;
            set_times_at(pfd, name_p, mtime).map_err(io_err)?;
        }
        tar::EntryType::Symlink => {
            let target = entry
                .link_name()
                .map_err(|source| UnpackError::Archive { source })?
                .ok_or_else(|| UnpackError::UnsupportedEntry {
                    path: rel.clone(),
                    kind: "symlink without target".into(),
                })?
                .into_owned();
            remove_existing(pfd, name_p).map_err(io_err)?;
            symlink_at(&target, pfd, name_p).map_err(io_err)?;
            lchown_at(pfd, name_p, uid, gid).map_err(io_err)?;
            set_times_at(pfd, name_p, mtime).map_err(io_err)?;
        }
        tar::EntryType::Link => {
            let target = entry
                .link_name()
                .map_err(|source| UnpackError::Archive { source })?
                .ok_or_else(|| UnpackError::UnsupportedEntry {
                    path: rel.clone(),
                    kind: "hardlink without target".into(),
                })?
                .into_owned();
            hardlink(root_fd, &rel, &target, pfd, name_p)?;
        }
        tar::EntryType::Fifo => {
            remove_existing(pfd, name_p).map_err(io_err)?;
            mknod_at(pfd, name_p, libc::S_IFIFO | mode, 0).map_err(io_err)?;
            lchown_at(pfd, name_p, uid, gid).map_err(io_err)?;
        }
        tar::EntryType::Char | tar::EntryType::Block => {
            if !opts.allow_devices {
                return Err(UnpackError::DeviceNode { path: rel });
            }
            let major = header.device_major().ok().flatten().unwrap_or(0);
            let minor = header.device_minor().ok().flatten().unwrap_or(0);
            let t = if kind == tar::EntryType::Char {
                libc::S_IFCHR
            } else {
                libc::S_IFBLK
            };
            remove_existing(pfd, name_p).map_err(io_err)?;
            mknod_at(pfd, name_p, t | mode, libc::makedev(major, minor)).map_err(io_err)?;
            lchown_at(pfd, name_p, uid, gid).map_err(io_err)?;
        }
        tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {}
        tar::EntryType::GNULongName | tar::EntryType::GNULongLink => {}
        other => {
            return Err(UnpackError::UnsupportedEntry {
                path: rel,
                kind: format!("{other:?}"),
            })
        }
    }
    Ok(())
}

/// The directory `name` in `pfd` (made, or replacing what is there), opened.
fn ensure_dir(pfd: std::os::fd::RawFd, name: &Path) -> io::Result<OwnedFd> {
    match mkdir_at(pfd, name, 0o755) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if !is_dir_at(pfd, name) {
                remove_existing(pfd, name)?;
                mkdir_at(pfd, name, 0o755)?;
            }
        }
        Err(e) => return Err(e),
    }
    sys::openat(
        pfd,
        name,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )
}

/// A hard link at `name` in `pfd` to the layer's `raw_target`, which must resolve beneath
/// the root like any entry (a link out of the layer is refused).
fn hardlink(
    root_fd: &OwnedFd,
    rel: &Path,
    raw_target: &Path,
    pfd: std::os::fd::RawFd,
    name: &Path,
) -> Result<(), UnpackError> {
    let escape = || UnpackError::HardlinkEscape {
        path: rel.to_path_buf(),
        target: raw_target.to_path_buf(),
    };
    let target = match sanitize_entry_path(raw_target) {
        Ok(Some(t)) => t,
        _ => return Err(escape()),
    };
    let tparent_rel = target.parent().unwrap_or(Path::new(""));
    let tparent = match open_parent(root_fd, tparent_rel, &target) {
        Ok(fd) => fd,
        Err(UnpackError::SymlinkEscape { .. }) => return Err(escape()),
        Err(e) => return Err(e),
    };
    let tname = Path::new(target.file_name().expect("has name"));
    let io_err = |source| UnpackError::Io {
        path: rel.to_path_buf(),
        source,
    };
    remove_existing(pfd, name).map_err(io_err)?;
    link_at(tparent.as_raw_fd(), tname, pfd, name).map_err(io_err)
}

/// Opens (creating as needed) the directory `parent_rel` beneath `root`, never leaving it.
fn open_parent(root: &OwnedFd, parent_rel: &Path, entry: &Path) -> Result<OwnedFd, UnpackError> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY;
    if parent_rel.as_os_str().is_empty() {
        return sys::openat(root.as_raw_fd(), Path::new("."), flags, 0).map_err(|source| {
            UnpackError::Io {
                path: entry.to_path_buf(),
                source,
            }
        });
    }
    let map = |e: io::Error| -> UnpackError {
        if e.raw_os_error() == Some(libc::EXDEV) || e.raw_os_error() == Some(libc::ELOOP) {
            UnpackError::SymlinkEscape {
                path: entry.to_path_buf(),
            }
        } else {
            UnpackError::Io {
                path: entry.to_path_buf(),
                source: e,
            }
        }
    };
    match sys::openat_beneath(root.as_raw_fd(), parent_rel, flags, 0) {
        Ok(fd) => Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            // Create missing components one by one, each resolved beneath the root.
            let mut cur = PathBuf::new();
            for c in parent_rel.components() {
                cur.push(c);
                match sys::openat_beneath(root.as_raw_fd(), &cur, flags, 0) {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                        let p = cur.parent().unwrap_or(Path::new(""));
                        let pfd = if p.as_os_str().is_empty() {
                            sys::openat(root.as_raw_fd(), Path::new("."), flags, 0).map_err(map)?
                        } else {
                            sys::openat_beneath(root.as_raw_fd(), p, flags, 0).map_err(map)?
                        };
                        let n = Path::new(cur.file_name().expect("component"));
                        match mkdir_at(pfd.as_raw_fd(), n, 0o755) {
                            Ok(()) => {}
                            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                            Err(e) => return Err(map(e)),
                        }
                    }
                    Err(e) => return Err(map(e)),
                }
            }
            sys::openat_beneath(root.as_raw_fd(), parent_rel, flags, 0).map_err(map)
        }
        Err(e) => Err(map(e)),
    }
}

fn with_c<T>(p: &Path, f: impl FnOnce(&std::ffi::CStr) -> T) -> io::Result<T> {
    Ok(f(&sys::cstr(p)?))
}

fn rc(r: i32) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn mkdir_at(dir: i32, name: &Path, mode: u32) -> io::Result<()> {
    // SAFETY: valid C string, dir fd owned by the caller.
    rc(with_c(name, |c| unsafe {
        libc::mkdirat(dir, c.as_ptr(), mode)
    })?)
}

fn mknod_at(dir: i32, name: &Path, mode: u32, dev: u64) -> io::Result<()> {
    // SAFETY: valid C string, dir fd owned by the caller.
    rc(with_c(name, |c| unsafe {
        libc::mknodat(dir, c.as_ptr(), mode, dev)
    })?)
}

fn symlink_at(target: &Path, dir: i32, name: &Path) -> io::Result<()> {
    let t = sys::cstr(target)?;
    // SAFETY: valid C strings; symlinkat never follows anything.
    rc(with_c(name, |c| unsafe {
        libc::symlinkat(t.as_ptr(), dir, c.as_ptr())
    })?)
}

fn link_at(odir: i32, oname: &Path, ndir: i32, nname: &Path) -> io::Result<()> {
    let o = sys::cstr(oname)?;
    // SAFETY: valid C strings; flags 0 = do not follow a symlink source.
    rc(with_c(nname, |c| unsafe {
        libc::linkat(odir, o.as_ptr(), ndir, c.as_ptr(), 0)
    })?)
}

fn lchown_at(dir: i32, name: &Path, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: valid C string; AT_SYMLINK_NOFOLLOW changes the link itself.
    rc(with_c(name, |c| unsafe {
        libc::fchownat(dir, c.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW)
    })?)
}

fn fchown_fd(fd: &OwnedFd, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: fd is open and owned.
    rc(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) })
}

fn fchmod_fd(fd: &OwnedFd, mode: u32) -> io::Result<()> {
    // SAFETY: fd is open and owned.
    rc(unsafe { libc::fchmod(fd.as_raw_fd(), mode) })
}

fn set_times_at(dir: i32, name: &Path, mtime: u64) -> io::Result<()> {
    let ts = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    let times = [ts, ts];
    // SAFETY: valid C string and a two-element timespec array.
    rc(with_c(name, |c| unsafe {
        libc::utimensat(dir, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW)
    })?)
}

fn is_dir_at(dir: i32, name: &Path) -> bool {
    lstat_at(dir, name).is_some_and(|m| m & libc::S_IFMT == libc::S_IFDIR)
}

fn lstat_at(dir: i32, name: &Path) -> Option<u32> {
    let c = sys::cstr(name).ok()?;
    // SAFETY: zeroed stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and stat buffer.
    let r = unsafe { libc::fstatat(dir, c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    (r == 0).then_some(st.st_mode)
}

/// Removes whatever exists at `name` (recursively for directories), never following symlinks.
fn remove_existing(dir: i32, name: &Path) -> io::Result<()> {
    let Some(mode) = lstat_at(dir, name) else {
        return Ok(());
    };
    if mode & libc::S_IFMT == libc::S_IFDIR {
        let sub = sys::openat(
            dir,
            name,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        )?;
        let names: Vec<PathBuf> = std::fs::read_dir(format!("/proc/self/fd/{}", sub.as_raw_fd()))?
            .filter_map(|e| e.ok().map(|e| PathBuf::from(e.file_name())))
            .collect();
        for n in names {
            remove_existing(sub.as_raw_fd(), &n)?;
        }
        // SAFETY: valid C string.
        rc(with_c(name, |c| unsafe {
            libc::unlinkat(dir, c.as_ptr(), libc::AT_REMOVEDIR)
        })?)
    } else {
        // SAFETY: valid C string.
        rc(with_c(name, |c| unsafe {
            libc::unlinkat(dir, c.as_ptr(), 0)
        })?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_rejects_absolute_and_parent() {
        assert!(matches!(
            sanitize_entry_path(Path::new("/etc/passwd")),
            Err(UnpackError::AbsolutePath { .. })
        ));
        assert!(matches!(
            sanitize_entry_path(Path::new("a/../../b")),
            Err(UnpackError::ParentComponent { .. })
        ));
        assert!(matches!(
            sanitize_entry_path(Path::new("../x")),
            Err(UnpackError::ParentComponent { .. })
        ));
    }

    #[test]
    fn sanitize_normalizes_current_dir() {
        assert_eq!(
            sanitize_entry_path(Path::new("./a/./b")).unwrap(),
            Some(PathBuf::from("a/b"))
        );
        assert_eq!(sanitize_entry_path(Path::new("./")).unwrap(), None);
        assert_eq!(
            sanitize_entry_path(Path::new("bin/sh")).unwrap(),
            Some(PathBuf::from("bin/sh"))
        );
    }
}
