//! Raft membership of the manager set: promotion (learner, caught up, then voter), removal,
//! and the policy that refuses a demotion that would lose quorum. Leader only: the API layer
//! calls these (`change_role` forwards to the leader itself); nothing here decides who may ask.

use crate::manager::{Manager, WriteError};
use crate::raft::RaftId;
use openraft::BasicNode;
use std::collections::BTreeSet;
use swarm_api::control::UpdateNodeRequest;
use swarm_api::wire;
use swarm_types::objects::NodeState;
use swarm_types::spec::{NodeRole, NodeSpec};
use swarm_types::store::{Op, WriteBatch};
use swarm_types::{Node, Object};
use tonic::Status;

fn voters(m: &Manager) -> BTreeSet<RaftId> {
    m.raft()
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect()
}

/// Adds a manager: as a learner first (caught up), then as a voter. Leader only.
pub async fn add_manager(m: &Manager, raft_id: RaftId, addr: &str) -> Result<(), WriteError> {
    if voters(m).contains(&raft_id) {
        return Ok(());
    }
    let raft = m.raft();
    raft.add_learner(raft_id, BasicNode::new(addr), true)
        .await
        .map_err(|e| WriteError::Raft(format!("add learner: {e}")))?;
    let mut voters = voters(m);
    voters.insert(raft_id);
    raft.change_membership(voters, true)
        .await
        .map_err(|e| WriteError::Raft(format!("change membership: {e}")))?;
    Ok(())
}

/// Removes a manager from the Raft membership (leader only). Removing the leader itself
/// makes it step down once the new membership is committed.
pub async fn remove_manager(m: &Manager, raft_id: RaftId) -> Result<(), WriteError> {
    let mut voters = voters(m);
    voters.remove(&raft_id);
    m.raft()
        .change_membership(voters, false)
        .await
        .map_err(|e| WriteError::Raft(format!("change membership: {e}")))?;
    Ok(())
}

/// Whether the voter `raft_id` (node `name`) may be demoted: never the last manager, and only
/// while the remaining managers still have a reachable majority.
pub fn check_demotion(m: &Manager, raft_id: RaftId, name: &str) -> Result<(), Status> {
    let remaining: Vec<RaftId> = voters(m).into_iter().filter(|v| *v != raft_id).collect();
    if remaining.is_empty() {
        return Err(Status::failed_precondition(format!(
            "node {name} is the last manager; promote another node first"
        )));
    }
    let reachable = remaining.iter().filter(|v| m.is_reachable(**v)).count();
    let needed = remaining.len() / 2 + 1;
    if reachable < needed {
        return Err(Status::failed_precondition(format!(
            "demoting {name} would lose quorum: only {reachable} of the remaining {} managers are reachable and {needed} are needed; bring managers back first",
            remaining.len()
        )));
    }
    Ok(())
}

/// Promotion and demotion. Membership changes run on the leader, so a follower forwards
/// the request there.
pub async fn change_role(m: &Manager, mut node: Node, spec: NodeSpec) -> Result<Object, Status> {
    if m.leader().is_some() {
        if let Some(ch) = m.leader_channel()? {
            let resp = swarm_api::control::control_client::ControlClient::new(ch)
                .update_node(UpdateNodeRequest {
                    reference: node.id.to_string(),
                    version: 0,
                    spec: wire::to_bytes(&spec),
                })
                .await?;
            return wire::from_bytes("node", &resp.get_ref().object);
        }
    }
    let name = node.description.hostname.clone();
    match spec.role {
        NodeRole::Manager => {
            if node.status.state != NodeState::Ready {
                return Err(Status::failed_precondition(format!(
                    "node {name} is not ready; a node is promoted while it runs"
                )));
            }
            if node.manager_status.is_none() {
                node.manager_status = Some(swarm_types::objects::ManagerStatus {
                    raft_id: rand::random::<u64>() >> 1,
                    addr: node.status.addr.clone(),
                });
            }
            node.spec = spec;
            tracing::info!(node = %node.id, "promotion requested");
        }
        NodeRole::Worker => {
            let voters = m.voters();
            let raft_id = node.manager_status.as_ref().map(|m| m.raft_id);
            if let Some(rid) = raft_id.filter(|r| voters.contains(r)) {
                check_demotion(m, rid, &name)?;
                // Record the new role first, while this manager still has quorum (a
                // leader that removes itself steps down and could not write after), then
                // leave Raft.
                node.spec = spec;
                node.manager_status = None;
                let current = m
                    .store()
                    .read(|s| s.nodes.get(node.id.as_str()).map(|n| n.meta.version));
                node.meta.version = current.unwrap_or(node.meta.version);
                let mut out = m
                    .write(WriteBatch {
                        ops: vec![Op::Update(Object::Node(node))],
                        now_ms: 0,
                    })
                    .await?;
                remove_manager(m, rid)
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                tracing::info!(raft_id = rid, "manager demoted and removed from raft");
                return Ok(out.remove(0));
            }
            node.spec = spec;
            node.manager_status = None;
            tracing::info!(node = %node.id, "demoted");
        }
    }
    // Re-read the version: the membership change may have taken a while.
    let current = m
        .store()
        .read(|s| s.nodes.get(node.id.as_str()).map(|n| n.meta.version));
    node.meta.version = current.unwrap_or(node.meta.version);
    let mut out = m
        .write(WriteBatch {
            ops: vec![Op::Update(Object::Node(node))],
            now_ms: 0,
        })
        .await?;
    Ok(out.remove(0))
}
