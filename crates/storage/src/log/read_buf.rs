//! Recycled buffers for fetch reads.
//!
//! A fetch reads up to a MiB (a client's `max.partition.fetch.bytes`) from a segment into
//! memory, and that memory lives until the response has been written to the socket. A
//! fresh `vec![0; n]` per fetch costs a zero fill (or 256 page faults of fresh mmap'd
//! pages) for bytes that `pread` overwrites at once; on a steady consumer that was 7% of
//! the broker's fetch time. Instead the bytes go out as a [`Bytes`] that owns a
//! [`ReadBuf`], and dropping it hands the allocation back here for the next read.
//!
//! Bounded: at most [`POOLED_BUFFERS_MAX`] buffers and [`POOLED_BYTES_MAX`] bytes wait in
//! the pool; buffers over [`POOLED_BUFFER_BYTES_MAX`] are freed, not kept.

use std::fs::File;
use std::io;

use bytes::Bytes;
use parking_lot::Mutex;

use super::segment::fill_at;

/// Buffers kept for reuse.
const POOLED_BUFFERS_MAX: usize = 16;
/// Bytes kept for reuse, all buffers together.
const POOLED_BYTES_MAX: usize = 16 * 1024 * 1024;
/// A buffer larger than this is freed when its bytes are dropped (large fetches are rare).
const POOLED_BUFFER_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The smallest buffer made for the pool.
const MIN_BUFFER_BYTES: usize = 64 * 1024;

struct Pool {
    free: Vec<Vec<u8>>,
    bytes: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    free: Vec::new(),
    bytes: 0,
});

/// Takes a buffer of at least `len` initialized bytes: a pooled one if any is big enough,
/// else a new one (zero-filled once; it is recycled afterwards), rounded up to a power of
/// two so that reads of slightly different sizes can share buffers.
fn take(len: usize) -> Vec<u8> {
    let pooled = {
        let mut pool = POOL.lock();
        let found = pool.free.iter().position(|b| b.len() >= len);
        found.map(|i| {
            let buf = pool.free.swap_remove(i);
            pool.bytes -= buf.len();
            buf
        })
    };
    pooled.unwrap_or_else(|| {
        let rounded = len.max(MIN_BUFFER_BYTES).next_power_of_two();
        vec![
            0u8;
            if rounded <= POOLED_BUFFER_BYTES_MAX {
                rounded
            } else {
                len
            }
        ]
    })
}

fn give_back(buf: Vec<u8>) {
    if buf.len() > POOLED_BUFFER_BYTES_MAX {
        return;
    }
    let mut pool = POOL.lock();
    if pool.free.len() < POOLED_BUFFERS_MAX && pool.bytes + buf.len() <= POOLED_BYTES_MAX {
        pool.bytes += buf.len();
        pool.free.push(buf);
    }
}

/// A pooled buffer of which the first `filled` bytes were read from a file.
pub(crate) struct ReadBuf {
    /// Always fully initialized; only `..filled` is meaningful.
    buf: Vec<u8>,
    filled: usize,
}

impl ReadBuf {
    /// Reads up to `len` bytes at `position`, fewer only at the end of the file.
    pub(crate) fn read_at(file: &File, position: u64, len: usize) -> io::Result<ReadBuf> {
        let mut buf = take(len);
        match fill_at(file, position, &mut buf[..len]) {
            Ok(filled) => Ok(ReadBuf { buf, filled }),
            Err(e) => {
                give_back(buf);
                Err(e)
            }
        }
    }

    /// Keeps the first `len` bytes.
    pub(crate) fn truncate(&mut self, len: usize) {
        self.filled = self.filled.min(len);
    }

    /// The bytes, as a [`Bytes`] that returns the buffer to the pool when dropped.
    pub(crate) fn freeze(self) -> Bytes {
        if self.filled == 0 {
            return Bytes::new(); // drops `self`, recycling the buffer
        }
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for ReadBuf {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.filled]
    }
}

impl std::ops::Deref for ReadBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_ref()
    }
}

impl Drop for ReadBuf {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_truncates_and_recycles_without_leaking_old_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut f = File::create(&path).unwrap();
        f.write_all(&[7u8; 5000]).unwrap();
        f.write_all(&[9u8; 100]).unwrap();
        let f = File::open(&path).unwrap();

        let mut a = ReadBuf::read_at(&f, 0, 5100).unwrap();
        assert_eq!(a.len(), 5100);
        a.truncate(4000);
        let a = a.freeze();
        assert_eq!(a.len(), 4000);
        assert!(a.iter().all(|&b| b == 7));
        let slice = a.slice(10..20);
        drop(a);
        assert_eq!(&slice[..], &[7u8; 10]); // the owner lives while a slice does
        drop(slice);

        // A short read at the end of the file reports only what the file had, even when
        // the recycled buffer held more from an earlier read.
        let b = ReadBuf::read_at(&f, 5000, 1000).unwrap().freeze();
        assert_eq!(&b[..], &[9u8; 100]);
        let empty = ReadBuf::read_at(&f, 5100, 10).unwrap().freeze();
        assert!(empty.is_empty());
    }

    #[test]
    fn the_pool_stays_bounded() {
        for _ in 0..3 {
            let bufs: Vec<Vec<u8>> = (0..40).map(|_| take(1024 * 1024)).collect();
            for b in bufs {
                give_back(b);
            }
            give_back(vec![0u8; POOLED_BUFFER_BYTES_MAX + 1]);
            let pool = POOL.lock();
            assert!(pool.free.len() <= POOLED_BUFFERS_MAX);
            assert!(pool.bytes <= POOLED_BYTES_MAX);
            assert_eq!(pool.bytes, pool.free.iter().map(Vec::len).sum::<usize>());
        }
    }
}
