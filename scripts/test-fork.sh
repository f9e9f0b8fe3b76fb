#!/usr/bin/env bash
# fork under LD_PRELOAD=libstratalloc.so: the lock order against stdio and
# fork from signal handlers, for the engine, its wrappers and region
# strategies. Each run ends in seconds; a run still going after the timeout
# is a hang and fails, printing every thread's stack (gdb, if installed).
#
#   scripts/test-fork.sh                # build, then every mode
#   scripts/test-fork.sh --no-build     # use the library already built
#   scripts/test-fork.sh engine tlsf    # only these modes (names below)
#   FORK_TIMEOUT=60 scripts/test-fork.sh
#
# Programs (tests/c): fork_deadlock (forks while threads run getline and
# fflush(NULL); the children allocate and start a thread), fork_signal (fork
# from a signal handler that interrupts malloc/free: single-threaded, with a
# second thread, racing a second thread's forks, and nested inside fork's
# own handlers).
# Modes: engine, check (engine + STRATALLOC_CHECK=1), stats, leaks, trace, profile,
# tlsf, tlsf-check, best-fit, buddy, slab.
# Prints each run's wall time; last line "N passed, M failed".
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
LIB=${STRATALLOC_LIB:-$TARGET/release/libstratalloc.so}
TIMEOUT=${FORK_TIMEOUT:-60}

build=1
only=()
for a in "$@"; do
    case "$a" in
        --no-build) build=0 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) only+=("$a") ;;
    esac
done
if [ $build = 1 ]; then
    (cd "$ROOT" && cargo build --release -q -p stratalloc-capi) || { echo "0 passed, 1 failed"; exit 1; }
fi
[ -f "$LIB" ] || { echo "no library at $LIB"; echo "0 passed, 1 failed"; exit 1; }
LIB=$(cd "$(dirname "$LIB")" && pwd)/$(basename "$LIB")

TMP=$(mktemp -d /tmp/stratalloc-test-fork.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
passed=0
failed=0
for p in fork_deadlock fork_signal; do
    cc -O1 -g -Wall -pthread -o "$TMP/$p" "$ROOT/tests/c/$p.c" || { echo "FAIL  compile $p"; exit 1; }
done

# mode name -> environment
declare -A MODES=(
    [engine]=""
    [check]="STRATALLOC_CHECK=1"
    [stats]="STRATALLOC_STATS=$TMP/stats"
    [leaks]="STRATALLOC_LEAKS=$TMP/leaks"
    [trace]="STRATALLOC_TRACE=$TMP/trace.%p"
    [profile]="STRATALLOC_PROFILE=$TMP/profile.json STRATALLOC_PROFILE_SAMPLE=4"
    [tlsf]="STRATALLOC_STRATEGY=tlsf"
    [tlsf-check]="STRATALLOC_STRATEGY=tlsf STRATALLOC_CHECK=1"
    [best-fit]="STRATALLOC_STRATEGY=best-fit"
    [buddy]="STRATALLOC_STRATEGY=buddy"
    [slab]="STRATALLOC_STRATEGY=slab"
)
order=(engine check stats leaks trace profile tlsf tlsf-check best-fit buddy slab)
[ ${#only[@]} -gt 0 ] && order=("${only[@]}")

run() { # run <mode> <label> <cmd...>
    local mode=$1 label=$2; shift 2
    local log="$TMP/run.log" t0 t1 rc
    [ -n "${MODES[$mode]+x}" ] || { failed=$((failed + 1)); echo "FAIL  unknown mode $mode"; return; }
    t0=$(date +%s.%N)
    # shellcheck disable=SC2086
    env LD_PRELOAD="$LIB" ${MODES[$mode]} "$@" >"$log" 2>&1 &
    local pid=$! ticks=0
    while kill -0 "$pid" 2>/dev/null && [ $ticks -lt $((TIMEOUT * 10)) ]; do
        sleep 0.1
        ticks=$((ticks + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        # Hung: every thread's stack (the lock order) into the log, then kill.
        if command -v gdb >/dev/null; then
            gdb -p "$pid" -batch -ex 'thread apply all bt' 2>/dev/null | grep -E '^(Thread|#)' >>"$log"
        fi
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    rc=$?
    t1=$(date +%s.%N)
    local secs
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    if [ $rc = 0 ]; then
        passed=$((passed + 1)); echo "ok    $mode $label (${secs} s)"
    else
        failed=$((failed + 1))
        if [ $rc = 137 ]; then
            echo "FAIL  $mode $label: hung, killed after ${TIMEOUT} s; the threads' stacks:"
            grep -E '^(Thread|#)' "$log" | head -n 60
        else
            echo "FAIL  $mode $label (exit $rc, ${secs} s)"
            tail -n 5 "$log"
        fi
    fi
    rm -f "$TMP"/trace.* "$TMP"/stats "$TMP"/leaks "$TMP"/profile.json
}

for m in "${order[@]}"; do
    run "$m" deadlock "$TMP/fork_deadlock" 1
    run "$m" signal "$TMP/fork_signal" 200
    run "$m" signal-threads "$TMP/fork_signal" threads 200
    run "$m" signal-nested "$TMP/fork_signal" nested 100
    run "$m" signal-race "$TMP/fork_signal" race 40
done
echo "$passed passed, $failed failed"
[ $failed = 0 ]
