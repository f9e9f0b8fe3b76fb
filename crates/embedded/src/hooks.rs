//! What the kernel plugs in: the lock hooks, the write hook and the error
//! handler; and what happens on a fatal error (message, handler, halt).
//!
//! Every hook is a C function pointer kept in an atomic word (0: none), so a
//! hook can be set from C at any time without a lock. Set the lock hooks
//! before a second core or an interrupt handler uses the heap: a call that
//! is already inside the heap keeps the pair it started with.
//!
//! This module is also the only one that knows the CPU: [`halt`] is the
//! target's undefined-instruction trap.

use core::ffi::{c_char, c_void};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicUsize, Ordering};

/// `void write(const char *buf, size_t len)`: the kernel's console.
pub type WriteFn = unsafe extern "C" fn(buf: *const c_char, len: usize);
/// `void on_error(void *ptr, const char *msg)`: told the address and a
/// NUL-terminated message; should not return (if it does, the library halts).
pub type ErrorFn = unsafe extern "C" fn(ptr: *mut c_void, msg: *const c_char);
/// `uintptr_t lock(void *ctx)`: enter the heap (disable interrupts); the
/// value returned is handed back to the unlock hook (the saved state).
pub type LockFn = unsafe extern "C" fn(ctx: *mut c_void) -> usize;
/// `void unlock(void *ctx, uintptr_t saved)`: leave the heap.
pub type UnlockFn = unsafe extern "C" fn(ctx: *mut c_void, saved: usize);

static WRITE: AtomicUsize = AtomicUsize::new(0);
static ON_ERROR: AtomicUsize = AtomicUsize::new(0);
static LOCK: AtomicUsize = AtomicUsize::new(0);
static UNLOCK: AtomicUsize = AtomicUsize::new(0);
static LOCK_CTX: AtomicUsize = AtomicUsize::new(0);

/// Store an optional function pointer (`None` as 0).
fn store<F: Copy>(slot: &AtomicUsize, f: Option<F>) {
    const { assert!(core::mem::size_of::<F>() == core::mem::size_of::<usize>()) };
    // SAFETY: `F` is a function pointer type (every caller passes one of the
    // `*Fn` types above), which has the size of `usize` (asserted).
    let v = f.map_or(0, |f| unsafe { core::mem::transmute_copy::<F, usize>(&f) });
    slot.store(v, Ordering::Release);
}

/// Load an optional function pointer stored by [`store`] with the same `F`.
fn load<F: Copy>(slot: &AtomicUsize) -> Option<F> {
    let v = slot.load(Ordering::Acquire);
    // SAFETY: a non-zero value was stored by `store` from an `F` (each slot
    // holds one type only), and function pointers round-trip through `usize`.
    (v != 0).then(|| unsafe { core::mem::transmute_copy::<usize, F>(&v) })
}

pub fn set_write(f: Option<WriteFn>) {
    store(&WRITE, f);
}

pub fn set_error_handler(f: Option<ErrorFn>) {
    store(&ON_ERROR, f);
}

/// Set both lock hooks (both `Some`) or neither (both `None`); `false`, and
/// nothing changed, for one without the other.
pub fn set_lock(lock: Option<LockFn>, unlock: Option<UnlockFn>, ctx: *mut c_void) -> bool {
    if lock.is_some() != unlock.is_some() {
        return false;
    }
    // Disable first so no call can see a new lock with an old unlock.
    store::<LockFn>(&LOCK, None);
    LOCK_CTX.store(ctx as usize, Ordering::Release);
    store(&UNLOCK, unlock);
    store(&LOCK, lock);
    true
}

/// The kernel's lock hooks around one heap call: entered on creation, left
/// on drop, with the pair (and context) loaded on entry.
pub struct HookGuard {
    exit: Option<(UnlockFn, *mut c_void, usize)>,
}

impl HookGuard {
    pub fn enter() -> Self {
        let Some(lock) = load::<LockFn>(&LOCK) else {
            return HookGuard { exit: None };
        };
        let unlock = load::<UnlockFn>(&UNLOCK);
        let ctx = LOCK_CTX.load(Ordering::Acquire) as *mut c_void;
        // SAFETY: a hook the kernel installed with `heap_set_lock_hooks`,
        // called with the context it gave.
        let saved = unsafe { lock(ctx) };
        HookGuard {
            exit: unlock.map(|u| (u, ctx, saved)),
        }
    }
}

impl Drop for HookGuard {
    fn drop(&mut self) {
        if let Some((unlock, ctx, saved)) = self.exit {
            // SAFETY: the kernel's unlock hook, paired with the lock hook
            // this guard called, with that call's saved state.
            unsafe { unlock(ctx, saved) }
        }
    }
}

/// A message formatted into a stack buffer, NUL-terminated, truncated to fit
/// (no allocation).
pub struct Msg {
    buf: [u8; 160],
    len: usize,
}

impl Msg {
    pub fn new(args: fmt::Arguments<'_>) -> Self {
        let mut m = Msg {
            buf: [0; 160],
            len: 0,
        };
        // Truncation is the only error, and a truncated message is fine.
        let _ = m.write_fmt(args);
        m
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The message as a C string (the byte after it is always 0).
    pub fn as_c_str(&self) -> *const c_char {
        self.buf.as_ptr().cast()
    }
}

impl Write for Msg {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Keep the last byte for the NUL.
        let room = self.buf.len() - 1 - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() {
            Err(fmt::Error)
        } else {
            Ok(())
        }
    }
}

/// Write `bytes` through the kernel's write hook, if it set one.
pub fn write(bytes: &[u8]) {
    if let Some(w) = load::<WriteFn>(&WRITE) {
        // SAFETY: the kernel's write hook, given a live buffer and its length.
        unsafe { w(bytes.as_ptr().cast(), bytes.len()) }
    }
}

/// A fatal error at `addr`: the kernel's error handler if it set one,
/// otherwise the message (and a newline) through the write hook; then
/// [`halt`].
#[cold]
#[inline(never)]
pub fn fatal(addr: usize, args: fmt::Arguments<'_>) -> ! {
    let msg = Msg::new(args);
    match load::<ErrorFn>(&ON_ERROR) {
        // SAFETY: the kernel's handler, given a NUL-terminated message that
        // lives on this stack frame for the whole call.
        Some(h) => unsafe { h(addr as *mut c_void, msg.as_c_str()) },
        None => {
            write(msg.as_bytes());
            write(b"\n");
        }
    }
    halt()
}

/// Damage the core heaps found (`stratalloc_core::corruption::report`).
pub fn corruption(addr: usize, what: &'static str) -> ! {
    fatal(
        addr,
        format_args!("stratalloc: heap corruption at {addr:#x}: {what}"),
    )
}

/// Stop: the CPU's undefined-instruction trap, so the kernel's fault handler
/// (or a debugger) sees where; spin if the trap handler returns.
pub fn halt() -> ! {
    loop {
        // SAFETY: an undefined instruction traps; it touches no memory.
        #[cfg(any(target_arch = "arm", target_arch = "aarch64"))]
        unsafe {
            core::arch::asm!("udf #0", options(nomem, nostack))
        };
        // SAFETY: as above.
        #[cfg(any(target_arch = "riscv32", target_arch = "riscv64"))]
        unsafe {
            core::arch::asm!("unimp", options(nomem, nostack))
        };
        // SAFETY: as above.
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        unsafe {
            core::arch::asm!("ud2", options(nomem, nostack))
        };
        core::hint::spin_loop();
    }
}

/// A panic cannot happen on the paths the C API takes (every error is a
/// return value or [`fatal`]); if one does, it is fatal too.
#[cfg(not(test))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    fatal(0, format_args!("stratalloc: panic: {info}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_truncated_and_nul_terminated() {
        let m = Msg::new(format_args!("at {:#x}: {}", 0x20001000usize, "double free"));
        assert_eq!(m.as_bytes(), b"at 0x20001000: double free");
        // SAFETY: `as_c_str` points at the message and its NUL.
        assert_eq!(unsafe { *m.as_c_str().add(m.as_bytes().len()) }, 0);
        let long = Msg::new(format_args!("{:200}", "x"));
        assert_eq!(long.as_bytes().len(), 159);
        assert_eq!(long.buf[159], 0);
    }
}
