//! The statistics wrapper: counts every call with relaxed atomics and
//! reports at exit, on `malloc_stats()`, or whenever [`Stats::snapshot`] is called.
//!
//! What it keeps, per process (`Relaxed` atomics, no lock), fed by a small
//! per-thread batch (plain `Cell`s in a block from a pool of mapped memory,
//! found through a pointer in thread-local storage) that is added to
//! the atomics every 64 operations, when a snapshot or report is taken on
//! that thread, and at exit:
//!
//! ```text
//!   counts      allocs · zeroed · aligned · reallocs · frees · failed
//!   bytes       in use (usable sizes) and its peak · bytes requested in total
//!   histogram   request sizes in power-of-two buckets: (2^(k-1), 2^k]
//!   classes     live and total blocks per usable-size class: 16-byte steps
//!               up to 1 KiB, then four steps per power of two up to 1 MiB
//!               (a backend's own size classes show through, whatever it is)
//! ```
//!
//! The report adds what the backend knows ([`BackendStats`](crate::backend::BackendStats): mapped and
//! peak mapped bytes, bytes returned to the OS) and the peak resident set.
//!
//! **Cost**: per call, a thread-local lookup, a few plain adds and one
//! `usable_size` call on the backend; every 64 calls, a flush of about a
//! dozen atomic adds. (An earlier version with atomics on every call cost
//! ~150 ns per malloc/free pair on the test machine; locked instructions
//! are expensive there.)
//!
//! **Precision**: a snapshot sees the calling thread's batch and every
//! flushed one; other threads may each hold up to 63 unflushed operations,
//! and a thread that exits loses its unflushed batch. The peak is exact for
//! one thread (each batch carries its own running maximum) and an
//! approximation when threads allocate at once.
//!
//! Invariants (checked by [`Stats::check`], exact when one thread is
//! running): `in_use <= peak`, every class slot's live count is at most its
//! total, and the class table's live bytes add up to `in_use`.

use core::fmt::{self, Write};

use crate::backend::Backend;
use stratalloc_core::CheckError;

mod counters;
mod report;

pub use counters::*;
pub use report::write_report;

/// The statistics wrapper over `inner`.
pub struct Stats {
    inner: &'static dyn Backend,
    name: &'static str,
    counters: Counters,
}

impl Stats {
    /// Count the calls made to `inner`; `name` is reported as the backend name.
    ///
    /// # Safety
    /// Once used, the value must stay where it is for the rest of the
    /// process (a `static`, or leaked): threads' batches point at it.
    pub const unsafe fn new(inner: &'static dyn Backend, name: &'static str) -> Self {
        Stats {
            inner,
            name,
            counters: Counters::new(),
        }
    }

    /// Add the calling thread's batch to the shared figures (at thread
    /// exit; see [`crate::wrappers::thread_exit`]).
    pub fn flush_thread(&self) {
        self.counters.flush_current_thread();
    }

    /// The figures now.
    pub fn snapshot(&self) -> Snapshot {
        self.counters.snapshot(self.inner.stats())
    }

    /// Write the report to `out`.
    pub fn report(&self, out: &mut dyn Write) -> fmt::Result {
        write_report(out, self.name, &self.snapshot(), &self.inner.heap_info())
    }

    /// Verify the invariants in the module docs (exact when idle).
    pub fn check(&self) -> Result<(), CheckError> {
        let s = self.snapshot();
        if s.in_use > s.peak {
            return Err(CheckError::new(s.in_use, "bytes in use above the peak"));
        }
        let mut live = s.large.0;
        for (i, &(l, t)) in s.classes.iter().enumerate() {
            if l < 0 || l as u64 > t {
                return Err(CheckError::new(
                    class_limit(i),
                    "class live count outside 0..=total",
                ));
            }
            live += l;
        }
        if live != s.live() {
            return Err(CheckError::new(
                live as usize,
                "class live counts differ from allocs - frees",
            ));
        }
        Ok(())
    }
}

// SAFETY: every block comes from `inner` unchanged; the wrapper only counts.
unsafe impl Backend for Stats {
    fn name(&self) -> &'static str {
        self.name
    }

    fn alloc(&self, size: usize, align: usize) -> *mut u8 {
        let p = self.inner.alloc(size, align);
        if p.is_null() {
            self.counters.on_fail();
        } else {
            // SAFETY: `p` is a live block of `inner`.
            let usable = unsafe { self.inner.usable_size(p) };
            self.counters.on_alloc(size, usable, false, align > 16);
        }
        p
    }

    fn alloc_zeroed(&self, size: usize, align: usize) -> *mut u8 {
        let p = self.inner.alloc_zeroed(size, align);
        if p.is_null() {
            self.counters.on_fail();
        } else {
            // SAFETY: `p` is a live block of `inner`.
            let usable = unsafe { self.inner.usable_size(p) };
            self.counters.on_alloc(size, usable, true, align > 16);
        }
        p
    }

    unsafe fn free(&self, p: *mut u8) {
        if p.is_null() {
            return;
        }
        // SAFETY: the caller passes a live block of ours, i.e. of `inner`.
        let usable = unsafe { self.inner.usable_size(p) };
        // SAFETY: as above.
        unsafe { self.inner.free(p) };
        self.counters.on_free(usable);
    }

    unsafe fn realloc(&self, p: *mut u8, new_size: usize) -> *mut u8 {
        // SAFETY: the caller passes a live block of `inner`.
        let old = unsafe { self.inner.usable_size(p) };
        // SAFETY: as above.
        let q = unsafe { self.inner.realloc(p, new_size) };
        if q.is_null() {
            self.counters.on_fail();
            return q;
        }
        // SAFETY: `q` is now a live block of `inner`.
        let new = unsafe { self.inner.usable_size(q) };
        self.counters.on_realloc(new_size, old, new);
        q
    }

    unsafe fn usable_size(&self, p: *const u8) -> usize {
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.usable_size(p) }
    }

    forward_rest!();
}

impl super::ForkLocks for Stats {
    const SETS: usize = 1;
    fn try_take(&self, _: usize) -> bool {
        pool::try_lock_for_fork()
    }
    unsafe fn give(&self, _: usize, child: bool) {
        if child {
            EXIT_KEY.fork_child();
        }
        // SAFETY: the pool's lock is ours (the contract; in the child, the
        // parent's).
        unsafe { pool::unlock_after_fork() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wrappers::testing::SysBackend;

    #[test]
    fn buckets_are_powers_of_two() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1), 0);
        assert_eq!(bucket(2), 1);
        assert_eq!(bucket(3), 2);
        assert_eq!(bucket(4), 2);
        assert_eq!(bucket(5), 3);
        assert_eq!(bucket(1024), 10);
        assert_eq!(bucket(1025), 11);
        assert_eq!(bucket(usize::MAX), BUCKETS - 1);
    }

    #[test]
    fn threads_batches_add_up_once_flushed() {
        // SAFETY: leaked: it lives for the rest of the process.
        let s: &'static Stats = Box::leak(Box::new(unsafe {
            Stats::new(SysBackend::leaked(), "stats(sys)")
        }));
        std::thread::scope(|sc| {
            for t in 0..4usize {
                sc.spawn(move || {
                    let mut v = Vec::new();
                    for i in 0..1001usize {
                        v.push(s.alloc(1 + (i * 7 + t) % 3000, 16));
                        if i % 2 == 1 {
                            // SAFETY: live block of `s`.
                            unsafe { s.free(v.swap_remove(0)) };
                        }
                    }
                    for p in v {
                        // SAFETY: live block of `s`.
                        unsafe { s.free(p) };
                    }
                    s.flush_thread();
                });
            }
        });
        let snap = s.snapshot();
        assert_eq!(snap.allocs, 4004);
        assert_eq!(snap.frees, 4004);
        assert_eq!(snap.in_use, 0);
        assert!(snap.peak > 0);
        assert_eq!(snap.hist.iter().sum::<u64>(), 4004);
        s.check().unwrap();
    }

    #[test]
    fn an_exiting_thread_flushes_its_batch_by_itself() {
        // SAFETY: leaked: it lives for the rest of the process.
        let s: &'static Stats = Box::leak(Box::new(unsafe {
            Stats::new(SysBackend::leaked(), "stats(sys)")
        }));
        // Fewer calls per thread than a batch holds, and no explicit flush:
        // the thread-exit destructor must hand them over.
        for _ in 0..8 {
            std::thread::spawn(move || {
                for _ in 0..5 {
                    let p = s.alloc(100, 16);
                    // SAFETY: live block of `s`.
                    unsafe { s.free(p) };
                }
            })
            .join()
            .unwrap();
        }
        let snap = s.snapshot();
        assert_eq!(snap.allocs, 40);
        assert_eq!(snap.frees, 40);
        assert_eq!(snap.in_use, 0);
    }

    /// Every batch the pool hands out is empty and no other thread's, also
    /// across a second chunk, and batches given back come out empty again.
    #[test]
    fn pool_batches_are_distinct_and_empty() {
        let empty = |b: *const Batch| {
            // SAFETY: a batch from the pool, ours until given back.
            let b = unsafe { &*b };
            b.owner.get().is_null()
                && b.ops.get() == 0
                && b.allocs.get() == 0
                && b.delta.get() == 0
                && b.dirty.get() == 0
                && b.cls_live.iter().all(|c| c.get() == 0)
        };
        // More than one 64 KiB chunk holds.
        let n = 2 * 64 * 1024 / core::mem::size_of::<Batch>() + 1;
        let taken: Vec<*const Batch> = (0..n).map(|_| pool::take()).collect();
        let mut sorted = taken.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), n, "a batch was handed out twice");
        for &b in &taken {
            assert!(!b.is_null() && empty(b));
            // Dirty it the way a thread would before giving it back.
            // SAFETY: as above.
            unsafe {
                (*b).allocs.set(3);
                (*b).ops.set(3);
                (*b).cls_live[5].set(-2);
                (*b).owner.set(core::ptr::dangling());
            }
        }
        for &b in &taken {
            // SAFETY: taken above, no longer used.
            unsafe { pool::give(b) };
        }
        let again: Vec<*const Batch> = (0..n).map(|_| pool::take()).collect();
        assert!(again.iter().all(|&b| !b.is_null() && empty(b)));
        for b in again {
            // SAFETY: as above.
            unsafe { pool::give(b) };
        }
    }

    #[test]
    fn classes_cover_every_size_once() {
        assert_eq!(class_index(0), Some(0));
        assert_eq!(class_index(16), Some(1));
        assert_eq!(class_index(17), Some(2));
        assert_eq!(class_index(1024), Some(64));
        assert_eq!(class_index(1025), Some(65));
        assert_eq!(class_index(CLASS_LIMIT), Some(CLASS_SLOTS - 1));
        assert_eq!(class_index(CLASS_LIMIT + 1), None);
        let mut prev = 0;
        for size in 0..=CLASS_LIMIT {
            let i = class_index(size).unwrap();
            assert!(
                i == prev || i == prev + 1,
                "classes are contiguous at {size}"
            );
            assert!(size <= class_limit(i), "{size} fits class {i}");
            assert!(
                i == 0 || size > class_limit(i - 1),
                "{size} is above class {}",
                i - 1
            );
            prev = i;
        }
    }

    #[test]
    fn counts_match_what_was_done() {
        // SAFETY: leaked: it lives for the rest of the process.
        let s: &'static Stats = Box::leak(Box::new(unsafe {
            Stats::new(SysBackend::leaked(), "stats(sys)")
        }));
        let mut ps = Vec::new();
        for i in 0..100usize {
            ps.push(s.alloc(i * 10, 16));
        }
        let z = s.alloc_zeroed(100, 64);
        assert_eq!(z as usize % 64, 0);
        // SAFETY: `z` is live; it came from `s`.
        let z = unsafe { s.realloc(z, 5000) };
        s.check().unwrap();
        let snap = s.snapshot();
        assert_eq!(snap.allocs, 101);
        assert_eq!(snap.zeroed, 1);
        assert_eq!(snap.aligned, 1);
        assert_eq!(snap.reallocs, 1);
        assert_eq!(snap.live(), 101);
        // 0 and 10 are in buckets 0 and 4; bucket 13 holds the 5000-byte realloc.
        assert_eq!(snap.hist[0], 1);
        assert_eq!(snap.hist[4], 1);
        assert_eq!(snap.hist[13], 1);
        let expect: usize = ps
            .iter()
            .chain([&z])
            // SAFETY: every pointer is live.
            .map(|&p| unsafe { s.usable_size(p) })
            .sum();
        assert_eq!(snap.in_use, expect);
        for p in ps {
            // SAFETY: live, from `s`.
            unsafe { s.free(p) };
        }
        // SAFETY: live, from `s`.
        unsafe { s.free(z) };
        s.check().unwrap();
        let snap = s.snapshot();
        assert_eq!(snap.in_use, 0);
        assert!(snap.peak >= expect);
        assert_eq!(snap.live(), 0);
        let mut text = String::new();
        s.report(&mut text).unwrap();
        assert!(text.contains("101 allocations (1 zeroed, 1 aligned), 1 reallocations, 101 frees"));
        assert!(text.contains("request sizes"));
    }

    /// Memory a backend keeps mapped without live blocks is called what it
    /// is, with what of it could go back to the OS: not "fragmentation".
    #[test]
    fn mapped_free_memory_is_named_as_such() {
        let heap: &'static crate::process::ProcessHeap = Box::leak(Box::new(
            crate::process::ProcessHeap::new(stratalloc_core::Strategy::Tlsf),
        ));
        // SAFETY: leaked: it lives for the rest of the process.
        let s: &'static Stats = Box::leak(Box::new(unsafe { Stats::new(heap, "stats(tlsf)") }));
        let ps: Vec<*mut u8> = (0..200).map(|_| s.alloc(10_000, 16)).collect();
        for p in ps {
            // SAFETY: live, from `s`.
            unsafe { s.free(p) };
        }
        let mut text = String::new();
        s.report(&mut text).unwrap();
        assert!(!text.contains("fragmentation"), "{text}");
        assert!(
            text.contains("holds no live block: kept mapped for reuse"),
            "{text}"
        );
        assert!(text.contains("could go back to the OS now"), "{text}");
    }
}
