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

# Rust code quality: formatting, lints and docs, each warning an error.
# clippy: the bare-metal demo and the embedded C library are linted on their own, because with the other
# members it would be built with `std` features they enable (see its
# Cargo.toml); its bins have no test targets.
suite fmt cargo fmt --all --check
clippy() {
    cargo clippy --workspace --exclude stratalloc-bare-metal --exclude stratalloc-embedded \
        --all-targets -- -D warnings &&
        cargo clippy -p stratalloc-bare-metal -- -D warnings &&
        cargo clippy -p stratalloc --no-default-features -- -D warnings &&
        cargo clippy -p stratalloc-embedded --all-targets -- -D warnings
}
suite clippy clippy
# docs: libstratalloc's lib is also named `stratalloc` and is left out of
# `cargo doc` (crates/capi/Cargo.toml), so its docs are checked in a target
# directory of their own.
docs() {
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps &&
        CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/capi-doc" cargo rustdoc -p stratalloc-capi --lib -- -D warnings
}
suite docs docs

suite build cargo build --release --workspace
# (cargo test runs the doc tests too: the crate docs' examples are programs.)
suite rust-tests cargo test --release --workspace --no-fail-fast
# The same tests in the dev profile: debug_assert! and overflow checks on.
suite rust-tests-debug cargo test --workspace --no-fail-fast
suite c-library scripts/test-c.sh
suite fork scripts/test-fork.sh --no-build
suite real-programs scripts/test-programs.sh
suite wrappers scripts/test-wrappers.sh
suite dist scripts/test-dist.sh
suite misuse scripts/test-misuse.sh
suite misuse-strategies scripts/test-misuse.sh --strategies
suite bare-metal scripts/test-bare-metal.sh
suite cross scripts/test-cross.sh
suite embedded scripts/test-embedded.sh
suite aarch64-lib scripts/test-aarch64-lib.sh
suite miri scripts/miri.sh
suite bench-smoke scripts/bench.sh --smoke

echo
[ ${#failures[@]} -eq 0 ] || echo "failed suites: ${failures[*]}"
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
