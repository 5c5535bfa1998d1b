//! Group commit, written once for every engine: writes are counted as they return, a
//! `flush` waits for one sync that covers every write counted before it, and callers that
//! queue behind a running sync usually find themselves covered when it ends, so one fsync
//! serves every batch that arrived meanwhile. Each engine supplies only its sync (the active
//! segment, the WAL file, RocksDB's WAL).
//!
//! Invariants (asserted): `synced <= written`; `synced` never decreases; a sync started by
//! `flush` covers at least the writes counted when that `flush` was called.
//!
//! Thread-safe; `flush` blocks (call it off the async workers).

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// The counters and lock of one engine's (or partition's) group commit.
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    /// Writes that have returned. Invariant: never below `synced`.
    written: AtomicU64,
    /// Writes known durable. Only grows (`fetch_max`).
    synced: AtomicU64,
    /// One sync at a time.
    flush_lock: Mutex<()>,
    /// Syncs `flush` made (not those of rolls or synced writes).
    n_syncs: AtomicU64,
}

impl GroupCommit {
    /// Counts one write that has returned (its bytes are where the next sync reaches) and
    /// returns the count including it.
    pub fn wrote(&self) -> u64 {
        self.written.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Writes counted so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Declares the first `upto` writes durable (a synced write, a roll that synced the file).
    pub fn synced_up_to(&self, upto: u64) {
        debug_assert!(upto <= self.written(), "synced past what was written");
        self.synced.fetch_max(upto, Ordering::AcqRel);
    }

    /// Declares every write counted so far durable.
    pub fn all_synced(&self) {
        self.synced_up_to(self.written());
    }

    /// Syncs `flush` has made.
    pub fn n_syncs(&self) -> u64 {
        self.n_syncs.load(Ordering::Relaxed)
    }

    /// Makes every write counted before this call durable. Returns at once if a sync already
    /// covered them; otherwise takes the flush lock and, unless the sync that held it covered
    /// them meanwhile, calls `sync` once. `sync` must read [`written`](Self::written) at a
    /// point where every write counted so far is in what it then syncs (for example under the
    /// engine lock that names the file), sync, and return that count; or `None` when there is
    /// nothing to sync (an engine without files).
    pub fn flush<E>(&self, sync: impl FnOnce() -> Result<Option<u64>, E>) -> Result<(), E> {
        let target = self.written();
        if self.synced.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let _flushing = self.flush_lock.lock();
        // Another caller's sync may have covered us while we waited.
        if self.synced.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let Some(covered) = sync()? else {
            return Ok(());
        };
        // A sync that covers less than the caller asked for would acknowledge writes that
        // are not durable: stop rather than lie.
        assert!(
            covered >= target,
            "group commit: the sync covers {covered} writes, the caller needs {target}"
        );
        debug_assert!(covered <= self.written(), "sync covers unwritten writes");
        self.n_syncs.fetch_add(1, Ordering::Relaxed);
        self.synced.fetch_max(covered, Ordering::AcqRel);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    /// Runs `flush` with a sync that counts its calls and covers everything written.
    fn check(gc: &GroupCommit, calls: &AtomicUsize) {
        gc.flush(|| {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(Some(gc.written()))
        })
        .expect("sync");
    }

    #[test]
    fn syncs_only_what_is_unsynced() {
        let gc = GroupCommit::default();
        let calls = AtomicUsize::new(0);
        check(&gc, &calls);
        assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing written: no sync");
        gc.wrote();
        gc.wrote();
        check(&gc, &calls);
        check(&gc, &calls);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "one sync covers both writes"
        );
        assert_eq!(gc.n_syncs(), 1);
        gc.wrote();
        gc.all_synced();
        check(&gc, &calls);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "a roll's sync counts");
    }

    #[test]
    fn nothing_to_sync_and_errors_leave_writes_unsynced() {
        let gc = GroupCommit::default();
        gc.wrote();
        gc.flush(|| Ok::<_, ()>(None)).expect("no files");
        assert_eq!(gc.flush(|| Err::<Option<u64>, _>("disk")), Err("disk"));
        let calls = AtomicUsize::new(0);
        check(&gc, &calls);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "still unsynced after the failures"
        );
    }

    #[test]
    #[should_panic(expected = "group commit")]
    fn a_sync_that_covers_too_little_is_refused() {
        let gc = GroupCommit::default();
        gc.wrote();
        gc.wrote();
        let _ = gc.flush(|| Ok::<_, ()>(Some(1)));
    }

    #[test]
    fn concurrent_flushes_share_syncs() {
        let gc = Arc::new(GroupCommit::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (gc, calls) = (gc.clone(), calls.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let mine = gc.wrote();
                        gc.flush(|| {
                            calls.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_micros(200));
                            Ok::<_, ()>(Some(gc.written()))
                        })
                        .expect("sync");
                        assert!(gc.synced.load(Ordering::Acquire) >= mine);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(gc.written(), 400);
        assert_eq!(gc.synced.load(Ordering::Acquire), 400);
        assert!(calls.load(Ordering::SeqCst) <= 400);
    }
}
