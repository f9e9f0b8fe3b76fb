#!/usr/bin/env bash
# What the profile costs: wall time (whole process, report at exit included)
# of engine workloads and python3 under the plain engine, the profile (every
# stack, and one stack in 64), the leak wrapper, and heaptrack (over glibc's
# malloc) as the anchor; runs interleaved, medians, ratios to the plain
# engine. Prints a Markdown table (docs/BENCHMARKS.md, "What the profile costs").
# Usage: scripts/bench-profile.sh [REPS]      (default 5; ~3 min on 2 idle cores)
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-5}
cargo build --release -q -p stratalloc-capi -p stratalloc-bench
t=${CARGO_TARGET_DIR:-target}/release
lib=$(realpath "$t/libstratalloc.so")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3)
pyscript='import json; d=[{"a": i, "b": str(i) * 10, "c": [i] * 5} for i in range(100000)]; print(len(json.dumps(d)))'
# NAME|COMMAND (python3: its own small-object allocator, then every object through malloc)
workloads=("larson --scale 0.05|$t/engine-workload larson --scale 0.05"
    "frag --scale 0.2|$t/engine-workload frag --scale 0.2"
    "python3|env $py -c $pyscript"
    "python3, PYTHONMALLOC=malloc|env PYTHONMALLOC=malloc $py -c $pyscript")
modes=(engine profile profile-64 leaks glibc)
command -v heaptrack >/dev/null && modes+=(heaptrack)

run() { # MODE CMD...
    local mode=$1
    shift
    case $mode in
        glibc) "$@" ;;
        engine) LD_PRELOAD=$lib "$@" ;;
        profile) STRATALLOC_PROFILE="$work/p.json" LD_PRELOAD=$lib "$@" ;;
        profile-64) STRATALLOC_PROFILE="$work/p.json" STRATALLOC_PROFILE_SAMPLE=64 LD_PRELOAD=$lib "$@" ;;
        leaks) STRATALLOC_LEAKS=/dev/null LD_PRELOAD=$lib "$@" ;;
        heaptrack) heaptrack -o "$work/ht" "$@" ;;
    esac
}
median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo "| workload | mode | median wall time | / engine |"
echo "|---|---|---|---|"
for w in "${workloads[@]}"; do
    name=${w%%|*}
    cmd=${w#*|}
    case $name in
        python3) args=("$py" -c "$pyscript") ;;
        python3,*) args=(env PYTHONMALLOC=malloc "$py" -c "$pyscript") ;;
        *) read -ra args <<<"$cmd" ;;
    esac
    declare -A times=()
    for _ in $(seq "$reps"); do
        for m in "${modes[@]}"; do
            s=$(date +%s%N)
            run "$m" "${args[@]}" >/dev/null 2>&1
            e=$(date +%s%N)
            times[$m]+="$(( (e - s) / 1000 )) "
            rm -rf "$work"/ht* "$work"/p.json
        done
    done
    base=$(tr ' ' '\n' <<<"${times[engine]}" | grep . | median)
    for m in "${modes[@]}"; do
        v=$(tr ' ' '\n' <<<"${times[$m]}" | grep . | median)
        awk -v w="$name" -v m="$m" -v v="$v" -v b="$base" \
            'BEGIN {printf "| %s | %s | %.3f s | %.2fx |\n", w, m, v / 1e6, v / b}'
    done
    unset times
done
