//! Thread heaps: the `Heap` type, its invariants, `trim` and `check`. The
//! rest of a heap's life is split by concern: `init` (thread set-up, TLS,
//! the heap pool), `queue` (page queues), `span` (where spans come from),
//! `slow` (the allocation slow paths), `abandon` (thread exit, adoption).
//!
//! ```text
//!   TLS slot --> Heap (mapped by the engine, pooled; or the static empty heap)
//!   direct[0..=64] --> page serving (size+15)/16     (fast path: 1 load)
//!   queues[class]  --> page <-> page <-> page         (pages with room first)
//!   segs           --> segment <-> segment            (all segments owned)
//! ```
//!
//! Invariants (between calls, for an initialised heap):
//! - `direct[w]` is the head of `queues[DIRECT_CLASS[w]]`, or the static
//!   empty page when that queue is empty
//! - every page in `queues[c]` is an in-use page of class `c` of a segment
//!   in `segs`; every in-use class page of those segments not in a queue is
//!   floating (`FULL`); large pages are always floating
//! - every segment in `segs` has `owner == id` and `heap == slot`
//! - the pending stack (after the `Heap` in its slot, see [`HEAP_SLOT`])
//!   holds segments with `pending` set, each on this one stack only; those
//!   of other heaps or abandoned ones (pushed late) are passed on when it
//!   is taken
//! - `own[k]` is [`OWN_EMPTY`] or a segment in `segs` with
//!   `own_slot(seg) == k` (a cache of owned segments for the free fast
//!   path: a hit proves the pointer's segment is ours and mapped without
//!   the segment map; a miss proves nothing)
//! - `remote` and `remote_open` hold the remote frees this thread has not
//!   pushed yet, a chain per page (invariants in `remote.rs`)
//! - `emptied` and `retired` are hints with no invariant (a flagged class
//!   may have no empty page); so are `stolen_at`, `fresh_pages`, `regrets`
//!
//! A thread's slot points to the static, read-only empty heap
//! (`id == UNINIT`, every direct slot on the empty page, so the fast paths
//! need no null check) until its first slow path: that takes a heap from
//! the pool (heaps of exited threads, or a fresh 64 KiB chunk), gives it a
//! fresh id and registers the thread-exit destructor. At thread exit the
//! heap is abandoned, given back to the pool and the slot reset.

use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering::*};

use super::page::{Page, FULL, LARGE};
use super::remote::{Batch, REMOTE_SLOTS};
use super::segment::{self, Segment, SLICES_PER_SEGMENT};
use super::size_class::*;
use crate::os;

pub use super::abandon::*;
pub use super::init::*;
pub use super::queue::*;
pub use super::slow::*;
pub use super::span::*;

/// The id of a heap that has not been initialised yet (never an owner).
pub const UNINIT: usize = usize::MAX;

#[derive(Clone, Copy)]
pub struct Queue {
    pub first: *mut Page,
    pub last: *mut Page,
}

#[repr(C)]
pub struct Heap {
    pub direct: [*mut Page; DIRECT_SLOTS],
    /// The process's free-list secret (`page::secret()`), copied here so
    /// the fast paths read it next to the heap (0 in the empty heap,
    /// whose pages have no blocks).
    pub secret: usize,
    pub id: usize,
    /// Segments of ours by `own_slot` (see the invariants): the free fast
    /// path's whole "ours, mapped, owned by me" test is one compare.
    pub own: [usize; OWN_SLOTS],
    pub queues: [Queue; CLASSES],
    pub segs: *mut Segment,
    pub nsegs: usize,
    pub next_purge: u64,
    /// Malloc slow paths taken (for periodic work).
    pub slow_count: u64,
    /// Bit per class: its only page was empty at the last periodic visit.
    pub retired: [u64; CLASSES.div_ceil(64)],
    /// Bit per class: a local free emptied one of its queued pages (a
    /// hint: the page may be in use again; `span_from_empty` clears the
    /// bit of a class it finds no empty page of).
    pub emptied: [u64; CLASSES.div_ceil(64)],
    /// Per class: `slow_count` (truncated, never 0) when `span_from_empty`
    /// last freed a page of it; 0 if it never did.
    pub stolen_at: [u32; CLASSES],
    /// Fresh class pages set up, and how many of them were regrets (the
    /// class lost a page to `span_from_empty` within [`STEAL_REGRET`] slow
    /// paths), both halved every 256 fresh pages.
    pub fresh_pages: u32,
    pub regrets: u32,
    /// [`TRIM_EPOCH`] when this heap last trimmed itself.
    pub trim_seen: u32,
    /// Bit per open slot of `remote`.
    pub remote_open: u64,
    /// Remote frees waiting to be pushed, a chain per page (`remote.rs`).
    pub remote: [Batch; REMOTE_SLOTS],
    /// Segments `collect_pending` visited, and pages the allocation slow
    /// path's queue walks visited when they found no free block
    /// (diagnostics for tests).
    pub pending_visits: u64,
    pub queue_visits: u64,
    /// This heap's memory (the pointer `init` got from the pool, whose
    /// provenance covers the whole slot, pending stack included): what
    /// the heap's segments name as their owner.
    pub slot: *mut Heap,
}

/// Bytes of heap memory per heap: the `Heap`, then the head of its
/// pending stack, which is outside the struct because other threads push
/// there while the owner holds `&mut Heap`, and `init` does not write it
/// (a late push may land in a heap whose thread exited). The stack holds
/// segments whose `pending` flag a remote free raised, linked through
/// `Segment::pending_next` (a Treiber stack: any thread pushes; takers
/// take the whole stack with one swap, so no ABA).
pub const HEAP_SLOT: usize =
    (core::mem::size_of::<Heap>() + core::mem::size_of::<usize>()).next_multiple_of(64);

/// `trim()` calls so far: a heap that has seen fewer frees its empty
/// pages and purges its free slices at its next slow path, so a trim on
/// one thread reaches every thread that still allocates.
pub static TRIM_EPOCH: AtomicU32 = AtomicU32::new(0);

pub use crate::tuning::STEAL_REGRET;

/// Slots of `Heap::own`.
pub const OWN_SLOTS: usize = 8;
/// An empty `Heap::own` slot: no segment address (nor null's segment, 0)
/// equals it.
pub const OWN_EMPTY: usize = 1;

/// The `Heap::own` slot of segment address `seg`.
#[inline(always)]
pub fn own_slot(seg: usize) -> usize {
    (seg >> segment::SEGMENT_SHIFT) % OWN_SLOTS
}

/// A page with no free blocks, shared by every uninitialised slot, so the
/// fast path needs no null check. Never written (all zeros, no atomics
/// touched).
#[repr(C, align(64))]
pub struct EmptyPage([u8; core::mem::size_of::<Page>()]);
pub static EMPTY_PAGE: EmptyPage = EmptyPage([0; core::mem::size_of::<Page>()]);

#[inline(always)]
pub fn empty_page() -> *mut Page {
    &EMPTY_PAGE as *const EmptyPage as *mut Page
}

impl Heap {
    pub const INIT: Heap = Heap {
        direct: [&EMPTY_PAGE as *const EmptyPage as *mut Page; DIRECT_SLOTS],
        secret: 0,
        id: UNINIT,
        own: [OWN_EMPTY; OWN_SLOTS],
        queues: [Queue {
            first: ptr::null_mut(),
            last: ptr::null_mut(),
        }; CLASSES],
        segs: ptr::null_mut(),
        nsegs: 0,
        next_purge: 0,
        slow_count: 0,
        retired: [0; CLASSES.div_ceil(64)],
        emptied: [0; CLASSES.div_ceil(64)],
        stolen_at: [0; CLASSES],
        fresh_pages: 0,
        regrets: 0,
        trim_seen: 0,
        remote_open: 0,
        remote: [Batch::EMPTY; REMOTE_SLOTS],
        pending_visits: 0,
        queue_visits: 0,
        slot: ptr::null_mut(),
    };

    /// The head of the pending stack of the heap in slot `h` (see
    /// [`HEAP_SLOT`]).
    ///
    /// # Safety
    /// `h` is a heap slot from the pool (`Heap::slot` or `Segment::heap`,
    /// never the static empty heap); heap memory is never unmapped.
    #[inline]
    pub unsafe fn pending_head<'a>(h: *mut Heap) -> &'a AtomicPtr<Segment> {
        // SAFETY: the word after the `Heap` lies inside its slot, aligned
        // (the size of `Heap` is a multiple of its alignment, 8 or more),
        // zero in a fresh chunk, and only ever accessed atomically.
        unsafe {
            &*h.cast::<u8>()
                .add(core::mem::size_of::<Heap>())
                .cast::<AtomicPtr<Segment>>()
        }
    }

    /// Push `seg` (its `pending` flag just raised by the caller, or passed
    /// on by a heap that took it) on heap `h`'s pending stack.
    ///
    /// # Safety
    /// As [`Heap::pending_head`]; `seg` is mapped and on no stack, and its
    /// `pending` flag is set (so nobody frees it or pushes it meanwhile).
    pub unsafe fn pending_push(h: *mut Heap, seg: *mut Segment) {
        // SAFETY: per the contract.
        unsafe {
            let head = Heap::pending_head(h);
            let mut old = head.load(Relaxed);
            loop {
                (*seg).pending_next.store(old, Relaxed);
                match head.compare_exchange_weak(old, seg, AcqRel, Relaxed) {
                    Ok(_) => return,
                    Err(o) => old = o,
                }
            }
        }
    }

    /// Pass a segment taken off some heap's pending stack on to the heap
    /// that owns it now: pushed there (its flag stays raised), or, if it
    /// is abandoned, its flag cleared (adoption waits for that; whoever
    /// adopts or tidies it collects every page). The segment may be freed
    /// as soon as this returns.
    ///
    /// # Safety
    /// `seg` was taken off a pending stack by the caller (its flag set).
    pub unsafe fn pass_on(seg: *mut Segment) {
        // SAFETY: per the contract: mapped until its flag is cleared.
        unsafe {
            let o = (*seg).heap.load(Acquire);
            if o.is_null() {
                (*seg).pending.swap(false, AcqRel);
            } else {
                Heap::pending_push(o, seg);
            }
        }
    }

    /// Take heap `h`'s whole pending stack and pass every segment on (a
    /// remote free found that it pushed a segment on the stack of a heap
    /// that had given it up).
    ///
    /// # Safety
    /// As [`Heap::pending_head`].
    pub unsafe fn pass_on_all(h: *mut Heap) {
        // SAFETY: per the contract; every segment on the stack has its flag
        // set; its link is read before it is passed on.
        unsafe {
            let mut seg = Heap::pending_head(h).swap(ptr::null_mut(), AcqRel);
            while !seg.is_null() {
                let next = (*seg).pending_next.load(Relaxed);
                Heap::pass_on(seg);
                seg = next;
            }
        }
    }
}

// ------------------------------------------------------------ trim, check

/// Return what this thread can return: empty pages, dirty slices, empty
/// abandoned segments, cached segments; and ask every other heap to free
/// its empty pages at its next slow path ([`TRIM_EPOCH`]).
pub unsafe fn trim(h: *mut Heap) -> bool {
    let before = os::stats().returned;
    TRIM_EPOCH.fetch_add(1, Relaxed);
    // SAFETY: our heap.
    unsafe {
        let h = if (*h).id == UNINIT { init() } else { h };
        if h.is_null() {
            return false;
        }
        let h = &mut *h;
        let now = os::now_ms();
        trim_own(h, now);
        // Adopt every abandoned segment (frees the empty ones).
        let n = segment::abandoned_count();
        for _ in 0..n {
            let seg = segment::abandon_pop();
            if seg.is_null() {
                break;
            }
            if (*seg).pending.load(Acquire) {
                // Not adoptable yet (see `adopt_where`).
                if tidy(seg) {
                    segment::abandon_push(seg);
                }
                continue;
            }
            reclaim(h, seg);
        }
        purge_due(h, now, true);
    }
    segment::drain_cache();
    os::stats().returned > before
}

/// Push this heap's batches of remote frees, free its empty pages
/// (remote frees taken back first) and purge its free slices now; note
/// the trim epoch seen.
///
/// # Safety
/// `h` is the calling thread's initialised heap.
pub(super) unsafe fn trim_own(h: &mut Heap, now: u64) {
    h.trim_seen = TRIM_EPOCH.load(Relaxed);
    // SAFETY: our heap; queued pages are valid, `next` read before a page
    // is freed.
    unsafe {
        super::remote::flush(h);
        collect_pending(h);
        for c in 0..CLASSES {
            let mut page = h.queues[c].first;
            while !page.is_null() {
                let next = (*page).next;
                Page::collect(page);
                if (*page).used() == 0 {
                    h.queue_remove(page);
                    page_free(h, page, now);
                }
                page = next;
            }
        }
        purge_due(h, now, true);
    }
}

/// In-use pages (spans) in the segments of heap `h`.
pub unsafe fn page_count(h: *mut Heap) -> usize {
    let mut n = 0;
    // SAFETY: our heap and segments.
    unsafe {
        let mut seg = (*h).segs;
        while !seg.is_null() {
            Segment::for_each_page(seg, |_| n += 1);
            seg = (*seg).next;
        }
    }
    n
}

/// Verify the invariants of this thread's heap and of its segments.
pub unsafe fn check(h: *mut Heap) -> Result<(), &'static str> {
    // SAFETY: our heap.
    let h = unsafe { &*h };
    for (w, &c) in DIRECT_CLASS.iter().enumerate() {
        let c = c as usize;
        let want = if h.queues[c].first.is_null() {
            empty_page()
        } else {
            h.queues[c].first
        };
        if h.direct[w] != want {
            return Err("direct slot is not its queue head");
        }
    }
    let mut queued = 0usize;
    for c in 0..CLASSES {
        let mut page = h.queues[c].first;
        let mut prev = ptr::null_mut();
        while !page.is_null() {
            // SAFETY: queued pages are valid.
            unsafe {
                if (*page).class as usize != c || (*page).prev != prev {
                    return Err("queue links or class wrong");
                }
                if (*page).flags.load(Relaxed) & FULL != 0 {
                    return Err("floating page in a queue");
                }
                let seg = segment::segment_of(page.cast());
                if (*seg).owner.load(Relaxed) != h.id {
                    return Err("queued page of a segment we do not own");
                }
                prev = page;
                page = (*page).next;
            }
            queued += 1;
        }
        if h.queues[c].last != prev {
            return Err("queue tail wrong");
        }
    }
    let mut seg = h.segs;
    let mut n = 0;
    let mut in_use_class_pages = 0usize;
    while !seg.is_null() {
        // SAFETY: our segments.
        unsafe {
            if (*seg).owner.load(Relaxed) != h.id {
                return Err("segment in list not owned");
            }
            (*seg).check()?;
            for i in 1..SLICES_PER_SEGMENT {
                let p = &(*seg).pages[i];
                if p.in_use()
                    && (*seg).free_mask() & (1 << i) == 0
                    && p.class != LARGE
                    && p.flags.load(Relaxed) & FULL == 0
                {
                    in_use_class_pages += 1;
                }
            }
            seg = (*seg).next;
        }
        n += 1;
    }
    if n != h.nsegs {
        return Err("segment count wrong");
    }
    for (k, &o) in h.own.iter().enumerate() {
        if o == OWN_EMPTY {
            continue;
        }
        let mut seg = h.segs;
        while !seg.is_null() && seg as usize != o {
            // SAFETY: our segments.
            seg = unsafe { (*seg).next };
        }
        if seg.is_null() || own_slot(o) != k {
            return Err("own cache holds a segment not ours or in the wrong slot");
        }
    }
    if queued != in_use_class_pages {
        return Err("non-floating page missing from the queues");
    }
    Ok(())
}
