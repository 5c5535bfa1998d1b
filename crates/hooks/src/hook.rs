//! The [`Hook`] contract and the types a hook sees.
//!
//! Everything here is a Rafka type (records, headers, error codes, API names), never a
//! kafka-protocol type, so a new wire version never breaks a hook.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use rafka_core::{Offset, Timestamp, TopicPartition};

use crate::pattern::TopicPatterns;

/// A Kafka error code as sent on the wire (`0` is no error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub i16);

impl ErrorCode {
    /// No error.
    pub const NONE: ErrorCode = ErrorCode(0);
    /// UNKNOWN_SERVER_ERROR: what a hook that failed or panicked answers.
    pub const UNKNOWN_SERVER_ERROR: ErrorCode = ErrorCode(-1);
    /// CORRUPT_MESSAGE: records that cannot be decoded.
    pub const CORRUPT_MESSAGE: ErrorCode = ErrorCode(2);
    /// INVALID_TOPIC_EXCEPTION: a topic name the policy refuses.
    pub const INVALID_TOPIC_EXCEPTION: ErrorCode = ErrorCode(17);
    /// TOPIC_AUTHORIZATION_FAILED.
    pub const TOPIC_AUTHORIZATION_FAILED: ErrorCode = ErrorCode(29);
    /// INVALID_PARTITIONS: a partition count the policy refuses.
    pub const INVALID_PARTITIONS: ErrorCode = ErrorCode(37);
    /// INVALID_CONFIG.
    pub const INVALID_CONFIG: ErrorCode = ErrorCode(40);
    /// INVALID_REQUEST.
    pub const INVALID_REQUEST: ErrorCode = ErrorCode(42);
    /// POLICY_VIOLATION: Kafka's answer when a create-topic or alter-config policy refuses.
    pub const POLICY_VIOLATION: ErrorCode = ErrorCode(44);
    /// INVALID_RECORD: a record the broker's validation refuses (KIP-467).
    pub const INVALID_RECORD: ErrorCode = ErrorCode(87);

    /// Whether this is an error (non-zero).
    pub fn is_error(self) -> bool {
        self.0 != 0
    }
}

macro_rules! apis {
    ($($name:ident = $key:literal,)*) => {
        /// The Kafka API of a request, as hooks see it: every API Rafka serves or is about to
        /// (the broker's test holds this list to its served table). Others are `Other(key)`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Api {
            $(
                #[doc = concat!(stringify!($name), " (key ", stringify!($key), ").")]
                $name,
            )*
            /// Any other API, by key.
            Other(i16),
        }

        impl Api {
            /// The API for a wire key.
            pub fn from_key(key: i16) -> Api {
                match key {
                    $($key => Api::$name,)*
                    other => Api::Other(other),
                }
            }

            /// Kafka's name for the API (`"Other"` for the rest).
            pub fn name(self) -> &'static str {
                match self {
                    $(Api::$name => stringify!($name),)*
                    Api::Other(_) => "Other",
                }
            }
        }
    };
}

apis! {
    Produce = 0,
    Fetch = 1,
    ListOffsets = 2,
    Metadata = 3,
    OffsetCommit = 8,
    OffsetFetch = 9,
    FindCoordinator = 10,
    JoinGroup = 11,
    Heartbeat = 12,
    LeaveGroup = 13,
    SyncGroup = 14,
    DescribeGroups = 15,
    ListGroups = 16,
    SaslHandshake = 17,
    ApiVersions = 18,
    CreateTopics = 19,
    DeleteTopics = 20,
    DeleteRecords = 21,
    InitProducerId = 22,
    OffsetForLeaderEpoch = 23,
    AddPartitionsToTxn = 24,
    AddOffsetsToTxn = 25,
    EndTxn = 26,
    WriteTxnMarkers = 27,
    TxnOffsetCommit = 28,
    DescribeAcls = 29,
    CreateAcls = 30,
    DeleteAcls = 31,
    DescribeConfigs = 32,
    AlterConfigs = 33,
    DescribeLogDirs = 35,
    SaslAuthenticate = 36,
    CreatePartitions = 37,
    DeleteGroups = 42,
    IncrementalAlterConfigs = 44,
    OffsetDelete = 47,
    DescribeClientQuotas = 48,
    AlterClientQuotas = 49,
    DescribeUserScramCredentials = 50,
    AlterUserScramCredentials = 51,
    DescribeCluster = 60,
    DescribeProducers = 61,
    DescribeTransactions = 65,
    ListTransactions = 66,
    ConsumerGroupHeartbeat = 68,
    ConsumerGroupDescribe = 69,
    DescribeTopicPartitions = 75,
}

/// Who connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The broker address it connected to.
    pub local: SocketAddr,
}

/// One request, as every stage sees it.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The API.
    pub api: Api,
    /// The request's API version.
    pub api_version: i16,
    /// The correlation id from the request header.
    pub correlation_id: i32,
    /// The client id from the request header (empty if none).
    pub client_id: String,
    /// The client's address (also in `session`).
    pub peer: SocketAddr,
    /// When the broker decoded the request (wall clock, ms).
    pub received: Timestamp,
    /// The connection the request came on: listener, principal.
    pub session: std::sync::Arc<crate::Session>,
}

/// One record header. Keys may repeat within a record, as in Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header key.
    pub key: String,
    /// Header value, or none.
    pub value: Option<Bytes>,
}

/// One record, decoded. Produced only for hooks that asked for record access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Offset: in on_produce the position within the client's batch (the log assigns the
    /// real one at append); in on_fetch the record's offset in the log.
    pub offset: Offset,
    /// Timestamp (create time, or log append time where the topic stamps it).
    pub timestamp: Timestamp,
    /// Key, or none.
    pub key: Option<Bytes>,
    /// Value, or none (a tombstone).
    pub value: Option<Bytes>,
    /// Headers in order.
    pub headers: Vec<Header>,
}

impl Record {
    /// The first header with this key.
    pub fn header(&self, key: &str) -> Option<&Header> {
        self.headers.iter().find(|h| h.key == key)
    }
}

/// The records of one partition in one produce request or fetch response.
///
/// Hooks may change records in place but not add or remove them: record counts, offsets and
/// producer sequences stay as the client sent them (idempotence depends on it).
#[derive(Debug, Clone, Default)]
pub struct RecordSet {
    record_count: usize,
    size_bytes: usize,
    records: Option<Vec<Record>>,
    modified: bool,
}

impl RecordSet {
    /// A set whose records are not decoded (no hook for this topic asked for them).
    pub fn summary(record_count: usize, size_bytes: usize) -> RecordSet {
        RecordSet {
            record_count,
            size_bytes,
            records: None,
            modified: false,
        }
    }

    /// A set with decoded records.
    pub fn decoded(records: Vec<Record>, size_bytes: usize) -> RecordSet {
        RecordSet {
            record_count: records.len(),
            size_bytes,
            records: Some(records),
            modified: false,
        }
    }

    /// Number of records (known from batch headers even when not decoded).
    pub fn record_count(&self) -> usize {
        self.record_count
    }

    /// Size of the record batches as received or stored, in bytes.
    pub fn size_bytes(&self) -> usize {
        self.size_bytes
    }

    /// The records, if some hook in the chain declared record access.
    pub fn records(&self) -> Option<&[Record]> {
        self.records.as_deref()
    }

    /// The records for changing in place; marks the set modified, so the broker re-encodes it.
    pub fn records_mut(&mut self) -> Option<&mut [Record]> {
        let r = self.records.as_deref_mut()?;
        self.modified = true;
        Some(r)
    }

    /// Whether a hook took the records for changing.
    pub fn is_modified(&self) -> bool {
        self.modified
    }

    /// The records, consumed (for the broker's re-encoding).
    pub fn into_records(self) -> Option<Vec<Record>> {
        self.records
    }
}

/// An administrative operation, as `on_admin` sees it.
#[derive(Debug, Clone, Copy)]
pub enum AdminOp<'a> {
    /// CreateTopics, one topic.
    CreateTopic {
        /// Name asked for.
        topic: &'a str,
        /// Partitions (after the broker default replaced -1).
        partitions: i32,
        /// Topic config overrides asked for.
        configs: &'a BTreeMap<String, String>,
        /// The request only validates.
        validate_only: bool,
    },
    /// DeleteTopics, one topic.
    DeleteTopic {
        /// Topic to delete.
        topic: &'a str,
    },
    /// CreatePartitions, one topic.
    CreatePartitions {
        /// Topic.
        topic: &'a str,
        /// New total partition count.
        total: i32,
        /// The request only validates.
        validate_only: bool,
    },
    /// AlterConfigs or IncrementalAlterConfigs on one topic.
    AlterTopicConfigs {
        /// Topic.
        topic: &'a str,
        /// The topic's overrides as they would be after the change.
        configs: &'a BTreeMap<String, String>,
        /// The request only validates.
        validate_only: bool,
    },
}

impl AdminOp<'_> {
    /// The topic the operation is on.
    pub fn topic(&self) -> &str {
        match self {
            AdminOp::CreateTopic { topic, .. }
            | AdminOp::DeleteTopic { topic }
            | AdminOp::CreatePartitions { topic, .. }
            | AdminOp::AlterTopicConfigs { topic, .. } => topic,
        }
    }

    /// A short name for logs (`create_topic`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            AdminOp::CreateTopic { .. } => "create_topic",
            AdminOp::DeleteTopic { .. } => "delete_topic",
            AdminOp::CreatePartitions { .. } => "create_partitions",
            AdminOp::AlterTopicConfigs { .. } => "alter_configs",
        }
    }
}

/// One topic (and partition, for Produce) in a finished request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeItem {
    /// Topic.
    pub topic: String,
    /// Partition, where the API is per partition.
    pub partition: Option<i32>,
    /// The error code answered for it.
    pub error_code: ErrorCode,
    /// Records in the request (Produce), else 0.
    pub records: usize,
    /// Record-batch bytes in the request (Produce), else 0.
    pub bytes: usize,
}

/// What `on_response` sees of a finished request.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// From decoding the request to the response being ready.
    pub latency: Duration,
    /// The first error code in the response (top level, then per topic or partition), or 0.
    pub error_code: ErrorCode,
    /// Per topic / partition results for Produce and the topic admin APIs; empty otherwise.
    pub items: Vec<OutcomeItem>,
}

/// A record a hook refused, by its index in the partition's record set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// Index of the record within the batch (Kafka's `batch_index`).
    pub index: usize,
    /// Why.
    pub message: String,
}

/// Why a hook refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Error code for the client.
    pub code: ErrorCode,
    /// Message for the client, where the API carries one.
    pub message: String,
    /// Offending records (Produce only: the response's `record_errors`).
    pub record_errors: Vec<RecordError>,
}

/// A stage's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go on to the next hook, then the broker.
    Continue,
    /// Stop: answer with this error and do nothing of what was asked (for this partition or
    /// topic, or the whole request in `on_request`).
    Reject(Rejection),
}

impl Verdict {
    /// A rejection with a code and message.
    pub fn reject(code: ErrorCode, message: impl Into<String>) -> Verdict {
        Verdict::Reject(Rejection {
            code,
            message: message.into(),
            record_errors: Vec::new(),
        })
    }
}

/// A hook that could not decide. Counts as a rejection (UNKNOWN_SERVER_ERROR) and is logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HookError(pub String);

/// What every stage returns.
pub type HookResult = Result<Verdict, HookError>;

/// The stages a hook runs at. Combine with `|`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stages(u8);

impl Stages {
    /// None.
    pub const NONE: Stages = Stages(0);
    /// `on_connect`.
    pub const CONNECT: Stages = Stages(1);
    /// `on_request`.
    pub const REQUEST: Stages = Stages(1 << 1);
    /// `on_produce`.
    pub const PRODUCE: Stages = Stages(1 << 2);
    /// `on_fetch`.
    pub const FETCH: Stages = Stages(1 << 3);
    /// `on_admin`.
    pub const ADMIN: Stages = Stages(1 << 4);
    /// `on_response`.
    pub const RESPONSE: Stages = Stages(1 << 5);

    /// Whether every stage of `other` is in `self`.
    pub fn contains(self, other: Stages) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }
}

impl std::ops::BitOr for Stages {
    type Output = Stages;
    fn bitor(self, rhs: Stages) -> Stages {
        Stages(self.0 | rhs.0)
    }
}

/// Which topics a hook's produce, fetch and admin stages run for.
#[derive(Debug, Clone, Default)]
pub enum TopicFilter {
    /// Every topic.
    #[default]
    All,
    /// Topics matching one of the patterns.
    Matching(TopicPatterns),
}

impl TopicFilter {
    /// Whether the hook wants this topic.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            TopicFilter::All => true,
            TopicFilter::Matching(p) => p.matches(topic),
        }
    }
}

/// What a hook asks the broker for. Read once, when the chain is built.
#[derive(Debug, Clone, Default)]
pub struct Interest {
    /// The stages to call; the broker skips the others for this hook.
    pub stages: Stages,
    /// Topics for `on_produce`, `on_fetch` and `on_admin`.
    pub topics: TopicFilter,
    /// Whether `on_produce` / `on_fetch` need decoded records. Without it the record set
    /// carries counts and sizes only and no batch is decompressed.
    pub record_access: bool,
}

/// Custom logic run by the broker at each stage of a request.
///
/// Every method has a default that lets the request go on; implement the stages named in
/// [`Hook::interest`]. Hooks run on the broker's async workers, synchronously, in the order
/// configured: keep them short and never block on I/O (hand slow work to a thread through a
/// bounded channel, as `audit_log` does). They are shared by every connection, so state needs
/// interior synchronisation (`Send + Sync`).
///
/// A hook that returns `Err` or panics counts as a rejection answered with
/// UNKNOWN_SERVER_ERROR and is logged; the connection and the broker go on.
pub trait Hook: Send + Sync + 'static {
    /// A short name for logs and errors.
    fn name(&self) -> &str;

    /// The stages and topics this hook wants and whether it needs records.
    fn interest(&self) -> Interest;

    /// A client connected. `Reject` closes the connection at once.
    fn on_connect(&self, _peer: &PeerInfo) -> HookResult {
        Ok(Verdict::Continue)
    }

    /// Any request, before its handler. `Reject` answers every topic/partition of the request
    /// with the error (APIs without an error field: the connection is closed).
    fn on_request(&self, _ctx: &RequestContext) -> HookResult {
        Ok(Verdict::Continue)
    }

    /// One partition of a produce request, after the batches were validated and before any is
    /// appended. May change records (with record access) or reject the partition's batches.
    fn on_produce(
        &self,
        _ctx: &RequestContext,
        _tp: &TopicPartition,
        _records: &mut RecordSet,
    ) -> HookResult {
        Ok(Verdict::Continue)
    }

    /// One partition of a fetch response, before it is sent. May change what goes back (the
    /// stored data is never changed) or answer the partition with an error.
    fn on_fetch(
        &self,
        _ctx: &RequestContext,
        _tp: &TopicPartition,
        _records: &mut RecordSet,
    ) -> HookResult {
        Ok(Verdict::Continue)
    }

    /// A topic administration operation, before it takes effect.
    fn on_admin(&self, _ctx: &RequestContext, _op: &AdminOp<'_>) -> HookResult {
        Ok(Verdict::Continue)
    }

    /// A request was answered (or, for acks=0 produce, handled). Observation only.
    fn on_response(&self, _ctx: &RequestContext, _outcome: &Outcome) {}
}
