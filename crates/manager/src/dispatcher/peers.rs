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

pub use swarm_types::discovery::host_ip;

/// The peer set of `node`, sorted (so equal sets compare equal).
pub fn peers_of(s: &StoreState, node: &NodeId) -> Vec<(u32, Ipv4Addr, Ipv4Addr)> {
    let local: BTreeSet<u32> = s
        .tasks_on(node)
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
    derived(
        manager,
        move |s| peers_of(s, &node),
        |c, _| match &c.object {
            Object::Task(t) => !c.status_only && !t.networks.is_empty(),
            Object::Node(_) => true,
            _ => false,
        },
        |now| NetworkPeersMessage {
            peers: now
                .iter()
                .map(|(vni, addr, host)| NetworkPeer {
                    vni: *vni,
                    addr: addr.to_string(),
                    host: host.to_string(),
                })
                .collect(),
        },
    )
}

/// A stream of a set derived from the store by `compute`: sent whole at the start and again
/// whenever it differs from the last one sent, recomputed after a change `relevant` says can
/// move it, given the last set sent (after a 20 ms settle, so a burst of changes costs one
/// computation).
pub fn derived<T, M>(
    manager: Manager,
    compute: impl Fn(&StoreState) -> T + Send + 'static,
    relevant: impl Fn(&swarm_types::store::Change, Option<&T>) -> bool + Send + 'static,
    message: impl Fn(&T) -> M + Send + 'static,
) -> Pin<Box<dyn Stream<Item = Result<M, Status>> + Send>>
where
    T: PartialEq + Send + 'static,
    M: Send + 'static,
{
    let (tx, out) = tokio::sync::mpsc::channel(4);
    let mut rx = manager.store().subscribe();
    tokio::spawn(async move {
        let mut last: Option<T> = None;
        loop {
            let now = manager.store().read(&compute);
            if last.as_ref() != Some(&now) {
                if tx.send(Ok(message(&now))).await.is_err() {
                    return;
                }
                last = Some(now);
            }
            loop {
                let ev = tokio::select! {
                    ev = rx.recv() => ev,
                    _ = tx.closed() => return,
                };
                match ev {
                    Ok(StoreEvent::Change(c)) if relevant(&c, last.as_ref()) => break,
                    Ok(StoreEvent::Change(_)) => {}
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
