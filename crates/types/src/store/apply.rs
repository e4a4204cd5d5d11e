//! Applying a write batch: each operation checked and applied in order, all or nothing, with
//! the changes it made for the change feed.

use super::*;

impl StoreState {
    /// Checks `obj` against the store's rules (unique names, network rules), stamps its
    /// version and times, stores it and returns what was stored.
    fn checked_insert(
        &mut self,
        obj: &Object,
        index: u64,
        created_at: u64,
        now: u64,
    ) -> Result<Object, StoreError> {
        self.check_name(obj)?;
        self.check_network_rules(obj)?;
        let mut obj = obj.clone();
        obj.clear_derived();
        let m = obj.meta_mut();
        m.version = index;
        m.created_at = created_at;
        m.updated_at = now;
        self.insert(obj.clone());
        Ok(obj)
    }

    pub(super) fn apply_op(
        &mut self,
        op: &Op,
        index: u64,
        now: u64,
    ) -> Result<Option<Change>, StoreError> {
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
                let obj = self.checked_insert(obj, index, now, now)?;
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
                let obj = self.checked_insert(obj, index, created_at, now)?;
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
            Op::AssignTask { id, node_id } => {
                let node_id = self.shared_node_id(node_id);
                Ok(self.task_change(id, index, now, false, |t| {
                    if t.status.state == TaskState::Pending && t.node_id.is_none() {
                        t.assign(node_id, now);
                        true
                    } else {
                        false
                    }
                }))
            }
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
    pub(super) fn task_change(
        &mut self,
        id: &TaskId,
        index: u64,
        now: u64,
        status_only: bool,
        f: impl FnOnce(&mut Task) -> bool,
    ) -> Option<Change> {
        let t = self.tasks.get_mut(id)?;
        // The only in-place node change is an assignment (`AssignTask` takes unassigned
        // tasks only); whole-object writes re-index in `put`.
        let unassigned = t.node_id.is_none();
        let counted = ServiceStatus::of(t);
        let changed = f(t);
        let service = &t.service_id;
        crate::objects::shift_count(&mut self.counts, service, &counted, &ServiceStatus::of(t));
        if !changed {
            return None;
        }
        if unassigned {
            super::index_node(&mut self.by_node, id, None, t.node_id.as_ref());
        }
        t.meta.version = index;
        t.meta.updated_at = now;
        Some(Change {
            index,
            action: Action::Updated,
            object: Object::Task(Task::clone(t)),
            status_only,
        })
    }

    /// Applies one single-object op, recording its change and (in a `fallible` batch) the
    /// previous value for rollback.
    pub(super) fn apply_logged(
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
