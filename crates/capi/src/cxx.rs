//! The C++ allocation functions (`operator new` / `operator delete`), under
//! their Itanium-ABI mangled names, so C++ programs allocate through the
//! selected backend directly and sized deletes are checked.
//!
//! | C++ | symbols |
//! |---|---|
//! | `new(size_t)`, `new[](size_t)` | `_Znwm`, `_Znam` |
//! | `new(size_t, nothrow_t)` (and `[]`) | `_ZnwmRKSt9nothrow_t`, `_ZnamRKSt9nothrow_t` |
//! | `new(size_t, align_val_t)` (and `[]`) | `_ZnwmSt11align_val_t`, `_ZnamSt11align_val_t` |
//! | `new(size_t, align_val_t, nothrow_t)` (and `[]`) | `_ZnwmSt11align_val_tRKSt9nothrow_t`, `_ZnamSt11align_val_tRKSt9nothrow_t` |
//! | `delete(void *)` (and `[]`) | `_ZdlPv`, `_ZdaPv` |
//! | `delete(void *, size_t)` (and `[]`) | `_ZdlPvm`, `_ZdaPvm` |
//! | `delete(void *, nothrow_t)` (and `[]`) | `_ZdlPvRKSt9nothrow_t`, `_ZdaPvRKSt9nothrow_t` |
//! | `delete(void *, align_val_t)` (and `[]`) | `_ZdlPvSt11align_val_t`, `_ZdaPvSt11align_val_t` |
//! | `delete(void *, size_t, align_val_t)` (and `[]`) | `_ZdlPvmSt11align_val_t`, `_ZdaPvmSt11align_val_t` |
//! | `delete(void *, align_val_t, nothrow_t)` (and `[]`) | `_ZdlPvSt11align_val_tRKSt9nothrow_t`, `_ZdaPvSt11align_val_tRKSt9nothrow_t` |
//!
//! `size_t` mangles as `m` (`unsigned long`) on LP64 Linux only, hence the
//! `cfg` on this module.
//!
//! ## What happens when memory runs out
//!
//! The standard's loop, done without linking a C++ runtime:
//!
//! 1. Allocate; on success return the block.
//! 2. Look up `std::get_new_handler` (`_ZSt15get_new_handlerv`) in the
//!    process with `dlsym` (it is there when the program uses libstdc++).
//!    If it returns a handler, call it and go back to 1. (A handler that
//!    returns has made memory available, says the standard; one that never
//!    does loops here as it would in libstdc++.)
//! 3. With no handler, the throwing forms throw `std::bad_alloc` by calling
//!    the process's `std::__throw_bad_alloc` (`_ZSt17__throw_bad_allocv`),
//!    and the `nothrow` forms return null.
//!
//! A C++ exception cannot unwind through a Rust frame of a library built
//! with `panic = "abort"` (Rust aborts the process), so on x86_64 the
//! throwing forms are small assembly functions (naked, with unwind info):
//! they call Rust for an attempt and for the next step (the handler or
//! `__throw_bad_alloc`), and make that call themselves, so an exception
//! from the handler or the throw passes through assembly frames only and
//! reaches the caller's `catch`, as with libstdc++'s own `operator new`.
//!
//! What differs from libstdc++:
//!
//! - On other architectures, and on x86_64 in a process without
//!   `_ZSt17__throw_bad_allocv` (libstdc++ exports it; a program on another
//!   C++ runtime may not), a throwing form with no handler prints
//!   `stratalloc: operator new(N, align A): out of memory ...` and aborts.
//!   On other architectures a handler that throws ends the process: the
//!   exception reaches a Rust frame, and Rust prints "panic in a function
//!   that cannot unwind" and aborts.
//! - A `nothrow` form whose handler throws ends the process the same way
//!   (libstdc++ catches the exception and returns null; catching needs a
//!   C++ personality routine, which this library does not have).
//!
//! An aligned form with an alignment that is not a power of two (undefined
//! behaviour in C++) fails at once, without calling the handler, as in
//! libstdc++.
//!
//! ## Sized deletes
//!
//! A size larger than the block's usable size cannot be the size it was
//! allocated with (a `delete` through a pointer of the wrong, larger type):
//! the process aborts with a message naming the pointer and both sizes.
//! A smaller wrong size cannot be told from slack in the block and passes.
//! The aligned forms also check that the pointer has the alignment.

use core::ffi::{c_char, c_void};
use core::ptr;

use crate::{alloc, engine, free_checked, free_impl, MIN_ALIGN};

/// `std::nothrow_t` (an empty struct, passed by reference).
#[repr(C)]
pub struct NoThrow {
    _private: [u8; 0],
}

/// A C++ new handler, or `std::__throw_bad_alloc`: `"C-unwind"`, both may
/// throw. Called from Rust, an exception then ends the process; called from
/// the assembly of [`throwing`], it reaches the caller.
type NewHandler = unsafe extern "C-unwind" fn();

/// A function of the process's C++ runtime by its mangled name
/// (NUL-terminated), or null.
fn cxx_runtime(name: &[u8]) -> *mut c_void {
    debug_assert_eq!(name.last(), Some(&0));
    // SAFETY: a NUL-terminated name; RTLD_DEFAULT searches the whole
    // process. dlsym may allocate: we hold no allocator lock here.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr().cast::<c_char>()) }
}

/// `std::get_new_handler()`, looked up in the process; `None` when absent
/// or when no handler is installed.
#[cold]
fn new_handler() -> Option<NewHandler> {
    let f = cxx_runtime(b"_ZSt15get_new_handlerv\0");
    if f.is_null() {
        return None;
    }
    // SAFETY: `std::get_new_handler` is `new_handler get_new_handler()
    // noexcept`: no arguments, returns a function pointer (or null).
    let get: unsafe extern "C" fn() -> *mut c_void = unsafe { core::mem::transmute(f) };
    // SAFETY: as above.
    let h = unsafe { get() };
    if h.is_null() {
        None
    } else {
        // SAFETY: a non-null `std::new_handler`, `void (*)()`.
        Some(unsafe { core::mem::transmute::<*mut c_void, NewHandler>(h) })
    }
}

/// One allocation attempt of an `operator new`: null on failure (and for
/// an alignment that is not a power of two).
#[inline(always)]
fn attempt(size: usize, align: usize) -> *mut c_void {
    if align.is_power_of_two() {
        alloc(size, align.max(MIN_ALIGN)).cast()
    } else {
        ptr::null_mut()
    }
}

/// The `operator new` that cannot throw: out of memory with no new
/// handler left, print and abort.
#[cold]
#[inline(never)]
fn out_of_memory(size: usize, align: usize) -> ! {
    engine::fatal!(
        "operator new({size}, align {align}): out of memory and no new handler \
         (std::bad_alloc cannot be thrown without the C++ runtime)"
    )
}

/// The standard's loop (module docs) in Rust: allocate, else call the new
/// handler and retry; null when there is no handler.
#[cold]
#[inline(never)]
fn new_slow(size: usize, align: usize) -> *mut c_void {
    if align.is_power_of_two() {
        loop {
            let p = attempt(size, align);
            if !p.is_null() {
                return p;
            }
            match new_handler() {
                // SAFETY: the program's own handler, called as the C++
                // runtime would; an exception from it aborts (module docs).
                Some(h) => unsafe { h() },
                None => break,
            }
        }
    }
    ptr::null_mut()
}

/// A `nothrow` `operator new`: the block or null.
#[inline(always)]
fn new_nothrow(size: usize, align: usize) -> *mut c_void {
    let p = attempt(size, align);
    if !p.is_null() {
        return p;
    }
    new_slow(size, align)
}

/// A throwing `operator new` where [`throwing`] does not exist: aborts
/// where the C++ runtime would throw.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn new_or_abort(size: usize, align: usize) -> *mut c_void {
    let p = new_nothrow(size, align);
    if p.is_null() {
        out_of_memory(size, align)
    }
    p
}

/// The throwing forms on x86_64: assembly that can be unwound through.
#[cfg(target_arch = "x86_64")]
mod throwing {
    use super::{attempt, cxx_runtime, new_handler, out_of_memory, NewHandler, MIN_ALIGN};
    use core::arch::naked_asm;
    use core::ffi::c_void;

    /// One attempt, for the assembly loop.
    extern "C" fn try_new(size: usize, align: usize) -> *mut c_void {
        attempt(size, align)
    }

    /// After a failed attempt, the function [`new_loop`] calls next: the new
    /// handler (then it retries), else `std::__throw_bad_alloc` (which does
    /// not return); aborts if there is neither.
    #[cold]
    extern "C" fn next_step(size: usize, align: usize) -> NewHandler {
        if align.is_power_of_two() {
            if let Some(h) = new_handler() {
                return h;
            }
        }
        let t = cxx_runtime(b"_ZSt17__throw_bad_allocv\0");
        if t.is_null() {
            out_of_memory(size, align)
        }
        // SAFETY: `void std::__throw_bad_alloc()`: no arguments, throws.
        unsafe { core::mem::transmute::<*mut c_void, NewHandler>(t) }
    }

    /// `new_loop(size, align)`: `try_new` until it succeeds, calling what
    /// `next_step` returns after each failure. The unwind info (`.cfi_*`)
    /// lets an exception thrown by that call pass through to our caller.
    #[unsafe(naked)]
    unsafe extern "C" fn new_loop(size: usize, align: usize) -> *mut c_void {
        naked_asm!(
            ".cfi_startproc",
            "push rbx",
            ".cfi_adjust_cfa_offset 8",
            ".cfi_offset rbx, -16",
            "push r12",
            ".cfi_adjust_cfa_offset 8",
            ".cfi_offset r12, -24",
            // 16-byte stack alignment at each call.
            "sub rsp, 8",
            ".cfi_adjust_cfa_offset 8",
            "mov rbx, rdi",
            "mov r12, rsi",
            "2:",
            "mov rdi, rbx",
            "mov rsi, r12",
            "call {try_new}",
            "test rax, rax",
            "jnz 3f",
            "mov rdi, rbx",
            "mov rsi, r12",
            "call {next_step}",
            "call rax",
            "jmp 2b",
            "3:",
            "add rsp, 8",
            ".cfi_adjust_cfa_offset -8",
            "pop r12",
            ".cfi_adjust_cfa_offset -8",
            ".cfi_restore r12",
            "pop rbx",
            ".cfi_adjust_cfa_offset -8",
            ".cfi_restore rbx",
            "ret",
            ".cfi_endproc",
            try_new = sym try_new,
            next_step = sym next_step,
        )
    }

    /// Defines a throwing form: a tail jump to [`new_loop`] (after setting
    /// `align` to the default for the unaligned ones).
    macro_rules! throwing_new {
        ($($name:ident ( $($arg:ident : $ty:ty),* ) { $($asm:literal)? } $($op:ident = $val:expr)?;)*) => {$(
            #[doc = concat!("`", stringify!($name), "`: see the module docs.")]
            #[unsafe(naked)]
            #[no_mangle]
            pub extern "C" fn $name($($arg: $ty),*) -> *mut c_void {
                naked_asm!(
                    $($asm,)?
                    "jmp {new_loop}",
                    new_loop = sym new_loop,
                    $($op = const $val,)?
                )
            }
        )*};
    }

    throwing_new! {
        _Znwm(size: usize) { "mov esi, {align}" } align = MIN_ALIGN;
        _Znam(size: usize) { "mov esi, {align}" } align = MIN_ALIGN;
        _ZnwmSt11align_val_t(size: usize, align: usize) {};
        _ZnamSt11align_val_t(size: usize, align: usize) {};
    }
}

/// Defines each `operator new` form written in Rust.
macro_rules! operator_new {
    ($($name:ident ( $($arg:ident : $ty:ty),* ) => $body:expr;)*) => {$(
        #[doc = concat!("`", stringify!($name), "`: see the module docs.")]
        #[no_mangle]
        pub extern "C" fn $name($($arg: $ty),*) -> *mut c_void {
            $body
        }
    )*};
}

#[cfg(not(target_arch = "x86_64"))]
operator_new! {
    _Znwm(size: usize) => new_or_abort(size, MIN_ALIGN);
    _Znam(size: usize) => new_or_abort(size, MIN_ALIGN);
    _ZnwmSt11align_val_t(size: usize, align: usize) => new_or_abort(size, align);
    _ZnamSt11align_val_t(size: usize, align: usize) => new_or_abort(size, align);
}

operator_new! {
    _ZnwmRKSt9nothrow_t(size: usize, _nt: *const NoThrow) => new_nothrow(size, MIN_ALIGN);
    _ZnamRKSt9nothrow_t(size: usize, _nt: *const NoThrow) => new_nothrow(size, MIN_ALIGN);
    _ZnwmSt11align_val_tRKSt9nothrow_t(size: usize, align: usize, _nt: *const NoThrow)
        => new_nothrow(size, align);
    _ZnamSt11align_val_tRKSt9nothrow_t(size: usize, align: usize, _nt: *const NoThrow)
        => new_nothrow(size, align);
}

/// Defines each `operator delete` form: unsized ones free, sized and
/// aligned ones check first ([`free_checked`]).
macro_rules! operator_delete {
    ($($name:ident ( $p:ident $(, $arg:ident : $ty:ty)* ) => $body:expr;)*) => {$(
        #[doc = concat!("`", stringify!($name), "`: see the module docs.")]
        ///
        /// # Safety
        /// `p` is null or a live pointer from this library's `operator new`
        /// (or `malloc` family).
        #[no_mangle]
        pub unsafe extern "C" fn $name($p: *mut c_void $(, $arg: $ty)*) {
            // SAFETY: the caller's contract.
            unsafe { $body }
        }
    )*};
}

const DELETE: &str = "operator delete";
const DELETE_ARRAY: &str = "operator delete[]";

operator_delete! {
    _ZdlPv(p) => free_impl(p.cast());
    _ZdaPv(p) => free_impl(p.cast());
    _ZdlPvRKSt9nothrow_t(p, _nt: *const NoThrow) => free_impl(p.cast());
    _ZdaPvRKSt9nothrow_t(p, _nt: *const NoThrow) => free_impl(p.cast());
    _ZdlPvm(p, size: usize) => free_checked(DELETE, p.cast(), 0, size);
    _ZdaPvm(p, size: usize) => free_checked(DELETE_ARRAY, p.cast(), 0, size);
    _ZdlPvSt11align_val_t(p, align: usize) => free_checked(DELETE, p.cast(), align, 0);
    _ZdaPvSt11align_val_t(p, align: usize) => free_checked(DELETE_ARRAY, p.cast(), align, 0);
    _ZdlPvmSt11align_val_t(p, size: usize, align: usize)
        => free_checked(DELETE, p.cast(), align, size);
    _ZdaPvmSt11align_val_t(p, size: usize, align: usize)
        => free_checked(DELETE_ARRAY, p.cast(), align, size);
    _ZdlPvSt11align_val_tRKSt9nothrow_t(p, align: usize, _nt: *const NoThrow)
        => free_checked(DELETE, p.cast(), align, 0);
    _ZdaPvSt11align_val_tRKSt9nothrow_t(p, align: usize, _nt: *const NoThrow)
        => free_checked(DELETE_ARRAY, p.cast(), align, 0);
}
