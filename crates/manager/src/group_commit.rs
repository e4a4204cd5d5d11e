//! Group commit: the leader's queue of client write batches, proposed to Raft as few entries
//! as possible (each batch still atomic and answered on its own), with bounds per entry on
//! batches, objects and bytes and a bound on proposals in flight. Knows nothing of who wrote
//! or of forwarding: `Manager::write` feeds it on the leader.

use crate::raft::{Proposal, Raft};
use crate::write_error::WriteError;
use openraft::error::{ClientWriteError, RaftError};
use std::sync::Arc;
use std::time::Duration;
use swarm_types::store::{Op, WriteBatch};
use swarm_types::Object;

pub(crate) type Reply =
    tokio::sync::oneshot::Sender<Result<Result<Vec<Object>, WriteError>, ProposeError>>;

pub(crate) struct Pending {
    pub batch: Arc<WriteBatch>,
    pub reply: Reply,
}

/// Why a coalesced proposal did not produce a result for its batches.
#[derive(Debug)]
pub(crate) enum ProposeError {
    /// Leadership moved: retry against the new leader.
    NotLeader,
    /// No commit within the timeout.
    Timeout,
    /// Raft stopped with the proposal in hand: it may still commit elsewhere.
    Unknown,
    Fail(WriteError),
}

/// Proposals in flight at once; while they are, new writes queue up and go out together.
const MAX_IN_FLIGHT: usize = 4;
/// Most client batches in one Raft entry.
const MAX_BATCHES_PER_ENTRY: usize = 256;
/// Stop adding batches to an entry past this many ops: entries stay small enough to
/// replicate within one heartbeat interval (see `raft::network`).
const MAX_OPS_PER_ENTRY: usize = 1_000;

/// Byte budget of one Raft entry for batches that carry large objects (services, whose specs
/// may reach 256 KiB each and which keep up to 12 of them): such an entry still replicates in
/// one append and stays far below the 16 MiB message limit. A single batch over the budget
/// still goes alone.
const MAX_ENTRY_BYTES: usize = 4 * 1024 * 1024;

/// Encoded size of the large objects a batch writes (services and clusters); small objects
/// count 0, so the hot path (task status reports) encodes nothing here.
fn big_object_bytes(b: &WriteBatch) -> usize {
    b.ops
        .iter()
        .map(|op| match op {
            Op::Create(o @ (Object::Service(_) | Object::Cluster(_)))
            | Op::Update(o @ (Object::Service(_) | Object::Cluster(_))) => {
                serde_json::to_vec(o).map(|v| v.len()).unwrap_or(0)
            }
            _ => 0,
        })
        .sum()
}

/// Group commit: takes queued writes, proposes them as one entry, hands each its result.
pub(crate) async fn coalesce(
    raft: Raft,
    mut rx: tokio::sync::mpsc::Receiver<Pending>,
    timeout: Duration,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    // A batch that did not fit the previous entry's byte budget opens the next one.
    let mut next: Option<Pending> = None;
    loop {
        let first = match next.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let weight = |b: &WriteBatch| b.ops.iter().map(Op::weight).sum::<usize>();
        let mut ops = weight(&first.batch);
        let mut bytes = big_object_bytes(&first.batch);
        let mut group = vec![first];
        while group.len() < MAX_BATCHES_PER_ENTRY && ops < MAX_OPS_PER_ENTRY {
            match rx.try_recv() {
                Ok(p) => {
                    let b = big_object_bytes(&p.batch);
                    if bytes + b > MAX_ENTRY_BYTES {
                        // Starts the next entry instead.
                        next = Some(p);
                        break;
                    }
                    bytes += b;
                    ops += weight(&p.batch);
                    group.push(p);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let (batches, replies): (Vec<Arc<WriteBatch>>, Vec<Reply>) =
                group.into_iter().map(|p| (p.batch, p.reply)).unzip();
            let res = tokio::time::timeout(
                timeout,
                raft.client_write(Proposal {
                    batches: Arc::new(batches),
                }),
            )
            .await;
            drop(permit);
            match res {
                Ok(Ok(resp)) => {
                    let mut results = resp.data.results.into_iter();
                    for r in replies {
                        let out = match results.next() {
                            Some(Ok(v)) => Ok(v),
                            Some(Err(e)) => Err(WriteError::Store(e)),
                            None => Ok(Vec::new()),
                        };
                        let _ = r.send(Ok(out));
                    }
                }
                Ok(Err(e)) => {
                    let err = || match &e {
                        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
                            ProposeError::NotLeader
                        }
                        RaftError::APIError(e) => {
                            ProposeError::Fail(WriteError::Raft(e.to_string()))
                        }
                        // The core died (e.g. its log write failed on a full disk) after the
                        // entry may have been appended and replicated: a new leader can still
                        // commit it, so the outcome is unknown, never "not applied".
                        RaftError::Fatal(_) => ProposeError::Unknown,
                    };
                    for r in replies {
                        let _ = r.send(Err(err()));
                    }
                }
                Err(_) => {
                    for r in replies {
                        let _ = r.send(Err(ProposeError::Timeout));
                    }
                }
            }
        });
    }
}
