//! Rolling updates and rollbacks, read entirely from the store: which slots still run the old
//! spec, which replacements are not yet running, the failure action and the update status.

use super::*;

/// An update in progress, as read from the store (shared by replicated and global services).
pub(super) struct UpdateProgress<'a> {
    pub(super) rolling_back: bool,
    pub(super) ucfg: &'a UpdateConfig,
    /// Tasks this update created: current spec, created after it started.
    pub(super) updated: Vec<&'a Task>,
    /// Of those, live ones that do not run yet.
    pub(super) starting: usize,
    /// When the leader saw the most recent of them running (0: none yet).
    pub(super) last_running: u64,
}

impl<'a> UpdateProgress<'a> {
    pub(super) fn of(svc: &'a Service, tasks: &[&'a Task], cfg: &Config) -> Self {
        let status = svc.update_status.as_ref();
        let rolling_back = status.is_some_and(|s| s.state.is_rollback());
        // A rollback is paced by the rollback config of the spec rolled back from.
        let ucfg = if rolling_back {
            svc.previous_spec
                .as_ref()
                .map(|p| &p.rollback_config)
                .unwrap_or(&svc.spec.rollback_config)
        } else {
            &svc.spec.update_config
        };
        let started_at = status.map(|s| s.started_at).unwrap_or(0);
        let current = CurrentSpec::of(svc);
        let updated: Vec<&Task> = tasks
            .iter()
            .filter(|t| t.meta.created_at >= started_at && current.matches(t))
            .copied()
            .collect();
        let starting = updated
            .iter()
            .filter(|t| is_live(t) && t.status.state < TaskState::Running)
            .count();
        let last_running = updated
            .iter()
            .filter(|t| t.status.state == TaskState::Running)
            .map(|t| cfg.running_since.get(&t.id).copied().unwrap_or(cfg.now_ms))
            .max()
            .unwrap_or(0);
        UpdateProgress {
            rolling_back,
            ucfg,
            updated,
            starting,
            last_running,
        }
    }

    pub(super) fn parallelism(&self) -> usize {
        match self.ucfg.parallelism {
            0 => usize::MAX,
            n => n as usize,
        }
    }

    /// Nothing of the previous batch is in flight and `delay` has passed since it ran.
    pub(super) fn next_batch_due(&self, in_flight: usize, now: u64) -> bool {
        in_flight == 0
            && now
                >= self
                    .last_running
                    .saturating_add(self.ucfg.delay.as_millis() as u64)
    }
}

/// The op that records a new update state on a service, keeping when the update started.
pub(super) fn status_op(svc: &Service, state: UpdateState, message: String, now: u64) -> Op {
    let mut s = svc.clone();
    let done = matches!(
        state,
        UpdateState::Completed | UpdateState::RollbackCompleted
    );
    s.update_status = Some(Box::new(UpdateStatus {
        state,
        started_at: svc
            .update_status
            .as_ref()
            .map(|s| s.started_at)
            .unwrap_or(now),
        completed_at: if done { now } else { 0 },
        message,
    }));
    Op::Update(Object::Service(Box::new(s)))
}

/// Applies the update's failure action when too many of the tasks it created failed. Returns
/// true when the update stopped here (paused or turned into a rollback).
pub(super) fn failure_action(
    state: &StoreState,
    svc: &Service,
    p: &UpdateProgress,
    total: usize,
    now: u64,
    ops: &mut Vec<Op>,
) -> bool {
    let failed: Vec<&Task> = p
        .updated
        .iter()
        .filter(|t| matches!(t.status.state, TaskState::Failed | TaskState::Rejected))
        .copied()
        .collect();
    if failed.is_empty() || failed.len() as f32 / total.max(1) as f32 <= p.ucfg.max_failure_ratio {
        return false;
    }
    let f = failed
        .iter()
        .max_by_key(|t| t.status.timestamp)
        .expect("non-empty");
    let node = f
        .node_id
        .as_ref()
        .and_then(|n| state.nodes.get(n))
        .map(|n| n.description.hostname.clone())
        .unwrap_or_default();
    let why = format!(
        "task {} on node {} failed: {}",
        f.id.short(),
        if node.is_empty() { "?" } else { &node },
        if f.status.err.is_empty() {
            &f.status.message
        } else {
            &f.status.err
        }
    );
    match (p.ucfg.failure_action, p.rolling_back) {
        (FailureAction::Continue, _) => false,
        (FailureAction::Rollback, false) if svc.previous_spec.is_some() => {
            let mut s = svc.clone();
            let prev = s.previous_spec.as_deref().cloned().expect("checked");
            s.replace_spec(prev, now, true);
            // The old spec's ports and networks: its endpoint as it was, where still free
            // (otherwise the current one stays; an operator's rollback says why).
            if let Ok(e) = crate::endpoint::allocate(state, &s.id, &s.spec, &s.endpoint) {
                s.endpoint = e.into();
            }
            if let Some(st) = s.update_status.as_mut() {
                st.message = format!("update rolled back: {why}");
            }
            ops.push(Op::Update(Object::Service(Box::new(s))));
            true
        }
        (_, false) => {
            let msg = format!("update paused: {why}");
            ops.push(status_op(svc, UpdateState::Paused, msg, now));
            true
        }
        (_, true) => {
            let msg = format!("rollback paused: {why}");
            ops.push(status_op(svc, UpdateState::RollbackPaused, msg, now));
            true
        }
    }
}

/// Paces the replacement of tasks whose spec differs from the service's (rolling update or
/// rollback), applies the failure action and keeps the service's update status. Decisions are
/// derived from the tasks alone, so a new leader continues an update where it stood and no slot
/// is updated twice.
#[allow(clippy::too_many_arguments)]
pub(super) fn rolling_update(
    state: &StoreState,
    svc: &Service,
    tasks: &[&Task],
    kept: &BTreeMap<u64, &Task>,
    start_first_pairs: &BTreeSet<u64>,
    draining: &mut BTreeSet<u64>,
    refills: usize,
    cfg: &Config,
    ops: &mut Vec<Op>,
) {
    let now = cfg.now_ms;
    let current = CurrentSpec::of(svc);
    let dirty: Vec<(u64, &Task)> = kept
        .iter()
        .filter(|(_, t)| !t.status.state.is_terminal() && !current.matches(t))
        .map(|(s, t)| (*s, *t))
        .collect();
    match svc.update_status.as_ref().map(|s| s.state) {
        Some(s) if s.is_paused() => return,
        Some(UpdateState::Completed | UpdateState::RollbackCompleted) | None
            if dirty.is_empty() =>
        {
            return
        }
        _ => {}
    }
    let p = UpdateProgress::of(svc, tasks, cfg);
    if failure_action(state, svc, &p, kept.len(), now, ops) {
        return;
    }
    let in_flight = p.starting + draining.len() + start_first_pairs.len() + refills;
    if dirty.is_empty() && in_flight == 0 {
        // Done once the last replacement has run for the monitor period.
        if now
            >= p.last_running
                .saturating_add(p.ucfg.monitor.as_millis() as u64)
        {
            let (st, msg) = if p.rolling_back {
                (UpdateState::RollbackCompleted, "rollback completed")
            } else {
                (UpdateState::Completed, "update completed")
            };
            ops.push(status_op(svc, st, msg.into(), now));
        }
        return;
    }
    if svc.update_status.is_none() {
        ops.push(status_op(
            svc,
            UpdateState::Updating,
            "update in progress".into(),
            now,
        ));
    }
    if !p.next_batch_due(in_flight, now) {
        return;
    }
    for (slot, t) in dirty.into_iter().take(p.parallelism()) {
        match p.ucfg.order {
            UpdateOrder::StopFirst => {
                ops.push(desired(t, TaskState::Shutdown));
                draining.insert(slot);
            }
            UpdateOrder::StartFirst => {
                ops.push(Op::Create(Object::Task(new_task(svc, slot, None, 0, now))));
            }
        }
    }
}
