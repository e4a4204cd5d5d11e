//! Where a service stands while it converges: what `converge` reads from the service and its
//! tasks and what the bars draw (data only; uses neither).

use swarm_types::task::TaskState;

/// Where a service stands, read from the service and its tasks (pure, unit-tested).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Tasks running the current spec, and how many are wanted.
    pub done: u64,
    pub total: u64,
    /// One line per slot (replicated) or node (global), in order: `1/3: running`.
    pub lines: Vec<String>,
    /// The same slots, for the bars on a terminal.
    pub slots: Vec<Slot>,
    pub verdict: Verdict,
}

/// One task slot (replicated) or node (global) as the display shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// `1/3`, or the node for a global service.
    pub label: String,
    pub state: TaskState,
    pub err: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Still converging.
    Converging,
    /// Everything runs the current spec; stable once the verify window passes.
    Converged,
    /// The operation ended without converging: the message says how.
    Failed(String),
}
