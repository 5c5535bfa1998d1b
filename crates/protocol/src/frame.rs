//! Size-prefixed framing: every Kafka request is a 4-byte big-endian length and that many bytes.

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
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max_frame_bytes: usize,
}

/// Smallest possible request: api key, api version, correlation id, client id length.
const FRAME_BYTES_MIN: i32 = 10;

impl FrameDecoder {
    /// A decoder refusing frames over `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> FrameDecoder {
        FrameDecoder {
            buf: BytesMut::new(),
            max_frame_bytes: max_frame_bytes.min(rafka_core::limits::REQUEST_BYTES_MAX),
        }
    }

    /// Appends bytes read from the peer.
    pub fn receive(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The buffer the next bytes from the peer go into, with room for at least
    /// `min_room` more: reading straight into it saves copying every request once.
    /// Whatever the caller appends is framed by [`next_frame`](Self::next_frame).
    pub fn read_buffer(&mut self, min_room: usize) -> &mut BytesMut {
        self.buf.reserve(min_room);
        &mut self.buf
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// How many more bytes the frame being received needs (for sizing reads).
    pub fn wanted(&self) -> usize {
        if self.buf.len() < 4 {
            return 4 - self.buf.len();
        }
        let size = i32::from_be_bytes(self.buf[..4].try_into().expect("4 bytes"));
        (size.max(0) as usize + 4).saturating_sub(self.buf.len())
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
            self.buf.reserve(4 + size - self.buf.len());
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
            self.buf.reserve(4 + size - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(4);
        Ok(Some(self.buf.split_to(size).freeze()))
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
