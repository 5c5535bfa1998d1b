#!/usr/bin/env bash
# kafka-python (an independent Python client that uses KIP-227 incremental fetch sessions,
# unlike librdkafka) consuming many partitions from `rafka` over one fetch session; then,
# against a broker with the standard authorizer and SASL PLAIN, a session whose READ is
# deleted and granted again while it lives.
# Usage: tests/clients/kafka_python.sh path/to/rafka   (needs python3 with kafka-python)
set -euo pipefail
RAFKA=$(realpath "${1:?path to the rafka binary}")
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
cleanup() { [ -n "${pid:-}" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }; rm -rf "$dir"; }
trap cleanup EXIT
cat >"$dir/acl.yaml" <<YAML
broker:
  listeners:
    - {name: SASL, listen: 127.0.0.1:0, security_protocol: SASL_PLAINTEXT}
  sasl_enabled_mechanisms: [PLAIN]
  authorizer_class_name: org.apache.kafka.metadata.authorizer.StandardAuthorizer
  super_users: ["User:admin"]
  scram_users:
    - {name: admin, password: admin-secret, mechanisms: [SCRAM-SHA-256]}
    - {name: alice, password: alice-secret, mechanisms: [SCRAM-SHA-256]}
YAML
status=0
run() { # name test.py [serve options...]
  local name=$1 test=$2
  shift 2
  "$RAFKA" serve --admin-listen 127.0.0.1:0 --data-dir "$dir/data-$name" "$@" \
    >"$dir/out-$name" 2>"$dir/stderr-$name" &
  pid=$!
  for _ in $(seq 50); do grep -qs "listening on" "$dir/out-$name" && break; sleep 0.1; done
  addr=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$dir/out-$name")
  [ -n "$addr" ] || { echo "kafka-python: broker did not start"; cat "$dir/stderr-$name"; exit 1; }
  timeout 120 python3 "$here/python/$test" "$addr" || status=$?
  if grep -q "panicked" "$dir/stderr-$name"; then echo "FAIL broker panicked"; status=1; fi
  kill "$pid"; wait "$pid" 2>/dev/null || true
  pid=
}
run plain fetch_sessions_test.py --listen 127.0.0.1:0
run acl fetch_sessions_acl_test.py --config "$dir/acl.yaml"
exit $status
