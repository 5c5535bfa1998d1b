//! rafka-producer against the in-process broker: records read intact by librdkafka, keys on
//! the partitions librdkafka's murmur2 partitioner (the Java client's) picks, every
//! compression codec, idempotent retries through a proxy that drops answers, and a full
//! buffer that blocks `send` and then fails after `max_block`.

use crate::proxy;
use crate::support;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rafka_producer::{Acks, Compression, Producer, ProducerError, Record};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use support::*;

async fn rafka_producer(bootstrap: &str) -> Producer {
    Producer::builder()
        .bootstrap(bootstrap)
        .build()
        .await
        .expect("producer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_reads_what_rafka_producer_wrote_with_every_codec() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path()).await;
    let addr = broker.bootstrap_address().to_string();
    for (i, codec) in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ]
    .into_iter()
    .enumerate()
    {
        let topic = format!("codec-{i}");
        create_topic(&addr, &topic, 1, &[]).await;
        let p = Producer::builder()
            .bootstrap(&addr)
            .compression(codec)
            .build()
            .await
            .unwrap();
        let mut futs = Vec::new();
        for n in 0..500 {
            let r = Record::to(&topic)
                .key(format!("k{n}"))
                .value(format!("value {n} {codec:?}"))
                .header("n", n.to_string());
            futs.push(p.enqueue(r).await.unwrap());
        }
        let md = p.send(Record::to(&topic).value("last")).await.unwrap();
        assert_eq!(md.offset, 500, "{codec:?}");
        for (n, f) in futs.into_iter().enumerate() {
            assert_eq!(f.await.unwrap().offset, n as i64);
        }
        p.close().await.unwrap();
        let a = addr.clone();
        let t = topic.clone();
        let got =
            tokio::task::spawn_blocking(move || consume(&a, &t, 1, 501, Duration::from_secs(20)))
                .await
                .unwrap();
        assert_eq!(got.len(), 501, "{codec:?}");
        for (n, m) in got.iter().take(500).enumerate() {
            assert_eq!(m.offset, n as i64);
            assert_eq!(m.key.as_deref(), Some(format!("k{n}").as_bytes()));
            assert_eq!(
                m.value.as_deref(),
                Some(format!("value {n} {codec:?}").as_bytes())
            );
            assert_eq!(
                m.headers,
                vec![("n".to_string(), Some(n.to_string().into_bytes()))]
            );
        }
    }
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_land_where_librdkafka_murmur2_puts_them() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path()).await;
    let addr = broker.bootstrap_address().to_string();
    create_topic(&addr, "keyed-rafka", 7, &[]).await;
    create_topic(&addr, "keyed-rdkafka", 7, &[]).await;
    let keys: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
    let p = rafka_producer(&addr).await;
    let mut ours = HashMap::new();
    for k in &keys {
        let md = p
            .send(Record::to("keyed-rafka").key(k.clone()).value("v"))
            .await
            .unwrap();
        ours.insert(k.clone(), md.partition);
        assert_eq!(
            md.partition,
            rafka_producer::partition_for_key(k.as_bytes(), 7)
        );
    }
    // librdkafka's murmur2_random is the Java client's default partitioner for keys.
    let rd = producer(&addr, &[("partitioner", "murmur2_random")]);
    for k in &keys {
        let delivery = rd
            .send(
                FutureRecord::to("keyed-rdkafka").key(k).payload("v"),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!(delivery.partition, ours[k], "key {k}");
    }
    // Keyless records stick to a partition per batch rather than spraying one per record.
    let mut futs = Vec::new();
    for _ in 0..100 {
        futs.push(
            p.enqueue(Record::to("keyed-rafka").value("x"))
                .await
                .unwrap(),
        );
    }
    let mut parts = std::collections::HashSet::new();
    for f in futs {
        parts.insert(f.await.unwrap().partition);
    }
    assert!(parts.len() <= 2, "sticky partitioning used {parts:?}");
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rafka_producer_reads_back_librdkafka_headers_roundtrip() {
    // librdkafka produces, rafka-producer produces to the same partition; offsets interleave
    // consistently and librdkafka reads both.
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path()).await;
    let addr = broker.bootstrap_address().to_string();
    create_topic(&addr, "mixed", 1, &[]).await;
    let rd = producer(&addr, &[]);
    rd.send(
        FutureRecord::to("mixed")
            .key("a")
            .payload("from librdkafka")
            .headers(OwnedHeaders::new().insert(Header {
                key: "h",
                value: Some("1"),
            })),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let p = rafka_producer(&addr).await;
    let md = p
        .send(Record::to("mixed").key("b").value("from rafka"))
        .await
        .unwrap();
    assert_eq!(md.offset, 1);
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retries_after_lost_answers_write_no_duplicates_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy::Proxy::start().await;
    let paddr = proxy.address.clone();
    let broker = start_broker_with(dir.path(), |c| {
        c.broker.advertised_listener = Some(paddr.clone());
    })
    .await;
    proxy.set_upstream(&broker.bootstrap_address().to_string());
    let addr = proxy.address.clone();
    create_topic(&broker.bootstrap_address().to_string(), "idem", 2, &[]).await;
    let p = Producer::builder()
        .bootstrap(&addr)
        .request_timeout(Duration::from_millis(800))
        .linger(Duration::from_millis(2))
        .batch_size(2048)
        .retries(50)
        .build()
        .await
        .unwrap();
    assert!(p.producer_id() >= 0);
    proxy
        .faults
        .drop_every_nth_produce
        .store(7, Ordering::SeqCst);
    let n = 3000;
    let mut futs = Vec::new();
    for i in 0..n {
        let r = Record::to("idem").partition(i % 2).value(format!("{i:06}"));
        futs.push(p.enqueue(r).await.unwrap());
        // In waves longer than the linger: dozens of produce requests, not a few large
        // ones (a fast broker drains everything enqueued at once into one request).
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    for f in futs {
        f.await.expect("delivered despite lost answers");
    }
    assert!(
        proxy.faults.dropped.load(Ordering::SeqCst) > 0,
        "the proxy dropped answers"
    );
    let a = broker.bootstrap_address().to_string();
    let got = tokio::task::spawn_blocking(move || {
        consume(&a, "idem", 2, n as usize, Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert_eq!(got.len(), n as usize, "no record lost, none duplicated");
    for part in 0..2 {
        let values: Vec<i32> = got
            .iter()
            .filter(|m| m.partition == part)
            .map(|m| {
                String::from_utf8_lossy(m.value.as_ref().unwrap())
                    .parse()
                    .unwrap()
            })
            .collect();
        let expected: Vec<i32> = (0..n).filter(|i| i % 2 == part).collect();
        assert_eq!(values, expected, "partition {part} in order, exactly once");
    }
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_buffer_blocks_send_then_fails_after_max_block() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy::Proxy::start().await;
    let paddr = proxy.address.clone();
    let broker = start_broker_with(dir.path(), |c| {
        c.broker.advertised_listener = Some(paddr.clone());
    })
    .await;
    proxy.set_upstream(&broker.bootstrap_address().to_string());
    create_topic(&broker.bootstrap_address().to_string(), "full", 1, &[]).await;
    let p = Producer::builder()
        .bootstrap(&proxy.address)
        .buffer_memory(64 * 1024)
        .batch_size(8 * 1024)
        .max_block(Duration::from_millis(700))
        .request_timeout(Duration::from_secs(30))
        .acks(Acks::All)
        .build()
        .await
        .unwrap();
    // Warm the metadata, then the broker's answers stop coming.
    p.send(Record::to("full").value("warm")).await.unwrap();
    proxy.faults.drop_all.store(true, Ordering::SeqCst);
    let value = vec![b'x'; 1000];
    let mut accepted = 0usize;
    let started = Instant::now();
    let err = loop {
        match p.enqueue(Record::to("full").value(value.clone())).await {
            Ok(_f) => accepted += 1,
            Err(e) => break e,
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "send never blocked"
        );
    };
    assert!(matches!(err, ProducerError::BufferFull { .. }), "{err}");
    // The buffer bound held: at most 64 KiB of ~1 KiB records.
    assert!(
        accepted <= 64,
        "accepted {accepted} records into a 64 KiB buffer"
    );
    assert!(accepted >= 40, "accepted only {accepted}");
    // The failing call waited max_block, not less and not forever.
    let t = Instant::now();
    let e = p
        .enqueue(Record::to("full").value(value.clone()))
        .await
        .unwrap_err();
    let waited = t.elapsed();
    assert!(matches!(e, ProducerError::BufferFull { .. }));
    assert!(
        waited >= Duration::from_millis(650) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    drop(p);
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_at_the_delivery_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy::Proxy::start().await;
    let paddr = proxy.address.clone();
    let broker = start_broker_with(dir.path(), |c| {
        c.broker.advertised_listener = Some(paddr.clone());
    })
    .await;
    proxy.set_upstream(&broker.bootstrap_address().to_string());
    create_topic(&broker.bootstrap_address().to_string(), "late", 1, &[]).await;
    let p = Producer::builder()
        .bootstrap(&proxy.address)
        .request_timeout(Duration::from_millis(300))
        .retries(1_000)
        .delivery_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    p.send(Record::to("late").value("warm")).await.unwrap();
    // Answers stop: every attempt times out, and the retries (1,000 allowed) must stop at
    // the delivery timeout rather than run for minutes.
    proxy.faults.drop_all.store(true, Ordering::SeqCst);
    let t = Instant::now();
    let e = p
        .send(Record::to("late").value("lost answer"))
        .await
        .unwrap_err();
    let took = t.elapsed();
    match &e {
        ProducerError::DeliveryTimeout { after, last } => {
            assert_eq!(*after, Duration::from_secs(2));
            assert!(matches!(**last, ProducerError::Client(_)), "{last}");
        }
        other => panic!("expected a delivery timeout, got {other}"),
    }
    assert!(took < Duration::from_secs(10), "gave up after {took:?}");
    // Answers flow again: the producer goes on (the broker had the batch; the retry of the
    // next one is in sequence).
    proxy.faults.drop_all.store(false, Ordering::SeqCst);
    let m = p.send(Record::to("late").value("after")).await.unwrap();
    assert!(m.offset >= 1, "{m:?}");
    p.close().await.unwrap();
    broker.shutdown().await.unwrap();
}

/// Two rafka-producers with one `transactional_id`: the second's `init_transactions` fences
/// the first (same producer id, higher epoch) and aborts its open transaction; the
/// first's later send, commit and abort fail as fatal, and nothing it wrote is visible to a
/// read_committed reader, while the second's transaction commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_rafka_producer_is_fenced() {
    use crate::transactions::{blocking, broker, read_all};
    use kafka_protocol::ResponseError;

    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path()).await;
    let addr = b.bootstrap_address().to_string();
    create_topic(&addr, "zombie", 2, &[]).await;
    let txn = |id: &str| {
        Producer::builder()
            .bootstrap(&addr)
            .transactional_id(id)
            .max_block(Duration::from_secs(10))
            .build()
    };
    let old = txn("zombie-id").await.unwrap();
    assert!(matches!(
        old.send(Record::to("zombie").partition(0).key("early"))
            .await,
        Err(ProducerError::TxnState {
            operation: "send",
            ..
        })
    ));
    old.init_transactions().await.unwrap();
    old.begin_transaction().unwrap();
    old.send(Record::to("zombie").partition(0).key("old-1"))
        .await
        .unwrap();
    let new = txn("zombie-id").await.unwrap();
    new.init_transactions().await.unwrap();
    assert_eq!(new.producer_id(), old.producer_id());
    assert!(new.producer_epoch() > old.producer_epoch());
    let fenced = |e: &ProducerError| {
        e.is_fatal()
            && matches!(
                e.kafka_error(),
                Some(ResponseError::ProducerFenced | ResponseError::InvalidProducerEpoch)
            )
    };
    // A partition already in the old transaction (Produce) and a new one
    // (AddPartitionsToTxn): both refused for the stale epoch.
    let e = old
        .send(Record::to("zombie").partition(0).key("old-2"))
        .await
        .unwrap_err();
    assert!(fenced(&e), "{e}");
    let e = old
        .send(Record::to("zombie").partition(1).key("old-3"))
        .await
        .unwrap_err();
    assert!(e.is_fatal(), "{e}");
    assert!(old.commit_transaction().await.unwrap_err().is_fatal());
    assert!(old.abort_transaction().await.unwrap_err().is_fatal());
    new.begin_transaction().unwrap();
    for part in 0..2 {
        new.send(
            Record::to("zombie")
                .partition(part)
                .key(format!("new-{part}")),
        )
        .await
        .unwrap();
    }
    new.commit_transaction().await.unwrap();
    let a = addr.clone();
    let got =
        blocking(move || read_all(&a, "zombie", 2, "read_committed", Duration::from_secs(2))).await;
    let keys: Vec<&str> = got.iter().map(|g| g.2.as_str()).collect();
    assert_eq!(keys, vec!["new-0", "new-1"]);
    b.shutdown().await.unwrap();
}

/// Consume-transform-produce with rafka-consumer and rafka-producer:
/// `send_offsets_to_transaction` makes the group's offset 5 visible only when the
/// transaction commits; an aborted transaction's offsets (2) and records never show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_sent_to_a_rafka_transaction_commit_only_with_it() {
    use crate::transactions::broker;
    use rafka_consumer::{Consumer, OffsetReset};
    use std::collections::BTreeMap;

    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path()).await;
    let addr = b.bootstrap_address().to_string();
    create_topic(&addr, "eos-in", 1, &[]).await;
    create_topic(&addr, "eos-out", 1, &[]).await;
    let plain = rafka_producer(&addr).await;
    for i in 0..5 {
        plain
            .send(Record::to("eos-in").partition(0).key(format!("in-{i}")))
            .await
            .unwrap();
    }
    let consumer = Consumer::builder()
        .bootstrap(&addr)
        .group("eos-g")
        .subscribe(["eos-in"])
        .auto_commit(false)
        .auto_offset_reset(OffsetReset::Earliest)
        .fetch_max_wait(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    let mut keys = Vec::new();
    for _ in 0..5 {
        let r = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
            .await
            .expect("a record")
            .unwrap();
        keys.push(String::from_utf8_lossy(&r.key.unwrap()).into_owned());
    }
    let group = consumer.group_metadata().unwrap();
    assert!(group.generation_id > 0 && !group.member_id.is_empty());
    let p = Producer::builder()
        .bootstrap(&addr)
        .transactional_id("eos-id")
        .build()
        .await
        .unwrap();
    p.init_transactions().await.unwrap();
    let offsets = |o: i64| BTreeMap::from([(("eos-in".to_string(), 0), o)]);
    let committed = || async {
        p.client()
            .committed_offsets("eos-g", None)
            .await
            .unwrap()
            .get(&("eos-in".to_string(), 0))
            .copied()
    };
    p.begin_transaction().unwrap();
    for k in &keys {
        p.enqueue(Record::to("eos-out").partition(0).key(format!("{k}-out")))
            .await
            .unwrap();
    }
    p.send_offsets_to_transaction(&offsets(5), &group)
        .await
        .unwrap();
    assert_eq!(committed().await, None, "pending until the commit");
    p.commit_transaction().await.unwrap();
    assert_eq!(committed().await, Some(5));
    p.begin_transaction().unwrap();
    p.send(Record::to("eos-out").partition(0).key("aborted-out"))
        .await
        .unwrap();
    p.send_offsets_to_transaction(&offsets(2), &group)
        .await
        .unwrap();
    p.abort_transaction().await.unwrap();
    assert_eq!(committed().await, Some(5));
    let reader = Consumer::builder()
        .bootstrap(&addr)
        .assign([("eos-out", 0)])
        .auto_offset_reset(OffsetReset::Earliest)
        .fetch_max_wait(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Ok(r) = tokio::time::timeout(Duration::from_secs(2), reader.recv()).await {
        out.push(String::from_utf8_lossy(&r.unwrap().key.unwrap()).into_owned());
    }
    assert_eq!(
        out,
        (0..5).map(|i| format!("in-{i}-out")).collect::<Vec<_>>()
    );
    b.shutdown().await.unwrap();
}

/// A batch the broker refuses (MESSAGE_TOO_LARGE) makes the transaction abortable: the
/// send and then the commit fail with `TxnAbortable`, the abort succeeds and takes a new
/// epoch (the failed batch used up a sequence number), and the next transaction to the same
/// partition commits; read_committed sees only it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_makes_the_transaction_abortable() {
    use crate::transactions::{blocking, broker, read_all};
    use kafka_protocol::ResponseError;

    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path()).await;
    let addr = b.bootstrap_address().to_string();
    create_topic(&addr, "abortable", 1, &[("max.message.bytes", "2000")]).await;
    let p = Producer::builder()
        .bootstrap(&addr)
        .transactional_id("abortable-id")
        .build()
        .await
        .unwrap();
    p.init_transactions().await.unwrap();
    let epoch = p.producer_epoch();
    p.begin_transaction().unwrap();
    p.send(Record::to("abortable").partition(0).key("ok-1"))
        .await
        .unwrap();
    let e = p
        .send(
            Record::to("abortable")
                .partition(0)
                .key("big")
                .value(vec![b'x'; 10_000]),
        )
        .await
        .unwrap_err();
    assert!(e.is_abortable(), "{e}");
    assert_eq!(e.kafka_error(), Some(ResponseError::MessageTooLarge));
    // No more sends, and no commit: only an abort.
    assert!(p
        .send(Record::to("abortable").partition(0).key("after"))
        .await
        .unwrap_err()
        .is_abortable());
    assert!(p.commit_transaction().await.unwrap_err().is_abortable());
    p.abort_transaction().await.unwrap();
    assert_eq!(p.producer_epoch(), epoch + 1, "the abort bumped the epoch");
    p.begin_transaction().unwrap();
    p.send(Record::to("abortable").partition(0).key("ok-2"))
        .await
        .unwrap();
    p.commit_transaction().await.unwrap();
    let a = addr.clone();
    let got =
        blocking(move || read_all(&a, "abortable", 1, "read_committed", Duration::from_secs(2)))
            .await;
    let keys: Vec<&str> = got.iter().map(|g| g.2.as_str()).collect();
    assert_eq!(keys, vec!["ok-2"]);
    b.shutdown().await.unwrap();
}
