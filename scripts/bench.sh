#!/usr/bin/env bash
# Benchmarks session-service against PostgreSQL and Redis themselves, on this machine,
# and writes BENCHMARKS.md (method, results table, raw JSON).
#
#   scripts/bench.sh                 # 10 s per scenario, concurrency 32
#   BENCH_DURATION=3s scripts/bench.sh --out /tmp/bench.md   # a quick look
#
# Floors and ceilings, measured in the same run:
#   pgbench -M prepared, scripts/bench/cas.sql  single-statement CAS of a 1 KiB document
#   pgbench with scripts/bench/increment.sql one hot row incremented by every client
#   redis-benchmark GET with the same value size
#   session-bench health                     grpc.health.v1 Check: this server's gRPC floor
set -euo pipefail
cd "$(dirname "$0")/.."
out=BENCHMARKS.md
[ "${1:-}" = "--out" ] && out="$2"
pg_admin="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
redis_url="${BENCH_REDIS_URL:-redis://127.0.0.1:6379}"
duration="${BENCH_DURATION:-10s}"
secs="${duration%s}"
conc="${BENCH_CONCURRENCY:-32}"
payload=1024
port=29151
work="$(mktemp -d)"
db="sessbench_$$"
# Loopback, no TLS: the same DSN for pgbench and the server, so neither pays for
# encryption the other does not.
db_url="${pg_admin%/*}/$db?sslmode=disable"

cleanup() {
  [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  psql "$pg_admin" -qc "drop database if exists $db with (force)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== building release binaries"
cargo build --profile "${BENCH_PROFILE:-release}" --bin session-service --bin session-bench
svc="target/${BENCH_PROFILE:-release}/session-service"
bench="target/${BENCH_PROFILE:-release}/session-bench"

echo "== database $db"
psql "$pg_admin" -qc "create database $db"
DATABASE_URL="$db_url" "$svc" migrate up >/dev/null

echo "== floors: pgbench and redis-benchmark"
psql "$db_url" -qc "insert into game_sessions (user_id, scene_id, current_node_id, flags, relationships, world_time, version, created_at, updated_at)
  select 9, 1, 1, jsonb_build_object('blob', repeat('x', $payload - 32), 'counter', 0), '{}'::jsonb, 0, 1, now(), now()
  from generate_series(1, $conc)"
doc="{\"blob\": \"$(head -c $((payload - 32)) /dev/zero | tr '\0' x)\", \"counter\": 1}"
# CPU ticks of every postgres process around each pgbench run (scripts/bench/cpu.py).
pg_ticks() { python3 scripts/bench/cpu.py postgres; }
floor() {
  local name="$1"; shift
  local before; before=$(pg_ticks)
  pgbench -n -M prepared -c "$conc" -j 2 -T "$secs" "$@" "$db_url" > "$work/$name.txt" 2>&1
  echo $(( $(pg_ticks) - before )) > "$work/$name.ticks"
}
psql "$db_url" -qc "checkpoint"
floor pgbench-cas -D v=1 -D "doc=$doc" -f scripts/bench/cas.sql
floor pgbench-incr -f scripts/bench/increment.sql
redis_host="${redis_url#redis://}"
redis-benchmark -h "${redis_host%:*}" -p "${redis_host##*:}" -t get -d "$payload" -c "$conc" -n 200000 -q > "$work/redis.txt" 2>&1
psql "$db_url" -qc "delete from game_sessions"
# The floors' dead rows and WAL are theirs: vacuumed and checkpointed before the
# service runs, so autovacuum and the checkpoint they trigger are not billed to it
# (the floors start from a fresh database and a checkpoint too).
psql "$db_url" -qc "vacuum analyze" -qc "checkpoint"

echo "== server (release) on PostgreSQL + Redis"
DATABASE_URL="$db_url" REDIS_URL="$redis_url" SESSION__REDIS__KEY_PREFIX="bench:$$:" \
  SESSION__SERVER__LISTEN="127.0.0.1:$port" SESSION__DATABASE__MAX_CONNECTIONS=32 \
  SESSION__SERVER__CONCURRENCY_LIMIT=4096 SESSION__METRICS__LISTEN="127.0.0.1:$((port + 1))" \
  RUST_LOG=warn "$svc" serve > "$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 50); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

run() {
  local name="$1"; shift
  echo "   $name $*"
  "$bench" --url "http://127.0.0.1:$port" --json --duration "$duration" --payload-bytes "$payload" \
    --server-pid "$server_pid" "$@" > "$work/$name.json"
}
echo "== session-bench"
run health --scenario health --concurrency "$conc"
run get --scenario get --concurrency "$conc"
run get-local --scenario get-local --concurrency "$conc"
run update --scenario update --concurrency "$conc"
run update-8 --scenario update --concurrency 8
run update-256 --scenario update --concurrency 256 --connections 16
run mutate --scenario mutate --concurrency "$conc"
run hot --scenario hot --concurrency "$conc"
run mutate-hot --scenario mutate-hot --concurrency "$conc"
run watch --scenario watch --concurrency "$conc"
run get-256 --scenario get --concurrency 256 --connections 16
grep VmHWM "/proc/$server_pid/status" | awk '{print $2}' > "$work/rss-kib.txt"
# The audit trail the run left (SCALING.md sizes the events table from it).
psql "$db_url" -tAc "select count(*), pg_total_relation_size('session_events') from session_events" \
  > "$work/events.txt" || true
# The group-commit histogram, as a markdown table (empty if the server has none).
curl -s "http://127.0.0.1:$((port + 1))/metrics" | python3 scripts/bench/batches.py > "$work/batches.txt" || true

echo "== writing $out"
python3 scripts/bench/report.py "$work" "$out" "$conc" "$duration" "$payload"
