//! Raft storage, in this one module (the seam where another embedded store would go).
//!
//! Layout (`<state-dir>/raft`, one sled database plus files beside it):
//! - the log in segment files under `log/` (`segments`): MessagePack `Entry` records
//!   (`super::codec`) with their index and a checksum. sled's tree `log` (big-endian u64 index →
//!   entry) held it before; an older manager's log is moved out of it when it starts
//! - sled tree `meta`: `vote`, `committed`, `last_purged` → JSON
//! - the snapshot in its own file (`snapshot_file`); tree `snapshot` held it before and is only
//!   read when that file does not exist yet
//!
//! sled kept every entry appended since the last purge in the manager's heap (pages it holds
//! until they are rewritten); the files leave them to the kernel's page cache, and memory holds
//! one offset per entry (BENCHMARKS 2026-12-05, fourteenth session).
//!
//! Every append is synced before it is acknowledged (one sync per appended batch); votes and
//! purge points are flushed to sled before they count. The state machine lives in memory and is
//! persisted through snapshots; after a restart it is rebuilt from the last snapshot plus the
//! committed log (openraft re-applies up to the saved committed index).
//!
//! `volume` counts the log's bytes, `log_store` holds the log, `state_machine` the applied
//! store and its snapshots; this module opens them together.

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
        // It holds a few keys (the log is in segment files). 64 MiB held ~15 MiB more at 100k
        // tasks when it held the log too (BENCHMARKS 2026-12-05, eleventh session).
        .cache_capacity(1024 * 1024)
        .open()
}

mod log_store;
mod segments;
mod state_machine;
mod volume;

pub use log_store::LogStore;
#[cfg(test)]
use log_store::*;
#[cfg(test)]
use state_machine::SnapshotBodyRef;
pub use state_machine::{SnapshotBuilder, StateMachine};
pub use volume::{
    LogVolume, KEPT_LOG_BYTES, MIN_LOG_BYTES_AT_REST, MIN_LOG_BYTES_PER_SNAPSHOT,
    QUIET_BEFORE_REST_SNAPSHOT,
};

/// Opens the log store and state machine of one manager; `dir` is the one `db` lives in.
pub fn open(db: &sled::Db, dir: &Path) -> Result<(LogStore, StateMachine), StorageError> {
    let volume = Arc::new(LogVolume::default());
    let log = LogStore::open(db, dir, volume.clone())?;
    let sm = StateMachine::open(db, dir, volume)?;
    Ok((log, sm))
}

#[cfg(test)]
mod tests;
