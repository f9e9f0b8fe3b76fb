#!/usr/bin/env bash
# Miri (nightly) over the code that must be free of undefined behaviour:
# the core strategies' unit tests and their corruption and buddy suites,
# and the engine's tour of every path across threads (tests/engine_model.rs,
# with the OS layer simulated in one arena: os.rs, mod sim).
# Skips cleanly (exit 0, says so) where nightly or Miri cannot be had.
# Usage: scripts/miri.sh
set -uo pipefail
cd "$(dirname "$0")/.."

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "miri: skipped (no nightly toolchain)"
    exit 0
fi
if ! cargo +nightly miri --version >/dev/null 2>&1; then
    rustup component add miri rust-src --toolchain nightly >/dev/null 2>&1 || true
fi
if ! cargo +nightly miri --version >/dev/null 2>&1; then
    echo "miri: skipped (the miri component could not be installed)"
    exit 0
fi
# Integer-to-pointer casts are how the heaps name addresses (region
# bounds, segment masks); isolation is off for the clock the engine reads.
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-permissive-provenance -Zmiri-disable-isolation}"
status=0
run() {
    echo "=== miri: $*"
    local t0=$SECONDS
    cargo +nightly miri test "$@" || status=1
    echo "=== miri: $* ($((SECONDS - t0)) s)"
}
run -p stratalloc-core --lib
run -p stratalloc-core --test buddy --test corruption
run -p stratalloc --test engine_model
exit $status
