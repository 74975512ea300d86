#!/usr/bin/env bash
# The proto is a public API: `buf lint` (STANDARD, i.e. DEFAULT, rules) and
# `buf breaking` against the last commit of main that has the proto, so no field or
# RPC is renamed or renumbered by accident.
#
#   scripts/check-proto.sh [AGAINST]    AGAINST: a git ref (default: main, or HEAD~1 on main)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/ci-tools.sh buf

buf lint
echo "buf lint: OK"

against="${1:-}"
if [[ -z "$against" ]]; then
  # On a branch, compare with main; on main itself (CI), with the commit before.
  if [[ "$(git rev-parse --abbrev-ref HEAD)" != "main" ]] && git rev-parse -q --verify main >/dev/null; then
    against=main
  else
    against=HEAD~1
  fi
fi
if ! git cat-file -e "$against:proto/pixsim/session/v1/session.proto" 2>/dev/null; then
  echo "buf breaking: $against has no proto yet; nothing to compare"
  exit 0
fi
buf breaking --against ".git#ref=$(git rev-parse "$against"),subdir=proto" proto
echo "buf breaking against $against: OK"
