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
    pub services: BTreeMap<ServiceId, Service>,
    pub tasks: BTreeMap<TaskId, Task>,
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
}

impl StoreState {
    /// Status of every service from one pass over the tasks.
    pub fn service_statuses(&self) -> BTreeMap<ServiceId, ServiceStatus> {
        let state = self;
        let mut out: BTreeMap<ServiceId, ServiceStatus> = BTreeMap::new();
        for t in state.tasks.values() {
            if state.services.contains_key(&t.service_id) {
                out.entry(t.service_id.clone()).or_default().count(t);
            }
        }
        for (id, svc) in &state.services {
            desired(svc, out.entry(id.clone()).or_default());
        }
        out
    }

    /// `service_statuses` for one service (what a single read shows), without a map of all.
    pub fn service_status(&self, id: &ServiceId) -> Option<ServiceStatus> {
        let svc = self.services.get(id)?;
        let mut st = ServiceStatus::default();
        for t in self.tasks.values().filter(|t| &t.service_id == id) {
            st.count(t);
        }
        desired(svc, &mut st);
        Some(st)
    }

    /// Rebuilds derived indexes (call after deserializing a snapshot).
    pub fn rebuild_indexes(&mut self) {
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

    fn index_service(&mut self, old: Option<&Service>, new: Option<&Service>) {
        if let Some(o) = old {
            for v in &o.endpoint.virtual_ips {
                let k = (v.network_id.clone(), v.addr.addr);
                if self.vips.get(&k) == Some(&o.id) {
                    self.vips.remove(&k);
                }
            }
        }
        if let Some(n) = new {
            for v in &n.endpoint.virtual_ips {
                self.vips
                    .insert((v.network_id.clone(), v.addr.addr), n.id.clone());
            }
        }
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
    }

    pub fn cluster(&self) -> Option<&Cluster> {
        self.clusters.values().next()
    }

    pub fn get(&self, kind: ObjectKind, id: &str) -> Option<Object> {
        match kind {
            ObjectKind::Cluster => self.clusters.get(id).cloned().map(Object::Cluster),
            ObjectKind::Node => self.nodes.get(id).cloned().map(Object::Node),
            ObjectKind::Service => self.services.get(id).cloned().map(Object::Service),
            ObjectKind::Task => self.tasks.get(id).cloned().map(Object::Task),
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

    fn index_task(&mut self, old: Option<&Task>, new: Option<&Task>) {
        if let Some(o) = old {
            for a in &o.networks {
                let k = (a.network_id.clone(), a.address.addr);
                if self.addresses.get(&k) == Some(&o.id) {
                    self.addresses.remove(&k);
                }
            }
        }
        if let Some(n) = new {
            for a in &n.networks {
                self.addresses
                    .insert((a.network_id.clone(), a.address.addr), n.id.clone());
            }
        }
    }

    fn insert(&mut self, obj: Object) -> Option<Object> {
        match obj {
            Object::Cluster(o) => self
                .clusters
                .insert(o.id.to_string(), o)
                .map(Object::Cluster),
            Object::Node(o) => self.nodes.insert(o.id.clone(), o).map(Object::Node),
            Object::Service(o) => {
                let old = self.services.insert(o.id.clone(), o.clone());
                if let Some(prev) = &old {
                    if prev.spec.name != o.spec.name {
                        self.service_names.remove(&prev.spec.name);
                    }
                }
                self.service_names.insert(o.spec.name.clone(), o.id.clone());
                self.index_service(old.as_ref(), Some(&o));
                old.map(Object::Service)
            }
            Object::Task(o) => {
                let old = self.tasks.insert(o.id.clone(), o.clone());
                self.index_task(old.as_ref(), Some(&o));
                old.map(Object::Task)
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
                self.index_service(Some(&s), None);
                Some(Object::Service(s))
            }
            ObjectKind::Task => {
                let t = self.tasks.remove(id)?;
                self.index_task(Some(&t), None);
                Some(Object::Task(t))
            }
            ObjectKind::Network => self.networks.remove(id).map(Object::Network),
            ObjectKind::Repository => self.repositories.remove(id).map(Object::Repository),
            ObjectKind::RegistryEndpoint => self
                .registry_endpoints
                .remove(id)
                .map(Object::RegistryEndpoint),
        }
    }

    /// Store-level network rules: network names, subnets and VXLAN ids are unique, and no
    /// two tasks hold one address on one network (whoever computed the write).
    fn check_network_rules(&self, obj: &Object) -> Result<(), StoreError> {
        match obj {
            Object::Network(n) => {
                for o in self.networks.values().filter(|o| o.id != n.id) {
                    if o.spec.name == n.spec.name {
                        return Err(StoreError::NameConflict {
                            kind: "network".into(),
                            name: n.spec.name.clone(),
                            id: o.id.to_string(),
                        });
                    }
                    if o.subnet.overlaps(&n.subnet) {
                        return Err(StoreError::Conflict(format!(
                            "subnet {} overlaps subnet {} of network {}; choose another --subnet",
                            n.subnet, o.subnet, o.spec.name
                        )));
                    }
                    if o.vni == n.vni {
                        return Err(StoreError::Conflict(format!(
                            "VXLAN id {} is already used by network {}",
                            n.vni, o.spec.name
                        )));
                    }
                }
                Ok(())
            }
            Object::Task(t) => {
                for a in &t.networks {
                    let Some(net) = self.networks.get(&a.network_id) else {
                        return Err(StoreError::NotFound {
                            kind: "network".into(),
                            id: a.network_id.to_string(),
                        });
                    };
                    if !net.subnet.contains(a.address.addr) {
                        return Err(StoreError::Conflict(format!(
                            "address {} of task {} is outside network {}'s subnet {}",
                            a.address, t.id, net.spec.name, net.subnet
                        )));
                    }
                    if let Some(other) = self.address_holder(&a.network_id, a.address.addr) {
                        if *other != t.id {
                            return Err(StoreError::Conflict(format!(
                                "address {} on network {} is held by task {other}",
                                a.address.addr, net.spec.name
                            )));
                        }
                    }
                    if let Some(svc) = self.vip_holder(&a.network_id, a.address.addr) {
                        return Err(StoreError::Conflict(format!(
                            "address {} on network {} is the virtual IP of service {svc}",
                            a.address.addr, net.spec.name
                        )));
                    }
                }
                Ok(())
            }
            Object::Service(s) => self.check_endpoint(s),
            _ => Ok(()),
        }
    }

    /// A service's virtual IPs are on its networks and held by nobody else; its ingress
    /// ports (which every host binds) are published by no other service, and none of its
    /// host-mode ports is another service's ingress port.
    fn check_endpoint(&self, s: &Service) -> Result<(), StoreError> {
        use crate::endpoint::PublishMode;
        for v in &s.endpoint.virtual_ips {
            let Some(net) = self.networks.get(&v.network_id) else {
                return Err(StoreError::NotFound {
                    kind: "network".into(),
                    id: v.network_id.to_string(),
                });
            };
            if !net.subnet.contains(v.addr.addr) {
                return Err(StoreError::Conflict(format!(
                    "virtual IP {} of service {} is outside network {}'s subnet {}",
                    v.addr, s.spec.name, net.spec.name, net.subnet
                )));
            }
            if let Some(t) = self.address_holder(&v.network_id, v.addr.addr) {
                return Err(StoreError::Conflict(format!(
                    "address {} on network {} is held by task {t}",
                    v.addr.addr, net.spec.name
                )));
            }
            if let Some(o) = self.vip_holder(&v.network_id, v.addr.addr) {
                if *o != s.id {
                    return Err(StoreError::Conflict(format!(
                        "address {} on network {} is the virtual IP of service {o}",
                        v.addr.addr, net.spec.name
                    )));
                }
            }
        }
        if s.endpoint.ports.is_empty() {
            return Ok(());
        }
        for o in self.services.values().filter(|o| o.id != s.id) {
            for p in &s.endpoint.ports {
                let clash = o.endpoint.ports.iter().any(|q| {
                    q.published == p.published
                        && q.protocol == p.protocol
                        && (q.mode == PublishMode::Ingress || p.mode == PublishMode::Ingress)
                });
                if clash {
                    return Err(StoreError::Conflict(format!(
                        "port {}/{} is already published by service {}; choose another published port",
                        p.published,
                        p.protocol.as_str(),
                        o.spec.name
                    )));
                }
            }
        }
        Ok(())
    }

    fn check_name(&self, obj: &Object) -> Result<(), StoreError> {
        if let Object::Service(s) = obj {
            if let Some(other) = self.service_names.get(&s.spec.name) {
                if *other != s.id {
                    return Err(StoreError::NameConflict {
                        kind: "service".into(),
                        name: s.spec.name.clone(),
                        id: other.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    fn apply_op(&mut self, op: &Op, index: u64, now: u64) -> Result<Option<Change>, StoreError> {
        let not_found = |kind: ObjectKind, id: &str| StoreError::NotFound {
            kind: kind.as_str().into(),
            id: id.into(),
        };
        match op {
            Op::Create(obj) => {
                if self.get(obj.kind(), obj.id()).is_some() {
                    return Err(StoreError::Exists {
                        kind: obj.kind().as_str().into(),
                        id: obj.id().into(),
                    });
                }
                self.check_name(obj)?;
                self.check_network_rules(obj)?;
                let mut obj = obj.clone();
                obj.clear_derived();
                let m = obj.meta_mut();
                m.version = index;
                m.created_at = now;
                m.updated_at = now;
                self.insert(obj.clone());
                Ok(Some(Change {
                    index,
                    action: Action::Created,
                    object: obj,
                    status_only: false,
                }))
            }
            Op::Update(obj) | Op::Put(obj) => {
                let current = self.get(obj.kind(), obj.id());
                let conditional = matches!(op, Op::Update(_));
                let created_at = match &current {
                    None if conditional => return Err(not_found(obj.kind(), obj.id())),
                    None => now,
                    Some(cur) => {
                        if conditional && cur.meta().version != obj.meta().version {
                            return Err(StoreError::VersionMismatch {
                                kind: obj.kind().as_str().into(),
                                id: obj.id().into(),
                                expected: obj.meta().version,
                                actual: cur.meta().version,
                            });
                        }
                        cur.meta().created_at
                    }
                };
                self.check_name(obj)?;
                self.check_network_rules(obj)?;
                let mut obj = obj.clone();
                obj.clear_derived();
                let m = obj.meta_mut();
                m.version = index;
                m.created_at = created_at;
                m.updated_at = now;
                self.insert(obj.clone());
                Ok(Some(Change {
                    index,
                    action: if current.is_some() {
                        Action::Updated
                    } else {
                        Action::Created
                    },
                    object: obj,
                    status_only: false,
                }))
            }
            Op::TaskStatus { id, status } => Ok(self.task_change(id, index, now, true, |t| {
                let forward = t.status.state.can_advance_to(status.state);
                // A note on the same state: why a task is still pending, or how far its
                // image pull got while preparing. A preparing note keeps the time the task
                // entered the state (`service ps` shows how long it has been preparing).
                let note = t.status.state == status.state
                    && (t.status.state <= TaskState::Pending
                        || t.status.state == TaskState::Preparing)
                    && t.status.message != status.message;
                if forward || note {
                    let since = t.status.timestamp;
                    t.status = status.clone();
                    if note && status.state == TaskState::Preparing {
                        t.status.timestamp = since;
                    }
                    true
                } else {
                    false
                }
            })),
            Op::TaskDesired { id, desired } => Ok(self.task_change(id, index, now, false, |t| {
                if *desired > t.desired_state {
                    t.desired_state = *desired;
                    true
                } else {
                    false
                }
            })),
            Op::AssignTask { id, node_id } => Ok(self.task_change(id, index, now, false, |t| {
                if t.status.state == TaskState::Pending && t.node_id.is_none() {
                    t.assign(node_id.clone(), now);
                    true
                } else {
                    false
                }
            })),
            // `apply` hands this function expanded ops only.
            Op::CreateTasks(_) => unreachable!("CreateTasks is expanded before it is applied"),
            Op::Delete { kind, id, version } => {
                let cur = self.get(*kind, id).ok_or_else(|| not_found(*kind, id))?;
                if let Some(v) = version {
                    if cur.meta().version != *v {
                        return Err(StoreError::VersionMismatch {
                            kind: kind.as_str().into(),
                            id: id.clone(),
                            expected: *v,
                            actual: cur.meta().version,
                        });
                    }
                }
                if let Object::Network(n) = &cur {
                    let mut by = self.services_using(&n.id);
                    if by.is_empty() {
                        if let Some((_, t)) = self.addresses_on(&n.id).next() {
                            by.push(format!("task {t}"));
                        }
                    }
                    if !by.is_empty() {
                        return Err(StoreError::InUse {
                            kind: "network".into(),
                            id: n.spec.name.clone(),
                            by: by.join(", "),
                        });
                    }
                }
                self.remove(*kind, id);
                // The removed object's last update is its removal (event times).
                let mut cur = cur;
                cur.meta_mut().updated_at = now;
                Ok(Some(Change {
                    index,
                    action: Action::Deleted,
                    object: cur,
                    status_only: false,
                }))
            }
        }
    }

    /// Applies `f` to a stored task; when it reports a change, bumps the version.
    fn task_change(
        &mut self,
        id: &TaskId,
        index: u64,
        now: u64,
        status_only: bool,
        f: impl FnOnce(&mut Task) -> bool,
    ) -> Option<Change> {
        let t = self.tasks.get_mut(id)?;
        if !f(t) {
            return None;
        }
        t.meta.version = index;
        t.meta.updated_at = now;
        Some(Change {
            index,
            action: Action::Updated,
            object: Object::Task(t.clone()),
            status_only,
        })
    }

    /// Applies one single-object op, recording its change and (in a `fallible` batch) the
    /// previous value for rollback.
    fn apply_logged(
        &mut self,
        op: &Op,
        index: u64,
        now: u64,
        fallible: bool,
        undo: &mut Vec<(ObjectKind, String, Option<Object>)>,
        changes: &mut Vec<Change>,
    ) -> Result<(), StoreError> {
        let before = fallible.then(|| {
            let (kind, id) = match op {
                Op::Create(o) | Op::Update(o) | Op::Put(o) => (o.kind(), o.id().to_string()),
                Op::Delete { kind, id, .. } => (*kind, id.clone()),
                Op::TaskStatus { id, .. }
                | Op::TaskDesired { id, .. }
                | Op::AssignTask { id, .. } => (ObjectKind::Task, id.to_string()),
                Op::CreateTasks(_) => unreachable!("CreateTasks is expanded by `apply`"),
            };
            let prev = self.get(kind, &id);
            (kind, id, prev)
        });
        if let Some(c) = self.apply_op(op, index, now)? {
            undo.extend(before);
            changes.push(c);
        }
        Ok(())
    }

    /// Applies `batch` at Raft index `index`: all ops or none. Returns the changes in order.
    pub fn apply(&mut self, batch: &WriteBatch, index: u64) -> Result<Vec<Change>, StoreError> {
        let mut changes: Vec<Change> = Vec::with_capacity(batch.ops.len());
        // Undo log: (kind, id, previous value) in application order.
        let mut undo: Vec<(ObjectKind, String, Option<Object>)> = Vec::new();
        // Task ops never fail: a batch of only those needs no undo log (no copy per op).
        let fallible = batch.ops.iter().any(|op| {
            matches!(
                op,
                Op::Create(_) | Op::Update(_) | Op::Put(_) | Op::Delete { .. } | Op::CreateTasks(_)
            )
        });
        let mut applied = Ok(());
        for op in &batch.ops {
            applied = match op {
                // Exactly the `Create` of each of its tasks, in order.
                Op::CreateTasks(b) => b.items.iter().try_for_each(|item| {
                    let create = Op::Create(Object::Task(b.task(item)));
                    self.apply_logged(
                        &create,
                        index,
                        batch.now_ms,
                        fallible,
                        &mut undo,
                        &mut changes,
                    )
                }),
                op => self.apply_logged(op, index, batch.now_ms, fallible, &mut undo, &mut changes),
            };
            if applied.is_err() {
                break;
            }
        }
        if let Err(e) = applied {
            for (kind, id, prev) in undo.into_iter().rev() {
                self.remove(kind, &id);
                if let Some(p) = prev {
                    self.insert(p);
                }
            }
            return Err(e);
        }
        Ok(changes)
    }
}

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
