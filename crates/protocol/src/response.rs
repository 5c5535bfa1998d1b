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
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseHeader, ResponseKind, TopicName};
use kafka_protocol::protocol::Encodable;
use rafka_core::limits::{BATCH_BYTES_MAX, FETCH_RESPONSE_BYTES_MAX};
use rafka_core::FileRegion;

use crate::connection::{encode_response, ProtocolError, ResponseMeta};

/// Records of at least this many bytes travel as their own chunk; smaller ones are copied
/// (a copy of a few KiB costs less than another element in the write's iovec).
const OWN_CHUNK_BYTES: usize = 16 * 1024;

/// One piece of an encoded response: bytes in memory, or whole record batches still in a
/// file (sent with `sendfile` by the writer that owns the socket).
#[derive(Debug, Clone)]
enum Part {
    Bytes(Bytes),
    File(FileRegion),
}

impl Part {
    fn len(&self) -> usize {
        match self {
            Part::Bytes(b) => b.len(),
            Part::File(f) => f.len,
        }
    }
}

/// A response ready to write: its parts back to back are the size prefix, the header and
/// the body. Implements [`Buf`] over the bytes up to the first file region, so
/// `write_all_buf` sends those with vectored writes; [`take_file`](Self::take_file) then
/// hands out the region, and the bytes after it are the next [`Buf`]. A response without
/// regions is one [`Buf`] of all its bytes.
#[derive(Debug, Clone, Default)]
pub struct EncodedResponse {
    parts: VecDeque<Part>,
    /// Bytes not yet written, regions included.
    total: usize,
    /// Bytes not yet written before the first region (or the end): what [`Buf`] sees.
    ahead: usize,
}

impl EncodedResponse {
    fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.total += chunk.len();
            if !self.parts.iter().any(|p| matches!(p, Part::File(_))) {
                self.ahead += chunk.len();
            }
            self.parts.push_back(Part::Bytes(chunk));
        }
    }

    fn push_file(&mut self, region: FileRegion) {
        if region.len > 0 {
            self.total += region.len;
            self.parts.push_back(Part::File(region));
        }
    }

    /// Bytes not yet written, file regions included.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether every byte has been written.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The chunks in memory, in order (file regions left out).
    pub fn chunks(&self) -> impl Iterator<Item = &Bytes> {
        self.parts.iter().filter_map(|p| match p {
            Part::Bytes(b) => Some(b),
            Part::File(_) => None,
        })
    }

    /// Whether a part of the response is a file region.
    pub fn has_file_regions(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::File(_)))
    }

    /// The file region that comes next, once the bytes before it are written (`None`
    /// while bytes are ahead of it, or when no region is left). The writer sends it whole.
    pub fn take_file(&mut self) -> Option<FileRegion> {
        if self.ahead > 0 || !matches!(self.parts.front(), Some(Part::File(_))) {
            return None;
        }
        let Some(Part::File(region)) = self.parts.pop_front() else {
            unreachable!("front was checked")
        };
        self.total -= region.len;
        self.ahead = self
            .parts
            .iter()
            .take_while(|p| matches!(p, Part::Bytes(_)))
            .map(Part::len)
            .sum();
        Some(region)
    }

    /// The bytes in one buffer (copies when there is more than one chunk). For a response
    /// without file regions; a region's bytes are not in memory and are left out.
    pub fn into_bytes(mut self) -> Bytes {
        debug_assert!(!self.has_file_regions(), "a file region has no bytes here");
        self.parts.retain(|p| matches!(p, Part::Bytes(_)));
        self.ahead = self.parts.iter().map(Part::len).sum();
        self.total = self.ahead;
        match self.parts.len() {
            0 => Bytes::new(),
            1 => match self.parts.pop_front() {
                Some(Part::Bytes(b)) => b,
                _ => unreachable!("only bytes are left"),
            },
            _ => self.copy_to_bytes(self.total),
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
        self.ahead
    }

    fn chunk(&self) -> &[u8] {
        match self.parts.front() {
            Some(Part::Bytes(b)) => &b[..],
            _ => &[],
        }
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(
            cnt <= self.ahead,
            "advance past the bytes ahead of a response"
        );
        self.total -= cnt;
        self.ahead -= cnt;
        while cnt > 0 {
            let Some(Part::Bytes(front)) = self.parts.front_mut() else {
                unreachable!("bytes remain ahead")
            };
            if cnt < front.len() {
                front.advance(cnt);
                return;
            }
            cnt -= front.len();
            self.parts.pop_front();
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        let bytes = self.parts.iter().map_while(|p| match p {
            Part::Bytes(b) => Some(b),
            Part::File(_) => None,
        });
        for (slot, chunk) in dst.iter_mut().zip(bytes) {
            *slot = IoSlice::new(chunk);
            n += 1;
        }
        n
    }
}

/// The longest run of zeros a [`region_placeholder`] can stand for: the largest fetch
/// response, which also bounds the largest batch.
const PLACEHOLDER_BYTES_MAX: usize = FETCH_RESPONSE_BYTES_MAX;
const _: () = assert!(BATCH_BYTES_MAX <= PLACEHOLDER_BYTES_MAX);

/// Zero pages (never written, so never resident) the placeholders point into.
static ZEROS: [u8; PLACEHOLDER_BYTES_MAX] = [0; PLACEHOLDER_BYTES_MAX];

/// The `records` value a Fetch response carries for a partition whose batches go out as a
/// file region: as long as the region, so sizes, quotas and the length prefix are right,
/// but not its bytes (zeros, shared, never copied). [`encode_response_chunks_with`] puts
/// the region in its place; anything that replaces the records (a hook, a throttle taking
/// them back) replaces the placeholder, and the region is then not sent. `None` past
/// [`PLACEHOLDER_BYTES_MAX`].
pub fn region_placeholder(len: usize) -> Option<Bytes> {
    ZEROS.get(..len).map(Bytes::from_static)
}

/// Whether `records` is still the placeholder of a region of `len` bytes.
fn is_placeholder(records: &Bytes, len: usize) -> bool {
    records.len() == len && std::ptr::eq(records.as_ptr(), ZEROS.as_ptr())
}

#[derive(Debug, Clone)]
struct RegionEntry {
    topic: TopicName,
    topic_id: [u8; 16],
    partition: i32,
    region: FileRegion,
    n_records: u64,
}

/// File regions standing in for the records of a Fetch response's partitions, each named
/// by its topic (name and id, as the response carries them) and partition index.
#[derive(Debug, Clone, Default)]
pub struct FetchRegions {
    entries: Vec<RegionEntry>,
}

impl FetchRegions {
    /// Adds the region of one partition of `topic` (its name and id as the response
    /// carries them), whose `records` is the region's [`region_placeholder`], with the
    /// records its batches hold (for the broker's counters).
    pub fn insert(
        &mut self,
        topic: &FetchableTopicResponse,
        partition: i32,
        region: FileRegion,
        n_records: u64,
    ) {
        self.entries.push(RegionEntry {
            topic: topic.topic.clone(),
            topic_id: *topic.topic_id.as_bytes(),
            partition,
            region,
            n_records,
        });
    }

    /// Whether no region is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Regions held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn entry(&self, topic: &FetchableTopicResponse, p: &PartitionData) -> Option<&RegionEntry> {
        let records = p.records.as_ref()?;
        self.entries.iter().find(|e| {
            e.partition == p.partition_index
                && &e.topic_id == topic.topic_id.as_bytes()
                && e.topic == topic.topic
                && is_placeholder(records, e.region.len)
        })
    }

    fn find(&self, topic: &FetchableTopicResponse, p: &PartitionData) -> Option<&FileRegion> {
        self.entry(topic, p).map(|e| &e.region)
    }

    /// For a partition of `topic` whose records are still a placeholder: its region and
    /// the records the region holds.
    pub fn get(
        &self,
        topic: &FetchableTopicResponse,
        p: &PartitionData,
    ) -> Option<(&FileRegion, u64)> {
        self.entry(topic, p).map(|e| (&e.region, e.n_records))
    }

    /// Whether some partition of `resp` still carries a placeholder with its region here.
    pub fn any_in(&self, resp: &FetchResponse) -> bool {
        !self.entries.is_empty()
            && resp
                .responses
                .iter()
                .any(|t| t.partitions.iter().any(|p| self.entry(t, p).is_some()))
    }
}

/// Whether a Fetch response of this version is encoded by hand, the only encoder that
/// puts file regions in place of placeholders.
pub fn fetch_hand_encodable(resp: &FetchResponse, version: i16) -> bool {
    hand_encodable(resp, version)
}

/// Encodes a response with its header and size prefix, as chunks (see the module docs).
pub fn encode_response_chunks(
    meta: ResponseMeta,
    body: &ResponseKind,
) -> Result<EncodedResponse, ProtocolError> {
    encode_response_chunks_with(meta, body, &FetchRegions::default())
}

/// As [`encode_response_chunks`], with the file regions of a Fetch response's
/// placeholders (see [`region_placeholder`]) as parts of the response. A response that
/// still carries a placeholder but is not encoded by hand is refused: its zeros must never
/// reach a client.
pub fn encode_response_chunks_with(
    meta: ResponseMeta,
    body: &ResponseKind,
    regions: &FetchRegions,
) -> Result<EncodedResponse, ProtocolError> {
    if let ResponseKind::Fetch(fetch) = body {
        if meta.api_key == ApiKey::Fetch && hand_encodable(fetch, meta.api_version) {
            return Ok(encode_fetch(meta, fetch, regions));
        }
        if regions.any_in(fetch) {
            return Err(ProtocolError::Encode {
                key: meta.api_key,
                version: meta.api_version,
                reason: "a file region in a response the hand encoder does not write".into(),
            });
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

    fn records(&mut self, records: &Option<Bytes>, region: Option<&FileRegion>) {
        if let Some(region) = region {
            self.len(region.len);
            let small = self.buf.split().freeze();
            self.out.push(small);
            self.out.push_file(region.clone());
            return;
        }
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
fn encode_fetch(
    meta: ResponseMeta,
    resp: &FetchResponse,
    regions: &FetchRegions,
) -> EncodedResponse {
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
            let region = if regions.is_empty() {
                None
            } else {
                regions.find(topic, p)
            };
            w.records(&p.records, region);
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
    for part in w.out.parts {
        match part {
            Part::Bytes(b) => out.push(b),
            Part::File(f) => out.push_file(f),
        }
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

    /// Everything `out` would put on the wire, a region's bytes read as zeros (what its
    /// placeholder holds).
    fn written(mut out: EncodedResponse) -> Vec<u8> {
        let mut bytes = Vec::new();
        loop {
            while out.has_remaining() {
                let n = out.chunk().len();
                bytes.extend_from_slice(out.chunk());
                out.advance(n);
            }
            match out.take_file() {
                Some(r) => bytes.resize(bytes.len() + r.len, 0),
                None => break,
            }
        }
        assert!(out.is_empty());
        bytes
    }

    #[test]
    fn regions_take_the_place_of_their_placeholders() {
        let file = std::sync::Arc::new(std::fs::File::open("/dev/null").unwrap());
        let region = |len| FileRegion {
            file: file.clone(),
            position: 4096,
            len,
        };
        for version in [10i16, 12, 13, 16] {
            let parts = vec![
                PartitionData::default()
                    .with_partition_index(0)
                    .with_records(region_placeholder(100_000)),
                PartitionData::default()
                    .with_partition_index(1)
                    .with_records(Some(Bytes::from(vec![7u8; 20_000]))),
                PartitionData::default()
                    .with_partition_index(2)
                    .with_records(region_placeholder(10)),
            ];
            let body = response(version, vec![("t".into(), parts)]);
            let mut regions = FetchRegions::default();
            regions.insert(&body.responses[0], 0, region(100_000), 5);
            regions.insert(&body.responses[0], 2, region(10), 1);
            // Not this response's: another partition, and a length its placeholder lacks.
            regions.insert(&body.responses[0], 1, region(20_000), 1);
            let body = ResponseKind::Fetch(body);
            let out = encode_response_chunks_with(meta(version), &body, &regions).unwrap();
            let generic = encode_response(meta(version), &body).unwrap();
            assert_eq!(out.len(), generic.len());
            assert!(out.has_file_regions());
            // Only the bytes before the first region are a Buf.
            assert!(out.remaining() < 200);
            let regions_sent = {
                let mut o = out.clone();
                let mut n = Vec::new();
                loop {
                    o.advance(o.remaining());
                    match o.take_file() {
                        Some(r) => n.push(r.len),
                        None => break,
                    }
                }
                n
            };
            assert_eq!(regions_sent, vec![100_000, 10]);
            assert_eq!(written(out), &generic[..]);

            // Records replaced after the fact (a throttle took them back): no region.
            let ResponseKind::Fetch(mut taken) = body.clone() else {
                unreachable!()
            };
            taken.responses[0].partitions[0].records = Some(Bytes::new());
            let taken = ResponseKind::Fetch(taken);
            let out = encode_response_chunks_with(meta(version), &taken, &regions).unwrap();
            assert_eq!(
                out.len(),
                encode_response(meta(version), &taken).unwrap().len()
            );

            // A placeholder the hand encoder cannot write is refused, never sent as zeros.
            let ResponseKind::Fetch(mut tagged) = body else {
                unreachable!()
            };
            tagged.responses[0].partitions[0].diverging_epoch =
                EpochEndOffset::default().with_epoch(1).with_end_offset(1);
            let tagged = ResponseKind::Fetch(tagged);
            assert!(encode_response_chunks_with(meta(version), &tagged, &regions).is_err());
        }
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
