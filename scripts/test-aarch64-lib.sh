#!/usr/bin/env bash
# The drop-in library on AArch64 Linux, under qemu-user:
# 1. cross-build libstratalloc.so for aarch64-unknown-linux-gnu (the
#    aarch64-linux-gnu-gcc linker, scripts/cross-env.sh);
# 2. the C programs of tests/c, built with aarch64-linux-gnu-gcc, run with
#    the library preloaded (scripts/test-c.sh with CC and TEST_RUNNER) for
#    the engine and every strategy, or the strategies named on the command
#    line;
# 3. a real program: the `stratalloc` command itself, cross-built, draws a
#    heap map (PNG and SVG through plotters) with the library preloaded and
#    without it (glibc): the pictures must be the same bytes; then once more
#    with STRATALLOC_TRACE, and the host's `stratalloc replay` reads the trace
#    (the trace wrapper's clock runs on the generic timer there);
# 4. the stratalloc crate's unit tests on AArch64 (among them the wrappers'
#    clock on the generic timer, the AArch64 form of the x86-64 TSC).
# Adds the rustup target it needs. Prints "N passed, M failed"; exits
# non-zero on any failure.
#
#   scripts/test-aarch64-lib.sh                 # every strategy
#   scripts/test-aarch64-lib.sh engine best-fit # these only in step 2
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/cross-env.sh
. scripts/tally.sh
target=aarch64-unknown-linux-gnu
lib=${CARGO_TARGET_DIR:-target}/$target/release/libstratalloc.so
strategies=("$@")
run=(qemu-aarch64 -L /usr/aarch64-linux-gnu)

tmp=$(mktemp -d /tmp/stratalloc-test-aarch64.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
log=$tmp/log

add_targets "$target"
t0=$SECONDS
if cargo build --release -p stratalloc-capi -p stratalloc-cli --target "$target" >"$log" 2>&1 &&
    cargo build --release -p stratalloc-cli >>"$log" 2>&1; then
    ok "build libstratalloc.so and stratalloc for $target ($((SECONDS - t0)) s)"
else
    ko "build libstratalloc.so and stratalloc for $target"
    tail -30 "$log"
    echo "$pass passed, $fail failed"
    exit 1
fi
if readelf -h "$lib" | grep -q 'Machine: *AArch64'; then
    ok "the library is an AArch64 ELF"
else
    ko "the library is not an AArch64 ELF"
fi

t0=$SECONDS
CC=aarch64-linux-gnu-gcc TEST_RUNNER="${run[*]}" STRATALLOC_LIB="$lib" \
    scripts/test-c.sh --no-build "${strategies[@]}" >"$log" 2>&1
rc=$?
grep -E '^(FAIL|skip)' "$log"
summary=$(tail -n 1 "$log")
if [ $rc -eq 0 ]; then
    ok "tests/c under qemu-aarch64, LD_PRELOAD, ${strategies[*]:-every strategy}: $summary ($((SECONDS - t0)) s)"
else
    ko "tests/c under qemu-aarch64: $summary"
fi

t0=$SECONDS
cli=$(dirname "$lib")/stratalloc
host_cli=${CARGO_TARGET_DIR:-target}/release/stratalloc
"${run[@]}" "$cli" viz --strategy buddy --out "$tmp/glibc" >"$log" 2>&1
rc_glibc=$?
QEMU_SET_ENV="LD_PRELOAD=$lib" "${run[@]}" "$cli" viz --strategy buddy --out "$tmp/preloaded" >>"$log" 2>&1
rc_pre=$?
if [ $rc_glibc -eq 0 ] && [ $rc_pre -eq 0 ] && cmp -s "$tmp/glibc.png" "$tmp/preloaded.png" &&
    cmp -s "$tmp/glibc.svg" "$tmp/preloaded.svg" && [ -s "$tmp/preloaded.png" ]; then
    ok "stratalloc viz under qemu-aarch64: the same PNG and SVG with the library preloaded as with glibc ($((SECONDS - t0)) s)"
else
    ko "stratalloc viz under qemu-aarch64 (exit $rc_glibc / $rc_pre, or the pictures differ)"
    tail -20 "$log"
fi
QEMU_SET_ENV="LD_PRELOAD=$lib,STRATALLOC_TRACE=$tmp/viz.trace" "${run[@]}" "$cli" viz --strategy tlsf --text >"$log" 2>&1
if "$host_cli" replay "$tmp/viz.trace" --strategy tlsf >>"$log" 2>&1 &&
    grep -qE '^replaying .*, [1-9][0-9]* events' "$log" && grep -qE '^tlsf .* ok$' "$log"; then
    ok "STRATALLOC_TRACE under qemu-aarch64: the trace replays on the host"
else
    ko "STRATALLOC_TRACE under qemu-aarch64, or its replay"
    tail -20 "$log"
fi

t0=$SECONDS
if cargo test --release --target "$target" -p stratalloc --lib >"$log" 2>&1; then
    ok "stratalloc unit tests on $target: $(grep -E '^test result' "$log" | head -1) ($((SECONDS - t0)) s)"
else
    ko "stratalloc unit tests on $target"
    grep -E '^(test .*FAILED|failures:|---- )' "$log" | head -20
    tail -5 "$log"
fi

finish
