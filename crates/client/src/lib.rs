//! `rafka-client`: what Rafka's producer, consumer and command line share. Bootstrap from a
//! list of addresses, ApiVersions negotiation per connection ([`BrokerConnection`]), a
//! metadata cache refreshed on a timer and on demand ([`Client`]), pipelined requests
//! matched by correlation id, timeouts, retries with backoff, typed errors
//! ([`ClientError`]) and the admin calls the `rafka` command line needs ([`admin`]).
//!
//! It speaks the Kafka wire protocol through the `kafka-protocol` crate and works against
//! any Kafka-compatible broker.

pub mod acls;
pub mod admin;
mod client;
mod connection;
mod error;
mod metadata;
pub mod properties;
mod quotas;
mod sasl;
pub mod security;
pub mod txn;
mod users;

pub use acls::{AclBinding, AclBindingFilter};
pub use client::{Client, ClientConfig};
pub use connection::{BrokerConnection, PendingResponse};
pub use error::ClientError;
pub use kafka_protocol;
pub use metadata::{Metadata, PartitionMetadata, TopicMetadata};
pub use quotas::{ClientQuotas, QuotaEntity, QuotaMatch};
pub use rafka_protocol::sasl::scram::ScramMechanism;
pub use security::{SaslConfig, SaslMechanism, SecurityConfig, SecurityProtocol, TlsConfig};
pub use txn::GroupMetadata;
pub use users::{UserScramCredentials, DEFAULT_ITERATIONS};

/// Result with [`ClientError`].
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
