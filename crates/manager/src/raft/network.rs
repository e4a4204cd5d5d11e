//! Raft network over tonic gRPC. openraft's request/response types travel as JSON bytes in
//! `RaftPayload`. Every RPC outcome is recorded in `Reachability`, which is what lets a
//! manager say "no quorum: 1 of 3 managers reachable" without waiting for a timeout.

use super::{RaftId, TypeConfig};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use swarm_api::raft::raft_client::RaftClient;
use swarm_api::raft::RaftPayload;
use tonic::transport::Channel;

/// (last success, last failure) of RPCs to a peer.
type LastContact = (Option<Instant>, Option<Instant>);

/// When each peer last answered and last failed an RPC.
#[derive(Clone, Default)]
pub struct Reachability {
    inner: Arc<Mutex<HashMap<RaftId, LastContact>>>,
}

impl Reachability {
    pub fn record_ok(&self, peer: RaftId) {
        self.record(peer, true)
    }

    fn record(&self, peer: RaftId, ok: bool) {
        let mut m = self.inner.lock().expect("reachability lock");
        let e = m.entry(peer).or_default();
        if ok {
            e.0 = Some(Instant::now());
        } else {
            e.1 = Some(Instant::now());
        }
    }

    /// The last RPC to the peer failed and nothing succeeded since.
    pub fn is_known_down(&self, peer: RaftId) -> bool {
        let m = self.inner.lock().expect("reachability lock");
        match m.get(&peer) {
            Some((ok, Some(fail))) => ok.is_none_or(|ok| ok < *fail),
            _ => false,
        }
    }

    /// A peer is reachable if it answered within `window` and has not failed since.
    pub fn is_reachable(&self, peer: RaftId, window: Duration) -> bool {
        let m = self.inner.lock().expect("reachability lock");
        match m.get(&peer) {
            Some((Some(ok), fail)) => ok.elapsed() <= window && fail.is_none_or(|f| f <= *ok),
            _ => false,
        }
    }
}

/// Builds one client per peer; channels are shared and reconnect lazily.
#[derive(Clone)]
pub struct Network {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    pub reachability: Reachability,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Network {
    pub fn new(tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        Network {
            channels: Arc::default(),
            reachability: Reachability::default(),
            tls,
        }
    }

    /// A (cached) channel to a manager's gRPC address.
    pub fn channel(&self, addr: &str) -> Option<Channel> {
        let mut m = self.channels.lock().expect("channel cache lock");
        if let Some(c) = m.get(addr) {
            return Some(c.clone());
        }
        let c = match &self.tls {
            Some(cfg) => swarm_api::tls::lazy_channel(addr, cfg.clone()).ok()?,
            None => swarm_api::transport::lazy_channel(addr).ok()?,
        };
        m.insert(addr.to_string(), c.clone());
        Some(c)
    }
}

pub struct PeerClient {
    target: RaftId,
    addr: String,
    client: Option<RaftClient<Channel>>,
    reach: Reachability,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: RaftId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            addr: node.addr.clone(),
            client: self.channel(&node.addr).map(|c| {
                RaftClient::new(c)
                    .max_decoding_message_size(swarm_api::MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(swarm_api::MAX_MESSAGE_BYTES)
            }),
            reach: self.reachability.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

impl PeerClient {
    async fn call<Req, Resp, E>(
        &mut self,
        kind: &'static str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, RPCError<RaftId, BasicNode, RaftError<RaftId, E>>>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let unreachable = |m: String| RPCError::Unreachable(Unreachable::new(&Msg(m)));
        let Some(client) = self.client.as_mut() else {
            return Err(unreachable(format!("invalid peer address {:?}", self.addr)));
        };
        let data =
            super::codec::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut request = tonic::Request::new(RaftPayload { data });
        request.set_timeout(timeout);
        let fut = async {
            match kind {
                "append" => client.append_entries(request).await,
                "vote" => client.vote(request).await,
                _ => client.install_snapshot(request).await,
            }
        };
        let res = tokio::time::timeout(timeout, fut).await;
        let resp = match res {
            Err(_) => {
                self.reach.record(self.target, false);
                return Err(unreachable(format!("{kind} to {} timed out", self.addr)));
            }
            Ok(Err(status)) => {
                self.reach.record(self.target, false);
                return Err(unreachable(format!(
                    "{kind} to {}: {}",
                    self.addr,
                    status.message()
                )));
            }
            Ok(Ok(r)) => r.into_inner(),
        };
        self.reach.record(self.target, true);
        let decoded: Result<Resp, RaftError<RaftId, E>> = super::codec::decode(&resp.data)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        decoded
            .map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<RaftId>, RPCError<RaftId, BasicNode, RaftError<RaftId>>> {
        self.call("append", &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<RaftId>,
        RPCError<RaftId, BasicNode, RaftError<RaftId, InstallSnapshotError>>,
    > {
        self.call("snapshot", &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<RaftId>,
        option: RPCOption,
    ) -> Result<VoteResponse<RaftId>, RPCError<RaftId, BasicNode, RaftError<RaftId>>> {
        self.call("vote", &rpc, option.hard_ttl()).await
    }
}
