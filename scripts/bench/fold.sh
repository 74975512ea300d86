#!/usr/bin/env bash
# Does folding pay? MutateSession without expected_version, every client on ONE
# session (session-bench's mutate-hot), at concurrency 8 and 32, against a server that
# folds what queues into one statement (sessions.max_folded_writes 64, the default)
# and one that writes each alone (1), each on a fresh database; with the writes the
# server folded (from /metrics) and CPU per write.
#
#   scripts/bench/fold.sh            # 10 s per run
#   BENCH_DURATION=5s scripts/bench/fold.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
pg_admin="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
redis_url="${BENCH_REDIS_URL:-redis://127.0.0.1:6379}"
duration="${BENCH_DURATION:-10s}"
port=50181
work="$(mktemp -d)"
cleanup() {
  [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cargo build --release --bin session-service --bin session-bench
svc=target/release/session-service bench=target/release/session-bench

folded() {
  curl -s "http://127.0.0.1:$((port + 1))/metrics" \
    | awk '/^session_writes_folded_total/ {f=$2} /^session_write_folds_split_total/ {s=$2} END {print f+0, s+0}'
}

echo "| max_folded_writes | concurrency | writes/s | p50 ms | p99 ms | failed | folded | split rounds | server µs | PostgreSQL µs | Redis µs |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for max in 64 1; do
  for conc in 8 32; do
    db="sessfold_$$_${max}_$conc"
    db_url="${pg_admin%/*}/$db?sslmode=disable"
    psql "$pg_admin" -qc "create database $db"
    DATABASE_URL="$db_url" "$svc" migrate up >/dev/null
    DATABASE_URL="$db_url" REDIS_URL="$redis_url" SESSION__REDIS__KEY_PREFIX="fold:$$:$max:$conc:" \
      SESSION__SERVER__LISTEN="127.0.0.1:$port" SESSION__DATABASE__MAX_CONNECTIONS=32 \
      SESSION__SESSIONS__MAX_FOLDED_WRITES="$max" SESSION__SERVER__CONCURRENCY_LIMIT=4096 \
      SESSION__METRICS__LISTEN="127.0.0.1:$((port + 1))" RUST_LOG=warn "$svc" serve > "$work/server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 50); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    read -r f0 s0 < <(folded)
    "$bench" --url "http://127.0.0.1:$port" --json --duration "$duration" --scenario mutate-hot \
      --concurrency "$conc" --connections 8 --server-pid "$server_pid" > "$work/run.json"
    read -r f1 s1 < <(folded)
    python3 - "$work/run.json" "$max" "$conc" "$((f1 - f0))" "$((s1 - s0))" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
mx, conc, folded, split = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
cpu = r["cpu_us_per_op"]
failed = sum(r["errors"].values())
print(f"| {mx} | {conc} | {r['ops_per_sec']:,.0f} | {r['latency_ms']['p50']:.2f} | {r['latency_ms']['p99']:.2f} "
      f"| {failed} | {folded:,} | {split} | {cpu['server']:.0f} | {cpu['postgres']:.0f} | {cpu['redis']:.0f} |")
PY
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
    psql "$pg_admin" -qc "drop database $db with (force)"
  done
done
