//! Produce v3–11: validate every batch of a partition, then append them (with idempotent
//! producer checks), then answer — after an fsync for acks=all when the durability policy
//! says so. acks=0 gets no response at all.

use std::sync::Arc;

use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};
use kafka_protocol::ResponseError;

use rafka_core::{RecordBatch, StorageError, ValidatedBatch};
use rafka_hooks::{Plan, RequestContext, Stages};

use super::{sb, storage_error_code, Reply};
use crate::broker::Shared;
use crate::config::FsyncPolicy;
use crate::state::{AppendError, Appended, PartitionState};

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

/// Appends one partition's record set; all batches are validated, then passed through the
/// `on_produce` hooks in `plan`, before any is written.
fn append_partition(
    shared: &Shared,
    (plan, ctx): (Plan, &RequestContext),
    p: &PartitionState,
    index: i32,
    records: Option<bytes::Bytes>,
) -> PartitionProduceResponse {
    let Some(records) = records.filter(|r| !r.is_empty()) else {
        return partition_error(
            index,
            ResponseError::CorruptMessage,
            Some("empty record set".into()),
        );
    };
    let batches = match RecordBatch::split_all(records) {
        Ok(b) => b,
        Err(e) => {
            return partition_error(index, ResponseError::CorruptMessage, Some(e.to_string()));
        }
    };
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
                return r;
            }
        }
    }
    let batches = validated;
    let batches = if plan.is_empty() {
        batches
    } else {
        match crate::hooks::on_produce(&shared.hooks, plan, ctx, &p.tp, batches) {
            Ok(b) => b,
            Err(r) => return crate::hooks::produce_rejected(index, &r),
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

/// Produce.
pub fn handle(
    shared: &Arc<Shared>,
    req: ProduceRequest,
    _version: i16,
    ctx: &RequestContext,
) -> Reply {
    let acks = req.acks;
    let mut responses = Vec::with_capacity(req.topic_data.len());
    let mut to_flush: Vec<(usize, usize, Arc<PartitionState>)> = Vec::new();
    for (ti, topic) in req.topic_data.into_iter().enumerate() {
        let name = topic.name.to_string();
        let found = shared.cluster.topic(&name);
        // Internal topics are written by the broker only, as in Kafka.
        let invalid_name =
            rafka_core::TopicName::new(&name).is_err() || super::groups::is_internal(&name);
        let plan = shared.hooks.plan(Stages::PRODUCE, &name);
        let mut parts = Vec::with_capacity(topic.partition_data.len());
        for pd in topic.partition_data {
            let resp = if !(-1..=1).contains(&acks) {
                partition_error(pd.index, ResponseError::InvalidRequiredAcks, None)
            } else if invalid_name {
                partition_error(pd.index, ResponseError::InvalidTopicException, None)
            } else if let Some(p) = found.as_ref().and_then(|t| t.partition(pd.index)) {
                let r = append_partition(shared, (plan, ctx), p, pd.index, pd.records);
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
    Reply::Later(Box::pin(async move {
        let mut response = response;
        // One fsync per partition touched; concurrent produce requests share them
        // through the log's group commit.
        let flushes: Vec<_> = to_flush
            .into_iter()
            .map(|(ti, pi, p)| (ti, pi, tokio::task::spawn_blocking(move || p.flush())))
            .collect();
        for (ti, pi, h) in flushes {
            let failed = match h.await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(format!("flush task failed: {e}")),
            };
            if let Some(msg) = failed {
                tracing::error!(error = %msg, "fsync failed; answering KAFKA_STORAGE_ERROR");
                let r = &mut response.responses[ti].partition_responses[pi];
                *r = partition_error(r.index, ResponseError::KafkaStorageError, Some(msg));
            }
        }
        ResponseKind::Produce(response)
    }))
}
