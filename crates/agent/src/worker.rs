//! Task execution on a node: the dispatcher session (assignments in), one controller per task
//! walking accepted → preparing → ready → starting → running → complete|failed|shutdown
//! through an `Executor`, a batching status reporter (statuses out), and the local task
//! database that lets a restarted agent re-adopt its containers instead of restarting them.

use crate::executor::{
    effective_healthcheck, healthcheck_argv, BoxFut, ContainerState, ExecError, Executor, Exit,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use swarm_api::dispatcher::dispatcher_client::DispatcherClient;
use swarm_api::dispatcher::{SessionRequest, TaskStatusUpdate, UpdateTaskStatusRequest};
use swarm_api::wire;
use swarm_types::objects::TaskStatus;
use swarm_types::spec::HealthCheck;
use swarm_types::task::TaskState;
use swarm_types::{NodeId, Task, TaskId};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::Instrument;

/// Manager addresses shared by the heartbeat session and the worker (refreshed by heartbeats),
/// with one reused gRPC channel per manager.
pub type Managers = Arc<ManagerSet>;

#[derive(Default)]
pub struct ManagerSet {
    addrs: Mutex<Vec<String>>,
    channels: Mutex<HashMap<String, tonic::transport::Channel>>,
    /// TLS client configuration (the node's certificate); None = plaintext (tests only).
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl ManagerSet {
    pub fn new(addrs: Vec<String>) -> Managers {
        Self::with_tls(addrs, None)
    }
    /// Managers reached over mutual TLS with the node's certificate.
    pub fn with_tls(addrs: Vec<String>, tls: Option<Arc<rustls::ClientConfig>>) -> Managers {
        Arc::new(ManagerSet {
            addrs: Mutex::new(addrs),
            channels: Mutex::default(),
            tls,
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
        let c = match &self.tls {
            Some(cfg) => swarm_api::tls::lazy_channel(addr, cfg.clone()),
            None => swarm_api::transport::lazy_channel(addr),
        }
        .map_err(|e| e.to_string())?;
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
        self.report_health(id, state, message, err, exit_code, "");
    }

    fn report_health(
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
                timestamp: now_ms(),
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
            Ok(resp) => {
                // Refused items can never apply (not this node's task any more, say): drop
                // them with a line instead of retrying the batch forever.
                for r in resp.into_inner().rejected {
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

enum Phase {
    New,
    Created,
    /// Started; with a health monitor when a health check applies.
    Running(Option<HealthMonitor>),
    Exited(Exit),
    Done,
}

/// What one health probe changed.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Unchanged,
    /// First success: the task now counts as running.
    Healthy,
    /// `retries` consecutive failures after the start period; carries the last output.
    Unhealthy(String),
}

/// Docker's health state machine for one container: probes every `interval`; failures during
/// `start_period` (until the first success) do not count; `retries` consecutive failures
/// make it unhealthy.
#[derive(Debug)]
struct HealthMonitor {
    hc: HealthCheck,
    argv: Vec<String>,
    since: Instant,
    failures: u64,
    healthy: bool,
}

impl HealthMonitor {
    fn new(hc: HealthCheck, healthy: bool) -> Self {
        HealthMonitor {
            argv: healthcheck_argv(&hc.test),
            hc,
            since: Instant::now(),
            failures: 0,
            healthy,
        }
    }

    fn record(&mut self, now: Instant, ok: bool, output: &str) -> Verdict {
        if ok {
            self.failures = 0;
            if self.healthy {
                return Verdict::Unchanged;
            }
            self.healthy = true;
            return Verdict::Healthy;
        }
        if !self.healthy && now.duration_since(self.since) < self.hc.start_period {
            return Verdict::Unchanged;
        }
        self.failures += 1;
        if self.failures >= self.hc.retries.max(1) {
            Verdict::Unhealthy(output.trim().to_string())
        } else {
            Verdict::Unchanged
        }
    }
}

/// The health check of a task, if one applies (task's over image's).
async fn task_healthcheck<E: Executor>(exec: &E, task: &Task) -> Option<HealthCheck> {
    let own = task.spec.container.healthcheck.as_ref();
    if own.is_some_and(|h| h.disabled()) {
        return None;
    }
    // The image is consulted only when the task's own check leaves something to inherit.
    let image = match own {
        Some(h) if !h.test.is_empty() => None,
        _ => exec.image_healthcheck(task).await,
    };
    effective_healthcheck(own, image.as_ref())
}

fn grace_of(t: &Option<Task>) -> Duration {
    t.as_ref()
        .map(|t| t.spec.container.stop_grace_period)
        .filter(|g| !g.is_zero())
        .unwrap_or(Duration::from_secs(10))
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
    // Saved again only when the manager changed the task (not on every phase step).
    let mut saved = (first.meta.version, first.desired_state);
    let mut phase = match exec.inspect(&id).await {
        Ok(Some(ContainerState::Running)) => {
            tracing::info!("re-adopted running container");
            match task_healthcheck(exec.as_ref(), &first).await {
                None => {
                    report.report(&tid, TaskState::Running, "started", "", None);
                    Phase::Running(None)
                }
                Some(hc) => {
                    // Health checking resumes; a task already reported running stays so
                    // until the checks say otherwise.
                    let healthy = first.status.state >= TaskState::Running;
                    if !healthy {
                        report.report_health(
                            &tid,
                            TaskState::Starting,
                            "starting",
                            "",
                            None,
                            "starting",
                        );
                    }
                    Phase::Running(Some(HealthMonitor::new(hc, healthy)))
                }
            }
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
            if (t.meta.version, t.desired_state) != saved {
                db.save(t);
                saved = (t.meta.version, t.desired_state);
            }
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
                    let hc = match &task {
                        Some(t) => task_healthcheck(exec.as_ref(), t).await,
                        None => None,
                    };
                    report.report_health(
                        &tid,
                        TaskState::Starting,
                        "starting",
                        "",
                        None,
                        if hc.is_some() { "starting" } else { "" },
                    );
                    match exec.start(&id).await {
                        Ok(()) => match hc {
                            None => {
                                report.report(&tid, TaskState::Running, "started", "", None);
                                Phase::Running(None)
                            }
                            Some(hc) => Phase::Running(Some(HealthMonitor::new(hc, false))),
                        },
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
            Phase::Running(mut monitor) => {
                let mut wait = exec.wait(&id);
                let mut stopping = false;
                // Set when the health check failed the task: the last probe's output.
                let mut unhealthy: Option<String> = None;
                let mut next_probe = monitor.as_ref().map(|m| Instant::now() + m.hc.interval);
                let mut probe: Option<BoxFut<'_, Result<(i32, String), ExecError>>> = None;
                loop {
                    if !stopping && stop_wanted(&rx.borrow().clone()) {
                        stopping = true;
                        probe = None;
                        let grace = grace_of(&rx.borrow());
                        if let Err(e) = exec.stop(&id, grace).await {
                            tracing::warn!(error = %e, "stop failed");
                        }
                    }
                    let probing = probe.is_some();
                    tokio::select! {
                        r = &mut wait => {
                            let exit = r.unwrap_or_else(|e| Exit { code: 255, oom_killed: false, error: Some(e.to_string()) });
                            break if let Some(out) = unhealthy {
                                report.report_health(
                                    &tid,
                                    TaskState::Failed,
                                    "unhealthy container",
                                    &format!("task: unhealthy container: {out}"),
                                    Some(exit.code),
                                    "unhealthy",
                                );
                                Phase::Done
                            } else if stopping {
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
                        _ = tokio::time::sleep_until(next_probe.unwrap_or_else(Instant::now)),
                            if !stopping && !probing && next_probe.is_some() => {
                            if let Some(m) = &monitor {
                                probe = Some(exec.exec(&id, m.argv.clone(), m.hc.timeout));
                            }
                        }
                        r = async { probe.as_mut().expect("probing").await }, if probing => {
                            probe = None;
                            let Some(m) = monitor.as_mut() else { continue };
                            next_probe = Some(Instant::now() + m.hc.interval);
                            if r.is_err()
                                && !matches!(exec.inspect(&id).await, Ok(Some(ContainerState::Running)))
                            {
                                // The container is exiting: its exit decides, not the probe.
                                continue;
                            }
                            let (ok, out) = match r {
                                Ok((0, out)) => (true, out),
                                Ok((code, out)) if out.trim().is_empty() => {
                                    (false, format!("health check exited with {code}"))
                                }
                                Ok((_, out)) => (false, out),
                                Err(e) => (false, format!("health check could not run: {e}")),
                            };
                            match m.record(Instant::now(), ok, &out) {
                                Verdict::Unchanged => {}
                                Verdict::Healthy => {
                                    report.report_health(&tid, TaskState::Running, "started", "", None, "healthy");
                                }
                                Verdict::Unhealthy(out) => {
                                    tracing::warn!(output = %out, "container is unhealthy; stopping it");
                                    unhealthy = Some(out);
                                    stopping = true;
                                    let grace = grace_of(&rx.borrow());
                                    if let Err(e) = exec.stop(&id, grace).await {
                                        tracing::warn!(error = %e, "stop failed");
                                    }
                                }
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
            if msg.tasks.len() < swarm_api::SESSION_TASKS_PER_MESSAGE {
                if let Some(set) = full_set.take() {
                    let gone: Vec<TaskId> = controllers
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::FakeExecutor;
    use swarm_types::objects::Meta;
    use swarm_types::ServiceId;

    const IMAGE: &str = "web:1";

    fn hc(interval_ms: u64, retries: u64, start_ms: u64) -> HealthCheck {
        HealthCheck {
            test: vec!["CMD-SHELL".into(), "test -f /ok".into()],
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_secs(1),
            retries,
            start_period: Duration::from_millis(start_ms),
        }
    }

    fn task(id: &str, check: Option<HealthCheck>) -> Task {
        let mut spec = swarm_types::spec::TaskSpec::default();
        spec.container.image = IMAGE.into();
        spec.container.healthcheck = check;
        spec.container.stop_grace_period = Duration::from_millis(100);
        Task {
            id: TaskId::new(id),
            meta: Meta::default(),
            service_id: ServiceId::new("svc"),
            slot: 1,
            node_id: None,
            service_name: "web".into(),
            spec_version: 1,
            spec,
            desired_state: TaskState::Running,
            status: TaskStatus::default(),
            restarts: 0,
        }
    }

    struct Harness {
        tx: watch::Sender<Option<Task>>,
        statuses: mpsc::UnboundedReceiver<(TaskId, TaskStatus)>,
        seen: Vec<TaskStatus>,
        handle: tokio::task::JoinHandle<()>,
        _dir: tempfile::TempDir,
    }

    impl Harness {
        fn start(fake: &FakeExecutor, t: Task) -> Harness {
            let dir = tempfile::tempdir().unwrap();
            let db = TaskDb::open(dir.path().join("tasks")).unwrap();
            let (rtx, statuses) = mpsc::unbounded_channel();
            let (tx, rx) = watch::channel(Some(t));
            let handle = tokio::spawn(controller(
                Arc::new(fake.clone()),
                rx,
                Reporter { tx: rtx },
                db,
            ));
            Harness {
                tx,
                statuses,
                seen: Vec::new(),
                handle,
                _dir: dir,
            }
        }

        /// Waits (up to 5 s) for a status matching `f`; returns it.
        async fn until(&mut self, what: &str, f: impl Fn(&TaskStatus) -> bool) -> TaskStatus {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match tokio::time::timeout_at(deadline, self.statuses.recv()).await {
                    Ok(Some((_, s))) => {
                        self.seen.push(s.clone());
                        if f(&s) {
                            return s;
                        }
                    }
                    _ => panic!("timed out waiting for {what}; seen: {:#?}", self.seen),
                }
            }
        }

        fn desire(&self, state: TaskState) {
            self.tx.send_modify(|t| {
                if let Some(t) = t {
                    t.desired_state = state;
                }
            });
        }
    }

    #[tokio::test]
    async fn without_healthcheck_task_runs_right_after_start() {
        let fake = FakeExecutor::default();
        let mut h = Harness::start(&fake, task("t1", None));
        let s = h.until("running", |s| s.state == TaskState::Running).await;
        assert_eq!(s.health, "");
        assert!(h.seen.iter().all(|s| s.health.is_empty()));
        assert_eq!(fake.exec_count(), 0);
    }

    #[tokio::test]
    async fn healthcheck_gates_running_until_first_success() {
        let fake = FakeExecutor::default();
        let mut h = Harness::start(&fake, task("t1", Some(hc(30, 3, 0))));
        let s = h
            .until("starting", |s| s.state == TaskState::Starting)
            .await;
        assert_eq!(s.health, "starting");
        let s = h.until("running", |s| s.state == TaskState::Running).await;
        assert_eq!(s.health, "healthy");
        assert!(fake.exec_count() >= 1, "running reported before any probe");
    }

    #[tokio::test]
    async fn failing_check_fails_the_task_and_stops_the_container() {
        let fake = FakeExecutor::default();
        fake.set_image_exec_code(IMAGE, 1);
        let mut h = Harness::start(&fake, task("t1", Some(hc(20, 3, 0))));
        let s = h.until("failed", |s| s.state.is_terminal()).await;
        assert_eq!(s.state, TaskState::Failed);
        assert_eq!(s.health, "unhealthy");
        assert!(
            s.err.starts_with("task: unhealthy container: fake exec"),
            "{}",
            s.err
        );
        assert!(h.seen.iter().all(|s| s.state != TaskState::Running));
        assert_eq!(fake.running(), 0);
        assert!(fake.exec_count() >= 3);
    }

    #[tokio::test]
    async fn becoming_unhealthy_later_fails_the_task() {
        let fake = FakeExecutor::default();
        let mut h = Harness::start(&fake, task("t1", Some(hc(20, 2, 0))));
        h.until("running", |s| s.state == TaskState::Running).await;
        fake.set_exec_code("t1", 7);
        let s = h.until("failed", |s| s.state.is_terminal()).await;
        assert_eq!(s.state, TaskState::Failed);
        assert_eq!(s.health, "unhealthy");
        assert_eq!(fake.running(), 0);
    }

    #[tokio::test]
    async fn failures_during_start_period_do_not_count() {
        let fake = FakeExecutor::default();
        fake.set_exec_code("t1", 1);
        // 1 retry: any counted failure would fail the task at once.
        let mut h = Harness::start(&fake, task("t1", Some(hc(20, 1, 400))));
        h.until("starting", |s| s.state == TaskState::Starting)
            .await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(fake.exec_count() >= 2, "probes ran in the start period");
        fake.set_exec_code("t1", 0);
        let s = h.until("running", |s| s.state != TaskState::Starting).await;
        assert_eq!(
            (s.state, s.health.as_str()),
            (TaskState::Running, "healthy")
        );
    }

    #[tokio::test]
    async fn failure_after_start_period_counts() {
        let fake = FakeExecutor::default();
        fake.set_exec_code("t1", 1);
        let mut h = Harness::start(&fake, task("t1", Some(hc(20, 1, 100))));
        let s = h.until("failed", |s| s.state.is_terminal()).await;
        assert_eq!(s.state, TaskState::Failed);
    }

    #[tokio::test]
    async fn image_healthcheck_applies_and_none_disables_it() {
        let fake = FakeExecutor::default();
        fake.set_image_healthcheck(IMAGE, hc(20, 1, 0));
        fake.set_image_exec_code(IMAGE, 1);
        let mut h = Harness::start(&fake, task("t1", None));
        let s = h.until("failed", |s| s.state.is_terminal()).await;
        assert_eq!(s.health, "unhealthy");

        let none = HealthCheck {
            test: vec!["NONE".into()],
            ..Default::default()
        };
        let mut h = Harness::start(&fake, task("t2", Some(none)));
        let s = h.until("running", |s| s.state == TaskState::Running).await;
        assert_eq!(s.health, "");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(fake.running() >= 1);
    }

    #[tokio::test]
    async fn stop_request_ends_health_checking() {
        let fake = FakeExecutor::default();
        let mut h = Harness::start(&fake, task("t1", Some(hc(10, 3, 0))));
        h.until("running", |s| s.state == TaskState::Running).await;
        h.desire(TaskState::Shutdown);
        let s = h.until("shutdown", |s| s.state.is_terminal()).await;
        assert_eq!(s.state, TaskState::Shutdown);
        let n = fake.exec_count();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(fake.exec_count(), n, "probes continued after stop");
        h.tx.send_replace(None);
        tokio::time::timeout(Duration::from_secs(5), h.handle)
            .await
            .expect("controller ends")
            .unwrap();
    }

    #[tokio::test]
    async fn readopted_container_resumes_health_checking() {
        let fake = FakeExecutor::default();
        let mut t = task("t1", Some(hc(20, 2, 0)));
        fake.prepare(&t).await.unwrap();
        fake.start("t1").await.unwrap();
        t.status.state = TaskState::Running;
        t.status.health = "healthy".into();
        let mut h = Harness::start(&fake, t);
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(fake.exec_count() >= 1, "no probes after re-adoption");
        assert!(
            h.seen.iter().all(|s| s.state == TaskState::Running),
            "{:?}",
            h.seen
        );
        fake.set_exec_code("t1", 1);
        let s = h.until("failed", |s| s.state.is_terminal()).await;
        assert_eq!(
            (s.state, s.health.as_str()),
            (TaskState::Failed, "unhealthy")
        );
    }

    #[tokio::test]
    async fn agent_shutdown_leaves_container_running_and_stops_probes() {
        let fake = FakeExecutor::default();
        let mut h = Harness::start(&fake, task("t1", Some(hc(10, 3, 0))));
        h.until("running", |s| s.state == TaskState::Running).await;
        drop(h.tx);
        tokio::time::timeout(Duration::from_secs(5), h.handle)
            .await
            .expect("controller ends")
            .unwrap();
        assert_eq!(fake.running(), 1);
    }

    #[test]
    fn monitor_counts_consecutive_failures_after_start_period() {
        let mut m = HealthMonitor::new(hc(1000, 3, 10_000), false);
        let t0 = m.since;
        assert_eq!(m.record(t0, false, "x"), Verdict::Unchanged);
        assert_eq!(m.failures, 0, "start period");
        let later = t0 + Duration::from_secs(11);
        assert_eq!(m.record(later, false, "a"), Verdict::Unchanged);
        assert_eq!(m.record(later, false, "b"), Verdict::Unchanged);
        assert_eq!(m.record(later, true, ""), Verdict::Healthy);
        assert_eq!(m.record(later, true, ""), Verdict::Unchanged);
        assert_eq!(m.record(later, false, "a"), Verdict::Unchanged);
        assert_eq!(m.record(later, false, "b"), Verdict::Unchanged);
        assert_eq!(
            m.record(later, false, " boom\n"),
            Verdict::Unhealthy("boom".into())
        );
        // Once healthy, the start period no longer shields failures.
        let mut m = HealthMonitor::new(hc(1000, 1, 10_000), false);
        let t0 = m.since;
        assert_eq!(m.record(t0, true, ""), Verdict::Healthy);
        assert_eq!(m.record(t0, false, "x"), Verdict::Unhealthy("x".into()));
    }
}
