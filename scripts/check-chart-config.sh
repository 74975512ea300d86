#!/usr/bin/env bash
# The chart and the server agree on setting names: renders every value set in
# helm/session-service/ci/ and lets the built binary validate the result
# (scripts/chart-config.py). Needs a built binary: BINARY (default target/debug/session-service).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/ci-tools.sh helm kubernetes-validate
python="$CI_TOOLS_CACHE/venv/kubernetes-validate/bin/python"
binary="${BINARY:-target/debug/session-service}"
[ -x "$binary" ] || cargo build --bin session-service
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for values in helm/session-service/ci/*-values.yaml; do
  name="$(basename "$values" .yaml)"
  helm template session-service helm/session-service -f "$values" > "$out/$name.yaml"
  "$python" scripts/chart-config.py "$out/$name.yaml" "$binary"
done
