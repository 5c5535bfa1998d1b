//! [`Shared`]: the state every connection, API handler and background task shares — the
//! configuration, topics and partitions, the group coordinator, the hook chain and the
//! metrics. It is built from a configuration and an opened storage engine, with no socket:
//! `broker.rs` binds the listeners around it, and a test can drive
//! [`dispatch`](crate::api::dispatch) with bytes in and bytes out.

use std::sync::Arc;
use std::time::Duration;

use rafka_core::StorageEngine;
use rafka_hooks::HookChain;

use crate::config::{BrokerConfig, Config};
use crate::group::{classic, config as group_config, consumer};
use crate::group::{CoordinatorSettings, GroupCoordinator};
use crate::metrics::{CommittedFigures, Figures, Metrics, PartitionFigures, TopicFigures};
use crate::state::{Cluster, IsolationLevel, PartitionState, TopicError, TRANSACTION_STATE_TOPIC};
use crate::txn::coordinator::TransactionCoordinator;
use crate::txn::records::TxnLogRecord;
use crate::txn::{TransactionVersion, TxnConfig, TxnError};

/// State shared by every connection and task.
pub struct Shared {
    /// The configuration in force.
    pub(crate) config: Config,
    /// Topics and partitions.
    pub cluster: Cluster,
    /// This broker's node id.
    pub(crate) node_id: i32,
    /// Consumer groups and committed offsets.
    pub(crate) groups: GroupCoordinator,
    /// The transaction coordinator (sans IO; `api::txn` drives it). Never held across an
    /// `.await`.
    pub(crate) txn: parking_lot::Mutex<TransactionCoordinator>,
    /// The partitions of `__transaction_state`, once it exists (created on the first
    /// transactional request, as Kafka does).
    txn_log: parking_lot::RwLock<Option<Arc<[Arc<PartitionState>]>>>,
    /// KIP-227 fetch sessions (`api::fetch`); each session locked on its own, for one
    /// step of one fetch at a time.
    pub(crate) fetch_sessions: crate::fetch_session::FetchSessions,
    /// Current epochs of idempotent producers (no transactional id), for KIP-360 epoch
    /// bumps in InitProducerId. Bounded; held only for a lookup.
    pub(crate) idempotent_epochs:
        parking_lot::Mutex<crate::api::init_producer_id::IdempotentEpochs>,
    /// Woken whenever the transaction coordinator finished a write (a state record, or a
    /// transaction's markers): requests answered CONCURRENT_TRANSACTIONS wait on it.
    pub(crate) txn_settled: tokio::sync::Notify,
    /// The ACLs and the authorizer's settings.
    pub(crate) acls: crate::acl_store::AclStore,
    /// The client quotas and their sensors.
    pub(crate) quotas: crate::quota_manager::QuotaManager,
    /// `max_connections_per_ip` and its overrides, with the counts per address.
    pub(crate) connections_per_ip: Arc<crate::connection_quotas::ConnectionsPerIp>,
    /// The connection rates per address (`connection_creation_rate` of `ip` quotas).
    pub(crate) connection_rates: crate::connection_quotas::ConnectionRates,
    /// SCRAM credentials (SASL/SCRAM and PLAIN authenticate against them).
    // Read by the SASL authenticator, which lands next (issue 19).
    #[allow(dead_code)]
    pub(crate) credentials: crate::credentials::CredentialStore,
    /// The hooks, in order: `hooks:` from the config, then those added with
    /// [`BrokerBuilder::hook`](crate::BrokerBuilder::hook).
    pub hooks: HookChain,
    /// Request, connection and traffic counters (rendered by the admin endpoint).
    pub(crate) metrics: Metrics,
    /// `queued_max_request_bytes`: what large requests being received may hold together.
    pub(crate) request_memory: crate::request_memory::RequestMemory,
    /// The log cleaner's per-partition state and totals (the cleaner loop writes it, a
    /// scrape reads it).
    pub(crate) cleaner: crate::cleaner_state::CleanerState,
    /// `log.slow_request_ms` (`None` when 0).
    pub(crate) slow_request: Option<Duration>,
    /// Per listener: its name, and the host and port its clients are told to connect to.
    advertised: Vec<(String, String, i32)>,
    /// The diskless cluster this broker belongs to (`cluster.mode: diskless`), if any.
    // Read by the diskless produce, fetch and metadata paths (issue 21), which land next.
    #[allow(dead_code)]
    pub(crate) diskless: Option<Arc<crate::diskless::Diskless>>,
}

/// What recovery found: the topics on the engine and the groups replayed from
/// `__consumer_offsets`.
pub(crate) struct Recovered {
    cluster: Cluster,
    groups: GroupCoordinator,
    txn: TransactionCoordinator,
    txn_log: Option<Arc<[Arc<PartitionState>]>>,
    acls: crate::acl_store::AclStore,
    quotas: crate::quota_manager::QuotaManager,
    /// Partitions the engine held before the group coordinator created any.
    pub(crate) partitions: usize,
    /// The durable credential store (opened by `Broker::start`); without one, the
    /// configured users are kept in memory.
    pub(crate) credentials: Option<crate::credentials::CredentialStore>,
    /// The diskless cluster (connected by `Broker::start`), in diskless mode.
    pub(crate) diskless: Option<Arc<crate::diskless::Diskless>>,
}

impl Shared {
    /// Loads the topics stored on `engine` and replays `__consumer_offsets` (creating it
    /// when missing). Blocking: run it off the async workers.
    pub(crate) fn recover(
        config: &Config,
        engine: Arc<dyn StorageEngine>,
    ) -> Result<Recovered, TopicError> {
        let meta_path = config
            .storage
            .metadata_dir()
            .map(|dir| dir.join("rafka-topics.yaml"));
        let cluster = Cluster::open(
            engine,
            config.storage.log_config(),
            config.broker.log_cleanup_policy.clone(),
            meta_path,
        )?;
        let partitions = cluster.partition_count();
        let groups = GroupCoordinator::open(
            &cluster,
            config.broker.offsets_topic_num_partitions,
            coordinator_settings(&config.broker),
        )?;
        let mut txn = TransactionCoordinator::new(txn_config(&config.broker), 0);
        let txn_log = match cluster.topic(TRANSACTION_STATE_TOPIC) {
            Some(_) => {
                // Created before Rafka compacted it: made compacted now.
                let t = cluster.open_internal_topic(
                    TRANSACTION_STATE_TOPIC,
                    config.broker.transaction_state_log_num_partitions,
                    config.broker.transaction_state_log_segment_bytes,
                )?;
                replay_transactions(&mut txn, &t.partitions)?;
                Some(t.partitions.clone().into())
            }
            None => None,
        };
        let acls = crate::acl_store::AclStore::open(config).map_err(|e| {
            TopicError::Storage(rafka_core::StorageError::Io(std::io::Error::other(
                e.to_string(),
            )))
        })?;
        let quotas = crate::quota_manager::QuotaManager::open(config).map_err(|e| {
            TopicError::Storage(rafka_core::StorageError::Io(std::io::Error::other(
                e.to_string(),
            )))
        })?;
        Ok(Recovered {
            quotas,
            cluster,
            groups,
            txn,
            txn_log,
            acls,
            partitions,
            credentials: None,
            diskless: None,
        })
    }

    /// The partitions of `__transaction_state`, creating the topic on first use.
    pub(crate) fn txn_log(&self) -> Result<Arc<[Arc<PartitionState>]>, TxnError> {
        if let Some(p) = self.txn_log.read().as_ref() {
            return Ok(p.clone());
        }
        let mut slot = self.txn_log.write();
        if let Some(p) = slot.as_ref() {
            return Ok(p.clone());
        }
        let topic = self
            .cluster
            .open_internal_topic(
                TRANSACTION_STATE_TOPIC,
                self.config.broker.transaction_state_log_num_partitions,
                self.config.broker.transaction_state_log_segment_bytes,
            )
            .map_err(|e| {
                tracing::error!(error = %e, "cannot create {TRANSACTION_STATE_TOPIC}");
                TxnError::CoordinatorNotAvailable
            })?;
        let parts: Arc<[Arc<PartitionState>]> = topic.partitions.clone().into();
        *slot = Some(parts.clone());
        Ok(parts)
    }

    /// The shared state over what recovery found. `advertised` is, per listener, its name
    /// and the host and port its clients are told to connect to (the first is the default).
    pub(crate) fn new(
        config: Config,
        recovered: Recovered,
        hooks: HookChain,
        advertised: Vec<(String, String, i32)>,
    ) -> Shared {
        let request_memory =
            crate::request_memory::RequestMemory::new(config.broker.queued_max_request_bytes);
        let slow_request = match config.log.slow_request_ms {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        };
        let credentials = recovered.credentials.unwrap_or_else(|| {
            crate::credentials::CredentialStore::from_config(&config.broker.scram_users)
        });
        let connections_per_ip = Arc::new(crate::connection_quotas::ConnectionsPerIp::new(
            config.broker.max_connections_per_ip,
            // Checked by `Config::validate`.
            config
                .broker
                .connections_per_ip_overrides()
                .unwrap_or_default(),
        ));
        let connection_rates =
            crate::connection_quotas::ConnectionRates::new(crate::quota::RateConfig {
                samples: config.broker.quota_window_num,
                window: std::time::Duration::from_secs(config.broker.quota_window_size_seconds),
            });
        let fetch_sessions = crate::fetch_session::FetchSessions::new(
            config.broker.max_incremental_fetch_session_cache_slots,
        );
        Shared {
            node_id: config.broker.node_id,
            config,
            cluster: recovered.cluster,
            groups: recovered.groups,
            txn: parking_lot::Mutex::new(recovered.txn),
            txn_log: parking_lot::RwLock::new(recovered.txn_log),
            idempotent_epochs: parking_lot::Mutex::new(Default::default()),
            fetch_sessions,
            txn_settled: tokio::sync::Notify::new(),
            acls: recovered.acls,
            quotas: recovered.quotas,
            connections_per_ip,
            connection_rates,
            credentials,
            hooks,
            metrics: Metrics::default(),
            request_memory,
            cleaner: Default::default(),
            slow_request,
            advertised,
            diskless: recovered.diskless,
        }
    }

    /// Host and port clients are told to connect to (of the first listener).
    pub fn advertised(&self) -> (String, i32) {
        self.advertised
            .first()
            .map(|(_, h, p)| (h.clone(), *p))
            .unwrap_or_else(|| ("127.0.0.1".into(), 9092))
    }

    /// Every listener's name and advertised host and port, in config order.
    pub(crate) fn advertised_listeners(&self) -> &[(String, String, i32)] {
        &self.advertised
    }

    /// Host and port of the listener named `listener` (a client is told the address of
    /// the listener it connected through); the first listener's for an unknown name.
    pub fn advertised_for(&self, listener: &str) -> (String, i32) {
        match self.advertised.iter().find(|(n, _, _)| n == listener) {
            Some((_, h, p)) => (h.clone(), *p),
            None => self.advertised(),
        }
    }

    /// What a metrics scrape shows of the state. Reads every partition's offsets and size
    /// and takes the group lock once: run it off the async workers (`spawn_blocking`).
    pub(crate) fn figures(&self) -> Figures {
        let topics = self
            .cluster
            .topics()
            .iter()
            .map(|t| {
                let compacted = crate::topic_config::CompactionSettings::of(
                    &t.configs,
                    self.cluster.default_cleanup_policy(),
                )
                .is_some();
                TopicFigures {
                    name: t.name.to_string(),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| {
                            let size_bytes = p.size_bytes();
                            PartitionFigures {
                                traffic: p.traffic.counts(),
                                log_start_offset: p.log_start_offset().0,
                                log_end_offset: p.log_end_offset().0,
                                last_stable_offset: p.last_stable_offset().0,
                                size_bytes,
                                cleaner: compacted
                                    .then(|| self.cleaner.partition(&p.tp, size_bytes)),
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        // Copy the committed offsets out under the group lock, look up log ends after it.
        let committed = self
            .groups
            .committed_offsets()
            .into_iter()
            .map(|(group, topic, partition, offset)| CommittedFigures {
                high_watermark: self
                    .cluster
                    .topic(&topic)
                    .and_then(|t| t.partition(partition).map(|p| p.high_watermark().0)),
                group,
                topic,
                partition,
                offset,
            })
            .collect();
        let parts = self.cluster.all_partitions();
        let (transactions_ongoing, transactions) = self.txn.lock().stats();
        Figures {
            topics,
            committed,
            engine: self.cluster.engine().name(),
            storage_partitions: parts.len(),
            storage_bytes: parts.iter().map(|p| p.size_bytes()).sum(),
            transactions_ongoing,
            transactions,
            cleaner: self.cleaner.totals(),
            diskless: self.diskless.as_ref().map(|d| {
                use std::sync::atomic::Ordering::Relaxed;
                let s = &d.committer.stats;
                crate::metrics::DisklessFigures {
                    objects: s.objects.load(Relaxed),
                    bytes: s.bytes.load(Relaxed),
                    transactions: s.transactions.load(Relaxed),
                    commit_seconds: s.commit_micros.load(Relaxed) as f64 / 1e6,
                    cache_bytes: d.ranges.bytes(),
                }
            }),
            quota_entities: self.quotas.figures(),
            request_memory: self.request_memory.figures(),
        }
    }
}

/// The transaction coordinator's settings, from the `broker:` section.
fn txn_config(b: &BrokerConfig) -> TxnConfig {
    TxnConfig {
        transaction_max_timeout_ms: b.transaction_max_timeout_ms,
        transactional_id_expiration_ms: b.transactional_id_expiration_ms,
        transaction_state_log_num_partitions: b.transaction_state_log_num_partitions,
        transaction_version: TransactionVersion::TV_2,
    }
}

/// Replays every record of `__transaction_state` into `txn`, partition by partition, in
/// log order. A record that does not decode is skipped with a warning.
pub(crate) fn replay_transactions(
    txn: &mut TransactionCoordinator,
    partitions: &[Arc<PartitionState>],
) -> Result<(), TopicError> {
    let mut replayed = 0u64;
    for p in partitions {
        let mut at = p.log_start_offset();
        let end = p.log_end_offset();
        while at < end {
            let read = p.read(at, 4 * 1024 * 1024, IsolationLevel::ReadUncommitted)?;
            let batches = rafka_core::RecordBatch::split_all(read.records).unwrap_or_default();
            let Some(last) = batches.last() else { break };
            let next = last.next_offset();
            for b in batches
                .iter()
                .filter(|b| b.next_offset() > at && !b.is_control())
            {
                for r in b.decode_uncompressed().unwrap_or_default() {
                    let Some(key) = &r.key else { continue };
                    match TxnLogRecord::decode(key, r.value.as_deref()) {
                        Ok(rec) => {
                            replayed += 1;
                            txn.replay(rec);
                        }
                        Err(e) => {
                            tracing::warn!(partition = %p.tp, error = %e, "skipping a {TRANSACTION_STATE_TOPIC} record that does not decode")
                        }
                    }
                }
            }
            if next <= at {
                break;
            }
            at = next;
        }
    }
    tracing::info!(records = replayed, "transaction coordinator loaded");
    Ok(())
}

/// The group coordinator's settings, from the `broker:` section.
fn coordinator_settings(b: &BrokerConfig) -> CoordinatorSettings {
    CoordinatorSettings {
        groups: classic::GroupSettings {
            min_session_timeout_ms: b.group_min_session_timeout_ms,
            max_session_timeout_ms: b.group_max_session_timeout_ms,
            initial_rebalance_delay_ms: b.group_initial_rebalance_delay_ms,
        },
        offsets_retention_ms: b.offsets_retention_minutes.saturating_mul(60_000),
        offsets_topic_segment_bytes: b.offsets_topic_segment_bytes,
        offset_metadata_max_bytes: b.offset_metadata_max_bytes,
        consumer: consumer::ConsumerSettings {
            session_timeout: Duration::from_millis(b.group_consumer_session_timeout_ms),
            heartbeat_interval_ms: b.group_consumer_heartbeat_interval_ms,
            default_assignor: b.group_consumer_assignors[0].clone(),
        },
        group_configs: group_config::GroupConfigDefaults {
            consumer_session_timeout_ms: b.group_consumer_session_timeout_ms as i64,
            consumer_heartbeat_interval_ms: b.group_consumer_heartbeat_interval_ms,
            consumer_session_timeout_bounds: (
                b.group_consumer_min_session_timeout_ms,
                b.group_consumer_max_session_timeout_ms,
            ),
            consumer_heartbeat_interval_bounds: (
                b.group_consumer_min_heartbeat_interval_ms,
                b.group_consumer_max_heartbeat_interval_ms,
            ),
        },
    }
}

#[cfg(test)]
impl Shared {
    /// A broker's state for unit tests: the `memory` engine with no directory (nothing
    /// touches the disk), one `__consumer_offsets` partition, `hooks`, advertising
    /// `127.0.0.1:9092`. No socket is opened.
    pub(crate) fn for_tests(hooks: Vec<Arc<dyn rafka_hooks::Hook>>) -> Shared {
        Shared::for_tests_with(hooks, |_| {})
    }

    /// [`Shared::for_tests`] with `configure` applied to the config first.
    pub(crate) fn for_tests_with(
        hooks: Vec<Arc<dyn rafka_hooks::Hook>>,
        configure: impl FnOnce(&mut Config),
    ) -> Shared {
        let mut config = Config::default();
        config.storage.storage_type = "memory".into();
        config.storage.path = std::path::PathBuf::new();
        config.broker.offsets_topic_num_partitions = 1;
        configure(&mut config);
        config.validate().expect("a valid config");
        let engine = rafka_storage::open_engine(&config.storage).expect("the memory engine");
        let recovered = Shared::recover(&config, engine).expect("recovery");
        let hooks = HookChain::new(hooks).expect("a hook chain");
        Shared::new(
            config,
            recovered,
            hooks,
            vec![("PLAINTEXT".into(), "127.0.0.1".into(), 9092)],
        )
    }
}
