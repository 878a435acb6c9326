#!/usr/bin/env bash
# The README's flows, run the way the README shows them, so that they do not rot. The test
# command (infra/test.sh) runs them all; each can also be run alone:
#
#   infra/readme-flows.sh [all|one-machine|test-server|lambda|sam]
#
# - one-machine: `bakdrop run` over the committed drop folder (script-only mode).
# - test-server: the TDS test server emulating SQL Server 2016, `bakdrop run` against it,
#   `bakdrop complete` without --target (the folder remembers its server).
# - lambda: the functions under `cargo lambda watch` against the local AWS endpoint, the
#   resources made with the AWS CLI (v1, as Debian and pip install it; every command names the
#   endpoint, which v1 needs and v2 accepts).
# - sam: `sam validate --lint` (sam build: infra/sam-build.sh; sam local needs a container
#   runtime).
#
# Installs what it needs into .venv-flows (pinned: infra/requirements-flows.txt), uses the local
# AWS endpoint infra/local-stack.sh starts (started here when it is not), and stops what it
# started. Each step says what you should see.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv=${FLOWS_VENV:-$root/.venv-flows}
which=${1:-all}
work=$(mktemp -d)
pids=()
started_stack=""

cleanup() {
  status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ -z "$started_stack" ] || infra/local-stack.sh stop >/dev/null 2>&1 || true
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

say() { printf '\n--- %s\n' "$*"; }
# Fails the flow unless $1 holds $2, showing what it got.
expect() {
  if ! grep -qF -- "$2" <<<"$1"; then
    echo "readme-flows: expected to see: $2" >&2
    echo "got:" >&2
    echo "$1" >&2
    exit 1
  fi
}

install_tools() {
  local stamp="$venv/.bakdrop-requirements" digest
  digest=$(cat infra/requirements-flows.txt infra/constraints-flows.txt | sha256sum | cut -d' ' -f1)
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$digest" ]; then
    return 0
  fi
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r infra/requirements-flows.txt -c infra/constraints-flows.txt
  echo "$digest" >"$stamp"
}

bakdrop() { "$root/target/debug/bakdrop" "$@"; }

one_machine() {
  say "one machine: bakdrop run over tests/fixtures/dropzone (script-only mode)"
  local copy="$work/dropzone" out
  cp -rL tests/fixtures/dropzone "$copy"
  out=$(bakdrop run "$copy" 2>&1) || true
  echo "$out" | tail -n 12
  expect "$out" "RestoreTimeClean"
  expect "$out" "Synchronizing"
  expect "$out" "the file holds 2 backup sets"
}

test_server() {
  say "the test server: SQL Server 2016 emulated, bakdrop run against it, complete there"
  local copy="$work/COPY" out port
  cp -rL tests/fixtures/dropzone "$copy"
  "$root/target/debug/tds-test-server" --native --version 2016 --restore-secs 1 \
    >"$work/tds.out" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do [ -s "$work/tds.out" ] && break; sleep 0.1; done
  port=$(head -n 1 "$work/tds.out" | sed 's/.*://')
  cat "$work/tds.out"
  expect "$(cat "$work/tds.out")" "emulating SQL Server 2016"
  export BAKDROP_TARGET_PASSWORD=any-password
  out=$(bakdrop run "$copy" --dialect native \
    --target "host=127.0.0.1;port=$port;user=sa;password-env=BAKDROP_TARGET_PASSWORD;tls=off" 2>&1) || true
  echo "$out" | tail -n 8
  expect "$out" "Synchronizing"
  out=$(bakdrop complete RestoreTimeClean --dir "$copy" 2>&1)
  echo "$out"
  expect "$out" "RestoreTimeClean: Succeeded"
}

lambda() {
  say "cargo-lambda against the local AWS endpoint, resources made with the AWS CLI ($("$venv/bin/aws" --version 2>&1 | cut -d' ' -f1))"
  if ! infra/local-stack.sh health >/dev/null 2>&1; then
    infra/local-stack.sh install
    infra/local-stack.sh start
    started_stack=1
  fi
  # shellcheck disable=SC1091
  source .local/moto.env
  export PATH="$venv/bin:$PATH"
  local out
  # As on a fresh endpoint: what an earlier run of this flow made goes first.
  aws --endpoint-url "$AWS_ENDPOINT_URL" s3 rb --force s3://bakdrop-uploads-example >/dev/null 2>&1 || true
  aws --endpoint-url "$AWS_ENDPOINT_URL" dynamodb delete-table --table-name bakdrop-local >/dev/null 2>&1 || true
  aws --endpoint-url "$AWS_ENDPOINT_URL" sqs delete-queue \
    --queue-url "$AWS_ENDPOINT_URL/123456789012/restore" >/dev/null 2>&1 || true
  aws --endpoint-url "$AWS_ENDPOINT_URL" s3 mb s3://bakdrop-uploads-example
  aws --endpoint-url "$AWS_ENDPOINT_URL" s3 cp --only-show-errors tests/fixtures/bak/sql2016_full_RestoreTimeClean.bak \
    s3://bakdrop-uploads-example/migrations/RestoreTimeClean/sql2016_full_RestoreTimeClean.bak
  aws --endpoint-url "$AWS_ENDPOINT_URL" dynamodb create-table --table-name bakdrop-local \
    --cli-input-json file://infra/events/status-table.json >/dev/null
  aws --endpoint-url "$AWS_ENDPOINT_URL" sqs create-queue --queue-name restore
  STATUS_TABLE=bakdrop-local RESTORE_QUEUE_URL=$AWS_ENDPOINT_URL/123456789012/restore \
    TARGET_SQLSERVER_VERSION=2016 cargo lambda watch -A 127.0.0.1 >"$work/watch.log" 2>&1 &
  pids+=($!)
  sleep 3
  out=$(cargo lambda invoke validate-upload -A 127.0.0.1 --data-file infra/events/validate-upload-s3-put.json)
  echo "$out"
  expect "$out" '"queued":1'
  out=$(cargo lambda invoke migration-status -A 127.0.0.1 --data-file infra/events/migration-status-invoke.json)
  echo "$out"
  expect "$out" '"database":"RestoreTimeClean"'
  expect "$out" '"queued":1'
  # The restore queue holds the job; nothing consumes it in this flow (no target SQL Server).
  out=$(aws --endpoint-url "$AWS_ENDPOINT_URL" sqs get-queue-attributes \
    --queue-url "$AWS_ENDPOINT_URL/123456789012/restore" --attribute-names ApproximateNumberOfMessages)
  expect "$out" '"ApproximateNumberOfMessages": "1"'
  echo "the restore queue holds 1 job (nothing consumes it here); stopping cargo lambda watch"
}

sam() {
  say "sam validate --lint"
  local out
  out=$(AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x \
    "$venv/bin/sam" validate --lint 2>&1)
  echo "$out"
  expect "$out" "is a valid SAM Template"
}

cargo build -q -p bakdrop -p bakdrop-tests --bins
install_tools
case "$which" in
  one-machine) one_machine ;;
  test-server) test_server ;;
  lambda) lambda ;;
  sam) sam ;;
  all) one_machine; test_server; lambda; sam ;;
  *) echo "usage: infra/readme-flows.sh [all|one-machine|test-server|lambda|sam]" >&2; exit 2 ;;
esac
echo
echo "readme-flows: $which passed"
