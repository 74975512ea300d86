#!/usr/bin/env bash
# Profiles the release server under one session-bench scenario, on PostgreSQL + Redis:
#
#   scripts/profile.sh update            # perf report (top symbols) on stdout
#   PROFILE_SECS=10 scripts/profile.sh get
#
# Needs perf (Debian's linux-perf). The perf data stays in $PROFILE_OUT (default
# /tmp/session-profile) for `perf report -i …` afterwards. For call graphs, build
# with frame pointers into a separate target dir and point BIN_DIR at it:
#   RUSTFLAGS="-C force-frame-pointers=yes" CARGO_TARGET_DIR=/tmp/prof \
#     cargo build --profile profiling --bin session-service --bin session-bench
#   BIN_DIR=/tmp/prof/profiling scripts/profile.sh update
set -euo pipefail
cd "$(dirname "$0")/.."
scenario="${1:-update}"
secs="${PROFILE_SECS:-5}"
out="${PROFILE_OUT:-/tmp/session-profile}"
pg_admin="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
redis_url="${BENCH_REDIS_URL:-redis://127.0.0.1:6379}"
port=29161
db="sessprof_$$"
db_url="${pg_admin%/*}/$db?sslmode=disable"
mkdir -p "$out"
cleanup() {
  [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  psql "$pg_admin" -qc "drop database if exists $db with (force)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
bin="${BIN_DIR:-target/release}"
[ -n "${BIN_DIR:-}" ] || cargo build --release --bin session-service --bin session-bench
psql "$pg_admin" -qc "create database $db"
DATABASE_URL="$db_url" "$bin/session-service" migrate up >/dev/null
DATABASE_URL="$db_url" REDIS_URL="$redis_url" SESSION__REDIS__KEY_PREFIX="prof:$$:" \
  SESSION__SERVER__LISTEN="127.0.0.1:$port" SESSION__DATABASE__MAX_CONNECTIONS=32 \
  SESSION__SERVER__CONCURRENCY_LIMIT=4096 RUST_LOG=warn "$bin/session-service" serve > "$out/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 50); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
"$bin/session-bench" --url "http://127.0.0.1:$port" --scenario "$scenario" --duration "$((secs + 3))s" \
  --warmup 1s --server-pid "$server_pid" > "$out/bench.txt" &
bench_pid=$!
sleep 2
perf record -F 999 -g -p "$server_pid" -o "$out/perf.data" -- sleep "$secs" 2> /dev/null
wait "$bench_pid"
cat "$out/bench.txt"
perf report -i "$out/perf.data" --no-children --sort sym --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -"${PROFILE_TOP:-40}"
