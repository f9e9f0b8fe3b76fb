//! Page queues: per size class, the heap's pages with room (`Heap::queues`,
//! with `direct` mirroring the heads of the small classes for the malloc
//! fast path), the heap's segment list, and the retiring of emptied pages
//! (`retire`, `for_each_emptied`).

use core::ptr;
use core::sync::atomic::Ordering::Release;

use super::heap::*;
use super::page::Page;
use super::segment::Segment;
use super::size_class::*;
use crate::os;

// ------------------------------------------------------------ queues

impl Heap {
    pub(super) fn set_direct(&mut self, class: usize) {
        if class_size(class) > DIRECT_MAX {
            return;
        }
        let p = if self.queues[class].first.is_null() {
            empty_page()
        } else {
            self.queues[class].first
        };
        let lo = if class == 0 {
            0
        } else {
            class_size(class - 1) / 16 + 1
        };
        let hi = class_size(class) / 16;
        for w in lo..=hi {
            self.direct[w] = p;
        }
    }

    /// Put `page` first (it has room) in its class queue.
    pub unsafe fn queue_push_front(&mut self, page: *mut Page) {
        // SAFETY: a page of ours not in any queue.
        unsafe {
            let c = (*page).class as usize;
            let q = &mut self.queues[c];
            (*page).prev = ptr::null_mut();
            (*page).next = q.first;
            if q.first.is_null() {
                q.last = page;
            } else {
                (*q.first).prev = page;
            }
            q.first = page;
            self.set_direct(c);
        }
    }

    /// Put `page` last (it has room, but few blocks: a floating page that
    /// got blocks back) in its class queue, so the pages ahead of it are
    /// used first and it gathers more frees before malloc comes to it.
    pub unsafe fn queue_push_back(&mut self, page: *mut Page) {
        // SAFETY: a page of ours not in any queue.
        unsafe {
            let c = (*page).class as usize;
            let q = &mut self.queues[c];
            if q.first.is_null() {
                return self.queue_push_front(page);
            }
            (*page).next = ptr::null_mut();
            (*page).prev = q.last;
            (*q.last).next = page;
            q.last = page;
        }
    }

    pub unsafe fn queue_remove(&mut self, page: *mut Page) {
        // SAFETY: `page` is in its class queue.
        unsafe {
            let c = (*page).class as usize;
            let q = &mut self.queues[c];
            let (n, p) = ((*page).next, (*page).prev);
            if p.is_null() {
                q.first = n;
            } else {
                (*p).next = n;
            }
            if n.is_null() {
                q.last = p;
            } else {
                (*n).prev = p;
            }
            (*page).next = ptr::null_mut();
            (*page).prev = ptr::null_mut();
            if p.is_null() {
                self.set_direct(c);
            }
        }
    }

    pub(super) fn seg_push(&mut self, seg: *mut Segment) {
        // SAFETY: a segment we own, in no list.
        unsafe {
            (*seg).prev = ptr::null_mut();
            (*seg).next = self.segs;
            if !self.segs.is_null() {
                (*self.segs).prev = seg;
            }
        }
        self.segs = seg;
        self.nsegs += 1;
        // SAFETY: as above; remote frees read it to find our pending stack.
        unsafe { (*seg).heap.store(self.slot, Release) };
        self.own[own_slot(seg as usize)] = seg as usize;
    }

    pub(super) fn seg_remove(&mut self, seg: *mut Segment) {
        let k = own_slot(seg as usize);
        if self.own[k] == seg as usize {
            self.own[k] = OWN_EMPTY;
        }
        // SAFETY: `seg` is in our list.
        unsafe {
            let (n, p) = ((*seg).next, (*seg).prev);
            if p.is_null() {
                self.segs = n;
            } else {
                (*p).next = n;
            }
            if !n.is_null() {
                (*n).prev = p;
            }
            (*seg).next = ptr::null_mut();
            (*seg).prev = ptr::null_mut();
            (*seg).heap.store(ptr::null_mut(), Release);
        }
        self.nsegs -= 1;
    }
}

/// A queued page became empty: it stays queued (ready for the next
/// malloc of its class without a span free + page setup) and is freed by
/// the periodic visit once it stayed empty for a purge delay, or before a
/// segment would be mapped. The only one-slice page of a class is not
/// stamped: the visit frees it after it stayed empty over two visits.
pub unsafe fn retire(h: &mut Heap, page: *mut Page) {
    // SAFETY: a queued page of ours.
    unsafe {
        let c = (*page).class as usize;
        h.emptied[c / 64] |= 1 << (c % 64);
        let q = h.queues[c];
        if q.first == page && q.last == page && (*page).slice_count() == 1 {
            return;
        }
        (*page).retired_at = os::now_ms() as u16;
    }
}

/// Call `f` on every empty queued page of the classes flagged in
/// `emptied`; a class with none loses its flag. `f` may free the page.
pub(super) unsafe fn for_each_emptied(h: &mut Heap, mut f: impl FnMut(&mut Heap, *mut Page)) {
    for w in 0..h.emptied.len() {
        let mut bits = h.emptied[w];
        while bits != 0 {
            let c = w * 64 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let mut any = false;
            let mut page = h.queues[c].first;
            // SAFETY: queued pages of ours; `next` read before `f` runs.
            unsafe {
                while !page.is_null() {
                    let next = (*page).next;
                    if (*page).used() == 0 {
                        any = true;
                        f(h, page);
                    }
                    page = next;
                }
            }
            if !any {
                h.emptied[w] &= !(1 << (c % 64));
            }
        }
    }
}
