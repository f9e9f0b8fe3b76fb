//! The allocation slow paths: a thread's first call (heap set-up), a small
//! class whose queue has no free block, large blocks, the owner's frees
//! that need care, and the periodic work (at most once per purge delay).

use core::ptr;
use core::sync::atomic::Ordering::*;

use super::heap::*;
use super::page::{Page, FULL, LARGE, TF_FULL};
use super::segment::{self, Segment, SLICE_SIZE};
use super::size_class::*;
use crate::os;
use crate::tuning::PAGE_VISITS;

// ------------------------------------------------------------ allocation

/// The start of every allocation slow path: give the thread a heap of its
/// own on its first use, trim it if another thread called `trim()` since
/// it last did, and run the periodic work (purge, reclaim) every 64 slow
/// calls. `None` when no heap could be set up (out of memory).
///
/// # Safety
/// `h` is the calling thread's heap.
#[inline(always)]
pub(super) unsafe fn enter_slow<'a>(mut h: *mut Heap) -> Option<&'a mut Heap> {
    // SAFETY: our own heap, per the function contract; the empty heap is
    // only read.
    unsafe {
        if (*h).id == UNINIT {
            h = init();
            if h.is_null() {
                return None;
            }
        }
        let h = &mut *h;
        if h.trim_seen != TRIM_EPOCH.load(Relaxed) {
            trim_own(h, os::now_ms());
        }
        h.slow_count += 1;
        if h.slow_count % 64 == 0 {
            super::remote::flush(h);
            periodic(h);
        }
        Some(h)
    }
}

/// Allocate a block of class `c` (slow path: find or make a page).
#[cold]
#[inline(never)]
pub unsafe fn alloc_class_slow(h: *mut Heap, c: usize) -> *mut u8 {
    // SAFETY: our own heap.
    unsafe {
        let Some(h) = enter_slow(h) else {
            return ptr::null_mut();
        };
        for attempt in 0..3 {
            // Freed blocks in the queue go before fresh ones are carved
            // (carving touches new memory): the first page that can only
            // be extended is remembered and extended if no page has free
            // blocks, or once [`PAGE_VISITS`] pages were looked at (so a
            // long queue of such pages is not walked on every call; full
            // pages are floated on the way, out of the queue).
            let mut extendable: *mut Page = ptr::null_mut();
            let mut visits = 0;
            let mut page = h.queues[c].first;
            while !page.is_null() {
                visits += 1;
                let next = (*page).next;
                Page::collect(page);
                if !(*page).free.is_null() {
                    if page != h.queues[c].first {
                        h.queue_remove(page);
                        h.queue_push_front(page);
                    }
                    return Page::pop(page, h.secret);
                }
                if (*page).carved() < (*page).reserved {
                    if extendable.is_null() {
                        extendable = page;
                    }
                    if visits >= PAGE_VISITS {
                        break;
                    }
                    page = next;
                    continue;
                }
                // Full: unlink and float it.
                h.queue_remove(page);
                if !(*page).try_mark_full() {
                    Page::collect(page);
                    h.queue_push_front(page);
                    return Page::pop(page, h.secret);
                }
                page = next;
            }
            h.queue_visits += visits as u64;
            if !extendable.is_null() {
                Page::extend(extendable);
                if extendable != h.queues[c].first {
                    h.queue_remove(extendable);
                    h.queue_push_front(extendable);
                }
                return Page::pop(extendable, h.secret);
            }
            // Then floating pages of ours that got blocks back; then pages
            // with room in segments exited threads left.
            if attempt == 0 {
                collect_pending(h);
            } else if attempt == 1 && !adopt_for_class(h, c) {
                break;
            }
        }
        // A fresh page. If this class lost its empty page to another
        // class's span a moment ago (a regret), it was not done with it.
        // When regrets are over a quarter of recent fresh pages, stealing
        // is churning pages of classes still in use (a random churn: each
        // regret steals from another class, which regrets in turn, a chain
        // of page setups ending in clean slices, ~40% regrets), so a
        // regret's page takes no other class's empty page. A program that
        // left classes behind (a buffer grown through them: ~8% regrets,
        // laggards) keeps reusing them.
        let s = h.stolen_at[c];
        let regret = s != 0 && (h.slow_count as u32).wrapping_sub(s) < STEAL_REGRET;
        h.fresh_pages += 1;
        h.regrets += regret as u32;
        if h.fresh_pages >= 256 {
            h.fresh_pages /= 2;
            h.regrets /= 2;
        }
        let steal = !regret || h.regrets * 4 < h.fresh_pages;
        let n = class_slices(c);
        let page = span_alloc(h, n, steal);
        if page.is_null() {
            return ptr::null_mut();
        }
        let bs = class_size(c);
        Page::init(page, c as u8, bs, ((n * SLICE_SIZE) / bs) as u32);
        Page::extend(page);
        h.queue_push_front(page);
        Page::pop(page, h.secret)
    }
}

/// Periodic slow-path work (at most once per purge delay): free the empty
/// pages kept by `retire` that stayed empty since the previous visit,
/// purge due segments, adopt one abandoned segment, run the global purge.
pub(super) unsafe fn periodic(h: &mut Heap) {
    let now = os::now_ms();
    if now >= h.next_purge {
        h.next_purge = now + segment::PURGE_DELAY_MS;
        // SAFETY: our heap; queued pages are valid.
        unsafe {
            for c in 0..CLASSES {
                let page = h.queues[c].first;
                let bit = 1u64 << (c % 64);
                let idle = !page.is_null()
                    && (*page).used() == 0
                    && (*page).next.is_null()
                    && (*page).slice_count() == 1;
                if !idle {
                    h.retired[c / 64] &= !bit;
                } else if h.retired[c / 64] & bit == 0 {
                    h.retired[c / 64] |= bit;
                } else {
                    h.retired[c / 64] &= !bit;
                    h.queue_remove(page);
                    page_free(h, page, now);
                }
            }
            free_retired(h, segment::PURGE_DELAY_MS, now);
            purge_due(h, now, false);
            // Tidy the oldest abandoned segment (adopted by nobody: this
            // thread may have no use for it), so that memory other threads
            // freed into it is taken back, and the segment freed once
            // empty, even when no thread needs a new page.
            let seg = segment::abandon_pop();
            if !seg.is_null() && tidy(seg) {
                Segment::purge(seg, now);
                segment::abandon_push(seg);
            }
        }
        segment::global_purge(now);
    }
}

/// A large block: one block on a span of `n` slices (floating page).
/// Returns the page (the block is at `page.start`).
pub unsafe fn alloc_large(h: *mut Heap, n: usize) -> *mut Page {
    // SAFETY: our own heap.
    unsafe {
        let Some(h) = enter_slow(h) else {
            return ptr::null_mut();
        };
        let mut page = span_alloc(h, n, true);
        if page.is_null() {
            collect_pending(h);
            page = span_alloc(h, n, true);
            if page.is_null() {
                return page;
            }
        }
        Page::init(page, LARGE, n * SLICE_SIZE, 1);
        // The one block is handed out at once; the page floats.
        (*page).set_capacity(1);
        (*page).set_used(1);
        (*page).thread_free.store(TF_FULL, Relaxed);
        (*page).set_flags(FULL);
        // The block is handed out without a pop: clear the key word a free
        // block of an earlier page on this span may have left there (a free
        // finding the key takes it for a double free).
        (*(*page).start.cast::<super::page::Block>()).key = 0;
        page
    }
}

/// Resize the large block `p` in place to hold `new_size` bytes (still a
/// large size) when the calling thread owns it and the neighbouring slices
/// allow. Returns whether it did.
///
/// # Safety
/// `p` is a live block of the engine.
pub unsafe fn large_resize_in_place(p: *mut u8, new_size: usize) -> bool {
    let seg = segment::segment_of(p);
    // SAFETY: `p` is live, so its segment is mapped and registered.
    unsafe {
        if (*seg).kind != segment::Kind::Normal || (*seg).owner.load(Relaxed) != (*heap()).id {
            return false;
        }
        let page = Segment::page_of(seg, p);
        if (*page).class != LARGE || (*page).start != p {
            return false;
        }
        let n = new_size.div_ceil(SLICE_SIZE);
        let i = page.offset_from((*seg).pages.as_ptr()) as usize;
        if !Segment::resize_span(seg, i, n, os::now_ms()) {
            return false;
        }
        Page::set_block_size(page, n * SLICE_SIZE);
        true
    }
}

/// The owner's free of a block on a page that needs care (floating,
/// aligned, or now empty). `b` is the block start.
pub unsafe fn free_local_slow(h: *mut Heap, page: *mut Page, b: *mut u8) {
    // SAFETY: the caller checked we own the page.
    unsafe {
        // Every access through `page` itself: a reference kept across the
        // write to `local_free` would be invalidated by it.
        let h = &mut *h;
        if (*page).used() == 0 {
            crate::fatal!("double free of {:p} (page has no blocks in use)", b);
        }
        let blk = b as *mut super::page::Block;
        (*blk).next = super::page::Block::link(blk, (*page).local_free, h.secret);
        (*blk).key = Page::key(page, h.secret);
        (*page).local_free = blk;
        (*page).set_used((*page).used() - 1);
        let floating = (*page).flags.load(Relaxed) & FULL != 0;
        if floating {
            (*page).clear_full();
            Page::collect(page);
            settle(h, page, os::now_ms());
            seg_free_if_empty(h, segment::segment_of(b));
        } else if (*page).used() == 0 {
            (*page).reset_if_empty();
            retire(h, page);
        }
    }
}
