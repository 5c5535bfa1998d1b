//! What the application sends ([`Record`]) and what it gets back ([`RecordMetadata`]).

use bytes::Bytes;

/// A record to send: `Record::to("topic").key(..).value(..).header(..)`.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub(crate) topic: String,
    pub(crate) partition: Option<i32>,
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Option<Bytes>,
    pub(crate) headers: Vec<(String, Option<Bytes>)>,
    pub(crate) timestamp: Option<i64>,
}

impl Record {
    /// A record for `topic` with no key, value or headers.
    pub fn to(topic: impl Into<String>) -> Record {
        Record {
            topic: topic.into(),
            ..Record::default()
        }
    }

    /// Sets the key (it picks the partition unless one is set).
    pub fn key(mut self, key: impl Into<Bytes>) -> Record {
        self.key = Some(key.into());
        self
    }

    /// Sets the value.
    pub fn value(mut self, value: impl Into<Bytes>) -> Record {
        self.value = Some(value.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Record {
        self.headers.push((name.into(), Some(value.into())));
        self
    }

    /// Sends to this partition instead of the partitioner's choice.
    pub fn partition(mut self, partition: i32) -> Record {
        self.partition = Some(partition);
        self
    }

    /// Sets the create time (ms since the epoch); default: now.
    pub fn timestamp(mut self, ms: i64) -> Record {
        self.timestamp = Some(ms);
        self
    }

    /// The topic.
    pub fn topic_name(&self) -> &str {
        &self.topic
    }

    /// Bytes this record holds in the buffer (what `buffer_memory` counts).
    pub(crate) fn size_estimate(&self) -> usize {
        // Record overhead in a batch (varints, attributes, deltas) is at most ~25 bytes.
        25 + self.key.as_ref().map_or(0, |k| k.len())
            + self.value.as_ref().map_or(0, |v| v.len())
            + self
                .headers
                .iter()
                .map(|(k, v)| 10 + k.len() + v.as_ref().map_or(0, |v| v.len()))
                .sum::<usize>()
    }
}

/// Where a record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset; -1 with `acks=0` (the broker does not answer) or when the broker reported
    /// a duplicate without its offset.
    pub offset: i64,
}
