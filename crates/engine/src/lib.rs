//! The decision engine: pure functions from a view of the replicated store to the ops that
//! move the cluster towards its specs — the orchestrators (replicated, global, jobs, restart
//! supervisor, rolling updates, reaper) and the scheduler (filters, spread scoring, "not
//! placed" reasons). The leader's control loop calls them and writes what they return.
//!
//! Invariant: no IO, no clock, no randomness beyond ids from `swarm_types`: every decision is
//! a deterministic function of its inputs, unit- and property-tested in milliseconds. The data
//! model (ids, specs, objects, the store's apply) lives in `swarm_types`; this crate must not
//! define data that is stored.
#![forbid(unsafe_code)]

pub mod constraint;
pub mod endpoint;
pub mod ipam;
pub mod orchestrator;
pub mod scheduler;
