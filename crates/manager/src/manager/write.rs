//! The write path: a batch proposed here when this manager leads, forwarded to the leader
//! otherwise, with the quorum checks, the patient waits and the retry after an attempt whose
//! outcome is unknown.

use super::*;

impl Manager {
    pub(super) fn no_quorum(&self) -> WriteError {
        let voters = self.voters();
        let total = voters.len().max(1);
        let reachable = voters
            .iter()
            .filter(|v| self.is_reachable(**v))
            .count()
            .max(1);
        let needed = total / 2 + 1;
        if reachable >= needed {
            return WriteError::Timeout {
                ms: self.inner.cfg.write_timeout.as_millis() as u64,
                reachable,
                total,
            };
        }
        WriteError::NoQuorum {
            reachable,
            total,
            needed,
        }
    }

    /// The error for a write that was proposed (here or at the leader) and not confirmed.
    pub(super) fn unconfirmed(&self) -> WriteError {
        let (reachable, total, needed) = match self.no_quorum() {
            WriteError::NoQuorum {
                reachable,
                total,
                needed,
            } => (reachable, total, needed),
            WriteError::Timeout {
                reachable, total, ..
            } => (reachable, total, total / 2 + 1),
            _ => (0, 0, 0),
        };
        WriteError::Unconfirmed {
            ms: self.inner.cfg.write_timeout.as_millis() as u64,
            reachable,
            total,
            needed,
        }
    }

    /// The leader has heard from a quorum recently enough that a write can commit.
    pub(super) fn leader_has_quorum(&self) -> bool {
        let rx = self.inner.raft.metrics();
        let m = rx.borrow();
        if m.membership_config.membership().voter_ids().count() <= 1 {
            return true;
        }
        match m.millis_since_quorum_ack {
            Some(ms) => ms <= self.inner.cfg.quorum_ack_window_ms(),
            // Just elected: no acknowledgement measured yet; let the proposal find out.
            None => true,
        }
    }

    /// Applies a write through Raft from any manager. Fails within `write_timeout` when no
    /// quorum can be reached. A single-op batch returns the object as stored; a bulk batch
    /// returns nothing (see `WriteOutcome`).
    pub async fn write(&self, batch: WriteBatch) -> Result<Vec<Object>, WriteError> {
        let mut batch = batch;
        if batch.now_ms == 0 {
            batch.now_ms = swarm_api::now_ms();
        }
        // Shared with the proposal and the Raft entry: a copy per write was ~20 MiB of the
        // leader's heap during a 5,000-task burst (heaptrack, BENCHMARKS 2026-12-04).
        let batch = std::sync::Arc::new(batch);
        let started = Instant::now();
        let mut deadline = started + self.inner.cfg.write_timeout;
        // Whether the write may have reached a Raft log: then a failure is "outcome unknown",
        // never "not applied".
        let mut sent = false;
        loop {
            let remaining = self.remaining_with_patience(started, &mut deadline);
            if remaining.is_zero() {
                return Err(if sent {
                    self.unconfirmed()
                } else {
                    self.no_quorum()
                });
            }
            match self.leader() {
                Some((id, _)) if id == self.raft_id() => {
                    match self.propose(&batch, remaining).await {
                        // Refused by Raft (not the leader any more): nothing appended.
                        Err(Retry::Again) => {}
                        Err(Retry::Fail(e)) => return Err(e),
                        // This manager became the leader after an earlier attempt (forwarded
                        // to the old leader) whose outcome is unknown: a refusal may be that
                        // attempt's own doing (t55 seed 20261202, KillLeader: an update
                        // reported "out of sequence" that had applied).
                        Ok(Err(e @ WriteError::Store(_))) if sent => {
                            return self.after_unknown_attempt(&batch, e).await
                        }
                        Ok(v) => return v,
                    }
                }
                Some((_, addr)) => match self.forward_write(&addr, &batch, remaining).await {
                    Ok(Ok(v)) => return Ok(v),
                    // The leader moved or lost quorum before proposing: nothing was written;
                    // try again until the deadline.
                    Ok(Err(WriteError::NoQuorum { .. } | WriteError::Timeout { .. })) => {}
                    // No answer: the leader may have proposed it.
                    Err(_) => sent = true,
                    // Refused now, but an earlier attempt may have applied: a retry must not
                    // report its own write as a conflict (or a removal as "not found").
                    Ok(Err(e @ WriteError::Store(_))) if sent => {
                        return self.after_unknown_attempt(&batch, e).await
                    }
                    Ok(Err(e)) => return Err(e),
                },
                None => {
                    if self.quorum_known_lost() {
                        return Err(self.no_quorum());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50).min(remaining)).await;
        }
    }

    /// A retry was refused by the store after an earlier attempt whose outcome is unknown.
    /// If the store (read linearizably) holds exactly what the batch writes, that earlier
    /// attempt applied: success. A refusal the earlier attempt itself could have caused — a
    /// conflict ("already exists", "out of sequence", a name in use) or a removal that finds
    /// nothing — leaves the outcome unknown: the earlier attempt may have applied and been
    /// changed since by another write (soak seed 1808 saw an update reported "out of
    /// sequence" that had applied). Anything else is a real refusal.
    pub(super) async fn after_unknown_attempt(
        &self,
        batch: &WriteBatch,
        refused: WriteError,
    ) -> Result<Vec<Object>, WriteError> {
        if self.read_barrier(false).await.is_err() {
            return Err(self.unconfirmed());
        }
        if let Some(stored) = self.store().read(|s| s.holds_effect_of(batch)) {
            tracing::info!("a retried write found its own earlier attempt applied");
            return Ok(stored);
        }
        let removal = batch.ops.iter().any(|op| matches!(op, Op::Delete { .. }));
        if own_attempt_may_explain(&refused, removal) {
            return Err(self.unconfirmed());
        }
        Err(refused)
    }

    /// With no leader: so many voters are known to be down that no election can succeed.
    pub(super) fn quorum_known_lost(&self) -> bool {
        let voters = self.voters();
        let needed = voters.len() / 2 + 1;
        let down = voters
            .iter()
            .filter(|v| **v != self.raft_id() && self.inner.network.reachability.is_known_down(**v))
            .count();
        voters.len() - down < needed
    }

    /// Proposes a write on this node, which must be the leader (used by forwarded writes).
    pub async fn write_as_leader(&self, batch: WriteBatch) -> Result<Vec<Object>, WriteError> {
        match self
            .propose(&std::sync::Arc::new(batch), self.inner.cfg.write_timeout)
            .await
        {
            Ok(v) => v,
            Err(Retry::Again) => Err(self.no_quorum()),
            Err(Retry::Fail(e)) => Err(e),
        }
    }

    pub(super) async fn propose(
        &self,
        batch: &std::sync::Arc<WriteBatch>,
        timeout: Duration,
    ) -> Result<Result<Vec<Object>, WriteError>, Retry> {
        if !self.leader_has_quorum() {
            return Err(Retry::Fail(self.no_quorum()));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let pending = Pending {
            batch: batch.clone(),
            reply: tx,
        };
        if self.inner.proposals.send(pending).await.is_err() {
            return Err(Retry::Fail(WriteError::ShuttingDown));
        }
        let mut rx = rx;
        let started = Instant::now();
        let answer = loop {
            let wait = timeout.saturating_sub(started.elapsed()).max(PATIENCE_STEP);
            match tokio::time::timeout(wait, &mut rx).await {
                Ok(a) => break Ok(a),
                // Overload slows writes down but does not fail them: while a quorum keeps
                // acknowledging, the proposal is still on its way.
                Err(_) if started.elapsed() < OVERLOAD_PATIENCE && self.leader_has_quorum() => {}
                Err(e) => break Err(e),
            }
        };
        match answer {
            // Handed to Raft and not confirmed: it may still commit.
            Err(_)
            | Ok(Err(_))
            | Ok(Ok(Err(ProposeError::Timeout)))
            | Ok(Ok(Err(ProposeError::Unknown))) => Err(Retry::Fail(self.unconfirmed())),
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(ProposeError::NotLeader))) => Err(Retry::Again),
            Ok(Ok(Err(ProposeError::Fail(e)))) => Err(Retry::Fail(e)),
        }
    }

    pub(super) async fn forward_write(
        &self,
        addr: &str,
        batch: &WriteBatch,
        timeout: Duration,
    ) -> Result<Result<Vec<Object>, WriteError>, tonic::Status> {
        let ch = self.channel_to(addr)?;
        let mut client =
            RaftClient::new(ch).max_decoding_message_size(swarm_api::MAX_MESSAGE_BYTES);
        let mut req = tonic::Request::new(ForwardWriteRequest {
            batch: wire::to_bytes(batch),
        });
        // The leader answers within its own patience (see `propose`); this side waits as long
        // as the leader keeps contacting it, and `timeout` once it has gone quiet.
        req.set_timeout(OVERLOAD_PATIENCE + timeout);
        let resp = self
            .await_leader(timeout, client.forward_write(req))
            .await
            .ok_or_else(|| tonic::Status::deadline_exceeded("forwarded write timed out"))??;
        wire::from_bytes("write result", &resp.get_ref().result)
    }

    /// Waits for the leader's answer to `call`: `timeout`, and longer (up to the overload
    /// patience) while the leader keeps contacting this manager. `None` when given up.
    pub(super) async fn await_leader<F: std::future::Future>(
        &self,
        timeout: Duration,
        call: F,
    ) -> Option<F::Output> {
        let leader = self.leader().map(|(id, _)| id);
        let started = Instant::now();
        tokio::pin!(call);
        loop {
            let wait = timeout.saturating_sub(started.elapsed()).max(PATIENCE_STEP);
            match tokio::time::timeout(wait, &mut call).await {
                Ok(r) => return Some(r),
                Err(_)
                    if started.elapsed() < OVERLOAD_PATIENCE
                        && leader.is_some_and(|l| self.is_reachable(l)) => {}
                Err(_) => return None,
            }
        }
    }
}

pub(super) enum Retry {
    Again,
    Fail(WriteError),
}

/// Whether a refusal of a retried write could come from the write's own earlier attempt
/// (whose outcome is unknown): then the refusal proves nothing.
pub(super) fn own_attempt_may_explain(refused: &WriteError, removal: bool) -> bool {
    match refused {
        WriteError::Store(
            StoreError::Exists { .. }
            | StoreError::NameConflict { .. }
            | StoreError::VersionMismatch { .. },
        ) => true,
        WriteError::Store(StoreError::NotFound { .. }) => removal,
        _ => false,
    }
}
