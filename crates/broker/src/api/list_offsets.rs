//! ListOffsets v1–8 (earliest, latest, by timestamp, max timestamp) and
//! OffsetForLeaderEpoch v2–4 (a single node: one leader epoch throughout, the partition's).

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    ListOffsetsRequest, ListOffsetsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, ResponseKind,
};
use kafka_protocol::ResponseError;

use rafka_core::Timestamp;

use super::{storage_error_code, Reply};
use crate::diskless::fetch as dl_fetch;
use crate::diskless::{Diskless, DisklessError};
use crate::shared::Shared;
use crate::state::{is_internal, IsolationLevel, PartitionState};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

/// ListOffsets: from the diskless cluster (`diskless`), or from the local engine.
pub fn handle_any(shared: &Arc<Shared>, req: ListOffsetsRequest, version: i16) -> Reply {
    match shared.diskless.clone() {
        Some(d) if !req.topics.iter().any(|t| is_internal(&t.name)) => {
            Reply::Later(Box::pin(async move { diskless(&d, req, version).await }))
        }
        _ => Reply::Now(handle(shared, req, version)),
    }
}

/// ListOffsets of diskless topics: the marks from `crate::diskless::fetch`, timestamps
/// from the batch index rows' max timestamps, refined to the record in the batch.
async fn diskless(d: &Diskless, req: ListOffsetsRequest, version: i16) -> ResponseKind {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let topic = d.catalog.topic(&d.pg, &t.name).await;
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for lp in &t.partitions {
            let r = ListOffsetsPartitionResponse::default()
                .with_partition_index(lp.partition_index)
                .with_timestamp(-1)
                .with_offset(-1)
                .with_leader_epoch(-1);
            let topic = match &topic {
                Ok(Some(x)) if (0..x.partitions).contains(&lp.partition_index) => x,
                Ok(_) => {
                    partitions
                        .push(r.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                    continue;
                }
                Err(_) => {
                    partitions.push(r.with_error_code(ResponseError::KafkaStorageError.code()));
                    continue;
                }
            };
            let r = r.with_leader_epoch(if version >= 4 { 0 } else { -1 });
            let tp = (topic.id, lp.partition_index);
            let found = diskless_offset(d, tp, lp.timestamp).await;
            partitions.push(match found {
                Ok(Some(Some((o, ts)))) => r.with_offset(o).with_timestamp(ts),
                Ok(Some(None)) => r,
                Ok(None) => r.with_error_code(ResponseError::InvalidRequest.code()),
                Err(e) => {
                    tracing::warn!(error = %e, "diskless ListOffsets failed");
                    r.with_error_code(ResponseError::KafkaStorageError.code())
                }
            });
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    ResponseKind::ListOffsets(ListOffsetsResponse::default().with_topics(topics))
}

/// The (offset, timestamp) a ListOffsets entry asks for; `None` for a timestamp code
/// that means nothing, `Some(None)` when no record qualifies.
#[allow(clippy::type_complexity)]
async fn diskless_offset(
    d: &Diskless,
    tp: (uuid::Uuid, i32),
    timestamp: i64,
) -> Result<Option<Option<(i64, i64)>>, DisklessError> {
    let (log_start, hw) = dl_fetch::watermarks(d, tp)
        .await?
        .ok_or_else(|| DisklessError::Config("partition row missing".into()))?;
    let query = match timestamp {
        LATEST => return Ok(Some(Some((hw, -1)))),
        EARLIEST | EARLIEST_LOCAL => return Ok(Some(Some((log_start, -1)))),
        LATEST_TIERED => return Ok(Some(Some((log_start - 1, -1)))),
        MAX_TIMESTAMP => {
            "SELECT base_offset, byte_length FROM rafka_batches WHERE topic_id = $1              AND partition = $2 AND base_offset >= $3 AND $4::bigint IS NULL              ORDER BY max_timestamp DESC, base_offset LIMIT 1"
        }
        ts if ts >= 0 => {
            "SELECT base_offset, byte_length FROM rafka_batches WHERE topic_id = $1              AND partition = $2 AND last_offset >= $3 AND max_timestamp >= $4              ORDER BY base_offset LIMIT 1"
        }
        _ => return Ok(None),
    };
    let arg: Option<i64> = (timestamp >= 0).then_some(timestamp);
    let client = d.pg.get().await?;
    let Some(row) = client
        .query_opt(query, &[&tp.0, &tp.1, &log_start, &arg])
        .await?
    else {
        return Ok(Some(None));
    };
    let (base, len): (i64, i64) = (row.get(0), row.get(1));
    let read = match dl_fetch::read(d, tp, base.max(log_start), len.max(1) as usize).await {
        Ok(r) => r.records,
        Err(dl_fetch::ReadError::Diskless(e)) => return Err(e),
        Err(_) => return Ok(Some(None)),
    };
    let batches = rafka_core::RecordBatch::split_all(read).unwrap_or_default();
    let found = if timestamp == MAX_TIMESTAMP {
        let Some(max) = batches.iter().map(|b| b.max_timestamp().0).max() else {
            return Ok(Some(None));
        };
        let b = batches.into_iter().find(|b| b.max_timestamp().0 == max);
        b.map(|b| {
            let o = b.base_offset();
            record_in_batch(b, log_start, |r| r == max).unwrap_or((o, Timestamp(max)))
        })
    } else {
        let b = batches
            .into_iter()
            .find(|b| b.max_timestamp().0 >= timestamp);
        b.map(|b| {
            let (o, m) = (b.base_offset(), b.max_timestamp());
            record_in_batch(b, log_start, |r| r >= timestamp).unwrap_or((o, m))
        })
    };
    Ok(Some(found.map(|(o, ts)| (o.0, ts.0))))
}

/// ListOffsets.
pub fn handle(shared: &Arc<Shared>, req: ListOffsetsRequest, version: i16) -> ResponseKind {
    let isolation = IsolationLevel::from_wire(req.isolation_level);
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = shared.cluster.topic(&t.name);
            let partitions = t
                .partitions
                .iter()
                .map(|lp| {
                    let r = ListOffsetsPartitionResponse::default()
                        .with_partition_index(lp.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1);
                    let Some(p) = topic.as_ref().and_then(|t| t.partition(lp.partition_index))
                    else {
                        return r.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    // The leader epoch field exists from v4; a set field at an older
                    // version cannot encode.
                    let r = r.with_leader_epoch(if version >= 4 { p.leader_epoch() } else { -1 });
                    if p.is_offline() {
                        return r.with_error_code(ResponseError::KafkaStorageError.code());
                    }
                    let found = match lp.timestamp {
                        LATEST => Ok(Some((p.offsets().read_limit(isolation), Timestamp(-1)))),
                        EARLIEST | EARLIEST_LOCAL => {
                            Ok(Some((p.log_start_offset(), Timestamp(-1))))
                        }
                        LATEST_TIERED => Ok(Some((p.log_start_offset().plus(-1), Timestamp(-1)))),
                        MAX_TIMESTAMP => p.max_timestamp().map(|f| {
                            f.map(|(o, ts)| refine_in_batch(p, o, |r| r == ts.0).unwrap_or((o, ts)))
                        }),
                        ts if ts >= 0 => p.offset_for_timestamp(Timestamp(ts)).map(|f| {
                            f.map(|(o, found)| {
                                refine_in_batch(p, o, |r| r >= ts).unwrap_or((o, found))
                            })
                        }),
                        _ => return r.with_error_code(ResponseError::InvalidRequest.code()),
                    };
                    match found {
                        Ok(Some((o, ts))) => r.with_offset(o.0).with_timestamp(ts.0),
                        Ok(None) => r,
                        Err(e) => r.with_error_code(storage_error_code(&e).code()),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ResponseKind::ListOffsets(ListOffsetsResponse::default().with_topics(topics))
}

/// The storage engine finds the *batch* for a timestamp; Kafka answers with the *record*.
/// Decompresses the batch containing `offset` and returns the first record (at or after the
/// log start offset) whose timestamp satisfies `wanted`. LogAppendTime batches give every
/// record the batch's max timestamp, as Kafka does.
fn refine_in_batch(
    p: &PartitionState,
    offset: rafka_core::Offset,
    wanted: impl Fn(i64) -> bool,
) -> Option<(rafka_core::Offset, Timestamp)> {
    let read = p.read(offset, 1, IsolationLevel::ReadUncommitted).ok()?;
    let batch = rafka_core::RecordBatch::split_all(read.records)
        .ok()?
        .into_iter()
        .next()?;
    record_in_batch(batch, read.offsets.log_start_offset.0, wanted)
}

/// The first record of `batch` (at or after `log_start`) whose timestamp satisfies
/// `wanted`.
fn record_in_batch(
    batch: rafka_core::RecordBatch,
    log_start: i64,
    wanted: impl Fn(i64) -> bool,
) -> Option<(rafka_core::Offset, Timestamp)> {
    let log_append_time = batch.timestamp_type() == rafka_core::TimestampType::LogAppendTime;
    let max = batch.max_timestamp().0;
    let mut bytes = batch.into_bytes();
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).ok()?;
    set.records
        .iter()
        .filter(|r| r.offset >= log_start)
        .map(|r| (r.offset, if log_append_time { max } else { r.timestamp }))
        .find(|(_, ts)| wanted(*ts))
        .map(|(o, ts)| (rafka_core::Offset(o), Timestamp(ts)))
}

/// OffsetForLeaderEpoch from the diskless cluster or the local engine.
pub fn offset_for_leader_epoch_any(
    shared: &Arc<Shared>,
    req: OffsetForLeaderEpochRequest,
) -> Reply {
    match shared.diskless.clone() {
        Some(d) if !req.topics.iter().any(|t| is_internal(&t.topic)) => {
            Reply::Later(Box::pin(async move { diskless_epochs(&d, req).await }))
        }
        _ => Reply::Now(offset_for_leader_epoch(shared, req)),
    }
}

/// OffsetForLeaderEpoch of diskless topics: a partition has one leader epoch throughout
/// (`rafka_partitions.leader_epoch`, which nothing moves yet), ending at the high
/// watermark.
async fn diskless_epochs(d: &Diskless, req: OffsetForLeaderEpochRequest) -> ResponseKind {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let topic = d.catalog.topic(&d.pg, &t.topic).await;
        let ids: Vec<uuid::Uuid> = match &topic {
            Ok(Some(x)) => vec![x.id],
            _ => Vec::new(),
        };
        let epochs = d.catalog.leader_epochs(&d.pg, &ids).await;
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for lp in &t.partitions {
            let r = EpochEndOffset::default()
                .with_partition(lp.partition)
                .with_leader_epoch(-1)
                .with_end_offset(-1);
            let (x, epochs) = match (&topic, &epochs) {
                (Ok(Some(x)), Ok(e)) if (0..x.partitions).contains(&lp.partition) => (x, e),
                (Ok(_), Ok(_)) => {
                    partitions
                        .push(r.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                    continue;
                }
                _ => {
                    partitions.push(r.with_error_code(ResponseError::KafkaStorageError.code()));
                    continue;
                }
            };
            let tp = (x.id, lp.partition);
            let epoch = epochs.get(&tp).copied().unwrap_or(0);
            if lp.current_leader_epoch > epoch {
                partitions.push(r.with_error_code(ResponseError::UnknownLeaderEpoch.code()));
                continue;
            }
            if lp.leader_epoch < 0 {
                partitions.push(r);
                continue;
            }
            partitions.push(match dl_fetch::watermarks(d, tp).await {
                Ok(Some((_, hw))) => r.with_leader_epoch(epoch).with_end_offset(hw),
                Ok(None) => r.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                Err(_) => r.with_error_code(ResponseError::KafkaStorageError.code()),
            });
        }
        topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions),
        );
    }
    ResponseKind::OffsetForLeaderEpoch(OffsetForLeaderEpochResponse::default().with_topics(topics))
}

/// OffsetForLeaderEpoch: every batch carries the partition's one leader epoch, which ends
/// at the log end offset.
pub fn offset_for_leader_epoch(
    shared: &Arc<Shared>,
    req: OffsetForLeaderEpochRequest,
) -> ResponseKind {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = shared.cluster.topic(&t.topic);
            let partitions = t
                .partitions
                .iter()
                .map(|lp| {
                    let r = EpochEndOffset::default()
                        .with_partition(lp.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let Some(p) = topic.as_ref().and_then(|t| t.partition(lp.partition)) else {
                        return r.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    if p.is_offline() {
                        return r.with_error_code(ResponseError::KafkaStorageError.code());
                    }
                    if lp.current_leader_epoch > p.leader_epoch() {
                        return r.with_error_code(ResponseError::UnknownLeaderEpoch.code());
                    }
                    if lp.leader_epoch < 0 {
                        return r;
                    }
                    r.with_leader_epoch(p.leader_epoch())
                        .with_end_offset(p.log_end_offset().0)
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    ResponseKind::OffsetForLeaderEpoch(OffsetForLeaderEpochResponse::default().with_topics(topics))
}

impl super::RefusableRequest for ListOffsetsRequest {
    type Response = ListOffsetsResponse;

    fn error_response(&self, _version: i16, refusal: &rafka_hooks::Rejection) -> Self::Response {
        ListOffsetsResponse::default().with_topics(
            self.topics
                .iter()
                .map(|t| {
                    ListOffsetsTopicResponse::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    ListOffsetsPartitionResponse::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(refusal.code.0)
                                        .with_offset(-1)
                                        .with_timestamp(-1)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
    }
}

impl super::ErrorCodes for ListOffsetsResponse {
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

impl super::RefusableRequest for OffsetForLeaderEpochRequest {
    type Response = OffsetForLeaderEpochResponse;

    fn error_response(&self, _version: i16, refusal: &rafka_hooks::Rejection) -> Self::Response {
        OffsetForLeaderEpochResponse::default().with_topics(
            self.topics
                .iter()
                .map(|t| {
                    OffsetForLeaderTopicResult::default()
                        .with_topic(t.topic.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    EpochEndOffset::default()
                                        .with_partition(p.partition)
                                        .with_error_code(refusal.code.0)
                                        .with_leader_epoch(-1)
                                        .with_end_offset(-1)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
    }
}

impl super::ErrorCodes for OffsetForLeaderEpochResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(super::ErrorItem<'a>)) {
        for t in &self.topics {
            for p in &t.partitions {
                f(super::ErrorItem::partition(
                    &t.topic,
                    p.partition,
                    p.error_code,
                ));
            }
        }
    }
}
