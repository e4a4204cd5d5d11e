//! Routes calls of the node-local API (`swarm.agent.Agent`: images, builds, volumes) to the
//! node they name. A call carrying [`TARGET_NODE`] for another node is forwarded by a manager
//! to that node's TCP address, over the manager's own certificate; every other call is served
//! by this node's agent. It holds no agent logic and decides nothing about who may call: the
//! servers put their interceptors around it.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use swarm_agent::local::LocalService;
use swarm_api::agent::agent_server::AgentServer;
use swarm_api::tls::NodeCerts;
use swarm_api::{FORWARDED, TARGET_NODE};
use swarm_manager::Manager;
use swarm_types::objects::NodeState;
use tonic::body::Body;
use tonic::codegen::{http, Service};
use tonic::server::NamedService;
use tonic::Status;

type Local = AgentServer<LocalService>;

/// The `swarm.agent.Agent` service of a node: local, or forwarded to the node a call names.
#[derive(Clone)]
pub struct AgentRouter {
    node_id: String,
    /// Set once the agent has started (the manager's TCP server starts before it).
    local: Arc<OnceLock<Local>>,
    /// On a manager: the store that knows every node's address, and this node's certificate
    /// to reach them with.
    forward: Option<(Manager, NodeCerts)>,
}

impl AgentRouter {
    pub fn new(node_id: String, forward: Option<(Manager, NodeCerts)>) -> Self {
        AgentRouter {
            node_id,
            local: Arc::new(OnceLock::new()),
            forward,
        }
    }

    /// Hands the router this node's agent; calls before this answer "starting".
    pub fn set_local(&self, local: LocalService) {
        let svc = AgentServer::new(local)
            .max_decoding_message_size(swarm_api::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(swarm_api::MAX_MESSAGE_BYTES);
        let _ = self.local.set(svc);
    }

    /// Where a call goes: `None` for this node, else the node id it names.
    fn target<'a>(&self, req: &'a http::Request<Body>) -> Result<Option<&'a str>, Status> {
        let Some(v) = req.headers().get(TARGET_NODE) else {
            return Ok(None);
        };
        let t = v
            .to_str()
            .map_err(|_| Status::invalid_argument("the target node metadata is not text"))?;
        Ok((!t.is_empty() && t != self.node_id).then_some(t))
    }

    async fn forward(&self, target: String, mut req: http::Request<Body>) -> http::Response<Body> {
        match self.route(&target, &req) {
            Ok(ch) => {
                req.headers_mut()
                    .insert(FORWARDED, http::HeaderValue::from_static("1"));
                let (mut ch, addr) = ch;
                let res = async {
                    std::future::poll_fn(|cx| ch.poll_ready(cx)).await?;
                    ch.call(req).await
                }
                .await;
                res.unwrap_or_else(|e| {
                    Status::unavailable(format!(
                        "node {target} at {addr} did not answer ({}); is it running, and is its listen address reachable from this manager?",
                        swarm_api::error_chain(&e)
                    ))
                    .into_http()
                })
            }
            Err(s) => s.into_http(),
        }
    }

    /// The channel to the node a call names, or why there is none.
    fn route(
        &self,
        target: &str,
        req: &http::Request<Body>,
    ) -> Result<(tonic::transport::Channel, String), Status> {
        if req.headers().contains_key(FORWARDED) {
            return Err(Status::failed_precondition(format!(
                "a call forwarded for node {target} reached node {} instead: the address the cluster has for {target} is taken by another node",
                self.node_id
            )));
        }
        let Some((m, certs)) = &self.forward else {
            return Err(Status::failed_precondition(format!(
                "this node ({}) is a worker and cannot reach node {target}: run the command on a manager's socket, or with -H tcp://MANAGER:PORT --tls-dir DIR",
                self.node_id
            )));
        };
        let node = m.store().read(|s| s.nodes.get(target).cloned());
        let Some(node) = node else {
            return Err(Status::not_found(format!(
                "no node {target} in this cluster (swarmctl node ls lists them)"
            )));
        };
        let name = &node.description.hostname;
        if node.status.state == NodeState::Down {
            return Err(Status::unavailable(format!(
                "node {target} ({name}) is down: it cannot serve the call"
            )));
        }
        let addr = node.status.addr.clone();
        if addr.is_empty() {
            return Err(Status::unavailable(format!(
                "node {target} ({name}) has no known address yet"
            )));
        }
        // The server must show `target`'s own certificate, not just any node's.
        let ch = swarm_api::tls::node_client_config(certs, target)
            .map_err(|e| Status::internal(format!("tls setup: {e}")))
            .and_then(|tls| {
                swarm_api::tls::lazy_channel(&addr, tls).map_err(|e| {
                    Status::unavailable(format!("node {target} ({name}) at {addr}: {e}"))
                })
            })?;
        Ok((ch, addr))
    }
}

impl NamedService for AgentRouter {
    const NAME: &'static str = <Local as NamedService>::NAME;
}

impl Service<http::Request<Body>> for AgentRouter {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        match self.target(&req) {
            Err(s) => Box::pin(std::future::ready(Ok(s.into_http()))),
            Ok(Some(t)) => {
                let (this, t) = (self.clone(), t.to_string());
                Box::pin(async move { Ok(this.forward(t, req).await) })
            }
            Ok(None) => match self.local.get().cloned() {
                Some(mut svc) => Box::pin(async move { svc.call(req).await }),
                None => Box::pin(std::future::ready(Ok(Status::unavailable(
                    "this node's agent is still starting; try again in a moment",
                )
                .into_http()))),
            },
        }
    }
}
