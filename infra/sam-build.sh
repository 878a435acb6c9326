#!/usr/bin/env bash
# `sam build` as a user runs it, with the pinned SAM CLI and cargo-lambda (+ zig for the arm64
# cross build) from .venv-flows (infra/requirements-flows.txt). About 5 minutes and 2 GB here;
# not part of the test command (infra/test.sh runs `sam validate --lint` instead).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${FLOWS_VENV:-$(pwd)/.venv-flows}
[ -x "$venv/bin/sam" ] || infra/readme-flows.sh sam >/dev/null
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check ziglang -c infra/constraints-flows.txt
export PATH="$venv/bin:$PATH"
AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1} sam build "$@"
