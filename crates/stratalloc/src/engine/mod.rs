//! # The engine: stratalloc's default malloc
//!
//! A thread-caching size-class allocator in the family of mimalloc (free
//! list sharding, segments found by masking, thread-local heaps), written
//! for this project.
//!
//! ## Entry points (stable names; the C library calls these directly)
//!
//! | function | C counterpart | notes |
//! |---|---|---|
//! | [`malloc`]`(size)` | `malloc` | 16-aligned for `size >= 16`; size 0 gives a unique block |
//! | [`calloc`]`(n, size)` | `calloc` | null on overflow |
//! | [`aligned_alloc`]`(align, size)` | `posix_memalign`, `memalign`, `aligned_alloc` | `align` a power of two, any size up to huge |
//! | [`alloc_zeroed`]`(size, align)` | — | fresh OS memory is not cleared again |
//! | [`realloc`]`(p, size)` | `realloc` | `p` non-null, `size > 0` (the C layer handles those); in place when the size class still fits, large blocks grow into free neighbouring slices, huge blocks move with `mremap` |
//! | [`free`]`(p)` | `free` | null ignored; a pointer not ours aborts with a message |
//! | [`usable_size`]`(p)` | `malloc_usable_size` | works for every pointer handed out |
//! | [`owns`]`(p)` | — | cheap "could this be ours?" (segment map lookup) |
//! | [`trim`]`()` | `malloc_trim` | returns free memory now (other threads' heaps: at their next slow path) |
//! | [`ENGINE`] | — | the same as a [`Backend`] (stats: mapped, peak mapped, returned; `in_use`, `allocs`, `frees` are not tracked and read 0) |
//! | [`heap_info`]`()` | `mallinfo2`, `malloc_stats`, `malloc_info` | bytes in use, free, in huge mappings, releasable: counted by a walk of every segment when asked (`info.rs`), so the fast paths keep no counter |
//! | [`check`]`()`, [`engine_stats`]`()`, [`local_pages`]`()` | — | diagnostics: invariants of the calling thread's heap, OS/segment figures, pages owned |
//!
//! None of them allocates from the Rust heap, panics or unwinds; none
//! needs initialisation (a thread's heap starts as a static empty heap and
//! sets itself up on its first slow path).
//!
//! ## Glossary
//!
//! - **slice**: 64 KiB, the unit segments are cut into.
//! - **segment**: 4 MiB of address space aligned to 4 MiB; slice 0 holds
//!   the header (owner, slice bitmaps, one page descriptor per slice).
//! - **span**: contiguous free or used slices of a segment.
//! - **page**: a span holding blocks of one size class (or one large
//!   block), with three free lists: `free`, `local_free`, `thread_free`.
//! - **heap**: per-thread state (a pointer to it in TLS): a queue of pages
//!   per class and the segments it owns.
//! - **floating page**: a full page unlinked from its queue (`FULL`).
//! - **abandoned segment**: owned by a thread that exited (it may still
//!   hold live blocks, freed later by other threads); on a first-in,
//!   first-out list. A thread's slow path adopts one before it sets up a
//!   fresh page (one with a page of the class it needs with room) or maps
//!   a segment (one with free slices for the span), looking at up to 8:
//!   each looked at is tidied (remote frees taken back, empty spans
//!   released, freed if empty) and, if not adopted, put back last. Any
//!   thread's periodic visit (at most every 10 ms) tidies the oldest.
//! - **large / huge block**: above 512 KiB, one block per span; above
//!   2 MiB, one mapping per block.
//!
//! ```text
//!   thread A heap                      segment (4 MiB aligned)
//!   direct[(size+15)/16] ──────────┐   +--------+--------+-------------+---
//!   queues[class] ──> page ──> ... └─> | header | page   | page (span) | ...
//!   segs ──> segment ──> ...           +--------+--------+-------------+---
//!                                          ^ free(p): p & !(4 MiB - 1)
//!   thread B: free(p) of A's block ──> B's batch for the page
//!             full batch ──> page.thread_free (one atomic push)
//!   thread A, slow path: collect thread_free -> local_free -> free
//! ```
//!
//! ## Invariants (as equations)
//!
//! - per page: `used + |free| + |local_free| == capacity <= reserved ==
//!   span_bytes / block_size`, and `|thread_free| <= used`; every listed
//!   block is a carved block of its page; `fast_lim == capacity` while the
//!   page has no flags, else 0 (and 0 for a released span)
//! - per segment: `dirty ⊆ free_slices`, `slice 0 ∉ free_slices`, and every
//!   used slice belongs to exactly one span
//! - per heap: `direct[w] == head(queues[class(16 w)])` (or the empty page);
//!   every in-use class page of the heap's segments is queued xor floating
//! - `segment_of(p) ∈ segment map` for every live block `p` (except a huge
//!   block aligned to 4 MiB or more, whose header sits one segment before)
//! - mapped bytes `== Σ segments × 4 MiB + Σ huge mappings + heap chunks`
//!   (64 KiB each, never unmapped)
//!
//! `check()` verifies the first three for the calling thread's heap.
//!
//! ## Paths and their cost
//!
//! - malloc ≤ 1 KiB: TLS load, table load, pop (`page.free`, the link
//!   decoded and checked to stay in its segment: 3 instructions), `used += 1`:
//!   no lock, no atomic read-modify-write. The TLS load is an initial-exec
//!   slot holding only the heap's address (no `__tls_get_addr` call in the
//!   shared library; small enough that `dlopen` still finds room in glibc's
//!   static TLS, see `heap::heap`).
//! - realloc of a block that stays in its class: segment-map lookup, page
//!   lookup, block-boundary test, size compare (no division, no call).
//!   Past the block's class it asks for a quarter more than the new size
//!   (up to the largest large block), so buffers grown a little at a time
//!   are copied every few classes rather than at every class boundary; a
//!   large block grows in place into free slices that follow it, else
//!   moves with that quarter more.
//! - local free: mask, one compare against the heap's cache of its own
//!   segments (`Heap::own`, 8 slots by address: a hit proves the segment
//!   is mapped, ours and owned by this thread, so neither the segment map
//!   nor the owner is read; a miss takes the segment-map lookup and owner
//!   compare, and caches an owned segment), page lookup (one load: the
//!   span head's offset per slice), block-boundary test (multiply, rotate, compare; it also
//!   fails for a floating or aligned page, sending those to the generic
//!   path), double-free key compare, push on `local_free`, `used -= 1`: no
//!   lock, no atomic RMW; 38 x86-64 instructions (plus 4 in the C `free`;
//!   3 of them encode the link and mix the key).
//! - remote free: the block checks (carved, key), then linked into the
//!   freeing thread's batch for its page (`remote.rs`, no atomic); a
//!   batch (up to 32 blocks or 16 KiB) goes on the page's `thread_free`
//!   with one CAS.
//! - slow path: collect the queue's pages (freed blocks in any of them go
//!   before fresh blocks are carved; after 8 pages the first page with
//!   blocks left to carve is extended), float full ones, take back floating
//!   pages freed into (the segments on the heap's pending stack, no walk of
//!   its segments), adopt an abandoned segment with a page of the class,
//!   take a span (bitmap search over 64 slices), adopt an abandoned
//!   segment with room for it, or map a segment (segment cache first). A floating page that gets blocks back
//!   is queued last, so it gathers frees before malloc comes to it.
//!
//! ## Checks always on (each aborts with a message naming the pointer)
//!
//! - the pointer's segment is not in the segment map: not ours;
//! - the pointer is not a carved block of its page (`off` not a multiple of
//!   the block size, or past the blocks carved so far; tested without a
//!   division, on the local and the remote path alike): interior, wild or
//!   never-handed-out pointer;
//! - the block carries its page's free key (the page's address mixed with
//!   the process secret; malloc clears it): double free. The key alone is
//!   the proof (data matches it only by guessing the secret): a thread
//!   that does not own the page cannot scan its lists, and a block another
//!   thread freed may wait in that thread's batch, on no list; the owner's
//!   scan of the page's lists only chooses the message;
//! - the page (span) is not in use, or `used` would drop below 0: double
//!   free or invalid pointer;
//! - a huge header whose block is not the pointer (also a freed mapping
//!   waiting in the huge cache): double or invalid free.
//!
//! ## Free lists are encoded and checked before they are followed
//!
//! A free block's first word holds `next ^ block ^ secret` (null
//! included), with a per-process random secret
//! (`getrandom`, drawn at the first heap set-up; each heap keeps a copy).
//! A write after free that stores a pointer there decodes to noise.
//! malloc's pop checks that the decoded link stays in the block's segment
//! or ends the list (one compare on the fast path); every walk off the fast path (the owner's collection of
//! remote frees, bounded by `used`; the double-free scan, bounded by
//! `capacity`; `check()`) checks each link is a carved block of the page.
//! A damaged link aborts ("damaged link"), so it is never handed out and
//! a cycle never spins. Cost: see docs/BENCHMARKS.md.
//!
//! ## Returning memory
//!
//! An empty page stays queued (the next malloc of its class reuses it
//! without setting up a page) and its span goes back to its segment once
//! it stayed empty for 10 ms (periodic visit); the last page of a small
//! class goes once it stayed empty over two periodic visits. Sooner than
//! that, empty pages go back when a new span finds no room in dirty
//! (resident) slices but would find it if they did: a span is placed in
//! dirty slices of any segment first (an exact hole or a run's end, so
//! long runs stay whole), then where freeing empty pages (of classes a
//! local free emptied a page of) makes such a run, and only then in clean
//! slices, which fault in; a segment is mapped only if no slice has room.
//! So a buffer grown through the classes by `realloc` reuses the pages of
//! the classes it left instead of touching new memory (the cost: a class
//! whose page went that way sets up a new page when it is asked for
//! again; when over a quarter of recent new pages are such re-asks, within
//! 128 slow paths of the loss, a re-asking class takes no other class's
//! empty page, which ends the chains of page setups a random churn makes). A free slice is purged with
//! `MADV_DONTNEED` once it stayed free for 100 ms (per-slice free time),
//! from the owner's slow path. Empty segments go to a global
//! cache of 32 (their dirty slices purged 500 ms after the oldest was
//! freed, so memory freed between two phases of a program is still
//! resident in the next) and are unmapped beyond it. Freed huge mappings (up to 8, 64 MiB in all) are kept 100 ms for
//! the next huge request, then unmapped: a request needing a third of a
//! cached mapping or more takes it as it is (resident, no fault), a
//! larger one grows the largest smaller one with `mremap`; any thread's slow path
//! (or the next huge request) does that global work. Abandoned segments emptied
//! by remote frees go to the segment cache when a thread looks at them
//! (adoption or periodic visit). `trim()` frees empty pages and purges at
//! once, adopts every abandoned segment, and unmaps both caches; it also
//! bumps a global trim count, and every other heap that sees a new count
//! on its next slow path frees its empty pages and purges too.
//!
//! ## Drawbacks
//!
//! - A thread that stops calling malloc keeps its empty pages resident
//!   until it exits or calls `trim()`; another thread's `trim()` reaches
//!   it only at its next slow path (a heap is never touched by another
//!   thread).
//! - Pages freed only by other threads are taken back when the owner next
//!   runs out of pages in that class.
//! - While abandoned segments exist that no thread has a use for (their
//!   pages are of classes nobody asks for, their free slices too few), every
//!   fresh page and new span looks at up to 8 of them first (a lock, a
//!   walk of 63 slices and their remote frees each): a cost of slow paths
//!   that grows with how many such segments a program leaves, up to that
//!   bound.
//! - Huge blocks cost one `mmap`/`munmap` each unless they follow
//!   another within 100 ms (the huge cache); a block served from a cached
//!   mapping up to three times its size keeps the excess resident while
//!   it lives.
//! - `fork` holds no engine lock; a child in which a thread gone there held
//!   the global lock forgets the segment and huge caches, the abandoned
//!   list and the heap pool (their memory stays mapped, unused).
//! - After `fork`, segments owned by threads other than the forking one
//!   are never reused in the child.
//! - A thread that still allocates in pthread-key destructors after
//!   glibc's last destructor round (4) leaves that late heap's segments
//!   owned by a dead heap: they are never reclaimed.
//! - Up to 32 empty segments (128 MiB of address space) stay mapped, and
//!   their dirty slices resident for up to 500 ms after a program freed
//!   them (free slices of live segments: 100 ms): memory a program frees
//!   between phases is returned that much later.
//! - Remote frees wait in the freeing thread's batches (`remote.rs`): a
//!   thread that frees other threads' blocks and rarely allocates holds up
//!   to 64 chains (each under 32 blocks and 16 KiB) that their owners
//!   cannot reuse until it allocates 64 times slowly, trims or exits.
//! - Double-free detection is a cheap check (a key word on free blocks),
//!   not proof: it catches a second free of a block still free on its
//!   page, not one already reused.
//! - malloc's pop checks a link only against the block's segment; a link
//!   forged by someone who knows the secret could point elsewhere in the
//!   same 4 MiB. The exact checks run on the slow paths.

/// Relaxed getters (and setters) of atomic fields of the engine's
/// headers: fields only their owner writes but that `mallinfo`'s walk
/// (`info.rs`) reads from any thread. A relaxed load or store is a plain
/// `mov` on x86-64 and AArch64, so the fast paths cost the same as with
/// plain fields, and the walk is no data race.
macro_rules! relaxed_fields {
    ($($(#[$doc:meta])* $get:ident $(/ $set:ident)?: $t:ty;)*) => {$(
        $(#[$doc])*
        #[inline(always)]
        pub fn $get(&self) -> $t {
            self.$get.load(core::sync::atomic::Ordering::Relaxed)
        }
        $(
            /// Set it (owner only).
            #[inline(always)]
            pub fn $set(&self, v: $t) {
                self.$get.store(v, core::sync::atomic::Ordering::Relaxed)
            }
        )?
    )*};
}

mod abandon;
mod alloc;
#[cfg(test)]
mod fork_tests;
mod free;
mod heap;
mod huge;
mod info;
mod init;
mod page;
mod queue;
mod remote;
mod segmap;
mod segment;
mod shared;
pub mod size_class;
mod slow;
mod span;

pub use alloc::{aligned_alloc, alloc_zeroed, calloc, malloc, realloc, LARGE_MAX};
pub use free::{free, owns, page_info, usable_size, PageInfo};
pub use info::heap_info;

use crate::backend::{Backend, BackendStats, HeapInfo};
use crate::os;
use crate::sync::Holder;

/// Return free memory to the OS now; `true` if anything was returned.
pub fn trim() -> bool {
    // SAFETY: the calling thread's heap.
    unsafe { heap::trim(heap::heap()) }
}

/// Verify the calling thread's heap and segments (see the invariants
/// above); the first broken one is named.
pub fn check() -> Result<(), &'static str> {
    // SAFETY: the calling thread's heap.
    unsafe { heap::check(heap::heap()) }
}

/// Pages (spans in use, large blocks included) owned by the calling
/// thread's heap: a diagnostic for tests and tools.
pub fn local_pages() -> usize {
    // SAFETY: the calling thread's heap.
    unsafe { heap::page_count(heap::heap()) }
}

/// Take back now what other threads freed into the calling thread's
/// floating pages (what its slow path does before it sets up a page);
/// returns how many segments that visited: a diagnostic for tests.
pub fn collect_remote() -> u64 {
    let h = heap::heap();
    // SAFETY: the calling thread's heap, used only if initialised.
    unsafe {
        if (*h).id == heap::UNINIT {
            return 0;
        }
        let h = &mut *h;
        let before = h.pending_visits;
        heap::collect_pending(h);
        h.pending_visits - before
    }
}

/// Pages the calling thread's allocation slow paths looked at in their
/// class queues so far, in walks that found no free block: a diagnostic
/// for tests.
pub fn queue_visits() -> u64 {
    // SAFETY: the calling thread's heap (the empty heap reads 0).
    unsafe { (*heap::heap()).queue_visits }
}

/// Ask for transparent huge pages on the segments mapped from now on
/// (`STRATALLOC_THP=1`).
pub fn set_thp(on: bool) {
    segment::THP.store(on, core::sync::atomic::Ordering::Relaxed);
}

/// Engine figures beyond [`BackendStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// The OS layer's counters.
    pub os: os::OsStats,
    /// Normal segments mapped (live, abandoned or cached).
    pub segments: usize,
    /// Segments waiting to be reclaimed.
    pub abandoned: usize,
}

/// Current engine figures.
pub fn engine_stats() -> EngineStats {
    EngineStats {
        os: os::stats(),
        segments: segment::SEGMENTS.load(core::sync::atomic::Ordering::Relaxed),
        abandoned: segment::abandoned_count(),
    }
}

/// The engine as a [`Backend`].
pub struct Engine;

/// The one engine instance.
pub static ENGINE: Engine = Engine;

// SAFETY: blocks come from disjoint spans/mappings; sizes and alignments
// are honoured by the paths above (tested in tests/engine_*.rs).
unsafe impl Backend for Engine {
    fn name(&self) -> &'static str {
        "engine"
    }
    #[inline]
    fn alloc(&self, size: usize, align: usize) -> *mut u8 {
        if size > isize::MAX as usize || !align.is_power_of_two() {
            return core::ptr::null_mut();
        }
        aligned_alloc(align, size)
    }
    fn alloc_zeroed(&self, size: usize, align: usize) -> *mut u8 {
        if size > isize::MAX as usize || !align.is_power_of_two() {
            return core::ptr::null_mut();
        }
        alloc_zeroed(size, align)
    }
    #[inline]
    unsafe fn free(&self, p: *mut u8) {
        // SAFETY: forwarded contract.
        unsafe { free(p) }
    }
    unsafe fn realloc(&self, p: *mut u8, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { realloc(p, new_size) }
    }
    unsafe fn usable_size(&self, p: *const u8) -> usize {
        // SAFETY: forwarded contract.
        unsafe { usable_size(p) }
    }
    fn trim(&self) -> bool {
        trim()
    }
    // No lock is held across `fork` (so none can close a cycle with
    // libc's own locks); the child repairs what a gone thread may have
    // left half-done: see ARCHITECTURE.md, "fork".
    fn fork_child(&self) {
        let gone = segment::GLOBAL.reset_in_child() == Holder::Gone;
        if gone {
            segment::forget_shared();
        }
        heap::fork_child(gone);
    }
    fn stats(&self) -> BackendStats {
        let o = os::stats();
        BackendStats {
            mapped: o.mapped,
            peak_mapped: o.peak,
            returned: o.returned,
            ..BackendStats::default()
        }
    }
    fn heap_info(&self) -> HeapInfo {
        heap_info()
    }
}
