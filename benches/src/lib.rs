//! Benchmark programs (see `src/bin/`) and what they share: a fleet of fake agents and the
//! probes that watch a cluster converge. Scripts that run them live in `deploy/bench/`.
#![forbid(unsafe_code)]

pub mod fleet;
pub mod probe;

/// What every benchmark process needs first: TLS's crypto provider, and as many open files as
/// the hard limit allows (thousands of agents hold thousands of connections).
pub fn prepare_process() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}
