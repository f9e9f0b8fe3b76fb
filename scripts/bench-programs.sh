#!/usr/bin/env bash
# Real programs timed on each allocator of libstratalloc.so against glibc's
# malloc (issue 16's target: every strategy but bump within 3x glibc's time).
# CPU time (user + system: of every process of the run; for redis, of the
# server alone, as it reports it), so a loaded machine skews it less than
# wall time. Interleaved: each repetition runs every allocator
# once per program, glibc first; prints the median CPU seconds and the
# ratio to glibc's median. Results are not compared
# (scripts/test-programs.sh does that); a run that fails or times out
# prints as FAIL.
#
#   scripts/bench-programs.sh [REPS] [ALLOCATOR ...]   (default 3; all but the scans)
#   STRATALLOC_LIB=/path/libstratalloc.so scripts/bench-programs.sh 5 best-fit tlsf
#   PROGRAMS="perl redis" scripts/bench-programs.sh     (some of the programs only)
#
# Programs: python3 (a dict/list/string churn), sqlite3 (the script of
# test-programs.sh, 30 000 rows), perl (hash and string churn), redis
# (redis-server preloaded, redis-benchmark on glibc: SET/GET/LPUSH/LPOP,
# 20 000 requests each). Needs python3 sqlite3 perl redis-server redis-tools time.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LIB=${STRATALLOC_LIB:-${CARGO_TARGET_DIR:-$ROOT/target}/release/libstratalloc.so}
TIMEOUT=${TEST_TIMEOUT:-120}
reps=${1:-3}
[ $# -gt 0 ] && shift
[ -f "$LIB" ] || { echo "no library at $LIB (cargo build --release -p stratalloc-capi)"; exit 1; }
LIB=$(realpath "$LIB")
TMP=$(mktemp -d /tmp/stratalloc-bench-programs.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

allocs=("$@")
if [ ${#allocs[@]} = 0 ]; then
    msg=$(LD_PRELOAD=$LIB STRATALLOC_STRATEGY=no-such-strategy /bin/true 2>&1)
    read -r -a names <<<"${msg#*Valid names: }"
    for a in "${names[@]}"; do [[ $a == *-scan ]] || allocs+=("$a"); done
fi
allocs=(glibc "${allocs[@]}")

prog_python() {
    python3 - <<'EOF'
import random
r = random.Random(1)
d = {}
for i in range(300000):
    k = r.randrange(50000)
    if k in d and r.random() < 0.5:
        del d[k]
    else:
        d[k] = [str(k) * r.randrange(1, 40), list(range(r.randrange(0, 30)))]
print(len(d), sum(len(v[0]) for v in d.values()))
EOF
}

prog_sqlite() {
    sqlite3 :memory: <<'EOF'
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, v REAL, blob BLOB);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 30000)
INSERT INTO t SELECT x, printf('name-%08d-%s', x, substr('abcdefghijklmnopqrstuvwxyz', x % 26 + 1)),
                     x % 97, x * 1.5, zeroblob(x % 300) FROM c;
CREATE INDEX t_name ON t(name);
CREATE INDEX t_grp ON t(grp, v);
SELECT grp, count(*), length(group_concat(name, ',')) FROM t GROUP BY grp ORDER BY grp LIMIT 5;
UPDATE t SET name = name || '-updated' WHERE id % 3 = 0;
DELETE FROM t WHERE id % 7 = 0;
SELECT count(*), max(name), min(name) FROM t;
VACUUM;
PRAGMA integrity_check;
EOF
}

prog_perl() {
    perl -e 'srand(1); my %h; for my $i (1..400000) { my $k = int(rand(60000));
        if (exists $h{$k} && rand() < 0.5) { delete $h{$k} } else { $h{$k} = ("x" x int(rand(200))) . $i } }
        my $n = 0; $n += length($_) for values %h; print scalar(keys %h), " $n\n";'
}

prog_redis() {
    local port=$((20000 + RANDOM % 20000))
    redis-server --port "$port" --save '' --appendonly no --daemonize no >"$TMP/redis.log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do
        LD_PRELOAD= redis-cli -p "$port" ping >/dev/null 2>&1 && break
        sleep 0.05
    done
    LD_PRELOAD= redis-benchmark -p "$port" -q -n 20000 -r 10000 -d 100 -t set,get,lpush,lpop >/dev/null
    local rc=$?
    # The server's own CPU time (the client's would dilute the ratio).
    LD_PRELOAD= redis-cli -p "$port" info cpu |
        awk -F: '/^used_cpu_(user|sys):/ { t += $2 } END { printf "%.3f %.3f\n", t, 0 }' >"$TMP/server"
    LD_PRELOAD= redis-cli -p "$port" shutdown nosave >/dev/null 2>&1
    wait "$pid"
    return $rc
}

read -r -a programs <<<"${PROGRAMS:-python sqlite perl redis}"
declare -A t
for _ in $(seq "$reps"); do
    for p in "${programs[@]}"; do
        for a in "${allocs[@]}"; do
            rm -f "$TMP/server"
            pre=()
            [ "$a" = glibc ] || pre=(env LD_PRELOAD="$LIB" STRATALLOC_STRATEGY="$a")
            /usr/bin/time -o "$TMP/time" -f "%U %S" timeout "$TIMEOUT" ${pre[@]+"${pre[@]}"} \
                bash -c "$(declare -f prog_$p); $(declare -p TMP); prog_$p" >/dev/null 2>&1
            rc=$?
            t_file=$TMP/time
            [ "$p" = redis ] && t_file=$TMP/server
            s=$(awk '{ printf "%.3f", $1 + $2 }' "$t_file" 2>/dev/null)
            [ $rc = 0 ] && [ -n "$s" ] || s=FAIL
            t[$p.$a]="${t[$p.$a]:-} $s"
        done
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR]=$1} END {print (NR ? v[int((NR+1)/2)] : "FAIL")}'; }
printf '%-12s' allocator
for p in "${programs[@]}"; do printf ' %16s' "$p"; done
echo
for a in "${allocs[@]}"; do
    printf '%-12s' "$a"
    for p in "${programs[@]}"; do
        if [[ ${t[$p.$a]} == *FAIL* ]]; then
            printf ' %16s' FAIL
            continue
        fi
        m=$(echo "${t[$p.$a]}" | median)
        g=$(echo "${t[$p.glibc]}" | median)
        printf ' %16s' "$(awk -v m="$m" -v g="$g" 'BEGIN { printf "%.2fs %.2fx", m, m / g }')"
    done
    echo
done
