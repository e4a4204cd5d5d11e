//! Wire layer: the tonic/prost code generated from `proto/`, JSON payload helpers and the
//! gRPC transport (TCP and unix-socket channels). Only this crate knows prost types.
#![forbid(unsafe_code)]

pub mod tls;
pub mod transport;
pub mod wire;

#[allow(clippy::all, missing_docs)]
pub mod raft {
    tonic::include_proto!("swarm.raft");
}
#[allow(clippy::all, missing_docs)]
pub mod node {
    tonic::include_proto!("swarm.node");
}
#[allow(clippy::all, missing_docs)]
pub mod control {
    tonic::include_proto!("swarm.control");
}
#[allow(clippy::all, missing_docs)]
pub mod dispatcher {
    tonic::include_proto!("swarm.dispatcher");
}
#[allow(clippy::all, missing_docs)]
pub mod agent {
    tonic::include_proto!("swarm.agent");
}

/// Wall-clock time in unix milliseconds, as task statuses, write batches and spec histories
/// carry it (0 if the clock is before 1970). The one clock read for those timestamps.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// An error with its causes, outermost first ("error sending request: connection refused"):
/// transport errors say little at the top (tonic's only "transport error").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Version string reported by `swarmctl version` and `swarmd --version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The largest gRPC message we send or accept. Lists are streamed in pages and snapshots in
/// chunks well below this.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Most tasks in one dispatcher session message. A full set spans several messages and ends
/// with the first one that carries fewer (an empty one if the set fills its last message).
pub const SESSION_TASKS_PER_MESSAGE: usize = 200;

/// Request metadata on the node-local API (`swarm.agent.Agent`): the id of the node that must
/// serve the call. A manager forwards such a call to that node; without it the node that
/// receives the call serves it.
pub const TARGET_NODE: &str = "swarm-target-node";

/// Request metadata set by the manager that forwarded a node-local call: a forwarded call is
/// never forwarded again (a stale address cannot make calls go round).
pub const FORWARDED: &str = "swarm-forwarded";
