//! The codecs the log cleaner hands rafka-core's compaction ([`rafka_core::BatchCodec`]), so
//! compressed batches of a compacted topic are cleaned as Kafka's cleaner does them:
//! decompressed, filtered, compressed again with the batch's own codec.
//!
//! Decompression reads through the codecs' streaming decoders and stops one byte past the
//! bound rafka-core gives (`limits::COMPACTION_DECOMPRESSED_BYTES_MAX`), so a zip bomb
//! costs at most about twice the bound (the growing buffer), never more; snappy's xerial
//! blocks declare their sizes, checked before anything is allocated. Compression uses the
//! same kafka-protocol encoders as the produce path's recompression (`normalize.rs`), at
//! their default levels.

use std::io::Read;

use bytes::{BufMut, BytesMut};
use kafka_protocol::compression::{self as codec, Compressor};
use rafka_core::{BatchCodec, CodecError, CompressionType, Offset, TopicPartition};

/// The broker's codecs for one partition's compaction; a batch left whole is logged with
/// the partition's name.
///
/// Thread-safety: stateless but for the name; used from the cleaner's thread.
#[derive(Debug)]
pub(crate) struct CleanerCodec {
    partition: TopicPartition,
}

impl CleanerCodec {
    /// The codecs for a compaction of `partition`.
    pub(crate) fn for_partition(partition: TopicPartition) -> CleanerCodec {
        CleanerCodec { partition }
    }
}

fn codec_error(what: &str, e: impl std::fmt::Display) -> CodecError {
    CodecError(format!("{what}: {e}"))
}

/// Everything `r` yields, or an error once it would exceed `max_bytes`.
fn read_bounded(r: impl Read, max_bytes: usize, what: &str) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    r.take(max_bytes as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| codec_error(what, e))?;
    if out.len() > max_bytes {
        return Err(CodecError(format!(
            "{what}: decompresses to more than {max_bytes} bytes"
        )));
    }
    Ok(out)
}

/// The xerial framing Kafka's snappy uses: this 8-byte magic, two 4-byte versions, then
/// blocks of a 4-byte big-endian length and a raw snappy block. Without the magic, the
/// data is one raw snappy block (as some old clients write).
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_BYTES: usize = 16;

fn snappy_decompress(data: &[u8], max_bytes: usize) -> Result<Vec<u8>, CodecError> {
    let raw = |block: &[u8], out: &mut Vec<u8>| -> Result<(), CodecError> {
        let n = snap::raw::decompress_len(block).map_err(|e| codec_error("snappy", e))?;
        if out.len() + n > max_bytes {
            return Err(CodecError(format!(
                "snappy: decompresses to more than {max_bytes} bytes"
            )));
        }
        let at = out.len();
        out.resize(at + n, 0);
        snap::raw::Decoder::new()
            .decompress(block, &mut out[at..])
            .map_err(|e| codec_error("snappy", e))?;
        Ok(())
    };
    let mut out = Vec::new();
    if !data.starts_with(XERIAL_MAGIC) {
        raw(data, &mut out)?;
        return Ok(out);
    }
    let mut rest = data
        .get(XERIAL_HEADER_BYTES..)
        .ok_or_else(|| CodecError("snappy: short xerial header".into()))?;
    while !rest.is_empty() {
        let (len, after) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| CodecError("snappy: short block length".into()))?;
        let len = u32::from_be_bytes(*len) as usize;
        if len > after.len() {
            return Err(CodecError("snappy: block runs past the data".into()));
        }
        let (block, after) = after.split_at(len);
        raw(block, &mut out)?;
        rest = after;
    }
    Ok(out)
}

/// `data` decompressed with `c`, or an error once the result would pass `max_bytes`: what
/// the cleaner and the produce path's checks (`normalize.rs`) decompress with.
pub(crate) fn decompress_bounded(
    c: CompressionType,
    data: &[u8],
    max_bytes: usize,
) -> Result<Vec<u8>, CodecError> {
    match c {
        CompressionType::None => read_bounded(data, max_bytes, "none"),
        CompressionType::Gzip => {
            read_bounded(flate2::read::MultiGzDecoder::new(data), max_bytes, "gzip")
        }
        CompressionType::Snappy => snappy_decompress(data, max_bytes),
        CompressionType::Lz4 => {
            let d = lz4::Decoder::new(data).map_err(|e| codec_error("lz4", e))?;
            read_bounded(d, max_bytes, "lz4")
        }
        CompressionType::Zstd => {
            // The decoder's window is bounded by zstd's default limit (2^27 bytes).
            let d = zstd::stream::read::Decoder::with_buffer(data)
                .map_err(|e| codec_error("zstd", e))?;
            read_bounded(d, max_bytes, "zstd")
        }
        CompressionType::Unknown(n) => Err(CodecError(format!("unknown codec {n}"))),
    }
}

impl BatchCodec for CleanerCodec {
    fn decompress(
        &self,
        c: CompressionType,
        data: &[u8],
        max_bytes: usize,
    ) -> Result<Vec<u8>, CodecError> {
        decompress_bounded(c, data, max_bytes)
    }

    fn compress(&self, c: CompressionType, data: &[u8]) -> Result<Vec<u8>, CodecError> {
        let mut out = BytesMut::with_capacity(data.len() / 2 + 64);
        let fill = |b: &mut BytesMut| {
            b.put_slice(data);
            Ok(())
        };
        let done = match c {
            CompressionType::None => {
                out.put_slice(data);
                Ok(())
            }
            CompressionType::Gzip => codec::Gzip::compress(&mut out, fill),
            CompressionType::Snappy => codec::Snappy::compress(&mut out, fill),
            CompressionType::Lz4 => codec::Lz4::compress(&mut out, fill),
            CompressionType::Zstd => codec::Zstd::compress(&mut out, fill),
            CompressionType::Unknown(n) => return Err(CodecError(format!("unknown codec {n}"))),
        };
        done.map_err(|e| codec_error("compressing", e))?;
        Ok(out.to_vec())
    }

    fn left_whole(&self, base_offset: Offset, error: &CodecError) {
        tracing::warn!(partition = %self.partition, batch = %base_offset, %error, "compressed batch left whole by the cleaner");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rafka_core::batch::{BatchBuilder, SimpleRecord};
    use rafka_core::compact::{decompress_for_compaction, recompress_for_compaction};
    use rafka_core::{CompactionCodec, Timestamp};
    use std::sync::Arc;

    const ALL: [CompressionType; 4] = [
        CompressionType::Gzip,
        CompressionType::Snappy,
        CompressionType::Lz4,
        CompressionType::Zstd,
    ];

    fn check() -> (CleanerCodec, CompactionCodec) {
        let tp = TopicPartition::new(rafka_core::TopicName::new("t").unwrap(), 0);
        (
            CleanerCodec::for_partition(tp.clone()),
            CompactionCodec::new(Arc::new(CleanerCodec::for_partition(tp))),
        )
    }

    /// Every codec round-trips a batch's records, and kafka-protocol's decoder (what the
    /// produce path and clients use) reads what it wrote.
    #[test]
    fn every_codec_round_trips_a_batch() {
        let (_, codec) = check();
        let mut b = BatchBuilder::new(Offset(40)).producer(3, 1, 9);
        for i in 0..50 {
            b = b.record(SimpleRecord {
                key: Some(Bytes::from(format!("k{}", i % 7))),
                value: Some(Bytes::from(format!("value {i} {}", "x".repeat(i)))),
                headers: vec![],
                timestamp: Timestamp(1_000 + i as i64),
            });
        }
        let plain = b.build();
        for c in ALL {
            let packed = recompress_for_compaction(&plain, c, &codec).unwrap();
            packed.validate().unwrap();
            assert_eq!(packed.compression(), c);
            assert!(packed.size_bytes() < plain.size_bytes(), "{c:?} compresses");
            let back = decompress_for_compaction(&packed, &codec).unwrap();
            assert_eq!(
                back.decode_uncompressed_with_offsets(),
                plain.decode_uncompressed_with_offsets(),
                "{c:?}"
            );
            let mut buf = packed.as_bytes().clone();
            let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).unwrap();
            assert_eq!(set.records.len(), 50, "{c:?}");
            assert_eq!(set.records[49].offset, 89);
        }
    }

    /// A zip bomb stops at the bound in every codec; garbage is an error, not a panic; a
    /// compressed batch cut short is left whole.
    #[test]
    fn decompression_is_bounded_and_garbage_is_an_error() {
        let (codec, _) = check();
        let zeros = vec![0u8; 1 << 20];
        for c in ALL {
            let packed = codec.compress(c, &zeros).unwrap();
            assert!(packed.len() < 64 * 1024, "{c:?}: {}", packed.len());
            assert_eq!(codec.decompress(c, &packed, 1 << 20).unwrap(), zeros);
            let err = codec.decompress(c, &packed, (1 << 20) - 1).unwrap_err();
            assert!(err.0.contains("more than"), "{c:?}: {err}");
            assert!(codec
                .decompress(c, b"\x82SNAPPY\x00garbage", 1 << 20)
                .is_err());
        }
        let (_, compaction) = check();
        let b = BatchBuilder::new(Offset(0))
            .kv(b"k", &[7u8; 4000], Timestamp(1))
            .kv(b"k", &[8u8; 4000], Timestamp(1))
            .build();
        for c in ALL {
            let packed = recompress_for_compaction(&b, c, &compaction).unwrap();
            let body = &packed.as_bytes()[rafka_core::batch::HEADER_BYTES..];
            let mut short = packed.as_bytes()[..rafka_core::batch::HEADER_BYTES].to_vec();
            short.extend_from_slice(&body[..body.len() / 2]);
            let len = (short.len() - 12) as i32;
            short[8..12].copy_from_slice(&len.to_be_bytes());
            let short = rafka_core::RecordBatch::parse(Bytes::from(short)).unwrap();
            assert!(
                decompress_for_compaction(&short, &compaction).is_err(),
                "{c:?}"
            );
            // A cut stream is an error, except lz4's decoder, which ends quietly where the
            // data does: then less comes out, and rafka-core's record walk of the twin
            // refuses it (the batch is left whole).
            match codec.decompress(c, &body[..body.len() / 2], 1 << 20) {
                Err(_) => {}
                Ok(part) => assert!(c == CompressionType::Lz4 && part.len() < b.size_bytes()),
            }
        }
    }
}
