//! Desired-state specifications written by operators (service and node specs) and their
//! validation. A spec that fails validation is refused before anything is written.

use crate::constraint::Constraint;
use crate::endpoint::EndpointSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Upper bound on replicas of one service: far above what a cluster of this size runs, low
/// enough that a typo (`--replicas 1000000000`) is refused instead of flooding the store.
pub const MAX_REPLICAS: u64 = 100_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceMode {
    Replicated {
        replicas: u64,
    },
    Global,
    ReplicatedJob {
        max_concurrent: u64,
        total_completions: u64,
    },
    GlobalJob,
}

impl ServiceMode {
    pub fn name(&self) -> &'static str {
        match self {
            ServiceMode::Replicated { .. } => "replicated",
            ServiceMode::Global => "global",
            ServiceMode::ReplicatedJob { .. } => "replicated-job",
            ServiceMode::GlobalJob => "global-job",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RestartCondition {
    None,
    OnFailure,
    #[default]
    Any,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub condition: RestartCondition,
    #[serde(with = "duration_ms")]
    pub delay: Duration,
    /// 0 = unlimited.
    pub max_attempts: u64,
    #[serde(with = "duration_ms")]
    pub window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        // docker service create defaults
        RestartPolicy {
            condition: RestartCondition::Any,
            delay: Duration::from_secs(5),
            max_attempts: 0,
            window: Duration::ZERO,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Resources {
    /// CPU in units of 1e-9 cores (docker's NanoCPUs).
    pub nano_cpus: i64,
    pub memory_bytes: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ResourceRequirements {
    pub limits: Resources,
    pub reservations: Resources,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Placement {
    /// Constraint expressions (`node.labels.zone==east`), validated at create/update.
    pub constraints: Vec<String>,
    /// Spread preferences (`spread=node.labels.zone`).
    pub preferences: Vec<String>,
    /// 0 = unlimited.
    pub max_replicas_per_node: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ContainerSpec {
    pub image: String,
    /// Overrides the image's entrypoint when non-empty.
    pub command: Vec<String>,
    /// Overrides the image's cmd when non-empty.
    pub args: Vec<String>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    pub workdir: String,
    pub user: String,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    #[serde(with = "duration_ms")]
    pub stop_grace_period: Duration,
    /// Health check; `None` uses the image's, `Some` with test `["NONE"]` disables it.
    #[serde(default)]
    pub healthcheck: Option<HealthCheck>,
    /// Bind mounts, node-local volumes and tmpfs (`--mount`).
    #[serde(default)]
    pub mounts: Vec<crate::container::Mount>,
    /// Process and kernel knobs (`--ulimit`, `--cap-add`, `--read-only`, ...).
    #[serde(default)]
    pub options: crate::container::ContainerOptions,
    /// Credentials for the image's registry (`--with-registry-auth`): sealed by the managers,
    /// in clear only in the assignments sent to the nodes that run the task.
    #[serde(
        default,
        skip_serializing_if = "crate::registry::RegistryAuth::is_empty"
    )]
    pub registry_auth: crate::registry::RegistryAuth,
}

/// A health check run by exec inside the container (docker's HEALTHCHECK semantics).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HealthCheck {
    /// `["CMD", arg...]`, `["CMD-SHELL", "command"]` or `["NONE"]`.
    pub test: Vec<String>,
    #[serde(with = "duration_ms")]
    pub interval: Duration,
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
    pub retries: u64,
    #[serde(with = "duration_ms")]
    pub start_period: Duration,
}

impl HealthCheck {
    /// Docker's defaults for unset fields: 30s interval, 30s timeout, 3 retries.
    pub fn with_defaults(mut self) -> Self {
        if self.interval.is_zero() {
            self.interval = Duration::from_secs(30);
        }
        if self.timeout.is_zero() {
            self.timeout = Duration::from_secs(30);
        }
        if self.retries == 0 {
            self.retries = 3;
        }
        self
    }
    pub fn disabled(&self) -> bool {
        self.test.first().map(String::as_str) == Some("NONE")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FailureAction {
    #[default]
    Pause,
    Continue,
    Rollback,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UpdateOrder {
    #[default]
    StopFirst,
    StartFirst,
}

/// How tasks are replaced when the spec changes (docker's --update-* / --rollback-*).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateConfig {
    /// Tasks updated at once; 0 = all.
    pub parallelism: u64,
    #[serde(with = "duration_ms")]
    pub delay: Duration,
    pub failure_action: FailureAction,
    /// How long after a task runs a failure still counts against the update.
    #[serde(with = "duration_ms")]
    pub monitor: Duration,
    pub max_failure_ratio: f32,
    pub order: UpdateOrder,
}

impl Eq for UpdateConfig {}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            parallelism: 1,
            delay: Duration::ZERO,
            failure_action: FailureAction::Pause,
            monitor: Duration::from_secs(5),
            max_failure_ratio: 0.0,
            order: UpdateOrder::StopFirst,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TaskSpec {
    pub container: ContainerSpec,
    pub resources: ResourceRequirements,
    pub restart_policy: RestartPolicy,
    pub placement: Placement,
    /// Bumped by `service update --force` so that tasks are replaced without a spec change.
    pub force_update: u64,
    /// Networks the tasks attach to (`--network`); targets are network ids once stored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkAttachmentConfig>,
    /// The service's host-mode published ports (derived from its endpoint spec by the
    /// control API): a task holds them on its node, so the scheduler keeps two tasks that
    /// need one host port apart, and changing them replaces the tasks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_ports: Vec<crate::endpoint::PortConfig>,
    /// `--network none`: the task's container has only a loopback interface. Without it, a
    /// task with no `networks` gets an address on its node's default bridge (outbound NAT).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub network_none: bool,
}

/// Docker's predefined network names, which are not cluster networks: `none` (no network),
/// `bridge` (the node's default bridge, what a task without networks gets) and `host`.
pub const PREDEFINED_NETWORKS: [&str; 3] = ["none", "bridge", "host"];

impl TaskSpec {
    /// Folds the predefined network names ([`validate_attachments`] has checked them) into
    /// the spec: `none` sets [`TaskSpec::network_none`], `bridge` is the default.
    pub fn fold_predefined_networks(&mut self) {
        if self.networks.iter().any(|a| a.target == "none") {
            self.network_none = true;
        }
        self.networks
            .retain(|a| a.target != "none" && a.target != "bridge");
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub task: TaskSpec,
    pub mode: ServiceMode,
    #[serde(default)]
    pub update_config: UpdateConfig,
    #[serde(default)]
    pub rollback_config: UpdateConfig,
    /// How the service is reached: virtual IP or DNS round robin, published ports.
    #[serde(default, skip_serializing_if = "EndpointSpec::is_default")]
    pub endpoint: EndpointSpec,
}

pub use crate::error::SpecError;

/// Networks a task may attach to.
pub const MAX_TASK_NETWORKS: usize = 16;

/// A service's request to be attached to a network (`--network name=X,alias=Y`). `target` is
/// what the operator typed; the control API stores the network's id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NetworkAttachmentConfig {
    pub target: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

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
fn check_predefined(a: &NetworkAttachmentConfig, count: usize) -> Result<(), SpecError> {
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

/// Validates a service name the way docker does: 1-63 chars of `[a-zA-Z0-9-_.]`, starting with
/// an alphanumeric character (it becomes a DNS name and part of container names).
pub fn validate_name(name: &str) -> Result<(), SpecError> {
    let err = |reason| {
        Err(SpecError::Name {
            name: limits::echo(name),
            reason,
        })
    };
    if name.is_empty() {
        return err("it must not be empty");
    }
    if name.len() > 63 {
        return err("it must be at most 63 characters");
    }
    if !name.chars().next().unwrap().is_ascii_alphanumeric() {
        return err("it must start with a letter or digit");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return err("only letters, digits, '-', '_' and '.' are allowed");
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

pub fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), SpecError> {
    for k in labels.keys() {
        if k.is_empty() || k.contains('=') || k.chars().any(char::is_whitespace) {
            return Err(SpecError::Label(limits::echo(k)));
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
            update_config: UpdateConfig::default(),
            rollback_config: UpdateConfig::default(),
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
            && (self.update_config != UpdateConfig::default()
                || self.rollback_config != UpdateConfig::default())
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    #[default]
    Worker,
    Manager,
}

impl NodeRole {
    pub fn as_str(&self) -> &'static str {
        match self {
            NodeRole::Worker => "worker",
            NodeRole::Manager => "manager",
        }
    }
}

/// The wire and certificate spelling (`as_str`) back to the role.
impl std::str::FromStr for NodeRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "worker" => Ok(NodeRole::Worker),
            "manager" => Ok(NodeRole::Manager),
            _ => Err("invalid role: expected manager or worker".into()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    #[default]
    Active,
    Pause,
    Drain,
}

impl Availability {
    pub fn as_str(&self) -> &'static str {
        match self {
            Availability::Active => "active",
            Availability::Pause => "pause",
            Availability::Drain => "drain",
        }
    }
}

impl std::str::FromStr for Availability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "active" => Ok(Availability::Active),
            "pause" => Ok(Availability::Pause),
            "drain" => Ok(Availability::Drain),
            other => Err(format!(
                "invalid availability {other:?}: expected active, pause or drain"
            )),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeSpec {
    /// Desired role (promotion/demotion change this).
    pub role: NodeRole,
    pub availability: Availability,
    pub labels: BTreeMap<String, String>,
}

/// Serializes a `Duration` as integer milliseconds (stable, language-neutral JSON).
pub mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn spec(name: &str) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            labels: BTreeMap::new(),
            task: TaskSpec {
                container: ContainerSpec {
                    image: "busybox:latest".into(),
                    ..Default::default()
                },
                ..Default::default()
            },
            mode: ServiceMode::Replicated { replicas: 1 },
            update_config: Default::default(),
            rollback_config: Default::default(),
            endpoint: Default::default(),
        }
    }

    #[test]
    fn predefined_networks_stand_alone_and_fold_into_the_spec() {
        let att = |t: &str| NetworkAttachmentConfig {
            target: t.into(),
            aliases: vec![],
        };
        let with = |nets: &[&str]| {
            let mut s = spec("web");
            s.task.networks = nets.iter().map(|t| att(t)).collect();
            s
        };
        let err = |s: ServiceSpec| s.validate().unwrap_err().to_string();
        assert!(err(with(&["host"])).contains("host networking is not supported"));
        assert!(err(with(&["none", "ov"])).contains("--network none cannot be combined"));
        assert!(err(with(&["ov", "bridge"])).contains("--network bridge cannot be combined"));
        let mut aliased = with(&["bridge"]);
        aliased.task.networks[0].aliases = vec!["db".into()];
        assert!(err(aliased).contains("takes no aliases"));
        let mut published = with(&["none"]);
        published.endpoint.ports = vec![crate::endpoint::PortConfig {
            target: 80,
            ..Default::default()
        }];
        assert!(err(published).contains("published ports need a network"));
        let mut flagged = with(&["ov"]);
        flagged.task.network_none = true;
        assert!(err(flagged).contains("--network none cannot be combined"));

        let mut none = with(&["none"]);
        none.validate().unwrap();
        none.task.fold_predefined_networks();
        assert!(none.task.network_none && none.task.networks.is_empty());
        let mut bridge = with(&["bridge"]);
        bridge.validate().unwrap();
        bridge.task.fold_predefined_networks();
        assert!(!bridge.task.network_none && bridge.task.networks.is_empty());
        let mut ov = with(&["ov"]);
        ov.task.fold_predefined_networks();
        assert_eq!(ov.task.networks, vec![att("ov")]);
    }

    #[test]
    fn valid_spec_passes() {
        spec("web").validate().unwrap();
        spec("web-1.a_b").validate().unwrap();
    }

    #[test]
    fn bad_names_are_refused() {
        for n in ["", "-web", "we b", "a/b", &"x".repeat(64)] {
            assert!(
                matches!(spec(n).validate(), Err(SpecError::Name { .. })),
                "{n}"
            );
        }
    }

    #[test]
    fn bad_images_are_refused() {
        let mut s = spec("web");
        for img in [
            "",
            "bad image",
            "x:",
            "x@sha256:123",
            ":tag",
            "-p",
            "--publish",
        ] {
            s.task.container.image = img.into();
            assert!(s.validate().is_err(), "{img}");
        }
        s.task.container.image = format!("x@sha256:{}", "a".repeat(64));
        s.validate().unwrap();
    }

    #[test]
    fn absurd_replicas_refused() {
        let mut s = spec("web");
        s.mode = ServiceMode::Replicated {
            replicas: MAX_REPLICAS + 1,
        };
        assert_eq!(
            s.validate(),
            Err(SpecError::Replicas {
                count: MAX_REPLICAS + 1,
                limit: MAX_REPLICAS
            })
        );
    }

    #[test]
    fn env_and_constraints_checked() {
        let mut s = spec("web");
        s.task.container.env = vec!["NOVALUE".into()];
        assert!(matches!(s.validate(), Err(SpecError::Env(_))));
        s.task.container.env = vec!["A=".into()];
        s.validate().unwrap();
        s.task.placement.constraints = vec!["node.labels.zone=east".into()];
        assert!(matches!(s.validate(), Err(SpecError::Constraint { .. })));
        s.task.placement.constraints = vec!["node.labels.zone==east".into()];
        s.validate().unwrap();
        s.task.placement.preferences = vec!["spread=zone".into()];
        assert!(matches!(s.validate(), Err(SpecError::Preference(_))));
    }

    #[test]
    fn settings_the_mode_ignores_are_refused() {
        let with_mode = |mode: ServiceMode| {
            let mut s = spec("svc");
            s.mode = mode;
            s
        };
        let job = ServiceMode::ReplicatedJob {
            max_concurrent: 1,
            total_completions: 3,
        };
        for mode in [ServiceMode::Global, ServiceMode::GlobalJob] {
            let mut s = with_mode(mode.clone());
            s.validate().unwrap();
            s.update_config.order = UpdateOrder::StartFirst;
            let e = s.validate().unwrap_err().to_string();
            assert!(e.contains("start-first") && e.contains("stop-first"), "{e}");
            let mut s = with_mode(mode.clone());
            s.task.placement.max_replicas_per_node = 2;
            assert!(matches!(s.validate(), Err(SpecError::NotForMode { .. })));
            let mut s = with_mode(mode.clone());
            s.task.placement.preferences = vec!["spread=node.labels.zone".into()];
            assert!(matches!(s.validate(), Err(SpecError::NotForMode { .. })));
        }
        let mut s = with_mode(ServiceMode::Global);
        s.rollback_config.order = UpdateOrder::StartFirst;
        assert!(matches!(s.validate(), Err(SpecError::NotForMode { .. })));
        let mut s = with_mode(job.clone());
        s.update_config.parallelism = 3;
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("--update-*"), "{e}");
        let mut s = with_mode(job.clone());
        s.rollback_config.failure_action = FailureAction::Continue;
        assert!(matches!(s.validate(), Err(SpecError::NotForMode { .. })));
        // A global job's tasks are replaced like a global service's: update settings apply.
        let mut s = with_mode(ServiceMode::GlobalJob);
        s.update_config.parallelism = 3;
        s.validate().unwrap();
        // What the modes do read stays accepted.
        let mut s = with_mode(ServiceMode::Replicated { replicas: 3 });
        s.update_config.order = UpdateOrder::StartFirst;
        s.task.placement.max_replicas_per_node = 1;
        s.task.placement.preferences = vec!["spread=node.labels.zone".into()];
        s.validate().unwrap();
        let mut s = with_mode(job);
        s.task.placement.max_replicas_per_node = 1;
        s.validate().unwrap();
    }

    #[test]
    fn roles_round_trip_through_their_wire_spelling() {
        for r in [NodeRole::Worker, NodeRole::Manager] {
            assert_eq!(r.as_str().parse::<NodeRole>(), Ok(r));
        }
        assert!("admin".parse::<NodeRole>().is_err());
        assert!("".parse::<NodeRole>().is_err());
    }
}
