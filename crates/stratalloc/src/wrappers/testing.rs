//! A simple backend for the wrappers' unit tests: the C library's own
//! allocator (the test binary does not replace it).

use crate::backend::Backend;

/// `posix_memalign` / `free` / `malloc_usable_size` of the C library.
pub struct SysBackend;

impl SysBackend {
    /// A `'static` instance.
    pub fn leaked() -> &'static dyn Backend {
        &SysBackend
    }
}

// SAFETY: the C library's allocator gives non-overlapping blocks of the
// requested size and alignment.
unsafe impl Backend for SysBackend {
    fn name(&self) -> &'static str {
        "sys"
    }
    fn alloc(&self, size: usize, align: usize) -> *mut u8 {
        if !align.is_power_of_two() || size > isize::MAX as usize {
            return core::ptr::null_mut();
        }
        let mut p = core::ptr::null_mut();
        // SAFETY: `p` is valid for writes; the alignment is a power of two
        // and a multiple of the pointer size.
        let r = unsafe { libc::posix_memalign(&mut p, align.max(16), size.max(1)) };
        if r != 0 {
            return core::ptr::null_mut();
        }
        p.cast()
    }
    unsafe fn free(&self, p: *mut u8) {
        // SAFETY: the caller passes a block of this backend.
        unsafe { libc::free(p.cast()) }
    }
    unsafe fn realloc(&self, p: *mut u8, new_size: usize) -> *mut u8 {
        // SAFETY: the caller passes a block of this backend.
        unsafe { libc::realloc(p.cast(), new_size).cast() }
    }
    unsafe fn usable_size(&self, p: *const u8) -> usize {
        // SAFETY: the caller passes a block of this backend.
        unsafe { libc::malloc_usable_size(p as *mut _) }
    }
}
