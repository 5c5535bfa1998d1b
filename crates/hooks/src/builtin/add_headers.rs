//! `add_headers`: add fixed headers, and optionally the producing client id and the broker's
//! receive time, to every record produced to matching topics. A header already carrying one
//! of these keys is replaced, so a client cannot forge them.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;

use rafka_core::TopicPartition;

use super::{topic_filter, BuildError};
use crate::hook::{
    Header, Hook, HookError, HookResult, Interest, RecordSet, RequestContext, Stages, TopicFilter,
    Verdict,
};

/// YAML settings of `type: add_headers`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AddHeadersConfig {
    /// Topic patterns; empty means every topic.
    pub topics: Vec<String>,
    /// Fixed headers (key: value), added in key order.
    pub headers: BTreeMap<String, String>,
    /// If set, a header with this key carries the producing client's id.
    pub client_id_header: Option<String>,
    /// If set, a header with this key carries the broker's receive time (decimal ms).
    pub receive_time_header: Option<String>,
}

/// The `add_headers` hook.
#[derive(Debug)]
pub struct AddHeaders {
    topics: TopicFilter,
    fixed: Vec<(String, Bytes)>,
    client_id_header: Option<String>,
    receive_time_header: Option<String>,
}

impl AddHeaders {
    pub(crate) fn new(c: &AddHeadersConfig) -> Result<AddHeaders, BuildError> {
        if c.headers.is_empty() && c.client_id_header.is_none() && c.receive_time_header.is_none() {
            return Err(BuildError::Invalid(
                "nothing to add: set headers, client_id_header or receive_time_header".into(),
            ));
        }
        Ok(AddHeaders {
            topics: topic_filter(&c.topics)?,
            fixed: c
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), Bytes::copy_from_slice(v.as_bytes())))
                .collect(),
            client_id_header: c.client_id_header.clone(),
            receive_time_header: c.receive_time_header.clone(),
        })
    }
}

fn set_header(headers: &mut Vec<Header>, key: &str, value: Bytes) {
    headers.retain(|h| h.key != key);
    headers.push(Header {
        key: key.to_string(),
        value: Some(value),
    });
}

impl Hook for AddHeaders {
    fn name(&self) -> &str {
        "add_headers"
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
        ctx: &RequestContext,
        _tp: &TopicPartition,
        records: &mut RecordSet,
    ) -> HookResult {
        let client_id = Bytes::copy_from_slice(ctx.client_id.as_bytes());
        let received = Bytes::from(ctx.received.0.to_string());
        let records = records
            .records_mut()
            .ok_or_else(|| HookError("records were not decoded".into()))?;
        for r in records {
            for (k, v) in &self.fixed {
                set_header(&mut r.headers, k, v.clone());
            }
            if let Some(k) = &self.client_id_header {
                set_header(&mut r.headers, k, client_id.clone());
            }
            if let Some(k) = &self.receive_time_header {
                set_header(&mut r.headers, k, received.clone());
            }
        }
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hook::Record;
    use rafka_core::{Offset, Timestamp, TopicName};

    fn check(c: &AddHeadersConfig, existing: Vec<Header>) -> Vec<(String, String)> {
        let hook = AddHeaders::new(c).unwrap();
        let mut set = RecordSet::decoded(
            vec![Record {
                offset: Offset(0),
                timestamp: Timestamp(0),
                key: None,
                value: None,
                headers: existing,
            }],
            0,
        );
        let ctx = RequestContext {
            api: crate::Api::Produce,
            api_version: 9,
            correlation_id: 0,
            client_id: "app".into(),
            peer: "127.0.0.1:1".parse().unwrap(),
            received: Timestamp(42),
            session: std::sync::Arc::new(crate::Session::plaintext(
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
            )),
        };
        let tp = TopicPartition::new(TopicName::new("t").unwrap(), 0);
        assert_eq!(
            hook.on_produce(&ctx, &tp, &mut set).unwrap(),
            Verdict::Continue
        );
        assert!(set.is_modified());
        set.records().unwrap()[0]
            .headers
            .iter()
            .map(|h| {
                let v = h.value.as_deref().unwrap_or_default();
                (h.key.clone(), String::from_utf8_lossy(v).into_owned())
            })
            .collect()
    }

    #[test]
    fn adds_and_replaces() {
        let c = AddHeadersConfig {
            headers: [("env".to_string(), "prod".to_string())].into(),
            client_id_header: Some("client".into()),
            receive_time_header: Some("received".into()),
            ..Default::default()
        };
        let kept = Header {
            key: "mine".into(),
            value: Some(Bytes::from_static(b"1")),
        };
        let forged = Header {
            key: "client".into(),
            value: Some(Bytes::from_static(b"evil")),
        };
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(
            check(&c, vec![kept, forged]),
            pairs(&[
                ("mine", "1"),
                ("env", "prod"),
                ("client", "app"),
                ("received", "42")
            ])
        );
        assert!(AddHeaders::new(&AddHeadersConfig::default()).is_err());
    }
}
