//! The SCRAM credential store: per user and mechanism, the salted keys a SCRAM server needs
//! (salt, stored key, server key, iterations); never a password. SCRAM authentication looks
//! credentials up here, `PLAIN` checks a password against them, and
//! Describe/AlterUserScramCredentials read and change them.
//!
//! With a data directory, the store is durable: `rafka-credentials.yaml` (mode 0600,
//! replaced atomically after every change) holds each credential's salt, stored key,
//! server key and iteration count — never a password — and is loaded at start. The users
//! of `broker.scram_users` are then added for the mechanisms the file has none of for them
//! (like `kafka-storage format --add-scram`: a credential changed over the wire is kept).
//!
//! One mutex guards the map; it is held only for a lookup or a change, never across an
//! `.await`. A second one serializes changes with their file writes, so an older snapshot
//! never replaces a newer one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use rafka_protocol::sasl::scram::{ScramCredential, ScramMechanism};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::config::ScramUserConfig;

/// The credentials file in the data directory.
pub(crate) const CREDENTIALS_FILE: &str = "rafka-credentials.yaml";

/// Most users the store holds; AlterUserScramCredentials adding one more is refused
/// (UNACCEPTABLE_CREDENTIAL). Bounds the map and the file.
pub(crate) const CREDENTIAL_USERS_MAX: usize = 100_000;

/// Largest credentials file read at start (a user's entry is about 500 bytes).
const CREDENTIALS_FILE_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// Why the credentials file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Reading, writing or renaming the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file does not hold credentials in the expected layout.
    #[error("{path}: {problem}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// One credential as stored: hex strings, the iteration count.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredCredential {
    salt: String,
    stored_key: String,
    server_key: String,
    iterations: u32,
}

/// The file's layout: per user, per mechanism name, the credential.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredFile {
    version: u32,
    users: BTreeMap<String, BTreeMap<String, StoredCredential>>,
}

const FILE_VERSION: u32 = 1;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Bytes of a salt the broker draws (for `broker.scram_users`).
pub(crate) const SALT_BYTES: usize = 32;

type Users = BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>;

/// Users and their SCRAM credentials.
#[derive(Default)]
pub(crate) struct CredentialStore {
    users: Mutex<Users>,
    /// Where changes are written; `None` keeps them in memory (no data directory).
    path: Option<PathBuf>,
    /// Held for a whole change and its file write.
    changing: Mutex<()>,
}

/// A change that AlterUserScramCredentials asks for, after its checks.
#[derive(Debug)]
pub(crate) enum CredentialChange {
    /// Remove `user`'s credential for the mechanism.
    Delete(String, ScramMechanism),
    /// Add or replace `user`'s credential for its mechanism.
    Upsert(String, ScramCredential),
}

/// What became of one [`CredentialChange`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeOutcome {
    /// Applied.
    Done,
    /// A deletion of a credential that does not exist.
    NotFound,
    /// An upsertion of a new user past [`CREDENTIAL_USERS_MAX`].
    TooManyUsers,
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

// The SASL authenticator uses the lookups (issue 19, landing beside this).
#[allow(dead_code)]
impl CredentialStore {
    /// A store holding the configured users (salting each password, once per mechanism).
    /// The configuration was checked, so unknown mechanism names are skipped.
    pub(crate) fn from_config(users: &[ScramUserConfig]) -> CredentialStore {
        let store = CredentialStore::default();
        store.add_configured(users);
        store
    }

    /// The durable store at `path` (`None`: in memory only): the file's credentials when it
    /// exists, plus the configured users' for mechanisms it has none of; written back when
    /// the configuration added any.
    pub(crate) fn open(
        path: Option<PathBuf>,
        users: &[ScramUserConfig],
    ) -> Result<CredentialStore, CredentialsError> {
        let stored = match &path {
            Some(p) => load(p)?,
            None => Users::new(),
        };
        let store = CredentialStore {
            users: Mutex::new(stored),
            path,
            changing: Mutex::new(()),
        };
        let before = store.count();
        store.add_configured(users);
        if store.count() != before {
            let _g = store.changing.lock();
            store.persist()?;
        }
        Ok(store)
    }

    fn count(&self) -> usize {
        self.users.lock().values().map(BTreeMap::len).sum()
    }

    /// Applies `changes` in order (a deletion of a missing credential, or a new user past
    /// the bound, is skipped and reported) and writes the file. If the write fails nothing
    /// is changed and the error is returned.
    pub(crate) fn alter(
        &self,
        changes: Vec<CredentialChange>,
    ) -> Result<Vec<ChangeOutcome>, CredentialsError> {
        let _g = self.changing.lock();
        let (before, outcomes) = {
            let mut users = self.users.lock();
            let before = users.clone();
            let outcomes = changes
                .into_iter()
                .map(|c| match c {
                    CredentialChange::Delete(user, mech) => {
                        let Some(m) = users.get_mut(&user) else {
                            return ChangeOutcome::NotFound;
                        };
                        let had = m.remove(&mech).is_some();
                        if m.is_empty() {
                            users.remove(&user);
                        }
                        if had {
                            ChangeOutcome::Done
                        } else {
                            ChangeOutcome::NotFound
                        }
                    }
                    CredentialChange::Upsert(user, cred) => {
                        if !users.contains_key(&user) && users.len() >= CREDENTIAL_USERS_MAX {
                            return ChangeOutcome::TooManyUsers;
                        }
                        users.entry(user).or_default().insert(cred.mechanism, cred);
                        ChangeOutcome::Done
                    }
                })
                .collect::<Vec<_>>();
            (before, outcomes)
        };
        if outcomes.contains(&ChangeOutcome::Done) {
            if let Err(e) = self.persist() {
                *self.users.lock() = before;
                return Err(e);
            }
        }
        Ok(outcomes)
    }

    /// Writes the file (mode 0600, atomically). The caller holds `changing`.
    fn persist(&self) -> Result<(), CredentialsError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file = StoredFile {
            version: FILE_VERSION,
            users: self
                .users
                .lock()
                .iter()
                .map(|(user, creds)| {
                    let creds = creds
                        .values()
                        .map(|c| {
                            (
                                c.mechanism.name().to_string(),
                                StoredCredential {
                                    salt: hex(&c.salt),
                                    stored_key: hex(&c.stored_key),
                                    server_key: hex(&c.server_key),
                                    iterations: c.iterations,
                                },
                            )
                        })
                        .collect();
                    (user.clone(), creds)
                })
                .collect(),
        };
        let mut text = String::from(
            "# Rafka's SCRAM credentials: salts and derived keys, never passwords. Written by\n\
             # the broker; change them with AlterUserScramCredentials (`rafka user`).\n",
        );
        text.push_str(
            &serde_yaml::to_string(&file).map_err(|e| CredentialsError::Corrupt {
                path: path.clone(),
                problem: e.to_string(),
            })?,
        );
        write_private(path, text.as_bytes()).map_err(|source| CredentialsError::Io {
            path: path.clone(),
            source,
        })
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

/// Reads the credentials file; an absent file is an empty store.
fn load(path: &Path) -> Result<Users, CredentialsError> {
    let corrupt = |problem: String| CredentialsError::Corrupt {
        path: path.to_path_buf(),
        problem,
    };
    let io = |source| CredentialsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Users::new()),
        Err(e) => return Err(io(e)),
    };
    if len > CREDENTIALS_FILE_BYTES_MAX {
        return Err(corrupt(format!(
            "{len} bytes, more than {CREDENTIALS_FILE_BYTES_MAX}"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    let file: StoredFile = serde_yaml::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
    if file.version != FILE_VERSION {
        return Err(corrupt(format!("unknown version {}", file.version)));
    }
    let mut users = Users::new();
    for (user, creds) in file.users {
        let mut m = BTreeMap::new();
        for (name, c) in creds {
            let mechanism = ScramMechanism::from_name(&name)
                .ok_or_else(|| corrupt(format!("user {user:?}: unknown mechanism {name:?}")))?;
            let field = |what: &str, v: &str| {
                unhex(v).ok_or_else(|| corrupt(format!("user {user:?} {name}: bad {what}")))
            };
            let cred = ScramCredential {
                mechanism,
                salt: field("salt", &c.salt)?,
                stored_key: field("stored_key", &c.stored_key)?,
                server_key: field("server_key", &c.server_key)?,
                iterations: c.iterations,
            };
            if cred.stored_key.len() != mechanism.hash_len()
                || cred.server_key.len() != mechanism.hash_len()
            {
                return Err(corrupt(format!("user {user:?} {name}: key length")));
            }
            m.insert(mechanism, cred);
        }
        if !m.is_empty() {
            users.insert(user, m);
        }
    }
    Ok(users)
}

/// Replaces `path` with `bytes` readable by the owner only: a temp file created 0600,
/// fsync, rename, fsync of the directory.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("yaml.tmp");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // An existing temp file keeps its old mode through `open`: set it.
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
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

    #[test]
    fn changes_are_stored_reloaded_and_undone_when_the_write_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CREDENTIALS_FILE);
        let store = CredentialStore::open(Some(path.clone()), &[]).unwrap();
        let cred = ScramCredential::from_password(ScramMechanism::Sha256, "pw", b"salt", 4096);
        let outcomes = store
            .alter(vec![
                CredentialChange::Upsert("alice".into(), cred.clone()),
                CredentialChange::Delete("bob".into(), ScramMechanism::Sha256),
            ])
            .unwrap();
        assert_eq!(outcomes, vec![ChangeOutcome::Done, ChangeOutcome::NotFound]);
        let reopened = CredentialStore::open(Some(path.clone()), &[]).unwrap();
        assert_eq!(reopened.lookup("alice", ScramMechanism::Sha256), Some(cred));

        // A store whose file cannot be written (its directory became a file) refuses the
        // change and keeps what it had.
        let blocked = dir.path().join("sub");
        std::fs::create_dir(&blocked).unwrap();
        let store = CredentialStore::open(Some(blocked.join(CREDENTIALS_FILE)), &[]).unwrap();
        std::fs::remove_dir(&blocked).unwrap();
        std::fs::write(&blocked, b"x").unwrap();
        let other = ScramCredential::from_password(ScramMechanism::Sha512, "pw", b"salt", 4096);
        assert!(store
            .alter(vec![CredentialChange::Upsert("carol".into(), other)])
            .is_err());
        assert!(store.describe(None).is_empty());
    }

    #[test]
    fn hex_round_trips_and_refuses_bad_text() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&bytes)), Some(bytes));
        for bad in ["0", "zz", "0g", "\u{e9}0"] {
            assert_eq!(unhex(bad), None, "{bad}");
        }
    }
}
