#!/usr/bin/env bash
# System calls the server makes per operation of one session-bench scenario, for
# one or more server binaries, alternating (as compare.sh): how many writes, reads
# and wake-ups each request costs, counted by the kernel's tracepoints over the
# measured window (`perf stat -e syscalls:sys_enter_*`, needs perf and root).
#
#   scripts/bench/syscalls.sh get-local 32 /tmp/before/target/release/session-service target/release/session-service
#
# Arguments: scenario, concurrency, the binaries, then server settings (VAR=value).
# BENCH_DURATION (10s) per run, REPEATS (1) rounds.
set -euo pipefail
cd "$(dirname "$0")/../.."
scenario="$1" conc="$2"
shift 2
bins=()
while [ $# -gt 0 ] && [[ "$1" != *=* ]]; do bins+=("$1"); shift; done
port=29171
. scripts/bench/common.sh
calls=(write writev sendto sendmsg read readv recvfrom recvmsg epoll_wait futex)
events=$(printf 'syscalls:sys_enter_%s,' "${calls[@]}")
secs="${duration%s}"

printf '| round | binary | ops/s |'; printf ' %s |' "${calls[@]}"; echo
printf '| --- | --- | --- |'; for _ in "${calls[@]}"; do printf ' --- |'; done; echo
for round in $(seq 1 "${REPEATS:-1}"); do
  for bin in "${bins[@]}"; do
    svc="$bin"
    start_server "sesssys_$$_$round" "$@"
    "$bench" --url "http://127.0.0.1:$port" --json --duration "$duration" --warmup 2s \
      --scenario "$scenario" --concurrency "$conc" --server-pid "$server_pid" > "$work/run.json" &
    bench_pid=$!
    # The measured window starts after the 2 s warm-up and lasts $duration.
    sleep 2
    perf stat -x, -e "${events%,}" -p "$server_pid" -o "$work/perf.csv" -- sleep "$secs"
    wait "$bench_pid"
    python3 - "$work/run.json" "$work/perf.csv" "$round" "$bin" "$secs" "${calls[@]}" <<'PY'
import csv, json, sys
r = json.load(open(sys.argv[1]))
counts = {}
for row in csv.reader(l for l in open(sys.argv[2]) if l.strip() and not l.startswith("#")):
    if len(row) > 2 and row[0].strip().isdigit():
        counts[row[2].split("sys_enter_")[-1]] = int(row[0])
ops = r["ops_per_sec"] * float(sys.argv[5])
calls = sys.argv[6:]
cells = " | ".join(f"{counts.get(c, 0) / ops:.2f}" for c in calls)
print(f"| {sys.argv[3]} | `{sys.argv[4]}` | {r['ops_per_sec']:,.0f} | {cells} |")
PY
    stop_server
  done
done
