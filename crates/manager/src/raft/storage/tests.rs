//! Tests of the Raft storage: openraft's storage suite, the entry cache, the snapshot's move
//! out of sled.

use super::*;
use crate::raft::{codec, APPEND_BUDGET_BYTES};
use openraft::testing::{StoreBuilder, Suite};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open_db(dir.path()).expect("open sled");
        let (log, sm) = open(&db, dir.path())?;
        Ok((dir, log, sm))
    }
}

async fn build_snapshot(sm: &mut StateMachine) -> Snapshot<TypeConfig> {
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build snapshot")
}

fn entry(index: u64, ops: usize) -> Entry<TypeConfig> {
    use swarm_types::store::{Op, WriteBatch};
    let batch = WriteBatch {
        ops: (0..ops)
            .map(|i| Op::TaskDesired {
                id: swarm_types::TaskId::new(format!("t-{index}-{i}")),
                desired: swarm_types::task::TaskState::Shutdown,
            })
            .collect(),
        now_ms: 0,
    };
    Entry {
        log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
        payload: openraft::EntryPayload::Normal(crate::raft::Proposal {
            batches: Arc::new(vec![Arc::new(batch)]),
        }),
    }
}

#[test]
fn the_entry_cache_is_bounded_by_the_ops_it_holds() {
    let mut c = Cache::default();
    // Big group-committed entries: the ops bound evicts long before the count bound.
    for i in 1..=40 {
        c.insert(entry(i, 1_000), 0);
    }
    assert_eq!(c.ops, CACHED_OPS / 1_000 * 1_000);
    assert_eq!(c.entries.len(), CACHED_OPS / 1_000);
    assert_eq!(
        *c.entries.keys().next_back().unwrap(),
        40,
        "the newest stays"
    );
    // Small entries: the count bound.
    let mut c = Cache::default();
    for i in 1..=(CACHED_ENTRIES as u64 + 10) {
        c.insert(entry(i, 1), 0);
    }
    assert_eq!(c.entries.len(), CACHED_ENTRIES);
    assert_eq!(c.ops, CACHED_ENTRIES);
    // One entry larger than the whole budget is still kept (until the next one).
    let mut c = Cache::default();
    c.insert(entry(1, CACHED_OPS + 5), 0);
    assert_eq!(c.entries.len(), 1);
    c.insert(entry(2, 10), 0);
    assert_eq!((c.entries.len(), c.ops), (1, 10));
    c.retain(|i| i < 2);
    assert_eq!((c.entries.len(), c.ops), (0, 0));
}

#[tokio::test]
async fn a_follower_is_sent_a_bounded_run_of_entries_from_the_files_or_the_cache() {
    let (_dir, mut log, _sm) = Builder.build().await.expect("store");
    // Entries of ~40 KiB each: the budget holds a handful of them, not the whole range.
    let per_entry = codec::encode(&entry(1, 1_000)).expect("encode").len();
    let fits = APPEND_BUDGET_BYTES / per_entry;
    assert!((2..50).contains(&fits), "{per_entry} bytes per entry");
    for i in 1..=100 {
        let v = codec::encode(&entry(i, 1_000)).expect("encode");
        log.segments().append(&[(i, v)]).expect("append");
    }
    let got = log.limited_get_log_entries(1, 101).await.expect("read");
    let indexes: Vec<u64> = got.iter().map(|e| e.log_id.index).collect();
    assert_eq!(
        indexes,
        (1..=fits as u64).collect::<Vec<_>>(),
        "from the files"
    );
    // Within the budget, the range decides; a range of one always gets its entry.
    let got = log.limited_get_log_entries(40, 42).await.expect("read");
    assert_eq!(got.len(), 2);
    // One entry larger than the budget is still sent, alone.
    let big = codec::encode(&entry(101, 10_000)).expect("encode");
    assert!(big.len() > APPEND_BUDGET_BYTES);
    log.segments().append(&[(101, big)]).expect("append");
    let got = log.limited_get_log_entries(101, 102).await.expect("read");
    assert_eq!(got.len(), 1);
    let got = log.limited_get_log_entries(100, 102).await.expect("read");
    assert_eq!(got.len(), 1, "the big one waits for the next append");
    // The cache answers the same way, from any index it holds.
    {
        let mut c = log.cache.lock().unwrap();
        for i in 50..=60 {
            c.insert(entry(i, 1_000), per_entry);
        }
    }
    let got = log.limited_get_log_entries(55, 101).await.expect("read");
    let indexes: Vec<u64> = got.iter().map(|e| e.log_id.index).collect();
    let want_end = (55 + fits as u64).min(61);
    assert_eq!(
        indexes,
        (55..want_end).collect::<Vec<_>>(),
        "from the cache"
    );
}

#[tokio::test]
async fn a_snapshot_kept_in_sled_by_an_older_version_is_read_then_moved_to_its_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open_db(dir.path()).expect("open sled");
    let meta = SnapshotMeta::<RaftId, openraft::BasicNode> {
        last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(3, 1), 42)),
        last_membership: Membership::default(),
        snapshot_id: "old".into(),
    };
    let state = StoreState::default();
    let data = codec::encode(&SnapshotBodyRef { state: &state }).unwrap();
    let legacy = db.open_tree("snapshot").unwrap();
    legacy
        .insert("meta", serde_json::to_vec(&meta).unwrap())
        .unwrap();
    legacy.insert("data", data).unwrap();

    let (_log, mut sm) = open(&db, dir.path()).unwrap();
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(42), "restored from sled");
    assert!(!SnapshotFile::in_dir(dir.path()).path().exists());

    let built = build_snapshot(&mut sm).await;
    assert_eq!(built.meta.last_log_id.map(|l| l.index), Some(42));
    assert!(legacy.get("data").unwrap().is_none(), "sled copy dropped");
    let (meta_bytes, _) = SnapshotFile::in_dir(dir.path()).read().unwrap().unwrap();
    let on_file: SnapshotMeta<RaftId, openraft::BasicNode> =
        serde_json::from_slice(&meta_bytes).unwrap();
    assert_eq!(on_file.snapshot_id, built.meta.snapshot_id);
    drop((sm, _log));

    let (_log, mut sm) = open(&db, dir.path()).unwrap();
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(42), "restored from the file");
}

#[tokio::test]
async fn a_log_an_older_version_kept_in_sled_is_moved_into_segment_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open_db(dir.path()).expect("open sled");
    let tree = db.open_tree("log").unwrap();
    // 30 entries of ~40 KiB: more than one move chunk.
    for i in 3..=32 {
        tree.insert(key(i), codec::encode(&entry(i, 1_000)).unwrap())
            .unwrap();
    }
    // Files of a move that did not finish: the tree is still the log, they are rewritten.
    let seg_dir = log_store::segments_dir(dir.path());
    std::fs::create_dir_all(&seg_dir).unwrap();
    std::fs::write(seg_dir.join(format!("{:020}.seg", 3)), b"SWRLOG01garbage").unwrap();

    let (mut log, _sm) = open(&db, dir.path()).unwrap();
    assert!(
        !db.tree_names().iter().any(|n| n.as_ref() == b"log"),
        "tree dropped"
    );
    let got = log.try_get_log_entries(3..=32).await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
        (3..=32).collect::<Vec<_>>()
    );
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id.map(|l| l.index), Some(32));
    drop((log, _sm));
    // Opened again: read from the files alone.
    let (mut log, _sm) = open(&db, dir.path()).unwrap();
    assert_eq!(log.try_get_log_entries(30..33).await.unwrap().len(), 3);
}

#[tokio::test]
async fn segments_a_crash_left_behind_a_recorded_purge_are_deleted_at_start() {
    let (dir, log, sm) = Builder.build().await.expect("store");
    // Entries of ~1 MiB: several segments, so whole ones lie behind the purge point.
    for i in 1..=40 {
        let v = codec::encode(&entry(i, 30_000)).unwrap();
        log.segments().append(&[(i, v)]).unwrap();
    }
    let files = log.segments().files().len();
    assert!(files >= 4, "{files} segments");
    // The purge point was recorded, the crash came before the files went.
    log.put_meta(
        "last_purged",
        &LogId::new(openraft::CommittedLeaderId::new(1, 1), 30),
    )
    .unwrap();
    let db = log.db.clone();
    drop((log, sm));
    let (mut log, _sm) = open(&db, dir.path()).unwrap();
    assert_eq!(log.segments().first_index(), Some(31));
    assert!(log.segments().files().len() < files);
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(30));
    assert_eq!(state.last_log_id.map(|l| l.index), Some(40));
}

#[test]
fn passes_openraft_storage_suite() -> Result<(), StorageError> {
    Suite::test_all(Builder)?;
    Ok(())
}

#[tokio::test]
async fn a_snapshot_is_due_by_log_bytes_and_a_large_snapshot_raises_the_bar() {
    use std::time::Duration;
    let due = |v: &Arc<LogVolume>| {
        let v = v.clone();
        async move {
            tokio::time::timeout(Duration::from_millis(20), v.due())
                .await
                .is_ok()
        }
    };
    let v = Arc::new(LogVolume::default());
    v.appended(MIN_LOG_BYTES_PER_SNAPSHOT - 1);
    assert!(!due(&v).await);
    v.appended(1);
    v.appended(10);
    assert!(due(&v).await, "due once past the threshold");
    assert!(!due(&v).await, "several appends past it make one signal");
    v.snapshotted(4 * MIN_LOG_BYTES_PER_SNAPSHOT);
    assert_eq!(v.since_snapshot(), 0);
    v.appended(2 * MIN_LOG_BYTES_PER_SNAPSHOT);
    assert!(
        !due(&v).await,
        "not before the log is as large as the last snapshot"
    );
    v.appended(2 * MIN_LOG_BYTES_PER_SNAPSHOT);
    assert!(due(&v).await);
}

#[tokio::test]
async fn the_log_and_the_state_machine_share_one_volume_that_a_snapshot_resets() {
    let (_dir, log, mut sm) = Builder.build().await.unwrap();
    let volume = log.volume();
    // (`append` adds each entry's encoded size; openraft's callback cannot be made outside
    // openraft, so the count is added here directly.)
    volume.appended(1234);
    sm.apply((1..=3).map(|i| entry(i, 100))).await.unwrap();
    let built = build_snapshot(&mut sm).await;
    assert_eq!(built.meta.last_log_id.map(|l| l.index), Some(3));
    assert_eq!(volume.since_snapshot(), 0, "the snapshot covers the log");
}

#[test]
fn a_quiet_log_is_due_for_compaction_once_it_holds_enough_since_the_last_snapshot() {
    use std::time::{Duration, Instant};
    let quiet = QUIET_BEFORE_REST_SNAPSHOT;
    let v = LogVolume::default();
    assert!(
        !v.due_at_rest(Instant::now() + quiet),
        "nothing appended since start"
    );
    v.appended(MIN_LOG_BYTES_AT_REST - 1);
    assert!(
        !v.due_at_rest(Instant::now() + quiet),
        "too little to be worth it"
    );
    v.appended(1);
    let now = Instant::now();
    assert!(!v.due_at_rest(now), "not while entries still arrive");
    assert!(!v.due_at_rest(now + quiet / 2));
    assert!(v.due_at_rest(now + quiet + Duration::from_millis(1)));
    // After an 80 MiB snapshot, a trickle of 1 MiB is not worth rewriting it: an eighth is.
    v.snapshotted(80 << 20);
    assert!(
        !v.due_at_rest(Instant::now() + 2 * quiet),
        "the snapshot covers the log"
    );
    v.appended(MIN_LOG_BYTES_AT_REST);
    assert!(!v.due_at_rest(Instant::now() + 2 * quiet));
    v.appended((10 << 20) - MIN_LOG_BYTES_AT_REST);
    assert!(v.due_at_rest(Instant::now() + 2 * quiet));
}

#[test]
fn the_purge_point_keeps_a_bounded_number_of_bytes_behind_the_snapshot() {
    let v = LogVolume::default();
    // Entries 1..=100 of 1 MiB each.
    let mib = 1 << 20;
    let entries: Vec<(u64, u64)> = (1..=100).map(|i| (i, mib)).collect();
    v.appended_entries(&entries);
    assert_eq!(v.since_snapshot(), 100 * mib);
    // Keep 8 MiB behind a snapshot at 90: entries 83..=90 stay, 82 and before go.
    assert_eq!(v.purge_point(90, 8 * mib), Some(82));
    // The window reaches back only so far (64 MiB: entries 37..=100): older snapshots are
    // openraft's to decide.
    assert_eq!(v.purge_point(10, 8 * mib), None);
    assert_eq!(v.purge_point(36, 0), None);
    assert_eq!(v.purge_point(37, 0), Some(37));
    // A rewritten tail (after a truncation) replaces what it covered.
    v.appended_entries(&[(95, 10 * mib)]);
    assert_eq!(
        v.purge_point(95, 8 * mib),
        Some(95),
        "one entry over the budget: none kept"
    );
    assert_eq!(v.purge_point(100, 8 * mib), Some(95), "96..=100 are gone");
    assert_eq!(v.purge_point(94, 8 * mib), Some(86));
}
