//! A task's mounts and process knobs mapped onto the runtime's container spec: bind mounts
//! (whose sources must exist on this node), node-local volumes (created on first use,
//! populated from the image unless `volume-nocopy`), tmpfs, capabilities, ulimits, sysctls,
//! groups, oom score, pids limit, tty, read-only rootfs, the stop signal, and the per-container
//! `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`.

use crate::executor::ExecError;
use crate::volumes::{Volumes, VOLUMES_LABEL};
use std::path::PathBuf;
use swarm_runtime::options::{EtcFiles, Rlimit};
use swarm_runtime::privilege::SeccompMode;
use swarm_runtime::spec::{MountSpec, Propagation};
use swarm_types::container::{signal_number, MountType, Seccomp};
use swarm_types::Task;

/// Container label holding the signal number that stops the container.
pub const STOP_SIGNAL_LABEL: &str = "swarm.stop_signal";

/// Docker's `/etc/hosts` of a container without a network of its own to name (the
/// networking layer adds the container's addresses).
const HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

fn propagation(s: &str) -> Propagation {
    match s {
        "private" => Propagation::Private,
        "shared" => Propagation::Shared,
        "rshared" => Propagation::Rshared,
        "slave" => Propagation::Slave,
        "rslave" => Propagation::Rslave,
        _ => Propagation::Rprivate,
    }
}

/// Docker's `/etc/hosts`, plus the task's own address (on its first network) under its
/// hostname.
fn hosts_file(task: &Task, hostname: &str) -> String {
    let mut h = HOSTS.to_string();
    if let (Some(a), false) = (task.networks.first(), hostname.is_empty()) {
        h.push_str(&format!("{}\t{hostname}\n", a.address.addr));
    }
    h
}

/// A task on a network asks the node's DNS server on its first network's gateway (service
/// names, then the host's resolvers); without a network, the host's resolvers directly.
fn resolv_conf(task: &Task) -> String {
    resolv_conf_via(task.networks.first().map(|a| a.gateway))
}

/// The `/etc/resolv.conf` of a container whose first network has `gateway` (where the node's
/// DNS server answers), or of one without a network.
pub fn resolv_conf_via(gateway: Option<std::net::Ipv4Addr>) -> String {
    match gateway {
        Some(gateway) => {
            let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            let search: Vec<&str> = host
                .lines()
                .filter(|l| l.starts_with("search ") || l.starts_with("domain "))
                .collect();
            let mut out = format!("nameserver {gateway}\n");
            for l in search {
                out.push_str(l);
                out.push('\n');
            }
            out.push_str("options ndots:0\n");
            out
        }
        None => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    }
}

/// Adds the task's mounts and knobs to `spec` (hostname already set). Volumes are created
/// here; the caller holds [`Volumes::shared`] until the container exists. Blocking.
pub fn apply(
    spec: &mut swarm_runtime::ContainerSpec,
    task: &Task,
    volumes: &Volumes,
) -> Result<(), ExecError> {
    let c = &task.spec.container;
    let mut used = Vec::new();
    for m in &c.mounts {
        let destination = PathBuf::from(&m.target);
        spec.mounts.push(match m.kind {
            MountType::Bind => {
                let source = PathBuf::from(&m.source);
                if std::fs::metadata(&source).is_err() {
                    return Err(ExecError::Rejected(format!(
                        "bind source {} does not exist on this node: create it first (bind sources are never created implicitly), or use a volume",
                        m.source
                    )));
                }
                MountSpec::Bind {
                    source,
                    destination,
                    readonly: m.readonly,
                    propagation: propagation(&m.bind_propagation),
                    copy_up: false,
                }
            }
            MountType::Volume => {
                let data = volumes
                    .ensure(m)
                    .map_err(|e| ExecError::Rejected(e.to_string()))?;
                used.push(m.source.clone());
                MountSpec::Bind {
                    source: data,
                    destination,
                    readonly: m.readonly,
                    propagation: Propagation::Rprivate,
                    copy_up: !m.volume_nocopy,
                }
            }
            MountType::Tmpfs => MountSpec::Tmpfs {
                destination,
                size_bytes: (m.tmpfs_size_bytes > 0).then_some(m.tmpfs_size_bytes),
                mode: (m.tmpfs_mode > 0).then_some(m.tmpfs_mode),
            },
        });
    }
    if !used.is_empty() {
        used.sort();
        used.dedup();
        spec.labels.insert(VOLUMES_LABEL.into(), used.join(","));
    }
    let o = &c.options;
    let ro = &mut spec.options;
    ro.cap_add = o.cap_add.clone();
    ro.cap_drop = o.cap_drop.clone();
    ro.rlimits = o
        .ulimits
        .iter()
        .map(|u| Rlimit {
            name: u.name.clone(),
            soft: u.soft,
            hard: u.hard,
        })
        .collect();
    ro.sysctls = o.sysctls.clone();
    ro.additional_groups = o.groups.clone();
    ro.oom_score_adj = (o.oom_score_adj != 0).then_some(o.oom_score_adj as i32);
    ro.tty = o.tty;
    (ro.log_max_size, ro.log_max_files) = o.log_rotation();
    ro.privileged = o.privileged;
    ro.devices = o
        .devices
        .iter()
        .map(|d| swarm_runtime::privilege::DeviceMapping {
            host: d.path_on_host.clone().into(),
            container: d.path_in_container.clone().into(),
            permissions: d.permissions.clone(),
        })
        .collect();
    ro.seccomp = match &o.seccomp {
        Seccomp::Default => SeccompMode::Default,
        Seccomp::Unconfined => SeccompMode::Unconfined,
        Seccomp::Profile(json) => SeccompMode::Profile(json.clone()),
    };
    let hostname = spec.hostname.clone().unwrap_or_default();
    ro.etc_files = Some(EtcFiles {
        hosts: hosts_file(task, &hostname),
        hostname: format!("{hostname}\n"),
        resolv_conf: resolv_conf(task),
    });
    spec.readonly_rootfs = o.read_only;
    if o.pids_limit > 0 {
        spec.resources.pids_max = Some(o.pids_limit as u64);
    }
    if let Some(sig) = (!o.stop_signal.is_empty())
        .then(|| signal_number(&o.stop_signal))
        .flatten()
    {
        spec.labels
            .insert(STOP_SIGNAL_LABEL.into(), sig.to_string());
    }
    Ok(())
}
