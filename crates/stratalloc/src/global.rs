//! [`StratAlloc`]: the engine as Rust's global allocator and as an
//! `allocator_api2` [`Allocator`].
//!
//! ```ignore
//! #[global_allocator]
//! static A: stratalloc::global::StratAlloc = stratalloc::global::StratAlloc;
//! ```
//!
//! Every method forwards to the engine's free functions (no dynamic
//! dispatch). `dealloc` ignores the layout (the engine finds the block by
//! masking the pointer); `realloc` with a larger alignment than 16 moves
//! the block through `alloc` so the alignment is kept.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};

use allocator_api2::alloc::{AllocError, Allocator};

use crate::engine;

/// The engine behind `GlobalAlloc` and `Allocator`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StratAlloc;

// SAFETY: the engine returns disjoint blocks of at least `size` bytes
// aligned to `align`, and keeps contents across realloc.
unsafe impl GlobalAlloc for StratAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        engine::aligned_alloc(layout.align(), layout.size())
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, _layout: Layout) {
        // SAFETY: `p` was allocated by this allocator (GlobalAlloc contract).
        unsafe { engine::free(p) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        engine::alloc_zeroed(layout.size(), layout.align())
    }

    #[inline]
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= 16 {
            // SAFETY: `p` is live; new_size > 0 (GlobalAlloc contract).
            return unsafe { engine::realloc(p, new_size) };
        }
        let q = engine::aligned_alloc(layout.align(), new_size);
        if !q.is_null() {
            // SAFETY: both blocks are live and hold at least the copied bytes.
            unsafe {
                ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                engine::free(p);
            }
        }
        q
    }
}

fn dangling(layout: Layout) -> NonNull<[u8]> {
    // SAFETY: align is nonzero, so the address is non-null.
    let p = unsafe { NonNull::new_unchecked(layout.align() as *mut u8) };
    NonNull::slice_from_raw_parts(p, 0)
}

// SAFETY: blocks stay valid until deallocated through any copy of
// `StratAlloc` (it has no state); zero-sized requests get a dangling,
// aligned pointer that deallocate ignores.
unsafe impl Allocator for StratAlloc {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        let p = engine::aligned_alloc(layout.align(), layout.size());
        NonNull::new(p)
            .map(|p| NonNull::slice_from_raw_parts(p, layout.size()))
            .ok_or(AllocError)
    }

    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        let p = engine::alloc_zeroed(layout.size(), layout.align());
        NonNull::new(p)
            .map(|p| NonNull::slice_from_raw_parts(p, layout.size()))
            .ok_or(AllocError)
    }

    unsafe fn deallocate(&self, p: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: allocated by `allocate` with this layout.
            unsafe { engine::free(p.as_ptr()) }
        }
    }
}
