//! Thread heaps: one per thread (a pointer in native TLS), the malloc slow
//! path, page queues, abandoning at thread exit and reclaiming abandoned
//! segments.
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
//! - every segment in `segs` has `owner == id`
//! - `own[k]` is [`OWN_EMPTY`] or a segment in `segs` with
//!   `own_slot(seg) == k` (a cache of owned segments for the free fast
//!   path: a hit proves the pointer's segment is ours and mapped without
//!   the segment map; a miss proves nothing)
//! - `emptied` and `retired` are hints with no invariant (a flagged class
//!   may have no empty page); so are `stolen_at`, `fresh_pages`, `regrets`
//!
//! A thread's slot points to the static, read-only empty heap
//! (`id == UNINIT`, every direct slot on the empty page, so the fast paths
//! need no null check) until its first slow path: that takes a heap from
//! the pool (heaps of exited threads, or a fresh 64 KiB chunk), gives it a
//! fresh id and registers the thread-exit destructor. At thread exit the
//! heap is abandoned, given back to the pool and the slot reset.

use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering::*};

use super::page::{Page, FULL, LARGE, TF_FULL};
use super::segment::{self, Segment, SLICES_PER_SEGMENT, SLICE_SIZE};
use super::size_class::*;
use crate::os;

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
}

/// Slow paths within which a class that lost an empty page to
/// `span_from_empty` and asks for a fresh page counts as still in use.
pub const STEAL_REGRET: u32 = 128;

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
    };
}

/// `Heap` made shareable for the static empty heap (never written).
#[repr(transparent)]
pub struct StaticHeap(Heap);
// SAFETY: the empty heap is never written (every writer first sees
// `id == UNINIT` and switches to a heap of its own), so sharing it is
// sharing read-only data.
unsafe impl Sync for StaticHeap {}

/// The heap every thread starts with (and goes back to at exit): no
/// pages, `id == UNINIT`, direct slots on the empty page. It lives in
/// read-only memory, so a stray write to it faults at once.
pub static EMPTY_HEAP: StaticHeap = StaticHeap(Heap::INIT);

#[inline(always)]
fn empty_heap() -> *mut Heap {
    &EMPTY_HEAP as *const StaticHeap as *mut Heap
}

/// This thread's heap: the static empty heap until the thread's first
/// slow path gives it one of its own (see [`init`]).
///
/// Only a pointer lives in TLS; the heap itself (~2.2 KB) is carved from
/// memory the engine maps ([`heap_pool_take`]). On x86-64 Linux the pointer
/// is an initial-exec TLS slot (two loads, no `__tls_get_addr` call in the
/// shared library). That marks the library STATIC_TLS, so `dlopen` must
/// find the library's whole TLS block in glibc's static TLS reserve: with
/// the heap out of TLS that block is a few hundred bytes (it was 2.7 KB
/// when the heap itself was there, and `dlopen` failed; commit 58770e5).
#[inline(always)]
pub fn heap() -> *mut Heap {
    tls::get()
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod tls {
    use super::Heap;

    // One pointer in `.tdata`, initialised to the empty heap (a relocation
    // in the TLS image, applied before any thread's block is copied from
    // it). Global but hidden, so that inlined readers in other crates of
    // the same link resolve it, and invisible outside the final object.
    core::arch::global_asm!(
        ".pushsection .tdata,\"awT\",@progbits",
        ".p2align 3",
        ".globl stratalloc_engine_heap_slot",
        ".hidden stratalloc_engine_heap_slot",
        ".type stratalloc_engine_heap_slot,@object",
        ".size stratalloc_engine_heap_slot,8",
        "stratalloc_engine_heap_slot:",
        ".quad {empty}",
        ".popsection",
        empty = sym super::EMPTY_HEAP,
    );

    #[inline(always)]
    pub fn get() -> *mut Heap {
        let v: *mut Heap;
        // SAFETY: reads this thread's slot (initial-exec TLS: the GOT holds
        // the slot's offset from the thread pointer in %fs).
        unsafe {
            core::arch::asm!(
                "mov {v}, qword ptr [rip + stratalloc_engine_heap_slot@GOTTPOFF]",
                "mov {v}, qword ptr fs:[{v}]",
                v = out(reg) v,
                options(nostack, readonly, preserves_flags),
            );
        }
        v
    }

    #[inline(always)]
    pub fn set(h: *mut Heap) {
        // SAFETY: writes this thread's slot only.
        unsafe {
            core::arch::asm!(
                "mov {t}, qword ptr [rip + stratalloc_engine_heap_slot@GOTTPOFF]",
                "mov qword ptr fs:[{t}], {h}",
                t = out(reg) _,
                h = in(reg) h,
                options(nostack, preserves_flags),
            );
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod tls {
    use super::Heap;
    use core::cell::Cell;

    thread_local! {
        static SLOT: Cell<*mut Heap> = const {
            Cell::new(&super::EMPTY_HEAP as *const super::StaticHeap as *mut Heap)
        };
    }

    #[inline(always)]
    pub fn get() -> *mut Heap {
        SLOT.with(|s| s.get())
    }

    #[inline(always)]
    pub fn set(h: *mut Heap) {
        SLOT.with(|s| s.set(h))
    }
}

// ------------------------------------------------------------- heap pool

/// Bytes mapped at a time for heaps.
const HEAP_CHUNK: usize = 64 * 1024;

/// Heaps given back at thread exit, linked through their `segs` field
/// (under [`segment::GLOBAL`], which `fork` handling already covers).
struct HeapPool(UnsafeCell<*mut Heap>);
// SAFETY: only touched under `segment::GLOBAL`.
unsafe impl Sync for HeapPool {}
static HEAP_POOL: HeapPool = HeapPool(UnsafeCell::new(ptr::null_mut()));

/// Push `h` (not in use by any thread) on the pool. Caller holds GLOBAL.
unsafe fn pool_push_locked(h: *mut Heap) {
    // SAFETY: GLOBAL is held; `h` is free heap memory.
    unsafe {
        (*h).segs = (*HEAP_POOL.0.get()).cast();
        *HEAP_POOL.0.get() = h;
    }
}

/// Memory for one heap (uninitialised contents), or null when the OS has
/// none: a heap given back by an exited thread, else a slot of a fresh
/// chunk (the rest of the chunk goes to the pool).
fn heap_pool_take() -> *mut Heap {
    segment::GLOBAL.lock();
    // SAFETY: GLOBAL is held.
    let h = unsafe { *HEAP_POOL.0.get() };
    if !h.is_null() {
        // SAFETY: as above; pooled heaps link through `segs`.
        unsafe { *HEAP_POOL.0.get() = (*h).segs.cast() };
        segment::GLOBAL.unlock();
        return h;
    }
    segment::GLOBAL.unlock();
    let chunk = os::map(HEAP_CHUNK);
    if chunk.is_null() {
        return ptr::null_mut();
    }
    let size = core::mem::size_of::<Heap>().next_multiple_of(64);
    let n = HEAP_CHUNK / size;
    segment::GLOBAL.lock();
    for i in 1..n {
        // SAFETY: slot `i` lies inside the fresh chunk (aligned to 64).
        unsafe { pool_push_locked(chunk.add(i * size).cast()) };
    }
    segment::GLOBAL.unlock();
    chunk.cast()
}

/// Give back the memory of an exited thread's heap.
unsafe fn heap_pool_give(h: *mut Heap) {
    segment::GLOBAL.lock();
    // SAFETY: GLOBAL is held; nobody uses `h` any more.
    unsafe { pool_push_locked(h) };
    segment::GLOBAL.unlock();
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

// ------------------------------------------------------ thread-exit hook

static KEY_STATE: AtomicUsize = AtomicUsize::new(0); // 0 none, 1 creating, 2 ready
static mut KEY: libc::pthread_key_t = 0;

unsafe extern "C" fn on_thread_exit(_arg: *mut libc::c_void) {
    let h = heap();
    // SAFETY: our own heap, on our own thread.
    unsafe { abandon(h) };
}

fn key() -> Option<libc::pthread_key_t> {
    loop {
        match KEY_STATE.load(Acquire) {
            // SAFETY: written once before state 2 was published.
            2 => return Some(unsafe { KEY }),
            0 => {
                if KEY_STATE.compare_exchange(0, 1, AcqRel, Acquire).is_ok() {
                    let mut k: libc::pthread_key_t = 0;
                    // SAFETY: valid out-pointer and destructor.
                    let r = unsafe { libc::pthread_key_create(&mut k, Some(on_thread_exit)) };
                    if r != 0 {
                        KEY_STATE.store(0, Release);
                        return None;
                    }
                    // SAFETY: only the thread that won the CAS writes KEY.
                    unsafe { KEY = k };
                    KEY_STATE.store(2, Release);
                    return Some(k);
                }
            }
            // SAFETY: sched_yield has no preconditions.
            _ => unsafe {
                libc::sched_yield();
            },
        }
    }
}

/// Give the calling thread a heap of its own (it has the empty heap):
/// null if no memory for it could be mapped.
#[cold]
#[inline(never)]
unsafe fn init() -> *mut Heap {
    // Before this thread's first page: every free-list link is encoded
    // with the secret.
    super::page::init_secret();
    let h = heap_pool_take();
    if h.is_null() {
        return h;
    }
    // SAFETY: fresh heap memory, ours alone.
    unsafe {
        h.write(Heap::INIT);
        (*h).id = NEXT_ID.fetch_add(1, Relaxed);
    }
    tls::set(h);
    // pthread_setspecific may call malloc (calloc for high keys): the heap
    // is already in place, so that call is served normally.
    if let Some(k) = key() {
        // SAFETY: a valid key; a non-null value makes the destructor run.
        unsafe { libc::pthread_setspecific(k, 1 as *const libc::c_void) };
    }
    h
}

// ------------------------------------------------------------ queues

impl Heap {
    fn set_direct(&mut self, class: usize) {
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

    fn seg_push(&mut self, seg: *mut Segment) {
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
        self.own[own_slot(seg as usize)] = seg as usize;
    }

    fn seg_remove(&mut self, seg: *mut Segment) {
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
        }
        self.nsegs -= 1;
    }
}

// ------------------------------------------------------------ spans

/// Free the span of `page` back to its segment (the segment stays, even
/// if empty: callers release it with `seg_free_if_empty`).
pub unsafe fn span_release(page: *mut Page, now: u64) {
    let seg = segment::segment_of(page.cast());
    // SAFETY: `page` is an in-use page of `seg`, which we own.
    unsafe {
        let i = page.offset_from((*seg).pages.as_ptr()) as usize;
        (*seg).free_span(i, now);
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
unsafe fn span_alloc(h: &mut Heap, n: usize, steal: bool) -> *mut Page {
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
            (*seg).take_span_at(i, n);
            return &mut (*seg).pages[i];
        }
    }
    // Reclaim abandoned segments before mapping more.
    for _ in 0..8 {
        let seg = segment::abandon_pop();
        if seg.is_null() {
            break;
        }
        // SAFETY: popped from the abandoned list: ours now.
        unsafe {
            if !reclaim(h, seg) {
                continue; // it was empty and is gone
            }
            if let Some(i) = (*seg).take_span(n) {
                return &mut (*seg).pages[i];
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
        let i = (*seg).take_span(n).unwrap_or(1);
        &mut (*seg).pages[i]
    }
}

/// The first of our segments where `pick` finds room for `n` slices, and
/// the first slice there.
unsafe fn find_span(
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

/// Adopt an abandoned segment: collect every page, requeue pages with
/// room, free empty ones. Returns false if the segment ended up freed.
unsafe fn reclaim(h: &mut Heap, seg: *mut Segment) -> bool {
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
unsafe fn settle(h: &mut Heap, page: *mut Page, now: u64) {
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
unsafe fn collect_pending(h: &mut Heap) {
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

/// Release `seg` if no span is in use.
unsafe fn seg_free_if_empty(h: &mut Heap, seg: *mut Segment) -> bool {
    // SAFETY: a segment of ours.
    unsafe {
        if (*seg).is_empty() {
            h.seg_remove(seg);
            segment::segment_free(seg);
            return true;
        }
    }
    false
}

/// Purge dirty slices whose delay has passed (all of them if `force`).
unsafe fn purge_due(h: &mut Heap, now: u64, force: bool) -> bool {
    let mut any = false;
    let mut seg = h.segs;
    while !seg.is_null() {
        // SAFETY: our segments.
        unsafe {
            let s = &mut *seg;
            if s.dirty_mask != 0 {
                if force {
                    s.purge(now);
                    any = true;
                } else if s.purge_at != 0 && s.purge_at <= now {
                    any |= s.purge_aged(now);
                }
            }
            seg = s.next;
        }
    }
    any
}

// ------------------------------------------------------------ allocation

/// The start of every allocation slow path: give the thread a heap of its
/// own on its first use, and run the periodic work (purge, reclaim) every
/// 64 slow calls. `None` when no heap could be set up (out of memory).
///
/// # Safety
/// `h` is the calling thread's heap.
#[inline(always)]
unsafe fn enter_slow<'a>(mut h: *mut Heap) -> Option<&'a mut Heap> {
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
        h.slow_count += 1;
        if h.slow_count % 64 == 0 {
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
        for attempt in 0..2 {
            // Freed blocks anywhere in the queue go before fresh ones are
            // carved (carving touches new memory): the first page that can
            // only be extended is remembered and extended if no page has
            // free blocks.
            let mut extendable: *mut Page = ptr::null_mut();
            let mut page = h.queues[c].first;
            while !page.is_null() {
                let next = (*page).next;
                (*page).collect();
                if !(*page).free.is_null() {
                    if page != h.queues[c].first {
                        h.queue_remove(page);
                        h.queue_push_front(page);
                    }
                    return Page::pop(page);
                }
                if (*page).carved() < (*page).reserved {
                    if extendable.is_null() {
                        extendable = page;
                    }
                    page = next;
                    continue;
                }
                // Full: unlink and float it.
                h.queue_remove(page);
                if !(*page).try_mark_full() {
                    (*page).collect();
                    h.queue_push_front(page);
                    return Page::pop(page);
                }
                page = next;
            }
            if !extendable.is_null() {
                (*extendable).extend();
                if extendable != h.queues[c].first {
                    h.queue_remove(extendable);
                    h.queue_push_front(extendable);
                }
                return Page::pop(extendable);
            }
            if attempt == 0 {
                collect_pending(h);
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
        let p = &mut *page;
        p.init(c as u8, bs, ((n * SLICE_SIZE) / bs) as u32);
        p.extend();
        h.queue_push_front(page);
        Page::pop(page)
    }
}

/// Periodic slow-path work (at most once per purge delay): free the empty
/// pages kept by `retire` that stayed empty since the previous visit,
/// purge due segments, adopt one abandoned segment, run the global purge.
unsafe fn periodic(h: &mut Heap) {
    let now = os::now_ms();
    if now >= h.next_purge {
        h.next_purge = now + segment::PURGE_DELAY_MS;
        // SAFETY: our heap; queued pages are valid.
        unsafe {
            for c in 0..CLASSES {
                let page = h.queues[c].first;
                let bit = 1u64 << (c % 64);
                let idle = !page.is_null()
                    && (*page).used == 0
                    && (*page).next.is_null()
                    && (*page).slice_count == 1;
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
            // Adopt one abandoned segment, so that memory other threads
            // freed into it is taken back even when nobody needs a new span.
            let seg = segment::abandon_pop();
            if !seg.is_null() {
                reclaim(h, seg);
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
        let p = &mut *page;
        p.init(LARGE, n * SLICE_SIZE, 1);
        // The one block is handed out at once; the page floats.
        p.set_capacity(1);
        p.used = 1;
        p.thread_free.store(TF_FULL, Relaxed);
        p.set_flags(FULL);
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
        if !(*seg).resize_span(i, n, os::now_ms()) {
            return false;
        }
        (*page).set_block_size(n * SLICE_SIZE);
        true
    }
}

/// The owner's free of a block on a page that needs care (floating,
/// aligned, or now empty). `b` is the block start.
pub unsafe fn free_local_slow(h: *mut Heap, page: *mut Page, b: *mut u8) {
    // SAFETY: the caller checked we own the page.
    unsafe {
        let h = &mut *h;
        let p = &mut *page;
        if p.used == 0 {
            crate::fatal!("double free of {:p} (page has no blocks in use)", b);
        }
        let blk = b as *mut super::page::Block;
        (*blk).next = super::page::Block::link(blk, p.local_free);
        (*blk).key = Page::key(page);
        p.local_free = blk;
        p.used -= 1;
        let floating = p.flags.load(Relaxed) & FULL != 0;
        if floating {
            p.clear_full();
            p.collect();
            settle(h, page, os::now_ms());
            seg_free_if_empty(h, segment::segment_of(b));
        } else if p.used == 0 {
            p.reset_if_empty();
            retire(h, page);
        }
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
        if q.first == page && q.last == page && (*page).slice_count == 1 {
            return;
        }
        (*page).retired_at = os::now_ms() as u16;
    }
}

/// Call `f` on every empty queued page of the classes flagged in
/// `emptied`; a class with none loses its flag. `f` may free the page.
unsafe fn for_each_emptied(h: &mut Heap, mut f: impl FnMut(&mut Heap, *mut Page)) {
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
                    if (*page).used == 0 {
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

/// A span of `n` dirty slices made by freeing empty queued pages of the
/// classes flagged in `emptied` (only the pages it covers), when no dirty
/// run has room: `(segment, first slice)`, the slices free now; None if
/// no such pages would make room. Their slices are resident: reusing them
/// beats faulting in new memory, and a class the program stopped asking
/// for (a buffer grown past it) gives its pages back while the program is
/// busy elsewhere, not only after the 10 ms rules. Pages that would not
/// make the room stay queued (freeing them would only fragment the dirty
/// slices).
unsafe fn span_from_empty(h: &mut Heap, n: usize) -> Option<(*mut Segment, usize)> {
    // The empty pages' slices per segment, in each segment's scratch mask.
    // SAFETY: queued pages of ours; their segments are ours.
    unsafe {
        for_each_emptied(h, |_, page| {
            let seg = segment::segment_of(page.cast());
            let i = page.offset_from((*seg).pages.as_ptr()) as usize;
            (*seg).scratch |= segment::span_bits(i, (*page).slice_count as usize);
        });
    }
    let mut at = None;
    let mut seg = h.segs;
    while !seg.is_null() {
        // SAFETY: our segments.
        unsafe {
            let s = &mut *seg;
            let e = s.scratch;
            s.scratch = 0;
            if e != 0 && at.is_none() {
                if let Some(i) = segment::dirty_span_in(s.free_mask | e, s.dirty_mask | e, n) {
                    at = Some((seg, i, segment::span_bits(i, n) & e));
                }
            }
            seg = s.next;
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
            if segment::span_bits(j, (*page).slice_count as usize) & need == 0 {
                return;
            }
            // The slices have been unused since the page emptied: their
            // purge delay counts from then (`retire` stamps that time; the
            // only one-slice page of a class, which the free fast path
            // does not stamp, counts from now).
            let lone = (*page).prev.is_null() && (*page).next.is_null() && (*page).slice_count == 1;
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
unsafe fn free_retired(h: &mut Heap, age: u64, now: u64) -> bool {
    let mut any = false;
    for c in 0..CLASSES {
        let mut page = h.queues[c].first;
        // SAFETY: queued pages of ours; `next` read before a page is freed.
        unsafe {
            if !page.is_null() && (*page).next.is_null() && (*page).slice_count == 1 {
                continue;
            }
            while !page.is_null() {
                let next = (*page).next;
                let idle = (now as u16).wrapping_sub((*page).retired_at) as u64;
                if (*page).used == 0 && idle >= age {
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

// ------------------------------------------------------------ trim, check

/// Return what this thread can return: empty pages, dirty slices, empty
/// abandoned segments, cached segments.
pub unsafe fn trim(h: *mut Heap) -> bool {
    let before = os::stats().returned;
    // SAFETY: our heap.
    unsafe {
        let h = if (*h).id == UNINIT { init() } else { h };
        if h.is_null() {
            return false;
        }
        let h = &mut *h;
        let now = os::now_ms();
        collect_pending(h);
        for c in 0..CLASSES {
            let mut page = h.queues[c].first;
            while !page.is_null() {
                let next = (*page).next;
                (*page).collect();
                if (*page).used == 0 {
                    h.queue_remove(page);
                    page_free(h, page, now);
                }
                page = next;
            }
        }
        // Adopt every abandoned segment (frees the empty ones).
        let n = segment::abandoned_count();
        for _ in 0..n {
            let seg = segment::abandon_pop();
            if seg.is_null() {
                break;
            }
            reclaim(h, seg);
        }
        purge_due(h, now, true);
    }
    segment::drain_cache();
    os::stats().returned > before
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
                if p.in_use
                    && (*seg).free_mask & (1 << i) == 0
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
