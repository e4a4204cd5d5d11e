//! Follows the managers' `Dispatcher.Discovery` stream (failing over between managers) and
//! installs each view: on the data plane (published ports, virtual IPs in containers) and
//! for the DNS servers, which it also keeps on exactly this host's networks.

use super::dns::Dns;
use super::DataPlane;
use crate::managers::Managers;
use std::sync::Arc;
use std::time::Duration;
use swarm_api::dispatcher::dispatcher_client::DispatcherClient;
use swarm_api::dispatcher::{DiscoveryMessage, DiscoveryRequest};
use swarm_types::discovery::View;
use swarm_types::NodeId;
use tokio::sync::watch;

/// Runs until `shutdown`.
pub async fn run(
    node: NodeId,
    dp: Arc<DataPlane>,
    managers: Managers,
    shutdown: watch::Receiver<bool>,
) {
    let (view_tx, view_rx) = watch::channel(Arc::new(View::default()));
    let dns = Arc::new(Dns::new(view_rx));
    // The DNS servers follow the networks on this host.
    let keeper = {
        let (dp, dns, mut shutdown) = (dp.clone(), dns.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                dns.sync(&dp.gateways()).await;
                tokio::select! {
                    _ = dp.changed().notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = shutdown.changed() => return,
                }
            }
        })
    };
    let open = |ch| {
        let node = node.to_string();
        async move {
            DispatcherClient::new(ch)
                .max_decoding_message_size(swarm_api::MAX_MESSAGE_BYTES)
                .discovery(DiscoveryRequest { node_id: node })
                .await
                .map(|r| r.into_inner())
        }
    };
    let handle = |m: DiscoveryMessage| {
        let (dp, view_tx) = (dp.clone(), view_tx.clone());
        async move {
            let view: View = match serde_json::from_slice(&m.view) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable discovery view");
                    return;
                }
            };
            let view = Arc::new(view);
            let n = (view.services.len(), view.tasks.len());
            let v = view.clone();
            match tokio::task::spawn_blocking(move || dp.set_view(v)).await {
                Ok(Ok(())) => {
                    tracing::debug!(services = n.0, tasks = n.1, "discovery view installed")
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "discovery view not fully installed"),
                Err(e) => tracing::warn!(error = %e, "discovery view installation panicked"),
            }
            // DNS answers after the addresses they name are balanced.
            let _ = view_tx.send(view);
        }
    };
    crate::managers::follow(&managers, shutdown, open, handle).await;
    keeper.abort();
}
