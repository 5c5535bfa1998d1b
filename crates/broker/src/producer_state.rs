//! Idempotent-producer state of one partition: per producer id, its epoch and the last
//! batches it wrote, so a resent batch is answered with its original offsets instead of
//! being written twice, and a gap in sequence numbers is refused. It also holds the
//! partition's transactions: per producer the first offset of its open transaction (what
//! the last stable offset stops at) and the aborted transactions (Kafka's aborted
//! transaction index, in memory: rebuilt from the batch headers when the partition opens).

use std::collections::{BTreeMap, HashMap, VecDeque};

use rafka_core::limits::PRODUCER_BATCHES_REMEMBERED;
use rafka_core::{Offset, RecordBatch};

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

#[derive(Debug, Default)]
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

/// An aborted transaction on a partition, as Fetch reports it to read_committed readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    /// Producer id of the transaction.
    pub producer_id: i64,
    /// Offset of its first record on this partition.
    pub first_offset: Offset,
    /// Offset of its abort marker.
    pub last_offset: Offset,
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
#[derive(Debug, Default)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
    /// Per producer id with a transaction open on this partition: its first offset.
    ongoing: HashMap<i64, Offset>,
    /// First offsets of the open transactions, counted (two producers may not share an
    /// offset, but the count keeps removal simple): the smallest is the LSO bound.
    first_offsets: BTreeMap<Offset, usize>,
    /// Aborted transactions in marker order (so sorted by `last_offset`).
    aborted: VecDeque<AbortedTxn>,
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
        self.ongoing.clear();
        self.first_offsets.clear();
        self.aborted.clear();
    }

    /// Notes a data batch appended at `base_offset` (or found in the log on recovery): a
    /// transactional one opens its producer's transaction here if none is open.
    pub fn record_txn_batch(&mut self, batch: TxnSpan, base_offset: Offset) {
        if !batch.transactional || batch.producer_id < 0 {
            return;
        }
        let pid = batch.producer_id;
        if let std::collections::hash_map::Entry::Vacant(e) = self.ongoing.entry(pid) {
            e.insert(base_offset);
            *self.first_offsets.entry(base_offset).or_default() += 1;
        }
    }

    /// A marker (commit or abort) of `producer_id` at epoch `epoch` written at `offset`:
    /// ends the producer's transaction here, records an abort in the aborted list, and
    /// moves the producer to the marker's epoch (older batches are fenced from now on).
    pub fn end_txn(&mut self, producer_id: i64, epoch: i16, commit: bool, offset: Offset) {
        let entry = self.producers.entry(producer_id).or_default();
        if epoch > entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        let Some(first) = self.ongoing.remove(&producer_id) else {
            return;
        };
        if let Some(n) = self.first_offsets.get_mut(&first) {
            *n -= 1;
            if *n == 0 {
                self.first_offsets.remove(&first);
            }
        }
        if !commit {
            self.aborted.push_back(AbortedTxn {
                producer_id,
                first_offset: first,
                last_offset: offset,
            });
        }
    }

    /// The epoch this partition knows for `producer_id`, if any.
    pub fn epoch_of(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(&producer_id).map(|e| e.epoch)
    }

    /// The first offset of the earliest transaction still open here, if any.
    pub fn first_unstable_offset(&self) -> Option<Offset> {
        self.first_offsets.keys().next().copied()
    }

    /// The first offset of `producer_id`'s open transaction here, if any.
    pub fn ongoing_txn(&self, producer_id: i64) -> Option<Offset> {
        self.ongoing.get(&producer_id).copied()
    }

    /// Aborted transactions overlapping `[from, to)`: those whose marker is at or after
    /// `from` and whose first record is before `to`.
    pub fn aborted_between(&self, from: Offset, to: Offset) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted
            .iter()
            .skip(start)
            .filter(|a| a.first_offset < to)
            .copied()
            .collect()
    }

    /// Forgets aborted transactions whose marker is below `log_start` (retention and
    /// DeleteRecords removed them).
    pub fn prune_aborted(&mut self, log_start: Offset) {
        while self
            .aborted
            .front()
            .is_some_and(|a| a.last_offset < log_start)
        {
            self.aborted.pop_front();
        }
    }

    /// Producers with state here: (producer id, epoch, last sequence, first offset of the
    /// open transaction), for DescribeProducers.
    pub fn describe(&self) -> Vec<(i64, i16, i32, Option<Offset>)> {
        let mut out: Vec<_> = self
            .producers
            .iter()
            .map(|(pid, e)| {
                let last = e.batches.back().map_or(-1, |b| b.last_sequence);
                (*pid, e.epoch, last, self.ongoing.get(pid).copied())
            })
            .collect();
        out.sort_by_key(|p| p.0);
        out
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
        s.end_txn(1, 0, false, Offset(4));
        assert_eq!(s.first_unstable_offset(), Some(Offset(1)));
        // Producer 2 commits (marker at 5): nothing open, nothing aborted for it.
        s.end_txn(2, 0, true, Offset(5));
        assert_eq!(s.first_unstable_offset(), None);
        let one = AbortedTxn {
            producer_id: 1,
            first_offset: Offset(0),
            last_offset: Offset(4),
        };
        assert_eq!(s.aborted_between(Offset(0), Offset(10)), vec![one]);
        assert_eq!(s.aborted_between(Offset(4), Offset(5)), vec![one]);
        assert_eq!(s.aborted_between(Offset(5), Offset(10)), vec![]);
        // A marker with a bumped epoch fences the older epoch.
        s.end_txn(1, 1, false, Offset(6));
        assert_eq!(s.check(&txn_batch(1, 0, 2, 0)), SequenceCheck::Fenced);
        assert_eq!(s.check(&txn_batch(1, 1, 0, 0)), SequenceCheck::Append);
        s.prune_aborted(Offset(5));
        assert_eq!(s.aborted_between(Offset(0), Offset(10)), vec![]);
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
