//! P2, the workload: its user, groups, executable and terminal resolved while P1 still sees
//! the image, then the hardening and `execve` in the forked child.

use super::*;
use crate::privilege::SeccompMode;

/// Everything P2 needs, resolved inside the container before "ready" so that errors (no such
/// user, no such executable) surface at create time.
pub(super) struct PreparedProcess {
    pub(super) exe: CString,
    pub(super) argv: Vec<CString>,
    pub(super) envp: Vec<CString>,
    pub(super) cwd: String,
    pub(super) user: ResolvedUser,
    /// Bounding (and, for root, effective/permitted) capabilities.
    pub(super) caps: u64,
    /// `(RLIMIT_*, soft, hard)`.
    pub(super) rlimits: Vec<(u32, u64, u64)>,
    pub(super) oom_score_adj: i32,
    pub(super) tty: bool,
    /// The filter installed last before `execve` (`Unconfined` when privileged).
    pub(super) seccomp: SeccompMode,
    /// The container's user namespace, entered before the identity change (set by the
    /// caller, which holds the descriptor).
    pub(super) userns: Option<RawFd>,
}

/// Resolves supplementary groups (names or gids) against the container's /etc/group.
pub(super) fn resolve_groups(names: &[String], group: &str) -> Result<Vec<u32>, InitError> {
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

pub(super) fn prepare_process(
    p: &ProcessSpec,
    opts: &ContainerOptions,
    hostname: &str,
    idmap: Option<&crate::userns::IdMap>,
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
        // Still host root here: a user namespace's ids are written as the host ids they map to.
        let (uid, gid) = match idmap {
            Some(m) => (
                m.host_uid(user.uid).unwrap_or(0),
                m.host_gid(user.gid).unwrap_or(0),
            ),
            None => (user.uid, user.gid),
        };
        // SAFETY: chown of a path we just created, as root.
        let c = sys::cstr(&cwd).map_err(sys_err("workdir"))?;
        unsafe { libc::chown(c.as_ptr(), uid, gid) };
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
        seccomp: if opts.privileged {
            SeccompMode::Unconfined
        } else {
            opts.seccomp.clone()
        },
        userns: None,
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
pub(super) fn open_pty() -> Result<(OwnedFd, OwnedFd), InitError> {
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

/// P2/E1: drop privileges and exec. Returns only on error.
/// A pty from the container's devpts whose master goes to the console socket `sock` (one
/// `SCM_RIGHTS` message carrying the slave's path, as runc sends it and containerd's
/// `console.ReceiveMaster` reads it); returns the slave for the workload.
pub(super) fn send_console_master(
    sock: &std::os::unix::net::UnixStream,
) -> Result<OwnedFd, InitError> {
    let (master, slave) = open_pty()?;
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: buffer of the given length.
    if unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) } != 0 {
        return Err(last("ptsname"));
    }
    // SAFETY: ptsname_r wrote a NUL-terminated string into `name`.
    let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
        .to_bytes()
        .to_vec();
    let fd: RawFd = master.as_raw_fd();
    // SAFETY: CMSG_SPACE/CMSG_LEN of a constant size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: name.as_ptr() as *mut libc::c_void,
        iov_len: name.len(),
    };
    // SAFETY: msghdr zeroed, then pointed at live buffers (`iov`, `control`) that outlive the
    // sendmsg call; the one control message is written inside `control`'s CMSG_SPACE.
    let sent = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::copy_nonoverlapping(
            (&fd as *const RawFd).cast::<u8>(),
            libc::CMSG_DATA(cmsg),
            std::mem::size_of::<RawFd>(),
        );
        libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
    };
    if sent < 0 {
        return Err(last("send the pty master to the console socket"));
    }
    drop(master);
    Ok(slave)
}

/// In a forked child: a new session with `slave` as its controlling terminal and stdio.
pub(super) fn take_terminal(slave: &OwnedFd) {
    // SAFETY: setsid, ioctl and dup2 on an fd we hold, in a child about to exec.
    unsafe {
        libc::setsid();
        libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0);
        libc::dup2(slave.as_raw_fd(), 0);
        libc::dup2(slave.as_raw_fd(), 1);
        libc::dup2(slave.as_raw_fd(), 2);
    }
}

pub(super) fn exec_workload(p: &PreparedProcess, err_fd: RawFd) -> InitError {
    match harden_and_exec(&mut HostSys, p, err_fd) {
        Ok(n) => match n {},
        Err(e) => e,
    }
}

/// The calls that turn P2 (or E1) into the workload, in the order that matters: limits while
/// still privileged on the host, the user namespace, the capability bounding set, groups then
/// gid then uid (each needs the privilege the next one drops), capabilities, no_new_privs,
/// every inherited fd closed before chdir (CVE-2024-21626), the seccomp filter last (it would
/// refuse the calls before it), then exec. A trait so that this order is unit-tested without
/// root ([`HostSys`] makes the calls; the tests record them).
pub(super) trait WorkloadSys {
    fn set_oom_score_adj(&mut self, v: i32);
    fn setrlimit(&mut self, res: u32, soft: u64, hard: u64) -> io::Result<()>;
    fn enter_userns(&mut self, ns: RawFd) -> io::Result<()>;
    /// The capabilities this process still holds (the bounding set).
    fn bounding_set(&mut self) -> u64;
    fn drop_bounding(&mut self, keep: u64) -> io::Result<()>;
    fn clear_ambient(&mut self) -> io::Result<()>;
    fn setgroups(&mut self, gids: &[u32]) -> io::Result<()>;
    fn setgid(&mut self, gid: u32) -> io::Result<()>;
    fn setuid(&mut self, uid: u32) -> io::Result<()>;
    fn set_caps(&mut self, effective: u64, permitted: u64) -> io::Result<()>;
    fn no_new_privs(&mut self) -> io::Result<()>;
    fn close_fds_from(&mut self, first: u32, keep: RawFd) -> io::Result<()>;
    fn chdir(&mut self, dir: &str) -> io::Result<()>;
    /// The directory chdir reached (to refuse one outside the container).
    fn current_dir(&mut self) -> Option<PathBuf>;
    fn install_seccomp(&mut self, mode: &SeccompMode, caps: u64) -> Result<(), InitError>;
    /// Returns only on failure.
    fn execve(&mut self, p: &PreparedProcess) -> InitError;
}

/// The real calls.
pub(super) struct HostSys;

impl WorkloadSys for HostSys {
    fn set_oom_score_adj(&mut self, v: i32) {
        let _ = fs::write("/proc/self/oom_score_adj", v.to_string());
    }
    fn setrlimit(&mut self, res: u32, soft: u64, hard: u64) -> io::Result<()> {
        let lim = libc::rlimit {
            rlim_cur: soft as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        };
        // SAFETY: setrlimit with a valid struct.
        if unsafe { libc::setrlimit(res as _, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    fn enter_userns(&mut self, ns: RawFd) -> io::Result<()> {
        crate::userns::enter(ns)
    }
    fn bounding_set(&mut self) -> u64 {
        caps::bounding_set()
    }
    fn drop_bounding(&mut self, keep: u64) -> io::Result<()> {
        caps::drop_bounding(keep)
    }
    fn clear_ambient(&mut self) -> io::Result<()> {
        caps::clear_ambient()
    }
    fn setgroups(&mut self, gids: &[u32]) -> io::Result<()> {
        // SAFETY: a valid gid array of the given length.
        if unsafe { libc::setgroups(gids.len(), gids.as_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    fn setgid(&mut self, gid: u32) -> io::Result<()> {
        // SAFETY: integer argument only.
        if unsafe { libc::setgid(gid) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    fn setuid(&mut self, uid: u32) -> io::Result<()> {
        // SAFETY: integer argument only.
        if unsafe { libc::setuid(uid) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    fn set_caps(&mut self, effective: u64, permitted: u64) -> io::Result<()> {
        caps::set_caps(effective, permitted, 0)
    }
    fn no_new_privs(&mut self) -> io::Result<()> {
        sys::set_no_new_privs()
    }
    fn close_fds_from(&mut self, first: u32, keep: RawFd) -> io::Result<()> {
        sys::close_fds_from(first, Some(keep))
    }
    fn chdir(&mut self, dir: &str) -> io::Result<()> {
        std::env::set_current_dir(dir)
    }
    fn current_dir(&mut self) -> Option<PathBuf> {
        std::env::current_dir().ok()
    }
    fn install_seccomp(&mut self, mode: &SeccompMode, mask: u64) -> Result<(), InitError> {
        match mode {
            SeccompMode::Default => seccomp::install(&seccomp::build_default_program(mask))?,
            SeccompMode::Unconfined => {}
            SeccompMode::Profile(json) => {
                let prog = seccomp::Profile::parse(json)
                    .and_then(|pr| pr.compile(mask, seccomp::running_kernel()))
                    .map_err(|e| {
                        InitError::Spec(
                            crate::options::OptionsError::from(
                                crate::privilege::PrivilegeError::from(e),
                            )
                            .into(),
                        )
                    })?;
                seccomp::install(&prog.program)?;
            }
        }
        Ok(())
    }
    fn execve(&mut self, p: &PreparedProcess) -> InitError {
        let mut argv: Vec<*const libc::c_char> = p.argv.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = p.envp.iter().map(|a| a.as_ptr()).collect();
        envp.push(std::ptr::null());
        // SAFETY: NULL-terminated arrays of valid C strings that outlive the call.
        unsafe { libc::execve(p.exe.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        last(&format!("exec {}", p.exe.to_string_lossy()))
    }
}

/// See [`WorkloadSys`]: the order is the point.
pub(super) fn harden_and_exec(
    sys: &mut impl WorkloadSys,
    p: &PreparedProcess,
    err_fd: RawFd,
) -> Result<Never, InitError> {
    sys.set_oom_score_adj(p.oom_score_adj);
    for (res, soft, hard) in &p.rlimits {
        sys.setrlimit(*res, *soft, *hard)
            .map_err(sys_err(format!("setrlimit {res}")))?;
    }
    // Limits above are set from the host's namespace (raising a hard limit needs it); from
    // here on every capability is the user namespace's only.
    if let Some(ns) = p.userns {
        sys.enter_userns(ns)
            .map_err(sys_err("enter the container's user namespace"))?;
    }
    // Only what this process still holds: capset refuses anything else (a kernel's unknown
    // bits, capabilities the host withheld from us).
    let mask = p.caps & sys.bounding_set();
    sys.drop_bounding(mask)
        .map_err(sys_err("drop capability bounding set"))?;
    sys.clear_ambient()
        .map_err(sys_err("clear ambient capabilities"))?;
    sys.setgroups(&p.user.additional_gids)
        .map_err(sys_err("setgroups"))?;
    sys.setgid(p.user.gid).map_err(sys_err("setgid"))?;
    sys.setuid(p.user.uid).map_err(sys_err("setuid"))?;
    if p.user.uid == 0 {
        sys.set_caps(mask, mask).map_err(sys_err("capset"))?;
    } else {
        sys.set_caps(0, 0).map_err(sys_err("capset"))?;
    }
    sys.no_new_privs()
        .map_err(sys_err("prctl(PR_SET_NO_NEW_PRIVS)"))?;
    // Close every inherited fd before chdir: a /proc/self/fd/N workdir then has nothing to
    // point at (CVE-2024-21626).
    sys.close_fds_from(3, err_fd)
        .map_err(sys_err("close fds"))?;
    sys.chdir(&p.cwd)
        .map_err(sys_err(format!("chdir {}", p.cwd)))?;
    let cwd = sys
        .current_dir()
        .ok_or_else(|| InitError::WorkdirEscape { cwd: p.cwd.clone() })?;
    if !cwd.is_absolute() || cwd.as_os_str().as_bytes().starts_with(b"(") {
        return Err(InitError::WorkdirEscape { cwd: p.cwd.clone() });
    }
    sys.install_seccomp(&p.seccomp, mask)?;
    Err(sys.execve(p))
}

#[cfg(test)]
mod tests;
