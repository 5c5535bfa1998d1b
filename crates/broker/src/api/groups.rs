//! Consumer group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups, OffsetDelete.
//! The state lives in `crate::group`; this file maps the wire to it and back.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
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
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, ConsumerProtocolSubscription,
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse, ResponseKind, SyncGroupRequest,
    SyncGroupResponse,
};
use kafka_protocol::protocol::Decodable;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

use rafka_core::Timestamp;

use super::{code, sb, wire_topic, Reply};
use crate::broker::Shared;
use crate::config::FsyncPolicy;
use crate::group::classic::{
    Answer, ClassicGroup, GroupState, JoinOutcome, JoinRequest, SyncOutcome, SyncRequest,
};
use crate::group::records::{OffsetValue, OffsetsRecord};
use crate::group::{Group, OFFSETS_TOPIC};
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
) -> ResponseKind {
    let (host, port) = shared.advertised();
    let node = BrokerId(shared.node_id);
    let error = (req.key_type != 0).then_some(ResponseError::CoordinatorNotAvailable);
    let message = error.map(|_| sb("Rafka has no transaction coordinator yet"));
    let mut r = FindCoordinatorResponse::default();
    if version >= 4 {
        r.coordinators = req
            .coordinator_keys
            .iter()
            .map(|k| {
                let c = Coordinator::default()
                    .with_key(k.clone())
                    .with_error_code(code(error))
                    .with_error_message(message.clone());
                if error.is_some() {
                    c.with_node_id(BrokerId(-1)).with_port(-1)
                } else {
                    c.with_node_id(node)
                        .with_host(sb(host.clone()))
                        .with_port(port)
                }
            })
            .collect();
    } else if error.is_some() {
        r = r
            .with_error_code(code(error))
            .with_error_message(message)
            .with_node_id(BrokerId(-1))
            .with_port(-1);
    } else {
        r = r.with_node_id(node).with_host(sb(host)).with_port(port);
    }
    ResponseKind::FindCoordinator(r)
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

fn persist_group(shared: &Shared, groups: &std::collections::HashMap<String, Group>, id: &str) {
    let Some(g) = groups.get(id) else { return };
    let record = g.membership_record(id, Timestamp::now().0);
    if let Err(e) = shared.groups.persist(groups, id, vec![record]) {
        tracing::warn!(group = id, error = %e, "could not persist group metadata");
    }
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
    let settings = shared.groups.settings.groups;
    let answer = shared.groups.with_groups(|groups| {
        let now_ms = Timestamp::now().0;
        let g = groups
            .entry(group.clone())
            .or_insert_with(|| Group::new(&group, now_ms));
        if g.classic.state() == GroupState::Dead {
            g.classic = ClassicGroup::new(&group, now_ms);
        }
        match &g.consumer {
            Some(c) if !c.is_empty() => {
                return Answer::Now(JoinOutcome::error_for(
                    ResponseError::InconsistentGroupProtocol,
                    &jr.member_id,
                ));
            }
            Some(_) => g.consumer = None, // an empty consumer group becomes classic again
            None => {}
        }
        let stable_before = g.classic.state() == GroupState::Stable;
        let a = g.classic.join(jr, &settings, Instant::now());
        // A static member that rejoined a stable group changed its member id: persist it.
        if stable_before
            && g.classic.state() == GroupState::Stable
            && matches!(a, Answer::Now(ref o) if o.error.is_none())
        {
            persist_group(shared, groups, &group);
        }
        a
    });
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
    let answer = shared.groups.with_groups(|groups| {
        let Some(g) = groups.get_mut(&group) else {
            return Answer::Now(SyncOutcome::error_for(ResponseError::UnknownMemberId));
        };
        let (a, became_stable) = g.classic.sync(
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
            Instant::now(),
        );
        if became_stable {
            persist_group(shared, groups, &group);
        }
        a
    });
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
        shared
            .groups
            .with_groups(|groups| match groups.get_mut(&group) {
                None => Some(ResponseError::UnknownMemberId),
                Some(g) => g.classic.heartbeat(
                    &req.member_id,
                    req.group_instance_id.as_deref(),
                    req.generation_id,
                    Instant::now(),
                ),
            })
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
        shared.groups.with_groups(|groups| {
            let Some(g) = groups.get_mut(&group) else {
                return Err(ResponseError::UnknownMemberId);
            };
            let now = Instant::now();
            let out: Vec<_> = leaving
                .iter()
                .map(|(m, i)| g.classic.leave(m, i.as_deref(), now))
                .collect();
            if g.classic.is_empty() {
                g.classic.empty_since_ms = Timestamp::now().0;
            }
            if out.iter().any(Option::is_none) {
                persist_group(shared, groups, &group);
            }
            Ok(out)
        })
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
        match tokio::task::spawn_blocking(move || p.flush()).await {
            Ok(Ok(())) => response,
            _ => on_error(response),
        }
    }))
}

/// OffsetCommit v2–9.
pub fn offset_commit(shared: &Arc<Shared>, req: OffsetCommitRequest) -> Reply {
    let group = gid(&req.group_id);
    let now_ms = Timestamp::now().0;
    let max_meta = shared.groups.settings.offset_metadata_max_bytes;
    let check = if group.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else {
        Ok(())
    };
    let (results, partition) = shared.groups.with_groups(|groups| {
        let group_error = check.err().or_else(|| {
            let g = groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group, now_ms));
            if g.classic.state() == GroupState::Dead {
                g.classic = ClassicGroup::new(&group, now_ms);
            }
            match &g.consumer {
                // KIP-848 members commit with their member epoch.
                Some(c) if !c.is_empty() => {
                    if req.generation_id_or_member_epoch < 0 && req.member_id.is_empty() {
                        Some(ResponseError::UnknownMemberId)
                    } else {
                        c.check_commit(&req.member_id, req.generation_id_or_member_epoch)
                            .err()
                    }
                }
                _ => g
                    .classic
                    .check_commit(
                        &req.member_id,
                        req.group_instance_id.as_deref(),
                        req.generation_id_or_member_epoch,
                        Instant::now(),
                    )
                    .err(),
            }
        });
        let mut writes = Vec::new();
        let results: Vec<Vec<(i32, Option<ResponseError>)>> = req
            .topics
            .iter()
            .map(|t| {
                let topic = shared.cluster.topic(&t.name);
                t.partitions
                    .iter()
                    .map(|p| {
                        let e = if let Some(e) = group_error {
                            Some(e)
                        } else if topic
                            .as_ref()
                            .is_none_or(|tp| tp.partition(p.partition_index).is_none())
                        {
                            Some(ResponseError::UnknownTopicOrPartition)
                        } else if p
                            .committed_metadata
                            .as_ref()
                            .is_some_and(|m| m.len() > max_meta)
                        {
                            Some(ResponseError::OffsetMetadataTooLarge)
                        } else {
                            let v = OffsetValue {
                                offset: p.committed_offset,
                                leader_epoch: p.committed_leader_epoch,
                                metadata: p
                                    .committed_metadata
                                    .as_ref()
                                    .map(|m| m.to_string())
                                    .unwrap_or_default(),
                                commit_timestamp: now_ms,
                            };
                            writes.push(((t.name.to_string(), p.partition_index), v));
                            None
                        };
                        (p.partition_index, e)
                    })
                    .collect()
            })
            .collect();
        if writes.is_empty() {
            return (results, Ok(None));
        }
        let records = writes
            .iter()
            .map(|((topic, partition), v)| OffsetsRecord::Offset {
                group: group.clone(),
                topic: topic.clone(),
                partition: *partition,
                value: Some(v.clone()),
            })
            .collect();
        match shared.groups.persist(groups, &group, records) {
            Ok(p) => {
                let g = groups.get_mut(&group).expect("created above");
                g.offsets.extend(writes);
                (results, Ok(Some(p)))
            }
            Err(e) => {
                tracing::error!(group = %group, error = %e, "offset commit not persisted");
                (results, Err(()))
            }
        }
    });
    let failed = partition.is_err();
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
    let ok = build(failed);
    let failed_response = build(true);
    flush_then(shared, partition.ok().flatten(), ok, move |_| {
        failed_response
    })
}

/// OffsetFetch v1–9 (several groups per request from v8).
pub fn offset_fetch(shared: &Arc<Shared>, req: OffsetFetchRequest, version: i16) -> ResponseKind {
    type Wanted = Option<Vec<(String, Vec<i32>)>>;
    type Found = Vec<(String, Vec<(i32, Option<OffsetValue>)>)>;
    let lookup = |group: &str, wanted: Wanted| -> Found {
        shared.groups.with_groups(|groups| {
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
                    let mut by_topic: BTreeMap<String, Vec<(i32, Option<OffsetValue>)>> =
                        BTreeMap::new();
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
        })
    };
    if version < 8 {
        let wanted = req.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (t.name.to_string(), t.partition_indexes))
                .collect()
        });
        let topics = lookup(&gid(&req.group_id), wanted)
            .into_iter()
            .map(|(t, ps)| {
                OffsetFetchResponseTopic::default()
                    .with_name(wire_topic(&t))
                    .with_partitions(
                        ps.into_iter()
                            .map(|(p, v)| {
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
            let topics = lookup(&gid(&g.group_id), wanted)
                .into_iter()
                .map(|(t, ps)| {
                    OffsetFetchResponseTopics::default()
                        .with_name(wire_topic(&t))
                        .with_partitions(
                            ps.into_iter()
                                .map(|(p, v)| {
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
    let groups = req
        .groups
        .into_iter()
        .map(|id| {
            let name = gid(&id);
            let d = DescribedGroup::default()
                .with_group_id(id)
                .with_authorized_operations(i32::MIN);
            shared.groups.with_groups(|groups| match groups.get(&name) {
                None => d.with_group_state(sb("Dead")),
                // DescribeGroups describes classic groups; ConsumerGroupDescribe the others.
                Some(g) if g.is_consumer_type() => d
                    .with_group_state(sb("Dead"))
                    .with_error_code(ResponseError::GroupIdNotFound.code()),
                Some(g) => {
                    let c = &g.classic;
                    d.with_group_state(sb(c.state().name()))
                        .with_protocol_type(sb(c.protocol_type().unwrap_or_default()))
                        .with_protocol_data(sb(c.protocol().unwrap_or_default()))
                        .with_members(
                            c.describe_members()
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
                        )
                }
            })
        })
        .collect();
    ResponseKind::DescribeGroups(DescribeGroupsResponse::default().with_groups(groups))
}

/// ListGroups v0–5 (state filter from v4, type filter from v5).
pub fn list_groups(shared: &Arc<Shared>, req: ListGroupsRequest, version: i16) -> ResponseKind {
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_lowercase()).collect();
    let mut listed: Vec<ListedGroup> = shared.groups.with_groups(|groups| {
        groups
            .iter()
            .filter(|(_, g)| g.classic.state() != GroupState::Dead)
            .map(|(id, g)| {
                let (kind, state, protocol_type) = match &g.consumer {
                    Some(c) if g.is_consumer_type() => ("consumer", c.state_name(), "consumer"),
                    _ => (
                        "classic",
                        g.classic.state().name(),
                        g.classic.protocol_type().unwrap_or_default(),
                    ),
                };
                (id, kind, state, protocol_type)
            })
            .filter(|(_, _, state, _)| states.is_empty() || states.contains(&state.to_lowercase()))
            .filter(|(_, kind, _, _)| types.is_empty() || types.contains(&kind.to_string()))
            .map(|(id, kind, state, protocol_type)| {
                let mut l = ListedGroup::default()
                    .with_group_id(GroupId(sb(id.clone())))
                    .with_protocol_type(sb(protocol_type));
                if version >= 4 {
                    l.group_state = sb(state);
                }
                if version >= 5 {
                    l.group_type = sb(kind);
                }
                l
            })
            .collect()
    });
    listed.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    ResponseKind::ListGroups(ListGroupsResponse::default().with_groups(listed))
}

/// DeleteGroups v0–2: only empty groups; their offsets go too.
pub fn delete_groups(shared: &Arc<Shared>, req: DeleteGroupsRequest) -> ResponseKind {
    let results = req
        .groups_names
        .into_iter()
        .map(|id| {
            let name = gid(&id);
            let error = shared.groups.with_groups(|groups| {
                let Some(g) = groups.get_mut(&name) else {
                    return Some(ResponseError::GroupIdNotFound);
                };
                if g.classic.state() == GroupState::Dead {
                    return Some(ResponseError::GroupIdNotFound);
                }
                if !g.is_empty() {
                    return Some(ResponseError::NonEmptyGroup);
                }
                let mut records: Vec<OffsetsRecord> = g
                    .offsets
                    .keys()
                    .map(|(t, p)| OffsetsRecord::Offset {
                        group: name.clone(),
                        topic: t.clone(),
                        partition: *p,
                        value: None,
                    })
                    .collect();
                records.push(OffsetsRecord::Group {
                    group: name.clone(),
                    value: None,
                });
                g.classic.mark_dead();
                g.offsets.clear();
                let r = shared.groups.persist(groups, &name, records);
                groups.remove(&name);
                r.err().map(|e| {
                    tracing::error!(group = %name, error = %e, "group deletion not persisted");
                    ResponseError::KafkaStorageError
                })
            });
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code(error))
        })
        .collect();
    ResponseKind::DeleteGroups(DeleteGroupsResponse::default().with_results(results))
}

/// Per-partition outcomes of one topic.
type PartitionErrors = Vec<(i32, Option<ResponseError>)>;

/// Topics the group's consumer members subscribe to (from their subscription metadata).
fn subscribed_topics(g: &Group) -> Vec<String> {
    if let Some(c) = g.consumer.as_ref().filter(|_| g.is_consumer_type()) {
        return c
            .describe()
            .into_iter()
            .flat_map(|(m, _)| m.subscribed_names)
            .collect();
    }
    if g.classic.protocol_type() != Some("consumer") {
        return Vec::new();
    }
    let mut out = Vec::new();
    for meta in g.classic.subscriptions() {
        let mut buf: Bytes = meta;
        if buf.len() < 2 {
            continue;
        }
        let version = i16::from_be_bytes([buf[0], buf[1]]);
        let _ = bytes::Buf::get_i16(&mut buf);
        if let Ok(s) = ConsumerProtocolSubscription::decode(&mut buf, version.clamp(0, 3)) {
            out.extend(s.topics.iter().map(|t| t.to_string()));
        }
    }
    out
}

/// OffsetDelete v0: refuses topics an active member subscribes to.
pub fn offset_delete(shared: &Arc<Shared>, req: OffsetDeleteRequest) -> ResponseKind {
    let name = gid(&req.group_id);
    let outcome = shared.groups.with_groups(|groups| {
        let Some(g) = groups.get_mut(&name) else {
            return Err(ResponseError::GroupIdNotFound);
        };
        let subscribed = if g.is_empty() {
            Vec::new()
        } else {
            subscribed_topics(g)
        };
        let mut records = Vec::new();
        let topics: Vec<(kafka_protocol::messages::TopicName, PartitionErrors)> = req
            .topics
            .iter()
            .map(|t| {
                let topic = t.name.to_string();
                let parts = t
                    .partitions
                    .iter()
                    .map(|p| {
                        if subscribed.contains(&topic) {
                            return (
                                p.partition_index,
                                Some(ResponseError::GroupSubscribedToTopic),
                            );
                        }
                        if shared.cluster.topic(&topic).is_none() {
                            return (
                                p.partition_index,
                                Some(ResponseError::UnknownTopicOrPartition),
                            );
                        }
                        if g.offsets
                            .remove(&(topic.clone(), p.partition_index))
                            .is_some()
                        {
                            records.push(OffsetsRecord::Offset {
                                group: name.clone(),
                                topic: topic.clone(),
                                partition: p.partition_index,
                                value: None,
                            });
                        }
                        (p.partition_index, None)
                    })
                    .collect();
                (t.name.clone(), parts)
            })
            .collect();
        if let Err(e) = shared.groups.persist(groups, &name, records) {
            tracing::error!(group = %name, error = %e, "offset deletion not persisted");
            return Err(ResponseError::KafkaStorageError);
        }
        Ok(topics)
    });
    let r = match outcome {
        Err(e) => OffsetDeleteResponse::default().with_error_code(e.code()),
        Ok(topics) => OffsetDeleteResponse::default().with_topics(
            topics
                .into_iter()
                .map(|(n, ps)| {
                    OffsetDeleteResponseTopic::default()
                        .with_name(n)
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

/// Whether a topic is internal (clients may read it but not write or delete it).
pub fn is_internal(topic: &str) -> bool {
    topic == OFFSETS_TOPIC
}

/// The cluster's topics as the consumer-group assignors see them.
pub(crate) struct ClusterView<'a>(pub &'a crate::state::Cluster);

impl crate::group::consumer::TopicView for ClusterView<'_> {
    fn partitions(&self, topic: &str) -> Option<i32> {
        if is_internal(topic) {
            return None;
        }
        self.0.topic(topic).map(|t| t.partitions.len() as i32)
    }
    fn names(&self) -> Vec<String> {
        self.0
            .topics()
            .iter()
            .map(|t| t.name.to_string())
            .filter(|n| !is_internal(n))
            .collect()
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
        .filter_map(|(t, ps)| shared.cluster.topic(&t).map(|topic| (topic.id, t, ps)))
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
            .filter_map(|tp| {
                shared
                    .cluster
                    .topic_by_id(tp.topic_id)
                    .map(|t| (t.name.to_string(), tp.partitions.clone()))
            })
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
    let view = ClusterView(&shared.cluster);
    let settings = &shared.groups.settings.consumer;
    let result = shared.groups.with_groups(|groups| {
        let now_ms = Timestamp::now().0;
        let g = groups
            .entry(group.clone())
            .or_insert_with(|| Group::new(&group, now_ms));
        if !g.classic.is_empty() {
            return Err((
                ResponseError::GroupIdNotFound,
                format!("Group {group} is a classic group with members"),
            ));
        }
        let c = g.consumer.get_or_insert_with(|| {
            crate::group::consumer::ConsumerGroup::new(&group, &settings.default_assignor)
        });
        let before = c.version;
        let was_empty = c.is_empty();
        let answer = c.heartbeat(hb, &view, settings, Instant::now())?;
        let changed = c.version != before;
        if c.is_empty() && !was_empty {
            g.classic.empty_since_ms = now_ms;
        }
        if changed {
            persist_group(shared, groups, &group);
        }
        Ok(answer)
    });
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
    let groups = req
        .group_ids
        .into_iter()
        .map(|id| {
            let name = gid(&id);
            let d = CDescribed::default()
                .with_group_id(id)
                .with_authorized_operations(i32::MIN);
            shared.groups.with_groups(|groups| match groups.get(&name) {
                Some(g) if g.is_consumer_type() => {
                    let c = g.consumer.as_ref().expect("consumer type");
                    d.with_group_state(sb(c.state_name()))
                        .with_group_epoch(c.group_epoch())
                        .with_assignment_epoch(c.assignment_epoch())
                        .with_assignor_name(sb(c.assignor()))
                        .with_members(
                            c.describe()
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
                                            m.subscribed_names
                                                .iter()
                                                .map(|n| wire_topic(n))
                                                .collect(),
                                        )
                                        .with_subscribed_topic_regex(
                                            m.subscribed_regex.clone().map(sb),
                                        )
                                        .with_assignment(to_wire(&m.assigned))
                                        .with_target_assignment(to_wire(&target))
                                })
                                .collect(),
                        )
                }
                Some(g) if !g.is_empty() => d
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(sb(format!("Group {name} is not a consumer group.")))),
                _ => d
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(sb(format!("Group {name} not found.")))),
            })
        })
        .collect();
    ResponseKind::ConsumerGroupDescribe(
        ConsumerGroupDescribeResponse::default().with_groups(groups),
    )
}
