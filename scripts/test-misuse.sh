#!/usr/bin/env bash
# Run every misuse case (tests/misuse/misuse.c) with libstratalloc.so
# preloaded, in default mode and in check mode (STRATALLOC_CHECK=1), compare
# each outcome with tests/misuse/expected.tsv, print a table and
# "N passed, M failed". Exit 1 only on a regression against the
# expectations; a case caught that was expected not to be is reported as
# "improved" (update the file).
#
# Usage: scripts/test-misuse.sh            (STRATALLOC_STRATEGY picks the allocator; default engine)
#        scripts/test-misuse.sh --strategies   every region strategy as the process allocator, each
#                                              against tests/misuse/expected-<strategy>.tsv
# Outcomes:
#   caught   killed by a signal after a stratalloc message that names the
#            misused pointer (the program prints it first) and contains the
#            expected substring
#   crash    killed by a signal without it (an uncontrolled crash)
#   damage   the program saw a live block lose its contents (exit 3)
#   silent   the misuse went unnoticed (exit 0)
#   n/a      the entry point under test is not provided (exit 77)
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --strategies ]; then
    bad=()
    for s in bump first-fit next-fit best-fit worst-fit segregated tlsf buddy slab; do
        echo
        STRATALLOC_STRATEGY=$s "$0" || bad+=("$s")
    done
    [ ${#bad[@]} -eq 0 ] || { echo "misuse: regressions under: ${bad[*]}"; exit 1; }
    echo "misuse: every strategy matches its expectations"
    exit 0
fi
target=${CARGO_TARGET_DIR:-target}
lib=${STRATALLOC_LIB:-$target/release/libstratalloc.so}
if [ -z "${STRATALLOC_LIB:-}" ]; then
    cargo build --release -q -p stratalloc-capi || { echo "misuse: building libstratalloc.so failed"; exit 1; }
fi
lib=$(realpath "$lib")
bin="$target/misuse/misuse"
mkdir -p "$(dirname "$bin")"
gcc -O1 -g -Wall -Wno-use-after-free -Wno-free-nonheap-object -o "$bin" tests/misuse/misuse.c -ldl || exit 1
strategy=${STRATALLOC_STRATEGY:-engine}
expect_file=tests/misuse/expected.tsv
[ "$strategy" = engine ] || expect_file=tests/misuse/expected-$strategy.tsv
ulimit -c 0

# expected[case:mode] = "outcome<TAB>substring"
declare -A expected
if [ -f "$expect_file" ]; then
    while IFS=$'\t' read -r c mode outcome substr; do
        [[ -z "$c" || "$c" == \#* ]] && continue
        expected["$c:$mode"]="$outcome"$'\t'"$substr"
    done <"$expect_file"
else
    echo "misuse: no expectations file $expect_file: printing outcomes only"
fi

rank() { case "$1" in caught) echo 3 ;; *) echo 0 ;; esac; }
passed=0
failed=0
improved=0
printf '%-26s %-24s %-24s\n' "case ($strategy)" "default" "check (STRATALLOC_CHECK=1)"
for c in $("$bin" --list); do
    row=$(printf '%-26s' "$c")
    for mode in default check; do
        err=$(mktemp)
        check_env=()
        [ "$mode" = check ] && check_env=(STRATALLOC_CHECK=1)
        # The subshell keeps bash's own "Aborted" notice out of the table.
        (env LD_PRELOAD="$lib" STRATALLOC_STRATEGY="$strategy" "${check_env[@]}" \
            timeout 30 "$bin" "$c" >/dev/null 2>"$err"; exit $?) 2>/dev/null
        rc=$?
        want=${expected["$c:$mode"]:-}
        want_outcome=${want%%$'\t'*}
        want_substr=${want#*$'\t'}
        if [ $rc -eq 0 ]; then
            got=silent
        elif [ $rc -eq 77 ]; then
            got=n/a
        elif [ $rc -eq 3 ]; then
            got=damage
        elif [ $rc -eq 124 ]; then
            got=hang
        elif [ $rc -gt 128 ] && grep 'stratalloc' "$err" | grep -qF -- "$(sed -n 's/^misuse: target //p' "$err" | head -1)" &&
            { [ "$want_outcome" != caught ] || grep -qF -- "$want_substr" "$err"; }; then
            got=caught
        else
            got=crash
        fi
        sig=""
        [ $rc -gt 128 ] && [ $rc -ne 124 ] && sig="/$(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128)))"
        if [ -z "$want" ]; then
            verdict="?"
        elif [ "$got" = "$want_outcome" ]; then
            verdict=ok
            passed=$((passed + 1))
        elif [ "$(rank "$got")" -gt "$(rank "$want_outcome")" ]; then
            verdict="improved"
            improved=$((improved + 1))
            passed=$((passed + 1))
        else
            verdict="FAIL(want $want_outcome)"
            failed=$((failed + 1))
            echo "  $c [$mode]: $(head -c 300 "$err" | tr '\n' ' ')" >>"$target/misuse/failures.txt"
        fi
        [ "${MISUSE_VERBOSE:-0}" = 1 ] && { echo "--- $c [$mode] rc=$rc"; head -c 400 "$err"; echo; }
        row+=$(printf ' %-24s' "$got$sig $verdict")
        rm -f "$err"
    done
    echo "$row"
done
[ -f "$target/misuse/failures.txt" ] && { echo "failures:"; cat "$target/misuse/failures.txt"; rm -f "$target/misuse/failures.txt"; }
[ $improved -gt 0 ] && echo "$improved case(s) now caught that $expect_file says are not: update it"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
