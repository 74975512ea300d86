#!/usr/bin/env bash
# Makes sure the PostgreSQL and Redis that the tests use answer, starting them with
# this machine's commands if not, and that a redis-server binary exists (the outage
# tests start private ones). Fails if either stays unreachable.
set -euo pipefail

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

if ! pg_up; then
  echo "PostgreSQL not answering: starting it"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
pg_up || { echo "PostgreSQL at 127.0.0.1:5432 is unreachable" >&2; exit 1; }

if ! redis_up; then
  echo "Redis not answering: starting it"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  for _ in $(seq 1 30); do redis_up && break; sleep 1; done
fi
redis_up || { echo "Redis at 127.0.0.1:6379 is unreachable" >&2; exit 1; }

command -v redis-server >/dev/null || { echo "redis-server binary missing (outage tests need it)" >&2; exit 1; }
echo "PostgreSQL and Redis answer; redis-server at $(command -v redis-server)"
