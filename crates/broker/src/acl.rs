//! Kafka's ACL model without I/O: bindings (a resource pattern and an access control
//! entry), the filters Describe/DeleteAcls select them with, and the authorizer's decision
//! (Kafka's `StandardAuthorizer` rules). Codes are Kafka's wire codes.
//!
//! A decision for (principal, host, operation, resource):
//! 1. a super user is allowed everything;
//! 2. a matching DENY binding (same operation, or ALL) refuses;
//! 3. a matching ALLOW binding for the operation, for ALL, or for an operation that implies
//!    it (READ, WRITE, DELETE or ALTER imply DESCRIBE; ALTER_CONFIGS implies
//!    DESCRIBE_CONFIGS) allows;
//! 4. with no binding on the resource at all, `allow.everyone.if.no.acl.found` decides;
//! 5. otherwise refused.
//!
//! A binding matches a resource by type and by name: LITERAL equal (or the literal `*`,
//! every resource of the type), PREFIXED a prefix of the name; a principal when equal or
//! `User:*`; a host when equal or `*`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

/// Kafka's resource types that bindings name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum ResourceType {
    Topic = 2,
    Group = 3,
    Cluster = 4,
    TransactionalId = 5,
    DelegationToken = 6,
    User = 7,
}

impl ResourceType {
    const ALL: [ResourceType; 6] = [
        ResourceType::Topic,
        ResourceType::Group,
        ResourceType::Cluster,
        ResourceType::TransactionalId,
        ResourceType::DelegationToken,
        ResourceType::User,
    ];

    fn from_code(code: i8) -> Option<ResourceType> {
        ResourceType::ALL.into_iter().find(|t| *t as i8 == code)
    }

    /// Kafka's name (`Topic`, `Group`, `Cluster`, `TransactionalId`, ...).
    pub(crate) fn name(self) -> &'static str {
        match self {
            ResourceType::Topic => "Topic",
            ResourceType::Group => "Group",
            ResourceType::Cluster => "Cluster",
            ResourceType::TransactionalId => "TransactionalId",
            ResourceType::DelegationToken => "DelegationToken",
            ResourceType::User => "User",
        }
    }

    /// The type named `name` (Kafka's name, any case).
    pub(crate) fn from_name(name: &str) -> Option<ResourceType> {
        ResourceType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }
}

/// How a binding's resource name matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum PatternType {
    Literal = 3,
    Prefixed = 4,
}

/// Kafka's ACL operations (the codes of `AclOperation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Operation {
    All = 2,
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
    CreateTokens = 13,
    DescribeTokens = 14,
}

impl Operation {
    const ALL: [Operation; 13] = [
        Operation::All,
        Operation::Read,
        Operation::Write,
        Operation::Create,
        Operation::Delete,
        Operation::Alter,
        Operation::Describe,
        Operation::ClusterAction,
        Operation::DescribeConfigs,
        Operation::AlterConfigs,
        Operation::IdempotentWrite,
        Operation::CreateTokens,
        Operation::DescribeTokens,
    ];

    pub(crate) fn from_code(code: i8) -> Option<Operation> {
        Operation::ALL.into_iter().find(|o| *o as i8 == code)
    }

    /// Kafka's name (`READ`, `DESCRIBE_CONFIGS`, ...).
    pub(crate) fn name(self) -> &'static str {
        use Operation::*;
        match self {
            All => "ALL",
            Read => "READ",
            Write => "WRITE",
            Create => "CREATE",
            Delete => "DELETE",
            Alter => "ALTER",
            Describe => "DESCRIBE",
            ClusterAction => "CLUSTER_ACTION",
            DescribeConfigs => "DESCRIBE_CONFIGS",
            AlterConfigs => "ALTER_CONFIGS",
            IdempotentWrite => "IDEMPOTENT_WRITE",
            CreateTokens => "CREATE_TOKENS",
            DescribeTokens => "DESCRIBE_TOKENS",
        }
    }

    /// The operation named `name` (Kafka's name, any case).
    pub(crate) fn from_name(name: &str) -> Option<Operation> {
        Operation::ALL
            .into_iter()
            .find(|o| o.name().eq_ignore_ascii_case(name))
    }

    /// Whether an ALLOW binding for `self` allows `asked`.
    fn allows(self, asked: Operation) -> bool {
        use Operation::*;
        self == All
            || self == asked
            || (asked == Describe && matches!(self, Read | Write | Delete | Alter))
            || (asked == DescribeConfigs && self == AlterConfigs)
    }
}

/// ALLOW or DENY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Permission {
    Deny = 2,
    Allow = 3,
}

impl Permission {
    /// `ALLOW` or `DENY`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Permission::Deny => "DENY",
            Permission::Allow => "ALLOW",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Permission> {
        [Permission::Deny, Permission::Allow]
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }

    fn from_code(code: i8) -> Option<Permission> {
        [Permission::Deny, Permission::Allow]
            .into_iter()
            .find(|p| *p as i8 == code)
    }
}

impl PatternType {
    /// `LITERAL` or `PREFIXED`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            PatternType::Literal => "LITERAL",
            PatternType::Prefixed => "PREFIXED",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<PatternType> {
        [PatternType::Literal, PatternType::Prefixed]
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }
}

/// One ACL: who (principal, host) may or may not do what (operation) to which resources.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    /// `Type:name`, or `User:*` for every user.
    pub principal: String,
    /// An IP address, or `*` for every host.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

/// Why a binding or filter from the wire was refused (answered INVALID_REQUEST, with this
/// text as the message, as Kafka does).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AclError {
    #[error("{0}")]
    Invalid(String),
}

fn invalid<T>(msg: impl Into<String>) -> Result<T, AclError> {
    Err(AclError::Invalid(msg.into()))
}

/// A principal is `Type:name` with both parts non-empty.
fn valid_principal(p: &str) -> bool {
    p.split_once(':')
        .is_some_and(|(t, n)| !t.is_empty() && !n.is_empty())
}

/// The wire fields of a binding (CreateAcls' creation, DescribeAcls' and DeleteAcls'
/// answers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireAcl<'a> {
    pub resource_type: i8,
    pub resource_name: Option<&'a str>,
    pub pattern_type: i8,
    pub principal: Option<&'a str>,
    pub host: Option<&'a str>,
    pub operation: i8,
    pub permission: i8,
}

impl AclBinding {
    /// A binding to create, refused as Kafka refuses one: an unknown or ANY resource type,
    /// a pattern other than LITERAL or PREFIXED, an unknown or ANY operation or
    /// permission, an empty resource name, a principal not `Type:name`, no host.
    pub(crate) fn from_wire(w: &WireAcl<'_>) -> Result<AclBinding, AclError> {
        let Some(resource_type) = ResourceType::from_code(w.resource_type) else {
            return invalid(format!("invalid resource type {}", w.resource_type));
        };
        let pattern_type = match w.pattern_type {
            3 => PatternType::Literal,
            4 => PatternType::Prefixed,
            p => return invalid(format!("invalid pattern type {p} for a binding")),
        };
        let Some(operation) = Operation::from_code(w.operation) else {
            return invalid(format!("invalid operation {}", w.operation));
        };
        let Some(permission) = Permission::from_code(w.permission) else {
            return invalid(format!("invalid permission type {}", w.permission));
        };
        let name = w.resource_name.unwrap_or_default();
        if name.is_empty() {
            return invalid("resource name must not be empty");
        }
        let principal = w.principal.unwrap_or_default();
        if !valid_principal(principal) {
            return invalid(format!("could not parse principal {principal:?}"));
        }
        let Some(host) = w.host.filter(|h| !h.is_empty()) else {
            return invalid("host must not be empty");
        };
        if host != "*" && host.parse::<IpAddr>().is_err() {
            return invalid(format!("host {host:?} is not an IP address or *"));
        }
        Ok(AclBinding {
            resource_type,
            resource_name: name.to_string(),
            pattern_type,
            principal: principal.to_string(),
            host: host.to_string(),
            operation,
            permission,
        })
    }

    /// The binding's wire fields.
    pub(crate) fn to_wire(&self) -> WireAcl<'_> {
        WireAcl {
            resource_type: self.resource_type as i8,
            resource_name: Some(&self.resource_name),
            pattern_type: self.pattern_type as i8,
            principal: Some(&self.principal),
            host: Some(&self.host),
            operation: self.operation as i8,
            permission: self.permission as i8,
        }
    }

    /// Whether the binding's pattern covers the resource `name`.
    fn covers(&self, name: &str) -> bool {
        match self.pattern_type {
            PatternType::Literal => self.resource_name == name || self.resource_name == "*",
            PatternType::Prefixed => name.starts_with(&self.resource_name),
        }
    }
}

/// Which pattern types a filter selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatternFilter {
    /// Every pattern type.
    Any,
    /// Bindings that apply to the concrete resource named by the filter: the literal name,
    /// the literal `*`, and every prefix of the name.
    Match,
    Literal,
    Prefixed,
}

/// DescribeAcls' and DeleteAcls' selection: `None` fields match anything (Kafka's null
/// names and ANY codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub resource_name: Option<String>,
    pub pattern: PatternFilter,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

impl AclFilter {
    /// A filter from the wire; UNKNOWN (0) codes and out-of-range codes are refused, ANY (1)
    /// selects everything.
    pub(crate) fn from_wire(w: &WireAcl<'_>) -> Result<AclFilter, AclError> {
        let resource_type = match w.resource_type {
            1 => None,
            c => match ResourceType::from_code(c) {
                Some(t) => Some(t),
                None => return invalid(format!("invalid resource type {c}")),
            },
        };
        let pattern = match w.pattern_type {
            1 => PatternFilter::Any,
            2 => PatternFilter::Match,
            3 => PatternFilter::Literal,
            4 => PatternFilter::Prefixed,
            p => return invalid(format!("invalid pattern type {p}")),
        };
        let operation = match w.operation {
            1 => None,
            c => match Operation::from_code(c) {
                Some(o) => Some(o),
                None => return invalid(format!("invalid operation {c}")),
            },
        };
        let permission = match w.permission {
            1 => None,
            c => match Permission::from_code(c) {
                Some(p) => Some(p),
                None => return invalid(format!("invalid permission type {c}")),
            },
        };
        Ok(AclFilter {
            resource_type,
            resource_name: w.resource_name.map(str::to_string),
            pattern,
            principal: w.principal.map(str::to_string),
            host: w.host.map(str::to_string),
            operation,
            permission,
        })
    }

    /// Whether `b` is selected.
    pub(crate) fn matches(&self, b: &AclBinding) -> bool {
        let eq = |want: &Option<String>, got: &str| want.as_deref().is_none_or(|w| w == got);
        self.resource_type.is_none_or(|t| t == b.resource_type)
            && self.operation.is_none_or(|o| o == b.operation)
            && self.permission.is_none_or(|p| p == b.permission)
            && eq(&self.principal, &b.principal)
            && eq(&self.host, &b.host)
            && match self.pattern {
                PatternFilter::Any => eq(&self.resource_name, &b.resource_name),
                PatternFilter::Literal => {
                    b.pattern_type == PatternType::Literal
                        && eq(&self.resource_name, &b.resource_name)
                }
                PatternFilter::Prefixed => {
                    b.pattern_type == PatternType::Prefixed
                        && eq(&self.resource_name, &b.resource_name)
                }
                PatternFilter::Match => match &self.resource_name {
                    None => true,
                    Some(name) => b.covers(name),
                },
            }
    }
}

/// The resource a request touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resource<'a> {
    pub resource_type: ResourceType,
    pub name: &'a str,
}

/// The name of the one cluster resource (Kafka's `kafka-cluster`).
pub(crate) const CLUSTER_NAME: &str = "kafka-cluster";

/// Most bindings the broker keeps (each is a few hundred bytes).
pub(crate) const BINDINGS_MAX: usize = 100_000;

/// The bindings, indexed by resource type: literal names in a map, prefixes in a list.
#[derive(Debug, Default, Clone)]
pub(crate) struct Acls {
    all: BTreeSet<AclBinding>,
    literal: HashMap<(ResourceType, String), Vec<AclBinding>>,
    prefixed: HashMap<ResourceType, Vec<AclBinding>>,
}

impl Acls {
    /// The bindings, in a stable order.
    pub(crate) fn bindings(&self) -> impl Iterator<Item = &AclBinding> {
        self.all.iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.all.len()
    }

    /// Adds `b`; false when it was there already.
    pub(crate) fn add(&mut self, b: AclBinding) -> bool {
        if !self.all.insert(b.clone()) {
            return false;
        }
        match b.pattern_type {
            PatternType::Literal => self
                .literal
                .entry((b.resource_type, b.resource_name.clone()))
                .or_default()
                .push(b),
            PatternType::Prefixed => self.prefixed.entry(b.resource_type).or_default().push(b),
        }
        true
    }

    /// The bindings `filter` selects.
    pub(crate) fn matching(&self, filter: &AclFilter) -> Vec<AclBinding> {
        self.all
            .iter()
            .filter(|b| filter.matches(b))
            .cloned()
            .collect()
    }

    /// Removes the bindings `filter` selects and returns them.
    pub(crate) fn remove_matching(&mut self, filter: &AclFilter) -> Vec<AclBinding> {
        let gone = self.matching(filter);
        if gone.is_empty() {
            return gone;
        }
        let keep: Vec<AclBinding> = self
            .all
            .iter()
            .filter(|b| !filter.matches(b))
            .cloned()
            .collect();
        *self = Acls::default();
        for b in keep {
            self.add(b);
        }
        gone
    }

    /// Every binding whose pattern covers `r`.
    fn covering<'a>(&'a self, r: Resource<'a>) -> impl Iterator<Item = &'a AclBinding> + 'a {
        let literal = |name: &str| {
            self.literal
                .get(&(r.resource_type, name.to_string()))
                .into_iter()
                .flatten()
        };
        let prefixed = self
            .prefixed
            .get(&r.resource_type)
            .into_iter()
            .flatten()
            .filter(move |b| r.name.starts_with(&b.resource_name));
        literal(r.name).chain(literal("*")).chain(prefixed)
    }
}

/// The authorizer's settings: `super.users` and `allow.everyone.if.no.acl.found`.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuthorizerSettings {
    pub super_users: HashSet<String>,
    pub allow_everyone_if_no_acl_found: bool,
}

/// Who asks: a principal and the address it connects from, formatted only when a binding
/// names a host (most say `*`), not once per decision.
struct Client<'a> {
    principal: &'a str,
    host: IpAddr,
    host_text: std::cell::OnceCell<String>,
}

impl<'a> Client<'a> {
    fn new(principal: &'a str, host: IpAddr) -> Self {
        Client {
            principal,
            host,
            host_text: std::cell::OnceCell::new(),
        }
    }

    /// Whether binding `b` applies to this client: its principal or `User:*`, its host
    /// or `*`.
    fn is_named_by(&self, b: &AclBinding) -> bool {
        (b.principal == self.principal || b.principal == "User:*")
            && (b.host == "*" || b.host == *self.host_text.get_or_init(|| self.host.to_string()))
    }
}

/// Whether `principal` (`Type:name`) connecting from `host` may do `op` to `resource`.
pub(crate) fn authorize(
    acls: &Acls,
    settings: &AuthorizerSettings,
    principal: &str,
    host: IpAddr,
    op: Operation,
    resource: Resource<'_>,
) -> bool {
    if settings.super_users.contains(principal) {
        return true;
    }
    let client = Client::new(principal, host);
    let mut any = false;
    let mut allowed = false;
    for b in acls.covering(resource) {
        any = true;
        if !client.is_named_by(b) {
            continue;
        }
        match b.permission {
            Permission::Deny if b.operation == op || b.operation == Operation::All => return false,
            Permission::Deny => {}
            Permission::Allow => allowed |= b.operation.allows(op),
        }
    }
    allowed || (!any && settings.allow_everyone_if_no_acl_found)
}

/// Whether `principal` from `host` may do `op` to at least one resource of type `rt`
/// (Kafka's `authorizeByResourceType`, which KIP-679 uses for IDEMPOTENT_WRITE: WRITE on
/// any topic). An ALLOW binding counts unless a DENY binding covers its whole pattern.
pub(crate) fn authorize_any(
    acls: &Acls,
    settings: &AuthorizerSettings,
    principal: &str,
    host: IpAddr,
    op: Operation,
    rt: ResourceType,
) -> bool {
    if settings.super_users.contains(principal) {
        return true;
    }
    let client = Client::new(principal, host);
    let of_type = || acls.bindings().filter(|b| b.resource_type == rt);
    let denies: Vec<&AclBinding> = of_type()
        .filter(|b| {
            b.permission == Permission::Deny
                && (b.operation == op || b.operation == Operation::All)
                && client.is_named_by(b)
        })
        .collect();
    // Does DENY `d` cover every resource that ALLOW `a` names?
    let covers = |d: &AclBinding, a: &AclBinding| match d.pattern_type {
        PatternType::Literal => {
            d.resource_name == "*"
                || (a.pattern_type == PatternType::Literal && a.resource_name == d.resource_name)
        }
        PatternType::Prefixed => a.resource_name.starts_with(&d.resource_name),
    };
    let allowed = of_type().any(|a| {
        a.permission == Permission::Allow
            && a.operation.allows(op)
            && client.is_named_by(a)
            && !denies.iter().any(|d| covers(d, a))
    });
    allowed || (of_type().next().is_none() && settings.allow_everyone_if_no_acl_found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn binding(
        t: ResourceType,
        name: &str,
        pattern: PatternType,
        principal: &str,
        host: &str,
        op: Operation,
        perm: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type: t,
            resource_name: name.into(),
            pattern_type: pattern,
            principal: principal.into(),
            host: host.into(),
            operation: op,
            permission: perm,
        }
    }

    fn topic(name: &str) -> Resource<'_> {
        Resource {
            resource_type: ResourceType::Topic,
            name,
        }
    }

    const HOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

    #[test]
    fn write_on_any_topic_follows_kip_679() {
        use PatternType::*;
        use Permission::*;
        let settings = AuthorizerSettings::default();
        let any = |bindings: &[AclBinding], who: &str| {
            let mut acls = Acls::default();
            for b in bindings {
                acls.add(b.clone());
            }
            authorize_any(
                &acls,
                &settings,
                who,
                HOST,
                Operation::Write,
                ResourceType::Topic,
            )
        };
        let b = |name: &str, pattern, principal: &str, op, perm| {
            binding(ResourceType::Topic, name, pattern, principal, "*", op, perm)
        };
        let allow = b("orders", Literal, "User:a", Operation::Write, Allow);
        assert!(any(std::slice::from_ref(&allow), "User:a"));
        assert!(!any(std::slice::from_ref(&allow), "User:b"));
        // READ does not imply WRITE; ALL does.
        assert!(!any(
            &[b("t", Literal, "User:a", Operation::Read, Allow)],
            "User:a"
        ));
        assert!(any(
            &[b("t", Prefixed, "User:*", Operation::All, Allow)],
            "User:a"
        ));
        // A DENY covering the ALLOW's whole pattern leaves nothing; a narrower one does not.
        let deny_all = b("*", Literal, "User:a", Operation::Write, Deny);
        assert!(!any(&[allow.clone(), deny_all], "User:a"));
        let deny_prefix = b("ord", Prefixed, "User:a", Operation::All, Deny);
        assert!(!any(&[allow.clone(), deny_prefix], "User:a"));
        let allow_prefix = b("pay-", Prefixed, "User:a", Operation::Write, Allow);
        let deny_one = b("pay-eu", Literal, "User:a", Operation::Write, Deny);
        assert!(any(&[allow_prefix, deny_one], "User:a"));
        // No binding of the type at all: allow.everyone.if.no.acl.found decides.
        let open = AuthorizerSettings {
            allow_everyone_if_no_acl_found: true,
            ..AuthorizerSettings::default()
        };
        let acls = Acls::default();
        assert!(authorize_any(
            &acls,
            &open,
            "User:x",
            HOST,
            Operation::Write,
            ResourceType::Topic
        ));
        assert!(!authorize_any(
            &acls,
            &settings,
            "User:x",
            HOST,
            Operation::Write,
            ResourceType::Topic
        ));
    }

    #[test]
    fn decisions_follow_kafkas_rules() {
        use Operation::*;
        use PatternType::*;
        use Permission::*;
        use ResourceType::Topic as T;
        let mut acls = Acls::default();
        acls.add(binding(
            T,
            "orders",
            Literal,
            "User:alice",
            "*",
            Read,
            Allow,
        ));
        acls.add(binding(
            T,
            "pay-",
            Prefixed,
            "User:alice",
            "*",
            Write,
            Allow,
        ));
        acls.add(binding(
            T,
            "pay-secret",
            Literal,
            "User:alice",
            "*",
            All,
            Deny,
        ));
        acls.add(binding(
            T,
            "*",
            Literal,
            "User:ops",
            "10.0.0.1",
            AlterConfigs,
            Allow,
        ));
        acls.add(binding(T, "shared", Literal, "User:*", "*", Write, Allow));
        let s = AuthorizerSettings {
            super_users: ["User:admin".to_string()].into(),
            allow_everyone_if_no_acl_found: false,
        };
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let cases: &[(&str, IpAddr, Operation, &str, bool)] = &[
            ("User:alice", HOST, Read, "orders", true),
            ("User:alice", HOST, Describe, "orders", true), // READ implies DESCRIBE
            ("User:alice", HOST, Write, "orders", false),
            ("User:bob", HOST, Read, "orders", false),
            ("User:alice", HOST, Write, "pay-in", true), // prefixed
            ("User:alice", HOST, Write, "pay-secret", false), // DENY wins
            ("User:alice", HOST, Describe, "pay-secret", false), // DENY ALL
            ("User:alice", HOST, Write, "pay", false),
            ("User:ops", HOST, AlterConfigs, "anything", true), // wildcard name
            ("User:ops", HOST, DescribeConfigs, "anything", true), // implied
            ("User:ops", other, AlterConfigs, "anything", false), // host-bound
            ("User:carol", other, Write, "shared", true),       // User:*
            ("User:admin", other, Delete, "pay-secret", true),  // super user
            ("User:alice", HOST, Read, "unbound", false),
        ];
        for (p, h, op, name, want) in cases {
            assert_eq!(
                authorize(&acls, &s, p, *h, *op, topic(name)),
                *want,
                "{p} {h} {op:?} {name}"
            );
        }
        // Only a resource without any binding falls to allow.everyone.if.no.acl.found.
        let open = AuthorizerSettings {
            allow_everyone_if_no_acl_found: true,
            ..s.clone()
        };
        let mut narrow = Acls::default();
        narrow.add(binding(
            T,
            "orders",
            Literal,
            "User:alice",
            "*",
            Read,
            Allow,
        ));
        assert!(authorize(
            &narrow,
            &open,
            "User:bob",
            HOST,
            Write,
            topic("other")
        ));
        assert!(!authorize(
            &narrow,
            &open,
            "User:bob",
            HOST,
            Read,
            topic("orders")
        ));
    }

    fn wire<'a>(
        t: i8,
        name: Option<&'a str>,
        pat: i8,
        p: Option<&'a str>,
        h: Option<&'a str>,
        op: i8,
        perm: i8,
    ) -> WireAcl<'a> {
        WireAcl {
            resource_type: t,
            resource_name: name,
            pattern_type: pat,
            principal: p,
            host: h,
            operation: op,
            permission: perm,
        }
    }

    #[test]
    fn bindings_from_the_wire_are_checked_as_kafka_checks_them() {
        let ok = wire(2, Some("t"), 3, Some("User:a"), Some("*"), 3, 3);
        let b = AclBinding::from_wire(&ok).unwrap();
        assert_eq!(b.to_wire(), ok);
        for bad in [
            wire(1, Some("t"), 3, Some("User:a"), Some("*"), 3, 3),
            wire(0, Some("t"), 3, Some("User:a"), Some("*"), 3, 3),
            wire(9, Some("t"), 3, Some("User:a"), Some("*"), 3, 3),
            wire(2, Some("t"), 1, Some("User:a"), Some("*"), 3, 3),
            wire(2, Some("t"), 2, Some("User:a"), Some("*"), 3, 3),
            wire(2, Some("t"), 3, Some("User:a"), Some("*"), 1, 3),
            wire(2, Some("t"), 3, Some("User:a"), Some("*"), 3, 1),
            wire(2, Some(""), 3, Some("User:a"), Some("*"), 3, 3),
            wire(2, None, 3, Some("User:a"), Some("*"), 3, 3),
            wire(2, Some("t"), 3, Some("alice"), Some("*"), 3, 3),
            wire(2, Some("t"), 3, Some("User:a"), None, 3, 3),
            wire(2, Some("t"), 3, Some("User:a"), Some("host.example"), 3, 3),
        ] {
            assert!(AclBinding::from_wire(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn filters_select_as_describe_and_delete_acls_do() {
        use PatternType::*;
        let mut acls = Acls::default();
        let lit = binding(
            ResourceType::Topic,
            "pay-in",
            Literal,
            "User:a",
            "*",
            Operation::Read,
            Permission::Allow,
        );
        let pre = binding(
            ResourceType::Topic,
            "pay-",
            Prefixed,
            "User:a",
            "*",
            Operation::Write,
            Permission::Allow,
        );
        let star = binding(
            ResourceType::Topic,
            "*",
            Literal,
            "User:b",
            "*",
            Operation::Read,
            Permission::Deny,
        );
        let grp = binding(
            ResourceType::Group,
            "pay-in",
            Literal,
            "User:a",
            "*",
            Operation::Read,
            Permission::Allow,
        );
        for b in [&lit, &pre, &star, &grp] {
            assert!(acls.add(b.clone()));
        }
        assert!(!acls.add(lit.clone()));
        let f = |t, name: Option<&str>, pat, p: Option<&str>, op, perm| {
            AclFilter::from_wire(&wire(t, name, pat, p, None, op, perm)).unwrap()
        };
        assert_eq!(acls.matching(&f(1, None, 1, None, 1, 1)).len(), 4);
        assert_eq!(acls.matching(&f(2, None, 1, None, 1, 1)).len(), 3);
        assert_eq!(
            acls.matching(&f(2, Some("pay-in"), 2, None, 1, 1)),
            vec![lit.clone(), pre.clone(), star.clone()]
                .into_iter()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
        );
        assert_eq!(
            acls.matching(&f(2, Some("pay-in"), 3, None, 1, 1)),
            vec![lit.clone()]
        );
        assert_eq!(
            acls.matching(&f(2, Some("pay-"), 4, None, 1, 1)),
            vec![pre.clone()]
        );
        assert_eq!(
            acls.matching(&f(1, None, 1, Some("User:b"), 1, 2)),
            vec![star.clone()]
        );
        assert!(AclFilter::from_wire(&wire(0, None, 1, None, None, 1, 1)).is_err());
        assert!(AclFilter::from_wire(&wire(1, None, 0, None, None, 1, 1)).is_err());
        assert!(AclFilter::from_wire(&wire(1, None, 1, None, None, 0, 1)).is_err());
        let gone = acls.remove_matching(&f(2, Some("pay-in"), 2, Some("User:a"), 1, 1));
        assert_eq!(gone.len(), 2);
        assert_eq!(acls.len(), 2);
        let mut left: Vec<_> = acls.bindings().cloned().collect();
        left.sort();
        let mut want = vec![star, grp];
        want.sort();
        assert_eq!(left, want);
        // What remained is still indexed for decisions.
        assert!(!authorize(
            &acls,
            &AuthorizerSettings::default(),
            "User:a",
            HOST,
            Operation::Write,
            topic("pay-in")
        ));
    }

    proptest! {
        #[test]
        fn every_valid_wire_binding_is_accepted_and_round_trips(
            t in 2i8..=7, pat in 3i8..=4, op in 2i8..=14, perm in 2i8..=3,
            name in "[a-zA-Z0-9._*-]{1,40}", user in "[a-zA-Z0-9._*-]{1,20}",
            host in prop_oneof![Just("*".to_string()), any::<std::net::Ipv4Addr>().prop_map(|a| a.to_string())],
        ) {
            let principal = format!("User:{user}");
            let w = wire(t, Some(&name), pat, Some(&principal), Some(&host), op, perm);
            let b = AclBinding::from_wire(&w).unwrap();
            prop_assert_eq!(b.to_wire(), w.clone());
            let mut acls = Acls::default();
            acls.add(b.clone());
            // An exact filter selects it, and MATCH on a covered name does too.
            let exact = AclFilter::from_wire(&w).unwrap();
            prop_assert_eq!(acls.matching(&exact), vec![b.clone()]);
        }

        #[test]
        fn arbitrary_wire_codes_never_panic(t: i8, pat: i8, op: i8, perm: i8, name in ".{0,8}") {
            let w = wire(t, Some(&name), pat, Some("User:a"), Some("*"), op, perm);
            let _ = AclBinding::from_wire(&w);
            let _ = AclFilter::from_wire(&w);
        }
    }
}
