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
use rafka_hooks::RequestContext;
use rafka_protocol::connection::DecodedRequest;

use crate::broker::Shared;

mod admin;
mod api_versions;
mod configs;
mod fetch;
pub(crate) mod groups;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod produce;

/// A handler's answer.
// One Reply per request, consumed at once: boxing the common `Now` case buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum Reply {
    /// The response is ready.
    Now(ResponseKind),
    /// The response needs waiting for (fsync, long poll).
    Later(Pin<Box<dyn Future<Output = ResponseKind> + Send>>),
    /// No response at all (Produce with acks=0).
    Nothing,
}

/// Routes a request to its handler. Only APIs in `rafka_protocol::versions::SERVED` reach here.
/// `ctx` is what hooks see of the request (rafka-broker::hooks runs on_request and
/// on_response around this call).
pub fn dispatch(
    shared: &Arc<Shared>,
    req: DecodedRequest,
    peer: std::net::SocketAddr,
    ctx: &Arc<RequestContext>,
) -> Reply {
    let version = req.header.request_api_version;
    let client_id = req
        .header
        .client_id
        .as_deref()
        .unwrap_or_default()
        .to_string();
    match req.body {
        RequestKind::ApiVersions(_) => Reply::Now(api_versions::handle()),
        RequestKind::Metadata(r) => Reply::Now(metadata::handle(shared, r, version, ctx)),
        RequestKind::Produce(r) => produce::handle(shared, r, version, ctx),
        RequestKind::Fetch(r) => fetch::handle(shared, r, version, ctx),
        RequestKind::ListOffsets(r) => Reply::Now(list_offsets::handle(shared, r, version)),
        RequestKind::OffsetForLeaderEpoch(r) => {
            Reply::Now(list_offsets::offset_for_leader_epoch(shared, r))
        }
        RequestKind::CreateTopics(r) => Reply::Now(admin::create_topics(shared, r, version, ctx)),
        RequestKind::DeleteTopics(r) => Reply::Now(admin::delete_topics(shared, r, version, ctx)),
        RequestKind::CreatePartitions(r) => Reply::Now(admin::create_partitions(shared, r, ctx)),
        RequestKind::DescribeTopicPartitions(r) => {
            Reply::Now(metadata::describe_topic_partitions(shared, r))
        }
        RequestKind::DeleteRecords(r) => Reply::Now(admin::delete_records(shared, r)),
        RequestKind::DescribeCluster(r) => Reply::Now(metadata::describe_cluster(shared, r)),
        RequestKind::DescribeLogDirs(r) => Reply::Now(admin::describe_log_dirs(shared, r)),
        RequestKind::DescribeConfigs(r) => Reply::Now(configs::describe(shared, r, version)),
        RequestKind::AlterConfigs(r) => Reply::Now(configs::alter(shared, r, ctx)),
        RequestKind::IncrementalAlterConfigs(r) => {
            Reply::Now(configs::incremental_alter(shared, r, ctx))
        }
        RequestKind::InitProducerId(r) => Reply::Now(init_producer_id::handle(shared, r)),
        RequestKind::FindCoordinator(r) => Reply::Now(groups::find_coordinator(shared, r, version)),
        RequestKind::JoinGroup(r) => groups::join_group(shared, r, version, &client_id, peer),
        RequestKind::SyncGroup(r) => groups::sync_group(shared, r, version),
        RequestKind::Heartbeat(r) => Reply::Now(groups::heartbeat(shared, r)),
        RequestKind::LeaveGroup(r) => Reply::Now(groups::leave_group(shared, r, version)),
        RequestKind::OffsetCommit(r) => groups::offset_commit(shared, r, version),
        RequestKind::OffsetFetch(r) => Reply::Now(groups::offset_fetch(shared, r, version)),
        RequestKind::DescribeGroups(r) => Reply::Now(groups::describe_groups(shared, r, version)),
        RequestKind::ListGroups(r) => Reply::Now(groups::list_groups(shared, r, version)),
        RequestKind::DeleteGroups(r) => Reply::Now(groups::delete_groups(shared, r)),
        RequestKind::OffsetDelete(r) => Reply::Now(groups::offset_delete(shared, r)),
        RequestKind::ConsumerGroupHeartbeat(r) => Reply::Now(groups::consumer_group_heartbeat(
            shared, r, version, &client_id, peer,
        )),
        RequestKind::ConsumerGroupDescribe(r) => {
            Reply::Now(groups::consumer_group_describe(shared, r))
        }
        other => {
            // The served table and this match are kept in step by the version-sweep test;
            // reaching here is a broker bug, answered by closing the connection.
            tracing::error!(request = ?std::mem::discriminant(&other), "no handler for a served API");
            Reply::Nothing
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
    }
}

/// The code of an optional error (0 for none).
pub(crate) fn code(e: Option<ResponseError>) -> i16 {
    e.map_or(0, |e| e.code())
}
