//! The agents' side of the log broker: a node's log channel (subscriptions out) and the lines
//! it publishes (named here from the store: task name, node name).

use crate::manager::Manager;
use std::pin::Pin;
use std::time::Duration;
use swarm_api::control::LogRecord;
use swarm_api::dispatcher::{LogLine, LogSubscription, PublishLogsMessage, PublishLogsResponse};
use swarm_types::store::StoreState;
use swarm_types::{NodeId, Task};
use tokio_stream::{Stream, StreamExt};
use tonic::{Status, Streaming};

pub type SubscriptionStream = Pin<Box<dyn Stream<Item = Result<LogSubscription, Status>> + Send>>;

/// Log channels and publishing are served by the leader only.
fn require_leader(m: &Manager) -> Result<(), Status> {
    if m.is_leader() {
        return Ok(());
    }
    let hint = m
        .leader()
        .map(|(_, a)| format!("; the leader is {a}"))
        .unwrap_or_default();
    Err(Status::failed_precondition(format!(
        "log channels are served by the leader only{hint}"
    )))
}

/// How `docker service ps` names a task: `web.1`, or `web.<node>` for a global service.
pub fn task_name(t: &Task) -> String {
    if t.slot > 0 {
        format!("{}.{}", t.service_name, t.slot)
    } else {
        let node = t.node_id.as_ref().map(|n| n.as_str()).unwrap_or("");
        format!("{}.{}", t.service_name, node)
    }
}

/// The hostname a node reports, or its id.
pub fn node_name(s: &StoreState, n: &NodeId) -> String {
    s.nodes
        .get(n.as_str())
        .map(|n| n.description.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| n.to_string())
}

/// The node's log channel: the subscriptions the broker has for it, until this manager stops
/// leading or the node goes.
pub fn subscriptions(manager: Manager, node: NodeId) -> Result<SubscriptionStream, Status> {
    require_leader(&manager)?;
    let (gen, mut rx) = manager.logs().connect(&node);
    let (tx, out) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        let mut check = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                s = rx.recv() => match s {
                    Some(s) => if tx.send(Ok(s)).await.is_err() { break },
                    None => break,
                },
                _ = check.tick() => if !manager.is_leader() { break },
                _ = tx.closed() => break,
            }
        }
        let name = manager.store().read(|s| node_name(s, &node));
        manager.logs().disconnect(&node, gen, &name);
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(out)))
}

/// Lines a node publishes, passed to their readers. `caller`: the node its certificate names
/// (None on plaintext test clusters, where the messages name it).
pub async fn publish(
    manager: &Manager,
    caller: Option<NodeId>,
    mut stream: Streaming<PublishLogsMessage>,
) -> Result<PublishLogsResponse, Status> {
    require_leader(manager)?;
    while let Some(m) = stream.next().await {
        let m = m?;
        let node = caller
            .clone()
            .unwrap_or_else(|| NodeId::new(m.node_id.clone()));
        if m.node_id != node.as_str() {
            return Err(Status::permission_denied(format!(
                "node {node} may not publish logs as {}",
                m.node_id
            )));
        }
        let node = &node;
        let mut records = manager.store().read(|s| name_lines(s, node, m.lines));
        let Some(reply) = manager
            .logs()
            .publish(node, &m.subscription_id, &mut records, m.close)
        else {
            // Nobody reads this subscription any more: the agent got (or gets) a close.
            continue;
        };
        let mut msg = swarm_api::control::ServiceLogsMessage {
            records,
            warnings: Vec::new(),
        };
        if !m.error.is_empty() {
            let name = manager.store().read(|s| node_name(s, node));
            msg.warnings.push(format!("node {name}: {}", m.error));
        }
        if msg.records.is_empty() && msg.warnings.is_empty() {
            continue;
        }
        if reply.send(Ok(msg)).await.is_err() {
            manager.logs().unsubscribe(&m.subscription_id);
        }
    }
    Ok(PublishLogsResponse {})
}

/// Names published lines for the reader; lines of tasks that are not this node's are dropped.
fn name_lines(s: &StoreState, node: &NodeId, lines: Vec<LogLine>) -> Vec<LogRecord> {
    let node_name = node_name(s, node);
    lines
        .into_iter()
        .filter_map(|l| {
            let t = s.tasks.get(l.task_id.as_str())?;
            (t.node_id.as_ref() == Some(node)).then(|| LogRecord {
                task_name: task_name(t),
                node_id: node.to_string(),
                node_name: node_name.clone(),
                task_id: l.task_id,
                time: l.time,
                stream: l.stream,
                data: l.data,
            })
        })
        .collect()
}
