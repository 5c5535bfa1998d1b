//! The `memory` engine: every partition's batches in memory, made durable by a
//! write-ahead log and periodic snapshots (or, without a directory, not at all).
//!
//! Layout of the directory: `wal-<generation, 20 digits>.log` and
//! `snapshot-<generation>.snap`. Snapshot `G` holds the whole state at the moment WAL `G`
//! was started; the state now is the newest valid snapshot plus every WAL of its
//! generation or later, replayed in order (see `wal.rs` for the record format).
//!
//! Files: this one is the engine (open, partitions, the WAL writer's owner, close);
//! `partition.rs` one partition (its batches, and the appends, reads, deletes and
//! truncations that go through the engine lock); `recovery.rs` start-up (newest snapshot
//! plus WAL replay, cutting a torn tail); `wal.rs` the WAL file and the record format it
//! shares with snapshots; `snapshot.rs` writing snapshots and the thread that does so;
//! `txn.rs` each partition's aborted transactions and producer-state snapshot (WAL records
//! too, repeated in every snapshot).
//!
//! - Every change (append, `delete_before`, `truncate_after`, retention, partition creation
//!   and removal, an aborted transaction recorded, a producer snapshot) is written to the WAL with one positional write under the engine lock
//!   before it is applied in memory. `flush` fdatasyncs the WAL (group commit: one sync
//!   covers every record written before it); `delete_before`, `truncate_after`, retention
//!   and `remove` flush before they return, as the `log` engine's checkpoints do.
//! - A snapshot starts after `storage.memory.snapshot_interval_bytes` of WAL or `_ms`,
//!   on the engine's background thread: under the lock the current WAL is synced and a new
//!   one started and the state is captured (cheap: batches are shared `Bytes`); outside
//!   it the snapshot is written to a temp file, fsynced, renamed and the directory fsynced;
//!   then older WALs and snapshots are deleted. [`StorageEngine::close`] writes a final one.
//! - Recovery loads the newest snapshot that reads back whole (a leftover `.tmp` is
//!   removed), replays the WALs after it, and cuts the last WAL at its first bad record.
//! - Memory is bounded: past `storage.memory.max_bytes` of stored batches (engine-wide) an
//!   append fails with [`StorageError::Full`]; reads go on.
//!
//! Concurrency: one `parking_lot::Mutex` guards all partitions and the WAL writer. It is
//! held for bookkeeping, one WAL write and (for reads) cloning `Bytes` handles; fsyncs and
//! snapshot writing happen outside it.

mod partition;
mod recovery;
mod snapshot;
mod txn;
mod wal;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use rafka_core::{
    LogConfig, Offset, PartitionLog, StorageEngine, StorageError, StorageResult, TopicPartition,
};

use crate::group_commit::GroupCommit;
pub use partition::MemoryPartition;
use partition::PartState;
use wal::{Op, Wal};

/// Settings of the memory engine (from the `storage:` config section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryOptions {
    /// Directory of the WAL and snapshots; `None` keeps nothing on disk.
    pub dir: Option<PathBuf>,
    /// Bytes of stored batches (all partitions) past which appends fail with `Full`.
    pub max_bytes: u64,
    /// Start a snapshot once the WAL has grown by this many bytes since the last one.
    pub snapshot_interval_bytes: u64,
    /// Start a snapshot this long after the last one if anything changed.
    pub snapshot_interval_ms: u64,
}

impl Default for MemoryOptions {
    fn default() -> Self {
        MemoryOptions {
            dir: None,
            max_bytes: 1024 * 1024 * 1024,
            snapshot_interval_bytes: 256 * 1024 * 1024,
            snapshot_interval_ms: 5 * 60 * 1000,
        }
    }
}

/// Everything behind the engine lock.
struct EngineState {
    parts: BTreeMap<TopicPartition, PartState>,
    /// Sum of every partition's `size_bytes`.
    total_bytes: u64,
    /// `None` without a directory.
    wal: Option<Wal>,
    /// WAL bytes written since the last snapshot started.
    wal_bytes_since_snapshot: u64,
    next_id: u64,
    closed: bool,
    /// Wakes the snapshot thread; taken when the engine drops.
    trigger: Option<SyncSender<()>>,
}

impl EngineState {
    /// The state of an engine holding nothing.
    fn empty() -> EngineState {
        EngineState {
            parts: BTreeMap::new(),
            total_bytes: 0,
            wal: None,
            wal_bytes_since_snapshot: 0,
            next_id: 0,
            closed: false,
            trigger: None,
        }
    }

    fn part_or_create(
        &mut self,
        tp: TopicPartition,
        cfg: &LogConfig,
        log_start: Offset,
        log_end: Offset,
    ) -> &mut PartState {
        let next_id = &mut self.next_id;
        self.parts.entry(tp).or_insert_with(|| {
            *next_id += 1;
            PartState::new(*next_id, cfg.clone(), log_start, log_end)
        })
    }

    fn remove_part(&mut self, tp: &TopicPartition) {
        if let Some(p) = self.parts.remove(tp) {
            self.total_bytes -= p.size_bytes;
        }
    }

    /// The partition a handle refers to, if it still exists and the engine is open.
    fn part_mut(&mut self, tp: &TopicPartition, id: u64) -> StorageResult<&mut PartState> {
        if self.closed {
            return Err(StorageError::Closed(tp.to_string()));
        }
        self.parts
            .get_mut(tp)
            .filter(|p| p.id == id)
            .ok_or_else(|| StorageError::Closed(tp.to_string()))
    }
}

/// The engine's shared core; partition handles keep it alive.
pub(crate) struct Inner {
    opts: MemoryOptions,
    default_config: LogConfig,
    state: Mutex<EngineState>,
    /// One snapshot at a time.
    snapshot_lock: Mutex<()>,
    /// WAL records, counted under the state lock after the write; `flush` syncs the WAL
    /// file for them (group commit).
    commit: GroupCommit,
    n_snapshots: AtomicU64,
}

impl Inner {
    /// Logs `op` to the WAL if there is one; returns whether a snapshot is due.
    fn log(&self, st: &mut EngineState, op: &Op) -> StorageResult<()> {
        let Some(wal) = st.wal.as_mut() else {
            return Ok(());
        };
        let n = wal.write(op)?;
        self.commit.wrote();
        st.wal_bytes_since_snapshot += n;
        if st.wal_bytes_since_snapshot >= self.opts.snapshot_interval_bytes {
            if let Some(t) = &st.trigger {
                // Full means a wake-up is already pending.
                let _ = t.try_send(());
            }
        }
        Ok(())
    }

    /// Makes every WAL record written before the call durable (group commit).
    pub(crate) fn flush(&self) -> StorageResult<()> {
        self.commit.flush(|| {
            let (covered, file) = {
                let st = self.state.lock();
                let Some(wal) = &st.wal else {
                    return Ok(None);
                };
                // Records before this point are in this file or in an older WAL, which was
                // synced when the snapshot that rotated it started.
                (self.commit.written(), Arc::clone(&wal.file))
            };
            crate::stats::timed_fsync(&file)?;
            Ok(Some(covered))
        })
    }
}

/// The memory engine. Thread-safe. Dropping it stops the snapshot thread (waiting for a
/// snapshot in progress); it does not write a final snapshot, [`StorageEngine::close`] does.
pub struct MemoryEngine {
    inner: Arc<Inner>,
    /// Handles given out, one per partition.
    open_partitions: Mutex<HashMap<TopicPartition, Arc<MemoryPartition>>>,
    snapshot_thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MemoryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryEngine")
            .field("opts", &self.inner.opts)
            .finish()
    }
}

impl MemoryEngine {
    /// Opens the engine: with `opts.dir`, creates it if needed and recovers what it
    /// holds; without, starts empty and keeps nothing on disk. Partitions get
    /// `default_config` until they are opened with their own.
    pub fn open(opts: MemoryOptions, default_config: LogConfig) -> StorageResult<MemoryEngine> {
        let mut st = EngineState::empty();
        if let Some(dir) = &opts.dir {
            fs::create_dir_all(dir)?;
            let (recovered, generation) = recovery::recover(dir, &default_config)?;
            st = recovered;
            st.wal = Some(Wal::create(dir, generation)?);
            tracing::info!(
                dir = %dir.display(),
                partitions = st.parts.len(),
                bytes = st.total_bytes,
                "opened memory engine"
            );
            if st.total_bytes > opts.max_bytes {
                tracing::warn!(
                    bytes = st.total_bytes,
                    memory_max_bytes = opts.max_bytes,
                    "recovered more than storage.memory.max_bytes: appends fail until data is deleted"
                );
            }
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let with_thread = opts.dir.is_some();
        if with_thread {
            st.trigger = Some(tx);
        }
        let interval = Duration::from_millis(opts.snapshot_interval_ms.max(1));
        let inner = Arc::new(Inner {
            opts,
            default_config,
            state: Mutex::new(st),
            snapshot_lock: Mutex::new(()),
            commit: GroupCommit::default(),
            n_snapshots: AtomicU64::new(0),
        });
        let snapshot_thread = if with_thread {
            let weak = Arc::downgrade(&inner);
            Some(
                std::thread::Builder::new()
                    .name("rafka-memory-snapshot".to_string())
                    .spawn(move || snapshot::snapshot_loop(weak, rx, interval))?,
            )
        } else {
            None
        };
        Ok(MemoryEngine {
            inner,
            open_partitions: Mutex::new(HashMap::new()),
            snapshot_thread,
        })
    }

    /// The configuration given at open, for partitions without topic overrides.
    pub fn default_config(&self) -> &LogConfig {
        &self.inner.default_config
    }

    /// Writes a snapshot now (tests, tools); the background thread does so on its own.
    pub fn snapshot_now(&self) -> StorageResult<()> {
        self.inner.snapshot()
    }

    /// Snapshots written since open.
    pub fn n_snapshots(&self) -> u64 {
        self.inner.n_snapshots.load(Ordering::Relaxed)
    }

    /// WAL fsyncs `flush` has issued; concurrent flushes share one (group commit).
    pub fn n_flush_syncs(&self) -> u64 {
        self.inner.commit.n_syncs()
    }

    /// Bytes of batches held, all partitions together (what `storage.memory.max_bytes` bounds).
    pub fn memory_bytes(&self) -> u64 {
        self.inner.state.lock().total_bytes
    }

    /// Like [`StorageEngine::open`], returning the concrete type.
    pub fn open_partition(
        &self,
        tp: &TopicPartition,
        cfg: &LogConfig,
    ) -> StorageResult<Arc<MemoryPartition>> {
        let mut open = self.open_partitions.lock();
        if let Some(h) = open.get(tp) {
            if self.inner.with_part(tp, h.id, |_| Ok(())).is_ok() {
                return Ok(Arc::clone(h));
            }
        }
        let id = {
            let mut st = self.inner.state.lock();
            if st.closed {
                return Err(StorageError::Closed(tp.to_string()));
            }
            if !st.parts.contains_key(tp) {
                self.inner.log(&mut st, &Op::Create(tp.clone()))?;
            }
            let p = st.part_or_create(tp.clone(), cfg, Offset(0), Offset(0));
            p.cfg = cfg.clone();
            p.id
        };
        let h = Arc::new(MemoryPartition {
            tp: tp.clone(),
            id,
            inner: Arc::clone(&self.inner),
        });
        open.insert(tp.clone(), Arc::clone(&h));
        Ok(h)
    }
}

impl Drop for MemoryEngine {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread with `Disconnected`.
        self.inner.state.lock().trigger = None;
        if let Some(t) = self.snapshot_thread.take() {
            let _ = t.join();
        }
    }
}

impl StorageEngine for MemoryEngine {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn open(&self, tp: &TopicPartition, cfg: &LogConfig) -> StorageResult<Arc<dyn PartitionLog>> {
        Ok(self.open_partition(tp, cfg)?)
    }

    fn remove(&self, tp: &TopicPartition) -> StorageResult<()> {
        self.open_partitions.lock().remove(tp);
        {
            let mut st = self.inner.state.lock();
            if st.closed {
                return Err(StorageError::Closed(tp.to_string()));
            }
            if !st.parts.contains_key(tp) {
                return Ok(());
            }
            self.inner.log(&mut st, &Op::Remove(tp.clone()))?;
            st.remove_part(tp);
        }
        self.inner.flush()
    }

    fn partitions(&self) -> StorageResult<Vec<TopicPartition>> {
        Ok(self.inner.state.lock().parts.keys().cloned().collect())
    }

    fn close(&self) -> StorageResult<()> {
        {
            let mut st = self.inner.state.lock();
            if st.closed {
                return Ok(());
            }
            st.closed = true;
        }
        self.inner.flush()?;
        self.inner.snapshot()?;
        if let Some(dir) = &self.inner.opts.dir {
            tracing::info!(dir = %dir.display(), "closed memory engine with a final snapshot");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::path::Path;

    use super::snapshot::{snapshot_name, SNAPSHOT_EXT, SNAPSHOT_PREFIX, TMP_EXT};
    use super::wal::{parse_generation, wal_name, WAL_EXT, WAL_PREFIX};
    use super::*;
    use crate::conformance::{batch, read_all, tp};

    fn opts(dir: &Path) -> MemoryOptions {
        MemoryOptions {
            dir: Some(dir.to_path_buf()),
            snapshot_interval_bytes: 8 * 1024,
            ..MemoryOptions::default()
        }
    }

    fn make(dir: &Path) -> Arc<dyn StorageEngine> {
        Arc::new(MemoryEngine::open(opts(dir), LogConfig::default()).unwrap())
    }

    mod conformance {
        use super::make;
        crate::conformance_tests!(make);
    }

    /// The suite without a directory: every case that does not reopen.
    mod conformance_no_dir {
        use super::*;

        fn make(_dir: &Path) -> Arc<dyn StorageEngine> {
            Arc::new(MemoryEngine::open(MemoryOptions::default(), LogConfig::default()).unwrap())
        }

        macro_rules! cases {
            ($($case:ident),*) => {$(
                #[test]
                fn $case() {
                    crate::conformance::$case(&make);
                }
            )*};
        }
        cases!(
            appends_get_contiguous_offsets,
            read_from_middle_of_batch_returns_containing_batch,
            empty_log,
            read_respects_max_bytes_but_returns_one_whole_batch,
            delete_before_moves_log_start,
            truncate_after_removes_the_suffix,
            timestamp_lookup,
            readers_run_concurrently_with_appends,
            corrupt_batches_never_reach_the_engine,
            batch_too_large_is_refused,
            log_append_time_is_stamped,
            engine_lists_opens_and_removes_partitions,
            retention_keeps_offsets_consistent,
            concurrent_flushes_all_succeed
        );
    }

    /// Opens the engine in `dir` and partition `t-0`.
    fn check(_dir: &Path, o: MemoryOptions) -> (MemoryEngine, Arc<MemoryPartition>) {
        let engine = MemoryEngine::open(o, LogConfig::default()).unwrap();
        let log = engine
            .open_partition(&tp("t", 0), &LogConfig::default())
            .unwrap();
        (engine, log)
    }

    fn newest(dir: &Path, prefix: &str, ext: &str) -> Option<PathBuf> {
        let mut v: Vec<u64> = fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                parse_generation(&e.unwrap().file_name().to_string_lossy(), prefix, ext)
            })
            .collect();
        v.sort();
        let name = if prefix == WAL_PREFIX {
            wal_name(v.pop()?)
        } else {
            snapshot_name(v.pop()?)
        };
        Some(dir.join(name))
    }

    #[test]
    fn without_a_directory_nothing_touches_disk() {
        let dir = tempfile::tempdir().unwrap();
        let cwd_files = fs::read_dir(".").unwrap().count();
        let (engine, log) = check(dir.path(), MemoryOptions::default());
        log.append(batch(2, 0, 10)).unwrap();
        log.flush().unwrap();
        engine.close().unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(fs::read_dir(".").unwrap().count(), cwd_files);
    }

    #[test]
    fn torn_last_wal_record_recovers_the_last_complete_state() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (engine, log) = check(
                dir.path(),
                MemoryOptions {
                    snapshot_interval_bytes: u64::MAX,
                    ..opts(dir.path())
                },
            );
            for i in 0..10 {
                log.append(batch(2, i, 100)).unwrap();
            }
            log.flush().unwrap();
            assert_eq!(engine.n_snapshots(), 0);
        }
        let wal = newest(dir.path(), WAL_PREFIX, WAL_EXT).unwrap();
        let len = fs::metadata(&wal).unwrap().len();
        // Tear the last record in half.
        OpenOptions::new()
            .write(true)
            .open(&wal)
            .unwrap()
            .set_len(len - 150)
            .unwrap();
        let (_engine, log) = check(dir.path(), opts(dir.path()));
        assert_eq!(log.log_end_offset(), Offset(18));
        assert_eq!(read_all(log.as_ref(), Offset(0)).len(), 9);
        assert!(
            fs::metadata(&wal).unwrap().len() < len - 150,
            "the torn tail is cut"
        );
        assert_eq!(log.append(batch(1, 0, 1)).unwrap().base_offset, Offset(18));
    }

    #[test]
    fn snapshot_interrupted_half_way_recovers_the_last_complete_state() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (engine, log) = check(
                dir.path(),
                MemoryOptions {
                    snapshot_interval_bytes: u64::MAX,
                    ..opts(dir.path())
                },
            );
            for i in 0..6 {
                log.append(batch(1, i, 100)).unwrap();
            }
            engine.snapshot_now().unwrap();
            for i in 0..6 {
                log.append(batch(1, i, 100)).unwrap();
            }
            log.delete_before(Offset(3)).unwrap();
        }
        // A second snapshot died half-way: its temp file is cut and has no end record.
        let done = newest(dir.path(), SNAPSHOT_PREFIX, SNAPSHOT_EXT).unwrap();
        let bytes = fs::read(&done).unwrap();
        let tmp = dir.path().join(format!("{}{TMP_EXT}", snapshot_name(99)));
        fs::write(&tmp, &bytes[..bytes.len() / 2]).unwrap();
        let (_engine, log) = check(dir.path(), opts(dir.path()));
        assert!(!tmp.exists(), "the leftover temp file is removed");
        assert_eq!(log.log_start_offset(), Offset(3));
        assert_eq!(log.log_end_offset(), Offset(12));
        assert_eq!(read_all(log.as_ref(), Offset(3)).len(), 9);
    }

    #[test]
    fn a_snapshot_renamed_but_old_wal_not_yet_deleted_is_still_right() {
        let dir = tempfile::tempdir().unwrap();
        let keep = dir.path().join("old-wal");
        {
            let (engine, log) = check(
                dir.path(),
                MemoryOptions {
                    snapshot_interval_bytes: u64::MAX,
                    ..opts(dir.path())
                },
            );
            for i in 0..4 {
                log.append(batch(1, i, 10)).unwrap();
            }
            log.flush().unwrap();
            let wal = newest(dir.path(), WAL_PREFIX, WAL_EXT).unwrap();
            fs::copy(&wal, &keep).unwrap();
            engine.snapshot_now().unwrap();
            log.append(batch(1, 9, 10)).unwrap();
            log.flush().unwrap();
            // Put the replaced WAL back, as if the crash came before its deletion.
            fs::rename(&keep, wal).unwrap();
        }
        let (_engine, log) = check(dir.path(), opts(dir.path()));
        assert_eq!(log.log_end_offset(), Offset(5));
        assert_eq!(read_all(log.as_ref(), Offset(0)).len(), 5);
    }

    #[test]
    fn snapshots_run_in_the_background_and_bound_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, log) = check(dir.path(), opts(dir.path()));
        for i in 0..200 {
            log.append(batch(1, i, 500)).unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while engine.n_snapshots() == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(engine.n_snapshots() > 0);
        let n_wals = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(WAL_PREFIX)
            })
            .count();
        assert!(n_wals <= 2, "old WALs are deleted: {n_wals}");
        drop(log);
        drop(engine);
        let (_engine, log) = check(dir.path(), opts(dir.path()));
        assert_eq!(log.log_end_offset(), Offset(200));
    }

    #[test]
    fn full_budget_refuses_appends_and_keeps_serving_reads() {
        let dir = tempfile::tempdir().unwrap();
        let one = batch(1, 0, 1000).size_bytes() as u64;
        let (engine, log) = check(
            dir.path(),
            MemoryOptions {
                max_bytes: 3 * one,
                ..opts(dir.path())
            },
        );
        for i in 0..3 {
            log.append(batch(1, i, 1000)).unwrap();
        }
        let err = log.append(batch(1, 3, 1000)).unwrap_err();
        match &err {
            StorageError::Full(msg) => assert!(msg.contains("storage.memory.max_bytes"), "{msg}"),
            other => panic!("expected Full, got {other:?}"),
        }
        assert_eq!(log.log_end_offset(), Offset(3));
        assert_eq!(read_all(log.as_ref(), Offset(0)).len(), 3);
        assert_eq!(engine.memory_bytes(), 3 * one);
        // Deleting records frees room.
        log.delete_before(Offset(1)).unwrap();
        log.append(batch(1, 3, 1000)).unwrap();
        assert_eq!(engine.memory_bytes(), 3 * one);
    }

    #[test]
    fn deletes_truncates_and_removes_survive_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (engine, log) = check(dir.path(), opts(dir.path()));
            let other = engine
                .open_partition(&tp("gone", 0), &LogConfig::default())
                .unwrap();
            other.append(batch(1, 0, 1)).unwrap();
            let _empty = engine
                .open_partition(&tp("empty", 2), &LogConfig::default())
                .unwrap();
            for i in 0..10 {
                log.append(batch(1, i, 10)).unwrap();
            }
            log.delete_before(Offset(4)).unwrap();
            log.truncate_after(Offset(8)).unwrap();
            engine.remove(&tp("gone", 0)).unwrap();
            // No flush and no close: delete/truncate/remove are durable on return.
        }
        let (engine, log) = check(dir.path(), opts(dir.path()));
        assert_eq!(
            engine.partitions().unwrap(),
            vec![tp("empty", 2), tp("t", 0)]
        );
        assert_eq!(
            (log.log_start_offset(), log.log_end_offset()),
            (Offset(4), Offset(8))
        );
    }

    #[test]
    fn flush_is_group_committed() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, log) = check(dir.path(), opts(dir.path()));
        log.flush().unwrap();
        let base = engine.n_flush_syncs();
        log.flush().unwrap();
        assert_eq!(engine.n_flush_syncs(), base, "nothing to sync");
        log.append(batch(1, 0, 1)).unwrap();
        log.append(batch(1, 0, 1)).unwrap();
        log.flush().unwrap();
        log.flush().unwrap();
        assert!(
            engine.n_flush_syncs() <= base + 1,
            "one sync covers both appends"
        );
    }
}
