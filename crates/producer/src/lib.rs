//! `rafka-producer`: an async Kafka producer.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rafka_producer::ProducerError> {
//! use rafka_producer::{Producer, Record};
//! let producer = Producer::builder().bootstrap("127.0.0.1:9092").build().await?;
//! let md = producer.send(Record::to("events").key("k").value("hello")).await?;
//! println!("partition {} offset {}", md.partition, md.offset);
//! producer.close().await?;
//! # Ok(()) }
//! ```
//!
//! Records are batched per partition (`linger`, `batch_size`) in a bounded buffer
//! (`buffer_memory`; `send` waits up to `max_block` for room), compressed (none, gzip,
//! snappy, lz4, zstd), sent with acks 0/1/all, at most 5 batches in flight per partition,
//! retried on retriable errors, and — by default, as in the Java client — idempotent:
//! the producer gets an id with InitProducerId and numbers every batch, so a retry after a
//! lost response is recognised by the broker and never written twice.
//!
//! With `transactional_id`, the producer is transactional, as in Kafka's clients:
//! `init_transactions` once, then `begin_transaction`, sends (and
//! `send_offsets_to_transaction` for a consume-transform-produce loop), and
//! `commit_transaction` or `abort_transaction`. Errors say whether the transaction must be
//! aborted ([`ProducerError::is_abortable`]) or the producer was fenced
//! ([`ProducerError::is_fatal`]).

mod config;
mod error;
mod partitioner;
mod producer;
mod record;
mod txn;

pub use config::{Acks, ProducerBuilder, ProducerConfig};
pub use error::ProducerError;
pub use kafka_protocol::records::Compression;
pub use partitioner::{murmur2, partition_for_key};
pub use producer::{DeliveryFuture, Producer};
pub use rafka_client::GroupMetadata;
pub use record::{Record, RecordMetadata};
