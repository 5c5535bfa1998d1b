//! The broker's state: topics, their partitions and configs, producer ids. Topic metadata
//! is persisted in `rafka-topics.yaml` in the data directory (written atomically), so topic
//! ids and configs survive restarts.
//!
//! [`PartitionState`] is the one door to a partition: every read and write of its log, its
//! high watermark, last stable offset and leader epoch, and the wake-up of the long-poll
//! fetches parked on it go through it. Transactions (the last stable offset) and
//! replication (the high watermark, leader epochs) change this file, not the API handlers.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;
use uuid::Uuid;

use rafka_core::{
    AppendInfo, LogConfig, Offset, PartitionLog, ProducerSnapshot, RecordBatch, RegionRead,
    StorageEngine, StorageError, Timestamp, TopicName, TopicPartition, ValidatedBatch,
};

use crate::normalize::AppendPolicy;
use crate::producer_state::{AbortedTxn, ProducerStates, SequenceCheck, SequenceSpan, TxnSpan};
use crate::sync_queue::{FlushFailed, SyncQueue};
use crate::topic_config;

/// Why an append was refused above the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The storage engine refused it.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Idempotent producer sequence gap.
    #[error("out of order sequence: expected {expected}")]
    OutOfOrder {
        /// Expected sequence.
        expected: i32,
    },
    /// Idempotent producer with an old epoch.
    #[error("producer fenced by a newer epoch")]
    Fenced,
}

/// What an accepted append did.
#[derive(Debug, Clone, Copy)]
pub enum Appended {
    /// Written now.
    New(AppendInfo),
    /// A resend of a batch already written at this base offset.
    Duplicate(Offset),
}

/// Which records a reader may see: Kafka's `isolation_level` (Fetch, ListOffsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationLevel {
    /// Everything below the high watermark (wire value 0).
    ReadUncommitted,
    /// Everything below the last stable offset: no record of an open transaction
    /// (wire value 1).
    ReadCommitted,
}

impl IsolationLevel {
    /// From the wire's INT8. Kafka defines 0 and 1 only; anything else reads as
    /// READ_UNCOMMITTED, as Rafka always has.
    pub fn from_wire(v: i8) -> IsolationLevel {
        if v == 1 {
            IsolationLevel::ReadCommitted
        } else {
            IsolationLevel::ReadUncommitted
        }
    }
}

/// A partition's offsets at one moment, all derived from one read of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// First offset still stored.
    pub log_start_offset: Offset,
    /// Offset the next appended record gets.
    pub log_end_offset: Offset,
    /// Offset below which records are fully replicated: what READ_UNCOMMITTED sees.
    pub high_watermark: Offset,
    /// Offset below which no transaction is open: what READ_COMMITTED sees.
    pub last_stable_offset: Offset,
}

impl PartitionOffsets {
    /// The one definition of the high watermark and last stable offset. One replica: a
    /// record is replicated once it is appended, so HW = LEO. The LSO is the first offset
    /// of the earliest transaction still open on the partition (`first_unstable`), or the
    /// HW when none is: LSO = min(first offset of the open transactions, HW).
    /// Replication changes this.
    fn derive(
        log_start_offset: Offset,
        log_end_offset: Offset,
        first_unstable: Option<Offset>,
    ) -> PartitionOffsets {
        let high_watermark = log_end_offset;
        let last_stable_offset = first_unstable
            .map_or(high_watermark, |f| f.min(high_watermark))
            .max(log_start_offset.min(high_watermark));
        debug_assert!(last_stable_offset <= high_watermark && high_watermark <= log_end_offset);
        PartitionOffsets {
            log_start_offset,
            log_end_offset,
            high_watermark,
            last_stable_offset,
        }
    }

    /// The offset a reader at `isolation` reads up to (exclusive).
    pub fn read_limit(&self, isolation: IsolationLevel) -> Offset {
        match isolation {
            IsolationLevel::ReadUncommitted => self.high_watermark,
            IsolationLevel::ReadCommitted => self.last_stable_offset,
        }
    }
}

/// Whole batches read from a partition, cut at the reader's isolation level.
#[derive(Debug, Clone)]
pub struct PartitionRead {
    /// Stored batches, back to back, exactly as stored; none reaches past the read limit.
    pub records: Bytes,
    /// The partition's offsets at the time of the read.
    pub offsets: PartitionOffsets,
    /// For a read_committed read: the aborted transactions overlapping the records
    /// returned (empty otherwise).
    pub aborted: Vec<AbortedTxn>,
}

/// A [`PartitionRead`] whose batches are a region of a segment file.
#[derive(Debug, Clone)]
pub struct PartitionRegionRead {
    /// The batches (none reaches past the read limit) and where they lie.
    pub read: RegionRead,
    /// The partition's offsets at the time of the read.
    pub offsets: PartitionOffsets,
    /// For a read_committed read: the aborted transactions overlapping the batches.
    pub aborted: Vec<AbortedTxn>,
}

/// The leading whole batches of `records` that end at or below `limit`. A batch that
/// crosses the limit is left out whole: a reader never sees part of what it may not read.
fn batches_below(records: Bytes, limit: Offset) -> Bytes {
    let mut keep = 0;
    while let Some(len) = rafka_core::batch::batch_len_at(&records[keep..]) {
        let Some(batch) = records
            .get(keep..keep.saturating_add(len))
            .and_then(|b| RecordBatch::parse(records.slice_ref(b)).ok())
        else {
            break;
        };
        if batch.last_offset() >= limit {
            break;
        }
        keep += len;
    }
    if keep == records.len() {
        records
    } else {
        records.slice(..keep)
    }
}

/// The last offset of the last whole batch in `records`.
fn last_offset_in(records: &Bytes) -> Option<Offset> {
    let mut at = 0;
    let mut last = None;
    while let Some(len) = rafka_core::batch::batch_len_at(&records[at..]) {
        let Some(b) = records
            .get(at..at.saturating_add(len))
            .and_then(|b| RecordBatch::parse(records.slice_ref(b)).ok())
        else {
            break;
        };
        last = Some(b.last_offset());
        at += len;
    }
    last
}

/// How a partition's producer state was rebuilt when it opened: from which offset the
/// batch headers were replayed, how many, and whether a producer snapshot gave the state
/// before that offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenScan {
    /// First offset replayed (the snapshot's offset, or the log start).
    pub from: Offset,
    /// Batches replayed.
    pub n_batches: u64,
    /// Whether a producer snapshot was used.
    pub from_snapshot: bool,
}

/// The leader epoch a single node serves: it is the leader of every partition from the
/// start, and leadership never changes. Replication changes it.
const LEADER_EPOCH: i32 = 0;

/// One partition's door: its log, the idempotence state that guards appends, its offsets
/// (high watermark, last stable offset), its leader epoch and the wake-up of the long-poll
/// fetches parked on it. Every read and write of the partition goes through here.
pub struct PartitionState {
    /// Which partition.
    pub tp: TopicPartition,
    log: Arc<dyn PartitionLog>,
    /// Bytes and records produced and fetched (the topic's traffic metrics).
    pub traffic: crate::metrics::Traffic,
    producers: Mutex<ProducerStates>,
    /// The topic's timestamp type, bounds and codec, replaced when its configs change.
    append_policy: RwLock<AppendPolicy>,
    offline: bool,
    leader_epoch: i32,
    /// Woken (all waiters) after every append to this partition, and only this one.
    appended: Arc<Notify>,
    /// How the producer state was rebuilt at open.
    open_scan: OpenScan,
    /// Offset of the last producer snapshot stored (-1: none).
    snapshot_offset: AtomicI64,
    /// Answers waiting for a flush (acks=all), served by one flusher at a time.
    sync: Arc<SyncQueue>,
}

impl PartitionState {
    fn new(
        tp: TopicPartition,
        log: Arc<dyn PartitionLog>,
        producers: ProducerStates,
        cfg: &LogConfig,
        offline: bool,
        open_scan: OpenScan,
    ) -> PartitionState {
        let snapshot_offset = if open_scan.from_snapshot {
            open_scan.from.0
        } else {
            -1
        };
        PartitionState {
            tp,
            log,
            traffic: Default::default(),
            producers: Mutex::new(producers),
            append_policy: RwLock::new(AppendPolicy::of(cfg)),
            offline,
            leader_epoch: LEADER_EPOCH,
            appended: Arc::new(Notify::new()),
            open_scan,
            snapshot_offset: AtomicI64::new(snapshot_offset),
            sync: Arc::default(),
        }
    }

    fn open(
        log: Arc<dyn PartitionLog>,
        tp: TopicPartition,
        cfg: &LogConfig,
    ) -> Result<PartitionState, StorageError> {
        let start = log.log_start_offset();
        let end = log.log_end_offset();
        // The producer snapshot gives the state before its offset; without a usable one
        // (none, past the log end, damaged) every batch header from the log start is
        // replayed. A snapshot below the log start is still used: the state it holds is
        // what the running partition kept when DeleteRecords or retention moved the start.
        let snapshot = match log.producer_snapshot() {
            Ok(Some(s)) if s.offset <= end => match ProducerStates::decode(&s.bytes) {
                Some(p) => Some((p, s.offset)),
                None => {
                    tracing::warn!(partition = %tp, offset = %s.offset, "producer snapshot is damaged; replaying the whole log");
                    None
                }
            },
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(partition = %tp, error = %e, "producer snapshot unreadable; replaying the whole log");
                None
            }
        };
        let from_snapshot = snapshot.is_some();
        // Batches below this offset are in the snapshot's state already.
        let applied_below = snapshot.as_ref().map_or(Offset(i64::MIN), |s| s.1);
        let (mut producers, from) = snapshot.unwrap_or((ProducerStates::default(), start));
        let mut at = from.max(start);
        let scan_from = at;
        let mut n_batches = 0u64;
        while at < end {
            let r = log.read(at, 4 * 1024 * 1024)?;
            let batches = RecordBatch::split_all(r.records).unwrap_or_default();
            let Some(last) = batches.last() else { break };
            let next = last.next_offset();
            for b in batches.iter().filter(|b| b.base_offset() >= applied_below) {
                n_batches += 1;
                if b.is_control() {
                    if let Some(kind) = b.control_type() {
                        let aborted = producers.end_txn(
                            b.producer_id(),
                            b.producer_epoch(),
                            kind == rafka_core::ControlType::Commit,
                            b.base_offset(),
                        );
                        // The engine may not have it: the crash came between the marker
                        // and its entry. Recording is idempotent.
                        if let Some(a) = aborted {
                            log.record_aborted_txn(a)?;
                        }
                    }
                    continue;
                }
                producers.record(SequenceSpan::of(b), b.base_offset());
                producers.record_txn_batch(TxnSpan::of(b), b.base_offset());
            }
            if next <= at {
                break;
            }
            at = next;
        }
        let open_scan = OpenScan {
            from: scan_from,
            n_batches,
            from_snapshot,
        };
        tracing::debug!(partition = %tp, ?open_scan, "rebuilt producer state");
        Ok(PartitionState::new(
            tp, log, producers, cfg, false, open_scan,
        ))
    }

    /// Opens the partition, or, when its storage cannot be opened, logs why (the engine's
    /// error names the file) and returns it offline: every read and write of it answers
    /// KAFKA_STORAGE_ERROR while the rest of the broker serves.
    fn open_or_offline(
        engine: &dyn StorageEngine,
        tp: TopicPartition,
        cfg: &LogConfig,
    ) -> PartitionState {
        let opened = engine
            .open(&tp, cfg)
            .and_then(|log| PartitionState::open(log, tp.clone(), cfg));
        match opened {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(partition = %tp, error = %e, "partition is offline: its storage could not be opened");
                let log = Arc::new(OfflineLog(tp.to_string()));
                let open_scan = OpenScan {
                    from: Offset(0),
                    n_batches: 0,
                    from_snapshot: false,
                };
                PartitionState::new(tp, log, ProducerStates::default(), cfg, true, open_scan)
            }
        }
    }

    /// Whether the partition's storage failed to open at startup.
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// The epoch of this partition's leader (this broker).
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    /// Log start, log end, high watermark and last stable offset, read together.
    pub fn offsets(&self) -> PartitionOffsets {
        // Start not after end: a concurrent DeleteRecords can only make start larger,
        // never past an end read after it (or, in one look, with it).
        let (start, end) = self.log.log_bounds();
        // Read after the log end: a transaction that opened after it starts at or past
        // it, and the LSO stays at most the HW read above.
        let first_unstable = self.producers.lock().first_unstable_offset();
        PartitionOffsets::derive(start, end, first_unstable)
    }

    /// First offset still stored.
    pub fn log_start_offset(&self) -> Offset {
        self.log.log_start_offset()
    }

    /// Offset the next appended record gets.
    pub fn log_end_offset(&self) -> Offset {
        self.log.log_end_offset()
    }

    /// Offset below which records are readable by READ_UNCOMMITTED consumers.
    pub fn high_watermark(&self) -> Offset {
        self.offsets().high_watermark
    }

    /// Offset below which no transaction is open: what READ_COMMITTED consumers read.
    pub fn last_stable_offset(&self) -> Offset {
        self.offsets().last_stable_offset
    }

    /// What [`read`](Self::read) returns for a reader already at its limit (`from` is the
    /// high watermark, or the LSO for read_committed): no records, the offsets, found
    /// without reading the log. `None` for any other `from` and on an offline partition
    /// (then read, which answers its error). A consumer that has caught up asks this of
    /// most of its partitions in every fetch.
    pub fn caught_up(&self, from: Offset, isolation: IsolationLevel) -> Option<PartitionRead> {
        if self.offline {
            return None;
        }
        let offsets = self.offsets();
        (from == offsets.read_limit(isolation) && from >= offsets.log_start_offset).then(|| {
            PartitionRead {
                records: Bytes::new(),
                offsets,
                aborted: Vec::new(),
            }
        })
    }

    /// Reads whole batches from the one containing `from`, up to `max_bytes` (at least one
    /// batch when there is one), none past what `isolation` may see.
    pub fn read(
        &self,
        from: Offset,
        max_bytes: usize,
        isolation: IsolationLevel,
    ) -> Result<PartitionRead, StorageError> {
        let r = self.log.read(from, max_bytes)?;
        // The open transactions after the read: one that closed since then only makes
        // the LSO larger, bounded by the HW this read saw, and its abort (if any) is in
        // the list below.
        let first_unstable = self.producers.lock().first_unstable_offset();
        let offsets =
            PartitionOffsets::derive(r.log_start_offset, r.log_end_offset, first_unstable);
        let limit = offsets.read_limit(isolation);
        let records = if limit >= r.log_end_offset {
            r.records
        } else {
            batches_below(r.records, limit)
        };
        let aborted = match isolation {
            IsolationLevel::ReadCommitted if !records.is_empty() => {
                let end = last_offset_in(&records).map_or(from, |o| o.plus(1));
                self.log.aborted_txns(from, end)?
            }
            _ => Vec::new(),
        };
        Ok(PartitionRead {
            records,
            offsets,
            aborted,
        })
    }

    /// What [`read`](Self::read) would return, as a region of a segment file to send
    /// without copying (`sendfile`): the same batches, cut at the same read limit, with the
    /// same aborted transactions. `None` where the engine offers no region (then `read`).
    pub fn read_region(
        &self,
        from: Offset,
        max_bytes: usize,
        isolation: IsolationLevel,
    ) -> Result<Option<PartitionRegionRead>, StorageError> {
        let Some(mut r) = self.log.read_region(from, max_bytes)? else {
            return Ok(None);
        };
        // As in `read`: the open transactions after the read.
        let first_unstable = self.producers.lock().first_unstable_offset();
        let offsets =
            PartitionOffsets::derive(r.log_start_offset, r.log_end_offset, first_unstable);
        let limit = offsets.read_limit(isolation);
        // The leading whole batches that end at or below the limit (`batches_below`).
        let keep = r
            .batches
            .iter()
            .take_while(|b| b.next_offset <= limit)
            .count();
        r.keep(keep);
        let aborted = match (isolation, r.batches.last()) {
            (IsolationLevel::ReadCommitted, Some(last)) => {
                self.log.aborted_txns(from, last.next_offset)?
            }
            _ => Vec::new(),
        };
        Ok(Some(PartitionRegionRead {
            read: r,
            offsets,
            aborted,
        }))
    }

    /// Writes a transaction marker (Kafka's control batch) for `producer_id` at
    /// `producer_epoch`: ends its transaction on this partition, moves the LSO, and
    /// records an abort in the engine's aborted-transaction index. Returns the marker's offset. A
    /// marker older than the producer's epoch here is refused (INVALID_PRODUCER_EPOCH).
    pub fn write_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
    ) -> Result<Offset, AppendError> {
        let kind = if commit {
            rafka_core::ControlType::Commit
        } else {
            rafka_core::ControlType::Abort
        };
        let batch = rafka_core::batch::control_batch(
            producer_id,
            producer_epoch,
            coordinator_epoch,
            kind,
            Timestamp::now(),
        );
        let mut batch = ValidatedBatch::new(batch).map_err(StorageError::from)?;
        batch.set_partition_leader_epoch(self.leader_epoch);
        let mut producers = self.producers.lock();
        if producers
            .epoch_of(producer_id)
            .is_some_and(|e| producer_epoch < e)
        {
            return Err(AppendError::Fenced);
        }
        let info = self.log.append(batch)?;
        let aborted = producers.end_txn(producer_id, producer_epoch, commit, info.base_offset);
        if let Some(a) = aborted {
            // Under the producers lock, so entries reach the engine in marker order and a
            // producer snapshot taken later covers this one.
            if let Err(e) = self.log.record_aborted_txn(a) {
                // The marker is written; a restart records the entry again from the log
                // (a replay after the producer snapshot sees the marker).
                tracing::error!(partition = %self.tp, marker = %info.base_offset, error = %e, "could not record an aborted transaction");
                return Err(e.into());
            }
        }
        drop(producers);
        self.appended.notify_waiters();
        Ok(info.base_offset)
    }

    /// The first offset of `producer_id`'s open transaction on this partition, if any.
    pub fn ongoing_txn(&self, producer_id: i64) -> Option<Offset> {
        self.producers.lock().ongoing_txn(producer_id)
    }

    /// Producers with state on this partition (DescribeProducers): producer id, epoch,
    /// last sequence, first offset of the open transaction.
    pub fn describe_producers(&self) -> Vec<(i64, i16, i32, Option<Offset>)> {
        self.producers.lock().describe()
    }

    /// Appends one validated batch, applying idempotent-producer checks atomically with it,
    /// then wakes the fetches parked on this partition.
    pub fn append(&self, mut batch: ValidatedBatch) -> Result<Appended, AppendError> {
        batch.set_partition_leader_epoch(self.leader_epoch);
        let mut producers = self.producers.lock();
        match producers.check(&batch) {
            SequenceCheck::Append => {}
            SequenceCheck::Duplicate(o) => return Ok(Appended::Duplicate(o)),
            SequenceCheck::OutOfOrder { expected } => {
                return Err(AppendError::OutOfOrder { expected })
            }
            SequenceCheck::Fenced => return Err(AppendError::Fenced),
        }
        // The log takes the batch itself: a clone here would make its base-offset write copy
        // the whole batch.
        let span = SequenceSpan::of(&batch);
        let txn = TxnSpan::of(&batch);
        let info = self.log.append(batch)?;
        producers.record(span, info.base_offset);
        producers.record_txn_batch(txn, info.base_offset);
        drop(producers);
        self.appended.notify_waiters();
        Ok(Appended::New(info))
    }

    /// Makes every append that returned before this call durable (group commit in the
    /// engine). Blocking: call it off the async workers.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.log.flush()
    }

    /// Resolves once every append that returned before this call is durable: the wait
    /// starts here, and concurrent callers share one flush on one blocking thread
    /// ([`SyncQueue`]). For answers that wait on an fsync (acks=all).
    pub fn durable(self: &Arc<Self>) -> impl Future<Output = Result<(), FlushFailed>> + Send {
        let p = self.clone();
        self.sync.durable(move || p.flush())
    }

    /// DeleteRecords: moves the log start offset to `before` (`None`: the high watermark)
    /// and returns the new log start offset. Past the high watermark is out of range.
    pub fn delete_records(&self, before: Option<Offset>) -> Result<Offset, StorageError> {
        let offsets = self.offsets();
        let target = before.unwrap_or(offsets.high_watermark);
        if target.0 < 0 || target > offsets.high_watermark {
            return Err(StorageError::OffsetOutOfRange {
                offset: target,
                log_start: offsets.log_start_offset,
                log_end: offsets.high_watermark,
            });
        }
        self.log.delete_before(target)?;
        Ok(self.log.log_start_offset())
    }

    /// Applies the topic's retention at `now`; returns the records removed.
    pub fn apply_retention(&self, now: Timestamp) -> Result<u64, StorageError> {
        self.log.apply_retention(now)
    }

    /// Stores a producer snapshot at the log end if the log moved since the last one
    /// (Kafka writes one at each segment roll and at shutdown; the broker writes one on
    /// its retention tick and at shutdown). The state is captured under the producers
    /// lock, which every append holds, so it is exactly the state of the log below the
    /// offset; the log is flushed up to it before the snapshot is stored, so no restart
    /// finds a snapshot ahead of the durable log or of the aborted-transaction entries.
    /// Returns whether one was written. Blocking: call it off the async workers.
    pub fn snapshot_producers(&self) -> Result<bool, StorageError> {
        if self.offline {
            return Ok(false);
        }
        let (offset, bytes) = {
            let producers = self.producers.lock();
            let end = self.log.log_end_offset();
            if end.0 == self.snapshot_offset.load(Ordering::Acquire) {
                return Ok(false);
            }
            (end, producers.encode())
        };
        self.log.flush()?;
        self.log.write_producer_snapshot(ProducerSnapshot {
            offset,
            bytes: Bytes::from(bytes),
        })?;
        self.snapshot_offset.store(offset.0, Ordering::Release);
        Ok(true)
    }

    /// How the producer state was rebuilt when the partition opened.
    pub fn open_scan(&self) -> OpenScan {
        self.open_scan
    }

    /// Compacts the log as `plan` allows (the broker's cleaner task). Blocking.
    pub fn compact(
        &self,
        plan: &rafka_core::CompactionPlan,
    ) -> Result<rafka_core::CompactionStats, StorageError> {
        self.log.compact(plan)
    }

    /// The first batch whose max timestamp is at least `ts` (offset, timestamp).
    pub fn offset_for_timestamp(
        &self,
        ts: Timestamp,
    ) -> Result<Option<(Offset, Timestamp)>, StorageError> {
        self.log.offset_for_timestamp(ts)
    }

    /// The batch with the largest max timestamp (its last offset, the timestamp).
    pub fn max_timestamp(&self) -> Result<Option<(Offset, Timestamp)>, StorageError> {
        self.log.max_timestamp()
    }

    /// Bytes the partition's log occupies.
    pub fn size_bytes(&self) -> u64 {
        self.log.size_bytes()
    }

    /// Whether the topic stamps LogAppendTime.
    pub fn log_append_time(&self) -> bool {
        self.append_policy.read().log_append_time
    }

    /// What an append to this partition must check or change (timestamps, codec).
    pub fn append_policy(&self) -> AppendPolicy {
        *self.append_policy.read()
    }

    /// Applies a topic's new config to this partition.
    fn set_config(&self, cfg: LogConfig) {
        *self.append_policy.write() = AppendPolicy::of(&cfg);
        self.log.set_config(cfg);
    }

    /// Truncation or deletion invalidates remembered producer batches.
    pub fn reset_producers(&self) {
        self.producers.lock().clear();
    }
}

/// A long poll's registration on every partition it reads, woken by the next append to
/// any of them (and by nothing else). Take it *before* looking at the partitions: an
/// append between the look and the wait then still wakes it, so no wake-up is lost. It
/// holds one waiter per partition, released when it is dropped: bounded by the request.
pub struct AppendWaiter {
    waits: Vec<Pin<Box<OwnedNotified>>>,
}

impl AppendWaiter {
    /// Registers on `partitions`.
    pub fn register<'a>(partitions: impl IntoIterator<Item = &'a PartitionState>) -> Self {
        // A Notified future counts `notify_waiters` calls from its creation on, polled or
        // not: creating it is the registration.
        AppendWaiter {
            waits: partitions
                .into_iter()
                .map(|p| Box::pin(Arc::clone(&p.appended).notified_owned()))
                .collect(),
        }
    }

    /// Completes once any registered partition has taken an append since `register`; never,
    /// for an empty registration.
    ///
    /// # Cancel safety
    /// Cancel-safe: a wake-up that arrived stays recorded in the waiter.
    pub async fn any(&mut self) {
        std::future::poll_fn(|cx| {
            for w in &mut self.waits {
                if w.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(());
                }
            }
            Poll::Pending
        })
        .await
    }
}

/// The internal topic holding committed offsets and group metadata, written only by the
/// group coordinator.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The internal topic holding the transaction coordinator's state, written only by it.
pub const TRANSACTION_STATE_TOPIC: &str = crate::txn::records::TRANSACTION_STATE_TOPIC;

/// Whether a topic is internal (clients may read it but not write or delete it).
pub fn is_internal(topic: &str) -> bool {
    topic == OFFSETS_TOPIC || topic == TRANSACTION_STATE_TOPIC
}

/// A topic and its partitions.
pub struct Topic {
    /// Name.
    pub name: TopicName,
    /// Topic id (random, persisted).
    pub id: Uuid,
    /// Partitions by index.
    pub partitions: Vec<Arc<PartitionState>>,
    /// Config overrides set on the topic.
    pub configs: BTreeMap<String, String>,
}

impl Topic {
    /// The partition with this wire index, if the topic has it.
    pub fn partition(&self, index: i32) -> Option<&Arc<PartitionState>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }
}

/// Why a topic operation failed; mapped to Kafka error codes by the API handlers.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// Name exists.
    #[error("topic '{0}' already exists")]
    AlreadyExists(String),
    /// No such topic.
    #[error("unknown topic '{0}'")]
    Unknown(String),
    /// Partition count invalid.
    #[error("{0}")]
    InvalidPartitions(String),
    /// Config invalid.
    #[error("{0}")]
    InvalidConfig(String),
    /// Storage failure.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct PersistedTopic {
    name: String,
    id: Uuid,
    partitions: i32,
    #[serde(default)]
    configs: BTreeMap<String, String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct PersistedMeta {
    cluster_id: String,
    next_producer_id: i64,
    topics: Vec<PersistedTopic>,
}

/// Producer ids are handed out from blocks persisted ahead of use, so ids never repeat
/// across restarts even after a crash.
const PRODUCER_ID_BLOCK: i64 = 1000;

struct ProducerIds {
    next: i64,
    persisted_limit: i64,
}

/// How a request names a topic: by name, or (Fetch v13+ and others) by id.
#[derive(Debug, Clone, Copy)]
pub enum TopicKey<'n> {
    Name(&'n str),
    Id(Uuid),
}

/// The broker's topics, found by name or by id with one hash lookup each (every Produce
/// and Fetch entry is one), and listed in name order for the answers that list them.
/// The three indexes change together, in `insert` and `remove` only.
#[derive(Default)]
struct TopicMap {
    by_name: HashMap<TopicName, Arc<Topic>>,
    by_id: HashMap<Uuid, Arc<Topic>>,
    in_order: BTreeMap<TopicName, Arc<Topic>>,
}

impl TopicMap {
    fn get(&self, name: &str) -> Option<&Arc<Topic>> {
        self.by_name.get(name)
    }

    fn by_id(&self, id: Uuid) -> Option<&Arc<Topic>> {
        self.by_id.get(&id)
    }

    fn contains_key(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Adds `topic`, or replaces the one of its name (a new partition count or configs;
    /// the id stays).
    fn insert(&mut self, topic: Arc<Topic>) {
        if let Some(old) = self.by_name.insert(topic.name.clone(), topic.clone()) {
            self.by_id.remove(&old.id);
        }
        self.by_id.insert(topic.id, topic.clone());
        self.in_order.insert(topic.name.clone(), topic);
    }

    fn remove(&mut self, name: &str) -> Option<Arc<Topic>> {
        let topic = self.by_name.remove(name)?;
        self.by_id.remove(&topic.id);
        self.in_order.remove(name);
        Some(topic)
    }

    /// Every topic, in name order.
    fn values(&self) -> impl Iterator<Item = &Arc<Topic>> {
        self.in_order.values()
    }
}

/// Everything the API handlers share.
pub struct Cluster {
    engine: Arc<dyn StorageEngine>,
    defaults: LogConfig,
    /// `log.cleanup.policy`: the `cleanup.policy` of topics that set none.
    default_cleanup_policy: String,
    /// Changed only under `admin`.
    topics: RwLock<TopicMap>,
    /// Serialises topic creation/deletion/alteration and the metadata file.
    admin: Mutex<()>,
    producer_ids: Mutex<ProducerIds>,
    meta_path: Option<PathBuf>,
    cluster_id: String,
}

impl Cluster {
    /// Loads persisted topics and opens every partition the engine has.
    pub fn open(
        engine: Arc<dyn StorageEngine>,
        defaults: LogConfig,
        default_cleanup_policy: String,
        meta_path: Option<PathBuf>,
    ) -> Result<Cluster, TopicError> {
        let mut meta = match &meta_path {
            Some(p) if p.exists() => {
                let text = std::fs::read_to_string(p).map_err(StorageError::Io)?;
                serde_yaml::from_str::<PersistedMeta>(&text).map_err(|e| {
                    StorageError::Io(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: {e}", p.display()),
                    ))
                })?
            }
            _ => PersistedMeta::default(),
        };
        if meta.cluster_id.is_empty() {
            meta.cluster_id = Uuid::new_v4().simple().to_string()[..22].to_string();
        }
        // Partitions the engine has but the metadata file does not name (e.g. the file was
        // lost) become topics with default configs and a fresh id.
        let mut counts: BTreeMap<String, i32> = BTreeMap::new();
        for tp in engine.partitions()? {
            let c = counts.entry(tp.topic.to_string()).or_default();
            *c = (*c).max(tp.partition.0 + 1);
        }
        for (name, n) in counts {
            match meta.topics.iter_mut().find(|t| t.name == name) {
                Some(t) => t.partitions = t.partitions.max(n),
                None => meta.topics.push(PersistedTopic {
                    name,
                    id: Uuid::new_v4(),
                    partitions: n,
                    configs: BTreeMap::new(),
                }),
            }
        }
        let mut topics = TopicMap::default();
        for t in &meta.topics {
            let Ok(name) = TopicName::new(&t.name) else {
                tracing::warn!(topic = %t.name, "skipping persisted topic with an invalid name");
                continue;
            };
            let cfg = topic_config::log_config(
                &defaults,
                &topic_config::with_default_policy(&t.configs, &default_cleanup_policy),
            );
            let mut partitions = Vec::new();
            for p in 0..t.partitions {
                let tp = TopicPartition::new(name.clone(), p);
                partitions.push(Arc::new(PartitionState::open_or_offline(
                    engine.as_ref(),
                    tp,
                    &cfg,
                )));
            }
            topics.insert(Arc::new(Topic {
                name,
                id: t.id,
                partitions,
                configs: t.configs.clone(),
            }));
        }
        let scans: Vec<OpenScan> = topics
            .values()
            .flat_map(|t: &Arc<Topic>| t.partitions.iter().map(|p| p.open_scan()))
            .collect();
        tracing::info!(
            partitions = scans.len(),
            from_producer_snapshots = scans.iter().filter(|s| s.from_snapshot).count(),
            batches_replayed = scans.iter().map(|s| s.n_batches).sum::<u64>(),
            "rebuilt producer state"
        );
        let next_pid = meta.next_producer_id.max(0) + PRODUCER_ID_BLOCK;
        let cluster = Cluster {
            engine,
            defaults,
            default_cleanup_policy,
            topics: RwLock::new(topics),
            admin: Mutex::new(()),
            producer_ids: Mutex::new(ProducerIds {
                next: next_pid,
                persisted_limit: next_pid,
            }),
            meta_path,
            cluster_id: meta.cluster_id,
        };
        {
            let _g = cluster.admin.lock();
            cluster.persist()?;
        }
        Ok(cluster)
    }

    /// The storage engine.
    pub fn engine(&self) -> &Arc<dyn StorageEngine> {
        &self.engine
    }

    /// Broker-wide log defaults.
    pub fn defaults(&self) -> &LogConfig {
        &self.defaults
    }

    /// `log.cleanup.policy`: the `cleanup.policy` of topics that set none.
    pub fn default_cleanup_policy(&self) -> &str {
        &self.default_cleanup_policy
    }

    /// The value topic config `name` has where a topic does not set it.
    pub fn default_topic_value(&self, name: &str) -> String {
        match name {
            "cleanup.policy" => self.default_cleanup_policy.clone(),
            _ => topic_config::default_value(name, &self.defaults),
        }
    }

    /// The log settings of a topic with these overrides.
    pub(crate) fn log_config(&self, overrides: &BTreeMap<String, String>) -> LogConfig {
        topic_config::log_config(
            &self.defaults,
            &topic_config::with_default_policy(overrides, &self.default_cleanup_policy),
        )
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// A topic by name (an invalid name is no topic's).
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    /// The topics `keys` name, in order, under one look at the map (a fetch of many
    /// topics takes the lock once, not once per topic).
    pub fn topics_for<'n>(
        &self,
        keys: impl ExactSizeIterator<Item = TopicKey<'n>>,
    ) -> Vec<Option<Arc<Topic>>> {
        let mut found = Vec::with_capacity(keys.len());
        let map = self.topics.read();
        found.extend(keys.map(|k| {
            match k {
                TopicKey::Name(name) => map.get(name),
                TopicKey::Id(id) => map.by_id(id),
            }
            .cloned()
        }));
        found
    }

    /// A topic by id.
    pub fn topic_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.topics.read().by_id(id).cloned()
    }

    /// All topics, by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics.read().values().cloned().collect()
    }

    /// Every partition of every topic.
    pub fn all_partitions(&self) -> Vec<Arc<PartitionState>> {
        self.topics
            .read()
            .values()
            .flat_map(|t| t.partitions.iter().cloned())
            .collect()
    }

    /// Number of partitions open.
    pub fn partition_count(&self) -> usize {
        self.topics
            .read()
            .values()
            .map(|t| t.partitions.len())
            .sum()
    }

    /// Opens internal topic `name` (`__consumer_offsets`, `__transaction_state`), creating
    /// it with `partitions` as a compacted topic of `segment_bytes` segments, as Kafka
    /// creates them. One created before Rafka compacted them (no `cleanup.policy`) gets
    /// those configs added.
    pub(crate) fn open_internal_topic(
        &self,
        name: &str,
        partitions: i32,
        segment_bytes: u64,
    ) -> Result<Arc<Topic>, TopicError> {
        let name = TopicName::new(name).map_err(|e| TopicError::InvalidConfig(e.to_string()))?;
        match self.topic(name.as_str()) {
            None => {
                let configs = BTreeMap::from([
                    ("cleanup.policy".to_string(), "compact".to_string()),
                    ("segment.bytes".to_string(), segment_bytes.to_string()),
                ]);
                self.create_topic(&name, partitions, configs, false)
            }
            Some(t) if t.configs.contains_key("cleanup.policy") => Ok(t),
            Some(t) => {
                let mut configs = t.configs.clone();
                configs.insert("cleanup.policy".to_string(), "compact".to_string());
                configs
                    .entry("segment.bytes".to_string())
                    .or_insert_with(|| segment_bytes.to_string());
                self.set_topic_configs(&name, configs)?;
                tracing::info!(topic = %name, "internal topic now compacted");
                self.topic(name.as_str())
                    .ok_or_else(|| TopicError::Unknown(name.to_string()))
            }
        }
    }

    /// Creates a topic. With `validate_only`, checks everything and creates nothing.
    pub fn create_topic(
        &self,
        name: &TopicName,
        partitions: i32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, TopicError> {
        if !(1..=rafka_core::limits::PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
            return Err(TopicError::InvalidPartitions(format!(
                "Number of partitions must be in [1, {}], got {partitions}",
                rafka_core::limits::PARTITIONS_PER_TOPIC_MAX
            )));
        }
        for (k, v) in &configs {
            topic_config::validate(k, v).map_err(|e| TopicError::InvalidConfig(e.0))?;
        }
        let _g = self.admin.lock();
        if self.topics.read().contains_key(name.as_str()) {
            return Err(TopicError::AlreadyExists(name.to_string()));
        }
        let cfg = self.log_config(&configs);
        if validate_only {
            return Ok(Arc::new(Topic {
                name: name.clone(),
                id: Uuid::nil(),
                partitions: Vec::new(),
                configs,
            }));
        }
        let parts = off_the_runtime(|| {
            (0..partitions)
                .map(|p| {
                    let tp = TopicPartition::new(name.clone(), p);
                    let log = self.engine.open(&tp, &cfg)?;
                    Ok(Arc::new(PartitionState::open(log, tp, &cfg)?))
                })
                .collect::<Result<Vec<_>, StorageError>>()
        })?;
        let topic = Arc::new(Topic {
            name: name.clone(),
            id: Uuid::new_v4(),
            partitions: parts,
            configs,
        });
        self.topics.write().insert(topic.clone());
        self.persist()?;
        tracing::info!(topic = %name, partitions, "created topic");
        Ok(topic)
    }

    /// Deletes a topic and its data.
    pub fn delete_topic(&self, name: &TopicName) -> Result<Arc<Topic>, TopicError> {
        let _g = self.admin.lock();
        let topic = self
            .topics
            .write()
            .remove(name.as_str())
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        self.persist()?;
        for p in &topic.partitions {
            self.engine.remove(&p.tp)?;
        }
        tracing::info!(topic = %name, "deleted topic");
        Ok(topic)
    }

    /// Grows a topic to `count` partitions; how many it adds (or would, `validate_only`).
    pub fn create_partitions(
        &self,
        name: &TopicName,
        count: i32,
        validate_only: bool,
    ) -> Result<usize, TopicError> {
        let _g = self.admin.lock();
        let topic = self
            .topics
            .read()
            .get(name.as_str())
            .cloned()
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let current = topic.partitions.len() as i32;
        if count <= current {
            return Err(TopicError::InvalidPartitions(format!(
                "Topic currently has {current} partitions, which is higher than or equal to the requested {count}."
            )));
        }
        if count > rafka_core::limits::PARTITIONS_PER_TOPIC_MAX {
            return Err(TopicError::InvalidPartitions(format!(
                "Number of partitions must be at most {}",
                rafka_core::limits::PARTITIONS_PER_TOPIC_MAX
            )));
        }
        let added = (count - current) as usize;
        if validate_only {
            return Ok(added);
        }
        let cfg = self.log_config(&topic.configs);
        let mut parts = topic.partitions.clone();
        off_the_runtime(|| {
            for p in current..count {
                let tp = TopicPartition::new(name.clone(), p);
                let log = self.engine.open(&tp, &cfg)?;
                parts.push(Arc::new(PartitionState::open(log, tp, &cfg)?));
            }
            Ok::<_, StorageError>(())
        })?;
        let new = Arc::new(Topic {
            name: topic.name.clone(),
            id: topic.id,
            partitions: parts,
            configs: topic.configs.clone(),
        });
        self.topics.write().insert(new);
        self.persist()?;
        Ok(added)
    }

    /// Replaces a topic's config overrides (already validated by the caller).
    pub fn set_topic_configs(
        &self,
        name: &TopicName,
        configs: BTreeMap<String, String>,
    ) -> Result<(), TopicError> {
        for (k, v) in &configs {
            topic_config::validate(k, v).map_err(|e| TopicError::InvalidConfig(e.0))?;
        }
        let _g = self.admin.lock();
        let topic = self
            .topics
            .read()
            .get(name.as_str())
            .cloned()
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let cfg = self.log_config(&configs);
        for p in &topic.partitions {
            p.set_config(cfg.clone());
        }
        let new = Arc::new(Topic {
            name: topic.name.clone(),
            id: topic.id,
            partitions: topic.partitions.clone(),
            configs,
        });
        self.topics.write().insert(new);
        self.persist()?;
        Ok(())
    }

    /// A new producer id, never handed out before on this data directory.
    pub fn next_producer_id(&self) -> Result<i64, StorageError> {
        let mut ids = self.producer_ids.lock();
        let id = ids.next;
        ids.next += 1;
        if ids.next >= ids.persisted_limit {
            ids.persisted_limit = ids.next + PRODUCER_ID_BLOCK;
            drop(ids);
            let _g = self.admin.lock();
            self.persist()?;
        }
        Ok(id)
    }

    /// Writes the metadata file atomically. Caller holds `admin`.
    fn persist(&self) -> Result<(), StorageError> {
        let Some(path) = &self.meta_path else {
            return Ok(());
        };
        let meta = PersistedMeta {
            cluster_id: self.cluster_id.clone(),
            next_producer_id: self.producer_ids.lock().persisted_limit,
            topics: self
                .topics
                .read()
                .values()
                .map(|t| PersistedTopic {
                    name: t.name.to_string(),
                    id: t.id,
                    partitions: t.partitions.len() as i32,
                    configs: t.configs.clone(),
                })
                .collect(),
        };
        let text = serde_yaml::to_string(&meta)
            .map_err(|e| StorageError::Io(std::io::Error::other(e.to_string())))?;
        write_atomically(path, text.as_bytes())?;
        Ok(())
    }
}

/// Temp file, fsync, rename, fsync of the directory.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// The log of a partition whose storage failed to open: it holds nothing and refuses every
/// read and write with [`StorageError::Offline`].
struct OfflineLog(String);

impl OfflineLog {
    fn refuse(&self) -> StorageError {
        StorageError::Offline(self.0.clone())
    }
}

impl PartitionLog for OfflineLog {
    fn append(&self, _: ValidatedBatch) -> Result<AppendInfo, StorageError> {
        Err(self.refuse())
    }

    fn read(&self, _: Offset, _: usize) -> Result<rafka_core::ReadResult, StorageError> {
        Err(self.refuse())
    }

    fn log_start_offset(&self) -> Offset {
        Offset(0)
    }

    fn log_end_offset(&self) -> Offset {
        Offset(0)
    }

    fn offset_for_timestamp(
        &self,
        _: rafka_core::Timestamp,
    ) -> Result<Option<(Offset, rafka_core::Timestamp)>, StorageError> {
        Err(self.refuse())
    }

    fn max_timestamp(&self) -> Result<Option<(Offset, rafka_core::Timestamp)>, StorageError> {
        Err(self.refuse())
    }

    fn delete_before(&self, _: Offset) -> Result<(), StorageError> {
        Err(self.refuse())
    }

    fn truncate_after(&self, _: Offset) -> Result<(), StorageError> {
        Err(self.refuse())
    }

    fn flush(&self) -> Result<(), StorageError> {
        Ok(())
    }

    fn apply_retention(&self, _: rafka_core::Timestamp) -> Result<u64, StorageError> {
        Ok(0)
    }

    fn size_bytes(&self) -> u64 {
        0
    }

    fn set_config(&self, _: LogConfig) {}

    fn record_aborted_txn(&self, _: rafka_core::AbortedTxn) -> Result<(), StorageError> {
        Err(self.refuse())
    }

    fn aborted_txns(
        &self,
        _: Offset,
        _: Offset,
    ) -> Result<Vec<rafka_core::AbortedTxn>, StorageError> {
        Err(self.refuse())
    }

    fn write_producer_snapshot(&self, _: rafka_core::ProducerSnapshot) -> Result<(), StorageError> {
        Err(self.refuse())
    }

    fn producer_snapshot(&self) -> Result<Option<rafka_core::ProducerSnapshot>, StorageError> {
        Err(self.refuse())
    }
}

/// Runs storage work that may take seconds (creating a thousand partitions: files and
/// directory fsyncs) so that it never holds up other connections' tasks: on a
/// multi-threaded runtime the worker hands its queued tasks to the others first
/// (`block_in_place`); anywhere else it simply runs.
fn off_the_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Waker};

    use rafka_core::batch::BatchBuilder;
    use rafka_storage::{MemoryEngine, MemoryOptions};

    use super::*;

    /// `n` partitions of topic `t` on a memory engine without a directory.
    fn partitions(n: i32) -> Vec<PartitionState> {
        let engine = MemoryEngine::open(MemoryOptions::default(), LogConfig::default())
            .expect("memory engine");
        let name = TopicName::new("t").expect("name");
        (0..n)
            .map(|i| {
                let tp = TopicPartition::new(name.clone(), i);
                PartitionState::open_or_offline(&engine, tp, &LogConfig::default())
            })
            .collect()
    }

    fn batch(n: usize) -> ValidatedBatch {
        let mut b = BatchBuilder::new(Offset(0));
        for i in 0..n {
            b = b.kv(
                b"k",
                format!("v{i}").as_bytes(),
                Timestamp(1_000 + i as i64),
            );
        }
        ValidatedBatch::new(b.build()).expect("valid")
    }

    /// Polls `w.any()` once: whether it has been woken.
    fn woken(w: &mut AppendWaiter) -> bool {
        let fut = std::pin::pin!(w.any());
        fut.poll(&mut Context::from_waker(Waker::noop())).is_ready()
    }

    #[test]
    fn topics_are_found_by_id_after_create_delete_and_reopen() {
        let dir = tempfile::tempdir().expect("dir");
        let open = || {
            let mut config = crate::config::Config::default();
            config.storage.storage_type = "log".into();
            config.storage.path = dir.path().to_path_buf();
            let engine = rafka_storage::open_engine(&config.storage).expect("engine");
            let meta = dir.path().join("rafka-topics.yaml");
            Cluster::open(engine, LogConfig::default(), "delete".into(), Some(meta)).expect("open")
        };
        let cluster = open();
        let name = |s: &str| TopicName::new(s).expect("name");
        let create = |c: &Cluster, s: &str| {
            c.create_topic(&name(s), 2, BTreeMap::new(), false)
                .expect("create")
        };
        let (a, b) = (create(&cluster, "a"), create(&cluster, "b"));
        let found = |c: &Cluster, id| c.topic_by_id(id).map(|t| t.name.to_string());
        assert_eq!(found(&cluster, a.id), Some("a".into()));
        assert_eq!(found(&cluster, b.id), Some("b".into()));
        assert_eq!(found(&cluster, Uuid::new_v4()), None);
        cluster.delete_topic(&name("a")).expect("delete");
        assert_eq!(found(&cluster, a.id), None);
        // Recreated under the same name: a new id; the old one finds nothing.
        let a2 = create(&cluster, "a");
        assert_eq!(found(&cluster, a.id), None);
        assert_eq!(found(&cluster, a2.id), Some("a".into()));
        // A config change keeps the id.
        let configs = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
        cluster
            .set_topic_configs(&name("b"), configs)
            .expect("configs");
        assert_eq!(found(&cluster, b.id), Some("b".into()));
        // By id, by name and in the listing alike: the topic as changed.
        let by_id = cluster.topic_by_id(b.id).expect("b by id");
        assert_eq!(
            by_id.configs.get("retention.ms").map(String::as_str),
            Some("1000")
        );
        cluster
            .create_partitions(&name("b"), 5, false)
            .expect("partitions");
        let by_id = cluster.topic_by_id(b.id).expect("b by id");
        let by_name = cluster.topic("b").expect("b by name");
        assert_eq!((by_id.partitions.len(), by_name.partitions.len()), (5, 5));
        assert!(Arc::ptr_eq(&by_id, &by_name));
        // Listed in name order, whatever the order of creation.
        let _ = (
            create(&cluster, "_z"),
            create(&cluster, "B"),
            create(&cluster, "a.b"),
        );
        let listed: Vec<String> = cluster
            .topics()
            .iter()
            .map(|t| t.name.to_string())
            .collect();
        assert_eq!(listed, ["B", "_z", "a", "a.b", "b"]);
        let listed_parts: Vec<usize> = cluster
            .topics()
            .iter()
            .map(|t| t.partitions.len())
            .collect();
        assert_eq!(listed_parts, [2, 2, 2, 2, 5]);
        drop(cluster);
        let reopened = open();
        assert_eq!(found(&reopened, a2.id), Some("a".into()));
        assert_eq!(found(&reopened, b.id), Some("b".into()));
        assert_eq!(found(&reopened, a.id), None);
    }

    #[test]
    fn a_waiter_wakes_on_its_partitions_only() {
        let p = partitions(3);
        let mut w = AppendWaiter::register([&p[0], &p[1]]);
        assert!(!woken(&mut w), "nothing appended yet");
        p[2].append(batch(1)).expect("append");
        assert!(!woken(&mut w), "woken by a partition it does not watch");
        p[1].append(batch(1)).expect("append");
        assert!(woken(&mut w), "not woken by a partition it watches");
    }

    #[test]
    fn an_append_between_register_and_wait_is_not_lost() {
        let p = partitions(1);
        let mut w = AppendWaiter::register([&p[0]]);
        // The look that decides to wait would happen here; then the append, then the wait.
        p[0].append(batch(2)).expect("append");
        assert!(woken(&mut w));
        // A fresh registration does not see the old append.
        let mut again = AppendWaiter::register([&p[0]]);
        assert!(!woken(&mut again));
        assert!(!woken(&mut AppendWaiter::register([])), "empty: never");
    }

    #[test]
    fn offsets_and_epoch_come_from_one_place() {
        let p = partitions(1);
        let p = &p[0];
        let o = p.offsets();
        assert_eq!(
            (
                o.log_start_offset,
                o.log_end_offset,
                o.high_watermark,
                o.last_stable_offset
            ),
            (Offset(0), Offset(0), Offset(0), Offset(0))
        );
        p.append(batch(3)).expect("append");
        p.append(batch(2)).expect("append");
        assert_eq!(p.log_end_offset(), Offset(5));
        assert_eq!(p.high_watermark(), Offset(5));
        assert_eq!(p.last_stable_offset(), Offset(5));
        for iso in [
            IsolationLevel::ReadUncommitted,
            IsolationLevel::ReadCommitted,
        ] {
            let r = p.read(Offset(1), 1 << 20, iso).expect("read");
            let got = RecordBatch::split_all(r.records).expect("whole batches");
            let bases: Vec<_> = got.iter().map(|b| b.base_offset()).collect();
            assert_eq!(bases, [Offset(0), Offset(3)]);
            assert!(got
                .iter()
                .all(|b| b.partition_leader_epoch() == p.leader_epoch()));
            assert_eq!(r.offsets, p.offsets());
        }
        assert_eq!(
            p.delete_records(Some(Offset(3))).expect("delete"),
            Offset(3)
        );
        assert!(matches!(
            p.delete_records(Some(Offset(6))),
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        assert_eq!(p.delete_records(None).expect("delete to HW"), Offset(5));
    }

    #[test]
    fn reads_are_cut_at_the_limit_in_whole_batches() {
        let p = partitions(1);
        for n in [3, 2, 4] {
            p[0].append(batch(n)).expect("append");
        }
        let all = p[0]
            .read(Offset(0), 1 << 20, IsolationLevel::ReadCommitted)
            .expect("read")
            .records;
        let check = |limit: i64, n_batches: usize| {
            let cut = batches_below(all.clone(), Offset(limit));
            let got = RecordBatch::split_all(cut).expect("whole batches");
            assert_eq!(got.len(), n_batches, "limit {limit}");
            assert!(got.iter().all(|b| b.last_offset() < Offset(limit)));
        };
        check(0, 0);
        check(2, 0); // inside the first batch: none of it
        check(3, 1);
        check(4, 1);
        check(5, 2);
        check(9, 3);
        check(100, 3);
        // A trailing partial batch (a max_bytes cut) is left out too.
        let partial = all.slice(..all.len() - 1);
        let got = RecordBatch::split_all(batches_below(partial, Offset(100))).expect("whole");
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn a_reader_at_its_limit_is_answered_as_a_read_would_be() {
        let dir = tempfile::tempdir().expect("dir");
        let (_engine, p) = log_partition(dir.path());
        p.append(producer_batch(1, 0, false)).expect("append");
        // An open transaction at offset 1: HW 2, LSO 1.
        p.append(producer_batch(2, 0, true)).expect("append");
        for (isolation, limit) in [
            (IsolationLevel::ReadUncommitted, 2),
            (IsolationLevel::ReadCommitted, 1),
        ] {
            let fast = p.caught_up(Offset(limit), isolation).expect("at the limit");
            let read = p.read(Offset(limit), 1 << 20, isolation).expect("read");
            assert!(fast.records.is_empty() && read.records.is_empty());
            assert_eq!(fast.offsets, read.offsets, "{isolation:?}");
            assert_eq!(fast.aborted, read.aborted);
            for other in [0, 1, 2, 3].into_iter().filter(|o| *o != limit) {
                assert!(
                    p.caught_up(Offset(other), isolation).is_none(),
                    "{isolation:?} from {other}"
                );
            }
        }
        let tp = TopicPartition::new(TopicName::new("t").expect("name"), 1);
        let scan = OpenScan {
            from: Offset(0),
            n_batches: 0,
            from_snapshot: false,
        };
        let offline = PartitionState::new(
            tp.clone(),
            Arc::new(OfflineLog(tp.to_string())),
            ProducerStates::default(),
            &LogConfig::default(),
            true,
            scan,
        );
        assert!(
            offline
                .caught_up(Offset(0), IsolationLevel::ReadUncommitted)
                .is_none(),
            "an offline partition answers its error, from read"
        );
    }

    /// Opens partition `t-0` of a log engine in `dir` (an earlier engine on it dropped).
    fn log_partition(dir: &std::path::Path) -> (Arc<dyn StorageEngine>, PartitionState) {
        let engine: Arc<dyn StorageEngine> = Arc::new(
            rafka_storage::LogEngine::open(
                dir.to_path_buf(),
                LogConfig {
                    segment_bytes: 4096,
                    ..LogConfig::default()
                },
            )
            .expect("log engine"),
        );
        let tp = TopicPartition::new(TopicName::new("t").expect("name"), 0);
        let p = PartitionState::open_or_offline(engine.as_ref(), tp, &LogConfig::default());
        assert!(!p.is_offline());
        (engine, p)
    }

    fn producer_batch(pid: i64, seq: i32, transactional: bool) -> ValidatedBatch {
        let mut b = BatchBuilder::new(Offset(0)).producer(pid, 0, seq);
        if transactional {
            b = b.transactional();
        }
        let b = b.kv(b"k", &[1u8; 100], Timestamp(1_000)).build();
        ValidatedBatch::new(b).expect("valid")
    }

    /// What a restarted partition answers: producers, offsets, the read_committed view and
    /// its aborted list, and the answer to a resent batch.
    fn answers(p: &PartitionState, resend: ValidatedBatch) -> impl PartialEq + std::fmt::Debug {
        let r = p
            .read(Offset(0), 1 << 20, IsolationLevel::ReadCommitted)
            .expect("read");
        let dup = match p.append(resend).expect("resend") {
            Appended::Duplicate(o) => Some(o),
            Appended::New(_) => None,
        };
        (
            p.describe_producers(),
            p.offsets(),
            r.records.len(),
            r.aborted,
            dup,
        )
    }

    /// A partition that opens with a producer snapshot replays only the batches after its
    /// offset, and answers exactly as one that replays the whole log (the snapshot damaged).
    #[test]
    fn a_producer_snapshot_bounds_the_replay_and_changes_no_answer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (n_before, n_after, snapshot_at) = {
            let (_engine, p) = log_partition(dir.path());
            // Idempotent producer 5; transactions of 1 (aborted) and 2 (committed); then 3
            // opens a transaction left open across the snapshot.
            let mut n = 0u64;
            for seq in 0..10 {
                p.append(producer_batch(5, seq, false)).expect("append");
                n += 1;
            }
            for seq in 0..3 {
                p.append(producer_batch(1, seq, true)).expect("append");
                p.append(producer_batch(2, seq, true)).expect("append");
                n += 2;
            }
            p.write_marker(1, 0, 0, false).expect("abort");
            p.write_marker(2, 0, 0, true).expect("commit");
            p.append(producer_batch(3, 0, true)).expect("append");
            n += 3;
            assert!(p.snapshot_producers().expect("snapshot"));
            assert!(
                !p.snapshot_producers().expect("nothing new"),
                "written twice"
            );
            let at = p.log_end_offset();
            // After the snapshot: 3's transaction aborted, 4 opens one and leaves it open,
            // 5 goes on.
            let mut m = 0u64;
            for seq in 1..4 {
                p.append(producer_batch(3, seq, true)).expect("append");
                p.append(producer_batch(4, seq - 1, true)).expect("append");
                p.append(producer_batch(5, 9 + seq, false)).expect("append");
                m += 3;
            }
            p.write_marker(3, 0, 0, false).expect("abort");
            m += 1;
            // Dropped without shutdown: a crash.
            (n, m, at)
        };
        let resend = || producer_batch(5, 12, false);
        let with_snapshot = {
            let (_engine, p) = log_partition(dir.path());
            assert_eq!(
                p.open_scan(),
                OpenScan {
                    from: snapshot_at,
                    n_batches: n_after,
                    from_snapshot: true
                }
            );
            let a = answers(&p, resend());
            // 4's transaction is open from its first batch: the LSO stops there.
            assert_eq!(p.last_stable_offset(), snapshot_at.plus(1));
            a
        };
        // Damage the snapshot: its CRC fails, the whole log is replayed.
        let pdir = dir.path().join("t-0");
        let snap = std::fs::read_dir(&pdir)
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .find(|p| p.extension().is_some_and(|e| e == "snapshot"))
            .expect("a snapshot file");
        let mut bytes = std::fs::read(&snap).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&snap, bytes).expect("write");
        let (_engine, p) = log_partition(dir.path());
        assert_eq!(
            p.open_scan(),
            OpenScan {
                from: Offset(0),
                n_batches: n_before + n_after,
                from_snapshot: false
            }
        );
        assert_eq!(answers(&p, resend()), with_snapshot);
        let aborted = p
            .read(Offset(0), 1 << 20, IsolationLevel::ReadCommitted)
            .expect("read")
            .aborted;
        let ids: Vec<_> = aborted
            .iter()
            .map(|a| (a.producer_id, a.first_offset))
            .collect();
        assert_eq!(ids, [(1, Offset(10)), (3, Offset(18))]);
    }

    #[test]
    fn isolation_level_from_the_wire() {
        assert_eq!(
            IsolationLevel::from_wire(0),
            IsolationLevel::ReadUncommitted
        );
        assert_eq!(IsolationLevel::from_wire(1), IsolationLevel::ReadCommitted);
        assert_eq!(
            IsolationLevel::from_wire(7),
            IsolationLevel::ReadUncommitted
        );
    }
}
