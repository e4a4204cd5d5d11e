//! The task state machine. States only move forward; `TaskState::can_advance_to` is the single
//! guard every writer goes through.

use serde::{Deserialize, Serialize};

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    #[default]
    New,
    Pending,
    Assigned,
    Accepted,
    Preparing,
    Ready,
    Starting,
    Running,
    Complete,
    Shutdown,
    Failed,
    Rejected,
    Remove,
    Orphaned,
}

impl TaskState {
    pub fn is_terminal(self) -> bool {
        self >= TaskState::Complete
    }
    /// Observed states only move forward; terminal states never change.
    pub fn can_advance_to(self, next: TaskState) -> bool {
        !self.is_terminal() && next > self
    }
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::New => "new",
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Accepted => "accepted",
            TaskState::Preparing => "preparing",
            TaskState::Ready => "ready",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Complete => "complete",
            TaskState::Shutdown => "shutdown",
            TaskState::Failed => "failed",
            TaskState::Rejected => "rejected",
            TaskState::Remove => "remove",
            TaskState::Orphaned => "orphaned",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_only_move_forward() {
        assert!(TaskState::New.can_advance_to(TaskState::Pending));
        assert!(TaskState::Running.can_advance_to(TaskState::Failed));
        assert!(!TaskState::Running.can_advance_to(TaskState::Starting));
        assert!(!TaskState::Failed.can_advance_to(TaskState::Orphaned));
        assert!(!TaskState::Running.can_advance_to(TaskState::Running));
    }
}
