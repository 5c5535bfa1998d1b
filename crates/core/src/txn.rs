//! The open transactions of one partition, followed batch by batch: per producer the first
//! offset of its open transaction, and the aborted-transaction entry an abort marker
//! completes. Shared by the broker's producer state and the engines that rebuild an
//! aborted-transaction index from their batches. Pure data: no I/O.

use std::collections::{BTreeMap, HashMap};

use crate::storage::AbortedTxn;
use crate::types::Offset;
use crate::{ControlType, RecordBatch};

/// The entries of `aborted` (sorted by marker offset, as every engine keeps them) that
/// overlap `[from, to)`: marker at or after `from`, first record before `to`. What a
/// read_committed Fetch of that range reports.
pub fn aborted_overlapping(aborted: &[AbortedTxn], from: Offset, to: Offset) -> Vec<AbortedTxn> {
    let a = aborted.partition_point(|e| e.last_offset < from);
    aborted[a..]
        .iter()
        .filter(|e| e.first_offset < to)
        .copied()
        .collect()
}

/// Inserts `e` into `aborted` (sorted by marker offset) unless an entry with its marker is
/// there already; whether it was inserted.
pub fn insert_aborted(aborted: &mut Vec<AbortedTxn>, e: AbortedTxn) -> bool {
    match aborted.binary_search_by_key(&e.last_offset, |a| a.last_offset) {
        Ok(_) => false,
        Err(at) => {
            aborted.insert(at, e);
            true
        }
    }
}

/// Open transactions of one partition. Not thread-safe on its own.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OpenTxns {
    /// Per producer id with a transaction open here: its first offset.
    ongoing: HashMap<i64, Offset>,
    /// First offsets of the open transactions, counted (the count keeps removal simple):
    /// the smallest is what the last stable offset stops at.
    first_offsets: BTreeMap<Offset, usize>,
}

impl OpenTxns {
    /// A data batch at `base_offset`: a transactional one opens its producer's
    /// transaction here if none is open.
    pub fn on_data_batch(&mut self, producer_id: i64, transactional: bool, base_offset: Offset) {
        if !transactional || producer_id < 0 {
            return;
        }
        if let std::collections::hash_map::Entry::Vacant(e) = self.ongoing.entry(producer_id) {
            e.insert(base_offset);
            *self.first_offsets.entry(base_offset).or_default() += 1;
        }
    }

    /// A marker of `producer_id` at `offset`: ends its transaction; an abort of an open
    /// transaction returns its aborted-transaction entry.
    pub fn on_marker(
        &mut self,
        producer_id: i64,
        commit: bool,
        offset: Offset,
    ) -> Option<AbortedTxn> {
        let first = self.ongoing.remove(&producer_id)?;
        if let Some(n) = self.first_offsets.get_mut(&first) {
            *n -= 1;
            if *n == 0 {
                self.first_offsets.remove(&first);
            }
        }
        (!commit).then(|| AbortedTxn {
            producer_id,
            first_offset: first,
            last_offset: offset,
            last_stable_offset: self.first_unstable_offset().unwrap_or(offset.plus(1)),
        })
    }

    /// Follows one stored batch (data or control); returns the entry an abort marker
    /// completes.
    pub fn observe(&mut self, batch: &RecordBatch) -> Option<AbortedTxn> {
        if batch.is_control() {
            let kind = batch.control_type()?;
            return self.on_marker(
                batch.producer_id(),
                kind == ControlType::Commit,
                batch.base_offset(),
            );
        }
        self.on_data_batch(
            batch.producer_id(),
            batch.is_transactional(),
            batch.base_offset(),
        );
        None
    }

    /// The first offset of the earliest transaction still open, if any.
    pub fn first_unstable_offset(&self) -> Option<Offset> {
        self.first_offsets.keys().next().copied()
    }

    /// The first offset of `producer_id`'s open transaction, if any.
    pub fn ongoing(&self, producer_id: i64) -> Option<Offset> {
        self.ongoing.get(&producer_id).copied()
    }

    /// Every open transaction: (producer id, first offset), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, Offset)> + '_ {
        self.ongoing.iter().map(|(p, o)| (*p, *o))
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.ongoing.clear();
        self.first_offsets.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(first: i64, marker: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: first,
            first_offset: Offset(first),
            last_offset: Offset(marker),
            last_stable_offset: Offset(marker + 1),
        }
    }

    #[test]
    fn the_aborted_list_stays_sorted_and_answers_overlaps() {
        let mut list = Vec::new();
        for (first, marker) in [(10, 14), (0, 3), (5, 20), (0, 3)] {
            insert_aborted(&mut list, entry(first, marker));
        }
        let markers: Vec<i64> = list.iter().map(|e| e.last_offset.0).collect();
        assert_eq!(markers, [3, 14, 20], "sorted, the repeated marker once");
        let overlap = |from, to| -> Vec<i64> {
            aborted_overlapping(&list, Offset(from), Offset(to))
                .iter()
                .map(|e| e.last_offset.0)
                .collect()
        };
        assert_eq!(overlap(0, 100), [3, 14, 20]);
        assert_eq!(
            overlap(4, 10),
            [20],
            "marker past from, first record before to"
        );
        assert_eq!(overlap(4, 11), [14, 20]);
        assert_eq!(overlap(3, 4), [3], "a marker at from overlaps");
        assert_eq!(overlap(21, 30), Vec::<i64>::new());
        assert_eq!(overlap(0, 0), Vec::<i64>::new(), "an empty range");
    }
    use crate::batch::{control_batch, BatchBuilder};
    use crate::Timestamp;

    fn txn_batch(pid: i64, offset: i64) -> RecordBatch {
        let mut b = BatchBuilder::new(Offset(offset))
            .producer(pid, 0, 0)
            .transactional()
            .kv(b"k", b"v", Timestamp(0))
            .build();
        b.set_base_offset(Offset(offset));
        b
    }

    fn marker(pid: i64, kind: ControlType, offset: i64) -> RecordBatch {
        let mut b = control_batch(pid, 0, 0, kind, Timestamp(0));
        b.set_base_offset(Offset(offset));
        b
    }

    #[test]
    fn aborts_give_entries_with_the_lso_after_them() {
        let mut t = OpenTxns::default();
        assert_eq!(t.observe(&txn_batch(1, 0)), None);
        assert_eq!(t.observe(&txn_batch(2, 1)), None);
        assert_eq!(t.observe(&txn_batch(1, 2)), None);
        assert_eq!(t.first_unstable_offset(), Some(Offset(0)));
        // Producer 1 aborts at 3: producer 2 is still open from 1.
        assert_eq!(
            t.observe(&marker(1, ControlType::Abort, 3)),
            Some(AbortedTxn {
                producer_id: 1,
                first_offset: Offset(0),
                last_offset: Offset(3),
                last_stable_offset: Offset(1),
            })
        );
        // Producer 2 commits: no entry; a later abort with nothing open gives none either.
        assert_eq!(t.observe(&marker(2, ControlType::Commit, 4)), None);
        assert_eq!(t.observe(&marker(2, ControlType::Abort, 5)), None);
        assert_eq!(t.first_unstable_offset(), None);
        t.observe(&txn_batch(3, 6));
        assert_eq!(
            t.observe(&marker(3, ControlType::Abort, 7))
                .map(|a| a.last_stable_offset),
            Some(Offset(8))
        );
    }
}
