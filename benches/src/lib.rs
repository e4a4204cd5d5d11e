//! Benchmark programs (see `src/bin/`) and what they share: a fleet of fake agents and the
//! probes that watch a cluster converge. Scripts that run them live in `deploy/bench/`.
#![forbid(unsafe_code)]

pub mod fleet;
pub mod probe;
