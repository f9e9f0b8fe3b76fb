#!/usr/bin/env bash
# Build in release, run the region-heap and engine benchmark suites, write
# CSV/JSON into target/bench/ and the tables into docs/BENCHMARKS.md.
#
# Usage: scripts/bench.sh [--quick | --smoke]
#   (none)    the full run (4-6 minutes on 2 cores, builds included)
#   --quick   fewer steps and repetitions (a couple of minutes)
#   --smoke   tiny parameters, proves the harness works; leaves the docs alone
# Environment: CARGO_TARGET_DIR (honoured), BENCH_OUT (default target/bench),
#   BENCH_REV (the revision label written into the docs; default: git HEAD).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full
for a in "$@"; do
    case "$a" in
        --quick) mode=quick ;;
        --smoke) mode=smoke ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "bench.sh: unknown argument $a" >&2; exit 2 ;;
    esac
done
flag=()
[ "$mode" = full ] || flag=("--$mode")

scripts/deps.sh --bench

target="${CARGO_TARGET_DIR:-target}"
out="${BENCH_OUT:-target/bench}"
mkdir -p "$out"

echo "bench.sh: building (release)" >&2
cargo build --release -p stratalloc-bench --bins
if ! cargo build --release -p stratalloc-capi; then
    echo "bench.sh: libstratalloc.so did not build; the engine tables will say so" >&2
fi

"$target/release/region-bench" ${flag[@]+"${flag[@]}"} --out "$out" >/dev/null
"$target/release/engine-bench" ${flag[@]+"${flag[@]}"} --out "$out" \
    --workload-exe "$target/release/engine-workload" \
    --stratalloc-lib "$target/release/libstratalloc.so" >/dev/null

echo "bench.sh: CSV/JSON in $out" >&2
if [ "$mode" = smoke ]; then
    cat "$out/region.md" "$out/engine.md"
    exit 0
fi

doc=docs/BENCHMARKS.md
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
if [ -n "${BENCH_REV:-}" ]; then
    rev=$BENCH_REV   # set when measuring an exported tree (no .git)
else
    rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    git diff --quiet HEAD -- crates 2>/dev/null || rev="$rev + uncommitted changes"
fi
pkgver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "?"; }
{
    echo "- command: \`scripts/bench.sh${flag[@]+ ${flag[*]}}\`"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(nproc) cores (nproc), CPU: ${cpu:-unknown}, $(uname -sr)"
    echo "- toolchain: $(rustc --version); tree: $rev"
    echo "- peers: libmimalloc2.0 $(pkgver libmimalloc2.0), libjemalloc2 $(pkgver libjemalloc2), glibc $(pkgver libc6)"
} >"$out/meta.md"

# Replace the text between <!-- bench:NAME:begin --> and <!-- bench:NAME:end -->.
splice() {
    local name=$1 src=$2
    if ! grep -q "<!-- bench:$name:begin -->" "$doc"; then
        echo "bench.sh: $doc lacks the bench:$name markers" >&2
        exit 1
    fi
    awk -v b="<!-- bench:$name:begin -->" -v e="<!-- bench:$name:end -->" -v f="$src" '
        $0 == b { print; print ""; while ((getline line < f) > 0) print line; print ""; skip = 1; next }
        $0 == e { skip = 0 }
        !skip { print }' "$doc" >"$doc.tmp"
    mv "$doc.tmp" "$doc"
}
splice meta "$out/meta.md"
splice region "$out/region.md"
splice engine "$out/engine.md"
echo "bench.sh: tables written into $doc" >&2
