//! `queued_max_request_bytes` (Kafka's `queued.max.request.bytes`, KIP-72): one budget, for
//! the whole process, of the bytes that large requests hold while they are received.
//!
//! A connection reads a request's 4-byte size prefix into the buffer it reads into anyway;
//! the rest of a request over [`UNCOUNTED_REQUEST_BYTES_MAX`] is read only once the
//! connection holds a [`FrameLease`] of its size, given back when the request has been
//! handed to the pipeline. A connection that cannot have one waits, unread (the client's
//! TCP window closes, as Kafka mutes such a channel), and keeps sending the answers it
//! owes; smaller requests — metadata, heartbeats, fetches, commits — never wait. So a
//! thousand clients announcing 100 MiB requests, or sending most of one and stopping,
//! hold at most the budget between them, not a thousand times 100 MiB.
//!
//! The budget is a fair semaphore: a waiting large request is not overtaken by later
//! ones. The configuration refuses a budget below `socket_request_max_bytes`, so every
//! request the broker accepts can be read.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Requests up to this size are read without the budget: they fit the buffer every
/// connection reads into anyway (its first 64 KiB), so what they hold is bounded by the
/// connection count.
pub(crate) const UNCOUNTED_REQUEST_BYTES_MAX: usize = 64 * 1024;

/// The process's budget and who waits for it.
#[derive(Debug)]
pub(crate) struct RequestMemory {
    /// `None`: no bound (`queued_max_request_bytes` 0 or less).
    pool: Option<Arc<Semaphore>>,
    /// The bound, in bytes.
    bytes: usize,
    /// Connections waiting for their next request to fit.
    waiting: AtomicUsize,
}

/// What a scrape shows of the budget.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RequestMemoryFigures {
    /// The bound; `None` when there is none.
    pub budget: Option<usize>,
    /// Bytes held by requests being received now.
    pub used: usize,
    /// Connections waiting for their request to fit.
    pub waiting: usize,
}

impl RequestMemory {
    /// A budget of `queued_max_request_bytes`; 0 or less is none.
    pub(crate) fn new(queued_max_request_bytes: i64) -> RequestMemory {
        let bytes = usize::try_from(queued_max_request_bytes)
            .unwrap_or(0)
            .min(Semaphore::MAX_PERMITS);
        RequestMemory {
            pool: (bytes > 0).then(|| Arc::new(Semaphore::new(bytes))),
            bytes,
            waiting: AtomicUsize::new(0),
        }
    }

    /// The bytes a request of `front` bytes (without its prefix) takes of the budget: none
    /// when it is small or there is no bound, never more than the whole (the
    /// configuration holds every accepted request's size under it).
    fn counted(&self, front: Option<usize>) -> usize {
        match (&self.pool, front) {
            (Some(_), Some(n)) if n > UNCOUNTED_REQUEST_BYTES_MAX => n.min(self.bytes),
            _ => 0,
        }
    }

    pub(crate) fn figures(&self) -> RequestMemoryFigures {
        let Some(pool) = &self.pool else {
            return RequestMemoryFigures::default();
        };
        RequestMemoryFigures {
            budget: Some(self.bytes),
            used: self.bytes - pool.available_permits(),
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }
}

/// What one connection holds of the budget: enough for the request at the front of its
/// buffer, or nothing.
#[derive(Debug, Default)]
pub(crate) struct FrameLease {
    permit: Option<OwnedSemaphorePermit>,
}

impl FrameLease {
    fn held(&self) -> usize {
        self.permit.as_ref().map_or(0, |p| p.num_permits())
    }

    /// After requests were taken off the buffer: keeps what the request now at its front
    /// (`Connection::front_frame_bytes`) needs, if that is exactly what is held (the same
    /// request, not yet whole or not yet taken, or another of the same size), and gives
    /// the rest back.
    pub(crate) fn settle(&mut self, memory: &RequestMemory, front: Option<usize>) {
        let needed = memory.counted(front);
        if self.held() != needed {
            self.permit = None;
        }
    }

    /// Waits until the request at the front of the buffer may be read on: at once when it
    /// is small, already held, or there is no bound. Cancel safe: a lease taken is kept
    /// even if the read that follows is dropped.
    pub(crate) async fn cover(&mut self, memory: &RequestMemory, front: Option<usize>) {
        self.settle(memory, front);
        let needed = memory.counted(front);
        if needed == 0 || self.held() == needed {
            return;
        }
        let Some(pool) = &memory.pool else {
            return;
        };
        // Accepted requests are at most `REQUEST_BYTES_MAX`.
        let n = u32::try_from(needed).expect("request sizes fit u32");
        let permit = match pool.clone().try_acquire_many_owned(n) {
            Ok(p) => p,
            Err(_) => {
                let _waiting = Waiting::start(&memory.waiting);
                tracing::debug!(bytes = needed, "request waits for queued_max_request_bytes");
                pool.clone()
                    .acquire_many_owned(n)
                    .await
                    .expect("the budget is never closed")
            }
        };
        self.permit = Some(permit);
    }
}

/// Counts a connection as waiting while it lives (dropped with a cancelled wait too).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn start(count: &'a AtomicUsize) -> Waiting<'a> {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MIB: usize = 1 << 20;

    #[tokio::test]
    async fn large_requests_share_the_budget_and_small_ones_never_wait() {
        let memory = Arc::new(RequestMemory::new(3 * MIB as i64));
        let mut a = FrameLease::default();
        let mut b = FrameLease::default();
        a.cover(&memory, Some(2 * MIB)).await;
        assert_eq!(memory.figures().used, 2 * MIB);
        // Small requests and none at all take nothing and do not wait.
        let mut small = FrameLease::default();
        small
            .cover(&memory, Some(UNCOUNTED_REQUEST_BYTES_MAX))
            .await;
        small.cover(&memory, None).await;
        assert_eq!(small.held(), 0);
        // A second 2 MiB request waits until the first is handed on.
        let waiter = {
            let memory = memory.clone();
            tokio::spawn(async move {
                b.cover(&memory, Some(2 * MIB)).await;
                b
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        assert_eq!(memory.figures().waiting, 1);
        // Still the front request: kept.
        a.settle(&memory, Some(2 * MIB));
        assert_eq!(a.held(), 2 * MIB);
        a.settle(&memory, Some(100));
        assert_eq!(a.held(), 0);
        let b = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken once the budget has room")
            .unwrap();
        assert_eq!(b.held(), 2 * MIB);
        assert_eq!(
            memory.figures(),
            RequestMemoryFigures {
                budget: Some(3 * MIB),
                used: 2 * MIB,
                waiting: 0
            }
        );
        drop(b);
        assert_eq!(memory.figures().used, 0);
    }

    #[tokio::test]
    async fn a_cancelled_wait_takes_nothing_and_no_bound_never_waits() {
        let memory = RequestMemory::new(MIB as i64);
        let mut a = FrameLease::default();
        a.cover(&memory, Some(MIB)).await;
        let mut b = FrameLease::default();
        let waited =
            tokio::time::timeout(Duration::from_millis(50), b.cover(&memory, Some(MIB))).await;
        assert!(waited.is_err());
        assert_eq!(b.held(), 0);
        assert_eq!(memory.figures().waiting, 0);
        drop(a);
        b.cover(&memory, Some(MIB)).await;
        assert_eq!(memory.figures().used, MIB);
        // A different request at the front: the lease follows its size.
        b.settle(&memory, Some(MIB / 2));
        b.cover(&memory, Some(MIB / 2)).await;
        assert_eq!(memory.figures().used, MIB / 2);

        let unbounded = RequestMemory::new(-1);
        let mut c = FrameLease::default();
        c.cover(&unbounded, Some(100 * MIB)).await;
        assert_eq!(unbounded.figures(), RequestMemoryFigures::default());
    }
}
