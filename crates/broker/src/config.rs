//! The broker's configuration: one typed struct read from `config/config.yaml`, every key
//! with Kafka's name and default, range-checked once at start.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use rafka_core::{limits, SecurityProtocol};
use rafka_protocol::sasl::scram::{self, ScramMechanism};
use rafka_storage::StorageConfig;

/// Most cleaner workers (`log_cleaner_threads`): each is a blocking thread.
pub const LOG_CLEANER_THREADS_MAX: usize = 64;

/// `queued_max_request_bytes` unless set: Rafka bounds what requests being received may
/// hold (Kafka's default, -1, does not).
pub const QUEUED_MAX_REQUEST_BYTES_DEFAULT: i64 = 512 * 1024 * 1024;

/// Why a configuration was refused. Names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// YAML syntax, an unknown key or a wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What serde said, with the key and line.
        message: String,
    },
    /// A value outside its range.
    #[error("config key `{key}`: {problem}")]
    Invalid {
        /// Dotted key.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `broker:` — network and topic defaults.
    pub broker: BrokerConfig,
    /// `storage:` — the engine and log defaults.
    pub storage: StorageConfig,
    /// `durability:` — when data is fsynced.
    pub durability: DurabilityConfig,
    /// `hooks:` — built-in hooks, run in this order (before hooks added from Rust).
    pub hooks: Vec<rafka_hooks::HookConfig>,
    /// `admin:` — the HTTP endpoint for metrics and health. A file without this section
    /// gets [`AdminConfig::file_default`] (`127.0.0.1:9644`); `Config::default()`, what
    /// embedded brokers and tests start from, has it off so that no fixed port is taken.
    #[serde(default = "AdminConfig::file_default")]
    pub admin: AdminConfig,
    /// `log:` — logging level, format and the slow-request threshold.
    pub log: LoggingConfig,
    /// `cluster:` — single-node (default) or a diskless cluster.
    pub cluster: crate::diskless::ClusterConfig,
}

/// `admin:` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// `HOST:PORT` of the admin HTTP endpoint (`/metrics`, `/health/live`,
    /// `/health/ready`); port 0 picks a free port; empty = no endpoint.
    pub listen: String,
}

impl AdminConfig {
    /// The default for a configuration file: `127.0.0.1:9644`.
    pub fn file_default() -> AdminConfig {
        AdminConfig {
            listen: "127.0.0.1:9644".into(),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// `log:` section. The binary installs the subscriber; an embedding application keeps its
/// own, and only `slow_request_ms` applies.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// Level or `tracing` filter (`info`, `rafka_broker=debug,info`); `RUST_LOG` wins.
    pub level: String,
    /// `human` or `json`.
    pub format: LogFormat,
    /// Requests whose handling took longer are logged at `warn`; 0 = never. Time a Fetch
    /// spends in its long poll (up to its `max_wait_ms`) and a JoinGroup or SyncGroup
    /// spends waiting for other members is not counted.
    pub slow_request_ms: u64,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            level: "info".into(),
            format: LogFormat::Human,
            slow_request_ms: 1000,
        }
    }
}

/// A listener's `security_protocol`: Kafka's name, in any case.
fn security_protocol<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SecurityProtocol, D::Error> {
    let name = String::deserialize(d)?;
    SecurityProtocol::from_name(&name).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "unknown security_protocol `{name}`: expected PLAINTEXT, SSL, SASL_PLAINTEXT or \
             SASL_SSL"
        ))
    })
}

/// A SASL mechanism a listener may offer (Kafka's `sasl.enabled.mechanisms` values). A name
/// not listed here is refused when the configuration is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum SaslMechanism {
    /// RFC 4616: the password in clear (use it over TLS only), checked against the stored
    /// SCRAM credentials.
    #[serde(rename = "PLAIN")]
    Plain,
    /// RFC 5802/7677 with SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// RFC 5802 with SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
    /// RFC 7628 (KIP-255): a JWT bearer token, checked against the `sasl_oauthbearer_*`
    /// settings.
    #[serde(rename = "OAUTHBEARER")]
    OAuthBearer,
}

impl SaslMechanism {
    /// Every mechanism the broker implements.
    pub const ALL: &'static [SaslMechanism] = &[
        SaslMechanism::Plain,
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
        SaslMechanism::OAuthBearer,
    ];

    /// Kafka's name, as in SaslHandshake.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// The mechanism named `name` (exact, as Kafka compares them).
    pub fn from_name(name: &str) -> Option<SaslMechanism> {
        SaslMechanism::ALL
            .iter()
            .copied()
            .find(|m| m.name() == name)
    }
}

/// Kafka's default `sasl.enabled.mechanisms` for Rafka: both SCRAM variants (PLAIN only when
/// listed, as it sends the password itself).
fn default_sasl_mechanisms() -> Vec<SaslMechanism> {
    vec![SaslMechanism::ScramSha256, SaslMechanism::ScramSha512]
}

/// Kafka's `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// A client certificate signed by `client_ca` is required (mutual TLS).
    Required,
    /// A client certificate is checked when the client sends one; clients without one are
    /// `User:ANONYMOUS`.
    Requested,
    /// No client certificate is asked for.
    None,
}

/// A listener's `ssl:` settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSslConfig {
    /// PEM certificate chain, the broker's certificate first.
    pub certificate: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates client certificates are checked against.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// `required` (the default when `client_ca` is set), `requested` or `none`.
    #[serde(default)]
    pub client_auth: Option<ClientAuth>,
    /// Kafka's `listener.name.<name>.ssl.principal.mapping.rules`: this listener's rules,
    /// instead of `broker.ssl_principal_mapping_rules`.
    #[serde(default)]
    pub principal_mapping_rules: Option<String>,
}

impl ListenerSslConfig {
    /// The client authentication in effect: `client_auth`, else `required` when a client
    /// CA is given, else `none`.
    pub fn effective_client_auth(&self) -> ClientAuth {
        match (self.client_auth, &self.client_ca) {
            (Some(a), _) => a,
            (None, Some(_)) => ClientAuth::Required,
            (None, None) => ClientAuth::None,
        }
    }
}

/// One entry of `broker.scram_users`: a user's password, salted and stored for each
/// mechanism; the password itself is not kept.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScramUserConfig {
    /// The user name (the principal is `User:<name>`).
    pub name: String,
    /// The password.
    pub password: String,
    /// Mechanisms to store a credential for; both SCRAM mechanisms by default.
    #[serde(default = "ScramUserConfig::all_mechanisms")]
    pub mechanisms: Vec<String>,
    /// The salting's iteration count (4096 to 16384, Kafka's bounds).
    #[serde(default = "ScramUserConfig::default_iterations")]
    pub iterations: u32,
}

impl ScramUserConfig {
    fn all_mechanisms() -> Vec<String> {
        ScramMechanism::ALL
            .iter()
            .map(|m| m.name().to_string())
            .collect()
    }

    fn default_iterations() -> u32 {
        scram::MIN_ITERATIONS
    }
}

impl std::fmt::Debug for ScramUserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramUserConfig")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .field("mechanisms", &self.mechanisms)
            .field("iterations", &self.iterations)
            .finish()
    }
}

/// Most entries in `broker.scram_users`.
pub const SCRAM_USERS_MAX: usize = 1024;

/// Checks `broker.scram_users`: names, mechanisms, iteration counts.
fn validate_scram_users(users: &[ScramUserConfig]) -> Result<(), ConfigError> {
    let invalid = |problem: String| {
        Err(ConfigError::Invalid {
            key: "broker.scram_users",
            problem,
        })
    };
    if users.len() > SCRAM_USERS_MAX {
        return invalid(format!(
            "{} users, more than {SCRAM_USERS_MAX}",
            users.len()
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for u in users {
        if u.name.is_empty() || u.name.len() > 1024 {
            return invalid("a user name is empty or longer than 1024 bytes".into());
        }
        if !seen.insert(u.name.as_str()) {
            return invalid(format!("user {:?} is listed twice", u.name));
        }
        if u.password.is_empty() {
            return invalid(format!("user {:?} has an empty password", u.name));
        }
        if u.mechanisms.is_empty() {
            return invalid(format!("user {:?} has no mechanism", u.name));
        }
        if let Some(m) = u
            .mechanisms
            .iter()
            .find(|m| ScramMechanism::from_name(m).is_none())
        {
            return invalid(format!(
                "user {:?}: {m:?} is not SCRAM-SHA-256 or SCRAM-SHA-512",
                u.name
            ));
        }
        if !(scram::MIN_ITERATIONS..=scram::MAX_ITERATIONS).contains(&u.iterations) {
            return invalid(format!(
                "user {:?}: iterations {} is outside {}..={}",
                u.name,
                u.iterations,
                scram::MIN_ITERATIONS,
                scram::MAX_ITERATIONS
            ));
        }
    }
    Ok(())
}

/// One entry of `broker.listeners`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// The listener's name (Kafka's listener name, e.g. `INTERNAL`).
    pub name: String,
    /// Bind address, numeric `IP:PORT`; port 0 picks a free port.
    pub listen: String,
    /// `HOST:PORT` given in Metadata to clients of this listener; defaults to the bound
    /// address.
    #[serde(default)]
    pub advertised: Option<String>,
    /// `PLAINTEXT` (the default), `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    #[serde(default, deserialize_with = "security_protocol")]
    pub security_protocol: SecurityProtocol,
    /// TLS settings; required for `SSL` and `SASL_SSL`.
    #[serde(default)]
    pub ssl: Option<ListenerSslConfig>,
    /// The SASL mechanisms of this listener (Kafka's
    /// `listener.name.<name>.sasl.enabled.mechanisms`); `broker.sasl_enabled_mechanisms`
    /// when unset. Only on `SASL_*` listeners.
    #[serde(default)]
    pub sasl_enabled_mechanisms: Option<Vec<SaslMechanism>>,
}

impl BrokerConfig {
    /// The listeners to bind: `listeners`, or the `listen` shorthand as one `PLAINTEXT`
    /// listener named `PLAINTEXT`.
    pub fn effective_listeners(&self) -> Vec<ListenerConfig> {
        if !self.listeners.is_empty() {
            return self.listeners.clone();
        }
        vec![ListenerConfig {
            name: "PLAINTEXT".into(),
            listen: self.listen.clone(),
            advertised: self.advertised_listener.clone(),
            security_protocol: SecurityProtocol::Plaintext,
            ssl: None,
            sasl_enabled_mechanisms: None,
        }]
    }

    /// The SASL mechanisms `listener` offers: its own list, else
    /// `broker.sasl_enabled_mechanisms`; empty for a listener without SASL.
    pub fn sasl_mechanisms_of(&self, listener: &ListenerConfig) -> Vec<SaslMechanism> {
        if !listener.security_protocol.uses_sasl() {
            return Vec::new();
        }
        listener
            .sasl_enabled_mechanisms
            .clone()
            .unwrap_or_else(|| self.sasl_enabled_mechanisms.clone())
    }
}

/// Most entries in `broker.listeners`.
pub const LISTENERS_MAX: usize = 16;

/// Checks `broker.listeners` (names, addresses, protocols, SASL mechanisms); reads no file.
fn validate_listeners(
    listeners: &[ListenerConfig],
    broker_mechanisms: &[SaslMechanism],
) -> Result<(), ConfigError> {
    let invalid = |problem: String| {
        Err(ConfigError::Invalid {
            key: "broker.listeners",
            problem,
        })
    };
    if listeners.len() > LISTENERS_MAX {
        return invalid(format!(
            "{} listeners; at most {LISTENERS_MAX}",
            listeners.len()
        ));
    }
    let mut names = std::collections::HashSet::new();
    let mut bound = std::collections::HashSet::new();
    for l in listeners {
        let n = &l.name;
        if n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return invalid(format!(
                "listener name {n:?} must be letters, digits and `_`"
            ));
        }
        if !names.insert(n.to_ascii_uppercase()) {
            return invalid(format!("listener name {n:?} is used twice"));
        }
        let Ok(addr) = l.listen.parse::<std::net::SocketAddr>() else {
            return invalid(format!(
                "listener {n}: listen {:?} is not IP:PORT with a numeric IP",
                l.listen
            ));
        };
        if addr.port() != 0 && !bound.insert(addr) {
            return invalid(format!("listener {n}: {addr} is bound by another listener"));
        }
        if let Some(a) = &l.advertised {
            let ok = a
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return invalid(format!("listener {n}: advertised {a:?} is not HOST:PORT"));
            }
        }
        let p = l.security_protocol;
        match (&l.sasl_enabled_mechanisms, p.uses_sasl()) {
            (Some(_), false) => {
                return invalid(format!(
                    "listener {n}: sasl_enabled_mechanisms is set but security_protocol is \
                     not SASL_PLAINTEXT or SASL_SSL"
                ));
            }
            (Some(m), true) if m.is_empty() => {
                return invalid(format!(
                    "listener {n}: sasl_enabled_mechanisms is empty; no client could \
                     authenticate"
                ));
            }
            (None, true) if broker_mechanisms.is_empty() => {
                return invalid(format!(
                    "listener {n}: broker.sasl_enabled_mechanisms is empty; no client \
                     could authenticate"
                ));
            }
            _ => {}
        }
        match (p, &l.ssl) {
            (SecurityProtocol::Ssl | SecurityProtocol::SaslSsl, None) => {
                return invalid(format!(
                    "listener {n}: security_protocol {} needs `ssl:` with certificate and key",
                    if p.uses_sasl() { "SASL_SSL" } else { "SSL" }
                ));
            }
            (SecurityProtocol::Plaintext | SecurityProtocol::SaslPlaintext, Some(_)) => {
                return invalid(format!(
                    "listener {n}: `ssl:` is set but security_protocol is {}",
                    if p.uses_sasl() {
                        "SASL_PLAINTEXT"
                    } else {
                        "PLAINTEXT"
                    }
                ));
            }
            (SecurityProtocol::Ssl | SecurityProtocol::SaslSsl, Some(ssl)) => {
                if ssl.client_ca.is_none()
                    && matches!(
                        ssl.client_auth,
                        Some(ClientAuth::Required | ClientAuth::Requested)
                    )
                {
                    return invalid(format!(
                        "listener {n}: ssl.client_auth needs ssl.client_ca to check client \
                         certificates against"
                    ));
                }
                if let Some(rules) = &ssl.principal_mapping_rules {
                    if let Err(e) =
                        crate::ssl_principal_mapper::SslPrincipalMapper::from_rules(rules)
                    {
                        return invalid(format!(
                            "listener {n}: ssl.principal_mapping_rules: {}",
                            e.0
                        ));
                    }
                }
            }
            (SecurityProtocol::Plaintext | SecurityProtocol::SaslPlaintext, None) => {}
        }
    }
    Ok(())
}

/// `broker:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// `node.id`.
    pub node_id: i32,
    /// Address to listen on; port 0 picks a free port.
    pub listen: String,
    /// Address given to clients in Metadata; defaults to the bound listen address.
    pub advertised_listener: Option<String>,
    /// Named listeners (Kafka's `listeners` with their security protocols). When set, they
    /// replace `listen` and `advertised_listener`, which are the one-listener shorthand.
    pub listeners: Vec<ListenerConfig>,
    /// `ssl.principal.mapping.rules`: how a client certificate's subject DN becomes the
    /// principal name on `SSL` listeners (Kafka's `RULE:pattern/replacement/[LU]` list and
    /// `DEFAULT`, the DN as it is).
    pub ssl_principal_mapping_rules: String,
    /// How often the `SSL` listeners' certificate, key and client CA files are checked for
    /// changes; changed files are used for new handshakes without a restart. 0 = never.
    pub ssl_certificate_reload_interval_ms: u64,
    /// `sasl.oauthbearer.jwks.endpoint.url`: a `file:` URL of a JWKS document (RFC 7517)
    /// whose RSA and EC keys verify OAUTHBEARER tokens (read at start; no HTTP fetch).
    pub sasl_oauthbearer_jwks_endpoint_url: Option<String>,
    /// `sasl.oauthbearer.jwks.endpoint.refresh.ms`: how often the JWKS file and the PEM
    /// public key files are reread (new keys without a restart). 0 = never.
    pub sasl_oauthbearer_jwks_endpoint_refresh_ms: u64,
    /// PEM public keys (`-----BEGIN PUBLIC KEY-----`, RSA or EC P-256/P-384) that verify
    /// OAUTHBEARER tokens, besides the JWKS's.
    pub sasl_oauthbearer_public_key_files: Vec<PathBuf>,
    /// `sasl.oauthbearer.expected.audience`: a token's `aud` must name one of these (no
    /// check when empty).
    pub sasl_oauthbearer_expected_audience: Vec<String>,
    /// `sasl.oauthbearer.expected.issuer`: a token's `iss` must be this (no check when unset).
    pub sasl_oauthbearer_expected_issuer: Option<String>,
    /// `sasl.oauthbearer.sub.claim.name`: the claim that names the principal.
    pub sasl_oauthbearer_sub_claim_name: String,
    /// `sasl.oauthbearer.clock.skew.seconds`: tolerance of the `exp` and `nbf` checks.
    pub sasl_oauthbearer_clock_skew_seconds: u64,
    /// Accept unsigned tokens (`alg: none`, Kafka's unsecured validator): development only.
    pub sasl_oauthbearer_unsecured_validator_enable: bool,
    /// SCRAM users created at start when the credential store has none of their
    /// mechanism (what `kafka-storage format --add-scram` does for a new Kafka cluster).
    pub scram_users: Vec<ScramUserConfig>,
    /// `sasl.enabled.mechanisms`: what `SASL_*` listeners offer unless they set their own.
    pub sasl_enabled_mechanisms: Vec<SaslMechanism>,
    /// `connections.max.reauth.ms` (KIP-368): an authenticated SASL session lasts this long,
    /// and the client re-authenticates on its connection before it runs out; a connection
    /// whose session has expired is closed at its next request. 0 = sessions never expire.
    pub connections_max_reauth_ms: u64,
    /// `connection.failed.authentication.delay.ms`: how long the answer to a failed
    /// authentication (and the close after it) is held back, against password guessing.
    /// Below `connections_max_idle_ms`.
    pub connection_failed_authentication_delay_ms: u64,
    /// `authorizer.class.name`: empty (no authorizer: every request is allowed and the ACL
    /// APIs answer SECURITY_DISABLED) or one of Kafka's ACL authorizers' class names, which
    /// switch Rafka's ACLs on.
    pub authorizer_class_name: String,
    /// `super.users`: principals (`User:admin`) allowed everything.
    pub super_users: Vec<String>,
    /// `allow.everyone.if.no.acl.found`: whether a resource without any ACL is open to all.
    pub allow_everyone_if_no_acl_found: bool,
    /// `auto.create.topics.enable`.
    pub auto_create_topics_enable: bool,
    /// `num.partitions`: partitions of an auto-created topic or a CreateTopics with -1.
    pub num_partitions: i32,
    /// `socket.request.max.bytes`.
    pub socket_request_max_bytes: usize,
    /// `queued.max.request.bytes` (KIP-72): the bytes of requests larger than 64 KiB that
    /// all connections may be receiving at once; a connection whose next request does not
    /// fit waits, unread, until enough of it is handed on. At least
    /// `socket_request_max_bytes`; 0 or less: no bound (Kafka's default, -1).
    pub queued_max_request_bytes: i64,
    /// `connections.max.idle.ms`.
    pub connections_max_idle_ms: u64,
    /// `max.connections`: connections served at once (more wait to be accepted). Unset:
    /// as many as the open-file limit leaves room for (see `descriptors`).
    pub max_connections: Option<usize>,
    /// `max.connections.per.ip`: connections from one address at once; more are closed at
    /// accept. Kafka's default, unlimited.
    pub max_connections_per_ip: usize,
    /// `max.connections.per.ip.overrides`: `host:count,...`, per address.
    pub max_connections_per_ip_overrides: String,
    /// `quota.window.num`: samples a client quota's rate is measured over.
    pub quota_window_num: u32,
    /// `quota.window.size.seconds`: each sample's time.
    pub quota_window_size_seconds: u64,
    /// `controller.quota.window.num`: with `controller_quota_window_size_seconds`, the
    /// burst a `controller_mutation_rate` allows (samples × window × rate partitions).
    pub controller_quota_window_num: u32,
    /// `controller.quota.window.size.seconds`.
    pub controller_quota_window_size_seconds: u64,
    /// Whether Fetch answers send stored batches straight from their segment files to the
    /// socket (`splice`, `sendfile`) on plaintext connections, instead of reading them into
    /// memory first. Rafka's own switch (Kafka has none: it always does so).
    pub zero_copy_fetch: bool,
    /// `max.incremental.fetch.session.cache.slots`: KIP-227 fetch sessions the broker
    /// keeps (0: none, every Fetch is answered sessionless).
    pub max_incremental_fetch_session_cache_slots: usize,
    /// `log.retention.check.interval.ms`.
    pub log_retention_check_interval_ms: u64,
    /// `log.cleaner.backoff.ms`: the cleaner's pause when no compacted partition is over
    /// its `min.cleanable.dirty.ratio`.
    pub log_cleaner_backoff_ms: u64,
    /// `log.cleaner.dedupe.buffer.size`: memory for one compaction's dedupe map.
    pub log_cleaner_dedupe_buffer_size: usize,
    /// `log.cleaner.enable`: run the log cleaner (compacted topics are not compacted
    /// without it).
    pub log_cleaner_enable: bool,
    /// `log.cleaner.threads`: cleaner workers; each compacts a different partition.
    pub log_cleaner_threads: usize,
    /// `log.cleaner.io.max.bytes.per.second`: bytes read plus written by the cleaners,
    /// all workers together (Kafka's default, `f64::MAX`: unlimited).
    pub log_cleaner_io_max_bytes_per_second: f64,
    /// `log.cleanup.policy`: `cleanup.policy` of topics that do not set it (`delete`,
    /// `compact` or both, comma-separated).
    pub log_cleanup_policy: String,
    /// `group.min.session.timeout.ms`.
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub group_max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long a new group waits for more members
    /// before its first rebalance.
    pub group_initial_rebalance_delay_ms: u64,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets` (at creation).
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.segment.bytes`: `segment.bytes` of `__consumer_offsets`, a compacted
    /// topic (Kafka's default is 100 MiB; Rafka's 16 MiB, so that a modest offsets load
    /// rolls segments the cleaner can compact).
    pub offsets_topic_segment_bytes: u64,
    /// `transaction.state.log.segment.bytes`: `segment.bytes` of `__transaction_state`
    /// (compacted; 16 MiB here, Kafka's 100 MiB).
    pub transaction_state_log_segment_bytes: u64,
    /// `offsets.retention.minutes`: committed offsets of an empty group expire after this.
    pub offsets_retention_minutes: i64,
    /// `offset.metadata.max.bytes`: longest commit metadata string.
    pub offset_metadata_max_bytes: usize,
    /// `group.consumer.session.timeout.ms` (KIP-848 groups).
    pub group_consumer_session_timeout_ms: u64,
    /// `group.consumer.heartbeat.interval.ms` (KIP-848 groups).
    pub group_consumer_heartbeat_interval_ms: i32,
    /// `group.consumer.assignors`: server-side assignors offered; the first is the default.
    pub group_consumer_assignors: Vec<String>,
    /// `group.consumer.min.session.timeout.ms`: lowest per-group `consumer.session.timeout.ms`.
    pub group_consumer_min_session_timeout_ms: i32,
    /// `group.consumer.max.session.timeout.ms`: highest per-group `consumer.session.timeout.ms`.
    pub group_consumer_max_session_timeout_ms: i32,
    /// `group.consumer.min.heartbeat.interval.ms`: lowest per-group
    /// `consumer.heartbeat.interval.ms`.
    pub group_consumer_min_heartbeat_interval_ms: i32,
    /// `group.consumer.max.heartbeat.interval.ms`: highest per-group
    /// `consumer.heartbeat.interval.ms`.
    pub group_consumer_max_heartbeat_interval_ms: i32,
    /// `transaction.state.log.num.partitions`: partitions of `__transaction_state` (at
    /// creation, on the first transactional request).
    pub transaction_state_log_num_partitions: i32,
    /// `transaction.max.timeout.ms`: the largest `transaction.timeout.ms` a producer may ask.
    pub transaction_max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: an idle transactional id is removed after this.
    pub transactional_id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`: how often the
    /// coordinator looks for transactions past their timeout (and idle ids to expire).
    pub transaction_abort_timed_out_transaction_cleanup_interval_ms: u64,
}

impl BrokerConfig {
    /// `max_connections_per_ip_overrides` parsed: per address, its limit (Kafka's
    /// `host:count` pairs, comma-separated; an IPv6 address is the part before the last
    /// colon).
    pub(crate) fn connections_per_ip_overrides(
        &self,
    ) -> Result<std::collections::HashMap<std::net::IpAddr, usize>, String> {
        let mut out = std::collections::HashMap::new();
        for pair in self
            .max_connections_per_ip_overrides
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (host, count) = pair
                .rsplit_once(':')
                .ok_or_else(|| format!("{pair:?} is not host:count"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let ip: std::net::IpAddr = host
                .parse()
                .map_err(|_| format!("{host:?} is not an IP address"))?;
            let count: usize = count
                .trim()
                .parse()
                .map_err(|_| format!("{count:?} is not a connection count"))?;
            if out.insert(ip, count).is_some() {
                return Err(format!("{ip} is given twice"));
            }
        }
        Ok(out)
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 0,
            listen: "127.0.0.1:9092".into(),
            advertised_listener: None,
            listeners: Vec::new(),
            ssl_principal_mapping_rules: crate::ssl_principal_mapper::DEFAULT_RULES.into(),
            ssl_certificate_reload_interval_ms: 5_000,
            sasl_oauthbearer_jwks_endpoint_url: None,
            sasl_oauthbearer_jwks_endpoint_refresh_ms: 3_600_000,
            sasl_oauthbearer_public_key_files: Vec::new(),
            sasl_oauthbearer_expected_audience: Vec::new(),
            sasl_oauthbearer_expected_issuer: None,
            sasl_oauthbearer_sub_claim_name: "sub".into(),
            sasl_oauthbearer_clock_skew_seconds: 30,
            sasl_oauthbearer_unsecured_validator_enable: false,
            scram_users: Vec::new(),
            sasl_enabled_mechanisms: default_sasl_mechanisms(),
            connections_max_reauth_ms: 0,
            connection_failed_authentication_delay_ms: 100,
            authorizer_class_name: String::new(),
            super_users: Vec::new(),
            allow_everyone_if_no_acl_found: false,
            auto_create_topics_enable: true,
            num_partitions: 1,
            socket_request_max_bytes: limits::REQUEST_BYTES_MAX,
            queued_max_request_bytes: QUEUED_MAX_REQUEST_BYTES_DEFAULT,
            connections_max_idle_ms: 600_000,
            max_connections: None,
            max_connections_per_ip: usize::MAX,
            max_connections_per_ip_overrides: String::new(),
            quota_window_num: 11,
            quota_window_size_seconds: 1,
            controller_quota_window_num: 11,
            controller_quota_window_size_seconds: 1,
            zero_copy_fetch: true,
            max_incremental_fetch_session_cache_slots: 1000,
            log_retention_check_interval_ms: 300_000,
            log_cleaner_backoff_ms: 15_000,
            log_cleaner_dedupe_buffer_size: 128 * 1024 * 1024,
            log_cleaner_enable: true,
            log_cleaner_threads: 1,
            log_cleaner_io_max_bytes_per_second: f64::MAX,
            log_cleanup_policy: "delete".into(),
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_initial_rebalance_delay_ms: 3_000,
            offsets_topic_num_partitions: 50,
            offsets_topic_segment_bytes: 16 * 1024 * 1024,
            transaction_state_log_segment_bytes: 16 * 1024 * 1024,
            offsets_retention_minutes: 10_080,
            offset_metadata_max_bytes: 4096,
            group_consumer_session_timeout_ms: 45_000,
            group_consumer_heartbeat_interval_ms: 5_000,
            group_consumer_assignors: vec!["uniform".into(), "range".into()],
            group_consumer_min_session_timeout_ms: 45_000,
            group_consumer_max_session_timeout_ms: 60_000,
            group_consumer_min_heartbeat_interval_ms: 5_000,
            group_consumer_max_heartbeat_interval_ms: 15_000,
            transaction_state_log_num_partitions: 50,
            transaction_max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 604_800_000,
            transaction_abort_timed_out_transaction_cleanup_interval_ms: 10_000,
        }
    }
}

/// When appended data is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// An `acks=all` answer waits for an fsync covering its batch (group commit).
    #[default]
    OnAckAll,
    /// A background flush every `interval_ms`; acks=all does not wait for it.
    Interval,
    /// Never fsync explicitly; the OS writes back when it likes.
    Never,
}

/// `durability:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DurabilityConfig {
    /// `on_ack_all` (default), `interval` or `never`.
    pub fsync: FsyncPolicy,
    /// Flush period for `fsync: interval`.
    pub interval_ms: u64,
}

impl Default for DurabilityConfig {
    fn default() -> Self {
        DurabilityConfig {
            fsync: FsyncPolicy::OnAckAll,
            interval_ms: 1000,
        }
    }
}

impl Config {
    /// Reads and checks a YAML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_yaml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses and checks YAML text.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| ConfigError::Parse {
                path: PathBuf::from("<yaml>"),
                message: e.to_string(),
            })?
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Range checks, and whether this build has the storage engine; opens and binds
    /// nothing. Config may lower a hard limit, never raise it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let b = &self.broker;
        let invalid = |key, problem: String| Err(ConfigError::Invalid { key, problem });
        if b.listen.parse::<std::net::SocketAddr>().is_err() {
            return invalid(
                "broker.listen",
                format!("{:?} is not HOST:PORT with a numeric IP", b.listen),
            );
        }
        if let Some(a) = &b.advertised_listener {
            if a.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                return invalid(
                    "broker.advertised_listener",
                    format!("{a:?} is not HOST:PORT"),
                );
            }
        }
        validate_listeners(&b.listeners, &b.sasl_enabled_mechanisms)?;
        if let Err(e) = crate::ssl_principal_mapper::SslPrincipalMapper::from_rules(
            &b.ssl_principal_mapping_rules,
        ) {
            return invalid("broker.ssl_principal_mapping_rules", e.0);
        }
        validate_scram_users(&b.scram_users)?;
        self.cluster.validate()?;
        if b.connection_failed_authentication_delay_ms >= b.connections_max_idle_ms.max(1) {
            return invalid(
                "broker.connection_failed_authentication_delay_ms",
                format!(
                    "{} must be below connections_max_idle_ms ({})",
                    b.connection_failed_authentication_delay_ms, b.connections_max_idle_ms
                ),
            );
        }
        if b.connections_max_reauth_ms > i64::MAX as u64 {
            return invalid(
                "broker.connections_max_reauth_ms",
                format!("{} is above {}", b.connections_max_reauth_ms, i64::MAX),
            );
        }
        if !b.authorizer_class_name.is_empty()
            && !crate::acl_store::AUTHORIZER_CLASS_NAMES.contains(&b.authorizer_class_name.as_str())
        {
            return invalid(
                "broker.authorizer_class_name",
                format!(
                    "{:?} is not empty or one of {:?}",
                    b.authorizer_class_name,
                    crate::acl_store::AUTHORIZER_CLASS_NAMES
                ),
            );
        }
        if let Some(u) = b.super_users.iter().find(|u| {
            u.split_once(':')
                .is_none_or(|(t, n)| t.is_empty() || n.is_empty())
        }) {
            return invalid(
                "broker.super_users",
                format!("{u:?} is not a principal of the form User:name"),
            );
        }
        if !(1..=limits::PARTITIONS_PER_TOPIC_MAX).contains(&b.num_partitions) {
            return invalid(
                "broker.num_partitions",
                format!(
                    "{} is outside 1..={}",
                    b.num_partitions,
                    limits::PARTITIONS_PER_TOPIC_MAX
                ),
            );
        }
        if b.socket_request_max_bytes < 1024
            || b.socket_request_max_bytes > limits::REQUEST_BYTES_MAX
        {
            return invalid(
                "broker.socket_request_max_bytes",
                format!(
                    "{} is outside 1024..={}",
                    b.socket_request_max_bytes,
                    limits::REQUEST_BYTES_MAX
                ),
            );
        }
        if b.queued_max_request_bytes > 0
            && (b.queued_max_request_bytes as u64) < b.socket_request_max_bytes as u64
        {
            return invalid(
                "broker.queued_max_request_bytes",
                format!(
                    "{} is below socket_request_max_bytes ({}): the largest request could \
                     never be read (0 or less for no bound)",
                    b.queued_max_request_bytes, b.socket_request_max_bytes
                ),
            );
        }
        if let Some(n) = b.max_connections {
            if n == 0 || n > limits::CONNECTIONS_MAX {
                return invalid(
                    "broker.max_connections",
                    format!("{n} is outside 1..={}", limits::CONNECTIONS_MAX),
                );
            }
        }
        if b.max_connections_per_ip == 0 {
            return invalid("broker.max_connections_per_ip", "must be at least 1".into());
        }
        if let Err(e) = b.connections_per_ip_overrides() {
            return invalid("broker.max_connections_per_ip_overrides", e);
        }
        if !(2..=100).contains(&b.quota_window_num) {
            return invalid(
                "broker.quota_window_num",
                format!("{} is outside 2..=100", b.quota_window_num),
            );
        }
        if !(1..=3600).contains(&b.quota_window_size_seconds) {
            return invalid(
                "broker.quota_window_size_seconds",
                format!("{} is outside 1..=3600", b.quota_window_size_seconds),
            );
        }
        if !(1..=100).contains(&b.controller_quota_window_num) {
            return invalid(
                "broker.controller_quota_window_num",
                format!("{} is outside 1..=100", b.controller_quota_window_num),
            );
        }
        if !(1..=3600).contains(&b.controller_quota_window_size_seconds) {
            return invalid(
                "broker.controller_quota_window_size_seconds",
                format!(
                    "{} is outside 1..=3600",
                    b.controller_quota_window_size_seconds
                ),
            );
        }
        if self.durability.fsync == FsyncPolicy::Interval && self.durability.interval_ms == 0 {
            return invalid("durability.interval_ms", "must be at least 1".into());
        }
        if !(1..=limits::PARTITIONS_PER_TOPIC_MAX).contains(&b.transaction_state_log_num_partitions)
        {
            return invalid(
                "broker.transaction_state_log_num_partitions",
                format!(
                    "{} is outside 1..={}",
                    b.transaction_state_log_num_partitions,
                    limits::PARTITIONS_PER_TOPIC_MAX
                ),
            );
        }
        if b.transaction_max_timeout_ms < 1 {
            return invalid(
                "broker.transaction_max_timeout_ms",
                "must be at least 1".into(),
            );
        }
        if b.transaction_abort_timed_out_transaction_cleanup_interval_ms == 0 {
            return invalid(
                "broker.transaction_abort_timed_out_transaction_cleanup_interval_ms",
                "must be at least 1".into(),
            );
        }
        for (key, v) in [
            (
                "broker.offsets_topic_segment_bytes",
                b.offsets_topic_segment_bytes,
            ),
            (
                "broker.transaction_state_log_segment_bytes",
                b.transaction_state_log_segment_bytes,
            ),
        ] {
            if !(14..=i32::MAX as u64).contains(&v) {
                return invalid(key, format!("{v} is outside 14..={}", i32::MAX));
            }
        }
        if !(1..=limits::PARTITIONS_PER_TOPIC_MAX).contains(&b.offsets_topic_num_partitions) {
            return invalid(
                "broker.offsets_topic_num_partitions",
                format!(
                    "{} is outside 1..={}",
                    b.offsets_topic_num_partitions,
                    limits::PARTITIONS_PER_TOPIC_MAX
                ),
            );
        }
        if b.group_min_session_timeout_ms <= 0
            || b.group_min_session_timeout_ms > b.group_max_session_timeout_ms
        {
            return invalid(
                "broker.group_min_session_timeout_ms",
                "must be positive and at most group_max_session_timeout_ms".into(),
            );
        }
        if b.group_consumer_assignors.is_empty()
            || b.group_consumer_assignors
                .iter()
                .any(|a| !crate::group::consumer::ASSIGNORS.contains(&a.as_str()))
        {
            return invalid(
                "broker.group_consumer_assignors",
                format!(
                    "{:?}: each must be one of {:?}",
                    b.group_consumer_assignors,
                    crate::group::consumer::ASSIGNORS
                ),
            );
        }
        if b.group_consumer_heartbeat_interval_ms <= 0 || b.group_consumer_session_timeout_ms == 0 {
            return invalid(
                "broker.group_consumer_heartbeat_interval_ms",
                "heartbeat interval and session timeout must be positive".into(),
            );
        }
        if b.group_consumer_min_session_timeout_ms <= 0
            || b.group_consumer_min_session_timeout_ms > b.group_consumer_max_session_timeout_ms
        {
            return invalid(
                "broker.group_consumer_min_session_timeout_ms",
                "must be positive and at most group_consumer_max_session_timeout_ms".into(),
            );
        }
        if b.group_consumer_min_heartbeat_interval_ms <= 0
            || b.group_consumer_min_heartbeat_interval_ms
                > b.group_consumer_max_heartbeat_interval_ms
        {
            return invalid(
                "broker.group_consumer_min_heartbeat_interval_ms",
                "must be positive and at most group_consumer_max_heartbeat_interval_ms".into(),
            );
        }
        if b.offsets_retention_minutes <= 0 {
            return invalid(
                "broker.offsets_retention_minutes",
                "must be at least 1".into(),
            );
        }
        if !self.admin.listen.is_empty()
            && self.admin.listen.parse::<std::net::SocketAddr>().is_err()
        {
            return invalid(
                "admin.listen",
                format!(
                    "{:?} is not HOST:PORT with a numeric IP (or \"\" for off)",
                    self.admin.listen
                ),
            );
        }
        if b.log_cleaner_backoff_ms == 0 {
            return invalid("broker.log_cleaner_backoff_ms", "must be at least 1".into());
        }
        if b.log_cleaner_dedupe_buffer_size < 1024 {
            return invalid(
                "broker.log_cleaner_dedupe_buffer_size",
                "must be at least 1024".into(),
            );
        }
        if !(1..=LOG_CLEANER_THREADS_MAX).contains(&b.log_cleaner_threads) {
            return invalid(
                "broker.log_cleaner_threads",
                format!(
                    "must be between 1 and {LOG_CLEANER_THREADS_MAX}, got {}",
                    b.log_cleaner_threads
                ),
            );
        }
        let rate = b.log_cleaner_io_max_bytes_per_second;
        if rate.is_nan() || rate < 1.0 {
            return invalid(
                "broker.log_cleaner_io_max_bytes_per_second",
                format!(
                    "must be at least 1 (bytes per second), got {}",
                    b.log_cleaner_io_max_bytes_per_second
                ),
            );
        }
        if let Err(e) = crate::topic_config::validate("cleanup.policy", &b.log_cleanup_policy) {
            return invalid("broker.log_cleanup_policy", e.0);
        }
        if b.max_incremental_fetch_session_cache_slots
            > rafka_core::limits::FETCH_SESSION_CACHE_SLOTS_MAX
        {
            return invalid(
                "broker.max_incremental_fetch_session_cache_slots",
                format!(
                    "at most {}",
                    rafka_core::limits::FETCH_SESSION_CACHE_SLOTS_MAX
                ),
            );
        }
        if b.log_retention_check_interval_ms == 0 {
            return invalid(
                "broker.log_retention_check_interval_ms",
                "must be at least 1".into(),
            );
        }
        // The engine (in this build?) and its values, here rather than when the engine
        // opens: the broker binds its ports before recovery, and a taken port must not
        // hide the real problem.
        if let Err(e) = self.storage.validate() {
            return invalid(e.key, e.problem);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_yaml_gives_kafka_defaults() {
        let c = Config::from_yaml("").unwrap();
        assert_eq!(c.broker.listen, "127.0.0.1:9092");
        assert!(c.broker.auto_create_topics_enable);
        assert_eq!(c.broker.num_partitions, 1);
        assert_eq!(c.durability.fsync, FsyncPolicy::OnAckAll);
    }

    #[test]
    fn queued_max_request_bytes_holds_the_largest_request() {
        let c = Config::from_yaml("").unwrap();
        assert_eq!(c.broker.queued_max_request_bytes, 512 << 20);
        let e = Config::from_yaml(
            "broker:\n  socket_request_max_bytes: 2048\n  queued_max_request_bytes: 2047\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("config key `broker.queued_max_request_bytes`: 2047 is below"),
            "{e}"
        );
    }

    proptest::proptest! {
        /// Every budget that holds the largest request, and every "no bound", is taken.
        #[test]
        fn queued_max_request_bytes_at_or_over_the_request_limit_is_taken(
            request in 1024usize..=limits::REQUEST_BYTES_MAX,
            over in 0i64..(1 << 40),
            unbounded in i64::MIN..=0,
        ) {
            for queued in [request as i64 + over, unbounded] {
                let yaml = format!(
                    "broker:\n  socket_request_max_bytes: {request}\n  \
                     queued_max_request_bytes: {queued}\n"
                );
                let c = Config::from_yaml(&yaml).unwrap();
                proptest::prop_assert_eq!(c.broker.queued_max_request_bytes, queued);
            }
        }
    }

    #[test]
    fn admin_endpoint_is_on_in_files_and_off_in_code() {
        let c = Config::from_yaml("broker:\n  node_id: 1\n").unwrap();
        assert_eq!(c.admin.listen, "127.0.0.1:9644");
        assert_eq!(Config::default().admin.listen, "");
        let c = Config::from_yaml("admin:\n  listen: \"\"\nlog:\n  format: json\n").unwrap();
        assert_eq!(c.admin.listen, "");
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.log.slow_request_ms, 1000);
        let e = Config::from_yaml("admin:\n  listen: localhost\n").unwrap_err();
        assert!(e.to_string().contains("admin.listen"), "{e}");
    }

    #[test]
    fn the_shipped_config_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/config.yaml");
        let c = Config::from_file(&path).unwrap();
        assert_eq!(c.broker.listen, "127.0.0.1:9092");
        assert_eq!(c.admin.listen, "127.0.0.1:9644");
        assert_eq!(c.log.level, "info");
        assert_eq!(c.broker.ssl_principal_mapping_rules, "DEFAULT");
        assert_eq!(c.broker.ssl_certificate_reload_interval_ms, 5000);
    }

    #[test]
    fn ssl_principal_mapping_rules_are_checked() {
        let c = Config::from_yaml(
            "broker:\n  ssl_principal_mapping_rules: \"RULE:^CN=(.*?),OU=.*$/$1/L, DEFAULT\"\n",
        )
        .unwrap();
        c.validate().unwrap();
        let e = Config::from_yaml("broker:\n  ssl_principal_mapping_rules: \"RULE:a/b/Lx\"\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "config key `broker.ssl_principal_mapping_rules`: Invalid rule: `RULE:a/b/Lx`, \
             unmatched substring: `x`"
        );
        // A listener's own rules, checked the same way and named.
        let listener = |rules: &str| {
            format!(
                "broker:\n  listeners:\n    - name: MTLS\n      listen: 127.0.0.1:0\n      \
                 security_protocol: SSL\n      ssl:\n        certificate: /c.pem\n        \
                 key: /k.pem\n        principal_mapping_rules: \"{rules}\"\n"
            )
        };
        let c = Config::from_yaml(&listener("RULE:^CN=(.*?),.*$/$1/U,DEFAULT")).unwrap();
        assert_eq!(
            c.broker.listeners[0]
                .ssl
                .as_ref()
                .unwrap()
                .principal_mapping_rules
                .as_deref(),
            Some("RULE:^CN=(.*?),.*$/$1/U,DEFAULT")
        );
        let e = Config::from_yaml(&listener("DEFAULTS"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "config key `broker.listeners`: listener MTLS: ssl.principal_mapping_rules: \
             Invalid rule: `DEFAULTS`, unmatched substring: `S`"
        );
    }

    #[test]
    fn storage_engine_sections_and_the_seed_keys() {
        let c = Config::from_yaml(
            "storage:\n  storage_type: memory\n  path: \"\"\n  memory:\n    max_bytes: 4096\n",
        )
        .unwrap();
        assert_eq!(c.storage.storage_type, "memory");
        assert_eq!(c.storage.memory_options().max_bytes, 4096);
        assert_eq!(c.storage.metadata_dir(), None);
        let e = Config::from_yaml("storage:\n  memory:\n    max_bytes: 4096\n").unwrap_err();
        assert!(e.to_string().contains("config key `storage.memory`"), "{e}");
        let e = Config::from_yaml("storage:\n  log:\n    segment_bytes: 10\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("config key `storage.log.segment_bytes`"),
            "{e}"
        );
        let e = Config::from_yaml(
            "storage:\n  log_segment_bytes: 4096\n  log: {segment_bytes: 8192}\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("storage.log_segment_bytes"), "{e}");
        assert!(e.to_string().contains("storage.log.segment_bytes"), "{e}");
        let e = Config::from_yaml("storage:\n  log:\n    segment_byte: 1\n").unwrap_err();
        assert!(e.to_string().contains("segment_byte"), "{e}");
    }

    #[test]
    fn cleaner_settings_parse_and_are_checked() {
        let c = Config::from_yaml("").unwrap();
        assert!(c.broker.log_cleaner_enable);
        assert_eq!(c.broker.log_cleaner_threads, 1);
        assert_eq!(c.broker.log_cleaner_io_max_bytes_per_second, f64::MAX);
        assert_eq!(c.broker.log_cleanup_policy, "delete");
        let c = Config::from_yaml(
            "broker:\n  log_cleaner_enable: false\n  log_cleaner_threads: 4\n  log_cleaner_io_max_bytes_per_second: 1048576\n  log_cleanup_policy: compact,delete\n",
        )
        .unwrap();
        assert!(!c.broker.log_cleaner_enable);
        assert_eq!(c.broker.log_cleaner_threads, 4);
        assert_eq!(c.broker.log_cleaner_io_max_bytes_per_second, 1_048_576.0);
        assert_eq!(c.broker.log_cleanup_policy, "compact,delete");
        for (yaml, key) in [
            ("log_cleaner_threads: 0", "broker.log_cleaner_threads"),
            ("log_cleaner_threads: 65", "broker.log_cleaner_threads"),
            (
                "log_cleaner_io_max_bytes_per_second: 0",
                "broker.log_cleaner_io_max_bytes_per_second",
            ),
            (
                "log_cleaner_io_max_bytes_per_second: .nan",
                "broker.log_cleaner_io_max_bytes_per_second",
            ),
            ("log_cleanup_policy: shred", "broker.log_cleanup_policy"),
            ("log_cleanup_policy: \"\"", "broker.log_cleanup_policy"),
        ] {
            let e = Config::from_yaml(&format!("broker:\n  {yaml}\n")).unwrap_err();
            assert!(e.to_string().contains(key), "{yaml}: {e}");
        }
        let e = Config::from_yaml("broker:\n  log_cleaner_enable: sometimes\n").unwrap_err();
        assert!(e.to_string().contains("log_cleaner_enable"), "{e}");
    }

    proptest::proptest! {
        /// Every value in the documented ranges is accepted as written.
        #[test]
        fn every_valid_cleaner_setting_is_accepted(
            threads in 1usize..=LOG_CLEANER_THREADS_MAX,
            rate in 1.0f64..1e15,
            enable: bool,
            policy in proptest::sample::select(vec!["delete", "compact", "compact,delete", "delete,compact", "delete, compact"]),
        ) {
            let c = Config::from_yaml(&format!(
                "broker:\n  log_cleaner_threads: {threads}\n  log_cleaner_io_max_bytes_per_second: {rate:?}\n  log_cleaner_enable: {enable}\n  log_cleanup_policy: \"{policy}\"\n"
            ))
            .unwrap();
            proptest::prop_assert_eq!(c.broker.log_cleaner_threads, threads);
            proptest::prop_assert_eq!(c.broker.log_cleaner_io_max_bytes_per_second, rate);
            proptest::prop_assert_eq!(c.broker.log_cleaner_enable, enable);
            proptest::prop_assert_eq!(c.broker.log_cleanup_policy.as_str(), policy);
        }
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = Config::from_yaml("broker:\n  num_partitions: 0\n").unwrap_err();
        assert!(e.to_string().contains("broker.num_partitions"), "{e}");
        let e = Config::from_yaml("broker:\n  lisen: x\n").unwrap_err();
        assert!(e.to_string().contains("lisen"), "{e}");
        let e = Config::from_yaml("durability:\n  fsync: sometimes\n").unwrap_err();
        assert!(e.to_string().contains("sometimes"), "{e}");
    }

    #[test]
    fn listeners_shorthand_and_list() {
        let c = Config::from_yaml("broker:\n  listen: 127.0.0.1:0\n").unwrap();
        let l = c.broker.effective_listeners();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].name, "PLAINTEXT");
        assert_eq!(l[0].listen, "127.0.0.1:0");
        assert_eq!(l[0].security_protocol, SecurityProtocol::Plaintext);
        let c = Config::from_yaml(
            "broker:\n  listeners:\n    - name: LOCAL\n      listen: 127.0.0.1:9092\n    \
             - name: EXTERNAL\n      listen: 0.0.0.0:9093\n      advertised: kafka.example:9093\n      \
             security_protocol: SSL\n      ssl:\n        certificate: /c.pem\n        key: /k.pem\n        \
             client_ca: /ca.pem\n",
        )
        .unwrap();
        let l = c.broker.effective_listeners();
        assert_eq!(l.len(), 2);
        assert_eq!(l[1].advertised.as_deref(), Some("kafka.example:9093"));
        assert_eq!(l[1].security_protocol, SecurityProtocol::Ssl);
        let ssl = l[1].ssl.as_ref().unwrap();
        assert_eq!(ssl.effective_client_auth(), ClientAuth::Required);
    }

    #[test]
    fn listeners_refused() {
        let cases = [
            ("    - name: A\n      listen: 127.0.0.1:1\n      security_protocol: SASL_SSL\n", "SASL_SSL needs `ssl:`"),
            ("    - name: A\n      listen: 127.0.0.1:1\n      security_protocol: SASL_PLAINTEXT\n      ssl:\n        certificate: c\n        key: k\n", "is SASL_PLAINTEXT"),
            ("    - name: A\n      listen: 127.0.0.1:1\n      sasl_enabled_mechanisms: [PLAIN]\n", "not SASL_PLAINTEXT or SASL_SSL"),
            ("    - name: A\n      listen: 127.0.0.1:1\n      security_protocol: SASL_PLAINTEXT\n      sasl_enabled_mechanisms: []\n", "is empty"),
            ("    - name: A\n      listen: 127.0.0.1:1\n      security_protocol: SSL\n", "needs `ssl:`"),
            ("    - name: A\n      listen: 127.0.0.1:1\n    - name: a\n      listen: 127.0.0.1:2\n", "used twice"),
            ("    - name: A\n      listen: 127.0.0.1:1\n    - name: B\n      listen: 127.0.0.1:1\n", "bound by another"),
            ("    - name: A-B\n      listen: 127.0.0.1:1\n", "letters"),
            ("    - name: A\n      listen: localhost:1\n", "numeric IP"),
            ("    - name: A\n      listen: 127.0.0.1:1\n      advertised: nohost\n", "HOST:PORT"),
            ("    - name: A\n      listen: 127.0.0.1:1\n      security_protocol: SSL\n      ssl:\n        certificate: c\n        key: k\n        client_auth: required\n", "client_ca"),
            ("    - name: A\n      listen: 127.0.0.1:1\n      ssl:\n        certificate: c\n        key: k\n", "PLAINTEXT"),
        ];
        for (yaml, want) in cases {
            let e = Config::from_yaml(&format!("broker:\n  listeners:\n{yaml}")).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains("broker.listeners") && msg.contains(want),
                "{yaml}: {msg}"
            );
        }
        let e = Config::from_yaml("broker:\n  listeners:\n    - name: A\n      listen: 127.0.0.1:1\n      security_protocol: TLS\n").unwrap_err();
        assert!(e.to_string().contains("TLS"), "{e}");
        for (yaml, want) in [
            ("  sasl_enabled_mechanisms: [GSSAPI]\n", "GSSAPI"),
            ("  sasl_enabled_mechanisms: [scram-sha-256]\n", "scram-sha-256"),
            ("  listeners:\n    - name: A\n      listen: 127.0.0.1:1\n      security_protocol: SASL_SSL\n      sasl_enabled_mechanisms: [PLAIN, OAUTH]\n", "OAUTH"),
            ("  sasl_enabled_mechanisms: []\n  listeners:\n    - name: A\n      listen: 127.0.0.1:1\n      security_protocol: SASL_PLAINTEXT\n", "broker.sasl_enabled_mechanisms is empty"),
            ("  connection_failed_authentication_delay_ms: 600000\n", "broker.connection_failed_authentication_delay_ms"),
        ] {
            let e = Config::from_yaml(&format!("broker:\n{yaml}")).unwrap_err();
            assert!(e.to_string().contains(want), "{yaml}: {e}");
        }
    }

    #[test]
    fn sasl_settings_and_kafka_defaults() {
        let c = Config::from_yaml("").unwrap();
        assert_eq!(
            c.broker.sasl_enabled_mechanisms,
            [SaslMechanism::ScramSha256, SaslMechanism::ScramSha512]
        );
        assert_eq!(c.broker.connections_max_reauth_ms, 0);
        assert_eq!(c.broker.connection_failed_authentication_delay_ms, 100);
        let c = Config::from_yaml(
            "broker:\n  connections_max_reauth_ms: 2000\n  connection_failed_authentication_delay_ms: 0\n  \
             listeners:\n    - name: A\n      listen: 127.0.0.1:0\n      security_protocol: SASL_PLAINTEXT\n    \
             - name: B\n      listen: 127.0.0.1:0\n      security_protocol: SASL_SSL\n      \
             sasl_enabled_mechanisms: [PLAIN, SCRAM-SHA-512]\n      ssl:\n        certificate: c\n        key: k\n    \
             - name: C\n      listen: 127.0.0.1:0\n",
        )
        .unwrap();
        let b = &c.broker;
        assert_eq!(b.connections_max_reauth_ms, 2000);
        assert_eq!(b.connection_failed_authentication_delay_ms, 0);
        let l = b.effective_listeners();
        assert_eq!(b.sasl_mechanisms_of(&l[0]), b.sasl_enabled_mechanisms);
        assert_eq!(
            b.sasl_mechanisms_of(&l[1]),
            [SaslMechanism::Plain, SaslMechanism::ScramSha512]
        );
        assert!(b.sasl_mechanisms_of(&l[2]).is_empty());
        for m in SaslMechanism::ALL {
            assert_eq!(SaslMechanism::from_name(m.name()), Some(*m));
        }
        assert_eq!(SaslMechanism::from_name("plain"), None);
    }

    proptest::proptest! {
        /// Every well-formed listener list is accepted, and is what the broker binds.
        #[test]
        fn valid_listeners_are_accepted(
            specs in proptest::collection::vec(
                (
                    proptest::prop_oneof![
                        proptest::strategy::Just("127.0.0.1"),
                        proptest::strategy::Just("0.0.0.0"),
                        proptest::strategy::Just("[::1]"),
                    ],
                    proptest::option::of("[a-z][a-z0-9.-]{0,20}"),
                    0u16..=65535,
                    proptest::bool::ANY,
                    proptest::option::of(proptest::prop_oneof![
                        proptest::strategy::Just("required"),
                        proptest::strategy::Just("requested"),
                        proptest::strategy::Just("none"),
                    ]),
                    proptest::bool::ANY,
                    proptest::option::of(proptest::sample::subsequence(SaslMechanism::ALL.to_vec(), 1..=SaslMechanism::ALL.len())),
                ),
                1..=LISTENERS_MAX,
            ),
            broker_mechanisms in proptest::sample::subsequence(SaslMechanism::ALL.to_vec(), 1..=SaslMechanism::ALL.len()),
            reauth_ms in proptest::prop_oneof![proptest::strategy::Just(0u64), 1u64..=86_400_000],
            delay_ms in 0u64..600_000,
        ) {
            let names = |ms: &[SaslMechanism]| ms.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ");
            let mut yaml = format!(
                "broker:\n  sasl_enabled_mechanisms: [{}]\n  connections_max_reauth_ms: {reauth_ms}\n  \
                 connection_failed_authentication_delay_ms: {delay_ms}\n  listeners:\n",
                names(&broker_mechanisms)
            );
            for (i, (ip, adv, _, ssl, auth, sasl, own)) in specs.iter().enumerate() {
                // Distinct ports (or 0) keep the binds apart.
                let port = if i % 3 == 0 { 0 } else { 20_000 + i as u16 };
                yaml.push_str(&format!("    - name: L_{i}\n      listen: \"{ip}:{port}\"\n"));
                if let Some(h) = adv {
                    yaml.push_str(&format!("      advertised: \"{h}:{}\"\n", specs[i].2));
                }
                let protocol = match (*ssl, *sasl) {
                    (false, false) => "PLAINTEXT",
                    (true, false) => "SSL",
                    (false, true) => "SASL_PLAINTEXT",
                    (true, true) => "SASL_SSL",
                };
                yaml.push_str(&format!("      security_protocol: {protocol}\n"));
                if let (true, Some(own)) = (*sasl, own) {
                    yaml.push_str(&format!("      sasl_enabled_mechanisms: [{}]\n", names(own)));
                }
                if *ssl {
                    yaml.push_str("      ssl:\n        certificate: /c.pem\n        key: /k.pem\n");
                    if let Some(a) = auth {
                        yaml.push_str(&format!("        client_ca: /ca.pem\n        client_auth: {a}\n"));
                    }
                }
            }
            let c = Config::from_yaml(&yaml).map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{yaml}: {e}")))?;
            let l = c.broker.effective_listeners();
            proptest::prop_assert_eq!(l.len(), specs.len());
            let b = &c.broker;
            proptest::prop_assert_eq!(b.connections_max_reauth_ms, reauth_ms);
            proptest::prop_assert_eq!(b.connection_failed_authentication_delay_ms, delay_ms);
            for (i, (_, adv, port, ssl, _, sasl, own)) in specs.iter().enumerate() {
                proptest::prop_assert_eq!(&l[i].name, &format!("L_{i}"));
                proptest::prop_assert_eq!(l[i].advertised.clone(), adv.as_ref().map(|h| format!("{h}:{port}")));
                proptest::prop_assert_eq!(l[i].security_protocol.uses_tls(), *ssl);
                proptest::prop_assert_eq!(l[i].security_protocol.uses_sasl(), *sasl);
                let want = match (sasl, own) {
                    (false, _) => Vec::new(),
                    (true, Some(own)) => own.clone(),
                    (true, None) => broker_mechanisms.clone(),
                };
                proptest::prop_assert_eq!(b.sasl_mechanisms_of(&l[i]), want);
            }
        }
    }

    #[test]
    fn scram_users_default_to_both_mechanisms_and_bad_entries_are_refused() {
        let c =
            Config::from_yaml("broker:\n  scram_users:\n    - name: alice\n      password: pw\n")
                .unwrap();
        let u = &c.broker.scram_users[0];
        assert_eq!(u.mechanisms, ["SCRAM-SHA-256", "SCRAM-SHA-512"]);
        assert_eq!(u.iterations, 4096);
        assert!(!format!("{u:?}").contains("pw"));
        for (yaml, says) in [
            ("- {name: '', password: pw}", "empty"),
            ("- {name: a, password: ''}", "empty password"),
            ("- {name: a, password: pw, mechanisms: [PLAIN]}", "PLAIN"),
            ("- {name: a, password: pw, mechanisms: []}", "no mechanism"),
            ("- {name: a, password: pw, iterations: 4095}", "4095"),
            ("- {name: a, password: pw, iterations: 16385}", "16385"),
            (
                "- {name: a, password: pw}\n    - {name: a, password: x}",
                "twice",
            ),
        ] {
            let e = Config::from_yaml(&format!("broker:\n  scram_users:\n    {yaml}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("broker.scram_users") && e.contains(says),
                "{yaml}: {e}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn every_well_formed_scram_user_list_is_accepted(
            users in proptest::collection::btree_map(
                "[a-zA-Z0-9_.@-]{1,16}",
                ("[ -~]{1,16}", proptest::sample::subsequence(vec!["SCRAM-SHA-256", "SCRAM-SHA-512"], 1..=2), 4096u32..=16384),
                0..8,
            ),
        ) {
            let mut config = Config::default();
            config.broker.scram_users = users
                .iter()
                .map(|(name, (password, mechs, iterations))| ScramUserConfig {
                    name: name.clone(),
                    password: password.clone(),
                    mechanisms: mechs.iter().map(|m| m.to_string()).collect(),
                    iterations: *iterations,
                })
                .collect();
            proptest::prop_assert!(config.validate().is_ok());
        }
    }
}
