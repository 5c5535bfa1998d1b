"""KIP-227 fetch sessions under ACLs from kafka-python: alice (SASL PLAIN) consumes two
topics over one incremental fetch session; the operator (a super user) deletes her READ on
one of them while the session lives. Her next fetches answer that topic
TOPIC_AUTHORIZATION_FAILED (kafka-python raises TopicAuthorizationFailedError) and carry
none of its new records, while the other topic's records keep coming; once READ is granted
again the withheld records arrive, each once, in order, over the same session.
Usage: python3 fetch_sessions_acl_test.py HOST:PORT"""
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import (ACL, ACLFilter, ACLOperation, ACLPermissionType,
                         ACLResourcePatternType, KafkaAdminClient, NewTopic, ResourcePattern,
                         ResourcePatternFilter, ResourceType)
from kafka.errors import TopicAuthorizationFailedError

addr = sys.argv[1]
REVOKED, KEPT = "kp-acl-revoked", "kp-acl-kept"
N_PARTITIONS = 4


def sasl(user):
    return dict(bootstrap_servers=addr, security_protocol="SASL_PLAINTEXT",
                sasl_mechanism="PLAIN", sasl_plain_username=user,
                sasl_plain_password=f"{user}-secret")


def read_acl(topic, op):
    pattern = ResourcePattern(ResourceType.TOPIC, topic, ACLResourcePatternType.LITERAL)
    return ACL("User:alice", "*", op, ACLPermissionType.ALLOW, pattern)


admin = KafkaAdminClient(**sasl("admin"))
admin.create_topics([NewTopic(t, N_PARTITIONS, 1) for t in (REVOKED, KEPT)])
grants = [read_acl(t, op) for t in (REVOKED, KEPT)
          for op in (ACLOperation.READ, ACLOperation.DESCRIBE)]
result = admin.create_acls(grants)
assert not result["failed"], result
producer = KafkaProducer(acks="all", **sasl("admin"))


def produce(round_, n=3):
    for t in (REVOKED, KEPT):
        for p in range(N_PARTITIONS):
            for i in range(n):
                producer.send(t, key=f"{t}-r{round_}-p{p}-{i}".encode(), value=b"v", partition=p)
    producer.flush()


def want(topic, rounds, n=3):
    return {p: [f"{topic}-r{r}-p{p}-{i}" for r in rounds for i in range(n)]
            for p in range(N_PARTITIONS)}


got = {t: {p: [] for p in range(N_PARTITIONS)} for t in (REVOKED, KEPT)}
refusals = 0


def consume(until, seconds=30):
    """Polls until `until()` or the deadline, then one more second for stragglers."""
    global refusals
    deadline = time.time() + seconds
    settle = None
    while time.time() < (settle or deadline):
        try:
            for tp, records in consumer.poll(timeout_ms=200).items():
                got[tp.topic][tp.partition].extend(r.key.decode() for r in records)
        except TopicAuthorizationFailedError:
            refusals += 1
        if settle is None and until():
            settle = time.time() + 1


def session():
    h = list(consumer._fetcher._session_handlers.values())
    return (h[0].next_metadata.session_id, h[0].next_metadata.epoch) if h else (0, 0)


failures = []
consumer = KafkaConsumer(enable_auto_commit=False, fetch_max_wait_ms=200, **sasl("alice"))
consumer.assign([TopicPartition(t, p) for t in (REVOKED, KEPT) for p in range(N_PARTITIONS)])
consumer.seek_to_beginning()
produce(0)
consume(lambda: got[REVOKED] == want(REVOKED, [0]) and got[KEPT] == want(KEPT, [0]))
first = session()
if first[0] <= 0:
    failures.append(f"no fetch session opened with ACLs on: {first}")

# READ on one topic deleted while the session lives: refused, none of its new records.
revoked_read = ACLFilter("User:alice", "*", ACLOperation.READ, ACLPermissionType.ALLOW,
                         ResourcePatternFilter(ResourceType.TOPIC, REVOKED,
                                               ACLResourcePatternType.LITERAL))
((_, deleted, error),) = admin.delete_acls([revoked_read])
assert len(deleted) == 1 and error.errno == 0, (deleted, error)
# A fetch is authorized when it starts, as Kafka's is: one already waiting when the ACL
# went may still answer with records appended during its wait. So the new records are
# produced only once a fetch has been refused, i.e. started after the deletion.
consume(lambda: refusals > 0)
produce(1)
consume(lambda: got[KEPT] == want(KEPT, [0, 1]))
if refusals == 0:
    failures.append("no TopicAuthorizationFailedError after READ was deleted")
if got[REVOKED] != want(REVOKED, [0]):
    failures.append(f"records of the revoked topic: {got[REVOKED]}")
if got[KEPT] != want(KEPT, [0, 1]):
    failures.append(f"kept topic: got {got[KEPT]}, want {want(KEPT, [0, 1])}")

# READ granted again: the withheld records arrive once each, over the same session.
result = admin.create_acls([read_acl(REVOKED, ACLOperation.READ)])
assert not result["failed"], result
consume(lambda: got[REVOKED] == want(REVOKED, [0, 1]))
if got[REVOKED] != want(REVOKED, [0, 1]):
    failures.append(f"revoked topic after the grant: got {got[REVOKED]}")
last = session()
if last[0] != first[0] or last[1] <= first[1]:
    failures.append(f"the session did not go on: {first} then {last}")
consumer.close()
producer.close()
admin.close()
if failures:
    print("FAIL kafka-python fetch sessions with ACLs:", *failures, sep="\n  ")
    sys.exit(1)
print(f"kafka-python fetch sessions with ACLs: ok (session {last[0]}, epoch {last[1]}, "
      f"{refusals} refusals)")
