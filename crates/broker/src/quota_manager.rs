//! The broker's client quotas: the configs of [`crate::quota`] in force, their file
//! (`<data>/rafka-quotas.yaml`, rewritten atomically on every change, before the change is
//! answered), and the sensors that measure each quota's users: a bounded map from the
//! quota kind and [`SensorKey`] to its [`Rate`].
//!
//! Readers take the configs through an `Arc` (one short read lock); a change builds the
//! new set, writes the file and only then swaps it in, under one writer lock. Sensors live
//! under one mutex held only to record a value; a sensor idle for an hour is dropped (as
//! Kafka expires its quota sensors), and when the map is full the sensors idle for longer
//! than the sample span (whose rate is zero, as a new one's) make room. No lock is held
//! across an `.await`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::quota::{
    EntityName, EntityStats, QuotaConfigs, QuotaEntity, QuotaKind, Rate, RateConfig, SensorKey,
    TokenBucket, QUOTA_ENTITIES_MAX,
};

/// Kafka's entity type names.
pub(crate) const ENTITY_USER: &str = "user";
pub(crate) const ENTITY_CLIENT_ID: &str = "client-id";
pub(crate) const ENTITY_IP: &str = "ip";

/// Most sensors kept at once (each a few hundred bytes).
pub(crate) const QUOTA_SENSORS_MAX: usize = 100_000;
/// Kafka's `InactiveSensorExpirationTimeSeconds`: a sensor unused this long is dropped.
const SENSOR_IDLE_EXPIRY: Duration = Duration::from_secs(3600);
/// The longest `controller_mutation_rate` throttle (Kafka has none; a zero quota or a huge
/// mutation at a tiny quota would otherwise mute a connection for ever).
const MUTATION_THROTTLE_MAX: Duration = Duration::from_secs(3600);
/// How often the sensors are swept for idle ones.
const SENSOR_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// One entity as the file stores it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredEntity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    user_default: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    client_id_default: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    ip_default: bool,
    values: BTreeMap<String, f64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredQuotas {
    quotas: Vec<StoredEntity>,
}

fn stored_name(name: &Option<EntityName>) -> (Option<String>, bool) {
    match name {
        None => (None, false),
        Some(EntityName::Default) => (None, true),
        Some(EntityName::Named(n)) => (Some(n.clone()), false),
    }
}

fn entity_name(name: Option<String>, default: bool) -> Result<Option<EntityName>, String> {
    match (name, default) {
        (Some(_), true) => Err("an entity is either named or the default, not both".into()),
        (Some(n), false) if n.is_empty() => Err("an empty entity name".into()),
        (Some(n), false) => Ok(Some(EntityName::Named(n))),
        (None, true) => Ok(Some(EntityName::Default)),
        (None, false) => Ok(None),
    }
}

fn has_client_entity(configs: &QuotaConfigs) -> bool {
    configs.entities().any(|(e, _)| e.ip.is_none())
}

fn has_ip_entity(configs: &QuotaConfigs) -> bool {
    configs.entities().any(|(e, _)| e.ip.is_some())
}

/// Why the quota file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum QuotaStoreError {
    #[error("{path}: {problem}")]
    File { path: String, problem: String },
    #[error("more than {QUOTA_ENTITIES_MAX} quota entities")]
    TooMany,
}

/// One change of AlterClientQuotas: set (`Some`) or remove (`None`) each key of an entity.
#[derive(Debug, Clone)]
pub(crate) struct QuotaAlteration {
    pub entity: QuotaEntity,
    pub ops: Vec<(QuotaKind, Option<f64>)>,
}

/// A sensor: the rate (the token bucket for `controller_mutation_rate`) and when it was
/// last used.
#[derive(Debug)]
struct Sensor {
    rate: Rate,
    bucket: TokenBucket,
    used: Instant,
}

#[derive(Debug)]
struct Sensors {
    map: HashMap<(QuotaKind, SensorKey), Sensor>,
    swept: Instant,
}

/// The quotas in force and their sensors.
#[derive(Debug)]
pub(crate) struct QuotaManager {
    /// Whether any user or client-id quota is set: without one, requests skip the quota
    /// code.
    any: AtomicBool,
    /// Whether any `ip` quota is set: without one, accepted connections skip the rate.
    any_ip: AtomicBool,
    current: RwLock<Arc<QuotaConfigs>>,
    writer: Mutex<()>,
    path: Option<PathBuf>,
    rate: RateConfig,
    /// `controller.quota.window.num` and `.size.seconds`: the mutation buckets' burst.
    controller_rate: RateConfig,
    sensors: Mutex<Sensors>,
}

impl QuotaManager {
    /// The manager of `config`, with the quotas of its file (none when the file is missing
    /// or the broker keeps no files). A damaged file stops the start.
    pub(crate) fn open(config: &Config) -> Result<QuotaManager, QuotaStoreError> {
        let path = config
            .storage
            .metadata_dir()
            .map(|d| d.join("rafka-quotas.yaml"));
        let mut configs = QuotaConfigs::default();
        if let Some(p) = &path {
            let err = |problem: String| QuotaStoreError::File {
                path: p.display().to_string(),
                problem,
            };
            match std::fs::read_to_string(p) {
                Ok(text) => {
                    let stored: StoredQuotas =
                        serde_yaml::from_str(&text).map_err(|e| err(e.to_string()))?;
                    if stored.quotas.len() > QUOTA_ENTITIES_MAX {
                        return Err(QuotaStoreError::TooMany);
                    }
                    for s in stored.quotas {
                        let entity = QuotaEntity {
                            user: entity_name(s.user, s.user_default).map_err(err)?,
                            client_id: entity_name(s.client_id, s.client_id_default)
                                .map_err(err)?,
                            ip: entity_name(s.ip, s.ip_default).map_err(err)?,
                        };
                        let client = entity.user.is_some() || entity.client_id.is_some();
                        match (&entity.ip, client) {
                            (None, false) => {
                                return Err(err("an entity without user, client id or ip".into()))
                            }
                            (Some(_), true) => {
                                return Err(err("an ip entity with a user or client id".into()))
                            }
                            (Some(EntityName::Named(a)), false)
                                if a.parse::<std::net::IpAddr>().is_err() =>
                            {
                                return Err(err(format!("{a:?} is not an IP address")))
                            }
                            _ => {}
                        }
                        for (k, v) in s.values {
                            let kind = QuotaKind::from_name(&k)
                                .ok_or_else(|| err(format!("unknown quota {k:?}")))?;
                            if !(v >= 0.0 && v.is_finite()) {
                                return Err(err(format!("{k} = {v} is not a quota")));
                            }
                            if (kind == QuotaKind::ConnectionCreationRate) == client {
                                return Err(err(format!("{k} is not a quota of this entity")));
                            }
                            configs.set(&entity, kind, Some(v));
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(err(e.to_string())),
            }
        }
        let b = &config.broker;
        Ok(QuotaManager {
            any: AtomicBool::new(has_client_entity(&configs)),
            any_ip: AtomicBool::new(has_ip_entity(&configs)),
            current: RwLock::new(Arc::new(configs)),
            writer: Mutex::new(()),
            path,
            rate: RateConfig {
                samples: b.quota_window_num,
                window: Duration::from_secs(b.quota_window_size_seconds),
            },
            controller_rate: RateConfig {
                samples: b.controller_quota_window_num.max(1),
                window: Duration::from_secs(b.controller_quota_window_size_seconds.max(1)),
            },
            sensors: Mutex::new(Sensors {
                map: HashMap::new(),
                swept: Instant::now(),
            }),
        })
    }

    /// Whether any user or client-id quota is set.
    pub(crate) fn enabled(&self) -> bool {
        self.any.load(Ordering::Relaxed)
    }

    /// Whether any `ip` quota is set.
    pub(crate) fn ip_enabled(&self) -> bool {
        self.any_ip.load(Ordering::Relaxed)
    }

    /// The quotas in force.
    pub(crate) fn current(&self) -> Arc<QuotaConfigs> {
        self.current.read().clone()
    }

    /// Applies `alterations` (already validated) to a copy of the quotas, stores the copy,
    /// then puts it in force.
    pub(crate) fn alter(&self, alterations: &[QuotaAlteration]) -> Result<(), QuotaStoreError> {
        let _writer = self.writer.lock();
        let mut next = QuotaConfigs::clone(&self.current());
        for a in alterations {
            for (kind, value) in &a.ops {
                next.set(&a.entity, *kind, *value);
            }
        }
        if next.len() > QUOTA_ENTITIES_MAX {
            return Err(QuotaStoreError::TooMany);
        }
        if let Some(p) = &self.path {
            let stored = StoredQuotas {
                quotas: next
                    .entities()
                    .map(|(e, values)| {
                        let (user, user_default) = stored_name(&e.user);
                        let (client_id, client_id_default) = stored_name(&e.client_id);
                        let (ip, ip_default) = stored_name(&e.ip);
                        StoredEntity {
                            user,
                            user_default,
                            client_id,
                            client_id_default,
                            ip,
                            ip_default,
                            values: values.iter().map(|(k, v)| (k.name().into(), *v)).collect(),
                        }
                    })
                    .collect(),
            };
            let err = |problem: String| QuotaStoreError::File {
                path: p.display().to_string(),
                problem,
            };
            let text = serde_yaml::to_string(&stored).map_err(|e| err(e.to_string()))?;
            crate::state::write_atomically(p, text.as_bytes()).map_err(|e| err(e.to_string()))?;
        }
        self.any.store(has_client_entity(&next), Ordering::Relaxed);
        self.any_ip.store(has_ip_entity(&next), Ordering::Relaxed);
        *self.current.write() = Arc::new(next);
        Ok(())
    }

    /// Records `value` of `kind` for a request of `user` with `client_id` at `now`; the
    /// throttle time when this takes the client over its quota. Nothing is recorded for a
    /// client without a quota of `kind`.
    pub(crate) fn record(
        &self,
        kind: QuotaKind,
        user: &str,
        client_id: &str,
        value: f64,
        now: Instant,
    ) -> Duration {
        let configs = self.current();
        if configs.len() == 0 {
            return Duration::ZERO;
        }
        let Some(resolved) = configs.resolve(user, client_id, kind) else {
            return Duration::ZERO;
        };
        resolved.stats.record(kind, value);
        let (key, quota) = (resolved.key, resolved.quota);
        let mut sensors = self.sensors.lock();
        let Some(sensor) = self.sensor(&mut sensors, kind, key, now) else {
            return Duration::ZERO;
        };
        sensor.rate.record(value, now);
        let time = sensor.rate.throttle_time(quota, now);
        match kind {
            // Kafka's ClientRequestQuotaManager: at most one window.
            QuotaKind::RequestPercentage => time.min(self.rate.window),
            _ => time,
        }
    }

    /// Takes back `value` recorded by [`record`](Self::record) (a throttled fetch is
    /// answered empty, so its bytes do not count).
    pub(crate) fn unrecord(
        &self,
        kind: QuotaKind,
        user: &str,
        client_id: &str,
        value: f64,
        now: Instant,
    ) {
        let configs = self.current();
        let Some(resolved) = configs.resolve(user, client_id, kind) else {
            return;
        };
        resolved.stats.record(kind, -value);
        if let Some(s) = self.sensors.lock().map.get_mut(&(kind, resolved.key)) {
            s.rate.unrecord(value, now);
        }
    }

    /// The most that can be recorded at once without being throttled for sure (Kafka's
    /// `getMaxValueInQuotaWindow`, which bounds a fetch's bytes); `None` without a quota.
    pub(crate) fn max_value_in_window(
        &self,
        kind: QuotaKind,
        user: &str,
        client_id: &str,
    ) -> Option<f64> {
        let configs = self.current();
        let quota = configs.resolve(user, client_id, kind)?.quota;
        Some(quota * (self.rate.samples.max(2) - 1) as f64 * self.rate.window.as_secs_f64())
    }

    /// The `controller_mutation_rate` quota of a CreateTopics, CreatePartitions or
    /// DeleteTopics of `user` with `client_id`, for the length of the request; `None`
    /// when none applies. `strict` for the versions that refuse a mutation over the quota
    /// (KIP-599) rather than accept it and throttle the client afterwards.
    pub(crate) fn mutation_quota(
        &self,
        user: &str,
        client_id: &str,
        strict: bool,
    ) -> Option<MutationQuota<'_>> {
        if !self.enabled() {
            return None;
        }
        let configs = self.current();
        let r = configs.resolve(user, client_id, QuotaKind::ControllerMutationRate)?;
        Some(MutationQuota {
            manager: self,
            key: r.key,
            quota: r.quota,
            stats: r.stats.clone(),
            strict,
            throttle: None,
        })
    }

    /// Counts a response throttled for `time` by `kind` against the configured entity whose
    /// quota applied to `user` and `client_id` (nothing when none applies).
    pub(crate) fn throttled(&self, kind: QuotaKind, user: &str, client_id: &str, time: Duration) {
        if let Some(r) = self.current().resolve(user, client_id, kind) {
            r.stats.throttled(kind, time);
        }
    }

    /// The counters of every configured entity and kind with something recorded or
    /// throttled, labelled by the entity as configured (`<default>` for a default part, an
    /// empty value for a part the entity does not have).
    pub(crate) fn figures(&self) -> Vec<crate::metrics::QuotaEntityFigures> {
        let configs = self.current();
        let mut out = Vec::new();
        for (entity, values, stats) in configs.entity_stats() {
            for kind in values.keys() {
                let k = stats.of(*kind);
                if k == crate::quota::KindStats::default() {
                    continue;
                }
                let part = |n: &Option<EntityName>| {
                    n.as_ref()
                        .map_or(String::new(), |n| n.sanitized().to_string())
                };
                out.push(crate::metrics::QuotaEntityFigures {
                    quota: kind.name(),
                    user: part(&entity.user),
                    client_id: part(&entity.client_id),
                    ip: part(&entity.ip),
                    recorded: k.recorded,
                    throttled: k.throttled,
                    throttle_ms: k.throttle_ms,
                });
            }
        }
        out
    }

    /// Sensors held now.
    #[cfg(test)]
    pub(crate) fn sensor_count(&self) -> usize {
        self.sensors.lock().map.len()
    }

    /// The sensor of `key`, created if needed; `None` when the map is full of sensors in use.
    fn sensor<'a>(
        &self,
        sensors: &'a mut Sensors,
        kind: QuotaKind,
        key: SensorKey,
        now: Instant,
    ) -> Option<&'a mut Sensor> {
        if now.saturating_duration_since(sensors.swept) >= SENSOR_SWEEP_INTERVAL {
            sensors.swept = now;
            sensors
                .map
                .retain(|_, s| now.saturating_duration_since(s.used) < SENSOR_IDLE_EXPIRY);
        }
        let k = (kind, key);
        if !sensors.map.contains_key(&k) && sensors.map.len() >= QUOTA_SENSORS_MAX {
            // A sensor idle for the whole sample span measures zero, as a new one does.
            let span = self.rate.window * self.rate.samples;
            sensors
                .map
                .retain(|_, s| now.saturating_duration_since(s.used) < span);
            if sensors.map.len() >= QUOTA_SENSORS_MAX {
                tracing::warn!(
                    max = QUOTA_SENSORS_MAX,
                    "quota sensors full; a new client is not measured"
                );
                return None;
            }
        }
        let rate = self.rate;
        let s = sensors.map.entry(k).or_insert_with(|| Sensor {
            rate: Rate::new(rate),
            bucket: TokenBucket::default(),
            used: now,
        });
        s.used = now;
        Some(s)
    }
}

/// One request's `controller_mutation_rate` quota (Kafka's Strict- and
/// PermissiveControllerMutationQuota): [`check`](Self::check) before a topic's mutation,
/// [`record`](Self::record) its partitions once done, and the response's throttle time
/// from [`throttle_time`](Self::throttle_time).
pub(crate) struct MutationQuota<'a> {
    manager: &'a QuotaManager,
    key: SensorKey,
    quota: f64,
    stats: Arc<EntityStats>,
    strict: bool,
    /// The latest throttle and when it was computed.
    throttle: Option<(Duration, Instant)>,
}

impl MutationQuota<'_> {
    fn with_bucket<T>(&self, now: Instant, f: impl FnOnce(&mut TokenBucket, f64) -> T) -> T {
        let c = self.manager.controller_rate;
        let burst = self.quota * c.samples as f64 * c.window.as_secs_f64();
        let mut sensors = self.manager.sensors.lock();
        let kind = QuotaKind::ControllerMutationRate;
        match self
            .manager
            .sensor(&mut sensors, kind, self.key.clone(), now)
        {
            Some(s) => f(&mut s.bucket, burst),
            // The sensors are full: this client is not measured.
            None => f(&mut TokenBucket::default(), burst),
        }
    }

    /// Strict: `Err(throttle time)` when the quota is exhausted already (the bucket below
    /// zero), and the mutation must be refused THROTTLING_QUOTA_EXCEEDED. A mutation is
    /// never refused for its own size. Permissive: always `Ok`.
    pub(crate) fn check(&mut self) -> Result<(), Duration> {
        if !self.strict {
            return Ok(());
        }
        let now = Instant::now();
        let quota = self.quota;
        let tokens = self.with_bucket(now, |b, burst| b.tokens(quota, burst, now));
        let time = TokenBucket::throttle_time(tokens, quota, MUTATION_THROTTLE_MAX);
        if time.is_zero() {
            return Ok(());
        }
        self.throttle = Some((time, now));
        Err(time)
    }

    /// Records `partitions` created, added or deleted. Permissive: when that exhausts the
    /// quota, the response is throttled until the bucket is back to zero.
    pub(crate) fn record(&mut self, partitions: usize) {
        let now = Instant::now();
        let (quota, value) = (self.quota, partitions as f64);
        let tokens = self.with_bucket(now, |b, burst| b.record(value, quota, burst, now));
        self.stats.record(QuotaKind::ControllerMutationRate, value);
        if !self.strict {
            let time = TokenBucket::throttle_time(tokens, quota, MUTATION_THROTTLE_MAX);
            if !time.is_zero() {
                self.throttle = Some((time, now));
            }
        }
    }

    /// The throttle time for the response: the latest one computed, less the time since.
    pub(crate) fn throttle_time(&self) -> Duration {
        self.throttle
            .map_or(Duration::ZERO, |(t, at)| t.saturating_sub(at.elapsed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path) -> Config {
        let mut c = Config::default();
        c.storage.path = dir.to_path_buf();
        c
    }

    fn named(s: &str) -> Option<EntityName> {
        Some(EntityName::Named(s.into()))
    }

    #[test]
    fn quotas_survive_a_restart_and_apply_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let m = QuotaManager::open(&config(dir.path())).unwrap();
        let kind = QuotaKind::ProducerByteRate;
        let t0 = Instant::now();
        assert_eq!(m.record(kind, "alice", "app", 1e9, t0), Duration::ZERO);
        m.alter(&[
            QuotaAlteration {
                entity: QuotaEntity::client(None, named("app")),
                ops: vec![
                    (kind, Some(1e6)),
                    (QuotaKind::RequestPercentage, Some(50.0)),
                ],
            },
            QuotaAlteration {
                entity: QuotaEntity::client(Some(EntityName::Default), Some(EntityName::Default)),
                ops: vec![(QuotaKind::ConsumerByteRate, Some(2e6))],
            },
        ])
        .unwrap();
        // 22 MB at once, over the 10 windows a new sensor counts: 2.2 MB/s against 1 MB/s,
        // 12 s of throttle, held to the 11 s the samples span.
        let th = m.record(kind, "alice", "app", 22e6, t0);
        assert_eq!(th, Duration::from_secs(11));
        // Another client id shares nothing and has no producer quota.
        assert_eq!(m.record(kind, "alice", "other", 22e6, t0), Duration::ZERO);
        // The request quota is held to one window.
        let th = m.record(QuotaKind::RequestPercentage, "bob", "app", 1e6, t0);
        assert_eq!(th, Duration::from_secs(1));
        assert_eq!(
            m.max_value_in_window(QuotaKind::ConsumerByteRate, "x", "y"),
            Some(20e6)
        );
        let reopened = QuotaManager::open(&config(dir.path())).unwrap();
        let cur = reopened.current();
        assert_eq!(cur.len(), 2);
        assert_eq!(cur.resolve("u", "app", kind).unwrap().quota, 1e6);
        assert_eq!(
            cur.resolve("u", "c", QuotaKind::ConsumerByteRate)
                .unwrap()
                .quota,
            2e6
        );
        // Removing the last value removes the entity.
        reopened
            .alter(&[QuotaAlteration {
                entity: QuotaEntity::client(Some(EntityName::Default), Some(EntityName::Default)),
                ops: vec![(QuotaKind::ConsumerByteRate, None)],
            }])
            .unwrap();
        assert_eq!(
            QuotaManager::open(&config(dir.path()))
                .unwrap()
                .current()
                .len(),
            1
        );
    }

    #[test]
    fn a_throttled_fetch_is_taken_back_and_a_damaged_file_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let m = QuotaManager::open(&config(dir.path())).unwrap();
        let kind = QuotaKind::ConsumerByteRate;
        m.alter(&[QuotaAlteration {
            entity: QuotaEntity::client(named("alice"), None),
            ops: vec![(kind, Some(1e6))],
        }])
        .unwrap();
        let t0 = Instant::now();
        assert_eq!(m.record(kind, "alice", "a", 5e6, t0), Duration::ZERO);
        let th = m.record(kind, "alice", "b", 10e6, t0);
        assert!(th > Duration::ZERO);
        m.unrecord(kind, "alice", "b", 10e6, t0);
        // Back to 5 MB recorded: 5 MB more is still within 1 MB/s over 10 s.
        assert_eq!(m.record(kind, "alice", "c", 5e6, t0), Duration::ZERO);
        assert_eq!(m.sensor_count(), 1);
        std::fs::write(
            dir.path().join("rafka-quotas.yaml"),
            "quotas:\n  - {user: a, user_default: true, values: {}}\n",
        )
        .unwrap();
        assert!(QuotaManager::open(&config(dir.path())).is_err());
        std::fs::write(
            dir.path().join("rafka-quotas.yaml"),
            "quotas:\n  - {user: a, values: {producer.byte.rate: 1}}\n",
        )
        .unwrap();
        let e = QuotaManager::open(&config(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("producer.byte.rate"), "{e}");
    }

    #[test]
    fn entity_counters_are_labelled_by_the_configured_entity_only() {
        let dir = tempfile::tempdir().unwrap();
        let m = QuotaManager::open(&config(dir.path())).unwrap();
        let kind = QuotaKind::ProducerByteRate;
        let alice = QuotaEntity::client(named("alice"), None);
        let default_client = QuotaEntity::client(None, Some(EntityName::Default));
        m.alter(&[
            QuotaAlteration {
                entity: alice.clone(),
                ops: vec![(kind, Some(1e6))],
            },
            QuotaAlteration {
                entity: default_client,
                ops: vec![
                    (kind, Some(100.0)),
                    (QuotaKind::ConsumerByteRate, Some(1.0)),
                ],
            },
        ])
        .unwrap();
        let t0 = Instant::now();
        assert_eq!(m.record(kind, "alice", "x", 500.0, t0), Duration::ZERO);
        let th = m.record(kind, "bob", "stranger-7", 5000.0, t0);
        assert!(th > Duration::ZERO);
        m.throttled(kind, "bob", "stranger-7", th);
        // A client without any quota of the kind leaves nothing.
        m.record(QuotaKind::RequestPercentage, "bob", "stranger-7", 5.0, t0);
        let mut f = m.figures();
        f.sort_by(|a, b| a.user.cmp(&b.user));
        assert_eq!(
            f,
            vec![
                crate::metrics::QuotaEntityFigures {
                    quota: "producer_byte_rate",
                    user: String::new(),
                    client_id: "<default>".into(),
                    ip: String::new(),
                    recorded: 5000,
                    throttled: 1,
                    throttle_ms: th.as_millis() as u64,
                },
                crate::metrics::QuotaEntityFigures {
                    quota: "producer_byte_rate",
                    user: "alice".into(),
                    client_id: String::new(),
                    ip: String::new(),
                    recorded: 500,
                    throttled: 0,
                    throttle_ms: 0,
                },
            ]
        );
        // Another entity's change keeps the counts; removing the entity drops them.
        m.alter(&[QuotaAlteration {
            entity: alice.clone(),
            ops: vec![(QuotaKind::ConsumerByteRate, Some(5.0))],
        }])
        .unwrap();
        assert_eq!(m.figures().len(), 2);
        m.alter(&[QuotaAlteration {
            entity: alice,
            ops: vec![(kind, None), (QuotaKind::ConsumerByteRate, None)],
        }])
        .unwrap();
        assert_eq!(m.figures().len(), 1);
    }

    #[test]
    fn ip_quotas_are_stored_and_a_mixed_or_bad_ip_entity_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let m = QuotaManager::open(&config(dir.path())).unwrap();
        let kind = QuotaKind::ConnectionCreationRate;
        let a: std::net::IpAddr = "10.1.2.3".parse().unwrap();
        m.alter(&[
            QuotaAlteration {
                entity: QuotaEntity::ip(Some(a)),
                ops: vec![(kind, Some(5.0))],
            },
            QuotaAlteration {
                entity: QuotaEntity::ip(None),
                ops: vec![(kind, Some(50.0))],
            },
        ])
        .unwrap();
        let cur = QuotaManager::open(&config(dir.path())).unwrap().current();
        assert_eq!(cur.len(), 2);
        assert_eq!(cur.ip_quota(a).unwrap().0, 5.0);
        assert_eq!(cur.ip_quota("10.1.2.4".parse().unwrap()).unwrap().0, 50.0);
        for bad in [
            "quotas:\n  - {ip: 10.0.0.1, user: a, values: {connection_creation_rate: 1}}\n",
            "quotas:\n  - {ip: nope, values: {connection_creation_rate: 1}}\n",
            "quotas:\n  - {ip_default: true, values: {producer_byte_rate: 1}}\n",
            "quotas:\n  - {user: a, values: {connection_creation_rate: 1}}\n",
        ] {
            std::fs::write(dir.path().join("rafka-quotas.yaml"), bad).unwrap();
            assert!(QuotaManager::open(&config(dir.path())).is_err(), "{bad}");
        }
    }
}
