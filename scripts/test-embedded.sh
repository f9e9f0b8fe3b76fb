#!/usr/bin/env bash
# The C library libstratalloc_embedded.a as kernels use it, on the host and
# on a Cortex-M3 under QEMU system emulation (semihosting for output and exit status):
#   c-host        crates/embedded/demo/heap_test.c linked with the host build
#                 of libstratalloc_embedded.a (gcc), run natively
#   c-cortex-m3   the C kernel crates/embedded/demo/cortex-m3 (own vector
#                 table and linker script) linked with the thumbv7m-none-eabi
#                 build, on qemu-system-arm -M mps2-an385
# Each runs twice: with the kernel's error handler (a double free at the end
# must reach it, exit 0) and with the default one (message, then the trap:
# SIGILL on the host, a UsageFault -> HardFault reported by the kernel, exit 3).
# Adds the rustup targets it needs. Prints "N passed, M failed"; exits
# non-zero on any failure. TEST_TIMEOUT (s, default 120) bounds each run.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/cross-env.sh
. scripts/tally.sh
TIMEOUT=${TEST_TIMEOUT:-120}
TARGET_DIR=${CARGO_TARGET_DIR:-target}

tmp=$(mktemp -d /tmp/stratalloc-test-embedded.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# run NAME WANT_STATUS CMD...: run with a timeout, output in $tmp/NAME.out.
run() {
    local name=$1 want=$2
    shift 2
    # (The subshell keeps bash's "Illegal instruction" note out of the log.)
    (timeout "$TIMEOUT" "$@" >"$tmp/$name.out" 2>&1; exit $?) 2>/dev/null
    local rc=$?
    if [ "$rc" -eq "$want" ]; then
        ok "$name: exit status $rc"
    else
        ko "$name: exit status $rc, want $want"
        tail -30 "$tmp/$name.out"
    fi
}
# has NAME REGEX WHAT: the output of NAME matches REGEX.
has() {
    if grep -qE -- "$2" "$tmp/$1.out"; then ok "$1: $3"; else ko "$1: no $3"; fi
}
hasnt() {
    if grep -qE -- "$2" "$tmp/$1.out"; then ko "$1: $3"; grep -E -- "$2" "$tmp/$1.out" | head -5; else ok "$1: no $3"; fi
}
# The checks of heap_test.c's output.
check_heap_test() {
    local name=$1 s
    has "$name" '^hello from the heap$' "the seed's alloc/use/free"
    for s in bump first-fit next-fit best-fit worst-fit segregated tlsf buddy slab; do
        if grep -A4 -x "strategy $s" "$tmp/$name.out" | grep -qE '^  4000 operations, [0-9]+ refused for lack of memory, all freed, check ok$'; then
            ok "$name: $s: 4000 random operations, fill bytes and heap_check clean"
        else
            ko "$name: $s did not finish cleanly"
        fi
    done
    has "$name" '^  \|[#.: ]{64}\|$' "heap map"
    has "$name" '^heap test: ok$' "heap test: ok"
    hasnt "$name" '^FAIL' "FAIL lines"
}

inc=crates/embedded/include
demo=crates/embedded/demo

# ---- on the host
if cargo build --release -p stratalloc-embedded >"$tmp/build-host.log" 2>&1 &&
    cc -O1 -g -std=c11 -Wall -Wextra -Werror -I"$inc" -o "$tmp/heap_test" \
        "$demo/host/main.c" "$demo/heap_test.c" "$TARGET_DIR/release/libstratalloc_embedded.a" \
        -Wl,--gc-sections 2>"$tmp/cc-host.log"; then
    ok "c-host: build"
    run c-host 0 "$tmp/heap_test"
    check_heap_test c-host
    has c-host '^error handler: the double free of 0x[0-9a-f]+ was reported$' "the double free reported to the handler"
    run c-host-default 132 "$tmp/heap_test" default
    has c-host-default '^stratalloc: heap_free: double free: 0x[0-9a-f]+$' "the default handler's message"
else
    ko "c-host: build"
    cat "$tmp/build-host.log" "$tmp/cc-host.log" | tail -30
fi

# ---- Cortex-M3 (mps2-an385)
add_targets thumbv7m-none-eabi
lib=$TARGET_DIR/thumbv7m-none-eabi/release/libstratalloc_embedded.a
cflags=(-mcpu=cortex-m3 -mthumb -O2 -g -std=c11 -Wall -Wextra -Werror -ffreestanding -nostdlib
    -I"$inc" -T "$demo/cortex-m3/link.ld" -Wl,--gc-sections -Wl,-z,noexecstack)
qemu_m3=(qemu-system-arm -M mps2-an385 -nographic -monitor none -serial none
    -semihosting-config enable=on,target=native -kernel)
if cargo build --release -p stratalloc-embedded --target thumbv7m-none-eabi >"$tmp/build-m3.log" 2>&1 &&
    arm-none-eabi-gcc "${cflags[@]}" -o "$tmp/kernel.elf" "$demo/cortex-m3/kernel.c" "$demo/heap_test.c" "$lib" -lgcc 2>"$tmp/cc-m3.log" &&
    arm-none-eabi-gcc "${cflags[@]}" -DDEFAULT_HANDLER -o "$tmp/kernel-default.elf" "$demo/cortex-m3/kernel.c" "$demo/heap_test.c" "$lib" -lgcc 2>>"$tmp/cc-m3.log"; then
    ok "c-cortex-m3: build"
    run c-cortex-m3 0 "${qemu_m3[@]}" "$tmp/kernel.elf"
    has c-cortex-m3 '^heap: 0x20[0-9a-f]+, [0-9]+ bytes$' "a heap from the linker symbols"
    check_heap_test c-cortex-m3
    has c-cortex-m3 '^error handler: the double free of 0x[0-9a-f]+ was reported$' "the double free reported to the handler"
    run c-cortex-m3-default 3 "${qemu_m3[@]}" "$tmp/kernel-default.elf"
    has c-cortex-m3-default '^stratalloc: heap_free: double free: 0x[0-9a-f]+$' "the default handler's message"
    has c-cortex-m3-default '^kernel: hard fault, .*\(undefined instruction\)$' "the halt (udf -> HardFault)"
else
    ko "c-cortex-m3: build"
    cat "$tmp/build-m3.log" "$tmp/cc-m3.log" | tail -30
fi

finish
