//! The transaction coordinator's state machine, sans IO.
//!
//! One entry per transactional id holds what `__transaction_state` says about it (a
//! [`TxnLogValue`]) plus what Kafka keeps only in memory: the epoch before the last bump
//! (for InitProducerId retries), whether a fence failed to be written, and the operation in
//! flight. While an operation is in flight (a record handed out for appending, markers
//! being written) every other operation on the id is answered CONCURRENT_TRANSACTIONS, as
//! Kafka's pending state does.
//!
//! A state change becomes visible only once its record is appended: an operation that
//! changes state returns [`Step::Append`] with the record; the IO layer appends it (and
//! flushes it per the durability settings), then calls [`TransactionCoordinator::appended`]
//! with the outcome, which applies the change and gives the answer and any [`Effect`].
//! A failed append changes nothing (except a failed fence, see `Purpose::Fence`).
//!
//! Transitions follow Kafka's `TransactionMetadata` (valid previous states, epoch rules,
//! the previous/next producer ids of KIP-890) and the checks of its
//! `TransactionCoordinator`, in the same order, so each refusal gets Kafka's error.
//!
//! Thread-safety: none inside; the broker keeps the coordinator under one lock and calls
//! it without awaiting.

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;

use bytes::Bytes;

use super::records::{partition_for, TopicPart, TxnLogRecord, TxnLogValue, TxnState};
use super::{
    AppendFailure, ProducerIdAndEpoch, TransactionVersion, TxnConfig, TxnError, TxnResult,
};

/// No producer id.
const NO_PRODUCER_ID: i64 = -1;
/// No producer epoch.
const NO_PRODUCER_EPOCH: i16 = -1;

/// Kafka never hands out the last two epochs of a producer id, so the coordinator can
/// always fence: at `i16::MAX - 1` a new producer id is due.
fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// Topic whose partitions hold committed offsets.
const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// An InitProducerId with a transactional id, as the request carries it.
#[derive(Debug, Clone, Copy)]
pub struct InitProducerId<'a> {
    /// Transactional id.
    pub transactional_id: &'a str,
    /// `transaction.timeout.ms`.
    pub transaction_timeout_ms: i32,
    /// KIP-360: the producer id the client has (-1: none).
    pub producer_id: i64,
    /// KIP-360: the epoch the client has (-1: none).
    pub producer_epoch: i16,
}

/// What an operation needs from the IO layer.
#[must_use]
#[derive(Debug)]
pub enum Step<T> {
    /// Answer now; nothing to write.
    Done(Result<T, TxnError>),
    /// Append the record, then call [`TransactionCoordinator::appended`] for the answer.
    Append(Pending<T>),
}

/// A record to append to `__transaction_state` before an operation takes effect. `T` is
/// the answer the operation gives once appended.
#[must_use = "append the record, then report it with `appended`"]
#[derive(Debug)]
pub struct Pending<T> {
    /// The record, decoded.
    pub record: TxnLogRecord,
    /// Its key bytes.
    pub key: Bytes,
    /// Its value bytes (`None`: a tombstone).
    pub value: Option<Bytes>,
    /// The `__transaction_state` partition to append to.
    pub partition: i32,
    token: u64,
    _answer: PhantomData<fn() -> T>,
}

/// Work for the IO layer that follows an append.
#[derive(Debug)]
pub enum Effect {
    /// Write these markers, then call [`TransactionCoordinator::markers_written`].
    WriteMarkers(WriteMarkers),
    /// Append this record, then call [`TransactionCoordinator::appended`].
    Append(Pending<()>),
}

/// Commit or abort markers to write, one control batch per partition, as Kafka's
/// WriteTxnMarkers carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteMarkers {
    /// The transactional id the markers finish.
    pub transactional_id: String,
    /// Producer id of the transaction.
    pub producer_id: i64,
    /// Epoch of the markers: the transaction's epoch, bumped under transaction version 2
    /// and when the coordinator fenced the producer, so the marker fences older batches.
    pub producer_epoch: i16,
    /// The coordinator epoch (leader epoch of the `__transaction_state` partition).
    pub coordinator_epoch: i32,
    /// Commit or abort.
    pub result: TxnResult,
    /// Partitions of the transaction (including `__consumer_offsets` partitions).
    pub partitions: BTreeSet<TopicPart>,
    /// The transaction version the transaction ended with.
    pub transaction_version: TransactionVersion,
    token: u64,
}

/// What [`TransactionCoordinator::appended`] gives back.
#[derive(Debug)]
pub struct Appended<T> {
    /// The answer owed to the operation that produced the record.
    pub answer: Result<T, TxnError>,
    /// Work that follows (markers to write, a record to append).
    pub effects: Vec<Effect>,
}

/// An answer type of an operation that appends.
pub trait Reply: Sized {
    /// The answer from the producer id and epoch the client continues with.
    fn from_ids(ids: ProducerIdAndEpoch) -> Self;
}

impl Reply for () {
    fn from_ids(_: ProducerIdAndEpoch) {}
}

impl Reply for ProducerIdAndEpoch {
    fn from_ids(ids: ProducerIdAndEpoch) -> Self {
        ids
    }
}

/// A transactional id as DescribeTransactions shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnDescription {
    /// Transactional id.
    pub transactional_id: String,
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// State.
    pub state: TxnState,
    /// `transaction.timeout.ms`.
    pub transaction_timeout_ms: i32,
    /// When the transaction started (ms), or -1.
    pub transaction_start_time_ms: i64,
    /// Partitions in the transaction.
    pub partitions: BTreeSet<TopicPart>,
}

/// The filters of ListTransactions; each empty or negative filter lets everything through
/// (the default lets everything through).
#[derive(Debug, Clone)]
pub struct ListFilter {
    /// State names (Kafka's spelling); names that match no state come back in
    /// [`TxnListing::unknown_state_filters`].
    pub states: Vec<String>,
    /// Producer ids.
    pub producer_ids: Vec<i64>,
    /// v1+: only transactions running longer than this (ms); negative: no filter.
    pub duration_ms: i64,
    /// v2+ (KIP-1152): transactional ids matching this expression. Kafka matches the whole
    /// id, so the wiring compiles the pattern anchored (`^(?:pattern)$`).
    pub transactional_id_pattern: Option<regex::Regex>,
}

impl Default for ListFilter {
    fn default() -> Self {
        ListFilter {
            states: Vec::new(),
            producer_ids: Vec::new(),
            duration_ms: -1,
            transactional_id_pattern: None,
        }
    }
}

/// One transactional id in a ListTransactions answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTxn {
    /// Transactional id.
    pub transactional_id: String,
    /// Producer id.
    pub producer_id: i64,
    /// State.
    pub state: TxnState,
}

/// A ListTransactions answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TxnListing {
    /// Matching transactional ids, in id order.
    pub transactions: Vec<ListedTxn>,
    /// State filters that name no state.
    pub unknown_state_filters: Vec<String>,
}

/// Why a record is being appended: decides the answer and what follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// InitProducerId handed out a (new) epoch or producer id.
    Init,
    /// Partitions join the transaction.
    AddPartitions,
    /// EndTxn decided: Prepare*; the client hears the ids it continues with.
    End,
    /// The coordinator aborts an open transaction with a bumped epoch (InitProducerId of
    /// a new producer instance, or the transaction timed out). `fence_epoch` is the
    /// bumped epoch: if the append fails it stays in memory anyway, so the old producer
    /// is fenced and the next attempt does not bump again (Kafka's `hasFailedEpochFence`).
    /// An InitProducerId (`reply_concurrent`) hears CONCURRENT_TRANSACTIONS and retries.
    Fence {
        fence_epoch: i16,
        reply_concurrent: bool,
    },
    /// Markers are written: Complete*.
    Complete,
    /// The transactional id expired: tombstone.
    Expire,
}

/// What is in flight for a transactional id.
#[derive(Debug)]
enum Work {
    /// A record was handed out; once appended the entry becomes `to` (`None`: removed).
    Append {
        to: Option<TxnLogValue>,
        last_producer_epoch: i16,
        purpose: Purpose,
    },
    /// Prepare* is durable; markers are being written.
    Markers,
    /// Markers are written but the Complete* record failed to append; [`TransactionCoordinator::tick`]
    /// hands it out again.
    RetryComplete,
}

#[derive(Debug)]
struct InFlight {
    token: u64,
    work: Work,
}

/// One transactional id.
#[derive(Debug)]
struct Txn {
    /// What `__transaction_state` says (or will, for an id created by InitProducerId whose
    /// first record is not appended yet: epoch -1).
    value: TxnLogValue,
    /// The epoch before the last bump, for InitProducerId retries (memory only, as in
    /// Kafka; -1 after a replay).
    last_producer_epoch: i16,
    /// A fence bumped the epoch in memory but its record was not appended.
    failed_epoch_fence: bool,
    in_flight: Option<InFlight>,
}

/// The transaction coordinator. See the module docs.
#[derive(Debug)]
pub struct TransactionCoordinator {
    config: TxnConfig,
    coordinator_epoch: i32,
    txns: BTreeMap<String, Txn>,
    next_token: u64,
    counts: TxnCounts,
}

/// Transactions this coordinator completed since the process started (for metrics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TxnCounts {
    /// Transactions whose commit markers were written on every partition.
    pub commits: u64,
    /// Transactions whose abort markers were written on every partition.
    pub aborts: u64,
    /// Aborts the coordinator began itself: a transaction past its timeout, or one a new
    /// producer instance fenced (InitProducerId).
    pub coordinator_aborts: u64,
}

/// Refuses an empty transactional id, and one too long for the record key (int16 length).
fn check_id(id: &str) -> Result<(), TxnError> {
    if id.is_empty() || id.len() > i16::MAX as usize {
        Err(TxnError::InvalidRequest)
    } else {
        Ok(())
    }
}

/// A new value: the transition from `v` with its common fields (Kafka's
/// `prepareTransitionTo`: the previous producer id is always the current one).
fn transit(v: &TxnLogValue, state: TxnState, now_ms: i64) -> TxnLogValue {
    TxnLogValue {
        previous_producer_id: v.producer_id,
        state,
        last_update_timestamp_ms: now_ms,
        ..v.clone()
    }
}

/// Complete* after the markers of a Prepare* (Kafka's `prepareComplete`): under
/// transaction version 2 a producer whose epoch ran out moves to its next producer id.
fn complete_transit(v: &TxnLogValue, now_ms: i64) -> TxnLogValue {
    let state = if v.state == TxnState::PrepareCommit {
        TxnState::CompleteCommit
    } else {
        TxnState::CompleteAbort
    };
    let mut to = transit(v, state, now_ms);
    if TransactionVersion(v.client_transaction_version).supports_epoch_bump()
        && v.next_producer_id != NO_PRODUCER_ID
    {
        to.producer_id = v.next_producer_id;
        to.producer_epoch = 0;
    }
    to.next_producer_id = NO_PRODUCER_ID;
    to.partitions.clear();
    to
}

impl TransactionCoordinator {
    /// A coordinator with no transactional ids. `coordinator_epoch` goes into the markers
    /// (the leader epoch of `__transaction_state`).
    pub fn new(config: TxnConfig, coordinator_epoch: i32) -> TransactionCoordinator {
        TransactionCoordinator {
            config,
            coordinator_epoch,
            txns: BTreeMap::new(),
            next_token: 0,
            counts: TxnCounts::default(),
        }
    }

    /// Open transactions (Ongoing, PrepareCommit or PrepareAbort) and the completion counts.
    pub fn stats(&self) -> (usize, TxnCounts) {
        let ongoing = self
            .txns
            .values()
            .filter(|t| {
                matches!(
                    t.value.state,
                    TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort
                )
            })
            .count();
        (ongoing, self.counts)
    }

    /// The `__transaction_state` partition of a transactional id.
    pub fn partition_for(&self, transactional_id: &str) -> i32 {
        partition_for(
            transactional_id,
            self.config.transaction_state_log_num_partitions,
        )
    }

    /// Hands out `to` (`None`: a tombstone) as a record to append, and marks the id busy.
    /// Nothing changes if the record cannot be encoded.
    fn begin<T>(
        &mut self,
        id: &str,
        to: Option<TxnLogValue>,
        last_producer_epoch: i16,
        purpose: Purpose,
    ) -> Result<Pending<T>, TxnError> {
        let record = TxnLogRecord {
            transactional_id: id.to_string(),
            value: to.clone(),
        };
        let (key, value) = record.encode().map_err(|_| TxnError::InvalidRequest)?;
        let token = self.next_token;
        self.next_token += 1;
        let partition = self.partition_for(id);
        let txn = self.txns.get_mut(id).ok_or(TxnError::NotCoordinator)?;
        txn.in_flight = Some(InFlight {
            token,
            work: Work::Append {
                to,
                last_producer_epoch,
                purpose,
            },
        });
        Ok(Pending {
            record,
            key,
            value,
            partition,
            token,
            _answer: PhantomData,
        })
    }

    fn step<T>(
        &mut self,
        id: &str,
        to: Option<TxnLogValue>,
        last_producer_epoch: i16,
        purpose: Purpose,
    ) -> Step<T> {
        match self.begin(id, to, last_producer_epoch, purpose) {
            Ok(p) => Step::Append(p),
            Err(e) => Step::Done(Err(e)),
        }
    }

    /// InitProducerId with a transactional id (Kafka's `handleInitProducerId`).
    ///
    /// Checks, in order: producer id and epoch both given or both -1 (INVALID_REQUEST);
    /// a transactional id (INVALID_REQUEST); the timeout within
    /// `transaction.max.timeout.ms` (INVALID_TRANSACTION_TIMEOUT). An unknown id gets a
    /// new producer id from `allocate`. Then: CONCURRENT_TRANSACTIONS while something is
    /// in flight; KIP-360 — a given producer id must be the current one (or the previous
    /// one with an exhausted epoch, a retry after a rotation), else PRODUCER_FENCED;
    /// CONCURRENT_TRANSACTIONS while markers are being written. With a transaction open,
    /// the coordinator aborts it with a bumped epoch (fencing the old producer) and answers
    /// CONCURRENT_TRANSACTIONS, so the client retries once the abort completes. Otherwise
    /// the epoch is bumped (a retry with the epoch before the last bump gets the current
    /// one again; another epoch is PRODUCER_FENCED), or, when it is exhausted, a new
    /// producer id starts at epoch 0.
    pub fn init_producer_id(
        &mut self,
        req: InitProducerId<'_>,
        now_ms: i64,
        allocate: &mut dyn FnMut() -> Result<i64, TxnError>,
    ) -> Step<ProducerIdAndEpoch> {
        let expected = match (req.producer_id, req.producer_epoch) {
            (NO_PRODUCER_ID, NO_PRODUCER_EPOCH) => None,
            (NO_PRODUCER_ID, _) | (_, NO_PRODUCER_EPOCH) => {
                return Step::Done(Err(TxnError::InvalidRequest))
            }
            (producer_id, producer_epoch) => Some(ProducerIdAndEpoch {
                producer_id,
                producer_epoch,
            }),
        };
        let id = req.transactional_id;
        if let Err(e) = check_id(id) {
            return Step::Done(Err(e));
        }
        let timeout = req.transaction_timeout_ms;
        if timeout <= 0 || timeout > self.config.transaction_max_timeout_ms {
            return Step::Done(Err(TxnError::InvalidTransactionTimeout));
        }
        if !self.txns.contains_key(id) {
            let producer_id = match allocate() {
                Ok(p) => p,
                Err(e) => return Step::Done(Err(e)),
            };
            self.txns.insert(
                id.to_string(),
                Txn {
                    value: TxnLogValue {
                        producer_id,
                        previous_producer_id: NO_PRODUCER_ID,
                        next_producer_id: NO_PRODUCER_ID,
                        producer_epoch: NO_PRODUCER_EPOCH,
                        transaction_timeout_ms: timeout,
                        state: TxnState::Empty,
                        partitions: BTreeSet::new(),
                        last_update_timestamp_ms: now_ms,
                        start_timestamp_ms: -1,
                        client_transaction_version: 0,
                    },
                    last_producer_epoch: NO_PRODUCER_EPOCH,
                    failed_epoch_fence: false,
                    in_flight: None,
                },
            );
        }
        let txn = &self.txns[id];
        let v = &txn.value;
        if txn.in_flight.is_some() {
            return Step::Done(Err(TxnError::ConcurrentTransactions));
        }
        if let Some(e) = expected {
            let valid = v.producer_epoch == NO_PRODUCER_EPOCH
                || e.producer_id == v.producer_id
                || (e.producer_id == v.previous_producer_id && epoch_exhausted(e.producer_epoch));
            if !valid {
                return Step::Done(Err(TxnError::ProducerFenced));
            }
        }
        match v.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Step::Done(Err(TxnError::ConcurrentTransactions))
            }
            TxnState::Ongoing => self.fence(id, now_ms, true),
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let rotate = epoch_exhausted(v.producer_epoch)
                    && expected.is_none_or(|e| e.producer_epoch == v.producer_epoch);
                let (producer_id, epoch, last) = if rotate {
                    match allocate() {
                        Ok(p) => (
                            p,
                            0,
                            if expected.is_some() {
                                v.producer_epoch
                            } else {
                                NO_PRODUCER_EPOCH
                            },
                        ),
                        Err(e) => return Step::Done(Err(e)),
                    }
                } else {
                    match expected {
                        None => (v.producer_id, v.producer_epoch + 1, NO_PRODUCER_EPOCH),
                        Some(e)
                            if v.producer_epoch == NO_PRODUCER_EPOCH
                                || e.producer_epoch == v.producer_epoch =>
                        {
                            (v.producer_id, v.producer_epoch + 1, v.producer_epoch)
                        }
                        // A retry of a bump whose answer the client never got.
                        Some(e) if e.producer_epoch == txn.last_producer_epoch => {
                            (v.producer_id, v.producer_epoch, txn.last_producer_epoch)
                        }
                        Some(_) => return Step::Done(Err(TxnError::ProducerFenced)),
                    }
                };
                let mut to = transit(v, TxnState::Empty, now_ms);
                to.producer_id = producer_id;
                to.producer_epoch = epoch;
                to.transaction_timeout_ms = timeout;
                to.partitions.clear();
                to.start_timestamp_ms = -1;
                self.step(id, Some(to), last, Purpose::Init)
            }
            // Never stored: replay turns them into Ongoing or a removal.
            TxnState::Dead | TxnState::PrepareEpochFence => {
                Step::Done(Err(TxnError::UnknownServerError))
            }
        }
    }

    /// Aborts the open transaction of `id` with a bumped epoch (Kafka's
    /// `prepareFenceProducerEpoch` followed by an abort the coordinator sends itself, with
    /// the cluster's transaction version: under version 2 the abort bumps once more).
    fn fence<T>(&mut self, id: &str, now_ms: i64, reply_concurrent: bool) -> Step<T> {
        let tv = self.config.transaction_version;
        let txn = &self.txns[id];
        let v = &txn.value;
        let fence_epoch = if txn.failed_epoch_fence || v.producer_epoch == i16::MAX {
            v.producer_epoch
        } else {
            v.producer_epoch + 1
        };
        let mut to = transit(v, TxnState::PrepareAbort, now_ms);
        to.next_producer_id = NO_PRODUCER_ID;
        self.counts.coordinator_aborts += 1;
        let last = if tv.supports_epoch_bump() {
            to.producer_epoch = fence_epoch.saturating_add(1);
            to.client_transaction_version = tv.0;
            fence_epoch
        } else {
            to.producer_epoch = fence_epoch;
            to.client_transaction_version = TransactionVersion::TV_0.0;
            NO_PRODUCER_EPOCH
        };
        self.step(
            id,
            Some(to),
            last,
            Purpose::Fence {
                fence_epoch,
                reply_concurrent,
            },
        )
    }

    /// The entry of `id` if `producer_id` and `producer_epoch` are its current ones
    /// (INVALID_PRODUCER_ID_MAPPING for an unknown id or another producer id,
    /// PRODUCER_FENCED for another epoch).
    fn current(&self, id: &str, producer_id: i64, producer_epoch: i16) -> Result<&Txn, TxnError> {
        check_id(id)?;
        let txn = self
            .txns
            .get(id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        if txn.value.producer_id != producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if txn.value.producer_epoch != producer_epoch {
            return Err(TxnError::ProducerFenced);
        }
        Ok(txn)
    }

    /// AddPartitionsToTxn v1–3 and the produce path's implicit add under transaction
    /// version 2 (Kafka's `handleAddPartitionsToTransaction`): INVALID_REQUEST,
    /// INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED, then CONCURRENT_TRANSACTIONS while
    /// something is in flight or markers are being written. Partitions already in the
    /// open transaction are answered at once; otherwise the transaction becomes (or stays)
    /// Ongoing with the partitions added. Topics must exist (the API layer checks).
    pub fn add_partitions(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPart],
        client_version: TransactionVersion,
        now_ms: i64,
    ) -> Step<()> {
        let txn = match self.current(transactional_id, producer_id, producer_epoch) {
            Ok(t) => t,
            Err(e) => return Step::Done(Err(e)),
        };
        let v = &txn.value;
        if txn.in_flight.is_some() {
            return Step::Done(Err(TxnError::ConcurrentTransactions));
        }
        let start = match v.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                return Step::Done(Err(TxnError::ConcurrentTransactions))
            }
            TxnState::Ongoing if partitions.iter().all(|p| v.partitions.contains(p)) => {
                return Step::Done(Ok(()))
            }
            TxnState::Ongoing => v.start_timestamp_ms,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => now_ms,
            TxnState::Dead | TxnState::PrepareEpochFence => {
                return Step::Done(Err(TxnError::UnknownServerError))
            }
        };
        let mut to = transit(v, TxnState::Ongoing, now_ms);
        to.partitions.extend(partitions.iter().cloned());
        to.start_timestamp_ms = start;
        to.client_transaction_version = client_version.0;
        let last = txn.last_producer_epoch;
        self.step(transactional_id, Some(to), last, Purpose::AddPartitions)
    }

    /// AddPartitionsToTxn v4+ with `verify_only` (KIP-890 part 1: the produce path asks
    /// whether a partition is in the open transaction before it appends a transactional
    /// batch). Per partition: in the transaction, or TRANSACTION_ABORTABLE. A top-level
    /// error (INVALID_REQUEST, INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED,
    /// CONCURRENT_TRANSACTIONS while Prepare*) applies to every partition. Changes nothing.
    pub fn verify_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPart],
    ) -> Result<Vec<(TopicPart, Option<TxnError>)>, TxnError> {
        let txn = self.current(transactional_id, producer_id, producer_epoch)?;
        if matches!(
            txn.value.state,
            TxnState::PrepareCommit | TxnState::PrepareAbort
        ) {
            return Err(TxnError::ConcurrentTransactions);
        }
        Ok(partitions
            .iter()
            .map(|p| {
                let error =
                    (!txn.value.partitions.contains(p)).then_some(TxnError::TransactionAbortable);
                (p.clone(), error)
            })
            .collect())
    }

    /// AddOffsetsToTxn: adds the group's `__consumer_offsets` partition
    /// (`offsets_partition`, from the group coordinator, so the markers land where the
    /// group's offsets are) to the transaction, as AddPartitionsToTxn does.
    pub fn add_offsets(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        offsets_partition: i32,
        client_version: TransactionVersion,
        now_ms: i64,
    ) -> Step<()> {
        self.add_partitions(
            transactional_id,
            producer_id,
            producer_epoch,
            &[(OFFSETS_TOPIC.to_string(), offsets_partition)],
            client_version,
            now_ms,
        )
    }

    /// EndTxn (Kafka's `handleEndTransaction`). `client_version` is TV 2 for EndTxn v5+.
    ///
    /// The answer is the producer id and epoch the client continues with: under
    /// transaction version 2 every commit and abort bumps the epoch (and a producer whose
    /// epoch ran out moves to a new producer id from `allocate`, at epoch 0); before
    /// version 2 Kafka answers -1/-1 (EndTxn below v5 has no such fields).
    ///
    /// Version 1 and before: INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED unless the epoch
    /// is the current one, CONCURRENT_TRANSACTIONS while something is in flight; then by
    /// state: Ongoing → Prepare*; a retry of the same, completed decision → no error;
    /// the same decision still being written → CONCURRENT_TRANSACTIONS; anything else
    /// (EndTxn with no transaction, the opposite decision) → INVALID_TXN_STATE.
    ///
    /// Version 2: a retry carries the epoch before the bump (or the exhausted epoch of the
    /// previous producer id): in Prepare* only a retry is valid, in Complete* a retry or
    /// the current epoch, elsewhere the current epoch (else PRODUCER_FENCED). A retry of a
    /// completed decision answers the current ids; an abort with no transaction open
    /// (Empty, Complete*) is allowed and bumps the epoch; a commit with none is
    /// INVALID_TXN_STATE.
    #[allow(clippy::too_many_arguments)]
    pub fn end_txn(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        result: TxnResult,
        client_version: TransactionVersion,
        now_ms: i64,
        allocate: &mut dyn FnMut() -> Result<i64, TxnError>,
    ) -> Step<ProducerIdAndEpoch> {
        let id = transactional_id;
        if let Err(e) = check_id(id) {
            return Step::Done(Err(e));
        }
        let Some(txn) = self.txns.get(id) else {
            return Step::Done(Err(TxnError::InvalidProducerIdMapping));
        };
        let v = &txn.value;
        let commit = result == TxnResult::Commit;
        let prepare = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        let invalid = Step::Done(Err(TxnError::InvalidTxnState));
        let concurrent = Step::Done(Err(TxnError::ConcurrentTransactions));
        if !client_version.supports_epoch_bump() {
            if v.producer_id != producer_id {
                return Step::Done(Err(TxnError::InvalidProducerIdMapping));
            }
            if v.producer_epoch != producer_epoch {
                return Step::Done(Err(TxnError::ProducerFenced));
            }
            if txn.in_flight.is_some() {
                return concurrent;
            }
            return match (v.state, commit) {
                (TxnState::Ongoing, _) => {
                    let mut to = transit(v, prepare, now_ms);
                    to.next_producer_id = NO_PRODUCER_ID;
                    to.client_transaction_version = TransactionVersion::TV_0.0;
                    let last = txn.last_producer_epoch;
                    self.step(id, Some(to), last, Purpose::End)
                }
                (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
                    Step::Done(Ok(ProducerIdAndEpoch::NONE))
                }
                (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => concurrent,
                _ => invalid,
            };
        }
        let retry_on_overflow = v.previous_producer_id == producer_id
            && producer_epoch == i16::MAX - 1
            && v.producer_epoch == 0;
        let retry_on_bump = i32::from(v.producer_epoch) == i32::from(producer_epoch) + 1;
        let valid_epoch = match v.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => retry_on_bump,
            TxnState::CompleteCommit | TxnState::CompleteAbort => {
                retry_on_bump || retry_on_overflow || producer_epoch == v.producer_epoch
            }
            _ => producer_epoch == v.producer_epoch,
        };
        if v.producer_id != producer_id && !retry_on_overflow {
            return Step::Done(Err(TxnError::InvalidProducerIdMapping));
        }
        if !valid_epoch {
            return Step::Done(Err(TxnError::ProducerFenced));
        }
        if txn.in_flight.is_some() {
            return concurrent;
        }
        let is_retry = retry_on_bump || retry_on_overflow;
        let current = ProducerIdAndEpoch {
            producer_id: v.producer_id,
            producer_epoch: v.producer_epoch,
        };
        let no_partition_added = match (v.state, commit) {
            (TxnState::Ongoing, _) => false,
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) if is_retry => {
                return Step::Done(Ok(current))
            }
            (TxnState::CompleteCommit | TxnState::CompleteAbort | TxnState::Empty, false)
                if !is_retry =>
            {
                true
            }
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => return concurrent,
            _ => return invalid,
        };
        let next_producer_id = if epoch_exhausted(v.producer_epoch) {
            match allocate() {
                Ok(p) => p,
                Err(e) => return Step::Done(Err(e)),
            }
        } else {
            NO_PRODUCER_ID
        };
        let mut to = transit(v, prepare, now_ms);
        // At i16::MAX (only after a fence at the very end of the epochs) an abort goes
        // through without a bump, as in Kafka; a commit cannot get here with it.
        to.producer_epoch = v.producer_epoch.saturating_add(1);
        to.next_producer_id = next_producer_id;
        to.client_transaction_version = client_version.0;
        if no_partition_added {
            to.start_timestamp_ms = now_ms;
        }
        let last = v.producer_epoch;
        self.step(id, Some(to), last, Purpose::End)
    }

    /// Reports the append of `pending`: on success the change takes effect and the
    /// answer is given, with what follows (markers after Prepare*, or at once the
    /// Complete* record when the transaction has no partitions). On failure nothing
    /// changes and the answer is the failure's error; the record of a completion is handed
    /// out again by [`TransactionCoordinator::tick`]. A `pending` this coordinator no
    /// longer expects (replaced by a replay) is answered NOT_COORDINATOR.
    pub fn appended<T: Reply>(
        &mut self,
        pending: Pending<T>,
        outcome: Result<(), AppendFailure>,
        now_ms: i64,
    ) -> Appended<T> {
        let id = pending.record.transactional_id;
        let stale = Appended {
            answer: Err(TxnError::NotCoordinator),
            effects: Vec::new(),
        };
        let Some(txn) = self.txns.get_mut(&id) else {
            return stale;
        };
        let (to, last_producer_epoch, purpose) = match txn.in_flight.take() {
            Some(InFlight {
                token,
                work:
                    Work::Append {
                        to,
                        last_producer_epoch,
                        purpose,
                    },
            }) if token == pending.token => (to, last_producer_epoch, purpose),
            other => {
                txn.in_flight = other;
                return stale;
            }
        };
        if let Err(failure) = outcome {
            match purpose {
                Purpose::Fence { fence_epoch, .. } => {
                    txn.value.producer_epoch = fence_epoch;
                    txn.last_producer_epoch = NO_PRODUCER_EPOCH;
                    txn.failed_epoch_fence = true;
                }
                Purpose::Complete => {
                    txn.in_flight = Some(InFlight {
                        token: pending.token,
                        work: Work::RetryComplete,
                    });
                }
                _ => {}
            }
            return Appended {
                answer: Err(failure.into()),
                effects: Vec::new(),
            };
        }
        let Some(to) = to else {
            self.txns.remove(&id);
            return Appended {
                answer: Ok(T::from_ids(ProducerIdAndEpoch::NONE)),
                effects: Vec::new(),
            };
        };
        let ids = ProducerIdAndEpoch {
            producer_id: to.producer_id,
            producer_epoch: to.producer_epoch,
        };
        let client_ids = if !TransactionVersion(to.client_transaction_version).supports_epoch_bump()
        {
            ProducerIdAndEpoch::NONE
        } else if to.next_producer_id != NO_PRODUCER_ID {
            // The epoch ran out: the client continues with the next producer id.
            ProducerIdAndEpoch {
                producer_id: to.next_producer_id,
                producer_epoch: 0,
            }
        } else {
            ids
        };
        txn.value = to;
        txn.last_producer_epoch = last_producer_epoch;
        let answer = match purpose {
            Purpose::Init | Purpose::AddPartitions | Purpose::Complete | Purpose::Expire => {
                return Appended {
                    answer: Ok(T::from_ids(ids)),
                    effects: Vec::new(),
                };
            }
            Purpose::End => Ok(T::from_ids(client_ids)),
            Purpose::Fence {
                reply_concurrent: true,
                ..
            } => Err(TxnError::ConcurrentTransactions),
            Purpose::Fence { .. } => Ok(T::from_ids(ids)),
        };
        txn.failed_epoch_fence = false;
        let effects = self.start_markers(&id, now_ms).into_iter().collect();
        Appended { answer, effects }
    }

    /// After Prepare* is durable: the markers to write, or, with no partitions, the
    /// Complete* record at once.
    fn start_markers(&mut self, id: &str, now_ms: i64) -> Option<Effect> {
        let token = self.next_token;
        self.next_token += 1;
        let coordinator_epoch = self.coordinator_epoch;
        let txn = self.txns.get_mut(id)?;
        let v = &txn.value;
        if v.partitions.is_empty() {
            let to = complete_transit(v, now_ms);
            let last = txn.last_producer_epoch;
            return self
                .begin(id, Some(to), last, Purpose::Complete)
                .ok()
                .map(Effect::Append);
        }
        txn.in_flight = Some(InFlight {
            token,
            work: Work::Markers,
        });
        Some(Effect::WriteMarkers(WriteMarkers {
            transactional_id: id.to_string(),
            producer_id: v.producer_id,
            producer_epoch: v.producer_epoch,
            coordinator_epoch,
            result: if v.state == TxnState::PrepareCommit {
                TxnResult::Commit
            } else {
                TxnResult::Abort
            },
            partitions: v.partitions.clone(),
            transaction_version: TransactionVersion(v.client_transaction_version),
            token,
        }))
    }

    /// Reports `markers` written on every partition: the record that completes the
    /// transaction (Complete*), to append and report with [`TransactionCoordinator::appended`].
    /// `None` if these markers are no longer expected (a replay replaced them).
    pub fn markers_written(&mut self, markers: &WriteMarkers, now_ms: i64) -> Option<Pending<()>> {
        let txn = self.txns.get(&markers.transactional_id)?;
        match &txn.in_flight {
            Some(InFlight {
                token,
                work: Work::Markers,
            }) if *token == markers.token => {}
            _ => return None,
        }
        if txn.value.state == TxnState::PrepareCommit {
            self.counts.commits += 1;
        } else {
            self.counts.aborts += 1;
        }
        let to = complete_transit(&txn.value, now_ms);
        let last = txn.last_producer_epoch;
        self.begin(&markers.transactional_id, Some(to), last, Purpose::Complete)
            .ok()
    }

    /// Periodic work at `now_ms` (Kafka runs it every
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms` and
    /// `transactional.id.expiration.check.interval.ms`). Returns records to append, each
    /// reported with [`TransactionCoordinator::appended`] (answers carry nothing):
    ///
    /// - an Ongoing transaction older than its `transaction.timeout.ms` is aborted with a
    ///   bumped epoch, fencing its producer (markers follow the append);
    /// - a transactional id with no transaction open (Empty, Complete*) and no update for
    ///   `transactional.id.expiration.ms` is removed with a tombstone;
    /// - a Complete* record whose append failed is handed out again.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Pending<()>> {
        enum Due {
            Abort,
            Expire,
            Complete,
        }
        let expire_before = now_ms.saturating_sub(self.config.transactional_id_expiration_ms);
        let due: Vec<(String, Due)> = self
            .txns
            .iter()
            .filter_map(|(id, t)| {
                let v = &t.value;
                let due = match &t.in_flight {
                    Some(InFlight {
                        work: Work::RetryComplete,
                        ..
                    }) => Due::Complete,
                    Some(_) => return None,
                    None if v.state == TxnState::Ongoing
                        && v.start_timestamp_ms
                            .saturating_add(i64::from(v.transaction_timeout_ms))
                            < now_ms =>
                    {
                        Due::Abort
                    }
                    None if v.state.is_expiration_allowed()
                        && v.last_update_timestamp_ms <= expire_before =>
                    {
                        Due::Expire
                    }
                    None => return None,
                };
                Some((id.clone(), due))
            })
            .collect();
        let mut out = Vec::new();
        for (id, due) in due {
            let step = match due {
                Due::Abort => {
                    tracing::info!(transactional_id = %id, "aborting a transaction past its timeout");
                    self.fence(&id, now_ms, false)
                }
                Due::Expire => self.step(&id, None, NO_PRODUCER_EPOCH, Purpose::Expire),
                Due::Complete => {
                    let txn = &self.txns[&id];
                    let to = complete_transit(&txn.value, now_ms);
                    let last = txn.last_producer_epoch;
                    self.step(&id, Some(to), last, Purpose::Complete)
                }
            };
            if let Step::Append(p) = step {
                out.push(p);
            }
        }
        out
    }

    /// Applies one record of `__transaction_state` while loading it at start-up, in log
    /// order: a value replaces what is known of the id, a tombstone removes it. Dead (never
    /// written by Kafka) also removes it; PrepareEpochFence (never written either) is taken
    /// as Ongoing, so the transaction still times out and is aborted. Call
    /// [`TransactionCoordinator::resume`] once every partition is loaded.
    pub fn replay(&mut self, record: TxnLogRecord) {
        match record.value {
            None => {
                self.txns.remove(&record.transactional_id);
            }
            Some(v) if v.state == TxnState::Dead => {
                self.txns.remove(&record.transactional_id);
            }
            Some(mut v) => {
                if v.state == TxnState::PrepareEpochFence {
                    v.state = TxnState::Ongoing;
                }
                self.txns.insert(
                    record.transactional_id,
                    Txn {
                        value: v,
                        last_producer_epoch: NO_PRODUCER_EPOCH,
                        failed_epoch_fence: false,
                        in_flight: None,
                    },
                );
            }
        }
    }

    /// After the replay: finishes what had been decided. Every transaction in
    /// PrepareCommit gets its commit markers written again, every one in PrepareAbort its
    /// abort markers (then Complete* is appended), as Kafka does when it loads a partition
    /// of `__transaction_state`.
    pub fn resume(&mut self, now_ms: i64) -> Vec<Effect> {
        let prepared: Vec<String> = self
            .txns
            .iter()
            .filter(|(_, t)| {
                t.in_flight.is_none()
                    && matches!(
                        t.value.state,
                        TxnState::PrepareCommit | TxnState::PrepareAbort
                    )
            })
            .map(|(id, _)| id.clone())
            .collect();
        prepared
            .iter()
            .filter_map(|id| self.start_markers(id, now_ms))
            .collect()
    }

    /// DescribeTransactions of one id: INVALID_REQUEST for an empty id,
    /// TRANSACTIONAL_ID_NOT_FOUND for an unknown one.
    pub fn describe(&self, transactional_id: &str) -> Result<TxnDescription, TxnError> {
        if transactional_id.is_empty() {
            return Err(TxnError::InvalidRequest);
        }
        let txn = self
            .txns
            .get(transactional_id)
            .ok_or(TxnError::TransactionalIdNotFound)?;
        let v = &txn.value;
        Ok(TxnDescription {
            transactional_id: transactional_id.to_string(),
            producer_id: v.producer_id,
            producer_epoch: v.producer_epoch,
            state: v.state,
            transaction_timeout_ms: v.transaction_timeout_ms,
            transaction_start_time_ms: v.start_timestamp_ms,
            partitions: v.partitions.clone(),
        })
    }

    /// ListTransactions at `now_ms`. The duration filter keeps transactions that started
    /// more than `duration_ms` ago (Kafka compares with the start timestamp, which is -1
    /// when no transaction is open, so those always pass).
    pub fn list(&self, filter: &ListFilter, now_ms: i64) -> TxnListing {
        let mut states = BTreeSet::new();
        let mut unknown_state_filters = Vec::new();
        for name in &filter.states {
            match TxnState::from_name(name) {
                Some(s) => {
                    states.insert(s);
                }
                None => unknown_state_filters.push(name.clone()),
            }
        }
        let transactions = self
            .txns
            .iter()
            .filter(|(id, t)| {
                let v = &t.value;
                (filter.states.is_empty() || states.contains(&v.state))
                    && (filter.producer_ids.is_empty()
                        || filter.producer_ids.contains(&v.producer_id))
                    && (filter.duration_ms < 0
                        || now_ms.saturating_sub(v.start_timestamp_ms) > filter.duration_ms)
                    && filter
                        .transactional_id_pattern
                        .as_ref()
                        .is_none_or(|re| re.is_match(id))
            })
            .map(|(id, t)| ListedTxn {
                transactional_id: id.clone(),
                producer_id: t.value.producer_id,
                state: t.value.state,
            })
            .collect();
        TxnListing {
            transactions,
            unknown_state_filters,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Scenarios as tables of steps, run by one helper ([`check`]): appends succeed at once
    //! unless a step says otherwise, markers are written only when a step says so, and the
    //! clock moves only on `Wait`. Then a crash at every point of a run's log, and a
    //! property over random operation sequences.

    use super::*;
    use std::collections::VecDeque;

    use proptest::prelude::*;
    use TxnError::*;
    use TxnResult::{Abort, Commit};
    use S::*;

    /// The clock at the start of every scenario (ms).
    const T0: i64 = 1_000_000;
    /// The first producer id the allocator hands out.
    const FIRST_PID: i64 = 1000;
    /// The coordinator epoch markers must carry.
    const COORDINATOR_EPOCH: i32 = 7;
    /// A transaction timeout.
    const T: i32 = 60_000;
    /// No producer id and epoch in an InitProducerId.
    const NEW: (i64, i16) = (-1, -1);
    const TV0: TransactionVersion = TransactionVersion::TV_0;
    const TV2: TransactionVersion = TransactionVersion::TV_2;

    const fn ids(producer_id: i64, producer_epoch: i16) -> ProducerIdAndEpoch {
        ProducerIdAndEpoch {
            producer_id,
            producer_epoch,
        }
    }

    /// EndTxn below transaction version 2 answers no ids.
    const NO_IDS: ProducerIdAndEpoch = ProducerIdAndEpoch::NONE;

    type Parts = &'static [(&'static str, i32)];

    /// One step of a scenario, with what it must answer.
    #[derive(Debug, Clone, Copy)]
    enum S {
        /// InitProducerId(id, timeout, (producer id, epoch) the client has).
        Init(
            &'static str,
            i32,
            (i64, i16),
            Result<ProducerIdAndEpoch, TxnError>,
        ),
        /// AddPartitionsToTxn v1–3 (transaction version 0).
        Add(&'static str, (i64, i16), Parts, Result<(), TxnError>),
        /// The produce path's implicit add under transaction version 2.
        AddV2(&'static str, (i64, i16), Parts, Result<(), TxnError>),
        /// AddPartitionsToTxn v4+ verify-only: per partition, or a top-level error.
        Verify(
            &'static str,
            (i64, i16),
            Parts,
            Result<&'static [Option<TxnError>], TxnError>,
        ),
        /// AddOffsetsToTxn for `__consumer_offsets` partition n.
        AddOffsets(&'static str, (i64, i16), i32, Result<(), TxnError>),
        /// EndTxn at a transaction version.
        End(
            &'static str,
            (i64, i16),
            TxnResult,
            TransactionVersion,
            Result<ProducerIdAndEpoch, TxnError>,
        ),
        /// Markers for the id are out: decision, (producer id, epoch), partitions.
        MarkersOut(&'static str, TxnResult, (i64, i16), Parts),
        /// The id's markers are written; the completion is appended.
        Written(&'static str),
        /// No markers are out for the id.
        NoMarkers(&'static str),
        /// This many ms pass, then the coordinator's tick runs (its appends succeed).
        Wait(i64),
        /// The next append fails.
        FailNext(AppendFailure),
        /// The next append is held (in flight) until `Release`; its answer is checked then.
        Hold,
        /// The held append succeeds.
        Release,
        /// The producer-id allocator fails with this error (or works again).
        AllocFails(Option<TxnError>),
        /// The id's state, producer id and epoch.
        Is(&'static str, TxnState, (i64, i16)),
        /// The id's partitions.
        Parts(&'static str, Parts),
        /// The id is unknown.
        Gone(&'static str),
        /// The last record appended for the id is a tombstone.
        Tombstoned(&'static str),
        /// A record of the id in this state is already in the log (loaded as at start-up).
        Seed(&'static str, TxnState, (i64, i16), Parts),
        /// The broker restarts: a new coordinator replays the log and resumes.
        Restart,
        /// So many records were appended in all.
        LogLen(usize),
    }

    fn parts(p: Parts) -> Vec<TopicPart> {
        p.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn set(p: Parts) -> BTreeSet<TopicPart> {
        parts(p).into_iter().collect()
    }

    /// An append in flight, completed (and its answer checked) on `Release`.
    type Held = Box<dyn FnOnce(&mut Run)>;

    struct Run {
        c: TransactionCoordinator,
        config: TxnConfig,
        now: i64,
        next_pid: i64,
        alloc_error: Option<TxnError>,
        fail_next: Option<AppendFailure>,
        hold: bool,
        held: Option<Held>,
        /// Every record appended, in order.
        log: Vec<TxnLogRecord>,
        /// Markers out, by transactional id.
        markers: BTreeMap<String, WriteMarkers>,
    }

    impl Run {
        fn new(config: TxnConfig) -> Run {
            Run {
                c: TransactionCoordinator::new(config, COORDINATOR_EPOCH),
                config,
                now: T0,
                next_pid: FIRST_PID,
                alloc_error: None,
                fail_next: None,
                hold: false,
                held: None,
                log: Vec::new(),
                markers: BTreeMap::new(),
            }
        }

        /// Appends (or fails) the record, reports it, and carries out what follows.
        fn complete<T: Reply>(&mut self, p: Pending<T>) -> Result<T, TxnError> {
            assert_eq!(
                TxnLogRecord::decode(&p.key, p.value.as_deref()).as_ref(),
                Ok(&p.record),
                "the bytes are the record"
            );
            assert_eq!(
                p.partition,
                partition_for(&p.record.transactional_id, 50),
                "its partition"
            );
            let outcome = match self.fail_next.take() {
                Some(f) => Err(f),
                None => {
                    self.log.push(p.record.clone());
                    Ok(())
                }
            };
            let a = self.c.appended(p, outcome, self.now);
            self.effects(a.effects);
            a.answer
        }

        fn effects(&mut self, effects: Vec<Effect>) {
            for e in effects {
                match e {
                    Effect::WriteMarkers(m) => {
                        let prev = self.markers.insert(m.transactional_id.clone(), m);
                        assert!(prev.is_none(), "one set of markers per id at a time");
                    }
                    Effect::Append(p) => {
                        let _ = self.complete(p);
                    }
                }
            }
        }

        fn settle<T>(&mut self, step: Step<T>, want: Result<T, TxnError>)
        where
            T: Reply + std::fmt::Debug + PartialEq + 'static,
        {
            match step {
                Step::Done(got) => assert_eq!(got, want),
                Step::Append(p) if self.hold => {
                    self.hold = false;
                    self.held = Some(Box::new(move |run: &mut Run| {
                        let got = run.complete(p);
                        assert_eq!(got, want, "the held operation's answer");
                    }));
                }
                Step::Append(p) => {
                    let got = self.complete(p);
                    assert_eq!(got, want);
                }
            }
        }

        fn step(&mut self, step: &S) {
            let now = self.now;
            let next_pid = &mut self.next_pid;
            let alloc_error = self.alloc_error;
            let mut allocate = move || match alloc_error {
                Some(e) => Err(e),
                None => {
                    *next_pid += 1;
                    Ok(*next_pid - 1)
                }
            };
            match *step {
                Init(id, timeout, (producer_id, producer_epoch), want) => {
                    let req = InitProducerId {
                        transactional_id: id,
                        transaction_timeout_ms: timeout,
                        producer_id,
                        producer_epoch,
                    };
                    let s = self.c.init_producer_id(req, now, &mut allocate);
                    self.settle(s, want);
                }
                Add(id, (p, e), ps, want) => {
                    let s = self.c.add_partitions(id, p, e, &parts(ps), TV0, now);
                    self.settle(s, want);
                }
                AddV2(id, (p, e), ps, want) => {
                    let s = self.c.add_partitions(id, p, e, &parts(ps), TV2, now);
                    self.settle(s, want);
                }
                Verify(id, (p, e), ps, want) => {
                    let got = self.c.verify_partitions(id, p, e, &parts(ps));
                    let want = want.map(|errs| parts(ps).into_iter().zip(errs.to_vec()).collect());
                    assert_eq!(got, want);
                }
                AddOffsets(id, (p, e), n, want) => {
                    let s = self.c.add_offsets(id, p, e, n, TV0, now);
                    self.settle(s, want);
                }
                End(id, (p, e), result, tv, want) => {
                    let s = self.c.end_txn(id, p, e, result, tv, now, &mut allocate);
                    self.settle(s, want);
                }
                MarkersOut(id, result, (p, e), ps) => {
                    let m = self.markers.get(id).expect("markers out");
                    assert_eq!(
                        (
                            m.result,
                            m.producer_id,
                            m.producer_epoch,
                            m.coordinator_epoch,
                            &m.partitions
                        ),
                        (result, p, e, COORDINATOR_EPOCH, &set(ps))
                    );
                }
                Written(id) => {
                    let m = self.markers.remove(id).expect("markers out");
                    let p = self.c.markers_written(&m, now).expect("expected");
                    let _ = self.complete(p);
                }
                NoMarkers(id) => assert!(!self.markers.contains_key(id), "no markers"),
                Wait(ms) => {
                    self.now += ms;
                    for p in self.c.tick(self.now) {
                        let _ = self.complete(p);
                    }
                }
                FailNext(f) => self.fail_next = Some(f),
                Hold => self.hold = true,
                Release => {
                    let held = self.held.take().expect("an append held");
                    held(self);
                }
                AllocFails(e) => self.alloc_error = e,
                Is(id, state, (p, e)) => {
                    let d = self.c.describe(id).expect("known");
                    assert_eq!((d.state, d.producer_id, d.producer_epoch), (state, p, e));
                }
                Parts(id, ps) => {
                    assert_eq!(self.c.describe(id).expect("known").partitions, set(ps));
                }
                Gone(id) => {
                    assert_eq!(self.c.describe(id), Err(TransactionalIdNotFound));
                }
                Tombstoned(id) => {
                    let last = self.log.iter().rev().find(|r| r.transactional_id == id);
                    assert_eq!(last.map(|r| r.value.is_none()), Some(true));
                }
                Seed(id, state, (p, e), ps) => {
                    let ongoing = !matches!(state, TxnState::Empty);
                    let record = TxnLogRecord {
                        transactional_id: id.to_string(),
                        value: Some(TxnLogValue {
                            producer_id: p,
                            previous_producer_id: p,
                            next_producer_id: -1,
                            producer_epoch: e,
                            transaction_timeout_ms: T,
                            state,
                            partitions: set(ps),
                            last_update_timestamp_ms: now,
                            start_timestamp_ms: if ongoing { now } else { -1 },
                            client_transaction_version: 0,
                        }),
                    };
                    self.log.push(record.clone());
                    self.c.replay(record);
                }
                Restart => {
                    self.c = TransactionCoordinator::new(self.config, COORDINATOR_EPOCH);
                    self.held = None;
                    self.markers.clear();
                    for r in self.log.clone() {
                        let (k, v) = r.encode().unwrap();
                        self.c
                            .replay(TxnLogRecord::decode(&k, v.as_deref()).unwrap());
                    }
                    let effects = self.c.resume(self.now);
                    self.effects(effects);
                }
                LogLen(n) => assert_eq!(self.log.len(), n),
            }
        }
    }

    /// Runs `steps` against a new coordinator with `config`, naming the scenario and the
    /// step on failure.
    fn check_with(config: TxnConfig, name: &str, steps: &[S]) -> Run {
        let mut run = Run::new(config);
        for (i, step) in steps.iter().enumerate() {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run.step(step)));
            if let Err(e) = r {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!("{name}: step {i} {step:?}: {msg}");
            }
        }
        run
    }

    /// [`check_with`] the default config (transaction version 2, as Kafka 4).
    fn check(name: &str, steps: &[S]) -> Run {
        check_with(TxnConfig::default(), name, steps)
    }

    fn with(prefix: &[S], rest: &[S]) -> Vec<S> {
        let mut v = prefix.to_vec();
        v.extend_from_slice(rest);
        v
    }

    /// "a" gets producer id 1000 at epoch 0.
    const A_INIT: &[S] = &[Init("a", T, NEW, Ok(ids(1000, 0)))];
    /// ... and opens a transaction on t-0.
    const A_OPEN: &[S] = &[
        Init("a", T, NEW, Ok(ids(1000, 0))),
        Add("a", (1000, 0), &[("t", 0)], Ok(())),
    ];

    #[test]
    fn init_producer_id() {
        check(
            "a new id gets a producer id at epoch 0, each init bumps the epoch",
            &[
                Init("a", T, NEW, Ok(ids(FIRST_PID, 0))),
                Is("a", TxnState::Empty, (1000, 0)),
                Init("a", T, NEW, Ok(ids(1000, 1))),
                Init("b", T, NEW, Ok(ids(1001, 0))),
                LogLen(3),
            ],
        );
        check(
            "refusals write nothing",
            &[
                Init("", T, NEW, Err(InvalidRequest)),
                Init("a", T, (1000, -1), Err(InvalidRequest)),
                Init("a", T, (-1, 0), Err(InvalidRequest)),
                Init("a", 0, NEW, Err(InvalidTransactionTimeout)),
                Init("a", -5, NEW, Err(InvalidTransactionTimeout)),
                Init("a", 900_001, NEW, Err(InvalidTransactionTimeout)),
                Gone("a"),
                LogLen(0),
                Init("a", 900_000, NEW, Ok(ids(1000, 0))),
            ],
        );
        check_with(
            TxnConfig {
                transaction_max_timeout_ms: 1_000,
                ..TxnConfig::default()
            },
            "transaction.max.timeout.ms bounds the timeout",
            &[
                Init("a", 1_001, NEW, Err(InvalidTransactionTimeout)),
                Init("a", 1_000, NEW, Ok(ids(1000, 0))),
            ],
        );
        check(
            "the allocator's failure is the answer, and nothing is kept",
            &[
                AllocFails(Some(CoordinatorLoadInProgress)),
                Init("a", T, NEW, Err(CoordinatorLoadInProgress)),
                Gone("a"),
                AllocFails(None),
                Init("a", T, NEW, Ok(ids(1000, 0))),
            ],
        );
        check(
            "KIP-360: the client's own epoch is bumped, a retry gets the same, others are fenced",
            &with(
                A_INIT,
                &[
                    Init("a", T, (1000, 0), Ok(ids(1000, 1))),
                    Init("a", T, (1000, 0), Ok(ids(1000, 1))),
                    Init("a", T, (1000, 5), Err(ProducerFenced)),
                    Init("a", T, (999, 1), Err(ProducerFenced)),
                    Init("a", T, (1000, 1), Ok(ids(1000, 2))),
                    Init("a", T, NEW, Ok(ids(1000, 3))),
                    // A new instance forgot the last epoch: the old one's retry is fenced.
                    Init("a", T, (1000, 2), Err(ProducerFenced)),
                    // An id this coordinator does not know: a new producer id.
                    Init("n", T, (42, 3), Ok(ids(1001, 0))),
                ],
            ),
        );
        check(
            "an exhausted epoch moves to a new producer id",
            &[
                Seed("x", TxnState::CompleteCommit, (7, i16::MAX - 1), &[]),
                Init("x", T, NEW, Ok(ids(1000, 0))),
                Is("x", TxnState::Empty, (1000, 0)),
                Seed("y", TxnState::CompleteAbort, (8, i16::MAX - 1), &[]),
                Init("y", T, (8, i16::MAX - 1), Ok(ids(1001, 0))),
                // A retry with the old producer id and its exhausted epoch gets the same.
                Init("y", T, (8, i16::MAX - 1), Ok(ids(1001, 0))),
                Init("y", T, (8, i16::MAX - 2), Err(ProducerFenced)),
                Init("y", T, (1001, 0), Ok(ids(1001, 1))),
                // After that, the previous producer id is forgotten.
                Init("y", T, (8, i16::MAX - 1), Err(ProducerFenced)),
                AllocFails(Some(KafkaStorageError)),
                Seed("z", TxnState::Empty, (9, i16::MAX - 1), &[]),
                Init("z", T, NEW, Err(KafkaStorageError)),
                Is("z", TxnState::Empty, (9, i16::MAX - 1)),
            ],
        );
    }

    #[test]
    fn transactions_of_a_classic_client() {
        check(
            "add partitions and offsets, commit, then abort the next one",
            &with(
                A_INIT,
                &[
                    Add("a", (1000, 0), &[("t", 0), ("t", 1)], Ok(())),
                    Is("a", TxnState::Ongoing, (1000, 0)),
                    // Already in the transaction: answered at once, nothing written.
                    Add("a", (1000, 0), &[("t", 1)], Ok(())),
                    LogLen(2),
                    Add("a", (1000, 0), &[("u", 0)], Ok(())),
                    AddOffsets("a", (1000, 0), 7, Ok(())),
                    Parts(
                        "a",
                        &[("t", 0), ("t", 1), ("u", 0), ("__consumer_offsets", 7)],
                    ),
                    End("a", (1000, 0), Commit, TV0, Ok(NO_IDS)),
                    Is("a", TxnState::PrepareCommit, (1000, 0)),
                    MarkersOut(
                        "a",
                        Commit,
                        (1000, 0),
                        &[("t", 0), ("t", 1), ("u", 0), ("__consumer_offsets", 7)],
                    ),
                    // While markers are written, everything waits.
                    End("a", (1000, 0), Commit, TV0, Err(ConcurrentTransactions)),
                    End("a", (1000, 0), Abort, TV0, Err(ConcurrentTransactions)),
                    Add("a", (1000, 0), &[("t", 0)], Err(ConcurrentTransactions)),
                    Init("a", T, NEW, Err(ConcurrentTransactions)),
                    Written("a"),
                    Is("a", TxnState::CompleteCommit, (1000, 0)),
                    Parts("a", &[]),
                    // A retry of the commit is answered as done; an abort is not valid.
                    End("a", (1000, 0), Commit, TV0, Ok(NO_IDS)),
                    End("a", (1000, 0), Abort, TV0, Err(InvalidTxnState)),
                    LogLen(6),
                    Add("a", (1000, 0), &[("t", 0)], Ok(())),
                    End("a", (1000, 0), Abort, TV0, Ok(NO_IDS)),
                    MarkersOut("a", Abort, (1000, 0), &[("t", 0)]),
                    Written("a"),
                    Is("a", TxnState::CompleteAbort, (1000, 0)),
                    End("a", (1000, 0), Abort, TV0, Ok(NO_IDS)),
                    End("a", (1000, 0), Commit, TV0, Err(InvalidTxnState)),
                ],
            ),
        );
        check(
            "EndTxn and AddPartitions refusals",
            &with(
                A_INIT,
                &[
                    End("a", (1000, 0), Commit, TV0, Err(InvalidTxnState)),
                    End("a", (1000, 0), Abort, TV0, Err(InvalidTxnState)),
                    End("zz", (1000, 0), Commit, TV0, Err(InvalidProducerIdMapping)),
                    End("a", (1001, 0), Commit, TV0, Err(InvalidProducerIdMapping)),
                    End("a", (1000, 1), Commit, TV0, Err(ProducerFenced)),
                    End("", (1000, 0), Commit, TV0, Err(InvalidRequest)),
                    Add("zz", (1000, 0), &[("t", 0)], Err(InvalidProducerIdMapping)),
                    Add("a", (1001, 0), &[("t", 0)], Err(InvalidProducerIdMapping)),
                    Add("a", (1000, 1), &[("t", 0)], Err(ProducerFenced)),
                    Add("", (1000, 0), &[("t", 0)], Err(InvalidRequest)),
                    AddOffsets("a", (999, 0), 3, Err(InvalidProducerIdMapping)),
                    LogLen(1),
                    Is("a", TxnState::Empty, (1000, 0)),
                ],
            ),
        );
        check(
            "verify-only: partitions in the transaction, or TRANSACTION_ABORTABLE",
            &with(
                A_OPEN,
                &[
                    Verify(
                        "a",
                        (1000, 0),
                        &[("t", 0), ("t", 1)],
                        Ok(&[None, Some(TransactionAbortable)]),
                    ),
                    Verify("zz", (1000, 0), &[("t", 0)], Err(InvalidProducerIdMapping)),
                    Verify("a", (1001, 0), &[("t", 0)], Err(InvalidProducerIdMapping)),
                    Verify("a", (1000, 1), &[("t", 0)], Err(ProducerFenced)),
                    Verify("", (1000, 0), &[("t", 0)], Err(InvalidRequest)),
                    LogLen(2),
                    End("a", (1000, 0), Commit, TV0, Ok(NO_IDS)),
                    Verify("a", (1000, 0), &[("t", 0)], Err(ConcurrentTransactions)),
                    Written("a"),
                    Verify(
                        "a",
                        (1000, 0),
                        &[("t", 0)],
                        Ok(&[Some(TransactionAbortable)]),
                    ),
                ],
            ),
        );
    }

    #[test]
    fn transaction_version_2() {
        check(
            "every EndTxn bumps the epoch; retries carry the epoch before the bump",
            &with(
                A_INIT,
                &[
                    AddV2("a", (1000, 0), &[("t", 0)], Ok(())),
                    End("a", (1000, 0), Commit, TV2, Ok(ids(1000, 1))),
                    MarkersOut("a", Commit, (1000, 1), &[("t", 0)]),
                    End("a", (1000, 0), Commit, TV2, Err(ConcurrentTransactions)),
                    // In Prepare* only a retry is valid.
                    End("a", (1000, 1), Commit, TV2, Err(ProducerFenced)),
                    Written("a"),
                    Is("a", TxnState::CompleteCommit, (1000, 1)),
                    End("a", (1000, 0), Commit, TV2, Ok(ids(1000, 1))),
                    End("a", (1000, 0), Abort, TV2, Err(InvalidTxnState)),
                    End("a", (1000, 1), Commit, TV2, Err(InvalidTxnState)),
                    LogLen(4),
                    // An abort with no transaction open is allowed and bumps the epoch; with
                    // no partitions there are no markers and it completes at once.
                    End("a", (1000, 1), Abort, TV2, Ok(ids(1000, 2))),
                    NoMarkers("a"),
                    Is("a", TxnState::CompleteAbort, (1000, 2)),
                    LogLen(6),
                    End("a", (1000, 1), Abort, TV2, Ok(ids(1000, 2))),
                    End("a", (1000, 0), Abort, TV2, Err(ProducerFenced)),
                    End("a", (1000, 3), Abort, TV2, Err(ProducerFenced)),
                    End("a", (1000, 2), Commit, TV2, Err(InvalidTxnState)),
                    AddV2("a", (1000, 2), &[("t", 1)], Ok(())),
                    End("a", (1000, 2), Abort, TV2, Ok(ids(1000, 3))),
                    MarkersOut("a", Abort, (1000, 3), &[("t", 1)]),
                    Written("a"),
                    Is("a", TxnState::CompleteAbort, (1000, 3)),
                ],
            ),
        );
        check(
            "from Empty: abort bumps, commit is INVALID_TXN_STATE, a retry epoch is fenced",
            &with(
                A_INIT,
                &[
                    End("a", (1000, 0), Commit, TV2, Err(InvalidTxnState)),
                    End("a", (1000, 0), Abort, TV2, Ok(ids(1000, 1))),
                    Is("a", TxnState::CompleteAbort, (1000, 1)),
                    Init("a", T, NEW, Ok(ids(1000, 2))),
                    End("a", (1000, 1), Abort, TV2, Err(ProducerFenced)),
                    End("zz", (1000, 0), Abort, TV2, Err(InvalidProducerIdMapping)),
                    End("a", (1001, 2), Abort, TV2, Err(InvalidProducerIdMapping)),
                ],
            ),
        );
        check(
            "an exhausted epoch ends on a new producer id; the retry with the old one is answered",
            &[
                Seed("x", TxnState::Ongoing, (7, i16::MAX - 1), &[("t", 0)]),
                End("x", (7, i16::MAX - 1), Commit, TV2, Ok(ids(1000, 0))),
                // The markers carry the old producer id at the last epoch.
                MarkersOut("x", Commit, (7, i16::MAX), &[("t", 0)]),
                Written("x"),
                Is("x", TxnState::CompleteCommit, (1000, 0)),
                End("x", (7, i16::MAX - 1), Commit, TV2, Ok(ids(1000, 0))),
                AddV2("x", (1000, 0), &[("t", 1)], Ok(())),
                End("x", (1000, 0), Abort, TV2, Ok(ids(1000, 1))),
                AllocFails(Some(CoordinatorLoadInProgress)),
                Seed("y", TxnState::Ongoing, (8, i16::MAX - 1), &[("t", 0)]),
                End(
                    "y",
                    (8, i16::MAX - 1),
                    Commit,
                    TV2,
                    Err(CoordinatorLoadInProgress),
                ),
                Is("y", TxnState::Ongoing, (8, i16::MAX - 1)),
            ],
        );
        check(
            "a classic EndTxn ends a transaction opened by implicit adds, without a bump",
            &with(
                A_INIT,
                &[
                    AddV2("a", (1000, 0), &[("t", 0)], Ok(())),
                    End("a", (1000, 0), Commit, TV0, Ok(NO_IDS)),
                    MarkersOut("a", Commit, (1000, 0), &[("t", 0)]),
                ],
            ),
        );
    }

    #[test]
    fn fencing() {
        check(
            "a new instance aborts the open transaction with a bumped epoch and retries",
            &with(
                A_OPEN,
                &[
                    Init("a", T, NEW, Err(ConcurrentTransactions)),
                    // Fenced to epoch 1, and the abort (transaction version 2) bumps once more.
                    Is("a", TxnState::PrepareAbort, (1000, 2)),
                    MarkersOut("a", Abort, (1000, 2), &[("t", 0)]),
                    Add("a", (1000, 0), &[("t", 1)], Err(ProducerFenced)),
                    End("a", (1000, 0), Commit, TV0, Err(ProducerFenced)),
                    Init("a", T, NEW, Err(ConcurrentTransactions)),
                    Written("a"),
                    Is("a", TxnState::CompleteAbort, (1000, 2)),
                    Init("a", T, NEW, Ok(ids(1000, 3))),
                    End("a", (1000, 0), Commit, TV0, Err(ProducerFenced)),
                    Add("a", (1000, 3), &[("t", 0)], Ok(())),
                ],
            ),
        );
        check_with(
            TxnConfig {
                transaction_version: TransactionVersion::TV_1,
                ..TxnConfig::default()
            },
            "before transaction version 2 the fence bumps once",
            &with(
                A_OPEN,
                &[
                    Init("a", T, NEW, Err(ConcurrentTransactions)),
                    MarkersOut("a", Abort, (1000, 1), &[("t", 0)]),
                    Written("a"),
                    Is("a", TxnState::CompleteAbort, (1000, 1)),
                    Init("a", T, NEW, Ok(ids(1000, 2))),
                ],
            ),
        );
        check(
            "a fence whose record is not written still fences, and is not bumped twice",
            &with(
                A_OPEN,
                &[
                    FailNext(AppendFailure::Unavailable),
                    Init("a", T, NEW, Err(CoordinatorNotAvailable)),
                    Is("a", TxnState::Ongoing, (1000, 1)),
                    Add("a", (1000, 0), &[("t", 1)], Err(ProducerFenced)),
                    Init("a", T, NEW, Err(ConcurrentTransactions)),
                    MarkersOut("a", Abort, (1000, 2), &[("t", 0)]),
                    Written("a"),
                    Init("a", T, NEW, Ok(ids(1000, 3))),
                ],
            ),
        );
    }

    #[test]
    fn timeouts_and_expiration() {
        check(
            "an open transaction past transaction.timeout.ms is aborted and its producer fenced",
            &[
                Init("a", 10_000, NEW, Ok(ids(1000, 0))),
                // The clock starts at the first partition, not at InitProducerId.
                Wait(50_000),
                Is("a", TxnState::Empty, (1000, 0)),
                Add("a", (1000, 0), &[("t", 0)], Ok(())),
                Wait(10_000),
                Is("a", TxnState::Ongoing, (1000, 0)),
                Wait(1),
                Is("a", TxnState::PrepareAbort, (1000, 2)),
                MarkersOut("a", Abort, (1000, 2), &[("t", 0)]),
                End("a", (1000, 0), Commit, TV0, Err(ProducerFenced)),
                Written("a"),
                Is("a", TxnState::CompleteAbort, (1000, 2)),
                Wait(1_000_000),
                Is("a", TxnState::CompleteAbort, (1000, 2)),
            ],
        );
        check(
            "an idle id expires after transactional.id.expiration.ms with a tombstone",
            &with(
                A_INIT,
                &[
                    Wait(604_799_999),
                    Is("a", TxnState::Empty, (1000, 0)),
                    Wait(1),
                    Gone("a"),
                    Tombstoned("a"),
                    Init("a", T, NEW, Ok(ids(1001, 0))),
                ],
            ),
        );
        check_with(
            TxnConfig {
                transaction_max_timeout_ms: i32::MAX,
                ..TxnConfig::default()
            },
            "a transaction does not expire while open or while its markers are out",
            &[
                Init("a", i32::MAX, NEW, Ok(ids(1000, 0))),
                Add("a", (1000, 0), &[("t", 0)], Ok(())),
                Wait(700_000_000),
                Is("a", TxnState::Ongoing, (1000, 0)),
                End("a", (1000, 0), Commit, TV0, Ok(NO_IDS)),
                Wait(700_000_000),
                Is("a", TxnState::PrepareCommit, (1000, 0)),
                Written("a"),
                Wait(604_800_000),
                Gone("a"),
            ],
        );
        check(
            "a failed tombstone leaves the id, and the next tick tries again",
            &with(
                A_INIT,
                &[
                    FailNext(AppendFailure::Unavailable),
                    Wait(604_800_000),
                    Is("a", TxnState::Empty, (1000, 0)),
                    Wait(0),
                    Gone("a"),
                ],
            ),
        );
    }

    #[test]
    fn append_failures_change_nothing() {
        check(
            "each operation whose record is not written",
            &[
                FailNext(AppendFailure::Unavailable),
                Init("a", T, NEW, Err(CoordinatorNotAvailable)),
                // The id is known with its producer id, but no epoch was handed out.
                Is("a", TxnState::Empty, (1000, -1)),
                LogLen(0),
                Init("a", T, NEW, Ok(ids(1000, 0))),
                FailNext(AppendFailure::NotLeaderOrStorage),
                Add("a", (1000, 0), &[("t", 0)], Err(NotCoordinator)),
                Is("a", TxnState::Empty, (1000, 0)),
                Add("a", (1000, 0), &[("t", 0)], Ok(())),
                FailNext(AppendFailure::TooLarge),
                End("a", (1000, 0), Commit, TV0, Err(UnknownServerError)),
                Is("a", TxnState::Ongoing, (1000, 0)),
                NoMarkers("a"),
                End("a", (1000, 0), Commit, TV0, Ok(NO_IDS)),
                // The markers are written but Complete* is not: still busy until a tick.
                FailNext(AppendFailure::Unavailable),
                Written("a"),
                Is("a", TxnState::PrepareCommit, (1000, 0)),
                Init("a", T, NEW, Err(ConcurrentTransactions)),
                Wait(0),
                Is("a", TxnState::CompleteCommit, (1000, 0)),
                Init("a", T, NEW, Ok(ids(1000, 1))),
            ],
        );
    }

    #[test]
    fn operations_wait_for_the_append_in_flight() {
        check(
            "CONCURRENT_TRANSACTIONS until the record is appended",
            &with(
                A_INIT,
                &[
                    Hold,
                    Add("a", (1000, 0), &[("t", 0)], Ok(())),
                    Add("a", (1000, 0), &[("t", 1)], Err(ConcurrentTransactions)),
                    Init("a", T, NEW, Err(ConcurrentTransactions)),
                    End("a", (1000, 0), Abort, TV0, Err(ConcurrentTransactions)),
                    End("a", (1000, 0), Abort, TV2, Err(ConcurrentTransactions)),
                    // Not visible before it is durable.
                    Verify(
                        "a",
                        (1000, 0),
                        &[("t", 0)],
                        Ok(&[Some(TransactionAbortable)]),
                    ),
                    Is("a", TxnState::Empty, (1000, 0)),
                    Release,
                    Verify(
                        "a",
                        (1000, 0),
                        &[("t", 0), ("t", 1)],
                        Ok(&[None, Some(TransactionAbortable)]),
                    ),
                    Hold,
                    Init("b", T, NEW, Ok(ids(1001, 0))),
                    Init("b", T, NEW, Err(ConcurrentTransactions)),
                    Release,
                    Is("b", TxnState::Empty, (1001, 0)),
                ],
            ),
        );
    }

    #[test]
    fn restart_finishes_what_was_decided() {
        check(
            "Prepare* markers are written again; open transactions stay open",
            &[
                Init("a", T, NEW, Ok(ids(1000, 0))),
                Add("a", (1000, 0), &[("t", 0), ("t", 1)], Ok(())),
                End("a", (1000, 0), Commit, TV0, Ok(NO_IDS)),
                Init("b", T, NEW, Ok(ids(1001, 0))),
                AddV2("b", (1001, 0), &[("u", 0)], Ok(())),
                End("b", (1001, 0), Abort, TV2, Ok(ids(1001, 1))),
                Init("c", T, NEW, Ok(ids(1002, 0))),
                Add("c", (1002, 0), &[("t", 0)], Ok(())),
                Restart,
                MarkersOut("a", Commit, (1000, 0), &[("t", 0), ("t", 1)]),
                MarkersOut("b", Abort, (1001, 1), &[("u", 0)]),
                NoMarkers("c"),
                Is("c", TxnState::Ongoing, (1002, 0)),
                Add("c", (1002, 0), &[("t", 1)], Ok(())),
                Written("a"),
                Written("b"),
                Is("a", TxnState::CompleteCommit, (1000, 0)),
                Is("b", TxnState::CompleteAbort, (1001, 1)),
                // The epoch before the last bump is not persisted (as in Kafka): after a
                // restart the retry of the bump is fenced.
                Init("a", T, (1000, 0), Ok(ids(1000, 1))),
                Restart,
                Init("a", T, (1000, 0), Err(ProducerFenced)),
                Is("c", TxnState::Ongoing, (1002, 0)),
                Parts("c", &[("t", 0), ("t", 1)]),
            ],
        );
    }

    #[test]
    fn markers_and_appends_from_before_a_replay_are_stale() {
        let mut run = check(
            "open and commit",
            &with(A_OPEN, &[End("a", (1000, 0), Commit, TV0, Ok(NO_IDS))]),
        );
        let old = run.markers.remove("a").unwrap();
        // Replaying the id's last record again replaces its in-memory state.
        let last = run.log.last().unwrap().clone();
        run.c.replay(last);
        assert!(run.c.markers_written(&old, T0).is_none());
        let effects = run.c.resume(T0);
        let [Effect::WriteMarkers(new)] = &effects[..] else {
            panic!("markers again: {effects:?}")
        };
        assert_eq!(new.partitions, old.partitions);
        let p = run.c.markers_written(new, T0).expect("current markers");
        // A replay between the hand-out and the report: the report is stale.
        run.c.replay(run.log.last().unwrap().clone());
        let a = run.c.appended(p, Ok(()), T0);
        assert_eq!(a.answer, Err(NotCoordinator));
        assert!(a.effects.is_empty());
        assert_eq!(run.c.describe("a").unwrap().state, TxnState::PrepareCommit);
    }

    #[test]
    fn replay_of_records_kafka_never_writes() {
        let mut c = TransactionCoordinator::new(TxnConfig::default(), 0);
        let value = |state| TxnLogValue {
            producer_id: 5,
            previous_producer_id: -1,
            next_producer_id: -1,
            producer_epoch: 3,
            transaction_timeout_ms: 1_000,
            state,
            partitions: set(&[("t", 0)]),
            last_update_timestamp_ms: T0,
            start_timestamp_ms: T0,
            client_transaction_version: 0,
        };
        let record = |id: &str, state| TxnLogRecord {
            transactional_id: id.into(),
            value: Some(value(state)),
        };
        c.replay(record("dead", TxnState::Ongoing));
        c.replay(record("dead", TxnState::Dead));
        c.replay(record("fence", TxnState::PrepareEpochFence));
        assert_eq!(c.describe("dead"), Err(TransactionalIdNotFound));
        assert_eq!(c.describe("fence").unwrap().state, TxnState::Ongoing);
        // It still times out and is aborted.
        let pending = c.tick(T0 + 1_001);
        assert_eq!(pending.len(), 1);
        assert_eq!(
            pending[0].record.value.as_ref().map(|v| v.state),
            Some(TxnState::PrepareAbort)
        );
    }

    #[test]
    fn describe_and_list() {
        let run = check(
            "a mix of states",
            &[
                Init("a", T, NEW, Ok(ids(1000, 0))),
                Wait(1_000),
                Init("b", 5_000, NEW, Ok(ids(1001, 0))),
                Add("b", (1001, 0), &[("t", 0), ("u", 2)], Ok(())),
                Wait(1_000),
                Init("c", T, NEW, Ok(ids(1002, 0))),
                Add("c", (1002, 0), &[("t", 1)], Ok(())),
                End("c", (1002, 0), Commit, TV0, Ok(NO_IDS)),
                Wait(1_000),
            ],
        );
        let now = run.now;
        assert_eq!(
            run.c.describe("b"),
            Ok(TxnDescription {
                transactional_id: "b".into(),
                producer_id: 1001,
                producer_epoch: 0,
                state: TxnState::Ongoing,
                transaction_timeout_ms: 5_000,
                transaction_start_time_ms: T0 + 1_000,
                partitions: set(&[("t", 0), ("u", 2)]),
            })
        );
        assert_eq!(run.c.describe(""), Err(InvalidRequest));
        assert_eq!(run.c.describe("zz"), Err(TransactionalIdNotFound));
        let listed = |filter: ListFilter| -> (Vec<&'static str>, Vec<String>) {
            let l = run.c.list(&filter, now);
            let names = l
                .transactions
                .iter()
                .map(|t| match t.transactional_id.as_str() {
                    "a" => "a",
                    "b" => "b",
                    "c" => "c",
                    other => panic!("unexpected {other}"),
                })
                .collect();
            (names, l.unknown_state_filters)
        };
        let all = ListFilter::default();
        assert_eq!(listed(all.clone()), (vec!["a", "b", "c"], vec![]));
        let l = run.c.list(&all, now);
        assert_eq!(
            l.transactions[1],
            ListedTxn {
                transactional_id: "b".into(),
                producer_id: 1001,
                state: TxnState::Ongoing
            }
        );
        assert_eq!(
            listed(ListFilter {
                states: vec!["Ongoing".into(), "PrepareCommit".into(), "Bogus".into()],
                ..all.clone()
            }),
            (vec!["b", "c"], vec!["Bogus".to_string()])
        );
        assert_eq!(
            listed(ListFilter {
                producer_ids: vec![1000, 1002, 7],
                ..all.clone()
            }),
            (vec!["a", "c"], vec![])
        );
        // "b" started 2 s ago, "c" 1 s ago, "a" has no transaction (start -1: always passes).
        assert_eq!(
            listed(ListFilter {
                duration_ms: 1_500,
                ..all.clone()
            }),
            (vec!["a", "b"], vec![])
        );
        assert_eq!(
            listed(ListFilter {
                duration_ms: 2_000,
                ..all.clone()
            }),
            (vec!["a"], vec![])
        );
        assert_eq!(
            listed(ListFilter {
                transactional_id_pattern: Some(regex::Regex::new("^(?:[bc])$").unwrap()),
                states: vec!["Ongoing".into()],
                ..all.clone()
            }),
            (vec!["b"], vec![])
        );
    }

    /// A run mixing every way a transaction ends; its log is what a crash can cut.
    const MIXED_RUN: &[S] = &[
        Init("classic", T, NEW, Ok(ids(1000, 0))),
        Add("classic", (1000, 0), &[("t", 0), ("t", 1)], Ok(())),
        AddOffsets("classic", (1000, 0), 3, Ok(())),
        End("classic", (1000, 0), Commit, TV0, Ok(NO_IDS)),
        Init("v2", T, NEW, Ok(ids(1001, 0))),
        AddV2("v2", (1001, 0), &[("u", 0)], Ok(())),
        End("v2", (1001, 0), Abort, TV2, Ok(ids(1001, 1))),
        Init("fenced", T, NEW, Ok(ids(1002, 0))),
        Add("fenced", (1002, 0), &[("t", 2)], Ok(())),
        Init("fenced", T, NEW, Err(ConcurrentTransactions)),
        Init("slow", 1_000, NEW, Ok(ids(1003, 0))),
        Add("slow", (1003, 0), &[("u", 1)], Ok(())),
        Seed("old", TxnState::Ongoing, (9, i16::MAX - 1), &[("t", 3)]),
        End("old", (9, i16::MAX - 1), Commit, TV2, Ok(ids(1004, 0))),
        Init("empty", T, NEW, Ok(ids(1005, 0))),
        End("empty", (1005, 0), Abort, TV2, Ok(ids(1005, 1))),
        Wait(1_001),
        Written("classic"),
        Written("fenced"),
        Init("open", T, NEW, Ok(ids(1006, 0))),
        Add("open", (1006, 0), &[("t", 0)], Ok(())),
        Written("v2"),
        Written("slow"),
        Written("old"),
        Add("classic", (1000, 0), &[("t", 1)], Ok(())),
        End("classic", (1000, 0), Abort, TV0, Ok(NO_IDS)),
        Wait(604_800_000),
    ];

    /// Replays `log` into a new coordinator, resumes, and carries out every effect (appends
    /// succeed, markers are written). Returns the coordinator and the markers written.
    fn restart_and_finish(
        log: &[TxnLogRecord],
        now: i64,
    ) -> (TransactionCoordinator, Vec<WriteMarkers>) {
        let mut c = TransactionCoordinator::new(TxnConfig::default(), COORDINATOR_EPOCH);
        for r in log {
            c.replay(r.clone());
        }
        let mut written = Vec::new();
        let mut queue: VecDeque<Effect> = c.resume(now).into();
        while let Some(e) = queue.pop_front() {
            let p = match e {
                Effect::WriteMarkers(m) => {
                    let p = c.markers_written(&m, now).expect("expected markers");
                    written.push(m);
                    p
                }
                Effect::Append(p) => p,
            };
            let a = c.appended(p, Ok(()), now);
            assert_eq!(a.answer, Ok(()));
            queue.extend(a.effects);
        }
        (c, written)
    }

    #[test]
    fn a_crash_at_any_point_finishes_what_was_decided() {
        let run = check("mixed", MIXED_RUN);
        let log = &run.log;
        assert!(log.len() > 20, "a long enough log: {}", log.len());
        for cut in 0..=log.len() {
            let (c, written) = restart_and_finish(&log[..cut], run.now);
            let mut last: BTreeMap<&str, &Option<TxnLogValue>> = BTreeMap::new();
            for r in &log[..cut] {
                last.insert(&r.transactional_id, &r.value);
            }
            let mut expected_markers = 0;
            for (id, value) in last {
                let got = c.describe(id);
                let Some(v) = value else {
                    assert_eq!(got, Err(TransactionalIdNotFound), "cut {cut}: {id} removed");
                    continue;
                };
                let got = got.unwrap();
                let decided = match v.state {
                    TxnState::PrepareCommit => Some(Commit),
                    TxnState::PrepareAbort => Some(Abort),
                    _ => None,
                };
                let markers: Vec<_> = written
                    .iter()
                    .filter(|m| m.transactional_id == id)
                    .collect();
                match decided {
                    Some(result) => {
                        let done = complete_transit(v, run.now);
                        assert_eq!(
                            (got.state, got.producer_id, got.producer_epoch),
                            (done.state, done.producer_id, done.producer_epoch),
                            "cut {cut}: {id} completed"
                        );
                        if v.partitions.is_empty() {
                            assert!(markers.is_empty());
                        } else {
                            expected_markers += 1;
                            assert_eq!(markers.len(), 1, "cut {cut}: {id} markers once");
                            let m = markers[0];
                            assert_eq!(
                                (m.result, m.producer_id, m.producer_epoch, &m.partitions),
                                (result, v.producer_id, v.producer_epoch, &v.partitions),
                                "cut {cut}: {id} markers"
                            );
                        }
                    }
                    None => {
                        assert!(markers.is_empty(), "cut {cut}: {id} no markers");
                        assert_eq!(
                            (
                                got.state,
                                got.producer_id,
                                got.producer_epoch,
                                &got.partitions
                            ),
                            (v.state, v.producer_id, v.producer_epoch, &v.partitions),
                            "cut {cut}: {id} as logged"
                        );
                    }
                }
            }
            assert_eq!(
                written.len(),
                expected_markers,
                "cut {cut}: no other markers"
            );
        }
    }

    /// One operation of the property test, on client `id` (0..3).
    #[derive(Debug, Clone)]
    enum Op {
        /// InitProducerId: 0 new instance, 1 with the client's ids (KIP-360), 2 stale ids.
        Init { id: usize, kip360: u8 },
        /// AddPartitionsToTxn (TV 0) or the implicit add (TV 2), maybe with a stale epoch.
        Add {
            id: usize,
            partition: i32,
            v2: bool,
            stale: bool,
        },
        /// AddOffsetsToTxn.
        Offsets { id: usize },
        /// EndTxn at the client's epoch shifted by `shift` (-1: a retry or stale).
        End {
            id: usize,
            commit: bool,
            v2: bool,
            shift: i16,
        },
        /// The client's markers are written.
        Markers { id: usize },
        /// Time passes; tick.
        Wait { ms: i64 },
        /// The next append fails.
        Fail,
        /// The next append is held.
        Hold,
        /// The held append succeeds (true) or fails.
        Release { ok: bool },
    }

    fn any_op() -> impl Strategy<Value = Op> {
        let id = 0usize..3;
        prop_oneof![
            2 => (id.clone(), prop_oneof![6 => Just(0u8), 2 => Just(1), 1 => Just(2)])
                .prop_map(|(id, kip360)| Op::Init { id, kip360 }),
            6 => (id.clone(), 0i32..3, any::<bool>(), proptest::bool::weighted(0.1)).prop_map(
                |(id, partition, v2, stale)| Op::Add {
                    id,
                    partition,
                    v2,
                    stale
                }
            ),
            1 => id.clone().prop_map(|id| Op::Offsets { id }),
            4 => (
                id.clone(),
                any::<bool>(),
                any::<bool>(),
                prop_oneof![8 => Just(0i16), 1 => Just(-1), 1 => Just(1)]
            )
                .prop_map(|(id, commit, v2, shift)| Op::End {
                    id,
                    commit,
                    v2,
                    shift
                }),
            4 => id.clone().prop_map(|id| Op::Markers { id }),
            2 => prop_oneof![6 => Just(0i64), 1 => Just(30_001), 1 => Just(604_800_000)]
                .prop_map(|ms| Op::Wait { ms }),
            1 => Just(Op::Fail),
            1 => Just(Op::Hold),
            1 => any::<bool>().prop_map(|ok| Op::Release { ok }),
        ]
    }

    const NAMES: [&str; 3] = ["x", "y", "z"];

    /// A run driven by random operations, checking the invariants after each.
    struct Model {
        run: Run,
        /// What each client believes its producer id and epoch are.
        client: BTreeMap<usize, ProducerIdAndEpoch>,
        /// The highest epoch seen for each producer id.
        epochs: BTreeMap<i64, i16>,
        /// The transactional id each producer id belongs to.
        owner: BTreeMap<i64, String>,
    }

    impl Model {
        fn learn(&mut self, id: usize, r: &Result<ProducerIdAndEpoch, TxnError>) {
            if let Ok(ids) = r {
                if ids.producer_id >= 0 {
                    self.client.insert(id, *ids);
                }
            }
        }

        fn apply(&mut self, op: &Op) {
            let run = &mut self.run;
            let now = run.now;
            let cur = |m: &Model, id: usize| m.client.get(&id).copied().unwrap_or(ids(0, 0));
            match *op {
                Op::Init { id, kip360 } => {
                    let c = cur(self, id);
                    let (producer_id, producer_epoch) = match kip360 {
                        0 => (-1, -1),
                        1 => (c.producer_id, c.producer_epoch),
                        _ => (c.producer_id, c.producer_epoch.saturating_sub(1).max(0)),
                    };
                    let r = self.call(|run, alloc| {
                        let req = InitProducerId {
                            transactional_id: NAMES[id],
                            transaction_timeout_ms: 30_000,
                            producer_id,
                            producer_epoch,
                        };
                        run.c.init_producer_id(req, now, alloc)
                    });
                    if let Some(r) = r {
                        self.learn(id, &r);
                    }
                }
                Op::Add {
                    id,
                    partition,
                    v2,
                    stale,
                } => {
                    let c = cur(self, id);
                    let epoch = c.producer_epoch - i16::from(stale);
                    let tv = if v2 { TV2 } else { TV0 };
                    let parts = [("t".to_string(), partition)];
                    self.call(|run, _| {
                        run.c
                            .add_partitions(NAMES[id], c.producer_id, epoch, &parts, tv, now)
                    });
                }
                Op::Offsets { id } => {
                    let c = cur(self, id);
                    self.call(|run, _| {
                        run.c
                            .add_offsets(NAMES[id], c.producer_id, c.producer_epoch, 0, TV0, now)
                    });
                }
                Op::End {
                    id,
                    commit,
                    v2,
                    shift,
                } => {
                    let c = cur(self, id);
                    let tv = if v2 { TV2 } else { TV0 };
                    let r = self.call(|run, alloc| {
                        run.c.end_txn(
                            NAMES[id],
                            c.producer_id,
                            c.producer_epoch.saturating_add(shift),
                            TxnResult::from_committed(commit),
                            tv,
                            now,
                            alloc,
                        )
                    });
                    if let Some(r) = r {
                        self.learn(id, &r);
                    }
                }
                Op::Markers { id } => {
                    if let Some(m) = run.markers.remove(NAMES[id]) {
                        if let Some(p) = run.c.markers_written(&m, now) {
                            let _ = run.complete(p);
                        }
                    }
                }
                Op::Wait { ms } => {
                    run.now += ms;
                    for p in run.c.tick(run.now) {
                        let _ = run.complete(p);
                    }
                }
                Op::Fail => run.fail_next = Some(AppendFailure::Unavailable),
                Op::Hold => run.hold = run.held.is_none(),
                Op::Release { ok } => {
                    if let Some(held) = run.held.take() {
                        if !ok {
                            run.fail_next = Some(AppendFailure::Unavailable);
                        }
                        held(run);
                    }
                }
            }
        }

        /// Runs an operation with the allocator; appends at once unless held. The answer,
        /// unless held.
        fn call<T: Reply + 'static>(
            &mut self,
            op: impl FnOnce(&mut Run, &mut dyn FnMut() -> Result<i64, TxnError>) -> Step<T>,
        ) -> Option<Result<T, TxnError>> {
            let mut next_pid = self.run.next_pid;
            let mut allocate = || {
                next_pid += 1;
                Ok(next_pid - 1)
            };
            let step = op(&mut self.run, &mut allocate);
            self.run.next_pid = next_pid;
            match step {
                Step::Done(r) => Some(r),
                Step::Append(p) if self.run.hold => {
                    self.run.hold = false;
                    self.run.held = Some(Box::new(move |run: &mut Run| {
                        let _ = run.complete(p);
                    }));
                    None
                }
                Step::Append(p) => Some(self.run.complete(p)),
            }
        }

        /// Epochs never go down for a producer id; a producer id serves one transactional
        /// id; Empty holds no partitions; the log alternates Prepare* and its Complete*.
        fn check_invariants(&mut self) {
            for (id, txn) in &self.run.c.txns {
                let v = &txn.value;
                let seen = self.epochs.entry(v.producer_id).or_insert(v.producer_epoch);
                assert!(v.producer_epoch >= *seen, "{id}: epoch went down: {v:?}");
                *seen = v.producer_epoch;
                let owner = self.owner.entry(v.producer_id).or_insert(id.clone());
                assert_eq!(owner, id, "producer id {} shared", v.producer_id);
                if v.state == TxnState::Empty {
                    assert!(v.partitions.is_empty());
                }
            }
            let mut prepared: BTreeMap<&str, TxnState> = BTreeMap::new();
            let mut logged_epochs: BTreeMap<i64, i16> = BTreeMap::new();
            for r in &self.run.log {
                let id = r.transactional_id.as_str();
                if let Some(p) = prepared.remove(id) {
                    let want = if p == TxnState::PrepareCommit {
                        TxnState::CompleteCommit
                    } else {
                        TxnState::CompleteAbort
                    };
                    assert_eq!(
                        r.value.as_ref().map(|v| v.state),
                        Some(want),
                        "{id}: after {p:?}"
                    );
                }
                if let Some(v) = &r.value {
                    if matches!(v.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
                        prepared.insert(id, v.state);
                    }
                    let e = logged_epochs
                        .entry(v.producer_id)
                        .or_insert(v.producer_epoch);
                    assert!(v.producer_epoch >= *e, "{id}: logged epoch went down");
                    *e = v.producer_epoch;
                }
            }
        }

        /// Releases what is held and writes every marker: nothing stays in Prepare*, and
        /// the log replays to the coordinator's state.
        fn finish(&mut self) {
            let run = &mut self.run;
            run.fail_next = None;
            if let Some(held) = run.held.take() {
                held(run);
            }
            run.hold = false;
            // Completions that failed earlier are handed out again by a tick.
            for p in run.c.tick(run.now) {
                let _ = run.complete(p);
            }
            while let Some(id) = run.markers.keys().next().cloned() {
                let m = run.markers.remove(&id).unwrap();
                let p = run
                    .c
                    .markers_written(&m, run.now)
                    .expect("expected markers");
                assert_eq!(run.complete(p), Ok(()));
            }
            for (id, t) in &run.c.txns {
                assert!(
                    !matches!(
                        t.value.state,
                        TxnState::PrepareCommit | TxnState::PrepareAbort
                    ),
                    "{id} left in {:?}",
                    t.value.state
                );
                assert!(t.in_flight.is_none(), "{id} busy");
            }
            self.check_invariants();
            let (replayed, written) = restart_and_finish(&self.run.log, self.run.now);
            assert!(written.is_empty(), "nothing left to finish");
            for (id, t) in &self.run.c.txns {
                match replayed.txns.get(id) {
                    // A fence that failed to be written is held in memory only.
                    Some(r) if t.failed_epoch_fence => {
                        assert_eq!(r.value.producer_epoch + 1, t.value.producer_epoch)
                    }
                    Some(r) => assert_eq!(r.value, t.value, "{id}: the log is the state"),
                    // Created by an InitProducerId whose record was never written.
                    None => assert_eq!(t.value.producer_epoch, -1, "{id} not in the log"),
                }
            }
            for id in replayed.txns.keys() {
                assert!(self.run.c.txns.contains_key(id), "{id} only in the log");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any sequence of operations keeps the invariants, and once markers are written
        /// every Prepare* is followed by its Complete*.
        #[test]
        fn any_sequence_keeps_the_invariants(ops in proptest::collection::vec(any_op(), 1..120)) {
            let mut model = Model {
                run: Run::new(TxnConfig::default()),
                client: BTreeMap::new(),
                epochs: BTreeMap::new(),
                owner: BTreeMap::new(),
            };
            for op in &ops {
                model.apply(op);
                model.check_invariants();
            }
            model.finish();
        }
    }
}
