//! The replicated object store as the rest of the manager sees it: the applied state behind a
//! lock and its change feed. Raft's state machine (`raft::storage`) is the only writer; the
//! control API, the dispatcher and the control loop read it and subscribe here, without
//! importing Raft storage code. Knows nothing of sled or of how entries are persisted.

use openraft::{BasicNode, LogId, StoredMembership};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use swarm_types::events::{Event, History};
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
/// Events kept for readers that ask for the past (`events --since`) or resume.
const HISTORY_EVENTS: usize = 10_000;
/// Capacity of the event feed (a reader that falls further behind resumes from the history).
const EVENT_FEED_CAPACITY: usize = 4096;

/// The in-memory object store and its change feed. Cloned handles share both.
#[derive(Clone)]
pub struct SharedStore {
    inner: Arc<RwLock<Applied>>,
    events: broadcast::Sender<StoreEvent>,
    /// Recent cluster events and their live feed (sent under the history lock, so a reader
    /// that reads the history and subscribes together sees each event once).
    history: Arc<Mutex<History>>,
    event_feed: broadcast::Sender<Arc<Event>>,
}

impl SharedStore {
    pub(crate) fn new() -> Self {
        let (events, _) = broadcast::channel(FEED_CAPACITY);
        let (event_feed, _) = broadcast::channel(EVENT_FEED_CAPACITY);
        SharedStore {
            history: Arc::new(Mutex::new(History::new(HISTORY_EVENTS))),
            event_feed,
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
        {
            let mut h = self.history.lock().expect("event history lock");
            match &ev {
                StoreEvent::Change(c) => {
                    if let Some(e) = h.record(c) {
                        let _ = self.event_feed.send(Arc::new(e));
                    }
                }
                StoreEvent::Reset => h.reset(self.last_applied_index()),
            }
        }
        let _ = self.events.send(ev);
    }

    /// Reads the event history and subscribes to the events that follow it, atomically.
    pub fn events<R>(&self, f: impl FnOnce(&History) -> R) -> (R, broadcast::Receiver<Arc<Event>>) {
        let h = self.history.lock().expect("event history lock");
        (f(&h), self.event_feed.subscribe())
    }
}
