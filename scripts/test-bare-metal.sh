#!/usr/bin/env bash
# Build the no-libc demo in release and check each configuration on each
# platform:
#   stratalloc-bare-metal        (TLSF)
#   stratalloc-bare-metal-buddy  (buddy)
# on x86_64 Linux (run natively: no NEEDED entries, no interpreter), on a
# Cortex-M3 (thumbv7m-none-eabi, qemu-system-arm -M mps2-an385, semihosting)
# and on RISC-V (riscv32imac-unknown-none-elf, qemu-system-riscv32 -M virt,
# UART and the SiFive test device). For each: exit code 0, and the output
# holds the statistics, the heap map, the final check and the collector
# demo's results. Adds the rustup targets it needs; TEST_TIMEOUT (s, default
# 120) bounds each QEMU run.
# Prints "N passed, M failed"; exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/cross-env.sh
. scripts/tally.sh
TIMEOUT=${TEST_TIMEOUT:-120}
target_dir="${CARGO_TARGET_DIR:-target}"

# platform: cargo target ("" = host), then the command that runs a binary.
platforms=(
    "x86_64||"
    "cortex-m3|thumbv7m-none-eabi|qemu-system-arm -M mps2-an385 -nographic -monitor none -serial none -semihosting-config enable=on,target=native -kernel"
    "riscv32|riscv32imac-unknown-none-elf|qemu-system-riscv32 -M virt -nographic -monitor none -bios none -kernel"
)


for platform in "${platforms[@]}"; do
    IFS='|' read -r pname target runner <<<"$platform"
    dir="$target_dir/release"
    build=(cargo build --release -p stratalloc-bare-metal)
    if [ -n "$target" ]; then
        add_targets "$target"
        dir="$target_dir/$target/release"
        build+=(--target "$target")
    fi
    if ! "${build[@]}"; then
        ko "$pname: build"
        continue
    fi
    for pair in stratalloc-bare-metal:tlsf stratalloc-bare-metal-buddy:buddy; do
        bin="${pair%%:*}"
        strategy="${pair##*:}"
        exe="$dir/$bin"
        if [ ! -x "$exe" ]; then
            ko "$pname $bin: $exe not built"
            continue
        fi
        if [ -z "$target" ]; then
            dyn="$(readelf -d "$exe" 2>&1)"
            if grep -q NEEDED <<<"$dyn"; then
                ko "$bin: has NEEDED entries: $(grep NEEDED <<<"$dyn" | tr -s ' ')"
            else
                ok "$bin: no NEEDED entries"
            fi
            if readelf -l "$exe" | grep -q INTERP; then
                ko "$bin: asks for a program interpreter"
            else
                ok "$bin: no program interpreter"
            fi
            out="$("$exe" 2>&1)"
            rc=$?
        else
            # shellcheck disable=SC2086 # the runner is a command line
            out="$(timeout "$TIMEOUT" $runner "$exe" 2>&1)"
            rc=$?
        fi
        bin="$pname $bin"
        if [ "$rc" -eq 0 ]; then ok "$bin: exit code 0"; else ko "$bin: exit code $rc"; fi
        check_has() {
            if grep -qE -- "$1" <<<"$out"; then ok "$bin: output has $2"; else ko "$bin: output lacks $2"; fi
        }
        check_has "^stratalloc bare-metal demo: strategy $strategy," "the strategy name ($strategy)"
        check_has '^heap statistics \(after the workload' "the statistics with data held"
        check_has '^  in use +[1-9][0-9]*' "a non-zero in-use figure"
        check_has '^heap map: ' "the heap map header"
        rows=$(grep -cE '^  \|[#.: ]{64}\| 0x' <<<"$out")
        if [ "$rows" -ge 8 ]; then ok "$bin: heap map has $rows rows"; else ko "$bin: heap map has $rows rows"; fi
        if grep -E '^  \|[#.: ]{64}\| 0x' <<<"$out" | grep -q '#'; then
            ok "$bin: heap map shows used cells"
        else
            ko "$bin: heap map shows no used cells"
        fi
        check_has '^heap statistics \(after dropping everything' "the final statistics"
        check_has '^heap check: ok$' "a clean heap check"
        check_has '^result: ok$' "result: ok"
        check_has '^gc: [0-9]+ objects in [0-9]+ rings, [0-9]+ collections while building \([1-9][0-9]* automatic\)' "the collector's run with automatic collections"
        check_has '^gc: all roots dropped: [0-9]+ freed, heap in use 0, check ok$' "the collector's clean end"
        check_has '^gc result: ok$' "gc result: ok"
        if [ "$rc" -ne 0 ] || [ "${VERBOSE:-0}" = 1 ]; then
            echo "---- $bin output ----"
            echo "$out"
            echo "----"
        fi
    done
done

finish
