//! `topic_policy`: which topic names may be created and produced to, partition counts and
//! required topic configs — Kafka's create-topic policy, applied to produce as well.
//! Reads no records, so it adds no decoding to the produce path.

use serde::Deserialize;

use rafka_core::TopicPartition;

use super::BuildError;
use crate::hook::{
    AdminOp, ErrorCode, Hook, HookResult, Interest, RecordSet, RequestContext, Stages, TopicFilter,
    Verdict,
};
use crate::pattern::TopicPatterns;

/// YAML settings of `type: topic_policy`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicPolicyConfig {
    /// Topic-name patterns that may be created and produced to; empty allows every name.
    pub allowed: Vec<String>,
    /// Patterns refused even when allowed.
    pub denied: Vec<String>,
    /// Fewest partitions a topic may be created with.
    pub min_partitions: Option<i32>,
    /// Most partitions a topic may have (creation and CreatePartitions).
    pub max_partitions: Option<i32>,
    /// Topic configs every topic must set at creation and keep on alteration.
    pub required_configs: Vec<String>,
}

/// The `topic_policy` hook. Answers POLICY_VIOLATION, as Kafka's policies do.
#[derive(Debug)]
pub struct TopicPolicy {
    allowed: Option<TopicPatterns>,
    denied: TopicPatterns,
    min_partitions: i32,
    max_partitions: i32,
    required_configs: Vec<String>,
}

impl TopicPolicy {
    pub(crate) fn new(c: &TopicPolicyConfig) -> Result<TopicPolicy, BuildError> {
        let min = c.min_partitions.unwrap_or(1);
        let max = c.max_partitions.unwrap_or(i32::MAX);
        if min < 1 || max < min {
            return Err(BuildError::Invalid(format!(
                "min_partitions {min} and max_partitions {max}: need 1 <= min <= max"
            )));
        }
        Ok(TopicPolicy {
            allowed: if c.allowed.is_empty() {
                None
            } else {
                Some(TopicPatterns::new(&c.allowed)?)
            },
            denied: TopicPatterns::new(&c.denied)?,
            min_partitions: min,
            max_partitions: max,
            required_configs: c.required_configs.clone(),
        })
    }

    fn check_name(&self, topic: &str) -> Option<String> {
        if self.denied.matches(topic) {
            return Some(format!("Topic name {topic} is denied by the topic policy"));
        }
        match &self.allowed {
            Some(a) if !a.matches(topic) => Some(format!(
                "Topic name {topic} matches none of the allowed patterns {:?}",
                a.sources()
            )),
            _ => None,
        }
    }

    fn check_partitions(&self, n: i32) -> Option<String> {
        (n < self.min_partitions || n > self.max_partitions).then(|| {
            format!(
                "{n} partitions: the topic policy allows {}..={}",
                self.min_partitions, self.max_partitions
            )
        })
    }

    fn check_configs(
        &self,
        configs: &std::collections::BTreeMap<String, String>,
    ) -> Option<String> {
        let missing: Vec<&str> = self
            .required_configs
            .iter()
            .filter(|k| !configs.contains_key(k.as_str()))
            .map(String::as_str)
            .collect();
        (!missing.is_empty()).then(|| format!("Topic policy requires configs {missing:?}"))
    }
}

fn verdict(problem: Option<String>) -> HookResult {
    Ok(match problem {
        Some(m) => Verdict::reject(ErrorCode::POLICY_VIOLATION, m),
        None => Verdict::Continue,
    })
}

impl Hook for TopicPolicy {
    fn name(&self) -> &str {
        "topic_policy"
    }

    fn interest(&self) -> Interest {
        let names_checked = self.allowed.is_some() || !self.denied.is_empty();
        Interest {
            stages: if names_checked {
                Stages::ADMIN | Stages::PRODUCE
            } else {
                Stages::ADMIN
            },
            topics: TopicFilter::All,
            record_access: false,
        }
    }

    fn on_produce(
        &self,
        _ctx: &RequestContext,
        tp: &TopicPartition,
        _records: &mut RecordSet,
    ) -> HookResult {
        verdict(self.check_name(tp.topic.as_str()))
    }

    fn on_admin(&self, _ctx: &RequestContext, op: &AdminOp<'_>) -> HookResult {
        verdict(match *op {
            AdminOp::CreateTopic {
                topic,
                partitions,
                configs,
                ..
            } => self
                .check_name(topic)
                .or_else(|| self.check_partitions(partitions))
                .or_else(|| self.check_configs(configs)),
            AdminOp::CreatePartitions { total, .. } => self.check_partitions(total),
            AdminOp::AlterTopicConfigs { configs, .. } => self.check_configs(configs),
            AdminOp::DeleteTopic { .. } => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn ctx() -> RequestContext {
        RequestContext {
            api: crate::Api::CreateTopics,
            api_version: 5,
            correlation_id: 1,
            client_id: String::new(),
            peer: "127.0.0.1:1".parse().unwrap(),
            received: rafka_core::Timestamp(0),
            session: std::sync::Arc::new(crate::Session::plaintext(
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
            )),
        }
    }

    /// Whether creating `topic` with `partitions` and `configs` passes.
    fn check(c: &TopicPolicyConfig, topic: &str, partitions: i32, configs: &[&str]) -> bool {
        let p = TopicPolicy::new(c).unwrap();
        let configs: BTreeMap<String, String> = configs
            .iter()
            .map(|k| (k.to_string(), "1".into()))
            .collect();
        let op = AdminOp::CreateTopic {
            topic,
            partitions,
            configs: &configs,
            validate_only: false,
        };
        match p.on_admin(&ctx(), &op).unwrap() {
            Verdict::Continue => true,
            Verdict::Reject(r) => {
                assert_eq!(r.code, ErrorCode::POLICY_VIOLATION);
                false
            }
        }
    }

    #[test]
    fn names_partitions_and_configs() {
        let c = TopicPolicyConfig {
            allowed: vec!["orders-.*".into(), "logs".into()],
            denied: vec!["orders-tmp.*".into()],
            min_partitions: Some(2),
            max_partitions: Some(8),
            required_configs: vec!["retention.ms".into()],
        };
        assert!(check(&c, "orders-eu", 3, &["retention.ms"]));
        assert!(!check(&c, "orders-tmp1", 3, &["retention.ms"]));
        assert!(!check(&c, "other", 3, &["retention.ms"]));
        assert!(!check(&c, "logs", 1, &["retention.ms"]));
        assert!(!check(&c, "logs", 9, &["retention.ms"]));
        assert!(!check(&c, "logs", 2, &[]));
        assert!(check(&TopicPolicyConfig::default(), "anything", 1, &[]));
        let p = TopicPolicy::new(&TopicPolicyConfig::default()).unwrap();
        assert!(!p.interest().stages.contains(Stages::PRODUCE));
        let bad = TopicPolicyConfig {
            min_partitions: Some(0),
            ..Default::default()
        };
        assert!(TopicPolicy::new(&bad).is_err());
    }
}
