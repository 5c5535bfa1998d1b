//! Metadata, DescribeTopicPartitions and DescribeCluster: who leads what (always this
//! broker), topic ids, and topic auto-creation.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_topic_partitions_response::{
    DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, DescribeTopicPartitionsRequest,
    DescribeTopicPartitionsResponse, MetadataRequest, MetadataResponse, ResponseKind,
};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use rafka_core::TopicName;
use rafka_hooks::{AdminOp, RequestContext, Verdict};

use super::{code, sb, wire_topic};
use crate::acl::ResourceType;
use crate::authz::{authorized_operations, OPERATIONS_OMITTED};
use crate::shared::Shared;
use crate::state::{is_internal, Topic, TopicError};

fn topic_entry(shared: &Shared, t: &Topic, with_ops: bool) -> MetadataResponseTopic {
    let node = BrokerId(shared.node_id);
    MetadataResponseTopic::default()
        .with_name(Some(wire_topic(t.name.as_str())))
        .with_topic_id(t.id)
        .with_is_internal(is_internal(t.name.as_str()))
        .with_topic_authorized_operations(authorized_operations(ResourceType::Topic, with_ops))
        .with_partitions(
            t.partitions
                .iter()
                .map(|p| {
                    MetadataResponsePartition::default()
                        .with_partition_index(p.tp.partition.0)
                        .with_leader_id(node)
                        .with_leader_epoch(p.leader_epoch())
                        .with_replica_nodes(vec![node])
                        .with_isr_nodes(vec![node])
                        // Kafka lists a replica whose log dir is offline here; its
                        // produce and fetch answer KAFKA_STORAGE_ERROR.
                        .with_offline_replicas(if p.is_offline() { vec![node] } else { vec![] })
                })
                .collect(),
        )
}

/// A topic entry with an error. Kafka reports the operations of topics asked for by name
/// even when they do not exist, but not of unknown topic ids.
fn error_entry(
    name: Option<&str>,
    id: Uuid,
    e: ResponseError,
    with_ops: bool,
) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name.map(wire_topic))
        .with_topic_id(id)
        .with_error_code(e.code())
        .with_topic_authorized_operations(authorized_operations(
            ResourceType::Topic,
            with_ops && name.is_some(),
        ))
}

/// Finds or (if allowed) auto-creates a topic for Metadata.
/// Auto-creation passes the `on_admin` hooks as a CreateTopics would.
fn lookup_or_create(
    shared: &Shared,
    ctx: &RequestContext,
    name: &str,
    allow_create: bool,
    with_ops: bool,
) -> MetadataResponseTopic {
    let topic_name = match TopicName::new(name) {
        Ok(n) => n,
        Err(_) => {
            return error_entry(
                Some(name),
                Uuid::nil(),
                ResponseError::InvalidTopicException,
                with_ops,
            )
        }
    };
    if let Some(t) = shared.cluster.topic(name) {
        return topic_entry(shared, &t, with_ops);
    }
    if !(allow_create && shared.config.broker.auto_create_topics_enable) {
        return error_entry(
            Some(name),
            Uuid::nil(),
            ResponseError::UnknownTopicOrPartition,
            with_ops,
        );
    }
    let partitions = shared.config.broker.num_partitions;
    let no_configs = BTreeMap::new();
    let op = AdminOp::CreateTopic {
        topic: name,
        partitions,
        configs: &no_configs,
        validate_only: false,
    };
    if let Verdict::Reject(r) = shared.hooks.on_admin(ctx, &op) {
        return error_entry(
            Some(name),
            Uuid::nil(),
            super::response_error(r.code),
            with_ops,
        );
    }
    match shared
        .cluster
        .create_topic(&topic_name, partitions, BTreeMap::new(), false)
    {
        Ok(t) => topic_entry(shared, &t, with_ops),
        // Another request created it meanwhile.
        Err(TopicError::AlreadyExists(_)) => match shared.cluster.topic(name) {
            Some(t) => topic_entry(shared, &t, with_ops),
            None => error_entry(
                Some(name),
                Uuid::nil(),
                ResponseError::LeaderNotAvailable,
                with_ops,
            ),
        },
        Err(e) => {
            tracing::warn!(topic = name, error = %e, "auto-creation failed");
            error_entry(
                Some(name),
                Uuid::nil(),
                ResponseError::KafkaStorageError,
                with_ops,
            )
        }
    }
}

/// Metadata v0–12.
pub fn handle(
    shared: &Arc<Shared>,
    req: MetadataRequest,
    version: i16,
    ctx: &RequestContext,
) -> ResponseKind {
    // Before v4 there is no flag and auto-creation is always requested.
    let allow_create = version < 4 || req.allow_auto_topic_creation;
    let with_ops = req.include_topic_authorized_operations;
    let topics = match req.topics {
        // v0 has no null: an empty list means all topics.
        None => shared
            .cluster
            .topics()
            .iter()
            .map(|t| topic_entry(shared, t, with_ops))
            .collect(),
        Some(list) if list.is_empty() && version == 0 => shared
            .cluster
            .topics()
            .iter()
            .map(|t| topic_entry(shared, t, with_ops))
            .collect(),
        Some(list) => list
            .iter()
            .map(|t| match &t.name {
                Some(name) => lookup_or_create(shared, ctx, name, allow_create, with_ops),
                None => match shared.cluster.topic_by_id(t.topic_id) {
                    Some(topic) => topic_entry(shared, &topic, with_ops),
                    None => error_entry(None, t.topic_id, ResponseError::UnknownTopicId, false),
                },
            })
            .collect(),
    };
    let (host, port) = shared.advertised_for(&ctx.session.listener);
    ResponseKind::Metadata(
        MetadataResponse::default()
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(BrokerId(shared.node_id))
                .with_host(sb(host))
                .with_port(port)])
            .with_cluster_id(Some(sb(shared.cluster.cluster_id())))
            .with_controller_id(BrokerId(shared.node_id))
            .with_cluster_authorized_operations(authorized_operations(
                ResourceType::Cluster,
                req.include_cluster_authorized_operations,
            ))
            .with_topics(topics),
    )
}

/// DescribeTopicPartitions v0 (KIP-966), with its cursor for paging.
pub fn describe_topic_partitions(
    shared: &Arc<Shared>,
    req: DescribeTopicPartitionsRequest,
) -> ResponseKind {
    let node = BrokerId(shared.node_id);
    let mut names: Vec<String> = if req.topics.is_empty() {
        shared
            .cluster
            .topics()
            .iter()
            .map(|t| t.name.to_string())
            .collect()
    } else {
        req.topics.iter().map(|t| t.name.to_string()).collect()
    };
    names.sort();
    let (start_topic, start_partition) = match &req.cursor {
        Some(c) => (Some(c.topic_name.to_string()), c.partition_index),
        None => (None, 0),
    };
    let mut budget = req.response_partition_limit.clamp(1, 2000) as usize;
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names {
        if let Some(start) = &start_topic {
            if &name < start {
                continue;
            }
        }
        let Some(t) = shared.cluster.topic(&name) else {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(wire_topic(&name)))
                    .with_error_code(code(Some(ResponseError::UnknownTopicOrPartition)))
                    .with_topic_authorized_operations(authorized_operations(
                        ResourceType::Topic,
                        true,
                    )),
            );
            continue;
        };
        let first = if start_topic.as_deref() == Some(name.as_str()) {
            start_partition.max(0) as usize
        } else {
            0
        };
        let mut partitions = Vec::new();
        for p in t.partitions.iter().skip(first) {
            if budget == 0 {
                next_cursor = Some(
                    kafka_protocol::messages::describe_topic_partitions_response::Cursor::default()
                        .with_topic_name(wire_topic(&name))
                        .with_partition_index(p.tp.partition.0),
                );
                break;
            }
            budget -= 1;
            partitions.push(
                DescribeTopicPartitionsResponsePartition::default()
                    .with_partition_index(p.tp.partition.0)
                    .with_leader_id(node)
                    .with_leader_epoch(p.leader_epoch())
                    .with_replica_nodes(vec![node])
                    .with_isr_nodes(vec![node])
                    .with_offline_replicas(if p.is_offline() { vec![node] } else { vec![] })
                    .with_eligible_leader_replicas(Some(vec![]))
                    .with_last_known_elr(Some(vec![])),
            );
        }
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(wire_topic(&name)))
                .with_topic_id(t.id)
                .with_partitions(partitions)
                // DescribeTopicPartitions has no "include" flag: Kafka always reports them.
                .with_topic_authorized_operations(authorized_operations(ResourceType::Topic, true)),
        );
        if next_cursor.is_some() {
            break;
        }
    }
    ResponseKind::DescribeTopicPartitions(
        DescribeTopicPartitionsResponse::default()
            .with_topics(topics)
            .with_next_cursor(next_cursor),
    )
}

/// DescribeCluster v0–1.
pub fn describe_cluster(
    shared: &Arc<Shared>,
    req: DescribeClusterRequest,
    listener: &str,
) -> ResponseKind {
    let (host, port) = shared.advertised_for(listener);
    ResponseKind::DescribeCluster(
        DescribeClusterResponse::default()
            .with_endpoint_type(req.endpoint_type)
            .with_cluster_id(sb(shared.cluster.cluster_id()))
            .with_controller_id(BrokerId(shared.node_id))
            .with_cluster_authorized_operations(authorized_operations(
                ResourceType::Cluster,
                req.include_cluster_authorized_operations,
            ))
            .with_brokers(vec![DescribeClusterBroker::default()
                .with_broker_id(BrokerId(shared.node_id))
                .with_host(sb(host))
                .with_port(port)]),
    )
}

impl super::RefusableRequest for MetadataRequest {
    type Response = MetadataResponse;

    /// Every named topic carries the refusal; a request for all topics gets none (Kafka's
    /// `MetadataRequest.getErrorResponse`).
    fn error_response(&self, _version: i16, refusal: &rafka_hooks::Rejection) -> Self::Response {
        let e = refusal.code.0;
        let topics = self.topics.iter().flatten().map(|t| {
            MetadataResponseTopic::default()
                .with_name(t.name.clone())
                .with_topic_id(t.topic_id)
                .with_error_code(e)
                .with_topic_authorized_operations(OPERATIONS_OMITTED)
        });
        MetadataResponse::default()
            .with_error_code(e)
            .with_topics(topics.collect())
            .with_cluster_authorized_operations(OPERATIONS_OMITTED)
    }
}

impl super::ErrorCodes for MetadataResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(super::ErrorItem<'a>)) {
        f(super::ErrorItem::top(self.error_code));
        for t in &self.topics {
            let name = t.name.as_deref().map_or("", |n| n);
            f(super::ErrorItem::named(name, t.error_code));
            for p in &t.partitions {
                f(super::ErrorItem::partition(
                    name,
                    p.partition_index,
                    p.error_code,
                ));
            }
        }
    }
}

impl super::RefusableRequest for DescribeTopicPartitionsRequest {
    type Response = DescribeTopicPartitionsResponse;

    fn error_response(&self, _version: i16, refusal: &rafka_hooks::Rejection) -> Self::Response {
        DescribeTopicPartitionsResponse::default().with_topics(
            self.topics
                .iter()
                .map(|t| {
                    DescribeTopicPartitionsResponseTopic::default()
                        .with_name(Some(t.name.clone()))
                        .with_error_code(refusal.code.0)
                        .with_topic_authorized_operations(OPERATIONS_OMITTED)
                })
                .collect(),
        )
    }
}

impl super::ErrorCodes for DescribeTopicPartitionsResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(super::ErrorItem<'a>)) {
        for t in &self.topics {
            let name = t.name.as_deref().map_or("", |n| n);
            f(super::ErrorItem::named(name, t.error_code));
            for p in &t.partitions {
                f(super::ErrorItem::partition(
                    name,
                    p.partition_index,
                    p.error_code,
                ));
            }
        }
    }
}

impl super::RefusableRequest for DescribeClusterRequest {
    type Response = DescribeClusterResponse;

    fn error_response(&self, _version: i16, refusal: &rafka_hooks::Rejection) -> Self::Response {
        DescribeClusterResponse::default()
            .with_error_code(refusal.code.0)
            .with_error_message(Some(sb(refusal.message.clone())))
            .with_cluster_authorized_operations(OPERATIONS_OMITTED)
    }
}

impl super::ErrorCodes for DescribeClusterResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(super::ErrorItem<'a>)) {
        f(super::ErrorItem::top(self.error_code));
    }
}

/// Diskless mode: the live brokers, the catalog's topics, leaders spread over the live
/// brokers (`diskless::leadership`), leader epochs from `rafka_partitions`.
pub mod diskless {
    use super::*;

    use crate::diskless::catalog::{CreateTopicError, DisklessTopic};
    use crate::diskless::{leadership, Diskless};
    use crate::shared::Shared;

    /// Metadata v0–12 in diskless mode (answered once PostgreSQL was read).
    pub fn handle(
        shared: &Arc<Shared>,
        d: &Arc<Diskless>,
        req: MetadataRequest,
        version: i16,
        ctx: &Arc<RequestContext>,
    ) -> super::super::Reply {
        let (shared, d, ctx) = (shared.clone(), d.clone(), ctx.clone());
        super::super::Reply::Later(Box::pin(async move {
            metadata(&shared, &d, req, version, &ctx).await
        }))
    }

    /// The brokers clients are told of: the live ones, else (this broker's lease lapsed,
    /// or it is not registered yet) only itself, with every partition leaderless.
    fn brokers(shared: &Shared, d: &Diskless, listener: &str) -> Vec<(i32, String, i32)> {
        let live = d.membership.live_brokers();
        if d.is_live() && !live.is_empty() {
            live.iter()
                .map(|b| {
                    let (host, port) = b.address_for(listener);
                    (b.node_id, host, port)
                })
                .collect()
        } else {
            let (host, port) = shared.advertised_for(listener);
            vec![(shared.node_id, host, port)]
        }
    }

    async fn metadata(
        shared: &Shared,
        d: &Diskless,
        req: MetadataRequest,
        version: i16,
        ctx: &RequestContext,
    ) -> ResponseKind {
        let allow_create = version < 4 || req.allow_auto_topic_creation;
        let with_ops = req.include_topic_authorized_operations;
        // Either a topic found, or its entry with an error.
        let mut found: Vec<Result<Arc<DisklessTopic>, MetadataResponseTopic>> = Vec::new();
        let all = match &req.topics {
            None => true,
            Some(list) => list.is_empty() && version == 0,
        };
        if all {
            // A topic deleted elsewhere disappears; on a coordinator error, the cache.
            if let Err(e) = d.catalog.refresh(&d.pg).await {
                tracing::warn!(error = %e, "diskless catalog refresh failed");
            }
            found.extend(d.catalog.all().into_iter().map(Ok));
        } else {
            for t in req.topics.iter().flatten() {
                let entry = match &t.name {
                    Some(name) => {
                        lookup_or_create(shared, d, ctx, name, allow_create, with_ops).await
                    }
                    None => match d.catalog.topic_by_id(&d.pg, t.topic_id).await {
                        Ok(Some(topic)) => Ok(topic),
                        Ok(None) => Err(error_entry(
                            None,
                            t.topic_id,
                            ResponseError::UnknownTopicId,
                            false,
                        )),
                        Err(_) => Err(error_entry(
                            None,
                            t.topic_id,
                            ResponseError::LeaderNotAvailable,
                            false,
                        )),
                    },
                };
                found.push(entry);
            }
        }
        let ids: Vec<Uuid> = found
            .iter()
            .filter_map(|f| f.as_ref().ok().map(|t| t.id))
            .collect();
        let epochs = d.catalog.leader_epochs(&d.pg, &ids).await;
        let live = d.is_live() && epochs.is_ok();
        let epochs = epochs.unwrap_or_default();
        let live_ids = if live {
            d.membership.live_ids()
        } else {
            Vec::new()
        };
        let topics = found
            .into_iter()
            .map(|f| match f {
                Err(entry) => entry,
                Ok(t) => MetadataResponseTopic::default()
                    .with_name(Some(wire_topic(&t.name)))
                    .with_topic_id(t.id)
                    .with_topic_authorized_operations(authorized_operations(
                        ResourceType::Topic,
                        with_ops,
                    ))
                    .with_partitions(
                        (0..t.partitions)
                            .map(|p| {
                                let epoch = epochs.get(&(t.id, p)).copied().unwrap_or(0);
                                let e = MetadataResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_leader_epoch(epoch);
                                match leadership::partition_leader(&live_ids, t.id, p) {
                                    Some(l) => e
                                        .with_leader_id(BrokerId(l))
                                        .with_replica_nodes(vec![BrokerId(l)])
                                        .with_isr_nodes(vec![BrokerId(l)]),
                                    None => e
                                        .with_error_code(ResponseError::LeaderNotAvailable.code())
                                        .with_leader_id(BrokerId(-1)),
                                }
                            })
                            .collect(),
                    ),
            })
            .collect();
        let brokers = brokers(shared, d, &ctx.session.listener);
        let controller = brokers.iter().map(|b| b.0).min().unwrap_or(shared.node_id);
        ResponseKind::Metadata(
            MetadataResponse::default()
                .with_brokers(
                    brokers
                        .into_iter()
                        .map(|(id, host, port)| {
                            MetadataResponseBroker::default()
                                .with_node_id(BrokerId(id))
                                .with_host(sb(host))
                                .with_port(port)
                        })
                        .collect(),
                )
                .with_cluster_id(Some(sb(d.cluster_id.clone())))
                .with_controller_id(BrokerId(controller))
                .with_cluster_authorized_operations(authorized_operations(
                    ResourceType::Cluster,
                    req.include_cluster_authorized_operations,
                ))
                .with_topics(topics),
        )
    }

    /// Finds or (if allowed) auto-creates a diskless topic, as the single-node lookup.
    async fn lookup_or_create(
        shared: &Shared,
        d: &Diskless,
        ctx: &RequestContext,
        name: &str,
        allow_create: bool,
        with_ops: bool,
    ) -> Result<Arc<DisklessTopic>, MetadataResponseTopic> {
        let fail = |e: ResponseError| Err(error_entry(Some(name), Uuid::nil(), e, with_ops));
        if TopicName::new(name).is_err() {
            return fail(ResponseError::InvalidTopicException);
        }
        match d.catalog.topic(&d.pg, name).await {
            Ok(Some(t)) => return Ok(t),
            Ok(None) => {}
            Err(_) => return fail(ResponseError::LeaderNotAvailable),
        }
        if !(allow_create && shared.config.broker.auto_create_topics_enable) || is_internal(name) {
            return fail(ResponseError::UnknownTopicOrPartition);
        }
        let partitions = shared.config.broker.num_partitions;
        let no_configs = BTreeMap::new();
        let op = AdminOp::CreateTopic {
            topic: name,
            partitions,
            configs: &no_configs,
            validate_only: false,
        };
        if let Verdict::Reject(r) = shared.hooks.on_admin(ctx, &op) {
            return fail(super::super::response_error(r.code));
        }
        match d.catalog.create(&d.pg, name, partitions, &no_configs).await {
            Ok(t) => {
                tracing::info!(topic = name, partitions, "auto-created diskless topic");
                Ok(t)
            }
            // Another broker created it meanwhile.
            Err(CreateTopicError::Exists(_)) => match d.catalog.topic(&d.pg, name).await {
                Ok(Some(t)) => Ok(t),
                _ => fail(ResponseError::LeaderNotAvailable),
            },
            Err(CreateTopicError::Coordinator(e)) => {
                tracing::warn!(topic = name, error = %e, "auto-creation failed");
                fail(ResponseError::LeaderNotAvailable)
            }
        }
    }

    /// DescribeTopicPartitions v0 in diskless mode (Java's admin client describes topics
    /// with it): the catalog's topics, leaders as Metadata gives them, with its cursor.
    pub fn describe_topic_partitions(
        d: &Arc<Diskless>,
        req: DescribeTopicPartitionsRequest,
    ) -> super::super::Reply {
        let d = d.clone();
        super::super::Reply::Later(Box::pin(async move {
            let mut names: Vec<String> = if req.topics.is_empty() {
                if let Err(e) = d.catalog.refresh(&d.pg).await {
                    tracing::warn!(error = %e, "diskless catalog refresh failed");
                }
                d.catalog.all().iter().map(|t| t.name.clone()).collect()
            } else {
                req.topics.iter().map(|t| t.name.to_string()).collect()
            };
            names.sort();
            names.dedup();
            let (start_topic, start_partition) = match &req.cursor {
                Some(c) => (Some(c.topic_name.to_string()), c.partition_index),
                None => (None, 0),
            };
            let mut found = Vec::new();
            for name in names {
                if start_topic.as_ref().is_some_and(|s| &name < s) {
                    continue;
                }
                let t = d.catalog.topic(&d.pg, &name).await;
                found.push((name, t));
            }
            let ids: Vec<Uuid> = found
                .iter()
                .filter_map(|(_, t)| t.as_ref().ok().and_then(|t| t.as_ref().map(|t| t.id)))
                .collect();
            let epochs = d.catalog.leader_epochs(&d.pg, &ids).await;
            let live = d.is_live() && epochs.is_ok();
            let epochs = epochs.unwrap_or_default();
            let live_ids = if live {
                d.membership.live_ids()
            } else {
                Vec::new()
            };
            let mut budget = req.response_partition_limit.clamp(1, 2000);
            let mut topics = Vec::new();
            let mut next_cursor = None;
            for (name, t) in found {
                let t = match t {
                    Ok(Some(t)) => t,
                    Ok(None) | Err(_) => {
                        let e = if t.is_ok() {
                            ResponseError::UnknownTopicOrPartition
                        } else {
                            ResponseError::LeaderNotAvailable
                        };
                        topics.push(
                            DescribeTopicPartitionsResponseTopic::default()
                                .with_name(Some(wire_topic(&name)))
                                .with_error_code(code(Some(e)))
                                .with_topic_authorized_operations(authorized_operations(
                                    ResourceType::Topic,
                                    true,
                                )),
                        );
                        continue;
                    }
                };
                let first = if start_topic.as_deref() == Some(name.as_str()) {
                    start_partition.max(0)
                } else {
                    0
                };
                let mut partitions = Vec::new();
                for p in first..t.partitions {
                    if budget == 0 {
                        next_cursor = Some(
                            kafka_protocol::messages::describe_topic_partitions_response::Cursor::default()
                                .with_topic_name(wire_topic(&name))
                                .with_partition_index(p),
                        );
                        break;
                    }
                    budget -= 1;
                    let e = DescribeTopicPartitionsResponsePartition::default()
                        .with_partition_index(p)
                        .with_leader_epoch(epochs.get(&(t.id, p)).copied().unwrap_or(0))
                        .with_eligible_leader_replicas(Some(vec![]))
                        .with_last_known_elr(Some(vec![]));
                    partitions.push(match leadership::partition_leader(&live_ids, t.id, p) {
                        Some(l) => e
                            .with_leader_id(BrokerId(l))
                            .with_replica_nodes(vec![BrokerId(l)])
                            .with_isr_nodes(vec![BrokerId(l)]),
                        None => e
                            .with_error_code(ResponseError::LeaderNotAvailable.code())
                            .with_leader_id(BrokerId(-1)),
                    });
                }
                topics.push(
                    DescribeTopicPartitionsResponseTopic::default()
                        .with_name(Some(wire_topic(&name)))
                        .with_topic_id(t.id)
                        .with_partitions(partitions)
                        .with_topic_authorized_operations(authorized_operations(
                            ResourceType::Topic,
                            true,
                        )),
                );
                if next_cursor.is_some() {
                    break;
                }
            }
            ResponseKind::DescribeTopicPartitions(
                DescribeTopicPartitionsResponse::default()
                    .with_topics(topics)
                    .with_next_cursor(next_cursor),
            )
        }))
    }

    /// DescribeCluster v0–1 in diskless mode: the live brokers; the controller is the
    /// lowest live node id.
    pub fn describe_cluster(
        shared: &Shared,
        d: &Diskless,
        req: DescribeClusterRequest,
        listener: &str,
    ) -> ResponseKind {
        let brokers = brokers(shared, d, listener);
        let controller = brokers.iter().map(|b| b.0).min().unwrap_or(shared.node_id);
        ResponseKind::DescribeCluster(
            DescribeClusterResponse::default()
                .with_endpoint_type(req.endpoint_type)
                .with_cluster_id(sb(d.cluster_id.clone()))
                .with_controller_id(BrokerId(controller))
                .with_cluster_authorized_operations(authorized_operations(
                    ResourceType::Cluster,
                    req.include_cluster_authorized_operations,
                ))
                .with_brokers(
                    brokers
                        .into_iter()
                        .map(|(id, host, port)| {
                            DescribeClusterBroker::default()
                                .with_broker_id(BrokerId(id))
                                .with_host(sb(host))
                                .with_port(port)
                        })
                        .collect(),
                ),
        )
    }
}
