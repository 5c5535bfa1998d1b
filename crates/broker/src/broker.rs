//! The running broker: startup, background tasks (retention, interval flush) and a graceful
//! shutdown that finishes in-flight requests, flushes and marks the stop clean.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use rafka_core::{StorageError, Timestamp};

use rafka_hooks::{Hook, HookChain};

use crate::cleaner_state::CleanerState;
use crate::config::{Config, ConfigError, FsyncPolicy, SaslMechanism};
use crate::server::ListenerSpec;
use crate::shared::Shared;
use crate::state::TopicError;

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The configuration is invalid (checked before anything is opened or bound).
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// The storage engine failed to open or recover.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// Topic metadata could not be loaded.
    #[error("topic metadata: {0}")]
    Topics(#[from] TopicError),
    /// The SCRAM credentials file could not be read or written.
    #[error("SCRAM credentials: {0}")]
    Credentials(#[from] crate::credentials::CredentialsError),
    /// A `hooks:` entry is invalid (pattern, schema file, audit file).
    #[error("{0}")]
    Hooks(#[from] rafka_hooks::HookConfigError),
    /// The hook chain could not be built.
    #[error("hooks: {0}")]
    Chain(#[from] rafka_hooks::ChainError),
    /// Diskless mode could not reach or set up its coordinator or object store.
    #[error("diskless cluster: {0}")]
    Diskless(#[from] crate::diskless::DisklessError),
    /// The listener (Kafka or admin) could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// A running broker.
pub struct Broker {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    shutdown_tx: watch::Sender<bool>,
    listener_addrs: Vec<(String, SocketAddr)>,
    accept_tasks: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
    recovered_partitions: usize,
    startup: Duration,
}

/// Starts a broker with hooks written in Rust:
/// `Broker::builder().config(cfg).hook(MyHook).start().await`.
#[derive(Default)]
pub struct BrokerBuilder {
    config: Config,
    hooks: Vec<Arc<dyn Hook>>,
}

impl BrokerBuilder {
    /// The configuration (default: `Config::default()`).
    pub fn config(mut self, config: Config) -> BrokerBuilder {
        self.config = config;
        self
    }

    /// Adds a custom hook. Hooks run in the order added, after the `hooks:` of the config.
    pub fn hook(mut self, hook: impl Hook) -> BrokerBuilder {
        self.hooks.push(Arc::new(hook));
        self
    }

    /// Adds a custom hook already shared (e.g. to inspect its state from a test).
    pub fn hook_arc(mut self, hook: Arc<dyn Hook>) -> BrokerBuilder {
        self.hooks.push(hook);
        self
    }

    /// Opens storage, recovers, binds and starts serving. Must run inside a tokio runtime.
    pub async fn start(self) -> Result<Broker, BrokerError> {
        Broker::start_with_hooks(self.config, self.hooks).await
    }
}

impl Broker {
    /// A builder, for custom hooks.
    pub fn builder() -> BrokerBuilder {
        BrokerBuilder::default()
    }

    /// Opens storage, recovers, binds and starts serving. Must run inside a tokio runtime.
    pub async fn start(config: Config) -> Result<Broker, BrokerError> {
        Broker::start_with_hooks(config, Vec::new()).await
    }

    async fn start_with_hooks(
        config: Config,
        custom_hooks: Vec<Arc<dyn Hook>>,
    ) -> Result<Broker, BrokerError> {
        let started = Instant::now();
        // Every check of the configuration before anything is bound: a user who already runs
        // a broker on the default ports must learn about a missing engine or a bad value,
        // not about a port in use.
        config.validate()?;
        // The listeners' TLS material (files readable, PEM parses, the key matches the
        // certificate): a config error like the others, before any port is bound.
        use crate::ssl_principal_mapper::SslPrincipalMapper;
        let mapper = SslPrincipalMapper::from_rules(&config.broker.ssl_principal_mapping_rules)
            .map_err(|e| ConfigError::Invalid {
                key: "broker.ssl_principal_mapping_rules",
                problem: e.0,
            })?;
        // OAUTHBEARER's verification keys (PEM files, a JWKS file): readable and usable.
        let oauthbearer = Arc::new(crate::oauthbearer::ValidatorCell::new(&config.broker)?);
        let listeners = config
            .broker
            .effective_listeners()
            .into_iter()
            .map(|l| {
                // A listener's own `ssl.principal_mapping_rules`, else the broker's.
                let own = l
                    .ssl
                    .as_ref()
                    .and_then(|s| s.principal_mapping_rules.as_deref());
                let mapper = match own {
                    None => mapper.clone(),
                    Some(rules) => {
                        SslPrincipalMapper::from_rules(rules).map_err(|e| ConfigError::Invalid {
                            key: "broker.listeners",
                            problem: format!(
                                "listener {}: ssl.principal_mapping_rules: {}",
                                l.name, e.0
                            ),
                        })?
                    }
                };
                crate::tls::TlsListener::load(&l, mapper).map(|tls| (l, tls))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let tls_listeners: Vec<_> = listeners.iter().filter_map(|(_, t)| t.clone()).collect();
        // Hooks next: a bad `hooks:` entry (pattern, schema file) fails before any port is
        // bound or file opened.
        let mut hooks = rafka_hooks::build_hooks(&config.hooks)?;
        hooks.extend(custom_hooks);
        let hooks = HookChain::new(hooks)?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        // The admin endpoint first: liveness answers while recovery runs.
        let admin_state = Arc::new(crate::admin::AdminState::default());
        let (admin_addr, admin_task) = if config.admin.listen.is_empty() {
            (None, None)
        } else {
            let (listener, addr) =
                crate::admin::bind(&config.admin.listen)
                    .await
                    .map_err(|source| BrokerError::Bind {
                        addr: config.admin.listen.clone(),
                        source,
                    })?;
            let task = tokio::spawn(crate::admin::serve(
                listener,
                admin_state.clone(),
                shutdown_rx.clone(),
            ));
            (Some(addr), Some(AbortOnDrop(Some(task))))
        };
        if !hooks.is_empty() {
            tracing::info!(hooks = ?hooks.names(), "hooks installed");
        }
        let max_connections = connection_limit(&config);
        let storage_cfg = config.storage.clone();
        let engine = tokio::task::spawn_blocking(move || rafka_storage::open_engine(&storage_cfg))
            .await
            .map_err(|e| StorageError::Io(std::io::Error::other(e.to_string())))??;
        let (config, recovered) = tokio::task::spawn_blocking(move || {
            let mut recovered = Shared::recover(&config, engine)?;
            let path = config
                .storage
                .metadata_dir()
                .map(|d| d.join(crate::credentials::CREDENTIALS_FILE));
            recovered.credentials = Some(crate::credentials::CredentialStore::open(
                path,
                &config.broker.scram_users,
            )?);
            Ok::<_, BrokerError>((config, recovered))
        })
        .await
        .map_err(|e| StorageError::Io(std::io::Error::other(e.to_string())))??;
        let recovered_partitions = recovered.partitions;
        let mut recovered = recovered;
        if config.cluster.is_diskless() {
            recovered.diskless = Some(Arc::new(
                crate::diskless::Diskless::start(&config.cluster, config.broker.node_id).await?,
            ));
        }
        let mut bound = Vec::new();
        let mut advertised = Vec::new();
        for (l, tls) in listeners {
            let listener =
                TcpListener::bind(&l.listen)
                    .await
                    .map_err(|source| BrokerError::Bind {
                        addr: l.listen.clone(),
                        source,
                    })?;
            let local = listener.local_addr().map_err(|source| BrokerError::Bind {
                addr: l.listen.clone(),
                source,
            })?;
            let (host, port) = match &l.advertised {
                Some(a) => {
                    let (h, p) = a.rsplit_once(':').unwrap_or((a.as_str(), "9092"));
                    (h.to_string(), p.parse().unwrap_or(9092))
                }
                None => (local.ip().to_string(), local.port() as i32),
            };
            tracing::info!(listener = %l.name, %local, advertised = %format!("{host}:{port}"),
                protocol = ?l.security_protocol, "listener bound");
            advertised.push((l.name.clone(), host, port));
            let protocol = l.security_protocol;
            bound.push((
                listener,
                local,
                ListenerSpec {
                    name: l.name.clone(),
                    protocol,
                    tls,
                    sasl: l.security_protocol.uses_sasl().then(|| {
                        let mechanisms = config.broker.sasl_mechanisms_of(&l);
                        if mechanisms.contains(&SaslMechanism::OAuthBearer)
                            && !oauthbearer.get().can_validate()
                        {
                            tracing::warn!(
                                listener = %l.name,
                                "OAUTHBEARER is offered but no sasl_oauthbearer key (nor the \
                                 unsecured validator) is configured: every token is refused"
                            );
                        }
                        Arc::new(
                            crate::sasl::SaslSettings::new(
                                mechanisms,
                                config.broker.connections_max_reauth_ms,
                            )
                            .with_oauthbearer(oauthbearer.clone()),
                        )
                    }),
                },
            ));
        }
        let local_addr = bound[0].1;
        let listener_addrs: Vec<(String, SocketAddr)> = bound
            .iter()
            .map(|(_, a, spec)| (spec.name.clone(), *a))
            .collect();
        let shared = Arc::new(Shared::new(config, recovered, hooks, advertised));
        // Diskless: registered (with the advertised address, known now) before serving.
        if let Some(d) = &shared.diskless {
            d.membership
                .register(&d.pg, shared.advertised_listeners(), None)
                .await?;
        }
        // One connection limit for all listeners, as Kafka's `max.connections`.
        let slots = Arc::new(Semaphore::new(max_connections));
        let accept_tasks: Vec<JoinHandle<()>> = bound
            .into_iter()
            .map(|(listener, _, spec)| {
                tokio::spawn(crate::server::accept_loop(
                    shared.clone(),
                    listener,
                    spec,
                    slots.clone(),
                    shutdown_rx.clone(),
                ))
            })
            .collect();
        let mut background = vec![
            // New OAUTHBEARER keys (a rotated JWKS) when the key files change.
            tokio::spawn(crate::oauthbearer::refresh_loop(
                oauthbearer,
                Duration::from_millis(
                    shared
                        .config
                        .broker
                        .sasl_oauthbearer_jwks_endpoint_refresh_ms,
                ),
                shutdown_rx.clone(),
            )),
            // New certificates for new handshakes when a listener's PEM files change.
            tokio::spawn(crate::tls::reload_loop(
                tls_listeners,
                Duration::from_millis(shared.config.broker.ssl_certificate_reload_interval_ms),
                shutdown_rx.clone(),
            )),
            tokio::spawn(retention_loop(shared.clone(), shutdown_rx.clone())),
            tokio::spawn(group_loop(shared.clone(), shutdown_rx.clone())),
            tokio::spawn(txn_loop(shared.clone(), shutdown_rx.clone())),
        ];
        if let Some(d) = &shared.diskless {
            background.push(crate::diskless::sweeper::spawn(d));
            background.push(tokio::spawn(d.clone().heartbeat_loop(shutdown_rx.clone())));
        }
        if shared.config.broker.log_cleaner_enable {
            background.push(tokio::spawn(cleaner_loop(
                shared.clone(),
                shutdown_rx.clone(),
            )));
        }
        // Transactions whose commit or abort was decided before the stop are finished.
        crate::api::txn::resume(&shared);
        if shared.config.durability.fsync == FsyncPolicy::Interval {
            background.push(tokio::spawn(flush_loop(shared.clone(), shutdown_rx)));
        }
        if let Some(task) = admin_task.and_then(|mut t| t.0.take()) {
            background.push(task);
        }
        admin_state.set_ready(shared.clone());
        if let Some(addr) = admin_addr {
            tracing::info!(%addr, "admin endpoint: /metrics, /health/live, /health/ready");
        }
        Ok(Broker {
            shared,
            local_addr,
            admin_addr,
            shutdown_tx,
            listener_addrs,
            accept_tasks,
            background,
            recovered_partitions,
            startup: started.elapsed(),
        })
    }

    /// The address the (first) listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Every listener's name and bound address, in config order.
    pub fn listener_addresses(&self) -> &[(String, SocketAddr)] {
        &self.listener_addrs
    }

    /// The bound address of the listener named `name`.
    pub fn listener_address(&self, name: &str) -> Option<SocketAddr> {
        self.listener_addrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
    }

    /// The address the admin HTTP endpoint is bound to; `None` when `admin.listen` is empty.
    pub fn admin_address(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// `host:port` for a client's `bootstrap.servers`.
    pub fn bootstrap_address(&self) -> String {
        self.local_addr.to_string()
    }

    /// Shared state (for embedding applications and tests).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Partitions found on disk at start.
    pub fn recovered_partitions(&self) -> usize {
        self.recovered_partitions
    }

    /// Time from `start` to accepting connections.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// Stops accepting, lets connections finish their in-flight requests (up to a bound),
    /// flushes every partition and records a clean shutdown.
    pub async fn shutdown(mut self) -> Result<(), StorageError> {
        let _ = self.shutdown_tx.send(true);
        for t in self.accept_tasks.drain(..) {
            let _ = t.await;
        }
        for t in self.background.drain(..) {
            t.abort();
        }
        if let Some(d) = &self.shared.diskless {
            // The others drop this broker at once rather than when its lease ends.
            if let Err(e) = d.membership.leave(&d.pg).await {
                tracing::warn!(error = %e, "cannot deregister from the diskless cluster");
            }
        }
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            for p in shared.cluster.all_partitions() {
                // A producer snapshot at the log end: the next start replays nothing.
                if let Err(e) = p.snapshot_producers() {
                    tracing::warn!(partition = %p.tp, error = %e, "producer snapshot failed at shutdown");
                }
                p.flush()?;
            }
            shared.cluster.engine().close()
        })
        .await
        .map_err(|e| StorageError::Io(std::io::Error::other(e.to_string())))?
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // Dropped without shutdown(): stop serving; no clean-shutdown marker is written.
        let _ = self.shutdown_tx.send(true);
        for t in self.accept_tasks.drain(..) {
            t.abort();
        }
        for t in &self.background {
            t.abort();
        }
    }
}

/// `max.connections` in force: the configured one, or as many as the open-file limit
/// (raised to the hard one first) leaves room for after the storage's segment files. Warns
/// when the descriptors may not cover the connections and the storage's files together.
fn connection_limit(config: &Config) -> usize {
    use crate::descriptors;
    let files = config.storage.log.max_open_files;
    let zero_copy = config.broker.zero_copy_fetch;
    let limit = descriptors::raise_open_file_limit();
    let n = config
        .broker
        .max_connections
        .unwrap_or_else(|| descriptors::connections_within(limit, files, zero_copy));
    let needed = descriptors::needed(n, files, zero_copy);
    if limit.is_some_and(|l| needed > l) {
        tracing::warn!(
            open_file_limit = limit,
            max_connections = n,
            storage_max_open_files = files,
            needed,
            "the open-file limit may not cover max_connections and storage.log.max_open_files \
             together; raise it (ulimit -n, LimitNOFILE) or lower either"
        );
    }
    tracing::info!(
        max_connections = n,
        open_file_limit = limit,
        set = config.broker.max_connections.is_some(),
        "connection limit"
    );
    n
}

/// Aborts the task when start fails after it was spawned.
struct AbortOnDrop(Option<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.abort();
        }
    }
}

async fn retention_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let period = Duration::from_millis(shared.config.broker.log_retention_check_interval_ms);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.changed() => return,
        }
        let s = shared.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let now = Timestamp::now();
            for p in s.cluster.all_partitions() {
                match p.apply_retention(now) {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(partition = %p.tp, records = n, "retention removed records")
                    }
                    Err(e) => tracing::warn!(partition = %p.tp, error = %e, "retention failed"),
                }
                // Producer state at the log end, so a restart replays only what follows.
                if let Err(e) = p.snapshot_producers() {
                    tracing::warn!(partition = %p.tp, error = %e, "producer snapshot failed");
                }
            }
        })
        .await;
        if let Some(d) = &shared.diskless {
            let limits = |t: &crate::diskless::catalog::DisklessTopic| {
                let c = shared.cluster.log_config(&t.configs);
                (c.retention_ms, c.retention_bytes)
            };
            if let Err(e) = crate::diskless::sweeper::retention_pass(d, limits).await {
                tracing::warn!(error = %e, "diskless retention pass failed");
            }
        }
    }
}

/// The log cleaner (`log.cleaner.threads` workers, one blocking thread each, one thread by
/// default): each round a worker compacts the compacted partition with the highest dirty
/// ratio over its `min.cleanable.dirty.ratio` (or whose dirty part is older than
/// `max.compaction.lag.ms`) that no other worker holds, then looks again at once; with
/// nothing to do it pauses `log.cleaner.backoff.ms`. Before a compaction a worker waits as
/// long as `log.cleaner.io.max.bytes.per.second` asks for the bytes all workers moved. The
/// clean offset and bytes of each partition are checkpointed in the metadata directory
/// (`cleaner_checkpoint`) and read back at start. Not started when `log.cleaner.enable` is
/// false.
async fn cleaner_loop(shared: Arc<Shared>, shutdown: watch::Receiver<bool>) {
    if let Some(dir) = shared.config.storage.metadata_dir() {
        let s = shared.clone();
        let _ = tokio::task::spawn_blocking(move || load_checkpoint(&s, &s.cleaner, &dir)).await;
    }
    let workers: Vec<_> = (0..shared.config.broker.log_cleaner_threads)
        .map(|_| tokio::spawn(cleaner_worker(shared.clone(), shutdown.clone())))
        .collect();
    for w in workers {
        let _ = w.await;
    }
}

/// One cleaner worker.
async fn cleaner_worker(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let backoff = Duration::from_millis(shared.config.broker.log_cleaner_backoff_ms);
    let mut pause = backoff;
    loop {
        let wait = pause.max(shared.cleaner.throttle_wait());
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        let s = shared.clone();
        let worked = tokio::task::spawn_blocking(move || clean_dirtiest(&s, &s.cleaner))
            .await
            .unwrap_or(false);
        pause = if worked {
            Duration::from_millis(1)
        } else {
            backoff
        };
    }
}

/// Seeds the cleaner state from the checkpoint in `dir`: the partitions that still exist,
/// their clean offset clamped to their log.
fn load_checkpoint(shared: &Shared, cleaned: &CleanerState, dir: &std::path::Path) {
    let now = Timestamp::now().0;
    let mut state = cleaned.lock();
    for (tp, (offset, bytes)) in crate::cleaner_checkpoint::load(dir) {
        let Some(p) = shared
            .cluster
            .topic(tp.topic.as_str())
            .and_then(|t| t.partition(tp.partition.0).cloned())
        else {
            continue;
        };
        let offset = offset.min(p.log_end_offset()).max(p.log_start_offset());
        state.insert(tp, (offset, bytes.min(p.size_bytes()), now, u64::MAX));
    }
    if !state.is_empty() {
        tracing::info!(partitions = state.len(), "cleaner checkpoint loaded");
    }
}

/// Writes the cleaner checkpoint (partitions of topics that still exist).
fn save_checkpoint(shared: &Shared, cleaned: &CleanerState) {
    let Some(dir) = shared.config.storage.metadata_dir() else {
        return;
    };
    let _one_writer = cleaned.checkpoint.lock();
    let entries: Vec<_> = cleaned
        .lock()
        .iter()
        .filter(|(tp, _)| shared.cluster.topic(tp.topic.as_str()).is_some())
        .map(|(tp, c)| (tp.clone(), c.0, c.1))
        .collect();
    if let Err(e) = crate::cleaner_checkpoint::save(&dir, entries) {
        tracing::warn!(error = %e, "cannot write the cleaner checkpoint");
    }
}

/// One round of the cleaner; whether it compacted something.
fn clean_dirtiest(shared: &Shared, cleaned: &CleanerState) -> bool {
    let now = Timestamp::now();
    let mut best: Option<(
        f64,
        Arc<crate::state::PartitionState>,
        crate::topic_config::CompactionSettings,
    )> = None;
    for topic in shared.cluster.topics() {
        let Some(settings) = crate::topic_config::CompactionSettings::of(
            &topic.configs,
            shared.cluster.default_cleanup_policy(),
        ) else {
            continue;
        };
        for p in &topic.partitions {
            let size = p.size_bytes();
            if size == 0 {
                continue;
            }
            let (_, clean_bytes, cleaned_at, idle_size) = cleaned
                .lock()
                .get(&p.tp)
                .copied()
                .unwrap_or((rafka_core::Offset(0), 0, now.0, u64::MAX));
            if idle_size == size || cleaned.is_busy(&p.tp) {
                continue;
            }
            let dirty = size.saturating_sub(clean_bytes);
            let ratio = dirty as f64 / size as f64;
            let overdue =
                dirty > 0 && now.0.saturating_sub(cleaned_at) > settings.max_compaction_lag_ms;
            if (ratio >= settings.min_cleanable_dirty_ratio || overdue)
                && best.as_ref().is_none_or(|(r, _, _)| ratio > *r)
            {
                best = Some((ratio, p.clone(), settings));
            }
        }
    }
    let Some((ratio, p, settings)) = best else {
        return false;
    };
    let Some(_claim) = cleaned.claim(&p.tp) else {
        return true; // another worker took it meanwhile: look again
    };
    cleaned.chose(ratio);
    let (first_dirty, clean_bytes_before) = cleaned
        .lock()
        .get(&p.tp)
        .map_or((rafka_core::Offset(0), 0), |c| (c.0, c.1));
    let plan = rafka_core::CompactionPlan {
        first_dirty,
        end: p.offsets().last_stable_offset,
        now,
        min_compaction_lag_ms: settings.min_compaction_lag_ms,
        delete_retention_ms: settings.delete_retention_ms,
        dedupe_buffer_bytes: shared.config.broker.log_cleaner_dedupe_buffer_size,
        codec: rafka_core::CompactionCodec::new(Arc::new(
            crate::cleaner_codec::CleanerCodec::for_partition(p.tp.clone()),
        )),
    };
    let started = Instant::now();
    match p.compact(&plan) {
        Ok(stats) => {
            let rate = shared.config.broker.log_cleaner_io_max_bytes_per_second;
            cleaned.ran(&p.tp, &stats, started, rate);
            let progressed = stats.cleaned_to > first_dirty;
            // A round that cleaned nothing (the rest is in the active segment or within the
            // lag) skips the partition until its size changes, so the cleaner does not spin.
            let idle_size = if progressed { u64::MAX } else { p.size_bytes() };
            let clean_bytes = if progressed {
                stats.clean_bytes
            } else {
                clean_bytes_before
            };
            cleaned.lock().insert(
                p.tp.clone(),
                (stats.cleaned_to, clean_bytes, now.0, idle_size),
            );
            if progressed {
                save_checkpoint(shared, cleaned);
                tracing::info!(partition = %p.tp, dirty_ratio = ratio, cleaned_to = %stats.cleaned_to, records_removed = stats.records_removed, bytes_read = stats.bytes_read, bytes_written = stats.bytes_written, "compacted");
            }
            progressed
        }
        Err(e) => {
            tracing::warn!(partition = %p.tp, error = %e, "compaction failed");
            cleaned.failed(started);
            cleaned.lock().insert(
                p.tp.clone(),
                (first_dirty, clean_bytes_before, now.0, p.size_bytes()),
            );
            false
        }
    }
}

/// Drives group timers: session expiry, rebalance deadlines, offsets retention.
async fn group_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let period = Duration::from_millis(100);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.changed() => return,
        }
        shared.groups.tick(crate::api::groups::topic_view(&shared));
    }
}

/// Drives the transaction coordinator's timer: transactions past their timeout are
/// aborted, idle transactional ids expire.
async fn txn_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let period = Duration::from_millis(
        shared
            .config
            .broker
            .transaction_abort_timed_out_transaction_cleanup_interval_ms,
    );
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.changed() => return,
        }
        crate::api::txn::tick(&shared).await;
    }
}

async fn flush_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let period = Duration::from_millis(shared.config.durability.interval_ms);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.changed() => return,
        }
        let s = shared.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for p in s.cluster.all_partitions() {
                if let Err(e) = p.flush() {
                    tracing::error!(partition = %p.tp, error = %e, "interval flush failed");
                }
            }
        })
        .await;
    }
}
