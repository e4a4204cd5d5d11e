//! Who may call what. Connections over the local control socket carry no TLS information and
//! are trusted (the socket is root-only, mode 0600). Over TCP every connection is TLS; a
//! certificate, when presented, was verified against the cluster CA during the handshake, and
//! here its subject decides: OU = role, CN = node id, O = cluster id. A removed node's
//! certificate is refused because the node no longer exists in the store.
//!
//! A manager that forwards a node's request to the leader connects with its own certificate
//! and names the node it acts for in [`ON_BEHALF_OF`] (and that node's certificate role in
//! [`ON_BEHALF_ROLE`]); the leader believes those headers only from a manager certificate, so
//! a node can still act only for itself, wherever it connects.

use crate::manager::Manager;
use swarm_api::tls::{PeerIdentity, TlsConnectInfo};
use tonic::{Request, Status};

/// The verified peer of a TCP request; `Ok(None)` for the local socket.
pub fn peer<T>(req: &Request<T>) -> Result<Option<PeerIdentity>, Status> {
    match req.extensions().get::<TlsConnectInfo>() {
        None => Ok(None),
        Some(info) => match &info.peer {
            Some(p) => Ok(Some(p.clone())),
            None => Err(Status::unauthenticated(
                "this call needs a certificate of this cluster (swarmctl: --tls-dir with a client bundle from `swarmctl cluster ca client-bundle`)",
            )),
        },
    }
}

pub use swarm_api::tls::{ON_BEHALF_OF, ON_BEHALF_ROLE};

/// Who a request acts for: the verified TLS peer, or the node a forwarding manager names.
/// `Ok(None)` for the local socket (trusted).
pub fn caller<T>(m: &Manager, req: &Request<T>) -> Result<Option<PeerIdentity>, Status> {
    let p = peer(req)?;
    let Some(named) = req.metadata().get(ON_BEHALF_OF) else {
        return Ok(p);
    };
    let Some(p) = p else { return Ok(None) };
    check_cluster(m, &p)?;
    if p.role != "manager" {
        return Err(Status::permission_denied(format!(
            "only managers may act on behalf of another node; this certificate is for a {}",
            role_name(&p.role)
        )));
    }
    check_exists(m, &p)?;
    let header = |v: &tonic::metadata::MetadataValue<tonic::metadata::Ascii>| {
        v.to_str()
            .map(str::to_string)
            .map_err(|_| Status::invalid_argument("on-behalf-of metadata is not text"))
    };
    let node_id = header(named)?;
    let role = match req.metadata().get(ON_BEHALF_ROLE) {
        Some(r) => header(r)?,
        // Forwarded from a manager's local socket: the role the store gives the node.
        None => m
            .store()
            .read(|s| {
                s.nodes
                    .get(node_id.as_str())
                    .map(|n| n.role.as_str().to_string())
            })
            .unwrap_or_default(),
    };
    Ok(Some(PeerIdentity {
        node_id,
        role,
        cluster_id: p.cluster_id,
    }))
}

/// Marks `req` as sent on behalf of `caller` (the identity this manager verified), or of
/// `node_id` when the caller came through the trusted local socket.
pub fn on_behalf<T>(inner: T, caller: Option<&PeerIdentity>, node_id: &str) -> Request<T> {
    let mut req = Request::new(inner);
    let (id, role) = match caller {
        Some(p) => (p.node_id.as_str(), Some(p.role.as_str())),
        None => (node_id, None),
    };
    if let Ok(v) = id.parse() {
        req.metadata_mut().insert(ON_BEHALF_OF, v);
    }
    if let Some(v) = role.and_then(|r| r.parse().ok()) {
        req.metadata_mut().insert(ON_BEHALF_ROLE, v);
    }
    req
}

fn role_name(role: &str) -> &str {
    if role.is_empty() {
        "client"
    } else {
        role
    }
}

fn check_cluster(m: &Manager, p: &PeerIdentity) -> Result<(), Status> {
    if p.cluster_id != m.config().cluster_id {
        return Err(Status::permission_denied(
            "certificate belongs to a different cluster",
        ));
    }
    Ok(())
}

fn check_exists(m: &Manager, p: &PeerIdentity) -> Result<(), Status> {
    if !m.store().read(|s| s.nodes.contains_key(p.node_id.as_str())) {
        let status = Status::permission_denied(format!(
            "node {} is not part of this cluster (it was removed)",
            p.node_id
        ));
        // Only the leader says so in a way the agent acts on (it removes its tasks): a
        // follower's store may lag behind a join.
        return Err(if m.is_leader() {
            swarm_api::with_node_removed(status)
        } else {
            status
        });
    }
    Ok(())
}

/// A node of this cluster (worker or manager), optionally the given one: the caller's
/// certificate (or the node a forwarding manager acts for) must name it. Returns the caller.
pub fn require_node<T>(
    m: &Manager,
    req: &Request<T>,
    node_id: Option<&str>,
) -> Result<Option<PeerIdentity>, Status> {
    let Some(p) = caller(m, req)? else {
        return Ok(None);
    };
    check_cluster(m, &p)?;
    if p.role != "manager" && p.role != "worker" {
        return Err(Status::permission_denied(format!(
            "role {} may not call this",
            p.role
        )));
    }
    if let Some(id) = node_id {
        if p.node_id != id {
            return Err(Status::permission_denied(format!(
                "node {} may not act for node {id}",
                p.node_id
            )));
        }
    }
    check_exists(m, &p)?;
    Ok(Some(p))
}

/// Interceptor of the Raft service: managers of this cluster only. (A fresh manager's store
/// is still empty while it catches up, so membership of the node is enforced by Raft itself.)
pub fn raft_interceptor(m: Manager) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |req: Request<()>| {
        let Some(p) = peer(&req)? else {
            return Err(Status::permission_denied("raft is only served over TLS"));
        };
        check_cluster(&m, &p)?;
        if p.role != "manager" {
            return Err(Status::permission_denied(format!(
                "only managers may call raft; this certificate is for a {}",
                role_name(&p.role)
            )));
        }
        Ok(req)
    }
}

/// Interceptor of the control API: the local socket, managers, and admin client certificates.
pub fn control_interceptor(
    m: Manager,
) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |req: Request<()>| {
        let Some(p) = peer(&req)? else { return Ok(req) };
        check_cluster(&m, &p)?;
        match p.role.as_str() {
            "admin" => Ok(req),
            "manager" => {
                check_exists(&m, &p)?;
                Ok(req)
            }
            other => Err(Status::permission_denied(format!(
                "the control API needs a manager or admin certificate; this one is for a {other}"
            ))),
        }
    }
}

/// Interceptor of the dispatcher: nodes of this cluster (the node id is checked per call).
pub fn node_interceptor(m: Manager) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |req: Request<()>| {
        require_node(&m, &req, None)?;
        Ok(req)
    }
}

/// Interceptor of a worker's node-local API over TCP (a worker has no store to check
/// certificates against): managers of this cluster, which forward operators' calls, and admin
/// client certificates. Other workers may not call it.
pub fn worker_agent_interceptor(
    cluster_id: String,
) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |req: Request<()>| {
        let Some(p) = peer(&req)? else { return Ok(req) };
        if p.cluster_id != cluster_id {
            return Err(Status::permission_denied(
                "certificate belongs to a different cluster",
            ));
        }
        match p.role.as_str() {
            "admin" | "manager" => Ok(req),
            other => Err(Status::permission_denied(format!(
                "a node's local API answers managers and admin certificates; this one is for a {}",
                role_name(other)
            ))),
        }
    }
}
