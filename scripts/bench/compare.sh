#!/usr/bin/env bash
# Before → after for one change: the same session-bench scenario against two (or
# more) server binaries, alternating, each run on a fresh database, repeated; with
# CPU per operation and the group-commit batches of each run. The machine is noisy:
# compare within one invocation, and believe only what the repeats agree on.
#
#   git worktree add /tmp/before HEAD~1 && (cd /tmp/before && cargo build --release --bin session-service)
#   scripts/bench/compare.sh update 32 /tmp/before/target/release/session-service target/release/session-service
#   REPEATS=3 scripts/bench/compare.sh update 32 A B SESSION__DATABASE__MAX_EVENTS_PER_SESSION=100
#
# Arguments: scenario, concurrency, the binaries, then server settings (VAR=value)
# applied to every run. BENCH_DURATION (10s) per run, REPEATS (2) rounds.
set -euo pipefail
cd "$(dirname "$0")/../.."
scenario="$1" conc="$2"
shift 2
bins=()
while [ $# -gt 0 ] && [[ "$1" != *=* ]]; do bins+=("$1"); shift; done
port=29191
. scripts/bench/common.sh

echo "| round | binary | ops/s | p50 ms | p99 ms | failed | server µs | PostgreSQL µs | Redis µs | statements | mean batch |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for round in $(seq 1 "${REPEATS:-2}"); do
  for bin in "${bins[@]}"; do
    svc="$bin"
    start_server "sesscmp_$$_$round" "$@"
    "$bench" --url "http://127.0.0.1:$port" --json --duration "$duration" --scenario "$scenario" \
      --concurrency "$conc" --server-pid "$server_pid" > "$work/run.json"
    # The batches of the whole run (warm-up included), from the server's histogram.
    batches=$(curl -s "http://127.0.0.1:$((port + 1))/metrics" \
      | awk '/^session_write_batch_size_sum/ {s=$2} /^session_write_batch_size_count/ {c=$2} END {print s+0, c+0}')
    python3 - "$work/run.json" "$round" "$bin" $batches <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
rnd, binary, rows, statements = sys.argv[2], sys.argv[3], float(sys.argv[4]), int(float(sys.argv[5]))
cpu = r["cpu_us_per_op"]
mean = f"{rows / statements:.1f}" if statements else "-"
print(f"| {rnd} | `{binary}` | {r['ops_per_sec']:,.0f} | {r['latency_ms']['p50']:.2f} | {r['latency_ms']['p99']:.2f} "
      f"| {sum(r['errors'].values())} | {cpu['server']:.0f} | {cpu['postgres']:.0f} | {cpu['redis']:.0f} "
      f"| {statements:,} | {mean} |")
PY
    stop_server
  done
done
