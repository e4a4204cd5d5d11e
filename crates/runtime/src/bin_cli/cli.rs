//! The runc-compatible command line: `swarm-runtime [GLOBAL OPTIONS] COMMAND [OPTIONS]`, with
//! `create`, `start`, `state`, `kill`, `delete`, `run` and `list` over OCI bundles. Exit codes:
//! the container's for `run`, 0/1 otherwise; errors on stderr (and, with `--log`, as records
//! in the log file, the way runc writes them for containerd).
//!
//! Every runc option is either implemented or refused with a message that says why: none is
//! accepted and ignored.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use swarm_runtime::runtime::{ContainerInfo, Runtime, RuntimeConfig, RuntimeError};

const USAGE: &str = "usage: swarm-runtime [GLOBAL OPTIONS] COMMAND [OPTIONS]
global options (before the command):
  --root DIR               state directory (default /run/swarm-runtime)
  --log FILE               write log records to FILE instead of stderr
  --log-format text|json   format of log records (default text)
  --debug                  also log debug records
commands:
  create [--bundle DIR] [--pid-file FILE] [--console-socket SOCKET] [--no-new-keyring] <id>
  start <id>
  run [--bundle DIR] [--pid-file FILE] [--console-socket SOCKET] [--no-new-keyring] [--detach] <id>
  state <id>
  kill [--all] <id> [SIGNAL]
  delete [--force] <id>
  list [--format table|json] [--quiet]
  exec [--process FILE] [--detach] [--pid-file FILE] [--tty --console-socket SOCKET] <id> [COMMAND...]
  ps [--format table|json] <id>
  update [--resources FILE|-] [--memory N[k|m|g]] [--cpu-quota US] [--cpu-period US]
         [--pids-limit N] <id>   change the limits of a container that has not stopped
  events [--stats] [--interval 5s] <id>
                             cgroup statistics (and oom records) as JSON lines
  pause <id>                 freeze every process of a running container
  resume <id>                thaw a paused container
  features                   what this runtime supports (JSON, the OCI features document)
  --version                  versions of swarm-runtime and of the OCI spec it implements
--console-socket: for a bundle with process.terminal = true (or exec --tty), the pty master
  is sent to this unix socket (SCM_RIGHTS), as runc does
not supported (refused): --systemd-cgroup, --criu, --no-pivot";

/// Errors of argument parsing and command execution.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}\n{USAGE}")]
    Usage(String),
    /// A runc option swarm-runtime refuses instead of ignoring.
    #[error("{flag} is not supported: {why}")]
    Unsupported {
        flag: &'static str,
        why: &'static str,
    },
    /// A request the runtime cannot carry out as asked (what and why).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Oci(#[from] swarm_runtime::oci::OciError),
    #[error("unknown signal {0:?}")]
    Signal(String),
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[cfg(test)]
fn parse(argv: Vec<String>) -> Result<Args, CliError> {
    let mut it = argv.into_iter();
    let (g, cmd) = parse_globals(&mut it)?;
    parse_command(g, cmd, it)
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

/// The OCI runtime features document (`runc features`): what a caller may rely on.
fn features() -> serde_json::Value {
    let caps: Vec<String> = (0..=40u32)
        .filter_map(swarm_runtime::caps::cap_name)
        .map(|n| format!("CAP_{n}"))
        .collect();
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.0.2",
        "hooks": [],
        "mountOptions": ["bind", "rbind", "ro", "private", "rprivate", "shared", "rshared",
                         "slave", "rslave", "size", "mode"],
        "linux": {
            "namespaces": ["pid", "mount", "uts", "ipc", "cgroup", "network"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL",
                            "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG",
                            "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE",
                              "SCMP_CMP_GT", "SCMP_CMP_GE", "SCMP_CMP_MASKED_EQ"],
                "archs": ["SCMP_ARCH_X86_64"]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false}
        },
        "annotations": {"io.swarm.runtime.version": env!("CARGO_PKG_VERSION")}
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
    let mut cfg = RuntimeConfig::new(&a.globals.root, parent);
    // One container operation per process, single-threaded: protect the helper with a
    // read-only bind instead of copying the binary on every call.
    cfg.helper_read_only_bind = true;
    Ok(Runtime::new(cfg)?)
}

fn create(rt: &Runtime, a: &Args, id: &str) -> Result<ContainerInfo, CliError> {
    let bundle = a
        .bundle
        .clone()
        .unwrap_or_else(|| std::env::current_dir().unwrap_or_default());
    let bundle = std::fs::canonicalize(&bundle).unwrap_or(bundle);
    let mut spec = swarm_runtime::oci::load_bundle(id, &bundle)?;
    spec.console_socket = a.console_socket.clone();
    spec.options.no_new_keyring = a.no_new_keyring;
    let info = rt.create_with_bundle(spec, Some(bundle))?;
    if let Some(p) = &a.pid_file {
        if let Err(e) = write_pid_file(p, info.pid) {
            // A caller that asked for the pid file cannot manage a container without it.
            let _ = rt.remove(id, true);
            return Err(e);
        }
    }
    Ok(info)
}

/// Writes the init pid the way runc does: to a temporary file beside `p`, renamed into place,
/// so a reader never sees a partial pid.
fn write_pid_file(p: &std::path::Path, pid: i32) -> Result<(), CliError> {
    let err = |source| CliError::File {
        path: p.to_path_buf(),
        source,
    };
    let name = p
        .file_name()
        .ok_or_else(|| err(std::io::Error::other("not a file name")))?;
    let tmp = p.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    std::fs::write(&tmp, pid.to_string()).map_err(err)?;
    std::fs::rename(&tmp, p).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
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
            if a.all {
                runtime(&a)?.signal_all(&id, sig)?;
            } else {
                runtime(&a)?.signal(&id, sig)?;
            }
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
        "ps" => {
            let pids = runtime(&a)?.pids(&id_arg(&a)?)?;
            if a.format == "json" {
                println!("{}", serde_json::to_string(&pids).expect("json"));
            } else {
                println!("PID");
                for p in pids {
                    println!("{p}");
                }
            }
            Ok(0)
        }
        "exec" => exec::exec_cmd(&a),
        "list" => list_cmd(&a),
        "wait" => {
            let st = runtime(&a)?.wait(&id_arg(&a)?, None)?;
            Ok(st.code)
        }
        "stop" => {
            let st = runtime(&a)?.stop(&id_arg(&a)?, Duration::from_secs(10))?;
            Ok(st.code)
        }
        "--version" => {
            println!(
                "swarm-runtime version {}\nspec: 1.0.2",
                env!("CARGO_PKG_VERSION")
            );
            Ok(0)
        }
        "pause" => {
            runtime(&a)?.pause(&id_arg(&a)?)?;
            Ok(0)
        }
        "events" => {
            let id = id_arg(&a)?;
            let rt = runtime(&a)?;
            if a.stats {
                println!("{}", crate::events::stats_record(&rt, &id)?);
                return Ok(0);
            }
            let every = a.interval.unwrap_or(std::time::Duration::from_secs(5));
            Ok(crate::events::follow(&rt, &id, every)?)
        }
        "update" => update_cmd(&a),
        "resume" => {
            runtime(&a)?.resume(&id_arg(&a)?)?;
            Ok(0)
        }
        "features" => {
            println!(
                "{}",
                serde_json::to_string_pretty(&features()).expect("json")
            );
            Ok(0)
        }
        other => Err(CliError::Usage(format!("unknown command {other:?}"))),
    }
}

/// `list`: every container of the root, as runc prints them.
fn list_cmd(a: &Args) -> Result<i32, CliError> {
    let list = runtime(a)?.list()?;
    if a.quiet {
        for i in list {
            println!("{}", i.id);
        }
    } else if a.format == "json" {
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

/// `update`: the limits from `--resources` and the flags, applied to the container's cgroup.
fn update_cmd(a: &Args) -> Result<i32, CliError> {
    let id = id_arg(a)?;
    // As runc: the document first, then the flags over it.
    let mut res = match &a.resources {
        Some(p) => {
            let body = if p.as_os_str() == "-" {
                let mut b = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut b).map(|_| b)
            } else {
                std::fs::read(p)
            }
            .map_err(|source| CliError::File {
                path: p.clone(),
                source,
            })?;
            crate::update::from_json(&body).map_err(CliError::Refused)?
        }
        None => Default::default(),
    };
    let flags = crate::update::from_flags(&a.update_flags).map_err(CliError::Refused)?;
    res.memory_bytes = flags.memory_bytes.or(res.memory_bytes);
    res.cpu_quota_us = flags.cpu_quota_us.or(res.cpu_quota_us);
    res.cpu_period_us = flags.cpu_period_us.or(res.cpu_period_us);
    res.pids_max = flags.pids_max.or(res.pids_max);
    runtime(a)?.update(&id, &res)?;
    Ok(0)
}

/// Entry point of the `swarm-runtime` binary (argv without the program name).
pub fn main(argv: Vec<String>) -> i32 {
    let mut it = argv.into_iter();
    let (globals, cmd) = match parse_globals(&mut it) {
        Ok(g) => g,
        Err(e) => return fail(None, e),
    };
    let log = match Logger::open(&globals) {
        Ok(l) => l,
        Err(e) => return fail(None, e),
    };
    let rest: Vec<String> = it.collect();
    log.debug(|| format!("{cmd} {}", rest.join(" ")));
    match parse_command(globals, cmd, rest.into_iter()).and_then(run_cmd) {
        Ok(code) => {
            log.debug(|| format!("exit code {code}"));
            code
        }
        Err(e) => fail(Some(&log), e),
    }
}

fn fail(log: Option<&Logger>, e: CliError) -> i32 {
    match e {
        CliError::Usage(m) if m.is_empty() => {
            println!("{USAGE}");
            0
        }
        e => {
            if let Some(l) = log {
                l.error(&e.to_string());
            }
            eprintln!("swarm-runtime: {e}");
            1
        }
    }
}

#[path = "args.rs"]
mod args;
use args::*;
#[path = "exec.rs"]
mod exec;
#[path = "log.rs"]
mod log;
use log::Logger;

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;
