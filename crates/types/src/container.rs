//! Mounts and process knobs of a service's containers (Docker's `--mount`, `--ulimit`,
//! `--sysctl`, `--cap-add/--cap-drop`, `--read-only`, `--group`, `--stop-signal`,
//! `--oom-score-adj`, `--limit-pids`, `--tty`): the model, the `--mount` syntax and the checks
//! run before a spec is written. Pure: the agent maps these onto the runtime.

use crate::error::SpecError;
use crate::limits;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most mounts, ulimits, sysctls, capabilities or groups in one spec.
pub const MAX_ENTRIES: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MountType {
    Bind,
    /// A named volume local to the node that runs the task.
    #[default]
    Volume,
    Tmpfs,
}

impl MountType {
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Volume => "volume",
            MountType::Tmpfs => "tmpfs",
        }
    }
}

/// Docker's bind propagation modes.
pub const PROPAGATIONS: &[&str] = &[
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

/// One mount of a service's containers (`--mount`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Mount {
    #[serde(rename = "type")]
    pub kind: MountType,
    /// Host path (bind), volume name (volume), empty (tmpfs).
    pub source: String,
    /// Absolute path inside the container.
    pub target: String,
    pub readonly: bool,
    /// Bind only; empty = `rprivate`.
    pub bind_propagation: String,
    /// Volume only: do not populate a new volume from the image's content at the target.
    pub volume_nocopy: bool,
    /// Volume only: labels of the volume when this mount creates it.
    pub volume_labels: BTreeMap<String, String>,
    /// Volume only: `local` (the only driver).
    pub volume_driver: String,
    /// Volume only: options of the local driver (`type`, `device`, `o`).
    pub volume_options: BTreeMap<String, String>,
    /// Tmpfs only: size in bytes (0 = the kernel's default, half the memory).
    pub tmpfs_size_bytes: u64,
    /// Tmpfs only: permission bits (0 = 1777).
    pub tmpfs_mode: u32,
}

/// The options of Docker's `local` volume driver.
pub const LOCAL_VOLUME_OPTIONS: &[&str] = &["type", "device", "o"];

fn bad(spec: &str, reason: impl Into<String>) -> SpecError {
    SpecError::Mount {
        mount: limits::echo(spec),
        reason: reason.into(),
    }
}

fn parse_bool(spec: &str, key: &str, v: Option<&str>) -> Result<bool, SpecError> {
    match v.map(str::to_ascii_lowercase).as_deref() {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(o) => Err(bad(spec, format!("{key}={o}: expected true or false"))),
    }
}

/// `64m`, `1g`, `1024` → bytes (1024-based).
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

impl Mount {
    /// Parses Docker's `--mount` value: comma-separated `key=value` fields (`type`,
    /// `source|src`, `target|dst|destination`, `readonly|ro`, `bind-propagation`,
    /// `volume-nocopy`, `volume-label`, `volume-driver`, `volume-opt`, `tmpfs-size`,
    /// `tmpfs-mode`). The type defaults to `volume`, as in Docker.
    pub fn parse(spec: &str) -> Result<Mount, SpecError> {
        let mut m = Mount::default();
        if spec.len() > limits::MAX_VALUE_BYTES {
            return Err(bad(spec, "too long"));
        }
        for field in spec.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            let (k, v) = match field.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
                None => (field.to_ascii_lowercase(), None),
            };
            let need = |v: Option<&str>| {
                v.map(str::to_string)
                    .ok_or_else(|| bad(spec, format!("{k} needs a value ({k}=...)")))
            };
            match k.as_str() {
                "type" => {
                    m.kind = match need(v)?.as_str() {
                        "bind" => MountType::Bind,
                        "volume" => MountType::Volume,
                        "tmpfs" => MountType::Tmpfs,
                        o => {
                            return Err(bad(
                                spec,
                                format!("type {o:?} is not supported: use bind, volume or tmpfs"),
                            ))
                        }
                    }
                }
                "source" | "src" => m.source = need(v)?,
                "target" | "dst" | "destination" => m.target = need(v)?,
                "readonly" | "ro" => m.readonly = parse_bool(spec, &k, v)?,
                "bind-propagation" => m.bind_propagation = need(v)?,
                "volume-nocopy" => m.volume_nocopy = parse_bool(spec, &k, v)?,
                "volume-driver" => m.volume_driver = need(v)?,
                "volume-label" | "volume-opt" => {
                    let kv = need(v)?;
                    let (a, b) = kv.split_once('=').ok_or_else(|| {
                        bad(spec, format!("{k} needs KEY=VALUE ({k}={kv} has no '=')"))
                    })?;
                    let map = if k == "volume-label" {
                        &mut m.volume_labels
                    } else {
                        &mut m.volume_options
                    };
                    map.insert(a.to_string(), b.to_string());
                }
                "tmpfs-size" => {
                    let s = need(v)?;
                    m.tmpfs_size_bytes = parse_size(&s).ok_or_else(|| {
                        bad(spec, format!("tmpfs-size {s:?}: expected bytes such as 64m or 1g"))
                    })?;
                }
                "tmpfs-mode" => {
                    let s = need(v)?;
                    m.tmpfs_mode = u32::from_str_radix(s.trim_start_matches("0o"), 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| {
                            bad(spec, format!("tmpfs-mode {s:?}: expected octal bits such as 1770"))
                        })?;
                }
                o => {
                    return Err(bad(
                        spec,
                        format!("unknown field {o:?} (known: type, source, target, readonly, bind-propagation, volume-nocopy, volume-label, volume-driver, volume-opt, tmpfs-size, tmpfs-mode)"),
                    ))
                }
            }
        }
        m.validate()?;
        Ok(m)
    }

    /// The `--mount` syntax of this mount (for messages and `service inspect`'s readers).
    pub fn describe(&self) -> String {
        let mut s = format!("type={},target={}", self.kind.as_str(), self.target);
        if !self.source.is_empty() {
            s = format!("{s},source={}", self.source);
        }
        if self.readonly {
            s.push_str(",readonly");
        }
        s
    }

    /// Checks one mount on its own.
    pub fn validate(&self) -> Result<(), SpecError> {
        let me = self.describe();
        let target_ok = self.target.starts_with('/')
            && self.target != "/"
            && self.target.len() <= 4096
            && !self.target.split('/').any(|c| c == "..")
            && !self.target.contains('\0');
        if !target_ok {
            return Err(bad(
                &me,
                "target must be an absolute container path other than / and without '..' (target=/data)",
            ));
        }
        let bind_opts = !self.bind_propagation.is_empty();
        let vol_opts = self.volume_nocopy
            || !self.volume_labels.is_empty()
            || !self.volume_driver.is_empty()
            || !self.volume_options.is_empty();
        let tmpfs_opts = self.tmpfs_size_bytes != 0 || self.tmpfs_mode != 0;
        let kind = self.kind.as_str();
        let not = |what: &str| {
            Err(bad(
                &me,
                format!("{what} options do not apply to a {kind} mount"),
            ))
        };
        match self.kind {
            MountType::Bind => {
                if vol_opts {
                    return not("volume-*");
                }
                if tmpfs_opts {
                    return not("tmpfs-*");
                }
                if !self.source.starts_with('/') || self.source.contains('\0') {
                    return Err(bad(
                        &me,
                        "a bind mount needs an absolute host path as source (source=/srv/data)",
                    ));
                }
                if bind_opts && !PROPAGATIONS.contains(&self.bind_propagation.as_str()) {
                    return Err(bad(
                        &me,
                        format!(
                            "bind-propagation {:?}: use one of {}",
                            limits::echo(&self.bind_propagation),
                            PROPAGATIONS.join(", ")
                        ),
                    ));
                }
            }
            MountType::Volume => {
                if bind_opts {
                    return not("bind-*");
                }
                if tmpfs_opts {
                    return not("tmpfs-*");
                }
                validate_volume_name(&self.source).map_err(|r| bad(&me, r))?;
                if !self.volume_driver.is_empty() && self.volume_driver != "local" {
                    return Err(bad(
                        &me,
                        format!(
                            "volume driver {:?} is not available: only the local driver exists (volume-driver=local)",
                            limits::echo(&self.volume_driver)
                        ),
                    ));
                }
                for k in self.volume_options.keys() {
                    if !LOCAL_VOLUME_OPTIONS.contains(&k.as_str()) {
                        return Err(bad(
                            &me,
                            format!(
                                "volume-opt {:?} is not an option of the local driver: use type, device or o",
                                limits::echo(k)
                            ),
                        ));
                    }
                }
                let o = &self.volume_options;
                let complete = o.contains_key("type") && o.contains_key("device");
                if !o.is_empty() && !complete {
                    return Err(bad(
                        &me,
                        "volume-opt needs both type and device (e.g. volume-opt=type=tmpfs,volume-opt=device=tmpfs,volume-opt=o=size=64m)",
                    ));
                }
                for k in self.volume_labels.keys() {
                    if k.is_empty() || k.contains('=') || k.chars().any(char::is_whitespace) {
                        return Err(SpecError::Label(limits::echo(k)));
                    }
                }
                limits::check_labels("volume", &self.volume_labels)?;
            }
            MountType::Tmpfs => {
                if bind_opts {
                    return not("bind-*");
                }
                if vol_opts {
                    return not("volume-*");
                }
                if !self.source.is_empty() {
                    return Err(bad(&me, "a tmpfs mount has no source: remove source="));
                }
            }
        }
        Ok(())
    }
}

/// Docker's volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 64 characters here (a
/// directory name under the node's state dir).
pub fn validate_volume_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a volume mount needs a volume name as source (source=NAME); anonymous volumes are not supported".into());
    }
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid volume name {:?}: use 1-64 characters from [a-zA-Z0-9_.-], starting with a letter or digit",
            limits::echo(name)
        ))
    }
}

/// One resource limit (`--ulimit nofile=1024:2048`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// Docker's ulimit names.
pub const ULIMITS: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

impl Ulimit {
    /// `name=soft[:hard]` (Docker's syntax; `-1` = unlimited).
    pub fn parse(s: &str) -> Result<Ulimit, SpecError> {
        let err = |r: String| SpecError::Ulimit {
            ulimit: limits::echo(s),
            reason: r,
        };
        let (name, vals) = s
            .split_once('=')
            .ok_or_else(|| err("expected NAME=SOFT[:HARD], e.g. nofile=1024:2048".into()))?;
        let num = |v: &str| -> Result<u64, SpecError> {
            match v.trim() {
                "-1" | "unlimited" => Ok(u64::MAX),
                t => t
                    .parse()
                    .map_err(|_| err(format!("{t:?} is not a number (or -1 for unlimited)"))),
            }
        };
        let (soft, hard) = match vals.split_once(':') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(vals)?, num(vals)?),
        };
        let u = Ulimit {
            name: name.trim().to_string(),
            soft,
            hard,
        };
        u.validate()?;
        Ok(u)
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        let err = |r: String| SpecError::Ulimit {
            ulimit: limits::echo(&self.name),
            reason: r,
        };
        if !ULIMITS.contains(&self.name.as_str()) {
            return Err(err(format!(
                "unknown name: use one of {}",
                ULIMITS.join(", ")
            )));
        }
        if self.soft > self.hard {
            return Err(err(format!(
                "the soft limit {} is above the hard limit {}",
                self.soft, self.hard
            )));
        }
        Ok(())
    }
}

/// Capability names (without `CAP_`), as the kernel numbers them.
pub const CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Signal names a stop signal may use, with their numbers (x86_64/aarch64 Linux).
pub const SIGNALS: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// `SIGTERM`, `TERM`, `15` (or `SIGRTMIN+3` style real-time signals 34-64) → the number.
pub fn signal_number(s: &str) -> Option<i32> {
    let t = s.trim().to_ascii_uppercase();
    if let Ok(n) = t.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let name = t.strip_prefix("SIG").unwrap_or(&t);
    if let Some(off) = name.strip_prefix("RTMIN+") {
        return off
            .parse::<i32>()
            .ok()
            .filter(|o| (0..=30).contains(o))
            .map(|o| 34 + o);
    }
    SIGNALS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// A sysctl a container may set (namespaced ones only, as runc allows).
pub fn sysctl_allowed(key: &str) -> bool {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
        "kernel.domainname",
    ];
    let name_ok = !key.is_empty()
        && key.len() <= 128
        && !key.contains("..")
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    name_ok && (IPC.contains(&key) || key.starts_with("fs.mqueue.") || key.starts_with("net."))
}

/// Process and kernel knobs of a service's containers; the default is Docker's default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ContainerOptions {
    /// Signal that stops the container (empty = SIGTERM).
    pub stop_signal: String,
    pub ulimits: Vec<Ulimit>,
    pub sysctls: BTreeMap<String, String>,
    /// Added to Docker's default capabilities (`ALL` for every one).
    pub cap_add: Vec<String>,
    /// Removed from them (`ALL` for every one); applied before `cap_add`.
    pub cap_drop: Vec<String>,
    /// Mount the container's root filesystem read-only.
    pub read_only: bool,
    /// Supplementary groups (names from the image's /etc/group, or gids).
    pub groups: Vec<String>,
    /// The workload's oom_score_adj, -1000 to 1000.
    pub oom_score_adj: i64,
    /// Maximum number of processes in the container (0 = unlimited).
    pub pids_limit: i64,
    /// Give the workload a pseudo-terminal (its output is logged as stdout).
    pub tty: bool,
    /// `--log-driver`: only `json-file` (the default, also when empty).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub log_driver: String,
    /// `--log-opt`: `max-size` (e.g. 10m; default unlimited, as Docker's json-file) and
    /// `max-file` (files kept, with max-size; default 1).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub log_opts: BTreeMap<String, String>,
}

impl ContainerOptions {
    /// Log rotation: (bytes per file, 0 = unlimited; files kept, at least 1). Call after
    /// [`ContainerOptions::validate`].
    pub fn log_rotation(&self) -> (u64, u32) {
        let size = self
            .log_opts
            .get("max-size")
            .and_then(|v| parse_size(v))
            .unwrap_or(0);
        let files = self
            .log_opts
            .get("max-file")
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(1)
            .max(1);
        (size, files)
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        let opt = |what: &str, reason: String| SpecError::ContainerOption {
            what: what.to_string(),
            reason,
        };
        if !matches!(self.log_driver.as_str(), "" | "json-file") {
            return Err(opt(
                "--log-driver",
                format!(
                    "{:?} is not available: containers log to json-file (read them with swarmctl service logs)",
                    limits::echo(&self.log_driver)
                ),
            ));
        }
        for (k, v) in &self.log_opts {
            match k.as_str() {
                "max-size" => {
                    if parse_size(v).is_none_or(|n| n < 1024) {
                        return Err(opt(
                            "--log-opt max-size",
                            format!(
                                "{:?} is not a size of at least 1k (such as 10m)",
                                limits::echo(v)
                            ),
                        ));
                    }
                }
                "max-file" => {
                    if v.parse::<u32>().ok().is_none_or(|n| n == 0 || n > 100) {
                        return Err(opt(
                            "--log-opt max-file",
                            format!(
                                "{:?} is not a number of files from 1 to 100",
                                limits::echo(v)
                            ),
                        ));
                    }
                    if !self.log_opts.contains_key("max-size") {
                        return Err(opt(
                            "--log-opt max-file",
                            "needs max-size (files rotate when they reach it)".into(),
                        ));
                    }
                }
                other => {
                    return Err(opt(
                        "--log-opt",
                        format!(
                            "unknown option {:?}: json-file takes max-size and max-file",
                            limits::echo(other)
                        ),
                    ))
                }
            }
        }
        for (what, n) in [
            ("ulimits", self.ulimits.len()),
            ("sysctls", self.sysctls.len()),
            ("capabilities", self.cap_add.len() + self.cap_drop.len()),
            ("groups", self.groups.len()),
        ] {
            if n > MAX_ENTRIES {
                return Err(SpecError::TooMany {
                    what: what.into(),
                    count: n,
                    limit: MAX_ENTRIES,
                });
            }
        }
        if !self.stop_signal.is_empty() && signal_number(&self.stop_signal).is_none() {
            return Err(opt(
                "--stop-signal",
                format!(
                    "unknown signal {:?}: use a name such as SIGTERM, SIGINT, SIGQUIT or a number",
                    limits::echo(&self.stop_signal)
                ),
            ));
        }
        for u in &self.ulimits {
            u.validate()?;
        }
        for (k, v) in &self.sysctls {
            if !sysctl_allowed(k) {
                return Err(opt(
                    "--sysctl",
                    format!("{:?} is not namespaced (it would change the host): only kernel.msg*, kernel.sem, kernel.shm*, kernel.domainname, fs.mqueue.* and net.* are allowed", limits::echo(k)),
                ));
            }
            if v.len() > 4096 || v.contains('\n') {
                return Err(opt("--sysctl", format!("the value of {k} is not one line")));
            }
        }
        let (mut add_all, mut drop_all) = (false, false);
        for (list, all) in [
            (&self.cap_add, &mut add_all),
            (&self.cap_drop, &mut drop_all),
        ] {
            for c in list {
                let u = c.to_ascii_uppercase();
                let n = u.strip_prefix("CAP_").unwrap_or(&u);
                if n == "ALL" {
                    *all = true;
                } else if !CAPABILITIES.contains(&n) {
                    return Err(opt(
                        "--cap-add/--cap-drop",
                        format!("unknown capability {:?}: use a name such as NET_ADMIN or CAP_NET_ADMIN, or ALL", limits::echo(c)),
                    ));
                }
            }
        }
        if add_all && drop_all {
            return Err(opt(
                "--cap-add/--cap-drop",
                "ALL in both says nothing: keep one of them".into(),
            ));
        }
        for g in &self.groups {
            if g.is_empty() || g.len() > 64 || g.contains([':', '/', '\n', '\0', ',']) {
                return Err(opt(
                    "--group",
                    format!(
                        "invalid group {:?}: use a group name or a gid",
                        limits::echo(g)
                    ),
                ));
            }
        }
        if !(-1000..=1000).contains(&self.oom_score_adj) {
            return Err(opt(
                "--oom-score-adj",
                format!("{} is out of range: use -1000 to 1000", self.oom_score_adj),
            ));
        }
        if self.pids_limit < 0 {
            return Err(opt(
                "--limit-pids",
                "must not be negative (0 = unlimited)".into(),
            ));
        }
        Ok(())
    }
}

/// Checks a list of mounts: each one, their count, and no two on the same target.
pub fn validate_mounts(mounts: &[Mount]) -> Result<(), SpecError> {
    if mounts.len() > MAX_ENTRIES {
        return Err(SpecError::TooMany {
            what: "mounts".into(),
            count: mounts.len(),
            limit: MAX_ENTRIES,
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for m in mounts {
        m.validate()?;
        let t = m.target.trim_end_matches('/').to_string();
        if !seen.insert(t.clone()) {
            return Err(bad(
                &m.describe(),
                format!("another mount already uses target {t}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_syntax_follows_docker() {
        let m =
            Mount::parse("type=bind,src=/srv/data,dst=/data,ro,bind-propagation=rslave").unwrap();
        assert_eq!(m.kind, MountType::Bind);
        assert_eq!(
            (m.source.as_str(), m.target.as_str()),
            ("/srv/data", "/data")
        );
        assert!(m.readonly);
        assert_eq!(m.bind_propagation, "rslave");
        let m = Mount::parse(
            "source=db,target=/var/lib/db,volume-nocopy,volume-label=a=b,volume-driver=local",
        )
        .unwrap();
        assert_eq!(m.kind, MountType::Volume);
        assert!(m.volume_nocopy);
        assert_eq!(m.volume_labels.get("a").map(String::as_str), Some("b"));
        let m = Mount::parse(
            "type=tmpfs,destination=/run,tmpfs-size=64m,tmpfs-mode=1770,readonly=false",
        )
        .unwrap();
        assert_eq!(
            (m.tmpfs_size_bytes, m.tmpfs_mode, m.readonly),
            (64 << 20, 0o1770, false)
        );
        let m = Mount::parse("type=volume,source=t,target=/t,volume-opt=type=tmpfs,volume-opt=device=tmpfs,volume-opt=o=size=1m").unwrap();
        assert_eq!(
            m.volume_options.get("o").map(String::as_str),
            Some("size=1m")
        );
    }

    #[test]
    fn bad_mounts_say_what_is_wrong() {
        let cases = [
            ("type=nfs,target=/x", "bind, volume or tmpfs"),
            ("type=bind,source=rel,target=/x", "absolute host path"),
            ("type=bind,source=/a,target=x", "absolute container path"),
            ("type=bind,source=/a,target=/", "other than /"),
            ("type=bind,source=/a,target=/a/../b", "'..'"),
            (
                "type=bind,source=/a,target=/b,volume-nocopy",
                "volume-* options",
            ),
            (
                "type=bind,source=/a,target=/b,bind-propagation=weird",
                "rshared",
            ),
            (
                "type=volume,target=/b",
                "anonymous volumes are not supported",
            ),
            ("type=volume,source=../x,target=/b", "invalid volume name"),
            (
                "type=volume,source=v,target=/b,volume-driver=nfs",
                "only the local driver",
            ),
            (
                "type=volume,source=v,target=/b,volume-opt=foo=bar",
                "type, device or o",
            ),
            (
                "type=volume,source=v,target=/b,volume-opt=type=tmpfs",
                "both type and device",
            ),
            (
                "type=volume,source=v,target=/b,tmpfs-size=1m",
                "tmpfs-* options",
            ),
            ("type=tmpfs,source=x,target=/b", "no source"),
            ("type=tmpfs,target=/b,tmpfs-size=lots", "64m"),
            ("type=tmpfs,target=/b,tmpfs-mode=999", "octal"),
            ("type=tmpfs,target=/b,colour=red", "unknown field"),
            ("type=tmpfs,target=/b,readonly=maybe", "true or false"),
            ("type=tmpfs,target", "needs a value"),
        ];
        for (s, want) in cases {
            let e = Mount::parse(s).unwrap_err().to_string();
            assert!(e.contains(want), "{s}: {e}");
        }
        let a = Mount::parse("type=tmpfs,target=/x").unwrap();
        let e = validate_mounts(&[a.clone(), a]).unwrap_err().to_string();
        assert!(e.contains("already uses target /x"), "{e}");
    }

    #[test]
    fn knobs_are_checked() {
        assert_eq!(
            Ulimit::parse("nofile=1024:2048").unwrap(),
            Ulimit {
                name: "nofile".into(),
                soft: 1024,
                hard: 2048
            }
        );
        assert_eq!(Ulimit::parse("core=-1").unwrap().hard, u64::MAX);
        for bad in ["nofile", "files=1", "nofile=2:1", "nofile=x"] {
            assert!(Ulimit::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(signal_number("SIGQUIT"), Some(3));
        assert_eq!(signal_number("int"), Some(2));
        assert_eq!(signal_number("9"), Some(9));
        assert_eq!(signal_number("SIGRTMIN+3"), Some(37));
        assert_eq!(signal_number("SIGNOPE"), None);
        let ok = ContainerOptions {
            stop_signal: "SIGINT".into(),
            sysctls: [("net.ipv4.ip_forward".to_string(), "1".to_string())].into(),
            cap_add: vec!["cap_net_admin".into()],
            cap_drop: vec!["ALL".into()],
            oom_score_adj: -500,
            ..Default::default()
        };
        ok.validate().unwrap();
        let with = |f: &dyn Fn(&mut ContainerOptions)| {
            let mut o = ok.clone();
            f(&mut o);
            o.validate().unwrap_err().to_string()
        };
        assert!(with(&|o| o.stop_signal = "NOPE".into()).contains("unknown signal"));
        assert!(with(&|o| {
            o.sysctls.insert("kernel.panic".into(), "1".into());
        })
        .contains("not namespaced"));
        assert!(with(&|o| o.cap_add = vec!["FLY".into()]).contains("unknown capability"));
        assert!(with(&|o| o.cap_add = vec!["ALL".into()]).contains("ALL in both"));
        assert!(with(&|o| o.oom_score_adj = 2000).contains("-1000 to 1000"));
        assert!(with(&|o| o.pids_limit = -1).contains("negative"));
        assert!(with(&|o| o.groups = vec!["a:b".into()]).contains("invalid group"));
    }
}
