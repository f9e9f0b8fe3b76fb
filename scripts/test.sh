#!/usr/bin/env bash
# The test command named in README.md (and run by .ci/run): installs what the
# tests need, builds the release artefacts users get, then runs every suite.
# Slow suites (fuzzing, sanitizers, long stress, full benchmarks) are separate
# scripts named in the README.
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh || { echo "deps: failed to install Debian packages"; exit 1; }

passed=0
failed=0
failures=()
suite() {
    local name=$1
    shift
    echo
    echo "=== $name: $*"
    local t0=$SECONDS
    if "$@"; then
        passed=$((passed + 1))
        echo "=== $name: ok ($((SECONDS - t0)) s)"
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "=== $name: FAILED ($((SECONDS - t0)) s)"
    fi
}

suite build cargo build --release --workspace
suite rust-tests cargo test --release --workspace --no-fail-fast
suite c-library scripts/test-c.sh
suite real-programs scripts/test-programs.sh
suite wrappers scripts/test-wrappers.sh
suite misuse scripts/test-misuse.sh
suite misuse-strategies scripts/test-misuse.sh --strategies
suite bare-metal scripts/test-bare-metal.sh
suite cross scripts/test-cross.sh
suite embedded scripts/test-embedded.sh
suite aarch64-lib scripts/test-aarch64-lib.sh
suite bench-smoke scripts/bench.sh --smoke

echo
[ ${#failures[@]} -eq 0 ] || echo "failed suites: ${failures[*]}"
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
