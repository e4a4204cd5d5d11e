//! OCI bundle (`config.json` + rootfs) → [`ContainerSpec`], via the oci-spec crate.
//!
//! Supported: `root.path`/`root.readonly`, `process.args/env/cwd/user` (numeric ids),
//! `hostname`, bind and tmpfs `mounts` (the standard /proc, /dev, /sys… mounts are always set
//! up by the runtime itself, so those entries are skipped), a `network` namespace entry
//! (absent = host network), a `user` namespace entry with `linux.uidMappings`/`gidMappings`
//! (the workload runs in it; see [`crate::userns`]), `linux.resources` memory limit, cpu quota/period, pids limit,
//! `process.capabilities` (the bounding set is the workload's set, as Docker and `runc spec`
//! fill every set alike), `linux.seccomp` (compiled by [`crate::seccomp::Profile`]; a spec
//! without one gets no filter, as with runc — the init joins a new session keyring, so the
//! host's session keys stay out of reach) and whether the `/sys` mount is `ro`.
//! `linux.maskedPaths` and `linux.readonlyPaths` are the paths masked and made read-only (none
//! when absent, as with runc; the runtime's own default is Docker's lists), and
//! `linux.devices` entries are bound from the host node at the same path (which must be that
//! device: this runtime never makes device nodes).
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
    bundle_mounts(spec.mounts().as_deref().unwrap_or_default(), &mut cs);
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
    // As runc: the bundle's filter, and none without one (Docker sends none for
    // `--privileged` and `seccomp=unconfined`); the init's new session keyring keeps the
    // host's session keys out of reach either way.
    cs.options.seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().clone()) {
        Some(sc) => {
            let json = serde_json::to_string(&sc).map_err(|e| OciError::Invalid {
                path: path.clone(),
                what: "linux.seccomp",
                reason: e.to_string(),
            })?;
            crate::privilege::SeccompMode::Profile(json)
        }
        None => crate::privilege::SeccompMode::Unconfined,
    };
    // As runc: the bundle's lists, and none when it has none (Docker omits empty lists, e.g.
    // for `--security-opt systempaths=unconfined`; `runc spec` writes Docker's defaults).
    let linux = spec.linux().as_ref();
    cs.options.masked_paths = Some(
        linux
            .and_then(|l| l.masked_paths().clone())
            .unwrap_or_default(),
    );
    cs.options.readonly_paths = Some(
        linux
            .and_then(|l| l.readonly_paths().clone())
            .unwrap_or_default(),
    );
    if let Some(linux) = spec.linux() {
        for d in linux.devices().iter().flatten() {
            if let Some(m) = device(&path, d)? {
                cs.options.devices.push(m);
            }
        }
        if let Some(ns) = linux.namespaces() {
            if ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network) {
                cs.network = NetworkMode::None;
            }
            if ns.iter().any(|n| n.typ() == LinuxNamespaceType::User) {
                cs.user_namespace = Some(user_namespace(&path, linux)?);
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

/// The bundle's mounts: binds and tmpfs as user mounts (the standard ones are the runtime's
/// own), and whether its `/sys` is writable.
fn bundle_mounts(mounts: &[oci_spec::runtime::Mount], cs: &mut ContainerSpec) {
    for m in mounts {
        let dest = m.destination().clone();
        let opts = m.options().clone().unwrap_or_default();
        if dest == Path::new("/sys") {
            // Docker clears `ro` for `--privileged`.
            cs.options.sys_writable = !opts.iter().any(|o| o == "ro");
        }
        if STANDARD.iter().any(|s| Path::new(s) == dest) {
            continue;
        }
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
}

/// A `user` namespace entry's maps (`linux.uidMappings`/`gidMappings`, both required). The
/// bundle's rootfs is used as it is: its maker shifted its ownership, as runc expects.
fn user_namespace(
    path: &Path,
    linux: &oci_spec::runtime::Linux,
) -> Result<crate::userns::IdMap, OciError> {
    let ranges = |m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        m.iter()
            .flatten()
            .map(|r| crate::userns::IdRange {
                container: r.container_id(),
                host: r.host_id(),
                size: r.size(),
            })
            .collect::<Vec<_>>()
    };
    let map = crate::userns::IdMap {
        uids: ranges(linux.uid_mappings()),
        gids: ranges(linux.gid_mappings()),
    };
    map.validate().map_err(|e| OciError::Invalid {
        path: path.to_path_buf(),
        what: "linux.uidMappings/gidMappings",
        reason: e.to_string(),
    })?;
    Ok(map)
}

/// An OCI `linux.devices` entry as a host node to bind (this runtime never makes device
/// nodes: its `/dev` is `nodev`): the node at the same path on the host, which must be that
/// device. The devices every container gets anyway are skipped.
fn device(
    path: &Path,
    d: &oci_spec::runtime::LinuxDevice,
) -> Result<Option<crate::privilege::DeviceMapping>, OciError> {
    use oci_spec::runtime::LinuxDeviceType;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let at = d.path();
    let standard = at
        .strip_prefix("/dev")
        .ok()
        .and_then(|n| n.to_str())
        .is_some_and(|n| crate::mounts::DEVICES.contains(&n) || n == "console" || n == "ptmx");
    if standard {
        return Ok(None);
    }
    let invalid = |reason: String| OciError::Invalid {
        path: path.to_path_buf(),
        what: "linux.devices",
        reason,
    };
    let meta = std::fs::metadata(at).map_err(|e| {
        invalid(format!(
            "{}: {e}; swarm-runtime binds the host's node of a device and cannot create one",
            at.display()
        ))
    })?;
    let t = meta.file_type();
    let kind_ok = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => t.is_char_device(),
        LinuxDeviceType::B => t.is_block_device(),
        other => {
            return Err(invalid(format!(
                "{}: device type {other:?} is not supported (only c, u and b)",
                at.display()
            )))
        }
    };
    let rdev = meta.rdev();
    let (major, minor) = (libc::major(rdev) as i64, libc::minor(rdev) as i64);
    if !kind_ok || major != d.major() || minor != d.minor() {
        return Err(invalid(format!(
            "{} on this host is not device {}:{} of that type; swarm-runtime binds the host's node \
             at the same path and cannot create one elsewhere",
            at.display(),
            d.major(),
            d.minor()
        )));
    }
    Ok(Some(crate::privilege::DeviceMapping {
        host: at.clone(),
        container: at.clone(),
        permissions: "rwm".into(),
    }))
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
    fn masked_and_read_only_paths_and_devices_come_from_the_bundle() {
        use std::os::unix::fs::MetadataExt;
        let rdev = std::fs::metadata("/dev/loop-control")
            .or_else(|_| std::fs::metadata("/dev/full"))
            .unwrap()
            .rdev();
        let (maj, min) = (libc::major(rdev), libc::minor(rdev));
        let node = if std::path::Path::new("/dev/loop-control").exists() {
            "/dev/loop-control"
        } else {
            "/dev/full"
        };
        let cfg = |major: u32| {
            format!(
                r#"{{"ociVersion":"1.0.2","process":{{"terminal":false,"user":{{"uid":0,"gid":0}},"args":["true"],"cwd":"/"}},
                "root":{{"path":"rootfs"}},
                "linux":{{"maskedPaths":["/proc/kcore"],"readonlyPaths":[],
                  "devices":[{{"path":"/dev/null","type":"c","major":1,"minor":3}},
                             {{"path":"{node}","type":"c","major":{major},"minor":{min}}}]}}}}"#
            )
        };
        let (_t, cs) = bundle(&cfg(maj));
        assert_eq!(
            cs.options.masked_paths,
            Some(vec!["/proc/kcore".to_string()])
        );
        assert_eq!(cs.options.readonly_paths, Some(vec![]));
        let devs: Vec<_> = cs.options.devices.iter().map(|d| d.host.clone()).collect();
        if node == "/dev/full" {
            assert!(
                devs.is_empty(),
                "standard devices are not bound twice: {devs:?}"
            );
        } else {
            assert_eq!(devs, vec![std::path::PathBuf::from(node)]);
        }
        cs.validate().unwrap();
        // The same path on the host being another device is refused.
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("rootfs")).unwrap();
        std::fs::write(t.path().join("config.json"), cfg(maj + 1)).unwrap();
        if node != "/dev/full" {
            let e = load_bundle("c1", t.path()).unwrap_err().to_string();
            assert!(e.contains("cannot create one"), "{e}");
        }
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
    fn a_bundle_without_seccomp_or_capabilities_gets_no_filter_and_the_default_set() {
        let (_t, cs) = bundle(
            r#"{"ociVersion":"1.0.2","process":{"terminal":false,"user":{"uid":0,"gid":0},"args":["true"],"cwd":"/"},"root":{"path":"rootfs"}}"#,
        );
        // As runc: no `linux.seccomp`, no filter (Docker's --privileged sends none).
        assert_eq!(cs.options.seccomp, SeccompMode::Unconfined);
        assert!(cs.options.cap_add.is_empty() && cs.options.cap_drop.is_empty());
        assert!(!cs.options.sys_writable && cs.user_namespace.is_none());
    }

    #[test]
    fn a_writable_sys_mount_and_a_user_namespace_carry_over() {
        let (_t, cs) = bundle(
            r#"{"ociVersion":"1.0.2","process":{"terminal":false,"user":{"uid":0,"gid":0},"args":["true"],"cwd":"/"},"root":{"path":"rootfs"},
               "mounts":[{"destination":"/sys","type":"sysfs","source":"sysfs","options":["nosuid","noexec","nodev","rw"]}],
               "linux":{"namespaces":[{"type":"user"},{"type":"mount"}],
                 "uidMappings":[{"containerID":0,"hostID":100000,"size":65536}],
                 "gidMappings":[{"containerID":0,"hostID":100000,"size":65536}]}}"#,
        );
        assert!(cs.options.sys_writable);
        let m = cs.user_namespace.as_ref().unwrap();
        assert_eq!(
            (m.host_uid(0), m.host_gid(1)),
            (Some(100_000), Some(100_001))
        );
        let (_t, cs) = bundle(
            r#"{"ociVersion":"1.0.2","process":{"terminal":false,"user":{"uid":0,"gid":0},"args":["true"],"cwd":"/"},"root":{"path":"rootfs"},
               "mounts":[{"destination":"/sys","type":"sysfs","source":"sysfs","options":["nosuid","ro"]}]}"#,
        );
        assert!(!cs.options.sys_writable);
        // A user namespace without maps is refused, not run without one.
        let t = tempfile::tempdir().unwrap();
        std::fs::write(
            t.path().join("config.json"),
            r#"{"ociVersion":"1.0.2","process":{"terminal":false,"user":{"uid":0,"gid":0},"args":["true"],"cwd":"/"},"root":{"path":"rootfs"},
               "linux":{"namespaces":[{"type":"user"}]}}"#,
        )
        .unwrap();
        let e = load_bundle("c1", t.path()).unwrap_err().to_string();
        assert!(
            e.contains("uidMappings/gidMappings: user namespace uid map: empty"),
            "{e}"
        );
    }
}
