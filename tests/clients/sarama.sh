#!/usr/bin/env bash
# Sarama 1.22 (Debian 12's Go client, which speaks the pre-2017 protocol versions Kafka 4
# dropped) producing, consuming alone and in a group, committing and describing configs
# against the `rafka` binary. Built offline from Debian's packaged sources (GOPATH mode).
# Usage: tests/clients/sarama.sh path/to/rafka   (installs golang-go and
# golang-github-shopify-sarama-dev when missing)
set -euo pipefail
RAFKA=$(realpath "${1:?path to the rafka binary}")
here=$(cd "$(dirname "$0")" && pwd)
missing=()
for pkg in golang-go golang-github-shopify-sarama-dev; do
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
(cd "$here/sarama" && GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOPROXY=off \
  GOCACHE="$dir/gocache" go build -o "$dir/sarama-check" . 2>"$dir/build.log") ||
  { cat "$dir/build.log"; exit 1; }
"$RAFKA" serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --data-dir "$dir/data" >"$dir/out" 2>"$dir/stderr" &
pid=$!
for _ in $(seq 50); do grep -q "listening on" "$dir/out" && break; sleep 0.1; done
addr=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$dir/out")
[ -n "$addr" ] || { echo "sarama: broker did not start"; cat "$dir/stderr"; exit 1; }
status=0
timeout 180 "$dir/sarama-check" "$addr" || status=$?
if grep -q "panicked" "$dir/stderr"; then echo "FAIL broker panicked"; status=1; fi
if grep -qi "closing connection" "$dir/stderr"; then
  echo "FAIL the broker closed a Sarama connection:"; grep -i "closing connection" "$dir/stderr" | head -5; status=1
fi
[ "$status" -eq 0 ] || { echo "--- broker log (tail)"; tail -30 "$dir/stderr"; }
exit "$status"
