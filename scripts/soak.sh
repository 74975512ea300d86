#!/usr/bin/env bash
# The randomized fault soak (tests/soak/): a private PostgreSQL and Redis, three
# replicas behind response-dropping proxies, a seeded nemesis injecting overlapping
# faults, and a history checker over everything the clients were told.
#
#   scripts/soak.sh                           # 600 s, random seed, standalone Redis
#   scripts/soak.sh --duration 120 --seed 42  # replay a seed
#   scripts/soak.sh --redis sentinel          # Sentinel group, with forced failovers
#   scripts/soak.sh --write RELIABILITY.md    # and record the run in the soak table
#   scripts/soak.sh --broken --duration 60    # a server that skips idempotency:
#                                             # passes only if the checker catches it
set -euo pipefail
cd "$(dirname "$0")/.."
duration=600 seed=random redis=standalone write="" broken=""
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --redis) redis="$2"; shift 2 ;;
    --write) write="$2"; shift 2 ;;
    --broken) broken=1; shift ;;
    *) echo "usage: $0 [--duration S] [--seed N|random] [--redis standalone|sentinel] [--write FILE] [--broken]" >&2; exit 2 ;;
  esac
done
report="$(mktemp)"
trap 'rm -f "$report"' EXIT
export SOAK_DURATION_SECS="$duration" SOAK_SEED="$seed" SOAK_REDIS="$redis" SOAK_REPORT="$report"
if [ -n "$broken" ]; then
  # The same server with request ids ignored (Cargo.toml: broken-skip-idempotency),
  # kept apart so the real binary is what every other test runs.
  cargo build --bin session-service --features broken-skip-idempotency
  mkdir -p target/soak
  cp target/debug/session-service target/soak/session-service-broken
  cargo build --bin session-service   # the real one back where the tests find it
  export SOAK_SERVER_BIN="$PWD/target/soak/session-service-broken" SOAK_EXPECT_VIOLATION=1
fi
started=$(date +%s)
# The checker's own tests first (they prove it flags each kind of violation), then the run.
cargo test --test soak -- --include-ignored --nocapture 2>&1 | tee "$report.log" | grep -E "^soak:|^test |test result|panicked|seed" || true
passed=1
grep -q "test result: ok" "$report.log" || passed=
# A failed run is recorded too (the checker's counts say what it found).
[ -n "$write" ] && [ -s "$report" ] && python3 scripts/soak_report.py "$report" "$write" ${broken:+--broken}
if [ -z "$passed" ]; then
  echo "soak failed (seed above); log: $report.log, report: $report" >&2
  trap - EXIT
  exit 1
fi
echo "soak passed in $(( $(date +%s) - started )) s"
if [ -n "$broken" ]; then
  python3 - "$report" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
c = r["check"]
print(f"the broken build was caught: {c['lost']} lost, {c['duplicated']} duplicated, "
      f"{c['phantom']} phantom, {c['misordered']} misordered, {c['non_monotonic']} non-monotonic, "
      f"{r['replay_mismatches']} replays answered wrongly; first: {(c['violations'] or ['-'])[0][:300]}")
PY
fi
exit 0
