//! One module per Kafka API. [`dispatch`] routes a decoded request to its handler.
//!
//! Handlers are synchronous functions that do their work before returning (so appends
//! happen in request order); what must wait (an fsync for acks=all, a long-poll fetch)
//! is returned as a future in [`Reply::Later`], which the connection awaits in order.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use kafka_protocol::messages::{RequestKind, ResponseKind, TopicName as WireTopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use rafka_core::StorageError;
use rafka_hooks::{ErrorCode, Rejection, RequestContext};
use rafka_protocol::connection::DecodedRequest;

use crate::shared::Shared;

mod acls;
mod admin;
mod api_versions;
mod authorize;
mod client_quotas;
mod configs;
pub(crate) mod fetch;
mod group_errors;
pub(crate) mod groups;
pub(crate) mod init_producer_id;
mod list_offsets;
mod metadata;
mod produce;
mod sasl;
mod scram_credentials;
pub(crate) mod txn;

/// A handler's answer.
// One Reply per request, consumed at once: boxing the common `Now` case buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum Reply {
    /// The response is ready.
    Now(ResponseKind),
    /// The response needs waiting for (fsync, long poll).
    Later(Pin<Box<dyn Future<Output = ResponseKind> + Send>>),
    /// The response is built and the request's records are written: it waits only for an
    /// fsync (acks=all on the log engine). Held under its own, larger per-connection bound
    /// (`limits::DURABILITY_WAITS_PER_CONNECTION_MAX`).
    Durable(Pin<Box<dyn Future<Output = ResponseKind> + Send>>),
    /// No response at all (Produce with acks=0).
    Nothing,
    /// The request cannot be answered: close the connection (a broker bug, logged).
    Close(String),
}

/// What every served API knows about its own refusal, as Kafka's request classes supply
/// `getErrorResponse`: implemented next to the API's handler, on its request type.
pub(crate) trait RefusableRequest {
    /// The API's response type.
    type Response;
    /// The answer carrying `refusal` wherever this request names a topic, partition, group
    /// or resource (and in the top-level error code where the API has one).
    fn error_response(&self, version: i16, refusal: &Rejection) -> Self::Response;
    /// Whether the client waits for an answer (not so for Produce with acks=0).
    fn expects_response(&self) -> bool {
        true
    }
}

/// One error code of a response and what it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ErrorItem<'a> {
    /// The topic, group or config resource the code is about; `None` for a top-level code.
    pub name: Option<&'a str>,
    /// The partition, where the code is per partition.
    pub partition: Option<i32>,
    /// The code (0 for none).
    pub code: i16,
}

impl<'a> ErrorItem<'a> {
    /// A top-level code.
    pub fn top(code: i16) -> ErrorItem<'a> {
        ErrorItem {
            name: None,
            partition: None,
            code,
        }
    }

    /// A code about one topic, group or resource.
    pub fn named(name: &'a str, code: i16) -> ErrorItem<'a> {
        ErrorItem {
            name: Some(name),
            partition: None,
            code,
        }
    }

    /// A code about one partition of a topic.
    pub fn partition(topic: &'a str, partition: i32, code: i16) -> ErrorItem<'a> {
        ErrorItem {
            name: Some(topic),
            partition: Some(partition),
            code,
        }
    }
}

/// Every error code a response carries, as Kafka's response classes supply `errorCounts`:
/// implemented next to the API's handler, on its response type.
pub(crate) trait ErrorCodes {
    /// Calls `f` with every error code in the response (zeros included), top level first.
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(ErrorItem<'a>));
}

/// The per-API pieces, generated from one list of the served APIs. The variant names of
/// `RequestKind`, `ResponseKind` and `ApiKey` are the same in kafka-protocol; a test holds
/// this list to `rafka_protocol::versions::SERVED`.
macro_rules! served_apis {
    ($($api:ident),* $(,)?) => {
        /// The API keys that have an error response and an error walk.
        #[cfg(test)]
        const WITH_ERROR_PIECES: &[kafka_protocol::messages::ApiKey] =
            &[$(kafka_protocol::messages::ApiKey::$api),*];

        /// The answer to `req` refused with `refusal`; `Ok(None)` when the client expects no
        /// answer, `Err` when the API is not in the list (a broker bug).
        pub(crate) fn error_response(
            req: &RequestKind,
            version: i16,
            refusal: &Rejection,
        ) -> Result<Option<ResponseKind>, String> {
            match req {
                $(RequestKind::$api(r) => Ok(r
                    .expects_response()
                    .then(|| ResponseKind::$api(r.error_response(version, refusal)))),)*
                other => Err(format!("no error response for {other:?}")),
            }
        }

        /// Every error code in `resp` (see [`ErrorCodes`]).
        pub(crate) fn error_codes<'a>(resp: &'a ResponseKind, f: &mut dyn FnMut(ErrorItem<'a>)) {
            match resp {
                $(ResponseKind::$api(r) => r.error_codes(f),)*
                _ => {}
            }
        }

        /// An answer of `req`'s API with nothing in it, for a request refused item by item.
        fn empty_response(req: &RequestKind) -> Option<ResponseKind> {
            match req {
                $(RequestKind::$api(r) => r
                    .expects_response()
                    .then(|| ResponseKind::$api(Default::default())),)*
                _ => None,
            }
        }

        #[cfg(test)]
        /// A default request of each listed API, for the completeness test.
        fn default_request(key: kafka_protocol::messages::ApiKey) -> Option<RequestKind> {
            match key {
                $(kafka_protocol::messages::ApiKey::$api => Some(RequestKind::$api(Default::default())),)*
                _ => None,
            }
        }
    };
}

served_apis! {
    Produce, Fetch, ListOffsets, Metadata, OffsetCommit, OffsetFetch, FindCoordinator,
    JoinGroup, Heartbeat, LeaveGroup, SyncGroup, DescribeGroups, ListGroups, ApiVersions,
    CreateTopics, DeleteTopics, DeleteRecords, InitProducerId, OffsetForLeaderEpoch,
    DescribeConfigs, AlterConfigs, DescribeLogDirs, CreatePartitions, DeleteGroups,
    IncrementalAlterConfigs, OffsetDelete, DescribeCluster, DescribeTopicPartitions,
    ConsumerGroupHeartbeat, ConsumerGroupDescribe, AddPartitionsToTxn, AddOffsetsToTxn,
    EndTxn, WriteTxnMarkers, TxnOffsetCommit, DescribeProducers, DescribeTransactions,
    ListTransactions, SaslHandshake, SaslAuthenticate, CreateAcls, DescribeAcls, DeleteAcls,
    DescribeUserScramCredentials, AlterUserScramCredentials, DescribeClientQuotas,
    AlterClientQuotas,
}

/// Routes a request to its handler after the authorizer's check ([`authorize::check`]):
/// refused parts never reach the handler and are answered with the API's own error
/// answer, merged into the handler's. Only APIs in `rafka_protocol::versions::SERVED`
/// reach here. `ctx` is what hooks see of the request (the pipeline runs `on_request` and
/// `on_response` around this call).
pub fn dispatch(shared: &Arc<Shared>, req: DecodedRequest, ctx: &Arc<RequestContext>) -> Reply {
    let a = authorize::Authz::new(shared, ctx);
    if !a.on() {
        return handle(shared, req, ctx);
    }
    let version = req.header.request_api_version;
    let DecodedRequest {
        header,
        api_key,
        body,
        frame_bytes,
    } = req;
    let acks0_refused = || {
        Reply::Close(format!(
            "{} refused by the authorizer with acks=0 (Kafka closes the connection)",
            ctx.api.name()
        ))
    };
    match authorize::check(&a, body, version) {
        authorize::Checked::Refuse(q, r) => match error_response(&q, version, &r) {
            Ok(Some(resp)) => Reply::Now(resp),
            Ok(None) => acks0_refused(),
            Err(reason) => Reply::Close(reason),
        },
        authorize::Checked::RefuseItems(parts) => {
            let mut out: Option<ResponseKind> = None;
            for (q, r) in &parts {
                let base = out.take().or_else(|| empty_response(q));
                match (base, authorize::refused_answer(q, version, r)) {
                    (Some(mut base), Ok(Some(resp))) => {
                        authorize::merge(&mut base, resp);
                        out = Some(base);
                    }
                    (_, Err(reason)) => return Reply::Close(reason),
                    _ => return acks0_refused(),
                }
            }
            match out {
                Some(resp) => Reply::Now(resp),
                None => acks0_refused(),
            }
        }
        authorize::Checked::Run {
            req: body,
            refused,
            filter,
        } => {
            let mut extra = Vec::with_capacity(refused.len());
            for (q, r) in &refused {
                match authorize::refused_answer(q, version, r) {
                    Ok(Some(resp)) => extra.push(resp),
                    Ok(None) => {}
                    Err(reason) => return Reply::Close(reason),
                }
            }
            let req = DecodedRequest {
                header,
                api_key,
                body,
                frame_bytes,
            };
            match handle(shared, req, ctx) {
                Reply::Now(mut resp) => {
                    for e in extra {
                        authorize::merge(&mut resp, e);
                    }
                    authorize::narrow(&a, &filter, &mut resp);
                    Reply::Now(resp)
                }
                Reply::Durable(fut) if extra.is_empty() && filter == authorize::Filter::None => {
                    Reply::Durable(fut)
                }
                Reply::Later(fut) | Reply::Durable(fut) => {
                    if extra.is_empty() && filter == authorize::Filter::None {
                        return Reply::Later(fut);
                    }
                    // Diskless Metadata and OffsetFetch answer later and are narrowed too.
                    let (shared, ctx) = (shared.clone(), ctx.clone());
                    Reply::Later(Box::pin(async move {
                        let mut resp = fut.await;
                        for e in extra {
                            authorize::merge(&mut resp, e);
                        }
                        authorize::narrow(
                            &authorize::Authz::new(&shared, &ctx),
                            &filter,
                            &mut resp,
                        );
                        resp
                    }))
                }
                Reply::Nothing if !refused.is_empty() => acks0_refused(),
                other => other,
            }
        }
    }
}

/// The groups a group request is about (JoinGroup, OffsetCommit, ...), for the diskless
/// coordinator check; `None` for other APIs.
fn groups_of(req: &RequestKind) -> Option<Vec<&str>> {
    use RequestKind as K;
    Some(match req {
        K::JoinGroup(r) => vec![r.group_id.as_str()],
        K::SyncGroup(r) => vec![r.group_id.as_str()],
        K::Heartbeat(r) => vec![r.group_id.as_str()],
        K::LeaveGroup(r) => vec![r.group_id.as_str()],
        K::OffsetCommit(r) => vec![r.group_id.as_str()],
        K::OffsetDelete(r) => vec![r.group_id.as_str()],
        K::ConsumerGroupHeartbeat(r) => vec![r.group_id.as_str()],
        K::OffsetFetch(r) if r.groups.is_empty() => vec![r.group_id.as_str()],
        K::OffsetFetch(r) => r.groups.iter().map(|g| g.group_id.as_str()).collect(),
        K::DescribeGroups(r) => r.groups.iter().map(|g| g.as_str()).collect(),
        K::DeleteGroups(r) => r.groups_names.iter().map(|g| g.as_str()).collect(),
        K::ConsumerGroupDescribe(r) => r.group_ids.iter().map(|g| g.as_str()).collect(),
        _ => return None,
    })
}

/// Runs the handler of `req`'s API.
fn handle(shared: &Arc<Shared>, req: DecodedRequest, ctx: &Arc<RequestContext>) -> Reply {
    let peer = ctx.session.peer;
    let version = req.header.request_api_version;
    // Diskless: a group is served only by the live broker that coordinates it now, so two
    // brokers never both act for it (clients batch group requests by coordinator).
    if let Some(d) = &shared.diskless {
        // A broker whose lease may have lapsed (or that a newer incarnation fenced) sends
        // clients elsewhere rather than serve from a stale view of the cluster.
        let data = matches!(
            req.body,
            RequestKind::Produce(_)
                | RequestKind::Fetch(_)
                | RequestKind::ListOffsets(_)
                | RequestKind::OffsetForLeaderEpoch(_)
        );
        let refusal = if data && !d.is_live() {
            Some(ResponseError::NotLeaderOrFollower)
        } else {
            groups_of(&req.body).and_then(|gs| {
                gs.into_iter()
                    .find_map(|g| groups::not_coordinator(shared, g))
            })
        };
        if let Some(e) = refusal {
            let refusal = Rejection {
                code: ErrorCode(e.code()),
                message: e.to_string(),
                record_errors: Vec::new(),
            };
            return match error_response(&req.body, version, &refusal) {
                Ok(Some(resp)) => Reply::Now(resp),
                Ok(None) => Reply::Nothing,
                Err(reason) => Reply::Close(reason),
            };
        }
    }
    let client_id = req
        .header
        .client_id
        .as_deref()
        .unwrap_or_default()
        .to_string();
    match req.body {
        RequestKind::ApiVersions(_) => Reply::Now(api_versions::handle()),
        RequestKind::SaslHandshake(_) => Reply::Now(sasl::handshake()),
        RequestKind::SaslAuthenticate(_) => Reply::Now(sasl::authenticate()),
        RequestKind::Metadata(r) => match &shared.diskless {
            Some(d) => metadata::diskless::handle(shared, d, r, version, ctx),
            None => Reply::Now(metadata::handle(shared, r, version, ctx)),
        },
        RequestKind::Produce(r) => produce::handle(shared, r, version, ctx),
        RequestKind::Fetch(r) => fetch::handle(shared, r, version, ctx),
        RequestKind::ListOffsets(r) => list_offsets::handle_any(shared, r, version),
        RequestKind::OffsetForLeaderEpoch(r) => {
            list_offsets::offset_for_leader_epoch_any(shared, r)
        }
        RequestKind::CreateTopics(r) => match &shared.diskless {
            Some(d) => admin::diskless::create_topics(shared, d, r, version, ctx),
            None => Reply::Now(admin::create_topics(shared, r, version, ctx)),
        },
        RequestKind::DeleteTopics(r) => match &shared.diskless {
            Some(d) => admin::diskless::delete_topics(shared, d, r, version, ctx),
            None => Reply::Now(admin::delete_topics(shared, r, version, ctx)),
        },
        RequestKind::CreatePartitions(r) => match &shared.diskless {
            Some(d) => admin::diskless::create_partitions(shared, d, r, version, ctx),
            None => Reply::Now(admin::create_partitions(shared, r, version, ctx)),
        },
        RequestKind::DescribeTopicPartitions(r) => match &shared.diskless {
            Some(d) => metadata::diskless::describe_topic_partitions(d, r),
            None => Reply::Now(metadata::describe_topic_partitions(shared, r)),
        },
        RequestKind::DeleteRecords(r) => admin::delete_records_any(shared, r),
        RequestKind::DescribeCluster(r) => Reply::Now(match &shared.diskless {
            Some(d) => metadata::diskless::describe_cluster(shared, d, r, &ctx.session.listener),
            None => metadata::describe_cluster(shared, r, &ctx.session.listener),
        }),
        RequestKind::DescribeLogDirs(r) => Reply::Now(admin::describe_log_dirs(shared, r)),
        RequestKind::DescribeConfigs(r) => match &shared.diskless {
            Some(d) => configs::diskless::describe(shared, d, r, version),
            None => Reply::Now(configs::describe(shared, r, version)),
        },
        RequestKind::AlterConfigs(r) => match &shared.diskless {
            Some(d) => configs::diskless::alter(shared, d, r, ctx),
            None => Reply::Now(configs::alter(shared, r, ctx)),
        },
        RequestKind::IncrementalAlterConfigs(r) => match &shared.diskless {
            Some(d) => configs::diskless::incremental_alter(shared, d, r, ctx),
            None => Reply::Now(configs::incremental_alter(shared, r, ctx)),
        },
        RequestKind::InitProducerId(r) => init_producer_id::handle(shared, r, version),
        RequestKind::AddPartitionsToTxn(r) => txn::add_partitions(shared, r, version),
        RequestKind::AddOffsetsToTxn(r) => txn::add_offsets(shared, r, version),
        RequestKind::EndTxn(r) => txn::end_txn(shared, r, version),
        RequestKind::TxnOffsetCommit(r) => txn::txn_offset_commit(shared, r, version),
        RequestKind::WriteTxnMarkers(r) => Reply::Now(ResponseKind::WriteTxnMarkers(
            txn::write_txn_markers(&r, ResponseError::ClusterAuthorizationFailed.code()),
        )),
        RequestKind::DescribeTransactions(r) => Reply::Now(txn::describe_transactions(shared, &r)),
        RequestKind::ListTransactions(r) => Reply::Now(txn::list_transactions(shared, &r, version)),
        RequestKind::DescribeProducers(r) => Reply::Now(txn::describe_producers(shared, &r)),
        RequestKind::DescribeUserScramCredentials(r) => {
            Reply::Now(scram_credentials::describe(shared, &r))
        }
        RequestKind::AlterUserScramCredentials(r) => {
            Reply::Now(scram_credentials::alter(shared, &r))
        }
        RequestKind::DescribeClientQuotas(r) => {
            Reply::Now(client_quotas::describe(shared, &r, &ctx.session))
        }
        RequestKind::AlterClientQuotas(r) => {
            Reply::Now(client_quotas::alter(shared, &r, &ctx.session))
        }
        RequestKind::CreateAcls(r) => Reply::Now(acls::create(shared, r, ctx)),
        RequestKind::DescribeAcls(r) => Reply::Now(acls::describe(shared, r, ctx)),
        RequestKind::DeleteAcls(r) => Reply::Now(acls::delete(shared, r, ctx)),
        RequestKind::FindCoordinator(r) => Reply::Now(groups::find_coordinator(
            shared,
            r,
            version,
            &ctx.session.listener,
        )),
        RequestKind::JoinGroup(r) => groups::join_group(shared, r, version, &client_id, peer),
        RequestKind::SyncGroup(r) => groups::sync_group(shared, r, version),
        RequestKind::Heartbeat(r) => Reply::Now(groups::heartbeat(shared, r)),
        RequestKind::LeaveGroup(r) => Reply::Now(groups::leave_group(shared, r, version)),
        RequestKind::OffsetCommit(r) => groups::offset_commit(shared, r, version),
        RequestKind::OffsetFetch(r) => groups::offset_fetch_any(shared, r, version),
        RequestKind::DescribeGroups(r) => Reply::Now(groups::describe_groups(shared, r, version)),
        RequestKind::ListGroups(r) => Reply::Now(groups::list_groups(shared, r, version)),
        RequestKind::DeleteGroups(r) => groups::delete_groups_any(shared, r),
        RequestKind::OffsetDelete(r) => groups::offset_delete_any(shared, r),
        RequestKind::ConsumerGroupHeartbeat(r) => Reply::Now(groups::consumer_group_heartbeat(
            shared, r, version, &client_id, peer,
        )),
        RequestKind::ConsumerGroupDescribe(r) => {
            Reply::Now(groups::consumer_group_describe(shared, r))
        }
        other => {
            // The served table and this match are kept in step by the tests below and the
            // version sweep; reaching here is a broker bug: the connection is closed.
            let reason = format!("no handler for {:?}", req.api_key);
            tracing::error!(request = ?std::mem::discriminant(&other), "{reason}");
            Reply::Close(reason)
        }
    }
}

/// A wire string.
pub(crate) fn sb(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// A wire topic name.
pub(crate) fn wire_topic(s: &str) -> WireTopicName {
    WireTopicName(sb(s))
}

/// Kafka's error code for a storage failure.
pub(crate) fn storage_error_code(e: &StorageError) -> ResponseError {
    match e {
        StorageError::Corrupt(_) => ResponseError::CorruptMessage,
        StorageError::BatchTooLarge { .. } => ResponseError::MessageTooLarge,
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        StorageError::Full(_) => ResponseError::KafkaStorageError,
        StorageError::Closed(_) => ResponseError::UnknownTopicOrPartition,
        StorageError::Io(_) | StorageError::Offline(_) => ResponseError::KafkaStorageError,
        StorageError::Unsupported { .. } => ResponseError::InvalidConfig,
    }
}

/// A Kafka error for a hook's code, for handlers whose helpers take `ResponseError`.
pub(crate) fn response_error(code: ErrorCode) -> ResponseError {
    ResponseError::try_from_code(code.0).unwrap_or(ResponseError::UnknownServerError)
}

/// The code of an optional error (0 for none).
pub(crate) fn code(e: Option<ResponseError>) -> i16 {
    e.map_or(0, |e| e.code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rafka_protocol::versions::SERVED;

    fn refusal() -> Rejection {
        Rejection {
            code: ErrorCode(29),
            message: "refused".into(),
            record_errors: Vec::new(),
        }
    }

    #[test]
    fn every_served_api_has_an_error_response_and_an_error_walk() {
        for api in SERVED {
            assert!(
                WITH_ERROR_PIECES.contains(&api.key),
                "{:?} is served but has no error response / error walk",
                api.key
            );
            let mut req = default_request(api.key).unwrap();
            if let RequestKind::Produce(p) = &mut req {
                // acks=0 is the one request answered with nothing (tested below).
                p.acks = -1;
            }
            for version in api.served_min..=api.max {
                let resp = error_response(&req, version, &refusal())
                    .unwrap()
                    .unwrap_or_else(|| panic!("{:?} v{version}: no answer", api.key));
                // An error response reports the refusal wherever it reports an error (a
                // top-level code absent from this version stays 0).
                error_codes(&resp, &mut |e| {
                    assert!(
                        e.code == 29 || e.code == 0,
                        "{:?} v{version}: {e:?}",
                        api.key
                    );
                });
                // The answer encodes at the requested version.
                let meta = rafka_protocol::connection::ResponseMeta {
                    api_key: api.key,
                    api_version: version,
                    correlation_id: 1,
                };
                rafka_protocol::connection::encode_response(meta, &resp)
                    .unwrap_or_else(|e| panic!("{:?} v{version}: {e}", api.key));
            }
        }
        let acks0 = RequestKind::Produce(Default::default());
        assert_eq!(error_response(&acks0, 9, &refusal()), Ok(None));
        for api in SERVED {
            // Hooks see every served API by name.
            let hook_api = rafka_hooks::Api::from_key(api.key as i16);
            assert!(
                !matches!(hook_api, rafka_hooks::Api::Other(_)),
                "{:?}",
                api.key
            );
            assert_eq!(hook_api.name(), format!("{:?}", api.key));
        }
        for key in WITH_ERROR_PIECES {
            assert!(
                SERVED.iter().any(|a| a.key == *key),
                "{key:?} listed but not served"
            );
        }
    }

    /// A context for `api` from a plaintext client (User:ANONYMOUS).
    fn context(api: kafka_protocol::messages::ApiKey) -> RequestContext {
        let addr: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        RequestContext {
            api: rafka_hooks::Api::from_key(api as i16),
            api_version: 0,
            correlation_id: 1,
            client_id: String::new(),
            peer: addr,
            received: rafka_core::Timestamp::now(),
            session: Arc::new(rafka_hooks::Session::plaintext(addr, addr)),
        }
    }

    #[test]
    fn every_served_api_has_an_authorization_rule() {
        // A super user may do everything, so only the fallback for an API without a rule
        // (CLUSTER_AUTHORIZATION_FAILED) can refuse here: adding an API to the served list
        // without a rule in `authorize::check` fails this test.
        let shared = Shared::for_tests_with(Vec::new(), |c| {
            c.broker.authorizer_class_name = crate::acl_store::AUTHORIZER_CLASS_NAMES[0].into();
            c.broker.super_users = vec!["User:ANONYMOUS".into()];
        });
        let plain = Shared::for_tests_with(Vec::new(), |c| {
            c.broker.authorizer_class_name = crate::acl_store::AUTHORIZER_CLASS_NAMES[0].into();
        });
        for api in SERVED {
            let ctx = context(api.key);
            let a = authorize::Authz::new(&shared, &ctx);
            for version in api.served_min..=api.max {
                let req = default_request(api.key).unwrap();
                match authorize::check(&a, req, version) {
                    authorize::Checked::Run { refused, .. } => {
                        assert!(refused.is_empty(), "{:?} v{version}", api.key)
                    }
                    other => panic!("{:?} v{version}: {other:?}", api.key),
                }
            }
            // Without bindings, nothing is refused as "an API without a rule" either: the
            // refusal names the resource the API needs.
            let a = authorize::Authz::new(&plain, &ctx);
            let req = default_request(api.key).unwrap();
            let _ = authorize::check(&a, req, api.max);
        }
        // The fallback itself refuses.
        let ctx = context(kafka_protocol::messages::ApiKey::ExpireDelegationToken);
        let a = authorize::Authz::new(&shared, &ctx);
        let req = RequestKind::ExpireDelegationToken(Default::default());
        assert!(matches!(
            authorize::check(&a, req, 2),
            authorize::Checked::Refuse(_, r) if r.code.0 == 31
        ));
    }

    #[test]
    fn the_error_walk_finds_the_refusal_on_every_named_partition_and_group() {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        use kafka_protocol::messages::{DeleteGroupsRequest, GroupId, ProduceRequest};
        let produce = ProduceRequest::default()
            .with_acks(-1)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(wire_topic("t"))
                .with_partition_data(vec![
                    PartitionProduceData::default().with_index(0),
                    PartitionProduceData::default().with_index(3),
                ])]);
        let groups = DeleteGroupsRequest::default()
            .with_groups_names(vec![GroupId(sb("g1")), GroupId(sb("g2"))]);
        let check = |req: RequestKind, want: Vec<(Option<&str>, Option<i32>)>| {
            let resp = error_response(&req, 2, &refusal()).unwrap().unwrap();
            let mut seen = Vec::new();
            error_codes(&resp, &mut |e| {
                assert_eq!(e.code, 29);
                seen.push((e.name.map(str::to_string), e.partition));
            });
            let want: Vec<_> = want
                .into_iter()
                .map(|(n, p)| (n.map(str::to_string), p))
                .collect();
            assert_eq!(seen, want);
        };
        check(
            RequestKind::Produce(produce),
            vec![(Some("t"), Some(0)), (Some("t"), Some(3))],
        );
        check(
            RequestKind::DeleteGroups(groups),
            vec![(Some("g1"), None), (Some("g2"), None)],
        );
    }
}
