//! The memory engine's write-ahead log: the open WAL file ([`Wal`]), file names, and the
//! record format the WAL shares with snapshots.
//!
//! A file starts with an 8-byte magic (`RAFKWAL1` or `RAFKSNP1`), then records back to
//! back: `[body length: u32 BE][CRC-32C of the body: u32 BE][body]`, where the body is a
//! one-byte [`Op`] tag and its fields. A snapshot is the same stream of ops that rebuilds
//! the state from nothing, closed by an [`Op::End`] record; a WAL is the ops since the
//! snapshot it follows. [`read_records`] stops at the first record that is short, too
//! long, fails its CRC or does not decode: that is where a torn tail is cut.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::{BufMut, Bytes};
use rafka_core::limits::{BATCH_BYTES_MAX, TOPIC_NAME_LEN_MAX};
use rafka_core::{AbortedTxn, Offset, RecordBatch, TopicName, TopicPartition};

use crate::durable::sync_dir;

/// First bytes of a WAL file.
pub(crate) const WAL_MAGIC: &[u8; 8] = b"RAFKWAL1";
/// First bytes of a snapshot file.
pub(crate) const SNAPSHOT_MAGIC: &[u8; 8] = b"RAFKSNP1";
/// Length prefix plus CRC.
pub(crate) const RECORD_HEADER_BYTES: usize = 8;
/// Largest record body: one batch plus its topic partition and tag. A length field above
/// it is damage, never a reason to allocate.
const RECORD_BODY_BYTES_MAX: usize = BATCH_BYTES_MAX + TOPIC_NAME_LEN_MAX + 16;

const TAG_CREATE: u8 = 1;
const TAG_APPEND: u8 = 2;
const TAG_DELETE_BEFORE: u8 = 3;
const TAG_TRUNCATE_AFTER: u8 = 4;
const TAG_REMOVE: u8 = 5;
const TAG_RESET: u8 = 6;
const TAG_END: u8 = 7;
const TAG_ABORTED: u8 = 8;
const TAG_PRODUCER_SNAPSHOT: u8 = 9;

/// Largest producer-state snapshot the engine stores (it is one WAL record).
pub(crate) const PRODUCER_SNAPSHOT_BYTES_MAX: usize = BATCH_BYTES_MAX;

/// One logged change to the engine's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// The partition exists (it may still be empty).
    Create(TopicPartition),
    /// A batch, base offset already assigned, appended at the partition's log end.
    Append(TopicPartition, RecordBatch),
    /// `delete_before` (DeleteRecords or retention): the new log start offset.
    DeleteBefore(TopicPartition, Offset),
    /// `truncate_after`.
    TruncateAfter(TopicPartition, Offset),
    /// The partition and its data are gone.
    Remove(TopicPartition),
    /// Snapshots only: the partition exists, empty, with this log start and log end
    /// (the base offset of its first stored batch); its batches follow as appends.
    Reset {
        /// The partition.
        tp: TopicPartition,
        /// Log start offset.
        log_start: Offset,
        /// Offset the first following append must have.
        next_offset: Offset,
    },
    /// Snapshots only: the last record, with the number of records before it.
    End(u64),
    /// An aborted transaction recorded (its marker already appended).
    Aborted(TopicPartition, AbortedTxn),
    /// The broker's producer-state snapshot at an offset, replacing the previous one.
    ProducerSnapshot(TopicPartition, Offset, Bytes),
}

/// File name prefix of a WAL.
pub(super) const WAL_PREFIX: &str = "wal-";
/// File name extension of a WAL.
pub(super) const WAL_EXT: &str = ".log";

/// `wal-<generation, 20 digits>.log`.
pub(super) fn wal_name(generation: u64) -> String {
    format!("{WAL_PREFIX}{generation:020}{WAL_EXT}")
}

/// The generation in a WAL or snapshot file name (`<prefix><20 digits><ext>`).
pub(super) fn parse_generation(name: &str, prefix: &str, ext: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(ext)?;
    (digits.len() == 20).then(|| digits.parse().ok())?
}

/// The open WAL file.
pub(super) struct Wal {
    pub(super) generation: u64,
    pub(super) file: Arc<File>,
    /// Bytes written (the next write position).
    len: u64,
    /// Reused encode buffer.
    buf: Vec<u8>,
}

impl Wal {
    /// Creates `wal-<generation>.log` with its header and makes the entry durable.
    pub(super) fn create(dir: &Path, generation: u64) -> io::Result<Wal> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join(wal_name(generation)))?;
        file.write_all_at(WAL_MAGIC, 0)?;
        file.sync_all()?;
        sync_dir(dir)?;
        Ok(Wal {
            generation,
            file: Arc::new(file),
            len: WAL_MAGIC.len() as u64,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Appends one record with a single positional write; a failed write is cut off so
    /// no partial record stays in front of later ones.
    pub(super) fn write(&mut self, op: &Op) -> io::Result<u64> {
        self.buf.clear();
        encode(op, &mut self.buf);
        if let Err(e) = self.file.write_all_at(&self.buf, self.len) {
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        let n = self.buf.len() as u64;
        self.len += n;
        if self.buf.capacity() > 1024 * 1024 {
            // One huge batch must not pin its buffer for the engine's lifetime.
            self.buf = Vec::with_capacity(64 * 1024);
        }
        Ok(n)
    }
}

fn put_tp(buf: &mut Vec<u8>, tp: &TopicPartition) {
    let name = tp.topic.as_str().as_bytes();
    buf.put_u16(name.len() as u16);
    buf.put_slice(name);
    buf.put_i32(tp.partition.0);
}

/// Appends the framed record for `op` to `buf` (which may hold earlier records).
pub(crate) fn encode(op: &Op, buf: &mut Vec<u8>) {
    let start = buf.len();
    buf.put_u32(0);
    buf.put_u32(0);
    match op {
        Op::Create(tp) => {
            buf.put_u8(TAG_CREATE);
            put_tp(buf, tp);
        }
        Op::Append(tp, batch) => {
            buf.put_u8(TAG_APPEND);
            put_tp(buf, tp);
            buf.put_slice(batch.as_bytes());
        }
        Op::DeleteBefore(tp, offset) => {
            buf.put_u8(TAG_DELETE_BEFORE);
            put_tp(buf, tp);
            buf.put_i64(offset.0);
        }
        Op::TruncateAfter(tp, offset) => {
            buf.put_u8(TAG_TRUNCATE_AFTER);
            put_tp(buf, tp);
            buf.put_i64(offset.0);
        }
        Op::Remove(tp) => {
            buf.put_u8(TAG_REMOVE);
            put_tp(buf, tp);
        }
        Op::Reset {
            tp,
            log_start,
            next_offset,
        } => {
            buf.put_u8(TAG_RESET);
            put_tp(buf, tp);
            buf.put_i64(log_start.0);
            buf.put_i64(next_offset.0);
        }
        Op::End(n) => {
            buf.put_u8(TAG_END);
            buf.put_u64(*n);
        }
        Op::Aborted(tp, a) => {
            buf.put_u8(TAG_ABORTED);
            put_tp(buf, tp);
            buf.put_i64(a.producer_id);
            buf.put_i64(a.first_offset.0);
            buf.put_i64(a.last_offset.0);
            buf.put_i64(a.last_stable_offset.0);
        }
        Op::ProducerSnapshot(tp, offset, bytes) => {
            buf.put_u8(TAG_PRODUCER_SNAPSHOT);
            put_tp(buf, tp);
            buf.put_i64(offset.0);
            buf.put_slice(bytes);
        }
    }
    let body = start + RECORD_HEADER_BYTES;
    let len = (buf.len() - body) as u32;
    let crc = crc32c::crc32c(&buf[body..]);
    buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
    buf[start + 4..body].copy_from_slice(&crc.to_be_bytes());
}

/// A cursor over a record body; every read is bounds-checked.
struct Body<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Body<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.buf.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn tp(&mut self) -> Option<TopicPartition> {
        let n = u16::from_be_bytes(self.take(2)?.try_into().ok()?) as usize;
        let name = std::str::from_utf8(self.take(n)?).ok()?;
        let topic = TopicName::new(name).ok()?;
        let partition = i32::from_be_bytes(self.take(4)?.try_into().ok()?);
        Some(TopicPartition::new(topic, partition))
    }
    fn done(&self) -> bool {
        self.at == self.buf.len()
    }
}

/// Decodes one record body; `None` if it is not a well-formed op.
fn decode(body: Bytes) -> Option<Op> {
    let mut b = Body { buf: &body, at: 0 };
    let op = match b.u8()? {
        TAG_CREATE => Op::Create(b.tp()?),
        TAG_APPEND => {
            let tp = b.tp()?;
            let batch = RecordBatch::parse(body.slice(b.at..)).ok()?;
            // The batch was validated before it was logged; check twice.
            batch.validate().ok()?;
            return Some(Op::Append(tp, batch));
        }
        TAG_DELETE_BEFORE => Op::DeleteBefore(b.tp()?, Offset(b.i64()?)),
        TAG_TRUNCATE_AFTER => Op::TruncateAfter(b.tp()?, Offset(b.i64()?)),
        TAG_REMOVE => Op::Remove(b.tp()?),
        TAG_RESET => Op::Reset {
            tp: b.tp()?,
            log_start: Offset(b.i64()?),
            next_offset: Offset(b.i64()?),
        },
        TAG_END => Op::End(u64::from_be_bytes(b.take(8)?.try_into().ok()?)),
        TAG_ABORTED => Op::Aborted(
            b.tp()?,
            AbortedTxn {
                producer_id: b.i64()?,
                first_offset: Offset(b.i64()?),
                last_offset: Offset(b.i64()?),
                last_stable_offset: Offset(b.i64()?),
            },
        ),
        TAG_PRODUCER_SNAPSHOT => {
            let tp = b.tp()?;
            let offset = Offset(b.i64()?);
            return Some(Op::ProducerSnapshot(tp, offset, body.slice(b.at..)));
        }
        _ => return None,
    };
    b.done().then_some(op)
}

/// How a scan of a file ended.
#[derive(Debug, Default)]
pub(crate) struct ScanEnd {
    /// Bytes from the start of the file up to the end of the last good record.
    pub valid_bytes: u64,
    /// Records read and handed over.
    pub n_records: u64,
    /// Why the scan stopped before the end of the file, if it did.
    pub stop_reason: Option<String>,
}

/// Reads `file` (which must start with `magic`) record by record, handing each good op
/// to `apply`. Stops at the end of the file, at the first bad record, or at the first op
/// `apply` refuses (its message becomes the stop reason). A file shorter than the magic
/// counts as empty (it was torn while being created).
pub(crate) fn read_records(
    file: &File,
    magic: &[u8; 8],
    mut apply: impl FnMut(Op) -> Result<(), String>,
) -> io::Result<ScanEnd> {
    let len = file.metadata()?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    r.seek(SeekFrom::Start(0))?;
    let mut end = ScanEnd::default();
    if len < magic.len() as u64 {
        if len > 0 {
            end.stop_reason = Some("file shorter than its header".to_string());
        }
        return Ok(end);
    }
    let mut got = [0u8; 8];
    r.read_exact(&mut got)?;
    if &got != magic {
        end.stop_reason = Some("bad file header".to_string());
        return Ok(end);
    }
    let mut pos = magic.len() as u64;
    end.valid_bytes = pos;
    while pos < len {
        let stop = |end: &mut ScanEnd, reason: String| {
            end.stop_reason = Some(format!("record at byte {pos}: {reason}"));
        };
        if len - pos < RECORD_HEADER_BYTES as u64 {
            stop(&mut end, "short record header".to_string());
            break;
        }
        let mut header = [0u8; RECORD_HEADER_BYTES];
        r.read_exact(&mut header)?;
        let body_len = u32::from_be_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(header[4..].try_into().expect("4 bytes"));
        if body_len == 0 || body_len > RECORD_BODY_BYTES_MAX {
            stop(&mut end, format!("bad length {body_len}"));
            break;
        }
        if len - pos - (RECORD_HEADER_BYTES as u64) < body_len as u64 {
            stop(&mut end, "record cut short".to_string());
            break;
        }
        let mut body = vec![0u8; body_len];
        r.read_exact(&mut body)?;
        if crc32c::crc32c(&body) != crc {
            stop(&mut end, "CRC mismatch".to_string());
            break;
        }
        let Some(op) = decode(Bytes::from(body)) else {
            stop(&mut end, "undecodable record".to_string());
            break;
        };
        if let Err(reason) = apply(op) {
            stop(&mut end, reason);
            break;
        }
        pos += (RECORD_HEADER_BYTES + body_len) as u64;
        end.valid_bytes = pos;
        end.n_records += 1;
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::conformance::{batch, tp};

    /// Writes `ops` as a WAL, lets `damage` edit the bytes, reads them back.
    fn check(ops: &[Op], damage: impl FnOnce(&mut Vec<u8>)) -> (Vec<Op>, ScanEnd) {
        let mut buf = WAL_MAGIC.to_vec();
        for op in ops {
            encode(op, &mut buf);
        }
        damage(&mut buf);
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&buf).unwrap();
        let mut got = Vec::new();
        let end = read_records(&f, WAL_MAGIC, |op| {
            got.push(op);
            Ok(())
        })
        .unwrap();
        (got, end)
    }

    fn ops() -> Vec<Op> {
        let mut b = batch(3, 7, 20);
        b.set_base_offset(Offset(40));
        vec![
            Op::Create(tp("a", 1)),
            Op::Append(tp("a", 1), b.into_batch()),
            Op::DeleteBefore(tp("a", 1), Offset(41)),
            Op::TruncateAfter(tp("a", 1), Offset(42)),
            Op::Reset {
                tp: tp("b", 0),
                log_start: Offset(5),
                next_offset: Offset(3),
            },
            Op::Remove(tp("a", 1)),
            Op::End(6),
        ]
    }

    #[test]
    fn every_op_round_trips() {
        let (got, end) = check(&ops(), |_| {});
        assert_eq!(got, ops());
        assert_eq!(end.n_records, 7);
        assert!(end.stop_reason.is_none());
    }

    #[test]
    fn torn_or_flipped_tail_stops_at_the_last_good_record() {
        let full = check(&ops(), |_| {}).1.valid_bytes;
        // The end record is 17 bytes long.
        for cut in [1, 5, 9, 16] {
            let (got, end) = check(&ops(), |b| b.truncate(b.len() - cut));
            assert_eq!(got.len(), 6, "cut {cut}");
            assert!(end.valid_bytes < full && end.stop_reason.is_some());
        }
        let (got, end) = check(&ops(), |b| {
            // Inside the append record's batch.
            b[60] ^= 1;
        });
        assert_eq!(got.len(), 1);
        assert!(end.stop_reason.unwrap().contains("CRC"));
        let (got, _) = check(&ops(), |b| b[9] = 0xff);
        assert!(got.is_empty(), "a huge length is damage");
    }

    #[test]
    fn wrong_magic_or_short_file_reads_nothing() {
        let (got, end) = check(&ops(), |b| b[0] = b'X');
        assert!(got.is_empty() && end.stop_reason.is_some());
        let (got, end) = check(&[], |b| b.truncate(3));
        assert!(got.is_empty() && end.stop_reason.is_some());
    }
}
