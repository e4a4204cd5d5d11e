//! The dispatcher: agents open a session stream and receive the tasks assigned to their node
//! (first the complete set, then changes), and report task status in batches. Served by every
//! manager from its replicated copy of the store; status writes go through Raft.

use crate::manager::Manager;
use crate::store::StoreEvent;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use swarm_api::dispatcher::dispatcher_server::Dispatcher;
use swarm_api::dispatcher::{
    RejectedUpdate, SessionMessage, SessionRequest, UpdateTaskStatusRequest,
    UpdateTaskStatusResponse,
};
use swarm_api::wire;
use swarm_types::objects::TaskStatus;
use swarm_types::store::{Action, Op, WriteBatch};
use swarm_types::{NodeId, Object, Task, TaskId};
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

mod discovery;
mod logs;
mod peers;
pub use logs::{node_name, task_name};
pub use peers::host_ip;

type SessionStream = Pin<Box<dyn Stream<Item = Result<SessionMessage, Status>> + Send>>;

/// Most tasks in one session message (keeps messages far below the gRPC limit).
const TASKS_PER_MESSAGE: usize = swarm_api::SESSION_TASKS_PER_MESSAGE;

#[derive(Clone)]
pub struct DispatcherService {
    manager: Manager,
    hub: Arc<Hub>,
}

impl DispatcherService {
    pub fn new(manager: Manager) -> Self {
        let hub = Hub::start(&manager);
        DispatcherService { manager, hub }
    }
}

/// Routes store changes to the sessions of the nodes they concern, so a change wakes one
/// session instead of every session on this manager (a manager holds hundreds).
#[derive(Default)]
struct Hub {
    subs: Mutex<HashMap<NodeId, Vec<Sub>>>,
}

struct Sub {
    tx: tokio::sync::mpsc::Sender<StoreEvent>,
    /// Set when an event could not be delivered: the session resends the full set.
    overflow: Arc<AtomicBool>,
}

impl Hub {
    fn start(manager: &Manager) -> Arc<Hub> {
        let hub = Arc::new(Hub::default());
        let mut rx = manager.store().subscribe();
        let h = hub.clone();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(StoreEvent::Change(c)) => {
                        // An agent's own status report: nothing for it to act on.
                        if c.status_only {
                            continue;
                        }
                        // A node's sessions get its tasks' changes, and its own removal
                        // (which ends them).
                        let node = match &c.object {
                            Object::Task(t) => match &t.node_id {
                                Some(n) => n.clone(),
                                None => continue,
                            },
                            Object::Node(n) if c.action == Action::Deleted => n.id.clone(),
                            _ => continue,
                        };
                        let mut subs = h.subs.lock().expect("hub lock");
                        if let Some(list) = subs.get_mut(&node) {
                            list.retain(|s| match s.tx.try_send(StoreEvent::Change(c.clone())) {
                                Ok(()) => true,
                                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                                    s.overflow.store(true, Ordering::SeqCst);
                                    true
                                }
                                Err(_) => false,
                            });
                        }
                    }
                    Ok(StoreEvent::Reset) | Err(RecvError::Lagged(_)) => {
                        let subs = h.subs.lock().expect("hub lock");
                        for s in subs.values().flatten() {
                            s.overflow.store(true, Ordering::SeqCst);
                            let _ = s.tx.try_send(StoreEvent::Reset);
                        }
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        hub
    }

    fn subscribe(
        &self,
        node: &NodeId,
    ) -> (tokio::sync::mpsc::Receiver<StoreEvent>, Arc<AtomicBool>) {
        let (tx, rx) = tokio::sync::mpsc::channel(4096);
        let overflow = Arc::new(AtomicBool::new(false));
        self.subs
            .lock()
            .expect("hub lock")
            .entry(node.clone())
            .or_default()
            .push(Sub {
                tx,
                overflow: overflow.clone(),
            });
        (rx, overflow)
    }
}

fn tasks_of(manager: &Manager, node: &NodeId) -> Vec<Task> {
    manager
        .store()
        .read(|s| s.tasks_on(node).cloned().collect())
}

/// Opens the sealed registry credentials of tasks bound for their node: the only place they
/// leave the managers in clear (over the node's mutual-TLS session).
fn open_credentials(manager: &Manager, tasks: &mut [Task]) {
    if tasks
        .iter()
        .all(|t| t.spec.container.registry_auth.sealed.is_empty())
    {
        return;
    }
    let key = manager
        .store()
        .read(|s| s.cluster().map(|c| c.root_ca.key_pem.clone()))
        .unwrap_or_default();
    for t in tasks {
        if t.spec.container.registry_auth.sealed.is_empty() {
            continue;
        }
        // Copies this task's spec: the store's stays sealed.
        let auth = &mut std::sync::Arc::make_mut(&mut t.spec)
            .container
            .registry_auth;
        match crate::registry::seal::open(&key, &auth.sealed) {
            Ok(clear) => auth.clear = clear,
            Err(e) => {
                tracing::warn!(task = %t.id, error = %e, "registry credentials of a task cannot be opened; its node pulls without them")
            }
        }
        auth.sealed.clear();
    }
}

fn messages(full: bool, tasks: &[Task], removed: Vec<String>) -> Vec<SessionMessage> {
    let mut out: Vec<SessionMessage> = tasks
        .chunks(TASKS_PER_MESSAGE)
        .enumerate()
        .map(|(i, c)| SessionMessage {
            // Only the first chunk of a full set says "full"; the rest add to it.
            full: full && i == 0,
            tasks: c.iter().map(wire::to_bytes).collect(),
            removed: Vec::new(),
        })
        .collect();
    // The agent takes a full set as complete at its first short message: a set that fills its
    // last message exactly gets an empty one after it.
    let filled = full && tasks.len().is_multiple_of(TASKS_PER_MESSAGE);
    if out.is_empty() || !removed.is_empty() || filled {
        out.push(SessionMessage {
            full: full && out.is_empty(),
            tasks: Vec::new(),
            removed,
        });
    }
    out
}

#[tonic::async_trait]
impl Dispatcher for DispatcherService {
    type SessionStream = SessionStream;

    async fn session(
        &self,
        req: Request<SessionRequest>,
    ) -> Result<Response<SessionStream>, Status> {
        // A node streams only its own assignments (they carry environment variables).
        crate::auth::require_node(&self.manager, &req, Some(&req.get_ref().node_id))?;
        let node = NodeId::new(req.into_inner().node_id);
        if !self
            .manager
            .store()
            .read(|s| s.nodes.contains_key(node.as_str()))
        {
            return Err(Status::not_found(format!(
                "node {node} is not part of this cluster (was it removed?)"
            )));
        }
        // Subscribe before reading the full set so no change falls in between.
        let (mut rx, overflow) = self.hub.subscribe(&node);
        let manager = self.manager.clone();
        let (tx, out) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut send_full = true;
            loop {
                if send_full || overflow.swap(false, Ordering::SeqCst) {
                    send_full = false;
                    let mut all = tasks_of(&manager, &node);
                    open_credentials(&manager, &mut all);
                    for m in messages(true, &all, Vec::new()) {
                        if tx.send(Ok(m)).await.is_err() {
                            return;
                        }
                    }
                }
                // Wait for a change, then coalesce what arrives within a few milliseconds.
                let first = tokio::select! {
                    r = rx.recv() => r.ok_or(RecvError::Closed),
                    _ = tx.closed() => return,
                };
                let mut changed: HashMap<TaskId, Option<Task>> = HashMap::new();
                let mut removed = false;
                let mut handle = |r: Result<StoreEvent, RecvError>| -> Result<(), bool> {
                    match r {
                        Ok(StoreEvent::Change(c)) => {
                            if let Object::Node(n) = &c.object {
                                if n.id == node && c.action == Action::Deleted {
                                    removed = true;
                                    return Err(false);
                                }
                            }
                            if let Object::Task(t) = &c.object {
                                if t.node_id.as_ref() == Some(&node) {
                                    let v = (c.action != Action::Deleted).then(|| t.clone());
                                    changed.insert(t.id.clone(), v);
                                }
                            }
                            Ok(())
                        }
                        Ok(StoreEvent::Reset) | Err(RecvError::Lagged(_)) => Err(true),
                        Err(RecvError::Closed) => Err(false),
                    }
                };
                let mut stop = false;
                let mut resync = match handle(first) {
                    Ok(()) => false,
                    Err(true) => true,
                    Err(false) => {
                        stop = true;
                        false
                    }
                };
                let deadline = tokio::time::Instant::now() + Duration::from_millis(5);
                while !resync && !stop {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Err(_) => break,
                        Ok(r) => match handle(r.ok_or(RecvError::Closed)) {
                            Ok(()) => {}
                            Err(true) => resync = true,
                            Err(false) => stop = true,
                        },
                    }
                }
                if stop && !removed {
                    return;
                }
                if removed {
                    // The node left the cluster while its session was open: end it the way a
                    // new session would be refused, so the agent removes what it runs.
                    let status = Status::permission_denied(format!(
                        "node {node} is not part of this cluster (it was removed)"
                    ));
                    let _ = tx.send(Err(swarm_api::with_node_removed(status))).await;
                    return;
                }
                if resync {
                    send_full = true;
                    continue;
                }
                if changed.is_empty() {
                    continue;
                }
                let mut tasks = Vec::new();
                let mut removed = Vec::new();
                for (id, t) in changed {
                    match t {
                        Some(t) => tasks.push(t),
                        None => removed.push(id.to_string()),
                    }
                }
                open_credentials(&manager, &mut tasks);
                for m in messages(false, &tasks, removed) {
                    if tx.send(Ok(m)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }

    type NetworkPeersStream = peers::PeersStream;
    async fn network_peers(
        &self,
        req: Request<swarm_api::dispatcher::NetworkPeersRequest>,
    ) -> Result<Response<peers::PeersStream>, Status> {
        crate::auth::require_node(&self.manager, &req, Some(&req.get_ref().node_id))?;
        let node = NodeId::new(req.into_inner().node_id);
        Ok(Response::new(peers::stream(self.manager.clone(), node)))
    }

    type DiscoveryStream = discovery::DiscoveryStream;
    async fn discovery(
        &self,
        req: Request<swarm_api::dispatcher::DiscoveryRequest>,
    ) -> Result<Response<discovery::DiscoveryStream>, Status> {
        crate::auth::require_node(&self.manager, &req, Some(&req.get_ref().node_id))?;
        let node = NodeId::new(req.into_inner().node_id);
        Ok(Response::new(discovery::stream(self.manager.clone(), node)))
    }

    type LogSubscriptionsStream = logs::SubscriptionStream;
    async fn log_subscriptions(
        &self,
        req: Request<swarm_api::dispatcher::LogSubscriptionsRequest>,
    ) -> Result<Response<logs::SubscriptionStream>, Status> {
        crate::auth::require_node(&self.manager, &req, Some(&req.get_ref().node_id))?;
        let node = NodeId::new(req.into_inner().node_id);
        Ok(Response::new(logs::subscriptions(
            self.manager.clone(),
            node,
        )?))
    }

    async fn publish_logs(
        &self,
        req: Request<tonic::Streaming<swarm_api::dispatcher::PublishLogsMessage>>,
    ) -> Result<Response<swarm_api::dispatcher::PublishLogsResponse>, Status> {
        // The node's identity comes from its certificate; every message must name it.
        let caller = crate::auth::require_node(&self.manager, &req, None)?;
        let node = caller.map(|p| NodeId::new(p.node_id));
        let r = logs::publish(&self.manager, node, req.into_inner()).await?;
        Ok(Response::new(r))
    }

    async fn update_task_status(
        &self,
        req: Request<UpdateTaskStatusRequest>,
    ) -> Result<Response<UpdateTaskStatusResponse>, Status> {
        crate::auth::require_node(&self.manager, &req, Some(&req.get_ref().node_id))?;
        let r = req.into_inner();
        let node = NodeId::new(r.node_id);
        let mut ops = Vec::with_capacity(r.updates.len());
        // This manager's copy may lag the one that sent the assignment: if it does not know a
        // task (or not yet on this node), catch up before judging, so no report is dropped.
        let lagging = self.manager.store().read(|s| {
            r.updates.iter().any(|u| {
                s.tasks
                    .get(u.task_id.as_str())
                    .is_none_or(|t| t.node_id.as_ref() != Some(&node))
            })
        });
        if lagging {
            self.manager.read_barrier(false).await?;
        }
        let mut rejected = Vec::new();
        for u in r.updates {
            let status: TaskStatus = match wire::from_bytes("task status", &u.status) {
                Ok(s) => s,
                Err(e) => {
                    rejected.push(RejectedUpdate {
                        task_id: u.task_id,
                        reason: e.message().to_string(),
                    });
                    continue;
                }
            };
            let id = TaskId::new(u.task_id);
            // A node may only report on its own tasks.
            let mine = self.manager.store().read(|s| {
                s.tasks
                    .get(id.as_str())
                    .map(|t| t.node_id.as_ref() == Some(&node))
            });
            match mine {
                Some(true) => ops.push(Op::TaskStatus { id, status }),
                Some(false) => rejected.push(RejectedUpdate {
                    reason: format!("task {id} is not assigned to node {node}"),
                    task_id: id.to_string(),
                }),
                None => {} // reaped meanwhile
            }
        }
        if !ops.is_empty() {
            self.manager.write(WriteBatch { ops, now_ms: 0 }).await?;
        }
        Ok(Response::new(UpdateTaskStatusResponse { rejected }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_types::spec::ServiceSpec;

    fn tasks(n: usize) -> Vec<Task> {
        let svc = swarm_types::Service::new(
            swarm_types::ServiceId::new("s"),
            ServiceSpec::replicated("web", "busybox", n as u64),
        );
        let mut st = swarm_types::store::StoreState::default();
        st.apply(
            &WriteBatch {
                ops: vec![Op::Create(Object::Service(Box::new(svc)))],
                now_ms: 1,
            },
            1,
        )
        .expect("service");
        let cfg = swarm_engine::orchestrator::Config {
            now_ms: 1,
            node_down_grace_ms: 1,
            task_history_limit: 1,
            running_since: Default::default(),
        };
        swarm_engine::orchestrator::reconcile(&st, &cfg)
            .into_iter()
            .filter_map(|op| match op {
                Op::Create(Object::Task(t)) => Some(t),
                _ => None,
            })
            .collect()
    }

    /// What the agent does: a full set is complete at its first short message.
    fn sizes(m: &[SessionMessage]) -> Vec<(bool, usize)> {
        m.iter().map(|m| (m.full, m.tasks.len())).collect()
    }

    #[test]
    fn a_full_set_always_ends_with_a_short_message() {
        assert_eq!(sizes(&messages(true, &[], vec![])), vec![(true, 0)]);
        assert_eq!(
            sizes(&messages(true, &tasks(250), vec![])),
            vec![(true, 200), (false, 50)]
        );
        assert_eq!(
            sizes(&messages(true, &tasks(400), vec![])),
            vec![(true, 200), (false, 200), (false, 0)]
        );
        // Changes need no terminator.
        assert_eq!(
            sizes(&messages(false, &tasks(200), vec![])),
            vec![(false, 200)]
        );
    }
}
