//! The object store's state and its deterministic apply function. Raft replicates
//! `WriteBatch`es; every manager applies them through `StoreState::apply`, which either applies
//! the whole batch or none of it (optimistic concurrency on `meta.version`).

use crate::ids::{NetworkId, NodeId, ServiceId, TaskId};
use crate::network::NetworkAttachment;
use crate::objects::{
    Cluster, Meta, Network, Node, Object, ObjectKind, Service, ServiceStatus, Task, TaskStatus,
};
use crate::task::TaskState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// One change requested by a write.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Create a new object; fails if the id (or a service's name) is taken.
    Create(Object),
    /// Replace an object; fails unless `object.meta.version` equals the stored version.
    Update(Object),
    /// Replace or create an object regardless of its version (last writer wins).
    Put(Object),
    /// Set a task's observed status. Ignored (no error) when the state would not move
    /// forward, except that a pending task may update its message (why it is not placed).
    TaskStatus { id: TaskId, status: TaskStatus },
    /// Raise a task's desired state (only forward); ignored otherwise.
    TaskDesired { id: TaskId, desired: TaskState },
    /// Assign a pending task to a node (state becomes assigned); ignored unless still pending.
    AssignTask { id: TaskId, node_id: NodeId },
    /// Delete an object; with `version`, only if it is still at that version.
    Delete {
        kind: ObjectKind,
        id: String,
        version: Option<u64>,
    },
    /// Create many tasks of one spec: exactly one `Create` per item, with the shared fields
    /// (service, spec, desired state) written once. Scaling a service to 10,000 replicas
    /// would otherwise replicate its task spec 10,000 times (~640 bytes each).
    CreateTasks(TaskBatch),
}

/// Tasks that share everything but their identity, placement and status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskBatch {
    /// The shared fields; its id, slot, node, restarts and status are ignored.
    pub template: Task,
    pub items: Vec<TaskItem>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskItem {
    pub id: TaskId,
    pub slot: u64,
    pub node_id: Option<NodeId>,
    pub restarts: u64,
    pub status: TaskStatus,
    /// The task's own network addresses (the template's are ignored).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkAttachment>,
}

impl TaskBatch {
    fn task(&self, item: &TaskItem) -> Task {
        let mut t = self.template.clone();
        t.id = item.id.clone();
        t.slot = item.slot;
        t.node_id = item.node_id.clone();
        t.restarts = item.restarts;
        t.status = item.status.clone();
        t.networks = item.networks.clone();
        t
    }
}

impl Op {
    /// How many objects the op writes (what batch size limits count).
    pub fn weight(&self) -> usize {
        match self {
            Op::CreateTasks(b) => b.items.len(),
            _ => 1,
        }
    }
}

/// Folds runs of task creations that share a template into `CreateTasks` (consecutive
/// `Create` ops of tasks with the same service, spec version, spec and desired state). Applying
/// the result is exactly applying `ops`.
pub fn compact(ops: Vec<Op>) -> Vec<Op> {
    let mut out: Vec<Op> = Vec::with_capacity(ops.len());
    for op in ops {
        let Op::Create(Object::Task(t)) = op else {
            out.push(op);
            continue;
        };
        let item = TaskItem {
            id: t.id.clone(),
            slot: t.slot,
            node_id: t.node_id.clone(),
            restarts: t.restarts,
            status: t.status.clone(),
            networks: t.networks.clone(),
        };
        if let Some(Op::CreateTasks(b)) = out.last_mut() {
            let tp = &b.template;
            if tp.service_id == t.service_id
                && tp.spec_version == t.spec_version
                && tp.desired_state == t.desired_state
                && tp.service_name == t.service_name
                && tp.meta == t.meta
                && tp.spec == t.spec
            {
                b.items.push(item);
                continue;
            }
        }
        let mut template = t;
        template.networks.clear();
        out.push(Op::CreateTasks(TaskBatch {
            template,
            items: vec![item],
        }));
    }
    // A batch of one is just a Create.
    out.into_iter()
        .map(|op| match op {
            Op::CreateTasks(b) if b.items.len() == 1 => {
                Op::Create(Object::Task(b.task(&b.items[0])))
            }
            op => op,
        })
        .collect()
}

/// A batch of ops applied atomically at one Raft index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct WriteBatch {
    pub ops: Vec<Op>,
    /// Proposer's wall clock (unix ms): apply stays deterministic on every replica.
    pub now_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Created,
    Updated,
    Deleted,
}

/// An applied change, fed to watchers. For deletes `object` is the last stored value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub index: u64,
    pub action: Action,
    pub object: Object,
    /// Only a task's observed status changed (an agent's report): nothing an agent acts on,
    /// so the dispatcher does not echo it back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub status_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreError {
    #[error("{kind} {id} not found")]
    NotFound { kind: String, id: String },
    #[error("{kind} {id} already exists")]
    Exists { kind: String, id: String },
    #[error("{kind} name {name:?} is already in use by {id}")]
    NameConflict {
        kind: String,
        name: String,
        id: String,
    },
    #[error("{kind} {id} is in use by {by}")]
    InUse {
        kind: String,
        id: String,
        by: String,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("update out of sequence: {kind} {id} is at version {actual}, the update was based on version {expected}; read it again and retry")]
    VersionMismatch {
        kind: String,
        id: String,
        expected: u64,
        actual: u64,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreState {
    pub clusters: BTreeMap<String, Cluster>,
    pub nodes: BTreeMap<NodeId, Node>,
    pub services: BTreeMap<ServiceId, Box<Service>>,
    /// Boxed: a B-tree node holds eleven values inline and is about two thirds full, so a
    /// 280-byte `Task` inline cost ~450 bytes of node a task (heap profile, 2026-12-05).
    pub tasks: BTreeMap<TaskId, Box<Task>>,
    /// Cluster registry repositories by name.
    #[serde(default)]
    pub repositories: BTreeMap<String, crate::registry::Repository>,
    /// Registry endpoints by manager node id.
    #[serde(default)]
    pub registry_endpoints: BTreeMap<String, crate::registry::RegistryEndpoint>,
    #[serde(default)]
    pub networks: BTreeMap<NetworkId, Network>,
    /// Service name → id; derived, rebuilt after deserialization.
    #[serde(skip)]
    service_names: BTreeMap<String, ServiceId>,
    /// (network, address) → the task holding it; derived, rebuilt after deserialization.
    #[serde(skip)]
    addresses: BTreeMap<(NetworkId, Ipv4Addr), TaskId>,
    /// (network, virtual IP) → the service holding it; derived like `addresses`.
    #[serde(skip)]
    vips: BTreeMap<(NetworkId, Ipv4Addr), ServiceId>,
    /// Services in an active rolling update (or rollback); derived like `addresses`, so the
    /// control loop need not look at every service on every pass.
    #[serde(skip)]
    updating: std::collections::BTreeSet<ServiceId>,
    /// Node → the tasks assigned to it; derived like `addresses`. A node's session, its
    /// discovery view and its overlay peers read one node's tasks: a scan of every task per
    /// agent made a survivor of a leader failover with 100,000 tasks spend seconds of CPU
    /// on the third of the agents reconnecting to it (issue 17).
    #[serde(skip)]
    by_node: BTreeMap<NodeId, std::collections::BTreeSet<TaskId>>,
    /// Service → its tasks counted as `service ls` shows them; derived like `addresses`.
    /// A client following a rollout reads one service's status many times a second, and a
    /// pass over 100,000 tasks per read took a third of the leader's CPU in a burst.
    #[serde(skip)]
    counts: BTreeMap<ServiceId, ServiceStatus>,
}

fn is_updating(s: &Service) -> bool {
    s.update_status
        .as_ref()
        .is_some_and(|u| u.state.is_active())
}

/// Keeps the derived service indexes (virtual IPs, active updates) in step with one change.
fn index_service(
    vips: &mut BTreeMap<(NetworkId, Ipv4Addr), ServiceId>,
    updating: &mut std::collections::BTreeSet<ServiceId>,
    old: Option<&Service>,
    new: Option<&Service>,
) {
    if let Some(o) = old {
        for v in &o.endpoint.virtual_ips {
            let k = (v.network_id.clone(), v.addr.addr);
            if vips.get(&k) == Some(&o.id) {
                vips.remove(&k);
            }
        }
        updating.remove(&o.id);
    }
    if let Some(n) = new {
        for v in &n.endpoint.virtual_ips {
            vips.insert((v.network_id.clone(), v.addr.addr), n.id.clone());
        }
        if is_updating(n) {
            updating.insert(n.id.clone());
        }
    }
}

/// Keeps the node index in step with one task moving from node `old` to node `new`.
fn index_node(
    by_node: &mut BTreeMap<NodeId, std::collections::BTreeSet<TaskId>>,
    task: &TaskId,
    old: Option<&NodeId>,
    new: Option<&NodeId>,
) {
    if old == new {
        return;
    }
    if let Some(o) = old {
        if let Some(set) = by_node.get_mut(o) {
            set.remove(task);
            if set.is_empty() {
                by_node.remove(o);
            }
        }
    }
    if let Some(n) = new {
        by_node.entry(n.clone()).or_default().insert(task.clone());
    }
}

/// Keeps the address and node indexes in step with one task change.
fn index_task(
    addresses: &mut BTreeMap<(NetworkId, Ipv4Addr), TaskId>,
    by_node: &mut BTreeMap<NodeId, std::collections::BTreeSet<TaskId>>,
    counts: &mut BTreeMap<ServiceId, ServiceStatus>,
    old: Option<&Task>,
    new: Option<&Task>,
) {
    crate::objects::count_task(counts, old, new);
    if let Some(t) = new.or(old) {
        index_node(
            by_node,
            &t.id,
            old.and_then(|o| o.node_id.as_ref()),
            new.and_then(|n| n.node_id.as_ref()),
        );
    }
    if let Some(o) = old {
        for a in &o.networks {
            let k = (a.network_id.clone(), a.address.addr);
            if addresses.get(&k) == Some(&o.id) {
                addresses.remove(&k);
            }
        }
    }
    if let Some(n) = new {
        for a in &n.networks {
            addresses.insert((a.network_id.clone(), a.address.addr), n.id.clone());
        }
    }
}

impl StoreState {
    /// Status of every service from one pass over the tasks.
    pub fn service_statuses(&self) -> BTreeMap<ServiceId, ServiceStatus> {
        let state = self;
        state
            .services
            .iter()
            .map(|(id, svc)| {
                let mut st = state.counts.get(id).cloned().unwrap_or_default();
                desired(svc, &mut st);
                (id.clone(), st)
            })
            .collect()
    }

    /// `service_statuses` for one service (what a single read shows), without a map of all.
    pub fn service_status(&self, id: &ServiceId) -> Option<ServiceStatus> {
        let svc = self.services.get(id)?;
        let mut st = self.counts.get(id).cloned().unwrap_or_default();
        desired(svc, &mut st);
        Some(st)
    }

    /// Rebuilds derived indexes (call after deserializing a snapshot), and shares one spec
    /// again between the tasks of one service version: decoding gave each its own copy, where
    /// applying their batches had given them one.
    pub fn rebuild_indexes(&mut self) {
        let mut shared: std::collections::HashMap<
            (ServiceId, u64),
            std::sync::Arc<crate::spec::TaskSpec>,
        > = Default::default();
        for t in self.tasks.values_mut() {
            match shared.entry((t.service_id.clone(), t.spec_version)) {
                std::collections::hash_map::Entry::Occupied(e) => {
                    if **e.get() == *t.spec {
                        t.spec = e.get().clone();
                    }
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(t.spec.clone());
                }
            }
        }
        self.service_names = self
            .services
            .values()
            .map(|s| (s.spec.name.clone(), s.id.clone()))
            .collect();
        self.addresses = self
            .tasks
            .values()
            .flat_map(|t| {
                t.networks
                    .iter()
                    .map(|a| ((a.network_id.clone(), a.address.addr), t.id.clone()))
            })
            .collect();
        self.vips = self
            .services
            .values()
            .flat_map(|s| {
                s.endpoint
                    .virtual_ips
                    .iter()
                    .map(|v| ((v.network_id.clone(), v.addr.addr), s.id.clone()))
            })
            .collect();
        self.updating = self
            .services
            .values()
            .filter(|s| is_updating(s))
            .map(|s| s.id.clone())
            .collect();
        self.by_node.clear();
        self.counts.clear();
        let mut tasks = std::mem::take(&mut self.tasks);
        for (id, t) in tasks.iter_mut() {
            t.id = id.clone();
            self.share_ids(t);
            index_node(&mut self.by_node, id, None, t.node_id.as_ref());
            crate::objects::count_task(&mut self.counts, None, Some(t));
        }
        self.tasks = tasks;
    }

    /// Points a task's service and node ids at the stored service's and node's (ids are
    /// shared strings): a hundred thousand tasks then hold one copy of each id, not one each.
    fn share_ids(&self, t: &mut Task) {
        if let Some((k, _)) = self.services.get_key_value(&t.service_id) {
            t.service_id = k.clone();
        }
        if let Some(n) = &t.node_id {
            if let Some((k, _)) = self.nodes.get_key_value(n) {
                t.node_id = Some(k.clone());
            }
        }
    }

    /// The node id as stored, shared (see [`Self::share_ids`]), or `id` itself.
    pub(crate) fn shared_node_id(&self, id: &NodeId) -> NodeId {
        self.nodes
            .get_key_value(id)
            .map_or_else(|| id.clone(), |(k, _)| k.clone())
    }

    /// The tasks assigned to `node`, in id order.
    pub fn tasks_on<'a>(&'a self, node: &NodeId) -> impl Iterator<Item = &'a Task> + 'a {
        self.by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|id| self.tasks.get(id).map(|t| &**t))
    }

    /// The service whose virtual IP `addr` is on network `net`, if any.
    pub fn vip_holder(&self, net: &NetworkId, addr: Ipv4Addr) -> Option<&ServiceId> {
        self.vips.get(&(net.clone(), addr))
    }

    /// Every virtual IP on `net`.
    pub fn vips_on<'a>(&'a self, net: &'a NetworkId) -> impl Iterator<Item = Ipv4Addr> + 'a {
        self.vips
            .range((net.clone(), Ipv4Addr::UNSPECIFIED)..=(net.clone(), Ipv4Addr::BROADCAST))
            .map(|((_, a), _)| *a)
    }

    /// Services in an active rolling update or rollback.
    pub fn updating_services(&self) -> &std::collections::BTreeSet<ServiceId> {
        &self.updating
    }

    /// The task holding `addr` on network `net`, if any.
    pub fn address_holder(&self, net: &NetworkId, addr: Ipv4Addr) -> Option<&TaskId> {
        self.addresses.get(&(net.clone(), addr))
    }

    /// Every address held on `net`, with its task.
    pub fn addresses_on<'a>(
        &'a self,
        net: &'a NetworkId,
    ) -> impl Iterator<Item = (Ipv4Addr, &'a TaskId)> + 'a {
        self.addresses
            .range((net.clone(), Ipv4Addr::UNSPECIFIED)..=(net.clone(), Ipv4Addr::BROADCAST))
            .map(|((_, a), t)| (*a, t))
    }

    pub fn network_by_name(&self, name: &str) -> Option<&Network> {
        self.networks.values().find(|n| n.spec.name == name)
    }

    /// Names of the services whose spec attaches to `net`.
    pub fn services_using(&self, net: &NetworkId) -> Vec<String> {
        self.services
            .values()
            .filter(|s| {
                s.spec
                    .task
                    .networks
                    .iter()
                    .any(|a| a.target == net.as_str())
            })
            .map(|s| s.spec.name.clone())
            .collect()
    }

    pub fn service_by_name(&self, name: &str) -> Option<&Service> {
        self.service_names
            .get(name)
            .and_then(|id| self.services.get(id))
            .map(|s| &**s)
    }

    pub fn cluster(&self) -> Option<&Cluster> {
        self.clusters.values().next()
    }

    pub fn get(&self, kind: ObjectKind, id: &str) -> Option<Object> {
        match kind {
            ObjectKind::Cluster => self.clusters.get(id).cloned().map(Object::Cluster),
            ObjectKind::Node => self.nodes.get(id).cloned().map(Object::Node),
            ObjectKind::Service => self.services.get(id).cloned().map(Object::Service),
            ObjectKind::Task => self.tasks.get(id).map(|t| Object::Task(Task::clone(t))),
            ObjectKind::Repository => self.repositories.get(id).cloned().map(Object::Repository),
            ObjectKind::RegistryEndpoint => self
                .registry_endpoints
                .get(id)
                .cloned()
                .map(Object::RegistryEndpoint),
            ObjectKind::Network => self.networks.get(id).cloned().map(Object::Network),
        }
    }

    /// Whether this state already holds what `batch` writes: every op creates, replaces or
    /// puts an object that is stored with exactly that content (its meta aside). Used when a
    /// write is retried after an attempt whose outcome is unknown: a retry refused with
    /// "already exists" or "out of sequence" may be refused because of its own first
    /// attempt. Returns the objects as stored (one for a single-op batch, as a write does),
    /// or `None` when any op is not visibly applied or is of a kind that cannot be told apart.
    pub fn holds_effect_of(&self, batch: &WriteBatch) -> Option<Vec<Object>> {
        let bare = |o: &Object| {
            let mut o = o.clone();
            o.clear_derived();
            *o.meta_mut() = Meta::default();
            o
        };
        let mut stored = Vec::with_capacity(batch.ops.len());
        for op in &batch.ops {
            let (Op::Create(o) | Op::Update(o) | Op::Put(o)) = op else {
                return None;
            };
            let cur = self.get(o.kind(), o.id())?;
            if bare(&cur) != bare(o) {
                return None;
            }
            stored.push(cur);
        }
        Some(if stored.len() == 1 {
            stored
        } else {
            Vec::new()
        })
    }

    pub fn count(&self) -> usize {
        self.clusters.len()
            + self.nodes.len()
            + self.services.len()
            + self.tasks.len()
            + self.repositories.len()
            + self.registry_endpoints.len()
            + self.networks.len()
    }

    fn insert(&mut self, obj: Object) -> Option<Object> {
        match obj {
            Object::Cluster(o) => self
                .clusters
                .insert(o.id.to_string(), o)
                .map(Object::Cluster),
            Object::Node(o) => self.nodes.insert(o.id.clone(), o).map(Object::Node),
            Object::Service(o) => {
                let id = o.id.clone();
                let old = self.services.insert(id.clone(), o);
                let new = &self.services[&id];
                if let Some(prev) = &old {
                    if prev.spec.name != new.spec.name {
                        self.service_names.remove(&prev.spec.name);
                    }
                }
                self.service_names.insert(new.spec.name.clone(), id);
                index_service(
                    &mut self.vips,
                    &mut self.updating,
                    old.as_deref(),
                    Some(new),
                );
                old.map(Object::Service)
            }
            Object::Task(mut o) => {
                self.share_ids(&mut o);
                let id = o.id.clone();
                let old = self.tasks.insert(id.clone(), Box::new(o));
                index_task(
                    &mut self.addresses,
                    &mut self.by_node,
                    &mut self.counts,
                    old.as_deref(),
                    self.tasks.get(&id).map(|t| &**t),
                );
                old.map(|t| Object::Task(*t))
            }
            Object::Network(o) => self.networks.insert(o.id.clone(), o).map(Object::Network),
            Object::Repository(o) => self
                .repositories
                .insert(o.id.clone(), o)
                .map(Object::Repository),
            Object::RegistryEndpoint(o) => self
                .registry_endpoints
                .insert(o.id.clone(), o)
                .map(Object::RegistryEndpoint),
        }
    }

    fn remove(&mut self, kind: ObjectKind, id: &str) -> Option<Object> {
        match kind {
            ObjectKind::Cluster => self.clusters.remove(id).map(Object::Cluster),
            ObjectKind::Node => self.nodes.remove(id).map(Object::Node),
            ObjectKind::Service => {
                let s = self.services.remove(id)?;
                if self.service_names.get(&s.spec.name) == Some(&s.id) {
                    self.service_names.remove(&s.spec.name);
                }
                index_service(&mut self.vips, &mut self.updating, Some(&s), None);
                Some(Object::Service(s))
            }
            ObjectKind::Task => {
                let t = self.tasks.remove(id)?;
                index_task(
                    &mut self.addresses,
                    &mut self.by_node,
                    &mut self.counts,
                    Some(&t),
                    None,
                );
                Some(Object::Task(*t))
            }
            ObjectKind::Network => self.networks.remove(id).map(Object::Network),
            ObjectKind::Repository => self.repositories.remove(id).map(Object::Repository),
            ObjectKind::RegistryEndpoint => self
                .registry_endpoints
                .remove(id)
                .map(Object::RegistryEndpoint),
        }
    }
}

mod apply;
mod checks;
#[cfg(test)]
mod network_tests;
#[cfg(test)]
mod tests;

/// The replicas (replicated) or completions (jobs) a service wants; global services count
/// their live tasks (already in `st`).
fn desired(svc: &Service, st: &mut ServiceStatus) {
    match svc.spec.mode {
        crate::spec::ServiceMode::Replicated { replicas } => st.desired_tasks = replicas,
        crate::spec::ServiceMode::ReplicatedJob {
            total_completions, ..
        } => st.desired_tasks = total_completions,
        crate::spec::ServiceMode::Global | crate::spec::ServiceMode::GlobalJob => {}
    }
}
