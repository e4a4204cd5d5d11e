//! The agent runs on every node: it keeps a session with the managers (heartbeats, the
//! dispatcher's assignment stream), runs one controller per assigned task through an
//! `Executor` (the native runtime, or a fake one for tests and benchmarks), reports task
//! status, and keeps a local task database so that after a restart it re-adopts running
//! containers instead of restarting them. Tasks keep running while no manager is reachable.
//! It never writes cluster state except through the dispatcher and node RPCs.
#![forbid(unsafe_code)]

pub mod build;
mod container_config;
mod controller;
pub mod executor;
mod health;
pub mod images;
pub mod join;
pub mod local;
pub mod logs;
pub mod managers;
pub mod network;
pub mod pull;
pub mod reporter;
pub mod runtime_exec;
pub mod session;
pub mod task_db;
pub mod volumes;
pub mod worker;
