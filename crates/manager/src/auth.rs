//! Who may call what. Connections over the local control socket carry no TLS information and
//! are trusted (the socket is root-only, mode 0600). Over TCP every connection is TLS; a
//! certificate, when presented, was verified against the cluster CA during the handshake, and
//! here its subject decides: OU = role, CN = node id, O = cluster id. A removed node's
//! certificate is refused because the node no longer exists in the store.

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
        return Err(Status::permission_denied(format!(
            "node {} is not part of this cluster (it was removed)",
            p.node_id
        )));
    }
    Ok(())
}

/// A node of this cluster (worker or manager), optionally the given one.
pub fn require_node<T>(m: &Manager, req: &Request<T>, node_id: Option<&str>) -> Result<(), Status> {
    let Some(p) = peer(req)? else { return Ok(()) };
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
    check_exists(m, &p)
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
                if p.role.is_empty() { "client" } else { &p.role }
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
