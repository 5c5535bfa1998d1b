//! Classic group membership for `subscribe`: JoinGroup (with MEMBER_ID_REQUIRED), SyncGroup
//! (the leader runs the assignor), Heartbeat every `heartbeat_interval`, and a rejoin when
//! the coordinator says the group is rebalancing. Eager protocol: before rejoining, the
//! consumer commits (with auto-commit), calls `on_revoked` with everything it held and
//! gives it all up.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ConsumerProtocolSubscription, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
    SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use rafka_client::admin::{
    decode_assignment, decode_subscription, encode_assignment, encode_subscription,
};
use rafka_client::ClientError;

use crate::assignor::Assignor;
use crate::consumer::{PartState, Shared, Tp};
use crate::error::ConsumerError;

const JOIN_VERSIONS: (i16, i16) = (1, 7);
const SYNC_VERSIONS: (i16, i16) = (0, 5);
const HEARTBEAT_VERSIONS: (i16, i16) = (0, 4);
const LEAVE_VERSIONS: (i16, i16) = (3, 4);

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// The membership task: join, sync, heartbeat; rejoin on rebalance; until closed.
pub(crate) async fn run(shared: std::sync::Arc<Shared>) {
    let mut failures = 0u32;
    loop {
        if shared.lock().closed {
            return;
        }
        match join_and_sync(&shared).await {
            Ok(()) => {
                failures = 0;
                heartbeat_until_rebalance(&shared).await;
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
    if shared.cfg.enable_auto_commit {
        if let Err(e) = shared.commit_processed().await {
            tracing::debug!(error = %e, "commit before rebalance failed");
        }
    }
    let revoked: Vec<Tp> = {
        let mut st = shared.lock();
        let r: Vec<Tp> = st.assigned.keys().cloned().collect();
        st.assigned.clear();
        st.buffer.clear();
        st.processed.clear();
        st.delivered = None;
        st.assignment_epoch += 1;
        r
    };
    if !revoked.is_empty() {
        if let Some(cb) = &shared.cfg.on_revoked {
            cb(&revoked);
        }
    }
}

async fn join_and_sync(shared: &Shared) -> Result<(), ConsumerError> {
    let cfg = &shared.cfg;
    let group = cfg.group.clone().expect("subscribe has a group");
    let client = &shared.client;
    let coordinator = client.find_coordinator(&group).await?;
    let sub = ConsumerProtocolSubscription::default()
        .with_topics(cfg.topics.iter().map(|t| sb(t)).collect());
    let metadata = encode_subscription(&sub, 0)?;
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
                            .with_metadata(metadata.clone())
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
    let mut assignments = Vec::new();
    if join.leader.as_str() == member_id {
        let assignor = Assignor::from_name(&protocol).unwrap_or(Assignor::Range);
        let mut subs: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut topics = std::collections::BTreeSet::new();
        for m in &join.members {
            let s = decode_subscription(m.metadata.clone())?;
            let ts: Vec<String> = s.topics.iter().map(|t| t.to_string()).collect();
            topics.extend(ts.iter().cloned());
            subs.insert(m.member_id.to_string(), ts);
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
    Ok(())
}

async fn heartbeat_until_rebalance(shared: &Shared) {
    let group = shared.cfg.group.clone().expect("group");
    loop {
        tokio::time::sleep(shared.cfg.heartbeat_interval).await;
        let (generation, member_id, closed) = {
            let st = shared.lock();
            (st.generation, st.member_id.clone(), st.closed)
        };
        if closed {
            return;
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
                    return;
                }
                Some(e) => {
                    tracing::debug!(error = %e, "heartbeat: rejoining");
                    return;
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
