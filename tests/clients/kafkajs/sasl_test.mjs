// kafkajs over SASL_SSL with SCRAM-SHA-512 against the `rafka` binary: a topic created,
// records produced and read back by a consumer group exactly (keys, values, offsets), and a
// wrong password refused with kafkajs's SASL authentication error.
// Usage: node sasl_test.mjs HOST:PORT CA.pem
import { readFileSync } from "node:fs";
import { Kafka, logLevel } from "kafkajs";

const [broker, caPath] = process.argv.slice(2);
const ssl = { ca: [readFileSync(caPath, "utf8")] };
const client = (password) =>
  new Kafka({
    clientId: "kafkajs-sasl",
    brokers: [broker],
    logLevel: logLevel.NOTHING,
    ssl,
    sasl: { mechanism: "scram-sha-512", username: "alice", password },
  });
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

const kafka = client("alice-secret");
const admin = kafka.admin();
await admin.connect();
await admin.createTopics({ topics: [{ topic: "js-sasl", numPartitions: 1 }] });
await admin.disconnect();
const producer = kafka.producer();
await producer.connect();
const sent = [];
for (let i = 0; i < 25; i++) sent.push({ key: `k${i}`, value: `v${i}`, partition: 0 });
await producer.send({ topic: "js-sasl", messages: sent });
await producer.disconnect();
const consumer = kafka.consumer({ groupId: "js-sasl-group" });
await consumer.connect();
await consumer.subscribe({ topics: ["js-sasl"], fromBeginning: true });
const got = [];
await consumer.run({ eachMessage: async ({ message }) => { got.push(message); } });
const deadline = Date.now() + 30000;
while (got.length < 25 && Date.now() < deadline) await sleep(100);
await consumer.disconnect();
check("records over SASL_SSL", got.length === 25, `${got.length}`);
check(
  "records exact",
  got.every((m, i) => m.key.toString() === `k${i}` && m.value.toString() === `v${i}` && m.offset === `${i}`),
);

const started = Date.now();
try {
  const bad = client("wrong").admin();
  await bad.connect();
  check("wrong password refused", false, "connected");
  await bad.disconnect();
} catch (e) {
  check("wrong password refused", e.name === "KafkaJSSASLAuthenticationError", `${e.name}: ${e.message}`);
  check("refused within 10 s", Date.now() - started < 10000, `${Date.now() - started} ms`);
}
console.log(`kafkajs SASL_SSL: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
