//! Pure domain model of swarm: typed ids, object specs, the task state machine, the
//! replicated object store's apply logic and join-token format.
//!
//! Invariant: this crate does no IO (no tokio, tonic, sled or nix). Everything here is a
//! deterministic function of its inputs so it can be unit- and property-tested in milliseconds.
#![forbid(unsafe_code)]

pub mod constraint;
pub mod container;
pub mod discovery;
pub mod endpoint;
pub mod error;
pub mod events;
pub mod ids;
pub mod limits;
pub mod meta;
pub mod names;
pub mod network;
pub mod objects;
pub mod registry;
pub mod sparse;
pub mod spec;
pub mod store;
pub mod task;
pub mod token;
pub mod util;

pub use ids::{ClusterId, NetworkId, NodeId, ServiceId, TaskId};
pub use objects::{Cluster, Meta, Network, Node, Object, ObjectKind, Service, Task};
