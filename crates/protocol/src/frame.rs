//! Size-prefixed framing: every Kafka request is a 4-byte big-endian length and that many bytes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::{Buf, Bytes, BytesMut};

/// Why the byte stream cannot be trusted any more. The connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The size prefix is over the configured limit (checked before allocating).
    #[error("request of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Size from the prefix.
        size: i64,
        /// The limit.
        max: usize,
    },
    /// A negative or too-small size prefix.
    #[error("invalid request size {0}")]
    BadSize(i32),
}

/// Accumulates bytes and yields whole frames. Bounded: a frame larger than `max_frame_bytes`
/// is refused from its prefix alone.
///
/// Frames are split off the receive buffer without a copy, so a frame still in use (a
/// pipelined produce being appended) keeps its buffer's memory. The decoder then goes on in
/// another buffer and keeps the one it left as a spare, to take up again once all of its
/// frames have been dropped: a connection cycles through a few buffers instead of
/// allocating (and the kernel zeroing) fresh memory as requests come and go. At most
/// [`SPARE_BUFFERS`] spares of at most [`SPARE_BYTES_MAX`] together are kept, and the
/// spares of all connections in the process, with those closed connections left for new
/// ones to take up, at most [`SPARE_BYTES_ALL_MAX`].
#[derive(Debug)]
pub struct FrameDecoder {
    /// Where bytes from the peer go; the front of it is the frame being received.
    buf: BytesMut,
    /// The size of `buf`'s allocation (`BytesMut::capacity` counts only from its start).
    buf_bytes: usize,
    /// Buffers left while frames split off them were alive, each with its allocation's
    /// size, oldest first; empty (their frames are not theirs to write over).
    spare: VecDeque<(BytesMut, usize)>,
    /// Buffers taken new so far (allocated, or left by a closed connection).
    allocations: u64,
    max_frame_bytes: usize,
}

/// Smallest possible request: api key, api version, correlation id, client id length.
const FRAME_BYTES_MIN: i32 = 10;

/// How many buffers a connection keeps besides the one it reads into.
pub const SPARE_BUFFERS: usize = 8;

/// The bytes of a connection's spare buffers together (a buffer left after a larger frame
/// is given back to the allocator once its frames are dropped).
pub const SPARE_BYTES_MAX: usize = 8 * 1024 * 1024;

/// The spare buffers of all decoders in the process and those left by closed connections,
/// together.
pub const SPARE_BYTES_ALL_MAX: usize = 256 * 1024 * 1024;

/// How many buffers closed and idle connections leave for others (their bytes are bounded
/// by [`SPARE_BYTES_ALL_MAX`]); past it the oldest is given back.
const LEFT_BUFFERS: usize = 1024;

/// How many of the newest buffers left a read looks through for one it can take (those
/// whose frames are still in use cannot be); older ones wait to be pushed out.
const LEFT_SEARCH: usize = 64;

/// Spare bytes held in the process, counted against [`SPARE_BYTES_ALL_MAX`].
static SPARE_BYTES_ALL: AtomicUsize = AtomicUsize::new(0);

/// Buffers closed and idle connections left, oldest first, each with its size (counted in
/// `SPARE_BYTES_ALL`).
static LEFT: Mutex<VecDeque<(BytesMut, usize)>> = Mutex::new(VecDeque::new());

/// Counts `bytes` more spare memory if the process-wide bound allows it.
fn hold(bytes: usize) -> bool {
    SPARE_BYTES_ALL
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
            (held + bytes <= SPARE_BYTES_ALL_MAX).then_some(held + bytes)
        })
        .is_ok()
}

/// Counts `bytes` of spare memory no more (in use again, or given back).
fn release(bytes: usize) {
    SPARE_BYTES_ALL.fetch_sub(bytes, Ordering::Relaxed);
}

/// A buffer a closed connection left that can hold `needed` bytes now (none of its frames
/// alive), counted as held no more.
fn take_left(needed: usize) -> Option<(BytesMut, usize)> {
    let mut left = LEFT.lock().unwrap_or_else(|e| e.into_inner());
    // Newest first: the buffer an idle connection has just parked is the warmest.
    let len = left.len();
    let i = (len.saturating_sub(LEFT_SEARCH)..len)
        .rev()
        .find(|&i| left[i].0.try_reclaim(needed))?;
    let (b, n) = left.remove(i).expect("index in range");
    release(n);
    Some((b, n))
}

/// Leaves an empty buffer (already counted as held) for another connection; the oldest
/// left is given back when there are [`LEFT_BUFFERS`].
fn leave(buf: BytesMut, bytes: usize) {
    let mut left = LEFT.lock().unwrap_or_else(|e| e.into_inner());
    let oldest = if left.len() >= LEFT_BUFFERS {
        left.pop_front()
    } else {
        None
    };
    left.push_back((buf, bytes));
    drop(left);
    if let Some((b, n)) = oldest {
        drop(b);
        release(n);
    }
}

/// The smallest buffer allocated (many small requests share one), and the unit buffer
/// sizes are rounded up to.
const BUFFER_BYTES_MIN: usize = 64 * 1024;

impl FrameDecoder {
    /// A decoder refusing frames over `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> FrameDecoder {
        FrameDecoder {
            buf: BytesMut::new(),
            buf_bytes: 0,
            spare: VecDeque::new(),
            allocations: 0,
            max_frame_bytes: max_frame_bytes.min(rafka_core::limits::REQUEST_BYTES_MAX),
        }
    }

    /// Appends bytes read from the peer.
    pub fn receive(&mut self, bytes: &[u8]) {
        self.make_room(bytes.len().max(self.frame_rest()));
        self.buf.extend_from_slice(bytes);
    }

    /// The buffer the next bytes from the peer go into, with room for at least
    /// `min_room` more, or room for the rest of a frame begun: reading straight into it
    /// saves copying every request once.
    /// Whatever the caller appends is framed by [`next_frame`](Self::next_frame); appending
    /// more than the buffer's spare capacity (a socket read never does) allocates outside
    /// the decoder's reuse.
    ///
    /// Room for a frame begun is made here, when its body is about to be read, not when its
    /// size prefix is: a caller may wait before reading on (for a budget of request
    /// memory), and a prefix alone takes no more memory than the buffer it came in.
    pub fn read_buffer(&mut self, min_room: usize) -> &mut BytesMut {
        let rest = self.frame_rest();
        if rest == 0 {
            self.make_room(min_room);
        } else if self.buf.capacity() - self.buf.len() < rest {
            // The whole rest of the frame in one buffer, contiguous with its start.
            self.make_room(rest.max(min_room));
        }
        // Else the rest of the frame begun fits where it is: no moving it for more room.
        &mut self.buf
    }

    /// The size of the frame at the front of the buffer, without its prefix, once the
    /// prefix is buffered and is one [`next_frame`](Self::next_frame) or
    /// [`next_raw_frame`](Self::next_raw_frame) might accept: the frame being received, or
    /// a whole one not yet taken.
    pub fn front_frame_bytes(&self) -> Option<usize> {
        let prefix = self.buf.get(..4)?;
        let size = i32::from_be_bytes(prefix.try_into().expect("4 bytes"));
        usize::try_from(size)
            .ok()
            .filter(|&n| n <= self.max_frame_bytes)
    }

    /// The bytes the frame at the front still needs, once its prefix is buffered and
    /// acceptable; 0 otherwise.
    fn frame_rest(&self) -> usize {
        self.front_frame_bytes()
            .map_or(0, |n| (n + 4).saturating_sub(self.buf.len()))
    }

    /// Buffers kept for reuse and the bytes they hold (allocated, in use or not), the one
    /// read into included: at most `1 + SPARE_BUFFERS` buffers, the spares at most
    /// [`SPARE_BYTES_MAX`] together; none after [`park`](Self::park).
    pub fn buffers(&self) -> (usize, usize) {
        let spare: usize = self.spare.iter().map(|(_, n)| n).sum();
        (
            usize::from(self.buf_bytes > 0) + self.spare.len(),
            self.buf_bytes + spare,
        )
    }

    /// How many buffers the decoder has taken new: allocated, or left by a closed
    /// connection (the rest of the time it reused one of its own).
    pub fn allocations(&self) -> u64 {
        self.allocations
    }

    /// Room for `room` more bytes after those buffered, contiguous with them: in the
    /// buffer as it is, or moved to its front once no frame uses it, or else in a spare
    /// whose frames are all dropped, or else in a new buffer.
    fn make_room(&mut self, room: usize) {
        if self.buf.capacity() - self.buf.len() >= room || self.buf.try_reclaim(room) {
            return;
        }
        let needed = self.buf.len() + room;
        let (next, next_bytes) = match self
            .spare
            .iter_mut()
            .position(|(b, _)| b.try_reclaim(needed))
        {
            Some(i) => {
                let (b, n) = self.spare.remove(i).expect("position found");
                release(n);
                (b, n)
            }
            None => {
                self.allocations += 1;
                take_left(needed).unwrap_or_else(|| {
                    // Rounded up, so that the next frames of about this size fit it too.
                    let bytes = needed.div_ceil(BUFFER_BYTES_MIN) * BUFFER_BYTES_MIN;
                    (BytesMut::with_capacity(bytes), bytes)
                })
            }
        };
        let mut old = std::mem::replace(&mut self.buf, next);
        let old_bytes = std::mem::replace(&mut self.buf_bytes, next_bytes);
        self.buf.extend_from_slice(&old);
        if old_bytes == 0 {
            return;
        }
        old.clear();
        // A buffer only the decoder holds has just been found too small: let it go.
        if old_bytes <= SPARE_BYTES_MAX && !old.try_reclaim(old_bytes) {
            // The oldest spares make way; their memory goes back when their frames drop.
            let mut kept: usize = self.spare.iter().map(|(_, n)| n).sum();
            while self.spare.len() == SPARE_BUFFERS || kept + old_bytes > SPARE_BYTES_MAX {
                let Some((_, n)) = self.spare.pop_front() else {
                    break;
                };
                release(n);
                kept -= n;
            }
            if hold(old_bytes) {
                self.spare.push_back((old, old_bytes));
            }
        }
    }

    /// Leaves every buffer of the decoder for any connection to take (with the buffers of
    /// closed connections, within the same bounds), if nothing is buffered: a connection
    /// waiting for its next request then holds no receive memory, and the next read
    /// takes a buffer again. Returns whether it did (not while a frame is begun).
    pub fn park(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        self.leave_all();
        true
    }

    /// Gives the spares and the buffer read into to the process's pool, or back to the
    /// allocator past its bounds; the decoder is left holding none.
    fn leave_all(&mut self) {
        for (b, n) in self.spare.drain(..) {
            leave(b, n);
        }
        let n = std::mem::take(&mut self.buf_bytes);
        let mut b = std::mem::take(&mut self.buf);
        if n > 0 && n <= SPARE_BYTES_MAX && hold(n) {
            b.clear();
            leave(b, n);
        }
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole frame (without its prefix), if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let size = i32::from_be_bytes(self.buf[..4].try_into().expect("4 bytes"));
        if size < FRAME_BYTES_MIN {
            return Err(FrameError::BadSize(size));
        }
        if size as usize > self.max_frame_bytes {
            return Err(FrameError::TooLarge {
                size: size as i64,
                max: self.max_frame_bytes,
            });
        }
        let size = size as usize;
        if self.buf.len() < 4 + size {
            return Ok(None);
        }
        self.buf.advance(4);
        Ok(Some(self.buf.split_to(size).freeze()))
    }

    /// The next whole frame of any size from 0 to `max_bytes` (and the decoder's limit): a
    /// raw SASL token, which has no request header (SaslHandshake v0 framing).
    pub fn next_raw_frame(&mut self, max_bytes: usize) -> Result<Option<Bytes>, FrameError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let size = i32::from_be_bytes(self.buf[..4].try_into().expect("4 bytes"));
        if size < 0 {
            return Err(FrameError::BadSize(size));
        }
        let max = max_bytes.min(self.max_frame_bytes);
        if size as usize > max {
            return Err(FrameError::TooLarge {
                size: size as i64,
                max,
            });
        }
        let size = size as usize;
        if self.buf.len() < 4 + size {
            return Ok(None);
        }
        self.buf.advance(4);
        Ok(Some(self.buf.split_to(size).freeze()))
    }
}

impl Drop for FrameDecoder {
    /// The connection's buffers are left for new connections, within the bounds.
    fn drop(&mut self) {
        self.leave_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as i32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn frames_split_across_reads() {
        let mut d = FrameDecoder::new(1024);
        let bytes = [framed(&[1; 12]), framed(&[2; 20])].concat();
        d.receive(&bytes[..7]);
        assert_eq!(d.next_frame(), Ok(None));
        d.receive(&bytes[7..]);
        assert_eq!(d.next_frame().unwrap().unwrap().len(), 12);
        assert_eq!(d.next_frame().unwrap().unwrap()[..], [2; 20]);
        assert_eq!(d.next_frame(), Ok(None));
    }

    /// Every frame of a pipelined stream, read in chunks of `chunk` bytes, with up to
    /// `alive` frames held (being appended) before the oldest is dropped.
    fn decode_holding(
        d: &mut FrameDecoder,
        stream: &[u8],
        chunk: usize,
        alive: usize,
    ) -> Vec<Vec<u8>> {
        decode_parking(d, stream, chunk, alive, false)
    }

    /// As [`decode_holding`]; with `park`, the decoder parks after every read whose bytes
    /// were all framed, as a connection that waits for its next request does.
    fn decode_parking(
        d: &mut FrameDecoder,
        stream: &[u8],
        chunk: usize,
        alive: usize,
        park: bool,
    ) -> Vec<Vec<u8>> {
        let mut held = VecDeque::new();
        let mut out = Vec::new();
        let mut rest = stream;
        while !rest.is_empty() {
            // As a socket read does: at most what the buffer has room for.
            let b = d.read_buffer(chunk.max(1));
            let n = rest.len().min(chunk.max(1)).min(b.capacity() - b.len());
            assert!(n > 0, "room to read into");
            b.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            while let Some(f) = d.next_frame().unwrap() {
                out.push(f.to_vec());
                held.push_back(f);
                if held.len() > alive {
                    held.pop_front();
                }
            }
            if park {
                assert_eq!(d.park(), d.buffered() == 0);
                if d.buffered() == 0 {
                    assert_eq!(d.buffers(), (0, 0));
                }
            }
            let (count, bytes) = d.buffers();
            assert!(count <= 1 + SPARE_BUFFERS, "{count} buffers");
            assert!(bytes <= d.buf_bytes + SPARE_BYTES_MAX, "{bytes} bytes");
            assert!(SPARE_BYTES_ALL.load(Ordering::Relaxed) <= SPARE_BYTES_ALL_MAX);
        }
        out
    }

    #[test]
    fn buffers_are_reused_once_their_frames_are_dropped() {
        // 200 requests of 300 KiB, three in flight at a time: about 60 MB through a
        // handful of buffers.
        let frames: Vec<Vec<u8>> = (0..200u32)
            .map(|i| vec![(i % 251) as u8; 300 * 1024])
            .collect();
        let stream: Vec<u8> = frames.iter().flat_map(|f| framed(f)).collect();
        let mut d = FrameDecoder::new(1 << 20);
        let out = decode_holding(&mut d, &stream, 64 * 1024, 3);
        assert_eq!(out, frames);
        assert!(
            d.allocations() <= 1 + SPARE_BUFFERS as u64,
            "{}",
            d.allocations()
        );
        // Frames kept for good (a store holding them) cost new buffers, not the bound.
        let mut d = FrameDecoder::new(1 << 20);
        let out = decode_holding(&mut d, &stream, 64 * 1024, usize::MAX);
        assert_eq!(out, frames);
        assert!(d.allocations() >= 50);
    }

    #[test]
    fn a_closed_connections_buffers_serve_the_next_one_unchanged() {
        let frames = |seed: u8| -> Vec<Vec<u8>> {
            (0..40u32)
                .map(|i| vec![seed.wrapping_add(i as u8); 50_000 + i as usize * 1000])
                .collect()
        };
        let stream = |f: &[Vec<u8>]| -> Vec<u8> { f.iter().flat_map(|f| framed(f)).collect() };
        let first = frames(1);
        let mut a = FrameDecoder::new(1 << 20);
        assert_eq!(decode_holding(&mut a, &stream(&first), 30_000, 2), first);
        drop(a);
        // Whatever buffers the second connection takes, it sees only its own bytes.
        for seed in 2..6 {
            let next = frames(seed);
            let mut b = FrameDecoder::new(1 << 20);
            assert_eq!(decode_holding(&mut b, &stream(&next), 70_000, 1), next);
        }
        assert!(SPARE_BYTES_ALL.load(Ordering::Relaxed) <= SPARE_BYTES_ALL_MAX);
        assert!(LEFT.lock().unwrap().len() <= LEFT_BUFFERS);
    }

    #[test]
    fn idle_decoders_hold_no_buffers_and_the_pool_stays_bounded() {
        // Many connections, each served one small request and then waiting: none holds a
        // buffer, and what they left is within the pool's bounds.
        let mut idle: Vec<FrameDecoder> = (0..2 * LEFT_BUFFERS)
            .map(|i| {
                let mut d = FrameDecoder::new(1 << 20);
                let b = d.read_buffer(64 * 1024);
                b.extend_from_slice(&framed(&[i as u8; 40]));
                assert_eq!(d.next_frame().unwrap().unwrap()[..], [i as u8; 40]);
                assert!(d.park());
                assert_eq!(d.buffers(), (0, 0));
                d
            })
            .collect();
        assert!(LEFT.lock().unwrap().len() <= LEFT_BUFFERS);
        assert!(SPARE_BYTES_ALL.load(Ordering::Relaxed) <= SPARE_BYTES_ALL_MAX);
        // A parked decoder reads again into a pooled buffer and sees only its own bytes.
        for (i, d) in idle.iter_mut().enumerate().take(50) {
            let stream = framed(&[!(i as u8); 300]);
            assert_eq!(
                decode_holding(d, &stream, 100, 0),
                vec![vec![!(i as u8); 300]]
            );
        }
        // A frame begun is not parked away.
        let d = &mut idle[0];
        d.read_buffer(16).extend_from_slice(&framed(&[5; 64])[..30]);
        assert!(!d.park());
        d.read_buffer(64).extend_from_slice(&framed(&[5; 64])[30..]);
        assert_eq!(d.next_frame().unwrap().unwrap()[..], [5; 64]);
    }

    #[test]
    fn a_size_prefix_takes_no_memory_for_its_frame_until_its_body_is_read() {
        let body: Vec<u8> = (0..(20 << 20)).map(|i: u32| (i % 253) as u8).collect();
        let frame = framed(&body);
        let mut d = FrameDecoder::new(32 << 20);
        d.read_buffer(64 * 1024)
            .extend_from_slice(&frame[..4 + 1000]);
        let first = d.buffers();
        assert!(first.1 < 20 << 20, "{first:?}");
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.front_frame_bytes(), Some(20 << 20));
        // Announced, not yet read: the buffer the prefix came in, nothing more.
        assert_eq!(d.buffers(), first);
        // Reading on makes room for the whole rest at once.
        let b = d.read_buffer(64 * 1024);
        assert!(b.capacity() - b.len() >= frame.len() - 1004);
        b.extend_from_slice(&frame[1004..]);
        assert_eq!(d.next_frame().unwrap().unwrap()[..], body[..]);
        assert_eq!(d.front_frame_bytes(), None);
        // A prefix the decoder would refuse is no frame to make room for.
        let mut d = FrameDecoder::new(1 << 20);
        d.receive(&(2i32 << 20).to_be_bytes());
        assert_eq!(d.front_frame_bytes(), None);
        assert!(d.read_buffer(16).capacity() < 1 << 20);
        assert!(matches!(d.next_frame(), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn a_large_frame_is_not_kept_as_a_spare() {
        let big = framed(&[9; 6 << 20]);
        let small = framed(&[1; 100]);
        let mut d = FrameDecoder::new(8 << 20);
        let stream = [small.clone(), big, small.clone(), small].concat();
        let out = decode_holding(&mut d, &stream, 1 << 20, 1);
        assert_eq!(out.len(), 4);
        assert_eq!(out[1], vec![9; 6 << 20]);
        let (_, bytes) = d.buffers();
        assert!(bytes < (6 << 20) + SPARE_BYTES_MAX, "{bytes}");
        assert!(d.spare.iter().all(|(_, n)| *n <= SPARE_BYTES_MAX));
    }

    proptest::proptest! {
        /// Frames of any sizes, split across reads of any size, with any number of them
        /// held: decoded the same as a fresh decoder given all bytes at once, and the spare
        /// buffers within their bound.
        #[test]
        fn reuse_decodes_the_same_frames(
            sizes in proptest::collection::vec(10usize..100_000, 1..30),
            chunk in 1usize..150_000,
            alive in 0usize..8,
            park: bool,
        ) {
            let frames: Vec<Vec<u8>> = sizes
                .iter()
                .enumerate()
                .map(|(i, n)| (0..*n).map(|j| (i * 31 + j) as u8).collect())
                .collect();
            let stream: Vec<u8> = frames.iter().flat_map(|f| framed(f)).collect();
            let mut whole = FrameDecoder::new(1 << 20);
            whole.receive(&stream);
            let mut expected = Vec::new();
            while let Some(f) = whole.next_frame().unwrap() {
                expected.push(f.to_vec());
            }
            proptest::prop_assert_eq!(&expected, &frames);
            let mut d = FrameDecoder::new(1 << 20);
            let out = decode_parking(&mut d, &stream, chunk, alive, park);
            proptest::prop_assert_eq!(out, frames);
            proptest::prop_assert!(d.spare.len() <= SPARE_BUFFERS);
            proptest::prop_assert!(
                d.spare.iter().map(|(_, n)| n).sum::<usize>() <= SPARE_BYTES_MAX
            );
            proptest::prop_assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn raw_frames_may_be_short_and_are_bounded() {
        let mut d = FrameDecoder::new(1024);
        d.receive(&[framed(&[]), framed(&[7; 3]), framed(&[1; 12])].concat());
        assert_eq!(d.next_raw_frame(16).unwrap().unwrap().len(), 0);
        assert_eq!(d.next_raw_frame(16).unwrap().unwrap()[..], [7; 3]);
        assert!(matches!(
            d.next_raw_frame(8),
            Err(FrameError::TooLarge { size: 12, max: 8 })
        ));
        let mut d = FrameDecoder::new(1024);
        d.receive(&(-1i32).to_be_bytes());
        assert_eq!(d.next_raw_frame(16), Err(FrameError::BadSize(-1)));
    }

    #[test]
    fn oversized_prefix_refused_before_buffering() {
        let mut d = FrameDecoder::new(1024);
        d.receive(&0x7fff_ffffi32.to_be_bytes());
        assert!(matches!(d.next_frame(), Err(FrameError::TooLarge { .. })));
        let mut d = FrameDecoder::new(1024);
        d.receive(&(-5i32).to_be_bytes());
        assert_eq!(d.next_frame(), Err(FrameError::BadSize(-5)));
    }
}
