//! The node-membership service as a worker answers it: a worker cannot admit nodes or take
//! heartbeats, so every call is refused with the manager addresses this node knows. An agent
//! whose only known manager was demoted (it restarts as a worker on the same address) finds
//! the remaining managers this way instead of being stranded. It holds no cluster state.

use swarm_agent::managers::Managers;
use swarm_api::node::node_service_server::NodeService;
use swarm_api::node::{
    HeartbeatRequest, HeartbeatResponse, JoinRequest, JoinResponse, ManagerPromoteRequest,
    ManagerPromoteResponse, RenewRequest, RenewResponse,
};
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct WorkerNodeService {
    cluster_id: String,
    /// This node's own address: never offered as a manager.
    own_addr: String,
    managers: Managers,
}

impl WorkerNodeService {
    pub fn new(cluster_id: String, own_addr: String, managers: Managers) -> Self {
        WorkerNodeService {
            cluster_id,
            own_addr,
            managers,
        }
    }

    /// The refusal: with the managers' addresses for nodes of this cluster; callers without a
    /// certificate (a node joining) learn only what to do, not where the managers are.
    fn refuse<T>(&self, req: &Request<T>, what: &str) -> Status {
        let known: Vec<String> = self
            .managers
            .addrs()
            .into_iter()
            .filter(|a| *a != self.own_addr)
            .collect();
        // No TLS information at all: not a network caller (tests serve without TLS).
        let member = match swarm_manager::auth::peer(req) {
            Ok(None) => true,
            Ok(Some(p)) => p.cluster_id == self.cluster_id,
            Err(_) => false,
        };
        if !member {
            return Status::failed_precondition(format!(
                "this node is a worker and cannot {what}; use a manager's address (`swarmctl node ls` on a manager lists them)"
            ));
        }
        let status = Status::unavailable(format!(
            "this node is a worker and cannot {what}; managers: {}",
            if known.is_empty() {
                "none known".to_string()
            } else {
                known.join(", ")
            }
        ));
        swarm_api::with_managers_hint(status, &known)
    }
}

#[tonic::async_trait]
impl NodeService for WorkerNodeService {
    async fn join(&self, req: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        Err(self.refuse(&req, "admit nodes"))
    }
    async fn promote_self(
        &self,
        req: Request<ManagerPromoteRequest>,
    ) -> Result<Response<ManagerPromoteResponse>, Status> {
        Err(self.refuse(&req, "promote nodes"))
    }
    async fn heartbeat(
        &self,
        req: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        Err(self.refuse(&req, "take heartbeats"))
    }
    async fn renew_certificate(
        &self,
        req: Request<RenewRequest>,
    ) -> Result<Response<RenewResponse>, Status> {
        Err(self.refuse(&req, "renew certificates"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_agent::managers::ManagerSet;

    #[tokio::test]
    async fn a_worker_refuses_heartbeats_naming_the_other_managers() {
        let managers = ManagerSet::new(vec!["198.18.0.1:4242".into(), "198.18.0.2:4242".into()]);
        let svc = WorkerNodeService::new("c1".into(), "198.18.0.1:4242".into(), managers);
        // Served without TLS (no peer information): answered like a member of the cluster.
        let err = svc
            .heartbeat(Request::new(HeartbeatRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        assert_eq!(
            swarm_api::managers_hint(&err),
            vec!["198.18.0.2:4242".to_string()],
            "its own address is never offered"
        );
        assert!(
            err.message().contains("198.18.0.2:4242"),
            "{}",
            err.message()
        );
    }
}
