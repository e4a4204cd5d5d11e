//! P1's setup, in the order that matters: its namespaces, session and keyring, the
//! namespaced sysctls and `/` made a slave (so nothing mounted reaches the host); then the
//! rootfs, every mount of the plan, the hostname and `lo`, `pivot_root`, and a read-only root
//! last. Behind [`SetupSys`] so that the order and what is skipped (the network's steps with
//! the host network, the keyring with `--no-new-keyring`, the port sysctl outside a user
//! namespace) are unit-tested without root.

use super::*;

/// The setup's system calls, coarse: each is one step of the sequence.
pub(super) trait SetupSys {
    fn unshare(&mut self, flags: i32) -> Result<(), InitError>;
    fn setsid(&mut self);
    fn join_new_session_keyring(&mut self) -> Result<(), InitError>;
    fn write_sysctl(&mut self, key: &str, value: &str) -> Result<(), InitError>;
    fn make_root_slave(&mut self) -> Result<(), InitError>;
    fn mount_rootfs(
        &mut self,
        spec: &ContainerSpec,
        sd: &StateDir,
        idmap: Option<&mounts::Idmap>,
    ) -> Result<(), InitError>;
    fn apply_mounts(
        &mut self,
        rootfs: &Path,
        ops: &[mounts::MountOp],
        owner: Option<(u32, u32)>,
    ) -> Result<(), InitError>;
    fn sethostname(&mut self, name: &str) -> Result<(), InitError>;
    fn loopback_up(&mut self) -> Result<(), InitError>;
    fn pivot(&mut self, rootfs: &Path) -> Result<(), InitError>;
    fn readonly_root(&mut self) -> Result<(), InitError>;
}

/// The real calls.
pub(super) struct HostSetup;

impl SetupSys for HostSetup {
    fn unshare(&mut self, flags: i32) -> Result<(), InitError> {
        // SAFETY: unshare with flags only.
        if unsafe { libc::unshare(flags) } != 0 {
            return Err(last("unshare namespaces"));
        }
        Ok(())
    }
    fn setsid(&mut self) {
        // SAFETY: setsid has no arguments.
        unsafe { libc::setsid() };
    }
    fn join_new_session_keyring(&mut self) -> Result<(), InitError> {
        sys::join_new_session_keyring().map_err(sys_err("join a new session keyring"))
    }
    fn write_sysctl(&mut self, key: &str, value: &str) -> Result<(), InitError> {
        fs::write(crate::options::sysctl_path(key), value)
            .map_err(sys_err(format!("set sysctl {key}={value}")))
    }
    fn make_root_slave(&mut self) -> Result<(), InitError> {
        sys::mount(
            None,
            Path::new("/"),
            None,
            libc::MS_SLAVE | libc::MS_REC,
            None,
        )
        .map_err(sys_err("make / rslave"))
    }
    fn mount_rootfs(
        &mut self,
        spec: &ContainerSpec,
        sd: &StateDir,
        idmap: Option<&mounts::Idmap>,
    ) -> Result<(), InitError> {
        Ok(mounts::mount_rootfs(
            spec,
            &sd.rootfs(),
            &sd.upper(),
            &sd.work(),
            idmap,
        )?)
    }
    fn apply_mounts(
        &mut self,
        rootfs: &Path,
        ops: &[mounts::MountOp],
        owner: Option<(u32, u32)>,
    ) -> Result<(), InitError> {
        Ok(mounts::apply(rootfs, ops, owner)?)
    }
    fn sethostname(&mut self, name: &str) -> Result<(), InitError> {
        // SAFETY: pointer and length of a live byte slice.
        if unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } != 0 {
            return Err(last("sethostname"));
        }
        Ok(())
    }
    fn loopback_up(&mut self) -> Result<(), InitError> {
        loopback_up().map_err(sys_err("bring up lo"))
    }
    fn pivot(&mut self, rootfs: &Path) -> Result<(), InitError> {
        Ok(mounts::pivot(rootfs)?)
    }
    fn readonly_root(&mut self) -> Result<(), InitError> {
        Ok(mounts::readonly_root()?)
    }
}

/// The namespaced sysctl that lets a remapped root bind low ports.
pub(super) const PORTS: &str = "net.ipv4.ip_unprivileged_port_start";

/// P1's own namespaces (mount, uts, ipc, cgroup, and network unless it shares the host's), a
/// new session and session keyring, the namespaced sysctls, and `/` made a slave so nothing
/// mounted from here on reaches the host.
pub(super) fn enter_namespaces(
    sys: &mut impl SetupSys,
    spec: &ContainerSpec,
    in_userns: bool,
) -> Result<(), InitError> {
    let mut flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWCGROUP;
    if spec.network == NetworkMode::None {
        flags |= libc::CLONE_NEWNET;
    }
    sys.unshare(flags)?;
    sys.setsid();
    if !spec.options.no_new_keyring {
        sys.join_new_session_keyring()?;
    }
    // Namespaced sysctls (checked by the spec): /proc/sys answers for the namespaces of the
    // writer, which are the container's from here on.
    for (k, v) in &spec.options.sysctls {
        sys.write_sysctl(k, v)?;
    }
    // The network namespace belongs to the host's user namespace, so a remapped root holds no
    // CAP_NET_BIND_SERVICE over it: let every port be bound, as Docker does.
    if in_userns && spec.network != NetworkMode::Host && !spec.options.sysctls.contains_key(PORTS) {
        sys.write_sysctl(PORTS, "0")?;
    }
    sys.make_root_slave()
}

/// The container's root: the rootfs and every mount of the plan, the hostname, `lo`, then
/// `pivot_root` into it. Returns the hostname.
pub(super) fn build_root(
    sys: &mut impl SetupSys,
    sd: &StateDir,
    spec: &ContainerSpec,
    userns: Option<&OwnedFd>,
) -> Result<String, InitError> {
    let rootfs = sd.rootfs();
    let idmap = match (userns, &spec.user_namespace) {
        (Some(fd), Some(map)) => Some(mounts::Idmap {
            ns: fd.as_raw_fd(),
            map,
            mountpoints: sd.dir.join("idmapped"),
        }),
        _ => None,
    };
    sys.mount_rootfs(spec, sd, idmap.as_ref())?;
    let owner = spec
        .user_namespace
        .as_ref()
        .and_then(|m| Some((m.host_uid(0)?, m.host_gid(0)?)));
    sys.apply_mounts(&rootfs, &mounts::plan(spec), owner)?;
    let hostname = spec
        .hostname
        .clone()
        .unwrap_or_else(|| spec.id.chars().take(12).collect());
    sys.sethostname(&hostname)?;
    if spec.network == NetworkMode::None {
        sys.loopback_up()?;
    }
    sys.pivot(&rootfs)?;
    if spec.readonly_rootfs {
        sys.readonly_root()?;
    }
    Ok(hostname)
}

#[cfg(test)]
mod tests;
