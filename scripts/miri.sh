#!/usr/bin/env bash
# Miri (nightly) over the code that must be free of undefined behaviour.
#
#   scripts/miri.sh          the CI set (about 6 minutes): the core
#                            strategies' unit tests, their buddy,
#                            corruption, pool/slab and `Locked` suites, and
#                            the engine's tour of every path across threads
#                            (tests/engine_model.rs, with the OS layer
#                            simulated in one arena: os.rs, mod sim)
#   scripts/miri.sh --full [JOBS]
#                            also the conformance suite of every strategy
#                            and the engine's single-thread suite
#                            (tests/engine_basic.rs), one Miri process per
#                            strategy, JOBS of them at a time (default 1);
#                            docs/RELIABILITY.md has the figures (about an
#                            hour of CPU) and what is left out, and why
#
# Tests run with smaller sizes and fewer property cases under `cfg(miri)`.
# Skips cleanly (exit 0, says so) where nightly or Miri cannot be had.
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
    local t0=$SECONDS rc=0
    cargo +nightly miri test "$@" || rc=1
    [ $rc = 0 ] || status=1
    echo "=== miri: $* ($((SECONDS - t0)) s)"
    return $rc
}
full=0
[ "${1:-}" = --full ] && full=1
jobs=${2:-1}
run -p stratalloc-core --lib
run -p stratalloc-core --test buddy --test corruption --test pool_slab --test locked
run -p stratalloc --test engine_model
if [ $full = 1 ]; then
    run -p stratalloc --test engine_basic
    # One process per strategy (a name filter: `tlsf::` also takes
    # `any_tlsf::`, `buddy::` takes `any_buddy::` and `slab_over_buddy::`),
    # so JOBS of them can share the cores; built once first.
    cargo +nightly miri test -p stratalloc-core --test conformance --no-run || status=1
    groups="bump first_fit first_fit_scan next_fit next_fit_scan best_fit
        best_fit_scan worst_fit worst_fit_scan segregated tlsf buddy slab"
    mkdir -p target/miri-logs
    for g in $groups; do
        while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
            wait -n || status=1
        done
        run -p stratalloc-core --test conformance -- "$g::" \
            >"target/miri-logs/conformance-$g.log" 2>&1 &
    done
    while [ "$(jobs -rp | wc -l)" -gt 0 ]; do
        wait -n || status=1
    done
    for g in $groups; do
        grep -hE "^=== miri|^test result|^error|Undefined Behavior" \
            "target/miri-logs/conformance-$g.log"
    done
fi
exit $status
