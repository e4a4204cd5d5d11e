//! The agent runs on every node: it keeps a session with the managers (heartbeats carrying the
//! node description, failing over between managers) and, with the orchestration work, runs
//! tasks through the runtime.
#![forbid(unsafe_code)]

pub mod session;
