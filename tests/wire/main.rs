//! Wire-level tests: an in-process broker driven by raw Kafka requests (`common::KafkaConn`)
//! so that each case controls the exact API version, field and byte it sends. librdkafka
//! appears only as the other side of a raw exchange (a group member, a consumer of old
//! versions). One test binary, one module per topic.

#[path = "../common/mod.rs"]
mod common;
#[path = "../support/mod.rs"]
mod support;

mod acls_raw;
mod authz_raw;
mod bad_input;
mod client_quotas_raw;
mod fetch_raw;
mod fetch_sendfile_raw;
mod fetch_session_raw;
mod groups_raw;
mod idempotence_raw;
mod long_poll_raw;
mod sasl_raw;
mod scram_credentials_raw;
mod version_sweep;
