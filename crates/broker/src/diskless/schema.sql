-- Rafka's diskless cluster state in PostgreSQL, schema version 1. Applied by every broker
-- at start under an advisory lock; every statement is idempotent.

CREATE TABLE IF NOT EXISTS rafka_cluster (
    id               int PRIMARY KEY CHECK (id = 1),
    cluster_id       text NOT NULL,
    schema_version   int NOT NULL,
    -- The next producer id InitProducerId hands out (blocks are taken by UPDATE ... RETURNING).
    next_producer_id bigint NOT NULL DEFAULT 0
);

-- Live brokers: a row per node id, renewed by heartbeats. A broker whose lease expired is
-- not listed in Metadata; a restarted broker takes a new incarnation, which fences the old.
CREATE TABLE IF NOT EXISTS rafka_brokers (
    node_id          int PRIMARY KEY,
    incarnation      uuid NOT NULL,
    host             text NOT NULL,
    port             int NOT NULL,
    rack             text,
    registered_at    timestamptz NOT NULL DEFAULT now(),
    lease_expires_at timestamptz NOT NULL
);
-- Every listener's advertised address, by listener name: {"NAME": ["host", port]}.
ALTER TABLE rafka_brokers ADD COLUMN IF NOT EXISTS listeners jsonb NOT NULL DEFAULT '{}'::jsonb;

CREATE TABLE IF NOT EXISTS rafka_topics (
    topic_id   uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    partitions int NOT NULL CHECK (partitions > 0),
    -- Topic configs set on this topic (Kafka's names and string values).
    configs    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Where offsets are decided: a commit locks its partitions' rows in (topic_id, partition)
-- order, assigns offsets from high_watermark and moves it.
CREATE TABLE IF NOT EXISTS rafka_partitions (
    topic_id         uuid NOT NULL REFERENCES rafka_topics (topic_id) ON DELETE CASCADE,
    partition        int NOT NULL,
    log_start_offset bigint NOT NULL DEFAULT 0,
    high_watermark   bigint NOT NULL DEFAULT 0,
    leader_epoch     int NOT NULL DEFAULT 0,
    PRIMARY KEY (topic_id, partition)
);

-- Objects: registered (state 0) before the upload, committed (1) with their batches,
-- unreferenced (2) once retention or a topic deletion removed their last batch. The sweeper
-- deletes state 0 and state 2 objects older than `object_grace_ms`, claiming each first
-- (state 3), so that a commit (which moves an object only `WHERE state = 0`) cannot race it.
CREATE TABLE IF NOT EXISTS rafka_objects (
    object_id        bigserial PRIMARY KEY,
    object_key       text NOT NULL UNIQUE,
    node_id          int NOT NULL,
    size_bytes       bigint NOT NULL,
    state            smallint NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    state_changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS rafka_objects_state ON rafka_objects (state, state_changed_at);

-- The batch index: one row per partition per object (the partition's batches lie
-- contiguously in it), so rows grow with objects, not with records.
CREATE TABLE IF NOT EXISTS rafka_batches (
    topic_id      uuid NOT NULL,
    partition     int NOT NULL,
    base_offset   bigint NOT NULL,
    last_offset   bigint NOT NULL,
    object_id     bigint NOT NULL REFERENCES rafka_objects (object_id),
    byte_offset   bigint NOT NULL,
    byte_length   bigint NOT NULL,
    batch_count   int NOT NULL,
    max_timestamp bigint NOT NULL,
    PRIMARY KEY (topic_id, partition, base_offset),
    FOREIGN KEY (topic_id, partition) REFERENCES rafka_partitions ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS rafka_batches_object ON rafka_batches (object_id);

-- Idempotent producers per partition: the epoch and the last (up to 5) batches' first and
-- last sequence and base offset, as Kafka's ProducerStateManager keeps them.
CREATE TABLE IF NOT EXISTS rafka_producers (
    topic_id       uuid NOT NULL,
    partition      int NOT NULL,
    producer_id    bigint NOT NULL,
    producer_epoch smallint NOT NULL,
    first_seqs     int[] NOT NULL,
    last_seqs      int[] NOT NULL,
    base_offsets   bigint[] NOT NULL,
    last_timestamp bigint NOT NULL,
    PRIMARY KEY (topic_id, partition, producer_id),
    FOREIGN KEY (topic_id, partition) REFERENCES rafka_partitions ON DELETE CASCADE
);

-- Groups: the broker acting as coordinator and its fencing epoch (bumped at every
-- takeover; a write with an older epoch is refused), and the committed offsets.
CREATE TABLE IF NOT EXISTS rafka_groups (
    group_id          text PRIMARY KEY,
    coordinator       int,
    coordinator_epoch bigint NOT NULL DEFAULT 0,
    -- The group's metadata record (Kafka's __consumer_offsets value layout), if any.
    metadata          bytea
);
CREATE TABLE IF NOT EXISTS rafka_offsets (
    group_id         text NOT NULL,
    topic            text NOT NULL,
    partition        int NOT NULL,
    committed_offset bigint NOT NULL,
    leader_epoch     int NOT NULL DEFAULT -1,
    metadata         text,
    commit_timestamp bigint NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
);
