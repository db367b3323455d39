#!/usr/bin/env bash
# The one test command: formatting, lints, the whole suite in auto mode and
# again with HYTM_MODE=fallback, and a smoke run of hytm-diag.
# Runs on machines with and without RTM; tests that need RTM print a skip line.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "tests, auto mode"
env -u HYTM_MODE -u HYTM_INJECT -u HYTM_STATS cargo test --workspace

step "tests, HYTM_MODE=fallback"
HYTM_MODE=fallback cargo test --workspace

step "hytm-diag smoke (text and JSON)"
cargo run --quiet --bin hytm-diag
cargo run --quiet --bin hytm-diag -- --json | python3 -m json.tool > /dev/null
HYTM_MODE=fallback cargo run --quiet --bin hytm-diag | grep -q '^mode *fallback'
if HYTM_MODE=bogus cargo run --quiet --bin hytm-diag 2>/dev/null; then
    echo "hytm-diag accepted HYTM_MODE=bogus" >&2
    exit 1
fi

step "all checks passed"
