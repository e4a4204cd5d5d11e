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
    let sfd = block_signals()?;
    let w = spawn_workload(stdio, p, console)?;
    drop(started);
    let mut exec_error = String::new();
    let _ = fs::File::from(w.exec_err).read_to_string(&mut exec_error);
    let mut out = Output {
        log,
        writers: [
            LineWriter::new(Stream::Stdout),
            LineWriter::new(Stream::Stderr),
        ],
    };
    if !exec_error.is_empty() {
        if let Some(l) = out.log.as_mut() {
            let _ = out.writers[1].feed(format!("{exec_error}\n").as_bytes(), l);
        } else {
            eprintln!("{exec_error}");
        }
    }
    let st = be_init(&sfd, w.child, [w.stdout, w.stderr], &mut out)?;
    if let Some(l) = out.log.as_mut() {
        for w in out.writers.iter_mut() {
            let _ = w.finish(l);
        }
    }
    Ok(exit_record(exec_error, st))
}

/// Blocks every forwarded signal and SIGCHLD and returns a signalfd that receives them.
fn block_signals() -> Result<OwnedFd, InitError> {
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
    Ok(unsafe { OwnedFd::from_raw_fd(sfd) })
}

/// The forked workload and what P1 reads from it.
struct Workload {
    child: libc::pid_t,
    /// Its stdout (or the pty master, both streams) and stderr, when P1 logs them.
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    /// Closed on exec; carries the error when the exec failed.
    exec_err: OwnedFd,
}

/// Forks P2 with its stdio (pipes to the log, a pty, the console's slave or inherited), which
/// hardens itself and execs the workload.
fn spawn_workload(
    stdio: StdioMode,
    p: &PreparedProcess,
    console: Option<OwnedFd>,
) -> Result<Workload, InitError> {
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
    let (mut stdout, mut stderr) = (None, None);
    if let Some(((or, ow), (er, ew))) = pipes {
        drop(ow);
        drop(ew);
        stdout = Some(or);
        stderr = Some(er);
    }
    drop(tty_slave);
    if let Some(master) = tty_master {
        stdout = Some(master);
    }
    Ok(Workload {
        child,
        stdout,
        stderr,
        exec_err: err_r,
    })
}

/// Where the workload's output goes: the rotating log, line by line with timestamps.
struct Output {
    log: Option<crate::logs::RotatingLog>,
    writers: [LineWriter; 2],
}

/// Be the container's init until the workload has exited and its output is drained (or idle,
/// held open by an orphan the kernel kills when we exit): reap every child, forward signals
/// to the workload, copy its output into the log. Returns the workload's wait status.
fn be_init(
    sfd: &OwnedFd,
    child: libc::pid_t,
    mut streams: [Option<OwnedFd>; 2],
    out: &mut Output,
) -> Result<i32, InitError> {
    let mut status: Option<i32> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut fds = vec![libc::pollfd {
            fd: sfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        for r in streams.iter().flatten() {
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
            on_signal(sfd, child, &mut status);
        }
        // Pipes.
        let mut idx = 1;
        for (k, slot) in streams.iter_mut().enumerate() {
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
            if let Some(l) = out.log.as_mut() {
                let _ = out.writers[k].feed(&buf[..got as usize], l);
            }
        }
        if status.is_some() && streams.iter().all(Option::is_none) {
            break;
        }
    }
    Ok(status.unwrap_or(0))
}

/// One signal from the signalfd: SIGCHLD reaps every child (recording the workload's
/// status); any other is forwarded to the workload while it runs.
fn on_signal(sfd: &OwnedFd, child: libc::pid_t, status: &mut Option<i32>) {
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
    if r <= 0 {
        return;
    }
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
                *status = Some(st);
            }
        }
    } else if status.is_none() {
        // SAFETY: signal our own child.
        unsafe { libc::kill(child, sig) };
    }
}

/// How the workload ended: its exec error, the signal that killed it, or its exit code.
fn exit_record(exec_error: String, st: i32) -> ExitRecord {
    let (code, signal, error) = if !exec_error.is_empty() {
        (Some(127), None, Some(exec_error))
    } else if libc::WIFSIGNALED(st) {
        (None, Some(libc::WTERMSIG(st)), None)
    } else {
        (Some(libc::WEXITSTATUS(st)), None, None)
    };
    ExitRecord {
        code,
        signal,
        finished: crate::timefmt::rfc3339_now(),
        oom_killed: false,
        error,
    }
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
