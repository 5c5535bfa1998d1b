//! The idempotent producer over raw requests: InitProducerId, duplicate batches answered
//! with their original offsets and not written again, sequence gaps and fenced epochs
//! refused, and what a consumer reads back holding every record exactly once.

use crate::common;

use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId, RequestKind, ResponseKind,
    TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use common::{
    batch_builder, create_topic, decode_records, fetch, log_end_offset, produce, start_broker,
    FetchArgs, KafkaConn,
};
use rafka_core::batch::BatchBuilder;
use rafka_core::Offset;

const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_REQUEST: i16 = 42;
const PRODUCER_FENCED: i16 = 90;

async fn init_producer_id(
    conn: &mut KafkaConn,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    init_producer_id_v(conn, req, 4).await
}

async fn init_producer_id_v(
    conn: &mut KafkaConn,
    req: InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    let ResponseKind::InitProducerId(r) = conn
        .send(
            ApiKey::InitProducerId,
            version,
            RequestKind::InitProducerId(req),
        )
        .await
    else {
        panic!("not an InitProducerId response")
    };
    r
}

fn new_producer() -> InitProducerIdRequest {
    InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

/// An idempotent batch of `n` records keyed `{prefix}-{i}`.
fn idempotent(pid: i64, epoch: i16, seq: i32, prefix: &str, n: usize) -> bytes::Bytes {
    batch_builder(
        BatchBuilder::new(Offset(0)).producer(pid, epoch, seq),
        prefix,
        n,
        1_000,
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_gaps_and_fencing() {
    let broker = start_broker(|_| {}).await;
    let mut conn = KafkaConn::connect(&broker.addr()).await;
    assert_eq!(create_topic(&mut conn, "idem", 1, &[]).await, 0);

    let init = init_producer_id(&mut conn, new_producer()).await;
    assert_eq!(init.error_code, 0);
    let pid = init.producer_id.0;
    assert!(pid >= 0, "producer id {pid}");
    assert_eq!(init.producer_epoch, 0);
    // A second producer gets a different id.
    let other = init_producer_id(&mut conn, new_producer()).await;
    assert_eq!(other.error_code, 0);
    assert_ne!(other.producer_id.0, pid);

    // First batch: sequences 0..=2 at offsets 0..=2.
    let a = idempotent(pid, 0, 0, "a", 3);
    let r = produce(&mut conn, "idem", 0, a.clone()).await;
    assert_eq!((r.error_code, r.base_offset), (0, 0));

    // The same bytes again (a retry after a lost response): the original offset, no error,
    // nothing written.
    let r = produce(&mut conn, "idem", 0, a.clone()).await;
    assert_eq!((r.error_code, r.base_offset), (0, 0), "duplicate answer");
    assert_eq!(log_end_offset(&mut conn, "idem", 0).await, 3);

    // A gap: sequence 5 when 3 is expected.
    let r = produce(&mut conn, "idem", 0, idempotent(pid, 0, 5, "gap", 1)).await;
    assert_eq!(r.error_code, OUT_OF_ORDER_SEQUENCE_NUMBER);
    assert_eq!(log_end_offset(&mut conn, "idem", 0).await, 3);

    // The next batch in sequence is fine after the refusal.
    let r = produce(&mut conn, "idem", 0, idempotent(pid, 0, 3, "b", 2)).await;
    assert_eq!((r.error_code, r.base_offset), (0, 3));

    // Bump the epoch (KIP-360: InitProducerId with the current id and epoch).
    let bumped = init_producer_id(
        &mut conn,
        new_producer()
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(0),
    )
    .await;
    assert_eq!(bumped.error_code, 0);
    assert_eq!((bumped.producer_id.0, bumped.producer_epoch), (pid, 1));
    // The new epoch starts again at sequence 0.
    let r = produce(&mut conn, "idem", 0, idempotent(pid, 1, 0, "c", 1)).await;
    assert_eq!((r.error_code, r.base_offset), (0, 5));

    // A zombie with the old epoch, continuing its old sequence: fenced.
    let r = produce(&mut conn, "idem", 0, idempotent(pid, 0, 5, "zombie", 1)).await;
    assert_eq!(r.error_code, INVALID_PRODUCER_EPOCH);
    // Its old batch resent is fenced too, not answered as a duplicate.
    let r = produce(&mut conn, "idem", 0, a).await;
    assert_eq!(r.error_code, INVALID_PRODUCER_EPOCH);
    assert_eq!(log_end_offset(&mut conn, "idem", 0).await, 6);

    // Everything, exactly once, in order.
    let data = fetch(&mut conn, "idem", 0, FetchArgs::at(0)).await;
    assert_eq!(data.error_code, 0);
    assert_eq!(data.high_watermark, 6);
    let (bases, records) = decode_records(data.records);
    assert_eq!(bases, vec![0, 3, 5]);
    let got: Vec<(i64, &str)> = records.iter().map(|r| (r.offset, r.key.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (0, "a-0"),
            (1, "a-1"),
            (2, "a-2"),
            (3, "b-0"),
            (4, "b-1"),
            (5, "c-0")
        ]
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transactional_id_gets_a_producer_id_from_the_transaction_coordinator() {
    let broker = start_broker(|_| {}).await;
    let mut conn = KafkaConn::connect(&broker.addr()).await;
    let txn = || {
        new_producer()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("txn-1"))))
    };
    let r = init_producer_id(&mut conn, txn()).await;
    assert_eq!(r.error_code, 0);
    assert!(r.producer_id.0 >= 0);
    assert_eq!(r.producer_epoch, 0);
    // A second instance with the same transactional id: same producer id, next epoch.
    let again = init_producer_id(&mut conn, txn()).await;
    assert_eq!(again.error_code, 0);
    assert_eq!(
        (again.producer_id.0, again.producer_epoch),
        (r.producer_id.0, 1)
    );
    // A plain idempotent producer still gets its own id.
    let plain = init_producer_id(&mut conn, new_producer()).await;
    assert_eq!(plain.error_code, 0);
    assert!(plain.producer_id.0 >= 0 && plain.producer_id.0 != r.producer_id.0);
    broker.shutdown().await;
}

/// KIP-360 for idempotent producers: a producer that hit a sequence gap re-initialises
/// with its id and current epoch and gets the next epoch (a retry of that request gets the
/// same answer), and its sequence restarted at 0 under the new epoch is accepted; a stale
/// or unknown-future epoch is fenced (PRODUCER_FENCED from v4, INVALID_PRODUCER_EPOCH
/// before); an id without an epoch is INVALID_REQUEST; at the last epoch a new producer id
/// at epoch 0 is handed out. Nothing refused changes the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_producer_reinitialises_with_an_epoch_bump() {
    let broker = start_broker(|_| {}).await;
    let mut conn = KafkaConn::connect(&broker.addr()).await;
    assert_eq!(create_topic(&mut conn, "kip360", 1, &[]).await, 0);
    let init = init_producer_id(&mut conn, new_producer()).await;
    assert_eq!((init.error_code, init.producer_epoch), (0, 0));
    let pid = init.producer_id.0;
    let r = produce(&mut conn, "kip360", 0, idempotent(pid, 0, 0, "a", 3)).await;
    assert_eq!((r.error_code, r.base_offset), (0, 0));
    // A gap (a batch lost after a delivery timeout): refused.
    let r = produce(&mut conn, "kip360", 0, idempotent(pid, 0, 4, "gap", 1)).await;
    assert_eq!(r.error_code, OUT_OF_ORDER_SEQUENCE_NUMBER);
    let with = |id: i64, epoch: i16| {
        new_producer()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch)
    };
    let bumped = init_producer_id(&mut conn, with(pid, 0)).await;
    assert_eq!(
        (
            bumped.error_code,
            bumped.producer_id.0,
            bumped.producer_epoch
        ),
        (0, pid, 1)
    );
    // The same request again (its answer lost): the same answer, no second bump.
    let again = init_producer_id_v(&mut conn, with(pid, 0), 3).await;
    assert_eq!(
        (again.error_code, again.producer_id.0, again.producer_epoch),
        (0, pid, 1)
    );
    // The sequence restarts at 0 under epoch 1.
    let r = produce(&mut conn, "kip360", 0, idempotent(pid, 1, 0, "b", 2)).await;
    assert_eq!((r.error_code, r.base_offset), (0, 3));
    let r = produce(&mut conn, "kip360", 0, idempotent(pid, 1, 2, "c", 1)).await;
    assert_eq!((r.error_code, r.base_offset), (0, 5));
    // Bump again from the current epoch 1: epoch 2.
    let bumped = init_producer_id(&mut conn, with(pid, 1)).await;
    assert_eq!((bumped.error_code, bumped.producer_epoch), (0, 2));
    // Stale (0) and ahead (7) epochs: fenced, by version.
    for (epoch, version, code) in [
        (0, 4, PRODUCER_FENCED),
        (0, 3, INVALID_PRODUCER_EPOCH),
        (7, 5, PRODUCER_FENCED),
    ] {
        let r = init_producer_id_v(&mut conn, with(pid, epoch), version).await;
        assert_eq!(
            (r.error_code, r.producer_id.0, r.producer_epoch),
            (code, -1, -1),
            "epoch {epoch} v{version}"
        );
    }
    // An id without an epoch.
    let r = init_producer_id_v(&mut conn, with(pid, -1), 3).await;
    assert_eq!((r.error_code, r.producer_id.0), (INVALID_REQUEST, -1));
    // Once epoch 2 has written, epoch 1 cannot write any more.
    let r = produce(&mut conn, "kip360", 0, idempotent(pid, 2, 0, "e", 1)).await;
    assert_eq!((r.error_code, r.base_offset), (0, 6));
    let r = produce(&mut conn, "kip360", 0, idempotent(pid, 1, 3, "zombie", 1)).await;
    assert_eq!(r.error_code, INVALID_PRODUCER_EPOCH);
    assert_eq!(log_end_offset(&mut conn, "kip360", 0).await, 7);

    // The last epoch: a new producer id at epoch 0 (an id this broker does not know, as
    // after a restart, is taken at the epoch it presents).
    let old = pid + 1_000_000;
    let fresh = init_producer_id(&mut conn, with(old, i16::MAX)).await;
    assert_eq!(fresh.error_code, 0);
    assert_eq!(fresh.producer_epoch, 0);
    assert!(fresh.producer_id.0 >= 0 && fresh.producer_id.0 != old && fresh.producer_id.0 != pid);
    let retry = init_producer_id(&mut conn, with(old, i16::MAX)).await;
    assert_eq!(
        (retry.producer_id.0, retry.producer_epoch),
        (fresh.producer_id.0, 0)
    );
    let r = produce(
        &mut conn,
        "kip360",
        0,
        idempotent(fresh.producer_id.0, 0, 0, "d", 1),
    )
    .await;
    assert_eq!((r.error_code, r.base_offset), (0, 7));

    let data = fetch(&mut conn, "kip360", 0, FetchArgs::at(0)).await;
    let (_, records) = decode_records(data.records);
    let got: Vec<(i64, &str)> = records.iter().map(|r| (r.offset, r.key.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (0, "a-0"),
            (1, "a-1"),
            (2, "a-2"),
            (3, "b-0"),
            (4, "b-1"),
            (5, "c-0"),
            (6, "e-0"),
            (7, "d-0")
        ]
    );
    broker.shutdown().await;
}
