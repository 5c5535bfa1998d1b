#!/usr/bin/env bash
# kcat (Debian's librdkafka) and kafkajs over SASL_SSL with SCRAM-SHA-512 against the
# `rafka` binary: a throwaway CA and broker certificate made with openssl, a broker whose
# only listener is SASL_SSL with one bootstrap SCRAM user; records round-trip exactly, and
# a wrong password is refused.
# Usage: tests/clients/sasl_ssl.sh path/to/rafka   (needs openssl, kcat, node and npm)
set -euo pipefail
RAFKA=$(realpath "${1:?path to the rafka binary}")
here=$(cd "$(dirname "$0")" && pwd)
(cd "$here/kafkajs" && npm install --no-audit --no-fund --silent >/dev/null)
dir=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }; rm -rf "$dir"; }
trap cleanup EXIT
# KEEP_LOG=path keeps the broker's log for a look after the run.
[ -n "${KEEP_LOG:-}" ] && trap 'cp "$dir/stderr" "$KEEP_LOG"; cleanup' EXIT

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=rafka CI CA" \
  -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$dir/broker.key" -out "$dir/broker.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$dir/ext"
openssl x509 -req -in "$dir/broker.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
  -days 2 -extfile "$dir/ext" -out "$dir/broker.pem" 2>/dev/null
cat >"$dir/rafka.yaml" <<YAML
broker:
  listeners:
    - name: SASL_SSL
      listen: 127.0.0.1:0
      security_protocol: SASL_SSL
      ssl: {certificate: $dir/broker.pem, key: $dir/broker.key}
  group_initial_rebalance_delay_ms: 0
  sasl_enabled_mechanisms: [SCRAM-SHA-512]
  scram_users:
    - {name: alice, password: alice-secret, mechanisms: [SCRAM-SHA-512]}
YAML
"$RAFKA" serve --config "$dir/rafka.yaml" --admin-listen 127.0.0.1:0 --data-dir "$dir/data" \
  >"$dir/out" 2>"$dir/stderr" &
pid=$!
for _ in $(seq 50); do grep -q "listening on" "$dir/out" && break; sleep 0.1; done
addr=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$dir/out")
[ -n "$addr" ] || { echo "sasl_ssl: broker did not start"; cat "$dir/stderr"; exit 1; }

passed=0 failed=0
check() { # name expected actual
  if [ "$2" == "$3" ]; then passed=$((passed + 1)); else
    failed=$((failed + 1)); echo "FAIL $1"; echo " expected: $2"; echo " actual:   $3"; fi
}
sasl=(-X security.protocol=SASL_SSL -X sasl.mechanisms=SCRAM-SHA-512 -X sasl.username=alice
  -X "ssl.ca.location=$dir/ca.pem")
for i in 1 2 3 4 5; do echo "k$i:v$i"; done |
  kcat -P -b "$addr" -t kcat-sasl -p 0 -K: -X acks=all "${sasl[@]}" -X sasl.password=alice-secret
expected=""
for i in 1 2 3 4 5; do expected+="$((i - 1)) k$i v$i"$'\n'; done
actual=$(timeout 60 kcat -C -b "$addr" -t kcat-sasl -p 0 -o beginning -e -f '%o %k %s\n' -q \
  "${sasl[@]}" -X sasl.password=alice-secret)
check "kcat round trip over SASL_SSL/SCRAM-SHA-512" "${expected%$'\n'}" "$actual"
set +e
refused=$(timeout 30 kcat -L -b "$addr" -m 2 "${sasl[@]}" -X sasl.password=wrong 2>&1)
status=$?
set -e
check "kcat with a wrong password fails" "failed" "$([ "$status" -ne 0 ] && echo failed || echo "exit $status")"
check "kcat is told why" "1" "$(grep -c -m1 'Authentication failed' <<<"$refused" || true)"

timeout 120 node "$here/kafkajs/sasl_test.mjs" "$addr" "$dir/ca.pem" || failed=$((failed + 1))

if grep -q "panicked" "$dir/stderr"; then failed=$((failed + 1)); echo "FAIL broker panicked"; fi
echo "sasl_ssl (kcat): $passed passed, $failed failed"
[ "$failed" -eq 0 ]
