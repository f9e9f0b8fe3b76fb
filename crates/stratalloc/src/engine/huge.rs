//! Huge blocks (above [`LARGE_MAX`](super::LARGE_MAX)): each in a mapping
//! of its own whose start is a segment boundary, so `segment_of(p)` finds
//! its header as for any other block.
//!
//! ```text
//!   align <= 2 MiB:   [hdr|pad|block ..............]     block = seg + offset
//!   align >= 4 MiB:   [hdr|..unused 4 MiB..|block ...]   block = seg + 4 MiB
//! ```
//!
//! In the second layout `segment_of(block) == block`, which is not in the
//! segment map: `free` then looks one segment back (see `free_foreign`).
//! Growing uses `mremap` into an aligned reservation, so no bytes are
//! copied; shrinking unmaps the tail. A freed mapping waits a short while
//! in the huge cache (`segment::huge_cache_put`) for the next huge
//! request: one needing a third of it or more takes it as it is (no
//! system call, no page fault); a larger one grows it with `mremap`
//! (only the growth faults in).

use core::ptr;

use super::segment::{self, Kind, Segment, SEGMENT_SIZE};
use crate::os;

fn header_size() -> usize {
    os::page_round(core::mem::size_of::<Segment>()).unwrap_or(SEGMENT_SIZE)
}

/// A huge block of `size` bytes aligned to `align`, and whether its bytes
/// are known to be zero (a fresh mapping; a reused one is not). Null on
/// failure.
pub fn alloc(size: usize, align: usize) -> (*mut u8, bool) {
    let hdr = header_size();
    let offset = if align <= SEGMENT_SIZE / 2 {
        hdr.next_multiple_of(align.max(16))
    } else {
        SEGMENT_SIZE
    };
    // At least one byte: the block must lie inside the mapping (with an
    // offset of a whole segment, a 0-byte block would start just past it,
    // where another mapping may later be registered).
    let Some(total) = offset.checked_add(size.max(1)).and_then(os::page_round) else {
        return (ptr::null_mut(), false);
    };
    if total > isize::MAX as usize {
        return (ptr::null_mut(), false);
    }
    segment::global_purge(os::now_ms());
    if offset < SEGMENT_SIZE {
        let mut seg = segment::huge_cache_take(total);
        // SAFETY: a cached huge mapping, ours now; its start is a segment
        // boundary. One smaller than `total` grows (its pages move with
        // it, resident); if it cannot, it is unmapped.
        unsafe {
            if !seg.is_null() && (*seg).map_size < total {
                let grown = resize(seg, total);
                if grown.is_null() {
                    segment::huge_unmap(seg);
                }
                seg = grown;
            }
            if !seg.is_null() {
                let block = seg.cast::<u8>().add(offset);
                let map_size = (*seg).map_size;
                segment::huge_init(seg, map_size, block, map_size - offset);
                return (block, false);
            }
        }
    }
    let seg: *mut Segment = if offset == SEGMENT_SIZE {
        os::map_aligned_at(total, align, SEGMENT_SIZE).cast()
    } else {
        os::map_aligned(total, SEGMENT_SIZE).cast()
    };
    if seg.is_null() {
        return (ptr::null_mut(), false);
    }
    if !segment::huge_register(seg, true) {
        // SAFETY: just mapped.
        unsafe { os::unmap(seg.cast(), total) };
        return (ptr::null_mut(), false);
    }
    // SAFETY: a fresh zeroed mapping of `total >= offset + size` bytes.
    unsafe {
        let block = seg.cast::<u8>().add(offset);
        segment::huge_init(seg, total, block, total - offset);
        (block, true)
    }
}

/// Free the huge block `p` of segment `seg`: the mapping is kept a short
/// while for reuse (see `segment::huge_cache_put`) or unmapped.
///
/// # Safety
/// `seg` is a registered huge segment.
pub unsafe fn free(seg: *mut Segment, p: *mut u8) {
    // SAFETY: a registered huge header.
    unsafe {
        if (*seg).huge_block != p {
            crate::fatal!(
                "free of {:p}: not the start of a huge block (double free or invalid free)",
                p
            );
        }
        let now = os::now_ms();
        let offset = p as usize - seg as usize;
        if offset >= SEGMENT_SIZE || !segment::huge_cache_put(seg, now) {
            segment::huge_unmap(seg);
        }
        segment::global_purge(now);
    }
}

/// Resize a huge block in place or by moving its pages. Null on failure
/// (the block is untouched).
///
/// # Safety
/// `seg` is a registered huge segment and `p` its block; `new_size` is
/// greater than `LARGE_MAX`.
pub unsafe fn realloc(seg: *mut Segment, p: *mut u8, new_size: usize) -> *mut u8 {
    // SAFETY: a registered huge header.
    unsafe {
        let offset = p as usize - seg as usize;
        let Some(total) = offset.checked_add(new_size).and_then(os::page_round) else {
            return ptr::null_mut();
        };
        if total > isize::MAX as usize {
            return ptr::null_mut();
        }
        let old = (*seg).map_size;
        if total <= old && total >= old / 2 {
            return p;
        }
        let nseg = resize(seg, total);
        if nseg.is_null() {
            return ptr::null_mut();
        }
        let block = nseg.cast::<u8>().add(offset);
        segment::huge_init(nseg, total, block, total - offset);
        block
    }
}

/// Resize the mapping of huge segment `seg` to `total` bytes (page
/// multiple): in place, or moved by `mremap` to another segment-aligned
/// place (pages move, no byte is copied), registered where it lands.
/// Returns the segment's new address with `map_size == total` (the rest
/// of the header as it was), or null with the mapping untouched.
///
/// # Safety
/// `seg` is a registered huge segment nobody else is resizing.
unsafe fn resize(seg: *mut Segment, total: usize) -> *mut Segment {
    // SAFETY: a registered huge header, per the contract.
    unsafe {
        let old = (*seg).map_size;
        // Growing in place is tried first and fails whenever the next
        // pages are taken: that must not leave ENOMEM in errno when the
        // move then succeeds (the C layer relies on the engine leaving
        // errno alone on success).
        let errno = libc::__errno_location();
        let saved = *errno;
        // Unregistered while mremap may move it (see `segment::unregister`);
        // nobody else may use the block meanwhile.
        segment::unregister(seg);
        let nseg: *mut Segment = os::remap(seg.cast(), old, total, SEGMENT_SIZE).cast();
        if nseg.is_null() {
            // Registered a moment ago: the map has its bit.
            segment::huge_register(seg, true);
            return nseg;
        }
        *errno = saved;
        // Set before it is registered again (walks read registered headers).
        (*nseg).map_size = total;
        if !segment::huge_register(nseg, true) {
            crate::fatal!("cannot register moved huge block {:p}", nseg);
        }
        nseg
    }
}

/// Is `seg` a huge segment (header valid)?
pub fn is_huge(seg: *const Segment) -> bool {
    // SAFETY: called on registered segments only.
    unsafe { (*seg).kind == Kind::Huge }
}
