//! The aborted-transaction index of the `log` engine (Kafka's `.txnindex`): one
//! `<base offset, 20 digits>.txnindex` per segment, holding the aborted transactions whose
//! abort marker lies in that segment, in marker order.
//!
//! Layout: fixed-size entries of [`ENTRY_BYTES`] back to back, no file header. Each entry
//! is, big-endian: producer id (i64), first offset (i64), last offset = the marker's offset
//! (i64), last stable offset after the abort (i64), CRC-32C of those 32 bytes (u32).
//!
//! Every segment has the file (created empty with the segment, deleted with it), so a
//! missing file is damage, not "no aborts". The whole partition's entries are also kept in
//! memory ([`TxnIndex`]), sorted by marker offset; Fetch reads them from there.
//!
//! Durability: an entry is appended to the active segment's file when the broker records
//! the abort (after the marker's append) and synced by the next `flush`, or by the roll
//! that closes the segment. Recovery trusts a closed segment's file when every entry
//! checks out; a torn active file is cut at its first bad entry or at the first entry whose
//! marker the log recovery cut; a missing or damaged closed file makes the partition
//! rebuild every file by scanning its batches from the log start
//! ([`LogPartition::rebuild_txn_index`]). Truncation rewrites the file of the segment it
//! cuts; compaction writes the file of a cleaned segment beside its other files (the
//! entries whose markers the cleaner kept) and swaps it in with them.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rafka_core::txn::OpenTxns;
use rafka_core::{AbortedTxn, Offset, PartitionLog, RecordBatch, StorageResult};

use super::partition::LogPartition;
use super::segment::segment_path;
use crate::durable::{sync_dir, write_file_atomically};

/// File extension of a segment's aborted-transaction index.
pub(crate) const TXNINDEX_EXT: &str = "txnindex";

/// Bytes of one entry: four i64 fields and a CRC-32C.
pub(crate) const ENTRY_BYTES: usize = 36;

/// The entry's bytes.
pub(crate) fn encode(e: &AbortedTxn) -> [u8; ENTRY_BYTES] {
    let mut b = [0u8; ENTRY_BYTES];
    b[..8].copy_from_slice(&e.producer_id.to_be_bytes());
    b[8..16].copy_from_slice(&e.first_offset.0.to_be_bytes());
    b[16..24].copy_from_slice(&e.last_offset.0.to_be_bytes());
    b[24..32].copy_from_slice(&e.last_stable_offset.0.to_be_bytes());
    let crc = crc32c::crc32c(&b[..32]);
    b[32..].copy_from_slice(&crc.to_be_bytes());
    b
}

/// One entry from its bytes; `None` if the CRC fails or the fields are impossible.
pub(crate) fn decode(b: &[u8]) -> Option<AbortedTxn> {
    let b = b.get(..ENTRY_BYTES)?;
    let i64_at = |at: usize| i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let crc = u32::from_be_bytes(b[32..36].try_into().expect("4 bytes"));
    if crc32c::crc32c(&b[..32]) != crc {
        return None;
    }
    let e = AbortedTxn {
        producer_id: i64_at(0),
        first_offset: Offset(i64_at(8)),
        last_offset: Offset(i64_at(16)),
        last_stable_offset: Offset(i64_at(24)),
    };
    (e.producer_id >= 0 && e.first_offset.0 >= 0 && e.first_offset <= e.last_offset).then_some(e)
}

fn file_name(base: Offset) -> String {
    format!("{:020}.{TXNINDEX_EXT}", base.0)
}

/// Creates (or empties) the index file of a new segment. The caller syncs the directory.
pub(crate) fn create_empty(dir: &Path, base: Offset) -> io::Result<()> {
    fs::File::create(segment_path(dir, base, TXNINDEX_EXT)).map(drop)
}

/// Writes the whole index file of segment `base` (atomically) with `entries`.
pub(crate) fn write_file(dir: &Path, base: Offset, entries: &[AbortedTxn]) -> io::Result<()> {
    write_file_suffixed(dir, base, entries, "")
}

/// [`write_file`] to `<name><suffix>`, not atomically (the cleaner's `.cleaned` files
/// are swapped in by renames), synced.
pub(crate) fn write_file_suffixed(
    dir: &Path,
    base: Offset,
    entries: &[AbortedTxn],
    suffix: &str,
) -> io::Result<()> {
    let bytes: Vec<u8> = entries.iter().flat_map(encode).collect();
    if suffix.is_empty() {
        return write_file_atomically(dir, &file_name(base), &bytes);
    }
    let mut path = segment_path(dir, base, TXNINDEX_EXT).into_os_string();
    path.push(suffix);
    let mut f = fs::File::create(path)?;
    io::Write::write_all(&mut f, &bytes)?;
    f.sync_data()
}

/// What loading a segment's file found.
enum Loaded {
    /// Every entry checked out.
    Whole(Vec<AbortedTxn>),
    /// The good entries before the first bad one (or the first outside the range).
    Cut(Vec<AbortedTxn>),
    /// No file.
    Missing,
}

/// Reads segment `base`'s file, keeping entries whose marker is in `[base, next)` in
/// increasing marker order, up to the first that is not.
fn load_file(dir: &Path, base: Offset, next: Offset) -> io::Result<Loaded> {
    let bytes = match fs::read(segment_path(dir, base, TXNINDEX_EXT)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Loaded::Missing),
        Err(e) => return Err(e),
    };
    let mut entries: Vec<AbortedTxn> = Vec::with_capacity(bytes.len() / ENTRY_BYTES);
    for chunk in bytes.chunks(ENTRY_BYTES) {
        let ok = decode(chunk).filter(|e| {
            e.last_offset >= base
                && e.last_offset < next
                && entries.last().is_none_or(|l| l.last_offset < e.last_offset)
        });
        match ok {
            Some(e) => entries.push(e),
            None => return Ok(Loaded::Cut(entries)),
        }
    }
    Ok(Loaded::Whole(entries))
}

/// Every aborted-transaction entry of one partition, in memory, and which file the next
/// entry goes to. Guarded by the partition's state lock.
#[derive(Debug, Default)]
pub(crate) struct TxnIndex {
    /// Invariant: sorted by `last_offset`, no two alike; each entry's marker is in a
    /// stored segment (none below the log start once pruned).
    entries: Vec<AbortedTxn>,
    /// Whether the active segment's file has entries not yet synced.
    unsynced: bool,
    /// Set by recovery when a closed segment's file was missing or damaged: the
    /// partition rebuilds every file before it serves.
    pub(crate) needs_rebuild: bool,
}

impl TxnIndex {
    /// Loads the files of `segments` (base offset, next offset; the last is the active
    /// one, whose `next` is the recovered log end). A torn or over-long active file is cut
    /// (and rewritten); a missing or damaged closed one sets `needs_rebuild`.
    pub(crate) fn load(dir: &Path, segments: &[(Offset, Offset)]) -> io::Result<TxnIndex> {
        let mut index = TxnIndex::default();
        let n = segments.len();
        for (i, &(base, next)) in segments.iter().enumerate() {
            let active = i + 1 == n;
            // A closed segment's entries reach up to the next segment's base (compaction
            // may have removed the batches after its last marker).
            let end = if active { next } else { segments[i + 1].0 };
            match load_file(dir, base, end)? {
                Loaded::Whole(e) => index.entries.extend(e),
                Loaded::Cut(e) if active => {
                    tracing::warn!(dir = %dir.display(), segment = %base, kept = e.len(), "cutting the active segment's transaction index at its first bad entry");
                    write_file(dir, base, &e)?;
                    index.entries.extend(e);
                }
                Loaded::Missing if active && next == base => {
                    // An empty active segment whose (empty) file did not survive.
                    create_empty(dir, base)?;
                    sync_dir(dir)?;
                }
                Loaded::Cut(_) | Loaded::Missing => {
                    tracing::warn!(dir = %dir.display(), segment = %base, "transaction index missing or damaged; rebuilding it from the log");
                    index.needs_rebuild = true;
                    return Ok(index);
                }
            }
        }
        Ok(index)
    }

    /// Whether an entry with this marker offset is recorded.
    fn contains(&self, last_offset: Offset) -> bool {
        self.entries
            .binary_search_by_key(&last_offset, |e| e.last_offset)
            .is_ok()
    }

    /// Records `e`, whose marker is in the segment `[base, next)`: appended to that
    /// segment's file when it comes after every entry (the usual case: the marker was just
    /// appended to the active segment), else the file is rewritten. A known entry is ignored.
    pub(crate) fn record(
        &mut self,
        dir: &Path,
        e: AbortedTxn,
        base: Offset,
        next: Offset,
        active: bool,
    ) -> io::Result<()> {
        if self.contains(e.last_offset) {
            return Ok(());
        }
        let at = self
            .entries
            .partition_point(|x| x.last_offset < e.last_offset);
        self.entries.insert(at, e);
        if at + 1 == self.entries.len() && active {
            let f = OpenOptions::new()
                .append(true)
                .open(segment_path(dir, base, TXNINDEX_EXT))?;
            let len = f.metadata()?.len();
            // A torn entry from an earlier failed write must not sit before this one.
            let len = len - len % ENTRY_BYTES as u64;
            if let Err(err) = f
                .set_len(len)
                .and_then(|()| f.write_all_at(&encode(&e), len))
            {
                self.entries.remove(at);
                return Err(err);
            }
            self.unsynced = true;
            return Ok(());
        }
        let in_segment = self.between(base, next).to_vec();
        write_file(dir, base, &in_segment)
    }

    /// The entries whose marker is in `[from, to)`.
    pub(crate) fn between(&self, from: Offset, to: Offset) -> &[AbortedTxn] {
        let a = self.entries.partition_point(|e| e.last_offset < from);
        let b = self.entries.partition_point(|e| e.last_offset < to);
        &self.entries[a..b.max(a)]
    }

    /// Entries overlapping `[from, to)` (marker at or after `from`, first record before
    /// `to`).
    pub(crate) fn overlapping(&self, from: Offset, to: Offset) -> Vec<AbortedTxn> {
        rafka_core::txn::aborted_overlapping(&self.entries, from, to)
    }

    /// Forgets entries whose marker is below `log_start` (their segment's file goes with
    /// the segment).
    pub(crate) fn prune_below(&mut self, log_start: Offset) {
        let n = self.entries.partition_point(|e| e.last_offset < log_start);
        self.entries.drain(..n);
    }

    /// After a truncation to `log_end` whose new active segment starts at `base`: drops the
    /// entries from `log_end` on and rewrites that segment's file.
    pub(crate) fn truncate(&mut self, dir: &Path, base: Offset, log_end: Offset) -> io::Result<()> {
        let n = self.entries.partition_point(|e| e.last_offset < log_end);
        self.entries.truncate(n);
        let kept = self.between(base, log_end).to_vec();
        write_file(dir, base, &kept)?;
        self.unsynced = false;
        Ok(())
    }

    /// Replaces the entries with markers in `[from, to)` by `kept` (a compaction's swap).
    pub(crate) fn replace_range(&mut self, from: Offset, to: Offset, kept: &[AbortedTxn]) {
        let a = self.entries.partition_point(|e| e.last_offset < from);
        let b = self.entries.partition_point(|e| e.last_offset < to).max(a);
        self.entries.splice(a..b, kept.iter().copied());
    }

    /// Takes the "active file has unsynced entries" flag (a flush or roll is about to sync
    /// it).
    pub(crate) fn take_unsynced(&mut self) -> bool {
        std::mem::take(&mut self.unsynced)
    }

    /// Puts the flag back after a failed sync.
    pub(crate) fn mark_unsynced(&mut self) {
        self.unsynced = true;
    }
}

/// fsyncs segment `base`'s index file.
pub(crate) fn sync_file(dir: &Path, base: Offset) -> io::Result<()> {
    fs::File::open(segment_path(dir, base, TXNINDEX_EXT))?.sync_data()
}

impl LogPartition {
    /// Rebuilds every segment's index file by scanning the batches from the log start
    /// (following the open transactions as the broker does), then replaces the in-memory
    /// index. Runs at open, before the partition serves, when recovery found a file missing
    /// or damaged.
    pub(crate) fn rebuild_txn_index(&self) -> StorageResult<()> {
        let (start, end) = (self.log_start_offset(), self.log_end_offset());
        let mut open = OpenTxns::default();
        let mut entries = Vec::new();
        let mut at = start;
        while at < end {
            let r = self.read(at, 4 * 1024 * 1024)?;
            let batches = RecordBatch::split_all(r.records)?;
            let Some(next) = batches.last().map(|b| b.next_offset()) else {
                break;
            };
            entries.extend(batches.iter().filter_map(|b| open.observe(b)));
            if next <= at {
                break;
            }
            at = next;
        }
        let mut st = self.state.lock();
        let bounds: Vec<(Offset, Offset)> = st
            .segments
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let next = st
                    .segments
                    .get(i + 1)
                    .map_or(Offset(i64::MAX), |n| n.base_offset);
                (s.base_offset, next)
            })
            .collect();
        let mut index = TxnIndex {
            entries,
            ..TxnIndex::default()
        };
        for (base, next) in bounds {
            write_file(&self.dir, base, index.between(base, next))?;
        }
        index.needs_rebuild = false;
        tracing::info!(partition = %self.tp, entries = index.entries.len(), "rebuilt the transaction index");
        st.txn = index;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pid: i64, first: i64, last: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: Offset(first),
            last_offset: Offset(last),
            last_stable_offset: Offset(last + 1),
        }
    }

    #[test]
    fn entries_round_trip_and_a_flipped_bit_is_caught() {
        let e = entry(7, 3, 9);
        let mut b = encode(&e);
        assert_eq!(decode(&b), Some(e));
        b[10] ^= 1;
        assert_eq!(decode(&b), None);
        assert_eq!(decode(&b[..20]), None);
    }

    #[test]
    fn a_torn_active_file_is_cut_and_a_damaged_closed_one_asks_for_a_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_file(d, Offset(0), &[entry(1, 0, 4), entry(2, 1, 8)]).unwrap();
        write_file(d, Offset(10), &[entry(3, 10, 12), entry(4, 11, 15)]).unwrap();
        // A torn last entry in the active file.
        let path = segment_path(d, Offset(10), TXNINDEX_EXT);
        let len = fs::metadata(&path).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
        let idx = TxnIndex::load(d, &[(Offset(0), Offset(10)), (Offset(10), Offset(20))]).unwrap();
        assert!(!idx.needs_rebuild);
        assert_eq!(
            idx.overlapping(Offset(0), Offset(100)),
            vec![entry(1, 0, 4), entry(2, 1, 8), entry(3, 10, 12)]
        );
        assert_eq!(fs::metadata(&path).unwrap().len(), ENTRY_BYTES as u64);
        // Recovery cut the log at 12: the entry of the marker at 12 goes.
        let idx = TxnIndex::load(d, &[(Offset(0), Offset(10)), (Offset(10), Offset(12))]).unwrap();
        assert_eq!(idx.overlapping(Offset(0), Offset(100)).len(), 2);
        // A damaged closed file.
        let closed = segment_path(d, Offset(0), TXNINDEX_EXT);
        let mut bytes = fs::read(&closed).unwrap();
        bytes[3] ^= 0x40;
        fs::write(&closed, bytes).unwrap();
        let idx = TxnIndex::load(d, &[(Offset(0), Offset(10)), (Offset(10), Offset(12))]).unwrap();
        assert!(idx.needs_rebuild);
        fs::remove_file(&closed).unwrap();
        let idx = TxnIndex::load(d, &[(Offset(0), Offset(10)), (Offset(10), Offset(12))]).unwrap();
        assert!(idx.needs_rebuild);
    }

    #[test]
    fn queries_prune_and_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        create_empty(d, Offset(0)).unwrap();
        let mut idx = TxnIndex::default();
        for e in [entry(1, 0, 4), entry(2, 2, 8), entry(3, 9, 12)] {
            idx.record(d, e, Offset(0), Offset(i64::MAX), true).unwrap();
        }
        // Recording again is a no-op.
        idx.record(d, entry(2, 2, 8), Offset(0), Offset(i64::MAX), true)
            .unwrap();
        assert!(idx.take_unsynced());
        assert_eq!(
            idx.overlapping(Offset(5), Offset(9)),
            vec![entry(2, 2, 8)],
            "the marker at 12 belongs to a transaction starting at 9"
        );
        assert_eq!(idx.overlapping(Offset(5), Offset(10)).len(), 2);
        let loaded = TxnIndex::load(d, &[(Offset(0), Offset(13))]).unwrap();
        assert_eq!(loaded.entries, idx.entries);
        idx.truncate(d, Offset(0), Offset(12)).unwrap();
        assert_eq!(idx.overlapping(Offset(0), Offset(100)).len(), 2);
        let loaded = TxnIndex::load(d, &[(Offset(0), Offset(12))]).unwrap();
        assert_eq!(loaded.entries, idx.entries);
        idx.prune_below(Offset(5));
        assert_eq!(
            idx.overlapping(Offset(0), Offset(100)),
            vec![entry(2, 2, 8)]
        );
    }
}
