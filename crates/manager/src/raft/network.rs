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
    /// The last log id each peer reported in its answer to this node's vote request: a hint
    /// (never trusted, see `append_entries`) of what a new leader need not send again.
    voters_last: VotersLast,
}

type VotersLast = Arc<Mutex<HashMap<RaftId, openraft::LogId<RaftId>>>>;

impl Network {
    pub fn new(tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        Network {
            channels: Arc::default(),
            reachability: Reachability::default(),
            tls,
            voters_last: Arc::default(),
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
    voters_last: VotersLast,
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
            voters_last: self.voters_last.clone(),
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
        // A new leader does not know where a follower's log ends and probes for it by
        // resending entries from the middle of its own log: after a 100k-task burst, MiBs
        // the follower already holds, before the leader's first entry can commit. When the
        // follower's vote answer said its log reaches as far, ask first with no entries and
        // `prev_log_id` at the last one: openraft's own check on the follower accepts only if
        // it holds that exact log id, and then (Raft's log matching) it holds every entry
        // before it too, which is what a success for the full request means. Otherwise the
        // full request follows.
        let probe = match last {
            Some(l) if self.holds(l) => Some(
                super::codec::encode(&AppendEntriesRequest::<TypeConfig> {
                    vote: rpc.vote,
                    prev_log_id: Some(l),
                    entries: Vec::new(),
                    leader_commit: rpc.leader_commit,
                })
                .map_err(network)?,
            ),
            _ => None,
        };
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
        let (reach, target, addr) = (self.reach.clone(), self.target, self.addr.clone());
        let ttl = APPEND_LIFETIME.max(option.hard_ttl());
        let task = tokio::spawn(async move {
            if let Some(probe) = probe {
                let r: AppendResult = send(
                    client.clone(),
                    reach.clone(),
                    target,
                    addr.clone(),
                    "append",
                    probe,
                    ttl,
                )
                .await;
                match r {
                    Ok(AppendEntriesResponse::Conflict) => {}
                    Ok(AppendEntriesResponse::Success) => {
                        tracing::debug!(
                            target,
                            ?last,
                            "append: the follower held the entries already"
                        );
                        return Ok(AppendEntriesResponse::Success);
                    }
                    other => return other,
                }
            }
            let (bytes, t0) = (data.len(), Instant::now());
            let r = send(client, reach, target, addr, "append", data, ttl).await;
            tracing::trace!(target, bytes, took = ?t0.elapsed(), ok = r.is_ok(), "append");
            r
        });
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
        let r: VoteResponse<RaftId> = self.call("vote", &rpc, option.hard_ttl()).await?;
        let mut m = self.voters_last.lock().expect("voters' last log ids");
        match r.last_log_id {
            Some(l) => m.insert(self.target, l),
            None => m.remove(&self.target),
        };
        drop(m);
        Ok(r)
    }
}

impl PeerClient {
    /// Whether this peer's last vote answer said its log reaches at least `l`'s index (a
    /// hint for `append_entries`; the follower checks the exact log id itself).
    fn holds(&self, l: openraft::LogId<RaftId>) -> bool {
        self.voters_last
            .lock()
            .expect("voters' last log ids")
            .get(&self.target)
            .is_some_and(|v| v.index >= l.index)
    }
}

/// The answer of an append task.
// The result type is openraft's (`RaftNetwork::append_entries`), large error and all.
#[allow(clippy::result_large_err)]
fn joined(res: Result<AppendResult, tokio::task::JoinError>) -> AppendResult {
    res.unwrap_or_else(|e| Err(RPCError::Network(NetworkError::new(&e))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
    use swarm_api::raft::raft_server::{Raft, RaftServer};
    use swarm_api::raft::{
        ForwardWriteRequest, ForwardWriteResponse, ReadIndexRequest, ReadIndexResponse,
    };
    use tonic::{Request, Response, Status};

    fn id(index: u64) -> LogId<RaftId> {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    /// A follower whose log holds the leader's entries up to `held`; it records what it is
    /// sent and, with `conflict_probes`, refuses appends without entries (as a follower whose
    /// entry at that index came from another term does).
    struct Follower {
        held: LogId<RaftId>,
        conflict_probes: bool,
        seen: Arc<Mutex<Vec<AppendEntriesRequest<TypeConfig>>>>,
    }

    fn answer<T: serde::Serialize>(v: T) -> Result<Response<RaftPayload>, Status> {
        let r: Result<T, RaftError<RaftId>> = Ok(v);
        Ok(Response::new(RaftPayload {
            data: super::super::codec::encode(&r).unwrap(),
        }))
    }

    #[tonic::async_trait]
    impl Raft for Follower {
        async fn append_entries(
            &self,
            req: Request<RaftPayload>,
        ) -> Result<Response<RaftPayload>, Status> {
            let req: AppendEntriesRequest<TypeConfig> =
                super::super::codec::decode(&req.into_inner().data).unwrap();
            let probe = req.entries.is_empty();
            let holds = req.prev_log_id.is_none_or(|p| p.index <= self.held.index);
            self.seen.lock().unwrap().push(req);
            answer(if probe && (self.conflict_probes || !holds) {
                AppendEntriesResponse::<RaftId>::Conflict
            } else {
                AppendEntriesResponse::Success
            })
        }
        async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
            let req: VoteRequest<RaftId> =
                super::super::codec::decode(&req.into_inner().data).unwrap();
            answer(VoteResponse {
                vote: req.vote,
                vote_granted: true,
                last_log_id: Some(self.held),
            })
        }
        async fn install_snapshot(
            &self,
            _: Request<RaftPayload>,
        ) -> Result<Response<RaftPayload>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
        async fn forward_write(
            &self,
            _: Request<ForwardWriteRequest>,
        ) -> Result<Response<ForwardWriteResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
        async fn read_index(
            &self,
            _: Request<ReadIndexRequest>,
        ) -> Result<Response<ReadIndexResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
    }

    /// A client of a follower served on loopback, after a vote the follower answered.
    async fn client_of(
        f: Follower,
    ) -> (
        PeerClient,
        Arc<Mutex<Vec<AppendEntriesRequest<TypeConfig>>>>,
    ) {
        let seen = f.seen.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(RaftServer::new(f))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let mut net = Network::new(None);
        let mut c = net.new_client(2, &BasicNode { addr }).await;
        let opt = RPCOption::new(Duration::from_secs(5));
        let vote = VoteRequest::new(Vote::new(2, 1), Some(id(12)));
        c.vote(vote, opt).await.unwrap();
        (c, seen)
    }

    fn append(from: u64, to: u64) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(2, 1),
            prev_log_id: Some(id(from - 1)),
            entries: (from..=to)
                .map(|i| Entry {
                    log_id: id(i),
                    payload: EntryPayload::Blank,
                })
                .collect(),
            leader_commit: None,
        }
    }

    fn shape(seen: &Mutex<Vec<AppendEntriesRequest<TypeConfig>>>) -> Vec<(u64, usize)> {
        let seen = seen.lock().unwrap();
        seen.iter()
            .map(|r| (r.prev_log_id.map_or(0, |p| p.index), r.entries.len()))
            .collect()
    }

    #[tokio::test]
    async fn a_new_leader_does_not_resend_entries_a_follower_said_it_holds() {
        let (mut c, seen) = client_of(Follower {
            held: id(10),
            conflict_probes: false,
            seen: Arc::default(),
        })
        .await;
        let opt = || RPCOption::new(Duration::from_secs(5));
        // Held (the vote answer said 10): one request without entries, at the last one.
        let r = c.append_entries(append(5, 8), opt()).await.unwrap();
        assert_eq!(r, AppendEntriesResponse::Success);
        assert_eq!(shape(&seen), vec![(8, 0)]);
        // Beyond what it held: the entries themselves.
        seen.lock().unwrap().clear();
        let r = c.append_entries(append(9, 12), opt()).await.unwrap();
        assert_eq!(r, AppendEntriesResponse::Success);
        assert_eq!(shape(&seen), vec![(8, 4)]);
    }

    #[tokio::test]
    async fn a_refused_probe_is_followed_by_the_entries() {
        let (mut c, seen) = client_of(Follower {
            held: id(10),
            conflict_probes: true,
            seen: Arc::default(),
        })
        .await;
        let r = c
            .append_entries(append(5, 8), RPCOption::new(Duration::from_secs(5)))
            .await
            .unwrap();
        assert_eq!(r, AppendEntriesResponse::Success);
        assert_eq!(shape(&seen), vec![(8, 0), (4, 4)]);
    }
}
