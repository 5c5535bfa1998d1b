//! DescribeConfigs v1–4, AlterConfigs v0–2, IncrementalAlterConfigs v0–1 for topic configs
//! (Kafka's names), per-group configs (resource type GROUP, Kafka 4's `GroupConfig`, kept by
//! the group coordinator) and the broker's read-only view of its own settings.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, ResponseKind,
};
use kafka_protocol::ResponseError;

use rafka_core::TopicName;
use rafka_hooks::{AdminOp, RequestContext, Verdict};

use super::admin::{SOURCE_DEFAULT, SOURCE_TOPIC};
use super::sb;
use crate::group::AlterConfigsError;
use crate::shared::Shared;
use crate::topic_config::{self, TOPIC_CONFIG_KEYS};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_GROUP: i8 = 32;
const SOURCE_STATIC_BROKER: i8 = 4;
/// Kafka's `ConfigSource.GROUP_CONFIG`: a value the group overrides.
const SOURCE_GROUP: i8 = 8;

fn empty_group_name() -> (ResponseError, String) {
    (
        ResponseError::InvalidRequest,
        "Group name must not be empty".into(),
    )
}

fn broker_entries(shared: &Shared) -> Vec<(String, String, i8)> {
    let b = &shared.config.broker;
    let d = shared.cluster.defaults();
    vec![
        (
            "auto.create.topics.enable".into(),
            b.auto_create_topics_enable.to_string(),
            1,
        ),
        ("num.partitions".into(), b.num_partitions.to_string(), 3),
        (
            "socket.request.max.bytes".into(),
            b.socket_request_max_bytes.to_string(),
            3,
        ),
        (
            "connections.max.idle.ms".into(),
            b.connections_max_idle_ms.to_string(),
            5,
        ),
        (
            "sasl.enabled.mechanisms".into(),
            b.sasl_enabled_mechanisms
                .iter()
                .map(|m| m.name())
                .collect::<Vec<_>>()
                .join(","),
            7,
        ),
        (
            "connections.max.reauth.ms".into(),
            b.connections_max_reauth_ms.to_string(),
            5,
        ),
        (
            "connection.failed.authentication.delay.ms".into(),
            b.connection_failed_authentication_delay_ms.to_string(),
            3,
        ),
        (
            "ssl.principal.mapping.rules".into(),
            b.ssl_principal_mapping_rules.clone(),
            2,
        ),
        (
            "sasl.oauthbearer.jwks.endpoint.url".into(),
            b.sasl_oauthbearer_jwks_endpoint_url
                .clone()
                .unwrap_or_default(),
            2,
        ),
        (
            "sasl.oauthbearer.jwks.endpoint.refresh.ms".into(),
            b.sasl_oauthbearer_jwks_endpoint_refresh_ms.to_string(),
            5,
        ),
        (
            "sasl.oauthbearer.expected.audience".into(),
            b.sasl_oauthbearer_expected_audience.join(","),
            7,
        ),
        (
            "sasl.oauthbearer.expected.issuer".into(),
            b.sasl_oauthbearer_expected_issuer
                .clone()
                .unwrap_or_default(),
            2,
        ),
        (
            "sasl.oauthbearer.sub.claim.name".into(),
            b.sasl_oauthbearer_sub_claim_name.clone(),
            2,
        ),
        (
            "sasl.oauthbearer.clock.skew.seconds".into(),
            b.sasl_oauthbearer_clock_skew_seconds.to_string(),
            3,
        ),
        (
            "log.dirs".into(),
            shared.config.storage.path.display().to_string(),
            2,
        ),
        ("log.segment.bytes".into(), d.segment_bytes.to_string(), 3),
        ("log.roll.ms".into(), d.segment_ms.to_string(), 5),
        ("log.preallocate".into(), d.preallocate.to_string(), 1),
        ("log.retention.ms".into(), d.retention_ms.to_string(), 5),
        (
            "log.retention.bytes".into(),
            d.retention_bytes.to_string(),
            5,
        ),
        (
            "message.max.bytes".into(),
            d.max_message_bytes.to_string(),
            3,
        ),
        ("log.cleanup.policy".into(), b.log_cleanup_policy.clone(), 7),
        (
            "log.cleaner.enable".into(),
            b.log_cleaner_enable.to_string(),
            1,
        ),
        (
            "log.cleaner.threads".into(),
            b.log_cleaner_threads.to_string(),
            3,
        ),
        (
            "log.cleaner.io.max.bytes.per.second".into(),
            // Java's spelling of the default: 1.7976931348623157E308.
            format!("{:?}", b.log_cleaner_io_max_bytes_per_second).to_uppercase(),
            6,
        ),
        (
            "log.cleaner.backoff.ms".into(),
            b.log_cleaner_backoff_ms.to_string(),
            5,
        ),
        (
            "log.cleaner.dedupe.buffer.size".into(),
            b.log_cleaner_dedupe_buffer_size.to_string(),
            5,
        ),
        ("default.replication.factor".into(), "1".into(), 3),
        ("min.insync.replicas".into(), "1".into(), 3),
    ]
}

/// DescribeConfigs.
pub fn describe(shared: &Arc<Shared>, req: DescribeConfigsRequest, version: i16) -> ResponseKind {
    describe_with(shared, req, version, &|name| {
        shared.cluster.topic(name).map(|t| t.configs.clone())
    })
}

/// DescribeConfigs, the topics' overrides read through `topic_configs`.
fn describe_with(
    shared: &Arc<Shared>,
    req: DescribeConfigsRequest,
    version: i16,
    topic_configs: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
) -> ResponseKind {
    let results = req
        .resources
        .into_iter()
        .map(|res| {
            let r = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let wanted = |name: &str| {
                res.configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|k| &**k == name))
            };
            let entry =
                |name: &str, value: String, source: i8, read_only: bool, ty: i8, doc: &str| {
                    let mut e = DescribeConfigsResourceResult::default()
                        .with_name(sb(name))
                        .with_value(Some(sb(value.clone())))
                        .with_read_only(read_only)
                        .with_config_source(source);
                    if req.include_synonyms {
                        e.synonyms = vec![DescribeConfigsSynonym::default()
                            .with_name(sb(name))
                            .with_value(Some(sb(value)))
                            .with_source(source)];
                    }
                    if version >= 3 {
                        e.config_type = ty;
                        if req.include_documentation {
                            e.documentation = Some(sb(doc));
                        }
                    }
                    e
                };
            match res.resource_type {
                RESOURCE_TOPIC => {
                    let Some(topic_configs) = topic_configs(&res.resource_name) else {
                        return r
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(sb(format!(
                                "Topic {} does not exist",
                                &*res.resource_name
                            ))));
                    };
                    let configs = TOPIC_CONFIG_KEYS
                        .iter()
                        .filter(|k| wanted(k.name))
                        .map(|k| match topic_configs.get(k.name) {
                            Some(v) => {
                                entry(k.name, v.clone(), SOURCE_TOPIC, false, k.config_type, k.doc)
                            }
                            None => entry(
                                k.name,
                                shared.cluster.default_topic_value(k.name),
                                SOURCE_DEFAULT,
                                false,
                                k.config_type,
                                k.doc,
                            ),
                        })
                        .collect();
                    r.with_configs(configs)
                }
                RESOURCE_BROKER => {
                    let configs = broker_entries(shared)
                        .into_iter()
                        .filter(|(n, _, _)| wanted(n))
                        .map(|(n, v, ty)| {
                            entry(&n, v, SOURCE_STATIC_BROKER, true, ty, "Set in config.yaml.")
                        })
                        .collect();
                    r.with_configs(configs)
                }
                RESOURCE_GROUP => {
                    if res.resource_name.is_empty() {
                        let (e, m) = empty_group_name();
                        return r.with_error_code(e.code()).with_error_message(Some(sb(m)));
                    }
                    let configs = shared
                        .groups
                        .describe_configs(&res.resource_name)
                        .into_iter()
                        .filter(|(k, _, _)| wanted(k.name))
                        .map(|(k, v, overridden)| {
                            let source = if overridden {
                                SOURCE_GROUP
                            } else {
                                SOURCE_DEFAULT
                            };
                            entry(k.name, v, source, false, k.config_type, k.doc)
                        })
                        .collect();
                    r.with_configs(configs)
                }
                other => r
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(sb(format!("Unsupported resource type {other}")))),
            }
        })
        .collect();
    ResponseKind::DescribeConfigs(DescribeConfigsResponse::default().with_results(results))
}

/// Applies a full or incremental change to one resource; returns the error to answer.
fn apply(
    shared: &Shared,
    ctx: &RequestContext,
    resource_type: i8,
    resource_name: &str,
    validate_only: bool,
    change: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), String>,
) -> Option<(ResponseError, String)> {
    match resource_type {
        RESOURCE_TOPIC => {}
        RESOURCE_GROUP if resource_name.is_empty() => return Some(empty_group_name()),
        RESOURCE_GROUP => {
            return match shared
                .groups
                .alter_configs(resource_name, validate_only, change)
            {
                Ok(()) => None,
                Err(AlterConfigsError::Invalid(m)) => Some((ResponseError::InvalidConfig, m)),
                Err(AlterConfigsError::Storage) => Some((
                    ResponseError::KafkaStorageError,
                    "The group config could not be written".into(),
                )),
            };
        }
        RESOURCE_BROKER => {
            return Some((
                ResponseError::InvalidRequest,
                "Broker configs are static in Rafka: edit config/config.yaml and restart".into(),
            ))
        }
        other => {
            return Some((
                ResponseError::InvalidRequest,
                format!("Unsupported resource type {other}"),
            ))
        }
    }
    let (Ok(name), Some(topic)) = (
        TopicName::new(resource_name),
        shared.cluster.topic(resource_name),
    ) else {
        return Some((
            ResponseError::UnknownTopicOrPartition,
            format!("Topic {resource_name} does not exist"),
        ));
    };
    let mut configs = topic.configs.clone();
    if let Err(m) = change(&mut configs) {
        return Some((ResponseError::InvalidConfig, m));
    }
    for (k, v) in &configs {
        if let Err(e) = topic_config::validate(k, v) {
            return Some((ResponseError::InvalidConfig, e.0));
        }
    }
    let op = AdminOp::AlterTopicConfigs {
        topic: resource_name,
        configs: &configs,
        validate_only,
    };
    if let Verdict::Reject(r) = shared.hooks.on_admin(ctx, &op) {
        return Some((super::response_error(r.code), r.message));
    }
    if validate_only {
        return None;
    }
    shared
        .cluster
        .set_topic_configs(&name, configs)
        .err()
        .map(|e| (ResponseError::InvalidConfig, e.to_string()))
}

type Change<'a> = Box<dyn FnOnce(&mut BTreeMap<String, String>) -> Result<(), String> + Send + 'a>;

/// AlterConfigs' change: every override replaced.
fn full_change(
    configs: &[kafka_protocol::messages::alter_configs_request::AlterableConfig],
) -> Change<'_> {
    Box::new(move |c| {
        c.clear();
        for e in configs {
            if let Some(v) = &e.value {
                c.insert(e.name.to_string(), v.to_string());
            }
        }
        Ok(())
    })
}

/// IncrementalAlterConfigs' change: SET (0), DELETE (1); APPEND and SUBTRACT apply to
/// no topic config here.
fn incremental_change(
    configs: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
) -> Change<'_> {
    Box::new(move |c| {
        for e in configs {
            let name = e.name.to_string();
            let value = e.value.as_ref().map(|v| v.to_string());
            match (e.config_operation, value) {
                (0, Some(v)) => {
                    c.insert(name, v);
                }
                (1, _) => {
                    c.remove(&name);
                }
                (2 | 3, _) => {
                    return Err(format!(
                        "Config {name} is not a list: APPEND and SUBTRACT do not apply"
                    ))
                }
                (0, None) => return Err(format!("Null value for SET of {name}")),
                (op, _) => return Err(format!("Unknown config operation {op}")),
            }
        }
        Ok(())
    })
}

/// AlterConfigs: replaces every override of the resource.
pub fn alter(shared: &Arc<Shared>, req: AlterConfigsRequest, ctx: &RequestContext) -> ResponseKind {
    let responses = req
        .resources
        .into_iter()
        .map(|res| {
            let err = apply(
                shared,
                ctx,
                res.resource_type,
                &res.resource_name,
                req.validate_only,
                full_change(&res.configs),
            );
            let r = alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name);
            match err {
                None => r,
                Some((e, m)) => r.with_error_code(e.code()).with_error_message(Some(sb(m))),
            }
        })
        .collect();
    ResponseKind::AlterConfigs(AlterConfigsResponse::default().with_responses(responses))
}

/// IncrementalAlterConfigs: SET (0), DELETE (1), APPEND (2), SUBTRACT (3).
pub fn incremental_alter(
    shared: &Arc<Shared>,
    req: IncrementalAlterConfigsRequest,
    ctx: &RequestContext,
) -> ResponseKind {
    let responses = req
        .resources
        .into_iter()
        .map(|res| {
            let err = apply(
                shared,
                ctx,
                res.resource_type,
                &res.resource_name,
                req.validate_only,
                incremental_change(&res.configs),
            );
            let r = incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name);
            match err {
                None => r,
                Some((e, m)) => r.with_error_code(e.code()).with_error_message(Some(sb(m))),
            }
        })
        .collect();
    ResponseKind::IncrementalAlterConfigs(
        IncrementalAlterConfigsResponse::default().with_responses(responses),
    )
}

impl super::RefusableRequest for DescribeConfigsRequest {
    type Response = DescribeConfigsResponse;

    fn error_response(&self, _version: i16, refusal: &rafka_hooks::Rejection) -> Self::Response {
        DescribeConfigsResponse::default().with_results(
            self.resources
                .iter()
                .map(|r| {
                    DescribeConfigsResult::default()
                        .with_resource_type(r.resource_type)
                        .with_resource_name(r.resource_name.clone())
                        .with_error_code(refusal.code.0)
                        .with_error_message(Some(sb(refusal.message.clone())))
                })
                .collect(),
        )
    }
}

impl super::ErrorCodes for DescribeConfigsResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(super::ErrorItem<'a>)) {
        for r in &self.results {
            f(super::ErrorItem::named(&r.resource_name, r.error_code));
        }
    }
}

impl super::RefusableRequest for AlterConfigsRequest {
    type Response = AlterConfigsResponse;

    fn error_response(&self, _version: i16, refusal: &rafka_hooks::Rejection) -> Self::Response {
        AlterConfigsResponse::default().with_responses(
            self.resources
                .iter()
                .map(|r| {
                    alter_configs_response::AlterConfigsResourceResponse::default()
                        .with_resource_type(r.resource_type)
                        .with_resource_name(r.resource_name.clone())
                        .with_error_code(refusal.code.0)
                        .with_error_message(Some(sb(refusal.message.clone())))
                })
                .collect(),
        )
    }
}

impl super::ErrorCodes for AlterConfigsResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(super::ErrorItem<'a>)) {
        for r in &self.responses {
            f(super::ErrorItem::named(&r.resource_name, r.error_code));
        }
    }
}

impl super::RefusableRequest for IncrementalAlterConfigsRequest {
    type Response = IncrementalAlterConfigsResponse;

    fn error_response(&self, _version: i16, refusal: &rafka_hooks::Rejection) -> Self::Response {
        IncrementalAlterConfigsResponse::default().with_responses(
            self.resources
                .iter()
                .map(|r| {
                    incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                        .with_resource_type(r.resource_type)
                        .with_resource_name(r.resource_name.clone())
                        .with_error_code(refusal.code.0)
                        .with_error_message(Some(sb(refusal.message.clone())))
                })
                .collect(),
        )
    }
}

impl super::ErrorCodes for IncrementalAlterConfigsResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(super::ErrorItem<'a>)) {
        for r in &self.responses {
            f(super::ErrorItem::named(&r.resource_name, r.error_code));
        }
    }
}

/// Diskless mode: topic configs live in `rafka_topics.configs`; a change is read, checked
/// and written in one PostgreSQL transaction (the row locked). Group and broker resources
/// are answered as in single-node mode.
pub mod diskless {
    use super::*;

    use crate::diskless::Diskless;

    /// The overrides of the topics `names` (those that exist).
    async fn topic_configs(
        d: &Diskless,
        names: impl Iterator<Item = &str>,
    ) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut found = BTreeMap::new();
        for name in names {
            if let Ok(Some(t)) = d.catalog.topic(&d.pg, name).await {
                found.insert(name.to_string(), t.configs.clone());
            }
        }
        found
    }

    /// DescribeConfigs in diskless mode.
    pub fn describe(
        shared: &Arc<Shared>,
        d: &Arc<Diskless>,
        req: DescribeConfigsRequest,
        version: i16,
    ) -> super::super::Reply {
        let (shared, d) = (shared.clone(), d.clone());
        super::super::Reply::Later(Box::pin(async move {
            let names = req
                .resources
                .iter()
                .filter(|r| r.resource_type == RESOURCE_TOPIC)
                .map(|r| r.resource_name.as_str());
            let found = topic_configs(&d, names).await;
            describe_with(&shared, req, version, &|name| found.get(name).cloned())
        }))
    }

    /// One topic's change, in one transaction: validated (the diskless refusals too),
    /// passed to the `on_admin` hooks, written unless `validate_only`.
    async fn apply_topic(
        shared: &Shared,
        d: &Diskless,
        ctx: &RequestContext,
        name: &str,
        validate_only: bool,
        change: Change<'_>,
    ) -> Option<(ResponseError, String)> {
        let unknown = || {
            Some((
                ResponseError::UnknownTopicOrPartition,
                format!("Topic {name} does not exist"),
            ))
        };
        if TopicName::new(name).is_err() {
            return unknown();
        }
        // `Err(None)`: valid, but only validated (the transaction is rolled back).
        let outcome = d
            .catalog
            .alter_configs(d.coordinator(), name, |configs| {
                change(configs).map_err(|m| Some((ResponseError::InvalidConfig, m)))?;
                for (k, v) in configs.iter() {
                    if let Err(e) = topic_config::validate(k, v) {
                        return Err(Some((ResponseError::InvalidConfig, e.0)));
                    }
                    if let Some(m) = super::super::admin::diskless::refused_config(k, v) {
                        return Err(Some((ResponseError::InvalidConfig, m)));
                    }
                }
                let op = AdminOp::AlterTopicConfigs {
                    topic: name,
                    configs,
                    validate_only,
                };
                if let Verdict::Reject(r) = shared.hooks.on_admin(ctx, &op) {
                    return Err(Some((super::super::response_error(r.code), r.message)));
                }
                if validate_only {
                    return Err(None);
                }
                Ok(())
            })
            .await;
        match outcome {
            Ok(None) => unknown(),
            Ok(Some(Ok(()))) => None,
            Ok(Some(Err(e))) => e,
            Err(e) => Some((ResponseError::RequestTimedOut, e.to_string())),
        }
    }

    /// One resource of Alter/IncrementalAlterConfigs in diskless mode: a topic's configs
    /// through PostgreSQL, a broker's or group's as in single-node mode. The error, if any.
    async fn alter_one(
        shared: &Shared,
        d: &Diskless,
        ctx: &RequestContext,
        (resource_type, name): (i8, &str),
        validate_only: bool,
        change: Change<'_>,
    ) -> Option<(ResponseError, String)> {
        if resource_type == RESOURCE_TOPIC {
            apply_topic(shared, d, ctx, name, validate_only, change).await
        } else {
            apply(shared, ctx, resource_type, name, validate_only, change)
        }
    }

    /// AlterConfigs in diskless mode.
    pub fn alter(
        shared: &Arc<Shared>,
        d: &Arc<Diskless>,
        req: AlterConfigsRequest,
        ctx: &Arc<RequestContext>,
    ) -> super::super::Reply {
        let (shared, d, ctx) = (shared.clone(), d.clone(), ctx.clone());
        super::super::Reply::Later(Box::pin(async move {
            let mut responses = Vec::with_capacity(req.resources.len());
            for res in &req.resources {
                let err = alter_one(
                    &shared,
                    &d,
                    &ctx,
                    (res.resource_type, &res.resource_name),
                    req.validate_only,
                    full_change(&res.configs),
                )
                .await;
                let r = alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_resource_type(res.resource_type)
                    .with_resource_name(res.resource_name.clone());
                responses.push(match err {
                    None => r,
                    Some((e, m)) => r.with_error_code(e.code()).with_error_message(Some(sb(m))),
                });
            }
            ResponseKind::AlterConfigs(AlterConfigsResponse::default().with_responses(responses))
        }))
    }

    /// IncrementalAlterConfigs in diskless mode.
    pub fn incremental_alter(
        shared: &Arc<Shared>,
        d: &Arc<Diskless>,
        req: IncrementalAlterConfigsRequest,
        ctx: &Arc<RequestContext>,
    ) -> super::super::Reply {
        let (shared, d, ctx) = (shared.clone(), d.clone(), ctx.clone());
        super::super::Reply::Later(Box::pin(async move {
            let mut responses = Vec::with_capacity(req.resources.len());
            for res in &req.resources {
                let err = alter_one(
                    &shared,
                    &d,
                    &ctx,
                    (res.resource_type, &res.resource_name),
                    req.validate_only,
                    incremental_change(&res.configs),
                )
                .await;
                let r = incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_resource_type(res.resource_type)
                    .with_resource_name(res.resource_name.clone());
                responses.push(match err {
                    None => r,
                    Some((e, m)) => r.with_error_code(e.code()).with_error_message(Some(sb(m))),
                });
            }
            ResponseKind::IncrementalAlterConfigs(
                IncrementalAlterConfigsResponse::default().with_responses(responses),
            )
        }))
    }
}
