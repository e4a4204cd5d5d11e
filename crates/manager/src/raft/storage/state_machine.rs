//! The applied object store and its snapshots (built, installed, read back at start). It
//! does not touch the log beyond counting it down through the shared volume.

use super::*;

#[derive(serde::Deserialize)]
struct SnapshotBody {
    state: StoreState,
}

/// What `SnapshotBody` decodes, encoded from a borrow: no copy of the store is made.
#[derive(serde::Serialize)]
pub(super) struct SnapshotBodyRef<'a> {
    pub(super) state: &'a StoreState,
}

pub struct StateMachine {
    shared: SharedStore,
    volume: Arc<LogVolume>,
    file: SnapshotFile,
    /// Where snapshots were kept before they moved to `file`: read when no file exists yet,
    /// emptied after the first snapshot written to the file.
    legacy: sled::Tree,
}

impl StateMachine {
    /// Opens the state machine, restoring it from the last persisted snapshot.
    pub fn open(db: &sled::Db, dir: &Path, volume: Arc<LogVolume>) -> Result<Self, StorageError> {
        let legacy = db
            .open_tree("snapshot")
            .map_err(|e| io_err(StorageIOError::read_state_machine, e))?;
        let mut sm = StateMachine {
            volume,
            shared: SharedStore::new(),
            file: SnapshotFile::in_dir(dir),
            legacy,
        };
        if let Some((meta, data)) = sm.read_snapshot()? {
            sm.load(&meta, &data)?;
            sm.volume.snapshotted(data.len() as u64);
        }
        Ok(sm)
    }

    pub fn shared(&self) -> SharedStore {
        self.shared.clone()
    }

    fn read_snapshot(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        fn rd<E: std::error::Error + 'static>(e: E) -> StorageError {
            io_err(StorageIOError::read_state_machine, e)
        }
        let (meta, data) = match self.file.read().map_err(rd)? {
            Some(found) => found,
            None => {
                let meta = self.legacy.get("meta").map_err(rd)?;
                let data = self.legacy.get("data").map_err(rd)?;
                match (meta, data) {
                    (Some(m), Some(d)) => (m.to_vec(), d.to_vec()),
                    _ => return Ok(None),
                }
            }
        };
        let meta = serde_json::from_slice(&meta).map_err(rd)?;
        Ok(Some((meta, data)))
    }

    fn load(
        &mut self,
        meta: &SnapshotMeta<RaftId, openraft::BasicNode>,
        data: &[u8],
    ) -> Result<(), StorageError> {
        let body: SnapshotBody = crate::raft::codec::decode(data)
            .map_err(|e| io_err(StorageIOError::read_state_machine, e))?;
        let mut state = body.state;
        state.rebuild_indexes();
        let mut inner = self.shared.write_applied();
        inner.state = state;
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        Ok(())
    }

    /// Writes the snapshot to its file on a blocking thread (so no Raft task waits behind the
    /// disk) and hands `data` back for the caller to serve.
    async fn persist_snapshot(
        file: &SnapshotFile,
        legacy: &sled::Tree,
        meta: &SnapshotMeta<RaftId, openraft::BasicNode>,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, StorageError> {
        fn wr<E: std::error::Error + 'static>(e: E) -> StorageError {
            io_err(StorageIOError::write_state_machine, e)
        }
        let m = serde_json::to_vec(meta).map_err(wr)?;
        let file = file.clone();
        let data = tokio::task::spawn_blocking(move || file.write(&m, &data).map(|()| data))
            .await
            .map_err(|e| wr(std::io::Error::other(e)))?
            .map_err(wr)?;
        if legacy.contains_key("data").map_err(wr)? {
            let mut b = sled::Batch::default();
            b.remove("meta");
            b.remove("data");
            legacy.apply_batch(b).map_err(wr)?;
        }
        Ok(data)
    }
}

pub struct SnapshotBuilder {
    shared: SharedStore,
    volume: Arc<LogVolume>,
    file: SnapshotFile,
    legacy: sled::Tree,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let started = std::time::Instant::now();
        // Encoded under the read lock, from a borrow: applying waits for the encoding, which
        // costs less than the deep copy of every object that encoding outside would need.
        let (data, last_applied, membership) = {
            let inner = self.shared.read_applied();
            let data = crate::raft::codec::encode(&SnapshotBodyRef {
                state: &inner.state,
            })
            .map_err(|e| io_err(StorageIOError::write_state_machine, e))?;
            (data, inner.last_applied, inner.membership.clone())
        };
        let encoded = started.elapsed();
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, rand::random::<u32>()),
            None => format!("empty-{}", rand::random::<u32>()),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        let data = StateMachine::persist_snapshot(&self.file, &self.legacy, &meta, data).await?;
        self.volume.snapshotted(data.len() as u64);
        tracing::info!(
            bytes = data.len(),
            encode_ms = encoded.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "raft snapshot built"
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        let inner = self.shared.read_applied();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<WriteOutcome>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        let mut changes = Vec::new();
        {
            let mut inner = self.shared.write_applied();
            for entry in entries {
                inner.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => out.push(WriteOutcome::default()),
                    EntryPayload::Normal(proposal) => {
                        let mut results = Vec::with_capacity(proposal.batches.len());
                        for batch in proposal.batches.iter() {
                            results.push(match inner.state.apply(batch, entry.log_id.index) {
                                Ok(ch) => {
                                    // Only single-op writes (the control API's) read the
                                    // stored objects back; bulk task writes would copy
                                    // every task once more on every manager.
                                    let objs = if batch.ops.len() == 1 && batch.ops[0].weight() == 1
                                    {
                                        ch.iter().map(|c| c.object.clone()).collect()
                                    } else {
                                        Vec::new()
                                    };
                                    changes.extend(ch);
                                    Ok(objs)
                                }
                                Err(e) => Err(e),
                            });
                        }
                        out.push(WriteOutcome { results });
                    }
                    EntryPayload::Membership(m) => {
                        inner.membership = StoredMembership::new(Some(entry.log_id), m);
                        out.push(WriteOutcome::default());
                    }
                }
            }
        }
        for c in changes {
            // No receivers is fine; lagging receivers see `Lagged` and resynchronize.
            self.shared.publish(StoreEvent::Change(Arc::new(c)));
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            shared: self.shared.clone(),
            volume: self.volume.clone(),
            file: self.file.clone(),
            legacy: self.legacy.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<RaftId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        self.load(meta, &data)?;
        let data = Self::persist_snapshot(&self.file, &self.legacy, meta, data).await?;
        self.volume.snapshotted(data.len() as u64);
        self.shared.publish(StoreEvent::Reset);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.read_snapshot()?.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
