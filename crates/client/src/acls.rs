//! ACLs over the wire: CreateAcls, DescribeAcls and DeleteAcls (v1–3), what `rafka acl`
//! runs. Bindings and filters carry Kafka's codes; [`names`] turns Kafka's names (as
//! `kafka-acls.sh` and the admin clients write them) into codes and back.

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::StrBytes;

use crate::admin::check_with_message;
use crate::client::Client;
use crate::error::ClientError;

/// Versions of the three ACL APIs this client speaks.
const VERSIONS: (i16, i16) = (1, 3);

/// Kafka's codes and names of resource types, pattern types, operations and permissions.
pub mod names {
    /// Resource types (`ANY` only in filters).
    pub const RESOURCE_TYPES: [(i8, &str); 7] = [
        (1, "Any"),
        (2, "Topic"),
        (3, "Group"),
        (4, "Cluster"),
        (5, "TransactionalId"),
        (6, "DelegationToken"),
        (7, "User"),
    ];
    /// Pattern types (`ANY` and `MATCH` only in filters).
    pub const PATTERN_TYPES: [(i8, &str); 4] =
        [(1, "ANY"), (2, "MATCH"), (3, "LITERAL"), (4, "PREFIXED")];
    /// Operations (`ANY` only in filters).
    pub const OPERATIONS: [(i8, &str); 14] = [
        (1, "ANY"),
        (2, "ALL"),
        (3, "READ"),
        (4, "WRITE"),
        (5, "CREATE"),
        (6, "DELETE"),
        (7, "ALTER"),
        (8, "DESCRIBE"),
        (9, "CLUSTER_ACTION"),
        (10, "DESCRIBE_CONFIGS"),
        (11, "ALTER_CONFIGS"),
        (12, "IDEMPOTENT_WRITE"),
        (13, "CREATE_TOKENS"),
        (14, "DESCRIBE_TOKENS"),
    ];
    /// Permissions (`ANY` only in filters).
    pub const PERMISSIONS: [(i8, &str); 3] = [(1, "ANY"), (2, "DENY"), (3, "ALLOW")];

    /// The code of `name` in `table` (any case, `-` for `_`).
    pub fn code(table: &[(i8, &str)], name: &str) -> Option<i8> {
        let name = name.replace('-', "_");
        table
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(&name))
            .map(|(c, _)| *c)
    }

    /// The name of `code` in `table` (`UNKNOWN` for a code the table lacks).
    pub fn name(table: &[(i8, &'static str)], code: i8) -> &'static str {
        table
            .iter()
            .find(|(c, _)| *c == code)
            .map_or("UNKNOWN", |(_, n)| n)
    }
}

/// One binding: a resource pattern and an access control entry, in Kafka's codes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AclBinding {
    /// Resource type code (TOPIC 2, GROUP 3, CLUSTER 4, TRANSACTIONAL_ID 5, ...).
    pub resource_type: i8,
    /// Resource name (`kafka-cluster` for the cluster, `*` for every resource).
    pub resource_name: String,
    /// Pattern type code (LITERAL 3, PREFIXED 4).
    pub pattern_type: i8,
    /// `Type:name`, e.g. `User:alice`, `User:*`.
    pub principal: String,
    /// A host address or `*`.
    pub host: String,
    /// Operation code (READ 3, WRITE 4, ...).
    pub operation: i8,
    /// Permission code (DENY 2, ALLOW 3).
    pub permission: i8,
}

/// A filter over bindings; `None` names match anything, code 1 is Kafka's ANY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclBindingFilter {
    /// Resource type code, 1 for any.
    pub resource_type: i8,
    /// Resource name, `None` for any.
    pub resource_name: Option<String>,
    /// Pattern type code: ANY 1, MATCH 2 (every pattern covering the name), LITERAL 3,
    /// PREFIXED 4.
    pub pattern_type: i8,
    /// Principal, `None` for any.
    pub principal: Option<String>,
    /// Host, `None` for any.
    pub host: Option<String>,
    /// Operation code, 1 for any.
    pub operation: i8,
    /// Permission code, 1 for any.
    pub permission: i8,
}

impl Default for AclBindingFilter {
    /// Every binding.
    fn default() -> Self {
        AclBindingFilter {
            resource_type: 1,
            resource_name: None,
            pattern_type: 1,
            principal: None,
            host: None,
            operation: 1,
            permission: 1,
        }
    }
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl Client {
    /// Creates `bindings` (those present already stay); fails on the first refused one.
    pub async fn create_acls(&self, bindings: &[AclBinding]) -> Result<(), ClientError> {
        let req = CreateAclsRequest::default().with_creations(
            bindings
                .iter()
                .map(|b| {
                    AclCreation::default()
                        .with_resource_type(b.resource_type)
                        .with_resource_name(sb(&b.resource_name))
                        .with_resource_pattern_type(b.pattern_type)
                        .with_principal(sb(&b.principal))
                        .with_host(sb(&b.host))
                        .with_operation(b.operation)
                        .with_permission_type(b.permission)
                })
                .collect(),
        );
        let resp = self.call_any(&req, VERSIONS).await?;
        for (r, b) in resp.results.into_iter().zip(bindings) {
            check_with_message(r.error_code, r.error_message, || {
                format!("create ACL {b:?}")
            })?;
        }
        Ok(())
    }

    /// The bindings `filter` selects, sorted.
    pub async fn describe_acls(
        &self,
        filter: &AclBindingFilter,
    ) -> Result<Vec<AclBinding>, ClientError> {
        let req = DescribeAclsRequest::default()
            .with_resource_type_filter(filter.resource_type)
            .with_resource_name_filter(filter.resource_name.as_deref().map(sb))
            .with_pattern_type_filter(filter.pattern_type)
            .with_principal_filter(filter.principal.as_deref().map(sb))
            .with_host_filter(filter.host.as_deref().map(sb))
            .with_operation(filter.operation)
            .with_permission_type(filter.permission);
        let resp = self.call_any(&req, VERSIONS).await?;
        check_with_message(resp.error_code, resp.error_message, || {
            "describe ACLs".into()
        })?;
        let mut out: Vec<AclBinding> = resp
            .resources
            .iter()
            .flat_map(|r| {
                r.acls.iter().map(|a| AclBinding {
                    resource_type: r.resource_type,
                    resource_name: r.resource_name.to_string(),
                    pattern_type: r.pattern_type,
                    principal: a.principal.to_string(),
                    host: a.host.to_string(),
                    operation: a.operation,
                    permission: a.permission_type,
                })
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Deletes the bindings `filter` selects; returns them, sorted.
    pub async fn delete_acls(
        &self,
        filter: &AclBindingFilter,
    ) -> Result<Vec<AclBinding>, ClientError> {
        let req = DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()
            .with_resource_type_filter(filter.resource_type)
            .with_resource_name_filter(filter.resource_name.as_deref().map(sb))
            .with_pattern_type_filter(filter.pattern_type)
            .with_principal_filter(filter.principal.as_deref().map(sb))
            .with_host_filter(filter.host.as_deref().map(sb))
            .with_operation(filter.operation)
            .with_permission_type(filter.permission)]);
        let resp = self.call_any(&req, VERSIONS).await?;
        let mut out = Vec::new();
        for r in resp.filter_results {
            check_with_message(r.error_code, r.error_message, || "delete ACLs".into())?;
            for m in r.matching_acls {
                check_with_message(m.error_code, m.error_message, || "delete an ACL".into())?;
                out.push(AclBinding {
                    resource_type: m.resource_type,
                    resource_name: m.resource_name.to_string(),
                    pattern_type: m.pattern_type,
                    principal: m.principal.to_string(),
                    host: m.host.to_string(),
                    operation: m.operation,
                    permission: m.permission_type,
                });
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::names::*;

    #[test]
    fn names_and_codes_round_trip() {
        for table in [
            &RESOURCE_TYPES[..],
            &PATTERN_TYPES,
            &OPERATIONS,
            &PERMISSIONS,
        ] {
            for (c, n) in table {
                assert_eq!(code(table, n), Some(*c));
                assert_eq!(name(table, *c), *n);
            }
        }
        assert_eq!(code(&OPERATIONS, "describe-configs"), Some(10));
        assert_eq!(code(&RESOURCE_TYPES, "topic"), Some(2));
        assert_eq!(code(&OPERATIONS, "nope"), None);
        assert_eq!(name(&PERMISSIONS, 9), "UNKNOWN");
    }
}
