#!/usr/bin/env bash
# The TypeScript client (clients/typescript) and the web demo (examples/web):
#   1. npm ci from the committed lockfile;
#   2. the generated code (buf + protoc-gen-es) is up to date with the proto;
#   3. strict TypeScript build, then Node tests against a real release server on
#      PostgreSQL over gRPC-Web, and every shared test vector (tests/vectors.rs);
#   4. the demo in headless Chromium (Debian's `chromium`, installed when absent):
#      two pages from another origin edit one session; CORS refuses a stranger.
#
#   scripts/check-typescript.sh
# Environment: TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
cd "$(dirname "$0")/.."
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
if ! command -v chromium >/dev/null; then
  echo "check-typescript: installing chromium"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
fi
cargo build --release --bin session-service
cd clients/typescript
npm ci --no-audit --no-fund
npm run generate
git diff --exit-code -- src/gen || { echo "check-typescript: src/gen is out of date: run npm run generate and commit" >&2; exit 1; }
[ -z "$(git status --porcelain -- src/gen)" ] || { echo "check-typescript: src/gen has files not committed" >&2; exit 1; }
npm test
npm run test:browser
echo "check-typescript: OK"
