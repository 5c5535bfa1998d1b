//! Log compaction, the part every engine shares: the [`CompactionPlan`] the broker hands an
//! engine, the [`CompactionStats`] it gets back, the bounded dedupe map ([`OffsetMap`]: key
//! hash → latest offset over the dirty section) and the record-level rewrite of one batch
//! ([`clean_batch`]). Engines decide only where batches live and how the rewritten ones
//! replace the old ones.
//!
//! Kafka's semantics: offsets never change; a record survives if it is the latest for its key
//! in the map (or its key is not in the map); a keyless record does not survive (a compacted
//! topic refuses them on produce); a rewritten batch keeps its base offset, last offset delta
//! (so its last sequence), partition leader epoch, producer id, epoch, base sequence and
//! attributes; an idempotent producer's batch that loses every record is kept empty (its
//! header carries the producer state). A tombstone (null value) is kept for
//! `delete.retention.ms` after the first cleaning that saw it: that cleaning stamps the batch
//! with a delete horizon (attribute bit 6, base timestamp = horizon, record timestamp deltas
//! re-encoded against it, as Kafka's KIP-534 does), and a later cleaning past the horizon
//! drops it.
//!
//! Transactions ([`TxnIndex`], [`clean_batch_txn`]): records of aborted transactions go
//! once their abort marker is in the cleaned range, records of committed ones are cleaned
//! like others, and markers go after `delete.retention.ms` once nothing of their
//! transaction is left; an open transaction (or one whose marker is past the range) is left
//! whole and out of the map, so an aborted record can never hide an older committed one.
//!
//! Compressed batches: rafka-core has no codecs; the broker hands one in the plan
//! ([`CompactionCodec`], a [`BatchCodec`]). With it, a compressed batch is decompressed
//! (at most [`crate::limits::COMPACTION_DECOMPRESSED_BYTES_MAX`] bytes, so a zip bomb
//! cannot exhaust memory) into its uncompressed twin, mapped and cleaned like any other,
//! and a rewrite is compressed again with the batch's own codec (an emptied one is written
//! uncompressed, as Kafka's empty batches are). Without a codec, or when a batch does not
//! decompress (reported through [`BatchCodec::left_whole`]) or recompress, it is left whole
//! and its keys stay out of the map: compaction is then less thorough, never wrong.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::batch::{
    CompressionType, MalformedRecords, RecordBatch, TimestampType, ATTRIBUTES, BASE_TIMESTAMP,
    BATCH_LENGTH, CRC, HEADER_BYTES, LOG_OVERHEAD, MAX_TIMESTAMP, RECORD_COUNT,
};
use crate::types::{Offset, Timestamp};

/// Attribute bit 6: the batch's base timestamp is its delete horizon (KIP-534).
pub const DELETE_HORIZON_FLAG: i16 = 0x40;

/// Bytes one [`OffsetMap`] entry is counted as (a 16-byte key hash, an 8-byte offset, and
/// the hash table's own overhead), for the `log.cleaner.dedupe.buffer.size` bound.
pub const OFFSET_MAP_ENTRY_BYTES: usize = 32;

/// A codec failure: the batch it was asked about stays whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(pub String);

/// Decompression and compression of a batch's records section, for compaction. rafka-core
/// has no codecs: the broker implements this with its own. Called from the cleaner's
/// threads, so it must be `Send + Sync`.
pub trait BatchCodec: Send + Sync {
    /// `data` (a records section compressed with `codec`) decompressed; an error if it
    /// does not decompress or would be larger than `max_bytes` (checked while
    /// decompressing, so nothing much larger is ever allocated).
    fn decompress(
        &self,
        codec: CompressionType,
        data: &[u8],
        max_bytes: usize,
    ) -> Result<Vec<u8>, CodecError>;

    /// `data` (an uncompressed records section) compressed with `codec`.
    fn compress(&self, codec: CompressionType, data: &[u8]) -> Result<Vec<u8>, CodecError>;

    /// Told once per cleaning of a batch that is left whole because it did not decompress
    /// or recompress (the implementation logs it; rafka-core has no logger).
    fn left_whole(&self, _base_offset: Offset, _error: &CodecError) {}
}

/// The codec a compaction may use for compressed batches; none (the default) leaves them
/// whole. Plans compare equal when they hold the same codec object.
#[derive(Clone, Default)]
pub struct CompactionCodec(Option<Arc<dyn BatchCodec>>);

impl CompactionCodec {
    /// A compaction that cleans compressed batches with `codec`.
    pub fn new(codec: Arc<dyn BatchCodec>) -> CompactionCodec {
        CompactionCodec(Some(codec))
    }

    /// No codec: compressed batches stay whole.
    pub fn none() -> CompactionCodec {
        CompactionCodec(None)
    }

    fn get(&self) -> Option<&dyn BatchCodec> {
        self.0.as_deref()
    }
}

impl std::fmt::Debug for CompactionCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "CompactionCodec(Some)"
        } else {
            "CompactionCodec(None)"
        })
    }
}

impl PartialEq for CompactionCodec {
    fn eq(&self, other: &CompactionCodec) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b)),
            (None, None) => true,
            _ => false,
        }
    }
}

impl Eq for CompactionCodec {}

/// What one compaction of one partition may do, decided by the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionPlan {
    /// Where the dirty section starts: the `cleaned_to` of the previous compaction, or the
    /// log start offset when unknown (after a restart: everything counts as dirty).
    pub first_dirty: Offset,
    /// Nothing at or past this offset is cleaned or mapped (the broker passes its last
    /// stable offset). Engines also stop at their active part (the active segment).
    pub end: Offset,
    /// The broker's clock for the lag bound and tombstone horizons.
    pub now: Timestamp,
    /// `min.compaction.lag.ms`: a batch whose max timestamp is newer than `now` minus this
    /// is not cleaned, nor anything after it.
    pub min_compaction_lag_ms: i64,
    /// `delete.retention.ms`: how long a tombstone stays after its first cleaning.
    pub delete_retention_ms: i64,
    /// `log.cleaner.dedupe.buffer.size`: memory for the dedupe map; when it fills, cleaning
    /// covers only what the map reached.
    pub dedupe_buffer_bytes: usize,
    /// The codec for compressed batches (none: they stay whole).
    pub codec: CompactionCodec,
}

/// What one compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionStats {
    /// The next compaction's `first_dirty`: everything below it is clean. Equal to the
    /// plan's `first_dirty` (or the log start) when nothing could be cleaned.
    pub cleaned_to: Offset,
    /// Bytes of the log below `cleaned_to` after the compaction.
    pub clean_bytes: u64,
    /// Bytes read (map building and cleaning).
    pub bytes_read: u64,
    /// Bytes written (the rewritten part).
    pub bytes_written: u64,
    /// Records removed.
    pub records_removed: u64,
    /// Batches removed whole.
    pub batches_removed: u64,
}

/// A 128-bit hash of a record key: two SipHash-1-3 runs with different prefixes. Kafka's
/// cleaner uses MD5 the same way; a collision could drop a record of another key, with odds
/// of about n² / 2¹²⁹ for n distinct keys.
pub fn key_hash(key: &[u8]) -> u128 {
    let run = |salt: u8| {
        #[allow(deprecated)] // SipHasher is fixed-keyed and stable: what a persistent hash needs
        let mut h = std::hash::SipHasher::new_with_keys(0x5261_666b_6120_6d61, salt as u64);
        key.hash(&mut h);
        h.finish()
    };
    ((run(1) as u128) << 64) | run(2) as u128
}

/// The dedupe map: key hash → offset of the latest record with that key seen so far, bounded
/// by a number of entries derived from `log.cleaner.dedupe.buffer.size`.
#[derive(Debug, Default)]
pub struct OffsetMap {
    map: HashMap<u128, i64>,
    capacity: usize,
    /// The offset after the last batch mapped.
    mapped_to: Option<Offset>,
}

impl OffsetMap {
    /// A map that holds at most `memory_bytes / OFFSET_MAP_ENTRY_BYTES` keys (at least one).
    pub fn with_memory(memory_bytes: usize) -> OffsetMap {
        OffsetMap {
            map: HashMap::new(),
            capacity: (memory_bytes / OFFSET_MAP_ENTRY_BYTES).max(1),
            mapped_to: None,
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The offset after the last batch mapped, if any.
    pub fn mapped_to(&self) -> Option<Offset> {
        self.mapped_to
    }

    /// The latest offset mapped for `key`.
    pub fn get(&self, key: &[u8]) -> Option<Offset> {
        self.map.get(&key_hash(key)).map(|&o| Offset(o))
    }

    /// Maps the keys of `batch` to their offsets. `Ok(false)` (and nothing added) if the
    /// batch's records might not fit: the caller stops mapping there. Control,
    /// transactional and compressed batches add no key (see the module docs).
    pub fn add_batch(&mut self, batch: &RecordBatch) -> Result<bool, MalformedRecords> {
        self.add_batch_inner(batch, batch_is_cleanable(batch))
    }

    /// [`OffsetMap::add_batch`] that also maps the records of committed transactions
    /// (known from `txns`) and, with a codec, of compressed batches.
    pub fn add_batch_txn(
        &mut self,
        batch: &RecordBatch,
        txns: &TxnIndex,
        codec: &CompactionCodec,
    ) -> Result<bool, MalformedRecords> {
        if !txns.records_cleanable(batch) {
            return self.add_batch_inner(batch, false);
        }
        match decompress_for_compaction(batch, codec) {
            Ok(plain) => self.add_batch_inner(&plain, true),
            Err(_) => self.add_batch_inner(batch, false),
        }
    }

    fn add_batch_inner(
        &mut self,
        batch: &RecordBatch,
        cleanable: bool,
    ) -> Result<bool, MalformedRecords> {
        if !cleanable {
            self.mapped_to = Some(batch.next_offset());
            return Ok(true);
        }
        if self.map.len() + batch.record_count().max(0) as usize > self.capacity {
            return Ok(false);
        }
        let base = batch.base_offset();
        for_each_record(batch, |r| {
            if let Some(key) = r.key {
                let offset = base.0 + r.offset_delta as i64;
                let e = self.map.entry(key_hash(key)).or_insert(offset);
                *e = (*e).max(offset);
            }
        })?;
        self.mapped_to = Some(batch.next_offset());
        Ok(true)
    }
}

/// Whether the cleaner may touch a batch's records in this round.
fn batch_is_cleanable(batch: &RecordBatch) -> bool {
    !batch.is_control() && !batch.is_transactional() && batch.compression() == CompressionType::None
}

/// Attribute bits 0–2: the compression codec.
const COMPRESSION_BITS: i16 = 0x07;

/// The codec id of a batch's attributes.
fn compression_bits(c: CompressionType) -> i16 {
    match c {
        CompressionType::None => 0,
        CompressionType::Gzip => 1,
        CompressionType::Snappy => 2,
        CompressionType::Lz4 => 3,
        CompressionType::Zstd => 4,
        CompressionType::Unknown(n) => n as i16 & COMPRESSION_BITS,
    }
}

/// `header` (a batch's first [`HEADER_BYTES`]) followed by `records`, with its length,
/// `attributes` and CRC set.
fn frame(header: &[u8], records: &[u8], attributes: i16) -> Result<RecordBatch, MalformedRecords> {
    let mut out = BytesMut::with_capacity(HEADER_BYTES + records.len());
    out.extend_from_slice(&header[..HEADER_BYTES]);
    out.extend_from_slice(records);
    let len =
        i32::try_from(out.len() - LOG_OVERHEAD).map_err(|_| MalformedRecords("batch too large"))?;
    out[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&len.to_be_bytes());
    out[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&out[ATTRIBUTES..]);
    out[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    RecordBatch::parse(Bytes::from(out)).map_err(|_| MalformedRecords("batch does not frame"))
}

/// The batch whose records the cleaner reads: `batch` itself when uncompressed; for a
/// compressed one, its uncompressed twin (same header, compression bits cleared), at most
/// [`crate::limits::COMPACTION_DECOMPRESSED_BYTES_MAX`] bytes of records, which must parse.
/// `Err(None)`: compressed and no codec; `Err(Some(_))`: it does not decompress.
pub fn decompress_for_compaction<'a>(
    batch: &'a RecordBatch,
    codec: &CompactionCodec,
) -> Result<std::borrow::Cow<'a, RecordBatch>, Option<CodecError>> {
    let compression = batch.compression();
    if compression == CompressionType::None {
        return Ok(std::borrow::Cow::Borrowed(batch));
    }
    let codec = codec.get().ok_or(None)?;
    let max = crate::limits::COMPACTION_DECOMPRESSED_BYTES_MAX;
    let records = codec.decompress(compression, &batch.as_bytes()[HEADER_BYTES..], max)?;
    if records.len() > max {
        return Err(Some(CodecError(format!(
            "decompressed records exceed {max} bytes"
        ))));
    }
    let twin = frame(
        batch.as_bytes(),
        &records,
        batch.attributes() & !COMPRESSION_BITS,
    )
    .map_err(|e| Some(CodecError(e.to_string())))?;
    for_each_record(&twin, |_| {})
        .map_err(|e| Some(CodecError(format!("decompressed records: {e}"))))?;
    Ok(std::borrow::Cow::Owned(twin))
}

/// `plain` (an uncompressed batch, or a cleaned twin) with its records compressed with
/// `compression` (the compression bits of its attributes set, length and CRC updated).
pub fn recompress_for_compaction(
    plain: &RecordBatch,
    compression: CompressionType,
    codec: &CompactionCodec,
) -> Result<RecordBatch, CodecError> {
    let codec = codec.get().ok_or_else(|| CodecError("no codec".into()))?;
    let records = codec.compress(compression, &plain.as_bytes()[HEADER_BYTES..])?;
    frame(
        plain.as_bytes(),
        &records,
        (plain.attributes() & !COMPRESSION_BITS) | compression_bits(compression),
    )
    .map_err(|e| CodecError(e.to_string()))
}

/// [`clean_batch_inner`] of a batch that may be compressed: cleaned through its
/// uncompressed twin, a rewrite compressed again with its codec (an emptied one stays
/// uncompressed). Left whole without a codec, or when the codec fails.
fn clean_records(
    batch: &RecordBatch,
    map: &OffsetMap,
    keep_if_empty: bool,
    now: Timestamp,
    delete_retention_ms: i64,
    codec: &CompactionCodec,
) -> Result<(Cleaned, u64), MalformedRecords> {
    let report = |e: &CodecError| {
        if let Some(c) = codec.get() {
            c.left_whole(batch.base_offset(), e);
        }
    };
    let plain = match decompress_for_compaction(batch, codec) {
        Ok(plain) => plain,
        Err(e) => {
            if let Some(e) = e {
                report(&e);
            }
            return Ok((Cleaned::Keep, 0));
        }
    };
    let (decision, removed) =
        clean_batch_inner(&plain, map, keep_if_empty, now, delete_retention_ms, true)?;
    let compression = batch.compression();
    match decision {
        Cleaned::Rewrite(b) if compression != CompressionType::None && b.record_count() > 0 => {
            match recompress_for_compaction(&b, compression, codec) {
                Ok(b) => Ok((Cleaned::Rewrite(b), removed)),
                Err(e) => {
                    report(&e);
                    Ok((Cleaned::Keep, 0))
                }
            }
        }
        decision => Ok((decision, removed)),
    }
}

/// One record of an uncompressed batch, borrowed.
struct RecordView<'a> {
    /// The whole record body (after its length varint).
    body: &'a [u8],
    /// Where the timestamp delta starts in `body` and where it ends.
    ts_delta_span: (usize, usize),
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&'a [u8]>,
    value_is_null: bool,
}

fn get_varlong(buf: &mut &[u8]) -> Option<i64> {
    let mut z: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        z |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Some((z >> 1) as i64 ^ -((z & 1) as i64));
        }
    }
    None
}

fn put_varlong(b: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        b.put_u8((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    b.put_u8(z as u8);
}

fn get_slice<'a>(buf: &mut &'a [u8]) -> Result<Option<&'a [u8]>, MalformedRecords> {
    let len = get_varlong(buf).ok_or(MalformedRecords("bad length"))?;
    if len < 0 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| MalformedRecords("bad length"))?;
    if len > buf.len() {
        return Err(MalformedRecords("field runs past the record"));
    }
    let (v, rest) = buf.split_at(len);
    *buf = rest;
    Ok(Some(v))
}

/// Walks the records of an uncompressed batch.
fn for_each_record<'a>(
    batch: &'a RecordBatch,
    mut f: impl FnMut(RecordView<'a>),
) -> Result<(), MalformedRecords> {
    let mut rest: &'a [u8] = &batch.as_bytes()[HEADER_BYTES..];
    for _ in 0..batch.record_count().max(0) {
        let len = get_varlong(&mut rest).ok_or(MalformedRecords("bad record length"))?;
        let len = usize::try_from(len).map_err(|_| MalformedRecords("negative record length"))?;
        if len > rest.len() {
            return Err(MalformedRecords("record runs past the batch"));
        }
        let (body, after) = rest.split_at(len);
        rest = after;
        let mut cur = body.get(1..).ok_or(MalformedRecords("empty record"))?;
        let ts_start = 1;
        let timestamp_delta = get_varlong(&mut cur).ok_or(MalformedRecords("bad timestamp"))?;
        let ts_end = body.len() - cur.len();
        let offset_delta = get_varlong(&mut cur).ok_or(MalformedRecords("bad offset delta"))?;
        let offset_delta =
            i32::try_from(offset_delta).map_err(|_| MalformedRecords("bad offset delta"))?;
        let key = get_slice(&mut cur)?;
        let value = get_slice(&mut cur)?;
        f(RecordView {
            body,
            ts_delta_span: (ts_start, ts_end),
            timestamp_delta,
            offset_delta,
            key,
            value_is_null: value.is_none(),
        });
    }
    if !rest.is_empty() {
        return Err(MalformedRecords("bytes left after the last record"));
    }
    Ok(())
}

/// Indexes of the records without a key in `records`, the **uncompressed** records
/// section of a batch of `count` records (a compacted topic refuses them on produce).
pub fn keyless_records(mut records: &[u8], count: i32) -> Result<Vec<usize>, MalformedRecords> {
    let mut out = Vec::new();
    for i in 0..count.max(0) as usize {
        let len = get_varlong(&mut records).ok_or(MalformedRecords("bad record length"))?;
        let len = usize::try_from(len).map_err(|_| MalformedRecords("negative record length"))?;
        if len > records.len() {
            return Err(MalformedRecords("record runs past the batch"));
        }
        let (body, rest) = records.split_at(len);
        records = rest;
        let mut cur = body.get(1..).ok_or(MalformedRecords("empty record"))?;
        get_varlong(&mut cur).ok_or(MalformedRecords("bad timestamp"))?;
        get_varlong(&mut cur).ok_or(MalformedRecords("bad offset delta"))?;
        if get_slice(&mut cur)?.is_none() {
            out.push(i);
        }
    }
    Ok(out)
}

/// What [`clean_batch`] decided for one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleaned {
    /// Stored as it is.
    Keep,
    /// Removed whole.
    Remove,
    /// Replaced by this batch (same base offset and last offset).
    Rewrite(RecordBatch),
}

/// Cleans one batch of the cleaned range against `map`. `keep_if_empty`: the batch must
/// stay (as an empty batch) even if it loses every record — the caller sets it for the last
/// batch of an idempotent producer. Returns the decision and the records removed.
pub fn clean_batch(
    batch: &RecordBatch,
    map: &OffsetMap,
    keep_if_empty: bool,
    now: Timestamp,
    delete_retention_ms: i64,
) -> Result<(Cleaned, u64), MalformedRecords> {
    clean_batch_inner(
        batch,
        map,
        keep_if_empty,
        now,
        delete_retention_ms,
        batch_is_cleanable(batch),
    )
}

fn clean_batch_inner(
    batch: &RecordBatch,
    map: &OffsetMap,
    keep_if_empty: bool,
    now: Timestamp,
    delete_retention_ms: i64,
    cleanable: bool,
) -> Result<(Cleaned, u64), MalformedRecords> {
    if !cleanable {
        return Ok((Cleaned::Keep, 0));
    }
    let attributes = batch.attributes();
    let has_horizon = attributes & DELETE_HORIZON_FLAG != 0;
    let base_ts = batch.base_timestamp().0;
    let horizon_passed = has_horizon && now.0 >= base_ts;
    let base = batch.base_offset();
    let mut kept: Vec<RecordView<'_>> = Vec::new();
    let mut n_records = 0u64;
    let mut tombstone_kept = false;
    for_each_record(batch, |r| {
        n_records += 1;
        let Some(key) = r.key else { return };
        let offset = base.0 + r.offset_delta as i64;
        if map.get(key).is_some_and(|latest| latest.0 > offset) {
            return;
        }
        if r.value_is_null {
            if horizon_passed {
                return;
            }
            tombstone_kept = true;
        }
        kept.push(r);
    })?;
    let removed = n_records - kept.len() as u64;
    let needs_horizon = tombstone_kept && !has_horizon;
    if removed == 0 && !needs_horizon {
        return Ok((Cleaned::Keep, 0));
    }
    if kept.is_empty() && !keep_if_empty {
        return Ok((Cleaned::Remove, removed));
    }
    // The new base timestamp: the delete horizon once the batch holds a tombstone that was
    // cleaned, else the batch's own. Record timestamps are re-encoded against it.
    let (new_base_ts, new_attributes) = if needs_horizon {
        (
            now.0.saturating_add(delete_retention_ms.max(0)),
            attributes | DELETE_HORIZON_FLAG,
        )
    } else {
        (base_ts, attributes)
    };
    let rebuilt = rebuild(batch, &kept, new_base_ts, new_attributes)?;
    Ok((Cleaned::Rewrite(rebuilt), removed))
}

/// `batch` with only the records `kept` (views into it), base timestamp `new_base_ts`
/// (record timestamps re-encoded against it) and attributes `new_attributes`; base offset,
/// last offset delta and producer fields unchanged.
fn rebuild(
    batch: &RecordBatch,
    kept: &[RecordView<'_>],
    new_base_ts: i64,
    new_attributes: i16,
) -> Result<RecordBatch, MalformedRecords> {
    let base_ts = batch.base_timestamp().0;
    let mut body = BytesMut::new();
    let mut max_ts: Option<i64> = None;
    for r in kept {
        let ts = base_ts.saturating_add(r.timestamp_delta);
        max_ts = Some(max_ts.map_or(ts, |m| m.max(ts)));
        if new_base_ts == base_ts {
            put_varlong(&mut body, r.body.len() as i64);
            body.extend_from_slice(r.body);
        } else {
            let mut rec = BytesMut::with_capacity(r.body.len() + 10);
            rec.extend_from_slice(&r.body[..r.ts_delta_span.0]);
            put_varlong(&mut rec, ts.wrapping_sub(new_base_ts));
            rec.extend_from_slice(&r.body[r.ts_delta_span.1..]);
            put_varlong(&mut body, rec.len() as i64);
            body.extend_from_slice(&rec);
        }
    }
    // CreateTime: the max over the survivors, as Kafka's rebuilt batch computes it; an emptied
    // batch and LogAppendTime keep the header's.
    let max_timestamp = match (batch.timestamp_type(), max_ts) {
        (TimestampType::CreateTime, Some(ts)) => ts,
        _ => batch.max_timestamp().0,
    };
    let src = batch.as_bytes();
    let mut out = BytesMut::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(&src[..HEADER_BYTES]);
    out.extend_from_slice(&body);
    let len = (out.len() - LOG_OVERHEAD) as i32;
    out[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&len.to_be_bytes());
    out[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&new_attributes.to_be_bytes());
    out[BASE_TIMESTAMP..BASE_TIMESTAMP + 8].copy_from_slice(&new_base_ts.to_be_bytes());
    out[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    out[RECORD_COUNT..RECORD_COUNT + 4].copy_from_slice(&(kept.len() as i32).to_be_bytes());
    let crc = crc32c::crc32c(&out[ATTRIBUTES..]);
    out[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    RecordBatch::parse(Bytes::from(out))
        .map_err(|_| MalformedRecords("rebuilt batch does not frame"))
}

/// The transactions of a range to clean, learnt from its markers before cleaning (observe
/// every batch of the range, in offset order, with [`TxnIndex::observe`]), and what the
/// cleaning keeps of each (updated by [`clean_batch_txn`]).
///
/// Kafka's rules: the records of an **aborted** transaction are removed once its abort
/// marker is in the range (a whole batch goes, or stays empty if it is its producer's
/// last); the records of a **committed** one are cleaned like any other (their keys enter
/// the dedupe map); a marker is stamped with a delete horizon by the first cleaning that
/// finds no batch of its transaction left before it, and removed by a later one past the
/// horizon (unless it is its producer's last batch). A transaction whose marker is not in
/// the range (still open, or past the range's end) is left whole and out of the map.
#[derive(Debug, Default)]
pub struct TxnIndex {
    /// Per producer, the base offsets of the data batches of its transaction not yet ended
    /// by a marker in the range.
    open: HashMap<i64, Vec<i64>>,
    /// Per transactional data batch (base offset): its abort marker's base offset.
    aborted: HashMap<i64, i64>,
    /// Per transactional data batch (base offset): its commit marker's base offset.
    committed: HashMap<i64, i64>,
    /// Markers (base offsets) with a batch of their transaction kept by this cleaning.
    data_kept: std::collections::HashSet<i64>,
}

impl TxnIndex {
    /// Takes note of one batch of the range; call for every batch, in offset order.
    pub fn observe(&mut self, batch: &RecordBatch) {
        if batch.is_control() {
            self.observe_marker(
                batch.base_offset(),
                batch.producer_id(),
                batch.control_type(),
            );
        } else if batch.is_transactional() {
            self.observe_data(batch.base_offset(), batch.producer_id());
        }
    }

    /// [`TxnIndex::observe`] of a transactional data batch, from its header.
    pub fn observe_data(&mut self, base_offset: Offset, producer_id: i64) {
        if producer_id >= 0 {
            self.open
                .entry(producer_id)
                .or_default()
                .push(base_offset.0);
        }
    }

    /// [`TxnIndex::observe`] of a control batch.
    pub fn observe_marker(
        &mut self,
        base_offset: Offset,
        producer_id: i64,
        kind: Option<crate::ControlType>,
    ) {
        if producer_id < 0 {
            return;
        }
        let data = self.open.remove(&producer_id).unwrap_or_default();
        let decided = match kind {
            Some(crate::ControlType::Abort) => &mut self.aborted,
            Some(crate::ControlType::Commit) => &mut self.committed,
            None => return,
        };
        for base in data {
            decided.insert(base, base_offset.0);
        }
    }

    /// Whether the cleaner may touch the records of `batch` (once decompressed): a data
    /// batch outside transactions, or one of a committed transaction.
    fn records_cleanable(&self, batch: &RecordBatch) -> bool {
        !batch.is_control()
            && (!batch.is_transactional() || self.committed.contains_key(&batch.base_offset().0))
    }

    /// Transactional data batches known to be aborted.
    pub fn n_aborted_batches(&self) -> usize {
        self.aborted.len()
    }
}

/// [`clean_batch`] with Kafka's transaction rules (see [`TxnIndex`]): call for the batches
/// of the range in offset order, after every one was observed.
pub fn clean_batch_txn(
    batch: &RecordBatch,
    map: &OffsetMap,
    keep_if_empty: bool,
    now: Timestamp,
    delete_retention_ms: i64,
    txns: &mut TxnIndex,
    codec: &CompactionCodec,
) -> Result<(Cleaned, u64), MalformedRecords> {
    let n_records = batch.record_count().max(0) as u64;
    if batch.is_control() {
        let marker = batch.base_offset().0;
        if batch.producer_id() < 0
            || batch.control_type().is_none()
            || txns.data_kept.contains(&marker)
        {
            return Ok((Cleaned::Keep, 0));
        }
        let attributes = batch.attributes();
        if attributes & DELETE_HORIZON_FLAG == 0 {
            // No data of its transaction left: the horizon starts now.
            let mut kept = Vec::new();
            for_each_record(batch, |r| kept.push(r))?;
            let stamped = rebuild(
                batch,
                &kept,
                now.0.saturating_add(delete_retention_ms.max(0)),
                attributes | DELETE_HORIZON_FLAG,
            )?;
            return Ok((Cleaned::Rewrite(stamped), 0));
        }
        if now.0 >= batch.base_timestamp().0 && !keep_if_empty {
            return Ok((Cleaned::Remove, n_records));
        }
        return Ok((Cleaned::Keep, 0));
    }
    if let Some(&marker) = txns.aborted.get(&batch.base_offset().0) {
        if !keep_if_empty {
            return Ok((Cleaned::Remove, n_records));
        }
        txns.data_kept.insert(marker);
        if n_records == 0 {
            return Ok((Cleaned::Keep, 0));
        }
        // Emptied, it needs no codec: written uncompressed, as Kafka's empty batches are.
        let emptied = rebuild(
            batch,
            &[],
            batch.base_timestamp().0,
            batch.attributes() & !COMPRESSION_BITS,
        )?;
        return Ok((Cleaned::Rewrite(emptied), n_records));
    }
    if let Some(&marker) = txns.committed.get(&batch.base_offset().0) {
        let cleaned = clean_records(batch, map, keep_if_empty, now, delete_retention_ms, codec)?;
        if cleaned.0 != Cleaned::Remove {
            txns.data_kept.insert(marker);
        }
        return Ok(cleaned);
    }
    if batch.is_transactional() {
        // Its transaction is open or ends past the range: left whole.
        return Ok((Cleaned::Keep, 0));
    }
    clean_records(batch, map, keep_if_empty, now, delete_retention_ms, codec)
}

/// What [`clean_range`] decided for a run of stored batches.
#[derive(Debug, Clone, Default)]
pub struct RangeCleaning {
    /// The changed batches in offset order, by base offset: `Some` replaces the batch (same
    /// base and last offset), `None` removes it.
    pub changes: Vec<(Offset, Option<RecordBatch>)>,
    /// Everything below it is clean once the changes are applied (the plan's first dirty
    /// offset when nothing could be cleaned).
    pub cleaned_to: Offset,
    /// Bytes read (mapping and cleaning).
    pub bytes_read: u64,
    /// Bytes of the rewritten batches.
    pub bytes_written: u64,
    /// Records removed.
    pub records_removed: u64,
    /// Batches removed whole.
    pub batches_removed: u64,
}

/// Compaction of engines that keep batches one by one (the `memory` and `rocksdb` engines;
/// the `log` engine works a segment at a time). `batches`: the partition's stored batches
/// in offset order from the one holding `log_start`, up to (at least) the engine's active
/// part, which starts at `active_from` and is never cleaned. The cleanable range is the
/// batches below `active_from` and the plan's end whose max timestamp is older than the
/// compaction lag; the dedupe map covers its dirty part (from the plan's first dirty
/// offset) as far as it fits; every batch up to where the map reached is cleaned.
///
/// Applying the changes in offset order, any prefix of them is a consistent log: a record
/// goes only if a newer one of its key is in the map (and the newest is never removed but
/// as a tombstone past its horizon, whose older records were removed by the cleaning that
/// stamped it, earlier in offset order).
pub fn clean_range(
    batches: &[RecordBatch],
    log_start: Offset,
    active_from: Offset,
    plan: &CompactionPlan,
) -> Result<RangeCleaning, (Offset, MalformedRecords)> {
    clean_range_streamed(|| batches.iter().cloned(), log_start, active_from, plan)
}

/// [`clean_range`] over batches read three times in order, each time from `pass()` (the
/// partition's batches from the one holding `log_start`, the same each time: a consistent
/// view), so that only the dedupe map and the changes are held in memory, never the range.
/// A pass may end early (a read error the caller records); the result is then partial and
/// the caller discards it.
pub fn clean_range_streamed<F, I>(
    mut pass: F,
    log_start: Offset,
    active_from: Offset,
    plan: &CompactionPlan,
) -> Result<RangeCleaning, (Offset, MalformedRecords)>
where
    F: FnMut() -> I,
    I: Iterator<Item = RecordBatch>,
{
    let first_dirty = plan.first_dirty.max(log_start);
    let mut out = RangeCleaning {
        cleaned_to: first_dirty,
        ..RangeCleaning::default()
    };
    let lag_horizon = plan.now.0.saturating_sub(plan.min_compaction_lag_ms.max(0));
    let end = plan.end.min(active_from);
    // Pass 1: the cleanable range and the transactions in it.
    let mut txns = TxnIndex::default();
    let mut n_cleanable = 0;
    for b in pass().take_while(|b| b.next_offset() <= end && b.max_timestamp().0 <= lag_horizon) {
        txns.observe(&b);
        n_cleanable += 1;
    }
    // Pass 2: the dedupe map over the dirty part, as far as it fits.
    let mut map = OffsetMap::with_memory(plan.dedupe_buffer_bytes);
    let mut last_of_producer: HashMap<i64, Offset> = HashMap::new();
    let mut n_mapped = 0;
    let mut any_dirty = false;
    for (i, batch) in pass().take(n_cleanable).enumerate() {
        if batch.next_offset() <= first_dirty {
            n_mapped = i + 1;
            continue;
        }
        out.bytes_read += batch.size_bytes() as u64;
        if !map
            .add_batch_txn(&batch, &txns, &plan.codec)
            .map_err(|e| (batch.base_offset(), e))?
        {
            break;
        }
        if batch.producer_id() >= 0 {
            last_of_producer.insert(batch.producer_id(), batch.base_offset());
        }
        n_mapped = i + 1;
        any_dirty = true;
    }
    if !any_dirty {
        return Ok(out);
    }
    // Pass 3: every batch up to where the map reached, cleaned.
    let mut cleaned_to = None;
    for batch in pass().take(n_mapped) {
        out.bytes_read += batch.size_bytes() as u64;
        cleaned_to = Some(batch.next_offset());
        let keep_if_empty = batch.producer_id() >= 0
            && last_of_producer
                .get(&batch.producer_id())
                .is_none_or(|&o| o == batch.base_offset());
        let (decision, removed) = clean_batch_txn(
            &batch,
            &map,
            keep_if_empty,
            plan.now,
            plan.delete_retention_ms,
            &mut txns,
            &plan.codec,
        )
        .map_err(|e| (batch.base_offset(), e))?;
        match decision {
            Cleaned::Keep => {}
            // A rewrite that grew past the largest batch an engine stores (timestamp deltas
            // re-encoded against a horizon can grow) stays as it was.
            Cleaned::Rewrite(b) if b.size_bytes() > crate::limits::BATCH_BYTES_MAX => {}
            Cleaned::Rewrite(b) => {
                out.records_removed += removed;
                out.bytes_written += b.size_bytes() as u64;
                out.changes.push((batch.base_offset(), Some(b)));
            }
            Cleaned::Remove => {
                out.records_removed += removed;
                out.batches_removed += 1;
                out.changes.push((batch.base_offset(), None));
            }
        }
    }
    out.cleaned_to = cleaned_to.unwrap_or(first_dirty);
    Ok(out)
}

/// Where the active part of an engine without segments starts: its newest batches, as many
/// as fit in `segment_bytes` (at least the newest one), as a log engine's active segment
/// can hold. `sizes`: (base offset, bytes) of every stored batch in offset order.
pub fn active_part_start(
    sizes: impl DoubleEndedIterator<Item = (Offset, u64)>,
    segment_bytes: u64,
    log_end: Offset,
) -> Offset {
    let mut total = 0u64;
    let mut start = log_end;
    for (base, size) in sizes.rev() {
        if start != log_end && total + size > segment_bytes {
            break;
        }
        total += size;
        start = base;
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, SimpleRecord};

    fn rec(key: Option<&str>, value: Option<&str>, ts: i64) -> SimpleRecord {
        SimpleRecord {
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: vec![("h".into(), Some(Bytes::from_static(b"x")))],
            timestamp: Timestamp(ts),
        }
    }

    fn batch(base: i64, recs: Vec<SimpleRecord>) -> RecordBatch {
        let mut b = BatchBuilder::new(Offset(base));
        for r in recs {
            b = b.record(r);
        }
        b.build()
    }

    #[test]
    fn keeps_the_latest_per_key_with_offsets_and_last_offset() {
        let b = batch(
            10,
            vec![
                rec(Some("a"), Some("1"), 100),
                rec(Some("b"), Some("2"), 105),
                rec(Some("a"), Some("3"), 103),
                rec(None, Some("x"), 104),
            ],
        );
        let mut map = OffsetMap::with_memory(1 << 20);
        assert!(map.add_batch(&b).unwrap());
        assert_eq!(map.get(b"a"), Some(Offset(12)));
        let (c, removed) = clean_batch(&b, &map, false, Timestamp(0), 0).unwrap();
        assert_eq!(removed, 2);
        let Cleaned::Rewrite(out) = c else {
            panic!("expected a rewrite, got {c:?}")
        };
        out.validate_stored().unwrap();
        assert_eq!(out.base_offset(), Offset(10));
        assert_eq!(out.last_offset(), Offset(13), "last offset delta kept");
        assert_eq!(out.record_count(), 2);
        assert_eq!(out.max_timestamp(), Timestamp(105));
        let recs = out.decode_uncompressed().unwrap();
        assert_eq!(
            recs,
            vec![
                rec(Some("b"), Some("2"), 105),
                rec(Some("a"), Some("3"), 103)
            ]
        );
    }

    #[test]
    fn tombstones_get_a_horizon_then_go() {
        let b = batch(
            0,
            vec![rec(Some("a"), None, 50), rec(Some("b"), Some("v"), 60)],
        );
        let map = OffsetMap::with_memory(1 << 20);
        let (c, removed) = clean_batch(&b, &map, false, Timestamp(1_000), 500).unwrap();
        assert_eq!(removed, 0);
        let Cleaned::Rewrite(stamped) = c else {
            panic!("{c:?}")
        };
        assert_ne!(stamped.attributes() & DELETE_HORIZON_FLAG, 0);
        assert_eq!(stamped.base_timestamp(), Timestamp(1_500));
        assert_eq!(
            stamped.decode_uncompressed().unwrap(),
            vec![rec(Some("a"), None, 50), rec(Some("b"), Some("v"), 60)],
            "record timestamps survive the new base"
        );
        let (c, _) = clean_batch(&stamped, &map, false, Timestamp(1_499), 500).unwrap();
        assert_eq!(c, Cleaned::Keep);
        let (c, removed) = clean_batch(&stamped, &map, false, Timestamp(1_500), 500).unwrap();
        assert_eq!(removed, 1);
        let Cleaned::Rewrite(gone) = c else {
            panic!("{c:?}")
        };
        assert_eq!(
            gone.decode_uncompressed().unwrap(),
            vec![rec(Some("b"), Some("v"), 60)]
        );
    }

    #[test]
    fn an_emptied_idempotent_batch_stays_empty() {
        let b = BatchBuilder::new(Offset(5))
            .producer(7, 1, 20)
            .kv(b"a", b"old", Timestamp(1))
            .kv(b"a", b"older?", Timestamp(2))
            .build();
        let mut map = OffsetMap::with_memory(1 << 20);
        let newer = batch(9, vec![rec(Some("a"), Some("new"), 3)]);
        map.add_batch(&b).unwrap();
        map.add_batch(&newer).unwrap();
        let (c, removed) = clean_batch(&b, &map, false, Timestamp(0), 0).unwrap();
        assert_eq!((c, removed), (Cleaned::Remove, 2));
        let (c, _) = clean_batch(&b, &map, true, Timestamp(0), 0).unwrap();
        let Cleaned::Rewrite(empty) = c else {
            panic!("{c:?}")
        };
        empty.validate_stored().unwrap();
        assert_eq!(empty.record_count(), 0);
        assert_eq!(
            (
                empty.producer_id(),
                empty.producer_epoch(),
                empty.base_sequence()
            ),
            (7, 1, 20)
        );
        assert_eq!(empty.last_sequence(), 21);
        assert_eq!(empty.next_offset(), Offset(7));
    }

    #[test]
    fn a_full_map_refuses_the_batch() {
        let mut map = OffsetMap::with_memory(2 * OFFSET_MAP_ENTRY_BYTES);
        let b = batch(
            0,
            vec![rec(Some("a"), Some("1"), 0), rec(Some("b"), Some("1"), 0)],
        );
        assert!(map.add_batch(&b).unwrap());
        assert!(!map.add_batch(&b).unwrap());
        assert_eq!(map.mapped_to(), Some(Offset(2)));
    }

    /// A log of transactions, cleaned three times: an aborted transaction's records go once
    /// its marker is in range; a committed one's are cleaned like others; a marker gets a
    /// horizon once nothing of its transaction is left and goes after it (unless it is its
    /// producer's last batch); an open transaction stays whole and out of the map.
    #[test]
    fn transactions_follow_kafkas_rules() {
        use crate::batch::control_batch;
        use crate::ControlType;
        let at = |mut b: RecordBatch, o: i64| {
            b.set_base_offset(Offset(o));
            b
        };
        let txn = |pid: i64, o: i64, kvs: &[(&str, &str)]| {
            let mut b = BatchBuilder::new(Offset(0))
                .producer(pid, 0, 0)
                .transactional();
            for (k, v) in kvs {
                b = b.kv(k.as_bytes(), v.as_bytes(), Timestamp(10));
            }
            at(b.build(), o)
        };
        let marker = |pid: i64, o: i64, kind| at(control_batch(pid, 0, 0, kind, Timestamp(10)), o);
        let plain = |o: i64, k: &str, v: &str| at(batch(0, vec![rec(Some(k), Some(v), 10)]), o);
        let log = vec![
            plain(0, "a", "0"),
            txn(7, 1, &[("a", "aborted"), ("b", "aborted")]),
            marker(7, 3, ControlType::Abort),
            txn(8, 4, &[("a", "committed")]),
            marker(8, 5, ControlType::Commit),
            txn(9, 6, &[("a", "open")]),
            plain(7, "a", "7"),
            txn(7, 8, &[("d", "later")]),
            marker(7, 9, ControlType::Commit),
            plain(10, "z", "active"),
        ];
        let plan = |now: i64, end: i64| CompactionPlan {
            first_dirty: Offset(0),
            end: Offset(end),
            now: Timestamp(now),
            min_compaction_lag_ms: 0,
            delete_retention_ms: 100,
            dedupe_buffer_bytes: 1 << 20,
            codec: CompactionCodec::none(),
        };
        let apply = |log: &[RecordBatch], r: &RangeCleaning| -> Vec<RecordBatch> {
            log.iter()
                .filter_map(
                    |b| match r.changes.iter().find(|(o, _)| *o == b.base_offset()) {
                        Some((_, new)) => new.clone(),
                        None => Some(b.clone()),
                    },
                )
                .collect()
        };
        let summary = |r: &RangeCleaning| -> Vec<(i64, bool)> {
            r.changes.iter().map(|(o, b)| (o.0, b.is_some())).collect()
        };
        // 1. The open transaction (6) holds the last stable offset at 6. The plain "a" at 0
        //    goes (the committed "a" at 4 is newer), the aborted batch goes (not its
        //    producer's last), its marker, with nothing of its transaction left, is
        //    stamped; the committed batch is the latest "a" in range, so it and its marker
        //    stay.
        let r = clean_range(&log, Offset(0), Offset(10), &plan(1_000, 6)).unwrap();
        assert_eq!(r.cleaned_to, Offset(6));
        assert_eq!(summary(&r), vec![(0, false), (1, false), (3, true)]);
        let stamped = r.changes[2].1.clone().unwrap();
        assert!(stamped.is_control() && stamped.attributes() & DELETE_HORIZON_FLAG != 0);
        assert_eq!(stamped.base_timestamp(), Timestamp(1_100));
        assert_eq!(stamped.control_type(), Some(ControlType::Abort));
        stamped.validate_stored().unwrap();
        let log = apply(&log, &r);

        // 2. Everything up to the active part, before the horizon: the committed "a" at 4
        //    goes (the plain "a" at 7 is newer; the open one at 6 stays out of the map), so
        //    its commit marker is stamped; the abort marker waits for its horizon; the open
        //    transaction and the commit of 8 (with its data) stay.
        let r = clean_range(&log, Offset(0), Offset(10), &plan(1_099, 10)).unwrap();
        assert_eq!(summary(&r), vec![(4, false), (5, true)]);
        let log = apply(&log, &r);

        // 3. Past the abort marker's horizon it goes: producer 7's last batch is 9. The
        //    commit marker at 5 is producer 8's last batch: it stays.
        let r = clean_range(&log, Offset(0), Offset(10), &plan(1_100, 10)).unwrap();
        assert_eq!(
            summary(&r),
            vec![(3, false)],
            "past the horizon the marker goes"
        );
        let r = clean_range(&apply(&log, &r), Offset(0), Offset(10), &plan(9_999, 10)).unwrap();
        assert!(r.changes.is_empty(), "{:?}", summary(&r));
    }

    /// `clean_range`: the last batch of an idempotent producer stays (emptied), earlier ones
    /// go; nothing at or past the active part is touched; `active_part_start` keeps the
    /// newest batches that fit in `segment.bytes`, at least one.
    #[test]
    fn clean_range_keeps_producer_state_and_the_active_part() {
        let idem = |o: i64, seq: i32| {
            let mut b = BatchBuilder::new(Offset(0))
                .producer(5, 0, seq)
                .kv(b"a", b"x", Timestamp(1))
                .build();
            b.set_base_offset(Offset(o));
            b
        };
        let log = vec![
            idem(0, 0),
            idem(1, 1),
            batch(2, vec![rec(Some("a"), Some("new"), 1)]),
            batch(3, vec![rec(Some("a"), Some("active"), 1)]),
        ];
        let sizes = || log.iter().map(|b| (b.base_offset(), b.size_bytes() as u64));
        let one = log[3].size_bytes() as u64;
        assert_eq!(active_part_start(sizes(), 0, Offset(4)), Offset(3));
        assert_eq!(active_part_start(sizes(), one, Offset(4)), Offset(3));
        assert_eq!(active_part_start(sizes(), 2 * one, Offset(4)), Offset(2));
        let plan = CompactionPlan {
            first_dirty: Offset(0),
            end: Offset(4),
            now: Timestamp(100),
            min_compaction_lag_ms: 0,
            delete_retention_ms: 0,
            dedupe_buffer_bytes: 1 << 20,
            codec: CompactionCodec::none(),
        };
        let r = clean_range(&log, Offset(0), Offset(3), &plan).unwrap();
        assert_eq!(r.cleaned_to, Offset(3));
        assert_eq!(r.changes.len(), 2);
        assert_eq!(r.changes[0], (Offset(0), None));
        let (o, Some(empty)) = &r.changes[1] else {
            panic!("{:?}", r.changes)
        };
        assert_eq!(*o, Offset(1));
        assert_eq!(
            (
                empty.record_count(),
                empty.producer_id(),
                empty.base_sequence()
            ),
            (0, 5, 1)
        );
        assert_eq!((r.records_removed, r.batches_removed), (2, 1));
    }

    /// A test "codec": a magic byte, then every byte xor 0x5a; it refuses to decompress
    /// past `max_bytes` and counts the batches reported left whole.
    #[derive(Default)]
    struct XorCodec {
        left_whole: std::sync::Mutex<Vec<i64>>,
    }

    impl BatchCodec for XorCodec {
        fn decompress(
            &self,
            _c: CompressionType,
            data: &[u8],
            max_bytes: usize,
        ) -> Result<Vec<u8>, CodecError> {
            let Some((&0xc0, rest)) = data.split_first() else {
                return Err(CodecError("bad magic".into()));
            };
            if rest.len() > max_bytes {
                return Err(CodecError("too large".into()));
            }
            Ok(rest.iter().map(|b| b ^ 0x5a).collect())
        }

        fn compress(&self, _c: CompressionType, data: &[u8]) -> Result<Vec<u8>, CodecError> {
            Ok(std::iter::once(0xc0)
                .chain(data.iter().map(|b| b ^ 0x5a))
                .collect())
        }

        fn left_whole(&self, base_offset: Offset, _error: &CodecError) {
            self.left_whole.lock().unwrap().push(base_offset.0);
        }
    }

    /// Compressed batches with a codec: their keys enter the map, a rewrite keeps base
    /// offset, last offset delta, producer fields and the codec; an emptied one is written
    /// uncompressed; one that does not decompress is left whole and reported; without a
    /// codec they all stay whole.
    #[test]
    fn compressed_batches_are_cleaned_through_the_codec() {
        let xor = Arc::new(XorCodec::default());
        let codec = CompactionCodec::new(xor.clone());
        let compressed = |b: RecordBatch, c: CompressionType| {
            let out = recompress_for_compaction(&b, c, &codec).unwrap();
            out.validate_stored().unwrap();
            assert_eq!(out.compression(), c);
            out
        };
        let idem = |o: i64, seq: i32, kvs: &[(&str, &str)]| {
            let mut b = BatchBuilder::new(Offset(o)).producer(5, 2, seq);
            for (k, v) in kvs {
                b = b.kv(k.as_bytes(), v.as_bytes(), Timestamp(10));
            }
            b.build()
        };
        let mut garbage = batch(9, vec![rec(Some("g"), Some("1"), 10)]);
        garbage = frame(
            garbage.as_bytes(),
            b"not compressed",
            garbage.attributes() | 3,
        )
        .unwrap();
        let log = vec![
            compressed(
                idem(0, 0, &[("a", "0"), ("b", "1"), ("a", "2"), ("c", "3")]),
                CompressionType::Lz4,
            ),
            compressed(idem(4, 4, &[("c", "4")]), CompressionType::Zstd),
            compressed(idem(5, 5, &[("b", "5"), ("b", "6")]), CompressionType::Gzip),
            compressed(
                idem(7, 7, &[("b", "7"), ("c", "8")]),
                CompressionType::Snappy,
            ),
            garbage,
            batch(10, vec![rec(Some("z"), Some("active"), 10)]),
        ];
        let plan = |codec: CompactionCodec| CompactionPlan {
            first_dirty: Offset(0),
            end: Offset(11),
            now: Timestamp(100),
            min_compaction_lag_ms: 0,
            delete_retention_ms: 0,
            dedupe_buffer_bytes: 1 << 20,
            codec,
        };
        let r = clean_range(&log, Offset(0), Offset(10), &plan(CompactionCodec::none())).unwrap();
        assert!(r.changes.is_empty(), "no codec: {:?}", r.changes);

        let r = clean_range(&log, Offset(0), Offset(10), &plan(codec.clone())).unwrap();
        assert_eq!(r.cleaned_to, Offset(10));
        let changed: Vec<i64> = r.changes.iter().map(|(o, _)| o.0).collect();
        assert_eq!(changed, vec![0, 4, 5], "the garbage batch at 9 stays");
        assert_eq!(*xor.left_whole.lock().unwrap(), vec![9]);
        assert_eq!((r.records_removed, r.batches_removed), (6, 2));
        // 0: "a"=2 survives (b and c are newer later), still lz4, offsets and producer kept.
        let Some(b0) = &r.changes[0].1 else {
            panic!("{:?}", r.changes)
        };
        b0.validate_stored().unwrap();
        assert_eq!(b0.compression(), CompressionType::Lz4);
        assert_eq!(
            (b0.base_offset(), b0.last_offset(), b0.record_count()),
            (Offset(0), Offset(3), 1)
        );
        assert_eq!(
            (b0.producer_id(), b0.producer_epoch(), b0.base_sequence()),
            (5, 2, 0)
        );
        let plain = decompress_for_compaction(b0, &codec).unwrap();
        let recs = plain.decode_uncompressed_with_offsets().unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].0, Offset(2));
        assert_eq!(recs[0].1.value.as_deref(), Some(&b"2"[..]));
        // 4 and 5 lose everything and are not their producer's last: removed.
        assert_eq!(r.changes[1], (Offset(4), None));
        assert_eq!(r.changes[2], (Offset(5), None));

        // Producer 5's last batch, emptied, is kept empty and uncompressed.
        let emptied_log = vec![
            log[3].clone(),
            batch(
                9,
                vec![rec(Some("b"), Some("x"), 10), rec(Some("c"), Some("y"), 10)],
            ),
            batch(11, vec![rec(Some("z"), Some("active"), 10)]),
        ];
        let r = clean_range(&emptied_log, Offset(7), Offset(11), &plan(codec.clone())).unwrap();
        let Some(empty) = &r.changes[0].1 else {
            panic!("{:?}", r.changes)
        };
        empty.validate_stored().unwrap();
        assert_eq!(
            (
                empty.compression(),
                empty.record_count(),
                empty.last_offset()
            ),
            (CompressionType::None, 0, Offset(8))
        );
        assert_eq!(empty.base_sequence(), 7);
    }

    /// A batch that decompresses past the bound is left whole, its keys out of the map.
    #[test]
    fn a_decompression_bomb_is_left_whole() {
        let xor = Arc::new(XorCodec::default());
        let codec = CompactionCodec::new(xor.clone());
        let big = "v".repeat(crate::limits::COMPACTION_DECOMPRESSED_BYTES_MAX);
        let plain = batch(0, vec![rec(Some("a"), Some(&big), 1)]);
        let bomb = recompress_for_compaction(&plain, CompressionType::Gzip, &codec).unwrap();
        let mut map = OffsetMap::with_memory(1 << 20);
        assert!(map
            .add_batch_txn(&bomb, &TxnIndex::default(), &codec)
            .unwrap());
        assert_eq!(map.get(b"a"), None);
        let newer = batch(1, vec![rec(Some("a"), Some("new"), 1)]);
        map.add_batch(&newer).unwrap();
        let (c, _) = clean_batch_txn(
            &bomb,
            &map,
            false,
            Timestamp(0),
            0,
            &mut TxnIndex::default(),
            &codec,
        )
        .unwrap();
        assert_eq!(c, Cleaned::Keep);
        assert_eq!(*xor.left_whole.lock().unwrap(), vec![0]);
    }
}
