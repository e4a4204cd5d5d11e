//! The log broker of the leader: readers (`swarmctl service logs`) subscribe to the lines of a
//! service's or a task's containers; the broker hands each subscription to the agents of the
//! nodes concerned over their log channel (`Dispatcher.LogSubscriptions`) and passes the lines
//! they publish (`Dispatcher.PublishLogs`) to the reader.
//!
//! It lives on the leader only, like SwarmKit's: every node keeps one log channel open to the
//! leader, and followers forward readers to it, so one place knows which nodes can answer.
//! When leadership moves, the broker drops everything: agents reconnect to the new leader and
//! readers resubscribe (they skip lines they already printed, by time per task).
//!
//! Pure bookkeeping (no store, no gRPC): the dispatcher and control handlers name the lines.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use swarm_api::control::{LogRecord, ServiceLogsMessage};
use swarm_api::dispatcher::LogSubscription;
use swarm_types::NodeId;
use tokio::sync::mpsc;
use tonic::Status;

/// Where a subscription's lines go (the reader's response stream).
pub type Reply = mpsc::Sender<Result<ServiceLogsMessage, Status>>;

/// Messages buffered per reader before publishing agents wait for it.
pub const REPLY_BUFFER: usize = 64;

#[derive(Default)]
pub struct LogBroker {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// The log channel of each node connected to this manager (a newer one replaces it).
    nodes: HashMap<NodeId, NodeChan>,
    subs: HashMap<String, Sub>,
}

struct NodeChan {
    gen: u64,
    tx: mpsc::UnboundedSender<LogSubscription>,
}

struct Sub {
    msg: LogSubscription,
    reply: Reply,
    /// Nodes the subscription was handed to (they get a close when the reader goes).
    sent: HashSet<NodeId>,
    /// Without follow: the nodes that have not sent everything yet.
    pending: HashSet<NodeId>,
    /// Time of the last line passed on, per task: a node that reconnects and sends again
    /// repeats nothing.
    last: HashMap<String, String>,
}

/// A node that cannot answer a subscription, with the name the reader knows it by.
pub struct Target {
    pub node: NodeId,
    pub name: String,
}

impl LogBroker {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("log broker lock")
    }

    /// A node opened its log channel: it receives the subscriptions that follow every node
    /// (a node that reconnects resumes them; lines already passed on are skipped).
    pub fn connect(&self, node: &NodeId) -> (u64, mpsc::UnboundedReceiver<LogSubscription>) {
        let mut st = self.lock();
        st.next_id += 1;
        let gen = st.next_id;
        let (tx, rx) = mpsc::unbounded_channel();
        for sub in st.subs.values_mut() {
            let follows = sub.msg.options.as_ref().is_some_and(|o| o.follow);
            if follows && tx.send(sub.msg.clone()).is_ok() {
                sub.sent.insert(node.clone());
            }
        }
        st.nodes.insert(node.clone(), NodeChan { gen, tx });
        (gen, rx)
    }

    /// The node's log channel `gen` closed. Subscriptions without follow that waited for it
    /// end without its remaining lines, with a warning.
    pub fn disconnect(&self, node: &NodeId, gen: u64, name: &str) {
        let mut st = self.lock();
        if st.nodes.get(node).is_some_and(|c| c.gen == gen) {
            st.nodes.remove(node);
        } else {
            return;
        }
        let mut done = Vec::new();
        for (id, sub) in st.subs.iter_mut() {
            if sub.pending.remove(node) {
                let _ = sub.reply.try_send(Ok(warning(format!(
                    "node {name} went away before sending all of its lines"
                ))));
                if sub.pending.is_empty() {
                    done.push(id.clone());
                }
            }
        }
        for id in done {
            st.subs.remove(&id);
        }
    }

    /// Starts a subscription (its id is set here) for the lines of tasks on `targets`. With
    /// follow it goes to every connected node (a task may start anywhere); without, to the
    /// targets, and it ends when each has sent everything. Targets that are not connected
    /// are reported to the reader as warnings.
    pub fn subscribe(&self, mut msg: LogSubscription, targets: &[Target], reply: Reply) -> String {
        let mut st = self.lock();
        st.next_id += 1;
        msg.id = format!("logs-{}", st.next_id);
        let follow = msg.options.as_ref().is_some_and(|o| o.follow);
        let mut sent = HashSet::new();
        let mut warnings = Vec::new();
        let wanted: HashSet<&NodeId> = targets.iter().map(|t| &t.node).collect();
        for t in targets {
            if !st.nodes.contains_key(&t.node) {
                warnings.push(if follow {
                    format!(
                        "node {} is down or not connected: its lines are missing until it reconnects",
                        t.name
                    )
                } else {
                    format!(
                        "node {} is down or not connected: the lines of its tasks are missing",
                        t.name
                    )
                });
            }
        }
        for (node, chan) in &st.nodes {
            if (follow || wanted.contains(node)) && chan.tx.send(msg.clone()).is_ok() {
                sent.insert(node.clone());
            }
        }
        for w in warnings {
            let _ = reply.try_send(Ok(warning(w)));
        }
        let pending: HashSet<NodeId> = if follow {
            HashSet::new()
        } else {
            sent.iter()
                .filter(|n| wanted.contains(n))
                .cloned()
                .collect()
        };
        let id = msg.id.clone();
        if follow || !pending.is_empty() {
            st.subs.insert(
                id.clone(),
                Sub {
                    msg,
                    reply,
                    sent,
                    pending,
                    last: HashMap::new(),
                },
            );
        }
        // Otherwise nothing will come: `reply` drops here and the reader's stream ends.
        id
    }

    /// The reader of `id` went away: the nodes stop sending.
    pub fn unsubscribe(&self, id: &str) {
        let mut st = self.lock();
        let Some(sub) = st.subs.remove(id) else {
            return;
        };
        let close = LogSubscription {
            id: id.to_string(),
            close: true,
            ..Default::default()
        };
        for n in &sub.sent {
            if let Some(c) = st.nodes.get(n) {
                let _ = c.tx.send(close.clone());
            }
        }
    }

    /// Lines a node published for subscription `id`. Returns where to send them (lines
    /// already passed on are removed from `records`), or None when nobody reads them any
    /// more (the node should stop). `close`: the node has sent everything.
    pub fn publish(
        &self,
        node: &NodeId,
        id: &str,
        records: &mut Vec<LogRecord>,
        close: bool,
    ) -> Option<Reply> {
        let mut st = self.lock();
        let sub = st.subs.get_mut(id)?;
        records.retain(|r| match sub.last.get(&r.task_id) {
            Some(t) if r.time <= *t => false,
            _ => {
                sub.last.insert(r.task_id.clone(), r.time.clone());
                true
            }
        });
        let reply = sub.reply.clone();
        if close && sub.pending.remove(node) && sub.pending.is_empty() {
            st.subs.remove(id);
        }
        Some(reply)
    }

    /// This manager stopped leading: readers are told to come back (to the new leader) and
    /// node channels close so the agents find it.
    pub fn clear(&self, why: &str) {
        let mut st = self.lock();
        for (_, sub) in st.subs.drain() {
            let _ = sub
                .reply
                .try_send(Err(Status::unavailable(why.to_string())));
        }
        st.nodes.clear();
    }

    /// Whether anything is connected or subscribed.
    pub fn is_idle(&self) -> bool {
        let st = self.lock();
        st.nodes.is_empty() && st.subs.is_empty()
    }
}

/// A message carrying only a warning for the reader's stderr.
pub fn warning(w: String) -> ServiceLogsMessage {
    ServiceLogsMessage {
        records: Vec::new(),
        warnings: vec![w],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_api::dispatcher::LogOptions;

    fn sub(follow: bool) -> LogSubscription {
        LogSubscription {
            service_id: "svc".into(),
            options: Some(LogOptions {
                follow,
                tail: -1,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn target(n: &str) -> Target {
        Target {
            node: NodeId::new(n),
            name: n.to_string(),
        }
    }

    fn rec(task: &str, time: &str) -> LogRecord {
        LogRecord {
            task_id: task.into(),
            time: time.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_one_shot_subscription_ends_when_every_connected_target_closed() {
        let b = LogBroker::default();
        let (_, mut a) = b.connect(&NodeId::new("a"));
        let (tx, mut rx) = mpsc::channel(16);
        let id = b.subscribe(sub(false), &[target("a"), target("down")], tx);
        // The node that is not connected is reported at once.
        let w = rx.try_recv().unwrap().unwrap();
        assert!(w.warnings[0].contains("node down is down"), "{w:?}");
        assert_eq!(a.try_recv().unwrap().id, id);
        let mut lines = vec![rec("t1", "1"), rec("t1", "2")];
        let reply = b.publish(&NodeId::new("a"), &id, &mut lines, true).unwrap();
        assert_eq!(lines.len(), 2);
        drop(reply);
        // The broker let go of the reader: its stream ends.
        assert!(b.lock().subs.is_empty());
        assert!(matches!(
            rx.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }

    #[test]
    fn with_no_target_connected_the_stream_ends_at_once() {
        let b = LogBroker::default();
        let (tx, mut rx) = mpsc::channel(16);
        b.subscribe(sub(false), &[target("x")], tx);
        assert!(rx.try_recv().unwrap().is_ok());
        // Sender dropped: closed.
        assert!(matches!(
            rx.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }

    #[test]
    fn follow_reaches_nodes_that_connect_later_and_repeats_nothing() {
        let b = LogBroker::default();
        let (tx, _rx) = mpsc::channel(16);
        let id = b.subscribe(sub(true), &[], tx);
        let (g1, mut a) = b.connect(&NodeId::new("a"));
        assert_eq!(a.try_recv().unwrap().id, id);
        let mut first = vec![
            rec("t1", "2026-12-03T00:00:01Z"),
            rec("t2", "2026-12-03T00:00:00Z"),
        ];
        b.publish(&NodeId::new("a"), &id, &mut first, false)
            .unwrap();
        assert_eq!(first.len(), 2);
        // The node reconnects and sends from the start again: only the new line passes.
        b.disconnect(&NodeId::new("a"), g1, "a");
        let (_, mut a2) = b.connect(&NodeId::new("a"));
        assert_eq!(a2.try_recv().unwrap().id, id);
        let mut again = vec![
            rec("t1", "2026-12-03T00:00:01Z"),
            rec("t2", "2026-12-03T00:00:00Z"),
            rec("t2", "2026-12-03T00:00:05Z"),
        ];
        b.publish(&NodeId::new("a"), &id, &mut again, false)
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].time, "2026-12-03T00:00:05Z");
        // The reader leaves: the node is told to stop.
        b.unsubscribe(&id);
        assert!(a2.try_recv().unwrap().close);
        assert!(b
            .publish(&NodeId::new("a"), &id, &mut again, false)
            .is_none());
    }

    #[test]
    fn a_node_leaving_ends_a_one_shot_subscription_with_a_warning() {
        let b = LogBroker::default();
        let (g, _a) = b.connect(&NodeId::new("a"));
        let (tx, mut rx) = mpsc::channel(16);
        b.subscribe(sub(false), &[target("a")], tx);
        b.disconnect(&NodeId::new("a"), g, "host-a");
        let w = rx.try_recv().unwrap().unwrap();
        assert!(w.warnings[0].contains("host-a went away"));
        assert!(matches!(
            rx.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }

    #[test]
    fn losing_leadership_sends_readers_elsewhere() {
        let b = LogBroker::default();
        let (_, mut a) = b.connect(&NodeId::new("a"));
        let (tx, mut rx) = mpsc::channel(16);
        b.subscribe(sub(true), &[], tx);
        let _ = a.try_recv();
        b.clear("not the leader any more");
        assert_eq!(
            rx.try_recv().unwrap().unwrap_err().code(),
            tonic::Code::Unavailable
        );
        assert!(b.is_idle());
        // The node's channel is closed: its agent looks for the leader again.
        assert!(matches!(
            a.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }
}
