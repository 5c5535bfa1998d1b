//! The transaction APIs (AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit,
//! WriteTxnMarkers, DescribeTransactions, ListTransactions, DescribeProducers) and the IO
//! driver of the transaction coordinator.
//!
//! The coordinator ([`crate::txn`]) is sans IO: it hands out `__transaction_state` records
//! to append and markers to write. [`complete`] appends a record (and flushes it under
//! `acks=all` durability) outside the coordinator's lock, then reports it; [`drive`]
//! carries out what follows — markers written through each partition's
//! [`PartitionState::write_marker`](crate::state::PartitionState::write_marker) (or, on
//! `__consumer_offsets`, through the group coordinator, which makes the transaction's
//! offsets visible with the marker), then the record that completes the transaction.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse as ProducersPartition, ProducerState, TopicResponse as ProducersTopic,
};
use kafka_protocol::messages::describe_transactions_response::{
    TopicData, TransactionState as DescribedState,
};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedState;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeProducersRequest, DescribeProducersResponse,
    DescribeTransactionsRequest, DescribeTransactionsResponse, EndTxnRequest, EndTxnResponse,
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, ResponseKind, TransactionalId,
    TxnOffsetCommitRequest, TxnOffsetCommitResponse, WriteTxnMarkersRequest,
    WriteTxnMarkersResponse,
};
use kafka_protocol::ResponseError;

use rafka_core::batch::{BatchBuilder, SimpleRecord};
use rafka_core::{Offset, StorageError, Timestamp, ValidatedBatch};

use super::{sb, wire_topic, Reply};
use crate::config::FsyncPolicy;
use crate::group::{Committer, OffsetToCommit};
use crate::shared::Shared;
use crate::state::{AppendError, PartitionState, OFFSETS_TOPIC};
use crate::sync_queue::FlushFailed;
use crate::txn::coordinator::{Effect, ListFilter, Pending, Reply as TxnReply, Step, WriteMarkers};
use crate::txn::records::TopicPart;
use crate::txn::{
    AppendFailure, ProducerIdAndEpoch, TransactionVersion, TxnApi, TxnError, TxnResult,
};

/// Milliseconds since the epoch, the coordinator's clock.
pub(crate) fn now_ms() -> i64 {
    Timestamp::now().0
}

/// Flushes `p` when the durability policy flushes before acks=all answers.
async fn flush_for_ack(shared: &Shared, p: Arc<PartitionState>) -> Result<(), FlushFailed> {
    if shared.config.durability.fsync != FsyncPolicy::OnAckAll {
        return Ok(());
    }
    p.durable().await
}

/// Appends one `__transaction_state` record (uncompressed, key and value as the
/// coordinator encoded them) and flushes it.
async fn append_record(
    shared: &Shared,
    key: &bytes::Bytes,
    value: Option<&bytes::Bytes>,
    partition: i32,
) -> Result<(), AppendFailure> {
    let log = shared.txn_log().map_err(|_| AppendFailure::Unavailable)?;
    let p = usize::try_from(partition)
        .ok()
        .and_then(|i| log.get(i))
        .cloned()
        .ok_or(AppendFailure::NotLeaderOrStorage)?;
    let batch = BatchBuilder::new(Offset(0))
        .record(SimpleRecord {
            key: Some(key.clone()),
            value: value.cloned(),
            headers: Vec::new(),
            timestamp: Timestamp::now(),
        })
        .build();
    let batch = ValidatedBatch::new(batch).map_err(|_| AppendFailure::TooLarge)?;
    match p.append(batch) {
        Ok(_) => {}
        Err(AppendError::Storage(StorageError::BatchTooLarge { .. })) => {
            return Err(AppendFailure::TooLarge)
        }
        Err(e) => {
            tracing::error!(partition = %p.tp, error = %e, "transaction log append failed");
            return Err(AppendFailure::NotLeaderOrStorage);
        }
    }
    flush_for_ack(shared, p).await.map_err(|e| {
        tracing::error!(error = %e, "transaction log flush failed");
        AppendFailure::NotLeaderOrStorage
    })
}

/// Appends `pending`, reports it to the coordinator and returns the operation's answer;
/// what follows (markers, the completing record) runs in a task of its own.
pub(crate) async fn complete<T: TxnReply>(
    shared: Arc<Shared>,
    pending: Pending<T>,
) -> Result<T, TxnError> {
    let outcome = append_record(
        &shared,
        &pending.key,
        pending.value.as_ref(),
        pending.partition,
    )
    .await;
    let appended = shared.txn.lock().appended(pending, outcome, now_ms());
    shared.txn_settled.notify_waiters();
    if !appended.effects.is_empty() {
        tokio::spawn(drive(shared.clone(), appended.effects));
    }
    appended.answer
}

/// Carries out the coordinator's effects, and those that follow them, to the end.
pub(crate) async fn drive(shared: Arc<Shared>, effects: Vec<Effect>) {
    let mut queue: VecDeque<Effect> = effects.into();
    while let Some(effect) = queue.pop_front() {
        match effect {
            Effect::Append(p) => {
                let outcome = append_record(&shared, &p.key, p.value.as_ref(), p.partition).await;
                let id = p.record.transactional_id.clone();
                let a = shared.txn.lock().appended(p, outcome, now_ms());
                shared.txn_settled.notify_waiters();
                if let Err(e) = a.answer {
                    tracing::warn!(transactional_id = %id, error = %e, "transaction state not written; retried by the coordinator's timer");
                }
                queue.extend(a.effects);
            }
            Effect::WriteMarkers(m) => {
                write_markers(&shared, &m).await;
                let next = shared.txn.lock().markers_written(&m, now_ms());
                shared.txn_settled.notify_waiters();
                if let Some(p) = next {
                    queue.push_back(Effect::Append(p));
                }
            }
        }
    }
}

/// Writes one marker per partition of `m`, retrying each until it is written; a
/// partition that no longer exists counts as written. Then flushes them.
async fn write_markers(shared: &Shared, m: &WriteMarkers) {
    let commit = m.result == TxnResult::Commit;
    let mut written = Vec::new();
    for (topic, partition) in &m.partitions {
        let mut backoff = Duration::from_millis(50);
        loop {
            let r = if topic == OFFSETS_TOPIC {
                shared
                    .groups
                    .complete_txn(
                        *partition,
                        m.producer_id,
                        m.producer_epoch,
                        m.coordinator_epoch,
                        commit,
                    )
                    .map(Some)
            } else {
                match shared
                    .cluster
                    .topic(topic)
                    .and_then(|t| t.partition(*partition).cloned())
                {
                    None => Ok(None),
                    Some(p) => p
                        .write_marker(m.producer_id, m.producer_epoch, m.coordinator_epoch, commit)
                        .map(|_| Some(p)),
                }
            };
            match r {
                Ok(p) => {
                    written.extend(p);
                    break;
                }
                Err(AppendError::Fenced) => {
                    // A newer epoch already wrote here: this marker has nothing to end.
                    tracing::warn!(topic = %topic, partition, producer_id = m.producer_id, "marker older than the partition's producer epoch; skipped");
                    break;
                }
                Err(AppendError::Storage(StorageError::Closed(_))) => break,
                Err(e) => {
                    tracing::warn!(topic = %topic, partition, error = %e, "marker not written; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
    for p in written {
        if let Err(e) = flush_for_ack(shared, p).await {
            tracing::error!(error = %e, "flush after markers failed");
        }
    }
}

/// The coordinator's timer: aborts transactions past their timeout, expires idle ids,
/// retries failed completions.
pub(crate) async fn tick(shared: &Arc<Shared>) {
    let due = shared.txn.lock().tick(now_ms());
    if !due.is_empty() {
        drive(
            shared.clone(),
            due.into_iter().map(Effect::Append).collect(),
        )
        .await;
    }
}

/// At start-up, after the replay: finishes every transaction whose commit or abort was
/// decided before the broker stopped.
pub(crate) fn resume(shared: &Arc<Shared>) {
    let effects = shared.txn.lock().resume(now_ms());
    if !effects.is_empty() {
        tracing::info!(
            transactions = effects.len(),
            "finishing transactions decided before the restart"
        );
        tokio::spawn(drive(shared.clone(), effects));
    }
}

/// Answers now, or once the record is appended.
fn step_reply<T, F>(shared: &Arc<Shared>, step: Step<T>, respond: F) -> Reply
where
    T: TxnReply + Send + 'static,
    F: FnOnce(Result<T, TxnError>) -> ResponseKind + Send + 'static,
{
    match step {
        Step::Done(r) => Reply::Now(respond(r)),
        Step::Append(p) => {
            let shared = shared.clone();
            Reply::Later(Box::pin(async move { respond(complete(shared, p).await) }))
        }
    }
}

/// Longest a request answered CONCURRENT_TRANSACTIONS waits for the coordinator to settle
/// before that answer goes out.
const SETTLE_WAIT: Duration = Duration::from_millis(500);

/// Like [`step_reply`] for a step `attempt` makes; when it answers CONCURRENT_TRANSACTIONS
/// (the id's previous transaction is still being completed or aborted: markers, the
/// completing record), waits for the coordinator's next write and tries again, for at most
/// [`SETTLE_WAIT`]. The client gets the answer its own retry would get, without sleeping
/// its retry backoff (100 ms in librdkafka and the Java client) after every commit.
fn settled_reply<T, A, F>(shared: &Arc<Shared>, mut attempt: A, respond: F) -> Reply
where
    T: TxnReply + Send + 'static,
    A: FnMut(&Shared) -> Step<T> + Send + 'static,
    F: FnOnce(Result<T, TxnError>) -> ResponseKind + Send + 'static,
{
    let concurrent = |s: &Step<T>| matches!(s, Step::Done(Err(TxnError::ConcurrentTransactions)));
    let first = attempt(shared);
    if !concurrent(&first) {
        return step_reply(shared, first, respond);
    }
    let shared = shared.clone();
    Reply::Later(Box::pin(async move {
        let step = until_settled(&shared, first, attempt, concurrent).await;
        match step {
            Step::Done(r) => respond(r),
            Step::Append(p) => respond(complete(shared, p).await),
        }
    }))
}

/// Tries `attempt` again after each coordinator write (markers, a completing record) while
/// `concurrent` says its answer is CONCURRENT_TRANSACTIONS, for at most [`SETTLE_WAIT`];
/// `first` is the answer already in hand. Returns the last answer.
pub(crate) async fn until_settled<T>(
    shared: &Shared,
    first: T,
    mut attempt: impl FnMut(&Shared) -> T,
    concurrent: impl Fn(&T) -> bool,
) -> T {
    let deadline = tokio::time::Instant::now() + SETTLE_WAIT;
    let mut step = first;
    while concurrent(&step) && tokio::time::Instant::now() < deadline {
        let settled = shared.txn_settled.notified();
        tokio::pin!(settled);
        settled.as_mut().enable();
        // A write may have finished since the last attempt.
        step = attempt(shared);
        if !concurrent(&step) {
            break;
        }
        let _ = tokio::time::timeout_at(deadline, settled).await;
        step = attempt(shared);
    }
    step
}

fn allocator(shared: &Shared) -> impl FnMut() -> Result<i64, TxnError> + '_ {
    || {
        shared.cluster.next_producer_id().map_err(|e| {
            tracing::error!(error = %e, "producer id not allocated");
            TxnError::KafkaStorageError
        })
    }
}

/// InitProducerId with a transactional id.
pub(crate) fn init_producer_id(
    shared: &Arc<Shared>,
    transactional_id: &str,
    req: &kafka_protocol::messages::InitProducerIdRequest,
    version: i16,
) -> Reply {
    use kafka_protocol::messages::InitProducerIdResponse;
    let respond = move |r: Result<ProducerIdAndEpoch, TxnError>| {
        let base = InitProducerIdResponse::default();
        ResponseKind::InitProducerId(match r {
            Ok(ids) => base
                .with_producer_id(ProducerId(ids.producer_id))
                .with_producer_epoch(ids.producer_epoch),
            Err(e) => base
                .with_error_code(e.code_for(TxnApi::InitProducerId, version))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        })
    };
    if let Err(e) = shared.txn_log() {
        return Reply::Now(respond(Err(e)));
    }
    let transactional_id = transactional_id.to_string();
    let (timeout_ms, pid, epoch) = (
        req.transaction_timeout_ms,
        req.producer_id.0,
        req.producer_epoch,
    );
    // An open transaction of the id is being aborted first (fencing): wait for it.
    let attempt = move |shared: &Shared| {
        let mut alloc = allocator(shared);
        shared.txn.lock().init_producer_id(
            crate::txn::coordinator::InitProducerId {
                transactional_id: &transactional_id,
                transaction_timeout_ms: timeout_ms,
                producer_id: pid,
                producer_epoch: epoch,
            },
            now_ms(),
            &mut alloc,
        )
    };
    settled_reply(shared, attempt, respond)
}

/// AddPartitionsToTxn: v0–3 add the client's partitions; v4+ is the brokers' batched
/// form — verify-only is answered, anything else needs CLUSTER_ACTION, which no client has.
pub(crate) fn add_partitions(
    shared: &Arc<Shared>,
    req: AddPartitionsToTxnRequest,
    version: i16,
) -> Reply {
    if version >= 4 {
        if req.transactions.iter().any(|t| !t.verify_only) {
            return Reply::Now(ResponseKind::AddPartitionsToTxn(
                AddPartitionsToTxnResponse::default()
                    .with_error_code(ResponseError::ClusterAuthorizationFailed.code()),
            ));
        }
        let coordinator = shared.txn.lock();
        let results = req
            .transactions
            .iter()
            .map(|t| {
                let parts: Vec<TopicPart> = t
                    .topics
                    .iter()
                    .flat_map(|tp| tp.partitions.iter().map(|p| (tp.name.to_string(), *p)))
                    .collect();
                let verified = coordinator.verify_partitions(
                    &t.transactional_id,
                    t.producer_id.0,
                    t.producer_epoch,
                    &parts,
                );
                let codes: Vec<(TopicPart, i16)> = match verified {
                    Ok(v) => v
                        .into_iter()
                        .map(|(p, e)| (p, e.map_or(0, |e| e.code())))
                        .collect(),
                    Err(e) => {
                        let c = e.code_for(TxnApi::AddPartitionsToTxn, version);
                        parts.into_iter().map(|p| (p, c)).collect()
                    }
                };
                AddPartitionsToTxnResult::default()
                    .with_transactional_id(t.transactional_id.clone())
                    .with_topic_results(topic_results(codes))
            })
            .collect();
        return Reply::Now(ResponseKind::AddPartitionsToTxn(
            AddPartitionsToTxnResponse::default().with_results_by_transaction(results),
        ));
    }
    let mut parts = Vec::new();
    let mut unknown = Vec::new();
    for t in &req.v3_and_below_topics {
        let topic = shared.cluster.topic(&t.name);
        for p in &t.partitions {
            let tp = (t.name.to_string(), *p);
            if topic.as_ref().and_then(|t| t.partition(*p)).is_some() {
                parts.push(tp);
            } else {
                unknown.push(tp);
            }
        }
    }
    let v3 = |codes: Vec<(TopicPart, i16)>| {
        ResponseKind::AddPartitionsToTxn(
            AddPartitionsToTxnResponse::default()
                .with_results_by_topic_v3_and_below(topic_results(codes)),
        )
    };
    if !unknown.is_empty() {
        // Nothing is added: the unknown ones are named, the others not attempted.
        let codes = unknown
            .into_iter()
            .map(|p| (p, ResponseError::UnknownTopicOrPartition.code()))
            .chain(
                parts
                    .into_iter()
                    .map(|p| (p, ResponseError::OperationNotAttempted.code())),
            )
            .collect();
        return Reply::Now(v3(codes));
    }
    let id = req.v3_and_below_transactional_id.clone();
    let (pid, epoch) = (
        req.v3_and_below_producer_id.0,
        req.v3_and_below_producer_epoch,
    );
    let asked = parts.clone();
    let attempt = move |shared: &Shared| {
        shared.txn.lock().add_partitions(
            &id,
            pid,
            epoch,
            &asked,
            TransactionVersion::TV_0,
            now_ms(),
        )
    };
    settled_reply(shared, attempt, move |r: Result<(), TxnError>| {
        let code = r
            .err()
            .map_or(0, |e| e.code_for(TxnApi::AddPartitionsToTxn, version));
        v3(parts.into_iter().map(|p| (p, code)).collect())
    })
}

/// Per-partition codes grouped by topic, in first-seen order.
fn topic_results(codes: Vec<(TopicPart, i16)>) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut by_topic: Vec<(String, Vec<AddPartitionsToTxnPartitionResult>)> = Vec::new();
    for ((topic, partition), code) in codes {
        let r = AddPartitionsToTxnPartitionResult::default()
            .with_partition_index(partition)
            .with_partition_error_code(code);
        match by_topic.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, v)) => v.push(r),
            None => by_topic.push((topic, vec![r])),
        }
    }
    by_topic
        .into_iter()
        .map(|(t, rs)| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(wire_topic(&t))
                .with_results_by_partition(rs)
        })
        .collect()
}

/// AddOffsetsToTxn: the group's `__consumer_offsets` partition joins the transaction.
pub(crate) fn add_offsets(
    shared: &Arc<Shared>,
    req: AddOffsetsToTxnRequest,
    version: i16,
) -> Reply {
    let partition = shared.groups.partition_index_for(&req.group_id);
    let attempt = move |shared: &Shared| {
        shared.txn.lock().add_offsets(
            &req.transactional_id,
            req.producer_id.0,
            req.producer_epoch,
            partition,
            TransactionVersion::TV_0,
            now_ms(),
        )
    };
    settled_reply(shared, attempt, move |r: Result<(), TxnError>| {
        ResponseKind::AddOffsetsToTxn(
            AddOffsetsToTxnResponse::default().with_error_code(
                r.err()
                    .map_or(0, |e| e.code_for(TxnApi::AddOffsetsToTxn, version)),
            ),
        )
    })
}

/// EndTxn: transaction version 2 from v5 (the answer carries the ids to continue with).
pub(crate) fn end_txn(shared: &Arc<Shared>, req: EndTxnRequest, version: i16) -> Reply {
    let tv = if version >= 5 {
        TransactionVersion::TV_2
    } else {
        TransactionVersion::TV_0
    };
    let mut alloc = allocator(shared);
    let step = shared.txn.lock().end_txn(
        &req.transactional_id,
        req.producer_id.0,
        req.producer_epoch,
        TxnResult::from_committed(req.committed),
        tv,
        now_ms(),
        &mut alloc,
    );
    step_reply(
        shared,
        step,
        move |r: Result<ProducerIdAndEpoch, TxnError>| {
            let (code, ids) = match r {
                Ok(ids) => (0, ids),
                Err(e) => (
                    e.code_for(TxnApi::EndTxn, version),
                    ProducerIdAndEpoch::NONE,
                ),
            };
            let mut resp = EndTxnResponse::default().with_error_code(code);
            if version >= 5 {
                resp = resp
                    .with_producer_id(ProducerId(ids.producer_id))
                    .with_producer_epoch(ids.producer_epoch);
            }
            ResponseKind::EndTxn(resp)
        },
    )
}

/// TxnOffsetCommit: offsets committed in the producer's transaction, through the group
/// coordinator's commit path (KIP-447 generation and member checks), visible once the
/// commit marker lands. v5 (transaction version 2) adds the group's partition to the
/// transaction itself; before, AddOffsetsToTxn must have.
pub(crate) fn txn_offset_commit(
    shared: &Arc<Shared>,
    req: TxnOffsetCommitRequest,
    version: i16,
) -> Reply {
    let group = req.group_id.to_string();
    let offsets_partition = shared.groups.partition_index_for(&group);
    let tp: TopicPart = (OFFSETS_TOPIC.to_string(), offsets_partition);
    let verified = shared.txn.lock().verify_partitions(
        &req.transactional_id,
        req.producer_id.0,
        req.producer_epoch,
        std::slice::from_ref(&tp),
    );
    let fenced_code = move |e: TxnError| match e {
        TxnError::ProducerFenced if version < 2 => ResponseError::InvalidProducerEpoch.code(),
        e => e.code(),
    };
    let missing = match verified {
        Err(e) => return Reply::Now(offset_commit_all(&req, fenced_code(e))),
        Ok(v) => v.first().is_some_and(|(_, e)| e.is_some()),
    };
    if !missing {
        return Reply::Now(commit_txn_offsets(shared, &req, version));
    }
    if version < 5 {
        return Reply::Now(offset_commit_all(
            &req,
            ResponseError::InvalidTxnState.code(),
        ));
    }
    let step = shared.txn.lock().add_offsets(
        &req.transactional_id,
        req.producer_id.0,
        req.producer_epoch,
        offsets_partition,
        TransactionVersion::TV_2,
        now_ms(),
    );
    match step {
        Step::Done(Ok(())) => Reply::Now(commit_txn_offsets(shared, &req, version)),
        Step::Done(Err(e)) => Reply::Now(offset_commit_all(&req, fenced_code(e))),
        Step::Append(p) => {
            let shared = shared.clone();
            Reply::Later(Box::pin(async move {
                match complete(shared.clone(), p).await {
                    Ok(()) => commit_txn_offsets(&shared, &req, version),
                    Err(e) => offset_commit_all(&req, fenced_code(e)),
                }
            }))
        }
    }
}

fn commit_txn_offsets(shared: &Shared, req: &TxnOffsetCommitRequest, version: i16) -> ResponseKind {
    let mut codes: Vec<Vec<i16>> = Vec::with_capacity(req.topics.len());
    let mut known = Vec::new();
    for t in &req.topics {
        let exists = shared.cluster.topic(&t.name);
        let mut row = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            if exists
                .as_ref()
                .and_then(|x| x.partition(p.partition_index))
                .is_some()
            {
                row.push(0);
                known.push(OffsetToCommit {
                    topic: t.name.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                });
            } else {
                row.push(ResponseError::UnknownTopicOrPartition.code());
            }
        }
        codes.push(row);
    }
    let outcome = shared.groups.commit_offsets(
        &req.group_id,
        Committer {
            member_id: &req.member_id,
            instance_id: req.group_instance_id.as_deref(),
            generation_or_epoch: req.generation_id,
            api_version: version,
            transactional: Some((req.producer_id.0, req.producer_epoch)),
        },
        known,
    );
    let mut answers = outcome.errors.into_iter();
    for c in codes.iter_mut().flatten().filter(|c| **c == 0) {
        *c = answers.next().flatten().map_or(0, |e| e.code());
    }
    ResponseKind::TxnOffsetCommit(txn_offset_response(req, |ti, pi| codes[ti][pi]))
}

fn txn_offset_response(
    req: &TxnOffsetCommitRequest,
    code: impl Fn(usize, usize) -> i16,
) -> TxnOffsetCommitResponse {
    TxnOffsetCommitResponse::default().with_topics(
        req.topics
            .iter()
            .enumerate()
            .map(|(ti, t)| {
                TxnOffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .enumerate()
                            .map(|(pi, p)| {
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code(ti, pi))
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

fn offset_commit_all(req: &TxnOffsetCommitRequest, code: i16) -> ResponseKind {
    ResponseKind::TxnOffsetCommit(txn_offset_response(req, |_, _| code))
}

/// WriteTxnMarkers: only brokers (CLUSTER_ACTION) may write markers; a client is refused
/// on every partition with CLUSTER_AUTHORIZATION_FAILED, as Kafka answers it.
pub(crate) fn write_txn_markers(
    req: &WriteTxnMarkersRequest,
    code: i16,
) -> WriteTxnMarkersResponse {
    WriteTxnMarkersResponse::default().with_markers(
        req.markers
            .iter()
            .map(|m| {
                WritableTxnMarkerResult::default()
                    .with_producer_id(m.producer_id)
                    .with_topics(
                        m.topics
                            .iter()
                            .map(|t| {
                                WritableTxnMarkerTopicResult::default()
                                    .with_name(t.name.clone())
                                    .with_partitions(
                                        t.partition_indexes
                                            .iter()
                                            .map(|p| {
                                                WritableTxnMarkerPartitionResult::default()
                                                    .with_partition_index(*p)
                                                    .with_error_code(code)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// DescribeTransactions.
pub(crate) fn describe_transactions(
    shared: &Shared,
    req: &DescribeTransactionsRequest,
) -> ResponseKind {
    let coordinator = shared.txn.lock();
    let states = req
        .transactional_ids
        .iter()
        .map(|id| {
            let base = DescribedState::default()
                .with_transactional_id(id.clone())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_start_time_ms(-1);
            match coordinator.describe(id) {
                Err(e) => base.with_error_code(e.code()),
                Ok(d) => {
                    let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                    for (t, p) in d.partitions {
                        topics.entry(t).or_default().push(p);
                    }
                    base.with_transaction_state(sb(d.state.name()))
                        .with_transaction_timeout_ms(d.transaction_timeout_ms)
                        .with_transaction_start_time_ms(d.transaction_start_time_ms)
                        .with_producer_id(ProducerId(d.producer_id))
                        .with_producer_epoch(d.producer_epoch)
                        .with_topics(
                            topics
                                .into_iter()
                                .map(|(t, ps)| {
                                    TopicData::default()
                                        .with_topic(wire_topic(&t))
                                        .with_partitions(ps)
                                })
                                .collect(),
                        )
                }
            }
        })
        .collect();
    ResponseKind::DescribeTransactions(
        DescribeTransactionsResponse::default().with_transaction_states(states),
    )
}

/// ListTransactions (v1: duration filter; v2: transactional id pattern, matched whole).
pub(crate) fn list_transactions(
    shared: &Shared,
    req: &ListTransactionsRequest,
    version: i16,
) -> ResponseKind {
    let pattern = match req
        .transactional_id_pattern
        .as_ref()
        .filter(|p| version >= 2 && !p.is_empty())
    {
        None => None,
        Some(p) => match regex::Regex::new(&format!("^(?:{})$", &**p)) {
            Ok(re) => Some(re),
            Err(_) => {
                return ResponseKind::ListTransactions(
                    ListTransactionsResponse::default()
                        .with_error_code(ResponseError::InvalidRegularExpression.code()),
                )
            }
        },
    };
    let filter = ListFilter {
        states: req.state_filters.iter().map(|s| s.to_string()).collect(),
        producer_ids: req.producer_id_filters.iter().map(|p| p.0).collect(),
        duration_ms: if version >= 1 {
            req.duration_filter
        } else {
            -1
        },
        transactional_id_pattern: pattern,
    };
    let listing = shared.txn.lock().list(&filter, now_ms());
    ResponseKind::ListTransactions(
        ListTransactionsResponse::default()
            .with_unknown_state_filters(listing.unknown_state_filters.into_iter().map(sb).collect())
            .with_transaction_states(
                listing
                    .transactions
                    .into_iter()
                    .map(|t| {
                        ListedState::default()
                            .with_transactional_id(TransactionalId(sb(t.transactional_id)))
                            .with_producer_id(ProducerId(t.producer_id))
                            .with_transaction_state(sb(t.state.name()))
                    })
                    .collect(),
            ),
    )
}

/// DescribeProducers: the producers with state on each partition.
pub(crate) fn describe_producers(shared: &Shared, req: &DescribeProducersRequest) -> ResponseKind {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let topic = shared.cluster.topic(&t.name);
            ProducersTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partition_indexes
                        .iter()
                        .map(|i| {
                            let r = ProducersPartition::default().with_partition_index(*i);
                            match topic.as_ref().and_then(|x| x.partition(*i)) {
                                None => {
                                    r.with_error_code(ResponseError::UnknownTopicOrPartition.code())
                                }
                                Some(p) => r.with_active_producers(
                                    p.describe_producers()
                                        .into_iter()
                                        .map(|(pid, epoch, last, first)| {
                                            ProducerState::default()
                                                .with_producer_id(ProducerId(pid))
                                                .with_producer_epoch(i32::from(epoch))
                                                .with_last_sequence(last)
                                                .with_last_timestamp(-1)
                                                .with_coordinator_epoch(-1)
                                                .with_current_txn_start_offset(
                                                    first.map_or(-1, |o| o.0),
                                                )
                                        })
                                        .collect(),
                                ),
                            }
                        })
                        .collect(),
                )
        })
        .collect();
    ResponseKind::DescribeProducers(DescribeProducersResponse::default().with_topics(topics))
}

/// What the produce path checks for a transactional batch: the request carries a
/// transactional id, and (KIP-890 part 1) the partition is in the producer's open
/// transaction. `None`: append it; else the partition's error.
pub(crate) fn check_transactional_produce(
    shared: &Shared,
    transactional_id: Option<&str>,
    producer_id: i64,
    producer_epoch: i16,
    tp: &TopicPart,
    version: i16,
) -> Option<ResponseError> {
    let Some(id) = transactional_id.filter(|t| !t.is_empty()) else {
        return Some(ResponseError::TransactionalIdAuthorizationFailed);
    };
    let verified = shared.txn.lock().verify_partitions(
        id,
        producer_id,
        producer_epoch,
        std::slice::from_ref(tp),
    );
    match verified {
        Ok(v) if v.iter().all(|(_, e)| e.is_none()) => None,
        // Not in the transaction (KIP-890): a hanging transaction is never started.
        Ok(_) if version >= 12 => Some(ResponseError::TransactionAbortable),
        Ok(_) => Some(ResponseError::InvalidTxnState),
        Err(TxnError::ProducerFenced) => Some(ResponseError::InvalidProducerEpoch),
        Err(TxnError::InvalidProducerIdMapping) => Some(ResponseError::InvalidProducerIdMapping),
        // Retriable for the producer, as Kafka maps the coordinator's transient errors.
        Err(
            TxnError::ConcurrentTransactions
            | TxnError::NotCoordinator
            | TxnError::CoordinatorNotAvailable
            | TxnError::CoordinatorLoadInProgress,
        ) => Some(ResponseError::NotEnoughReplicas),
        Err(e) => Some(e.response_error()),
    }
}

impl super::RefusableRequest for AddPartitionsToTxnRequest {
    type Response = AddPartitionsToTxnResponse;

    fn error_response(&self, version: i16, refusal: &rafka_hooks::Rejection) -> Self::Response {
        let code = refusal.code.0;
        if version >= 4 {
            return AddPartitionsToTxnResponse::default()
                .with_error_code(code)
                .with_results_by_transaction(
                    self.transactions
                        .iter()
                        .map(|t| {
                            AddPartitionsToTxnResult::default()
                                .with_transactional_id(t.transactional_id.clone())
                                .with_topic_results(topic_results(
                                    t.topics
                                        .iter()
                                        .flat_map(|tp| {
                                            tp.partitions
                                                .iter()
                                                .map(|p| ((tp.name.to_string(), *p), code))
                                        })
                                        .collect(),
                                ))
                        })
                        .collect(),
                );
        }
        AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topic_results(
            self.v3_and_below_topics
                .iter()
                .flat_map(|tp| {
                    tp.partitions
                        .iter()
                        .map(|p| ((tp.name.to_string(), *p), code))
                })
                .collect(),
        ))
    }
}

impl super::ErrorCodes for AddPartitionsToTxnResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(super::ErrorItem<'a>)) {
        f(super::ErrorItem::top(self.error_code));
        let topics = self.results_by_topic_v3_and_below.iter().chain(
            self.results_by_transaction
                .iter()
                .flat_map(|t| &t.topic_results),
        );
        for t in topics {
            for p in &t.results_by_partition {
                f(super::ErrorItem::partition(
                    &t.name,
                    p.partition_index,
                    p.partition_error_code,
                ));
            }
        }
    }
}

impl super::RefusableRequest for AddOffsetsToTxnRequest {
    type Response = AddOffsetsToTxnResponse;

    fn error_response(&self, _version: i16, refusal: &rafka_hooks::Rejection) -> Self::Response {
        AddOffsetsToTxnResponse::default().with_error_code(refusal.code.0)
    }
}

impl super::ErrorCodes for AddOffsetsToTxnResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(super::ErrorItem<'a>)) {
        f(super::ErrorItem::top(self.error_code));
    }
}

impl super::RefusableRequest for EndTxnRequest {
    type Response = EndTxnResponse;

    fn error_response(&self, version: i16, refusal: &rafka_hooks::Rejection) -> Self::Response {
        let r = EndTxnResponse::default().with_error_code(refusal.code.0);
        if version >= 5 {
            r.with_producer_id(ProducerId(-1)).with_producer_epoch(-1)
        } else {
            r
        }
    }
}

impl super::ErrorCodes for EndTxnResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(super::ErrorItem<'a>)) {
        f(super::ErrorItem::top(self.error_code));
    }
}

impl super::RefusableRequest for TxnOffsetCommitRequest {
    type Response = TxnOffsetCommitResponse;

    fn error_response(&self, _version: i16, refusal: &rafka_hooks::Rejection) -> Self::Response {
        txn_offset_response(self, |_, _| refusal.code.0)
    }
}

impl super::ErrorCodes for TxnOffsetCommitResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(super::ErrorItem<'a>)) {
        for t in &self.topics {
            for p in &t.partitions {
                f(super::ErrorItem::partition(
                    &t.name,
                    p.partition_index,
                    p.error_code,
                ));
            }
        }
    }
}

impl super::RefusableRequest for WriteTxnMarkersRequest {
    type Response = WriteTxnMarkersResponse;

    fn error_response(&self, _version: i16, refusal: &rafka_hooks::Rejection) -> Self::Response {
        write_txn_markers(self, refusal.code.0)
    }
}

impl super::ErrorCodes for WriteTxnMarkersResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(super::ErrorItem<'a>)) {
        for m in &self.markers {
            for t in &m.topics {
                for p in &t.partitions {
                    f(super::ErrorItem::partition(
                        &t.name,
                        p.partition_index,
                        p.error_code,
                    ));
                }
            }
        }
    }
}

impl super::RefusableRequest for DescribeTransactionsRequest {
    type Response = DescribeTransactionsResponse;

    fn error_response(&self, _version: i16, refusal: &rafka_hooks::Rejection) -> Self::Response {
        DescribeTransactionsResponse::default().with_transaction_states(
            self.transactional_ids
                .iter()
                .map(|id| {
                    DescribedState::default()
                        .with_transactional_id(id.clone())
                        .with_error_code(refusal.code.0)
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1)
                        .with_transaction_start_time_ms(-1)
                })
                .collect(),
        )
    }
}

impl super::ErrorCodes for DescribeTransactionsResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(super::ErrorItem<'a>)) {
        for s in &self.transaction_states {
            f(super::ErrorItem::named(&s.transactional_id, s.error_code));
        }
    }
}

impl super::RefusableRequest for ListTransactionsRequest {
    type Response = ListTransactionsResponse;

    fn error_response(&self, _version: i16, refusal: &rafka_hooks::Rejection) -> Self::Response {
        ListTransactionsResponse::default().with_error_code(refusal.code.0)
    }
}

impl super::ErrorCodes for ListTransactionsResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(super::ErrorItem<'a>)) {
        f(super::ErrorItem::top(self.error_code));
    }
}

impl super::RefusableRequest for DescribeProducersRequest {
    type Response = DescribeProducersResponse;

    fn error_response(&self, _version: i16, refusal: &rafka_hooks::Rejection) -> Self::Response {
        DescribeProducersResponse::default().with_topics(
            self.topics
                .iter()
                .map(|t| {
                    ProducersTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partition_indexes
                                .iter()
                                .map(|i| {
                                    ProducersPartition::default()
                                        .with_partition_index(*i)
                                        .with_error_code(refusal.code.0)
                                        .with_error_message(Some(sb(refusal.message.clone())))
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
    }
}

impl super::ErrorCodes for DescribeProducersResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(super::ErrorItem<'a>)) {
        for t in &self.topics {
            for p in &t.partitions {
                f(super::ErrorItem::partition(
                    &t.name,
                    p.partition_index,
                    p.error_code,
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::coordinator::{InitProducerId, TransactionCoordinator};
    use crate::txn::TxnConfig;

    fn append_data(p: &PartitionState, pid: i64, epoch: i16) {
        let b = BatchBuilder::new(Offset(0))
            .producer(pid, epoch, 0)
            .transactional()
            .kv(b"k", b"v", Timestamp(1_000))
            .build();
        p.append(ValidatedBatch::new(b).unwrap()).unwrap();
    }

    /// A PrepareCommit durable in `__transaction_state` whose markers were never written
    /// (the broker stopped right after): a coordinator replayed from the log finishes it —
    /// the commit marker lands, the LSO moves past the transaction, the state completes.
    #[tokio::test]
    async fn a_prepare_commit_left_at_a_crash_is_finished_on_resume() {
        let shared = Arc::new(Shared::for_tests(Vec::new()));
        let name = rafka_core::TopicName::new("t").unwrap();
        let topic = shared
            .cluster
            .create_topic(&name, 1, Default::default(), false)
            .unwrap();
        let p = topic.partitions[0].clone();
        let now = now_ms();
        let mut alloc = || Ok(7);
        let init = shared.txn.lock().init_producer_id(
            InitProducerId {
                transactional_id: "crash",
                transaction_timeout_ms: 60_000,
                producer_id: -1,
                producer_epoch: -1,
            },
            now,
            &mut alloc,
        );
        let Step::Append(pending) = init else {
            panic!("init appends")
        };
        let ids = complete(shared.clone(), pending).await.unwrap();
        let add = shared.txn.lock().add_partitions(
            "crash",
            ids.producer_id,
            ids.producer_epoch,
            &[("t".to_string(), 0)],
            TransactionVersion::TV_0,
            now,
        );
        let Step::Append(pending) = add else {
            panic!("add appends")
        };
        complete(shared.clone(), pending).await.unwrap();
        append_data(&p, ids.producer_id, ids.producer_epoch);
        assert_eq!(p.last_stable_offset(), Offset(0));
        // EndTxn: PrepareCommit is appended; its markers are dropped (the crash).
        let end = shared.txn.lock().end_txn(
            "crash",
            ids.producer_id,
            ids.producer_epoch,
            TxnResult::Commit,
            TransactionVersion::TV_0,
            now,
            &mut alloc,
        );
        let Step::Append(pending) = end else {
            panic!("end appends")
        };
        append_record(
            &shared,
            &pending.key,
            pending.value.as_ref(),
            pending.partition,
        )
        .await
        .unwrap();
        drop(pending);
        assert_eq!(p.log_end_offset(), Offset(1), "no marker yet");
        // Restart: a coordinator replayed from `__transaction_state`, then resume.
        let mut fresh = TransactionCoordinator::new(TxnConfig::default(), 0);
        crate::shared::replay_transactions(&mut fresh, &shared.txn_log().unwrap()).unwrap();
        assert_eq!(
            fresh.describe("crash").unwrap().state,
            crate::txn::records::TxnState::PrepareCommit
        );
        *shared.txn.lock() = fresh;
        let effects = shared.txn.lock().resume(now_ms());
        drive(shared.clone(), effects).await;
        let read = p
            .read(
                Offset(0),
                1 << 20,
                crate::state::IsolationLevel::ReadUncommitted,
            )
            .unwrap();
        let batches = rafka_core::RecordBatch::split_all(read.records).unwrap();
        assert_eq!(batches.len(), 2);
        assert_eq!(
            batches[1].control_type(),
            Some(rafka_core::ControlType::Commit)
        );
        assert_eq!(p.last_stable_offset(), Offset(2));
        assert_eq!(
            shared.txn.lock().describe("crash").unwrap().state,
            crate::txn::records::TxnState::CompleteCommit
        );
    }

    /// An abort marker records the aborted transaction; a read_committed read returns it
    /// with the records it overlaps, and the LSO follows the open transactions.
    #[test]
    fn markers_move_the_lso_and_fill_the_aborted_list() {
        let shared = Shared::for_tests(Vec::new());
        let name = rafka_core::TopicName::new("t").unwrap();
        let topic = shared
            .cluster
            .create_topic(&name, 1, Default::default(), false)
            .unwrap();
        let p = &topic.partitions[0];
        append_data(p, 1, 0); // offset 0, producer 1 opens
        append_data(p, 2, 0); // offset 1, producer 2 opens
        assert_eq!(p.last_stable_offset(), Offset(0));
        assert_eq!(p.write_marker(1, 0, 0, false).unwrap(), Offset(2));
        assert_eq!(p.last_stable_offset(), Offset(1));
        assert_eq!(p.write_marker(2, 0, 0, true).unwrap(), Offset(3));
        assert_eq!(p.last_stable_offset(), Offset(4));
        let r = p
            .read(
                Offset(0),
                1 << 20,
                crate::state::IsolationLevel::ReadCommitted,
            )
            .unwrap();
        assert_eq!(r.aborted.len(), 1);
        assert_eq!(
            (
                r.aborted[0].producer_id,
                r.aborted[0].first_offset,
                r.aborted[0].last_offset
            ),
            (1, Offset(0), Offset(2))
        );
        // An older epoch's marker is refused once a newer one was written.
        p.write_marker(1, 3, 0, false).unwrap();
        assert!(matches!(
            p.write_marker(1, 2, 0, false),
            Err(AppendError::Fenced)
        ));
    }
}
