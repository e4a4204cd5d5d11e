//! Placement constraint expressions (`node.labels.zone==east`, `node.role!=manager`): their
//! syntax, parsed once at spec validation. Evaluating them against nodes is the engine's
//! (`swarm_engine::constraint`); this module knows no node.

use crate::error::SpecError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConstraintKey {
    NodeId,
    NodeHostname,
    NodeRole,
    NodePlatformOs,
    NodePlatformArch,
    NodeLabel(String),
    EngineLabel(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Constraint {
    pub key: ConstraintKey,
    pub equal: bool,
    pub value: String,
}

impl Constraint {
    pub fn parse(expr: &str) -> Result<Constraint, SpecError> {
        let err = |reason: &str| SpecError::Constraint {
            expr: crate::limits::echo(expr),
            reason: reason.to_string(),
        };
        let (lhs, rhs, equal) = if let Some((l, r)) = expr.split_once("!=") {
            (l, r, false)
        } else if let Some((l, r)) = expr.split_once("==") {
            (l, r, true)
        } else {
            return Err(err("expected KEY==VALUE or KEY!=VALUE"));
        };
        let (lhs, rhs) = (lhs.trim(), rhs.trim());
        if rhs.is_empty() {
            return Err(err("the value is empty"));
        }
        if rhs.contains("==") || rhs.contains("!=") {
            return Err(err("only one operator is allowed"));
        }
        let key = match lhs {
            "node.id" => ConstraintKey::NodeId,
            "node.hostname" => ConstraintKey::NodeHostname,
            "node.role" => {
                if rhs != "manager" && rhs != "worker" {
                    return Err(err("node.role is manager or worker"));
                }
                ConstraintKey::NodeRole
            }
            "node.platform.os" => ConstraintKey::NodePlatformOs,
            "node.platform.arch" => ConstraintKey::NodePlatformArch,
            other => {
                if let Some(l) = other.strip_prefix("node.labels.") {
                    if l.is_empty() {
                        return Err(err("the label name is empty"));
                    }
                    ConstraintKey::NodeLabel(l.to_string())
                } else if let Some(l) = other.strip_prefix("engine.labels.") {
                    if l.is_empty() {
                        return Err(err("the label name is empty"));
                    }
                    ConstraintKey::EngineLabel(l.to_string())
                } else {
                    return Err(err(
                        "unknown key: use node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.NAME or engine.labels.NAME",
                    ));
                }
            }
        };
        Ok(Constraint {
            key,
            equal,
            value: rhs.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_and_operators() {
        let c = Constraint::parse("node.labels.zone == east").unwrap();
        assert_eq!(c.key, ConstraintKey::NodeLabel("zone".into()));
        assert!(c.equal);
        assert_eq!(c.value, "east");
        let c = Constraint::parse("node.role!=manager").unwrap();
        assert_eq!(c.key, ConstraintKey::NodeRole);
        assert!(!c.equal);
    }

    #[test]
    fn rejects_malformed() {
        for e in [
            "node.labels.zone=east",
            "node.labels.==x",
            "foo==bar",
            "node.role==boss",
            "node.id==",
            "a==b==c",
        ] {
            assert!(Constraint::parse(e).is_err(), "{e}");
        }
    }
}
