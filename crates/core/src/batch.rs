//! A zero-copy view over one magic-2 record batch, as Kafka stores it on disk and on the wire.
//!
//! Header layout (61 bytes, big-endian):
//!
//! | bytes  | field                  |
//! |--------|------------------------|
//! | 0..8   | base offset            |
//! | 8..12  | batch length (bytes after this field) |
//! | 12..16 | partition leader epoch |
//! | 16     | magic (2)              |
//! | 17..21 | CRC-32C of bytes 21..end |
//! | 21..23 | attributes             |
//! | 23..27 | last offset delta      |
//! | 27..35 | base timestamp         |
//! | 35..43 | max timestamp          |
//! | 43..51 | producer id            |
//! | 51..53 | producer epoch         |
//! | 53..57 | base sequence          |
//! | 57..61 | record count           |
//!
//! The records themselves are never decoded here: the produce and fetch paths move bytes.

use bytes::{BufMut, Bytes, BytesMut};

use crate::types::{Offset, Timestamp};

/// Size of the fixed batch header.
pub const HEADER_BYTES: usize = 61;
/// Bytes before and including the batch-length field; `batch length` counts what follows.
pub const LOG_OVERHEAD: usize = 12;

// The header layout, defined once: where each field starts (see the table above). Storage
// reads stored headers with these (rafka-storage's `log/header.rs`).
/// Where the base offset (INT64) starts.
pub const BASE_OFFSET: usize = 0;
/// Where the batch length (INT32, bytes after this field) starts.
pub const BATCH_LENGTH: usize = 8;
/// Where the partition leader epoch (INT32) starts.
pub const PARTITION_LEADER_EPOCH: usize = 12;
/// Where the magic byte starts.
pub const MAGIC: usize = 16;
/// Where the CRC-32C (UINT32, of bytes `ATTRIBUTES..`) starts.
pub const CRC: usize = 17;
/// Where the attributes (INT16) start; the CRC covers from here to the end.
pub const ATTRIBUTES: usize = 21;
/// Where the last offset delta (INT32) starts.
pub const LAST_OFFSET_DELTA: usize = 23;
/// Where the base timestamp (INT64) starts.
pub const BASE_TIMESTAMP: usize = 27;
/// Where the max timestamp (INT64) starts.
pub const MAX_TIMESTAMP: usize = 35;
/// Where the producer id (INT64) starts.
pub const PRODUCER_ID: usize = 43;
/// Where the producer epoch (INT16) starts.
pub const PRODUCER_EPOCH: usize = 51;
/// Where the base sequence (INT32) starts.
pub const BASE_SEQUENCE: usize = 53;
/// Where the record count (INT32) starts; the records follow the header.
pub const RECORD_COUNT: usize = 57;
const _: () = assert!(RECORD_COUNT + 4 == HEADER_BYTES && BATCH_LENGTH + 4 == LOG_OVERHEAD);

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than a header.
    #[error("batch of {0} bytes is shorter than the 61-byte header")]
    TooShort(usize),
    /// The length field disagrees with the bytes present.
    #[error("batch length field says {declared} bytes but {actual} are present")]
    LengthMismatch {
        /// Bytes the header claims (including the 12-byte prefix).
        declared: usize,
        /// Bytes actually present.
        actual: usize,
    },
    /// Only magic 2 is stored.
    #[error("unsupported magic {0}: only magic 2 record batches are accepted")]
    BadMagic(i8),
    /// The checksum does not match.
    #[error("CRC-32C mismatch: header says {stored:#010x}, bytes give {computed:#010x}")]
    CrcMismatch {
        /// CRC in the header.
        stored: u32,
        /// CRC computed over the bytes.
        computed: u32,
    },
    /// Record count and last offset delta disagree, or the batch is empty.
    #[error("record count {count} does not match last offset delta {last_offset_delta}")]
    BadRecordCount {
        /// Records the header claims.
        count: i32,
        /// Last offset delta in the header.
        last_offset_delta: i32,
    },
}

/// The compression codec in a batch's attributes (bits 0–2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionType {
    /// Uncompressed.
    None,
    /// gzip.
    Gzip,
    /// snappy (xerial framing).
    Snappy,
    /// lz4 frame.
    Lz4,
    /// zstd.
    Zstd,
    /// A codec id Kafka does not define.
    Unknown(u8),
}

/// Which timestamp a batch carries (attribute bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Set by the producer.
    CreateTime,
    /// Set by the broker on append.
    LogAppendTime,
}

/// Attribute bit 4: the batch belongs to a transaction.
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
/// Attribute bit 5: the batch is a control batch (a transaction marker).
pub const ATTR_CONTROL: i16 = 0x20;

/// What a control record says (Kafka's `ControlRecordType`: key version 0, then the type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    /// Type 0: the producer's transaction on this partition is aborted.
    Abort,
    /// Type 1: it is committed.
    Commit,
}

impl ControlType {
    /// The type's code in the control record key.
    pub fn code(self) -> i16 {
        match self {
            ControlType::Abort => 0,
            ControlType::Commit => 1,
        }
    }
}

/// A transaction marker in Kafka's layout: one control record whose key is
/// `version: int16 = 0, type: int16` and whose value is `version: int16 = 0,
/// coordinator_epoch: int32`, in a batch with the transactional and control attribute
/// bits and the transaction's producer id and epoch (sequence -1).
pub fn control_batch(
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    kind: ControlType,
    ts: Timestamp,
) -> RecordBatch {
    let mut key = BytesMut::with_capacity(4);
    key.put_i16(0);
    key.put_i16(kind.code());
    let mut value = BytesMut::with_capacity(6);
    value.put_i16(0);
    value.put_i32(coordinator_epoch);
    let mut b = BatchBuilder::new(Offset(0))
        .producer(producer_id, producer_epoch, -1)
        .record(SimpleRecord {
            key: Some(key.freeze()),
            value: Some(value.freeze()),
            headers: Vec::new(),
            timestamp: ts,
        });
    b.attributes |= ATTR_TRANSACTIONAL | ATTR_CONTROL;
    b.build()
}

/// A view over exactly one magic-2 record batch. Cheap to clone (shares the bytes).
///
/// Construct with [`RecordBatch::parse`] (checks framing only) and call
/// [`RecordBatch::validate`] before trusting the contents.
#[derive(Clone, PartialEq, Eq)]
pub struct RecordBatch {
    buf: Bytes,
}

impl std::fmt::Debug for RecordBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordBatch")
            .field("base_offset", &self.base_offset())
            .field("records", &self.record_count())
            .field("bytes", &self.buf.len())
            .finish()
    }
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

impl RecordBatch {
    /// Wraps `buf`, which must hold exactly one batch: at least a header, and a length field
    /// that matches the bytes present. Does not check the CRC.
    pub fn parse(buf: Bytes) -> Result<RecordBatch, BatchError> {
        if buf.len() < HEADER_BYTES {
            return Err(BatchError::TooShort(buf.len()));
        }
        let declared = be_i32(&buf, BATCH_LENGTH) as i64 + LOG_OVERHEAD as i64;
        if declared != buf.len() as i64 {
            return Err(BatchError::LengthMismatch {
                declared: declared.max(0) as usize,
                actual: buf.len(),
            });
        }
        Ok(RecordBatch { buf })
    }

    /// Bytes and records of the whole batches at the front of a record set (as a Fetch
    /// answer carries them), from the headers alone; a trailing partial batch is left out.
    pub fn tally(records: &[u8]) -> (u64, u64) {
        let (mut bytes, mut count) = (0u64, 0u64);
        let mut rest = records;
        while let Some(len) = batch_len_at(rest) {
            if len < HEADER_BYTES || len > rest.len() {
                break;
            }
            bytes += len as u64;
            count += be_i32(rest, RECORD_COUNT).max(0) as u64;
            rest = &rest[len..];
        }
        (bytes, count)
    }

    /// Splits a record set (batches back to back, as in a Produce request) into batches.
    /// A trailing partial batch is an error: produce requests never carry one.
    pub fn split_all(mut records: Bytes) -> Result<Vec<RecordBatch>, BatchError> {
        let mut out = Vec::new();
        while !records.is_empty() {
            let Some(len) = batch_len_at(&records) else {
                return Err(BatchError::TooShort(records.len()));
            };
            if len < HEADER_BYTES || len > records.len() {
                return Err(BatchError::LengthMismatch {
                    declared: len,
                    actual: records.len(),
                });
            }
            out.push(RecordBatch::parse(records.split_to(len))?);
        }
        Ok(out)
    }

    /// Checks magic, length, record count against last offset delta, and the CRC-32C
    /// (which covers attributes to the end). An empty batch is refused.
    pub fn validate(&self) -> Result<(), BatchError> {
        let magic = self.magic();
        if magic != 2 {
            return Err(BatchError::BadMagic(magic));
        }
        let count = self.record_count();
        let last_offset_delta = self.last_offset_delta();
        if count <= 0 || last_offset_delta < 0 || count - 1 != last_offset_delta {
            return Err(BatchError::BadRecordCount {
                count,
                last_offset_delta,
            });
        }
        let stored = self.crc();
        let computed = crc32c::crc32c(&self.buf[ATTRIBUTES..]);
        if stored != computed {
            return Err(BatchError::CrcMismatch { stored, computed });
        }
        Ok(())
    }

    /// Checks a batch read back from storage: like [`validate`](RecordBatch::validate), but
    /// a compacted batch may hold fewer records than its offset span (Kafka keeps the last
    /// offset delta when compaction removes records) or none at all (an idempotent
    /// producer's emptied batch).
    pub fn validate_stored(&self) -> Result<(), BatchError> {
        let magic = self.magic();
        if magic != 2 {
            return Err(BatchError::BadMagic(magic));
        }
        let count = self.record_count();
        let last_offset_delta = self.last_offset_delta();
        if count < 0 || last_offset_delta < 0 || count as i64 > last_offset_delta as i64 + 1 {
            return Err(BatchError::BadRecordCount {
                count,
                last_offset_delta,
            });
        }
        let stored = self.crc();
        let computed = crc32c::crc32c(&self.buf[ATTRIBUTES..]);
        if stored != computed {
            return Err(BatchError::CrcMismatch { stored, computed });
        }
        Ok(())
    }

    /// The raw bytes of the batch, header included.
    pub fn as_bytes(&self) -> &Bytes {
        &self.buf
    }

    /// Consumes the view, returning the bytes.
    pub fn into_bytes(self) -> Bytes {
        self.buf
    }

    /// Total size in bytes.
    pub fn size_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Offset of the first record.
    pub fn base_offset(&self) -> Offset {
        Offset(be_i64(&self.buf, BASE_OFFSET))
    }

    /// Offset of the last record (base offset + last offset delta).
    pub fn last_offset(&self) -> Offset {
        self.base_offset().plus(self.last_offset_delta() as i64)
    }

    /// The offset after the last record.
    pub fn next_offset(&self) -> Offset {
        self.last_offset().plus(1)
    }

    /// Partition leader epoch stamped by the broker.
    pub fn partition_leader_epoch(&self) -> i32 {
        be_i32(&self.buf, PARTITION_LEADER_EPOCH)
    }

    /// Magic byte (format version).
    pub fn magic(&self) -> i8 {
        self.buf[MAGIC] as i8
    }

    /// Stored CRC-32C.
    pub fn crc(&self) -> u32 {
        u32::from_be_bytes(self.buf[CRC..CRC + 4].try_into().expect("4 bytes"))
    }

    /// Raw attributes.
    pub fn attributes(&self) -> i16 {
        be_i16(&self.buf, ATTRIBUTES)
    }

    /// Compression codec.
    pub fn compression(&self) -> CompressionType {
        match self.attributes() & 0x7 {
            0 => CompressionType::None,
            1 => CompressionType::Gzip,
            2 => CompressionType::Snappy,
            3 => CompressionType::Lz4,
            4 => CompressionType::Zstd,
            n => CompressionType::Unknown(n as u8),
        }
    }

    /// Which timestamp the batch carries.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes() & 0x8 != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Part of a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes() & 0x10 != 0
    }

    /// A control batch (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes() & 0x20 != 0
    }

    /// Last offset delta.
    pub fn last_offset_delta(&self) -> i32 {
        be_i32(&self.buf, LAST_OFFSET_DELTA)
    }

    /// Timestamp of the first record.
    pub fn base_timestamp(&self) -> Timestamp {
        Timestamp(be_i64(&self.buf, BASE_TIMESTAMP))
    }

    /// Largest timestamp in the batch.
    pub fn max_timestamp(&self) -> Timestamp {
        Timestamp(be_i64(&self.buf, MAX_TIMESTAMP))
    }

    /// Producer id, or -1.
    pub fn producer_id(&self) -> i64 {
        be_i64(&self.buf, PRODUCER_ID)
    }

    /// Producer epoch, or -1.
    pub fn producer_epoch(&self) -> i16 {
        be_i16(&self.buf, PRODUCER_EPOCH)
    }

    /// Sequence number of the first record, or -1.
    pub fn base_sequence(&self) -> i32 {
        be_i32(&self.buf, BASE_SEQUENCE)
    }

    /// Sequence number of the last record (wraps at i32::MAX as Kafka does).
    pub fn last_sequence(&self) -> i32 {
        let base = self.base_sequence();
        if base < 0 {
            return -1;
        }
        let last = base as i64 + self.last_offset_delta() as i64;
        (last % (i32::MAX as i64 + 1)) as i32
    }

    /// Number of records.
    pub fn record_count(&self) -> i32 {
        be_i32(&self.buf, RECORD_COUNT)
    }

    /// Writes the base offset in place. The field sits outside the CRC range, so the
    /// CRC stays valid. Copies the bytes only if they are shared.
    pub fn set_base_offset(&mut self, offset: Offset) {
        self.patch(|b| b[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&offset.0.to_be_bytes()));
    }

    /// Writes the partition leader epoch in place (outside the CRC range). A batch that
    /// already carries `epoch` (librdkafka writes 0) is left alone, shared bytes uncopied.
    pub fn set_partition_leader_epoch(&mut self, epoch: i32) {
        if self.partition_leader_epoch() == epoch {
            return;
        }
        self.patch(|b| {
            b[PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4]
                .copy_from_slice(&epoch.to_be_bytes())
        });
    }

    /// For LogAppendTime topics: marks the batch as LogAppendTime, sets its max timestamp
    /// to `ts` and recomputes the CRC. Record-level timestamps stay as sent; readers use
    /// the batch's max timestamp for every record of a LogAppendTime batch, as in Kafka.
    pub fn set_log_append_time(&mut self, ts: Timestamp) {
        self.patch(|b| {
            let attrs = be_i16(b, ATTRIBUTES) | 0x8;
            b[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attrs.to_be_bytes());
            b[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&ts.0.to_be_bytes());
            let crc = crc32c::crc32c(&b[ATTRIBUTES..]);
            b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        });
    }

    /// Sets a CreateTime batch's max timestamp to `ts` (clearing the LogAppendTime bit, as
    /// Kafka's `setMaxTimestamp(CREATE_TIME, ..)` does) and recomputes the CRC. A batch that
    /// already says so is left alone, shared bytes uncopied.
    pub fn set_max_timestamp(&mut self, ts: Timestamp) {
        if self.max_timestamp() == ts && self.timestamp_type() == TimestampType::CreateTime {
            return;
        }
        self.patch(|b| {
            let attrs = be_i16(b, ATTRIBUTES) & !0x8;
            b[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attrs.to_be_bytes());
            b[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&ts.0.to_be_bytes());
            let crc = crc32c::crc32c(&b[ATTRIBUTES..]);
            b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        });
    }

    /// The bytes after the 61-byte header: the records, compressed as the attributes say.
    pub fn records_bytes(&self) -> Bytes {
        self.buf.slice(HEADER_BYTES..)
    }

    fn patch(&mut self, f: impl FnOnce(&mut [u8])) {
        let buf = std::mem::take(&mut self.buf);
        let mut owned = buf
            .try_into_mut()
            .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        f(&mut owned);
        self.buf = owned.freeze();
    }
}

/// The total length (prefix included) of the batch starting at `buf[0]`, if the
/// 12-byte prefix is present. Used to walk a record set or a segment file.
pub fn batch_len_at(buf: &[u8]) -> Option<usize> {
    if buf.len() < LOG_OVERHEAD {
        return None;
    }
    let len = be_i32(buf, BATCH_LENGTH);
    if len < 0 {
        return Some(usize::MAX);
    }
    Some(len as usize + LOG_OVERHEAD)
}

/// One record for [`BatchBuilder`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimpleRecord {
    /// Key, or none.
    pub key: Option<Bytes>,
    /// Value, or none (a tombstone).
    pub value: Option<Bytes>,
    /// Headers in order.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Timestamp.
    pub timestamp: Timestamp,
}

/// Builds an uncompressed magic-2 batch. Used by the broker for internal records and by tests;
/// the produce path never re-encodes client batches.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    base_offset: Offset,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    attributes: i16,
    records: Vec<SimpleRecord>,
}

impl BatchBuilder {
    /// A builder for a batch starting at `base_offset` with no producer id.
    pub fn new(base_offset: Offset) -> BatchBuilder {
        BatchBuilder {
            base_offset,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            attributes: 0,
            records: Vec::new(),
        }
    }

    /// Marks the batch transactional (attribute bit 4): its records belong to the open
    /// transaction of its producer id.
    pub fn transactional(mut self) -> BatchBuilder {
        self.attributes |= ATTR_TRANSACTIONAL;
        self
    }

    /// Sets idempotent-producer fields.
    pub fn producer(mut self, id: i64, epoch: i16, base_sequence: i32) -> BatchBuilder {
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Adds a record.
    pub fn record(mut self, record: SimpleRecord) -> BatchBuilder {
        self.records.push(record);
        self
    }

    /// Adds a record with just a key and a value.
    pub fn kv(self, key: &[u8], value: &[u8], ts: Timestamp) -> BatchBuilder {
        self.record(SimpleRecord {
            key: Some(Bytes::copy_from_slice(key)),
            value: Some(Bytes::copy_from_slice(value)),
            headers: Vec::new(),
            timestamp: ts,
        })
    }

    /// Encodes the batch. Panics on an empty builder (a programming error, not peer input).
    pub fn build(self) -> RecordBatch {
        assert!(
            !self.records.is_empty(),
            "a batch needs at least one record"
        );
        let base_ts = self
            .records
            .iter()
            .map(|r| r.timestamp.0)
            .min()
            .unwrap_or(0);
        let max_ts = self
            .records
            .iter()
            .map(|r| r.timestamp.0)
            .max()
            .unwrap_or(0);
        let mut body = BytesMut::new();
        for (i, r) in self.records.iter().enumerate() {
            let mut rec = BytesMut::new();
            rec.put_i8(0); // record attributes
            put_varlong(&mut rec, r.timestamp.0 - base_ts);
            put_varlong(&mut rec, i as i64);
            put_bytes(&mut rec, r.key.as_deref());
            put_bytes(&mut rec, r.value.as_deref());
            put_varlong(&mut rec, r.headers.len() as i64);
            for (k, v) in &r.headers {
                put_bytes(&mut rec, Some(k.as_bytes()));
                put_bytes(&mut rec, v.as_deref());
            }
            put_varlong(&mut body, rec.len() as i64);
            body.extend_from_slice(&rec);
        }
        let mut b = BytesMut::with_capacity(HEADER_BYTES + body.len());
        b.put_i64(self.base_offset.0);
        b.put_i32((HEADER_BYTES - LOG_OVERHEAD + body.len()) as i32);
        b.put_i32(0); // partition leader epoch
        b.put_i8(2);
        b.put_u32(0); // CRC, filled below
        b.put_i16(self.attributes);
        b.put_i32(self.records.len() as i32 - 1);
        b.put_i64(base_ts);
        b.put_i64(max_ts);
        b.put_i64(self.producer_id);
        b.put_i16(self.producer_epoch);
        b.put_i32(self.base_sequence);
        b.put_i32(self.records.len() as i32);
        b.extend_from_slice(&body);
        let crc = crc32c::crc32c(&b[ATTRIBUTES..]);
        b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        RecordBatch { buf: b.freeze() }
    }
}

fn put_varlong(b: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        b.put_u8((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    b.put_u8(z as u8);
}

fn put_bytes(b: &mut BytesMut, v: Option<&[u8]>) {
    match v {
        None => put_varlong(b, -1),
        Some(v) => {
            put_varlong(b, v.len() as i64);
            b.extend_from_slice(v);
        }
    }
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

fn get_bytes(buf: &mut &[u8]) -> Option<Option<Bytes>> {
    let len = get_varlong(buf)?;
    if len < 0 {
        return Some(None);
    }
    let len = usize::try_from(len).ok()?;
    if len > buf.len() {
        return None;
    }
    let (v, rest) = buf.split_at(len);
    *buf = rest;
    Some(Some(Bytes::copy_from_slice(v)))
}

/// Why a batch's records could not be walked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed records: {0}")]
pub struct MalformedRecords(pub &'static str);

/// Calls `f(index, timestamp)` for each of the `count` records in `records`, the
/// **uncompressed** records section of a batch whose base timestamp is `base_timestamp`.
/// Reads only each record's length, attributes and timestamp delta and skips the rest, so
/// it costs a few varint reads per record. The records must fill `records` exactly.
pub fn for_each_record_timestamp(
    mut records: &[u8],
    base_timestamp: i64,
    count: i32,
    mut f: impl FnMut(usize, i64),
) -> Result<(), MalformedRecords> {
    for i in 0..count.max(0) as usize {
        let len = get_varlong(&mut records).ok_or(MalformedRecords("bad record length"))?;
        let len = usize::try_from(len).map_err(|_| MalformedRecords("negative record length"))?;
        if len > records.len() {
            return Err(MalformedRecords("record runs past the batch"));
        }
        let (mut rec, rest) = records.split_at(len);
        records = rest;
        rec = rec.get(1..).ok_or(MalformedRecords("empty record"))?; // attributes
        let delta = get_varlong(&mut rec).ok_or(MalformedRecords("bad timestamp delta"))?;
        let ts = base_timestamp
            .checked_add(delta)
            .ok_or(MalformedRecords("timestamp delta overflows"))?;
        f(i, ts);
    }
    if !records.is_empty() {
        return Err(MalformedRecords("bytes left after the last record"));
    }
    Ok(())
}

impl RecordBatch {
    /// The marker a control batch carries (`None` for a data batch, or a control record
    /// whose key is not Kafka's version 0 layout).
    pub fn control_type(&self) -> Option<ControlType> {
        if !self.is_control() {
            return None;
        }
        let records = self.decode_uncompressed()?;
        let key = records.first()?.key.as_ref()?;
        if key.len() < 4 || be_i16(key, 0) != 0 {
            return None;
        }
        match be_i16(key, 2) {
            0 => Some(ControlType::Abort),
            1 => Some(ControlType::Commit),
            _ => None,
        }
    }

    /// Decodes the records of an **uncompressed** batch, for internal topics and tests.
    /// Returns `None` for a compressed batch or malformed records.
    pub fn decode_uncompressed(&self) -> Option<Vec<SimpleRecord>> {
        Some(
            self.decode_uncompressed_with_offsets()?
                .into_iter()
                .map(|(_, r)| r)
                .collect(),
        )
    }

    /// [`decode_uncompressed`](RecordBatch::decode_uncompressed) with each record's offset
    /// (base offset + its offset delta: after compaction they need not be consecutive).
    pub fn decode_uncompressed_with_offsets(&self) -> Option<Vec<(Offset, SimpleRecord)>> {
        if self.compression() != CompressionType::None {
            return None;
        }
        let mut buf: &[u8] = &self.buf[HEADER_BYTES..];
        let base_ts = self.base_timestamp().0;
        let mut out = Vec::new();
        for _ in 0..self.record_count() {
            let len = usize::try_from(get_varlong(&mut buf)?).ok()?;
            if len > buf.len() {
                return None;
            }
            let (mut rec, rest) = buf.split_at(len);
            buf = rest;
            rec = rec.get(1..)?; // attributes
            let ts_delta = get_varlong(&mut rec)?;
            let offset_delta = get_varlong(&mut rec)?;
            let key = get_bytes(&mut rec)?;
            let value = get_bytes(&mut rec)?;
            let n_headers = get_varlong(&mut rec)?;
            let mut headers = Vec::new();
            for _ in 0..n_headers.max(0) {
                let k = get_bytes(&mut rec)??;
                let v = get_bytes(&mut rec)?;
                headers.push((String::from_utf8(k.to_vec()).ok()?, v));
            }
            // Peer bytes: a base offset near i64::MAX plus a delta must not overflow.
            let offset = Offset(self.base_offset().0.checked_add(offset_delta)?);
            out.push((
                offset,
                SimpleRecord {
                    key,
                    value,
                    headers,
                    // Malformed, not a panic: the record_batch fuzz target found the overflow.
                    timestamp: Timestamp(base_ts.checked_add(ts_delta)?),
                },
            ));
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_batches_are_kafkas_marker_layout() {
        let b = control_batch(42, 7, 3, ControlType::Commit, Timestamp(1_000));
        b.validate().expect("valid CRC");
        assert_eq!(b.attributes(), 0x30);
        assert!(b.is_transactional() && b.is_control());
        assert_eq!((b.producer_id(), b.producer_epoch()), (42, 7));
        assert_eq!((b.base_sequence(), b.record_count()), (-1, 1));
        let r = &b.decode_uncompressed().expect("records")[0];
        assert_eq!(r.key.as_deref(), Some(&[0u8, 0, 0, 1][..]));
        assert_eq!(r.value.as_deref(), Some(&[0u8, 0, 0, 0, 0, 3][..]));
        assert_eq!(b.control_type(), Some(ControlType::Commit));
        let a = control_batch(42, 7, 0, ControlType::Abort, Timestamp(1_000));
        assert_eq!(a.control_type(), Some(ControlType::Abort));
        assert_eq!(sample(1).control_type(), None);
        let t = BatchBuilder::new(Offset(0))
            .producer(1, 0, 0)
            .transactional()
            .kv(b"k", b"v", Timestamp(0))
            .build();
        assert!(t.is_transactional() && !t.is_control());
    }

    fn sample(n: usize) -> RecordBatch {
        let mut b = BatchBuilder::new(Offset(0));
        for i in 0..n {
            b = b.kv(
                format!("k{i}").as_bytes(),
                b"value",
                Timestamp(1000 + i as i64),
            );
        }
        b.build()
    }

    fn varlong(v: i64) -> Vec<u8> {
        let mut b = BytesMut::new();
        put_varlong(&mut b, v);
        b.to_vec()
    }

    #[test]
    fn a_timestamp_delta_that_overflows_is_malformed() {
        // One record whose timestamp delta takes the base timestamp past i64::MAX.
        let mut rec = vec![0u8]; // attributes
        rec.extend(varlong(i64::MAX)); // timestamp delta
        rec.extend(varlong(0)); // offset delta
        rec.extend(varlong(-1)); // null key
        rec.extend(varlong(-1)); // null value
        rec.extend(varlong(0)); // no headers
        let mut body = varlong(rec.len() as i64);
        body.extend(rec);
        let b = sample(1);
        let mut bytes = b.as_bytes()[..HEADER_BYTES].to_vec();
        bytes.extend(body);
        let len = (bytes.len() - 12) as i32;
        bytes[8..12].copy_from_slice(&len.to_be_bytes());
        bytes[27..35].copy_from_slice(&1i64.to_be_bytes()); // base timestamp 1
        let forged = RecordBatch::parse(Bytes::from(bytes)).unwrap();
        assert_eq!(forged.decode_uncompressed(), None);
    }

    #[test]
    fn built_batch_validates_and_decodes() {
        let b = sample(3);
        b.validate().unwrap();
        assert_eq!(b.record_count(), 3);
        assert_eq!(b.last_offset_delta(), 2);
        assert_eq!(b.max_timestamp(), Timestamp(1002));
        let recs = b.decode_uncompressed().unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[2].key.as_deref(), Some(&b"k2"[..]));
        assert_eq!(recs[2].timestamp, Timestamp(1002));
    }

    #[test]
    fn an_unchanged_leader_epoch_leaves_shared_bytes_uncopied() {
        let mut b = sample(2);
        b.set_partition_leader_epoch(0);
        let shared = b.as_bytes().clone(); // a second owner: patching would copy
        b.set_partition_leader_epoch(0);
        assert_eq!(b.as_bytes().as_ptr(), shared.as_ptr());
        b.set_partition_leader_epoch(7);
        assert_ne!(b.as_bytes().as_ptr(), shared.as_ptr());
        assert_eq!(b.partition_leader_epoch(), 7);
        b.validate().unwrap();
    }

    #[test]
    fn set_base_offset_keeps_crc() {
        let mut b = sample(2);
        b.set_base_offset(Offset(42));
        assert_eq!(b.base_offset(), Offset(42));
        assert_eq!(b.last_offset(), Offset(43));
        b.validate().unwrap();
    }

    #[test]
    fn log_append_time_recomputes_crc() {
        let mut b = sample(2);
        b.set_log_append_time(Timestamp(5));
        assert_eq!(b.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(b.max_timestamp(), Timestamp(5));
        b.validate().unwrap();
    }

    #[test]
    fn bad_batches_are_refused() {
        let good = sample(2).into_bytes();
        let mut flipped = BytesMut::from(&good[..]);
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(
            RecordBatch::parse(flipped.freeze()).unwrap().validate(),
            Err(BatchError::CrcMismatch { .. })
        ));
        let mut magic = BytesMut::from(&good[..]);
        magic[MAGIC] = 1;
        assert_eq!(
            RecordBatch::parse(magic.freeze()).unwrap().validate(),
            Err(BatchError::BadMagic(1))
        );
        assert!(matches!(
            RecordBatch::parse(good.slice(..good.len() - 1)),
            Err(BatchError::LengthMismatch { .. })
        ));
        assert_eq!(
            RecordBatch::parse(good.slice(..10)),
            Err(BatchError::TooShort(10))
        );
        let mut empty = BytesMut::from(&good[..]);
        empty[RECORD_COUNT..RECORD_COUNT + 4].copy_from_slice(&0i32.to_be_bytes());
        assert!(matches!(
            RecordBatch::parse(empty.freeze()).unwrap().validate(),
            Err(BatchError::BadRecordCount { .. })
        ));
    }

    #[test]
    fn split_all_walks_record_sets() {
        let mut set = BytesMut::new();
        set.extend_from_slice(sample(1).as_bytes());
        set.extend_from_slice(sample(4).as_bytes());
        let batches = RecordBatch::split_all(set.clone().freeze()).unwrap();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[1].record_count(), 4);
        set.truncate(set.len() - 3);
        assert!(RecordBatch::split_all(set.freeze()).is_err());
    }

    #[test]
    fn record_timestamps_are_walked_without_decoding_keys_or_values() {
        let b = BatchBuilder::new(Offset(0))
            .kv(b"a", b"x", Timestamp(1_000))
            .kv(b"b", &[7u8; 300], Timestamp(900))
            .kv(b"c", b"z", Timestamp(1_500))
            .build();
        let mut seen = Vec::new();
        for_each_record_timestamp(&b.records_bytes(), 900, 3, |i, ts| seen.push((i, ts))).unwrap();
        assert_eq!(seen, vec![(0, 1_000), (1, 900), (2, 1_500)]);
        // A count that disagrees with the bytes is malformed either way.
        assert!(for_each_record_timestamp(&b.records_bytes(), 900, 2, |_, _| ()).is_err());
        assert!(for_each_record_timestamp(&b.records_bytes(), 900, 4, |_, _| ()).is_err());
        let body = b.records_bytes();
        assert!(for_each_record_timestamp(&body[..body.len() - 1], 900, 3, |_, _| ()).is_err());
    }

    #[test]
    fn set_max_timestamp_rewrites_the_header_and_the_crc() {
        let mut b = sample(3);
        let shared = b.as_bytes().clone();
        b.set_max_timestamp(Timestamp(1002));
        assert_eq!(
            b.as_bytes().as_ptr(),
            shared.as_ptr(),
            "unchanged: not copied"
        );
        b.set_max_timestamp(Timestamp(-1));
        assert_eq!(b.max_timestamp(), Timestamp(-1));
        b.validate().unwrap();
        b.set_log_append_time(Timestamp(5));
        b.set_max_timestamp(Timestamp(1002));
        assert_eq!(b.timestamp_type(), TimestampType::CreateTime);
        assert_eq!(b.max_timestamp(), Timestamp(1002));
        b.validate().unwrap();
    }

    #[test]
    fn varlong_round_trip() {
        for v in [0i64, 1, -1, 63, -64, 64, 300, i64::MAX, i64::MIN] {
            let mut b = BytesMut::new();
            put_varlong(&mut b, v);
            let mut s: &[u8] = &b;
            assert_eq!(get_varlong(&mut s), Some(v));
            assert!(s.is_empty());
        }
    }
}
