//! The broker's metrics: counters kept on the request path with relaxed atomics, and the
//! Prometheus text rendering the admin endpoint serves, from those counters and the
//! [`Figures`] read from the broker's state at scrape time.
//!
//! Hot-path cost: per request one add on a fixed per-API array and one histogram
//! observation (three adds); per produced or fetched partition two adds on counters that
//! live in its [`PartitionState`]. Errors take a short lock on a small map (errors are
//! rare and the map is bounded by APIs × error codes). Everything else (offsets, sizes,
//! group lag, storage, process figures) is read when scraped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::ResponseError;
use parking_lot::Mutex;

use crate::cleaner_state::{CleanerPartition, CleanerTotals};
use crate::quota::QuotaKind;
use rafka_core::histogram::{Histogram, HistogramSnapshot, BUCKET_BOUNDS_SECONDS};

/// API keys below this get counters; Kafka's keys are all below 100.
const API_SLOTS: usize = 128;

/// Traffic of one partition, kept on its `PartitionState`.
#[derive(Debug, Default)]
pub struct Traffic {
    /// Record-batch bytes appended by Produce (headers included; duplicates not).
    bytes_in: AtomicU64,
    /// Records appended by Produce.
    records_in: AtomicU64,
    /// Record-batch bytes sent in Fetch answers (whole batches only).
    bytes_out: AtomicU64,
    /// Records in those batches.
    records_out: AtomicU64,
}

impl Traffic {
    /// Counts a produced batch.
    pub fn produced(&self, bytes: usize, records: i32) {
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
        self.records_in
            .fetch_add(records.max(0) as u64, Ordering::Relaxed);
    }

    /// Counts the whole batches of a fetched record set.
    pub fn fetched(&self, records: &[u8]) {
        let (bytes, count) = rafka_core::RecordBatch::tally(records);
        if bytes > 0 {
            self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
            self.records_out.fetch_add(count, Ordering::Relaxed);
        }
    }

    /// Counts fetched whole batches of `bytes` holding `records` (a file region, from the
    /// batches' headers).
    pub fn fetched_batches(&self, bytes: u64, records: u64) {
        if bytes > 0 {
            self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
            self.records_out.fetch_add(records, Ordering::Relaxed);
        }
    }

    /// The four counters now.
    pub fn counts(&self) -> TrafficCounts {
        TrafficCounts {
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            records_in: self.records_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
        }
    }
}

/// Broker-wide counters.
pub struct Metrics {
    requests: [AtomicU64; API_SLOTS],
    latency: Box<[Histogram; API_SLOTS]>,
    errors: Mutex<BTreeMap<(i16, i16), u64>>,
    connections_open: AtomicI64,
    connections_accepted: AtomicU64,
    /// Record bytes sent from segment files with `sendfile` (zero-copy Fetch answers).
    fetch_sendfile_bytes: AtomicU64,
    /// SASL outcomes, by [`SaslOutcome`].
    sasl: [AtomicU64; SaslOutcome::ALL.len()],
    /// Authorization denials by (API, resource type); a short lock, only on a denial.
    authorization_failures: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Throttled responses and their throttle time, by quota kind (`QuotaKind::ALL`'s
    /// order; no user or client id labels: those are the clients' to choose).
    throttled: [AtomicU64; QuotaKind::ALL.len()],
    throttle_ms: [AtomicU64; QuotaKind::ALL.len()],
    /// Connections closed at accept by `max_connections_per_ip`.
    connections_refused_per_ip: AtomicU64,
}

/// How a SASL exchange (or a session) ended, as Kafka's `successful-authentication-total`,
/// `failed-authentication-total`, `successful-reauthentication-total` and
/// `expired-connections-killed-count` count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslOutcome {
    /// A connection authenticated.
    Authenticated,
    /// An authentication (or re-authentication) failed.
    Failed,
    /// An authenticated connection re-authenticated (KIP-368).
    Reauthenticated,
    /// A connection was closed because its session had expired.
    Expired,
}

impl SaslOutcome {
    const ALL: [SaslOutcome; 4] = [
        SaslOutcome::Authenticated,
        SaslOutcome::Failed,
        SaslOutcome::Reauthenticated,
        SaslOutcome::Expired,
    ];

    fn label(self) -> &'static str {
        match self {
            SaslOutcome::Authenticated => "authenticated",
            SaslOutcome::Failed => "failed",
            SaslOutcome::Reauthenticated => "reauthenticated",
            SaslOutcome::Expired => "expired",
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            latency: Box::new(std::array::from_fn(|_| Histogram::default())),
            errors: Mutex::new(BTreeMap::new()),
            connections_open: AtomicI64::new(0),
            connections_accepted: AtomicU64::new(0),
            fetch_sendfile_bytes: AtomicU64::new(0),
            sasl: std::array::from_fn(|_| AtomicU64::new(0)),
            authorization_failures: Mutex::new(BTreeMap::new()),
            throttled: std::array::from_fn(|_| AtomicU64::new(0)),
            throttle_ms: std::array::from_fn(|_| AtomicU64::new(0)),
            connections_refused_per_ip: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// A connection was accepted.
    pub fn connection_opened(&self) {
        self.connections_accepted.fetch_add(1, Ordering::Relaxed);
        self.connections_open.fetch_add(1, Ordering::Relaxed);
    }

    /// Record bytes a Fetch answer sent from a segment file with `sendfile`.
    pub fn fetch_sent_from_file(&self, bytes: u64) {
        self.fetch_sendfile_bytes
            .fetch_add(bytes, Ordering::Relaxed);
    }

    /// A connection ended.
    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    /// One authorization denial of `api` on a resource of `resource_type`.
    pub(crate) fn authorization_failure(&self, api: &'static str, resource_type: &'static str) {
        *self
            .authorization_failures
            .lock()
            .entry((api, resource_type))
            .or_insert(0) += 1;
    }

    /// A response throttled for `time` by its client's quota of `kind`.
    pub(crate) fn throttled(&self, kind: QuotaKind, time: Duration) {
        let i = QuotaKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.throttled[i].fetch_add(1, Ordering::Relaxed);
        self.throttle_ms[i].fetch_add(time.as_millis() as u64, Ordering::Relaxed);
    }

    /// A connection closed at accept: its address had `max_connections_per_ip` already.
    pub(crate) fn connection_refused_per_ip(&self) {
        self.connections_refused_per_ip
            .fetch_add(1, Ordering::Relaxed);
    }

    /// One SASL outcome.
    pub fn sasl(&self, outcome: SaslOutcome) {
        self.sasl[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// One request answered (or, for acks=0, handled) after `took`. `error_codes` calls its
    /// argument with every error code of the answer (top level, per topic, per partition),
    /// zeros included, as Kafka's `errorCounts` does for its error metrics; with no answer
    /// it calls nothing.
    pub fn request_done(
        &self,
        api: ApiKey,
        took: Duration,
        error_codes: impl FnOnce(&mut dyn FnMut(i16)),
    ) {
        let slot = api as i16 as usize;
        if slot >= API_SLOTS {
            return;
        }
        self.requests[slot].fetch_add(1, Ordering::Relaxed);
        self.latency[slot].observe(took);
        let mut first = true;
        let mut errors = None;
        error_codes(&mut |code| {
            if code == 0 {
                return;
            }
            if first {
                errors = Some(self.errors.lock());
                first = false;
            }
            if let Some(map) = errors.as_mut() {
                *map.entry((api as i16, code)).or_insert(0) += 1;
            }
        });
    }

    /// Requests counted for `api` so far.
    #[cfg(test)]
    pub fn requests(&self, api: ApiKey) -> u64 {
        self.requests
            .get(api as i16 as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// The four counters of a [`Traffic`], read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficCounts {
    /// Record-batch bytes appended by Produce (headers included; duplicates not).
    pub bytes_in: u64,
    /// Records appended by Produce.
    pub records_in: u64,
    /// Record-batch bytes sent in Fetch answers (whole batches only).
    pub bytes_out: u64,
    /// Records in those batches.
    pub records_out: u64,
}

/// What a scrape reads from the broker's state besides the counters here: partition
/// offsets, sizes and traffic, committed group offsets and storage totals.
#[derive(Debug, Default)]
pub struct Figures {
    /// Every topic, in the order they are rendered.
    pub topics: Vec<TopicFigures>,
    /// Every committed offset of every group.
    pub committed: Vec<CommittedFigures>,
    /// The storage engine's name.
    pub engine: &'static str,
    /// Partitions open in the engine.
    pub storage_partitions: usize,
    /// Bytes of record batches held, all partitions.
    pub storage_bytes: u64,
    /// Transactions open in the coordinator (Ongoing, PrepareCommit, PrepareAbort).
    pub transactions_ongoing: usize,
    /// Transactions completed since start-up.
    pub transactions: crate::txn::coordinator::TxnCounts,
    /// The log cleaner's totals since start-up.
    pub cleaner: CleanerTotals,
    /// The diskless committer's and fetch cache's figures, in diskless mode.
    pub diskless: Option<DisklessFigures>,
    /// Client-quota counters per configured entity and quota.
    pub quota_entities: Vec<QuotaEntityFigures>,
    /// `queued_max_request_bytes`: its bound, what is held of it, who waits.
    pub request_memory: crate::request_memory::RequestMemoryFigures,
}

/// The diskless data path's figures since start-up (`crate::diskless`).
#[derive(Debug, Default, Clone, Copy)]
pub struct DisklessFigures {
    /// Objects uploaded.
    pub objects: u64,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Commit transactions committed.
    pub transactions: u64,
    /// Time spent committing (registration, upload, transaction), seconds.
    pub commit_seconds: f64,
    /// Bytes held by the fetch range cache now.
    pub cache_bytes: u64,
}

/// What the clients of one configured quota entity did against one of its quotas. The
/// labels are the entity as the operator configured it (`<default>` for a default part,
/// empty for a part the entity does not have), never a client's own id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaEntityFigures {
    /// The quota's config key.
    pub quota: &'static str,
    /// The entity's user part.
    pub user: String,
    /// The entity's client-id part.
    pub client_id: String,
    /// The entity's ip part (an `ip` entity has no other).
    pub ip: String,
    /// Units recorded against the quota (bytes, partitions, microseconds of handler time,
    /// connections).
    pub recorded: u64,
    /// Responses throttled by it.
    pub throttled: u64,
    /// Their throttle time, in milliseconds.
    pub throttle_ms: u64,
}

/// One topic's figures.
#[derive(Debug)]
pub struct TopicFigures {
    /// Topic name.
    pub name: String,
    /// Its partitions, by index.
    pub partitions: Vec<PartitionFigures>,
}

/// One partition's figures.
#[derive(Debug)]
pub struct PartitionFigures {
    /// Its traffic counters.
    pub traffic: TrafficCounts,
    /// First offset still in the log.
    pub log_start_offset: i64,
    /// Offset the next record will get.
    pub log_end_offset: i64,
    /// The last stable offset (below the first open transaction's first offset).
    pub last_stable_offset: i64,
    /// Bytes of record batches it holds.
    pub size_bytes: u64,
    /// Clean and dirty bytes, for a compacted topic's partition.
    pub cleaner: Option<CleanerPartition>,
}

/// One committed offset of a group.
#[derive(Debug)]
pub struct CommittedFigures {
    /// Group id.
    pub group: String,
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The committed offset.
    pub offset: i64,
    /// The partition's high watermark, if it exists.
    pub high_watermark: Option<i64>,
}

/// Kafka's name of an error code (`UNKNOWN_TOPIC_OR_PARTITION`), from kafka-protocol's
/// variant name; `UNKNOWN_CODE_<n>` for codes it does not know.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".into(),
        Some(ResponseError::Unknown(c)) => format!("UNKNOWN_CODE_{c}"),
        Some(e) => screaming_snake(&format!("{e:?}")),
    }
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The client-quota counters per configured entity.
fn render_quota_entities(entities: &[QuotaEntityFigures], out: &mut String) {
    let labels = |e: &QuotaEntityFigures| {
        if e.ip.is_empty() {
            format!(
                "quota=\"{}\",user=\"{}\",client_id=\"{}\"",
                e.quota,
                label(&e.user),
                label(&e.client_id)
            )
        } else {
            format!("quota=\"{}\",ip=\"{}\"", e.quota, label(&e.ip))
        }
    };
    type Family = (&'static str, &'static str, fn(&QuotaEntityFigures) -> u64);
    let families: [Family; 3] = [
        (
            "rafka_quota_entity_throttled_total",
            "Responses (connections, for connection_creation_rate) throttled by a client \
             quota, by the quota and the configured entity whose quota applied (user, \
             client_id, or ip: `<default>` for a default part, empty for a part the entity \
             does not have).",
            |e| e.throttled,
        ),
        (
            "rafka_quota_entity_throttle_time_ms_total",
            "Throttle time given by a client quota, in milliseconds, by the quota and the \
             configured entity whose quota applied.",
            |e| e.throttle_ms,
        ),
        (
            "rafka_quota_entity_recorded_total",
            "Usage recorded against a client quota, by the quota and the configured entity \
             whose quota applied: bytes for producer_byte_rate and consumer_byte_rate, \
             partitions for controller_mutation_rate, microseconds of handler time for \
             request_percentage, connections accepted for connection_creation_rate.",
            |e| e.recorded,
        ),
    ];
    for (name, help, value) in families {
        header(out, name, "counter", help);
        for e in entities {
            let _ = writeln!(out, "{name}{{{}}} {}", labels(e), value(e));
        }
    }
}

/// A label value with `\`, `"` and newlines escaped as the text format requires.
fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &HistogramSnapshot) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0u64;
    for (bound, n) in BUCKET_BOUNDS_SECONDS.iter().zip(&h.buckets) {
        cumulative += n;
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
        );
    }
    cumulative += h.buckets[BUCKET_BOUNDS_SECONDS.len()];
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
    );
    let braces = |s: &str| {
        if s.is_empty() {
            String::new()
        } else {
            format!("{{{s}}}")
        }
    };
    let _ = writeln!(
        out,
        "{name}_sum{} {}",
        braces(labels),
        h.sum_nanos as f64 / 1e9
    );
    let _ = writeln!(out, "{name}_count{} {}", braces(labels), h.count);
}

fn api_name(slot: usize) -> Option<String> {
    ApiKey::try_from(slot as i16).ok().map(|k| format!("{k:?}"))
}

/// `queued_max_request_bytes`: Kafka's `MemoryPoolAvailable` and `MemoryPoolUsed`, and the
/// connections waiting (nothing when there is no bound).
fn render_request_memory(f: &crate::request_memory::RequestMemoryFigures, out: &mut String) {
    let Some(budget) = f.budget else { return };
    header(
        out,
        "rafka_request_memory_used_bytes",
        "gauge",
        "Bytes of queued_max_request_bytes held by requests over 64 KiB being received.",
    );
    let _ = writeln!(out, "rafka_request_memory_used_bytes {}", f.used);
    header(
        out,
        "rafka_request_memory_available_bytes",
        "gauge",
        "Bytes of queued_max_request_bytes free.",
    );
    let _ = writeln!(
        out,
        "rafka_request_memory_available_bytes {}",
        budget.saturating_sub(f.used)
    );
    header(
        out,
        "rafka_request_memory_waiting_connections",
        "gauge",
        "Connections not read until their next request fits queued_max_request_bytes.",
    );
    let _ = writeln!(
        out,
        "rafka_request_memory_waiting_connections {}",
        f.waiting
    );
}

/// Renders every metric in the Prometheus text exposition format (version 0.0.4): the
/// counters of `m`, then `figures`.
pub fn render(m: &Metrics, figures: &Figures) -> String {
    let mut out = String::with_capacity(16 * 1024);

    header(
        &mut out,
        "rafka_requests_total",
        "counter",
        "Requests handled, by API.",
    );
    for (slot, c) in m.requests.iter().enumerate() {
        let n = c.load(Ordering::Relaxed);
        if let (true, Some(api)) = (n > 0, api_name(slot)) {
            let _ = writeln!(out, "rafka_requests_total{{api=\"{api}\"}} {n}");
        }
    }
    header(
        &mut out,
        "rafka_request_errors_total",
        "counter",
        "Error codes in responses (each topic or partition error counts once), by API and error.",
    );
    let errors: Vec<_> = m.errors.lock().iter().map(|(k, v)| (*k, *v)).collect();
    for ((api, code), n) in errors {
        let api = api_name(api as usize).unwrap_or_else(|| api.to_string());
        let _ = writeln!(
            out,
            "rafka_request_errors_total{{api=\"{api}\",error=\"{}\"}} {n}",
            error_name(code)
        );
    }
    header(
        &mut out,
        "rafka_request_duration_seconds",
        "histogram",
        "Time from a request's decoding to its response being ready (long polls included), by API.",
    );
    for (slot, h) in m.latency.iter().enumerate() {
        let s = h.snapshot();
        if let (true, Some(api)) = (s.count > 0, api_name(slot)) {
            histogram(
                &mut out,
                "rafka_request_duration_seconds",
                &format!("api=\"{api}\""),
                &s,
            );
        }
    }

    header(
        &mut out,
        "rafka_connections_open",
        "gauge",
        "Client connections open now.",
    );
    let _ = writeln!(
        out,
        "rafka_connections_open {}",
        m.connections_open.load(Ordering::Relaxed).max(0)
    );
    header(
        &mut out,
        "rafka_connections_accepted_total",
        "counter",
        "Client connections accepted.",
    );
    let _ = writeln!(
        out,
        "rafka_connections_accepted_total {}",
        m.connections_accepted.load(Ordering::Relaxed)
    );
    header(
        &mut out,
        "rafka_fetch_sendfile_bytes_total",
        "counter",
        "Record bytes Fetch answers sent from segment files with sendfile (zero copy).",
    );
    let _ = writeln!(
        out,
        "rafka_fetch_sendfile_bytes_total {}",
        m.fetch_sendfile_bytes.load(Ordering::Relaxed)
    );
    header(
        &mut out,
        "rafka_sasl_total",
        "counter",
        "SASL outcomes on SASL listeners: authenticated, failed, reauthenticated (KIP-368), \
         expired (a connection closed because its session had expired).",
    );
    for o in SaslOutcome::ALL {
        let _ = writeln!(
            out,
            "rafka_sasl_total{{outcome=\"{}\"}} {}",
            o.label(),
            m.sasl[o as usize].load(Ordering::Relaxed)
        );
    }
    header(
        &mut out,
        "rafka_connections_refused_per_ip_total",
        "counter",
        "Connections closed at accept because their address had max_connections_per_ip.",
    );
    let _ = writeln!(
        out,
        "rafka_connections_refused_per_ip_total {}",
        m.connections_refused_per_ip.load(Ordering::Relaxed)
    );
    header(
        &mut out,
        "rafka_quota_throttled_total",
        "counter",
        "Responses throttled by a client quota (KIP-219: throttle_time_ms set and the \
         connection muted), by the quota that was exceeded; for connection_creation_rate, \
         connections closed after their throttle time instead of served (KIP-612).",
    );
    for (i, k) in QuotaKind::ALL.iter().enumerate() {
        let _ = writeln!(
            out,
            "rafka_quota_throttled_total{{quota=\"{}\"}} {}",
            k.name(),
            m.throttled[i].load(Ordering::Relaxed)
        );
    }
    header(
        &mut out,
        "rafka_quota_throttle_time_ms_total",
        "counter",
        "Throttle time given to clients over a quota, in milliseconds, by quota.",
    );
    for (i, k) in QuotaKind::ALL.iter().enumerate() {
        let _ = writeln!(
            out,
            "rafka_quota_throttle_time_ms_total{{quota=\"{}\"}} {}",
            k.name(),
            m.throttle_ms[i].load(Ordering::Relaxed)
        );
    }
    render_quota_entities(&figures.quota_entities, &mut out);
    render_request_memory(&figures.request_memory, &mut out);

    header(
        &mut out,
        "rafka_authorization_failures_total",
        "counter",
        "Requests (or parts of them) the authorizer refused, by API and resource type.",
    );
    let denials: Vec<_> = m
        .authorization_failures
        .lock()
        .iter()
        .map(|(k, v)| (*k, *v))
        .collect();
    for ((api, rt), n) in denials {
        let _ = writeln!(
            out,
            "rafka_authorization_failures_total{{api=\"{api}\",resource_type=\"{rt}\"}} {n}"
        );
    }

    render_topics(&figures.topics, &mut out);
    render_groups(&figures.committed, &mut out);
    render_transactions(figures, &mut out);
    render_storage(figures, &mut out);
    render_cleaner(figures, &mut out);
    render_diskless(figures, &mut out);
    render_process(&mut out);
    out
}

/// Which counter of [`TrafficCounts`] a series shows.
type TrafficField = fn(&TrafficCounts) -> u64;

fn render_topics(topics: &[TopicFigures], out: &mut String) {
    let traffic: [(&str, &str, TrafficField); 4] = [
        (
            "rafka_topic_bytes_in_total",
            "Record-batch bytes appended by Produce (as stored: batch headers included, resent duplicates not).",
            |t| t.bytes_in,
        ),
        (
            "rafka_topic_records_in_total",
            "Records appended by Produce.",
            |t| t.records_in,
        ),
        (
            "rafka_topic_bytes_out_total",
            "Record-batch bytes sent in Fetch responses (whole batches).",
            |t| t.bytes_out,
        ),
        (
            "rafka_topic_records_out_total",
            "Records in the batches sent in Fetch responses.",
            |t| t.records_out,
        ),
    ];
    for (name, help, field) in traffic {
        header(out, name, "counter", help);
        for t in topics {
            let sum: u64 = t.partitions.iter().map(|p| field(&p.traffic)).sum();
            let _ = writeln!(out, "{name}{{topic=\"{}\"}} {sum}", label(&t.name));
        }
    }
    let gauges: [(&str, &str); 4] = [
        (
            "rafka_partition_log_start_offset",
            "First offset still in the log.",
        ),
        (
            "rafka_partition_log_end_offset",
            "Offset the next record will get (the high watermark).",
        ),
        (
            "rafka_partition_size_bytes",
            "Bytes of record batches the partition holds.",
        ),
        (
            "rafka_partition_lso_lag",
            "Offsets between the last stable offset and the high watermark (held back by open transactions).",
        ),
    ];
    let mut rows: [String; 4] = Default::default();
    for t in topics {
        for (i, p) in t.partitions.iter().enumerate() {
            let l = format!("topic=\"{}\",partition=\"{i}\"", label(&t.name));
            let values = [
                p.log_start_offset,
                p.log_end_offset,
                i64::try_from(p.size_bytes).unwrap_or(i64::MAX),
                (p.log_end_offset - p.last_stable_offset).max(0),
            ];
            for ((row, (name, _)), v) in rows.iter_mut().zip(&gauges).zip(values) {
                let _ = writeln!(row, "{name}{{{l}}} {v}");
            }
        }
    }
    for ((name, help), row) in gauges.iter().zip(&rows) {
        header(out, name, "gauge", help);
        out.push_str(row);
    }
}

fn render_groups(committed: &[CommittedFigures], out: &mut String) {
    header(
        out,
        "rafka_group_committed_offset",
        "gauge",
        "Offset a consumer group committed, by partition.",
    );
    let mut lag_rows = String::new();
    for c in committed {
        let l = format!(
            "group=\"{}\",topic=\"{}\",partition=\"{}\"",
            label(&c.group),
            label(&c.topic),
            c.partition
        );
        let offset = c.offset;
        let _ = writeln!(out, "rafka_group_committed_offset{{{l}}} {offset}");
        if let Some(end) = c.high_watermark {
            let _ = writeln!(lag_rows, "rafka_group_lag{{{l}}} {}", (end - offset).max(0));
        }
    }
    header(
        out,
        "rafka_group_lag",
        "gauge",
        "Log end offset minus the group's committed offset (0 when the commit is past the end).",
    );
    out.push_str(&lag_rows);
}

fn render_transactions(figures: &Figures, out: &mut String) {
    header(
        out,
        "rafka_transactions_ongoing",
        "gauge",
        "Transactions open in the transaction coordinator (Ongoing, PrepareCommit, PrepareAbort).",
    );
    let _ = writeln!(
        out,
        "rafka_transactions_ongoing {}",
        figures.transactions_ongoing
    );
    let t = &figures.transactions;
    let counters: [(&str, &str, u64); 3] = [
        (
            "rafka_transaction_commits_total",
            "Transactions committed (markers written on every partition) since start-up.",
            t.commits,
        ),
        (
            "rafka_transaction_aborts_total",
            "Transactions aborted (markers written on every partition) since start-up.",
            t.aborts,
        ),
        (
            "rafka_transaction_coordinator_aborts_total",
            "Aborts the coordinator began itself: a transaction past its timeout or fenced by a new producer instance.",
            t.coordinator_aborts,
        ),
    ];
    for (name, help, v) in counters {
        header(out, name, "counter", help);
        let _ = writeln!(out, "{name} {v}");
    }
}

fn render_storage(figures: &Figures, out: &mut String) {
    let engine = figures.engine;
    header(
        out,
        "rafka_storage_info",
        "gauge",
        "The storage engine in use (value 1).",
    );
    let _ = writeln!(out, "rafka_storage_info{{engine=\"{engine}\"}} 1");
    header(
        out,
        "rafka_storage_partitions",
        "gauge",
        "Partitions open in the engine.",
    );
    let _ = writeln!(
        out,
        "rafka_storage_partitions {}",
        figures.storage_partitions
    );
    header(
        out,
        "rafka_storage_bytes",
        "gauge",
        "Bytes of record batches held, all partitions.",
    );
    let _ = writeln!(out, "rafka_storage_bytes {}", figures.storage_bytes);
    header(
        out,
        "rafka_fsync_total",
        "counter",
        "fsyncs made by log flushes (group commit for acks=all, interval flush), this process.",
    );
    let _ = writeln!(
        out,
        "rafka_fsync_total {}",
        rafka_storage::stats::fsync_count()
    );
    header(
        out,
        "rafka_fsync_duration_seconds",
        "histogram",
        "Duration of those fsyncs.",
    );
    histogram(
        out,
        "rafka_fsync_duration_seconds",
        "",
        &rafka_storage::stats::fsync_latency(),
    );
}

/// The log cleaner: per compacted partition its dirty ratio, dirty and clean bytes and
/// when it was last cleaned; the cleaner's totals (Kafka's `LogCleaner` figures).
fn render_cleaner(figures: &Figures, out: &mut String) {
    let gauges: [(&str, &str); 4] = [
        (
            "rafka_partition_dirty_ratio",
            "Dirty bytes (above the clean offset) over all bytes, compacted partitions.",
        ),
        (
            "rafka_partition_dirty_bytes",
            "Bytes above the clean offset, compacted partitions.",
        ),
        (
            "rafka_partition_clean_bytes",
            "Bytes below the clean offset, compacted partitions.",
        ),
        (
            "rafka_partition_last_cleaned_timestamp_seconds",
            "When the cleaner last compacted the partition (Unix seconds; only once it has).",
        ),
    ];
    let mut rows: [String; 4] = Default::default();
    for t in &figures.topics {
        for (i, p) in t.partitions.iter().enumerate() {
            let Some(c) = &p.cleaner else { continue };
            let l = format!("topic=\"{}\",partition=\"{i}\"", label(&t.name));
            let _ = writeln!(rows[0], "{}{{{l}}} {}", gauges[0].0, c.dirty_ratio());
            let _ = writeln!(rows[1], "{}{{{l}}} {}", gauges[1].0, c.dirty_bytes);
            let _ = writeln!(rows[2], "{}{{{l}}} {}", gauges[2].0, c.clean_bytes);
            if let Some(ms) = c.last_cleaned_ms {
                let _ = writeln!(rows[3], "{}{{{l}}} {}", gauges[3].0, ms as f64 / 1e3);
            }
        }
    }
    for ((name, help), row) in gauges.iter().zip(&rows) {
        header(out, name, "gauge", help);
        out.push_str(row);
    }
    let c = &figures.cleaner;
    let series: [(&str, &str, &str, f64); 8] = [
        (
            "rafka_log_cleaner_runs_total",
            "counter",
            "Compactions the log cleaner ran (failed ones included).",
            c.runs as f64,
        ),
        (
            "rafka_log_cleaner_bytes_read_total",
            "counter",
            "Bytes the log cleaner read.",
            c.bytes_read as f64,
        ),
        (
            "rafka_log_cleaner_bytes_written_total",
            "counter",
            "Bytes the log cleaner wrote.",
            c.bytes_written as f64,
        ),
        (
            "rafka_log_cleaner_records_removed_total",
            "counter",
            "Records the log cleaner removed.",
            c.records_removed as f64,
        ),
        (
            "rafka_log_cleaner_seconds_total",
            "counter",
            "Time the log cleaner spent compacting.",
            c.seconds,
        ),
        (
            "rafka_log_cleaner_errors_total",
            "counter",
            "Compactions that failed.",
            c.errors as f64,
        ),
        (
            "rafka_log_cleaner_last_error_timestamp_seconds",
            "gauge",
            "When a compaction last failed (Unix seconds; 0 if none has).",
            c.last_error_ms as f64 / 1e3,
        ),
        (
            "rafka_log_cleaner_max_dirty_percent",
            "gauge",
            "Dirty ratio, in percent, of the partition the cleaner last chose (Kafka's max-dirty-percent).",
            c.max_dirty_percent,
        ),
    ];
    for (name, kind, help, v) in series {
        header(out, name, kind, help);
        let _ = writeln!(out, "{name} {v}");
    }
}

/// The diskless data path: objects, bytes and commit transactions (their ratio to bytes
/// is the PUTs and transactions per GB), time committing, the fetch cache's size.
fn render_diskless(figures: &Figures, out: &mut String) {
    let Some(d) = &figures.diskless else { return };
    let series: [(&str, &str, &str, f64); 5] = [
        (
            "rafka_diskless_objects_total",
            "counter",
            "Objects this broker uploaded (one per commit).",
            d.objects as f64,
        ),
        (
            "rafka_diskless_object_bytes_total",
            "counter",
            "Bytes of the objects this broker uploaded.",
            d.bytes as f64,
        ),
        (
            "rafka_diskless_commits_total",
            "counter",
            "PostgreSQL commit transactions this broker completed.",
            d.transactions as f64,
        ),
        (
            "rafka_diskless_commit_seconds_total",
            "counter",
            "Time spent committing objects (registration, upload, transaction).",
            d.commit_seconds,
        ),
        (
            "rafka_diskless_fetch_cache_bytes",
            "gauge",
            "Bytes of object ranges held by the fetch cache.",
            d.cache_bytes as f64,
        ),
    ];
    for (name, kind, help, v) in series {
        header(out, name, kind, help);
        let _ = writeln!(out, "{name} {v}");
    }
}

/// Resident set size and open descriptors from `/proc/self` (Linux); left out elsewhere.
fn render_process(out: &mut String) {
    let rss_kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        });
    if let Some(kib) = rss_kib {
        header(
            out,
            "rafka_process_resident_memory_bytes",
            "gauge",
            "Resident memory of the broker process.",
        );
        let _ = writeln!(out, "rafka_process_resident_memory_bytes {}", kib * 1024);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        header(
            out,
            "rafka_process_open_fds",
            "gauge",
            "File descriptors the broker process has open (sockets and files).",
        );
        // The directory handle itself is one of them.
        let n = fds.count().saturating_sub(1);
        let _ = writeln!(out, "rafka_process_open_fds {n}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(2), "CORRUPT_MESSAGE");
        assert_eq!(error_name(9999), "UNKNOWN_CODE_9999");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn requests_and_errors_are_counted_per_api() {
        let m = Metrics::default();
        // A produce answer with two partitions at UNKNOWN_TOPIC_OR_PARTITION, one at 0.
        m.request_done(ApiKey::Produce, Duration::from_millis(2), |f| {
            for code in [3, 0, 3] {
                f(code)
            }
        });
        // acks=0: nothing answered.
        m.request_done(ApiKey::Produce, Duration::from_millis(2), |_| {});
        assert_eq!(m.requests(ApiKey::Produce), 2);
        assert_eq!(m.requests(ApiKey::Fetch), 0);
        let errors = m.errors.lock().clone();
        assert_eq!(errors, BTreeMap::from([((0, 3), 2)]));
        assert_eq!(m.latency[0].snapshot().count, 2);
    }

    #[test]
    fn figures_render_per_topic_partition_and_group() {
        let partition = |start, end, bytes_in| PartitionFigures {
            traffic: TrafficCounts {
                bytes_in,
                records_in: 1,
                ..TrafficCounts::default()
            },
            log_start_offset: start,
            log_end_offset: end,
            last_stable_offset: end - 1,
            size_bytes: 100,
            cleaner: None,
        };
        let mut compacted = partition(2, 4, 7);
        compacted.cleaner = Some(CleanerPartition {
            clean_bytes: 75,
            dirty_bytes: 25,
            last_cleaned_ms: Some(1_500),
        });
        let figures = Figures {
            topics: vec![TopicFigures {
                name: "t\"x".into(),
                partitions: vec![partition(0, 10, 5), compacted],
            }],
            committed: vec![
                CommittedFigures {
                    group: "g".into(),
                    topic: "t\"x".into(),
                    partition: 0,
                    offset: 6,
                    high_watermark: Some(10),
                },
                CommittedFigures {
                    group: "g".into(),
                    topic: "gone".into(),
                    partition: 0,
                    offset: 1,
                    high_watermark: None,
                },
            ],
            engine: "memory",
            storage_partitions: 2,
            storage_bytes: 200,
            transactions_ongoing: 3,
            transactions: crate::txn::coordinator::TxnCounts {
                commits: 5,
                aborts: 4,
                coordinator_aborts: 1,
            },
            cleaner: CleanerTotals {
                runs: 3,
                bytes_read: 1000,
                errors: 1,
                last_error_ms: 2_000,
                max_dirty_percent: 62.5,
                ..CleanerTotals::default()
            },
            diskless: Some(DisklessFigures {
                objects: 3,
                bytes: 3000,
                ..DisklessFigures::default()
            }),
            quota_entities: vec![QuotaEntityFigures {
                quota: "producer_byte_rate",
                user: "<default>".into(),
                client_id: "a\"b".into(),
                ip: String::new(),
                recorded: 10,
                throttled: 2,
                throttle_ms: 1_500,
            }],
            request_memory: crate::request_memory::RequestMemoryFigures {
                budget: Some(1000),
                used: 300,
                waiting: 2,
            },
        };
        let out = render(&Metrics::default(), &figures);
        for line in [
            "rafka_topic_bytes_in_total{topic=\"t\\\"x\"} 12\n",
            "rafka_topic_records_in_total{topic=\"t\\\"x\"} 2\n",
            "rafka_partition_log_start_offset{topic=\"t\\\"x\",partition=\"1\"} 2\n",
            "rafka_partition_log_end_offset{topic=\"t\\\"x\",partition=\"0\"} 10\n",
            "rafka_group_committed_offset{group=\"g\",topic=\"gone\",partition=\"0\"} 1\n",
            "rafka_diskless_objects_total 3\n",
            "rafka_diskless_object_bytes_total 3000\n",
            "rafka_group_lag{group=\"g\",topic=\"t\\\"x\",partition=\"0\"} 4\n",
            "rafka_storage_info{engine=\"memory\"} 1\n",
            "rafka_storage_partitions 2\n",
            "rafka_partition_lso_lag{topic=\"t\\\"x\",partition=\"1\"} 1\n",
            "rafka_transactions_ongoing 3\n",
            "rafka_transaction_commits_total 5\n",
            "rafka_transaction_aborts_total 4\n",
            "rafka_transaction_coordinator_aborts_total 1\n",
            "rafka_storage_bytes 200\n",
            "rafka_partition_dirty_ratio{topic=\"t\\\"x\",partition=\"1\"} 0.25\n",
            "rafka_partition_dirty_bytes{topic=\"t\\\"x\",partition=\"1\"} 25\n",
            "rafka_partition_clean_bytes{topic=\"t\\\"x\",partition=\"1\"} 75\n",
            "rafka_partition_last_cleaned_timestamp_seconds{topic=\"t\\\"x\",partition=\"1\"} 1.5\n",
            "rafka_log_cleaner_runs_total 3\n",
            "rafka_log_cleaner_bytes_read_total 1000\n",
            "rafka_log_cleaner_errors_total 1\n",
            "rafka_log_cleaner_last_error_timestamp_seconds 2\n",
            "rafka_log_cleaner_max_dirty_percent 62.5\n",
            "rafka_quota_entity_throttled_total{quota=\"producer_byte_rate\",user=\"<default>\",\
             client_id=\"a\\\"b\"} 2\n",
            "rafka_quota_entity_throttle_time_ms_total{quota=\"producer_byte_rate\",\
             user=\"<default>\",client_id=\"a\\\"b\"} 1500\n",
            "rafka_quota_entity_recorded_total{quota=\"producer_byte_rate\",user=\"<default>\",\
             client_id=\"a\\\"b\"} 10\n",
            "rafka_request_memory_used_bytes 300\n",
            "rafka_request_memory_available_bytes 700\n",
            "rafka_request_memory_waiting_connections 2\n",
        ] {
            assert!(out.contains(line), "{line} missing from\n{out}");
        }
        // No lag for a partition that no longer exists.
        assert!(!out.contains("rafka_group_lag{group=\"g\",topic=\"gone\""));
        // Cleaner figures only for compacted partitions.
        assert!(!out.contains("rafka_partition_dirty_ratio{topic=\"t\\\"x\",partition=\"0\"}"));
    }

    #[test]
    fn histograms_render_cumulative_buckets() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(10));
        h.observe(Duration::from_millis(7));
        let mut out = String::new();
        histogram(&mut out, "x_seconds", "api=\"Fetch\"", &h.snapshot());
        assert!(out.contains("x_seconds_bucket{api=\"Fetch\",le=\"0.00005\"} 1\n"));
        assert!(out.contains("x_seconds_bucket{api=\"Fetch\",le=\"0.005\"} 1\n"));
        assert!(out.contains("x_seconds_bucket{api=\"Fetch\",le=\"0.01\"} 2\n"));
        assert!(out.contains("x_seconds_bucket{api=\"Fetch\",le=\"+Inf\"} 2\n"));
        assert!(out.contains("x_seconds_count{api=\"Fetch\"} 2\n"));
    }
}
