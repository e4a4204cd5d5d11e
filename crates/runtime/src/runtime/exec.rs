//! Running another process in a running container (`exec`), through the helper's exec mode.

use super::*;

impl Runtime {
    /// The command that runs `spec` inside a running container: the helper joins the
    /// container's namespaces and cgroup and exits with the command's status (126 when it
    /// could not enter, 127 when the command could not run). Killing it kills the command.
    /// Stdio is the caller's to set; `spec.timeout` is the caller's to enforce. Lets async
    /// callers run it as a child they wait for without a thread ([`Runtime::exec`] blocks).
    pub fn exec_command(&self, id: &str, spec: &ExecSpec) -> Result<Command, RuntimeError> {
        let (sd, _) = self.existing(id)?;
        let status = self.inspect(id)?.status;
        if status != ContainerStatus::Running {
            return Err(RuntimeError::InvalidState {
                id: id.into(),
                status,
                hint: "exec needs a running container",
            });
        }
        let req = ExecRequest {
            args: spec.args.clone(),
            env: spec.env.clone(),
            user: spec.user.clone(),
            cwd: spec.cwd.clone(),
            detach_pid_file: spec.detach_pid_file.clone(),
            console_socket: spec.console_socket.clone(),
        };
        let helper = self.helper()?;
        let mut cmd = Command::new(helper.exec_path());
        cmd.arg(INIT_ARG)
            .arg("exec")
            .arg(&sd.dir)
            .arg(serde_json::to_string(&req).expect("exec request serializes"))
            .stdin(Stdio::null());
        Ok(cmd)
    }

    /// Runs a command inside a running container and collects its output (blocking).
    pub fn exec(&self, id: &str, spec: ExecSpec) -> Result<ExecOutput, RuntimeError> {
        let (sd, _) = self.existing(id)?;
        let helper = self.helper()?.exec_path();
        let mut child = self
            .exec_command(id, &spec)?
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| RuntimeError::Helper {
                path: helper,
                source,
            })?;
        let mut out = child.stdout.take().expect("piped");
        let mut err = child.stderr.take().expect("piped");
        let t_out = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = out.read_to_end(&mut v);
            v
        });
        let t_err = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = err.read_to_end(&mut v);
            v
        });
        let start = Instant::now();
        let mut timed_out = false;
        let status = loop {
            if let Some(s) = child.try_wait().map_err(ioe(&sd.dir))? {
                break s;
            }
            if spec.timeout.is_some_and(|t| start.elapsed() > t) {
                timed_out = true;
                let _ = child.kill();
                break child.wait().map_err(ioe(&sd.dir))?;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        use std::os::unix::process::ExitStatusExt;
        let code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        Ok(ExecOutput {
            code,
            stdout: t_out.join().unwrap_or_default(),
            stderr: t_err.join().unwrap_or_default(),
            timed_out,
        })
    }
}
