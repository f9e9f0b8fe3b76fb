//! Free paths: the local fast path, the generic path (floating, aligned,
//! huge, remote) and the checks that name a bad pointer.
//!
//! ```text
//!   free(p): seg = p & !(4 MiB-1)
//!            heap.own[slot(seg)] == seg ? ── no ──> free_checked: not in segment map
//!              │                             ──> free_foreign (huge with big alignment,
//!              │                             else abort); owner == me: cache seg, go on
//!              page = seg.pages[(p-seg)>>16] - offset
//!              block start && flags == 0 ?
//!                yes: push on page.local_free, used -= 1      (no atomics)
//!                no:  free_generic: huge / aligned / floating / remote push
//! ```
//!
//! Cheap checks always on: the segment map (pointer from elsewhere), the
//! block's key word (a free block carries `page.key()` in its second word;
//! finding it set triggers a scan of the page's lists, and a hit is a
//! double free), `used` underflow, freed spans, misaligned pointers on the
//! generic path.

use core::sync::atomic::Ordering::*;

use super::heap::{self, free_local_slow, heap, own_slot, retire};
use super::huge;
use super::page::{secret, Block, Page, ALIGNED};
use super::segment::{segmap_contains, segment_of, Segment, SEGMENT_SIZE};

/// Free `p` (null ignored).
///
/// # Safety
/// `p` is null or a live block of the engine.
#[inline]
pub unsafe fn free(p: *mut u8) {
    let seg = segment_of(p);
    let h = heap();
    // SAFETY: `h` is our heap (the empty heap's `own` slots are all empty).
    // A hit in `own` means `seg` is one of our segments (mapped, owned by
    // us; see the heap invariants); `p` lies inside it. Null's segment (0)
    // never hits.
    unsafe {
        if (*h).own[own_slot(seg as usize)] == seg as usize {
            let page = Segment::page_of(seg, p);
            if (*page).is_plain_block_offset((p as usize).wrapping_sub((*page).start as usize)) {
                return free_local(h, page, p);
            }
            return free_generic(seg, page, p);
        }
        free_checked(h, seg, p)
    }
}

/// [`free`] when `p`'s segment is not in the heap's `own` cache: not
/// ours (segment map), another thread's, or one of ours the cache does
/// not hold (it is put there).
#[inline(never)]
unsafe fn free_checked(h: *mut heap::Heap, seg: *mut Segment, p: *mut u8) {
    // Null is not in the segment map (no segment starts at 0): it is
    // ignored by `free_foreign`, off the fast path.
    if !segmap_contains(seg) {
        // SAFETY: forwarded.
        return unsafe { free_foreign(p) };
    }
    // SAFETY: `seg` is one of our mapped segments; `p` lies inside it.
    unsafe {
        let page = Segment::page_of(seg, p);
        if (*seg).owner.load(Relaxed) == (*h).id {
            // Owned by us, so in our segment list: cache it.
            (*h).own[own_slot(seg as usize)] = seg as usize;
            if (*page).is_plain_block_offset((p as usize).wrapping_sub((*page).start as usize)) {
                return free_local(h, page, p);
            }
        }
        free_generic(seg, page, p);
    }
}

/// The plain local free: `p` is a carved block on `page`, a queued page of
/// our own with no flags.
#[inline(always)]
unsafe fn free_local(h: *mut heap::Heap, page: *mut Page, p: *mut u8) {
    // SAFETY: per the contract; `p` is a block of `page`.
    unsafe {
        let b = p as *mut Block;
        let secret = (*h).secret;
        let key = Page::key(page, secret);
        if (*b).key == key {
            owner_double_free(page, p);
        }
        (*b).next = Block::link(b, (*page).local_free, secret);
        (*b).key = key;
        (*page).local_free = b;
        let u = (*page).used().wrapping_sub(1);
        (*page).set_used(u);
        // `used` hit 0 or wrapped; an empty page that is the only one
        // of its small class stays (no call needed: no links), only
        // flagged for `heap::span_from_empty`.
        if u.wrapping_add(1) <= 1 {
            if u == 0
                && (*page).prev.is_null()
                && (*page).next.is_null()
                && (*page).slice_count() == 1
            {
                let c = (*page).class as usize;
                (*h).emptied[c / 64] |= 1 << (c % 64);
            } else {
                free_used_edge(h, page, p);
            }
        }
    }
}

/// The owner frees `p` (a carved block of `page`), which carries the
/// page's free key: malloc clears the key of every block it hands out, so
/// the block is free. It is on one of the page's lists, or another thread
/// freed it and still holds it in a batch of remote frees (`remote.rs`):
/// either way a double free (data matches the key only by guessing the
/// process secret).
///
/// # Safety
/// `page` is a page of the calling thread's heap; `p` one of its blocks.
#[cold]
#[inline(never)]
unsafe fn owner_double_free(page: *mut Page, p: *mut u8) -> ! {
    // SAFETY: an owned page; the walk is bounded and checks every link.
    if unsafe { !(*page).in_use() || (*page).is_listed(p.cast()) } {
        crate::fatal!("double free of {:p}", p);
    }
    crate::fatal!(
        "double free of {:p} (freed before by another thread, not yet returned)",
        p
    );
}

/// The fast path left `used` at 0 (retire the page) or wrapped it (the
/// block was not in use).
#[cold]
#[inline(never)]
unsafe fn free_used_edge(h: *mut heap::Heap, page: *mut Page, p: *mut u8) {
    // SAFETY: an owned page; the fast path just pushed `p`.
    unsafe {
        if (*page).used() == u32::MAX || !(*page).in_use() {
            (*page).local_free = Block::next_of(p.cast(), (*h).secret);
            (*page).set_used(0);
            crate::fatal!(
                "free of {:p}: block not in use (double free or invalid pointer)",
                p
            );
        }
        retire(&mut *h, page);
    }
}

/// Everything but the plain local free: huge, aligned, floating, remote.
#[cold]
#[inline(never)]
unsafe fn free_generic(seg: *mut Segment, page: *mut Page, p: *mut u8) {
    // SAFETY: `seg` is registered; `page` its descriptor for `p`. Another
    // thread may own this page and be changing it: its fields are read
    // through the raw pointer, and only those fixed while the page is in
    // use (`in_use`, `start`, `block_size`, the division constants) or
    // atomic (`flags`, `capacity`, `thread_free`), unless the page is ours.
    unsafe {
        if !(*seg).cookie_ok() {
            crate::fatal!("free of {:p}: segment header {:p} is corrupted", p, seg);
        }
        if huge::is_huge(seg) {
            return huge::free(seg, p);
        }
        let h = heap();
        let mine = (*seg).owner.load(Relaxed) == (*h).id;
        if !(*page).in_use() {
            crate::fatal!(
                "free of {:p}: not an allocated block (double free or invalid pointer)",
                p
            );
        }
        let b = if (*page).flags.load(Relaxed) & ALIGNED != 0 {
            Page::block_start(page, p)
        } else {
            p
        };
        // Only carved blocks were ever handed out: `capacity` only grows
        // while the page is in use, and the carving of a block another
        // thread holds happened before that thread got it, so a remote
        // free reads a bound at least as large as the block's index.
        if !(*page).is_carved_block(b.cast()) {
            crate::fatal!(
                "free of {:p}: not the start of a block (invalid pointer)",
                p
            );
        }
        let key = Page::key(page, secret());
        if mine {
            if (*(b as *mut Block)).key == key {
                owner_double_free(page, b);
            }
            return free_local_slow(h, page, b);
        }
        // A block still free carries the key (malloc clears it): another
        // thread cannot scan the owner's lists, and the key mixes in the
        // process secret, so a match is a double free, not data.
        if (*(b as *mut Block)).key == key {
            crate::fatal!("double free of {:p} (by a thread that does not own it)", p);
        }
        super::remote::push(h, seg, page, b, key);
    }
}

/// A pointer whose segment is not in the map: a huge block with alignment
/// of 4 MiB or more (its header is one segment back), or not ours.
#[cold]
#[inline(never)]
unsafe fn free_foreign(p: *mut u8) {
    if p.is_null() {
        return;
    }
    match huge_big_aligned(p) {
        // SAFETY: a registered huge segment whose block is `p`.
        Some(seg) => unsafe { huge::free(seg, p) },
        None => crate::fatal!(
            "free of {:p}: pointer not allocated by stratalloc (invalid free)",
            p
        ),
    }
}

/// The header of a huge block placed one segment after its header.
pub fn huge_big_aligned(p: *const u8) -> Option<*mut Segment> {
    let a = p as usize;
    if a & (SEGMENT_SIZE - 1) != 0 || a < SEGMENT_SIZE {
        return None;
    }
    let seg = (a - SEGMENT_SIZE) as *mut Segment;
    if !segmap_contains(seg) {
        return None;
    }
    // SAFETY: a registered segment's header is mapped.
    unsafe {
        if (*seg).cookie_ok() && huge::is_huge(seg) && core::ptr::eq((*seg).huge_block, p) {
            Some(seg)
        } else {
            None
        }
    }
}

/// Is `p` a pointer the engine could have handed out (inside one of its
/// segments or a huge block)? Cheap; does not prove `p` is live.
pub fn owns(p: *const u8) -> bool {
    segmap_contains(segment_of(p)) || huge_big_aligned(p).is_some()
}

/// Bytes usable at `p`.
///
/// # Safety
/// `p` is a live block of the engine.
pub unsafe fn usable_size(p: *const u8) -> usize {
    if p.is_null() {
        return 0;
    }
    let seg = segment_of(p);
    if !segmap_contains(seg) {
        return match huge_big_aligned(p) {
            // SAFETY: registered huge header.
            Some(s) => unsafe { (*s).huge_size },
            None => crate::fatal!(
                "usable_size of {:p}: pointer not allocated by stratalloc",
                p
            ),
        };
    }
    // SAFETY: registered segment.
    unsafe {
        if huge::is_huge(seg) {
            let blk = (*seg).huge_block as usize;
            return (*seg).huge_size - (p as usize - blk);
        }
        let page = Segment::page_of(seg, p);
        if !(*page).in_use() {
            crate::fatal!("usable_size of {:p}: not an allocated block", p);
        }
        let b = Page::block_start(page, p);
        (*page).block_size() - (p as usize - b as usize)
    }
}

/// What the engine records of the page holding `p` (see [`page_info`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageInfo {
    /// First byte of the page's span.
    pub start: usize,
    /// Bytes per block.
    pub block_size: usize,
    /// Blocks carved so far.
    pub capacity: u32,
    /// Blocks that fit in the span.
    pub reserved: u32,
    /// Blocks handed out (including ones other threads freed and the owner
    /// has not collected yet).
    pub used: u32,
    /// Some pointer handed out from the page is not a block start.
    pub aligned: bool,
    /// The page is unlinked from its queue (full, or one large block).
    pub floating: bool,
}

/// The page holding `p`, if `p` lies in an in-use span of one of the
/// engine's normal segments: a diagnostic for tests and tools. The figures
/// are exact only for a page of the calling thread's heap (another
/// thread's may be changing).
// `p` is only an address: no byte of it is read, and the header is read
// only once the segment map says it is mapped.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub fn page_info(p: *const u8) -> Option<PageInfo> {
    let seg = segment_of(p);
    if !segmap_contains(seg) {
        return None;
    }
    // SAFETY: a registered segment's header is mapped; its descriptors are
    // read field by field through raw pointers (no reference to a page that
    // another thread may be writing).
    unsafe {
        if !(*seg).cookie_ok() || huge::is_huge(seg) {
            return None;
        }
        let page = Segment::page_of(seg, p);
        if !(*page).in_use() {
            return None;
        }
        let flags = (*page).flags.load(Relaxed);
        Some(PageInfo {
            start: (*page).start as usize,
            block_size: (*page).block_size(),
            capacity: (*page).carved(),
            reserved: (*page).reserved,
            used: (*page).used(),
            aligned: flags & ALIGNED != 0,
            floating: flags & super::page::FULL != 0,
        })
    }
}
