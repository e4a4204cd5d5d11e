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
    /// When the leader itself first saw each running task of an update running, on the
    /// `now_ms` time line (the caller converts from its monotonic clock at each pass).
    /// Update pacing and completion use these instead of the agents' status timestamps: a
    /// timestamp written while some clock was ahead would otherwise hold an update still
    /// until that clock's time comes. A running task missing here counts as seen now.
    pub running_since: std::sync::Arc<std::collections::HashMap<swarm_types::TaskId, u64>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            now_ms: 0,
            node_down_grace_ms: 2_000,
            task_history_limit: 5,
            running_since: Default::default(),
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
        spec: std::sync::Arc::new(svc.spec.task.clone()),
        desired_state: TaskState::Running,
        status: TaskStatus {
            state,
            timestamp: now,
            message: message.into(),
            ..Default::default()
        },
        restarts,
        networks: Vec::new(),
    }
}

/// Whether tasks run their service's current spec. The tasks of one service version share one
/// spec allocation, so this compares each allocation once per pass and the rest by pointer:
/// comparing every task's spec field by field was a tenth of a pass over a 100,000-task
/// service, which the leader runs every second.
struct CurrentSpec<'a> {
    spec: &'a swarm_types::spec::TaskSpec,
    /// Allocations already compared (by address: the tasks borrowed for the pass keep them
    /// alive, so no address is reused meanwhile) and whether they matched.
    known: std::cell::RefCell<Vec<(usize, bool)>>,
}

impl<'a> CurrentSpec<'a> {
    /// Allocations remembered; a service has a few versions in flight at most.
    const KEEP: usize = 8;

    fn of(svc: &'a Service) -> Self {
        CurrentSpec {
            spec: &svc.spec.task,
            known: Default::default(),
        }
    }

    fn matches(&self, t: &Task) -> bool {
        let at = std::sync::Arc::as_ptr(&t.spec) as usize;
        if let Some(&(_, same)) = self.known.borrow().iter().find(|(a, _)| *a == at) {
            return same;
        }
        let same = *t.spec == *self.spec;
        let mut known = self.known.borrow_mut();
        if known.len() < Self::KEEP {
            known.push((at, same));
        }
        same
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
    reconcile_and_place_noting(state, cfg, only, &mut HashSet::new())
}

/// `reconcile_and_place`, also adding to `timed` the services of the pass that wait on time
/// alone (see `waits_on_time`): the only ones a periodic pass needs to look at again.
pub fn reconcile_and_place_noting(
    state: &StoreState,
    cfg: &Config,
    only: Option<&HashSet<ServiceId>>,
    timed: &mut HashSet<ServiceId>,
) -> Vec<Op> {
    let mut ops = reconcile_pass(state, cfg, only, timed);
    // New tasks get their network addresses with their creation (one Raft write).
    crate::ipam::attach_new_tasks(state, &mut ops);
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
    reconcile_pass(state, cfg, only, &mut HashSet::new())
}

fn reconcile_pass(
    state: &StoreState,
    cfg: &Config,
    only: Option<&HashSet<ServiceId>>,
    timed: &mut HashSet<ServiceId>,
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
        None => state.services.values().map(|s| &**s).collect(),
        Some(o) => o
            .iter()
            .filter_map(|id| state.services.get(id).map(|s| &**s))
            .collect(),
    };
    let down: Vec<&NodeId> = state
        .nodes
        .values()
        .filter(|n| n.status.state == NodeState::Down)
        .map(|n| &n.id)
        .collect();
    for svc in services {
        let tasks = by_service.get(&svc.id).map(Vec::as_slice).unwrap_or(&[]);
        if waits_on_time(svc, tasks, &down) {
            timed.insert(svc.id.clone());
        }
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

/// Whether a service waits on time alone, so that a pass must look at it again when nothing
/// else happened: an update or rollback in progress (its pacing and monitor period), a dead
/// task in a slot (its restart delay, or the window that lets its restarts count again), a
/// live task on a down node (the node's grace period). Anything else a service waits for
/// arrives as a store change to it, its tasks or the nodes. Errs towards yes: a dead task the
/// policy keeps for good counts too.
fn waits_on_time(svc: &Service, tasks: &[&Task], down: &[&NodeId]) -> bool {
    if svc
        .update_status
        .as_ref()
        .is_some_and(|u| u.state.is_active())
    {
        return true;
    }
    tasks.iter().filter(|t| is_live(t)).any(|t| {
        t.status.state.is_terminal()
            || (!down.is_empty() && t.node_id.as_ref().is_some_and(|n| down.contains(&n)))
    })
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

mod global;
mod reaper;
mod replicated;
mod restart;
mod update;

use global::reconcile_global;
use reaper::reap;
use replicated::reconcile_replicated;
pub use restart::restart_delay;
use restart::{restart_decision, Restart};
use update::*;

#[cfg(test)]
mod tests;
