//! Cluster events (`swarmctl events`): a compact record of each applied change of a service,
//! node, task or network, with a cursor that is the same on every manager (raft index, then
//! position among the changes of that entry), so a reader resumes exactly where it stopped
//! even on another manager. Also the event history a manager keeps and the reader's filter.

use crate::objects::Object;
use crate::store::{Action, Change};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Where an event stands in the cluster's history: (raft index, position in the entry).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cursor {
    pub index: u64,
    pub seq: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub cursor: Cursor,
    /// Unix milliseconds when the change was written.
    pub time_ms: u64,
    /// service, node, task or network.
    #[serde(rename = "type")]
    pub kind: String,
    /// create, update or remove (Docker's words).
    pub action: String,
    pub id: String,
    pub name: String,
    pub attributes: BTreeMap<String, String>,
}

/// The event of a change, or None for kinds that have no events (cluster, registry).
pub fn event_of(c: &Change, cursor: Cursor) -> Option<Event> {
    Kept::of(c, cursor).map(|k| k.event())
}

/// An event as the history keeps it, rebuilt into an [`Event`] when read: its words are
/// static and its attributes a boxed slice: 374 bytes of heap a task event where an `Event`
/// (five owned strings and a `BTreeMap` of owned pairs) took 889 (counted in
/// `tests/store_memory.rs`). A full history of 10,000 events was 8.4 MB of a leader's heap
/// (heap profile, 2026-12-05).
#[derive(Debug)]
struct Kept {
    cursor: Cursor,
    time_ms: u64,
    kind: &'static str,
    action: &'static str,
    id: Box<str>,
    name: Box<str>,
    attributes: Box<[(&'static str, Box<str>)]>,
}

impl Kept {
    fn of(c: &Change, cursor: Cursor) -> Option<Kept> {
        let mut attributes: Vec<(&'static str, Box<str>)> = Vec::new();
        let (kind, name) = match &c.object {
            Object::Service(s) => {
                attributes.push(("image", s.spec.task.container.image.as_str().into()));
                ("service", s.spec.name.as_str().into())
            }
            Object::Node(n) => {
                attributes.push(("state", n.status.state.as_str().into()));
                attributes.push(("availability", n.spec.availability.as_str().into()));
                attributes.push(("role", n.spec.role.as_str().into()));
                let name: Box<str> = if n.description.hostname.is_empty() {
                    n.id.as_str().into()
                } else {
                    n.description.hostname.as_str().into()
                };
                ("node", name)
            }
            Object::Task(t) => {
                attributes.push(("service", t.service_name.as_str().into()));
                attributes.push(("state", t.status.state.as_str().into()));
                attributes.push(("desired", t.desired_state.as_str().into()));
                if let Some(n) = &t.node_id {
                    attributes.push(("node", n.as_str().into()));
                }
                if !t.status.err.is_empty() {
                    attributes.push(("error", t.status.err.as_str().into()));
                }
                let name = if t.slot > 0 {
                    format!("{}.{}", t.service_name, t.slot)
                } else {
                    let n = t.node_id.as_ref().map(|n| n.as_str()).unwrap_or("");
                    format!("{}.{n}", t.service_name)
                };
                ("task", name.into_boxed_str())
            }
            Object::Network(n) => ("network", n.spec.name.as_str().into()),
            _ => return None,
        };
        Some(Kept {
            cursor,
            time_ms: c.object.meta().updated_at,
            kind,
            action: match c.action {
                Action::Created => "create",
                Action::Updated => "update",
                Action::Deleted => "remove",
            },
            id: c.object.id().into(),
            name,
            attributes: attributes.into_boxed_slice(),
        })
    }

    fn event(&self) -> Event {
        Event {
            cursor: self.cursor,
            time_ms: self.time_ms,
            kind: self.kind.into(),
            action: self.action.into(),
            id: self.id.as_ref().into(),
            name: self.name.as_ref().into(),
            attributes: self
                .attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_ref().to_string()))
                .collect(),
        }
    }
}

/// What a reader wants (`--filter type=…,name=…,event=…`, repeated keys are alternatives).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub types: Vec<String>,
    pub names: Vec<String>,
    pub actions: Vec<String>,
}

impl Filter {
    pub fn matches(&self, e: &Event) -> bool {
        let any = |v: &[String], x: &str| v.is_empty() || v.iter().any(|w| w == x);
        any(&self.types, &e.kind)
            && (self.names.is_empty()
                || self
                    .names
                    .iter()
                    .any(|n| *n == e.name || *n == e.id || e.attributes.get("service") == Some(n)))
            && any(&self.actions, &e.action)
    }
}

/// A manager's recent events, oldest first, bounded.
#[derive(Debug)]
pub struct History {
    events: VecDeque<Kept>,
    cap: usize,
    /// Every event after this cursor is kept (None: nothing recorded since the history
    /// started, so completeness is only known against the applied index).
    complete_after: Option<Cursor>,
    last: Cursor,
}

/// What a resuming reader gets: the kept events after its cursor, and whether some may be
/// missing in between.
pub struct Replay {
    pub events: Vec<Event>,
    pub gap: bool,
}

impl History {
    pub fn new(cap: usize) -> Self {
        History {
            events: VecDeque::new(),
            cap,
            complete_after: None,
            last: Cursor::default(),
        }
    }

    /// Records the event of an applied change (changes of one entry come in order).
    pub fn record(&mut self, c: &Change) -> Option<Event> {
        let cursor = if c.index == self.last.index {
            Cursor {
                index: c.index,
                seq: self.last.seq + 1,
            }
        } else {
            Cursor {
                index: c.index,
                seq: 0,
            }
        };
        self.last = cursor;
        let k = Kept::of(c, cursor)?;
        if self.complete_after.is_none() {
            // Entries between the state this history started from and this one (replayed at
            // start) had no change, or they would have been recorded first.
            self.complete_after = Some(Cursor {
                index: c.index.saturating_sub(1),
                seq: u32::MAX,
            });
        }
        if self.events.len() == self.cap {
            if let Some(old) = self.events.pop_front() {
                self.complete_after = Some(old.cursor);
            }
        }
        let e = k.event();
        self.events.push_back(k);
        Some(e)
    }

    /// The whole state was replaced (a snapshot from the leader): what came before is no
    /// longer known one by one.
    pub fn reset(&mut self, applied_index: u64) {
        self.events.clear();
        self.complete_after = Some(Cursor {
            index: applied_index,
            seq: u32::MAX,
        });
        self.last = Cursor {
            index: applied_index,
            seq: u32::MAX,
        };
    }

    /// Kept events after `after`; `applied_index`: this manager's applied index (used when
    /// nothing has been recorded yet).
    pub fn after(&self, after: Cursor, applied_index: u64) -> Replay {
        let floor = self.complete_after.unwrap_or(Cursor {
            index: applied_index,
            seq: u32::MAX,
        });
        Replay {
            events: self
                .events
                .iter()
                .filter(|e| e.cursor > after)
                .map(Kept::event)
                .collect(),
            gap: after < floor,
        }
    }

    /// Kept events written at or after `since_ms`.
    pub fn since(&self, since_ms: u64) -> Vec<Event> {
        self.events
            .iter()
            .filter(|e| e.time_ms >= since_ms)
            .map(Kept::event)
            .collect()
    }

    /// The cursor of the last applied change (where a reader that saw everything stands).
    pub fn position(&self) -> Cursor {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::{Meta, Network};

    fn change(index: u64, name: &str, action: Action) -> Change {
        let mut n: Network = serde_json::from_value(serde_json::json!({
            "id": format!("id-{name}"),
            "meta": Meta { version: index, created_at: 0, updated_at: index * 1000 },
            "spec": {"name": name},
            "subnet": "10.0.0.0/24",
            "gateway": "10.0.0.1",
            "ip_range": "10.0.0.0/24",
            "vni": 0
        }))
        .unwrap_or_else(|e| panic!("network json: {e}"));
        n.meta.updated_at = index * 1000;
        Change {
            index,
            action,
            object: Object::Network(n),
            status_only: false,
        }
    }

    #[test]
    fn cursors_number_the_changes_of_one_entry() {
        let mut h = History::new(10);
        h.record(&change(5, "a", Action::Created));
        h.record(&change(5, "b", Action::Created));
        h.record(&change(7, "a", Action::Deleted));
        let all = h.after(Cursor::default(), 7);
        let cursors: Vec<(u64, u32)> = all
            .events
            .iter()
            .map(|e| (e.cursor.index, e.cursor.seq))
            .collect();
        assert_eq!(cursors, vec![(5, 0), (5, 1), (7, 0)]);
        assert_eq!(all.events[2].action, "remove");
        // Resuming in the middle of an entry repeats nothing and misses nothing.
        let r = h.after(Cursor { index: 5, seq: 0 }, 7);
        assert!(!r.gap);
        assert_eq!(
            r.events.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            ["b", "a"]
        );
        // Before what this history holds: a gap is reported.
        assert!(h.after(Cursor { index: 3, seq: 0 }, 7).gap);
    }

    #[test]
    fn a_full_history_says_what_it_dropped() {
        let mut h = History::new(2);
        for i in 1..=4 {
            h.record(&change(i, "n", Action::Updated));
        }
        assert!(h.after(Cursor { index: 1, seq: 0 }, 4).gap);
        let r = h.after(Cursor { index: 2, seq: 0 }, 4);
        assert!(!r.gap);
        assert_eq!(r.events.len(), 2);
        assert_eq!(h.since(4000).len(), 1);
        h.reset(9);
        assert!(h.after(Cursor { index: 4, seq: 0 }, 9).gap);
        assert!(
            !h.after(
                Cursor {
                    index: 9,
                    seq: u32::MAX
                },
                9
            )
            .gap
        );
    }

    #[test]
    fn filters_select_by_type_name_and_action() {
        let e = event_of(&change(1, "web-net", Action::Created), Cursor::default()).unwrap();
        let f = |t: &[&str], n: &[&str], a: &[&str]| Filter {
            types: t.iter().map(|s| s.to_string()).collect(),
            names: n.iter().map(|s| s.to_string()).collect(),
            actions: a.iter().map(|s| s.to_string()).collect(),
        };
        assert!(f(&[], &[], &[]).matches(&e));
        assert!(f(&["network", "service"], &["web-net"], &["create"]).matches(&e));
        assert!(!f(&["service"], &[], &[]).matches(&e));
        assert!(!f(&[], &["other"], &[]).matches(&e));
        assert!(!f(&[], &[], &["remove"]).matches(&e));
    }
}
