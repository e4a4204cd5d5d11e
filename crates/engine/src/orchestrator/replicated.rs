//! Replicated services and replicated jobs: slots 1..=replicas, each with at most one live
//! task; dead tasks replaced per the restart policy, surplus slots stopped, jobs run to their
//! completions.

use super::*;
use swarm_types::spec::TaskSpec;

#[allow(clippy::too_many_arguments)]
pub(super) fn reconcile_replicated(
    state: &StoreState,
    svc: &Service,
    tasks: &[&Task],
    want: u64,
    job_total: Option<u64>,
    cfg: &Config,
    ops: &mut Vec<Op>,
) {
    let current = &svc.spec.task;
    let (slots, start_first_pairs) = live_slots(tasks, current, ops);
    let mut draining = draining_slots(state, tasks, &slots);
    let (mut vacated, mut kept) = supervise_slots(state, svc, &slots, job_total, cfg, ops);
    retire_replaced(tasks, &kept, &start_first_pairs, current, ops);
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
    scale_down(&mut kept, &mut vacated, &mut draining, want, ops);
    fill_slots(svc, &kept, &vacated, want, cfg.now_ms, ops);
}

/// The live task of each slot (the newest if a slot somehow has several), and the slots of a
/// start-first update whose old task keeps running until its replacement runs; any other
/// older duplicate is stopped.
fn live_slots<'a>(
    tasks: &[&'a Task],
    current: &TaskSpec,
    ops: &mut Vec<Op>,
) -> (BTreeMap<u64, &'a Task>, BTreeSet<u64>) {
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
        let pair = *newer.spec == *current
            && newer.status.state < TaskState::Running
            && *older.spec != *current
            && older.status.state == TaskState::Running;
        if pair {
            start_first_pairs.insert(t.slot);
        } else {
            ops.push(desired(older, TaskState::Shutdown));
        }
    }
    (slots, start_first_pairs)
}

/// Slots whose task is being stopped (stop-first update) and not yet replaced: they stay
/// occupied until the old container is gone (or its node is down).
fn draining_slots(
    state: &StoreState,
    tasks: &[&Task],
    slots: &BTreeMap<u64, &Task>,
) -> BTreeSet<u64> {
    tasks
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
        .collect()
}

/// Supervision: dead tasks restarted per the policy (or kept, dead, until it allows), tasks on
/// lost or drained nodes replaced, finished job tasks retired. Returns the vacated slots (with
/// the restart count their next task carries) and the slots kept as they are.
fn supervise_slots<'a>(
    state: &StoreState,
    svc: &Service,
    slots: &BTreeMap<u64, &'a Task>,
    job_total: Option<u64>,
    cfg: &Config,
    ops: &mut Vec<Op>,
) -> (Vec<(u64, u64)>, BTreeMap<u64, &'a Task>) {
    let mut vacated: Vec<(u64, u64)> = Vec::new();
    let mut kept: BTreeMap<u64, &Task> = BTreeMap::new();
    for (&slot, &t) in slots {
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
                ops.push(orphan(t, why, cfg.now_ms));
            }
            ops.push(desired(t, TaskState::Shutdown));
            vacated.push((slot, t.restarts));
            continue;
        }
        kept.insert(slot, t);
    }
    (vacated, kept)
}

/// Start-first pairs whose new task now runs: the old one is retired.
fn retire_replaced(
    tasks: &[&Task],
    kept: &BTreeMap<u64, &Task>,
    start_first_pairs: &BTreeSet<u64>,
    current: &TaskSpec,
    ops: &mut Vec<Op>,
) {
    for slot in start_first_pairs {
        if let Some(new) = kept.get(slot) {
            if new.status.state == TaskState::Running {
                for old in tasks.iter().filter(|o| {
                    o.slot == *slot && is_live(o) && o.id != new.id && *o.spec != *current
                }) {
                    ops.push(desired(old, TaskState::Shutdown));
                }
            }
        }
    }
}

/// Scale down to `want`: vacated slots first, then draining ones, then from the nodes that
/// run the most tasks of this service, not-yet-running tasks first, highest slot first.
fn scale_down(
    kept: &mut BTreeMap<u64, &Task>,
    vacated: &mut Vec<(u64, u64)>,
    draining: &mut BTreeSet<u64>,
    want: u64,
    ops: &mut Vec<Op>,
) {
    let occupied = (kept.len() + vacated.len() + draining.len()) as u64;
    if occupied <= want {
        return;
    }
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
                (a.status.state == TaskState::Running).cmp(&(b.status.state == TaskState::Running)),
            )
            .then(b.slot.cmp(&a.slot))
    });
    for t in order.into_iter().take(excess as usize) {
        ops.push(desired(t, TaskState::Remove));
        kept.remove(&t.slot);
    }
}

/// New tasks for the vacated slots, then scale up into the lowest free slot numbers.
fn fill_slots(
    svc: &Service,
    kept: &BTreeMap<u64, &Task>,
    vacated: &[(u64, u64)],
    want: u64,
    now: u64,
    ops: &mut Vec<Op>,
) {
    for (slot, restarts) in vacated {
        ops.push(Op::Create(Object::Task(new_task(
            svc, *slot, None, *restarts, now,
        ))));
    }
    let occupied = kept.len() as u64 + vacated.len() as u64;
    if occupied < want {
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
