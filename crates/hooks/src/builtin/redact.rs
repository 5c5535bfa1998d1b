//! `redact`: on fetch from matching topics, replace the values of named JSON fields (at any
//! depth) with a mask. Only the response changes; the stored records stay as produced.
//! Values that are not JSON objects or arrays go back unchanged.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use rafka_core::TopicPartition;

use super::{topic_filter, BuildError};
use crate::hook::{
    Hook, HookError, HookResult, Interest, RecordSet, RequestContext, Stages, TopicFilter, Verdict,
};

/// YAML settings of `type: redact`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactConfig {
    /// Topic patterns; empty means every topic.
    pub topics: Vec<String>,
    /// JSON field names whose values are masked, wherever they appear in the value.
    pub fields: Vec<String>,
    /// The replacement, a JSON string. Default `"***"`.
    pub mask: Option<String>,
}

/// The `redact` hook.
#[derive(Debug)]
pub struct Redact {
    topics: TopicFilter,
    fields: Vec<String>,
    mask: String,
}

impl Redact {
    pub(crate) fn new(c: &RedactConfig) -> Result<Redact, BuildError> {
        if c.fields.is_empty() {
            return Err(BuildError::Invalid("fields: name at least one".into()));
        }
        Ok(Redact {
            topics: topic_filter(&c.topics)?,
            fields: c.fields.clone(),
            mask: c.mask.clone().unwrap_or_else(|| "***".into()),
        })
    }

    /// Masks the named fields in place; returns whether anything changed.
    fn mask_value(&self, v: &mut Value) -> bool {
        let mut changed = false;
        match v {
            Value::Object(fields) => {
                for (k, fv) in fields.iter_mut() {
                    if self.fields.iter().any(|f| f == k) {
                        *fv = Value::String(self.mask.clone());
                        changed = true;
                    } else {
                        changed |= self.mask_value(fv);
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    changed |= self.mask_value(item);
                }
            }
            _ => {}
        }
        changed
    }

    /// The redacted value, if the value is JSON with one of the fields.
    fn redacted(&self, value: &[u8]) -> Option<Bytes> {
        // A cheap test first: most values without a field name in them are left alone.
        if !self
            .fields
            .iter()
            .any(|f| value.windows(f.len().max(1)).any(|w| w == f.as_bytes()))
        {
            return None;
        }
        let mut v: Value = serde_json::from_slice(value).ok()?;
        self.mask_value(&mut v)
            .then(|| serde_json::to_vec(&v).ok().map(Bytes::from))
            .flatten()
    }
}

impl Hook for Redact {
    fn name(&self) -> &str {
        "redact"
    }

    fn interest(&self) -> Interest {
        Interest {
            stages: Stages::FETCH,
            topics: self.topics.clone(),
            record_access: true,
        }
    }

    fn on_fetch(
        &self,
        _ctx: &RequestContext,
        _tp: &TopicPartition,
        records: &mut RecordSet,
    ) -> HookResult {
        let decoded = records
            .records()
            .ok_or_else(|| HookError("records were not decoded".into()))?;
        let changes: Vec<(usize, Bytes)> = decoded
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((i, self.redacted(r.value.as_deref()?)?)))
            .collect();
        // Take the records for changing only when something changes: an untouched set goes
        // back as stored, without re-encoding.
        if !changes.is_empty() {
            let records = records
                .records_mut()
                .ok_or_else(|| HookError("records were not decoded".into()))?;
            for (i, v) in changes {
                records[i].value = Some(v);
            }
        }
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(fields: &[&str], value: &str) -> Option<String> {
        let r = Redact::new(&RedactConfig {
            fields: fields.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .unwrap();
        r.redacted(value.as_bytes())
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    #[test]
    fn masks_named_fields_at_any_depth() {
        assert_eq!(
            check(&["ssn"], r#"{"name":"a","ssn":"123"}"#).as_deref(),
            Some(r#"{"name":"a","ssn":"***"}"#)
        );
        assert_eq!(
            check(&["card"], r#"{"u":[{"card":{"n":1}}]}"#).as_deref(),
            Some(r#"{"u":[{"card":"***"}]}"#)
        );
        assert_eq!(check(&["ssn"], r#"{"name":"a"}"#), None);
        assert_eq!(check(&["ssn"], "ssn but not json"), None);
        assert!(Redact::new(&RedactConfig::default()).is_err());
    }
}
