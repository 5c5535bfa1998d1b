//! The producer: an accumulator of per-partition batches shared by `send` callers, and one
//! sender task that seals ready batches, encodes them, groups them by leader into Produce
//! requests and handles the answers (complete, retry in sequence order, or fail).
//!
//! Thread-safety: [`Producer`] is `Send + Sync`; share it with `Arc` or clone the handle.
//! The accumulator lock is a `std::sync::Mutex` held only for bookkeeping (never across an
//! `.await`, never while encoding or compressing).
//!
//! Ordering with retries: batches of a partition get consecutive sequence numbers when
//! sealed and wait in a queue ordered by sequence. A batch that failed goes back into that
//! queue in order, and the partition then sends one batch at a time, only once nothing else
//! of it is in flight, so a retry can never overtake or be overtaken.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    InitProducerIdRequest, ProduceRequest, ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Record as WireRecord, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use kafka_protocol::ResponseError;
use rafka_client::{Client, ClientError};
use tokio::sync::{oneshot, Notify, Semaphore};

use crate::config::{Acks, ProducerBuilder, ProducerConfig};
use crate::error::ProducerError;
use crate::partitioner::{partition_for_key, Rng};
use crate::record::{Record, RecordMetadata};
use crate::txn::TxnState;

/// Produce versions this producer speaks (v3 is the first with record batches v2; v9 is
/// the last that names topics rather than ids).
const PRODUCE_VERSIONS: (i16, i16) = (3, 9);
const INIT_PRODUCER_ID_VERSIONS: (i16, i16) = (0, 4);
/// A sealed batch never exceeds this many bytes of records, whatever `batch_size` says,
/// so one request stays well under the broker's request limit.
const BATCH_BYTES_MAX: usize = 16 * 1024 * 1024;

type Reply = oneshot::Sender<Result<RecordMetadata, ProducerError>>;

/// Resolves when the broker has acknowledged the record (or it finally failed).
///
/// # Cancel safety
/// Dropping it does not cancel the send; the record is still delivered.
#[derive(Debug)]
pub struct DeliveryFuture(oneshot::Receiver<Result<RecordMetadata, ProducerError>>);

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata, ProducerError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ProducerError::Closed)))
    }
}

struct Pending {
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<(String, Option<Bytes>)>,
    timestamp: i64,
    reply: Reply,
}

struct OpenBatch {
    records: Vec<Pending>,
    bytes: usize,
    created: Instant,
}

struct SealedBatch {
    records: Vec<Pending>,
    bytes: usize,
    base_sequence: i32,
    /// Encoded once; a retry resends the same bytes (same sequence numbers).
    encoded: Option<Bytes>,
    attempts: u32,
    /// A retried batch waits for its backoff before it is sent again.
    retry_at: Option<Instant>,
    /// Unique within the partition; names the batch in the send window.
    id: u64,
    /// When its first record was accepted: `delivery_timeout` counts from here.
    created: Instant,
}

#[derive(Default)]
struct PartitionQueue {
    open: Option<OpenBatch>,
    /// Sealed batches in sequence order.
    ready: VecDeque<SealedBatch>,
    /// Batches sent and not yet answered.
    in_flight: usize,
    /// Batches from the oldest unfinished one to the newest sent, with whether each is
    /// finished. Bounded by `max_in_flight`, so a retry of the oldest batch is still among
    /// the last five the broker remembers and is recognised as a duplicate.
    window: VecDeque<(u64, bool)>,
    next_sequence: i32,
    next_id: u64,
}

#[derive(Default)]
pub(crate) struct State {
    partitions: HashMap<(Arc<str>, i32), PartitionQueue>,
    sticky: HashMap<String, i32>,
    /// Records accepted and not yet completed.
    unfinished: usize,
    /// While > 0, linger is ignored (flush or close in progress).
    flushing: usize,
    closed: bool,
    /// Transactions (a transactional producer only).
    pub(crate) txn: TxnState,
}

pub(crate) struct Shared {
    pub(crate) cfg: ProducerConfig,
    pub(crate) client: Client,
    /// Producer id and epoch (-1, -1 without idempotence); a transactional producer gets
    /// them in `init_transactions` and a new epoch after a failed transaction's abort.
    pub(crate) ids: Mutex<(i64, i16)>,
    pub(crate) state: Mutex<State>,
    /// The transaction coordinator, once found.
    pub(crate) coordinator: Mutex<Option<i32>>,
    memory: Semaphore,
    /// Wakes the sender task (new batch, full batch, flush, a completed request).
    wake: Notify,
    /// Wakes `flush` waiters when records complete.
    progress: Notify,
    rng: Mutex<Rng>,
}

/// An async Kafka producer. See the crate docs.
pub struct Producer {
    pub(crate) shared: Arc<Shared>,
    sender: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("producer_id", &self.producer_id())
            .finish_non_exhaustive()
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        // The sender task sends what is buffered and then stops by itself.
        self.shared.state.lock().expect("producer lock").closed = true;
        self.shared.wake.notify_one();
    }
}

impl Producer {
    /// A builder with the Java client's defaults (acks=all, idempotence on, linger 5 ms).
    pub fn builder() -> ProducerBuilder {
        ProducerBuilder::default()
    }

    pub(crate) async fn start(cfg: ProducerConfig) -> Result<Producer, ProducerError> {
        let client = Client::connect(cfg.client.clone()).await?;
        let (producer_id, producer_epoch) = if cfg.idempotence && cfg.transactional_id.is_none() {
            let req = InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(-1)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
            let resp = client
                .retry(|| async {
                    let r = client.call_any(&req, INIT_PRODUCER_ID_VERSIONS).await?;
                    ClientError::check(r.error_code, || "InitProducerId".into())?;
                    Ok(r)
                })
                .await?;
            (resp.producer_id.0, resp.producer_epoch)
        } else {
            (-1, -1)
        };
        let shared = Arc::new(Shared {
            memory: Semaphore::new(cfg.buffer_memory),
            cfg,
            client,
            ids: Mutex::new((producer_id, producer_epoch)),
            state: Mutex::new(State::default()),
            coordinator: Mutex::new(None),
            wake: Notify::new(),
            progress: Notify::new(),
            rng: Mutex::new(Rng::new()),
        });
        let sender = tokio::spawn(sender_loop(shared.clone()));
        Ok(Producer { shared, sender })
    }

    /// The producer id from InitProducerId (-1 without idempotence, and for a
    /// transactional producer before `init_transactions`).
    pub fn producer_id(&self) -> i64 {
        self.shared.ids.lock().expect("ids lock").0
    }

    /// The producer epoch from InitProducerId (-1 as for [`Producer::producer_id`]).
    pub fn producer_epoch(&self) -> i16 {
        self.shared.ids.lock().expect("ids lock").1
    }

    /// The underlying client (metadata, admin calls).
    pub fn client(&self) -> &Client {
        &self.shared.client
    }

    /// Sends a record and waits until the broker acknowledged it.
    ///
    /// # Cancel safety
    /// Cancelled before the record is buffered: nothing is sent. Cancelled later: the
    /// record is still delivered.
    pub async fn send(&self, record: Record) -> Result<RecordMetadata, ProducerError> {
        self.enqueue(record).await?.await
    }

    /// Buffers a record, waiting up to `max_block` for room, and returns a future of its
    /// delivery. Call this in a loop for throughput; await the futures later.
    ///
    /// # Cancel safety
    /// Cancel-safe: a cancelled call has buffered nothing.
    pub async fn enqueue(&self, record: Record) -> Result<DeliveryFuture, ProducerError> {
        let shared = &self.shared;
        let size = record.size_estimate();
        let max = shared.cfg.buffer_memory.min(BATCH_BYTES_MAX);
        if size > max {
            return Err(ProducerError::RecordTooLarge { size, max });
        }
        {
            let st = shared.state.lock().expect("producer lock");
            if st.closed {
                return Err(ProducerError::Closed);
            }
            if shared.cfg.transactional_id.is_some() {
                st.txn.may_send()?;
            }
        }
        let max_block = shared.cfg.max_block;
        let started = Instant::now();
        let partitions =
            match tokio::time::timeout(max_block, shared.client.topic(&record.topic)).await {
                Ok(r) => r?.partitions.len(),
                Err(_) => {
                    return Err(ClientError::Timeout {
                        what: format!("metadata for topic {:?}", record.topic),
                        after: max_block,
                    }
                    .into())
                }
            };
        if let Some(p) = record.partition {
            if p < 0 || p as usize >= partitions {
                return Err(ProducerError::UnknownPartition {
                    topic: record.topic,
                    partition: p,
                });
            }
        }
        let left = max_block.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, shared.memory.acquire_many(size as u32)).await {
            Ok(Ok(permit)) => permit.forget(),
            Ok(Err(_)) => return Err(ProducerError::Closed),
            Err(_) => return Err(ProducerError::BufferFull { waited: max_block }),
        }
        let (tx, rx) = oneshot::channel();
        let pending = Pending {
            key: record.key.clone(),
            value: record.value,
            headers: record.headers,
            timestamp: record.timestamp.unwrap_or_else(now_ms),
            reply: tx,
        };
        let (partition, add) = {
            let mut st = shared.state.lock().expect("producer lock");
            let partition = match (record.partition, &record.key) {
                (Some(p), _) => p,
                (None, Some(k)) => partition_for_key(k, partitions),
                (None, None) => match st.sticky.get(&record.topic) {
                    Some(&p) if (p as usize) < partitions => p,
                    _ => {
                        let p = shared
                            .rng
                            .lock()
                            .expect("rng lock")
                            .next_sticky(partitions, None);
                        st.sticky.insert(record.topic.clone(), p);
                        p
                    }
                },
            };
            let add = shared.cfg.transactional_id.is_some()
                && !st.txn.has_partition(&record.topic, partition);
            (partition, add)
        };
        if add {
            // AddPartitionsToTxn before the transaction's first batch to this partition.
            if let Err(e) = crate::txn::add_partition(shared, &record.topic, partition).await {
                shared.memory.add_permits(size);
                return Err(e);
            }
        }
        let wake = {
            let mut st = shared.state.lock().expect("producer lock");
            if st.closed {
                drop(st);
                shared.memory.add_permits(size);
                return Err(ProducerError::Closed);
            }
            if shared.cfg.transactional_id.is_some() {
                if let Err(e) = st.txn.may_send() {
                    drop(st);
                    shared.memory.add_permits(size);
                    return Err(e);
                }
            }
            st.unfinished += 1;
            let batch_size = shared.cfg.batch_size.min(BATCH_BYTES_MAX);
            let key: Arc<str> = Arc::from(record.topic.as_str());
            let q = st.partitions.entry((key, partition)).or_default();
            let mut wake = false;
            // Seal the open batch first if this record would overflow it.
            if q.open.as_ref().is_some_and(|b| b.bytes + size > batch_size) {
                seal(q, shared.cfg.idempotence);
                wake = true;
            }
            let open = q.open.get_or_insert_with(|| {
                wake = true;
                OpenBatch {
                    records: Vec::new(),
                    bytes: 0,
                    created: Instant::now(),
                }
            });
            open.records.push(pending);
            open.bytes += size;
            let full = open.bytes >= batch_size;
            if full {
                seal(q, shared.cfg.idempotence);
                wake = true;
            }
            if full && record.key.is_none() && record.partition.is_none() {
                // Sticky partitioning: a sealed batch moves keyless records on.
                let next = shared
                    .rng
                    .lock()
                    .expect("rng lock")
                    .next_sticky(partitions, Some(partition));
                st.sticky.insert(record.topic.clone(), next);
            }
            wake
        };
        if wake {
            shared.wake.notify_one();
        }
        Ok(DeliveryFuture(rx))
    }

    /// Sends everything buffered now and waits until all of it is acknowledged or failed.
    /// Waits at most the time every retry of one batch could take (bounded by
    /// `delivery_timeout` plus one request).
    pub async fn flush(&self) -> Result<(), ProducerError> {
        let shared = &self.shared;
        shared.state.lock().expect("producer lock").flushing += 1;
        shared.wake.notify_one();
        let cfg = &shared.cfg;
        let limit = ((cfg.client.request_timeout + cfg.client.retry_backoff_max)
            * (cfg.retries + 2))
            .min(cfg.delivery_timeout + cfg.client.request_timeout)
            + cfg.linger;
        let done = tokio::time::timeout(limit, async {
            loop {
                let notified = shared.progress.notified();
                if shared.state.lock().expect("producer lock").unfinished == 0 {
                    return;
                }
                notified.await;
            }
        })
        .await;
        shared.state.lock().expect("producer lock").flushing -= 1;
        done.map_err(|_| {
            ProducerError::Client(ClientError::Timeout {
                what: "flush".into(),
                after: limit,
            })
        })
    }

    /// Flushes, then stops the sender task. Records sent afterwards fail with
    /// [`ProducerError::Closed`].
    pub async fn close(self) -> Result<(), ProducerError> {
        let flushed = self.flush().await;
        self.shared.state.lock().expect("producer lock").closed = true;
        self.shared.wake.notify_one();
        flushed
    }

    /// Whether the sender task has stopped (after `close` or a drop).
    pub fn is_finished(&self) -> bool {
        self.sender.is_finished()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Moves the open batch into the ready queue with the next sequence numbers.
fn seal(q: &mut PartitionQueue, idempotent: bool) {
    let Some(b) = q.open.take() else { return };
    let n = b.records.len() as i32;
    let base_sequence = if idempotent { q.next_sequence } else { -1 };
    if idempotent {
        // Sequences wrap at i32::MAX as in Kafka.
        q.next_sequence = q.next_sequence.wrapping_add(n) & i32::MAX;
    }
    q.ready.push_back(SealedBatch {
        records: b.records,
        bytes: b.bytes,
        base_sequence,
        encoded: None,
        attempts: 0,
        retry_at: None,
        id: q.next_id,
        created: b.created,
    });
    q.next_id += 1;
}

/// One batch on its way, with where it came from.
struct Outgoing {
    topic: Arc<str>,
    partition: i32,
    batch: SealedBatch,
}

/// Seals batches whose linger expired (or all, when flushing) and takes the batches that
/// may be sent now. Returns them and the next linger deadline.
fn drain(shared: &Shared) -> (Vec<Outgoing>, Option<Instant>, bool) {
    let mut st = shared.state.lock().expect("producer lock");
    let now = Instant::now();
    let flush_all = st.flushing > 0 || st.closed;
    let linger = shared.cfg.linger;
    let max_in_flight = shared.cfg.max_in_flight;
    let mut out = Vec::new();
    let mut next: Option<Instant> = None;
    for ((topic, partition), q) in st.partitions.iter_mut() {
        if let Some(open) = &q.open {
            let due = open.created + linger;
            if flush_all || due <= now {
                seal(q, shared.cfg.idempotence);
            } else {
                next = Some(next.map_or(due, |n: Instant| n.min(due)));
            }
        }
        // One batch per partition per request, as in Kafka: answers are matched to
        // batches by partition. The next ready batch goes in the next request, which the
        // sender makes at once.
        let Some(front) = q.ready.front() else {
            continue;
        };
        let retrying = front.attempts > 0;
        if let Some(at) = front.retry_at.filter(|at| *at > now) {
            next = Some(next.map_or(at, |n: Instant| n.min(at)));
            continue;
        }
        let may = if retrying {
            q.in_flight == 0
        } else {
            q.window.len() < max_in_flight
        };
        if !may {
            continue;
        }
        let batch = q.ready.pop_front().expect("front exists");
        q.in_flight += 1;
        if !retrying {
            q.window.push_back((batch.id, false));
        }
        out.push(Outgoing {
            topic: topic.clone(),
            partition: *partition,
            batch,
        });
        if !q.ready.is_empty() {
            next = Some(now);
        }
    }
    let idle = st.closed && st.unfinished == 0;
    (out, next, idle)
}

async fn sender_loop(shared: Arc<Shared>) {
    loop {
        let notified = shared.wake.notified();
        let (out, next, idle) = drain(&shared);
        if idle {
            tracing::debug!("producer sender stopped");
            return;
        }
        if !out.is_empty() {
            dispatch(&shared, out).await;
        }
        let wait = next
            .map(|n| n.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(100));
        let _ = tokio::time::timeout(wait, notified).await;
    }
}

fn encode(shared: &Shared, o: &mut Outgoing) -> Result<Bytes, ProducerError> {
    if let Some(b) = &o.batch.encoded {
        return Ok(b.clone());
    }
    let base_seq = o.batch.base_sequence;
    let (producer_id, producer_epoch) = *shared.ids.lock().expect("ids lock");
    let transactional = shared.cfg.transactional_id.is_some();
    let records: Vec<WireRecord> = o
        .batch
        .records
        .iter()
        .enumerate()
        .map(|(i, r)| WireRecord {
            transactional,
            control: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // With no idempotence base_seq is -1 and these stay consistent deltas.
            sequence: base_seq.wrapping_add(i as i32),
            timestamp: r.timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                .collect::<IndexMap<_, _>>(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::with_capacity(o.batch.bytes + 128);
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: shared.cfg.compression,
        },
    )
    .map_err(|e| ProducerError::Encode(e.to_string()))?;
    let bytes = buf.freeze();
    o.batch.encoded = Some(bytes.clone());
    Ok(bytes)
}

/// Encodes the batches, groups them by leader and sends one request per leader; each
/// request's answer is handled in its own task.
async fn dispatch(shared: &Arc<Shared>, out: Vec<Outgoing>) {
    let mut by_leader: HashMap<i32, Vec<(Outgoing, Bytes)>> = HashMap::new();
    for mut o in out {
        let leader = match shared.client.leader(&o.topic, o.partition).await {
            Ok(l) => l,
            Err(e) => {
                finish(shared, o, Err(ProducerError::Client(e)));
                continue;
            }
        };
        match encode(shared, &mut o) {
            Ok(bytes) => by_leader.entry(leader).or_default().push((o, bytes)),
            Err(e) => finish(shared, o, Err(e)),
        }
    }
    // Requests are queued on the connection here, in order; only the wait for each answer
    // runs in its own task. Queueing from spawned tasks could reorder a partition's batches.
    for (leader, batches) in by_leader {
        send_request(shared, leader, batches).await;
    }
}

async fn send_request(shared: &Arc<Shared>, leader: i32, batches: Vec<(Outgoing, Bytes)>) {
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for (o, bytes) in &batches {
        let pd = PartitionProduceData::default()
            .with_index(o.partition)
            .with_records(Some(bytes.clone()));
        match topics.iter_mut().find(|t| t.name.0.as_str() == &*o.topic) {
            Some(t) => t.partition_data.push(pd),
            None => topics.push(
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(o.topic.to_string())))
                    .with_partition_data(vec![pd]),
            ),
        }
    }
    let req = ProduceRequest::default()
        .with_transactional_id(
            shared
                .cfg
                .transactional_id
                .as_ref()
                .map(|id| TransactionalId(StrBytes::from_string(id.clone()))),
        )
        .with_acks(shared.cfg.acks.wire())
        .with_timeout_ms(shared.cfg.client.request_timeout.as_millis() as i32)
        .with_topic_data(topics);
    let conn = match shared.client.broker(leader).await {
        Ok(c) => c,
        Err(e) => {
            for (o, _) in batches {
                finish(shared, o, Err(ProducerError::Client(e.clone())));
            }
            return;
        }
    };
    let version = match conn.version_for::<ProduceRequest>(PRODUCE_VERSIONS) {
        Ok(v) => v,
        Err(e) => {
            for (o, _) in batches {
                finish(shared, o, Err(ProducerError::Client(e.clone())));
            }
            return;
        }
    };
    if shared.cfg.acks == Acks::None {
        let r = conn.send_only(&req, version).await;
        for (o, _) in batches {
            let r = r.clone().map(|()| -1).map_err(ProducerError::Client);
            finish(shared, o, r);
        }
        return;
    }
    let pending = match conn.submit(&req, version).await {
        Ok(p) => p,
        Err(e) => {
            for (o, _) in batches {
                finish(shared, o, Err(ProducerError::Client(e.clone())));
            }
            return;
        }
    };
    let shared = shared.clone();
    tokio::spawn(async move { complete(&shared, pending.response().await, batches) });
}

fn complete(
    shared: &Shared,
    answer: Result<kafka_protocol::messages::ProduceResponse, ClientError>,
    batches: Vec<(Outgoing, Bytes)>,
) {
    match answer {
        Err(e) => {
            for (o, _) in batches {
                finish(shared, o, Err(ProducerError::Client(e.clone())));
            }
        }
        Ok(resp) => {
            let mut answers: HashMap<(String, i32), (i16, i64)> = HashMap::new();
            for t in resp.responses {
                for p in t.partition_responses {
                    answers.insert(
                        (t.name.0.to_string(), p.index),
                        (p.error_code, p.base_offset),
                    );
                }
            }
            for (o, _) in batches {
                let r = match answers.get(&(o.topic.to_string(), o.partition)) {
                    None => Err(ProducerError::Client(ClientError::Protocol(format!(
                        "no answer for {}-{}",
                        o.topic, o.partition
                    )))),
                    Some(&(0, offset)) => Ok(offset),
                    Some(&(code, offset)) => match ResponseError::try_from_code(code) {
                        // The broker already has this batch: a retry after a lost answer.
                        Some(ResponseError::DuplicateSequenceNumber) => Ok(offset),
                        Some(error) => Err(ProducerError::Kafka {
                            topic: o.topic.to_string(),
                            partition: o.partition,
                            error,
                        }),
                        None => Ok(offset),
                    },
                };
                finish(shared, o, r);
            }
        }
    }
}

fn retriable(shared: &Shared, e: &ProducerError) -> bool {
    match e {
        ProducerError::Client(c) => c.is_retriable(),
        ProducerError::Kafka { error, .. } => {
            error.is_retriable()
                // An earlier batch of the partition is being retried; this one follows it.
                || (shared.cfg.idempotence && *error == ResponseError::OutOfOrderSequenceNumber)
        }
        _ => false,
    }
}

/// Completes a batch (base offset or error), or puts it back in sequence order to retry.
fn finish(shared: &Shared, mut o: Outgoing, result: Result<i64, ProducerError>) {
    let mut result = result;
    if let Err(e) = &result {
        if e_invalidates(e) {
            shared.client.invalidate(&o.topic);
        }
        let backoff = shared.cfg.client.backoff(o.batch.attempts + 1);
        let in_time = o.batch.created.elapsed() + backoff < shared.cfg.delivery_timeout;
        if retriable(shared, e) && o.batch.attempts < shared.cfg.retries && !in_time {
            result = Err(ProducerError::DeliveryTimeout {
                after: shared.cfg.delivery_timeout,
                last: Box::new(e.clone()),
            });
        } else if retriable(shared, e) && o.batch.attempts < shared.cfg.retries {
            tracing::debug!(topic = %o.topic, partition = o.partition, error = %e, "retrying batch");
            o.batch.attempts += 1;
            o.batch.retry_at = Some(Instant::now() + backoff);
            {
                let mut st = shared.state.lock().expect("producer lock");
                if let Some(q) = st.partitions.get_mut(&(o.topic.clone(), o.partition)) {
                    q.in_flight -= 1;
                    let seq = o.batch.base_sequence;
                    let at = q
                        .ready
                        .iter()
                        .position(|b| b.base_sequence > seq)
                        .unwrap_or(q.ready.len());
                    q.ready.insert(at, o.batch);
                }
            }
            shared.wake.notify_one();
            return;
        }
    }
    if shared.cfg.transactional_id.is_some() {
        // Inside a transaction a failed record fails the transaction: say how.
        result = result.map_err(crate::txn::classify);
    }
    let n = o.batch.records.len();
    let bytes = o.batch.bytes;
    for (i, r) in std::mem::take(&mut o.batch.records).into_iter().enumerate() {
        let reply = match &result {
            Ok(base) => Ok(RecordMetadata {
                topic: o.topic.to_string(),
                partition: o.partition,
                offset: if *base >= 0 { base + i as i64 } else { -1 },
            }),
            Err(e) => Err(e.clone()),
        };
        let _ = r.reply.send(reply);
    }
    {
        let mut st = shared.state.lock().expect("producer lock");
        if let Some(q) = st.partitions.get_mut(&(o.topic.clone(), o.partition)) {
            q.in_flight -= 1;
            if let Some(e) = q.window.iter_mut().find(|e| e.0 == o.batch.id) {
                e.1 = true;
            }
            while q.window.front().is_some_and(|e| e.1) {
                q.window.pop_front();
            }
        }
        st.unfinished -= n;
        if let (Err(e), true) = (&result, shared.cfg.transactional_id.is_some()) {
            // A failed batch fails the transaction: abortable, or fatal when fenced.
            st.txn.batch_failed(e);
        }
    }
    shared.memory.add_permits(bytes);
    shared.progress.notify_waiters();
    shared.wake.notify_one();
}

fn e_invalidates(e: &ProducerError) -> bool {
    match e {
        ProducerError::Client(c) => c.invalidates_metadata(),
        ProducerError::Kafka { error, .. } => matches!(
            error,
            ResponseError::NotLeaderOrFollower
                | ResponseError::UnknownTopicOrPartition
                | ResponseError::LeaderNotAvailable
        ),
        _ => false,
    }
}

/// A new producer id or epoch: every partition's sequence starts again at 0. Called only
/// when nothing is buffered or in flight (after a flush).
pub(crate) fn reset_sequences(st: &mut State) {
    for q in st.partitions.values_mut() {
        q.next_sequence = 0;
    }
}
