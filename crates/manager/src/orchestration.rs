//! Leader-only control loop: runs the pure orchestrators and the scheduler of `swarm_types`
//! on the store and writes their decisions through Raft in batches. It wakes on store changes
//! and on a periodic tick (restart delays, node-down grace), stops acting the moment this
//! manager is no longer the leader, and, being a function of the store alone, resumes on a
//! new leader without duplicating work.

use crate::manager::Manager;
use std::time::Duration;
use swarm_engine::orchestrator;
use swarm_types::store::{Op, WriteBatch};
use swarm_types::task::TaskState;
use swarm_types::TaskId;
use tokio::sync::watch;

/// Ops per Raft entry: large enough to place thousands of tasks per second, small enough to
/// keep each entry (and each append) far below the message limit.
pub const BATCH_OPS: usize = 500;

#[derive(Clone, Debug)]
pub struct LoopConfig {
    pub node_down_grace: Duration,
    /// How often the services that wait on time (restart delays, a down node's grace, update
    /// pacing) are looked at again when nothing else happened.
    pub tick: Duration,
    /// How often every service is, whatever happened: a pass is idempotent, so this only
    /// bounds how long anything the change events missed could wait.
    pub full_every: Duration,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            node_down_grace: Duration::from_secs(2),
            tick: Duration::from_secs(1),
            full_every: Duration::from_secs(10),
        }
    }
}

async fn write_all(manager: &Manager, ops: Vec<Op>) -> bool {
    let mut ok = true;
    // Service updates (update status) carry a version check; written alone, a conflict with an
    // operator's concurrent update costs nothing but a retry on the next pass.
    let (services, ops): (Vec<Op>, Vec<Op>) = ops
        .into_iter()
        .partition(|op| matches!(op, Op::Update(swarm_types::Object::Service(_))));
    for op in services {
        if let Err(e) = manager
            .write(WriteBatch {
                ops: vec![op],
                now_ms: 0,
            })
            .await
        {
            tracing::debug!(error = %e, "update status write failed");
        }
    }
    // The chunks touch distinct tasks (or commute: status and desired state only move
    // forward), so they are proposed together: group commit packs them into a few entries
    // instead of one Raft round trip per chunk.
    let mut chunks = Vec::new();
    let mut ops = ops.into_iter().peekable();
    while ops.peek().is_some() {
        // Task creations sharing a spec travel as one `CreateTasks` op per chunk.
        chunks.push(swarm_types::store::compact(
            ops.by_ref().take(BATCH_OPS).collect::<Vec<Op>>(),
        ));
    }
    let writes = chunks
        .into_iter()
        .map(|ops| manager.write(WriteBatch { ops, now_ms: 0 }));
    for res in futures::future::join_all(writes).await {
        if let Err(e) = res {
            // The next pass recomputes from the store; nothing is lost by giving up here.
            tracing::debug!(error = %e, "orchestration write failed");
            ok = false;
        }
    }
    ok
}

/// When this leader first saw each task of a rolling update running, on its monotonic
/// clock: update pacing and completion are measured from these, never from timestamps that
/// agents (or this leader, before its clock was stepped) wrote. Starts empty on every
/// leadership: a new leader watches a running replacement for the full monitor period again.
#[derive(Default)]
pub struct RunningSince(std::collections::HashMap<TaskId, std::time::Instant>);

impl RunningSince {
    /// Records the running tasks of services in a rolling update, forgets the rest, and
    /// returns the times on the `now_ms` time line.
    fn observe(
        &mut self,
        s: &swarm_types::store::StoreState,
        now_ms: u64,
    ) -> std::collections::HashMap<TaskId, u64> {
        // An index kept by the store: scanning every service here cost 12 % of the leader's
        // CPU while 64 clients created services (raft_bench profile, 2026-12-04).
        let updating = s.updating_services();
        let mut live = std::collections::HashSet::new();
        if !updating.is_empty() {
            let now = std::time::Instant::now();
            for t in s.tasks.values() {
                if t.status.state == TaskState::Running && updating.contains(&t.service_id) {
                    self.0.entry(t.id.clone()).or_insert(now);
                    live.insert(t.id.clone());
                }
            }
        }
        self.0.retain(|id, _| live.contains(id));
        self.0
            .iter()
            .map(|(id, at)| {
                let ago = at.elapsed().as_millis() as u64;
                (id.clone(), now_ms.saturating_sub(ago))
            })
            .collect()
    }
}

/// One pass: orchestrate (the services in `only`, or all), then schedule what is pending.
/// `timed` keeps the services that wait on time alone: those of the pass are replaced by what
/// the pass found. Returns whether anything was written.
pub async fn pass(
    manager: &Manager,
    cfg: &LoopConfig,
    seen: &mut RunningSince,
    only: Option<&std::collections::HashSet<swarm_types::ServiceId>>,
    timed: &mut std::collections::HashSet<swarm_types::ServiceId>,
) -> bool {
    let now_ms = swarm_api::now_ms();
    let ocfg = manager.store().read(|s| orchestrator::Config {
        running_since: std::sync::Arc::new(seen.observe(s, now_ms)),
        now_ms,
        node_down_grace_ms: cfg.node_down_grace.as_millis() as u64,
        task_history_limit: s
            .cluster()
            .map(|c| c.spec.task_history_limit as usize)
            .unwrap_or(5),
    });
    let t0 = std::time::Instant::now();
    let mut found = std::collections::HashSet::new();
    let ops = manager
        .store()
        .read(|s| orchestrator::reconcile_and_place_noting(s, &ocfg, only, &mut found));
    tracing::debug!(
        services = only.map(|o| o.len()),
        ops = ops.len(),
        took = ?t0.elapsed(),
        "control loop pass"
    );
    match only {
        None => *timed = found,
        Some(o) => {
            timed.retain(|id| !o.contains(id));
            timed.extend(found);
        }
    }
    let mut wrote = !ops.is_empty();
    if !ops.is_empty() {
        let computed = t0.elapsed();
        let n = ops.len();
        write_all(manager, ops).await;
        tracing::debug!(ops = n, ?computed, total = ?t0.elapsed(), "orchestrator");
    }
    let t0 = std::time::Instant::now();
    let ops = manager.store().read(|s| {
        let pending: Vec<TaskId> = s
            .tasks
            .values()
            .filter(|t| {
                t.status.state == TaskState::Pending
                    && t.node_id.is_none()
                    && t.desired_state <= TaskState::Running
            })
            .map(|t| t.id.clone())
            .collect();
        if pending.is_empty() {
            return Vec::new();
        }
        let plan = swarm_engine::scheduler::schedule(s, &pending);
        let mut ops: Vec<Op> = plan
            .assignments
            .into_iter()
            .map(|(id, node_id)| Op::AssignTask { id, node_id })
            .collect();
        for (id, reason) in plan.unplaced {
            let t = &s.tasks[&id];
            if t.status.message != reason {
                ops.push(Op::TaskStatus {
                    id,
                    status: t.status.unplaced(reason),
                });
            }
        }
        ops
    });
    if !ops.is_empty() {
        let computed = t0.elapsed();
        let n = ops.len();
        wrote |= write_all(manager, ops).await;
        tracing::debug!(ops = n, ?computed, total = ?t0.elapsed(), "scheduler");
    }
    wrote
}

/// Runs until `shutdown` turns true.
pub async fn run(manager: Manager, cfg: LoopConfig, mut shutdown: watch::Receiver<bool>) {
    use crate::store::StoreEvent;
    use swarm_types::Object;
    let mut events = manager.store().subscribe();
    let mut metrics = manager.raft().metrics();
    // Services touched since the last pass; `full` when anything else changed (nodes, the
    // cluster, a lost event) or time passed (restart delays, grace periods, update pacing).
    let mut dirty: std::collections::HashSet<swarm_types::ServiceId> = Default::default();
    // Services whose tasks only advanced (accepted … running): see below.
    let mut progressed: std::collections::HashSet<swarm_types::ServiceId> = Default::default();
    // Why the next pass must be full (logged with it), if it must.
    let mut full: Option<&'static str> = Some("this manager leads");
    let mut last_full = tokio::time::Instant::now();
    let mut last_tick = tokio::time::Instant::now();
    // Services that wait on time alone, as the last pass over each found (see `pass`).
    let mut timed: std::collections::HashSet<swarm_types::ServiceId> = Default::default();
    let mut seen = RunningSince::default();
    // The term in which this manager, as leader, has applied everything its log held when it
    // was elected.
    let mut caught_up_in: Option<u64> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        if !manager.is_leader() {
            tokio::select! {
                _ = metrics.changed() => {}
                _ = shutdown.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            events = events.resubscribe();
            full = Some("this manager leads");
            seen = RunningSince::default();
            caught_up_in = None;
            continue;
        }
        let term = metrics.borrow().current_term;
        if caught_up_in != Some(term) {
            // A new leader's store may still lack entries the previous leader committed: a
            // pass now would decide on a stale view (recreate tasks already created, say),
            // and would hold the store while the client writes waiting on this leader's first
            // entry need it. So first apply what the log held at the election.
            let target = metrics.borrow().last_log_index.unwrap_or(0);
            let me = manager.raft_id();
            tokio::select! {
                _ = metrics.wait_for(|m| {
                    m.current_leader != Some(me)
                        || m.current_term != term
                        || m.last_applied.is_some_and(|l| l.index >= target)
                }) => {}
                _ = shutdown.changed() => {}
            }
            if manager.is_leader() && metrics.borrow().current_term == term {
                caught_up_in = Some(term);
                tracing::info!(
                    term,
                    applied = target,
                    "new leader caught up; control loop starts"
                );
            }
            continue;
        }
        if !progressed.is_empty() {
            // A task that moved forward without ending matters only to a rolling update
            // (which waits for replacements to run); otherwise it changes no decision, and
            // re-reconciling a 10,000-task service for each of its tasks' reports would
            // cost more than everything else the leader does while the service starts.
            manager.store().read(|s| {
                for id in progressed.drain() {
                    let updating = s.services.get(&id).is_some_and(|svc| {
                        svc.update_status
                            .as_ref()
                            .is_some_and(|u| u.state.is_active())
                    });
                    if updating {
                        dirty.insert(id);
                    }
                }
            });
        }
        // A full pass over 100,000 tasks takes ~0.1 s of a core and holds the store: on each
        // tick only the services that wait on time are looked at again.
        if full.is_some() || last_full.elapsed() >= cfg.full_every {
            tracing::debug!(why = full.unwrap_or("periodic"), "full pass");
            pass(&manager, &cfg, &mut seen, None, &mut timed).await;
            last_full = tokio::time::Instant::now();
            last_tick = last_full;
        } else {
            if last_tick.elapsed() >= cfg.tick {
                dirty.extend(timed.iter().cloned());
                last_tick = tokio::time::Instant::now();
            }
            if !dirty.is_empty() {
                pass(&manager, &cfg, &mut seen, Some(&dirty), &mut timed).await;
            }
        }
        dirty.clear();
        full = None;
        let mut note = |ev: Result<StoreEvent, tokio::sync::broadcast::error::RecvError>| match ev {
            Ok(StoreEvent::Change(c)) => match &c.object {
                Object::Service(s) => {
                    dirty.insert(s.id.clone());
                }
                Object::Task(t) if c.status_only && !t.status.state.is_terminal() => {
                    progressed.insert(t.service_id.clone());
                }
                Object::Task(t) => {
                    dirty.insert(t.service_id.clone());
                }
                Object::Node(_) => full = Some("a node changed"),
                _ => full = Some("a cluster-wide object changed"),
            },
            Ok(StoreEvent::Reset) => full = Some("the store was replaced (snapshot)"),
            Err(_) => full = Some("change events were missed"),
        };
        // Wait for a change or the tick; then let a burst of changes settle briefly.
        tokio::select! {
            ev = events.recv() => {
                note(ev);
                tokio::time::sleep(Duration::from_millis(10)).await;
                loop {
                    match events.try_recv() {
                        Ok(ev) => note(Ok(ev)),
                        Err(tokio::sync::broadcast::error::TryRecvError::Empty) => break,
                        Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => {
                            note(Err(tokio::sync::broadcast::error::RecvError::Lagged(n)))
                        }
                        Err(_) => break,
                    }
                }
            }
            _ = tokio::time::sleep(cfg.tick) => {}
            _ = shutdown.changed() => {}
            _ = metrics.changed() => {}
        }
    }
}
