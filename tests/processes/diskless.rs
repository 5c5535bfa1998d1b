//! Diskless mode: `rafka` processes sharing one PostgreSQL coordinator and one object store
//! (a shared directory here), each with its own scratch data directory.

use std::path::Path;

use crate::support::postgres::Postgres;
use crate::support::BrokerProcess;

/// A diskless cluster's config file for database `db_url` and object directory `objects`.
pub fn diskless_config(
    dir: &Path,
    db_url: &str,
    objects: &Path,
    extra: &str,
) -> std::path::PathBuf {
    let path = dir.join("diskless.yaml");
    std::fs::write(
        &path,
        format!(
            "cluster:\n  mode: diskless\n  coordinator: \"{db_url}\"\n  object_store: \"file://{}\"\n{extra}",
            objects.display()
        ),
    )
    .expect("write config");
    path
}

/// Reads one text value from PostgreSQL.
async fn query_text(db_url: &str, sql: &str) -> String {
    let (client, conn) = tokio_postgres::connect(db_url, tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    let task = tokio::spawn(conn);
    let row = client.query_one(sql, &[]).await.expect(sql);
    let v: String = row.get(0);
    drop(client);
    let _ = task.await;
    v
}

/// Two brokers starting at once on a new database: both apply the schema (one waits on
/// the other's advisory lock), and they agree on the cluster id the first one chose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_share_one_schema_and_cluster_id() {
    let pg = Postgres::shared();
    let db = pg.fresh_database("schema");
    let scratch = tempfile::tempdir().unwrap();
    let objects = scratch.path().join("objects");
    let brokers: Vec<BrokerProcess> = (0..2)
        .map(|i| {
            let dir = scratch.path().join(format!("b{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            let cfg = diskless_config(&dir, &db, &objects, &format!("broker:\n  node_id: {i}\n"));
            std::thread::spawn(move || BrokerProcess::start_with_config(&dir, &cfg))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().expect("broker starts"))
        .collect();
    assert_eq!(brokers.len(), 2);
    let cluster_id = query_text(&db, "SELECT cluster_id FROM rafka_cluster").await;
    assert_eq!(cluster_id.len(), 22, "{cluster_id}");
    let tables = query_text(
        &db,
        "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables \
         WHERE tablename LIKE 'rafka_%'",
    )
    .await;
    assert_eq!(
        tables,
        "rafka_batches,rafka_brokers,rafka_cluster,rafka_groups,rafka_objects,rafka_offsets,\
         rafka_partitions,rafka_producers,rafka_topics"
    );
    assert!(
        objects.is_dir(),
        "the file object store's directory is made"
    );
}

/// A coordinator that cannot be reached stops the start with an error naming it (its
/// password hidden), instead of a broker that would accept produce it cannot commit.
#[test]
fn unreachable_coordinator_stops_the_start() {
    let scratch = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let db = format!("postgres://rafka:secret@127.0.0.1:{port}/nothing?connect_timeout=2");
    let cfg = diskless_config(scratch.path(), &db, &scratch.path().join("o"), "");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rafka"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(scratch.path())
        .arg("--config")
        .arg(&cfg)
        .output()
        .expect("run rafka");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("diskless cluster"), "{err}");
    assert!(
        !err.contains("secret"),
        "the password is never printed: {err}"
    );
}
