//! Producer-state snapshots of the `log` engine: `<offset, 20 digits>.snapshot` in the
//! partition directory, the broker's bytes as given (they carry their own checksum),
//! written atomically (temp file, fsync, rename, directory fsync). Only the newest is kept.
//! A snapshot past the log end (the tail it describes was cut by recovery or truncation)
//! is deleted.

use std::fs;
use std::io;
use std::path::Path;

use bytes::Bytes;
use rafka_core::Offset;

use crate::durable::{sync_dir, write_file_atomically};

/// File extension of a producer-state snapshot.
pub(crate) const SNAPSHOT_EXT: &str = "snapshot";

fn file_name(offset: Offset) -> String {
    format!("{:020}.{SNAPSHOT_EXT}", offset.0)
}

fn parse_name(name: &str) -> Option<Offset> {
    let digits = name.strip_suffix(&format!(".{SNAPSHOT_EXT}"))?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i64>().ok().map(Offset)
}

/// Offsets of the snapshot files in `dir`.
fn list(dir: &Path) -> io::Result<Vec<Offset>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        if let Some(o) = parse_name(&entry?.file_name().to_string_lossy()) {
            out.push(o);
        }
    }
    out.sort();
    Ok(out)
}

/// Whether `name` is a snapshot file's.
pub(crate) fn is_snapshot_file(name: &str) -> bool {
    parse_name(name).is_some()
}

/// Deletes the snapshots past `log_end` and returns the newest left.
pub(crate) fn latest(dir: &Path, log_end: Offset) -> io::Result<Option<Offset>> {
    let mut newest = None;
    let mut removed = false;
    for o in list(dir)? {
        if o > log_end {
            fs::remove_file(dir.join(file_name(o)))?;
            removed = true;
        } else {
            newest = Some(o);
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(newest)
}

/// Writes the snapshot at `offset` durably and deletes every other.
pub(crate) fn write(dir: &Path, offset: Offset, bytes: &[u8]) -> io::Result<()> {
    write_file_atomically(dir, &file_name(offset), bytes)?;
    let mut removed = false;
    for o in list(dir)? {
        if o != offset {
            fs::remove_file(dir.join(file_name(o)))?;
            removed = true;
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// The bytes of the snapshot at `offset`; `None` if the file is gone.
pub(crate) fn read(dir: &Path, offset: Offset) -> io::Result<Option<Bytes>> {
    match fs::read(dir.join(file_name(offset))) {
        Ok(b) => Ok(Some(Bytes::from(b))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
