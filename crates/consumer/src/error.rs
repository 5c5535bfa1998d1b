//! Why a consumer call failed.

use rafka_client::ClientError;

/// A consumer failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConsumerError {
    /// Talking to the cluster failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// `auto_offset_reset = error` and there is no committed offset (or it is out of range).
    #[error("no valid offset for {topic}-{partition} and auto_offset_reset is error")]
    NoOffset {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// A record batch did not decode.
    #[error("cannot decode records of {topic}-{partition}: {reason}")]
    Decode {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// What the decoder said.
        reason: String,
    },
    /// The partition is not assigned to this consumer.
    #[error("{topic}-{partition} is not assigned to this consumer")]
    NotAssigned {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// An invalid setting.
    #[error("invalid consumer config: {0}")]
    Config(String),
    /// The consumer was closed.
    #[error("consumer closed")]
    Closed,
}
