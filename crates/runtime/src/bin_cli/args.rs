//! The command line parsed: global options, the command and its options; each runc option
//! either filled in or refused with the reason (`unsupported`).

use super::*;

/// Options before the command.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Globals {
    pub(super) root: PathBuf,
    pub(super) log: Option<PathBuf>,
    pub(super) log_json: bool,
    pub(super) debug: bool,
}

#[derive(Debug)]
pub(super) struct Args {
    pub(super) globals: Globals,
    pub(super) cmd: String,
    pub(super) positional: Vec<String>,
    pub(super) bundle: Option<PathBuf>,
    pub(super) pid_file: Option<PathBuf>,
    pub(super) console_socket: Option<PathBuf>,
    /// exec: on a terminal (`--tty`, or `"terminal": true` in the process file).
    pub(super) tty: bool,
    /// update: `--resources FILE|-` and the limit flags given, in order.
    pub(super) resources: Option<PathBuf>,
    pub(super) update_flags: Vec<(String, String)>,
    /// events: one record (`--stats`) or one every `--interval`.
    pub(super) stats: bool,
    pub(super) interval: Option<std::time::Duration>,
    pub(super) force: bool,
    pub(super) detach: bool,
    pub(super) all: bool,
    pub(super) quiet: bool,
    pub(super) format: String,
    pub(super) process: Option<PathBuf>,
    pub(super) no_new_keyring: bool,
}

pub(super) fn unsupported(flag: &str) -> Option<CliError> {
    let (flag, why) = match flag {
        "--systemd-cgroup" => (
            "--systemd-cgroup",
            "swarm-runtime manages cgroups through cgroupfs itself; drop the flag (docker: --exec-opt native.cgroupdriver=cgroupfs)",
        ),
        "--criu" => (
            "--criu",
            "swarm-runtime has no checkpoint/restore",
        ),
        "--no-pivot" => (
            "--no-pivot",
            "swarm-runtime always enters the rootfs with pivot_root, which a ramdisk root cannot do; run containers from a disk-backed root",
        ),
        _ => return None,
    };
    Some(CliError::Unsupported { flag, why })
}

pub(super) const GLOBAL_FLAGS: &[&str] = &["--root", "--log", "--log-format", "--debug"];

/// Splits `--flag=value` into the flag and its inline value.
pub(super) fn split_flag(arg: &str) -> (String, Option<String>) {
    match arg.split_once('=') {
        Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
        _ => (arg.to_string(), None),
    }
}

/// A flag's value: inline (`--flag=value`) or the next argument.
pub(super) fn flag_value(
    flag: &str,
    inline: Option<String>,
    it: &mut std::vec::IntoIter<String>,
) -> Result<String, CliError> {
    match inline {
        Some(v) => Ok(v),
        None => it
            .next()
            .ok_or_else(|| CliError::Usage(format!("{flag} needs a value"))),
    }
}

pub(super) fn parse_globals(
    it: &mut std::vec::IntoIter<String>,
) -> Result<(Globals, String), CliError> {
    let mut g = Globals {
        root: PathBuf::from("/run/swarm-runtime"),
        log: None,
        log_json: false,
        debug: false,
    };
    while let Some(arg) = it.next() {
        let (flag, inline) = split_flag(&arg);
        let mut val = || flag_value(&flag, inline.clone(), &mut *it);
        match flag.as_str() {
            "--root" => g.root = val()?.into(),
            "--log" => g.log = Some(val()?.into()),
            "--log-format" => {
                g.log_json = match val()?.as_str() {
                    "text" => false,
                    "json" => true,
                    other => {
                        return Err(CliError::Usage(format!(
                            "invalid --log-format {other:?}: use text or json"
                        )))
                    }
                }
            }
            "--debug" => g.debug = true,
            "--help" | "-h" => return Err(CliError::Usage(String::new())),
            "--version" | "-v" => return Ok((g, "--version".into())),
            f if f.starts_with('-') && f.len() > 1 => {
                return Err(unsupported(f)
                    .unwrap_or_else(|| CliError::Usage(format!("unknown global option {f}"))))
            }
            _ => return Ok((g, arg)),
        }
    }
    Err(CliError::Usage("missing command".into()))
}

pub(super) fn parse_command(
    globals: Globals,
    cmd: String,
    it: std::vec::IntoIter<String>,
) -> Result<Args, CliError> {
    let mut a = Args {
        globals,
        cmd,
        positional: Vec::new(),
        bundle: None,
        pid_file: None,
        console_socket: None,
        tty: false,
        resources: None,
        update_flags: Vec::new(),
        stats: false,
        interval: None,
        force: false,
        detach: false,
        all: false,
        quiet: false,
        format: "table".into(),
        process: None,
        no_new_keyring: false,
    };
    let mut it = it;
    let creates = matches!(a.cmd.as_str(), "create" | "run");
    let exec = a.cmd == "exec";
    while let Some(arg) = it.next() {
        // exec: everything after the id is the command.
        if exec && !a.positional.is_empty() {
            a.positional.push(arg);
            a.positional.extend(it.by_ref());
            break;
        }
        let (flag, inline) = split_flag(&arg);
        let mut val = || flag_value(&flag, inline.clone(), &mut it);
        match (a.cmd.as_str(), flag.as_str()) {
            (_, "--help" | "-h") => return Err(CliError::Usage(String::new())),
            (_, "--") => {
                a.positional.extend(it.by_ref());
            }
            (_, "--bundle" | "-b") if creates => a.bundle = Some(val()?.into()),
            (_, "--pid-file") if creates => a.pid_file = Some(val()?.into()),
            // As runc: keep the caller's session keyring instead of a new one.
            (_, "--no-new-keyring") if creates => a.no_new_keyring = true,
            (_, "--console-socket") if creates || exec => a.console_socket = Some(val()?.into()),
            ("exec", "--tty" | "-t") => a.tty = true,
            (_, f @ "--no-pivot") if creates => return Err(unsupported(f).expect("listed")),
            ("run" | "exec", "--detach" | "-d") => a.detach = true,
            ("exec", "--pid-file") => a.pid_file = Some(val()?.into()),
            ("exec", "--process" | "-p") => a.process = Some(val()?.into()),
            ("delete", "--force" | "-f") => a.force = true,
            ("kill", "--all" | "-a") => a.all = true,
            ("list" | "ps", "--format" | "-f") => {
                a.format = val()?;
                if a.format != "table" && a.format != "json" {
                    return Err(CliError::Usage(format!(
                        "invalid --format {:?}: use table or json",
                        a.format
                    )));
                }
            }
            ("list" | "ps", "--quiet" | "-q") => a.quiet = true,
            ("update", "--resources" | "-r") => a.resources = Some(val()?.into()),
            ("events", "--stats") => a.stats = true,
            ("events", "--interval") => {
                a.interval = Some(crate::events::parse_interval(&val()?).map_err(CliError::Usage)?)
            }
            ("update", f) if crate::update::FLAGS.contains(&f) => {
                let v = val()?;
                a.update_flags.push((f.to_string(), v));
            }
            ("update", f) if crate::update::unsupported(f).is_some() => {
                let why = crate::update::unsupported(f).expect("checked");
                return Err(CliError::Refused(format!("{f} is not supported: {why}")));
            }
            (cmd, f) if f.starts_with('-') && f.len() > 1 => {
                if GLOBAL_FLAGS.contains(&f) {
                    return Err(CliError::Usage(format!(
                        "{f} is a global option: put it before the command (swarm-runtime {f} ... {cmd})"
                    )));
                }
                if let Some(e) = unsupported(f) {
                    return Err(e);
                }
                return Err(CliError::Usage(format!("unknown option {f} for {cmd}")));
            }
            _ => a.positional.push(arg),
        }
    }
    Ok(a)
}
