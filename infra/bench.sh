#!/usr/bin/env bash
# bakdrop's benchmarks; the figures and how to read them are in BENCHMARKS.md.
# Starts the local AWS endpoint when it is not running (and stops it afterwards only then),
# prints a description of the machine, runs the benchmarks and prints their figures as Markdown
# (also kept under target/bench-results/). Everything a benchmark creates on the endpoint
# (buckets, queues, tables) is deleted when it ends. Not part of `infra/test.sh`, except `smoke`.
#
#   infra/bench.sh [all]        validation, coldstart, throughput, parser, fuzz (about 1.5 hours)
#   infra/bench.sh validation   figure 1: validation cost versus object size (1 MiB, 256 MiB, 2 GiB)
#   infra/bench.sh throughput   figure 3: 500 uploads validated and queued; 50 migrations restored
#   infra/bench.sh coldstart    figure 2: cold start, binary size, RSS; Python peer (boto3)
#   infra/bench.sh parser       figure 4: headers per second per core, every fixture
#   infra/bench.sh fuzz         figure 5: the parser's fuzz target, 10,000,000 executions
#   infra/bench.sh catchup      figure 6: a full and 96 logs uploaded at once, until the last is restored
#   infra/bench.sh latency      figure 7: upload → RESTORE submitted (100 uploads), Complete → ONLINE
#   infra/bench.sh cost         figure 8: requests and Lambda time per file, step, poll; a 1 TB migration
#   infra/bench.sh smoke        every benchmark but fuzz, tiny sizes, one run each (~2 min once built)
#
# Environment: BENCH_RUNS (validation and parser runs, default 7), BENCH_THROUGHPUT_RUNS
# (default 3), BENCH_CATCHUP_RUNS (default 1), BENCH_SIZES_MIB (default 1,256,2048), BENCH_FIRST_BYTE_MS (the modelled round trip
# of figure 1's second table, default 20), BENCH_FUZZ_RUNS (default
# 10000000), BENCH_FUZZ_SANITIZER (cargo fuzz -s, default none), BENCH_OUT (results directory,
# default target/bench-results), CARGO_TARGET_DIR (as usual). `smoke` uses the dev profile (what
# the test run has built already); the other commands build the release profile.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

command=${1:-all}
runs=${BENCH_RUNS:-7}
fuzz_runs=${BENCH_FUZZ_RUNS:-10000000}
out=${BENCH_OUT:-$root/target/bench-results}
mkdir -p "$out"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
results="$out/$command-$stamp.md"

usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
  exit 2
}

say() { printf '%s\n' "$*" | tee -a "$results"; }

machine() {
  say "## Machine"
  say ""
  say "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  say "- cpu: $(nproc) cores visible; $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
  say "- memory: $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
  say "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  say "- os: $(sed -n 's/^PRETTY_NAME=//p' /etc/os-release 2>/dev/null | tr -d '"'), kernel $(uname -r)"
  say "- rustc: $(rustc --version)"
  if [ -x "$root/.venv-infra/bin/python" ]; then
    say "- local AWS endpoint: moto $("$root/.venv-infra/bin/python" -c 'import moto; print(moto.__version__)' 2>/dev/null || echo '?') (server mode, loopback)"
  fi
  say ""
}

# The local AWS endpoint: use the running one, or start it and stop it on exit.
started_stack=0
aws_up() {
  if infra/local-stack.sh health 2>/dev/null; then
    echo "bench: using the running local AWS endpoint" >&2
  else
    infra/local-stack.sh install >&2
    infra/local-stack.sh start >&2
    started_stack=1
  fi
  # shellcheck disable=SC1091
  source .local/moto.env
}

cleanup() {
  if [ "$started_stack" = 1 ]; then
    infra/local-stack.sh stop >&2 || true
  fi
}
trap cleanup EXIT

# What to build: in release, each package alone (-p), so that a function gets the features
# `sam build` gives it and not those the CLI adds; in the dev profile (the smoke run after the
# tests), the whole workspace's binaries, which the tests built already with the workspace's
# features (a -p build there would resolve features anew and rebuild much of the tree).
selection() {
  if [ "${profile_flags[*]}" = "--release" ]; then
    printf -- '-p %s ' "$@"
  else
    printf -- '--workspace --bins'
  fi
}

# The benchmark binary, built once per invocation of this script.
profile_flags=(--release)
built=""
bench_bin() {
  if [ -z "$built" ]; then
    echo "bench: building bakdrop-bench (${profile_flags[*]:-dev profile})" >&2
    # shellcheck disable=SC2046
    cargo build -q "${profile_flags[@]}" $(selection bakdrop-bench) >&2
    local dir=${CARGO_TARGET_DIR:-$root/target}
    if [ "${profile_flags[*]}" = "--release" ]; then
      built="$dir/release/bakdrop-bench"
    else
      built="$dir/debug/bakdrop-bench"
    fi
  fi
}

# Runs the benchmark binary with "$@", appending its Markdown to the results. A failing
# benchmark (its figure misses a hard requirement, or it could not run) is reported and the
# others still run; the script then exits with status 1.
failed=()
bench() {
  bench_bin
  say "\$ bakdrop-bench $*"
  say ""
  if ! "$built" "$@" 2>&1 | tee -a "$results"; then
    failed+=("bakdrop-bench $*")
    say ""
    say "**FAILED**: bakdrop-bench $*"
  fi
  say ""
}

validation() {
  say "## Figure 1: validation cost versus object size"
  say ""
  aws_up
  bench validation --sizes-mib "${BENCH_SIZES_MIB:-1,256,2048}" --runs "$runs" --download-runs 3
  say "### The same with a modelled network round trip (${BENCH_FIRST_BYTE_MS:-20} ms before each response's first byte)"
  say ""
  bench validation --sizes-mib "${BENCH_SIZES_MIB:-1,256,2048}" --runs "$runs" --download-runs 1 \
    --first-byte-ms "${BENCH_FIRST_BYTE_MS:-20}"
}

throughput() {
  say "## Figure 3: throughput"
  say ""
  aws_up
  local n
  for n in $(seq 1 "${BENCH_THROUGHPUT_RUNS:-3}"); do
    say "### Run $n"
    say ""
    bench ingest --uploads 500 --consumers 10
    bench restores --migrations 50 --workers 5
  done
}

# The four function binaries in the release profile (what `sam build` ships, for this
# machine's architecture), each started against a local Lambda Runtime API; the peer is Python
# with boto3 from the local endpoint's venv.
coldstart() {
  say "## Figure 2: cold start, binary size, peak RSS"
  say ""
  aws_up
  local mib=${BENCH_COLDSTART_MIB:-2048} n=${BENCH_COLDSTART_RUNS:-15}
  [ "${profile_flags[*]}" = "--release" ] || { mib=16; n=2; }
  echo "bench: building the function binaries and the cold-start harness" >&2
  # shellcheck disable=SC2046
  cargo build -q "${profile_flags[@]}" $(selection validate-upload restore-worker \
    migration-status complete-migration bakdrop-bench) >&2
  local dir=${CARGO_TARGET_DIR:-$root/target}/release
  [ "${profile_flags[*]}" = "--release" ] || dir=${CARGO_TARGET_DIR:-$root/target}/debug
  say "\$ coldstart --bin-dir $dir --runs $n --big-mib $mib"
  say ""
  if ! "$dir/coldstart" --bin-dir "$dir" --runs "$n" --big-mib "$mib" \
    --python "$root/.venv-infra/bin/python" 2>&1 | tee -a "$results"; then
    failed+=("coldstart")
    say "**FAILED**: coldstart"
  fi
  say ""
}

parser() {
  say "## Figure 4: parser, headers per second per core (one thread)"
  say ""
  bench parser --runs "$runs"
}

fuzz() {
  say "## Figure 5: fuzz campaign over the parser"
  say ""
  local sanitizer=${BENCH_FUZZ_SANITIZER:-none}
  local corpus="$out/fuzz-corpus-$stamp"
  local log="$out/fuzz-$stamp.log"
  mkdir -p "$corpus"
  # New inputs go to a scratch corpus under the results directory; the checked-in seeds
  # (shared/core/fuzz/corpus/parse, ignored by git) are read, not written.
  (cd shared/core/fuzz && ./seed.sh >/dev/null)
  local started=$SECONDS
  (cd shared/core/fuzz && cargo +nightly fuzz run -s "$sanitizer" parse "$corpus" corpus/parse -- \
    -runs="$fuzz_runs" -print_final_stats=1 -artifact_prefix="$out/" >"$log" 2>&1) || {
    say "fuzz: FAILED (crash or build error); see $log"
    tail -n 40 "$log" >&2
    return 1
  }
  local elapsed=$((SECONDS - started))
  local executed
  executed=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  say "| target | sanitizer | executions | wall time (incl. build) | exec/s | crashes |"
  say "|---|---|---:|---:|---:|---:|"
  say "| parse | $sanitizer | ${executed:-?} | ${elapsed} s | $(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1) | 0 |"
  say ""
  say "(libFuzzer's log: $log; scratch corpus removed)"
  rm -rf "$corpus"
}

catchup() {
  say "## Figure 6: catch-up of a long chain (production delays)"
  say ""
  aws_up
  bench catchup --dialect both --logs 96 --runs "${BENCH_CATCHUP_RUNS:-1}"
}

latency() {
  say "## Figure 7: latency (production delays)"
  say ""
  aws_up
  bench latency --dialect both --uploads 100 --completes 10 --finish-ms 2000,30000
}

cost() {
  say "## Figure 8: cost per migration"
  say ""
  aws_up
  bench cost --logs 24
}

smoke() {
  profile_flags=()
  say "## Smoke run (tiny sizes, one run each; figures not meaningful)"
  say ""
  aws_up
  bench validation --sizes-mib 1,16 --runs 1 --download-runs 1
  bench validation --sizes-mib 1 --runs 1 --download-runs 1 --first-byte-ms 5
  bench ingest --uploads 20 --consumers 4 --timeout-secs 60
  bench restores --migrations 4 --workers 2 --restore-ms 100 --timeout-secs 60
  bench parser --runs 1 --min-run-ms 5
  bench catchup --dialect both --logs 3 --full-ms 1000 --log-min-ms 500 --log-max-ms 1500 \
    --timeout-secs 120
  bench latency --dialect both --uploads 3 --completes 1 --restore-ms 200 --finish-ms 1000 \
    --timeout-secs 120
  bench cost --logs 2 --full-ms 1000 --log-ms 1000 --timeout-secs 120
  coldstart
}

case "$command" in
  validation | coldstart | throughput | parser | fuzz | catchup | latency | cost | smoke) ;;
  all) ;;
  *) usage ;;
esac

machine
case "$command" in
  all)
    validation
    coldstart
    throughput
    parser
    catchup
    latency
    cost
    fuzz
    ;;
  *) "$command" ;;
esac
echo "bench: results in $results" >&2
if [ "${#failed[@]}" -gt 0 ]; then
  printf 'bench: FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
