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
//! Why memfd rather than runc 1.2's read-only overlay bind of the binary: it needs no mount
//! namespace juggling in the (multi-threaded) caller, and the library does the copy once per
//! [`crate::Runtime`] (one `sendfile`), so the per-container cost is zero. The CLI pays one
//! copy per invocation (measured in BENCHMARKS.md).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::sys;

/// A sealed memfd copy of an executable.
#[derive(Debug)]
pub struct SealedExe {
    fd: OwnedFd,
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
        Ok(SealedExe { fd })
    }

    /// Path that execs the sealed copy from this process (`/proc/self/fd/N`; the fd is
    /// `O_CLOEXEC`, which execve tolerates for ELF binaries).
    pub fn exec_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    /// The raw fd.
    pub fn fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

/// True when the current process runs from a sealed memfd (used by tests and `init` checks).
pub fn running_sealed() -> bool {
    let Ok(f) = File::open("/proc/self/exe") else {
        return false;
    };
    sys::get_seals(f.as_raw_fd()).is_ok_and(|s| s & libc::F_SEAL_WRITE != 0)
}
