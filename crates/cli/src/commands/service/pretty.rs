//! `service inspect --pretty`: Docker's human layout of a service.

use std::fmt::Write;
use std::time::Duration;
use swarm_types::spec::{ServiceMode, UpdateConfig};
use swarm_types::Service;

/// Go's `time.Duration` printing for whole values (`10s`, `1m30s`, `500ms`).
pub fn go_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    if d.as_millis() < 1000 {
        return format!("{}ms", d.as_millis());
    }
    let s = d.as_secs();
    let ms = d.subsec_millis();
    let (h, m, sec) = (s / 3600, (s / 60) % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if h > 0 || m > 0 {
        let _ = write!(out, "{m}m");
    }
    if ms > 0 {
        let frac = format!("{ms:03}");
        let _ = write!(out, "{sec}.{}s", frac.trim_end_matches('0'));
    } else {
        let _ = write!(out, "{sec}s");
    }
    out
}

/// Docker's `units.BytesSize` (binary units, up to 4 significant digits).
pub fn bytes(n: i64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}{}", units[i])
}

fn word(v: impl serde::Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

fn update_config(out: &mut String, title: &str, order_word: &str, u: &UpdateConfig) {
    let _ = writeln!(out, "{title}:");
    let _ = writeln!(out, " Parallelism:\t{}", u.parallelism);
    if !u.delay.is_zero() {
        let _ = writeln!(out, " Delay:\t{}", go_duration(u.delay));
    }
    let _ = writeln!(out, " On failure:\t{}", word(u.failure_action));
    if !u.monitor.is_zero() {
        let _ = writeln!(out, " Monitoring Period:\t{}", go_duration(u.monitor));
    }
    let _ = writeln!(out, " Max failure ratio:\t{}", u.max_failure_ratio);
    // Docker writes stop-first / start-first.
    let _ = writeln!(
        out,
        " {order_word} order:\t{}",
        word(u.order).replace('_', "-")
    );
}

/// The text (tab-separated columns, aligned by the caller).
pub fn pretty(svc: &Service, network_names: &dyn Fn(&str) -> String) -> String {
    let s = &svc.spec;
    let mut out = String::new();
    let _ = writeln!(out, "ID:\t{}", svc.id);
    let _ = writeln!(out, "Name:\t{}", s.name);
    if !s.labels.is_empty() {
        let _ = writeln!(out, "Labels:");
        for (k, v) in &s.labels {
            let _ = writeln!(out, " {k}={v}");
        }
    }
    mode(&mut out, &s.mode);
    update_status(&mut out, svc);
    placement(&mut out, &s.task.placement);
    update_config(&mut out, "UpdateConfig", "Update", &s.update_config);
    update_config(&mut out, "RollbackConfig", "Rollback", &s.rollback_config);
    container(&mut out, &s.task.container);
    security(&mut out, &s.task.container.options);
    resources(&mut out, &s.task.resources);
    networks(&mut out, svc, network_names);
    out
}

/// Docker's `Service Mode` section.
fn mode(out: &mut String, mode: &ServiceMode) {
    match mode {
        ServiceMode::Replicated { replicas } => {
            let _ = writeln!(out, "Service Mode:\tReplicated");
            let _ = writeln!(out, " Replicas:\t{replicas}");
        }
        ServiceMode::Global => {
            let _ = writeln!(out, "Service Mode:\tGlobal");
        }
        ServiceMode::ReplicatedJob {
            max_concurrent,
            total_completions,
        } => {
            let _ = writeln!(out, "Service Mode:\tReplicatedJob");
            let _ = writeln!(out, " Max Concurrent:\t{max_concurrent}");
            let _ = writeln!(out, " Total Completions:\t{total_completions}");
        }
        ServiceMode::GlobalJob => {
            let _ = writeln!(out, "Service Mode:\tGlobalJob");
        }
    }
}

/// The last update's state, when there was one.
fn update_status(out: &mut String, svc: &Service) {
    if let Some(u) = &svc.update_status {
        let _ = writeln!(out, "UpdateStatus:");
        let _ = writeln!(out, " State:\t{}", u.state.as_str());
        if u.started_at > 0 {
            let _ = writeln!(out, " Started:\t{}", crate::output::ago(u.started_at));
        }
        if u.completed_at > 0 {
            let _ = writeln!(out, " Completed:\t{}", crate::output::ago(u.completed_at));
        }
        let _ = writeln!(out, " Message:\t{}", u.message);
    }
}

/// Constraints, preferences and the per-node maximum.
fn placement(out: &mut String, p: &swarm_types::spec::Placement) {
    let _ = writeln!(out, "Placement:");
    if !p.constraints.is_empty() {
        let _ = writeln!(out, " Constraints:\t[{}]", p.constraints.join(" "));
    }
    if !p.preferences.is_empty() {
        let _ = writeln!(out, " Preferences:\t[{}]", p.preferences.join(" "));
    }
    if p.max_replicas_per_node > 0 {
        let _ = writeln!(out, " Max Replicas Per Node:\t{}", p.max_replicas_per_node);
    }
}

/// The container: image, command, environment, user, stop grace period, mounts.
fn container(out: &mut String, c: &swarm_types::spec::ContainerSpec) {
    let _ = writeln!(out, "ContainerSpec:");
    let _ = writeln!(
        out,
        " Image:\t{}",
        swarm_types::registry::display_image(&c.image)
    );
    if !c.command.is_empty() {
        let _ = writeln!(out, " Command:\t{}", c.command.join(" "));
    }
    if !c.args.is_empty() {
        let _ = writeln!(out, " Args:\t{}", c.args.join(" "));
    }
    if !c.env.is_empty() {
        let _ = writeln!(out, " Env:\t{}", c.env.join(" "));
    }
    if !c.workdir.is_empty() {
        let _ = writeln!(out, " Dir:\t{}", c.workdir);
    }
    if !c.user.is_empty() {
        let _ = writeln!(out, " User:\t{}", c.user);
    }
    if !c.stop_grace_period.is_zero() {
        let _ = writeln!(
            out,
            " StopGracePeriod:\t{}",
            go_duration(c.stop_grace_period)
        );
    }
    if !c.mounts.is_empty() {
        let _ = writeln!(out, "Mounts:");
        for m in &c.mounts {
            let _ = writeln!(out, " Target:\t{}", m.target);
            let _ = writeln!(out, "  Source:\t{}", m.source);
            let _ = writeln!(out, "  ReadOnly:\t{}", m.readonly);
            let _ = writeln!(out, "  Type:\t{}", word(m.kind));
        }
    }
}

/// Privilege, devices and the seccomp profile, when any differs from the default.
fn security(out: &mut String, o: &swarm_types::container::ContainerOptions) {
    if o.privileged || !o.devices.is_empty() || !o.seccomp.is_default() {
        use swarm_types::container::Seccomp;
        let _ = writeln!(out, "Security:");
        if o.privileged {
            let _ = writeln!(out, " Privileged:\ttrue");
        }
        for d in &o.devices {
            let _ = writeln!(
                out,
                " Device:\t{}:{}:{}",
                d.path_on_host, d.path_in_container, d.permissions
            );
        }
        let seccomp = match (&o.seccomp, o.privileged) {
            (_, true) | (Seccomp::Unconfined, _) => "unconfined".to_string(),
            (Seccomp::Default, _) => "default".to_string(),
            (Seccomp::Profile(p), _) => format!("custom profile ({} bytes)", p.len()),
        };
        let _ = writeln!(out, " Seccomp:\t{seccomp}");
    }
}

/// Reservations and limits.
fn resources(out: &mut String, r: &swarm_types::spec::ResourceRequirements) {
    let has = |x: &swarm_types::spec::Resources| x.nano_cpus > 0 || x.memory_bytes > 0;
    if has(&r.limits) || has(&r.reservations) {
        let _ = writeln!(out, "Resources:");
        for (title, x) in [("Reservations", &r.reservations), ("Limits", &r.limits)] {
            if !has(x) {
                continue;
            }
            let _ = writeln!(out, " {title}:");
            if x.nano_cpus > 0 {
                let _ = writeln!(out, "  CPU:\t{}", x.nano_cpus as f64 / 1e9);
            }
            if x.memory_bytes > 0 {
                let _ = writeln!(out, "  Memory:\t{}", bytes(x.memory_bytes));
            }
        }
    }
}

/// Networks, endpoint mode, virtual IPs and published ports.
fn networks(out: &mut String, svc: &Service, network_names: &dyn Fn(&str) -> String) {
    let s = &svc.spec;
    if !s.task.networks.is_empty() {
        let names: Vec<String> = s
            .task
            .networks
            .iter()
            .map(|n| network_names(&n.target))
            .collect();
        let _ = writeln!(out, "Networks:\t{}", names.join(" "));
    } else if s.task.network_none {
        let _ = writeln!(out, "Networks:\tnone");
    } else {
        let _ = writeln!(out, "Networks:\tbridge (each node's default)");
    }
    let _ = writeln!(out, "Endpoint Mode:\t{}", s.endpoint.mode.as_str());
    if !svc.endpoint.virtual_ips.is_empty() {
        let _ = writeln!(out, "Virtual IPs:");
        for v in &svc.endpoint.virtual_ips {
            let _ = writeln!(
                out,
                " {}:\t{}",
                network_names(v.network_id.as_str()),
                v.addr
            );
        }
    }
    if !svc.endpoint.ports.is_empty() {
        let _ = writeln!(out, "Ports:");
        for p in &svc.endpoint.ports {
            let _ = writeln!(
                out,
                " PublishedPort = {}\n  Protocol = {}\n  TargetPort = {}\n  PublishMode = {}{}",
                p.published,
                p.protocol.as_str(),
                p.target,
                p.mode.as_str(),
                if p.traffic == swarm_types::endpoint::TrafficPolicy::Local {
                    "\n  Traffic = local"
                } else {
                    ""
                }
            );
        }
    }
}

/// Prints through a tab writer, as Docker does.
pub fn print(text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut tw = tabwriter::TabWriter::new(std::io::stdout()).padding(1);
    tw.write_all(text.as_bytes())?;
    tw.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> Service {
        use swarm_types::spec::*;
        let mut svc = super::super::render_tests::service(
            "svc1",
            "web",
            "registry:4243/web:2@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            3,
            0,
        );
        svc.status = None;
        let spec = &mut svc.spec;
        spec.labels.insert("tier".into(), "front".into());
        spec.task.container.args = vec!["serve".into(), "--port=80".into()];
        spec.task.container.env = vec!["A=1".into()];
        spec.task.placement.constraints = vec!["node.role==worker".into()];
        spec.task.resources.limits.nano_cpus = 500_000_000;
        spec.task.resources.limits.memory_bytes = 64 << 20;
        spec.task.networks = vec![NetworkAttachmentConfig {
            target: "n1".into(),
            aliases: vec![],
        }];
        let port = swarm_types::endpoint::PortConfig {
            published: 8080,
            target: 80,
            ..Default::default()
        };
        spec.endpoint.ports = vec![port.clone()];
        svc.endpoint = swarm_types::objects::Endpoint {
            spec: spec.endpoint.clone(),
            ports: vec![port],
            virtual_ips: vec![swarm_types::objects::VirtualIp {
                network_id: swarm_types::NetworkId::new("n1"),
                addr: "10.0.1.2/24".parse().unwrap(),
            }],
        }
        .into();
        svc
    }

    /// The whole view after alignment, as an operator reads it.
    fn aligned(text: &str) -> String {
        use std::io::Write as _;
        let mut tw = tabwriter::TabWriter::new(Vec::new()).padding(1);
        tw.write_all(text.as_bytes()).unwrap();
        tw.flush().unwrap();
        String::from_utf8(tw.into_inner().unwrap()).unwrap()
    }

    #[test]
    fn pretty_service_view() {
        let names = |id: &str| {
            if id == "n1" {
                "backend".to_string()
            } else {
                id.to_string()
            }
        };
        insta::assert_snapshot!(aligned(&pretty(&service(), &names)));
    }

    #[test]
    fn durations_and_sizes_read_like_docker() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(bytes(64 * 1024 * 1024), "64MiB");
        assert_eq!(bytes(1536), "1.5KiB");
    }
}
