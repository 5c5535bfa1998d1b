//! rafka-broker: the Kafka-compatible broker.
//!
//! [`Broker::start`] opens the storage engine, recovers every partition, binds the
//! listener and serves until [`Broker::shutdown`]. The same type runs the `rafka` binary and
//! an application's tests in-process (listen on port 0, ask [`Broker::bootstrap_address`]).
//! With `admin.listen` set it also serves `/metrics` and health checks over HTTP
//! ([`Broker::admin_address`]).

mod accept;
mod admin;
pub mod api;
mod authz;
mod broker;
pub mod config;
pub mod group;
mod hooks;
pub mod metrics;
mod normalize;
pub mod producer_state;
mod server;
pub mod state;
pub mod topic_config;
pub(crate) mod txn;

pub use broker::{Broker, BrokerBuilder, BrokerError, Shared};
pub use config::{
    AdminConfig, BrokerConfig, Config, ConfigError, DurabilityConfig, FsyncPolicy, LogFormat,
    LoggingConfig,
};
pub use rafka_hooks;
