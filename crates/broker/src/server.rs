//! The listener and one task per connection. Requests may be pipelined: they are decoded and
//! dispatched in order as they arrive (up to a bound), and responses leave in request order.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use kafka_protocol::messages::{RequestKind, ResponseKind};
use rafka_core::limits::{
    FETCH_MAX_WAIT_MS_MAX, IN_FLIGHT_REQUESTS_PER_CONNECTION_MAX,
    PENDING_RESPONSE_BYTES_PER_CONNECTION_MAX,
};
use rafka_protocol::connection::{Inbound, ProtocolError, ResponseMeta};
use rafka_protocol::Connection;
use rafka_protocol::{encode_response_chunks, EncodedResponse};

use rafka_hooks::{Session, Stages, Verdict};

use crate::accept::accept_bounded;
use crate::api::Reply;
use crate::hooks::route;
use crate::shared::Shared;

/// Why a connection stops reading.
#[derive(Debug, thiserror::Error)]
enum Close {
    /// The client's bytes cannot be trusted.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The broker cannot answer the request (a broker bug, already logged).
    #[error("{0}")]
    Unanswerable(String),
}

/// How long shutdown waits for connections to finish their in-flight requests.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);
/// Room made in a connection's read buffer before each read from its socket.
const READ_CHUNK_BYTES: usize = 64 * 1024;

pub(crate) async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let max = shared.config.broker.max_connections;
    let stopping = shutdown.clone();
    let mut connections = accept_bounded(&listener, max, &mut shutdown, "kafka", |stream, peer| {
        let session = Arc::new(Session::plaintext(
            peer,
            stream.local_addr().unwrap_or(peer),
        ));
        if shared.hooks.wants(Stages::CONNECT) {
            if let Verdict::Reject(r) = shared.hooks.on_connect(&session.peer_info()) {
                tracing::info!(%peer, reason = %r.message, "connection refused by a hook");
                return None;
            }
        }
        let _ = stream.set_nodelay(true);
        let span = tracing::debug_span!("connection", %peer);
        let shared = shared.clone();
        let shutdown = stopping.clone();
        shared.metrics.connection_opened();
        Some(
            async move {
                serve(shared.clone(), stream, session, shutdown).await;
                shared.metrics.connection_closed();
            }
            .instrument(span),
        )
    })
    .await;
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.abort_all();
}

enum Pending {
    Ready(EncodedResponse),
    Task(JoinHandle<Result<EncodedResponse, ProtocolError>>),
}

/// Awaits the task at the front of the queue. Cancel safety: awaiting `&mut JoinHandle`
/// is cancel-safe; the task keeps running and is polled again next time.
async fn front_task(queue: &mut VecDeque<Pending>) -> Result<EncodedResponse, ProtocolError> {
    match queue.front_mut() {
        Some(Pending::Task(h)) => match h.await {
            Ok(r) => r,
            Err(e) => Err(ProtocolError::Encode {
                key: kafka_protocol::messages::ApiKey::ApiVersions,
                version: 0,
                reason: format!("handler task failed: {e}"),
            }),
        },
        _ => std::future::pending().await,
    }
}

async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    session: Arc<Session>,
    mut shutdown: watch::Receiver<bool>,
) {
    let peer = session.peer;
    let (mut rd, mut wr) = stream.into_split();
    let mut conn = Connection::new(shared.config.broker.socket_request_max_bytes);
    let mut queue: VecDeque<Pending> = VecDeque::new();
    let idle = Duration::from_millis(shared.config.broker.connections_max_idle_ms.max(1));
    let mut reading = true;
    // False after a bad frame: nothing behind it can be trusted.
    let mut decoding = true;
    loop {
        while let Some(Pending::Ready(_)) = queue.front() {
            let Some(Pending::Ready(mut resp)) = queue.pop_front() else {
                unreachable!("front was checked")
            };
            // Vectored: a fetch response's records go out from storage's buffers.
            if let Err(e) = wr.write_all_buf(&mut resp).await {
                tracing::debug!(error = %e, "write failed; closing");
                return;
            }
        }
        // Requests left undecoded while the queue was full go first, before reading more
        // (also after the client half-closed: it gets answers to all it sent).
        if decoding && has_room(&queue) {
            if let Err(e) = drain_requests(&shared, &mut conn, &mut queue, &session) {
                tracing::warn!(%peer, error = %e, "closing connection");
                decoding = false;
                reading = false;
                queue.clear();
            }
            if matches!(queue.front(), Some(Pending::Ready(_))) {
                continue;
            }
        }
        if !reading && queue.is_empty() {
            break;
        }
        let front_is_task = matches!(queue.front(), Some(Pending::Task(_)));
        let can_read = reading && has_room(&queue);
        tokio::select! {
            r = rd.read_buf(conn.read_buffer(READ_CHUNK_BYTES)), if can_read => match r {
                Ok(0) => reading = false,
                Ok(_) => {
                    if let Err(e) = drain_requests(&shared, &mut conn, &mut queue, &session) {
                        tracing::warn!(%peer, error = %e, "closing connection");
                        decoding = false;
                        reading = false;
                        // Kafka closes at once: nothing after a bad frame can be trusted,
                        // and the client resends what was in flight.
                        queue.clear();
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "read failed; closing");
                    return;
                }
            },
            r = front_task(&mut queue), if front_is_task => {
                match r {
                    Ok(bytes) => { queue[0] = Pending::Ready(bytes); }
                    Err(e) => {
                        tracing::error!(%peer, error = %e, "response failed; closing connection");
                        return;
                    }
                }
            },
            _ = shutdown.changed(), if reading => reading = false,
            _ = tokio::time::sleep(idle), if queue.is_empty() => {
                tracing::debug!(%peer, "closing idle connection");
                return;
            },
        }
    }
    let _ = wr.shutdown().await;
}

/// Whether the connection may take another request: under the pipelining depth and under
/// the bytes of encoded responses waiting for the client.
fn has_room(queue: &VecDeque<Pending>) -> bool {
    let waiting: usize = queue
        .iter()
        .map(|p| match p {
            Pending::Ready(b) => b.len(),
            Pending::Task(_) => 0,
        })
        .sum();
    queue.len() < IN_FLIGHT_REQUESTS_PER_CONNECTION_MAX
        && waiting < PENDING_RESPONSE_BYTES_PER_CONNECTION_MAX
}

/// Decodes the whole requests buffered and dispatches them, in order, while the queue has
/// room; the rest stay buffered for later.
fn drain_requests(
    shared: &Arc<Shared>,
    conn: &mut Connection,
    queue: &mut VecDeque<Pending>,
    session: &Arc<Session>,
) -> Result<(), Close> {
    let peer = session.peer;
    while has_room(queue) {
        let Some(inbound) = conn.next_request()? else {
            break;
        };
        let req = match inbound {
            Inbound::Answered(bytes) => {
                queue.push_back(Pending::Ready(bytes.into()));
                continue;
            }
            Inbound::Request(req) => req,
        };
        let meta = req.meta();
        let started = Instant::now();
        let allowance = wait_allowance(&req.body);
        let span = tracing::debug_span!(
            "request",
            api = ?meta.api_key,
            version = meta.api_version,
            correlation_id = meta.correlation_id
        );
        let routed = {
            let _in = span.enter();
            tracing::trace!("request");
            route(shared, *req, session)
        };
        match routed {
            Reply::Now(resp) => {
                finished(shared, meta, peer, started, allowance, Some(&resp));
                queue.push_back(Pending::Ready(encode_response_chunks(meta, &resp)?))
            }
            Reply::Later(fut) => {
                let shared = shared.clone();
                queue.push_back(Pending::Task(tokio::spawn(
                    async move {
                        let resp = fut.await;
                        finished(&shared, meta, peer, started, allowance, Some(&resp));
                        encode_response_chunks(meta, &resp)
                    }
                    .instrument(span),
                )))
            }
            Reply::Nothing => finished(shared, meta, peer, started, allowance, None),
            Reply::Close(reason) => {
                finished(shared, meta, peer, started, allowance, None);
                return Err(Close::Unanswerable(reason));
            }
        }
    }
    Ok(())
}

/// How long a request may wait on purpose, not counted against `log.slow_request_ms`: a
/// Fetch's long poll (its `max_wait_ms`), a JoinGroup waiting for the other members (its
/// rebalance timeout). A SyncGroup waits for the leader's assignment for as long as the
/// leader takes, so it is never reported slow. Everything else is the broker's own time,
/// including the fsync an acks=all Produce waits for.
fn wait_allowance(body: &RequestKind) -> Duration {
    match body {
        RequestKind::Fetch(f) => {
            Duration::from_millis((f.max_wait_ms.max(0) as u64).min(FETCH_MAX_WAIT_MS_MAX))
        }
        RequestKind::JoinGroup(j) => {
            Duration::from_millis(j.rebalance_timeout_ms.max(j.session_timeout_ms).max(0) as u64)
        }
        RequestKind::SyncGroup(_) => Duration::MAX,
        _ => Duration::ZERO,
    }
}

/// Counts a finished request and logs it when it was slow. `resp` is `None` when nothing
/// is answered (acks=0, or a hook refusal that closes the connection).
fn finished(
    shared: &Shared,
    meta: ResponseMeta,
    peer: SocketAddr,
    started: Instant,
    allowance: Duration,
    resp: Option<&ResponseKind>,
) {
    let took = started.elapsed();
    shared.metrics.request_done(meta.api_key, took, |code| {
        if let Some(resp) = resp {
            crate::api::error_codes(resp, &mut |e| code(e.code));
        }
    });
    if let Some(limit) = shared.slow_request {
        if took.saturating_sub(allowance) > limit {
            tracing::warn!(
                %peer,
                api = ?meta.api_key,
                version = meta.api_version,
                correlation_id = meta.correlation_id,
                took_ms = took.as_millis() as u64,
                allowed_wait_ms = allowance.as_millis().min(u64::MAX as u128) as u64,
                "slow request"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{FetchRequest, JoinGroupRequest, ProduceRequest};

    #[test]
    fn only_deliberate_waits_are_allowed() {
        let fetch = RequestKind::Fetch(FetchRequest::default().with_max_wait_ms(500));
        assert_eq!(wait_allowance(&fetch), Duration::from_millis(500));
        let absurd = RequestKind::Fetch(FetchRequest::default().with_max_wait_ms(i32::MAX));
        assert_eq!(
            wait_allowance(&absurd),
            Duration::from_millis(FETCH_MAX_WAIT_MS_MAX)
        );
        let join = RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(30_000),
        );
        assert_eq!(wait_allowance(&join), Duration::from_secs(30));
        let produce = RequestKind::Produce(ProduceRequest::default().with_acks(-1));
        assert_eq!(wait_allowance(&produce), Duration::ZERO);
    }
}
