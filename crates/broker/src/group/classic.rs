//! The classic consumer group protocol (JoinGroup / SyncGroup / Heartbeat / LeaveGroup):
//! Kafka's state machine Empty → PreparingRebalance → CompletingRebalance → Stable (and
//! Dead), with client-side assignment by the leader member.
//!
//! Everything here runs under the coordinator's lock and never awaits: a request that must
//! wait for the rebalance parks a `oneshot::Sender` on its member, completed by a later
//! request or by [`ClassicGroup::tick`].

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

use super::records::{GroupValue, MemberValue};

/// Group states, as Kafka names them in DescribeGroups and ListGroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members (offsets may remain).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Assignment distributed.
    Stable,
    /// Removed.
    Dead,
}

impl GroupState {
    /// Kafka's name for the state.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// What a JoinGroup answers.
#[derive(Debug, Clone)]
pub struct JoinOutcome {
    /// Error (None on success).
    pub error: Option<ResponseError>,
    /// Generation.
    pub generation: i32,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol: Option<String>,
    /// Leader member id.
    pub leader: String,
    /// The member's id.
    pub member_id: String,
    /// For the leader: every member with its metadata for the chosen protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// KIP-814: the static leader rejoined a stable group and must not reassign.
    pub skip_assignment: bool,
}

impl JoinOutcome {
    /// An error answer.
    pub fn error_for(e: ResponseError, member_id: &str) -> JoinOutcome {
        JoinOutcome {
            error: Some(e),
            generation: -1,
            protocol_type: None,
            protocol: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

/// What a SyncGroup answers.
#[derive(Debug, Clone)]
pub struct SyncOutcome {
    /// Error (None on success).
    pub error: Option<ResponseError>,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol: Option<String>,
    /// The member's assignment.
    pub assignment: Bytes,
}

impl SyncOutcome {
    /// An error answer.
    pub fn error_for(e: ResponseError) -> SyncOutcome {
        SyncOutcome {
            error: Some(e),
            protocol_type: None,
            protocol: None,
            assignment: Bytes::new(),
        }
    }
}

/// A request answered now or later.
pub enum Answer<T> {
    /// Ready.
    Now(T),
    /// Completed when the rebalance progresses.
    Wait(oneshot::Receiver<T>),
}

/// A SyncGroup, decoded.
#[derive(Debug, Clone)]
pub struct SyncRequest<'a> {
    /// Member id.
    pub member_id: &'a str,
    /// Static membership id.
    pub instance_id: Option<&'a str>,
    /// Generation the member believes in.
    pub generation: i32,
    /// Protocol type (v5+).
    pub protocol_type: Option<&'a str>,
    /// Protocol name (v5+).
    pub protocol: Option<&'a str>,
    /// The leader's assignments by member id.
    pub assignments: Vec<(String, Bytes)>,
}

/// A JoinGroup, decoded.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Member id ("" for a new member).
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// Client id from the request header.
    pub client_id: String,
    /// Peer host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Protocol type.
    pub protocol_type: String,
    /// (name, metadata) in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// Request version (MEMBER_ID_REQUIRED from v4).
    pub version: i16,
}

/// Timeouts and limits that govern groups (from the broker config).
#[derive(Debug, Clone, Copy)]
pub struct GroupSettings {
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: u64,
}

#[derive(Debug)]
struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    join_tx: Option<oneshot::Sender<JoinOutcome>>,
    sync_tx: Option<oneshot::Sender<SyncOutcome>>,
    last_seen: Instant,
    /// Order of first join; the oldest member becomes leader.
    joined_seq: u64,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// One classic group's membership state (offsets live in the coordinator).
#[derive(Debug)]
pub struct ClassicGroup {
    /// Group id.
    pub id: String,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until they rejoin or expire.
    pending: HashMap<String, Instant>,
    statics: HashMap<String, String>,
    rebalance_deadline: Option<Instant>,
    /// True while the initial rebalance delay (of a group that was empty) runs.
    initial_delay: bool,
    next_seq: u64,
    /// Wall-clock ms when the group last became empty (offsets retention counts from it).
    pub empty_since_ms: i64,
}

fn new_member_id(client_id: &str) -> String {
    format!(
        "{}-{}",
        if client_id.is_empty() {
            "member"
        } else {
            client_id
        },
        uuid::Uuid::new_v4()
    )
}

impl ClassicGroup {
    /// A new, empty group.
    pub fn new(id: &str, now_ms: i64) -> ClassicGroup {
        ClassicGroup {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            statics: HashMap::new(),
            rebalance_deadline: None,
            initial_delay: false,
            next_seq: 0,
            empty_since_ms: now_ms,
        }
    }

    /// Rebuilds a group from its persisted value: members come back as they were, with a
    /// fresh session timer, in Stable state (Empty without members).
    pub fn restore(id: &str, v: &GroupValue, now: Instant) -> ClassicGroup {
        let mut g = ClassicGroup::new(id, v.state_timestamp);
        g.generation = v.generation;
        g.protocol_type = Some(v.protocol_type.clone()).filter(|p| !p.is_empty());
        g.protocol = v.protocol.clone();
        g.leader = v.leader.clone();
        for m in &v.members {
            g.next_seq += 1;
            if let Some(i) = &m.group_instance_id {
                g.statics.insert(i.clone(), m.member_id.clone());
            }
            g.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id.clone(),
                    instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout: Duration::from_millis(m.session_timeout_ms.max(0) as u64),
                    rebalance_timeout: Duration::from_millis(m.rebalance_timeout_ms.max(0) as u64),
                    protocols: vec![(
                        v.protocol.clone().unwrap_or_default(),
                        m.subscription.clone(),
                    )],
                    assignment: m.assignment.clone(),
                    join_tx: None,
                    sync_tx: None,
                    last_seen: now,
                    joined_seq: g.next_seq,
                },
            );
        }
        g.state = if g.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        g
    }

    /// The persisted form.
    pub fn to_value(&self, now_ms: i64) -> GroupValue {
        let protocol = self.protocol.clone().unwrap_or_default();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp: if self.members.is_empty() {
                self.empty_since_ms
            } else {
                now_ms
            },
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis() as i32,
                    session_timeout_ms: m.session_timeout.as_millis() as i32,
                    subscription: m.metadata_for(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Current state.
    pub fn state(&self) -> GroupState {
        self.state
    }

    /// Current generation.
    #[cfg(test)]
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// Protocol type, if any member ever joined.
    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    /// The chosen protocol.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// Whether the group has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Members for DescribeGroups: (id, instance id, client id, host, metadata, assignment).
    pub fn describe_members(&self) -> Vec<(String, Option<String>, String, String, Bytes, Bytes)> {
        let protocol = self.protocol.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| {
                (
                    m.id.clone(),
                    m.instance_id.clone(),
                    m.client_id.clone(),
                    m.client_host.clone(),
                    m.metadata_for(&protocol),
                    m.assignment.clone(),
                )
            })
            .collect()
    }

    /// Subscription metadata of every member for the chosen protocol.
    pub fn subscriptions(&self) -> Vec<Bytes> {
        let protocol = self.protocol.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| m.metadata_for(&protocol))
            .collect()
    }

    /// Checks that `member_id` / `instance_id` name a current member.
    fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        if let Some(i) = instance_id {
            if let Some(owner) = self.statics.get(i) {
                if owner != member_id {
                    return Err(ResponseError::FencedInstanceId);
                }
            }
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(ResponseError::UnknownMemberId)
        }
    }

    /// Validates a commit's member and generation (classic rules). `Ok(())` means store.
    pub fn check_commit(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if generation < 0 && self.members.is_empty() {
            return Ok(()); // a standalone consumer or an admin tool
        }
        // Kafka's order: who you are, then which generation, then the group's state.
        if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
            self.check_member(member_id, instance_id)?;
            if generation != self.generation {
                return Err(ResponseError::IllegalGeneration);
            }
        } else {
            // No member id and no generation: only an empty group takes such commits.
            return Err(ResponseError::UnknownMemberId);
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_seen = now;
        }
        Ok(())
    }

    /// The protocol every member supports, by the members' votes (first preference wins).
    fn select_protocol(&self) -> Option<String> {
        let mut candidates: Option<Vec<String>> = None;
        for m in self.members.values() {
            let names: Vec<String> = m.protocols.iter().map(|(n, _)| n.clone()).collect();
            candidates = Some(match candidates {
                None => names,
                Some(c) => c.into_iter().filter(|n| names.contains(n)).collect(),
            });
        }
        let candidates = candidates?;
        let mut votes: Vec<(usize, &String)> = candidates
            .iter()
            .map(|c| {
                let n = self
                    .members
                    .values()
                    .filter(|m| {
                        m.protocols
                            .iter()
                            .find(|(n, _)| candidates.contains(n))
                            .map(|(n, _)| n)
                            == Some(c)
                    })
                    .count();
                (n, c)
            })
            .collect();
        // Most votes; ties go to the earlier candidate (the first member's preference order).
        votes.sort_by_key(|v| std::cmp::Reverse(v.0));
        votes.first().map(|(_, c)| (*c).clone())
    }

    fn supports_common_protocol(
        &self,
        protocols: &[(String, Bytes)],
        except: Option<&str>,
    ) -> bool {
        self.members
            .values()
            .filter(|m| Some(m.id.as_str()) != except)
            .all(|m| {
                m.protocols
                    .iter()
                    .any(|(n, _)| protocols.iter().any(|(p, _)| p == n))
            })
    }

    /// JoinGroup.
    pub fn join(
        &mut self,
        req: JoinRequest,
        settings: &GroupSettings,
        now: Instant,
    ) -> Answer<JoinOutcome> {
        let now_answer = |o: JoinOutcome| Answer::Now(o);
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return now_answer(JoinOutcome::error_for(
                ResponseError::InconsistentGroupProtocol,
                &req.member_id,
            ));
        }
        if req.session_timeout_ms < settings.min_session_timeout_ms
            || req.session_timeout_ms > settings.max_session_timeout_ms
        {
            return now_answer(JoinOutcome::error_for(
                ResponseError::InvalidSessionTimeout,
                &req.member_id,
            ));
        }
        if self.state == GroupState::Dead {
            return now_answer(JoinOutcome::error_for(
                ResponseError::CoordinatorNotAvailable,
                &req.member_id,
            ));
        }
        let existing = if req.member_id.is_empty() {
            None
        } else {
            Some(req.member_id.as_str())
        };
        if !self.members.is_empty()
            && (self.protocol_type.as_deref() != Some(req.protocol_type.as_str())
                || !self.supports_common_protocol(&req.protocols, existing))
        {
            return now_answer(JoinOutcome::error_for(
                ResponseError::InconsistentGroupProtocol,
                &req.member_id,
            ));
        }
        let session_timeout = Duration::from_millis(req.session_timeout_ms as u64);
        let rebalance_timeout =
            Duration::from_millis(req.rebalance_timeout_ms.max(req.session_timeout_ms) as u64);

        if req.member_id.is_empty() {
            if let Some(iid) = &req.group_instance_id {
                if let Some(old_id) = self.statics.get(iid).cloned() {
                    return self.rejoin_static(old_id, req, now);
                }
            } else if req.version >= 4 {
                let id = new_member_id(&req.client_id);
                self.pending.insert(id.clone(), now + session_timeout);
                return now_answer(JoinOutcome::error_for(ResponseError::MemberIdRequired, &id));
            }
            let id = new_member_id(&req.client_id);
            self.add_member(id.clone(), req, session_timeout, rebalance_timeout, now);
            return self.park_join_and_rebalance(&id, now, settings);
        }

        if self.pending.remove(&req.member_id).is_some() {
            let id = req.member_id.clone();
            self.add_member(id.clone(), req, session_timeout, rebalance_timeout, now);
            return self.park_join_and_rebalance(&id, now, settings);
        }
        if let Err(e) = self.check_member(&req.member_id, req.group_instance_id.as_deref()) {
            return now_answer(JoinOutcome::error_for(e, &req.member_id));
        }
        let id = req.member_id.clone();
        let is_leader = self.leader.as_deref() == Some(id.as_str());
        let m = self.members.get_mut(&id).expect("checked above");
        let changed = m.protocols != req.protocols;
        m.protocols = req.protocols;
        m.session_timeout = session_timeout;
        m.rebalance_timeout = rebalance_timeout;
        m.client_id = req.client_id;
        m.last_seen = now;
        match self.state {
            GroupState::PreparingRebalance => self.park_join_and_rebalance(&id, now, settings),
            GroupState::CompletingRebalance if !changed => now_answer(self.join_outcome_for(&id)),
            GroupState::Stable if !changed && !is_leader => now_answer(self.join_outcome_for(&id)),
            _ => self.park_join_and_rebalance(&id, now, settings),
        }
    }

    /// A static member rejoining with an empty member id: it gets a new id, the old one
    /// is fenced, and a stable group keeps its assignment without a rebalance.
    fn rejoin_static(
        &mut self,
        old_id: String,
        req: JoinRequest,
        now: Instant,
    ) -> Answer<JoinOutcome> {
        let Some(mut m) = self.members.remove(&old_id) else {
            self.statics
                .remove(req.group_instance_id.as_deref().unwrap_or_default());
            return Answer::Now(JoinOutcome::error_for(ResponseError::UnknownMemberId, ""));
        };
        if let Some(tx) = m.join_tx.take() {
            let _ = tx.send(JoinOutcome::error_for(
                ResponseError::FencedInstanceId,
                &old_id,
            ));
        }
        if let Some(tx) = m.sync_tx.take() {
            let _ = tx.send(SyncOutcome::error_for(ResponseError::FencedInstanceId));
        }
        let new_id = new_member_id(&req.client_id);
        let changed = m.protocols != req.protocols;
        m.id = new_id.clone();
        m.protocols = req.protocols;
        m.client_id = req.client_id;
        m.client_host = req.client_host;
        m.last_seen = now;
        self.members.insert(new_id.clone(), m);
        self.statics.insert(
            req.group_instance_id.clone().unwrap_or_default(),
            new_id.clone(),
        );
        let was_leader = self.leader.as_deref() == Some(old_id.as_str());
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        match self.state {
            GroupState::Stable if !changed => {
                let mut o = self.join_outcome_for(&new_id);
                if was_leader {
                    // The leader must not compute a new assignment (KIP-814); older clients
                    // that cannot be told so get no member list and just sync.
                    o.skip_assignment = req.version >= 9;
                    if !o.skip_assignment {
                        o.members.clear();
                    }
                }
                Answer::Now(o)
            }
            _ => {
                let (tx, rx) = oneshot::channel();
                self.members.get_mut(&new_id).expect("inserted").join_tx = Some(tx);
                self.start_rebalance(now, None);
                self.maybe_complete_join(now);
                Answer::Wait(rx)
            }
        }
    }

    fn add_member(
        &mut self,
        id: String,
        req: JoinRequest,
        session_timeout: Duration,
        rebalance_timeout: Duration,
        now: Instant,
    ) {
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(i) = &req.group_instance_id {
            self.statics.insert(i.clone(), id.clone());
        }
        self.next_seq += 1;
        self.members.insert(
            id.clone(),
            Member {
                id,
                instance_id: req.group_instance_id,
                client_id: req.client_id,
                client_host: req.client_host,
                session_timeout,
                rebalance_timeout,
                protocols: req.protocols,
                assignment: Bytes::new(),
                join_tx: None,
                sync_tx: None,
                last_seen: now,
                joined_seq: self.next_seq,
            },
        );
    }

    fn park_join_and_rebalance(
        &mut self,
        id: &str,
        now: Instant,
        settings: &GroupSettings,
    ) -> Answer<JoinOutcome> {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(id) {
            // A duplicate join replaces the earlier one, which then answers UNKNOWN_MEMBER_ID.
            m.join_tx = Some(tx);
        }
        self.start_rebalance(now, Some(settings));
        self.maybe_complete_join(now);
        Answer::Wait(rx)
    }

    fn start_rebalance(&mut self, now: Instant, settings: Option<&GroupSettings>) {
        let max_rebalance = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::from_secs(60));
        match self.state {
            GroupState::PreparingRebalance => {
                if self.initial_delay {
                    // Each join during the initial delay extends it, within the rebalance timeout.
                    let delay =
                        Duration::from_millis(settings.map_or(0, |s| s.initial_rebalance_delay_ms));
                    let cap = now + max_rebalance;
                    self.rebalance_deadline = Some((now + delay).min(cap));
                }
            }
            GroupState::Empty => {
                let delay = settings.map_or(0, |s| s.initial_rebalance_delay_ms);
                self.state = GroupState::PreparingRebalance;
                self.initial_delay = delay > 0;
                self.rebalance_deadline =
                    Some(now + Duration::from_millis(delay).min(max_rebalance));
            }
            _ => {
                for m in self.members.values_mut() {
                    if let Some(tx) = m.sync_tx.take() {
                        let _ = tx.send(SyncOutcome::error_for(ResponseError::RebalanceInProgress));
                    }
                }
                self.state = GroupState::PreparingRebalance;
                self.initial_delay = false;
                self.rebalance_deadline = Some(now + max_rebalance);
            }
        }
    }

    fn maybe_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined = self.members.values().all(|m| m.join_tx.is_some());
        let expired = self.rebalance_deadline.is_some_and(|d| now >= d);
        if (all_joined && !self.initial_delay) || expired {
            self.complete_join();
        }
    }

    /// Ends PreparingRebalance: members that did not rejoin are removed, the generation
    /// moves on, the protocol and leader are chosen and every joined member is answered.
    fn complete_join(&mut self) {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_tx.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.generation += 1;
        self.initial_delay = false;
        self.rebalance_deadline = None;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        self.protocol = self.select_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self
                .members
                .values()
                .min_by_key(|m| m.joined_seq)
                .map(|m| m.id.clone());
        }
        self.state = GroupState::CompletingRebalance;
        tracing::info!(
            group = %self.id,
            generation = self.generation,
            members = self.members.len(),
            protocol = self.protocol.as_deref().unwrap_or(""),
            "rebalance: joined, waiting for the leader's assignment"
        );
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let outcome = self.join_outcome_for(&id);
            let m = self.members.get_mut(&id).expect("listed");
            m.assignment = Bytes::new();
            if let Some(tx) = m.join_tx.take() {
                let _ = tx.send(outcome);
            }
        }
    }

    fn join_outcome_for(&self, id: &str) -> JoinOutcome {
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == id {
            let mut ms: Vec<&Member> = self.members.values().collect();
            ms.sort_by_key(|m| m.joined_seq);
            ms.into_iter()
                .map(|m| {
                    (
                        m.id.clone(),
                        m.instance_id.clone(),
                        m.metadata_for(&protocol),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinOutcome {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader,
            member_id: id.to_string(),
            members,
            skip_assignment: false,
        }
    }

    fn remove_member(&mut self, id: &str) {
        if let Some(mut m) = self.members.remove(id) {
            if let Some(i) = &m.instance_id {
                if self.statics.get(i).map(String::as_str) == Some(id) {
                    self.statics.remove(i);
                }
            }
            if let Some(tx) = m.join_tx.take() {
                let _ = tx.send(JoinOutcome::error_for(ResponseError::UnknownMemberId, id));
            }
            if let Some(tx) = m.sync_tx.take() {
                let _ = tx.send(SyncOutcome::error_for(ResponseError::UnknownMemberId));
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    /// SyncGroup. Returns the answer and whether the group became Stable (persist it).
    pub fn sync(&mut self, req: SyncRequest<'_>, now: Instant) -> (Answer<SyncOutcome>, bool) {
        let SyncRequest {
            member_id,
            instance_id,
            generation,
            protocol_type,
            protocol,
            assignments,
        } = req;
        if let Err(e) = self.check_member(member_id, instance_id) {
            return (Answer::Now(SyncOutcome::error_for(e)), false);
        }
        if generation != self.generation {
            return (
                Answer::Now(SyncOutcome::error_for(ResponseError::IllegalGeneration)),
                false,
            );
        }
        if protocol_type.is_some_and(|p| Some(p) != self.protocol_type.as_deref())
            || protocol.is_some_and(|p| Some(p) != self.protocol.as_deref())
        {
            return (
                Answer::Now(SyncOutcome::error_for(
                    ResponseError::InconsistentGroupProtocol,
                )),
                false,
            );
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_seen = now;
        }
        match self.state {
            GroupState::PreparingRebalance => (
                Answer::Now(SyncOutcome::error_for(ResponseError::RebalanceInProgress)),
                false,
            ),
            GroupState::Stable => (Answer::Now(self.sync_outcome_for(member_id)), false),
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                self.members.get_mut(member_id).expect("checked").sync_tx = Some(tx);
                if self.leader.as_deref() != Some(member_id) {
                    return (Answer::Wait(rx), false);
                }
                let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                for m in self.members.values_mut() {
                    m.assignment = given.remove(&m.id).unwrap_or_default();
                }
                self.state = GroupState::Stable;
                tracing::info!(group = %self.id, generation = self.generation, "rebalance: stable");
                let ids: Vec<String> = self.members.keys().cloned().collect();
                for id in ids {
                    let outcome = self.sync_outcome_for(&id);
                    if let Some(tx) = self.members.get_mut(&id).and_then(|m| m.sync_tx.take()) {
                        let _ = tx.send(outcome);
                    }
                }
                (Answer::Wait(rx), true)
            }
            GroupState::Empty | GroupState::Dead => (
                Answer::Now(SyncOutcome::error_for(ResponseError::UnknownMemberId)),
                false,
            ),
        }
    }

    fn sync_outcome_for(&self, id: &str) -> SyncOutcome {
        SyncOutcome {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            assignment: self
                .members
                .get(id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    /// Heartbeat.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Option<ResponseError> {
        if let Err(e) = self.check_member(member_id, instance_id) {
            return Some(e);
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_seen = now;
        }
        if generation != self.generation {
            return Some(ResponseError::IllegalGeneration);
        }
        match self.state {
            GroupState::PreparingRebalance => Some(ResponseError::RebalanceInProgress),
            _ => None,
        }
    }

    /// LeaveGroup for one member (by id, or by instance id when the id is empty).
    /// Returns the error for that member; a change triggers a rebalance.
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> Option<ResponseError> {
        let id = if member_id.is_empty() {
            match instance_id.and_then(|i| self.statics.get(i)) {
                Some(id) => id.clone(),
                None => return Some(ResponseError::UnknownMemberId),
            }
        } else {
            if let Err(e) = self.check_member(member_id, instance_id) {
                return Some(e);
            }
            member_id.to_string()
        };
        self.remove_member(&id);
        self.after_removal(now);
        None
    }

    fn after_removal(&mut self, now: Instant) {
        match self.state {
            GroupState::PreparingRebalance => self.maybe_complete_join(now),
            GroupState::Empty | GroupState::Dead => {}
            _ => {
                self.start_rebalance(now, None);
                self.maybe_complete_join(now);
            }
        }
    }

    /// Session expiry, rebalance deadlines and pending member ids. Returns true when the
    /// group's persisted form changed (it became Empty).
    pub fn tick(&mut self, now: Instant, now_ms: i64) -> bool {
        self.pending.retain(|_, deadline| *deadline > now);
        let before = self.members.len();
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.join_tx.is_none()
                    && m.sync_tx.is_none()
                    && now.duration_since(m.last_seen) > m.session_timeout
            })
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            self.remove_member(id);
        }
        if !expired.is_empty() {
            self.after_removal(now);
        }
        self.maybe_complete_join(now);
        let became_empty = before > 0 && self.members.is_empty() && self.state == GroupState::Empty;
        if became_empty {
            self.empty_since_ms = now_ms;
        }
        became_empty
    }

    /// Marks the group deleted.
    pub fn mark_dead(&mut self) {
        self.state = GroupState::Dead;
    }
}

#[cfg(test)]
mod tests {
    //! Scenarios as tables of steps, run by one helper ([`check`]) against a group and a
    //! clock that only moves when a step says so.

    use super::*;
    use std::collections::HashMap;

    use ResponseError::*;
    use Step::*;

    const SESSION_MS: i32 = 6_000;
    const REBALANCE_MS: i32 = 10_000;

    /// A generation relative to the group's current one.
    #[derive(Debug, Clone, Copy)]
    enum Gen {
        Current,
        Off(i32),
    }

    /// One step of a scenario, with what it must answer.
    #[derive(Debug, Clone)]
    enum Step {
        /// `who` sends JoinGroup v3 with its member id ("" the first time).
        Join(&'static str),
        /// `who` sends its first JoinGroup at v4: MEMBER_ID_REQUIRED comes back with its id.
        JoinV4(&'static str),
        /// `who` joins as static member `instance` with an empty member id.
        JoinStatic(&'static str, &'static str),
        /// `who`'s JoinGroup has been answered: as leader (true) / follower, or an error.
        Joined(&'static str, Result<bool, ResponseError>),
        /// `who`'s JoinGroup is still waiting for the rebalance.
        JoinWaits(&'static str),
        /// `who` sends SyncGroup; the leader gives each member its own id as assignment.
        Sync(&'static str, Gen),
        /// `who`'s SyncGroup has been answered with its assignment, or an error.
        Synced(&'static str, Result<(), ResponseError>),
        /// `who`'s SyncGroup is still waiting for the leader.
        SyncWaits(&'static str),
        /// `who` heartbeats at a generation.
        Heartbeat(&'static str, Gen, Option<ResponseError>),
        /// `who` leaves.
        Leave(&'static str, Option<ResponseError>),
        /// `who` commits offsets at a generation.
        Commit(&'static str, Gen, Option<ResponseError>),
        /// This many ms pass, then the coordinator's tick runs.
        Wait(u64),
        /// The group's state and generation now.
        State(GroupState, i32),
    }

    struct Run {
        g: ClassicGroup,
        settings: GroupSettings,
        t0: Instant,
        now: Duration,
        ids: HashMap<&'static str, String>,
        joins: HashMap<&'static str, oneshot::Receiver<JoinOutcome>>,
        syncs: HashMap<&'static str, oneshot::Receiver<SyncOutcome>>,
    }

    impl Run {
        fn now(&self) -> Instant {
            self.t0 + self.now
        }

        fn generation(&self, g: Gen) -> i32 {
            match g {
                Gen::Current => self.g.generation(),
                Gen::Off(d) => self.g.generation() + d,
            }
        }

        fn id(&self, who: &str) -> String {
            self.ids.get(who).cloned().unwrap_or_default()
        }

        fn join(&mut self, who: &'static str, version: i16, instance: Option<&str>) {
            let req = JoinRequest {
                member_id: if instance.is_some() {
                    String::new()
                } else {
                    self.id(who)
                },
                group_instance_id: instance.map(str::to_string),
                client_id: who.to_string(),
                client_host: "/127.0.0.1".into(),
                session_timeout_ms: SESSION_MS,
                rebalance_timeout_ms: REBALANCE_MS,
                protocol_type: "consumer".into(),
                protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
                version,
            };
            let rx = match self.g.join(req, &self.settings, self.now()) {
                Answer::Now(o) => {
                    let (tx, rx) = oneshot::channel();
                    tx.send(o).unwrap();
                    rx
                }
                Answer::Wait(rx) => rx,
            };
            self.joins.insert(who, rx);
        }

        fn step(&mut self, step: &Step) {
            let now = self.now();
            match *step {
                Join(who) => self.join(who, 3, None),
                JoinV4(who) => {
                    self.join(who, 4, None);
                    let o = self.joins.get_mut(who).unwrap().try_recv().unwrap();
                    assert_eq!(o.error, Some(MemberIdRequired));
                    self.ids.insert(who, o.member_id);
                }
                JoinStatic(who, instance) => self.join(who, 5, Some(instance)),
                Joined(who, want) => {
                    let o = self
                        .joins
                        .get_mut(who)
                        .expect("joined before")
                        .try_recv()
                        .expect("answered");
                    match want {
                        Ok(leader) => {
                            assert_eq!(o.error, None);
                            assert_eq!(o.generation, self.g.generation());
                            assert_eq!(o.leader == o.member_id, leader, "{who} leads");
                            if !leader {
                                assert!(o.members.is_empty(), "only the leader hears of members");
                            }
                            self.ids.insert(who, o.member_id);
                        }
                        Err(e) => assert_eq!(o.error, Some(e)),
                    }
                }
                JoinWaits(who) => assert!(matches!(
                    self.joins.get_mut(who).unwrap().try_recv(),
                    Err(oneshot::error::TryRecvError::Empty)
                )),
                Sync(who, g) => {
                    let assignments = self
                        .ids
                        .values()
                        .map(|id| (id.clone(), Bytes::from(id.clone())))
                        .collect();
                    let id = self.id(who);
                    let req = SyncRequest {
                        member_id: &id,
                        instance_id: None,
                        generation: self.generation(g),
                        protocol_type: Some("consumer"),
                        protocol: Some("range"),
                        assignments,
                    };
                    let rx = match self.g.sync(req, now).0 {
                        Answer::Now(o) => {
                            let (tx, rx) = oneshot::channel();
                            tx.send(o).unwrap();
                            rx
                        }
                        Answer::Wait(rx) => rx,
                    };
                    self.syncs.insert(who, rx);
                }
                Synced(who, want) => {
                    let o = self
                        .syncs
                        .get_mut(who)
                        .unwrap()
                        .try_recv()
                        .expect("answered");
                    match want {
                        Ok(()) => {
                            assert_eq!(o.error, None);
                            assert_eq!(o.assignment, Bytes::from(self.id(who)));
                        }
                        Err(e) => assert_eq!(o.error, Some(e)),
                    }
                }
                SyncWaits(who) => assert!(matches!(
                    self.syncs.get_mut(who).unwrap().try_recv(),
                    Err(oneshot::error::TryRecvError::Empty)
                )),
                Heartbeat(who, g, want) => {
                    let id = self.id(who);
                    let got = self.g.heartbeat(&id, None, self.generation(g), now);
                    assert_eq!(got, want);
                }
                Leave(who, want) => {
                    let id = self.id(who);
                    assert_eq!(self.g.leave(&id, None, now), want);
                }
                Commit(who, g, want) => {
                    let id = self.id(who);
                    let gen = self.generation(g);
                    assert_eq!(self.g.check_commit(&id, None, gen, now).err(), want);
                }
                Wait(ms) => {
                    self.now += Duration::from_millis(ms);
                    self.g.tick(self.now(), 0);
                }
                State(state, generation) => {
                    assert_eq!((self.g.state(), self.g.generation()), (state, generation));
                }
            }
        }
    }

    /// Runs `steps` against a new group (no initial rebalance delay), naming the scenario
    /// and the step on failure.
    fn check(name: &str, steps: &[Step]) {
        let mut run = Run {
            g: ClassicGroup::new("g", 0),
            settings: GroupSettings {
                min_session_timeout_ms: 6_000,
                max_session_timeout_ms: 1_800_000,
                initial_rebalance_delay_ms: 0,
            },
            t0: Instant::now(),
            now: Duration::ZERO,
            ids: HashMap::new(),
            joins: HashMap::new(),
            syncs: HashMap::new(),
        };
        for (i, step) in steps.iter().enumerate() {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run.step(step)));
            if let Err(e) = r {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!("{name}: step {i} {step:?}: {msg}");
            }
        }
    }

    /// a alone: joins, leads, syncs; the group is Stable at generation 1.
    const A_STABLE: &[Step] = &[
        Join("a"),
        Joined("a", Ok(true)),
        State(GroupState::CompletingRebalance, 1),
        Sync("a", Gen::Current),
        Synced("a", Ok(())),
        State(GroupState::Stable, 1),
    ];

    /// A scenario that starts with `prefix`.
    fn with(prefix: &[Step], rest: Vec<Step>) -> Vec<Step> {
        let mut v = prefix.to_vec();
        v.extend(rest);
        v
    }

    #[test]
    fn joins() {
        check("a first member leads", A_STABLE);
        check(
            "from v4 a new member first gets its id",
            &[
                JoinV4("a"),
                State(GroupState::Empty, 0),
                Join("a"),
                Joined("a", Ok(true)),
            ],
        );
        check(
            "a second member makes the first rejoin; the first stays leader",
            &with(
                A_STABLE,
                vec![
                    Join("b"),
                    JoinWaits("b"),
                    State(GroupState::PreparingRebalance, 1),
                    Heartbeat("a", Gen::Current, Some(RebalanceInProgress)),
                    Join("a"),
                    Joined("a", Ok(true)),
                    Joined("b", Ok(false)),
                    State(GroupState::CompletingRebalance, 2),
                    Sync("b", Gen::Current),
                    SyncWaits("b"),
                    Sync("a", Gen::Current),
                    Synced("a", Ok(())),
                    Synced("b", Ok(())),
                    State(GroupState::Stable, 2),
                    Heartbeat("b", Gen::Current, None),
                ],
            ),
        );
        check(
            "a leave rebalances the rest",
            &with(
                A_STABLE,
                vec![
                    Join("b"),
                    Join("a"),
                    Joined("a", Ok(true)),
                    Joined("b", Ok(false)),
                    Sync("a", Gen::Current),
                    Synced("a", Ok(())),
                    Leave("a", None),
                    Leave("a", Some(UnknownMemberId)),
                    State(GroupState::PreparingRebalance, 2),
                    Join("b"),
                    Joined("b", Ok(true)),
                    State(GroupState::CompletingRebalance, 3),
                    Leave("b", None),
                    State(GroupState::Empty, 4),
                ],
            ),
        );
    }

    #[test]
    fn rebalance_and_session_timeouts() {
        check(
            "a member that heartbeats but does not rejoin is dropped at the rebalance timeout",
            &with(
                A_STABLE,
                vec![
                    Join("b"),
                    Wait(4_000),
                    Heartbeat("a", Gen::Current, Some(RebalanceInProgress)),
                    Wait(4_000),
                    Heartbeat("a", Gen::Current, Some(RebalanceInProgress)),
                    JoinWaits("b"),
                    Wait(2_100),
                    Joined("b", Ok(true)),
                    State(GroupState::CompletingRebalance, 2),
                    Heartbeat("a", Gen::Off(-1), Some(UnknownMemberId)),
                ],
            ),
        );
        check(
            "a silent member expires after its session timeout",
            &with(
                A_STABLE,
                vec![
                    Wait(5_900),
                    Heartbeat("a", Gen::Current, None),
                    Wait(5_900),
                    State(GroupState::Stable, 1),
                    Wait(200),
                    State(GroupState::Empty, 2),
                    Heartbeat("a", Gen::Current, Some(UnknownMemberId)),
                ],
            ),
        );
        check(
            "a member waiting in JoinGroup is not expired",
            &with(
                A_STABLE,
                vec![
                    Join("b"),
                    Wait(7_000),
                    Joined("b", Ok(true)),
                    State(GroupState::CompletingRebalance, 2),
                    Heartbeat("a", Gen::Current, Some(UnknownMemberId)),
                ],
            ),
        );
        check(
            "a leader that never syncs expires; the follower waiting in SyncGroup is told to rejoin",
            &with(
                A_STABLE,
                vec![
                    Join("b"),
                    Join("a"),
                    Joined("a", Ok(true)),
                    Joined("b", Ok(false)),
                    Sync("b", Gen::Current),
                    SyncWaits("b"),
                    Wait(7_000),
                    Synced("b", Err(RebalanceInProgress)),
                    State(GroupState::PreparingRebalance, 2),
                    Heartbeat("a", Gen::Current, Some(UnknownMemberId)),
                ],
            ),
        );
    }

    #[test]
    fn static_members() {
        check(
            "a static member that rejoins gets a new id, keeps the generation and fences the old id",
            &[
                JoinStatic("a", "ia"),
                Joined("a", Ok(true)),
                Sync("a", Gen::Current),
                Synced("a", Ok(())),
                Join("b"),
                Join("a"),
                Joined("a", Ok(true)),
                Joined("b", Ok(false)),
                Sync("a", Gen::Current),
                Synced("a", Ok(())),
                State(GroupState::Stable, 2),
                // The same instance comes back (a restart): a new member id, no rebalance.
                JoinStatic("a2", "ia"),
                Joined("a2", Ok(true)),
                State(GroupState::Stable, 2),
                Heartbeat("b", Gen::Current, None),
                Heartbeat("a", Gen::Current, Some(UnknownMemberId)),
            ],
        );
        check(
            "a static member that closes without leaving expires with its session",
            &[
                JoinStatic("a", "ia"),
                Joined("a", Ok(true)),
                Sync("a", Gen::Current),
                Synced("a", Ok(())),
                Wait(6_100),
                State(GroupState::Empty, 2),
            ],
        );
    }

    #[test]
    fn generation_fencing() {
        check(
            "stale and future generations, unknown members",
            &with(
                A_STABLE,
                vec![
                    Heartbeat("a", Gen::Off(-1), Some(IllegalGeneration)),
                    Heartbeat("a", Gen::Off(1), Some(IllegalGeneration)),
                    Heartbeat("nobody", Gen::Current, Some(UnknownMemberId)),
                    Sync("a", Gen::Off(1)),
                    Synced("a", Err(IllegalGeneration)),
                    Commit("a", Gen::Off(-1), Some(IllegalGeneration)),
                    Commit("nobody", Gen::Current, Some(UnknownMemberId)),
                    Commit("a", Gen::Current, None),
                ],
            ),
        );
        check(
            "commits while the group completes a rebalance",
            &[
                Join("a"),
                Joined("a", Ok(true)),
                Commit("a", Gen::Current, Some(RebalanceInProgress)),
                Sync("a", Gen::Current),
                Synced("a", Ok(())),
                Commit("a", Gen::Current, None),
            ],
        );
    }
}
