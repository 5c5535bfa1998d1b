//! Per-group configs: Kafka 4's `GroupConfig`, described and altered as resource type GROUP
//! (32) through DescribeConfigs and IncrementalAlterConfigs.
//!
//! A group's overrides are persisted in `__consumer_offsets` (see
//! [`OffsetsRecord::GroupConfig`](super::records::OffsetsRecord::GroupConfig)); a key
//! without an override takes the broker's default. The consumer-group keys are honoured
//! per group ([`consumer_settings`]); the share-group keys are validated and stored as
//! Kafka does, for the share groups Rafka does not serve yet.

use std::collections::BTreeMap;
use std::time::Duration;

use super::consumer::ConsumerSettings;

/// `consumer.session.timeout.ms`.
pub const CONSUMER_SESSION_TIMEOUT_MS: &str = "consumer.session.timeout.ms";
/// `consumer.heartbeat.interval.ms`.
pub const CONSUMER_HEARTBEAT_INTERVAL_MS: &str = "consumer.heartbeat.interval.ms";
const SHARE_SESSION_TIMEOUT_MS: &str = "share.session.timeout.ms";
const SHARE_HEARTBEAT_INTERVAL_MS: &str = "share.heartbeat.interval.ms";
const SHARE_RECORD_LOCK_DURATION_MS: &str = "share.record.lock.duration.ms";
const SHARE_AUTO_OFFSET_RESET: &str = "share.auto.offset.reset";

/// DescribeConfigs config types (KIP-569).
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;

/// One group config key.
#[derive(Debug)]
pub struct GroupConfigKey {
    /// Kafka's name.
    pub name: &'static str,
    /// DescribeConfigs config type.
    pub config_type: i8,
    /// Documentation, as DescribeConfigs returns it.
    pub doc: &'static str,
}

/// Every group config Kafka 4.0 defines, in its order.
pub const GROUP_CONFIG_KEYS: &[GroupConfigKey] = &[
    GroupConfigKey {
        name: CONSUMER_SESSION_TIMEOUT_MS,
        config_type: TYPE_INT,
        doc: "The timeout to detect client failures when using the consumer group protocol.",
    },
    GroupConfigKey {
        name: CONSUMER_HEARTBEAT_INTERVAL_MS,
        config_type: TYPE_INT,
        doc: "The heartbeat interval given to the members of a consumer group.",
    },
    GroupConfigKey {
        name: SHARE_SESSION_TIMEOUT_MS,
        config_type: TYPE_INT,
        doc: "The timeout to detect client failures when using the share group protocol.",
    },
    GroupConfigKey {
        name: SHARE_HEARTBEAT_INTERVAL_MS,
        config_type: TYPE_INT,
        doc: "The heartbeat interval given to the members of a share group.",
    },
    GroupConfigKey {
        name: SHARE_RECORD_LOCK_DURATION_MS,
        config_type: TYPE_INT,
        doc: "The record acquisition lock duration in milliseconds for share groups.",
    },
    GroupConfigKey {
        name: SHARE_AUTO_OFFSET_RESET,
        config_type: TYPE_STRING,
        doc: "The strategy to initialize the share-partition start offset.",
    },
];

/// The broker's defaults and bounds for group configs.
#[derive(Debug, Clone)]
pub struct GroupConfigDefaults {
    /// `group.consumer.session.timeout.ms`.
    pub consumer_session_timeout_ms: i64,
    /// `group.consumer.heartbeat.interval.ms`.
    pub consumer_heartbeat_interval_ms: i32,
    /// `group.consumer.min/max.session.timeout.ms`.
    pub consumer_session_timeout_bounds: (i32, i32),
    /// `group.consumer.min/max.heartbeat.interval.ms`.
    pub consumer_heartbeat_interval_bounds: (i32, i32),
}

// Kafka's share-group broker defaults and bounds (Rafka has no share groups to configure).
const SHARE_SESSION_TIMEOUT_DEFAULT: i32 = 45_000;
const SHARE_SESSION_TIMEOUT_BOUNDS: (i32, i32) = (45_000, 60_000);
const SHARE_HEARTBEAT_INTERVAL_DEFAULT: i32 = 5_000;
const SHARE_HEARTBEAT_INTERVAL_BOUNDS: (i32, i32) = (5_000, 15_000);
const SHARE_RECORD_LOCK_DURATION_DEFAULT: i32 = 30_000;
const SHARE_RECORD_LOCK_DURATION_BOUNDS: (i32, i32) = (15_000, 60_000);

impl GroupConfigDefaults {
    /// The broker default of a key.
    pub fn default_value(&self, name: &str) -> String {
        match name {
            CONSUMER_SESSION_TIMEOUT_MS => self.consumer_session_timeout_ms.to_string(),
            CONSUMER_HEARTBEAT_INTERVAL_MS => self.consumer_heartbeat_interval_ms.to_string(),
            SHARE_SESSION_TIMEOUT_MS => SHARE_SESSION_TIMEOUT_DEFAULT.to_string(),
            SHARE_HEARTBEAT_INTERVAL_MS => SHARE_HEARTBEAT_INTERVAL_DEFAULT.to_string(),
            SHARE_RECORD_LOCK_DURATION_MS => SHARE_RECORD_LOCK_DURATION_DEFAULT.to_string(),
            SHARE_AUTO_OFFSET_RESET => "latest".to_string(),
            _ => String::new(),
        }
    }

    /// Checks a group's overrides as Kafka's `GroupConfig.validate` does: known names,
    /// values that parse, each within its bounds, and each session timeout above its
    /// heartbeat interval. The message names the offending key.
    pub fn validate(&self, overrides: &BTreeMap<String, String>) -> Result<(), String> {
        for name in overrides.keys() {
            if !GROUP_CONFIG_KEYS.iter().any(|k| k.name == name) {
                return Err(format!("Unknown group config name: {name}"));
            }
        }
        let value = |name: &str| {
            overrides
                .get(name)
                .cloned()
                .unwrap_or_else(|| self.default_value(name))
        };
        let int = |name: &str, at_least: i32| -> Result<i32, String> {
            let v = value(name);
            let n: i32 = v.trim().parse().map_err(|_| {
                format!("Invalid value {v} for configuration {name}: Not a number of type INT")
            })?;
            if n < at_least {
                return Err(format!(
                    "Invalid value {n} for configuration {name}: Value must be at least {at_least}"
                ));
            }
            Ok(n)
        };
        let reset = value(SHARE_AUTO_OFFSET_RESET);
        if !["latest", "earliest"].contains(&reset.to_lowercase().as_str()) {
            return Err(format!(
                "Invalid value {reset} for configuration {SHARE_AUTO_OFFSET_RESET}: \
                 String must be one of: latest, earliest"
            ));
        }
        let consumer_session = int(CONSUMER_SESSION_TIMEOUT_MS, 1)?;
        let consumer_heartbeat = int(CONSUMER_HEARTBEAT_INTERVAL_MS, 1)?;
        let share_session = int(SHARE_SESSION_TIMEOUT_MS, 1)?;
        let share_heartbeat = int(SHARE_HEARTBEAT_INTERVAL_MS, 1)?;
        let lock = int(SHARE_RECORD_LOCK_DURATION_MS, 1000)?;
        // Only the values this group overrides are held to the bounds: a broker default
        // outside them (a test broker with fast heartbeats) is the operator's choice.
        let within = |name: &str, n: i32, (min, max): (i32, i32), broker_key: &str| {
            if !overrides.contains_key(name) {
                return Ok(());
            }
            if n < min {
                return Err(format!(
                    "{name} must be greater than or equal to group.{broker_key}.min.{}",
                    &name[name.find('.').map_or(0, |i| i + 1)..]
                ));
            }
            if n > max {
                return Err(format!(
                    "{name} must be less than or equal to group.{broker_key}.max.{}",
                    &name[name.find('.').map_or(0, |i| i + 1)..]
                ));
            }
            Ok(())
        };
        within(
            CONSUMER_HEARTBEAT_INTERVAL_MS,
            consumer_heartbeat,
            self.consumer_heartbeat_interval_bounds,
            "consumer",
        )?;
        within(
            CONSUMER_SESSION_TIMEOUT_MS,
            consumer_session,
            self.consumer_session_timeout_bounds,
            "consumer",
        )?;
        within(
            SHARE_HEARTBEAT_INTERVAL_MS,
            share_heartbeat,
            SHARE_HEARTBEAT_INTERVAL_BOUNDS,
            "share",
        )?;
        within(
            SHARE_SESSION_TIMEOUT_MS,
            share_session,
            SHARE_SESSION_TIMEOUT_BOUNDS,
            "share",
        )?;
        within(
            SHARE_RECORD_LOCK_DURATION_MS,
            lock,
            SHARE_RECORD_LOCK_DURATION_BOUNDS,
            "share",
        )?;
        if i64::from(consumer_session) <= i64::from(consumer_heartbeat) {
            return Err(format!(
                "{CONSUMER_SESSION_TIMEOUT_MS} must be greater than {CONSUMER_HEARTBEAT_INTERVAL_MS}"
            ));
        }
        if share_session <= share_heartbeat {
            return Err(format!(
                "{SHARE_SESSION_TIMEOUT_MS} must be greater than {SHARE_HEARTBEAT_INTERVAL_MS}"
            ));
        }
        Ok(())
    }
}

/// The KIP-848 settings of one group: the broker's, with the group's overrides applied.
/// Overrides were validated when set, so a value that does not parse cannot occur; it
/// would fall back to the broker's.
pub fn consumer_settings(
    base: &ConsumerSettings,
    overrides: Option<&BTreeMap<String, String>>,
) -> ConsumerSettings {
    let mut s = base.clone();
    let Some(o) = overrides else { return s };
    if let Some(ms) = o
        .get(CONSUMER_SESSION_TIMEOUT_MS)
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        s.session_timeout = Duration::from_millis(ms);
    }
    if let Some(ms) = o
        .get(CONSUMER_HEARTBEAT_INTERVAL_MS)
        .and_then(|v| v.trim().parse::<i32>().ok())
    {
        s.heartbeat_interval_ms = ms;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn defaults() -> GroupConfigDefaults {
        GroupConfigDefaults {
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5_000,
            consumer_session_timeout_bounds: (45_000, 60_000),
            consumer_heartbeat_interval_bounds: (5_000, 15_000),
        }
    }

    fn check(pairs: &[(&str, &str)], want: Result<(), &str>) {
        let o: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let got = defaults().validate(&o);
        match want {
            Ok(()) => assert_eq!(got, Ok(()), "{pairs:?}"),
            Err(part) => {
                let e = got.expect_err(&format!("{pairs:?} must be refused"));
                assert!(e.contains(part), "{pairs:?}: {e}");
            }
        }
    }

    #[test]
    fn validation_follows_kafka() {
        check(&[], Ok(()));
        check(&[(CONSUMER_SESSION_TIMEOUT_MS, "50000")], Ok(()));
        check(&[("consumer.bogus", "1")], Err("Unknown group config name"));
        check(&[(CONSUMER_SESSION_TIMEOUT_MS, "abc")], Err("Not a number"));
        check(&[(CONSUMER_SESSION_TIMEOUT_MS, "0")], Err("at least 1"));
        check(
            &[(CONSUMER_SESSION_TIMEOUT_MS, "44999")],
            Err("greater than or equal to group.consumer.min.session.timeout.ms"),
        );
        check(
            &[(CONSUMER_HEARTBEAT_INTERVAL_MS, "15001")],
            Err("less than or equal to group.consumer.max.heartbeat.interval.ms"),
        );
        check(&[(SHARE_AUTO_OFFSET_RESET, "middle")], Err("one of"));
        check(&[(SHARE_AUTO_OFFSET_RESET, "earliest")], Ok(()));
        check(
            &[(SHARE_RECORD_LOCK_DURATION_MS, "999")],
            Err("at least 1000"),
        );
    }

    #[test]
    fn overrides_reach_the_consumer_settings() {
        let base = ConsumerSettings {
            session_timeout: Duration::from_secs(45),
            heartbeat_interval_ms: 5_000,
            default_assignor: "uniform".into(),
        };
        let o = BTreeMap::from([
            (CONSUMER_SESSION_TIMEOUT_MS.to_string(), "50000".to_string()),
            (
                CONSUMER_HEARTBEAT_INTERVAL_MS.to_string(),
                "6000".to_string(),
            ),
        ]);
        let s = consumer_settings(&base, Some(&o));
        assert_eq!(s.session_timeout, Duration::from_millis(50_000));
        assert_eq!(s.heartbeat_interval_ms, 6_000);
        assert_eq!(consumer_settings(&base, None).heartbeat_interval_ms, 5_000);
    }

    proptest! {
        /// The mirror of the refusals: every combination of in-bounds values is accepted.
        #[test]
        fn every_good_config_is_accepted(
            session in 45_000i32..=60_000,
            heartbeat in 5_000i32..=15_000,
            share_session in 45_000i32..=60_000,
            share_heartbeat in 5_000i32..=15_000,
            lock in 15_000i32..=60_000,
            earliest in any::<bool>(),
            pick in proptest::collection::vec(any::<bool>(), 6),
        ) {
            let values = [
                session.to_string(),
                heartbeat.to_string(),
                share_session.to_string(),
                share_heartbeat.to_string(),
                lock.to_string(),
                if earliest { "earliest".to_string() } else { "latest".to_string() },
            ];
            let o: BTreeMap<String, String> = GROUP_CONFIG_KEYS
                .iter()
                .zip(values)
                .zip(pick)
                .filter(|(_, keep)| *keep)
                .map(|((k, v), _)| (k.name.to_string(), v))
                .collect();
            prop_assert_eq!(defaults().validate(&o), Ok(()));
        }
    }
}
