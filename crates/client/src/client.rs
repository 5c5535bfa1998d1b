//! [`Client`]: bootstrap, the connection to each broker, the metadata cache and retries.
//!
//! Thread-safety: `Client` is `Clone + Send + Sync`; clones share connections and
//! metadata. Internal locks are `std::sync::Mutex`es held for a few instructions and never
//! across an `.await`.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, TopicName};
use kafka_protocol::protocol::{Request, StrBytes};
use tokio::task::AbortHandle;
use tokio_rustls::rustls;

use crate::connection::{BrokerConnection, ConnectionSettings};
use crate::error::ClientError;
use crate::metadata::{Metadata, TopicMetadata};
use crate::security::SecurityConfig;

/// Versions of Metadata this client speaks (v4 adds `allow_auto_topic_creation`).
const METADATA_VERSIONS: (i16, i16) = (4, 12);

/// How a [`Client`] connects and retries. Field names follow the Java client's settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` addresses to bootstrap from (`bootstrap.servers`).
    pub bootstrap: Vec<String>,
    /// Sent in every request header (`client.id`).
    pub client_id: String,
    /// Wait for a TCP connection and the ApiVersions answer.
    pub connect_timeout: Duration,
    /// Wait for any one response (`request.timeout.ms`).
    pub request_timeout: Duration,
    /// Attempts after the first for retriable failures of idempotent calls.
    pub retries: u32,
    /// First backoff between attempts (`retry.backoff.ms`); doubles up to `retry_backoff_max`.
    pub retry_backoff: Duration,
    /// Largest backoff (`retry.backoff.max.ms`).
    pub retry_backoff_max: Duration,
    /// Metadata is refreshed at least this often (`metadata.max.age.ms`).
    pub metadata_max_age: Duration,
    /// Requests in flight per connection before callers wait.
    pub max_in_flight_per_connection: usize,
    /// Whether Metadata requests may create missing topics (producers set it).
    pub allow_auto_topic_creation: bool,
    /// `security.protocol`, the `ssl.*` and the `sasl.*` settings.
    pub security: SecurityConfig,
}

impl ClientConfig {
    /// Defaults, bootstrapping from `bootstrap` (comma-separated `host:port` list).
    pub fn new(bootstrap: &str) -> ClientConfig {
        ClientConfig {
            bootstrap: bootstrap
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            client_id: "rafka".into(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            retries: 5,
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            metadata_max_age: Duration::from_secs(300),
            max_in_flight_per_connection: 64,
            allow_auto_topic_creation: false,
            security: SecurityConfig::default(),
        }
    }

    fn settings(&self, tls: Option<Arc<rustls::ClientConfig>>) -> ConnectionSettings {
        ConnectionSettings {
            client_id: self.client_id.clone(),
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            max_in_flight: self.max_in_flight_per_connection,
            tls,
            sasl: self
                .security
                .sasl
                .clone()
                .filter(|_| self.security.protocol.uses_sasl()),
        }
    }

    /// The backoff before attempt `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        (self.retry_backoff * factor).min(self.retry_backoff_max)
    }
}

struct Inner {
    cfg: ClientConfig,
    /// What each new connection is opened with (the TLS configuration built once).
    settings: ConnectionSettings,
    /// Connections by broker address.
    conns: Mutex<HashMap<String, Arc<BrokerConnection>>>,
    metadata: Mutex<Metadata>,
    /// Topics whose metadata the timer keeps fresh.
    tracked: Mutex<HashSet<String>>,
    refresher: Mutex<Option<AbortHandle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(h) = self.refresher.get_mut().ok().and_then(|h| h.take()) {
            h.abort();
        }
    }
}

/// A connection to a Kafka cluster, shared by producer, consumer and admin code.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bootstrap", &self.inner.cfg.bootstrap)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the first reachable bootstrap address, negotiates versions and fetches
    /// the broker list. Fails with [`ClientError::NoBrokerReachable`] when no address answers
    /// within `connect_timeout` after `retries` rounds.
    pub async fn connect(cfg: ClientConfig) -> Result<Client, ClientError> {
        if cfg.bootstrap.is_empty() {
            return Err(ClientError::Invalid("empty bootstrap list".into()));
        }
        let tls = cfg.security.prepare()?;
        let client = Client {
            inner: Arc::new(Inner {
                settings: cfg.settings(tls),
                cfg,
                conns: Mutex::new(HashMap::new()),
                metadata: Mutex::new(Metadata::default()),
                tracked: Mutex::new(HashSet::new()),
                refresher: Mutex::new(None),
            }),
        };
        client.refresh_metadata(Some(&[])).await?;
        let weak = Arc::downgrade(&client.inner);
        let every = client.inner.cfg.metadata_max_age;
        let task = tokio::spawn(refresh_loop(weak, every));
        *client.inner.refresher.lock().expect("refresher lock") = Some(task.abort_handle());
        Ok(client)
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }

    /// A snapshot of the cached metadata.
    pub fn metadata(&self) -> Metadata {
        self.inner.metadata.lock().expect("metadata lock").clone()
    }

    /// The connection to `addr`, opening one when there is none or the old one failed.
    pub async fn connection_to(&self, addr: &str) -> Result<Arc<BrokerConnection>, ClientError> {
        if let Some(c) = self.inner.conns.lock().expect("conns lock").get(addr) {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let conn = Arc::new(BrokerConnection::connect(addr, self.inner.settings.clone()).await?);
        let mut conns = self.inner.conns.lock().expect("conns lock");
        // Another task may have connected meanwhile; keep the live one.
        match conns.get(addr) {
            Some(c) if !c.is_closed() => Ok(c.clone()),
            _ => {
                conns.insert(addr.to_string(), conn.clone());
                Ok(conn)
            }
        }
    }

    /// The connection to broker `id` (refreshing metadata when its address is unknown).
    pub async fn broker(&self, id: i32) -> Result<Arc<BrokerConnection>, ClientError> {
        let known = self.addr_of(id);
        let addr = match known {
            Some(a) => a,
            None => {
                self.refresh_metadata(Some(&[])).await?;
                self.addr_of(id).ok_or_else(|| {
                    ClientError::Invalid(format!("broker {id} is not in the cluster metadata"))
                })?
            }
        };
        self.connection_to(&addr).await
    }

    fn addr_of(&self, id: i32) -> Option<String> {
        self.inner
            .metadata
            .lock()
            .expect("metadata lock")
            .brokers
            .get(&id)
            .cloned()
    }

    /// Any live connection: an open one, else the known brokers, else the bootstrap list.
    pub async fn any_broker(&self) -> Result<Arc<BrokerConnection>, ClientError> {
        let open = self
            .inner
            .conns
            .lock()
            .expect("conns lock")
            .values()
            .find(|c| !c.is_closed())
            .cloned();
        if let Some(c) = open {
            return Ok(c);
        }
        let mut candidates: Vec<String> = self
            .inner
            .metadata
            .lock()
            .expect("metadata lock")
            .brokers
            .values()
            .cloned()
            .collect();
        candidates.sort();
        for b in &self.inner.cfg.bootstrap {
            if !candidates.contains(b) {
                candidates.push(b.clone());
            }
        }
        let mut last = String::from("no address");
        for round in 0..=self.inner.cfg.retries.min(2) {
            if round > 0 {
                tokio::time::sleep(self.inner.cfg.backoff(round)).await;
            }
            for addr in &candidates {
                match self.connection_to(addr).await {
                    Ok(c) => return Ok(c),
                    Err(ClientError::Connect { reason, .. }) => last = reason,
                    // A refused certificate or credential fails the same way on every
                    // broker and every retry: report it rather than trying on.
                    Err(e) if !e.is_retriable() => return Err(e),
                    Err(e) => last = e.to_string(),
                }
            }
        }
        Err(ClientError::NoBrokerReachable {
            addresses: self.inner.cfg.bootstrap.join(","),
            reason: last,
        })
    }

    /// Sends `req` on `conn` at the highest version in `ours` the broker serves.
    pub async fn call_on<R: Request>(
        &self,
        conn: &BrokerConnection,
        req: &R,
        ours: (i16, i16),
    ) -> Result<R::Response, ClientError> {
        let v = conn.version_for::<R>(ours)?;
        conn.call_version(req, v).await
    }

    /// Sends `req` to broker `id`; one attempt.
    pub async fn call_broker<R: Request>(
        &self,
        id: i32,
        req: &R,
        ours: (i16, i16),
    ) -> Result<R::Response, ClientError> {
        let conn = self.broker(id).await?;
        self.call_on(&conn, req, ours).await
    }

    /// Sends `req` to any broker, retrying retriable failures with backoff.
    pub async fn call_any<R: Request>(
        &self,
        req: &R,
        ours: (i16, i16),
    ) -> Result<R::Response, ClientError> {
        self.retry(|| async {
            let conn = self.any_broker().await?;
            self.call_on(&conn, req, ours).await
        })
        .await
    }

    /// Runs `attempt` until it succeeds, fails with a non-retriable error, or `retries`
    /// retries have failed; sleeps with exponential backoff in between and drops cached
    /// metadata when the error says it is stale.
    pub async fn retry<T, F, Fut>(&self, mut attempt: F) -> Result<T, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let mut n = 0;
        loop {
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retriable() && n < self.inner.cfg.retries => {
                    n += 1;
                    tracing::debug!(error = %e, attempt = n, "retrying");
                    if e.invalidates_metadata() {
                        self.invalidate_all();
                    }
                    tokio::time::sleep(self.inner.cfg.backoff(n)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Fetches metadata for `topics` (`None`: every topic; `Some(&[])`: brokers only) and
    /// merges it into the cache. Returns the topics in the response.
    pub async fn refresh_metadata(
        &self,
        topics: Option<&[String]>,
    ) -> Result<Vec<TopicMetadata>, ClientError> {
        let mut req = MetadataRequest::default();
        req.topics = topics.map(|ts| {
            ts.iter()
                .map(|t| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
                })
                .collect()
        });
        req.allow_auto_topic_creation = self.inner.cfg.allow_auto_topic_creation;
        let resp = self.call_any(&req, METADATA_VERSIONS).await?;
        Ok(self
            .inner
            .metadata
            .lock()
            .expect("metadata lock")
            .merge(&resp))
    }

    /// Metadata of `topic`, from the cache or the broker. A topic the broker does not know
    /// is retried (it may be being created) and then reported as
    /// [`ClientError::UnknownTopic`].
    pub async fn topic(&self, topic: &str) -> Result<TopicMetadata, ClientError> {
        self.inner
            .tracked
            .lock()
            .expect("tracked lock")
            .insert(topic.to_string());
        if let Some(t) = self.cached_topic(topic) {
            return Ok(t);
        }
        let name = [topic.to_string()];
        self.retry(|| async {
            let got = self.refresh_metadata(Some(&name)).await?;
            match got.into_iter().find(|t| t.name == topic) {
                Some(t) if t.error_code == 0 && !t.partitions.is_empty() => Ok(t),
                Some(t) if t.error_code != 0 => {
                    ClientError::check(t.error_code, || format!("metadata for {topic:?}"))?;
                    Err(ClientError::UnknownTopic(topic.to_string()))
                }
                _ => Err(ClientError::UnknownTopic(topic.to_string())),
            }
        })
        .await
    }

    /// The cached metadata of `topic`, without asking the broker.
    pub fn cached_topic(&self, topic: &str) -> Option<TopicMetadata> {
        self.inner
            .metadata
            .lock()
            .expect("metadata lock")
            .topics
            .get(topic)
            .cloned()
    }

    /// The leader of a partition (refreshing metadata when unknown).
    pub async fn leader(&self, topic: &str, partition: i32) -> Result<i32, ClientError> {
        let cached = self
            .inner
            .metadata
            .lock()
            .expect("metadata lock")
            .leader(topic, partition);
        if let Some(l) = cached {
            return Ok(l);
        }
        self.invalidate(topic);
        let t = self.topic(topic).await?;
        t.partitions
            .iter()
            .find(|p| p.partition == partition && p.leader >= 0)
            .map(|p| p.leader)
            .ok_or_else(|| ClientError::Kafka {
                context: format!("leader of {topic}-{partition}"),
                error: kafka_protocol::ResponseError::LeaderNotAvailable,
            })
    }

    /// Drops `topic` from the cache so the next lookup asks the broker (after
    /// NOT_LEADER_OR_FOLLOWER or UNKNOWN_TOPIC_OR_PARTITION).
    pub fn invalidate(&self, topic: &str) {
        self.inner
            .metadata
            .lock()
            .expect("metadata lock")
            .topics
            .remove(topic);
    }

    fn invalidate_all(&self) {
        self.inner
            .metadata
            .lock()
            .expect("metadata lock")
            .topics
            .clear();
    }
}

/// Refreshes the tracked topics every `every` while the client lives.
async fn refresh_loop(inner: Weak<Inner>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let client = Client { inner };
        let topics: Vec<String> = client
            .inner
            .tracked
            .lock()
            .expect("tracked lock")
            .iter()
            .cloned()
            .collect();
        if let Err(e) = client.refresh_metadata(Some(&topics)).await {
            tracing::debug!(error = %e, "periodic metadata refresh failed");
        }
    }
}
