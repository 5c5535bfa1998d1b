#!/usr/bin/env bash
# kafka-python (an independent Python client that uses KIP-227 incremental fetch sessions,
# unlike librdkafka) consuming many partitions from `rafka` over one fetch session.
# Usage: tests/clients/kafka_python.sh path/to/rafka   (needs python3 with kafka-python)
set -euo pipefail
RAFKA=$(realpath "${1:?path to the rafka binary}")
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
cleanup() { [ -n "${pid:-}" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }; rm -rf "$dir"; }
trap cleanup EXIT
"$RAFKA" serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --data-dir "$dir/data" >"$dir/out" 2>"$dir/stderr" &
pid=$!
for _ in $(seq 50); do grep -qs "listening on" "$dir/out" && break; sleep 0.1; done
addr=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$dir/out")
[ -n "$addr" ] || { echo "kafka-python: broker did not start"; cat "$dir/stderr"; exit 1; }
status=0
timeout 120 python3 "$here/python/fetch_sessions_test.py" "$addr" || status=$?
if grep -q "panicked" "$dir/stderr"; then echo "FAIL broker panicked"; status=1; fi
exit $status
