//! The replicated objects: Cluster, Node, Service, Task, Network (in `network.rs`). Every object carries `Meta`, whose
//! `version` is the Raft log index of its last write (used for optimistic concurrency).

use crate::ids::{ClusterId, NetworkId, NodeId, ServiceId, TaskId};
use crate::spec::{NodeRole, NodeSpec, ServiceSpec, TaskSpec};
use crate::task::TaskState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use crate::meta::Meta;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Cluster,
    Node,
    Service,
    Task,
    /// A repository of the cluster registry (`registry.rs`).
    Repository,
    /// A manager's registry address.
    RegistryEndpoint,
    Network,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 7] = [
        ObjectKind::Cluster,
        ObjectKind::Node,
        ObjectKind::Service,
        ObjectKind::Task,
        ObjectKind::Repository,
        ObjectKind::RegistryEndpoint,
        ObjectKind::Network,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Cluster => "cluster",
            ObjectKind::Node => "node",
            ObjectKind::Service => "service",
            ObjectKind::Task => "task",
            ObjectKind::Repository => "repository",
            ObjectKind::RegistryEndpoint => "registry endpoint",
            ObjectKind::Network => "network",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct JoinTokens {
    pub worker: String,
    pub manager: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RootCa {
    pub cert_pem: String,
    /// Only managers replicate the state that holds this key.
    pub key_pem: String,
    /// Base36 sha256 of the CA certificate (DER), as embedded in join tokens.
    pub digest: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ClusterSpec {
    pub name: String,
    /// How many old tasks to keep per slot.
    pub task_history_limit: u64,
    pub node_cert_expiry_secs: u64,
    /// Where network subnets come from (`swarmd --default-addr-pool`); empty = 10.0.0.0/8.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default_addr_pool: Vec<crate::network::Ipv4Net>,
    /// Prefix length of the subnets carved from the pools (`--default-addr-pool-mask-len`);
    /// 0 = 24.
    #[serde(default)]
    pub subnet_size: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Cluster {
    pub id: ClusterId,
    pub meta: Meta,
    pub spec: ClusterSpec,
    pub root_ca: RootCa,
    pub join_tokens: JoinTokens,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Platform {
    pub os: String,
    pub arch: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeDescription {
    pub hostname: String,
    pub platform: Platform,
    pub nano_cpus: i64,
    pub memory_bytes: i64,
    pub engine_labels: BTreeMap<String, String>,
    pub version: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    #[default]
    Unknown,
    Down,
    Ready,
    Disconnected,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Unknown => "unknown",
            NodeState::Down => "down",
            NodeState::Ready => "ready",
            NodeState::Disconnected => "disconnected",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeStatus {
    pub state: NodeState,
    pub message: String,
    /// Address the node was last seen from.
    pub addr: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ManagerStatus {
    /// The node's id inside Raft membership.
    pub raft_id: u64,
    /// Address other managers reach this node's gRPC server on.
    pub addr: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Node {
    pub id: NodeId,
    pub meta: Meta,
    pub spec: NodeSpec,
    pub description: NodeDescription,
    pub status: NodeStatus,
    /// Present once the node is a Raft member.
    pub manager_status: Option<ManagerStatus>,
    /// The role the node's certificate was issued for.
    pub role: NodeRole,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub id: ServiceId,
    pub meta: Meta,
    pub spec: ServiceSpec,
    /// The spec before the last update (for rollback).
    pub previous_spec: Option<Box<ServiceSpec>>,
    /// State of the last rolling update.
    #[serde(default)]
    pub update_status: Option<Box<UpdateStatus>>,
    /// Earlier specs, newest last (at most `SPEC_HISTORY` entries).
    #[serde(default)]
    pub spec_history: Vec<SpecVersion>,
    /// Version number of `spec` in the history sequence (1 = as created).
    #[serde(default)]
    pub spec_version: u64,
    /// What the leader allocated for `spec.endpoint` (virtual IPs, published ports).
    #[serde(default, skip_serializing_if = "Endpoint::is_empty")]
    pub endpoint: crate::sparse::Sparse<Endpoint>,
    /// Task counts, filled in when services are listed (Docker's `ServiceStatus`); never
    /// stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Box<ServiceStatus>>,
}

/// A service's virtual IP on one network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualIp {
    pub network_id: NetworkId,
    /// With the network's prefix length (`10.0.1.2/24`), as Docker shows it.
    pub addr: crate::network::Ipv4Net,
}

/// What the leader allocated for a service's endpoint spec.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The spec these were allocated for.
    #[serde(default)]
    pub spec: crate::endpoint::EndpointSpec,
    /// The published ports, with every `published` filled in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<crate::endpoint::PortConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub virtual_ips: Vec<VirtualIp>,
}

crate::shared_default!(Endpoint);

impl Endpoint {
    pub fn is_empty(&self) -> bool {
        *self == Endpoint::default()
    }

    pub fn vip_on(&self, net: &NetworkId) -> Option<std::net::Ipv4Addr> {
        self.virtual_ips
            .iter()
            .find(|v| v.network_id == *net)
            .map(|v| v.addr.addr)
    }
}

/// How many of a service's tasks run, computed from the store when services are listed, so
/// that `service ls` need not fetch every task.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Desired and observed running.
    pub running_tasks: u64,
    /// Replicas (replicated), the number of live global tasks (global), or the total number of
    /// completions (jobs).
    pub desired_tasks: u64,
    /// Tasks that completed (jobs).
    pub completed_tasks: u64,
}

impl ServiceStatus {
    /// Counts one task of the service into this status.
    pub fn count(&mut self, t: &Task) {
        if t.status.state == TaskState::Running && t.desired_state == TaskState::Running {
            self.running_tasks += 1;
        }
        if t.status.state == TaskState::Complete {
            self.completed_tasks += 1;
        }
        if t.desired_state <= TaskState::Running {
            // Global modes: a live slot is one eligible node.
            self.desired_tasks += 1;
        }
    }

    /// What [`ServiceStatus::count`] counts for `t` alone.
    pub fn of(t: &Task) -> ServiceStatus {
        let mut one = ServiceStatus::default();
        one.count(t);
        one
    }

    fn is_empty(&self) -> bool {
        *self == ServiceStatus::default()
    }
}

/// Keeps per-service task counts in step with one task change (`old` → `new`): what
/// `service ls`, `service inspect` and `--detach=false` read, without a pass over every task.
pub fn count_task(
    counts: &mut std::collections::BTreeMap<ServiceId, ServiceStatus>,
    old: Option<&Task>,
    new: Option<&Task>,
) {
    if let (Some(o), Some(n)) = (old, new) {
        if o.service_id == n.service_id {
            // A rewrite of the same task: one move, no lookup when it counts the same.
            let (from, to) = (ServiceStatus::of(o), ServiceStatus::of(n));
            return shift_count(counts, &n.service_id, &from, &to);
        }
    }
    if let Some(o) = old {
        shift_count(
            counts,
            &o.service_id,
            &ServiceStatus::of(o),
            &Default::default(),
        );
    }
    if let Some(n) = new {
        shift_count(
            counts,
            &n.service_id,
            &Default::default(),
            &ServiceStatus::of(n),
        );
    }
}

/// Moves one task of `service` from what it counted as (`from`) to `to` (`ServiceStatus::of`
/// before and after a change); no lookup when both are the same.
pub fn shift_count(
    counts: &mut std::collections::BTreeMap<ServiceId, ServiceStatus>,
    service: &ServiceId,
    from: &ServiceStatus,
    to: &ServiceStatus,
) {
    if from == to {
        return;
    }
    if !counts.contains_key(service) {
        counts.insert(service.clone(), ServiceStatus::default());
    }
    let Some(c) = counts.get_mut(service) else {
        return;
    };
    c.running_tasks = (c.running_tasks + to.running_tasks).saturating_sub(from.running_tasks);
    c.completed_tasks =
        (c.completed_tasks + to.completed_tasks).saturating_sub(from.completed_tasks);
    c.desired_tasks = (c.desired_tasks + to.desired_tasks).saturating_sub(from.desired_tasks);
    if c.is_empty() {
        counts.remove(service);
    }
}

impl Service {
    /// A service as `service create` makes it: version 1 of its spec, no history, no update,
    /// nothing allocated yet.
    pub fn new(id: ServiceId, spec: ServiceSpec) -> Service {
        Service {
            id,
            meta: Meta::default(),
            spec,
            previous_spec: None,
            update_status: None,
            spec_history: Vec::new(),
            spec_version: 1,
            endpoint: Default::default(),
            status: None,
        }
    }

    /// Replaces the spec the way `service update`/`scale`/`rollback` do: the old spec goes to
    /// the history (at most `SPEC_HISTORY`) and becomes `previous_spec`; a change of the task
    /// template starts a rolling update (or a rollback). Returns false when nothing changed.
    pub fn replace_spec(&mut self, new: ServiceSpec, now_ms: u64, rollback: bool) -> bool {
        if new == self.spec {
            return false;
        }
        let tasks_change = new.task != self.spec.task;
        let old = std::mem::replace(&mut self.spec, new);
        self.spec_history.push(SpecVersion {
            version: self.spec_version.max(1),
            replaced_at: now_ms,
            created_at: self.meta.updated_at,
            spec: old.clone(),
        });
        if self.spec_history.len() > SPEC_HISTORY {
            let excess = self.spec_history.len() - SPEC_HISTORY;
            self.spec_history.drain(..excess);
        }
        self.previous_spec = Some(Box::new(old));
        self.spec_version = self.spec_version.max(1) + 1;
        if tasks_change {
            self.update_status = Some(Box::new(UpdateStatus {
                state: if rollback {
                    UpdateState::RollbackStarted
                } else {
                    UpdateState::Updating
                },
                started_at: now_ms,
                completed_at: 0,
                message: if rollback {
                    "rollback in progress".into()
                } else {
                    "update in progress".into()
                },
            }));
        }
        true
    }
}

/// How many earlier specs a service keeps for `service rollback --to-version`.
pub const SPEC_HISTORY: usize = 10;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecVersion {
    pub version: u64,
    /// Unix ms when this spec was replaced.
    pub replaced_at: u64,
    /// Unix ms when this spec was written.
    pub created_at: u64,
    pub spec: ServiceSpec,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateState {
    Updating,
    Paused,
    Completed,
    RollbackStarted,
    RollbackPaused,
    RollbackCompleted,
}

impl UpdateState {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateState::Updating => "updating",
            UpdateState::Paused => "paused",
            UpdateState::Completed => "completed",
            UpdateState::RollbackStarted => "rollback_started",
            UpdateState::RollbackPaused => "rollback_paused",
            UpdateState::RollbackCompleted => "rollback_completed",
        }
    }
    pub fn is_rollback(self) -> bool {
        matches!(
            self,
            UpdateState::RollbackStarted
                | UpdateState::RollbackPaused
                | UpdateState::RollbackCompleted
        )
    }
    pub fn is_paused(self) -> bool {
        matches!(self, UpdateState::Paused | UpdateState::RollbackPaused)
    }
    pub fn is_active(self) -> bool {
        matches!(self, UpdateState::Updating | UpdateState::RollbackStarted)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {
    pub state: UpdateState,
    pub started_at: u64,
    pub completed_at: u64,
    pub message: String,
}

/// `TaskStatus.message` of a task its node rejected for a reason of that node (its registry
/// unreachable from there, its disk, its runtime), not of the task: the scheduler places the
/// replacement on another node when it can. Other rejections (the registry has no such image,
/// refused credentials, a bad spec) would fail anywhere, so they do not steer placement.
pub const NODE_LOCAL_REJECTION: &str = "rejected by this node";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TaskStatus {
    pub state: TaskState,
    pub timestamp: u64,
    pub message: String,
    pub err: String,
    pub exit_code: Option<i32>,
    /// Runtime container id once the agent created it.
    #[serde(default)]
    pub container_id: String,
    /// Health of a container with a health check: "", "starting", "healthy", "unhealthy".
    #[serde(default)]
    pub health: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: TaskId,
    pub meta: Meta,
    pub service_id: ServiceId,
    /// Replicated services: 1-based slot number; global services: 0.
    pub slot: u64,
    pub node_id: Option<NodeId>,
    /// Name of the service when the task was created (container names, `service ps`).
    #[serde(default)]
    pub service_name: String,
    /// `meta.version` of the service spec this task runs.
    #[serde(default)]
    pub spec_version: u64,
    /// Shared, not copied: the tasks of one write batch (up to 1,000 of a service) point at
    /// one spec, in the store and in every copy of a task the change feed, the event history
    /// and the dispatcher hold. Change it with `Arc::make_mut`, which copies only this task's.
    pub spec: std::sync::Arc<TaskSpec>,
    pub desired_state: TaskState,
    pub status: TaskStatus,
    /// How many times this slot was restarted after the task before it died.
    #[serde(default)]
    pub restarts: u64,
    /// The task's address on each network of its spec, allocated by the leader when the task
    /// is created (written with it through Raft).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<crate::network::NetworkAttachment>,
}

impl Task {
    /// Places a pending task on `node` (what `Op::AssignTask` does).
    pub fn assign(&mut self, node: NodeId, now_ms: u64) {
        self.node_id = Some(node);
        self.status.state = TaskState::Assigned;
        self.status.message = "scheduled".into();
        self.status.err.clear();
        self.status.timestamp = now_ms;
    }

    /// Records why the scheduler cannot place this pending task.
    pub fn note_unplaced(&mut self, reason: String) {
        self.status = self.status.unplaced(reason);
    }
}

impl TaskStatus {
    /// This status, saying why the task cannot be placed. Docker shows the reason in the
    /// ERROR column, so it is both the message and the error.
    pub fn unplaced(&self, reason: String) -> TaskStatus {
        TaskStatus {
            err: reason.clone(),
            message: reason,
            ..self.clone()
        }
    }
}

/// A network of the cluster. The subnet, gateway and VXLAN id are decided when it is
/// created (from its spec or the cluster's address pools) and never change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub id: NetworkId,
    pub meta: Meta,
    pub spec: crate::network::NetworkSpec,
    pub subnet: crate::network::Ipv4Net,
    #[serde(with = "crate::network::addr_str")]
    pub gateway: std::net::Ipv4Addr,
    /// Task addresses are taken from here (the subnet unless `--ip-range` narrowed it).
    pub ip_range: crate::network::Ipv4Net,
    /// VXLAN network identifier (overlay), unique in the cluster.
    pub vni: u32,
}

/// Any object of the store, as carried by writes and change events.
// Objects are moved rarely and never stored in bulk as `Object`; boxing would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Object {
    Cluster(Cluster),
    Node(Node),
    /// Boxed: a `Service` is ~1.3 KB inline, four times a `Task`, and every `Object`, `Op` and
    /// `Change` would otherwise be that size (issue 17: the log cache, the change feed, batches
    /// of status reports). Serialized the same as unboxed.
    Service(Box<Service>),
    Task(Task),
    Repository(crate::registry::Repository),
    RegistryEndpoint(crate::registry::RegistryEndpoint),
    Network(Network),
}

impl Object {
    /// Drops fields computed at read time (never stored).
    pub fn clear_derived(&mut self) {
        if let Object::Service(s) = self {
            s.status = None;
        }
    }

    pub fn kind(&self) -> ObjectKind {
        match self {
            Object::Cluster(_) => ObjectKind::Cluster,
            Object::Node(_) => ObjectKind::Node,
            Object::Service(_) => ObjectKind::Service,
            Object::Task(_) => ObjectKind::Task,
            Object::Repository(_) => ObjectKind::Repository,
            Object::RegistryEndpoint(_) => ObjectKind::RegistryEndpoint,
            Object::Network(_) => ObjectKind::Network,
        }
    }
    pub fn id(&self) -> &str {
        match self {
            Object::Cluster(o) => o.id.as_str(),
            Object::Node(o) => o.id.as_str(),
            Object::Service(o) => o.id.as_str(),
            Object::Task(o) => o.id.as_str(),
            Object::Repository(o) => o.id.as_str(),
            Object::RegistryEndpoint(o) => o.id.as_str(),
            Object::Network(o) => o.id.as_str(),
        }
    }
    pub fn meta(&self) -> &Meta {
        match self {
            Object::Cluster(o) => &o.meta,
            Object::Node(o) => &o.meta,
            Object::Service(o) => &o.meta,
            Object::Task(o) => &o.meta,
            Object::Repository(o) => &o.meta,
            Object::RegistryEndpoint(o) => &o.meta,
            Object::Network(o) => &o.meta,
        }
    }
    pub fn meta_mut(&mut self) -> &mut Meta {
        match self {
            Object::Cluster(o) => &mut o.meta,
            Object::Node(o) => &mut o.meta,
            Object::Service(o) => &mut o.meta,
            Object::Task(o) => &mut o.meta,
            Object::Repository(o) => &mut o.meta,
            Object::RegistryEndpoint(o) => &mut o.meta,
            Object::Network(o) => &mut o.meta,
        }
    }
}
