//! The storage contract every engine implements: [`StorageEngine`] opens and lists
//! partitions, [`PartitionLog`] is one partition's append-only log.
//!
//! The contract is synchronous. The broker calls it from blocking-friendly contexts
//! (`spawn_blocking` for fsync), so a slow disk never stalls the async reactor.

use std::sync::Arc;

use bytes::Bytes;

use crate::batch::{BatchError, CompressionType};
use crate::compact::{CompactionPlan, CompactionStats};
use crate::types::{Offset, Timestamp, TopicPartition};
use crate::validated::ValidatedBatch;

/// Errors from a storage engine. Typed here; the broker maps them to Kafka error codes.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The batch failed validation (CRC, magic, length, count).
    #[error("corrupt batch: {0}")]
    Corrupt(#[from] BatchError),
    /// The batch is bigger than the partition's `max.message.bytes`.
    #[error("batch of {size} bytes exceeds the limit of {max} bytes")]
    BatchTooLarge {
        /// Size of the batch.
        size: usize,
        /// The limit in force.
        max: usize,
    },
    /// The offset is outside [log start offset, log end offset].
    #[error("offset {offset} out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: Offset,
        /// Log start offset.
        log_start: Offset,
        /// Log end offset.
        log_end: Offset,
    },
    /// The engine refuses more data (for example a memory limit).
    #[error("storage full: {0}")]
    Full(String),
    /// The partition was removed or the engine closed.
    #[error("partition {0} is closed")]
    Closed(String),
    /// An I/O error from the file system.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The partition's storage could not be opened; it serves nothing until a restart
    /// finds it readable.
    #[error("partition {0} is offline")]
    Offline(String),
    /// The engine does not implement this operation.
    #[error("the {engine} engine does not support {operation}")]
    Unsupported {
        /// The engine's name.
        engine: &'static str,
        /// What was asked.
        operation: &'static str,
    },
}

/// Result alias for storage operations.
pub type StorageResult<T> = Result<T, StorageError>;

/// Per-partition settings, named after Kafka's topic configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment when it would grow past this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment when its first batch is older than this.
    pub segment_ms: i64,
    /// `index.interval.bytes`: bytes between sparse index entries.
    pub index_interval_bytes: u32,
    /// `retention.ms`: delete segments whose newest record is older than this (-1: never).
    pub retention_ms: i64,
    /// `retention.bytes`: delete oldest segments while the log is larger than this (-1: never).
    pub retention_bytes: i64,
    /// `max.message.bytes`: largest batch accepted.
    pub max_message_bytes: usize,
    /// `message.timestamp.type` is LogAppendTime.
    pub log_append_time: bool,
    /// `message.timestamp.before.max.ms`: how far in the past a CreateTime record's
    /// timestamp may be (`i64::MAX`: unbounded). Checked by the broker on append.
    pub message_timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far in the future it may be.
    pub message_timestamp_after_max_ms: i64,
    /// `compression.type`: `None` for `producer` (batches kept in their own codec), else
    /// the codec the broker recompresses batches to on append.
    pub compression: Option<CompressionType>,
    /// `cleanup.policy` includes `compact`: every record needs a key (checked by the broker
    /// on produce) and the broker's cleaner compacts the log.
    pub compact: bool,
    /// `preallocate`: the log engine reserves `segment.bytes` of disk blocks for the active
    /// segment when it first appends to it (past the file's end, so its length stays the
    /// bytes written), and gives back what is unused when the segment rolls or closes.
    pub preallocate: bool,
}

impl Default for LogConfig {
    /// Kafka's defaults.
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            index_interval_bytes: 4096,
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            max_message_bytes: 1024 * 1024 + 12,
            log_append_time: false,
            // Kafka 4 bounds the future at one hour; Rafka leaves both unbounded so that
            // batches are not decoded on append unless a topic asks (broker `normalize`).
            message_timestamp_before_max_ms: i64::MAX,
            message_timestamp_after_max_ms: i64::MAX,
            compression: None,
            compact: false,
            preallocate: false,
        }
    }
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset assigned to the first record.
    pub base_offset: Offset,
    /// Offset of the last record.
    pub last_offset: Offset,
    /// The broker time of the append (Kafka's log append time).
    pub log_append_time: Timestamp,
    /// Log start offset after the append.
    pub log_start_offset: Offset,
}

/// Whole batches read from a log.
#[derive(Debug, Clone, Default)]
pub struct ReadResult {
    /// Batches back to back, exactly as stored. The first contains the requested offset.
    pub records: Bytes,
    /// Log start offset at the time of the read.
    pub log_start_offset: Offset,
    /// Log end offset at the time of the read.
    pub log_end_offset: Offset,
}

/// Whole stored batches as a byte range of an open file, for an engine whose batches lie
/// in files as they go on the wire: the broker sends them from the file to a plaintext
/// socket (`sendfile`) without copying them through its memory. Only the engine reads the
/// file's bytes; the broker only hands the range to the kernel.
///
/// Holding the region holds the file open: a segment deleted by retention, or replaced by
/// a compaction's swap (a new file under the old name), keeps its old bytes for as long
/// as a region of it is in flight. `len` never reaches past what the engine had committed
/// when it cut the region.
#[derive(Debug, Clone)]
pub struct FileRegion {
    /// The file (kept open by this handle).
    pub file: Arc<std::fs::File>,
    /// Byte position of the first batch in the file.
    pub position: u64,
    /// Bytes of the whole batches, back to back.
    pub len: usize,
}

/// One batch of a [`RegionRead`], from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionBatch {
    /// Offset after the batch's last record.
    pub next_offset: Offset,
    /// Bytes of the batch, its 12-byte prefix included.
    pub size_bytes: u32,
    /// Records the header counts.
    pub record_count: u32,
}

/// What [`PartitionLog::read_region`] found: the batches [`PartitionLog::read`] would have
/// returned, as a file region and their headers' figures.
#[derive(Debug, Clone)]
pub struct RegionRead {
    /// The batches' bytes in their file.
    pub region: FileRegion,
    /// The batches in order; their sizes add up to `region.len`.
    pub batches: Vec<RegionBatch>,
    /// Log start offset at the time of the read.
    pub log_start_offset: Offset,
    /// Log end offset at the time of the read.
    pub log_end_offset: Offset,
}

impl RegionRead {
    /// Keeps the leading `n` batches.
    pub fn keep(&mut self, n: usize) {
        self.batches.truncate(n);
        self.region.len = self.batches.iter().map(|b| b.size_bytes as usize).sum();
    }
}

/// An aborted transaction on a partition: one entry of Kafka's aborted-transaction index.
/// Recorded by the broker when it writes the abort marker; a read_committed Fetch returns
/// the entries overlapping what it read, so the client drops the aborted records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    /// Producer id of the transaction.
    pub producer_id: i64,
    /// Offset of its first record on this partition.
    pub first_offset: Offset,
    /// Offset of its abort marker (the entry's key: one marker, one entry).
    pub last_offset: Offset,
    /// The last stable offset once the abort completed: the first offset of the earliest
    /// transaction still open, or the marker's offset plus one if none (Kafka's field).
    pub last_stable_offset: Offset,
}

/// The broker's producer state of a partition as of `offset` (everything below it
/// applied, nothing at or after it), as bytes only the broker interprets. An engine stores
/// the latest one durably, so a partition opens by reading it and scanning only the batch
/// headers from `offset` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerSnapshot {
    /// The log end offset the snapshot was taken at.
    pub offset: Offset,
    /// The encoded state (the broker's format, with its own checksum).
    pub bytes: Bytes,
}

/// One partition's log. Implementations are thread-safe: appends are serialised inside,
/// reads may run concurrently with appends and see a prefix of them.
pub trait PartitionLog: Send + Sync {
    /// Assigns `batch` the next offsets (rewriting its base offset) and appends it. The
    /// batch's CRC was checked when it became a [`ValidatedBatch`]: engines do not check it
    /// again (recovery does, on what it reads back). Nothing of a refused batch is stored.
    /// Not durable until [`flush`].
    ///
    /// [`flush`]: PartitionLog::flush
    fn append(&self, batch: ValidatedBatch) -> StorageResult<AppendInfo>;

    /// Reads whole batches starting with the one that contains `from`, up to `max_bytes`,
    /// but always at least one whole batch if any exists at `from`. `from` equal to the log
    /// end offset gives empty records; outside [log start, log end] is `OffsetOutOfRange`.
    fn read(&self, from: Offset, max_bytes: usize) -> StorageResult<ReadResult>;

    /// The batches [`read`](PartitionLog::read) would return, byte for byte, as a region of
    /// a file instead of bytes in memory; `None` where the engine cannot say so cheaply
    /// (engines without segment files, an empty read, a read of many small batches), and
    /// the caller reads the bytes instead.
    fn read_region(&self, from: Offset, max_bytes: usize) -> StorageResult<Option<RegionRead>> {
        let _ = (from, max_bytes);
        Ok(None)
    }

    /// First offset still stored (or that will be stored, for an empty log).
    fn log_start_offset(&self) -> Offset;

    /// Offset the next appended record will get.
    fn log_end_offset(&self) -> Offset;

    /// The log start and log end offsets together, start read first (it only grows, so it
    /// is never past the end read with it). Engines that keep both under one lock answer
    /// from one look: a fetch of a thousand partitions asks this of each.
    fn log_bounds(&self) -> (Offset, Offset) {
        (self.log_start_offset(), self.log_end_offset())
    }

    /// Offset of the first batch whose max timestamp is at least `ts`, with that
    /// timestamp; `None` if no such batch.
    fn offset_for_timestamp(&self, ts: Timestamp) -> StorageResult<Option<(Offset, Timestamp)>>;

    /// The batch with the largest max timestamp: (its last offset, the timestamp), or `None`
    /// for an empty log. Used by ListOffsets MAX_TIMESTAMP.
    fn max_timestamp(&self) -> StorageResult<Option<(Offset, Timestamp)>>;

    /// Moves the log start offset to `offset` (never backwards, never past the log end),
    /// persists it, and drops storage wholly below it.
    fn delete_before(&self, offset: Offset) -> StorageResult<()>;

    /// Removes every batch whose base offset is `>= offset`, or that contains it; the log end
    /// offset becomes the base offset of the first removed batch (or stays if none).
    fn truncate_after(&self, offset: Offset) -> StorageResult<()>;

    /// Makes every append that returned before this call durable. Concurrent callers share
    /// one sync (group commit): a call returns as soon as a sync covering it has finished.
    fn flush(&self) -> StorageResult<()>;

    /// Applies `retention.ms` / `retention.bytes` at time `now`; returns records removed.
    fn apply_retention(&self, now: Timestamp) -> StorageResult<u64>;

    /// Bytes the log occupies.
    fn size_bytes(&self) -> u64;

    /// Replaces the partition's configuration (AlterConfigs).
    fn set_config(&self, cfg: LogConfig);

    /// Records an aborted transaction whose abort marker (at `txn.last_offset`) is already
    /// appended. Entries come in marker order; one whose `last_offset` is already recorded is
    /// ignored (recovery records again what it finds after the producer snapshot). Durable
    /// with the next [`flush`](PartitionLog::flush), like an append. Entries live as long as
    /// their marker: `delete_before` and retention drop those whose marker is below the new
    /// log start, `truncate_after` those whose marker it removes.
    fn record_aborted_txn(&self, txn: AbortedTxn) -> StorageResult<()>;

    /// Aborted transactions overlapping `[from, to)`: those whose marker is at or after
    /// `from` and whose first record is before `to`, in marker order.
    fn aborted_txns(&self, from: Offset, to: Offset) -> StorageResult<Vec<AbortedTxn>>;

    /// Stores `snapshot` durably (on return) in place of any earlier one. Its offset must
    /// not be past the log end. The caller flushes the log up to the offset first.
    fn write_producer_snapshot(&self, snapshot: ProducerSnapshot) -> StorageResult<()>;

    /// The stored producer snapshot, if any. Never one past the log end: `truncate_after`
    /// (and recovery cutting a torn tail) drops a snapshot taken after the cut.
    fn producer_snapshot(&self) -> StorageResult<Option<ProducerSnapshot>>;

    /// Compacts the log as `plan` allows (see [`crate::compact`] for the semantics every
    /// engine keeps: offsets never change, the latest record per key survives). Readers keep
    /// reading during it; appends are never blocked for longer than the final swap. An
    /// engine without compaction answers `Unsupported`.
    fn compact(&self, plan: &CompactionPlan) -> StorageResult<CompactionStats> {
        let _ = plan;
        Err(StorageError::Unsupported {
            engine: "this",
            operation: "compaction",
        })
    }
}

/// A storage engine: creates, lists and removes partition logs.
pub trait StorageEngine: Send + Sync {
    /// The engine's name as configured (`log`, `memory`, `rocksdb`).
    fn name(&self) -> &'static str;

    /// Opens (creating if needed) the log of `tp`. Opening an open partition returns the
    /// same log.
    fn open(&self, tp: &TopicPartition, cfg: &LogConfig) -> StorageResult<Arc<dyn PartitionLog>>;

    /// Deletes the partition and all its data.
    fn remove(&self, tp: &TopicPartition) -> StorageResult<()>;

    /// Partitions that exist, including after a restart.
    fn partitions(&self) -> StorageResult<Vec<TopicPartition>>;

    /// Flushes everything and records a clean shutdown.
    fn close(&self) -> StorageResult<()>;
}
