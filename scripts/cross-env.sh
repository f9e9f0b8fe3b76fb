# Sourced by the cross scripts (test-cross.sh, test-embedded.sh,
# test-bare-metal.sh, test-aarch64-lib.sh): the targets we build for, and how
# cargo links and runs the Linux ones (cross gcc as the linker, qemu-user as
# the runner).
# CARGO_TARGET_<TRIPLE>_{LINKER,RUNNER} already set in the environment win.

# Bare-metal targets: Cortex-M3, Cortex-M4F, RISC-V 32 (IMAC), AArch64.
BARE_TARGETS=(thumbv7m-none-eabi thumbv7em-none-eabihf riscv32imac-unknown-none-elf aarch64-unknown-none)
# Linux targets whose test suites run under qemu-user.
LINUX_TARGETS=(armv7-unknown-linux-gnueabihf aarch64-unknown-linux-gnu)

: "${CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER:=arm-linux-gnueabihf-gcc}"
: "${CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER:=qemu-arm -L /usr/arm-linux-gnueabihf}"
: "${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER:=aarch64-linux-gnu-gcc}"
: "${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER:=qemu-aarch64 -L /usr/aarch64-linux-gnu}"
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER

# Add the rust-std of each target given that is not installed yet.
add_targets() {
    command -v rustup >/dev/null || return 0
    local have missing=() t
    have=$(rustup target list --installed)
    for t in "$@"; do
        grep -qx "$t" <<<"$have" || missing+=("$t")
    done
    [ ${#missing[@]} -eq 0 ] || rustup target add "${missing[@]}"
}
