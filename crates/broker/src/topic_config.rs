//! Topic-level configuration: the keys Rafka understands, with Kafka's names, how each is
//! validated, and how overrides combine with the broker's defaults into a `LogConfig`.

use std::collections::BTreeMap;

use rafka_core::{CompressionType, LogConfig};

/// A topic config key Rafka understands.
#[derive(Debug, Clone, Copy)]
pub struct ConfigKey {
    /// Kafka's name.
    pub name: &'static str,
    /// One line for DescribeConfigs' documentation field.
    pub doc: &'static str,
    /// The Kafka config type code for DescribeConfigs v3+ (3 = INT, 5 = LONG, 2 = STRING...).
    pub config_type: i8,
}

/// Every topic config of Kafka 4, and the older `message.timestamp.difference.max.ms`
/// that Kafka 3 tools still set. Each is accepted; what Rafka does with it is in `doc`
/// (and in the README's table). Values whose behaviour Rafka cannot give are refused in
/// [`validate`] with the reason.
pub const TOPIC_CONFIG_KEYS: &[ConfigKey] = &[
    key(
        "cleanup.policy",
        LIST,
        "`delete`, `compact` or both (every storage engine compacts).",
    ),
    key(
        "compression.gzip.level",
        INT,
        "Accepted; recompression uses the codec's default level.",
    ),
    key(
        "compression.lz4.level",
        INT,
        "Accepted; recompression uses the codec's default level.",
    ),
    key(
        "compression.type",
        STRING,
        "Codec of stored batches: producer keeps the batch's own; others recompress on append.",
    ),
    key(
        "compression.zstd.level",
        INT,
        "Accepted; recompression uses the codec's default level.",
    ),
    key(
        "delete.retention.ms",
        LONG,
        "How long a tombstone stays after the cleaning that first saw it.",
    ),
    key(
        "file.delete.delay.ms",
        LONG,
        "Accepted; Rafka deletes segment files at once.",
    ),
    key(
        "flush.messages",
        LONG,
        "Accepted; fsync follows the broker's durability policy.",
    ),
    key(
        "flush.ms",
        LONG,
        "Accepted; fsync follows the broker's durability policy.",
    ),
    key(
        "follower.replication.throttled.replicas",
        LIST,
        "Accepted; one node has no followers.",
    ),
    key(
        "index.interval.bytes",
        INT,
        "Bytes between offset index entries (log engine).",
    ),
    key(
        "leader.replication.throttled.replicas",
        LIST,
        "Accepted; one node has no followers.",
    ),
    key(
        "local.retention.bytes",
        LONG,
        "Accepted; Rafka has no tiered storage, retention.bytes applies.",
    ),
    key(
        "local.retention.ms",
        LONG,
        "Accepted; Rafka has no tiered storage, retention.ms applies.",
    ),
    key(
        "max.compaction.lag.ms",
        LONG,
        "Accepted; applies to compacted topics only.",
    ),
    key("max.message.bytes", INT, "Largest record batch accepted."),
    key(
        "message.downconversion.enable",
        BOOLEAN,
        "Accepted; a no-op, as in Kafka 4.",
    ),
    key(
        "message.timestamp.after.max.ms",
        LONG,
        "Largest allowed future skew of a CreateTime record timestamp (INVALID_TIMESTAMP beyond).",
    ),
    key(
        "message.timestamp.before.max.ms",
        LONG,
        "Largest allowed past skew of a CreateTime record timestamp (INVALID_TIMESTAMP beyond).",
    ),
    key(
        "message.timestamp.difference.max.ms",
        LONG,
        "Kafka 3's bound for both directions; before/after.max.ms win when set.",
    ),
    key(
        "message.timestamp.type",
        STRING,
        "CreateTime or LogAppendTime.",
    ),
    key(
        "min.cleanable.dirty.ratio",
        DOUBLE,
        "Accepted; applies to compacted topics only.",
    ),
    key(
        "min.compaction.lag.ms",
        LONG,
        "Accepted; applies to compacted topics only.",
    ),
    key(
        "min.insync.replicas",
        INT,
        "Only 1: a single node is the only replica.",
    ),
    key(
        "preallocate",
        BOOLEAN,
        "Reserve segment.bytes of disk for the active segment up front (log engine).",
    ),
    key(
        "remote.log.copy.disable",
        BOOLEAN,
        "Accepted; Rafka has no tiered storage.",
    ),
    key(
        "remote.log.delete.on.disable",
        BOOLEAN,
        "Accepted; Rafka has no tiered storage.",
    ),
    key(
        "remote.storage.enable",
        BOOLEAN,
        "Only false: Rafka has no tiered storage.",
    ),
    key(
        "retention.bytes",
        LONG,
        "Delete old segments while the partition is larger (-1: no limit).",
    ),
    key(
        "retention.ms",
        LONG,
        "Delete segments older than this (-1: forever).",
    ),
    key(
        "segment.bytes",
        INT,
        "Roll the active segment at this size (log engine).",
    ),
    key(
        "segment.index.bytes",
        INT,
        "Accepted; the log engine sizes its indexes itself.",
    ),
    key(
        "segment.jitter.ms",
        LONG,
        "Accepted; segments roll at segment.ms exactly.",
    ),
    key(
        "segment.ms",
        LONG,
        "Roll the active segment after this time (log engine).",
    ),
    key(
        "unclean.leader.election.enable",
        BOOLEAN,
        "Accepted; a single node has no other replica to elect.",
    ),
];

const BOOLEAN: i8 = 1;
const STRING: i8 = 2;
const INT: i8 = 3;
const LONG: i8 = 5;
const DOUBLE: i8 = 6;
const LIST: i8 = 7;

const fn key(name: &'static str, config_type: i8, doc: &'static str) -> ConfigKey {
    ConfigKey {
        name,
        doc,
        config_type,
    }
}

/// Why a config value was refused (INVALID_CONFIG with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigValueError(pub String);

/// Checks one key and value.
pub fn validate(name: &str, value: &str) -> Result<(), ConfigValueError> {
    let v = value.trim();
    let bad = |what: &str| {
        Err(ConfigValueError(format!(
            "Invalid value {value} for configuration {name}: {what}"
        )))
    };
    let int = |min: i64, max: i64| -> Result<(), ConfigValueError> {
        match v.parse::<i64>() {
            Ok(n) if n >= min && n <= max => Ok(()),
            _ => bad(&format!("must be an integer in [{min}, {max}]")),
        }
    };
    let boolean = || match v.to_ascii_lowercase().as_str() {
        "true" | "false" => Ok(()),
        _ => bad("must be true or false"),
    };
    match name {
        "cleanup.policy" => {
            let mut parts: Vec<&str> = v.split(',').map(str::trim).collect();
            parts.sort_unstable();
            match parts.as_slice() {
                ["delete"] | ["compact"] | ["compact", "delete"] => Ok(()),
                _ => bad("must be delete, compact or compact,delete"),
            }
        }
        "compression.type" => match v {
            "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd" => Ok(()),
            _ => bad("must be one of producer, uncompressed, gzip, snappy, lz4, zstd"),
        },
        "compression.gzip.level" => match v.parse::<i64>() {
            Ok(-1 | 1..=9) => Ok(()),
            _ => bad("must be -1 or an integer in [1, 9]"),
        },
        "compression.lz4.level" => int(1, 17),
        "compression.zstd.level" => int(-131_072, 22),
        "delete.retention.ms"
        | "file.delete.delay.ms"
        | "flush.ms"
        | "message.timestamp.after.max.ms"
        | "message.timestamp.before.max.ms"
        | "message.timestamp.difference.max.ms"
        | "min.compaction.lag.ms"
        | "segment.jitter.ms" => int(0, i64::MAX),
        "flush.messages" | "max.compaction.lag.ms" => int(1, i64::MAX),
        "follower.replication.throttled.replicas" | "leader.replication.throttled.replicas" => {
            // "*" or partition:broker pairs, as Kafka's ThrottledReplicaListValidator.
            let pair = |p: &str| {
                p.split_once(':').is_some_and(|(a, b)| {
                    a.trim().parse::<u32>().is_ok() && b.trim().parse::<u32>().is_ok()
                })
            };
            if v.is_empty() || v == "*" || v.split(',').all(pair) {
                Ok(())
            } else {
                bad("must be * or a list of partition:broker pairs")
            }
        }
        "local.retention.bytes" | "local.retention.ms" => int(-2, i64::MAX),
        "max.message.bytes" => int(0, rafka_core::limits::BATCH_BYTES_MAX as i64),
        "message.downconversion.enable"
        | "preallocate"
        | "remote.log.copy.disable"
        | "remote.log.delete.on.disable"
        | "unclean.leader.election.enable" => boolean(),
        "message.timestamp.type" => match v {
            "CreateTime" | "LogAppendTime" => Ok(()),
            _ => bad("CreateTime or LogAppendTime"),
        },
        "min.cleanable.dirty.ratio" => match v.parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(()),
            _ => bad("must be a number in [0, 1]"),
        },
        "min.insync.replicas" => match v.parse::<i64>() {
            Ok(1) => Ok(()),
            Ok(n) if (2..=i32::MAX as i64).contains(&n) => Err(ConfigValueError(format!(
                "min.insync.replicas={n} cannot be met: Rafka is a single node, so every partition has exactly one replica; use 1"
            ))),
            _ => bad("must be an integer in [1, 2147483647]"),
        },
        "remote.storage.enable" => match v.to_ascii_lowercase().as_str() {
            "false" => Ok(()),
            "true" => Err(ConfigValueError(
                "remote.storage.enable=true is not supported: Rafka has no tiered storage".into(),
            )),
            _ => bad("must be true or false"),
        },
        "retention.bytes" | "retention.ms" => int(-1, i64::MAX),
        "segment.bytes" => int(14, i32::MAX as i64),
        "segment.index.bytes" => int(4, i32::MAX as i64),
        "segment.ms" => int(1, i64::MAX),
        "index.interval.bytes" => int(0, i32::MAX as i64),
        _ => Err(ConfigValueError(format!("Unknown topic config name: {name}"))),
    }
}

/// The value a key has when the topic does not override it.
pub fn default_value(name: &str, d: &LogConfig) -> String {
    let max = i64::MAX.to_string();
    match name {
        "cleanup.policy" => "delete".into(),
        "compression.gzip.level" => "-1".into(),
        "compression.lz4.level" => "9".into(),
        "compression.type" => match d.compression {
            None => "producer",
            Some(CompressionType::None) => "uncompressed",
            Some(CompressionType::Gzip) => "gzip",
            Some(CompressionType::Snappy) => "snappy",
            Some(CompressionType::Lz4) => "lz4",
            Some(CompressionType::Zstd) => "zstd",
            Some(CompressionType::Unknown(_)) => "producer",
        }
        .into(),
        "compression.zstd.level" => "3".into(),
        "delete.retention.ms" => "86400000".into(),
        "file.delete.delay.ms" => "60000".into(),
        "flush.messages" | "flush.ms" | "max.compaction.lag.ms" => max,
        // Rafka's defaults are unbounded: Kafka 4 bounds the future at one hour, which would
        // make every batch's records be read on append (see `normalize`).
        "message.timestamp.after.max.ms" => d.message_timestamp_after_max_ms.to_string(),
        "message.timestamp.before.max.ms" => d.message_timestamp_before_max_ms.to_string(),
        "message.timestamp.difference.max.ms" => max,
        "follower.replication.throttled.replicas" | "leader.replication.throttled.replicas" => {
            String::new()
        }
        "local.retention.bytes" | "local.retention.ms" => "-2".into(),
        "max.message.bytes" => d.max_message_bytes.to_string(),
        "message.downconversion.enable" => "true".into(),
        "message.timestamp.type" => if d.log_append_time {
            "LogAppendTime"
        } else {
            "CreateTime"
        }
        .into(),
        "min.cleanable.dirty.ratio" => "0.5".into(),
        "min.compaction.lag.ms" | "segment.jitter.ms" => "0".into(),
        "min.insync.replicas" => "1".into(),
        "preallocate" => d.preallocate.to_string(),
        "remote.log.copy.disable"
        | "remote.log.delete.on.disable"
        | "remote.storage.enable"
        | "unclean.leader.election.enable" => "false".into(),
        "retention.bytes" => d.retention_bytes.to_string(),
        "retention.ms" => d.retention_ms.to_string(),
        "segment.bytes" => d.segment_bytes.to_string(),
        "segment.index.bytes" => "10485760".into(),
        "segment.ms" => d.segment_ms.to_string(),
        "index.interval.bytes" => d.index_interval_bytes.to_string(),
        _ => String::new(),
    }
}

/// A topic's overrides with the broker's `log.cleanup.policy` filled in when the topic does
/// not set `cleanup.policy` and the broker default is not plain `delete` (what
/// [`log_config`] takes; DescribeConfigs still shows the broker default as a default).
pub fn with_default_policy<'a>(
    overrides: &'a BTreeMap<String, String>,
    default_policy: &str,
) -> std::borrow::Cow<'a, BTreeMap<String, String>> {
    if overrides.contains_key("cleanup.policy") || default_policy.trim() == "delete" {
        return std::borrow::Cow::Borrowed(overrides);
    }
    let mut o = overrides.clone();
    o.insert("cleanup.policy".into(), default_policy.to_string());
    std::borrow::Cow::Owned(o)
}

/// Applies validated overrides to the broker defaults.
pub fn log_config(defaults: &LogConfig, overrides: &BTreeMap<String, String>) -> LogConfig {
    let mut c = defaults.clone();
    for (k, v) in overrides {
        let v = v.trim();
        match k.as_str() {
            "max.message.bytes" => c.max_message_bytes = v.parse().unwrap_or(c.max_message_bytes),
            "message.timestamp.type" => c.log_append_time = v == "LogAppendTime",
            "retention.bytes" => c.retention_bytes = v.parse().unwrap_or(c.retention_bytes),
            "retention.ms" => c.retention_ms = v.parse().unwrap_or(c.retention_ms),
            "segment.bytes" => c.segment_bytes = v.parse().unwrap_or(c.segment_bytes),
            "preallocate" => c.preallocate = v == "true",
            "segment.ms" => c.segment_ms = v.parse().unwrap_or(c.segment_ms),
            "index.interval.bytes" => {
                c.index_interval_bytes = v.parse().unwrap_or(c.index_interval_bytes)
            }
            "message.timestamp.before.max.ms" => {
                c.message_timestamp_before_max_ms =
                    v.parse().unwrap_or(c.message_timestamp_before_max_ms)
            }
            "message.timestamp.after.max.ms" => {
                c.message_timestamp_after_max_ms =
                    v.parse().unwrap_or(c.message_timestamp_after_max_ms)
            }
            "compression.type" => {
                c.compression = match v {
                    "uncompressed" => Some(CompressionType::None),
                    "gzip" => Some(CompressionType::Gzip),
                    "snappy" => Some(CompressionType::Snappy),
                    "lz4" => Some(CompressionType::Lz4),
                    "zstd" => Some(CompressionType::Zstd),
                    _ => None,
                }
            }
            "cleanup.policy" => {
                c.compact = v.contains("compact");
                if !v.contains("delete") {
                    // Compact only: nothing is deleted by age or size.
                    c.retention_ms = -1;
                    c.retention_bytes = -1;
                }
            }
            _ => {}
        }
    }
    // Kafka 3's single bound applies to each direction the newer names leave unset.
    if let Some(d) = overrides
        .get("message.timestamp.difference.max.ms")
        .and_then(|v| v.trim().parse::<i64>().ok())
    {
        if !overrides.contains_key("message.timestamp.before.max.ms") {
            c.message_timestamp_before_max_ms = d;
        }
        if !overrides.contains_key("message.timestamp.after.max.ms") {
            c.message_timestamp_after_max_ms = d;
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::AppendPolicy;

    #[test]
    fn validation_and_merge() {
        assert!(validate("retention.ms", "1000").is_ok());
        assert!(validate("retention.ms", "-2").is_err());
        assert!(validate("retention.ms", "soon").is_err());
        assert!(validate("cleanup.policy", "compact").is_ok());
        assert!(validate("cleanup.policy", "delete, compact").is_ok());
        assert!(validate("cleanup.policy", "compact,shred").is_err());
        assert!(validate("no.such.key", "1")
            .unwrap_err()
            .0
            .contains("Unknown"));
        let mut o = BTreeMap::new();
        o.insert("retention.ms".to_string(), "5".to_string());
        o.insert(
            "message.timestamp.type".to_string(),
            "LogAppendTime".to_string(),
        );
        let c = log_config(&LogConfig::default(), &o);
        assert_eq!(c.retention_ms, 5);
        assert!(c.log_append_time);
        assert!(!c.preallocate);
        assert_eq!(default_value("cleanup.policy", &c), "delete");
        o.insert("preallocate".to_string(), "true".to_string());
        assert!(log_config(&LogConfig::default(), &o).preallocate);
    }

    #[test]
    fn the_broker_cleanup_policy_applies_where_a_topic_sets_none() {
        let d = LogConfig::default();
        let none = BTreeMap::new();
        let delete = BTreeMap::from([("cleanup.policy".to_string(), "delete".to_string())]);
        // Broker default compact: a topic without the key is compacted, retention off.
        let c = log_config(&d, &with_default_policy(&none, "compact"));
        assert!(c.compact);
        assert_eq!((c.retention_ms, c.retention_bytes), (-1, -1));
        assert!(CompactionSettings::of(&none, "compact").is_some());
        // Its own `delete` wins, with the broker's retention.
        let c = log_config(&d, &with_default_policy(&delete, "compact"));
        assert!(!c.compact);
        assert_eq!(c.retention_ms, d.retention_ms);
        assert!(CompactionSettings::of(&delete, "compact").is_none());
        // compact,delete: compacted and retention kept.
        let c = log_config(&d, &with_default_policy(&none, "compact,delete"));
        assert!(c.compact);
        assert_eq!(c.retention_ms, d.retention_ms);
        // The default default changes nothing.
        assert!(matches!(
            with_default_policy(&none, "delete"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert!(CompactionSettings::of(&none, "delete").is_none());
    }

    #[test]
    fn every_kafka_topic_config_is_accepted_with_its_default() {
        let d = LogConfig::default();
        for k in TOPIC_CONFIG_KEYS {
            let v = default_value(k.name, &d);
            assert!(validate(k.name, &v).is_ok(), "{} = {v:?}", k.name);
        }
        for (k, v) in [
            ("compression.type", "zstd"),
            ("min.insync.replicas", "1"),
            ("unclean.leader.election.enable", "true"),
            ("message.timestamp.before.max.ms", "3600000"),
            ("segment.jitter.ms", "1000"),
            ("preallocate", "true"),
            ("flush.messages", "1"),
            ("leader.replication.throttled.replicas", "0:1,1:1"),
            ("min.cleanable.dirty.ratio", "0.1"),
        ] {
            assert!(validate(k, v).is_ok(), "{k}={v}");
        }
    }

    #[test]
    fn values_rafka_cannot_give_are_refused_with_the_reason() {
        let e = validate("min.insync.replicas", "2").unwrap_err().0;
        assert!(e.contains("single node"), "{e}");
        let e = validate("remote.storage.enable", "true").unwrap_err().0;
        assert!(e.contains("tiered storage"), "{e}");
        assert!(validate("compression.type", "brotli").is_err());
        assert!(validate("message.timestamp.after.max.ms", "-1").is_err());
        assert!(validate("preallocate", "yes").is_err());
    }

    #[test]
    fn timestamp_bounds_and_codec_make_the_append_policy() {
        let d = LogConfig::default();
        let policy = |pairs: &[(&str, &str)]| {
            let o = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            AppendPolicy::of(&log_config(&d, &o))
        };
        assert_eq!(policy(&[]), AppendPolicy::default());
        let p = policy(&[("message.timestamp.difference.max.ms", "10")]);
        assert_eq!((p.before_max_ms, p.after_max_ms), (10, 10));
        let p = policy(&[
            ("message.timestamp.difference.max.ms", "10"),
            ("message.timestamp.after.max.ms", "20"),
        ]);
        assert_eq!((p.before_max_ms, p.after_max_ms), (10, 20));
        assert_eq!(
            policy(&[("compression.type", "uncompressed")]).compression,
            Some(CompressionType::None)
        );
        assert_eq!(
            policy(&[("compression.type", "producer")]).compression,
            None
        );
        assert!(policy(&[("message.timestamp.type", "LogAppendTime")]).log_append_time);
    }
}

/// The compaction settings of a compacted topic (`None` for `cleanup.policy=delete`), from
/// its overrides and Kafka's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompactionSettings {
    /// `min.cleanable.dirty.ratio`.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`.
    pub max_compaction_lag_ms: i64,
    /// `delete.retention.ms`.
    pub delete_retention_ms: i64,
}

impl CompactionSettings {
    /// The settings of a topic with these overrides, if it is compacted (by its own
    /// `cleanup.policy`, or else by the broker's `log.cleanup.policy`, `default_policy`).
    pub fn of(
        overrides: &BTreeMap<String, String>,
        default_policy: &str,
    ) -> Option<CompactionSettings> {
        if !overrides
            .get("cleanup.policy")
            .map_or(default_policy, String::as_str)
            .contains("compact")
        {
            return None;
        }
        let get = |k: &str, d: i64| {
            overrides
                .get(k)
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(d)
        };
        Some(CompactionSettings {
            min_cleanable_dirty_ratio: overrides
                .get("min.cleanable.dirty.ratio")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.5),
            min_compaction_lag_ms: get("min.compaction.lag.ms", 0),
            max_compaction_lag_ms: get("max.compaction.lag.ms", i64::MAX),
            delete_retention_ms: get("delete.retention.ms", 86_400_000),
        })
    }
}
