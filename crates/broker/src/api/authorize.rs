//! Kafka's authorization of every served API, as its `KafkaApis` checks each request
//! before handling it: which operation on which resource each API needs and which error a
//! refusal carries. [`check`] looks at a request before its handler runs and says what
//! runs, what is answered refused item by item (a topic, a group, a config resource) and
//! which listing is filtered afterwards ([`Filter`]), so nothing of a refused part reaches
//! a handler: no topic is created, no offset committed, no record written.
//!
//! Rules, by API (T = topic, G = group, C = cluster, X = transactional id):
//! - Produce: WRITE X for transactional records (TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
//!   WRITE T per topic (TOPIC_AUTHORIZATION_FAILED).
//! - Fetch: READ T per topic (CLUSTER_ACTION C for a replica, checked here). READ is
//!   checked by `api/fetch.rs` over the partitions the fetch reads, which for an
//!   incremental fetch include the session's partitions it does not name. ListOffsets,
//!   OffsetForLeaderEpoch: DESCRIBE T per topic. Metadata, DescribeTopicPartitions:
//!   DESCRIBE T; named and refused → TOPIC_AUTHORIZATION_FAILED, listings filtered;
//!   auto-creation needs CREATE on C or T.
//! - JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, ConsumerGroupHeartbeat:
//!   READ G (GROUP_AUTHORIZATION_FAILED), then READ T per committed topic (DESCRIBE T for
//!   a consumer's subscription). OffsetFetch, DescribeGroups, ConsumerGroupDescribe,
//!   FindCoordinator: DESCRIBE G (or X). DeleteGroups, OffsetDelete: DELETE G. ListGroups:
//!   the groups the principal may DESCRIBE, all with DESCRIBE C.
//! - CreateTopics: CREATE C or T. DeleteTopics, DeleteRecords: DELETE T. CreatePartitions:
//!   ALTER T. Describe/Alter/IncrementalAlterConfigs: DESCRIBE_CONFIGS/ALTER_CONFIGS on T,
//!   C (a broker or broker logger) or G. DescribeLogDirs: DESCRIBE C.
//!   Describe/AlterUserScramCredentials: DESCRIBE/ALTER C. Describe/AlterClientQuotas:
//!   DESCRIBE_CONFIGS/ALTER_CONFIGS C.
//! - InitProducerId: WRITE X, or without one IDEMPOTENT_WRITE C or WRITE on any topic
//!   (KIP-679; CLUSTER_AUTHORIZATION_FAILED). AddPartitionsToTxn: WRITE X and WRITE T (a
//!   refused topic fails the whole request, the others OPERATION_NOT_ATTEMPTED); v4+
//!   CLUSTER_ACTION C. AddOffsetsToTxn: WRITE X, READ G. EndTxn: WRITE X. TxnOffsetCommit:
//!   WRITE X, READ G, READ T. DescribeTransactions: DESCRIBE X; ListTransactions filtered
//!   by it. DescribeProducers: READ T. WriteTxnMarkers: CLUSTER_ACTION C.
//! - Create/Describe/DeleteAcls check ALTER/DESCRIBE C in `api/acls.rs`; ApiVersions,
//!   SaslHandshake, SaslAuthenticate and DescribeCluster need nothing.
//!
//! Without an authorizer every check passes at the cost of one flag test. A denial is
//! logged on the `rafka::authorizer` target (Kafka's authorizer logger) and counted in
//! `rafka_authorization_failures_total{api,resource_type}`; the refused items' codes reach
//! `on_response` hooks (so `audit_log` records them). Filtering a listing is not a denial.

use std::collections::BTreeMap;

use kafka_protocol::messages::{RequestKind, ResponseKind};
use kafka_protocol::ResponseError;

use rafka_hooks::{ErrorCode, Rejection, RequestContext};

use crate::acl::{Operation, Resource, ResourceType as Rt, CLUSTER_NAME};
use crate::authz;
use crate::shared::Shared;

/// The authorizer as one request sees it: who asks, from where, for which API.
pub(crate) struct Authz<'a> {
    shared: &'a Shared,
    ctx: &'a RequestContext,
    /// `Type:name`; `None` when no authorizer is configured (everything is allowed).
    principal: Option<String>,
}

impl<'a> Authz<'a> {
    pub(crate) fn new(shared: &'a Shared, ctx: &'a RequestContext) -> Authz<'a> {
        let principal = shared
            .acls
            .enabled()
            .then(|| ctx.session.principal.to_string());
        Authz {
            shared,
            ctx,
            principal,
        }
    }

    /// Whether an authorizer decides at all.
    pub(crate) fn on(&self) -> bool {
        self.principal.is_some()
    }

    /// Whether the principal may do `op` to `name` of type `rt`, without logging a denial
    /// (for listings and authorized-operation fields).
    pub(crate) fn may(&self, op: Operation, rt: Rt, name: &str) -> bool {
        let Some(p) = &self.principal else {
            return true;
        };
        let resource = Resource {
            resource_type: rt,
            name,
        };
        self.shared
            .acls
            .authorize(p, self.ctx.session.peer.ip(), op, resource)
    }

    /// Like [`Authz::may`], but a denial is logged and counted.
    pub(crate) fn allows(&self, op: Operation, rt: Rt, name: &str) -> bool {
        if self.may(op, rt, name) {
            return true;
        }
        self.denied(op, rt, name);
        false
    }

    /// `op` on the cluster, a denial logged and counted.
    pub(crate) fn cluster(&self, op: Operation) -> bool {
        self.allows(op, Rt::Cluster, CLUSTER_NAME)
    }

    fn denied(&self, op: Operation, rt: Rt, name: &str) {
        let api = self.ctx.api.name();
        tracing::info!(
            target: "rafka::authorizer",
            principal = self.principal.as_deref().unwrap_or_default(),
            host = %self.ctx.session.peer.ip(),
            operation = op.name(),
            resource_type = rt.name(),
            resource = name,
            api,
            "authorization denied"
        );
        self.shared.metrics.authorization_failure(api, rt.name());
    }

    /// Kafka's authorized-operations field (KIP-430) for `name`: the supported operations
    /// the principal may do, or the "omitted" marker when `field` says it was not asked.
    pub(crate) fn operations(&self, rt: Rt, name: &str, field: i32) -> i32 {
        if field == authz::OPERATIONS_OMITTED || !self.on() {
            return field;
        }
        // Kafka reports nothing of a resource the principal may not DESCRIBE.
        if !self.may(Operation::Describe, rt, name) {
            return 0;
        }
        authz::bit_field(
            authz::supported_operations(rt)
                .iter()
                .filter(|op| self.may(**op, rt, name)),
        )
    }

    /// A topic name from a name or, where the entry carries only an id, the id.
    fn topic_name(&self, name: &str, id: uuid::Uuid) -> Option<String> {
        if !name.is_empty() || id.is_nil() {
            return Some(name.to_string());
        }
        self.shared
            .cluster
            .topic_by_id(id)
            .map(|t| t.name.to_string())
    }

    fn topic(&self, op: Operation, name: &str) -> Option<ResponseError> {
        (!self.allows(op, Rt::Topic, name)).then_some(ResponseError::TopicAuthorizationFailed)
    }

    fn group(&self, op: Operation, name: &str) -> Option<ResponseError> {
        (!self.allows(op, Rt::Group, name)).then_some(ResponseError::GroupAuthorizationFailed)
    }

    fn txn(&self, op: Operation, id: &str) -> Option<ResponseError> {
        (!self.allows(op, Rt::TransactionalId, id))
            .then_some(ResponseError::TransactionalIdAuthorizationFailed)
    }

    fn cluster_err(&self, op: Operation) -> Option<ResponseError> {
        (!self.cluster(op)).then_some(ResponseError::ClusterAuthorizationFailed)
    }

    /// KIP-679: IDEMPOTENT_WRITE on the cluster, or WRITE on some topic.
    fn idempotent(&self) -> bool {
        let Some(p) = &self.principal else {
            return true;
        };
        let acls = &self.shared.acls;
        let host = self.ctx.session.peer.ip();
        let cluster = Resource {
            resource_type: Rt::Cluster,
            name: CLUSTER_NAME,
        };
        acls.authorize(p, host, Operation::IdempotentWrite, cluster)
            || acls.authorize_any(p, host, Operation::Write, Rt::Topic)
            || {
                self.denied(Operation::IdempotentWrite, Rt::Cluster, CLUSTER_NAME);
                false
            }
    }
}

/// A listing or field the handler's answer is narrowed to after it ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Filter {
    /// Nothing to narrow.
    None,
    /// Metadata: topics the principal may not DESCRIBE are dropped from a listing, and
    /// authorized-operation fields computed.
    Topics,
    /// DescribeTopicPartitions: like `Topics`; a named topic is refused in place.
    TopicPartitions {
        /// Whether the request asked for every topic.
        listing: bool,
    },
    /// ListGroups: groups the principal may not DESCRIBE are dropped (unless DESCRIBE C).
    Groups,
    /// ListTransactions: ids the principal may not DESCRIBE are dropped.
    Transactions,
    /// OffsetFetch: topics the principal may not DESCRIBE are dropped where all were asked
    /// for, refused (TOPIC_AUTHORIZATION_FAILED per partition) where named.
    OffsetFetch {
        /// v0–7: whether the request asked for every topic.
        listing: bool,
        /// v8+: the groups whose request asked for every topic.
        listing_groups: Vec<String>,
    },
    /// DescribeGroups, ConsumerGroupDescribe, DescribeCluster: authorized operations.
    Operations,
}

/// What of a request runs, per [`check`].
#[derive(Debug)]
pub(crate) enum Checked {
    /// Run `req`; merge the refused parts' error answers into its answer; narrow by
    /// `filter`.
    Run {
        req: RequestKind,
        refused: Vec<(RequestKind, Rejection)>,
        filter: Filter,
    },
    /// Nothing runs: the API's error answer for the whole request.
    Refuse(RequestKind, Rejection),
    /// Nothing runs: an empty answer with the refused parts' error answers merged in.
    RefuseItems(Vec<(RequestKind, Rejection)>),
}

fn rejection(e: ResponseError) -> Rejection {
    Rejection {
        code: ErrorCode(e.code()),
        message: e.to_string(),
        record_errors: Vec::new(),
    }
}

fn run(req: RequestKind) -> Checked {
    Checked::Run {
        req,
        refused: Vec::new(),
        filter: Filter::None,
    }
}

/// `req` refused whole with `e`, or run.
fn gate(req: RequestKind, e: Option<ResponseError>) -> Checked {
    match e {
        Some(e) => Checked::Refuse(req, rejection(e)),
        None => run(req),
    }
}

/// Splits the items of `req` (the vector `items` selects) by `refusal`: the request with
/// the items that pass runs, those refused are answered with their API's error answer,
/// one per error code.
fn split<R, T>(
    mut req: R,
    items: impl Fn(&mut R) -> &mut Vec<T>,
    mut refusal: impl FnMut(&T) -> Option<ResponseError>,
    wrap: impl Fn(R) -> RequestKind,
) -> Checked
where
    R: Clone,
{
    let all = std::mem::take(items(&mut req));
    let mut kept = Vec::new();
    let mut refused: BTreeMap<i16, (ResponseError, Vec<T>)> = BTreeMap::new();
    for item in all {
        match refusal(&item) {
            None => kept.push(item),
            Some(e) => refused
                .entry(e.code())
                .or_insert((e, Vec::new()))
                .1
                .push(item),
        }
    }
    let refused: Vec<(RequestKind, Rejection)> = refused
        .into_values()
        .map(|(e, part)| {
            let mut r = req.clone();
            *items(&mut r) = part;
            (wrap(r), rejection(e))
        })
        .collect();
    if kept.is_empty() && !refused.is_empty() {
        return Checked::RefuseItems(refused);
    }
    *items(&mut req) = kept;
    Checked::Run {
        req: wrap(req),
        refused,
        filter: Filter::None,
    }
}

/// Replaces the filter of a [`Checked::Run`].
fn with_filter(c: Checked, f: Filter) -> Checked {
    match c {
        Checked::Run { req, refused, .. } => Checked::Run {
            req,
            refused,
            filter: f,
        },
        other => other,
    }
}

/// The authorization of `req` (see the module docs).
pub(crate) fn check(a: &Authz<'_>, req: RequestKind, version: i16) -> Checked {
    use Operation::*;
    use RequestKind as K;
    if !a.on() {
        return run(req);
    }
    match req {
        K::ApiVersions(_)
        | K::SaslHandshake(_)
        | K::SaslAuthenticate(_)
        | K::CreateAcls(_)
        | K::DescribeAcls(_)
        | K::DeleteAcls(_) => run(req),
        K::DescribeCluster(_) => with_filter(run(req), Filter::Operations),
        K::Produce(r) => {
            // Kafka's rule: transactional records need WRITE on the request's
            // transactional id (and one to be named at all).
            let transactional = r.topic_data.iter().any(|t| {
                t.partition_data.iter().any(|p| {
                    p.records.clone().is_some_and(|b| {
                        rafka_core::RecordBatch::split_all(b)
                            .is_ok_and(|bs| bs.iter().any(|b| b.is_transactional()))
                    })
                })
            });
            let e = match &r.transactional_id {
                _ if !transactional => None,
                Some(id) => a.txn(Write, id),
                None => Some(ResponseError::TransactionalIdAuthorizationFailed),
            };
            if e.is_some() {
                return gate(K::Produce(r), e);
            }
            split(
                r,
                |r| &mut r.topic_data,
                |t| {
                    a.topic_name(&t.name, t.topic_id)
                        .and_then(|n| a.topic(Write, &n))
                },
                K::Produce,
            )
        }
        K::Fetch(r) => {
            if r.replica_id.0 >= 0 || r.replica_state.replica_id.0 >= 0 {
                return gate(K::Fetch(r), a.cluster_err(ClusterAction));
            }
            // READ on each topic: the handler checks it, over the partitions the fetch
            // reads (a fetch session's, not only those the request names).
            run(K::Fetch(r))
        }
        K::ListOffsets(r) => split(
            r,
            |r| &mut r.topics,
            |t| a.topic(Describe, &t.name),
            K::ListOffsets,
        ),
        K::OffsetForLeaderEpoch(r) => {
            if r.replica_id.0 >= 0 {
                let e = a.cluster_err(ClusterAction);
                return gate(K::OffsetForLeaderEpoch(r), e);
            }
            split(
                r,
                |r| &mut r.topics,
                |t| a.topic(Describe, &t.topic),
                K::OffsetForLeaderEpoch,
            )
        }
        K::Metadata(mut r) => {
            let allow_create = (version < 4 || r.allow_auto_topic_creation)
                && a.shared.config.broker.auto_create_topics_enable;
            let listing = match &r.topics {
                None => true,
                Some(l) => l.is_empty() && version == 0,
            };
            if listing {
                return with_filter(run(K::Metadata(r)), Filter::Topics);
            }
            let Some(mut topics) = r.topics.take() else {
                return with_filter(run(K::Metadata(r)), Filter::Topics);
            };
            let mut refused = Vec::new();
            topics.retain(|t| {
                let name = match &t.name {
                    Some(n) => a.topic_name(n, t.topic_id),
                    None => a.topic_name("", t.topic_id),
                };
                let Some(name) = name else {
                    return true; // an unknown id: the handler answers UNKNOWN_TOPIC_ID
                };
                let ok = a.allows(Describe, Rt::Topic, &name)
                    && (!allow_create
                        || a.shared.cluster.topic(&name).is_some()
                        || a.may(Create, Rt::Cluster, CLUSTER_NAME)
                        || a.allows(Create, Rt::Topic, &name));
                if !ok {
                    refused.push(t.clone());
                }
                ok
            });
            let refused_req = (!refused.is_empty()).then(|| {
                let mut q = r.clone();
                q.topics = Some(refused);
                (
                    K::Metadata(q),
                    rejection(ResponseError::TopicAuthorizationFailed),
                )
            });
            if topics.is_empty() && version == 0 {
                // An empty v0 list means every topic: answer the refusals alone.
                return Checked::RefuseItems(refused_req.into_iter().collect());
            }
            r.topics = Some(topics);
            Checked::Run {
                req: K::Metadata(r),
                refused: refused_req.into_iter().collect(),
                filter: Filter::Topics,
            }
        }
        K::DescribeTopicPartitions(ref r) => {
            let listing = r.topics.is_empty();
            with_filter(run(req), Filter::TopicPartitions { listing })
        }
        K::JoinGroup(ref r) => {
            let e = a.group(Read, &r.group_id);
            gate(req, e)
        }
        K::SyncGroup(ref r) => {
            let e = a.group(Read, &r.group_id);
            gate(req, e)
        }
        K::Heartbeat(ref r) => {
            let e = a.group(Read, &r.group_id);
            gate(req, e)
        }
        K::LeaveGroup(ref r) => {
            let e = a.group(Read, &r.group_id);
            gate(req, e)
        }
        K::OffsetCommit(r) => {
            let e = a.group(Read, &r.group_id);
            if e.is_some() {
                return gate(K::OffsetCommit(r), e);
            }
            split(
                r,
                |r| &mut r.topics,
                |t| {
                    a.topic_name(&t.name, t.topic_id)
                        .and_then(|n| a.topic(Read, &n))
                },
                K::OffsetCommit,
            )
        }
        K::OffsetFetch(r) => {
            let filter = Filter::OffsetFetch {
                listing: r.topics.is_none(),
                listing_groups: r
                    .groups
                    .iter()
                    .filter(|g| g.topics.is_none())
                    .map(|g| g.group_id.to_string())
                    .collect(),
            };
            let c = if version < 8 {
                let e = a.group(Describe, &r.group_id);
                gate(K::OffsetFetch(r), e)
            } else {
                split(
                    r,
                    |r| &mut r.groups,
                    |g| a.group(Describe, &g.group_id),
                    K::OffsetFetch,
                )
            };
            with_filter(c, filter)
        }
        K::FindCoordinator(r) => {
            let refusal = |key: &str| match r.key_type {
                0 => a.group(Describe, key),
                1 => a.txn(Describe, key),
                _ => None,
            };
            if version < 4 {
                let e = refusal(&r.key);
                gate(K::FindCoordinator(r.clone()), e)
            } else {
                let r2 = r.clone();
                split(
                    r2,
                    |r| &mut r.coordinator_keys,
                    |k| refusal(k),
                    K::FindCoordinator,
                )
            }
        }
        K::DescribeGroups(r) => with_filter(
            split(
                r,
                |r| &mut r.groups,
                |g| a.group(Describe, g),
                K::DescribeGroups,
            ),
            Filter::Operations,
        ),
        K::ConsumerGroupDescribe(r) => with_filter(
            split(
                r,
                |r| &mut r.group_ids,
                |g| a.group(Describe, g),
                K::ConsumerGroupDescribe,
            ),
            Filter::Operations,
        ),
        K::ListGroups(_) => with_filter(run(req), Filter::Groups),
        K::DeleteGroups(r) => split(
            r,
            |r| &mut r.groups_names,
            |g| a.group(Delete, g),
            K::DeleteGroups,
        ),
        K::OffsetDelete(r) => {
            let e = a.group(Delete, &r.group_id);
            if e.is_some() {
                return gate(K::OffsetDelete(r), e);
            }
            split(
                r,
                |r| &mut r.topics,
                |t| a.topic(Read, &t.name),
                K::OffsetDelete,
            )
        }
        K::ConsumerGroupHeartbeat(r) => {
            let mut e = a.group(Read, &r.group_id);
            if e.is_none() {
                // Kafka refuses a subscription naming a topic the member may not DESCRIBE.
                for t in r.subscribed_topic_names.iter().flatten() {
                    e = e.or(a.topic(Describe, t));
                }
            }
            gate(K::ConsumerGroupHeartbeat(r), e)
        }
        K::CreateTopics(r) => {
            let cluster = a.may(Create, Rt::Cluster, CLUSTER_NAME);
            split(
                r,
                |r| &mut r.topics,
                |t| {
                    if cluster {
                        None
                    } else {
                        a.topic(Create, &t.name)
                    }
                },
                K::CreateTopics,
            )
        }
        K::DeleteTopics(r) if version < 6 => split(
            r,
            |r| &mut r.topic_names,
            |t| a.topic(Delete, t),
            K::DeleteTopics,
        ),
        K::DeleteTopics(r) => split(
            r,
            |r| &mut r.topics,
            |t| {
                a.topic_name(t.name.as_deref().map_or("", |n| n), t.topic_id)
                    .and_then(|n| a.topic(Delete, &n))
            },
            K::DeleteTopics,
        ),
        K::DeleteRecords(r) => split(
            r,
            |r| &mut r.topics,
            |t| a.topic(Delete, &t.name),
            K::DeleteRecords,
        ),
        K::CreatePartitions(r) => split(
            r,
            |r| &mut r.topics,
            |t| a.topic(Alter, &t.name),
            K::CreatePartitions,
        ),
        K::DescribeConfigs(r) => split(
            r,
            |r| &mut r.resources,
            |res| config_refusal(a, DescribeConfigs, res.resource_type, &res.resource_name),
            K::DescribeConfigs,
        ),
        K::AlterConfigs(r) => split(
            r,
            |r| &mut r.resources,
            |res| config_refusal(a, AlterConfigs, res.resource_type, &res.resource_name),
            K::AlterConfigs,
        ),
        K::IncrementalAlterConfigs(r) => split(
            r,
            |r| &mut r.resources,
            |res| config_refusal(a, AlterConfigs, res.resource_type, &res.resource_name),
            K::IncrementalAlterConfigs,
        ),
        K::DescribeUserScramCredentials(_) => {
            let e = a.cluster_err(Describe);
            gate(req, e)
        }
        K::AlterUserScramCredentials(_) => {
            let e = a.cluster_err(Alter);
            gate(req, e)
        }
        K::DescribeClientQuotas(_) => {
            let e = a.cluster_err(DescribeConfigs);
            gate(req, e)
        }
        K::AlterClientQuotas(_) => {
            let e = a.cluster_err(AlterConfigs);
            gate(req, e)
        }
        K::DescribeLogDirs(_) => {
            let e = a.cluster_err(Describe);
            gate(req, e)
        }
        K::InitProducerId(ref r) => {
            let e = match &r.transactional_id {
                Some(id) => a.txn(Write, id),
                None if a.idempotent() => None,
                None => Some(ResponseError::ClusterAuthorizationFailed),
            };
            gate(req, e)
        }
        K::AddPartitionsToTxn(r) => {
            if version >= 4 {
                let e = a.cluster_err(ClusterAction);
                return gate(K::AddPartitionsToTxn(r), e);
            }
            let e = a.txn(Write, &r.v3_and_below_transactional_id);
            if e.is_some() {
                return gate(K::AddPartitionsToTxn(r), e);
            }
            let refused: Vec<bool> = r
                .v3_and_below_topics
                .iter()
                .map(|t| a.topic(Write, &t.name).is_some())
                .collect();
            if !refused.contains(&true) {
                return run(K::AddPartitionsToTxn(r));
            }
            // Kafka adds nothing when a topic is refused: the others were not attempted.
            let mut i = 0;
            let c = split(
                r,
                |r| &mut r.v3_and_below_topics,
                |_| {
                    let refused = refused[i];
                    i += 1;
                    Some(if refused {
                        ResponseError::TopicAuthorizationFailed
                    } else {
                        ResponseError::OperationNotAttempted
                    })
                },
                K::AddPartitionsToTxn,
            );
            debug_assert!(matches!(c, Checked::RefuseItems(_)));
            c
        }
        K::AddOffsetsToTxn(ref r) => {
            let e = a
                .txn(Write, &r.transactional_id)
                .or_else(|| a.group(Read, &r.group_id));
            gate(req, e)
        }
        K::EndTxn(ref r) => {
            let e = a.txn(Write, &r.transactional_id);
            gate(req, e)
        }
        K::TxnOffsetCommit(r) => {
            let e = a
                .txn(Write, &r.transactional_id)
                .or_else(|| a.group(Read, &r.group_id));
            if e.is_some() {
                return gate(K::TxnOffsetCommit(r), e);
            }
            split(
                r,
                |r| &mut r.topics,
                |t| a.topic(Read, &t.name),
                K::TxnOffsetCommit,
            )
        }
        K::WriteTxnMarkers(_) => {
            let e = a.cluster_err(ClusterAction);
            gate(req, e)
        }
        K::DescribeTransactions(r) => split(
            r,
            |r| &mut r.transactional_ids,
            |id| a.txn(Describe, id),
            K::DescribeTransactions,
        ),
        K::ListTransactions(_) => with_filter(run(req), Filter::Transactions),
        K::DescribeProducers(r) => split(
            r,
            |r| &mut r.topics,
            |t| a.topic(Read, &t.name),
            K::DescribeProducers,
        ),
        other => {
            // An API without a rule is refused (a test holds every served API to one).
            tracing::error!(api = a.ctx.api.name(), "no authorization rule");
            gate(other, Some(ResponseError::ClusterAuthorizationFailed))
        }
    }
}

/// Kafka's config resource types: TOPIC 2, BROKER 4, BROKER_LOGGER 8, GROUP 32.
fn config_refusal(a: &Authz<'_>, op: Operation, rtype: i8, name: &str) -> Option<ResponseError> {
    match rtype {
        2 => a.topic(op, name),
        4 | 8 => a.cluster_err(op),
        32 => a.group(op, name),
        _ => None,
    }
}

/// The answer to a refused part `q` of a request: its API's error answer, except where
/// that answer is whole-request only and Kafka reports a refused item per partition
/// (OffsetDelete's topics).
pub(crate) fn refused_answer(
    q: &RequestKind,
    version: i16,
    r: &Rejection,
) -> Result<Option<ResponseKind>, String> {
    use kafka_protocol::messages::offset_delete_response::{
        OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
    };
    match q {
        RequestKind::OffsetDelete(q) => Ok(Some(ResponseKind::OffsetDelete(
            kafka_protocol::messages::OffsetDeleteResponse::default().with_topics(
                q.topics
                    .iter()
                    .map(|t| {
                        OffsetDeleteResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        OffsetDeleteResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(r.code.0)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        ))),
        q => super::error_response(q, version, r),
    }
}

/// Appends the items of `extra` (an error answer of the same API) to `into`.
pub(crate) fn merge(into: &mut ResponseKind, extra: ResponseKind) {
    use ResponseKind as R;
    match (into, extra) {
        (R::Produce(a), R::Produce(b)) => a.responses.extend(b.responses),
        (R::Fetch(a), R::Fetch(b)) => a.responses.extend(b.responses),
        (R::ListOffsets(a), R::ListOffsets(b)) => a.topics.extend(b.topics),
        (R::OffsetForLeaderEpoch(a), R::OffsetForLeaderEpoch(b)) => a.topics.extend(b.topics),
        (R::Metadata(a), R::Metadata(b)) => a.topics.extend(b.topics),
        (R::OffsetCommit(a), R::OffsetCommit(b)) => a.topics.extend(b.topics),
        (R::OffsetFetch(a), R::OffsetFetch(b)) => {
            a.topics.extend(b.topics);
            a.groups.extend(b.groups);
        }
        (R::FindCoordinator(a), R::FindCoordinator(b)) => a.coordinators.extend(b.coordinators),
        (R::DescribeGroups(a), R::DescribeGroups(b)) => a.groups.extend(b.groups),
        (R::ConsumerGroupDescribe(a), R::ConsumerGroupDescribe(b)) => a.groups.extend(b.groups),
        (R::DeleteGroups(a), R::DeleteGroups(b)) => a.results.extend(b.results),
        (R::OffsetDelete(a), R::OffsetDelete(b)) => a.topics.extend(b.topics),
        (R::CreateTopics(a), R::CreateTopics(b)) => a.topics.extend(b.topics),
        (R::DeleteTopics(a), R::DeleteTopics(b)) => a.responses.extend(b.responses),
        (R::DeleteRecords(a), R::DeleteRecords(b)) => a.topics.extend(b.topics),
        (R::CreatePartitions(a), R::CreatePartitions(b)) => a.results.extend(b.results),
        (R::DescribeConfigs(a), R::DescribeConfigs(b)) => a.results.extend(b.results),
        (R::AlterConfigs(a), R::AlterConfigs(b)) => a.responses.extend(b.responses),
        (R::IncrementalAlterConfigs(a), R::IncrementalAlterConfigs(b)) => {
            a.responses.extend(b.responses)
        }
        (R::AddPartitionsToTxn(a), R::AddPartitionsToTxn(b)) => {
            a.results_by_topic_v3_and_below
                .extend(b.results_by_topic_v3_and_below);
            a.results_by_transaction.extend(b.results_by_transaction);
        }
        (R::TxnOffsetCommit(a), R::TxnOffsetCommit(b)) => a.topics.extend(b.topics),
        (R::DescribeTransactions(a), R::DescribeTransactions(b)) => {
            a.transaction_states.extend(b.transaction_states)
        }
        (R::DescribeProducers(a), R::DescribeProducers(b)) => a.topics.extend(b.topics),
        (into, extra) => {
            debug_assert!(false, "no merge of {extra:?} into {into:?}");
        }
    }
}

/// Narrows `resp` by `filter` (see [`Filter`]).
pub(crate) fn narrow(a: &Authz<'_>, filter: &Filter, resp: &mut ResponseKind) {
    use Operation::*;
    use ResponseKind as R;
    use Rt as A;
    if !a.on() {
        return;
    }
    match (filter, resp) {
        (Filter::None, _) => {}
        (Filter::Topics, R::Metadata(m)) => {
            m.topics.retain(|t| {
                // Refused named topics carry their error code already.
                t.error_code == ResponseError::TopicAuthorizationFailed.code()
                    || t.name
                        .as_deref()
                        .is_none_or(|n| a.may(Describe, Rt::Topic, n))
            });
            for t in &mut m.topics {
                if let Some(n) = t.name.as_deref() {
                    let ops = a.operations(A::Topic, n, t.topic_authorized_operations);
                    t.topic_authorized_operations = ops;
                }
            }
            m.cluster_authorized_operations =
                a.operations(A::Cluster, CLUSTER_NAME, m.cluster_authorized_operations);
        }
        (Filter::TopicPartitions { listing }, R::DescribeTopicPartitions(d)) => {
            if *listing {
                d.topics.retain(|t| {
                    t.name
                        .as_deref()
                        .is_none_or(|n| a.may(Describe, Rt::Topic, n))
                });
            }
            for t in &mut d.topics {
                let Some(n) = t.name.as_deref() else { continue };
                if a.allows(Describe, Rt::Topic, n) {
                    let ops = a.operations(A::Topic, n, t.topic_authorized_operations);
                    t.topic_authorized_operations = ops;
                } else {
                    t.error_code = ResponseError::TopicAuthorizationFailed.code();
                    t.partitions.clear();
                    t.topic_id = Default::default();
                    t.topic_authorized_operations = authz::OPERATIONS_OMITTED;
                }
            }
        }
        (Filter::Groups, R::ListGroups(l)) => {
            if !a.may(Describe, Rt::Cluster, CLUSTER_NAME) {
                l.groups.retain(|g| a.may(Describe, Rt::Group, &g.group_id));
            }
        }
        (Filter::Transactions, R::ListTransactions(l)) => {
            l.transaction_states
                .retain(|s| a.may(Describe, Rt::TransactionalId, &s.transactional_id));
        }
        (
            Filter::OffsetFetch {
                listing,
                listing_groups,
            },
            R::OffsetFetch(o),
        ) => {
            let refused = ResponseError::TopicAuthorizationFailed.code();
            if *listing {
                o.topics.retain(|t| a.may(Describe, Rt::Topic, &t.name));
            }
            for t in &mut o.topics {
                if !a.allows(Describe, Rt::Topic, &t.name) {
                    for p in &mut t.partitions {
                        p.error_code = refused;
                        p.committed_offset = -1;
                        p.metadata = None;
                    }
                }
            }
            for g in &mut o.groups {
                if listing_groups
                    .iter()
                    .any(|l| l.as_str() == g.group_id.as_str())
                {
                    g.topics.retain(|t| a.may(Describe, Rt::Topic, &t.name));
                }
                for t in &mut g.topics {
                    if !a.allows(Describe, Rt::Topic, &t.name) {
                        for p in &mut t.partitions {
                            p.error_code = refused;
                            p.committed_offset = -1;
                            p.metadata = None;
                        }
                    }
                }
            }
        }
        (Filter::Operations, R::DescribeGroups(d)) => {
            for g in &mut d.groups {
                g.authorized_operations =
                    a.operations(A::Group, &g.group_id, g.authorized_operations);
            }
        }
        (Filter::Operations, R::ConsumerGroupDescribe(d)) => {
            for g in &mut d.groups {
                g.authorized_operations =
                    a.operations(A::Group, &g.group_id, g.authorized_operations);
            }
        }
        (Filter::Operations, R::DescribeCluster(d)) => {
            d.cluster_authorized_operations =
                a.operations(A::Cluster, CLUSTER_NAME, d.cluster_authorized_operations);
        }
        (f, r) => debug_assert!(false, "no narrowing {f:?} of {r:?}"),
    }
}
