//! The listeners' accept loops (one per listener; TLS handshakes for `SSL` listeners,
//! bounded in time) and one task per connection: the socket's bytes go into the connection's
//! buffer, each whole request through [`crate::pipeline`] as it arrives (pipelined, up to a
//! bound), and the answers leave in request order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tracing::Instrument;

use rafka_core::limits::{
    IN_FLIGHT_REQUESTS_PER_CONNECTION_MAX, PENDING_RESPONSE_BYTES_PER_CONNECTION_MAX,
};
use rafka_protocol::connection::ProtocolError;
use rafka_protocol::{Connection, EncodedResponse};

use rafka_hooks::{Principal, SecurityProtocol, Session, Stages, Verdict};

use crate::accept::accept_bounded;
use crate::pipeline::{self, Answer, Close};
use crate::shared::Shared;
use crate::tls::{TlsListener, HANDSHAKE_TIMEOUT};

/// How long shutdown waits for connections to finish their in-flight requests.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);
/// Room made in a connection's read buffer before each read from its socket.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// What an accept loop needs to know of its listener.
pub(crate) struct ListenerSpec {
    /// Kafka's listener name (the Session's `listener`; Metadata answers with its address).
    pub name: String,
    /// The listener's security protocol.
    pub protocol: SecurityProtocol,
    /// The TLS state of an `SSL` listener (its material, reloaded when the files change,
    /// and its principal mapping rules).
    pub tls: Option<Arc<TlsListener>>,
}

/// One listener's accept loop. `slots` is the broker-wide connection limit, shared by all
/// listeners; a TLS connection holds its slot from accept, through the handshake.
pub(crate) async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    spec: ListenerSpec,
    slots: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let stopping = shutdown.clone();
    let what = if spec.tls.is_some() {
        "kafka-tls"
    } else {
        "kafka"
    };
    let mut connections = accept_bounded(&listener, slots, &mut shutdown, what, |stream, peer| {
        let session = Session {
            peer,
            local: stream.local_addr().unwrap_or(peer),
            listener: spec.name.clone(),
            security_protocol: spec.protocol,
            principal: Principal::anonymous(),
            sasl_mechanism: None,
        };
        if shared.hooks.wants(Stages::CONNECT) {
            if let Verdict::Reject(r) = shared.hooks.on_connect(&session.peer_info()) {
                tracing::info!(%peer, reason = %r.message, "connection refused by a hook");
                return None;
            }
        }
        let _ = stream.set_nodelay(true);
        let span = tracing::debug_span!("connection", %peer, listener = %spec.name);
        let shared = shared.clone();
        let shutdown = stopping.clone();
        let tls = spec.tls.clone();
        shared.metrics.connection_opened();
        Some(
            async move {
                match tls {
                    None => {
                        let (rd, wr) = stream.into_split();
                        serve(shared.clone(), rd, wr, Arc::new(session), shutdown).await;
                    }
                    Some(tls) => {
                        serve_tls(shared.clone(), &tls, stream, session, shutdown).await;
                    }
                }
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

/// The TLS handshake (bounded by [`HANDSHAKE_TIMEOUT`], abandoned at shutdown), then the
/// connection as any other, with the principal of the client certificate. A failed
/// handshake closes only this connection, and so does a client certificate no
/// `ssl.principal.mapping.rules` rule applies to (Kafka's `NoMatchingRule`). The handshake
/// uses the listener's material at accept time; a reload affects later connections only.
async fn serve_tls(
    shared: Arc<Shared>,
    listener: &TlsListener,
    stream: TcpStream,
    session: Session,
    shutdown: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let mut stopping = shutdown.clone();
    let acceptor = listener.acceptor();
    let handshake = tokio::select! {
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => r,
        _ = stopping.changed() => return,
    };
    match handshake {
        Ok(Ok(tls)) => {
            let principal = match listener.principal(tls.get_ref().1.peer_certificates()) {
                Ok(p) => p,
                Err(e) => {
                    tracing::info!(error = %e, "client certificate refused; closing");
                    return;
                }
            };
            tracing::debug!(
                %principal,
                handshake_us = started.elapsed().as_micros() as u64,
                "TLS handshake done"
            );
            let session = Arc::new(Session {
                principal,
                ..session
            });
            let (rd, wr) = tokio::io::split(tls);
            serve(shared, rd, wr, session, shutdown).await;
        }
        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed; closing"),
        Err(_) => tracing::debug!(
            timeout_ms = HANDSHAKE_TIMEOUT.as_millis() as u64,
            "TLS handshake not finished in time; closing"
        ),
    }
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

async fn serve<R, W>(
    shared: Arc<Shared>,
    mut rd: R,
    mut wr: W,
    session: Arc<Session>,
    mut shutdown: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let peer = session.peer;
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

/// Decodes the whole requests buffered and hands them to the pipeline, in order, while the
/// queue has room; the rest stay buffered for later.
fn drain_requests(
    shared: &Arc<Shared>,
    conn: &mut Connection,
    queue: &mut VecDeque<Pending>,
    session: &Arc<Session>,
) -> Result<(), Close> {
    while has_room(queue) {
        match pipeline::next(shared, conn, session)? {
            None => break,
            Some(Answer::Ready(bytes)) => queue.push_back(Pending::Ready(bytes)),
            Some(Answer::Later(fut)) => queue.push_back(Pending::Task(tokio::spawn(fut))),
            Some(Answer::Nothing) => {}
        }
    }
    Ok(())
}
