//! Linearizable reads: the read index from the leader (here or remote) and the barrier a
//! read waits on before it answers.

use super::*;

impl Manager {
    /// On the leader: the index a linearizable read must wait for.
    pub async fn read_index_as_leader(&self) -> Result<u64, tonic::Status> {
        if !self.leader_has_quorum() {
            return Err(self.no_quorum().into());
        }
        // openraft restores a restarted leader that kept its (committed) vote as leader in the
        // same term, and its read index is max(first log of the term, commit index). The
        // commit index it restarted with may predate writes it acknowledged before the crash
        // (it is saved unflushed), and the term's first log is older still: reads would miss
        // acknowledged writes until the next commit. So the first read this process serves
        // as leader in a term records the last log index, and no read of the term is answered
        // below it: everything in the log then is committed and applied first. Afterwards it
        // costs nothing (the commit index has passed it).
        let floor = {
            let (term, last) = {
                let rx = self.inner.raft.metrics();
                let m = rx.borrow();
                (m.current_term, m.last_log_index.unwrap_or(0))
            };
            let mut f = self.inner.read_floor.lock().expect("read floor lock");
            if f.0 != term {
                *f = (term, last);
            }
            f.1
        };
        let fut = self.inner.raft.get_read_log_id();
        match tokio::time::timeout(self.inner.cfg.write_timeout, fut).await {
            Ok(Ok((read, _applied))) => Ok(read.map(|l| l.index).unwrap_or(0).max(floor)),
            Ok(Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(
                e,
            )))) => Err(tonic::Status::unavailable(format!("not the leader: {e}"))),
            // openraft confirms leadership with one round of heartbeats bounded by the
            // heartbeat interval; on an overloaded host that round does not finish in time
            // although the followers are there. Confirm through the log instead: an empty
            // write commits only with a quorum in this leader's term, and once it is applied
            // everything committed before the read began is applied too.
            _ => {
                self.write_as_leader(WriteBatch {
                    ops: Vec::new(),
                    now_ms: swarm_api::now_ms(),
                })
                .await?;
                let applied = self.inner.raft.metrics().borrow().last_applied;
                Ok(applied.map(|l| l.index).unwrap_or(0).max(floor))
            }
        }
    }

    /// Waits until this manager's store reflects every write committed before the call
    /// (linearizable read barrier). `stale` skips it.
    pub async fn read_barrier(&self, stale: bool) -> Result<(), WriteError> {
        if stale {
            return Ok(());
        }
        let started = Instant::now();
        let mut deadline = started + self.inner.cfg.write_timeout;
        loop {
            // As for writes: overload delays a read while a quorum is reachable.
            let remaining = self.remaining_with_patience(started, &mut deadline);
            if remaining.is_zero() {
                return Err(self.no_quorum());
            }
            let index = match self.leader() {
                Some((id, _)) if id == self.raft_id() => self.read_index_as_leader().await.ok(),
                Some((_, addr)) => self.remote_read_index(&addr, remaining).await.ok(),
                None if self.quorum_known_lost() => return Err(self.no_quorum()),
                None => None,
            };
            if let Some(index) = index {
                let w = self
                    .inner
                    .raft
                    .wait(Some(deadline.saturating_duration_since(Instant::now())));
                return match w.applied_index_at_least(Some(index), "read barrier").await {
                    Ok(_) => Ok(()),
                    Err(_) => Err(self.no_quorum()),
                };
            }
            tokio::time::sleep(Duration::from_millis(50).min(remaining)).await;
        }
    }

    pub(super) async fn remote_read_index(
        &self,
        addr: &str,
        timeout: Duration,
    ) -> Result<u64, tonic::Status> {
        let ch = self.channel_to(addr)?;
        let mut req = tonic::Request::new(ReadIndexRequest {});
        req.set_timeout(OVERLOAD_PATIENCE + timeout);
        let resp = self
            .await_leader(timeout, RaftClient::new(ch).read_index(req))
            .await
            .ok_or_else(|| tonic::Status::deadline_exceeded("read index timed out"))??;
        Ok(resp.get_ref().index)
    }
}
