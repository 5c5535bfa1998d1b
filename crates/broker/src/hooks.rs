//! The hook stages that run inside the API handlers, over record batches: `on_produce`
//! (before any batch of a partition is appended) and `on_fetch` (on the response actually
//! sent), with the record decoding and re-encoding they need. The stages around a whole
//! request (`on_request`, `on_response`) run in `pipeline.rs`, above `api/`.
//!
//! Costs are paid only for what a configured hook asked for: with no hook at a stage the
//! stage is one bit test; records are decoded only for topics where a hook declared record
//! access, and re-encoded (with the batch's own compression, producer id, epoch, sequence
//! and offsets) only when a hook took them for changing.

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::FetchResponse;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record as WireRecord, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
};

use rafka_core::{Offset, RecordBatch, Timestamp, TimestampType, TopicPartition, ValidatedBatch};
use rafka_hooks::{
    ErrorCode, Header, HookChain, Plan, Record, RecordSet, Rejection, RequestContext, Stages,
    Verdict,
};

use crate::state::Cluster;

/// Batches of one partition with their decoded records (data batches only: control batches
/// are never shown to hooks and always kept as they are).
struct Decoded {
    batches: Vec<RecordBatch>,
    /// Per batch: its wire records, or none for a control batch.
    wire: Vec<Option<Vec<WireRecord>>>,
}

fn decode(batches: Vec<RecordBatch>) -> Result<(Decoded, Vec<Record>), String> {
    let mut wire = Vec::with_capacity(batches.len());
    let mut records = Vec::new();
    for b in &batches {
        if b.is_control() {
            wire.push(None);
            continue;
        }
        let mut buf = b.as_bytes().clone();
        let set = RecordBatchDecoder::decode(&mut buf).map_err(|e| e.to_string())?;
        if set.records.len() != b.record_count().max(0) as usize {
            return Err(format!(
                "batch holds {} records, its header says {}",
                set.records.len(),
                b.record_count()
            ));
        }
        records.extend(set.records.iter().map(to_hook_record));
        wire.push(Some(set.records));
    }
    Ok((Decoded { batches, wire }, records))
}

fn to_hook_record(r: &WireRecord) -> Record {
    Record {
        offset: Offset(r.offset),
        timestamp: Timestamp(r.timestamp),
        key: r.key.clone(),
        value: r.value.clone(),
        headers: r
            .headers
            .iter()
            .map(|(k, v)| Header {
                key: k.to_string(),
                value: v.clone(),
            })
            .collect(),
    }
}

fn compression(b: &RecordBatch) -> Compression {
    match b.attributes() & 0x7 {
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        _ => Compression::None,
    }
}

/// Re-encodes every data batch from the hooks' records: same compression, producer id,
/// epoch, base sequence, base offset and timestamp type; only keys, values, headers and
/// timestamps change.
fn encode(d: Decoded, records: Vec<Record>) -> Result<Vec<RecordBatch>, String> {
    let mut hook_records = records.into_iter();
    let mut out = Vec::with_capacity(d.batches.len());
    for (b, wire) in d.batches.into_iter().zip(d.wire) {
        let Some(mut wire) = wire else {
            out.push(b);
            continue;
        };
        for w in &mut wire {
            let r = hook_records
                .next()
                .ok_or("a hook removed records from the set")?;
            w.key = r.key;
            w.value = r.value;
            w.timestamp = r.timestamp.0;
            // FIXME(#6): kafka-protocol keeps headers in a map, so a record with two
            // headers of the same key keeps the last one once a hook rewrites it.
            w.headers = r
                .headers
                .into_iter()
                .map(|h| (StrBytes::from_string(h.key), h.value))
                .collect::<IndexMap<_, _>>();
        }
        let opts = RecordEncodeOptions {
            version: 2,
            compression: compression(&b),
        };
        let mut buf = BytesMut::with_capacity(b.size_bytes());
        RecordBatchEncoder::encode(&mut buf, wire.iter(), &opts).map_err(|e| e.to_string())?;
        let mut nb = RecordBatch::parse(buf.freeze()).map_err(|e| e.to_string())?;
        nb.set_partition_leader_epoch(b.partition_leader_epoch());
        if b.timestamp_type() == TimestampType::LogAppendTime {
            nb.set_log_append_time(b.max_timestamp());
        }
        debug_assert_eq!(nb.base_offset(), b.base_offset());
        debug_assert_eq!(nb.record_count(), b.record_count());
        debug_assert_eq!(nb.base_sequence(), b.base_sequence());
        out.push(nb);
    }
    Ok(out)
}

fn corrupt(msg: String) -> Rejection {
    Rejection {
        code: ErrorCode::CORRUPT_MESSAGE,
        message: msg,
        record_errors: Vec::new(),
    }
}

/// Runs a hook stage over one partition's batches; returns the batches to use (the same
/// bytes unless a hook changed records) or the rejection.
fn run_on_batches(
    plan: Plan,
    batches: Vec<RecordBatch>,
    stage: impl FnOnce(&mut RecordSet) -> Verdict,
) -> Result<Vec<RecordBatch>, Rejection> {
    let size: usize = batches.iter().map(RecordBatch::size_bytes).sum();
    if !plan.needs_records() {
        let count = batches
            .iter()
            .map(|b| b.record_count().max(0) as usize)
            .sum();
        let mut set = RecordSet::summary(count, size);
        return match stage(&mut set) {
            Verdict::Continue => Ok(batches),
            Verdict::Reject(r) => Err(r),
        };
    }
    let (decoded, records) = decode(batches).map_err(|e| corrupt(format!("records: {e}")))?;
    let mut set = RecordSet::decoded(records, size);
    if let Verdict::Reject(r) = stage(&mut set) {
        return Err(r);
    }
    if !set.is_modified() {
        return Ok(decoded.batches);
    }
    let records = set.into_records().unwrap_or_default();
    encode(decoded, records).map_err(|e| Rejection {
        code: ErrorCode::UNKNOWN_SERVER_ERROR,
        message: format!("re-encoding hooked records failed: {e}"),
        record_errors: Vec::new(),
    })
}

/// `on_produce` for one partition's validated batches, before any is appended. A batch
/// the hooks left alone keeps its check; one re-encoded from their records is new bytes,
/// checked here.
pub(crate) fn on_produce(
    chain: &HookChain,
    plan: Plan,
    ctx: &RequestContext,
    tp: &TopicPartition,
    batches: Vec<ValidatedBatch>,
) -> Result<Vec<ValidatedBatch>, Rejection> {
    let plain = batches.iter().map(|b| b.as_batch().clone()).collect();
    let out = run_on_batches(plan, plain, |set| chain.on_produce(plan, ctx, tp, set))?;
    let unchanged = |o: &RecordBatch, v: &ValidatedBatch| {
        o.as_bytes().as_ptr() == v.as_bytes().as_ptr() && o.size_bytes() == v.size_bytes()
    };
    let same_count = out.len() == batches.len();
    let mut validated = batches.into_iter();
    out.into_iter()
        .map(|o| match validated.next() {
            Some(v) if same_count && unchanged(&o, &v) => Ok(v),
            _ => ValidatedBatch::new(o).map_err(|e| corrupt(format!("hooked records: {e}"))),
        })
        .collect()
}

/// `on_fetch` over a finished fetch response: partitions of topics a hook asked for that
/// carry records. The stored data is never touched; `cluster` names topics given by id.
pub(crate) fn on_fetch(
    chain: &HookChain,
    cluster: &Cluster,
    ctx: &RequestContext,
    resp: &mut FetchResponse,
) {
    if !chain.wants(Stages::FETCH) {
        return;
    }
    for t in &mut resp.responses {
        let topic = if t.topic.is_empty() {
            cluster.topic_by_id(t.topic_id).map(|t| t.name.clone())
        } else {
            rafka_core::TopicName::new(&t.topic).ok()
        };
        let Some(topic) = topic else { continue };
        let plan = chain.plan(Stages::FETCH, topic.as_str());
        if plan.is_empty() {
            continue;
        }
        for p in &mut t.partitions {
            let Some(records) = p.records.clone().filter(|r| !r.is_empty()) else {
                continue;
            };
            if p.error_code != 0 {
                continue;
            }
            let Ok(batches) = RecordBatch::split_all(records) else {
                continue;
            };
            let tp = TopicPartition::new(topic.clone(), p.partition_index);
            match run_on_batches(plan, batches, |set| chain.on_fetch(plan, ctx, &tp, set)) {
                Ok(batches) => {
                    let mut out = BytesMut::new();
                    for b in &batches {
                        out.extend_from_slice(b.as_bytes());
                    }
                    p.records = Some(out.freeze());
                }
                Err(r) => {
                    p.error_code = r.code.0;
                    p.records = Some(Bytes::new());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rafka_core::batch::{BatchBuilder, SimpleRecord};
    use std::sync::Arc;

    fn batch(compression: Compression) -> RecordBatch {
        let mut b = BatchBuilder::new(Offset(7)).producer(5, 1, 10);
        for i in 0..3 {
            b = b.record(SimpleRecord {
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("v{i}"))),
                headers: vec![("h".into(), Some(Bytes::from_static(b"1")))],
                timestamp: Timestamp(1000 + i),
            });
        }
        let plain = b.build();
        if compression == Compression::None {
            return plain;
        }
        // Recompress through kafka-protocol to get a compressed batch to start from.
        let mut buf = plain.as_bytes().clone();
        let set = RecordBatchDecoder::decode(&mut buf).unwrap();
        let mut out = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut out,
            set.records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        RecordBatch::parse(out.freeze()).unwrap()
    }

    /// Decodes, upper-cases values, re-encodes; returns the new batch.
    fn check(compression: Compression) -> RecordBatch {
        let b = batch(compression);
        let plan = {
            struct Upper;
            impl rafka_hooks::Hook for Upper {
                fn name(&self) -> &str {
                    "upper"
                }
                fn interest(&self) -> rafka_hooks::Interest {
                    rafka_hooks::Interest {
                        stages: Stages::PRODUCE,
                        topics: rafka_hooks::TopicFilter::All,
                        record_access: true,
                    }
                }
            }
            HookChain::new(vec![Arc::new(Upper)])
                .unwrap()
                .plan(Stages::PRODUCE, "t")
        };
        let out = run_on_batches(plan, vec![b.clone()], |set| {
            for r in set.records_mut().unwrap() {
                r.value = r.value.as_ref().map(|v| v.to_ascii_uppercase().into());
            }
            Verdict::Continue
        })
        .unwrap();
        assert_eq!(out.len(), 1);
        let nb = out.into_iter().next().unwrap();
        nb.validate().unwrap();
        assert_eq!(nb.compression(), b.compression());
        assert_eq!(nb.base_offset(), Offset(7));
        assert_eq!(
            (nb.producer_id(), nb.producer_epoch(), nb.base_sequence()),
            (5, 1, 10)
        );
        assert_eq!(nb.record_count(), 3);
        let (_, recs) = decode(vec![nb.clone()]).unwrap();
        assert_eq!(recs[2].value.as_deref(), Some(&b"V2"[..]));
        assert_eq!(recs[2].timestamp, Timestamp(1002));
        assert_eq!(recs[2].headers[0].key, "h");
        nb
    }

    #[test]
    fn reencoding_keeps_codec_offsets_and_producer_fields() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            check(c);
        }
    }
}
