//! `swarm-runtime exec`: a command in a running container, from its arguments or an OCI
//! process file, optionally detached or on a terminal sent to a console socket.

use super::*;

/// `exec`: runs the command through the runtime's helper and returns its exit status.
pub(super) fn exec_cmd(a: &Args) -> Result<i32, CliError> {
    let id = id_arg(a)?;
    let (mut spec, terminal) = match &a.process {
        Some(p) => exec_process(p)?,
        None => (
            swarm_runtime::runtime::ExecSpec {
                args: a.positional[1..].to_vec(),
                ..Default::default()
            },
            false,
        ),
    };
    spec.console_socket = match (terminal || a.tty, &a.console_socket) {
        (true, Some(s)) => Some(s.clone()),
        (true, None) => {
            return Err(CliError::Usage(
                "a terminal exec needs --console-socket SOCKET to send the pty master to".into(),
            ))
        }
        (false, Some(_)) => return Err(CliError::Usage(
            "--console-socket is only used with --tty (or \"terminal\": true in the process file)"
                .into(),
        )),
        (false, None) => None,
    };
    if spec.args.is_empty() {
        return Err(CliError::Usage(
            "exec needs a command or --process FILE".into(),
        ));
    }
    if a.detach {
        spec.detach_pid_file = Some(
            a.pid_file
                .clone()
                .ok_or_else(|| CliError::Usage("exec --detach needs --pid-file FILE".into()))?,
        );
    } else if a.pid_file.is_some() {
        return Err(CliError::Usage(
            "exec --pid-file is only written with --detach".into(),
        ));
    }
    // The runtime holds the helper's memfd: it lives until the helper has run.
    let rt = runtime(a)?;
    let mut cmd = rt.exec_command(&id, &spec)?;
    cmd.stdin(std::process::Stdio::inherit());
    let st = cmd.status().map_err(|source| CliError::File {
        path: PathBuf::from("exec helper"),
        source,
    })?;
    use std::os::unix::process::ExitStatusExt;
    Ok(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)))
}

/// An OCI `process.json` (runc's `exec --process`) as an exec (args, env, cwd and numeric
/// user) and whether it asks for a terminal.
pub(super) fn exec_process(
    p: &std::path::Path,
) -> Result<(swarm_runtime::runtime::ExecSpec, bool), CliError> {
    let body = std::fs::read(p).map_err(|source| CliError::File {
        path: p.to_path_buf(),
        source,
    })?;
    let proc_: oci_spec::runtime::Process =
        serde_json::from_slice(&body).map_err(|e| CliError::File {
            path: p.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?;
    let u = proc_.user();
    let cwd = proc_.cwd().display().to_string();
    let spec = swarm_runtime::runtime::ExecSpec {
        args: proc_.args().clone().unwrap_or_default(),
        env: proc_.env().clone().unwrap_or_default(),
        user: Some(format!("{}:{}", u.uid(), u.gid())),
        cwd: (!cwd.is_empty()).then_some(cwd),
        ..Default::default()
    };
    Ok((spec, proc_.terminal().unwrap_or(false)))
}
