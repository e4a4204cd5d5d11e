//! Process knobs: ulimits, capabilities, signals, sysctls and the options that carry them.

use super::*;

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
    /// `--privileged`: every capability, every host device, no seccomp filter, no masked or
    /// read-only paths, `/sys` writable.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    /// `--device`: host device nodes given to the containers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
    /// `--security-opt seccomp=unconfined|FILE` (the built-in profile by default).
    #[serde(skip_serializing_if = "Seccomp::is_default")]
    pub seccomp: Seccomp,
}

crate::shared_default!(ContainerOptions);

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
        super::privilege::validate(self)
    }
}
