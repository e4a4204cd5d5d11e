//! Checks a service spec meets before it is written: names, image references, labels, network
//! attachments, and the spec as a whole (`ServiceSpec::validate`) with what a change may not do.

use super::*;

/// Checks a service's network attachments: each a known form, no network twice, aliases
/// valid names.
pub fn validate_attachments(list: &[NetworkAttachmentConfig]) -> Result<(), SpecError> {
    if list.len() > MAX_TASK_NETWORKS {
        return Err(SpecError::TooMany {
            what: "networks".into(),
            count: list.len(),
            limit: MAX_TASK_NETWORKS,
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for a in list {
        check_predefined(a, list.len())?;
        if a.target.is_empty() {
            return Err(SpecError::Network(
                "a network attachment needs a network name or id".into(),
            ));
        }
        if a.target.len() > 63 {
            return Err(SpecError::Network(format!(
                "network reference {:?} is longer than 63 characters",
                limits::echo(&a.target)
            )));
        }
        if !seen.insert(a.target.as_str()) {
            return Err(SpecError::Network(format!(
                "network {} is attached twice; give it once (with all its aliases)",
                a.target
            )));
        }
        for al in &a.aliases {
            validate_name(al).map_err(|_| {
                SpecError::Network(format!(
                    "invalid alias {:?} on network {}: 1-63 letters, digits, '-', '_' or '.'",
                    limits::echo(al),
                    a.target
                ))
            })?;
        }
    }
    Ok(())
}

use crate::limits;

/// `none` and `bridge` stand alone (a task is on the node's bridge, or on nothing, or on
/// cluster networks); `host` networking is not offered.
pub(super) fn check_predefined(a: &NetworkAttachmentConfig, count: usize) -> Result<(), SpecError> {
    let t = a.target.as_str();
    if t == "host" {
        return Err(SpecError::Network(
            "host networking is not supported: without --network a task gets its node's default bridge, with --network NAME a cluster network, with --network none no network".into(),
        ));
    }
    if PREDEFINED_NETWORKS.contains(&t) && count > 1 {
        return Err(SpecError::Network(format!(
            "--network {t} cannot be combined with other networks; give it alone"
        )));
    }
    if PREDEFINED_NETWORKS.contains(&t) && !a.aliases.is_empty() {
        return Err(SpecError::Network(format!(
            "network {t} takes no aliases (names resolve only on cluster networks)"
        )));
    }
    Ok(())
}

pub fn validate_image(image: &str) -> Result<(), SpecError> {
    if image.is_empty() {
        return Err(SpecError::MissingImage);
    }
    // A reference starts with a letter or digit: `-p` is an option that ended up here.
    let bad = image.chars().any(|c| c.is_whitespace() || c.is_control())
        || !image.starts_with(|c: char| c.is_ascii_alphanumeric())
        || image.ends_with([':', '@', '/']);
    if bad {
        return Err(SpecError::Image(image.to_string()));
    }
    if let Some((_, digest)) = image.split_once('@') {
        let ok = digest
            .strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if !ok {
            return Err(SpecError::Image(limits::echo(image)));
        }
    }
    Ok(())
}

impl ServiceSpec {
    /// A replicated service of `image` with every other setting at docker's defaults (the
    /// image's own command, restart on any exit after 5 s, 10 s stop grace period).
    pub fn replicated(name: &str, image: &str, replicas: u64) -> ServiceSpec {
        ServiceSpec {
            name: name.to_string(),
            labels: BTreeMap::new(),
            task: TaskSpec {
                container: ContainerSpec {
                    image: image.to_string(),
                    stop_grace_period: Duration::from_secs(10),
                    ..Default::default()
                },
                ..Default::default()
            },
            mode: ServiceMode::Replicated { replicas },
            update_config: Default::default(),
            rollback_config: Default::default(),
            endpoint: EndpointSpec::default(),
        }
    }

    /// Checks everything that can be checked without looking at the cluster.
    pub fn validate(&self) -> Result<(), SpecError> {
        validate_name(&self.name)?;
        self.check_limits()?;
        validate_labels(&self.labels)?;
        validate_labels(&self.task.container.labels)?;
        validate_image(&self.task.container.image)?;
        match self.mode {
            ServiceMode::Replicated { replicas } if replicas > MAX_REPLICAS => {
                return Err(SpecError::Replicas {
                    count: replicas,
                    limit: MAX_REPLICAS,
                })
            }
            ServiceMode::ReplicatedJob {
                max_concurrent,
                total_completions,
            } => {
                if total_completions > MAX_REPLICAS || max_concurrent > MAX_REPLICAS {
                    return Err(SpecError::Replicas {
                        count: total_completions.max(max_concurrent),
                        limit: MAX_REPLICAS,
                    });
                }
                if max_concurrent == 0 && total_completions > 0 {
                    return Err(SpecError::Job("max-concurrent must be at least 1"));
                }
            }
            _ => {}
        }
        for e in &self.task.container.env {
            match e.split_once('=') {
                Some((k, _)) if !k.is_empty() => {}
                _ => return Err(SpecError::Env(limits::echo(e))),
            }
        }
        for c in &self.task.placement.constraints {
            Constraint::parse(c)?;
        }
        crate::container::validate_mounts(&self.task.container.mounts)?;
        self.endpoint.validate()?;
        self.task.container.options.validate()?;
        for p in &self.task.placement.preferences {
            let ok = p
                .strip_prefix("spread=")
                .and_then(|l| l.strip_prefix("node.labels."))
                .is_some_and(|l| !l.is_empty());
            if !ok {
                return Err(SpecError::Preference(limits::echo(p)));
            }
        }
        if let Some(h) = &self.task.container.healthcheck {
            match h.test.first().map(String::as_str) {
                Some("NONE") => {}
                Some("CMD") if h.test.len() > 1 => {}
                Some("CMD-SHELL") if h.test.len() == 2 && !h.test[1].trim().is_empty() => {}
                _ => return Err(SpecError::Health(
                    "the test must be [\"CMD\", args...], [\"CMD-SHELL\", command] or [\"NONE\"]",
                )),
            }
        }
        for u in [&self.update_config, &self.rollback_config] {
            if !(0.0..=1.0).contains(&u.max_failure_ratio) {
                return Err(SpecError::Update(
                    "max failure ratio must be between 0 and 1",
                ));
            }
        }
        self.validate_for_mode()?;
        validate_attachments(&self.task.networks)?;
        let none = self.task.network_none || self.task.networks.iter().any(|a| a.target == "none");
        if none && !self.task.networks.iter().all(|a| a.target == "none") {
            return Err(SpecError::Network(
                "--network none cannot be combined with other networks; give it alone".into(),
            ));
        }
        if none && !self.endpoint.ports.is_empty() {
            return Err(SpecError::Network(
                "published ports need a network: remove --network none (or the ports)".into(),
            ));
        }
        let r = &self.task.resources;
        if r.limits.nano_cpus < 0
            || r.limits.memory_bytes < 0
            || r.reservations.nano_cpus < 0
            || r.reservations.memory_bytes < 0
        {
            return Err(SpecError::Resources("values must not be negative"));
        }
        if r.limits.memory_bytes != 0 && r.limits.memory_bytes < 6 * 1024 * 1024 {
            return Err(SpecError::Resources(
                "memory limit must be at least 6MiB (a smaller one kills any process at start)",
            ));
        }
        Ok(())
    }
}

impl ServiceSpec {
    /// Every field of a service spec within its limit, and the whole spec within
    /// [`limits::MAX_SPEC_BYTES`].
    fn check_limits(&self) -> Result<(), SpecError> {
        let spec = self;
        limits::check_labels("service", &spec.labels)?;
        let c = &spec.task.container;
        limits::check_labels("container", &c.labels)?;
        for (what, list) in [("environment entry", &c.env), ("argument", &c.args)] {
            if let Some(v) = list.iter().find(|v| v.len() > limits::MAX_VALUE_BYTES) {
                return Err(limits::too_large(
                    format!("{what} {}", limits::echo(v)),
                    v.len(),
                    limits::MAX_VALUE_BYTES,
                ));
            }
        }
        let size = serde_json::to_vec(spec)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > limits::MAX_SPEC_BYTES {
            return Err(limits::too_large(
                "the service spec".into(),
                size,
                limits::MAX_SPEC_BYTES,
            ));
        }
        Ok(())
    }

    /// Settings the orchestrator ignores in this spec's mode are refused, so that no flag is
    /// accepted and then dropped.
    fn validate_for_mode(&self) -> Result<(), SpecError> {
        let mode = self.mode.name();
        let not = |what, why| Err(SpecError::NotForMode { what, mode, why });
        let global = matches!(self.mode, ServiceMode::Global | ServiceMode::GlobalJob);
        // A replicated job's new spec applies to the tasks started after it; running ones finish
        // as they are. (A global job's tasks are replaced node by node like a global service's.)
        let job = matches!(self.mode, ServiceMode::ReplicatedJob { .. });
        if job
            && (*self.update_config != UpdateConfig::default()
                || *self.rollback_config != UpdateConfig::default())
        {
            return not(
                "an update or rollback config",
                "its tasks are never replaced by an update (a new spec applies to the tasks started after it); remove the --update-* and --rollback-* options",
            );
        }
        if global {
            if self.update_config.order == UpdateOrder::StartFirst
                || self.rollback_config.order == UpdateOrder::StartFirst
            {
                return not(
                    "the start-first update order",
                    "it runs one task per node, and a node's new task starts only after its old one stopped; use --update-order stop-first (and --rollback-order stop-first)",
                );
            }
            if self.task.placement.max_replicas_per_node != 0 {
                return not(
                    "a maximum of replicas per node",
                    "it runs exactly one task on each eligible node; remove --replicas-max-per-node",
                );
            }
            if !self.task.placement.preferences.is_empty() {
                return not(
                    "a placement preference",
                    "it runs a task on every eligible node, there is nothing to spread; use --constraint to choose nodes",
                );
            }
        }
        Ok(())
    }
}
