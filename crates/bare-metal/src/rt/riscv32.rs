//! RISC-V 32 with no OS (QEMU `virt`, `-bios none`): `_start` parks every
//! hart but 0, sets the stack and the trap vector and zeroes `.bss` before
//! any Rust runs; output through the 16550 UART, exit status through the
//! SiFive test device.
//!
//! ```text
//!   0x8000_0000 _start: hart 0 only; sp = __stack_top; mtvec = trap_entry
//!               zero .bss   (assembly)
//!               rust_main ──> crate::entry() -> i32 ──> exit(code) (test device)
//! ```

use core::arch::{asm, global_asm};

/// The 16550 UART: transmit holding register, and line status register.
const UART_THR: *mut u8 = 0x1000_0000 as *mut u8;
const UART_LSR: *const u8 = 0x1000_0005 as *const u8;
const LSR_THR_EMPTY: u8 = 0x20;
/// The SiFive test device: 0x5555 ends the emulation with status 0,
/// `code << 16 | 0x3333` with status `code`.
const TEST_DEVICE: *mut u32 = 0x10_0000 as *mut u32;

global_asm!(
    ".section .text.init, \"ax\"",
    ".global _start",
    "_start:",
    "    csrr t0, mhartid",
    "    bnez t0, 3f",
    "    la sp, __stack_top",
    "    la t0, trap_entry",
    "    csrw mtvec, t0",
    "    la t0, __bss_start",
    "    la t1, __bss_end",
    "1:  bgeu t0, t1, 2f",
    "    sw zero, 0(t0)",
    "    addi t0, t0, 4",
    "    j 1b",
    "2:  call {main}",
    "3:  wfi",
    "    j 3b",
    // mtvec needs a 4-byte-aligned address.
    ".align 2",
    "trap_entry:",
    "    j {trap}",
    main = sym rust_main,
    trap = sym trap,
);

extern "C" fn rust_main() -> ! {
    exit(crate::entry())
}

/// Any trap ends the run: name it, exit 3.
extern "C" fn trap() -> ! {
    let (cause, pc): (usize, usize);
    // SAFETY: reading two machine-mode CSRs.
    unsafe { asm!("csrr {0}, mcause", "csrr {1}, mepc", out(reg) cause, out(reg) pc) };
    crate::outln!("bare-metal demo: trap, mcause {cause:#x} at {pc:#x}");
    exit(3)
}

/// Write `bytes` to the UART (the one console; `fd` is ignored).
pub fn write_all(_fd: usize, bytes: &[u8]) {
    for &b in bytes {
        // SAFETY: the UART's registers on the `virt` board; polling the line
        // status register before each byte.
        unsafe {
            while UART_LSR.read_volatile() & LSR_THR_EMPTY == 0 {}
            UART_THR.write_volatile(b);
        }
    }
}

/// End the emulation with exit status `code`.
pub fn exit(code: i32) -> ! {
    let v = if code == 0 {
        0x5555
    } else {
        (code as u32) << 16 | 0x3333
    };
    // SAFETY: the test device's register on the `virt` board.
    unsafe { TEST_DEVICE.write_volatile(v) };
    loop {
        core::hint::spin_loop();
    }
}
