#!/usr/bin/env bash
# Valgrind (memcheck) over the test binaries of the core crate (every
# strategy's conformance and property tests) and, with --engine, the
# stratalloc crate's tests too: invalid reads/writes outside what was
# allocated or mapped, use of uninitialised values, bad frees of Rust heap
# memory. Leak checking is off (tests leak heaps on purpose).
#
# Usage: scripts/valgrind.sh [--engine] [TEST-FILTER]
# Exits 0 with a message when valgrind is not installed, 1 on any error.
set -uo pipefail
cd "$(dirname "$0")/.."
if ! command -v valgrind >/dev/null; then
    echo "valgrind: SKIPPED: valgrind is not installed (apt-get install valgrind)"
    exit 0
fi
pkgs=(-p stratalloc-core)
if [ "${1:-}" = --engine ]; then
    pkgs+=(-p stratalloc)
    shift
fi
filter=("$@")
# Release build (profile.release keeps debug info): valgrind runs it ~30x slower.
mapfile -t bins < <(cargo test --release "${pkgs[@]}" --lib --tests --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    try: m = json.loads(l)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        print(m["executable"])')
if [ ${#bins[@]} -eq 0 ]; then
    echo "valgrind: building the tests failed"
    exit 1
fi
failed=0
for b in "${bins[@]}"; do
    name=$(basename "$b")
    log=$(mktemp)
    start=$(date +%s)
    valgrind --tool=memcheck --error-exitcode=99 --leak-check=no --track-origins=yes \
        --quiet "$b" --test-threads=2 -q "${filter[@]}" >"$log" 2>&1
    rc=$?
    secs=$(($(date +%s) - start))
    result=$(grep -E '^test result' "$log" | tail -1)
    errors=$(grep -cE '^==[0-9]+== (Invalid|Conditional|Use of uninit|Syscall param|Mismatched|Source and dest)' "$log")
    if [ $rc -eq 0 ]; then
        echo "valgrind: $name: ok, 0 errors, ${secs}s: $result"
    else
        echo "valgrind: $name: FAILED (exit $rc, $errors error reports), ${secs}s: $result"
        grep -m3 -A8 -E '^==[0-9]+== (Invalid|Conditional|Use of uninit|Syscall param|Mismatched)' "$log" | sed 's/^/    /'
        grep -m3 -E 'panicked|FAILED' "$log" | sed 's/^/    /'
        failed=1
    fi
    rm -f "$log"
done
exit $failed
