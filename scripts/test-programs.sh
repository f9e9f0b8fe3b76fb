#!/usr/bin/env bash
# Real programs on libstratalloc.so: each runs once on glibc's malloc, then
# preloaded on the engine and on every core strategy (the `*-scan` teaching
# variants only when named); the results must be identical to glibc's, and
# each line gives the time against glibc's.
#
#   scripts/test-programs.sh               # build, small run (a few minutes)
#   scripts/test-programs.sh --full        # more Python test modules, bigger data
#   scripts/test-programs.sh --no-build tlsf engine   # only these allocators
#   STRATALLOC_LIB=/path/libstratalloc.so scripts/test-programs.sh --no-build
#
# Programs: python3 (modules of its own test suite: Debian's
# libpython3.11-testsuite), sqlite3 (a script), git (init, commit, log in a
# temporary repository), gcc (compiling C files to assembly, and a program
# built and run). Needs: python3 libpython3.11-testsuite sqlite3 git gcc.
# Last line: "N passed, M failed"; exit status 1 if anything failed.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
LIB=${STRATALLOC_LIB:-$TARGET/release/libstratalloc.so}
TIMEOUT=${TEST_TIMEOUT:-300}
PY=/usr/bin/python3

build=1
full=0
only=()
for a in "$@"; do
    case "$a" in
        --no-build) build=0 ;;
        --full) full=1 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) only+=("$a") ;;
    esac
done

if [ $build = 1 ]; then
    (cd "$ROOT" && cargo build --release -p stratalloc-capi) || { echo "0 passed, 1 failed"; exit 1; }
fi
[ -f "$LIB" ] || { echo "no library at $LIB"; echo "0 passed, 1 failed"; exit 1; }
LIB=$(cd "$(dirname "$LIB")" && pwd)/$(basename "$LIB")

TMP=$(mktemp -d /tmp/stratalloc-programs.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok    $*"; }
fail() { failed=$((failed + 1)); echo "FAIL  $*"; }

if [ $full = 1 ]; then
    PY_TESTS="test_list test_dict test_re test_collections test_string test_json test_unicode
              test_set test_bytes test_itertools test_functools test_sort test_heapq
              test_bisect test_struct test_pickle test_decimal test_fractions test_textwrap"
    ROWS=300000
else
    PY_TESTS="test_list test_dict test_re test_collections test_string"
    ROWS=30000
fi

# --- the cases: each writes a result (stdout) that must match glibc's ---

case_python() {
    # The summary lines of the test run (counts and verdict).
    "$PY" -m test $PY_TESTS 2>&1 | grep -E "Tests result|tests? OK\.|tests? failed|skipped|Total tests"
}

case_sqlite() {
    sqlite3 :memory: <<EOF
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, v REAL, blob BLOB);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $ROWS)
INSERT INTO t SELECT x, printf('name-%08d-%s', x, substr('abcdefghijklmnopqrstuvwxyz', x % 26 + 1)),
                     x % 97, x * 1.5, zeroblob(x % 300) FROM c;
CREATE INDEX t_name ON t(name);
CREATE INDEX t_grp ON t(grp, v);
SELECT count(*), sum(v), sum(length(blob)) FROM t;
SELECT grp, count(*), length(group_concat(name, ',')) FROM t GROUP BY grp ORDER BY grp LIMIT 5;
UPDATE t SET name = name || '-updated' WHERE id % 3 = 0;
DELETE FROM t WHERE id % 7 = 0;
SELECT count(*), max(name), min(name) FROM t;
SELECT name FROM t ORDER BY name DESC LIMIT 3;
SELECT hex(sha3(group_concat(name))) FROM (SELECT name FROM t ORDER BY id);
VACUUM;
PRAGMA integrity_check;
EOF
}

case_git() {
    local d=$TMP/repo.$1
    rm -rf "$d"; mkdir -p "$d"
    (
        cd "$d" || exit 1
        export HOME=$d GIT_CONFIG_NOSYSTEM=1 GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.invalid \
            GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.invalid \
            GIT_AUTHOR_DATE="2026-01-01T00:00:00Z" GIT_COMMITTER_DATE="2026-01-01T00:00:00Z"
        git init -q -b main . && git config core.autocrlf false
        for i in $(seq 1 150); do seq "$i" $((i * 20)) >"file$i.txt"; done
        git add . && git commit -q -m "first"
        for i in $(seq 1 150 | awk 'NR % 3 == 0'); do echo "change $i" >>"file$i.txt"; done
        git rm -q file2.txt && git add . && git commit -q -m "second"
        git log --stat --format='%H %s' && git diff --stat HEAD~1 HEAD | tail -n 1
        git gc -q && git fsck --full 2>&1 && git count-objects -v | grep -E "^(count|in-pack)"
    )
}

case_gcc() {
    # Assembly for the C tests (deterministic), and a program built and run.
    local f
    for f in "$ROOT"/tests/c/edge.c "$ROOT"/tests/c/threads.c "$ROOT"/tests/c/dlopen.c; do
        gcc -w -O2 -fno-asynchronous-unwind-tables -S -o - "$f" | md5sum
    done
    cat >"$TMP/prog.$1.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
static int cmp(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }
int main(void) {
    int n = 100000, *v = malloc(n * sizeof *v);
    unsigned s = 1;
    for (int i = 0; i < n; i++) { s = s * 1103515245 + 12345; v[i] = (int)(s >> 8) % 100000; }
    qsort(v, n, sizeof *v, cmp);
    long sum = 0;
    for (int i = 0; i < n; i += 1000) sum += v[i];
    printf("%d %d %ld\n", v[0], v[n - 1], sum);
    free(v);
    return 0;
}
EOF
    gcc -O2 -o "$TMP/prog.$1" "$TMP/prog.$1.c" && "$TMP/prog.$1"
}

cases=(python sqlite git gcc)

# What a sound reference run must contain (so a broken reference cannot
# make every comparison pass).
declare -A marker=([python]="Tests result: SUCCESS" [sqlite]="^ok$" [git]=" second$" [gcc]="^[0-9]+ [0-9]+ [0-9]+$")

# Expected results, on glibc's malloc, and its times.
declare -A glibc_secs
for c in "${cases[@]}"; do
    start=$EPOCHREALTIME
    if ! timeout "$TIMEOUT" bash -c "$(declare -f case_$c); $(declare -p ROOT TMP PY PY_TESTS ROWS); case_$c glibc" \
        >"$TMP/$c.glibc" 2>&1; then
        fail "$c on glibc (the reference run itself failed)"; tail -n 5 "$TMP/$c.glibc"
    elif ! grep -Eq "${marker[$c]}" "$TMP/$c.glibc"; then
        fail "$c on glibc: reference output lacks '${marker[$c]}'"; tail -n 5 "$TMP/$c.glibc"
    fi
    glibc_secs[$c]=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    echo "      glibc $c (${glibc_secs[$c]}s)"
done

# The allocators: the engine and every strategy the library names.
msg=$(LD_PRELOAD=$LIB STRATALLOC_STRATEGY=no-such-strategy /bin/true 2>&1)
names=${msg#*Valid names: }
read -r -a allocs <<<"$names"
# The list scans (`first-fit-scan` ...) are teaching variants of the indexed
# fits, minutes slower per program: named only when asked for.
kept=(); for a in "${allocs[@]}"; do [[ $a == *-scan ]] || kept+=("$a"); done
allocs=("${kept[@]}")
[ ${#only[@]} -gt 0 ] && allocs=("${only[@]}")
[ ${#allocs[@]} -gt 0 ] || { fail "no allocator names from the library: $msg"; }

for s in "${allocs[@]}"; do
    for c in "${cases[@]}"; do
        out=$TMP/$c.$s
        start=$EPOCHREALTIME
        timeout "$TIMEOUT" env LD_PRELOAD="$LIB" STRATALLOC_STRATEGY="$s" \
            bash -c "$(declare -f case_$c); $(declare -p ROOT TMP PY PY_TESTS ROWS); case_$c $s" >"$out" 2>&1
        rc=$?
        secs=$(awk -v a="$start" -v b="$EPOCHREALTIME" -v g="${glibc_secs[$c]}" \
            'BEGIN { printf "%.1fs, %.1fx glibc", b - a, (b - a) / (g > 0.05 ? g : 0.05) }')
        if [ $rc = 0 ] && cmp -s "$TMP/$c.glibc" "$out"; then
            pass "$s $c (${secs})"
        else
            fail "$s $c (exit $rc, ${secs}): output differs from glibc's"
            diff "$TMP/$c.glibc" "$out" | head -n 15
        fi
    done
done

echo "$passed passed, $failed failed"
[ $failed = 0 ]
