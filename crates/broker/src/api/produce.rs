//! Produce v0–11: validate every batch of a partition, then append them (with idempotent
//! producer checks), then answer — after an fsync for acks=all when the durability policy
//! says so. acks=0 gets no response at all.
//!
//! Produce v0–2 carry magic 0/1 message sets (pre-2017 clients); each partition's set is
//! converted to one magic-2 batch before validation, as Kafka's `LogValidator` does, so
//! everything after that point sees batches only. A modern client's batch never takes
//! that path. Before v7 zstd is refused with UNSUPPORTED_COMPRESSION_TYPE, as Kafka does:
//! a client that old could not read it back.

use std::sync::Arc;

use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};
use kafka_protocol::ResponseError;

use rafka_core::limits::DURABLE_ANSWER_PARTITIONS_MAX;
use rafka_core::{
    CompressionType, RecordBatch, StorageError, Timestamp, TopicName, TopicPartition,
    ValidatedBatch,
};
use rafka_hooks::{Plan, Rejection, RequestContext, Stages};
use rafka_protocol::legacy::message_set::{self, MessageSetError};

use super::{sb, storage_error_code, Reply};
use crate::config::FsyncPolicy;
use crate::diskless::catalog::DisklessTopic;
use crate::diskless::commit::CommitError;
use crate::diskless::Diskless;
use crate::normalize::{normalize_batch, AppendPolicy, NormalizeError};
use crate::shared::Shared;
use crate::state::{is_internal, AppendError, Appended, PartitionState};

/// The first Produce version that may carry zstd (KIP-110).
const ZSTD_PRODUCE_VERSION_MIN: i16 = 7;

fn partition_error(
    index: i32,
    e: ResponseError,
    message: Option<String>,
) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(e.code())
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(message.map(sb))
}

/// A produce partition answered with a hook's rejection (record errors included).
fn produce_rejected(index: i32, r: &Rejection) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(r.code.0)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(Some(sb(r.message.clone())))
        .with_record_errors(
            r.record_errors
                .iter()
                .map(|e| {
                    BatchIndexAndErrorMessage::default()
                        .with_batch_index(e.index.min(i32::MAX as usize) as i32)
                        .with_batch_index_error_message(Some(sb(e.message.clone())))
                })
                .collect(),
        )
}

/// Splits a partition's record set into batches (converting a v0–2 message set), refuses
/// zstd before v7 and checks every batch (CRC-32C included): what every produce does
/// before anything is written, in either mode.
fn validate_records(
    index: i32,
    version: i16,
    records: Option<bytes::Bytes>,
) -> Result<Vec<ValidatedBatch>, Box<PartitionProduceResponse>> {
    let Some(records) = records.filter(|r| !r.is_empty()) else {
        return Err(Box::new(partition_error(
            index,
            ResponseError::CorruptMessage,
            Some("empty record set".into()),
        )));
    };
    // Kafka accepts any magic below v3 (clients sent mismatched ones); magic 2 passes as is.
    let batches = if version < 3 && message_set::is_message_set(&records) {
        match message_set::to_batch(records) {
            Ok(b) => Ok(vec![b]),
            Err(e) => {
                let code = match e {
                    MessageSetError::UnsupportedCompression(_) => {
                        ResponseError::UnsupportedCompressionType
                    }
                    _ => ResponseError::CorruptMessage,
                };
                return Err(Box::new(partition_error(index, code, Some(e.to_string()))));
            }
        }
    } else {
        RecordBatch::split_all(records)
    };
    let batches = match batches {
        Ok(b) => b,
        Err(e) => {
            return Err(Box::new(partition_error(
                index,
                ResponseError::CorruptMessage,
                Some(e.to_string()),
            )));
        }
    };
    if version < ZSTD_PRODUCE_VERSION_MIN
        && batches
            .iter()
            .any(|b| b.compression() == CompressionType::Zstd)
    {
        return Err(Box::new(partition_error(
            index,
            ResponseError::UnsupportedCompressionType,
            Some(format!(
                "zstd needs Produce v{ZSTD_PRODUCE_VERSION_MIN} or later (this request is v{version})"
            )),
        )));
    }
    let mut validated = Vec::with_capacity(batches.len());
    for (i, b) in batches.into_iter().enumerate() {
        match ValidatedBatch::new(b) {
            Ok(v) => validated.push(v),
            Err(e) => {
                let mut r =
                    partition_error(index, ResponseError::CorruptMessage, Some(e.to_string()));
                r.record_errors = vec![BatchIndexAndErrorMessage::default()
                    .with_batch_index(i as i32)
                    .with_batch_index_error_message(Some(sb(e.to_string())))];
                return Err(Box::new(r));
            }
        }
    }
    Ok(validated)
}

/// Appends one partition's record set; all batches are validated, then passed through the
/// `on_produce` hooks in `plan`, before any is written.
fn append_partition(
    shared: &Shared,
    (plan, ctx): (Plan, &RequestContext),
    p: &PartitionState,
    (index, version, transactional_id): (i32, i16, Option<&str>),
    records: Option<bytes::Bytes>,
) -> PartitionProduceResponse {
    let validated = match validate_records(index, version, records) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    // A transactional batch: the request names its transactional id, and the partition is
    // in the producer's open transaction (KIP-890 part 1).
    if let Some(b) = validated.iter().find(|b| b.is_transactional()) {
        let tp = (p.tp.topic.to_string(), index);
        let refused = super::txn::check_transactional_produce(
            shared,
            transactional_id,
            b.producer_id(),
            b.producer_epoch(),
            &tp,
            version,
        );
        if let Some(e) = refused {
            return partition_error(index, e, None);
        }
    }
    let batches = match normalize_batches(p.append_policy(), &p.tp, validated) {
        Ok(b) => b,
        Err(r) => return partition_error_at(index, r),
    };
    let batches = if plan.is_empty() {
        batches
    } else {
        match crate::hooks::on_produce(&shared.hooks, plan, ctx, &p.tp, batches) {
            Ok(b) => b,
            Err(r) => return produce_rejected(index, &r),
        }
    };
    let mut first: Option<(i64, i64)> = None;
    for b in batches {
        let (bytes, records) = (b.as_bytes().len(), b.record_count());
        match p.append(b) {
            Ok(Appended::New(info)) => {
                p.traffic.produced(bytes, records);
                let ts = if p.log_append_time() {
                    info.log_append_time.0
                } else {
                    -1
                };
                first.get_or_insert((info.base_offset.0, ts));
            }
            Ok(Appended::Duplicate(offset)) => {
                first.get_or_insert((offset.0, -1));
            }
            Err(e) => {
                let (code, msg) = match &e {
                    AppendError::Storage(s) => (storage_error_code(s), e.to_string()),
                    AppendError::OutOfOrder { .. } => {
                        (ResponseError::OutOfOrderSequenceNumber, e.to_string())
                    }
                    AppendError::Fenced => (ResponseError::InvalidProducerEpoch, e.to_string()),
                };
                if matches!(e, AppendError::Storage(StorageError::Io(_))) {
                    tracing::error!(partition = %p.tp, error = %e, "append failed");
                }
                return partition_error(index, code, Some(msg));
            }
        }
    }
    let (base, ts) = first.unwrap_or((-1, -1));
    PartitionProduceResponse::default()
        .with_index(index)
        .with_base_offset(base)
        .with_log_append_time_ms(ts)
        .with_log_start_offset(p.log_start_offset().0)
}

/// A refused record set: the record errors (index in its batch, message), the code and
/// the partition's message.
type Refusal = (Vec<(i32, String)>, ResponseError, String);

/// Kafka's `LogValidator` step, after the batches are validated and before hooks see
/// them: the header max timestamp derived from the records where it cannot be trusted,
/// record timestamps checked against the topic's `message.timestamp.*` bounds, batches
/// recompressed to the topic's `compression.type`. Free for well-formed batches on topics
/// that ask for none of this (see `crate::normalize`). A refused batch refuses the
/// partition's whole record set: nothing of it is written.
fn normalize_batches(
    policy: AppendPolicy,
    tp: &TopicPartition,
    batches: Vec<ValidatedBatch>,
) -> Result<Vec<ValidatedBatch>, Refusal> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut out = Vec::with_capacity(batches.len());
    for v in batches {
        match normalize_batch(&policy, v.as_batch().clone(), now_ms) {
            // Unchanged (the common case): the same bytes, still validated.
            Ok(b) if same_bytes(&b, &v) => out.push(v),
            // Rewritten here (header, codec): its new CRC is checked like a client's.
            Ok(b) => match ValidatedBatch::new(b) {
                Ok(v) => out.push(v),
                Err(e) => {
                    return Err((
                        vec![(0, e.to_string())],
                        ResponseError::CorruptMessage,
                        e.to_string(),
                    ))
                }
            },
            Err(NormalizeError::InvalidTimestamp {
                record_index,
                message,
            }) => {
                let i = i32::try_from(record_index).unwrap_or(i32::MAX);
                return Err((
                    vec![(i, message.clone())],
                    ResponseError::InvalidTimestamp,
                    message,
                ));
            }
            Err(NormalizeError::Corrupt(m)) => {
                return Err((vec![(0, m.clone())], ResponseError::CorruptMessage, m));
            }
            Err(NormalizeError::KeylessRecords { record_indexes }) => {
                // Kafka's LogValidator wording, one record error per keyless record.
                let message = format!(
                    "Compacted topic cannot accept message without key in topic partition {}.",
                    tp
                );
                let errors = record_indexes
                    .iter()
                    .map(|&i| (i32::try_from(i).unwrap_or(i32::MAX), message.clone()))
                    .collect();
                return Err((errors, ResponseError::InvalidRecord, message));
            }
        }
    }
    Ok(out)
}

/// Whether `b` is `v`'s own bytes (normalisation left the batch as it was).
fn same_bytes(b: &RecordBatch, v: &ValidatedBatch) -> bool {
    let (x, y) = (b.as_bytes(), v.as_batch().as_bytes());
    x.as_ptr() == y.as_ptr() && x.len() == y.len()
}

/// A refused record set, with the index of the record at fault (Kafka's `record_errors`).
fn partition_error_at(
    index: i32,
    (record_errors, code, message): Refusal,
) -> PartitionProduceResponse {
    let mut r = partition_error(index, code, Some(message));
    r.record_errors = record_errors
        .into_iter()
        .map(|(i, m)| {
            BatchIndexAndErrorMessage::default()
                .with_batch_index(i)
                .with_batch_index_error_message(Some(sb(m)))
        })
        .collect();
    r
}

/// Produce. From v12 (transaction version 2) a transactional batch adds its partition to
/// the producer's transaction itself: the partitions not in it yet are added first (one
/// `__transaction_state` append), then the request is served as before. While the id's
/// previous transaction is still being completed (right after an EndTxn), the add waits
/// for the coordinator to settle, as AddPartitionsToTxn does, instead of the client
/// getting a retriable error and sleeping its backoff after every commit.
pub fn handle(
    shared: &Arc<Shared>,
    req: ProduceRequest,
    version: i16,
    ctx: &Arc<RequestContext>,
) -> Reply {
    if version >= 12 && req.acks != 0 {
        let add = implicit_add(shared, &req);
        if !matches!(add, ImplicitAdd::Nothing) {
            let shared = shared.clone();
            let ctx = ctx.clone();
            return Reply::Later(Box::pin(async move {
                let add = super::txn::until_settled(
                    &shared,
                    add,
                    |s| implicit_add(s, &req),
                    |a| matches!(a, ImplicitAdd::Concurrent),
                )
                .await;
                if let ImplicitAdd::Append(pending) = add {
                    if let Err(e) = super::txn::complete(shared.clone(), pending).await {
                        // The produce check below answers each partition with its error.
                        tracing::debug!(error = %e, "implicit AddPartitionsToTxn failed");
                    }
                }
                match serve(&shared, req, version, &ctx) {
                    Reply::Now(r) => r,
                    Reply::Later(f) | Reply::Durable(f) => f.await,
                    // acks != 0 always answers.
                    Reply::Nothing | Reply::Close(_) => {
                        ResponseKind::Produce(ProduceResponse::default())
                    }
                }
            }));
        }
    }
    serve(shared, req, version, ctx)
}

/// What the implicit add of a Produce v12+ request needs.
enum ImplicitAdd {
    /// Nothing to add (no transactional batch, or all in the transaction already, or a
    /// refusal the produce check answers).
    Nothing,
    /// The coordinator's append adding the partitions.
    Append(crate::txn::coordinator::Pending<()>),
    /// The id's previous transaction is still being completed: try again once it settles.
    Concurrent,
}

/// Produce v12+: the append that adds the request's transactional partitions not yet in
/// the producer's transaction, if there are any and the coordinator takes them.
fn implicit_add(shared: &Shared, req: &ProduceRequest) -> ImplicitAdd {
    let Some(id) = req.transactional_id.as_deref().filter(|t| !t.is_empty()) else {
        return ImplicitAdd::Nothing;
    };
    let mut ids = None;
    let mut parts = Vec::new();
    for t in &req.topic_data {
        for pd in &t.partition_data {
            let Some(first) = pd
                .records
                .as_ref()
                .and_then(|r| {
                    rafka_core::batch::batch_len_at(r)
                        .and_then(|n| r.get(..n))
                        .map(|b| r.slice_ref(b))
                })
                .and_then(|b| RecordBatch::parse(b).ok())
            else {
                continue;
            };
            let exists = shared
                .cluster
                .topic(&t.name)
                .is_some_and(|x| x.partition(pd.index).is_some());
            if first.is_transactional() && exists && !is_internal(&t.name) {
                ids.get_or_insert((first.producer_id(), first.producer_epoch()));
                parts.push((t.name.to_string(), pd.index));
            }
        }
    }
    let Some((pid, epoch)) = ids else {
        return ImplicitAdd::Nothing;
    };
    let step = shared.txn.lock().add_partitions(
        id,
        pid,
        epoch,
        &parts,
        crate::txn::TransactionVersion::TV_2,
        super::txn::now_ms(),
    );
    match step {
        crate::txn::coordinator::Step::Append(p) => ImplicitAdd::Append(p),
        crate::txn::coordinator::Step::Done(Err(crate::txn::TxnError::ConcurrentTransactions)) => {
            ImplicitAdd::Concurrent
        }
        crate::txn::coordinator::Step::Done(_) => ImplicitAdd::Nothing,
    }
}

fn serve(
    shared: &Arc<Shared>,
    req: ProduceRequest,
    version: i16,
    ctx: &Arc<RequestContext>,
) -> Reply {
    if let Some(d) = shared.diskless.clone() {
        return serve_diskless(shared, d, req, version, ctx);
    }
    let acks = req.acks;
    let transactional_id = req.transactional_id.as_ref().map(|t| t.to_string());
    let mut responses = Vec::with_capacity(req.topic_data.len());
    let mut to_flush: Vec<(usize, usize, Arc<PartitionState>)> = Vec::new();
    for (ti, topic) in req.topic_data.into_iter().enumerate() {
        let name = topic.name.to_string();
        let found = shared.cluster.topic(&name);
        // Internal topics are written by the broker only, as in Kafka.
        let invalid_name = rafka_core::TopicName::new(&name).is_err() || is_internal(&name);
        let plan = shared.hooks.plan(Stages::PRODUCE, &name);
        let mut parts = Vec::with_capacity(topic.partition_data.len());
        for pd in topic.partition_data {
            let resp = if !(-1..=1).contains(&acks) {
                partition_error(pd.index, ResponseError::InvalidRequiredAcks, None)
            } else if invalid_name {
                partition_error(pd.index, ResponseError::InvalidTopicException, None)
            } else if let Some(p) = found.as_ref().and_then(|t| t.partition(pd.index)) {
                let r = append_partition(
                    shared,
                    (plan, ctx),
                    p,
                    (pd.index, version, transactional_id.as_deref()),
                    pd.records,
                );
                if r.error_code == 0 && acks == -1 {
                    to_flush.push((ti, parts.len(), p.clone()));
                }
                r
            } else {
                partition_error(pd.index, ResponseError::UnknownTopicOrPartition, None)
            };
            parts.push(resp);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_partition_responses(parts),
        );
    }
    if acks == 0 {
        return Reply::Nothing;
    }
    let response = ProduceResponse::default().with_responses(responses);
    if to_flush.is_empty() || shared.config.durability.fsync != FsyncPolicy::OnAckAll {
        return Reply::Now(ResponseKind::Produce(response));
    }
    // A small answer (the usual one or few partitions) waits under the connection's bound
    // for fsync waits; a large one counts as any other wait, so 1024 of them cannot hold
    // 1024 responses of thousands of partitions.
    let entries: usize = response
        .responses
        .iter()
        .map(|t| t.partition_responses.len())
        .sum();
    let small = entries <= DURABLE_ANSWER_PARTITIONS_MAX;
    let wait = Box::pin(async move {
        let mut response = response;
        // One fsync per partition touched, shared by every answer waiting on the same
        // partition (its sync queue); the waits start together, so partitions sync side by side.
        let flushes: Vec<_> = to_flush
            .into_iter()
            .map(|(ti, pi, p)| (ti, pi, p.durable()))
            .collect();
        for (ti, pi, flushed) in flushes {
            if let Err(e) = flushed.await {
                let msg = e.to_string();
                tracing::error!(error = %msg, "fsync failed; answering KAFKA_STORAGE_ERROR");
                let r = &mut response.responses[ti].partition_responses[pi];
                *r = partition_error(r.index, ResponseError::KafkaStorageError, Some(msg));
            }
        }
        ResponseKind::Produce(response)
    });
    if small {
        Reply::Durable(wait)
    } else {
        Reply::Later(wait)
    }
}

/// A diskless topic's partition refused before the committer: the message says why.
const DISKLESS_TRANSACTIONS_REFUSED: &str =
    "transactions are not supported on diskless topics yet (cluster.mode: diskless)";

/// The answer of a submission the committer did not commit.
fn commit_error(index: i32, e: &CommitError) -> PartitionProduceResponse {
    let code = match e {
        CommitError::OutOfOrder { .. } => ResponseError::OutOfOrderSequenceNumber,
        CommitError::Fenced => ResponseError::InvalidProducerEpoch,
        CommitError::UnknownPartition => ResponseError::UnknownTopicOrPartition,
        CommitError::Upload(_) | CommitError::ShuttingDown => ResponseError::KafkaStorageError,
        // The outcome is unknown: the client retries (an idempotent producer's retry is
        // answered as a duplicate if the commit went through after all).
        CommitError::Coordinator(_) => ResponseError::RequestTimedOut,
    };
    partition_error(index, code, Some(e.to_string()))
}

/// Validates one partition's record set of a diskless topic as single-node mode does
/// (batches, the topic's policy, hooks) and returns the batches to commit and their
/// LogAppendTime (-1 for CreateTime topics). Transactional batches are refused.
fn prepare_diskless(
    shared: &Shared,
    (plan, ctx): (Plan, &RequestContext),
    topic: &DisklessTopic,
    (index, version): (i32, i16),
    records: Option<bytes::Bytes>,
) -> Result<(Vec<ValidatedBatch>, i64), Box<PartitionProduceResponse>> {
    let validated = validate_records(index, version, records)?;
    if validated.iter().any(|b| b.is_transactional()) {
        return Err(Box::new(partition_error(
            index,
            ResponseError::InvalidRequest,
            Some(DISKLESS_TRANSACTIONS_REFUSED.into()),
        )));
    }
    let name = TopicName::new(&topic.name).map_err(|_| {
        Box::new(partition_error(
            index,
            ResponseError::InvalidTopicException,
            None,
        ))
    })?;
    let tp = TopicPartition::new(name, index);
    let policy = AppendPolicy::of(&shared.cluster.log_config(&topic.configs));
    let batches = normalize_batches(policy, &tp, validated)
        .map_err(|r| Box::new(partition_error_at(index, r)))?;
    let mut batches = if plan.is_empty() {
        batches
    } else {
        crate::hooks::on_produce(&shared.hooks, plan, ctx, &tp, batches)
            .map_err(|r| Box::new(produce_rejected(index, &r)))?
    };
    let mut append_time = -1;
    if policy.log_append_time {
        append_time = super::txn::now_ms();
    }
    for b in &mut batches {
        b.set_partition_leader_epoch(0);
        if append_time >= 0 {
            b.set_log_append_time(Timestamp(append_time));
        }
    }
    Ok((batches, append_time))
}

/// Produce to a diskless cluster: each partition's batches are validated here, then
/// handed to this broker's committer; the answer waits for the commit (see
/// `crate::diskless::commit`). acks=0 is answered by nothing, its commit runs on.
fn serve_diskless(
    shared: &Arc<Shared>,
    d: Arc<Diskless>,
    req: ProduceRequest,
    version: i16,
    ctx: &Arc<RequestContext>,
) -> Reply {
    let acks = req.acks;
    // acks=0: nothing waits for the answer, so the commit runs detached, a bounded number
    // at a time.
    let detached = if acks == 0 {
        match d.committer.detached_permit() {
            Some(p) => Some(p),
            None => {
                tracing::warn!(
                    max = crate::diskless::commit::DETACHED_MAX,
                    "acks=0 produce dropped: too many acks=0 requests committing"
                );
                return Reply::Nothing;
            }
        }
    } else {
        None
    };
    // Taken here, in request order: the connection's earlier produce enqueues first.
    let mut turn = d.produce_order.turn(&ctx.session);
    let shared = shared.clone();
    let ctx = ctx.clone();
    let work = async move {
        let _detached = detached;
        turn.wait().await;
        let mut responses = Vec::with_capacity(req.topic_data.len());
        let mut waiting = Vec::new();
        for (ti, topic) in req.topic_data.into_iter().enumerate() {
            let name = topic.name.to_string();
            // Internal topics are written by the broker only, as in Kafka.
            let invalid_name = rafka_core::TopicName::new(&name).is_err() || is_internal(&name);
            let found = if invalid_name || !(-1..=1).contains(&acks) {
                Ok(None)
            } else {
                d.catalog.topic(&d.pg, &name).await
            };
            let plan = shared.hooks.plan(Stages::PRODUCE, &name);
            let mut parts = Vec::with_capacity(topic.partition_data.len());
            for pd in topic.partition_data {
                let index = pd.index;
                let resp = if !(-1..=1).contains(&acks) {
                    partition_error(index, ResponseError::InvalidRequiredAcks, None)
                } else if invalid_name {
                    partition_error(index, ResponseError::InvalidTopicException, None)
                } else {
                    match &found {
                        Err(e) => partition_error(
                            index,
                            ResponseError::RequestTimedOut,
                            Some(e.to_string()),
                        ),
                        Ok(Some(t)) if (0..t.partitions).contains(&index) => {
                            match prepare_diskless(
                                &shared,
                                (plan, &ctx),
                                t,
                                (index, version),
                                pd.records,
                            ) {
                                Err(r) => *r,
                                Ok((batches, append_time)) => {
                                    match d.committer.enqueue((t.id, index), batches).await {
                                        Ok(rx) => {
                                            waiting.push((ti, parts.len(), rx, append_time));
                                            PartitionProduceResponse::default().with_index(index)
                                        }
                                        Err(e) => commit_error(index, &e),
                                    }
                                }
                            }
                        }
                        Ok(_) => {
                            partition_error(index, ResponseError::UnknownTopicOrPartition, None)
                        }
                    }
                };
                parts.push(resp);
            }
            responses.push(
                TopicProduceResponse::default()
                    .with_name(topic.name)
                    .with_partition_responses(parts),
            );
        }
        // Everything of this request is queued: the connection's next request may go.
        turn.done();
        for (ti, pi, rx, append_time) in waiting {
            let r: &mut PartitionProduceResponse = &mut responses[ti].partition_responses[pi];
            *r = match rx.await {
                Ok(Ok(c)) => PartitionProduceResponse::default()
                    .with_index(r.index)
                    .with_base_offset(c.base_offset)
                    .with_log_append_time_ms(append_time)
                    .with_log_start_offset(c.log_start_offset),
                Ok(Err(e)) => commit_error(r.index, &e),
                Err(_) => commit_error(r.index, &CommitError::ShuttingDown),
            };
        }
        ResponseKind::Produce(ProduceResponse::default().with_responses(responses))
    };
    if acks == 0 {
        tokio::spawn(work);
        return Reply::Nothing;
    }
    Reply::Later(Box::pin(work))
}

impl super::RefusableRequest for ProduceRequest {
    type Response = ProduceResponse;

    fn error_response(&self, _version: i16, refusal: &rafka_hooks::Rejection) -> ProduceResponse {
        let responses = self
            .topic_data
            .iter()
            .map(|t| {
                TopicProduceResponse::default()
                    .with_name(t.name.clone())
                    .with_partition_responses(
                        t.partition_data
                            .iter()
                            .map(|pd| produce_rejected(pd.index, refusal))
                            .collect(),
                    )
            })
            .collect();
        ProduceResponse::default().with_responses(responses)
    }

    fn expects_response(&self) -> bool {
        self.acks != 0
    }
}

impl super::ErrorCodes for ProduceResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(super::ErrorItem<'a>)) {
        for t in &self.responses {
            for p in &t.partition_responses {
                f(super::ErrorItem::partition(&t.name, p.index, p.error_code));
            }
        }
    }
}
