//! Task status reporting: controllers hand statuses to a `Reporter`; one background loop per
//! node sends them to a manager in batches (the furthest state per task), fails over to the
//! next manager and retries whole-request errors, and drops the items a manager refused
//! (`UpdateTaskStatusResponse.rejected`). It never decides a task's state.

use crate::managers::Managers;
use std::collections::BTreeMap;
use std::time::Duration;
use swarm_api::dispatcher::dispatcher_client::DispatcherClient;
use swarm_api::dispatcher::{RejectedUpdate, TaskStatusUpdate, UpdateTaskStatusRequest};
use swarm_api::wire;
use swarm_types::objects::TaskStatus;
use swarm_types::task::TaskState;
use swarm_types::{NodeId, TaskId};
use tokio::sync::mpsc;

/// Most statuses in one `UpdateTaskStatus` request.
const BATCH: usize = 500;

/// Hands task statuses to the background reporter.
#[derive(Clone)]
pub struct Reporter {
    tx: mpsc::UnboundedSender<(TaskId, TaskStatus)>,
}

impl Reporter {
    /// Starts the reporting loop for `node`; it ends when the last `Reporter` is dropped.
    pub fn spawn(node: NodeId, managers: Managers) -> Reporter {
        let (reporter, rx) = Reporter::channel();
        tokio::spawn(report_loop(node, managers, rx));
        reporter
    }

    /// A reporter and the receiving end its statuses go to.
    pub(crate) fn channel() -> (Reporter, mpsc::UnboundedReceiver<(TaskId, TaskStatus)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Reporter { tx }, rx)
    }

    pub fn report(
        &self,
        id: &TaskId,
        state: TaskState,
        message: &str,
        err: &str,
        exit_code: Option<i32>,
    ) {
        self.report_health(id, state, message, err, exit_code, "");
    }

    pub fn report_health(
        &self,
        id: &TaskId,
        state: TaskState,
        message: &str,
        err: &str,
        exit_code: Option<i32>,
        health: &str,
    ) {
        let _ = self.tx.send((
            id.clone(),
            TaskStatus {
                state,
                timestamp: swarm_api::now_ms(),
                message: message.to_string(),
                err: err.to_string(),
                exit_code,
                container_id: id.to_string(),
                health: health.to_string(),
            },
        ));
    }
}

/// Sends statuses in batches (latest per task), retrying across managers until accepted.
async fn report_loop(
    node: NodeId,
    managers: Managers,
    mut rx: mpsc::UnboundedReceiver<(TaskId, TaskStatus)>,
) {
    let mut pending: BTreeMap<TaskId, TaskStatus> = BTreeMap::new();
    let mut idx = 0usize;
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some((id, s)) => {
                    pending.insert(id, s);
                }
                None => return,
            }
        }
        // Let a burst accumulate briefly.
        tokio::time::sleep(Duration::from_millis(20)).await;
        while let Ok((id, s)) = rx.try_recv() {
            merge(&mut pending, id, s);
        }
        let Some(addr) = managers.pick(idx) else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let batch: Vec<(TaskId, TaskStatus)> = pending
            .iter()
            .take(BATCH)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        match send(&managers, &addr, &node, &batch).await {
            Ok(rejected) => {
                // Refused items can never apply (not this node's task any more, say): drop
                // them with a line instead of retrying the batch forever.
                for r in rejected {
                    tracing::warn!(task = %r.task_id, reason = %r.reason, "status report refused by the manager; dropped");
                }
                for (id, s) in batch {
                    if pending.get(&id) == Some(&s) {
                        pending.remove(&id);
                    }
                }
            }
            Err(e) => {
                tracing::debug!(manager = %addr, error = %e, "status report failed; retrying");
                idx += 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
}

/// Keeps the furthest state per task: a terminal state must not be lost to a stale one.
fn merge(pending: &mut BTreeMap<TaskId, TaskStatus>, id: TaskId, s: TaskStatus) {
    match pending.get(&id) {
        Some(cur) if cur.state > s.state => {}
        _ => {
            pending.insert(id, s);
        }
    }
}

/// One `UpdateTaskStatus` request to `addr`; the items the manager refused.
async fn send(
    managers: &Managers,
    addr: &str,
    node: &NodeId,
    batch: &[(TaskId, TaskStatus)],
) -> Result<Vec<RejectedUpdate>, String> {
    let req = UpdateTaskStatusRequest {
        node_id: node.to_string(),
        updates: batch
            .iter()
            .map(|(id, s)| TaskStatusUpdate {
                task_id: id.to_string(),
                status: wire::to_bytes(s),
            })
            .collect(),
    };
    let ch = managers.channel(addr)?;
    let mut r = tonic::Request::new(req);
    r.set_timeout(Duration::from_secs(5));
    DispatcherClient::new(ch)
        .update_task_status(r)
        .await
        .map(|resp| resp.into_inner().rejected)
        .map_err(|s| s.message().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: TaskState, message: &str) -> TaskStatus {
        TaskStatus {
            state,
            message: message.into(),
            ..Default::default()
        }
    }

    #[test]
    fn merge_keeps_the_furthest_state_per_task() {
        let mut p = BTreeMap::new();
        let t = TaskId::new("t1");
        merge(&mut p, t.clone(), status(TaskState::Running, "a"));
        merge(&mut p, t.clone(), status(TaskState::Failed, "b"));
        merge(&mut p, t.clone(), status(TaskState::Running, "stale"));
        assert_eq!(p[&t].message, "b");
        // The same state replaces: the newest message wins.
        merge(&mut p, t.clone(), status(TaskState::Failed, "c"));
        assert_eq!(p[&t].message, "c");
    }
}
