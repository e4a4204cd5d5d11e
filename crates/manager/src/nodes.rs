//! Node membership: joining with a token, promotion of joined managers to Raft voters, and
//! agent heartbeats (a node that misses three heartbeat periods is marked down).

use crate::manager::{Manager, WriteError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use swarm_api::node::node_service_client::NodeServiceClient;
use swarm_api::node::node_service_server::NodeService;
use swarm_api::node::{
    HeartbeatRequest, HeartbeatResponse, JoinRequest, JoinResponse, ManagerPromoteRequest,
    ManagerPromoteResponse, RenewRequest, RenewResponse,
};
use swarm_api::wire;
use swarm_types::objects::{ManagerStatus, NodeDescription, NodeState, NodeStatus};
use swarm_types::spec::{NodeRole, NodeSpec};
use swarm_types::store::{Op, WriteBatch};
use swarm_types::token::{secrets_equal, JoinToken};
use swarm_types::{Node, NodeId, Object};
use tonic::{Request, Response, Status};

/// Heartbeat period agents are told to use.
pub const HEARTBEAT_PERIOD: Duration = Duration::from_secs(2);
/// Missed periods before a node is marked down.
pub const MISSED_HEARTBEATS: u32 = 3;

#[derive(Clone)]
pub struct NodeServiceImpl {
    manager: Manager,
    liveness: Arc<Mutex<Liveness>>,
}

/// The leader's clock of each node's last heartbeat. Only heartbeats this leader received
/// count: a new leadership starts every node's clock afresh (issue 18, bug 1: a leader that
/// judged nodes by a table from an earlier term, or counted a node missing from it as stale,
/// marked healthy nodes down ~1 s after winning).
#[derive(Debug, Default)]
pub struct Liveness {
    seen: HashMap<NodeId, Instant>,
}

impl Liveness {
    /// Leadership won at `now`: every node known to the store gets a full period from now.
    pub fn lead(&mut self, now: Instant, nodes: impl IntoIterator<Item = NodeId>) {
        self.seen.clear();
        self.seen.extend(nodes.into_iter().map(|id| (id, now)));
    }

    /// A heartbeat of `id` at `now`.
    pub fn heard(&mut self, id: NodeId, now: Instant) {
        self.seen.insert(id, now);
    }

    /// Whether `id` has been silent for longer than `limit` at `now`. A node this leader has
    /// not timed yet (it joined, or the store was still catching up when leadership was won)
    /// starts its clock now: it is never judged on a heartbeat this leader could not have seen.
    pub fn silent(&mut self, id: &NodeId, now: Instant, limit: Duration) -> bool {
        let since = *self.seen.entry(id.clone()).or_insert(now);
        now.saturating_duration_since(since) > limit
    }
}

impl NodeServiceImpl {
    pub fn new(manager: Manager) -> Self {
        NodeServiceImpl {
            manager,
            liveness: Arc::default(),
        }
    }

    fn leader_client(
        &self,
    ) -> Result<Option<NodeServiceClient<tonic::transport::Channel>>, Status> {
        Ok(self.manager.leader_channel()?.map(NodeServiceClient::new))
    }

    fn manager_addrs(&self) -> Vec<String> {
        self.manager
            .members()
            .into_iter()
            .map(|(_, a, _)| a)
            .collect()
    }

    /// The cluster registry addresses of the managers still in the cluster (the answering
    /// manager's own last: agents spread their pulls over the others first).
    fn registry_addrs(&self) -> Vec<String> {
        let me = self.manager.config().node_id.clone();
        let mut v: Vec<(bool, String)> = self.manager.store().read(|s| {
            s.registry_endpoints
                .values()
                .filter(|e| {
                    s.nodes
                        .get(&NodeId::new(e.id.clone()))
                        .is_some_and(|n| n.manager_status.is_some())
                })
                .map(|e| (e.id != me.as_str(), e.addr.clone()))
                .collect()
        });
        v.sort();
        v.into_iter().map(|(_, a)| a).collect()
    }

    /// Checks a join token against the cluster; returns the role it grants.
    fn check_token(&self, token: &str) -> Result<NodeRole, Status> {
        let t = JoinToken::parse(token).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let cluster = self
            .manager
            .store()
            .read(|s| s.cluster().cloned())
            .ok_or_else(|| Status::unavailable("cluster is not initialized yet"))?;
        if !secrets_equal(&t.ca_digest, &cluster.root_ca.digest) {
            return Err(Status::permission_denied(
                "join token rejected: it was issued by a different cluster (CA digest mismatch)",
            ));
        }
        let w = JoinToken::parse(&cluster.join_tokens.worker).ok();
        let m = JoinToken::parse(&cluster.join_tokens.manager).ok();
        if m.is_some_and(|m| secrets_equal(&m.secret, &t.secret)) {
            Ok(NodeRole::Manager)
        } else if w.is_some_and(|w| secrets_equal(&w.secret, &t.secret)) {
            Ok(NodeRole::Worker)
        } else {
            Err(Status::permission_denied(
                "join token rejected: the secret is not valid (the token may have been rotated); get the current one with `swarmctl cluster join-token worker|manager` on a manager",
            ))
        }
    }

    /// Leader-only loop: marks nodes down after missed heartbeats. Runs until the process ends.
    pub async fn run_monitor(self) {
        let mut was_leader = false;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let leader = self.manager.is_leader();
            if leader && !was_leader {
                // New leadership: nothing remembered from an earlier term counts. Every node
                // gets a full grace period from now before it is judged.
                let now = Instant::now();
                let ids: Vec<NodeId> = self
                    .manager
                    .store()
                    .read(|s| s.nodes.keys().cloned().collect());
                self.liveness.lock().expect("liveness lock").lead(now, ids);
            }
            was_leader = leader;
            if !leader {
                continue;
            }
            let limit = HEARTBEAT_PERIOD * MISSED_HEARTBEATS;
            let stale: Vec<Node> = {
                let mut live = self.liveness.lock().expect("liveness lock");
                let now = Instant::now();
                self.manager.store().read(|s| {
                    s.nodes
                        .values()
                        .filter(|n| n.status.state != NodeState::Down)
                        .filter(|n| live.silent(&n.id, now, limit))
                        .cloned()
                        .collect()
                })
            };
            let ops: Vec<Op> = stale
                .into_iter()
                .map(|mut n| {
                    n.status.state = NodeState::Down;
                    n.status.message =
                        format!("heartbeat failure: no heartbeat for {}s", limit.as_secs());
                    Op::Update(Object::Node(n))
                })
                .collect();
            for op in ops {
                // One write per node: a concurrent update of one node must not block the rest.
                if let Err(e) = self
                    .manager
                    .write(WriteBatch {
                        ops: vec![op],
                        now_ms: 0,
                    })
                    .await
                {
                    tracing::debug!(error = %e, "mark node down");
                }
            }
        }
    }
}

/// At most `max` bytes of `s` (on a character boundary), marked when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Lifetime of node certificates (cluster setting, at least one hour).
pub fn cert_expiry(c: &swarm_types::Cluster) -> Duration {
    Duration::from_secs(c.spec.node_cert_expiry_secs.max(3600))
}

#[tonic::async_trait]
impl NodeService for NodeServiceImpl {
    async fn join(&self, req: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let peer = req
            .remote_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        let r = req.into_inner();
        self.manager.read_barrier(false).await?;
        let role = self.check_token(&r.token)?;
        let description: NodeDescription = if r.description.is_empty() {
            NodeDescription::default()
        } else {
            wire::from_bytes("node description", &r.description)?
        };
        if role == NodeRole::Manager && r.advertise_addr.is_empty() {
            return Err(Status::invalid_argument(
                "a manager must advertise an address other managers can reach (--advertise-addr)",
            ));
        }
        let cluster = self
            .manager
            .store()
            .read(|s| s.cluster().cloned())
            .ok_or_else(|| Status::unavailable("cluster is not initialized yet"))?;
        let node = Node {
            id: NodeId::generate(),
            meta: Default::default(),
            spec: NodeSpec {
                role,
                ..Default::default()
            },
            description,
            status: NodeStatus {
                state: NodeState::Unknown,
                message: "joined".into(),
                addr: if r.advertise_addr.is_empty() {
                    peer
                } else {
                    r.advertise_addr.clone()
                },
            },
            manager_status: (role == NodeRole::Manager).then(|| ManagerStatus {
                raft_id: rand::random::<u64>() >> 1,
                addr: r.advertise_addr.clone(),
            }),
            role,
        };
        // Sign the node's certificate before registering it: a bad CSR leaves nothing behind.
        let cert_pem = if r.csr.is_empty() {
            String::new()
        } else {
            crate::ca::issue(
                &cluster.root_ca,
                &r.csr,
                node.id.as_str(),
                role.as_str(),
                cluster.id.as_str(),
                cert_expiry(&cluster),
            )
            .map_err(|e| Status::invalid_argument(e.to_string()))?
        };
        self.manager
            .write(WriteBatch {
                ops: vec![Op::Create(Object::Node(node.clone()))],
                now_ms: 0,
            })
            .await?;
        tracing::info!(node = %node.id, role = role.as_str(), host = %node.description.hostname, "node joined");
        Ok(Response::new(JoinResponse {
            node_id: node.id.to_string(),
            raft_id: node.manager_status.as_ref().map(|m| m.raft_id).unwrap_or(0),
            cluster_id: cluster.id.to_string(),
            role: role.as_str().into(),
            ca_cert_pem: cluster.root_ca.cert_pem.clone(),
            managers: self.manager_addrs(),
            cert_pem,
        }))
    }

    async fn renew_certificate(
        &self,
        req: Request<RenewRequest>,
    ) -> Result<Response<RenewResponse>, Status> {
        let peer = crate::auth::caller(&self.manager, &req)?.ok_or_else(|| {
            Status::unauthenticated("certificate renewal needs the node's current certificate")
        })?;
        crate::auth::require_node(&self.manager, &req, Some(&peer.node_id))?;
        // The leader signs: the role comes from the store, and only the leader's is sure to
        // be current. A manager removed from Raft while it was paused or cut off keeps a
        // store that still calls it a manager, and the demoted node, which asks its own
        // manager first, would get a manager certificate again and again and never switch.
        if !self.manager.voters().contains(&self.manager.raft_id()) {
            return Err(Status::unavailable(
                "this manager is not a raft voter (removed or still joining): renew through another manager",
            ));
        }
        if let Some(mut leader) = self.leader_client()? {
            let r = req.into_inner();
            return leader
                .renew_certificate(crate::auth::on_behalf(r, Some(&peer), &peer.node_id))
                .await;
        }
        let (cluster, node) = self.manager.store().read(|s| {
            (
                s.cluster().cloned(),
                s.nodes.get(peer.node_id.as_str()).cloned(),
            )
        });
        let cluster =
            cluster.ok_or_else(|| Status::unavailable("cluster is not initialized yet"))?;
        let node = node.ok_or_else(|| Status::permission_denied("node was removed"))?;
        // The role comes from the store: a promoted or demoted node gets its new role here.
        let cert_pem = crate::ca::issue(
            &cluster.root_ca,
            &req.get_ref().csr,
            node.id.as_str(),
            node.spec.role.as_str(),
            cluster.id.as_str(),
            cert_expiry(&cluster),
        )
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        tracing::info!(node = %node.id, "certificate renewed");
        Ok(Response::new(RenewResponse { cert_pem }))
    }

    async fn promote_self(
        &self,
        req: Request<ManagerPromoteRequest>,
    ) -> Result<Response<ManagerPromoteResponse>, Status> {
        let caller = crate::auth::require_node(&self.manager, &req, Some(&req.get_ref().node_id))?;
        if let Some(mut leader) = self.leader_client()? {
            let r = req.into_inner();
            let id = r.node_id.clone();
            return leader
                .promote_self(crate::auth::on_behalf(r, caller.as_ref(), &id))
                .await;
        }
        // An operator's `node promote` (the caller holds a manager certificate and the store
        // wants it to be a manager) needs no token; a node joining as a manager shows one.
        let promoted_by_operator = caller.as_ref().is_none_or(|p| p.role == "manager")
            && self.manager.store().read(|s| {
                s.nodes
                    .get(req.get_ref().node_id.as_str())
                    .is_some_and(|n| n.spec.role == NodeRole::Manager)
            });
        let r = req.into_inner();
        if !promoted_by_operator && self.check_token(&r.token)? != NodeRole::Manager {
            return Err(Status::permission_denied(
                "a manager join token is required",
            ));
        }
        let node = self
            .manager
            .store()
            .read(|s| s.nodes.get(r.node_id.as_str()).cloned())
            .ok_or_else(|| Status::not_found(format!("node {} not found", r.node_id)))?;
        let ms = node
            .manager_status
            .filter(|_| node.role == NodeRole::Manager || node.spec.role == NodeRole::Manager)
            .ok_or_else(|| Status::failed_precondition("node did not join as a manager"))?;
        crate::membership::add_manager(&self.manager, ms.raft_id, &ms.addr)
            .await
            .map_err(|e| match e {
                WriteError::Raft(m) => Status::unavailable(m),
                other => other.into(),
            })?;
        tracing::info!(node = %node.id, raft_id = ms.raft_id, "manager promoted to voter");
        Ok(Response::new(ManagerPromoteResponse {}))
    }

    async fn heartbeat(
        &self,
        req: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let caller = crate::auth::require_node(&self.manager, &req, Some(&req.get_ref().node_id))?;
        // A manager that was removed from Raft (demoted) knows no leader any more: point the
        // agent at the managers it last knew instead of failing, so the agent finds them.
        let voter = self.manager.voters().contains(&self.manager.raft_id());
        if !voter
            && self
                .manager
                .leader()
                .is_none_or(|(id, _)| id == self.manager.raft_id())
        {
            let own = self.manager.config().advertise_addr.clone();
            return Ok(Response::new(HeartbeatResponse {
                period_ms: 200,
                managers: self
                    .manager_addrs()
                    .into_iter()
                    .filter(|a| *a != own)
                    .collect(),
                desired_role: String::new(),
                raft_id: 0,
                registries: self.registry_addrs(),
            }));
        }
        if let Some(mut leader) = self.leader_client()? {
            let r = req.into_inner();
            let id = r.node_id.clone();
            return leader
                .heartbeat(crate::auth::on_behalf(r, caller.as_ref(), &id))
                .await;
        }
        let r = req.into_inner();
        let id = NodeId::new(r.node_id.clone());
        let node = self
            .manager
            .store()
            .read(|s| s.nodes.get(id.as_str()).cloned())
            .ok_or_else(|| {
                Status::not_found(format!(
                    "node {} is not part of this cluster (was it removed?)",
                    r.node_id
                ))
            })?;
        self.liveness
            .lock()
            .expect("liveness lock")
            .heard(id.clone(), Instant::now());
        let new_desc: Option<NodeDescription> = if r.description.is_empty() {
            None
        } else {
            Some(wire::from_bytes("node description", &r.description)?)
        };
        let desc_changed = new_desc.as_ref().is_some_and(|d| *d != node.description);
        // The role the node's certificate was issued for (what `node.role` constraints match):
        // after a promotion or demotion the node renews its certificate and restarts, and its
        // heartbeats show the new role.
        let cert_role = match caller.as_ref().map(|p| p.role.as_str()) {
            Some("manager") => Some(NodeRole::Manager),
            Some("worker") => Some(NodeRole::Worker),
            _ => None,
        }
        .filter(|r| *r != node.role);
        // A node that cannot run tasks stays down, with its own reason.
        let (state, message) = if r.unavailable.is_empty() {
            (NodeState::Ready, String::new())
        } else {
            (NodeState::Down, truncate(&r.unavailable, 1024))
        };
        if node.status.state != state
            || node.status.message != message
            || desc_changed
            || cert_role.is_some()
        {
            let mut n = node;
            n.status.state = state;
            n.status.message = message;
            if let Some(r) = cert_role {
                tracing::info!(node = %n.id, role = r.as_str(), "node now runs in its new role");
                n.role = r;
            }
            if let Some(d) = new_desc {
                n.description = d;
            }
            self.manager
                .write(WriteBatch {
                    ops: vec![Op::Update(Object::Node(n))],
                    now_ms: 0,
                })
                .await?;
        }
        let (desired_role, raft_id) = self
            .manager
            .store()
            .read(|s| {
                s.nodes.get(r.node_id.as_str()).map(|n| {
                    (
                        n.spec.role,
                        n.manager_status.as_ref().map(|m| m.raft_id).unwrap_or(0),
                    )
                })
            })
            .unwrap_or_default();
        Ok(Response::new(HeartbeatResponse {
            period_ms: HEARTBEAT_PERIOD.as_millis() as u64,
            managers: self.manager_addrs(),
            desired_role: desired_role.as_str().into(),
            raft_id,
            registries: self.registry_addrs(),
        }))
    }
}

#[cfg(test)]
mod liveness_tests {
    use super::Liveness;
    use std::time::{Duration, Instant};
    use swarm_types::NodeId;

    const LIMIT: Duration = Duration::from_secs(6);

    fn id(s: &str) -> NodeId {
        NodeId::new(s)
    }

    #[test]
    fn a_new_leadership_gives_every_node_a_full_period_whatever_an_earlier_term_saw() {
        let t0 = Instant::now();
        let mut l = Liveness::default();
        // An earlier term heard `a` long ago (this manager then lost and regained leadership,
        // or was killed as leader and restarted).
        l.heard(id("a"), t0);
        let won = t0 + Duration::from_secs(60);
        l.lead(won, [id("a"), id("b")]);
        for n in ["a", "b"] {
            assert!(
                !l.silent(&id(n), won + Duration::from_secs(1), LIMIT),
                "{n}"
            );
            assert!(
                !l.silent(&id(n), won + LIMIT, LIMIT),
                "{n} at exactly the limit"
            );
            assert!(l.silent(&id(n), won + LIMIT + Duration::from_millis(1), LIMIT));
        }
    }

    #[test]
    fn a_node_the_leader_never_timed_starts_its_clock_when_first_judged() {
        let t0 = Instant::now();
        let mut l = Liveness::default();
        l.lead(t0, []);
        // The store caught up after leadership was won: `late` was never in the table.
        let first = t0 + Duration::from_secs(30);
        assert!(!l.silent(&id("late"), first, LIMIT));
        assert!(!l.silent(&id("late"), first + LIMIT, LIMIT));
        assert!(l.silent(&id("late"), first + LIMIT + Duration::from_secs(1), LIMIT));
    }

    #[test]
    fn heartbeats_keep_a_node_alive_and_silence_past_the_limit_is_judged() {
        let t0 = Instant::now();
        let mut l = Liveness::default();
        l.lead(t0, [id("a")]);
        for s in 1..=20 {
            let now = t0 + Duration::from_secs(2 * s);
            l.heard(id("a"), now);
            assert!(!l.silent(&id("a"), now + Duration::from_secs(1), LIMIT));
        }
        let last = t0 + Duration::from_secs(40);
        assert!(l.silent(&id("a"), last + Duration::from_secs(7), LIMIT));
    }
}
