//! Follows the managers' `Dispatcher.NetworkPeers` stream (failing over between managers like
//! the assignment session) and installs each complete peer set on this host's VXLAN devices.

use super::{DataPlane, Peer};
use crate::managers::Managers;
use std::sync::Arc;
use std::time::Duration;
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
    mut shutdown: watch::Receiver<bool>,
) {
    let mut idx = 0usize;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let Some(addr) = managers.pick(idx) else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let open = async {
            let ch = managers.channel(&addr)?;
            DispatcherClient::new(ch)
                .max_decoding_message_size(swarm_api::MAX_MESSAGE_BYTES)
                .network_peers(NetworkPeersRequest {
                    node_id: node.to_string(),
                })
                .await
                .map(|r| r.into_inner())
                .map_err(|s| s.message().to_string())
        };
        let mut stream = match tokio::time::timeout(Duration::from_secs(5), open).await {
            Ok(Ok(s)) => s,
            _ => {
                idx += 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
        };
        loop {
            let msg = tokio::select! {
                m = stream.message() => m,
                _ = shutdown.changed() => return,
            };
            let Ok(Some(m)) = msg else { break };
            let peers = decode(&m);
            let d = dp.clone();
            let n = peers.len();
            match tokio::task::spawn_blocking(move || d.set_peers(peers)).await {
                Ok(Ok(())) => tracing::debug!(peers = n, "overlay peers installed"),
                Ok(Err(e)) => tracing::warn!(error = %e, "overlay peers not fully installed"),
                Err(e) => tracing::warn!(error = %e, "overlay peer installation panicked"),
            }
        }
        idx += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
