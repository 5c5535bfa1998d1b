//! The admin HTTP endpoint (`admin.listen`): `GET /metrics` (Prometheus text format),
//! `GET /health/live` and `GET /health/ready`. A deliberately small HTTP/1.1 server: one
//! request per connection (answered with `Connection: close`), the request head bounded
//! in size and time, no body accepted, a bounded number of connections at once.
//!
//! It starts before recovery so that `/health/live` answers while a large log is checked;
//! `/health/ready` and `/metrics` answer 503 until the broker accepts Kafka connections.
//! Shutdown stops the accept loop; a request being answered then gets 503.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::accept::accept_bounded;
use crate::shared::Shared;

/// Longest request head (request line and headers) read; longer gets 431 and a close.
const HEAD_BYTES_MAX: usize = 8 * 1024;
/// Time a client has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a response may take to write.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Admin connections served at once; more wait in the listen backlog.
const CONNECTIONS_MAX: usize = 16;

/// What the endpoint serves from: empty until the broker is ready.
#[derive(Default)]
pub(crate) struct AdminState {
    shared: OnceLock<Arc<Shared>>,
}

impl AdminState {
    /// The broker accepts connections: `/health/ready` and `/metrics` answer from now on.
    pub(crate) fn set_ready(&self, shared: Arc<Shared>) {
        let _ = self.shared.set(shared);
    }
}

/// One HTTP answer.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Answer {
    fn json(status: u16, body: &str) -> Answer {
        Answer {
            status,
            content_type: "application/json",
            body: body.to_string(),
        }
    }

    fn text(status: u16, body: &str) -> Answer {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_string(),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

/// Binds `addr` and serves until `shutdown` turns true.
pub(crate) async fn bind(addr: &str) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// The accept loop.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let stopping = shutdown.clone();
    let mut tasks = accept_bounded(
        &listener,
        Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX)),
        &mut shutdown,
        "admin",
        |stream, peer| {
            let state = state.clone();
            let stopping = stopping.clone();
            Some(async move {
                if let Err(e) = answer(stream, &state, &stopping).await {
                    tracing::debug!(%peer, error = %e, "admin connection failed");
                }
            })
        },
    )
    .await;
    tasks.abort_all();
}

/// Reads one request head, answers it and closes.
async fn answer(
    mut stream: TcpStream,
    state: &AdminState,
    stopping: &watch::Receiver<bool>,
) -> std::io::Result<()> {
    let head = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await;
    let reply = match head {
        Err(_) => Answer::text(408, "request head not received in time\n"),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(None)) => Answer::text(431, "request head too large\n"),
        Ok(Ok(Some(head))) => match parse_request_line(&head) {
            None => Answer::text(400, "malformed request line\n"),
            Some((method, path)) => {
                let ready = state.shared.get().filter(|_| !*stopping.borrow()).cloned();
                route(method, path, ready).await
            }
        },
    };
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
        reply.status,
        reason(reply.status),
        reply.content_type,
        reply.body.len(),
        if reply.status == 405 {
            "Allow: GET\r\n"
        } else {
            ""
        },
    );
    tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(reply.body.as_bytes()).await?;
        stream.shutdown().await
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "admin write timed out"))?
}

/// Reads up to the blank line ending the head. `None` when it exceeds [`HEAD_BYTES_MAX`].
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end);
            return Ok(Some(buf));
        }
        if buf.len() >= HEAD_BYTES_MAX {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed before the end of the request head",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `(method, path)` of `METHOD PATH HTTP/1.x`, the query string dropped.
fn parse_request_line(head: &[u8]) -> Option<(&str, &str)> {
    let line = head.split(|b| *b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/1.") || method.is_empty() {
        return None;
    }
    let path = target.split('?').next().unwrap_or(target);
    Some((method, path))
}

async fn route(method: &str, path: &str, ready: Option<Arc<Shared>>) -> Answer {
    let known = matches!(path, "/metrics" | "/health/live" | "/health/ready");
    if !known {
        return Answer::text(
            404,
            "not found; try /metrics, /health/live or /health/ready\n",
        );
    }
    if method != "GET" {
        return Answer::text(405, "only GET is served\n");
    }
    match (path, ready) {
        ("/health/live", _) => Answer::json(200, "{\"status\":\"live\"}"),
        ("/health/ready", Some(_)) => Answer::json(200, "{\"status\":\"ready\"}"),
        ("/health/ready", None) => Answer::json(503, "{\"status\":\"not_ready\"}"),
        (_, None) => Answer::text(503, "the broker is not serving yet\n"),
        (_, Some(shared)) => {
            // Reads every partition and the group map: not on an async worker.
            let render = move || crate::metrics::render(&shared.metrics, &shared.figures());
            match tokio::task::spawn_blocking(render).await {
                Ok(body) => Answer {
                    status: 200,
                    content_type: "text/plain; version=0.0.4; charset=utf-8",
                    body,
                },
                Err(e) => {
                    tracing::error!(error = %e, "rendering metrics failed");
                    Answer::text(500, "rendering metrics failed\n")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_parse_strictly() {
        assert_eq!(
            parse_request_line(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(parse_request_line(b"GET /metrics"), None);
        assert_eq!(parse_request_line(b"GET /metrics SPDY/3"), None);
        assert_eq!(parse_request_line(b"GET  /metrics HTTP/1.1"), None);
        assert_eq!(parse_request_line(&[0xff, b' ', b'/', b' ', b'H']), None);
    }

    #[tokio::test]
    async fn before_ready_only_liveness_answers_200() {
        assert_eq!(route("GET", "/health/live", None).await.status, 200);
        let r = route("GET", "/health/ready", None).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (503, "{\"status\":\"not_ready\"}")
        );
        assert_eq!(route("GET", "/metrics", None).await.status, 503);
        assert_eq!(route("POST", "/metrics", None).await.status, 405);
        assert_eq!(route("GET", "/nope", None).await.status, 404);
    }

    #[tokio::test]
    async fn oversized_and_slow_heads_are_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_tx, rx) = watch::channel(false);
        let server = tokio::spawn(serve(listener, Arc::new(AdminState::default()), rx));
        let mut c = TcpStream::connect(addr).await.unwrap();
        let long = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(10_000));
        let _ = c.write_all(long.as_bytes()).await;
        let mut resp = String::new();
        c.read_to_string(&mut resp).await.unwrap();
        assert!(resp.starts_with("HTTP/1.1 431 "), "{resp}");
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /health/ready HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let mut resp = String::new();
        c.read_to_string(&mut resp).await.unwrap();
        assert!(resp.starts_with("HTTP/1.1 503 "), "{resp}");
        assert!(resp.ends_with("{\"status\":\"not_ready\"}"), "{resp}");
        server.abort();
    }
}
