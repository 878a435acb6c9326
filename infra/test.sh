#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what it needs (into ignored folders of the
# checkout), starts the local AWS endpoint, runs format, lint, tests, the template lint and a
# smoke run of the benchmarks, and stops what it started, also when a step fails.
#
#   infra/test.sh            everything
#   infra/test.sh -- ARGS    everything, passing ARGS to `cargo test --workspace`
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

step "local AWS endpoint: install and start"
infra/local-stack.sh install
infra/local-stack.sh start
trap 'infra/local-stack.sh stop' EXIT
# shellcheck disable=SC1091
source .local/moto.env

# CI builds once from a clean checkout: incremental caches would only take disk (3.3 GB measured).
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "no OpenSSL in the dependency tree"
if cargo tree --workspace -e normal,build -i openssl-sys >/dev/null 2>&1; then
  echo "openssl-sys is in the dependency tree (cargo tree -i openssl-sys):" >&2
  cargo tree --workspace -e normal,build -i openssl-sys >&2
  exit 1
fi

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test"
shift_args=()
if [ "${1:-}" = "--" ]; then shift; shift_args=("$@"); fi
if [ ${#shift_args[@]} -eq 0 ]; then
  # The robustness tests run in the next step, where what they tried is shown.
  cargo test --workspace -- --skip robustness:: \
    --skip fixtures_never_panic_and_fail_with_named_errors --skip garbage_after_a_tape_signature

  step "robustness: what each test tried"
  # --workspace as above, not -p: a package selected alone resolves its dependencies' features
  # anew, and cargo would build (and store) a second copy of most of the dependency tree.
  cargo test --workspace --test robustness -- --nocapture
  cargo test --workspace --test it robustness:: -- --nocapture
else
  cargo test --workspace "${shift_args[@]}"
fi

step "cfn-lint template.yaml"
# cfn-lint comes with the pinned moto server (infra/constraints.txt).
"$root/.venv-infra/bin/cfn-lint" template.yaml

step "the README's flows as written (infra/readme-flows.sh: one machine, the test server, cargo-lambda with the AWS CLI, sam validate)"
infra/readme-flows.sh all

step "benchmarks: smoke run (infra/bench.sh smoke; the figures are in BENCHMARKS.md)"
infra/bench.sh smoke

echo
echo "all checks passed"
