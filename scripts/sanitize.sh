#!/usr/bin/env bash
# AddressSanitizer and ThreadSanitizer (nightly) over the core crate's tests
# (every strategy's conformance and shadow-model property tests) and the
# stratalloc crate's tests (engine multi-thread stress tests, process heaps,
# wrappers).
#
# Usage: scripts/sanitize.sh [asan|tsan]...        (default: both)
# - ASan: -Zsanitizer=address over `-p stratalloc-core` and `-p stratalloc`
#   (lib + integration tests; doctests are left out: compile_fail doctests
#   do not build under the sanitizer flags). Leak detection is off: tests
#   leak heaps on purpose, and our allocators' own memory comes from mmap,
#   which LeakSanitizer does not see anyway.
# - TSan: -Zsanitizer=thread over the stratalloc crate's tests (the
#   multi-threaded ones matter). With the rust-src component, std is rebuilt
#   with TSan (-Zbuild-std=std,panic_abort; the workspace's panic = "abort"
#   needs -Zpanic-abort-tests) so its own synchronisation is understood;
#   without it, std is uninstrumented and TSan reports false races inside
#   std (mpmc channels, Arc), so the script says so and suppresses reports
#   whose top frames are in std only (tests/sanitize/tsan-std.supp).
# Exits 0 with a message when nightly is absent; 1 if a sanitizer reported.
set -uo pipefail
cd "$(dirname "$0")/.."
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "sanitize: SKIPPED: no nightly toolchain (rustup toolchain install nightly)"
    exit 0
fi
host=$(rustc +nightly -vV | sed -n 's/^host: //p')
base=${CARGO_TARGET_DIR:-$PWD/target}
build_std=()
# rust-src lets TSan rebuild std instrumented; fetch it when it is missing
# (the fallback below still works without it).
rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src' ||
    rustup component add rust-src --toolchain nightly >/dev/null 2>&1 || true
if rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
    build_std=(-Zbuild-std=std,panic_abort -Zpanic-abort-tests)
fi
modes=("$@")
[ ${#modes[@]} -eq 0 ] && modes=(asan tsan)
failed=0
run() { # name, log, command...
    local name=$1 log=$2
    shift 2
    local start=$(date +%s)
    "$@" >"$log" 2>&1
    local rc=$?
    local reports
    reports=$(grep -cE '^(==[0-9]+==ERROR: AddressSanitizer|WARNING: ThreadSanitizer)' "$log")
    local results
    results=$(grep -E '^test result' "$log" | awk '{p+=$4; f+=$6} END {printf "%d passed, %d failed", p, f}')
    if [ $rc -eq 0 ] && [ "$reports" -eq 0 ]; then
        echo "sanitize: $name: ok, $results, 0 reports, $(($(date +%s) - start))s"
    else
        echo "sanitize: $name: FAILED (exit $rc, $reports sanitizer reports), $results, log $log"
        grep -m5 -E '^SUMMARY: (Address|Thread)Sanitizer' "$log" | sort | uniq -c | sed 's/^/    /'
        grep -m3 -E 'panicked at' -A1 "$log" | sed 's/^/    /'
        failed=1
    fi
}
mkdir -p "$base/sanitize"
for m in "${modes[@]}"; do
    case $m in
    asan)
        for p in stratalloc-core stratalloc; do
            CARGO_TARGET_DIR="$base/asan" RUSTFLAGS="-Zsanitizer=address" ASAN_OPTIONS=detect_leaks=0 \
                run "asan $p" "$base/sanitize/asan-$p.log" \
                cargo +nightly test --target "$host" -p "$p" --lib --tests
        done
        ;;
    tsan)
        flags="-Zsanitizer=thread"
        tsan_opts="halt_on_error=0"
        if [ ${#build_std[@]} -eq 0 ]; then
            echo "sanitize: tsan: no rust-src component: std is not instrumented; std-internal reports are suppressed"
            flags="$flags -Cunsafe-allow-abi-mismatch=sanitizer"
            tsan_opts="$tsan_opts suppressions=$PWD/tests/sanitize/tsan-std.supp"
        fi
        CARGO_TARGET_DIR="$base/tsan" RUSTFLAGS="$flags" TSAN_OPTIONS="$tsan_opts" \
            run "tsan stratalloc" "$base/sanitize/tsan-stratalloc.log" \
            cargo +nightly test "${build_std[@]}" --target "$host" -p stratalloc --lib --tests
        ;;
    *)
        echo "sanitize: unknown mode $m (asan|tsan)"
        exit 2
        ;;
    esac
done
exit $failed
