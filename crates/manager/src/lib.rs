//! The manager: Raft (openraft over tonic, stored in sled), the replicated object store, the
//! control API, node membership and the leader-only control loops.
#![forbid(unsafe_code)]

pub mod auth;
pub mod ca;
pub mod control;
pub mod dispatcher;
mod group_commit;
pub mod logs;
pub mod manager;
pub mod membership;
pub mod nodes;
pub mod orchestration;
mod pages;
pub mod raft;
pub mod registry;
pub mod store;
pub mod supervise;
mod write_error;

pub use manager::{Manager, ManagerConfig, WriteError, DEFAULT_ELECTION_TIMEOUT_MS};
