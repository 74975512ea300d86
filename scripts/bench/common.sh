# Shared by the scripts/bench/*.sh comparisons (sourced, from the repository root):
# settings, a work dir cleaned up on exit, the release binaries, and one server at a
# time on a fresh database. The scripts' ports (`port=29…`, metrics on port + 1) sit
# below Linux's ephemeral range (32768-60999): in it, the server's own connection to
# PostgreSQL could hold the port and the next run's listener fail to bind.
pg_admin="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
redis_url="${BENCH_REDIS_URL:-redis://127.0.0.1:6379}"
duration="${BENCH_DURATION:-10s}"
work="$(mktemp -d)"
cleanup() {
  [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cargo build --release --bin session-service --bin session-bench
svc=target/release/session-service bench=target/release/session-bench

# start_server NAME [SETTING=VALUE…]: a fresh database NAME, migrated, and the server
# on $port (metrics on $port + 1) with those settings; sets $server_pid and $db.
start_server() {
  db="$1"; shift
  local db_url="${pg_admin%/*}/$db?sslmode=disable"
  psql "$pg_admin" -qc "create database $db"
  DATABASE_URL="$db_url" "$svc" migrate up >/dev/null
  env "$@" DATABASE_URL="$db_url" REDIS_URL="$redis_url" SESSION__REDIS__KEY_PREFIX="$db:" \
    SESSION__SERVER__LISTEN="127.0.0.1:$port" SESSION__DATABASE__MAX_CONNECTIONS=32 \
    SESSION__SERVER__CONCURRENCY_LIMIT=4096 SESSION__METRICS__LISTEN="127.0.0.1:$((port + 1))" \
    RUST_LOG=warn "$svc" serve > "$work/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 50); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
}

# stop_server: stops it and drops its database.
stop_server() {
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
  psql "$pg_admin" -qc "drop database $db with (force)"
}
