//! The mount table of a container, computed from its spec without touching anything (pure;
//! unit-tested): the rootfs, /proc, /dev and its nodes, /sys, the user's mounts with their
//! confinement checks, masked and read-only paths.

use super::*;

/// Computes the mount table for `spec` (pure; unit-tested).
pub fn plan(spec: &ContainerSpec) -> Vec<MountOp> {
    let p = PathBuf::from;
    // A privileged container may make device nodes in its /dev and write /sys, as Docker's.
    let privileged = spec.options.privileged;
    let dev_nodev = if privileged { 0 } else { NODEV };
    let sys_ro = if privileged || spec.options.sys_writable {
        0
    } else {
        libc::MS_RDONLY
    };
    let owner = tmpfs_owner(spec);
    // devpts' tty group: in a user namespace, the id the container's tty group maps to.
    let tty_gid = spec
        .user_namespace
        .as_ref()
        .map_or(Some(5), |m| m.host_gid(5));
    let devpts = match tty_gid {
        Some(g) => format!("newinstance,ptmxmode=0666,mode=0620,gid={g}"),
        None => "newinstance,ptmxmode=0666,mode=0620".to_string(),
    };
    let mut ops = vec![
        MountOp::Fs {
            fstype: "proc",
            source: "proc".into(),
            target: p("/proc"),
            flags: NOSUID | NODEV | NOEXEC,
            data: None,
        },
        MountOp::Fs {
            fstype: "tmpfs",
            source: "tmpfs".into(),
            target: p("/dev"),
            flags: NOSUID | dev_nodev | libc::MS_STRICTATIME,
            data: Some(format!("mode=755,size=65536k{owner}")),
        },
    ];
    for d in DEVICES {
        ops.push(MountOp::Bind {
            source: Path::new("/dev").join(d),
            target: Path::new("/dev").join(d),
            kind: TargetKind::File,
            readonly: false,
            flags: NOSUID | NOEXEC,
            propagation: None,
            copy_up: false,
        });
    }
    ops.extend([
        MountOp::Fs {
            fstype: "devpts",
            source: "devpts".into(),
            target: p("/dev/pts"),
            flags: NOSUID | NOEXEC,
            data: Some(devpts),
        },
        MountOp::Fs {
            fstype: "tmpfs",
            source: "shm".into(),
            target: p("/dev/shm"),
            flags: NOSUID | NODEV | NOEXEC,
            data: Some(format!("mode=1777,size=65536k{owner}")),
        },
        MountOp::Fs {
            fstype: "mqueue",
            source: "mqueue".into(),
            target: p("/dev/mqueue"),
            flags: NOSUID | NODEV | NOEXEC,
            data: None,
        },
        MountOp::Fs {
            fstype: "sysfs",
            source: "sysfs".into(),
            target: p("/sys"),
            flags: NOSUID | NODEV | NOEXEC | sys_ro,
            data: None,
        },
    ]);
    for (t, l) in [
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
        ("pts/ptmx", "/dev/ptmx"),
    ] {
        ops.push(MountOp::Symlink {
            target: t.into(),
            link: p(l),
        });
    }
    user_mounts(spec, &mut ops);
    if !privileged {
        confine(spec, &mut ops);
    }
    ops
}

/// In a user namespace the init (host root) makes the tmpfs mounts: their roots get the ids the
/// container's root maps to (`,uid=…,gid=…` for the mount data; empty otherwise).
fn tmpfs_owner(spec: &ContainerSpec) -> String {
    let Some(m) = spec.user_namespace.as_ref() else {
        return String::new();
    };
    let mut o = String::new();
    if let Some(u) = m.host_uid(0) {
        o.push_str(&format!(",uid={u}"));
    }
    if let Some(g) = m.host_gid(0) {
        o.push_str(&format!(",gid={g}"));
    }
    o
}

/// Host devices (`--device`, or all of them when privileged) and the user's binds and tmpfs
/// mounts, each after the check that its target stays inside the rootfs.
fn user_mounts(spec: &ContainerSpec, ops: &mut Vec<MountOp>) {
    let owner = tmpfs_owner(spec);
    // Their nodes bound in, the
    // only mounts without `nodev`.
    for d in &spec.options.devices {
        ops.push(MountOp::Confine {
            path: d.container.clone(),
        });
        ops.push(MountOp::Bind {
            source: d.host.clone(),
            target: d.container.clone(),
            kind: TargetKind::File,
            readonly: false,
            flags: NOSUID | NOEXEC,
            propagation: None,
            copy_up: false,
        });
    }
    for m in &spec.mounts {
        ops.push(MountOp::Confine {
            path: m.destination().to_path_buf(),
        });
        match m {
            MountSpec::Bind {
                source,
                destination,
                readonly,
                propagation,
                copy_up,
            } => ops.push(MountOp::Bind {
                source: source.clone(),
                target: destination.clone(),
                kind: if source.is_dir() {
                    TargetKind::Dir
                } else {
                    TargetKind::File
                },
                readonly: *readonly,
                flags: NOSUID | NODEV,
                propagation: Some(*propagation),
                copy_up: *copy_up,
            }),
            MountSpec::Tmpfs {
                destination,
                size_bytes,
                mode,
            } => {
                let mut data = format!("mode={:o}", mode.unwrap_or(0o1777));
                if let Some(s) = size_bytes {
                    data.push_str(&format!(",size={s}"));
                }
                data.push_str(&owner);
                ops.push(MountOp::Fs {
                    fstype: "tmpfs",
                    source: "tmpfs".into(),
                    target: destination.clone(),
                    flags: NOSUID | NODEV,
                    data: Some(data),
                });
            }
        }
    }
}

/// Docker's masked and read-only paths (or the bundle's lists) for an unprivileged container.
fn confine(spec: &ContainerSpec, ops: &mut Vec<MountOp>) {
    let o = &spec.options;
    let listed = |given: &Option<Vec<String>>, default: &[&str]| -> Vec<PathBuf> {
        match given {
            Some(list) => list.iter().map(PathBuf::from).collect(),
            None => default.iter().map(PathBuf::from).collect(),
        }
    };
    for m in listed(&o.masked_paths, MASKED_PATHS) {
        ops.push(MountOp::Mask { path: m });
    }
    for r in listed(&o.readonly_paths, READONLY_PATHS) {
        ops.push(MountOp::ReadOnly { path: r });
    }
}
