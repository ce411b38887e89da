#!/usr/bin/env bash
# The full test suite: the README's test command, and what .ci/run calls.
#   format check · clippy -D warnings · the 32-bit and MSRV checks · the
#   docs/floor programs build · unit, integration and doc tests, for no
#   features, each feature alone and all features (the end-to-end server
#   tests on 127.0.0.1 among them) · release memory tests · loom models (the
#   design brief's recipe, preemption bound 3).
# Installs what it needs (rustfmt, clippy) on a fresh machine. The loom models
# run last so the run ends with their test summary. Each step's banner shows
# the time (UTC) it started.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s  [%s]\n' "$*" "$(date -u +%H:%M:%S)"; }

step "toolchain components"
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" \
    || rustup component add "$component"
done

step "cargo fmt --check"
cargo fmt --all -- --check

# Optional integrations (Cargo features): none, each alone, all.
FEATURES=(tokio crossbeam-channel tower tracing stats metrics serde)
declare -A FEATURE_TESTS=(
  [tokio]="--test tokio_bridge --test runtimes --test task_group"
  [crossbeam-channel]="--test channel"
  [tower]="--test tower_layer"
  [tracing]=""
  [stats]=""
  [metrics]="--test stats"
  [serde]="--test dump"
)

step "cargo clippy --all-targets -D warnings (no features, each feature, all)"
cargo clippy --workspace --all-targets -- -D warnings
for feature in "${FEATURES[@]}"; do
  cargo clippy -p ctxtree --all-targets --features "$feature" -- -D warnings
done
cargo clippy --workspace --all-targets --all-features -- -D warnings

# 32-bit targets: every tagged pointer is 8-aligned there too (const
# assertions in state.rs and node.rs). Type-checks the library and its tests;
# linking 32-bit test binaries needs a 32-bit C library, which is not assumed
# (docs/verification.md records the full suite run on i686).
step "cargo check --target i686-unknown-linux-gnu (32-bit, all features, all targets)"
if rustup target list --installed 2>/dev/null | grep -q '^i686-unknown-linux-gnu$' \
  || rustup target add i686-unknown-linux-gnu; then
  CARGO_TARGET_DIR=target/i686 cargo check -p ctxtree --all-features --all-targets \
    --target i686-unknown-linux-gnu
else
  # Only the download can fail here; the check itself fails the script.
  printf '!!! 32-bit check SKIPPED: rustup could not install the i686 standard library\n%.0s' 1 2 3
fi

# MSRV: the library with every feature (what users compile) on the oldest
# Rust that Cargo.toml's rust-version declares, with the committed Cargo.lock
# (tokio and tokio-util need 1.85). Only the library: the tests and their
# dev-dependencies may come to need a newer Rust.
MSRV=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
: "${MSRV:?no rust-version in Cargo.toml}"
step "cargo +$MSRV check --lib (MSRV, all features)"
if rustup toolchain list 2>/dev/null | grep -q "^$MSRV-" \
  || rustup toolchain install "$MSRV" --profile minimal; then
  CARGO_TARGET_DIR=target/msrv cargo +"$MSRV" check -p ctxtree --all-features --lib
else
  # Only the download can fail here; the check itself fails the script.
  printf "!!! MSRV check SKIPPED: rustup could not install Rust $MSRV\n%.0s" 1 2 3
fi

# The stand-alone programs docs/benchmarks.md and docs/design.md quote
# figures from ("What limits ctxtree"): built as the docs say, `rustc -O`,
# so a program that no longer compiles fails here. Not run (they time
# things).
step "docs/floor programs build (rustc -O)"
mkdir -p target/floor
for program in docs/floor/*.rs; do
  rustc -O "$program" -o "target/floor/$(basename "$program" .rs)"
done

# Broken intra-doc links (a moved item, a renamed path) fail here, not on
# docs.rs.
step "cargo doc --all-features -D warnings (rustdoc links)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features -p ctxtree

# Without features: every crate's unit tests, the doc tests, and the core
# semantics suites. The other integration tests run below with all
# features (which only add integrations beside the same core); the
# no-feature clippy above already type-checked every one of them.
step "unit, doc and core integration tests (no features)"
cargo test --workspace --lib --bins
cargo test -p ctxtree --doc
cargo test -p ctxtree --test semantics --test go_conformance --test concurrency

# Each criterion benchmark of the three implementations once, in criterion's
# test mode (the dev build, debug assertions on): the shared operations
# (benches/runner/src/ops.rs) check that what they time really happened
# (children canceled, waiters woken).
step "criterion side-by-side benchmarks, each run once (cargo test --bench peers)"
cargo test -p ctxtree-bench --bench peers

for feature in "${FEATURES[@]}"; do
  step "tests with only feature $feature"
  # shellcheck disable=SC2086 # the test list is meant to split
  cargo test -p ctxtree --features "$feature" --lib ${FEATURE_TESTS[$feature]}
done

step "unit, integration and doc tests (all features: integrations, e2e server, README)"
cargo test -p ctxtree --all-features

step "deep-chain and churn tests in release mode (all features)"
cargo test --release --all-features --test deep --test memory --test timer_memory --test waiter_memory \
  --test children_memory --test timer_latency --test merge

step "loom models (LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:-3})"
loom() {
  CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:-3} \
    RUSTFLAGS="--cfg loom --cfg crossbeam_loom" cargo "$@"
}
LOOM_TESTS=(--release -p loom-tests --test after_func --test core --test timer --test drop_sweep --test merge --test origin --test dump --test collector)
loom test "${LOOM_TESTS[@]}" --no-run
# One model, three_inserts_vs_cancel, takes about 60 % of the models' time.
# libtest starts tests in name order, so it would start last and run alone
# on one core at the end: it runs in a process of its own from the start,
# and every other model beside it on the remaining cores. Its output follows
# the others'; the step fails if either process does.
LONGEST=three_inserts_vs_cancel
longest_log=target/loom-$LONGEST.log
loom test --release -p loom-tests --test core -- --exact "$LONGEST" >"$longest_log" 2>&1 &
longest_pid=$!
others=0
loom test "${LOOM_TESTS[@]}" -- --skip "$LONGEST" --exact \
  --test-threads="$(( $(nproc) > 1 ? $(nproc) - 1 : 1 ))" || others=$?
longest=0
wait "$longest_pid" || longest=$?
cat "$longest_log"
if [ "$others" -ne 0 ] || [ "$longest" -ne 0 ]; then
  echo "loom models FAILED"
  exit 1
fi
