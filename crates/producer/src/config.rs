//! Producer settings and the builder. Names follow the Java client (`linger.ms` →
//! `linger`, `batch.size` → `batch_size`, ...).

use std::time::Duration;

use kafka_protocol::records::Compression;
use rafka_client::ClientConfig;

use crate::error::ProducerError;
use crate::producer::Producer;

/// Acknowledgement level (`acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// `acks=0`: the broker does not answer; offsets are unknown.
    None,
    /// `acks=1`: the leader has appended.
    Leader,
    /// `acks=all` (-1): every in-sync replica has it (on Rafka: fsynced when configured).
    All,
}

impl Acks {
    pub(crate) fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// Everything a [`Producer`] is configured with.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Connection, metadata and retry settings shared with the other clients.
    pub client: ClientConfig,
    /// Wait this long for more records before sending a batch that is not full.
    pub linger: Duration,
    /// Bytes of records per partition batch before it is sent without waiting.
    pub batch_size: usize,
    /// Bytes of records buffered (unsent or unacknowledged) before `send` waits.
    pub buffer_memory: usize,
    /// Longest `send` waits for room in the buffer or for topic metadata.
    pub max_block: Duration,
    /// Batch compression.
    pub compression: Compression,
    /// Acknowledgement level.
    pub acks: Acks,
    /// Attempts after the first for a batch that failed retriably.
    pub retries: u32,
    /// Longest a record may take from `send` to its answer, retries included
    /// (`delivery.timeout.ms`, 120 s as in the Java client): past it the record fails with
    /// [`ProducerError::DeliveryTimeout`] instead of being retried again.
    ///
    /// [`ProducerError::DeliveryTimeout`]: crate::ProducerError::DeliveryTimeout
    pub delivery_timeout: Duration,
    /// Batches in flight per partition (at most 5, as Kafka's idempotence window).
    pub max_in_flight: usize,
    /// Idempotence (InitProducerId + sequence numbers). Needs `acks=all`; switched off
    /// with a lower `acks`.
    pub idempotence: bool,
    /// `transactional.id`: makes the producer transactional (needs idempotence and
    /// `acks=all`); call [`Producer::init_transactions`] before the first transaction.
    pub transactional_id: Option<String>,
    /// `transaction.timeout.ms` (60 s as in the Java client): the coordinator aborts a
    /// transaction left open longer.
    pub transaction_timeout: Duration,
}

impl Default for ProducerConfig {
    fn default() -> ProducerConfig {
        let mut client = ClientConfig::new("127.0.0.1:9092");
        client.allow_auto_topic_creation = true;
        ProducerConfig {
            client,
            linger: Duration::from_millis(5),
            batch_size: 16 * 1024,
            buffer_memory: 32 * 1024 * 1024,
            max_block: Duration::from_secs(60),
            compression: Compression::None,
            acks: Acks::All,
            retries: 10,
            delivery_timeout: Duration::from_secs(120),
            max_in_flight: 5,
            idempotence: true,
            transactional_id: None,
            transaction_timeout: Duration::from_secs(60),
        }
    }
}

/// Builds a [`Producer`]: `Producer::builder().bootstrap("host:9092").build().await?`.
#[derive(Debug, Clone, Default)]
pub struct ProducerBuilder {
    cfg: ProducerConfig,
}

impl ProducerBuilder {
    /// Bootstrap addresses (comma-separated `host:port`).
    pub fn bootstrap(mut self, addrs: &str) -> Self {
        self.cfg.client.bootstrap = ClientConfig::new(addrs).bootstrap;
        self
    }
    /// `client.id`.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.cfg.client.client_id = id.into();
        self
    }
    /// `linger.ms`.
    pub fn linger(mut self, d: Duration) -> Self {
        self.cfg.linger = d;
        self
    }
    /// `batch.size`.
    pub fn batch_size(mut self, bytes: usize) -> Self {
        self.cfg.batch_size = bytes;
        self
    }
    /// `buffer.memory`.
    pub fn buffer_memory(mut self, bytes: usize) -> Self {
        self.cfg.buffer_memory = bytes;
        self
    }
    /// `max.block.ms`.
    pub fn max_block(mut self, d: Duration) -> Self {
        self.cfg.max_block = d;
        self
    }
    /// `compression.type`.
    pub fn compression(mut self, c: Compression) -> Self {
        self.cfg.compression = c;
        self
    }
    /// `acks`.
    pub fn acks(mut self, a: Acks) -> Self {
        self.cfg.acks = a;
        self
    }
    /// `retries`.
    pub fn retries(mut self, n: u32) -> Self {
        self.cfg.retries = n;
        self
    }
    /// `delivery.timeout.ms`.
    pub fn delivery_timeout(mut self, d: Duration) -> Self {
        self.cfg.delivery_timeout = d;
        self
    }
    /// `max.in.flight.requests.per.connection`, per partition here (1..=5).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.cfg.max_in_flight = n;
        self
    }
    /// `enable.idempotence`.
    pub fn idempotence(mut self, on: bool) -> Self {
        self.cfg.idempotence = on;
        self
    }
    /// `transactional.id`.
    pub fn transactional_id(mut self, id: impl Into<String>) -> Self {
        self.cfg.transactional_id = Some(id.into());
        self
    }
    /// `transaction.timeout.ms`.
    pub fn transaction_timeout(mut self, d: Duration) -> Self {
        self.cfg.transaction_timeout = d;
        self
    }
    /// `request.timeout.ms`.
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.cfg.client.request_timeout = d;
        self
    }
    /// `security.protocol` with its `ssl.*` and `sasl.*` settings.
    pub fn security(mut self, s: rafka_client::SecurityConfig) -> Self {
        self.cfg.client.security = s;
        self
    }
    /// Replaces the whole client config (bootstrap, timeouts, backoff).
    pub fn client_config(mut self, c: ClientConfig) -> Self {
        self.cfg.client = c;
        self
    }
    /// The configuration so far.
    pub fn config(&self) -> &ProducerConfig {
        &self.cfg
    }

    /// Connects, and with idempotence gets a producer id.
    pub async fn build(self) -> Result<Producer, ProducerError> {
        let mut cfg = self.cfg;
        if !(1..=5).contains(&cfg.max_in_flight) {
            return Err(ProducerError::Config(format!(
                "max_in_flight must be 1..=5, got {}",
                cfg.max_in_flight
            )));
        }
        if cfg.batch_size == 0 || cfg.buffer_memory < cfg.batch_size {
            return Err(ProducerError::Config(
                "batch_size must be > 0 and <= buffer_memory".into(),
            ));
        }
        if let Some(id) = &cfg.transactional_id {
            if id.is_empty() {
                return Err(ProducerError::Config(
                    "transactional_id must not be empty".into(),
                ));
            }
            if !cfg.idempotence || cfg.acks != Acks::All {
                return Err(ProducerError::Config(
                    "transactional_id needs idempotence and acks=all".into(),
                ));
            }
            if cfg.transaction_timeout.is_zero()
                || cfg.transaction_timeout.as_millis() > i32::MAX as u128
            {
                return Err(ProducerError::Config(
                    "transaction_timeout must be 1 ms ..= i32::MAX ms".into(),
                ));
            }
        }
        if cfg.acks != Acks::All {
            cfg.idempotence = false;
        }
        Producer::start(cfg).await
    }
}
