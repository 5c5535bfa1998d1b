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
//!   stored together (unless `validate_only`). An `ip` entity (KIP-612) stands alone
//!   (beside `user` or `client-id` it is INVALID_REQUEST), names an IP address or is the
//!   default, and takes `connection_creation_rate` only, a whole number up to 2^31 - 1;
//!   `connection_creation_rate` is no key of a user or client id (INVALID_REQUEST either
//!   way). Kafka also accepts a host name it can resolve; Rafka takes IP literals only
//!   (no DNS lookup on the request path, no address that changes under the quota) and
//!   keeps an address in its canonical text form (`::1` for `0:0:0:0:0:0:0:1`), which is
//!   also how it is described and matched.
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
        ENTITY_IP => entity.ip.as_ref(),
        _ => None,
    }?;
    Some(match part {
        EntityName::Default => None,
        EntityName::Named(n) => Some(n.as_str()),
    })
}

/// An entity as the wire names it: (type, name or `None` for the default), user first.
fn wire_entity(entity: &QuotaEntity) -> Vec<(&'static str, Option<&str>)> {
    [ENTITY_USER, ENTITY_CLIENT_ID, ENTITY_IP]
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
                Some(m) => {
                    // An address matches in its canonical form.
                    let m = match (t, m.parse::<std::net::IpAddr>()) {
                        (ENTITY_IP, Ok(a)) => a.to_canonical().to_string(),
                        _ => m,
                    };
                    f.exact.push((t.into(), Some(m)))
                }
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
    let mut entity = QuotaEntity::client(None, None);
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
                entity.ip = Some(match name {
                    EntityName::Default => EntityName::Default,
                    EntityName::Named(n) => match n.parse::<std::net::IpAddr>() {
                        Ok(a) => EntityName::Named(a.to_canonical().to_string()),
                        Err(_) => {
                            return Err(invalid(format!(
                                "{n} is not a valid IP or resolvable host."
                            )))
                        }
                    },
                })
            }
            _ => return Err(invalid(format!("Unhandled client quota entity type: {t}"))),
        }
    }
    let is_ip = entity.ip.is_some();
    if is_ip && (entity.user.is_some() || entity.client_id.is_some()) {
        return Err(invalid(
            "Invalid quota entity combination, IP entity should not be combined with User or \
             ClientId",
        ));
    }
    let mut ops: Vec<(QuotaKind, Option<f64>)> = Vec::new();
    for op in &entry.ops {
        let key = op.key.as_str();
        let kind = QuotaKind::from_name(key)
            .filter(|k| (*k == QuotaKind::ConnectionCreationRate) == is_ip)
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
        if kind == QuotaKind::ConnectionCreationRate && (v.trunc() != v || v > i32::MAX as f64) {
            return Err(invalid(format!("Configuration {key} must be a Int value")));
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

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn entry(entity: &[(&str, Option<&str>)], ops: &[(&str, f64)]) -> EntryData {
        EntryData::default()
            .with_entity(
                entity
                    .iter()
                    .map(|(t, n)| {
                        EntityData::default()
                            .with_entity_type(sb(*t))
                            .with_entity_name(n.map(sb))
                    })
                    .collect(),
            )
            .with_ops(
                ops.iter()
                    .map(|(k, v)| OpData::default().with_key(sb(*k)).with_value(*v))
                    .collect(),
            )
    }

    fn rate(v: f64) -> [(&'static str, f64); 1] {
        [("connection_creation_rate", v)]
    }

    #[test]
    fn ip_entities_take_connection_creation_rate_only_and_stand_alone() {
        let ok = alteration(&entry(&[("ip", Some("127.0.0.1"))], &rate(2.0))).unwrap();
        assert_eq!(
            ok.entity,
            QuotaEntity::ip(Some("127.0.0.1".parse().unwrap()))
        );
        assert_eq!(ok.ops, vec![(QuotaKind::ConnectionCreationRate, Some(2.0))]);
        let default = alteration(&entry(&[("ip", None)], &rate(0.0))).unwrap();
        assert_eq!(default.entity, QuotaEntity::ip(None));
        // Kept canonical.
        let long = alteration(&entry(&[("ip", Some("0:0:0:0:0:0:0:1"))], &rate(1.0))).unwrap();
        assert_eq!(long.entity.ip, Some(EntityName::Named("::1".into())));
        for bad in [
            entry(
                &[("ip", Some("127.0.0.1")), ("user", Some("a"))],
                &rate(1.0),
            ),
            entry(&[("client-id", None), ("ip", None)], &rate(1.0)),
            entry(&[("ip", Some("127.0.0.1"))], &[("producer_byte_rate", 1.0)]),
            entry(&[("user", Some("a"))], &rate(1.0)),
            entry(&[("client-id", None)], &rate(1.0)),
            entry(&[("ip", Some("not-an-ip"))], &rate(1.0)),
            entry(&[("ip", Some("256.0.0.1"))], &rate(1.0)),
            entry(&[("ip", Some("example.com"))], &rate(1.0)),
            entry(&[("ip", Some(""))], &rate(1.0)),
            entry(&[("ip", None)], &rate(1.5)),
            entry(&[("ip", None)], &rate(-1.0)),
            entry(&[("ip", None)], &rate(3e9)),
        ] {
            let e = alteration(&bad).unwrap_err();
            assert_eq!(e.0, ResponseError::InvalidRequest, "{bad:?}: {}", e.1);
        }
    }

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
            any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        ]
    }

    proptest! {
        /// Every address (IPv4, IPv6 in any of its spellings Rust prints) and the default,
        /// with any whole rate in Kafka's range, is accepted, as the entity of that address.
        #[test]
        fn every_valid_ip_entity_is_accepted(
            ip in proptest::option::of(any_ip()),
            value in 0u32..=i32::MAX as u32,
        ) {
            let name = ip.map(|a| a.to_string());
            let got = alteration(&entry(&[("ip", name.as_deref())], &rate(value as f64)));
            let got = got.map_err(|e| e.1).unwrap();
            prop_assert_eq!(got.entity, QuotaEntity::ip(ip));
            prop_assert_eq!(
                got.ops,
                vec![(QuotaKind::ConnectionCreationRate, Some(value as f64))]
            );
        }
    }
}
