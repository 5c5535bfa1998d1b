//! Classic group membership for `subscribe`: JoinGroup (with MEMBER_ID_REQUIRED), SyncGroup
//! (the leader runs the assignor), Heartbeat every `heartbeat_interval`, and a rejoin when
//! the coordinator says the group is rebalancing or, on the leader, when a subscribed
//! topic gained partitions.
//!
//! Eager protocols (`range`, `roundrobin`): before rejoining, the consumer commits (with
//! auto-commit), calls `on_revoked` with everything it held and gives it all up.
//! Cooperative (`cooperative-sticky`, KIP-429): it rejoins still holding its partitions and
//! says which it owns; after SyncGroup it gives up only what it lost (commit, `on_revoked`),
//! takes what it gained (`on_assigned`), and rejoins at once if it gave something up, so
//! that the partitions can go to their new owners. Losing membership (unknown member,
//! fenced, failed join) still gives everything up.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kafka_protocol::messages::consumer_protocol_subscription;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ConsumerProtocolSubscription, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
    SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use rafka_client::admin::{
    decode_assignment, decode_subscription, encode_assignment, encode_subscription,
};
use rafka_client::ClientError;

use crate::assignor::{Assignor, MemberSubscription};
use crate::consumer::{PartState, Shared, State, Tp};
use crate::error::ConsumerError;

const JOIN_VERSIONS: (i16, i16) = (1, 7);
const SYNC_VERSIONS: (i16, i16) = (0, 5);
const HEARTBEAT_VERSIONS: (i16, i16) = (0, 4);
const LEAVE_VERSIONS: (i16, i16) = (3, 4);

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Why the heartbeat loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rejoin {
    /// The consumer is closing.
    Closed,
    /// The coordinator started a rebalance (or the leader saw a topic grow).
    Rebalance,
    /// Membership is gone (unknown member id, fenced): the partitions are lost.
    Lost,
}

/// What a join and sync settled.
struct Joined {
    cooperative: bool,
    /// A cooperative member gave partitions up and must rejoin so they can move.
    rejoin_now: bool,
    /// On the leader: the partition count of each subscribed topic it assigned.
    counts: Option<BTreeMap<String, i32>>,
}

/// The membership task: join, sync, heartbeat; rejoin on rebalance; until closed.
pub(crate) async fn run(shared: std::sync::Arc<Shared>) {
    let mut failures = 0u32;
    loop {
        if shared.lock().closed {
            return;
        }
        match join_and_sync(&shared).await {
            Ok(joined) => {
                failures = 0;
                if joined.cooperative && joined.rejoin_now {
                    continue;
                }
                let why = heartbeat_until_rebalance(&shared, joined.counts.as_ref()).await;
                if why == Rejoin::Closed {
                    return;
                }
                if joined.cooperative && why == Rejoin::Rebalance {
                    continue;
                }
            }
            Err(e) => {
                failures += 1;
                tracing::debug!(error = %e, failures, "join failed");
                if !e_retriable(&e) && failures > 3 {
                    shared.lock().group_error = Some(e);
                }
                let backoff = shared.client.config().backoff(failures);
                tokio::time::sleep(backoff).await;
            }
        }
        revoke_all(&shared).await;
    }
}

fn e_retriable(e: &ConsumerError) -> bool {
    match e {
        ConsumerError::Client(c) => {
            c.is_retriable()
                || matches!(
                    c.kafka_error(),
                    Some(
                        ResponseError::RebalanceInProgress
                            | ResponseError::UnknownMemberId
                            | ResponseError::IllegalGeneration
                            | ResponseError::MemberIdRequired
                    )
                )
        }
        _ => false,
    }
}

async fn revoke_all(shared: &Shared) {
    let held: Vec<Tp> = shared.lock().assigned.keys().cloned().collect();
    revoke(shared, &held).await;
}

/// Gives up `partitions`: commits what was processed of them (with auto-commit), drops
/// them from the assignment and calls `on_revoked`.
async fn revoke(shared: &Shared, partitions: &[Tp]) {
    if partitions.is_empty() {
        return;
    }
    if shared.cfg.enable_auto_commit {
        if let Err(e) = shared.commit_processed().await {
            tracing::debug!(error = %e, "commit before rebalance failed");
        }
    }
    {
        let mut st = shared.lock();
        for tp in partitions {
            st.assigned.remove(tp);
            st.processed.remove(tp);
            st.committed.remove(tp);
        }
        if st
            .delivered
            .as_ref()
            .is_some_and(|(tp, _)| partitions.contains(tp))
        {
            st.delivered = None;
        }
        let State {
            assigned, buffer, ..
        } = &mut *st;
        buffer.retain(|b| assigned.contains_key(&b.tp));
        st.assignment_epoch += 1;
    }
    if let Some(cb) = &shared.cfg.on_revoked {
        cb(partitions);
    }
}

async fn join_and_sync(shared: &Shared) -> Result<Joined, ConsumerError> {
    let cfg = &shared.cfg;
    let group = cfg.group.clone().expect("subscribe has a group");
    let client = &shared.client;
    let coordinator = client.find_coordinator(&group).await?;
    let topics: Vec<StrBytes> = cfg.topics.iter().map(|t| sb(t)).collect();
    // Eager protocols get the plain v0 subscription; the cooperative one also says what
    // this member owns and since which generation (v2), as the Java client does.
    let eager = encode_subscription(
        &ConsumerProtocolSubscription::default().with_topics(topics.clone()),
        0,
    )?;
    let cooperative = {
        let st = shared.lock();
        let mut owned: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in st.assigned.keys() {
            owned.entry(t.as_str()).or_default().push(*p);
        }
        let sub = ConsumerProtocolSubscription::default()
            .with_topics(topics)
            .with_owned_partitions(
                owned
                    .into_iter()
                    .map(|(t, ps)| {
                        consumer_protocol_subscription::TopicPartition::default()
                            .with_topic(TopicName(sb(t)))
                            .with_partitions(ps)
                    })
                    .collect(),
            )
            .with_generation_id(if st.assigned.is_empty() {
                -1
            } else {
                st.generation
            });
        encode_subscription(&sub, 2)?
    };
    let mut member_id = shared.lock().member_id.clone();
    let join = loop {
        let req = JoinGroupRequest::default()
            .with_group_id(GroupId(sb(&group)))
            .with_session_timeout_ms(cfg.session_timeout.as_millis() as i32)
            .with_rebalance_timeout_ms(cfg.rebalance_timeout.as_millis() as i32)
            .with_member_id(sb(&member_id))
            .with_protocol_type(sb("consumer"))
            .with_protocols(
                cfg.assignors
                    .iter()
                    .map(|a| {
                        JoinGroupRequestProtocol::default()
                            .with_name(sb(a.name()))
                            .with_metadata(if a.is_cooperative() {
                                cooperative.clone()
                            } else {
                                eager.clone()
                            })
                    })
                    .collect(),
            );
        // JoinGroup waits for the whole group: allow the rebalance timeout.
        let conn = client.broker(coordinator).await?;
        let v = conn.version_for::<JoinGroupRequest>(JOIN_VERSIONS)?;
        let pending = conn.submit(&req, v).await?;
        let resp = tokio::time::timeout(
            cfg.rebalance_timeout + Duration::from_secs(5),
            pending.response(),
        )
        .await
        .map_err(|_| ClientError::Timeout {
            what: "JoinGroup".into(),
            after: cfg.rebalance_timeout,
        })??;
        match ResponseError::try_from_code(resp.error_code) {
            Some(ResponseError::MemberIdRequired) => {
                member_id = resp.member_id.to_string();
                continue;
            }
            Some(ResponseError::UnknownMemberId) => {
                member_id.clear();
                shared.lock().member_id.clear();
                return Err(ClientError::Kafka {
                    context: "join group".into(),
                    error: ResponseError::UnknownMemberId,
                }
                .into());
            }
            _ => {}
        }
        ClientError::check(resp.error_code, || format!("join group {group:?}"))?;
        break resp;
    };
    let member_id = join.member_id.to_string();
    let protocol = join
        .protocol_name
        .as_ref()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let assignor = Assignor::from_name(&protocol).unwrap_or(Assignor::Range);
    let mut assignments = Vec::new();
    let mut leader_counts = None;
    if join.leader.as_str() == member_id {
        let mut subs: BTreeMap<String, MemberSubscription> = BTreeMap::new();
        let mut topics = BTreeSet::new();
        for m in &join.members {
            let s = decode_subscription(m.metadata.clone())?;
            let member = MemberSubscription {
                topics: s.topics.iter().map(|t| t.to_string()).collect(),
                owned: s
                    .owned_partitions
                    .iter()
                    .flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.0.to_string(), *p)))
                    .collect(),
                generation: s.generation_id,
            };
            topics.extend(member.topics.iter().cloned());
            subs.insert(m.member_id.to_string(), member);
        }
        let mut counts = BTreeMap::new();
        for t in topics {
            client.invalidate(&t);
            match client.topic(&t).await {
                Ok(md) => {
                    counts.insert(t, md.partitions.len() as i32);
                }
                Err(ClientError::UnknownTopic(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for (m, parts) in assignor.assign(&subs, &counts) {
            assignments.push(
                SyncGroupRequestAssignment::default()
                    .with_member_id(sb(&m))
                    .with_assignment(encode_assignment(&parts)?),
            );
        }
        leader_counts = Some(counts);
    }
    let req = SyncGroupRequest::default()
        .with_group_id(GroupId(sb(&group)))
        .with_generation_id(join.generation_id)
        .with_member_id(sb(&member_id))
        .with_protocol_type(Some(sb("consumer")))
        .with_protocol_name(Some(sb(&protocol)))
        .with_assignments(assignments);
    let conn = client.broker(coordinator).await?;
    let v = conn.version_for::<SyncGroupRequest>(SYNC_VERSIONS)?;
    let pending = conn.submit(&req, v).await?;
    let resp = tokio::time::timeout(
        cfg.rebalance_timeout + Duration::from_secs(5),
        pending.response(),
    )
    .await
    .map_err(|_| ClientError::Timeout {
        what: "SyncGroup".into(),
        after: cfg.rebalance_timeout,
    })??;
    ClientError::check(resp.error_code, || format!("sync group {group:?}"))?;
    let parts = decode_assignment(resp.assignment)?;
    let assigned: Vec<Tp> = parts
        .into_iter()
        .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
        .collect();
    if assignor.is_cooperative() {
        return settle_cooperative(
            shared,
            join.generation_id,
            member_id,
            assigned,
            leader_counts,
        )
        .await;
    }
    {
        let mut st = shared.lock();
        st.generation = join.generation_id;
        st.member_id = member_id;
        st.assigned = assigned
            .iter()
            .map(|tp| (tp.clone(), PartState::default()))
            .collect();
        st.committed.clear();
        st.assignment_epoch += 1;
    }
    tracing::debug!(?assigned, generation = join.generation_id, "joined group");
    if let Some(cb) = &cfg.on_assigned {
        cb(&assigned);
    }
    Ok(Joined {
        cooperative: false,
        rejoin_now: false,
        counts: leader_counts,
    })
}

/// Applies a cooperative assignment: gives up what is no longer ours, keeps the rest as it
/// is (positions, buffered records), and takes what is new.
async fn settle_cooperative(
    shared: &Shared,
    generation: i32,
    member_id: String,
    assigned: Vec<Tp>,
    counts: Option<BTreeMap<String, i32>>,
) -> Result<Joined, ConsumerError> {
    let now: BTreeSet<Tp> = assigned.into_iter().collect();
    let revoked: Vec<Tp> = {
        let mut st = shared.lock();
        st.generation = generation;
        st.member_id = member_id;
        st.assigned
            .keys()
            .filter(|tp| !now.contains(*tp))
            .cloned()
            .collect()
    };
    revoke(shared, &revoked).await;
    let added: Vec<Tp> = {
        let mut st = shared.lock();
        let added: Vec<Tp> = now
            .iter()
            .filter(|tp| !st.assigned.contains_key(*tp))
            .cloned()
            .collect();
        for tp in &added {
            st.assigned.insert(tp.clone(), PartState::default());
        }
        if !added.is_empty() {
            st.assignment_epoch += 1;
        }
        added
    };
    tracing::debug!(?added, ?revoked, generation, "cooperative assignment");
    if !added.is_empty() {
        if let Some(cb) = &shared.cfg.on_assigned {
            cb(&added);
        }
    }
    Ok(Joined {
        cooperative: true,
        rejoin_now: !revoked.is_empty(),
        counts,
    })
}

async fn heartbeat_until_rebalance(
    shared: &Shared,
    assigned_counts: Option<&BTreeMap<String, i32>>,
) -> Rejoin {
    let group = shared.cfg.group.clone().expect("group");
    loop {
        tokio::time::sleep(shared.cfg.heartbeat_interval).await;
        let (generation, member_id, closed) = {
            let st = shared.lock();
            (st.generation, st.member_id.clone(), st.closed)
        };
        if closed {
            return Rejoin::Closed;
        }
        // The leader watches the metadata cache (refreshed every `metadata_max_age`): a
        // subscribed topic that gained partitions needs a new assignment.
        if let Some(counts) = assigned_counts {
            let grown = counts.iter().find(|(t, &n)| {
                shared
                    .client
                    .cached_topic(t)
                    .is_some_and(|md| md.partitions.len() as i32 > n)
            });
            if let Some((t, _)) = grown {
                tracing::debug!(topic = %t, "subscribed topic grew: rejoining");
                return Rejoin::Rebalance;
            }
        }
        let req = HeartbeatRequest::default()
            .with_group_id(GroupId(sb(&group)))
            .with_generation_id(generation)
            .with_member_id(sb(&member_id));
        let result = async {
            let coordinator = shared.client.find_coordinator(&group).await?;
            shared
                .client
                .call_broker(coordinator, &req, HEARTBEAT_VERSIONS)
                .await
        }
        .await;
        match result {
            Ok(r) => match ResponseError::try_from_code(r.error_code) {
                None => {}
                Some(ResponseError::UnknownMemberId) | Some(ResponseError::FencedInstanceId) => {
                    shared.lock().member_id.clear();
                    return Rejoin::Lost;
                }
                Some(ResponseError::IllegalGeneration) => return Rejoin::Lost,
                Some(e) => {
                    tracing::debug!(error = %e, "heartbeat: rejoining");
                    return Rejoin::Rebalance;
                }
            },
            Err(e) => {
                tracing::debug!(error = %e, "heartbeat failed");
            }
        }
    }
}

/// Leaves the group (LeaveGroup), best effort.
pub(crate) async fn leave(shared: &Shared) {
    let Some(group) = shared.cfg.group.clone() else {
        return;
    };
    let member_id = shared.lock().member_id.clone();
    if member_id.is_empty() {
        return;
    }
    let req = LeaveGroupRequest::default()
        .with_group_id(GroupId(sb(&group)))
        .with_members(vec![
            MemberIdentity::default().with_member_id(sb(&member_id))
        ]);
    let r = async {
        let c = shared.client.find_coordinator(&group).await?;
        shared.client.call_broker(c, &req, LEAVE_VERSIONS).await
    }
    .await;
    if let Err(e) = r {
        tracing::debug!(error = %e, "leave group failed");
    }
}
