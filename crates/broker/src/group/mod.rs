//! The group coordinator: consumer groups and their committed offsets.
//!
//! Membership follows a protocol ([`classic`] today; the KIP-848 consumer protocol can sit
//! beside it as another member-state type under the same [`GroupCoordinator`], sharing the
//! offsets and the persistence below). Committed offsets and group metadata are records in
//! the internal topic `__consumer_offsets` ([`records`]), written through the storage
//! engine, and replayed on start. Until log compaction exists, a partition of that topic is
//! bounded by rewriting the live entries at its end and deleting everything before them
//! once it holds far more records than live entries (see [`GroupCoordinator::persist`]).

pub mod classic;
pub mod consumer;
pub mod records;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use rafka_core::batch::{BatchBuilder, SimpleRecord};
use rafka_core::{Offset, RecordBatch, Timestamp, ValidatedBatch};

use crate::state::{Cluster, IsolationLevel, PartitionState, TopicError};
use classic::{ClassicGroup, GroupSettings};
use consumer::{ConsumerGroup, ConsumerSettings, TopicView};
use records::{OffsetValue, OffsetsRecord};

/// Name of the internal topic.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Records per batch when rewriting live entries.
const REWRITE_BATCH_RECORDS: usize = 500;
/// A partition of `__consumer_offsets` is rewritten when it holds more records than this
/// and more than [`REWRITE_FACTOR`] times its live entries.
const REWRITE_MIN_RECORDS: i64 = 10_000;
const REWRITE_FACTOR: i64 = 4;

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
}

impl Group {
    /// A new group with no members.
    pub fn new(id: &str, now_ms: i64) -> Group {
        Group {
            classic: ClassicGroup::new(id, now_ms),
            consumer: None,
            offsets: BTreeMap::new(),
        }
    }

    /// No members of either protocol.
    pub fn is_empty(&self) -> bool {
        self.classic.is_empty() && self.consumer.as_ref().is_none_or(ConsumerGroup::is_empty)
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
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
    /// KIP-848 consumer groups.
    pub consumer: ConsumerSettings,
}

/// All groups of this broker.
pub struct GroupCoordinator {
    groups: Mutex<HashMap<String, Group>>,
    partitions: Vec<Arc<PartitionState>>,
    /// Settings.
    pub settings: CoordinatorSettings,
}

/// Why a write to `__consumer_offsets` failed.
pub type PersistError = crate::state::AppendError;

impl GroupCoordinator {
    /// Opens (creating if needed) `__consumer_offsets` and replays it.
    pub fn open(
        cluster: &Cluster,
        partitions: i32,
        settings: CoordinatorSettings,
    ) -> Result<GroupCoordinator, TopicError> {
        let topic = match cluster.topic(OFFSETS_TOPIC) {
            Some(t) => t,
            None => {
                let name = rafka_core::TopicName::new(OFFSETS_TOPIC).expect("valid name");
                cluster.create_topic(&name, partitions, BTreeMap::new(), false)?
            }
        };
        let now = Instant::now();
        let mut groups: HashMap<String, Group> = HashMap::new();
        let mut replayed = 0u64;
        for p in &topic.partitions {
            let mut at = p.log_start_offset();
            let end = p.log_end_offset();
            while at < end {
                let read = p.read(at, 4 * 1024 * 1024, IsolationLevel::ReadUncommitted)?;
                let batches = RecordBatch::split_all(read.records).unwrap_or_default();
                let Some(last) = batches.last() else { break };
                let next = last.next_offset();
                for b in batches.iter().filter(|b| b.next_offset() > at) {
                    for r in b.decode_uncompressed().unwrap_or_default() {
                        let Some(key) = &r.key else { continue };
                        if let Some(rec) = OffsetsRecord::decode(key, r.value.as_deref()) {
                            replayed += 1;
                            apply(&mut groups, rec, now);
                        }
                    }
                }
                if next <= at {
                    break;
                }
                at = next;
            }
        }
        tracing::info!(
            groups = groups.len(),
            records = replayed,
            "group coordinator loaded"
        );
        Ok(GroupCoordinator {
            groups: Mutex::new(groups),
            partitions: topic.partitions.clone(),
            settings,
        })
    }

    fn partition_for(&self, group: &str) -> &Arc<PartitionState> {
        let n = self.partitions.len().max(1) as i32;
        let idx = (java_string_hash(group) & 0x7fff_ffff) % n;
        &self.partitions[idx as usize]
    }

    /// Runs `f` with the groups locked. `f` must not block on I/O other than appends.
    pub fn with_groups<R>(&self, f: impl FnOnce(&mut HashMap<String, Group>) -> R) -> R {
        f(&mut self.groups.lock())
    }

    /// Appends records for `group` to its `__consumer_offsets` partition, then bounds the
    /// partition if it has grown far past its live entries. Call with the groups locked
    /// (pass the map) so the rewrite sees a consistent state. Returns the partition to flush.
    pub fn persist(
        &self,
        groups: &HashMap<String, Group>,
        group: &str,
        records: Vec<OffsetsRecord>,
    ) -> Result<Arc<PartitionState>, PersistError> {
        let p = self.partition_for(group).clone();
        if records.is_empty() {
            return Ok(p);
        }
        append_records(&p, &records)?;
        let held = p.log_end_offset().0 - p.log_start_offset().0;
        if held > REWRITE_MIN_RECORDS {
            let live = self.live_records(groups, &p);
            if held > REWRITE_FACTOR * live.len() as i64 {
                let start = p.log_end_offset();
                for chunk in live.chunks(REWRITE_BATCH_RECORDS) {
                    append_records(&p, chunk)?;
                }
                p.flush()?;
                p.delete_records(Some(start))?;
                tracing::info!(partition = %p.tp, live = live.len(), dropped = held, "rewrote live group entries");
            }
        }
        Ok(p)
    }

    fn live_records(
        &self,
        groups: &HashMap<String, Group>,
        p: &Arc<PartitionState>,
    ) -> Vec<OffsetsRecord> {
        let now_ms = Timestamp::now().0;
        let mut out = Vec::new();
        for (id, g) in groups {
            if !Arc::ptr_eq(self.partition_for(id), p)
                || g.classic.state() == classic::GroupState::Dead
            {
                continue;
            }
            out.push(g.membership_record(id, now_ms));
            for ((topic, partition), v) in &g.offsets {
                out.push(OffsetsRecord::Offset {
                    group: id.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    value: Some(v.clone()),
                });
            }
        }
        out
    }

    /// Session expiry, rebalance deadlines and offsets retention for every group.
    pub fn tick(&self, topics: &dyn TopicView) {
        let now = Instant::now();
        let now_ms = Timestamp::now().0;
        let mut groups = self.groups.lock();
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
                    if c.tick(topics, &self.settings.consumer, now) {
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
                if let Err(e) = self.persist(&groups, &id, writes) {
                    tracing::warn!(group = %id, error = %e, "could not persist group change");
                }
            }
        }
    }
}

fn append_records(p: &PartitionState, records: &[OffsetsRecord]) -> Result<(), PersistError> {
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
    p.append(batch)?;
    Ok(())
}

/// Applies one replayed record to the in-memory state.
fn apply(groups: &mut HashMap<String, Group>, rec: OffsetsRecord, now: Instant) {
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
                    .offsets
                    .insert((topic, partition), v);
            }
            None => {
                if let Some(g) = groups.get_mut(&group) {
                    g.offsets.remove(&(topic, partition));
                }
            }
        },
        OffsetsRecord::Group { group, value } => match value {
            Some(v) => {
                let offsets = groups.remove(&group).map(|g| g.offsets).unwrap_or_default();
                groups.insert(
                    group.clone(),
                    Group {
                        classic: ClassicGroup::restore(&group, &v, now),
                        consumer: None,
                        offsets,
                    },
                );
            }
            None => {
                groups.remove(&group);
            }
        },
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
}
