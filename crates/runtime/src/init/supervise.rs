//! P1 as the container's init once started: reaps zombies, forwards signals to the workload,
//! copies its output into the log with timestamps, and records its exit.

use super::*;

/// Signals P1 forwards to the workload: every catchable one (so that any stop signal a
/// service names reaches it), except SIGCHLD (the init's own) and the synchronous fault
/// signals, which must keep killing the init itself if it faults.
pub(super) fn forwarded() -> Vec<i32> {
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

pub(super) fn sigset(sigs: &[i32]) -> libc::sigset_t {
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
/// after `start` is neither lost nor finds no workload). `console`: the slave of a pty whose
/// master went to a console socket, the workload's terminal.
pub(super) fn supervise(
    stdio: StdioMode,
    p: &PreparedProcess,
    log: Option<crate::logs::RotatingLog>,
    started: OwnedFd,
    console: Option<OwnedFd>,
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
    // and the master is read like the stdout pipe (a terminal merges both streams) — unless
    // the master went to a console socket, whose receiver reads it.
    let (tty_master, tty_slave) = match (stdio, p.tty, console) {
        (_, _, Some(slave)) => (None, Some(slave)),
        (StdioMode::Log, true, None) => {
            let (m, s) = open_pty()?;
            (Some(m), Some(s))
        }
        _ => (None, None),
    };
    let pipes = match (stdio, &tty_slave) {
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
        if let Some(slave) = &tty_slave {
            take_terminal(slave);
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
    drop(tty_slave);
    if let Some(master) = tty_master {
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

/// Writes `exit.json` atomically (write, rename into place) before the init exits: the
/// runtime relies on "init gone ⇒ record present or never coming", which the page cache
/// keeps across any process crash. Not fsynced (it cost a disk flush per container exit):
/// after a power loss every container is gone anyway and a missing record reads as "exit
/// status lost". It is
/// the only record the init writes; when it cannot (no space, the state dir removed), the
/// runtime reports the exit status as lost.
pub(super) fn write_exit(dir: &OwnedFd, rec: &ExitRecord) {
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
        libc::close(fd);
        libc::renameat(dir.as_raw_fd(), tmp.as_ptr(), dir.as_raw_fd(), fin.as_ptr());
    }
}

/// Writes `pid` to `name` in directory `dir` through a temporary file renamed into place.
pub(super) fn write_pid_at(dir: RawFd, name: &Path, pid: libc::pid_t) -> io::Result<()> {
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
