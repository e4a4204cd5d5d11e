//! The rules every object's name and labels follow, and the names the cluster reserves. A
//! leaf of the model: specs, networks and the rest use it; it uses only the error type.

use crate::error::SpecError;
use crate::limits;
use std::collections::BTreeMap;

/// Docker's predefined network names, which are not cluster networks: `none` (no network),
/// `bridge` (the node's default bridge, what a task without networks gets) and `host`.
pub const PREDEFINED_NETWORKS: [&str; 3] = ["none", "bridge", "host"];

/// Validates a service name the way docker does: 1-63 chars of `[a-zA-Z0-9-_.]`, starting with
/// an alphanumeric character (it becomes a DNS name and part of container names).
pub fn validate_name(name: &str) -> Result<(), SpecError> {
    let err = |reason| {
        Err(SpecError::Name {
            name: limits::echo(name),
            reason,
        })
    };
    if name.is_empty() {
        return err("it must not be empty");
    }
    if name.len() > 63 {
        return err("it must be at most 63 characters");
    }
    if !name.chars().next().unwrap().is_ascii_alphanumeric() {
        return err("it must start with a letter or digit");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return err("only letters, digits, '-', '_' and '.' are allowed");
    }
    Ok(())
}

pub fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), SpecError> {
    for k in labels.keys() {
        if k.is_empty() || k.contains('=') || k.chars().any(char::is_whitespace) {
            return Err(SpecError::Label(limits::echo(k)));
        }
    }
    Ok(())
}
