//! [`RocksPartition`]: one partition of the `rocksdb` engine, the [`PartitionLog`] over its
//! keys in the database and its in-memory index ([`PartState`]).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::BytesMut;
use parking_lot::Mutex;
use rafka_core::limits::{BATCH_BYTES_MAX, FETCH_RESPONSE_BYTES_MAX};
use rafka_core::{
    AbortedTxn, AppendInfo, LogConfig, Offset, PartitionLog, ProducerSnapshot, ReadResult,
    StorageError, StorageResult, Timestamp, TopicPartition, ValidatedBatch,
};
use rocksdb::{WriteBatch, DB};

use super::keys::{key, key_end, meta_key, meta_value, IndexEntry, CF_BATCHES, CF_INDEX, CF_META};
use super::txn::TxnState;
use super::{cf, corrupt, db_error, Inner};

/// One partition's in-memory view.
pub(super) struct PartState {
    pub(super) cfg: LogConfig,
    /// Invariant: sorted by base offset, contiguous but for gaps below `compacted_to`;
    /// mirrors the `index` family.
    pub(super) index: VecDeque<IndexEntry>,
    /// Invariant: first batch's base <= log_start <= log_end.
    pub(super) log_start: Offset,
    pub(super) log_end: Offset,
    pub(super) size_bytes: u64,
    pub(super) closed: bool,
    /// Compaction has cleaned up to here (persisted in `meta`): gaps below are expected.
    pub(super) compacted_to: Offset,
    /// Bumped by every change but an append: a compaction computed outside the lock
    /// applies only if it is unchanged.
    pub(super) version: u64,
    /// Aborted transactions and the producer snapshot (`txn.rs`).
    pub(super) txn: TxnState,
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

/// One partition of the [`RocksEngine`](super::RocksEngine). Thread-safe; see the module docs.
pub struct RocksPartition {
    pub(super) tp: TopicPartition,
    pub(super) id: u64,
    pub(super) inner: Arc<Inner>,
    pub(super) state: Mutex<PartState>,
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
        TxnState::delete_below(db, &mut wb, self.id, offset);
        self.inner.write(db, wb, true)?;
        st.version += 1;
        for e in st.index.drain(..n) {
            st.size_bytes -= e.size as u64;
        }
        st.log_start = offset;
        st.txn.pruned_below(offset);
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
            // the lock is released are invisible to it. It starts at the batch holding
            // `from`, or the next one if compaction removed it.
            let at = st.index.partition_point(|e| e.next <= from);
            let start = st.index.get(at).map_or(from, |e| e.base);
            let mut it = db.raw_iterator_cf(cf(db, CF_BATCHES));
            it.seek(key(self.id, start));
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

    fn log_bounds(&self) -> (Offset, Offset) {
        let st = self.state.lock();
        (st.log_start, st.log_end)
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
            // In a gap compaction left, the log ends where the last kept batch does.
            let log_end = match keep.checked_sub(1) {
                Some(k) => st.index[k].next,
                None => first_removed.base,
            };
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
            st.txn.delete_from(db, &mut wb, self.id, log_end);
            self.inner.write(db, wb, true)?;
            st.version += 1;
            for e in st.index.drain(keep..) {
                st.size_bytes -= e.size as u64;
            }
            st.log_end = log_end;
            st.log_start = log_start;
            st.txn.truncated(log_end);
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

    fn compact(
        &self,
        plan: &rafka_core::CompactionPlan,
    ) -> StorageResult<rafka_core::CompactionStats> {
        self.compact_until(plan, false)
    }

    fn record_aborted_txn(&self, txn: AbortedTxn) -> StorageResult<()> {
        self.with(|db, st| {
            if st.txn.contains(txn.last_offset)
                || txn.last_offset < st.log_start
                || txn.last_offset >= st.log_end
            {
                return Ok(());
            }
            let mut wb = WriteBatch::default();
            TxnState::put(db, &mut wb, self.id, &txn);
            self.inner.write(db, wb, false)?;
            st.txn.added(txn);
            Ok(())
        })
    }

    fn aborted_txns(&self, from: Offset, to: Offset) -> StorageResult<Vec<AbortedTxn>> {
        self.with(|_, st| Ok(st.txn.overlapping(from, to)))
    }

    fn write_producer_snapshot(&self, snapshot: ProducerSnapshot) -> StorageResult<()> {
        self.with(|db, st| {
            if snapshot.offset > st.log_end {
                return Err(st.out_of_range(snapshot.offset));
            }
            let mut wb = WriteBatch::default();
            TxnState::put_snapshot(db, &mut wb, self.id, &snapshot);
            self.inner.write(db, wb, true)?;
            st.txn.snapshot_written(snapshot);
            Ok(())
        })
    }

    fn producer_snapshot(&self) -> StorageResult<Option<ProducerSnapshot>> {
        self.with(|_, st| Ok(st.txn.snapshot()))
    }
}
