//! x86_64 Linux with no libc and no crt: an entry point, two system calls,
//! and the C memory primitives.
//!
//! ```text
//!   kernel execve ──> _start (naked)          rsp = &argc, 16-aligned
//!                       xor ebp, ebp          (end of frame-pointer chain)
//!                       and rsp, -16          (belt and braces)
//!                       call rust_start  ──>  crate::entry() -> i32
//!                                             exit_group(code)
//! ```
//!
//! The System V ABI wants `rsp + 8` to be 16-aligned at a function's first
//! instruction, i.e. `rsp` 16-aligned just before the `call`. The kernel
//! hands `_start` a 16-aligned `rsp` with no return address pushed, so a
//! plain `extern "C" fn _start` would run with a misaligned stack (and SSE
//! spills would fault). The naked entry aligns and then *calls*.

use core::arch::{asm, naked_asm};

const SYS_WRITE: usize = 1;
const SYS_EXIT_GROUP: usize = 231;
const EINTR: isize = 4;

/// The process entry point the linker looks for (`-nostartfiles`).
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub extern "C" fn _start() -> ! {
    naked_asm!(
        "xor ebp, ebp",
        "mov rdi, rsp",
        "and rsp, -16",
        "call {start}",
        "ud2",
        start = sym rust_start,
    )
}

/// Called by `_start` with the initial stack pointer (argc, argv, envp
/// follow it; the demo needs none of them).
extern "C" fn rust_start(_initial_sp: *const usize) -> ! {
    let code = crate::entry();
    exit(code)
}

/// `write(2)` on `fd`, retried on EINTR and short writes. Errors are dropped:
/// there is nowhere to report them.
pub fn write_all(fd: usize, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        let ret: isize;
        // SAFETY: `write` reads `bytes.len()` bytes from a live slice; the
        // syscall clobbers rcx and r11 only, as declared.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") SYS_WRITE as isize => ret,
                in("rdi") fd,
                in("rsi") bytes.as_ptr(),
                in("rdx") bytes.len(),
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack, readonly),
            );
        }
        if ret == -EINTR {
            continue;
        }
        if ret <= 0 {
            return;
        }
        bytes = &bytes[ret as usize..];
    }
}

/// `exit_group(2)`: end the process with `code`.
pub fn exit(code: i32) -> ! {
    // SAFETY: exit_group does not return; it touches no memory of ours.
    unsafe {
        asm!(
            "syscall",
            in("rax") SYS_EXIT_GROUP,
            in("rdi") code as isize,
            options(noreturn, nostack),
        );
    }
}

// ---------------------------------------------------------------------------
// The C memory primitives the compiler emits calls to. With no libc someone
// must define them; `compiler_builtins` does not export them on this target.
// They are written with `rep movsb` / `rep stosb` so the optimiser cannot turn
// them back into calls to themselves.

/// `memcpy`: copy `n` bytes; the spans do not overlap.
///
/// # Safety
/// `dst` valid for `n` writes, `src` for `n` reads, no overlap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: per the contract; rep movsb copies forwards (DF is clear by
    // the ABI) and touches exactly `n` bytes of each span.
    unsafe {
        asm!(
            "rep movsb",
            inout("rcx") n => _,
            inout("rdi") dst => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags),
        );
    }
    dst
}

/// `memmove`: copy `n` bytes; the spans may overlap.
///
/// # Safety
/// `dst` valid for `n` writes, `src` for `n` reads.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize).wrapping_sub(src as usize) >= n {
        // dst is below src, or past its end: a forward copy is safe.
        // SAFETY: forwarded; forward copy reads each byte before it is overwritten.
        return unsafe { memcpy(dst, src, n) };
    }
    if n == 0 {
        return dst;
    }
    // dst overlaps the tail of src: copy backwards, from the last byte.
    // SAFETY: per the contract; DF is set only for this instruction and
    // cleared again before returning, as the ABI requires.
    unsafe {
        asm!(
            "std",
            "rep movsb",
            "cld",
            inout("rcx") n => _,
            inout("rdi") dst.add(n - 1) => _,
            inout("rsi") src.add(n - 1) => _,
            options(nostack),
        );
    }
    dst
}

/// `memset`: fill `n` bytes with the low byte of `c`.
///
/// # Safety
/// `dst` valid for `n` writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: per the contract; rep stosb writes exactly `n` bytes forwards.
    unsafe {
        asm!(
            "rep stosb",
            inout("rcx") n => _,
            inout("rdi") dst => _,
            in("al") c as u8,
            options(nostack, preserves_flags),
        );
    }
    dst
}

/// `memcmp`: compare `n` bytes as unsigned chars.
///
/// # Safety
/// `a` and `b` valid for `n` reads.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: i < n, inside both spans.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return x as i32 - y as i32;
        }
        i += 1;
    }
    0
}

/// `bcmp`: zero if the `n` bytes are equal.
///
/// # Safety
/// `a` and `b` valid for `n` reads.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: forwarded.
    unsafe { memcmp(a, b, n) }
}

/// The precompiled `alloc` crate was built for unwinding and names this
/// symbol in its unwind tables; with `panic = "abort"` nothing ever calls
/// it. Defining it keeps the link closed without a libgcc.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}
