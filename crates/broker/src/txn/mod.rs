//! The transaction coordinator: Kafka's transactions (KIP-98) with the later epoch rules
//! (KIP-360 epoch bumps, KIP-890 transaction version 2), kept as a sans-IO state machine.
//!
//! [`TransactionCoordinator`](coordinator::TransactionCoordinator) holds the state of every
//! transactional id this broker coordinates and answers InitProducerId, AddPartitionsToTxn,
//! AddOffsetsToTxn, EndTxn, DescribeTransactions and ListTransactions with domain results.
//! It never touches a log, a clock or a socket: inputs are requests plus `now_ms`, and when
//! a decision must be made durable it hands the IO layer a
//! [`Pending`](coordinator::Pending) record for `__transaction_state` ([`records`]); the
//! answer comes once the IO layer reports the append (`appended`). Follow-up work comes
//! out as [`Effect`](coordinator::Effect)s: write commit or abort markers to the
//! transaction's partitions ([`WriteMarkers`](coordinator::WriteMarkers)), then report
//! them written (`markers_written`), which yields the record that completes the
//! transaction. `tick` aborts transactions past their timeout and expires idle
//! transactional ids; `replay` and `resume` rebuild the state at start-up and finish every
//! transaction whose commit or abort had been decided.
//!
//! Errors are typed ([`TxnError`]) and mapped to Kafka's codes at the edge
//! ([`TxnError::code_for`]).
//!
//! The broker drives it from `api::txn` (the IO driver, the API handlers and the
//! produce path's checks); the coordinator sits in `Shared` under one lock.

pub mod coordinator;
pub mod records;

use kafka_protocol::ResponseError;

/// The `transaction.version` feature level a client or the cluster uses (KIP-890).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TransactionVersion(pub i16);

impl TransactionVersion {
    /// The original protocol: the client adds partitions itself and the epoch stays the
    /// same across transactions.
    pub const TV_0: TransactionVersion = TransactionVersion(0);
    /// Flexible `__transaction_state` values.
    #[allow(dead_code)] // a level clients may announce; named for completeness
    pub const TV_1: TransactionVersion = TransactionVersion(1);
    /// KIP-890 part 2: every commit and abort bumps the epoch; partitions are added
    /// implicitly by the produce path.
    pub const TV_2: TransactionVersion = TransactionVersion(2);

    /// Whether every EndTxn bumps the producer epoch.
    pub fn supports_epoch_bump(self) -> bool {
        self.0 >= 2
    }
}

/// Commit or abort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnResult {
    /// Commit: the transaction's records become visible to read_committed consumers.
    Commit,
    /// Abort: they never do.
    Abort,
}

impl TxnResult {
    /// From EndTxn's `committed` flag.
    pub fn from_committed(committed: bool) -> TxnResult {
        if committed {
            TxnResult::Commit
        } else {
            TxnResult::Abort
        }
    }
}

/// A producer id with its epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProducerIdAndEpoch {
    /// Producer id (-1: none).
    pub producer_id: i64,
    /// Producer epoch (-1: none).
    pub producer_epoch: i16,
}

impl ProducerIdAndEpoch {
    /// No producer id: what Kafka answers alongside an error.
    pub const NONE: ProducerIdAndEpoch = ProducerIdAndEpoch {
        producer_id: -1,
        producer_epoch: -1,
    };
}

/// Coordinator settings, with Kafka's config names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`: the largest `transaction.timeout.ms` a producer may
    /// ask for (Kafka's default: 15 minutes).
    pub transaction_max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: a transactional id with no transaction open and
    /// no update for this long is removed (Kafka's default: 7 days).
    pub transactional_id_expiration_ms: i64,
    /// `transaction.state.log.num.partitions` (Kafka's default: 50).
    pub transaction_state_log_num_partitions: i32,
    /// The cluster's finalized `transaction.version` (Kafka 4's default: 2), used for the
    /// aborts the coordinator starts itself (fencing, timeouts).
    pub transaction_version: TransactionVersion,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            transaction_max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 604_800_000,
            transaction_state_log_num_partitions: 50,
            transaction_version: TransactionVersion::TV_2,
        }
    }
}

/// Why the coordinator refused an operation. Each maps to one Kafka error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    /// Empty transactional id, a producer id without an epoch (or the reverse), or a
    /// transactional id too long to store: INVALID_REQUEST.
    #[error("invalid request")]
    InvalidRequest,
    /// `transaction.timeout.ms` not in 1..=`transaction.max.timeout.ms`:
    /// INVALID_TRANSACTION_TIMEOUT.
    #[error("transaction timeout out of range")]
    InvalidTransactionTimeout,
    /// Another operation on the transaction is in progress (markers being written, a
    /// record being appended): CONCURRENT_TRANSACTIONS, retriable.
    #[error("another operation on the transaction is in progress")]
    ConcurrentTransactions,
    /// A newer producer with the same transactional id exists: PRODUCER_FENCED
    /// (INVALID_PRODUCER_EPOCH for old request versions, see [`TxnError::code_for`]).
    #[error("producer fenced by a newer epoch")]
    ProducerFenced,
    /// The producer id is not the one assigned to the transactional id (or the id is
    /// unknown): INVALID_PRODUCER_ID_MAPPING.
    #[error("producer id not assigned to this transactional id")]
    InvalidProducerIdMapping,
    /// The operation does not fit the transaction's state (e.g. EndTxn with no
    /// transaction): INVALID_TXN_STATE.
    #[error("operation not valid in the transaction's state")]
    InvalidTxnState,
    /// DescribeTransactions of an unknown transactional id: TRANSACTIONAL_ID_NOT_FOUND.
    #[error("unknown transactional id")]
    TransactionalIdNotFound,
    /// A partition checked by the produce path is not in the transaction:
    /// TRANSACTION_ABORTABLE (Kafka 4, KIP-1050).
    #[error("partition not in the transaction")]
    TransactionAbortable,
    /// The append to `__transaction_state` failed because this broker cannot write it
    /// (not the leader, or its disk failed): NOT_COORDINATOR.
    #[error("not the coordinator")]
    NotCoordinator,
    /// `__transaction_state` is unavailable or the write timed out:
    /// COORDINATOR_NOT_AVAILABLE, retriable.
    #[error("coordinator not available")]
    CoordinatorNotAvailable,
    /// No producer id could be allocated yet: COORDINATOR_LOAD_IN_PROGRESS, retriable (as
    /// Kafka answers when its producer-id block is not there yet).
    #[error("coordinator loading")]
    #[allow(dead_code)] // the allocator never fails this way yet (ids come from a local block)
    CoordinatorLoadInProgress,
    /// Storage failed while allocating a producer id: KAFKA_STORAGE_ERROR.
    #[error("storage error")]
    KafkaStorageError,
    /// Anything else (a record too large for the log): UNKNOWN_SERVER_ERROR.
    #[error("unexpected server error")]
    UnknownServerError,
}

/// The coordinator APIs whose old versions answer INVALID_PRODUCER_EPOCH instead of
/// PRODUCER_FENCED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnApi {
    /// InitProducerId (PRODUCER_FENCED from v4).
    InitProducerId,
    /// AddPartitionsToTxn (from v2).
    AddPartitionsToTxn,
    /// AddOffsetsToTxn (from v2).
    AddOffsetsToTxn,
    /// EndTxn (from v2).
    EndTxn,
}

impl TxnError {
    /// The Kafka error.
    pub fn response_error(self) -> ResponseError {
        match self {
            TxnError::InvalidRequest => ResponseError::InvalidRequest,
            TxnError::InvalidTransactionTimeout => ResponseError::InvalidTransactionTimeout,
            TxnError::ConcurrentTransactions => ResponseError::ConcurrentTransactions,
            TxnError::ProducerFenced => ResponseError::ProducerFenced,
            TxnError::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping,
            TxnError::InvalidTxnState => ResponseError::InvalidTxnState,
            TxnError::TransactionalIdNotFound => ResponseError::TransactionalIdNotFound,
            TxnError::TransactionAbortable => ResponseError::TransactionAbortable,
            TxnError::NotCoordinator => ResponseError::NotCoordinator,
            TxnError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
            TxnError::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
            TxnError::KafkaStorageError => ResponseError::KafkaStorageError,
            TxnError::UnknownServerError => ResponseError::UnknownServerError,
        }
    }

    /// The Kafka error code.
    pub fn code(self) -> i16 {
        self.response_error().code()
    }

    /// The error code for `api` at `version`: clients older than PRODUCER_FENCED
    /// (InitProducerId < 4, the others < 2) get INVALID_PRODUCER_EPOCH instead, as Kafka
    /// answers them.
    pub fn code_for(self, api: TxnApi, version: i16) -> i16 {
        let fenced_from = match api {
            TxnApi::InitProducerId => 4,
            TxnApi::AddPartitionsToTxn | TxnApi::AddOffsetsToTxn | TxnApi::EndTxn => 2,
        };
        if self == TxnError::ProducerFenced && version < fenced_from {
            ResponseError::InvalidProducerEpoch.code()
        } else {
            self.code()
        }
    }
}

/// Why an append to `__transaction_state` failed, as the IO layer reports it. Kafka maps
/// the log's errors to coordinator errors the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendFailure {
    /// The partition is unavailable or the write timed out: COORDINATOR_NOT_AVAILABLE.
    Unavailable,
    /// This broker is not the partition's leader, or its disk failed: NOT_COORDINATOR.
    NotLeaderOrStorage,
    /// The record is larger than the log accepts: UNKNOWN_SERVER_ERROR.
    TooLarge,
}

impl From<AppendFailure> for TxnError {
    fn from(f: AppendFailure) -> TxnError {
        match f {
            AppendFailure::Unavailable => TxnError::CoordinatorNotAvailable,
            AppendFailure::NotLeaderOrStorage => TxnError::NotCoordinator,
            AppendFailure::TooLarge => TxnError::UnknownServerError,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_kafka_codes() {
        let table = [
            (TxnError::InvalidRequest, 42),
            (TxnError::InvalidTransactionTimeout, 50),
            (TxnError::ConcurrentTransactions, 51),
            (TxnError::ProducerFenced, 90),
            (TxnError::InvalidProducerIdMapping, 49),
            (TxnError::InvalidTxnState, 48),
            (TxnError::TransactionalIdNotFound, 105),
            (TxnError::TransactionAbortable, 120),
            (TxnError::NotCoordinator, 16),
            (TxnError::CoordinatorNotAvailable, 15),
            (TxnError::CoordinatorLoadInProgress, 14),
            (TxnError::KafkaStorageError, 56),
            (TxnError::UnknownServerError, -1),
        ];
        for (e, code) in table {
            assert_eq!(e.code(), code, "{e:?}");
        }
    }

    #[test]
    fn old_versions_hear_invalid_producer_epoch() {
        let table = [
            (TxnApi::InitProducerId, 3, 47),
            (TxnApi::InitProducerId, 4, 90),
            (TxnApi::AddPartitionsToTxn, 1, 47),
            (TxnApi::AddPartitionsToTxn, 2, 90),
            (TxnApi::AddOffsetsToTxn, 0, 47),
            (TxnApi::AddOffsetsToTxn, 4, 90),
            (TxnApi::EndTxn, 1, 47),
            (TxnApi::EndTxn, 5, 90),
        ];
        for (api, version, code) in table {
            assert_eq!(
                TxnError::ProducerFenced.code_for(api, version),
                code,
                "{api:?} v{version}"
            );
        }
        assert_eq!(
            TxnError::ConcurrentTransactions.code_for(TxnApi::EndTxn, 0),
            51
        );
    }

    #[test]
    fn append_failures_map_as_kafka_maps_log_errors() {
        assert_eq!(
            TxnError::from(AppendFailure::Unavailable),
            TxnError::CoordinatorNotAvailable
        );
        assert_eq!(
            TxnError::from(AppendFailure::NotLeaderOrStorage),
            TxnError::NotCoordinator
        );
        assert_eq!(
            TxnError::from(AppendFailure::TooLarge),
            TxnError::UnknownServerError
        );
    }
}
