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
}
