//! The kernel calls of the mount executor: the [`MountSys`] seam and [`HostMounts`], which
//! makes them for real (openat2 `RESOLVE_IN_ROOT`, the `*at` creation calls, `fstat`,
//! `readlinkat`, `mount`). Each method is one call with no policy: which path is opened, what
//! is created, which flags a mount gets and what a failure means belong to [`super::apply`],
//! never here.

use super::*;
use std::ffi::OsStr;

/// The calls [`super::apply`] makes, one kernel call (or, for [`MountSys::copy_up`], one
/// coarse step) each, so that what it does with them is unit-tested without root. Directory
/// arguments are `O_PATH` descriptors returned by [`MountSys::open_root`] or
/// [`MountSys::open_in_root`]; mounts go through their `/proc/self/fd/N` paths.
pub(super) trait MountSys {
    /// An open descriptor; its raw number names it in `/proc/self/fd`.
    type Fd: AsRawFd;
    /// `openat(AT_FDCWD, dir, O_PATH | O_DIRECTORY)`: the rootfs everything resolves in.
    fn open_root(&mut self, dir: &Path) -> io::Result<Self::Fd>;
    /// `openat2(root, path, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: symlinks are
    /// resolved as if `root` were `/`.
    fn open_in_root(&mut self, root: &Self::Fd, path: &Path, flags: i32) -> io::Result<Self::Fd>;
    /// `mkdirat(dir, name, mode)`.
    fn mkdir(&mut self, dir: &Self::Fd, name: &OsStr, mode: u32) -> io::Result<()>;
    /// A new empty file: `openat(dir, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW, mode)`,
    /// closed at once.
    fn create_file(&mut self, dir: &Self::Fd, name: &OsStr, mode: u32) -> io::Result<()>;
    /// `fchownat(dir, name, uid, gid, AT_SYMLINK_NOFOLLOW)`.
    fn chown(&mut self, dir: &Self::Fd, name: &OsStr, uid: u32, gid: u32) -> io::Result<()>;
    /// `symlinkat(target, dir, name)`.
    fn symlink(&mut self, target: &str, dir: &Self::Fd, name: &OsStr) -> io::Result<()>;
    /// `readlinkat(dir, name)` (at most `PATH_MAX` bytes).
    fn readlink(&mut self, dir: &Self::Fd, name: &OsStr) -> io::Result<PathBuf>;
    /// The file type bits (`st_mode & S_IFMT`) of `fstat(fd)`.
    fn file_type(&mut self, fd: &Self::Fd) -> io::Result<libc::mode_t>;
    /// Raw `mount(2)`; `None` arguments are NULL.
    fn mount(
        &mut self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: libc::c_ulong,
        data: Option<&str>,
    ) -> io::Result<()>;
    /// Populates the host directory `to` from the tree at `from` (a `/proc/self/fd/N` path)
    /// when `to` is empty (see [`copy_up_into`]).
    fn copy_up(&mut self, from: &Path, to: &Path) -> io::Result<()>;
}

/// The real calls.
pub(super) struct HostMounts;

impl MountSys for HostMounts {
    type Fd = OwnedFd;
    fn open_root(&mut self, dir: &Path) -> io::Result<OwnedFd> {
        sys::openat(libc::AT_FDCWD, dir, libc::O_PATH | libc::O_DIRECTORY, 0)
    }
    fn open_in_root(&mut self, root: &OwnedFd, path: &Path, flags: i32) -> io::Result<OwnedFd> {
        open_in_root(root.as_raw_fd(), path, flags)
    }
    fn mkdir(&mut self, dir: &OwnedFd, name: &OsStr, mode: u32) -> io::Result<()> {
        let name = sys::cstr(Path::new(name))?;
        // SAFETY: valid C string; dir is an O_PATH dir fd (allowed for *at creation calls).
        if unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    fn create_file(&mut self, dir: &OwnedFd, name: &OsStr, mode: u32) -> io::Result<()> {
        let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW;
        // The new fd (O_CLOEXEC) is closed when dropped.
        sys::openat(dir.as_raw_fd(), Path::new(name), flags, mode).map(drop)
    }
    fn chown(&mut self, dir: &OwnedFd, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
        let name = sys::cstr(Path::new(name))?;
        // SAFETY: valid C string and dir fd; never follows a symlink.
        let r = unsafe {
            libc::fchownat(
                dir.as_raw_fd(),
                name.as_ptr(),
                uid,
                gid,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    fn symlink(&mut self, target: &str, dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
        let t = sys::cstr(Path::new(target))?;
        let n = sys::cstr(Path::new(name))?;
        // SAFETY: valid C strings and an O_PATH dir fd.
        if unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), n.as_ptr()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    fn readlink(&mut self, dir: &OwnedFd, name: &OsStr) -> io::Result<PathBuf> {
        use std::os::unix::ffi::OsStrExt;
        let c = sys::cstr(Path::new(name))?;
        let mut buf = vec![0u8; libc::PATH_MAX as usize];
        // SAFETY: valid C string, dir fd and buffer of the given length.
        let n = unsafe {
            libc::readlinkat(
                dir.as_raw_fd(),
                c.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        buf.truncate(n as usize);
        Ok(PathBuf::from(OsStr::from_bytes(&buf)))
    }
    fn file_type(&mut self, fd: &OwnedFd) -> io::Result<libc::mode_t> {
        // SAFETY: an all-zero stat is a valid value of this plain C struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat on an O_PATH fd with a valid buffer.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st.st_mode & libc::S_IFMT)
    }
    fn mount(
        &mut self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: libc::c_ulong,
        data: Option<&str>,
    ) -> io::Result<()> {
        sys::mount(source, target, fstype, flags, data)
    }
    fn copy_up(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        copy_up_into(from, to)
    }
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
