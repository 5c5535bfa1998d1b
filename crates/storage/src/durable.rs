//! Making file-system changes durable, for the engines that keep their own files (`log`,
//! `memory`): fsync a directory after entries in it change, and replace a small file
//! atomically.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// fsyncs a directory, so entries created, renamed or removed in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Replaces `dir/name` with `bytes` atomically: write a temp file, fsync, rename, fsync dir.
pub(crate) fn write_file_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}
