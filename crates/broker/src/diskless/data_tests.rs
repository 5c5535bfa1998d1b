
/// Not a check: the committer's figures at `commit_interval_ms` 25 on one broker (16
/// producers, one 16 KiB batch in flight each, 5 s). Run with
/// `cargo test -p rafka-broker --lib commit_figures -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn commit_figures() {
    use std::sync::atomic::Ordering;
    let (d, _dir) = diskless_with("dl_figures", |c| c.commit_interval_ms = 25).await;
    let d = Arc::new(d);
    let id = topic(&d, "figures", 8).await;
    let value = "x".repeat(16 * 1024 - 100);
    let until = std::time::Instant::now() + Duration::from_secs(5);
    let mut tasks = Vec::new();
    for p in 0..16 {
        let (d, value) = (d.clone(), value.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut seq = 0;
            while std::time::Instant::now() < until {
                let b = BatchBuilder::new(Offset(0))
                    .producer(1000 + p as i64, 0, seq)
                    .kv(b"k", value.as_bytes(), Timestamp(1))
                    .build();
                seq += 1;
                let started = std::time::Instant::now();
                d.committer
                    .submit((id, p % 8), vec![ValidatedBatch::new(b).unwrap()])
                    .await
                    .unwrap();
                lat.push(started.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    lat.sort();
    let s = &d.committer.stats;
    let (objects, bytes, txns, micros) = (
        s.objects.load(Ordering::Relaxed),
        s.bytes.load(Ordering::Relaxed),
        s.transactions.load(Ordering::Relaxed),
        s.commit_micros.load(Ordering::Relaxed),
    );
    let gb = bytes as f64 / 1e9;
    println!(
        "submits {} p50 {:?} p99 {:?}; objects {objects} ({:.0}/GB), transactions {txns} \
         ({:.0}/GB), {:.1} MB/s, mean commit {} us",
        lat.len(),
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100],
        objects as f64 / gb,
        txns as f64 / gb,
        bytes as f64 / 5e6,
        micros / objects.max(1),
    );
}
