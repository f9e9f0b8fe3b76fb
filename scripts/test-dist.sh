#!/usr/bin/env bash
# The library as a distribution ships it: scripts/split-debug.sh moves the
# debug information of a copy of target/release/libstratalloc.so into
# libstratalloc.so.debug; the stripped library must still work under a real
# program and still name the leaking function in a leak report
# (tests/wrappers/leak.c: 3 x 1234 bytes from leak_some).
#
# Usage: scripts/test-dist.sh    Prints "N passed, M failed"; exits 1 on failure.
# Environment: CARGO_TARGET_DIR (honoured).
set -uo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p stratalloc-capi || { echo "test-dist: build failed"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; echo "$2" | head -40; }

mkdir -p "$work/lib"
cp "$target/release/libstratalloc.so" "$work/lib/"
lib="$work/lib/libstratalloc.so"
scripts/split-debug.sh "$lib" || { echo "split-debug failed"; exit 1; }

sections=$(readelf -S -W "$lib")
if ! grep -q '\.debug_' <<<"$sections" && grep -q '\.gnu_debuglink' <<<"$sections"; then
    ok "the library has no debug sections, and a debug link"
else
    bad "debug sections or link" "$sections"
fi
if readelf -S -W "$lib.debug" | grep -q '\.debug_info'; then
    ok "the debug file holds the debug information"
else
    bad "debug file" "$(readelf -S -W "$lib.debug")"
fi
if nm -D --defined-only "$lib" | grep -qw malloc; then ok "malloc is still exported"; else bad "exports" "$(nm -D "$lib" | head)"; fi

# Tools find the debug information through the link: the address of one
# of our functions in the stripped library resolves to a Rust source line
# (without the .debug file: the nearest exported symbol and ??:?).
sym=$(nm -C "$lib.debug" | awk '$2 == "t" && $3 ~ /^stratalloc::engine::/ { print; exit }')
out=$(addr2line -f -C -e "$lib" "0x${sym%% *}" 2>&1)
if grep -Eq '\.rs:[0-9]+' <<<"$out"; then
    ok "addr2line follows the debug link (${sym#* t })"
else
    bad "debug link not followed for $sym" "$out"
fi

out=$(LD_PRELOAD="$lib" python3 -c 'print(sum(range(10)))' 2>&1)
if [ "$out" = 45 ]; then ok "python3 runs on the stripped library"; else bad "python3" "$out"; fi

gcc -g -O0 -fno-omit-frame-pointer -o "$work/leak" tests/wrappers/leak.c || { echo "cannot compile leak.c"; exit 1; }
out=$(STRATALLOC_LEAKS=1 LD_PRELOAD="$lib" "$work/leak" 2>&1)
if grep -Eq '#0 0x[0-9a-f]+ in leak_some .*leak\.c:[0-9]+' <<<"$out" &&
    grep -q 'SUMMARY: stratalloc: ' <<<"$out"; then
    ok "the leak report of the stripped library names leak_some with file:line"
else
    bad "leak report" "$out"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
