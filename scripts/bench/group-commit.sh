#!/usr/bin/env bash
# Does group commit pay? UpdateSession (one session per client) at concurrency 8, 32
# and 256 against a server with group commit (max_batch 64, the default) and one
# without (max_batch 1: one statement per write), each on a fresh database, with the
# batches the server actually formed (from /metrics) and CPU per update.
#
#   scripts/bench/group-commit.sh            # 10 s per run
#   BENCH_DURATION=5s scripts/bench/group-commit.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
pg_admin="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
redis_url="${BENCH_REDIS_URL:-redis://127.0.0.1:6379}"
duration="${BENCH_DURATION:-10s}"
port=50171
work="$(mktemp -d)"
cleanup() {
  [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cargo build --release --bin session-service --bin session-bench
svc=target/release/session-service bench=target/release/session-bench

# count and sum of session_write_batch_size so far
batches() {
  curl -s "http://127.0.0.1:$((port + 1))/metrics" \
    | awk '/^session_write_batch_size_count/ {c=$2} /^session_write_batch_size_sum/ {s=$2} END {print c+0, s+0}'
}

echo "| max_batch | concurrency | updates/s | p50 ms | p99 ms | statements | mean batch | server µs | PostgreSQL µs | Redis µs |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for max_batch in 64 1; do
  for conc in 8 32 256; do
    db="sessgc_$$_${max_batch}_$conc"
    db_url="${pg_admin%/*}/$db?sslmode=disable"
    psql "$pg_admin" -qc "create database $db"
    DATABASE_URL="$db_url" "$svc" migrate up >/dev/null
    DATABASE_URL="$db_url" REDIS_URL="$redis_url" SESSION__REDIS__KEY_PREFIX="gc:$$:$max_batch:$conc:" \
      SESSION__SERVER__LISTEN="127.0.0.1:$port" SESSION__DATABASE__MAX_CONNECTIONS=32 \
      SESSION__DATABASE__MAX_BATCH="$max_batch" SESSION__SERVER__CONCURRENCY_LIMIT=4096 \
      SESSION__METRICS__LISTEN="127.0.0.1:$((port + 1))" RUST_LOG=warn "$svc" serve > "$work/server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 50); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    # The warm-up's batches count too; its share is small next to the measured run.
    read -r c0 s0 < <(batches)
    connections=8; [ "$conc" -ge 256 ] && connections=16
    "$bench" --url "http://127.0.0.1:$port" --json --duration "$duration" --scenario update \
      --concurrency "$conc" --connections "$connections" --server-pid "$server_pid" > "$work/run.json"
    read -r c1 s1 < <(batches)
    python3 - "$work/run.json" "$max_batch" "$conc" "$((c1 - c0))" "$((s1 - s0))" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
mb, conc, n, total = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
cpu = r["cpu_us_per_op"]
print(f"| {mb} | {conc} | {r['ops_per_sec']:,.0f} | {r['latency_ms']['p50']:.2f} | {r['latency_ms']['p99']:.2f} "
      f"| {n:,} | {total / n if n else 0:.1f} | {cpu['server']:.0f} | {cpu['postgres']:.0f} | {cpu['redis']:.0f} |")
PY
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
    psql "$pg_admin" -qc "drop database $db with (force)"
  done
done
