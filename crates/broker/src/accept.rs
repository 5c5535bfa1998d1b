//! The accept loop the Kafka listeners and the admin endpoint share: one task per
//! connection, at most as many at once as `slots` has permits (a permit lives as long as
//! its task, TLS handshake included; more clients wait in the listen backlog; the Kafka
//! listeners share one semaphore), until `shutdown` changes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// Accepts until shutdown. `serve` turns an accepted connection into its task, or `None`
/// to drop it at once. Returns the tasks still running, for the caller to drain or abort.
pub(crate) async fn accept_bounded<F, Fut>(
    listener: &TcpListener,
    slots: Arc<Semaphore>,
    shutdown: &mut watch::Receiver<bool>,
    what: &'static str,
    mut serve: F,
) -> JoinSet<()>
where
    F: FnMut(TcpStream, SocketAddr) -> Option<Fut>,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        // Reap finished tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
        match accepted {
            Ok((stream, peer)) => {
                if let Some(task) = serve(stream, peer) {
                    tasks.spawn(async move {
                        task.await;
                        drop(permit);
                    });
                }
            }
            Err(e) => {
                // Out of file descriptors, typically: back off instead of spinning.
                tracing::warn!(error = %e, listener = what, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    tasks
}
