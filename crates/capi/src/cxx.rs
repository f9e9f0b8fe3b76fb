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
//! The library is Rust built with `panic = "abort"` and links no C++
//! runtime, so it cannot throw `std::bad_alloc`, and no C++ exception can
//! unwind through its frames. What it does instead, as close to the
//! standard's loop as that allows:
//!
//! 1. Allocate; on success return the block.
//! 2. Look up `std::get_new_handler` (`_ZSt15get_new_handlerv`) in the
//!    process with `dlsym`: it is there when the program uses libstdc++.
//!    If it returns a handler, call it and go back to 1 (the standard's
//!    contract: a handler that returns has made memory available; one that
//!    never does loops here as it would in libstdc++).
//! 3. With no handler: the throwing forms print `stratalloc: operator
//!    new(N): out of memory ...` and abort (where libstdc++ would throw
//!    `std::bad_alloc`); the `nothrow` forms return null.
//!
//! A handler that throws (usually `std::bad_alloc`) cannot unwind through
//! this library: the call is declared `"C-unwind"`, and Rust aborts the
//! process when an unwind reaches a frame built with `panic = "abort"`.
//! So `try { new T[huge]; } catch (std::bad_alloc &)` ends the process
//! under this library instead of reaching the `catch`.
//!
//! An aligned form with an alignment that is not a power of two (undefined
//! behaviour in C++) fails as out of memory does.
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

use crate::{alloc, free_checked, free_impl, MIN_ALIGN};

/// `std::nothrow_t` (an empty struct, passed by reference).
#[repr(C)]
pub struct NoThrow {
    _private: [u8; 0],
}

/// A C++ new handler. `"C-unwind"`: it may throw, and an unwind that
/// reaches our frame then aborts instead of being undefined behaviour.
type NewHandler = unsafe extern "C-unwind" fn();

/// `std::get_new_handler()`, looked up in the process (libstdc++ when the
/// program is C++); `None` when absent or when no handler is installed.
#[cold]
fn new_handler() -> Option<NewHandler> {
    const NAME: &[u8] = b"_ZSt15get_new_handlerv\0";
    // SAFETY: a NUL-terminated name; RTLD_DEFAULT searches the whole
    // process. dlsym may allocate: we hold no allocator lock here.
    let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, NAME.as_ptr().cast::<c_char>()) };
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

/// Whether a failed `operator new` throws (aborts here) or returns null.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnFailure {
    Abort,
    Null,
}

/// The standard's allocation loop (module docs): allocate, else call the
/// new handler and retry, else abort or return null.
#[cold]
#[inline(never)]
fn new_slow(size: usize, align: usize, on_failure: OnFailure) -> *mut c_void {
    if align.is_power_of_two() {
        loop {
            let p = alloc(size, align.max(MIN_ALIGN));
            if !p.is_null() {
                return p.cast();
            }
            match new_handler() {
                // SAFETY: the program's own handler, called as the C++
                // runtime would; an exception from it aborts (module docs).
                Some(h) => unsafe { h() },
                None => break,
            }
        }
    }
    match on_failure {
        OnFailure::Null => ptr::null_mut(),
        OnFailure::Abort => engine::fatal!(
            "operator new({size}, align {align}): out of memory and no new handler \
             (std::bad_alloc cannot be thrown from libstratalloc)"
        ),
    }
}

#[inline(always)]
fn new_impl(size: usize, align: usize, on_failure: OnFailure) -> *mut c_void {
    if align.is_power_of_two() {
        let p = alloc(size, align.max(MIN_ALIGN));
        if !p.is_null() {
            return p.cast();
        }
    }
    new_slow(size, align, on_failure)
}

/// Defines each `operator new` form as a call to [`new_impl`].
macro_rules! operator_new {
    ($($name:ident ( $($arg:ident : $ty:ty),* ) => $size:ident, $align:expr, $fail:expr;)*) => {$(
        #[doc = concat!("`", stringify!($name), "`: see the module docs.")]
        #[no_mangle]
        pub extern "C" fn $name($($arg: $ty),*) -> *mut c_void {
            $(let _ = $arg;)*
            new_impl($size, $align, $fail)
        }
    )*};
}

operator_new! {
    _Znwm(size: usize) => size, MIN_ALIGN, OnFailure::Abort;
    _Znam(size: usize) => size, MIN_ALIGN, OnFailure::Abort;
    _ZnwmRKSt9nothrow_t(size: usize, nt: *const NoThrow) => size, MIN_ALIGN, OnFailure::Null;
    _ZnamRKSt9nothrow_t(size: usize, nt: *const NoThrow) => size, MIN_ALIGN, OnFailure::Null;
    _ZnwmSt11align_val_t(size: usize, align: usize) => size, align, OnFailure::Abort;
    _ZnamSt11align_val_t(size: usize, align: usize) => size, align, OnFailure::Abort;
    _ZnwmSt11align_val_tRKSt9nothrow_t(size: usize, align: usize, nt: *const NoThrow)
        => size, align, OnFailure::Null;
    _ZnamSt11align_val_tRKSt9nothrow_t(size: usize, align: usize, nt: *const NoThrow)
        => size, align, OnFailure::Null;
}

/// Defines each `operator delete` form: unsized ones free, sized and
/// aligned ones check first ([`free_checked`]).
macro_rules! operator_delete {
    ($($name:ident ( $($arg:ident : $ty:ty),* ) => $body:expr;)*) => {$(
        #[doc = concat!("`", stringify!($name), "`: see the module docs.")]
        ///
        /// # Safety
        /// `p` is null or a live pointer from this library's `operator new`
        /// (or `malloc` family).
        #[no_mangle]
        pub unsafe extern "C" fn $name(p: *mut c_void, $($arg: $ty),*) {
            $(let _ = $arg;)*
            let p = p.cast::<u8>();
            // SAFETY: the caller's contract.
            unsafe { $body(p) }
        }
    )*};
}

const DELETE: &str = "operator delete";
const DELETE_ARRAY: &str = "operator delete[]";

operator_delete! {
    _ZdlPv() => |p| free_impl(p);
    _ZdaPv() => |p| free_impl(p);
    _ZdlPvRKSt9nothrow_t(nt: *const NoThrow) => |p| free_impl(p);
    _ZdaPvRKSt9nothrow_t(nt: *const NoThrow) => |p| free_impl(p);
    _ZdlPvm(size: usize) => |p| free_checked(DELETE, p, 0, size);
    _ZdaPvm(size: usize) => |p| free_checked(DELETE_ARRAY, p, 0, size);
    _ZdlPvSt11align_val_t(align: usize) => |p| free_checked(DELETE, p, align, 0);
    _ZdaPvSt11align_val_t(align: usize) => |p| free_checked(DELETE_ARRAY, p, align, 0);
    _ZdlPvmSt11align_val_t(size: usize, align: usize)
        => |p| free_checked(DELETE, p, align, size);
    _ZdaPvmSt11align_val_t(size: usize, align: usize)
        => |p| free_checked(DELETE_ARRAY, p, align, size);
    _ZdlPvSt11align_val_tRKSt9nothrow_t(align: usize, nt: *const NoThrow)
        => |p| free_checked(DELETE, p, align, 0);
    _ZdaPvSt11align_val_tRKSt9nothrow_t(align: usize, nt: *const NoThrow)
        => |p| free_checked(DELETE_ARRAY, p, align, 0);
}
