//! The overlay peers of a node, derived from the store: for every overlay network one of the
//! node's tasks is attached to, the other hosts' tasks on it (address, host address). Sent as
//! a complete set at the start of the stream and after every change of it, so an agent that
//! reconnects (or restarts) converges without remembering anything.

use crate::manager::Manager;
use crate::store::StoreEvent;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::time::Duration;
use swarm_api::dispatcher::{NetworkPeer, NetworkPeersMessage};
use swarm_types::network::NetworkDriver;
use swarm_types::store::StoreState;
use swarm_types::{NodeId, Object};
use tokio_stream::Stream;
use tonic::Status;

pub type PeersStream = Pin<Box<dyn Stream<Item = Result<NetworkPeersMessage, Status>> + Send>>;

/// The host part of a node's address (`IP:PORT` or `IP`).
pub fn host_ip(addr: &str) -> Option<Ipv4Addr> {
    addr.parse::<std::net::SocketAddrV4>()
        .map(|a| *a.ip())
        .ok()
        .or_else(|| addr.parse().ok())
}

/// The peer set of `node`, sorted (so equal sets compare equal).
pub fn peers_of(s: &StoreState, node: &NodeId) -> Vec<(u32, Ipv4Addr, Ipv4Addr)> {
    let local: BTreeSet<u32> = s
        .tasks
        .values()
        .filter(|t| t.node_id.as_ref() == Some(node))
        .flat_map(|t| t.networks.iter())
        .filter(|a| a.driver == NetworkDriver::Overlay)
        .map(|a| a.vni)
        .collect();
    if local.is_empty() {
        return Vec::new();
    }
    let mut out: BTreeSet<(u32, Ipv4Addr, Ipv4Addr)> = BTreeSet::new();
    for t in s.tasks.values() {
        let Some(n) = &t.node_id else { continue };
        if n == node {
            continue;
        }
        let Some(host) = s.nodes.get(n).and_then(|n| host_ip(&n.status.addr)) else {
            continue;
        };
        for a in &t.networks {
            if local.contains(&a.vni) {
                out.insert((a.vni, a.address.addr, host));
            }
        }
    }
    out.into_iter().collect()
}

pub fn stream(manager: Manager, node: NodeId) -> PeersStream {
    let (tx, out) = tokio::sync::mpsc::channel(4);
    let mut rx = manager.store().subscribe();
    tokio::spawn(async move {
        let mut last: Option<Vec<(u32, Ipv4Addr, Ipv4Addr)>> = None;
        loop {
            let now = manager.store().read(|s| peers_of(s, &node));
            if last.as_ref() != Some(&now) {
                let msg = NetworkPeersMessage {
                    peers: now
                        .iter()
                        .map(|(vni, addr, host)| NetworkPeer {
                            vni: *vni,
                            addr: addr.to_string(),
                            host: host.to_string(),
                        })
                        .collect(),
                };
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
                last = Some(now);
            }
            // Wait for a change that can move the set (a task placed, created or deleted, a
            // node's address), then let a burst settle.
            loop {
                let ev = tokio::select! {
                    ev = rx.recv() => ev,
                    _ = tx.closed() => return,
                };
                match ev {
                    Ok(StoreEvent::Change(c)) => {
                        let relevant = match &c.object {
                            Object::Task(t) => !c.status_only && !t.networks.is_empty(),
                            Object::Node(_) => true,
                            _ => false,
                        };
                        if relevant {
                            break;
                        }
                    }
                    Ok(StoreEvent::Reset)
                    | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            // Drain what arrived meanwhile: the next read covers it.
            while let Ok(_ev) = rx.try_recv() {}
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(out))
}
