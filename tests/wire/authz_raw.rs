//! Kafka's authorization on every served API, frame by frame. A broker with the standard
//! authorizer serves `User:alice` (SASL PLAIN) beside a plaintext listener whose
//! `User:ANONYMOUS` is a super user (the operator). For each API, one table row: alice's
//! request without the binding it needs gets Kafka's error and the broker's state (topics,
//! partitions, offsets, committed offsets, groups, a topic config) is unchanged; after the
//! operator grants the binding through CreateAcls the same request passes. A test keeps the
//! table in step with the served APIs. Then prefixed and literal patterns, DENY over ALLOW,
//! host-restricted bindings and super users, on Produce and Fetch.

use std::collections::BTreeSet;

use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request as iac;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::*;
use rafka_broker::{ListenerConfig, SaslMechanism, ScramUserConfig, SecurityProtocol};

use crate::common::{
    create_topic, produce, simple_batch, start_broker, str_bytes, topic_name, KafkaConn, TestBroker,
};

pub(crate) const STANDARD_AUTHORIZER: &str =
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer";

// Kafka's codes: resource types, operations, patterns, permissions.
pub(crate) const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const CLUSTER: i8 = 4;
const TXN: i8 = 5;
pub(crate) const READ: i8 = 3;
const WRITE: i8 = 4;
const CREATE: i8 = 5;
const DELETE: i8 = 6;
const ALTER: i8 = 7;
const DESCRIBE: i8 = 8;
const DESCRIBE_CONFIGS: i8 = 10;
const ALTER_CONFIGS: i8 = 11;
const IDEMPOTENT_WRITE: i8 = 12;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const DENY: i8 = 2;
const ALLOW: i8 = 3;

const TOPIC_AUTHORIZATION_FAILED: i32 = 29;
const GROUP_AUTHORIZATION_FAILED: i32 = 30;
const CLUSTER_AUTHORIZATION_FAILED: i32 = 31;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i32 = 53;

/// One binding for alice: (resource type, name, operation).
pub(crate) type Grant = (i8, &'static str, i8);

/// One row: alice's request, what of the answer is looked at, the bindings she is given
/// first (`given`), the result then (`denied`), the bindings that make it pass (`grants`)
/// and the result then (`allowed`). Results are error codes unless the row says otherwise.
struct Case {
    api: ApiKey,
    version: i16,
    request: fn() -> RequestKind,
    look: fn(&ResponseKind) -> i32,
    given: &'static [Grant],
    denied: i32,
    grants: &'static [Grant],
    allowed: i32,
}

fn listener(name: &str, protocol: SecurityProtocol) -> ListenerConfig {
    ListenerConfig {
        name: name.into(),
        listen: "127.0.0.1:0".into(),
        advertised: None,
        security_protocol: protocol,
        ssl: None,
        sasl_enabled_mechanisms: None,
    }
}

/// A broker with the authorizer, a SASL listener (users alice and bob) and a plaintext one
/// for the operator (a super user), plus `extra_super` super users.
pub(crate) async fn authz_broker(extra_super: &[&str]) -> TestBroker {
    let extra: Vec<String> = extra_super.iter().map(|s| s.to_string()).collect();
    start_broker(move |c| {
        c.broker.listeners = vec![
            ListenerConfig {
                sasl_enabled_mechanisms: Some(vec![SaslMechanism::Plain]),
                ..listener("SASL", SecurityProtocol::SaslPlaintext)
            },
            listener("PLAIN_TEXT", SecurityProtocol::Plaintext),
        ];
        c.broker.authorizer_class_name = STANDARD_AUTHORIZER.into();
        c.broker.super_users = vec!["User:ANONYMOUS".into()];
        c.broker.super_users.extend(extra);
        c.broker.scram_users = ["alice", "bob"]
            .into_iter()
            .map(|u| ScramUserConfig {
                name: u.into(),
                password: format!("{u}-secret"),
                mechanisms: vec!["SCRAM-SHA-256".into()],
                iterations: 4096,
            })
            .collect();
    })
    .await
}

pub(crate) async fn connect(b: &TestBroker, listener: &str) -> KafkaConn {
    let addr = b
        .broker
        .as_ref()
        .unwrap()
        .listener_address(listener)
        .unwrap();
    KafkaConn::connect(&addr.to_string()).await
}

/// A connection authenticated as `user` (password `<user>-secret`) with PLAIN.
pub(crate) async fn login(b: &TestBroker, user: &str) -> KafkaConn {
    let mut c = connect(b, "SASL").await;
    c.authenticate_plain(user, &format!("{user}-secret")).await;
    c
}

/// The operator grants `grants` to `principal` from `host` with `permission`.
async fn grant_as(
    admin: &mut KafkaConn,
    principal: &str,
    host: &str,
    pattern: i8,
    permission: i8,
    grants: &[Grant],
) {
    if grants.is_empty() {
        return;
    }
    let creations = grants
        .iter()
        .map(|(rt, name, op)| {
            AclCreation::default()
                .with_resource_type(*rt)
                .with_resource_name(str_bytes(name))
                .with_resource_pattern_type(pattern)
                .with_principal(str_bytes(principal))
                .with_host(str_bytes(host))
                .with_operation(*op)
                .with_permission_type(permission)
        })
        .collect();
    match admin
        .send(
            ApiKey::CreateAcls,
            3,
            RequestKind::CreateAcls(CreateAclsRequest::default().with_creations(creations)),
        )
        .await
    {
        ResponseKind::CreateAcls(r) => {
            assert!(r.results.iter().all(|r| r.error_code == 0), "{r:?}")
        }
        other => panic!("{other:?}"),
    }
}

pub(crate) async fn grant(admin: &mut KafkaConn, grants: &[Grant]) {
    grant_as(admin, "User:alice", "*", LITERAL, ALLOW, grants).await
}

/// The operator deletes alice's literal ALLOW bindings `grants` (DeleteAcls); each filter
/// matched exactly one binding.
pub(crate) async fn revoke(admin: &mut KafkaConn, grants: &[Grant]) {
    let filters = grants
        .iter()
        .map(|(rt, name, op)| {
            DeleteAclsFilter::default()
                .with_resource_type_filter(*rt)
                .with_resource_name_filter(Some(str_bytes(name)))
                .with_pattern_type_filter(LITERAL)
                .with_principal_filter(Some(str_bytes("User:alice")))
                .with_host_filter(Some(str_bytes("*")))
                .with_operation(*op)
                .with_permission_type(ALLOW)
        })
        .collect();
    match admin
        .send(
            ApiKey::DeleteAcls,
            3,
            RequestKind::DeleteAcls(DeleteAclsRequest::default().with_filters(filters)),
        )
        .await
    {
        ResponseKind::DeleteAcls(r) => assert!(
            r.filter_results
                .iter()
                .all(|f| f.error_code == 0 && f.matching_acls.len() == 1),
            "{r:?}"
        ),
        other => panic!("{other:?}"),
    }
}

/// What the operator sees of the broker's state: topics and partition counts, log start
/// and end offsets, group `g`'s committed offsets, the groups, client quotas, `t`'s
/// retention.ms.
async fn snapshot(admin: &mut KafkaConn) -> Vec<String> {
    let mut out = Vec::new();
    let md = crate::common::metadata(admin, None).await;
    let mut topics: Vec<(String, i32)> = md
        .topics
        .iter()
        .filter_map(|t| {
            let n = t.name.as_ref()?.to_string();
            (!n.starts_with("__")).then_some((n, t.partitions.len() as i32))
        })
        .collect();
    topics.sort();
    for (t, n) in &topics {
        out.push(format!("topic {t} {n}"));
        for p in 0..*n {
            let start = crate::common::list_offsets(admin, t, p, -2).await.offset;
            let end = crate::common::list_offsets(admin, t, p, -1).await.offset;
            out.push(format!("{t}-{p} {start}..{end}"));
        }
    }
    let req = OffsetFetchRequest::default().with_group_id(GroupId(str_bytes("g")));
    if let ResponseKind::OffsetFetch(r) = admin
        .send(
            ApiKey::OffsetFetch,
            7,
            RequestKind::OffsetFetch(req.with_topics(None)),
        )
        .await
    {
        for t in &r.topics {
            for p in &t.partitions {
                out.push(format!(
                    "committed g {}-{} {}",
                    t.name.as_str(),
                    p.partition_index,
                    p.committed_offset
                ));
            }
        }
    }
    if let ResponseKind::ListGroups(r) = admin
        .send(
            ApiKey::ListGroups,
            4,
            RequestKind::ListGroups(ListGroupsRequest::default()),
        )
        .await
    {
        let groups: BTreeSet<String> = r.groups.iter().map(|g| g.group_id.to_string()).collect();
        out.push(format!("groups {groups:?}"));
    }
    if let ResponseKind::DescribeClientQuotas(r) = admin
        .send(
            ApiKey::DescribeClientQuotas,
            1,
            RequestKind::DescribeClientQuotas(DescribeClientQuotasRequest::default()),
        )
        .await
    {
        for e in r.entries.iter().flatten() {
            out.push(format!("quota {:?} {:?}", e.entity, e.values));
        }
    }
    let req =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(str_bytes("t"))
            .with_configuration_keys(Some(vec![str_bytes("retention.ms")]))]);
    if let ResponseKind::DescribeConfigs(r) = admin
        .send(
            ApiKey::DescribeConfigs,
            4,
            RequestKind::DescribeConfigs(req),
        )
        .await
    {
        for c in r.results.iter().flat_map(|r| r.configs.iter()) {
            out.push(format!("config t {}={:?}", c.name.as_str(), c.value));
        }
    }
    out
}

/// Topic `t` (2 partitions, 3 records in partition 0), group `g` with offset 1 committed
/// for t-0, transactional id `tx` initialised.
async fn setup(admin: &mut KafkaConn) {
    assert_eq!(create_topic(admin, "t", 2, &[]).await, 0);
    let r = produce(admin, "t", 0, simple_batch("k", 3, 1_000).into_bytes()).await;
    assert_eq!(r.error_code, 0);
    let commit = offset_commit_request(1);
    match admin
        .send(ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(commit))
        .await
    {
        ResponseKind::OffsetCommit(r) => assert_eq!(r.topics[0].partitions[0].error_code, 0),
        other => panic!("{other:?}"),
    }
    match admin
        .send(ApiKey::InitProducerId, 4, init_producer_id(Some("tx")))
        .await
    {
        ResponseKind::InitProducerId(r) => assert_eq!(r.error_code, 0),
        other => panic!("{other:?}"),
    }
}

fn offset_commit_request(offset: i64) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(str_bytes("g")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name("t"))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)])])
}

fn init_producer_id(txn: Option<&str>) -> RequestKind {
    RequestKind::InitProducerId(
        InitProducerIdRequest::default()
            .with_transactional_id(txn.map(|t| TransactionalId(str_bytes(t))))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    )
}

fn produce_request() -> RequestKind {
    RequestKind::Produce(
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name("t"))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(simple_batch("a", 2, 2_000).into_bytes()))])]),
    )
}

fn fetch_request() -> RequestKind {
    RequestKind::Fetch(
        FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name("t"))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)])]),
    )
}

fn txn_id(s: &str) -> TransactionalId {
    TransactionalId(str_bytes(s))
}

fn group(s: &str) -> GroupId {
    GroupId(str_bytes(s))
}

macro_rules! look {
    ($variant:ident, |$r:ident| $e:expr) => {
        |resp: &ResponseKind| match resp {
            ResponseKind::$variant($r) => ($e) as i32,
            other => panic!("{other:?}"),
        }
    };
}

/// The table: one row (or more) per served API that needs an authorization.
fn cases() -> Vec<Case> {
    vec![
        Case {
            api: ApiKey::Produce,
            version: 9,
            request: produce_request,
            look: look!(Produce, |r| r.responses[0].partition_responses[0]
                .error_code),
            given: &[],
            denied: TOPIC_AUTHORIZATION_FAILED,
            grants: &[(TOPIC, "t", WRITE)],
            allowed: 0,
        },
        Case {
            api: ApiKey::Produce,
            version: 9,
            request: || {
                let batch = crate::common::batch_builder(
                    rafka_core::batch::BatchBuilder::new(rafka_core::Offset(0))
                        .transactional()
                        .producer(999, 0, 0),
                    "x",
                    1,
                    2_000,
                );
                RequestKind::Produce(
                    ProduceRequest::default()
                        .with_acks(-1)
                        .with_timeout_ms(5_000)
                        .with_transactional_id(Some(txn_id("tx")))
                        .with_topic_data(vec![TopicProduceData::default()
                            .with_name(topic_name("t"))
                            .with_partition_data(vec![PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(batch.into_bytes()))])]),
                )
            },
            look: look!(Produce, |r| r.responses[0].partition_responses[0]
                .error_code),
            given: &[(TOPIC, "t", WRITE)],
            denied: TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            grants: &[(TXN, "tx", WRITE)],
            // Past the authorizer, the transaction checks: 999 is not tx's producer id.
            allowed: 49,
        },
        Case {
            api: ApiKey::Fetch,
            version: 12,
            request: fetch_request,
            look: look!(Fetch, |r| r.responses[0].partitions[0].error_code),
            given: &[],
            denied: TOPIC_AUTHORIZATION_FAILED,
            grants: &[(TOPIC, "t", READ)],
            allowed: 0,
        },
        Case {
            api: ApiKey::ListOffsets,
            version: 7,
            request: || {
                RequestKind::ListOffsets(
                    ListOffsetsRequest::default()
                        .with_replica_id(BrokerId(-1))
                        .with_topics(vec![ListOffsetsTopic::default()
                            .with_name(topic_name("t"))
                            .with_partitions(vec![ListOffsetsPartition::default()
                                .with_partition_index(0)
                                .with_timestamp(-1)])]),
                )
            },
            look: look!(ListOffsets, |r| r.topics[0].partitions[0].error_code),
            given: &[],
            denied: TOPIC_AUTHORIZATION_FAILED,
            grants: &[(TOPIC, "t", DESCRIBE)],
            allowed: 0,
        },
        Case {
            api: ApiKey::Metadata,
            version: 12,
            request: || {
                RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(topic_name("t"))),
                ])))
            },
            look: look!(Metadata, |r| r.topics[0].error_code),
            given: &[],
            denied: TOPIC_AUTHORIZATION_FAILED,
            grants: &[(TOPIC, "t", DESCRIBE)],
            allowed: 0,
        },
        Case {
            // Auto-creation needs CREATE: refused, no topic appears.
            api: ApiKey::Metadata,
            version: 12,
            request: || {
                RequestKind::Metadata(
                    MetadataRequest::default()
                        .with_allow_auto_topic_creation(true)
                        .with_topics(Some(vec![
                            MetadataRequestTopic::default().with_name(Some(topic_name("auto")))
                        ])),
                )
            },
            look: look!(Metadata, |r| r.topics[0].error_code),
            given: &[(TOPIC, "auto", DESCRIBE)],
            denied: TOPIC_AUTHORIZATION_FAILED,
            grants: &[(TOPIC, "auto", CREATE)],
            allowed: 0, // created
        },
        Case {
            // CREATE on the cluster covers every topic.
            api: ApiKey::Metadata,
            version: 12,
            request: || {
                RequestKind::Metadata(
                    MetadataRequest::default()
                        .with_allow_auto_topic_creation(true)
                        .with_topics(Some(vec![
                            MetadataRequestTopic::default().with_name(Some(topic_name("auto")))
                        ])),
                )
            },
            look: look!(Metadata, |r| r.topics[0].error_code),
            given: &[(TOPIC, "auto", DESCRIBE)],
            denied: TOPIC_AUTHORIZATION_FAILED,
            grants: &[(CLUSTER, "kafka-cluster", CREATE)],
            allowed: 0,
        },
        Case {
            api: ApiKey::OffsetCommit,
            version: 8,
            request: || RequestKind::OffsetCommit(offset_commit_request(2)),
            look: look!(OffsetCommit, |r| r.topics[0].partitions[0].error_code),
            given: &[],
            denied: GROUP_AUTHORIZATION_FAILED,
            grants: &[(GROUP, "g", READ)],
            allowed: TOPIC_AUTHORIZATION_FAILED,
        },
        Case {
            api: ApiKey::OffsetCommit,
            version: 8,
            request: || RequestKind::OffsetCommit(offset_commit_request(2)),
            look: look!(OffsetCommit, |r| r.topics[0].partitions[0].error_code),
            given: &[(GROUP, "g", READ)],
            denied: TOPIC_AUTHORIZATION_FAILED,
            grants: &[(TOPIC, "t", READ)],
            allowed: 0,
        },
        Case {
            api: ApiKey::OffsetFetch,
            version: 7,
            request: || {
                RequestKind::OffsetFetch(
                    OffsetFetchRequest::default()
                        .with_group_id(group("g"))
                        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                            .with_name(topic_name("t"))
                            .with_partition_indexes(vec![0])])),
                )
            },
            look: look!(OffsetFetch, |r| if r.error_code != 0 {
                r.error_code as i64
            } else if r.topics[0].partitions[0].error_code != 0 {
                r.topics[0].partitions[0].error_code as i64
            } else {
                // The committed offset, negated so it cannot pass for an error code.
                -r.topics[0].partitions[0].committed_offset
            }),
            given: &[],
            denied: GROUP_AUTHORIZATION_FAILED,
            grants: &[(GROUP, "g", DESCRIBE), (TOPIC, "t", DESCRIBE)],
            allowed: -1,
        },
        Case {
            api: ApiKey::FindCoordinator,
            version: 3,
            request: || {
                RequestKind::FindCoordinator(
                    FindCoordinatorRequest::default().with_key(str_bytes("g")),
                )
            },
            look: look!(FindCoordinator, |r| r.error_code),
            given: &[],
            denied: GROUP_AUTHORIZATION_FAILED,
            grants: &[(GROUP, "g", DESCRIBE)],
            allowed: 0,
        },
        Case {
            api: ApiKey::FindCoordinator,
            version: 4,
            request: || {
                RequestKind::FindCoordinator(
                    FindCoordinatorRequest::default()
                        .with_key_type(1)
                        .with_coordinator_keys(vec![str_bytes("tx")]),
                )
            },
            look: look!(FindCoordinator, |r| r.coordinators[0].error_code),
            given: &[],
            denied: TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            grants: &[(TXN, "tx", DESCRIBE)],
            allowed: 0,
        },
        Case {
            api: ApiKey::JoinGroup,
            version: 5,
            request: || {
                RequestKind::JoinGroup(
                    JoinGroupRequest::default()
                        .with_group_id(group("j"))
                        .with_session_timeout_ms(10_000)
                        .with_rebalance_timeout_ms(10_000)
                        .with_protocol_type(str_bytes("consumer"))
                        .with_protocols(vec![JoinGroupRequestProtocol::default()
                            .with_name(str_bytes("range"))
                            .with_metadata(Bytes::from_static(&[0, 0, 0, 0, 0, 0]))]),
                )
            },
            look: look!(JoinGroup, |r| r.error_code),
            given: &[],
            denied: GROUP_AUTHORIZATION_FAILED,
            grants: &[(GROUP, "j", READ)],
            allowed: 79, // MEMBER_ID_REQUIRED: the first step of a join
        },
        Case {
            api: ApiKey::SyncGroup,
            version: 3,
            request: || {
                RequestKind::SyncGroup(
                    SyncGroupRequest::default()
                        .with_group_id(group("j"))
                        .with_generation_id(1)
                        .with_member_id(str_bytes("m")),
                )
            },
            look: look!(SyncGroup, |r| r.error_code),
            given: &[],
            denied: GROUP_AUTHORIZATION_FAILED,
            grants: &[(GROUP, "j", READ)],
            allowed: 25, // UNKNOWN_MEMBER_ID
        },
        Case {
            api: ApiKey::Heartbeat,
            version: 3,
            request: || {
                RequestKind::Heartbeat(
                    HeartbeatRequest::default()
                        .with_group_id(group("j"))
                        .with_generation_id(1)
                        .with_member_id(str_bytes("m")),
                )
            },
            look: look!(Heartbeat, |r| r.error_code),
            given: &[],
            denied: GROUP_AUTHORIZATION_FAILED,
            grants: &[(GROUP, "j", READ)],
            allowed: 25,
        },
        Case {
            api: ApiKey::LeaveGroup,
            version: 2,
            request: || {
                RequestKind::LeaveGroup(
                    LeaveGroupRequest::default()
                        .with_group_id(group("j"))
                        .with_member_id(str_bytes("m")),
                )
            },
            look: look!(LeaveGroup, |r| r.error_code),
            given: &[],
            denied: GROUP_AUTHORIZATION_FAILED,
            grants: &[(GROUP, "j", READ)],
            allowed: 25,
        },
        Case {
            api: ApiKey::DescribeGroups,
            version: 5,
            request: || {
                RequestKind::DescribeGroups(
                    DescribeGroupsRequest::default()
                        .with_groups(vec![group("g")])
                        .with_include_authorized_operations(true),
                )
            },
            look: look!(DescribeGroups, |r| if r.groups[0].error_code != 0 {
                r.groups[0].error_code as i32
            } else {
                // KIP-430: DESCRIBE (8) only, as the bit field.
                r.groups[0].authorized_operations
            }),
            given: &[],
            denied: GROUP_AUTHORIZATION_FAILED,
            grants: &[(GROUP, "g", DESCRIBE)],
            allowed: 1 << 8,
        },
        Case {
            // Listed only with DESCRIBE on the group: the answer's group count.
            api: ApiKey::ListGroups,
            version: 4,
            request: || RequestKind::ListGroups(ListGroupsRequest::default()),
            look: look!(ListGroups, |r| r.groups.len()),
            given: &[],
            denied: 0,
            grants: &[(GROUP, "g", DESCRIBE)],
            allowed: 1,
        },
        Case {
            api: ApiKey::DeleteGroups,
            version: 2,
            request: || {
                RequestKind::DeleteGroups(
                    DeleteGroupsRequest::default().with_groups_names(vec![group("g")]),
                )
            },
            look: look!(DeleteGroups, |r| r.results[0].error_code),
            given: &[],
            denied: GROUP_AUTHORIZATION_FAILED,
            grants: &[(GROUP, "g", DELETE)],
            allowed: 0,
        },
        Case {
            api: ApiKey::OffsetDelete,
            version: 0,
            request: || {
                RequestKind::OffsetDelete(
                    OffsetDeleteRequest::default()
                        .with_group_id(group("g"))
                        .with_topics(vec![OffsetDeleteRequestTopic::default()
                            .with_name(topic_name("t"))
                            .with_partitions(vec![
                                OffsetDeleteRequestPartition::default().with_partition_index(0)
                            ])]),
                )
            },
            look: look!(OffsetDelete, |r| if r.error_code != 0 {
                r.error_code
            } else {
                r.topics[0].partitions[0].error_code
            }),
            given: &[],
            denied: GROUP_AUTHORIZATION_FAILED,
            grants: &[(GROUP, "g", DELETE)],
            allowed: TOPIC_AUTHORIZATION_FAILED,
        },
        Case {
            api: ApiKey::OffsetDelete,
            version: 0,
            request: || {
                RequestKind::OffsetDelete(
                    OffsetDeleteRequest::default()
                        .with_group_id(group("g"))
                        .with_topics(vec![OffsetDeleteRequestTopic::default()
                            .with_name(topic_name("t"))
                            .with_partitions(vec![
                                OffsetDeleteRequestPartition::default().with_partition_index(0)
                            ])]),
                )
            },
            look: look!(OffsetDelete, |r| if r.error_code != 0 {
                r.error_code
            } else {
                r.topics[0].partitions[0].error_code
            }),
            given: &[(GROUP, "g", DELETE)],
            denied: TOPIC_AUTHORIZATION_FAILED,
            grants: &[(TOPIC, "t", READ)],
            allowed: 0,
        },
        Case {
            api: ApiKey::ConsumerGroupHeartbeat,
            version: 0,
            request: || {
                RequestKind::ConsumerGroupHeartbeat(
                    ConsumerGroupHeartbeatRequest::default()
                        .with_group_id(group("c"))
                        .with_member_id(str_bytes("member-1"))
                        .with_member_epoch(0)
                        .with_rebalance_timeout_ms(10_000)
                        .with_subscribed_topic_names(Some(vec![topic_name("t")]))
                        .with_topic_partitions(Some(vec![])),
                )
            },
            look: look!(ConsumerGroupHeartbeat, |r| r.error_code),
            given: &[(GROUP, "c", READ)],
            denied: TOPIC_AUTHORIZATION_FAILED,
            grants: &[(TOPIC, "t", DESCRIBE)],
            allowed: 0,
        },
        Case {
            api: ApiKey::ConsumerGroupHeartbeat,
            version: 0,
            request: || {
                RequestKind::ConsumerGroupHeartbeat(
                    ConsumerGroupHeartbeatRequest::default()
                        .with_group_id(group("c"))
                        .with_member_id(str_bytes("member-1"))
                        .with_member_epoch(0)
                        .with_rebalance_timeout_ms(10_000)
                        .with_subscribed_topic_names(Some(vec![topic_name("t")]))
                        .with_topic_partitions(Some(vec![])),
                )
            },
            look: look!(ConsumerGroupHeartbeat, |r| r.error_code),
            given: &[(TOPIC, "t", DESCRIBE)],
            denied: GROUP_AUTHORIZATION_FAILED,
            grants: &[(GROUP, "c", READ)],
            allowed: 0,
        },
        Case {
            api: ApiKey::ConsumerGroupDescribe,
            version: 0,
            request: || {
                RequestKind::ConsumerGroupDescribe(
                    ConsumerGroupDescribeRequest::default().with_group_ids(vec![group("g")]),
                )
            },
            look: look!(ConsumerGroupDescribe, |r| r.groups[0].error_code),
            given: &[],
            denied: GROUP_AUTHORIZATION_FAILED,
            grants: &[(GROUP, "g", DESCRIBE)],
            allowed: 69, // GROUP_ID_NOT_FOUND: g is a classic group
        },
        Case {
            api: ApiKey::CreateTopics,
            version: 5,
            request: || {
                RequestKind::CreateTopics(
                    CreateTopicsRequest::default()
                        .with_timeout_ms(5_000)
                        .with_topics(vec![CreatableTopic::default()
                            .with_name(topic_name("new"))
                            .with_num_partitions(1)
                            .with_replication_factor(1)]),
                )
            },
            look: look!(CreateTopics, |r| r.topics[0].error_code),
            given: &[],
            denied: TOPIC_AUTHORIZATION_FAILED,
            grants: &[(TOPIC, "new", CREATE)],
            allowed: 0,
        },
        Case {
            api: ApiKey::DeleteTopics,
            version: 5,
            request: || {
                RequestKind::DeleteTopics(
                    DeleteTopicsRequest::default()
                        .with_timeout_ms(5_000)
                        .with_topic_names(vec![topic_name("t")]),
                )
            },
            look: look!(DeleteTopics, |r| r.responses[0].error_code),
            given: &[],
            denied: TOPIC_AUTHORIZATION_FAILED,
            grants: &[(TOPIC, "t", DELETE)],
            allowed: 0,
        },
        Case {
            api: ApiKey::DeleteRecords,
            version: 2,
            request: || {
                RequestKind::DeleteRecords(
                    DeleteRecordsRequest::default()
                        .with_timeout_ms(5_000)
                        .with_topics(vec![DeleteRecordsTopic::default()
                            .with_name(topic_name("t"))
                            .with_partitions(vec![DeleteRecordsPartition::default()
                                .with_partition_index(0)
                                .with_offset(2)])]),
                )
            },
            look: look!(DeleteRecords, |r| r.topics[0].partitions[0].error_code),
            given: &[],
            denied: TOPIC_AUTHORIZATION_FAILED,
            grants: &[(TOPIC, "t", DELETE)],
            allowed: 0,
        },
        Case {
            api: ApiKey::CreatePartitions,
            version: 3,
            request: || {
                RequestKind::CreatePartitions(
                    CreatePartitionsRequest::default()
                        .with_timeout_ms(5_000)
                        .with_topics(vec![CreatePartitionsTopic::default()
                            .with_name(topic_name("t"))
                            .with_count(3)]),
                )
            },
            look: look!(CreatePartitions, |r| r.results[0].error_code),
            given: &[],
            denied: TOPIC_AUTHORIZATION_FAILED,
            grants: &[(TOPIC, "t", ALTER)],
            allowed: 0,
        },
        Case {
            api: ApiKey::DescribeConfigs,
            version: 4,
            request: || {
                RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(
                    vec![DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(str_bytes("t"))],
                ))
            },
            look: look!(DescribeConfigs, |r| r.results[0].error_code),
            given: &[],
            denied: TOPIC_AUTHORIZATION_FAILED,
            grants: &[(TOPIC, "t", DESCRIBE_CONFIGS)],
            allowed: 0,
        },
        Case {
            api: ApiKey::DescribeConfigs,
            version: 4,
            request: || {
                RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(
                    vec![DescribeConfigsResource::default()
                        .with_resource_type(4)
                        .with_resource_name(str_bytes("1"))],
                ))
            },
            look: look!(DescribeConfigs, |r| r.results[0].error_code),
            given: &[],
            denied: CLUSTER_AUTHORIZATION_FAILED,
            grants: &[(CLUSTER, "kafka-cluster", DESCRIBE_CONFIGS)],
            allowed: 0,
        },
        Case {
            api: ApiKey::AlterConfigs,
            version: 2,
            request: || {
                RequestKind::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![
                    AlterConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(str_bytes("t"))
                        .with_configs(vec![AlterableConfig::default()
                            .with_name(str_bytes("retention.ms"))
                            .with_value(Some(str_bytes("1000")))]),
                ]))
            },
            look: look!(AlterConfigs, |r| r.responses[0].error_code),
            given: &[],
            denied: TOPIC_AUTHORIZATION_FAILED,
            grants: &[(TOPIC, "t", ALTER_CONFIGS)],
            allowed: 0,
        },
        Case {
            api: ApiKey::IncrementalAlterConfigs,
            version: 1,
            request: || {
                RequestKind::IncrementalAlterConfigs(
                    IncrementalAlterConfigsRequest::default().with_resources(vec![
                        iac::AlterConfigsResource::default()
                            .with_resource_type(2)
                            .with_resource_name(str_bytes("t"))
                            .with_configs(vec![iac::AlterableConfig::default()
                                .with_name(str_bytes("retention.ms"))
                                .with_config_operation(0)
                                .with_value(Some(str_bytes("2000")))]),
                    ]),
                )
            },
            look: look!(IncrementalAlterConfigs, |r| r.responses[0].error_code),
            given: &[],
            denied: TOPIC_AUTHORIZATION_FAILED,
            grants: &[(TOPIC, "t", ALTER_CONFIGS)],
            allowed: 0,
        },
        Case {
            api: ApiKey::DescribeLogDirs,
            version: 4,
            request: || RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default()),
            look: look!(DescribeLogDirs, |r| r.error_code),
            given: &[],
            denied: CLUSTER_AUTHORIZATION_FAILED,
            grants: &[(CLUSTER, "kafka-cluster", DESCRIBE)],
            allowed: 0,
        },
        Case {
            api: ApiKey::InitProducerId,
            version: 4,
            request: || init_producer_id(None),
            look: look!(InitProducerId, |r| r.error_code),
            given: &[],
            denied: CLUSTER_AUTHORIZATION_FAILED,
            grants: &[(CLUSTER, "kafka-cluster", IDEMPOTENT_WRITE)],
            allowed: 0,
        },
        Case {
            // KIP-679: WRITE on any topic is enough for an idempotent producer.
            api: ApiKey::InitProducerId,
            version: 4,
            request: || init_producer_id(None),
            look: look!(InitProducerId, |r| r.error_code),
            given: &[],
            denied: CLUSTER_AUTHORIZATION_FAILED,
            grants: &[(TOPIC, "t", WRITE)],
            allowed: 0,
        },
        Case {
            api: ApiKey::InitProducerId,
            version: 4,
            request: || init_producer_id(Some("tx")),
            look: look!(InitProducerId, |r| r.error_code),
            given: &[],
            denied: TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            grants: &[(TXN, "tx", WRITE)],
            allowed: 0,
        },
        Case {
            api: ApiKey::AddPartitionsToTxn,
            version: 3,
            request: add_partitions,
            look: look!(AddPartitionsToTxn, |r| r.results_by_topic_v3_and_below[0]
                .results_by_partition[0]
                .partition_error_code),
            given: &[],
            denied: TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            grants: &[(TXN, "tx", WRITE)],
            allowed: TOPIC_AUTHORIZATION_FAILED,
        },
        Case {
            api: ApiKey::AddPartitionsToTxn,
            version: 3,
            request: add_partitions,
            look: look!(AddPartitionsToTxn, |r| r.results_by_topic_v3_and_below[0]
                .results_by_partition[0]
                .partition_error_code),
            given: &[(TXN, "tx", WRITE)],
            denied: TOPIC_AUTHORIZATION_FAILED,
            grants: &[(TOPIC, "t", WRITE)],
            allowed: 49, // INVALID_PRODUCER_ID_MAPPING: not tx's producer id
        },
        Case {
            api: ApiKey::AddOffsetsToTxn,
            version: 3,
            request: || {
                RequestKind::AddOffsetsToTxn(
                    AddOffsetsToTxnRequest::default()
                        .with_transactional_id(txn_id("tx"))
                        .with_producer_id(ProducerId(999))
                        .with_producer_epoch(0)
                        .with_group_id(group("g")),
                )
            },
            look: look!(AddOffsetsToTxn, |r| r.error_code),
            given: &[(TXN, "tx", WRITE)],
            denied: GROUP_AUTHORIZATION_FAILED,
            grants: &[(GROUP, "g", READ)],
            allowed: 49, // INVALID_PRODUCER_ID_MAPPING
        },
        Case {
            api: ApiKey::EndTxn,
            version: 3,
            request: || {
                RequestKind::EndTxn(
                    EndTxnRequest::default()
                        .with_transactional_id(txn_id("tx"))
                        .with_producer_id(ProducerId(999))
                        .with_producer_epoch(0),
                )
            },
            look: look!(EndTxn, |r| r.error_code),
            given: &[],
            denied: TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            grants: &[(TXN, "tx", WRITE)],
            allowed: 49,
        },
        Case {
            api: ApiKey::TxnOffsetCommit,
            version: 3,
            request: txn_offset_commit,
            look: look!(TxnOffsetCommit, |r| r.topics[0].partitions[0].error_code),
            given: &[],
            denied: TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            grants: &[(TXN, "tx", WRITE)],
            allowed: GROUP_AUTHORIZATION_FAILED,
        },
        Case {
            api: ApiKey::TxnOffsetCommit,
            version: 3,
            request: txn_offset_commit,
            look: look!(TxnOffsetCommit, |r| r.topics[0].partitions[0].error_code),
            given: &[(TXN, "tx", WRITE), (GROUP, "g", READ)],
            denied: TOPIC_AUTHORIZATION_FAILED,
            grants: &[(TOPIC, "t", READ)],
            allowed: 49,
        },
        Case {
            api: ApiKey::DescribeTransactions,
            version: 0,
            request: || {
                RequestKind::DescribeTransactions(
                    DescribeTransactionsRequest::default()
                        .with_transactional_ids(vec![txn_id("tx")]),
                )
            },
            look: look!(DescribeTransactions, |r| r.transaction_states[0].error_code),
            given: &[],
            denied: TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            grants: &[(TXN, "tx", DESCRIBE)],
            allowed: 0,
        },
        Case {
            api: ApiKey::ListTransactions,
            version: 1,
            request: || RequestKind::ListTransactions(ListTransactionsRequest::default()),
            look: look!(ListTransactions, |r| r.transaction_states.len()),
            given: &[],
            denied: 0,
            grants: &[(TXN, "tx", DESCRIBE)],
            allowed: 1,
        },
        Case {
            api: ApiKey::DescribeProducers,
            version: 0,
            request: || {
                RequestKind::DescribeProducers(DescribeProducersRequest::default().with_topics(
                    vec![TopicRequest::default()
                        .with_name(topic_name("t"))
                        .with_partition_indexes(vec![0])],
                ))
            },
            look: look!(DescribeProducers, |r| r.topics[0].partitions[0].error_code),
            given: &[],
            denied: TOPIC_AUTHORIZATION_FAILED,
            grants: &[(TOPIC, "t", READ)],
            allowed: 0,
        },
        Case {
            // Markers come from a transaction coordinator; Rafka's own are written inside
            // the broker, so the request is refused with or without CLUSTER_ACTION.
            api: ApiKey::WriteTxnMarkers,
            version: 1,
            request: || {
                RequestKind::WriteTxnMarkers(WriteTxnMarkersRequest::default().with_markers(
                    vec![WritableTxnMarker::default()
                        .with_producer_id(ProducerId(999))
                        .with_topics(vec![WritableTxnMarkerTopic::default()
                            .with_name(topic_name("t"))
                            .with_partition_indexes(vec![0])])],
                ))
            },
            look: look!(WriteTxnMarkers, |r| r.markers[0].topics[0].partitions[0]
                .error_code),
            given: &[],
            denied: CLUSTER_AUTHORIZATION_FAILED,
            grants: &[(CLUSTER, "kafka-cluster", 9)],
            allowed: CLUSTER_AUTHORIZATION_FAILED,
        },
        Case {
            api: ApiKey::OffsetForLeaderEpoch,
            version: 4,
            request: || {
                RequestKind::OffsetForLeaderEpoch(
                    OffsetForLeaderEpochRequest::default()
                        .with_replica_id(BrokerId(-1))
                        .with_topics(vec![OffsetForLeaderTopic::default()
                            .with_topic(topic_name("t"))
                            .with_partitions(vec![OffsetForLeaderPartition::default()
                                .with_partition(0)
                                .with_current_leader_epoch(-1)
                                .with_leader_epoch(0)])]),
                )
            },
            look: look!(OffsetForLeaderEpoch, |r| r.topics[0].partitions[0]
                .error_code),
            given: &[],
            denied: TOPIC_AUTHORIZATION_FAILED,
            grants: &[(TOPIC, "t", DESCRIBE)],
            allowed: 0,
        },
        Case {
            api: ApiKey::DescribeTopicPartitions,
            version: 0,
            request: || {
                RequestKind::DescribeTopicPartitions(
                    DescribeTopicPartitionsRequest::default()
                        .with_response_partition_limit(100)
                        .with_topics(vec![
                            describe_topic_partitions_request::TopicRequest::default()
                                .with_name(topic_name("t")),
                        ]),
                )
            },
            look: look!(DescribeTopicPartitions, |r| r.topics[0].error_code),
            given: &[],
            denied: TOPIC_AUTHORIZATION_FAILED,
            grants: &[(TOPIC, "t", DESCRIBE)],
            allowed: 0,
        },
        Case {
            // KIP-430: the cluster's authorized operations, per principal.
            api: ApiKey::DescribeCluster,
            version: 1,
            request: || {
                RequestKind::DescribeCluster(
                    DescribeClusterRequest::default()
                        .with_include_cluster_authorized_operations(true),
                )
            },
            look: look!(DescribeCluster, |r| r.cluster_authorized_operations),
            given: &[],
            denied: 0,
            grants: &[(CLUSTER, "kafka-cluster", ALTER)],
            allowed: (1 << 7) | (1 << 8), // ALTER and the DESCRIBE it implies
        },
        Case {
            api: ApiKey::DescribeUserScramCredentials,
            version: 0,
            request: || {
                RequestKind::DescribeUserScramCredentials(
                    DescribeUserScramCredentialsRequest::default().with_users(None),
                )
            },
            look: look!(DescribeUserScramCredentials, |r| r.error_code),
            given: &[],
            denied: CLUSTER_AUTHORIZATION_FAILED,
            grants: &[(CLUSTER, "kafka-cluster", DESCRIBE)],
            allowed: 0,
        },
        Case {
            api: ApiKey::AlterUserScramCredentials,
            version: 0,
            request: || {
                RequestKind::AlterUserScramCredentials(
                    AlterUserScramCredentialsRequest::default().with_deletions(vec![
                        alter_user_scram_credentials_request::ScramCredentialDeletion::default()
                            .with_name(str_bytes("bob"))
                            .with_mechanism(1),
                    ]),
                )
            },
            look: look!(AlterUserScramCredentials, |r| r.results[0].error_code),
            given: &[],
            denied: CLUSTER_AUTHORIZATION_FAILED,
            grants: &[(CLUSTER, "kafka-cluster", ALTER)],
            allowed: 0,
        },
        Case {
            api: ApiKey::DescribeClientQuotas,
            version: 1,
            request: || RequestKind::DescribeClientQuotas(DescribeClientQuotasRequest::default()),
            look: look!(DescribeClientQuotas, |r| r.error_code),
            given: &[],
            denied: CLUSTER_AUTHORIZATION_FAILED,
            grants: &[(CLUSTER, "kafka-cluster", DESCRIBE_CONFIGS)],
            allowed: 0,
        },
        Case {
            api: ApiKey::AlterClientQuotas,
            version: 1,
            request: || {
                use alter_client_quotas_request::{EntityData, EntryData, OpData};
                RequestKind::AlterClientQuotas(AlterClientQuotasRequest::default().with_entries(
                    vec![EntryData::default()
                        .with_entity(vec![EntityData::default()
                            .with_entity_type(str_bytes("client-id"))
                            .with_entity_name(Some(str_bytes("loader")))])
                        .with_ops(vec![OpData::default()
                            .with_key(str_bytes("producer_byte_rate"))
                            .with_value(1_048_576.0)])],
                ))
            },
            look: look!(AlterClientQuotas, |r| r.entries[0].error_code),
            given: &[],
            denied: CLUSTER_AUTHORIZATION_FAILED,
            grants: &[(CLUSTER, "kafka-cluster", ALTER_CONFIGS)],
            allowed: 0,
        },
        Case {
            api: ApiKey::CreateAcls,
            version: 3,
            request: || {
                RequestKind::CreateAcls(CreateAclsRequest::default().with_creations(vec![
                    AclCreation::default()
                        .with_resource_type(TOPIC)
                        .with_resource_name(str_bytes("t"))
                        .with_resource_pattern_type(LITERAL)
                        .with_principal(str_bytes("User:bob"))
                        .with_host(str_bytes("*"))
                        .with_operation(READ)
                        .with_permission_type(ALLOW),
                ]))
            },
            look: look!(CreateAcls, |r| r.results[0].error_code),
            given: &[],
            denied: CLUSTER_AUTHORIZATION_FAILED,
            grants: &[(CLUSTER, "kafka-cluster", ALTER)],
            allowed: 0,
        },
        Case {
            api: ApiKey::DescribeAcls,
            version: 3,
            request: || {
                RequestKind::DescribeAcls(
                    DescribeAclsRequest::default()
                        .with_resource_type_filter(1)
                        .with_pattern_type_filter(1)
                        .with_operation(1)
                        .with_permission_type(1),
                )
            },
            look: look!(DescribeAcls, |r| r.error_code),
            given: &[],
            denied: CLUSTER_AUTHORIZATION_FAILED,
            grants: &[(CLUSTER, "kafka-cluster", DESCRIBE)],
            allowed: 0,
        },
        Case {
            api: ApiKey::DeleteAcls,
            version: 3,
            request: || {
                RequestKind::DeleteAcls(DeleteAclsRequest::default().with_filters(vec![
                    DeleteAclsFilter::default()
                        .with_resource_type_filter(TOPIC)
                        .with_resource_name_filter(Some(str_bytes("nothing")))
                        .with_pattern_type_filter(LITERAL)
                        .with_operation(1)
                        .with_permission_type(1),
                ]))
            },
            look: look!(DeleteAcls, |r| r.filter_results[0].error_code),
            given: &[],
            denied: CLUSTER_AUTHORIZATION_FAILED,
            grants: &[(CLUSTER, "kafka-cluster", ALTER)],
            allowed: 0,
        },
    ]
}

/// The APIs every principal may call: how a client learns to talk and authenticates.
const UNCHECKED: [ApiKey; 3] = [
    ApiKey::ApiVersions,
    ApiKey::SaslHandshake,
    ApiKey::SaslAuthenticate,
];

fn add_partitions() -> RequestKind {
    RequestKind::AddPartitionsToTxn(
        AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(txn_id("tx"))
            .with_v3_and_below_producer_id(ProducerId(0))
            .with_v3_and_below_producer_epoch(-1)
            .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(topic_name("t"))
                .with_partitions(vec![0])]),
    )
}

fn txn_offset_commit() -> RequestKind {
    RequestKind::TxnOffsetCommit(
        TxnOffsetCommitRequest::default()
            .with_transactional_id(txn_id("tx"))
            .with_group_id(group("g"))
            .with_producer_id(ProducerId(999))
            .with_producer_epoch(0)
            .with_generation_id(-1)
            .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                .with_name(topic_name("t"))
                .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(2)])]),
    )
}

#[test]
fn the_table_covers_every_served_api() {
    let in_table: BTreeSet<i16> = cases()
        .iter()
        .map(|c| c.api as i16)
        .chain(UNCHECKED.iter().map(|k| *k as i16))
        .collect();
    let served: BTreeSet<i16> = rafka_protocol::versions::SERVED
        .iter()
        .map(|a| a.key as i16)
        .collect();
    let missing: Vec<_> = served.difference(&in_table).collect();
    assert!(missing.is_empty(), "served APIs without a row: {missing:?}");
    for c in cases() {
        let api = rafka_protocol::versions::SERVED
            .iter()
            .find(|a| a.key == c.api)
            .unwrap();
        assert!(
            (api.served_min..=api.max).contains(&c.version),
            "{:?} v{}",
            c.api,
            c.version
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_refuses_without_its_binding_changes_nothing_and_passes_with_it() {
    crate::support::log_to_test_output();
    let mut failures = Vec::new();
    for (i, c) in cases().into_iter().enumerate() {
        let b = authz_broker(&[]).await;
        let mut admin = connect(&b, "PLAIN_TEXT").await;
        setup(&mut admin).await;
        grant(&mut admin, c.given).await;
        let mut alice = login(&b, "alice").await;
        let before = snapshot(&mut admin).await;
        let resp = alice.send(c.api, c.version, (c.request)()).await;
        let denied = (c.look)(&resp);
        let after = snapshot(&mut admin).await;
        if denied != c.denied {
            failures.push(format!(
                "row {i} {:?}: without {:?} got {denied}, want {}",
                c.api, c.grants, c.denied
            ));
        }
        if before != after {
            failures.push(format!(
                "row {i} {:?}: a refused request changed the state:\n{before:?}\n{after:?}",
                c.api
            ));
        }
        grant(&mut admin, c.grants).await;
        let resp = alice.send(c.api, c.version, (c.request)()).await;
        let allowed = (c.look)(&resp);
        if allowed != c.allowed {
            failures.push(format!(
                "row {i} {:?}: with {:?} got {allowed}, want {}",
                c.api, c.grants, c.allowed
            ));
        }
        b.shutdown().await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Alice's produce to `topic` partition 0: its error code.
async fn produce_code(c: &mut KafkaConn, topic: &str) -> i16 {
    produce(c, topic, 0, simple_batch("p", 1, 5_000).into_bytes())
        .await
        .error_code
}

#[tokio::test]
async fn prefixed_and_literal_patterns_deny_over_allow_hosts_and_super_users() {
    let b = authz_broker(&["User:bob"]).await;
    let mut admin = connect(&b, "PLAIN_TEXT").await;
    for t in ["orders", "orders-eu", "pay", "audit"] {
        assert_eq!(create_topic(&mut admin, t, 1, &[]).await, 0);
    }
    let mut alice = login(&b, "alice").await;
    // LITERAL names one topic; PREFIXED every topic starting with it.
    grant(&mut admin, &[(TOPIC, "orders", WRITE)]).await;
    assert_eq!(produce_code(&mut alice, "orders").await, 0);
    assert_eq!(produce_code(&mut alice, "orders-eu").await, 29);
    grant_as(
        &mut admin,
        "User:alice",
        "*",
        PREFIXED,
        ALLOW,
        &[(TOPIC, "ord", WRITE)],
    )
    .await;
    assert_eq!(produce_code(&mut alice, "orders-eu").await, 0);
    // Metadata lists only the topics alice may DESCRIBE (WRITE implies it).
    let listed = |md: MetadataResponse| {
        let mut names: Vec<String> = md
            .topics
            .iter()
            .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
            .filter(|n| !n.starts_with("__"))
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        listed(crate::common::metadata(&mut alice, None).await),
        ["orders", "orders-eu"]
    );
    // DENY wins over any ALLOW, here the wildcard one.
    grant(&mut admin, &[(TOPIC, "*", WRITE)]).await;
    assert_eq!(produce_code(&mut alice, "audit").await, 0);
    grant_as(
        &mut admin,
        "User:alice",
        "*",
        LITERAL,
        DENY,
        &[(TOPIC, "audit", WRITE)],
    )
    .await;
    assert_eq!(produce_code(&mut alice, "audit").await, 29);
    assert_eq!(produce_code(&mut alice, "pay").await, 0);
    // A binding for another host does not apply; one for this host does.
    grant_as(
        &mut admin,
        "User:alice",
        "10.0.0.1",
        LITERAL,
        ALLOW,
        &[(TOPIC, "pay", READ)],
    )
    .await;
    let code = |r: ResponseKind| match r {
        ResponseKind::Fetch(f) => f.responses[0].partitions[0].error_code,
        other => panic!("{other:?}"),
    };
    let req = |t: &str| match fetch_request() {
        RequestKind::Fetch(f) => RequestKind::Fetch(f.with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(t))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_partition_max_bytes(1 << 20)])])),
        _ => unreachable!(),
    };
    assert_eq!(code(alice.send(ApiKey::Fetch, 12, req("pay")).await), 29);
    grant_as(
        &mut admin,
        "User:alice",
        "127.0.0.1",
        LITERAL,
        ALLOW,
        &[(TOPIC, "pay", READ)],
    )
    .await;
    assert_eq!(code(alice.send(ApiKey::Fetch, 12, req("pay")).await), 0);
    // A super user needs no binding, and a DENY does not stop it.
    let mut bob = login(&b, "bob").await;
    grant_as(
        &mut admin,
        "User:bob",
        "*",
        LITERAL,
        DENY,
        &[(TOPIC, "audit", WRITE)],
    )
    .await;
    assert_eq!(produce_code(&mut bob, "audit").await, 0);
    assert_eq!(code(bob.send(ApiKey::Fetch, 12, req("audit")).await), 0);
    // A super user's listing is whole.
    assert_eq!(
        listed(crate::common::metadata(&mut bob, None).await),
        ["audit", "orders", "orders-eu", "pay"]
    );
    b.shutdown().await;
}
