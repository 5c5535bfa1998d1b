//! [`OpenFiles`]: the `log` engine's bound on open segment files, shared by all its
//! partitions (`storage.log.max_open_files`).
//!
//! A segment names its `.log` file by a [`FileSlot`]; the file is opened on first use
//! (a read, an append, recovery's scan of the active segment) and kept open in the slot
//! while it is among the `max_open` files used most recently. Past the bound, the least
//! recently used one is closed: its slot forgets the file and reopens it by path at the
//! next use. The order is CLOCK (second chance), the approximation of LRU that needs no
//! shared lock on a hit: a hit locks only its own slot and sets the slot's reference bit;
//! the shared ring is locked only to open or close a file.
//!
//! A read in flight never breaks: readers and the cleaner take the slot's `Arc<File>`
//! (under the partition lock, as before) and keep it for as long as they need it, so a
//! file the cache closes stays open until the last of them drops it — the bound counts the
//! files the cache holds, and a few more may be open for those reads. Thread-safe.
//!
//! Lock order: the ring, then a slot. A hit takes only its slot.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

/// Default of `storage.log.max_open_files`: segment files kept open, all partitions
/// together. Well under the usual 20,000–1,048,576 descriptor limits, leaving room for
/// connections (the broker's `max_connections` defaults to what is left after these) and
/// index and checkpoint files, which are opened only for a moment.
pub const MAX_OPEN_FILES_DEFAULT: usize = 4096;

/// One segment's `.log` file: open or not, and where to reopen it.
#[derive(Debug)]
pub(crate) struct FileSlot {
    /// Where the file is reopened after the cache closed it; `None` for a file that is
    /// never closed by the cache (a cleaned segment being written, not yet in place).
    path: Option<PathBuf>,
    file: Mutex<Option<Arc<File>>>,
    /// Set on every use; cleared as the clock hand passes (second chance).
    referenced: AtomicBool,
}

/// The bounded cache of open segment files. See the module docs.
#[derive(Debug)]
pub struct OpenFiles {
    max_open: usize,
    ring: Mutex<Ring>,
    n_opened: AtomicU64,
    n_closed: AtomicU64,
}

/// Slots whose file the cache holds open, in clock order: the hand is at the front, a
/// newly opened file joins at the back (the last to be looked at).
#[derive(Debug, Default)]
struct Ring {
    slots: VecDeque<Weak<FileSlot>>,
}

impl OpenFiles {
    /// A cache keeping at most `max_open` files open (at least 1).
    pub fn new(max_open: usize) -> Arc<OpenFiles> {
        Arc::new(OpenFiles {
            max_open: max_open.max(1),
            ring: Mutex::new(Ring::default()),
            n_opened: AtomicU64::new(0),
            n_closed: AtomicU64::new(0),
        })
    }

    /// The bound.
    pub fn max_open(&self) -> usize {
        self.max_open
    }

    /// Files the cache holds open now.
    pub fn n_open(&self) -> usize {
        let ring = self.ring.lock();
        ring.slots
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|s| s.file.lock().is_some())
            .count()
    }

    /// Files opened (first use or reopen after eviction) and closed by the bound, so far.
    pub fn n_opened_closed(&self) -> (u64, u64) {
        (
            self.n_opened.load(Ordering::Relaxed),
            self.n_closed.load(Ordering::Relaxed),
        )
    }

    /// A slot for the existing file at `path`, not opened yet.
    pub(crate) fn lazy(path: PathBuf) -> Arc<FileSlot> {
        Arc::new(FileSlot {
            path: Some(path),
            file: Mutex::new(None),
            referenced: AtomicBool::new(false),
        })
    }

    /// A slot for `file`, just opened at `path` (created, or the caller's own handle),
    /// counted against the bound from now on.
    pub(crate) fn adopt(&self, path: PathBuf, file: Arc<File>) -> Arc<FileSlot> {
        let slot = Arc::new(FileSlot {
            path: Some(path),
            file: Mutex::new(Some(file)),
            referenced: AtomicBool::new(false),
        });
        self.n_opened.fetch_add(1, Ordering::Relaxed);
        let mut ring = self.ring.lock();
        ring.slots.push_back(Arc::downgrade(&slot));
        self.shrink(&mut ring, &slot);
        slot
    }

    /// A slot holding `file` until it is dropped, outside the bound (the cleaner's output
    /// while it is written under a temporary name).
    pub(crate) fn pinned(file: Arc<File>) -> Arc<FileSlot> {
        Arc::new(FileSlot {
            path: None,
            file: Mutex::new(Some(file)),
            referenced: AtomicBool::new(true),
        })
    }

    /// The slot's file, opened (read and write, never created or truncated) if the cache
    /// closed it or never opened it.
    pub(crate) fn get(&self, slot: &Arc<FileSlot>) -> io::Result<Arc<File>> {
        if let Some(f) = slot.file.lock().as_ref() {
            slot.referenced.store(true, Ordering::Relaxed);
            return Ok(Arc::clone(f));
        }
        let path = slot
            .path
            .as_ref()
            .expect("a slot without a path is never closed");
        let opened = Arc::new(OpenOptions::new().read(true).write(true).open(path)?);
        let mut ring = self.ring.lock();
        {
            let mut file = slot.file.lock();
            if let Some(f) = file.as_ref() {
                // Another thread opened it meanwhile; ours closes on return.
                return Ok(Arc::clone(f));
            }
            *file = Some(Arc::clone(&opened));
        }
        self.n_opened.fetch_add(1, Ordering::Relaxed);
        ring.slots.push_back(Arc::downgrade(slot));
        self.shrink(&mut ring, slot);
        Ok(opened)
    }

    /// Closes files, least recently used first (by the clock), until at most `max_open`
    /// slots are in the ring: a slot used since the hand last passed gets a second chance
    /// (to the back, its bit cleared); slots whose segment is gone leave the ring as the
    /// hand passes them. `opened`, the file just opened, stays. Ends: every other slot is
    /// moved back at most once per call, and the bound is at least 1.
    fn shrink(&self, ring: &mut Ring, opened: &Arc<FileSlot>) {
        while ring.slots.len() > self.max_open {
            let Some(front) = ring.slots.pop_front() else {
                return;
            };
            let Some(slot) = front.upgrade() else {
                continue;
            };
            if Arc::ptr_eq(&slot, opened) || slot.referenced.swap(false, Ordering::Relaxed) {
                ring.slots.push_back(front);
                continue;
            }
            if slot.file.lock().take().is_some() {
                self.n_closed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(max_open: usize, n_files: usize, uses: &[usize]) {
        let dir = tempfile::tempdir().unwrap();
        let cache = OpenFiles::new(max_open);
        let slots: Vec<Arc<FileSlot>> = (0..n_files)
            .map(|i| {
                let path = dir.path().join(format!("{i}.log"));
                std::fs::write(&path, i.to_string()).unwrap();
                OpenFiles::lazy(path)
            })
            .collect();
        let mut held = Vec::new();
        for (k, &u) in uses.iter().enumerate() {
            let i = u % n_files;
            let f = cache.get(&slots[i]).unwrap();
            // Every use reads its own file, whether cached, reopened or never opened.
            let mut buf = vec![0u8; 8];
            let n = std::os::unix::fs::FileExt::read_at(&*f, &mut buf, 0).unwrap();
            assert_eq!(&buf[..n], i.to_string().as_bytes());
            assert!(cache.n_open() <= max_open, "bound broken");
            // Some handles are kept past their eviction, like a read in flight.
            if k % 7 == 0 {
                held.push((i, f));
            }
        }
        for (i, f) in held {
            let mut buf = vec![0u8; 8];
            let n = std::os::unix::fs::FileExt::read_at(&*f, &mut buf, 0).unwrap();
            assert_eq!(
                &buf[..n],
                i.to_string().as_bytes(),
                "a held file stays readable"
            );
        }
        // A slot that was just used is still open: a second chance protects it.
        if let Some(&last) = uses.last() {
            assert!(slots[last % n_files].file.lock().is_some());
        }
        let (opened, closed) = cache.n_opened_closed();
        assert_eq!(opened - closed, cache.n_open() as u64);
    }

    #[test]
    fn bounded_and_always_the_right_file() {
        check(3, 10, &[0, 1, 2, 3, 0, 4, 5, 0, 0, 9, 8, 7, 1]);
        check(1, 2, &[0, 1, 0, 1]);
        check(100, 10, &[1, 2, 3]);
    }

    #[test]
    fn the_most_used_file_stays_open() {
        let dir = tempfile::tempdir().unwrap();
        let cache = OpenFiles::new(4);
        let slots: Vec<_> = (0..20)
            .map(|i| {
                let path = dir.path().join(format!("{i}"));
                std::fs::write(&path, b"x").unwrap();
                OpenFiles::lazy(path)
            })
            .collect();
        for i in 1..20 {
            cache.get(&slots[0]).unwrap();
            cache.get(&slots[i]).unwrap();
        }
        let (opened, _) = cache.n_opened_closed();
        assert_eq!(opened, 20, "slot 0 was opened once, every other slot once");
    }

    #[test]
    fn dropped_slots_leave_the_ring() {
        let dir = tempfile::tempdir().unwrap();
        let cache = OpenFiles::new(2);
        for i in 0..50 {
            let path = dir.path().join(format!("{i}"));
            let slot = cache.adopt(path.clone(), Arc::new(File::create(&path).unwrap()));
            drop(slot);
        }
        assert!(cache.ring.lock().slots.len() <= 2);
        assert_eq!(cache.n_open(), 0);
    }

    proptest! {
        #[test]
        fn any_use_sequence(max_open in 1usize..6, n_files in 1usize..12,
                            uses in proptest::collection::vec(0usize..64, 0..80)) {
            check(max_open, n_files, &uses);
        }
    }
}
