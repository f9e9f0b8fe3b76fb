//! `_exit` and `_Exit`: write the wrappers' reports first.
//!
//! A program that ends with `_exit` (dash does, after every `sh -c`) skips
//! the `.fini_array` destructor that writes the reports. These two run
//! [`wrappers::finish_on_exit`] (which does nothing except in the process
//! that built the wrappers: never in a `fork` or `vfork` child, whose
//! memory may be its parent's) and then end the process as glibc's do,
//! with `exit_group`. glibc's own `exit` reaches its `_exit` directly, not
//! through these.
//!
//! [`wrappers::finish_on_exit`]: engine::wrappers::finish_on_exit

use core::ffi::c_int;

use crate::engine;

fn exit_now(status: c_int) -> ! {
    engine::wrappers::finish_on_exit();
    // SAFETY: exit_group takes a status and does not return.
    unsafe { libc::syscall(libc::SYS_exit_group, status as libc::c_long) };
    // SAFETY: abort has no preconditions (reached only if the kernel
    // refused to end the process).
    unsafe { libc::abort() }
}

/// `_exit(3)`.
#[no_mangle]
pub extern "C" fn _exit(status: c_int) -> ! {
    exit_now(status)
}

/// `_Exit(3)` (the same as `_exit`).
#[no_mangle]
pub extern "C" fn _Exit(status: c_int) -> ! {
    exit_now(status)
}
