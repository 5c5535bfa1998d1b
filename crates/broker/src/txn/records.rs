//! The records of `__transaction_state`, in Kafka's own key and value layouts so the topic
//! reads the same as Kafka's:
//!
//! - key (`TransactionLogKey`, version 0, not flexible): the transactional id;
//! - value (`TransactionLogValue`): version 0 (not flexible) and version 1 (flexible, with
//!   tagged fields), which is what Kafka 4 writes once `transaction.version` is 1 or more.
//!   Rafka writes version 1 and reads both.
//!
//! A record with a null value is a tombstone: the transactional id expired and is removed.
//!
//! Field order of the value (both versions): producer id, producer epoch, transaction
//! timeout, transaction status, the partitions in the transaction (a nullable array of
//! topic + partition ids, null when the state is Empty), last update timestamp, start
//! timestamp. Version 1 ends every struct with a tagged-field section; the top-level one
//! may hold tag 0 (previous producer id, default -1), tag 1 (next producer id, default -1)
//! and tag 2 (client transaction version, default 0). A tag is written only when its value
//! differs from the default, as Kafka does; unknown tags are skipped when reading.
//!
//! Decoding is bounded by the bytes given: garbage gives a [`RecordError`], never a panic,
//! and nothing is allocated ahead of the bytes that back it.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{BufMut, Bytes, BytesMut};

/// Name of the internal topic.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// Version of the keys written (and the only one Kafka defines).
pub const KEY_VERSION: i16 = 0;

/// Version of the values Rafka writes: the flexible one Kafka 4 writes with
/// `transaction.version` >= 1.
pub const VALUE_VERSION: i16 = 1;

/// A partition in a transaction: topic name and partition index.
pub type TopicPart = (String, i32);

/// Tag of `PreviousProducerId` in value version 1.
const TAG_PREVIOUS_PRODUCER_ID: u32 = 0;
/// Tag of `NextProducerId` in value version 1.
const TAG_NEXT_PRODUCER_ID: u32 = 1;
/// Tag of `ClientTransactionVersion` in value version 1.
const TAG_CLIENT_TRANSACTION_VERSION: u32 = 2;

/// The state of a transactional id, with Kafka's byte codes (the `TransactionStatus` field)
/// and names (what DescribeTransactions and ListTransactions show).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxnState {
    /// No transaction yet, or a new epoch was just handed out.
    Empty,
    /// A transaction is open: partitions have been added.
    Ongoing,
    /// The commit is decided; markers are being written.
    PrepareCommit,
    /// The abort is decided; markers are being written.
    PrepareAbort,
    /// Commit markers are written everywhere.
    CompleteCommit,
    /// Abort markers are written everywhere.
    CompleteAbort,
    /// The transactional id expired and is being removed (never written as a value).
    Dead,
    /// The producer's epoch is being bumped to fence it (transient, never written).
    PrepareEpochFence,
}

impl TxnState {
    /// Every state, in code order.
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    /// Kafka's byte code (the `TransactionStatus` field).
    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    /// The state of a byte code.
    pub fn from_id(id: i8) -> Option<TxnState> {
        usize::try_from(id)
            .ok()
            .and_then(|i| TxnState::ALL.get(i).copied())
    }

    /// Kafka's name for the state.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// The state of a name (exact spelling, as ListTransactions filters match it).
    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether a transactional id in this state may expire (Kafka: Empty and Complete*).
    pub fn is_expiration_allowed(self) -> bool {
        matches!(
            self,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
    }
}

/// The value of a `__transaction_state` record: everything the coordinator persists about
/// one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnLogValue {
    /// Producer id in use by the transactional id.
    pub producer_id: i64,
    /// Producer id before the last transition (-1 if none; tagged, version 1 only).
    pub previous_producer_id: i64,
    /// Producer id the client moves to once this transaction completes, when its epoch
    /// ran out (KIP-890; -1 if none; tagged, version 1 only).
    pub next_producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// `transaction.timeout.ms` the producer asked for.
    pub transaction_timeout_ms: i32,
    /// State.
    pub state: TxnState,
    /// Partitions in the transaction (always empty in state Empty).
    pub partitions: BTreeSet<TopicPart>,
    /// When the state last changed (ms).
    pub last_update_timestamp_ms: i64,
    /// When the transaction started (ms), or -1.
    pub start_timestamp_ms: i64,
    /// The client's transaction version (`transaction.version` feature level, 0 when not
    /// known; tagged, version 1 only).
    pub client_transaction_version: i16,
}

/// One `__transaction_state` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnLogRecord {
    /// The key: the transactional id.
    pub transactional_id: String,
    /// The value, or `None` for a tombstone (the transactional id is removed).
    pub value: Option<TxnLogValue>,
}

/// Why bytes are not a record of this layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The bytes end in the middle of a field.
    #[error("record ends in the middle of a field")]
    Truncated,
    /// A key version Kafka does not define for this topic.
    #[error("unknown key version {0}")]
    UnknownKeyVersion(i16),
    /// A value version this broker does not read.
    #[error("unknown value version {0}")]
    UnknownValueVersion(i16),
    /// A transaction status byte outside Kafka's codes.
    #[error("unknown transaction status {0}")]
    UnknownState(i8),
    /// A string that is not UTF-8.
    #[error("string is not UTF-8")]
    NotUtf8,
    /// A length below -1 (or below 0 where null is not allowed), or a varint over 5 bytes.
    #[error("malformed length")]
    BadLength,
    /// A known tagged field whose size does not match its type.
    #[error("tagged field {tag} has {size} bytes")]
    BadTaggedField {
        /// The tag.
        tag: u32,
        /// Its size.
        size: usize,
    },
    /// A string too long for its length prefix (only when encoding).
    #[error("string of {0} bytes is too long for its field")]
    TooLong(usize),
}

impl TxnLogRecord {
    /// The record's key and value bytes (value version [`VALUE_VERSION`]).
    pub fn encode(&self) -> Result<(Bytes, Option<Bytes>), RecordError> {
        let mut key = BytesMut::new();
        key.put_i16(KEY_VERSION);
        put_str(&mut key, &self.transactional_id)?;
        let value = match &self.value {
            Some(v) => Some(v.encode(VALUE_VERSION)?),
            None => None,
        };
        Ok((key.freeze(), value))
    }

    /// Decodes a record from its key and value bytes (`None`: a tombstone).
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<TxnLogRecord, RecordError> {
        let mut k = Reader(key);
        let version = k.i16()?;
        if version != KEY_VERSION {
            return Err(RecordError::UnknownKeyVersion(version));
        }
        let transactional_id = k.str()?;
        let value = value.map(TxnLogValue::decode).transpose()?;
        Ok(TxnLogRecord {
            transactional_id,
            value,
        })
    }
}

impl TxnLogValue {
    /// The value's bytes in `version` (0 or 1; anything else is written as 1). Version 0
    /// has no tagged fields, so it drops the previous and next producer ids and the client
    /// transaction version.
    pub fn encode(&self, version: i16) -> Result<Bytes, RecordError> {
        let flexible = version != 0;
        let mut b = BytesMut::new();
        b.put_i16(if flexible { 1 } else { 0 });
        b.put_i64(self.producer_id);
        b.put_i16(self.producer_epoch);
        b.put_i32(self.transaction_timeout_ms);
        b.put_i8(self.state.id());
        // Null in state Empty, as Kafka writes it.
        let by_topic = (self.state != TxnState::Empty).then(|| self.partitions_by_topic());
        match (&by_topic, flexible) {
            (None, true) => put_uvarint(&mut b, 0),
            (None, false) => b.put_i32(-1),
            (Some(topics), true) => {
                put_uvarint(&mut b, len_u32(topics.len())?.saturating_add(1));
                for (topic, ids) in topics {
                    put_compact_str(&mut b, topic)?;
                    put_uvarint(&mut b, len_u32(ids.len())?.saturating_add(1));
                    for id in ids {
                        b.put_i32(*id);
                    }
                    put_uvarint(&mut b, 0); // the element's tagged fields: none
                }
            }
            (Some(topics), false) => {
                b.put_i32(len_i32(topics.len())?);
                for (topic, ids) in topics {
                    put_str(&mut b, topic)?;
                    b.put_i32(len_i32(ids.len())?);
                    for id in ids {
                        b.put_i32(*id);
                    }
                }
            }
        }
        b.put_i64(self.last_update_timestamp_ms);
        b.put_i64(self.start_timestamp_ms);
        if flexible {
            let mut tags: Vec<(u32, Vec<u8>)> = Vec::new();
            if self.previous_producer_id != -1 {
                tags.push((
                    TAG_PREVIOUS_PRODUCER_ID,
                    self.previous_producer_id.to_be_bytes().to_vec(),
                ));
            }
            if self.next_producer_id != -1 {
                tags.push((
                    TAG_NEXT_PRODUCER_ID,
                    self.next_producer_id.to_be_bytes().to_vec(),
                ));
            }
            if self.client_transaction_version != 0 {
                tags.push((
                    TAG_CLIENT_TRANSACTION_VERSION,
                    self.client_transaction_version.to_be_bytes().to_vec(),
                ));
            }
            put_uvarint(&mut b, len_u32(tags.len())?);
            for (tag, data) in tags {
                put_uvarint(&mut b, tag);
                put_uvarint(&mut b, len_u32(data.len())?);
                b.put_slice(&data);
            }
        }
        Ok(b.freeze())
    }

    /// Decodes a value of version 0 or 1. Bytes after the value are ignored.
    pub fn decode(bytes: &[u8]) -> Result<TxnLogValue, RecordError> {
        let mut r = Reader(bytes);
        let version = r.i16()?;
        let flexible = match version {
            0 => false,
            1 => true,
            v => return Err(RecordError::UnknownValueVersion(v)),
        };
        let producer_id = r.i64()?;
        let producer_epoch = r.i16()?;
        let transaction_timeout_ms = r.i32()?;
        let status = r.i8()?;
        let state = TxnState::from_id(status).ok_or(RecordError::UnknownState(status))?;
        let mut partitions = BTreeSet::new();
        let n_topics = if flexible {
            r.compact_len()?
        } else {
            r.nullable_len()?
        };
        for _ in 0..n_topics.unwrap_or(0) {
            let topic = if flexible { r.compact_str()? } else { r.str()? };
            let n_ids = if flexible {
                r.compact_len()?.ok_or(RecordError::BadLength)?
            } else {
                r.nullable_len()?.ok_or(RecordError::BadLength)?
            };
            for _ in 0..n_ids {
                partitions.insert((topic.clone(), r.i32()?));
            }
            if flexible {
                r.skip_tagged_fields()?;
            }
        }
        let last_update_timestamp_ms = r.i64()?;
        let start_timestamp_ms = r.i64()?;
        let mut value = TxnLogValue {
            producer_id,
            previous_producer_id: -1,
            next_producer_id: -1,
            producer_epoch,
            transaction_timeout_ms,
            state,
            // Kafka ignores the partitions of an Empty state.
            partitions: if state == TxnState::Empty {
                BTreeSet::new()
            } else {
                partitions
            },
            last_update_timestamp_ms,
            start_timestamp_ms,
            client_transaction_version: 0,
        };
        if flexible {
            let n_tags = r.uvarint()?;
            for _ in 0..n_tags {
                let tag = r.uvarint()?;
                let size = r.uvarint()? as usize;
                let data = r.take(size)?;
                let bad = || RecordError::BadTaggedField { tag, size };
                match tag {
                    TAG_PREVIOUS_PRODUCER_ID => {
                        value.previous_producer_id =
                            i64::from_be_bytes(data.try_into().map_err(|_| bad())?);
                    }
                    TAG_NEXT_PRODUCER_ID => {
                        value.next_producer_id =
                            i64::from_be_bytes(data.try_into().map_err(|_| bad())?);
                    }
                    TAG_CLIENT_TRANSACTION_VERSION => {
                        value.client_transaction_version =
                            i16::from_be_bytes(data.try_into().map_err(|_| bad())?);
                    }
                    // A field of a later Kafka (e.g. KIP-939's next producer epoch): skipped.
                    _ => {}
                }
            }
        }
        Ok(value)
    }

    /// The partitions grouped by topic, partition ids ascending.
    fn partitions_by_topic(&self) -> BTreeMap<&str, Vec<i32>> {
        let mut out: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, p) in &self.partitions {
            out.entry(topic.as_str()).or_default().push(*p);
        }
        out
    }
}

/// The `__transaction_state` partition of a transactional id, as Kafka computes it:
/// `Utils.abs(transactionalId.hashCode) % partitions`, where `Utils.abs` maps
/// `Integer.MIN_VALUE` to 0 and otherwise takes the absolute value.
pub fn partition_for(transactional_id: &str, partitions: i32) -> i32 {
    let hash = java_string_hash(transactional_id);
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}

/// Java's `String.hashCode` (over UTF-16 code units).
fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

fn len_u32(n: usize) -> Result<u32, RecordError> {
    u32::try_from(n)
        .ok()
        .filter(|n| *n < u32::MAX)
        .ok_or(RecordError::TooLong(n))
}

fn len_i32(n: usize) -> Result<i32, RecordError> {
    i32::try_from(n).map_err(|_| RecordError::TooLong(n))
}

fn put_str(b: &mut BytesMut, s: &str) -> Result<(), RecordError> {
    let len = i16::try_from(s.len()).map_err(|_| RecordError::TooLong(s.len()))?;
    b.put_i16(len);
    b.put_slice(s.as_bytes());
    Ok(())
}

fn put_compact_str(b: &mut BytesMut, s: &str) -> Result<(), RecordError> {
    put_uvarint(b, len_u32(s.len())?.saturating_add(1));
    b.put_slice(s.as_bytes());
    Ok(())
}

fn put_uvarint(b: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        b.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

/// Reads fields off the front of a byte slice; every read checks what is left.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn i8(&mut self) -> Result<i8, RecordError> {
        Ok(i8::from_be_bytes(self.array()?))
    }

    fn i16(&mut self) -> Result<i16, RecordError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// An unsigned varint of at most 5 bytes (Kafka refuses longer ones).
    fn uvarint(&mut self) -> Result<u32, RecordError> {
        let mut v: u32 = 0;
        for i in 0..5 {
            let byte = self.i8()? as u8;
            v |= u32::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(RecordError::BadLength)
    }

    /// An int32 array length: `None` for null (-1).
    fn nullable_len(&mut self) -> Result<Option<u32>, RecordError> {
        match self.i32()? {
            -1 => Ok(None),
            n => u32::try_from(n)
                .map(Some)
                .map_err(|_| RecordError::BadLength),
        }
    }

    /// A compact array length (varint of length + 1): `None` for null (0).
    fn compact_len(&mut self) -> Result<Option<u32>, RecordError> {
        Ok(self.uvarint()?.checked_sub(1))
    }

    fn utf8(&mut self, len: usize) -> Result<String, RecordError> {
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| RecordError::NotUtf8)
    }

    /// A non-null string with an int16 length.
    fn str(&mut self) -> Result<String, RecordError> {
        let len = usize::try_from(self.i16()?).map_err(|_| RecordError::BadLength)?;
        self.utf8(len)
    }

    /// A non-null compact string (varint of length + 1).
    fn compact_str(&mut self) -> Result<String, RecordError> {
        let len = self
            .uvarint()?
            .checked_sub(1)
            .ok_or(RecordError::BadLength)?;
        self.utf8(len as usize)
    }

    /// Skips a tagged-field section (none of them is known inside the partition structs).
    fn skip_tagged_fields(&mut self) -> Result<(), RecordError> {
        let n = self.uvarint()?;
        for _ in 0..n {
            let _tag = self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.take(size)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value(state: TxnState, partitions: &[(&str, i32)]) -> TxnLogValue {
        TxnLogValue {
            producer_id: 1000,
            previous_producer_id: -1,
            next_producer_id: -1,
            producer_epoch: 5,
            transaction_timeout_ms: 60_000,
            state,
            partitions: partitions
                .iter()
                .map(|(t, p)| (t.to_string(), *p))
                .collect(),
            last_update_timestamp_ms: 1_700_000_000_123,
            start_timestamp_ms: 1_700_000_000_000,
            client_transaction_version: 2,
        }
    }

    /// Encodes `record`, checks it decodes to itself, and returns the bytes.
    fn check(record: &TxnLogRecord) -> (Bytes, Option<Bytes>) {
        let (k, v) = record.encode().expect("encodes");
        assert_eq!(
            TxnLogRecord::decode(&k, v.as_deref()).as_ref(),
            Ok(record),
            "round trip"
        );
        (k, v)
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn the_bytes_of_one_known_record() {
        // Transactional id "tx", producer 1000 at epoch 5, timeout 60 s, Ongoing over
        // partitions 0 and 2 of topic "t", client transaction version 2. The expected bytes
        // follow TransactionLogKey v0 and TransactionLogValue v1 field by field.
        let (k, v) = check(&TxnLogRecord {
            transactional_id: "tx".into(),
            value: Some(value(TxnState::Ongoing, &[("t", 0), ("t", 2)])),
        });
        let key = hex("0000 \
             0002 7478");
        // key: int16 version 0 | int16 length 2, "tx".
        assert_eq!(k[..], key[..]);
        let expected = hex("0001 \
             00000000000003e8 \
             0005 \
             0000ea60 \
             01 \
             02 \
                02 74 \
                03 00000000 00000002 \
                00 \
             0000018bcfe5687b \
             0000018bcfe56800 \
             01 02 02 0002");
        // value: int16 version 1 | int64 producer id 1000 (0x3e8) | int16 epoch 5 |
        // int32 timeout 60000 (0xea60) | int8 status 1 (Ongoing) |
        // compact array of 1 topic (varint 1 + 1 = 2):
        //    compact string "t" (varint 1 + 1 = 2, 0x74) |
        //    compact int32 array of 2 (varint 3): 0, 2 |
        //    the element's tagged fields: none (0) |
        // int64 last update 1700000000123 (0x18bcfe5687b) |
        // int64 start 1700000000000 (0x18bcfe56800) |
        // tagged fields: 1 field, tag 2 (ClientTransactionVersion), 2 bytes, value 2.
        // Previous and next producer id hold their default -1 and are not written.
        assert_eq!(v.unwrap()[..], expected[..]);
    }

    #[test]
    fn empty_state_writes_null_partitions_and_tombstones_have_no_value() {
        let (_, v) = check(&TxnLogRecord {
            transactional_id: "a".into(),
            value: Some(value(TxnState::Empty, &[])),
        });
        // After version (2), producer id (8), epoch (2), timeout (4), status (1): the
        // compact array is null (varint 0).
        assert_eq!(v.unwrap()[17], 0);
        let v0 = value(TxnState::Empty, &[("t", 1)]).encode(0).unwrap();
        assert_eq!(v0[17..21], (-1i32).to_be_bytes());
        let (k, v) = check(&TxnLogRecord {
            transactional_id: "gone".into(),
            value: None,
        });
        assert_eq!(v, None);
        assert_eq!(k[..], hex("0000 0004 676f6e65")[..]);
    }

    #[test]
    fn version_0_is_read_and_drops_the_tagged_fields() {
        let mut v = value(TxnState::PrepareCommit, &[("a", 1), ("b", 0), ("b", 7)]);
        v.previous_producer_id = 999;
        v.next_producer_id = 1001;
        let bytes = v.encode(0).unwrap();
        assert_eq!(bytes[..2], [0, 0]);
        let back = TxnLogValue::decode(&bytes).unwrap();
        assert_eq!(
            back,
            TxnLogValue {
                previous_producer_id: -1,
                next_producer_id: -1,
                client_transaction_version: 0,
                ..v.clone()
            }
        );
        let v1 = TxnLogValue::decode(&v.encode(1).unwrap()).unwrap();
        assert_eq!(v1, v);
    }

    #[test]
    fn unknown_tags_are_skipped_and_known_tags_must_fit_their_type() {
        let v = value(TxnState::Ongoing, &[("t", 0)]);
        let mut bytes = v.encode(1).unwrap().to_vec();
        // Replace the tag section (1 field: tag 2) with two fields: tag 3 (KIP-939's next
        // producer epoch, unknown here) then tag 2.
        let at = bytes.len() - 5;
        bytes.truncate(at);
        bytes.extend_from_slice(&hex("02 03 02 0007 02 02 0002"));
        assert_eq!(TxnLogValue::decode(&bytes), Ok(v.clone()));
        bytes.truncate(at);
        bytes.extend_from_slice(&hex("01 00 02 0007"));
        assert_eq!(
            TxnLogValue::decode(&bytes),
            Err(RecordError::BadTaggedField { tag: 0, size: 2 })
        );
    }

    #[test]
    fn refusals() {
        let v = value(TxnState::Ongoing, &[("t", 0)]).encode(1).unwrap();
        for cut in 0..v.len() {
            assert!(TxnLogValue::decode(&v[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(
            TxnLogRecord::decode(&hex("0001 0001 61"), None),
            Err(RecordError::UnknownKeyVersion(1))
        );
        assert_eq!(
            TxnLogValue::decode(&hex("0002")),
            Err(RecordError::UnknownValueVersion(2))
        );
        let mut bad_state = v.to_vec();
        bad_state[16] = 8;
        assert_eq!(
            TxnLogValue::decode(&bad_state),
            Err(RecordError::UnknownState(8))
        );
        assert_eq!(
            TxnLogRecord::decode(&hex("0000 ffff"), None),
            Err(RecordError::BadLength)
        );
        assert_eq!(
            TxnLogRecord::decode(&hex("0000 0001 ff"), None),
            Err(RecordError::NotUtf8)
        );
        let too_long = TxnLogRecord {
            transactional_id: "x".repeat(40_000),
            value: None,
        };
        assert_eq!(too_long.encode(), Err(RecordError::TooLong(40_000)));
    }

    #[test]
    fn states_keep_kafkas_codes_and_names() {
        for (i, s) in TxnState::ALL.into_iter().enumerate() {
            assert_eq!(s.id() as usize, i);
            assert_eq!(TxnState::from_id(s.id()), Some(s));
            assert_eq!(TxnState::from_name(s.name()), Some(s));
        }
        assert_eq!(TxnState::from_id(-1), None);
        assert_eq!(TxnState::from_id(8), None);
        assert_eq!(TxnState::from_name("ongoing"), None);
        assert_eq!(TxnState::PrepareEpochFence.id(), 7);
        let expirable: Vec<TxnState> = TxnState::ALL
            .into_iter()
            .filter(|s| s.is_expiration_allowed())
            .collect();
        assert_eq!(
            expirable,
            [
                TxnState::Empty,
                TxnState::CompleteCommit,
                TxnState::CompleteAbort
            ]
        );
    }

    #[test]
    fn partition_matches_kafka() {
        assert_eq!(TRANSACTION_STATE_TOPIC, "__transaction_state");
        // "a".hashCode() = 97; "group".hashCode() = 98629247.
        assert_eq!(partition_for("a", 50), 97 % 50);
        assert_eq!(partition_for("group", 50), 98629247 % 50);
        // "polygenelubricants".hashCode() is Integer.MIN_VALUE: Utils.abs makes it 0.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        // A negative hash takes its absolute value, not its low 31 bits:
        // "my-transactional-id".hashCode() = -959806496, so Kafka picks partition 46 (the low
        // 31 bits would give 2).
        assert_eq!(java_string_hash("my-transactional-id"), -959_806_496);
        assert_eq!(partition_for("my-transactional-id", 50), 46);
        assert_eq!(partition_for("x", 0), 0);
    }

    fn any_state() -> impl Strategy<Value = TxnState> {
        (0usize..8).prop_map(|i| TxnState::ALL[i])
    }

    fn any_value() -> impl Strategy<Value = TxnLogValue> {
        (
            (any::<i64>(), any::<i64>(), any::<i64>(), any::<i16>()),
            (any::<i32>(), any_state(), any::<i64>(), any::<i64>()),
            any::<i16>(),
            proptest::collection::btree_set(("[a-z._-]{1,12}", any::<i32>()), 0..8),
        )
            .prop_map(
                |((pid, prev, next, epoch), (t, state, lu, st), tv, parts)| TxnLogValue {
                    producer_id: pid,
                    previous_producer_id: prev,
                    next_producer_id: next,
                    producer_epoch: epoch,
                    transaction_timeout_ms: t,
                    state,
                    partitions: if state == TxnState::Empty {
                        BTreeSet::new()
                    } else {
                        parts
                    },
                    last_update_timestamp_ms: lu,
                    start_timestamp_ms: st,
                    client_transaction_version: tv,
                },
            )
    }

    proptest! {
        /// Every value of every state round-trips through version 1, and through version 0
        /// less its tagged fields; so does every key.
        #[test]
        fn every_record_round_trips(
            id in "\\PC{0,40}",
            value in proptest::option::of(any_value()),
        ) {
            let record = TxnLogRecord { transactional_id: id, value };
            let (k, v) = record.encode().unwrap();
            prop_assert_eq!(TxnLogRecord::decode(&k, v.as_deref()), Ok(record.clone()));
            if let Some(value) = &record.value {
                let v0 = TxnLogValue::decode(&value.encode(0).unwrap()).unwrap();
                prop_assert_eq!(v0, TxnLogValue {
                    previous_producer_id: -1,
                    next_producer_id: -1,
                    client_transaction_version: 0,
                    ..value.clone()
                });
            }
        }

        /// Garbage never panics the decoder.
        #[test]
        fn garbage_is_refused_without_panic(
            key in proptest::collection::vec(any::<u8>(), 0..64),
            value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..128)),
        ) {
            let _ = TxnLogRecord::decode(&key, value.as_deref());
        }

        /// Flipping or cutting bytes of a good value never panics the decoder.
        #[test]
        fn damaged_values_never_panic(
            value in any_value(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = value.encode(1).unwrap().to_vec();
            let i = at.index(bytes.len());
            bytes[i] = byte;
            let _ = TxnLogValue::decode(&bytes);
            let _ = TxnLogValue::decode(&bytes[..cut.index(bytes.len())]);
        }
    }
}
