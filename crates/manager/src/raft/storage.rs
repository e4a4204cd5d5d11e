//! Raft storage on sled, in this one module (the seam where another embedded store would go).
//!
//! Layout (one sled database per manager, `<state-dir>/raft`):
//! - tree `log`: big-endian u64 index → JSON `Entry`
//! - tree `meta`: `vote`, `committed`, `last_purged` → JSON
//! - the snapshot in its own file beside the database (`snapshot_file`); tree `snapshot`
//!   held it before and is only read when that file does not exist yet
//!
//! sled only syncs in the background, so every vote and every append is flushed before it is
//! acknowledged (one flush per appended batch). The state machine lives in memory and is
//! persisted through snapshots; after a restart it is rebuilt from the last snapshot plus the
//! committed log (openraft re-applies up to the saved committed index).

// openraft's `StorageError` is the error type its storage traits impose.
#![allow(clippy::result_large_err)]

use super::snapshot_file::SnapshotFile;
use super::{LogId, RaftId, StorageError, TypeConfig, WriteOutcome};
use crate::store::{SharedStore, StoreEvent};
use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, Entry, EntryPayload, LogState, RaftLogReader, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageIOError, StoredMembership, Vote,
};
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;
use swarm_types::store::StoreState;

type Membership = StoredMembership<RaftId, openraft::BasicNode>;
type StoredSnapshot = (SnapshotMeta<RaftId, openraft::BasicNode>, Vec<u8>);

fn io_err<E: std::error::Error + 'static>(
    f: fn(AnyError) -> StorageIOError<RaftId>,
    e: E,
) -> StorageError {
    StorageError::IO {
        source: f(AnyError::new(&e)),
    }
}

/// Opens (or creates) the sled database holding one manager's Raft state.
pub fn open_db(dir: &Path) -> Result<sled::Db, sled::Error> {
    sled::Config::new()
        .path(dir)
        // Flushing is explicit (before every acknowledgement); the background flusher only
        // bounds how much unflushed state-machine metadata can pile up.
        .flush_every_ms(Some(1000))
        .cache_capacity(64 * 1024 * 1024)
        .open()
}

// ---------------------------------------------------------------------------------------------
// Log volume: snapshots by size as well as by count

/// Log bytes that make a snapshot due even when the entry count has not: at least this, or
/// as much as the last snapshot took (so compaction costs at most about what it saves).
pub const MIN_LOG_BYTES_PER_SNAPSHOT: u64 = 32 << 20;

/// Log bytes kept behind a snapshot (for followers slightly behind), whatever the entry count
/// `--raft-logs-to-keep` allows: 1,000 entries of group commit can be 1 GiB.
pub const KEPT_LOG_BYTES: u64 = 8 << 20;

/// How much log was appended since the last snapshot, and a signal when that is too much.
///
/// openraft's policy counts entries, but one entry holds from one object to a whole group
/// commit of a thousand: 50 bursts of 10,000 tasks wrote ~350 MiB of log in fewer entries
/// than the default interval, never compacted, and the managers' memory and write latency
/// grew with it round after round (BENCHMARKS 2026-12-04, fourth session).
#[derive(Debug, Default)]
pub struct LogVolume {
    since_snapshot: std::sync::atomic::AtomicU64,
    last_snapshot: std::sync::atomic::AtomicU64,
    due: tokio::sync::Notify,
    /// (index, encoded bytes) of the most recent entries: where a purge that keeps
    /// [`KEPT_LOG_BYTES`] behind a snapshot should stop.
    recent: std::sync::Mutex<Recent>,
}

/// The window of recent entries and the sum of their bytes (kept, not recomputed: this runs
/// on every append).
#[derive(Debug, Default)]
struct Recent {
    entries: std::collections::VecDeque<(u64, u64)>,
    bytes: u64,
}

impl LogVolume {
    fn threshold(&self) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        MIN_LOG_BYTES_PER_SNAPSHOT.max(self.last_snapshot.load(Relaxed))
    }

    /// Entries of these (index, encoded bytes) were appended.
    pub fn appended_entries(&self, entries: &[(u64, u64)]) {
        let mut r = self.recent.lock().expect("log volume lock");
        let Recent {
            entries: recent,
            bytes,
        } = &mut *r;
        if let Some(&(first, _)) = entries.first() {
            // A truncated and rewritten tail: forget what it replaced.
            while recent.back().is_some_and(|&(i, _)| i >= first) {
                *bytes -= recent.pop_back().map_or(0, |(_, b)| b);
            }
        }
        for &(i, b) in entries {
            recent.push_back((i, b));
            *bytes += b;
        }
        // The purge point is looked up behind a snapshot that lags the newest entry by up to
        // a snapshot's worth of log: remember that much more (and at most 65,536 entries).
        let window = MIN_LOG_BYTES_PER_SNAPSHOT + 4 * KEPT_LOG_BYTES;
        while recent.len() > 1 && (*bytes - recent[0].1 >= window || recent.len() > 65_536) {
            *bytes -= recent.pop_front().map_or(0, |(_, b)| b);
        }
        drop(r);
        self.appended(entries.iter().map(|(_, b)| b).sum());
    }

    /// The last index to purge so that the entries up to `snapshot_index` still kept hold
    /// at most `keep` bytes; `None` when the known entries do not reach back that far (then
    /// openraft's own count rule decides).
    pub fn purge_point(&self, snapshot_index: u64, keep: u64) -> Option<u64> {
        let recent = self.recent.lock().expect("log volume lock");
        let mut kept = 0;
        for &(i, b) in recent
            .entries
            .iter()
            .rev()
            .filter(|(i, _)| *i <= snapshot_index)
        {
            kept += b;
            if kept > keep {
                return Some(i);
            }
        }
        None
    }

    /// `bytes` of log were appended.
    pub fn appended(&self, bytes: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let total = self.since_snapshot.fetch_add(bytes, Relaxed) + bytes;
        if total >= self.threshold() {
            // One stored permit however often this fires before the waiter runs.
            self.due.notify_one();
        }
    }

    /// A snapshot of `bytes` now covers the log.
    pub fn snapshotted(&self, bytes: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.last_snapshot.store(bytes, Relaxed);
        self.since_snapshot.store(0, Relaxed);
    }

    /// Log bytes since the last snapshot.
    pub fn since_snapshot(&self) -> u64 {
        self.since_snapshot
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Resolves when the log has grown past the threshold since the last snapshot.
    pub async fn due(&self) {
        self.due.notified().await
    }
}

// ---------------------------------------------------------------------------------------------
// Log store

/// Most recent entries kept decoded in memory. Every entry is read back right after it is
/// appended: by the state machine to apply it and, on the leader, once per follower to
/// replicate it; decoding it from sled each time was the leader's largest single cost when
/// thousands of tasks were created at once. Entries share their payload, so a hit is cheap.
///
/// Bounded by entries and by the ops they hold: a count alone let 512 entries of up to
/// 1,000 objects each (group commit) keep hundreds of MiB of tasks alive long after they
/// were applied and replicated — manager RSS grew round after round of the same 10,000-task
/// benchmark until the cache was full (issue 17).
const CACHED_ENTRIES: usize = 512;
/// Most ops (objects) the cached entries may hold together: room for the burst of a
/// 10,000-task service while it is applied and replicated.
const CACHED_OPS: usize = 16_384;

/// Ops an entry carries (what its decoded form costs, roughly).
fn entry_ops(e: &Entry<TypeConfig>) -> usize {
    match &e.payload {
        openraft::EntryPayload::Normal(r) => r
            .batches
            .iter()
            .map(|b| b.ops.iter().map(|o| o.weight()).sum::<usize>())
            .sum::<usize>()
            .max(1),
        _ => 1,
    }
}

/// The decoded recent entries, each with the ops it holds and its encoded size.
#[derive(Default)]
struct Cache {
    entries: std::collections::BTreeMap<u64, (Entry<TypeConfig>, usize, usize)>,
    ops: usize,
}

impl Cache {
    fn clear(&mut self) {
        self.entries.clear();
        self.ops = 0;
    }

    fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        self.entries.retain(|i, _| keep(*i));
        self.ops = self.entries.values().map(|(_, n, _)| n).sum();
    }

    fn insert(&mut self, e: Entry<TypeConfig>, bytes: usize) {
        let n = entry_ops(&e);
        if let Some((_, old, _)) = self.entries.insert(e.log_id.index, (e, n, bytes)) {
            self.ops -= old;
        }
        self.ops += n;
        // The newest entry always stays (it is about to be applied and replicated).
        while self.entries.len() > 1
            && (self.entries.len() > CACHED_ENTRIES || self.ops > CACHED_OPS)
        {
            if let Some((_, (_, n, _))) = self.entries.pop_first() {
                self.ops -= n;
            }
        }
    }
}

#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    cache: Arc<std::sync::Mutex<Cache>>,
    volume: Arc<LogVolume>,
}

impl LogStore {
    pub fn open(db: &sled::Db, volume: Arc<LogVolume>) -> Result<Self, sled::Error> {
        Ok(LogStore {
            db: db.clone(),
            log: db.open_tree("log")?,
            meta: db.open_tree("meta")?,
            cache: Arc::default(),
            volume,
        })
    }

    /// How much log waits for a snapshot (shared with the state machine, which resets it).
    pub fn volume(&self) -> Arc<LogVolume> {
        self.volume.clone()
    }

    /// The entries of `[start, end)` if the cache holds all of them.
    fn cached(&self, start: u64, end: u64) -> Option<Vec<Entry<TypeConfig>>> {
        let cache = self.cache.lock().expect("log cache lock");
        let first = *cache.entries.keys().next()?;
        let last = *cache.entries.keys().next_back()?;
        if start < first || end > last + 1 || start >= end {
            return None;
        }
        Some(
            cache
                .entries
                .range(start..end)
                .map(|(_, (e, _, _))| e.clone())
                .collect(),
        )
    }

    /// The cached entries from `start` on (before `end`), cut where `budget` encoded bytes
    /// would be exceeded (at least one); `None` unless the cache holds `start`.
    fn cached_limited(
        &self,
        start: u64,
        end: u64,
        budget: usize,
    ) -> Option<Vec<Entry<TypeConfig>>> {
        let cache = self.cache.lock().expect("log cache lock");
        if !cache.entries.contains_key(&start) {
            return None;
        }
        let mut fit = Budget::new(budget);
        Some(
            cache
                .entries
                .range(start..end)
                .take_while(|(_, (_, _, bytes))| fit.admit(*bytes))
                .map(|(_, (e, _, _))| e.clone())
                .collect(),
        )
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StorageError> {
        match self
            .meta
            .get(key)
            .map_err(|e| io_err(StorageIOError::read, e))?
        {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| io_err(StorageIOError::read, e)),
        }
    }

    fn put_meta<T: serde::Serialize>(&self, key: &str, v: &T) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(v).map_err(|e| io_err(StorageIOError::write, e))?;
        self.meta
            .insert(key, bytes)
            .map_err(|e| io_err(StorageIOError::write, e))?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), sled::Error> {
        self.db.flush_async().await.map(|_| ())
    }
}

fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn decode_entry(v: &[u8]) -> Result<Entry<TypeConfig>, StorageError> {
    super::codec::decode(v).map_err(|e| io_err(StorageIOError::read_logs, e))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Some(i + 1),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        if let Some(hit) = end.and_then(|end| self.cached(start, end)) {
            return Ok(hit);
        }
        let mut out = Vec::new();
        for kv in self.log.range(key(start)..) {
            let (k, v) = kv.map_err(|e| io_err(StorageIOError::read_logs, e))?;
            let idx = u64::from_be_bytes(k.as_ref().try_into().expect("8-byte keys"));
            if !range.contains(&idx) {
                break;
            }
            out.push(decode_entry(&v)?);
        }
        Ok(out)
    }

    /// What the leader sends one follower in one AppendEntries: openraft asks for up to
    /// `max_payload_entries`, this stops at `APPEND_BUDGET_BYTES` of encoded entries. A new
    /// leader probes each follower's log from the middle of its own (a binary search), and
    /// with group-commit entries of up to a thousand objects the full range was tens of MiB
    /// decoded from sled and encoded again only for the network to send the first few
    /// hundred KiB of it — half the next leader's CPU after a failover with 100k tasks
    /// (issue 17, BENCHMARKS).
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        if let Some(hit) = self.cached_limited(start, end, super::APPEND_BUDGET_BYTES) {
            return Ok(hit);
        }
        let mut fit = Budget::new(super::APPEND_BUDGET_BYTES);
        let mut out = Vec::new();
        for kv in self.log.range(key(start)..key(end)) {
            let (_, v) = kv.map_err(|e| io_err(StorageIOError::read_logs, e))?;
            if !fit.admit(v.len()) {
                break;
            }
            out.push(decode_entry(&v)?);
        }
        Ok(out)
    }
}

/// Admits items while their sizes fit a byte budget; the first is always admitted.
struct Budget {
    left: usize,
    first: bool,
}

impl Budget {
    fn new(bytes: usize) -> Self {
        Budget {
            left: bytes,
            first: true,
        }
    }

    fn admit(&mut self, size: usize) -> bool {
        if std::mem::take(&mut self.first) {
            self.left = self.left.saturating_sub(size);
            return true;
        }
        match self.left.checked_sub(size) {
            Some(left) => {
                self.left = left;
                true
            }
            None => false,
        }
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.get_meta("last_purged")?;
        let last = match self
            .log
            .last()
            .map_err(|e| io_err(StorageIOError::read_logs, e))?
        {
            Some((_, v)) => Some(decode_entry(&v)?.log_id),
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<RaftId>) -> Result<(), StorageError> {
        self.put_meta("vote", vote)?;
        self.flush()
            .await
            .map_err(|e| io_err(StorageIOError::write_vote, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<RaftId>>, StorageError> {
        self.get_meta("vote")
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.put_meta("committed", &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get_meta::<Option<LogId>>("committed")?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut batch = sled::Batch::default();
        let mut appended = Vec::new();
        let mut sizes = Vec::new();
        for e in entries {
            let v = super::codec::encode(&e).map_err(|e| io_err(StorageIOError::write_logs, e))?;
            sizes.push((e.log_id.index, v.len() as u64));
            appended.push((e, v.len()));
            batch.insert(&key(appended.last().expect("pushed").0.log_id.index), v);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| io_err(StorageIOError::write_logs, e))?;
        {
            let mut cache = self.cache.lock().expect("log cache lock");
            // Only contiguous runs: a gap would make `cached` answer for entries it lacks.
            if let (Some((first, _)), Some(&last)) =
                (appended.first(), cache.entries.keys().next_back())
            {
                if first.log_id.index != last + 1 {
                    cache.clear();
                }
            }
            for (e, bytes) in appended {
                cache.insert(e, bytes);
            }
        }
        self.volume.appended_entries(&sizes);
        // Durable before acknowledged: one flush per appended batch.
        let res = self.flush().await.map_err(std::io::Error::other);
        callback.log_io_completed(res);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.cache
            .lock()
            .expect("log cache lock")
            .retain(|i| i < log_id.index);
        let mut batch = sled::Batch::default();
        for k in self.log.range(key(log_id.index)..).keys() {
            batch.remove(k.map_err(|e| io_err(StorageIOError::write_logs, e))?);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| io_err(StorageIOError::write_logs, e))?;
        self.flush()
            .await
            .map_err(|e| io_err(StorageIOError::write_logs, e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge point first: a crash in between leaves extra entries, never a gap.
        self.put_meta("last_purged", &log_id)?;
        self.cache
            .lock()
            .expect("log cache lock")
            .retain(|i| i > log_id.index);
        let mut batch = sled::Batch::default();
        for k in self.log.range(..=key(log_id.index)).keys() {
            batch.remove(k.map_err(|e| io_err(StorageIOError::write_logs, e))?);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| io_err(StorageIOError::write_logs, e))?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// State machine

#[derive(serde::Deserialize)]
struct SnapshotBody {
    state: StoreState,
}

/// What `SnapshotBody` decodes, encoded from a borrow: no copy of the store is made.
#[derive(serde::Serialize)]
struct SnapshotBodyRef<'a> {
    state: &'a StoreState,
}

pub struct StateMachine {
    shared: SharedStore,
    volume: Arc<LogVolume>,
    file: SnapshotFile,
    /// Where snapshots were kept before they moved to `file`: read when no file exists yet,
    /// emptied after the first snapshot written to the file.
    legacy: sled::Tree,
}

impl StateMachine {
    /// Opens the state machine, restoring it from the last persisted snapshot.
    pub fn open(db: &sled::Db, dir: &Path, volume: Arc<LogVolume>) -> Result<Self, StorageError> {
        let legacy = db
            .open_tree("snapshot")
            .map_err(|e| io_err(StorageIOError::read_state_machine, e))?;
        let mut sm = StateMachine {
            volume,
            shared: SharedStore::new(),
            file: SnapshotFile::in_dir(dir),
            legacy,
        };
        if let Some((meta, data)) = sm.read_snapshot()? {
            sm.load(&meta, &data)?;
            sm.volume.snapshotted(data.len() as u64);
        }
        Ok(sm)
    }

    pub fn shared(&self) -> SharedStore {
        self.shared.clone()
    }

    fn read_snapshot(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        fn rd<E: std::error::Error + 'static>(e: E) -> StorageError {
            io_err(StorageIOError::read_state_machine, e)
        }
        let (meta, data) = match self.file.read().map_err(rd)? {
            Some(found) => found,
            None => {
                let meta = self.legacy.get("meta").map_err(rd)?;
                let data = self.legacy.get("data").map_err(rd)?;
                match (meta, data) {
                    (Some(m), Some(d)) => (m.to_vec(), d.to_vec()),
                    _ => return Ok(None),
                }
            }
        };
        let meta = serde_json::from_slice(&meta).map_err(rd)?;
        Ok(Some((meta, data)))
    }

    fn load(
        &mut self,
        meta: &SnapshotMeta<RaftId, openraft::BasicNode>,
        data: &[u8],
    ) -> Result<(), StorageError> {
        let body: SnapshotBody = super::codec::decode(data)
            .map_err(|e| io_err(StorageIOError::read_state_machine, e))?;
        let mut state = body.state;
        state.rebuild_indexes();
        let mut inner = self.shared.write_applied();
        inner.state = state;
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        Ok(())
    }

    /// Writes the snapshot to its file on a blocking thread (so no Raft task waits behind the
    /// disk) and hands `data` back for the caller to serve.
    async fn persist_snapshot(
        file: &SnapshotFile,
        legacy: &sled::Tree,
        meta: &SnapshotMeta<RaftId, openraft::BasicNode>,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, StorageError> {
        fn wr<E: std::error::Error + 'static>(e: E) -> StorageError {
            io_err(StorageIOError::write_state_machine, e)
        }
        let m = serde_json::to_vec(meta).map_err(wr)?;
        let file = file.clone();
        let data = tokio::task::spawn_blocking(move || file.write(&m, &data).map(|()| data))
            .await
            .map_err(|e| wr(std::io::Error::other(e)))?
            .map_err(wr)?;
        if legacy.contains_key("data").map_err(wr)? {
            let mut b = sled::Batch::default();
            b.remove("meta");
            b.remove("data");
            legacy.apply_batch(b).map_err(wr)?;
        }
        Ok(data)
    }
}

pub struct SnapshotBuilder {
    shared: SharedStore,
    volume: Arc<LogVolume>,
    file: SnapshotFile,
    legacy: sled::Tree,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let started = std::time::Instant::now();
        // Encoded under the read lock, from a borrow: applying waits for the encoding, which
        // costs less than the deep copy of every object that encoding outside would need.
        let (data, last_applied, membership) = {
            let inner = self.shared.read_applied();
            let data = super::codec::encode(&SnapshotBodyRef {
                state: &inner.state,
            })
            .map_err(|e| io_err(StorageIOError::write_state_machine, e))?;
            (data, inner.last_applied, inner.membership.clone())
        };
        let encoded = started.elapsed();
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, rand::random::<u32>()),
            None => format!("empty-{}", rand::random::<u32>()),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        let data = StateMachine::persist_snapshot(&self.file, &self.legacy, &meta, data).await?;
        self.volume.snapshotted(data.len() as u64);
        tracing::info!(
            bytes = data.len(),
            encode_ms = encoded.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "raft snapshot built"
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        let inner = self.shared.read_applied();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<WriteOutcome>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        let mut changes = Vec::new();
        {
            let mut inner = self.shared.write_applied();
            for entry in entries {
                inner.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => out.push(WriteOutcome::default()),
                    EntryPayload::Normal(proposal) => {
                        let mut results = Vec::with_capacity(proposal.batches.len());
                        for batch in proposal.batches.iter() {
                            results.push(match inner.state.apply(batch, entry.log_id.index) {
                                Ok(ch) => {
                                    // Only single-op writes (the control API's) read the
                                    // stored objects back; bulk task writes would copy
                                    // every task once more on every manager.
                                    let objs = if batch.ops.len() == 1 && batch.ops[0].weight() == 1
                                    {
                                        ch.iter().map(|c| c.object.clone()).collect()
                                    } else {
                                        Vec::new()
                                    };
                                    changes.extend(ch);
                                    Ok(objs)
                                }
                                Err(e) => Err(e),
                            });
                        }
                        out.push(WriteOutcome { results });
                    }
                    EntryPayload::Membership(m) => {
                        inner.membership = StoredMembership::new(Some(entry.log_id), m);
                        out.push(WriteOutcome::default());
                    }
                }
            }
        }
        for c in changes {
            // No receivers is fine; lagging receivers see `Lagged` and resynchronize.
            self.shared.publish(StoreEvent::Change(Arc::new(c)));
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            shared: self.shared.clone(),
            volume: self.volume.clone(),
            file: self.file.clone(),
            legacy: self.legacy.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<RaftId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        self.load(meta, &data)?;
        let data = Self::persist_snapshot(&self.file, &self.legacy, meta, data).await?;
        self.volume.snapshotted(data.len() as u64);
        self.shared.publish(StoreEvent::Reset);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.read_snapshot()?.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

/// Opens the log store and state machine of one manager; `dir` is the one `db` lives in.
pub fn open(db: &sled::Db, dir: &Path) -> Result<(LogStore, StateMachine), StorageError> {
    let volume = Arc::new(LogVolume::default());
    let log =
        LogStore::open(db, volume.clone()).map_err(|e| io_err(StorageIOError::read_logs, e))?;
    let sm = StateMachine::open(db, dir, volume)?;
    Ok((log, sm))
}

#[cfg(test)]
#[path = "storage_tests.rs"]
mod tests;
