//! `Control.Events`: cluster events from this manager's history, then live. Any manager
//! serves them: cursors are the same on every manager, so a reader resumes anywhere.

use super::ControlService;
use std::pin::Pin;
use std::sync::Arc;
use swarm_api::control::{EventMessage, EventsRequest};
use swarm_types::events::{Cursor, Event, Filter};
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;
use tonic::{Response, Status};

pub type EventsStream = Pin<Box<dyn Stream<Item = Result<EventMessage, Status>> + Send>>;

fn message(e: &Event) -> EventMessage {
    EventMessage {
        event: serde_json::to_vec(e).unwrap_or_default(),
        ..Default::default()
    }
}

fn warning(w: String) -> EventMessage {
    EventMessage {
        warning: w,
        ..Default::default()
    }
}

impl ControlService {
    pub(super) async fn do_events(
        &self,
        r: EventsRequest,
    ) -> Result<Response<EventsStream>, Status> {
        if r.until_ms > 0 && r.since_ms > r.until_ms {
            return Err(Status::invalid_argument("--since is after --until"));
        }
        let filter = Filter {
            types: r.types.clone(),
            names: r.names.clone(),
            actions: r.actions.clone(),
        };
        for t in &filter.types {
            if !["service", "node", "task", "network"].contains(&t.as_str()) {
                return Err(Status::invalid_argument(format!(
                    "unknown event type {t:?}: use service, node, task or network"
                )));
            }
        }
        for a in &filter.actions {
            if !["create", "update", "remove"].contains(&a.as_str()) {
                return Err(Status::invalid_argument(format!(
                    "unknown event {a:?}: use create, update or remove"
                )));
            }
        }
        let store = self.manager.store().clone();
        let applied = store.last_applied_index();
        let after = Cursor {
            index: r.after_index,
            seq: r.after_seq,
        };
        let ((past, gap, position), mut rx) = store.events(|h| {
            if r.resume {
                let rep = h.after(after, applied);
                (rep.events, rep.gap, h.position())
            } else if r.since_ms > 0 {
                (h.since(r.since_ms), false, h.position())
            } else {
                (Vec::new(), false, h.position())
            }
        });
        let (tx, out) = tokio::sync::mpsc::channel(256);
        let until = r.until_ms;
        tokio::spawn(async move {
            let mut first = EventMessage {
                position_index: position.index,
                position_seq: position.seq,
                ..Default::default()
            };
            if gap {
                first.warning = format!(
                    "events after index {} may be missing: this manager restarted or no longer keeps them",
                    after.index
                );
            }
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            let past_end = past.last().map(|e| e.cursor);
            let mut last = past_end.unwrap_or(position);
            for e in past.iter().filter(|e| filter.matches(e)) {
                if until > 0 && e.time_ms > until {
                    return;
                }
                if tx.send(Ok(message(e))).await.is_err() {
                    return;
                }
            }
            if until > 0 && swarm_api::now_ms() > until {
                return;
            }
            loop {
                let deadline = async {
                    if until > 0 {
                        let wait = until.saturating_sub(swarm_api::now_ms());
                        tokio::time::sleep(std::time::Duration::from_millis(wait)).await
                    } else {
                        std::future::pending::<()>().await
                    }
                };
                let e: Arc<Event> = tokio::select! {
                    e = rx.recv() => match e {
                        Ok(e) => e,
                        Err(RecvError::Lagged(n)) => {
                            let w = format!("{n} events were dropped because this reader fell behind; resume to catch up");
                            let _ = tx.send(Ok(warning(w))).await;
                            let _ = tx.send(Err(Status::data_loss("event reader fell behind"))).await;
                            return;
                        }
                        Err(RecvError::Closed) => return,
                    },
                    _ = deadline => return,
                    _ = tx.closed() => return,
                };
                if e.cursor <= last {
                    continue;
                }
                last = e.cursor;
                if filter.matches(&e) && tx.send(Ok(message(&e))).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }
}
