//! Topic-level configuration: the keys Rafka understands, with Kafka's names, how each is
//! validated, and how overrides combine with the broker's defaults into a `LogConfig`.

use std::collections::BTreeMap;

use rafka_core::LogConfig;

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

/// Every topic config key Rafka accepts.
pub const TOPIC_CONFIG_KEYS: &[ConfigKey] = &[
    ConfigKey {
        name: "cleanup.policy",
        doc: "Only `delete` until log compaction exists.",
        config_type: 7,
    },
    ConfigKey {
        name: "max.message.bytes",
        doc: "Largest record batch accepted.",
        config_type: 3,
    },
    ConfigKey {
        name: "message.timestamp.type",
        doc: "CreateTime or LogAppendTime.",
        config_type: 2,
    },
    ConfigKey {
        name: "retention.bytes",
        doc: "Delete old segments while the partition is larger (-1: no limit).",
        config_type: 5,
    },
    ConfigKey {
        name: "retention.ms",
        doc: "Delete segments older than this (-1: forever).",
        config_type: 5,
    },
    ConfigKey {
        name: "segment.bytes",
        doc: "Roll the active segment at this size.",
        config_type: 3,
    },
    ConfigKey {
        name: "segment.ms",
        doc: "Roll the active segment after this time.",
        config_type: 5,
    },
    ConfigKey {
        name: "index.interval.bytes",
        doc: "Bytes between offset index entries.",
        config_type: 3,
    },
];

/// Why a config value was refused (INVALID_CONFIG with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigValueError(pub String);

/// Checks one key and value.
pub fn validate(name: &str, value: &str) -> Result<(), ConfigValueError> {
    let int = |min: i64, max: i64| -> Result<(), ConfigValueError> {
        match value.trim().parse::<i64>() {
            Ok(v) if v >= min && v <= max => Ok(()),
            _ => Err(ConfigValueError(format!(
                "Invalid value {value} for configuration {name}: must be an integer in [{min}, {max}]"
            ))),
        }
    };
    match name {
        "cleanup.policy" => match value.trim() {
            "delete" => Ok(()),
            v if v.contains("compact") => Err(ConfigValueError(
                "cleanup.policy=compact is not supported yet: Rafka has no log compaction; use delete"
                    .into(),
            )),
            _ => Err(ConfigValueError(format!(
                "Invalid value {value} for configuration cleanup.policy: must be delete"
            ))),
        },
        "max.message.bytes" => int(0, rafka_core::limits::BATCH_BYTES_MAX as i64),
        "message.timestamp.type" => match value.trim() {
            "CreateTime" | "LogAppendTime" => Ok(()),
            _ => Err(ConfigValueError(format!(
                "Invalid value {value} for configuration message.timestamp.type: CreateTime or LogAppendTime"
            ))),
        },
        "retention.bytes" | "retention.ms" => int(-1, i64::MAX),
        "segment.bytes" => int(14, i32::MAX as i64),
        "segment.ms" => int(1, i64::MAX),
        "index.interval.bytes" => int(0, i32::MAX as i64),
        _ => Err(ConfigValueError(format!("Unknown topic config name: {name}"))),
    }
}

/// The value a key has when the topic does not override it.
pub fn default_value(name: &str, d: &LogConfig) -> String {
    match name {
        "cleanup.policy" => "delete".into(),
        "max.message.bytes" => d.max_message_bytes.to_string(),
        "message.timestamp.type" => if d.log_append_time {
            "LogAppendTime"
        } else {
            "CreateTime"
        }
        .into(),
        "retention.bytes" => d.retention_bytes.to_string(),
        "retention.ms" => d.retention_ms.to_string(),
        "segment.bytes" => d.segment_bytes.to_string(),
        "segment.ms" => d.segment_ms.to_string(),
        "index.interval.bytes" => d.index_interval_bytes.to_string(),
        _ => String::new(),
    }
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
            "segment.ms" => c.segment_ms = v.parse().unwrap_or(c.segment_ms),
            "index.interval.bytes" => {
                c.index_interval_bytes = v.parse().unwrap_or(c.index_interval_bytes)
            }
            _ => {}
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_and_merge() {
        assert!(validate("retention.ms", "1000").is_ok());
        assert!(validate("retention.ms", "-2").is_err());
        assert!(validate("retention.ms", "soon").is_err());
        assert!(validate("cleanup.policy", "compact")
            .unwrap_err()
            .0
            .contains("compaction"));
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
        assert_eq!(default_value("cleanup.policy", &c), "delete");
    }
}
