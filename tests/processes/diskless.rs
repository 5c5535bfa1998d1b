//! Diskless mode: `rafka` processes sharing one PostgreSQL coordinator and one object store
//! (a shared directory here), each with its own scratch data directory.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rafka_client::kafka_protocol::messages::{
    describe_configs_request::DescribeConfigsResource, BrokerId, CreatePartitionsRequest,
    DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest, FindCoordinatorRequest,
    MetadataRequest, TopicName,
};
use rafka_client::kafka_protocol::protocol::StrBytes;
use rafka_client::{Client, ClientConfig};
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;

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

/// Heartbeats every 200 ms, leases of 1.5 s: a dead broker leaves the cluster quickly.
const FAST_LEASES: &str =
    "  broker_heartbeat_interval_ms: 200\n  broker_session_timeout_ms: 1500\n";

/// Starts brokers `ids` of one diskless cluster (database `db`, objects under `scratch`).
fn start_cluster(scratch: &Path, db: &str, ids: &[i32]) -> Vec<BrokerProcess> {
    let objects = scratch.join("objects");
    ids.iter()
        .map(|&i| {
            let dir = scratch.join(format!("b{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            let cfg = diskless_config(
                &dir,
                db,
                &objects,
                &format!("{FAST_LEASES}broker:\n  node_id: {i}\n"),
            );
            BrokerProcess::start_with_config(&dir, &cfg)
        })
        .collect()
}

/// A raw client of broker `addr` (requests go to that broker, not wherever metadata says).
async fn client(addr: &str) -> (Client, std::sync::Arc<rafka_client::BrokerConnection>) {
    let c = Client::connect(ClientConfig::new(addr))
        .await
        .expect("connect");
    let conn = c.connection_to(addr).await.expect("connection");
    (c, conn)
}

/// One partition as Metadata lists it: leader, replicas, isr, leader epoch, error code.
type PartitionView = (i32, Vec<i32>, Vec<i32>, i32, i16);

/// What one broker says of the cluster: brokers (id, port), the controller, and per topic
/// its id and per partition (leader, replicas, isr, leader epoch, error).
#[derive(Debug, PartialEq, Eq)]
struct View {
    brokers: Vec<(i32, i32)>,
    controller: i32,
    topics: BTreeMap<String, (uuid::Uuid, Vec<PartitionView>)>,
}

async fn view(addr: &str) -> View {
    let (c, conn) = client(addr).await;
    let resp = c
        .call_on(
            &conn,
            &MetadataRequest::default().with_topics(None),
            (1, 12),
        )
        .await
        .expect("metadata");
    let mut brokers: Vec<(i32, i32)> = resp.brokers.iter().map(|b| (b.node_id.0, b.port)).collect();
    brokers.sort();
    let topics = resp
        .topics
        .iter()
        .map(|t| {
            assert_eq!(t.error_code, 0, "{t:?}");
            let mut parts: Vec<_> = t
                .partitions
                .iter()
                .map(|p| {
                    (
                        p.leader_id.0,
                        p.replica_nodes.iter().map(|b| b.0).collect(),
                        p.isr_nodes.iter().map(|b| b.0).collect(),
                        p.leader_epoch,
                        p.error_code,
                    )
                })
                .collect();
            // Sorted by partition index.
            let mut idx: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
            idx.sort();
            assert_eq!(idx, (0..t.partitions.len() as i32).collect::<Vec<_>>());
            let mut sorted: Vec<_> = t
                .partitions
                .iter()
                .map(|p| p.partition_index)
                .zip(parts.drain(..))
                .collect();
            sorted.sort_by_key(|(i, _)| *i);
            (
                t.name.as_ref().unwrap().to_string(),
                (t.topic_id, sorted.into_iter().map(|(_, p)| p).collect()),
            )
        })
        .collect();
    View {
        brokers,
        controller: resp.controller_id.0,
        topics,
    }
}

/// Waits until `cond` holds of every broker's view (checked every 100 ms, 10 s at most).
async fn wait_views(addrs: &[&str], what: &str, cond: impl Fn(&View) -> bool) -> Vec<View> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut views = Vec::new();
        for a in addrs {
            views.push(view(a).await);
        }
        if views.iter().all(&cond) {
            return views;
        }
        assert!(Instant::now() < deadline, "{what}: {views:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn port(addr: &str) -> i32 {
    addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// Three brokers over one PostgreSQL: every broker lists the same live brokers and the same
/// leaders (spread over all three), topics created, grown, reconfigured and deleted on one
/// broker are seen by the others, groups map to the same coordinator everywhere, and a
/// broker killed leaves the cluster when its lease ends, moving only its partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_share_metadata_topics_and_coordinators() {
    let pg = Postgres::shared();
    let db = pg.fresh_database("cluster_meta");
    let scratch = tempfile::tempdir().unwrap();
    let brokers = start_cluster(scratch.path(), &db, &[1, 2, 3]);
    let addrs: Vec<String> = brokers.iter().map(|b| b.address.clone()).collect();
    let all: Vec<&str> = addrs.iter().map(|s| s.as_str()).collect();
    let expected_brokers: Vec<(i32, i32)> = (1..=3).zip(all.iter().map(|a| port(a))).collect();

    // librdkafka's admin client against broker 1 creates the topic ...
    crate::support::create_topic(all[0], "orders", 30, &[("retention.ms", "600000")]).await;
    // ... and against broker 2 is told it exists, and that compaction is not available.
    let admin = crate::support::admin(all[1]);
    let res = admin
        .create_topics(
            &[
                NewTopic::new("orders", 3, TopicReplication::Fixed(1)),
                NewTopic::new("compacted", 3, TopicReplication::Fixed(1))
                    .set("cleanup.policy", "compact"),
            ],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        res[0],
        Err(("orders".to_string(), RDKafkaErrorCode::TopicAlreadyExists))
    );
    assert_eq!(
        res[1],
        Err(("compacted".to_string(), RDKafkaErrorCode::InvalidConfig))
    );

    // Every broker: the same three brokers, controller 1, the same leaders.
    let views = wait_views(&all, "three live brokers", |v| {
        v.brokers == expected_brokers && v.topics.contains_key("orders")
    })
    .await;
    assert_eq!(views[0], views[1]);
    assert_eq!(views[0], views[2]);
    assert_eq!(views[0].controller, 1);
    assert_eq!(views[0].topics.len(), 1, "internal topics are not listed");
    let (orders_id, parts) = &views[0].topics["orders"];
    assert_eq!(parts.len(), 30);
    let mut led = BTreeMap::new();
    for (leader, replicas, isr, epoch, error) in parts {
        assert_eq!(
            (replicas, isr, *epoch, *error),
            (&vec![*leader], &vec![*leader], 0, 0)
        );
        *led.entry(*leader).or_insert(0) += 1;
    }
    assert_eq!(
        led.keys().copied().collect::<Vec<_>>(),
        vec![1, 2, 3],
        "{led:?}"
    );

    // DescribeTopicPartitions (Java's describeTopics) gives the same leaders, in pages.
    {
        use rafka_client::kafka_protocol::messages::describe_topic_partitions_request::TopicRequest;
        use rafka_client::kafka_protocol::messages::DescribeTopicPartitionsRequest;
        let (c, conn) = client(all[2]).await;
        let mut leaders = Vec::new();
        let mut cursor = None;
        loop {
            let r = c
                .call_on(
                    &conn,
                    &DescribeTopicPartitionsRequest::default()
                        .with_topics(vec![TopicRequest::default()
                            .with_name(TopicName(StrBytes::from_static_str("orders")))])
                        .with_response_partition_limit(7)
                        .with_cursor(cursor.take()),
                    (0, 0),
                )
                .await
                .unwrap();
            assert_eq!(r.topics[0].error_code, 0);
            assert_eq!(r.topics[0].topic_id, *orders_id);
            leaders.extend(r.topics[0].partitions.iter().map(|p| p.leader_id.0));
            match r.next_cursor {
                Some(c) => {
                    cursor = Some(
                        rafka_client::kafka_protocol::messages::describe_topic_partitions_request::Cursor::default()
                            .with_topic_name(c.topic_name)
                            .with_partition_index(c.partition_index),
                    )
                }
                None => break,
            }
        }
        assert_eq!(leaders, parts.iter().map(|p| p.0).collect::<Vec<_>>());
    }

    // DescribeCluster and FindCoordinator agree everywhere.
    let mut coordinators = Vec::new();
    for a in &all {
        let (c, conn) = client(a).await;
        let dc = c
            .call_on(&conn, &DescribeClusterRequest::default(), (0, 1))
            .await
            .unwrap();
        let mut ids: Vec<i32> = dc.brokers.iter().map(|b| b.broker_id.0).collect();
        ids.sort();
        assert_eq!((ids, dc.controller_id), (vec![1, 2, 3], BrokerId(1)));
        let mut mine = Vec::new();
        for g in 0..12 {
            let r = c
                .call_on(
                    &conn,
                    &FindCoordinatorRequest::default()
                        .with_key(StrBytes::from_string(format!("group-{g}")))
                        .with_key_type(0),
                    (0, 3),
                )
                .await
                .unwrap();
            assert_eq!(r.error_code, 0);
            assert_eq!(r.port, port(all[(r.node_id.0 - 1) as usize]));
            mine.push(r.node_id.0);
        }
        coordinators.push(mine);
    }
    assert_eq!(coordinators[0], coordinators[1]);
    assert_eq!(coordinators[0], coordinators[2]);
    assert!(
        coordinators[0].iter().any(|n| *n != coordinators[0][0]),
        "groups spread"
    );

    // CreatePartitions on broker 2: brokers 1 and 3 see 40 partitions.
    let (c2, conn2) = client(all[1]).await;
    let r = c2
        .call_on(
            &conn2,
            &CreatePartitionsRequest::default()
                .with_topics(vec![
                    rafka_client::kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic::default()
                        .with_name(TopicName(StrBytes::from_static_str("orders")))
                        .with_count(40),
                ])
                .with_timeout_ms(5000),
            (0, 3),
        )
        .await
        .unwrap();
    assert_eq!(r.results[0].error_code, 0, "{r:?}");
    let views = wait_views(&all, "40 partitions", |v| {
        v.topics.get("orders").is_some_and(|t| t.1.len() == 40)
    })
    .await;
    assert_eq!(views[0], views[2]);
    assert_eq!(
        &views[0].topics["orders"].1[..30],
        &parts[..],
        "old leaders stay"
    );

    // Configs set through broker 3 are described by broker 1; compaction is refused.
    let (c3, conn3) = client(all[2]).await;
    let alter = |k: &str, v: &str| {
        use rafka_client::kafka_protocol::messages::incremental_alter_configs_request::{
            AlterConfigsResource, AlterableConfig,
        };
        rafka_client::kafka_protocol::messages::IncrementalAlterConfigsRequest::default()
            .with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("orders"))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.into()))
                    .with_config_operation(0)
                    .with_value(Some(StrBytes::from_string(v.into())))])])
    };
    let r = c3
        .call_on(&conn3, &alter("cleanup.policy", "compact"), (0, 1))
        .await
        .unwrap();
    assert_eq!(r.responses[0].error_code, 40, "INVALID_CONFIG: {r:?}");
    assert!(r.responses[0]
        .error_message
        .as_deref()
        .is_some_and(|m| m.contains("not available on diskless topics")));
    let r = c3
        .call_on(&conn3, &alter("retention.ms", "12345"), (0, 1))
        .await
        .unwrap();
    assert_eq!(r.responses[0].error_code, 0, "{r:?}");
    let (c1, conn1) = client(all[0]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = c1
            .call_on(
                &conn1,
                &DescribeConfigsRequest::default().with_resources(vec![
                    DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(StrBytes::from_static_str("orders"))
                        .with_configuration_keys(None),
                ]),
                (1, 4),
            )
            .await
            .unwrap();
        let retention = r.results[0]
            .configs
            .iter()
            .find(|c| &*c.name == "retention.ms")
            .and_then(|c| c.value.as_deref().map(str::to_string));
        if retention.as_deref() == Some("12345") {
            break;
        }
        assert!(Instant::now() < deadline, "retention.ms {retention:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // SIGKILL broker 2: gone from every view once its lease ends; only its partitions move.
    let before = view(all[0]).await.topics["orders"].1.clone();
    let mut brokers = brokers;
    brokers.remove(1).kill();
    let killed_at = Instant::now();
    let left = [all[0], all[2]];
    let views = wait_views(&left, "broker 2 dropped", |v| {
        v.brokers == vec![expected_brokers[0], expected_brokers[2]]
    })
    .await;
    assert!(
        killed_at.elapsed() < Duration::from_secs(5),
        "{:?}",
        killed_at.elapsed()
    );
    assert_eq!(views[0], views[1]);
    for (p, (old, new)) in before.iter().zip(&views[0].topics["orders"].1).enumerate() {
        if old.0 == 2 {
            assert!(new.0 == 1 || new.0 == 3, "partition {p}: {new:?}");
        } else {
            assert_eq!(old.0, new.0, "partition {p}");
        }
    }

    // DeleteTopics on broker 3 (by id): broker 1 no longer lists it.
    let r = c3
        .call_on(
            &conn3,
            &DeleteTopicsRequest::default()
                .with_topics(vec![
                    rafka_client::kafka_protocol::messages::delete_topics_request::DeleteTopicState::default()
                        .with_topic_id(*orders_id),
                ])
                .with_timeout_ms(5000),
            (6, 6),
        )
        .await
        .unwrap();
    assert_eq!(r.responses[0].error_code, 0, "{r:?}");
    assert_eq!(
        r.responses[0].name.as_ref().map(|n| n.as_str()),
        Some("orders")
    );
    let v = view(all[0]).await;
    assert!(v.topics.is_empty(), "{v:?}");
    let partitions = query_text(&db, "SELECT count(*)::text FROM rafka_partitions").await;
    assert_eq!(partitions, "0");

    // SIGTERM: broker 3 deregisters at once (no wait for its lease).
    let pid = brokers[1].child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(brokers[1].wait_exit(Duration::from_secs(15)).is_some());
    // Broker 2's row stays (its lease expired) until node 2 registers again.
    let rows = query_text(
        &db,
        "SELECT string_agg(node_id::text, ',' ORDER BY node_id) FROM rafka_brokers",
    )
    .await;
    assert_eq!(rows, "1,2");
}

/// Partition `partition` of `topic` as broker `addr` serves it: the raw record batches
/// from offset 0 up to its high watermark, fetched from that broker directly, and the
/// high watermark.
async fn raw_log(addr: &str, topic: &str, partition: i32) -> (Vec<u8>, i64) {
    use rafka_client::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use rafka_client::kafka_protocol::messages::FetchRequest;
    let (c, conn) = client(addr).await;
    let mut log = Vec::new();
    let mut next = 0i64;
    loop {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(64 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.into())))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(next)
                    .with_partition_max_bytes(64 << 20)])]);
        let resp = c.call_on(&conn, &req, (4, 12)).await.expect("fetch");
        let p = &resp.responses[0].partitions[0];
        assert_eq!(
            p.error_code, 0,
            "fetch {topic}-{partition} at {addr}: {p:?}"
        );
        let records = p.records.clone().unwrap_or_default();
        // Batch by batch: base offset (8 bytes), length (4), ..., last offset delta at 23.
        let mut at = 0usize;
        while at + 61 <= records.len() {
            let base = i64::from_be_bytes(records[at..at + 8].try_into().unwrap());
            let len = i32::from_be_bytes(records[at + 8..at + 12].try_into().unwrap()) as usize;
            if at + 12 + len > records.len() {
                break; // a partial batch at the end of the answer
            }
            let delta = i32::from_be_bytes(records[at + 23..at + 27].try_into().unwrap());
            assert!(base >= next, "batch at {base} before {next}");
            log.extend_from_slice(&records[at..at + 12 + len]);
            next = base + i64::from(delta) + 1;
            at += 12 + len;
        }
        if next >= p.high_watermark {
            return (log, p.high_watermark);
        }
        assert!(at > 0, "no progress at {next} of {}", p.high_watermark);
    }
}

/// What two members of consumer group `group` (`group.protocol` `protocol`) read of
/// "events" until they have `count` records, by (partition, offset).
async fn group_reads(
    bootstrap: &str,
    group: &str,
    protocol: &str,
    count: usize,
) -> BTreeMap<(i32, i64), String> {
    let mut cfg = crate::support::client_config(bootstrap);
    cfg.set("group.id", group)
        .set("group.protocol", protocol)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100");
    if protocol == "classic" {
        cfg.set("session.timeout.ms", "6000");
    }
    let members: Vec<_> = (0..2)
        .map(|_| {
            crate::support::GroupMember::start(
                &cfg,
                "events",
                rdkafka::consumer::DefaultConsumerContext,
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let total =
        |ms: &[crate::support::GroupMember]| ms.iter().map(|m| m.seen().len()).sum::<usize>();
    while total(&members) < count {
        assert!(
            Instant::now() < deadline,
            "{group} consumed {}",
            total(&members)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut seen: BTreeMap<(i32, i64), String> = BTreeMap::new();
    for m in members {
        for (p, o, v) in m.stop() {
            // A rebalance may hand a partition over before its last commit: a record read
            // twice must be the same record.
            if let Some(old) = seen.insert((p, o), v.clone()) {
                assert_eq!(old, v, "{p}:{o}");
            }
        }
    }
    seen
}

/// Three brokers: two idempotent librdkafka producers and consumer groups of two (the
/// classic protocol, then KIP-848's), all bootstrapped at the three brokers. Every record is read back exactly once at
/// contiguous offsets, committed offsets reach the log end, and every broker returns the
/// same bytes for every partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_produce_and_consume_one_log() {
    let pg = Postgres::shared();
    let db = pg.fresh_database("cluster_data");
    let scratch = tempfile::tempdir().unwrap();
    let brokers = start_cluster(scratch.path(), &db, &[1, 2, 3]);
    let addrs: Vec<String> = brokers.iter().map(|b| b.address.clone()).collect();
    let bootstrap = addrs.join(",");
    crate::support::create_topic(&addrs[1], "events", 6, &[]).await;

    let per_producer = 600;
    let mut acked: BTreeMap<(i32, i64), String> = BTreeMap::new();
    let producers: Vec<_> = (0..2)
        .map(|_| crate::support::producer(&bootstrap, &[("enable.idempotence", "true")]))
        .collect();
    let mut pending = Vec::new();
    for i in 0..per_producer {
        for (j, p) in producers.iter().enumerate() {
            let (k, v) = (format!("k{}", i % 37), format!("p{j}-{i}"));
            let f = p
                .send_result(FutureRecord::to("events").key(&k).payload(&v))
                .expect("queue has room");
            pending.push((v, f));
        }
    }
    for (v, f) in pending {
        let d = f.await.expect("delivery").expect("delivered");
        assert!(
            acked.insert((d.partition, d.offset), v).is_none(),
            "offset given twice"
        );
    }
    assert_eq!(acked.len(), 2 * per_producer);
    let mut per_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for (p, o) in acked.keys() {
        per_partition.entry(*p).or_default().push(*o);
    }
    for (p, offsets) in &per_partition {
        assert_eq!(
            offsets,
            &(0..offsets.len() as i64).collect::<Vec<_>>(),
            "partition {p}"
        );
    }

    // A consumer group across the brokers (the classic protocol), then one of KIP-848.
    let seen = group_reads(&bootstrap, "readers", "classic", acked.len()).await;
    assert_eq!(seen, acked, "the group read exactly what was acknowledged");
    let seen = group_reads(&bootstrap, "readers-848", "consumer", acked.len()).await;
    assert_eq!(
        seen, acked,
        "the KIP-848 group read exactly what was acknowledged"
    );

    // Committed offsets reach the log end (read through any broker's coordinator).
    let admin = Client::connect(ClientConfig::new(&addrs[0])).await.unwrap();
    let committed = admin.committed_offsets("readers", None).await.unwrap();
    for (p, offsets) in &per_partition {
        assert_eq!(
            committed.get(&("events".to_string(), *p)).copied(),
            Some(offsets.len() as i64),
            "partition {p}: {committed:?}"
        );
    }

    // Every broker serves the same bytes for every partition.
    for p in 0..6 {
        let first = raw_log(&addrs[0], "events", p).await;
        assert_eq!(first.1, per_partition[&p].len() as i64);
        for a in &addrs[1..] {
            assert!(
                raw_log(a, "events", p).await == first,
                "partition {p} differs at {a}"
            );
        }
    }

    // The group's coordinator dies: the broker that takes the group over reads the same
    // committed offsets (from PostgreSQL).
    let coordinator = admin.find_coordinator("readers").await.unwrap();
    let mut brokers = brokers;
    let index = (coordinator - 1) as usize;
    brokers.remove(index).kill();
    let survivors: Vec<&str> = addrs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != index)
        .map(|(_, a)| a.as_str())
        .collect();
    wait_views(&survivors, "the coordinator dropped", |v| {
        v.brokers.len() == 2
    })
    .await;
    let admin = Client::connect(ClientConfig::new(survivors[0]))
        .await
        .unwrap();
    let taken_over = admin.find_coordinator("readers").await.unwrap();
    assert_ne!(taken_over, coordinator);
    let after = admin.committed_offsets("readers", None).await.unwrap();
    assert_eq!(
        after, committed,
        "committed offsets survive the coordinator"
    );
}

/// SIGKILL of one of three brokers while an idempotent producer sends: the producer moves
/// to the others; every acknowledged record is in the log at its acknowledged offset, each
/// offset holds one value, and no value is there twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_under_load_loses_nothing_acknowledged() {
    let pg = Postgres::shared();
    let db = pg.fresh_database("cluster_kill");
    let scratch = tempfile::tempdir().unwrap();
    let mut brokers = start_cluster(scratch.path(), &db, &[1, 2, 3]);
    let addrs: Vec<String> = brokers.iter().map(|b| b.address.clone()).collect();
    let bootstrap = addrs.join(",");
    crate::support::create_topic(&addrs[0], "load", 6, &[]).await;

    let producer = crate::support::producer(
        &bootstrap,
        &[
            ("enable.idempotence", "true"),
            ("message.timeout.ms", "60000"),
        ],
    );
    let total = 3000;
    let mut pending = Vec::new();
    let mut killed = false;
    for i in 0..total {
        let v = format!("v{i}");
        let f = producer
            .send_result(
                FutureRecord::to("load")
                    .key(&format!("k{}", i % 101))
                    .payload(&v),
            )
            .expect("queue has room");
        pending.push((v, f));
        // About 1.2 s of sending: the kill lands in the middle, and the lease of the
        // killed broker (1.5 s) ends after the last send.
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if i == total / 3 {
            brokers.remove(1).kill();
            killed = true;
        }
    }
    assert!(killed);
    let mut acked: BTreeMap<(i32, i64), String> = BTreeMap::new();
    let mut failed = Vec::new();
    for (v, f) in pending {
        match f.await.expect("delivery future") {
            Ok(d) => assert!(
                acked.insert((d.partition, d.offset), v).is_none(),
                "offset given twice"
            ),
            Err((e, _)) => failed.push((v, e.to_string())),
        }
    }
    assert!(
        failed.is_empty(),
        "the idempotent producer delivers everything: {failed:?}"
    );
    assert_eq!(acked.len(), total);

    // The checker: the whole log, read from a surviving broker once the killed one is
    // out of the metadata (else the reader's first fetches would try it).
    wait_views(&[&addrs[0], &addrs[2]], "the killed broker dropped", |v| {
        v.brokers.len() == 2
    })
    .await;
    check_log(&addrs[0], "load", 6, &acked).await;
    // The survivors serve the same bytes.
    for p in 0..6 {
        assert!(raw_log(&addrs[0], "load", p).await == raw_log(&addrs[2], "load", p).await);
    }
}

/// Checks the whole log of `topic` (read from `reader`) against what was acknowledged:
/// every acknowledged record at its offset, one value per offset, no value twice, offsets
/// contiguous from 0.
async fn check_log(
    reader: &str,
    topic: &str,
    partitions: i32,
    acked: &BTreeMap<(i32, i64), String>,
) {
    let (reader, t) = (reader.to_string(), topic.to_string());
    let log = tokio::task::spawn_blocking(move || {
        crate::support::consume(&reader, &t, partitions, usize::MAX, Duration::from_secs(60))
    })
    .await
    .unwrap();
    let mut by_offset: BTreeMap<(i32, i64), String> = BTreeMap::new();
    let mut values = std::collections::BTreeSet::new();
    for r in &log {
        let v = String::from_utf8(r.value.clone().unwrap()).unwrap();
        assert!(values.insert(v.clone()), "{v} twice in the log");
        assert!(
            by_offset.insert((r.partition, r.offset), v).is_none(),
            "one value per offset"
        );
    }
    assert_eq!(
        &by_offset, acked,
        "the log is exactly what was acknowledged"
    );
    for p in 0..partitions {
        let offsets: Vec<i64> = by_offset.keys().filter(|k| k.0 == p).map(|k| k.1).collect();
        assert_eq!(
            offsets,
            (0..offsets.len() as i64).collect::<Vec<_>>(),
            "partition {p}"
        );
    }
}

/// SIGSTOP of a broker for twice its lease while an idempotent producer sends: the others
/// drop it and clients move on; after SIGCONT it renews its lease and is listed again;
/// nothing acknowledged is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_paused_past_its_lease_is_dropped_then_rejoins() {
    let pg = Postgres::shared();
    let db = pg.fresh_database("cluster_pause");
    let scratch = tempfile::tempdir().unwrap();
    let brokers = start_cluster(scratch.path(), &db, &[1, 2, 3]);
    let addrs: Vec<String> = brokers.iter().map(|b| b.address.clone()).collect();
    let all: Vec<&str> = addrs.iter().map(|s| s.as_str()).collect();
    let bootstrap = addrs.join(",");
    crate::support::create_topic(all[0], "paused", 6, &[]).await;
    let producer = crate::support::producer(
        &bootstrap,
        &[
            ("enable.idempotence", "true"),
            ("message.timeout.ms", "60000"),
        ],
    );
    let signal = |sig: &str, b: &BrokerProcess| {
        let pid = b.child.id().to_string();
        assert!(std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    };
    let total = 3000;
    let mut pending = Vec::new();
    for i in 0..total {
        let v = format!("v{i}");
        let f = producer
            .send_result(
                FutureRecord::to("paused")
                    .key(&format!("k{}", i % 101))
                    .payload(&v),
            )
            .expect("queue has room");
        pending.push((v, f));
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if i == total / 3 {
            signal("-STOP", &brokers[1]);
        }
    }
    // Broker 2 is dropped by the others once its lease (1.5 s) ends.
    let survivors = [all[0], all[2]];
    wait_views(&survivors, "the paused broker dropped", |v| {
        v.brokers.iter().map(|b| b.0).collect::<Vec<_>>() == vec![1, 3]
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    signal("-CONT", &brokers[1]);
    // It renews its lease (same incarnation) and every broker lists it again.
    wait_views(&all, "the resumed broker back", |v| v.brokers.len() == 3).await;

    let mut acked: BTreeMap<(i32, i64), String> = BTreeMap::new();
    let mut failed = Vec::new();
    for (v, f) in pending {
        match f.await.expect("delivery future") {
            Ok(d) => assert!(
                acked.insert((d.partition, d.offset), v).is_none(),
                "offset given twice"
            ),
            Err((e, _)) => failed.push((v, e.to_string())),
        }
    }
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(acked.len(), total);
    check_log(all[1], "paused", 6, &acked).await;
}

/// A broker restarted with the same node id while the old process still runs (paused, so
/// it cannot notice): the new incarnation takes the row over; the old process, resumed,
/// finds itself fenced and sends clients away (NOT_LEADER_OR_FOLLOWER) for good, and the
/// cluster lists node 2 at the new process's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_incarnation_fences_the_old_process() {
    use rafka_client::kafka_protocol::messages::list_offsets_request::{
        ListOffsetsPartition, ListOffsetsTopic,
    };
    use rafka_client::kafka_protocol::messages::ListOffsetsRequest;
    let pg = Postgres::shared();
    let db = pg.fresh_database("cluster_fence");
    let scratch = tempfile::tempdir().unwrap();
    let brokers = start_cluster(scratch.path(), &db, &[1, 2]);
    crate::support::create_topic(&brokers[0].address, "fenced", 2, &[]).await;
    let list_offsets = |addr: String| async move {
        let (c, conn) = client(&addr).await;
        let r = c
            .call_on(
                &conn,
                &ListOffsetsRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_topics(vec![ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_static_str("fenced")))
                        .with_partitions(vec![ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(-1)])]),
                (1, 7),
            )
            .await
            .unwrap();
        r.topics[0].partitions[0].error_code
    };
    assert_eq!(list_offsets(brokers[1].address.clone()).await, 0);
    let old = &brokers[1];
    let pid = old.child.id().to_string();
    let kill = |sig: &str| {
        assert!(std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success())
    };
    kill("-STOP");
    let dir = scratch.path().join("b2-again");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = diskless_config(
        &dir,
        &db,
        &scratch.path().join("objects"),
        &format!("{FAST_LEASES}broker:\n  node_id: 2\n"),
    );
    let new = BrokerProcess::start_with_config(&dir, &cfg);
    kill("-CONT");
    let (a1, a_old, a_new) = (
        brokers[0].address.clone(),
        old.address.clone(),
        new.address.clone(),
    );
    wait_views(&[&a1, &a_new], "node 2 at its new address", |v| {
        v.brokers == vec![(1, port(&a1)), (2, port(&a_new))]
    })
    .await;
    // The old process's next heartbeat finds the row taken: fenced, for good.
    let deadline = Instant::now() + Duration::from_secs(10);
    while list_offsets(a_old.clone()).await != 6 {
        assert!(Instant::now() < deadline, "the old process still serves");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(list_offsets(a_old).await, 6, "NOT_LEADER_OR_FOLLOWER");
    assert_eq!(list_offsets(a_new).await, 0);
}

/// PostgreSQL restarted (fast shutdown, then started again on the same port and data)
/// while an idempotent librdkafka producer sends through three brokers: the produce
/// requests it catches fail and are retried, and the checker finds every acknowledged
/// record in the log exactly once at its acknowledged offset, one value per offset, offsets
/// contiguous, and the same bytes from every broker. A server of its own (the restart must
/// not touch the other tests' databases); leases at their defaults (9 s), longer than the
/// outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load_loses_nothing_acknowledged() {
    let pg = std::sync::Arc::new(Postgres::start());
    let db = pg.fresh_database("pg_restart");
    let scratch = tempfile::tempdir().unwrap();
    let objects = scratch.path().join("objects");
    let brokers: Vec<BrokerProcess> = (1..=3)
        .map(|i| {
            let dir = scratch.path().join(format!("b{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            let cfg = diskless_config(&dir, &db, &objects, &format!("broker:\n  node_id: {i}\n"));
            BrokerProcess::start_with_config(&dir, &cfg)
        })
        .collect();
    let addrs: Vec<String> = brokers.iter().map(|b| b.address.clone()).collect();
    let bootstrap = addrs.join(",");
    crate::support::create_topic(&addrs[0], "load", 6, &[]).await;

    let producer = crate::support::producer(
        &bootstrap,
        &[
            ("enable.idempotence", "true"),
            ("message.timeout.ms", "60000"),
        ],
    );
    let total = 3000;
    let mut pending = Vec::new();
    // The producer has its id and the cluster is producing before the restart: the
    // outage lands on produce requests, not on InitProducerId.
    let first = producer
        .send_result(FutureRecord::to("load").key("k0").payload("v0"))
        .expect("queue has room");
    pending.push(("v0".to_string(), first));
    let (v0, f0) = pending.pop().unwrap();
    let d0 = f0
        .await
        .expect("delivery future")
        .expect("the first record");
    let mut restart = None;
    let mut acked: BTreeMap<(i32, i64), String> = BTreeMap::new();
    acked.insert((d0.partition, d0.offset), v0);
    for i in 1..total {
        let v = format!("v{i}");
        let f = producer
            .send_result(
                FutureRecord::to("load")
                    .key(&format!("k{}", i % 101))
                    .payload(&v),
            )
            .expect("queue has room");
        pending.push((v, f));
        // About 1.2 s of sending; the restart begins a third of the way in, and sends go
        // on while the server is down.
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if i == total / 3 {
            let pg = pg.clone();
            restart = Some(tokio::task::spawn_blocking(move || pg.restart()));
        }
    }
    restart.expect("restarted").await.unwrap();
    let mut failed = Vec::new();
    for (v, f) in pending {
        match f.await.expect("delivery future") {
            Ok(d) => assert!(
                acked.insert((d.partition, d.offset), v).is_none(),
                "offset given twice"
            ),
            Err((e, _)) => failed.push((v, e.to_string())),
        }
    }
    assert!(
        failed.is_empty(),
        "the idempotent producer delivers everything: {failed:?}"
    );
    assert_eq!(acked.len(), total);

    // The checker: the whole log, read back through the cluster.
    let reader = bootstrap.clone();
    let log = tokio::task::spawn_blocking(move || {
        crate::support::consume(&reader, "load", 6, usize::MAX, Duration::from_secs(60))
    })
    .await
    .unwrap();
    let mut by_offset: BTreeMap<(i32, i64), String> = BTreeMap::new();
    let mut values = std::collections::BTreeSet::new();
    for r in &log {
        let v = String::from_utf8(r.value.clone().unwrap()).unwrap();
        assert!(values.insert(v.clone()), "{v} twice in the log");
        assert!(
            by_offset.insert((r.partition, r.offset), v).is_none(),
            "one value per offset"
        );
    }
    assert_eq!(by_offset, acked, "the log is exactly what was acknowledged");
    for p in 0..6 {
        let offsets: Vec<i64> = by_offset.keys().filter(|k| k.0 == p).map(|k| k.1).collect();
        assert_eq!(
            offsets,
            (0..offsets.len() as i64).collect::<Vec<_>>(),
            "partition {p}"
        );
    }
    // Every broker serves the same bytes after the restart.
    for p in 0..6 {
        let first = raw_log(&addrs[0], "load", p).await;
        for a in &addrs[1..] {
            assert!(raw_log(a, "load", p).await == first, "partition {p} at {a}");
        }
    }
    drop(brokers);
}

/// Object files a broker has finished uploading (the file store renames a finished upload
/// into place; partial uploads have another name).
fn uploaded(objects: &Path, node_id: i32) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(objects.join("objects").join(format!("b{node_id}")))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".batches"))
        .collect()
}

/// A broker SIGKILLed between an object's upload and its commit: the object is in the store
/// but not committed (state 0). The idempotent producer's retries go to the other broker,
/// nothing of the orphan is ever visible, and the survivor's sweeper deletes it after
/// `object_grace_ms`. The kill is aimed by watching for the victim's next object file; an
/// attempt whose commit won the race is repeated with a new victim process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the aimed kill misses the upload-commit window on a loaded machine (8 of 8 attempts once); run with --ignored until the kill is aimed by a fault point"]
async fn a_broker_killed_between_upload_and_commit_leaves_an_orphan_the_sweeper_removes() {
    let pg = Postgres::shared();
    let db = pg.fresh_database("cluster_orphan");
    let scratch = tempfile::tempdir().unwrap();
    let objects = scratch.path().join("objects");
    let start = |id: i32, attempt: usize| {
        let dir = scratch.path().join(format!("b{id}-{attempt}"));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = diskless_config(
            &dir,
            &db,
            &objects,
            &format!("{FAST_LEASES}  object_grace_ms: 2000\nbroker:\n  node_id: {id}\n"),
        );
        BrokerProcess::start_with_config(&dir, &cfg)
    };
    let survivor = start(2, 0);
    crate::support::create_topic(&survivor.address, "orphans", 4, &[]).await;
    let mut acked: BTreeMap<(i32, i64), String> = BTreeMap::new();
    let mut orphans = String::new();
    let mut sent = 0;
    for attempt in 1..=8 {
        let victim = start(1, attempt);
        let victim_addr = victim.address.clone();
        wait_views(&[&survivor.address], "the victim listed", |v| {
            v.brokers.len() == 2
        })
        .await;
        let producer = crate::support::producer(
            &format!("{victim_addr},{}", survivor.address),
            &[
                ("enable.idempotence", "true"),
                ("message.timeout.ms", "60000"),
                ("linger.ms", "2"),
            ],
        );
        // The watcher kills the victim as soon as a new object of its is in the store.
        let before = uploaded(&objects, 1);
        let watched = objects.clone();
        let watcher = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if uploaded(&watched, 1).difference(&before).next().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            victim.kill();
        });
        let mut pending = Vec::new();
        while !watcher.is_finished() && pending.len() < 20_000 {
            let v = format!("v{sent}");
            sent += 1;
            let f = producer
                .send_result(FutureRecord::to("orphans").key("k").payload(&v))
                .expect("queue has room");
            pending.push((v, f));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        watcher.join().unwrap();
        for (v, f) in pending {
            let d = f
                .await
                .expect("delivery future")
                .unwrap_or_else(|(e, _)| panic!("{v} not delivered: {e}"));
            assert!(
                acked.insert((d.partition, d.offset), v).is_none(),
                "offset given twice"
            );
        }
        orphans = query_text(
            &db,
            "SELECT coalesce(string_agg(object_key, ','), '') FROM rafka_objects \
             WHERE node_id = 1 AND state = 0",
        )
        .await;
        if !orphans.is_empty() {
            break;
        }
    }
    assert!(
        !orphans.is_empty(),
        "in 8 attempts the kill never landed between an upload and its commit"
    );
    // Nothing of the orphan is visible: the log is exactly what was acknowledged.
    check_log(&survivor.address, "orphans", 4, &acked).await;
    // The survivor's sweeper deletes the orphan (row and file) after the grace period.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = query_text(
            &db,
            &format!(
                "SELECT count(*)::text FROM rafka_objects WHERE object_key = ANY('{{{orphans}}}')"
            ),
        )
        .await;
        let files_left = orphans
            .split(',')
            .filter(|k| objects.join(k).exists())
            .count();
        if left == "0" && files_left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "orphans {orphans} still there: {left} rows, {files_left} files"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    check_log(&survivor.address, "orphans", 4, &acked).await;
}
