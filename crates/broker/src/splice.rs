//! Zero-copy sends of segment-file regions to plaintext sockets: `splice(2)` through a
//! pipe, or `sendfile(2)`.
//!
//! The pipes are the process's, not a connection's: a connection borrows one for the
//! regions of one answer and gives it back empty, so an idle consumer holds no pipe (two
//! descriptors and the kernel's ring of a MiB's page slots each) and the open-file limit
//! counts one descriptor per connection. At most [`PIPES_MAX`] exist at once; a connection
//! that finds none free sends with `sendfile`, which needs none of its own.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpStream;

/// Most splice pipes in the process, lent or kept (two descriptors each, which
/// `descriptors` sets aside).
pub(crate) const PIPES_MAX: usize = 64;

/// Pipes made and not yet closed, lent or kept.
static PIPES: AtomicUsize = AtomicUsize::new(0);

/// Empty pipes waiting to be lent.
static KEPT: parking_lot::Mutex<Vec<SplicePipe>> = parking_lot::Mutex::new(Vec::new());

/// A pipe lent for the regions of one answer. Given back to the process when dropped if
/// its last send finished (the pipe is empty), closed otherwise.
pub(crate) struct LentPipe {
    pipe: Option<SplicePipe>,
    /// Whether the pipe may hold bytes of a send that did not finish.
    dirty: bool,
}

impl LentPipe {
    /// A kept pipe, or a new one while fewer than [`PIPES_MAX`] exist; `None` when none
    /// can be had (then `sendfile`).
    pub(crate) fn take() -> Option<LentPipe> {
        let kept = KEPT.lock().pop();
        let pipe = match kept {
            Some(p) => p,
            None => {
                let made = PIPES.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < PIPES_MAX).then_some(n + 1)
                });
                made.ok()?;
                match SplicePipe::new() {
                    Some(p) => p,
                    None => {
                        PIPES.fetch_sub(1, Ordering::Relaxed);
                        return None;
                    }
                }
            }
        };
        Some(LentPipe {
            pipe: Some(pipe),
            dirty: false,
        })
    }

    /// Sends the whole region through the pipe (see `SplicePipe::send`).
    pub(crate) async fn send(
        &mut self,
        socket: &TcpStream,
        region: &rafka_core::FileRegion,
    ) -> std::io::Result<()> {
        let pipe = self
            .pipe
            .as_mut()
            .expect("a lent pipe is held until dropped");
        self.dirty = true;
        pipe.send(socket, region).await?;
        self.dirty = false;
        Ok(())
    }
}

impl Drop for LentPipe {
    fn drop(&mut self) {
        let Some(pipe) = self.pipe.take() else { return };
        if self.dirty {
            drop(pipe);
            PIPES.fetch_sub(1, Ordering::Relaxed);
        } else {
            KEPT.lock().push(pipe);
        }
    }
}

/// Bytes a splice pipe asks for (Linux's default `fs.pipe-max-size`).
const SPLICE_PIPE_BYTES: usize = 1024 * 1024;

/// A pipe for `splice(2)`: file pages go into it by reference, then from it to the socket.
/// `sendfile` does the same through a pipe of 16 pages, so every 64 KiB is its own send on
/// the socket; a pipe of up to a MiB moves a fetched region in a few.
struct SplicePipe {
    read: rustix::fd::OwnedFd,
    write: rustix::fd::OwnedFd,
    /// Bytes the pipe holds at most.
    size: usize,
}

impl SplicePipe {
    /// A pipe of up to [`SPLICE_PIPE_BYTES`]; `None` if none can be made (then `sendfile`).
    fn new() -> Option<SplicePipe> {
        use rustix::pipe::{fcntl_setpipe_size, pipe_with, PipeFlags};
        let (read, write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).ok()?;
        // A smaller pipe (a lowered fs.pipe-max-size) works, with more sends.
        let size = fcntl_setpipe_size(&write, SPLICE_PIPE_BYTES).unwrap_or(64 * 1024);
        Some(SplicePipe { read, write, size })
    }

    /// Sends the whole region: a pipe's worth of the file's pages at a time into the pipe,
    /// then out to the socket (`SPLICE_F_MORE` while more follows), waiting for room in
    /// the socket as needed. The pipe is empty again on success; after an error it may
    /// not be (and the connection closes).
    async fn send(
        &mut self,
        socket: &TcpStream,
        region: &rafka_core::FileRegion,
    ) -> std::io::Result<()> {
        use rustix::pipe::{splice, SpliceFlags};
        let mut position = region.position;
        let end = region.position + region.len as u64;
        let mut held = 0usize;
        while position < end || held > 0 {
            if held == 0 {
                let want = ((end - position) as usize).min(self.size);
                held = splice(
                    &*region.file,
                    Some(&mut position),
                    &self.write,
                    None,
                    want,
                    SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
                )?;
                if held == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "segment file shorter than the fetched region",
                    ));
                }
            }
            let mut flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
            if position < end {
                flags |= SpliceFlags::MORE;
            }
            let sent = socket
                .async_io(tokio::io::Interest::WRITABLE, || {
                    splice(&self.read, None, socket, None, held, flags)
                        .map_err(std::io::Error::from)
                })
                .await?;
            if sent == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    "the socket took no bytes",
                ));
            }
            held -= sent;
        }
        Ok(())
    }
}

/// `sendfile` of a whole region to a non-blocking socket, waiting for room as needed.
pub(crate) async fn send_file(
    socket: &TcpStream,
    region: &rafka_core::FileRegion,
) -> std::io::Result<()> {
    let mut position = region.position;
    let end = region.position + region.len as u64;
    while position < end {
        let want = (end - position) as usize;
        let sent = socket
            .async_io(tokio::io::Interest::WRITABLE, || {
                rustix::fs::sendfile(socket, &*region.file, Some(&mut position), want)
                    .map_err(std::io::Error::from)
            })
            .await?;
        if sent == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "segment file shorter than the fetched region",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;

    fn region(file: &Arc<std::fs::File>, position: u64, len: usize) -> rafka_core::FileRegion {
        rafka_core::FileRegion {
            file: file.clone(),
            position,
            len,
        }
    }

    #[tokio::test]
    async fn lent_pipes_are_bounded_shared_and_send_whole_regions() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        let file = Arc::new(f);
        // However many are asked for at once, at most PIPES_MAX exist.
        let lent: Vec<LentPipe> = (0..PIPES_MAX + 10)
            .filter_map(|_| LentPipe::take())
            .collect();
        assert!(lent.len() <= PIPES_MAX, "{}", lent.len());
        assert!(PIPES.load(Ordering::Relaxed) <= PIPES_MAX);
        drop(lent);
        let made = PIPES.load(Ordering::Relaxed);
        // Given back empty, a pipe serves the next answer: no new one is made.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            got
        });
        let socket = TcpStream::connect(addr).await.unwrap();
        for (position, len) in [(0u64, 1_500_000usize), (1_500_000, 1_500_000)] {
            let mut pipe = LentPipe::take().expect("a kept pipe");
            pipe.send(&socket, &region(&file, position, len))
                .await
                .unwrap();
        }
        assert_eq!(PIPES.load(Ordering::Relaxed), made);
        // A region past the file's end fails; its pipe is closed, not kept.
        let mut pipe = LentPipe::take().expect("a kept pipe");
        let short = pipe.send(&socket, &region(&file, 2_999_000, 5_000)).await;
        assert!(short.is_err());
        drop(pipe);
        assert_eq!(PIPES.load(Ordering::Relaxed), made - 1);
        drop(socket);
        let got = reader.await.unwrap();
        // The failed send may have sent the 1,000 bytes the file had.
        assert_eq!(got[..3_000_000], data[..]);
        assert!(got.len() <= 3_000_000 + 1_000);
    }
}
