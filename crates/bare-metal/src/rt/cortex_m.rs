//! Cortex-M3 with no OS (QEMU `mps2-an385`): a vector table, a reset handler
//! that copies `.data` and zeroes `.bss` before any Rust runs, a fault
//! handler, and Arm semihosting (`bkpt 0xab`) for output and exit status.
//!
//! ```text
//!   reset: SP = vectors[0] (__stack_top), PC = vectors[1] = reset_handler
//!          copy .data (flash -> RAM), zero .bss   (assembly)
//!          rust_main ──> crate::entry() -> i32 ──> exit(code) (SYS_EXIT_EXTENDED)
//! ```

use core::arch::{asm, global_asm};

const SYS_WRITE0: usize = 0x04;
const SYS_EXIT_EXTENDED: usize = 0x20;
const ADP_STOPPED_APPLICATION_EXIT: usize = 0x20026;

extern "C" {
    static __stack_top: u8;
    fn reset_handler() -> !;
}

type Handler = unsafe extern "C" fn() -> !;

/// The initial stack pointer, then the exception handlers (0: reserved).
#[repr(C)]
struct Vectors {
    stack_top: *const u8,
    handlers: [Option<Handler>; 15],
}

// SAFETY: read-only data the CPU reads on reset and on exceptions.
unsafe impl Sync for Vectors {}

#[link_section = ".vectors"]
#[used]
static VECTORS: Vectors = Vectors {
    stack_top: &raw const __stack_top,
    handlers: {
        let f: Option<Handler> = Some(fault);
        let mut h = [f; 15];
        // handlers[v - 1] is vector v; vectors 7..=10 and 13 are reserved.
        h[6] = None;
        h[7] = None;
        h[8] = None;
        h[9] = None;
        h[12] = None;
        h[0] = Some(reset_handler);
        h
    },
};

// No Rust runs before `.data` and `.bss` hold their initial values.
global_asm!(
    ".section .text.reset_handler, \"ax\"",
    ".global reset_handler",
    ".type reset_handler, %function",
    ".thumb_func",
    "reset_handler:",
    "    ldr r0, =__data_start",
    "    ldr r1, =__data_end",
    "    ldr r2, =__data_load",
    "1:  cmp r0, r1",
    "    bhs 2f",
    "    ldr r3, [r2], #4",
    "    str r3, [r0], #4",
    "    b 1b",
    "2:  ldr r0, =__bss_start",
    "    ldr r1, =__bss_end",
    "    movs r2, #0",
    "3:  cmp r0, r1",
    "    bhs 4f",
    "    str r2, [r0], #4",
    "    b 3b",
    "4:  bl {main}",
    "    udf #0",
    ".ltorg",
    main = sym rust_main,
);

extern "C" fn rust_main() -> ! {
    exit(crate::entry())
}

/// Every other exception ends the run: name it, exit 3.
unsafe extern "C" fn fault() -> ! {
    const CFSR: *const u32 = 0xE000_ED28 as *const u32;
    // SAFETY: the System Control Block's fault status register, always
    // readable on a Cortex-M3.
    let cfsr = unsafe { CFSR.read_volatile() };
    crate::outln!("bare-metal demo: CPU fault, CFSR {cfsr:#010x}");
    exit(3)
}

/// One semihosting call: operation `op`, argument block `arg`.
///
/// # Safety
/// `arg` is what operation `op` expects.
unsafe fn semihost(op: usize, arg: *const u8) -> usize {
    let ret;
    // SAFETY: `bkpt 0xab` is the semihosting trap; the debugger (QEMU)
    // reads `arg` as `op` defines and writes only r0.
    unsafe { asm!("bkpt 0xab", inout("r0") op => ret, in("r1") arg, options(nostack)) };
    ret
}

/// Write `bytes` to the host's console (semihosting has one; `fd` is
/// ignored), in NUL-terminated chunks.
pub fn write_all(_fd: usize, bytes: &[u8]) {
    let mut chunk = [0u8; 129];
    for part in bytes.chunks(128) {
        chunk[..part.len()].copy_from_slice(part);
        chunk[part.len()] = 0;
        // SAFETY: SYS_WRITE0 reads a NUL-terminated string: `chunk` is one.
        unsafe { semihost(SYS_WRITE0, chunk.as_ptr()) };
    }
}

/// End the emulation with exit status `code`.
pub fn exit(code: i32) -> ! {
    let block = [ADP_STOPPED_APPLICATION_EXIT, code as usize];
    // SAFETY: SYS_EXIT_EXTENDED reads the two-word block.
    unsafe { semihost(SYS_EXIT_EXTENDED, block.as_ptr().cast()) };
    loop {
        core::hint::spin_loop();
    }
}
