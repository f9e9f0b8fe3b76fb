//! Thread exit and adoption: `abandon` gives up an exiting thread's
//! segments (empty pages freed, empty segments released, the rest on the
//! abandoned list); `adopt_where` looks at abandoned segments for one a
//! slow path can use (`tidy` takes back their remote frees and frees
//! empty ones) and `reclaim` adopts it; `settle` puts a collected page
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
        // `pending` stays as it is: if set, the segment is on some heap's
        // stack, which passes it on to us (`collect_pending`).
        (*seg).owner.store(h.id, Release);
        h.seg_push(seg);
        let now = os::now_ms();
        Segment::for_each_page(seg, |page| {
            (*page).clear_full();
            Page::collect(page);
            settle(h, page, now);
        });
        !seg_free_if_empty(h, seg)
    }
}

/// Before a fresh page of class `c` is set up: adopt an abandoned
/// segment that has a page of the class with room (see [`adopt_where`]);
/// true if one was adopted, its pages with room now queued.
pub(super) unsafe fn adopt_for_class(h: &mut Heap, c: usize) -> bool {
    // SAFETY: our heap.
    let seg = unsafe {
        adopt_where(h, |seg| {
            let mut room = false;
            Segment::for_each_page(seg, |page| {
                room |= (*page).class as usize == c && (*page).has_room();
            });
            room
        })
    };
    !seg.is_null()
}

/// Look at abandoned segments, oldest first, at most [`ADOPT_VISITS`]:
/// each is tidied (remote frees taken back, empty spans released; freed
/// if that emptied it); the first for which `fits` holds is adopted by
/// `h` (returned), the others go back to the end of the list for the
/// next look. So threads reuse what exited threads left, even while it
/// holds live blocks, without taking segments they have no use for; and
/// every abandoned segment is looked at in turn. Null if none fits (one
/// load when nothing is abandoned).
///
/// # Safety
/// `h` is the calling thread's heap; `fits` is given a tidied segment
/// nobody else uses.
pub(super) unsafe fn adopt_where(
    h: &mut Heap,
    fits: impl Fn(*mut Segment) -> bool,
) -> *mut Segment {
    for _ in 0..ADOPT_VISITS {
        let seg = segment::abandon_pop();
        if seg.is_null() {
            break;
        }
        // SAFETY: popped from the abandoned list: ours alone until pushed
        // back.
        unsafe {
            if !tidy(seg) {
                continue;
            }
            // A raised `pending` flag: the segment is still on the stack
            // of a heap that gave it up; adopted once that passes it on.
            if !(*seg).pending.load(Acquire) && fits(seg) {
                if reclaim(h, seg) {
                    return seg;
                }
                continue;
            }
            Segment::purge(seg, os::now_ms());
            segment::abandon_push(seg);
        }
    }
    ptr::null_mut()
}

/// Tidy an abandoned segment without adopting it: take back the remote
/// frees of every page and release the spans that left empty; free the
/// segment if it is empty. Returns false if it was freed.
///
/// # Safety
/// `seg` was taken off the abandoned list by the caller (no heap owns it).
pub(super) unsafe fn tidy(seg: *mut Segment) -> bool {
    let now = os::now_ms();
    // SAFETY: nobody else owns `seg`; other threads only push remote
    // frees, which `collect` takes with an atomic swap.
    unsafe {
        Segment::for_each_page(seg, |page| {
            Page::collect(page);
            if (*page).used() == 0 {
                span_release(page, now);
            }
        });
        if (*seg).releasable() {
            segment::segment_free(seg);
            return false;
        }
    }
    true
}

pub use crate::tuning::ADOPT_VISITS;

/// Put an unqueued, collected page where it belongs: span released if
/// empty (the segment stays), queued last if it has room, floating
/// otherwise.
pub(super) unsafe fn settle(h: &mut Heap, page: *mut Page, now: u64) {
    // SAFETY: an in-use page of ours, in no queue, FULL cleared.
    unsafe {
        loop {
            if (*page).used() == 0 {
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
            Page::collect(page);
        }
    }
}

/// Take back floating pages with remote frees in the segments on our
/// pending stack (taken whole: one swap; no walk of our other segments).
/// A segment pushed here after this heap gave it up (the freer read the
/// old owner) is passed on to its owner now, or dropped if abandoned.
pub(super) unsafe fn collect_pending(h: &mut Heap) {
    // SAFETY: our heap (not the empty one: callers are past `enter_slow`).
    let head = unsafe { Heap::pending_head(h.slot) };
    // A load first: the swap's atomic write only when there is something.
    if head.load(Relaxed).is_null() {
        return;
    }
    let mut seg = head.swap(ptr::null_mut(), Acquire);
    let now = os::now_ms();
    while !seg.is_null() {
        h.pending_visits += 1;
        // SAFETY: a segment on our stack has `pending` set, so it is mapped
        // and not freed; once the flag is cleared (after its link is read:
        // a remote free may push it again) only our own segments are
        // touched.
        unsafe {
            let next = (*seg).pending_next.load(Relaxed);
            if (*seg).heap.load(Acquire) != h.slot {
                Heap::pass_on(seg);
                seg = next;
                continue;
            }
            (*seg).pending.swap(false, AcqRel);
            Segment::for_each_page(seg, |page| {
                if (*page).flags.load(Relaxed) & FULL == 0 {
                    return;
                }
                let tf = (*page).thread_free.load(Acquire);
                if tf & TF_FULL != 0 && tf & !TF_FULL == 0 {
                    return; // still marked, nothing freed
                }
                (*page).clear_full();
                Page::collect(page);
                settle(h, page, now);
            });
            seg_free_if_empty(h, seg);
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
    // SAFETY: our heap.
    unsafe { super::remote::flush(h) };
    // Floating pages with remote frees taken back first (and our stack
    // emptied: the segments' `pending` flags cleared, so that those left
    // empty below can be freed).
    // SAFETY: our heap.
    unsafe { collect_pending(h) };
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
                Page::collect(page);
                if (*page).used() == 0 {
                    span_release(page, now);
                }
            });
            if (*seg).releasable() {
                segment::segment_free(seg);
            } else {
                Segment::purge(seg, now);
                (*seg).owner.store(0, Release);
                segment::abandon_push(seg);
            }
        }
    }
    // Segments pushed on our stack since: their `heap` is null now, so
    // this only clears their flags (whoever adopts or tidies them
    // collects every page). A remote free that read our heap before it
    // was cleared may still push one later: it sees the change and passes
    // the stack on itself (`remote.rs::notify`); so does the next thread
    // to take this heap from the pool (`init`).
    // SAFETY: our heap.
    unsafe { collect_pending(h) };
    // Back to the empty heap: a later malloc on this thread (another
    // thread-exit destructor) sets up a new one and registers again.
    tls::set(empty_heap());
    // SAFETY: no thread uses `h` any more. The pool gets the slot pointer
    // (its provenance covers the pending stack's head after the `Heap`).
    unsafe { heap_pool_give(h.slot) };
}
