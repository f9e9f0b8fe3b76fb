#!/usr/bin/env bash
# Overhead of the leak check (STRATALLOC_LEAKS) and of check mode
# (STRATALLOC_CHECK) against the plain engine, interleaved runs, medians of
# wall seconds and their ratios, on: the C benchmark tests/c/bench/list_scan.c
# (with LeakSanitizer's own overhead on it as the anchor: the same program
# built with -fsanitize=leak against the plain build on glibc), the engine
# workload `churn`, and python3 running a small JSON script.
# Usage: scripts/bench-leaks.sh [REPS]      (default 5; timings are noisy on
# a shared machine: compare ratios within one run). Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-5}
cargo build --release -q -p stratalloc-capi -p stratalloc-bench
lib=$(realpath target/release/libstratalloc.so)
w=target/release/engine-workload
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc -O2 -g -pthread -o "$tmp/list_scan" tests/c/bench/list_scan.c
lsan=0
if cc -O2 -g -pthread -fsanitize=leak -o "$tmp/list_scan_lsan" tests/c/bench/list_scan.c 2>/dev/null; then lsan=1; fi
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3)
cat >"$tmp/p.py" <<'PY'
import json
d = [{"a": i, "b": str(i) * 10} for i in range(200000)]
print(len(json.dumps(d)))
PY
t() { # seconds of one run of "$@"
    local a b
    a=$(date +%s.%N)
    "$@" >/dev/null 2>&1 || true
    b=$(date +%s.%N)
    awk -v a="$a" -v b="$b" 'BEGIN { printf "%.4f\n", b - a }'
}
median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
declare -A runs
modes=(plain leaks check)
menv() { case $1 in plain) echo "" ;; leaks) echo "STRATALLOC_LEAKS=/dev/null STRATALLOC_LEAKS_EXITCODE=0" ;; check) echo "STRATALLOC_CHECK=1" ;; esac; }
for _ in $(seq "$reps"); do
    for m in "${modes[@]}"; do
        # shellcheck disable=SC2046
        runs[c:$m]+="$(t env LD_PRELOAD="$lib" $(menv $m) "$tmp/list_scan" 2 200000) "
        # shellcheck disable=SC2046
        runs[w:$m]+="$(t env LD_PRELOAD="$lib" $(menv $m) "$w" churn --scale 0.05) "
        # shellcheck disable=SC2046
        runs[p:$m]+="$(t env LD_PRELOAD="$lib" $(menv $m) "$py" "$tmp/p.py") "
    done
    runs[c:glibc]+="$(t "$tmp/list_scan" 2 200000) "
    [ $lsan = 1 ] && runs[c:lsan]+="$(t "$tmp/list_scan_lsan" 2 200000) "
done
med() { printf '%s\n' ${runs[$1]} | median; }
row() { # label key
    local p l c
    p=$(med "$2:plain"); l=$(med "$2:leaks"); c=$(med "$2:check")
    awk -v n="$1" -v p="$p" -v l="$l" -v c="$c" 'BEGIN {
        printf "| %s | %.3f | %.3f (%.1fx) | %.3f (%.1fx) |\n", n, p, l, l / p, c, c / p }'
}
echo "| workload (median of $reps, wall s) | engine | + leaks | + check |"
echo "|---|---|---|---|"
row "list_scan 2 200000 (C)" c
row "engine-workload churn --scale 0.05" w
row "python3 json (200k dicts)" p
if [ $lsan = 1 ]; then
    g=$(med c:glibc); s=$(med c:lsan)
    awk -v g="$g" -v s="$s" 'BEGIN { printf "\nanchor: list_scan on glibc %.3f s, built with -fsanitize=leak %.3f s (%.1fx)\n", g, s, s / g }'
fi
