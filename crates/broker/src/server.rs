//! The listeners' accept loops (one per listener; TLS handshakes for `SSL` and `SASL_SSL`
//! listeners, bounded in time) and one task per connection: the socket's bytes go into the
//! connection's buffer, each whole request through [`crate::pipeline`] as it arrives
//! (pipelined, up to a bound), and the answers leave in request order. On a `SASL_*`
//! listener every request first meets the connection's [`Authenticator`], which answers the
//! SASL exchange itself and lets nothing else through before it succeeded.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tracing::Instrument;

use rafka_core::limits::{
    DURABILITY_WAITS_PER_CONNECTION_MAX, IN_FLIGHT_REQUESTS_PER_CONNECTION_MAX,
    PENDING_RESPONSE_BYTES_PER_CONNECTION_MAX,
};
use rafka_protocol::connection::{Inbound, ProtocolError};
use rafka_protocol::{encode_response_chunks, Connection, EncodedResponse};

use rafka_hooks::{Principal, SecurityProtocol, Session, Stages, Verdict};

use crate::accept::accept_bounded;
use crate::metrics::SaslOutcome;
use crate::pipeline::{self, Answer, Close};
use crate::request_memory::FrameLease;
use crate::sasl::{Authenticator, Out, SaslSettings, Step, SASL_TOKEN_BYTES_MAX};
use crate::shared::Shared;
use crate::splice::{send_file, LentPipe};
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
    /// The TLS state of an `SSL` or `SASL_SSL` listener (its material, reloaded when the
    /// files change, and its principal mapping rules).
    pub tls: Option<Arc<TlsListener>>,
    /// The SASL settings of a `SASL_*` listener.
    pub sasl: Option<Arc<SaslSettings>>,
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
        if shared.quotas.ip_enabled() {
            let now = std::time::Instant::now();
            let quotas = shared.quotas.current();
            if let Err(time) = shared.connection_rates.admit(peer.ip(), &quotas, now) {
                shared
                    .metrics
                    .throttled(crate::quota::QuotaKind::ConnectionCreationRate, time);
                tracing::info!(
                    %peer,
                    throttle_ms = time.as_millis() as u64,
                    "connection throttled: connection_creation_rate reached; closed after the throttle time"
                );
                shared
                    .connection_rates
                    .close_later(stream, time, stopping.clone());
                return None;
            }
        }
        let Some(ip_slot) = shared.connections_per_ip.acquire(peer.ip()) else {
            shared.metrics.connection_refused_per_ip();
            tracing::info!(%peer, "connection refused: max_connections_per_ip reached");
            return None;
        };
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
        let sasl = spec.sasl.clone();
        shared.metrics.connection_opened();
        Some(
            async move {
                match tls {
                    None => {
                        let (rd, wr) = stream.into_split();
                        let session = Arc::new(session);
                        serve(shared.clone(), rd, wr, session, sasl, shutdown).await;
                    }
                    Some(tls) => {
                        // Boxed: the handshake's state is three times a plaintext
                        // connection's, and every connection's task would be sized for it.
                        Box::pin(serve_tls(
                            shared.clone(),
                            &tls,
                            stream,
                            session,
                            sasl,
                            shutdown,
                        ))
                        .await;
                    }
                }
                shared.metrics.connection_closed();
                drop(ip_slot);
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
/// `ssl.principal.mapping.rules` rule applies to (Kafka's `NoMatchingRule`) on an `SSL`
/// listener (on `SASL_SSL` the principal comes from SASL). The handshake
/// uses the listener's material at accept time; a reload affects later connections only.
async fn serve_tls(
    shared: Arc<Shared>,
    listener: &TlsListener,
    stream: TcpStream,
    session: Session,
    sasl: Option<Arc<SaslSettings>>,
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
            let principal = if sasl.is_some() {
                // SASL_SSL: the principal is the one SASL authenticates (Kafka's principal
                // builder does not look at a client certificate there).
                Principal::anonymous()
            } else {
                match listener.principal(tls.get_ref().1.peer_certificates()) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::info!(error = %e, "client certificate refused; closing");
                        return;
                    }
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
            serve(shared, rd, wr, session, sasl, shutdown).await;
        }
        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed; closing"),
        Err(_) => tracing::debug!(
            timeout_ms = HANDSHAKE_TIMEOUT.as_millis() as u64,
            "TLS handshake not finished in time; closing"
        ),
    }
}

/// An answer in the connection's queue: ready, with how long the connection is muted
/// once it is sent (KIP-219), or still being worked out.
enum Pending {
    Ready(EncodedResponse, Duration),
    /// The task, and the mute already known when it was queued: reading is held until
    /// the answer is sent; the mute after it is the task's own.
    Task(
        JoinHandle<Result<(EncodedResponse, Duration), ProtocolError>>,
        Duration,
        Wait,
    ),
}

/// What a queued task waits for, for the per-connection bounds of [`has_room`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// Anything (a long poll, a coordinator, a delay): counts toward
    /// `IN_FLIGHT_REQUESTS_PER_CONNECTION_MAX`.
    Any,
    /// Only an fsync, the response already built: counts toward
    /// `DURABILITY_WAITS_PER_CONNECTION_MAX`.
    Durability,
}

impl Pending {
    /// The mute known to follow this answer.
    fn mute(&self) -> Duration {
        match self {
            Pending::Ready(_, m) | Pending::Task(_, m, _) => *m,
        }
    }
}

/// Awaits the task at the front of the queue. Cancel safety: awaiting `&mut JoinHandle`
/// is cancel-safe; the task keeps running and is polled again next time.
async fn front_task(
    queue: &mut VecDeque<Pending>,
) -> Result<(EncodedResponse, Duration), ProtocolError> {
    match queue.front_mut() {
        Some(Pending::Task(h, _, _)) => match h.await {
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

/// Serves one connection until the client closes it, a bad frame, shutdown or the idle
/// timeout. With `sasl`, the client must authenticate first (within
/// [`crate::sasl::AUTHENTICATION_TIMEOUT`] of this call); the session is replaced, between
/// two requests, when it does (and at each KIP-368 re-authentication).
async fn serve<R, W>(
    shared: Arc<Shared>,
    mut rd: R,
    mut wr: W,
    mut session: Arc<Session>,
    sasl: Option<Arc<SaslSettings>>,
    mut shutdown: watch::Receiver<bool>,
) where
    R: RequestReader,
    W: ResponseWriter,
{
    let peer = session.peer;
    let mut conn = Connection::new(shared.config.broker.socket_request_max_bytes);
    // What the request being received holds of `queued_max_request_bytes`.
    let mut lease = FrameLease::default();
    let mut queue: VecDeque<Pending> = VecDeque::new();
    let mut auth = sasl.map(|s| Authenticator::new(s, Instant::now()));
    let idle = Duration::from_millis(shared.config.broker.connections_max_idle_ms.max(1));
    let mut reading = true;
    // Until when no request is read or decoded: a client over its quota (KIP-219).
    let mut muted_until: Option<Instant> = None;
    // False after a bad frame or a failed authentication: nothing behind it is read.
    let mut decoding = true;
    loop {
        while let Some(Pending::Ready(..)) = queue.front() {
            let Some(Pending::Ready(mut resp, mute)) = queue.pop_front() else {
                unreachable!("front was checked")
            };
            // Vectored: a fetch response's records go out from storage's buffers, or from
            // their segment files (sendfile) between the bytes around them.
            if let Err(e) = write_response(&shared, &mut wr, &mut resp).await {
                tracing::debug!(error = %e, "write failed; closing");
                return;
            }
            mute_for(&mut muted_until, mute);
        }
        let mut muted = muted_until.is_some_and(|t| t > Instant::now());
        if !muted {
            muted_until = None;
        }
        // A throttled answer not yet sent holds the reading back as a mute does (Kafka
        // reads a connection's next request only after the answer to the last one).
        let held = queue.iter().any(|p| !p.mute().is_zero());
        muted |= held;
        // Requests left undecoded while the queue was full go first, before reading more
        // (also after the client half-closed: it gets answers to all it sent). Nothing is
        // decoded while the connection is muted.
        if decoding && !muted && has_room(&queue) {
            let drained = drain_requests(
                &shared,
                &mut conn,
                &mut queue,
                &mut session,
                &mut auth,
                &mut muted_until,
            );
            lease.settle(&shared.request_memory, conn.front_frame_bytes());
            if !drained_on(drained, peer, &mut queue) {
                decoding = false;
                reading = false;
            }
            if matches!(queue.front(), Some(Pending::Ready(..)))
                || muted_until.is_some()
                || queue.iter().any(|p| !p.mute().is_zero())
            {
                continue;
            }
        }
        if !reading && queue.is_empty() {
            break;
        }
        let front_is_task = matches!(queue.front(), Some(Pending::Task(..)));
        let can_read = reading && !muted && has_room(&queue);
        // An authentication in progress has a deadline (a KIP-368 one included).
        let auth_deadline = auth.as_ref().and_then(|a| a.deadline()).filter(|_| reading);
        tokio::select! {
            r = read_within_budget(&mut rd, &mut conn, &mut lease, &shared), if can_read => match r {
                Ok(0) => reading = false,
                Ok(_) => {
                    let drained = drain_requests(
                        &shared,
                        &mut conn,
                        &mut queue,
                        &mut session,
                        &mut auth,
                        &mut muted_until,
                    );
                    lease.settle(&shared.request_memory, conn.front_frame_bytes());
                    if !drained_on(drained, peer, &mut queue) {
                        decoding = false;
                        reading = false;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "read failed; closing");
                    return;
                }
            },
            r = front_task(&mut queue), if front_is_task => {
                match r {
                    Ok((bytes, mute)) => { queue[0] = Pending::Ready(bytes, mute); }
                    Err(e) => {
                        tracing::error!(%peer, error = %e, "response failed; closing connection");
                        return;
                    }
                }
            },
            _ = shutdown.changed(), if reading => reading = false,
            _ = tokio::time::sleep_until(auth_deadline.unwrap_or_else(Instant::now).into()),
                if auth_deadline.is_some() => {
                tracing::info!(%peer, "SASL authentication not finished in time; closing");
                return;
            },
            // A muted connection reads again when its throttle time is over.
            _ = tokio::time::sleep_until(muted_until.unwrap_or_else(Instant::now).into()),
                if muted_until.is_some() => {},
            _ = tokio::time::sleep(idle), if queue.is_empty() && !muted => {
                tracing::debug!(%peer, "closing idle connection");
                return;
            },
        }
    }
    let _ = wr.shutdown().await;
}

/// Whether reading goes on after [`drain_requests`]. A bad frame closes at once: Kafka does
/// not answer what was in flight, since nothing after a bad frame can be trusted, and the
/// client resends it. A failed authentication has queued its answer; nothing more is read.
fn drained_on(
    drained: Result<Drained, Close>,
    peer: std::net::SocketAddr,
    queue: &mut VecDeque<Pending>,
) -> bool {
    match drained {
        Ok(Drained::More) => true,
        Ok(Drained::Stop) => false,
        Err(e @ Close::Authentication(_)) => {
            tracing::info!(%peer, error = %e, "closing connection");
            queue.clear();
            false
        }
        Err(e) => {
            tracing::warn!(%peer, error = %e, "closing connection");
            queue.clear();
            false
        }
    }
}

/// Whether the connection may take another request: under the pipelining depth and under
/// the bytes of encoded responses waiting for the client.
fn has_room(queue: &VecDeque<Pending>) -> bool {
    let waiting: usize = queue
        .iter()
        .map(|p| match p {
            Pending::Ready(b, _) => b.len(),
            Pending::Task(..) => 0,
        })
        .sum();
    let durable = queue
        .iter()
        .filter(|p| matches!(p, Pending::Task(_, _, Wait::Durability)))
        .count();
    queue.len() - durable < IN_FLIGHT_REQUESTS_PER_CONNECTION_MAX
        && durable < DURABILITY_WAITS_PER_CONNECTION_MAX
        && waiting < PENDING_RESPONSE_BYTES_PER_CONNECTION_MAX
}

/// Reads the client's next bytes once the request at the front of the buffer, if it is a
/// large one, fits `queued_max_request_bytes` (`lease` then holds its share). Cancel safe.
async fn read_within_budget<R: RequestReader>(
    rd: &mut R,
    conn: &mut Connection,
    lease: &mut FrameLease,
    shared: &Shared,
) -> std::io::Result<usize> {
    lease
        .cover(&shared.request_memory, conn.front_frame_bytes())
        .await;
    rd.read_request_bytes(conn).await
}

/// Where a connection's requests come from.
pub(crate) trait RequestReader: AsyncRead + Unpin + Send {
    /// Reads the client's next bytes into `conn`'s buffer; `Ok(0)` when it has closed.
    /// Cancel safe: nothing is read unless the future completes.
    fn read_request_bytes<'a>(
        &'a mut self,
        conn: &'a mut Connection,
    ) -> impl std::future::Future<Output = std::io::Result<usize>> + Send + 'a;
}

impl RequestReader for tokio::net::tcp::OwnedReadHalf {
    /// A plaintext connection waits for the socket to have bytes with no buffer of its
    /// own ([`Connection::park`]): idle, it holds no receive memory, however many there are.
    async fn read_request_bytes(&mut self, conn: &mut Connection) -> std::io::Result<usize> {
        loop {
            match self.try_read_buf(conn.read_buffer(READ_CHUNK_BYTES)) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    conn.park();
                    self.readable().await?;
                }
                r => return r,
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Send> RequestReader for tokio::io::ReadHalf<T> {
    /// Through TLS, whose socket's readiness is not the reader's to wait on: bytes already
    /// there are decrypted straight into the buffer; when there are none and nothing is
    /// buffered, the connection parks its buffers and waits in a read of at most
    /// [`FIRST_READ_BYTES`], copied into a buffer taken again once they come.
    async fn read_request_bytes(&mut self, conn: &mut Connection) -> std::io::Result<usize> {
        {
            let read = self.read_buf(conn.read_buffer(READ_CHUNK_BYTES));
            tokio::pin!(read);
            // One poll: a read that is not ready yet is dropped, having taken nothing.
            let now = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(std::future::Future::poll(read.as_mut(), cx))
            })
            .await;
            if let std::task::Poll::Ready(r) = now {
                return r;
            }
        }
        if !conn.park() {
            return self.read_buf(conn.read_buffer(READ_CHUNK_BYTES)).await;
        }
        let mut first = [0u8; FIRST_READ_BYTES];
        let n = self.read(&mut first).await?;
        conn.receive(&first[..n]);
        Ok(n)
    }
}

/// The most a TLS connection reads while it holds no buffer: a small request whole, the
/// start of a larger one.
const FIRST_READ_BYTES: usize = 512;

/// The writing half of a connection, and whether `sendfile` can reach its socket.
pub(crate) trait ResponseWriter: AsyncWrite + Unpin + Send {
    /// The socket itself, where bytes reach it unchanged (plaintext); `None` where they
    /// pass through this writer (TLS encrypts them).
    fn socket(&self) -> Option<&TcpStream>;
}

impl ResponseWriter for tokio::net::tcp::OwnedWriteHalf {
    fn socket(&self) -> Option<&TcpStream> {
        Some(self.as_ref())
    }
}

impl<T: AsyncRead + AsyncWrite + Send> ResponseWriter for tokio::io::WriteHalf<T> {
    fn socket(&self) -> Option<&TcpStream> {
        None
    }
}

/// Writes one response: its bytes with vectored writes, each file region spliced from the
/// segment file to the socket — or, where the writer is not the socket (TLS), read from
/// the file and written a piece of at most [`REGION_PIECE_BYTES`] at a time, so that an
/// answer of many MiB never sits whole in memory. A region whose file turns out shorter
/// than the region is an error: the connection closes rather than send anything but the
/// committed batches its length prefix announced.
async fn write_response<W: ResponseWriter>(
    shared: &Shared,
    wr: &mut W,
    resp: &mut EncodedResponse,
) -> std::io::Result<()> {
    // Corked while a response with regions is written: its header and records leave in
    // full segments, not the header alone ahead of the records.
    let corked = resp.has_file_regions()
        && wr
            .socket()
            .is_some_and(|s| rustix::net::sockopt::set_tcp_cork(s, true).is_ok());
    let written = write_parts(shared, wr, resp).await;
    if corked {
        if let Some(s) = wr.socket() {
            let _ = rustix::net::sockopt::set_tcp_cork(s, false);
        }
    }
    written
}

async fn write_parts<W: ResponseWriter>(
    shared: &Shared,
    wr: &mut W,
    resp: &mut EncodedResponse,
) -> std::io::Result<()> {
    // Borrowed at the answer's first region, given back (empty) with the last.
    let mut pipe: Option<LentPipe> = None;
    // Through TLS: one piece of a region at a time, the buffer reused for the next.
    let mut piece = Vec::new();
    loop {
        wr.write_all_buf(resp).await?;
        let Some(region) = resp.take_file() else {
            return Ok(());
        };
        match wr.socket() {
            Some(socket) => {
                if pipe.is_none() {
                    pipe = LentPipe::take();
                }
                match &mut pipe {
                    Some(p) => p.send(socket, &region).await?,
                    None => send_file(socket, &region).await?,
                }
                shared.metrics.fetch_sent_from_file(region.len as u64);
            }
            None => {
                use std::os::unix::fs::FileExt;
                let mut position = region.position;
                let end = region.position + region.len as u64;
                while position < end {
                    let n = ((end - position) as usize).min(REGION_PIECE_BYTES);
                    piece.resize(n, 0);
                    region.file.read_exact_at(&mut piece, position)?;
                    wr.write_all(&piece).await?;
                    position += n as u64;
                }
            }
        }
    }
}

/// The most of a file region a connection whose bytes pass through its writer (TLS) holds
/// in memory at once.
const REGION_PIECE_BYTES: usize = 256 * 1024;

/// Whether the connection reads on after draining.
enum Drained {
    /// Read on.
    More,
    /// Authentication failed: the answers queued go out, then the connection closes.
    Stop,
}

/// Decodes the whole requests buffered and hands them to the pipeline, in order, while the
/// queue has room; the rest stay buffered for later. On a SASL listener each goes through
/// the authenticator first.
fn drain_requests(
    shared: &Arc<Shared>,
    conn: &mut Connection,
    queue: &mut VecDeque<Pending>,
    session: &mut Arc<Session>,
    auth: &mut Option<Authenticator>,
    muted_until: &mut Option<Instant>,
) -> Result<Drained, Close> {
    while has_room(queue) {
        // An acks=0 Produce over its quota mutes the connection at once; an answer over
        // a quota holds it until it is sent.
        if muted_until.is_some() || queue.back().is_some_and(|p| !p.mute().is_zero()) {
            break;
        }
        let Some(auth) = auth.as_mut() else {
            match pipeline::next(shared, conn, session)? {
                None => break,
                Some(answer) => push_answer(queue, answer, muted_until),
            }
            continue;
        };
        let now = Instant::now();
        let step = if auth.wants_raw_token() {
            let Some(token) = conn.next_sasl_token(SASL_TOKEN_BYTES_MAX)? else {
                break;
            };
            auth.on_token(&token, now, shared.as_ref())
        } else {
            let req = match conn.next_request()? {
                None => break,
                Some(Inbound::Answered(bytes)) => {
                    queue.push_back(Pending::Ready(bytes.into(), Duration::ZERO));
                    continue;
                }
                Some(Inbound::Request(req)) => req,
            };
            match auth.on_request(&req, now, shared.as_ref()) {
                Step::Pass => {
                    push_answer(queue, pipeline::handle(shared, *req, session)?, muted_until);
                    continue;
                }
                step => step,
            }
        };
        match step {
            Step::Pass => return Err(Close::Authentication("a raw SASL token cannot pass".into())),
            Step::Answer(out) => {
                queue.push_back(Pending::Ready(encode(shared, out, now)?, Duration::ZERO))
            }
            Step::Authenticated {
                out,
                user,
                mechanism,
            } => {
                queue.push_back(Pending::Ready(encode(shared, out, now)?, Duration::ZERO));
                shared.metrics.sasl(if session.sasl_mechanism.is_some() {
                    SaslOutcome::Reauthenticated
                } else {
                    SaslOutcome::Authenticated
                });
                let principal = Principal::user(user);
                tracing::debug!(
                    %principal,
                    mechanism = mechanism.name(),
                    took_us = now.elapsed().as_micros() as u64,
                    "SASL authentication done"
                );
                *session = Arc::new(Session {
                    principal,
                    sasl_mechanism: Some(mechanism.name().to_string()),
                    ..Session::clone(session)
                });
            }
            Step::Failed { out, reason } => {
                shared.metrics.sasl(SaslOutcome::Failed);
                tracing::info!(
                    peer = %session.peer,
                    listener = %session.listener,
                    %reason,
                    "failed authentication"
                );
                let bytes = match out {
                    Some(out) => encode(shared, out, now)?,
                    None => EncodedResponse::from(bytes::Bytes::new()),
                };
                // KIP-306's delay: the answer, and so the close after it, waits. A task
                // per connection: nothing else waits for it, and the delay is bounded
                // (below connections.max.idle.ms).
                let delay = Duration::from_millis(
                    shared
                        .config
                        .broker
                        .connection_failed_authentication_delay_ms,
                );
                queue.push_back(Pending::Task(
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        Ok((bytes, Duration::ZERO))
                    }),
                    Duration::ZERO,
                    Wait::Any,
                ));
                return Ok(Drained::Stop);
            }
            Step::Close(reason) => {
                if auth.closed_expired() {
                    shared.metrics.sasl(SaslOutcome::Expired);
                }
                return Err(Close::Authentication(reason));
            }
        }
    }
    Ok(Drained::More)
}

fn push_answer(queue: &mut VecDeque<Pending>, answer: Answer, muted_until: &mut Option<Instant>) {
    match answer {
        Answer::Ready(bytes, mute) => queue.push_back(Pending::Ready(bytes, mute)),
        Answer::Later(fut, known, durable) => {
            let wait = if durable { Wait::Durability } else { Wait::Any };
            queue.push_back(Pending::Task(tokio::spawn(fut), known, wait));
        }
        Answer::Nothing(mute) => mute_for(muted_until, mute),
    }
}

/// Mutes the connection for `mute` from now (no request is read or decoded until then),
/// unless it already is for longer. At most the quota's sample span (`quota.rs` bounds
/// every throttle time), or an hour for `controller_mutation_rate` (`quota_manager.rs`).
fn mute_for(muted_until: &mut Option<Instant>, mute: Duration) {
    if mute.is_zero() {
        return;
    }
    let until = Instant::now() + mute;
    if muted_until.is_none_or(|t| t < until) {
        *muted_until = Some(until);
    }
}

/// An authenticator's answer as bytes to write; a Kafka one is counted in the metrics.
fn encode(shared: &Shared, out: Out, started: Instant) -> Result<EncodedResponse, Close> {
    match out {
        Out::Kafka(meta, resp) => {
            shared
                .metrics
                .request_done(meta.api_key, started.elapsed(), |code| {
                    crate::api::error_codes(&resp, &mut |e| code(e.code))
                });
            Ok(encode_response_chunks(meta, &resp)?)
        }
        Out::Raw(token) => {
            let mut framed = bytes::BytesMut::with_capacity(4 + token.len());
            framed.extend_from_slice(&(token.len() as u32).to_be_bytes());
            framed.extend_from_slice(&token);
            Ok(EncodedResponse::from(framed.freeze()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(wait: Wait) -> Pending {
        let never = std::future::pending::<Result<(EncodedResponse, Duration), ProtocolError>>();
        Pending::Task(tokio::spawn(never), Duration::ZERO, wait)
    }

    /// Waits of any kind fill the pipeline at 64; fsync waits have their own bound beside.
    #[tokio::test]
    async fn fsync_waits_have_their_own_bound() {
        let mut queue = VecDeque::new();
        for _ in 1..IN_FLIGHT_REQUESTS_PER_CONNECTION_MAX {
            queue.push_back(task(Wait::Any));
        }
        assert!(has_room(&queue));
        for _ in 0..DURABILITY_WAITS_PER_CONNECTION_MAX - 1 {
            queue.push_back(task(Wait::Durability));
        }
        assert!(has_room(&queue), "fsync waits do not count toward the 64");
        queue.push_back(task(Wait::Durability));
        assert!(!has_room(&queue), "nor past their own bound");
        queue.pop_back();
        queue.push_back(task(Wait::Any));
        assert!(!has_room(&queue), "64 waits of any kind fill the pipeline");
        for p in queue {
            if let Pending::Task(h, _, _) = p {
                h.abort();
            }
        }
    }
}
