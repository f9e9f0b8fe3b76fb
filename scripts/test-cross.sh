#!/usr/bin/env bash
# The region heaps beyond x86_64:
# 1. build stratalloc-core and stratalloc-gc (no default features), and the
#    C library libstratalloc_embedded.a, for every bare-metal target:
#    thumbv7m-none-eabi, thumbv7em-none-eabihf, riscv32imac-unknown-none-elf,
#    aarch64-unknown-none;
# 2. run the core and gc test suites (unit, conformance, property, corruption,
#    doc tests) on 32-bit ARM Linux and AArch64 Linux under qemu-user, with
#    the cross gcc as linker (scripts/cross-env.sh).
# Adds the rustup targets it needs. Prints "N passed, M failed"; exits
# non-zero on any failure.
#
#   scripts/test-cross.sh                    # everything
#   scripts/test-cross.sh --build-only       # step 1 only
#   PROPTEST_CASES=64 scripts/test-cross.sh  # fewer property-test cases
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/cross-env.sh
. scripts/tally.sh

build_only=0
[ "${1:-}" = "--build-only" ] && build_only=1

step() {
    local name=$1
    shift
    local t0=$SECONDS
    if "$@" >"$log" 2>&1; then
        ok "$name ($((SECONDS - t0)) s)"
    else
        ko "$name ($((SECONDS - t0)) s)"
        tail -40 "$log"
    fi
}
log=$(mktemp /tmp/stratalloc-test-cross.XXXXXX)
trap 'rm -f "$log"' EXIT

if [ $build_only = 1 ]; then
    add_targets "${BARE_TARGETS[@]}"
else
    add_targets "${BARE_TARGETS[@]}" "${LINUX_TARGETS[@]}"
fi

for t in "${BARE_TARGETS[@]}"; do
    step "build core, gc, embedded: $t" \
        cargo build --release --target "$t" -p stratalloc-core -p stratalloc-gc -p stratalloc-embedded --no-default-features
done

if [ $build_only = 0 ]; then
    for t in "${LINUX_TARGETS[@]}"; do
        step "test core, gc: $t (qemu-user)" \
            cargo test --release --target "$t" -p stratalloc-core -p stratalloc-gc --no-fail-fast
    done
fi

finish
