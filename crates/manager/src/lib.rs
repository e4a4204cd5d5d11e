//! The manager: Raft (openraft over tonic, stored in sled), the replicated object store, the
//! control API, node membership and the leader-only control loops.
#![forbid(unsafe_code)]

pub mod auth;
pub mod ca;
pub mod control;
pub mod dispatcher;
pub mod manager;
pub mod nodes;
pub mod orchestration;
pub mod raft;
pub mod supervise;

pub use manager::{Manager, ManagerConfig, WriteError};
