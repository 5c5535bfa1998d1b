"""KIP-227 fetch sessions, what they save: one kafka-python consumer of 1,000 partitions
while a trickle of records (one every 5 ms, over 10 partitions) arrives, for 15 s, against
a release `rafka` with sessions (the default) and without
(`max_incremental_fetch_session_cache_slots: 0`); then, with sessions, what the authorizer
costs: the same with the standard authorizer on (the consumer, User:ANONYMOUS, not a super
user, allowed by a PREFIXED binding on topics `s` and one on the cluster), the 1,000
partitions as one topic of 1,000 partitions and as 1,000 topics of one (READ is asked once
per topic per fetch). Prints, per broker: fetches per second, the client's request bytes
per fetch and bytes received per second, and the broker's CPU-seconds (and per fetch).
With RAFKA_BENCH_PERF=<dir>, `perf record` samples the broker meanwhile. Usage:
python3 benches/many/fetch_sessions.py target/release/rafka (needs kafka-python 3.0.12,
as .ci/run installs)."""
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

RAFKA = os.path.abspath(sys.argv[1])
PARTITIONS = 1000
SECONDS = 15


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


ACLS = """acls:
  - {resource_type: Topic, resource_name: s, pattern_type: PREFIXED, principal: "User:ANONYMOUS",
     host: "*", operation: ALL, permission: ALLOW}
  - {resource_type: Cluster, resource_name: kafka-cluster, pattern_type: LITERAL,
     principal: "User:ANONYMOUS", host: "*", operation: ALL, permission: ALLOW}
"""


def measure(slots, acls=False, topics=1):
    d = tempfile.mkdtemp()
    with open(f"{d}/broker.yaml", "w") as f:
        f.write(f"broker:\n  max_incremental_fetch_session_cache_slots: {slots}\n")
        if acls:
            f.write("  authorizer_class_name: "
                    "org.apache.kafka.metadata.authorizer.StandardAuthorizer\n")
    if acls:
        os.makedirs(f"{d}/data")
        with open(f"{d}/data/rafka-acls.yaml", "w") as f:
            f.write(ACLS)
    # The 1,000 partitions: of topic `s`, or partition 0 of topics s-0 .. s-999.
    if topics == 1:
        tps = [TopicPartition("s", p) for p in range(PARTITIONS)]
        new_topics = [NewTopic("s", PARTITIONS, 1)]
    else:
        tps = [TopicPartition(f"s-{t}", 0) for t in range(topics)]
        new_topics = [NewTopic(f"s-{t}", PARTITIONS // topics, 1) for t in range(topics)]
    broker = subprocess.Popen(
        [RAFKA, "serve", "--config", f"{d}/broker.yaml", "--listen", "127.0.0.1:0",
         "--admin-listen", "127.0.0.1:0", "--data-dir", f"{d}/data"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        addr = re.search(r"listening on (\S+)", broker.stdout.readline()).group(1)
        admin = KafkaAdminClient(bootstrap_servers=addr)
        admin.create_topics(new_topics)
        admin.close()
        consumer = KafkaConsumer(bootstrap_servers=addr, enable_auto_commit=False,
                                 fetch_max_wait_ms=500)
        consumer.assign(tps)
        consumer.seek_to_end()
        consumer.poll(timeout_ms=1000)
        stop = threading.Event()

        def trickle():
            producer = KafkaProducer(bootstrap_servers=addr, acks=1, linger_ms=0)
            i = 0
            while not stop.is_set():
                tp = tps[(i % 10) * (len(tps) // 10)]
                producer.send(tp.topic, value=b"x" * 100, partition=tp.partition)
                i += 1
                time.sleep(0.005)
            producer.flush()
            producer.close()

        t = threading.Thread(target=trickle)
        t.start()
        time.sleep(1)
        perf = None
        if os.environ.get("RAFKA_BENCH_PERF"):
            out = os.path.join(os.environ["RAFKA_BENCH_PERF"],
                               f"fetch-sessions-{slots}-{'acls' if acls else 'open'}-{topics}.data")
            perf = subprocess.Popen(["perf", "record", "-q", "-F", "4999", "-g", "-p",
                                     str(broker.pid), "-o", out],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu0, t0, got = cpu_seconds(broker.pid), time.time(), 0
        while time.time() - t0 < SECONDS:
            got += sum(len(r) for r in consumer.poll(timeout_ms=200).values())
        cpu = cpu_seconds(broker.pid) - cpu0
        if perf:
            perf.send_signal(2)
            perf.wait()
        stop.set()
        t.join()
        m = {k: v for group in consumer.metrics().values() for k, v in group.items()}
        consumer.close()
        return {
            "records/s": got / SECONDS,
            "requests/s": m.get("request-rate", 0.0),
            "request B avg": m.get("request-size-avg", 0.0),
            "received B/s": m.get("incoming-byte-rate", 0.0),
            "broker CPU-s": cpu,
            "broker CPU ms/fetch": cpu * 1000 / max(m.get("request-rate", 0.0) * SECONDS, 1),
        }
    finally:
        broker.terminate()
        broker.wait()


rows = [("sessions (1000 slots)", measure(1000)), ("sessionless (0 slots)", measure(0)),
        ("sessions, ACLs", measure(1000, acls=True)),
        ("sessions, 1000 topics", measure(1000, topics=1000)),
        ("sessions, ACLs, 1000 topics", measure(1000, acls=True, topics=1000))]
keys = list(rows[0][1].keys())
print("| broker | " + " | ".join(keys) + " |")
print("|---" * (len(keys) + 1) + "|")
for name, r in rows:
    print(f"| {name} | " + " | ".join(f"{r[k]:.2f}" if "CPU" in k else f"{r[k]:.1f}"
                                      for k in keys) + " |")
