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

step "loom model of the NOrec commit protocol (hytm-fallback)"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
    cargo test -p hytm-fallback --release --test loom

step "Miri: hytm-fallback, and hytm's pure parts (policy, stats, configuration)"
# Miri needs the nightly toolchain with its miri component. Use it where it
# is present, try to install it (bounded) where it is not, and skip with one
# clear line where it cannot be had.
if ! cargo +nightly miri --version >/dev/null 2>&1 && command -v rustup >/dev/null 2>&1; then
    timeout 300 rustup toolchain install nightly --profile minimal --component miri >/dev/null 2>&1 || true
fi
if cargo +nightly miri --version >/dev/null 2>&1; then
    export CARGO_TARGET_DIR=target/miri
    cargo +nightly miri test -p hytm-fallback
    cargo +nightly miri test -p hytm --lib
    unset CARGO_TARGET_DIR
else
    echo "skip Miri: no nightly toolchain with the miri component here, and it could not be installed"
fi

step "all checks passed"
