//! Consumer group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups, OffsetDelete.
//! The state and every decision live in `crate::group` (`GroupCoordinator`'s domain
//! methods); this file only translates the wire to them and back.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    BrokerId, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse,
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DeleteGroupsRequest,
    DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse, ResponseKind, SyncGroupRequest,
    SyncGroupResponse,
};
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

use super::{code, sb, wire_topic, Reply};
use crate::acl::ResourceType;
use crate::authz::{authorized_operations, OPERATIONS_OMITTED};
use crate::config::FsyncPolicy;
use crate::group::classic::{Answer, JoinOutcome, JoinRequest, SyncOutcome, SyncRequest};
use crate::group::records::OffsetValue;
use crate::group::{ClassicDescription, Committer, ConsumerDescription, OffsetToCommit};
use crate::shared::Shared;
use crate::state::PartitionState;

/// Longest a JoinGroup or SyncGroup waits on the coordinator, whatever the client asked.
const GROUP_WAIT_MAX: Duration = Duration::from_secs(600);

fn gid(g: &GroupId) -> String {
    g.to_string()
}

/// FindCoordinator v0–4: this broker coordinates every group. Transactions are not served.
pub fn find_coordinator(
    shared: &Arc<Shared>,
    req: FindCoordinatorRequest,
    version: i16,
    listener: &str,
) -> ResponseKind {
    let (host, port) = shared.advertised_for(listener);
    // Key type 0: a group; 1: a transactional id (this broker coordinates both; the
    // first transactional lookup creates `__transaction_state`, as in Kafka). In diskless
    // mode a group's coordinator is one of the live brokers, the same on every broker.
    let error = match req.key_type {
        0 => None,
        1 => shared.txn_log().err().map(|e| e.response_error()),
        _ => Some(ResponseError::InvalidRequest),
    };
    let locate = |key: &str| -> Result<(i32, String, i32), ResponseError> {
        if let Some(e) = error {
            return Err(e);
        }
        match (&shared.diskless, req.key_type) {
            (Some(d), 0) => diskless_coordinator(d, key)
                .ok_or(ResponseError::CoordinatorNotAvailable)
                .map(|b| {
                    let (host, port) = b.address_for(listener);
                    (b.node_id, host, port)
                }),
            _ => Ok((shared.node_id, host.clone(), port)),
        }
    };
    let mut r = FindCoordinatorResponse::default();
    if version >= 4 {
        r.coordinators = req
            .coordinator_keys
            .iter()
            .map(|k| {
                let c = Coordinator::default().with_key(k.clone());
                match locate(k) {
                    Err(e) => c
                        .with_error_code(e.code())
                        .with_error_message(Some(sb(e.to_string())))
                        .with_node_id(BrokerId(-1))
                        .with_port(-1),
                    Ok((node, host, port)) => c
                        .with_node_id(BrokerId(node))
                        .with_host(sb(host))
                        .with_port(port),
                }
            })
            .collect();
    } else {
        r = match locate(&req.key) {
            Err(e) => r
                .with_error_code(e.code())
                .with_error_message(Some(sb(e.to_string())))
                .with_node_id(BrokerId(-1))
                .with_port(-1),
            Ok((node, host, port)) => r
                .with_node_id(BrokerId(node))
                .with_host(sb(host))
                .with_port(port),
        };
    }
    ResponseKind::FindCoordinator(r)
}

/// The live broker coordinating `group` in diskless mode; `None` while this broker is not
/// live itself (its view of the cluster may be stale).
fn diskless_coordinator(
    d: &crate::diskless::Diskless,
    group: &str,
) -> Option<crate::diskless::membership::LiveBroker> {
    if !d.is_live() {
        return None;
    }
    let live = d.membership.live_brokers();
    let ids: Vec<i32> = live.iter().map(|b| b.node_id).collect();
    let node = crate::diskless::leadership::group_coordinator(&ids, group)?;
    live.iter().find(|b| b.node_id == node).cloned()
}

/// In diskless mode, the error for a group request reaching a broker that does not
/// coordinate `group` now (NOT_COORDINATOR: the client finds the coordinator again), or
/// while this broker is not live (COORDINATOR_NOT_AVAILABLE).
pub(crate) fn not_coordinator(shared: &Shared, group: &str) -> Option<ResponseError> {
    let d = shared.diskless.as_ref()?;
    let error = match diskless_coordinator(d, group) {
        None => ResponseError::CoordinatorNotAvailable,
        Some(b) if b.node_id != shared.node_id => ResponseError::NotCoordinator,
        Some(_) => return None,
    };
    // Coordinating it again later means claiming it again (a new epoch).
    d.group_offsets.forget(group);
    Some(error)
}

fn join_response(o: JoinOutcome, version: i16) -> ResponseKind {
    let mut r = JoinGroupResponse::default()
        .with_error_code(code(o.error))
        .with_generation_id(o.generation)
        .with_leader(sb(o.leader))
        .with_member_id(sb(o.member_id))
        .with_members(
            o.members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(sb(id))
                        .with_group_instance_id(if version >= 5 { instance.map(sb) } else { None })
                        .with_metadata(metadata)
                })
                .collect(),
        );
    if version >= 7 {
        r.protocol_type = o.protocol_type.map(sb);
        r.protocol_name = o.protocol.map(sb);
    } else {
        r.protocol_name = Some(sb(o.protocol.unwrap_or_default()));
    }
    if version >= 9 {
        r.skip_assignment = o.skip_assignment;
    }
    ResponseKind::JoinGroup(r)
}

fn sync_response(o: SyncOutcome, version: i16) -> ResponseKind {
    let mut r = SyncGroupResponse::default()
        .with_error_code(code(o.error))
        .with_assignment(o.assignment);
    if version >= 5 {
        r.protocol_type = o.protocol_type.map(sb);
        r.protocol_name = o.protocol.map(sb);
    }
    ResponseKind::SyncGroup(r)
}

/// Waits for a parked answer; a dropped sender means the member was removed meanwhile.
fn later<T: Send + 'static>(
    rx: oneshot::Receiver<T>,
    on_gone: T,
    wait: Duration,
    to_response: impl FnOnce(T) -> ResponseKind + Send + 'static,
) -> Reply {
    Reply::Later(Box::pin(async move {
        let outcome = match tokio::time::timeout(wait.min(GROUP_WAIT_MAX), rx).await {
            Ok(Ok(o)) => o,
            _ => on_gone,
        };
        to_response(outcome)
    }))
}

/// JoinGroup v0–9.
pub fn join_group(
    shared: &Arc<Shared>,
    req: JoinGroupRequest,
    version: i16,
    client_id: &str,
    peer: SocketAddr,
) -> Reply {
    let group = gid(&req.group_id);
    let member_id = req.member_id.to_string();
    if group.is_empty() {
        return Reply::Now(join_response(
            JoinOutcome::error_for(ResponseError::InvalidGroupId, &member_id),
            version,
        ));
    }
    let rebalance_timeout_ms = if version >= 1 {
        req.rebalance_timeout_ms
    } else {
        req.session_timeout_ms
    };
    let jr = JoinRequest {
        member_id: member_id.clone(),
        group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: client_id.to_string(),
        client_host: format!("/{}", peer.ip()),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms,
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        version,
    };
    let answer = shared.groups.join(&group, jr);
    match answer {
        Answer::Now(o) => Reply::Now(join_response(o, version)),
        Answer::Wait(rx) => later(
            rx,
            JoinOutcome::error_for(ResponseError::UnknownMemberId, &member_id),
            Duration::from_millis(rebalance_timeout_ms.max(0) as u64) + Duration::from_secs(5),
            move |o| join_response(o, version),
        ),
    }
}

/// SyncGroup v0–5.
pub fn sync_group(shared: &Arc<Shared>, req: SyncGroupRequest, version: i16) -> Reply {
    let group = gid(&req.group_id);
    if group.is_empty() {
        return Reply::Now(sync_response(
            SyncOutcome::error_for(ResponseError::InvalidGroupId),
            version,
        ));
    }
    let answer = shared.groups.sync(
        &group,
        SyncRequest {
            member_id: &req.member_id,
            instance_id: req.group_instance_id.as_deref(),
            generation: req.generation_id,
            protocol_type: req.protocol_type.as_deref(),
            protocol: req.protocol_name.as_deref(),
            assignments: req
                .assignments
                .iter()
                .map(|a| (a.member_id.to_string(), a.assignment.clone()))
                .collect(),
        },
    );
    match answer {
        Answer::Now(o) => Reply::Now(sync_response(o, version)),
        Answer::Wait(rx) => later(
            rx,
            SyncOutcome::error_for(ResponseError::RebalanceInProgress),
            GROUP_WAIT_MAX,
            move |o| sync_response(o, version),
        ),
    }
}

/// Heartbeat v0–4.
pub fn heartbeat(shared: &Arc<Shared>, req: HeartbeatRequest) -> ResponseKind {
    let group = gid(&req.group_id);
    let error = if group.is_empty() {
        Some(ResponseError::InvalidGroupId)
    } else {
        shared.groups.heartbeat(
            &group,
            &req.member_id,
            req.group_instance_id.as_deref(),
            req.generation_id,
        )
    };
    ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(code(error)))
}

/// LeaveGroup v0–5 (a batch of members from v3).
pub fn leave_group(shared: &Arc<Shared>, req: LeaveGroupRequest, version: i16) -> ResponseKind {
    let group = gid(&req.group_id);
    let leaving: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let results: Result<Vec<Option<ResponseError>>, ResponseError> = if group.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else {
        shared.groups.leave(&group, &leaving)
    };
    let mut r = LeaveGroupResponse::default();
    match results {
        Err(e) => r.error_code = e.code(),
        Ok(errors) if version >= 3 => {
            r.members = leaving
                .into_iter()
                .zip(errors)
                .map(|((m, i), e)| {
                    MemberResponse::default()
                        .with_member_id(sb(m))
                        .with_group_instance_id(i.map(sb))
                        .with_error_code(code(e))
                })
                .collect();
        }
        Ok(errors) => r.error_code = code(errors[0]),
    }
    ResponseKind::LeaveGroup(r)
}

fn flush_then(
    shared: &Arc<Shared>,
    partition: Option<Arc<PartitionState>>,
    response: ResponseKind,
    on_error: impl FnOnce(ResponseKind) -> ResponseKind + Send + 'static,
) -> Reply {
    let Some(p) = partition.filter(|_| shared.config.durability.fsync == FsyncPolicy::OnAckAll)
    else {
        return Reply::Now(response);
    };
    Reply::Later(Box::pin(async move {
        match p.durable().await {
            Ok(()) => response,
            Err(_) => on_error(response),
        }
    }))
}

/// OffsetCommit v2–9. Partitions of unknown topics are answered here, before the group is
/// looked at, as Kafka's `KafkaApis` does; the rest goes to
/// [`GroupCoordinator::commit_offsets`](crate::group::GroupCoordinator::commit_offsets),
/// which documents the check order.
/// In diskless mode the topics are the catalog's (read through on a miss, so a topic
/// created on another broker is known).
pub fn offset_commit(shared: &Arc<Shared>, req: OffsetCommitRequest, version: i16) -> Reply {
    let Some(d) = shared.diskless.clone() else {
        let exists = |t: &str, p: i32| {
            shared
                .cluster
                .topic(t)
                .is_some_and(|topic| topic.partition(p).is_some())
        };
        return offset_commit_with(shared, req, version, &exists);
    };
    let shared = shared.clone();
    Reply::Later(Box::pin(async move {
        let mut partitions = std::collections::HashMap::new();
        for t in &req.topics {
            if let Ok(Some(topic)) = d.catalog.topic(&d.pg, &t.name).await {
                partitions.insert(t.name.to_string(), topic.partitions);
            }
        }
        let exists = |t: &str, p: i32| partitions.get(t).is_some_and(|n| (0..*n).contains(&p));
        let group = gid(&req.group_id);
        // What the local coordinator accepts is written through to PostgreSQL.
        let offered: Vec<_> = req
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(move |p| {
                    (
                        t.name.to_string(),
                        p.partition_index,
                        p.committed_offset,
                        p.committed_leader_epoch,
                        p.committed_metadata
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                    )
                })
            })
            .collect();
        let mut resp = match offset_commit_with(&shared, req, version, &exists) {
            Reply::Now(r) => r,
            Reply::Later(f) | Reply::Durable(f) => f.await,
            // OffsetCommit always answers.
            Reply::Nothing | Reply::Close(_) => {
                return ResponseKind::OffsetCommit(OffsetCommitResponse::default())
            }
        };
        let ResponseKind::OffsetCommit(r) = &mut resp else {
            return resp;
        };
        let accepted: std::collections::HashSet<(String, i32)> = r
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .filter(|p| p.error_code == 0)
                    .map(move |p| (t.name.to_string(), p.partition_index))
            })
            .collect();
        let now = rafka_core::Timestamp::now().0;
        let offsets: Vec<crate::diskless::groups::Committed> = offered
            .into_iter()
            .filter(|(t, p, ..)| accepted.contains(&(t.clone(), *p)))
            .map(|(topic, partition, offset, leader_epoch, metadata)| {
                crate::diskless::groups::Committed {
                    topic,
                    partition,
                    offset,
                    leader_epoch,
                    metadata,
                    commit_timestamp: now,
                }
            })
            .collect();
        let failed = match d
            .group_offsets
            .commit(&d.pg, d.node_id, &group, &offsets)
            .await
        {
            Ok(true) => None,
            Ok(false) => Some(ResponseError::NotCoordinator),
            Err(e) => {
                tracing::warn!(group, error = %e, "committed offsets not written");
                d.group_offsets.forget(&group);
                Some(ResponseError::CoordinatorNotAvailable)
            }
        };
        if let Some(e) = failed {
            for p in r.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                if p.error_code == 0 {
                    p.error_code = e.code();
                }
            }
        }
        resp
    }))
}

fn offset_commit_with(
    shared: &Arc<Shared>,
    req: OffsetCommitRequest,
    version: i16,
    exists: &dyn Fn(&str, i32) -> bool,
) -> Reply {
    let mut known = Vec::new();
    let mut results: Vec<Vec<(i32, Option<ResponseError>)>> = Vec::new();
    for t in &req.topics {
        let mut parts = Vec::new();
        for p in &t.partitions {
            if !exists(&t.name, p.partition_index) {
                parts.push((
                    p.partition_index,
                    Some(ResponseError::UnknownTopicOrPartition),
                ));
                continue;
            }
            parts.push((p.partition_index, None));
            known.push(OffsetToCommit {
                topic: t.name.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            });
        }
        results.push(parts);
    }
    let outcome = shared.groups.commit_offsets(
        &gid(&req.group_id),
        Committer {
            member_id: &req.member_id,
            instance_id: req.group_instance_id.as_deref(),
            generation_or_epoch: req.generation_id_or_member_epoch,
            api_version: version,
            transactional: None,
        },
        known,
    );
    // The coordinator's answers, in order, fill the partitions that reached it.
    let mut answers = outcome.errors.into_iter();
    for (_, e) in results.iter_mut().flatten() {
        if e.is_none() {
            *e = answers.next().flatten();
        }
    }
    let build = move |fail: bool| {
        ResponseKind::OffsetCommit(
            OffsetCommitResponse::default().with_topics(
                req.topics
                    .iter()
                    .zip(&results)
                    .map(|(t, ps)| {
                        OffsetCommitResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                ps.iter()
                                    .map(|(i, e)| {
                                        let e = if fail && e.is_none() {
                                            Some(ResponseError::KafkaStorageError)
                                        } else {
                                            *e
                                        };
                                        OffsetCommitResponsePartition::default()
                                            .with_partition_index(*i)
                                            .with_error_code(code(e))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        )
    };
    let ok = build(false);
    let failed_response = build(true);
    flush_then(shared, outcome.written, ok, move |_| failed_response)
}

/// A partition whose offset is pending in an open transaction, asked with
/// `require_stable` (v7): UNSTABLE_OFFSET_COMMIT, the client retries.
fn unstable_v7(p: i32) -> OffsetFetchResponsePartition {
    OffsetFetchResponsePartition::default()
        .with_partition_index(p)
        .with_committed_offset(-1)
        .with_committed_leader_epoch(-1)
        .with_error_code(ResponseError::UnstableOffsetCommit.code())
}

/// OffsetFetch v1–9 (several groups per request from v8); with `require_stable` (v7+)
/// an offset pending in an open transaction answers UNSTABLE_OFFSET_COMMIT.
pub fn offset_fetch(shared: &Arc<Shared>, req: OffsetFetchRequest, version: i16) -> ResponseKind {
    offset_fetch_with(shared, req, version, &|group, wanted| {
        shared.groups.fetch_offsets(group, wanted)
    })
}

type Wanted = Option<Vec<(String, Vec<i32>)>>;
type Found = Vec<(String, Vec<(i32, Option<OffsetValue>)>)>;
/// A group's committed offsets as PostgreSQL holds them, by topic and partition.
type StoredOffsets = BTreeMap<(String, i32), OffsetValue>;

/// OffsetFetch in diskless mode: the committed offsets are PostgreSQL's (this broker
/// claims each group first, so its former coordinator can no longer move them).
pub fn offset_fetch_any(shared: &Arc<Shared>, req: OffsetFetchRequest, version: i16) -> Reply {
    let Some(d) = shared.diskless.clone() else {
        return Reply::Now(offset_fetch(shared, req, version));
    };
    let shared = shared.clone();
    Reply::Later(Box::pin(async move {
        let names: Vec<String> = if version < 8 {
            vec![gid(&req.group_id)]
        } else {
            req.groups.iter().map(|g| gid(&g.group_id)).collect()
        };
        let mut stored: HashMap<String, Option<StoredOffsets>> = HashMap::new();
        for g in names {
            let found = match d.group_offsets.fetch(&d.pg, d.node_id, &g).await {
                Ok(rows) => Some(
                    rows.into_iter()
                        .map(|c| {
                            (
                                (c.topic, c.partition),
                                OffsetValue {
                                    offset: c.offset,
                                    leader_epoch: c.leader_epoch,
                                    metadata: c.metadata,
                                    commit_timestamp: c.commit_timestamp,
                                },
                            )
                        })
                        .collect(),
                ),
                Err(e) => {
                    tracing::warn!(group = g, error = %e, "committed offsets not read");
                    None
                }
            };
            stored.insert(g, found);
        }
        if stored.values().any(Option::is_none) {
            let refusal = rafka_hooks::Rejection {
                code: rafka_hooks::ErrorCode(ResponseError::CoordinatorNotAvailable.code()),
                message: "the coordinator's database cannot be reached".into(),
                record_errors: Vec::new(),
            };
            return ResponseKind::OffsetFetch(super::RefusableRequest::error_response(
                &req, version, &refusal,
            ));
        }
        let lookup = |group: &str, wanted: Wanted| -> Found {
            let Some(Some(offsets)) = stored.get(group) else {
                return Vec::new();
            };
            match wanted {
                None => {
                    let mut by_topic: BTreeMap<String, Vec<(i32, Option<OffsetValue>)>> =
                        BTreeMap::new();
                    for ((t, p), v) in offsets {
                        by_topic
                            .entry(t.clone())
                            .or_default()
                            .push((*p, Some(v.clone())));
                    }
                    by_topic.into_iter().collect()
                }
                Some(list) => list
                    .into_iter()
                    .map(|(t, ps)| {
                        let values = ps
                            .into_iter()
                            .map(|p| (p, offsets.get(&(t.clone(), p)).cloned()))
                            .collect();
                        (t, values)
                    })
                    .collect(),
            }
        };
        offset_fetch_with(&shared, req, version, &lookup)
    }))
}

fn offset_fetch_with(
    shared: &Arc<Shared>,
    req: OffsetFetchRequest,
    version: i16,
    lookup: &dyn Fn(&str, Wanted) -> Found,
) -> ResponseKind {
    if version < 8 {
        let wanted = req.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (t.name.to_string(), t.partition_indexes))
                .collect()
        });
        let group = gid(&req.group_id);
        let stable = req.require_stable;
        let topics = lookup(&group, wanted)
            .into_iter()
            .map(|(t, ps)| {
                OffsetFetchResponseTopic::default()
                    .with_name(wire_topic(&t))
                    .with_partitions(
                        ps.into_iter()
                            .map(|(p, v)| {
                                if stable && shared.groups.has_pending_offset(&group, &t, p) {
                                    return unstable_v7(p);
                                }
                                let v = v.unwrap_or(OffsetValue {
                                    offset: -1,
                                    leader_epoch: -1,
                                    metadata: String::new(),
                                    commit_timestamp: -1,
                                });
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(v.offset)
                                    .with_committed_leader_epoch(v.leader_epoch)
                                    .with_metadata(Some(sb(v.metadata)))
                            })
                            .collect(),
                    )
            })
            .collect();
        return ResponseKind::OffsetFetch(OffsetFetchResponse::default().with_topics(topics));
    }
    let groups = req
        .groups
        .into_iter()
        .map(|g| {
            let wanted = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name.to_string(), t.partition_indexes))
                    .collect()
            });
            let group = gid(&g.group_id);
            let topics = lookup(&group, wanted)
                .into_iter()
                .map(|(t, ps)| {
                    OffsetFetchResponseTopics::default()
                        .with_name(wire_topic(&t))
                        .with_partitions(
                            ps.into_iter()
                                .map(|(p, v)| {
                                    if req.require_stable
                                        && shared.groups.has_pending_offset(&group, &t, p)
                                    {
                                        return OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(-1)
                                            .with_committed_leader_epoch(-1)
                                            .with_error_code(
                                                ResponseError::UnstableOffsetCommit.code(),
                                            );
                                    }
                                    let v = v.unwrap_or(OffsetValue {
                                        offset: -1,
                                        leader_epoch: -1,
                                        metadata: String::new(),
                                        commit_timestamp: -1,
                                    });
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(v.offset)
                                        .with_committed_leader_epoch(v.leader_epoch)
                                        .with_metadata(Some(sb(v.metadata)))
                                })
                                .collect(),
                        )
                })
                .collect();
            OffsetFetchResponseGroup::default()
                .with_group_id(g.group_id)
                .with_topics(topics)
        })
        .collect();
    ResponseKind::OffsetFetch(OffsetFetchResponse::default().with_groups(groups))
}

/// DescribeGroups v0–5.
pub fn describe_groups(
    shared: &Arc<Shared>,
    req: DescribeGroupsRequest,
    version: i16,
) -> ResponseKind {
    let with_ops = req.include_authorized_operations;
    let groups = req
        .groups
        .into_iter()
        .map(|id| {
            let name = gid(&id);
            let d = DescribedGroup::default()
                .with_group_id(id)
                .with_authorized_operations(OPERATIONS_OMITTED);
            let d = match shared.groups.describe_classic(&name) {
                ClassicDescription::Missing => d.with_group_state(sb("Dead")),
                // DescribeGroups describes classic groups; ConsumerGroupDescribe the others.
                ClassicDescription::ConsumerType => d
                    .with_group_state(sb("Dead"))
                    .with_error_code(ResponseError::GroupIdNotFound.code()),
                ClassicDescription::Group {
                    state,
                    protocol_type,
                    protocol,
                    members,
                } => d
                    .with_group_state(sb(state))
                    .with_protocol_type(sb(protocol_type))
                    .with_protocol_data(sb(protocol))
                    .with_members(
                        members
                            .into_iter()
                            .map(|(id, instance, client_id, host, metadata, assignment)| {
                                DescribedGroupMember::default()
                                    .with_member_id(sb(id))
                                    .with_group_instance_id(if version >= 4 {
                                        instance.map(sb)
                                    } else {
                                        None
                                    })
                                    .with_client_id(sb(client_id))
                                    .with_client_host(sb(host))
                                    .with_member_metadata(metadata)
                                    .with_member_assignment(assignment)
                            })
                            .collect(),
                    ),
            };
            // Kafka fills them in for every group described without an error.
            if d.error_code == 0 {
                d.with_authorized_operations(authorized_operations(ResourceType::Group, with_ops))
            } else {
                d
            }
        })
        .collect();
    ResponseKind::DescribeGroups(DescribeGroupsResponse::default().with_groups(groups))
}

/// ListGroups v0–5 (state filter from v4, type filter from v5).
pub fn list_groups(shared: &Arc<Shared>, req: ListGroupsRequest, version: i16) -> ResponseKind {
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_lowercase()).collect();
    let listed: Vec<ListedGroup> = shared
        .groups
        .list()
        .into_iter()
        .filter(|g| states.is_empty() || states.contains(&g.state.to_lowercase()))
        .filter(|g| types.is_empty() || types.contains(&g.kind.to_string()))
        .map(|g| {
            let mut l = ListedGroup::default()
                .with_group_id(GroupId(sb(g.id)))
                .with_protocol_type(sb(g.protocol_type));
            if version >= 4 {
                l.group_state = sb(g.state);
            }
            if version >= 5 {
                l.group_type = sb(g.kind);
            }
            l
        })
        .collect();
    ResponseKind::ListGroups(ListGroupsResponse::default().with_groups(listed))
}

/// DeleteGroups v0–2: only empty groups; their offsets go too.
pub fn delete_groups(shared: &Arc<Shared>, req: DeleteGroupsRequest) -> ResponseKind {
    let results = req
        .groups_names
        .into_iter()
        .map(|id| {
            let name = gid(&id);
            let error = shared.groups.delete_group(&name).err();
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code(error))
        })
        .collect();
    ResponseKind::DeleteGroups(DeleteGroupsResponse::default().with_results(results))
}

/// DeleteGroups; in diskless mode the committed offsets of each group deleted go from
/// PostgreSQL too.
pub fn delete_groups_any(shared: &Arc<Shared>, req: DeleteGroupsRequest) -> Reply {
    let resp = delete_groups(shared, req);
    let Some(d) = shared.diskless.clone() else {
        return Reply::Now(resp);
    };
    Reply::Later(Box::pin(async move {
        let mut resp = resp;
        if let ResponseKind::DeleteGroups(r) = &mut resp {
            for g in r.results.iter_mut().filter(|g| g.error_code == 0) {
                if let Err(e) = d.group_offsets.delete(&d.pg, &gid(&g.group_id)).await {
                    tracing::warn!(group = %g.group_id.as_str(), error = %e, "group offsets not deleted");
                    g.error_code = ResponseError::CoordinatorNotAvailable.code();
                }
            }
        }
        resp
    }))
}

/// OffsetDelete v0: refuses topics an active member subscribes to.
fn offset_delete(shared: &Arc<Shared>, req: OffsetDeleteRequest) -> ResponseKind {
    let exists = |t: &str| shared.cluster.topic(t).is_some();
    let results =
        shared
            .groups
            .delete_offsets(&gid(&req.group_id), &offset_delete_targets(&req), &exists);
    offset_delete_response(&req, results)
}

/// OffsetDelete; in diskless mode the offsets deleted go from PostgreSQL too, where
/// OffsetFetch reads them — also those of a group this broker holds no state of, whose
/// offsets were committed through its former coordinator.
pub fn offset_delete_any(shared: &Arc<Shared>, req: OffsetDeleteRequest) -> Reply {
    let Some(d) = shared.diskless.clone() else {
        return Reply::Now(offset_delete(shared, req));
    };
    let shared = shared.clone();
    Reply::Later(Box::pin(async move {
        let group = gid(&req.group_id);
        let targets = offset_delete_targets(&req);
        let mut known = std::collections::HashSet::new();
        for (t, _) in &targets {
            if let Ok(Some(_)) = d.catalog.topic(&d.pg, t).await {
                known.insert(t.clone());
            }
        }
        let exists = |t: &str| known.contains(t);
        let unavailable = |e: crate::diskless::DisklessError| {
            tracing::warn!(group, error = %e, "committed offsets not deleted");
            d.group_offsets.forget(&group);
            ResponseError::CoordinatorNotAvailable
        };
        let results = match shared.groups.delete_offsets(&group, &targets, &exists) {
            // No state here: the group exists if PostgreSQL holds offsets of it, and has no
            // member subscribing to anything.
            Err(ResponseError::GroupIdNotFound) => {
                match d.group_offsets.fetch(&d.pg, d.node_id, &group).await {
                    Ok(rows) if rows.is_empty() => Err(ResponseError::GroupIdNotFound),
                    Ok(_) => Ok(targets
                        .iter()
                        .map(|(t, ps)| {
                            let e = (!exists(t)).then_some(ResponseError::UnknownTopicOrPartition);
                            ps.iter().map(|&p| (p, e)).collect()
                        })
                        .collect()),
                    Err(e) => Err(unavailable(e)),
                }
            }
            other => other,
        };
        let results = match results {
            Ok(results) => {
                let gone: Vec<(String, i32)> = targets
                    .iter()
                    .zip(&results)
                    .flat_map(|((t, _), ps)| {
                        ps.iter()
                            .filter(|(_, e)| e.is_none())
                            .map(move |(p, _)| (t.clone(), *p))
                    })
                    .collect();
                match d
                    .group_offsets
                    .delete_offsets(&d.pg, d.node_id, &group, &gone)
                    .await
                {
                    Ok(true) => Ok(results),
                    Ok(false) => Err(ResponseError::NotCoordinator),
                    Err(e) => Err(unavailable(e)),
                }
            }
            Err(e) => Err(e),
        };
        offset_delete_response(&req, results)
    }))
}

/// The (topic, partitions) an OffsetDelete names.
fn offset_delete_targets(req: &OffsetDeleteRequest) -> Vec<(String, Vec<i32>)> {
    req.topics
        .iter()
        .map(|t| {
            (
                t.name.to_string(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect()
}

fn offset_delete_response(
    req: &OffsetDeleteRequest,
    results: Result<Vec<crate::group::PartitionErrors>, ResponseError>,
) -> ResponseKind {
    let r = match results {
        Err(e) => OffsetDeleteResponse::default().with_error_code(e.code()),
        Ok(results) => OffsetDeleteResponse::default().with_topics(
            req.topics
                .iter()
                .zip(results)
                .map(|(t, ps)| {
                    OffsetDeleteResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            ps.into_iter()
                                .map(|(i, e)| {
                                    OffsetDeleteResponsePartition::default()
                                        .with_partition_index(i)
                                        .with_error_code(code(e))
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
    };
    ResponseKind::OffsetDelete(r)
}

/// The topics groups see: the catalog's in diskless mode, else the local cluster's.
pub(crate) fn topic_view(shared: &Shared) -> &dyn crate::group::consumer::TopicView {
    match &shared.diskless {
        Some(d) => &d.catalog,
        None => &shared.cluster,
    }
}

/// The id of topic `name` as groups see it.
fn topic_id(shared: &Shared, name: &str) -> Option<uuid::Uuid> {
    match &shared.diskless {
        Some(d) => d.catalog.cached(name).map(|t| t.id),
        None => shared.cluster.topic(name).map(|t| t.id),
    }
}

/// The name of the topic whose id is `id`, as groups see it.
fn topic_name(shared: &Shared, id: uuid::Uuid) -> Option<String> {
    match &shared.diskless {
        Some(d) => d
            .catalog
            .all()
            .iter()
            .find(|t| t.id == id)
            .map(|t| t.name.clone()),
        None => shared.cluster.topic_by_id(id).map(|t| t.name.to_string()),
    }
}

fn wire_assignment(
    shared: &Shared,
    parts: &std::collections::BTreeSet<(String, i32)>,
) -> Vec<(uuid::Uuid, String, Vec<i32>)> {
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (t, p) in parts {
        by_topic.entry(t.clone()).or_default().push(*p);
    }
    by_topic
        .into_iter()
        .filter_map(|(t, ps)| topic_id(shared, &t).map(|id| (id, t, ps)))
        .collect()
}

/// ConsumerGroupHeartbeat v0–1 (KIP-848).
pub fn consumer_group_heartbeat(
    shared: &Arc<Shared>,
    req: ConsumerGroupHeartbeatRequest,
    version: i16,
    client_id: &str,
    peer: SocketAddr,
) -> ResponseKind {
    use kafka_protocol::messages::consumer_group_heartbeat_response::{
        Assignment, TopicPartitions,
    };
    let group = gid(&req.group_id);
    let fail = |e: ResponseError, msg: String| {
        ResponseKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatResponse::default()
                .with_error_code(e.code())
                .with_error_message(Some(sb(msg)))
                .with_member_epoch(-1),
        )
    };
    if group.is_empty() {
        return fail(
            ResponseError::InvalidGroupId,
            "The group id must not be empty".into(),
        );
    }
    if version >= 1 && req.member_epoch == 0 && req.member_id.is_empty() {
        return fail(
            ResponseError::InvalidRequest,
            "MemberId must be set from version 1".into(),
        );
    }
    let owned = req.topic_partitions.as_ref().map(|tps| {
        tps.iter()
            .filter_map(|tp| topic_name(shared, tp.topic_id).map(|t| (t, tp.partitions.clone())))
            .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
            .collect()
    });
    let hb = crate::group::consumer::Heartbeat {
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|s| s.to_string()),
        rack_id: req.rack_id.as_ref().map(|s| s.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topic_names: req
            .subscribed_topic_names
            .as_ref()
            .map(|ns| ns.iter().map(|n| n.to_string()).collect()),
        subscribed_topic_regex: req.subscribed_topic_regex.as_ref().map(|s| s.to_string()),
        server_assignor: req.server_assignor.as_ref().map(|s| s.to_string()),
        owned,
        client_id: client_id.to_string(),
        client_host: format!("/{}", peer.ip()),
    };
    let result = shared
        .groups
        .consumer_heartbeat(&group, hb, topic_view(shared));
    match result {
        Err((e, msg)) => fail(e, msg),
        Ok(a) => {
            let assignment = a.assignment.map(|parts| {
                Assignment::default().with_topic_partitions(
                    wire_assignment(shared, &parts)
                        .into_iter()
                        .map(|(id, _, ps)| {
                            TopicPartitions::default()
                                .with_topic_id(id)
                                .with_partitions(ps)
                        })
                        .collect(),
                )
            });
            ResponseKind::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatResponse::default()
                    .with_member_id(Some(sb(a.member_id)))
                    .with_member_epoch(a.member_epoch)
                    .with_heartbeat_interval_ms(a.heartbeat_interval_ms)
                    .with_assignment(assignment),
            )
        }
    }
}

/// ConsumerGroupDescribe v0–1.
pub fn consumer_group_describe(
    shared: &Arc<Shared>,
    req: ConsumerGroupDescribeRequest,
) -> ResponseKind {
    use kafka_protocol::messages::consumer_group_describe_response::{
        Assignment, DescribedGroup as CDescribed, Member, TopicPartitions,
    };
    let to_wire = |parts: &std::collections::BTreeSet<(String, i32)>| {
        Assignment::default().with_topic_partitions(
            wire_assignment(shared, parts)
                .into_iter()
                .map(|(id, name, ps)| {
                    TopicPartitions::default()
                        .with_topic_id(id)
                        .with_topic_name(wire_topic(&name))
                        .with_partitions(ps)
                })
                .collect(),
        )
    };
    let with_ops = req.include_authorized_operations;
    let groups = req
        .group_ids
        .into_iter()
        .map(|id| {
            let name = gid(&id);
            let d = CDescribed::default()
                .with_group_id(id)
                .with_authorized_operations(OPERATIONS_OMITTED);
            let d = match shared.groups.describe_consumer(&name) {
                ConsumerDescription::Group {
                    state,
                    group_epoch,
                    assignment_epoch,
                    assignor,
                    members,
                } => d
                    .with_group_state(sb(state))
                    .with_group_epoch(group_epoch)
                    .with_assignment_epoch(assignment_epoch)
                    .with_assignor_name(sb(assignor))
                    .with_members(
                        members
                            .into_iter()
                            .map(|(m, target)| {
                                Member::default()
                                    .with_member_id(sb(m.id.clone()))
                                    .with_instance_id(m.instance_id.clone().map(sb))
                                    .with_rack_id(m.rack_id.clone().map(sb))
                                    .with_member_epoch(m.member_epoch)
                                    .with_client_id(sb(m.client_id.clone()))
                                    .with_client_host(sb(m.client_host.clone()))
                                    .with_subscribed_topic_names(
                                        m.subscribed_names.iter().map(|n| wire_topic(n)).collect(),
                                    )
                                    .with_subscribed_topic_regex(m.subscribed_regex.clone().map(sb))
                                    .with_assignment(to_wire(&m.assigned))
                                    .with_target_assignment(to_wire(&target))
                            })
                            .collect(),
                    ),
                ConsumerDescription::NotConsumer => d
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(sb(format!("Group {name} is not a consumer group.")))),
                ConsumerDescription::Missing => d
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(sb(format!("Group {name} not found.")))),
            };
            if d.error_code == 0 {
                d.with_authorized_operations(authorized_operations(ResourceType::Group, with_ops))
            } else {
                d
            }
        })
        .collect();
    ResponseKind::ConsumerGroupDescribe(
        ConsumerGroupDescribeResponse::default().with_groups(groups),
    )
}
