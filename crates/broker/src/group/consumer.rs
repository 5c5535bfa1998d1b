//! The consumer group protocol of KIP-848 (ConsumerGroupHeartbeat): the broker computes the
//! target assignment with a server-side assignor and each member reconciles towards it
//! incrementally. A partition moves only after its old owner has acknowledged revoking it,
//! so no partition is ever owned by two members at once.
//!
//! Like the classic protocol this runs under the coordinator's lock and never awaits.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;

/// A partition of a topic, by name (topic ids are attached at the wire edge).
pub type TopicPart = (String, i32);

/// Server-side assignors this broker offers.
pub const ASSIGNORS: &[&str] = &["uniform", "range"];

/// What the coordinator needs to know about the cluster's topics.
pub trait TopicView {
    /// Partition count of a topic, if it exists.
    fn partitions(&self, topic: &str) -> Option<i32>;
    /// Every topic name (for regex subscriptions).
    fn names(&self) -> Vec<String>;
}

/// Settings from the broker config.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// `group.consumer.session.timeout.ms`.
    pub session_timeout: Duration,
    /// `group.consumer.heartbeat.interval.ms`.
    pub heartbeat_interval_ms: i32,
    /// `group.consumer.assignors` default: the first is used when members name none.
    pub default_assignor: String,
}

/// One heartbeat, decoded.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    /// Member id ("" on a v0 join: the broker generates one).
    pub member_id: String,
    /// 0 to join, -1 to leave, -2 for a static member's temporary leave, else the epoch.
    pub member_epoch: i32,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Rack.
    pub rack_id: Option<String>,
    /// Rebalance timeout (how long a revocation may take).
    pub rebalance_timeout_ms: i32,
    /// New topic-name subscription, if changed.
    pub subscribed_topic_names: Option<Vec<String>>,
    /// New regex subscription, if changed.
    pub subscribed_topic_regex: Option<String>,
    /// Requested server assignor, if changed.
    pub server_assignor: Option<String>,
    /// Partitions the member owns now, if changed.
    pub owned: Option<BTreeSet<TopicPart>>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
}

/// A heartbeat's answer.
#[derive(Debug, Clone)]
pub struct HeartbeatAnswer {
    /// Member id.
    pub member_id: String,
    /// The member's epoch now.
    pub member_epoch: i32,
    /// How often to heartbeat.
    pub heartbeat_interval_ms: i32,
    /// The partitions the member should own now, when that changed.
    pub assignment: Option<BTreeSet<TopicPart>>,
}

/// A member, as described and persisted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberState {
    /// Member id.
    pub id: String,
    /// Static id.
    pub instance_id: Option<String>,
    /// Rack.
    pub rack_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Current epoch.
    pub member_epoch: i32,
    /// Epoch before the last bump.
    pub previous_epoch: i32,
    /// Rebalance timeout in ms.
    pub rebalance_timeout_ms: i32,
    /// Subscribed topic names.
    pub subscribed_names: Vec<String>,
    /// Subscribed regex.
    pub subscribed_regex: Option<String>,
    /// Requested assignor.
    pub server_assignor: Option<String>,
    /// Partitions the member owns (as the broker last told it, minus acknowledged revocations).
    pub assigned: BTreeSet<TopicPart>,
    /// Partitions the member was told to give up and has not yet confirmed.
    pub pending_revocation: BTreeSet<TopicPart>,
}

#[derive(Debug)]
struct Member {
    state: MemberState,
    regex: Option<regex::Regex>,
    last_seen: Instant,
    revoke_deadline: Option<Instant>,
    last_sent: Option<BTreeSet<TopicPart>>,
    /// A static member that left temporarily (epoch -2) and may be replaced by its instance.
    left_static: bool,
}

/// A consumer-protocol group's membership.
#[derive(Debug)]
pub struct ConsumerGroup {
    /// Group id.
    pub id: String,
    group_epoch: i32,
    assignment_epoch: i32,
    assignor: String,
    members: BTreeMap<String, Member>,
    target: BTreeMap<String, BTreeSet<TopicPart>>,
    /// Partition counts of the subscribed topics when the target was computed.
    subscribed_metadata: BTreeMap<String, i32>,
    /// False after a restore, until the metadata above has been recorded again (a restart
    /// must not look like a topic change and bump the epoch).
    metadata_known: bool,
    /// Bumped on every change worth persisting.
    pub version: u64,
}

fn compile(regex: &str) -> Result<regex::Regex, (ResponseError, String)> {
    regex::Regex::new(&format!("^(?:{regex})$")).map_err(|e| {
        (
            ResponseError::InvalidRegularExpression,
            format!("Invalid regular expression {regex:?}: {e}"),
        )
    })
}

impl ConsumerGroup {
    /// A new, empty group.
    pub fn new(id: &str, default_assignor: &str) -> ConsumerGroup {
        ConsumerGroup {
            id: id.to_string(),
            group_epoch: 0,
            assignment_epoch: 0,
            assignor: default_assignor.to_string(),
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            subscribed_metadata: BTreeMap::new(),
            metadata_known: true,
            version: 0,
        }
    }

    /// Whether the group has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Group epoch.
    pub fn group_epoch(&self) -> i32 {
        self.group_epoch
    }

    /// Assignment epoch.
    pub fn assignment_epoch(&self) -> i32 {
        self.assignment_epoch
    }

    /// The assignor in use.
    pub fn assignor(&self) -> &str {
        &self.assignor
    }

    /// Kafka's state name: Empty, Assigning, Reconciling or Stable.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch < self.group_epoch {
            "Assigning"
        } else if self.members.values().any(|m| {
            m.state.member_epoch != self.assignment_epoch
                || !m.state.pending_revocation.is_empty()
                || Some(&m.state.assigned) != self.target.get(&m.state.id)
        }) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// Members with their target assignment.
    pub fn describe(&self) -> Vec<(MemberState, BTreeSet<TopicPart>)> {
        self.members
            .values()
            .map(|m| {
                (
                    m.state.clone(),
                    self.target.get(&m.state.id).cloned().unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Topics some member subscribes to (names and regex matches).
    pub fn subscribed_topics(&self, topics: &dyn TopicView) -> BTreeSet<String> {
        let names = topics.names();
        let mut out = BTreeSet::new();
        for m in self.members.values() {
            out.extend(m.state.subscribed_names.iter().cloned());
            if let Some(re) = &m.regex {
                out.extend(names.iter().filter(|n| re.is_match(n)).cloned());
            }
        }
        out
    }

    /// Checks a member id and epoch for OffsetCommit (Kafka's `ConsumerGroup.validateOffsetCommit`):
    /// a non-member (epoch < 0) may commit only while the group is empty; otherwise the
    /// member must exist (UNKNOWN_MEMBER_ID), commit with OffsetCommit v9+ unless the commit
    /// is transactional (UNSUPPORTED_VERSION), and name its current epoch: a newer one is
    /// FENCED_MEMBER_EPOCH, an older one STALE_MEMBER_EPOCH.
    pub fn check_commit(
        &self,
        member_id: &str,
        epoch: i32,
        epoch_capable: bool,
    ) -> Result<(), ResponseError> {
        if epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        let Some(m) = self.members.get(member_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        if !epoch_capable {
            return Err(ResponseError::UnsupportedVersion);
        }
        match epoch.cmp(&m.state.member_epoch) {
            std::cmp::Ordering::Greater => Err(ResponseError::FencedMemberEpoch),
            std::cmp::Ordering::Less => Err(ResponseError::StaleMemberEpoch),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    fn bump(&mut self) {
        self.group_epoch += 1;
        self.version += 1;
    }

    /// ConsumerGroupHeartbeat.
    pub fn heartbeat(
        &mut self,
        hb: Heartbeat,
        topics: &dyn TopicView,
        settings: &ConsumerSettings,
        now: Instant,
    ) -> Result<HeartbeatAnswer, (ResponseError, String)> {
        if let Some(a) = &hb.server_assignor {
            if !ASSIGNORS.contains(&a.as_str()) {
                return Err((
                    ResponseError::UnsupportedAssignor,
                    format!("Assignor {a} is not supported; use one of {ASSIGNORS:?}"),
                ));
            }
        }
        let regex = match &hb.subscribed_topic_regex {
            Some(r) if !r.is_empty() => Some(compile(r)?),
            _ => None,
        };
        match hb.member_epoch {
            -2 if self
                .members
                .get(&hb.member_id)
                .is_some_and(|m| m.state.instance_id.is_some()) =>
            {
                // A static member's temporary leave: it keeps its partitions for the session
                // timeout, so the same instance can come back without a rebalance.
                let m = self.members.get_mut(&hb.member_id).expect("checked");
                m.left_static = true;
                return Ok(HeartbeatAnswer {
                    member_id: hb.member_id,
                    member_epoch: -2,
                    heartbeat_interval_ms: 0,
                    assignment: None,
                });
            }
            -1 | -2 => {
                if self.members.remove(&hb.member_id).is_some() {
                    self.target.remove(&hb.member_id);
                    self.bump();
                }
                return Ok(HeartbeatAnswer {
                    member_id: hb.member_id,
                    member_epoch: hb.member_epoch,
                    heartbeat_interval_ms: 0,
                    assignment: None,
                });
            }
            0 => {
                if hb.subscribed_topic_names.is_none() && hb.subscribed_topic_regex.is_none() {
                    return Err((
                        ResponseError::InvalidRequest,
                        "A joining member must give a subscription".into(),
                    ));
                }
                if hb.rebalance_timeout_ms <= 0 {
                    return Err((
                        ResponseError::InvalidRequest,
                        "RebalanceTimeoutMs must be positive".into(),
                    ));
                }
                if let Some(i) = &hb.instance_id {
                    let holder = self
                        .members
                        .values()
                        .find(|m| {
                            m.state.instance_id.as_ref() == Some(i) && m.state.id != hb.member_id
                        })
                        .map(|m| (m.state.id.clone(), m.left_static));
                    match holder {
                        Some((old, true)) => {
                            return self.replace_static(&old, hb, regex, topics, settings, now)
                        }
                        Some(_) => {
                            return Err((
                                ResponseError::UnreleasedInstanceId,
                                format!("Instance id {i} is still used by another member"),
                            ))
                        }
                        None => {}
                    }
                }
                let id = if hb.member_id.is_empty() {
                    uuid::Uuid::new_v4().to_string()
                } else {
                    hb.member_id.clone()
                };
                self.members.insert(
                    id.clone(),
                    Member {
                        state: MemberState {
                            id: id.clone(),
                            instance_id: hb.instance_id.clone(),
                            rack_id: hb.rack_id.clone(),
                            client_id: hb.client_id.clone(),
                            client_host: hb.client_host.clone(),
                            member_epoch: 0,
                            previous_epoch: 0,
                            rebalance_timeout_ms: hb.rebalance_timeout_ms,
                            ..MemberState::default()
                        },
                        regex: None,
                        last_seen: now,
                        revoke_deadline: None,
                        last_sent: None,
                        left_static: false,
                    },
                );
                self.target.remove(&id);
                self.bump();
                return self.update_and_reconcile(&id, hb, regex, topics, settings, now);
            }
            epoch => {
                let Some(m) = self.members.get(&hb.member_id) else {
                    return Err((
                        ResponseError::UnknownMemberId,
                        format!("Member {} is not in the group", hb.member_id),
                    ));
                };
                if epoch != m.state.member_epoch && epoch != m.state.previous_epoch {
                    return Err((
                        ResponseError::FencedMemberEpoch,
                        format!(
                            "Epoch {epoch} is fenced; the member's epoch is {}",
                            m.state.member_epoch
                        ),
                    ));
                }
            }
        }
        let id = hb.member_id.clone();
        self.update_and_reconcile(&id, hb, regex, topics, settings, now)
    }

    /// The static instance of `old` rejoins under a new member id: it inherits the old
    /// member's epoch and partitions, and the rest of the group sees no change.
    fn replace_static(
        &mut self,
        old: &str,
        hb: Heartbeat,
        regex: Option<regex::Regex>,
        topics: &dyn TopicView,
        settings: &ConsumerSettings,
        now: Instant,
    ) -> Result<HeartbeatAnswer, (ResponseError, String)> {
        let id = if hb.member_id.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            hb.member_id.clone()
        };
        let mut m = self.members.remove(old).expect("holder exists");
        m.state.id = id.clone();
        m.state.client_id = hb.client_id.clone();
        m.state.client_host = hb.client_host.clone();
        m.left_static = false;
        m.last_sent = None;
        self.members.insert(id.clone(), m);
        if let Some(t) = self.target.remove(old) {
            self.target.insert(id.clone(), t);
        }
        self.version += 1;
        tracing::info!(group = %self.id, old = %old, new = %id, "static member rejoined");
        self.update_and_reconcile(
            &id,
            Heartbeat {
                member_epoch: 0,
                ..hb
            },
            regex,
            topics,
            settings,
            now,
        )
    }

    fn update_and_reconcile(
        &mut self,
        id: &str,
        hb: Heartbeat,
        regex: Option<regex::Regex>,
        topics: &dyn TopicView,
        settings: &ConsumerSettings,
        now: Instant,
    ) -> Result<HeartbeatAnswer, (ResponseError, String)> {
        let mut changed = false;
        {
            let m = self.members.get_mut(id).expect("member exists");
            m.last_seen = now;
            if hb.rebalance_timeout_ms > 0 {
                m.state.rebalance_timeout_ms = hb.rebalance_timeout_ms;
            }
            if let Some(names) = hb.subscribed_topic_names {
                let mut names: Vec<String> = names;
                names.sort();
                names.dedup();
                if names != m.state.subscribed_names {
                    m.state.subscribed_names = names;
                    changed = true;
                }
            }
            if let Some(r) = hb.subscribed_topic_regex {
                let r = Some(r).filter(|r| !r.is_empty());
                if r != m.state.subscribed_regex {
                    m.state.subscribed_regex = r;
                    m.regex = regex;
                    changed = true;
                }
            }
            if hb.server_assignor.is_some() && hb.server_assignor != m.state.server_assignor {
                m.state.server_assignor = hb.server_assignor;
                changed = true;
            }
            if let Some(owned) = &hb.owned {
                // The member confirms what it owns: revocations it no longer holds are done.
                m.state.pending_revocation.retain(|tp| owned.contains(tp));
                if m.state.pending_revocation.is_empty() {
                    m.revoke_deadline = None;
                }
            }
        }
        if changed {
            self.bump();
        }
        self.refresh_metadata(topics);
        if self.assignment_epoch < self.group_epoch {
            self.compute_target(topics, settings);
        }
        let answer = self.reconcile(id, now, hb.member_epoch == 0);
        Ok(HeartbeatAnswer {
            member_id: id.to_string(),
            member_epoch: answer.0,
            heartbeat_interval_ms: settings.heartbeat_interval_ms,
            assignment: answer.1,
        })
    }

    /// Bumps the group epoch when a subscribed topic appeared, vanished or grew.
    fn refresh_metadata(&mut self, topics: &dyn TopicView) {
        let now: BTreeMap<String, i32> = self
            .subscribed_topics(topics)
            .into_iter()
            .filter_map(|t| topics.partitions(&t).map(|n| (t, n)))
            .collect();
        if now != self.subscribed_metadata {
            self.subscribed_metadata = now;
            let known = std::mem::replace(&mut self.metadata_known, true);
            if known && self.assignment_epoch == self.group_epoch && !self.members.is_empty() {
                self.bump();
            }
        }
    }

    fn compute_target(&mut self, topics: &dyn TopicView, settings: &ConsumerSettings) {
        // The assignor most members ask for, else the configured default.
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = &m.state.server_assignor {
                *votes.entry(a.as_str()).or_default() += 1;
            }
        }
        self.assignor = votes
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(a, _)| a.to_string())
            .unwrap_or_else(|| settings.default_assignor.clone());
        let names = topics.names();
        let subs: BTreeMap<String, BTreeSet<String>> = self
            .members
            .values()
            .map(|m| {
                let mut s: BTreeSet<String> = m.state.subscribed_names.iter().cloned().collect();
                if let Some(re) = &m.regex {
                    s.extend(names.iter().filter(|n| re.is_match(n)).cloned());
                }
                s.retain(|t| topics.partitions(t).is_some());
                (m.state.id.clone(), s)
            })
            .collect();
        let previous = std::mem::take(&mut self.target);
        self.target = match self.assignor.as_str() {
            "range" => assign_range(&subs, topics),
            _ => assign_uniform(&subs, topics, &previous),
        };
        self.assignment_epoch = self.group_epoch;
        self.version += 1;
        tracing::info!(
            group = %self.id,
            epoch = self.group_epoch,
            members = self.members.len(),
            assignor = %self.assignor,
            "consumer group: new target assignment"
        );
    }

    /// Moves one member towards its target. Returns its epoch and the assignment to send.
    fn reconcile(
        &mut self,
        id: &str,
        now: Instant,
        full: bool,
    ) -> (i32, Option<BTreeSet<TopicPart>>) {
        let target = self.target.get(id).cloned().unwrap_or_default();
        let owned_by_others: BTreeSet<TopicPart> = self
            .members
            .values()
            .filter(|m| m.state.id != id)
            .flat_map(|m| {
                m.state
                    .assigned
                    .iter()
                    .chain(m.state.pending_revocation.iter())
                    .cloned()
            })
            .collect();
        let assignment_epoch = self.assignment_epoch;
        let m = self.members.get_mut(id).expect("member exists");
        let before = (m.state.member_epoch, m.state.assigned.clone());
        if m.state.pending_revocation.is_empty() {
            let to_revoke: BTreeSet<TopicPart> =
                m.state.assigned.difference(&target).cloned().collect();
            if !to_revoke.is_empty() {
                // Step 1: take away what moves elsewhere; the epoch waits for the ack.
                m.state.assigned.retain(|tp| !to_revoke.contains(tp));
                m.state.pending_revocation = to_revoke;
                m.revoke_deadline =
                    Some(now + Duration::from_millis(m.state.rebalance_timeout_ms.max(1) as u64));
            } else {
                // Step 2: take the target partitions nobody else still holds; new epoch.
                for tp in target.difference(&owned_by_others) {
                    m.state.assigned.insert(tp.clone());
                }
                if m.state.member_epoch != assignment_epoch {
                    m.state.previous_epoch = m.state.member_epoch;
                    m.state.member_epoch = assignment_epoch;
                }
            }
        }
        let send = if full || m.last_sent.as_ref() != Some(&m.state.assigned) {
            m.last_sent = Some(m.state.assigned.clone());
            Some(m.state.assigned.clone())
        } else {
            None
        };
        if before != (m.state.member_epoch, m.state.assigned.clone()) {
            self.version += 1;
        }
        let epoch = self.members[id].state.member_epoch;
        (epoch, send)
    }

    /// Session expiry, revocation timeouts and topic changes. Returns true if anything
    /// changed (persist).
    pub fn tick(
        &mut self,
        topics: &dyn TopicView,
        settings: &ConsumerSettings,
        now: Instant,
    ) -> bool {
        let before = self.version;
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                now.duration_since(m.last_seen) > settings.session_timeout
                    || m.revoke_deadline.is_some_and(|d| now > d)
            })
            .map(|m| m.state.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "consumer group member expired or did not revoke in time");
            self.members.remove(&id);
            self.target.remove(&id);
            self.bump();
        }
        if !self.members.is_empty() {
            self.refresh_metadata(topics);
        }
        self.version != before
    }

    /// Rebuilds a group from its persisted members (session timers restart now).
    pub fn restore(
        id: &str,
        group_epoch: i32,
        assignment_epoch: i32,
        assignor: &str,
        members: Vec<MemberState>,
        target: BTreeMap<String, BTreeSet<TopicPart>>,
        now: Instant,
    ) -> ConsumerGroup {
        let mut g = ConsumerGroup::new(id, assignor);
        g.group_epoch = group_epoch;
        g.assignment_epoch = assignment_epoch;
        g.target = target;
        g.metadata_known = false;
        for s in members {
            let regex = s.subscribed_regex.as_deref().and_then(|r| compile(r).ok());
            g.members.insert(
                s.id.clone(),
                Member {
                    left_static: false,
                    last_sent: Some(s.assigned.clone()),
                    state: s,
                    regex,
                    last_seen: now,
                    revoke_deadline: None,
                },
            );
        }
        g
    }

    /// What to persist: epochs, assignor, members, target.
    pub fn snapshot(
        &self,
    ) -> (
        i32,
        i32,
        String,
        Vec<MemberState>,
        BTreeMap<String, BTreeSet<TopicPart>>,
    ) {
        (
            self.group_epoch,
            self.assignment_epoch,
            self.assignor.clone(),
            self.members.values().map(|m| m.state.clone()).collect(),
            self.target.clone(),
        )
    }
}

/// All partitions of the given topics, sorted.
fn partitions_of(topics: &BTreeSet<String>, view: &dyn TopicView) -> Vec<TopicPart> {
    topics
        .iter()
        .flat_map(|t| (0..view.partitions(t).unwrap_or(0)).map(move |p| (t.clone(), p)))
        .collect()
}

/// `uniform`: spreads partitions evenly, keeping each partition where it was when that
/// keeps the spread even (sticky), so a membership change moves as little as possible.
fn assign_uniform(
    subs: &BTreeMap<String, BTreeSet<String>>,
    view: &dyn TopicView,
    previous: &BTreeMap<String, BTreeSet<TopicPart>>,
) -> BTreeMap<String, BTreeSet<TopicPart>> {
    let mut out: BTreeMap<String, BTreeSet<TopicPart>> =
        subs.keys().map(|m| (m.clone(), BTreeSet::new())).collect();
    let all_topics: BTreeSet<String> = subs.values().flatten().cloned().collect();
    let all = partitions_of(&all_topics, view);
    let eligible = |tp: &TopicPart| -> Vec<&String> {
        subs.iter()
            .filter(|(_, s)| s.contains(&tp.0))
            .map(|(m, _)| m)
            .collect()
    };
    let members_with_subs = subs.values().filter(|s| !s.is_empty()).count().max(1);
    let floor = all.len() / members_with_subs;
    let mut unassigned = Vec::new();
    for tp in &all {
        let owner = previous
            .iter()
            .find(|(_, ps)| ps.contains(tp))
            .map(|(m, _)| m);
        match owner {
            Some(m)
                if subs.get(m).is_some_and(|s| s.contains(&tp.0))
                    && out[m].len() < floor.max(1) =>
            {
                out.get_mut(m).expect("member").insert(tp.clone());
            }
            _ => unassigned.push(tp.clone()),
        }
    }
    for tp in unassigned {
        let candidates = eligible(&tp);
        if let Some(m) = candidates
            .into_iter()
            .min_by_key(|m| (out[*m].len(), (*m).clone()))
        {
            out.get_mut(m).expect("member").insert(tp);
        }
    }
    out
}

/// `range`: per topic, contiguous ranges of partitions to the members subscribed to it.
fn assign_range(
    subs: &BTreeMap<String, BTreeSet<String>>,
    view: &dyn TopicView,
) -> BTreeMap<String, BTreeSet<TopicPart>> {
    let mut out: BTreeMap<String, BTreeSet<TopicPart>> =
        subs.keys().map(|m| (m.clone(), BTreeSet::new())).collect();
    let topics: BTreeSet<String> = subs.values().flatten().cloned().collect();
    for t in topics {
        let members: Vec<&String> = subs
            .iter()
            .filter(|(_, s)| s.contains(&t))
            .map(|(m, _)| m)
            .collect();
        let n = view.partitions(&t).unwrap_or(0) as usize;
        let (per, extra) = (n / members.len(), n % members.len());
        let mut p = 0;
        for (i, m) in members.iter().enumerate() {
            let take = per + usize::from(i < extra);
            for q in p..p + take {
                out.get_mut(*m)
                    .expect("member")
                    .insert((t.clone(), q as i32));
            }
            p += take;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct View(BTreeMap<String, i32>);
    impl TopicView for View {
        fn partitions(&self, topic: &str) -> Option<i32> {
            self.0.get(topic).copied()
        }
        fn names(&self) -> Vec<String> {
            self.0.keys().cloned().collect()
        }
    }

    fn settings() -> ConsumerSettings {
        ConsumerSettings {
            session_timeout: Duration::from_secs(45),
            heartbeat_interval_ms: 500,
            default_assignor: "uniform".into(),
        }
    }

    fn join(g: &mut ConsumerGroup, id: &str, view: &View, now: Instant) -> HeartbeatAnswer {
        g.heartbeat(
            Heartbeat {
                member_id: id.into(),
                member_epoch: 0,
                rebalance_timeout_ms: 30_000,
                subscribed_topic_names: Some(vec!["t".into()]),
                ..Heartbeat::default()
            },
            view,
            &settings(),
            now,
        )
        .unwrap()
    }

    fn beat(
        g: &mut ConsumerGroup,
        id: &str,
        epoch: i32,
        owned: Option<&BTreeSet<TopicPart>>,
        view: &View,
        now: Instant,
    ) -> Result<HeartbeatAnswer, (ResponseError, String)> {
        g.heartbeat(
            Heartbeat {
                member_id: id.into(),
                member_epoch: epoch,
                owned: owned.cloned(),
                ..Heartbeat::default()
            },
            view,
            &settings(),
            now,
        )
    }

    /// Drives every member until nothing changes; checks no partition is ever owned twice.
    fn settle(
        g: &mut ConsumerGroup,
        owned: &mut BTreeMap<String, (i32, BTreeSet<TopicPart>)>,
        view: &View,
        now: Instant,
    ) {
        for _ in 0..10 {
            let ids: Vec<String> = owned.keys().cloned().collect();
            for id in ids {
                let (epoch, mine) = owned[&id].clone();
                let a = beat(g, &id, epoch, Some(&mine), view, now).unwrap();
                let entry = owned.get_mut(&id).unwrap();
                entry.0 = a.member_epoch;
                if let Some(asg) = a.assignment {
                    entry.1 = asg;
                }
                let mut seen = BTreeSet::new();
                for (_, ps) in owned.values() {
                    for tp in ps {
                        assert!(seen.insert(tp.clone()), "{tp:?} owned twice");
                    }
                }
            }
        }
    }

    #[test]
    fn incremental_reconciliation_moves_only_what_it_must() {
        let view = View(BTreeMap::from([("t".to_string(), 6)]));
        let now = Instant::now();
        let mut g = ConsumerGroup::new("g", "uniform");
        let mut owned = BTreeMap::new();
        for id in ["a", "b"] {
            let a = join(&mut g, id, &view, now);
            owned.insert(
                id.to_string(),
                (a.member_epoch, a.assignment.unwrap_or_default()),
            );
        }
        settle(&mut g, &mut owned, &view, now);
        assert_eq!(owned["a"].1.len() + owned["b"].1.len(), 6);
        assert_eq!(owned["a"].1.len(), 3);
        let before = owned.clone();
        let a = join(&mut g, "c", &view, now);
        owned.insert(
            "c".into(),
            (a.member_epoch, a.assignment.unwrap_or_default()),
        );
        settle(&mut g, &mut owned, &view, now);
        for id in ["a", "b", "c"] {
            assert_eq!(owned[id].1.len(), 2, "{id}: {:?}", owned[id]);
        }
        for id in ["a", "b"] {
            assert!(
                owned[id].1.is_subset(&before[id].1),
                "{id} only lost partitions"
            );
        }
        assert_eq!(g.state_name(), "Stable");
        assert!(owned.values().all(|(e, _)| *e == g.assignment_epoch()));
    }

    #[test]
    fn a_static_member_comes_back_with_its_partitions() {
        let view = View(BTreeMap::from([("t".to_string(), 4)]));
        let now = Instant::now();
        let mut g = ConsumerGroup::new("g", "uniform");
        let mut owned = BTreeMap::new();
        for id in ["a", "b"] {
            let mut hb = Heartbeat {
                member_id: id.into(),
                member_epoch: 0,
                rebalance_timeout_ms: 30_000,
                subscribed_topic_names: Some(vec!["t".into()]),
                ..Heartbeat::default()
            };
            hb.instance_id = Some(format!("i-{id}"));
            let a = g.heartbeat(hb, &view, &settings(), now).unwrap();
            owned.insert(
                id.to_string(),
                (a.member_epoch, a.assignment.unwrap_or_default()),
            );
        }
        settle(&mut g, &mut owned, &view, now);
        let epoch = g.group_epoch();
        let b_parts = owned["b"].1.clone();
        // b leaves temporarily, then its instance rejoins under a new member id.
        let left = beat(&mut g, "b", -2, None, &view, now).unwrap();
        assert_eq!(left.member_epoch, -2);
        let hb = Heartbeat {
            member_id: "b2".into(),
            member_epoch: 0,
            instance_id: Some("i-b".into()),
            rebalance_timeout_ms: 30_000,
            subscribed_topic_names: Some(vec!["t".into()]),
            ..Heartbeat::default()
        };
        let back = g.heartbeat(hb.clone(), &view, &settings(), now).unwrap();
        assert_eq!(back.assignment, Some(b_parts));
        assert_eq!(g.group_epoch(), epoch, "no rebalance for the others");
        // While the instance is in use, another join with it is refused.
        let again = g.heartbeat(
            Heartbeat {
                member_id: "b3".into(),
                ..hb
            },
            &view,
            &settings(),
            now,
        );
        assert_eq!(again.unwrap_err().0, ResponseError::UnreleasedInstanceId);
    }

    #[test]
    fn bad_heartbeats() {
        let view = View(BTreeMap::from([("t".to_string(), 2)]));
        let now = Instant::now();
        let mut g = ConsumerGroup::new("g", "uniform");
        let a = join(&mut g, "a", &view, now);
        let stale = beat(&mut g, "a", a.member_epoch + 5, None, &view, now).unwrap_err();
        assert_eq!(stale.0, ResponseError::FencedMemberEpoch);
        let unknown = beat(&mut g, "zz", 1, None, &view, now).unwrap_err();
        assert_eq!(unknown.0, ResponseError::UnknownMemberId);
        let mut hb = Heartbeat {
            member_id: "b".into(),
            member_epoch: 0,
            rebalance_timeout_ms: 1,
            ..Heartbeat::default()
        };
        hb.server_assignor = Some("magic".into());
        hb.subscribed_topic_names = Some(vec!["t".into()]);
        assert_eq!(
            g.heartbeat(hb.clone(), &view, &settings(), now)
                .unwrap_err()
                .0,
            ResponseError::UnsupportedAssignor
        );
        hb.server_assignor = None;
        hb.subscribed_topic_regex = Some("t(".into());
        assert_eq!(
            g.heartbeat(hb, &view, &settings(), now).unwrap_err().0,
            ResponseError::InvalidRegularExpression
        );
    }

    #[test]
    fn range_assignor_gives_contiguous_ranges() {
        let view = View(BTreeMap::from([("t".to_string(), 5)]));
        let subs = BTreeMap::from([
            ("a".to_string(), BTreeSet::from(["t".to_string()])),
            ("b".to_string(), BTreeSet::from(["t".to_string()])),
        ]);
        let r = assign_range(&subs, &view);
        assert_eq!(
            r["a"].iter().map(|t| t.1).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert_eq!(r["b"].iter().map(|t| t.1).collect::<Vec<_>>(), vec![3, 4]);
    }

    // ---- Scenarios as tables, through one helper ([`check`]) ----

    /// One step of a KIP-848 scenario, with what it must answer. Members are named; their
    /// epochs and owned partitions are tracked by the helper, which heartbeats exactly what
    /// a well-behaved client would (its epoch, and what it owns after applying the last
    /// assignment it was sent).
    #[derive(Debug, Clone)]
    enum Step {
        /// `who` joins (epoch 0) subscribing to topic names.
        Join(&'static str, &'static [&'static str]),
        /// `who` joins with a regular expression.
        JoinRegex(&'static str, &'static str),
        /// `who` joins as static member `instance`.
        JoinStatic(&'static str, &'static str, &'static [&'static str]),
        /// `who` heartbeats at its epoch and confirms what it owns.
        Beat(&'static str),
        /// `who` heartbeats at its epoch plus an offset: the error it gets.
        BeatAt(&'static str, i32, ResponseError),
        /// `who` changes its regex subscription (and heartbeats).
        Regex(&'static str, &'static str),
        /// `who` leaves (-1), or leaves as a static member for now (-2).
        Leave(&'static str, i32),
        /// Everyone heartbeats until nothing changes; no partition is ever owned twice.
        Settle,
        /// What `who` owns now (as topic, partition).
        Owns(&'static str, &'static [(&'static str, i32)]),
        /// How many partitions `who` owns now.
        OwnsN(&'static str, usize),
        /// `who`'s epoch equals the group's assignment epoch.
        AtAssignmentEpoch(&'static str, bool),
        /// OffsetCommit by `who` at its epoch plus an offset (v9).
        Commit(&'static str, i32, Option<ResponseError>),
        /// This many ms pass; the tick runs.
        Wait(u64),
        /// The group's state name.
        State(&'static str),
    }

    struct Run {
        g: ConsumerGroup,
        view: View,
        t0: Instant,
        now: Duration,
        /// Per member: epoch and owned partitions, as the client believes.
        members: BTreeMap<String, (i32, BTreeSet<TopicPart>)>,
    }

    impl Run {
        fn apply(&mut self, who: &str, a: HeartbeatAnswer) {
            let m = self.members.entry(who.to_string()).or_default();
            m.0 = a.member_epoch;
            if let Some(asg) = a.assignment {
                m.1 = asg;
            }
        }

        fn heartbeat(&mut self, hb: Heartbeat) -> Result<HeartbeatAnswer, (ResponseError, String)> {
            let now = self.t0 + self.now;
            self.g.heartbeat(hb, &self.view, &settings(), now)
        }

        fn beat(&mut self, who: &'static str) {
            let (epoch, owned) = self.members[who].clone();
            let a = self
                .heartbeat(Heartbeat {
                    member_id: who.into(),
                    member_epoch: epoch,
                    owned: Some(owned),
                    ..Heartbeat::default()
                })
                .unwrap_or_else(|e| panic!("{who}: {e:?}"));
            self.apply(who, a);
        }

        fn exclusive(&self) {
            let mut seen = BTreeSet::new();
            for (who, (_, ps)) in &self.members {
                for tp in ps {
                    assert!(seen.insert(tp.clone()), "{tp:?} owned twice ({who})");
                }
            }
        }

        fn join(&mut self, who: &'static str, hb: Heartbeat) {
            let a = self
                .heartbeat(Heartbeat {
                    member_id: who.into(),
                    member_epoch: 0,
                    rebalance_timeout_ms: 5_000,
                    ..hb
                })
                .unwrap_or_else(|e| panic!("{who} joins: {e:?}"));
            self.members.insert(who.to_string(), (0, BTreeSet::new()));
            self.apply(who, a);
        }

        fn step(&mut self, step: &Step) {
            match *step {
                Join(who, topics) => self.join(
                    who,
                    Heartbeat {
                        subscribed_topic_names: Some(
                            topics.iter().map(|t| t.to_string()).collect(),
                        ),
                        ..Heartbeat::default()
                    },
                ),
                JoinRegex(who, re) => self.join(
                    who,
                    Heartbeat {
                        subscribed_topic_regex: Some(re.into()),
                        ..Heartbeat::default()
                    },
                ),
                JoinStatic(who, instance, topics) => self.join(
                    who,
                    Heartbeat {
                        instance_id: Some(instance.into()),
                        subscribed_topic_names: Some(
                            topics.iter().map(|t| t.to_string()).collect(),
                        ),
                        ..Heartbeat::default()
                    },
                ),
                Beat(who) => self.beat(who),
                BeatAt(who, delta, want) => {
                    // A member the group does not know heartbeats at epoch 1 (0 would join).
                    let epoch = self.members.get(who).map_or(1, |m| m.0) + delta;
                    let got = self.heartbeat(Heartbeat {
                        member_id: who.into(),
                        member_epoch: epoch,
                        ..Heartbeat::default()
                    });
                    assert_eq!(got.map_err(|e| e.0).err(), Some(want));
                }
                Regex(who, re) => {
                    let (epoch, owned) = self.members[who].clone();
                    let a = self
                        .heartbeat(Heartbeat {
                            member_id: who.into(),
                            member_epoch: epoch,
                            subscribed_topic_regex: Some(re.into()),
                            owned: Some(owned),
                            ..Heartbeat::default()
                        })
                        .unwrap();
                    self.apply(who, a);
                }
                Leave(who, epoch) => {
                    let a = self
                        .heartbeat(Heartbeat {
                            member_id: who.into(),
                            member_epoch: epoch,
                            ..Heartbeat::default()
                        })
                        .unwrap();
                    assert_eq!(a.member_epoch, epoch);
                    self.members.remove(who);
                }
                Settle => {
                    for _ in 0..10 {
                        let names: Vec<String> = self.members.keys().cloned().collect();
                        for who in names {
                            let who: &'static str = Box::leak(who.into_boxed_str());
                            self.beat(who);
                            self.exclusive();
                        }
                    }
                }
                Owns(who, parts) => {
                    let want: BTreeSet<TopicPart> =
                        parts.iter().map(|(t, p)| (t.to_string(), *p)).collect();
                    assert_eq!(self.members[who].1, want);
                }
                OwnsN(who, n) => {
                    assert_eq!(self.members[who].1.len(), n, "{:?}", self.members[who])
                }
                AtAssignmentEpoch(who, yes) => {
                    assert_eq!(self.members[who].0 == self.g.assignment_epoch(), yes)
                }
                Commit(who, delta, want) => {
                    let epoch = self.members.get(who).map_or(0, |m| m.0) + delta;
                    assert_eq!(self.g.check_commit(who, epoch, true).err(), want);
                }
                Wait(ms) => {
                    self.now += Duration::from_millis(ms);
                    let now = self.t0 + self.now;
                    self.g.tick(&self.view, &settings(), now);
                }
                State(name) => assert_eq!(self.g.state_name(), name),
            }
        }
    }

    /// Runs `steps` against a new `uniform` group on topics t (4 partitions) and u (2),
    /// naming the scenario and step on failure.
    fn check(name: &str, steps: &[Step]) {
        let mut run = Run {
            g: ConsumerGroup::new("g", "uniform"),
            view: View(BTreeMap::from([("t".to_string(), 4), ("u".to_string(), 2)])),
            t0: Instant::now(),
            now: Duration::ZERO,
            members: BTreeMap::new(),
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

    use ResponseError::*;
    use Step::*;

    #[test]
    fn joins_and_reconciliation() {
        check(
            "a lone member gets everything it subscribes to",
            &[
                Join("a", &["t"]),
                Owns("a", &[("t", 0), ("t", 1), ("t", 2), ("t", 3)]),
                AtAssignmentEpoch("a", true),
                State("Stable"),
            ],
        );
        check(
            "a regex subscription; a new regex drops what it no longer matches",
            &[
                JoinRegex("a", "t|u"),
                OwnsN("a", 6),
                Regex("a", "u"),
                // Revocation first: t's partitions go, the epoch waits for the ack.
                Owns("a", &[("u", 0), ("u", 1)]),
                Beat("a"),
                Owns("a", &[("u", 0), ("u", 1)]),
                AtAssignmentEpoch("a", true),
                State("Stable"),
            ],
        );
    }

    #[test]
    fn revocation_order() {
        check(
            "a partition moves only after its old owner confirmed giving it up",
            &[
                Join("a", &["t"]),
                OwnsN("a", 4),
                Join("b", &["t"]),
                // b is told to wait: a still owns all four.
                OwnsN("b", 0),
                Beat("b"),
                OwnsN("b", 0),
                State("Reconciling"),
                // a is told to revoke two; its epoch stays until it confirms.
                Beat("a"),
                OwnsN("a", 2),
                AtAssignmentEpoch("a", false),
                Beat("b"),
                OwnsN("b", 0),
                // a confirms (its next heartbeat no longer lists them): b may take them.
                Beat("a"),
                AtAssignmentEpoch("a", true),
                Beat("b"),
                OwnsN("b", 2),
                AtAssignmentEpoch("b", true),
                State("Stable"),
            ],
        );
        check(
            "a member that does not revoke within its rebalance timeout is removed",
            &[
                Join("a", &["t"]),
                Join("b", &["t"]),
                Beat("a"),
                OwnsN("a", 2),
                // a never confirms; 5 s later (its rebalance timeout) it is gone.
                Wait(4_000),
                State("Reconciling"),
                Wait(1_100),
                BeatAt("a", 0, UnknownMemberId),
                Beat("b"),
                OwnsN("b", 4),
            ],
        );
    }

    #[test]
    fn sessions_and_static_members() {
        check(
            "a silent member expires after the session timeout and its partitions move",
            &[
                Join("a", &["t"]),
                Join("b", &["t"]),
                Settle,
                OwnsN("b", 2),
                Wait(30_000),
                Beat("b"),
                Wait(16_000),
                BeatAt("a", 0, UnknownMemberId),
                Beat("b"),
                OwnsN("b", 4),
            ],
        );
        check(
            "a static member that leaves for now keeps its partitions for its instance",
            &[
                JoinStatic("a", "ia", &["t"]),
                Join("b", &["t"]),
                Settle,
                Owns("a", &[("t", 0), ("t", 1)]),
                Leave("a", -2),
                JoinStatic("a2", "ia", &["t"]),
                Owns("a2", &[("t", 0), ("t", 1)]),
                Beat("b"),
                OwnsN("b", 2),
            ],
        );
        check(
            "a dynamic member that leaves hands its partitions over",
            &[
                Join("a", &["t"]),
                Join("b", &["t"]),
                Settle,
                Leave("a", -1),
                Beat("b"),
                OwnsN("b", 4),
                State("Stable"),
            ],
        );
    }

    #[test]
    fn epoch_fencing() {
        check(
            "heartbeats and commits at the wrong epoch",
            &[
                Join("a", &["t"]),
                BeatAt("a", 1, FencedMemberEpoch),
                BeatAt("zz", 0, UnknownMemberId),
                Commit("a", 0, None),
                Commit("a", 1, Some(FencedMemberEpoch)),
                Commit("a", -1, Some(StaleMemberEpoch)),
                Commit("zz", 0, Some(UnknownMemberId)),
            ],
        );
    }
}
