//! Request order per connection for diskless produce.
//!
//! A diskless Produce is answered later (`Reply::Later`, its own task), and the part that
//! hands its batches to the committer awaits (a catalog read-through, room in the bytes in
//! flight). Two pipelined requests of one connection would otherwise reach the committer
//! in either order, and an idempotent producer's second batch would be checked before its
//! first: OUT_OF_ORDER_SEQUENCE_NUMBER, fatal to librdkafka. Kafka handles one request of
//! a connection at a time, so its sequence checks see a connection's batches in order.
//!
//! [`ProduceOrder::turn`] is called in the handler's synchronous part, which runs in
//! request order: it hands out a [`Turn`] that waits for the previous request of the same
//! connection to have enqueued (or given up), and lets the next one go when it is dropped
//! or [`Turn::done`]. Connections are told apart by their `Session` (one per connection,
//! replaced only between two requests, at authentication).

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use rafka_hooks::Session;
use tokio::sync::oneshot;

/// Above this many tracked connections, entries of closed connections are dropped.
const PRUNE_AT: usize = 1024;

/// The last turn handed out per connection.
#[derive(Default)]
pub struct ProduceOrder {
    tails: parking_lot::Mutex<HashMap<usize, Tail>>,
}

struct Tail {
    session: Weak<Session>,
    /// Resolved when the latest turn is done.
    done: oneshot::Receiver<()>,
}

/// One request's place in its connection's order.
pub struct Turn {
    previous: Option<oneshot::Receiver<()>>,
    release: Option<oneshot::Sender<()>>,
}

impl ProduceOrder {
    /// The next turn of `session`'s connection. Call in request order (the handler's
    /// synchronous part).
    pub fn turn(&self, session: &Arc<Session>) -> Turn {
        let (release, done) = oneshot::channel();
        let key = Arc::as_ptr(session) as usize;
        let mut tails = self.tails.lock();
        if tails.len() >= PRUNE_AT {
            tails.retain(|_, t| t.session.strong_count() > 0);
        }
        let previous = tails
            .insert(
                key,
                Tail {
                    session: Arc::downgrade(session),
                    done,
                },
            )
            // An entry left by a closed connection whose address was reused.
            .filter(|t| {
                t.session
                    .upgrade()
                    .is_some_and(|s| Arc::ptr_eq(&s, session))
            })
            .map(|t| t.done);
        Turn {
            previous,
            release: Some(release),
        }
    }

    /// Connections tracked (for tests).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.tails.lock().len()
    }
}

impl Turn {
    /// Waits until the previous request of the connection has enqueued (or was dropped).
    pub async fn wait(&mut self) {
        if let Some(previous) = self.previous.take() {
            // An error means the previous turn was dropped: it is over either way.
            let _ = previous.await;
        }
    }

    /// Lets the connection's next request go.
    pub fn done(&mut self) {
        if let Some(r) = self.release.take() {
            let _ = r.send(());
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.done();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn session(port: u16) -> Arc<Session> {
        Arc::new(Session::plaintext(
            ([127, 0, 0, 1], port).into(),
            ([127, 0, 0, 1], 9092).into(),
        ))
    }

    #[tokio::test]
    async fn a_connections_turns_run_in_order_whatever_order_the_tasks_run() {
        let order = ProduceOrder::default();
        let s = session(1);
        let log = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        let turns: Vec<Turn> = (0..20).map(|_| order.turn(&s)).collect();
        // Started in reverse: the later requests' tasks run first.
        for (i, mut t) in turns.into_iter().enumerate().rev() {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                t.wait().await;
                // Each awaits something before enqueueing, as a catalog lookup would.
                tokio::time::sleep(Duration::from_millis((20 - i as u64) % 3)).await;
                log.lock().push(i);
                t.done();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*log.lock(), (0..20).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn connections_do_not_wait_for_each_other_and_a_dropped_turn_releases() {
        let order = ProduceOrder::default();
        let (a, b) = (session(1), session(2));
        let _a1 = order.turn(&a); // held: a's next turn waits for it
        let mut a2 = order.turn(&a);
        let mut b1 = order.turn(&b);
        tokio::time::timeout(Duration::from_secs(1), b1.wait())
            .await
            .expect("another connection's turn does not wait");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), a2.wait())
                .await
                .is_err(),
            "the connection's second turn waits for its first"
        );
        drop(_a1);
        let mut a3 = order.turn(&a);
        drop(a2);
        tokio::time::timeout(Duration::from_secs(1), a3.wait())
            .await
            .expect("a dropped turn lets the next go");
    }

    #[test]
    fn closed_connections_are_forgotten() {
        let order = ProduceOrder::default();
        for port in 0..(PRUNE_AT as u16 + 10) {
            let s = session(port);
            drop(order.turn(&s));
        }
        assert!(order.tracked() <= PRUNE_AT);
    }
}
