#!/usr/bin/env bash
# The local AWS endpoint (moto server, pinned, in the project's .venv-infra/), for tests and for
# trying bakdrop without an AWS account.
#
#   infra/local-stack.sh install   create .venv-infra and install the pinned moto (idempotent)
#   infra/local-stack.sh start     start on a free loopback port; writes .local/moto.env
#   infra/local-stack.sh health    exit 0 when it answers
#   infra/local-stack.sh reset     wipe all its state
#   infra/local-stack.sh stop      stop it (by PID; harmless when nothing runs)
#   infra/local-stack.sh env       print the environment that points the AWS SDK at it
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv="$root/.venv-infra"
state="$root/.local"
pidfile="$state/moto.pid"
envfile="$state/moto.env"
logfile="$state/moto.log"

endpoint() { sed -n 's/^export AWS_ENDPOINT_URL=//p' "$envfile" 2>/dev/null; }

install() {
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import moto, flask' 2>/dev/null \
     && [ "$("$venv/bin/python" -c 'import moto; print(moto.__version__)')" = "5.2.5" ]; then
    return 0
  fi
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    -r infra/requirements-moto.txt -c infra/constraints.txt
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

health() {
  local url
  url=$(endpoint)
  [ -n "$url" ] && python3 - "$url/moto-api/" <<'PY' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2).read()
PY
}

start() {
  mkdir -p "$state"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && health; then
    echo "local AWS endpoint already running at $(endpoint)"
    return 0
  fi
  local port=${MOTO_PORT:-$(free_port)}
  "$venv/bin/python" infra/moto_launcher.py -H 127.0.0.1 -p "$port" >"$logfile" 2>&1 &
  echo $! >"$pidfile"
  cat >"$envfile" <<ENV
export AWS_ENDPOINT_URL=http://127.0.0.1:$port
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_EC2_METADATA_DISABLED=true
ENV
  for _ in $(seq 1 100); do
    if health; then
      echo "local AWS endpoint running at http://127.0.0.1:$port (pid $(cat "$pidfile"))"
      return 0
    fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "the local AWS endpoint did not come up; last lines of $logfile:" >&2
  tail -n 20 "$logfile" >&2 || true
  stop
  return 1
}

reset() {
  python3 - "$(endpoint)/moto-api/reset" <<'PY'
import sys, urllib.request
urllib.request.urlopen(urllib.request.Request(sys.argv[1], method="POST"), timeout=5).read()
PY
}

stop() {
  if [ -f "$pidfile" ]; then
    local pid
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  health) health ;;
  reset) reset ;;
  stop) stop ;;
  env) cat "$envfile" ;;
  *) sed -n '2,10p' "$0"; exit 2 ;;
esac
