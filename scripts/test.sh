#!/usr/bin/env bash
# The test suite: every test on SQLite, and on PostgreSQL / Redis when
# TEST_DATABASE_URL / TEST_REDIS_URL are set, the slow #[ignore] reliability tests
# included (--include-ignored). Defaults point at this machine's local services.
#
#   scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
export TEST_DATABASE_URL="${TEST_DATABASE_URL-postgres://postgres@127.0.0.1:5432/postgres}"
export TEST_REDIS_URL="${TEST_REDIS_URL-redis://127.0.0.1:6379}"
cargo test --workspace "$@" -- --include-ignored
