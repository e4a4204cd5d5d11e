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
use crate::spec::{self, NetworkMode, ProcessSpec, ResolvedUser, StdioMode};
use crate::state::{self, ExitRecord, InitState, StateDir, StoredConfig};
use crate::{caps, mounts, seccomp, sys};

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
    let mut fds = [0; 2];
    // SAFETY: valid two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(last("pipe2"));
    }
    // SAFETY: fresh fds we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
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
        let err = container_init(sd, &cfg, &mut sync);
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
fn container_init(sd: &StateDir, cfg: &StoredConfig, sync: &mut Option<OwnedFd>) -> InitError {
    match container_init_inner(sd, cfg, sync) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

enum Never {}

fn container_init_inner(
    sd: &StateDir,
    cfg: &StoredConfig,
    sync: &mut Option<OwnedFd>,
) -> Result<Never, InitError> {
    let spec = &cfg.spec;
    sys::set_dumpable(false).map_err(sys_err("prctl(PR_SET_DUMPABLE)"))?;
    let mut flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWCGROUP;
    if spec.network == NetworkMode::None {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: unshare with flags only.
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(last("unshare namespaces"));
    }
    // SAFETY: setsid has no arguments.
    unsafe { libc::setsid() };
    // Namespaced sysctls (checked by the spec): /proc/sys answers for the namespaces of the
    // writer, which are the container's from here on.
    for (k, v) in &spec.options.sysctls {
        let path = crate::options::sysctl_path(k);
        fs::write(&path, v).map_err(sys_err(format!("set sysctl {k}={v}")))?;
    }
    sys::mount(
        None,
        Path::new("/"),
        None,
        libc::MS_SLAVE | libc::MS_REC,
        None,
    )
    .map_err(sys_err("make / rslave"))?;
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
        StdioMode::Inherit => None,
    };
    let fifo = sys::openat(libc::AT_FDCWD, &sd.fifo(), libc::O_PATH, 0)
        .map_err(sys_err(format!("open {}", sd.fifo().display())))?;
    let rootfs = sd.rootfs();
    mounts::mount_rootfs(spec, &rootfs, &sd.upper(), &sd.work())?;
    mounts::apply(&rootfs, &mounts::plan(spec))?;
    let hostname = spec
        .hostname
        .clone()
        .unwrap_or_else(|| spec.id.chars().take(12).collect());
    // SAFETY: pointer and length of a live byte slice.
    if unsafe { libc::sethostname(hostname.as_ptr().cast(), hostname.len()) } != 0 {
        return Err(last("sethostname"));
    }
    if spec.network == NetworkMode::None {
        loopback_up().map_err(sys_err("bring up lo"))?;
    }
    mounts::pivot(&rootfs)?;
    if spec.readonly_rootfs {
        mounts::readonly_root()?;
    }
    let proc_ = prepare_process(&spec.process, &spec.options, &hostname)?;
    // Ready: tell P0, then wait for `start`.
    if let Some(w) = sync.take() {
        write_all_fd(w.as_raw_fd(), b"ok");
    }
    let started = {
        let p = CString::new(format!("/proc/self/fd/{}", fifo.as_raw_fd())).expect("no NUL");
        // SAFETY: valid path; blocks until `start` opens the fifo for reading.
        let fd = unsafe { libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(last("open start fifo"));
        }
        // SAFETY: we own fd.
        let f = unsafe { OwnedFd::from_raw_fd(fd) };
        write_all_fd(f.as_raw_fd(), b"1");
        f
    };
    drop(fifo);
    // From here on the container has run: whatever happens, its end is recorded before the
    // init exits, so that once the init is gone the record is there.
    let log = log_fd.map(|fd| {
        crate::logs::RotatingLog::new(
            fs::File::from(fd),
            dir_fd.as_raw_fd(),
            spec.options.log_max_size,
            spec.options.log_max_files,
        )
    });
    let rec = supervise(spec.stdio, &proc_, log, started).unwrap_or_else(|e| ExitRecord {
        code: Some(255),
        signal: None,
        finished: crate::timefmt::rfc3339_now(),
        oom_killed: false,
        error: Some(format!("container init failed: {e}")),
    });
    write_exit(&dir_fd, &rec);
    // The init's own status is the workload's (128 + signal when it was killed), for
    // callers that reap the init themselves, as containerd's runc shim does: that is how a
    // container's exit status reaches Docker.
    std::process::exit(
        rec.code
            .unwrap_or_else(|| 128 + rec.signal.unwrap_or(0))
            .clamp(0, 255),
    )
}

/// Everything P2 needs, resolved inside the container before "ready" so that errors (no such
/// user, no such executable) surface at create time.
struct PreparedProcess {
    exe: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: String,
    user: ResolvedUser,
    /// Bounding (and, for root, effective/permitted) capabilities.
    caps: u64,
    /// `(RLIMIT_*, soft, hard)`.
    rlimits: Vec<(u32, u64, u64)>,
    oom_score_adj: i32,
    tty: bool,
}

/// Resolves supplementary groups (names or gids) against the container's /etc/group.
fn resolve_groups(names: &[String], group: &str) -> Result<Vec<u32>, InitError> {
    let mut out = Vec::new();
    for g in names {
        let gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    InitError::Spec(spec::SpecError::InvalidUser {
                        user: g.clone(),
                        reason: format!("no group {g:?} in the container's /etc/group"),
                    })
                })?,
        };
        out.push(gid);
    }
    Ok(out)
}

fn prepare_process(
    p: &ProcessSpec,
    opts: &ContainerOptions,
    hostname: &str,
) -> Result<PreparedProcess, InitError> {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = fs::read_to_string("/etc/group").unwrap_or_default();
    let mut user = spec::resolve_user(&spec::parse_user(&p.user)?, &passwd, &group)?;
    for g in resolve_groups(&opts.additional_groups, &group)? {
        if !user.additional_gids.contains(&g) {
            user.additional_gids.push(g);
        }
    }
    let caps = opts
        .capability_mask()
        .map_err(|e| InitError::Spec(e.into()))?;
    let rlimits = opts
        .rlimits
        .iter()
        .map(|r| {
            crate::options::rlimit_resource(&r.name)
                .map(|res| (res, r.soft, r.hard))
                .ok_or_else(|| {
                    InitError::Spec(crate::options::OptionsError::Rlimit(r.name.clone()).into())
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut env = p.env.clone();
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.push(format!("HOSTNAME={hostname}"));
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    let cwd = spec::validate_workdir(&p.cwd)?;
    if !cwd.exists() {
        fs::create_dir_all(&cwd).map_err(sys_err(format!("create workdir {}", cwd.display())))?;
        // SAFETY: chown of a path we just created, as root.
        let c = sys::cstr(&cwd).map_err(sys_err("workdir"))?;
        unsafe { libc::chown(c.as_ptr(), user.uid, user.gid) };
    }
    let path_var = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(spec::DEFAULT_PATH)
        .to_string();
    let exe = find_executable(&p.args[0], &path_var, &cwd)?;
    let c = |s: &str| CString::new(s).map_err(|_| InitError::NotFound { name: s.into() });
    Ok(PreparedProcess {
        exe: CString::new(exe.as_os_str().as_bytes()).map_err(|_| InitError::NotFound {
            name: p.args[0].clone(),
        })?,
        argv: p.args.iter().map(|a| c(a)).collect::<Result<_, _>>()?,
        envp: env.iter().map(|a| c(a)).collect::<Result<_, _>>()?,
        cwd: cwd.display().to_string(),
        user,
        caps,
        rlimits,
        oom_score_adj: opts.oom_score_adj.unwrap_or(0),
        tty: opts.tty,
    })
}

/// `execvp`-style lookup inside the container.
pub fn find_executable(name: &str, path_var: &str, cwd: &Path) -> Result<PathBuf, InitError> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let p = if name.starts_with('/') {
            PathBuf::from(name)
        } else {
            cwd.join(name)
        };
        return if is_exec(&p) {
            Ok(p)
        } else {
            Err(InitError::NotFound { name: name.into() })
        };
    }
    path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| is_exec(p))
        .ok_or(InitError::NotFound { name: name.into() })
}

/// A new pty from the container's devpts (`/dev/ptmx`): (master, slave).
fn open_pty() -> Result<(OwnedFd, OwnedFd), InitError> {
    // SAFETY: posix_openpt with flags only.
    let m = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if m < 0 {
        return Err(last("open /dev/ptmx"));
    }
    // SAFETY: fresh fd we own.
    let master = unsafe { OwnedFd::from_raw_fd(m) };
    // SAFETY: master is a valid pty master fd.
    if unsafe { libc::grantpt(master.as_raw_fd()) } != 0
        || unsafe { libc::unlockpt(master.as_raw_fd()) } != 0
    {
        return Err(last("unlock pty"));
    }
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: buffer of the given length.
    if unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) } != 0 {
        return Err(last("ptsname"));
    }
    // SAFETY: ptsname_r wrote a NUL-terminated path.
    let s = unsafe {
        libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if s < 0 {
        return Err(last("open pty slave"));
    }
    // SAFETY: fresh fd we own.
    Ok((master, unsafe { OwnedFd::from_raw_fd(s) }))
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

/// Signals P1 forwards to the workload: every catchable one (so that any stop signal a
/// service names reaches it), except SIGCHLD (the init's own) and the synchronous fault
/// signals, which must keep killing the init itself if it faults.
fn forwarded() -> Vec<i32> {
    const NOT: &[i32] = &[
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGCHLD,
        libc::SIGILL,
        libc::SIGTRAP,
        libc::SIGBUS,
        libc::SIGFPE,
        libc::SIGSEGV,
        libc::SIGSYS,
    ];
    (1..=31)
        .chain(libc::SIGRTMIN()..=libc::SIGRTMAX())
        .filter(|s| !NOT.contains(s))
        .collect()
}

fn sigset(sigs: &[i32]) -> libc::sigset_t {
    // SAFETY: sigemptyset initializes the set.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid set pointer.
    unsafe { libc::sigemptyset(&mut set) };
    for s in sigs {
        // SAFETY: valid set pointer and signal number.
        unsafe { libc::sigaddset(&mut set, *s) };
    }
    set
}

/// P1 after start: fork the workload, then be its init until it exits; returns how it ended.
/// `started` is the write end of the start fifo: it is closed once the workload is forked and
/// signals are being forwarded, which is when `start` returns (so that a signal sent right
/// after `start` is neither lost nor finds no workload).
fn supervise(
    stdio: StdioMode,
    p: &PreparedProcess,
    log: Option<crate::logs::RotatingLog>,
    started: OwnedFd,
) -> Result<ExitRecord, InitError> {
    let mut all: Vec<i32> = forwarded();
    all.push(libc::SIGCHLD);
    let set = sigset(&all);
    // SAFETY: valid set; blocks signals so that signalfd receives them.
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    // SAFETY: valid set.
    let sfd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) };
    if sfd < 0 {
        return Err(last("signalfd"));
    }
    // SAFETY: fresh fd.
    let sfd = unsafe { OwnedFd::from_raw_fd(sfd) };
    // With a tty the workload's stdio is the slave of a pty from the container's own devpts,
    // and the master is read like the stdout pipe (a terminal merges both streams).
    let tty = match (stdio, p.tty) {
        (StdioMode::Log, true) => Some(open_pty()?),
        _ => None,
    };
    let pipes = match (stdio, &tty) {
        (StdioMode::Log, None) => Some((pipe()?, pipe()?)),
        _ => None,
    };
    let (err_r, err_w) = pipe()?;
    let child = fork()?;
    if child == 0 {
        // P2.
        // SAFETY: empty mask; the workload must not inherit our blocked signals.
        let empty = sigset(&[]);
        unsafe { libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) };
        if let Some((_, slave)) = &tty {
            // SAFETY: new session, the pty slave as controlling terminal and stdio.
            unsafe {
                libc::setsid();
                libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0);
                libc::dup2(slave.as_raw_fd(), 0);
                libc::dup2(slave.as_raw_fd(), 1);
                libc::dup2(slave.as_raw_fd(), 2);
            }
        }
        if let Some(((_, out_w), (_, errp_w))) = &pipes {
            let null = CString::new("/dev/null").expect("no NUL");
            // SAFETY: dup2 onto stdio of fds we own; open of a constant path.
            unsafe {
                let n = libc::open(null.as_ptr(), libc::O_RDONLY);
                if n >= 0 {
                    libc::dup2(n, 0);
                }
                libc::dup2(out_w.as_raw_fd(), 1);
                libc::dup2(errp_w.as_raw_fd(), 2);
            }
        }
        let e = exec_workload(p, err_w.as_raw_fd());
        write_all_fd(err_w.as_raw_fd(), e.to_string().as_bytes());
        // SAFETY: leave the forked child without unwinding.
        unsafe { libc::_exit(127) };
    }
    drop(err_w);
    drop(started);
    let (mut out_r, mut errp_r) = (None, None);
    if let Some(((or, ow), (er, ew))) = pipes {
        drop(ow);
        drop(ew);
        out_r = Some(or);
        errp_r = Some(er);
    }
    if let Some((master, slave)) = tty {
        drop(slave);
        out_r = Some(master);
    }
    let mut exec_error = String::new();
    let _ = fs::File::from(err_r).read_to_string(&mut exec_error);
    let mut log = log;
    let mut writers = [
        LineWriter::new(Stream::Stdout),
        LineWriter::new(Stream::Stderr),
    ];
    if !exec_error.is_empty() {
        if let Some(l) = log.as_mut() {
            let _ = writers[1].feed(format!("{exec_error}\n").as_bytes(), l);
        } else {
            eprintln!("{exec_error}");
        }
    }
    let mut status: Option<i32> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut fds = vec![libc::pollfd {
            fd: sfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        for r in [&out_r, &errp_r].into_iter().flatten() {
            fds.push(libc::pollfd {
                fd: r.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let timeout = if status.is_some() { 100 } else { -1 };
        // SAFETY: valid pollfd array.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(last("poll"));
        }
        if n == 0 && status.is_some() {
            break; // exited and pipes idle (held open by an orphan, killed when we exit)
        }
        if fds[0].revents & libc::POLLIN != 0 {
            // SAFETY: zeroed siginfo is a valid read buffer.
            let mut si: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            // SAFETY: read into a buffer of the right size.
            let r = unsafe {
                libc::read(
                    sfd.as_raw_fd(),
                    (&mut si as *mut libc::signalfd_siginfo).cast(),
                    std::mem::size_of::<libc::signalfd_siginfo>(),
                )
            };
            if r > 0 {
                let sig = si.ssi_signo as i32;
                if sig == libc::SIGCHLD {
                    loop {
                        let mut st = 0;
                        // SAFETY: reap any child, non-blocking.
                        let pid = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
                        if pid <= 0 {
                            break;
                        }
                        if pid == child {
                            status = Some(st);
                        }
                    }
                } else if status.is_none() {
                    // SAFETY: signal our own child.
                    unsafe { libc::kill(child, sig) };
                }
            }
        }
        // Pipes.
        let mut idx = 1;
        for (k, slot) in [&mut out_r, &mut errp_r].into_iter().enumerate() {
            let Some(r) = slot.as_ref() else { continue };
            let rev = fds[idx].revents;
            idx += 1;
            if rev & (libc::POLLIN | libc::POLLHUP) == 0 {
                continue;
            }
            // SAFETY: read into our buffer.
            let got = unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if got <= 0 {
                *slot = None;
                continue;
            }
            if let Some(l) = log.as_mut() {
                let _ = writers[k].feed(&buf[..got as usize], l);
            }
        }
        if status.is_some() && out_r.is_none() && errp_r.is_none() {
            break;
        }
    }
    if let Some(l) = log.as_mut() {
        for w in writers.iter_mut() {
            let _ = w.finish(l);
        }
    }
    let st = status.unwrap_or(0);
    Ok(if !exec_error.is_empty() {
        ExitRecord {
            code: Some(127),
            signal: None,
            finished: crate::timefmt::rfc3339_now(),
            oom_killed: false,
            error: Some(exec_error),
        }
    } else if libc::WIFSIGNALED(st) {
        ExitRecord {
            code: None,
            signal: Some(libc::WTERMSIG(st)),
            finished: crate::timefmt::rfc3339_now(),
            oom_killed: false,
            error: None,
        }
    } else {
        ExitRecord {
            code: Some(libc::WEXITSTATUS(st)),
            signal: None,
            finished: crate::timefmt::rfc3339_now(),
            oom_killed: false,
            error: None,
        }
    })
}

/// Writes `exit.json` atomically and durably (write, fsync, rename, fsync the dir) before the
/// init exits: the runtime relies on "init gone ⇒ record present or never coming". It is
/// the only record the init writes; when it cannot (no space, the state dir removed), the
/// runtime reports the exit status as lost.
fn write_exit(dir: &OwnedFd, rec: &ExitRecord) {
    let body = serde_json::to_vec(rec).expect("exit record serializes");
    let tmp = CString::new("exit.json.tmp").expect("no NUL");
    let fin = CString::new("exit.json").expect("no NUL");
    // SAFETY: *at calls relative to the state dir fd we own, with constant names; `fd` is
    // closed once, by us.
    unsafe {
        let fd = libc::openat(
            dir.as_raw_fd(),
            tmp.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o644,
        );
        if fd < 0 {
            return;
        }
        write_all_fd(fd, &body);
        libc::fsync(fd);
        libc::close(fd);
        if libc::renameat(dir.as_raw_fd(), tmp.as_ptr(), dir.as_raw_fd(), fin.as_ptr()) == 0 {
            libc::fsync(dir.as_raw_fd());
        }
    }
}

/// Writes `pid` to `name` in directory `dir` through a temporary file renamed into place.
fn write_pid_at(dir: RawFd, name: &Path, pid: libc::pid_t) -> io::Result<()> {
    let mut tmp = name.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp_c = sys::cstr(Path::new(&tmp))?;
    let fin = sys::cstr(name)?;
    // SAFETY: *at calls on a directory fd we hold with valid C strings; the fd we open is
    // closed once, by us.
    unsafe {
        let fd = libc::openat(
            dir,
            tmp_c.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o644,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        write_all_fd(fd, pid.to_string().as_bytes());
        libc::close(fd);
        if libc::renameat(dir, tmp_c.as_ptr(), dir, fin.as_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// P2/E1: drop privileges and exec. Returns only on error.
fn exec_workload(p: &PreparedProcess, err_fd: RawFd) -> InitError {
    let r = (|| -> Result<Never, InitError> {
        let _ = fs::write("/proc/self/oom_score_adj", p.oom_score_adj.to_string());
        for (res, soft, hard) in &p.rlimits {
            let lim = libc::rlimit {
                rlim_cur: *soft as libc::rlim_t,
                rlim_max: *hard as libc::rlim_t,
            };
            // SAFETY: setrlimit with a valid struct; still root with every capability here.
            if unsafe { libc::setrlimit(*res as _, &lim) } != 0 {
                return Err(last(&format!("setrlimit {res}")));
            }
        }
        // Only what this process still holds: capset refuses anything else (a kernel's
        // unknown bits, capabilities the host withheld from us).
        let mask = p.caps & caps::bounding_set();
        caps::drop_bounding(mask).map_err(sys_err("drop capability bounding set"))?;
        caps::clear_ambient().map_err(sys_err("clear ambient capabilities"))?;
        let gids: Vec<libc::gid_t> = p.user.additional_gids.clone();
        // SAFETY: identity changes with a valid gid array.
        unsafe {
            if libc::setgroups(gids.len(), gids.as_ptr()) != 0 {
                return Err(last("setgroups"));
            }
            if libc::setgid(p.user.gid) != 0 {
                return Err(last("setgid"));
            }
            if libc::setuid(p.user.uid) != 0 {
                return Err(last("setuid"));
            }
        }
        if p.user.uid == 0 {
            caps::set_caps(mask, mask, 0).map_err(sys_err("capset"))?;
        } else {
            caps::set_caps(0, 0, 0).map_err(sys_err("capset"))?;
        }
        sys::set_no_new_privs().map_err(sys_err("prctl(PR_SET_NO_NEW_PRIVS)"))?;
        // Close every inherited fd before chdir: a /proc/self/fd/N workdir then has nothing
        // to point at (CVE-2024-21626).
        sys::close_fds_from(3, Some(err_fd)).map_err(sys_err("close fds"))?;
        std::env::set_current_dir(&p.cwd).map_err(sys_err(format!("chdir {}", p.cwd)))?;
        let cwd =
            std::env::current_dir().map_err(|_| InitError::WorkdirEscape { cwd: p.cwd.clone() })?;
        if !cwd.is_absolute() || cwd.as_os_str().as_bytes().starts_with(b"(") {
            return Err(InitError::WorkdirEscape { cwd: p.cwd.clone() });
        }
        seccomp::install(&seccomp::build_default_program(mask))?;
        let mut argv: Vec<*const libc::c_char> = p.argv.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = p.envp.iter().map(|a| a.as_ptr()).collect();
        envp.push(std::ptr::null());
        // SAFETY: NULL-terminated arrays of valid C strings that outlive the call.
        unsafe { libc::execve(p.exe.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        Err(last(&format!("exec {}", p.exe.to_string_lossy())))
    })();
    match r {
        Ok(n) => match n {},
        Err(e) => e,
    }
}

// ---------------------------------------------------------------- exec (E0 / E1)

fn run_exec(dir: &Path, req: &ExecRequest) -> i32 {
    match exec_e0(&StateDir::new(dir.to_path_buf()), req) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("swarm-runtime exec: {e}");
            126
        }
    }
}

fn exec_e0(sd: &StateDir, req: &ExecRequest) -> Result<i32, InitError> {
    let cfg: StoredConfig = state::read_json(&sd.config())?.ok_or(InitError::Missing {
        what: "config.json",
    })?;
    let st: InitState =
        state::read_json(&sd.init_state())?.ok_or(InitError::Missing { what: "state.json" })?;
    if sys::process_start_time(st.pid) != Some(st.start_time) || !sys::process_alive(st.pid) {
        return Err(InitError::NotRunning);
    }
    sys::set_dumpable(false).map_err(sys_err("prctl(PR_SET_DUMPABLE)"))?;
    // The pid file is a host path: its directory is opened before entering the container's
    // mount namespace.
    let pid_dir = match &req.detach_pid_file {
        Some(pf) => {
            let dir = pf.parent().filter(|d| !d.as_os_str().is_empty());
            Some(
                sys::openat(
                    libc::AT_FDCWD,
                    dir.unwrap_or(Path::new(".")),
                    libc::O_RDONLY | libc::O_DIRECTORY,
                    0,
                )
                .map_err(sys_err(format!("open the directory of {}", pf.display())))?,
            )
        }
        None => None,
    };
    join_cgroup(&cfg.cgroup_dirs)?;
    let mut nsfds = Vec::new();
    for ns in ["cgroup", "ipc", "uts", "net", "pid", "mnt"] {
        let p = PathBuf::from(format!("/proc/{}/ns/{ns}", st.pid));
        let fd = sys::openat(libc::AT_FDCWD, &p, libc::O_RDONLY, 0)
            .map_err(sys_err(format!("open {}", p.display())))?;
        nsfds.push((ns, fd));
    }
    for (ns, fd) in &nsfds {
        // SAFETY: setns with an fd we own and flags 0 (type taken from the fd).
        if unsafe { libc::setns(fd.as_raw_fd(), 0) } != 0 {
            return Err(last(&format!("setns {ns}")));
        }
    }
    drop(nsfds);
    let mut proc_ = cfg.spec.process.clone();
    proc_.args = req.args.clone();
    proc_.env = spec::merge_env(&proc_.env, &req.env);
    if let Some(u) = &req.user {
        proc_.user = u.clone();
    }
    if let Some(c) = &req.cwd {
        proc_.cwd = c.clone();
    }
    if proc_.args.is_empty() {
        return Err(InitError::Spec(spec::SpecError::NoCommand));
    }
    let hostname = cfg
        .spec
        .hostname
        .clone()
        .unwrap_or_else(|| cfg.spec.id.chars().take(12).collect());
    let prepared = prepare_process(&proc_, &cfg.spec.options, &hostname)?;
    let (err_r, err_w) = pipe()?;
    let child = fork()?;
    if child == 0 {
        if req.detach_pid_file.is_none() {
            let _ = sys::set_parent_death_signal(libc::SIGKILL);
        }
        let e = exec_workload(&prepared, err_w.as_raw_fd());
        write_all_fd(err_w.as_raw_fd(), e.to_string().as_bytes());
        // SAFETY: leave the forked child without unwinding.
        unsafe { libc::_exit(127) };
    }
    drop(err_w);
    let mut msg = String::new();
    // Returns once the command has exec'd (the pipe is close-on-exec) or failed to.
    let _ = fs::File::from(err_r).read_to_string(&mut msg);
    if let Some(pf) = &req.detach_pid_file {
        if !msg.is_empty() {
            wait_status(child);
            eprintln!("swarm-runtime exec: {msg}");
            return Ok(127);
        }
        let name = pf.file_name().unwrap_or_default();
        let dir = pid_dir.as_ref().map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
        write_pid_at(dir, Path::new(name), child)
            .map_err(sys_err(format!("write pid file {}", pf.display())))?;
        return Ok(0);
    }
    let st = wait_status(child).unwrap_or(0);
    if !msg.is_empty() {
        eprintln!("swarm-runtime exec: {msg}");
        return Ok(127);
    }
    Ok(if libc::WIFSIGNALED(st) {
        128 + libc::WTERMSIG(st)
    } else {
        libc::WEXITSTATUS(st)
    })
}
