//! Mount and process flags of `service create` and `service update` (Docker's names:
//! `--mount`, `--ulimit`, `--sysctl`, `--cap-add/--cap-drop`, `--read-only`, `--group`,
//! `--stop-signal`, `--oom-score-adj`, `--limit-pids`, `--tty`, `--privileged`, `--device`,
//! `--security-opt`; on update the list flags become `--X-add` / `--X-rm`).

use super::security_opt::{device, seccomp_of, security_opt, SecurityOpt};
use clap::Args;
use swarm_types::container::{Device, Mount, Ulimit};
use swarm_types::spec::ContainerSpec;

fn mount(s: &str) -> Result<Mount, String> {
    Mount::parse(s).map_err(|e| e.to_string())
}

fn ulimit(s: &str) -> Result<Ulimit, String> {
    Ulimit::parse(s).map_err(|e| e.to_string())
}

fn sysctl(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("invalid value {s:?}: expected NAME=VALUE")),
    }
}

#[derive(Args, Debug, Clone, Default)]
pub struct CreateContainerFlags {
    /// Attach a filesystem mount to the service (type=bind|volume|tmpfs,source=..,target=..,
    /// readonly, bind-propagation, volume-nocopy, volume-label, volume-driver=local,
    /// volume-opt, tmpfs-size, tmpfs-mode).
    #[arg(long = "mount", value_parser = mount)]
    pub mounts: Vec<Mount>,
    /// Ulimit options (NAME=SOFT[:HARD], e.g. nofile=1024:2048).
    #[arg(long = "ulimit", value_parser = ulimit)]
    pub ulimits: Vec<Ulimit>,
    /// Namespaced kernel parameters (NAME=VALUE: kernel.shm*, kernel.msg*, kernel.sem,
    /// fs.mqueue.*, net.*).
    #[arg(long = "sysctl", value_parser = sysctl)]
    pub sysctls: Vec<(String, String)>,
    /// Add Linux capabilities (or ALL).
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities (or ALL).
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Mount the container's root filesystem as read only.
    #[arg(long)]
    pub read_only: bool,
    /// Set one or more supplementary user groups for the container.
    #[arg(long = "group", alias = "group-add")]
    pub groups: Vec<String>,
    /// Signal to stop the container (default SIGTERM).
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Tune the container's OOM preferences (-1000 to 1000).
    #[arg(long, allow_negative_numbers = true)]
    pub oom_score_adj: Option<i64>,
    /// Limit maximum number of processes (0 = unlimited).
    #[arg(long = "limit-pids", alias = "pids-limit")]
    pub limit_pids: Option<i64>,
    /// Allocate a pseudo-TTY (the output is logged as stdout).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Logging driver for the containers: json-file (the only one; the default).
    #[arg(long)]
    pub log_driver: Option<String>,
    /// Logging driver options: max-size=SIZE (rotate at, e.g. 10m), max-file=N (files kept).
    #[arg(long = "log-opt", value_parser = sysctl, value_name = "KEY=VALUE")]
    pub log_opts: Vec<(String, String)>,
    /// Give the containers every capability and every host device, without seccomp filter,
    /// masked paths or a read-only /sys (only for services that need it).
    #[arg(long)]
    pub privileged: bool,
    /// Add a host device to the containers (HOST[:CONTAINER[:PERMS]]; PERMS must include rw:
    /// access is granted by binding the node in, which cannot make a device read-only).
    #[arg(long = "device", value_parser = device)]
    pub devices: Vec<Device>,
    /// Security options: seccomp=unconfined, seccomp=FILE (a profile in Docker's JSON format,
    /// read and checked here), seccomp=default, no-new-privileges (always on).
    #[arg(long = "security-opt", value_parser = security_opt)]
    pub security_opts: Vec<SecurityOpt>,
}

impl CreateContainerFlags {
    pub fn apply(&self, c: &mut ContainerSpec) -> anyhow::Result<()> {
        c.mounts = self.mounts.clone();
        let o = &mut c.options;
        o.ulimits = self.ulimits.clone();
        o.sysctls = self.sysctls.iter().cloned().collect();
        o.cap_add = self.cap_add.clone();
        o.cap_drop = self.cap_drop.clone();
        o.read_only = self.read_only;
        o.groups = self.groups.clone();
        o.stop_signal = self.stop_signal.clone().unwrap_or_default();
        o.oom_score_adj = self.oom_score_adj.unwrap_or(0);
        o.pids_limit = self.limit_pids.unwrap_or(0);
        o.tty = self.tty;
        o.log_driver = self.log_driver.clone().unwrap_or_default();
        o.log_opts = self.log_opts.iter().cloned().collect();
        o.privileged = self.privileged;
        o.devices = self.devices.clone();
        o.seccomp = seccomp_of(&self.security_opts)
            .map_err(anyhow::Error::msg)?
            .unwrap_or_default();
        Ok(())
    }
}

#[derive(Args, Debug, Clone, Default)]
pub struct UpdateContainerFlags {
    /// Add or update a mount on a service (same syntax as create's --mount; replaces the
    /// mount with the same target).
    #[arg(long = "mount-add", value_parser = mount)]
    pub mount_add: Vec<Mount>,
    /// Remove a mount by its target path.
    #[arg(long = "mount-rm")]
    pub mount_rm: Vec<String>,
    /// Add or update a ulimit (NAME=SOFT[:HARD]).
    #[arg(long = "ulimit-add", value_parser = ulimit)]
    pub ulimit_add: Vec<Ulimit>,
    /// Remove a ulimit by its name.
    #[arg(long = "ulimit-rm")]
    pub ulimit_rm: Vec<String>,
    /// Add or update a sysctl (NAME=VALUE).
    #[arg(long = "sysctl-add", value_parser = sysctl)]
    pub sysctl_add: Vec<(String, String)>,
    /// Remove a sysctl by its name.
    #[arg(long = "sysctl-rm")]
    pub sysctl_rm: Vec<String>,
    /// Add Linux capabilities (or ALL).
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities (or ALL).
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Mount the container's root filesystem read only (--read-only=false to undo).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub read_only: Option<bool>,
    /// Add a supplementary group.
    #[arg(long = "group-add")]
    pub group_add: Vec<String>,
    /// Remove a supplementary group.
    #[arg(long = "group-rm")]
    pub group_rm: Vec<String>,
    /// Signal to stop the container.
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Tune the container's OOM preferences (-1000 to 1000).
    #[arg(long, allow_negative_numbers = true)]
    pub oom_score_adj: Option<i64>,
    /// Limit maximum number of processes (0 = unlimited).
    #[arg(long = "limit-pids", alias = "pids-limit")]
    pub limit_pids: Option<i64>,
    /// Allocate a pseudo-TTY (--tty=false to undo).
    #[arg(short = 't', long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub tty: Option<bool>,
    /// Logging driver for the containers: json-file (the only one).
    #[arg(long)]
    pub log_driver: Option<String>,
    /// Logging driver options, replacing the current ones: max-size=SIZE, max-file=N.
    #[arg(long = "log-opt", value_parser = sysctl, value_name = "KEY=VALUE")]
    pub log_opts: Vec<(String, String)>,
    /// Every capability and host device, no seccomp or masked paths (--privileged=false to
    /// undo).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub privileged: Option<bool>,
    /// Add or replace a host device (HOST[:CONTAINER[:PERMS]]; replaces the one at the same
    /// container path).
    #[arg(long = "device-add", value_parser = device)]
    pub device_add: Vec<Device>,
    /// Remove a device by its container path.
    #[arg(long = "device-rm")]
    pub device_rm: Vec<String>,
    /// Security options: seccomp=unconfined|FILE|default (replaces the current seccomp
    /// setting), no-new-privileges (always on).
    #[arg(long = "security-opt", value_parser = security_opt)]
    pub security_opts: Vec<SecurityOpt>,
}

fn cap_key(c: &str) -> String {
    let u = c.trim().to_ascii_uppercase();
    u.strip_prefix("CAP_").unwrap_or(&u).to_string()
}

impl UpdateContainerFlags {
    pub fn apply(&self, c: &mut ContainerSpec) -> anyhow::Result<()> {
        for t in &self.mount_rm {
            let t = t.trim_end_matches('/');
            c.mounts.retain(|m| m.target.trim_end_matches('/') != t);
        }
        for m in &self.mount_add {
            let t = m.target.trim_end_matches('/');
            c.mounts.retain(|x| x.target.trim_end_matches('/') != t);
            c.mounts.push(m.clone());
        }
        let o = &mut c.options;
        for n in &self.ulimit_rm {
            o.ulimits.retain(|u| &u.name != n);
        }
        for u in &self.ulimit_add {
            o.ulimits.retain(|x| x.name != u.name);
            o.ulimits.push(u.clone());
        }
        for k in &self.sysctl_rm {
            o.sysctls.remove(k);
        }
        for (k, v) in &self.sysctl_add {
            o.sysctls.insert(k.clone(), v.clone());
        }
        // Docker's update rules: adding a capability also takes it off the drop list, and
        // the other way round.
        for a in &self.cap_add {
            o.cap_drop.retain(|d| cap_key(d) != cap_key(a));
            if !o.cap_add.iter().any(|x| cap_key(x) == cap_key(a)) {
                o.cap_add.push(a.clone());
            }
        }
        for d in &self.cap_drop {
            o.cap_add.retain(|a| cap_key(a) != cap_key(d));
            if !o.cap_drop.iter().any(|x| cap_key(x) == cap_key(d)) {
                o.cap_drop.push(d.clone());
            }
        }
        for g in &self.group_rm {
            o.groups.retain(|x| x != g);
        }
        for g in &self.group_add {
            if !o.groups.contains(g) {
                o.groups.push(g.clone());
            }
        }
        if let Some(v) = self.read_only {
            o.read_only = v;
        }
        if let Some(v) = &self.stop_signal {
            o.stop_signal = v.clone();
        }
        if let Some(v) = self.oom_score_adj {
            o.oom_score_adj = v;
        }
        if let Some(v) = self.limit_pids {
            o.pids_limit = v;
        }
        if let Some(v) = self.tty {
            o.tty = v;
        }
        if let Some(v) = &self.log_driver {
            o.log_driver = v.clone();
        }
        if !self.log_opts.is_empty() {
            o.log_opts = self.log_opts.iter().cloned().collect();
        }
        if let Some(v) = self.privileged {
            o.privileged = v;
        }
        for t in &self.device_rm {
            o.devices.retain(|d| d.path_in_container != *t);
        }
        for d in &self.device_add {
            o.devices
                .retain(|x| x.path_in_container != d.path_in_container);
            o.devices.push(d.clone());
        }
        if let Some(s) = seccomp_of(&self.security_opts).map_err(anyhow::Error::msg)? {
            o.seccomp = s;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use swarm_types::container::MountType;

    #[derive(Parser, Debug)]
    struct Create {
        #[command(flatten)]
        f: CreateContainerFlags,
    }
    #[derive(Parser, Debug)]
    struct Update {
        #[command(flatten)]
        f: UpdateContainerFlags,
    }

    #[test]
    fn create_flags_fill_the_spec_and_update_edits_it() {
        let f = Create::try_parse_from([
            "x",
            "--mount",
            "type=volume,source=data,target=/data",
            "--mount",
            "type=tmpfs,target=/run,tmpfs-size=1m",
            "--ulimit",
            "nofile=100:200",
            "--sysctl",
            "net.ipv4.ip_forward=1",
            "--cap-drop",
            "ALL",
            "--cap-add",
            "CHOWN",
            "--read-only",
            "--group",
            "wheel",
            "--stop-signal",
            "SIGINT",
            "--oom-score-adj",
            "-100",
            "--limit-pids",
            "50",
            "-t",
        ])
        .unwrap()
        .f;
        let mut c = ContainerSpec::default();
        f.apply(&mut c).unwrap();
        assert_eq!(c.mounts.len(), 2);
        assert_eq!(c.mounts[1].kind, MountType::Tmpfs);
        let o = &c.options;
        assert_eq!((o.ulimits[0].soft, o.ulimits[0].hard), (100, 200));
        assert_eq!(o.sysctls["net.ipv4.ip_forward"], "1");
        assert!(o.read_only && o.tty);
        assert_eq!((o.oom_score_adj, o.pids_limit), (-100, 50));
        o.validate().unwrap();

        let u = Update::try_parse_from([
            "x",
            "--mount-rm",
            "/run",
            "--mount-add",
            "type=bind,source=/srv,target=/data,ro",
            "--ulimit-rm",
            "nofile",
            "--cap-add",
            "net_raw",
            "--cap-drop",
            "CHOWN",
            "--read-only=false",
            "--tty=false",
        ])
        .unwrap()
        .f;
        u.apply(&mut c).unwrap();
        assert_eq!(c.mounts.len(), 1);
        assert_eq!(c.mounts[0].kind, MountType::Bind);
        assert!(c.options.ulimits.is_empty());
        assert_eq!(c.options.cap_add, vec!["net_raw"]);
        assert_eq!(c.options.cap_drop, vec!["ALL", "CHOWN"]);
        assert!(!c.options.read_only && !c.options.tty);
    }

    #[test]
    fn privilege_flags_fill_the_spec_and_update_edits_them() {
        use swarm_types::container::Seccomp;
        let f = Create::try_parse_from([
            "x",
            "--device",
            "/dev/fuse",
            "--device",
            "/dev/net/tun:/dev/tun:rw",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "no-new-privileges",
        ])
        .unwrap()
        .f;
        let mut c = ContainerSpec::default();
        f.apply(&mut c).unwrap();
        assert_eq!(c.options.devices.len(), 2);
        assert_eq!(c.options.devices[1].path_in_container, "/dev/tun");
        assert_eq!(c.options.seccomp, Seccomp::Unconfined);
        assert!(!c.options.privileged);
        let u = Update::try_parse_from([
            "x",
            "--device-rm",
            "/dev/fuse",
            "--device-add",
            "/dev/net/tun:/dev/tun:rwm",
            "--privileged",
            "--security-opt",
            "seccomp=default",
        ])
        .unwrap()
        .f;
        u.apply(&mut c).unwrap();
        assert_eq!(c.options.devices.len(), 1);
        assert_eq!(c.options.devices[0].permissions, "rwm");
        assert!(c.options.privileged);
        assert_eq!(c.options.seccomp, Seccomp::Default);
        c.options.validate().unwrap();
        let twice = Create::try_parse_from([
            "x",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "seccomp=default",
        ])
        .unwrap()
        .f;
        let e = twice.apply(&mut c).unwrap_err().to_string();
        assert!(e.contains("twice"), "{e}");
        let e = Create::try_parse_from(["x", "--device", "/dev/fuse:/dev/fuse:r"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("r and w"), "{e}");
    }

    #[test]
    fn bad_values_are_refused_at_parse_time() {
        let e = Create::try_parse_from(["x", "--mount", "type=bind,target=/x"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("absolute host path"), "{e}");
        let e = Create::try_parse_from(["x", "--ulimit", "nofile"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("NAME=SOFT"), "{e}");
        let e = Create::try_parse_from(["x", "--sysctl", "novalue"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("NAME=VALUE"), "{e}");
    }
}
