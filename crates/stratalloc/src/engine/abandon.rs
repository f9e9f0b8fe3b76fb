//! Thread exit and adoption: `abandon` gives up an exiting thread's
//! segments (empty pages freed, empty segments released, the rest on the
//! abandoned list); `reclaim` adopts one; `settle` puts a collected page
//! where it belongs; `collect_pending` takes back floating pages that
//! other threads freed into (the FULL-bit protocol of `page.rs`).

use core::ptr;
use core::sync::atomic::Ordering::*;

use super::heap::*;
use super::page::{Page, FULL, LARGE, TF_FULL};
use super::segment::{self, Segment};
use super::size_class::*;
use crate::os;

/// Adopt an abandoned segment: collect every page, requeue pages with
/// room, free empty ones. Returns false if the segment ended up freed.
pub(super) unsafe fn reclaim(h: &mut Heap, seg: *mut Segment) -> bool {
    // SAFETY: we own `seg` now.
    unsafe {
        (*seg).owner.store(h.id, Release);
        (*seg).pending.store(false, Relaxed);
        h.seg_push(seg);
        let now = os::now_ms();
        Segment::for_each_page(seg, |page| {
            (*page).clear_full();
            (*page).collect();
            settle(h, page, now);
        });
        !seg_free_if_empty(h, seg)
    }
}

/// Put an unqueued, collected page where it belongs: span released if
/// empty (the segment stays), queued last if it has room, floating
/// otherwise.
pub(super) unsafe fn settle(h: &mut Heap, page: *mut Page, now: u64) {
    // SAFETY: an in-use page of ours, in no queue, FULL cleared.
    unsafe {
        loop {
            if (*page).used == 0 {
                span_release(page, now);
                return;
            }
            if (*page).class != LARGE && (*page).has_room() {
                h.queue_push_back(page);
                return;
            }
            if (*page).try_mark_full() {
                return;
            }
            (*page).collect();
        }
    }
}

/// Take back floating pages with remote frees in segments flagged pending.
pub(super) unsafe fn collect_pending(h: &mut Heap) {
    let now = os::now_ms();
    let mut seg = h.segs;
    while !seg.is_null() {
        // SAFETY: our segments; `next` is read before `seg` may be freed.
        unsafe {
            let next = (*seg).next;
            if (*seg).pending.load(Relaxed) && (*seg).pending.swap(false, AcqRel) {
                Segment::for_each_page(seg, |page| {
                    if (*page).flags.load(Relaxed) & FULL == 0 {
                        return;
                    }
                    let tf = (*page).thread_free.load(Acquire);
                    if tf & TF_FULL != 0 && tf & !TF_FULL == 0 {
                        return; // still marked, nothing freed
                    }
                    (*page).clear_full();
                    (*page).collect();
                    settle(h, page, now);
                });
                seg_free_if_empty(h, seg);
            }
            seg = next;
        }
    }
}

// ------------------------------------------------------------ thread exit

/// Give up every segment of heap `h` (thread exit): empty pages are freed,
/// empty segments released, the rest abandoned for other threads.
pub unsafe fn abandon(h: *mut Heap) {
    // SAFETY: our own heap (the empty heap only read).
    if unsafe { (*h).id } == UNINIT {
        return;
    }
    // SAFETY: a heap of our own (not the static one).
    let h = unsafe { &mut *h };
    let now = os::now_ms();
    for c in 0..CLASSES {
        h.queues[c] = Queue {
            first: ptr::null_mut(),
            last: ptr::null_mut(),
        };
    }
    for w in 0..DIRECT_SLOTS {
        h.direct[w] = empty_page();
    }
    while !h.segs.is_null() {
        let seg = h.segs;
        h.seg_remove(seg);
        // SAFETY: a segment we own.
        unsafe {
            Segment::for_each_page(seg, |page| {
                (*page).next = ptr::null_mut();
                (*page).prev = ptr::null_mut();
                (*page).collect();
                if (*page).used == 0 {
                    span_release(page, now);
                }
            });
            if (*seg).is_empty() {
                segment::segment_free(seg);
            } else {
                (*seg).purge(now);
                (*seg).owner.store(0, Release);
                segment::abandon_push(seg);
            }
        }
    }
    // Back to the empty heap: a later malloc on this thread (another
    // thread-exit destructor) sets up a new one and registers again.
    tls::set(empty_heap());
    // SAFETY: no thread uses `h` any more.
    unsafe { heap_pool_give(h) };
}
