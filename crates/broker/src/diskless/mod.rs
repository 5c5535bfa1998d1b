//! Diskless mode (`cluster.mode: diskless`): stateless brokers over object storage and
//! PostgreSQL, the design of KIP-1150.
//!
//! A produced batch is acknowledged only once it is both in an object (written once,
//! under a key no other write uses) and committed in PostgreSQL, which is the one place
//! offsets are decided. Any broker accepts produce and fetch for any partition. The
//! single-node storage engines (`storage:`) are untouched by this mode; the broker keeps
//! one for its internal topics.
//!
//! The modules, each with one job:
//! - `config.rs` — the `cluster:` section.
//! - `objects.rs` — the object store (`s3://` or `file://`) and object keys.
//! - `catalog.rs` — topics as PostgreSQL holds them, and this broker's cached view.
//! - `membership.rs` — this broker's lease in `rafka_brokers`, the live brokers.
//! - `leadership.rs` — partition leaders and group coordinators over the live brokers
//!   (rendezvous hashing: the same answer on every broker, no coordination).
//! - `pg.rs` — PostgreSQL connections and `schema.sql`, the tables every broker shares:
//!   brokers and their leases, topics, partitions (high watermark, log start), objects,
//!   the batch index, idempotent producers, groups and committed offsets.
//! - `commit.rs` — this broker's committer: the produce path.
//! - `order.rs` — a connection's produce requests reach the committer in request order.
//! - `fetch.rs` — high watermarks (the `rafka_hw` listener), the batch index, reads.
//! - `cache.rs` — the bounded cache of object byte ranges fetches read through.
//! - `producers.rs` — producer ids unique across the cluster.
//! - `sweeper.rs` — deletes uncommitted and unreferenced objects after the grace period.
//!
//! The path of a produce: the API handler validates batches as in single-node mode, then
//! hands them to this broker's committer, which gathers one `commit_interval_ms` (or
//! `commit_max_bytes`) of requests across all partitions into one object, uploads it,
//! then in one PostgreSQL transaction assigns offsets, checks idempotent sequences,
//! records the batch index rows and moves the high watermarks — and only then answers.
//! Fetches resolve offsets through the batch index and read byte ranges of objects
//! through a bounded cache, writing base offsets into the batch headers on the way out.

pub mod cache;
pub mod catalog;
pub mod commit;
pub mod config;
pub mod fetch;
pub mod groups;
pub mod leadership;
pub mod membership;
pub mod objects;
pub mod order;
pub mod pg;
pub mod producers;
pub mod sweeper;

/// The tests' PostgreSQL server (one per test process, a database per test), shared with
/// the integration tests.
#[cfg(test)]
#[path = "../../../../tests/support/postgres.rs"]
pub(crate) mod test_postgres;

use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;

pub use config::{ClusterConfig, ClusterMode};

/// What can go wrong in diskless mode; mapped to Kafka error codes in `api/`.
#[derive(Debug, thiserror::Error)]
pub enum DisklessError {
    /// The `cluster:` section cannot be used (bad URL, schema mismatch).
    #[error("cluster config: {0}")]
    Config(String),
    /// PostgreSQL refused or could not be reached.
    #[error("coordinator: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The object store refused or could not be reached.
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// The broker is stopping.
    #[error("shutting down")]
    ShuttingDown,
}

/// This broker's handle on the diskless cluster (`Shared::diskless`).
pub struct Diskless {
    /// The `cluster:` section.
    pub config: ClusterConfig,
    /// This broker's node id (`broker.node_id`), unique in the cluster.
    pub node_id: i32,
    /// The cluster id, named by the first broker that applied the schema.
    pub cluster_id: String,
    /// Queries that need no transaction of their own.
    pub pg: pg::SharedClient,
    /// Where objects go.
    pub store: Arc<dyn ObjectStore>,
    /// Key prefix of this cluster's objects.
    pub prefix: ObjectPath,
    /// The topics.
    pub catalog: catalog::Catalog,
    /// This broker's committer (the produce path).
    pub committer: commit::Committer,
    /// Log start offsets and high watermarks, kept current by the `rafka_hw` listener.
    pub marks: Arc<fetch::Watermarks>,
    /// The batch index rows read for fetches.
    pub index: fetch::BatchIndex,
    /// Object byte ranges read for fetches (`fetch_cache_bytes`).
    pub ranges: cache::RangeCache,
    /// Idempotent producer ids.
    pub producer_ids: producers::ProducerIds,
    /// The listener task, stopped with this handle.
    _listener: fetch::AbortOnDrop,
    /// This broker's lease and the live brokers.
    pub membership: membership::Membership,
    /// Groups' committed offsets, and this broker's claims on groups.
    pub group_offsets: groups::GroupOffsets,
    /// Each connection's produce requests reach the committer in request order.
    pub produce_order: order::ProduceOrder,
}

impl Diskless {
    /// Connects to the coordinator, applies the schema, opens the object store.
    pub async fn start(config: &ClusterConfig, node_id: i32) -> Result<Diskless, DisklessError> {
        if config.coordinator.is_none() {
            return Err(DisklessError::Config("no coordinator".into()));
        }
        let url = config
            .object_store
            .as_deref()
            .ok_or_else(|| DisklessError::Config("no object store".into()))?;
        let (store, prefix) = objects::ObjectStoreUrl::parse(url)
            .and_then(|u| u.open())
            .map_err(DisklessError::Config)?;
        Diskless::start_with_store(config, node_id, store, prefix).await
    }

    /// `start` over an object store given, not opened from `cluster.object_store` (tests
    /// pass one that injects faults).
    pub async fn start_with_store(
        config: &ClusterConfig,
        node_id: i32,
        store: Arc<dyn ObjectStore>,
        prefix: ObjectPath,
    ) -> Result<Diskless, DisklessError> {
        let conn = config
            .coordinator
            .clone()
            .ok_or_else(|| DisklessError::Config("no coordinator".into()))?;
        let url = config.object_store.as_deref().unwrap_or_default();
        let mut client = pg::connect(&conn).await?;
        let cluster_id = pg::migrate(&mut client).await?;
        drop(client);
        tracing::info!(
            node_id,
            cluster_id,
            coordinator = %config::redact(&conn),
            object_store = url,
            "diskless mode"
        );
        let marks = Arc::new(fetch::Watermarks::default());
        let listener = fetch::AbortOnDrop(tokio::spawn(fetch::listen(conn.clone(), marks.clone())));
        let committer = commit::Committer::start(commit::CommitterParts {
            conn: conn.clone(),
            store: store.clone(),
            prefix: prefix.clone(),
            node_id,
            interval: std::time::Duration::from_millis(config.commit_interval_ms),
            max_bytes: usize::try_from(config.commit_max_bytes).unwrap_or(usize::MAX),
            marks: marks.clone(),
        });
        Ok(Diskless {
            config: config.clone(),
            node_id,
            cluster_id,
            pg: pg::SharedClient::new(&conn),
            store,
            prefix,
            catalog: catalog::Catalog::default(),
            committer,
            marks,
            index: fetch::BatchIndex::default(),
            ranges: cache::RangeCache::new(config.fetch_cache_bytes),
            producer_ids: producers::ProducerIds::default(),
            _listener: listener,
            group_offsets: groups::GroupOffsets::default(),
            produce_order: order::ProduceOrder::default(),
            membership: membership::Membership::new(
                node_id,
                std::time::Duration::from_millis(config.broker_session_timeout_ms),
            ),
        })
    }

    /// The coordinator's connection string (for a transaction's own connection).
    pub fn coordinator(&self) -> &str {
        self.config.coordinator.as_deref().unwrap_or_default()
    }

    /// Whether this broker may serve diskless requests (registered, lease held, not
    /// fenced); when not, handlers answer retriable errors.
    pub fn is_live(&self) -> bool {
        self.membership.is_live()
    }

    /// The heartbeat: renews the lease and reloads the live brokers and the catalog every
    /// `broker_heartbeat_interval_ms` until `shutdown`. Failures are logged and retried at
    /// the next beat; the lease lapses on its own if they last.
    pub async fn heartbeat_loop(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let period = std::time::Duration::from_millis(self.config.broker_heartbeat_interval_ms);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = shutdown.changed() => return,
            }
            match self.membership.heartbeat(&self.pg).await {
                Ok(true) => {}
                // Fenced for good: nothing more to renew.
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(error = %e, live = self.is_live(), "diskless heartbeat failed");
                    continue;
                }
            }
            if let Err(e) = self.catalog.refresh(&self.pg).await {
                tracing::warn!(error = %e, "diskless catalog refresh failed");
            }
        }
    }
}

#[cfg(test)]
mod data_tests;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A `Diskless` over a fresh database and a scratch file object store.
    pub(crate) async fn diskless(label: &str, node_id: i32) -> (Diskless, tempfile::TempDir) {
        let db = test_postgres::Postgres::shared().fresh_database(label);
        let dir = tempfile::tempdir().unwrap();
        let config = ClusterConfig {
            mode: ClusterMode::Diskless,
            coordinator: Some(db),
            object_store: Some(format!("file://{}", dir.path().display())),
            ..ClusterConfig::default()
        };
        (Diskless::start(&config, node_id).await.unwrap(), dir)
    }

    #[tokio::test]
    async fn catalog_creates_topics_once_and_reads_through() {
        let (d, _dir) = diskless("catalog", 0).await;
        let configs = [("cleanup.policy".to_string(), "delete".to_string())].into();
        let t = d
            .catalog
            .create(&d.pg, "orders", 3, &configs)
            .await
            .unwrap();
        assert_eq!((t.name.as_str(), t.partitions), ("orders", 3));
        assert!(matches!(
            d.catalog
                .create(&d.pg, "orders", 1, &Default::default())
                .await,
            Err(catalog::CreateTopicError::Exists(_))
        ));
        // Another broker's catalog finds it through PostgreSQL.
        let other = catalog::Catalog::default();
        assert!(other.cached("orders").is_none());
        let found = other.topic(&d.pg, "orders").await.unwrap().unwrap();
        assert_eq!(found.id, t.id);
        assert_eq!(found.configs, configs);
        let client = d.pg.get().await.unwrap();
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM rafka_partitions WHERE topic_id = $1",
                &[&t.id],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 3);
        other.refresh(&d.pg).await.unwrap();
        assert_eq!(other.all().len(), 1);
    }
}
