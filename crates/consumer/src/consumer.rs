//! [`Consumer`]: positions, the fetch loop behind `recv()`, seek, pause/resume and commits.
//!
//! Thread-safety: `Consumer` is `Send + Sync`; `recv` may be called from one task at a
//! time (concurrent calls each get different records). State lives behind a
//! `std::sync::Mutex` never held across an `.await`; group membership runs in its own task
//! ([`crate::group`]).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use futures::Stream;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use kafka_protocol::ResponseError;
use rafka_client::admin::{EARLIEST, LATEST, READ_COMMITTED, READ_UNCOMMITTED};
use rafka_client::{Client, ClientConfig, ClientError, GroupMetadata};

use crate::assignor::Assignor;
use crate::error::ConsumerError;
use crate::group;

const FETCH_VERSIONS: (i16, i16) = (4, 12);

/// A topic partition, as the consumer names it.
pub(crate) type Tp = (String, i32);

/// Called with the partitions assigned or revoked by a rebalance.
pub type RebalanceCallback = Arc<dyn Fn(&[(String, i32)]) + Send + Sync>;

/// Where to start when there is no committed offset (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// The log start offset.
    Earliest,
    /// The log end offset: only new records.
    Latest,
    /// Fail `recv` with [`ConsumerError::NoOffset`].
    Error,
}

/// Which records a fetch returns (`isolation.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// Every record up to the high watermark, aborted transactions' records included.
    ReadUncommitted,
    /// Records up to the last stable offset, without aborted transactions' records. The
    /// default here (the Java client's default is `read_uncommitted`).
    #[default]
    ReadCommitted,
}

impl IsolationLevel {
    fn wire(self) -> i8 {
        match self {
            IsolationLevel::ReadUncommitted => READ_UNCOMMITTED,
            IsolationLevel::ReadCommitted => READ_COMMITTED,
        }
    }
}

/// A consumed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Timestamp (ms).
    pub timestamp: i64,
    /// Key.
    pub key: Option<Bytes>,
    /// Value.
    pub value: Option<Bytes>,
    /// Headers in order.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Everything a [`Consumer`] is configured with (names follow the Java client).
#[derive(Clone)]
pub struct ConsumerConfig {
    /// Connection, metadata and retry settings.
    pub client: ClientConfig,
    /// `group.id`; needed for `subscribe` and for commits.
    pub group: Option<String>,
    /// Topics to subscribe to (group membership).
    pub topics: Vec<String>,
    /// Partitions to read without group membership.
    pub assignment: Vec<(String, i32)>,
    /// `auto.offset.reset`.
    pub auto_offset_reset: OffsetReset,
    /// `enable.auto.commit`.
    pub enable_auto_commit: bool,
    /// `auto.commit.interval.ms`.
    pub auto_commit_interval: Duration,
    /// `session.timeout.ms`.
    pub session_timeout: Duration,
    /// `heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// `max.poll.interval.ms` (the rebalance timeout).
    pub rebalance_timeout: Duration,
    /// `partition.assignment.strategy`, in preference order.
    pub assignors: Vec<Assignor>,
    /// `fetch.max.wait.ms`.
    pub fetch_max_wait: Duration,
    /// `max.partition.fetch.bytes`.
    pub partition_max_bytes: i32,
    /// `isolation.level`; [`IsolationLevel::ReadCommitted`] by default.
    pub isolation_level: IsolationLevel,
    /// Called after a rebalance with the new assignment.
    pub on_assigned: Option<RebalanceCallback>,
    /// Called before a rebalance with the partitions given up.
    pub on_revoked: Option<RebalanceCallback>,
}

impl Default for ConsumerConfig {
    fn default() -> ConsumerConfig {
        ConsumerConfig {
            client: ClientConfig::new("127.0.0.1:9092"),
            group: None,
            topics: Vec::new(),
            assignment: Vec::new(),
            auto_offset_reset: OffsetReset::Latest,
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(3),
            rebalance_timeout: Duration::from_secs(300),
            assignors: vec![Assignor::Range, Assignor::RoundRobin],
            fetch_max_wait: Duration::from_millis(500),
            partition_max_bytes: 1024 * 1024,
            isolation_level: IsolationLevel::ReadCommitted,
            on_assigned: None,
            on_revoked: None,
        }
    }
}

/// Builds a [`Consumer`].
#[derive(Default)]
pub struct ConsumerBuilder {
    cfg: ConsumerConfig,
}

impl ConsumerBuilder {
    /// Bootstrap addresses (comma-separated `host:port`).
    pub fn bootstrap(mut self, addrs: &str) -> Self {
        self.cfg.client.bootstrap = ClientConfig::new(addrs).bootstrap;
        self
    }
    /// `client.id`.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.cfg.client.client_id = id.into();
        self
    }
    /// `group.id`.
    pub fn group(mut self, g: impl Into<String>) -> Self {
        self.cfg.group = Some(g.into());
        self
    }
    /// Subscribe to topics (needs `group`).
    pub fn subscribe<I, S>(mut self, topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cfg.topics = topics.into_iter().map(Into::into).collect();
        self
    }
    /// Read these partitions without group membership.
    pub fn assign<I, S>(mut self, partitions: I) -> Self
    where
        I: IntoIterator<Item = (S, i32)>,
        S: Into<String>,
    {
        self.cfg.assignment = partitions.into_iter().map(|(t, p)| (t.into(), p)).collect();
        self
    }
    /// `auto.offset.reset`.
    pub fn auto_offset_reset(mut self, r: OffsetReset) -> Self {
        self.cfg.auto_offset_reset = r;
        self
    }
    /// `enable.auto.commit`.
    pub fn auto_commit(mut self, on: bool) -> Self {
        self.cfg.enable_auto_commit = on;
        self
    }
    /// `auto.commit.interval.ms`.
    pub fn auto_commit_interval(mut self, d: Duration) -> Self {
        self.cfg.auto_commit_interval = d;
        self
    }
    /// `session.timeout.ms`.
    pub fn session_timeout(mut self, d: Duration) -> Self {
        self.cfg.session_timeout = d;
        self
    }
    /// `heartbeat.interval.ms`.
    pub fn heartbeat_interval(mut self, d: Duration) -> Self {
        self.cfg.heartbeat_interval = d;
        self
    }
    /// `max.poll.interval.ms`.
    pub fn rebalance_timeout(mut self, d: Duration) -> Self {
        self.cfg.rebalance_timeout = d;
        self
    }
    /// `partition.assignment.strategy`.
    pub fn assignors(mut self, a: Vec<Assignor>) -> Self {
        self.cfg.assignors = a;
        self
    }
    /// `fetch.max.wait.ms`.
    pub fn fetch_max_wait(mut self, d: Duration) -> Self {
        self.cfg.fetch_max_wait = d;
        self
    }
    /// `isolation.level`.
    pub fn isolation_level(mut self, level: IsolationLevel) -> Self {
        self.cfg.isolation_level = level;
        self
    }
    /// Called after each rebalance with the partitions assigned.
    pub fn on_assigned(mut self, f: impl Fn(&[(String, i32)]) + Send + Sync + 'static) -> Self {
        self.cfg.on_assigned = Some(Arc::new(f));
        self
    }
    /// Called before each rebalance with the partitions revoked.
    pub fn on_revoked(mut self, f: impl Fn(&[(String, i32)]) + Send + Sync + 'static) -> Self {
        self.cfg.on_revoked = Some(Arc::new(f));
        self
    }
    /// `security.protocol` with its `ssl.*` and `sasl.*` settings.
    pub fn security(mut self, s: rafka_client::SecurityConfig) -> Self {
        self.cfg.client.security = s;
        self
    }
    /// Replaces the client config.
    pub fn client_config(mut self, c: ClientConfig) -> Self {
        self.cfg.client = c;
        self
    }

    /// Connects (and, with `subscribe`, starts joining the group).
    pub async fn build(self) -> Result<Consumer, ConsumerError> {
        let cfg = self.cfg;
        if !cfg.topics.is_empty() && cfg.group.is_none() {
            return Err(ConsumerError::Config("subscribe needs a group".into()));
        }
        if !cfg.topics.is_empty() && !cfg.assignment.is_empty() {
            return Err(ConsumerError::Config(
                "use either subscribe or assign, not both".into(),
            ));
        }
        if cfg.assignors.is_empty() {
            return Err(ConsumerError::Config("no assignor".into()));
        }
        let client = Client::connect(cfg.client.clone()).await?;
        let mut state = State::default();
        for tp in &cfg.assignment {
            state.assigned.insert(tp.clone(), PartState::default());
        }
        let shared = Arc::new(Shared {
            client,
            cfg,
            state: Mutex::new(state),
            last_commit: Mutex::new(Instant::now()),
        });
        let group_task = if shared.cfg.topics.is_empty() {
            None
        } else {
            Some(tokio::spawn(group::run(shared.clone())))
        };
        Ok(Consumer { shared, group_task })
    }
}

#[derive(Debug, Default, Clone)]
pub(crate) struct PartState {
    /// Next offset to hand out; `None` until resolved from commits or the reset policy.
    pub position: Option<i64>,
    pub paused: bool,
}

/// A fetched step of a partition: a record to hand out, or offsets to pass over (control
/// batches, aborted transactions' records, compaction gaps at the end of a fetch). It
/// applies only while the partition's position is still `from`; it moves it to `next`.
#[derive(Debug)]
pub(crate) struct Buffered {
    pub tp: Tp,
    pub from: i64,
    pub next: i64,
    pub record: Option<ConsumerRecord>,
}

#[derive(Default)]
pub(crate) struct State {
    pub assigned: BTreeMap<Tp, PartState>,
    pub buffer: VecDeque<Buffered>,
    /// Positions of records the application has finished with: what a commit sends.
    pub processed: BTreeMap<Tp, i64>,
    pub committed: BTreeMap<Tp, i64>,
    /// The last record handed out (its partition and offset + 1).
    pub delivered: Option<(Tp, i64)>,
    pub generation: i32,
    pub member_id: String,
    pub closed: bool,
    pub group_error: Option<ConsumerError>,
    /// Bumped on every assignment change.
    pub assignment_epoch: u64,
}

pub(crate) struct Shared {
    pub client: Client,
    pub cfg: ConsumerConfig,
    pub state: Mutex<State>,
    pub last_commit: Mutex<Instant>,
}

impl Shared {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("consumer lock")
    }

    /// Commits the processed positions that changed since the last commit.
    pub(crate) async fn commit_processed(&self) -> Result<(), ConsumerError> {
        let Some(group) = &self.cfg.group else {
            return Ok(());
        };
        let (offsets, generation, member) = {
            let mut st = self.lock();
            if let Some((tp, next)) = st.delivered.take() {
                st.processed.insert(tp, next);
            }
            let offsets: BTreeMap<Tp, i64> = st
                .processed
                .iter()
                .filter(|(tp, o)| st.committed.get(*tp) != Some(o) && st.assigned.contains_key(*tp))
                .map(|(tp, o)| (tp.clone(), *o))
                .collect();
            let (g, m) = if self.cfg.topics.is_empty() {
                (-1, String::new())
            } else {
                (st.generation, st.member_id.clone())
            };
            (offsets, g, m)
        };
        *self.last_commit.lock().expect("commit lock") = Instant::now();
        if offsets.is_empty() {
            return Ok(());
        }
        self.client
            .commit_offsets(group, generation, &member, &offsets)
            .await?;
        let mut st = self.lock();
        for (tp, o) in offsets {
            st.committed.insert(tp, o);
        }
        Ok(())
    }
}

/// An async Kafka consumer. See the crate docs.
pub struct Consumer {
    shared: Arc<Shared>,
    group_task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        if let Some(t) = &self.group_task {
            t.abort();
        }
    }
}

impl Consumer {
    /// A builder with the Java client's defaults (auto-commit every 5 s, reset to latest).
    pub fn builder() -> ConsumerBuilder {
        ConsumerBuilder::default()
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.shared.client
    }

    /// The group membership to hand to a transactional producer's
    /// `send_offsets_to_transaction` (`None` without a group). Outside group membership
    /// (`assign`) the generation is -1 and the member id empty.
    pub fn group_metadata(&self) -> Option<GroupMetadata> {
        let group = self.shared.cfg.group.clone()?;
        let st = self.shared.lock();
        let (generation_id, member_id) = if self.shared.cfg.topics.is_empty() {
            (-1, String::new())
        } else {
            (st.generation, st.member_id.clone())
        };
        Some(GroupMetadata {
            group_id: group,
            generation_id,
            member_id,
            group_instance_id: None,
        })
    }

    /// The partitions currently assigned.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.shared.lock().assigned.keys().cloned().collect()
    }

    /// The next record. Waits as long as it takes (each fetch is a bounded long poll);
    /// wrap in `tokio::time::timeout` to bound it.
    ///
    /// # Cancel safety
    /// Cancel-safe: a record is only taken from the buffer when it is returned.
    pub async fn recv(&self) -> Result<ConsumerRecord, ConsumerError> {
        loop {
            if let Some(r) = self.poll_buffer()? {
                return Ok(r);
            }
            if self.shared.cfg.enable_auto_commit {
                let due = self
                    .shared
                    .last_commit
                    .lock()
                    .expect("commit lock")
                    .elapsed()
                    >= self.shared.cfg.auto_commit_interval;
                if due {
                    if let Err(e) = self.shared.commit_processed().await {
                        tracing::debug!(error = %e, "auto-commit failed");
                    }
                }
            }
            self.resolve_positions().await?;
            if !self.fetch_once().await? {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// The records as a `Stream` (each item is one `recv`).
    pub fn stream(&self) -> impl Stream<Item = Result<ConsumerRecord, ConsumerError>> + '_ {
        futures::stream::unfold(self, |c| async move { Some((c.recv().await, c)) })
    }

    fn poll_buffer(&self) -> Result<Option<ConsumerRecord>, ConsumerError> {
        let mut st = self.shared.lock();
        if st.closed {
            return Err(ConsumerError::Closed);
        }
        if let Some(e) = st.group_error.take() {
            return Err(e);
        }
        // The record handed out last time is processed now that the caller asks again.
        if let Some((tp, next)) = st.delivered.take() {
            st.processed.insert(tp, next);
        }
        while let Some(b) = st.buffer.pop_front() {
            let Some(ps) = st.assigned.get_mut(&b.tp) else {
                continue;
            };
            // A seek or a rebalance since the fetch makes buffered records stale.
            if ps.paused || ps.position != Some(b.from) {
                continue;
            }
            ps.position = Some(b.next);
            if let Some(r) = b.record {
                st.delivered = Some((b.tp, b.next));
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    async fn resolve_positions(&self) -> Result<(), ConsumerError> {
        let missing: Vec<Tp> = self
            .shared
            .lock()
            .assigned
            .iter()
            .filter(|(_, p)| p.position.is_none())
            .map(|(tp, _)| tp.clone())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut found: BTreeMap<Tp, i64> = BTreeMap::new();
        if let Some(group) = &self.shared.cfg.group {
            let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for (t, p) in &missing {
                by_topic.entry(t.clone()).or_default().push(*p);
            }
            let q: Vec<(String, Vec<i32>)> = by_topic.into_iter().collect();
            found = self
                .shared
                .client
                .committed_offsets(group, Some(&q))
                .await?;
        }
        for tp in &missing {
            if !found.contains_key(tp) {
                let o = self.reset_offset(tp).await?;
                found.insert(tp.clone(), o);
            }
        }
        let mut st = self.shared.lock();
        for (tp, o) in found {
            if let Some(ps) = st.assigned.get_mut(&tp) {
                if ps.position.is_none() {
                    ps.position = Some(o);
                }
            }
        }
        Ok(())
    }

    async fn reset_offset(&self, tp: &Tp) -> Result<i64, ConsumerError> {
        let ts = match self.shared.cfg.auto_offset_reset {
            OffsetReset::Earliest => EARLIEST,
            OffsetReset::Latest => LATEST,
            OffsetReset::Error => {
                return Err(ConsumerError::NoOffset {
                    topic: tp.0.clone(),
                    partition: tp.1,
                })
            }
        };
        let got = self
            .shared
            .client
            .list_offsets_isolated(&tp.0, &[tp.1], ts, self.shared.cfg.isolation_level.wire())
            .await?;
        got.get(&tp.1).copied().ok_or_else(|| {
            ConsumerError::Client(ClientError::Protocol(format!(
                "no offset for {}-{} in ListOffsets answer",
                tp.0, tp.1
            )))
        })
    }

    /// One fetch per leader for the assigned, unpaused partitions. Returns whether anything
    /// was fetched for.
    async fn fetch_once(&self) -> Result<bool, ConsumerError> {
        let wanted: Vec<(Tp, i64)> = self
            .shared
            .lock()
            .assigned
            .iter()
            .filter(|(_, p)| !p.paused)
            .filter_map(|(tp, p)| p.position.map(|o| (tp.clone(), o)))
            .collect();
        if wanted.is_empty() {
            return Ok(false);
        }
        let client = &self.shared.client;
        let mut by_leader: BTreeMap<i32, Vec<(Tp, i64)>> = BTreeMap::new();
        for (tp, o) in wanted {
            let leader = client.leader(&tp.0, tp.1).await?;
            by_leader.entry(leader).or_default().push((tp, o));
        }
        for (leader, parts) in by_leader {
            let mut topics: Vec<FetchTopic> = Vec::new();
            for ((t, p), o) in &parts {
                let fp = FetchPartition::default()
                    .with_partition(*p)
                    .with_fetch_offset(*o)
                    .with_partition_max_bytes(self.shared.cfg.partition_max_bytes);
                match topics.iter_mut().find(|x| x.topic.0.as_str() == t) {
                    Some(x) => x.partitions.push(fp),
                    None => topics.push(
                        FetchTopic::default()
                            .with_topic(TopicName(StrBytes::from_string(t.clone())))
                            .with_partitions(vec![fp]),
                    ),
                }
            }
            let req = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(self.shared.cfg.fetch_max_wait.as_millis() as i32)
                .with_min_bytes(1)
                .with_max_bytes(50 * 1024 * 1024)
                .with_isolation_level(self.shared.cfg.isolation_level.wire())
                .with_topics(topics);
            let resp = match client.call_broker(leader, &req, FETCH_VERSIONS).await {
                Ok(r) => r,
                Err(e) if e.is_retriable() => {
                    tracing::debug!(error = %e, "fetch failed; retrying");
                    client.invalidate(&parts[0].0 .0);
                    tokio::time::sleep(client.config().retry_backoff).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            ClientError::check(resp.error_code, || "fetch".into())?;
            for t in resp.responses {
                let topic = t.topic.0.to_string();
                for p in t.partitions {
                    self.absorb(&topic, p).await?;
                }
            }
        }
        Ok(true)
    }

    async fn absorb(
        &self,
        topic: &str,
        p: kafka_protocol::messages::fetch_response::PartitionData,
    ) -> Result<(), ConsumerError> {
        let tp: Tp = (topic.to_string(), p.partition_index);
        match ResponseError::try_from_code(p.error_code) {
            None => {}
            Some(ResponseError::OffsetOutOfRange) => {
                let o = self.reset_offset(&tp).await?;
                if let Some(ps) = self.shared.lock().assigned.get_mut(&tp) {
                    ps.position = Some(o);
                }
                return Ok(());
            }
            Some(e) if e.is_retriable() => {
                self.shared.client.invalidate(topic);
                return Ok(());
            }
            Some(error) => {
                return Err(ClientError::Kafka {
                    context: format!("fetch {topic}-{}", p.partition_index),
                    error,
                }
                .into())
            }
        }
        let Some(mut data) = p.records else {
            return Ok(());
        };
        let from = match self.shared.lock().assigned.get(&tp) {
            Some(ps) => ps.position,
            None => None,
        };
        let Some(from) = from else { return Ok(()) };
        let read_committed = self.shared.cfg.isolation_level == IsolationLevel::ReadCommitted;
        // Aborted transactions overlapping the answer, by first offset (read_committed).
        let mut aborted: Vec<(i64, i64)> = p
            .aborted_transactions
            .unwrap_or_default()
            .iter()
            .map(|a| (a.first_offset, a.producer_id.0))
            .collect();
        aborted.sort_unstable();
        let mut aborted = aborted.into_iter().peekable();
        // Producers whose aborted transaction the batches are inside.
        let mut aborting: HashSet<i64> = HashSet::new();
        let mut out = Vec::new();
        // Where the next step starts, and how far whole batches reach.
        let mut cursor = from;
        let mut end = from;
        // Whole batches only: the answer may end in a partial one (max bytes).
        while data.remaining() >= 12 {
            let len = i32::from_be_bytes([data[8], data[9], data[10], data[11]]);
            let total = 12 + len.max(0) as usize;
            if len <= 0 || data.remaining() < total {
                break;
            }
            let mut batch = data.split_to(total);
            let header = BatchHeader::parse(&batch);
            if let Some(h) = &header {
                end = end.max(h.last_offset + 1);
                if read_committed {
                    while let Some(&(first, pid)) = aborted.peek() {
                        if first > h.last_offset {
                            break;
                        }
                        aborting.insert(pid);
                        aborted.next();
                    }
                    if h.transactional && !h.control && aborting.contains(&h.producer_id) {
                        continue;
                    }
                }
            }
            let set =
                RecordBatchDecoder::decode(&mut batch).map_err(|e| ConsumerError::Decode {
                    topic: topic.to_string(),
                    partition: p.partition_index,
                    reason: e.to_string(),
                })?;
            if header.as_ref().is_some_and(|h| h.control) {
                // A commit or abort marker: never delivered; an abort marker ends the
                // producer's aborted transaction.
                let abort = set
                    .records
                    .first()
                    .and_then(|r| r.key.as_ref())
                    .is_some_and(|k| k.len() >= 4 && k[2] == 0 && k[3] == 0);
                if abort {
                    if let Some(h) = &header {
                        aborting.remove(&h.producer_id);
                    }
                }
                continue;
            }
            for r in set.records {
                end = end.max(r.offset + 1);
                if r.control || r.offset < from {
                    continue;
                }
                let step_from = cursor;
                cursor = r.offset + 1;
                out.push(Buffered {
                    tp: tp.clone(),
                    from: step_from,
                    next: cursor,
                    record: Some(ConsumerRecord {
                        topic: topic.to_string(),
                        partition: p.partition_index,
                        offset: r.offset,
                        timestamp: r.timestamp,
                        key: r.key,
                        value: r.value,
                        headers: r
                            .headers
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v))
                            .collect(),
                    }),
                });
            }
        }
        if end > cursor {
            // Markers, aborted records or gaps after the last record handed out.
            out.push(Buffered {
                tp: tp.clone(),
                from: cursor,
                next: end,
                record: None,
            });
        }
        let mut st = self.shared.lock();
        if st.assigned.get(&tp).and_then(|ps| ps.position) == Some(from) {
            st.buffer.extend(out);
        }
        Ok(())
    }

    /// Moves the position of an assigned partition: the next `recv` from it returns
    /// `offset`.
    pub fn seek(&self, topic: &str, partition: i32, offset: i64) -> Result<(), ConsumerError> {
        let mut st = self.shared.lock();
        match st.assigned.get_mut(&(topic.to_string(), partition)) {
            Some(ps) => {
                ps.position = Some(offset);
                Ok(())
            }
            None => Err(ConsumerError::NotAssigned {
                topic: topic.into(),
                partition,
            }),
        }
    }

    /// The position (next offset to return) of an assigned partition, when known.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.shared
            .lock()
            .assigned
            .get(&(topic.to_string(), partition))
            .and_then(|p| p.position)
    }

    /// Stops returning records from these partitions until `resume`.
    pub fn pause(&self, partitions: &[(String, i32)]) {
        let mut st = self.shared.lock();
        for tp in partitions {
            if let Some(ps) = st.assigned.get_mut(tp) {
                ps.paused = true;
            }
        }
    }

    /// Resumes paused partitions.
    pub fn resume(&self, partitions: &[(String, i32)]) {
        let mut st = self.shared.lock();
        for tp in partitions {
            if let Some(ps) = st.assigned.get_mut(tp) {
                ps.paused = false;
            }
        }
    }

    /// Commits the positions of every record returned so far (including the last one).
    pub async fn commit(&self) -> Result<(), ConsumerError> {
        if self.shared.cfg.group.is_none() {
            return Err(ConsumerError::Config("commit needs a group".into()));
        }
        self.shared.commit_processed().await
    }

    /// Commits (with auto-commit), leaves the group and stops.
    pub async fn close(mut self) -> Result<(), ConsumerError> {
        let mut commit = Ok(());
        if self.shared.cfg.enable_auto_commit {
            // A rebalance may be completing (the group moved to a new generation and the
            // membership task is about to learn it): give it a few heartbeats.
            for attempt in 0..10 {
                commit = self.shared.commit_processed().await;
                let mid_rebalance = matches!(
                    &commit,
                    Err(ConsumerError::Client(e)) if matches!(
                        e.kafka_error(),
                        Some(ResponseError::IllegalGeneration | ResponseError::RebalanceInProgress)
                    )
                );
                if !mid_rebalance || attempt == 9 {
                    break;
                }
                tokio::time::sleep(
                    self.shared
                        .cfg
                        .heartbeat_interval
                        .min(Duration::from_millis(500)),
                )
                .await;
            }
        }
        self.shared.lock().closed = true;
        if let Some(task) = self.group_task.take() {
            task.abort();
            group::leave(&self.shared).await;
        }
        commit
    }
}

/// What the consumer reads of a record batch header (magic 2).
struct BatchHeader {
    last_offset: i64,
    producer_id: i64,
    transactional: bool,
    control: bool,
}

impl BatchHeader {
    /// Base offset (0), length (8), leader epoch (12), magic (16), CRC (17), attributes
    /// (21), last offset delta (23), timestamps (27, 35), producer id (43).
    fn parse(b: &[u8]) -> Option<BatchHeader> {
        if b.len() < 61 || b[16] != 2 {
            return None;
        }
        let base = i64::from_be_bytes(b[0..8].try_into().ok()?);
        let attributes = i16::from_be_bytes(b[21..23].try_into().ok()?);
        let delta = i32::from_be_bytes(b[23..27].try_into().ok()?);
        Some(BatchHeader {
            last_offset: base.saturating_add(i64::from(delta.max(0))),
            producer_id: i64::from_be_bytes(b[43..51].try_into().ok()?),
            transactional: attributes & 0x10 != 0,
            control: attributes & 0x20 != 0,
        })
    }
}
