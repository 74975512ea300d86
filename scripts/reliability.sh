#!/usr/bin/env bash
# Runs the reliability suite and the fuzzer, and writes RELIABILITY.md from what they
# measured (nothing in it is typed by hand).
#
#   scripts/reliability.sh               # fuzz for 60 s
#   FUZZ_SECONDS=300 scripts/reliability.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export TEST_DATABASE_URL="${TEST_DATABASE_URL-postgres://postgres@127.0.0.1:5432/postgres}"
export TEST_REDIS_URL="${TEST_REDIS_URL-redis://127.0.0.1:6379}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export RELIABILITY_REPORT_DIR="$work"

echo "== reliability tests"
cargo test --test reliability -- --ignored --test-threads=1 2>&1 | tee "$work/tests.log" | grep -E "^test |test result"
echo "== properties"
PROPTEST_CASES="${PROPTEST_CASES:-2000}" cargo test --test properties 2>&1 | tee "$work/props.log" | grep -E "test result"
echo "== fuzzing"
FUZZ_LOG="$work/fuzz.log" scripts/fuzz.sh
python3 scripts/reliability_report.py "$work" RELIABILITY.md
echo "wrote RELIABILITY.md"
