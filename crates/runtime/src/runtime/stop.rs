//! Signals, stop with a grace period, and removal (the container's processes, cgroup and
//! state).

use super::*;

impl Runtime {
    /// Sends a signal. SIGKILL goes to every process of the container but its init (the
    /// workload and whatever it started; the init then records the workload's exit and
    /// exits): killing the init itself would lose the exit status. Other signals go to the
    /// init, which forwards them. A created, never started container's init is killed (it
    /// ignores catchable signals) and that is recorded as its exit (SIGKILL).
    pub fn signal(&self, id: &str, sig: i32) -> Result<(), RuntimeError> {
        let (sd, cfg) = self.existing(id)?;
        let Init::Alive { pid, pidfd } = self.init(&sd, id)? else {
            return Err(RuntimeError::InvalidState {
                id: id.into(),
                status: ContainerStatus::Stopped,
                hint: "there is no process to signal",
            });
        };
        if sd.fifo().exists() {
            sys::pidfd_send_signal(pidfd.as_raw_fd(), libc::SIGKILL)
                .map_err(ioe(&sd.init_state()))?;
            // A SIGKILLed process always exits; after that nothing else records its end.
            sys::poll_readable(pidfd.as_raw_fd(), -1).map_err(ioe(&sd.init_state()))?;
            self.record_exit_once(
                &sd,
                ExitRecord {
                    code: None,
                    signal: Some(libc::SIGKILL),
                    finished: crate::timefmt::rfc3339_now(),
                    oom_killed: false,
                    error: None,
                },
            )?;
            return Ok(());
        }
        if sig != libc::SIGKILL {
            return sys::pidfd_send_signal(pidfd.as_raw_fd(), sig).map_err(ioe(&sd.init_state()));
        }
        // No process besides the init: the workload is gone and the init is recording that.
        for p in self.cgroup(&cfg).pids().into_iter().filter(|p| *p != pid) {
            if let Ok(pfd) = sys::pidfd_open(p) {
                let _ = sys::pidfd_send_signal(pfd.as_raw_fd(), libc::SIGKILL);
            }
        }
        Ok(())
    }

    /// Sends a signal to every process of the container's cgroup (runc's `kill --all`), not
    /// only to its init.
    /// Host pids of every process in the container's cgroup (runc's `ps`).
    pub fn pids(&self, id: &str) -> Result<Vec<i32>, RuntimeError> {
        let (_, cfg) = self.existing(id)?;
        Ok(self.cgroup(&cfg).pids())
    }

    pub fn signal_all(&self, id: &str, sig: i32) -> Result<(), RuntimeError> {
        let (sd, cfg) = self.existing(id)?;
        let Init::Alive { .. } = self.init(&sd, id)? else {
            return Err(RuntimeError::InvalidState {
                id: id.into(),
                status: ContainerStatus::Stopped,
                hint: "there is no process to signal",
            });
        };
        // Created, not started: only the init exists and it ignores catchable signals (as in
        // `signal`).
        let sig = if sd.fifo().exists() {
            libc::SIGKILL
        } else {
            sig
        };
        self.cgroup(&cfg).kill_all(sig);
        Ok(())
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL; returns the exit status.
    pub fn stop(&self, id: &str, grace: Duration) -> Result<ExitStatus, RuntimeError> {
        let info = self.inspect(id)?;
        if info.status == ContainerStatus::Stopped {
            return self.wait(id, None);
        }
        let _ = self.signal(id, libc::SIGTERM);
        match self.wait(id, Some(grace)) {
            Ok(s) => Ok(s),
            Err(RuntimeError::Timeout { .. }) => {
                let _ = self.signal(id, libc::SIGKILL);
                match self.wait(id, Some(KILL_WAIT)) {
                    Err(RuntimeError::Timeout { .. }) => {
                        // The init itself does not finish: kill it (its exit status is lost).
                        self.kill_init(id)?;
                        self.wait(id, Some(KILL_WAIT))
                    }
                    other => other,
                }
            }
            Err(e) => Err(e),
        }
    }

    /// SIGKILLs the container's init itself: the last resort for an init that does not
    /// finish after its workload was killed. Its exit status is then lost.
    pub fn kill_init(&self, id: &str) -> Result<(), RuntimeError> {
        let (sd, _) = self.existing(id)?;
        if let Init::Alive { pidfd, .. } = self.init(&sd, id)? {
            sys::pidfd_send_signal(pidfd.as_raw_fd(), libc::SIGKILL)
                .map_err(ioe(&sd.init_state()))?;
        }
        Ok(())
    }

    /// Removes a stopped container (`force` kills a running one first): cgroup, state, logs.
    pub fn remove(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        let (sd, cfg) = self.existing(id)?;
        // The container's init records the exit status just before it exits itself: a
        // container reported stopped may still have its init for a moment. Give it that moment.
        if !force && self.inspect(id)?.status == ContainerStatus::Stopped {
            if let Init::Alive { pidfd, .. } = self.init(&sd, id)? {
                let _ = sys::poll_readable(pidfd.as_raw_fd(), 2000);
            }
        }
        if let Init::Alive { pidfd, .. } = self.init(&sd, id)? {
            if !force {
                return Err(RuntimeError::InvalidState {
                    id: id.into(),
                    status: self.inspect(id)?.status,
                    hint: "stop it first or remove with force",
                });
            }
            // A paused (frozen) init would take the SIGKILL only once thawed.
            let cg = self.cgroup(&cfg);
            if cg.frozen() {
                let _ = cg.freeze(false);
            }
            let _ = sys::pidfd_send_signal(pidfd.as_raw_fd(), libc::SIGKILL);
            let _ = sys::poll_readable(pidfd.as_raw_fd(), KILL_WAIT.as_millis() as i32);
        }
        self.cleanup(&sd, Some(&cfg))
    }

    pub(super) fn cleanup(
        &self,
        sd: &StateDir,
        cfg: Option<&StoredConfig>,
    ) -> Result<(), RuntimeError> {
        let id = sd
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let parent = cfg.map_or(self.cfg.cgroup_parent.as_str(), |c| &c.cgroup_parent);
        Cgroup::new(self.hierarchy.clone(), parent, &id).remove()?;
        // A concurrent `inspect` may be recording a lost exit (a temporary file renamed into
        // place) while the directory goes: its file lands after the listing and the final
        // rmdir sees ENOTEMPTY. Seen once in 1,000 removals (t60); the writer is done within
        // a moment, so list again.
        let mut tries = 0;
        loop {
            match fs::remove_dir_all(&sd.dir) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Err(e) => return Err(ioe(&sd.dir)(e)),
            }
        }
    }
}
