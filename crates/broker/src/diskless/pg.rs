//! PostgreSQL: connections and the schema. Every broker of a diskless cluster applies
//! `schema.sql` at start (under an advisory lock, so two starting brokers do not race);
//! the first one also names the cluster.

use std::sync::Arc;

use tokio_postgres::{Client, NoTls};

use super::DisklessError;

/// The schema this build writes and reads.
pub const SCHEMA_VERSION: i32 = 1;

/// The advisory lock key the schema migration holds ("rafka" in ASCII).
const MIGRATION_LOCK: i64 = 0x72_61_66_6b_61;

/// Opens one connection; its I/O runs on a spawned task until the client is dropped or the
/// server goes away (then `Client::is_closed` turns true).
pub async fn connect(conn: &str) -> Result<Client, DisklessError> {
    let config: tokio_postgres::Config = conn
        .parse()
        .map_err(|e: tokio_postgres::Error| DisklessError::Config(e.to_string()))?;
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// Applies the schema and returns the cluster id (made on first start).
pub async fn migrate(client: &mut Client) -> Result<String, DisklessError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(include_str!("schema.sql")).await?;
    // As the single-node broker names its cluster (state.rs).
    let new_id = uuid::Uuid::new_v4().simple().to_string()[..22].to_string();
    tx.execute(
        "INSERT INTO rafka_cluster (id, cluster_id, schema_version) VALUES (1, $1, $2) \
         ON CONFLICT (id) DO NOTHING",
        &[&new_id, &SCHEMA_VERSION],
    )
    .await?;
    let row = tx
        .query_one(
            "SELECT cluster_id, schema_version FROM rafka_cluster WHERE id = 1",
            &[],
        )
        .await?;
    let version: i32 = row.get(1);
    if version != SCHEMA_VERSION {
        return Err(DisklessError::Config(format!(
            "the coordinator holds schema version {version}; this broker reads {SCHEMA_VERSION}"
        )));
    }
    let cluster_id: String = row.get(0);
    tx.commit().await?;
    Ok(cluster_id)
}

/// A connection shared by many tasks (tokio-postgres pipelines their queries), made again
/// on first use after the server dropped it. Not for transactions: those need a
/// connection of their own.
pub struct SharedClient {
    conn: String,
    current: parking_lot::Mutex<Option<Arc<Client>>>,
    /// One reconnection at a time.
    reconnecting: tokio::sync::Semaphore,
}

impl SharedClient {
    /// A shared client over `conn`; connects on first use.
    pub fn new(conn: &str) -> SharedClient {
        SharedClient {
            conn: conn.to_string(),
            current: parking_lot::Mutex::new(None),
            reconnecting: tokio::sync::Semaphore::new(1),
        }
    }

    /// The connection, made anew if the last one closed.
    pub async fn get(&self) -> Result<Arc<Client>, DisklessError> {
        if let Some(c) = self.live() {
            return Ok(c);
        }
        let _permit = self
            .reconnecting
            .acquire()
            .await
            .map_err(|_| DisklessError::ShuttingDown)?;
        // Another task may have reconnected while this one waited.
        if let Some(c) = self.live() {
            return Ok(c);
        }
        let c = Arc::new(connect(&self.conn).await?);
        *self.current.lock() = Some(c.clone());
        Ok(c)
    }

    fn live(&self) -> Option<Arc<Client>> {
        self.current
            .lock()
            .as_ref()
            .filter(|c| !c.is_closed())
            .cloned()
    }
}
