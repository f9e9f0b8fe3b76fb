#!/usr/bin/env bash
# Build the no-libc demo in release and check each configuration:
#   stratalloc-bare-metal        (TLSF)
#   stratalloc-bare-metal-buddy  (buddy)
# For each: no NEEDED entries (no dynamic section at all), exit code 0, and
# the output holds the statistics, the heap map, the final check and the
# collector demo's results.
# Prints "N passed, M failed"; exits non-zero on any failure.
# Only x86_64 Linux is supported (raw syscalls, naked _start).
set -uo pipefail
cd "$(dirname "$0")/.."

if ! cargo build --release -p stratalloc-bare-metal; then
    echo "build failed"
    echo "0 passed, 1 failed"
    exit 1
fi
dir="${CARGO_TARGET_DIR:-target}/release"

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
ko() { fail=$((fail + 1)); echo "FAIL $1"; }

for pair in stratalloc-bare-metal:tlsf stratalloc-bare-metal-buddy:buddy; do
    bin="${pair%%:*}"
    strategy="${pair##*:}"
    exe="$dir/$bin"
    if [ ! -x "$exe" ]; then
        ko "$bin: $exe not built"
        continue
    fi
    dyn="$(readelf -d "$exe" 2>&1)"
    if grep -q NEEDED <<<"$dyn"; then
        ko "$bin: has NEEDED entries: $(grep NEEDED <<<"$dyn" | tr -s ' ')"
    else
        ok "$bin: no NEEDED entries"
    fi
    if readelf -l "$exe" | grep -q INTERP; then
        ko "$bin: asks for a program interpreter"
    else
        ok "$bin: no program interpreter"
    fi
    out="$("$exe" 2>&1)"
    rc=$?
    if [ "$rc" -eq 0 ]; then ok "$bin: exit code 0"; else ko "$bin: exit code $rc"; fi
    check_has() {
        if grep -qE -- "$1" <<<"$out"; then ok "$bin: output has $2"; else ko "$bin: output lacks $2"; fi
    }
    check_has "^stratalloc bare-metal demo: strategy $strategy," "the strategy name ($strategy)"
    check_has '^heap statistics \(after the workload' "the statistics with data held"
    check_has '^  in use +[1-9][0-9]*' "a non-zero in-use figure"
    check_has '^heap map: ' "the heap map header"
    rows=$(grep -cE '^  \|[#.: ]{64}\| 0x' <<<"$out")
    if [ "$rows" -ge 8 ]; then ok "$bin: heap map has $rows rows"; else ko "$bin: heap map has $rows rows"; fi
    if grep -E '^  \|[#.: ]{64}\| 0x' <<<"$out" | grep -q '#'; then
        ok "$bin: heap map shows used cells"
    else
        ko "$bin: heap map shows no used cells"
    fi
    check_has '^heap statistics \(after dropping everything' "the final statistics"
    check_has '^heap check: ok$' "a clean heap check"
    check_has '^result: ok$' "result: ok"
    check_has '^gc: [0-9]+ objects in [0-9]+ rings, [0-9]+ collections while building \([1-9][0-9]* automatic\)' "the collector's run with automatic collections"
    check_has '^gc: all roots dropped: [0-9]+ freed, heap in use 0, check ok$' "the collector's clean end"
    check_has '^gc result: ok$' "gc result: ok"
    if [ "$rc" -ne 0 ] || [ "${VERBOSE:-0}" = 1 ]; then
        echo "---- $bin output ----"
        echo "$out"
        echo "----"
    fi
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
