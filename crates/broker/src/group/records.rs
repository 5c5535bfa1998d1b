//! The records of `__consumer_offsets`, in Kafka's own key and value layouts so the topic
//! reads the same as Kafka's:
//!
//! - offset commit: key v1 (group, topic, partition), value v3 (offset, leader epoch,
//!   metadata, commit timestamp);
//! - group metadata: key v2 (group), value v3 (protocol type, generation, protocol, leader,
//!   state timestamp, members with subscription and assignment).
//!
//! A record with a null value is a tombstone: the offset or the group is deleted.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    /// Next offset to consume.
    pub offset: i64,
    /// Leader epoch of the committed offset, or -1.
    pub leader_epoch: i32,
    /// Client metadata string, returned byte for byte by OffsetFetch.
    pub metadata: String,
    /// When it was committed (ms).
    pub commit_timestamp: i64,
}

/// A group member as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberValue {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Metadata of the chosen protocol (the subscription).
    pub subscription: Bytes,
    /// Assignment from the leader.
    pub assignment: Bytes,
}

/// A group as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupValue {
    /// Protocol type (`consumer` for Kafka consumers).
    pub protocol_type: String,
    /// Generation.
    pub generation: i32,
    /// Chosen protocol (assignor).
    pub protocol: Option<String>,
    /// Leader member id.
    pub leader: Option<String>,
    /// When the state was written (ms).
    pub state_timestamp: i64,
    /// Members.
    pub members: Vec<MemberValue>,
}

/// A KIP-848 consumer group as persisted (a Rafka record type: key version 1000, one
/// record per group holding epochs, members and the target assignment).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerGroupValue {
    /// Group epoch.
    pub group_epoch: i32,
    /// Epoch of the target assignment.
    pub assignment_epoch: i32,
    /// Assignor in use.
    pub assignor: String,
    /// Members.
    pub members: Vec<super::consumer::MemberState>,
    /// Target assignment by member.
    pub target:
        std::collections::BTreeMap<String, std::collections::BTreeSet<super::consumer::TopicPart>>,
}

/// Key version of [`ConsumerGroupValue`] records.
const CONSUMER_GROUP_KEY_VERSION: i16 = 1000;
/// Key version of per-group config records (a Rafka record type: Kafka keeps group configs
/// in its metadata log, Rafka beside the group they configure).
const GROUP_CONFIG_KEY_VERSION: i16 = 1001;

/// A decoded `__consumer_offsets` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetsRecord {
    /// Offset commit (None: deleted).
    Offset {
        /// Group.
        group: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Value, or a tombstone.
        value: Option<OffsetValue>,
    },
    /// A consumer-protocol group (None: deleted).
    ConsumerGroup {
        /// Group.
        group: String,
        /// Value, or a tombstone.
        value: Option<ConsumerGroupValue>,
    },
    /// Group metadata (None: deleted).
    Group {
        /// Group.
        group: String,
        /// Value, or a tombstone.
        value: Option<GroupValue>,
    },
    /// The group's config overrides (None: all removed).
    GroupConfig {
        /// Group.
        group: String,
        /// Overrides by config name, or a tombstone.
        value: Option<std::collections::BTreeMap<String, String>>,
    },
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}
fn put_opt_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}
fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}
fn get_opt_str(b: &mut &[u8]) -> Option<Option<String>> {
    if b.remaining() < 2 {
        return None;
    }
    let len = b.get_i16();
    if len < 0 {
        return Some(None);
    }
    let len = len as usize;
    if b.remaining() < len {
        return None;
    }
    let s = String::from_utf8(b[..len].to_vec()).ok()?;
    b.advance(len);
    Some(Some(s))
}
fn get_str(b: &mut &[u8]) -> Option<String> {
    get_opt_str(b)?
}
fn get_bytes(b: &mut &[u8]) -> Option<Bytes> {
    if b.remaining() < 4 {
        return None;
    }
    let len = usize::try_from(b.get_i32()).ok()?;
    if b.remaining() < len {
        return None;
    }
    let v = Bytes::copy_from_slice(&b[..len]);
    b.advance(len);
    Some(v)
}
fn get_i64(b: &mut &[u8]) -> Option<i64> {
    (b.remaining() >= 8).then(|| b.get_i64())
}
fn get_i32(b: &mut &[u8]) -> Option<i32> {
    (b.remaining() >= 4).then(|| b.get_i32())
}

impl OffsetsRecord {
    /// The record's key and value bytes.
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        let mut key = BytesMut::new();
        match self {
            OffsetsRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => {
                key.put_i16(1);
                put_str(&mut key, group);
                put_str(&mut key, topic);
                key.put_i32(*partition);
                let value = value.as_ref().map(|v| {
                    let mut b = BytesMut::new();
                    b.put_i16(3);
                    b.put_i64(v.offset);
                    b.put_i32(v.leader_epoch);
                    put_str(&mut b, &v.metadata);
                    b.put_i64(v.commit_timestamp);
                    b.freeze()
                });
                (key.freeze(), value)
            }
            OffsetsRecord::ConsumerGroup { group, value } => {
                key.put_i16(CONSUMER_GROUP_KEY_VERSION);
                put_str(&mut key, group);
                let value = value.as_ref().map(|g| {
                    let mut b = BytesMut::new();
                    b.put_i16(0);
                    b.put_i32(g.group_epoch);
                    b.put_i32(g.assignment_epoch);
                    put_str(&mut b, &g.assignor);
                    b.put_i32(g.members.len() as i32);
                    for m in &g.members {
                        put_str(&mut b, &m.id);
                        put_opt_str(&mut b, m.instance_id.as_deref());
                        put_opt_str(&mut b, m.rack_id.as_deref());
                        put_str(&mut b, &m.client_id);
                        put_str(&mut b, &m.client_host);
                        b.put_i32(m.member_epoch);
                        b.put_i32(m.previous_epoch);
                        b.put_i32(m.rebalance_timeout_ms);
                        b.put_i32(m.subscribed_names.len() as i32);
                        for n in &m.subscribed_names {
                            put_str(&mut b, n);
                        }
                        put_opt_str(&mut b, m.subscribed_regex.as_deref());
                        put_opt_str(&mut b, m.server_assignor.as_deref());
                        put_parts(&mut b, &m.assigned);
                        put_parts(&mut b, &m.pending_revocation);
                    }
                    b.put_i32(g.target.len() as i32);
                    for (m, parts) in &g.target {
                        put_str(&mut b, m);
                        put_parts(&mut b, parts);
                    }
                    b.freeze()
                });
                (key.freeze(), value)
            }
            OffsetsRecord::GroupConfig { group, value } => {
                key.put_i16(GROUP_CONFIG_KEY_VERSION);
                put_str(&mut key, group);
                let value = value.as_ref().map(|configs| {
                    let mut b = BytesMut::new();
                    b.put_i16(0);
                    b.put_i32(configs.len() as i32);
                    for (name, v) in configs {
                        put_str(&mut b, name);
                        put_str(&mut b, v);
                    }
                    b.freeze()
                });
                (key.freeze(), value)
            }
            OffsetsRecord::Group { group, value } => {
                key.put_i16(2);
                put_str(&mut key, group);
                let value = value.as_ref().map(|g| {
                    let mut b = BytesMut::new();
                    b.put_i16(3);
                    put_str(&mut b, &g.protocol_type);
                    b.put_i32(g.generation);
                    put_opt_str(&mut b, g.protocol.as_deref());
                    put_opt_str(&mut b, g.leader.as_deref());
                    b.put_i64(g.state_timestamp);
                    b.put_i32(g.members.len() as i32);
                    for m in &g.members {
                        put_str(&mut b, &m.member_id);
                        put_opt_str(&mut b, m.group_instance_id.as_deref());
                        put_str(&mut b, &m.client_id);
                        put_str(&mut b, &m.client_host);
                        b.put_i32(m.rebalance_timeout_ms);
                        b.put_i32(m.session_timeout_ms);
                        put_bytes(&mut b, &m.subscription);
                        put_bytes(&mut b, &m.assignment);
                    }
                    b.freeze()
                });
                (key.freeze(), value)
            }
        }
    }

    /// Decodes a record; `None` for a layout this version does not know (skipped on replay).
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Option<OffsetsRecord> {
        let mut k = key;
        if k.remaining() < 2 {
            return None;
        }
        match k.get_i16() {
            0 | 1 => {
                let group = get_str(&mut k)?;
                let topic = get_str(&mut k)?;
                let partition = get_i32(&mut k)?;
                let value = match value {
                    None => None,
                    Some(mut v) => {
                        if v.remaining() < 2 {
                            return None;
                        }
                        let version = v.get_i16();
                        let offset = get_i64(&mut v)?;
                        let leader_epoch = if version >= 3 { get_i32(&mut v)? } else { -1 };
                        let metadata = get_str(&mut v)?;
                        let commit_timestamp = get_i64(&mut v)?;
                        Some(OffsetValue {
                            offset,
                            leader_epoch,
                            metadata,
                            commit_timestamp,
                        })
                    }
                };
                Some(OffsetsRecord::Offset {
                    group,
                    topic,
                    partition,
                    value,
                })
            }
            2 => {
                let group = get_str(&mut k)?;
                let value = match value {
                    None => None,
                    Some(mut v) => {
                        if v.remaining() < 2 || v.get_i16() != 3 {
                            return None;
                        }
                        let protocol_type = get_str(&mut v)?;
                        let generation = get_i32(&mut v)?;
                        let protocol = get_opt_str(&mut v)?;
                        let leader = get_opt_str(&mut v)?;
                        let state_timestamp = get_i64(&mut v)?;
                        let n = get_i32(&mut v)?;
                        let mut members = Vec::new();
                        for _ in 0..n.max(0) {
                            members.push(MemberValue {
                                member_id: get_str(&mut v)?,
                                group_instance_id: get_opt_str(&mut v)?,
                                client_id: get_str(&mut v)?,
                                client_host: get_str(&mut v)?,
                                rebalance_timeout_ms: get_i32(&mut v)?,
                                session_timeout_ms: get_i32(&mut v)?,
                                subscription: get_bytes(&mut v)?,
                                assignment: get_bytes(&mut v)?,
                            });
                        }
                        Some(GroupValue {
                            protocol_type,
                            generation,
                            protocol,
                            leader,
                            state_timestamp,
                            members,
                        })
                    }
                };
                Some(OffsetsRecord::Group { group, value })
            }
            CONSUMER_GROUP_KEY_VERSION => {
                let group = get_str(&mut k)?;
                let value = match value {
                    None => None,
                    Some(mut v) => {
                        if v.remaining() < 2 || v.get_i16() != 0 {
                            return None;
                        }
                        let group_epoch = get_i32(&mut v)?;
                        let assignment_epoch = get_i32(&mut v)?;
                        let assignor = get_str(&mut v)?;
                        let n = get_i32(&mut v)?;
                        let mut members = Vec::new();
                        for _ in 0..n.max(0) {
                            let id = get_str(&mut v)?;
                            let instance_id = get_opt_str(&mut v)?;
                            let rack_id = get_opt_str(&mut v)?;
                            let client_id = get_str(&mut v)?;
                            let client_host = get_str(&mut v)?;
                            let member_epoch = get_i32(&mut v)?;
                            let previous_epoch = get_i32(&mut v)?;
                            let rebalance_timeout_ms = get_i32(&mut v)?;
                            let names = get_i32(&mut v)?;
                            let mut subscribed_names = Vec::new();
                            for _ in 0..names.max(0) {
                                subscribed_names.push(get_str(&mut v)?);
                            }
                            let subscribed_regex = get_opt_str(&mut v)?;
                            let server_assignor = get_opt_str(&mut v)?;
                            let assigned = get_parts(&mut v)?;
                            let pending_revocation = get_parts(&mut v)?;
                            members.push(super::consumer::MemberState {
                                id,
                                instance_id,
                                rack_id,
                                client_id,
                                client_host,
                                member_epoch,
                                previous_epoch,
                                rebalance_timeout_ms,
                                subscribed_names,
                                subscribed_regex,
                                server_assignor,
                                assigned,
                                pending_revocation,
                            });
                        }
                        let t = get_i32(&mut v)?;
                        let mut target = std::collections::BTreeMap::new();
                        for _ in 0..t.max(0) {
                            let m = get_str(&mut v)?;
                            target.insert(m, get_parts(&mut v)?);
                        }
                        Some(ConsumerGroupValue {
                            group_epoch,
                            assignment_epoch,
                            assignor,
                            members,
                            target,
                        })
                    }
                };
                Some(OffsetsRecord::ConsumerGroup { group, value })
            }
            GROUP_CONFIG_KEY_VERSION => {
                let group = get_str(&mut k)?;
                let value = match value {
                    None => None,
                    Some(mut v) => {
                        if v.remaining() < 2 || v.get_i16() != 0 {
                            return None;
                        }
                        let n = get_i32(&mut v)?;
                        let mut configs = std::collections::BTreeMap::new();
                        for _ in 0..n.max(0) {
                            let name = get_str(&mut v)?;
                            configs.insert(name, get_str(&mut v)?);
                        }
                        Some(configs)
                    }
                };
                Some(OffsetsRecord::GroupConfig { group, value })
            }
            _ => None,
        }
    }
}

fn put_parts(b: &mut BytesMut, parts: &std::collections::BTreeSet<super::consumer::TopicPart>) {
    b.put_i32(parts.len() as i32);
    for (t, p) in parts {
        put_str(b, t);
        b.put_i32(*p);
    }
}

fn get_parts(b: &mut &[u8]) -> Option<std::collections::BTreeSet<super::consumer::TopicPart>> {
    let n = get_i32(b)?;
    let mut out = std::collections::BTreeSet::new();
    for _ in 0..n.max(0) {
        let t = get_str(b)?;
        out.insert((t, get_i32(b)?));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(r: OffsetsRecord) {
        let (k, v) = r.encode();
        assert_eq!(OffsetsRecord::decode(&k, v.as_deref()), Some(r));
    }

    #[test]
    fn records_round_trip() {
        check(OffsetsRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
            value: Some(OffsetValue {
                offset: 42,
                leader_epoch: 0,
                metadata: "meta ü".into(),
                commit_timestamp: 7,
            }),
        });
        check(OffsetsRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            value: None,
        });
        check(OffsetsRecord::Group {
            group: "g".into(),
            value: Some(GroupValue {
                protocol_type: "consumer".into(),
                generation: 4,
                protocol: Some("range".into()),
                leader: Some("m1".into()),
                state_timestamp: 9,
                members: vec![MemberValue {
                    member_id: "m1".into(),
                    group_instance_id: Some("i1".into()),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 300_000,
                    session_timeout_ms: 45_000,
                    subscription: Bytes::from_static(b"sub"),
                    assignment: Bytes::from_static(b"asg"),
                }],
            }),
        });
        check(OffsetsRecord::Group {
            group: "g".into(),
            value: None,
        });
        check(OffsetsRecord::GroupConfig {
            group: "g".into(),
            value: Some(std::collections::BTreeMap::from([
                (
                    "consumer.session.timeout.ms".to_string(),
                    "50000".to_string(),
                ),
                (
                    "share.auto.offset.reset".to_string(),
                    "earliest".to_string(),
                ),
            ])),
        });
        check(OffsetsRecord::GroupConfig {
            group: "g".into(),
            value: None,
        });
        assert_eq!(OffsetsRecord::decode(&[0, 9], None), None);
        assert_eq!(OffsetsRecord::decode(&[0, 1, 0, 5, b'a'], None), None);
    }
}
