//! Thin, audited wrappers over the raw syscalls the runtime needs that `nix` does not cover
//! (openat2, pidfd, capset, close_range, seccomp). Every `unsafe` block of the crate that talks
//! to the kernel directly lives here or next to a pure builder, each with a `// SAFETY:` note.
//! All wrappers return `std::io::Result` with the OS error; callers add path context.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Converts a path into a C string, refusing interior NUL bytes.
pub fn cstr(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `struct open_how` of openat2(2).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_BENEATH: u64 = 0x08;

/// Opens `path` relative to `dir`, refusing any resolution (`..`, absolute symlinks, symlinks
/// pointing outside) that would leave `dir` (`RESOLVE_BENEATH`). Escapes fail with `EXDEV`.
pub fn openat_beneath(dir: RawFd, path: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let c = cstr(path)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: u64::from(mode),
        resolve: RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: `c` is a valid NUL-terminated string and `how` a properly laid out open_how that
    // outlives the call; the kernel returns a new fd or -1.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    })?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Plain `openat(2)` returning an owned fd (always `O_CLOEXEC`).
pub fn openat(dir: RawFd, path: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let c = cstr(path)?;
    // SAFETY: valid C string; openat returns a fresh fd or -1.
    let fd = unsafe { libc::openat(dir, c.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd owned by us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens a pidfd for `pid` (Linux >= 5.3).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags, returns a new fd or -1.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: fresh fd owned by us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Polls one fd for readability; returns true when it became readable within `timeout_ms`
/// (`-1` waits forever).
pub fn poll_readable(fd: RawFd, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd struct that lives for the call.
        let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(r > 0);
    }
}

/// Closes every fd >= `from` except `keep` (close_range(2), with a /proc/self/fd fallback).
pub fn close_fds_from(from: u32, keep: Option<RawFd>) -> io::Result<()> {
    let ranges: Vec<(u32, u32)> = match keep {
        Some(k) if k as u32 >= from => {
            let k = k as u32;
            let mut v = Vec::new();
            if k > from {
                v.push((from, k - 1));
            }
            v.push((k + 1, u32::MAX));
            v
        }
        _ => vec![(from, u32::MAX)],
    };
    for (lo, hi) in ranges {
        // SAFETY: close_range only closes descriptors; we own the whole fd table in the
        // single-threaded init/exec helpers that call this right before exec.
        let r = unsafe { libc::syscall(libc::SYS_close_range, lo, hi, 0) };
        if r < 0 {
            // Fallback for kernels < 5.9: iterate /proc/self/fd.
            let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect();
            for fd in fds {
                if fd as u32 >= lo && fd as u32 <= hi {
                    // SAFETY: closing an fd number; ours, single-threaded.
                    unsafe { libc::close(fd) };
                }
            }
        }
    }
    Ok(())
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)`.
pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    check(r as libc::c_long).map(|_| ())
}

const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
const KEYCTL_SETPERM: libc::c_long = 5;

/// Joins a new anonymous session keyring (what runc does unless `--no-new-keyring`): the
/// caller and its children no longer possess the session keyring they inherited. A kernel
/// without keyrings (ENOSYS) has nothing to leave.
pub fn join_new_session_keyring() -> io::Result<()> {
    match join_session_keyring(None) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => Ok(()),
        r => r.map(|_| ()),
    }
}

/// `keyctl(KEYCTL_JOIN_SESSION_KEYRING, name)` for the calling thread: a new keyring (`None`:
/// anonymous) or the named one; returns its serial number.
pub fn join_session_keyring(name: Option<&str>) -> io::Result<i64> {
    let name = name.map(|n| CString::new(n).map_err(|_| io::Error::other("NUL in name")));
    let name = name.transpose()?;
    let ptr = name.as_ref().map_or(std::ptr::null(), |n| n.as_ptr());
    // SAFETY: keyctl with an integer and a valid C string or NULL.
    let r = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, ptr) };
    check(r)
}

/// `keyctl(KEYCTL_SETPERM, key, perm)`.
pub fn set_key_permissions(key: i64, perm: u32) -> io::Result<()> {
    // SAFETY: keyctl with integer arguments only.
    let r = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_SETPERM,
            key as libc::c_long,
            perm as libc::c_long,
        )
    };
    check(r).map(|_| ())
}

/// `prctl(PR_SET_DUMPABLE, v)`.
pub fn set_dumpable(v: bool) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, u64::from(v), 0, 0, 0) };
    check(r as libc::c_long).map(|_| ())
}

/// `prctl(PR_SET_PDEATHSIG, sig)`.
pub fn set_parent_death_signal(sig: i32) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) };
    check(r as libc::c_long).map(|_| ())
}

/// Raw `mount(2)`; `None` arguments are passed as NULL.
pub fn mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let src = source.map(cstr).transpose()?;
    let tgt = cstr(target)?;
    let fs = fstype
        .map(|s| CString::new(s).map_err(|_| io::ErrorKind::InvalidInput))
        .transpose()?;
    let dat = data
        .map(|s| CString::new(s).map_err(|_| io::ErrorKind::InvalidInput))
        .transpose()?;
    // SAFETY: every pointer is either NULL or a valid NUL-terminated string alive for the call.
    let r = unsafe {
        libc::mount(
            src.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            tgt.as_ptr(),
            fs.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            dat.as_ref()
                .map_or(std::ptr::null(), |s| s.as_ptr() as *const libc::c_void),
        )
    };
    check(r as libc::c_long).map(|_| ())
}

/// Raw `pivot_root(2)`.
pub fn pivot_root(new_root: &Path, put_old: &Path) -> io::Result<()> {
    let a = cstr(new_root)?;
    let b = cstr(put_old)?;
    // SAFETY: two valid C strings.
    check(unsafe { libc::syscall(libc::SYS_pivot_root, a.as_ptr(), b.as_ptr()) }).map(|_| ())
}

/// Raw `umount2(2)`.
pub fn umount2(target: &Path, flags: i32) -> io::Result<()> {
    let t = cstr(target)?;
    // SAFETY: valid C string.
    check(unsafe { libc::umount2(t.as_ptr(), flags) } as libc::c_long).map(|_| ())
}

/// Sets an extended attribute on an open fd.
pub fn fsetxattr(fd: RawFd, name: &str, value: &[u8]) -> io::Result<()> {
    let n = CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: valid name string and a value buffer of the given length.
    let r = unsafe {
        libc::fsetxattr(
            fd,
            n.as_ptr(),
            value.as_ptr() as *const libc::c_void,
            value.len(),
            0,
        )
    };
    check(r as libc::c_long).map(|_| ())
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: valid two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fds we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sets an extended attribute of `path` itself (symlinks not followed).
pub fn lsetxattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let p = cstr(path)?;
    let n = CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: valid strings and a value buffer of the given length.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr() as *const libc::c_void,
            value.len(),
            0,
        )
    };
    check(r as libc::c_long).map(|_| ())
}

/// Creates a memfd with `MFD_CLOEXEC | MFD_ALLOW_SEALING`.
pub fn memfd_create(name: &str) -> io::Result<OwnedFd> {
    let n = CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: valid name; returns a fresh fd or -1.
    let fd = unsafe { libc::memfd_create(n.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd owned by us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds seals to a memfd.
pub fn add_seals(fd: &OwnedFd, seals: i32) -> io::Result<()> {
    // SAFETY: fcntl with integer arguments on an fd we own.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) };
    check(r as libc::c_long).map(|_| ())
}

/// Reads the seals of an fd.
pub fn get_seals(fd: RawFd) -> io::Result<i32> {
    // SAFETY: fcntl with integer arguments.
    let r = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
    check(r as libc::c_long).map(|r| r as i32)
}

/// Sends a signal to a process through its pidfd (immune to pid reuse).
pub fn pidfd_send_signal(pidfd: RawFd, sig: i32) -> io::Result<()> {
    // SAFETY: integer arguments and a NULL siginfo.
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd,
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
    .map(|_| ())
}

/// Returns the process start time (field 22 of /proc/<pid>/stat, in clock ticks), used to tell
/// a live container init from an unrelated process that reused its pid.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    // After ")" fields start at field 3 (state); start time is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// What `/proc/<pid>/stat` says about a process: its state letter and start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// `R`, `S`, `D`, `Z` (zombie: exited, not yet reaped), ...
    pub state: u8,
    /// Field 22, in clock ticks since boot.
    pub start_time: u64,
}

/// Reads `/proc/<pid>/stat`. `Ok(None)` only when there is no such process (`ENOENT`,
/// `ESRCH`); any other failure (`EMFILE`, `ENOMEM`, ...) is an error, never "not running":
/// a loaded host must not turn into a dead container.
pub fn proc_stat(pid: i32) -> io::Result<Option<ProcStat>> {
    let s = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unparsable /proc/{pid}/stat"),
        )
    };
    let rest = s.get(s.rfind(')').ok_or_else(bad)? + 2..).ok_or_else(bad)?;
    let mut fields = rest.split_whitespace();
    let state = *fields
        .next()
        .and_then(|f| f.as_bytes().first())
        .ok_or_else(bad)?;
    let start_time = fields
        .nth(18)
        .and_then(|f| f.parse().ok())
        .ok_or_else(bad)?;
    Ok(Some(ProcStat { state, start_time }))
}

/// True when the process behind a pidfd has exited (the pidfd is readable from then on).
pub fn pidfd_exited(pidfd: RawFd) -> io::Result<bool> {
    poll_readable(pidfd, 0)
}

/// `renameat2(RENAME_NOREPLACE)`: moves `from` to `to` unless `to` exists (`AlreadyExists`).
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let a = cstr(from)?;
    let b = cstr(to)?;
    // SAFETY: two valid C strings relative to the current directory; integer flags.
    check(unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    })
    .map(|_| ())
}

/// True when `pid` is alive and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => match s.rfind(')') {
            Some(i) => !matches!(s.as_bytes().get(i + 2), Some(b'Z') | Some(b'X')),
            None => false,
        },
        Err(_) => false,
    }
}

/// An extended attribute of `path` itself (symlinks not followed); `None` when it has none
/// of that name.
pub fn lgetxattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let p = cstr(path)?;
    let n = CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: valid strings and a buffer of the given length.
        let r = unsafe {
            libc::lgetxattr(
                p.as_ptr(),
                n.as_ptr(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
            )
        };
        if r >= 0 {
            buf.truncate(r as usize);
            return Ok(Some(buf));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => return Ok(None),
            Some(libc::ERANGE) if buf.len() < 1 << 16 => buf.resize(buf.len() * 4, 0),
            _ => return Err(e),
        }
    }
}

/// The names of `path`'s extended attributes (symlinks not followed).
pub fn llistxattr(path: &Path) -> io::Result<Vec<String>> {
    let p = cstr(path)?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: a valid string and a buffer of the given length.
        let r = unsafe {
            libc::llistxattr(p.as_ptr(), buf.as_mut_ptr() as *mut libc::c_char, buf.len())
        };
        if r >= 0 {
            buf.truncate(r as usize);
            return Ok(buf
                .split(|b| *b == 0)
                .filter(|n| !n.is_empty())
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            Some(libc::ERANGE) if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            _ => return Err(e),
        }
    }
}

/// Tunes glibc's allocator for a long-running daemon that allocates in bursts (thousands of
/// tasks at once): blocks of 256 KiB and more (the big vectors of a burst) are mapped on their
/// own and unmapped when freed, the heap top is given back past 256 KiB free, and at most two
/// arenas are used. Measured on the fake-agent benchmark's leader (300 agents, four rounds of
/// 5,000 tasks): RSS at round 4 134–139 MiB instead of 175–187 MiB, throughput within noise;
/// a 64 KiB threshold saved a little more memory but cost ~25 % of the throughput (BENCHMARKS
/// 2026-12-04). A no-op outside glibc.
pub fn tune_allocator_for_bursts() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt with glibc's documented parameter numbers and integer values; called
    // before the daemon starts its threads.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
