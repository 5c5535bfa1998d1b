#!/usr/bin/env bash
# Debian 12's Go Kafka clients, which speak the pre-2017 protocol versions Kafka 4 dropped,
# against the `rafka` binary: Sarama 1.22 (sarama/: producing, consuming alone and in a
# group, committing, describing configs) and kafka-go 0.2.1 (kafkago/: writer and group
# reader). Built offline from Debian's packaged sources (GOPATH mode).
# Usage: tests/clients/go_clients.sh path/to/rafka   (installs golang-go,
# golang-github-shopify-sarama-dev and golang-github-segmentio-kafka-go-dev when missing)
set -euo pipefail
RAFKA=$(realpath "${1:?path to the rafka binary}")
here=$(cd "$(dirname "$0")" && pwd)
missing=()
for pkg in golang-go golang-github-shopify-sarama-dev golang-github-segmentio-kafka-go-dev; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
dir=$(mktemp -d)
cleanup() { [ -n "${pid:-}" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }; rm -rf "$dir"; }
trap cleanup EXIT
# GOPATH mode on Debian's source tree: no module proxy, no network.
for client in sarama kafkago; do
  (cd "$here/$client" && GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOPROXY=off \
    GOCACHE="$dir/gocache" go build -o "$dir/$client-check" . 2>"$dir/build.log") ||
    { cat "$dir/build.log"; exit 1; }
done
"$RAFKA" serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --data-dir "$dir/data" >"$dir/out" 2>"$dir/stderr" &
pid=$!
for _ in $(seq 50); do grep -q "listening on" "$dir/out" && break; sleep 0.1; done
addr=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$dir/out")
[ -n "$addr" ] || { echo "go clients: broker did not start"; cat "$dir/stderr"; exit 1; }
status=0
timeout 180 "$dir/sarama-check" "$addr" || status=$?
"$RAFKA" topic create kafkago-topic --partitions 1 --bootstrap "$addr" >/dev/null
timeout 120 "$dir/kafkago-check" "$addr" kafkago-topic || status=$?
if grep -q "panicked" "$dir/stderr"; then echo "FAIL broker panicked"; status=1; fi
if grep -qi "closing connection" "$dir/stderr"; then
  echo "FAIL the broker closed a Sarama connection:"; grep -i "closing connection" "$dir/stderr" | head -5; status=1
fi
[ "$status" -eq 0 ] || { echo "--- broker log (tail)"; tail -30 "$dir/stderr"; }
exit "$status"
