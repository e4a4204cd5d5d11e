//! `exec` (E0 / E1): E0 joins the cgroup and the init's namespaces, forks E1 inside the pid
//! namespace, which hardens itself like the workload and execs; E0 exits with its status.

use super::*;

pub(super) fn run_exec(dir: &Path, req: &ExecRequest) -> i32 {
    match exec_e0(&StateDir::new(dir.to_path_buf()), req) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("swarm-runtime exec: {e}");
            126
        }
    }
}

pub(super) fn exec_e0(sd: &StateDir, req: &ExecRequest) -> Result<i32, InitError> {
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
    let pid_dir = req
        .detach_pid_file
        .as_deref()
        .map(open_parent)
        .transpose()?;
    // Like the pid file, the console socket is a host path.
    let console = req
        .console_socket
        .as_ref()
        .map(|p| {
            std::os::unix::net::UnixStream::connect(p).map_err(sys_err(format!(
                "connect to console socket {}",
                p.display()
            )))
        })
        .transpose()?;
    let userns = join_container(&cfg, &st)?;
    let proc_ = exec_process(&cfg.spec.process, req)?;
    let hostname = cfg
        .spec
        .hostname
        .clone()
        .unwrap_or_else(|| cfg.spec.id.chars().take(12).collect());
    let mut prepared = prepare_process(
        &proc_,
        &cfg.spec.options,
        &hostname,
        cfg.spec.user_namespace.as_ref(),
    )?;
    prepared.userns = userns.as_ref().map(|fd| fd.as_raw_fd());
    // The pty comes from the container's devpts (we are in its mount namespace now).
    let tty = console
        .map(|sock| workload::send_console_master(&sock))
        .transpose()?;
    let (err_r, err_w) = pipe()?;
    let child = fork()?;
    if child == 0 {
        if req.detach_pid_file.is_none() {
            let _ = sys::set_parent_death_signal(libc::SIGKILL);
        }
        if let Some(slave) = &tty {
            workload::take_terminal(slave);
        }
        let e = exec_workload(&prepared, err_w.as_raw_fd());
        write_all_fd(err_w.as_raw_fd(), e.to_string().as_bytes());
        // SAFETY: leave the forked child without unwinding.
        unsafe { libc::_exit(127) };
    }
    drop(err_w);
    drop(tty);
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

/// The directory of a host path, opened while the host's mount namespace is still ours.
fn open_parent(file: &Path) -> Result<OwnedFd, InitError> {
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty());
    sys::openat(
        libc::AT_FDCWD,
        dir.unwrap_or(Path::new(".")),
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    )
    .map_err(sys_err(format!("open the directory of {}", file.display())))
}

/// Joins the container's cgroup and its init's namespaces; returns the workload's user
/// namespace (held by the init), which the command enters last, itself.
fn join_container(cfg: &StoredConfig, st: &InitState) -> Result<Option<OwnedFd>, InitError> {
    // The workload's user namespace, held by the init (entered last, by the command itself).
    let userns = match (&cfg.spec.user_namespace, st.userns_fd) {
        (None, _) => None,
        (Some(_), Some(n)) => {
            let p = PathBuf::from(format!("/proc/{}/fd/{n}", st.pid));
            Some(
                sys::openat(libc::AT_FDCWD, &p, libc::O_RDONLY | libc::O_CLOEXEC, 0)
                    .map_err(sys_err("open the container's user namespace"))?,
            )
        }
        (Some(_), None) => {
            return Err(InitError::Missing {
                what: "user namespace descriptor in state.json",
            });
        }
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
    Ok(userns)
}

/// The exec'd command: the container's process with the request's args, env, user and cwd.
fn exec_process(base: &ProcessSpec, req: &ExecRequest) -> Result<ProcessSpec, InitError> {
    let mut proc_ = base.clone();
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
    Ok(proc_)
}
