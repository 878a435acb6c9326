#!/usr/bin/env bash
# The local AWS endpoint (moto server, pinned, in the project's .venv-infra/) for the tests and
# for trying bakdrop without an AWS account. S3 events come out in the shape real S3 sends
# (infra/moto_launcher.py). See infra/README.md.
#
#   infra/local-stack.sh install   create .venv-infra and install the pinned moto (idempotent)
#   infra/local-stack.sh start     start on a free loopback port (or MOTO_PORT); writes .local/moto.env
#   infra/local-stack.sh health    exit 0 when it answers
#   infra/local-stack.sh reset     wipe all its state (every bucket, queue and table)
#   infra/local-stack.sh stop      stop it (by PID; harmless when nothing runs)
#   infra/local-stack.sh env       print the environment that points the AWS SDK at it
#
# Environment: MOTO_PORT (port to use), MOTO_START_TIMEOUT (seconds, default 30),
# LOCAL_STACK_DIR (state directory, default .local), INFRA_VENV (default .venv-infra).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv=${INFRA_VENV:-$root/.venv-infra}
state=${LOCAL_STACK_DIR:-$root/.local}
pidfile="$state/moto.pid"
envfile="$state/moto.env"
logfile="$state/moto.log"
requirements="$root/infra/requirements-moto.txt"
constraints="$root/infra/constraints.txt"
stamp="$venv/.bakdrop-requirements"

die() {
  echo "local-stack: $*" >&2
  exit 1
}

# The system python that creates the venv and answers the small HTTP questions below.
python=$(command -v python3 || true)
[ -n "$python" ] || die "python3 is required (it creates .venv-infra)"

requirements_digest() {
  cat "$requirements" "$constraints" | "$python" -c \
    'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'
}

install() {
  local digest
  digest=$(requirements_digest)
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$digest" ]; then
    echo "local-stack: moto already installed in $venv"
    return 0
  fi
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$requirements" -c "$constraints"
  # Refuse a moto whose S3 event builder the launcher cannot patch (fails with the reason).
  "$venv/bin/python" "$root/infra/moto_launcher.py" --check
  echo "$digest" >"$stamp"
}

# Binds 127.0.0.1:$1 (0 = any free port) for a moment and prints the port; fails when taken.
bind_port() {
  "$python" - "$1" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
print(s.getsockname()[1])
s.close()
PY
}

endpoint() {
  sed -n 's/^export AWS_ENDPOINT_URL=//p' "$envfile" 2>/dev/null || true
}

running_pid() {
  local pid
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# GET or POST $2 on the endpoint; exit status 0 on a 2xx answer.
call() {
  local url
  url=$(endpoint)
  [ -n "$url" ] || return 1
  "$python" - "$1" "$url$2" <<'PY' 2>/dev/null
import sys, urllib.request
method, url = sys.argv[1], sys.argv[2]
urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=2).read()
PY
}

# Ours (the PID file names a live process) and answering.
health() {
  running_pid >/dev/null && call GET /moto-api/
}

start() {
  mkdir -p "$state"
  local pid port waited timeout
  if pid=$(running_pid) && health; then
    echo "local-stack: already running at $(endpoint) (pid $pid)"
    return 0
  fi
  [ -x "$venv/bin/python" ] || die "moto is not installed: run infra/local-stack.sh install"
  # A port someone else answers on would pass the health check below: refuse it up front.
  port=$(bind_port "${MOTO_PORT:-0}") || die "port ${MOTO_PORT:-0} on 127.0.0.1 is in use (MOTO_PORT)"
  timeout=${MOTO_START_TIMEOUT:-30}
  cat >"$envfile" <<ENV
export AWS_ENDPOINT_URL=http://127.0.0.1:$port
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_EC2_METADATA_DISABLED=true
ENV
  nohup "$venv/bin/python" "$root/infra/moto_launcher.py" -H 127.0.0.1 -p "$port" \
    >"$logfile" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$pidfile"
  waited=0
  while [ "$waited" -lt $((timeout * 10)) ]; do
    if kill -0 "$pid" 2>/dev/null && health; then
      echo "local-stack: running at http://127.0.0.1:$port (pid $pid, log $logfile)"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
    waited=$((waited + 1))
  done
  echo "local-stack: the local AWS endpoint did not come up on port $port; last lines of $logfile:" >&2
  tail -n 30 "$logfile" >&2 || true
  stop
  return 1
}

reset() {
  if ! running_pid >/dev/null || ! call POST /moto-api/reset; then
    die "the local AWS endpoint is not running: run infra/local-stack.sh start"
  fi
}

stop() {
  local pid
  if pid=$(running_pid); then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -9 "$pid" 2>/dev/null || true
    fi
    echo "local-stack: stopped (pid $pid)"
  fi
  rm -f "$pidfile" "$envfile"
}

print_env() {
  [ -f "$envfile" ] || die "not started: run infra/local-stack.sh start"
  cat "$envfile"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  health) health ;;
  reset) reset ;;
  stop) stop ;;
  env) print_env ;;
  *)
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
    exit 2
    ;;
esac
