//! The message formats before record batches: magic 0 and magic 1 message sets, as
//! Produce v0–2 carries them and Fetch v0–3 clients read them.
//!
//! A message is `offset i64, size i32, crc u32, magic i8, attributes i8,
//! [timestamp i64 (magic 1)], key bytes, value bytes`; the CRC is CRC-32 (IEEE) over
//! everything from `magic` on. A compressed message (codec in attribute bits 0–2) is a
//! wrapper whose value is a compressed message set; in magic 1 the inner offsets are
//! relative (0..n-1) and the wrapper carries the absolute offset of the last inner message.
//!
//! [`to_batch`] converts a produced message set into one magic-2 batch (the
//! conversion Kafka's `LogValidator` does), keeping each message's key, value and magic-1
//! timestamp and the wrapper's codec. [`down_convert`] turns stored batches back into
//! a message set of magic 0 or 1 for a client that cannot read batches, as Kafka's
//! down-conversion did. Both are only ever run for old clients: a magic-2 batch from a
//! modern client never comes near this module.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType as WireTimestampType,
};

use rafka_core::batch::{CompressionType, TimestampType};
use rafka_core::limits::BATCH_BYTES_MAX;
use rafka_core::RecordBatch;

/// Offset and size fields in front of every message.
const LOG_OVERHEAD: usize = 12;
/// crc, magic, attributes, key length, value length.
const MESSAGE_V0_MIN: usize = 4 + 1 + 1 + 4 + 4;
/// A magic-1 message adds an 8-byte timestamp.
const MESSAGE_V1_MIN: usize = MESSAGE_V0_MIN + 8;
/// Attribute bit 3 of a magic-1 message: the timestamp is the broker's append time.
const LOG_APPEND_TIME_BIT: i8 = 0x08;

/// Why a message set was refused. The broker answers CORRUPT_MESSAGE for all but
/// [`MessageSetError::UnsupportedCompression`] (UNSUPPORTED_COMPRESSION_TYPE).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageSetError {
    /// A message or its length field is cut short.
    #[error("message set truncated: {0}")]
    Truncated(&'static str),
    /// The stored CRC does not match the bytes.
    #[error("message CRC-32 mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC in the message.
        stored: u32,
        /// CRC computed over the bytes.
        computed: u32,
    },
    /// A magic this module does not read.
    #[error("unsupported message magic {0}")]
    BadMagic(i8),
    /// zstd (magic 0/1 cannot carry it) or an undefined codec id.
    #[error("unsupported compression codec {0} in a magic 0/1 message")]
    UnsupportedCompression(u8),
    /// A compressed message inside a compressed message, or a set with no message.
    #[error("invalid message set: {0}")]
    Invalid(&'static str),
    /// Decompression or compression failed.
    #[error("codec: {0}")]
    Codec(String),
    /// The set would grow past the batch size limit once decompressed.
    #[error("message set exceeds {BATCH_BYTES_MAX} bytes once decompressed")]
    TooLarge,
}

/// One message of an old-format set, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Offset as written in the set (absolute, or relative inside a magic-1 wrapper).
    pub offset: i64,
    /// Magic 1 timestamp; `None` in magic 0.
    pub timestamp: Option<i64>,
    /// Whether the magic-1 timestamp is the broker's append time.
    pub log_append_time: bool,
    /// Key.
    pub key: Option<Bytes>,
    /// Value.
    pub value: Option<Bytes>,
}

fn crc32_ieee(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

fn get_bytes(buf: &mut Bytes) -> Result<Option<Bytes>, MessageSetError> {
    if buf.remaining() < 4 {
        return Err(MessageSetError::Truncated("bytes length"));
    }
    let len = buf.get_i32();
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    if buf.remaining() < len {
        return Err(MessageSetError::Truncated("bytes value"));
    }
    Ok(Some(buf.split_to(len)))
}

/// One message and its compression codec (0 for none).
struct Raw {
    message: Message,
    magic: i8,
    codec: u8,
}

/// Splits a message set into its messages, checking each CRC. A partial message at the
/// end is an error: a produced set is always whole.
fn parse(mut set: Bytes) -> Result<Vec<Raw>, MessageSetError> {
    let mut out = Vec::new();
    while set.has_remaining() {
        if set.remaining() < LOG_OVERHEAD {
            return Err(MessageSetError::Truncated("offset and size"));
        }
        let offset = set.get_i64();
        let size = set.get_i32();
        if size < MESSAGE_V0_MIN as i32 || size as usize > set.remaining() {
            return Err(MessageSetError::Truncated("message size"));
        }
        let mut m = set.split_to(size as usize);
        let stored = m.get_u32();
        let computed = crc32_ieee(&m);
        if stored != computed {
            return Err(MessageSetError::CrcMismatch { stored, computed });
        }
        let magic = m.get_i8();
        let attributes = m.get_i8();
        let timestamp = match magic {
            0 => None,
            1 if size as usize >= MESSAGE_V1_MIN => Some(m.get_i64()),
            1 => return Err(MessageSetError::Truncated("timestamp")),
            other => return Err(MessageSetError::BadMagic(other)),
        };
        let key = get_bytes(&mut m)?;
        let value = get_bytes(&mut m)?;
        out.push(Raw {
            message: Message {
                offset,
                timestamp,
                log_append_time: magic == 1 && attributes & LOG_APPEND_TIME_BIT != 0,
                key,
                value,
            },
            magic,
            codec: (attributes & 0x07) as u8,
        });
    }
    Ok(out)
}

fn decompress(codec: u8, data: Bytes) -> Result<Bytes, MessageSetError> {
    let mut data = data;
    let keep = |b: &mut Bytes| Ok(std::mem::take(b));
    let r = match codec {
        1 => Gzip::decompress(&mut data, keep),
        2 => Snappy::decompress(&mut data, keep),
        3 => Lz4::decompress(&mut data, keep),
        other => return Err(MessageSetError::UnsupportedCompression(other)),
    };
    let out = r.map_err(|e| MessageSetError::Codec(e.to_string()))?;
    if out.len() > BATCH_BYTES_MAX {
        return Err(MessageSetError::TooLarge);
    }
    Ok(out)
}

fn compress(codec: u8, data: &[u8]) -> Result<Bytes, MessageSetError> {
    let mut out = BytesMut::new();
    let fill = |b: &mut BytesMut| {
        b.put_slice(data);
        Ok(())
    };
    let r = match codec {
        1 => Gzip::compress(&mut out, fill),
        2 => Snappy::compress(&mut out, fill),
        3 => Lz4::compress(&mut out, fill),
        other => return Err(MessageSetError::UnsupportedCompression(other)),
    };
    r.map_err(|e| MessageSetError::Codec(e.to_string()))?;
    Ok(out.freeze())
}

/// Decodes a message set into its messages, unwrapping compressed wrappers (inner
/// messages get the wrapper's append time when it carries one). Returns the messages and
/// the codec of the last compressed wrapper (0 when none was compressed).
pub fn decode(set: Bytes) -> Result<(Vec<Message>, u8), MessageSetError> {
    let mut out = Vec::new();
    let mut codec_seen = 0;
    for raw in parse(set)? {
        if raw.codec == 0 {
            out.push(raw.message);
            continue;
        }
        if raw.codec > 3 {
            return Err(MessageSetError::UnsupportedCompression(raw.codec));
        }
        codec_seen = raw.codec;
        let inner = decompress(raw.codec, raw.message.value.unwrap_or_default())?;
        for inner in parse(inner)? {
            if inner.codec != 0 {
                return Err(MessageSetError::Invalid("nested compressed message"));
            }
            if inner.magic != raw.magic {
                return Err(MessageSetError::Invalid("inner magic differs from wrapper"));
            }
            let mut m = inner.message;
            if raw.message.log_append_time {
                m.timestamp = raw.message.timestamp;
                m.log_append_time = true;
            }
            out.push(m);
        }
    }
    if out.is_empty() {
        return Err(MessageSetError::Invalid("no message"));
    }
    Ok((out, codec_seen))
}

/// Whether `records` starts like a magic 0/1 message set rather than a magic-2 batch
/// (the magic byte sits at the same position, 16, in both).
pub fn is_message_set(records: &[u8]) -> bool {
    records.len() > 16 && matches!(records[16], 0 | 1)
}

fn wire_compression(codec: u8) -> Compression {
    match codec {
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        _ => Compression::None,
    }
}

/// Converts a produced magic 0/1 message set into one magic-2 batch (base offset 0,
/// offsets in set order, no producer id), compressed with the set's codec as Kafka does.
/// Magic-0 messages carry no timestamp (-1); magic-1 timestamps are kept.
pub fn to_batch(set: Bytes) -> Result<RecordBatch, MessageSetError> {
    let (messages, codec) = decode(set)?;
    let records: Vec<Record> = messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: WireTimestampType::Creation,
            offset: i as i64,
            // The encoder keeps records in one batch while offset - sequence is constant,
            // and writes the first record's sequence as the base sequence: -1, "none".
            sequence: (i as i32).wrapping_sub(1),
            timestamp: m.timestamp.unwrap_or(-1),
            key: m.key,
            value: m.value,
            headers: IndexMap::new(),
        })
        .collect();
    let mut out = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: wire_compression(codec),
    };
    RecordBatchEncoder::encode(&mut out, &records, &options)
        .map_err(|e| MessageSetError::Codec(e.to_string()))?;
    if out.len() > BATCH_BYTES_MAX {
        return Err(MessageSetError::TooLarge);
    }
    RecordBatch::parse(out.freeze()).map_err(|_| MessageSetError::Invalid("encoded batch"))
}

/// Appends one message to `out`.
fn put_message(out: &mut BytesMut, magic: i8, attributes: i8, offset: i64, m: &Message) {
    let key_len = m.key.as_ref().map_or(0, |k| k.len());
    let value_len = m.value.as_ref().map_or(0, |v| v.len());
    let size = if magic == 0 {
        MESSAGE_V0_MIN
    } else {
        MESSAGE_V1_MIN
    } + key_len
        + value_len;
    out.put_i64(offset);
    out.put_i32(size as i32);
    let crc_at = out.len();
    out.put_u32(0);
    out.put_i8(magic);
    out.put_i8(attributes);
    if magic == 1 {
        out.put_i64(m.timestamp.unwrap_or(-1));
    }
    for field in [&m.key, &m.value] {
        match field {
            Some(b) => {
                out.put_i32(b.len() as i32);
                out.put_slice(b);
            }
            None => out.put_i32(-1),
        }
    }
    let crc = crc32_ieee(&out[crc_at + 4..]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Encodes messages as a message set of `magic` (0 or 1). With a codec (1 gzip,
/// 2 snappy, 3 lz4) the messages go into one wrapper: inner offsets relative to the
/// first in magic 1, absolute in magic 0; the wrapper carries the last absolute offset and,
/// in magic 1, the largest timestamp. `offset` of each message is its absolute offset.
pub fn encode(messages: &[Message], magic: i8, codec: u8) -> Result<Bytes, MessageSetError> {
    if !(0..=1).contains(&magic) {
        return Err(MessageSetError::BadMagic(magic));
    }
    let mut out = BytesMut::new();
    let append_time_bit = |m: &Message| {
        if magic == 1 && m.log_append_time {
            LOG_APPEND_TIME_BIT
        } else {
            0
        }
    };
    if codec == 0 {
        for m in messages {
            put_message(&mut out, magic, append_time_bit(m), m.offset, m);
        }
        return Ok(out.freeze());
    }
    let (Some(first), Some(last)) = (messages.first(), messages.last()) else {
        return Ok(out.freeze());
    };
    let mut inner = BytesMut::new();
    for m in messages {
        let offset = if magic == 1 {
            m.offset - first.offset
        } else {
            m.offset
        };
        put_message(&mut inner, magic, append_time_bit(m), offset, m);
    }
    let wrapper = Message {
        offset: last.offset,
        timestamp: messages.iter().filter_map(|m| m.timestamp).max(),
        log_append_time: last.log_append_time,
        key: None,
        value: Some(compress(codec, &inner)?),
    };
    put_message(
        &mut out,
        magic,
        codec as i8 | append_time_bit(&wrapper),
        wrapper.offset,
        &wrapper,
    );
    Ok(out.freeze())
}

/// Where the first zstd-compressed batch in `records` (whole stored batches) starts, if
/// there is one; a client older than Fetch v10 cannot read it. Reads headers only.
pub fn first_zstd_batch(records: &Bytes) -> Option<usize> {
    let batches = RecordBatch::split_all(records.clone()).ok()?;
    let mut at = 0;
    for b in batches {
        if b.compression() == CompressionType::Zstd {
            return Some(at);
        }
        at += b.size_bytes();
    }
    None
}

/// Converts stored magic-2 batches into a message set of `magic` (0 or 1) for a client
/// that cannot read batches. Each batch becomes its messages, compressed into one wrapper
/// with the batch's codec when it has one (lz4 in magic 0 is written uncompressed: magic-0
/// lz4 framing differed from the standard one, KAFKA-3160). Control records are left out
/// and headers dropped, as Kafka did; a log-append-time batch gives every message its
/// append time. zstd batches must be refused before this ([`first_zstd_batch`]).
pub fn down_convert(records: &Bytes, magic: i8) -> Result<Bytes, MessageSetError> {
    let batches = RecordBatch::split_all(records.clone())
        .map_err(|_| MessageSetError::Invalid("stored batches"))?;
    let mut out = BytesMut::with_capacity(records.len());
    for b in batches {
        if b.is_control() {
            continue;
        }
        let codec = match b.compression() {
            CompressionType::None => 0,
            CompressionType::Gzip => 1,
            CompressionType::Snappy => 2,
            CompressionType::Lz4 if magic == 1 => 3,
            CompressionType::Lz4 => 0,
            CompressionType::Zstd => return Err(MessageSetError::UnsupportedCompression(4)),
            CompressionType::Unknown(c) => return Err(MessageSetError::UnsupportedCompression(c)),
        };
        let append_time = b.timestamp_type() == TimestampType::LogAppendTime;
        let max_timestamp = b.max_timestamp().0;
        let mut bytes = b.as_bytes().clone();
        let set = RecordBatchDecoder::decode(&mut bytes)
            .map_err(|e| MessageSetError::Codec(e.to_string()))?;
        let messages: Vec<Message> = set
            .records
            .into_iter()
            .filter(|r| !r.control)
            .map(|r| Message {
                offset: r.offset,
                timestamp: (magic == 1).then_some(if append_time {
                    max_timestamp
                } else {
                    r.timestamp
                }),
                log_append_time: append_time,
                key: r.key,
                value: r.value,
            })
            .collect();
        out.put_slice(&encode(&messages, magic, codec)?);
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn message(offset: i64, ts: Option<i64>, key: Option<&[u8]>, value: Option<&[u8]>) -> Message {
        Message {
            offset,
            timestamp: ts,
            log_append_time: false,
            key: key.map(Bytes::copy_from_slice),
            value: value.map(Bytes::copy_from_slice),
        }
    }

    /// Decodes a batch built by `to_batch` back into (offset, timestamp, key, value).
    fn batch_records(batch: &RecordBatch) -> Vec<(i64, i64, Option<Bytes>, Option<Bytes>)> {
        let mut bytes = batch.as_bytes().clone();
        RecordBatchDecoder::decode(&mut bytes)
            .unwrap()
            .records
            .into_iter()
            .map(|r| (r.offset, r.timestamp, r.key, r.value))
            .collect()
    }

    fn check(messages: &[Message], magic: i8, codec: u8) {
        let set = encode(messages, magic, codec).unwrap();
        assert!(is_message_set(&set));
        let batch = to_batch(set).unwrap();
        batch.validate().unwrap();
        assert_eq!(batch.record_count() as usize, messages.len());
        assert_eq!(batch.producer_id(), -1);
        assert_eq!(batch.base_sequence(), -1);
        let expected_codec = match codec {
            1 => CompressionType::Gzip,
            2 => CompressionType::Snappy,
            3 => CompressionType::Lz4,
            _ => CompressionType::None,
        };
        assert_eq!(batch.compression(), expected_codec);
        let got = batch_records(&batch);
        for (i, (m, r)) in messages.iter().zip(&got).enumerate() {
            assert_eq!(r.0, i as i64);
            let ts = if magic == 1 {
                m.timestamp.unwrap_or(-1)
            } else {
                -1
            };
            assert_eq!(r.1, ts);
            assert_eq!((&r.2, &r.3), (&m.key, &m.value));
        }
        // And back: the batch at offset 100 down-converted reads as the same messages.
        let mut stored = BytesMut::from(batch.as_bytes().as_ref());
        stored[..8].copy_from_slice(&100i64.to_be_bytes());
        let down = down_convert(&stored.freeze(), magic).unwrap();
        let (back, back_codec) = decode(down).unwrap();
        assert_eq!(back.len(), messages.len());
        if codec != 0 && !(codec == 3 && magic == 0) {
            assert_eq!(back_codec, codec);
        }
        for (i, (m, b)) in messages.iter().zip(&back).enumerate() {
            let expected = if magic == 1 && codec != 0 {
                i as i64 // relative inside a magic-1 wrapper
            } else {
                100 + i as i64
            };
            assert_eq!(b.offset, expected);
            assert_eq!((&b.key, &b.value), (&m.key, &m.value));
            let ts = (magic == 1).then(|| m.timestamp.unwrap_or(-1));
            assert_eq!(b.timestamp, ts);
        }
    }

    #[test]
    fn round_trips_every_magic_and_codec() {
        let messages = vec![
            message(0, Some(1_700_000_000_000), Some(b"k0"), Some(b"v0")),
            message(1, Some(1_700_000_000_005), None, Some(b"v1")),
            message(2, Some(1_700_000_000_001), Some(b"k2"), None),
        ];
        for magic in [0, 1] {
            for codec in 0..=3 {
                check(&messages, magic, codec);
            }
        }
    }

    #[test]
    fn refuses_bad_crc_zstd_nesting_and_truncation() {
        let set = encode(&[message(0, None, Some(b"k"), Some(b"v"))], 0, 0).unwrap();
        let mut bad = BytesMut::from(&set[..]);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            to_batch(bad.freeze()),
            Err(MessageSetError::CrcMismatch { .. })
        ));
        assert!(matches!(
            to_batch(set.slice(..set.len() - 1)),
            Err(MessageSetError::Truncated(_))
        ));
        // A zstd wrapper (codec 4) cannot exist in magic 0/1.
        let mut zstd = BytesMut::new();
        put_message(&mut zstd, 1, 4, 0, &message(0, Some(1), None, Some(b"x")));
        assert_eq!(
            to_batch(zstd.freeze()).unwrap_err(),
            MessageSetError::UnsupportedCompression(4)
        );
        // A compressed wrapper inside a compressed wrapper.
        let inner = encode(&[message(0, Some(1), None, Some(b"x"))], 1, 1).unwrap();
        let mut nested = BytesMut::new();
        let wrapper = message(0, Some(1), None, Some(&compress(1, &inner).unwrap()));
        put_message(&mut nested, 1, 1, 0, &wrapper);
        assert_eq!(
            to_batch(nested.freeze()).unwrap_err(),
            MessageSetError::Invalid("nested compressed message")
        );
        assert!(to_batch(Bytes::new()).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Every well-formed message set converts, whatever its contents.
        #[test]
        fn accepts_every_good_message_set(
            entries in proptest::collection::vec(
                (proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
                 proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
                 0i64..i64::MAX),
                1..20),
            magic in 0i8..=1,
            codec in 0u8..=3,
        ) {
            let messages: Vec<Message> = entries
                .iter()
                .enumerate()
                .map(|(i, (k, v, ts))| message(i as i64, Some(*ts), k.as_deref(), v.as_deref()))
                .collect();
            check(&messages, magic, codec);
        }

        /// Garbage is refused or converted, never a panic.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = to_batch(Bytes::from(bytes.clone()));
            let _ = decode(Bytes::from(bytes));
        }
    }
}
