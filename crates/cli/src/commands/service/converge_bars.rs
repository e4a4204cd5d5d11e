//! The convergence display on a terminal: indicatif bars, one for the overall progress and
//! one per task slot (task states as steps), as `docker service create` draws them. Without
//! a terminal `converge` prints plain lines instead.

use super::snapshot::Snapshot;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use swarm_types::task::TaskState;

/// Steps of a task up to running (new … running), the length of each slot's bar.
const STEPS: u64 = 7;

/// Where a state is on the way to running.
fn step(s: TaskState) -> u64 {
    let order = [
        TaskState::New,
        TaskState::Pending,
        TaskState::Assigned,
        TaskState::Accepted,
        TaskState::Preparing,
        TaskState::Ready,
        TaskState::Starting,
        TaskState::Running,
    ];
    order
        .iter()
        .position(|x| *x == s)
        .map(|i| i as u64)
        .unwrap_or(STEPS)
}

pub struct Bars {
    mp: MultiProgress,
    overall: ProgressBar,
    slots: Vec<ProgressBar>,
}

impl Bars {
    pub fn new(target: ProgressDrawTarget) -> Self {
        let mp = MultiProgress::with_draw_target(target);
        let overall = mp.add(ProgressBar::new(0));
        overall.set_style(ProgressStyle::with_template("{msg}").expect("static template"));
        Bars {
            mp,
            overall,
            slots: Vec::new(),
        }
    }

    /// Shows where the service stands; `what`: "tasks" or "completed" (jobs).
    pub fn show(&mut self, s: &Snapshot, what: &str) {
        self.overall.set_message(format!(
            "overall progress: {} out of {} {what}",
            s.done, s.total
        ));
        let style = ProgressStyle::with_template("{prefix:<7} {msg:<10} [{bar:50}]")
            .expect("static template")
            .progress_chars("=> ");
        let failed = ProgressStyle::with_template("{prefix:<7} {msg}").expect("static template");
        while self.slots.len() < s.slots.len() {
            let b = self.mp.add(ProgressBar::new(STEPS));
            b.set_style(style.clone());
            self.slots.push(b);
        }
        while self.slots.len() > s.slots.len() {
            if let Some(b) = self.slots.pop() {
                b.finish_and_clear();
                self.mp.remove(&b);
            }
        }
        for (b, slot) in self.slots.iter().zip(&s.slots) {
            b.set_prefix(format!("{}:", slot.label));
            if slot.err.is_empty() {
                b.set_style(style.clone());
                b.set_message(slot.state.as_str().to_string());
            } else {
                b.set_style(failed.clone());
                b.set_message(format!("{:<10} {}", slot.state.as_str(), slot.err));
            }
            b.set_position(step(slot.state));
        }
        self.overall.tick();
    }

    /// A line above the bars (verify, rollback, the verdict).
    pub fn say(&self, line: &str) {
        let _ = self.mp.println(line);
    }

    /// Leaves the last state on the screen as it is (`finish` would fill every bar).
    pub fn finish(&self) {
        self.overall.abandon();
        for b in &self.slots {
            b.abandon();
        }
    }
}
