#!/usr/bin/env bash
# The main job (README): build stratalloc, then show it at work on a real
# program. Everything it writes goes to target/demo/.
#   1. python3 on glibc, the engine and every strategy: same output? time, peak RSS
#   2. the statistics report of the engine under python3
#   3. python3's allocations recorded, replayed on every strategy, heap maps drawn
#   4. the no-libc bare-metal demo
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --release --workspace
T=${CARGO_TARGET_DIR:-target}
LIB=$PWD/$T/release/libstratalloc.so
CLI=$PWD/$T/release/stratalloc
OUT=$PWD/$T/demo
mkdir -p "$OUT"
PY=/usr/bin/python3
PROG='
import json, re, collections
words = re.findall(r"\w+", open("/usr/share/common-licenses/GPL-3").read() * 40)
counts = collections.Counter(w.lower() for w in words)
data = [{"word": w, "n": n, "pad": w * 8} for w, n in counts.most_common()]
text = json.dumps(data) * 3
print(len(words), len(counts), len(json.loads(text[: len(text) // 3])))
'

echo "== 1. python3 on each allocator (identical output required)"
expected=$("$PY" -c "$PROG")
printf '%-12s %9s %12s  %s\n' allocator seconds "peak RSS KiB" output
for s in glibc engine bump first-fit next-fit best-fit worst-fit segregated tlsf buddy slab; do
    if [ "$s" = glibc ]; then pre=""; else pre=$LIB; fi
    /usr/bin/time -f "%e %M" -o "$OUT/time.txt" env LD_PRELOAD="$pre" STRATALLOC_STRATEGY="$s" \
        "$PY" -c "$PROG" >"$OUT/out.txt"
    got=$(cat "$OUT/out.txt")
    read -r secs rss <"$OUT/time.txt"
    verdict=same; [ "$got" = "$expected" ] || verdict="DIFFERENT: $got"
    printf '%-12s %9s %12s  %s\n' "$s" "$secs" "$rss" "$verdict"
done

echo
echo "== 2. statistics of the engine under python3 (stratalloc run --stats)"
"$CLI" run --stats -- "$PY" -c "$PROG" 2>&1 | head -40

echo
echo "== 3. record python3, replay on every strategy, draw heap maps"
rm -f "$OUT/python.trace"
"$CLI" run --trace "$OUT/python.trace" -- "$PY" -c "$PROG"
"$CLI" replay "$OUT/python.trace" --all
# Four strategies that place blocks differently, side by side to one scale.
(cd "$OUT" && "$CLI" viz python.trace -s worst-fit -s best-fit -s tlsf -s buddy \
    --snapshots 100 --out heap-maps >/dev/null)
echo "heap maps (worst fit, best fit, TLSF, buddy): $OUT/heap-maps.png and .svg"
"$CLI" viz "$OUT/python.trace" --strategy tlsf --text | tail -25

echo
echo "== 4. bare metal: no libc, a static 10 MiB heap"
"$T/release/stratalloc-bare-metal" | tail -30

echo
echo "demo output in $OUT"
