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
port=29175
. scripts/bench/common.sh

# count and sum of session_write_batch_size so far
batches() {
  curl -s "http://127.0.0.1:$((port + 1))/metrics" \
    | awk '/^session_write_batch_size_count/ {c=$2} /^session_write_batch_size_sum/ {s=$2} END {print c+0, s+0}'
}

echo "| max_batch | concurrency | updates/s | p50 ms | p99 ms | statements | mean batch | server µs | PostgreSQL µs | Redis µs |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for max_batch in 64 1; do
  for conc in 8 32 256; do
    start_server "sessgc_$$_${max_batch}_$conc" SESSION__DATABASE__MAX_BATCH="$max_batch"
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
    stop_server
  done
done
