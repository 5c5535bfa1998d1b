//! The group coordinator: consumer groups and their committed offsets.
//!
//! Membership follows a protocol ([`classic`] today; the KIP-848 consumer protocol can sit
//! beside it as another member-state type under the same [`GroupCoordinator`], sharing the
//! offsets and the persistence below). Committed offsets and group metadata are records in
//! the internal topic `__consumer_offsets` ([`records`]), written through the storage
//! engine, and replayed on start. The topic is compacted, as Kafka's is
//! (`cleanup.policy=compact`, `segment.bytes` from `offsets.topic.segment.bytes`): the
//! broker's cleaner keeps the latest record per key, so replaying what is left yields the
//! same offsets and groups — every record fully replaces the state of its key (an offset,
//! a classic group, a consumer group, a group config), and deletions write a tombstone for
//! every key they end (each offset, the group and consumer-group records), which stays
//! `delete.retention.ms` after its first cleaning. A transaction's offsets (TxnOffsetCommit)
//! take effect at its commit marker only where their records are newer than the committed
//! offset's (Kafka's rule: `Group::offset_records`), so compacting committed transactions
//! like other records changes nothing; the cleaner removes an aborted transaction's records
//! and leaves an open one whole and out of its dedupe map, so a pending transactional
//! offset is never lost and never hides an older committed one.

pub mod classic;
pub mod config;
pub mod consumer;
pub mod records;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use rafka_core::batch::{BatchBuilder, SimpleRecord};
use rafka_core::{Offset, RecordBatch, Timestamp, ValidatedBatch};

use crate::state::{
    is_internal, Cluster, IsolationLevel, PartitionState, TopicError, OFFSETS_TOPIC,
};
use classic::{ClassicGroup, GroupSettings};
use consumer::{ConsumerGroup, ConsumerSettings, TopicView};
use records::{OffsetValue, OffsetsRecord};

/// Kafka's `String.hashCode`, so a group lands in the same partition as in Kafka.
fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// One group: membership plus committed offsets. A group is of the classic type or, once
/// a KIP-848 member joined it while it had no classic members, of the consumer type.
pub struct Group {
    /// Classic membership state.
    pub classic: ClassicGroup,
    /// Consumer-protocol membership, for a group of the consumer type.
    pub consumer: Option<ConsumerGroup>,
    /// Committed offsets by (topic, partition).
    pub offsets: BTreeMap<(String, i32), OffsetValue>,
    /// The log offset (in `__consumer_offsets`) of the record behind each committed offset:
    /// a transaction's offset replaces one only if its record is newer, as in Kafka, so a
    /// compacted topic replays to the same offsets.
    pub offset_records: HashMap<(String, i32), i64>,
}

impl Group {
    /// A new group with no members.
    pub fn new(id: &str, now_ms: i64) -> Group {
        Group {
            classic: ClassicGroup::new(id, now_ms),
            consumer: None,
            offsets: BTreeMap::new(),
            offset_records: HashMap::new(),
        }
    }

    /// Stores a committed offset and the log offset of its record.
    fn set_offset(&mut self, key: (String, i32), value: OffsetValue, record_offset: i64) {
        self.offset_records.insert(key.clone(), record_offset);
        self.offsets.insert(key, value);
    }

    /// Stores a transaction's offset at its commit marker, unless the committed one comes
    /// from a newer record (Kafka's rule: a plain commit written between the transaction's
    /// offset and its marker wins).
    fn commit_txn_offset(&mut self, key: (String, i32), value: OffsetValue, record_offset: i64) {
        let newer = self.offsets.contains_key(&key)
            && self
                .offset_records
                .get(&key)
                .is_some_and(|&at| at > record_offset);
        if !newer {
            self.set_offset(key, value, record_offset);
        }
    }

    /// No members of either protocol.
    pub fn is_empty(&self) -> bool {
        self.classic.is_empty() && self.consumer.as_ref().is_none_or(ConsumerGroup::is_empty)
    }

    /// Topics the group's members subscribe to (from KIP-848 subscriptions, or the classic
    /// consumer protocol's subscription metadata).
    pub fn subscribed_topics(&self) -> Vec<String> {
        use kafka_protocol::protocol::Decodable;
        if let Some(c) = self.consumer.as_ref().filter(|_| self.is_consumer_type()) {
            return c
                .describe()
                .into_iter()
                .flat_map(|(m, _)| m.subscribed_names)
                .collect();
        }
        if self.classic.protocol_type() != Some("consumer") {
            return Vec::new();
        }
        let mut out = Vec::new();
        for meta in self.classic.subscriptions() {
            let mut buf: bytes::Bytes = meta;
            if buf.len() < 2 {
                continue;
            }
            let version = i16::from_be_bytes([buf[0], buf[1]]);
            let _ = bytes::Buf::get_i16(&mut buf);
            if let Ok(s) = kafka_protocol::messages::ConsumerProtocolSubscription::decode(
                &mut buf,
                version.clamp(0, 3),
            ) {
                out.extend(s.topics.iter().map(|t| t.to_string()));
            }
        }
        out
    }

    /// Whether the group is (now) of the consumer type.
    pub fn is_consumer_type(&self) -> bool {
        self.consumer.is_some() && self.classic.is_empty()
    }

    /// The record that persists the group's membership.
    pub fn membership_record(&self, id: &str, now_ms: i64) -> OffsetsRecord {
        match &self.consumer {
            Some(c) if self.classic.is_empty() => {
                let (group_epoch, assignment_epoch, assignor, members, target) = c.snapshot();
                OffsetsRecord::ConsumerGroup {
                    group: id.to_string(),
                    value: Some(records::ConsumerGroupValue {
                        group_epoch,
                        assignment_epoch,
                        assignor,
                        members,
                        target,
                    }),
                }
            }
            _ => OffsetsRecord::Group {
                group: id.to_string(),
                value: Some(self.classic.to_value(now_ms)),
            },
        }
    }
}

/// Coordinator settings from the broker config.
#[derive(Debug, Clone)]
pub struct CoordinatorSettings {
    /// Membership timeouts.
    pub groups: GroupSettings,
    /// `offsets.retention.minutes` in ms.
    pub offsets_retention_ms: i64,
    /// `offsets.topic.segment.bytes`: `segment.bytes` of `__consumer_offsets` at creation.
    pub offsets_topic_segment_bytes: u64,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
    /// KIP-848 consumer groups.
    pub consumer: ConsumerSettings,
    /// Defaults and bounds of per-group configs.
    pub group_configs: config::GroupConfigDefaults,
}

/// Who commits offsets: the member and generation inputs of OffsetCommit (and of
/// TxnOffsetCommit, which reuses [`GroupCoordinator::commit_offsets`]).
#[derive(Debug, Clone, Copy)]
pub struct Committer<'a> {
    /// Member id ("" for a non-member: a standalone consumer or an admin tool).
    pub member_id: &'a str,
    /// Static membership id.
    pub instance_id: Option<&'a str>,
    /// Generation (classic group) or member epoch (consumer group); negative for a non-member.
    pub generation_or_epoch: i32,
    /// Version of the OffsetCommit request (v9 brought member epochs and GROUP_ID_NOT_FOUND).
    pub api_version: i16,
    /// A TxnOffsetCommit rather than an OffsetCommit: the producer id and epoch of the
    /// transaction the offsets belong to.
    pub transactional: Option<(i64, i16)>,
}

/// One offset to commit.
#[derive(Debug, Clone)]
pub struct OffsetToCommit {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The committed offset.
    pub offset: i64,
    /// Leader epoch of the committed offset (-1 if unknown).
    pub leader_epoch: i32,
    /// Client metadata, stored as sent.
    pub metadata: Option<String>,
}

/// What a commit did, one error per offset in request order.
pub struct CommitResult {
    /// Per offset: `None` when stored.
    pub errors: Vec<Option<kafka_protocol::ResponseError>>,
    /// The `__consumer_offsets` partition written, to flush before answering under
    /// `acks=all` durability.
    pub written: Option<Arc<PartitionState>>,
}

/// All groups of this broker.
pub struct GroupCoordinator {
    groups: Mutex<HashMap<String, Group>>,
    /// Per-group config overrides (GROUP resources), whether or not the group exists, as
    /// in Kafka. Lock order: `groups` first when both are needed; never held across a
    /// [`GroupCoordinator::persist`], which reads it.
    configs: Mutex<HashMap<String, BTreeMap<String, String>>>,
    partitions: Vec<Arc<PartitionState>>,
    /// Offsets committed in open transactions (TxnOffsetCommit), per producer id, made
    /// visible by the commit marker on their group's partition and dropped by an abort.
    /// Lock order: after `groups`.
    txn_offsets: Mutex<HashMap<i64, Vec<TxnOffset>>>,
    /// Settings.
    pub settings: CoordinatorSettings,
}

/// An offset committed in a transaction that is still open.
#[derive(Debug, Clone)]
struct TxnOffset {
    group: String,
    topic: String,
    partition: i32,
    value: OffsetValue,
    /// Log offset of its record in `__consumer_offsets`.
    record_offset: i64,
}

/// Why a write to `__consumer_offsets` failed.
pub type PersistError = crate::state::AppendError;

/// Committed offsets of one topic's partitions (`None`: nothing committed).
pub type PartitionOffsets = Vec<(i32, Option<OffsetValue>)>;
/// Per partition of one topic, the error (`None`: done).
pub type PartitionErrors = Vec<(i32, Option<kafka_protocol::ResponseError>)>;

/// A group as DescribeGroups describes it.
#[derive(Debug, Clone)]
pub enum ClassicDescription {
    /// No such group (Kafka answers state Dead).
    Missing,
    /// A consumer (KIP-848) group: described by ConsumerGroupDescribe instead.
    ConsumerType,
    /// A classic group.
    Group {
        /// Kafka's state name.
        state: &'static str,
        /// Protocol type.
        protocol_type: String,
        /// Chosen protocol.
        protocol: String,
        /// (member id, instance id, client id, host, metadata, assignment).
        members: Vec<(
            String,
            Option<String>,
            String,
            String,
            bytes::Bytes,
            bytes::Bytes,
        )>,
    },
}

/// A group as ConsumerGroupDescribe describes it.
#[derive(Debug, Clone)]
pub enum ConsumerDescription {
    /// No such group, or an empty one.
    Missing,
    /// A classic group with members.
    NotConsumer,
    /// A consumer group.
    Group {
        /// Kafka's state name.
        state: &'static str,
        /// Group epoch.
        group_epoch: i32,
        /// Target assignment epoch.
        assignment_epoch: i32,
        /// Assignor in use.
        assignor: String,
        /// Members with their target assignment.
        members: Vec<(
            consumer::MemberState,
            std::collections::BTreeSet<consumer::TopicPart>,
        )>,
    },
}

/// A group as ListGroups lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    /// Group id.
    pub id: String,
    /// `classic` or `consumer` (KIP-848).
    pub kind: &'static str,
    /// Kafka's state name for the group's type.
    pub state: &'static str,
    /// The members' protocol type ("consumer" for a consumer group).
    pub protocol_type: String,
}

/// Why a group config change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterConfigsError {
    /// The new configs are not valid (Kafka's INVALID_CONFIG), with the reason.
    Invalid(String),
    /// `__consumer_offsets` could not be written.
    Storage,
}

impl GroupCoordinator {
    /// Opens (creating if needed) `__consumer_offsets` and replays it.
    pub fn open(
        cluster: &Cluster,
        partitions: i32,
        settings: CoordinatorSettings,
    ) -> Result<GroupCoordinator, TopicError> {
        let topic = cluster.open_internal_topic(
            OFFSETS_TOPIC,
            partitions,
            settings.offsets_topic_segment_bytes,
        )?;
        let now = Instant::now();
        let mut groups: HashMap<String, Group> = HashMap::new();
        let mut configs: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        let mut replayed = 0u64;
        let mut txn_offsets: HashMap<i64, Vec<TxnOffset>> = HashMap::new();
        for p in &topic.partitions {
            // Transactional offsets of this partition whose marker is not read yet.
            let mut pending: HashMap<i64, Vec<TxnOffset>> = HashMap::new();
            let mut at = p.log_start_offset();
            let end = p.log_end_offset();
            while at < end {
                let read = p.read(at, 4 * 1024 * 1024, IsolationLevel::ReadUncommitted)?;
                let batches = RecordBatch::split_all(read.records).unwrap_or_default();
                let Some(last) = batches.last() else { break };
                let next = last.next_offset();
                for b in batches.iter().filter(|b| b.next_offset() > at) {
                    if b.is_control() {
                        // A transaction marker: its producer's offsets on this partition
                        // take effect (commit) or are dropped (abort).
                        let mine = pending.remove(&b.producer_id()).unwrap_or_default();
                        if b.control_type() == Some(rafka_core::ControlType::Commit) {
                            for o in mine {
                                replayed += 1;
                                groups
                                    .entry(o.group.clone())
                                    .or_insert_with(|| {
                                        Group::new(&o.group, o.value.commit_timestamp)
                                    })
                                    .commit_txn_offset(
                                        (o.topic, o.partition),
                                        o.value,
                                        o.record_offset,
                                    );
                            }
                        }
                        continue;
                    }
                    let txn = b.is_transactional().then(|| b.producer_id());
                    for (record_offset, r) in
                        b.decode_uncompressed_with_offsets().unwrap_or_default()
                    {
                        let record_offset = record_offset.0;
                        let Some(key) = &r.key else { continue };
                        if let Some(pid) = txn {
                            if let Some(OffsetsRecord::Offset {
                                group,
                                topic,
                                partition,
                                value: Some(value),
                            }) = OffsetsRecord::decode(key, r.value.as_deref())
                            {
                                pending.entry(pid).or_default().push(TxnOffset {
                                    group,
                                    topic,
                                    partition,
                                    value,
                                    record_offset,
                                });
                            }
                            continue;
                        }
                        match OffsetsRecord::decode(key, r.value.as_deref()) {
                            Some(OffsetsRecord::GroupConfig { group, value }) => {
                                replayed += 1;
                                match value {
                                    Some(v) => configs.insert(group, v),
                                    None => configs.remove(&group),
                                };
                            }
                            Some(rec) => {
                                replayed += 1;
                                apply(&mut groups, rec, now, record_offset);
                            }
                            None => {}
                        }
                    }
                }
                if next <= at {
                    break;
                }
                at = next;
            }
            // Still open: the transaction coordinator finishes them.
            for (pid, list) in pending {
                txn_offsets.entry(pid).or_default().extend(list);
            }
        }
        tracing::info!(
            groups = groups.len(),
            records = replayed,
            "group coordinator loaded"
        );
        Ok(GroupCoordinator {
            groups: Mutex::new(groups),
            configs: Mutex::new(configs),
            partitions: topic.partitions.clone(),
            txn_offsets: Mutex::new(txn_offsets),
            settings,
        })
    }

    /// The index of the `__consumer_offsets` partition holding `group`.
    pub(crate) fn partition_index_for(&self, group: &str) -> i32 {
        let n = self.partitions.len().max(1) as i32;
        (java_string_hash(group) & 0x7fff_ffff) % n
    }

    fn partition_for(&self, group: &str) -> &Arc<PartitionState> {
        &self.partitions[self.partition_index_for(group) as usize]
    }

    /// Writes the transaction marker of `producer_id` on `__consumer_offsets` partition
    /// `partition` and, for a commit, makes the producer's pending offsets of the groups
    /// there visible; an abort drops them. Both under the group lock, so an OffsetFetch
    /// sees the offsets exactly when the marker is in the log. A partition this
    /// coordinator does not have is taken as done.
    pub(crate) fn complete_txn(
        &self,
        partition: i32,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
    ) -> Result<Arc<PartitionState>, PersistError> {
        let mut groups = self.groups.lock();
        let Some(p) = usize::try_from(partition)
            .ok()
            .and_then(|i| self.partitions.get(i))
            .cloned()
        else {
            return Err(PersistError::Storage(rafka_core::StorageError::Closed(
                format!("{OFFSETS_TOPIC}-{partition}"),
            )));
        };
        p.write_marker(producer_id, producer_epoch, coordinator_epoch, commit)?;
        let mut pending = self.txn_offsets.lock();
        if let Some(list) = pending.remove(&producer_id) {
            let (mine, rest): (Vec<_>, Vec<_>) = list
                .into_iter()
                .partition(|o| self.partition_index_for(&o.group) == partition);
            if !rest.is_empty() {
                pending.insert(producer_id, rest);
            }
            if commit {
                let now_ms = Timestamp::now().0;
                for o in mine {
                    groups
                        .entry(o.group.clone())
                        .or_insert_with(|| Group::new(&o.group, now_ms))
                        .commit_txn_offset((o.topic, o.partition), o.value, o.record_offset);
                }
            }
        }
        Ok(p)
    }

    /// Whether `group` has offsets of `topic`-`partition` pending in an open transaction
    /// (OffsetFetch with `require_stable` answers UNSTABLE_OFFSET_COMMIT then).
    pub(crate) fn has_pending_offset(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.txn_offsets
            .lock()
            .values()
            .flatten()
            .any(|o| o.group == group && o.topic == topic && o.partition == partition)
    }

    /// Appends records for `group` to its `__consumer_offsets` partition (the cleaner
    /// bounds it). Returns the partition to flush.
    fn persist(
        &self,
        group: &str,
        records: Vec<OffsetsRecord>,
    ) -> Result<Arc<PartitionState>, PersistError> {
        self.persist_at(group, records).map(|(p, _)| p)
    }

    /// [`GroupCoordinator::persist`], also returning the log offset of the first record.
    fn persist_at(
        &self,
        group: &str,
        records: Vec<OffsetsRecord>,
    ) -> Result<(Arc<PartitionState>, Offset), PersistError> {
        let p = self.partition_for(group).clone();
        if records.is_empty() {
            let end = p.log_end_offset();
            return Ok((p, end));
        }
        let base = append_records(&p, &records)?;
        Ok((p, base))
    }

    /// Commits offsets for `group` (OffsetCommit, and TxnOffsetCommit later).
    ///
    /// The caller has already answered partitions of unknown topics
    /// (UNKNOWN_TOPIC_OR_PARTITION) and dropped them, as Kafka's `KafkaApis` does before it
    /// calls the coordinator. The check order after that is Kafka's
    /// (`GroupCoordinatorService.commitOffsets`, `OffsetMetadataManager.validateOffsetCommit`,
    /// then the group type's `validateOffsetCommit`), and the first failing check answers
    /// every offset:
    ///
    /// 1. empty group id: INVALID_GROUP_ID;
    /// 2. the group does not exist (or was deleted): a non-member (generation < 0) creates it
    ///    and commits; anyone else gets GROUP_ID_NOT_FOUND from v9, ILLEGAL_GENERATION before
    ///    (and always for a transactional commit);
    /// 3. a consumer (KIP-848) group: a non-member commits only while the group is empty;
    ///    then UNKNOWN_MEMBER_ID, UNSUPPORTED_VERSION (a KIP-848 member below v9, unless
    ///    transactional), FENCED_MEMBER_EPOCH (epoch ahead of the member's) or
    ///    STALE_MEMBER_EPOCH (behind; ILLEGAL_GENERATION for a transactional commit);
    ///    A transactional commit that names no member (TxnOffsetCommit v0-2) skips 3 and 4;
    /// 4. a classic group: COORDINATOR_NOT_AVAILABLE if dead; a non-member commits only
    ///    while the group is empty (else UNKNOWN_MEMBER_ID); then FENCED_INSTANCE_ID /
    ///    UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS while the group
    ///    completes a rebalance; a good commit refreshes the member's session;
    /// 5. per offset: OFFSET_METADATA_TOO_LARGE beyond `offset.metadata.max.bytes`;
    /// 6. the records are appended to `__consumer_offsets`; if that fails, every offset
    ///    that passed gets KAFKA_STORAGE_ERROR.
    pub fn commit_offsets(
        &self,
        group: &str,
        who: Committer<'_>,
        offsets: Vec<OffsetToCommit>,
    ) -> CommitResult {
        use kafka_protocol::ResponseError;
        let fail_all = |e: ResponseError, n: usize| CommitResult {
            errors: vec![Some(e); n],
            written: None,
        };
        if offsets.is_empty() {
            return CommitResult {
                errors: Vec::new(),
                written: None,
            };
        }
        if group.is_empty() {
            return fail_all(ResponseError::InvalidGroupId, offsets.len());
        }
        let now_ms = Timestamp::now().0;
        let mut groups = self.groups.lock();
        let exists = groups
            .get(group)
            .is_some_and(|g| g.classic.state() != classic::GroupState::Dead);
        if !exists {
            if who.generation_or_epoch >= 0 {
                let e = if who.api_version >= 9 && who.transactional.is_none() {
                    ResponseError::GroupIdNotFound
                } else {
                    ResponseError::IllegalGeneration
                };
                return fail_all(e, offsets.len());
            }
            groups.insert(group.to_string(), Group::new(group, now_ms));
        }
        let g = groups.get_mut(group).expect("exists or inserted");
        // TxnOffsetCommit v0-2 carries no member id, generation or instance id; Kafka
        // validates the member only when the request names one, so such a commit is
        // accepted whatever the group's membership (kafkajs's `sendOffsets`).
        let anonymous_txn = who.transactional.is_some()
            && who.generation_or_epoch < 0
            && who.member_id.is_empty()
            && who.instance_id.is_none();
        let checked = match &g.consumer {
            _ if anonymous_txn => Ok(()),
            Some(c) if g.classic.is_empty() => c
                .check_commit(
                    who.member_id,
                    who.generation_or_epoch,
                    who.transactional.is_some() || who.api_version >= 9,
                )
                .map_err(|e| match e {
                    ResponseError::StaleMemberEpoch if who.transactional.is_some() => {
                        ResponseError::IllegalGeneration
                    }
                    e => e,
                }),
            _ => g.classic.check_commit(
                who.member_id,
                who.instance_id,
                who.generation_or_epoch,
                Instant::now(),
            ),
        };
        if let Err(e) = checked {
            return fail_all(e, offsets.len());
        }
        let max_meta = self.settings.offset_metadata_max_bytes;
        let mut errors = Vec::with_capacity(offsets.len());
        let mut writes = Vec::new();
        for o in offsets {
            if o.metadata.as_ref().is_some_and(|m| m.len() > max_meta) {
                errors.push(Some(ResponseError::OffsetMetadataTooLarge));
                continue;
            }
            errors.push(None);
            writes.push((
                (o.topic, o.partition),
                OffsetValue {
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata: o.metadata.unwrap_or_default(),
                    commit_timestamp: now_ms,
                },
            ));
        }
        if writes.is_empty() {
            return CommitResult {
                errors,
                written: None,
            };
        }
        let records: Vec<OffsetsRecord> = writes
            .iter()
            .map(|((topic, partition), v)| OffsetsRecord::Offset {
                group: group.to_string(),
                topic: topic.clone(),
                partition: *partition,
                value: Some(v.clone()),
            })
            .collect();
        if let Some((producer_id, producer_epoch)) = who.transactional {
            // In a transaction: written now as the producer's transactional records, visible
            // once the commit marker lands (`complete_txn`).
            let p = self.partition_for(group).clone();
            let appended = append_txn_records(&p, producer_id, producer_epoch, &records);
            return match appended {
                Ok(base) => {
                    self.txn_offsets
                        .lock()
                        .entry(producer_id)
                        .or_default()
                        .extend(writes.into_iter().enumerate().map(
                            |(i, ((topic, partition), value))| TxnOffset {
                                group: group.to_string(),
                                topic,
                                partition,
                                value,
                                record_offset: base.0 + i as i64,
                            },
                        ));
                    CommitResult {
                        errors,
                        written: Some(p),
                    }
                }
                Err(e) => {
                    let code = match e {
                        PersistError::Fenced => ResponseError::InvalidProducerEpoch,
                        _ => ResponseError::KafkaStorageError,
                    };
                    for e in errors.iter_mut().filter(|e| e.is_none()) {
                        *e = Some(code);
                    }
                    CommitResult {
                        errors,
                        written: None,
                    }
                }
            };
        }
        match self.persist_at(group, records) {
            Ok((p, base)) => {
                let g = groups.get_mut(group).expect("exists");
                for (i, (key, value)) in writes.into_iter().enumerate() {
                    g.set_offset(key, value, base.0 + i as i64);
                }
                CommitResult {
                    errors,
                    written: Some(p),
                }
            }
            Err(e) => {
                tracing::error!(group = %group, error = %e, "offset commit not persisted");
                for e in errors.iter_mut().filter(|e| e.is_none()) {
                    *e = Some(ResponseError::KafkaStorageError);
                }
                CommitResult {
                    errors,
                    written: None,
                }
            }
        }
    }

    /// Committed offsets of `group` (OffsetFetch): of the wanted topics and partitions
    /// (`None` for a partition without one), or all the group has (`wanted` = `None`),
    /// by topic in name order.
    pub fn fetch_offsets(
        &self,
        group: &str,
        wanted: Option<Vec<(String, Vec<i32>)>>,
    ) -> Vec<(String, PartitionOffsets)> {
        let groups = self.groups.lock();
        let g = groups.get(group);
        match wanted {
            Some(topics) => topics
                .into_iter()
                .map(|(t, ps)| {
                    let parts = ps
                        .into_iter()
                        .map(|p| (p, g.and_then(|g| g.offsets.get(&(t.clone(), p)).cloned())))
                        .collect();
                    (t, parts)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, PartitionOffsets> = BTreeMap::new();
                if let Some(g) = g {
                    for ((t, p), v) in &g.offsets {
                        by_topic
                            .entry(t.clone())
                            .or_default()
                            .push((*p, Some(v.clone())));
                    }
                }
                by_topic.into_iter().collect()
            }
        }
    }

    /// Every committed offset of every group as (group, topic, partition, offset), for
    /// the metrics endpoint.
    pub fn committed_offsets(&self) -> Vec<(String, String, i32, i64)> {
        self.groups
            .lock()
            .iter()
            .flat_map(|(id, g)| {
                g.offsets
                    .iter()
                    .map(move |((t, p), v)| (id.clone(), t.clone(), *p, v.offset))
            })
            .collect()
    }

    /// Every group that is not deleted, as ListGroups lists it, in group id order.
    pub fn list(&self) -> Vec<ListedGroup> {
        let groups = self.groups.lock();
        let mut out: Vec<ListedGroup> = groups
            .iter()
            .filter(|(_, g)| g.classic.state() != classic::GroupState::Dead)
            .map(|(id, g)| match &g.consumer {
                Some(c) if g.is_consumer_type() => ListedGroup {
                    id: id.clone(),
                    kind: "consumer",
                    state: c.state_name(),
                    protocol_type: "consumer".into(),
                },
                _ => ListedGroup {
                    id: id.clone(),
                    kind: "classic",
                    state: g.classic.state().name(),
                    protocol_type: g.classic.protocol_type().unwrap_or_default().to_string(),
                },
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// DeleteGroups for one group: only an empty group goes, and its offsets with it.
    pub fn delete_group(&self, group: &str) -> Result<(), kafka_protocol::ResponseError> {
        use kafka_protocol::ResponseError;
        let mut groups = self.groups.lock();
        let Some(g) = groups.get_mut(group) else {
            return Err(ResponseError::GroupIdNotFound);
        };
        if g.classic.state() == classic::GroupState::Dead {
            return Err(ResponseError::GroupIdNotFound);
        }
        if !g.is_empty() {
            return Err(ResponseError::NonEmptyGroup);
        }
        let mut records: Vec<OffsetsRecord> = g
            .offsets
            .keys()
            .map(|(t, p)| OffsetsRecord::Offset {
                group: group.to_string(),
                topic: t.clone(),
                partition: *p,
                value: None,
            })
            .collect();
        records.push(OffsetsRecord::Group {
            group: group.to_string(),
            value: None,
        });
        // A consumer group's record has a key of its own: compaction keeps it until a
        // tombstone of that key.
        records.push(OffsetsRecord::ConsumerGroup {
            group: group.to_string(),
            value: None,
        });
        g.classic.mark_dead();
        g.offsets.clear();
        let r = self.persist(group, records);
        groups.remove(group);
        r.map(|_| ()).map_err(|e| {
            tracing::error!(group, error = %e, "group deletion not persisted");
            ResponseError::KafkaStorageError
        })
    }

    /// Persists the membership of `id` (call with the groups locked).
    fn persist_membership(&self, groups: &HashMap<String, Group>, id: &str) {
        let Some(g) = groups.get(id) else { return };
        let record = g.membership_record(id, Timestamp::now().0);
        if let Err(e) = self.persist(id, vec![record]) {
            tracing::warn!(group = id, error = %e, "could not persist group metadata");
        }
    }

    /// JoinGroup: creates the group if needed (a deleted one starts over); refused with
    /// INCONSISTENT_GROUP_PROTOCOL while the group has KIP-848 members.
    pub fn join(
        &self,
        group: &str,
        req: classic::JoinRequest,
    ) -> classic::Answer<classic::JoinOutcome> {
        use classic::{Answer, GroupState, JoinOutcome};
        let settings = self.settings.groups;
        let mut groups = self.groups.lock();
        let now_ms = Timestamp::now().0;
        let g = groups
            .entry(group.to_string())
            .or_insert_with(|| Group::new(group, now_ms));
        if g.classic.state() == GroupState::Dead {
            g.classic = ClassicGroup::new(group, now_ms);
        }
        match &g.consumer {
            Some(c) if !c.is_empty() => {
                return Answer::Now(JoinOutcome::error_for(
                    kafka_protocol::ResponseError::InconsistentGroupProtocol,
                    &req.member_id,
                ));
            }
            Some(_) => g.consumer = None, // an empty consumer group becomes classic again
            None => {}
        }
        let stable_before = g.classic.state() == GroupState::Stable;
        let a = g.classic.join(req, &settings, Instant::now());
        // A static member that rejoined a stable group changed its member id: persist it.
        if stable_before
            && g.classic.state() == GroupState::Stable
            && matches!(a, Answer::Now(ref o) if o.error.is_none())
        {
            self.persist_membership(&groups, group);
        }
        a
    }

    /// SyncGroup; the group's membership is persisted when it becomes stable.
    pub fn sync(
        &self,
        group: &str,
        req: classic::SyncRequest<'_>,
    ) -> classic::Answer<classic::SyncOutcome> {
        use classic::{Answer, SyncOutcome};
        let mut groups = self.groups.lock();
        let Some(g) = groups.get_mut(group) else {
            return Answer::Now(SyncOutcome::error_for(
                kafka_protocol::ResponseError::UnknownMemberId,
            ));
        };
        let (a, became_stable) = g.classic.sync(req, Instant::now());
        if became_stable {
            self.persist_membership(&groups, group);
        }
        a
    }

    /// Heartbeat of a classic member.
    pub fn heartbeat(
        &self,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Option<kafka_protocol::ResponseError> {
        match self.groups.lock().get_mut(group) {
            None => Some(kafka_protocol::ResponseError::UnknownMemberId),
            Some(g) => g
                .classic
                .heartbeat(member_id, instance_id, generation, Instant::now()),
        }
    }

    /// LeaveGroup for some members (by id, or by instance id when the id is empty): the
    /// error of each, or one for the whole request.
    pub fn leave(
        &self,
        group: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Option<kafka_protocol::ResponseError>>, kafka_protocol::ResponseError> {
        let mut groups = self.groups.lock();
        let Some(g) = groups.get_mut(group) else {
            return Err(kafka_protocol::ResponseError::UnknownMemberId);
        };
        let now = Instant::now();
        let out: Vec<_> = members
            .iter()
            .map(|(m, i)| g.classic.leave(m, i.as_deref(), now))
            .collect();
        if g.classic.is_empty() {
            g.classic.empty_since_ms = Timestamp::now().0;
        }
        if out.iter().any(Option::is_none) {
            self.persist_membership(&groups, group);
        }
        Ok(out)
    }

    /// ConsumerGroupHeartbeat (KIP-848) with the group's own settings; refused with
    /// GROUP_ID_NOT_FOUND while the group has classic members.
    pub fn consumer_heartbeat(
        &self,
        group: &str,
        hb: consumer::Heartbeat,
        topics: &dyn TopicView,
    ) -> Result<consumer::HeartbeatAnswer, (kafka_protocol::ResponseError, String)> {
        let settings = self.consumer_settings_for(group);
        let mut groups = self.groups.lock();
        let now_ms = Timestamp::now().0;
        let g = groups
            .entry(group.to_string())
            .or_insert_with(|| Group::new(group, now_ms));
        if !g.classic.is_empty() {
            return Err((
                kafka_protocol::ResponseError::GroupIdNotFound,
                format!("Group {group} is a classic group with members"),
            ));
        }
        let c = g
            .consumer
            .get_or_insert_with(|| ConsumerGroup::new(group, &settings.default_assignor));
        let before = c.version;
        let was_empty = c.is_empty();
        let answer = c.heartbeat(hb, topics, &settings, Instant::now())?;
        let changed = c.version != before;
        if c.is_empty() && !was_empty {
            g.classic.empty_since_ms = now_ms;
        }
        if changed {
            self.persist_membership(&groups, group);
        }
        Ok(answer)
    }

    /// DescribeGroups of one group (classic groups only).
    pub fn describe_classic(&self, group: &str) -> ClassicDescription {
        match self.groups.lock().get(group) {
            None => ClassicDescription::Missing,
            Some(g) if g.is_consumer_type() => ClassicDescription::ConsumerType,
            Some(g) => ClassicDescription::Group {
                state: g.classic.state().name(),
                protocol_type: g.classic.protocol_type().unwrap_or_default().to_string(),
                protocol: g.classic.protocol().unwrap_or_default().to_string(),
                members: g.classic.describe_members(),
            },
        }
    }

    /// ConsumerGroupDescribe of one group (consumer groups only).
    pub fn describe_consumer(&self, group: &str) -> ConsumerDescription {
        match self.groups.lock().get(group) {
            Some(g) if g.is_consumer_type() => {
                let c = g.consumer.as_ref().expect("consumer type");
                ConsumerDescription::Group {
                    state: c.state_name(),
                    group_epoch: c.group_epoch(),
                    assignment_epoch: c.assignment_epoch(),
                    assignor: c.assignor().to_string(),
                    members: c.describe(),
                }
            }
            Some(g) if !g.is_empty() => ConsumerDescription::NotConsumer,
            _ => ConsumerDescription::Missing,
        }
    }

    /// OffsetDelete: removes the committed offsets of `topics` (topic, partitions), except
    /// of topics an active member subscribes to (GROUP_SUBSCRIBED_TO_TOPIC) or that do not
    /// exist (UNKNOWN_TOPIC_OR_PARTITION). Per topic, per partition, the error.
    pub fn delete_offsets(
        &self,
        group: &str,
        topics: &[(String, Vec<i32>)],
        topic_exists: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<PartitionErrors>, kafka_protocol::ResponseError> {
        use kafka_protocol::ResponseError;
        let mut groups = self.groups.lock();
        let Some(g) = groups.get_mut(group) else {
            return Err(ResponseError::GroupIdNotFound);
        };
        let subscribed = if g.is_empty() {
            Vec::new()
        } else {
            g.subscribed_topics()
        };
        let mut records = Vec::new();
        let out = topics
            .iter()
            .map(|(topic, parts)| {
                parts
                    .iter()
                    .map(|&p| {
                        if subscribed.contains(topic) {
                            return (p, Some(ResponseError::GroupSubscribedToTopic));
                        }
                        if !topic_exists(topic) {
                            return (p, Some(ResponseError::UnknownTopicOrPartition));
                        }
                        if g.offsets.remove(&(topic.clone(), p)).is_some() {
                            records.push(OffsetsRecord::Offset {
                                group: group.to_string(),
                                topic: topic.clone(),
                                partition: p,
                                value: None,
                            });
                        }
                        (p, None)
                    })
                    .collect()
            })
            .collect();
        if let Err(e) = self.persist(group, records) {
            tracing::error!(group, error = %e, "offset deletion not persisted");
            return Err(ResponseError::KafkaStorageError);
        }
        Ok(out)
    }

    /// The KIP-848 settings of `group`: the broker's with the group's config overrides.
    pub fn consumer_settings_for(&self, group: &str) -> ConsumerSettings {
        config::consumer_settings(&self.settings.consumer, self.configs.lock().get(group))
    }

    /// Every group config of `group` with its value and whether the group overrides it
    /// (DescribeConfigs on a GROUP resource). A group need not exist to have configs.
    pub fn describe_configs(
        &self,
        group: &str,
    ) -> Vec<(&'static config::GroupConfigKey, String, bool)> {
        let configs = self.configs.lock();
        let overrides = configs.get(group);
        config::GROUP_CONFIG_KEYS
            .iter()
            .map(|k| match overrides.and_then(|o| o.get(k.name)) {
                Some(v) => (k, v.clone(), true),
                None => (k, self.settings.group_configs.default_value(k.name), false),
            })
            .collect()
    }

    /// Changes `group`'s config overrides with `change`, validates the result as Kafka
    /// does and, unless `validate_only`, persists and applies it (the group's next
    /// heartbeat and session check use it). Errors are INVALID_CONFIG messages, or a
    /// storage failure.
    pub fn alter_configs(
        &self,
        group: &str,
        validate_only: bool,
        change: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), String>,
    ) -> Result<(), AlterConfigsError> {
        // Config changes are ordered with the group's other writes.
        let _groups = self.groups.lock();
        let before = self.configs.lock().get(group).cloned();
        let mut after = before.clone().unwrap_or_default();
        change(&mut after).map_err(AlterConfigsError::Invalid)?;
        self.settings
            .group_configs
            .validate(&after)
            .map_err(AlterConfigsError::Invalid)?;
        if validate_only {
            return Ok(());
        }
        let value = (!after.is_empty()).then_some(after);
        // Applied before the append; undone if the append fails.
        self.set_configs(group, value.clone());
        let record = OffsetsRecord::GroupConfig {
            group: group.to_string(),
            value,
        };
        if let Err(e) = self.persist(group, vec![record]) {
            self.set_configs(group, before);
            tracing::error!(group, error = %e, "group config change not persisted");
            return Err(AlterConfigsError::Storage);
        }
        Ok(())
    }

    fn set_configs(&self, group: &str, value: Option<BTreeMap<String, String>>) {
        let mut configs = self.configs.lock();
        match value {
            Some(v) => configs.insert(group.to_string(), v),
            None => configs.remove(group),
        };
    }

    /// Session expiry, rebalance deadlines and offsets retention for every group.
    pub fn tick(&self, topics: &dyn TopicView) {
        let now = Instant::now();
        let now_ms = Timestamp::now().0;
        let mut groups = self.groups.lock();
        let configs = self.configs.lock().clone();
        let ids: Vec<String> = groups.keys().cloned().collect();
        for id in ids {
            let mut writes = Vec::new();
            {
                let g = groups.get_mut(&id).expect("listed");
                if g.classic.tick(now, now_ms) {
                    writes.push(OffsetsRecord::Group {
                        group: id.clone(),
                        value: Some(g.classic.to_value(now_ms)),
                    });
                }
                if let Some(c) = g.consumer.as_mut() {
                    let was_empty = c.is_empty();
                    let settings =
                        config::consumer_settings(&self.settings.consumer, configs.get(&id));
                    if c.tick(topics, &settings, now) {
                        if c.is_empty() && !was_empty {
                            g.classic.empty_since_ms = now_ms;
                        }
                        writes.push(g.membership_record(&id, now_ms));
                    }
                }
                // Offsets retention (KIP-211): counted from when the group became empty.
                if g.is_empty()
                    && g.classic.state() != classic::GroupState::Dead
                    && !g.offsets.is_empty()
                    && now_ms - g.classic.empty_since_ms > self.settings.offsets_retention_ms
                {
                    for ((topic, partition), _) in std::mem::take(&mut g.offsets) {
                        writes.push(OffsetsRecord::Offset {
                            group: id.clone(),
                            topic,
                            partition,
                            value: None,
                        });
                    }
                    tracing::info!(group = %id, "committed offsets expired");
                }
            }
            if !writes.is_empty() {
                if let Err(e) = self.persist(&id, writes) {
                    tracing::warn!(group = %id, error = %e, "could not persist group change");
                }
            }
        }
    }
}

/// Appends `records` as one batch; the log offset of the first.
fn append_records(p: &PartitionState, records: &[OffsetsRecord]) -> Result<Offset, PersistError> {
    let ts = Timestamp::now();
    let mut b = BatchBuilder::new(Offset(0));
    for r in records {
        let (key, value) = r.encode();
        b = b.record(SimpleRecord {
            key: Some(key),
            value,
            headers: Vec::new(),
            timestamp: ts,
        });
    }
    // Built here, so valid: a failed check is a bug, reported as a corrupt batch.
    let batch = ValidatedBatch::new(b.build()).map_err(rafka_core::StorageError::from)?;
    base_offset(p.append(batch)?)
}

/// The log offset a batch was written at (or, for a resend, had been).
fn base_offset(appended: crate::state::Appended) -> Result<Offset, PersistError> {
    Ok(match appended {
        crate::state::Appended::New(info) => info.base_offset,
        crate::state::Appended::Duplicate(o) => o,
    })
}

/// Appends offset records as one transactional batch of `producer_id` at `producer_epoch`.
fn append_txn_records(
    p: &PartitionState,
    producer_id: i64,
    producer_epoch: i16,
    records: &[OffsetsRecord],
) -> Result<Offset, PersistError> {
    let ts = Timestamp::now();
    let mut b = BatchBuilder::new(Offset(0))
        .producer(producer_id, producer_epoch, -1)
        .transactional();
    for r in records {
        let (key, value) = r.encode();
        b = b.record(SimpleRecord {
            key: Some(key),
            value,
            headers: Vec::new(),
            timestamp: ts,
        });
    }
    let batch = ValidatedBatch::new(b.build()).map_err(rafka_core::StorageError::from)?;
    base_offset(p.append(batch)?)
}

/// Applies one replayed record, at log offset `record_offset`, to the in-memory state.
fn apply(
    groups: &mut HashMap<String, Group>,
    rec: OffsetsRecord,
    now: Instant,
    record_offset: i64,
) {
    match rec {
        OffsetsRecord::Offset {
            group,
            topic,
            partition,
            value,
        } => match value {
            Some(v) => {
                groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(&group, v.commit_timestamp))
                    .set_offset((topic, partition), v, record_offset);
            }
            None => {
                if let Some(g) = groups.get_mut(&group) {
                    g.offsets.remove(&(topic.clone(), partition));
                    g.offset_records.remove(&(topic, partition));
                }
            }
        },
        OffsetsRecord::Group { group, value } => match value {
            Some(v) => {
                let (offsets, offset_records) = groups
                    .remove(&group)
                    .map(|g| (g.offsets, g.offset_records))
                    .unwrap_or_default();
                groups.insert(
                    group.clone(),
                    Group {
                        classic: ClassicGroup::restore(&group, &v, now),
                        consumer: None,
                        offsets,
                        offset_records,
                    },
                );
            }
            None => {
                groups.remove(&group);
            }
        },
        // Configs are not group state; `GroupCoordinator::open` keeps them apart.
        OffsetsRecord::GroupConfig { .. } => {}
        OffsetsRecord::ConsumerGroup { group, value } => match value {
            Some(v) => {
                let g = groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(&group, 0));
                g.classic = ClassicGroup::new(&group, 0);
                g.consumer = Some(ConsumerGroup::restore(
                    &group,
                    v.group_epoch,
                    v.assignment_epoch,
                    &v.assignor,
                    v.members,
                    v.target,
                    now,
                ));
            }
            None => {
                groups.remove(&group);
            }
        },
    }
}

/// The cluster's topics as the KIP-848 assignors see them: every topic but the internal ones.
impl TopicView for Cluster {
    fn partitions(&self, topic: &str) -> Option<i32> {
        if is_internal(topic) {
            return None;
        }
        self.topic(topic).map(|t| t.partitions.len() as i32)
    }
    fn names(&self) -> Vec<String> {
        self.topics()
            .iter()
            .map(|t| t.name.to_string())
            .filter(|n| !is_internal(n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_matches_kafka() {
        // Values from Java's "...".hashCode().
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("group"), 98629247);
    }

    /// Kafka's rule for a transaction's offsets at its commit marker: they replace a
    /// committed offset only if their record is newer, live and in a replay alike (which
    /// is what lets the cleaner compact committed transactions).
    #[test]
    fn a_plain_commit_between_a_transactions_offset_and_its_marker_wins() {
        let shared = crate::shared::Shared::for_tests(Vec::new());
        let groups = &shared.groups;
        let commit = |group: &str, offset: i64, txn: Option<(i64, i16)>| {
            let who = Committer {
                member_id: "",
                instance_id: None,
                generation_or_epoch: -1,
                api_version: 8,
                transactional: txn,
            };
            let r = groups.commit_offsets(
                group,
                who,
                vec![OffsetToCommit {
                    topic: "t".into(),
                    partition: 0,
                    offset,
                    leader_epoch: -1,
                    metadata: None,
                }],
            );
            assert!(r.errors.iter().all(Option::is_none), "{:?}", r.errors);
        };
        let fetch = |c: &GroupCoordinator, group: &str| {
            c.fetch_offsets(group, Some(vec![("t".into(), vec![0])]))[0].1[0]
                .1
                .as_ref()
                .map(|v| v.offset)
        };
        let pid = shared.cluster.next_producer_id().unwrap();
        // "late": the transaction's offset (10), then a plain commit (20), then the marker.
        commit("late", 10, Some((pid, 0)));
        commit("late", 20, None);
        groups.complete_txn(0, pid, 0, 0, true).unwrap();
        assert_eq!(fetch(groups, "late"), Some(20));
        // "early": a plain commit (20), then the transaction's offset (10) and its marker.
        let pid = shared.cluster.next_producer_id().unwrap();
        commit("early", 20, None);
        commit("early", 10, Some((pid, 0)));
        groups.complete_txn(0, pid, 0, 0, true).unwrap();
        assert_eq!(fetch(groups, "early"), Some(10));
        // A replay of the topic agrees.
        let replayed = GroupCoordinator::open(&shared.cluster, 1, groups.settings.clone()).unwrap();
        assert_eq!(fetch(&replayed, "late"), Some(20));
        assert_eq!(fetch(&replayed, "early"), Some(10));
    }
}
