//! A Jepsen-style fault suite: real `swarmd` processes on network-namespace hosts, faults
//! injected under a concurrent workload, and checkers over the recorded history.
//!
//! - [`faults`]: packet loss/partitions (iptables in the namespaces), latency and slow links
//!   (tc), a full disk (tmpfs state dir), CPU starvation (cgroup quota), wall-clock jumps
//!   (libfaketime); process faults are [`crate::Cluster`]'s kill/stop/signal.
//! - [`workload`]: clients doing service create/update/scale/rm and linearizable reads
//!   through every manager, each operation recorded with its outcome (ok / fail / unknown);
//!   a sampler of running tasks.
//! - [`checker`]: linearizability of each service spec as a register, lost acknowledged
//!   writes.
//! - [`run`]: clusters, steps (each fault alone or with a rolling update and a scale change
//!   in flight), the other checks (containers restarted by a control-plane fault, a cut-off
//!   worker's tasks replaced only after heartbeat timeout + grace, convergence after heal), and
//!   the numbers (failover, longest window without an acknowledged write, refusals).

pub mod checker;
pub mod faults;
pub mod history;
pub mod rng;
pub mod run;
pub mod workload;

use std::time::Duration;

/// Heartbeat period agents are told to use (`manager::nodes::HEARTBEAT_PERIOD`).
pub const HEARTBEAT_PERIOD: Duration = Duration::from_secs(2);
/// A node is marked down after this long without a heartbeat (3 missed periods).
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(6);
