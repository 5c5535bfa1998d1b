// kafkajs transactions against the `rafka` binary: a committed and an aborted transaction over
// 2 partitions, a consume-transform-produce step with `sendOffsets`, read_committed consumers,
// and zombie fencing of two producers sharing one transactionalId.
// kafkajs speaks older versions than librdkafka (InitProducerId v1, AddPartitionsToTxn v1,
// AddOffsetsToTxn v1, TxnOffsetCommit v2, EndTxn v1, Fetch v11 with isolation level).
// Usage: node txn_test.mjs HOST:PORT
import { Kafka, logLevel } from "kafkajs";

const broker = process.argv[2];
const kafka = new Kafka({ clientId: "kafkajs-txn", brokers: [broker], logLevel: process.env.KAFKAJS_LOG ? logLevel.ERROR : logLevel.NOTHING });
let passed = 0;
let failed = 0;
function check(name, ok, detail = "") {
  if (ok) passed++;
  else {
    failed++;
    console.log(`FAIL ${name} ${detail}`);
  }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(what, ms, cond) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}
const txnProducer = (id) =>
  kafka.producer({ transactionalId: id, idempotent: true, maxInFlightRequests: 1, retry: { retries: 2 } });

// Reads every record of `topic` with the given isolation, in a fresh group, until `count`
// have arrived, then a quiet second more (so extra records would show). Returns "p:key=value".
async function readAll(topic, count, readUncommitted, group) {
  const c = kafka.consumer({ groupId: group, readUncommitted, maxWaitTimeInMs: 200 });
  await c.connect();
  await c.subscribe({ topics: [topic], fromBeginning: true });
  const seen = [];
  await c.run({
    eachMessage: async ({ partition, message }) => {
      seen.push(`${partition}:${message.key}=${message.value}`);
    },
  });
  try {
    await until(`${count} records of ${topic}`, 30000, () => seen.length >= count);
  } finally {
    await sleep(1000);
    await c.disconnect();
  }
  return seen;
}

const admin = kafka.admin();
await admin.connect();
await admin.createTopics({
  topics: [
    { topic: "js-txn", numPartitions: 2 },
    { topic: "js-in", numPartitions: 1 },
    { topic: "js-out", numPartitions: 2 },
    { topic: "js-zombie", numPartitions: 1 },
  ],
});

// 1. One committed and one aborted transaction over 2 partitions, then a second committed one.
const p = txnProducer("js-txn-1");
await p.connect();
const committed = [];
let t = await p.transaction();
for (let i = 0; i < 6; i++) {
  const m = { key: `c${i}`, value: `commit-${i}`, partition: i % 2 };
  await t.send({ topic: "js-txn", messages: [m] });
  committed.push(`${m.partition}:${m.key}=${m.value}`);
}
await t.commit();
t = await p.transaction();
for (let i = 0; i < 6; i++) {
  await t.send({ topic: "js-txn", messages: [{ key: `a${i}`, value: `abort-${i}`, partition: i % 2 }] });
}
await t.abort();
t = await p.transaction();
for (let i = 0; i < 4; i++) {
  const m = { key: `d${i}`, value: `commit2-${i}`, partition: i % 2 };
  await t.send({ topic: "js-txn", messages: [m] });
  committed.push(`${m.partition}:${m.key}=${m.value}`);
}
await t.commit();

const rc = await readAll("js-txn", committed.length, false, "js-rc");
const byPartition = (xs, part) => xs.filter((s) => s.startsWith(`${part}:`));
check("read_committed sees exactly the committed records", rc.length === committed.length, `${rc.length}`);
for (const part of [0, 1]) {
  check(
    `read_committed partition ${part} in order`,
    JSON.stringify(byPartition(rc, part)) === JSON.stringify(byPartition(committed, part)),
    JSON.stringify(byPartition(rc, part)),
  );
}
check("read_committed never sees an aborted record", rc.every((s) => !s.includes("abort")));
const ru = await readAll("js-txn", 16, true, "js-ru");
check("read_uncommitted sees aborted records too", ru.length === 16 && ru.filter((s) => s.includes("abort")).length === 6, `${ru.length}`);
// Committed 6 + aborted 6 + committed 4 records and 3 control markers per partition.
const offs = await admin.fetchTopicOffsets("js-txn");
const highs = offs.sort((a, b) => a.partition - b.partition).map((o) => o.high);
check("end offsets count records and markers", JSON.stringify(highs) === JSON.stringify(["11", "11"]), JSON.stringify(highs));

// 2. Consume-transform-produce: read js-in in group js-ctp, write uppercased values to js-out
// in transactions of 5 records, each carrying the group's offsets via sendOffsets.
const input = [];
for (let i = 0; i < 20; i++) input.push({ key: `k${i}`, value: `v${i}`, partition: 0 });
const plain = kafka.producer();
await plain.connect();
await plain.send({ topic: "js-in", messages: input });
await plain.disconnect();

const ctp = txnProducer("js-ctp-1");
await ctp.connect();
const consumer = kafka.consumer({ groupId: "js-ctp", readUncommitted: false });
await consumer.connect();
await consumer.subscribe({ topics: ["js-in"], fromBeginning: true });
let processed = 0;
let txnCount = 0;
await consumer.run({
  autoCommit: false,
  eachBatchAutoResolve: false,
  eachBatch: async ({ batch, resolveOffset, heartbeat }) => {
    const msgs = batch.messages;
    for (let i = 0; i < msgs.length; i += 5) {
      const chunk = msgs.slice(i, i + 5);
      const tx = await ctp.transaction();
      await tx.send({
        topic: "js-out",
        messages: chunk.map((m) => ({ key: m.key, value: m.value.toString().toUpperCase(), partition: Number(m.offset) % 2 })),
      });
      const next = (BigInt(chunk[chunk.length - 1].offset) + 1n).toString();
      await tx.sendOffsets({
        consumerGroupId: "js-ctp",
        topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset: next }] }],
      });
      await tx.commit();
      txnCount++;
      processed += chunk.length;
      resolveOffset(chunk[chunk.length - 1].offset);
      await heartbeat();
    }
  },
});
await until("20 records transformed", 30000, () => processed >= 20);
await consumer.disconnect();
await ctp.disconnect();
check("consume-transform-produce ran in transactions", processed === 20 && txnCount >= 4, `${processed} in ${txnCount}`);
const groupOffsets = await admin.fetchOffsets({ groupId: "js-ctp", topics: ["js-in"] });
const committedOffset = groupOffsets[0].partitions.find((x) => x.partition === 0).offset;
check("sendOffsets committed the group's offset with the transaction", committedOffset === "20", committedOffset);
const out = await readAll("js-out", 20, false, "js-out-reader");
const expectedOut = input.map((m, i) => `${i % 2}:${m.key}=${m.value.toUpperCase()}`);
check("js-out holds every input transformed exactly once", out.length === 20 && new Set(out).size === 20, `${out.length}`);
check(
  "js-out holds exactly the transformed input",
  JSON.stringify([...out].sort()) === JSON.stringify([...expectedOut].sort()),
  JSON.stringify(out),
);

// 3. Zombie fencing: a second producer with the same transactionalId fences the first; the
// first's open transaction is aborted and its commit refused.
const zombie = txnProducer("js-zombie-id");
await zombie.connect();
const zt = await zombie.transaction();
await zt.send({ topic: "js-zombie", messages: [{ key: "z", value: "zombie-1", partition: 0 }] });
const fresh = txnProducer("js-zombie-id");
await fresh.connect();
// kafkajs initialises the transactional producer id when the first transaction begins:
// this InitProducerId fences the zombie and aborts its open transaction.
const ft = await fresh.transaction();
let zombieError = "none";
try {
  await zt.send({ topic: "js-zombie", messages: [{ key: "z", value: "zombie-2", partition: 0 }] });
  await zt.commit();
} catch (e) {
  zombieError = e.type || e.name || String(e);
}
check(
  "the older producer is fenced",
  ["INVALID_PRODUCER_EPOCH", "PRODUCER_FENCED"].includes(zombieError),
  zombieError,
);
await ft.send({ topic: "js-zombie", messages: [{ key: "f", value: "fresh-1", partition: 0 }] });
await ft.commit();
const zseen = await readAll("js-zombie", 1, false, "js-zombie-reader");
check("only the fresh producer's records are visible", JSON.stringify(zseen) === JSON.stringify(["0:f=fresh-1"]), JSON.stringify(zseen));
await fresh.disconnect();
await zombie.disconnect().catch(() => {});
await p.disconnect();
await admin.disconnect();

console.log(`kafkajs transactions: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
