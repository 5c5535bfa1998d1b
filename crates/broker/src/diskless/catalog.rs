//! The diskless cluster's topics, as PostgreSQL holds them, and this broker's cached view.
//! PostgreSQL is the truth; the cache is refreshed from it (`refresh`) and a lookup that
//! misses reads through, so a topic created on another broker is found at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use uuid::Uuid;

use super::pg::SharedClient;
use super::DisklessError;

/// One diskless topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisklessTopic {
    /// Kafka's topic id.
    pub id: Uuid,
    /// The name.
    pub name: String,
    /// Partitions `0..partitions`.
    pub partitions: i32,
    /// Topic configs set on it (Kafka's names and string values).
    pub configs: BTreeMap<String, String>,
}

/// Why a topic could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateTopicError {
    /// A topic of that name exists (TOPIC_ALREADY_EXISTS).
    #[error("topic {0:?} already exists")]
    Exists(String),
    /// The coordinator failed.
    #[error(transparent)]
    Coordinator(#[from] DisklessError),
}

/// The topics this broker knows of.
#[derive(Default)]
pub struct Catalog {
    by_name: parking_lot::RwLock<HashMap<String, Arc<DisklessTopic>>>,
}

fn topic_of(row: &tokio_postgres::Row) -> Result<DisklessTopic, DisklessError> {
    let configs: String = row.get(3);
    let configs: BTreeMap<String, String> = serde_json::from_str(&configs)
        .map_err(|e| DisklessError::Config(format!("rafka_topics.configs: {e}")))?;
    Ok(DisklessTopic {
        id: row.get(0),
        name: row.get(1),
        partitions: row.get(2),
        configs,
    })
}

const SELECT_TOPICS: &str = "SELECT topic_id, name, partitions, configs::text FROM rafka_topics";

impl Catalog {
    /// The cached topic `name`, if known.
    pub fn cached(&self, name: &str) -> Option<Arc<DisklessTopic>> {
        self.by_name.read().get(name).cloned()
    }

    /// Every cached topic, by name.
    pub fn all(&self) -> Vec<Arc<DisklessTopic>> {
        let mut v: Vec<_> = self.by_name.read().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The topic `name`: from the cache, else read from PostgreSQL (and cached).
    pub async fn topic(
        &self,
        pg: &SharedClient,
        name: &str,
    ) -> Result<Option<Arc<DisklessTopic>>, DisklessError> {
        if let Some(t) = self.cached(name) {
            return Ok(Some(t));
        }
        let client = pg.get().await?;
        let row = client
            .query_opt(&format!("{SELECT_TOPICS} WHERE name = $1"), &[&name])
            .await?;
        let Some(row) = row else { return Ok(None) };
        let t = Arc::new(topic_of(&row)?);
        self.by_name.write().insert(t.name.clone(), t.clone());
        Ok(Some(t))
    }

    /// Replaces the cache with what PostgreSQL holds now.
    pub async fn refresh(&self, pg: &SharedClient) -> Result<(), DisklessError> {
        let client = pg.get().await?;
        let rows = client.query(SELECT_TOPICS, &[]).await?;
        let mut fresh = HashMap::with_capacity(rows.len());
        for row in &rows {
            let t = topic_of(row)?;
            fresh.insert(t.name.clone(), Arc::new(t));
        }
        *self.by_name.write() = fresh;
        Ok(())
    }

    /// Creates a topic and its partition rows in one transaction.
    pub async fn create(
        &self,
        pg: &SharedClient,
        name: &str,
        partitions: i32,
        configs: &BTreeMap<String, String>,
    ) -> Result<Arc<DisklessTopic>, CreateTopicError> {
        let client = pg.get().await?;
        let id = Uuid::new_v4();
        let configs_json = serde_json::to_string(configs)
            .map_err(|e| DisklessError::Config(format!("topic configs: {e}")))?;
        // One statement: the topic and its partitions, or nothing.
        let rows = client
            .execute(
                "WITH t AS (INSERT INTO rafka_topics (topic_id, name, partitions, configs) \
                 VALUES ($1, $2, $3, $4::text::jsonb) ON CONFLICT (name) DO NOTHING \
                 RETURNING topic_id, partitions) \
                 INSERT INTO rafka_partitions (topic_id, partition) \
                 SELECT t.topic_id, p FROM t, generate_series(0, t.partitions - 1) AS p",
                &[&id, &name, &partitions, &configs_json],
            )
            .await
            .map_err(DisklessError::from)?;
        if rows == 0 {
            return Err(CreateTopicError::Exists(name.to_string()));
        }
        let t = self
            .topic_uncached(pg, name)
            .await?
            .ok_or_else(|| DisklessError::Config(format!("topic {name:?} vanished")))?;
        if t.id != id {
            return Err(CreateTopicError::Exists(name.to_string()));
        }
        self.by_name.write().insert(t.name.clone(), t.clone());
        Ok(t)
    }

    async fn topic_uncached(
        &self,
        pg: &SharedClient,
        name: &str,
    ) -> Result<Option<Arc<DisklessTopic>>, DisklessError> {
        let client = pg.get().await?;
        let row = client
            .query_opt(&format!("{SELECT_TOPICS} WHERE name = $1"), &[&name])
            .await?;
        row.map(|r| topic_of(&r).map(Arc::new)).transpose()
    }
}
