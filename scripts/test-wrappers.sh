#!/usr/bin/env bash
# End-to-end tests of the wrappers and the `stratalloc` command, as users use
# them: C programs and python3 under LD_PRELOAD=libstratalloc.so.
#
#   leaks  : tests/wrappers/leak.c has known truth (direct leaks from
#            leak_some(), a lost list head with indirect nodes, and blocks
#            that must not be reported: reachable from a global, another
#            thread's stack, main's stack and register, stdout's buffer);
#            exact bytes, exit status 23, suppressions, python3 and git
#   check  : tests/wrappers/faults.c makes one heap bug per run; the abort
#            message is asserted
#   stats  : tests/wrappers/stats.c makes known traffic; the counts are asserted
#   trace  : python3 traced with `stratalloc run --trace`, replayed on every
#            strategy, drawn with `stratalloc viz`
#   install: scripts/install.sh into a temporary PREFIX; PREFIX/bin/stratalloc
#            finds its library (run --stats -- /bin/true) and, as
#   bench  : `stratalloc bench --smoke`, the stratalloc-bench suites
#   compose: every wrapper at once over the engine and every strategy
#   profile: tests/wrappers/profile.c has call sites with known shares of
#            the peak and of the allocations: the JSON's figures are exact;
#            its HTML page and python3's load in headless Chromium, their
#            script runs without errors and the function names are in the DOM
#   process: every report names its process; `run` reports only the program
#            it started unless --follow-children; a summary with no option
#
# Usage: scripts/test-wrappers.sh      Prints "N passed, M failed"; exits 1 on failure.
# Environment: CARGO_TARGET_DIR (honoured).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scripts/deps.sh >/dev/null 2>&1 || true

target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
if ! cargo build --release -q -p stratalloc-capi -p stratalloc-cli -p stratalloc-bench --bins --lib; then
    echo "test-wrappers: build failed"
    echo "0 passed, 1 failed"
    exit 1
fi
bin="$target/release"
lib="$bin/libstratalloc.so"
cli="$bin/stratalloc"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3)

for c in leak faults stats profile; do
    gcc -g -O0 -fno-omit-frame-pointer -pthread -Wno-free-nonheap-object \
        -o "$work/$c" "tests/wrappers/$c.c" || { echo "cannot compile $c.c"; exit 1; }
done

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() {
    failed=$((failed + 1))
    echo "FAIL $1"
    [ -n "${2:-}" ] && sed 's/^/     | /' <<<"$2" | head -40
}
# expect NAME TEXT REGEX...: every extended regex must match TEXT.
expect() {
    local name=$1 text=$2
    shift 2
    for re in "$@"; do
        if ! grep -Eq -- "$re" <<<"$text"; then
            bad "$name (missing /$re/)" "$text"
            return
        fi
    done
    ok "$name"
}
# status NAME GOT WANT TEXT
status() {
    if [ "$2" -eq "$3" ]; then ok "$1"; else bad "$1 (exit status $2, want $3)" "$4"; fi
}

# ---- leaks -------------------------------------------------------------
out=$(STRATALLOC_LEAKS=1 LD_PRELOAD="$lib" "$work/leak" 2>&1)
rc=$?
expect "leaks: direct from leak_some and a lost list head, its nodes indirect, exact bytes" "$out" \
    'Direct leak of 3702 byte\(s\) in 3 object\(s\) allocated from:' \
    '#0 0x[0-9a-f]+ in leak_some .*leak\.c:[0-9]+' \
    'Direct leak of 100 byte\(s\) in 1 object\(s\)' \
    'Indirect leak of 400 byte\(s\) in 2 object\(s\)' \
    'SUMMARY: stratalloc: 4202 byte\(s\) leaked in 6 allocation\(s\)\.'
n=$(grep -c 'leak of' <<<"$out")
if [ "$n" -eq 3 ]; then ok "leaks: nothing else reported (global, other thread's stack, main's stack and register, stdout buffer)"; else bad "leaks: $n groups reported, want 3" "$out"; fi
first=$(grep -m1 -A1 'leak of' <<<"$out" | tail -1)
if grep -q leak_some <<<"$first"; then ok "leaks: largest group first, top frame is the caller"; else bad "leaks: top frame" "$out"; fi
status "leaks: exit status 23 when leaks are found" "$rc" 23 "$out"
expect "leaks: the program's stdout is flushed before the leak exit" "$out" 'leak test done'
out=$(STRATALLOC_LEAKS=1 LD_PRELOAD="$lib" timeout 60 "$work/leak" deaf 2>&1)
rc=$?
expect "leaks: a thread that blocks the stop signal: the check says it was skipped" "$out" \
    'leak check skipped: thread [0-9]+ did not stop' 'Live block\(s\) at exit:' \
    'SUMMARY: stratalloc: leak check skipped; [0-9]+ byte'
status "leaks: a skipped check exits 0" "$rc" 0 "$out"
out=$(STRATALLOC_LEAKS=1 STRATALLOC_LEAKS_EXITCODE=0 LD_PRELOAD="$lib" "$work/leak" 2>&1)
status "leaks: STRATALLOC_LEAKS_EXITCODE=0 leaves the program's status" "$?" 0 "$out"
out=$(STRATALLOC_LEAKS=1 STRATALLOC_LEAKS_REACHABLE=1 LD_PRELOAD="$lib" "$work/leak" 2>&1)
expect "leaks: STRATALLOC_LEAKS_REACHABLE=1 lists the reachable blocks, not as leaks" "$out" \
    'Still reachable: 5000 byte\(s\) in 1 object\(s\)' 'Still reachable: 3000 byte' \
    'Still reachable: 700 byte' 'Still reachable: 600 byte' 'Still reachable: 4096 byte' \
    'SUMMARY: stratalloc: 4202 byte\(s\) leaked in 6 allocation\(s\)\.'
printf '# comment\nleak:leak_some\nleak:nothing_matches\n' >"$work/supp1"
printf 'leak:make_*\n' >"$work/supp2"
out=$(STRATALLOC_LEAKS=1 STRATALLOC_LEAKS_SUPPRESS="$work/supp1" LD_PRELOAD="$lib" "$work/leak" 2>&1)
expect "leaks: a suppression by function name" "$out" 'Suppressions used:' ' 3 +3702 leak:leak_some' \
    'SUMMARY: stratalloc: 500 byte\(s\) leaked in 3 allocation\(s\)\.'
out=$(STRATALLOC_LEAKS=1 STRATALLOC_LEAKS_SUPPRESS="$work/supp2" LD_PRELOAD="$lib" "$work/leak" 2>&1)
expect "leaks: a suppressed head takes its indirect nodes with it" "$out" \
    'SUMMARY: stratalloc: 3702 byte\(s\) leaked in 3 allocation\(s\)\.'
out=$("$cli" run --leaks -- "$work/leak" 2>&1)
rc=$?
expect "leaks: via stratalloc run" "$out" 'Direct leak of 3702 byte\(s\) in 3 object\(s\)' 'leak_some'
status "leaks: stratalloc run passes the leak status on" "$rc" 23 "$out"
out=$(STRATALLOC_LEAKS=1 LD_PRELOAD="$lib" "$work/stats" 2>&1)
rc=$?
expect "leaks: a program that frees everything reports no leak" "$out" 'no leaks' 'SUMMARY: stratalloc: 0 byte'
status "leaks: no leak, status 0" "$rc" 0 "$out"
out=$(STRATALLOC_LEAKS=1 LD_PRELOAD="$lib" "$py" -c 'print(1)' 2>&1)
rc=$?
expect "leaks: python3 -c 'print(1)' has no leak" "$out" 'no leaks .*still reachable' 'SUMMARY: stratalloc: 0 byte'
status "leaks: python3 exits 0" "$rc" 0 "$out"
if command -v git >/dev/null; then
    out=$(STRATALLOC_LEAKS=1 LD_PRELOAD="$lib" git -C "$root" status 2>&1 >/dev/null)
    rc=$?
    expect "leaks: git status has no leak" "$out" 'no leaks .*still reachable'
    status "leaks: git status exits 0" "$rc" 0 "$out"
fi

# ---- check -------------------------------------------------------------
fault() { # NAME REGEX...
    local out rc name=$1
    shift
    out=$(STRATALLOC_CHECK=1 LD_PRELOAD="$lib" "$work/faults" "$name" 2>&1)
    rc=$?
    if [ "$rc" -ne 134 ]; then
        bad "check: $name aborts (rc=$rc)" "$out"
        return
    fi
    expect "check: $name" "$out" "$@"
}
P='0x[0-9a-f]+'
# The stack lines: "allocated by:" then make_block's frame, "first freed
# by:" then drop_block's, each followed (grep -A1) by its #0 frame.
made="allocated by:"
madeby="#0 $P in make_block .*faults\.c:[0-9]+"
freedby="#0 $P in drop_block .*faults\.c:[0-9]+"
one='SUMMARY: stratalloc: check: 1 error\(s\) found'
fault overflow "heap buffer overflow: block $P of 1000 bytes: the guard after it was overwritten at byte \+1003" "$made" "$madeby" "$one"
fault underflow "heap buffer underflow: block $P of 1000 bytes: the guard before it was overwritten at byte -1" "$madeby" "$one"
fault double "free of $P: double free \(block of 1000 bytes already freed\)" "$madeby" 'first freed by:' "$freedby" "$one"
fault invalid "free of $P: invalid pointer \(size unknown\)" "$one"
fault interior "free of $P: invalid pointer: interior pointer 100 bytes into block $P of 1000 bytes" "$madeby" "$one"
fault uaf "write after free: block $P of 1000 bytes was modified at byte \+8" "$madeby" 'first freed by:' "$freedby" "$one"
fault realloc-freed "realloc of $P: use after free \(block of 1000 bytes already freed\)" "$madeby" "$freedby"
fault exit-two "heap buffer overflow: block $P of 1000 bytes: .* detected at exit" \
    "heap buffer underflow: block $P of 500 bytes: .* detected at exit" \
    'SUMMARY: stratalloc: check: 2 error\(s\) found' 'two blocks damaged'
out=$(STRATALLOC_CHECK=1 LD_PRELOAD="$lib" "$work/faults" ok 2>&1)
[ $? -eq 0 ] && grep -q "clean run" <<<"$out" && grep -Eq 'stratalloc: check: 0 errors \([0-9]+ blocks checked at exit' <<<"$out" \
    && ok "check: a clean program passes, and the summary says 0 errors" || bad "check: clean program" "$out"
out=$(STRATALLOC_CHECK=1 LD_PRELOAD="$lib" "$py" -c 'import json,re; print(len(json.dumps([str(i)*5 for i in range(50000)])))' 2>&1)
[ $? -eq 0 ] && grep -q '^' <<<"$out" && ok "check: python3 runs clean under check" || bad "check: python3" "$out"

# ---- stats -------------------------------------------------------------
out=$(STRATALLOC_STATS=1 LD_PRELOAD="$lib" "$work/stats" 2>&1)
expect "stats: counts of known traffic at exit" "$out" \
    '1016 allocations \(10 zeroed, 5 aligned\), 7 reallocations, 1016 frees, 0 failed' \
    'live +0 blocks, 0 B in use' \
    '<= +128 B +1010 ' \
    'peak RSS' 'request sizes'
out=$("$cli" run --stats -- "$work/stats" 2>&1)
expect "stats: via stratalloc run (report to a file, shown after exit)" "$out" '1016 allocations'

# ---- trace, replay, viz -------------------------------------------------
tr="$work/py.trace"
out=$("$cli" run --trace "$tr" -- "$py" -c 'import json; d=[{"a":i,"b":str(i)*10} for i in range(30000)]; print(len(json.dumps(d)))' 2>&1)
expect "trace: python3 traced via stratalloc run" "$out" 'trace written to'
out=$("$cli" replay "$tr" 2>&1)
rc=$?
events=$(sed -n 's/.*pid [0-9]*, \([0-9]*\) events.*/\1/p' <<<"$out" | head -1)
nstrat=$(grep -cE ' ok$' <<<"$out")
if [ "$rc" -eq 0 ] && [ "${events:-0}" -gt 1000 ] && [ "$nstrat" -ge 2 ] && ! grep -q FAIL <<<"$out"; then
    ok "replay: python3 trace ($events events) on $nstrat strategies, check() clean"
else
    bad "replay: python3 trace (rc=$rc events=${events:-?})" "$out"
fi
strategies=$(awk 'NR > 3 && $NF == "ok" { print $1 }' <<<"$out")
out=$("$cli" viz "$tr" --strategy tlsf --out "$work/map" 2>&1)
png=$(stat -c %s "$work/map.png" 2>/dev/null || echo 0)
colours=$(grep -o 'fill="#[0-9A-Fa-f]*"' "$work/map.svg" 2>/dev/null | sort -u | wc -l)
if [ "$png" -gt 3000 ] && head -c 8 "$work/map.png" | grep -q PNG && [ "$colours" -ge 3 ] && grep -q '#' <<<"$out"; then
    ok "viz: PNG ($png bytes), SVG ($colours fill colours) and text map from the trace"
else
    bad "viz: pictures (png=$png colours=$colours)" "$out"
fi
out=$("$cli" viz --strategy first-fit --text --ops 5000 2>&1)
expect "viz: text map of the built-in workload" "$out" '# used' '\|[ .#+]+\|'

out=$(grep -o '<text[^>]*>[^<]*' "$work/map.svg" | sed 's/.*>//' | tr '\n' '|')
expect "viz: the SVG is labelled (relative title, ticks on both axes, every colour in the legend)" "$out" \
    '^heap maps: tlsf replaying py\.trace \(' 'address' '\|[0-9.]+ (KiB|MiB)\|' '\|[0-9.]+k?\|' \
    'used: [^|]*\|overhead: [^|]*\|free\|never reached\|'
[[ "$out" != *"$work"* ]] && ok "viz: no absolute path in the pictures" || bad "viz: absolute path in the SVG" "$out"

# ---- install, then bench from the installed command --------------------
# scripts/install.sh into a temporary PREFIX: the command must find its
# library and the benchmark suites from there, with no variable set.
prefix="$work/prefix"
if out=$(scripts/install.sh --no-build "$prefix" 2>&1) && [ -s "$prefix/lib/libstratalloc.so.debug" ] &&
    [ -f "$prefix/include/stratalloc.h" ] && [ -f "$prefix/lib/libstratalloc.a" ]; then
    ok "install: scripts/install.sh PREFIX (bin/, lib/ with the debug information split off, include/)"
else
    bad "install: scripts/install.sh PREFIX" "$out"
fi
icli="$prefix/bin/stratalloc"
out=$(env -u STRATALLOC_LIB "$icli" paths 2>&1)
expect "install: the installed command finds PREFIX/lib and PREFIX/lib/stratalloc" "$out" \
    "libstratalloc.so +$prefix/lib/libstratalloc.so" "engine-bench +$prefix/lib/stratalloc/engine-bench"
out=$(cd / && env -u STRATALLOC_LIB "$icli" run --stats -- /bin/true 2>&1)
rc=$?
[ $rc -eq 0 ] && grep -q "allocations" <<<"$out" && ok "install: PREFIX/bin/stratalloc run --stats -- /bin/true" \
    || bad "install: PREFIX/bin/stratalloc run --stats -- /bin/true (rc=$rc)" "$out"
out=$(env -u STRATALLOC_LIB "$icli" bench --smoke --out "$work/bench" 2>&1)
rc=$?
if [ $rc -eq 0 ] && [ -s "$work/bench/region.md" ] && [ -s "$work/bench/engine.md" ] && grep -q '|' <<<"$out"; then
    ok "bench: the installed stratalloc bench --smoke runs both suites and prints their tables"
else
    bad "bench: installed stratalloc bench --smoke (rc=$rc)" "$out"
fi

# ---- profile -------------------------------------------------------------
# dom FILE.html: the page as headless Chromium leaves it after its script
# ran, then "CONSOLE-ERRORS: N" (console errors and uncaught exceptions).
dom() {
    local log="$work/chromium.log"
    timeout 60 chromium --headless --no-sandbox --disable-gpu --enable-logging=stderr --v=0 \
        --user-data-dir="$work/chromium-profile" --dump-dom "file://$1" 2>"$log"
    echo "CONSOLE-ERRORS: $(grep -Ec 'CONSOLE.*(Uncaught|Error)|:ERROR:CONSOLE' "$log")"
}
out=$("$cli" run --profile "$work/prof.html" -- "$work/profile" 2>&1)
expect "profile: run --profile writes the page and the JSON" "$out" \
    "profile written to $work/prof.html \(data: $work/prof.json\)"
out=$("$py" - "$work/prof.json" <<'PY' 2>&1
import json, sys
d = json.load(open(sys.argv[1]))
t, frames = d["totals"], d["frames"]
def site(fn):
    s = [s for s in d["sites"] if s["stack"] and frames[s["stack"][0]]["function"] == fn]
    assert len(s) == 1, (fn, len(s))
    return s[0]
big, many, temp, leak = (site(f) for f in ("alloc_big", "alloc_many", "alloc_temp", "leak_some"))
assert t["peak_heap"] == 700000 and t["peak_blocks"] == 1001, t
assert (big["peak"], big["allocations"], big["bytes"]) == (600000, 1, 600000), big
assert (many["peak"], many["peak_blocks"], many["allocations"]) == (100000, 1000, 1000), many
assert big["peak"] * 7 == t["peak_heap"] * 6 and many["peak"] * 7 == t["peak_heap"], "shares of the peak"
assert (temp["temporary"], temp["allocations"], temp["peak"]) == (500, 500, 0), temp
assert (leak["leaked"], leak["leaked_blocks"]) == (3000, 3), leak
assert (t["allocations"], t["temporary"], t["live_at_exit"]) == (1504, 500, 3000), t
assert many["allocations"] * 1504 == t["allocations"] * 1000, "share of the allocations"
assert frames[many["stack"][1]]["function"] == "main" and frames[many["stack"][0]]["file"].endswith("profile.c")
assert d["pid"] > 0 and d["cmdline"].endswith("/profile") and len(d["timeline"]) >= 2
print("exact")
PY
)
expect "profile: exact figures of the known call sites (peak 6/7 and 1/7, 1000 of 1504 allocations, 500 temporary, 3000 B live at exit)" "$out" '^exact$'
if command -v chromium >/dev/null; then
    out=$(dom "$work/prof.html")
    expect "profile: the page renders in headless Chromium, its script ends without errors, names the functions" "$out" \
        'id="report-done"' 'CONSOLE-ERRORS: 0$' '<td class="loc mono">alloc_big \(profile\.c:[0-9]+\)' \
        'alloc_many \(profile\.c' 'alloc_temp \(profile\.c' 'leak_some \(profile\.c' '<svg[^>]*id="chart-svg"' '<svg[^>]*id="flame-svg"'
    grep -q 'id="report-error"' <<<"$out" && bad "profile: the page's script raised an error" "$(grep -o 'report error[^<]*' <<<"$out")"
    out=$("$cli" run --profile "$work/py.html" -- "$py" -c 'import json; print(len(json.dumps([{"k": str(i)} for i in range(20000)])))' 2>&1)
    n=$("$py" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["totals"]["allocations"], len(d["sites"]))' "$work/py.json" 2>&1)
    out2=$(dom "$work/py.html")
    if [ "${n%% *}" -gt 1000 ] 2>/dev/null && grep -q 'id="report-done"' <<<"$out2" && grep -q 'CONSOLE-ERRORS: 0$' <<<"$out2" \
        && ! grep -q 'id="report-error"' <<<"$out2" && grep -Eq '<td class="loc mono">[A-Za-z_]+' <<<"$out2"; then
        ok "profile: python3's page ($n allocations and call sites) renders in headless Chromium without errors"
    else
        bad "profile: python3's page (allocations, sites: $n)" "$out
$(grep -o 'id="report-error">[^<]*\|CONSOLE-ERRORS.*' <<<"$out2")"
    fi
else
    bad "profile: chromium is not installed (scripts/deps.sh installs it)"
fi

# ---- reports name their process; run reports the program it started ----
out=$("$cli" run --stats -- sh -c "$py -c 1; $py -c 2" 2>&1)
n=$(grep -c 'stratalloc statistics of process [0-9]*: sh -c' <<<"$out")
all=$(grep -c 'statistics of process' <<<"$out")
[ "$n" -eq 1 ] && [ "$all" -eq 1 ] && ok "process: run --stats through sh -c: one report, naming sh -c" || bad "process: one report ($n of $all)" "$out"
out=$("$cli" run --stats -- sh -c "exec $py -c 1" 2>&1)
n=$(grep -c 'statistics of process' <<<"$out")
[ "$n" -eq 1 ] && grep -q "statistics of process [0-9]*: $py -c 1\$" <<<"$out" \
    && ok "process: the program started reports across exec (one report, naming what it became)" || bad "process: across exec ($n reports)" "$out"
out=$("$cli" run --stats --follow-children -- sh -c "$py -c 1; $py -c 2" 2>&1)
expect "process: --follow-children: every process reports, each naming itself" "$out" \
    'statistics of process [0-9]+: sh -c' "statistics of process [0-9]+: $py -c 1\$" "statistics of process [0-9]+: $py -c 2\$"
out=$("$cli" run --leaks -- "$work/leak" 2>&1)
expect "process: the leak report names its process" "$out" 'leak report of process [0-9]+: .*/leak$'
out=$("$cli" run -- "$work/stats" 2>&1)
expect "process: run with no option prints a summary" "$out" \
    'summary of process [0-9]+: .*/stats$' 'peak heap .*peak RSS .*1016 allocations, 1016 frees' 'exit status: 0 after'

# ---- every wrapper over every allocator -------------------------------
for s in engine $strategies; do
    out=$(STRATALLOC_STRATEGY=$s STRATALLOC_CHECK=1 STRATALLOC_STATS=1 STRATALLOC_LEAKS=1 \
        STRATALLOC_PROFILE="$work/all.$s.json" STRATALLOC_TRACE="$work/all.$s.trace" LD_PRELOAD="$lib" "$work/faults" ok 2>&1)
    rc=$?
    if [ $rc -eq 0 ] && grep -q "clean run" <<<"$out" && grep -q "backend: stats(profile(leaks(check(" <<<"$out" \
        && grep -q '"backend":"profile(leaks(check(' "$work/all.$s.json" \
        && "$cli" replay "$work/all.$s.trace" -s "${s/engine/tlsf}" >/dev/null 2>&1; then
        ok "compose: all wrappers over $s"
    else
        bad "compose: all wrappers over $s (rc=$rc)" "$out"
    fi
done

# ---- threads, fork and exec under every wrapper ---------------------------
cat >"$work/thr.py" <<'PY'
import json, os, subprocess, threading
def work(n):
    return len(json.dumps([dict(a=i, b=str(i) * 20) for i in range(20000)]))
ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
[t.start() for t in ts]
[t.join() for t in ts]
pid = os.fork()
if pid == 0:
    work(1)
    os._exit(0)
os.waitpid(pid, 0)
print(subprocess.run(["/bin/echo", "child ok"], capture_output=True).stdout.decode().strip())
PY
out=$(STRATALLOC_CHECK=1 STRATALLOC_STATS="$work/thr-stats.%p.txt" STRATALLOC_LEAKS="$work/thr-leaks.%p.txt" STRATALLOC_LEAKS_EXITCODE=0 \
    STRATALLOC_PROFILE="$work/thr-prof.%p.json" STRATALLOC_TRACE="$work/thr.trace" LD_PRELOAD="$lib" timeout 120 "$py" "$work/thr.py" 2>&1)
rc=$?
reports=$(ls "$work"/thr-stats.*.txt 2>/dev/null | wc -l)
profiles=$(ls "$work"/thr-prof.*.json 2>/dev/null | wc -l)
threads=$("$cli" replay "$work/thr.trace" -s tlsf 2>&1 | sed -n 's/.* \([0-9]*\) threads.*/\1/p')
if [ $rc -eq 0 ] && grep -q "child ok" <<<"$out" && [ "$reports" -ge 2 ] && [ "$profiles" -eq "$reports" ] && [ "${threads:-0}" -ge 5 ]; then
    ok "threads+fork+exec: python3 under every wrapper ($reports processes reported, $threads threads traced)"
else
    bad "threads+fork+exec (rc=$rc reports=$reports profiles=$profiles threads=${threads:-?})" "$out"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
