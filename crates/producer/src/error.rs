//! Why a send failed.

use std::time::Duration;

use kafka_protocol::ResponseError;
use rafka_client::ClientError;

/// A producer failure. `Clone` because one failed batch fails every record in it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProducerError {
    /// Talking to the cluster failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The buffer stayed full for `max_block`.
    #[error(
        "buffer full: no room for the record after waiting {waited:?} (buffer_memory exhausted)"
    )]
    BufferFull {
        /// How long `send` waited.
        waited: Duration,
    },
    /// The record can never fit (bigger than `buffer_memory` or the request limit).
    #[error("record of {size} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// Record size estimate.
        size: usize,
        /// The limit it exceeds.
        max: usize,
    },
    /// The broker rejected the batch.
    #[error("produce to {topic}-{partition} failed: {error}")]
    Kafka {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The wire error.
        error: ResponseError,
    },
    /// The partition does not exist.
    #[error("topic {topic:?} has no partition {partition}")]
    UnknownPartition {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// Encoding the batch failed.
    #[error("cannot encode record batch: {0}")]
    Encode(String),
    /// The record's batch kept failing retriably until `delivery_timeout` ran out.
    #[error("not delivered within {after:?}; last error: {last}")]
    DeliveryTimeout {
        /// The configured delivery timeout.
        after: Duration,
        /// The failure of the last attempt.
        last: Box<ProducerError>,
    },
    /// The producer was closed before the record was delivered.
    #[error("producer closed")]
    Closed,
    /// An invalid setting.
    #[error("invalid producer config: {0}")]
    Config(String),
    /// A transaction coordinator (or, for offsets, the group coordinator) refused a
    /// transactional request.
    #[error("{operation} failed: {error}")]
    Coordinator {
        /// The request (`InitProducerId`, `AddPartitionsToTxn`, `EndTxn`, ...).
        operation: String,
        /// The wire error.
        error: ResponseError,
    },
    /// The producer can do no more transactions: it was fenced by a newer instance with the
    /// same `transactional_id` (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH) or hit another
    /// unrecoverable error. Close it; a new producer continues.
    #[error("fatal transactional error: {0}")]
    TxnFatal(Box<ProducerError>),
    /// The current transaction cannot commit: call `abort_transaction` and start again.
    #[error("transaction must be aborted: {0}")]
    TxnAbortable(Box<ProducerError>),
    /// A transactional call in the wrong state (e.g. `send` before `begin_transaction`).
    #[error("{operation} is not allowed: {state}")]
    TxnState {
        /// The call.
        operation: &'static str,
        /// Why (the producer's transaction state).
        state: String,
    },
}

impl ProducerError {
    /// Whether the producer can do no more transactions (fenced): close it.
    pub fn is_fatal(&self) -> bool {
        matches!(self, ProducerError::TxnFatal(_))
    }

    /// Whether the transaction must be aborted (and the producer may then continue).
    pub fn is_abortable(&self) -> bool {
        matches!(self, ProducerError::TxnAbortable(_))
    }

    /// The wire error behind this failure, if the broker sent one.
    pub fn kafka_error(&self) -> Option<ResponseError> {
        match self {
            ProducerError::Client(c) => c.kafka_error(),
            ProducerError::Kafka { error, .. } | ProducerError::Coordinator { error, .. } => {
                Some(*error)
            }
            ProducerError::DeliveryTimeout { last, .. } => last.kafka_error(),
            ProducerError::TxnFatal(e) | ProducerError::TxnAbortable(e) => e.kafka_error(),
            _ => None,
        }
    }
}
