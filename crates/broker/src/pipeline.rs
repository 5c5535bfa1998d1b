//! One request's way through the broker, above `api/`: decoded from the connection's
//! buffered bytes, `on_request`, [`api::dispatch`], `on_response`, encoded, and counted in
//! the metrics (and logged when slow). Sans-IO: `server.rs` owns the socket and the order
//! of writes; a test puts request bytes into a [`Connection`] and reads the answer's bytes.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use kafka_protocol::messages::{RequestKind, ResponseKind};
use rafka_core::limits::FETCH_MAX_WAIT_MS_MAX;
use rafka_core::{RecordBatch, Timestamp};
use rafka_hooks::{Api, ErrorCode, Outcome, OutcomeItem, RequestContext, Session, Stages, Verdict};
use rafka_protocol::connection::{DecodedRequest, Inbound, ProtocolError, ResponseMeta};
use rafka_protocol::{encode_response_chunks_with, Connection, EncodedResponse};

use crate::api::{self, Reply};
use crate::shared::Shared;

/// What the connection writes for one request.
pub(crate) enum Answer {
    /// The response, encoded, and how long the connection is muted once it is sent (a
    /// client over its quota, KIP-219).
    Ready(EncodedResponse, Duration),
    /// The response once the handler's wait is over (an fsync, a long poll), encoded, and
    /// the mute after it; the request's span is attached. Responses still leave in request
    /// order. Beside it, the mute already known when the handler returned (a Produce over
    /// its quota): nothing more is read until this answer is sent. Last, whether it waits
    /// only for an fsync ([`Reply::Durable`]), held under its own bound.
    Later(
        Pin<Box<dyn Future<Output = Result<Muted, ProtocolError>> + Send>>,
        Duration,
        bool,
    ),
    /// Nothing (Produce with acks=0), and the mute from now.
    Nothing(Duration),
}

/// A response and how long the connection is muted once it is sent.
pub(crate) type Muted = (EncodedResponse, Duration);

/// Why a connection stops reading.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Close {
    /// The client's bytes cannot be trusted.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The broker cannot answer the request (a broker bug, already logged).
    #[error("{0}")]
    Unanswerable(String),
    /// The SASL rules refuse what the client sent (before or during authentication, or
    /// after its session expired).
    #[error("SASL: {0}")]
    Authentication(String),
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
        Inbound::Answered(bytes) => Ok(Some(Answer::Ready(bytes.into(), Duration::ZERO))),
        Inbound::Request(req) => handle(shared, *req, session).map(Some),
    }
}

/// Handles one decoded request: hooks, handler, encoding, metrics.
pub(crate) fn handle(
    shared: &Arc<Shared>,
    mut req: DecodedRequest,
    session: &Arc<Session>,
) -> Result<Answer, Close> {
    let meta = req.meta();
    let started = Instant::now();
    let usage = crate::throttle::Usage::of(shared, &mut req, session);
    let allowance = wait_allowance(&req.body);
    let span = tracing::debug_span!(
        "request",
        api = ?meta.api_key,
        version = meta.api_version,
        correlation_id = meta.correlation_id
    );
    // Regions left by a Fetch answered outside the pipeline (none in the broker) are not
    // this request's.
    drop(api::fetch::take_regions());
    let routed = {
        let _in = span.enter();
        tracing::trace!("request");
        route(shared, req, session)
    };
    let durable = matches!(routed, Reply::Durable(_));
    match routed {
        Reply::Now(mut resp) => {
            // A Fetch's file regions, left by its handler just now on this thread.
            let regions = api::fetch::take_regions();
            let mute = usage.map_or(Duration::ZERO, |u| {
                let early = u.record(shared, started.elapsed(), true);
                u.finish(shared, early, Some(&mut resp))
            });
            finished(shared, meta, session, started, allowance, Some(&resp));
            let bytes = encode_response_chunks_with(meta, &resp, &regions)?;
            if !mute.is_zero() && !crate::throttle::client_throttles(meta.api_key, meta.api_version)
            {
                // A client from before KIP-219 gets its answer after the throttle time.
                return Ok(Answer::Later(
                    Box::pin(async move {
                        tokio::time::sleep(mute).await;
                        Ok((bytes, Duration::ZERO))
                    }),
                    mute,
                    false,
                ));
            }
            Ok(Answer::Ready(bytes, mute))
        }
        Reply::Later(fut) | Reply::Durable(fut) => {
            let shared = shared.clone();
            let session = session.clone();
            // The broker's own time; the wait that follows is not the client's usage.
            let early = usage
                .as_ref()
                .map(|u| u.record(&shared, started.elapsed(), true));
            let known = early.map_or(Duration::ZERO, |e| e.1);
            Ok(Answer::Later(
                Box::pin(
                    async move {
                        let mut resp = fut.await;
                        // Left by the Fetch handler as the future completed, in this poll.
                        let regions = api::fetch::take_regions();
                        let mute = match (usage, early) {
                            (Some(u), Some(e)) => u.finish(&shared, e, Some(&mut resp)),
                            _ => Duration::ZERO,
                        };
                        finished(&shared, meta, &session, started, allowance, Some(&resp));
                        let bytes = encode_response_chunks_with(meta, &resp, &regions)?;
                        if !mute.is_zero()
                            && !crate::throttle::client_throttles(meta.api_key, meta.api_version)
                        {
                            tokio::time::sleep(mute).await;
                            return Ok((bytes, Duration::ZERO));
                        }
                        Ok((bytes, mute))
                    }
                    .instrument(span),
                ),
                known,
                durable,
            ))
        }
        Reply::Nothing => {
            let mute = usage.map_or(Duration::ZERO, |u| {
                let early = u.record(shared, started.elapsed(), false);
                u.finish(shared, early, None)
            });
            finished(shared, meta, session, started, allowance, None);
            Ok(Answer::Nothing(mute))
        }
        Reply::Close(reason) => {
            finished(shared, meta, session, started, allowance, None);
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
    let durable = matches!(reply, Reply::Durable(_));
    match reply {
        Reply::Now(resp) => {
            chain.on_response(&ctx, &outcome(&resp, &sizes, started));
            Reply::Now(resp)
        }
        Reply::Later(fut) | Reply::Durable(fut) => {
            let shared = shared.clone();
            let fut: Pin<Box<dyn Future<Output = ResponseKind> + Send>> = Box::pin(async move {
                let resp = fut.await;
                shared
                    .hooks
                    .on_response(&ctx, &outcome(&resp, &sizes, started));
                resp
            });
            if durable {
                Reply::Durable(fut)
            } else {
                Reply::Later(fut)
            }
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
    session: &Session,
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
                peer = %session.peer,
                principal = %session.principal,
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
    use bytes::Bytes;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{
        ApiKey, ApiVersionsRequest, ApiVersionsResponse, DescribeDelegationTokenRequest,
        FetchRequest, JoinGroupRequest, MetadataRequest, MetadataResponse, ProduceRequest,
        RequestHeader, ResponseHeader,
    };
    use kafka_protocol::protocol::{Decodable, StrBytes};
    use rafka_hooks::{Hook, HookResult, Interest, TopicFilter};
    use rafka_protocol::connection::encode_request;

    /// A request's bytes as a client sends them: size prefix, header, body.
    fn request(key: ApiKey, version: i16, correlation_id: i32, body: RequestKind) -> Bytes {
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("unit-test")));
        encode_request(&header, &body).expect("encodes")
    }

    fn metadata_of(topics: &[&str]) -> RequestKind {
        RequestKind::Metadata(
            MetadataRequest::default()
                .with_allow_auto_topic_creation(false)
                .with_topics(Some(
                    topics
                        .iter()
                        .map(|t| {
                            MetadataRequestTopic::default().with_name(Some(api::wire_topic(t)))
                        })
                        .collect(),
                )),
        )
    }

    /// Feeds `bytes` to a fresh connection and runs every whole request in them through
    /// the pipeline: the answers' bytes in order, or why the connection closes.
    fn answers(shared: &Arc<Shared>, bytes: &[u8]) -> Result<Vec<Bytes>, Close> {
        let peer = "127.0.0.1:50000".parse().expect("an address");
        let session = Arc::new(Session::plaintext(peer, "127.0.0.1:9092".parse().unwrap()));
        let mut conn = Connection::new(shared.config.broker.socket_request_max_bytes);
        conn.receive(bytes);
        let mut out = Vec::new();
        while let Some(answer) = next(shared, &mut conn, &session)? {
            match answer {
                Answer::Ready(r, _) => out.push(r.into_bytes()),
                Answer::Later(..) => panic!("these requests are answered at once"),
                Answer::Nothing(_) => {}
            }
        }
        Ok(out)
    }

    /// Splits an answer into its correlation id and body bytes, checking the size prefix.
    fn response<R: Decodable>(mut bytes: Bytes, key: ApiKey, version: i16) -> (i32, R) {
        let size = i32::from_be_bytes(bytes[..4].try_into().unwrap());
        assert_eq!(size as usize, bytes.len() - 4, "size prefix");
        let mut body = bytes.split_off(4);
        let header = ResponseHeader::decode(&mut body, key.response_header_version(version))
            .expect("a response header");
        let decoded = R::decode(&mut body, version).expect("a response body");
        assert!(body.is_empty(), "{} bytes left after the body", body.len());
        (header.correlation_id, decoded)
    }

    #[test]
    fn api_versions_and_metadata_bytes_in_bytes_out() {
        let shared = Arc::new(Shared::for_tests(Vec::new()));
        shared
            .cluster
            .create_topic(
                &rafka_core::TopicName::new("orders").unwrap(),
                3,
                Default::default(),
                false,
            )
            .expect("topic");
        let api_versions = RequestKind::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("unit-test"))
                .with_client_software_version(StrBytes::from_static_str("1")),
        );
        // Two requests in one read, as a pipelining client sends them.
        let mut bytes = request(ApiKey::ApiVersions, 3, 7, api_versions).to_vec();
        bytes.extend_from_slice(&request(
            ApiKey::Metadata,
            12,
            8,
            metadata_of(&["orders", "missing"]),
        ));
        let out = answers(&shared, &bytes).expect("answered");
        assert_eq!(out.len(), 2);

        let (correlation_id, versions): (_, ApiVersionsResponse) =
            response(out[0].clone(), ApiKey::ApiVersions, 3);
        assert_eq!((correlation_id, versions.error_code), (7, 0));
        let listed: Vec<i16> = versions.api_keys.iter().map(|k| k.api_key).collect();
        let served: Vec<i16> = rafka_protocol::versions::SERVED
            .iter()
            .map(|a| a.key as i16)
            .collect();
        assert_eq!(listed, served);
        let produce = &versions.api_keys[0];
        assert_eq!((produce.api_key, produce.min_version), (0, 0));

        let (correlation_id, metadata): (_, MetadataResponse) =
            response(out[1].clone(), ApiKey::Metadata, 12);
        assert_eq!(correlation_id, 8);
        assert_eq!(metadata.brokers.len(), 1);
        assert_eq!(metadata.brokers[0].host.as_str(), "127.0.0.1");
        assert_eq!(metadata.brokers[0].port, 9092);
        let topics: Vec<(String, i16, usize)> = metadata
            .topics
            .iter()
            .map(|t| {
                let name = t.name.as_ref().map_or(String::new(), |n| n.to_string());
                (name, t.error_code, t.partitions.len())
            })
            .collect();
        assert_eq!(
            topics,
            [("orders".into(), 0, 3), ("missing".into(), 3, 0)],
            "orders has 3 partitions; missing is UNKNOWN_TOPIC_OR_PARTITION"
        );
        let leaders: Vec<(i32, i32)> = metadata.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.leader_id.0))
            .collect();
        assert_eq!(leaders, [(0, 0), (1, 0), (2, 0)]);
        // Counted per API, with the error codes the answer carried.
        assert_eq!(shared.metrics.requests(ApiKey::ApiVersions), 1);
        assert_eq!(shared.metrics.requests(ApiKey::Metadata), 1);
        let text = crate::metrics::render(&shared.metrics, &shared.figures());
        assert!(text.contains(
            "rafka_request_errors_total{api=\"Metadata\",error=\"UNKNOWN_TOPIC_OR_PARTITION\"} 1\n"
        ));
        assert!(
            text.contains("rafka_partition_log_end_offset{topic=\"orders\",partition=\"2\"} 0\n")
        );
    }

    /// Refuses every Metadata request in `on_request`.
    struct NoMetadata;

    impl Hook for NoMetadata {
        fn name(&self) -> &str {
            "no-metadata"
        }
        fn interest(&self) -> Interest {
            Interest {
                stages: Stages::REQUEST,
                topics: TopicFilter::All,
                record_access: false,
            }
        }
        fn on_request(&self, ctx: &RequestContext) -> HookResult {
            Ok(match ctx.api {
                Api::Metadata => Verdict::reject(ErrorCode::TOPIC_AUTHORIZATION_FAILED, "no"),
                _ => Verdict::Continue,
            })
        }
    }

    #[test]
    fn a_refused_request_is_answered_with_the_hooks_code() {
        let shared = Arc::new(Shared::for_tests(vec![Arc::new(NoMetadata)]));
        let bytes = request(ApiKey::Metadata, 12, 9, metadata_of(&["a", "b"]));
        let out = answers(&shared, &bytes).expect("answered, not closed");
        let (correlation_id, metadata): (_, MetadataResponse) =
            response(out[0].clone(), ApiKey::Metadata, 12);
        assert_eq!(correlation_id, 9);
        let codes: Vec<(String, i16)> = metadata
            .topics
            .iter()
            .map(|t| (t.name.as_ref().unwrap().to_string(), t.error_code))
            .collect();
        assert_eq!(codes, [("a".into(), 29), ("b".into(), 29)]);
        // ApiVersions is never refused.
        let bytes = request(
            ApiKey::ApiVersions,
            0,
            10,
            RequestKind::ApiVersions(ApiVersionsRequest::default()),
        );
        let out = answers(&shared, &bytes).expect("answered");
        let (_, versions): (_, ApiVersionsResponse) =
            response(out[0].clone(), ApiKey::ApiVersions, 0);
        assert_eq!(versions.error_code, 0);
    }

    #[test]
    fn unknown_versions_are_answered_and_unserved_apis_close() {
        let shared = Arc::new(Shared::for_tests(Vec::new()));
        // ApiVersions at a version the broker does not know: answered as v0 with
        // UNSUPPORTED_VERSION and the ranges, so the client can retry. (kafka-protocol
        // encodes no v99: the version field of a v3 request is changed.)
        let mut bytes = request(
            ApiKey::ApiVersions,
            3,
            11,
            RequestKind::ApiVersions(ApiVersionsRequest::default()),
        )
        .to_vec();
        bytes[6..8].copy_from_slice(&99i16.to_be_bytes());
        let out = answers(&shared, &bytes).expect("answered");
        let (correlation_id, versions): (_, ApiVersionsResponse) =
            response(out[0].clone(), ApiKey::ApiVersions, 0);
        assert_eq!((correlation_id, versions.error_code), (11, 35));
        assert!(!versions.api_keys.is_empty());
        // An API the broker does not serve closes the connection, with nothing written.
        let bytes = request(
            ApiKey::DescribeDelegationToken,
            1,
            12,
            RequestKind::DescribeDelegationToken(DescribeDelegationTokenRequest::default()),
        );
        match answers(&shared, &bytes) {
            Err(Close::Protocol(ProtocolError::UnsupportedApi { key, version })) => {
                assert_eq!((key, version), (ApiKey::DescribeDelegationToken as i16, 1));
            }
            Err(other) => panic!("closed for another reason: {other}"),
            Ok(out) => panic!("answered {} responses", out.len()),
        }
        assert_eq!(shared.metrics.requests(ApiKey::DescribeDelegationToken), 0);
    }

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
