//! A custom hook written in Rust: every record produced must carry a `trace-id` header.
//!
//! `cargo run --example trace_id_hook` starts a broker on 127.0.0.1:9092 (or the address
//! given as the first argument) with the hook installed, then serves until Ctrl-C. A batch
//! with a record lacking the header is refused with INVALID_RECORD, naming the record.

use rafka_broker::rafka_hooks::{
    ErrorCode, Hook, HookResult, Interest, RecordError, RecordSet, Rejection, RequestContext,
    Stages, TopicFilter, Verdict,
};
use rafka_broker::{Broker, Config};
use rafka_core::TopicPartition;

/// Refuses produce batches with a record that has no `trace-id` header.
struct RequireTraceId;

impl Hook for RequireTraceId {
    fn name(&self) -> &str {
        "require_trace_id"
    }

    /// Produce only, every topic, and it reads headers, so records are decoded.
    fn interest(&self) -> Interest {
        Interest {
            stages: Stages::PRODUCE,
            topics: TopicFilter::All,
            record_access: true,
        }
    }

    fn on_produce(
        &self,
        _ctx: &RequestContext,
        tp: &TopicPartition,
        records: &mut RecordSet,
    ) -> HookResult {
        let Some(records) = records.records() else {
            return Ok(Verdict::Continue);
        };
        let missing: Vec<RecordError> = records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.header("trace-id").is_none())
            .map(|(index, _)| RecordError {
                index,
                message: "no trace-id header".into(),
            })
            .collect();
        if missing.is_empty() {
            return Ok(Verdict::Continue);
        }
        Ok(Verdict::Reject(Rejection {
            code: ErrorCode::INVALID_RECORD,
            message: format!("{} records to {tp} have no trace-id header", missing.len()),
            record_errors: missing,
        }))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().init();
    let mut config = Config::default();
    if let Some(listen) = std::env::args().nth(1) {
        config.broker.listen = listen;
    }
    let broker = Broker::builder()
        .config(config)
        .hook(RequireTraceId)
        .start()
        .await?;
    println!(
        "rafka with require_trace_id on {}",
        broker.bootstrap_address()
    );
    tokio::signal::ctrl_c().await?;
    broker.shutdown().await?;
    Ok(())
}
