//! Client-quota throttling of one request, as Kafka does it (KIP-219): the request's usage
//! is recorded against its client's quotas — a Produce's record bytes against
//! `producer_byte_rate`, a Fetch's answered record bytes against `consumer_byte_rate`, the
//! handler's own time of every request against `request_percentage` — and, over a quota,
//! the response carries `throttle_time_ms` and the connection is muted that long after
//! the response is sent (`server.rs`). A throttled Fetch is answered without records and
//! its bytes are taken back, as Kafka answers it empty; a Fetch asks for at most what the
//! quota allows in its window (Kafka's `getMaxValueInQuotaWindow`).
//!
//! `controller_mutation_rate` (KIP-599) is counted by the CreateTopics, CreatePartitions
//! and DeleteTopics handlers themselves (`api/admin.rs`: a topic over it is refused
//! THROTTLING_QUOTA_EXCEEDED), which put its throttle time in their response;
//! [`Usage::finish`] takes the longer of that and the request quota's, as Kafka's
//! `sendResponseMaybeThrottleWithControllerQuota` does, and mutes the connection for it.
//! Produce before v6 and Fetch before v8 predate KIP-219: their answer is delayed by the
//! throttle time instead (the connection held meanwhile), as Kafka does; other APIs' old
//! versions are answered at once and muted.
//!
//! The pipeline calls [`Usage::of`] before the handler, [`Usage::record`] when it returns
//! and [`Usage::finish`] once the response is complete. Without any quota configured, `of` returns `None` and nothing
//! else runs.

use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use rafka_hooks::Session;
use rafka_protocol::connection::DecodedRequest;

use crate::quota::QuotaKind;
use crate::shared::Shared;

/// What a request uses of its client's quotas.
pub(crate) struct Usage {
    api: ApiKey,
    user: String,
    client_id: String,
    /// A Produce's size (Kafka counts the whole request).
    produce_bytes: usize,
}

impl Usage {
    /// The usage of `req`, or `None` when no quota is configured. Bounds a Fetch's
    /// `max_bytes` by what its consumer quota allows in one window.
    pub(crate) fn of(
        shared: &Shared,
        req: &mut DecodedRequest,
        session: &Session,
    ) -> Option<Usage> {
        if !shared.quotas.enabled() {
            return None;
        }
        let api = req.api_key;
        // A client must be able to learn versions and authenticate whatever its quota.
        if matches!(
            api,
            ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
        ) {
            return None;
        }
        let user = session.principal.name.clone();
        let client_id = req
            .header
            .client_id
            .as_deref()
            .unwrap_or_default()
            .to_string();
        let produce_bytes = req.frame_bytes;
        if let RequestKind::Fetch(f) = &mut req.body {
            let quota = &shared.quotas;
            if let Some(max) =
                quota.max_value_in_window(QuotaKind::ConsumerByteRate, &user, &client_id)
            {
                let max = max.clamp(1.0, i32::MAX as f64) as i32;
                if f.max_bytes <= 0 || f.max_bytes > max {
                    f.max_bytes = max;
                }
            }
        }
        Some(Usage {
            api,
            user,
            client_id,
            produce_bytes,
        })
    }

    /// Records what is known when the handler returns — its own time (`handler_time`)
    /// against the request quota, unless nothing is answered (a Produce with acks=0), and
    /// a Produce's bytes — and returns the throttle it earns so far: the connection reads
    /// no further request until this answer is sent and the throttle is over.
    pub(crate) fn record(
        &self,
        shared: &Shared,
        handler_time: Duration,
        answered: bool,
    ) -> (QuotaKind, Duration) {
        let q = &shared.quotas;
        let now = Instant::now();
        let (user, client) = (self.user.as_str(), self.client_id.as_str());
        let request = if answered {
            q.record(
                QuotaKind::RequestPercentage,
                user,
                client,
                handler_time.as_secs_f64() * 100.0,
                now,
            )
        } else {
            Duration::ZERO
        };
        if self.api == ApiKey::Produce {
            let bytes = q.record(
                QuotaKind::ProducerByteRate,
                user,
                client,
                self.produce_bytes as f64,
                now,
            );
            return worst((QuotaKind::ProducerByteRate, bytes), request);
        }
        (QuotaKind::RequestPercentage, request)
    }

    /// Completes the throttle once the response is ready: a Fetch's answered bytes are
    /// recorded (and, if it is throttled, taken back and its records dropped);
    /// `throttle_time_ms` is set. Returns how long the connection is muted after the
    /// response is sent.
    pub(crate) fn finish(
        &self,
        shared: &Shared,
        early: (QuotaKind, Duration),
        resp: Option<&mut ResponseKind>,
    ) -> Duration {
        let q = &shared.quotas;
        let (user, client) = (self.user.as_str(), self.client_id.as_str());
        let (kind, time) = match resp {
            Some(ResponseKind::Fetch(f)) => {
                let now = Instant::now();
                let size: usize = f
                    .responses
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
                    .sum();
                let bytes = q.record(QuotaKind::ConsumerByteRate, user, client, size as f64, now);
                let w = worst((QuotaKind::ConsumerByteRate, bytes), early.1);
                if w.1 > Duration::ZERO {
                    // Answered without records: they do not count.
                    q.unrecord(QuotaKind::ConsumerByteRate, user, client, size as f64, now);
                    for p in f.responses.iter_mut().flat_map(|t| &mut t.partitions) {
                        if p.records.as_ref().is_some_and(|r| !r.is_empty()) {
                            p.records = Some(bytes::Bytes::new());
                        }
                    }
                    f.throttle_time_ms = millis(w.1);
                }
                w
            }
            Some(r) => {
                let mutation = mutation_throttle(r);
                let w = if mutation > early.1 {
                    (QuotaKind::ControllerMutationRate, mutation)
                } else {
                    early
                };
                set_throttle_time(r, w.1);
                w
            }
            None => early,
        };
        if time > Duration::ZERO {
            shared.metrics.throttled(kind, time);
            q.throttled(kind, user, client, time);
            tracing::debug!(
                quota = kind.name(),
                user,
                client_id = client,
                throttle_ms = time.as_millis() as u64,
                "quota exceeded; throttled"
            );
        }
        time
    }
}

/// Whether a client of `version` throttles itself on `throttle_time_ms` (KIP-219), so the
/// broker answers at once and mutes the connection after; an older Produce or Fetch gets
/// its answer late instead.
pub(crate) fn client_throttles(api: ApiKey, version: i16) -> bool {
    match api {
        ApiKey::Produce => version >= 6,
        ApiKey::Fetch => version >= 8,
        _ => true,
    }
}

/// The longer of a byte quota's throttle and the request quota's, and its kind.
fn worst(bytes: (QuotaKind, Duration), request: Duration) -> (QuotaKind, Duration) {
    if bytes.1 >= request {
        bytes
    } else {
        (QuotaKind::RequestPercentage, request)
    }
}

/// The `controller_mutation_rate` throttle a CreateTopics, CreatePartitions or
/// DeleteTopics handler put in its response.
fn mutation_throttle(resp: &ResponseKind) -> Duration {
    let ms = match resp {
        ResponseKind::CreateTopics(r) => r.throttle_time_ms,
        ResponseKind::CreatePartitions(r) => r.throttle_time_ms,
        ResponseKind::DeleteTopics(r) => r.throttle_time_ms,
        _ => 0,
    };
    Duration::from_millis(ms.max(0) as u64)
}

fn millis(d: Duration) -> i32 {
    d.as_millis().min(i32::MAX as u128) as i32
}

/// Sets `throttle_time_ms` in every served response that has one (a version without
/// the field does not encode it).
macro_rules! set_throttle_time_in {
    ($($api:ident),* $(,)?) => {
        fn set_throttle_time(resp: &mut ResponseKind, time: Duration) {
            if time.is_zero() {
                return;
            }
            let ms = millis(time);
            match resp {
                $(ResponseKind::$api(r) => r.throttle_time_ms = ms,)*
                _ => {}
            }
        }
    };
}

set_throttle_time_in! {
    Produce, Fetch, ListOffsets, Metadata, OffsetCommit, OffsetFetch, FindCoordinator,
    JoinGroup, Heartbeat, LeaveGroup, SyncGroup, DescribeGroups, ListGroups, ApiVersions,
    CreateTopics, DeleteTopics, DeleteRecords, InitProducerId, OffsetForLeaderEpoch,
    DescribeConfigs, AlterConfigs, DescribeLogDirs, CreatePartitions, DeleteGroups,
    IncrementalAlterConfigs, OffsetDelete, DescribeCluster, DescribeTopicPartitions,
    ConsumerGroupHeartbeat, ConsumerGroupDescribe, AddPartitionsToTxn, AddOffsetsToTxn,
    EndTxn, TxnOffsetCommit, DescribeProducers, DescribeTransactions, ListTransactions,
    CreateAcls, DescribeAcls, DeleteAcls, DescribeUserScramCredentials,
    AlterUserScramCredentials, DescribeClientQuotas, AlterClientQuotas,
}
