#!/usr/bin/env bash
# Diskless mode against a real S3 API: moto's server on loopback (an independent S3
# implementation), PostgreSQL in a scratch directory (run as an unprivileged user when this
# script runs as root), two `rafka` brokers sharing them; kcat produces to one broker and
# consumes from the other, and the objects are checked in the bucket.
# Usage: tests/clients/diskless_s3.sh path/to/rafka   (needs moto[server], boto3, kcat,
# PostgreSQL's server binaries; .ci/run installs them)
set -euo pipefail
RAFKA=$(realpath "${1:?path to the rafka binary}")
dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# PostgreSQL: the newest installed server, as `postgres` (or `nobody`) when root.
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bindir/initdb" ] || { echo "diskless_s3: no PostgreSQL server binaries"; exit 1; }
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  pguser=postgres; id postgres >/dev/null 2>&1 || pguser=nobody
  chown "$pguser" "$dir"; chmod 755 "$dir"
  as_pg=(runuser -u "$pguser" --)
fi
"${as_pg[@]}" "$bindir/initdb" -A trust -U rafka --no-sync -E UTF8 -D "$dir/pg" >/dev/null
pgport=$(free_port)
"${as_pg[@]}" "$bindir/postgres" -D "$dir/pg" -p "$pgport" -k "$dir" \
  -c listen_addresses=127.0.0.1 -c fsync=off 2>"$dir/pg.log" &
pids+=($!)
for _ in $(seq 100); do "$bindir/pg_isready" -q -h 127.0.0.1 -p "$pgport" && break; sleep 0.1; done
"$bindir/pg_isready" -q -h 127.0.0.1 -p "$pgport" || { echo "diskless_s3: PostgreSQL did not start"; cat "$dir/pg.log"; exit 1; }

# moto's S3 server and a bucket.
s3port=$(free_port)
python3 -m moto.server -H 127.0.0.1 -p "$s3port" >"$dir/moto.log" 2>&1 &
pids+=($!)
export AWS_ENDPOINT_URL="http://127.0.0.1:$s3port" AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
for _ in $(seq 100); do python3 -c "import urllib.request; urllib.request.urlopen('$AWS_ENDPOINT_URL')" 2>/dev/null && break; sleep 0.1; done
python3 -c "import boto3; boto3.client('s3').create_bucket(Bucket='rafka-ci')"

start_broker() { # node id -> sets $addr to host:port (not in a subshell: the pid is kept)
  local n=$1 out="$dir/b$1.out"
  mkdir -p "$dir/b$n"
  : >"$out"
  cat >"$dir/b$n.yaml" <<YAML
broker:
  node_id: $n
cluster:
  mode: diskless
  coordinator: "postgres://rafka@127.0.0.1:$pgport/postgres"
  object_store: "s3://rafka-ci/cluster-a"
  commit_interval_ms: 20
YAML
  "$RAFKA" serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --data-dir "$dir/b$n" \
    --config "$dir/b$n.yaml" >"$out" 2>"$dir/b$n.err" &
  pids+=($!)
  for _ in $(seq 100); do grep -q "listening on" "$out" && break; sleep 0.1; done
  addr=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$out" | head -1)
}
start_broker 1
a=$addr
start_broker 2
b=$addr
[ -n "$a" ] && [ -n "$b" ] || { echo "diskless_s3: a broker did not start"; cat "$dir"/b*.err; exit 1; }

passed=0 failed=0
check() { # name expected actual
  if [ "$2" == "$3" ]; then passed=$((passed + 1)); else
    failed=$((failed + 1)); echo "FAIL $1"; echo " expected: $2"; echo " actual:   $3"; fi
}

"$RAFKA" topic create s3-topic --partitions 2 --bootstrap "$a" >/dev/null
expected=""
for i in $(seq 1 200); do echo "k$i:v$i"; done >"$dir/in"
kcat -P -b "$a" -t s3-topic -p 0 -K: -X acks=all -X enable.idempotence=true <"$dir/in"
for i in $(seq 1 200); do expected+="$((i - 1)) k$i v$i"$'\n'; done
actual=$(kcat -C -b "$b" -t s3-topic -p 0 -o beginning -e -f '%o %k %s\n' -q)
check "produced on one broker, read exact from the other" "${expected%$'\n'}" "$actual"

tail=$(kcat -C -b "$a" -t s3-topic -p 0 -o -2 -e -f '%o:%s ' -q)
check "offsets from the end, on the producing broker" "198:v199 199:v200 " "$tail"

objects=$(python3 -c "
import boto3
r = boto3.client('s3').list_objects_v2(Bucket='rafka-ci', Prefix='cluster-a/objects/')
print('yes' if r.get('KeyCount', 0) > 0 else 'no')")
check "objects are in the bucket" "yes" "$objects"

if grep -q "panicked" "$dir"/b*.err; then failed=$((failed + 1)); echo "FAIL a broker panicked"; fi
echo "diskless_s3: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
