//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions, DeleteRecords,
//! DescribeLogDirs.
//!
//! The first three count the partitions they create, add or delete against the client's
//! `controller_mutation_rate` (KIP-599, [`MutationQuota`]). From CreateTopics v6,
//! CreatePartitions v3 and DeleteTopics v5 the quota is strict: once it is exhausted, each
//! further topic of the request that would be mutated (and is otherwise valid) is answered
//! THROTTLING_QUOTA_EXCEEDED, while a topic taking it from within to beyond the quota is
//! still mutated (Kafka's rule: never refused for its own size). Older versions mutate
//! everything and are throttled afterwards. Either way `throttle_time_ms` says how long
//! until the quota is back, and the connection is muted that long (`throttle.rs`). As in
//! KRaft, a `validate_only` request counts too.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteRecordsRequest, DeleteRecordsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeLogDirsRequest, DescribeLogDirsResponse, ResponseKind,
};
use kafka_protocol::ResponseError;

use rafka_core::{Offset, TopicName};
use rafka_hooks::{AdminOp, RequestContext, Verdict};

use super::{sb, storage_error_code, wire_topic, Reply};
use crate::quota_manager::MutationQuota;
use crate::shared::Shared;
use crate::state::{is_internal, TopicError};
use crate::topic_config;

/// Kafka's config source code for a topic override.
pub(crate) const SOURCE_TOPIC: i8 = 1;
/// Kafka's config source code for a default.
pub(crate) const SOURCE_DEFAULT: i8 = 5;

/// The request's `controller_mutation_rate`, strict from `strict_since`.
fn mutation_quota<'a>(
    shared: &'a Shared,
    ctx: &RequestContext,
    version: i16,
    strict_since: i16,
) -> Option<MutationQuota<'a>> {
    shared.quotas.mutation_quota(
        &ctx.session.principal.name,
        &ctx.client_id,
        version >= strict_since,
    )
}

/// `Err` (the throttle time) when `quota` is strict and exhausted.
fn exhausted(quota: &mut Option<MutationQuota<'_>>) -> Option<std::time::Duration> {
    quota.as_mut().and_then(|q| q.check().err())
}

fn throttled_message(time: std::time::Duration) -> String {
    format!(
        "The throttling quota has been exceeded: controller_mutation_rate, retry after {} ms.",
        time.as_millis()
    )
}

fn throttle_ms(quota: &Option<MutationQuota<'_>>) -> i32 {
    quota.as_ref().map_or(0, |q| {
        q.throttle_time().as_millis().min(i32::MAX as u128) as i32
    })
}

fn topic_error(e: &TopicError) -> ResponseError {
    match e {
        TopicError::AlreadyExists(_) => ResponseError::TopicAlreadyExists,
        TopicError::Unknown(_) => ResponseError::UnknownTopicOrPartition,
        TopicError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        TopicError::InvalidConfig(_) => ResponseError::InvalidConfig,
        TopicError::Storage(s) => storage_error_code(s),
    }
}

/// CreateTopics v2–7.
pub fn create_topics(
    shared: &Arc<Shared>,
    req: CreateTopicsRequest,
    version: i16,
    ctx: &RequestContext,
) -> ResponseKind {
    let mut quota = mutation_quota(shared, ctx, version, 6);
    let mut results = Vec::new();
    for t in req.topics {
        let result = CreatableTopicResult::default()
            .with_name(t.name.clone())
            .with_num_partitions(-1)
            .with_replication_factor(-1);
        let fail = |e: ResponseError, msg: String| {
            result
                .clone()
                .with_error_code(e.code())
                .with_error_message(Some(sb(msg)))
        };
        let name = match TopicName::new(&t.name) {
            Ok(n) => n,
            Err(e) => {
                results.push(fail(ResponseError::InvalidTopicException, e.to_string()));
                continue;
            }
        };
        if t.replication_factor != -1 && t.replication_factor != 1 {
            results.push(fail(
                ResponseError::InvalidReplicationFactor,
                format!(
                    "Replication factor {} is larger than the 1 available broker",
                    t.replication_factor
                ),
            ));
            continue;
        }
        let mut partitions = t.num_partitions;
        if !t.assignments.is_empty() {
            if t.num_partitions != -1 || t.replication_factor != -1 {
                results.push(fail(
                    ResponseError::InvalidRequest,
                    "Both numPartitions or replicationFactor and replicasAssignments were set"
                        .into(),
                ));
                continue;
            }
            if t.assignments.iter().any(|a| {
                a.broker_ids.iter().any(|b| b.0 != shared.node_id) || a.broker_ids.len() != 1
            }) {
                results.push(fail(
                    ResponseError::InvalidReplicaAssignment,
                    format!("Every replica must be broker {}", shared.node_id),
                ));
                continue;
            }
            partitions = t.assignments.len() as i32;
        }
        if partitions == -1 {
            partitions = shared.config.broker.num_partitions;
        }
        let mut configs = BTreeMap::new();
        for c in &t.configs {
            if let Some(v) = &c.value {
                configs.insert(c.name.to_string(), v.to_string());
            }
        }
        let op = AdminOp::CreateTopic {
            topic: name.as_str(),
            partitions,
            configs: &configs,
            validate_only: req.validate_only,
        };
        if let Verdict::Reject(r) = shared.hooks.on_admin(ctx, &op) {
            results.push(
                result
                    .with_error_code(r.code.0)
                    .with_error_message(Some(sb(r.message))),
            );
            continue;
        }
        if let Some(time) = exhausted(&mut quota) {
            // Refused for the quota only when nothing else refuses it (KRaft checks the
            // quota last).
            results.push(
                match shared
                    .cluster
                    .create_topic(&name, partitions, configs.clone(), true)
                {
                    Ok(_) => fail(
                        ResponseError::ThrottlingQuotaExceeded,
                        throttled_message(time),
                    ),
                    Err(e) => fail(topic_error(&e), e.to_string()),
                },
            );
            continue;
        }
        match shared
            .cluster
            .create_topic(&name, partitions, configs.clone(), req.validate_only)
        {
            Ok(topic) => {
                if let Some(q) = &mut quota {
                    q.record(partitions.max(0) as usize);
                }
                let mut r = result
                    .with_topic_id(topic.id)
                    .with_num_partitions(partitions)
                    .with_replication_factor(1);
                if version >= 5 {
                    r.configs = Some(
                        topic_config::TOPIC_CONFIG_KEYS
                            .iter()
                            .map(|k| {
                                let (value, source) = match configs.get(k.name) {
                                    Some(v) => (v.clone(), SOURCE_TOPIC),
                                    None => {
                                        (shared.cluster.default_topic_value(k.name), SOURCE_DEFAULT)
                                    }
                                };
                                CreatableTopicConfigs::default()
                                    .with_name(sb(k.name))
                                    .with_value(Some(sb(value)))
                                    .with_config_source(source)
                            })
                            .collect(),
                    );
                }
                results.push(r);
            }
            Err(e) => results.push(fail(topic_error(&e), e.to_string())),
        }
    }
    ResponseKind::CreateTopics(
        CreateTopicsResponse::default()
            .with_topics(results)
            .with_throttle_time_ms(throttle_ms(&quota)),
    )
}

/// DeleteTopics v1–6 (by name, or by topic id from v6).
pub fn delete_topics(
    shared: &Arc<Shared>,
    req: DeleteTopicsRequest,
    version: i16,
    ctx: &RequestContext,
) -> ResponseKind {
    let mut quota = mutation_quota(shared, ctx, version, 5);
    let targets: Vec<(Option<String>, uuid::Uuid)> = if version >= 6 {
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.to_string()), uuid::Uuid::nil()))
            .collect()
    };
    let responses = targets
        .into_iter()
        .map(|(name, id)| {
            let topic = match &name {
                Some(n) => shared.cluster.topic(n),
                None => shared.cluster.topic_by_id(id),
            };
            let r = DeletableTopicResult::default()
                .with_name(name.as_deref().map(wire_topic))
                .with_topic_id(id);
            let Some(topic) = topic else {
                let e = if name.is_some() {
                    ResponseError::UnknownTopicOrPartition
                } else {
                    ResponseError::UnknownTopicId
                };
                return r.with_error_code(e.code());
            };
            let r = r
                .with_name(Some(wire_topic(topic.name.as_str())))
                .with_topic_id(topic.id);
            if is_internal(topic.name.as_str()) {
                return r
                    .with_error_code(ResponseError::InvalidTopicException.code())
                    .with_error_message(Some(sb("Internal topics cannot be deleted")));
            }
            let op = AdminOp::DeleteTopic {
                topic: topic.name.as_str(),
            };
            if let Verdict::Reject(rej) = shared.hooks.on_admin(ctx, &op) {
                return r
                    .with_error_code(rej.code.0)
                    .with_error_message(Some(sb(rej.message)));
            }
            if let Some(time) = exhausted(&mut quota) {
                return r
                    .with_error_code(ResponseError::ThrottlingQuotaExceeded.code())
                    .with_error_message(Some(sb(throttled_message(time))));
            }
            match shared.cluster.delete_topic(&topic.name) {
                Ok(deleted) => {
                    if let Some(q) = &mut quota {
                        q.record(deleted.partitions.len());
                    }
                    r
                }
                Err(e) => r
                    .with_error_code(topic_error(&e).code())
                    .with_error_message(Some(sb(e.to_string()))),
            }
        })
        .collect();
    ResponseKind::DeleteTopics(
        DeleteTopicsResponse::default()
            .with_responses(responses)
            .with_throttle_time_ms(throttle_ms(&quota)),
    )
}

/// CreatePartitions v0–3.
pub fn create_partitions(
    shared: &Arc<Shared>,
    req: CreatePartitionsRequest,
    version: i16,
    ctx: &RequestContext,
) -> ResponseKind {
    let mut quota = mutation_quota(shared, ctx, version, 3);
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            let r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            let op = AdminOp::CreatePartitions {
                topic: t.name.as_str(),
                total: t.count,
                validate_only: req.validate_only,
            };
            if let Verdict::Reject(rej) = shared.hooks.on_admin(ctx, &op) {
                return r
                    .with_error_code(rej.code.0)
                    .with_error_message(Some(sb(rej.message)));
            }
            let name = TopicName::new(&t.name).map_err(|_| TopicError::Unknown(t.name.to_string()));
            if let Some(time) = exhausted(&mut quota) {
                let checked =
                    name.and_then(|name| shared.cluster.create_partitions(&name, t.count, true));
                return match checked {
                    Ok(_) => r
                        .with_error_code(ResponseError::ThrottlingQuotaExceeded.code())
                        .with_error_message(Some(sb(throttled_message(time)))),
                    Err(e) => r
                        .with_error_code(topic_error(&e).code())
                        .with_error_message(Some(sb(e.to_string()))),
                };
            }
            let outcome = name.and_then(|name| {
                shared
                    .cluster
                    .create_partitions(&name, t.count, req.validate_only)
            });
            match outcome {
                Ok(added) => {
                    if let Some(q) = &mut quota {
                        q.record(added);
                    }
                    r
                }
                Err(e) => r
                    .with_error_code(topic_error(&e).code())
                    .with_error_message(Some(sb(e.to_string()))),
            }
        })
        .collect();
    ResponseKind::CreatePartitions(
        CreatePartitionsResponse::default()
            .with_results(results)
            .with_throttle_time_ms(throttle_ms(&quota)),
    )
}

/// DeleteRecords v0–2: moves the log start offset (-1 means the high watermark).
fn delete_records(shared: &Arc<Shared>, req: DeleteRecordsRequest) -> ResponseKind {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = shared.cluster.topic(&t.name);
            let partitions = t
                .partitions
                .iter()
                .map(|dp| {
                    let r = DeleteRecordsPartitionResult::default()
                        .with_partition_index(dp.partition_index)
                        .with_low_watermark(-1);
                    let Some(p) = topic.as_ref().and_then(|t| t.partition(dp.partition_index))
                    else {
                        return r.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    // -1: up to the high watermark, as in Kafka.
                    let before = (dp.offset != -1).then_some(Offset(dp.offset));
                    match p.delete_records(before) {
                        Ok(start) => r.with_low_watermark(start.0),
                        Err(e) => r.with_error_code(storage_error_code(&e).code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ResponseKind::DeleteRecords(DeleteRecordsResponse::default().with_topics(topics))
}

/// DeleteRecords; in diskless mode the log start offsets are PostgreSQL's, moved by
/// whichever broker is asked (the partition's row lock orders concurrent moves).
pub fn delete_records_any(shared: &Arc<Shared>, req: DeleteRecordsRequest) -> Reply {
    let Some(d) = shared.diskless.clone() else {
        return Reply::Now(delete_records(shared, req));
    };
    Reply::Later(Box::pin(async move {
        use crate::diskless::sweeper::Cutting;
        let mut topics = Vec::with_capacity(req.topics.len());
        for t in req.topics {
            let topic = d.catalog.topic(&d.pg, &t.name).await.ok().flatten();
            let mut partitions = Vec::with_capacity(t.partitions.len());
            for dp in &t.partitions {
                let r = DeleteRecordsPartitionResult::default()
                    .with_partition_index(dp.partition_index)
                    .with_low_watermark(-1);
                let tp = match &topic {
                    Some(topic) if (0..topic.partitions).contains(&dp.partition_index) => {
                        (topic.id, dp.partition_index)
                    }
                    _ => {
                        partitions
                            .push(r.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                        continue;
                    }
                };
                let r = match crate::diskless::sweeper::delete_records(&d, tp, dp.offset).await {
                    Ok(Cutting::Moved { log_start, .. }) => r.with_low_watermark(log_start),
                    Ok(Cutting::OutOfRange) => {
                        r.with_error_code(ResponseError::OffsetOutOfRange.code())
                    }
                    Ok(Cutting::NoPartition) => {
                        r.with_error_code(ResponseError::UnknownTopicOrPartition.code())
                    }
                    Err(e) => {
                        tracing::warn!(topic = %t.name.as_str(), partition = dp.partition_index, error = %e, "records not deleted");
                        r.with_error_code(ResponseError::KafkaStorageError.code())
                    }
                };
                partitions.push(r);
            }
            topics.push(
                DeleteRecordsTopicResult::default()
                    .with_name(t.name)
                    .with_partitions(partitions),
            );
        }
        ResponseKind::DeleteRecords(DeleteRecordsResponse::default().with_topics(topics))
    }))
}

/// DescribeLogDirs v1–4: one log directory holding every partition.
pub fn describe_log_dirs(shared: &Arc<Shared>, req: DescribeLogDirsRequest) -> ResponseKind {
    let wanted: Option<BTreeMap<String, Vec<i32>>> = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.topic.to_string(), t.partitions))
            .collect()
    });
    let mut topics = Vec::new();
    for t in shared.cluster.topics() {
        let filter = match &wanted {
            Some(w) => match w.get(t.name.as_str()) {
                Some(ps) => Some(ps),
                None => continue,
            },
            None => None,
        };
        let partitions = t
            .partitions
            .iter()
            .filter(|p| filter.is_none_or(|f| f.contains(&p.tp.partition.0)))
            .map(|p| {
                DescribeLogDirsPartition::default()
                    .with_partition_index(p.tp.partition.0)
                    .with_partition_size(p.size_bytes() as i64)
            })
            .collect();
        topics.push(
            DescribeLogDirsTopic::default()
                .with_name(wire_topic(t.name.as_str()))
                .with_partitions(partitions),
        );
    }
    let dir = shared.config.storage.path.display().to_string();
    ResponseKind::DescribeLogDirs(DescribeLogDirsResponse::default().with_results(
        vec![DescribeLogDirsResult::default()
            .with_log_dir(sb(dir))
            .with_topics(topics)
            .with_total_bytes(-1)
            .with_usable_bytes(-1)],
    ))
}

impl super::RefusableRequest for CreateTopicsRequest {
    type Response = CreateTopicsResponse;

    fn error_response(&self, _version: i16, refusal: &rafka_hooks::Rejection) -> Self::Response {
        CreateTopicsResponse::default().with_topics(
            self.topics
                .iter()
                .map(|t| {
                    CreatableTopicResult::default()
                        .with_name(t.name.clone())
                        .with_num_partitions(-1)
                        .with_replication_factor(-1)
                        .with_error_code(refusal.code.0)
                        .with_error_message(Some(sb(refusal.message.clone())))
                })
                .collect(),
        )
    }
}

impl super::ErrorCodes for CreateTopicsResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(super::ErrorItem<'a>)) {
        for t in &self.topics {
            f(super::ErrorItem::named(&t.name, t.error_code));
        }
    }
}

impl super::RefusableRequest for DeleteTopicsRequest {
    type Response = DeleteTopicsResponse;

    fn error_response(&self, _version: i16, refusal: &rafka_hooks::Rejection) -> Self::Response {
        let result = || {
            DeletableTopicResult::default()
                .with_error_code(refusal.code.0)
                .with_error_message(Some(sb(refusal.message.clone())))
        };
        let by_name = self
            .topic_names
            .iter()
            .map(|n| result().with_name(Some(n.clone())));
        let by_state = self
            .topics
            .iter()
            .map(|t| result().with_name(t.name.clone()).with_topic_id(t.topic_id));
        DeleteTopicsResponse::default().with_responses(by_name.chain(by_state).collect())
    }
}

impl super::ErrorCodes for DeleteTopicsResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(super::ErrorItem<'a>)) {
        for t in &self.responses {
            let name = t.name.as_deref().map_or("", |n| n);
            f(super::ErrorItem::named(name, t.error_code));
        }
    }
}

impl super::RefusableRequest for CreatePartitionsRequest {
    type Response = CreatePartitionsResponse;

    fn error_response(&self, _version: i16, refusal: &rafka_hooks::Rejection) -> Self::Response {
        CreatePartitionsResponse::default().with_results(
            self.topics
                .iter()
                .map(|t| {
                    CreatePartitionsTopicResult::default()
                        .with_name(t.name.clone())
                        .with_error_code(refusal.code.0)
                        .with_error_message(Some(sb(refusal.message.clone())))
                })
                .collect(),
        )
    }
}

impl super::ErrorCodes for CreatePartitionsResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(super::ErrorItem<'a>)) {
        for t in &self.results {
            f(super::ErrorItem::named(&t.name, t.error_code));
        }
    }
}

impl super::RefusableRequest for DeleteRecordsRequest {
    type Response = DeleteRecordsResponse;

    fn error_response(&self, _version: i16, refusal: &rafka_hooks::Rejection) -> Self::Response {
        DeleteRecordsResponse::default().with_topics(
            self.topics
                .iter()
                .map(|t| {
                    DeleteRecordsTopicResult::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    DeleteRecordsPartitionResult::default()
                                        .with_partition_index(p.partition_index)
                                        .with_low_watermark(-1)
                                        .with_error_code(refusal.code.0)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
    }
}

impl super::ErrorCodes for DeleteRecordsResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(super::ErrorItem<'a>)) {
        for t in &self.topics {
            for p in &t.partitions {
                f(super::ErrorItem::partition(
                    &t.name,
                    p.partition_index,
                    p.error_code,
                ));
            }
        }
    }
}

impl super::RefusableRequest for DescribeLogDirsRequest {
    type Response = DescribeLogDirsResponse;

    fn error_response(&self, _version: i16, refusal: &rafka_hooks::Rejection) -> Self::Response {
        DescribeLogDirsResponse::default().with_error_code(refusal.code.0)
    }
}

impl super::ErrorCodes for DescribeLogDirsResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(super::ErrorItem<'a>)) {
        f(super::ErrorItem::top(self.error_code));
        for r in &self.results {
            f(super::ErrorItem::named(&r.log_dir, r.error_code));
        }
    }
}

/// Diskless mode: topics live in PostgreSQL (`diskless::catalog`), so any broker creates,
/// deletes and grows them; the others see the change at their next catalog refresh (or at
/// once, on a lookup that misses).
pub mod diskless {
    use super::*;

    use crate::acl::{Operation, ResourceType};
    use crate::api::authorize::Authz;
    use crate::diskless::catalog::{AddPartitionsError, CreateTopicError};
    use crate::diskless::Diskless;

    /// Why a config cannot be set on a diskless topic (beyond `topic_config::validate`).
    pub(crate) fn refused_config(name: &str, value: &str) -> Option<String> {
        (name == "cleanup.policy" && value.split(',').any(|p| p.trim() == "compact")).then(|| {
            "cleanup.policy=compact: compaction is not available on diskless topics yet".to_string()
        })
    }

    /// CreateTopics v2–7 in diskless mode.
    pub fn create_topics(
        shared: &Arc<Shared>,
        d: &Arc<Diskless>,
        req: CreateTopicsRequest,
        version: i16,
        ctx: &Arc<RequestContext>,
    ) -> super::super::Reply {
        let (shared, d, ctx) = (shared.clone(), d.clone(), ctx.clone());
        super::super::Reply::Later(Box::pin(async move {
            let mut quota = mutation_quota(&shared, &ctx, version, 6);
            let mut results = Vec::with_capacity(req.topics.len());
            for t in &req.topics {
                results.push(
                    create_one(&shared, &d, t, req.validate_only, version, &ctx, &mut quota).await,
                );
            }
            ResponseKind::CreateTopics(
                CreateTopicsResponse::default()
                    .with_topics(results)
                    .with_throttle_time_ms(throttle_ms(&quota)),
            )
        }))
    }

    async fn create_one(
        shared: &Shared,
        d: &Diskless,
        t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
        validate_only: bool,
        version: i16,
        ctx: &RequestContext,
        quota: &mut Option<MutationQuota<'_>>,
    ) -> CreatableTopicResult {
        let result = CreatableTopicResult::default()
            .with_name(t.name.clone())
            .with_num_partitions(-1)
            .with_replication_factor(-1);
        let fail = |e: ResponseError, msg: String| {
            result
                .clone()
                .with_error_code(e.code())
                .with_error_message(Some(sb(msg)))
        };
        let name = match TopicName::new(&t.name) {
            Ok(n) => n,
            Err(e) => return fail(ResponseError::InvalidTopicException, e.to_string()),
        };
        if is_internal(name.as_str()) {
            return fail(
                ResponseError::InvalidTopicException,
                format!("{name} is an internal topic name"),
            );
        }
        // Every broker serves every partition from object storage: a replication factor
        // up to the live brokers is met by the store's own durability.
        let live = d.membership.live_ids().len().max(1) as i16;
        if t.replication_factor != -1 && !(1..=live).contains(&t.replication_factor) {
            return fail(
                ResponseError::InvalidReplicationFactor,
                format!(
                    "Replication factor {} is larger than the {live} live brokers",
                    t.replication_factor
                ),
            );
        }
        if !t.assignments.is_empty() {
            return fail(
                ResponseError::InvalidReplicaAssignment,
                "Replica assignments do not apply to diskless topics (any broker serves any \
                 partition)"
                    .into(),
            );
        }
        let partitions = match t.num_partitions {
            -1 => shared.config.broker.num_partitions,
            n => n,
        };
        if !(1..=rafka_core::limits::PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
            return fail(
                ResponseError::InvalidPartitions,
                format!(
                    "Number of partitions must be in [1, {}], got {partitions}",
                    rafka_core::limits::PARTITIONS_PER_TOPIC_MAX
                ),
            );
        }
        let mut configs = BTreeMap::new();
        for c in &t.configs {
            if let Some(v) = &c.value {
                if let Err(e) = topic_config::validate(&c.name, v) {
                    return fail(ResponseError::InvalidConfig, e.0);
                }
                if let Some(msg) = refused_config(&c.name, v) {
                    return fail(ResponseError::InvalidConfig, msg);
                }
                configs.insert(c.name.to_string(), v.to_string());
            }
        }
        let op = AdminOp::CreateTopic {
            topic: name.as_str(),
            partitions,
            configs: &configs,
            validate_only,
        };
        if let Verdict::Reject(r) = shared.hooks.on_admin(ctx, &op) {
            return result
                .with_error_code(r.code.0)
                .with_error_message(Some(sb(r.message)));
        }
        // The quota last, as KRaft checks it (an existing topic is reported as such).
        if let Some(time) = exhausted(quota) {
            return match d.catalog.topic(&d.pg, name.as_str()).await {
                Ok(Some(_)) => fail(
                    ResponseError::TopicAlreadyExists,
                    format!("Topic '{name}' already exists."),
                ),
                _ => fail(
                    ResponseError::ThrottlingQuotaExceeded,
                    throttled_message(time),
                ),
            };
        }
        let created = if validate_only {
            match d.catalog.topic(&d.pg, name.as_str()).await {
                Ok(Some(_)) => Err(CreateTopicError::Exists(name.to_string())),
                Ok(None) => Ok(uuid::Uuid::nil()),
                Err(e) => Err(CreateTopicError::Coordinator(e)),
            }
        } else {
            d.catalog
                .create(&d.pg, name.as_str(), partitions, &configs)
                .await
                .map(|t| t.id)
        };
        let id = match created {
            Ok(id) => id,
            Err(CreateTopicError::Exists(_)) => {
                return fail(
                    ResponseError::TopicAlreadyExists,
                    format!("Topic '{name}' already exists."),
                )
            }
            Err(CreateTopicError::Coordinator(e)) => {
                tracing::warn!(topic = %name, error = %e, "diskless topic creation failed");
                return fail(ResponseError::RequestTimedOut, e.to_string());
            }
        };
        if !validate_only {
            tracing::info!(topic = %name, partitions, "created diskless topic");
            if let Some(q) = quota {
                q.record(partitions.max(0) as usize);
            }
        }
        let mut r = result
            .with_topic_id(id)
            .with_num_partitions(partitions)
            .with_replication_factor(1);
        if version >= 5 {
            r.configs = Some(
                topic_config::TOPIC_CONFIG_KEYS
                    .iter()
                    .map(|k| {
                        let (value, source) = match configs.get(k.name) {
                            Some(v) => (v.clone(), SOURCE_TOPIC),
                            None => (shared.cluster.default_topic_value(k.name), SOURCE_DEFAULT),
                        };
                        CreatableTopicConfigs::default()
                            .with_name(sb(k.name))
                            .with_value(Some(sb(value)))
                            .with_config_source(source)
                    })
                    .collect(),
            );
        }
        r
    }

    /// DeleteTopics v1–6 in diskless mode: the topic row goes, its partitions, batch index
    /// rows and producers with it; objects left without batches go to the sweeper.
    pub fn delete_topics(
        shared: &Arc<Shared>,
        d: &Arc<Diskless>,
        req: DeleteTopicsRequest,
        version: i16,
        ctx: &Arc<RequestContext>,
    ) -> super::super::Reply {
        let (shared, d, ctx) = (shared.clone(), d.clone(), ctx.clone());
        super::super::Reply::Later(Box::pin(async move {
            let targets: Vec<(Option<String>, uuid::Uuid)> = if version >= 6 {
                req.topics
                    .iter()
                    .map(|t| (t.name.as_ref().map(|n| n.to_string()), t.topic_id))
                    .collect()
            } else {
                req.topic_names
                    .iter()
                    .map(|n| (Some(n.to_string()), uuid::Uuid::nil()))
                    .collect()
            };
            let mut quota = mutation_quota(&shared, &ctx, version, 5);
            let mut responses = Vec::with_capacity(targets.len());
            for (name, id) in targets {
                let found = match &name {
                    Some(n) => d.catalog.topic(&d.pg, n).await,
                    None => d.catalog.topic_by_id(&d.pg, id).await,
                };
                let r = DeletableTopicResult::default()
                    .with_name(name.as_deref().map(wire_topic))
                    .with_topic_id(id);
                let topic = match found {
                    Ok(Some(t)) => t,
                    Ok(None) => {
                        let e = if name.is_some() {
                            ResponseError::UnknownTopicOrPartition
                        } else {
                            ResponseError::UnknownTopicId
                        };
                        responses.push(r.with_error_code(e.code()));
                        continue;
                    }
                    Err(e) => {
                        responses.push(
                            r.with_error_code(ResponseError::RequestTimedOut.code())
                                .with_error_message(Some(sb(e.to_string()))),
                        );
                        continue;
                    }
                };
                // A topic named only by id is authorized here, by the name the catalog
                // gives it: the router knows this broker's own topics' ids only.
                if name.is_none()
                    && !Authz::new(&shared, &ctx).allows(
                        Operation::Delete,
                        ResourceType::Topic,
                        &topic.name,
                    )
                {
                    responses
                        .push(r.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
                    continue;
                }
                let r = r
                    .with_name(Some(wire_topic(&topic.name)))
                    .with_topic_id(topic.id);
                let op = AdminOp::DeleteTopic { topic: &topic.name };
                if let Verdict::Reject(rej) = shared.hooks.on_admin(&ctx, &op) {
                    responses.push(
                        r.with_error_code(rej.code.0)
                            .with_error_message(Some(sb(rej.message))),
                    );
                    continue;
                }
                if let Some(time) = exhausted(&mut quota) {
                    responses.push(
                        r.with_error_code(ResponseError::ThrottlingQuotaExceeded.code())
                            .with_error_message(Some(sb(throttled_message(time)))),
                    );
                    continue;
                }
                responses.push(match d.catalog.delete(d.coordinator(), &topic.name).await {
                    Ok(Some(_)) => {
                        if let Some(q) = &mut quota {
                            q.record(topic.partitions.max(0) as usize);
                        }
                        r
                    }
                    Ok(None) => r.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                    Err(e) => r
                        .with_error_code(ResponseError::RequestTimedOut.code())
                        .with_error_message(Some(sb(e.to_string()))),
                });
            }
            ResponseKind::DeleteTopics(
                DeleteTopicsResponse::default()
                    .with_responses(responses)
                    .with_throttle_time_ms(throttle_ms(&quota)),
            )
        }))
    }

    /// CreatePartitions v0–3 in diskless mode.
    pub fn create_partitions(
        shared: &Arc<Shared>,
        d: &Arc<Diskless>,
        req: CreatePartitionsRequest,
        version: i16,
        ctx: &Arc<RequestContext>,
    ) -> super::super::Reply {
        let (shared, d, ctx) = (shared.clone(), d.clone(), ctx.clone());
        super::super::Reply::Later(Box::pin(async move {
            let mut quota = mutation_quota(&shared, &ctx, version, 3);
            let mut results = Vec::with_capacity(req.topics.len());
            for t in &req.topics {
                let r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
                let op = AdminOp::CreatePartitions {
                    topic: t.name.as_str(),
                    total: t.count,
                    validate_only: req.validate_only,
                };
                if let Verdict::Reject(rej) = shared.hooks.on_admin(&ctx, &op) {
                    results.push(
                        r.with_error_code(rej.code.0)
                            .with_error_message(Some(sb(rej.message))),
                    );
                    continue;
                }
                let before = match d.catalog.topic(&d.pg, &t.name).await {
                    Ok(Some(topic)) => topic.partitions,
                    _ => 0,
                };
                if let Some(time) = exhausted(&mut quota) {
                    results.push(
                        r.with_error_code(ResponseError::ThrottlingQuotaExceeded.code())
                            .with_error_message(Some(sb(throttled_message(time)))),
                    );
                    continue;
                }
                let outcome = d
                    .catalog
                    .add_partitions(d.coordinator(), &t.name, t.count, req.validate_only)
                    .await;
                let e = match &outcome {
                    Ok(()) => {
                        if let (Some(q), false) = (&mut quota, req.validate_only) {
                            q.record((t.count - before).max(0) as usize);
                        }
                        results.push(r);
                        continue;
                    }
                    Err(AddPartitionsError::Unknown(_)) => ResponseError::UnknownTopicOrPartition,
                    Err(AddPartitionsError::Invalid(_)) => ResponseError::InvalidPartitions,
                    Err(AddPartitionsError::Coordinator(_)) => ResponseError::RequestTimedOut,
                };
                let msg = outcome.err().map(|e| sb(e.to_string()));
                results.push(r.with_error_code(e.code()).with_error_message(msg));
            }
            ResponseKind::CreatePartitions(
                CreatePartitionsResponse::default()
                    .with_results(results)
                    .with_throttle_time_ms(throttle_ms(&quota)),
            )
        }))
    }
}
