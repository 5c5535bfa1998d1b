"""KIP-227 fetch sessions from kafka-python (an independent client that uses them): a
consumer of 24 partitions reads every record produced, in order per partition, over
incremental fetches of one session, in rounds: all partitions, all again, then three.
Usage: python3 fetch_sessions_test.py HOST:PORT"""
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

addr = sys.argv[1]
TOPIC = "kp-sessions"
N_PARTITIONS = 24
admin = KafkaAdminClient(bootstrap_servers=addr)
admin.create_topics([NewTopic(TOPIC, N_PARTITIONS, 1)])
admin.close()

producer = KafkaProducer(bootstrap_servers=addr, acks="all")


def produce(round_, partitions, n):
    for p in partitions:
        for i in range(n):
            producer.send(TOPIC, key=f"r{round_}-p{p}-{i}".encode(), value=b"v" * i, partition=p)
    producer.flush()


def consume(consumer, expected):
    got = {p: [] for p in range(N_PARTITIONS)}
    deadline = time.time() + 30
    while sum(map(len, got.values())) < expected and time.time() < deadline:
        for tp, records in consumer.poll(timeout_ms=500).items():
            got[tp.partition].extend((r.offset, r.key.decode()) for r in records)
    # Nothing more arrives (incremental fetches with nothing new).
    for tp, records in consumer.poll(timeout_ms=1000).items():
        got[tp.partition].extend((r.offset, r.key.decode()) for r in records)
    return got


consumer = KafkaConsumer(bootstrap_servers=addr, enable_auto_commit=False, fetch_max_wait_ms=200)
consumer.assign([TopicPartition(TOPIC, p) for p in range(N_PARTITIONS)])
consumer.seek_to_beginning()
failures = []
next_offset = [0] * N_PARTITIONS
rounds = [(range(N_PARTITIONS), 5), (range(N_PARTITIONS), 3), ([0, 7, 23], 2)]
for round_, (partitions, n) in enumerate(rounds):
    produce(round_, partitions, n)
    got = consume(consumer, len(partitions) * n)
    for p in range(N_PARTITIONS):
        if p in partitions:
            want = [(next_offset[p] + i, f"r{round_}-p{p}-{i}") for i in range(n)]
            next_offset[p] += n
        else:
            want = []
        if got[p] != want:
            failures.append(f"round {round_} partition {p}: got {got[p]}, want {want}")
# The consumer's fetch session with the broker (kafka-python keeps one per node).
handlers = consumer._fetcher._session_handlers
session_ids = [h.next_metadata.session_id for h in handlers.values()]
epochs = [h.next_metadata.epoch for h in handlers.values()]
if not session_ids or any(s <= 0 for s in session_ids) or any(e < 4 for e in epochs):
    failures.append(f"no incremental fetch session: ids {session_ids}, epochs {epochs}")
consumer.close()
producer.close()
if failures:
    print("FAIL kafka-python fetch sessions:", *failures, sep="\n  ")
    sys.exit(1)
print(f"kafka-python fetch sessions: ok (session {session_ids[0]}, epoch {epochs[0]})")
