//! Span placement for the heap: where a new page's slices come from
//! (dirty slices of our segments, slices freed by taking empty pages,
//! clean slices, abandoned segments, a new segment), releasing spans and
//! empty segments, and purging slices whose delay has passed.

use core::ptr;

use super::heap::*;
use super::page::Page;
use super::segment::{self, Segment};
use super::size_class::*;
use crate::os;

// ------------------------------------------------------------ spans

/// Free the span of `page` back to its segment (the segment stays, even
/// if empty: callers release it with `seg_free_if_empty`).
pub unsafe fn span_release(page: *mut Page, now: u64) {
    let seg = segment::segment_of(page.cast());
    // SAFETY: `page` is an in-use page of `seg`, which we own.
    unsafe {
        let i = page.offset_from((*seg).pages.as_ptr()) as usize;
        Segment::free_span(seg, i, now);
    }
}

/// Free the span of `page`; release its segment if that emptied it.
pub unsafe fn page_free(h: &mut Heap, page: *mut Page, now: u64) {
    let seg = segment::segment_of(page.cast());
    // SAFETY: forwarded.
    unsafe {
        span_release(page, now);
        seg_free_if_empty(h, seg);
    }
}

/// A span of `n` slices from our segments, a reclaimed one, or a new one.
///
/// Resident memory goes first: a run of dirty slices in any of our
/// segments (`Segment::dirty_span`); else one made by freeing empty pages
/// (`span_from_empty`); only then clean slices, which the page will fault
/// in. A buffer that grows through the classes thus reuses the pages of
/// the classes it left instead of touching new memory. Without `steal`
/// the second step is skipped (see `alloc_class_slow`: regrets).
pub(super) unsafe fn span_alloc(h: &mut Heap, n: usize, steal: bool) -> *mut Page {
    // SAFETY: our heap and segments.
    unsafe {
        let mut at = find_span(h, n, Segment::dirty_span);
        if at.is_none() && steal {
            at = span_from_empty(h, n);
        }
        if at.is_none() {
            at = find_span(h, n, Segment::clean_span);
        }
        if let Some((seg, i)) = at {
            Segment::take_span_at(seg, i, n);
            return ptr::addr_of_mut!((*seg).pages[i]);
        }
    }
    // Adopt an abandoned segment with room before mapping more.
    // SAFETY: our heap; `adopt_where` hands `fits` a segment nobody else
    // uses.
    unsafe {
        let seg = adopt_where(h, |seg| (*seg).clean_span(n).is_some());
        if !seg.is_null() {
            if let Some(i) = Segment::take_span(seg, n) {
                return ptr::addr_of_mut!((*seg).pages[i]);
            }
        }
    }
    // Empty pages kept by `retire` go back before more memory is mapped.
    // SAFETY: our heap.
    if unsafe { free_retired(h, 0, os::now_ms()) } {
        // SAFETY: as above (the list may have lost emptied segments).
        unsafe { return span_alloc(h, n, steal) };
    }
    let seg = segment::segment_alloc(h.id);
    if seg.is_null() {
        return ptr::null_mut();
    }
    h.seg_push(seg);
    // SAFETY: a fresh segment has 63 free slices and n <= 32.
    unsafe {
        let i = Segment::take_span(seg, n).unwrap_or(1);
        ptr::addr_of_mut!((*seg).pages[i])
    }
}

/// The first of our segments where `pick` finds room for `n` slices, and
/// the first slice there.
pub(super) unsafe fn find_span(
    h: &mut Heap,
    n: usize,
    pick: fn(&Segment, usize) -> Option<usize>,
) -> Option<(*mut Segment, usize)> {
    let mut seg = h.segs;
    while !seg.is_null() {
        // SAFETY: our segments.
        unsafe {
            if let Some(i) = pick(&*seg, n) {
                return Some((seg, i));
            }
            seg = (*seg).next;
        }
    }
    None
}

/// Release `seg` if no span is in use (and it is on no pending stack:
/// else `collect_pending` releases it when it pops it).
pub(super) unsafe fn seg_free_if_empty(h: &mut Heap, seg: *mut Segment) -> bool {
    // SAFETY: a segment of ours.
    unsafe {
        if (*seg).releasable() {
            h.seg_remove(seg);
            segment::segment_free(seg);
            return true;
        }
    }
    false
}

/// Purge dirty slices whose delay has passed (all of them if `force`).
pub(super) unsafe fn purge_due(h: &mut Heap, now: u64, force: bool) -> bool {
    let mut any = false;
    let mut seg = h.segs;
    while !seg.is_null() {
        // SAFETY: our segments.
        unsafe {
            if (*seg).dirty_mask() != 0 {
                let at = (*seg).purge_at;
                if force {
                    Segment::purge(seg, now);
                    any = true;
                } else if at != 0 && at <= now {
                    any |= Segment::purge_aged(seg, now);
                }
            }
            seg = (*seg).next;
        }
    }
    any
}

/// A span of `n` dirty slices made by freeing empty queued pages of the
/// classes flagged in `emptied` (only the pages it covers), when no dirty
/// run has room: `(segment, first slice)`, the slices free now; None if
/// no such pages would make room. Their slices are resident: reusing them
/// beats faulting in new memory, and a class the program stopped asking
/// for (a buffer grown past it) gives its pages back while the program is
/// busy elsewhere, not only after the 10 ms rules. Pages that would not
/// make the room stay queued (freeing them would only fragment the dirty
/// slices).
pub(super) unsafe fn span_from_empty(h: &mut Heap, n: usize) -> Option<(*mut Segment, usize)> {
    // The empty pages' slices per segment, in each segment's scratch mask.
    // SAFETY: queued pages of ours; their segments are ours.
    unsafe {
        for_each_emptied(h, |_, page| {
            let seg = segment::segment_of(page.cast());
            let i = page.offset_from((*seg).pages.as_ptr()) as usize;
            (*seg).scratch |= segment::span_bits(i, (*page).slice_count() as usize);
        });
    }
    let mut at = None;
    let mut seg = h.segs;
    while !seg.is_null() {
        // SAFETY: our segments.
        unsafe {
            let e = (*seg).scratch;
            (*seg).scratch = 0;
            if e != 0 && at.is_none() {
                let (free, dirty) = ((*seg).free_mask(), (*seg).dirty_mask());
                if let Some(i) = segment::dirty_span_in(free | e, dirty | e, n) {
                    at = Some((seg, i, segment::span_bits(i, n) & e));
                }
            }
            seg = (*seg).next;
        }
    }
    let (seg, i, need) = at?;
    let now = os::now_ms();
    // SAFETY: as above; `span_release` keeps the segment even if it empties.
    unsafe {
        for_each_emptied(h, |h, page| {
            if segment::segment_of(page.cast()) != seg {
                return;
            }
            let j = page.offset_from((*seg).pages.as_ptr()) as usize;
            if segment::span_bits(j, (*page).slice_count() as usize) & need == 0 {
                return;
            }
            // The slices have been unused since the page emptied: their
            // purge delay counts from then (`retire` stamps that time; the
            // only one-slice page of a class, which the free fast path
            // does not stamp, counts from now).
            let lone =
                (*page).prev.is_null() && (*page).next.is_null() && (*page).slice_count() == 1;
            let idle = if lone {
                0
            } else {
                (now as u16).wrapping_sub((*page).retired_at) as u64
            };
            let c = (*page).class as usize;
            h.stolen_at[c] = (h.slow_count as u32).max(1);
            h.queue_remove(page);
            span_release(page, now.saturating_sub(idle));
        });
    }
    Some((seg, i))
}

/// Free the queued empty pages (other than a class's only one-slice page)
/// that were retired at least `age` ms ago; true if any was freed.
pub(super) unsafe fn free_retired(h: &mut Heap, age: u64, now: u64) -> bool {
    let mut any = false;
    for c in 0..CLASSES {
        let mut page = h.queues[c].first;
        // SAFETY: queued pages of ours; `next` read before a page is freed.
        unsafe {
            if !page.is_null() && (*page).next.is_null() && (*page).slice_count() == 1 {
                continue;
            }
            while !page.is_null() {
                let next = (*page).next;
                let idle = (now as u16).wrapping_sub((*page).retired_at) as u64;
                if (*page).used() == 0 && idle >= age {
                    h.queue_remove(page);
                    // The slices have been unused since the page emptied:
                    // their purge delay counts from then.
                    page_free(h, page, now.saturating_sub(idle));
                    any = true;
                }
                page = next;
            }
        }
    }
    any
}
