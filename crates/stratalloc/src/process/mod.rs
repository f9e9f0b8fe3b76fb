//! # Any core strategy as the allocator of a whole process
//!
//! [`ProcessHeap`] turns a [`RegionHeap`] that knows nothing of the OS into a
//! thread-safe [`Backend`]: it maps regions from the kernel when the heap runs
//! dry, serialises every heap call behind one lock, and maps huge blocks
//! directly so they go back to the kernel the moment they are freed.
//!
//! ```text
//!   malloc(n)
//!     |  n >= HUGE_THRESHOLD or align > MAX_HEAP_ALIGN
//!     +---------------------------------------------> huge: own mmap
//!     |                                                 | hdr | payload ...|
//!     v                                                 ^base  ^p
//!   lock --> heap.allocate --ok--> unlock, p
//!               | None
//!               v
//!           map a region (4 MiB, 8, 16, ... 1 GiB each), add_region, retry
//!               | still None (region refused, address space full)
//!               v
//!           unlock, huge path (a small block in its own mapping)
//! ```
//!
//! When the address space is tight (`RLIMIT_AS`) the paths help each
//! other: a region is mapped at the size the request needs if the
//! geometric size fails, and a huge request whose mapping fails is served
//! from free space in the regions.
//!
//! ## Glossary
//!
//! - **region**: a span mapped here and handed to the heap with
//!   `add_region`; never returned (the heap contract has no way to take a
//!   region back), but its free pages can be dropped with [`Backend::trim`].
//! - **huge block**: a mapping of its own with a `HugeHeader` just before
//!   the payload; `free` unmaps it, `realloc` grows it with `mremap`.
//!
//! ## Invariants
//!
//! - Every pointer handed out either lies in a heap region (`heap.owns(p)`)
//!   or is the payload of a huge block whose header checks out
//!   (`check == HUGE_MAGIC ^ base ^ len ^ p`); never both.
//! - `mapped_regions` is the sum of the lengths of the regions added;
//!   `huge_bytes`/`huge_count` the sum/number of live huge mappings.
//! - The heap is only touched with the lock held, and never again once it
//!   is poisoned.
//!
//! ## Aborting
//!
//! A refused pointer (`free` of a pointer that is no live block) and damage
//! the strategy finds in its own metadata (reported through
//! `stratalloc_core::corruption`) both end in `abort` with a message. Each
//! first releases the lock the thread holds (a thread-local says which
//! heap's), so a SIGABRT handler that calls `malloc` does not deadlock.
//! Damage also **poisons** the heap: from then on `malloc` serves every
//! request from a mapping of its own (the huge path) and `free` of a heap
//! block leaves it where it is, so nothing follows the damaged metadata
//! again while the process dies.
//!
//! [`ProcessHeap::check`] verifies the heap's own invariants (through
//! `RegionHeap::check`) and the region accounting.
//!
//! ## The lock
//!
//! [`FutexLock`]: a compare-and-swap fast path, a short bounded spin, then
//! a futex mutex in the style of the classic three-state one (free, held,
//! held with waiters), so with many threads on few cores the losers sleep in the
//! kernel instead of burning the holder's time slice. Its one word holds the
//! owner's thread number, so the fork handlers can tell "this thread holds it"
//! (a `fork` from a signal handler that interrupted `malloc`) from "another
//! thread holds it" (wait for it).
//!
//! Measured with `tests/c/bench/lock_contention.c` (tlsf, 2 cores shared
//! with other jobs, load average ~10, ns per free+malloc pair; two runs):
//!
//! | threads | this lock | pure test-and-test-and-set spin |
//! |---|---|---|
//! | 1 | 167 | 192 |
//! | 2 | 157 | 239 |
//! | 8 | 167, 218 | 518, 504 |
//! | 32 | 197, 110 | 717, 788 |
//!
//! ## Complexity and drawbacks
//!
//! Each call costs the strategy's own complexity plus an uncontended lock
//! (one CAS and one swap) and, for `free`, `heap.owns(p)` (linear in the
//! number of regions, which grows logarithmically with the heap). All
//! threads share the lock: this is a teaching and comparison backend, not a
//! scalable one (the engine is).

use core::cell::UnsafeCell;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use stratalloc_core::{AnyHeap, CheckError, HeapError, HeapErrorKind, RegionHeap, Strategy};

use crate::backend::{Backend, BackendStats, HeapInfo};
use crate::sync::FutexLock;

mod grow;
mod huge;
mod lock;

use grow::*;
use huge::*;
use lock::*;

pub use crate::tuning::{
    PROCESS_FIRST_REGION as FIRST_REGION, PROCESS_HUGE_THRESHOLD as HUGE_THRESHOLD,
    PROCESS_MAX_REGION as MAX_REGION,
};
/// Larger alignments are served by the huge path (over-map and trim).
pub const MAX_HEAP_ALIGN: usize = stratalloc_core::MAX_GUARANTEED_ALIGN;

// ------------------------------------------------------------------- OS
// Everything goes through `crate::os` (which also keeps the process-wide
// mapped/returned counters).

use crate::os::{page_round as round_to_page, page_size};

/// `len` bytes (a nonzero page multiple) of fresh zeroed memory, or null.
pub(super) fn os_map(len: usize) -> *mut u8 {
    crate::os::map(len)
}

/// Give `(p, len)` back to the kernel. A refusal (ENOMEM past
/// `vm.max_map_count`) leaves the range mapped and unused, as glibc's
/// `free` does; `errno` is kept. `true` if the range is gone.
///
/// # Safety
/// `(p, len)` is page-aligned and inside a mapping nobody uses any more.
pub(super) unsafe fn os_unmap(p: usize, len: usize) -> bool {
    // SAFETY: the caller's contract.
    len == 0 || unsafe { crate::os::release(p as *mut u8, len) }
}

struct Inner {
    heap: AnyHeap,
    /// Live huge blocks (see [`HugeSet`]).
    huge: HugeSet,
    /// Length of the next region to map.
    next_region: usize,
    /// Sum of the lengths of the regions handed to the heap.
    mapped_regions: usize,
    /// Regions handed to the heap.
    regions: usize,
    /// Bytes of free heap pages given back with `madvise` by `trim`.
    returned: u64,
}

/// A core strategy serving a whole process (see the module docs).
pub struct ProcessHeap {
    lock: FutexLock,
    inner: UnsafeCell<Inner>,
    huge_bytes: AtomicUsize,
    huge_count: AtomicUsize,
    huge_in_use: AtomicUsize,
    huge_allocs: AtomicU64,
    huge_frees: AtomicU64,
    huge_returned: AtomicU64,
    peak_mapped: AtomicUsize,
    /// The strategy reported its metadata damaged: the process is
    /// aborting, and the heap is never touched again (see
    /// [`release_before_abort`]).
    poisoned: AtomicBool,
}

impl ProcessHeap {
    /// An empty heap of strategy `s`; maps nothing until the first request.
    pub const fn new(s: Strategy) -> Self {
        ProcessHeap {
            lock: FutexLock::new(),
            inner: UnsafeCell::new(Inner {
                heap: AnyHeap::new(s),
                huge: HugeSet::new(),
                next_region: FIRST_REGION,
                mapped_regions: 0,
                regions: 0,
                returned: 0,
            }),
            huge_bytes: AtomicUsize::new(0),
            huge_count: AtomicUsize::new(0),
            huge_in_use: AtomicUsize::new(0),
            huge_allocs: AtomicU64::new(0),
            huge_frees: AtomicU64::new(0),
            huge_returned: AtomicU64::new(0),
            peak_mapped: AtomicUsize::new(0),
            poisoned: AtomicBool::new(false),
        }
    }

    /// Switch to strategy `s`. Returns `false` (and changes nothing) once
    /// the heap holds a region: a heap's memory cannot change hands.
    pub fn set_strategy(&self, s: Strategy) -> bool {
        let mut g = self.guard();
        let inner = g.inner();
        if inner.regions != 0 {
            return inner.heap.strategy() == s;
        }
        inner.heap = AnyHeap::new(s);
        true
    }

    /// The strategy serving this heap.
    pub fn strategy(&self) -> Strategy {
        self.guard().inner().heap.strategy()
    }

    /// Verify the heap's invariants and the region accounting.
    pub fn check(&self) -> Result<(), CheckError> {
        let mut g = self.guard();
        let inner = g.inner();
        inner.heap.check()?;
        let st = inner.heap.stats();
        if st.region_bytes > inner.mapped_regions {
            return Err(CheckError::new(
                0,
                "heap holds more region bytes than were mapped for it",
            ));
        }
        let set = &inner.huge;
        if set.cap != 0 && (!set.cap.is_power_of_two() || (set.live + set.tombs) * 2 > set.cap) {
            return Err(CheckError::new(
                set.slots as usize,
                "huge-block set over half full",
            ));
        }
        let (mut live, mut tombs) = (0, 0);
        for i in 0..set.cap {
            // SAFETY: i < cap.
            let v = unsafe { *set.slots.add(i) };
            match v {
                SLOT_EMPTY => {}
                SLOT_TOMB => tombs += 1,
                _ => {
                    live += 1;
                    // SAFETY: a live huge block's header is mapped.
                    if unsafe { Self::huge_header(v as *const u8) }.is_none() {
                        return Err(CheckError::new(v, "huge block in the set has a bad header"));
                    }
                    if set.find(v) != Some(i) {
                        return Err(CheckError::new(
                            v,
                            "huge-block set entry not reachable by probing",
                        ));
                    }
                }
            }
        }
        if live != set.live || tombs != set.tombs {
            return Err(CheckError::new(
                set.slots as usize,
                "huge-block set counts are wrong",
            ));
        }
        Ok(())
    }

    /// Number of regions mapped for the heap so far.
    pub fn regions(&self) -> usize {
        self.guard().inner().regions
    }
}

// SAFETY: blocks come from the strategy (which never overlaps them) or from
// fresh mappings; every path keeps contents and finds its block again.
unsafe impl Backend for ProcessHeap {
    fn name(&self) -> &'static str {
        // SAFETY: the strategy is only changed by `set_strategy` before the
        // first region; reading the discriminant without the lock can only
        // race with that start-up call, which happens before publication.
        unsafe { (*self.inner.get()).heap.strategy() }.name()
    }

    fn alloc(&self, size: usize, align: usize) -> *mut u8 {
        if size > isize::MAX as usize || !align.is_power_of_two() {
            return ptr::null_mut();
        }
        let align = align.max(16);
        if size >= HUGE_THRESHOLD || align > MAX_HEAP_ALIGN {
            let p = self.huge_alloc(size, align);
            if p.is_null() && align <= MAX_HEAP_ALIGN {
                // No address space for a mapping (RLIMIT_AS): the regions
                // may still have room.
                let mut g = self.guard();
                return self.alloc_locked(&mut g, size, align, Growth::NoMap);
            }
            return p;
        }
        let p = {
            let mut g = self.guard();
            self.alloc_locked(&mut g, size, align, Growth::MapRegions)
        };
        if p.is_null() {
            // The heap refused (full, or a region could not be mapped at the
            // size it wanted): a mapping of its own still may work.
            return self.huge_alloc(size, align);
        }
        p
    }

    fn alloc_zeroed(&self, size: usize, align: usize) -> *mut u8 {
        if size > isize::MAX as usize || !align.is_power_of_two() {
            return ptr::null_mut();
        }
        if size >= HUGE_THRESHOLD || align > MAX_HEAP_ALIGN {
            // Fresh pages are zero.
            let p = self.huge_alloc(size, align);
            if !p.is_null() {
                return p;
            }
        }
        let p = self.alloc(size, align);
        if !p.is_null() {
            // SAFETY: `p` is a fresh block of at least `size` bytes.
            unsafe { ptr::write_bytes(p, 0, size) };
        }
        p
    }

    unsafe fn free(&self, p: *mut u8) {
        let Some(nn) = NonNull::new(p) else { return };
        let mut g = self.guard();
        let inner = g.inner();
        if inner.heap.owns(p) {
            if self.poisoned() {
                return;
            }
            // SAFETY: the caller hands `p` back; it lies in a region, so it
            // is readable, and the heap validates it.
            if let Err(e) = unsafe { inner.heap.deallocate(nn) } {
                self.bad_pointer("free", p, Some(e));
            }
            return;
        }
        // Not in a region: a live huge block, or a pointer we must not
        // touch (freed already — its mapping is gone — or never ours).
        let live_huge = inner.huge.remove(p as usize);
        drop(g);
        if !live_huge {
            self.bad_pointer("free", p, None);
        }
        // SAFETY: a live huge block: its header is mapped.
        match unsafe { Self::huge_header(p) } {
            Some((base, len)) => self.huge_free(p, base, len),
            None => self.bad_pointer("free", p, Some(HeapError::new(HeapErrorKind::Corrupted, p))),
        }
    }

    unsafe fn realloc(&self, p: *mut u8, new_size: usize) -> *mut u8 {
        if new_size > isize::MAX as usize {
            return ptr::null_mut();
        }
        let mut g = self.guard();
        match self.locate("realloc", &mut g, p) {
            Located::Heap(old) => {
                if new_size < HUGE_THRESHOLD {
                    let q = self.move_in_heap(&mut g, p, old, new_size, Growth::MapRegions);
                    if !q.is_null() {
                        return q;
                    }
                    drop(g);
                    // SAFETY: `p` is live with `old` usable bytes.
                    return unsafe { self.move_to_huge(p, old, new_size) };
                }
                drop(g);
                // SAFETY: `p` is live with `old` usable bytes.
                let q = unsafe { self.move_to_huge(p, old, new_size) };
                if !q.is_null() {
                    return q;
                }
                // No address space for a mapping: the heap may still have room.
                let mut g = self.guard();
                self.move_in_heap(&mut g, p, old, new_size, Growth::NoMap)
            }
            Located::Huge(base, len) => {
                drop(g);
                let old = base + len - p as usize;
                if new_size < HUGE_THRESHOLD / 2 {
                    // Shrunk well below the threshold: back into the heap.
                    let q = self.alloc(new_size, 16);
                    if !q.is_null() {
                        // SAFETY: distinct blocks, new_size < old.
                        unsafe { ptr::copy_nonoverlapping(p, q, old.min(new_size)) };
                        self.guard().inner().huge.remove(p as usize);
                        self.huge_free(p, base, len);
                        return q;
                    }
                }
                self.huge_remap(p, base, len, new_size)
            }
        }
    }

    unsafe fn usable_size(&self, p: *const u8) -> usize {
        if p.is_null() {
            return 0;
        }
        let mut g = self.guard();
        match self.locate("malloc_usable_size", &mut g, p as *mut u8) {
            Located::Heap(u) => u,
            Located::Huge(base, len) => base + len - p as usize,
        }
    }

    fn trim(&self) -> bool {
        // Drop the physical pages inside large free blocks, keeping a margin
        // at each end where strategies keep free-block metadata (headers,
        // list links, footers).
        const HEAD: usize = 512;
        const TAIL: usize = 128;
        let ps = page_size();
        let mut g = self.guard();
        let inner = g.inner();
        let mut dropped = 0usize;
        inner.heap.walk(&mut |b| {
            if b.state != stratalloc_core::BlockState::Free {
                return;
            }
            let start = (b.addr + HEAD + ps - 1) & !(ps - 1);
            let end = (b.addr + b.size).saturating_sub(TAIL) & !(ps - 1);
            if end > start {
                // SAFETY: page-aligned pages strictly inside a free block's
                // payload, in a region mapped by os::map; the heap keeps no
                // data there (they read as zeros afterwards).
                if unsafe { crate::os::purge(start as *mut u8, end - start) } {
                    dropped += end - start;
                }
            }
        });
        inner.returned += dropped as u64;
        dropped != 0
    }

    // The lock is held across fork, unless the forking thread holds it
    // (see `sync`): a half-done heap operation cannot be repaired.
    fn fork_prepare(&self) -> bool {
        self.lock.fork_prepare()
    }

    fn fork_parent(&self) {
        self.lock.fork_parent();
    }

    fn fork_child(&self) {
        self.lock.fork_child();
    }

    fn stats(&self) -> BackendStats {
        let mut g = self.guard();
        let inner = g.inner();
        let hs = inner.heap.stats();
        let huge = self.huge_bytes.load(Ordering::Relaxed);
        BackendStats {
            in_use: hs.in_use + self.huge_in_use.load(Ordering::Relaxed),
            peak_in_use: hs.peak_in_use.max(hs.in_use) + self.huge_in_use.load(Ordering::Relaxed),
            mapped: inner.mapped_regions + huge,
            peak_mapped: self.peak_mapped.load(Ordering::Relaxed),
            returned: inner.returned + self.huge_returned.load(Ordering::Relaxed),
            allocs: hs.allocs + self.huge_allocs.load(Ordering::Relaxed),
            frees: hs.frees + self.huge_frees.load(Ordering::Relaxed),
        }
    }

    /// `arena` is the regions handed to the strategy, `in_use` its live
    /// blocks, `releasable` the whole pages inside the largest free block
    /// (as glibc's `keepcost` is its top chunk: what `trim` surely
    /// purges; a walk for every free block would double the cost of
    /// `mallinfo2`, already O(blocks) through `stats`).
    fn heap_info(&self) -> HeapInfo {
        let mut g = self.guard();
        let inner = g.inner();
        let hs = inner.heap.stats();
        let releasable = hs.largest_free.saturating_sub(page_size()) & !(page_size() - 1);
        let arena = inner.mapped_regions.max(hs.in_use);
        HeapInfo {
            arena,
            in_use: hs.in_use,
            free_chunks: hs.free_blocks,
            huge_blocks: self.huge_count.load(Ordering::Relaxed),
            huge_bytes: self.huge_bytes.load(Ordering::Relaxed),
            releasable: releasable.min(arena - hs.in_use),
            peak_mapped: self.peak_mapped.load(Ordering::Relaxed),
        }
    }
}

impl ProcessHeap {
    /// The heap's own figures (free bytes, largest free block, ...).
    pub fn heap_stats(&self) -> stratalloc_core::HeapStats {
        self.guard().inner().heap.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heaps() -> Vec<&'static ProcessHeap> {
        Strategy::ALL
            .iter()
            .map(|s| &*Box::leak(Box::new(ProcessHeap::new(*s))))
            .collect()
    }

    fn fill(p: *mut u8, n: usize, v: u8) {
        // SAFETY: tests pass live blocks of at least n bytes.
        unsafe { ptr::write_bytes(p, v, n) }
    }

    fn verify(p: *const u8, n: usize, v: u8) {
        for i in 0..n {
            // SAFETY: as for fill.
            assert_eq!(unsafe { *p.add(i) }, v, "byte {i} of {p:p}");
        }
    }

    #[test]
    fn every_size_class_of_path() {
        for h in heaps() {
            let sizes = [0usize, 1, 15, 16, 17, 100, 4096, 100_000, 1 << 20, 3 << 20];
            let mut live = Vec::new();
            for (i, &n) in sizes.iter().enumerate() {
                let p = h.alloc(n, 16);
                assert!(!p.is_null(), "{} size {n}", h.name());
                assert_eq!(p as usize % 16, 0);
                // SAFETY: live block.
                assert!(unsafe { h.usable_size(p) } >= n);
                fill(p, n, i as u8);
                live.push((p, n, i as u8));
            }
            h.check().unwrap();
            for (p, n, v) in live {
                verify(p, n, v);
                // SAFETY: live block.
                unsafe { h.free(p) };
            }
            h.check().unwrap();
            let info = h.heap_info();
            assert_eq!((info.huge_blocks, info.huge_bytes), (0, 0));
            assert_eq!(info.in_use, 0);
            assert!(info.releasable <= info.free());
        }
    }

    #[test]
    fn alignments_up_to_huge() {
        for h in heaps() {
            for shift in 4..=22 {
                let a = 1usize << shift;
                for n in [1usize, 100, 5000, 2 << 20] {
                    let p = h.alloc(n, a);
                    assert!(!p.is_null(), "{} n {n} align {a}", h.name());
                    assert_eq!(p as usize % a, 0, "{} n {n} align {a}", h.name());
                    // SAFETY: live block.
                    assert!(unsafe { h.usable_size(p) } >= n);
                    fill(p, n, 0xAB);
                    // SAFETY: live block.
                    unsafe { h.free(p) };
                }
            }
            h.check().unwrap();
        }
    }

    #[test]
    fn bad_requests_fail_cleanly() {
        for h in heaps() {
            assert!(h.alloc(usize::MAX, 16).is_null());
            assert!(h.alloc(isize::MAX as usize + 1, 16).is_null());
            assert!(h.alloc(isize::MAX as usize, 16).is_null());
            assert!(h.alloc(16, 24).is_null());
            assert!(h.alloc(16, 0).is_null());
            assert!(h.alloc(16, 1 << 62).is_null());
            let p = h.alloc(10, 16);
            // SAFETY: live block; the huge size fails and leaves it alone.
            unsafe {
                assert!(h.realloc(p, usize::MAX).is_null());
                assert!(h.realloc(p, isize::MAX as usize).is_null());
                h.free(p);
            }
            h.check().unwrap();
        }
    }

    #[test]
    fn huge_blocks_are_tracked_through_growth_remap_and_free() {
        let h = ProcessHeap::new(Strategy::Tlsf);
        // 700 live huge blocks: the set grows past its first 512 slots.
        let mut v: Vec<*mut u8> = (0..700).map(|_| h.alloc(HUGE_THRESHOLD, 16)).collect();
        assert!(v.iter().all(|p| !p.is_null()));
        h.check().unwrap();
        // Remap some (mremap may move them: the set must follow).
        for p in v.iter_mut().step_by(7) {
            // SAFETY: live block of `h`.
            let q = unsafe { h.realloc(*p, 3 * HUGE_THRESHOLD) };
            assert!(!q.is_null());
            // SAFETY: live block of `h`.
            assert!(unsafe { h.usable_size(q) } >= 3 * HUGE_THRESHOLD);
            *p = q;
        }
        h.check().unwrap();
        for p in v.drain(..) {
            // SAFETY: live block of `h`.
            unsafe { h.free(p) };
        }
        h.check().unwrap();
        assert_eq!(h.guard().inner().huge.live, 0);
    }

    #[test]
    fn realloc_keeps_contents_across_paths() {
        for h in heaps() {
            let mut p = h.alloc(10, 16);
            fill(p, 10, 7);
            let mut n = 10;
            // Grow through the heap into huge and back down.
            for next in [
                50usize,
                3000,
                70_000,
                900_000,
                1 << 21,
                5 << 20,
                600_000,
                100,
                8,
            ] {
                // SAFETY: live block.
                let q = unsafe { h.realloc(p, next) };
                assert!(!q.is_null(), "{} {n} -> {next}", h.name());
                verify(q, n.min(next), 7);
                fill(q, next, 7);
                p = q;
                n = next;
                h.check().unwrap();
            }
            // SAFETY: live block.
            unsafe { h.free(p) };
            h.check().unwrap();
        }
    }

    #[test]
    fn many_blocks_grow_regions_then_trim() {
        for h in heaps() {
            let mut v = Vec::new();
            for i in 0..20_000usize {
                let n = 16 + (i * 37) % 2000;
                let p = h.alloc(n, 16);
                assert!(!p.is_null());
                fill(p, n, i as u8);
                v.push((p, n, i as u8));
            }
            assert!(h.regions() >= 2, "{} regions", h.regions());
            h.check().unwrap();
            for (k, &(p, n, b)) in v.iter().enumerate() {
                verify(p, n, b);
                if k % 2 == 0 {
                    // SAFETY: live block, freed once.
                    unsafe { h.free(p) };
                }
            }
            h.trim();
            h.check().unwrap();
            for &(p, n, b) in v.iter().skip(1).step_by(2) {
                verify(p, n, b);
                // SAFETY: live block, freed once.
                unsafe { h.free(p) };
            }
            h.trim();
            h.check().unwrap();
            // Memory still works after trimming.
            let p = h.alloc(100_000, 16);
            fill(p, 100_000, 1);
            verify(p, 100_000, 1);
            // SAFETY: live block.
            unsafe { h.free(p) };
            h.check().unwrap();
            let s = h.stats();
            assert_eq!(s.allocs, s.frees, "{}", h.name());
        }
    }

    #[test]
    fn threads_share_one_heap() {
        for h in heaps() {
            std::thread::scope(|sc| {
                for t in 0..4u8 {
                    sc.spawn(move || {
                        let mut v = Vec::new();
                        for i in 0..3000usize {
                            let n = 1 + (i * 13 + t as usize) % 700;
                            let p = h.alloc(n, 16);
                            fill(p, n, t);
                            v.push((p as usize, n));
                            if i % 3 == 0 {
                                let (q, m) = v.swap_remove(i % v.len());
                                verify(q as *const u8, m, t);
                                // SAFETY: live block of this thread.
                                unsafe { h.free(q as *mut u8) };
                            }
                        }
                        for (q, m) in v {
                            verify(q as *const u8, m, t);
                            // SAFETY: live block of this thread.
                            unsafe { h.free(q as *mut u8) };
                        }
                    });
                }
            });
            h.check().unwrap();
        }
    }

    #[test]
    fn foreign_pointers_are_not_huge_blocks() {
        let b = Box::new([0u64; 64]);
        // SAFETY: the 32 bytes before the 5th word are inside the box.
        assert!(unsafe { ProcessHeap::huge_header((b.as_ptr() as *const u8).add(32)) }.is_none());
    }
}
