//! Every hard bound in Rafka, with why it exists and what happens at the edge.
//! Configuration may lower these, never raise them.

/// Largest request frame we buffer; checked against the size prefix before allocating.
/// Same default as Kafka's `socket.request.max.bytes`. A larger prefix closes the connection.
pub const REQUEST_BYTES_MAX: usize = 100 * 1024 * 1024;
const _: () = assert!(REQUEST_BYTES_MAX <= i32::MAX as usize);

/// Kafka's limit on topic-name length (249, so `<topic>-<partition>` fits a 255-byte file name).
pub const TOPIC_NAME_LEN_MAX: usize = 249;

/// Most partitions one topic may have; CreateTopics / CreatePartitions above it get
/// INVALID_PARTITIONS.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;

/// Largest record batch any engine accepts, whatever `max.message.bytes` says.
/// A segment file position is a u32, so a batch must fit far below 4 GiB.
pub const BATCH_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Largest records section the broker decompresses from one produced batch, to check its
/// keys or timestamps or to recompress it to the topic's `compression.type`. Past it the
/// batch is refused as corrupt.
pub const RECORDS_DECOMPRESSED_BYTES_MAX: usize = BATCH_BYTES_MAX;

/// Largest records section the cleaner decompresses from one compressed batch (a
/// compressed batch itself is at most [`BATCH_BYTES_MAX`]). The codec stops past it, so a
/// zip bomb costs at most this much memory per cleaner thread; such a batch is left whole.
pub const COMPACTION_DECOMPRESSED_BYTES_MAX: usize = BATCH_BYTES_MAX;

/// Connections served at once, at most (`max.connections`); further accepts wait for a
/// slot. An idle connection costs the broker about 6 KiB (its task and bookkeeping; it
/// holds no receive buffer while it waits; 20 KiB through TLS) and up to three
/// descriptors (its socket, and the pipe of its zero-copy fetches): 100,000 idle ones
/// about 0.6 GB.
pub const CONNECTIONS_MAX: usize = 100_000;

/// Requests decoded ahead of their responses on one connection (pipelining depth).
/// When reached, the connection stops reading until a response has been written.
pub const IN_FLIGHT_REQUESTS_PER_CONNECTION_MAX: usize = 64;

/// Answers one connection may hold that wait only for an fsync (acks=all Produce on the
/// log engine: the records are written, the small response is built). They do not count
/// toward [`IN_FLIGHT_REQUESTS_PER_CONNECTION_MAX`], which would otherwise cap a client
/// that sends many small acks=all requests at that many per fsync.
pub const DURABILITY_WAITS_PER_CONNECTION_MAX: usize = 1024;

/// Largest Produce answer (partitions in it) held under
/// [`DURABILITY_WAITS_PER_CONNECTION_MAX`]; a larger one counts toward
/// [`IN_FLIGHT_REQUESTS_PER_CONNECTION_MAX`]. At about 300 bytes per entry (a topic name
/// of at most 249 bytes, error fields) the fsync waits of one connection hold at most
/// about 19 MiB, near [`PENDING_RESPONSE_BYTES_PER_CONNECTION_MAX`].
pub const DURABLE_ANSWER_PARTITIONS_MAX: usize = 64;

/// Encoded response bytes one connection may hold waiting for its client to read them.
/// Past this the connection decodes no further request (and so stops reading) until
/// the client has taken some: a client that never reads costs at most this plus the
/// response in hand (a fetch response is at most [`FETCH_RESPONSE_BYTES_MAX`]).
pub const PENDING_RESPONSE_BYTES_PER_CONNECTION_MAX: usize = 16 * 1024 * 1024;

/// Bytes one fetch response may carry, whatever the client asks for.
pub const FETCH_RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Longest a fetch may wait for data (`max_wait_ms` is clamped to this).
pub const FETCH_MAX_WAIT_MS_MAX: u64 = 30_000;

/// Partitions all fetch sessions (KIP-227) hold together, about 250 bytes each: a full
/// fetch that would pass it is answered without a session, and an incremental fetch that
/// would pass it closes its session (the client then fetches in full and goes on).
pub const FETCH_SESSION_PARTITIONS_MAX: usize = 1_000_000;

/// Most `max.incremental.fetch.session.cache.slots` may be set to.
pub const FETCH_SESSION_CACHE_SLOTS_MAX: usize = 100_000;

/// Producer batches remembered per (producer id, partition) for duplicate detection,
/// as in Kafka (the idempotent producer keeps at most 5 in flight).
pub const PRODUCER_BATCHES_REMEMBERED: usize = 5;

/// Hooks in one chain (built-in and custom together). A chain is a per-request cost and the
/// broker tracks which hooks apply to a topic in a 64-bit set; startup fails beyond this.
pub const HOOKS_MAX: usize = 64;

/// Audit-log lines queued for the writer thread. When full, lines are dropped and counted
/// (the request path never waits for the audit file).
pub const AUDIT_LOG_QUEUE_MAX: usize = 8192;
