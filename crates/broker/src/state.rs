//! The broker's state: topics, their partitions and configs, producer ids, and the signal
//! long-polling fetches wait on. Topic metadata is persisted in `rafka-topics.yaml` in the
//! data directory (written atomically), so topic ids and configs survive restarts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

use rafka_core::{
    AppendInfo, LogConfig, Offset, PartitionLog, RecordBatch, StorageEngine, StorageError,
    TopicName, TopicPartition,
};

use crate::normalize::AppendPolicy;
use crate::producer_state::{ProducerStates, SequenceCheck, SequenceSpan};
use crate::topic_config;

/// Why an append was refused above the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The storage engine refused it.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Idempotent producer sequence gap.
    #[error("out of order sequence: expected {expected}")]
    OutOfOrder {
        /// Expected sequence.
        expected: i32,
    },
    /// Idempotent producer with an old epoch.
    #[error("producer fenced by a newer epoch")]
    Fenced,
}

/// What an accepted append did.
#[derive(Debug, Clone, Copy)]
pub enum Appended {
    /// Written now.
    New(AppendInfo),
    /// A resend of a batch already written at this base offset.
    Duplicate(Offset),
}

/// One partition: its log and the idempotence state that guards appends.
pub struct PartitionState {
    /// Which partition.
    pub tp: TopicPartition,
    /// The storage.
    pub log: Arc<dyn PartitionLog>,
    /// Bytes and records produced and fetched (the topic's traffic metrics).
    pub traffic: crate::metrics::Traffic,
    producers: Mutex<ProducerStates>,
    /// The topic's timestamp type, bounds and codec, replaced when its configs change.
    append_policy: RwLock<AppendPolicy>,
    offline: bool,
}

impl PartitionState {
    fn open(
        log: Arc<dyn PartitionLog>,
        tp: TopicPartition,
        cfg: &LogConfig,
    ) -> Result<PartitionState, StorageError> {
        let mut producers = ProducerStates::default();
        // Rebuild idempotence state from the batch headers in the log.
        let mut at = log.log_start_offset();
        let end = log.log_end_offset();
        while at < end {
            let r = log.read(at, 4 * 1024 * 1024)?;
            let batches = RecordBatch::split_all(r.records).unwrap_or_default();
            let Some(last) = batches.last() else { break };
            let next = last.next_offset();
            for b in &batches {
                producers.record(SequenceSpan::of(b), b.base_offset());
            }
            if next <= at {
                break;
            }
            at = next;
        }
        Ok(PartitionState {
            tp,
            log,
            traffic: Default::default(),
            producers: Mutex::new(producers),
            append_policy: RwLock::new(AppendPolicy::of(cfg)),
            offline: false,
        })
    }

    /// Opens the partition, or, when its storage cannot be opened, logs why (the engine's
    /// error names the file) and returns it offline: every read and write of it answers
    /// KAFKA_STORAGE_ERROR while the rest of the broker serves.
    fn open_or_offline(
        engine: &dyn StorageEngine,
        tp: TopicPartition,
        cfg: &LogConfig,
    ) -> PartitionState {
        let opened = engine
            .open(&tp, cfg)
            .and_then(|log| PartitionState::open(log, tp.clone(), cfg));
        match opened {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(partition = %tp, error = %e, "partition is offline: its storage could not be opened");
                PartitionState {
                    log: Arc::new(OfflineLog(tp.to_string())),
                    tp,
                    producers: Mutex::new(ProducerStates::default()),
                    append_policy: RwLock::new(AppendPolicy::of(cfg)),
                    offline: true,
                    traffic: Default::default(),
                }
            }
        }
    }

    /// Whether the partition's storage failed to open at startup.
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// Appends one validated batch, applying idempotent-producer checks atomically with it.
    pub fn append(&self, mut batch: RecordBatch) -> Result<Appended, AppendError> {
        batch.set_partition_leader_epoch(0);
        let mut producers = self.producers.lock();
        match producers.check(&batch) {
            SequenceCheck::Append => {}
            SequenceCheck::Duplicate(o) => return Ok(Appended::Duplicate(o)),
            SequenceCheck::OutOfOrder { expected } => {
                return Err(AppendError::OutOfOrder { expected })
            }
            SequenceCheck::Fenced => return Err(AppendError::Fenced),
        }
        // The log takes the batch itself: a clone here would make its base-offset write copy
        // the whole batch.
        let span = SequenceSpan::of(&batch);
        let info = self.log.append(batch)?;
        producers.record(span, info.base_offset);
        Ok(Appended::New(info))
    }

    /// Whether the topic stamps LogAppendTime.
    pub fn log_append_time(&self) -> bool {
        self.append_policy.read().log_append_time
    }

    /// What an append to this partition must check or change (timestamps, codec).
    pub fn append_policy(&self) -> AppendPolicy {
        *self.append_policy.read()
    }

    /// Truncation or deletion invalidates remembered producer batches.
    pub fn reset_producers(&self) {
        self.producers.lock().clear();
    }
}

/// A topic and its partitions.
pub struct Topic {
    /// Name.
    pub name: TopicName,
    /// Topic id (random, persisted).
    pub id: Uuid,
    /// Partitions by index.
    pub partitions: Vec<Arc<PartitionState>>,
    /// Config overrides set on the topic.
    pub configs: BTreeMap<String, String>,
}

impl Topic {
    /// The partition with this wire index, if the topic has it.
    pub fn partition(&self, index: i32) -> Option<&Arc<PartitionState>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }
}

/// Why a topic operation failed; mapped to Kafka error codes by the API handlers.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// Name exists.
    #[error("topic '{0}' already exists")]
    AlreadyExists(String),
    /// No such topic.
    #[error("unknown topic '{0}'")]
    Unknown(String),
    /// Partition count invalid.
    #[error("{0}")]
    InvalidPartitions(String),
    /// Config invalid.
    #[error("{0}")]
    InvalidConfig(String),
    /// Storage failure.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct PersistedTopic {
    name: String,
    id: Uuid,
    partitions: i32,
    #[serde(default)]
    configs: BTreeMap<String, String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct PersistedMeta {
    cluster_id: String,
    next_producer_id: i64,
    topics: Vec<PersistedTopic>,
}

/// Producer ids are handed out from blocks persisted ahead of use, so ids never repeat
/// across restarts even after a crash.
const PRODUCER_ID_BLOCK: i64 = 1000;

struct ProducerIds {
    next: i64,
    persisted_limit: i64,
}

/// Everything the API handlers share.
pub struct Cluster {
    engine: Arc<dyn StorageEngine>,
    defaults: LogConfig,
    topics: RwLock<BTreeMap<TopicName, Arc<Topic>>>,
    /// Serialises topic creation/deletion/alteration and the metadata file.
    admin: Mutex<()>,
    producer_ids: Mutex<ProducerIds>,
    meta_path: Option<PathBuf>,
    cluster_id: String,
    data_version: watch::Sender<u64>,
}

impl Cluster {
    /// Loads persisted topics and opens every partition the engine has.
    pub fn open(
        engine: Arc<dyn StorageEngine>,
        defaults: LogConfig,
        meta_path: Option<PathBuf>,
    ) -> Result<Cluster, TopicError> {
        let mut meta = match &meta_path {
            Some(p) if p.exists() => {
                let text = std::fs::read_to_string(p).map_err(StorageError::Io)?;
                serde_yaml::from_str::<PersistedMeta>(&text).map_err(|e| {
                    StorageError::Io(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: {e}", p.display()),
                    ))
                })?
            }
            _ => PersistedMeta::default(),
        };
        if meta.cluster_id.is_empty() {
            meta.cluster_id = Uuid::new_v4().simple().to_string()[..22].to_string();
        }
        // Partitions the engine has but the metadata file does not name (e.g. the file was
        // lost) become topics with default configs and a fresh id.
        let mut counts: BTreeMap<String, i32> = BTreeMap::new();
        for tp in engine.partitions()? {
            let c = counts.entry(tp.topic.to_string()).or_default();
            *c = (*c).max(tp.partition.0 + 1);
        }
        for (name, n) in counts {
            match meta.topics.iter_mut().find(|t| t.name == name) {
                Some(t) => t.partitions = t.partitions.max(n),
                None => meta.topics.push(PersistedTopic {
                    name,
                    id: Uuid::new_v4(),
                    partitions: n,
                    configs: BTreeMap::new(),
                }),
            }
        }
        let mut topics = BTreeMap::new();
        for t in &meta.topics {
            let Ok(name) = TopicName::new(&t.name) else {
                tracing::warn!(topic = %t.name, "skipping persisted topic with an invalid name");
                continue;
            };
            let cfg = topic_config::log_config(&defaults, &t.configs);
            let mut partitions = Vec::new();
            for p in 0..t.partitions {
                let tp = TopicPartition::new(name.clone(), p);
                partitions.push(Arc::new(PartitionState::open_or_offline(
                    engine.as_ref(),
                    tp,
                    &cfg,
                )));
            }
            topics.insert(
                name.clone(),
                Arc::new(Topic {
                    name,
                    id: t.id,
                    partitions,
                    configs: t.configs.clone(),
                }),
            );
        }
        let next_pid = meta.next_producer_id.max(0) + PRODUCER_ID_BLOCK;
        let cluster = Cluster {
            engine,
            defaults,
            topics: RwLock::new(topics),
            admin: Mutex::new(()),
            producer_ids: Mutex::new(ProducerIds {
                next: next_pid,
                persisted_limit: next_pid,
            }),
            meta_path,
            cluster_id: meta.cluster_id,
            data_version: watch::channel(0).0,
        };
        {
            let _g = cluster.admin.lock();
            cluster.persist()?;
        }
        Ok(cluster)
    }

    /// The storage engine.
    pub fn engine(&self) -> &Arc<dyn StorageEngine> {
        &self.engine
    }

    /// Broker-wide log defaults.
    pub fn defaults(&self) -> &LogConfig {
        &self.defaults
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        let name = TopicName::new(name).ok()?;
        self.topics.read().get(&name).cloned()
    }

    /// A topic by id.
    pub fn topic_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.topics.read().values().find(|t| t.id == id).cloned()
    }

    /// All topics, by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics.read().values().cloned().collect()
    }

    /// Every partition of every topic.
    pub fn all_partitions(&self) -> Vec<Arc<PartitionState>> {
        self.topics
            .read()
            .values()
            .flat_map(|t| t.partitions.iter().cloned())
            .collect()
    }

    /// Number of partitions open.
    pub fn partition_count(&self) -> usize {
        self.topics
            .read()
            .values()
            .map(|t| t.partitions.len())
            .sum()
    }

    /// Subscribes to "data was appended" notifications (long-poll fetch).
    pub fn data_signal(&self) -> watch::Receiver<u64> {
        self.data_version.subscribe()
    }

    /// Wakes long-polling fetches.
    pub fn notify_data(&self) {
        self.data_version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Creates a topic. With `validate_only`, checks everything and creates nothing.
    pub fn create_topic(
        &self,
        name: &TopicName,
        partitions: i32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, TopicError> {
        if !(1..=rafka_core::limits::PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
            return Err(TopicError::InvalidPartitions(format!(
                "Number of partitions must be in [1, {}], got {partitions}",
                rafka_core::limits::PARTITIONS_PER_TOPIC_MAX
            )));
        }
        for (k, v) in &configs {
            topic_config::validate(k, v).map_err(|e| TopicError::InvalidConfig(e.0))?;
        }
        let _g = self.admin.lock();
        if self.topics.read().contains_key(name) {
            return Err(TopicError::AlreadyExists(name.to_string()));
        }
        let cfg = topic_config::log_config(&self.defaults, &configs);
        if validate_only {
            return Ok(Arc::new(Topic {
                name: name.clone(),
                id: Uuid::nil(),
                partitions: Vec::new(),
                configs,
            }));
        }
        let parts = off_the_runtime(|| {
            (0..partitions)
                .map(|p| {
                    let tp = TopicPartition::new(name.clone(), p);
                    let log = self.engine.open(&tp, &cfg)?;
                    Ok(Arc::new(PartitionState::open(log, tp, &cfg)?))
                })
                .collect::<Result<Vec<_>, StorageError>>()
        })?;
        let topic = Arc::new(Topic {
            name: name.clone(),
            id: Uuid::new_v4(),
            partitions: parts,
            configs,
        });
        self.topics.write().insert(name.clone(), topic.clone());
        self.persist()?;
        tracing::info!(topic = %name, partitions, "created topic");
        Ok(topic)
    }

    /// Deletes a topic and its data.
    pub fn delete_topic(&self, name: &TopicName) -> Result<Arc<Topic>, TopicError> {
        let _g = self.admin.lock();
        let topic = self
            .topics
            .write()
            .remove(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        self.persist()?;
        for p in &topic.partitions {
            self.engine.remove(&p.tp)?;
        }
        tracing::info!(topic = %name, "deleted topic");
        Ok(topic)
    }

    /// Grows a topic to `count` partitions.
    pub fn create_partitions(
        &self,
        name: &TopicName,
        count: i32,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let _g = self.admin.lock();
        let topic = self
            .topics
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let current = topic.partitions.len() as i32;
        if count <= current {
            return Err(TopicError::InvalidPartitions(format!(
                "Topic currently has {current} partitions, which is higher than or equal to the requested {count}."
            )));
        }
        if count > rafka_core::limits::PARTITIONS_PER_TOPIC_MAX {
            return Err(TopicError::InvalidPartitions(format!(
                "Number of partitions must be at most {}",
                rafka_core::limits::PARTITIONS_PER_TOPIC_MAX
            )));
        }
        if validate_only {
            return Ok(());
        }
        let cfg = topic_config::log_config(&self.defaults, &topic.configs);
        let mut parts = topic.partitions.clone();
        off_the_runtime(|| {
            for p in current..count {
                let tp = TopicPartition::new(name.clone(), p);
                let log = self.engine.open(&tp, &cfg)?;
                parts.push(Arc::new(PartitionState::open(log, tp, &cfg)?));
            }
            Ok::<_, StorageError>(())
        })?;
        let new = Arc::new(Topic {
            name: topic.name.clone(),
            id: topic.id,
            partitions: parts,
            configs: topic.configs.clone(),
        });
        self.topics.write().insert(name.clone(), new);
        self.persist()?;
        Ok(())
    }

    /// Replaces a topic's config overrides (already validated by the caller).
    pub fn set_topic_configs(
        &self,
        name: &TopicName,
        configs: BTreeMap<String, String>,
    ) -> Result<(), TopicError> {
        for (k, v) in &configs {
            topic_config::validate(k, v).map_err(|e| TopicError::InvalidConfig(e.0))?;
        }
        let _g = self.admin.lock();
        let topic = self
            .topics
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let cfg = topic_config::log_config(&self.defaults, &configs);
        for p in &topic.partitions {
            p.log.set_config(cfg.clone());
            *p.append_policy.write() = AppendPolicy::of(&cfg);
        }
        let new = Arc::new(Topic {
            name: topic.name.clone(),
            id: topic.id,
            partitions: topic.partitions.clone(),
            configs,
        });
        self.topics.write().insert(name.clone(), new);
        self.persist()?;
        Ok(())
    }

    /// A new producer id, never handed out before on this data directory.
    pub fn next_producer_id(&self) -> Result<i64, StorageError> {
        let mut ids = self.producer_ids.lock();
        let id = ids.next;
        ids.next += 1;
        if ids.next >= ids.persisted_limit {
            ids.persisted_limit = ids.next + PRODUCER_ID_BLOCK;
            drop(ids);
            let _g = self.admin.lock();
            self.persist()?;
        }
        Ok(id)
    }

    /// Writes the metadata file atomically. Caller holds `admin`.
    fn persist(&self) -> Result<(), StorageError> {
        let Some(path) = &self.meta_path else {
            return Ok(());
        };
        let meta = PersistedMeta {
            cluster_id: self.cluster_id.clone(),
            next_producer_id: self.producer_ids.lock().persisted_limit,
            topics: self
                .topics
                .read()
                .values()
                .map(|t| PersistedTopic {
                    name: t.name.to_string(),
                    id: t.id,
                    partitions: t.partitions.len() as i32,
                    configs: t.configs.clone(),
                })
                .collect(),
        };
        let text = serde_yaml::to_string(&meta)
            .map_err(|e| StorageError::Io(std::io::Error::other(e.to_string())))?;
        write_atomically(path, text.as_bytes())?;
        Ok(())
    }
}

/// Temp file, fsync, rename, fsync of the directory.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// The log of a partition whose storage failed to open: it holds nothing and refuses every
/// read and write with [`StorageError::Offline`].
struct OfflineLog(String);

impl OfflineLog {
    fn refuse(&self) -> StorageError {
        StorageError::Offline(self.0.clone())
    }
}

impl PartitionLog for OfflineLog {
    fn append(&self, _: RecordBatch) -> Result<AppendInfo, StorageError> {
        Err(self.refuse())
    }

    fn read(&self, _: Offset, _: usize) -> Result<rafka_core::ReadResult, StorageError> {
        Err(self.refuse())
    }

    fn log_start_offset(&self) -> Offset {
        Offset(0)
    }

    fn log_end_offset(&self) -> Offset {
        Offset(0)
    }

    fn offset_for_timestamp(
        &self,
        _: rafka_core::Timestamp,
    ) -> Result<Option<(Offset, rafka_core::Timestamp)>, StorageError> {
        Err(self.refuse())
    }

    fn max_timestamp(&self) -> Result<Option<(Offset, rafka_core::Timestamp)>, StorageError> {
        Err(self.refuse())
    }

    fn delete_before(&self, _: Offset) -> Result<(), StorageError> {
        Err(self.refuse())
    }

    fn truncate_after(&self, _: Offset) -> Result<(), StorageError> {
        Err(self.refuse())
    }

    fn flush(&self) -> Result<(), StorageError> {
        Ok(())
    }

    fn apply_retention(&self, _: rafka_core::Timestamp) -> Result<u64, StorageError> {
        Ok(0)
    }

    fn size_bytes(&self) -> u64 {
        0
    }

    fn set_config(&self, _: LogConfig) {}
}

/// Runs storage work that may take seconds (creating a thousand partitions: files and
/// directory fsyncs) so that it never holds up other connections' tasks: on a
/// multi-threaded runtime the worker hands its queued tasks to the others first
/// (`block_in_place`); anywhere else it simply runs.
fn off_the_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
