//! Allocation paths: the malloc fast path, classes above the direct table,
//! large and huge blocks, alignment, zeroing, realloc.

use core::ptr;
use core::sync::atomic::Ordering::Relaxed;

use super::free;
use super::heap::{alloc_class_slow, alloc_large, heap, large_resize_in_place, Heap};
use super::huge;
use super::page::{Page, ALIGNED};
use super::segment::{segmap_contains, segment_of, Segment, SEGMENT_SIZE, SLICE_SIZE};
use super::size_class::*;

/// Largest block served from a span of slices; above it blocks are huge.
pub const LARGE_MAX: usize = SEGMENT_SIZE / 2;

/// `size` bytes, 16-aligned (for `size >= 16`), or null.
#[inline(always)]
pub fn malloc(size: usize) -> *mut u8 {
    let h = heap();
    if size <= DIRECT_MAX {
        let w = (size + 15) >> 4;
        // SAFETY: our heap; direct slots always point to a valid page (the
        // static empty page has no free blocks, so `pop` writes nothing).
        unsafe {
            let p = Page::pop((*h).direct[w], (*h).secret);
            if !p.is_null() {
                return p;
            }
            return alloc_class_slow(h, DIRECT_CLASS[w] as usize);
        }
    }
    // SAFETY: our heap.
    unsafe { malloc_generic(h, size) }
}

#[inline(never)]
unsafe fn malloc_generic(h: *mut Heap, size: usize) -> *mut u8 {
    if size <= MEDIUM_MAX {
        let c = class_of(size);
        // SAFETY: our heap; queue heads are valid pages.
        unsafe {
            let page = (*h).queues[c].first;
            if !page.is_null() {
                let p = Page::pop(page, (*h).secret);
                if !p.is_null() {
                    return p;
                }
            }
            return alloc_class_slow(h, c);
        }
    }
    if size <= LARGE_MAX {
        // SAFETY: our heap.
        unsafe {
            let page = alloc_large(h, size.div_ceil(SLICE_SIZE));
            return if page.is_null() {
                ptr::null_mut()
            } else {
                (*page).start
            };
        }
    }
    huge::alloc(size, 16).0
}

/// `size` bytes aligned to `align` (a power of two), or null.
#[inline]
pub fn aligned_alloc(align: usize, size: usize) -> *mut u8 {
    if align <= 16 {
        return malloc(size);
    }
    aligned_generic(align, size)
}

#[inline(never)]
fn aligned_generic(align: usize, size: usize) -> *mut u8 {
    if !align.is_power_of_two() || size > isize::MAX as usize {
        return ptr::null_mut();
    }
    // A class whose block size is a multiple of `align` on pages that
    // start on a slice boundary gives aligned blocks for free.
    if size <= MEDIUM_MAX && align <= SLICE_SIZE {
        let c = class_of(size);
        if class_size(c) % align == 0 {
            return malloc(class_size(c));
        }
        if let Some(n) = size.checked_add(align - 1) {
            if n <= MEDIUM_MAX {
                return aligned_within(malloc(n), align);
            }
        }
    }
    if align <= LARGE_MAX {
        if let Some(n) = size.checked_add(align - 1) {
            if n <= LARGE_MAX {
                let h = heap();
                // SAFETY: our heap.
                unsafe {
                    let page = alloc_large(h, n.div_ceil(SLICE_SIZE));
                    if page.is_null() {
                        return ptr::null_mut();
                    }
                    return aligned_within((*page).start, align);
                }
            }
        }
    }
    huge::alloc(size, align).0
}

/// Round `p` (a block start) up to `align`, flagging its page if that
/// moved the pointer.
fn aligned_within(p: *mut u8, align: usize) -> *mut u8 {
    if p.is_null() {
        return p;
    }
    let q = (p as usize).next_multiple_of(align);
    if q != p as usize {
        let seg = segment_of(p);
        // SAFETY: `p` is a live block we just allocated on our own page.
        unsafe {
            let page = Segment::page_of(seg, p);
            let f = (*page).flags.load(Relaxed);
            (*page).set_flags(f | ALIGNED);
        }
    }
    q as *mut u8
}

/// `size` zeroed bytes aligned to `align`.
pub fn alloc_zeroed(size: usize, align: usize) -> *mut u8 {
    if size > MEDIUM_MAX && size <= LARGE_MAX && align <= 16 {
        let h = heap();
        // SAFETY: our heap; the block spans `block_size` bytes.
        unsafe {
            let page = alloc_large(h, size.div_ceil(SLICE_SIZE));
            if page.is_null() {
                return ptr::null_mut();
            }
            if !(*page).is_zero {
                ptr::write_bytes((*page).start, 0, size);
            }
            return (*page).start;
        }
    }
    if size > LARGE_MAX && align <= SEGMENT_SIZE / 2 {
        let (p, zero) = huge::alloc(size, align.max(16));
        if !p.is_null() && !zero {
            // SAFETY: a block of at least `size` bytes.
            unsafe { ptr::write_bytes(p, 0, size) };
        }
        return p;
    }
    let p = aligned_alloc(align, size);
    if !p.is_null() {
        // SAFETY: a fresh block of at least `size` bytes.
        unsafe { ptr::write_bytes(p, 0, size) };
    }
    p
}

/// `n * size` zeroed bytes, null on overflow.
#[inline]
pub fn calloc(n: usize, size: usize) -> *mut u8 {
    match n.checked_mul(size) {
        Some(t) if t <= isize::MAX as usize => alloc_zeroed(t, 16),
        _ => ptr::null_mut(),
    }
}

/// Resize `p` to `new_size` bytes (`p` not null, `new_size > 0`: the C
/// layer decides those). Null on failure with `p` untouched.
///
/// # Safety
/// `p` is a live block of the engine.
#[inline]
pub unsafe fn realloc(p: *mut u8, new_size: usize) -> *mut u8 {
    let seg = segment_of(p);
    // The usual case, a block start on an in-use page of a normal segment,
    // staying in place: no division (as `usable_size` needs for a pointer
    // inside a block), no call, no stack frame.
    // SAFETY: `p` is live; registered segments have valid headers.
    unsafe {
        if segmap_contains(seg) && !huge::is_huge(seg) {
            let page = Segment::page_of(seg, p);
            let usable = (*page).block_size();
            if (*page).in_use()
                && Page::is_block_offset(page, (p as usize).wrapping_sub((*page).start as usize))
                && new_size <= usable
                && new_size >= usable / 2
            {
                return p;
            }
        }
        realloc_slow(p, new_size)
    }
}

/// [`realloc`] when the block does not simply stay: huge blocks, large
/// blocks resized in place, moves.
#[inline(never)]
unsafe fn realloc_slow(p: *mut u8, new_size: usize) -> *mut u8 {
    if new_size > isize::MAX as usize {
        return ptr::null_mut();
    }
    let seg = segment_of(p);
    // SAFETY: `p` is live; registered segments have valid headers.
    unsafe {
        if segmap_contains(seg) && huge::is_huge(seg) && new_size > LARGE_MAX {
            if (*seg).huge_block != p {
                crate::fatal!("realloc of {:p}: not the start of a huge block", p);
            }
            return huge::realloc(seg, p, new_size);
        }
        let usable = free::usable_size(p);
        if new_size <= usable && new_size >= usable / 2 {
            return p;
        }
        if new_size > MEDIUM_MAX
            && new_size <= LARGE_MAX
            && usable > MEDIUM_MAX
            && usable <= LARGE_MAX
            && large_resize_in_place(p, new_size)
        {
            return p;
        }
        // A block outgrowing its class is likely to be grown again (a
        // buffer appended to): give it about a quarter more than asked, so
        // a run of small growths copies every fourth class, not every
        // class. Large blocks grow in place when the next slices are
        // free, and move with a quarter more when they are not.
        let want = if new_size > usable && new_size <= LARGE_MAX {
            (new_size + new_size / 4).min(LARGE_MAX)
        } else {
            new_size
        };
        let q = malloc(want);
        if q.is_null() {
            return q;
        }
        ptr::copy_nonoverlapping(p, q, usable.min(new_size));
        free::free(p);
        q
    }
}
