//! The cleaner's checkpoint, `cleaner-offset-checkpoint` in the metadata directory (Kafka
//! keeps a file of that name per log directory): per compacted partition, the offset below
//! which it is clean and the bytes of that clean part, so that after a restart the cleaner
//! maps only what is new instead of counting everything as dirty once.
//!
//! Written atomically (temp file, fsync, rename) after every compaction that made progress;
//! the engines make a compaction durable before it returns, so the checkpoint never claims
//! more than is on disk. A checkpoint that is ahead of its partition's log end (a truncation
//! since) is clamped at load.
//!
//! Format: a version line (`1`), a count line, then one line per partition:
//! `<topic> <partition> <clean offset> <clean bytes>`.

use std::collections::HashMap;
use std::path::Path;

use rafka_core::{Offset, TopicName, TopicPartition};

/// The file's name in the metadata directory.
pub(crate) const FILE: &str = "cleaner-offset-checkpoint";
const VERSION: &str = "1";
/// Lines past this are not read (a sanity bound on a damaged file).
const ENTRIES_MAX: usize = 1_000_000;

/// Reads the checkpoint in `dir`; a missing or unreadable file (logged) is empty.
pub(crate) fn load(dir: &Path) -> HashMap<TopicPartition, (Offset, u64)> {
    let path = dir.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return HashMap::new(),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read the cleaner checkpoint; everything counts as dirty once");
            return HashMap::new();
        }
    };
    match parse(&text) {
        Some(m) => m,
        None => {
            tracing::warn!(file = %path.display(), "unparsable cleaner checkpoint; everything counts as dirty once");
            HashMap::new()
        }
    }
}

fn parse(text: &str) -> Option<HashMap<TopicPartition, (Offset, u64)>> {
    let mut lines = text.lines();
    if lines.next()? != VERSION {
        return None;
    }
    let n: usize = lines.next()?.parse().ok()?;
    let mut out = HashMap::with_capacity(n.min(ENTRIES_MAX));
    for line in lines.take(n.min(ENTRIES_MAX)) {
        let mut f = line.split(' ');
        let topic = TopicName::new(f.next()?).ok()?;
        let partition: i32 = f.next()?.parse().ok()?;
        let offset: i64 = f.next()?.parse().ok()?;
        let bytes: u64 = f.next()?.parse().ok()?;
        if f.next().is_some() || offset < 0 {
            return None;
        }
        out.insert(
            TopicPartition::new(topic, partition),
            (Offset(offset), bytes),
        );
    }
    (out.len() == n).then_some(out)
}

/// Writes `entries` as the checkpoint in `dir`, atomically.
pub(crate) fn save(
    dir: &Path,
    entries: impl IntoIterator<Item = (TopicPartition, Offset, u64)>,
) -> std::io::Result<()> {
    let mut lines: Vec<String> = entries
        .into_iter()
        .map(|(tp, o, b)| format!("{} {} {} {b}", tp.topic.as_str(), tp.partition.0, o.0))
        .collect();
    lines.sort();
    let mut text = format!("{VERSION}\n{}\n", lines.len());
    for l in lines {
        text.push_str(&l);
        text.push('\n');
    }
    crate::state::write_atomically(&dir.join(FILE), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(t: &str, p: i32) -> TopicPartition {
        TopicPartition::new(TopicName::new(t).unwrap(), p)
    }

    #[test]
    fn round_trips_and_refuses_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).is_empty());
        save(
            dir.path(),
            [
                (tp("__consumer_offsets", 3), Offset(1234), 5678),
                (tp("a.b-c", 0), Offset(0), 0),
            ],
        )
        .unwrap();
        let got = load(dir.path());
        assert_eq!(got.len(), 2);
        assert_eq!(got[&tp("__consumer_offsets", 3)], (Offset(1234), 5678));
        for bad in [
            "2\n0\n",
            "1\n2\na 0 1 2\n",
            "1\n1\na x 1 2\n",
            "1\n1\na 0 -1 2\n",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
