#!/usr/bin/env bash
# kafkajs (an independent JavaScript client) and kcat sharing a consumer group on `rafka`,
# then kafkajs transactions (txn_test.mjs).
# Usage: tests/clients/kafkajs.sh path/to/rafka   (needs node, npm and kcat)
set -euo pipefail
RAFKA=$(realpath "${1:?path to the rafka binary}")
here=$(cd "$(dirname "$0")" && pwd)
(cd "$here/kafkajs" && npm install --no-audit --no-fund --silent >/dev/null)
dir=$(mktemp -d)
"$RAFKA" serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --data-dir "$dir/data" >"$dir/out" 2>"$dir/stderr" &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
for _ in $(seq 50); do grep -q "listening on" "$dir/out" && break; sleep 0.1; done
addr=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$dir/out")
timeout 120 node "$here/kafkajs/group_test.mjs" "$addr"
# Transactions: kafkajs's transactional producer, sendOffsets, read_committed consumers.
timeout 120 node "$here/kafkajs/txn_test.mjs" "$addr"
