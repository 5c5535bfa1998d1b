//! Shared helpers for integration tests: an in-process broker on an ephemeral port and a raw
//! Kafka connection that speaks the wire protocol through the `kafka-protocol` crate.
//!
//! Every read is bounded by [`READ_TIMEOUT`], so a broker that stops answering fails the test
//! instead of hanging it. Helpers panic with a message on anything unexpected: they are for
//! tests only. Not every test file uses every helper, hence the `dead_code` allowance.

#![allow(dead_code)]

use std::io::ErrorKind;
use std::time::Duration;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::delete_records_response::DeleteRecordsPartitionResult;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::list_offsets_response::ListOffsetsPartitionResponse;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, CreateTopicsRequest, DeleteRecordsRequest, FetchRequest,
    ListOffsetsRequest, MetadataRequest, MetadataResponse, ProduceRequest, RequestHeader,
    RequestKind, ResponseHeader, ResponseKind, SaslAuthenticateRequest, SaslHandshakeRequest,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use rafka_broker::{Broker, Config};

/// Bound on every read from the broker.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest response frame the helpers accept (a sanity bound, not a broker limit).
const RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// A broker running in this process, with its data directory.
pub struct TestBroker {
    /// The broker; `None` once shut down.
    pub broker: Option<Broker>,
    /// Where it stores data; removed on drop, after the broker.
    pub dir: tempfile::TempDir,
}

impl TestBroker {
    /// `host:port` to connect to.
    pub fn addr(&self) -> String {
        self.broker
            .as_ref()
            .expect("broker is running")
            .bootstrap_address()
    }

    /// Stops the broker cleanly; the data directory stays until drop.
    pub async fn shutdown(mut self) {
        if let Some(b) = self.broker.take() {
            b.shutdown().await.expect("clean shutdown");
        }
    }
}

/// Starts a broker on `127.0.0.1:0` with a fresh data directory; `configure` may change the
/// configuration before start.
pub async fn start_broker(configure: impl FnOnce(&mut Config)) -> TestBroker {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = Config::default();
    cfg.broker.listen = "127.0.0.1:0".into();
    cfg.storage.path = dir.path().to_path_buf();
    configure(&mut cfg);
    let broker = Broker::start(cfg).await.expect("broker starts");
    TestBroker {
        broker: Some(broker),
        dir,
    }
}

/// A wire topic name.
pub fn topic_name(s: &str) -> TopicName {
    TopicName(str_bytes(s))
}

/// A wire string (group id, member id, config name, ...).
pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Encodes `body` as a size-prefixed request frame.
pub fn encode(api_key: ApiKey, version: i16, correlation_id: i32, body: &RequestKind) -> Bytes {
    if rafka_protocol::legacy::handles(api_key, version) {
        // Versions the kafka-protocol crate dropped (KIP-896): Rafka's own legacy encoder.
        return rafka_protocol::legacy::client_side::encode_request(
            api_key,
            version,
            correlation_id,
            "rafka-it",
            body,
        )
        .unwrap_or_else(|e| panic!("cannot encode {api_key:?} v{version}: {e}"));
    }
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("rafka-it")));
    rafka_protocol::connection::encode_request(&header, body)
        .unwrap_or_else(|e| panic!("cannot encode {api_key:?} v{version}: {e}"))
}

/// One raw client connection. Requests are sent one at a time unless a test writes frames
/// itself with [`KafkaConn::write_raw`] and reads them with [`KafkaConn::read_frame`].
pub struct KafkaConn {
    stream: TcpStream,
    next_correlation_id: i32,
}

impl KafkaConn {
    /// Connects to `addr` (within [`READ_TIMEOUT`]).
    pub async fn connect(addr: &str) -> KafkaConn {
        let stream = tokio::time::timeout(READ_TIMEOUT, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connect to {addr} timed out"))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_nodelay(true).expect("nodelay");
        KafkaConn {
            stream,
            next_correlation_id: 1,
        }
    }

    /// Connects to `addr` from the local address `from` (a loopback address other than
    /// 127.0.0.1 stands for another client host).
    pub async fn connect_from(addr: &str, from: std::net::IpAddr) -> KafkaConn {
        let addr: std::net::SocketAddr = addr.parse().expect("a socket address");
        let socket = match from {
            std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .expect("socket");
        socket
            .bind(std::net::SocketAddr::new(from, 0))
            .unwrap_or_else(|e| panic!("bind {from}: {e}"));
        let stream = tokio::time::timeout(READ_TIMEOUT, socket.connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connect to {addr} timed out"))
            .unwrap_or_else(|e| panic!("connect to {addr} from {from}: {e}"));
        stream.set_nodelay(true).expect("nodelay");
        KafkaConn {
            stream,
            next_correlation_id: 1,
        }
    }

    /// The correlation id the next [`KafkaConn::send`] will use.
    pub fn next_correlation_id(&self) -> i32 {
        self.next_correlation_id
    }

    /// Authenticates this connection to a SASL listener as `user` with PLAIN
    /// (SaslHandshake v1, then SaslAuthenticate v2), asserting that both succeed.
    pub async fn authenticate_plain(&mut self, user: &str, password: &str) {
        let handshake = SaslHandshakeRequest::default().with_mechanism(str_bytes("PLAIN"));
        let hs = self
            .send(
                ApiKey::SaslHandshake,
                1,
                RequestKind::SaslHandshake(handshake),
            )
            .await;
        assert!(
            matches!(&hs, ResponseKind::SaslHandshake(r) if r.error_code == 0),
            "SaslHandshake PLAIN: {hs:?}"
        );
        let token = rafka_protocol::sasl::plain::encode(user, password);
        let auth = self
            .send(
                ApiKey::SaslAuthenticate,
                2,
                RequestKind::SaslAuthenticate(
                    SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
                ),
            )
            .await;
        assert!(
            matches!(&auth, ResponseKind::SaslAuthenticate(r) if r.error_code == 0),
            "SaslAuthenticate PLAIN as {user}: {auth:?}"
        );
    }

    /// Sends a request and returns its response, checking the correlation id.
    pub async fn send(&mut self, api_key: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let frame = encode(api_key, version, correlation_id, &body);
        self.write_raw(&frame).await;
        let frame = self.read_frame().await.unwrap_or_else(|| {
            panic!("connection closed instead of a {api_key:?} v{version} response")
        });
        decode_response(api_key, version, correlation_id, frame)
    }

    /// Writes bytes as they are.
    pub async fn write_raw(&mut self, bytes: &[u8]) {
        tokio::time::timeout(READ_TIMEOUT, self.stream.write_all(bytes))
            .await
            .expect("write timed out")
            .expect("write failed");
    }

    /// Writes bytes, tolerating a connection the broker has already closed.
    pub async fn try_write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match tokio::time::timeout(READ_TIMEOUT, self.stream.write_all(bytes)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(ErrorKind::TimedOut, "write timed out")),
        }
    }

    /// Half-closes the write side (the broker reads EOF).
    pub async fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown().await;
    }

    /// Reads one response frame (without its size prefix); `None` on a clean EOF before
    /// the first byte of the frame. Panics on a timeout or a partial frame.
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        let mut size = [0u8; 4];
        match tokio::time::timeout(READ_TIMEOUT, self.stream.read_exact(&mut size)).await {
            Err(_) => panic!("no response within {READ_TIMEOUT:?}"),
            Ok(Err(e)) if is_closed(&e) => return None,
            Ok(Err(e)) => panic!("read failed: {e}"),
            Ok(Ok(_)) => {}
        }
        let len = i32::from_be_bytes(size);
        assert!(
            len >= 4 && (len as usize) <= RESPONSE_BYTES_MAX,
            "implausible response size {len}"
        );
        let mut frame = vec![0u8; len as usize];
        tokio::time::timeout(READ_TIMEOUT, self.stream.read_exact(&mut frame))
            .await
            .expect("response body timed out")
            .expect("response body truncated");
        Some(Bytes::from(frame))
    }

    /// Reads one raw SASL token (SaslHandshake v0 framing: a size prefix, then the token,
    /// no header; it may be empty); `None` on a clean EOF.
    pub async fn read_raw_token(&mut self) -> Option<Bytes> {
        let mut size = [0u8; 4];
        match tokio::time::timeout(READ_TIMEOUT, self.stream.read_exact(&mut size)).await {
            Err(_) => panic!("no token within {READ_TIMEOUT:?}"),
            Ok(Err(e)) if is_closed(&e) => return None,
            Ok(Err(e)) => panic!("read failed: {e}"),
            Ok(Ok(_)) => {}
        }
        let len = i32::from_be_bytes(size);
        assert!(
            (0..=64 * 1024).contains(&len),
            "implausible token size {len}"
        );
        let mut token = vec![0u8; len as usize];
        tokio::time::timeout(READ_TIMEOUT, self.stream.read_exact(&mut token))
            .await
            .expect("token timed out")
            .expect("token truncated");
        Some(Bytes::from(token))
    }

    /// Asserts that the broker closes the connection without sending anything more.
    pub async fn expect_closed(&mut self) {
        let mut buf = [0u8; 256];
        match tokio::time::timeout(READ_TIMEOUT, self.stream.read(&mut buf)).await {
            Err(_) => panic!("connection still open after {READ_TIMEOUT:?}"),
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => panic!(
                "expected the connection closed, got {n} bytes: {:?}",
                &buf[..n]
            ),
            Ok(Err(e)) if is_closed(&e) => {}
            Ok(Err(e)) => panic!("read failed: {e}"),
        }
    }

    /// A round trip that must succeed: ApiVersions v3, error code 0.
    pub async fn check_alive(&mut self) {
        let ResponseKind::ApiVersions(r) = self
            .send(
                ApiKey::ApiVersions,
                3,
                RequestKind::ApiVersions(
                    ApiVersionsRequest::default()
                        .with_client_software_name(StrBytes::from_static_str("rafka-it"))
                        .with_client_software_version(StrBytes::from_static_str("1")),
                ),
            )
            .await
        else {
            panic!("not an ApiVersions response")
        };
        assert_eq!(r.error_code, 0);
        assert!(!r.api_keys.is_empty());
    }
}

fn is_closed(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
    )
}

/// Decodes a response frame (no size prefix), checking the correlation id and that the
/// body is consumed exactly.
pub fn decode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    mut frame: Bytes,
) -> ResponseKind {
    let header = ResponseHeader::decode(&mut frame, api_key.response_header_version(version))
        .unwrap_or_else(|e| panic!("{api_key:?} v{version} response header: {e}"));
    assert_eq!(
        header.correlation_id, correlation_id,
        "{api_key:?} v{version}: correlation id"
    );
    let body = if rafka_protocol::legacy::handles(api_key, version) {
        rafka_protocol::legacy::client_side::decode_response_body(api_key, version, &mut frame)
            .unwrap_or_else(|e| panic!("{api_key:?} v{version} legacy response body: {e}"))
    } else {
        ResponseKind::decode(api_key, &mut frame, version)
            .unwrap_or_else(|e| panic!("{api_key:?} v{version} response body: {e}"))
    };
    assert_eq!(
        frame.remaining(),
        0,
        "{api_key:?} v{version}: trailing bytes in the response"
    );
    body
}

/// CreateTopics v7 for one topic; returns its error code.
pub async fn create_topic(
    conn: &mut KafkaConn,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> i16 {
    let configs = configs
        .iter()
        .map(|(k, v)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(k.to_string()))
                .with_value(Some(StrBytes::from_string(v.to_string())))
        })
        .collect();
    let topic = CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
        .with_configs(configs);
    let ResponseKind::CreateTopics(r) = conn
        .send(
            ApiKey::CreateTopics,
            7,
            RequestKind::CreateTopics(
                CreateTopicsRequest::default()
                    .with_topics(vec![topic])
                    .with_timeout_ms(5000),
            ),
        )
        .await
    else {
        panic!("not a CreateTopics response")
    };
    assert_eq!(r.topics.len(), 1);
    r.topics[0].error_code
}

/// Produce v9 of one record set to one partition; returns the partition's response.
pub async fn produce(
    conn: &mut KafkaConn,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> PartitionProduceResponse {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])]);
    let ResponseKind::Produce(r) = conn
        .send(ApiKey::Produce, 9, RequestKind::Produce(req))
        .await
    else {
        panic!("not a Produce response")
    };
    assert_eq!(r.responses.len(), 1);
    assert_eq!(r.responses[0].partition_responses.len(), 1);
    r.responses[0].partition_responses[0].clone()
}

/// DeleteRecords v2 of one partition up to `offset`: that partition's result.
pub async fn delete_records(
    conn: &mut KafkaConn,
    topic: &str,
    partition: i32,
    offset: i64,
) -> DeleteRecordsPartitionResult {
    let req = DeleteRecordsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(partition)
                .with_offset(offset)])]);
    let ResponseKind::DeleteRecords(r) = conn
        .send(ApiKey::DeleteRecords, 2, RequestKind::DeleteRecords(req))
        .await
    else {
        panic!("not a DeleteRecords response")
    };
    r.topics[0].partitions[0].clone()
}

/// ListOffsets timestamp for the log end offset.
pub const LATEST: i64 = -1;
/// ListOffsets timestamp for the log start offset.
pub const EARLIEST: i64 = -2;

/// ListOffsets v7 for one partition.
pub async fn list_offsets(
    conn: &mut KafkaConn,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> ListOffsetsPartitionResponse {
    let req = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_current_leader_epoch(-1)
                .with_timestamp(timestamp)])]);
    let ResponseKind::ListOffsets(r) = conn
        .send(ApiKey::ListOffsets, 7, RequestKind::ListOffsets(req))
        .await
    else {
        panic!("not a ListOffsets response")
    };
    r.topics[0].partitions[0].clone()
}

/// The log end offset of a partition (ListOffsets latest), asserting no error.
pub async fn log_end_offset(conn: &mut KafkaConn, topic: &str, partition: i32) -> i64 {
    let r = list_offsets(conn, topic, partition, LATEST).await;
    assert_eq!(r.error_code, 0, "ListOffsets latest of {topic}-{partition}");
    r.offset
}

/// Parameters of a one-partition fetch.
#[derive(Debug, Clone, Copy)]
pub struct FetchArgs {
    /// First offset wanted.
    pub offset: i64,
    /// Request-level `max_bytes`.
    pub max_bytes: i32,
    /// Partition-level `partition_max_bytes`.
    pub partition_max_bytes: i32,
    /// `max_wait_ms`.
    pub max_wait_ms: i32,
    /// `min_bytes`.
    pub min_bytes: i32,
}

impl FetchArgs {
    /// An immediate fetch from `offset` with generous byte limits.
    pub fn at(offset: i64) -> FetchArgs {
        FetchArgs {
            offset,
            max_bytes: 1 << 20,
            partition_max_bytes: 1 << 20,
            max_wait_ms: 0,
            min_bytes: 0,
        }
    }
}

/// The Fetch request for one partition, by name (v12 and below) or by topic id (v13+).
pub fn fetch_request(
    topic: &str,
    topic_id: uuid::Uuid,
    partition: i32,
    a: FetchArgs,
) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(a.max_wait_ms)
        .with_min_bytes(a.min_bytes)
        .with_max_bytes(a.max_bytes)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_topic_id(topic_id)
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(a.offset)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(a.partition_max_bytes)])])
}

/// Fetch v12 (by topic name) of one partition; returns the partition's data.
pub async fn fetch(
    conn: &mut KafkaConn,
    topic: &str,
    partition: i32,
    a: FetchArgs,
) -> PartitionData {
    let req = fetch_request(topic, Default::default(), partition, a);
    let ResponseKind::Fetch(r) = conn.send(ApiKey::Fetch, 12, RequestKind::Fetch(req)).await else {
        panic!("not a Fetch response")
    };
    assert_eq!(r.error_code, 0, "Fetch top-level error");
    assert_eq!(r.responses.len(), 1);
    assert_eq!(r.responses[0].partitions.len(), 1);
    r.responses[0].partitions[0].clone()
}

/// Metadata v12 for the named topics (all topics for `None`), no auto-creation.
pub async fn metadata(conn: &mut KafkaConn, topics: Option<&[&str]>) -> MetadataResponse {
    let topics = topics.map(|ts| {
        ts.iter()
            .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
            .collect()
    });
    let ResponseKind::Metadata(r) = conn
        .send(
            ApiKey::Metadata,
            12,
            RequestKind::Metadata(
                MetadataRequest::default()
                    .with_topics(topics)
                    .with_allow_auto_topic_creation(false),
            ),
        )
        .await
    else {
        panic!("not a Metadata response")
    };
    r
}

/// An uncompressed batch of `n` records with keys `{prefix}-{i}`, values `value-{i}` and
/// timestamps `ts0 + i`, without producer id.
pub fn simple_batch(prefix: &str, n: usize, ts0: i64) -> rafka_core::RecordBatch {
    batch_builder(
        rafka_core::batch::BatchBuilder::new(rafka_core::Offset(0)),
        prefix,
        n,
        ts0,
    )
}

/// Adds the records [`simple_batch`] would hold to `b` and builds it.
pub fn batch_builder(
    mut b: rafka_core::batch::BatchBuilder,
    prefix: &str,
    n: usize,
    ts0: i64,
) -> rafka_core::RecordBatch {
    for i in 0..n {
        b = b.kv(
            format!("{prefix}-{i}").as_bytes(),
            format!("value-{i}").as_bytes(),
            rafka_core::Timestamp(ts0 + i as i64),
        );
    }
    b.build()
}

/// One record read back from a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRecord {
    /// Its offset (base offset + position in the batch).
    pub offset: i64,
    /// Key as text.
    pub key: String,
    /// Value as text.
    pub value: String,
    /// Record timestamp.
    pub timestamp: i64,
}

/// Splits fetched bytes into whole batches (asserting there is no partial batch) and
/// decodes their records; also returns each batch's base offset.
pub fn decode_records(records: Option<Bytes>) -> (Vec<i64>, Vec<FetchedRecord>) {
    let bytes = records.unwrap_or_default();
    let batches = rafka_core::RecordBatch::split_all(bytes).expect("whole batches");
    let mut bases = Vec::new();
    let mut out = Vec::new();
    for b in batches {
        b.validate().expect("fetched batch validates");
        let base = b.base_offset().0;
        bases.push(base);
        let recs = b
            .decode_uncompressed()
            .expect("uncompressed records decode");
        assert_eq!(recs.len(), b.record_count() as usize);
        for (i, r) in recs.into_iter().enumerate() {
            let text = |v: Option<Bytes>| {
                String::from_utf8(v.unwrap_or_default().to_vec()).expect("utf-8")
            };
            out.push(FetchedRecord {
                offset: base + i as i64,
                key: text(r.key),
                value: text(r.value),
                timestamp: r.timestamp.0,
            });
        }
    }
    (bases, out)
}
