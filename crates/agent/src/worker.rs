//! The worker: wires the status reporter, the local task db and one `Controller` per task,
//! and runs the dispatcher session loop (assignments in, failing over between managers). It
//! decides no task state itself (the controllers do) and leaves running containers running
//! when it stops.

use crate::controller::Controller;
use crate::executor::Executor;
use crate::managers::Managers;
use crate::reporter::Reporter;
use crate::task_db::TaskDb;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use swarm_api::dispatcher::dispatcher_client::DispatcherClient;
use swarm_api::dispatcher::{SessionMessage, SessionRequest};
use swarm_types::{NodeId, Task, TaskId};
use tokio::sync::watch;
use tonic::Streaming;
use tracing::Instrument;

/// Runs the node's tasks until `shutdown`. Running containers are left running on shutdown.
pub async fn run<E: Executor>(
    node: NodeId,
    db_dir: PathBuf,
    exec: Arc<E>,
    managers: Managers,
    mut shutdown: watch::Receiver<bool>,
) {
    let db = match TaskDb::open(db_dir) {
        Ok(db) => db,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the local task db; tasks will not run");
            return;
        }
    };
    let mut controllers = Controllers {
        reporter: Reporter::spawn(node.clone(), managers.clone()),
        exec,
        db: db.clone(),
        by_task: HashMap::new(),
    };
    // Re-adopt what this node ran before a restart.
    for t in db.load_all() {
        controllers.upsert(t);
    }
    let mut idx = 0usize;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let Some(addr) = managers.pick(idx) else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let open = open_session(&managers, &addr, &node);
        let stream = match tokio::time::timeout(Duration::from_secs(5), open).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) if swarm_api::node_removed(&e) => {
                controllers.removed_from_cluster();
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
            Ok(Err(e)) => {
                tracing::debug!(manager = %addr, error = %e.message(), "dispatcher session failed");
                idx += 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
            Err(_) => {
                idx += 1;
                continue;
            }
        };
        tracing::info!(manager = %addr, "dispatcher session open");
        match follow(stream, &mut controllers, &mut shutdown).await {
            SessionEnd::Shutdown => return,
            SessionEnd::Removed => {
                controllers.removed_from_cluster();
                continue;
            }
            SessionEnd::Lost => {}
        }
        tracing::info!(manager = %addr, "dispatcher session lost; reconnecting");
        idx += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn open_session(
    managers: &Managers,
    addr: &str,
    node: &NodeId,
) -> Result<Streaming<SessionMessage>, tonic::Status> {
    let ch = managers.channel(addr).map_err(tonic::Status::unavailable)?;
    DispatcherClient::new(ch)
        .max_decoding_message_size(swarm_api::MAX_MESSAGE_BYTES)
        .session(SessionRequest {
            node_id: node.to_string(),
        })
        .await
        .map(|r| r.into_inner())
}

/// Everything that moves a dispatcher session on.
enum Event {
    Message(Result<Option<SessionMessage>, tonic::Status>),
    Shutdown,
}

enum SessionEnd {
    Lost,
    Shutdown,
    /// The leader ended the session because this node was removed from the cluster.
    Removed,
}

/// Applies one session's assignments until the stream ends or the agent shuts down.
async fn follow<E: Executor>(
    mut stream: Streaming<SessionMessage>,
    controllers: &mut Controllers<E>,
    shutdown: &mut watch::Receiver<bool>,
) -> SessionEnd {
    // Task ids of a full assignment set still being received.
    let mut full_set: Option<HashSet<TaskId>> = None;
    loop {
        let event = tokio::select! {
            m = stream.message() => Event::Message(m),
            _ = shutdown.changed() => Event::Shutdown,
        };
        match event {
            Event::Shutdown => return SessionEnd::Shutdown,
            Event::Message(Ok(Some(msg))) => controllers.apply(msg, &mut full_set),
            Event::Message(Err(e)) if swarm_api::node_removed(&e) => return SessionEnd::Removed,
            Event::Message(Ok(None) | Err(_)) => return SessionEnd::Lost,
        }
    }
}

/// The controllers of this node's tasks, each fed the latest version of its task.
struct Controllers<E: Executor> {
    exec: Arc<E>,
    reporter: Reporter,
    db: TaskDb,
    by_task: HashMap<TaskId, watch::Sender<Option<Task>>>,
}

impl<E: Executor> Controllers<E> {
    /// Hands `t` to its controller, starting one if the task has none (or its controller
    /// has ended).
    fn upsert(&mut self, t: Task) {
        if let Some(tx) = self.by_task.get(&t.id) {
            if !tx.is_closed() {
                tx.send_replace(Some(t));
                return;
            }
        }
        let span = tracing::info_span!("task", task = %t.id, service = %t.service_name);
        let (tx, rx) = watch::channel(Some(t.clone()));
        self.by_task.insert(t.id.clone(), tx);
        let run = Controller::run(
            self.exec.clone(),
            rx,
            self.reporter.clone(),
            self.db.clone(),
        );
        tokio::spawn(run.instrument(span));
    }

    /// The leader says this node is no longer in the cluster: what it runs is orphaned (its
    /// tasks were rescheduled elsewhere), so every task goes, and with the last container the
    /// node's networks, rules and bridges (`DataPlane::collect`).
    fn removed_from_cluster(&mut self) {
        if self.by_task.is_empty() {
            return;
        }
        tracing::warn!(
            tasks = self.by_task.len(),
            "this node was removed from the cluster: stopping and removing its tasks; join \
             again with a new --state-dir to run tasks here"
        );
        let ids: Vec<TaskId> = self.by_task.keys().cloned().collect();
        for id in ids {
            self.remove(id.as_str());
        }
    }

    /// The task is no longer this node's: its controller stops and removes it.
    fn remove(&mut self, id: &str) {
        if let Some(tx) = self.by_task.remove(id) {
            tx.send_replace(None);
        }
    }

    /// Applies one session message. A full set may span several messages; it is complete
    /// when one ends short, and then every task outside it goes.
    fn apply(&mut self, msg: SessionMessage, full_set: &mut Option<HashSet<TaskId>>) {
        if msg.full {
            *full_set = Some(HashSet::new());
        }
        for b in &msg.tasks {
            match serde_json::from_slice::<Task>(b) {
                Ok(t) => {
                    if let Some(set) = full_set.as_mut() {
                        set.insert(t.id.clone());
                    }
                    self.upsert(t);
                }
                Err(e) => tracing::warn!(error = %e, "malformed task from dispatcher"),
            }
        }
        for r in &msg.removed {
            self.remove(r);
        }
        if msg.tasks.len() < swarm_api::SESSION_TASKS_PER_MESSAGE {
            if let Some(set) = full_set.take() {
                let gone: Vec<TaskId> = self
                    .by_task
                    .keys()
                    .filter(|k| !set.contains(*k))
                    .cloned()
                    .collect();
                tracing::info!(
                    tasks = set.len(),
                    dropped = gone.len(),
                    "full assignment set applied"
                );
                for k in gone {
                    self.remove(k.as_str());
                }
            }
        }
        self.by_task.retain(|_, tx| !tx.is_closed());
    }
}
