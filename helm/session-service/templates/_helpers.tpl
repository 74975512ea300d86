{{/*
Names, labels and shared snippets for the session-service chart.
*/}}

{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "session-service.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: the release name, suffixed with the chart name unless the
release name already contains it.
*/}}
{{- define "session-service.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "session-service.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "session-service.labels" -}}
helm.sh/chart: {{ include "session-service.chart" . }}
{{ include "session-service.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pixsim
{{- end }}

{{/* Immutable selector labels (Deployment selector, Service, PDB, NetworkPolicy). */}}
{{- define "session-service.selectorLabels" -}}
app.kubernetes.io/name: {{ include "session-service.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "session-service.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "session-service.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, or repository:tag@digest when a digest is given. */}}
{{- define "session-service.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Mount points inside the container (the only files the server reads). */}}
{{- define "session-service.configDir" -}}/etc/session-service{{- end }}
{{- define "session-service.configFile" -}}/etc/session-service/config.toml{{- end }}
{{- define "session-service.jwtDir" -}}/etc/session-service/jwt{{- end }}
{{- define "session-service.tlsDir" -}}/etc/session-service/tls{{- end }}

{{- define "session-service.redisSecret" -}}
{{- .Values.redis.existingSecret | default .Values.database.existingSecret }}
{{- end }}

{{/* The number of pods the workload runs with at the least. */}}
{{- define "session-service.minReplicas" -}}
{{- if .Values.autoscaling.enabled }}{{ .Values.autoscaling.minReplicas | int }}{{ else }}{{ .Values.replicaCount | int }}{{ end }}
{{- end }}

{{/*
Environment variables whose values are optional: given a dict NAME -> value, renders
the entries whose value is not null (sorted by name), or nothing. Numbers go through
int64 so that large values are not printed in float notation.
Usage:
  {{- with include "session-service.optionalEnv" (dict "NAME" .Values.x) }}
  {{- . | nindent 12 }}
  {{- end }}
*/}}
{{- define "session-service.optionalEnv" -}}
{{- $out := list }}
{{- range $name, $value := . }}
{{- if not (kindIs "invalid" $value) }}
{{- $s := $value | toString }}
{{- if or (kindIs "float64" $value) (kindIs "int64" $value) (kindIs "int" $value) }}
{{- $s = $value | int64 | toString }}
{{- end }}
{{- $out = append $out (dict "name" $name "value" $s) }}
{{- end }}
{{- end }}
{{- if $out }}
{{- toYaml $out }}
{{- end }}
{{- end }}

{{/* DATABASE_URL from the existing Secret (server and migration Job). */}}
{{- define "session-service.databaseEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret | quote }}
      key: {{ .Values.database.urlKey | quote }}
{{- end }}

{{/* Logging environment (server and migration Job). */}}
{{- define "session-service.logEnv" -}}
- name: SESSION__LOG__FORMAT
  value: {{ .Values.log.format | quote }}
- name: RUST_LOG
  value: {{ .Values.log.level | quote }}
{{- end }}

{{/* OTEL_RESOURCE_ATTRIBUTES from a map: k1=v1,k2=v2 (sorted by key). */}}
{{- define "session-service.otelResourceAttributes" -}}
{{- $pairs := list }}
{{- range $k, $v := .Values.otel.resourceAttributes }}
{{- $pairs = append $pairs (printf "%s=%v" $k $v) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{/*
A number as an environment value, never in exponent notation (values files hand
Helm every number as a float, which prints 4194304 as 4.194304e+06, and the server's
settings loader reads "1e-05" as a string): whole numbers as integers, others as
decimals (0.5, 12345678.5). Below 1e-15 the decimal would round to "0." (which
reads as 0, "off"), so such a value keeps Go's notation and fails loudly instead.
*/}}
{{- define "session-service.number" -}}
{{- if kindIs "string" . }}{{ . }}
{{- else if eq (float64 .) (floor .) }}{{ int64 . }}
{{- else }}
{{- $s := regexReplaceAll "0+$" (printf "%.15f" (float64 .)) "" }}
{{- if regexMatch "^-?0\\.$" $s }}{{ . }}{{ else }}{{ $s }}{{ end }}
{{- end }}
{{- end }}

{{/* data.config.toml of the server's ConfigMap and of the migration hook's copy. */}}
{{- define "session-service.configData" -}}
config.toml: |
  # session-service configuration, rendered from the chart value `configToml`.
  # Mounted at {{ include "session-service.configFile" . }} and read with `--config` (by
  # `serve` and by the migration Job's `migrate up`).
  # The SESSION__* environment variables the chart sets take precedence over this file.
  {{- with .Values.configToml }}
  {{- . | nindent 2 }}
  {{- end }}
{{- end }}

{{/* Name of the migration hook Job and of its config.toml ConfigMap. */}}
{{- define "session-service.migrateName" -}}
{{- printf "%s-migrate" (include "session-service.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Cross-field checks that a JSON schema cannot express clearly. Included by the
Deployment, so any `helm template/install/upgrade` fails early with a clear message.
*/}}
{{- define "session-service.validate" -}}
{{- $v := .Values }}
{{- if not $v.database.existingSecret }}
{{- fail "database.existingSecret is required: the name of an existing Secret holding DATABASE_URL (key database.urlKey)" }}
{{- end }}
{{- if eq $v.auth.mode "none" }}
{{- if not $v.auth.allowInsecureNoAuth }}
{{- fail "auth.mode=none lets anyone read and change every session; the server refuses it on a non-loopback address. Set auth.allowInsecureNoAuth=true to run it anyway (adds --insecure-allow-no-auth)" }}
{{- end }}
{{- end }}
{{- if and (eq $v.auth.mode "jwt") (not $v.auth.jwt.existingSecret) }}
{{- fail "auth.mode=jwt needs auth.jwt.existingSecret: an existing Secret with the JWT public keys (<kid>.pem) or the HS256 secret" }}
{{- end }}
{{- if and $v.tls.enabled (not $v.tls.existingSecret) }}
{{- fail "tls.enabled needs tls.existingSecret: an existing kubernetes.io/tls Secret (tls.crt, tls.key, optional ca.crt)" }}
{{- end }}
{{- if and $v.tls.clientCA (not $v.tls.enabled) }}
{{- fail "tls.clientCA needs tls.enabled" }}
{{- end }}
{{- if and (eq $v.auth.mode "mtls-trusted-header") (not (and $v.tls.enabled $v.tls.clientCA)) }}
{{- fail "auth.mode=mtls-trusted-header needs tls.enabled=true and tls.clientCA=true (client certificates verified against ca.crt)" }}
{{- end }}
{{- $stop := add ($v.lifecycle.preStopSleepSeconds | int) ($v.server.shutdownGraceSecs | int) }}
{{- if le ($v.terminationGracePeriodSeconds | int) $stop }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed lifecycle.preStopSleepSeconds + server.shutdownGraceSecs (%d), or in-flight requests are killed before they drain" ($v.terminationGracePeriodSeconds | int) $stop) }}
{{- end }}
{{- $ports := list ($v.server.port | int) ($v.server.healthPort | int) }}
{{- if $v.metrics.enabled }}{{ $ports = append $ports ($v.metrics.port | int) }}{{ end }}
{{- if ne (len $ports) (len (uniq $ports)) }}
{{- fail (printf "server.port, server.healthPort and metrics.port must differ (got %v)" $ports) }}
{{- end }}
{{- if and $v.metrics.serviceMonitor.enabled (not $v.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled" }}
{{- end }}
{{- if and (not $v.redis.enabled) (or $v.autoscaling.enabled (gt ($v.replicaCount | int) 1)) (not $v.redis.allowReplicasWithoutRedis) }}
{{- fail (printf "%s needs redis.enabled=true: without Redis each replica caches on its own, serves versions another replica already replaced, and WatchSession misses the other replicas' writes. Set redis.enabled=true (REDIS_URL from redis.existingSecret), run replicaCount=1 without autoscaling, or set redis.allowReplicasWithoutRedis=true to accept that (not recommended)" (ternary "autoscaling.enabled" (printf "replicaCount=%d" ($v.replicaCount | int)) $v.autoscaling.enabled)) }}
{{- end }}
{{- if $v.autoscaling.enabled }}
{{- if gt ($v.autoscaling.minReplicas | int) ($v.autoscaling.maxReplicas | int) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- if not (and $v.resources $v.resources.requests $v.resources.requests.cpu) }}
{{- fail "autoscaling on CPU needs resources.requests.cpu" }}
{{- end }}
{{- end }}
{{- end }}
