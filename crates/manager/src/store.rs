//! The replicated object store as the rest of the manager sees it: the applied state behind a
//! lock and its change feed. Raft's state machine (`raft::storage`) is the only writer; the
//! control API, the dispatcher and the control loop read it and subscribe here, without
//! importing Raft storage code. Knows nothing of sled or of how entries are persisted.

use openraft::{BasicNode, LogId, StoredMembership};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use swarm_types::store::{Change, StoreState};
use tokio::sync::broadcast;

/// A change feed item: an applied change, or "the whole state was replaced" (snapshot install:
/// subscribers that track state must re-read it).
#[derive(Clone, Debug)]
pub enum StoreEvent {
    Change(Arc<Change>),
    Reset,
}

/// The applied state together with what Raft needs to know about it (kept under one lock, so
/// a snapshot captures the state exactly at its log position).
pub(crate) struct Applied {
    pub state: StoreState,
    pub last_applied: Option<LogId<u64>>,
    pub membership: StoredMembership<u64, BasicNode>,
}

/// Capacity of the change feed: large enough that watchers (the dispatcher hub, the control
/// loop, `Control.Watch`) ride out bursts of thousands of task changes without a resync.
const FEED_CAPACITY: usize = 65536;

/// The in-memory object store and its change feed. Cloned handles share both.
#[derive(Clone)]
pub struct SharedStore {
    inner: Arc<RwLock<Applied>>,
    events: broadcast::Sender<StoreEvent>,
}

impl SharedStore {
    pub(crate) fn new() -> Self {
        let (events, _) = broadcast::channel(FEED_CAPACITY);
        SharedStore {
            inner: Arc::new(RwLock::new(Applied {
                state: StoreState::default(),
                last_applied: None,
                membership: StoredMembership::default(),
            })),
            events,
        }
    }

    /// Reads the current state under a read lock.
    pub fn read<R>(&self, f: impl FnOnce(&StoreState) -> R) -> R {
        f(&self.read_applied().state)
    }

    pub fn last_applied_index(&self) -> u64 {
        self.read_applied()
            .last_applied
            .map(|l| l.index)
            .unwrap_or(0)
    }

    /// Subscribes to applied changes.
    pub fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }

    pub(crate) fn read_applied(&self) -> RwLockReadGuard<'_, Applied> {
        self.inner.read().expect("store lock poisoned")
    }

    pub(crate) fn write_applied(&self) -> RwLockWriteGuard<'_, Applied> {
        self.inner.write().expect("store lock poisoned")
    }

    /// Sends an event to the subscribers (none is fine; laggards see `Lagged` and resync).
    pub(crate) fn publish(&self, ev: StoreEvent) {
        let _ = self.events.send(ev);
    }
}
