//! A running manager: the Raft node, its object store and the write/read paths every API uses.
//!
//! Writes go to the leader (a follower forwards them over the Raft service) and fail within
//! `write_timeout` with a "no quorum" error when no majority answers. Reads are linearizable
//! through a read index (a follower asks the leader for it, then waits until it has applied
//! that far) unless the caller asks for a stale read.

use crate::group_commit::{coalesce, Pending, ProposeError};
use crate::raft::network::Network;
use crate::raft::storage;
use crate::raft::{Raft, RaftId};
use crate::store::SharedStore;
use openraft::error::RaftError;
use openraft::{BasicNode, ServerState};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use swarm_api::raft::raft_client::RaftClient;
use swarm_api::raft::{ForwardWriteRequest, ReadIndexRequest};
use swarm_api::wire;
use swarm_types::store::{Op, StoreError, WriteBatch};
use swarm_types::{NodeId, Object};

mod read;
mod write;

#[derive(Clone, Debug)]
pub struct ManagerConfig {
    pub node_id: NodeId,
    /// The cluster this manager belongs to (certificates must name it).
    pub cluster_id: String,
    /// TLS client configuration for connections to other managers (None: plaintext, tests).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    pub raft_id: RaftId,
    /// Address peers and agents reach this manager's gRPC server on.
    pub advertise_addr: String,
    /// Directory of the sled database.
    pub raft_dir: PathBuf,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many log entries since the last one.
    pub snapshot_interval: u64,
    /// Log entries kept behind a snapshot (a peer further behind gets the snapshot).
    pub logs_to_keep: u64,
    /// A write or linearizable read that cannot complete within this fails with "no quorum".
    pub write_timeout: Duration,
}

impl ManagerConfig {
    pub fn new(
        node_id: NodeId,
        raft_id: RaftId,
        advertise_addr: String,
        raft_dir: PathBuf,
    ) -> Self {
        ManagerConfig {
            node_id,
            cluster_id: String::new(),
            tls: None,
            raft_id,
            advertise_addr,
            raft_dir,
            heartbeat_ms: 100,
            election_timeout_min_ms: 0,
            election_timeout_max_ms: 0,
            snapshot_interval: 10_000,
            logs_to_keep: 1_000,
            write_timeout: Duration::from_millis(1800),
        }
        .with_election_timeout(DEFAULT_ELECTION_TIMEOUT_MS)
    }

    /// Sets the election timeout range from its minimum: `min_ms` to `min_ms` × 5/4.
    ///
    /// openraft 0.9 also makes a follower honour its leader's lease, which it fixes at the
    /// range's maximum, before that timeout starts: after a leader dies, the first follower
    /// campaigns `max + its timeout` (plus up to one tick, 1.5 heartbeats) after the last
    /// heartbeat it heard. A range of 2× (300–600 ms, until 2026-12-05) meant 900–1,200 ms;
    /// 400–500 ms keeps the shortest silence that starts an election at 900 ms (what rides out
    /// a starved leader) and cuts the longest to 1,000 ms. The range still spreads the
    /// followers' campaigns over 100 ms, beside their ticks' own phases.
    pub fn with_election_timeout(mut self, min_ms: u64) -> Self {
        self.election_timeout_min_ms = min_ms;
        self.election_timeout_max_ms = min_ms + (min_ms / 4).max(1);
        self
    }

    /// How long a leader may go without a quorum's acknowledgement before it refuses writes
    /// as "no quorum" (and twice this, how long a silent peer still counts as reachable):
    /// 1.5 × the minimum election timeout, 600 ms by default, as before the range narrowed.
    pub fn quorum_ack_window_ms(&self) -> u64 {
        self.election_timeout_min_ms * 3 / 2
    }
}

/// Minimum election timeout in milliseconds (see `ManagerConfig::with_election_timeout`).
pub const DEFAULT_ELECTION_TIMEOUT_MS: u64 = 400;

pub use crate::write_error::WriteError;

struct Inner {
    cfg: ManagerConfig,
    raft: Raft,
    store: SharedStore,
    network: Network,
    /// Writes waiting to be proposed by the coalescer (leader only).
    proposals: tokio::sync::mpsc::Sender<Pending>,
    /// (term, last log index when this process first served a read as leader in that term):
    /// no read of the term is answered below it. See `read_index_as_leader`.
    read_floor: std::sync::Mutex<(u64, u64)>,
    /// Log subscriptions and node log channels (used while this manager leads).
    logs: Arc<crate::logs::LogBroker>,
}

/// Cheap to clone; all clones share one Raft node.
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

impl Manager {
    /// Opens the storage in `cfg.raft_dir` and starts the Raft node (not yet initialized when
    /// the directory is new).
    pub async fn start(cfg: ManagerConfig) -> Result<Manager, StartError> {
        std::fs::create_dir_all(&cfg.raft_dir)
            .map_err(|e| StartError(format!("create {}: {e}", cfg.raft_dir.display())))?;
        let db = storage::open_db(&cfg.raft_dir).map_err(|e| {
            StartError(format!(
                "open raft state in {}: {e}; is another swarmd using this state dir?",
                cfg.raft_dir.display()
            ))
        })?;
        let (log, sm) = storage::open(&db, &cfg.raft_dir)
            .map_err(|e| StartError(format!("open raft storage: {e}")))?;
        let store = sm.shared();
        let log_volume = log.volume();
        let raft_cfg = openraft::Config {
            cluster_name: "swarm".into(),
            heartbeat_interval: cfg.heartbeat_ms,
            election_timeout_min: cfg.election_timeout_min_ms,
            election_timeout_max: cfg.election_timeout_max_ms,
            max_payload_entries: 256,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(cfg.snapshot_interval),
            max_in_snapshot_log_to_keep: cfg.logs_to_keep,
            // JSON of a chunk stays far below the gRPC message limit.
            snapshot_max_chunk_size: 512 * 1024,
            install_snapshot_timeout: 5_000,
            ..Default::default()
        };
        let raft_cfg = Arc::new(
            raft_cfg
                .validate()
                .map_err(|e| StartError(format!("raft config: {e}")))?,
        );
        let network = Network::new(cfg.tls.clone());
        let raft = Raft::new(cfg.raft_id, raft_cfg, network.clone(), log, sm)
            .await
            .map_err(|e| StartError(format!("start raft: {e}")))?;
        tokio::spawn(compact_by_size(raft.clone(), log_volume));
        let (proposals, rx) = tokio::sync::mpsc::channel(8192);
        tokio::spawn(coalesce(
            raft.clone(),
            rx,
            cfg.write_timeout + OVERLOAD_PATIENCE,
        ));
        let logs = Arc::new(crate::logs::LogBroker::default());
        tokio::spawn(drop_logs_when_not_leading(
            raft.clone(),
            cfg.raft_id,
            Arc::downgrade(&logs),
        ));
        Ok(Manager {
            inner: Arc::new(Inner {
                cfg,
                raft,
                store,
                network,
                proposals,
                read_floor: std::sync::Mutex::new((0, 0)),
                logs,
            }),
        })
    }

    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }
    pub fn store(&self) -> &SharedStore {
        &self.inner.store
    }
    /// The log broker (meaningful on the leader).
    pub fn logs(&self) -> &crate::logs::LogBroker {
        &self.inner.logs
    }
    pub fn config(&self) -> &ManagerConfig {
        &self.inner.cfg
    }
    pub fn network(&self) -> &Network {
        &self.inner.network
    }
    pub fn raft_id(&self) -> RaftId {
        self.inner.cfg.raft_id
    }

    /// Makes this node the first member of a new cluster.
    pub async fn initialize_cluster(&self) -> Result<(), WriteError> {
        let mut members = BTreeMap::new();
        members.insert(
            self.raft_id(),
            BasicNode::new(&self.inner.cfg.advertise_addr),
        );
        match self.inner.raft.initialize(members).await {
            Ok(()) => Ok(()),
            // Already initialized (resuming an interrupted bootstrap): fine.
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(WriteError::Raft(e.to_string())),
        }
    }

    /// Records that a peer talked to us (followers learn reachability from inbound traffic).
    pub fn note_contact(&self, peer: Option<RaftId>) {
        if let Some(p) = peer {
            if p != self.raft_id() {
                self.inner.network.reachability.record_ok(p);
            }
        }
    }

    pub fn is_leader(&self) -> bool {
        self.inner.raft.metrics().borrow().current_leader == Some(self.raft_id())
    }

    /// The leader's raft id and address, if one is known.
    pub fn leader(&self) -> Option<(RaftId, String)> {
        let rx = self.inner.raft.metrics();
        let m = rx.borrow();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?;
        Some((id, node.addr.clone()))
    }

    /// Where a leader-only request goes: `Ok(None)` when this manager leads, else a channel to
    /// the leader. The one forwarding path of the manager (writes, read indexes, node RPCs,
    /// role changes); node RPCs add the caller's identity with [`crate::auth::on_behalf`].
    pub fn leader_channel(&self) -> Result<Option<tonic::transport::Channel>, tonic::Status> {
        match self.leader() {
            Some((id, _)) if id == self.raft_id() => Ok(None),
            Some((_, addr)) => self.channel_to(&addr).map(Some),
            None => Err(tonic::Status::unavailable(
                "no leader elected yet; retry in a moment",
            )),
        }
    }

    /// A (cached) channel to the manager at `addr`, with this manager's certificate.
    pub fn channel_to(&self, addr: &str) -> Result<tonic::transport::Channel, tonic::Status> {
        self.inner
            .network
            .channel(addr)
            .ok_or_else(|| tonic::Status::unavailable(format!("bad manager address {addr}")))
    }

    /// Voter ids of the current membership.
    pub fn voters(&self) -> Vec<RaftId> {
        let rx = self.inner.raft.metrics();
        let m = rx.borrow();
        m.membership_config.membership().voter_ids().collect()
    }

    /// All members (voters and learners) with their addresses.
    pub fn members(&self) -> Vec<(RaftId, String, bool)> {
        let rx = self.inner.raft.metrics();
        let m = rx.borrow();
        let mem = m.membership_config.membership();
        let voters: Vec<RaftId> = mem.voter_ids().collect();
        mem.nodes()
            .map(|(id, n)| (*id, n.addr.clone(), voters.contains(id)))
            .collect()
    }

    /// Whether a member answered recently (self always does).
    pub fn is_reachable(&self, id: RaftId) -> bool {
        if id == self.raft_id() {
            return true;
        }
        let window = Duration::from_millis(self.inner.cfg.quorum_ack_window_ms() * 2);
        self.inner.network.reachability.is_reachable(id, window)
    }

    pub fn server_state(&self) -> ServerState {
        self.inner.raft.metrics().borrow().state
    }

    /// Resolves when this manager's Raft node stopped on its own (a fatal error such as a
    /// log write that failed on a full disk), with the error; never resolves on a normal
    /// shutdown. A manager in that state can neither vote, replicate nor apply again: the
    /// process must exit so that its supervisor restarts it from its storage.
    pub async fn fatal(&self) -> String {
        let mut rx = self.inner.raft.metrics();
        let stopped =
            rx.wait_for(|m| m.running_state.is_err())
                .await
                .map(|m| match &m.running_state {
                    Err(openraft::error::Fatal::Stopped) | Ok(()) => None,
                    Err(e) => Some(e.to_string()),
                });
        match stopped {
            // A normal shutdown.
            Ok(None) => std::future::pending().await,
            Ok(Some(e)) => e,
            // The metrics channel closed: the core is gone without a word.
            Err(_) => "raft core exited".to_string(),
        }
    }

    pub async fn shutdown(&self) {
        let _ = self.inner.raft.shutdown().await;
    }

    /// Time left before `deadline` for a write or read barrier begun at `started`. Past the
    /// deadline, while a quorum of managers is still reachable and for at most
    /// [`OVERLOAD_PATIENCE`], the deadline moves on by [`PATIENCE_STEP`] (an election on an
    /// overloaded host takes longer than `write_timeout`); zero means give up.
    fn remaining_with_patience(&self, started: Instant, deadline: &mut Instant) -> Duration {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero()
            && started.elapsed() < OVERLOAD_PATIENCE
            && matches!(self.no_quorum(), WriteError::Timeout { .. })
        {
            *deadline = Instant::now() + PATIENCE_STEP;
            return PATIENCE_STEP;
        }
        remaining
    }
}

/// How long a write handed to Raft keeps waiting past `write_timeout` while a quorum is
/// still acknowledging the leader: overload (a starved CPU, a burst of clients) makes writes
/// slow, and a slow write is not a failed one. Without a quorum the write still fails after
/// `write_timeout`.
const OVERLOAD_PATIENCE: Duration = Duration::from_secs(10);
/// How often a patient wait re-checks that the quorum is still there.
const PATIENCE_STEP: Duration = Duration::from_millis(200);

/// Why a manager could not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

/// Keeps the log's size bounded, which openraft's rules (in entries) do not: asks for a
/// snapshot whenever the log has grown past its size threshold since the last one
/// ([`storage::LogVolume`]) or, smaller, once the cluster has been quiet for a moment
/// ([`storage::LogVolume::due_at_rest`]), and after every snapshot purges all but the last
/// [`storage::KEPT_LOG_BYTES`] behind it. Ends with the manager.
async fn compact_by_size(raft: Raft, volume: Arc<storage::LogVolume>) {
    let mut rx = raft.metrics();
    let mut seen_snapshot = None;
    let mut rest_check = tokio::time::interval(storage::QUIET_BEFORE_REST_SNAPSHOT / 2);
    rest_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When a snapshot at rest was asked for and not yet seen in the metrics (openraft builds
    // one at a time); asked again after a minute in case that one never came.
    let mut asked_at_rest: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = volume.due() => {
                tracing::info!(log_bytes = volume.since_snapshot(), "log large enough for a snapshot");
                if raft.trigger().snapshot().await.is_err() {
                    return;
                }
            }
            _ = rest_check.tick() => {
                let now = std::time::Instant::now();
                let pending = asked_at_rest.is_some_and(|t| now - t < std::time::Duration::from_secs(60));
                if pending || !volume.due_at_rest(now) {
                    continue;
                }
                tracing::info!(log_bytes = volume.since_snapshot(), "the log is quiet: compacting it");
                asked_at_rest = Some(now);
                if raft.trigger().snapshot().await.is_err() {
                    return;
                }
            }
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
                let (snapshot, purged) = {
                    let m = rx.borrow_and_update();
                    (m.snapshot.map(|l| l.index), m.purged.map(|l| l.index))
                };
                if snapshot == seen_snapshot {
                    continue;
                }
                seen_snapshot = snapshot;
                asked_at_rest = None;
                let Some(upto) = snapshot
                    .and_then(|s| volume.purge_point(s, storage::KEPT_LOG_BYTES))
                    .filter(|&u| Some(u) > purged)
                else {
                    continue;
                };
                tracing::info!(upto, "purging the log behind the snapshot");
                if raft.trigger().purge_log(upto).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Empties the log broker whenever this manager stops leading, so agents and readers move to
/// the new leader. Ends with the manager.
async fn drop_logs_when_not_leading(
    raft: Raft,
    me: RaftId,
    logs: std::sync::Weak<crate::logs::LogBroker>,
) {
    let mut rx = raft.metrics();
    loop {
        let leading = rx.borrow_and_update().current_leader == Some(me);
        let Some(b) = logs.upgrade() else { return };
        if !leading && !b.is_idle() {
            b.clear("this manager no longer leads the cluster; reconnect to the new leader");
        }
        drop(b);
        if rx.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod retry_tests {
    use super::write::*;
    use super::*;

    #[test]
    fn a_conflict_after_an_unknown_attempt_proves_nothing_and_other_refusals_stand() {
        let mismatch = WriteError::Store(StoreError::VersionMismatch {
            kind: "service".into(),
            id: "s".into(),
            expected: 7696,
            actual: 7710,
        });
        assert!(own_attempt_may_explain(&mismatch, false));
        let exists = WriteError::Store(StoreError::NameConflict {
            kind: "service".into(),
            name: "web".into(),
            id: "s".into(),
        });
        assert!(own_attempt_may_explain(&exists, false));
        let gone = WriteError::Store(StoreError::NotFound {
            kind: "service".into(),
            id: "s".into(),
        });
        assert!(own_attempt_may_explain(&gone, true));
        assert!(!own_attempt_may_explain(&gone, false));
        let in_use = WriteError::Store(StoreError::InUse {
            kind: "network".into(),
            id: "n".into(),
            by: "t".into(),
        });
        assert!(!own_attempt_may_explain(&in_use, false));
    }
}
