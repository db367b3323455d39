#!/usr/bin/env bash
# Collects, in one run, every figure the open issues need from a machine with
# usable RTM: the hytm-diag report (cpu, probe, contention, perf), the
# RTM-only tests with their output, and the lock and TM benchmarks side by
# side with their peers. Writes target/rtm-report.md and prints where it is.
#
#   ci/rtm-report.sh            full run (about 5 minutes)
#   ci/rtm-report.sh --quick    short benchmark runs
#
# Not part of ci/test.sh: speed figures live in benchmarks, never in timed
# tests. On a machine without RTM it says why and exits 0
# (RTM_REPORT_ANYWAY=1 runs it all the same, to check the script itself).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=()
[[ "${1:-}" == "--quick" ]] && quick=(-- --quick)
out=target/rtm-report.md
mkdir -p target

cargo build --quiet --release --bin hytm-diag
diag=target/release/hytm-diag
if [[ -z "${RTM_REPORT_ANYWAY:-}" ]] && ! "$diag" cpu --json | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["usable"] else 1)'; then
    echo "rtm-report: RTM is not usable here, nothing to measure:"
    "$diag" cpu | sed 's/^/  /'
    exit 0
fi

section() { printf '\n## %s\n\n```text\n$ %s\n' "$1" "$2" >> "$out"; }
run() { # title, then the command
    local title=$1; shift
    section "$title" "$*"
    echo "rtm-report: $title" >&2
    env -u HYTM_MODE -u HYTM_INJECT -u HYTM_STATS "$@" >> "$out" 2>&1 || echo "(exit $?)" >> "$out"
    printf '```\n' >> "$out"
}

{
    echo "# hytm RTM report"
    echo
    echo "$(date -u +%F\ %T) UTC, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), commit $(git rev-parse --short HEAD)"
} > "$out"
run "CPU and verdict" "$diag" cpu
run "Probe: latency, capacity, abort sources, status-0 curve" "$diag" probe
run "Contention, 2 threads, 64 keys" "$diag" contention --threads 2 --keys 64 --duration 2
run "Contention, 2 threads, 1 key" "$diag" contention --threads 2 --keys 1 --duration 2
run "TSX PMU counters" "$diag" perf
run "RTM tests (abort causes on real hardware, lemming, hardware share)" \
    cargo test --release --test rtm --test elide --test tx --test rollback -- --nocapture --test-threads 1
run "Lock elision benchmark" cargo bench --quiet --bench locks "${quick[@]}"
run "Hybrid TM benchmark" cargo bench --quiet --bench tm "${quick[@]}"
echo "rtm-report: wrote $out"
