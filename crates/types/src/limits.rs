//! Size limits of what clients write, checked at the API before anything reaches Raft, so no
//! object can grow a log entry, a snapshot chunk or a list page past what a follower or a
//! client accepts; and the rule that an error never echoes an unbounded input back. Knows no
//! spec: `ServiceSpec::validate` applies these to its fields.

use crate::error::SpecError;
use std::collections::BTreeMap;

/// A service spec, encoded as stored (JSON): Docker caps a config or secret at 500 KiB; a
/// spec is smaller, and a service keeps up to 12 of them (current, previous, history).
pub const MAX_SPEC_BYTES: usize = 256 * 1024;
/// One label value, environment entry or command argument.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// One label key.
pub const MAX_KEY_BYTES: usize = 1024;
/// Labels on one object.
pub const MAX_LABELS: usize = 1024;
/// How much of a refused input an error message repeats.
pub const MAX_ECHO_CHARS: usize = 64;

/// `s` as an error message may repeat it: whole when short, else its start and its size.
pub fn echo(s: &str) -> String {
    match s.char_indices().nth(MAX_ECHO_CHARS) {
        None => s.to_string(),
        Some((end, _)) => format!("{}… ({} bytes)", &s[..end], s.len()),
    }
}

pub(crate) fn too_large(what: String, size: usize, limit: usize) -> SpecError {
    SpecError::TooLarge { what, size, limit }
}

/// Label keys and values within their limits.
pub fn check_labels(whose: &str, labels: &BTreeMap<String, String>) -> Result<(), SpecError> {
    if labels.len() > MAX_LABELS {
        return Err(SpecError::TooMany {
            what: format!("{whose} labels"),
            count: labels.len(),
            limit: MAX_LABELS,
        });
    }
    for (k, v) in labels {
        if k.len() > MAX_KEY_BYTES {
            return Err(too_large(
                format!("{whose} label key {}", echo(k)),
                k.len(),
                MAX_KEY_BYTES,
            ));
        }
        if v.len() > MAX_VALUE_BYTES {
            return Err(too_large(
                format!("the value of {whose} label {}", echo(k)),
                v.len(),
                MAX_VALUE_BYTES,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ServiceSpec;

    fn spec() -> ServiceSpec {
        ServiceSpec::replicated("web", "busybox", 1)
    }

    #[test]
    fn echo_keeps_short_inputs_and_cuts_long_ones() {
        assert_eq!(echo("web"), "web");
        let long = "é".repeat(1_000_000);
        let e = echo(&long);
        assert!(e.len() < 200, "{}", e.len());
        assert!(e.ends_with("(2000000 bytes)"), "{e}");
    }

    #[test]
    fn a_huge_label_is_refused_with_the_limit_and_without_its_value() {
        let mut s = spec();
        s.labels.insert("big".into(), "x".repeat(16 << 20));
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("65536"), "{e}");
        assert!(
            e.len() < 300,
            "the error does not echo the value: {} bytes",
            e.len()
        );
    }

    #[test]
    fn many_values_under_their_own_limit_still_hit_the_spec_limit() {
        let mut s = spec();
        for i in 0..8 {
            s.task
                .container
                .env
                .push(format!("V{i}={}", "x".repeat(60_000)));
        }
        let e = s.validate().unwrap_err();
        assert!(
            matches!(
                e,
                SpecError::TooLarge {
                    limit: MAX_SPEC_BYTES,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn a_long_name_is_not_echoed_whole() {
        let mut s = spec();
        s.name = "n".repeat(1 << 20);
        let e = s.validate().unwrap_err().to_string();
        assert!(e.len() < 300, "{} bytes", e.len());
        assert!(e.contains("at most 63"), "{e}");
    }

    #[test]
    fn ordinary_specs_pass() {
        let mut s = spec();
        s.labels.insert("k".into(), "v".repeat(MAX_VALUE_BYTES));
        s.validate().unwrap();
    }
}
