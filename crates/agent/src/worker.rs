//! Task execution on a node: the dispatcher session (assignments in), one controller per task
//! walking accepted → preparing → ready → starting → running → complete|failed|shutdown
//! through an `Executor`, a batching status reporter (statuses out), and the local task
//! database that lets a restarted agent re-adopt its containers instead of restarting them.

use crate::executor::{ContainerState, ExecError, Executor, Exit};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use swarm_api::dispatcher::dispatcher_client::DispatcherClient;
use swarm_api::dispatcher::{SessionRequest, TaskStatusUpdate, UpdateTaskStatusRequest};
use swarm_api::wire;
use swarm_types::objects::TaskStatus;
use swarm_types::task::TaskState;
use swarm_types::{NodeId, Task, TaskId};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

/// Manager addresses shared by the heartbeat session and the worker (refreshed by heartbeats),
/// with one reused gRPC channel per manager.
pub type Managers = Arc<ManagerSet>;

#[derive(Default)]
pub struct ManagerSet {
    addrs: Mutex<Vec<String>>,
    channels: Mutex<HashMap<String, tonic::transport::Channel>>,
}

impl ManagerSet {
    pub fn new(addrs: Vec<String>) -> Managers {
        Arc::new(ManagerSet {
            addrs: Mutex::new(addrs),
            channels: Mutex::default(),
        })
    }
    pub fn addrs(&self) -> Vec<String> {
        self.addrs.lock().expect("managers lock").clone()
    }
    pub fn set(&self, addrs: Vec<String>) {
        *self.addrs.lock().expect("managers lock") = addrs;
    }
    /// A shared channel to `addr` (connects lazily, reconnects after failures).
    pub fn channel(&self, addr: &str) -> Result<tonic::transport::Channel, String> {
        let mut m = self.channels.lock().expect("channels lock");
        if let Some(c) = m.get(addr) {
            return Ok(c.clone());
        }
        let c = swarm_api::transport::lazy_channel(addr).map_err(|e| e.to_string())?;
        m.insert(addr.to_string(), c.clone());
        Ok(c)
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The local task database: one JSON file per task this node is responsible for.
#[derive(Clone)]
pub struct TaskDb {
    dir: PathBuf,
}

impl TaskDb {
    pub fn open(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(TaskDb { dir })
    }
    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }
    pub fn save(&self, t: &Task) {
        let p = self.path(t.id.as_str());
        let tmp = p.with_extension("tmp");
        let res = std::fs::write(&tmp, wire::to_bytes(t)).and_then(|_| std::fs::rename(&tmp, &p));
        if let Err(e) = res {
            tracing::warn!(task = %t.id, error = %e, "cannot save task to the local task db");
        }
    }
    pub fn remove(&self, id: &str) {
        let _ = std::fs::remove_file(self.path(id));
    }
    pub fn load_all(&self) -> Vec<Task> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect()
    }
}

/// Hands task statuses to the background reporter.
#[derive(Clone)]
pub struct Reporter {
    tx: mpsc::UnboundedSender<(TaskId, TaskStatus)>,
}

impl Reporter {
    fn report(
        &self,
        id: &TaskId,
        state: TaskState,
        message: &str,
        err: &str,
        exit_code: Option<i32>,
    ) {
        let _ = self.tx.send((
            id.clone(),
            TaskStatus {
                state,
                timestamp: now_ms(),
                message: message.to_string(),
                err: err.to_string(),
                exit_code,
                container_id: id.to_string(),
                health: String::new(),
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
            // Keep the furthest state per task (a terminal state must not be lost to a stale one).
            match pending.get(&id) {
                Some(cur) if cur.state > s.state => {}
                _ => {
                    pending.insert(id, s);
                }
            }
        }
        let addrs = managers.addrs();
        if addrs.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let addr = &addrs[idx % addrs.len()];
        let batch: Vec<(TaskId, TaskStatus)> = pending
            .iter()
            .take(500)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
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
        let res = async {
            let ch = managers.channel(addr)?;
            let mut r = tonic::Request::new(req);
            r.set_timeout(Duration::from_secs(5));
            DispatcherClient::new(ch)
                .update_task_status(r)
                .await
                .map_err(|s| s.message().to_string())
        }
        .await;
        match res {
            Ok(_) => {
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

enum Phase {
    New,
    Created,
    Running,
    Exited(Exit),
    Done,
}

fn stop_wanted(t: &Option<Task>) -> bool {
    t.as_ref()
        .is_none_or(|t| t.desired_state >= TaskState::Shutdown)
}

fn remove_wanted(t: &Option<Task>) -> bool {
    t.as_ref()
        .is_none_or(|t| t.desired_state >= TaskState::Remove)
}

/// Drives one task to its desired state. Ends when the task is gone from the assignment set
/// (or marked for removal) and its container is removed.
async fn controller<E: Executor>(
    exec: Arc<E>,
    mut rx: watch::Receiver<Option<Task>>,
    report: Reporter,
    db: TaskDb,
) {
    let Some(first) = rx.borrow().clone() else {
        return;
    };
    let tid = first.id.clone();
    let id = tid.to_string();
    db.save(&first);
    let mut phase = match exec.inspect(&id).await {
        Ok(Some(ContainerState::Running)) => {
            tracing::info!("re-adopted running container");
            report.report(&tid, TaskState::Running, "started", "", None);
            Phase::Running
        }
        Ok(Some(ContainerState::Exited(e))) => Phase::Exited(e),
        Ok(Some(ContainerState::Created)) => Phase::Created,
        _ if first.status.state.is_terminal() => Phase::Done,
        _ if first.status.state >= TaskState::Starting => {
            // It was started before, but its container is gone: it cannot be re-adopted.
            report.report(
                &tid,
                TaskState::Failed,
                "container lost",
                "container disappeared while the agent was down",
                None,
            );
            Phase::Done
        }
        _ => Phase::New,
    };
    loop {
        let task = rx.borrow().clone();
        if let Some(t) = &task {
            db.save(t);
        }
        phase = match phase {
            Phase::New => {
                if stop_wanted(&task) {
                    report.report(
                        &tid,
                        TaskState::Shutdown,
                        "shut down before it started",
                        "",
                        None,
                    );
                    Phase::Done
                } else {
                    let t = task.expect("checked by stop_wanted");
                    report.report(&tid, TaskState::Accepted, "accepted", "", None);
                    report.report(&tid, TaskState::Preparing, "preparing", "", None);
                    match exec.prepare(&t).await {
                        Ok(()) => {
                            report.report(&tid, TaskState::Ready, "prepared", "", None);
                            Phase::Created
                        }
                        Err(ExecError::Rejected(m)) => {
                            tracing::warn!(error = %m, "task rejected");
                            report.report(&tid, TaskState::Rejected, "preparing failed", &m, None);
                            Phase::Done
                        }
                        Err(e) => {
                            report.report(
                                &tid,
                                TaskState::Failed,
                                "preparing failed",
                                &e.to_string(),
                                None,
                            );
                            Phase::Done
                        }
                    }
                }
            }
            Phase::Created => {
                if stop_wanted(&task) {
                    let _ = exec.remove(&id).await;
                    report.report(
                        &tid,
                        TaskState::Shutdown,
                        "shut down before it started",
                        "",
                        None,
                    );
                    Phase::Done
                } else {
                    report.report(&tid, TaskState::Starting, "starting", "", None);
                    match exec.start(&id).await {
                        Ok(()) => {
                            report.report(&tid, TaskState::Running, "started", "", None);
                            Phase::Running
                        }
                        Err(e) => {
                            report.report(
                                &tid,
                                TaskState::Failed,
                                "starting failed",
                                &e.to_string(),
                                None,
                            );
                            Phase::Done
                        }
                    }
                }
            }
            Phase::Running => {
                let mut wait = exec.wait(&id);
                let mut stopping = false;
                loop {
                    if !stopping && stop_wanted(&rx.borrow().clone()) {
                        stopping = true;
                        let grace = rx
                            .borrow()
                            .as_ref()
                            .map(|t| t.spec.container.stop_grace_period)
                            .filter(|g| !g.is_zero())
                            .unwrap_or(Duration::from_secs(10));
                        if let Err(e) = exec.stop(&id, grace).await {
                            tracing::warn!(error = %e, "stop failed");
                        }
                    }
                    tokio::select! {
                        r = &mut wait => {
                            let exit = r.unwrap_or_else(|e| Exit { code: 255, oom_killed: false, error: Some(e.to_string()) });
                            break if stopping {
                                report.report(&tid, TaskState::Shutdown, "shutdown", "", Some(exit.code));
                                Phase::Done
                            } else {
                                Phase::Exited(exit)
                            };
                        }
                        c = rx.changed(), if !stopping => {
                            if c.is_err() {
                                // The worker is going away (agent shutdown): leave it running.
                                return;
                            }
                        }
                    }
                }
            }
            Phase::Exited(e) => {
                if e.oom_killed {
                    report.report(
                        &tid,
                        TaskState::Failed,
                        "failed",
                        "task: killed by the kernel OOM killer (memory limit)",
                        Some(e.code),
                    );
                } else if let Some(err) = e.error {
                    report.report(&tid, TaskState::Failed, "failed", &err, Some(e.code));
                } else if e.code == 0 {
                    report.report(&tid, TaskState::Complete, "finished", "", Some(0));
                } else {
                    report.report(
                        &tid,
                        TaskState::Failed,
                        "failed",
                        &format!("task: non-zero exit ({})", e.code),
                        Some(e.code),
                    );
                }
                Phase::Done
            }
            Phase::Done => {
                if remove_wanted(&task) {
                    if let Err(e) = exec.remove(&id).await {
                        tracing::warn!(error = %e, "remove container failed");
                    }
                    db.remove(&id);
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
                Phase::Done
            }
        };
    }
}

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
    let (rtx, rrx) = mpsc::unbounded_channel();
    tokio::spawn(report_loop(node.clone(), managers.clone(), rrx));
    let reporter = Reporter { tx: rtx };
    let mut controllers: HashMap<TaskId, watch::Sender<Option<Task>>> = HashMap::new();
    let upsert = |controllers: &mut HashMap<TaskId, watch::Sender<Option<Task>>>, t: Task| {
        if let Some(tx) = controllers.get(&t.id) {
            if !tx.is_closed() {
                tx.send_replace(Some(t));
                return;
            }
        }
        let span = tracing::info_span!("task", task = %t.id, service = %t.service_name);
        let (tx, rx) = watch::channel(Some(t.clone()));
        controllers.insert(t.id.clone(), tx);
        tokio::spawn(controller(exec.clone(), rx, reporter.clone(), db.clone()).instrument(span));
    };
    // Re-adopt what this node ran before a restart.
    for t in db.load_all() {
        upsert(&mut controllers, t);
    }
    let mut idx = 0usize;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let addrs = managers.addrs();
        if addrs.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let addr = addrs[idx % addrs.len()].clone();
        let stream = async {
            let ch = managers.channel(&addr)?;
            DispatcherClient::new(ch)
                .max_decoding_message_size(swarm_api::MAX_MESSAGE_BYTES)
                .session(SessionRequest {
                    node_id: node.to_string(),
                })
                .await
                .map(|r| r.into_inner())
                .map_err(|s| s.message().to_string())
        };
        let mut stream = match tokio::time::timeout(Duration::from_secs(5), stream).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(manager = %addr, error = %e, "dispatcher session failed");
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
        let mut full_set: Option<HashSet<TaskId>> = None;
        loop {
            let msg = tokio::select! {
                m = stream.message() => m,
                _ = shutdown.changed() => return,
            };
            let msg = match msg {
                Ok(Some(m)) => m,
                Ok(None) | Err(_) => break,
            };
            if msg.full {
                full_set = Some(HashSet::new());
            }
            for b in &msg.tasks {
                match serde_json::from_slice::<Task>(b) {
                    Ok(t) => {
                        if let Some(set) = full_set.as_mut() {
                            set.insert(t.id.clone());
                        }
                        upsert(&mut controllers, t);
                    }
                    Err(e) => tracing::warn!(error = %e, "malformed task from dispatcher"),
                }
            }
            for r in &msg.removed {
                if let Some(tx) = controllers.remove(r.as_str()) {
                    tx.send_replace(None);
                }
            }
            // A full set may span several messages; it is complete when one ends short.
            if msg.tasks.len() < 200 {
                if let Some(set) = full_set.take() {
                    let gone: Vec<TaskId> = controllers
                        .keys()
                        .filter(|k| !set.contains(*k))
                        .cloned()
                        .collect();
                    for k in gone {
                        if let Some(tx) = controllers.remove(&k) {
                            tx.send_replace(None);
                        }
                    }
                }
            }
            controllers.retain(|_, tx| !tx.is_closed());
        }
        tracing::info!(manager = %addr, "dispatcher session lost; reconnecting");
        idx += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
