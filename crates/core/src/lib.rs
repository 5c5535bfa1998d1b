//! rafka-core: the vocabulary every other Rafka crate shares.
//!
//! Offsets, partitions, topic names, the magic-2 [`RecordBatch`] view and the
//! [`ValidatedBatch`] the engines take, the
//! [`StorageEngine`] / [`PartitionLog`] contracts, the hard [`limits`] and the lock-free
//! latency [`histogram`] that storage and broker both fill.
//! No tokio, no sockets, no file I/O.

pub mod batch;
pub mod compact;
pub mod histogram;
pub mod limits;
pub mod security;
pub mod storage;
pub mod txn;
pub mod types;
pub mod validated;

pub use batch::{BatchError, CompressionType, ControlType, RecordBatch, TimestampType};
pub use compact::{BatchCodec, CodecError, CompactionCodec, CompactionPlan, CompactionStats};
pub use security::SecurityProtocol;
pub use storage::{
    AbortedTxn, AppendInfo, FileRegion, LogConfig, PartitionLog, ProducerSnapshot, ReadResult,
    RegionBatch, RegionRead, StorageEngine, StorageError, StorageResult,
};
pub use types::{Offset, Partition, Timestamp, TopicName, TopicNameError, TopicPartition};
pub use validated::ValidatedBatch;
