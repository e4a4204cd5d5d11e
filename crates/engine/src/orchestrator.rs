//! The orchestrators as pure functions: from the store's state to the store ops that move it
//! towards the services' specs. Replicated services own slots, global services own nodes, jobs
//! run to completion; the restart supervisor replaces dead tasks per the restart policy, and
//! the reaper keeps a bounded task history. Running it twice on the same state yields no new
//! work the second time (idempotent), so a new leader simply runs it again.

use crate::constraint::node_matches as node_matches_constraints;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use swarm_types::ids::{NodeId, ServiceId, TaskId};
use swarm_types::objects::{
    NodeState, Object, ObjectKind, Service, Task, TaskStatus, UpdateState, UpdateStatus,
};
use swarm_types::spec::{
    Availability, FailureAction, RestartCondition, ServiceMode, UpdateConfig, UpdateOrder,
};
use swarm_types::store::{Op, StoreState};
use swarm_types::task::TaskState;

/// Knobs of a reconciliation pass.
#[derive(Clone, Debug)]
pub struct Config {
    pub now_ms: u64,
    /// How long a node must have been down before its tasks are replaced elsewhere.
    pub node_down_grace_ms: u64,
    /// Terminal tasks kept per slot (replicated) or per node (global).
    pub task_history_limit: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            now_ms: 0,
            node_down_grace_ms: 2_000,
            task_history_limit: 5,
        }
    }
}

/// Whether a task still occupies its slot (it is meant to run, whatever it is doing now).
pub fn is_live(t: &Task) -> bool {
    t.desired_state <= TaskState::Running
}

fn new_task(svc: &Service, slot: u64, node: Option<&NodeId>, restarts: u64, now: u64) -> Task {
    let (state, message) = match node {
        // Global tasks are created on their node.
        Some(_) => (TaskState::Assigned, "assigned to its node (global service)"),
        None => (TaskState::Pending, "pending task scheduling"),
    };
    Task {
        id: TaskId::generate(),
        meta: Default::default(),
        service_id: svc.id.clone(),
        slot,
        node_id: node.cloned(),
        service_name: svc.spec.name.clone(),
        spec_version: svc.meta.version,
        spec: svc.spec.task.clone(),
        desired_state: TaskState::Running,
        status: TaskStatus {
            state,
            timestamp: now,
            message: message.into(),
            ..Default::default()
        },
        restarts,
    }
}

/// Why a live task must be replaced (or stopped) regardless of its own health.
fn node_problem(
    state: &StoreState,
    t: &Task,
    cfg: &Config,
    global_constraints: Option<&[String]>,
) -> Option<&'static str> {
    let node_id = t.node_id.as_ref()?;
    let Some(node) = state.nodes.get(node_id) else {
        return Some("node was removed");
    };
    if node.status.state == NodeState::Down
        && cfg.now_ms.saturating_sub(node.meta.updated_at) >= cfg.node_down_grace_ms
    {
        return Some("node is down");
    }
    if node.spec.availability == Availability::Drain {
        return Some("node is drained");
    }
    if global_constraints.is_some_and(|c| !node_matches_constraints(node, c)) {
        return Some("node no longer satisfies the constraints");
    }
    None
}

/// Decision of the restart supervisor for a dead task.
enum Restart {
    /// Replace it now.
    Now,
    /// Replace it once the restart delay has passed.
    Later,
    /// Leave the slot with the dead task (policy says no more restarts).
    Never,
}

fn restart_decision(svc: &Service, t: &Task, cfg: &Config) -> Restart {
    let p = &t.spec.restart_policy;
    let job = matches!(
        svc.spec.mode,
        ServiceMode::ReplicatedJob { .. } | ServiceMode::GlobalJob
    );
    let failed = matches!(t.status.state, TaskState::Failed | TaskState::Rejected)
        || (t.status.state == TaskState::Orphaned);
    let wanted = match p.condition {
        RestartCondition::None => false,
        RestartCondition::OnFailure => failed,
        // A job that completed is done even under "any".
        RestartCondition::Any => failed || !job,
    };
    if !wanted {
        return Restart::Never;
    }
    if p.max_attempts > 0 && t.restarts >= p.max_attempts {
        let window = p.window.as_millis() as u64;
        // With a window, attempts older than the window no longer count.
        let expired = window > 0 && cfg.now_ms.saturating_sub(t.meta.created_at) > window;
        if !expired {
            return Restart::Never;
        }
    }
    let delay = restart_delay(p.delay.as_millis() as u64, t.restarts);
    if cfg.now_ms >= t.status.timestamp.saturating_add(delay) {
        Restart::Now
    } else {
        Restart::Later
    }
}

/// Exponential backoff on the restart delay: the delay doubles with each restart of the slot
/// (up to 32×), and never grows past one minute unless the configured delay itself is longer.
pub fn restart_delay(delay_ms: u64, restarts: u64) -> u64 {
    let backed_off = delay_ms.saturating_mul(1u64 << restarts.min(5));
    backed_off.min(delay_ms.max(60_000))
}

/// One reconciliation pass over every service. Returns ops to write through Raft.
pub fn reconcile(state: &StoreState, cfg: &Config) -> Vec<Op> {
    reconcile_some(state, cfg, None)
}

/// `reconcile_some`, with the new tasks already placed by the scheduler: they are created
/// assigned (or pending with the reason they cannot be placed), one Raft write per task
/// instead of a create and then an assignment. Only when the pass releases nothing (no task
/// is stopped or removed): the scheduler would otherwise count the load of tasks the same
/// pass is stopping, and place differently than after they stopped; those passes leave their
/// new tasks pending for the scheduler, as before.
pub fn reconcile_and_place(
    state: &StoreState,
    cfg: &Config,
    only: Option<&HashSet<ServiceId>>,
) -> Vec<Op> {
    let mut ops = reconcile_some(state, cfg, only);
    let releases = ops
        .iter()
        .any(|op| matches!(op, Op::TaskDesired { .. } | Op::Delete { .. }));
    if releases {
        return ops;
    }
    let new: Vec<&Task> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Create(Object::Task(t))
                if t.node_id.is_none() && t.status.state == TaskState::Pending =>
            {
                Some(t)
            }
            _ => None,
        })
        .collect();
    if new.is_empty() {
        return ops;
    }
    let plan = crate::scheduler::schedule_new(state, &new);
    let mut placed: HashMap<TaskId, NodeId> = plan.assignments.into_iter().collect();
    let mut unplaced: HashMap<TaskId, String> = plan.unplaced.into_iter().collect();
    for op in &mut ops {
        let Op::Create(Object::Task(t)) = op else {
            continue;
        };
        if let Some(node) = placed.remove(&t.id) {
            t.assign(node, cfg.now_ms);
        } else if let Some(reason) = unplaced.remove(&t.id) {
            t.note_unplaced(reason);
        }
    }
    ops
}

/// A pass over the services in `only` (all when `None`): the control loop passes the services
/// touched by recent changes, and runs a full pass on every tick.
pub fn reconcile_some(
    state: &StoreState,
    cfg: &Config,
    only: Option<&HashSet<ServiceId>>,
) -> Vec<Op> {
    let wanted = |id: &ServiceId| only.is_none_or(|o| o.contains(id));
    let mut ops = Vec::new();
    let mut by_service: HashMap<&ServiceId, Vec<&Task>> = HashMap::new();
    for t in state.tasks.values().filter(|t| wanted(&t.service_id)) {
        by_service.entry(&t.service_id).or_default().push(t);
    }
    for (sid, tasks) in &by_service {
        if !state.services.contains_key(*sid) {
            // Service removed: every task goes away once its container is stopped.
            for t in tasks {
                if t.desired_state < TaskState::Remove {
                    ops.push(desired(t, TaskState::Remove));
                }
            }
        }
    }
    let services: Vec<&Service> = match only {
        None => state.services.values().collect(),
        Some(o) => o.iter().filter_map(|id| state.services.get(id)).collect(),
    };
    for svc in services {
        let tasks = by_service.get(&svc.id).map(Vec::as_slice).unwrap_or(&[]);
        match svc.spec.mode {
            ServiceMode::Replicated { replicas } => {
                reconcile_replicated(state, svc, tasks, replicas, None, cfg, &mut ops)
            }
            ServiceMode::ReplicatedJob {
                max_concurrent,
                total_completions,
            } => {
                let done = tasks
                    .iter()
                    .filter(|t| t.status.state == TaskState::Complete)
                    .count() as u64;
                let remaining = total_completions.saturating_sub(done);
                reconcile_replicated(
                    state,
                    svc,
                    tasks,
                    max_concurrent.min(remaining + live_running(tasks)),
                    Some(total_completions),
                    cfg,
                    &mut ops,
                )
            }
            ServiceMode::Global | ServiceMode::GlobalJob => {
                reconcile_global(state, svc, tasks, cfg, &mut ops)
            }
        }
    }
    reap(state, cfg, &wanted, &mut ops);
    ops
}

fn live_running(tasks: &[&Task]) -> u64 {
    tasks
        .iter()
        .filter(|t| is_live(t) && !t.status.state.is_terminal())
        .count() as u64
}

fn desired(t: &Task, d: TaskState) -> Op {
    Op::TaskDesired {
        id: t.id.clone(),
        desired: d,
    }
}

fn orphan(t: &Task, why: &str, now: u64) -> Op {
    Op::TaskStatus {
        id: t.id.clone(),
        status: TaskStatus {
            state: TaskState::Orphaned,
            timestamp: now,
            message: why.to_string(),
            err: String::new(),
            exit_code: None,
            container_id: t.status.container_id.clone(),
            ..Default::default()
        },
    }
}

#[allow(clippy::too_many_arguments)]
fn reconcile_replicated(
    state: &StoreState,
    svc: &Service,
    tasks: &[&Task],
    want: u64,
    job_total: Option<u64>,
    cfg: &Config,
    ops: &mut Vec<Op>,
) {
    let now = cfg.now_ms;
    let current = &svc.spec.task;
    // Live task per slot (the newest if a slot somehow has several). A start-first update
    // keeps the old task of a slot running until its replacement runs.
    let mut slots: BTreeMap<u64, &Task> = BTreeMap::new();
    let mut start_first_pairs: BTreeSet<u64> = BTreeSet::new();
    for t in tasks.iter().filter(|t| is_live(t)) {
        let (newer, older) = match slots.get(&t.slot) {
            None => {
                slots.insert(t.slot, t);
                continue;
            }
            Some(cur) if cur.meta.created_at >= t.meta.created_at => (*cur, *t),
            Some(cur) => (*t, *cur),
        };
        slots.insert(t.slot, newer);
        let pair = newer.spec == *current
            && newer.status.state < TaskState::Running
            && older.spec != *current
            && older.status.state == TaskState::Running;
        if pair {
            start_first_pairs.insert(t.slot);
        } else {
            ops.push(desired(older, TaskState::Shutdown));
        }
    }
    // Slots whose task is being stopped (stop-first update) and not yet replaced: they stay
    // occupied until the old container is gone.
    let mut draining: BTreeSet<u64> = tasks
        .iter()
        .filter(|t| {
            t.desired_state == TaskState::Shutdown
                && !t.status.state.is_terminal()
                && !slots.contains_key(&t.slot)
                && t.node_id.as_ref().is_some_and(|n| {
                    state
                        .nodes
                        .get(n)
                        .is_some_and(|n| n.status.state != NodeState::Down)
                })
        })
        .map(|t| t.slot)
        .collect();
    // Supervise: dead tasks, tasks on lost/drained nodes.
    let mut vacated: Vec<(u64, u64)> = Vec::new(); // (slot, restarts)
    let mut kept: BTreeMap<u64, &Task> = BTreeMap::new();
    for (&slot, &t) in &slots {
        if t.status.state.is_terminal() {
            if job_total.is_some() && t.status.state == TaskState::Complete {
                // A finished job task frees its slot for the next completion.
                ops.push(desired(t, TaskState::Shutdown));
                continue;
            }
            match restart_decision(svc, t, cfg) {
                Restart::Now => {
                    ops.push(desired(t, TaskState::Shutdown));
                    vacated.push((slot, t.restarts + 1));
                }
                Restart::Later | Restart::Never => {
                    kept.insert(slot, t);
                }
            }
            continue;
        }
        if let Some(why) = node_problem(state, t, cfg, None) {
            if state
                .nodes
                .get(t.node_id.as_ref().expect("node_problem implies a node"))
                .is_none_or(|n| n.status.state == NodeState::Down)
            {
                ops.push(orphan(t, why, now));
            }
            ops.push(desired(t, TaskState::Shutdown));
            vacated.push((slot, t.restarts));
            continue;
        }
        kept.insert(slot, t);
    }
    // Start-first pairs whose new task now runs: retire the old one.
    for slot in &start_first_pairs {
        if let Some(new) = kept.get(slot) {
            if new.status.state == TaskState::Running {
                for old in tasks.iter().filter(|o| {
                    o.slot == *slot && is_live(o) && o.id != new.id && o.spec != *current
                }) {
                    ops.push(desired(old, TaskState::Shutdown));
                }
            }
        }
    }
    if job_total.is_none() {
        // Slots about to be (re)filled in this pass count as in flight for the update.
        let refills = vacated.len()
            + (want as usize).saturating_sub(kept.len() + vacated.len() + draining.len());
        rolling_update(
            state,
            svc,
            tasks,
            &kept,
            &start_first_pairs,
            &mut draining,
            refills,
            cfg,
            ops,
        );
    } else {
        // Jobs: new spec applies to the next tasks; running ones finish as they are.
    }
    let vacated_len = vacated.len() as u64;
    let occupied_extra = draining.len() as u64;
    let occupied = kept.len() as u64 + vacated_len + occupied_extra;
    if occupied > want {
        // Scale down: take vacated slots first, then from the nodes that run the most tasks of
        // this service, not-yet-running tasks first, highest slot first.
        let mut excess = occupied - want;
        while excess > 0 && !vacated.is_empty() {
            vacated.pop();
            excess -= 1;
        }
        while excess > 0 {
            let Some(last) = draining.iter().next_back().copied() else {
                break;
            };
            draining.remove(&last);
            excess -= 1;
        }
        let mut per_node: HashMap<Option<&NodeId>, usize> = HashMap::new();
        for t in kept.values() {
            *per_node.entry(t.node_id.as_ref()).or_default() += 1;
        }
        let mut order: Vec<&Task> = kept.values().copied().collect();
        order.sort_by(|a, b| {
            let na = per_node[&a.node_id.as_ref()];
            let nb = per_node[&b.node_id.as_ref()];
            nb.cmp(&na)
                .then(
                    (a.status.state == TaskState::Running)
                        .cmp(&(b.status.state == TaskState::Running)),
                )
                .then(b.slot.cmp(&a.slot))
        });
        for t in order.into_iter().take(excess as usize) {
            ops.push(desired(t, TaskState::Remove));
            kept.remove(&t.slot);
        }
    }
    for (slot, restarts) in &vacated {
        ops.push(Op::Create(Object::Task(new_task(
            svc, *slot, None, *restarts, now,
        ))));
    }
    let occupied = kept.len() as u64 + vacated.len() as u64;
    if occupied < want {
        // Scale up into the lowest free slot numbers.
        let used: HashSet<u64> = kept
            .keys()
            .copied()
            .chain(vacated.iter().map(|v| v.0))
            .collect();
        let mut next = 1u64;
        for _ in occupied..want {
            while used.contains(&next) {
                next += 1;
            }
            ops.push(Op::Create(Object::Task(new_task(svc, next, None, 0, now))));
            next += 1;
        }
    }
}

fn reconcile_global(
    state: &StoreState,
    svc: &Service,
    tasks: &[&Task],
    cfg: &Config,
    ops: &mut Vec<Op>,
) {
    let now = cfg.now_ms;
    let job = svc.spec.mode == ServiceMode::GlobalJob;
    let mut live_on: HashMap<&NodeId, &Task> = HashMap::new();
    let mut completed_on: HashSet<&NodeId> = HashSet::new();
    let mut dirty: Vec<&Task> = Vec::new();
    for t in tasks {
        let Some(n) = t.node_id.as_ref() else {
            continue;
        };
        if t.status.state == TaskState::Complete {
            completed_on.insert(n);
        }
        if !is_live(t) {
            continue;
        }
        let constraints = svc.spec.task.placement.constraints.as_slice();
        if let Some(problem) = node_problem(state, t, cfg, Some(constraints)) {
            if state
                .nodes
                .get(n)
                .is_none_or(|n| n.status.state == NodeState::Down)
            {
                ops.push(orphan(t, problem, now));
            }
            ops.push(desired(t, TaskState::Shutdown));
            continue;
        }
        if t.status.state.is_terminal() {
            if job && t.status.state == TaskState::Complete {
                continue;
            }
            match restart_decision(svc, t, cfg) {
                Restart::Now => {
                    ops.push(desired(t, TaskState::Shutdown));
                    ops.push(Op::Create(Object::Task(new_task(
                        svc,
                        0,
                        Some(n),
                        t.restarts + 1,
                        now,
                    ))));
                    live_on.insert(n, t);
                }
                Restart::Later | Restart::Never => {
                    live_on.insert(n, t);
                }
            }
            continue;
        }
        if t.spec != svc.spec.task {
            // Replaced by the rolling update below, a few nodes at a time.
            dirty.push(t);
            live_on.insert(n, t);
            continue;
        }
        if live_on.insert(n, t).is_some() {
            ops.push(desired(t, TaskState::Shutdown));
        }
    }
    // Nodes whose old task is still stopping get their new task once it has stopped.
    let draining: HashSet<&NodeId> = tasks
        .iter()
        .filter(|t| t.desired_state == TaskState::Shutdown && !t.status.state.is_terminal())
        .filter_map(|t| t.node_id.as_ref())
        .filter(|n| {
            !live_on.contains_key(n)
                && state
                    .nodes
                    .get(*n)
                    .is_some_and(|x| x.status.state != NodeState::Down)
        })
        .collect();
    let paused = svc
        .update_status
        .as_ref()
        .is_some_and(|s| s.state.is_paused());
    if !dirty.is_empty() && !paused {
        let p = UpdateProgress::of(svc, tasks);
        if failure_action(state, svc, &p, live_on.len(), now, ops) {
            return;
        }
        if p.next_batch_due(p.starting + draining.len(), now) {
            dirty.sort_by_key(|t| t.node_id.clone());
            for t in dirty.iter().take(p.parallelism()) {
                ops.push(desired(t, TaskState::Shutdown));
            }
        }
    }
    // The update completes when every live task runs the current spec.
    if let Some(st) = svc.update_status.as_ref().filter(|s| s.state.is_active()) {
        let settled = tasks
            .iter()
            .filter(|t| is_live(t))
            .all(|t| t.spec == svc.spec.task && t.status.state == TaskState::Running);
        if settled {
            let st = if st.state.is_rollback() {
                UpdateState::RollbackCompleted
            } else {
                UpdateState::Completed
            };
            ops.push(status_op(svc, st, "update completed".into(), now));
        }
    }
    for node in state.nodes.values() {
        let eligible = node.status.state == NodeState::Ready
            && node.spec.availability == Availability::Active
            && node_matches_constraints(node, &svc.spec.task.placement.constraints);
        if !eligible
            || live_on.contains_key(&node.id)
            || draining.contains(&node.id)
            || (job && completed_on.contains(&node.id))
        {
            continue;
        }
        ops.push(Op::Create(Object::Task(new_task(
            svc,
            0,
            Some(&node.id),
            0,
            now,
        ))));
    }
}

/// An update in progress, as read from the store (shared by replicated and global services).
struct UpdateProgress<'a> {
    rolling_back: bool,
    ucfg: &'a UpdateConfig,
    /// Tasks this update created: current spec, created after it started.
    updated: Vec<&'a Task>,
    /// Of those, live ones that do not run yet.
    starting: usize,
    /// When the most recent of them reported running (0: none yet).
    last_running: u64,
}

impl<'a> UpdateProgress<'a> {
    fn of(svc: &'a Service, tasks: &[&'a Task]) -> Self {
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
        let updated: Vec<&Task> = tasks
            .iter()
            .filter(|t| t.spec == svc.spec.task && t.meta.created_at >= started_at)
            .copied()
            .collect();
        let starting = updated
            .iter()
            .filter(|t| is_live(t) && t.status.state < TaskState::Running)
            .count();
        let last_running = updated
            .iter()
            .filter(|t| t.status.state == TaskState::Running)
            .map(|t| t.status.timestamp)
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

    fn parallelism(&self) -> usize {
        match self.ucfg.parallelism {
            0 => usize::MAX,
            n => n as usize,
        }
    }

    /// Nothing of the previous batch is in flight and `delay` has passed since it ran.
    fn next_batch_due(&self, in_flight: usize, now: u64) -> bool {
        in_flight == 0
            && now
                >= self
                    .last_running
                    .saturating_add(self.ucfg.delay.as_millis() as u64)
    }
}

/// The op that records a new update state on a service, keeping when the update started.
fn status_op(svc: &Service, state: UpdateState, message: String, now: u64) -> Op {
    let mut s = svc.clone();
    let done = matches!(
        state,
        UpdateState::Completed | UpdateState::RollbackCompleted
    );
    s.update_status = Some(UpdateStatus {
        state,
        started_at: svc
            .update_status
            .as_ref()
            .map(|s| s.started_at)
            .unwrap_or(now),
        completed_at: if done { now } else { 0 },
        message,
    });
    Op::Update(Object::Service(s))
}

/// Applies the update's failure action when too many of the tasks it created failed. Returns
/// true when the update stopped here (paused or turned into a rollback).
fn failure_action(
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
            let prev = s.previous_spec.clone().expect("checked");
            s.replace_spec(prev, now, true);
            if let Some(st) = s.update_status.as_mut() {
                st.message = format!("update rolled back: {why}");
            }
            ops.push(Op::Update(Object::Service(s)));
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
fn rolling_update(
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
    let dirty: Vec<(u64, &Task)> = kept
        .iter()
        .filter(|(_, t)| t.spec != svc.spec.task && !t.status.state.is_terminal())
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
    let p = UpdateProgress::of(svc, tasks);
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

/// Deletes tasks that are finished with: removed tasks once stopped (or whose node is gone),
/// and history beyond the limit per slot/node.
fn reap(state: &StoreState, cfg: &Config, wanted: &dyn Fn(&ServiceId) -> bool, ops: &mut Vec<Op>) {
    let mut history: HashMap<(&ServiceId, u64, Option<&NodeId>), Vec<&Task>> = HashMap::new();
    for t in state.tasks.values().filter(|t| wanted(&t.service_id)) {
        let node_gone_or_down = t.node_id.as_ref().is_none_or(|n| {
            state
                .nodes
                .get(n)
                .is_none_or(|n| n.status.state == NodeState::Down)
        });
        let stopped = t.status.state.is_terminal() || t.status.state < TaskState::Assigned;
        if t.desired_state == TaskState::Remove && (stopped || node_gone_or_down) {
            ops.push(Op::Delete {
                kind: ObjectKind::Task,
                id: t.id.to_string(),
                version: None,
            });
            continue;
        }
        if !is_live(t) && (stopped || node_gone_or_down) {
            let key = if t.slot > 0 {
                (&t.service_id, t.slot, None)
            } else {
                (&t.service_id, 0, t.node_id.as_ref())
            };
            history.entry(key).or_default().push(t);
        }
    }
    for (_, mut old) in history {
        if old.len() <= cfg.task_history_limit {
            continue;
        }
        old.sort_by_key(|t| std::cmp::Reverse((t.meta.created_at, t.meta.version)));
        for t in &old[cfg.task_history_limit..] {
            ops.push(Op::Delete {
                kind: ObjectKind::Task,
                id: t.id.to_string(),
                version: None,
            });
        }
    }
}

#[cfg(test)]
mod tests;
