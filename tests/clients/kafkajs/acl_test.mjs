// kafkajs admin against rafka's authorizer: createAcls, describeAcls (ANY and MATCH
// filters), deleteAcls, each checked on the bindings the broker returns.
// Usage: node acl_test.mjs HOST:PORT   (the client is a super user on that listener)
import assert from "node:assert/strict";
import kafkajs from "kafkajs";

const {
  Kafka,
  logLevel,
  AclResourceTypes: R,
  AclOperationTypes: O,
  AclPermissionTypes: P,
  ResourcePatternTypes: PT,
} = kafkajs;

const admin = new Kafka({ clientId: "acl-test", brokers: [process.argv[2]], logLevel: logLevel.NOTHING }).admin();
await admin.connect();
const acl = [
  { resourceType: R.TOPIC, resourceName: "orders", resourcePatternType: PT.LITERAL,
    principal: "User:alice", host: "*", operation: O.READ, permissionType: P.ALLOW },
  { resourceType: R.TOPIC, resourceName: "pay-", resourcePatternType: PT.PREFIXED,
    principal: "User:bob", host: "*", operation: O.WRITE, permissionType: P.DENY },
  { resourceType: R.CLUSTER, resourceName: "kafka-cluster", resourcePatternType: PT.LITERAL,
    principal: "User:carol", host: "127.0.0.1", operation: O.ALTER, permissionType: P.ALLOW },
];
await admin.createAcls({ acl });

const flat = (res) =>
  res.resources
    .flatMap((r) =>
      r.acls.map((a) => [r.resourceType, r.resourceName, r.resourcePatternType,
        a.principal, a.host, a.operation, a.permissionType].join(" ")))
    .sort();
const want = (bs) =>
  bs.map((b) => [b.resourceType, b.resourceName, b.resourcePatternType,
    b.principal, b.host, b.operation, b.permissionType].join(" ")).sort();
const any = { resourceType: R.ANY, resourcePatternType: PT.ANY, operation: O.ANY, permissionType: P.ANY };

assert.deepEqual(flat(await admin.describeAcls(any)), want(acl));
const match = await admin.describeAcls({ ...any, resourceType: R.TOPIC, resourceName: "pay-eu", resourcePatternType: PT.MATCH });
assert.deepEqual(flat(match), want([acl[1]]));

const gone = await admin.deleteAcls({ filters: [{ ...any, principal: "User:bob" }] });
assert.equal(gone.filterResponses[0].errorCode, 0);
assert.deepEqual(gone.filterResponses[0].matchingAcls.map((m) => m.resourceName), ["pay-"]);
assert.deepEqual(flat(await admin.describeAcls(any)), want([acl[0], acl[2]]));
await admin.deleteAcls({ filters: [any] });
assert.deepEqual(flat(await admin.describeAcls(any)), []);
await admin.disconnect();
console.log("kafkajs ACL admin: create, describe (ANY, MATCH), delete ok");
