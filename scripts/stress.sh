#!/usr/bin/env bash
# Long stress run (tests/stress/stress.c) with libstratalloc.so preloaded, on
# the engine and on each strategy: many threads, thread churn, cross-thread
# frees, fork while allocating, realloc storms, sizes from 0 to 8 MiB, every
# fill byte verified. Prints operations done and failures per allocator.
#
# Usage: scripts/stress.sh SECONDS [ALLOCATOR...]   (default: engine and every strategy)
# Environment: STRESS_THREADS (default 8), STRESS_VMEM_MB (address-space
# limit per run, default 16384: a strategy that never reuses memory gets NULL
# instead of eating the machine), STRATALLOC_CHECK etc. are passed through,
# STRATALLOC_LIB to test a prebuilt library.
# Exit 1 if any run had a failure or died.
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:?usage: scripts/stress.sh SECONDS [ALLOCATOR...]}
shift
target=${CARGO_TARGET_DIR:-target}
lib=${STRATALLOC_LIB:-$target/release/libstratalloc.so}
if [ -z "${STRATALLOC_LIB:-}" ]; then
    cargo build --release -q -p stratalloc-capi || { echo "stress: building libstratalloc.so failed"; exit 1; }
fi
lib=$(realpath "$lib")
bin="$target/stress/stress"
mkdir -p "$(dirname "$bin")"
gcc -O2 -g -Wall -pthread -o "$bin" tests/stress/stress.c || exit 1
allocators=("$@")
if [ ${#allocators[@]} -eq 0 ]; then
    # engine, then every strategy in the order crates/core/src/any.rs lists them
    mapfile -t allocators < <(echo engine; sed -n 's/^ *[A-Z][A-Za-z]*: .* = "\([a-z-]*\)" =>.*/\1/p' crates/core/src/any.rs)
fi
threads=${STRESS_THREADS:-8}
vmem=$((${STRESS_VMEM_MB:-16384} * 1024))
ulimit -c 0
failed=0
results=()
for a in "${allocators[@]}"; do
    out=$(mktemp)
    echo "stress: $a for ${secs}s, $threads threads"
    (ulimit -v "$vmem"; env LD_PRELOAD="$lib" STRATALLOC_STRATEGY="$a" \
        timeout --signal=KILL $((secs * 3 + 120)) "$bin" "$secs" "$threads" >"$out" 2>&1; exit $?) 2>/dev/null
    rc=$?
    line=$(grep '^stress: seconds=' "$out" | tail -1)
    if [ $rc -eq 0 ] && [ -n "$line" ]; then
        status=ok
    else
        status="FAILED (exit $rc)"
        failed=1
        grep -v '^stress: seconds=' "$out" | head -20 | sed 's/^/    /'
    fi
    results+=("$(printf '%-12s %s %s' "$a" "${line#stress: }" "$status")")
    rm -f "$out"
done
echo
echo "stress summary ($(git rev-parse --short HEAD 2>/dev/null || echo '?'), ${secs}s each, $threads threads, $(date -u +%FT%TZ)):"
for r in "${results[@]}"; do echo "$r"; done
exit $failed
