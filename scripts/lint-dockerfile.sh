#!/usr/bin/env bash
# Lints the Dockerfile with hadolint from the CI tool cache (scripts/ci-tools.sh).
#
#   scripts/lint-dockerfile.sh [DOCKERFILE...]    (default: ./Dockerfile)
#
# Fails on any finding of severity "info" or worse; style nits are reported too.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

CI_TOOLS_QUIET=1 source scripts/ci-tools.sh hadolint

files=("$@")
[[ ${#files[@]} -gt 0 ]] || files=(Dockerfile)

echo "hadolint $(hadolint --version | sed 's/^Haskell Dockerfile Linter //'): ${files[*]}"
hadolint --failure-threshold info "${files[@]}"
echo "hadolint: OK"
