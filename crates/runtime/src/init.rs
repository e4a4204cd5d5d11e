//! The re-exec'd helper modes: container creation (`create`) and `exec` into a running
//! container. Setup never happens in a fork of the (possibly multi-threaded) caller: the
//! runtime spawns its own binary, from a sealed memfd ([`crate::selfexe`]), with
//! `argv[1] = INIT_ARG`, and a binary's `main` calls [`maybe_run_init`] first thing.
//!
//! Process model of one container (no long-lived shim):
//! ```text
//! runtime (any threads) --spawn--> P0 "create" (single-threaded, host namespaces)
//!   P0: join cgroup, oom_score_adj -999, unshare(pid), fork P1,
//!       wait for P1's "ready" on a pipe, write state.json {pid, start time}, exit.
//!   P1 = pid 1 of the container: non-dumpable, unshare(mnt|uts|ipc|cgroup[|net]), setsid,
//!       rslave /, overlay rootfs, /proc /dev
//!       /sys, masked + read-only paths, hostname, lo up, pivot_root, resolve user and
//!       executable, report "ready"; block on start.fifo until `start`; fork P2; then act as
//!       init: reap zombies, forward signals to P2, copy P2's stdout/stderr into the log with
//!       timestamps, and when P2 exits write exit.json and exit (the kernel then kills the
//!       rest of the pid namespace and drops the mount namespace with the overlay).
//!   P2 = the workload: stdio, oom_score_adj 0, bounding set, setgroups/setgid/setuid,
//!       capabilities, no_new_privs, close every fd but 0-2, chdir, seccomp, execve.
//! ```
//! `exec`: E0 joins the cgroup and the init's namespaces with setns, forks E1 (now inside the
//! pid namespace) which hardens itself like P2 and execs; E0 exits with E1's status.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::logs::{LineWriter, Stream};
use crate::options::ContainerOptions;
use crate::spec::{self, ContainerSpec, NetworkMode, ProcessSpec, ResolvedUser, StdioMode};
use crate::state::{self, ExitRecord, InitState, StateDir, StoredConfig};
use crate::{caps, mounts, seccomp, sys};

mod exec;
mod setup;
mod supervise;
mod workload;
use exec::*;
use supervise::*;
pub use workload::find_executable;
use workload::*;

/// `argv[1]` that selects the helper mode.
pub const INIT_ARG: &str = "__swarm-runtime-init";

/// Errors inside the helper processes; they are reported to the runtime as text.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{what}: {source}")]
    Sys { what: String, source: io::Error },
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error(transparent)]
    Mount(#[from] mounts::MountError),
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error("exec: {name:?}: executable file not found in $PATH")]
    NotFound { name: String },
    #[error("container {what} missing from the state dir; recreate the container")]
    Missing { what: &'static str },
    #[error("workdir {cwd:?} resolves outside the container root; refusing to start")]
    WorkdirEscape { cwd: String },
    #[error("container init is no longer running")]
    NotRunning,
}

fn sys_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> InitError {
    let what = what.into();
    move |source| InitError::Sys { what, source }
}

fn last(what: &str) -> InitError {
    InitError::Sys {
        what: what.into(),
        source: io::Error::last_os_error(),
    }
}

/// What `exec` runs (serialized onto the helper's command line).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub cwd: Option<String>,
    /// Detached (runc's `exec --detach --pid-file`): write the command's host pid here once
    /// it runs and exit without waiting; the caller (a subreaper) reaps it.
    #[serde(default)]
    pub detach_pid_file: Option<PathBuf>,
    /// The command's terminal: a pty whose master is sent to this unix socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_socket: Option<PathBuf>,
}

/// Call first thing in `main` of any binary that hosts the runtime (swarmd, swarm-runtime):
/// returns immediately unless this process was spawned as a runtime helper, in which case it
/// runs the helper and exits the process.
pub fn maybe_run_init() {
    let mut args = std::env::args_os();
    let _ = args.next();
    if args.next().as_deref() != Some(OsStr::new(INIT_ARG)) {
        return;
    }
    let mode = args.next().unwrap_or_default();
    let dir = PathBuf::from(args.next().unwrap_or_default());
    let code = match mode.to_str() {
        Some("create") => run_create(&dir),
        Some("exec") => {
            let req = args
                .next()
                .and_then(|a| serde_json::from_slice::<ExecRequest>(a.as_bytes()).ok());
            match req {
                Some(r) => run_exec(&dir, &r),
                None => {
                    eprintln!("swarm-runtime init: missing or invalid exec request");
                    125
                }
            }
        }
        _ => {
            eprintln!("swarm-runtime init: unknown mode {mode:?}");
            125
        }
    };
    std::process::exit(code);
}

fn pipe() -> Result<(OwnedFd, OwnedFd), InitError> {
    sys::pipe().map_err(sys_err("pipe2"))
}

fn fork() -> Result<libc::pid_t, InitError> {
    // SAFETY: the helper processes are single-threaded (fresh exec, no threads spawned), so
    // the child may run arbitrary code after fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(last("fork"));
    }
    Ok(pid)
}

fn write_all_fd(fd: RawFd, b: &[u8]) {
    // SAFETY: the fd is borrowed for the duration of the write only (ManuallyDrop keeps it open).
    let mut f = std::mem::ManuallyDrop::new(unsafe { fs::File::from_raw_fd(fd) });
    let _ = f.write_all(b);
}

fn wait_status(pid: libc::pid_t) -> Option<i32> {
    let mut st = 0;
    loop {
        // SAFETY: waitpid on our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r == pid {
            return Some(st);
        }
        if r < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return None;
        }
    }
}

fn join_cgroup(dirs: &[PathBuf]) -> Result<(), InitError> {
    let me = std::process::id().to_string();
    for d in dirs {
        let p = d.join("cgroup.procs");
        fs::write(&p, &me).map_err(sys_err(format!("join cgroup {}", p.display())))?;
    }
    Ok(())
}

// ---------------------------------------------------------------- create (P0 / P1)

fn run_create(dir: &Path) -> i32 {
    let sd = StateDir::new(dir.to_path_buf());
    match create_p0(&sd) {
        Ok(()) => 0,
        Err(e) => {
            let _ = fs::write(sd.init_err(), e.to_string());
            1
        }
    }
}

fn create_p0(sd: &StateDir) -> Result<(), InitError> {
    let cfg: StoredConfig = state::read_json(&sd.config())?.ok_or(InitError::Missing {
        what: "config.json",
    })?;
    join_cgroup(&cfg.cgroup_dirs)?;
    let _ = fs::write("/proc/self/oom_score_adj", "-999");
    // Made before the fork, so the init inherits the descriptor (at the same number, which
    // state.json records for `exec`).
    let userns = cfg
        .spec
        .user_namespace
        .as_ref()
        .map(crate::userns::create_namespace)
        .transpose()
        .map_err(sys_err("create the container's user namespace"))?;
    // Only the pid namespace is unshared here (it applies to our children): the other
    // namespaces are unshared by P1 itself, so that P1's pivot_root never changes our root.
    // SAFETY: unshare with flags only.
    if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
        return Err(last("unshare pid namespace"));
    }
    let (r, w) = pipe()?;
    let pid = fork()?;
    if pid == 0 {
        drop(r);
        let mut sync = Some(w);
        let err = container_init(sd, &cfg, userns.as_ref(), &mut sync);
        // Only reached on error (before or after "ok": after it, the pipe is gone).
        if let Some(w) = &sync {
            write_all_fd(w.as_raw_fd(), format!("err:{err}").as_bytes());
        }
        // SAFETY: terminate the child without running the parent's atexit handlers.
        unsafe { libc::_exit(1) };
    }
    drop(w);
    let mut msg = String::new();
    let _ = fs::File::from(r).read_to_string(&mut msg);
    let msg = if msg == "ok" {
        // The start time identifies the init from now on (pid reuse): without it there is
        // no container, rather than one that later looks dead.
        match sys::proc_stat(pid) {
            Ok(Some(st)) => {
                let st = InitState {
                    pid,
                    start_time: st.start_time,
                    userns_fd: userns.as_ref().map(|fd| fd.as_raw_fd()),
                };
                state::write_json(&sd.init_state(), &st)?;
                return Ok(());
            }
            Ok(None) => String::new(),
            Err(e) => format!("cannot read the start time of the container init: {e}"),
        }
    } else {
        msg.strip_prefix("err:").unwrap_or(&msg).to_string()
    };
    // SAFETY: kill our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_status(pid);
    Err(InitError::Sys {
        what: "container setup failed".into(),
        source: io::Error::other(if msg.is_empty() {
            "container init died during setup".to_string()
        } else {
            msg
        }),
    })
}

/// P1. Returns only on error (the caller reports it).
fn container_init(
    sd: &StateDir,
    cfg: &StoredConfig,
    userns: Option<&OwnedFd>,
    sync: &mut Option<OwnedFd>,
) -> InitError {
    match container_init_inner(sd, cfg, userns, sync) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

#[derive(Debug)]
enum Never {}

fn container_init_inner(
    sd: &StateDir,
    cfg: &StoredConfig,
    userns: Option<&OwnedFd>,
    sync: &mut Option<OwnedFd>,
) -> Result<Never, InitError> {
    let spec = &cfg.spec;
    sys::set_dumpable(false).map_err(sys_err("prctl(PR_SET_DUMPABLE)"))?;
    setup::enter_namespaces(&mut setup::HostSetup, spec, userns.is_some())?;
    let host = HostHandles::open(sd, spec)?;
    let hostname = setup::build_root(&mut setup::HostSetup, sd, spec, userns)?;
    let mut proc_ = prepare_process(
        &spec.process,
        &spec.options,
        &hostname,
        spec.user_namespace.as_ref(),
    )?;
    proc_.userns = userns.map(|fd| fd.as_raw_fd());
    // Sent during create, as runc does: the receiver waits for it before it calls `start`.
    let console = host
        .console
        .map(|sock| workload::send_console_master(&sock))
        .transpose()?;
    // Ready: tell P0, then wait for `start`.
    if let Some(w) = sync.take() {
        write_all_fd(w.as_raw_fd(), b"ok");
    }
    let started = wait_for_start(host.fifo)?;
    // From here on the container has run: whatever happens, its end is recorded before the
    // init exits, so that once the init is gone the record is there.
    let log = host.log_fd.map(|fd| {
        crate::logs::RotatingLog::new(
            fs::File::from(fd),
            host.dir_fd.as_raw_fd(),
            spec.options.log_max_size,
            spec.options.log_max_files,
        )
    });
    let rec = supervise(spec.stdio, &proc_, log, started, console).unwrap_or_else(|e| ExitRecord {
        code: Some(255),
        signal: None,
        finished: crate::timefmt::rfc3339_now(),
        oom_killed: false,
        error: Some(format!("container init failed: {e}")),
    });
    write_exit(&host.dir_fd, &rec);
    // The init's own status is the workload's (128 + signal when it was killed), for
    // callers that reap the init themselves, as containerd's runc shim does: that is how a
    // container's exit status reaches Docker.
    std::process::exit(
        rec.code
            .unwrap_or_else(|| 128 + rec.signal.unwrap_or(0))
            .clamp(0, 255),
    )
}

/// What P1 needs from the host's filesystem after `/` is replaced: the state dir (exit record,
/// log rotation), the log, the console socket, the start fifo.
struct HostHandles {
    dir_fd: OwnedFd,
    log_fd: Option<OwnedFd>,
    console: Option<std::os::unix::net::UnixStream>,
    fifo: OwnedFd,
}

impl HostHandles {
    fn open(sd: &StateDir, spec: &ContainerSpec) -> Result<HostHandles, InitError> {
        let dir_fd = sys::openat(
            libc::AT_FDCWD,
            &sd.dir,
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        )
        .map_err(sys_err(format!("open {}", sd.dir.display())))?;
        let log_fd = match spec.stdio {
            StdioMode::Log => Some(
                sys::openat(
                    libc::AT_FDCWD,
                    &sd.log(),
                    libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT,
                    0o640,
                )
                .map_err(sys_err(format!("open {}", sd.log().display())))?,
            ),
            StdioMode::Inherit | StdioMode::Console => None,
        };
        // The console socket is a path of the host's: reach it before the rootfs replaces
        // `/`; the pty itself comes from the container's devpts, after.
        let console = match (spec.stdio, &spec.console_socket) {
            (StdioMode::Console, Some(path)) => Some(
                std::os::unix::net::UnixStream::connect(path).map_err(sys_err(format!(
                    "connect to console socket {}",
                    path.display()
                )))?,
            ),
            _ => None,
        };
        let fifo = sys::openat(libc::AT_FDCWD, &sd.fifo(), libc::O_PATH, 0)
            .map_err(sys_err(format!("open {}", sd.fifo().display())))?;
        Ok(HostHandles {
            dir_fd,
            log_fd,
            console,
            fifo,
        })
    }
}

/// Blocks until `start` opens the fifo for reading; returns the write end it then holds.
fn wait_for_start(fifo: OwnedFd) -> Result<OwnedFd, InitError> {
    let p = CString::new(format!("/proc/self/fd/{}", fifo.as_raw_fd())).expect("no NUL");
    // SAFETY: valid path; blocks until `start` opens the fifo for reading.
    let fd = unsafe { libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(last("open start fifo"));
    }
    // SAFETY: we own fd.
    let f = unsafe { OwnedFd::from_raw_fd(fd) };
    write_all_fd(f.as_raw_fd(), b"1");
    Ok(f)
}

fn loopback_up() -> io::Result<()> {
    // SAFETY: plain socket creation.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd we own.
    let s = unsafe { OwnedFd::from_raw_fd(s) };
    // SAFETY: all-zero ifreq is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo".iter().enumerate() {
        ifr.ifr_name[i] = *b as libc::c_char;
    }
    // SAFETY: ifreq is a valid in/out buffer for these ioctls.
    unsafe {
        if libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            return Err(io::Error::last_os_error());
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
