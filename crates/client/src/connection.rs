//! One TCP connection to one broker. Requests are pipelined: each gets a correlation id and
//! a slot in a bounded in-flight map, a writer task puts frames on the socket in order and a
//! reader task hands each response frame to the slot with its correlation id. The version
//! of every API is negotiated once, with ApiVersions, when the connection opens. With
//! `security.protocol` SSL or SASL_SSL the socket is wrapped in TLS first (the tasks are
//! generic over the stream); with SASL_* the connection authenticates after ApiVersions and
//! re-authenticates before a session lifetime the broker set runs out (KIP-368).
//!
//! Thread-safety: a [`BrokerConnection`] is shared (`Arc`) by any number of tasks; the
//! in-flight map sits behind a `std::sync::Mutex` that is never held across an `.await`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use kafka_protocol::ResponseError;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;
use tokio_rustls::{rustls, TlsConnector};

use crate::error::ClientError;

/// Largest response frame accepted; a bigger size prefix means the stream is not Kafka.
const RESPONSE_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Frames queued for the writer task beyond those already in flight.
const WRITE_QUEUE: usize = 64;

/// Settings of one connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionSettings {
    pub client_id: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_in_flight: usize,
    /// The TLS client configuration when `security.protocol` uses TLS.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The SASL credentials when `security.protocol` uses SASL.
    pub sasl: Option<crate::security::SaslConfig>,
}

struct InFlight {
    waiting: HashMap<i32, oneshot::Sender<Bytes>>,
    /// Set once the connection is dead; no new request is accepted after that.
    closed: Option<String>,
    /// Set when the broker ended the connection with a TLS alert (it refused the
    /// handshake, e.g. our certificate, which TLS 1.3 reports only at the first read).
    tls_refused: bool,
}

/// A pipelined connection to one broker, with the API versions it negotiated.
pub struct BrokerConnection {
    addr: String,
    settings: ConnectionSettings,
    client_id: StrBytes,
    writer: mpsc::Sender<Bytes>,
    in_flight: Arc<Mutex<InFlight>>,
    permits: Arc<Semaphore>,
    next_correlation_id: AtomicI32,
    versions: HashMap<i16, (i16, i16)>,
    tasks: [AbortHandle; 2],
    /// SASL connections only: re-authentication (KIP-368) before the session expires.
    reauth: Option<Reauth>,
}

/// KIP-368 on the client side. The next request after the due time first runs the SASL
/// exchange again on this connection while holding `due` for writing, so no other request
/// is written between its SaslHandshake and its last SaslAuthenticate (answers to earlier
/// requests still arrive meanwhile). Requests hold it for reading only while they are
/// queued. Plaintext and TLS-only connections have none of this.
struct Reauth {
    sasl: crate::security::SaslConfig,
    /// When to re-authenticate; `None` when the broker set no session lifetime.
    due: tokio::sync::RwLock<Option<Instant>>,
}

/// When to re-authenticate within a session of `lifetime`: at 85 % to 95 % of it (random,
/// so a client's connections do not all re-authenticate at once), as Java's client does.
fn reauth_after(lifetime: Duration) -> Duration {
    let mut b = [0u8; 1];
    let jitter = match crate::security::random_bytes(&mut b) {
        Ok(()) => u32::from(b[0]) % 11,
        Err(_) => 5,
    };
    lifetime * (85 + jitter) / 100
}

impl std::fmt::Debug for BrokerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerConnection")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for BrokerConnection {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl BrokerConnection {
    /// Connects to `addr` and negotiates API versions.
    pub(crate) async fn connect(
        addr: &str,
        settings: ConnectionSettings,
    ) -> Result<BrokerConnection, ClientError> {
        let connect_err = |reason: String| ClientError::Connect {
            addr: addr.to_string(),
            reason,
        };
        let stream = tokio::time::timeout(settings.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| connect_err(format!("timed out after {:?}", settings.connect_timeout)))?
            .map_err(|e| connect_err(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let in_flight = Arc::new(Mutex::new(InFlight {
            waiting: HashMap::new(),
            closed: None,
            tls_refused: false,
        }));
        let (writer, frames) = mpsc::channel::<Bytes>(WRITE_QUEUE);
        // Plain TCP keeps its owned halves (no lock between reader and writer); TLS splits
        // the one rustls stream. The tasks are generic, so each path is compiled for its
        // own stream type and the plaintext one costs what it did before TLS existed.
        let tasks = match &settings.tls {
            None => {
                let (read_half, write_half) = stream.into_split();
                spawn_io(read_half, write_half, frames, &in_flight)
            }
            Some(tls) => {
                let tls_err = |reason: String| ClientError::Tls {
                    addr: addr.to_string(),
                    reason,
                };
                let name = crate::security::server_name(addr)?;
                let handshake = TlsConnector::from(tls.clone()).connect(name, stream);
                let stream = tokio::time::timeout(settings.connect_timeout, handshake)
                    .await
                    .map_err(|_| {
                        tls_err(format!("timed out after {:?}", settings.connect_timeout))
                    })?
                    .map_err(|e| tls_err(e.to_string()))?;
                let (read_half, write_half) = tokio::io::split(stream);
                spawn_io(read_half, write_half, frames, &in_flight)
            }
        };

        let mut conn = BrokerConnection {
            addr: addr.to_string(),
            client_id: StrBytes::from_string(settings.client_id.clone()),
            permits: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
            settings,
            writer,
            in_flight,
            next_correlation_id: AtomicI32::new(1),
            versions: HashMap::new(),
            tasks,
            reauth: None,
        };
        conn.versions = match conn.negotiate().await {
            Ok(v) => v,
            Err(ClientError::ConnectionClosed { reason, .. })
                if conn.in_flight.lock().expect("in-flight lock").tls_refused =>
            {
                return Err(ClientError::Tls {
                    addr: addr.to_string(),
                    reason,
                })
            }
            Err(e) => return Err(e),
        };
        if let Some(sasl) = conn.settings.sasl.clone() {
            let lifetime = crate::sasl::authenticate(&conn, &sasl).await?;
            conn.reauth = Some(Reauth {
                sasl,
                due: tokio::sync::RwLock::new(lifetime.map(|l| Instant::now() + reauth_after(l))),
            });
        }
        Ok(conn)
    }

    async fn negotiate(&self) -> Result<HashMap<i16, (i16, i16)>, ClientError> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("rafka-client"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut resp = self.call_version(&req, 3).await?;
        if resp.error_code == ResponseError::UnsupportedVersion.code() {
            resp = self.call_version(&ApiVersionsRequest::default(), 0).await?;
        }
        ClientError::check(resp.error_code, || format!("ApiVersions to {}", self.addr))?;
        Ok(resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect())
    }

    /// The broker address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the connection has failed (a new one is needed).
    pub fn is_closed(&self) -> bool {
        self.in_flight
            .lock()
            .expect("in-flight lock")
            .closed
            .is_some()
    }

    /// The highest version of `R` both sides speak, given the range this client speaks.
    pub fn version_for<R: Request>(&self, ours: (i16, i16)) -> Result<i16, ClientError> {
        let unsupported = ClientError::UnsupportedVersion {
            api_key: R::KEY,
            min: ours.0,
            max: ours.1,
        };
        let (min, max) = *self.versions.get(&R::KEY).ok_or(unsupported.clone())?;
        let v = max.min(ours.1);
        if v < min.max(ours.0) {
            return Err(unsupported);
        }
        Ok(v)
    }

    fn frame<R: Request>(
        &self,
        req: &R,
        version: i16,
        correlation_id: i32,
    ) -> Result<Bytes, ClientError> {
        let api_key = ApiKey::try_from(R::KEY)
            .map_err(|_| ClientError::Protocol(format!("unknown API key {}", R::KEY)))?;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut out = BytesMut::with_capacity(64);
        out.put_i32(0);
        header
            .encode(&mut out, api_key.request_header_version(version))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        req.encode(&mut out, version)
            .map_err(|e| ClientError::Protocol(format!("encode {api_key:?} v{version}: {e}")))?;
        let size = (out.len() - 4) as i32;
        out[..4].copy_from_slice(&size.to_be_bytes());
        Ok(out.freeze())
    }

    fn closed_error(&self, reason: String) -> ClientError {
        ClientError::ConnectionClosed {
            addr: self.addr.clone(),
            reason,
        }
    }

    /// Sends `req` at `version` and waits for its response, at most the request timeout.
    ///
    /// # Cancel safety
    /// Cancelling drops the waiting slot; a response arriving later is discarded. The
    /// request itself may still reach the broker.
    pub async fn call_version<R: Request>(
        &self,
        req: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        self.submit(req, version).await?.response().await
    }

    /// [`BrokerConnection::call_version`] without waiting for a re-authentication: the SASL
    /// exchange's own requests.
    pub(crate) async fn call_ungated<R: Request>(
        &self,
        req: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        self.submit_ungated(req, version).await?.response().await
    }

    /// Waits until no re-authentication is due (running it when it is) and returns what
    /// keeps one from starting until the request is queued.
    ///
    /// # Cancel safety
    /// Cancelled during a re-authentication, the exchange is left half done; the broker then
    /// refuses the connection's next SASL request and closes it, and a new one is opened.
    async fn enter(
        &self,
    ) -> Result<Option<tokio::sync::RwLockReadGuard<'_, Option<Instant>>>, ClientError> {
        let Some(r) = &self.reauth else {
            return Ok(None);
        };
        loop {
            let g = r.due.read().await;
            if !g.is_some_and(|d| Instant::now() >= d) {
                return Ok(Some(g));
            }
            drop(g);
            let mut w = r.due.write().await;
            if w.is_some_and(|d| Instant::now() >= d) {
                match crate::sasl::authenticate(self, &r.sasl).await {
                    Ok(lifetime) => {
                        tracing::debug!(addr = %self.addr, "re-authenticated");
                        *w = lifetime.map(|l| Instant::now() + reauth_after(l));
                    }
                    Err(e) => {
                        close(&self.in_flight, format!("re-authentication failed: {e}"));
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Queues `req` at `version` for writing and returns a handle to await its response.
    /// Requests submitted one after the other from one task are written in that order,
    /// which is what keeps a producer's batches in sequence order.
    ///
    /// # Cancel safety
    /// Cancelling before it returns may or may not have queued the request.
    pub async fn submit<R: Request>(
        &self,
        req: &R,
        version: i16,
    ) -> Result<PendingResponse<R>, ClientError> {
        let _queueing = self.enter().await?;
        self.submit_ungated(req, version).await
    }

    async fn submit_ungated<R: Request>(
        &self,
        req: &R,
        version: i16,
    ) -> Result<PendingResponse<R>, ClientError> {
        let timeout = self.settings.request_timeout;
        let timed_out = |what: &str| ClientError::Timeout {
            what: format!("{what} (API {} to {})", R::KEY, self.addr),
            after: timeout,
        };
        let permit = tokio::time::timeout(timeout, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| timed_out("waiting for an in-flight slot"))?
            .map_err(|_| ClientError::Closed)?;
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let frame = self.frame(req, version, correlation_id)?;
        let (tx, rx) = oneshot::channel();
        {
            let mut g = self.in_flight.lock().expect("in-flight lock");
            if let Some(reason) = &g.closed {
                return Err(self.closed_error(reason.clone()));
            }
            g.waiting.insert(correlation_id, tx);
        }
        let forget = || {
            self.in_flight
                .lock()
                .expect("in-flight lock")
                .waiting
                .remove(&correlation_id);
        };
        match tokio::time::timeout(timeout, self.writer.send(frame)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                forget();
                return Err(self.closed_error("writer stopped".into()));
            }
            Err(_) => {
                forget();
                return Err(timed_out("queueing the request"));
            }
        }
        Ok(PendingResponse {
            rx,
            version,
            correlation_id,
            timeout,
            addr: self.addr.clone(),
            in_flight: self.in_flight.clone(),
            _permit: permit,
            _request: std::marker::PhantomData,
        })
    }

    /// Sends `req` at `version` without waiting for (or expecting) a response: Produce
    /// with `acks=0`.
    pub async fn send_only<R: Request>(&self, req: &R, version: i16) -> Result<(), ClientError> {
        let _queueing = self.enter().await?;
        if let Some(reason) = self
            .in_flight
            .lock()
            .expect("in-flight lock")
            .closed
            .clone()
        {
            return Err(self.closed_error(reason));
        }
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let frame = self.frame(req, version, correlation_id)?;
        tokio::time::timeout(self.settings.request_timeout, self.writer.send(frame))
            .await
            .map_err(|_| ClientError::Timeout {
                what: format!("queueing API {} to {}", R::KEY, self.addr),
                after: self.settings.request_timeout,
            })?
            .map_err(|_| self.closed_error("writer stopped".into()))
    }
}

/// A request on the wire whose response has not been read yet.
pub struct PendingResponse<R: Request> {
    rx: oneshot::Receiver<Bytes>,
    version: i16,
    correlation_id: i32,
    timeout: Duration,
    addr: String,
    in_flight: Arc<Mutex<InFlight>>,
    _permit: OwnedSemaphorePermit,
    _request: std::marker::PhantomData<fn() -> R>,
}

impl<R: Request> PendingResponse<R> {
    /// Waits for the response, at most the request timeout (counted from now).
    ///
    /// # Cancel safety
    /// Cancelling discards the response.
    pub async fn response(self) -> Result<R::Response, ClientError> {
        let body = match tokio::time::timeout(self.timeout, self.rx).await {
            Ok(Ok(body)) => body,
            Ok(Err(_)) => {
                let reason = self
                    .in_flight
                    .lock()
                    .expect("in-flight lock")
                    .closed
                    .clone()
                    .unwrap_or_else(|| "dropped".into());
                return Err(ClientError::ConnectionClosed {
                    addr: self.addr,
                    reason,
                });
            }
            Err(_) => {
                self.in_flight
                    .lock()
                    .expect("in-flight lock")
                    .waiting
                    .remove(&self.correlation_id);
                return Err(ClientError::Timeout {
                    what: format!("waiting for the response (API {} to {})", R::KEY, self.addr),
                    after: self.timeout,
                });
            }
        };
        decode_response::<R>(body, self.version)
    }
}

fn decode_response<R: Request>(mut body: Bytes, version: i16) -> Result<R::Response, ClientError> {
    let api_key = ApiKey::try_from(R::KEY)
        .map_err(|_| ClientError::Protocol(format!("unknown API key {}", R::KEY)))?;
    ResponseHeader::decode(&mut body, api_key.response_header_version(version))
        .map_err(|e| ClientError::Protocol(format!("{api_key:?} response header: {e}")))?;
    let resp = R::Response::decode(&mut body, version)
        .map_err(|e| ClientError::Protocol(format!("{api_key:?} v{version} response: {e}")))?;
    if body.has_remaining() {
        tracing::debug!(
            ?api_key,
            version,
            left = body.remaining(),
            "trailing response bytes"
        );
    }
    Ok(resp)
}

/// Starts the writer and reader tasks of a connection over `read_half`/`write_half`.
fn spawn_io<R, W>(
    mut read_half: R,
    mut write_half: W,
    mut frames: mpsc::Receiver<Bytes>,
    in_flight: &Arc<Mutex<InFlight>>,
) -> [AbortHandle; 2]
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let writer_state = in_flight.clone();
    let write_task = tokio::spawn(async move {
        let mut buf = BytesMut::new();
        while let Some(frame) = frames.recv().await {
            // Coalesce what is already queued into one write.
            buf.clear();
            buf.extend_from_slice(&frame);
            while buf.len() < 1 << 20 {
                match frames.try_recv() {
                    Ok(f) => buf.extend_from_slice(&f),
                    Err(_) => break,
                }
            }
            // `flush` is free on TCP; TLS may hold encrypted records until it.
            let written = match write_half.write_all(&buf).await {
                Ok(()) => write_half.flush().await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                close(&writer_state, format!("write failed: {e}"));
                return;
            }
        }
    });

    let reader_state = in_flight.clone();
    let read_task = tokio::spawn(async move {
        let reason = loop {
            let size = match read_half.read_i32().await {
                Ok(s) => s,
                Err(e) => {
                    let tls = e
                        .get_ref()
                        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
                    if tls {
                        reader_state.lock().expect("in-flight lock").tls_refused = true;
                    }
                    break format!("read failed: {e}");
                }
            };
            if size < 4 || size as usize > RESPONSE_BYTES_MAX {
                break format!("bad response size {size}");
            }
            let mut body = vec![0u8; size as usize];
            if let Err(e) = read_half.read_exact(&mut body).await {
                break format!("read failed: {e}");
            }
            let body = Bytes::from(body);
            let correlation_id = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
            let waiter = reader_state
                .lock()
                .expect("in-flight lock")
                .waiting
                .remove(&correlation_id);
            if let Some(w) = waiter {
                // The caller may have timed out and gone; that is fine.
                let _ = w.send(body);
            }
        };
        close(&reader_state, reason);
    });
    [write_task.abort_handle(), read_task.abort_handle()]
}

fn close(state: &Mutex<InFlight>, reason: String) {
    let mut g = state.lock().expect("in-flight lock");
    if g.closed.is_none() {
        tracing::debug!(%reason, "connection closed");
        g.closed = Some(reason);
    }
    // Dropping the senders wakes every waiter with an error.
    g.waiting.clear();
}
