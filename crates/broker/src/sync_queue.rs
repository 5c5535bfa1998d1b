//! Waiting for an fsync without a thread per waiter: the broker's half of acks=all group
//! commit.
//!
//! The engines' group commit (storage's `GroupCommit`) lets concurrent `flush` calls share
//! one fsync, but each caller blocks a thread until it is covered: one blocking-pool thread
//! per acks=all answer, parked on the engine's flush lock and woken in turn. Here a
//! partition has at most one flusher. An answer that needs durability queues a one-shot
//! waker and, when no flush is running, starts one on the blocking pool. The flusher takes
//! every waker queued so far, calls the engine's `flush` once — which covers every append
//! that returned before those wakers queued — answers them all with its result, and goes
//! again while more queued meanwhile. One thread and one wake per fsync rather than per
//! request, and the disk is kept busy for as long as answers wait on it.
//!
//! Invariant: a waker is answered by a flush that started after it queued (so the flush
//! covers every append that returned before it queued), or with an error.
//!
//! The queue holds one waker per answer in flight; answers in flight are bounded per
//! connection (`broker::server`), so the queue is bounded by them.

use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;
use rafka_core::StorageError;
use tokio::sync::oneshot;

/// A flush that failed, as every answer it was to cover sees it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FlushFailed {
    /// The engine's flush returned an error.
    #[error("{0}")]
    Storage(Arc<StorageError>),
    /// The flusher stopped before answering (it panicked, or the runtime is shutting down).
    #[error("the flush did not complete")]
    Abandoned,
}

type Answer = Result<(), FlushFailed>;

/// One partition's queue of answers waiting for a flush.
#[derive(Debug, Default)]
pub(crate) struct SyncQueue {
    waiting: Mutex<Waiting>,
}

#[derive(Debug, Default)]
struct Waiting {
    /// A flusher is running (and will look at `wakers` again before it stops).
    flushing: bool,
    wakers: Vec<oneshot::Sender<Answer>>,
}

impl SyncQueue {
    /// Queues for a flush that covers every append that returned before this call, starting
    /// a flusher running `flush` on the blocking pool when none runs. The wait is registered
    /// here, not when the future is first polled: call it for every partition first, then
    /// await them, and their flushes run side by side.
    pub fn durable<F>(self: &Arc<Self>, flush: F) -> impl Future<Output = Answer> + Send + 'static
    where
        F: Fn() -> Result<(), StorageError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut w = self.waiting.lock();
            w.wakers.push(tx);
            !std::mem::replace(&mut w.flushing, true)
        };
        if start {
            let flusher = Flusher {
                queue: self.clone(),
                batch: Vec::new(),
                finished: false,
            };
            // Dropped unrun when the runtime shuts down: the flusher's drop answers the
            // queued wakers then.
            drop(tokio::task::spawn_blocking(move || flusher.run(flush)));
        }
        async move { rx.await.unwrap_or(Err(FlushFailed::Abandoned)) }
    }
}

/// The one running flusher of a queue. Dropped without finishing (a panicking flush, a
/// task never run), it first lets the next caller start another, then answers its batch
/// and what is queued with [`FlushFailed::Abandoned`]: a waiter it answers finds no
/// flusher running when it queues again.
struct Flusher {
    queue: Arc<SyncQueue>,
    /// The wakers the flush under way is for.
    batch: Vec<oneshot::Sender<Answer>>,
    finished: bool,
}

impl Flusher {
    fn run(mut self, flush: impl Fn() -> Result<(), StorageError>) {
        loop {
            {
                let mut w = self.queue.waiting.lock();
                if w.wakers.is_empty() {
                    w.flushing = false;
                    self.finished = true;
                    return;
                }
                std::mem::swap(&mut w.wakers, &mut self.batch);
            }
            let answer = flush().map_err(|e| FlushFailed::Storage(Arc::new(e)));
            for tx in self.batch.drain(..) {
                // A waiter that went away (its connection closed) needs no answer.
                let _ = tx.send(answer.clone());
            }
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let queued = {
            let mut w = self.queue.waiting.lock();
            w.flushing = false;
            std::mem::take(&mut w.wakers)
        };
        for tx in self.batch.drain(..).chain(queued) {
            let _ = tx.send(Err(FlushFailed::Abandoned));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    use std::time::Duration;

    /// A fake engine: appends are counted, a flush makes the count at its start durable
    /// after a pause (longer while `hold` is set), so answers queue behind it. Flushes are
    /// numbered from 1; the one numbered `fail_at` fails and `panic_at` panics.
    #[derive(Default)]
    struct Engine {
        written: AtomicU64,
        synced: AtomicU64,
        flushes: AtomicUsize,
        hold: AtomicBool,
        fail_at: AtomicUsize,
        panic_at: AtomicUsize,
    }

    impl Engine {
        fn flush(&self) -> Result<(), StorageError> {
            let target = self.written.load(Ordering::SeqCst);
            let n = self.flushes.fetch_add(1, Ordering::SeqCst) + 1;
            std::thread::sleep(Duration::from_millis(5));
            while self.hold.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            if self.panic_at.load(Ordering::SeqCst) == n {
                panic!("flush panicked");
            }
            if self.fail_at.load(Ordering::SeqCst) == n {
                return Err(StorageError::Io(std::io::Error::other("disk gone")));
            }
            self.synced.fetch_max(target, Ordering::SeqCst);
            Ok(())
        }
    }

    /// A queue and an engine holding one write not yet synced.
    fn one_write() -> (Arc<SyncQueue>, Arc<Engine>) {
        let e = Engine::default();
        e.written.store(1, Ordering::SeqCst);
        (Arc::default(), Arc::new(e))
    }

    fn durable(q: &Arc<SyncQueue>, e: &Arc<Engine>) -> impl Future<Output = Answer> {
        let e = e.clone();
        q.durable(move || e.flush())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_answer_is_covered_and_flushes_are_shared() {
        let (q, e) = one_write();
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let (q, e) = (q.clone(), e.clone());
            tasks.push(tokio::spawn(async move {
                let mine = e.written.fetch_add(1, Ordering::SeqCst) + 1;
                durable(&q, &e).await.expect("flush");
                let synced = e.synced.load(Ordering::SeqCst);
                assert!(
                    synced >= mine,
                    "answered at {synced} before write {mine} was synced"
                );
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        let flushes = e.flushes.load(Ordering::SeqCst);
        assert!(
            (1..200).contains(&flushes),
            "{flushes} flushes for 200 answers"
        );
        assert!(!q.waiting.lock().flushing, "the flusher stopped");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_error_reaches_its_batch_and_the_next_flush_retries() {
        let (q, e) = one_write();
        // Flush 1 is held, so `a` and `b` queue behind it and meet flush 2, which fails.
        e.hold.store(true, Ordering::SeqCst);
        e.fail_at.store(2, Ordering::SeqCst);
        let first = durable(&q, &e);
        while e.flushes.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        e.written.fetch_add(1, Ordering::SeqCst);
        let (a, b) = (durable(&q, &e), durable(&q, &e));
        e.hold.store(false, Ordering::SeqCst);
        first.await.expect("flush 1");
        assert_eq!(e.synced.load(Ordering::SeqCst), 1);
        for r in [a.await, b.await] {
            match r {
                Err(FlushFailed::Storage(err)) => assert!(err.to_string().contains("disk gone")),
                other => panic!("expected the storage error, got {other:?}"),
            }
        }
        assert_eq!(
            e.synced.load(Ordering::SeqCst),
            1,
            "the failed flush synced nothing"
        );
        durable(&q, &e).await.expect("the retry");
        assert_eq!(e.synced.load(Ordering::SeqCst), 2);
        assert_eq!(e.flushes.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_flush_answers_abandoned_and_the_queue_recovers() {
        let (q, e) = one_write();
        e.panic_at.store(1, Ordering::SeqCst);
        assert!(matches!(durable(&q, &e).await, Err(FlushFailed::Abandoned)));
        durable(&q, &e).await.expect("a new flusher");
        assert_eq!(e.synced.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_that_left_does_not_stop_the_others() {
        let (q, e) = one_write();
        drop(durable(&q, &e));
        durable(&q, &e).await.expect("flush");
        assert_eq!(e.synced.load(Ordering::SeqCst), 1);
    }
}
