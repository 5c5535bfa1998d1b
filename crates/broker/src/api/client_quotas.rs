//! DescribeClientQuotas and AlterClientQuotas v0–1 (KIP-546) over the broker's
//! [`crate::quota_manager::QuotaManager`], with Kafka's checks and error codes.
//!
//! - Describe: filter components per entity type (`user`, `client-id`, `ip`), each EXACT
//!   (a name), DEFAULT (the `<default>` entity) or SPECIFIED (any entity with that type);
//!   `strict` keeps only entities with no other component. An empty or repeated type, a
//!   match string where the match type takes none (or none where it needs one), an
//!   unknown match type, or `ip` beside `user`/`client-id` is INVALID_REQUEST; an unknown
//!   entity type UNSUPPORTED_VERSION. The error is the response's own.
//! - Alter: per entry, an empty entity, a repeated or unknown entity type, an empty name,
//!   an unknown or repeated key, a byte rate that is not a whole number or a negative
//!   value is INVALID_REQUEST, and nothing of that entry changes; the valid entries are
//!   stored together (unless `validate_only`). Rafka keeps no `ip` quotas
//!   (`connection_creation_rate`): such an entry is INVALID_REQUEST, and an `ip` filter
//!   matches nothing.
//! - Reading quotas needs DESCRIBE_CONFIGS on the cluster, changing them ALTER_CONFIGS
//!   (CLUSTER_AUTHORIZATION_FAILED otherwise) once an authorizer is configured.

use kafka_protocol::messages::alter_client_quotas_response::{
    EntityData as AlterEntity, EntryData as AlterResult,
};
use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse, ResponseKind,
};
use kafka_protocol::ResponseError;
use rafka_hooks::{Rejection, Session};

use super::{sb, ErrorCodes, ErrorItem, RefusableRequest};
use crate::acl::{self, Operation, Resource, ResourceType};
use crate::quota::{EntityName, QuotaEntity, QuotaKind};
use crate::quota_manager::{
    QuotaAlteration, QuotaStoreError, ENTITY_CLIENT_ID, ENTITY_IP, ENTITY_USER,
};
use crate::shared::Shared;

/// Kafka's match types.
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_SPECIFIED: i8 = 2;

type Refusal = (ResponseError, String);

/// CLUSTER_AUTHORIZATION_FAILED unless the session may do `op` on the cluster.
fn authorized(shared: &Shared, session: &Session, op: Operation) -> Result<(), Refusal> {
    let cluster = Resource {
        resource_type: ResourceType::Cluster,
        name: acl::CLUSTER_NAME,
    };
    if shared.acls.authorize(
        &session.principal.to_string(),
        session.peer.ip(),
        op,
        cluster,
    ) {
        Ok(())
    } else {
        Err((
            ResponseError::ClusterAuthorizationFailed,
            format!("{} may not {} the cluster", session.principal, op.name()),
        ))
    }
}

fn invalid(message: impl Into<String>) -> Refusal {
    (ResponseError::InvalidRequest, message.into())
}

/// The component of `entity` of `entity_type`: `Some(None)` for the default,
/// `Some(Some(name))`, or `None` when the entity has no such component.
fn component<'a>(entity: &'a QuotaEntity, entity_type: &str) -> Option<Option<&'a str>> {
    let part = match entity_type {
        ENTITY_USER => entity.user.as_ref(),
        ENTITY_CLIENT_ID => entity.client_id.as_ref(),
        _ => None,
    }?;
    Some(match part {
        EntityName::Default => None,
        EntityName::Named(n) => Some(n.as_str()),
    })
}

/// An entity as the wire names it: (type, name or `None` for the default), user first.
fn wire_entity(entity: &QuotaEntity) -> Vec<(&'static str, Option<&str>)> {
    [ENTITY_USER, ENTITY_CLIENT_ID]
        .into_iter()
        .filter_map(|t| component(entity, t).map(|n| (t, n)))
        .collect()
}

/// The filter of a describe: exact matches (a name or the default) and type matches.
struct Filter {
    exact: Vec<(String, Option<String>)>,
    typed: Vec<String>,
    strict: bool,
}

fn filter(req: &DescribeClientQuotasRequest) -> Result<Filter, Refusal> {
    let mut f = Filter {
        exact: Vec::new(),
        typed: Vec::new(),
        strict: req.strict,
    };
    for c in &req.components {
        let t = c.entity_type.as_str();
        if t.is_empty() {
            return Err(invalid("Invalid empty entity type."));
        }
        if f.exact.iter().any(|(e, _)| e == t) || f.typed.iter().any(|e| e == t) {
            return Err(invalid(format!(
                "Entity type {t} cannot appear more than once in the filter."
            )));
        }
        if ![ENTITY_USER, ENTITY_CLIENT_ID, ENTITY_IP].contains(&t) {
            return Err((
                ResponseError::UnsupportedVersion,
                format!("Unsupported entity type {t}"),
            ));
        }
        let m = c._match.as_ref().map(|m| m.to_string());
        match c.match_type {
            MATCH_EXACT => match m {
                None => {
                    return Err(invalid(
                        "Request specified MATCH_TYPE_EXACT, but set match string to null.",
                    ))
                }
                Some(m) => f.exact.push((t.into(), Some(m))),
            },
            MATCH_DEFAULT | MATCH_SPECIFIED if m.is_some() => {
                return Err(invalid(format!(
                    "Request specified {}, but also specified a match string.",
                    if c.match_type == MATCH_DEFAULT {
                        "MATCH_TYPE_DEFAULT"
                    } else {
                        "MATCH_TYPE_SPECIFIED"
                    }
                )))
            }
            MATCH_DEFAULT => f.exact.push((t.into(), None)),
            MATCH_SPECIFIED => f.typed.push(t.into()),
            other => return Err(invalid(format!("Unknown match type {other}"))),
        }
    }
    let has = |t: &str| f.exact.iter().any(|(e, _)| e == t) || f.typed.iter().any(|e| e == t);
    if has(ENTITY_IP) && (has(ENTITY_USER) || has(ENTITY_CLIENT_ID)) {
        return Err(invalid(
            "Invalid entity filter component combination. IP filter component should not be \
             used with user or clientId filter component.",
        ));
    }
    Ok(f)
}

impl Filter {
    fn matches(&self, entity: &QuotaEntity) -> bool {
        if self.exact.is_empty() && self.typed.is_empty() {
            return !self.strict;
        }
        let exact = self
            .exact
            .iter()
            .all(|(t, n)| component(entity, t) == Some(n.as_deref()));
        let typed = self.typed.iter().all(|t| component(entity, t).is_some());
        let size = wire_entity(entity).len();
        exact && typed && (!self.strict || size == self.exact.len() + self.typed.len())
    }
}

/// DescribeClientQuotas.
pub(crate) fn describe(
    shared: &Shared,
    req: &DescribeClientQuotasRequest,
    session: &Session,
) -> ResponseKind {
    let answer = authorized(shared, session, Operation::DescribeConfigs)
        .and_then(|()| filter(req))
        .map(|f| {
            let configs = shared.quotas.current();
            configs
                .entities()
                .filter(|(e, _)| f.matches(e))
                .map(|(e, values)| {
                    EntryData::default()
                        .with_entity(
                            wire_entity(e)
                                .into_iter()
                                .map(|(t, n)| {
                                    EntityData::default()
                                        .with_entity_type(sb(t))
                                        .with_entity_name(n.map(sb))
                                })
                                .collect(),
                        )
                        .with_values(
                            values
                                .iter()
                                .map(|(k, v)| {
                                    ValueData::default().with_key(sb(k.name())).with_value(*v)
                                })
                                .collect(),
                        )
                })
                .collect::<Vec<_>>()
        });
    ResponseKind::DescribeClientQuotas(match answer {
        Ok(entries) => DescribeClientQuotasResponse::default().with_entries(Some(entries)),
        Err((e, message)) => DescribeClientQuotasResponse::default()
            .with_error_code(e.code())
            .with_error_message(Some(sb(message))),
    })
}

/// One AlterClientQuotas entry checked: the alteration it asks for.
fn alteration(
    entry: &kafka_protocol::messages::alter_client_quotas_request::EntryData,
) -> Result<QuotaAlteration, Refusal> {
    if entry.entity.is_empty() {
        return Err(invalid("Invalid empty client quota entity"));
    }
    let mut entity = QuotaEntity {
        user: None,
        client_id: None,
    };
    let mut seen: Vec<&str> = Vec::new();
    for e in &entry.entity {
        let t = e.entity_type.as_str();
        if seen.contains(&t) {
            return Err(invalid(format!(
                "Invalid empty client quota entity, duplicate entity entry {t}"
            )));
        }
        seen.push(t);
        let name = match e.entity_name.as_ref().map(|n| n.as_str()) {
            Some("") => return Err(invalid(format!("Empty {t} not supported"))),
            Some(n) => EntityName::Named(n.to_string()),
            None => EntityName::Default,
        };
        match t {
            ENTITY_USER => entity.user = Some(name),
            ENTITY_CLIENT_ID => entity.client_id = Some(name),
            ENTITY_IP => {
                return Err(invalid(
                    "ip quotas (connection_creation_rate) are not supported by this broker",
                ))
            }
            _ => return Err(invalid(format!("Unhandled client quota entity type: {t}"))),
        }
    }
    let mut ops: Vec<(QuotaKind, Option<f64>)> = Vec::new();
    for op in &entry.ops {
        let key = op.key.as_str();
        let kind = QuotaKind::from_name(key)
            .ok_or_else(|| invalid(format!("Invalid configuration key {key}")))?;
        if ops.iter().any(|(k, _)| *k == kind) {
            return Err(invalid(format!(
                "Duplicate quota key {key} not updating quota for this entity"
            )));
        }
        if op.remove {
            ops.push((kind, None));
            continue;
        }
        let v = op.value;
        if !(v.is_finite() && v >= 0.0) {
            return Err(invalid(format!(
                "Configuration {key} must be a non-negative number, not {v}"
            )));
        }
        let whole = matches!(
            kind,
            QuotaKind::ProducerByteRate | QuotaKind::ConsumerByteRate
        );
        if whole && ((v + 1e-6).trunc() - v).abs() > 1e-6 {
            return Err(invalid(format!("Configuration {key} must be a Long value")));
        }
        ops.push((kind, Some(v)));
    }
    Ok(QuotaAlteration { entity, ops })
}

/// AlterClientQuotas.
pub(crate) fn alter(
    shared: &Shared,
    req: &AlterClientQuotasRequest,
    session: &Session,
) -> ResponseKind {
    let denied = authorized(shared, session, Operation::AlterConfigs).err();
    let mut checked: Vec<Result<QuotaAlteration, Refusal>> = req
        .entries
        .iter()
        .map(|e| match &denied {
            Some(d) => Err(d.clone()),
            None => alteration(e),
        })
        .collect();
    if !req.validate_only {
        let valid: Vec<QuotaAlteration> = checked.iter().flatten().cloned().collect();
        if !valid.is_empty() {
            if let Err(e) = shared.quotas.alter(&valid) {
                tracing::error!(error = %e, "client quotas not changed");
                let code = match e {
                    QuotaStoreError::TooMany => ResponseError::PolicyViolation,
                    QuotaStoreError::File { .. } => ResponseError::UnknownServerError,
                };
                for c in checked.iter_mut().filter(|c| c.is_ok()) {
                    *c = Err((code, e.to_string()));
                }
            }
        }
    }
    let entries = req
        .entries
        .iter()
        .zip(checked)
        .map(|(entry, result)| {
            let r = AlterResult::default().with_entity(
                entry
                    .entity
                    .iter()
                    .map(|e| {
                        AlterEntity::default()
                            .with_entity_type(e.entity_type.clone())
                            .with_entity_name(e.entity_name.clone())
                    })
                    .collect(),
            );
            match result {
                Ok(_) => r,
                Err((e, message)) => r
                    .with_error_code(e.code())
                    .with_error_message(Some(sb(message))),
            }
        })
        .collect();
    ResponseKind::AlterClientQuotas(AlterClientQuotasResponse::default().with_entries(entries))
}

impl RefusableRequest for DescribeClientQuotasRequest {
    type Response = DescribeClientQuotasResponse;

    /// The top-level code (Kafka's `getErrorResponse`).
    fn error_response(&self, _version: i16, refusal: &Rejection) -> Self::Response {
        DescribeClientQuotasResponse::default()
            .with_error_code(refusal.code.0)
            .with_error_message(Some(sb(refusal.message.clone())))
    }
}

impl ErrorCodes for DescribeClientQuotasResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(ErrorItem<'a>)) {
        f(ErrorItem::top(self.error_code));
    }
}

impl RefusableRequest for AlterClientQuotasRequest {
    type Response = AlterClientQuotasResponse;

    /// Every entry, with its entity (Kafka's `getErrorResponse`).
    fn error_response(&self, _version: i16, refusal: &Rejection) -> Self::Response {
        AlterClientQuotasResponse::default().with_entries(
            self.entries
                .iter()
                .map(|entry| {
                    AlterResult::default()
                        .with_error_code(refusal.code.0)
                        .with_error_message(Some(sb(refusal.message.clone())))
                        .with_entity(
                            entry
                                .entity
                                .iter()
                                .map(|e| {
                                    AlterEntity::default()
                                        .with_entity_type(e.entity_type.clone())
                                        .with_entity_name(e.entity_name.clone())
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
    }
}

impl ErrorCodes for AlterClientQuotasResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(ErrorItem<'a>)) {
        for e in &self.entries {
            f(ErrorItem::top(e.error_code));
        }
    }
}
