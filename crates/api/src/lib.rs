//! Wire layer: the tonic/prost code generated from `proto/`, JSON payload helpers and the
//! gRPC transport (TCP and unix-socket channels). Only this crate knows prost types.
#![forbid(unsafe_code)]

pub mod serve;
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

/// Error metadata from a node that is not (or no longer) a manager: the manager addresses it
/// knows, comma-separated. An agent whose only known manager was demoted finds the others
/// through it.
pub const MANAGERS_HINT: &str = "swarm-managers";

/// `status` carrying the manager addresses a caller should try instead.
pub fn with_managers_hint(mut status: tonic::Status, managers: &[String]) -> tonic::Status {
    if let Ok(v) = managers.join(",").parse() {
        status.metadata_mut().insert(MANAGERS_HINT, v);
    }
    status
}

/// The manager addresses an error names (see [`MANAGERS_HINT`]); empty when it names none.
pub fn managers_hint(status: &tonic::Status) -> Vec<String> {
    status
        .metadata()
        .get(MANAGERS_HINT)
        .and_then(|v| v.to_str().ok())
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Metadata key set on a refusal by the leader when the calling node is not in the cluster
/// (it was removed): the agent stops and removes its tasks and what it installed.
pub const NODE_REMOVED: &str = "swarm-node-removed";

/// `status` telling the caller its node was removed from the cluster.
pub fn with_node_removed(mut status: tonic::Status) -> tonic::Status {
    status.metadata_mut().insert(
        NODE_REMOVED,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    status
}

/// Whether `status` says the calling node was removed from the cluster.
pub fn node_removed(status: &tonic::Status) -> bool {
    status.metadata().get(NODE_REMOVED).is_some()
}

#[cfg(test)]
mod hint_tests {
    use super::*;

    #[test]
    fn a_node_removed_mark_survives_the_status() {
        assert!(node_removed(&with_node_removed(
            tonic::Status::permission_denied("x")
        )));
        assert!(!node_removed(&tonic::Status::permission_denied("x")));
    }

    #[test]
    fn a_managers_hint_survives_the_status_and_an_empty_one_names_none() {
        let s = with_managers_hint(
            tonic::Status::unavailable("not a manager"),
            &["198.18.0.2:4242".into(), "198.18.0.3:4242".into()],
        );
        assert_eq!(
            managers_hint(&s),
            vec!["198.18.0.2:4242".to_string(), "198.18.0.3:4242".to_string()]
        );
        assert!(managers_hint(&tonic::Status::unavailable("x")).is_empty());
        assert!(
            managers_hint(&with_managers_hint(tonic::Status::unavailable("x"), &[])).is_empty()
        );
    }
}
