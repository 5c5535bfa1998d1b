//! rafka-broker: the Kafka-compatible broker.
//!
//! [`Broker::start`] opens the storage engine, recovers every partition, binds the
//! listener and serves until [`Broker::shutdown`]. The same type runs the `rafka` binary and
//! an application's tests in-process (listen on port 0, ask [`Broker::bootstrap_address`]).
//! With `admin.listen` set it also serves `/metrics` and health checks over HTTP
//! ([`Broker::admin_address`]).
//!
//! The public API is [`Broker`], its builder, [`Config`] and the hook crate it re-exports;
//! [`Broker::shared`], [`dispatch`] and [`Reply`] let the benchmarks and tests drive a
//! running broker's API handlers in process. Every module is private to the crate.

mod accept;
mod acl;
mod acl_store;
mod admin;
mod api;
mod authz;
mod broker;
mod cleaner_checkpoint;
mod cleaner_codec;
mod cleaner_state;
mod config;
mod connection_quotas;
mod credentials;
mod descriptors;
pub mod diskless;
pub(crate) mod fetch_session;
mod group;
mod hooks;
mod metrics;
mod normalize;
mod oauthbearer;
mod pipeline;
mod producer_state;
mod quota;
mod quota_manager;
mod request_memory;
mod sasl;
mod server;
mod shared;
mod splice;
mod ssl_principal_mapper;
mod state;
mod sync_queue;
mod throttle;
pub mod tls;
mod topic_config;
mod txn;

// The broker and its configuration: what the `rafka` binary and embedding applications use.
pub use broker::{Broker, BrokerBuilder, BrokerError};
pub use config::{
    AdminConfig, BrokerConfig, ClientAuth, Config, ConfigError, DurabilityConfig, FsyncPolicy,
    ListenerConfig, ListenerSslConfig, LogFormat, LoggingConfig, SaslMechanism, ScramUserConfig,
};
pub use credentials::CredentialsError;
/// A listener's `security_protocol` ([`ListenerConfig::security_protocol`]).
pub use rafka_core::SecurityProtocol;
/// Hooks written in Rust ([`BrokerBuilder::hook`]) implement [`rafka_hooks::Hook`].
pub use rafka_hooks;
pub use state::TopicError;

// In-process access for the benchmarks and integration tests: the state a running broker
// shares ([`Broker::shared`]) and the API dispatch, driven without sockets.
pub use api::{dispatch, Reply};
pub use shared::Shared;
pub use state::{IsolationLevel, OpenScan};
