//! rafka-storage: Rafka's storage engines behind the [`StorageEngine`] contract of
//! rafka-core.
//!
//! - [`log`]: the default engine, Kafka's segmented log on local disk ([`LogEngine`]).
//! - [`memory`]: batches in memory with a write-ahead log and snapshots ([`MemoryEngine`]).
//! - `rocksdb` (feature `rocksdb`): batches in RocksDB (`RocksEngine`).
//! - `conformance` (feature `conformance`): the suite every engine must pass.
//! - [`stats`]: process-wide fsync count and latency, for the broker's metrics.
//! - `durable`: fsync of a directory and atomic replacement of a small file, for the
//!   engines that keep their own files.
//! - `group_commit`: the group-commit `flush` every engine shares (one sync serves every
//!   write before it).
//! - [`StorageConfig`] / [`open_engine`]: the `storage:` config section (with one section per
//!   engine for its own settings) and the engine it names.
//!
//! This crate does file I/O only: no networking, no Kafka API keys.
//!
//! [`StorageEngine`]: rafka_core::StorageEngine

mod config;
mod durable;
mod group_commit;
pub mod log;
pub mod memory;
#[cfg(feature = "rocksdb")]
pub mod rocksdb;
pub mod stats;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use config::{
    open_engine, LogSection, MemorySection, RocksdbSection, StorageConfig, StorageConfigError,
    STORAGE_TYPES,
};
pub use log::{LogEngine, LogPartition};
pub use memory::{MemoryEngine, MemoryOptions, MemoryPartition};
#[cfg(feature = "rocksdb")]
pub use rocksdb::{RocksEngine, RocksPartition};
