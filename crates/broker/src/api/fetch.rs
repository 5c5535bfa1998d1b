//! Fetch v0–16: whole stored batches starting with the one containing the fetch offset,
//! bounded by `max_bytes` and `partition_max_bytes` (the first non-empty partition always
//! gets at least one batch), and a long poll until `min_bytes` or `max_wait_ms`.
//! KIP-227 fetch sessions (v7+) through `crate::fetch_session`: an incremental fetch reads
//! every partition of its session and answers only those with something new. Diskless
//! topics are answered sessionless (session id 0, which clients take as "no session"; they
//! then keep naming every partition).
//!
//! Authorization (with an authorizer): a consumer needs READ on the topic of every
//! partition a fetch reads, which for an incremental fetch is every partition of its
//! session after the request's additions and forgotten partitions, not only those it
//! names. So this handler, not the router, checks it, per fetch, once per topic
//! ([`refused_topics`]): a refused topic's partitions are answered
//! TOPIC_AUTHORIZATION_FAILED (and stay in the session, answered so on every incremental
//! fetch, as Kafka does), so an ACL removed while a session lives takes effect on its
//! next fetch (one already waiting was authorized when it began, as in Kafka). A replica's fetch needs CLUSTER_ACTION, checked by the router.
//!
//! Old clients, as Kafka 3.9 served them: before v10 a partition whose next batch is
//! zstd-compressed answers UNSUPPORTED_COMPRESSION_TYPE (the client cannot decompress it;
//! batches before it are sent, cut where the zstd one starts); before
//! v4 the batches are down-converted to the message format the client reads (magic 0
//! for v0–1, magic 1 for v2–3), after hooks and traffic counters saw the stored batches.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::FetchTopic;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId, ResponseKind};
use kafka_protocol::ResponseError;

use rafka_core::limits::{FETCH_MAX_WAIT_MS_MAX, FETCH_RESPONSE_BYTES_MAX};
use rafka_core::{FileRegion, Offset};
use rafka_hooks::{RequestContext, Stages};
use rafka_protocol::legacy::message_set;
use rafka_protocol::{region_placeholder, FetchRegions};

use super::authorize::Authz;
use super::{storage_error_code, Reply};
use crate::acl::{Operation, ResourceType};
use crate::diskless::fetch as dl_fetch;
use crate::diskless::Diskless;
use crate::fetch_session::{FetchContext, Sent};
use crate::shared::Shared;
use crate::state::{
    is_internal, AppendWaiter, IsolationLevel, PartitionOffsets, PartitionRead,
    PartitionRegionRead, Topic, TopicKey,
};

fn partition_error(index: i32, e: ResponseError) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(e.code())
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_records(Some(bytes::Bytes::new()))
}

/// A partition's answer: its offsets, the records read and, for read_committed readers, the
/// aborted transactions among them. Fields are set in place: the builder's by-value calls
/// copied the whole entry once per field, a thousand times per fetch of a large session.
fn partition_data(
    index: i32,
    o: &PartitionOffsets,
    records: bytes::Bytes,
    aborted: Option<Vec<AbortedTransaction>>,
) -> PartitionData {
    let mut d = PartitionData::default();
    d.partition_index = index;
    d.high_watermark = o.high_watermark.0;
    d.last_stable_offset = o.last_stable_offset.0;
    d.log_start_offset = o.log_start_offset.0;
    d.aborted_transactions = aborted;
    d.records = Some(records);
    d
}

/// The topics of a fetch (`req.topics`, by index) whose partitions are answered
/// TOPIC_AUTHORIZATION_FAILED and not read; `refused[i]` past the end is `false`.
type Refused = [bool];

fn is_refused(refused: &Refused, i: usize) -> bool {
    refused.get(i).copied().unwrap_or(false)
}

/// Whether the principal may not READ each topic `names` gives (a name, or `None` for an
/// entry this broker cannot name: an unknown topic id, answered UNKNOWN_TOPIC_ID). Empty
/// when nothing is checked: no authorizer, or a replica's fetch (whose CLUSTER_ACTION the
/// router checked). The authorizer is asked once per topic, however many partitions or
/// entries the topic has; a denial is logged and counted once per fetch.
fn read_refusals<'n>(
    a: &Authz<'_>,
    req: &FetchRequest,
    names: impl Iterator<Item = Option<&'n str>>,
) -> Vec<bool> {
    if !a.on() || req.replica_id.0 >= 0 || req.replica_state.replica_id.0 >= 0 {
        return Vec::new();
    }
    let mut decided: HashMap<&str, bool> = HashMap::new();
    names
        .map(|name| {
            let Some(name) = name else { return false };
            if let Some(&refused) = decided.get(name) {
                return refused;
            }
            let refused = !a.allows(Operation::Read, ResourceType::Topic, name);
            decided.insert(name, refused);
            refused
        })
        .collect()
}

/// [`read_refusals`] for a fetch of this broker's topics (`topics`, as [`resolve`] found
/// them): names from v0–12 entries, ids from v13+ ones (a topic named by id is authorized
/// by its name).
fn refused_topics(
    shared: &Shared,
    ctx: &RequestContext,
    req: &FetchRequest,
    version: i16,
    topics: &Topics,
) -> Vec<bool> {
    let a = Authz::new(shared, ctx);
    if !a.on() {
        return Vec::new();
    }
    let names = req.topics.iter().enumerate().map(|(i, ft)| {
        if version >= 13 {
            looked_up(topics, i).map(|t| t.name.as_str())
        } else {
            Some(ft.topic.as_str())
        }
    });
    read_refusals(&a, req, names)
}

/// The topics of a fetch's entries (`req.topics`, by index), looked up once per look at
/// the partitions; `None` for a topic this broker does not have.
type Topics = [Option<Arc<Topic>>];

/// Looks up the topic of every entry of `req`: by id from v13, by name before.
fn resolve(shared: &Shared, req: &FetchRequest, version: i16) -> Vec<Option<Arc<Topic>>> {
    shared.cluster.topics_for(req.topics.iter().map(|ft| {
        if version >= 13 {
            TopicKey::Id(ft.topic_id)
        } else {
            TopicKey::Name(&ft.topic)
        }
    }))
}

fn looked_up(topics: &Topics, i: usize) -> Option<&Arc<Topic>> {
    topics.get(i).and_then(|t| t.as_ref())
}

/// Whether a fetch's answer goes out without waiting: enough bytes, no wait asked, an
/// error on a partition it reads, or nothing it may read. Refused topics neither end the
/// wait nor count as read (an incremental fetch of a session with a refused topic still
/// long-polls on the rest, as Kafka's does).
fn answer_now(req: &FetchRequest, refused: &Refused, resp: &FetchResponse, bytes: usize) -> bool {
    let min_bytes = req.min_bytes.max(0) as usize;
    let has_error = resp
        .responses
        .iter()
        .enumerate()
        .filter(|(i, _)| !is_refused(refused, *i))
        .any(|(_, t)| t.partitions.iter().any(|p| p.error_code != 0));
    let readable = (0..req.topics.len()).any(|i| !is_refused(refused, i));
    bytes >= min_bytes.max(1) || req.max_wait_ms <= 0 || has_error || !readable
}

/// What a fetch reads, the same for every look at its partitions.
struct Reading {
    /// The request; for an incremental fetch, its session's fetch of all its partitions.
    req: FetchRequest,
    version: i16,
    /// Whether records may go as file regions ([`zero_copy_allowed`]).
    zero_copy: bool,
    /// The topics the principal may not READ ([`refused_topics`]).
    refused: Vec<bool>,
    /// For an incremental fetch, what its session last sent of each partition of `req`,
    /// in order.
    sent: Option<Vec<Sent>>,
}

/// Reads every requested partition once (those of refused topics answered
/// TOPIC_AUTHORIZATION_FAILED instead). Returns the response, the bytes it carries and,
/// with `zero_copy`, the file regions of the partitions whose records are placeholders.
///
/// With `sent` (an incremental fetch), a partition at its end whose marks are those sent
/// is left out of the answer, as the session's narrowing would drop it, without building
/// its entry; a topic left with no partition keeps an empty entry (answers follow the
/// request's topics by index until the session drops it). An idle session then costs an
/// offsets check per partition, not an answer entry built and thrown away.
fn collect(
    shared: &Shared,
    reading: &Reading,
    topics: &Topics,
) -> (FetchResponse, usize, FetchRegions) {
    let Reading {
        req,
        version,
        zero_copy,
        refused,
        sent,
    } = reading;
    let (version, zero_copy, sent) = (*version, *zero_copy, sent.as_deref());
    let mut regions = FetchRegions::default();
    let mut budget = (req.max_bytes.max(0) as usize).min(FETCH_RESPONSE_BYTES_MAX);
    if version < 3 || req.max_bytes <= 0 {
        budget = FETCH_RESPONSE_BYTES_MAX;
    }
    let isolation = IsolationLevel::from_wire(req.isolation_level);
    let mut total = 0usize;
    let mut answered = Vec::with_capacity(req.topics.len());
    // The index of each request partition in `sent`.
    let mut flat = 0usize;
    for (i, ft) in req.topics.iter().enumerate() {
        let first = flat;
        flat += ft.partitions.len();
        if is_refused(refused, i) {
            answered.push(refused_topic(ft, version));
            continue;
        }
        let topic = looked_up(topics, i);
        let unknown = if version >= 13 {
            ResponseError::UnknownTopicId
        } else {
            ResponseError::UnknownTopicOrPartition
        };
        // Sized at the first entry: a session's idle topic gets none.
        let mut parts = Vec::new();
        // Batches sent from their segment file: none where an on_fetch hook may rewrite them.
        let topic_zero_copy = zero_copy
            && topic.as_ref().is_some_and(|t| {
                !shared.hooks.wants(Stages::FETCH)
                    || shared.hooks.plan(Stages::FETCH, t.name.as_str()).is_empty()
            });
        let mut placed = Vec::new();
        for (k, fp) in (first..).zip(&ft.partitions) {
            let Some(p) = topic.as_ref().and_then(|t| t.partition(fp.partition)) else {
                let e = if topic.is_some() {
                    ResponseError::UnknownTopicOrPartition
                } else {
                    unknown
                };
                if parts.is_empty() {
                    parts.reserve(ft.partitions.len());
                }
                parts.push(partition_error(fp.partition, e));
                continue;
            };
            let limit = (fp.partition_max_bytes.max(0) as usize).min(budget);
            let first_data = total == 0;
            let from = Offset(fp.fetch_offset);
            let mut region = None;
            let result = if limit == 0 && !first_data {
                None
            } else if let Some(r) = p.caught_up(from, isolation) {
                if sent
                    .and_then(|s| s.get(k))
                    .is_some_and(|s| *s == sent_marks(&r.offsets))
                {
                    continue;
                }
                Some(Ok(r))
            } else if topic_zero_copy {
                match p.read_region(from, limit.max(1), isolation) {
                    Ok(Some(r)) => region_read(r, &mut region)
                        .map(Ok)
                        .or_else(|| Some(p.read(from, limit.max(1), isolation))),
                    Ok(None) => Some(p.read(from, limit.max(1), isolation)),
                    Err(e) => Some(Err(e)),
                }
            } else {
                Some(p.read(from, limit.max(1), isolation))
            };
            let data = match result {
                None => partition_data(fp.partition, &p.offsets(), bytes::Bytes::new(), None),
                Some(Ok(r)) => {
                    let mut records = r.records;
                    // Only the first partition with data may exceed the limit (one batch).
                    if !first_data && records.len() > limit {
                        records = bytes::Bytes::new();
                        region = None;
                    }
                    if let Some(r) = region {
                        placed.push((fp.partition, r));
                    }
                    total += records.len();
                    budget = budget.saturating_sub(records.len());
                    // read_committed readers (v4+) get the aborted transactions overlapping
                    // what is returned, so they can drop those records.
                    let aborted = (isolation == IsolationLevel::ReadCommitted && version >= 4)
                        .then(|| {
                            r.aborted
                                .iter()
                                .map(|a| {
                                    AbortedTransaction::default()
                                        .with_producer_id(ProducerId(a.producer_id))
                                        .with_first_offset(a.first_offset.0)
                                })
                                .collect()
                        });
                    partition_data(fp.partition, &r.offsets, records, aborted)
                }
                Some(Err(e)) => {
                    // The error with the partition's offsets, so the client can recover.
                    let mut d =
                        partition_data(fp.partition, &p.offsets(), bytes::Bytes::new(), None);
                    d.error_code = storage_error_code(&e).code();
                    d
                }
            };
            if parts.is_empty() {
                parts.reserve(ft.partitions.len());
            }
            parts.push(data);
        }
        if parts.is_empty() && !ft.partitions.is_empty() {
            // Every partition left out: an entry only to keep the answers' order.
            answered.push(FetchableTopicResponse::default());
            continue;
        }
        let topic_response = topic_answer(ft, version, parts);
        for (partition, (region, n_records)) in placed {
            regions.insert(&topic_response, partition, region, n_records);
        }
        answered.push(topic_response);
    }
    (
        FetchResponse::default().with_responses(answered),
        total,
        regions,
    )
}

/// The answer of a topic the principal may not READ: every partition it names
/// TOPIC_AUTHORIZATION_FAILED, nothing read.
fn refused_topic(ft: &FetchTopic, version: i16) -> FetchableTopicResponse {
    let parts = ft
        .partitions
        .iter()
        .map(|fp| partition_error(fp.partition, ResponseError::TopicAuthorizationFailed))
        .collect();
    topic_answer(ft, version, parts)
}

/// A partition's marks as its answer carries them, to compare with what a session sent.
fn sent_marks(o: &PartitionOffsets) -> Sent {
    Sent {
        high_watermark: o.high_watermark.0,
        last_stable_offset: o.last_stable_offset.0,
        log_start_offset: o.log_start_offset.0,
    }
}

/// A topic's entry in a Fetch answer: named as the request named it (by id from v13).
fn topic_answer(
    ft: &FetchTopic,
    version: i16,
    parts: Vec<PartitionData>,
) -> FetchableTopicResponse {
    FetchableTopicResponse::default()
        .with_topic(if version >= 13 {
            Default::default()
        } else {
            // The request's own name, shared rather than copied per answer.
            ft.topic.clone()
        })
        .with_topic_id(ft.topic_id)
        .with_partitions(parts)
}

/// A region read as a [`PartitionRead`] whose records are the region's placeholder; the
/// region and its records go to `region`. `None` if no placeholder is that long.
fn region_read(
    r: PartitionRegionRead,
    region: &mut Option<(FileRegion, u64)>,
) -> Option<PartitionRead> {
    let len = r.read.region.len;
    let records = if len == 0 {
        bytes::Bytes::new()
    } else {
        let placeholder = region_placeholder(len)?;
        let n_records = r.read.batches.iter().map(|b| b.record_count as u64).sum();
        *region = Some((r.read.region, n_records));
        placeholder
    };
    Some(PartitionRead {
        records,
        offsets: r.offsets,
        aborted: r.aborted,
    })
}

thread_local! {
    /// The file regions of the Fetch response this thread finished last, until the pipeline
    /// encodes it. `finish` puts them here and the pipeline takes them in the same
    /// synchronous stretch (no `.await` between a handler returning its response, or its
    /// future completing, and the encoding), so they never meet another response.
    static REGIONS: std::cell::RefCell<FetchRegions> = std::cell::RefCell::new(FetchRegions::default());
}

/// The file regions of the Fetch response just finished on this thread (empty for any
/// other response): what the pipeline encodes in place of its placeholders.
pub(crate) fn take_regions() -> FetchRegions {
    REGIONS.with(|r| std::mem::take(&mut *r.borrow_mut()))
}

/// Whether this Fetch may send records from segment files: the broker allows it
/// (`broker.zero_copy_fetch`) and the client reads the stored format as it is (v10+: no
/// zstd refusal, no down-conversion). Plaintext connections splice the regions to their
/// socket; TLS ones read each in pieces as it is written (`server::write_response`), so
/// neither holds the records of a whole answer in memory.
fn zero_copy_allowed(shared: &Shared, version: i16) -> bool {
    shared.config.broker.zero_copy_fetch && version >= ZSTD_FETCH_VERSION_MIN
}

/// The bytes of a region, read from its file: for a response the hand encoder will not
/// write (it alone puts regions in place of placeholders).
fn region_bytes(region: &FileRegion) -> std::io::Result<bytes::Bytes> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; region.len];
    region.file.read_exact_at(&mut buf, region.position)?;
    Ok(buf.into())
}

/// Registers on every partition the request reads (that exists and is not refused), so
/// that the next append to any of them wakes the long poll. Taken before the look that
/// decides to wait, with that look's `topics`.
fn register(req: &FetchRequest, refused: &Refused, topics: &Topics) -> AppendWaiter {
    let mut parts = Vec::new();
    for (i, ft) in req.topics.iter().enumerate() {
        if is_refused(refused, i) {
            continue;
        }
        if let Some(t) = looked_up(topics, i) {
            parts.extend(
                ft.partitions
                    .iter()
                    .filter_map(|fp| t.partition(fp.partition).cloned()),
            );
        }
    }
    AppendWaiter::register(parts.iter().map(|p| p.as_ref()))
}

/// Adds the whole batches of the response that is sent to each partition's bytes-out and
/// records-out. Response topics and partitions are in request order (`collect`).
/// A partition sent as a file region counts its batches from their headers. `topics` are
/// those of the look that made the response.
fn count_out(resp: &FetchResponse, regions: &FetchRegions, topics: &Topics) {
    for (i, rt) in resp.responses.iter().enumerate() {
        let Some(topic) = looked_up(topics, i) else {
            continue;
        };
        for pd in &rt.partitions {
            let Some(p) = topic.partition(pd.partition_index) else {
                continue;
            };
            if let Some((region, n_records)) = regions.get(rt, pd) {
                p.traffic.fetched_batches(region.len as u64, n_records);
            } else if let Some(records) = &pd.records {
                p.traffic.fetched(records);
            }
        }
    }
}

/// The first Fetch version whose clients read zstd batches (KIP-110).
const ZSTD_FETCH_VERSION_MIN: i16 = 10;
/// The first Fetch version whose clients read magic-2 batches (KIP-98).
const BATCH_FETCH_VERSION_MIN: i16 = 4;

/// What every fetch response goes through before it is sent: the zstd refusal for old
/// clients, the `on_fetch` hooks, the traffic counters, then down-conversion for clients
/// that cannot read batches. `topics` are those of the look that made `resp`.
fn finish(
    shared: &Shared,
    ctx: &RequestContext,
    version: i16,
    mut resp: FetchResponse,
    mut regions: FetchRegions,
    topics: &Topics,
) -> FetchResponse {
    if version < ZSTD_FETCH_VERSION_MIN {
        for p in resp.responses.iter_mut().flat_map(|t| &mut t.partitions) {
            let Some(records) = p.records.as_mut() else {
                continue;
            };
            match message_set::first_zstd_batch(records) {
                None => {}
                // The batches before it are readable; the client asks for the rest next.
                Some(at) if at > 0 => records.truncate(at),
                Some(_) => {
                    p.error_code = ResponseError::UnsupportedCompressionType.code();
                    *records = bytes::Bytes::new();
                }
            }
        }
    }
    crate::hooks::on_fetch(&shared.hooks, &shared.cluster, ctx, &mut resp);
    count_out(&resp, &regions, topics);
    if !regions.is_empty() && !rafka_protocol::response::fetch_hand_encodable(&resp, version) {
        // Never the case for what `collect` builds; the bytes then go through memory.
        for t in &mut resp.responses {
            let found: Vec<Option<FileRegion>> = t
                .partitions
                .iter()
                .map(|p| regions.get(t, p).map(|(r, _)| r.clone()))
                .collect();
            for (p, region) in t.partitions.iter_mut().zip(found) {
                let Some(region) = region else {
                    continue;
                };
                match region_bytes(&region) {
                    Ok(bytes) => p.records = Some(bytes),
                    Err(e) => {
                        tracing::error!(partition = p.partition_index, error = %e, "reading a fetched region failed");
                        p.error_code = ResponseError::KafkaStorageError.code();
                        p.records = Some(bytes::Bytes::new());
                    }
                }
            }
        }
        regions = FetchRegions::default();
    }
    if !regions.is_empty() {
        REGIONS.with(|r| *r.borrow_mut() = regions);
    }
    if version < BATCH_FETCH_VERSION_MIN {
        let magic = if version <= 1 { 0 } else { 1 };
        for p in resp.responses.iter_mut().flat_map(|t| &mut t.partitions) {
            let Some(records) = p.records.as_ref().filter(|r| !r.is_empty()) else {
                continue;
            };
            match message_set::down_convert(records, magic) {
                Ok(converted) => p.records = Some(converted),
                Err(e) => {
                    tracing::error!(partition = p.partition_index, error = %e, "down-conversion failed");
                    p.error_code = ResponseError::CorruptMessage.code();
                    p.records = Some(bytes::Bytes::new());
                }
            }
        }
    }
    resp
}

/// What a fetch's answer does to its fetch session.
#[derive(Debug, Clone, Copy)]
enum SessionStep {
    /// Nothing: session id 0.
    None,
    /// Opens a session if the cache has room.
    Open,
    /// Narrows the answer to what session `id` (now at `epoch`) has not sent yet.
    Incremental { id: i32, epoch: i32 },
}

/// A look at a fetch's partitions: what it read, and the topics it found them in.
struct Look {
    resp: FetchResponse,
    bytes: usize,
    regions: FetchRegions,
    topics: Vec<Option<Arc<Topic>>>,
}

/// Looks at a fetch's partitions again: finds its topics (once, for registering, reading
/// and counting), registers `waiter` on their partitions, then reads them.
fn look(shared: &Shared, reading: &Reading, waiter: &mut AppendWaiter) -> Look {
    let topics = resolve(shared, &reading.req, reading.version);
    *waiter = register(&reading.req, &reading.refused, &topics);
    let (resp, bytes, regions) = collect(shared, reading, &topics);
    Look {
        resp,
        bytes,
        regions,
        topics,
    }
}

/// The answer to send: `finish`, then the fetch session's part. A throttled answer later
/// loses only its records, so what the session records as sent stays true.
fn answer(
    shared: &Shared,
    ctx: &RequestContext,
    req: &FetchRequest,
    version: i16,
    look: Look,
    step: SessionStep,
) -> ResponseKind {
    let mut resp = finish(shared, ctx, version, look.resp, look.regions, &look.topics);
    match step {
        SessionStep::None => {}
        SessionStep::Open => {
            resp.session_id = shared
                .fetch_sessions
                .open(req, version, &resp, Instant::now());
        }
        SessionStep::Incremental { id, epoch } => {
            match shared.fetch_sessions.respond(id, epoch, &mut resp) {
                Ok(()) => resp.session_id = id,
                // Closed or taken over while this fetch waited.
                Err(e) => {
                    drop(take_regions());
                    resp = FetchResponse::default().with_error_code(e.code());
                }
            }
        }
    }
    ResponseKind::Fetch(resp)
}

/// Fetch.
/// `on_fetch` hooks run on the response that is sent, once.
pub fn handle(
    shared: &Arc<Shared>,
    req: FetchRequest,
    version: i16,
    ctx: &Arc<RequestContext>,
) -> Reply {
    if let Some(d) = shared.diskless.clone() {
        if !names_local_topic(shared, &req, version) {
            return fetch_diskless(shared, d, req, version, ctx);
        }
    }
    let (req, step, sent) = match shared.fetch_sessions.begin(&req, version, Instant::now()) {
        FetchContext::Error(e) => {
            return Reply::Now(ResponseKind::Fetch(
                FetchResponse::default().with_error_code(e.code()),
            ));
        }
        FetchContext::Incremental {
            id,
            epoch,
            request,
            sent,
        } => (*request, SessionStep::Incremental { id, epoch }, Some(sent)),
        FetchContext::Full if shared.diskless.is_none() => (req, SessionStep::Open, None),
        FetchContext::Full | FetchContext::Sessionless => (req, SessionStep::None, None),
    };
    let topics = resolve(shared, &req, version);
    // Authorized here, over every partition this fetch reads (its session's included).
    let refused = refused_topics(shared, ctx, &req, version, &topics);
    let reading = Reading {
        req,
        version,
        zero_copy: zero_copy_allowed(shared, version),
        refused,
        sent,
    };
    let (resp, bytes, regions) = collect(shared, &reading, &topics);
    let mut seen = Look {
        resp,
        bytes,
        regions,
        topics,
    };
    // A fetch that would wait registers on its partitions and looks once more: an append
    // between the first look and the registration is then seen, not lost.
    let mut waiter = AppendWaiter::register([]);
    let (req, refused) = (&reading.req, &reading.refused);
    if !answer_now(req, refused, &seen.resp, seen.bytes) {
        seen = look(shared, &reading, &mut waiter);
    }
    if answer_now(req, refused, &seen.resp, seen.bytes) {
        return Reply::Now(answer(shared, ctx, req, version, seen, step));
    }
    let shared = shared.clone();
    let ctx = ctx.clone();
    let min_bytes = req.min_bytes.max(0) as usize;
    let wait = Duration::from_millis((req.max_wait_ms as u64).min(FETCH_MAX_WAIT_MS_MAX));
    Reply::Later(Box::pin(async move {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Wait for an append to one of this fetch's partitions (or the deadline), then
            // register again before looking again.
            let woke = tokio::time::timeout_at(deadline, waiter.any())
                .await
                .is_ok();
            let next = look(&shared, &reading, &mut waiter);
            if next.bytes >= min_bytes.max(1) || !woke {
                return answer(&shared, &ctx, &reading.req, version, next, step);
            }
        }
    }))
}

/// Whether a request names a topic of this broker's local engine (in diskless mode, the
/// internal topics): such a fetch is served from the local engine.
fn names_local_topic(shared: &Shared, req: &FetchRequest, version: i16) -> bool {
    req.topics.iter().any(|ft| {
        if version >= 13 {
            shared.cluster.topic_by_id(ft.topic_id).is_some()
        } else {
            is_internal(&ft.topic)
        }
    })
}

/// A diskless partition's answer with its marks.
fn diskless_marks(index: i32, e: ResponseError, (log_start, hw): (i64, i64)) -> PartitionData {
    let mut d = partition_error(index, e);
    d.high_watermark = hw;
    d.last_stable_offset = hw;
    d.log_start_offset = log_start;
    d
}

/// `collect` for diskless topics: every requested partition read once through
/// `crate::diskless::fetch` (those of `refused` topics answered TOPIC_AUTHORIZATION_FAILED).
async fn collect_diskless(
    d: &Diskless,
    req: &FetchRequest,
    version: i16,
    refused: &Refused,
) -> (FetchResponse, usize) {
    let mut budget = (req.max_bytes.max(0) as usize).min(FETCH_RESPONSE_BYTES_MAX);
    if version < 3 || req.max_bytes <= 0 {
        budget = FETCH_RESPONSE_BYTES_MAX;
    }
    let mut total = 0usize;
    let mut topics = Vec::with_capacity(req.topics.len());
    for (i, ft) in req.topics.iter().enumerate() {
        if is_refused(refused, i) {
            topics.push(refused_topic(ft, version));
            continue;
        }
        let topic = if version >= 13 {
            dl_fetch::topic_by_id(d, ft.topic_id).await
        } else {
            d.catalog.topic(&d.pg, &ft.topic).await
        };
        let unknown = if version >= 13 {
            ResponseError::UnknownTopicId
        } else {
            ResponseError::UnknownTopicOrPartition
        };
        let mut parts = Vec::with_capacity(ft.partitions.len());
        for fp in &ft.partitions {
            let index = fp.partition;
            let t = match &topic {
                Err(e) => {
                    tracing::warn!(error = %e, "diskless fetch: coordinator unreachable");
                    parts.push(partition_error(index, ResponseError::KafkaStorageError));
                    continue;
                }
                Ok(None) => {
                    parts.push(partition_error(index, unknown));
                    continue;
                }
                Ok(Some(t)) if !(0..t.partitions).contains(&index) => {
                    parts.push(partition_error(
                        index,
                        ResponseError::UnknownTopicOrPartition,
                    ));
                    continue;
                }
                Ok(Some(t)) => t,
            };
            let tp = (t.id, index);
            let limit = (fp.partition_max_bytes.max(0) as usize).min(budget);
            let first_data = total == 0;
            if limit == 0 && !first_data {
                let data = match dl_fetch::watermarks(d, tp).await {
                    Ok(Some(m)) => diskless_marks(index, ResponseError::UnknownServerError, m)
                        .with_error_code(0),
                    Ok(None) => partition_error(index, ResponseError::UnknownTopicOrPartition),
                    Err(_) => partition_error(index, ResponseError::KafkaStorageError),
                };
                parts.push(data);
                continue;
            }
            let data = match dl_fetch::read(d, tp, fp.fetch_offset, limit.max(1)).await {
                Ok(r) => {
                    let mut records = r.records;
                    // Only the first partition with data may exceed the limit (one batch).
                    if !first_data && records.len() > limit {
                        records = bytes::Bytes::new();
                    }
                    total += records.len();
                    budget = budget.saturating_sub(records.len());
                    diskless_marks(
                        index,
                        ResponseError::UnknownServerError,
                        (r.log_start, r.high_watermark),
                    )
                    .with_error_code(0)
                    .with_records(Some(records))
                }
                Err(dl_fetch::ReadError::OutOfRange {
                    log_start,
                    high_watermark,
                    ..
                }) => diskless_marks(
                    index,
                    ResponseError::OffsetOutOfRange,
                    (log_start, high_watermark),
                ),
                Err(dl_fetch::ReadError::Unknown) => {
                    partition_error(index, ResponseError::UnknownTopicOrPartition)
                }
                Err(dl_fetch::ReadError::Diskless(e)) => {
                    tracing::warn!(error = %e, "diskless fetch failed");
                    partition_error(index, ResponseError::KafkaStorageError)
                }
            };
            parts.push(data);
        }
        topics.push(topic_answer(ft, version, parts));
    }
    (FetchResponse::default().with_responses(topics), total)
}

/// [`refused_topics`] for a diskless fetch: a topic named by id (v13+) is authorized by
/// the name the coordinator's catalog gives it. Without an authorizer, nothing is asked.
async fn refused_diskless_topics(
    shared: &Shared,
    ctx: &RequestContext,
    d: &Diskless,
    req: &FetchRequest,
    version: i16,
) -> Vec<bool> {
    if !shared.acls.enabled() {
        return Vec::new();
    }
    let mut names = Vec::with_capacity(req.topics.len());
    for ft in &req.topics {
        names.push(if version >= 13 {
            // An unreachable coordinator or unknown id: answered so by `collect_diskless`.
            match dl_fetch::topic_by_id(d, ft.topic_id).await {
                Ok(t) => t.map(|t| t.name.clone()),
                Err(_) => None,
            }
        } else {
            Some(ft.topic.to_string())
        });
    }
    let names = names.iter().map(|n| n.as_deref());
    read_refusals(&Authz::new(shared, ctx), req, names)
}

/// Fetch from a diskless cluster: the long poll wakes whenever a high watermark moves
/// (a commit of this broker, or any broker's through `rafka_hw`) and looks again.
fn fetch_diskless(
    shared: &Arc<Shared>,
    d: Arc<Diskless>,
    req: FetchRequest,
    version: i16,
    ctx: &Arc<RequestContext>,
) -> Reply {
    let shared = shared.clone();
    let ctx = ctx.clone();
    let wait = Duration::from_millis((req.max_wait_ms.max(0) as u64).min(FETCH_MAX_WAIT_MS_MAX));
    Reply::Later(Box::pin(async move {
        let deadline = tokio::time::Instant::now() + wait;
        let refused = refused_diskless_topics(&shared, &ctx, &d, &req, version).await;
        let mut last = false;
        loop {
            // Registered before the look: a move between the look and the wait wakes it.
            let moved = d.marks.moved().notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            let (resp, bytes) = collect_diskless(&d, &req, version, &refused).await;
            if last || answer_now(&req, &refused, &resp, bytes) {
                // Diskless batches come from the object cache, never from a file region.
                return ResponseKind::Fetch(finish(
                    &shared,
                    &ctx,
                    version,
                    resp,
                    FetchRegions::default(),
                    &resolve(&shared, &req, version),
                ));
            }
            last = tokio::time::timeout_at(deadline, moved).await.is_err();
        }
    }))
}

impl super::RefusableRequest for FetchRequest {
    type Response = FetchResponse;

    fn error_response(&self, _version: i16, refusal: &rafka_hooks::Rejection) -> FetchResponse {
        let e = refusal.code.0;
        FetchResponse::default().with_error_code(e).with_responses(
            self.topics
                .iter()
                .map(|t| {
                    FetchableTopicResponse::default()
                        .with_topic(t.topic.clone())
                        .with_topic_id(t.topic_id)
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    partition_error(p.partition, ResponseError::UnknownServerError)
                                        .with_error_code(e)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
    }
}

impl super::ErrorCodes for FetchResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(super::ErrorItem<'a>)) {
        f(super::ErrorItem::top(self.error_code));
        for t in &self.responses {
            for p in &t.partitions {
                f(super::ErrorItem::partition(
                    &t.topic,
                    p.partition_index,
                    p.error_code,
                ));
            }
        }
    }
}
