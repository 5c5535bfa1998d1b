//! One request's way through the broker, above `api/`: decoded from the connection's
//! buffered bytes, `on_request`, [`api::dispatch`], `on_response`, encoded, and counted in
//! the metrics (and logged when slow). Sans-IO: `server.rs` owns the socket and the order
//! of writes; a test puts request bytes into a [`Connection`] and reads the answer's bytes.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use kafka_protocol::messages::{RequestKind, ResponseKind};
use rafka_core::limits::FETCH_MAX_WAIT_MS_MAX;
use rafka_core::{RecordBatch, Timestamp};
use rafka_hooks::{Api, ErrorCode, Outcome, OutcomeItem, RequestContext, Session, Stages, Verdict};
use rafka_protocol::connection::{DecodedRequest, Inbound, ProtocolError, ResponseMeta};
use rafka_protocol::{encode_response_chunks, Connection, EncodedResponse};

use crate::api::{self, Reply};
use crate::shared::Shared;

/// What the connection writes for one request.
pub(crate) enum Answer {
    /// The response, encoded.
    Ready(EncodedResponse),
    /// The response once the handler's wait is over (an fsync, a long poll), encoded; the
    /// request's span is attached. Responses still leave in request order.
    Later(Pin<Box<dyn Future<Output = Result<EncodedResponse, ProtocolError>> + Send>>),
    /// Nothing (Produce with acks=0).
    Nothing,
}

/// Why a connection stops reading.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Close {
    /// The client's bytes cannot be trusted.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The broker cannot answer the request (a broker bug, already logged).
    #[error("{0}")]
    Unanswerable(String),
}

/// Decodes and handles the next request buffered in `conn`; `Ok(None)` when no whole
/// request is buffered yet. An error means: close the connection.
pub(crate) fn next(
    shared: &Arc<Shared>,
    conn: &mut Connection,
    session: &Arc<Session>,
) -> Result<Option<Answer>, Close> {
    let Some(inbound) = conn.next_request()? else {
        return Ok(None);
    };
    match inbound {
        Inbound::Answered(bytes) => Ok(Some(Answer::Ready(bytes.into()))),
        Inbound::Request(req) => handle(shared, *req, session).map(Some),
    }
}

/// Handles one decoded request: hooks, handler, encoding, metrics.
fn handle(
    shared: &Arc<Shared>,
    req: DecodedRequest,
    session: &Arc<Session>,
) -> Result<Answer, Close> {
    let peer = session.peer;
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
        route(shared, req, session)
    };
    match routed {
        Reply::Now(resp) => {
            finished(shared, meta, peer, started, allowance, Some(&resp));
            Ok(Answer::Ready(encode_response_chunks(meta, &resp)?))
        }
        Reply::Later(fut) => {
            let shared = shared.clone();
            Ok(Answer::Later(Box::pin(
                async move {
                    let resp = fut.await;
                    finished(&shared, meta, peer, started, allowance, Some(&resp));
                    encode_response_chunks(meta, &resp)
                }
                .instrument(span),
            )))
        }
        Reply::Nothing => {
            finished(shared, meta, peer, started, allowance, None);
            Ok(Answer::Nothing)
        }
        Reply::Close(reason) => {
            finished(shared, meta, peer, started, allowance, None);
            Err(Close::Unanswerable(reason))
        }
    }
}

/// The context every stage sees, from the request header.
fn context(req: &DecodedRequest, session: &Arc<Session>) -> RequestContext {
    RequestContext {
        api: Api::from_key(req.api_key as i16),
        api_version: req.header.request_api_version,
        correlation_id: req.header.correlation_id,
        client_id: req
            .header
            .client_id
            .as_deref()
            .unwrap_or_default()
            .to_string(),
        peer: session.peer,
        received: Timestamp::now(),
        session: session.clone(),
    }
}

/// Runs `on_request`, the handler and `on_response` for one request.
fn route(shared: &Arc<Shared>, req: DecodedRequest, session: &Arc<Session>) -> Reply {
    let chain = &shared.hooks;
    let ctx = Arc::new(context(&req, session));
    let started = Instant::now();
    // ApiVersions is how a client learns to talk at all; it is never refused.
    let rejected = if chain.wants(Stages::REQUEST) && ctx.api != Api::ApiVersions {
        match chain.on_request(&ctx) {
            Verdict::Continue => None,
            Verdict::Reject(r) => Some(r),
        }
    } else {
        None
    };
    let observe = chain.wants(Stages::RESPONSE);
    let sizes = match &req.body {
        RequestKind::Produce(p) if observe => produce_sizes(p),
        _ => HashMap::new(),
    };
    let reply = match rejected {
        Some(r) => match api::error_response(&req.body, req.header.request_api_version, &r) {
            Ok(Some(resp)) => Reply::Now(resp),
            Ok(None) => Reply::Nothing,
            Err(reason) => {
                tracing::error!(api = ctx.api.name(), "{reason}");
                return Reply::Close(format!(
                    "{} request refused by a hook ({reason}): {}",
                    ctx.api.name(),
                    r.message
                ));
            }
        },
        None => api::dispatch(shared, req, &ctx),
    };
    if !observe {
        return reply;
    }
    match reply {
        Reply::Now(resp) => {
            chain.on_response(&ctx, &outcome(&resp, &sizes, started));
            Reply::Now(resp)
        }
        Reply::Later(fut) => {
            let shared = shared.clone();
            Reply::Later(Box::pin(async move {
                let resp = fut.await;
                shared
                    .hooks
                    .on_response(&ctx, &outcome(&resp, &sizes, started));
                resp
            }))
        }
        Reply::Nothing => {
            // acks=0: no response; the outcome is what was handled.
            let items = sizes
                .into_iter()
                .map(|((topic, partition), (records, bytes))| OutcomeItem {
                    topic,
                    partition: Some(partition),
                    error_code: ErrorCode::NONE,
                    records,
                    bytes,
                })
                .collect();
            let o = Outcome {
                latency: started.elapsed(),
                error_code: ErrorCode::NONE,
                items,
            };
            chain.on_response(&ctx, &o);
            Reply::Nothing
        }
        Reply::Close(reason) => Reply::Close(reason),
    }
}

type Sizes = HashMap<(String, i32), (usize, usize)>;

/// Records and bytes per partition of a produce request, from batch headers.
fn produce_sizes(req: &kafka_protocol::messages::ProduceRequest) -> Sizes {
    let mut out = HashMap::new();
    for t in &req.topic_data {
        for p in &t.partition_data {
            let bytes = p.records.as_ref().map_or(0, |r| r.len());
            let records = p
                .records
                .clone()
                .and_then(|r| RecordBatch::split_all(r).ok())
                .map_or(0, |bs| {
                    bs.iter().map(|b| b.record_count().max(0) as usize).sum()
                });
            out.insert((t.name.to_string(), p.index), (records, bytes));
        }
    }
    out
}

/// The outcome `on_response` sees: the first error code (top level first) and an item per
/// topic, partition, group or resource the response names, from the API's own error walk.
fn outcome(resp: &ResponseKind, sizes: &Sizes, started: Instant) -> Outcome {
    let mut items = Vec::new();
    let mut top = 0i16;
    api::error_codes(resp, &mut |e| {
        if top == 0 {
            top = e.code;
        }
        let Some(name) = e.name else { return };
        let (records, bytes) = e
            .partition
            .and_then(|p| sizes.get(&(name.to_string(), p)).copied())
            .unwrap_or((0, 0));
        items.push(OutcomeItem {
            topic: name.to_string(),
            partition: e.partition,
            error_code: ErrorCode(e.code),
            records,
            bytes,
        });
    });
    Outcome {
        latency: started.elapsed(),
        error_code: ErrorCode(top),
        items,
    }
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
            api::error_codes(resp, &mut |e| code(e.code));
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
