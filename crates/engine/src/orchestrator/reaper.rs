//! The reaper: deletes tasks that are finished with, and bounds the history kept per slot
//! or node.

use super::*;

/// Deletes tasks that are finished with: removed tasks once stopped (or whose node is gone),
/// and history beyond the limit per slot/node.
pub(super) fn reap(
    state: &StoreState,
    cfg: &Config,
    wanted: &dyn Fn(&ServiceId) -> bool,
    ops: &mut Vec<Op>,
) {
    let mut history: HashMap<(&ServiceId, u64, Option<&NodeId>), Vec<&Task>> = HashMap::new();
    for t in state.tasks.values().filter(|t| wanted(&t.service_id)) {
        let removed = t.desired_state == TaskState::Remove;
        if !removed && is_live(t) {
            // Most tasks at any time: nothing to reap, and no node to look up.
            continue;
        }
        let node_gone_or_down = || {
            t.node_id.as_ref().is_none_or(|n| {
                state
                    .nodes
                    .get(n)
                    .is_none_or(|n| n.status.state == NodeState::Down)
            })
        };
        let stopped = t.status.state.is_terminal() || t.status.state < TaskState::Assigned;
        if removed && (stopped || node_gone_or_down()) {
            ops.push(Op::Delete {
                kind: ObjectKind::Task,
                id: t.id.to_string(),
                version: None,
            });
            continue;
        }
        if stopped || node_gone_or_down() {
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
