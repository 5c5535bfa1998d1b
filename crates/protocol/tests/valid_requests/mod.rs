//! Random **valid** requests for every served API and version, for the mirror property of
//! `rafka_protocol::guard`: a filter that refuses bad input must accept all good input.
//!
//! Hand-written strategies would have to restate the schema of ~30 requests and every field's
//! version range, and would silently go stale when the `kafka-protocol` crate adds a field.
//! Instead the crate's own decoder is the schema: [`generate`] runs `T::decode` on a
//! [`Source`], a buffer that answers each read the decoder makes with a random value, so
//! whatever the decoder builds is a request the crate can encode at that version, with every
//! field of that version filled.
//!
//! The decoder reads array counts, `STRING`/`BYTES` lengths and plain integers the same way,
//! so the values are chosen in three passes:
//! 1. Structure: every INT16/INT32/varint read gets a small value (so counts stay small);
//!    decode failures (a null for a non-nullable array, a tag not valid in this version)
//!    re-roll the last reads until the decoder accepts the structure.
//! 2. Classification: a read directly followed by a byte-string read of its size is a
//!    length; any other read whose perturbation leaves the sequence of reads unchanged is a
//!    plain value (a timeout, an epoch, a boolean, a tag number); the rest are counts.
//! 3. Final: plain values get extremes (`i32::MIN`, -1, 0, `i32::MAX`, ...), lengths may
//!    become large (a byte string that is most of the body), counts keep their values.

use bytes::{Buf, Bytes, TryGetError};
use kafka_protocol::messages::{ApiKey, RequestKind};
use kafka_protocol::protocol::buf::ByteBuf;
use kafka_protocol::protocol::Decodable;
use rafka_protocol::guard::TAG_SLACK;

/// Logical reads per generated value before the source gives up (keeps nesting bounded).
const READS_MAX: usize = 300;
/// Bytes of byte-string content per generated value.
const CONTENT_BYTES_MAX: usize = 1 << 20;
/// Lengths made large in one value.
const LARGE_LENGTHS_MAX: usize = 3;
/// Pass-1 varints above 5 (4 elements) are rare and at most this much larger: enough for
/// "many elements" without making the classification pass quadratic in a huge value.
const VARINT_TAIL: u64 = 8;
/// Stands in for the extremes of plain INT16/INT32 values in a safety run (see `generate`):
/// as a count it would need more reads than `READS_MAX`.
const SURROGATE: i64 = 5_000;
const _: () = assert!(SURROGATE as usize > READS_MAX);

/// One read the decoder made; the sequence of them is the shape of the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// The first byte of an unsigned varint, or a boolean (both `try_get_u8`).
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    F64,
    Slice(usize),
    Bytes(usize),
}

/// Per-read decisions layered over the random defaults, by read index.
#[derive(Debug, Clone, Default)]
struct Plan {
    /// Re-rolls: a different salt gives that read a different random default.
    salts: Vec<u64>,
    /// Values fixed for numeric reads (`U8` values are the whole varint).
    values: Vec<Option<i64>>,
}

impl Plan {
    fn salt(&self, i: usize) -> u64 {
        self.salts.get(i).copied().unwrap_or(0)
    }

    fn set_salt(&mut self, i: usize, salt: u64) {
        if self.salts.len() <= i {
            self.salts.resize(i + 1, 0);
        }
        self.salts[i] = salt;
    }

    fn value(&self, i: usize) -> Option<i64> {
        self.values.get(i).copied().flatten()
    }

    fn set_value(&mut self, i: usize, v: i64) {
        if self.values.len() <= i {
            self.values.resize(i + 1, None);
        }
        self.values[i] = Some(v);
    }
}

/// How a numeric read is used, found by [`classify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Count,
    Length,
    Plain,
}

fn mix(mut x: u64) -> u64 {
    // splitmix64: cheap, deterministic, good enough to spread per-read seeds.
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A read-only buffer with no bytes of its own: each read is answered from the plan or at
/// random, and recorded.
struct Source<'a> {
    seed: u64,
    plan: &'a Plan,
    shape: Vec<Read>,
    values: Vec<i64>,
    /// Continuation bytes of the varint being read, next byte last.
    pending: Vec<u8>,
    content_bytes: usize,
    exhausted: bool,
}

impl<'a> Source<'a> {
    fn new(seed: u64, plan: &'a Plan) -> Self {
        Source {
            seed,
            plan,
            shape: Vec::new(),
            values: Vec::new(),
            pending: Vec::new(),
            content_bytes: 0,
            exhausted: false,
        }
    }

    fn exhausted(&mut self) -> TryGetError {
        self.exhausted = true;
        TryGetError {
            requested: 1,
            available: 0,
        }
    }

    /// Starts a logical read; returns its random bits and the planned value, if any.
    fn start(&mut self, read: Read) -> Result<(u64, Option<i64>), TryGetError> {
        self.pending.clear();
        let i = self.shape.len();
        if i >= READS_MAX {
            return Err(self.exhausted());
        }
        self.shape.push(read);
        let salt = self.plan.salt(i);
        let r = mix(self.seed ^ mix(i as u64 ^ salt.rotate_left(32)));
        Ok((r, self.plan.value(i)))
    }

    fn numeric(&mut self, read: Read, default: fn(u64) -> i64) -> Result<i64, TryGetError> {
        let (r, planned) = self.start(read)?;
        let v = planned.unwrap_or_else(|| default(r));
        self.values.push(v);
        Ok(v)
    }

    fn content(&mut self, read: Read, n: usize) -> Result<Vec<u8>, TryGetError> {
        if self.content_bytes + n > CONTENT_BYTES_MAX {
            return Err(self.exhausted());
        }
        let (r, _) = self.start(read)?;
        self.values.push(0);
        self.content_bytes += n;
        // ASCII, so that the bytes are valid as a STRING too; the guard never looks inside.
        Ok((0..n)
            .map(|j| (mix(r ^ (j as u64 / 8)) >> ((j % 8) * 8)) as u8 & 0x7f)
            .collect())
    }
}

/// Small counts and lengths, sometimes null: pass-1 values of INT16 and INT32 reads.
fn small_int(r: u64) -> i64 {
    match r % 100 {
        0..=4 => -1,
        5..=19 => 0,
        20..=54 => 1,
        55..=79 => 2,
        80..=91 => 3,
        _ => 4,
    }
}

/// Pass-1 varints: compact counts and lengths are value + 1, so 1..=5 is 0..=4 elements.
fn small_varint(r: u64) -> i64 {
    match r % 100 {
        0..=2 => 0,
        3..=27 => 1,
        28..=62 => 2,
        63..=82 => 3,
        83..=92 => 4,
        93..=96 => 5,
        _ => 6 + ((r >> 8) % VARINT_TAIL) as i64,
    }
}

fn extreme_i64(r: u64) -> i64 {
    [i64::MIN, -1, 0, i64::MAX]
        .get((r % 7) as usize)
        .copied()
        .unwrap_or((r >> 3) as i64)
}

impl Buf for Source<'_> {
    fn remaining(&self) -> usize {
        usize::MAX >> 1
    }

    fn chunk(&self) -> &[u8] {
        &[]
    }

    fn advance(&mut self, _cnt: usize) {
        unreachable!("every read the decoder makes is overridden");
    }

    fn try_get_u8(&mut self) -> Result<u8, TryGetError> {
        if let Some(b) = self.pending.pop() {
            return Ok(b);
        }
        let mut v = self.numeric(Read::U8, small_varint)? as u32;
        let mut bytes = Vec::new();
        while v >= 0x80 {
            bytes.push(v as u8 | 0x80);
            v >>= 7;
        }
        bytes.push(v as u8);
        let first = bytes.remove(0);
        bytes.reverse();
        self.pending = bytes;
        Ok(first)
    }

    fn try_get_i8(&mut self) -> Result<i8, TryGetError> {
        // Mostly 1: the "present" flag of a nullable struct.
        self.numeric(Read::I8, |r| {
            if r.is_multiple_of(2) {
                1
            } else {
                (r >> 8) as i8 as i64
            }
        })
        .map(|v| v as i8)
    }

    fn try_get_i16(&mut self) -> Result<i16, TryGetError> {
        self.numeric(Read::I16, small_int).map(|v| v as i16)
    }

    fn try_get_u16(&mut self) -> Result<u16, TryGetError> {
        self.numeric(Read::U16, |r| (r >> 5) as u16 as i64)
            .map(|v| v as u16)
    }

    fn try_get_i32(&mut self) -> Result<i32, TryGetError> {
        self.numeric(Read::I32, small_int).map(|v| v as i32)
    }

    fn try_get_u32(&mut self) -> Result<u32, TryGetError> {
        self.numeric(Read::U32, |r| (r >> 5) as u32 as i64)
            .map(|v| v as u32)
    }

    fn try_get_i64(&mut self) -> Result<i64, TryGetError> {
        self.numeric(Read::I64, extreme_i64)
    }

    fn try_get_f64(&mut self) -> Result<f64, TryGetError> {
        // Finite values only: NaN is not equal to itself, and the round trip compares.
        self.numeric(Read::F64, |r| (r >> 40) as i64 - (1 << 23))
            .map(|v| v as f64 / 8.0)
    }

    fn try_copy_to_slice(&mut self, dst: &mut [u8]) -> Result<(), TryGetError> {
        let content = self.content(Read::Slice(dst.len()), dst.len())?;
        dst.copy_from_slice(&content);
        Ok(())
    }
}

impl ByteBuf for Source<'_> {
    fn peek_bytes(&mut self, _r: std::ops::Range<usize>) -> Bytes {
        unreachable!("request decoders do not peek");
    }

    fn get_bytes(&mut self, size: usize) -> Bytes {
        self.try_get_bytes(size).expect("within the content budget")
    }

    fn try_get_bytes(
        &mut self,
        size: usize,
    ) -> Result<Bytes, kafka_protocol::protocol::buf::NotEnoughBytesError> {
        self.content(Read::Bytes(size), size)
            .map(Bytes::from)
            .map_err(|_| kafka_protocol::protocol::buf::NotEnoughBytesError)
    }
}

/// Whether two shapes read the same fields in the same order (byte strings of any size).
fn same_fields(a: &[Read], b: &[Read]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Read::Bytes(_), Read::Bytes(_)) => true,
            _ => x == y,
        })
}

/// What a decode through a [`Source`] produced.
struct Run<T> {
    value: Option<T>,
    shape: Vec<Read>,
    values: Vec<i64>,
    exhausted: bool,
}

fn run<T: Decodable>(seed: u64, plan: &Plan, version: i16) -> Run<T> {
    let mut src = Source::new(seed, plan);
    let value = T::decode(&mut src, version).ok();
    Run {
        value,
        shape: src.shape,
        values: src.values,
        exhausted: src.exhausted,
    }
}

/// What went into one generated value, for the coverage test.
#[derive(Debug, Clone, Copy, Default)]
pub struct Coverage {
    /// Plain INT32 fields, and how many of them hold `i32::MIN`, -1, 0 or `i32::MAX`.
    pub plain_i32: usize,
    pub plain_i32_extreme: usize,
    /// Length reads, and how many were made large (at least 1000 bytes).
    pub lengths: usize,
    pub large_lengths: usize,
    /// Count reads with at least one element (arrays, tagged-field counts).
    pub counts: usize,
    /// Largest array count seen (elements).
    pub max_elements: i64,
    /// Plain varints (tag numbers, booleans) given a value of 128 or more.
    pub high_varints: usize,
}

/// Pass 2: the role of every INT16, INT32 and varint read of `base`.
fn classify<T: Decodable>(
    seed: u64,
    plan: &Plan,
    version: i16,
    base: &Run<T>,
) -> Vec<Option<Role>> {
    let numeric = |r: Read| matches!(r, Read::U8 | Read::I16 | Read::I32);
    let mut roles: Vec<Option<Role>> = vec![None; base.shape.len()];
    let mut unknown = Vec::new();
    for (i, &read) in base.shape.iter().enumerate() {
        if !numeric(read) {
            continue;
        }
        let v = base.values[i];
        let wire_len = if read == Read::U8 { v - 1 } else { v };
        if wire_len >= 0 && base.shape.get(i + 1) == Some(&Read::Bytes(wire_len as usize)) {
            roles[i] = Some(Role::Length);
        } else {
            unknown.push(i);
        }
    }
    // Group testing: perturb a set of reads at once; an unchanged shape means all are plain.
    // Perturbations only add elements or bytes, so two of them cannot cancel out.
    let unchanged = |set: &[usize]| {
        let mut p = plan.clone();
        for &i in set {
            let v = base.values[i];
            let perturbed = match base.shape[i] {
                // Two varint bytes: a boolean followed by another varint read swallows the
                // second byte and changes the shape, so only safe reads look plain.
                Read::U8 => v + 128,
                // -1 to 0 would turn a null array into an empty one: the same reads.
                _ if v < 0 => 1,
                _ => v + 1,
            };
            p.set_value(i, perturbed);
        }
        let r = run::<T>(seed, &p, version);
        r.value.is_some() && r.shape == base.shape
    };
    let mut stack = vec![unknown];
    while let Some(set) = stack.pop() {
        if set.is_empty() {
            continue;
        }
        if unchanged(&set) {
            for i in set {
                roles[i] = Some(Role::Plain);
            }
        } else if set.len() == 1 {
            roles[set[0]] = Some(Role::Count);
        } else {
            let (a, b) = set.split_at(set.len() / 2);
            stack.push(a.to_vec());
            stack.push(b.to_vec());
        }
    }
    roles
}

/// A random valid `T` at `version`, built from `seed`, with what it covers. `None` when no
/// structure was found within the attempts (rare; the coverage test bounds how rare).
pub fn generate<T: Decodable>(version: i16, seed: u64) -> Option<(T, Coverage)> {
    // Pass 1: a structure the decoder accepts.
    let mut seed = seed;
    let mut plan = Plan::default();
    let mut base = None;
    for attempt in 1..=200u64 {
        let r = run::<T>(seed, &plan, version);
        if r.value.is_some() {
            base = Some(r);
            break;
        }
        if r.exhausted {
            seed = mix(seed);
            plan = Plan::default();
        } else {
            // The read that made the decoder bail is among the last few (a count of -1 just
            // read; a tag number followed by its size).
            let n = r.shape.len();
            for i in n.saturating_sub(3)..n {
                plan.set_salt(i, attempt);
            }
        }
    }
    let base = base?;
    let roles = classify::<T>(seed, &plan, version, &base);

    // Pass 3: extremes in plain values, large byte strings, same counts.
    for salt in 0..8u64 {
        let mut p = plan.clone();
        let mut surrogate = plan.clone();
        let mut cov = Coverage::default();
        let mut large = 0;
        for (i, role) in roles.iter().enumerate() {
            let Some(role) = role else { continue };
            let r = mix(seed ^ mix(i as u64 ^ 0x5eed ^ (salt << 40)));
            let read = base.shape[i];
            let v = base.values[i];
            let value = match role {
                Role::Count => {
                    let elements = if read == Read::U8 { v - 1 } else { v };
                    // Nulls and empty arrays (and null strings, whose -1 is not followed
                    // by a byte-string read) are not elements.
                    if elements > 0 {
                        cov.counts += 1;
                    }
                    cov.max_elements = cov.max_elements.max(elements);
                    v
                }
                Role::Length => {
                    cov.lengths += 1;
                    if large < LARGE_LENGTHS_MAX && r.is_multiple_of(5) {
                        large += 1;
                        cov.large_lengths += 1;
                        let n = match read {
                            Read::I16 => 1000 + (r >> 8) % 31_000,
                            Read::I32 => 1000 + (r >> 8) % 200_000,
                            _ => 1000 + (r >> 8) % 40_000,
                        } as i64;
                        if read == Read::U8 {
                            n + 1
                        } else {
                            n
                        }
                    } else {
                        v
                    }
                }
                Role::Plain => match read {
                    Read::I32 => {
                        cov.plain_i32 += 1;
                        let x = [i32::MIN, -1, 0, i32::MAX]
                            .get((r % 7) as usize)
                            .copied()
                            .unwrap_or((r >> 8) as i32);
                        if [i32::MIN, -1, 0, i32::MAX].contains(&x) {
                            cov.plain_i32_extreme += 1;
                        }
                        i64::from(x)
                    }
                    Read::I16 => i64::from(
                        [i16::MIN, -1, 0, i16::MAX]
                            .get((r % 7) as usize)
                            .copied()
                            .unwrap_or((r >> 8) as i16),
                    ),
                    // Tag numbers and booleans: up to the guard's documented bound for a
                    // tag number with few bytes after it (`guard::TAG_SLACK`).
                    _ => {
                        let slack = TAG_SLACK as i64;
                        let x = [0, 1, 127, 128, slack - 1, slack]
                            .get((r % 9) as usize)
                            .copied()
                            .unwrap_or(((r >> 8) % TAG_SLACK) as i64);
                        if x >= 128 {
                            cov.high_varints += 1;
                        }
                        x
                    }
                },
            };
            p.set_value(i, value);
            if *role == Role::Plain && matches!(read, Read::I16 | Read::I32) {
                surrogate.set_value(i, SURROGATE);
            } else {
                surrogate.set_value(i, value);
            }
        }
        // Safety first: classification compares read kinds, and a count mistaken for a
        // plain value (a shifted sequence of INT32 reads can look the same) would make the
        // decoder reserve memory for `i32::MAX` elements. With SURROGATE in every plain
        // INT16/INT32 a count would need more reads than READS_MAX allows, so a surrogate
        // run with the structure pass's fields proves none of them is a count.
        let check = run::<T>(seed, &surrogate, version);
        if check.value.is_none() || !same_fields(&check.shape, &base.shape) {
            continue;
        }
        let r = run::<T>(seed, &p, version);
        // Same reads as the structure pass, or the values went to other fields than the
        // classification was for (a plain varint that became a known tag number, say).
        if let (Some(value), true) = (r.value, same_fields(&r.shape, &base.shape)) {
            return Some((value, cov));
        }
    }
    // No extremes kept the structure: the structure pass's value is still a valid request.
    base.value.map(|v| (v, Coverage::default()))
}

/// A random valid request of `api` at `version`; `None` if no generator covers `api`.
pub fn generate_request(
    api: ApiKey,
    version: i16,
    seed: u64,
) -> Option<Option<(RequestKind, Coverage)>> {
    use kafka_protocol::messages::*;
    macro_rules! generators {
        ($($key:ident => $ty:ty),* $(,)?) => {
            match api {
                $(ApiKey::$key => Some(
                    generate::<$ty>(version, seed).map(|(v, c)| (RequestKind::$key(v), c))
                ),)*
                _ => None,
            }
        };
    }
    generators! {
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
        CreateAcls => CreateAclsRequest,
        DescribeAcls => DescribeAclsRequest,
        DeleteAcls => DeleteAclsRequest,
        DescribeUserScramCredentials => DescribeUserScramCredentialsRequest,
        AlterUserScramCredentials => AlterUserScramCredentialsRequest,
        DescribeClientQuotas => DescribeClientQuotasRequest,
        AlterClientQuotas => AlterClientQuotasRequest,
    }
}
