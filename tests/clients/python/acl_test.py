"""confluent-kafka (librdkafka's admin API) against rafka's authorizer: create_acls,
describe_acls with literal, prefixed and MATCH filters, delete_acls, each checked on
the bindings the broker returns.

Usage: python3 acl_test.py HOST:PORT   (the client is a super user on that listener)
"""

import sys

from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

TIMEOUT = 10


def key(b):
    return (
        b.restype.name,
        b.name,
        b.resource_pattern_type.name,
        b.principal,
        b.host,
        b.operation.name,
        b.permission_type.name,
    )


def describe(admin, f):
    return sorted(key(b) for b in admin.describe_acls(f).result(timeout=TIMEOUT))


def main():
    admin = AdminClient({"bootstrap.servers": sys.argv[1]})
    bindings = [
        AclBinding(ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL,
                   "User:alice", "*", AclOperation.READ, AclPermissionType.ALLOW),
        AclBinding(ResourceType.TOPIC, "pay-", ResourcePatternType.PREFIXED,
                   "User:bob", "*", AclOperation.WRITE, AclPermissionType.DENY),
        AclBinding(ResourceType.GROUP, "billing", ResourcePatternType.LITERAL,
                   "User:alice", "10.0.0.1", AclOperation.READ, AclPermissionType.ALLOW),
    ]
    for b, fut in admin.create_acls(bindings).items():
        assert fut.result(timeout=TIMEOUT) is None, b

    every = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY,
                             None, None, AclOperation.ANY, AclPermissionType.ANY)
    assert describe(admin, every) == sorted(key(b) for b in bindings), describe(admin, every)

    # MATCH: the bindings that apply to topic pay-eu (the prefixed one).
    match = AclBindingFilter(ResourceType.TOPIC, "pay-eu", ResourcePatternType.MATCH,
                             None, None, AclOperation.ANY, AclPermissionType.ANY)
    assert describe(admin, match) == [key(bindings[1])], describe(admin, match)

    alice = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY,
                             "User:alice", None, AclOperation.ANY, AclPermissionType.ANY)
    deleted = admin.delete_acls([alice])[alice].result(timeout=TIMEOUT)
    assert sorted(key(b) for b in deleted) == sorted([key(bindings[0]), key(bindings[2])]), deleted
    assert describe(admin, every) == [key(bindings[1])], describe(admin, every)

    everything = admin.delete_acls([every])[every].result(timeout=TIMEOUT)
    assert [key(b) for b in everything] == [key(bindings[1])], everything
    assert describe(admin, every) == []
    print("confluent-kafka ACL admin: create, describe (ANY, MATCH), delete ok")


if __name__ == "__main__":
    main()
