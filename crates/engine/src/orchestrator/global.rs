//! Global services and global jobs: one task on every eligible node (ready, active, matching
//! the constraints), rolled node by node on update.

use super::*;

pub(super) fn reconcile_global(
    state: &StoreState,
    svc: &Service,
    tasks: &[&Task],
    cfg: &Config,
    ops: &mut Vec<Op>,
) {
    let now = cfg.now_ms;
    let job = svc.spec.mode == ServiceMode::GlobalJob;
    let Supervised {
        live_on,
        completed_on,
        mut dirty,
    } = supervise_nodes(state, svc, tasks, cfg, ops);
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
        let p = UpdateProgress::of(svc, tasks, cfg);
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
    complete_update(svc, tasks, now, ops);
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

/// What supervision found, per node.
struct Supervised<'a> {
    /// The node's live task (dead ones the policy keeps included).
    live_on: HashMap<&'a NodeId, &'a Task>,
    /// Nodes where a job's task completed.
    completed_on: HashSet<&'a NodeId>,
    /// Live tasks on an old spec, for the rolling update.
    dirty: Vec<&'a Task>,
}

/// Supervision of each node's task: lost or ineligible nodes' tasks stopped, dead tasks
/// restarted per the policy, duplicates stopped.
fn supervise_nodes<'a>(
    state: &StoreState,
    svc: &Service,
    tasks: &[&'a Task],
    cfg: &Config,
    ops: &mut Vec<Op>,
) -> Supervised<'a> {
    let now = cfg.now_ms;
    let job = svc.spec.mode == ServiceMode::GlobalJob;
    let mut live_on: HashMap<&NodeId, &Task> = HashMap::new();
    let mut completed_on: HashSet<&NodeId> = HashSet::new();
    let mut dirty: Vec<&Task> = Vec::new();
    let current = CurrentSpec::of(svc);
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
        if !current.matches(t) {
            // Replaced by the rolling update below, a few nodes at a time.
            dirty.push(t);
            live_on.insert(n, t);
            continue;
        }
        if live_on.insert(n, t).is_some() {
            ops.push(desired(t, TaskState::Shutdown));
        }
    }
    Supervised {
        live_on,
        completed_on,
        dirty,
    }
}

/// The update completes when every live task runs the current spec.
fn complete_update(svc: &Service, tasks: &[&Task], now: u64, ops: &mut Vec<Op>) {
    if let Some(st) = svc.update_status.as_ref().filter(|s| s.state.is_active()) {
        let current = CurrentSpec::of(svc);
        let settled = tasks
            .iter()
            .filter(|t| is_live(t))
            .all(|t| t.status.state == TaskState::Running && current.matches(t));
        if settled {
            let st = if st.state.is_rollback() {
                UpdateState::RollbackCompleted
            } else {
                UpdateState::Completed
            };
            ops.push(status_op(svc, st, "update completed".into(), now));
        }
    }
}
