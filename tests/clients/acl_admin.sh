#!/usr/bin/env bash
# ACL admin APIs from two independent admin clients against `rafka` with the standard
# authorizer (the plaintext User:ANONYMOUS a super user): confluent-kafka (librdkafka's
# admin API, Python) and kafkajs create, describe and delete ACLs.
# Usage: tests/clients/acl_admin.sh path/to/rafka   (needs python3 with confluent-kafka,
# node and npm)
set -euo pipefail
RAFKA=$(realpath "${1:?path to the rafka binary}")
here=$(cd "$(dirname "$0")" && pwd)
(cd "$here/kafkajs" && npm install --no-audit --no-fund --silent >/dev/null)
dir=$(mktemp -d)
cat >"$dir/broker.yaml" <<YAML
broker:
  authorizer_class_name: org.apache.kafka.metadata.authorizer.StandardAuthorizer
  super_users: ["User:ANONYMOUS"]
YAML
run() {
  "$RAFKA" serve --config "$dir/broker.yaml" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --data-dir "$dir/data-$1" >"$dir/out-$1" 2>"$dir/stderr-$1" &
  pid=$!
  for _ in $(seq 50); do grep -qs "listening on" "$dir/out-$1" && break; sleep 0.1; done
  addr=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$dir/out-$1")
  shift
  "$@" "$addr"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
cleanup() { kill "${pid:-}" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
run py timeout 60 python3 "$here/python/acl_test.py"
run js timeout 60 node "$here/kafkajs/acl_test.mjs"
