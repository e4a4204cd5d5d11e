//! OCI bundle (`config.json` + rootfs) → [`ContainerSpec`], via the oci-spec crate.
//!
//! Supported: `root.path`/`root.readonly`, `process.args/env/cwd/user` (numeric ids),
//! `hostname`, bind and tmpfs `mounts` (the standard /proc, /dev, /sys… mounts are always set
//! up by the runtime itself, so those entries are skipped), a `network` namespace entry
//! (absent = host network), `linux.resources` memory limit, cpu quota/period, pids limit,
//! `process.capabilities` (the bounding set is the workload's set, as Docker and `runc spec`
//! fill every set alike) and `linux.seccomp` (compiled by [`crate::seccomp::Profile`]; a spec
//! without one gets the built-in default profile, where runc would install none: we never make
//! a new session keyring, and that profile is what keeps the host's keyring out of reach).
//! `process.terminal: true` gives the container a terminal (`StdioMode::Console`), whose master
//! goes to the caller's `--console-socket`.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::spec::{
    ContainerSpec, MountSpec, NetworkMode, ProcessSpec, Propagation, Resources, RootfsSpec,
    StdioMode,
};

/// Errors of bundle loading.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("cannot load {path}: {source}")]
    Load {
        path: PathBuf,
        source: oci_spec::OciSpecError,
    },
    #[error("{path}: {what}: {reason}")]
    Invalid {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("{path}: {what} is not supported by swarm-runtime; {hint}")]
    Unsupported {
        path: PathBuf,
        what: &'static str,
        hint: &'static str,
    },
}

const STANDARD: &[&str] = &[
    "/proc",
    "/dev",
    "/dev/pts",
    "/dev/shm",
    "/dev/mqueue",
    "/sys",
    "/sys/fs/cgroup",
];

/// Loads `<bundle>/config.json` and converts it.
pub fn load_bundle(id: &str, bundle: &Path) -> Result<ContainerSpec, OciError> {
    let path = bundle.join("config.json");
    let spec = Spec::load(&path).map_err(|source| OciError::Load {
        path: path.clone(),
        source,
    })?;
    let root = spec.root().clone().unwrap_or_default();
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    let process = spec.process().clone().unwrap_or_default();
    let user = process.user();
    let p = ProcessSpec {
        args: process.args().clone().unwrap_or_default(),
        env: process.env().clone().unwrap_or_default(),
        cwd: process.cwd().display().to_string(),
        user: format!("{}:{}", user.uid(), user.gid()),
    };
    let mut cs = ContainerSpec::new(
        id,
        RootfsSpec::Directory {
            path: rootfs,
            readonly: root.readonly().unwrap_or(false),
        },
        p,
    );
    cs.readonly_rootfs = root.readonly().unwrap_or(false);
    cs.hostname = spec.hostname().clone();
    cs.stdio = if process.terminal().unwrap_or(false) {
        StdioMode::Console
    } else {
        StdioMode::Inherit
    };
    for m in spec.mounts().clone().unwrap_or_default() {
        let dest = m.destination().clone();
        if STANDARD.iter().any(|s| Path::new(s) == dest) {
            continue;
        }
        let opts = m.options().clone().unwrap_or_default();
        match m.typ().as_deref() {
            Some("tmpfs") => cs.mounts.push(MountSpec::Tmpfs {
                destination: dest,
                size_bytes: opts
                    .iter()
                    .find_map(|o| o.strip_prefix("size=").and_then(|s| s.parse().ok())),
                mode: opts.iter().find_map(|o| {
                    o.strip_prefix("mode=")
                        .and_then(|s| u32::from_str_radix(s, 8).ok())
                }),
            }),
            _ if opts.iter().any(|o| o == "bind" || o == "rbind") => {
                if let Some(src) = m.source() {
                    let propagation = opts
                        .iter()
                        .rev()
                        .find_map(|o| match o.as_str() {
                            "private" => Some(Propagation::Private),
                            "rprivate" => Some(Propagation::Rprivate),
                            "shared" => Some(Propagation::Shared),
                            "rshared" => Some(Propagation::Rshared),
                            "slave" => Some(Propagation::Slave),
                            "rslave" => Some(Propagation::Rslave),
                            _ => None,
                        })
                        .unwrap_or_default();
                    cs.mounts.push(MountSpec::Bind {
                        source: src.clone(),
                        destination: dest,
                        readonly: opts.iter().any(|o| o == "ro"),
                        propagation,
                        copy_up: false,
                    });
                }
            }
            _ => {}
        }
    }
    if let Some(b) = process
        .capabilities()
        .as_ref()
        .and_then(|c| c.bounding().clone())
    {
        // Serde's names (CAP_PERFMON …) are the kernel's, unlike the enum's Display.
        let mut names: Vec<String> = b
            .iter()
            .filter_map(|c| serde_json::to_value(c).ok()?.as_str().map(str::to_string))
            .collect();
        names.sort();
        cs.options.cap_drop = vec!["ALL".into()];
        cs.options.cap_add = names;
    }
    cs.network = NetworkMode::Host;
    if let Some(sc) = spec.linux().as_ref().and_then(|l| l.seccomp().clone()) {
        let json = serde_json::to_string(&sc).map_err(|e| OciError::Invalid {
            path: path.clone(),
            what: "linux.seccomp",
            reason: e.to_string(),
        })?;
        cs.options.seccomp = crate::privilege::SeccompMode::Profile(json);
    }
    if let Some(linux) = spec.linux() {
        if let Some(ns) = linux.namespaces() {
            if ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network) {
                cs.network = NetworkMode::None;
            }
        }
        if let Some(r) = linux.resources() {
            let mut res = Resources::default();
            if let Some(m) = r.memory() {
                res.memory_bytes = m.limit().filter(|l| *l > 0).map(|l| l as u64);
            }
            if let Some(c) = r.cpu() {
                res.cpu_quota_us = c.quota().filter(|q| *q > 0).map(|q| q as u64);
                res.cpu_period_us = c.period();
            }
            if let Some(p) = r.pids() {
                res.pids_max = (p.limit() > 0).then_some(p.limit() as u64);
            }
            cs.resources = res;
        }
    }
    Ok(cs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privilege::SeccompMode;

    fn bundle(config: &str) -> (tempfile::TempDir, ContainerSpec) {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("rootfs")).unwrap();
        std::fs::write(t.path().join("config.json"), config).unwrap();
        let cs = load_bundle("c1", t.path()).unwrap();
        (t, cs)
    }

    #[test]
    fn capabilities_and_a_seccomp_profile_come_from_the_bundle() {
        let (_t, cs) = bundle(
            r#"{"ociVersion":"1.0.2",
                "process":{"terminal":false,"user":{"uid":0,"gid":0},"args":["true"],"cwd":"/",
                  "capabilities":{"bounding":["CAP_KILL","CAP_PERFMON","CAP_NET_BIND_SERVICE"],
                                  "effective":["CAP_KILL"]}},
                "root":{"path":"rootfs"},
                "linux":{"seccomp":{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,
                  "architectures":["SCMP_ARCH_X86_64"],
                  "syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW"},
                              {"names":["personality"],"action":"SCMP_ACT_ALLOW",
                               "args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]}]}}}"#,
        );
        assert_eq!(cs.options.cap_drop, vec!["ALL".to_string()]);
        assert_eq!(
            cs.options.cap_add,
            vec!["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_PERFMON"]
        );
        let mask = cs.options.capability_mask().unwrap();
        assert_eq!(mask, (1 << 5) | (1 << 10) | (1 << 38));
        let SeccompMode::Profile(json) = &cs.options.seccomp else {
            panic!("{:?}", cs.options.seccomp);
        };
        let p = crate::seccomp::Profile::parse(json).unwrap();
        assert_eq!(p.default_action, "SCMP_ACT_ERRNO");
        assert_eq!(p.syscalls[1].args[0].op, "SCMP_CMP_EQ");
        p.compile(mask, (6, 1)).unwrap();
        cs.validate().unwrap();
    }

    #[test]
    fn a_bundle_without_seccomp_or_capabilities_keeps_the_defaults() {
        let (_t, cs) = bundle(
            r#"{"ociVersion":"1.0.2","process":{"terminal":false,"user":{"uid":0,"gid":0},"args":["true"],"cwd":"/"},"root":{"path":"rootfs"}}"#,
        );
        assert_eq!(cs.options.seccomp, SeccompMode::Default);
        assert!(cs.options.cap_add.is_empty() && cs.options.cap_drop.is_empty());
    }
}
