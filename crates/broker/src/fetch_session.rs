//! KIP-227 incremental fetch sessions, sans IO: the broker's bounded cache of what each
//! consumer fetches, so that a consumer of many partitions names only the partitions whose
//! fetch position changed, and hears only about the partitions that have something new.
//!
//! The request's `(session_id, session_epoch)` says what it is (Fetch v7+):
//! - epoch -1 (`FINAL_EPOCH`): sessionless, as before v7; a session id with it closes that
//!   session. The answer carries session id 0.
//! - epoch 0 (`INITIAL_EPOCH`): a full fetch. A session id with it closes that session first.
//!   The answer opens a new session (its id in the answer, next epoch 1) if the cache has room.
//! - any other epoch: an incremental fetch of session `session_id`, which must exist
//!   (FETCH_SESSION_ID_NOT_FOUND) and expect this epoch (INVALID_FETCH_SESSION_EPOCH), and
//!   use topic ids exactly when the request version does (v13+; FETCH_SESSION_TOPIC_ID_ERROR).
//!   The partitions it names are added or updated, `forgotten_topics_data` dropped, and every
//!   partition of the session is read; the answer lists a partition only if it has records,
//!   an error, or a high watermark, last stable offset or log start offset other than the
//!   one the session last sent. Partitions that returned records move to the end of the
//!   session's order, so a `max_bytes` budget is shared fairly over fetches. The epoch after
//!   `i32::MAX` is 1. A session left empty closes, and that answer is sessionless.
//!
//! What the session remembers is only what its answers carried: a throttled answer keeps
//! its partitions and marks (only the records are dropped), so the client has seen what
//! the session records; fetch positions come from the client alone. Sessions belong to no
//! connection (a client may reconnect and go on).
//!
//! The cache holds at most `max.incremental.fetch.session.cache.slots` sessions (Kafka's
//! name and default, 1000; 0 turns sessions off). When it is full a new session takes the
//! place of the least recently used one if that one was idle for 2 minutes (Kafka's
//! eviction time), else of the session with the fewest partitions (the least recently used
//! of those) if the new one has more partitions; else the full fetch is answered
//! sessionless. Rafka's simplification of Kafka's policy, which also prefers followers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::FetchableTopicResponse;
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kafka_protocol::ResponseError;

use rafka_core::limits::FETCH_SESSION_PARTITIONS_MAX;

/// The epoch of a full fetch that opens a session.
pub(crate) const INITIAL_EPOCH: i32 = 0;
/// The epoch of a sessionless fetch, or of one that closes its session.
pub(crate) const FINAL_EPOCH: i32 = -1;
/// The session id of no session.
pub(crate) const NO_SESSION: i32 = 0;
/// The first Fetch version with sessions (KIP-227).
pub(crate) const SESSION_FETCH_VERSION_MIN: i16 = 7;
/// The first Fetch version naming topics by id (KIP-516).
const TOPIC_ID_FETCH_VERSION_MIN: i16 = 13;
/// A session idle this long may give its slot to any new session (Kafka's
/// `FetchSessionCache` eviction time).
const IDLE_EVICTION: Duration = Duration::from_secs(120);

/// The epoch the request after one of `epoch` carries (Kafka's `nextEpoch`).
fn next_epoch(epoch: i32) -> i32 {
    if epoch < 0 {
        FINAL_EPOCH
    } else if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

/// A partition as a request entry names it: by name before v13 (the id then nil), by id
/// from v13 (the name then empty).
type PartitionKey = (TopicName, uuid::Uuid, i32);

/// One partition of a session: the client's position and limits, and the marks the
/// session's answers last carried.
#[derive(Debug, Clone)]
struct CachedPartition {
    topic: TopicName,
    topic_id: uuid::Uuid,
    request: FetchPartition,
    sent: Sent,
}

impl CachedPartition {
    fn key(&self) -> PartitionKey {
        (self.topic.clone(), self.topic_id, self.request.partition)
    }
}

/// The marks a session's answers last carried for a partition. A partition read with no
/// records, no error and these same marks is left out of the answer: [`Session::narrow`]
/// would drop it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    /// -1: never sent, or the last answer was an error (the next one includes it).
    pub(crate) high_watermark: i64,
    pub(crate) last_stable_offset: i64,
    pub(crate) log_start_offset: i64,
}

impl Sent {
    /// A partition new to the session: its next answer includes it.
    const NOTHING: Sent = Sent {
        high_watermark: -1,
        last_stable_offset: -1,
        log_start_offset: -1,
    };
}

#[derive(Debug)]
struct Session {
    /// The epoch the next incremental fetch must carry.
    epoch: i32,
    uses_topic_ids: bool,
    /// In fetch order.
    partitions: Vec<CachedPartition>,
    index: HashMap<PartitionKey, usize>,
    last_used: Instant,
    /// Taken out of the cache: fetches still holding it answer FETCH_SESSION_ID_NOT_FOUND.
    closed: bool,
}

impl Session {
    fn reindex(&mut self) {
        self.index = self
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| (p.key(), i))
            .collect();
    }

    /// Adds or updates the partitions `req` names, then drops its forgotten ones.
    fn update(&mut self, req: &FetchRequest) {
        for ft in &req.topics {
            for fp in &ft.partitions {
                let key = (ft.topic.clone(), ft.topic_id, fp.partition);
                match self.index.get(&key) {
                    Some(&i) => self.partitions[i].request = fp.clone(),
                    None => {
                        self.index.insert(key, self.partitions.len());
                        self.partitions.push(CachedPartition {
                            topic: ft.topic.clone(),
                            topic_id: ft.topic_id,
                            request: fp.clone(),
                            sent: Sent::NOTHING,
                        });
                    }
                }
            }
        }
        if req
            .forgotten_topics_data
            .iter()
            .all(|f| f.partitions.is_empty())
        {
            return;
        }
        let mut forgotten = std::collections::HashSet::new();
        for f in &req.forgotten_topics_data {
            for &p in &f.partitions {
                forgotten.insert((f.topic.clone(), f.topic_id, p));
            }
        }
        self.partitions.retain(|p| !forgotten.contains(&p.key()));
        self.reindex();
    }

    /// The marks last sent for every partition of the session, in its order (that of
    /// [`Session::request`]'s partitions).
    fn sent(&self) -> Vec<Sent> {
        self.partitions.iter().map(|p| p.sent).collect()
    }

    /// The fetch of every partition of the session, in its order, with `req`'s limits.
    fn request(&self, req: &FetchRequest) -> FetchRequest {
        // One entry per run of the same topic, each sized once (no growing a thousand
        // partitions one push at a time).
        let topics: Vec<FetchTopic> = self
            .partitions
            .chunk_by(|a, b| a.topic == b.topic && a.topic_id == b.topic_id)
            .map(|run| {
                let mut t = FetchTopic::default();
                t.topic = run[0].topic.clone();
                t.topic_id = run[0].topic_id;
                t.partitions = run.iter().map(|p| p.request.clone()).collect();
                t
            })
            .collect();
        let mut full = req.clone();
        full.topics = topics;
        full.forgotten_topics_data = Vec::new();
        full
    }

    /// Narrows the answer of an incremental fetch (every partition of the session, in the
    /// session's order at `begin`) to what must be sent, and records what it carries.
    fn narrow(&mut self, resp: &mut FetchResponse) {
        // The answer follows the session's order at `begin`, so each partition is found
        // where the last one was, plus one; the index is asked only if that is not it.
        let mut moved = vec![false; self.partitions.len()];
        let mut next = 0usize;
        for t in &mut resp.responses {
            let FetchableTopicResponse {
                topic,
                topic_id,
                partitions,
                ..
            } = t;
            partitions.retain(|pd| {
                let at = |i: usize| {
                    self.partitions.get(i).is_some_and(|c| {
                        c.request.partition == pd.partition_index
                            && c.topic_id == *topic_id
                            && c.topic == *topic
                    })
                };
                let i = if at(next) {
                    next
                } else {
                    match self
                        .index
                        .get(&(topic.clone(), *topic_id, pd.partition_index))
                    {
                        Some(&i) => i,
                        None => return true,
                    }
                };
                next = i + 1;
                let c = &mut self.partitions[i].sent;
                let has_records = pd.records.as_ref().is_some_and(|r| !r.is_empty());
                let mut send = has_records;
                if pd.error_code != 0 {
                    c.high_watermark = -1;
                    send = true;
                } else if c.high_watermark != pd.high_watermark {
                    c.high_watermark = pd.high_watermark;
                    send = true;
                }
                if c.last_stable_offset != pd.last_stable_offset {
                    c.last_stable_offset = pd.last_stable_offset;
                    send = true;
                }
                if c.log_start_offset != pd.log_start_offset {
                    c.log_start_offset = pd.log_start_offset;
                    send = true;
                }
                if pd.diverging_epoch.epoch >= 0 || pd.preferred_read_replica.0 >= 0 {
                    send = true;
                }
                moved[i] |= has_records;
                send
            });
        }
        resp.responses.retain(|t| !t.partitions.is_empty());
        let n_moved = moved.iter().filter(|&&m| m).count();
        if n_moved > 0 {
            // Those that returned records go last, in the session's order; the index
            // follows them without hashing anything again. Each partition moves once (those
            // going last twice), into vectors sized up front.
            let mut new_position = vec![0usize; moved.len()];
            let mut order = Vec::with_capacity(moved.len());
            let mut last = Vec::with_capacity(n_moved);
            for (old, p) in std::mem::take(&mut self.partitions).into_iter().enumerate() {
                if moved[old] {
                    last.push((old, p));
                } else {
                    new_position[old] = order.len();
                    order.push(p);
                }
            }
            for (old, p) in last {
                new_position[old] = order.len();
                order.push(p);
            }
            self.partitions = order;
            for i in self.index.values_mut() {
                *i = new_position[*i];
            }
        }
    }
}

/// What a Fetch is, as far as sessions go.
#[derive(Debug)]
pub(crate) enum FetchContext {
    /// Answer the request's partitions with session id 0.
    Sessionless,
    /// A full fetch: its answer opens a session if the cache has room.
    Full,
    /// An incremental fetch of session `id`: `request` reads every partition of it.
    Incremental {
        id: i32,
        /// The session's epoch once this fetch is answered.
        epoch: i32,
        request: Box<FetchRequest>,
        /// What the session last sent of each partition of `request`, in its order: a
        /// partition caught up with these marks may be left out of the answer unread.
        sent: Vec<Sent>,
    },
    /// Answer with this top-level error, no partitions, session id 0.
    Error(ResponseError),
}

/// The broker's fetch sessions (see the module docs).
///
/// Thread-safety: the map of sessions sits behind a read-write lock, taken for read to find
/// a session and for write only to add or remove one; each session has its own mutex. So
/// incremental fetches of different sessions (the common path: find, update, respond) never
/// wait for each other, only, briefly, for a session being opened or closed. Lock order:
/// the map before a session (an incremental step holding its session's lock never takes
/// the map's). No lock is held across an `.await`.
#[derive(Debug)]
pub(crate) struct FetchSessions {
    slots: usize,
    /// Bound on `n_partitions` (`FETCH_SESSION_PARTITIONS_MAX`; smaller in tests).
    partitions_max: usize,
    sessions: RwLock<HashMap<i32, Arc<Mutex<Session>>>>,
    /// Partitions of all open sessions, never above `partitions_max`. Invariant: it is the
    /// sum of the open sessions' partitions; a session's share changes only under its lock
    /// (by the fetch that changes its partitions, or by whoever closes it).
    n_partitions: AtomicUsize,
}

impl FetchSessions {
    /// A cache of at most `slots` sessions (`max.incremental.fetch.session.cache.slots`).
    pub(crate) fn new(slots: usize) -> FetchSessions {
        FetchSessions::bounded(slots, FETCH_SESSION_PARTITIONS_MAX)
    }

    fn bounded(slots: usize, partitions_max: usize) -> FetchSessions {
        FetchSessions {
            slots,
            partitions_max,
            sessions: RwLock::new(HashMap::new()),
            n_partitions: AtomicUsize::new(0),
        }
    }

    /// Sessions held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.sessions.read().len()
    }

    /// Partitions of all sessions, as counted.
    #[cfg(test)]
    fn n_partitions(&self) -> usize {
        self.n_partitions.load(Ordering::Acquire)
    }

    /// Partitions of all sessions, as held.
    #[cfg(test)]
    fn n_partitions_held(&self) -> usize {
        self.sessions
            .read()
            .values()
            .map(|s| s.lock().partitions.len())
            .sum()
    }

    /// Takes `n` more partitions from the bound; whether there was room.
    fn reserve(&self, n: usize) -> bool {
        self.n_partitions
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |total| {
                total.checked_add(n).filter(|&t| t <= self.partitions_max)
            })
            .is_ok()
    }

    fn release(&self, n: usize) {
        self.n_partitions.fetch_sub(n, Ordering::AcqRel);
    }

    /// Marks `session` closed (a fetch still holding it answers FETCH_SESSION_ID_NOT_FOUND)
    /// and gives back its partitions, `counted` of which `n_partitions` holds. Called under
    /// its lock, once.
    fn close_counted(&self, session: &mut Session, counted: usize) {
        debug_assert!(!session.closed, "a session is closed once");
        session.closed = true;
        self.release(counted);
        session.partitions = Vec::new();
        session.index = HashMap::new();
    }

    fn close(&self, session: &mut Session) {
        let counted = session.partitions.len();
        self.close_counted(session, counted);
    }

    /// Removes and closes session `id`, if there is one.
    fn remove(&self, id: i32) {
        let mut sessions = self.sessions.write();
        if let Some(s) = sessions.remove(&id) {
            let mut s = s.lock();
            if !s.closed {
                self.close(&mut s);
            }
        }
    }

    /// Drops `entry` (already closed) from the map, unless `id` names another session now.
    fn forget(&self, id: i32, entry: &Arc<Mutex<Session>>) {
        let mut sessions = self.sessions.write();
        if sessions.get(&id).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            sessions.remove(&id);
        }
    }

    fn find(&self, id: i32) -> Option<Arc<Mutex<Session>>> {
        self.sessions.read().get(&id).cloned()
    }

    /// What `req` is; an incremental fetch updates its session and advances its epoch.
    pub(crate) fn begin(&self, req: &FetchRequest, version: i16, now: Instant) -> FetchContext {
        if version < SESSION_FETCH_VERSION_MIN {
            return FetchContext::Sessionless;
        }
        let (id, epoch) = (req.session_id, req.session_epoch);
        if epoch == FINAL_EPOCH || epoch == INITIAL_EPOCH {
            if id != NO_SESSION {
                self.remove(id);
            }
            return if epoch == FINAL_EPOCH || self.slots == 0 {
                FetchContext::Sessionless
            } else {
                FetchContext::Full
            };
        }
        let Some(entry) = self.find(id) else {
            return FetchContext::Error(ResponseError::FetchSessionIdNotFound);
        };
        let mut session = entry.lock();
        if session.closed {
            return FetchContext::Error(ResponseError::FetchSessionIdNotFound);
        }
        if session.epoch != epoch {
            return FetchContext::Error(ResponseError::InvalidFetchSessionEpoch);
        }
        if session.uses_topic_ids != (version >= TOPIC_ID_FETCH_VERSION_MIN) {
            return FetchContext::Error(ResponseError::FetchSessionTopicIdError);
        }
        let before = session.partitions.len();
        session.update(req);
        let after = session.partitions.len();
        let fits = match after.checked_sub(before) {
            Some(added) => self.reserve(added),
            None => {
                self.release(before - after);
                true
            }
        };
        if after == 0 || !fits {
            // Past the bound, what was added is not counted: the session's share is `before`.
            let counted = if fits { after } else { before };
            self.close_counted(&mut session, counted);
            drop(session);
            self.forget(id, &entry);
            return FetchContext::Sessionless;
        }
        session.last_used = now;
        session.epoch = next_epoch(epoch);
        FetchContext::Incremental {
            id,
            epoch: session.epoch,
            request: Box::new(session.request(req)),
            sent: session.sent(),
        }
    }

    /// Opens a session for the full fetch `req` answered by `resp` (its partitions in the
    /// request's order) if there is room; returns its id, or 0.
    pub(crate) fn open(
        &self,
        req: &FetchRequest,
        version: i16,
        resp: &FetchResponse,
        now: Instant,
    ) -> i32 {
        if self.slots == 0 {
            return NO_SESSION;
        }
        let mut partitions = Vec::new();
        for (ft, rt) in req.topics.iter().zip(&resp.responses) {
            for (fp, pd) in ft.partitions.iter().zip(&rt.partitions) {
                let ok = pd.error_code == 0;
                partitions.push(CachedPartition {
                    topic: ft.topic.clone(),
                    topic_id: ft.topic_id,
                    request: fp.clone(),
                    sent: Sent {
                        high_watermark: if ok { pd.high_watermark } else { -1 },
                        last_stable_offset: pd.last_stable_offset,
                        log_start_offset: pd.log_start_offset,
                    },
                });
            }
        }
        let mut session = Session {
            epoch: next_epoch(INITIAL_EPOCH),
            uses_topic_ids: version >= TOPIC_ID_FETCH_VERSION_MIN,
            partitions,
            index: HashMap::new(),
            last_used: now,
            closed: false,
        };
        session.reindex();
        // A partition named twice keeps its first entry.
        if session.index.len() != session.partitions.len() {
            let mut seen = std::collections::HashSet::new();
            session.partitions.retain(|p| seen.insert(p.key()));
            session.reindex();
        }
        let n = session.partitions.len();
        if !self.reserve(n) {
            return NO_SESSION;
        }
        let mut sessions = self.sessions.write();
        if sessions.len() >= self.slots && !self.evict(&mut sessions, n, now) {
            drop(sessions);
            self.release(n);
            return NO_SESSION;
        }
        let id = loop {
            let random = uuid::Uuid::new_v4();
            let b = random.as_bytes();
            let id = i32::from_be_bytes([b[0], b[1], b[2], b[3]]) & i32::MAX;
            if id != NO_SESSION && !sessions.contains_key(&id) {
                break id;
            }
        };
        sessions.insert(id, Arc::new(Mutex::new(session)));
        id
    }

    /// Narrows the answer of incremental fetch `id` (every partition of the session, in the
    /// session's order at `begin`) to what must be sent, and records what it carries.
    pub(crate) fn respond(
        &self,
        id: i32,
        epoch: i32,
        resp: &mut FetchResponse,
    ) -> Result<(), ResponseError> {
        let Some(entry) = self.find(id) else {
            return Err(ResponseError::FetchSessionIdNotFound);
        };
        let mut session = entry.lock();
        if session.closed {
            return Err(ResponseError::FetchSessionIdNotFound);
        }
        if session.epoch != epoch {
            return Err(ResponseError::InvalidFetchSessionEpoch);
        }
        session.narrow(resp);
        Ok(())
    }

    /// Frees a slot for a new session of `n_partitions` (module docs); whether one was
    /// freed. Called with the map locked for write; locks each session in turn to read it.
    fn evict(
        &self,
        sessions: &mut HashMap<i32, Arc<Mutex<Session>>>,
        n_partitions: usize,
        now: Instant,
    ) -> bool {
        let mut lru: Option<(Instant, i32)> = None;
        let mut smallest: Option<((usize, Instant), i32)> = None;
        for (&id, s) in sessions.iter() {
            let s = s.lock();
            let key = (s.partitions.len(), s.last_used);
            if lru.is_none_or(|(t, _)| s.last_used < t) {
                lru = Some((s.last_used, id));
            }
            if smallest.is_none_or(|(k, _)| key < k) {
                smallest = Some((key, id));
            }
        }
        let victim = match (lru, smallest) {
            (Some((last_used, id)), _)
                if now.saturating_duration_since(last_used) >= IDLE_EVICTION =>
            {
                id
            }
            (_, Some(((n, _), id))) if n < n_partitions => id,
            _ => return false,
        };
        if let Some(s) = sessions.remove(&victim) {
            let mut s = s.lock();
            if !s.closed {
                self.close(&mut s);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_request::ForgottenTopic;
    use kafka_protocol::messages::fetch_response::PartitionData;

    fn name(s: &str) -> TopicName {
        crate::api::wire_topic(s)
    }

    fn request(id: i32, epoch: i32, parts: &[(&str, i32, i64)]) -> FetchRequest {
        let mut topics: Vec<FetchTopic> = Vec::new();
        for &(t, p, offset) in parts {
            let fp = FetchPartition::default()
                .with_partition(p)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20);
            match topics.last_mut() {
                Some(ft) if ft.topic == name(t) => ft.partitions.push(fp),
                _ => topics.push(
                    FetchTopic::default()
                        .with_topic(name(t))
                        .with_partitions(vec![fp]),
                ),
            }
        }
        FetchRequest::default()
            .with_session_id(id)
            .with_session_epoch(epoch)
            .with_topics(topics)
    }

    /// The answer to `req` with every partition at high watermark `hw`, `records` bytes of
    /// records for partition `with_data`.
    fn answer(req: &FetchRequest, hw: i64, with_data: Option<i32>) -> FetchResponse {
        FetchResponse::default().with_responses(
            req.topics
                .iter()
                .map(|ft| {
                    FetchableTopicResponse::default()
                        .with_topic(ft.topic.clone())
                        .with_partitions(
                            ft.partitions
                                .iter()
                                .map(|fp| {
                                    let records = if Some(fp.partition) == with_data {
                                        bytes::Bytes::from_static(b"batch")
                                    } else {
                                        bytes::Bytes::new()
                                    };
                                    PartitionData::default()
                                        .with_partition_index(fp.partition)
                                        .with_high_watermark(hw)
                                        .with_last_stable_offset(hw)
                                        .with_log_start_offset(0)
                                        .with_records(Some(records))
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
    }

    fn partitions(resp: &FetchResponse) -> Vec<i32> {
        resp.responses
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.partition_index))
            .collect()
    }

    fn opened(cache: &FetchSessions, n: i32, now: Instant) -> i32 {
        let parts: Vec<(&str, i32, i64)> = (0..n).map(|p| ("t", p, 0)).collect();
        let req = request(0, 0, &parts);
        assert!(matches!(cache.begin(&req, 12, now), FetchContext::Full));
        cache.open(&req, 12, &answer(&req, 5, None), now)
    }

    fn incremental(cache: &FetchSessions, req: &FetchRequest, now: Instant) -> (i32, FetchRequest) {
        match cache.begin(req, 12, now) {
            FetchContext::Incremental { epoch, request, .. } => (epoch, *request),
            other => panic!("not incremental: {other:?}"),
        }
    }

    #[test]
    fn incremental_answers_list_only_what_changed() {
        let cache = FetchSessions::new(10);
        let now = Instant::now();
        let id = opened(&cache, 3, now);
        assert_ne!(id, NO_SESSION);

        // Nothing changed: every partition is read, none is answered.
        let (epoch, full) = incremental(&cache, &request(id, 1, &[]), now);
        assert_eq!(epoch, 2);
        assert_eq!(partitions(&answer(&full, 5, None)), vec![0, 1, 2]);
        let mut resp = answer(&full, 5, None);
        cache.respond(id, epoch, &mut resp).unwrap();
        assert!(resp.responses.is_empty());

        // Records for 1 and a new high watermark everywhere; then 1 moves to the end.
        let (epoch, full) = incremental(&cache, &request(id, 2, &[("t", 1, 5)]), now);
        assert_eq!(full.topics[0].partitions[1].fetch_offset, 5);
        let mut resp = answer(&full, 5, Some(1));
        cache.respond(id, epoch, &mut resp).unwrap();
        assert_eq!(partitions(&resp), vec![1]);
        let (epoch, full) = incremental(&cache, &request(id, 3, &[]), now);
        assert_eq!(partitions(&answer(&full, 0, None)), vec![0, 2, 1]);
        let mut resp = answer(&full, 9, None);
        cache.respond(id, epoch, &mut resp).unwrap();
        assert_eq!(partitions(&resp), vec![0, 2, 1]);

        // Forgotten partitions leave the session; a session left empty closes.
        // (The index follows the new order: naming 2 updates 2.)
        let mut req = request(id, 4, &[("t", 2, 7)]);
        req.forgotten_topics_data = vec![ForgottenTopic::default()
            .with_topic(name("t"))
            .with_partitions(vec![0, 1])];
        let (_, full) = incremental(&cache, &req, now);
        assert_eq!(partitions(&answer(&full, 0, None)), vec![2]);
        assert_eq!(full.topics[0].partitions[0].fetch_offset, 7);
        req.topics.clear();
        req.session_epoch = 5;
        req.forgotten_topics_data[0].partitions = vec![2];
        assert!(matches!(
            cache.begin(&req, 12, now),
            FetchContext::Sessionless
        ));
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn wrong_epoch_unknown_id_and_topic_id_switch_are_errors() {
        let cache = FetchSessions::new(10);
        let now = Instant::now();
        let id = opened(&cache, 1, now);
        let err = |req: &FetchRequest, v| match cache.begin(req, v, now) {
            FetchContext::Error(e) => e,
            other => panic!("not an error: {other:?}"),
        };
        assert_eq!(
            err(&request(id, 2, &[]), 12),
            ResponseError::InvalidFetchSessionEpoch
        );
        assert_eq!(
            err(&request(id + 1, 1, &[]), 12),
            ResponseError::FetchSessionIdNotFound
        );
        assert_eq!(
            err(&request(id, 1, &[]), 13),
            ResponseError::FetchSessionTopicIdError
        );
        // Errors do not advance the epoch; epoch -1 closes the session.
        let (epoch, _) = incremental(&cache, &request(id, 1, &[]), now);
        assert_eq!(epoch, 2);
        assert!(matches!(
            cache.begin(&request(id, FINAL_EPOCH, &[]), 12, now),
            FetchContext::Sessionless
        ));
        assert_eq!(
            err(&request(id, 2, &[]), 12),
            ResponseError::FetchSessionIdNotFound
        );
        assert_eq!(next_epoch(i32::MAX), 1);
    }

    #[test]
    fn a_full_cache_keeps_bigger_and_recent_sessions() {
        let cache = FetchSessions::new(1);
        let now = Instant::now();
        let big = opened(&cache, 3, now);
        assert_ne!(big, NO_SESSION);
        // Smaller: no room, answered sessionless.
        assert_eq!(opened(&cache, 2, now), NO_SESSION);
        // Bigger: takes the slot.
        let bigger = opened(&cache, 4, now);
        assert_ne!(bigger, NO_SESSION);
        assert_eq!(cache.len(), 1);
        // Idle for the eviction time: any new session takes its slot.
        let later = now + IDLE_EVICTION;
        assert_ne!(opened(&cache, 1, later), NO_SESSION);
        assert_eq!(cache.len(), 1);
        // No slots: never a session.
        let off = FetchSessions::new(0);
        assert!(matches!(
            off.begin(&request(0, 0, &[("t", 0, 0)]), 12, now),
            FetchContext::Sessionless
        ));
    }

    #[test]
    fn the_partition_bound_holds_and_closed_sessions_give_theirs_back() {
        let cache = FetchSessions::bounded(10, 5);
        let now = Instant::now();
        let first = opened(&cache, 3, now);
        assert_ne!(first, NO_SESSION);
        // 3 + 3 > 5: answered sessionless, nothing counted.
        assert_eq!(opened(&cache, 3, now), NO_SESSION);
        assert_eq!(cache.n_partitions(), 3);
        let second = opened(&cache, 2, now);
        assert_ne!(second, NO_SESSION);
        assert_eq!(cache.n_partitions(), 5);
        // Adding one to the first session passes the bound: it closes, its 3 given back.
        assert!(matches!(
            cache.begin(&request(first, 1, &[("t", 7, 0)]), 12, now),
            FetchContext::Sessionless
        ));
        assert_eq!((cache.len(), cache.n_partitions()), (1, 2));
        // Forgetting gives partitions back; epoch -1 closes and gives back the rest.
        let mut req = request(second, 1, &[]);
        req.forgotten_topics_data = vec![ForgottenTopic::default()
            .with_topic(name("t"))
            .with_partitions(vec![0])];
        incremental(&cache, &req, now);
        assert_eq!(cache.n_partitions(), 1);
        cache.begin(&request(second, FINAL_EPOCH, &[]), 12, now);
        assert_eq!((cache.len(), cache.n_partitions()), (0, 0));
        // A full fetch naming a session closes it too, and evictions give theirs back.
        let small = FetchSessions::bounded(1, 10);
        let a = opened(&small, 2, now);
        assert_ne!(a, NO_SESSION);
        assert_ne!(opened(&small, 3, now), NO_SESSION);
        assert_eq!((small.len(), small.n_partitions()), (1, 3));
        let b = opened(&small, 4, now + IDLE_EVICTION);
        assert_ne!(b, NO_SESSION);
        assert_eq!(small.n_partitions(), 4);
        small.begin(&request(b, INITIAL_EPOCH, &[("t", 0, 0)]), 12, now);
        assert_eq!((small.len(), small.n_partitions()), (0, 0));
    }

    #[test]
    fn sessions_fetched_from_many_threads_keep_their_own_state() {
        const THREADS: i32 = 8;
        const STEPS: i64 = 295;
        let cache = FetchSessions::new(64);
        let now = Instant::now();
        let hw = |step: i64| step / 2;
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let cache = &cache;
                scope.spawn(move || {
                    // Thread t's session: partitions 0..=t of topic "t{t}", and partition
                    // 100 from every tenth step to five steps later.
                    let topic = format!("t{t}");
                    let topic = topic.as_str();
                    let parts: Vec<(&str, i32, i64)> = (0..=t).map(|p| (topic, p, 0)).collect();
                    let req = request(0, 0, &parts);
                    assert!(matches!(cache.begin(&req, 12, now), FetchContext::Full));
                    let id = cache.open(&req, 12, &answer(&req, 0, None), now);
                    assert_ne!(id, NO_SESSION);
                    let mut members: Vec<i32> = (0..=t).collect();
                    let mut epoch = 1;
                    for step in 1..=STEPS {
                        let mut named = vec![(topic, 0, step)];
                        if step % 10 == 0 {
                            named.push((topic, 100, 0));
                            members.push(100);
                        }
                        let mut req = request(id, epoch, &named);
                        if step % 10 == 5 {
                            req.forgotten_topics_data = vec![ForgottenTopic::default()
                                .with_topic(name(topic))
                                .with_partitions(vec![100])];
                            members.retain(|&p| p != 100);
                        }
                        let (next, full) = incremental(cache, &req, now);
                        assert_eq!(next, epoch + 1, "session {t}");
                        assert!(full.topics.iter().all(|ft| ft.topic == name(topic)));
                        let mut read = partitions(&answer(&full, 0, None));
                        read.sort();
                        assert_eq!(read, members, "session {t} step {step}");
                        let offset_0 = full
                            .topics
                            .iter()
                            .flat_map(|ft| &ft.partitions)
                            .find(|fp| fp.partition == 0)
                            .map(|fp| fp.fetch_offset);
                        assert_eq!(offset_0, Some(step));
                        // Records on partition 0; the high watermark moves every other step.
                        let mut resp = answer(&full, hw(step), Some(0));
                        cache.respond(id, next, &mut resp).unwrap();
                        let mut sent = partitions(&resp);
                        sent.sort();
                        let want: Vec<i32> = if hw(step) != hw(step - 1) {
                            members.clone()
                        } else {
                            members
                                .iter()
                                .copied()
                                .filter(|&p| p == 0 || (p == 100 && step % 10 == 0))
                                .collect()
                        };
                        assert_eq!(sent, want, "session {t} step {step}");
                        epoch = next;
                    }
                });
            }
        });
        assert_eq!(cache.len(), THREADS as usize);
        let total: i32 = (1..=THREADS).sum();
        assert_eq!(cache.n_partitions(), total as usize);
    }

    #[test]
    fn opening_closing_and_evicting_from_many_threads_keeps_the_count_and_bounds() {
        const THREADS: usize = 6;
        const ROUNDS: usize = 150;
        const BOUND: usize = 40;
        let cache = FetchSessions::bounded(4, BOUND);
        let start = Instant::now();
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let cache = &cache;
                scope.spawn(move || {
                    for round in 0..ROUNDS {
                        // Sessions of 1..=12 partitions; later ones look idle-old to the
                        // cache so that some opens evict by age, others by size.
                        let now = start + IDLE_EVICTION * (round as u32 % 3);
                        let n = 1 + (t * 7 + round) % 12;
                        let parts: Vec<(&str, i32, i64)> =
                            (0..n as i32).map(|p| ("t", p, 0)).collect();
                        let req = request(0, 0, &parts);
                        if !matches!(cache.begin(&req, 12, now), FetchContext::Full) {
                            continue;
                        }
                        let id = cache.open(&req, 12, &answer(&req, 0, None), now);
                        if id == NO_SESSION {
                            continue;
                        }
                        // A few steps (each may find the session evicted meanwhile): add
                        // two partitions, forget one.
                        let mut epoch = 1;
                        for step in 0..3 {
                            let mut req =
                                request(id, epoch, &[("t", 100 + step, 0), ("t", 200 + step, 0)]);
                            req.forgotten_topics_data = vec![ForgottenTopic::default()
                                .with_topic(name("t"))
                                .with_partitions(vec![0])];
                            match cache.begin(&req, 12, now) {
                                FetchContext::Incremental {
                                    epoch: next,
                                    request,
                                    ..
                                } => {
                                    let mut resp = answer(&request, 1, None);
                                    let _ = cache.respond(id, next, &mut resp);
                                    epoch = next;
                                }
                                _ => break,
                            }
                        }
                        if round % 2 == 0 {
                            cache.begin(&request(id, FINAL_EPOCH, &[]), 12, now);
                        }
                    }
                });
            }
        });
        assert!(cache.len() <= 4, "{} sessions", cache.len());
        assert!(cache.n_partitions() <= BOUND);
        assert_eq!(cache.n_partitions(), cache.n_partitions_held());
        // Closing what is left gives everything back.
        let ids: Vec<i32> = cache.sessions.read().keys().copied().collect();
        for id in ids {
            cache.begin(&request(id, FINAL_EPOCH, &[]), 12, start);
        }
        assert_eq!((cache.len(), cache.n_partitions()), (0, 0));
    }
}
