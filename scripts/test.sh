#!/usr/bin/env bash
# The full test suite: the README's test command, and what .ci/run calls.
#   format check · clippy -D warnings · unit, integration and doc tests ·
#   loom models (the design brief's recipe, preemption bound 3).
# Installs what it needs (rustfmt, clippy) on a fresh machine. The loom models
# run last so the run ends with their test summary.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain components"
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" \
    || rustup component add "$component"
done

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "unit, integration and doc tests"
cargo test --workspace

step "deep-chain and churn tests in release mode"
cargo test --release --test deep --test memory

step "loom models (LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:-3})"
CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:-3} \
  RUSTFLAGS="--cfg loom --cfg crossbeam_loom" \
  cargo test --release -p loom-tests --test after_func --test core -- --test-threads="$(nproc)"
