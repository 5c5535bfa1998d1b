//! A probe pass that proves a request body is safe to hand to the `kafka-protocol` decoder.
//!
//! That decoder reserves memory for an array from the element count on the wire before it
//! reads a single element (`Vec::with_capacity(count)`), so a frame of a few hundred bytes
//! claiming four billion elements makes the allocation fail, and allocation failure aborts
//! the process. [`probe`] first decodes through [`Guarded`], a buffer that refuses such
//! counts; only a body that passes is decoded for real.
//!
//! How counts are recognised without a schema:
//! - Unsigned varints (compact array counts and lengths, tagged-field counts, numbers and
//!   sizes in flexible versions) are the only values read byte by byte with `try_get_u8`
//!   (booleans too, but they are 0 or 1). A count or a length cannot exceed the bytes left
//!   (+1 for the compact encoding), but a tag number can: an unknown tagged field numbered
//!   3 with an empty value may end the body. So a varint is refused only when it exceeds the
//!   bytes left by more than [`TAG_SLACK`]; a count between the two still fails in the probe
//!   for lack of bytes, after reserving at most that many extra elements. (Tag numbers
//!   above that, with fewer bytes after them, are refused: telling them from array counts
//!   needs the schema. Kafka's schemas number their tags from 0 upwards, well below it.)
//!   Where a varint starts is not known either: a boolean is read the same way, and the
//!   decoder takes any non-zero byte as `true`, so a boolean byte 0x80 followed by a varint
//!   looks like one longer varint, and the decoder stops a varint after five bytes whatever
//!   the fifth says. So every start within the last five consecutive bytes whose
//!   predecessors all carry the continuation bit is checked, not just the first one.
//! - `INT32` values (non-flexible versions) share one reader whether they are array
//!   counts, `BYTES` / `RECORDS` lengths or plain integers such as timeouts, so the probe
//!   cannot refuse large values. It caps them at one more than the bytes left: no count or
//!   length can legitimately exceed the bytes left (every array element takes at least one
//!   byte, and a length may be all of them: a SyncGroup assignment, a Produce `records`
//!   value), and a count or length of one more still fails in the probe for lack of bytes,
//!   so the real decode never sees it. A plain integer's value does not change how the rest
//!   of the body parses. (An earlier cap of half the bytes left refused valid requests whose
//!   one large `BYTES` field held most of the body; a cap of exactly the bytes left would
//!   let a huge count with nothing after it pass the probe as an empty array.)

use std::ops::Range;

use bytes::{Buf, Bytes, TryGetError};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::buf::ByteBuf;

/// How far an unsigned varint may exceed the bytes left before it is refused: room for tag
/// numbers, which are not counts (see the module docs). A bogus array count under it costs
/// one reservation of at most this many extra elements before the probe fails.
pub const TAG_SLACK: u64 = 4096;

/// The most bytes the decoder reads for one unsigned varint (a `u32` in 7-bit groups).
const VARINT_MAX: usize = 5;

/// A read-only buffer that refuses or caps impossible counts (see the module docs).
#[derive(Debug)]
pub struct Guarded {
    inner: Bytes,
    /// The last consecutive `try_get_u8` bytes that carry the continuation bit (at most
    /// four: a varint the decoder reads is at most five bytes long, so any of them may be
    /// where one starts, and the next byte may end it).
    run: [u8; VARINT_MAX - 1],
    run_len: usize,
    /// `remaining()` right after the last `try_get_u8`, to know whether reads are consecutive.
    after_last_u8: Option<usize>,
}

impl Guarded {
    /// Wraps a request body.
    pub fn new(inner: Bytes) -> Guarded {
        Guarded {
            inner,
            run: [0; VARINT_MAX - 1],
            run_len: 0,
            after_last_u8: None,
        }
    }
}

impl Buf for Guarded {
    fn remaining(&self) -> usize {
        self.inner.remaining()
    }

    fn chunk(&self) -> &[u8] {
        self.inner.chunk()
    }

    fn advance(&mut self, cnt: usize) {
        self.inner.advance(cnt)
    }

    fn try_get_u8(&mut self) -> Result<u8, TryGetError> {
        let consecutive = self.after_last_u8 == Some(self.remaining());
        let b = self.inner.try_get_u8()?;
        if !consecutive {
            self.run_len = 0;
        }
        let left = self.remaining() as u64;
        // Each start in the run gives the value a varint beginning there has so far; more
        // bytes only add to it, so one over the limit now stays over it.
        for start in 0..=self.run_len {
            let value = self.run[start..self.run_len]
                .iter()
                .chain(std::iter::once(&b))
                .enumerate()
                .fold(0u64, |v, (i, byte)| v | u64::from(byte & 0x7f) << (7 * i));
            if value > left + 1 + TAG_SLACK {
                // No count or length can exceed the bytes that follow it, nor can a tag
                // number go this far beyond them (see `TAG_SLACK`).
                return Err(TryGetError {
                    requested: value as usize,
                    available: left as usize,
                });
            }
        }
        if b < 0x80 {
            self.run_len = 0;
        } else {
            if self.run_len == self.run.len() {
                self.run.copy_within(1.., 0);
                self.run_len -= 1;
            }
            self.run[self.run_len] = b;
            self.run_len += 1;
        }
        self.after_last_u8 = Some(self.remaining());
        Ok(b)
    }

    fn try_get_i32(&mut self) -> Result<i32, TryGetError> {
        let v = self.inner.try_get_i32()?;
        let cap = (self.remaining() + 1).min(i32::MAX as usize) as i32;
        Ok(v.min(cap))
    }
}

impl ByteBuf for Guarded {
    fn peek_bytes(&mut self, r: Range<usize>) -> Bytes {
        self.inner.slice(r)
    }

    fn get_bytes(&mut self, size: usize) -> Bytes {
        self.inner.split_to(size)
    }
}

/// Decodes `body` through [`Guarded`] and discards the result: `Err` means the body is
/// malformed or claims more elements than it could hold, and must not be decoded for real.
pub fn probe(api_key: ApiKey, body: &Bytes, version: i16) -> Result<(), String> {
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Decodable;
    let mut g = Guarded::new(body.clone());
    macro_rules! probe_as {
        ($($key:ident => $ty:ty),* $(,)?) => {
            match api_key {
                $(ApiKey::$key => <$ty>::decode(&mut g, version).map(|_| ()),)*
                // Only served APIs reach the decoder; the table test keeps this list in step.
                other => return Err(format!("no probe for {other:?}")),
            }
        };
    }
    probe_as! {
        Produce => ProduceRequest,
        Fetch => FetchRequest,
        ListOffsets => ListOffsetsRequest,
        Metadata => MetadataRequest,
        OffsetCommit => OffsetCommitRequest,
        OffsetFetch => OffsetFetchRequest,
        FindCoordinator => FindCoordinatorRequest,
        JoinGroup => JoinGroupRequest,
        Heartbeat => HeartbeatRequest,
        LeaveGroup => LeaveGroupRequest,
        SyncGroup => SyncGroupRequest,
        DescribeGroups => DescribeGroupsRequest,
        ListGroups => ListGroupsRequest,
        ApiVersions => ApiVersionsRequest,
        CreateTopics => CreateTopicsRequest,
        DeleteTopics => DeleteTopicsRequest,
        DeleteRecords => DeleteRecordsRequest,
        InitProducerId => InitProducerIdRequest,
        OffsetForLeaderEpoch => OffsetForLeaderEpochRequest,
        DescribeConfigs => DescribeConfigsRequest,
        AlterConfigs => AlterConfigsRequest,
        DescribeLogDirs => DescribeLogDirsRequest,
        CreatePartitions => CreatePartitionsRequest,
        DeleteGroups => DeleteGroupsRequest,
        IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
        OffsetDelete => OffsetDeleteRequest,
        DescribeCluster => DescribeClusterRequest,
        DescribeTopicPartitions => DescribeTopicPartitionsRequest,
        ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest,
        ConsumerGroupDescribe => ConsumerGroupDescribeRequest,
        AddPartitionsToTxn => AddPartitionsToTxnRequest,
        AddOffsetsToTxn => AddOffsetsToTxnRequest,
        EndTxn => EndTxnRequest,
        WriteTxnMarkers => WriteTxnMarkersRequest,
        TxnOffsetCommit => TxnOffsetCommitRequest,
        DescribeProducers => DescribeProducersRequest,
        DescribeTransactions => DescribeTransactionsRequest,
        ListTransactions => ListTransactionsRequest,
        SaslHandshake => SaslHandshakeRequest,
        SaslAuthenticate => SaslAuthenticateRequest,
        DescribeUserScramCredentials => DescribeUserScramCredentialsRequest,
        AlterUserScramCredentials => AlterUserScramCredentialsRequest,
        CreateAcls => CreateAclsRequest,
        DescribeAcls => DescribeAclsRequest,
        DeleteAcls => DeleteAclsRequest,
        DescribeClientQuotas => DescribeClientQuotasRequest,
        AlterClientQuotas => AlterClientQuotasRequest,
    }
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn check(api: ApiKey, version: i16, body: &[u8]) -> Result<(), String> {
        probe(api, &Bytes::copy_from_slice(body), version)
    }

    #[test]
    fn every_served_api_has_a_probe() {
        for api in crate::versions::SERVED {
            let e = check(api.key, api.max, &[]).unwrap_err();
            assert!(!e.starts_with("no probe"), "{:?}: {e}", api.key);
        }
    }

    #[test]
    fn huge_counts_are_refused_before_allocation() {
        // DeleteGroups v0: an INT32 count of i32::MAX group names, then nothing.
        let mut b = bytes::BytesMut::new();
        b.put_i32(i32::MAX);
        assert!(check(ApiKey::DeleteGroups, 0, &b).is_err());
        // DeleteGroups v2 (flexible): a compact count of 2^32-1, then nothing.
        assert!(check(ApiKey::DeleteGroups, 2, &[0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        // Valid bodies pass: one group "g".
        assert!(check(ApiKey::DeleteGroups, 0, &[0, 0, 0, 1, 0, 1, b'g']).is_ok());
        assert!(check(ApiKey::DeleteGroups, 2, &[2, 2, b'g', 0]).is_ok());
    }

    #[test]
    fn a_bytes_field_holding_most_of_the_body_passes() {
        // SyncGroup v3 as librdkafka's cooperative-sticky leader sends it: a long topic name
        // inside one member's assignment makes that one BYTES value most of the body.
        use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
        use kafka_protocol::messages::{GroupId, SyncGroupRequest};
        use kafka_protocol::protocol::{Encodable, StrBytes};
        let assignment = Bytes::from(vec![7u8; 300]);
        let req = SyncGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_generation_id(i32::MAX)
            .with_member_id(StrBytes::from_static_str("m"))
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(StrBytes::from_static_str("m"))
                .with_assignment(assignment)]);
        let mut b = bytes::BytesMut::new();
        req.encode(&mut b, 3).unwrap();
        assert_eq!(check(ApiKey::SyncGroup, 3, &b), Ok(()));
        // One byte short: the length now exceeds what is left, and the probe says so.
        assert!(check(ApiKey::SyncGroup, 3, &b[..b.len() - 1]).is_err());
    }

    #[test]
    fn a_tag_number_beyond_the_bytes_left_passes() {
        // DeleteGroups v2: group "g", then one unknown tagged field numbered 100 with an
        // empty value: 2 bytes follow the tag number, which is not a count.
        let body = [2, 2, b'g', 1, 100, 0];
        assert_eq!(check(ApiKey::DeleteGroups, 2, &body), Ok(()));
        let tag = TAG_SLACK as u8; // 4096 = 0x80 0x20 as a varint
        assert_eq!(tag, 0);
        assert_eq!(
            check(ApiKey::DeleteGroups, 2, &[2, 2, b'g', 1, 0x80, 0x20, 0]),
            Ok(())
        );
        // A group count just past the slack is refused at the varint, before allocating.
        let count = TAG_SLACK + 2 + 2; // bytes left after it: 2
        let body = [(count as u8 & 0x7f) | 0x80, (count >> 7) as u8, 0, 0];
        let e = check(ApiKey::DeleteGroups, 2, &body).unwrap_err();
        assert!(e.contains(&format!("requested {count}")), "{e}");
    }

    #[test]
    fn a_count_after_a_boolean_byte_with_the_high_bit_is_refused() {
        // AddPartitionsToTxn v4, as the fuzzer found it: one transaction whose
        // `verify_only` byte is 0x80 (true to the decoder), then a topic count of
        // 0x80 0x80 0x80 0x80 0x82 = 2^29 (2^29 - 1 topics). Seen from the boolean, the run
        // read like one varint ending in 2; the count itself must be checked.
        let mut b = bytes::BytesMut::new();
        b.put_u8(2); // one transaction
        b.put_slice(&[2, b't']); // transactional id "t"
        b.put_i64(7); // producer id
        b.put_i16(0); // producer epoch
        b.put_u8(0x80); // verify_only
        b.put_slice(&[0x80, 0x80, 0x80, 0x80, 0x82]);
        b.put_slice(&[0; 16]);
        let e = check(ApiKey::AddPartitionsToTxn, 4, &b).unwrap_err();
        assert!(e.contains("requested"), "{e}");
        // The same count after a boolean byte of 1 (a valid true) is refused as well, and
        // the request with a valid count of one topic "x" with no partitions passes.
        let mut ok = bytes::BytesMut::new();
        ok.put_u8(2);
        ok.put_slice(&[2, b't']);
        ok.put_i64(7);
        ok.put_i16(0);
        ok.put_u8(1);
        let mut bad = ok.clone();
        bad.put_slice(&[0x80, 0x80, 0x80, 0x80, 0x82]);
        bad.put_slice(&[0; 16]);
        assert!(check(ApiKey::AddPartitionsToTxn, 4, &bad).is_err());
        ok.put_slice(&[2, 2, b'x', 1, 0, 0, 0]);
        assert_eq!(check(ApiKey::AddPartitionsToTxn, 4, &ok), Ok(()));
    }

    #[test]
    fn a_varint_cut_at_five_bytes_is_checked_where_the_next_one_starts() {
        // DeleteGroups v2: nine 0x80 bytes and 0x82. The decoder ends the first varint
        // after five bytes; the next five (2^29) start the following field, and that
        // value is checked too.
        let mut body = vec![0x80; 9];
        body.push(0x82);
        body.extend_from_slice(&[0; 8]);
        assert!(check(ApiKey::DeleteGroups, 2, &body).is_err());
    }

    #[test]
    fn large_scalars_do_not_trip_the_probe() {
        // Heartbeat v0: group "g", generation i32::MAX, member "m".
        let mut b = bytes::BytesMut::new();
        b.put_i16(1);
        b.put_slice(b"g");
        b.put_i32(i32::MAX);
        b.put_i16(1);
        b.put_slice(b"m");
        assert!(check(ApiKey::Heartbeat, 0, &b).is_ok());
    }
}
