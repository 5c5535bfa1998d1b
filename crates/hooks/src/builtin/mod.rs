//! The built-in hooks and their YAML configuration (`hooks:` in `config/config.yaml`, a list
//! run in order, each entry naming its `type:`).

use std::sync::Arc;

use serde::Deserialize;

use crate::hook::{Hook, TopicFilter};
use crate::pattern::TopicPatterns;

pub mod add_headers;
pub mod audit_log;
pub mod redact;
pub mod schema;
pub mod topic_policy;
pub mod validate_json;

pub use add_headers::{AddHeaders, AddHeadersConfig};
pub use audit_log::{AuditLog, AuditLogConfig};
pub use redact::{Redact, RedactConfig};
pub use topic_policy::{TopicPolicy, TopicPolicyConfig};
pub use validate_json::{ValidateJson, ValidateJsonConfig};

/// One entry of the `hooks:` list.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HookConfig {
    /// Topic names, partition counts and required configs for creation and produce.
    TopicPolicy(TopicPolicyConfig),
    /// Produced values must be JSON (and match a schema).
    ValidateJson(ValidateJsonConfig),
    /// Headers added to every produced record.
    AddHeaders(AddHeadersConfig),
    /// JSON fields masked in fetch responses.
    Redact(RedactConfig),
    /// One JSON line per produce and admin operation, in a size-rotated file.
    AuditLog(AuditLogConfig),
}

/// Why a hook's configuration was refused. Names the hook by its position in the list.
#[derive(Debug, thiserror::Error)]
pub enum HookConfigError {
    /// A topic pattern does not compile.
    #[error("hooks[{index}] ({kind}): bad topic pattern: {source}")]
    Pattern {
        /// Position in the list.
        index: usize,
        /// Hook type.
        kind: &'static str,
        /// The regex error.
        source: regex::Error,
    },
    /// A setting is out of range or inconsistent.
    #[error("hooks[{index}] ({kind}): {problem}")]
    Invalid {
        /// Position in the list.
        index: usize,
        /// Hook type.
        kind: &'static str,
        /// What is wrong.
        problem: String,
    },
}

impl HookConfig {
    /// The `type:` name.
    pub fn kind(&self) -> &'static str {
        match self {
            HookConfig::TopicPolicy(_) => "topic_policy",
            HookConfig::ValidateJson(_) => "validate_json",
            HookConfig::AddHeaders(_) => "add_headers",
            HookConfig::Redact(_) => "redact",
            HookConfig::AuditLog(_) => "audit_log",
        }
    }
}

/// A problem found while building one hook, before it is given its position.
#[derive(Debug)]
pub(crate) enum BuildError {
    Pattern(regex::Error),
    Invalid(String),
}

impl From<regex::Error> for BuildError {
    fn from(e: regex::Error) -> Self {
        BuildError::Pattern(e)
    }
}

/// `topics:` as written in YAML: absent or empty means every topic.
pub(crate) fn topic_filter(patterns: &[String]) -> Result<TopicFilter, regex::Error> {
    if patterns.is_empty() {
        Ok(TopicFilter::All)
    } else {
        Ok(TopicFilter::Matching(TopicPatterns::new(patterns)?))
    }
}

/// Builds the configured hooks, in order. Checks every setting (patterns, schema files);
/// `audit_log` opens its file and starts its writer thread here.
pub fn build_hooks(configs: &[HookConfig]) -> Result<Vec<Arc<dyn Hook>>, HookConfigError> {
    configs
        .iter()
        .enumerate()
        .map(|(index, c)| {
            let built: Result<Arc<dyn Hook>, BuildError> = match c {
                HookConfig::TopicPolicy(c) => TopicPolicy::new(c).map(|h| Arc::new(h) as _),
                HookConfig::ValidateJson(c) => ValidateJson::new(c).map(|h| Arc::new(h) as _),
                HookConfig::AddHeaders(c) => AddHeaders::new(c).map(|h| Arc::new(h) as _),
                HookConfig::Redact(c) => Redact::new(c).map(|h| Arc::new(h) as _),
                HookConfig::AuditLog(c) => AuditLog::new(c).map(|h| Arc::new(h) as _),
            };
            built.map_err(|e| match e {
                BuildError::Pattern(source) => HookConfigError::Pattern {
                    index,
                    kind: c.kind(),
                    source,
                },
                BuildError::Invalid(problem) => HookConfigError::Invalid {
                    index,
                    kind: c.kind(),
                    problem,
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str) -> Result<Vec<String>, String> {
        let configs: Vec<HookConfig> = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        let hooks = build_hooks(&configs).map_err(|e| e.to_string())?;
        Ok(hooks.iter().map(|h| h.name().to_string()).collect())
    }

    #[test]
    fn every_type_parses_and_unknown_keys_are_refused() {
        let names = check(
            "- type: topic_policy\n  denied: ['tmp-.*']\n\
             - type: validate_json\n  topics: [orders]\n\
             - type: add_headers\n  headers: {a: b}\n\
             - type: redact\n  fields: [ssn]\n",
        )
        .unwrap();
        assert_eq!(
            names,
            ["topic_policy", "validate_json", "add_headers", "redact"]
        );
        let e = check("- type: redact\n  feilds: [ssn]\n").unwrap_err();
        assert!(e.contains("feilds"), "{e}");
        let e = check("- type: nope\n").unwrap_err();
        assert!(e.contains("nope"), "{e}");
        let e = check("- type: add_headers\n  topics: ['(']\n").unwrap_err();
        assert!(e.contains("hooks[0] (add_headers)"), "{e}");
    }
}
