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
    /// The append still on its way to this peer (see `append_entries`).
    in_flight: Option<InFlight>,
}

type AppendResult =
    Result<AppendEntriesResponse<RaftId>, RPCError<RaftId, BasicNode, RaftError<RaftId>>>;

/// An append sent to a peer whose caller stopped waiting (openraft's one-heartbeat timeout):
/// the request keeps going, and the next append to that peer waits for it first.
struct InFlight {
    /// (vote, prev_log_id, last log id sent): equal keys are the same request.
    key: AppendKey,
    task: tokio::task::JoinHandle<AppendResult>,
}

type AppendKey = (
    openraft::Vote<RaftId>,
    Option<openraft::LogId<RaftId>>,
    Option<openraft::LogId<RaftId>>,
);

/// How long one append may take before the peer counts as unreachable. openraft gives up on
/// an append after one heartbeat interval; on a loaded host a follower's append (decode,
/// write, fsync) takes longer than that, and an append that is dropped and resent from the
/// start can never finish. The request outlives openraft's timeout instead, up to this.
const APPEND_LIFETIME: Duration = Duration::from_secs(2);

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
            in_flight: None,
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
        let data =
            super::codec::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.call_encoded(kind, data, timeout).await
    }

    async fn call_encoded<Resp, E>(
        &mut self,
        kind: &'static str,
        data: Vec<u8>,
        timeout: Duration,
    ) -> Result<Resp, RPCError<RaftId, BasicNode, RaftError<RaftId, E>>>
    where
        Resp: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let Some(client) = self.client.clone() else {
            return Err(unreachable(format!("invalid peer address {:?}", self.addr)));
        };
        send(
            client,
            self.reach.clone(),
            self.target,
            self.addr.clone(),
            kind,
            data,
            timeout,
        )
        .await
    }
}

fn unreachable<E: std::error::Error>(
    m: String,
) -> RPCError<RaftId, BasicNode, RaftError<RaftId, E>> {
    RPCError::Unreachable(Unreachable::new(&Msg(m)))
}

/// One RPC to a peer, its outcome recorded in `reach`. Owns everything it needs, so that an
/// append can run on after its caller stopped waiting.
async fn send<Resp, E>(
    mut client: RaftClient<Channel>,
    reach: Reachability,
    target: RaftId,
    addr: String,
    kind: &'static str,
    data: Vec<u8>,
    timeout: Duration,
) -> Result<Resp, RPCError<RaftId, BasicNode, RaftError<RaftId, E>>>
where
    Resp: serde::de::DeserializeOwned,
    E: std::error::Error + serde::de::DeserializeOwned,
{
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
            reach.record(target, false);
            return Err(unreachable(format!("{kind} to {addr} timed out")));
        }
        Ok(Err(status)) => {
            reach.record(target, false);
            return Err(unreachable(format!(
                "{kind} to {addr}: {}",
                status.message()
            )));
        }
        Ok(Ok(r)) => r.into_inner(),
    };
    reach.record(target, true);
    let decoded: Result<Resp, RaftError<RaftId, E>> =
        super::codec::decode(&resp.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
    decoded.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(target, e)))
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<RaftId>, RPCError<RaftId, BasicNode, RaftError<RaftId>>> {
        // openraft bounds every append by the heartbeat interval and backs off for 500 ms after
        // a timeout, heartbeats included, so an append must stay small enough to answer within
        // it: the log reader hands out at most `APPEND_BUDGET_BYTES` of entries per append
        // (`LogStore::limited_get_log_entries`), and openraft continues from there.
        let network = |e: rmp_serde::encode::Error| RPCError::Network(NetworkError::new(&e));
        let data = super::codec::encode(&rpc).map_err(network)?;
        let last = rpc.entries.last().map(|e| e.log_id);
        let key: AppendKey = (rpc.vote, rpc.prev_log_id, last);
        // One append in flight per peer. An earlier one that its caller gave up on is
        // awaited first (awaiting a `JoinHandle` by reference is cancel-safe: when openraft
        // drops this future, the request still runs and the next call finds it here).
        if let Some(f) = self.in_flight.as_mut() {
            let res = (&mut f.task).await;
            let f = self.in_flight.take().expect("in-flight append");
            if f.key == key {
                return joined(res);
            }
            // The same starting point, now with more entries: what the earlier request
            // matched is progress openraft can continue from.
            if let (true, Ok(Ok(AppendEntriesResponse::Success))) = (
                f.key.0 == key.0 && f.key.1 == key.1 && f.key.2.is_some() && f.key.2 < key.2,
                &res,
            ) {
                return Ok(AppendEntriesResponse::PartialSuccess(f.key.2));
            }
        }
        let Some(client) = self.client.clone() else {
            return Err(unreachable(format!("invalid peer address {:?}", self.addr)));
        };
        let task = tokio::spawn(send(
            client,
            self.reach.clone(),
            self.target,
            self.addr.clone(),
            "append",
            data,
            APPEND_LIFETIME.max(option.hard_ttl()),
        ));
        let f = self.in_flight.insert(InFlight { key, task });
        let res = (&mut f.task).await;
        self.in_flight = None;
        joined(res)
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

/// The answer of an append task.
// The result type is openraft's (`RaftNetwork::append_entries`), large error and all.
#[allow(clippy::result_large_err)]
fn joined(res: Result<AppendResult, tokio::task::JoinError>) -> AppendResult {
    res.unwrap_or_else(|e| Err(RPCError::Network(NetworkError::new(&e))))
}
