//! Why a write or a linearizable read failed ([`WriteError`]) and how it reaches a gRPC
//! caller. Shared by the manager's write paths and the group commit; depends on neither.

use swarm_types::store::StoreError;

/// Why a write or a linearizable read failed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum WriteError {
    #[error("no quorum: {reachable} of {total} managers reachable; {needed} are needed for a write or a linearizable read. Bring managers back online (or read with --stale)")]
    NoQuorum {
        reachable: usize,
        total: usize,
        needed: usize,
    },
    /// A quorum answers, but no leader took the write in time (an election): nothing was
    /// written.
    #[error("timed out after {ms} ms: {reachable} of {total} managers are reachable, but no leader took the write in time (a leader election); nothing was written; retry")]
    Timeout {
        ms: u64,
        reachable: usize,
        total: usize,
    },
    /// The write was handed to Raft (or to the leader) but its commit was not confirmed in
    /// time: it may still apply once a quorum is back. Never reported as "not applied".
    #[error("outcome unknown: the write was proposed but not confirmed within {ms} ms ({reachable} of {total} managers reachable; a write needs {needed}); it may still apply once a quorum is back: check the current state before retrying")]
    Unconfirmed {
        ms: u64,
        reachable: usize,
        total: usize,
        needed: usize,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The write never reached Raft.
    #[error("manager is shutting down; nothing was written")]
    ShuttingDown,
    #[error("raft: {0}")]
    Raft(String),
}

impl From<WriteError> for tonic::Status {
    fn from(e: WriteError) -> Self {
        let msg = e.to_string();
        match e {
            WriteError::NoQuorum { .. } | WriteError::Timeout { .. } | WriteError::ShuttingDown => {
                tonic::Status::unavailable(msg)
            }
            // gRPC's code for "the operation may or may not have completed".
            WriteError::Unconfirmed { .. } => tonic::Status::deadline_exceeded(msg),
            WriteError::Store(StoreError::NotFound { .. }) => tonic::Status::not_found(msg),
            WriteError::Store(StoreError::Exists { .. } | StoreError::NameConflict { .. }) => {
                tonic::Status::already_exists(msg)
            }
            WriteError::Store(StoreError::VersionMismatch { .. }) => {
                tonic::Status::failed_precondition(msg)
            }
            WriteError::Store(StoreError::InUse { .. } | StoreError::Conflict(_)) => {
                tonic::Status::failed_precondition(msg)
            }
            WriteError::Raft(_) => tonic::Status::internal(msg),
        }
    }
}
