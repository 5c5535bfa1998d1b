//! Real clients against an in-process broker: librdkafka (the `rdkafka` crate), `rskafka`
//! and Rafka's own `rafka-producer` / `rafka-consumer`, through admin, groups, round trips,
//! hooks, metrics and the storage engines. One test binary, one module per topic; the
//! scripts beside it (kcat, kafkajs, Go clients) are run by `.ci/run` against the binary.
//!
//! Tests that read the broker's log capture it per test (`support::LogCapture`): the broker
//! runs on a runtime whose threads log to the capture, so other tests' brokers in this
//! process never reach it.

#[path = "../common/mod.rs"]
mod common;
mod proxy;
mod quotas;
#[path = "../support/mod.rs"]
mod support;

mod acl;
mod compaction;
mod diskless;
mod fetch_sendfile;
mod hooks;
mod kip848;
mod metrics;
mod oauthbearer;
mod rafka_consumer;
mod rafka_producer;
mod rafka_sasl;
mod rafka_tls;
mod rdkafka_admin;
mod rdkafka_groups;
mod rdkafka_roundtrip;
mod sasl;
mod second_client;
mod slow_requests;
mod storage_engines;
mod tls;
mod transactions;
