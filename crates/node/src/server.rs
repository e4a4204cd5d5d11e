//! gRPC servers of a node: a manager's TCP server (Raft, node membership, dispatcher, control
//! API, node-local API), a worker's TCP server (node-local API only) and the root-only control
//! socket. Transport security and who may call what plug in here.

use crate::agent_route::AgentRouter;
use anyhow::Context;
use std::path::Path;
use swarm_api::control::control_server::ControlServer;
use swarm_api::dispatcher::dispatcher_server::DispatcherServer;
use swarm_api::node::node_service_server::NodeServiceServer;
use swarm_api::raft::raft_server::RaftServer;
use swarm_api::serve::serve;
use swarm_api::MAX_MESSAGE_BYTES;
use swarm_manager::control::ControlService;
use swarm_manager::dispatcher::DispatcherService;
use swarm_manager::nodes::NodeServiceImpl;
use swarm_manager::raft::service::RaftService;
use swarm_manager::{auth, Manager};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Routes;

async fn wait_shutdown(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// The TCP server: mutual TLS on every connection, roles checked per service.
pub fn serve_tcp(
    listener: tokio::net::TcpListener,
    tls: std::sync::Arc<rustls::ServerConfig>,
    manager: Manager,
    nodes: NodeServiceImpl,
    agent: AgentRouter,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let control = ControlService::new(manager.clone());
    let dispatcher_manager = manager.clone();
    tokio::spawn(async move {
        let manager = dispatcher_manager;
        let routes = Routes::new(InterceptedService::new(
            RaftServer::new(RaftService::new(manager.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            auth::raft_interceptor(manager.clone()),
        ))
        // Join is open to nodes without a certificate; the other calls check it themselves.
        .add_service(NodeServiceServer::new(nodes))
        .add_service(InterceptedService::new(
            DispatcherServer::new(DispatcherService::new(manager.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            auth::node_interceptor(manager.clone()),
        ))
        .add_service(InterceptedService::new(
            ControlServer::new(control)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            auth::control_interceptor(manager.clone()),
        ))
        // Node-local calls from operators (admin certificates) and other managers, served
        // here or forwarded to the node they name.
        .add_service(InterceptedService::new(
            agent,
            auth::control_interceptor(manager.clone()),
        ));
        serve(
            routes,
            swarm_api::tls::incoming(listener, tls),
            wait_shutdown(shutdown),
        )
        .await;
    })
}

/// The control socket: the node-local API on every node, plus the control API on managers.
pub fn serve_unix(
    path: &Path,
    manager: Option<Manager>,
    agent: AgentRouter,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        // A stale socket from a previous run (the state-dir lock guarantees nobody owns it).
        std::fs::remove_file(path).with_context(|| format!("remove stale {}", path.display()))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("bind control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let control = manager.map(|m| {
        ControlServer::new(ControlService::new(m))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    });
    Ok(tokio::spawn(async move {
        let mut routes = Routes::new(agent);
        if let Some(control) = control {
            routes = routes.add_service(control);
        }
        serve(
            routes,
            tokio_stream::wrappers::UnixListenerStream::new(listener),
            wait_shutdown(shutdown),
        )
        .await;
    }))
}

/// A worker's TCP server: the node-local API, for managers that forward an operator's
/// call (`--node`) and for admin client certificates; and node membership calls, refused
/// with the addresses of the managers (a demoted manager keeps its address, and agents that
/// knew only it find the others).
pub fn serve_worker_tcp(
    listener: tokio::net::TcpListener,
    tls: std::sync::Arc<rustls::ServerConfig>,
    cluster_id: String,
    agent: AgentRouter,
    nodes: crate::worker_nodes::WorkerNodeService,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let routes = Routes::new(NodeServiceServer::new(nodes)).add_service(
            InterceptedService::new(agent, auth::worker_agent_interceptor(cluster_id)),
        );
        serve(
            routes,
            swarm_api::tls::incoming(listener, tls),
            wait_shutdown(shutdown),
        )
        .await;
    })
}
