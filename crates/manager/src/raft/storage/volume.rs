//! How much log waits for compaction: snapshots are made by log bytes as well as by entry
//! count. Counts and decides only; it touches neither sled nor openraft.

use super::*;

/// Log bytes that make a snapshot due even when the entry count has not: at least this, or
/// as much as the last snapshot took (so compaction costs at most about what it saves).
pub const MIN_LOG_BYTES_PER_SNAPSHOT: u64 = 32 << 20;

/// Log bytes kept behind a snapshot (for followers slightly behind), whatever the entry count
/// `--raft-logs-to-keep` allows: 1,000 entries of group commit can be 1 GiB.
pub const KEPT_LOG_BYTES: u64 = 8 << 20;

/// How long no entry must be appended before the log is compacted at rest.
pub const QUIET_BEFORE_REST_SNAPSHOT: std::time::Duration = std::time::Duration::from_secs(2);

/// Log bytes that make a snapshot worth taking once the cluster is quiet: at least this,
/// or an eighth of the last snapshot (so a trickle of writes into a large store does not
/// rewrite it every time the cluster rests).
pub const MIN_LOG_BYTES_AT_REST: u64 = 1 << 20;

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
    /// When the last entry was appended, in [`clock_ms`] (0: none since start). An atomic,
    /// not a lock: this is set on every append.
    last_append: std::sync::atomic::AtomicU64,
}

/// Milliseconds from the first call in this process to `t`, plus one (so 0 can mean never).
fn clock_ms(t: std::time::Instant) -> u64 {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(std::time::Instant::now);
    t.saturating_duration_since(base).as_millis() as u64 + 1
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
        self.last_append
            .store(clock_ms(std::time::Instant::now()), Relaxed);
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

    /// Whether, at `now`, the log has been quiet for [`QUIET_BEFORE_REST_SNAPSHOT`] with
    /// enough of it since the last snapshot to be worth compacting: between bursts the log
    /// since the last snapshot (up to the size threshold, tens of MiB) is held in memory by
    /// the storage engine until the next snapshot, however long the cluster rests.
    pub fn due_at_rest(&self, now: std::time::Instant) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let last = self.last_append.load(Relaxed);
        let quiet = last != 0
            && clock_ms(now).saturating_sub(last) >= QUIET_BEFORE_REST_SNAPSHOT.as_millis() as u64;
        let enough = MIN_LOG_BYTES_AT_REST.max(self.last_snapshot.load(Relaxed) / 8);
        quiet && self.since_snapshot() >= enough
    }

    /// Resolves when the log has grown past the threshold since the last snapshot.
    pub async fn due(&self) {
        self.due.notified().await
    }
}
