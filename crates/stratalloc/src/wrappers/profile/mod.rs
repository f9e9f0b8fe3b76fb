//! The profile wrapper (`STRATALLOC_PROFILE=path`, `stratalloc run
//! --profile FILE.html`): an allocation profile like heaptrack's, written
//! at exit as JSON and, for a path ending in `.html`, as one self-contained
//! HTML page with the JSON beside it.
//!
//! ```text
//!   malloc(n) ──> sampled? ──> capture stack (leaks::capture, no allocation)
//!            │             ──> StackTable: frames → site id
//!            ──> PtrTable:  pointer → (n, site id)
//!            ──> State (one lock): totals, site figures, peak, timeline
//!   free(p)  ──> PtrTable.remove(p) ──> State: live bytes down, temporary?
//!   at exit  ──> settle the peak, symbolize (leaks::symbolize), JSON/HTML
//! ```
//!
//! What it gives, per call site (allocation stack): allocations, bytes,
//! bytes held at the peak, temporary allocations (`state.rs` defines them),
//! bytes live at exit ("leaked": live at exit, no reachability scan); for
//! the process: totals, the peak and when it happened, heap and resident
//! set over time. The HTML page draws the chart, sortable tables, a flame
//! graph (stacks by allocations or bytes) and the peak as a tree of
//! callers, massif-style (`report.html`; `report.rs` writes the JSON).
//!
//! **Sampling** (`STRATALLOC_PROFILE_SAMPLE=N`, `run --sample N`): each
//! allocation has its stack captured with probability 1/N (a per-thread
//! random number); the others are still counted in every process figure
//! (totals, peak, timeline: exact) but belong to no site. Site figures are
//! the sampled ones multiplied by N: estimates, unbiased, whose error
//! shrinks as a site makes more allocations (a site with fewer than about
//! N allocations may be missed). The report says N. Only sampled blocks
//! enter the pointer table (a table of every block costs a cache miss per
//! call once it outgrows the cache); the others are measured by the
//! backend's `usable_size`, so with sampling every byte figure counts
//! usable sizes (what the allocator handed out, at least what was asked
//! for), without it requested sizes.
//!
//! **Cost**: without sampling, one unwind per allocation (what the leak
//! wrapper pays), a table insert, and a short critical section under one
//! lock per allocation and free (threads serialise there); every timeline
//! sample (1 ms apart at first) reads `/proc/self/statm`.
//!
//! Invariants: those of the pointer table, the stack table and
//! [`State::check`]; every table entry's tag is 0 or a site id.

mod report;
pub mod state;

use core::cell::Cell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::backend::Backend;
use crate::options::Output;
use crate::sync::SpinLock;
use crate::wrappers::leaks::{capture, StackTable, DEPTH};
use crate::wrappers::sys::Clock;
use crate::wrappers::table::{Entry, PtrTable};
use state::State;
use stratalloc_core::CheckError;

/// The resident set size now (a timeline sample).
fn rss() -> u64 {
    crate::os::resident_bytes() as u64
}

thread_local! {
    /// Inside a stack capture (the unwinder's own allocations are not
    /// captured again).
    static BUSY: Cell<bool> = const { Cell::new(false) };
    /// The block this thread allocated last, until its next free
    /// (temporary detection).
    static LAST: Cell<usize> = const { Cell::new(0) };
    /// The sampling generator's state (0: not seeded yet).
    static RNG: Cell<u64> = const { Cell::new(0) };
}

/// The profile wrapper over `inner`.
pub struct Profile {
    inner: &'static dyn Backend,
    name: &'static str,
    out: Output,
    sample: u32,
    table: PtrTable,
    stacks: StackTable,
    state: SpinLock<State>,
    clock: Clock,
    reporting: AtomicBool,
    untracked: AtomicU64,
}

impl Profile {
    /// Profile the blocks of `inner`, capturing one stack in `sample`
    /// allocations; write the report to `out` at exit.
    pub fn new(inner: &'static dyn Backend, name: &'static str, out: Output, sample: u32) -> Self {
        Profile {
            inner,
            name,
            out,
            sample: sample.max(1),
            table: PtrTable::new(),
            stacks: StackTable::new(),
            state: SpinLock::new(State::new()),
            clock: Clock::new(),
            reporting: AtomicBool::new(false),
            untracked: AtomicU64::new(0),
        }
    }

    /// Whether this allocation has its stack captured.
    fn sampled(&self) -> bool {
        if self.sample == 1 {
            return true;
        }
        RNG.with(|r| {
            let mut x = r.get();
            if x == 0 {
                x = (r as *const Cell<u64> as u64) ^ self.clock.now() | 1;
            }
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            r.set(x);
            x % self.sample as u64 == 0
        })
    }

    #[inline(never)]
    fn site_here(&self) -> u32 {
        if !self.sampled() || BUSY.with(|b| b.replace(true)) {
            return 0;
        }
        let mut frames = [0usize; DEPTH];
        let n = capture(&mut frames);
        // Drop `capture`'s own frame (the rest of ours go at report time).
        let id = self.stacks.intern(&frames[n.min(1)..n]);
        BUSY.with(|b| b.set(false));
        id
    }

    fn record(&self, p: *mut u8, size: usize) {
        if p.is_null() || self.reporting.load(Ordering::Relaxed) {
            return;
        }
        let id = self.site_here();
        let bytes = if self.sample == 1 {
            size
        } else {
            // SAFETY: `p` is a live block of `inner`.
            unsafe { self.inner.usable_size(p) }
        };
        if (self.sample == 1 || id != 0) && !self.table.insert(p as usize, bytes, id as u64) {
            self.untracked.fetch_add(1, Ordering::Relaxed);
            return;
        }
        LAST.with(|l| l.set(p as usize));
        let now = self.clock.now();
        self.state.lock().on_alloc(id, bytes as u64, now, rss);
    }

    /// Take `p`'s entry out of the table (before the block is freed, so
    /// that another thread given the same address cannot lose its entry).
    /// Sampling: a block not in the table is one not sampled (tag 0), of
    /// its usable size.
    fn take(&self, p: *mut u8) -> Option<Entry> {
        if p.is_null() || self.reporting.load(Ordering::Relaxed) {
            return None;
        }
        let e = self.table.remove(p as usize);
        if e.is_some() || self.sample == 1 {
            return e;
        }
        Some(Entry {
            key: p as usize,
            // SAFETY: the caller is about to free or reallocate `p`, a
            // live block of `inner`.
            size: unsafe { self.inner.usable_size(p) },
            tag: 0,
        })
    }

    /// Count the free of the block `e` described.
    fn forget(&self, p: *mut u8, e: Entry) {
        // Any event of this thread in between, a free as well as an
        // allocation, ends a temporary (heaptrack counts 0 temporaries
        // for `a = malloc; b = malloc; free(a); free(b)`).
        let temporary = LAST.with(|l| l.replace(0) == p as usize);
        let now = self.clock.now();
        self.state
            .lock()
            .on_free(e.tag as u32, e.size as u64, temporary, now, rss);
    }

    /// Write the profile to its destination (at exit; allocates, with
    /// tracking stopped for good).
    pub fn finish(&self) {
        self.reporting.store(true, Ordering::SeqCst);
        crate::wrappers::sys::internal(|| report::write(self));
    }

    /// Verify the invariants in the module docs.
    pub fn check(&self) -> Result<(), CheckError> {
        self.table.check()?;
        self.state.lock().check()?;
        let mut bad = None;
        self.table.for_each(|e| {
            let mut f = [0; DEPTH];
            if e.tag != 0 && self.stacks.frames(e.tag as u32, &mut f) == 0 {
                bad = Some(e.key);
            }
        });
        match bad {
            Some(k) => Err(CheckError::new(k, "entry names a site that does not exist")),
            None => Ok(()),
        }
    }
}

// SAFETY: blocks come from `inner` unchanged; the wrapper only records them.
unsafe impl Backend for Profile {
    fn name(&self) -> &'static str {
        self.name
    }

    fn alloc(&self, size: usize, align: usize) -> *mut u8 {
        let p = self.inner.alloc(size, align);
        self.record(p, size);
        p
    }

    fn alloc_zeroed(&self, size: usize, align: usize) -> *mut u8 {
        let p = self.inner.alloc_zeroed(size, align);
        self.record(p, size);
        p
    }

    unsafe fn free(&self, p: *mut u8) {
        if let Some(e) = self.take(p) {
            self.forget(p, e);
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.free(p) }
    }

    unsafe fn realloc(&self, p: *mut u8, new_size: usize) -> *mut u8 {
        let old = self.take(p);
        // SAFETY: forwarded from the caller.
        let q = unsafe { self.inner.realloc(p, new_size) };
        if q.is_null() {
            // The old block stays as it was.
            if let Some(e) = old.filter(|e| self.sample == 1 || e.tag != 0) {
                self.table.insert(p as usize, e.size, e.tag);
            }
            return q;
        }
        // As heaptrack counts it: a free of the old block and an
        // allocation of the new one.
        if let Some(e) = old {
            self.forget(p, e);
        }
        self.record(q, new_size);
        q
    }

    unsafe fn usable_size(&self, p: *const u8) -> usize {
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.usable_size(p) }
    }

    forward_rest!();
}

impl super::ForkLocks for Profile {
    const SETS: usize = 3;
    fn try_take(&self, i: usize) -> bool {
        match i {
            0 => self.stacks.try_lock_all(),
            1 => self.table.try_lock_all(),
            _ => self.state.raw_try_lock(),
        }
    }
    unsafe fn give(&self, i: usize, child: bool) {
        // SAFETY: set `i` is ours (the contract).
        unsafe {
            match i {
                0 => self.stacks.unlock_all(),
                1 => self.table.unlock_all(),
                _ if child => self.state.raw_unlock_child(|_| {}),
                _ => self.state.raw_unlock(),
            }
        }
    }
}

#[cfg(test)]
mod tests;
