#!/usr/bin/env bash
# Runs bakdrop's real-server suite (tests/it/real_server.rs) against SQL Server 2022 and MinIO
# started from compose.yaml beside this script, then stops them. Needs Docker (or another
# runtime with `docker compose`); the project's own machines have none, so this was written to
# the documentation and run only where CI has a container runtime.
#
#   infra/real-sqlserver/run.sh            start, run the suite, stop
#   KEEP=1 infra/real-sqlserver/run.sh     leave the containers running afterwards
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
compose=(docker compose -f "$here/compose.yaml")

mkdir -p "$here/share"
chmod 777 "$here/share" # SQL Server (user mssql) writes backups there too
cleanup() {
  status=$?
  [ "$status" -eq 0 ] || "${compose[@]}" logs --tail 200 mssql minio || true
  [ -n "${KEEP:-}" ] || "${compose[@]}" down -v
  exit "$status"
}
trap cleanup EXIT

"${compose[@]}" up -d --wait mssql minio
"${compose[@]}" --profile setup run --rm setup

export BAKDROP_TEST_SQLSERVER="host=127.0.0.1;port=14331;user=sa;password=Bakdrop-Real-2022;tls=trust-server-certificate"
export BAKDROP_TEST_SQLSERVER_SHARE="$here/share:/var/opt/mssql/share"
export BAKDROP_TEST_S3="minio:9000;bakdrop;bakdropminio;bakdropsecret2022"
cd "$root"
cargo test -p bakdrop-tests --test it real_server:: -- --nocapture --test-threads=1
