//! Desired-state specifications written by operators (service and node specs) and their
//! validation. A spec that fails validation is refused before anything is written.

use crate::constraint::Constraint;
use crate::endpoint::EndpointSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

mod node;
mod validate;
pub use node::*;
pub use validate::*;

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
    pub healthcheck: Option<Box<HealthCheck>>,
    /// Bind mounts, node-local volumes and tmpfs (`--mount`).
    #[serde(default)]
    pub mounts: Vec<crate::container::Mount>,
    /// Process and kernel knobs (`--ulimit`, `--cap-add`, `--read-only`, ...): most services
    /// set none, so they take one pointer until one is set.
    #[serde(default)]
    pub options: Sparse<crate::container::ContainerOptions>,
    /// Credentials for the image's registry (`--with-registry-auth`): sealed by the managers,
    /// in clear only in the assignments sent to the nodes that run the task.
    #[serde(
        default,
        skip_serializing_if = "crate::registry::RegistryAuth::is_empty"
    )]
    pub registry_auth: Sparse<crate::registry::RegistryAuth>,
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

use crate::sparse::Sparse;
crate::shared_default!(UpdateConfig);
crate::shared_default!(RestartPolicy);
crate::shared_default!(ResourceRequirements);
crate::shared_default!(Placement);

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
    // Sections most services leave at their defaults: one pointer each until set.
    pub resources: Sparse<ResourceRequirements>,
    pub restart_policy: Sparse<RestartPolicy>,
    pub placement: Sparse<Placement>,
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

pub use crate::names::{validate_labels, validate_name, PREDEFINED_NETWORKS};

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
    pub update_config: Sparse<UpdateConfig>,
    #[serde(default)]
    pub rollback_config: Sparse<UpdateConfig>,
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
