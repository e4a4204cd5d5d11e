//! The task state machine: one `Controller` per assigned task drives it through an
//! `Executor`, a method per phase (like SwarmKit's `exec.Do`): new → prepared (accepted,
//! preparing, ready) → started (starting, running; health-gated when a check applies) →
//! exited (complete | failed) → done (removed when the manager lets go). It reports every
//! step through the `Reporter` and keeps the local task db current; it never talks to a
//! manager itself and never restarts a container it re-adopts.

use crate::executor::{BoxFut, ContainerState, ExecError, Executor, Exit};
use crate::health::{probe_outcome, task_healthcheck, HealthMonitor, Verdict};
use crate::reporter::Reporter;
use crate::task_db::TaskDb;
use std::sync::Arc;
use std::time::Duration;
use swarm_types::task::TaskState;
use swarm_types::{Task, TaskId};
use tokio::sync::watch;
use tokio::time::Instant;

enum Phase {
    New,
    Created,
    /// Started; with a health monitor when a health check applies.
    Running(Option<HealthMonitor>),
    Exited(Exit),
    Done,
}

/// Drives one task to its desired state. The worker sends it every version of the task the
/// dispatcher streams, and `None` (or closes the channel) when the task is no longer this
/// node's.
pub(crate) struct Controller<E: Executor> {
    exec: Arc<E>,
    rx: watch::Receiver<Option<Task>>,
    report: Reporter,
    db: TaskDb,
    tid: TaskId,
    /// The container's id (the task id).
    id: String,
    /// The task's `(meta.version, desired_state)` as last saved in the task db: saved again
    /// only when the manager changed the task, not on every phase step.
    saved: (u64, TaskState),
    /// The task has network addresses: it drains before it stops.
    on_network: bool,
}

/// How long a task on a network keeps running after it was asked to stop, so that every
/// host has dropped it from DNS and service addresses before it gets its stop signal.
pub(crate) const DRAIN: std::time::Duration = std::time::Duration::from_millis(500);

impl<E: Executor> Controller<E> {
    /// Runs until the task is gone from the assignment set (or marked for removal) and its
    /// container is removed, or until the worker goes away (the container keeps running).
    pub(crate) async fn run(
        exec: Arc<E>,
        rx: watch::Receiver<Option<Task>>,
        report: Reporter,
        db: TaskDb,
    ) {
        let Some(first) = rx.borrow().clone() else {
            return;
        };
        db.save(&first);
        let mut c = Controller {
            exec,
            rx,
            report,
            db,
            tid: first.id.clone(),
            id: first.id.to_string(),
            saved: (first.meta.version, first.desired_state),
            on_network: !first.networks.is_empty(),
        };
        let mut phase = c.adopt(&first).await;
        loop {
            let task = c.current();
            phase = match phase {
                Phase::New => c.prepare(task).await,
                Phase::Created => c.start(task).await,
                Phase::Running(monitor) => match c.running(monitor).await {
                    Some(next) => next,
                    None => return,
                },
                Phase::Exited(exit) => c.exited(exit),
                Phase::Done => {
                    if !c.done(task).await {
                        return;
                    }
                    Phase::Done
                }
            };
        }
    }

    /// The task as the manager wants it now (None: no longer this node's), saved to the task
    /// db when the manager changed it.
    fn current(&mut self) -> Option<Task> {
        let task = self.rx.borrow().clone();
        if let Some(t) = &task {
            if (t.meta.version, t.desired_state) != self.saved {
                self.db.save(t);
                self.saved = (t.meta.version, t.desired_state);
            }
        }
        task
    }

    /// Where to start: a container left by an earlier run of the agent is picked up where it
    /// stands; a task that had started but whose container is gone has failed.
    async fn adopt(&self, first: &Task) -> Phase {
        let tid = &self.tid;
        match self.exec.inspect(&self.id).await {
            Ok(Some(ContainerState::Running)) => {
                tracing::info!("re-adopted running container");
                match task_healthcheck(self.exec.as_ref(), first).await {
                    None => {
                        self.report
                            .report(tid, TaskState::Running, "started", "", None);
                        Phase::Running(None)
                    }
                    Some(hc) => {
                        // Health checking resumes; a task already reported running stays so
                        // until the checks say otherwise.
                        let healthy = first.status.state >= TaskState::Running;
                        if !healthy {
                            self.report.report_health(
                                tid,
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
                self.report.report(
                    tid,
                    TaskState::Failed,
                    "container lost",
                    "container disappeared while the agent was down",
                    None,
                );
                Phase::Done
            }
            _ => Phase::New,
        }
    }

    /// Accepts the task and creates its container.
    async fn prepare(&self, task: Option<Task>) -> Phase {
        let tid = &self.tid;
        let Some(t) = task.filter(|t| !stop_wanted(t)) else {
            self.report.report(
                tid,
                TaskState::Shutdown,
                "shut down before it started",
                "",
                None,
            );
            return Phase::Done;
        };
        self.report
            .report(tid, TaskState::Accepted, "accepted", "", None);
        self.report
            .report(tid, TaskState::Preparing, "preparing", "", None);
        // While preparing (an image pull may take minutes), say how far it got every second.
        let prepare = self.exec.prepare(&t);
        tokio::pin!(prepare);
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut told = String::new();
        let prepared = loop {
            tokio::select! {
                r = &mut prepare => break r,
                _ = tick.tick() => {
                    if let Some(p) = self.exec.progress(&t).filter(|p| *p != told) {
                        self.report.report(tid, TaskState::Preparing, &p, "", None);
                        told = p;
                    }
                }
            }
        };
        match prepared {
            Ok(()) => {
                self.report
                    .report(tid, TaskState::Ready, "prepared", "", None);
                Phase::Created
            }
            Err(ExecError::RejectedHere(m)) => {
                tracing::warn!(error = %m, "task rejected for a reason of this node");
                self.report.report(
                    tid,
                    TaskState::Rejected,
                    swarm_types::objects::NODE_LOCAL_REJECTION,
                    &m,
                    None,
                );
                Phase::Done
            }
            Err(ExecError::Rejected(m)) => {
                tracing::warn!(error = %m, "task rejected");
                self.report
                    .report(tid, TaskState::Rejected, "preparing failed", &m, None);
                Phase::Done
            }
            Err(e) => {
                self.report.report(
                    tid,
                    TaskState::Failed,
                    "preparing failed",
                    &e.to_string(),
                    None,
                );
                Phase::Done
            }
        }
    }

    /// Starts the created container; the task runs at once, or after its first healthy probe
    /// when a health check applies.
    async fn start(&self, task: Option<Task>) -> Phase {
        let tid = &self.tid;
        let Some(t) = task.filter(|t| !stop_wanted(t)) else {
            let _ = self.exec.remove(&self.id).await;
            self.report.report(
                tid,
                TaskState::Shutdown,
                "shut down before it started",
                "",
                None,
            );
            return Phase::Done;
        };
        let hc = task_healthcheck(self.exec.as_ref(), &t).await;
        self.report.report_health(
            tid,
            TaskState::Starting,
            "starting",
            "",
            None,
            if hc.is_some() { "starting" } else { "" },
        );
        match self.exec.start(&self.id).await {
            Ok(()) => match hc {
                None => {
                    self.report
                        .report(tid, TaskState::Running, "started", "", None);
                    Phase::Running(None)
                }
                Some(hc) => Phase::Running(Some(HealthMonitor::new(hc, false))),
            },
            Err(e) => {
                self.report.report(
                    tid,
                    TaskState::Failed,
                    "starting failed",
                    &e.to_string(),
                    None,
                );
                Phase::Done
            }
        }
    }

    /// Watches the running container until it exits: stops it when the manager asks (or
    /// when its health check fails), probes it when a health check applies. None: the worker
    /// is going away (agent shutdown) and the container is left running.
    async fn running(&mut self, mut monitor: Option<HealthMonitor>) -> Option<Phase> {
        let mut wait = self.exec.wait(&self.id);
        let mut stopping = false;
        // Set when the health check failed the task: the last probe's output.
        let mut unhealthy: Option<String> = None;
        let mut next_probe = monitor.as_ref().map(|m| Instant::now() + m.interval());
        let mut probe: Option<BoxFut<'_, Result<(i32, String), ExecError>>> = None;
        loop {
            if !stopping && self.rx.borrow().as_ref().is_none_or(stop_wanted) {
                stopping = true;
                probe = None;
                if self.on_network {
                    // Every host drops the task from DNS answers and service addresses as
                    // soon as the store says it is to stop; new connections stop arriving
                    // before the stop signal does.
                    tokio::time::sleep(DRAIN).await;
                }
                self.stop_container().await;
            }
            let probing = probe.is_some();
            tokio::select! {
                r = &mut wait => {
                    let exit = r.unwrap_or_else(|e| Exit { code: 255, oom_killed: false, error: Some(e.to_string()) });
                    return Some(self.ended(exit, stopping, unhealthy));
                }
                c = self.rx.changed(), if !stopping => {
                    if c.is_err() {
                        return None;
                    }
                }
                _ = tokio::time::sleep_until(next_probe.unwrap_or_else(Instant::now)),
                    if !stopping && !probing && next_probe.is_some() => {
                    if let Some(m) = &monitor {
                        let (argv, timeout) = m.probe();
                        probe = Some(self.exec.exec(&self.id, argv, timeout));
                    }
                }
                r = async { probe.as_mut().expect("probing").await }, if probing => {
                    probe = None;
                    let Some(m) = monitor.as_mut() else { continue };
                    next_probe = Some(Instant::now() + m.interval());
                    if let Some(out) = self.judge_probe(m, r).await {
                        tracing::warn!(output = %out, "container is unhealthy; stopping it");
                        if self.on_network {
                            // Failed first, so every host drops it from DNS, VIPs and ports
                            // (the exit code is not known yet), then stopped after the drain.
                            self.report_unhealthy(&out, None);
                            tokio::time::sleep(DRAIN).await;
                        }
                        unhealthy = Some(out);
                        stopping = true;
                        self.stop_container().await;
                    }
                }
            }
        }
    }

    /// Feeds one probe result to the monitor and reports a task that became healthy; returns
    /// the last output when the container has become unhealthy.
    async fn judge_probe(
        &self,
        m: &mut HealthMonitor,
        r: Result<(i32, String), ExecError>,
    ) -> Option<String> {
        if r.is_err()
            && !matches!(
                self.exec.inspect(&self.id).await,
                Ok(Some(ContainerState::Running))
            )
        {
            // The container is exiting: its exit decides, not the probe.
            return None;
        }
        let (ok, out) = probe_outcome(r);
        match m.record(Instant::now(), ok, &out) {
            Verdict::Unchanged => None,
            Verdict::Healthy => {
                self.report.report_health(
                    &self.tid,
                    TaskState::Running,
                    "started",
                    "",
                    None,
                    "healthy",
                );
                None
            }
            Verdict::Unhealthy(out) => Some(out),
        }
    }

    fn report_unhealthy(&self, out: &str, exit_code: Option<i32>) {
        self.report.report_health(
            &self.tid,
            TaskState::Failed,
            "unhealthy container",
            &format!("task: unhealthy container: {out}"),
            exit_code,
            "unhealthy",
        );
    }

    /// Stops the container with the task's grace period.
    async fn stop_container(&self) {
        let grace = grace_of(self.rx.borrow().as_ref());
        if let Err(e) = self.exec.stop(&self.id, grace).await {
            tracing::warn!(error = %e, "stop failed");
        }
    }

    /// What a running container's end means: failed by its health check, shut down as
    /// asked, or an exit of its own.
    fn ended(&self, exit: Exit, stopping: bool, unhealthy: Option<String>) -> Phase {
        if let Some(out) = unhealthy {
            self.report_unhealthy(&out, Some(exit.code));
            Phase::Done
        } else if stopping {
            self.report.report(
                &self.tid,
                TaskState::Shutdown,
                "shutdown",
                "",
                Some(exit.code),
            );
            Phase::Done
        } else {
            Phase::Exited(exit)
        }
    }

    /// Reports how the container ended on its own.
    fn exited(&self, e: Exit) -> Phase {
        let tid = &self.tid;
        if e.oom_killed {
            self.report.report(
                tid,
                TaskState::Failed,
                "failed",
                "task: killed by the kernel OOM killer (memory limit)",
                Some(e.code),
            );
        } else if let Some(err) = e.error {
            self.report
                .report(tid, TaskState::Failed, "failed", &err, Some(e.code));
        } else if e.code == 0 {
            self.report
                .report(tid, TaskState::Complete, "finished", "", Some(0));
        } else {
            self.report.report(
                tid,
                TaskState::Failed,
                "failed",
                &format!("task: non-zero exit ({})", e.code),
                Some(e.code),
            );
        }
        Phase::Done
    }

    /// A finished task: removes its container and forgets it once the manager lets go;
    /// until then waits for the next change. False: the controller ends.
    async fn done(&mut self, task: Option<Task>) -> bool {
        if task
            .as_ref()
            .is_none_or(|t| t.desired_state >= TaskState::Remove)
        {
            if let Err(e) = self.exec.remove(&self.id).await {
                tracing::warn!(error = %e, "remove container failed");
            }
            self.db.remove(&self.id);
            return false;
        }
        self.rx.changed().await.is_ok()
    }
}

fn grace_of(t: Option<&Task>) -> Duration {
    t.map(|t| t.spec.container.stop_grace_period)
        .filter(|g| !g.is_zero())
        .unwrap_or(Duration::from_secs(10))
}

fn stop_wanted(t: &Task) -> bool {
    t.desired_state >= TaskState::Shutdown
}

#[cfg(test)]
mod tests;
