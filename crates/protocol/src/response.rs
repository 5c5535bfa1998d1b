//! Encoded responses as chunks, so that fetched records go to the socket without being
//! copied into the response first.
//!
//! A fetch response is mostly record batches read from storage; encoding it with the
//! generic encoder copies every batch into one buffer (12% of the broker's time on a
//! steady consumer, more with the buffer's regrowth). [`encode_response_chunks`] encodes
//! Fetch by hand instead: the small fields go into one buffer and each large `records`
//! value is its own chunk, sharing the storage's bytes. Every other response, and a fetch
//! response carrying anything the hand encoder does not write (tagged fields), goes
//! through the generic encoder as one chunk. The tests hold both encoders to the same bytes.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;

use crate::connection::{encode_response, ProtocolError, ResponseMeta};

/// Records of at least this many bytes travel as their own chunk; smaller ones are copied
/// (a copy of a few KiB costs less than another element in the write's iovec).
const OWN_CHUNK_BYTES: usize = 16 * 1024;

/// A response ready to write: its chunks back to back are the size prefix, the header and
/// the body. Implements [`Buf`], so `write_all_buf` sends it with vectored writes.
#[derive(Debug, Clone, Default)]
pub struct EncodedResponse {
    chunks: VecDeque<Bytes>,
    remaining: usize,
}

impl EncodedResponse {
    fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.remaining += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// Bytes not yet written.
    pub fn len(&self) -> usize {
        self.remaining
    }

    /// Whether every byte has been written.
    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }

    /// The chunks, in order.
    pub fn chunks(&self) -> impl Iterator<Item = &Bytes> {
        self.chunks.iter()
    }

    /// The bytes in one buffer (copies when there is more than one chunk).
    pub fn into_bytes(mut self) -> Bytes {
        match self.chunks.len() {
            0 => Bytes::new(),
            1 => self.chunks.pop_front().expect("one chunk"),
            _ => self.copy_to_bytes(self.remaining),
        }
    }
}

impl From<Bytes> for EncodedResponse {
    fn from(bytes: Bytes) -> Self {
        let mut r = EncodedResponse::default();
        r.push(bytes);
        r
    }
}

impl Buf for EncodedResponse {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.chunks.front().map(|c| &c[..]).unwrap_or(&[])
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.remaining, "advance past the end of a response");
        self.remaining -= cnt;
        while cnt > 0 {
            let front = self.chunks.front_mut().expect("bytes remain");
            if cnt < front.len() {
                front.advance(cnt);
                return;
            }
            cnt -= front.len();
            self.chunks.pop_front();
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, chunk) in dst.iter_mut().zip(&self.chunks) {
            *slot = IoSlice::new(chunk);
            n += 1;
        }
        n
    }
}

/// Encodes a response with its header and size prefix, as chunks (see the module docs).
pub fn encode_response_chunks(
    meta: ResponseMeta,
    body: &ResponseKind,
) -> Result<EncodedResponse, ProtocolError> {
    if let ResponseKind::Fetch(fetch) = body {
        if meta.api_key == ApiKey::Fetch && hand_encodable(fetch, meta.api_version) {
            return Ok(encode_fetch(meta, fetch));
        }
    }
    encode_response(meta, body).map(EncodedResponse::from)
}

/// Whether the hand encoder writes every field this response sets at this version.
fn hand_encodable(resp: &FetchResponse, version: i16) -> bool {
    let partition_ok = |p: &PartitionData| {
        p.unknown_tagged_fields.is_empty()
            && p.diverging_epoch == Default::default()
            && p.current_leader == Default::default()
            && p.snapshot_id == Default::default()
            && (version >= 11 || p.preferred_read_replica == -1)
            && p.aborted_transactions
                .iter()
                .flatten()
                .all(|a| a.unknown_tagged_fields.is_empty())
    };
    let topic_ok = |t: &FetchableTopicResponse| {
        t.unknown_tagged_fields.is_empty() && t.partitions.iter().all(partition_ok)
    };
    (4..=16).contains(&version)
        && resp.unknown_tagged_fields.is_empty()
        && resp.node_endpoints.is_empty()
        && (version >= 7 || resp.session_id == 0)
        && resp.responses.iter().all(topic_ok)
}

/// The small fields of a response, with records that are large enough split off.
struct Writer {
    out: EncodedResponse,
    buf: BytesMut,
    flexible: bool,
}

impl Writer {
    fn len(&mut self, n: usize) {
        if self.flexible {
            put_uvarint(&mut self.buf, n as u64 + 1);
        } else {
            self.buf.put_i32(n as i32);
        }
    }

    fn string(&mut self, s: &str) {
        if self.flexible {
            put_uvarint(&mut self.buf, s.len() as u64 + 1);
        } else {
            self.buf.put_i16(s.len() as i16);
        }
        self.buf.put_slice(s.as_bytes());
    }

    fn no_tagged_fields(&mut self) {
        if self.flexible {
            self.buf.put_u8(0);
        }
    }

    fn records(&mut self, records: &Option<Bytes>) {
        let Some(records) = records else {
            if self.flexible {
                self.buf.put_u8(0);
            } else {
                self.buf.put_i32(-1);
            }
            return;
        };
        self.len(records.len());
        if records.len() < OWN_CHUNK_BYTES {
            self.buf.put_slice(records);
        } else {
            let small = self.buf.split().freeze();
            self.out.push(small);
            self.out.push(records.clone());
        }
    }
}

fn put_uvarint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// Fetch v4–16 by hand: the fields `hand_encodable` allows, in the order of the schema.
fn encode_fetch(meta: ResponseMeta, resp: &FetchResponse) -> EncodedResponse {
    let version = meta.api_version;
    let mut w = Writer {
        out: EncodedResponse::default(),
        buf: BytesMut::with_capacity(256),
        flexible: version >= 12,
    };
    w.buf.put_i32(resp.throttle_time_ms);
    if version >= 7 {
        w.buf.put_i16(resp.error_code);
        w.buf.put_i32(resp.session_id);
    }
    w.len(resp.responses.len());
    for topic in &resp.responses {
        if version <= 12 {
            w.string(&topic.topic);
        }
        if version >= 13 {
            w.buf.put_slice(topic.topic_id.as_bytes());
        }
        w.len(topic.partitions.len());
        for p in &topic.partitions {
            w.buf.put_i32(p.partition_index);
            w.buf.put_i16(p.error_code);
            w.buf.put_i64(p.high_watermark);
            w.buf.put_i64(p.last_stable_offset);
            if version >= 5 {
                w.buf.put_i64(p.log_start_offset);
            }
            match &p.aborted_transactions {
                None if w.flexible => w.buf.put_u8(0),
                None => w.buf.put_i32(-1),
                Some(aborted) => {
                    w.len(aborted.len());
                    for a in aborted {
                        w.buf.put_i64(a.producer_id.0);
                        w.buf.put_i64(a.first_offset);
                        w.no_tagged_fields();
                    }
                }
            }
            if version >= 11 {
                w.buf.put_i32(p.preferred_read_replica.0);
            }
            w.records(&p.records);
            w.no_tagged_fields();
        }
        w.no_tagged_fields();
    }
    w.no_tagged_fields();
    let rest = w.buf.split().freeze();
    w.out.push(rest);

    // Size prefix and header, now that the body's size is known.
    let mut head = BytesMut::with_capacity(16);
    head.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(meta.correlation_id)
        .encode(&mut head, meta.api_key.response_header_version(version))
        .expect("a response header always encodes");
    let size = head.len() - 4 + w.out.len();
    head[..4].copy_from_slice(&(size as i32).to_be_bytes());
    let mut out = EncodedResponse::from(head.freeze());
    for chunk in w.out.chunks {
        out.push(chunk);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{AbortedTransaction, EpochEndOffset};
    use kafka_protocol::messages::{BrokerId, ProducerId, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use proptest::prelude::*;

    fn meta(version: i16) -> ResponseMeta {
        ResponseMeta {
            api_key: ApiKey::Fetch,
            api_version: version,
            correlation_id: 0x0102_0304,
        }
    }

    fn partition(index: i32, records: Option<Vec<u8>>, aborted: Option<u8>) -> PartitionData {
        PartitionData::default()
            .with_partition_index(index)
            .with_error_code(if index % 3 == 0 { 0 } else { 6 })
            .with_high_watermark(1 << 40)
            .with_last_stable_offset(-1)
            .with_log_start_offset(index as i64 * 7)
            .with_aborted_transactions(aborted.map(|n| {
                (0..n)
                    .map(|i| {
                        AbortedTransaction::default()
                            .with_producer_id(ProducerId(i as i64 + 1000))
                            .with_first_offset(i as i64 * 3)
                    })
                    .collect()
            }))
            .with_records(records.map(Bytes::from))
    }

    fn response(version: i16, topics: Vec<(String, Vec<PartitionData>)>) -> FetchResponse {
        FetchResponse::default()
            .with_throttle_time_ms(17)
            .with_error_code(if version >= 7 { 3 } else { 0 })
            .with_session_id(if version >= 7 { 99 } else { 0 })
            .with_responses(
                topics
                    .into_iter()
                    .enumerate()
                    .map(|(i, (name, parts))| {
                        let mut t = FetchableTopicResponse::default()
                            .with_partitions(parts)
                            .with_topic_id(uuid::Uuid::from_u128(0xabcdef + i as u128));
                        if version <= 12 {
                            t.topic = TopicName(StrBytes::from_string(name));
                        }
                        t
                    })
                    .collect(),
            )
    }

    fn records_strategy() -> impl Strategy<Value = Option<Vec<u8>>> {
        prop_oneof![
            Just(None),
            Just(Some(Vec::new())),
            (1usize..200).prop_map(|n| Some(vec![0x5a; n])),
            (OWN_CHUNK_BYTES - 1..OWN_CHUNK_BYTES + 200).prop_map(|n| Some(vec![0xa5; n])),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn hand_encoding_equals_the_generic_one(
            version in 4i16..=16,
            topics in prop::collection::vec(
                ("[a-z\u{e9}.]{0,20}", prop::collection::vec(
                    (0i32..10, records_strategy(), prop::option::of(0u8..3)), 0..4)),
                0..4),
        ) {
            let topics = topics
                .into_iter()
                .map(|(name, parts)| {
                    let parts = parts
                        .into_iter()
                        .map(|(i, r, a)| {
                            let mut p = partition(i, r, a);
                            if version >= 11 {
                                p.preferred_read_replica = BrokerId(i % 2 - 1);
                            }
                            p
                        })
                        .collect();
                    (name, parts)
                })
                .collect();
            let body = ResponseKind::Fetch(response(version, topics));
            let chunks = encode_response_chunks(meta(version), &body).unwrap();
            let len = chunks.len();
            let generic = encode_response(meta(version), &body).unwrap();
            let hand = chunks.into_bytes();
            prop_assert_eq!(len, hand.len());
            prop_assert_eq!(&hand[..], &generic[..]);
        }
    }

    #[test]
    fn large_records_are_shared_not_copied() {
        let records = Bytes::from(vec![1u8; 1 << 20]);
        let body = response(
            12,
            vec![(
                "t".to_string(),
                vec![PartitionData::default().with_records(Some(records.clone()))],
            )],
        );
        let out = encode_response_chunks(meta(12), &ResponseKind::Fetch(body)).unwrap();
        assert!(out
            .chunks()
            .any(|c| c.as_ptr() == records.as_ptr() && c.len() == records.len()));
        // 64 bytes of size prefix, header and fields around the records.
        assert_eq!(out.len(), (1 << 20) + 64);
    }

    #[test]
    fn tagged_fields_take_the_generic_encoder() {
        let mut p = partition(0, Some(vec![9; OWN_CHUNK_BYTES * 2]), None);
        p.diverging_epoch = EpochEndOffset::default().with_epoch(3).with_end_offset(10);
        let body = ResponseKind::Fetch(response(12, vec![("t".into(), vec![p])]));
        let out = encode_response_chunks(meta(12), &body).unwrap();
        assert_eq!(out.chunks().count(), 1);
        assert_eq!(out.into_bytes(), encode_response(meta(12), &body).unwrap());
    }

    #[test]
    fn buf_walks_the_chunks() {
        let mut r = EncodedResponse::from(Bytes::from_static(b"ab"));
        r.push(Bytes::from_static(b"cde"));
        r.push(Bytes::new());
        r.push(Bytes::from_static(b"f"));
        assert_eq!(r.remaining(), 6);
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(r.chunks_vectored(&mut slices), 3);
        r.advance(3);
        assert_eq!(r.chunk(), b"de");
        r.advance(2);
        assert_eq!(r.chunk(), b"f");
        assert_eq!(r.copy_to_bytes(1), Bytes::from_static(b"f"));
        assert!(r.is_empty());
    }
}
