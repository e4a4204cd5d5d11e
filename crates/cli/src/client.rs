//! Connection to a manager's control API and small helpers around its calls.

use anyhow::anyhow;
use swarm_api::agent::agent_client::AgentClient;
use swarm_api::agent::{NodeInfoRequest, NodeInfoResponse};
use swarm_api::control::control_client::ControlClient;
use swarm_api::control::{GetRequest, ListRequest, ObjectPage, StatusRequest, StatusResponse};
use swarm_api::transport::{connect, Target};
use swarm_types::{Node, Object};
use tonic::transport::Channel;

pub struct Context {
    pub target: Target,
    pub stale: bool,
    /// Admin client bundle for TCP targets.
    pub tls_dir: Option<std::path::PathBuf>,
}

impl Context {
    pub fn new(host: &str, stale: bool) -> anyhow::Result<Self> {
        Ok(Context {
            target: Target::parse(host)?,
            stale,
            tls_dir: None,
        })
    }

    /// A channel to the target: the unix socket as is, TCP with mutual TLS.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        match &self.target {
            Target::Unix(_) => Ok(connect(&self.target).await?),
            Target::Tcp(addr) => {
                let dir = self.tls_dir.as_ref().ok_or_else(|| {
                    anyhow!(
                        "{} is a TCP address, which needs a client certificate: run `swarmctl cluster ca client-bundle DIR` on a manager and pass --tls-dir DIR (or set SWARM_TLS_DIR)",
                        self.target
                    )
                })?;
                let read = |n: &str| {
                    std::fs::read_to_string(dir.join(n))
                        .map_err(|e| anyhow!("read {}: {e}", dir.join(n).display()))
                };
                let certs = swarm_api::tls::NodeCerts::new(
                    &read("ca.pem")?,
                    &read("cert.pem")?,
                    &read("key.pem")?,
                )?;
                let cfg = swarm_api::tls::client_config(&certs)?;
                Ok(swarm_api::tls::connect(addr, cfg).await?)
            }
        }
    }

    pub async fn control(&self) -> anyhow::Result<ControlClient<Channel>> {
        let ch = self.channel().await?;
        Ok(ControlClient::new(ch)
            .max_decoding_message_size(swarm_api::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(swarm_api::MAX_MESSAGE_BYTES))
    }

    pub async fn status(&self) -> anyhow::Result<StatusResponse> {
        Ok(self
            .control()
            .await?
            .status(StatusRequest {})
            .await
            .map_err(status_err)?
            .into_inner())
    }

    pub fn list_request(&self) -> ListRequest {
        ListRequest {
            stale: self.stale,
            ..Default::default()
        }
    }
}

/// The server does not serve the call: a worker's control socket has no control API (or the
/// server is of another version). `crate::run` turns it into a message that says which.
#[derive(Debug)]
pub struct NotServed;

impl std::fmt::Display for NotServed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the server does not serve this call; is it a swarmd manager of version {}?",
            swarm_api::VERSION
        )
    }
}

impl std::error::Error for NotServed {}

/// Turns a gRPC status into the server's message (already written for the operator); a status
/// without one still says what happened.
pub fn status_err(s: tonic::Status) -> anyhow::Error {
    match s.code() {
        tonic::Code::Unimplemented => anyhow::Error::new(NotServed),
        // Raised here, by the client's transport (a status from the server has no source;
        // a manager that cannot reach another node says so itself).
        tonic::Code::Unavailable
            if std::error::Error::source(&s).is_some()
                && (s.message().contains("transport") || s.message().contains("connect")) =>
        {
            anyhow!("cannot reach the manager: {}", s.message())
        }
        code if s.message().trim().is_empty() => anyhow!(
            "the server answered {code:?} without a message ({})",
            code.description().to_lowercase()
        ),
        _ => anyhow!("{}", s.message()),
    }
}

impl Context {
    /// Explains a [`NotServed`] error: over the unix socket, asks the node what it is, so that
    /// a worker's socket says it is a worker and which managers it knows. Other errors pass.
    pub async fn explain(&self, e: anyhow::Error) -> anyhow::Error {
        if e.downcast_ref::<NotServed>().is_none() || !matches!(self.target, Target::Unix(_)) {
            return e;
        }
        let info = async {
            let ch = self.channel().await.ok()?;
            AgentClient::new(ch)
                .node_info(NodeInfoRequest {})
                .await
                .ok()
                .map(|r| r.into_inner())
        }
        .await;
        match info {
            Some(i) if i.role != "manager" => anyhow!("{}", worker_message(&i)),
            _ => e,
        }
    }
}

/// What `swarmctl` says when pointed at a worker's socket.
pub fn worker_message(i: &NodeInfoResponse) -> String {
    let managers = if i.managers.is_empty() {
        "it knows no manager address".to_string()
    } else {
        format!("managers it knows: {}", i.managers.join(", "))
    };
    let example = i
        .managers
        .first()
        .map(String::as_str)
        .unwrap_or("MANAGER:4242");
    format!(
        "this node ({}) is a {}: control commands need a manager; {managers}; run swarmctl on a manager, or here with `swarmctl -H tcp://{example} --tls-dir DIR ...` (DIR: an admin bundle from `swarmctl cluster ca client-bundle DIR` on a manager)",
        i.node_id, i.role
    )
}

pub fn decode_object(b: &[u8]) -> anyhow::Result<Object> {
    serde_json::from_slice(b).map_err(|e| anyhow!("malformed object from server: {e}"))
}

/// Collects a paged list stream.
pub async fn collect(mut s: tonic::Streaming<ObjectPage>) -> anyhow::Result<Vec<Object>> {
    let mut out = Vec::new();
    while let Some(page) = s.message().await.map_err(status_err)? {
        for o in page.objects {
            out.push(decode_object(&o)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_without_a_message_still_says_what_happened() {
        let e = status_err(tonic::Status::internal("")).to_string();
        assert!(
            e.starts_with("the server answered Internal without a message"),
            "{e}"
        );
        let e = status_err(tonic::Status::unimplemented(""));
        assert!(e.downcast_ref::<NotServed>().is_some());
        assert!(e.to_string().contains("does not serve this call"), "{e}");
        assert_eq!(
            status_err(tonic::Status::not_found("service web not found")).to_string(),
            "service web not found"
        );
    }

    #[test]
    fn the_worker_message_names_the_managers() {
        let m = worker_message(&NodeInfoResponse {
            node_id: "w1".into(),
            role: "worker".into(),
            managers: vec!["10.0.0.1:4242".into(), "10.0.0.2:4242".into()],
        });
        assert!(m.starts_with("this node (w1) is a worker: control commands need a manager; managers it knows: 10.0.0.1:4242, 10.0.0.2:4242;"), "{m}");
        assert!(m.contains("-H tcp://10.0.0.1:4242 --tls-dir DIR"), "{m}");
    }
}

/// Adds [`swarm_api::TARGET_NODE`] to every call, when a node other than the one behind the
/// connection must serve it.
#[derive(Clone)]
pub struct TargetNode(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for TargetNode {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert(swarm_api::TARGET_NODE, v.clone());
        }
        Ok(req)
    }
}

/// A client of one node's local API (images, builds, volumes).
pub type NodeAgent =
    AgentClient<tonic::service::interceptor::InterceptedService<Channel, TargetNode>>;

impl Context {
    /// The node-local API of `node` (id, id prefix, hostname or `self`; default: the node
    /// behind the connection). Another node is reached through the manager behind the
    /// connection, which forwards each call to it.
    pub async fn node_agent(&self, node: Option<&str>) -> anyhow::Result<NodeAgent> {
        let ch = self.channel().await?;
        let target = match node {
            None | Some("self") => None,
            Some("") => anyhow::bail!("--node needs a node id, id prefix or hostname"),
            Some(want) => {
                let me = AgentClient::new(ch.clone())
                    .node_info(NodeInfoRequest {})
                    .await
                    .map_err(status_err)?
                    .into_inner();
                if me.node_id == want {
                    None
                } else {
                    let n = match get_node(self, want).await {
                        Ok(n) => n,
                        Err(e) if e.downcast_ref::<NotServed>().is_some() => anyhow::bail!(
                            "node {want} is not the node behind this connection, and only a manager reaches other nodes: {}",
                            worker_message(&me)
                        ),
                        Err(e) => return Err(e.context(format!("--node {want}"))),
                    };
                    (n.id.as_str() != me.node_id).then(|| n.id.to_string())
                }
            }
        };
        let target = target
            .map(|id| id.parse())
            .transpose()
            .map_err(|_| anyhow!("node id is not valid metadata"))?;
        Ok(AgentClient::with_interceptor(ch, TargetNode(target))
            .max_encoding_message_size(swarm_api::MAX_MESSAGE_BYTES)
            .max_decoding_message_size(swarm_api::MAX_MESSAGE_BYTES))
    }
}

/// Fetches one node by id, id prefix or hostname.
pub async fn get_node(ctx: &Context, reference: &str) -> anyhow::Result<Node> {
    let resp = ctx
        .control()
        .await?
        .get_node(GetRequest {
            reference: reference.to_string(),
            stale: ctx.stale,
        })
        .await
        .map_err(status_err)?;
    match decode_object(&resp.get_ref().object)? {
        Object::Node(n) => Ok(n),
        _ => anyhow::bail!("server returned something other than a node"),
    }
}
