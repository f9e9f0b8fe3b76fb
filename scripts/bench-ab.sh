#!/usr/bin/env bash
# A/B two builds of libstratalloc.so on one engine workload, interleaved
# (A, B, A, B, ...), and print the median seconds of each and B/A.
# Usage: scripts/bench-ab.sh A.so B.so REPS WORKLOAD [engine-workload args]
#   e.g. git worktree add /tmp/old <rev> && (cd /tmp/old &&
#        cargo build --release -p stratalloc-capi)
#        scripts/bench-ab.sh /tmp/old/target/release/libstratalloc.so \
#            target/release/libstratalloc.so 11 churn --scale 1
# Needs target/release/engine-workload (cargo build --release -p stratalloc-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 4 ] || { sed -n '2,9p' "$0"; exit 2; }
a=$(realpath "$1"); b=$(realpath "$2"); reps=$3; shift 3
w=${CARGO_TARGET_DIR:-target}/release/engine-workload
secs() { LD_PRELOAD=$1 "$w" "${@:2}" | awk '/^secs/ {print $2}'; }
median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
ta=(); tb=()
for _ in $(seq "$reps"); do
    ta+=("$(secs "$a" "$@")")
    tb+=("$(secs "$b" "$@")")
done
ma=$(printf '%s\n' "${ta[@]}" | median)
mb=$(printf '%s\n' "${tb[@]}" | median)
awk -v a="$ma" -v b="$mb" -v w="$*" 'BEGIN {printf "%s: A %.4f s, B %.4f s, B/A %.3f\n", w, a, b, b / a}'
