//! What Kafka's `LogValidator` does to a produced batch before it is appended — derive the
//! max timestamp from the records, check record timestamps against the topic's
//! `message.timestamp.*` bounds, recompress to the topic's `compression.type` — at the
//! cost Rafka chooses.
//!
//! Kafka decodes every record of every batch on append. Rafka's produce path moves bytes,
//! so here records are read only when the header cannot be trusted or the topic asks for
//! something that needs them:
//! - a CreateTime batch whose header `max_timestamp` is provably wrong: -1 (Sarama 1.22
//!   leaves it there) or below the base timestamp (every producer writes the first record's,
//!   or the smallest, timestamp there, so the max is never below it);
//! - a topic with a timestamp bound (`message.timestamp.before.max.ms` /
//!   `after.max.ms` below `i64::MAX`): every record is checked, and the header is then
//!   rewritten whenever it disagrees with the records, a wrong positive value included;
//! - a topic whose `compression.type` names a codec other than the batch's: re-encoded.
//!
//! A well-formed batch on a topic with neither costs a few header reads. The one case this
//! leaves as sent is a CreateTime header with a positive max timestamp that is wrong yet not
//! below the base timestamp, on a topic without bounds: finding it would mean decompressing
//! every batch. Set a bound (`message.timestamp.before.max.ms=9223372036854775806` checks
//! nothing yet verifies every header) to have Rafka rewrite those too.
//!
//! LogAppendTime topics are stamped by the storage engine on append, as before; their
//! record timestamps are not checked, as in Kafka.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
};

use rafka_core::batch::for_each_record_timestamp;
use rafka_core::limits::RECORDS_DECOMPRESSED_BYTES_MAX;
use rafka_core::{CompressionType, LogConfig, RecordBatch, Timestamp, TimestampType};

/// What a topic asks of the batches appended to it (from its configs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendPolicy {
    /// `message.timestamp.type=LogAppendTime`.
    pub log_append_time: bool,
    /// `message.timestamp.before.max.ms`: how far in the past a CreateTime record may be.
    pub before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far in the future a CreateTime record may be.
    pub after_max_ms: i64,
    /// `compression.type`: `None` for `producer` (keep the batch's codec), else the codec
    /// every stored batch gets (`CompressionType::None` for `uncompressed`).
    pub compression: Option<CompressionType>,
    /// `cleanup.policy` includes `compact`: a record without a key is refused.
    pub require_keys: bool,
}

impl Default for AppendPolicy {
    fn default() -> Self {
        AppendPolicy {
            log_append_time: false,
            before_max_ms: i64::MAX,
            after_max_ms: i64::MAX,
            compression: None,
            require_keys: false,
        }
    }
}

impl AppendPolicy {
    /// The policy of a partition with these settings.
    pub fn of(cfg: &LogConfig) -> AppendPolicy {
        AppendPolicy {
            log_append_time: cfg.log_append_time,
            before_max_ms: cfg.message_timestamp_before_max_ms,
            after_max_ms: cfg.message_timestamp_after_max_ms,
            compression: cfg.compression,
            require_keys: cfg.compact,
        }
    }

    fn has_timestamp_bounds(&self) -> bool {
        !self.log_append_time && (self.before_max_ms != i64::MAX || self.after_max_ms != i64::MAX)
    }

    /// The codec to re-encode `b` with, if it must be.
    fn recompress_to(&self, b: &RecordBatch) -> Option<CompressionType> {
        self.compression.filter(|c| *c != b.compression())
    }
}

/// Why a batch was refused; nothing of the partition's record set is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    /// A record's timestamp is outside the topic's bounds (INVALID_TIMESTAMP).
    #[error("{message}")]
    InvalidTimestamp {
        /// Index of the offending record within its batch (Kafka's `batch_index`).
        record_index: usize,
        /// Kafka's wording.
        message: String,
    },
    /// The records could not be read (CORRUPT_MESSAGE).
    #[error("{0}")]
    Corrupt(String),
    /// Records without a key on a compacted topic (INVALID_RECORD, one record error each).
    #[error("Compacted topic cannot accept message without key")]
    KeylessRecords {
        /// Indexes of the keyless records within their batch.
        record_indexes: Vec<usize>,
    },
}

/// Applies `policy` to one validated batch: returns it as is when nothing applies (the
/// common case, no copy), with a corrected header, or re-encoded.
pub fn normalize_batch(
    policy: &AppendPolicy,
    batch: RecordBatch,
    now_ms: i64,
) -> Result<RecordBatch, NormalizeError> {
    // Control batches are the broker's own (transaction markers), never a producer's.
    if batch.is_control() {
        return Ok(batch);
    }
    if policy.require_keys {
        let records = uncompressed_records(&batch)?;
        let keyless = rafka_core::compact::keyless_records(&records, batch.record_count())
            .map_err(|e| NormalizeError::Corrupt(e.to_string()))?;
        if !keyless.is_empty() {
            return Err(NormalizeError::KeylessRecords {
                record_indexes: keyless,
            });
        }
    }
    if let Some(target) = policy.recompress_to(&batch) {
        return recompress(policy, batch, target, now_ms);
    }
    // A producer's batch is CreateTime (Kafka rewrites a LogAppendTime flag on a CreateTime
    // topic), and its max is never below its base timestamp.
    let header_wrong = batch.timestamp_type() == TimestampType::LogAppendTime
        || batch.max_timestamp().0 < batch.base_timestamp().0.max(0);
    if policy.log_append_time || !(header_wrong || policy.has_timestamp_bounds()) {
        return Ok(batch);
    }
    let records = uncompressed_records(&batch)?;
    let mut max = i64::MIN;
    let mut out_of_range = None;
    for_each_record_timestamp(
        &records,
        batch.base_timestamp().0,
        batch.record_count(),
        |i, ts| {
            max = max.max(ts);
            if out_of_range.is_none() && !in_bounds(policy, ts, now_ms) {
                out_of_range = Some((i, ts));
            }
        },
    )
    .map_err(|e| NormalizeError::Corrupt(e.to_string()))?;
    if let Some((i, ts)) = out_of_range {
        return Err(invalid_timestamp(policy, i, ts, now_ms));
    }
    let mut batch = batch;
    if max != i64::MIN {
        batch.set_max_timestamp(Timestamp(max));
    }
    Ok(batch)
}

/// Kafka's check (`LogValidator.validateTimestamp`): records without a timestamp (-1) pass.
fn in_bounds(policy: &AppendPolicy, ts: i64, now_ms: i64) -> bool {
    if policy.log_append_time || ts == -1 {
        return true;
    }
    let (low, high) = bounds(policy, now_ms);
    ts >= low && ts <= high
}

fn bounds(policy: &AppendPolicy, now_ms: i64) -> (i64, i64) {
    (
        now_ms.saturating_sub(policy.before_max_ms),
        now_ms.saturating_add(policy.after_max_ms),
    )
}

fn invalid_timestamp(policy: &AppendPolicy, i: usize, ts: i64, now_ms: i64) -> NormalizeError {
    let (low, high) = bounds(policy, now_ms);
    NormalizeError::InvalidTimestamp {
        record_index: i,
        message: format!(
            "Timestamp {ts} of message with offset {i} is out of range. The timestamp should be within [{low}, {high}]"
        ),
    }
}

fn wire_compression(c: CompressionType) -> Compression {
    match c {
        CompressionType::Gzip => Compression::Gzip,
        CompressionType::Snappy => Compression::Snappy,
        CompressionType::Lz4 => Compression::Lz4,
        CompressionType::Zstd => Compression::Zstd,
        CompressionType::None | CompressionType::Unknown(_) => Compression::None,
    }
}

/// The records section of `batch`, decompressed when it is compressed, at most
/// `limits::RECORDS_DECOMPRESSED_BYTES_MAX` (a zip bomb is refused as corrupt, after at most
/// about twice that much memory).
fn uncompressed_records(batch: &RecordBatch) -> Result<Bytes, NormalizeError> {
    let body = batch.records_bytes();
    let c = batch.compression();
    if c == CompressionType::None {
        return Ok(body);
    }
    crate::cleaner_codec::decompress_bounded(c, &body, RECORDS_DECOMPRESSED_BYTES_MAX)
        .map(Bytes::from)
        .map_err(|e| NormalizeError::Corrupt(format!("cannot decompress records: {}", e.0)))
}

/// Decodes every record and encodes them again with `target`, keeping offsets, producer id,
/// epoch, sequence, transactional flag and the partition leader epoch. The new header's max
/// timestamp comes from the records, so a wrong one is corrected on the way.
fn recompress(
    policy: &AppendPolicy,
    batch: RecordBatch,
    target: CompressionType,
    now_ms: i64,
) -> Result<RecordBatch, NormalizeError> {
    // The codec's own decoder below has no bound on what it produces: check it first.
    uncompressed_records(&batch)?;
    let mut buf = batch.as_bytes().clone();
    let set = RecordBatchDecoder::decode(&mut buf)
        .map_err(|e| NormalizeError::Corrupt(format!("records: {e}")))?;
    if set.records.len() != batch.record_count().max(0) as usize {
        return Err(NormalizeError::Corrupt(format!(
            "batch holds {} records, its header says {}",
            set.records.len(),
            batch.record_count()
        )));
    }
    if let Some((i, r)) = set
        .records
        .iter()
        .enumerate()
        .find(|(_, r)| !in_bounds(policy, r.timestamp, now_ms))
    {
        return Err(invalid_timestamp(policy, i, r.timestamp, now_ms));
    }
    let opts = RecordEncodeOptions {
        version: 2,
        compression: wire_compression(target),
    };
    let mut out = BytesMut::with_capacity(batch.size_bytes());
    RecordBatchEncoder::encode(&mut out, set.records.iter(), &opts)
        .map_err(|e| NormalizeError::Corrupt(format!("re-encoding records: {e}")))?;
    let mut nb =
        RecordBatch::parse(out.freeze()).map_err(|e| NormalizeError::Corrupt(e.to_string()))?;
    nb.set_partition_leader_epoch(batch.partition_leader_epoch());
    debug_assert_eq!(nb.record_count(), batch.record_count());
    debug_assert_eq!(nb.base_sequence(), batch.base_sequence());
    debug_assert_eq!(nb.producer_id(), batch.producer_id());
    Ok(nb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{Record, TimestampType as WireTs};
    use proptest::prelude::*;

    const NOW: i64 = 1_700_000_000_000;

    fn records(timestamps: &[i64]) -> Vec<Record> {
        timestamps
            .iter()
            .enumerate()
            .map(|(i, ts)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: 7,
                producer_epoch: 1,
                timestamp_type: WireTs::Creation,
                offset: i as i64,
                sequence: 3 + i as i32,
                timestamp: *ts,
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(vec![b'v'; 40])),
                headers: Default::default(),
            })
            .collect()
    }

    /// `n` records with values of `value_bytes` zeros.
    fn records_with_value(n: usize, value_bytes: usize) -> Vec<Record> {
        let mut rs = records(&vec![NOW; n]);
        for r in &mut rs {
            r.value = Some(Bytes::from(vec![0u8; value_bytes]));
        }
        rs
    }

    /// A batch as a client encodes it, then with `max_timestamp` forced into the header.
    fn batch(timestamps: &[i64], codec: Compression, header_max: Option<i64>) -> RecordBatch {
        let mut buf = BytesMut::new();
        let opts = RecordEncodeOptions {
            version: 2,
            compression: codec,
        };
        RecordBatchEncoder::encode(&mut buf, records(timestamps).iter(), &opts).unwrap();
        let mut b = RecordBatch::parse(buf.freeze()).unwrap();
        if let Some(m) = header_max {
            b.set_max_timestamp(Timestamp(m));
        }
        b.validate().unwrap();
        b
    }

    fn timestamps_of(b: &RecordBatch) -> Vec<i64> {
        let mut bytes = b.as_bytes().clone();
        let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
        set.records.iter().map(|r| r.timestamp).collect()
    }

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn a_header_of_minus_one_gets_the_records_max_in_every_codec() {
        let ts = [NOW - 5, NOW + 3, NOW - 9];
        for codec in CODECS {
            let b = batch(&ts, codec, Some(-1));
            let n = normalize_batch(&AppendPolicy::default(), b.clone(), NOW).unwrap();
            assert_eq!(n.max_timestamp(), Timestamp(NOW + 3), "{codec:?}");
            n.validate().unwrap();
            assert_eq!(timestamps_of(&n), ts, "{codec:?}: records untouched");
            assert_eq!(
                n.records_bytes(),
                b.records_bytes(),
                "{codec:?}: body as sent"
            );
        }
    }

    /// A compressed batch whose records decompress past the bound (two records of
    /// 33 MiB of zeros, a few KiB compressed) is refused as corrupt on every path that
    /// decompresses, and the same batch one record smaller is accepted.
    #[test]
    fn a_decompression_bomb_is_refused_on_every_path_that_decompresses() {
        let bomb = |records: usize| {
            let mut rs = records_with_value(records, 33 << 20);
            rs.iter_mut().for_each(|r| r.timestamp = NOW);
            let mut buf = BytesMut::new();
            let opts = RecordEncodeOptions {
                version: 2,
                compression: Compression::Zstd,
            };
            RecordBatchEncoder::encode(&mut buf, rs.iter(), &opts).unwrap();
            let b = RecordBatch::parse(buf.freeze()).unwrap();
            b.validate().unwrap();
            assert!(b.size_bytes() < 1 << 20, "compressed: {}", b.size_bytes());
            b
        };
        let keys = AppendPolicy {
            require_keys: true,
            ..AppendPolicy::default()
        };
        let recompress = AppendPolicy {
            compression: Some(CompressionType::Lz4),
            ..AppendPolicy::default()
        };
        let bounds = AppendPolicy {
            before_max_ms: 60_000,
            ..AppendPolicy::default()
        };
        for (name, policy) in [
            ("keys", &keys),
            ("recompress", &recompress),
            ("bounds", &bounds),
        ] {
            match normalize_batch(policy, bomb(2), NOW) {
                Err(NormalizeError::Corrupt(m)) => {
                    assert!(m.contains("more than"), "{name}: {m}")
                }
                other => panic!("{name}: {other:?}"),
            }
            normalize_batch(policy, bomb(1), NOW)
                .unwrap_or_else(|e| panic!("{name}: one record of 33 MiB is fine: {e}"));
        }
    }

    #[test]
    fn a_well_formed_batch_is_returned_without_a_copy() {
        let b = batch(&[NOW, NOW + 1], Compression::Zstd, None);
        let ptr = b.as_bytes().as_ptr();
        let n = normalize_batch(&AppendPolicy::default(), b, NOW).unwrap();
        assert_eq!(n.as_bytes().as_ptr(), ptr);
    }

    #[test]
    fn a_wrong_positive_header_is_rewritten_where_bounds_are_configured() {
        let policy = AppendPolicy {
            before_max_ms: i64::MAX - 1,
            ..AppendPolicy::default()
        };
        for codec in CODECS {
            let b = batch(&[NOW, NOW + 10], codec, Some(NOW + 1));
            let n = normalize_batch(&policy, b.clone(), NOW).unwrap();
            assert_eq!(n.max_timestamp(), Timestamp(NOW + 10), "{codec:?}");
            n.validate().unwrap();
            // Without bounds it is the documented blind spot: left as sent.
            let kept = normalize_batch(&AppendPolicy::default(), b, NOW).unwrap();
            assert_eq!(kept.max_timestamp(), Timestamp(NOW + 1));
        }
    }

    #[test]
    fn timestamps_outside_the_bounds_are_refused_with_the_record_index() {
        let policy = AppendPolicy {
            before_max_ms: 1_000,
            after_max_ms: 500,
            ..AppendPolicy::default()
        };
        for codec in CODECS {
            let past = batch(&[NOW, NOW - 1_001], codec, None);
            match normalize_batch(&policy, past, NOW) {
                Err(NormalizeError::InvalidTimestamp { record_index, .. }) => {
                    assert_eq!(record_index, 1)
                }
                other => panic!("{codec:?}: {other:?}"),
            }
            let future = batch(&[NOW + 501], codec, None);
            assert!(matches!(
                normalize_batch(&policy, future, NOW),
                Err(NormalizeError::InvalidTimestamp {
                    record_index: 0,
                    ..
                })
            ));
            let edge = batch(&[NOW - 1_000, NOW + 500, -1], codec, None);
            assert!(normalize_batch(&policy, edge, NOW).is_ok(), "{codec:?}");
            // LogAppendTime topics ignore the bounds, as in Kafka.
            let lat = AppendPolicy {
                log_append_time: true,
                ..policy
            };
            assert!(normalize_batch(&lat, batch(&[0], codec, None), NOW).is_ok());
        }
    }

    #[test]
    fn a_topic_codec_recompresses_and_keeps_the_records() {
        for from in CODECS {
            for to in [
                CompressionType::None,
                CompressionType::Gzip,
                CompressionType::Snappy,
                CompressionType::Lz4,
                CompressionType::Zstd,
            ] {
                let ts = [NOW, NOW + 7, NOW + 2];
                let b = batch(&ts, from, Some(-1));
                let policy = AppendPolicy {
                    compression: Some(to),
                    ..AppendPolicy::default()
                };
                let n = normalize_batch(&policy, b.clone(), NOW).unwrap();
                n.validate().unwrap();
                assert_eq!(n.compression(), to, "{from:?} -> {to:?}");
                assert_eq!(n.max_timestamp(), Timestamp(NOW + 7));
                assert_eq!(timestamps_of(&n), ts);
                assert_eq!(
                    (n.producer_id(), n.producer_epoch(), n.base_sequence()),
                    (7, 1, 3)
                );
                assert_eq!(n.record_count(), 3);
            }
        }
    }

    #[test]
    fn garbage_records_are_corrupt_not_a_panic() {
        let b = batch(&[NOW], Compression::None, Some(-1));
        let mut bytes = BytesMut::from(&b.as_bytes()[..]);
        bytes.extend_from_slice(&[0xff; 3]);
        let len = (bytes.len() - 12) as i32;
        bytes[8..12].copy_from_slice(&len.to_be_bytes());
        let forged = RecordBatch::parse(bytes.freeze()).unwrap();
        assert!(matches!(
            normalize_batch(&AppendPolicy::default(), forged, NOW),
            Err(NormalizeError::Corrupt(_))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The mirror of the refusals: every batch a client can encode, in any codec, with
        /// any header max timestamp, whose records are within the bounds, is accepted, keeps
        /// its records, and leaves with the records' true max timestamp in its header (or,
        /// without bounds and a plausible header, the header as sent).
        #[test]
        fn every_good_batch_is_accepted(
            offsets in proptest::collection::vec(-5_000i64..5_000, 1..20),
            codec in 0usize..5,
            header in prop_oneof![Just(None), Just(Some(-1i64)), (0i64..NOW * 2).prop_map(Some)],
            bounded in any::<bool>(),
            target in prop_oneof![Just(None), (0usize..5).prop_map(Some)],
        ) {
            let ts: Vec<i64> = offsets.iter().map(|o| NOW + o).collect();
            let b = batch(&ts, CODECS[codec], header);
            let kinds = [
                CompressionType::None,
                CompressionType::Gzip,
                CompressionType::Snappy,
                CompressionType::Lz4,
                CompressionType::Zstd,
            ];
            let policy = AppendPolicy {
                before_max_ms: if bounded { 5_000 } else { i64::MAX },
                after_max_ms: if bounded { 5_000 } else { i64::MAX },
                compression: target.map(|t| kinds[t]),
                ..AppendPolicy::default()
            };
            let n = normalize_batch(&policy, b.clone(), NOW).unwrap();
            n.validate().unwrap();
            prop_assert_eq!(timestamps_of(&n), ts.clone());
            let true_max = *ts.iter().max().unwrap();
            let trusted = !bounded && policy.recompress_to(&b).is_none()
                && b.max_timestamp().0 >= b.base_timestamp().0.max(0);
            let want = if trusted { b.max_timestamp().0 } else { true_max };
            prop_assert_eq!(n.max_timestamp().0, want);
        }
    }
}
