#!/usr/bin/env bash
# Soak test: the mixed workload of examples/soak.rs (elided mutex and rwlock,
# atomic transactions on every path, invariants checked continuously) for
# DURATION seconds in auto mode, then for DURATION seconds with
# HYTM_MODE=fallback, every abort cause injected at 1% and rollbacks at 5%.
#
#   ci/soak.sh [DURATION]     DURATION in seconds, a positive integer (default 60)
#
# Exits non-zero as soon as a run reports a violated invariant.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    echo "usage: ci/soak.sh [DURATION]   DURATION in seconds, a positive integer (default 60)" >&2
}

if [ "$#" -gt 1 ]; then
    echo "ci/soak.sh: expected at most one argument (DURATION), got $#" >&2
    usage
    exit 2
fi
duration="${1-60}"
# Digits only, at most 9 of them (bash arithmetic stays exact), not zero.
if ! [[ "$duration" =~ ^[0-9]{1,9}$ ]] || [ "$((10#$duration))" -eq 0 ]; then
    echo "ci/soak.sh: DURATION must be a positive integer number of seconds (at most 9 digits), got '$duration'" >&2
    usage
    exit 2
fi
duration="$((10#$duration))"

every_cause="conflict:0.01,capacity:0.01,retry:0.01,explicit:0.01,nested:0.01,debug:0.01,other:0.01,rollback:0.05"

step() { printf '\n==> %s\n' "$*"; }

step "build (release)"
cargo build --release --example soak

step "soak ${duration}s, auto mode"
env -u HYTM_MODE -u HYTM_INJECT -u HYTM_STATS \
    cargo run --quiet --release --example soak -- "$duration"

step "soak ${duration}s, HYTM_MODE=fallback HYTM_INJECT=$every_cause"
env -u HYTM_STATS HYTM_MODE=fallback HYTM_INJECT="$every_cause" \
    cargo run --quiet --release --example soak -- "$duration"

step "soak passed: every invariant held in both runs"
