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
//!   offset (i64 BE).
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

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::group_commit::GroupCommit;
use bytes::BytesMut;
use parking_lot::{Mutex, RwLock};
use rafka_core::limits::{BATCH_BYTES_MAX, FETCH_RESPONSE_BYTES_MAX};
use rafka_core::{
    AppendInfo, LogConfig, Offset, PartitionLog, ReadResult, StorageEngine, StorageError,
    StorageResult, Timestamp, TopicPartition, ValidatedBatch,
};
use rocksdb::{
    ColumnFamilyDescriptor, DBCompressionType, DBRecoveryMode, FlushOptions, Options, WriteBatch,
    WriteOptions, DB,
};

const CF_BATCHES: &str = "batches";
const CF_INDEX: &str = "index";
const CF_META: &str = "meta";
const META_PARTITION_PREFIX: &[u8] = b"p/";

fn db_error(e: rocksdb::Error) -> StorageError {
    StorageError::Io(io::Error::other(format!("rocksdb: {e}")))
}

fn corrupt(msg: String) -> StorageError {
    StorageError::Io(io::Error::new(io::ErrorKind::InvalidData, msg))
}

/// The key of `offset` in partition `id`; offsets are never negative, so u64 order is
/// offset order.
fn key(id: u64, offset: Offset) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&id.to_be_bytes());
    k[8..].copy_from_slice(&(offset.0.max(0) as u64).to_be_bytes());
    k
}

/// One past every key of partition `id`.
fn key_end(id: u64) -> [u8; 16] {
    key(id + 1, Offset(0))
}

fn meta_key(tp: &TopicPartition) -> Vec<u8> {
    let mut k = META_PARTITION_PREFIX.to_vec();
    k.extend_from_slice(tp.dir_name().as_bytes());
    k
}

fn meta_value(id: u64, log_start: Offset) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&id.to_be_bytes());
    v[8..].copy_from_slice(&log_start.0.to_be_bytes());
    v
}

fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// What the index family holds for one batch.
#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    base: Offset,
    next: Offset,
    max_timestamp: Timestamp,
    size: u32,
}

impl IndexEntry {
    fn value(&self) -> [u8; 20] {
        let mut v = [0u8; 20];
        v[..8].copy_from_slice(&self.next.0.to_be_bytes());
        v[8..16].copy_from_slice(&self.max_timestamp.0.to_be_bytes());
        v[16..].copy_from_slice(&self.size.to_be_bytes());
        v
    }

    fn parse(k: &[u8], v: &[u8]) -> Option<IndexEntry> {
        Some(IndexEntry {
            base: Offset(be_u64(k, 8)? as i64),
            next: Offset(be_u64(v, 0)? as i64),
            max_timestamp: Timestamp(be_u64(v, 8)? as i64),
            size: u32::from_be_bytes(v.get(16..20)?.try_into().ok()?),
        })
    }
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

/// One partition's in-memory view.
struct PartState {
    cfg: LogConfig,
    /// Invariant: contiguous, sorted by base offset; mirrors the `index` family.
    index: VecDeque<IndexEntry>,
    /// Invariant: first batch's base <= log_start <= log_end.
    log_start: Offset,
    log_end: Offset,
    size_bytes: u64,
    closed: bool,
}

impl PartState {
    fn out_of_range(&self, offset: Offset) -> StorageError {
        StorageError::OffsetOutOfRange {
            offset,
            log_start: self.log_start,
            log_end: self.log_end,
        }
    }
}

/// One partition of the [`RocksEngine`]. Thread-safe; see the module docs.
pub struct RocksPartition {
    tp: TopicPartition,
    id: u64,
    inner: Arc<Inner>,
    state: Mutex<PartState>,
}

impl std::fmt::Debug for RocksPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksPartition")
            .field("tp", &self.tp)
            .field("id", &self.id)
            .finish()
    }
}

impl RocksPartition {
    fn closed(&self) -> StorageError {
        StorageError::Closed(self.tp.to_string())
    }

    /// Runs `f` with the database and the partition state locked, unless closed.
    fn with<T>(&self, f: impl FnOnce(&DB, &mut PartState) -> StorageResult<T>) -> StorageResult<T> {
        let guard = self.inner.db.read();
        let db = guard.as_ref().ok_or_else(|| self.closed())?;
        let mut st = self.state.lock();
        if st.closed {
            return Err(self.closed());
        }
        f(db, &mut st)
    }

    /// Moves the log start to `offset`, range-deleting the batches wholly below it, in
    /// one synced write.
    fn move_log_start(&self, db: &DB, st: &mut PartState, offset: Offset) -> StorageResult<()> {
        let n = st.index.iter().take_while(|e| e.next <= offset).count();
        let mut wb = WriteBatch::default();
        if n > 0 {
            let end = st
                .index
                .get(n)
                .map_or(key_end(self.id), |e| key(self.id, e.base));
            wb.delete_range_cf(cf(db, CF_BATCHES), key(self.id, Offset(0)), end);
            wb.delete_range_cf(cf(db, CF_INDEX), key(self.id, Offset(0)), end);
        }
        wb.put_cf(
            cf(db, CF_META),
            meta_key(&self.tp),
            meta_value(self.id, offset),
        );
        self.inner.write(db, wb, true)?;
        for e in st.index.drain(..n) {
            st.size_bytes -= e.size as u64;
        }
        st.log_start = offset;
        Ok(())
    }
}

impl PartitionLog for RocksPartition {
    fn append(&self, mut batch: ValidatedBatch) -> StorageResult<AppendInfo> {
        let size = batch.size_bytes();
        if size > BATCH_BYTES_MAX {
            return Err(StorageError::BatchTooLarge {
                size,
                max: BATCH_BYTES_MAX,
            });
        }
        let now = Timestamp::now();
        self.with(|db, st| {
            let max = st.cfg.max_message_bytes.min(BATCH_BYTES_MAX);
            if size > max {
                return Err(StorageError::BatchTooLarge { size, max });
            }
            let base_offset = st.log_end;
            batch.set_base_offset(base_offset);
            let log_append_time = if st.cfg.log_append_time {
                batch.set_log_append_time(now);
                now
            } else {
                Timestamp(-1)
            };
            let entry = IndexEntry {
                base: base_offset,
                next: batch.next_offset(),
                max_timestamp: batch.max_timestamp(),
                size: size as u32,
            };
            let k = key(self.id, base_offset);
            let mut wb = WriteBatch::default();
            wb.put_cf(cf(db, CF_BATCHES), k, batch.as_bytes());
            wb.put_cf(cf(db, CF_INDEX), k, entry.value());
            self.inner.write(db, wb, false)?;
            st.index.push_back(entry);
            st.log_end = entry.next;
            st.size_bytes += size as u64;
            Ok(AppendInfo {
                base_offset,
                last_offset: batch.last_offset(),
                log_append_time,
                log_start_offset: st.log_start,
            })
        })
    }

    fn read(&self, from: Offset, max_bytes: usize) -> StorageResult<ReadResult> {
        let max_bytes = max_bytes.min(FETCH_RESPONSE_BYTES_MAX);
        let guard = self.inner.db.read();
        let db = guard.as_ref().ok_or_else(|| self.closed())?;
        let (mut it, log_start, log_end) = {
            let st = self.state.lock();
            if st.closed {
                return Err(self.closed());
            }
            if from < st.log_start || from > st.log_end {
                return Err(st.out_of_range(from));
            }
            if from == st.log_end {
                return Ok(ReadResult {
                    records: bytes::Bytes::new(),
                    log_start_offset: st.log_start,
                    log_end_offset: st.log_end,
                });
            }
            // The iterator pins the database as of now: appends and truncations after
            // the lock is released are invisible to it.
            let mut it = db.raw_iterator_cf(cf(db, CF_BATCHES));
            it.seek_for_prev(key(self.id, from));
            (it, st.log_start, st.log_end)
        };
        let mut out = BytesMut::new();
        let prefix = self.id.to_be_bytes();
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            if k[..8] != prefix {
                break;
            }
            if !out.is_empty() && out.len() + v.len() > max_bytes {
                break;
            }
            out.extend_from_slice(v);
            it.next();
        }
        it.status().map_err(db_error)?;
        if out.is_empty() {
            return Err(corrupt(format!(
                "{}: no batch holds offset {from} below the log end {log_end}",
                self.tp
            )));
        }
        Ok(ReadResult {
            records: out.freeze(),
            log_start_offset: log_start,
            log_end_offset: log_end,
        })
    }

    fn log_start_offset(&self) -> Offset {
        self.state.lock().log_start
    }

    fn log_end_offset(&self) -> Offset {
        self.state.lock().log_end
    }

    fn offset_for_timestamp(&self, ts: Timestamp) -> StorageResult<Option<(Offset, Timestamp)>> {
        self.with(|_, st| {
            Ok(st
                .index
                .iter()
                .find(|e| e.next > st.log_start && e.max_timestamp >= ts)
                .map(|e| (e.base.max(st.log_start), e.max_timestamp)))
        })
    }

    fn max_timestamp(&self) -> StorageResult<Option<(Offset, Timestamp)>> {
        self.with(|_, st| {
            let mut best: Option<&IndexEntry> = None;
            for e in &st.index {
                if best.is_none_or(|b| e.max_timestamp > b.max_timestamp) {
                    best = Some(e);
                }
            }
            Ok(best.map(|e| (Offset(e.next.0 - 1), e.max_timestamp)))
        })
    }

    fn delete_before(&self, offset: Offset) -> StorageResult<()> {
        self.with(|db, st| {
            if offset > st.log_end {
                return Err(st.out_of_range(offset));
            }
            if offset <= st.log_start {
                return Ok(());
            }
            self.move_log_start(db, st, offset)
        })
    }

    fn truncate_after(&self, offset: Offset) -> StorageResult<()> {
        self.with(|db, st| {
            if offset >= st.log_end {
                return Ok(());
            }
            let keep = st.index.partition_point(|e| e.next <= offset);
            let Some(first_removed) = st.index.get(keep).copied() else {
                return Ok(());
            };
            let log_end = first_removed.base;
            let log_start = st.log_start.min(log_end);
            let from = key(self.id, first_removed.base);
            let mut wb = WriteBatch::default();
            wb.delete_range_cf(cf(db, CF_BATCHES), from, key_end(self.id));
            wb.delete_range_cf(cf(db, CF_INDEX), from, key_end(self.id));
            wb.put_cf(
                cf(db, CF_META),
                meta_key(&self.tp),
                meta_value(self.id, log_start),
            );
            self.inner.write(db, wb, true)?;
            for e in st.index.drain(keep..) {
                st.size_bytes -= e.size as u64;
            }
            st.log_end = log_end;
            st.log_start = log_start;
            Ok(())
        })
    }

    fn flush(&self) -> StorageResult<()> {
        if self.state.lock().closed {
            return Err(self.closed());
        }
        self.inner.flush()
    }

    fn apply_retention(&self, now: Timestamp) -> StorageResult<u64> {
        self.with(|db, st| {
            // The newest batch always stays, as the log engine keeps its active segment.
            let n_old = st.index.len().saturating_sub(1);
            let mut n = 0;
            if st.cfg.retention_ms >= 0 {
                n = st
                    .index
                    .iter()
                    .take(n_old)
                    .take_while(|e| now.0.saturating_sub(e.max_timestamp.0) > st.cfg.retention_ms)
                    .count();
            }
            if st.cfg.retention_bytes >= 0 {
                let mut total = st.size_bytes;
                let mut by_size = 0;
                for e in st.index.iter().take(n_old) {
                    if total - (e.size as u64) < st.cfg.retention_bytes as u64 {
                        break;
                    }
                    total -= e.size as u64;
                    by_size += 1;
                }
                n = n.max(by_size);
            }
            let Some(start) = st.index.get(n).map(|e| e.base.max(st.log_start)) else {
                return Ok(0);
            };
            if n == 0 || start <= st.log_start {
                return Ok(0);
            }
            let removed = (start.0 - st.log_start.0) as u64;
            self.move_log_start(db, st, start)?;
            Ok(removed)
        })
    }

    fn size_bytes(&self) -> u64 {
        self.state.lock().size_bytes
    }

    fn set_config(&self, cfg: LogConfig) {
        self.state.lock().cfg = cfg;
    }
}

/// The RocksDB storage engine. Thread-safe. Dropping it without [`StorageEngine::close`]
/// is a crash as far as the data is concerned: unsynced writes may be lost, never torn.
pub struct RocksEngine {
    inner: Arc<Inner>,
    default_config: LogConfig,
    parts: Mutex<HashMap<TopicPartition, Arc<RocksPartition>>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for RocksEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksEngine")
            .field("root", &self.inner.root)
            .finish()
    }
}

/// Loads a partition's index and checks it is contiguous; a gap (which a well-formed
/// history never leaves) cuts the partition there.
fn load_partition(
    db: &DB,
    tp: &TopicPartition,
    id: u64,
    log_start: Offset,
) -> StorageResult<PartState> {
    let mut index = VecDeque::new();
    let mut size_bytes = 0u64;
    let mut it = db.raw_iterator_cf(cf(db, CF_INDEX));
    it.seek(key(id, Offset(0)));
    let prefix = id.to_be_bytes();
    let mut cut = None;
    while it.valid() {
        let (Some(k), Some(v)) = (it.key(), it.value()) else {
            break;
        };
        if k[..8] != prefix {
            break;
        }
        let e = IndexEntry::parse(k, v).ok_or_else(|| corrupt(format!("{tp}: bad index entry")))?;
        if let Some(prev) = index.back() {
            let prev: &IndexEntry = prev;
            if prev.next != e.base {
                tracing::warn!(partition = %tp, expected = %prev.next, found = %e.base, "gap in the stored batches; cutting the log there");
                cut = Some(e.base);
                break;
            }
        }
        size_bytes += e.size as u64;
        index.push_back(e);
        it.next();
    }
    it.status().map_err(db_error)?;
    if let Some(from) = cut {
        let mut wb = WriteBatch::default();
        wb.delete_range_cf(cf(db, CF_BATCHES), key(id, from), key_end(id));
        wb.delete_range_cf(cf(db, CF_INDEX), key(id, from), key_end(id));
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        db.write_opt(wb, &wo).map_err(db_error)?;
    }
    let log_end = index.back().map_or(log_start, |e| e.next).max(log_start);
    Ok(PartState {
        cfg: LogConfig::default(),
        index,
        log_start,
        log_end,
        size_bytes,
        closed: false,
    })
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
        {
            let mut it = db.raw_iterator_cf(cf(&db, CF_META));
            it.seek(META_PARTITION_PREFIX);
            let mut found = Vec::new();
            while it.valid() {
                let (Some(k), Some(v)) = (it.key(), it.value()) else {
                    break;
                };
                let Some(name) = k.strip_prefix(META_PARTITION_PREFIX) else {
                    break;
                };
                let tp = std::str::from_utf8(name)
                    .ok()
                    .and_then(TopicPartition::from_dir_name);
                match (tp, be_u64(v, 0), be_u64(v, 8)) {
                    (Some(tp), Some(id), Some(start)) => found.push((tp, id, Offset(start as i64))),
                    _ => {
                        tracing::warn!(root = %root.display(), "skipping an unreadable partition entry")
                    }
                }
                it.next();
            }
            it.status().map_err(db_error)?;
            for (tp, id, log_start) in found {
                let mut st = load_partition(&db, &tp, id, log_start)?;
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
        }
        tracing::info!(root = %root.display(), partitions = parts.len(), "opened rocksdb engine");
        *inner.db.write() = Some(db);
        Ok(RocksEngine {
            inner,
            default_config,
            parts: Mutex::new(parts),
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
        let mut parts = self.parts.lock();
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
        let mut parts = self.parts.lock();
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
        self.inner.write(db, wb, true)
    }

    fn partitions(&self) -> StorageResult<Vec<TopicPartition>> {
        let mut out: Vec<TopicPartition> = self.parts.lock().keys().cloned().collect();
        out.sort();
        Ok(out)
    }

    fn close(&self) -> StorageResult<()> {
        let parts = self.parts.lock();
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
    fn keys_sort_by_partition_then_offset() {
        assert!(key(1, Offset(5)) < key(1, Offset(256)));
        assert!(key(1, Offset(i64::MAX)) < key(2, Offset(0)));
        assert_eq!(key_end(1), key(2, Offset(0)));
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
