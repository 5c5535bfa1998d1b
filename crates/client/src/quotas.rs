//! Client quotas over the wire (KIP-546): DescribeClientQuotas and AlterClientQuotas, what
//! `rafka quota` runs. An entity is a list of (entity type, name) with `None` for the
//! type's `<default>`; Kafka's types are `user`, `client-id` and `ip`.

use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::{AlterClientQuotasRequest, DescribeClientQuotasRequest};
use kafka_protocol::protocol::StrBytes;

use crate::admin::check_with_message;
use crate::client::Client;
use crate::error::ClientError;

/// DescribeClientQuotas versions this client speaks.
const DESCRIBE_VERSIONS: (i16, i16) = (0, 1);
/// AlterClientQuotas versions this client speaks.
const ALTER_VERSIONS: (i16, i16) = (0, 1);

/// A quota entity: (entity type, name), `None` for the type's default.
pub type QuotaEntity = Vec<(String, Option<String>)>;

/// How a describe filter component matches its entity type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaMatch {
    /// This name.
    Exact(String),
    /// The `<default>` entity.
    Default,
    /// Any entity with this type.
    Any,
}

/// An entity's quotas as the broker describes them.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientQuotas {
    /// The entity.
    pub entity: QuotaEntity,
    /// Quota names (`producer_byte_rate`, ...) and values.
    pub values: Vec<(String, f64)>,
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl Client {
    /// The quotas of the entities matching every component of `filter` (all entities
    /// when it is empty and not `strict`); with `strict`, only entities with no other
    /// component.
    pub async fn describe_client_quotas(
        &self,
        filter: &[(String, QuotaMatch)],
        strict: bool,
    ) -> Result<Vec<ClientQuotas>, ClientError> {
        let req = DescribeClientQuotasRequest::default()
            .with_components(
                filter
                    .iter()
                    .map(|(t, m)| {
                        let c = ComponentData::default().with_entity_type(sb(t));
                        match m {
                            QuotaMatch::Exact(n) => c.with_match_type(0).with_match(Some(sb(n))),
                            // No match string (the field's default is an empty one, which
                            // the broker refuses beside these match types, as Kafka does).
                            QuotaMatch::Default => c.with_match_type(1).with_match(None),
                            QuotaMatch::Any => c.with_match_type(2).with_match(None),
                        }
                    })
                    .collect(),
            )
            .with_strict(strict);
        let resp = self.call_any(&req, DESCRIBE_VERSIONS).await?;
        check_with_message(resp.error_code, resp.error_message, || {
            "describe client quotas".into()
        })?;
        Ok(resp
            .entries
            .unwrap_or_default()
            .into_iter()
            .map(|e| ClientQuotas {
                entity: e
                    .entity
                    .iter()
                    .map(|c| {
                        (
                            c.entity_type.to_string(),
                            c.entity_name.as_ref().map(|n| n.to_string()),
                        )
                    })
                    .collect(),
                values: e
                    .values
                    .iter()
                    .map(|v| (v.key.to_string(), v.value))
                    .collect(),
            })
            .collect())
    }

    /// Sets (`Some`) or removes (`None`) quotas of `entity`.
    pub async fn alter_client_quotas(
        &self,
        entity: &QuotaEntity,
        ops: &[(String, Option<f64>)],
        validate_only: bool,
    ) -> Result<(), ClientError> {
        let req = AlterClientQuotasRequest::default()
            .with_entries(vec![EntryData::default()
                .with_entity(
                    entity
                        .iter()
                        .map(|(t, n)| {
                            EntityData::default()
                                .with_entity_type(sb(t))
                                .with_entity_name(n.as_deref().map(sb))
                        })
                        .collect(),
                )
                .with_ops(
                    ops.iter()
                        .map(|(k, v)| {
                            OpData::default()
                                .with_key(sb(k))
                                .with_value(v.unwrap_or(0.0))
                                .with_remove(v.is_none())
                        })
                        .collect(),
                )])
            .with_validate_only(validate_only);
        let conn = self.controller().await?;
        let resp = self.call_on(&conn, &req, ALTER_VERSIONS).await?;
        for e in resp.entries {
            check_with_message(e.error_code, e.error_message, || {
                format!("alter client quotas of {entity:?}")
            })?;
        }
        Ok(())
    }
}
