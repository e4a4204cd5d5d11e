//! Follows the managers' `Dispatcher.NetworkPeers` stream (failing over between managers like
//! the assignment session) and installs each complete peer set on this host's VXLAN devices.

use super::{DataPlane, Peer};
use crate::managers::Managers;
use std::sync::Arc;
use swarm_api::dispatcher::dispatcher_client::DispatcherClient;
use swarm_api::dispatcher::{NetworkPeersMessage, NetworkPeersRequest};
use swarm_types::NodeId;
use tokio::sync::watch;

fn decode(m: &NetworkPeersMessage) -> Vec<Peer> {
    m.peers
        .iter()
        .filter_map(|p| {
            let addr: std::net::Ipv4Addr = p.addr.parse().ok()?;
            let o = addr.octets();
            Some(Peer {
                vni: p.vni,
                addr,
                mac: [0x02, 0x42, o[0], o[1], o[2], o[3]],
                host: p.host.parse().ok()?,
            })
        })
        .collect()
}

/// Runs until `shutdown`.
pub async fn run(
    node: NodeId,
    dp: Arc<DataPlane>,
    managers: Managers,
    shutdown: watch::Receiver<bool>,
) {
    let open = |ch| {
        let node = node.to_string();
        async move {
            DispatcherClient::new(ch)
                .max_decoding_message_size(swarm_api::MAX_MESSAGE_BYTES)
                .network_peers(NetworkPeersRequest { node_id: node })
                .await
                .map(|r| r.into_inner())
        }
    };
    let handle = |m: NetworkPeersMessage| {
        let d = dp.clone();
        async move {
            let peers = decode(&m);
            let n = peers.len();
            match tokio::task::spawn_blocking(move || d.set_peers(peers)).await {
                Ok(Ok(())) => tracing::debug!(peers = n, "overlay peers installed"),
                Ok(Err(e)) => tracing::warn!(error = %e, "overlay peers not fully installed"),
                Err(e) => tracing::warn!(error = %e, "overlay peer installation panicked"),
            }
        }
    };
    crate::managers::follow(&managers, shutdown, open, handle).await
}
