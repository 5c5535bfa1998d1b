//! The `rocksdb` engine (cargo feature `rocksdb`): partitions stored in one RocksDB
//! database.
//!
//! Column families:
//! - `batches`: key = partition id (u64 BE) ++ base offset (u64 BE), value = the batch bytes
//!   as stored. Keys of one partition are adjacent and sorted by offset, so a read is one
//!   `seek_for_prev` to the batch holding the offset plus a forward scan.
//! - `index`: the same keys, value = next offset, max timestamp (i64 BE each): what
//!   offsets, sizes, retention and timestamp lookups need, loaded at open without reading
//!   batch bytes. A batch and its index entry are written in one `WriteBatch`.
//! - `meta`: key `p/<topic>-<partition>`, value = partition id (u64 BE) ++ log start
//!   offset (i64 BE); and under the `a/` and `s/` prefixes each partition's aborted
//!   transactions and producer-state snapshot (`txn.rs`).
//!
//! Durability: appends are written with RocksDB's WAL unsynced (in the OS page cache on
//! return, so they survive a process crash); `flush` syncs the WAL (`flush_wal(true)`) with
//! group commit. `delete_before` (range deletes in both data families plus the new log
//! start), `truncate_after`, retention and `remove` are synced writes. Recovery is
//! RocksDB's own (point-in-time WAL recovery: a torn tail is dropped).
//!
//! Concurrency: one `parking_lot::Mutex` per partition serialises its writes and guards
//! its in-memory index; a read creates its iterator under it (pinning a consistent view)
//! and scans outside it. The database sits behind an `RwLock<Option<DB>>` so `close`
//! can release it (and its lock file) even while partition handles are still alive.
//!
//! Files: this one is the engine (open, partitions, close, the shared `Inner` with the
//! group-commit `flush`); `partition.rs` one partition; `recovery.rs` what happens at open
//! after RocksDB's own recovery; `keys.rs` the column families and key/value encodings.

mod keys;
mod partition;
mod recovery;
mod txn;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::group_commit::GroupCommit;
use parking_lot::{Mutex, RwLock};
use rafka_core::{
    LogConfig, Offset, PartitionLog, StorageEngine, StorageError, StorageResult, TopicPartition,
};
use rocksdb::{
    ColumnFamilyDescriptor, DBCompressionType, DBRecoveryMode, FlushOptions, Options, WriteBatch,
    WriteOptions, DB,
};

use keys::{key, key_end, meta_key, meta_value, CF_BATCHES, CF_INDEX, CF_META};
use partition::PartState;
pub use partition::RocksPartition;

fn db_error(e: rocksdb::Error) -> StorageError {
    StorageError::Io(io::Error::other(format!("rocksdb: {e}")))
}

fn corrupt(msg: String) -> StorageError {
    StorageError::Io(io::Error::new(io::ErrorKind::InvalidData, msg))
}

/// Shared by the engine and its partitions.
struct Inner {
    root: PathBuf,
    /// `None` once closed.
    db: RwLock<Option<DB>>,
    /// Writes, counted after each returns; `flush` syncs RocksDB's WAL for them (group
    /// commit).
    commit: GroupCommit,
}

impl Inner {
    fn write(&self, db: &DB, wb: WriteBatch, sync: bool) -> StorageResult<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        db.write_opt(wb, &wo).map_err(db_error)?;
        let n = self.commit.wrote();
        if sync {
            // A synced write makes every write before it durable too.
            self.commit.synced_up_to(n);
        }
        Ok(())
    }

    fn flush(&self) -> StorageResult<()> {
        self.commit.flush(|| {
            // Writes counted so far have returned: they are in RocksDB's WAL.
            let covered = self.commit.written();
            let guard = self.db.read();
            let Some(db) = guard.as_ref() else {
                return Err(StorageError::Closed(self.root.display().to_string()));
            };
            crate::stats::timed_sync(|| db.flush_wal(true)).map_err(db_error)?;
            Ok(Some(covered))
        })
    }
}

fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name)
        .expect("column families are created at open")
}

/// Writes every column family's memtable to SST files and waits for it.
fn flush_all_memtables(db: &DB) -> StorageResult<()> {
    let opts = FlushOptions::default();
    for name in [CF_BATCHES, CF_INDEX, CF_META] {
        db.flush_cf_opt(cf(db, name), &opts).map_err(db_error)?;
    }
    Ok(())
}

/// The RocksDB storage engine. Thread-safe. Dropping it without [`StorageEngine::close`]
/// is a crash as far as the data is concerned: unsynced writes may be lost, never torn.
pub struct RocksEngine {
    inner: Arc<Inner>,
    default_config: LogConfig,
    /// Every partition, open from the start (recovery loads them all).
    open_partitions: Mutex<HashMap<TopicPartition, Arc<RocksPartition>>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for RocksEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksEngine")
            .field("root", &self.inner.root)
            .finish()
    }
}

impl RocksEngine {
    /// Opens (creating if needed) the database in `root` and loads every partition's
    /// index. Partitions get `default_config` until opened with their own.
    pub fn open(root: PathBuf, default_config: LogConfig) -> StorageResult<RocksEngine> {
        std::fs::create_dir_all(&root)?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
        opts.set_compression_type(DBCompressionType::None);
        // Bound what RocksDB keeps open and buffers.
        opts.set_max_open_files(256);
        opts.set_keep_log_file_num(4);
        let cf_opts = || {
            let mut o = Options::default();
            o.set_compression_type(DBCompressionType::None);
            o
        };
        let cfs = [CF_BATCHES, CF_INDEX, CF_META]
            .into_iter()
            .map(|name| ColumnFamilyDescriptor::new(name, cf_opts()));
        let db = DB::open_cf_descriptors(&opts, &root, cfs).map_err(db_error)?;

        let inner = Arc::new(Inner {
            root: root.clone(),
            db: RwLock::new(None),
            commit: GroupCommit::default(),
        });
        let mut parts = HashMap::new();
        let mut max_id = 0;
        for (tp, id, mut st) in recovery::recover(&db, &root)? {
            st.cfg = default_config.clone();
            max_id = max_id.max(id);
            parts.insert(
                tp.clone(),
                Arc::new(RocksPartition {
                    tp,
                    id,
                    inner: Arc::clone(&inner),
                    state: Mutex::new(st),
                }),
            );
        }
        tracing::info!(root = %root.display(), partitions = parts.len(), "opened rocksdb engine");
        *inner.db.write() = Some(db);
        Ok(RocksEngine {
            inner,
            default_config,
            open_partitions: Mutex::new(parts),
            next_id: AtomicU64::new(max_id + 1),
        })
    }
    /// The configuration given at open, for partitions without topic overrides.
    pub fn default_config(&self) -> &LogConfig {
        &self.default_config
    }

    /// The database directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// WAL syncs `flush` has issued; concurrent flushes share one (group commit).
    pub fn n_flush_syncs(&self) -> u64 {
        self.inner.commit.n_syncs()
    }

    /// Flushes every memtable to SST files (tests and tools: RocksDB does this itself).
    pub fn flush_memtables(&self) -> StorageResult<()> {
        let guard = self.inner.db.read();
        let db = guard
            .as_ref()
            .ok_or_else(|| StorageError::Closed(self.inner.root.display().to_string()))?;
        flush_all_memtables(db)
    }

    /// Like [`StorageEngine::open`], returning the concrete type.
    pub fn open_partition(
        &self,
        tp: &TopicPartition,
        cfg: &LogConfig,
    ) -> StorageResult<Arc<RocksPartition>> {
        let mut parts = self.open_partitions.lock();
        let guard = self.inner.db.read();
        let db = guard
            .as_ref()
            .ok_or_else(|| StorageError::Closed(tp.to_string()))?;
        if let Some(p) = parts.get(tp) {
            p.set_config(cfg.clone());
            return Ok(Arc::clone(p));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut wb = WriteBatch::default();
        wb.put_cf(cf(db, CF_META), meta_key(tp), meta_value(id, Offset(0)));
        self.inner.write(db, wb, false)?;
        let p = Arc::new(RocksPartition {
            tp: tp.clone(),
            id,
            inner: Arc::clone(&self.inner),
            state: Mutex::new(PartState {
                cfg: cfg.clone(),
                index: VecDeque::new(),
                log_start: Offset(0),
                log_end: Offset(0),
                size_bytes: 0,
                closed: false,
                txn: Default::default(),
            }),
        });
        parts.insert(tp.clone(), Arc::clone(&p));
        Ok(p)
    }
}

impl StorageEngine for RocksEngine {
    fn name(&self) -> &'static str {
        "rocksdb"
    }

    fn open(&self, tp: &TopicPartition, cfg: &LogConfig) -> StorageResult<Arc<dyn PartitionLog>> {
        Ok(self.open_partition(tp, cfg)?)
    }

    fn remove(&self, tp: &TopicPartition) -> StorageResult<()> {
        let mut parts = self.open_partitions.lock();
        let Some(p) = parts.remove(tp) else {
            return Ok(());
        };
        p.state.lock().closed = true;
        let guard = self.inner.db.read();
        let db = guard
            .as_ref()
            .ok_or_else(|| StorageError::Closed(tp.to_string()))?;
        let mut wb = WriteBatch::default();
        wb.delete_range_cf(cf(db, CF_BATCHES), key(p.id, Offset(0)), key_end(p.id));
        wb.delete_range_cf(cf(db, CF_INDEX), key(p.id, Offset(0)), key_end(p.id));
        wb.delete_cf(cf(db, CF_META), meta_key(tp));
        txn::TxnState::delete_all(db, &mut wb, p.id);
        self.inner.write(db, wb, true)
    }

    fn partitions(&self) -> StorageResult<Vec<TopicPartition>> {
        let mut out: Vec<TopicPartition> = self.open_partitions.lock().keys().cloned().collect();
        out.sort();
        Ok(out)
    }

    fn close(&self) -> StorageResult<()> {
        let parts = self.open_partitions.lock();
        for p in parts.values() {
            p.state.lock().closed = true;
        }
        let mut guard = self.inner.db.write();
        let Some(db) = guard.take() else {
            return Ok(());
        };
        crate::stats::timed_sync(|| db.flush_wal(true)).map_err(db_error)?;
        // Memtables to SST files, so the next open replays no WAL.
        flush_all_memtables(&db)?;
        drop(db);
        tracing::info!(root = %self.inner.root.display(), "closed rocksdb engine cleanly");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::{batch, read_all, tp};

    fn make(dir: &Path) -> Arc<dyn StorageEngine> {
        Arc::new(RocksEngine::open(dir.to_path_buf(), LogConfig::default()).unwrap())
    }

    mod conformance {
        use super::make;
        crate::conformance_tests!(make);
    }

    fn check(dir: &Path) -> (RocksEngine, Arc<RocksPartition>) {
        let engine = RocksEngine::open(dir.to_path_buf(), LogConfig::default()).unwrap();
        let log = engine
            .open_partition(&tp("t", 0), &LogConfig::default())
            .unwrap();
        (engine, log)
    }

    #[test]
    fn a_flush_counts_in_the_fsync_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let (_engine, log) = check(dir.path());
        let before = crate::stats::fsync_count();
        log.append(batch(1, 0, 10)).unwrap();
        log.flush().unwrap();
        // Process-wide: other tests may add syncs too, never take any away.
        assert!(crate::stats::fsync_count() > before);
    }

    #[test]
    fn unsynced_appends_survive_a_drop_and_deletes_are_durable() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_engine, log) = check(dir.path());
            for i in 0..20 {
                log.append(batch(2, i, 100)).unwrap();
            }
            log.delete_before(Offset(7)).unwrap();
            log.truncate_after(Offset(30)).unwrap();
            // Dropped without close: a process crash for RocksDB's WAL.
        }
        let (engine, log) = check(dir.path());
        assert_eq!(engine.partitions().unwrap(), vec![tp("t", 0)]);
        assert_eq!(
            (log.log_start_offset(), log.log_end_offset()),
            (Offset(7), Offset(30))
        );
        assert_eq!(read_all(log.as_ref(), Offset(7)).len(), 12);
        assert_eq!(log.append(batch(1, 0, 1)).unwrap().base_offset, Offset(30));
    }

    #[test]
    fn flush_is_group_committed() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, log) = check(dir.path());
        log.flush().unwrap();
        let base = engine.n_flush_syncs();
        log.flush().unwrap();
        assert_eq!(engine.n_flush_syncs(), base, "nothing to sync");
        log.append(batch(1, 0, 1)).unwrap();
        log.append(batch(1, 0, 1)).unwrap();
        log.flush().unwrap();
        log.flush().unwrap();
        assert_eq!(
            engine.n_flush_syncs(),
            base + 1,
            "one sync covers both appends"
        );
    }

    #[test]
    fn close_releases_the_database_for_a_reopen_while_handles_live() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, log) = check(dir.path());
        log.append(batch(1, 0, 1)).unwrap();
        engine.close().unwrap();
        assert!(matches!(
            log.read(Offset(0), 1),
            Err(StorageError::Closed(_))
        ));
        let (_engine2, log2) = check(dir.path());
        assert_eq!(log2.log_end_offset(), Offset(1));
    }
}
