//! Idempotent-producer state of one partition: per producer id, its epoch and the last
//! batches it wrote, so a resent batch is answered with its original offsets instead of
//! being written twice, and a gap in sequence numbers is refused. It also holds the
//! partition's open transactions: per producer the first offset of its open transaction
//! (what the last stable offset stops at). The aborted transactions an abort marker
//! completes are handed to the storage engine, which keeps them durably (Kafka's
//! aborted-transaction index).
//!
//! The state is persisted as a producer snapshot ([`ProducerStates::encode`]) at a known
//! offset, so a partition opens by decoding it and replaying only the batch headers after
//! that offset.

use std::collections::{HashMap, VecDeque};

use rafka_core::limits::PRODUCER_BATCHES_REMEMBERED;
use rafka_core::txn::OpenTxns;
use rafka_core::{Offset, RecordBatch};

pub use rafka_core::AbortedTxn;

/// A batch already written by an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrittenBatch {
    /// Sequence of the first record.
    pub first_sequence: i32,
    /// Sequence of the last record.
    pub last_sequence: i32,
    /// Offset the batch was given.
    pub base_offset: Offset,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<WrittenBatch>,
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Not idempotent, or the next batch in sequence: append it.
    Append,
    /// Already written: answer with its original base offset, write nothing.
    Duplicate(Offset),
    /// A sequence gap or an unknown producer starting mid-stream.
    OutOfOrder {
        /// The sequence the broker expected.
        expected: i32,
    },
    /// An epoch older than the producer's current one.
    Fenced,
}

/// The idempotence fields of a batch header, kept so the batch itself can be handed to the
/// log without a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequenceSpan {
    /// Producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch.
    pub epoch: i16,
    /// Sequence of the first record, or -1.
    pub first_sequence: i32,
    /// Sequence of the last record.
    pub last_sequence: i32,
}

impl SequenceSpan {
    /// Reads the fields from a batch header.
    pub fn of(batch: &RecordBatch) -> SequenceSpan {
        SequenceSpan {
            producer_id: batch.producer_id(),
            epoch: batch.producer_epoch(),
            first_sequence: batch.base_sequence(),
            last_sequence: batch.last_sequence(),
        }
    }
}

/// The transaction fields of a data batch's header, kept so the batch itself can be
/// handed to the log without a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnSpan {
    /// Producer id, or -1.
    pub producer_id: i64,
    /// Whether the batch is transactional (and not a control batch).
    pub transactional: bool,
}

impl TxnSpan {
    /// Reads the fields from a batch header.
    pub fn of(batch: &RecordBatch) -> TxnSpan {
        TxnSpan {
            producer_id: batch.producer_id(),
            transactional: batch.is_transactional() && !batch.is_control(),
        }
    }
}

/// Producer state of one partition. Not thread-safe on its own: the partition keeps it
/// under the same lock as its appends, so check-then-append is atomic.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
    /// The open transactions: per producer its first offset; the smallest bounds the LSO.
    txns: OpenTxns,
}

fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX {
        0
    } else {
        last + 1
    }
}

impl ProducerStates {
    /// Decides what to do with `batch` (without changing state).
    pub fn check(&self, batch: &RecordBatch) -> SequenceCheck {
        let pid = batch.producer_id();
        if pid < 0 || batch.base_sequence() < 0 {
            return SequenceCheck::Append;
        }
        let epoch = batch.producer_epoch();
        let first = batch.base_sequence();
        let Some(entry) = self.producers.get(&pid) else {
            return if first == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrder { expected: 0 }
            };
        };
        if epoch < entry.epoch {
            return SequenceCheck::Fenced;
        }
        if epoch > entry.epoch {
            return if first == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrder { expected: 0 }
            };
        }
        let last = batch.last_sequence();
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_sequence == first && b.last_sequence == last)
        {
            return SequenceCheck::Duplicate(dup.base_offset);
        }
        let expected = entry
            .batches
            .back()
            .map_or(0, |b| next_sequence(b.last_sequence));
        if first == expected {
            SequenceCheck::Append
        } else {
            SequenceCheck::OutOfOrder { expected }
        }
    }

    /// Records a batch that was appended at `base_offset` (or found in the log on recovery).
    pub fn record(&mut self, span: SequenceSpan, base_offset: Offset) {
        if span.producer_id < 0 || span.first_sequence < 0 {
            return;
        }
        let entry = self.producers.entry(span.producer_id).or_default();
        if span.epoch != entry.epoch {
            entry.epoch = span.epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == PRODUCER_BATCHES_REMEMBERED {
            entry.batches.pop_front();
        }
        entry.batches.push_back(WrittenBatch {
            first_sequence: span.first_sequence,
            last_sequence: span.last_sequence,
            base_offset,
        });
    }

    /// Forgets everything (after truncation or deletion of the whole log).
    pub fn clear(&mut self) {
        self.producers.clear();
        self.txns.clear();
    }

    /// Notes a data batch appended at `base_offset` (or found in the log on recovery): a
    /// transactional one opens its producer's transaction here if none is open.
    pub fn record_txn_batch(&mut self, batch: TxnSpan, base_offset: Offset) {
        self.txns
            .on_data_batch(batch.producer_id, batch.transactional, base_offset);
    }

    /// A marker (commit or abort) of `producer_id` at epoch `epoch` written at `offset`:
    /// ends the producer's transaction here and moves the producer to the marker's epoch
    /// (older batches are fenced from now on). An abort of an open transaction returns
    /// the aborted-transaction entry for the storage engine to record.
    pub fn end_txn(
        &mut self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        offset: Offset,
    ) -> Option<AbortedTxn> {
        let entry = self.producers.entry(producer_id).or_default();
        if epoch > entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        self.txns.on_marker(producer_id, commit, offset)
    }

    /// Puts back a producer's state kept elsewhere (the diskless coordinator's
    /// `rafka_producers` rows): its epoch and last batches, oldest first.
    pub fn restore(&mut self, producer_id: i64, epoch: i16, batches: Vec<WrittenBatch>) {
        let mut batches: VecDeque<WrittenBatch> = batches.into();
        while batches.len() > PRODUCER_BATCHES_REMEMBERED {
            batches.pop_front();
        }
        self.producers
            .insert(producer_id, ProducerEntry { epoch, batches });
    }

    /// A producer's epoch and last batches (oldest first), to keep elsewhere.
    pub fn entry(&self, producer_id: i64) -> Option<(i16, Vec<WrittenBatch>)> {
        self.producers
            .get(&producer_id)
            .map(|e| (e.epoch, e.batches.iter().copied().collect()))
    }

    /// The epoch this partition knows for `producer_id`, if any.
    pub fn epoch_of(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(&producer_id).map(|e| e.epoch)
    }

    /// The first offset of the earliest transaction still open here, if any.
    pub fn first_unstable_offset(&self) -> Option<Offset> {
        self.txns.first_unstable_offset()
    }

    /// The first offset of `producer_id`'s open transaction here, if any.
    pub fn ongoing_txn(&self, producer_id: i64) -> Option<Offset> {
        self.txns.ongoing(producer_id)
    }

    /// Producers with state here: (producer id, epoch, last sequence, first offset of the
    /// open transaction), for DescribeProducers.
    pub fn describe(&self) -> Vec<(i64, i16, i32, Option<Offset>)> {
        let mut out: Vec<_> = self
            .producers
            .iter()
            .map(|(pid, e)| {
                let last = e.batches.back().map_or(-1, |b| b.last_sequence);
                (*pid, e.epoch, last, self.txns.ongoing(*pid))
            })
            .collect();
        out.sort_by_key(|p| p.0);
        out
    }
}

/// First bytes of an encoded producer snapshot (format version 1).
const SNAPSHOT_MAGIC: &[u8; 4] = b"RPS1";

/// A cursor over snapshot bytes; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_at_checked(N)?;
        self.0 = rest;
        head.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take::<1>()?[0])
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take()?))
    }
}

impl ProducerStates {
    /// The state as producer-snapshot bytes. Layout (big-endian): magic `RPS1`; CRC-32C of
    /// everything after it (u32); producer count (u32), then per producer its id (i64),
    /// epoch (i16), count of remembered batches (u8), and per batch its first sequence
    /// (i32), last sequence (i32) and base offset (i64); then the open transactions'
    /// count (u32) and per transaction the producer id (i64) and first offset (i64).
    /// Producers and transactions sorted by producer id, so equal states encode equally.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.producers.len() * 40);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&[0; 4]);
        let mut pids: Vec<&i64> = self.producers.keys().collect();
        pids.sort();
        out.extend_from_slice(&(pids.len() as u32).to_be_bytes());
        for pid in pids {
            let e = &self.producers[pid];
            out.extend_from_slice(&pid.to_be_bytes());
            out.extend_from_slice(&e.epoch.to_be_bytes());
            out.push(e.batches.len() as u8);
            for b in &e.batches {
                out.extend_from_slice(&b.first_sequence.to_be_bytes());
                out.extend_from_slice(&b.last_sequence.to_be_bytes());
                out.extend_from_slice(&b.base_offset.0.to_be_bytes());
            }
        }
        let mut open: Vec<(i64, Offset)> = self.txns.iter().collect();
        open.sort();
        out.extend_from_slice(&(open.len() as u32).to_be_bytes());
        for (pid, first) in open {
            out.extend_from_slice(&pid.to_be_bytes());
            out.extend_from_slice(&first.0.to_be_bytes());
        }
        let crc = crc32c::crc32c(&out[8..]);
        out[4..8].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// The state from [`encode`](ProducerStates::encode)'s bytes; `None` if they are
    /// damaged (CRC, magic, counts past the end, trailing bytes), never a panic.
    pub fn decode(bytes: &[u8]) -> Option<ProducerStates> {
        let mut r = Reader(bytes);
        if r.take::<4>()? != *SNAPSHOT_MAGIC {
            return None;
        }
        let crc = r.u32()?;
        if crc32c::crc32c(r.0) != crc {
            return None;
        }
        let mut s = ProducerStates::default();
        let n = r.u32()?;
        for _ in 0..n {
            let pid = r.i64()?;
            let epoch = r.i16()?;
            let n_batches = r.u8()? as usize;
            if n_batches > PRODUCER_BATCHES_REMEMBERED {
                return None;
            }
            let mut batches = VecDeque::with_capacity(n_batches);
            for _ in 0..n_batches {
                batches.push_back(WrittenBatch {
                    first_sequence: r.i32()?,
                    last_sequence: r.i32()?,
                    base_offset: Offset(r.i64()?),
                });
            }
            s.producers.insert(pid, ProducerEntry { epoch, batches });
        }
        let n = r.u32()?;
        for _ in 0..n {
            let pid = r.i64()?;
            let first = Offset(r.i64()?);
            s.txns.on_data_batch(pid, true, first);
        }
        r.0.is_empty().then_some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rafka_core::batch::BatchBuilder;
    use rafka_core::Timestamp;

    fn batch(pid: i64, epoch: i16, seq: i32, n: usize, offset: i64) -> RecordBatch {
        let mut b = BatchBuilder::new(Offset(offset)).producer(pid, epoch, seq);
        for _ in 0..n {
            b = b.kv(b"k", b"v", Timestamp(0));
        }
        b.build()
    }

    #[test]
    fn sequences_duplicates_gaps_and_fencing() {
        let mut s = ProducerStates::default();
        let b0 = batch(7, 0, 0, 3, 0);
        assert_eq!(s.check(&b0), SequenceCheck::Append);
        s.record(SequenceSpan::of(&b0), b0.base_offset());
        assert_eq!(s.check(&b0), SequenceCheck::Duplicate(Offset(0)));
        assert_eq!(
            s.check(&batch(7, 0, 5, 1, 0)),
            SequenceCheck::OutOfOrder { expected: 3 }
        );
        let b1 = batch(7, 0, 3, 2, 3);
        assert_eq!(s.check(&b1), SequenceCheck::Append);
        s.record(SequenceSpan::of(&b1), b1.base_offset());
        let b2 = batch(7, 1, 0, 1, 5);
        assert_eq!(s.check(&b2), SequenceCheck::Append);
        s.record(SequenceSpan::of(&b2), b2.base_offset());
        assert_eq!(s.check(&batch(7, 0, 5, 1, 0)), SequenceCheck::Fenced);
        assert_eq!(
            s.check(&batch(8, 0, 4, 1, 0)),
            SequenceCheck::OutOfOrder { expected: 0 }
        );
        assert_eq!(s.check(&batch(-1, -1, -1, 1, 0)), SequenceCheck::Append);
    }

    fn txn_batch(pid: i64, epoch: i16, seq: i32, offset: i64) -> RecordBatch {
        BatchBuilder::new(Offset(offset))
            .producer(pid, epoch, seq)
            .transactional()
            .kv(b"k", b"v", Timestamp(0))
            .build()
    }

    #[test]
    fn open_transactions_bound_the_lso_and_aborts_are_listed() {
        let mut s = ProducerStates::default();
        assert_eq!(s.first_unstable_offset(), None);
        // Producer 1 opens at 0 (and writes again at 2), producer 2 opens at 1.
        s.record_txn_batch(TxnSpan::of(&txn_batch(1, 0, 0, 0)), Offset(0));
        s.record_txn_batch(TxnSpan::of(&txn_batch(2, 0, 0, 1)), Offset(1));
        s.record_txn_batch(TxnSpan::of(&txn_batch(1, 0, 1, 2)), Offset(2));
        // A plain batch opens nothing.
        s.record_txn_batch(TxnSpan::of(&batch(3, 0, 0, 1, 3)), Offset(3));
        assert_eq!(s.first_unstable_offset(), Some(Offset(0)));
        assert_eq!(s.ongoing_txn(1), Some(Offset(0)));
        // Producer 1 aborts (marker at 4): the LSO bound moves to producer 2's first offset.
        let one = AbortedTxn {
            producer_id: 1,
            first_offset: Offset(0),
            last_offset: Offset(4),
            last_stable_offset: Offset(1),
        };
        assert_eq!(s.end_txn(1, 0, false, Offset(4)), Some(one));
        assert_eq!(s.first_unstable_offset(), Some(Offset(1)));
        // Producer 2 commits (marker at 5): nothing open, nothing aborted for it.
        assert_eq!(s.end_txn(2, 0, true, Offset(5)), None);
        assert_eq!(s.first_unstable_offset(), None);
        // A marker with a bumped epoch fences the older epoch; nothing was open.
        assert_eq!(s.end_txn(1, 1, false, Offset(6)), None);
        assert_eq!(s.check(&txn_batch(1, 0, 2, 0)), SequenceCheck::Fenced);
        assert_eq!(s.check(&txn_batch(1, 1, 0, 0)), SequenceCheck::Append);
    }

    #[test]
    fn snapshots_round_trip_and_damage_is_refused() {
        let mut s = ProducerStates::default();
        for i in 0..7 {
            let b = batch(1, 0, i, 1, i as i64);
            s.record(SequenceSpan::of(&b), b.base_offset());
        }
        let b = batch(9, 3, 0, 2, 7);
        s.record(SequenceSpan::of(&b), b.base_offset());
        s.record_txn_batch(TxnSpan::of(&txn_batch(4, 0, 0, 9)), Offset(9));
        s.record_txn_batch(TxnSpan::of(&txn_batch(2, 0, 0, 10)), Offset(10));
        let bytes = s.encode();
        let back = ProducerStates::decode(&bytes).expect("decodes");
        assert_eq!(back, s);
        assert_eq!(back.encode(), bytes);
        assert_eq!(back.first_unstable_offset(), Some(Offset(9)));
        assert_eq!(
            back.check(&batch(1, 0, 6, 1, 0)),
            SequenceCheck::Duplicate(Offset(6))
        );
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x20;
            assert_eq!(ProducerStates::decode(&bad), None, "flip at {i}");
            assert_eq!(ProducerStates::decode(&bytes[..i]), None, "cut at {i}");
        }
        assert_eq!(
            ProducerStates::decode(&ProducerStates::default().encode()),
            Some(ProducerStates::default())
        );
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut s = ProducerStates::default();
        for i in 0..7 {
            let b = batch(1, 0, i, 1, i as i64);
            s.record(SequenceSpan::of(&b), b.base_offset());
        }
        assert!(matches!(
            s.check(&batch(1, 0, 1, 1, 0)),
            SequenceCheck::OutOfOrder { .. }
        ));
        assert_eq!(
            s.check(&batch(1, 0, 6, 1, 0)),
            SequenceCheck::Duplicate(Offset(6))
        );
    }
}
