//! Admin calls on [`Client`]: topics (create, delete, describe configs, alter configs, add
//! partitions), offsets (ListOffsets) and consumer groups (find coordinator, list,
//! describe, committed offsets, commit, delete), plus the consumer protocol's
//! subscription/assignment encoding that group members and `rafka group describe` share.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    consumer_protocol_assignment,
    create_topics_request::CreatableTopic,
    create_topics_request::CreatableTopicConfig,
    describe_configs_request::DescribeConfigsResource,
    incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig},
    list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
    offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
    offset_fetch_request::OffsetFetchRequestTopic,
    BrokerId, ConsumerProtocolAssignment, ConsumerProtocolSubscription, CreatePartitionsRequest,
    CreateTopicsRequest, DeleteGroupsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    DescribeGroupsRequest, FindCoordinatorRequest, GroupId, IncrementalAlterConfigsRequest,
    ListGroupsRequest, ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::ResponseError;

use crate::client::Client;
use crate::error::ClientError;

/// Versions this client speaks, per API: (lowest, highest).
pub mod versions {
    /// CreateTopics.
    pub const CREATE_TOPICS: (i16, i16) = (2, 7);
    /// DeleteTopics (v6 names topics by id or name; we send names in v1..=5).
    pub const DELETE_TOPICS: (i16, i16) = (1, 5);
    /// DescribeConfigs.
    pub const DESCRIBE_CONFIGS: (i16, i16) = (1, 4);
    /// IncrementalAlterConfigs.
    pub const INCREMENTAL_ALTER_CONFIGS: (i16, i16) = (0, 1);
    /// CreatePartitions.
    pub const CREATE_PARTITIONS: (i16, i16) = (0, 3);
    /// ListOffsets.
    pub const LIST_OFFSETS: (i16, i16) = (1, 7);
    /// FindCoordinator (v4 batches keys; we ask for one).
    pub const FIND_COORDINATOR: (i16, i16) = (1, 3);
    /// ListGroups.
    pub const LIST_GROUPS: (i16, i16) = (0, 4);
    /// DescribeGroups.
    pub const DESCRIBE_GROUPS: (i16, i16) = (0, 5);
    /// OffsetFetch (v8 batches groups; we ask for one).
    pub const OFFSET_FETCH: (i16, i16) = (1, 7);
    /// OffsetCommit.
    pub const OFFSET_COMMIT: (i16, i16) = (2, 8);
    /// DeleteGroups.
    pub const DELETE_GROUPS: (i16, i16) = (0, 2);
}

/// `ListOffsets` timestamp asking for the log start offset.
pub const EARLIEST: i64 = -2;
/// `ListOffsets` timestamp asking for the log end offset (high watermark).
pub const LATEST: i64 = -1;
/// `isolation_level` 0: every record up to the high watermark.
pub const READ_UNCOMMITTED: i8 = 0;
/// `isolation_level` 1: records up to the last stable offset, aborted ones filtered out.
pub const READ_COMMITTED: i8 = 1;
/// FindCoordinator key type of a consumer group.
pub const COORDINATOR_GROUP: i8 = 0;
/// FindCoordinator key type of a transactional id.
pub const COORDINATOR_TRANSACTION: i8 = 1;
const TIMEOUT_MS: i32 = 30_000;

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn group_id(s: &str) -> GroupId {
    GroupId(StrBytes::from_string(s.to_string()))
}

/// One group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// Protocol type (`consumer` for consumer groups).
    pub protocol_type: String,
    /// State, when the broker reports it (v4+).
    pub state: String,
}

/// One member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Assigned partitions, by topic (decoded from the consumer protocol assignment).
    pub assignment: BTreeMap<String, Vec<i32>>,
}

/// A described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// State (Empty, Stable, PreparingRebalance, CompletingRebalance, Dead).
    pub state: String,
    /// Protocol type.
    pub protocol_type: String,
    /// The chosen assignor.
    pub protocol: String,
    /// Members.
    pub members: Vec<MemberDescription>,
}

/// Encodes a consumer protocol subscription (the JoinGroup metadata) at version `version`,
/// with its 2-byte version prefix.
pub fn encode_subscription(
    sub: &ConsumerProtocolSubscription,
    version: i16,
) -> Result<Bytes, ClientError> {
    let mut b = BytesMut::new();
    b.put_i16(version);
    sub.encode(&mut b, version)
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    Ok(b.freeze())
}

/// Decodes a consumer protocol subscription (any version, prefix included).
pub fn decode_subscription(mut b: Bytes) -> Result<ConsumerProtocolSubscription, ClientError> {
    if b.remaining() < 2 {
        return Err(ClientError::Protocol("short subscription".into()));
    }
    let v = b.get_i16().min(3);
    ConsumerProtocolSubscription::decode(&mut b, v)
        .map_err(|e| ClientError::Protocol(e.to_string()))
}

/// Encodes a consumer protocol assignment (SyncGroup) at version 0 (readable by every
/// client) from topic → partitions.
pub fn encode_assignment(parts: &BTreeMap<String, Vec<i32>>) -> Result<Bytes, ClientError> {
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(
        parts
            .iter()
            .map(|(t, ps)| {
                consumer_protocol_assignment::TopicPartition::default()
                    .with_topic(topic_name(t))
                    .with_partitions(ps.clone())
            })
            .collect(),
    );
    let mut b = BytesMut::new();
    b.put_i16(0);
    a.encode(&mut b, 0)
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    Ok(b.freeze())
}

/// Decodes a consumer protocol assignment into topic → partitions. Empty bytes are an
/// empty assignment.
pub fn decode_assignment(mut b: Bytes) -> Result<BTreeMap<String, Vec<i32>>, ClientError> {
    let mut out = BTreeMap::new();
    if b.remaining() < 2 {
        return Ok(out);
    }
    let v = b.get_i16().min(3);
    let a = ConsumerProtocolAssignment::decode(&mut b, v)
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    for tp in a.assigned_partitions {
        out.entry(tp.topic.0.to_string())
            .or_insert_with(Vec::new)
            .extend(tp.partitions);
    }
    Ok(out)
}

impl Client {
    /// `partitions` of `topic` grouped by the broker that leads them.
    pub(crate) async fn partitions_by_leader(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, Vec<i32>>, ClientError> {
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for &p in partitions {
            by_leader
                .entry(self.leader(topic, p).await?)
                .or_default()
                .push(p);
        }
        Ok(by_leader)
    }

    /// Creates a topic with `partitions` partitions and topic configs.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: &[(String, String)],
    ) -> Result<(), ClientError> {
        let topic = CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(-1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.clone()))
                            .with_value(Some(StrBytes::from_string(v.clone())))
                    })
                    .collect(),
            );
        let req = CreateTopicsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(TIMEOUT_MS);
        let conn = self.controller().await?;
        let resp = self.call_on(&conn, &req, versions::CREATE_TOPICS).await?;
        for t in resp.topics {
            check_with_message(t.error_code, t.error_message, || {
                format!("create topic {name:?}")
            })?;
        }
        Ok(())
    }

    /// Deletes a topic.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        let req = DeleteTopicsRequest::default()
            .with_topic_names(vec![topic_name(name)])
            .with_timeout_ms(TIMEOUT_MS);
        let conn = self.controller().await?;
        let resp = self.call_on(&conn, &req, versions::DELETE_TOPICS).await?;
        for t in resp.responses {
            check_with_message(t.error_code, t.error_message, || {
                format!("delete topic {name:?}")
            })?;
        }
        self.invalidate(name);
        Ok(())
    }

    /// The configs of a topic: name → (value, is it the default).
    pub async fn describe_topic_configs(
        &self,
        name: &str,
    ) -> Result<BTreeMap<String, (Option<String>, bool)>, ClientError> {
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(name.to_string()))
                .with_configuration_keys(None),
        ]);
        let resp = self.call_any(&req, versions::DESCRIBE_CONFIGS).await?;
        let mut out = BTreeMap::new();
        for r in resp.results {
            check_with_message(r.error_code, r.error_message, || {
                format!("describe configs of {name:?}")
            })?;
            for c in r.configs {
                // config_source 5 = DEFAULT_CONFIG; v0 has no source (then: not default).
                out.insert(
                    c.name.to_string(),
                    (c.value.map(|v| v.to_string()), c.config_source == 5),
                );
            }
        }
        Ok(out)
    }

    /// Sets (`Some`) or removes (`None`) topic configs.
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        changes: &[(String, Option<String>)],
    ) -> Result<(), ClientError> {
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(name.to_string()))
                .with_configs(
                    changes
                        .iter()
                        .map(|(k, v)| {
                            AlterableConfig::default()
                                .with_name(StrBytes::from_string(k.clone()))
                                .with_config_operation(if v.is_some() { 0 } else { 1 })
                                .with_value(v.clone().map(StrBytes::from_string))
                        })
                        .collect(),
                ),
        ]);
        let resp = self
            .call_any(&req, versions::INCREMENTAL_ALTER_CONFIGS)
            .await?;
        for r in resp.responses {
            check_with_message(r.error_code, r.error_message, || {
                format!("alter configs of {name:?}")
            })?;
        }
        Ok(())
    }

    /// Raises the partition count of a topic to `total`.
    pub async fn create_partitions(&self, name: &str, total: i32) -> Result<(), ClientError> {
        let req = CreatePartitionsRequest::default()
            .with_topics(vec![
                kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(topic_name(name))
                    .with_count(total)
                    .with_assignments(None),
            ])
            .with_timeout_ms(TIMEOUT_MS);
        let conn = self.controller().await?;
        let resp = self
            .call_on(&conn, &req, versions::CREATE_PARTITIONS)
            .await?;
        for r in resp.results {
            check_with_message(r.error_code, r.error_message, || {
                format!("add partitions to {name:?}")
            })?;
        }
        self.invalidate(name);
        Ok(())
    }

    /// Offsets for `timestamp` ([`EARLIEST`], [`LATEST`] or a time in ms) of the given
    /// partitions of `topic`, asked from each partition's leader.
    pub async fn list_offsets(
        &self,
        topic: &str,
        partitions: &[i32],
        timestamp: i64,
    ) -> Result<BTreeMap<i32, i64>, ClientError> {
        self.list_offsets_isolated(topic, partitions, timestamp, READ_UNCOMMITTED)
            .await
    }

    /// [`Client::list_offsets`] under an isolation level ([`READ_UNCOMMITTED`] or
    /// [`READ_COMMITTED`]: [`LATEST`] then answers the last stable offset).
    pub async fn list_offsets_isolated(
        &self,
        topic: &str,
        partitions: &[i32],
        timestamp: i64,
        isolation_level: i8,
    ) -> Result<BTreeMap<i32, i64>, ClientError> {
        let by_leader = self.partitions_by_leader(topic, partitions).await?;
        let mut out = BTreeMap::new();
        for (leader, parts) in by_leader {
            let req = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_isolation_level(isolation_level)
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(
                        parts
                            .iter()
                            .map(|&p| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(p)
                                    .with_timestamp(timestamp)
                            })
                            .collect(),
                    )]);
            let resp = self
                .retry(|| self.call_broker(leader, &req, versions::LIST_OFFSETS))
                .await?;
            for t in resp.topics {
                for p in t.partitions {
                    ClientError::check(p.error_code, || {
                        format!("list offsets of {topic}-{}", p.partition_index)
                    })?;
                    out.insert(p.partition_index, p.offset);
                }
            }
        }
        Ok(out)
    }

    /// The broker coordinating `group`.
    pub async fn find_coordinator(&self, group: &str) -> Result<i32, ClientError> {
        self.find_coordinator_of(group, COORDINATOR_GROUP).await
    }

    /// The broker coordinating `key` of `key_type` ([`COORDINATOR_GROUP`] or
    /// [`COORDINATOR_TRANSACTION`]).
    pub async fn find_coordinator_of(&self, key: &str, key_type: i8) -> Result<i32, ClientError> {
        let req = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(key.to_string()))
            .with_key_type(key_type);
        let what = if key_type == COORDINATOR_TRANSACTION {
            "transactional id"
        } else {
            "group"
        };
        self.retry(|| async {
            let resp = self.call_any(&req, versions::FIND_COORDINATOR).await?;
            check_with_message(resp.error_code, resp.error_message, || {
                format!("find coordinator of {what} {key:?}")
            })?;
            Ok(resp.node_id.0)
        })
        .await
    }

    /// Every group the cluster knows.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>, ClientError> {
        let resp = self
            .call_any(&ListGroupsRequest::default(), versions::LIST_GROUPS)
            .await?;
        ClientError::check(resp.error_code, || "list groups".into())?;
        let mut out: Vec<GroupListing> = resp
            .groups
            .into_iter()
            .map(|g| GroupListing {
                group_id: g.group_id.0.to_string(),
                protocol_type: g.protocol_type.to_string(),
                state: g.group_state.to_string(),
            })
            .collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(out)
    }

    /// Describes a group: state, assignor and members with their assignments.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription, ClientError> {
        let coordinator = self.find_coordinator(group).await?;
        let req = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
        let resp = self
            .retry(|| self.call_broker(coordinator, &req, versions::DESCRIBE_GROUPS))
            .await?;
        let g = resp
            .groups
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Protocol("empty DescribeGroups response".into()))?;
        check_with_message(g.error_code, g.error_message, || {
            format!("describe group {group:?}")
        })?;
        let mut members = Vec::new();
        for m in g.members {
            members.push(MemberDescription {
                member_id: m.member_id.to_string(),
                client_id: m.client_id.to_string(),
                client_host: m.client_host.to_string(),
                assignment: decode_assignment(m.member_assignment).unwrap_or_default(),
            });
        }
        Ok(GroupDescription {
            group_id: g.group_id.0.to_string(),
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            protocol: g.protocol_data.to_string(),
            members,
        })
    }

    /// Committed offsets of `group` (all partitions when `topics` is `None`):
    /// (topic, partition) → offset. Partitions without a commit are left out.
    pub async fn committed_offsets(
        &self,
        group: &str,
        topics: Option<&[(String, Vec<i32>)]>,
    ) -> Result<BTreeMap<(String, i32), i64>, ClientError> {
        let coordinator = self.find_coordinator(group).await?;
        let req = OffsetFetchRequest::default()
            .with_group_id(group_id(group))
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|(t, ps)| {
                        OffsetFetchRequestTopic::default()
                            .with_name(topic_name(t))
                            .with_partition_indexes(ps.clone())
                    })
                    .collect()
            }));
        let resp = self
            .retry(|| async {
                let r = self
                    .call_broker(coordinator, &req, versions::OFFSET_FETCH)
                    .await?;
                ClientError::check(r.error_code, || format!("committed offsets of {group:?}"))?;
                Ok(r)
            })
            .await?;
        let mut out = BTreeMap::new();
        for t in resp.topics {
            for p in t.partitions {
                ClientError::check(p.error_code, || {
                    format!("committed offset of {}-{}", t.name.0, p.partition_index)
                })?;
                if p.committed_offset >= 0 {
                    out.insert(
                        (t.name.0.to_string(), p.partition_index),
                        p.committed_offset,
                    );
                }
            }
        }
        Ok(out)
    }

    /// Commits offsets for `group` as a member (`generation`, `member_id`), or from outside
    /// the group with generation -1 and an empty member id (only accepted while the group
    /// is empty).
    pub async fn commit_offsets(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
        offsets: &BTreeMap<(String, i32), i64>,
    ) -> Result<(), ClientError> {
        let coordinator = self.find_coordinator(group).await?;
        let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for ((t, p), o) in offsets {
            topics.entry(t).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*p)
                    .with_committed_offset(*o),
            );
        }
        let req = OffsetCommitRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(StrBytes::from_string(member_id.to_string()))
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(topic_name(t))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let resp = self
            .call_broker(coordinator, &req, versions::OFFSET_COMMIT)
            .await?;
        for t in resp.topics {
            for p in t.partitions {
                ClientError::check(p.error_code, || {
                    format!(
                        "commit offset of {}-{} for {group:?}",
                        t.name.0, p.partition_index
                    )
                })?;
            }
        }
        Ok(())
    }

    /// Deletes a group (it must be empty).
    pub async fn delete_group(&self, group: &str) -> Result<(), ClientError> {
        let coordinator = self.find_coordinator(group).await?;
        let req = DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)]);
        let resp = self
            .call_broker(coordinator, &req, versions::DELETE_GROUPS)
            .await?;
        for r in resp.results {
            ClientError::check(r.error_code, || format!("delete group {group:?}"))?;
        }
        Ok(())
    }

    pub(crate) async fn controller(
        &self,
    ) -> Result<std::sync::Arc<crate::BrokerConnection>, ClientError> {
        let id = self.metadata().controller_id;
        if id >= 0 {
            if let Ok(c) = self.broker(id).await {
                return Ok(c);
            }
        }
        self.any_broker().await
    }
}

pub(crate) fn check_with_message(
    code: i16,
    message: Option<StrBytes>,
    context: impl FnOnce() -> String,
) -> Result<(), ClientError> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(error) => {
            let mut context = context();
            if let Some(m) = message.filter(|m| !m.is_empty()) {
                context = format!("{context} ({m})");
            }
            Err(ClientError::Kafka { context, error })
        }
    }
}
