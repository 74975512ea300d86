#!/usr/bin/env bash
# Does the service work through PgBouncer? Starts a private PgBouncer (the machine's
# `pgbouncer`) in front of a fresh database, runs the release server through it and
# drives update, mutate and get (session-bench, 3 s each), once per pool_mode:
# session, then transaction. Prints one line per run; exits 1 if session mode fails
# any call. Transaction mode needs PgBouncer >= 1.21 with max_prepared_statements
# (the driver, sqlx, names its prepared statements); the script sets it, and reports
# what the installed version does.
#
#   scripts/pgbouncer-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v pgbouncer >/dev/null || { echo "pgbouncer-check: needs pgbouncer (apt-get install pgbouncer)" >&2; exit 2; }
pg_admin="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
work="$(mktemp -d)"
db="sessbouncer_$$"
bouncer_port=56432
port=29171
cleanup() {
  [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  [ -f "$work/pgbouncer.pid" ] && kill "$(cat "$work/pgbouncer.pid")" 2>/dev/null || true
  psql "$pg_admin" -qc "drop database if exists $db with (force)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release --bin session-service --bin session-bench
cat >"$work/verdict.py" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
failed = sum(r["errors"].values())
print(f"{r['ops_per_sec']:.0f} ops/s, {failed} failed {r['errors'] or ''}")
PY
psql "$pg_admin" -qc "create database $db"
# Migrations need a session (advisory locks): they go to PostgreSQL directly.
DATABASE_URL="${pg_admin%/*}/$db" target/release/session-service migrate up >/dev/null

cat >"$work/pgbouncer.template" <<INI
[databases]
sessions = host=127.0.0.1 port=5432 dbname=$db user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bouncer_port
auth_type = any
pool_mode = MODE
# sqlx (the PostgreSQL driver) sends it at connect; PgBouncer must let it pass.
ignore_startup_parameters = extra_float_digits
default_pool_size = 8
max_client_conn = 200
logfile = $work/pgbouncer.log
pidfile = $work/pgbouncer.pid
unix_socket_dir =
INI
chmod 755 "$work"
if [ "$(id -u)" = 0 ]; then chown -R postgres "$work"; as=(runuser -u postgres --); else as=(); fi
version="$(pgbouncer --version | head -1 | awk '{print $2}')"
# Protocol-level prepared statements exist from 1.21 on; older versions refuse the key.
if printf '%s\n1.21\n' "$version" | sort -V -C; then extra=""; else extra="max_prepared_statements = 200"; fi

status=0
for mode in session transaction; do
  [ -f "$work/pgbouncer.pid" ] && { kill "$(cat "$work/pgbouncer.pid")"; sleep 0.5; }
  sed "s/^pool_mode = MODE$/pool_mode = $mode\n$extra/" "$work/pgbouncer.template" >"$work/pgbouncer.ini"
  "${as[@]}" pgbouncer -d "$work/pgbouncer.ini"
  for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p "$bouncer_port" && break; sleep 0.1; done
  echo "pgbouncer $version, pool_mode = $mode ${extra:+($extra)}"
  DATABASE_URL="postgres://postgres@127.0.0.1:$bouncer_port/sessions" \
  SESSION__DATABASE__MIGRATE_ON_START=false \
  SESSION__SERVER__LISTEN="127.0.0.1:$port" RUST_LOG=error SESSION__LOG__FORMAT=json \
    target/release/session-service serve >"$work/server.log" 2>&1 &
  server_pid=$!
  up=no
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && { up=yes; break; }; sleep 0.1; done
  if [ "$up" = no ]; then
    echo "$mode: the server did not start:"; tail -5 "$work/server.log"
    [ "$mode" = session ] && status=1
    kill "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null || true; server_pid=
    continue
  fi
  for scenario in update mutate get; do
    line="$(target/release/session-bench --url "http://127.0.0.1:$port" --scenario "$scenario" \
      --duration 3s --concurrency 16 --json 2>&1 | tail -1 || true)"
    verdict="$(python3 "$work/verdict.py" "$line" 2>/dev/null || echo "did not run: $line")"
    echo "$mode $scenario: $verdict"
    if ! grep -q " 0 failed" <<<"$verdict"; then
      [ "$mode" = session ] && status=1
      { grep -o '"cause":"[^"]*"' "$work/server.log" || true; } | sort | uniq -c | sort -rn | head -2 | sed 's/^/    /'
    fi
  done
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
done
exit $status
