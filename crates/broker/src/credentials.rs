//! The SCRAM credential store: per user and mechanism, the salted keys a SCRAM server needs
//! (salt, stored key, server key, iterations); never a password. SCRAM authentication looks
//! credentials up here, `PLAIN` checks a password against them, and
//! Describe/AlterUserScramCredentials read and change them.
//!
//! It starts with the users of `broker.scram_users`. One mutex guards the map; it is held
//! only for a lookup or a change, never across an `.await`.

use std::collections::BTreeMap;

use parking_lot::Mutex;
use rafka_protocol::sasl::scram::{ScramCredential, ScramMechanism};
use ring::rand::{SecureRandom, SystemRandom};

use crate::config::ScramUserConfig;

/// Bytes of a salt the broker draws (for `broker.scram_users`).
pub(crate) const SALT_BYTES: usize = 32;

/// Users and their SCRAM credentials.
#[derive(Default)]
pub(crate) struct CredentialStore {
    users: Mutex<BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>>,
}

impl std::fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialStore")
            .field("users", &self.users.lock().len())
            .finish()
    }
}

/// A salt, or a nonce's bytes, from the operating system's secure random source.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // The OS source fails only when the system cannot supply randomness at all, and no
    // credential may be made then.
    SystemRandom::new()
        .fill(&mut out)
        .expect("the operating system's random source");
    out
}

// The SASL authenticator and the credential APIs, which land next (issue 19), use the rest.
#[allow(dead_code)]
impl CredentialStore {
    /// A store holding the configured users (salting each password, once per mechanism).
    /// The configuration was checked, so unknown mechanism names are skipped.
    pub(crate) fn from_config(users: &[ScramUserConfig]) -> CredentialStore {
        let store = CredentialStore::default();
        store.add_configured(users);
        store
    }

    /// Adds the configured users' credentials for mechanisms the store has none of for
    /// that user (a credential changed over the wire is kept).
    pub(crate) fn add_configured(&self, users: &[ScramUserConfig]) {
        for u in users {
            for mech in u
                .mechanisms
                .iter()
                .filter_map(|m| ScramMechanism::from_name(m))
            {
                if self.lookup(&u.name, mech).is_some() {
                    continue;
                }
                let salt = random_bytes::<SALT_BYTES>();
                let cred = ScramCredential::from_password(mech, &u.password, &salt, u.iterations);
                self.upsert(&u.name, cred);
            }
        }
    }

    /// The credential `user` has for `mech`.
    pub(crate) fn lookup(&self, user: &str, mech: ScramMechanism) -> Option<ScramCredential> {
        self.users.lock().get(user)?.get(&mech).cloned()
    }

    /// Whether `password` is `user`'s, checked against any of the user's stored
    /// credentials (what `PLAIN` authenticates with).
    pub(crate) fn verify_plain(&self, user: &str, password: &str) -> bool {
        let cred = {
            let users = self.users.lock();
            users.get(user).and_then(|m| m.values().next().cloned())
        };
        // The salting runs outside the lock.
        cred.is_some_and(|c| c.verify_password(password))
    }

    /// Adds or replaces `user`'s credential for its mechanism.
    pub(crate) fn upsert(&self, user: &str, cred: ScramCredential) {
        self.users
            .lock()
            .entry(user.to_string())
            .or_default()
            .insert(cred.mechanism, cred);
    }

    /// Removes `user`'s credential for `mech`; whether there was one.
    pub(crate) fn delete(&self, user: &str, mech: ScramMechanism) -> bool {
        let mut users = self.users.lock();
        let Some(m) = users.get_mut(user) else {
            return false;
        };
        let had = m.remove(&mech).is_some();
        if m.is_empty() {
            users.remove(user);
        }
        had
    }

    /// Users with their mechanisms and iteration counts: all of them, or only `user`.
    pub(crate) fn describe(&self, user: Option<&str>) -> Vec<(String, Vec<(ScramMechanism, u32)>)> {
        let users = self.users.lock();
        users
            .iter()
            .filter(|(name, _)| user.is_none_or(|u| u == name.as_str()))
            .map(|(name, m)| {
                (
                    name.clone(),
                    m.values().map(|c| (c.mechanism, c.iterations)).collect(),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, password: &str, mechanisms: &[&str]) -> ScramUserConfig {
        ScramUserConfig {
            name: name.into(),
            password: password.into(),
            mechanisms: mechanisms.iter().map(|m| m.to_string()).collect(),
            iterations: 4096,
        }
    }

    #[test]
    fn configured_users_authenticate_by_scram_and_plain() {
        let store = CredentialStore::from_config(&[
            user("alice", "alice-secret", &["SCRAM-SHA-256", "SCRAM-SHA-512"]),
            user("bob", "bob-secret", &["SCRAM-SHA-512"]),
        ]);
        let a = store.lookup("alice", ScramMechanism::Sha256).unwrap();
        assert!(a.verify_password("alice-secret"));
        assert_eq!(a.salt.len(), SALT_BYTES);
        assert!(store.lookup("bob", ScramMechanism::Sha256).is_none());
        assert!(store.verify_plain("bob", "bob-secret"));
        assert!(!store.verify_plain("bob", "alice-secret"));
        assert!(!store.verify_plain("carol", "x"));
        assert_eq!(
            store.describe(None),
            vec![
                (
                    "alice".to_string(),
                    vec![
                        (ScramMechanism::Sha256, 4096),
                        (ScramMechanism::Sha512, 4096)
                    ]
                ),
                ("bob".to_string(), vec![(ScramMechanism::Sha512, 4096)]),
            ]
        );
    }

    #[test]
    fn a_stored_credential_outlives_the_configured_one_and_delete_removes_it() {
        let store = CredentialStore::from_config(&[user("alice", "old", &["SCRAM-SHA-512"])]);
        let changed = ScramCredential::from_password(ScramMechanism::Sha512, "new", b"salt", 8192);
        store.upsert("alice", changed.clone());
        store.add_configured(&[user("alice", "old", &["SCRAM-SHA-512"])]);
        assert_eq!(store.lookup("alice", ScramMechanism::Sha512), Some(changed));
        assert!(store.delete("alice", ScramMechanism::Sha512));
        assert!(!store.delete("alice", ScramMechanism::Sha512));
        assert!(store.describe(Some("alice")).is_empty());
    }
}
