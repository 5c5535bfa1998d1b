// kafkajs against the `rafka` binary: admin, produce with headers, and a consumer group
// that a kafkajs member and a librdkafka member (kcat -G) share.
// Usage: node group_test.mjs HOST:PORT
import { spawn } from "node:child_process";
import { Kafka, logLevel, PartitionAssigners } from "kafkajs";

const broker = process.argv[2];
const kafka = new Kafka({ clientId: "kafkajs-test", brokers: [broker], logLevel: logLevel.ERROR });
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

const admin = kafka.admin();
await admin.connect();
await admin.createTopics({ topics: [{ topic: "js-topic", numPartitions: 4 }] });
const topics = await admin.fetchTopicMetadata({ topics: ["js-topic"] });
check("topic has 4 partitions", topics.topics[0].partitions.length === 4);

// Round trip with headers and keys through kafkajs alone (gzip exercises compression).
const producer = kafka.producer();
await producer.connect();
const rt = [];
for (let i = 0; i < 20; i++) rt.push({ key: `k${i}`, value: `v${i}`, headers: { idx: `${i}` }, partition: 0 });
await producer.send({ topic: "js-topic", messages: rt, compression: 1 });
const reader = kafka.consumer({ groupId: "js-reader" });
await reader.connect();
await reader.subscribe({ topics: ["js-topic"], fromBeginning: true });
const got = [];
await reader.run({ eachMessage: async ({ partition, message }) => { if (partition === 0) got.push(message); } });
await until("20 messages", 30000, () => got.length >= 20);
await reader.disconnect();
check("kafkajs round trip count", got.length === 20, `${got.length}`);
check(
  "kafkajs round trip content",
  got.every((m, i) => m.key.toString() === `k${i}` && m.value.toString() === `v${i}` && m.headers.idx.toString() === `${i}` && m.offset === `${i}`),
);

// A group shared by kafkajs and librdkafka (kcat -G).
const jsSeen = [];
// kafkajs calls its round robin "RoundRobinAssigner"; librdkafka calls the same standard
// assignor "roundrobin". Group members must name a common protocol (as with Kafka), so the
// kafkajs member offers its implementation under librdkafka's name.
const roundrobin = (config) => ({ ...PartitionAssigners.roundRobin(config), name: "roundrobin" });
const consumer = kafka.consumer({ groupId: "mixed", sessionTimeout: 10000, heartbeatInterval: 500, partitionAssigners: [roundrobin] });
await consumer.connect();
await consumer.subscribe({ topics: ["js-topic"], fromBeginning: false });
let jsAssigned = 0;
consumer.on(consumer.events.GROUP_JOIN, (e) => {
  jsAssigned = Object.values(e.payload.memberAssignment).reduce((n, ps) => n + ps.length, 0);
});
await consumer.run({ eachMessage: async ({ partition, message }) => { jsSeen.push(`${partition}:${message.value}`); } });
await until("kafkajs owns all 4", 30000, () => jsAssigned === 4);

let kcatOut = "";
let kcatErr = "";
const kcat = spawn("kcat", ["-u", "-b", broker, "-G", "mixed", "-o", "end", "-f", "%p:%s\n", "-X", "session.timeout.ms=10000", "-X", "partition.assignment.strategy=roundrobin", "js-topic"]);
kcat.stdout.on("data", (d) => (kcatOut += d));
kcat.stderr.on("data", (d) => (kcatErr += d));
try {
  await until("a 2 + 2 split", 30000, () => jsAssigned === 2 && /assigned/i.test(kcatErr));
} catch (e) {
  console.log(`kafkajs has ${jsAssigned}; kcat said: ${kcatErr}`);
  throw e;
}
await sleep(1000);

const msgs = [];
for (let i = 0; i < 200; i++) msgs.push({ value: `g${i}`, partition: i % 4 });
await producer.send({ topic: "js-topic", messages: msgs });
const kcatSeen = () => kcatOut.split("\n").filter((l) => l.includes(":g"));
try {
  await until("all 200 consumed", 30000, () => jsSeen.length + kcatSeen().length >= 200);
} catch (e) {
  console.log(`kafkajs consumed ${jsSeen.length}, kcat ${kcatSeen().length}; kcat said: ${kcatErr}`);
  throw e;
}
await sleep(1000);
kcat.kill("SIGTERM");
await consumer.disconnect();
await producer.disconnect();
await admin.disconnect();

const all = [...jsSeen, ...kcatSeen()];
check("every group message consumed once", all.length === 200 && new Set(all).size === 200, `${all.length}`);
check("both members consumed", jsSeen.length > 0 && kcatSeen().length > 0, `${jsSeen.length} + ${kcatSeen().length}`);
const jsParts = new Set(jsSeen.map((s) => s.split(":")[0]));
const kcatParts = new Set(kcatSeen().map((s) => s.split(":")[0]));
check("no partition consumed by both", [...jsParts].every((p) => !kcatParts.has(p)), `${[...jsParts]} / ${[...kcatParts]}`);

console.log(`kafkajs: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
