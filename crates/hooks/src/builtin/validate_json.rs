//! `validate_json`: for matching topics, refuse a produce batch with a record whose value is
//! not JSON, or does not match a schema (see [`super::schema`] for the supported subset).
//! Answers INVALID_RECORD with every offending record's index in the record errors.

use std::path::PathBuf;

use serde::Deserialize;

use rafka_core::TopicPartition;

use super::schema::Schema;
use super::{topic_filter, BuildError};
use crate::hook::{
    ErrorCode, Hook, HookError, HookResult, Interest, RecordError, RecordSet, Rejection,
    RequestContext, Stages, TopicFilter, Verdict,
};

/// Offending records listed in one answer; the message says how many more there were.
const RECORD_ERRORS_MAX: usize = 100;

/// YAML settings of `type: validate_json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidateJsonConfig {
    /// Topic patterns; empty means every topic.
    pub topics: Vec<String>,
    /// A JSON Schema file (supported subset) values must match; none checks syntax only.
    pub schema: Option<PathBuf>,
    /// Whether records without a value (tombstones) pass. Default true.
    pub allow_null: Option<bool>,
}

/// The `validate_json` hook.
#[derive(Debug)]
pub struct ValidateJson {
    topics: TopicFilter,
    schema: Option<Schema>,
    allow_null: bool,
}

impl ValidateJson {
    pub(crate) fn new(c: &ValidateJsonConfig) -> Result<ValidateJson, BuildError> {
        let schema =
            match &c.schema {
                None => None,
                Some(path) => {
                    let text = std::fs::read_to_string(path).map_err(|e| {
                        BuildError::Invalid(format!("cannot read schema {}: {e}", path.display()))
                    })?;
                    let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                        BuildError::Invalid(format!("schema {} is not JSON: {e}", path.display()))
                    })?;
                    Some(Schema::compile(&doc).map_err(|e| {
                        BuildError::Invalid(format!("schema {}: {e}", path.display()))
                    })?)
                }
            };
        Ok(ValidateJson {
            topics: topic_filter(&c.topics)?,
            schema,
            allow_null: c.allow_null.unwrap_or(true),
        })
    }

    /// Why a value is refused, if it is.
    fn problem(&self, value: Option<&[u8]>) -> Option<String> {
        let Some(value) = value else {
            return (!self.allow_null).then(|| "value is null".to_string());
        };
        match serde_json::from_slice::<serde_json::Value>(value) {
            Err(e) => Some(format!("value is not valid JSON: {e}")),
            Ok(v) => self
                .schema
                .as_ref()
                .and_then(|s| s.check(&v).err())
                .map(|e| format!("value does not match the schema: {e}")),
        }
    }
}

impl Hook for ValidateJson {
    fn name(&self) -> &str {
        "validate_json"
    }

    fn interest(&self) -> Interest {
        Interest {
            stages: Stages::PRODUCE,
            topics: self.topics.clone(),
            record_access: true,
        }
    }

    fn on_produce(
        &self,
        _ctx: &RequestContext,
        tp: &TopicPartition,
        records: &mut RecordSet,
    ) -> HookResult {
        let records = records
            .records()
            .ok_or_else(|| HookError("records were not decoded".into()))?;
        let mut errors = Vec::new();
        let mut n_bad = 0usize;
        for (index, r) in records.iter().enumerate() {
            if let Some(message) = self.problem(r.value.as_deref()) {
                n_bad += 1;
                if errors.len() < RECORD_ERRORS_MAX {
                    errors.push(RecordError { index, message });
                }
            }
        }
        let Some(first) = errors.first() else {
            return Ok(Verdict::Continue);
        };
        Ok(Verdict::Reject(Rejection {
            code: ErrorCode::INVALID_RECORD,
            message: format!(
                "{n_bad} of {} records to {tp} refused; record {}: {}",
                records.len(),
                first.index,
                first.message
            ),
            record_errors: errors,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hook::Record;
    use bytes::Bytes;
    use rafka_core::{Offset, Timestamp, TopicName};

    /// Indexes of the refused records among `values`.
    fn check(c: &ValidateJsonConfig, values: &[Option<&str>]) -> Vec<usize> {
        let hook = ValidateJson::new(c).unwrap();
        let records = values
            .iter()
            .enumerate()
            .map(|(i, v)| Record {
                offset: Offset(i as i64),
                timestamp: Timestamp(0),
                key: None,
                value: v.map(|s| Bytes::copy_from_slice(s.as_bytes())),
                headers: vec![],
            })
            .collect();
        let mut set = RecordSet::decoded(records, 0);
        let ctx = RequestContext {
            api: crate::Api::Produce,
            api_version: 9,
            correlation_id: 0,
            client_id: String::new(),
            peer: "127.0.0.1:1".parse().unwrap(),
            received: Timestamp(0),
            session: std::sync::Arc::new(crate::Session::plaintext(
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
            )),
        };
        let tp = TopicPartition::new(TopicName::new("t").unwrap(), 0);
        match hook.on_produce(&ctx, &tp, &mut set).unwrap() {
            Verdict::Continue => vec![],
            Verdict::Reject(r) => {
                assert_eq!(r.code, ErrorCode::INVALID_RECORD);
                r.record_errors.iter().map(|e| e.index).collect()
            }
        }
    }

    #[test]
    fn syntax_schema_and_nulls() {
        let plain = ValidateJsonConfig::default();
        assert_eq!(
            check(&plain, &[Some("{}"), Some("[1]"), None]),
            Vec::<usize>::new()
        );
        assert_eq!(
            check(&plain, &[Some("{}"), Some("{oops"), Some("1")]),
            vec![1]
        );
        let strict = ValidateJsonConfig {
            allow_null: Some(false),
            ..Default::default()
        };
        assert_eq!(check(&strict, &[None]), vec![0]);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        std::fs::write(&path, r#"{"type":"object","required":["id"]}"#).unwrap();
        let with_schema = ValidateJsonConfig {
            schema: Some(path),
            ..Default::default()
        };
        assert_eq!(
            check(&with_schema, &[Some(r#"{"id":1}"#), Some(r#"{"x":1}"#)]),
            vec![1]
        );
        let missing = ValidateJsonConfig {
            schema: Some(dir.path().join("none.json")),
            ..Default::default()
        };
        assert!(ValidateJson::new(&missing).is_err());
    }
}
