//! Why a spec or an input was refused: one error type for every check of the data model
//! (names, images, sizes, constraints, modes). A leaf: it depends on nothing but constants.

/// Why a spec was refused. Messages are written for the operator who typed the command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("invalid service name {name:?}: {reason}")]
    Name { name: String, reason: &'static str },
    #[error("service needs an image: pass one, e.g. `swarmctl service create --name web busybox:latest`")]
    MissingImage,
    #[error("invalid image reference {0:?}: it must look like NAME[:TAG] or NAME@sha256:DIGEST")]
    Image(String),
    #[error("invalid replica count {count}: it must be between 0 and {limit}")]
    Replicas { count: u64, limit: u64 },
    #[error("invalid environment entry {0:?}: expected KEY=VALUE")]
    Env(String),
    #[error("invalid label key {0:?}: keys must be non-empty and contain no '=' or whitespace")]
    Label(String),
    #[error("invalid constraint {expr:?}: {reason}")]
    Constraint { expr: String, reason: String },
    #[error("invalid placement preference {0:?}: expected spread=node.labels.NAME")]
    Preference(String),
    #[error("invalid resources: {0}")]
    Resources(&'static str),
    /// A network spec or attachment (the message says what and how to fix it).
    #[error("{0}")]
    Network(String),
    /// A service's endpoint: published ports, endpoint mode.
    #[error("{0}")]
    Endpoint(String),
    #[error("invalid job: {0}")]
    Job(&'static str),
    #[error("invalid health check: {0}")]
    Health(&'static str),
    #[error("invalid update config: {0}")]
    Update(&'static str),
    #[error("{what} is {size} bytes; the limit is {limit} bytes")]
    TooLarge {
        what: String,
        size: usize,
        limit: usize,
    },
    #[error("too many {what}: {count}; the limit is {limit}")]
    TooMany {
        what: String,
        count: usize,
        limit: usize,
    },
    #[error("invalid mount {mount:?}: {reason}")]
    Mount { mount: String, reason: String },
    #[error("invalid ulimit {ulimit:?}: {reason}")]
    Ulimit { ulimit: String, reason: String },
    #[error("invalid {what}: {reason}")]
    ContainerOption { what: String, reason: String },
    /// A setting the service's mode never reads: refused rather than silently dropped.
    #[error("{what} does not apply to a {mode} service: {why}")]
    NotForMode {
        what: &'static str,
        mode: &'static str,
        why: &'static str,
    },
}
