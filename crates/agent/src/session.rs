//! Heartbeat session with the managers. The agent cycles through the known manager addresses;
//! every answer refreshes that list so the agent follows managers joining and leaving, and
//! says which role the cluster wants this node to have. A node that is no longer a manager
//! refuses the heartbeat naming the managers it knows, and the agent moves to those. It does
//! not act on that role (the node does) and carries no task traffic (the worker does).

use std::time::Duration;
use swarm_api::node::node_service_client::NodeServiceClient;
use swarm_api::node::HeartbeatRequest;
use swarm_types::objects::NodeDescription;
use swarm_types::spec::NodeRole;
use swarm_types::NodeId;
use tokio::sync::watch;

/// The role the cluster wants this node to have, with its raft id (0 for workers).
pub type DesiredRole = Option<(NodeRole, u64)>;

pub struct Session {
    pub node_id: NodeId,
    /// Shared with the worker: heartbeat answers refresh it.
    pub managers: crate::managers::Managers,
    pub description: NodeDescription,
    /// Receives the role the cluster wants this node to have (and its raft id), from every
    /// heartbeat answer; None while the cluster names none.
    pub desired_role: Option<watch::Sender<DesiredRole>>,
    /// Why this node cannot run tasks (empty when it can); sent with every heartbeat, so the
    /// managers keep the node down and place its tasks elsewhere.
    pub unavailable: String,
}

impl Session {
    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut idx = 0usize;
        let mut send_description = true;
        let mut period = Duration::from_secs(2);
        // Refusals naming other managers in a row: followed at once a few times, then slowly
        // (two former managers naming each other must not make the agent spin).
        let mut redirects = 0u32;
        // Heartbeats failed in a row without an answer naming other managers.
        let mut failures = 0usize;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let wait = match self.beat(idx, send_description).await {
                Ok((p, managers, role)) => {
                    if let Some(tx) = &self.desired_role {
                        tx.send_if_modified(|cur| {
                            let changed = *cur != role;
                            *cur = role;
                            changed
                        });
                    }
                    send_description = false;
                    redirects = 0;
                    failures = 0;
                    period = p;
                    if !managers.is_empty() {
                        // Keep talking to the same manager when it is still listed.
                        let current = self.managers.addrs().get(idx).cloned();
                        self.managers.set(managers);
                        idx = current
                            .and_then(|c| self.managers.addrs().iter().position(|m| *m == c))
                            .unwrap_or(0);
                    }
                    period
                }
                Err(Failed { reason, hint }) => {
                    send_description = true;
                    // After a whole round of failures, ask the known addresses (as nodes of
                    // the cluster, not as managers) whether they know other managers: a
                    // demoted manager restarts as a worker on its address and names them.
                    failures += 1;
                    let known = self.managers.addrs().len().max(1);
                    let hint = if hint.is_empty() && failures >= known {
                        failures = 0;
                        self.ask_for_managers().await
                    } else {
                        hint
                    };
                    if hint.is_empty() {
                        tracing::debug!(error = %reason, "heartbeat failed; trying the next manager");
                        idx = (idx + 1) % known;
                        Duration::from_millis(300).min(period)
                    } else {
                        // Try the managers named now (an agent that knew only the demoted
                        // manager is not stranded).
                        tracing::info!(error = %reason, managers = ?hint, "heartbeat failed; trying the managers a former manager names");
                        self.managers.set(hint);
                        idx = 0;
                        redirects += 1;
                        if redirects <= 3 {
                            Duration::from_millis(50)
                        } else {
                            Duration::from_secs(1)
                        }
                    }
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// The managers a known address names when asked as a node of the cluster (a demoted
    /// manager refuses the heartbeat with them); empty when none does.
    async fn ask_for_managers(&self) -> Vec<String> {
        for addr in self.managers.addrs() {
            let Some(ch) = self.managers.member_channel(&addr) else {
                continue;
            };
            let mut req = tonic::Request::new(HeartbeatRequest {
                node_id: self.node_id.to_string(),
                description: Vec::new(),
                unavailable: self.unavailable.clone(),
            });
            req.set_timeout(Duration::from_secs(2));
            let mut client = NodeServiceClient::new(ch);
            let call = client.heartbeat(req);
            if let Ok(Err(status)) = tokio::time::timeout(Duration::from_secs(3), call).await {
                let hint = swarm_api::managers_hint(&status);
                if !hint.is_empty() {
                    return hint;
                }
            }
        }
        Vec::new()
    }

    async fn beat(
        &self,
        idx: usize,
        with_description: bool,
    ) -> Result<(Duration, Vec<String>, DesiredRole), Failed> {
        let addr = self
            .managers
            .addrs()
            .get(idx)
            .cloned()
            .ok_or_else(|| Failed::from("no manager address known".to_string()))?;
        let ch = self.managers.channel(&addr)?;
        let mut client = NodeServiceClient::new(ch);
        let mut req = tonic::Request::new(HeartbeatRequest {
            node_id: self.node_id.to_string(),
            description: if with_description {
                swarm_api::wire::to_bytes(&self.description)
            } else {
                Vec::new()
            },
            unavailable: self.unavailable.clone(),
        });
        req.set_timeout(Duration::from_secs(2));
        let resp = tokio::time::timeout(Duration::from_secs(3), client.heartbeat(req))
            .await
            .map_err(|_| Failed::from("timed out".to_string()))?
            .map_err(|s| Failed {
                reason: s.message().to_string(),
                hint: swarm_api::managers_hint(&s),
            })?
            .into_inner();
        if !resp.registries.is_empty() {
            self.managers.set_registries(resp.registries.clone());
        }
        Ok((
            Duration::from_millis(resp.period_ms.clamp(100, 60_000)),
            resp.managers,
            desired_role(&resp.desired_role, resp.raft_id),
        ))
    }
}

/// Why a heartbeat failed, and the managers the refusing node named instead (empty unless a
/// node that is not a manager answered).
struct Failed {
    reason: String,
    hint: Vec<String>,
}

impl From<String> for Failed {
    fn from(reason: String) -> Self {
        Failed {
            reason,
            hint: Vec::new(),
        }
    }
}

/// A heartbeat answer's role: empty when the cluster names none.
fn desired_role(role: &str, raft_id: u64) -> DesiredRole {
    if role.is_empty() {
        return None;
    }
    match role.parse() {
        Ok(r) => Some((r, raft_id)),
        Err(e) => {
            tracing::warn!(error = %e, "heartbeat answer names an unknown role; ignored");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_roles_become_typed() {
        assert_eq!(desired_role("", 0), None);
        assert_eq!(desired_role("manager", 7), Some((NodeRole::Manager, 7)));
        assert_eq!(desired_role("worker", 0), Some((NodeRole::Worker, 0)));
        assert_eq!(desired_role("admin", 0), None);
    }
}
