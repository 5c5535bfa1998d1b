//! One partition of the memory engine: [`PartState`], its batches in memory (pure data, no
//! I/O, no locking); the partition operations on the engine core (`Inner`), which log each
//! change to the WAL under the engine lock before applying it; and [`MemoryPartition`],
//! the [`PartitionLog`] handle that routes each call there.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rafka_core::limits::{BATCH_BYTES_MAX, FETCH_RESPONSE_BYTES_MAX};
use rafka_core::{
    AbortedTxn, AppendInfo, CompactionPlan, CompactionStats, LogConfig, Offset, PartitionLog,
    ProducerSnapshot, ReadResult, RecordBatch, StorageError, StorageResult, Timestamp,
    TopicPartition, ValidatedBatch,
};

use super::wal::Op;
use super::Inner;

/// One stored batch and the header fields lookups need.
#[derive(Debug, Clone)]
pub(crate) struct StoredBatch {
    pub base: Offset,
    pub next: Offset,
    pub max_timestamp: Timestamp,
    pub bytes: Bytes,
}

impl StoredBatch {
    pub(crate) fn new(batch: RecordBatch) -> StoredBatch {
        StoredBatch {
            base: batch.base_offset(),
            next: batch.next_offset(),
            max_timestamp: batch.max_timestamp(),
            bytes: batch.into_bytes(),
        }
    }
}

/// A partition's data.
#[derive(Debug)]
pub(crate) struct PartState {
    /// Distinguishes this incarnation from a removed partition of the same name, so a
    /// stale handle gets `Closed`.
    pub id: u64,
    pub cfg: LogConfig,
    /// Invariant: in offset order, contiguous but for the gaps compaction leaves (each
    /// batch's next offset is at most the following one's base), the last batch's next
    /// offset the log end, and the first batch's base offset <= `log_start` once a
    /// snapshot or WAL is replayed.
    pub batches: VecDeque<StoredBatch>,
    /// Invariant (outside replay): log_start <= log_end.
    pub log_start: Offset,
    /// Next offset to assign.
    pub log_end: Offset,
    /// Sum of the stored batches' sizes.
    pub size_bytes: u64,
    /// Bumped by every change but an append: a compaction computed outside the lock
    /// applies only if it is unchanged.
    pub version: u64,
    /// Aborted transactions in marker order, each marker in [log start, log end).
    pub aborted: Vec<AbortedTxn>,
    /// The broker's latest producer-state snapshot (never past the log end).
    pub producer_snapshot: Option<ProducerSnapshot>,
}

impl PartState {
    pub fn new(id: u64, cfg: LogConfig, log_start: Offset, log_end: Offset) -> PartState {
        PartState {
            id,
            cfg,
            batches: VecDeque::new(),
            log_start,
            log_end,
            size_bytes: 0,
            version: 0,
            aborted: Vec::new(),
            producer_snapshot: None,
        }
    }

    /// Stores `batch` at the log end; it must start there (or, with `allow_gap`, for a
    /// snapshot of a compacted partition, after it).
    pub fn push(&mut self, batch: RecordBatch, allow_gap: bool) -> Result<(), String> {
        let fits = if allow_gap {
            batch.base_offset() >= self.log_end
        } else {
            batch.base_offset() == self.log_end
        };
        if !fits {
            return Err(format!(
                "batch at {} does not start at the log end {}",
                batch.base_offset(),
                self.log_end
            ));
        }
        let b = StoredBatch::new(batch);
        self.log_end = b.next;
        self.size_bytes += b.bytes.len() as u64;
        self.batches.push_back(b);
        Ok(())
    }

    /// Index of the batch that holds `offset` (which must be in [log start, log end)), or
    /// of the first one after it if compaction removed it.
    fn index_of(&self, offset: Offset) -> usize {
        self.batches.partition_point(|b| b.next <= offset)
    }

    /// Moves the log start to `offset` (callers check the range) and drops the batches
    /// wholly below it; returns the bytes freed.
    pub fn delete_before(&mut self, offset: Offset) -> u64 {
        self.log_start = self.log_start.max(offset);
        self.version += 1;
        let mut freed = 0;
        while self
            .batches
            .front()
            .is_some_and(|b| b.next <= self.log_start)
        {
            let b = self.batches.pop_front().expect("front exists");
            freed += b.bytes.len() as u64;
        }
        self.size_bytes -= freed;
        self.trim_txn_state();
        freed
    }

    /// Removes the batch containing `offset` and all after it; returns the bytes freed.
    pub fn truncate_after(&mut self, offset: Offset) -> u64 {
        if offset >= self.log_end {
            return 0;
        }
        let keep = self.batches.partition_point(|b| b.next <= offset);
        let Some(first_removed) = self.batches.get(keep) else {
            return 0;
        };
        // In a gap compaction left, the log ends where the last kept batch does.
        self.log_end = match keep.checked_sub(1) {
            Some(k) => self.batches[k].next,
            None => first_removed.base,
        };
        self.version += 1;
        let mut freed = 0;
        for b in self.batches.drain(keep..) {
            freed += b.bytes.len() as u64;
        }
        self.log_start = self.log_start.min(self.log_end);
        self.size_bytes -= freed;
        self.trim_txn_state();
        freed
    }

    /// The log start offset that `retention.ms` / `retention.bytes` ask for at `now`, if it
    /// moves. The newest batch always stays.
    pub fn retention_start(&self, now: Timestamp) -> Option<Offset> {
        let n_old = self.batches.len().saturating_sub(1);
        let mut n = 0;
        if self.cfg.retention_ms >= 0 {
            n = self
                .batches
                .iter()
                .take(n_old)
                .take_while(|b| now.0.saturating_sub(b.max_timestamp.0) > self.cfg.retention_ms)
                .count();
        }
        if self.cfg.retention_bytes >= 0 {
            let mut total = self.size_bytes;
            let mut by_size = 0;
            for b in self.batches.iter().take(n_old) {
                let len = b.bytes.len() as u64;
                if total - len < self.cfg.retention_bytes as u64 {
                    break;
                }
                total -= len;
                by_size += 1;
            }
            n = n.max(by_size);
        }
        let start = self.batches.get(n)?.base.max(self.log_start);
        (n > 0 && start > self.log_start).then_some(start)
    }

    fn out_of_range(&self, offset: Offset) -> StorageError {
        StorageError::OffsetOutOfRange {
            offset,
            log_start: self.log_start,
            log_end: self.log_end,
        }
    }

    /// Whole batches from the one holding `from`, up to `max_bytes` but at least one.
    pub fn read(&self, from: Offset, max_bytes: usize) -> StorageResult<(Vec<Bytes>, usize)> {
        if from < self.log_start || from > self.log_end {
            return Err(self.out_of_range(from));
        }
        let mut out = Vec::new();
        let mut total = 0;
        if from == self.log_end {
            return Ok((out, 0));
        }
        for b in self.batches.range(self.index_of(from)..) {
            if !out.is_empty() && total + b.bytes.len() > max_bytes {
                break;
            }
            total += b.bytes.len();
            out.push(b.bytes.clone());
        }
        Ok((out, total))
    }

    pub fn offset_for_timestamp(&self, ts: Timestamp) -> Option<(Offset, Timestamp)> {
        self.batches
            .iter()
            .find(|b| b.next > self.log_start && b.max_timestamp >= ts)
            .map(|b| (b.base.max(self.log_start), b.max_timestamp))
    }

    pub fn max_timestamp(&self) -> Option<(Offset, Timestamp)> {
        let mut best: Option<&StoredBatch> = None;
        for b in &self.batches {
            if best.is_none_or(|x| b.max_timestamp > x.max_timestamp) {
                best = Some(b);
            }
        }
        best.map(|b| (Offset(b.next.0 - 1), b.max_timestamp))
    }
}

/// The operations on one partition. They live on the engine core because every change
/// goes through its lock and its WAL.
impl Inner {
    pub(crate) fn with_part<T>(
        &self,
        tp: &TopicPartition,
        id: u64,
        f: impl FnOnce(&PartState) -> StorageResult<T>,
    ) -> StorageResult<T> {
        let mut st = self.state.lock();
        f(st.part_mut(tp, id)?)
    }

    pub(crate) fn append(
        &self,
        tp: &TopicPartition,
        id: u64,
        mut batch: ValidatedBatch,
    ) -> StorageResult<AppendInfo> {
        let size = batch.size_bytes();
        if size > BATCH_BYTES_MAX {
            return Err(StorageError::BatchTooLarge {
                size,
                max: BATCH_BYTES_MAX,
            });
        }
        // Stamping copies the bytes if they are shared (a slice of a request): do it here,
        // outside the lock, so what is stored owns exactly its bytes.
        batch.set_base_offset(Offset(0));
        let now = Timestamp::now();

        let mut st = self.state.lock();
        let total_bytes = st.total_bytes;
        let p = st.part_mut(tp, id)?;
        let max = p.cfg.max_message_bytes.min(BATCH_BYTES_MAX);
        if size > max {
            return Err(StorageError::BatchTooLarge { size, max });
        }
        if total_bytes + size as u64 > self.opts.max_bytes {
            return Err(StorageError::Full(format!(
                "memory engine holds {total_bytes} bytes and storage.memory.max_bytes is {}: \
                 a batch of {size} bytes does not fit (delete records, lower retention or \
                 raise storage.memory.max_bytes)",
                self.opts.max_bytes
            )));
        }
        let base_offset = p.log_end;
        batch.set_base_offset(base_offset);
        let log_append_time = if p.cfg.log_append_time {
            batch.set_log_append_time(now);
            now
        } else {
            Timestamp(-1)
        };
        let last_offset = batch.last_offset();
        let log_start_offset = p.log_start;
        self.log(&mut st, &Op::Append(tp.clone(), batch.as_batch().clone()))?;
        let p = st.part_mut(tp, id)?;
        p.push(batch.into_batch(), false)
            .expect("the batch starts at the log end");
        st.total_bytes += size as u64;
        Ok(AppendInfo {
            base_offset,
            last_offset,
            log_append_time,
            log_start_offset,
        })
    }

    pub(crate) fn delete_before(
        &self,
        tp: &TopicPartition,
        id: u64,
        offset: Offset,
    ) -> StorageResult<()> {
        {
            let mut st = self.state.lock();
            let p = st.part_mut(tp, id)?;
            if offset > p.log_end {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    log_start: p.log_start,
                    log_end: p.log_end,
                });
            }
            if offset <= p.log_start {
                return Ok(());
            }
            self.log(&mut st, &Op::DeleteBefore(tp.clone(), offset))?;
            let freed = st.part_mut(tp, id)?.delete_before(offset);
            st.total_bytes -= freed;
        }
        self.flush()
    }

    pub(crate) fn truncate_after(
        &self,
        tp: &TopicPartition,
        id: u64,
        offset: Offset,
    ) -> StorageResult<()> {
        {
            let mut st = self.state.lock();
            let p = st.part_mut(tp, id)?;
            if offset >= p.log_end {
                return Ok(());
            }
            self.log(&mut st, &Op::TruncateAfter(tp.clone(), offset))?;
            let freed = st.part_mut(tp, id)?.truncate_after(offset);
            st.total_bytes -= freed;
        }
        self.flush()
    }

    pub(crate) fn apply_retention(
        &self,
        tp: &TopicPartition,
        id: u64,
        now: Timestamp,
    ) -> StorageResult<u64> {
        let removed = {
            let mut st = self.state.lock();
            let p = st.part_mut(tp, id)?;
            let Some(start) = p.retention_start(now) else {
                return Ok(0);
            };
            let removed = (start.0 - p.log_start.0) as u64;
            self.log(&mut st, &Op::DeleteBefore(tp.clone(), start))?;
            let freed = st.part_mut(tp, id)?.delete_before(start);
            st.total_bytes -= freed;
            removed
        };
        self.flush()?;
        tracing::debug!(partition = %tp, records = removed, "applied retention");
        Ok(removed)
    }

    pub(crate) fn set_config(&self, tp: &TopicPartition, id: u64, cfg: LogConfig) {
        if let Ok(p) = self.state.lock().part_mut(tp, id) {
            p.cfg = cfg;
        }
    }
}

/// A handle on one partition of a [`MemoryEngine`](super::MemoryEngine). Thread-safe:
/// every call takes the engine's lock for its bookkeeping only; flush waits outside it.
pub struct MemoryPartition {
    pub(crate) tp: TopicPartition,
    pub(crate) id: u64,
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryPartition")
            .field("tp", &self.tp)
            .finish()
    }
}

impl MemoryPartition {
    fn with<T>(&self, f: impl FnOnce(&PartState) -> StorageResult<T>) -> StorageResult<T> {
        self.inner.with_part(&self.tp, self.id, f)
    }
}

impl PartitionLog for MemoryPartition {
    fn append(&self, batch: ValidatedBatch) -> StorageResult<AppendInfo> {
        self.inner.append(&self.tp, self.id, batch)
    }

    fn read(&self, from: Offset, max_bytes: usize) -> StorageResult<ReadResult> {
        let max_bytes = max_bytes.min(FETCH_RESPONSE_BYTES_MAX);
        let ((parts, total), log_start, log_end) =
            self.with(|p| Ok((p.read(from, max_bytes)?, p.log_start, p.log_end)))?;
        // Copy (if more than one batch) outside the lock.
        let records = match parts.len() {
            0 => Bytes::new(),
            1 => parts.into_iter().next().expect("one"),
            _ => {
                let mut buf = BytesMut::with_capacity(total);
                for p in parts {
                    buf.extend_from_slice(&p);
                }
                buf.freeze()
            }
        };
        Ok(ReadResult {
            records,
            log_start_offset: log_start,
            log_end_offset: log_end,
        })
    }

    fn log_start_offset(&self) -> Offset {
        self.with(|p| Ok(p.log_start)).unwrap_or(Offset(0))
    }

    fn log_end_offset(&self) -> Offset {
        self.with(|p| Ok(p.log_end)).unwrap_or(Offset(0))
    }

    fn log_bounds(&self) -> (Offset, Offset) {
        self.with(|p| Ok((p.log_start, p.log_end)))
            .unwrap_or((Offset(0), Offset(0)))
    }

    fn offset_for_timestamp(&self, ts: Timestamp) -> StorageResult<Option<(Offset, Timestamp)>> {
        self.with(|p| Ok(p.offset_for_timestamp(ts)))
    }

    fn max_timestamp(&self) -> StorageResult<Option<(Offset, Timestamp)>> {
        self.with(|p| Ok(p.max_timestamp()))
    }

    fn delete_before(&self, offset: Offset) -> StorageResult<()> {
        self.inner.delete_before(&self.tp, self.id, offset)
    }

    fn truncate_after(&self, offset: Offset) -> StorageResult<()> {
        self.inner.truncate_after(&self.tp, self.id, offset)
    }

    fn flush(&self) -> StorageResult<()> {
        self.with(|_| Ok(()))?;
        self.inner.flush()
    }

    fn apply_retention(&self, now: Timestamp) -> StorageResult<u64> {
        self.inner.apply_retention(&self.tp, self.id, now)
    }

    fn size_bytes(&self) -> u64 {
        self.with(|p| Ok(p.size_bytes)).unwrap_or(0)
    }

    fn set_config(&self, cfg: LogConfig) {
        self.inner.set_config(&self.tp, self.id, cfg);
    }

    fn compact(&self, plan: &CompactionPlan) -> StorageResult<CompactionStats> {
        self.inner.compact(&self.tp, self.id, plan, None)
    }

    fn record_aborted_txn(&self, txn: AbortedTxn) -> StorageResult<()> {
        self.inner.record_aborted_txn(&self.tp, self.id, txn)
    }

    fn aborted_txns(&self, from: Offset, to: Offset) -> StorageResult<Vec<AbortedTxn>> {
        self.with(|p| Ok(p.aborted_overlapping(from, to)))
    }

    fn write_producer_snapshot(&self, snapshot: ProducerSnapshot) -> StorageResult<()> {
        self.inner
            .write_producer_snapshot(&self.tp, self.id, snapshot)
    }

    fn producer_snapshot(&self) -> StorageResult<Option<ProducerSnapshot>> {
        self.with(|p| Ok(p.producer_snapshot.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::batch;

    /// A partition holding batches of `sizes` records each, timestamps 0, 10, 20, ...
    fn check(sizes: &[usize]) -> PartState {
        let mut p = PartState::new(1, LogConfig::default(), Offset(0), Offset(0));
        for (i, &n) in sizes.iter().enumerate() {
            let mut b = batch(n, i as i64 * 10, 10);
            b.set_base_offset(p.log_end);
            p.push(b.into_batch(), false).unwrap();
        }
        p
    }

    #[test]
    fn push_refuses_a_gap() {
        let mut p = check(&[2]);
        let mut b = batch(1, 0, 1);
        b.set_base_offset(Offset(5));
        assert!(p.push(b.into_batch(), false).is_err());
        assert_eq!(p.log_end, Offset(2));
    }

    #[test]
    fn delete_and_truncate_keep_sizes_and_offsets() {
        let mut p = check(&[2, 2, 2, 2]);
        let one = p.size_bytes / 4;
        assert_eq!(p.delete_before(Offset(3)), one);
        assert_eq!((p.log_start, p.batches.len()), (Offset(3), 3));
        assert_eq!(p.truncate_after(Offset(5)), 2 * one);
        assert_eq!((p.log_end, p.size_bytes), (Offset(4), one));
        assert_eq!(p.truncate_after(Offset(2)), one);
        assert_eq!((p.log_start, p.log_end), (Offset(2), Offset(2)));
    }

    #[test]
    fn retention_keeps_the_newest_batch() {
        let mut p = check(&[1, 1, 1]);
        p.cfg.retention_ms = 0;
        assert_eq!(p.retention_start(Timestamp(1000)), Some(Offset(2)));
        p.cfg.retention_ms = -1;
        p.cfg.retention_bytes = 0;
        assert_eq!(p.retention_start(Timestamp(0)), Some(Offset(2)));
        p.cfg.retention_bytes = -1;
        assert_eq!(p.retention_start(Timestamp(0)), None);
    }
}
