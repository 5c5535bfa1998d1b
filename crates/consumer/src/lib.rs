//! `rafka-consumer`: an async Kafka consumer.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rafka_consumer::ConsumerError> {
//! use rafka_consumer::Consumer;
//! let consumer = Consumer::builder()
//!     .bootstrap("127.0.0.1:9092")
//!     .group("g")
//!     .subscribe(["events"])
//!     .build()
//!     .await?;
//! let record = consumer.recv().await?;
//! println!("{}-{}@{}", record.topic, record.partition, record.offset);
//! consumer.close().await?;
//! # Ok(()) }
//! ```
//!
//! With `subscribe`, the consumer joins its group with the classic protocol (JoinGroup,
//! SyncGroup, Heartbeat) and, when it is the leader, assigns partitions with `range` or
//! `roundrobin`. With `assign`, it reads the given partitions without group membership
//! (a group id is then only used for commits). Auto-commit commits the positions of
//! records already handed to the application and then asked past (at-least-once), at most
//! every `auto_commit_interval`; `commit()` commits them now.
//!
//! Isolation: `isolation_level` is **read_committed by default** (as issue 17 asks; the
//! Java client's default is read_uncommitted). The consumer sends it in Fetch and
//! ListOffsets, so it reads up to the last stable offset, skips the records of aborted
//! transactions (the answer's aborted-transaction list) and never hands out control
//! batches (commit and abort markers). `group_metadata()` is what a transactional producer
//! sends with the offsets of a consume-transform-produce loop.

mod assignor;
mod consumer;
mod error;
mod group;

pub use assignor::{Assignor, MemberSubscription};
pub use consumer::{
    Consumer, ConsumerBuilder, ConsumerConfig, ConsumerRecord, IsolationLevel, OffsetReset,
    RebalanceCallback,
};
pub use error::ConsumerError;
pub use rafka_client::GroupMetadata;
