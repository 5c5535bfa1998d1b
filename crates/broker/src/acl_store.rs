//! The broker's ACLs: the bindings of [`crate::acl`], the authorizer's settings from the
//! config, and their file, `<data>/rafka-acls.yaml`, rewritten atomically on every change.
//!
//! Readers take the current set through an `Arc` (one short read lock); a change builds the
//! new set, writes the file and only then swaps it in, under one writer lock, so the file
//! and what requests see change in the same order. A change is seen by the next request of
//! every connection. No lock is held across an `.await`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::acl::{
    self, AclBinding, AclFilter, Acls, AuthorizerSettings, Operation, PatternType, Permission,
    Resource, ResourceType,
};
use crate::config::Config;

/// The authorizer class names that switch ACLs on (Kafka's KRaft and ZooKeeper ones).
pub(crate) const AUTHORIZER_CLASS_NAMES: [&str; 2] = [
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "kafka.security.authorizer.AclAuthorizer",
];

/// One binding as the file stores it, with Kafka's names.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredBinding {
    resource_type: String,
    resource_name: String,
    pattern_type: String,
    principal: String,
    host: String,
    operation: String,
    permission: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredAcls {
    acls: Vec<StoredBinding>,
}

impl StoredBinding {
    fn of(b: &AclBinding) -> StoredBinding {
        StoredBinding {
            resource_type: b.resource_type.name().into(),
            resource_name: b.resource_name.clone(),
            pattern_type: b.pattern_type.name().into(),
            principal: b.principal.clone(),
            host: b.host.clone(),
            operation: b.operation.name().into(),
            permission: b.permission.name().into(),
        }
    }

    fn binding(&self) -> Result<AclBinding, String> {
        let bad = |what: &str, v: &str| format!("unknown {what} {v:?}");
        let b = AclBinding {
            resource_type: ResourceType::from_name(&self.resource_type)
                .ok_or_else(|| bad("resource type", &self.resource_type))?,
            resource_name: self.resource_name.clone(),
            pattern_type: PatternType::from_name(&self.pattern_type)
                .ok_or_else(|| bad("pattern type", &self.pattern_type))?,
            principal: self.principal.clone(),
            host: self.host.clone(),
            operation: Operation::from_name(&self.operation)
                .ok_or_else(|| bad("operation", &self.operation))?,
            permission: Permission::from_name(&self.permission)
                .ok_or_else(|| bad("permission", &self.permission))?,
        };
        // The same checks as a CreateAcls binding.
        AclBinding::from_wire(&b.to_wire()).map_err(|e| e.to_string())
    }
}

/// Why the ACL file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AclStoreError {
    #[error("{path}: {problem}")]
    File { path: String, problem: String },
    #[error("more than {max} ACL bindings", max = acl::BINDINGS_MAX)]
    TooMany,
}

/// The ACLs in force and the authorizer's settings.
#[derive(Debug)]
pub(crate) struct AclStore {
    enabled: bool,
    settings: AuthorizerSettings,
    current: RwLock<Arc<Acls>>,
    writer: Mutex<()>,
    path: Option<PathBuf>,
}

impl AclStore {
    /// The store of `config`, with the bindings of its file (none when the file is missing
    /// or the broker keeps no files). A damaged file stops the start: serving with fewer
    /// DENY bindings than the operator wrote is not an option.
    pub(crate) fn open(config: &Config) -> Result<AclStore, AclStoreError> {
        let path = config
            .storage
            .metadata_dir()
            .map(|d| d.join("rafka-acls.yaml"));
        let mut acls = Acls::default();
        if let Some(p) = &path {
            let err = |problem: String| AclStoreError::File {
                path: p.display().to_string(),
                problem,
            };
            match std::fs::read_to_string(p) {
                Ok(text) => {
                    let stored: StoredAcls =
                        serde_yaml::from_str(&text).map_err(|e| err(e.to_string()))?;
                    if stored.acls.len() > acl::BINDINGS_MAX {
                        return Err(AclStoreError::TooMany);
                    }
                    for s in &stored.acls {
                        acls.add(s.binding().map_err(err)?);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(err(e.to_string())),
            }
        }
        let b = &config.broker;
        Ok(AclStore {
            enabled: !b.authorizer_class_name.is_empty(),
            settings: AuthorizerSettings {
                super_users: b.super_users.iter().cloned().collect(),
                allow_everyone_if_no_acl_found: b.allow_everyone_if_no_acl_found,
            },
            current: RwLock::new(Arc::new(acls)),
            writer: Mutex::new(()),
            path,
        })
    }

    /// Whether an authorizer is configured (`authorizer.class.name`). Without one, every
    /// request is allowed and the ACL APIs answer SECURITY_DISABLED, as in Kafka.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// The bindings in force.
    pub(crate) fn current(&self) -> Arc<Acls> {
        self.current.read().clone()
    }

    /// Whether `principal` from `host` may do `op` on `resource`; always true without an
    /// authorizer.
    pub(crate) fn authorize(
        &self,
        principal: &str,
        host: IpAddr,
        op: Operation,
        resource: Resource<'_>,
    ) -> bool {
        !self.enabled
            || acl::authorize(
                &self.current(),
                &self.settings,
                principal,
                host,
                op,
                resource,
            )
    }

    /// Applies `change` to a copy of the bindings, stores the copy, then puts it in force.
    fn change<T>(&self, change: impl FnOnce(&mut Acls) -> T) -> Result<T, AclStoreError> {
        let _writer = self.writer.lock();
        let mut next = Acls::clone(&self.current());
        let out = change(&mut next);
        if next.len() > acl::BINDINGS_MAX {
            return Err(AclStoreError::TooMany);
        }
        if let Some(p) = &self.path {
            let stored = StoredAcls {
                acls: next.bindings().map(StoredBinding::of).collect(),
            };
            let err = |problem: String| AclStoreError::File {
                path: p.display().to_string(),
                problem,
            };
            let text = serde_yaml::to_string(&stored).map_err(|e| err(e.to_string()))?;
            crate::state::write_atomically(p, text.as_bytes()).map_err(|e| err(e.to_string()))?;
        }
        *self.current.write() = Arc::new(next);
        Ok(out)
    }

    /// Adds the bindings (those already present stay as they are).
    pub(crate) fn create(&self, bindings: Vec<AclBinding>) -> Result<(), AclStoreError> {
        self.change(|acls| {
            for b in bindings {
                acls.add(b);
            }
        })
    }

    /// Removes, per filter, the bindings it selects; returns them per filter (a binding
    /// two filters select is reported by the first).
    pub(crate) fn delete(
        &self,
        filters: &[AclFilter],
    ) -> Result<Vec<Vec<AclBinding>>, AclStoreError> {
        self.change(|acls| filters.iter().map(|f| acls.remove_matching(f)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(name: &str, op: Operation, perm: Permission) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: name.into(),
            pattern_type: PatternType::Literal,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: op,
            permission: perm,
        }
    }

    fn config(dir: &std::path::Path) -> Config {
        let mut c = Config::default();
        c.storage.path = dir.to_path_buf();
        c.broker.authorizer_class_name = AUTHORIZER_CLASS_NAMES[0].into();
        c
    }

    #[test]
    fn bindings_survive_a_restart_and_changes_apply_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let host: IpAddr = "127.0.0.1".parse().unwrap();
        let topic = Resource {
            resource_type: ResourceType::Topic,
            name: "orders",
        };
        let store = AclStore::open(&config(dir.path())).unwrap();
        assert!(!store.authorize("User:alice", host, Operation::Read, topic));
        store
            .create(vec![
                binding("orders", Operation::Read, Permission::Allow),
                binding("audit", Operation::All, Permission::Deny),
            ])
            .unwrap();
        assert!(store.authorize("User:alice", host, Operation::Read, topic));
        let reopened = AclStore::open(&config(dir.path())).unwrap();
        assert_eq!(reopened.current().len(), 2);
        assert!(reopened.authorize("User:alice", host, Operation::Read, topic));
        let filter = AclFilter {
            resource_type: Some(ResourceType::Topic),
            resource_name: Some("orders".into()),
            pattern: acl::PatternFilter::Match,
            principal: None,
            host: None,
            operation: None,
            permission: None,
        };
        let gone = reopened.delete(&[filter.clone(), filter]).unwrap();
        assert_eq!(
            gone,
            vec![
                vec![binding("orders", Operation::Read, Permission::Allow)],
                vec![]
            ]
        );
        assert!(!reopened.authorize("User:alice", host, Operation::Read, topic));
        assert_eq!(
            AclStore::open(&config(dir.path())).unwrap().current().len(),
            1
        );
    }

    #[test]
    fn without_an_authorizer_everything_is_allowed_and_a_damaged_file_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path());
        c.broker.authorizer_class_name.clear();
        let store = AclStore::open(&c).unwrap();
        assert!(!store.enabled());
        let r = Resource {
            resource_type: ResourceType::Cluster,
            name: acl::CLUSTER_NAME,
        };
        assert!(store.authorize("User:x", "::1".parse().unwrap(), Operation::Alter, r));
        std::fs::write(
            dir.path().join("rafka-acls.yaml"),
            "acls:\n  - {resource_type: Topic}\n",
        )
        .unwrap();
        assert!(matches!(
            AclStore::open(&c),
            Err(AclStoreError::File { .. })
        ));
        std::fs::write(
            dir.path().join("rafka-acls.yaml"),
            "acls:\n  - {resource_type: Topic, resource_name: t, pattern_type: LITERAL, principal: alice, host: '*', operation: READ, permission: ALLOW}\n",
        )
        .unwrap();
        let e = AclStore::open(&c).unwrap_err().to_string();
        assert!(e.contains("principal"), "{e}");
    }
}
