#!/usr/bin/env bash
# Fuzz every target in fuzz/ (cargo-fuzz, nightly), one at a time, and print
# per target: inputs run, operations done (per subject where a target covers
# several strategies), and whether it found a crash.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]       (default 60 s, all targets)
# Environment:
#   FUZZ_SANITIZER=address|none   (default none: the targets verify every fill
#                                  byte themselves and guard their arenas with
#                                  PROT_NONE pages; address adds ASan, ~3x slower)
#   FUZZ_TRACE_COMPARES=1         keep libFuzzer's compare tracing (better
#                                  guidance, ~2x slower; off by default)
#   FUZZ_JOBS=N                   libFuzzer -fork=N (default 1: the machine is shared).
#                                  Fork mode with -ignore_crashes=1: a campaign goes on
#                                  after a crash, so one known bug does not hide others;
#                                  every crash input is kept in fuzz/artifacts/<target>/.
#   STRATALLOC_FUZZ_MISUSE=1      targets also try misuse (delayed double frees,
#                                  interior pointers) that the contract only
#                                  reports "where the metadata can tell"
#   STRATALLOC_FUZZ_STRICT=1      full heap check after every operation (by default
#                                  after the first few and every 8th/16th) and every
#                                  cross-thread operation waited for (by default they
#                                  overlap this thread's next operations): slower,
#                                  deterministic; the crash inputs are re-run in
#                                  this mode for their message
# Exits 0 when nightly or cargo-fuzz is missing (with a message), 1 if any
# target crashed (the reproducer is under fuzz/artifacts/<target>/).
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "fuzz: SKIPPED: no nightly toolchain (rustup toolchain install nightly)"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    # cargo-fuzz is an ordinary crates.io binary: install it (1-2 min) rather
    # than ask the user to.
    echo "fuzz: installing cargo-fuzz (cargo install --locked cargo-fuzz)"
    if ! cargo install --locked -q cargo-fuzz || ! cargo +nightly fuzz --version >/dev/null 2>&1; then
        echo "fuzz: SKIPPED: cargo-fuzz could not be installed"
        exit 0
    fi
fi

root=$PWD
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cd fuzz && cargo +nightly fuzz list)
fi

# The C-entry-point target dlopens the real library.
if printf '%s\n' "${targets[@]}" | grep -q '^capi_args$'; then
    cargo build --release -q -p stratalloc-capi || { echo "fuzz: building libstratalloc.so failed"; exit 1; }
    export STRATALLOC_SO="${CARGO_TARGET_DIR:-$root/target}/release/libstratalloc.so"
fi

san=${FUZZ_SANITIZER:-none}
build_flags=(--sanitizer "$san")
[ "${FUZZ_TRACE_COMPARES:-0}" = 1 ] || build_flags+=(--no-trace-compares)
jobs=${FUZZ_JOBS:-1}
logdir="$root/fuzz/logs"
mkdir -p "$logdir"
failed=0
summary=()
for t in "${targets[@]}"; do
    log="$logdir/$t.log"
    echo "fuzz: $t for ${secs}s (sanitizer $san)"
    libfuzzer_args=(-max_total_time="$secs" -max_len=8192 -len_control=0 -print_final_stats=1
        -timeout=60 -rss_limit_mb=6144 -fork="$jobs" -ignore_crashes=1)
    stats="$logdir/$t.stats"
    : >"$stats"
    before=$(ls "fuzz/artifacts/$t" 2>/dev/null | wc -l)
    (cd fuzz && STRATALLOC_FUZZ_STATS="$stats" cargo +nightly fuzz run "${build_flags[@]}" "$t" -- "${libfuzzer_args[@]}") >"$log" 2>&1
    rc=$?
    # Inputs: libFuzzer's last "#N:" progress line in fork mode.
    execs=$(grep -oE '^#[0-9]+:' "$log" | tail -1 | tr -d '#:')
    # One report line per fuzzing process: sum them.
    ops=$(grep -o "target=$t inputs=[0-9]* ops=[0-9]*" "$stats" | sed 's/.*ops=//' | awk '{s+=$1} END {if (NR) print s}')
    crashes=$(grep -oE 'oom/timeout/crash: [0-9]+/[0-9]+/[0-9]+' "$log" | tail -1 | sed 's/.*: //')
    after=$(ls "fuzz/artifacts/$t" 2>/dev/null | wc -l)
    status="ok (oom/timeout/crash ${crashes:-0/0/0})"
    if [ $rc -ne 0 ] || [ "$after" -gt "$before" ] || [[ "${crashes:-0/0/0}" != 0/0/0 ]]; then
        status="FOUND $((after - before)) new crash input(s) (oom/timeout/crash ${crashes:-?}): fuzz/artifacts/$t/, log $log"
        failed=1
        # What each new crash input says (first 5): the panic or abort message.
        ls -t "fuzz/artifacts/$t" 2>/dev/null | head -n $((after - before < 5 ? after - before : 5)) | while read -r a; do
            msg=$(cd fuzz && STRATALLOC_FUZZ_STRICT=1 cargo +nightly fuzz run "${build_flags[@]}" "$t" "artifacts/$t/$a" 2>&1 |
                grep -m1 -A1 -E "panicked at|^stratalloc:|ERROR: AddressSanitizer" | tr '\n' ' ' | cut -c1-300)
            echo "    $a: $msg"
        done
    fi
    summary+=("$(printf '%-16s %8ss  inputs=%-10s ops=%-12s %s' "$t" "$secs" "${execs:-?}" "${ops:-?}" "$status")")
    grep -o "stratalloc-fuzz target=$t subject=[^ ]* ops=[0-9]*" "$stats" |
        sed 's/.*subject=//; s/ ops=/ /' |
        awk '{s[$1]+=$2; if (!($1 in o)) {o[$1]=n++}} END {for (k in s) printf "%d subject=%s ops=%d\n", o[k], k, s[k]}' |
        sort -n | cut -d' ' -f2- >"$logdir/$t.subjects"
done
echo
echo "fuzz summary ($(git rev-parse --short HEAD 2>/dev/null || echo 'no git'), sanitizer $san, $(date -u +%FT%TZ)):"
for s in "${summary[@]}"; do echo "$s"; done
for t in "${targets[@]}"; do
    [ -s "$logdir/$t.subjects" ] && sed "s/^/  $t /" "$logdir/$t.subjects"
done
exit $failed
