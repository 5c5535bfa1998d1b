//! CreateAcls, DescribeAcls and DeleteAcls v1–3 (the versions Kafka 4 serves) over the
//! broker's [`crate::acl_store::AclStore`]. Without an authorizer they answer
//! SECURITY_DISABLED, as Kafka does; with one, changing ACLs needs ALTER and reading them
//! DESCRIBE on the cluster (CLUSTER_AUTHORIZATION_FAILED otherwise).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse, ResponseKind,
};
use kafka_protocol::ResponseError;

use rafka_hooks::{RequestContext, Session};

use super::sb;
use crate::acl::{self, AclBinding, AclFilter, Operation, Resource, ResourceType, WireAcl};
use crate::shared::Shared;

/// The refusal every item of an ACL request gets, if any: SECURITY_DISABLED without an
/// authorizer, CLUSTER_AUTHORIZATION_FAILED without `op` on the cluster.
fn refusal(shared: &Shared, session: &Session, op: Operation) -> Option<(ResponseError, String)> {
    if !shared.acls.enabled() {
        return Some((
            ResponseError::SecurityDisabled,
            "No Authorizer is configured.".into(),
        ));
    }
    let cluster = Resource {
        resource_type: ResourceType::Cluster,
        name: acl::CLUSTER_NAME,
    };
    (!shared.acls.authorize(
        &session.principal.to_string(),
        session.peer.ip(),
        op,
        cluster,
    ))
    .then(|| {
        (
            ResponseError::ClusterAuthorizationFailed,
            format!(
                "{} may not {} the cluster's ACLs",
                session.principal,
                match op {
                    Operation::Describe => "describe",
                    _ => "alter",
                }
            ),
        )
    })
}

/// CreateAcls: each creation is checked alone (INVALID_REQUEST with the reason); the valid
/// ones are stored together.
pub(crate) fn create(
    shared: &Arc<Shared>,
    req: CreateAclsRequest,
    ctx: &RequestContext,
) -> ResponseKind {
    let result = |e: Option<(ResponseError, String)>| match e {
        None => AclCreationResult::default(),
        Some((code, msg)) => AclCreationResult::default()
            .with_error_code(code.code())
            .with_error_message(Some(sb(msg))),
    };
    if let Some(r) = refusal(shared, &ctx.session, Operation::Alter) {
        return ResponseKind::CreateAcls(
            CreateAclsResponse::default().with_results(
                req.creations
                    .iter()
                    .map(|_| result(Some(r.clone())))
                    .collect(),
            ),
        );
    }
    let checked: Vec<Result<AclBinding, String>> = req
        .creations
        .iter()
        .map(|c| {
            AclBinding::from_wire(&WireAcl {
                resource_type: c.resource_type,
                resource_name: Some(&c.resource_name),
                pattern_type: c.resource_pattern_type,
                principal: Some(&c.principal),
                host: Some(&c.host),
                operation: c.operation,
                permission: c.permission_type,
            })
            .map_err(|e| e.to_string())
        })
        .collect();
    let valid: Vec<AclBinding> = checked
        .iter()
        .filter_map(|c| c.as_ref().ok().cloned())
        .collect();
    let stored = if valid.is_empty() {
        Ok(())
    } else {
        shared.acls.create(valid).map_err(|e| {
            tracing::error!(error = %e, "cannot store ACLs");
            e.to_string()
        })
    };
    let results = checked
        .into_iter()
        .map(|c| match (c, &stored) {
            (Err(msg), _) => result(Some((ResponseError::InvalidRequest, msg))),
            (Ok(_), Err(msg)) => result(Some((ResponseError::UnknownServerError, msg.clone()))),
            (Ok(_), Ok(())) => result(None),
        })
        .collect();
    ResponseKind::CreateAcls(CreateAclsResponse::default().with_results(results))
}

fn filter_of(
    resource_type: i8,
    resource_name: Option<&str>,
    pattern_type: i8,
    principal: Option<&str>,
    host: Option<&str>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, String> {
    AclFilter::from_wire(&WireAcl {
        resource_type,
        resource_name,
        pattern_type,
        principal,
        host,
        operation,
        permission,
    })
    .map_err(|e| e.to_string())
}

/// DescribeAcls: the bindings the filter selects, grouped by resource pattern.
pub(crate) fn describe(
    shared: &Arc<Shared>,
    req: DescribeAclsRequest,
    ctx: &RequestContext,
) -> ResponseKind {
    let fail = |code: ResponseError, msg: String| {
        ResponseKind::DescribeAcls(
            DescribeAclsResponse::default()
                .with_error_code(code.code())
                .with_error_message(Some(sb(msg))),
        )
    };
    if let Some((code, msg)) = refusal(shared, &ctx.session, Operation::Describe) {
        return fail(code, msg);
    }
    let filter = match filter_of(
        req.resource_type_filter,
        req.resource_name_filter.as_deref(),
        req.pattern_type_filter,
        req.principal_filter.as_deref(),
        req.host_filter.as_deref(),
        req.operation,
        req.permission_type,
    ) {
        Ok(f) => f,
        Err(msg) => return fail(ResponseError::InvalidRequest, msg),
    };
    let mut grouped: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for b in shared.acls.current().matching(&filter) {
        grouped
            .entry((
                b.resource_type as i8,
                b.resource_name.clone(),
                b.pattern_type as i8,
            ))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(sb(b.principal))
                    .with_host(sb(b.host))
                    .with_operation(b.operation as i8)
                    .with_permission_type(b.permission as i8),
            );
    }
    let resources = grouped
        .into_iter()
        .map(|((t, name, p), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(t)
                .with_resource_name(sb(name))
                .with_pattern_type(p)
                .with_acls(acls)
        })
        .collect();
    ResponseKind::DescribeAcls(DescribeAclsResponse::default().with_resources(resources))
}

/// DeleteAcls: per filter, the bindings it removed.
pub(crate) fn delete(
    shared: &Arc<Shared>,
    req: DeleteAclsRequest,
    ctx: &RequestContext,
) -> ResponseKind {
    let failed = |code: ResponseError, msg: String| {
        DeleteAclsFilterResult::default()
            .with_error_code(code.code())
            .with_error_message(Some(sb(msg)))
    };
    if let Some((code, msg)) = refusal(shared, &ctx.session, Operation::Alter) {
        return ResponseKind::DeleteAcls(
            DeleteAclsResponse::default().with_filter_results(
                req.filters
                    .iter()
                    .map(|_| failed(code, msg.clone()))
                    .collect(),
            ),
        );
    }
    let checked: Vec<Result<AclFilter, String>> = req
        .filters
        .iter()
        .map(|f| {
            filter_of(
                f.resource_type_filter,
                f.resource_name_filter.as_deref(),
                f.pattern_type_filter,
                f.principal_filter.as_deref(),
                f.host_filter.as_deref(),
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    let valid: Vec<AclFilter> = checked
        .iter()
        .filter_map(|c| c.as_ref().ok().cloned())
        .collect();
    let removed = shared.acls.delete(&valid);
    let mut removed_each = match &removed {
        Ok(r) => r.clone().into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    let results = checked
        .into_iter()
        .map(|c| match (c, &removed) {
            (Err(msg), _) => failed(ResponseError::InvalidRequest, msg),
            (Ok(_), Err(e)) => failed(ResponseError::UnknownServerError, e.to_string()),
            (Ok(_), Ok(_)) => DeleteAclsFilterResult::default().with_matching_acls(
                removed_each
                    .next()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|b| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(b.resource_type as i8)
                            .with_resource_name(sb(b.resource_name))
                            .with_pattern_type(b.pattern_type as i8)
                            .with_principal(sb(b.principal))
                            .with_host(sb(b.host))
                            .with_operation(b.operation as i8)
                            .with_permission_type(b.permission as i8)
                    })
                    .collect(),
            ),
        })
        .collect();
    ResponseKind::DeleteAcls(DeleteAclsResponse::default().with_filter_results(results))
}

impl super::RefusableRequest for CreateAclsRequest {
    type Response = CreateAclsResponse;

    fn error_response(&self, _version: i16, refusal: &rafka_hooks::Rejection) -> Self::Response {
        CreateAclsResponse::default().with_results(
            self.creations
                .iter()
                .map(|_| {
                    AclCreationResult::default()
                        .with_error_code(refusal.code.0)
                        .with_error_message(Some(sb(refusal.message.clone())))
                })
                .collect(),
        )
    }
}

impl super::ErrorCodes for CreateAclsResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(super::ErrorItem<'a>)) {
        for r in &self.results {
            f(super::ErrorItem::top(r.error_code));
        }
    }
}

impl super::RefusableRequest for DescribeAclsRequest {
    type Response = DescribeAclsResponse;

    fn error_response(&self, _version: i16, refusal: &rafka_hooks::Rejection) -> Self::Response {
        DescribeAclsResponse::default()
            .with_error_code(refusal.code.0)
            .with_error_message(Some(sb(refusal.message.clone())))
    }
}

impl super::ErrorCodes for DescribeAclsResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(super::ErrorItem<'a>)) {
        f(super::ErrorItem::top(self.error_code));
    }
}

impl super::RefusableRequest for DeleteAclsRequest {
    type Response = DeleteAclsResponse;

    fn error_response(&self, _version: i16, refusal: &rafka_hooks::Rejection) -> Self::Response {
        DeleteAclsResponse::default().with_filter_results(
            self.filters
                .iter()
                .map(|_| {
                    DeleteAclsFilterResult::default()
                        .with_error_code(refusal.code.0)
                        .with_error_message(Some(sb(refusal.message.clone())))
                })
                .collect(),
        )
    }
}

impl super::ErrorCodes for DeleteAclsResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(super::ErrorItem<'a>)) {
        for r in &self.filter_results {
            f(super::ErrorItem::top(r.error_code));
            for m in &r.matching_acls {
                f(super::ErrorItem::top(m.error_code));
            }
        }
    }
}
