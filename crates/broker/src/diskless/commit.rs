//! This broker's committer: the produce path of diskless topics.
//!
//! API handlers submit each partition's validated batches ([`Committer::submit`]); the
//! submission waits for room in a bound on the bytes in flight (four objects' worth), so a
//! burst of producers waits rather than piling up memory. One task gathers one
//! `commit_interval_ms` (or `commit_max_bytes`) of submissions across all partitions into
//! ONE object — each partition's batches contiguous in it — and then:
//! 1. registers the object in `rafka_objects` (state 0: uploaded-or-not, not committed),
//! 2. uploads it under a key no other write uses ([`super::objects::object_key`]),
//! 3. in one PostgreSQL transaction on its own connection: locks the partitions' rows in
//!    `(topic_id, partition)` order, checks idempotent producers against
//!    `rafka_producers` (Kafka's rules, [`ProducerStates`]), assigns offsets from the
//!    high watermarks, inserts the batch index rows (one per partition per object, split
//!    only where a refused or duplicate batch lies between accepted ones), moves the high
//!    watermarks, upserts the producers, marks the object committed (or unreferenced when
//!    nothing of it was accepted) and notifies `rafka_hw`,
//! 4. and only after COMMIT answers the submissions.
//!
//! A failed upload or a failed (or unknown) commit answers every submission of the object
//! with a retriable error and never with a success; the object stays in state 0 and the
//! sweeper deletes it after the grace period. The object's state moves from 0 only inside
//! the commit (`WHERE state = 0`), and the sweeper claims an object by moving it from 0
//! before deleting it, so an object is never both swept and committed.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use rafka_core::{Offset, ValidatedBatch};

use super::fetch::Watermarks;
use super::{objects, pg, DisklessError};
use crate::producer_state::{ProducerStates, SequenceCheck, SequenceSpan, WrittenBatch};

/// A partition of a diskless topic: (topic id, partition index).
pub type Tp = (Uuid, i32);

/// Object states in `rafka_objects.state`.
pub mod state {
    /// Registered before its upload; not committed (yet, or ever).
    pub const PENDING: i16 = 0;
    /// Committed: batch index rows refer to it.
    pub const COMMITTED: i16 = 1;
    /// No batch index row refers to it any more.
    pub const UNREFERENCED: i16 = 2;
    /// Claimed by a sweeper, which deletes it.
    pub const DELETING: i16 = 3;
}

/// What a committed submission answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The offset of the first batch (a duplicate's original offset).
    pub base_offset: i64,
    /// The partition's log start offset.
    pub log_start_offset: i64,
}

/// Why a submission was not committed; mapped to Kafka error codes in `api/produce.rs`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// An idempotent producer's sequence gap (OUT_OF_ORDER_SEQUENCE_NUMBER).
    #[error("out of order sequence number: expected {expected}")]
    OutOfOrder {
        /// The sequence the partition expected.
        expected: i32,
    },
    /// An epoch older than the producer's current one (INVALID_PRODUCER_EPOCH).
    #[error("producer epoch is older than the producer's current epoch")]
    Fenced,
    /// The partition's row is gone (the topic was deleted meanwhile).
    #[error("the partition no longer exists")]
    UnknownPartition,
    /// The upload failed: nothing was committed (KAFKA_STORAGE_ERROR, retriable).
    #[error("object store: {0}")]
    Upload(String),
    /// The commit failed or its outcome is unknown (REQUEST_TIMED_OUT, retriable; an
    /// idempotent producer's retry is deduplicated if it was committed after all).
    #[error("coordinator: {0}")]
    Coordinator(String),
    /// The broker is stopping.
    #[error("shutting down")]
    ShuttingDown,
}

/// Counters of the committer, for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Objects uploaded.
    pub objects: AtomicU64,
    /// Bytes uploaded.
    pub bytes: AtomicU64,
    /// PostgreSQL transactions committed.
    pub transactions: AtomicU64,
    /// Sum of the commit durations (register, upload, transaction), microseconds.
    pub commit_micros: AtomicU64,
}

struct Submission {
    tp: Tp,
    batches: Vec<ValidatedBatch>,
    bytes: usize,
    reply: oneshot::Sender<Result<Committed, CommitError>>,
    _permit: OwnedSemaphorePermit,
}

/// The handle API handlers submit through.
pub struct Committer {
    tx: mpsc::Sender<Submission>,
    permits: Arc<Semaphore>,
    max_permits: u32,
    /// acks=0 produce requests whose commit runs on unanswered (`DETACHED_MAX`).
    detached: Arc<Semaphore>,
    /// The committer's counters.
    pub stats: Arc<CommitStats>,
}

/// acks=0 produce requests committing at once at most; past it one is dropped (acks=0
/// promises nothing) rather than held in memory.
pub const DETACHED_MAX: usize = 1024;

/// What the committer task needs.
pub(crate) struct CommitterParts {
    pub conn: String,
    pub store: Arc<dyn ObjectStore>,
    pub prefix: ObjectPath,
    pub node_id: i32,
    pub interval: Duration,
    pub max_bytes: usize,
    pub marks: Arc<Watermarks>,
}

/// Submissions queued for the committer task (each also holds its bytes' permits).
const QUEUE_MAX: usize = 4096;

/// The longest an upload, or the registration and the transaction, may take before the
/// commit is given up (answered with a retriable error; the object stays for the sweeper).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

impl Committer {
    /// Starts the committer task; it ends when the `Committer` is dropped.
    pub(crate) fn start(parts: CommitterParts) -> Committer {
        let max_permits = parts
            .max_bytes
            .saturating_mul(4)
            .min(Semaphore::MAX_PERMITS)
            .min(u32::MAX as usize) as u32;
        let (tx, rx) = mpsc::channel(QUEUE_MAX);
        let stats = Arc::new(CommitStats::default());
        let task = Task {
            parts,
            client: None,
            stats: stats.clone(),
        };
        tokio::spawn(task.run(rx));
        Committer {
            tx,
            permits: Arc::new(Semaphore::new(max_permits as usize)),
            max_permits,
            detached: Arc::new(Semaphore::new(DETACHED_MAX)),
            stats,
        }
    }

    /// Room for one more acks=0 request committing unanswered, if there is any.
    pub fn detached_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.detached.clone().try_acquire_owned().ok()
    }

    /// Submits one partition's batches and waits for their commit. Waits first for room
    /// if the bytes in flight are at their bound.
    pub async fn submit(
        &self,
        tp: Tp,
        batches: Vec<ValidatedBatch>,
    ) -> Result<Committed, CommitError> {
        let rx = self.enqueue(tp, batches).await?;
        rx.await.map_err(|_| CommitError::ShuttingDown)?
    }

    /// Queues a submission; the receiver gets its outcome.
    pub async fn enqueue(
        &self,
        tp: Tp,
        batches: Vec<ValidatedBatch>,
    ) -> Result<oneshot::Receiver<Result<Committed, CommitError>>, CommitError> {
        let bytes: usize = batches.iter().map(|b| b.as_batch().size_bytes()).sum();
        let want = (bytes.max(1).min(self.max_permits as usize)) as u32;
        let permit = self
            .permits
            .clone()
            .acquire_many_owned(want)
            .await
            .map_err(|_| CommitError::ShuttingDown)?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Submission {
                tp,
                batches,
                bytes,
                reply,
                _permit: permit,
            })
            .await
            .map_err(|_| CommitError::ShuttingDown)?;
        Ok(rx)
    }
}

struct Task {
    parts: CommitterParts,
    client: Option<tokio_postgres::Client>,
    stats: Arc<CommitStats>,
}

/// One accepted run of batches: contiguous in the object and in offsets.
#[derive(Debug, Clone, Copy)]
struct Run {
    tp: Tp,
    base_offset: i64,
    last_offset: i64,
    byte_offset: i64,
    byte_length: i64,
    batch_count: i32,
    max_timestamp: i64,
}

/// Where a batch lies in the object being built.
struct Placed {
    /// The submission it came from.
    sub: usize,
    /// Its index in the submission.
    batch: usize,
    byte_offset: usize,
    byte_length: usize,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Submission>) {
        while let Some(first) = rx.recv().await {
            let deadline = tokio::time::Instant::now() + self.parts.interval;
            let mut bytes = first.bytes;
            let mut subs = vec![first];
            while bytes < self.parts.max_bytes {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(s)) => {
                        bytes += s.bytes;
                        subs.push(s);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            self.commit(subs).await;
        }
    }

    /// The transaction connection, made again after the last one closed.
    async fn client(&mut self) -> Result<&mut tokio_postgres::Client, DisklessError> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = Some(pg::connect(&self.parts.conn).await?);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    async fn commit(&mut self, subs: Vec<Submission>) {
        let started = Instant::now();
        // The object: partitions in (topic id, partition) order, each one's batches in
        // arrival order, contiguous.
        let mut by_tp: BTreeMap<Tp, Vec<usize>> = BTreeMap::new();
        for (i, s) in subs.iter().enumerate() {
            by_tp.entry(s.tp).or_default().push(i);
        }
        let total: usize = subs.iter().map(|s| s.bytes).sum();
        let mut object = BytesMut::with_capacity(total);
        let mut placed: BTreeMap<Tp, Vec<Placed>> = BTreeMap::new();
        for (tp, idx) in &by_tp {
            let list = placed.entry(*tp).or_default();
            for &i in idx {
                for (j, b) in subs[i].batches.iter().enumerate() {
                    let bytes = b.as_batch().as_bytes();
                    list.push(Placed {
                        sub: i,
                        batch: j,
                        byte_offset: object.len(),
                        byte_length: bytes.len(),
                    });
                    object.extend_from_slice(bytes);
                }
            }
        }
        let object = object.freeze();
        let key = objects::object_key(&self.parts.prefix, self.parts.node_id, Uuid::new_v4());
        let size = object.len() as i64;
        let outcome = async {
            let object_id = tokio::time::timeout(STEP_TIMEOUT, self.register(&key, size))
                .await
                .map_err(|_| CommitError::Coordinator("registration timed out".into()))?
                .map_err(|e| CommitError::Coordinator(e.to_string()))?;
            tokio::time::timeout(STEP_TIMEOUT, self.parts.store.put(&key, object.into()))
                .await
                .map_err(|_| CommitError::Upload("upload timed out".into()))?
                .map_err(|e| CommitError::Upload(e.to_string()))?;
            self.stats.objects.fetch_add(1, Ordering::Relaxed);
            self.stats.bytes.fetch_add(size as u64, Ordering::Relaxed);
            tokio::time::timeout(STEP_TIMEOUT, self.transact(object_id, &subs, &placed))
                .await
                .map_err(|_| CommitError::Coordinator("commit timed out".into()))?
                .map_err(|e| CommitError::Coordinator(e.to_string()))
        }
        .await;
        self.stats
            .commit_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        match outcome {
            Ok((answers, moved)) => {
                self.stats.transactions.fetch_add(1, Ordering::Relaxed);
                for (tp, (log_start, hw)) in moved {
                    self.parts.marks.advance(tp, log_start, hw);
                }
                for (s, a) in subs.into_iter().zip(answers) {
                    let _ = s.reply.send(a);
                }
            }
            Err(e) => {
                tracing::warn!(object = %key, error = %e, "diskless commit failed; answering a retriable error");
                if let Some(c) = &self.client {
                    if matches!(e, CommitError::Coordinator(_)) && !c.is_closed() {
                        // An unknown outcome leaves the connection in an unknown state.
                        self.client = None;
                    }
                }
                for s in subs {
                    let _ = s.reply.send(Err(e.clone()));
                }
            }
        }
    }

    async fn register(&mut self, key: &ObjectPath, size: i64) -> Result<i64, DisklessError> {
        let node_id = self.parts.node_id;
        let client = self.client().await?;
        let row = client
            .query_one(
                "INSERT INTO rafka_objects (object_key, node_id, size_bytes, state) \
                 VALUES ($1, $2, $3, 0) RETURNING object_id",
                &[&key.as_ref(), &node_id, &size],
            )
            .await?;
        Ok(row.get(0))
    }

    /// The transaction: returns each submission's answer and the partitions whose high
    /// watermark moved, with their log start offset.
    #[allow(clippy::type_complexity)]
    async fn transact(
        &mut self,
        object_id: i64,
        subs: &[Submission],
        placed: &BTreeMap<Tp, Vec<Placed>>,
    ) -> Result<(Vec<Result<Committed, CommitError>>, Vec<(Tp, (i64, i64))>), DisklessError> {
        let client = self.client().await?;
        let tx = client.transaction().await?;
        let tids: Vec<Uuid> = placed.keys().map(|t| t.0).collect();
        let parts: Vec<i32> = placed.keys().map(|t| t.1).collect();
        let rows = tx
            .query(
                "SELECT p.topic_id, p.partition, p.high_watermark, p.log_start_offset \
                 FROM rafka_partitions p \
                 JOIN unnest($1::uuid[], $2::int[]) AS u(t, n) \
                 ON p.topic_id = u.t AND p.partition = u.n \
                 ORDER BY p.topic_id, p.partition FOR UPDATE OF p",
                &[&tids, &parts],
            )
            .await?;
        let mut marks: HashMap<Tp, (i64, i64)> = rows
            .iter()
            .map(|r| ((r.get(0), r.get(1)), (r.get(3), r.get(2))))
            .collect();
        // Producer state of the producers these batches name.
        let (mut pt, mut pp, mut pids) = (Vec::new(), Vec::new(), Vec::new());
        for (tp, list) in placed {
            let mut seen = Vec::new();
            for &i in list.iter().map(|p| &p.sub) {
                for b in &subs[i].batches {
                    let id = b.as_batch().producer_id();
                    if id >= 0 && !seen.contains(&id) {
                        seen.push(id);
                        pt.push(tp.0);
                        pp.push(tp.1);
                        pids.push(id);
                    }
                }
            }
        }
        let mut states: HashMap<Tp, ProducerStates> = HashMap::new();
        if !pids.is_empty() {
            let rows = tx
                .query(
                    "SELECT pr.topic_id, pr.partition, pr.producer_id, pr.producer_epoch, \
                     pr.first_seqs, pr.last_seqs, pr.base_offsets FROM rafka_producers pr \
                     JOIN unnest($1::uuid[], $2::int[], $3::bigint[]) AS u(t, n, id) \
                     ON pr.topic_id = u.t AND pr.partition = u.n AND pr.producer_id = u.id",
                    &[&pt, &pp, &pids],
                )
                .await?;
            for r in rows {
                let (firsts, lasts, bases): (Vec<i32>, Vec<i32>, Vec<i64>) =
                    (r.get(4), r.get(5), r.get(6));
                let batches = firsts
                    .iter()
                    .zip(&lasts)
                    .zip(&bases)
                    .map(|((&f, &l), &o)| WrittenBatch {
                        first_sequence: f,
                        last_sequence: l,
                        base_offset: Offset(o),
                    })
                    .collect();
                states.entry((r.get(0), r.get(1))).or_default().restore(
                    r.get(2),
                    r.get(3),
                    batches,
                );
            }
        }
        // Offsets, partition by partition, submission by submission: a refused batch
        // refuses its submission's batches (none of them is written).
        let mut answers: Vec<Option<Result<Committed, CommitError>>> = vec![None; subs.len()];
        let mut runs: Vec<Run> = Vec::new();
        let mut moved = Vec::new();
        let mut touched: Vec<(Tp, i64)> = Vec::new();
        for (tp, list) in placed {
            let Some(&(log_start, start_hw)) = marks.get(tp) else {
                for p in list {
                    answers[p.sub] = Some(Err(CommitError::UnknownPartition));
                }
                continue;
            };
            let state = states.entry(*tp).or_default();
            let mut hw = start_hw;
            // Each batch's assigned base offset (None: not written).
            let mut assigned: Vec<Option<i64>> = vec![None; list.len()];
            let mut k = 0;
            while k < list.len() {
                let sub = list[k].sub;
                let end = list[k..]
                    .iter()
                    .position(|p| p.sub != sub)
                    .map_or(list.len(), |n| k + n);
                let snapshot = state.clone();
                let mut local_hw = hw;
                let mut first: Option<i64> = None;
                let mut refused = None;
                for (j, b) in subs[sub].batches.iter().enumerate() {
                    let b = b.as_batch();
                    match state.check(b) {
                        SequenceCheck::Append => {
                            let base = local_hw;
                            local_hw += i64::from(b.last_offset_delta()) + 1;
                            state.record(SequenceSpan::of(b), Offset(base));
                            assigned[k + j] = Some(base);
                            first.get_or_insert(base);
                        }
                        SequenceCheck::Duplicate(o) => {
                            first.get_or_insert(o.0);
                        }
                        SequenceCheck::OutOfOrder { expected } => {
                            refused = Some(CommitError::OutOfOrder { expected });
                            break;
                        }
                        SequenceCheck::Fenced => {
                            refused = Some(CommitError::Fenced);
                            break;
                        }
                    }
                }
                if let Some(e) = refused {
                    *state = snapshot;
                    for a in &mut assigned[k..end] {
                        *a = None;
                    }
                    answers[sub] = Some(Err(e));
                } else {
                    hw = local_hw;
                    answers[sub] = Some(Ok(Committed {
                        base_offset: first.unwrap_or(hw),
                        log_start_offset: log_start,
                    }));
                }
                k = end;
            }
            // Runs of written batches adjacent in the object.
            let mut run: Option<Run> = None;
            for (p, a) in list.iter().zip(&assigned) {
                let Some(base) = *a else {
                    runs.extend(run.take());
                    continue;
                };
                let batch = subs[p.sub].batches[p.batch].as_batch();
                let last = base + i64::from(batch.last_offset_delta());
                let ts = batch.max_timestamp().0;
                match &mut run {
                    Some(r) if r.byte_offset + r.byte_length == p.byte_offset as i64 => {
                        r.last_offset = last;
                        r.byte_length += p.byte_length as i64;
                        r.batch_count += 1;
                        r.max_timestamp = r.max_timestamp.max(ts);
                    }
                    _ => {
                        runs.extend(run.take());
                        run = Some(Run {
                            tp: *tp,
                            base_offset: base,
                            last_offset: last,
                            byte_offset: p.byte_offset as i64,
                            byte_length: p.byte_length as i64,
                            batch_count: 1,
                            max_timestamp: ts,
                        });
                    }
                }
            }
            runs.extend(run.take());
            if hw != start_hw {
                marks.insert(*tp, (log_start, hw));
                moved.push((*tp, (log_start, hw)));
                touched.push((*tp, hw));
            }
        }
        if !runs.is_empty() {
            let c = |f: fn(&Run) -> i64| runs.iter().map(f).collect::<Vec<i64>>();
            let rt: Vec<Uuid> = runs.iter().map(|r| r.tp.0).collect();
            let rp: Vec<i32> = runs.iter().map(|r| r.tp.1).collect();
            let counts: Vec<i32> = runs.iter().map(|r| r.batch_count).collect();
            tx.execute(
                "INSERT INTO rafka_batches (topic_id, partition, base_offset, last_offset, \
                 object_id, byte_offset, byte_length, batch_count, max_timestamp) \
                 SELECT t, n, b, l, $5, o, len, c, ts FROM unnest($1::uuid[], $2::int[], \
                 $3::bigint[], $4::bigint[], $6::bigint[], $7::bigint[], $8::int[], \
                 $9::bigint[]) AS u(t, n, b, l, o, len, c, ts)",
                &[
                    &rt,
                    &rp,
                    &c(|r| r.base_offset),
                    &c(|r| r.last_offset),
                    &object_id,
                    &c(|r| r.byte_offset),
                    &c(|r| r.byte_length),
                    &counts,
                    &c(|r| r.max_timestamp),
                ],
            )
            .await?;
        }
        if !touched.is_empty() {
            let t: Vec<Uuid> = touched.iter().map(|x| x.0 .0).collect();
            let n: Vec<i32> = touched.iter().map(|x| x.0 .1).collect();
            let hw: Vec<i64> = touched.iter().map(|x| x.1).collect();
            tx.execute(
                "UPDATE rafka_partitions p SET high_watermark = u.hw \
                 FROM unnest($1::uuid[], $2::int[], $3::bigint[]) AS u(t, n, hw) \
                 WHERE p.topic_id = u.t AND p.partition = u.n",
                &[&t, &n, &hw],
            )
            .await?;
        }
        // Producers whose state changed: every one named by an accepted batch.
        let (mut ut, mut un, mut uid, mut uep, mut uf, mut ul, mut ub, mut uts) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for ((t, n), id) in pt.iter().zip(&pp).zip(&pids) {
            let Some((epoch, batches)) = states.get(&(*t, *n)).and_then(|s| s.entry(*id)) else {
                continue;
            };
            ut.push(*t);
            un.push(*n);
            uid.push(*id);
            uep.push(epoch);
            uf.push(int_array(
                batches.iter().map(|b| i64::from(b.first_sequence)),
            ));
            ul.push(int_array(
                batches.iter().map(|b| i64::from(b.last_sequence)),
            ));
            ub.push(int_array(batches.iter().map(|b| b.base_offset.0)));
            uts.push(now_ms());
        }
        if !ut.is_empty() {
            tx.execute(
                "INSERT INTO rafka_producers (topic_id, partition, producer_id, producer_epoch, \
                 first_seqs, last_seqs, base_offsets, last_timestamp) \
                 SELECT t, n, id, ep, f::int[], l::int[], b::bigint[], ts FROM unnest( \
                 $1::uuid[], $2::int[], $3::bigint[], $4::smallint[], $5::text[], $6::text[], \
                 $7::text[], $8::bigint[]) AS u(t, n, id, ep, f, l, b, ts) \
                 ON CONFLICT (topic_id, partition, producer_id) DO UPDATE SET \
                 producer_epoch = excluded.producer_epoch, first_seqs = excluded.first_seqs, \
                 last_seqs = excluded.last_seqs, base_offsets = excluded.base_offsets, \
                 last_timestamp = excluded.last_timestamp",
                &[&ut, &un, &uid, &uep, &uf, &ul, &ub, &uts],
            )
            .await?;
        }
        let new_state = if runs.is_empty() {
            state::UNREFERENCED
        } else {
            state::COMMITTED
        };
        let n = tx
            .execute(
                "UPDATE rafka_objects SET state = $2, state_changed_at = now() \
                 WHERE object_id = $1 AND state = 0",
                &[&object_id, &new_state],
            )
            .await?;
        if n != 1 {
            return Err(DisklessError::Config(format!(
                "object {object_id} was claimed by the sweeper before its commit"
            )));
        }
        for payload in notify_payloads(&moved) {
            tx.execute("SELECT pg_notify('rafka_hw', $1)", &[&payload])
                .await?;
        }
        tx.commit().await?;
        let answers = answers
            .into_iter()
            .map(|a| a.unwrap_or(Err(CommitError::UnknownPartition)))
            .collect();
        Ok((answers, moved))
    }
}

/// A PostgreSQL array literal of integers.
fn int_array(v: impl Iterator<Item = i64>) -> String {
    let items: Vec<String> = v.map(|x| x.to_string()).collect();
    format!("{{{}}}", items.join(","))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Largest `rafka_hw` payload (PostgreSQL's limit is 8000 bytes).
const NOTIFY_PAYLOAD_MAX: usize = 7000;

/// `rafka_hw` payloads: `topic_id/partition/log_start/high_watermark` entries separated
/// by spaces, split below PostgreSQL's payload limit.
pub(crate) fn notify_payloads(moved: &[(Tp, (i64, i64))]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for ((t, n), (ls, hw)) in moved {
        let item = format!("{}/{n}/{ls}/{hw}", t.simple());
        if !cur.is_empty() && cur.len() + 1 + item.len() > NOTIFY_PAYLOAD_MAX {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(&item);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Parses a `rafka_hw` payload (entries that do not parse are skipped).
pub(crate) fn parse_payload(payload: &str) -> Vec<(Tp, (i64, i64))> {
    payload
        .split(' ')
        .filter_map(|item| {
            let mut it = item.split('/');
            let t = Uuid::parse_str(it.next()?).ok()?;
            let n = it.next()?.parse().ok()?;
            let ls = it.next()?.parse().ok()?;
            let hw = it.next()?.parse().ok()?;
            Some(((t, n), (ls, hw)))
        })
        .collect()
}
