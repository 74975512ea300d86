#!/usr/bin/env bash
# Offline checks of the Helm chart helm/session-service (no cluster needed):
#
#   1. `helm lint --strict` with every value set in helm/session-service/ci/;
#   2. `helm template` of each value set, then scripts/chart-manifests.py (chart
#      invariants: probes on the plaintext health port, shutdown timing, security
#      context, mounts, only the hook Job migrates and it gets the server's config,
#      extra env and volumes, selectors, OTLP egress, no Secret objects) and `kubernetes-validate
#      --strict` of every manifest against each of $K8S_VERSIONS;
#      ServiceMonitor (a Prometheus Operator CRD, no built-in schema) is the one
#      kind filtered out before kubernetes-validate; the invariants check it instead;
#   3. NOTES.txt renders (helm install --dry-run=client) with the grpcurl commands;
#   4. extra positive cases set on the command line (e.g. auth.mode=none with the
#      explicit opt-in adds --insecure-allow-no-auth; migrations off leaves the
#      server's migrate-at-start alone; fractional rate limits);
#   5. negative cases: wrong values must make `helm template` FAIL, and with the
#      expected message (a schema or template error, not some unrelated breakage).
#
#   scripts/check-chart.sh            (K8S_VERSIONS="1.30.0 1.35.0" by default)
#
# Tools come from scripts/ci-tools.sh (cached outside the repo). Rendered manifests
# are kept in $CHECK_CHART_OUT (default: a temporary directory, removed on exit).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

source scripts/ci-tools.sh helm kubectl kubernetes-validate
venv_python="$CI_TOOLS_CACHE/venv/kubernetes-validate/bin/python"

chart=helm/session-service
release=session-service
namespace=pixsim
# 1.30: the oldest release the chart supports (native preStop sleep); plus a recent one.
read -r -a k8s_versions <<<"${K8S_VERSIONS:-1.30.0 1.35.0}"
skip_kinds=(ServiceMonitor)

if [[ -n "${CHECK_CHART_OUT:-}" ]]; then
  out="$CHECK_CHART_OUT"
  mkdir -p "$out"
else
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
fi

passed=0
failed=0
failures=()
ok() { passed=$((passed + 1)); printf 'ok    %s\n' "$1"; }
bad() {
  failed=$((failed + 1)); failures+=("$1"); printf 'FAIL  %s\n' "$1"
  [[ -z "${2:-}" ]] || printf '%s\n' "$2" | sed 's/^/      /' | head -n 25
}

k_args=()
for v in "${k8s_versions[@]}"; do k_args+=(-k "$v"); done
skip_args=()
for k in "${skip_kinds[@]}"; do skip_args+=(--skip-kind "$k"); done

echo "== chart $chart ($(helm version --short), kubernetes-validate $(kubernetes-validate --version)," \
  "Kubernetes ${k8s_versions[*]})"

# --- 0. the validator itself must reject a broken manifest ---------------------------
cat >"$out/selftest-broken.yaml" <<'EOF'
apiVersion: v1
kind: Service
metadata: {name: broken}
spec:
  ports: [{name: grpc, port: "not-a-number"}]
  notAField: true
EOF
if kubernetes-validate --strict --quiet "${k_args[@]}" "$out/selftest-broken.yaml" >/dev/null 2>&1; then
  bad "kubernetes-validate self-test: a broken Service was accepted"
else
  ok "kubernetes-validate self-test: a broken Service is rejected"
fi

# --- 1 + 2. lint, render, invariants, schema validation per value set ----------------
value_files=("$chart"/ci/*-values.yaml)
[[ -e "${value_files[0]}" ]] || { echo "no value sets in $chart/ci" >&2; exit 1; }

for values in "${value_files[@]}"; do
  name="$(basename "$values" .yaml)"

  if log="$(helm lint --strict "$chart" -f "$values" 2>&1)"; then
    ok "helm lint --strict [$name]"
  else
    bad "helm lint --strict [$name]" "$log"
  fi

  rendered="$out/$name.yaml"
  if ! log="$(helm template "$release" "$chart" -n "$namespace" -f "$values" 2>&1 >"$rendered")"; then
    bad "helm template [$name]" "$log"
    continue
  fi

  if log="$("$venv_python" scripts/chart-manifests.py "$rendered" --out "$out/$name.validate.yaml" \
    "${skip_args[@]}" 2>&1)"; then
    ok "invariants [$name]: ${log#*  }"
  else
    bad "invariants [$name]" "$log"
  fi

  # kubernetes-validate only warns (exit 0) on a kind it has no schema for: treat
  # that as a failure too, since the known schema-less kinds were filtered out above.
  if log="$(kubernetes-validate --strict --quiet "${k_args[@]}" "$out/$name.validate.yaml" 2>&1)" \
    && ! grep -q . <<<"$log"; then
    ok "kubernetes-validate --strict [$name] against ${k8s_versions[*]}"
  else
    bad "kubernetes-validate --strict [$name]" "$log"
  fi

  # --- 3. NOTES.txt
  if notes="$(helm install "$release" "$chart" -n "$namespace" -f "$values" --dry-run=client 2>&1)" \
    && grep -q "kubectl -n $namespace port-forward svc/" <<<"$notes" \
    && grep -q "grpcurl " <<<"$notes"; then
    ok "NOTES.txt [$name]"
  else
    bad "NOTES.txt [$name]" "$notes"
  fi
done

# --- 4. positive cases on top of the defaults ------------------------------------------
base=(-f "$chart/ci/default-values.yaml")
render() { helm template "$release" "$chart" -n "$namespace" "${base[@]}" "$@" 2>&1; }

if log="$(render --set auth.mode=none --set auth.allowInsecureNoAuth=true)" \
  && grep -q -- "- --insecure-allow-no-auth" <<<"$log"; then
  ok "auth.mode=none + allowInsecureNoAuth renders --insecure-allow-no-auth"
else
  bad "auth.mode=none + allowInsecureNoAuth" "$log"
fi
if log="$(render)" && ! grep -q -- "--insecure-allow-no-auth" <<<"$log" \
  && ! grep -q "^kind: PodDisruptionBudget" <<<"$(render --set replicaCount=1)"; then
  ok "defaults: no --insecure-allow-no-auth; replicaCount=1 renders no PDB"
else
  bad "defaults: insecure flag / PDB" "$log"
fi
# Migrations off: no hook objects, and the server keeps migrating at start (the
# invariants check that SESSION__DATABASE__MIGRATE_ON_START is then unset).
if log="$(render --set migrations.enabled=false)" && printf '%s\n' "$log" >"$out/no-migrations.yaml" \
  && ! grep -q "^kind: Job" <<<"$log" && ! grep -q "helm.sh/hook" <<<"$log" \
  && log="$("$venv_python" scripts/chart-manifests.py "$out/no-migrations.yaml" \
    --out "$out/no-migrations.validate.yaml" "${skip_args[@]}" 2>&1)"; then
  ok "migrations.enabled=false: no hook Job/ConfigMap, MIGRATE_ON_START unset; invariants OK"
else
  bad "migrations.enabled=false" "$log"
fi
# More than one pod without Redis only with the explicit (not recommended) opt-in.
if log="$(render --set redis.enabled=false --set redis.allowReplicasWithoutRedis=true)" \
  && grep -q "^  replicas: 2$" <<<"$log" && ! grep -q "name: REDIS_URL" <<<"$log"; then
  ok "redis.enabled=false + allowReplicasWithoutRedis renders 2 replicas without REDIS_URL"
else
  bad "redis.enabled=false + allowReplicasWithoutRedis" "$log"
fi
# A Sentinel-managed Redis: the NetworkPolicy opens the sentinels' port as well.
if log="$(render --set redis.mode=sentinel --set networkPolicy.enabled=true)" \
  && grep -q "# Redis (sentinel)" <<<"$log" && grep -q "port: 26379" <<<"$log"; then
  ok "redis.mode=sentinel opens port 26379 in the NetworkPolicy"
else
  bad "redis.mode=sentinel NetworkPolicy" "$log"
fi
# rateLimit.perSecond is a float for the server: fractions stay, whole numbers stay integers.
per_second() { grep -A1 "name: SESSION__RATE_LIMIT__PER_SECOND" <<<"$1" | sed -n 's/^ *value: //p'; }
if log="$(render --set-json rateLimit.perSecond=0.25)" && [[ "$(per_second "$log")" == '"0.25"' ]] \
  && log="$(render --set-json rateLimit.perSecond=2500000)" && [[ "$(per_second "$log")" == '"2500000"' ]]; then
  ok "rateLimit.perSecond 0.25 and 2500000 render as \"0.25\" and \"2500000\""
else
  bad "rateLimit.perSecond rendering" "$log"
fi

# --- 5. negative cases: "value|expected message" --------------------------------------
negatives=(
  "replicaCount=two|at '/replicaCount': got string, want integer"
  "auth.mode=bogus|at '/auth/mode': value must be one of"
  "server.port=70000|at '/server/port': maximum"
  "metrics.port=0|at '/metrics/port': minimum"
  "log.format=xml|at '/log/format': value must be one of"
  "image.pullPolicy=Sometimes|at '/image/pullPolicy': value must be one of"
  "unknownTopLevel=1|additional properties 'unknownTopLevel' not allowed"
  "server.listen=0.0.0.0:1|additional properties 'listen' not allowed"
  "database.existingSecret=Not_A_Name|at '/database/existingSecret'"
  "database.existingSecret=|database.existingSecret is required"
  "auth.mode=none|auth.mode=none lets anyone"
  "auth.jwt.existingSecret=|auth.mode=jwt needs auth.jwt.existingSecret"
  "auth.mode=mtls-trusted-header|auth.mode=mtls-trusted-header needs tls.enabled=true and tls.clientCA=true"
  "tls.enabled=true|tls.enabled needs tls.existingSecret"
  "terminationGracePeriodSeconds=25|terminationGracePeriodSeconds (25) must exceed"
  "server.healthPort=50051|must differ"
  "metrics.enabled=false,metrics.serviceMonitor.enabled=true|metrics.serviceMonitor.enabled needs metrics.enabled"
  "podDisruptionBudget.minAvailable=2|podDisruptionBudget.minAvailable (2) must be below"
  "autoscaling.enabled=true,autoscaling.minReplicas=5,autoscaling.maxReplicas=2|must not exceed"
  "rateLimit.perSecond=-1|at '/rateLimit/perSecond': minimum"
  "redis.allowReplicasWithoutRedis=yes|at '/redis/allowReplicasWithoutRedis': got string, want boolean"
  "redis.mode=replicated|at '/redis/mode': value must be one of"
  "redis.keyPrefix={app}|at '/redis/keyPrefix'"
  "replicaCount=2,redis.enabled=false|replicaCount=2 needs redis.enabled=true"
  "autoscaling.enabled=true,redis.enabled=false|autoscaling.enabled needs redis.enabled=true"
)
# helm lint applies the schema too (it does not execute `fail`, so the cross-field
# template checks above are covered by helm template only).
for set_arg in replicaCount=two auth.mode=bogus; do
  if log="$(helm lint --strict "$chart" "${base[@]}" --set "$set_arg" 2>&1)"; then
    bad "negative lint [$set_arg]: helm lint passed although it must fail"
  else
    ok "negative lint [$set_arg] fails"
  fi
done
for case in "${negatives[@]}"; do
  set_arg="${case%%|*}"
  want="${case#*|}"
  if log="$(render --set "$set_arg")"; then
    bad "negative [$set_arg]: rendered although it must fail"
  elif grep -qF -- "$want" <<<"$log"; then
    ok "negative [$set_arg] fails: $want"
  else
    bad "negative [$set_arg]: failed, but not with \"$want\"" "$log"
  fi
done

echo
echo "== not validated by kubernetes-validate (no built-in schema): ${skip_kinds[*]}"
if ((failed > 0)); then
  printf '== failed: %s\n' "${failures[@]}"
fi
echo "check-chart: $passed passed, $failed failed"
((failed == 0))
