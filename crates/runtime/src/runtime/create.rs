//! Creating and starting a container: its state directory, cgroup and `/etc` files, the
//! helper spawned in init mode, and the start handshake.

use super::*;

impl Runtime {
    /// Creates a container: namespaces, cgroup, rootfs and mounts are ready and the process is
    /// resolved, but not started. Returns after the container init reported ready.
    pub fn create(&self, spec: ContainerSpec) -> Result<ContainerInfo, RuntimeError> {
        self.create_with_bundle(spec, None)
    }

    /// [`Runtime::create`] recording an OCI bundle path (for runc's `state`).
    pub fn create_with_bundle(
        &self,
        spec: ContainerSpec,
        bundle: Option<PathBuf>,
    ) -> Result<ContainerInfo, RuntimeError> {
        spec.validate()?;
        let id = spec.id.clone();
        let sd = self.state_dir(&id)?;
        match fs::create_dir(&sd.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(RuntimeError::AlreadyExists { id })
            }
            Err(e) => return Err(ioe(&sd.dir)(e)),
        }
        let res = self.create_inner(spec, bundle, &sd);
        if res.is_err() {
            let _ = self.cleanup(&sd, None);
        }
        res
    }

    pub(super) fn create_inner(
        &self,
        mut spec: ContainerSpec,
        bundle: Option<PathBuf>,
        sd: &StateDir,
    ) -> Result<ContainerInfo, RuntimeError> {
        let id = spec.id.clone();
        let o = &mut spec.options;
        crate::privilege::resolve_devices(&mut o.devices, o.privileged)
            .map_err(|e| SpecError::Options(e.into()))?;
        write_etc_files(&mut spec, &sd.dir)?;
        let cg = Cgroup::new(self.hierarchy.clone(), &self.cfg.cgroup_parent, &id);
        cg.create(&spec.resources)?;
        for d in [sd.rootfs()]
            .into_iter()
            .chain(matches!(spec.rootfs, RootfsSpec::Layers { .. }).then(|| sd.upper()))
            .chain(matches!(spec.rootfs, RootfsSpec::Layers { .. }).then(|| sd.work()))
        {
            fs::create_dir_all(&d).map_err(ioe(&d))?;
        }
        let fifo = sys::cstr(&sd.fifo()).map_err(ioe(&sd.fifo()))?;
        // SAFETY: valid C string.
        if unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) } != 0 {
            return Err(ioe(&sd.fifo())(io::Error::last_os_error()));
        }
        let stored = StoredConfig {
            cgroup_dirs: cg.dirs(),
            cgroup_parent: self.cfg.cgroup_parent.clone(),
            bundle,
            created: crate::timefmt::rfc3339_now(),
            spec,
        };
        state::write_json(&sd.config(), &stored)?;
        let helper = self.helper()?;
        let inherit = stored.spec.stdio == crate::spec::StdioMode::Inherit;
        let mut cmd = Command::new(helper.exec_path());
        cmd.arg(INIT_ARG).arg("create").arg(&sd.dir);
        if !inherit {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
        }
        let status = cmd.status().map_err(|source| RuntimeError::Helper {
            path: helper.exec_path(),
            source,
        })?;
        if !status.success() {
            let message = fs::read_to_string(sd.init_err())
                .unwrap_or_else(|_| format!("helper exited with {status}"));
            return Err(RuntimeError::CreateFailed { id, message });
        }
        self.inspect(&stored.spec.id)
    }

    /// Starts the workload of a created container.
    pub fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let (sd, _) = self.existing(id)?;
        let info = self.inspect(id)?;
        let pidfd = match self.init(&sd, id)? {
            Init::Alive { pidfd, .. } if info.status == ContainerStatus::Created => pidfd,
            _ => {
                return Err(RuntimeError::InvalidState {
                    id: id.into(),
                    status: info.status,
                    hint: "only a created container can be started",
                })
            }
        };
        let fifo = sd.fifo();
        let f = sys::openat(libc::AT_FDCWD, &fifo, libc::O_RDONLY | libc::O_NONBLOCK, 0)
            .map_err(ioe(&fifo))?;
        // The init writes one byte when it is released, and closes its end once the workload
        // is forked and signals are forwarded: only then is the container started.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut released = false;
        loop {
            if sys::poll_readable(f.as_raw_fd(), 100).map_err(ioe(&fifo))? {
                let mut b = [0u8; 1];
                // SAFETY: read one byte into a local buffer.
                let n = unsafe { libc::read(f.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
                if n == 1 {
                    released = true;
                    continue;
                }
                if n == 0 && released {
                    break;
                }
            }
            let exited = sys::pidfd_exited(pidfd.as_raw_fd()).map_err(ioe(&fifo))?;
            if exited && released {
                break; // it ran and already ended: started all the same
            }
            if exited {
                return Err(RuntimeError::InvalidState {
                    id: id.into(),
                    status: ContainerStatus::Stopped,
                    hint: "its init exited before start; remove it and create it again",
                });
            }
            if Instant::now() > deadline {
                return Err(RuntimeError::Timeout {
                    id: id.into(),
                    after: Duration::from_secs(30),
                });
            }
        }
        let _ = fs::write(sd.started_marker(), crate::timefmt::rfc3339_now());
        let _ = fs::remove_file(&fifo);
        Ok(())
    }

    pub(super) fn init_state(&self, sd: &StateDir) -> Result<Option<InitState>, RuntimeError> {
        Ok(state::read_json(&sd.init_state())?)
    }

    /// The container's init: alive (with a pidfd on it), gone, or not reported yet. The pidfd
    /// is opened before the start time is compared, so it cannot point at a process that
    /// reused the pid; a process is gone only when the kernel says so (`ESRCH`, no `/proc`
    /// entry, a different start time, or a readable pidfd), never because a read failed.
    pub(super) fn init(&self, sd: &StateDir, id: &str) -> Result<Init, RuntimeError> {
        let Some(st) = self.init_state(sd)? else {
            return Ok(Init::Unknown);
        };
        let probe = |source| RuntimeError::InitProbe {
            id: id.into(),
            pid: st.pid,
            source,
        };
        let pidfd = match sys::pidfd_open(st.pid) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(Init::Gone),
            Err(e) => return Err(probe(e)),
        };
        match sys::proc_stat(st.pid).map_err(probe)? {
            Some(ps) if ps.start_time == st.start_time => {}
            // Reaped, or the pid now belongs to another process.
            _ => return Ok(Init::Gone),
        }
        if sys::pidfd_exited(pidfd.as_raw_fd()).map_err(probe)? {
            return Ok(Init::Gone);
        }
        Ok(Init::Alive { pid: st.pid, pidfd })
    }
}

/// Writes the container's `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` into its state
/// dir and bind-mounts them (read-write, as Docker does) before any user mount, so that a
/// user mount on one of these paths still wins.
pub(super) fn write_etc_files(spec: &mut ContainerSpec, dir: &Path) -> Result<(), RuntimeError> {
    let Some(files) = spec.options.etc_files.clone() else {
        return Ok(());
    };
    let mut binds = Vec::new();
    for (name, body) in [
        ("hosts", &files.hosts),
        ("hostname", &files.hostname),
        ("resolv.conf", &files.resolv_conf),
    ] {
        let p = dir.join(name);
        fs::write(&p, body).map_err(ioe(&p))?;
        binds.push(crate::spec::MountSpec::Bind {
            source: p,
            destination: Path::new("/etc").join(name),
            readonly: false,
            propagation: Default::default(),
            copy_up: false,
        });
    }
    spec.mounts.splice(0..0, binds);
    Ok(())
}
