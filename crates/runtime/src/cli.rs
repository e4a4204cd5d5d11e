//! The runc-compatible command line: `swarm-runtime [--root DIR] COMMAND`, with `create`,
//! `start`, `state`, `kill`, `delete`, `run` and `list` over OCI bundles. Exit codes: the
//! container's for `run`, 0/1 otherwise; errors on stderr.

use std::path::PathBuf;
use std::time::Duration;

use crate::runtime::{ContainerInfo, Runtime, RuntimeConfig, RuntimeError};

const USAGE: &str = "usage: swarm-runtime [--root DIR] COMMAND
commands:
  create <id> --bundle DIR [--pid-file FILE]
  start <id>
  run <id> --bundle DIR [--detach]
  state <id>
  kill <id> [SIGNAL]
  delete [--force] <id>
  list [--format table|json]";

/// Errors of argument parsing and command execution.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}\n{USAGE}")]
    Usage(String),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Oci(#[from] crate::oci::OciError),
    #[error("unknown signal {0:?}")]
    Signal(String),
}

struct Args {
    root: PathBuf,
    cmd: String,
    positional: Vec<String>,
    bundle: Option<PathBuf>,
    pid_file: Option<PathBuf>,
    force: bool,
    detach: bool,
    format: String,
}

fn parse(argv: Vec<String>) -> Result<Args, CliError> {
    let mut a = Args {
        root: PathBuf::from("/run/swarm-runtime"),
        cmd: String::new(),
        positional: Vec::new(),
        bundle: None,
        pid_file: None,
        force: false,
        detach: false,
        format: "table".into(),
    };
    let mut it = argv.into_iter();
    let need = |it: &mut std::vec::IntoIter<String>, f: &str| {
        it.next()
            .ok_or_else(|| CliError::Usage(format!("{f} needs a value")))
    };
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with('-') => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let val = |it: &mut std::vec::IntoIter<String>| match inline.clone() {
            Some(v) => Ok(v),
            None => need(it, &flag),
        };
        match flag.as_str() {
            "--root" => a.root = val(&mut it)?.into(),
            "--bundle" | "-b" => a.bundle = Some(val(&mut it)?.into()),
            "--pid-file" => a.pid_file = Some(val(&mut it)?.into()),
            "--format" | "-f" if a.cmd == "list" => a.format = val(&mut it)?,
            "--force" | "-f" => a.force = true,
            "--detach" | "-d" => a.detach = true,
            "--log" | "--log-format" | "--criu" | "--console-socket" => {
                val(&mut it)?;
            }
            "--debug" | "--systemd-cgroup" | "--all" | "-a" | "--no-pivot" | "--no-new-keyring" => {
            }
            "--help" | "-h" => return Err(CliError::Usage(String::new())),
            f if f.starts_with('-') && f.len() > 1 && a.cmd != "kill" => {
                return Err(CliError::Usage(format!("unknown flag {f}")))
            }
            _ if a.cmd.is_empty() => a.cmd = arg,
            _ => a.positional.push(arg),
        }
    }
    if a.cmd.is_empty() {
        return Err(CliError::Usage("missing command".into()));
    }
    Ok(a)
}

fn parse_signal(s: &str) -> Result<i32, CliError> {
    if let Ok(n) = s.parse::<i32>() {
        return Ok(n);
    }
    let name = s.trim_start_matches("SIG").to_ascii_uppercase();
    Ok(match name.as_str() {
        "TERM" => libc::SIGTERM,
        "KILL" => libc::SIGKILL,
        "INT" => libc::SIGINT,
        "HUP" => libc::SIGHUP,
        "QUIT" => libc::SIGQUIT,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "STOP" => libc::SIGSTOP,
        "CONT" => libc::SIGCONT,
        "WINCH" => libc::SIGWINCH,
        _ => return Err(CliError::Signal(s.into())),
    })
}

fn state_json(i: &ContainerInfo) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": "1.0.2",
        "id": i.id,
        "pid": i.pid,
        "status": i.status.to_string(),
        "bundle": i.bundle.as_ref().map(|b| b.display().to_string()).unwrap_or_default(),
        "rootfs": i.rootfs.display().to_string(),
        "created": i.created,
        "owner": "",
    })
}

fn id_arg(a: &Args) -> Result<String, CliError> {
    a.positional
        .first()
        .cloned()
        .ok_or_else(|| CliError::Usage(format!("{} needs a container id", a.cmd)))
}

fn runtime(a: &Args) -> Result<Runtime, CliError> {
    let parent =
        std::env::var("SWARM_RUNTIME_CGROUP_PARENT").unwrap_or_else(|_| "swarm-runtime".into());
    Ok(Runtime::new(RuntimeConfig::new(&a.root, parent))?)
}

fn create(rt: &Runtime, a: &Args, id: &str) -> Result<ContainerInfo, CliError> {
    let bundle = a
        .bundle
        .clone()
        .unwrap_or_else(|| std::env::current_dir().unwrap_or_default());
    let bundle = std::fs::canonicalize(&bundle).unwrap_or(bundle);
    let spec = crate::oci::load_bundle(id, &bundle)?;
    let info = rt.create_with_bundle(spec, Some(bundle))?;
    if let Some(p) = &a.pid_file {
        let _ = std::fs::write(p, info.pid.to_string());
    }
    Ok(info)
}

fn run_cmd(a: Args) -> Result<i32, CliError> {
    match a.cmd.as_str() {
        "create" => {
            let id = id_arg(&a)?;
            create(&runtime(&a)?, &a, &id)?;
            Ok(0)
        }
        "start" => {
            runtime(&a)?.start(&id_arg(&a)?)?;
            Ok(0)
        }
        "run" => {
            let id = id_arg(&a)?;
            let rt = runtime(&a)?;
            create(&rt, &a, &id)?;
            if let Err(e) = rt.start(&id) {
                let _ = rt.remove(&id, true);
                return Err(e.into());
            }
            if a.detach {
                return Ok(0);
            }
            let st = rt.wait(&id, None);
            let _ = rt.remove(&id, true);
            Ok(st?.code)
        }
        "state" => {
            let info = runtime(&a)?.inspect(&id_arg(&a)?)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&state_json(&info)).expect("json")
            );
            Ok(0)
        }
        "kill" => {
            let id = id_arg(&a)?;
            let sig = parse_signal(a.positional.get(1).map_or("TERM", |s| s.as_str()))?;
            runtime(&a)?.signal(&id, sig)?;
            Ok(0)
        }
        "delete" => {
            let id = id_arg(&a)?;
            let rt = runtime(&a)?;
            match rt.remove(&id, a.force) {
                Err(RuntimeError::NotFound { .. }) if a.force => Ok(0),
                r => r.map(|_| 0).map_err(Into::into),
            }
        }
        "list" | "ps" => {
            let list = runtime(&a)?.list()?;
            if a.format == "json" {
                let v: Vec<_> = list.iter().map(state_json).collect();
                println!("{}", serde_json::to_string(&v).expect("json"));
            } else {
                println!("ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER");
                for i in list {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\troot",
                        i.id,
                        i.pid,
                        i.status,
                        i.bundle
                            .map(|b| b.display().to_string())
                            .unwrap_or_default(),
                        i.created
                    );
                }
            }
            Ok(0)
        }
        "wait" => {
            let st = runtime(&a)?.wait(&id_arg(&a)?, None)?;
            Ok(st.code)
        }
        "stop" => {
            let st = runtime(&a)?.stop(&id_arg(&a)?, Duration::from_secs(10))?;
            Ok(st.code)
        }
        other => Err(CliError::Usage(format!("unknown command {other:?}"))),
    }
}

/// Entry point of the `swarm-runtime` binary (argv without the program name).
pub fn main(argv: Vec<String>) -> i32 {
    match parse(argv).and_then(run_cmd) {
        Ok(code) => code,
        Err(CliError::Usage(m)) if m.is_empty() => {
            println!("{USAGE}");
            0
        }
        Err(e) => {
            eprintln!("swarm-runtime: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_runc_style_arguments() {
        let a = parse(
            ["--root", "/tmp/r", "run", "--bundle=/b", "c1"]
                .map(String::from)
                .to_vec(),
        )
        .unwrap();
        assert_eq!(a.root, PathBuf::from("/tmp/r"));
        assert_eq!((a.cmd.as_str(), a.positional[0].as_str()), ("run", "c1"));
        assert_eq!(a.bundle, Some(PathBuf::from("/b")));
        let a = parse(["delete", "-f", "c1"].map(String::from).to_vec()).unwrap();
        assert!(a.force);
        assert_eq!(parse_signal("SIGKILL").unwrap(), 9);
        assert_eq!(parse_signal("term").unwrap(), 15);
        assert!(parse_signal("NOPE").is_err());
    }
}
