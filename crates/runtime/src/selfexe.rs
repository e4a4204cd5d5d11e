//! A sealed in-memory copy of the runtime binary, used to start every init/exec helper.
//!
//! CVE-2019-5736: a container process can reach the binary of a runtime process that is inside
//! (or entering) its namespaces through `/proc/<pid>/exe`, or by making the runtime exec
//! `/proc/self/exe`, and then reopen it for writing to overwrite the host binary. We never
//! run setup code from the host file: helpers are exec'd from a `memfd` holding a copy of the
//! binary, sealed with `F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE`, so even a
//! process that gets hold of it cannot modify a single byte, and the host file is never the
//! `exe` of anything inside a container. As defence in depth, helpers also make themselves
//! non-dumpable before joining a container, which denies `/proc/<pid>/exe` and `/proc/<pid>/fd`
//! to container processes (they lack CAP_SYS_PTRACE).
//!
//! Why memfd in the library rather than runc 1.2's read-only mount of the binary: it needs no
//! mount namespace juggling in the (multi-threaded) caller, and the library does the copy once
//! per [`crate::Runtime`] (one `sendfile`), so the per-container cost is zero. The CLI, a
//! short-lived single-threaded process, would pay the copy (and freeing it) on every call —
//! about 2.4 ms of CPU for a 3.7 MB binary, a fifth of a whole `run` (BENCHMARKS.md) — so it
//! protects the binary the other way ([`SealedExe::read_only_self`]): in a private mount
//! namespace of its own it binds its binary read-only onto itself and execs helpers from
//! there. Their `/proc/<pid>/exe` then leads to that read-only mount, which lives in the CLI's
//! namespace: opening it for writing fails with `EROFS`, and no process in a container's
//! namespace can remount it (a mount outside one's namespace cannot be changed).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::sys;

/// The executable helpers are started from: a sealed memfd copy of the binary, or the binary
/// behind a read-only bind mount of a private mount namespace (see the module comment).
#[derive(Debug)]
pub struct SealedExe {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Memfd(OwnedFd),
    ReadOnly(PathBuf),
}

impl SealedExe {
    /// Copies `path` into a new sealed memfd.
    pub fn copy_of(path: &Path) -> io::Result<Self> {
        let src = File::open(path)?;
        let len = src.metadata()?.len();
        let fd = sys::memfd_create("swarm-runtime")?;
        let mut off: libc::off_t = 0;
        while (off as u64) < len {
            // SAFETY: both fds are open; `off` is a valid in/out offset.
            let n = unsafe {
                libc::sendfile(
                    fd.as_raw_fd(),
                    src.as_raw_fd(),
                    &mut off,
                    (len - off as u64) as usize,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if n == 0 {
                break;
            }
        }
        sys::add_seals(
            &fd,
            libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE,
        )?;
        Ok(SealedExe {
            kind: Kind::Memfd(fd),
        })
    }

    /// For a short-lived, single-threaded process (the CLI): moves it into a private mount
    /// namespace (a slave of the host's, so nothing propagates back) and binds its own binary
    /// read-only onto itself there. Fails where mount namespaces cannot be made (the caller
    /// then copies instead) and in a multi-threaded process (`unshare` refuses).
    pub fn read_only_self() -> io::Result<Self> {
        let exe = std::fs::read_link("/proc/self/exe")?;
        if !exe.is_absolute() || exe.to_string_lossy().ends_with(" (deleted)") {
            return Err(io::Error::other("the binary's path is not usable"));
        }
        // SAFETY: unshare with a flag only; refused (EINVAL) in a multi-threaded process.
        if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let slave = libc::MS_REC | libc::MS_SLAVE;
        sys::mount(None, Path::new("/"), None, slave, None)?;
        sys::mount(Some(&exe), &exe, None, libc::MS_BIND, None)?;
        let ro =
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
        sys::mount(None, &exe, None, ro, None)?;
        Ok(SealedExe {
            kind: Kind::ReadOnly(exe),
        })
    }

    /// Path that execs the protected binary from this process (`/proc/self/fd/N` for the
    /// memfd, whose fd is `O_CLOEXEC`, which execve tolerates for ELF binaries).
    pub fn exec_path(&self) -> PathBuf {
        match &self.kind {
            Kind::Memfd(fd) => PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
            Kind::ReadOnly(p) => p.clone(),
        }
    }
}
