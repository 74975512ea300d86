#!/usr/bin/env bash
# Runs examples/python/conflict.py against a real server and checks its output:
#
#   1. starts the server binary on a fresh SQLite database in a temporary directory,
#      on a free loopback port;
#   2. waits until grpc.health.v1 reports pixsim.session.v1.SessionService SERVING;
#   3. runs the example and checks that its output names VERSION_CONFLICT;
#   4. stops the server (SIGTERM) and removes the temporary directory.
#
#   scripts/check-python-example.sh
#
# Environment: SERVER_BIN (default target/release/session-service; build it first),
#              PYTHON (default python3). When that interpreter lacks grpcio,
#              grpcio-reflection or googleapis-common-protos, they are installed into
#              a venv at target/python-example-venv (reused on later runs).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

die() { printf 'check-python-example: %s\n' "$*" >&2; exit 1; }

server_bin="${SERVER_BIN:-target/release/session-service}"
[[ -x "$server_bin" ]] || die "no server binary at $server_bin (cargo build --release, or set SERVER_BIN)"
server_bin="$(realpath "$server_bin")"

python="${PYTHON:-python3}"
modules='import grpc, grpc_reflection.v1alpha.proto_reflection_descriptor_database, google.rpc.status_pb2'
if ! "$python" -c "$modules" 2>/dev/null; then
  venv=target/python-example-venv
  [[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
  if ! "$venv/bin/python" -c "$modules" 2>/dev/null; then
    echo "check-python-example: installing grpcio grpcio-reflection googleapis-common-protos into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      grpcio grpcio-reflection googleapis-common-protos
  fi
  python="$venv/bin/python"
fi

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
addr="127.0.0.1:$port"

(cd "$work" && DATABASE_URL="sqlite://$work/t.db?mode=rwc" SESSION__SERVER__LISTEN="$addr" \
  exec "$server_bin" serve) >"$work/server.log" 2>&1 &
server_pid=$!

# Health without extra packages: HealthCheckRequest{service} and the SERVING answer
# (field 1 = 1) are encoded by hand.
if ! "$python" - "$addr" "$server_pid" <<'PY'
import os, sys, time
import grpc

addr, pid = sys.argv[1], int(sys.argv[2])
service = b"pixsim.session.v1.SessionService"
request = b"\x0a" + bytes([len(service)]) + service
channel = grpc.insecure_channel(addr)
check = channel.unary_unary("/grpc.health.v1.Health/Check")
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("the server exited")
    try:
        if check(request, timeout=1) == b"\x08\x01":
            sys.exit(0)
    except grpc.RpcError:
        pass
    time.sleep(0.2)
sys.exit(f"no SERVING health answer from {addr} within 60 s")
PY
then
  cat "$work/server.log" >&2
  die "the server did not become healthy"
fi

echo "== python3 examples/python/conflict.py $addr"
if ! out="$("$python" examples/python/conflict.py "$addr" 2>&1)"; then
  printf '%s\n' "$out"
  die "the example failed"
fi
printf '%s\n' "$out"
grep -q VERSION_CONFLICT <<<"$out" || die "the example's output does not name VERSION_CONFLICT"

kill -TERM "$server_pid"
if ! wait "$server_pid"; then
  cat "$work/server.log" >&2
  die "the server did not exit cleanly on SIGTERM"
fi
server_pid=""
echo "check-python-example: ok"
