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
port=29181
. scripts/bench/common.sh

folded() {
  curl -s "http://127.0.0.1:$((port + 1))/metrics" \
    | awk '/^session_writes_folded_total/ {f=$2} /^session_write_folds_split_total/ {s=$2} END {print f+0, s+0}'
}

echo "| max_folded_writes | concurrency | writes/s | p50 ms | p99 ms | failed | folded | split rounds | server µs | PostgreSQL µs | Redis µs |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for max in 64 1; do
  for conc in 8 32; do
    start_server "sessfold_$$_${max}_$conc" SESSION__SESSIONS__MAX_FOLDED_WRITES="$max"
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
    stop_server
  done
done
