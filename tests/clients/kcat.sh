#!/usr/bin/env bash
# kcat (Debian's build of librdkafka, older than the vendored one: it exercises older API
# versions and the "no default tagged fields" rule) against the `rafka` binary.
# Usage: tests/clients/kcat.sh path/to/rafka
set -euo pipefail
RAFKA=${1:?path to the rafka binary}
dir=$(mktemp -d)
out=$(mktemp)
"$RAFKA" serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --data-dir "$dir/data" >"$out" 2>"$dir/stderr" &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir" "$out"; }
trap cleanup EXIT
for _ in $(seq 50); do grep -q "listening on" "$out" && break; sleep 0.1; done
addr=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$out")
[ -n "$addr" ] || { echo "kcat: broker did not start"; cat "$dir/stderr"; exit 1; }

passed=0 failed=0
check() { # name expected actual
  if [ "$2" == "$3" ]; then passed=$((passed + 1)); else
    failed=$((failed + 1)); echo "FAIL $1"; echo " expected: $2"; echo " actual:   $3"; fi
}

expected=""
for codec in none gzip snappy lz4 zstd; do
  for i in 1 2 3; do echo "k$i-$codec:v$i-$codec"; done |
    kcat -P -b "$addr" -t kcat-topic -p 0 -K: -z "$codec" -X acks=all
  for i in 1 2 3; do expected+="0 k$i-$codec v$i-$codec"$'\n'; done
done
actual=$(kcat -C -b "$addr" -t kcat-topic -p 0 -o beginning -e -f '%p %k %s\n' -q)
check "round trip with every codec" "${expected%$'\n'}" "$actual"

offsets=$(kcat -C -b "$addr" -t kcat-topic -p 0 -o beginning -e -f '%o ' -q)
check "contiguous offsets" "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 " "$offsets"

tail=$(kcat -C -b "$addr" -t kcat-topic -p 0 -o -2 -e -f '%o:%s ' -q)
check "offset from the end" "13:v2-zstd 14:v3-zstd " "$tail"

meta=$(kcat -L -b "$addr" -t kcat-topic | grep -c 'partition 0, leader 0')
check "metadata" "1" "$meta"

if grep -q "panicked" "$dir/stderr"; then failed=$((failed + 1)); echo "FAIL broker panicked"; fi
echo "kcat: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
