//! Consumer groups with a raw protocol member next to librdkafka: a member that dies
//! without leaving is expired after its session timeout; bad group requests get Kafka's
//! error codes and change nothing; group administration (list, describe, committed offsets
//! and lag, delete group, delete offsets).

use crate::common;
use crate::support;

use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolAssignment, ConsumerProtocolSubscription, DescribeGroupsRequest,
    GroupId, HeartbeatRequest, JoinGroupRequest, OffsetCommitRequest, OffsetDeleteRequest,
    OffsetFetchRequest, RequestKind, ResponseKind, SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::ResponseError;
use rdkafka::admin::AdminOptions;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};

use common::{str_bytes as s, topic_name, KafkaConn};
use support::{admin, client_config, create_topic};

const T: Duration = Duration::from_secs(10);

fn subscription(topic: &str) -> Bytes {
    let sub = ConsumerProtocolSubscription::default().with_topics(vec![s(topic)]);
    let mut b = BytesMut::new();
    b.put_i16(1);
    sub.encode(&mut b, 1).unwrap();
    b.freeze()
}

fn join(group: &str, member_id: &str, protocols: Vec<(&str, Bytes)>) -> RequestKind {
    RequestKind::JoinGroup(
        JoinGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_session_timeout_ms(6000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(s(member_id))
            .with_protocol_type(s("consumer"))
            .with_protocols(
                protocols
                    .into_iter()
                    .map(|(n, m)| {
                        JoinGroupRequestProtocol::default()
                            .with_name(s(n))
                            .with_metadata(m)
                    })
                    .collect(),
            ),
    )
}

/// Joins as a follower (the group already has an rdkafka leader); returns member id,
/// generation and the partitions assigned.
async fn raw_member_joins(
    conn: &mut KafkaConn,
    group: &str,
    topic: &str,
) -> (String, i32, Vec<i32>) {
    let ResponseKind::JoinGroup(first) = conn
        .send(
            ApiKey::JoinGroup,
            7,
            join(group, "", vec![("range", subscription(topic))]),
        )
        .await
    else {
        panic!("not a join response")
    };
    assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
    let member_id = first.member_id.to_string();
    let ResponseKind::JoinGroup(joined) = conn
        .send(
            ApiKey::JoinGroup,
            7,
            join(group, &member_id, vec![("range", subscription(topic))]),
        )
        .await
    else {
        panic!("not a join response")
    };
    assert_eq!(joined.error_code, 0);
    assert_ne!(
        joined.leader.to_string(),
        member_id,
        "the rdkafka member leads"
    );
    let ResponseKind::SyncGroup(synced) = conn
        .send(
            ApiKey::SyncGroup,
            5,
            RequestKind::SyncGroup(
                SyncGroupRequest::default()
                    .with_group_id(GroupId(s(group)))
                    .with_generation_id(joined.generation_id)
                    .with_member_id(s(&member_id))
                    .with_protocol_type(Some(s("consumer")))
                    .with_protocol_name(Some(s("range"))),
            ),
        )
        .await
    else {
        panic!("not a sync response")
    };
    assert_eq!(synced.error_code, 0);
    let mut a = synced.assignment.clone();
    let version = a.get_i16();
    let assignment = ConsumerProtocolAssignment::decode(&mut a, version).unwrap();
    let partitions = assignment
        .assigned_partitions
        .iter()
        .flat_map(|t| t.partitions.clone())
        .collect();
    (member_id, joined.generation_id, partitions)
}

fn group_consumer(addr: &str, group: &str, topic: &str) -> BaseConsumer {
    let c: BaseConsumer = client_config(addr)
        .set("group.id", group)
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "300")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    c
}

/// Polls `c` until its assignment has `n` partitions (or panics at the deadline).
fn poll_until_assigned(c: &BaseConsumer, n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while c.assignment().map(|a| a.count()).unwrap_or(0) != n {
        assert!(
            Instant::now() < deadline,
            "assignment never reached {n} partitions"
        );
        c.poll(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_heartbeating_is_expired() {
    let b = common::start_broker(|c| c.broker.group_initial_rebalance_delay_ms = 0).await;
    let addr = b.addr();
    create_topic(&addr, "expire", 4, &[]).await;
    let (a, stop) = (
        addr.clone(),
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    let stop2 = stop.clone();
    let rd = std::thread::spawn(move || {
        let c = group_consumer(&a, "g-expire", "expire");
        poll_until_assigned(&c, 4, T);
        // Keep polling (heartbeats, rebalance callbacks) and report assignment sizes.
        let mut sizes = Vec::new();
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            c.poll(Duration::from_millis(50));
            let n = c.assignment().map(|a| a.count()).unwrap_or(0);
            if sizes.last() != Some(&n) {
                sizes.push(n);
            }
        }
        sizes
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut conn = KafkaConn::connect(&addr).await;
    let (_member, _gen, partitions) = raw_member_joins(&mut conn, "g-expire", "expire").await;
    assert_eq!(partitions.len(), 2, "range gives the raw member half of 4");
    // The raw member now goes silent: no heartbeat, no LeaveGroup.
    let silent_since = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let sizes = rd.join().unwrap();
    assert!(silent_since.elapsed() >= Duration::from_secs(6));
    assert_eq!(
        sizes.last(),
        Some(&4),
        "the survivor got every partition back: {sizes:?}"
    );
    assert!(
        sizes.contains(&2),
        "it had shared them meanwhile: {sizes:?}"
    );
    b.shutdown().await;
}

async fn describe(conn: &mut KafkaConn) -> (String, Vec<String>) {
    let ResponseKind::DescribeGroups(d) = conn
        .send(
            ApiKey::DescribeGroups,
            5,
            RequestKind::DescribeGroups(
                DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g-bad"))]),
            ),
        )
        .await
    else {
        panic!()
    };
    let g = &d.groups[0];
    (
        g.group_state.to_string(),
        g.members.iter().map(|m| m.member_id.to_string()).collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_group_requests_get_error_codes_and_change_nothing() {
    let b = common::start_broker(|c| c.broker.group_initial_rebalance_delay_ms = 0).await;
    let addr = b.addr();
    create_topic(&addr, "bad", 1, &[]).await;
    let mut conn = KafkaConn::connect(&addr).await;
    // A legitimate single-member group to compare against.
    let ResponseKind::JoinGroup(j) = conn
        .send(
            ApiKey::JoinGroup,
            3,
            join("g-bad", "", vec![("range", subscription("bad"))]),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(j.error_code, 0);
    let (member, generation) = (j.member_id.to_string(), j.generation_id);
    let before = describe(&mut conn).await;
    assert_eq!(
        before,
        ("CompletingRebalance".to_string(), vec![member.clone()])
    );

    let ResponseKind::JoinGroup(r) = conn
        .send(ApiKey::JoinGroup, 7, join("g-bad", &member, vec![]))
        .await
    else {
        panic!()
    };
    assert_eq!(
        r.error_code,
        ResponseError::InconsistentGroupProtocol.code(),
        "empty protocol list"
    );
    let ResponseKind::SyncGroup(r) = conn
        .send(
            ApiKey::SyncGroup,
            3,
            RequestKind::SyncGroup(
                SyncGroupRequest::default()
                    .with_group_id(GroupId(s("g-bad")))
                    .with_generation_id(generation + 7)
                    .with_member_id(s(&member)),
            ),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(
        r.error_code,
        ResponseError::IllegalGeneration.code(),
        "sync with a wrong generation"
    );
    let ResponseKind::Heartbeat(r) = conn
        .send(
            ApiKey::Heartbeat,
            3,
            RequestKind::Heartbeat(
                HeartbeatRequest::default()
                    .with_group_id(GroupId(s("g-bad")))
                    .with_generation_id(generation)
                    .with_member_id(s("nobody")),
            ),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(
        r.error_code,
        ResponseError::UnknownMemberId.code(),
        "heartbeat from an unknown member"
    );
    let commit = |group: &str, member: &str, generation: i32| {
        RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_generation_id_or_member_epoch(generation)
                .with_member_id(s(member))
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(topic_name("bad"))
                    .with_partitions(vec![
                        OffsetCommitRequestPartition::default().with_committed_offset(5)
                    ])]),
        )
    };
    for (group, m, g, want) in [
        ("", "", -1, ResponseError::InvalidGroupId),
        (
            "g-bad",
            "nobody",
            generation,
            ResponseError::UnknownMemberId,
        ),
        (
            "g-bad",
            member.as_str(),
            generation + 1,
            ResponseError::IllegalGeneration,
        ),
        (
            "g-bad",
            member.as_str(),
            generation,
            ResponseError::RebalanceInProgress,
        ),
    ] {
        let ResponseKind::OffsetCommit(r) = conn
            .send(ApiKey::OffsetCommit, 8, commit(group, m, g))
            .await
        else {
            panic!()
        };
        assert_eq!(
            r.topics[0].partitions[0].error_code,
            want.code(),
            "commit to {group:?} as {m:?}"
        );
    }
    assert_eq!(describe(&mut conn).await, before, "nothing changed");
    let ResponseKind::OffsetFetch(f) = conn
        .send(
            ApiKey::OffsetFetch,
            5,
            RequestKind::OffsetFetch(
                OffsetFetchRequest::default()
                    .with_group_id(GroupId(s("g-bad")))
                    .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                        .with_name(topic_name("bad"))
                        .with_partition_indexes(vec![0])])),
            ),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(
        f.topics[0].partitions[0].committed_offset, -1,
        "no offset was stored"
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_administration() {
    let b = common::start_broker(|c| c.broker.group_initial_rebalance_delay_ms = 0).await;
    let addr = b.addr();
    create_topic(&addr, "adm", 2, &[]).await;
    let p = support::producer(&addr, &[]);
    for i in 0..10 {
        p.send(
            rdkafka::producer::FutureRecord::<(), _>::to("adm")
                .payload("x")
                .partition(i % 2),
            T,
        )
        .await
        .unwrap();
    }
    // A member consumes 3 messages of partition 0 and commits; partition 1 stays uncommitted.
    let a = addr.clone();
    let (group_state, members, lag) = tokio::task::spawn_blocking(move || {
        let c = group_consumer(&a, "g-adm", "adm");
        poll_until_assigned(&c, 2, T);
        let mut got = 0;
        let deadline = Instant::now() + T;
        while got < 3 && Instant::now() < deadline {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
                if m.partition() == 0 {
                    got += 1;
                    c.commit_message(&m, CommitMode::Sync).unwrap();
                }
            }
        }
        let lister: BaseConsumer = client_config(&a).create().unwrap();
        let groups = lister.fetch_group_list(None, T).unwrap();
        let g = groups
            .groups()
            .iter()
            .find(|g| g.name() == "g-adm")
            .expect("listed");
        let state = g.state().to_string();
        let members: Vec<usize> = g
            .members()
            .iter()
            .map(|m| m.assignment().map_or(0, |a| a.len()))
            .collect();
        // Lag = high watermark - committed offset.
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("adm", 0);
        let committed = c.committed_offsets(tpl, T).unwrap();
        let Offset::Offset(off) = committed.elements()[0].offset() else {
            panic!("no committed offset")
        };
        let (_, high) = c.fetch_watermarks("adm", 0, T).unwrap();
        drop(c); // leaves the group
        (state, members, high - off)
    })
    .await
    .unwrap();
    assert_eq!(group_state, "Stable");
    assert_eq!(members.len(), 1);
    assert!(members[0] > 0, "the member's assignment is described");
    assert_eq!(lag, 5 - 3);

    // OffsetDelete removes one partition's offset.
    let mut conn = KafkaConn::connect(&addr).await;
    let ResponseKind::OffsetDelete(d) = conn
        .send(
            ApiKey::OffsetDelete,
            0,
            RequestKind::OffsetDelete(
                OffsetDeleteRequest::default()
                    .with_group_id(GroupId(s("g-adm")))
                    .with_topics(vec![OffsetDeleteRequestTopic::default()
                        .with_name(topic_name("adm"))
                        .with_partitions(vec![
                            OffsetDeleteRequestPartition::default().with_partition_index(0)
                        ])]),
            ),
        )
        .await
    else {
        panic!()
    };
    assert_eq!((d.error_code, d.topics[0].partitions[0].error_code), (0, 0));
    let ResponseKind::OffsetFetch(f) = conn
        .send(
            ApiKey::OffsetFetch,
            5,
            RequestKind::OffsetFetch(
                OffsetFetchRequest::default()
                    .with_group_id(GroupId(s("g-adm")))
                    .with_topics(None),
            ),
        )
        .await
    else {
        panic!()
    };
    assert!(f.topics.iter().all(|t| t.partitions.is_empty()), "{f:?}");

    // Delete the (now empty) group; a second delete finds nothing.
    let admin = admin(&addr);
    let res = admin
        .delete_groups(&["g-adm"], &AdminOptions::new())
        .await
        .unwrap();
    assert!(res[0].is_ok(), "{res:?}");
    let res = admin
        .delete_groups(&["g-adm"], &AdminOptions::new())
        .await
        .unwrap();
    assert_eq!(
        res[0].as_ref().unwrap_err().1,
        RDKafkaErrorCode::GroupIdNotFound
    );
    b.shutdown().await;
}

/// DescribeGroups and ConsumerGroupDescribe answer every operation of a group when asked,
/// as Kafka does without an authorizer: READ 3, DELETE 6, DESCRIBE 8, DESCRIBE_CONFIGS 10,
/// ALTER_CONFIGS 11 (`AclEntry.supportedOperations(GROUP)`); Kafka's "not requested"
/// marker (i32::MIN) otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_descriptions_carry_authorized_operations_when_asked() {
    use kafka_protocol::messages::{ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest};
    const GROUP_OPERATIONS: i32 = 1 << 3 | 1 << 6 | 1 << 8 | 1 << 10 | 1 << 11;
    let b = common::start_broker(|cfg| cfg.broker.offsets_topic_num_partitions = 2).await;
    let addr = b.addr();
    create_topic(&addr, "gops", 1, &[]).await;
    let mut conn = KafkaConn::connect(&addr).await;
    let ResponseKind::ConsumerGroupHeartbeat(j) = conn
        .send(
            ApiKey::ConsumerGroupHeartbeat,
            1,
            RequestKind::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatRequest::default()
                    .with_group_id(GroupId(s("g-ops-new")))
                    .with_member_id(s("m"))
                    .with_member_epoch(0)
                    .with_rebalance_timeout_ms(10_000)
                    .with_subscribed_topic_names(Some(vec![topic_name("gops")])),
            ),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(j.error_code, 0);
    for asked in [false, true] {
        let want = if asked { GROUP_OPERATIONS } else { i32::MIN };
        let ResponseKind::DescribeGroups(d) = conn
            .send(
                ApiKey::DescribeGroups,
                5,
                RequestKind::DescribeGroups(
                    DescribeGroupsRequest::default()
                        .with_groups(vec![GroupId(s("g-ops-none"))])
                        .with_include_authorized_operations(asked),
                ),
            )
            .await
        else {
            panic!()
        };
        assert_eq!(d.groups[0].group_state.as_str(), "Dead");
        assert_eq!(d.groups[0].authorized_operations, want);
        let ResponseKind::ConsumerGroupDescribe(c) = conn
            .send(
                ApiKey::ConsumerGroupDescribe,
                0,
                RequestKind::ConsumerGroupDescribe(
                    ConsumerGroupDescribeRequest::default()
                        .with_group_ids(vec![GroupId(s("g-ops-new")), GroupId(s("g-ops-none"))])
                        .with_include_authorized_operations(asked),
                ),
            )
            .await
        else {
            panic!()
        };
        assert_eq!(c.groups[0].error_code, 0);
        assert_eq!(c.groups[0].authorized_operations, want);
        // A group that is not found carries an error and no operations.
        assert_eq!(
            c.groups[1].error_code,
            ResponseError::GroupIdNotFound.code()
        );
        assert_eq!(c.groups[1].authorized_operations, i32::MIN);
    }
    b.shutdown().await;
}

/// kafkajs's `sendOffsets` sends TxnOffsetCommit v2, which names no member and no
/// generation: Kafka accepts it while the group has live members (it validates a member
/// only when the request names one), and the offset lands with the commit marker. A
/// request that names an unknown member is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_txn_offset_commit_without_member_commits_to_a_group_with_members() {
    use kafka_protocol::messages::add_offsets_to_txn_request::AddOffsetsToTxnRequest;
    use kafka_protocol::messages::end_txn_request::EndTxnRequest;
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequest, TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{InitProducerIdRequest, TransactionalId};

    let b = common::start_broker(|c| c.broker.group_initial_rebalance_delay_ms = 0).await;
    let addr = b.addr();
    create_topic(&addr, "tx-in", 1, &[]).await;
    let mut conn = KafkaConn::connect(&addr).await;
    // A live member: the group is Stable, not Empty.
    let ResponseKind::JoinGroup(first) = conn
        .send(
            ApiKey::JoinGroup,
            7,
            join("g-tx", "", vec![("range", subscription("tx-in"))]),
        )
        .await
    else {
        panic!("not a join response")
    };
    let member_id = first.member_id.to_string();
    let ResponseKind::JoinGroup(joined) = conn
        .send(
            ApiKey::JoinGroup,
            7,
            join("g-tx", &member_id, vec![("range", subscription("tx-in"))]),
        )
        .await
    else {
        panic!("not a join response")
    };
    assert_eq!(joined.error_code, 0);
    let ResponseKind::SyncGroup(synced) = conn
        .send(
            ApiKey::SyncGroup,
            5,
            RequestKind::SyncGroup(
                SyncGroupRequest::default()
                    .with_group_id(GroupId(s("g-tx")))
                    .with_generation_id(joined.generation_id)
                    .with_member_id(s(&member_id))
                    .with_protocol_type(Some(s("consumer")))
                    .with_protocol_name(Some(s("range"))),
            ),
        )
        .await
    else {
        panic!("not a sync response")
    };
    assert_eq!(synced.error_code, 0);

    let txn_id = || TransactionalId(s("tx-kafkajs"));
    let ResponseKind::InitProducerId(init) = conn
        .send(
            ApiKey::InitProducerId,
            1,
            RequestKind::InitProducerId(
                InitProducerIdRequest::default()
                    .with_transactional_id(Some(txn_id()))
                    .with_transaction_timeout_ms(60_000),
            ),
        )
        .await
    else {
        panic!("not an InitProducerId response")
    };
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id, init.producer_epoch);
    let add_offsets = || {
        RequestKind::AddOffsetsToTxn(
            AddOffsetsToTxnRequest::default()
                .with_transactional_id(txn_id())
                .with_producer_id(pid)
                .with_producer_epoch(epoch)
                .with_group_id(GroupId(s("g-tx"))),
        )
    };
    let commit = |version_member: Option<&str>, offset: i64| {
        RequestKind::TxnOffsetCommit(
            TxnOffsetCommitRequest::default()
                .with_transactional_id(txn_id())
                .with_group_id(GroupId(s("g-tx")))
                .with_producer_id(pid)
                .with_producer_epoch(epoch)
                .with_generation_id(if version_member.is_some() { 1 } else { -1 })
                .with_member_id(s(version_member.unwrap_or("")))
                .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                    .with_name(topic_name("tx-in"))
                    .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset)])]),
        )
    };
    let code = |r: ResponseKind| match r {
        ResponseKind::TxnOffsetCommit(r) => r.topics[0].partitions[0].error_code,
        ResponseKind::AddOffsetsToTxn(r) => r.error_code,
        ResponseKind::EndTxn(r) => r.error_code,
        _ => panic!("unexpected response"),
    };
    let end = |committed: bool| {
        RequestKind::EndTxn(
            EndTxnRequest::default()
                .with_transactional_id(txn_id())
                .with_producer_id(pid)
                .with_producer_epoch(epoch)
                .with_committed(committed),
        )
    };
    // A transaction whose TxnOffsetCommit (v2, as kafkajs sends it) names no member.
    assert_eq!(
        code(conn.send(ApiKey::AddOffsetsToTxn, 1, add_offsets()).await),
        0
    );
    assert_eq!(
        code(
            conn.send(ApiKey::TxnOffsetCommit, 2, commit(None, 42))
                .await
        ),
        0
    );
    assert_eq!(code(conn.send(ApiKey::EndTxn, 1, end(true)).await), 0);
    async fn fetch_committed(conn: &mut KafkaConn) -> i64 {
        let req = RequestKind::OffsetFetch(
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s("g-tx")))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(topic_name("tx-in"))
                    .with_partition_indexes(vec![0])])),
        );
        let ResponseKind::OffsetFetch(f) = conn.send(ApiKey::OffsetFetch, 5, req).await else {
            panic!("not an OffsetFetch response")
        };
        f.topics[0].partitions[0].committed_offset
    }
    let deadline = Instant::now() + T;
    let mut committed = fetch_committed(&mut conn).await;
    while committed != 42 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        committed = fetch_committed(&mut conn).await;
    }
    assert_eq!(
        committed, 42,
        "the offset is visible once the commit marker lands"
    );

    // Naming a member that is not in the group is still refused, and nothing lands.
    let mut retries = 0;
    let mut added = code(conn.send(ApiKey::AddOffsetsToTxn, 1, add_offsets()).await);
    while added == ResponseError::ConcurrentTransactions.code() && retries < 100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        added = code(conn.send(ApiKey::AddOffsetsToTxn, 1, add_offsets()).await);
        retries += 1;
    }
    assert_eq!(added, 0);
    assert_eq!(
        code(
            conn.send(ApiKey::TxnOffsetCommit, 3, commit(Some("nobody"), 50))
                .await
        ),
        ResponseError::UnknownMemberId.code()
    );
    assert_eq!(code(conn.send(ApiKey::EndTxn, 1, end(true)).await), 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fetch_committed(&mut conn).await, 42);
    b.shutdown().await;
}

/// Commits `offset` for `group` on `t`-`partition` as a non-member.
async fn commit_one(conn: &mut KafkaConn, group: &str, partition: i32, offset: i64) {
    let ResponseKind::OffsetCommit(r) = conn
        .send(
            ApiKey::OffsetCommit,
            8,
            RequestKind::OffsetCommit(
                OffsetCommitRequest::default()
                    .with_group_id(GroupId(s(group)))
                    .with_generation_id_or_member_epoch(-1)
                    .with_member_id(s(""))
                    .with_topics(vec![OffsetCommitRequestTopic::default()
                        .with_name(topic_name("t"))
                        .with_partitions(vec![OffsetCommitRequestPartition::default()
                            .with_partition_index(partition)
                            .with_committed_offset(offset)])]),
            ),
        )
        .await
    else {
        panic!("not an OffsetCommit response")
    };
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
}

/// The committed offsets of `group` on `t`-0..4 (-1: none).
async fn fetch_four(conn: &mut KafkaConn, group: &str) -> Vec<i64> {
    let ResponseKind::OffsetFetch(f) = conn
        .send(
            ApiKey::OffsetFetch,
            5,
            RequestKind::OffsetFetch(
                OffsetFetchRequest::default()
                    .with_group_id(GroupId(s(group)))
                    .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                        .with_name(topic_name("t"))
                        .with_partition_indexes(vec![0, 1, 2, 3])])),
            ),
        )
        .await
    else {
        panic!("not an OffsetFetch response")
    };
    f.topics[0]
        .partitions
        .iter()
        .map(|p| p.committed_offset)
        .collect()
}

/// Bytes the engine keeps on disk for `__consumer_offsets`: the log engine's segment files,
/// the memory engine's WALs and snapshots, or RocksDB's table files and WALs (all
/// partitions of the broker: only this one holds much).
fn offsets_bytes_on_disk(dir: &std::path::Path, engine: &str) -> u64 {
    let (at, keep): (std::path::PathBuf, fn(&str) -> bool) = match engine {
        "log" => (dir.join("__consumer_offsets-0"), |n| n.ends_with(".log")),
        // The database's data: table files and its write-ahead logs.
        "rocksdb" => (dir.to_path_buf(), |n| {
            n.ends_with(".sst") || n.ends_with(".log")
        }),
        _ => (dir.to_path_buf(), |n| {
            n.starts_with("wal-") || n.starts_with("snapshot-")
        }),
    };
    std::fs::read_dir(at)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| keep(&e.file_name().to_string_lossy()))
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum()
}

/// `__consumer_offsets` is compacted: 20,000 commits of one group over four partitions,
/// plus a group that commits and is deleted. Without the cleaner the topic holds every
/// commit; after a restart with it, it shrinks to about its active part, and the offsets
/// and the deletion survive two restarts (the replay of the compacted topic).
async fn consumer_offsets_stay_bounded(engine: &str) {
    const COMMITS: i64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let start = |cleaner_backoff_ms: u64| {
        let mut cfg = rafka_broker::Config::default();
        cfg.broker.listen = "127.0.0.1:0".into();
        cfg.storage.path = dir.path().to_path_buf();
        cfg.storage.storage_type = engine.to_string();
        cfg.broker.offsets_topic_num_partitions = 1;
        cfg.broker.offsets_topic_segment_bytes = 64 * 1024;
        cfg.broker.log_cleaner_backoff_ms = cleaner_backoff_ms;
        rafka_broker::Broker::start(cfg)
    };
    // 1. Commits with the cleaner idle (its first round comes after an hour).
    let b = start(3_600_000).await.expect("broker starts");
    let addr = b.bootstrap_address();
    create_topic(&addr, "t", 4, &[]).await;
    let mut conn = KafkaConn::connect(&addr).await;
    for i in 0..COMMITS {
        commit_one(&mut conn, "g", (i % 4) as i32, i + 1).await;
    }
    for i in 0..100 {
        commit_one(&mut conn, "gone", (i % 4) as i32, i + 1).await;
    }
    let res = admin(&addr)
        .delete_groups(&["gone"], &AdminOptions::new())
        .await
        .expect("delete_groups");
    assert!(res[0].is_ok(), "{res:?}");
    let want: Vec<i64> = (0..4).map(|p| COMMITS - 3 + p).collect();
    assert_eq!(fetch_four(&mut conn, "g").await, want);
    drop(conn);
    b.shutdown().await.expect("clean shutdown");
    let before = offsets_bytes_on_disk(dir.path(), engine);
    if engine != "rocksdb" {
        assert!(
            before > 1_000_000,
            "{engine}: {before} bytes before cleaning"
        );
    }

    // 2. Restarted with the cleaner: the topic shrinks to its uncleanable part.
    let b = start(100).await.expect("broker restarts");
    let addr = b.bootstrap_address();
    let mut conn = KafkaConn::connect(&addr).await;
    assert_eq!(fetch_four(&mut conn, "g").await, want, "{engine}: replayed");
    let part = b
        .shared()
        .cluster
        .topic("__consumer_offsets")
        .expect("offsets topic")
        .partitions[0]
        .clone();
    assert_eq!(part.log_end_offset().0, COMMITS + 100 + 6);
    // The cleaned offset is checkpointed: after a restart only new records are dirty.
    let checkpoint_path = dir.path().join("cleaner-offset-checkpoint");
    let cleaned_to = || -> Option<i64> {
        let text = std::fs::read_to_string(&checkpoint_path).ok()?;
        let line = text
            .lines()
            .find(|l| l.starts_with("__consumer_offsets 0 "))?;
        line.split(' ').nth(2)?.parse().ok()
    };
    support::wait_for("the cleaner to compact", Duration::from_secs(60), || {
        part.size_bytes() < 150 * 1024 && cleaned_to().is_some_and(|o| o > COMMITS / 2)
    })
    .await;
    let in_log = part.size_bytes();
    // Commits go on after the cleaning.
    commit_one(&mut conn, "g", 0, COMMITS + 10).await;
    drop(conn);
    b.shutdown().await.expect("clean shutdown");
    let after = offsets_bytes_on_disk(dir.path(), engine);
    assert!(
        after < 200 * 1024,
        "{engine}: {after} bytes on disk after cleaning"
    );
    println!(
        "__consumer_offsets on {engine}: {} commits, {before} bytes on disk before cleaning, {after} after ({in_log} bytes held by the partition)",
        COMMITS + 100
    );

    // 3. The compacted topic replays to the same offsets; the deleted group stays deleted.
    let b = start(100).await.expect("broker restarts");
    let mut conn = KafkaConn::connect(&b.bootstrap_address()).await;
    let mut want = want;
    want[0] = COMMITS + 10;
    assert_eq!(
        fetch_four(&mut conn, "g").await,
        want,
        "{engine}: after cleaning"
    );
    assert_eq!(fetch_four(&mut conn, "gone").await, vec![-1; 4], "{engine}");
    b.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_offsets_stay_bounded_on_the_log_engine() {
    consumer_offsets_stay_bounded("log").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_offsets_stay_bounded_on_the_memory_engine() {
    consumer_offsets_stay_bounded("memory").await;
}

#[cfg(feature = "rocksdb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_offsets_stay_bounded_on_the_rocksdb_engine() {
    consumer_offsets_stay_bounded("rocksdb").await;
}
