//! Per-container process and kernel knobs beyond the command itself (Docker's `--cap-add`,
//! `--cap-drop`, `--ulimit`, `--sysctl`, `--group-add`, `--oom-score-adj`, `--tty`) and the
//! per-container `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`. Plain data plus the pure
//! rules that check it (unit-tested without root); [`crate::init`] applies it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::caps;

/// Bounds: a container spec travels on a command line and in a state file.
pub const MAX_ENTRIES: usize = 256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionsError {
    #[error("unknown capability {0:?}: use a name such as NET_ADMIN or CAP_NET_ADMIN, or ALL")]
    Capability(String),
    #[error("--cap-add ALL and --cap-drop ALL together say nothing: keep one of them")]
    CapabilityAllBoth,
    #[error("unknown ulimit {0:?}: use one of {names}", names = RLIMITS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))]
    Rlimit(String),
    #[error("ulimit {name}: the soft limit {soft} is above the hard limit {hard}")]
    RlimitOrder { name: String, soft: u64, hard: u64 },
    #[error("sysctl {0:?} is not namespaced (it would change the host): only kernel.msg*, kernel.sem, kernel.shm*, kernel.domainname, fs.mqueue.* and net.* are allowed")]
    SysctlNotNamespaced(String),
    #[error("sysctl {0:?} is a network setting, but the container shares the host's network: drop it or give the container its own network")]
    SysctlHostNetwork(String),
    #[error("invalid sysctl name {0:?}: use dotted names like net.ipv4.ip_forward")]
    SysctlName(String),
    #[error("oom score adjustment {0} is out of range: use -1000 to 1000")]
    OomScoreAdj(i32),
    #[error(
        "invalid masked or read-only path {0:?}: must be an absolute path without `..` components"
    )]
    Path(String),
    #[error("invalid group {0:?}: use a group name or a numeric gid")]
    Group(String),
    #[error("too many {what}: {count} (at most {MAX_ENTRIES})")]
    TooMany { what: &'static str, count: usize },
    #[error(transparent)]
    Privilege(#[from] crate::privilege::PrivilegeError),
}

/// One resource limit (`setrlimit`); Docker's `--ulimit name=soft[:hard]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// Docker's short name: `nofile`, `nproc`, `core`, ...
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// Docker's ulimit names and their `RLIMIT_*` resources.
pub const RLIMITS: &[(&str, u32)] = &[
    ("as", libc::RLIMIT_AS),
    ("core", libc::RLIMIT_CORE),
    ("cpu", libc::RLIMIT_CPU),
    ("data", libc::RLIMIT_DATA),
    ("fsize", libc::RLIMIT_FSIZE),
    ("locks", libc::RLIMIT_LOCKS),
    ("memlock", libc::RLIMIT_MEMLOCK),
    ("msgqueue", libc::RLIMIT_MSGQUEUE),
    ("nice", libc::RLIMIT_NICE),
    ("nofile", libc::RLIMIT_NOFILE),
    ("nproc", libc::RLIMIT_NPROC),
    ("rss", libc::RLIMIT_RSS),
    ("rtprio", libc::RLIMIT_RTPRIO),
    ("rttime", libc::RLIMIT_RTTIME),
    ("sigpending", libc::RLIMIT_SIGPENDING),
    ("stack", libc::RLIMIT_STACK),
];

/// The `RLIMIT_*` resource of a Docker ulimit name (`nofile`, or `RLIMIT_NOFILE`).
pub fn rlimit_resource(name: &str) -> Option<u32> {
    let n = name.to_ascii_lowercase();
    let n = n.strip_prefix("rlimit_").unwrap_or(&n);
    RLIMITS.iter().find(|(k, _)| *k == n).map(|(_, r)| *r)
}

/// Contents of the per-container files bind-mounted over `/etc/hosts`, `/etc/hostname` and
/// `/etc/resolv.conf` (as Docker does): written into the container's state dir at create.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EtcFiles {
    pub hosts: String,
    pub hostname: String,
    pub resolv_conf: String,
}

/// Process and kernel knobs of a container; the default is Docker's default.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerOptions {
    /// Capabilities added to Docker's default set (`ALL` for every one).
    pub cap_add: Vec<String>,
    /// Capabilities removed from it (`ALL` for every one); applied before `cap_add`.
    pub cap_drop: Vec<String>,
    pub rlimits: Vec<Rlimit>,
    /// Namespaced sysctls only (see [`check_sysctl`]).
    pub sysctls: BTreeMap<String, String>,
    /// Supplementary groups (names resolved against the container's /etc/group, or gids).
    pub additional_groups: Vec<String>,
    /// The workload's `oom_score_adj` (default 0).
    pub oom_score_adj: Option<i32>,
    /// Give the workload a pseudo-terminal as stdin/stdout/stderr (its output is logged as
    /// stdout).
    pub tty: bool,
    /// Per-container `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`.
    pub etc_files: Option<EtcFiles>,
    /// Rotate `container.log` when it reaches this many bytes (0 = never).
    pub log_max_size: u64,
    /// Log files kept when rotating, the current one included (0 or 1: the log is emptied
    /// instead of rotated).
    pub log_max_files: u32,
    /// Docker's `--privileged`: every capability, every host device, no seccomp filter, no
    /// masked or read-only paths, `/sys` writable.
    pub privileged: bool,
    /// Host devices made available (with `privileged`, the host's are added at create).
    pub devices: Vec<crate::privilege::DeviceMapping>,
    /// Paths hidden from the workload; `None`: Docker's list (`mounts::MASKED_PATHS`). An OCI
    /// bundle's `linux.maskedPaths` sets it (Docker sends an empty list for `--privileged`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masked_paths: Option<Vec<String>>,
    /// Paths made read-only; `None`: Docker's list (`mounts::READONLY_PATHS`); from an OCI
    /// bundle's `linux.readonlyPaths`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readonly_paths: Option<Vec<String>>,
    pub seccomp: crate::privilege::SeccompMode,
    /// Mount `/sys` read-write (privileged containers always do; an OCI bundle whose `/sys`
    /// mount is not `ro`, as Docker writes it for `--privileged`).
    pub sys_writable: bool,
    /// Keep the caller's session keyring (runc's `--no-new-keyring`); by default the init
    /// joins a new anonymous one, so no container reaches the host's session keys.
    pub no_new_keyring: bool,
}

fn cap_set(names: &[String]) -> Result<(bool, u64), OptionsError> {
    let mut all = false;
    let mut mask = 0u64;
    for n in names {
        let u = n.trim().to_ascii_uppercase();
        if u == "ALL" {
            all = true;
        } else {
            let c = caps::cap_number(&u).ok_or_else(|| OptionsError::Capability(n.clone()))?;
            mask |= 1u64 << c;
        }
    }
    Ok((all, mask))
}

/// Every capability number this runtime knows (0..=40).
fn all_caps() -> u64 {
    (1u64 << 41) - 1
}

impl ContainerOptions {
    /// The capability set of the workload: Docker's default, minus `cap_drop` (ALL empties
    /// it), plus `cap_add` (ALL fills it); every one when privileged.
    pub fn capability_mask(&self) -> Result<u64, OptionsError> {
        if self.privileged {
            return Ok(all_caps());
        }
        let (add_all, add) = cap_set(&self.cap_add)?;
        let (drop_all, drop) = cap_set(&self.cap_drop)?;
        if add_all && drop_all {
            return Err(OptionsError::CapabilityAllBoth);
        }
        let mut m = if add_all {
            all_caps()
        } else if drop_all {
            0
        } else {
            caps::default_mask()
        };
        m &= !drop;
        m |= add;
        Ok(m)
    }

    /// Checks every knob; `host_network` (the container shares the host's network) decides whether `net.*` sysctls are namespaced.
    pub fn validate(&self, host_network: bool) -> Result<(), OptionsError> {
        for (what, count) in [
            ("capabilities", self.cap_add.len() + self.cap_drop.len()),
            ("ulimits", self.rlimits.len()),
            ("sysctls", self.sysctls.len()),
            ("groups", self.additional_groups.len()),
            (
                "devices",
                if self.privileged {
                    0
                } else {
                    self.devices.len()
                },
            ),
        ] {
            if count > MAX_ENTRIES {
                return Err(OptionsError::TooMany { what, count });
            }
        }
        let caps = self.capability_mask()?;
        crate::privilege::check(
            self.privileged,
            &self.cap_drop,
            &self.devices,
            &self.seccomp,
            caps,
        )?;
        for r in &self.rlimits {
            if rlimit_resource(&r.name).is_none() {
                return Err(OptionsError::Rlimit(r.name.clone()));
            }
            if r.soft > r.hard {
                return Err(OptionsError::RlimitOrder {
                    name: r.name.clone(),
                    soft: r.soft,
                    hard: r.hard,
                });
            }
        }
        for k in self.sysctls.keys() {
            check_sysctl(k, host_network)?;
        }
        if let Some(a) = self.oom_score_adj {
            if !(-1000..=1000).contains(&a) {
                return Err(OptionsError::OomScoreAdj(a));
            }
        }
        for p in self
            .masked_paths
            .iter()
            .chain(self.readonly_paths.iter())
            .flatten()
        {
            if crate::paths::clean_container_path(p).is_none() {
                return Err(OptionsError::Path(p.clone()));
            }
        }
        for g in &self.additional_groups {
            if g.is_empty() || g.contains([':', '/', '\n', '\0']) {
                return Err(OptionsError::Group(g.clone()));
            }
        }
        Ok(())
    }
}

/// A sysctl the container may set: only those the kernel keeps per namespace (IPC, UTS
/// domain name, POSIX message queues, and `net.*` when the container has its own network),
/// as runc allows. Anything else would change the host.
pub fn check_sysctl(key: &str, host_network: bool) -> Result<(), OptionsError> {
    let name_ok = !key.is_empty()
        && key.len() <= 128
        && !key.starts_with('.')
        && !key.ends_with('.')
        && !key.contains("..")
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if !name_ok {
        return Err(OptionsError::SysctlName(key.into()));
    }
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
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        return Ok(());
    }
    if key.starts_with("net.") {
        return if host_network {
            Err(OptionsError::SysctlHostNetwork(key.into()))
        } else {
            Ok(())
        };
    }
    Err(OptionsError::SysctlNotNamespaced(key.into()))
}

/// `/proc/sys/...` path of a checked sysctl name.
pub fn sysctl_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_follow_docker_rules() {
        let mut o = ContainerOptions::default();
        assert_eq!(o.capability_mask().unwrap(), caps::default_mask());
        o.cap_drop = vec!["ALL".into()];
        assert_eq!(o.capability_mask().unwrap(), 0);
        o.cap_add = vec!["chown".into()];
        assert_eq!(o.capability_mask().unwrap(), 1);
        o.cap_drop = vec!["CAP_NET_RAW".into()];
        o.cap_add = vec!["NET_ADMIN".into()];
        let m = o.capability_mask().unwrap();
        assert_eq!(m & (1 << 13), 0);
        assert_ne!(m & (1 << 12), 0);
        o.cap_add = vec!["ALL".into()];
        o.cap_drop = vec!["SYS_ADMIN".into()];
        let m = o.capability_mask().unwrap();
        assert_eq!(m & (1 << 21), 0);
        assert_ne!(m & (1 << 40), 0);
        o.cap_drop = vec!["ALL".into()];
        assert_eq!(o.capability_mask(), Err(OptionsError::CapabilityAllBoth));
        o.cap_drop = vec!["NOPE".into()];
        assert!(matches!(
            o.validate(false),
            Err(OptionsError::Capability(_))
        ));
    }

    #[test]
    fn only_namespaced_sysctls_pass() {
        for k in [
            "kernel.shmmax",
            "fs.mqueue.msg_max",
            "net.ipv4.ip_forward",
            "kernel.domainname",
        ] {
            check_sysctl(k, false).unwrap();
        }
        for k in ["kernel.panic", "vm.swappiness", "kernel.hostname"] {
            assert!(
                matches!(
                    check_sysctl(k, false),
                    Err(OptionsError::SysctlNotNamespaced(_))
                ),
                "{k}"
            );
        }
        assert!(matches!(
            check_sysctl("net.ipv4.ip_forward", true),
            Err(OptionsError::SysctlHostNetwork(_))
        ));
        for k in ["net/../../x", "net..a", "", "net.a b"] {
            assert!(
                matches!(check_sysctl(k, false), Err(OptionsError::SysctlName(_))),
                "{k}"
            );
        }
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward"),
            "/proc/sys/net/ipv4/ip_forward"
        );
    }

    #[test]
    fn rlimits_and_ranges_are_checked() {
        let mut o = ContainerOptions {
            rlimits: vec![Rlimit {
                name: "nofile".into(),
                soft: 10,
                hard: 20,
            }],
            ..Default::default()
        };
        o.validate(false).unwrap();
        assert_eq!(rlimit_resource("RLIMIT_NOFILE"), Some(libc::RLIMIT_NOFILE));
        o.rlimits[0].soft = 30;
        assert!(matches!(
            o.validate(false),
            Err(OptionsError::RlimitOrder { .. })
        ));
        o.rlimits[0] = Rlimit {
            name: "files".into(),
            soft: 1,
            hard: 1,
        };
        let e = o.validate(false).unwrap_err().to_string();
        assert!(e.contains("nofile"), "{e}");
        let o = ContainerOptions {
            oom_score_adj: Some(1001),
            ..Default::default()
        };
        assert_eq!(o.validate(false), Err(OptionsError::OomScoreAdj(1001)));
    }
}
