//! Placement constraints evaluated against nodes: the scheduler's filter and the global
//! orchestrator's eligibility check. The syntax lives in `swarm_types::constraint`.

use swarm_types::constraint::{Constraint, ConstraintKey};
use swarm_types::Node;

/// Whether `node` satisfies `c`. A missing label fails `==` and passes `!=`.
pub fn matches(c: &Constraint, node: &Node) -> bool {
    let actual: Option<&str> = match &c.key {
        ConstraintKey::NodeId => Some(node.id.as_str()),
        ConstraintKey::NodeHostname => Some(node.description.hostname.as_str()),
        ConstraintKey::NodeRole => Some(node.role.as_str()),
        ConstraintKey::NodePlatformOs => Some(node.description.platform.os.as_str()),
        ConstraintKey::NodePlatformArch => Some(node.description.platform.arch.as_str()),
        ConstraintKey::NodeLabel(l) => node.spec.labels.get(l).map(String::as_str),
        ConstraintKey::EngineLabel(l) => node.description.engine_labels.get(l).map(String::as_str),
    };
    match actual {
        Some(v) => (v == c.value) == c.equal,
        None => !c.equal,
    }
}

/// Whether `node` satisfies every constraint expression (unparsable ones are not met).
pub fn node_matches(node: &Node, exprs: &[String]) -> bool {
    exprs
        .iter()
        .all(|e| Constraint::parse(e).is_ok_and(|c| matches(&c, node)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_node_attributes_and_missing_labels() {
        let mut n = Node::default();
        n.description.hostname = "h1".into();
        n.spec.labels.insert("zone".into(), "east".into());
        n.description
            .engine_labels
            .insert("disk".into(), "ssd".into());
        assert!(node_matches(
            &n,
            &["node.labels.zone==east".into(), "node.hostname!=h2".into()]
        ));
        assert!(!node_matches(&n, &["node.labels.zone==west".into()]));
        assert!(!node_matches(&n, &["node.labels.rack==1".into()]));
        assert!(node_matches(&n, &["node.labels.rack!=1".into()]));
        assert!(node_matches(
            &n,
            &["engine.labels.disk==ssd".into(), "node.role==worker".into()]
        ));
        assert!(!node_matches(&n, &["garbage".into()]));
    }
}
