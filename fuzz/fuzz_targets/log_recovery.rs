//! Log recovery from arbitrary segment bytes: the input becomes the active segment's
//! `.log` (and, split at a position its first two bytes give, its `.index`), the engine
//! opens it after an unclean stop and everything it then serves is read back. Opening may
//! fail with an error; it must never panic, and what it serves must be readable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rafka_core::{LogConfig, Offset, PartitionLog, TopicName, TopicPartition};
use rafka_storage::LogEngine;

fuzz_target!(|data: &[u8]| {
    let (index, log) = match data {
        [a, b, rest @ ..] => {
            let at = (u16::from_be_bytes([*a, *b]) as usize).min(rest.len());
            rest.split_at(at)
        }
        _ => (&[][..], data),
    };
    let root = tempfile::tempdir().expect("temp dir");
    let part = root.path().join("fuzz-0");
    std::fs::create_dir_all(&part).expect("partition dir");
    std::fs::write(part.join("00000000000000000000.log"), log).expect("write log");
    std::fs::write(part.join("00000000000000000000.index"), index).expect("write index");
    let cfg = LogConfig::default();
    let Ok(engine) = LogEngine::open(root.path().to_path_buf(), cfg.clone()) else {
        return;
    };
    let tp = TopicPartition::new(TopicName::new("fuzz").expect("name"), 0);
    let Ok(p) = engine.open_partition(&tp, &cfg) else {
        return;
    };
    let (start, end) = (p.log_start_offset(), p.log_end_offset());
    assert!(start <= end, "log start {start:?} after end {end:?}");
    let mut at = start;
    while at < end {
        let r = p.read(at, 1 << 20).expect("recovered data reads back");
        let batches = rafka_core::RecordBatch::split_all(r.records).expect("whole batches");
        let Some(last) = batches.last() else { break };
        for b in &batches {
            b.validate().expect("recovered batches are valid");
        }
        let next = Offset(last.last_offset().0 + 1);
        assert!(next > at, "reads make progress");
        at = next;
    }
});
