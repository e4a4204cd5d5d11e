//! The Raft log in segment files (`segments`) and the vote, committed and purge points in
//! sled's `meta`, with the recent entries kept decoded. It does not touch the state machine or
//! snapshots.

use super::segments::{Budget, Segments};
use super::*;

/// Most recent entries kept decoded in memory. Every entry is read back right after it is
/// appended: by the state machine to apply it and, on the leader, once per follower to
/// replicate it; decoding it from sled each time was the leader's largest single cost when
/// thousands of tasks were created at once. Entries share their payload, so a hit is cheap.
///
/// Bounded by entries and by the ops they hold: a count alone let 512 entries of up to
/// 1,000 objects each (group commit) keep hundreds of MiB of tasks alive long after they
/// were applied and replicated — manager RSS grew round after round of the same 10,000-task
/// benchmark until the cache was full (issue 17).
pub(super) const CACHED_ENTRIES: usize = 512;
/// Most ops (objects) the cached entries may hold together: room for the burst of a
/// 10,000-task service while it is applied and replicated.
pub(super) const CACHED_OPS: usize = 16_384;

/// Ops an entry carries (what its decoded form costs, roughly).
pub(super) fn entry_ops(e: &Entry<TypeConfig>) -> usize {
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
pub(super) struct Cache {
    pub(super) entries: std::collections::BTreeMap<u64, (Entry<TypeConfig>, usize, usize)>,
    pub(super) ops: usize,
}

impl Cache {
    fn clear(&mut self) {
        self.entries.clear();
        self.ops = 0;
    }

    pub(super) fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        self.entries.retain(|i, _| keep(*i));
        self.ops = self.entries.values().map(|(_, n, _)| n).sum();
    }

    pub(super) fn insert(&mut self, e: Entry<TypeConfig>, bytes: usize) {
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
    pub(super) db: sled::Db,
    pub(super) segs: Arc<std::sync::Mutex<Segments>>,
    meta: sled::Tree,
    pub(super) cache: Arc<std::sync::Mutex<Cache>>,
    volume: Arc<LogVolume>,
}

/// Where the segment files live, inside the directory of the sled database.
pub(super) fn segments_dir(dir: &Path) -> std::path::PathBuf {
    dir.join("log")
}

fn read_err(e: std::io::Error) -> StorageError {
    io_err(StorageIOError::read_logs, e)
}

fn write_err(e: std::io::Error) -> StorageError {
    io_err(StorageIOError::write_logs, e)
}

/// Encoded bytes of the log moved per write (and sync) when an older version's log moves out of
/// sled.
const MOVE_CHUNK_BYTES: usize = 4 << 20;

/// Opens the segment files, first moving a log an older version kept in sled's `log` tree
/// into them. Until that tree is dropped it is the log: files left by a move that did not
/// finish are written again.
fn open_segments(db: &sled::Db, dir: &Path) -> std::io::Result<Segments> {
    let legacy = db.open_tree("log").map_err(std::io::Error::other)?;
    if legacy.is_empty() {
        return Segments::open(dir);
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let mut segs = Segments::open(dir)?;
    let mut chunk = Vec::new();
    let mut bytes = 0;
    let mut moved = 0u64;
    let mut write = |segs: &mut Segments, chunk: &mut Vec<(u64, Vec<u8>)>| {
        if chunk.is_empty() {
            return Ok(());
        }
        moved += chunk.len() as u64;
        let file = segs.append(chunk)?;
        chunk.clear();
        file.sync_data()
    };
    for kv in legacy.iter() {
        let (k, v) = kv.map_err(std::io::Error::other)?;
        let index = u64::from_be_bytes(k.as_ref().try_into().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "a sled log key is not 8 bytes",
            )
        })?);
        bytes += v.len();
        chunk.push((index, v.to_vec()));
        if bytes >= MOVE_CHUNK_BYTES {
            write(&mut segs, &mut chunk)?;
            bytes = 0;
        }
    }
    write(&mut segs, &mut chunk)?;
    db.drop_tree("log").map_err(std::io::Error::other)?;
    db.flush().map_err(std::io::Error::other)?;
    tracing::info!(entries = moved, dir = %dir.display(), "moved the raft log out of sled");
    Ok(segs)
}

impl LogStore {
    /// Opens the log of the manager whose sled database is `db`, in `dir`.
    pub fn open(db: &sled::Db, dir: &Path, volume: Arc<LogVolume>) -> Result<Self, StorageError> {
        let segs = open_segments(db, &segments_dir(dir)).map_err(read_err)?;
        let store = LogStore {
            db: db.clone(),
            segs: Arc::new(std::sync::Mutex::new(segs)),
            meta: db
                .open_tree("meta")
                .map_err(|e| io_err(StorageIOError::read_logs, e))?,
            cache: Arc::default(),
            volume,
        };
        // A crash between recording a purge and deleting its segments leaves them behind.
        if let Some(purged) = store.get_meta::<LogId>("last_purged")? {
            store
                .segments()
                .purge_through(purged.index)
                .map_err(write_err)?;
        }
        Ok(store)
    }

    pub(super) fn segments(&self) -> std::sync::MutexGuard<'_, Segments> {
        self.segs.lock().expect("log segments lock")
    }

    /// Runs `f` on the segments on a blocking thread (file writes and syncs).
    async fn on_segments<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Arc<std::sync::Mutex<Segments>>) -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let segs = self.segs.clone();
        tokio::task::spawn_blocking(move || f(&segs))
            .await
            .map_err(std::io::Error::other)?
    }

    /// Entries of `[start, end)` from the files, cut at `budget` encoded bytes (at least one).
    fn read_files(
        &self,
        start: u64,
        end: u64,
        budget: usize,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let payloads = self.segments().read(start, end, budget).map_err(read_err)?;
        payloads.iter().map(|p| decode_entry(p)).collect()
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

    pub(super) fn put_meta<T: serde::Serialize>(
        &self,
        key: &str,
        v: &T,
    ) -> Result<(), StorageError> {
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

/// The key of entry `index` in the `log` tree where older versions kept the log.
#[cfg(test)]
pub(super) fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

pub(super) fn decode_entry(v: &[u8]) -> Result<Entry<TypeConfig>, StorageError> {
    crate::raft::codec::decode(v).map_err(|e| io_err(StorageIOError::read_logs, e))
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
        self.read_files(start, end.unwrap_or(u64::MAX), usize::MAX)
    }

    /// What the leader sends one follower in one AppendEntries: openraft asks for up to
    /// `max_payload_entries`, this stops at `APPEND_BUDGET_BYTES` of encoded entries. A new
    /// leader probes each follower's log from the middle of its own (a binary search), and
    /// with group-commit entries of up to a thousand objects the full range was tens of MiB
    /// decoded from the log and encoded again only for the network to send the first few
    /// hundred KiB of it — half the next leader's CPU after a failover with 100k tasks
    /// (issue 17, BENCHMARKS).
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        if let Some(hit) = self.cached_limited(start, end, crate::raft::APPEND_BUDGET_BYTES) {
            return Ok(hit);
        }
        self.read_files(start, end, crate::raft::APPEND_BUDGET_BYTES)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.get_meta("last_purged")?;
        let last_index = self.segments().last_index();
        let last = match last_index {
            Some(i) if last_purged.is_none_or(|p| i > p.index) => {
                let found = self.read_files(i, i + 1, 0)?;
                Some(found.first().map(|e| e.log_id).ok_or_else(|| {
                    read_err(std::io::Error::other(format!("log entry {i} not found")))
                })?)
            }
            _ => last_purged,
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
        let mut records = Vec::new();
        let mut appended = Vec::new();
        let mut sizes = Vec::new();
        for e in entries {
            let v = crate::raft::codec::encode(&e)
                .map_err(|e| io_err(StorageIOError::write_logs, e))?;
            sizes.push((e.log_id.index, v.len() as u64));
            appended.push((e, v.len()));
            records.push((appended.last().expect("pushed").0.log_id.index, v));
        }
        if records.is_empty() {
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        // Written under the lock, synced after it (readers wait for the write, not the sync).
        let synced = self
            .on_segments(move |segs| {
                let file = segs.lock().expect("log segments lock").append(&records)?;
                file.sync_data()
            })
            .await;
        if let Err(e) = synced {
            // Nothing is acknowledged; the store stops (openraft treats this as fatal).
            let err = write_err(std::io::Error::new(e.kind(), e.to_string()));
            callback.log_io_completed(Err(e));
            return Err(err);
        }
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
        // Durable before acknowledged: one sync per appended batch.
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.cache
            .lock()
            .expect("log cache lock")
            .retain(|i| i < log_id.index);
        let index = log_id.index;
        self.on_segments(move |segs| segs.lock().expect("log segments lock").truncate_from(index))
            .await
            .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge point durably first: a crash in between leaves extra entries (cleared
        // at the next start), never a gap.
        self.put_meta("last_purged", &log_id)?;
        self.flush()
            .await
            .map_err(|e| io_err(StorageIOError::write_logs, e))?;
        self.cache
            .lock()
            .expect("log cache lock")
            .retain(|i| i > log_id.index);
        let index = log_id.index;
        self.on_segments(move |segs| segs.lock().expect("log segments lock").purge_through(index))
            .await
            .map_err(write_err)
    }
}
