//! Following a service until it converges, as `docker service create|update|scale|rollback`
//! do: overall progress, one line per task slot (up to 20), a verify window, and an exit
//! status that says whether it converged (0) or failed / was rolled back (1).
//!
//! Output is plain lines, printed when something changes, on stdout (progress) and stderr
//! (the verdict of a failure). Ctrl-C stops watching, never the operation.

use crate::client::Context;
use clap::Args;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};
use swarm_types::objects::{UpdateState, UpdateStatus};
use swarm_types::spec::ServiceMode;
use swarm_types::task::TaskState;
use swarm_types::{Service, Task};

/// Slots shown one per line; above this only the overall progress is printed (as docker).
const MAX_TASK_LINES: usize = 20;
/// How often the service and its tasks are read while following.
const POLL: Duration = Duration::from_millis(300);

/// `-d/--detach`, shared by the commands that change a service.
#[derive(Args, Debug, Clone, Default)]
pub struct DetachFlag {
    /// Exit immediately instead of following the change until it is done (the service's
    /// tasks converged; for `node update --availability drain`, the node's tasks stopped).
    /// Without the flag swarmctl follows when its output is a terminal; `--detach=false`
    /// follows anywhere (scripts), `--detach` never does.
    #[arg(short = 'd', long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub detach: Option<bool>,
}

impl DetachFlag {
    /// Whether to follow convergence (see the flag's help). `quiet` prints only the id, so
    /// it follows only when asked to with `--detach=false`.
    pub fn follow(&self, quiet: bool) -> bool {
        match self.detach {
            Some(d) => !d,
            None => !quiet && std::io::stdout().is_terminal(),
        }
    }
}

/// What the command did, which decides what "converged" means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Scale,
    Rollback,
}

pub use super::snapshot::{Slot, Snapshot, Verdict};

/// The update this command started: any update status other than `baseline` (the one the
/// service had right after the write).
fn ours<'a>(svc: &'a Service, baseline: &Option<UpdateStatus>) -> Option<&'a UpdateStatus> {
    let u = svc.update_status.as_ref()?;
    match baseline {
        Some(b) if b.started_at == u.started_at && b.state == u.state => None,
        _ => Some(u),
    }
}

/// Reads where `svc` stands after `op`.
pub fn snapshot(
    svc: &Service,
    tasks: &[Task],
    op: Operation,
    baseline: &Option<UpdateStatus>,
) -> Snapshot {
    let global = matches!(svc.spec.mode, ServiceMode::Global | ServiceMode::GlobalJob);
    let job = matches!(
        svc.spec.mode,
        ServiceMode::ReplicatedJob { .. } | ServiceMode::GlobalJob
    );
    // The newest task of each slot (replicated) or node (global).
    let mut newest: BTreeMap<String, &Task> = BTreeMap::new();
    for t in tasks.iter().filter(|t| t.service_id == svc.id) {
        let key = if global {
            t.node_id
                .as_ref()
                .map(|n| n.to_string())
                .unwrap_or_default()
        } else {
            format!("{:09}", t.slot)
        };
        match newest.get(&key) {
            Some(o) if o.meta.created_at > t.meta.created_at => {}
            _ => {
                newest.insert(key, t);
            }
        }
    }
    let status = svc.status.clone().unwrap_or_default();
    let total = status.desired_tasks;
    let current = |t: &Task| *t.spec == svc.spec.task;
    let done = if job {
        status.completed_tasks
    } else {
        newest
            .values()
            .filter(|t| {
                current(t)
                    && t.desired_state == TaskState::Running
                    && t.status.state == TaskState::Running
            })
            .count() as u64
    };
    let mut lines = Vec::new();
    let mut slots = Vec::new();
    if total as usize <= MAX_TASK_LINES {
        for (key, t) in &newest {
            if t.desired_state > TaskState::Running && !job {
                continue;
            }
            let label = if global {
                key.chars().take(12).collect::<String>()
            } else {
                format!("{}/{}", t.slot, total)
            };
            let mut line = format!("{label}: {}", t.status.state.as_str());
            if !t.status.err.is_empty() {
                line.push_str(&format!("  {}", t.status.err));
            }
            lines.push(line);
            slots.push(Slot {
                label,
                state: t.status.state,
                err: t.status.err.clone(),
            });
        }
    }
    let update = ours(svc, baseline);
    let verdict = match (op, update.map(|u| (u.state, u.message.as_str()))) {
        (Operation::Rollback, Some((UpdateState::RollbackPaused, m))) => Verdict::Failed(format!(
            "rollback paused: {}",
            strip(m, "rollback paused: ")
        )),
        (_, Some((UpdateState::Paused, m))) => {
            Verdict::Failed(format!("update paused: {}", strip(m, "update paused: ")))
        }
        (Operation::Update | Operation::Scale | Operation::Create, Some((s, _)))
            if s.is_rollback() && !s.is_active() =>
        {
            Verdict::Failed("update rolled back".into())
        }
        (_, Some((s, _))) if s.is_active() => Verdict::Converging,
        _ if job && done >= total => Verdict::Converged,
        _ if !job
            && done == total
            && newest
                .values()
                .filter(|t| t.desired_state == TaskState::Running)
                .count() as u64
                == total =>
        {
            Verdict::Converged
        }
        _ => Verdict::Converging,
    };
    Snapshot {
        done,
        total,
        lines,
        slots,
        verdict,
    }
}

/// Why an update that was rolled back failed, from its newest failed task (one that runs a
/// spec other than the service's, now rolled-back, one).
fn failed_update_task(svc: &Service, tasks: &[Task]) -> Option<String> {
    let t = tasks
        .iter()
        .filter(|t| {
            *t.spec != svc.spec.task
                && matches!(t.status.state, TaskState::Failed | TaskState::Rejected)
        })
        .max_by_key(|t| t.status.timestamp)?;
    let err = if t.status.err.is_empty() {
        &t.status.message
    } else {
        &t.status.err
    };
    Some(format!("task {} failed: {err}", t.id.short()))
}

fn strip<'a>(m: &'a str, prefix: &str) -> &'a str {
    m.strip_prefix(prefix).unwrap_or(m)
}

/// Where convergence is shown: bars on a terminal (as docker draws them), plain lines
/// printed when something changes elsewhere.
enum Display {
    Plain {
        printed: Vec<String>,
        last_overall: Option<(u64, u64)>,
    },
    Bars(super::converge_bars::Bars),
}

impl Display {
    fn new() -> Self {
        if std::io::stdout().is_terminal() {
            Display::Bars(super::converge_bars::Bars::new(
                indicatif::ProgressDrawTarget::stdout(),
            ))
        } else {
            Display::Plain {
                printed: Vec::new(),
                last_overall: None,
            }
        }
    }

    fn show(&mut self, s: &Snapshot, what: &str) {
        match self {
            Display::Bars(b) => b.show(s, what),
            Display::Plain {
                printed,
                last_overall,
            } => {
                if *last_overall != Some((s.done, s.total)) {
                    println!("overall progress: {} out of {} {what}", s.done, s.total);
                    *last_overall = Some((s.done, s.total));
                }
                for l in &s.lines {
                    if !printed.contains(l) {
                        println!("{l}");
                    }
                }
                *printed = s.lines.clone();
            }
        }
    }

    fn say(&self, line: &str) {
        match self {
            Display::Bars(b) => b.say(line),
            Display::Plain { .. } => println!("{line}"),
        }
    }

    fn finish(&self) {
        if let Display::Bars(b) = self {
            b.finish();
        }
    }
}

/// Follows `service` until it converges (Ok) or the operation fails (Err, exit status 1).
pub async fn follow(ctx: &Context, service: &Service, op: Operation) -> anyhow::Result<()> {
    let name = service.spec.name.clone();
    // The status the write left: an update it started is active, and ours to follow; any
    // other (an earlier update's outcome) is what a new status must differ from.
    let baseline = service
        .update_status
        .as_deref()
        .filter(|u| !u.state.is_active())
        .cloned();
    let verify = service.spec.update_config.monitor;
    let mut display = Display::new();
    let watch = async {
        let mut stable_since: Option<Instant> = None;
        let mut rollback_reason: Option<String> = None;
        loop {
            let svc = super::get_service(ctx, &name).await?;
            let tasks = super::ps::list(ctx, &name, "").await?;
            let s = snapshot(&svc, &tasks, op, &baseline);
            let what = if matches!(
                svc.spec.mode,
                ServiceMode::ReplicatedJob { .. } | ServiceMode::GlobalJob
            ) {
                "completed"
            } else {
                "tasks"
            };
            display.show(&s, what);
            if let Some(u) = ours(&svc, &baseline) {
                if u.state.is_rollback() && rollback_reason.is_none() && op != Operation::Rollback {
                    // A quick rollback may be over before it is seen: its message then says
                    // only "rollback completed", and the failed task says why.
                    let why = match u.message.strip_prefix("update rolled back: ") {
                        Some(w) => w.to_string(),
                        None => {
                            failed_update_task(&svc, &tasks).unwrap_or_else(|| u.message.clone())
                        }
                    };
                    display.say(&format!("rollback: update failed, rolling back: {why}"));
                    rollback_reason = Some(why);
                }
            }
            match s.verdict {
                Verdict::Failed(why) => match &rollback_reason {
                    Some(r) if why == "update rolled back" => {
                        anyhow::bail!("{name}: update rolled back: {r}")
                    }
                    _ => anyhow::bail!("{name}: {why}"),
                },
                Verdict::Converged => match stable_since {
                    None if !verify.is_zero() => {
                        display.say(&format!(
                            "verify: Waiting {} seconds to verify that tasks are stable...",
                            verify.as_secs_f64().ceil() as u64
                        ));
                        stable_since = Some(Instant::now());
                    }
                    Some(t) if t.elapsed() < verify => {}
                    _ => {
                        display.say(&format!("verify: Service {name} converged"));
                        return anyhow::Ok(());
                    }
                },
                Verdict::Converging => stable_since = None,
            }
            tokio::time::sleep(POLL).await;
        }
    };
    let res = tokio::select! {
        r = watch => r,
        _ = tokio::signal::ctrl_c() => {
            eprintln!(
                "Operation continuing in background.\nFollow it with `swarmctl service ps {name}`, or watch it again with `swarmctl service update --detach=false {name}` (an update without changes)."
            );
            std::process::exit(130);
        }
    };
    display.finish();
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_types::ids::{NodeId, TaskId};
    use swarm_types::objects::TaskStatus;

    fn svc(replicas: u64, running: u64) -> Service {
        super::super::render_tests::service("s1", "web", "busybox:2", replicas, running)
    }

    fn task(s: &Service, slot: u64, state: TaskState, err: &str, created: u64) -> Task {
        Task {
            id: TaskId::new(format!("t{slot}-{created}")),
            meta: swarm_types::objects::Meta {
                created_at: created,
                ..Default::default()
            },
            service_id: s.id.clone(),
            slot,
            node_id: Some(NodeId::new("n1")),
            service_name: "web".into(),
            spec_version: 1,
            spec: s.spec.task.clone().into(),
            desired_state: TaskState::Running,
            status: TaskStatus {
                state,
                err: err.into(),
                ..Default::default()
            },
            restarts: 0,
            networks: Default::default(),
        }
    }

    #[test]
    fn progress_counts_running_tasks_of_the_current_spec_per_slot() {
        let s = svc(3, 1);
        let mut old = task(&s, 2, TaskState::Running, "", 1);
        std::sync::Arc::make_mut(&mut old.spec).container.image = "busybox:1".into();
        let tasks = vec![
            task(&s, 1, TaskState::Running, "", 5),
            old,
            task(&s, 3, TaskState::Rejected, "no such image: web:2", 5),
        ];
        let snap = snapshot(&s, &tasks, Operation::Create, &None);
        assert_eq!((snap.done, snap.total), (1, 3));
        assert_eq!(
            snap.lines,
            vec![
                "1/3: running".to_string(),
                "2/3: running".to_string(),
                "3/3: rejected  no such image: web:2".to_string(),
            ]
        );
        assert_eq!(snap.verdict, Verdict::Converging);
        let done: Vec<Task> = (1..=3)
            .map(|i| task(&s, i, TaskState::Running, "", 9))
            .collect();
        assert_eq!(
            snapshot(&s, &done, Operation::Create, &None).verdict,
            Verdict::Converged
        );
    }

    #[test]
    fn a_rollback_seen_only_once_complete_still_names_the_failed_task() {
        let s = svc(1, 1);
        let mut failed = task(&s, 1, TaskState::Failed, "task: non-zero exit (1)", 5);
        std::sync::Arc::make_mut(&mut failed.spec).container.image = "busybox:3".into();
        let running = task(&s, 1, TaskState::Running, "", 9);
        let why = failed_update_task(&s, &[running.clone(), failed.clone()]).unwrap();
        assert!(
            why.starts_with("task ") && why.ends_with("failed: task: non-zero exit (1)"),
            "{why}"
        );
        assert_eq!(failed_update_task(&s, &[running]), None);
    }

    #[test]
    fn an_update_that_rolled_back_or_paused_fails_and_says_why_once() {
        let mut s = svc(1, 1);
        let tasks = vec![task(&s, 1, TaskState::Running, "", 9)];
        s.update_status = Some(Box::new(UpdateStatus {
            state: UpdateState::RollbackCompleted,
            started_at: 7,
            completed_at: 9,
            message: "rollback: update failed: task exited with code 1".into(),
        }));
        assert_eq!(
            snapshot(&s, &tasks, Operation::Update, &None).verdict,
            Verdict::Failed("update rolled back".into())
        );
        // The same status before the command (an older update) is not this command's.
        let before = s.update_status.as_deref().cloned();
        assert_eq!(
            snapshot(&s, &tasks, Operation::Update, &before).verdict,
            Verdict::Converged
        );
        // A rollback command succeeds with its rollback completed.
        assert_eq!(
            snapshot(&s, &tasks, Operation::Rollback, &None).verdict,
            Verdict::Converged
        );
        s.update_status = Some(Box::new(UpdateStatus {
            state: UpdateState::Paused,
            started_at: 7,
            completed_at: 0,
            message: "update paused: task 3 failed".into(),
        }));
        assert_eq!(
            snapshot(&s, &tasks, Operation::Update, &None).verdict,
            Verdict::Failed("update paused: task 3 failed".into())
        );
    }
}
