//! The client's typed errors. Wire error codes arrive as [`ResponseError`] inside
//! [`ClientError::Kafka`]; everything else says what the client itself ran into.

use std::time::Duration;

use kafka_protocol::ResponseError;

/// Why a client operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// None of the bootstrap addresses answered.
    #[error("no broker reachable at {addresses} ({reason})")]
    NoBrokerReachable {
        /// The addresses tried.
        addresses: String,
        /// What the last attempt ran into.
        reason: String,
    },
    /// TCP connect failed.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The address.
        addr: String,
        /// The I/O error, as text.
        reason: String,
    },
    /// The TLS handshake failed (the broker's certificate was not trusted, or it refused
    /// ours). Not retried: it fails the same way again, as Java's SslAuthenticationException.
    #[error("TLS handshake with {addr} failed: {reason}")]
    Tls {
        /// The broker address.
        addr: String,
        /// What rustls or the socket reported.
        reason: String,
    },
    /// SASL authentication failed: the broker's own message (KIP-152), e.g. a wrong
    /// password or an unknown user. Not retried.
    #[error("authentication to {addr} failed: {message}")]
    Authentication {
        /// The broker address.
        addr: String,
        /// The broker's error message, or what the client found wrong in its answer.
        message: String,
    },
    /// A wait ran out.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What was being waited for.
        what: String,
        /// The timeout.
        after: Duration,
    },
    /// The connection closed while the request was in flight or queued.
    #[error("connection to {addr} closed: {reason}")]
    ConnectionClosed {
        /// The broker address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The broker serves no version of an API that this client can speak.
    #[error("broker does not support API {api_key} in versions {min}..={max}")]
    UnsupportedVersion {
        /// The API key.
        api_key: i16,
        /// Lowest version this client speaks.
        min: i16,
        /// Highest version this client speaks.
        max: i16,
    },
    /// The broker answered with an error code.
    #[error("{context}: {error}")]
    Kafka {
        /// What was asked (e.g. `create topic "t"`).
        context: String,
        /// The wire error.
        error: ResponseError,
    },
    /// A frame did not encode or decode.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The topic does not exist (after metadata refreshes).
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    /// The caller passed something unusable.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The client was closed.
    #[error("client closed")]
    Closed,
}

impl ClientError {
    /// Whether trying again (after a backoff, perhaps on a new connection or with fresh
    /// metadata) may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Connect { .. }
            | ClientError::Timeout { .. }
            | ClientError::ConnectionClosed { .. }
            | ClientError::NoBrokerReachable { .. }
            | ClientError::UnknownTopic(_) => true,
            ClientError::Kafka { error, .. } => error.is_retriable(),
            _ => false,
        }
    }

    /// The wire error, when the broker sent one.
    pub fn kafka_error(&self) -> Option<ResponseError> {
        match self {
            ClientError::Kafka { error, .. } => Some(*error),
            _ => None,
        }
    }

    /// Whether this error means cached metadata is stale (leader moved, topic unknown).
    pub fn invalidates_metadata(&self) -> bool {
        matches!(
            self.kafka_error(),
            Some(
                ResponseError::NotLeaderOrFollower
                    | ResponseError::UnknownTopicOrPartition
                    | ResponseError::LeaderNotAvailable
                    | ResponseError::UnknownTopicId
                    | ResponseError::FencedLeaderEpoch
                    | ResponseError::NotCoordinator
            )
        ) || matches!(
            self,
            ClientError::ConnectionClosed { .. } | ClientError::UnknownTopic(_)
        )
    }

    /// A [`ClientError::Kafka`] from a non-zero code, `Ok` for zero.
    pub fn check(code: i16, context: impl FnOnce() -> String) -> Result<(), ClientError> {
        match ResponseError::try_from_code(code) {
            None => Ok(()),
            Some(error) => Err(ClientError::Kafka {
                context: context(),
                error,
            }),
        }
    }
}
