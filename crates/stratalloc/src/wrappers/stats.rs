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
//! The report adds what the backend knows ([`BackendStats`]: mapped and
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

use core::cell::Cell;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicI64, AtomicIsize, AtomicU64, Ordering::Relaxed};

use crate::backend::{Backend, BackendStats};
use crate::sync::KeyOnce;
use crate::wrappers::sys::{peak_rss, pid, Bytes};
use stratalloc_core::CheckError;

/// Number of histogram buckets: bucket `k` holds requests of
/// `(2^(k-1), 2^k]` bytes (bucket 0: 0 and 1 byte).
pub const BUCKETS: usize = 49;
/// Usable-size classes: 65 of 16 bytes (0..=1024), then 4 per power of two
/// up to [`CLASS_LIMIT`].
pub const CLASS_SLOTS: usize = 65 + 4 * 10;
/// Usable sizes above this are counted together as "large".
pub const CLASS_LIMIT: usize = 1 << 20;

struct ClassSlot {
    live: AtomicI64,
    total: AtomicU64,
}

/// The class of a block of `usable` bytes (`None` above [`CLASS_LIMIT`]).
pub fn class_index(usable: usize) -> Option<usize> {
    if usable <= 1024 {
        Some(usable.div_ceil(16))
    } else if usable <= CLASS_LIMIT {
        let k = (usize::BITS - 1 - (usable - 1).leading_zeros()) as usize; // 10..=19
        let sub = ((usable - 1) >> (k - 2)) & 3;
        Some(65 + (k - 10) * 4 + sub)
    } else {
        None
    }
}

/// The largest usable size of class `i`.
pub fn class_limit(i: usize) -> usize {
    if i <= 64 {
        i * 16
    } else {
        let (k, sub) = (10 + (i - 65) / 4, (i - 65) % 4);
        (1 << k) + (sub + 1) * (1 << (k - 2))
    }
}

/// The counters (see the module docs).
pub struct Counters {
    allocs: AtomicU64,
    zeroed: AtomicU64,
    aligned: AtomicU64,
    reallocs: AtomicU64,
    frees: AtomicU64,
    failed: AtomicU64,
    in_use: AtomicIsize,
    peak: AtomicIsize,
    requested: AtomicU64,
    hist: [AtomicU64; BUCKETS],
    classes: [ClassSlot; CLASS_SLOTS],
    large_live: AtomicI64,
    large_total: AtomicU64,
}

/// A copy of the figures at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Successful allocations of any kind (a moving realloc is not one).
    pub allocs: u64,
    /// Of which zeroed (`calloc`).
    pub zeroed: u64,
    /// Of which with an alignment above 16.
    pub aligned: u64,
    /// Successful reallocations.
    pub reallocs: u64,
    /// Frees of non-null pointers.
    pub frees: u64,
    /// Requests that returned null.
    pub failed: u64,
    /// Usable bytes in live blocks.
    pub in_use: usize,
    /// Highest `in_use`.
    pub peak: usize,
    /// Sum of every requested size.
    pub requested: u64,
    /// Request-size histogram (see [`BUCKETS`]).
    pub hist: [u64; BUCKETS],
    /// `(live blocks, blocks ever)` per usable-size class (see
    /// [`class_index`], [`class_limit`]).
    pub classes: [(i64, u64); CLASS_SLOTS],
    /// Live and total blocks above [`CLASS_LIMIT`].
    pub large: (i64, u64),
    /// The backend's own figures.
    pub backend: BackendStats,
}

impl Snapshot {
    /// Live blocks.
    pub fn live(&self) -> i64 {
        self.allocs as i64 - self.frees as i64
    }
}

/// Bucket of a request of `size` bytes.
pub fn bucket(size: usize) -> usize {
    if size <= 1 {
        0
    } else {
        ((usize::BITS - (size - 1).leading_zeros()) as usize).min(BUCKETS - 1)
    }
}

const BATCH_OPS: u32 = 64;
// The dirty mask has a bit per class; byte-sized deltas hold a full batch.
const _: () = assert!(CLASS_SLOTS <= 128 && BUCKETS <= 64 && BATCH_OPS <= 127);

/// A thread's unflushed figures (see the module docs).
struct Batch {
    owner: Cell<*const Counters>,
    ops: Cell<u32>,
    allocs: Cell<u64>,
    zeroed: Cell<u64>,
    aligned: Cell<u64>,
    reallocs: Cell<u64>,
    frees: Cell<u64>,
    failed: Cell<u64>,
    requested: Cell<u64>,
    hist: [Cell<u8>; BUCKETS],
    hist_dirty: Cell<u64>,
    delta: Cell<isize>,
    max_delta: Cell<isize>,
    /// Per class: live and total deltas (a batch holds at most 64
    /// operations, so they fit in a byte), and which classes are dirty.
    cls_live: [Cell<i8>; CLASS_SLOTS],
    cls_total: [Cell<u8>; CLASS_SLOTS],
    dirty: Cell<u128>,
}

impl Batch {
    /// A batch with nothing in it and no owner (all zero bits, like the
    /// pool's freshly mapped memory).
    const fn empty() -> Batch {
        Batch {
            owner: Cell::new(core::ptr::null()),
            ops: Cell::new(0),
            allocs: Cell::new(0),
            zeroed: Cell::new(0),
            aligned: Cell::new(0),
            reallocs: Cell::new(0),
            frees: Cell::new(0),
            failed: Cell::new(0),
            requested: Cell::new(0),
            hist: [const { Cell::new(0) }; BUCKETS],
            hist_dirty: Cell::new(0),
            delta: Cell::new(0),
            max_delta: Cell::new(0),
            cls_live: [const { Cell::new(0) }; CLASS_SLOTS],
            cls_total: [const { Cell::new(0) }; CLASS_SLOTS],
            dirty: Cell::new(0),
        }
    }
}

thread_local! {
    /// The calling thread's batch, taken from [`pool`] on first use (null
    /// before). Only a pointer lives in TLS: the library is `STATIC_TLS`
    /// (the engine's heap slot is initial-exec), so its whole TLS segment
    /// comes out of the few hundred bytes glibc keeps for `dlopen`ed
    /// libraries, and a 368-byte batch there left little room.
    static BATCH: Cell<*const Batch> = const { Cell::new(core::ptr::null()) };
}

/// Batches in mapped memory (the wrappers' own [`map`](crate::wrappers::sys::map)),
/// handed to threads and given back when they exit, under a
/// [`SpinLock`](crate::sync::SpinLock) that the wrapper's fork
/// handlers hold across `fork`. Never unmapped.
mod pool {
    use super::Batch;
    use crate::sync::SpinLock;
    use crate::wrappers::sys::map;

    /// Bytes mapped at a time.
    const CHUNK: usize = 64 * 1024;
    const SIZE: usize = core::mem::size_of::<Batch>();
    const _: () = assert!(core::mem::align_of::<Batch>() <= 4096 && SIZE <= CHUNK);

    /// Addresses: the free batches (linked through their `owner` field)
    /// and the untouched rest `next..end` of the newest chunk.
    struct State {
        free: usize,
        next: usize,
        end: usize,
    }

    static POOL: SpinLock<State> = SpinLock::new(State {
        free: 0,
        next: 0,
        end: 0,
    });

    /// An empty batch for the calling thread; null when the OS has no
    /// memory.
    #[cold]
    pub fn take() -> *const Batch {
        let mut s = POOL.lock();
        if s.free != 0 {
            let b = s.free as *const Batch;
            // SAFETY: a pooled batch, linked through `owner`; the lock is
            // held.
            unsafe {
                s.free = (*b).owner.get() as usize;
                (*b).owner.set(core::ptr::null());
            }
            return b;
        }
        if s.end - s.next < SIZE {
            let chunk = map(CHUNK);
            if chunk.is_null() {
                return core::ptr::null();
            }
            s.next = chunk as usize;
            s.end = s.next + CHUNK;
        }
        // Fresh mappings are zero, which is an empty batch; slots are
        // `SIZE` (a multiple of the alignment) apart from a page start.
        let b = s.next;
        s.next += SIZE;
        b as *const Batch
    }

    /// Give back a batch no thread uses any more (its figures flushed).
    ///
    /// # Safety
    /// `b` came from [`take`] and nobody refers to it any more.
    pub unsafe fn give(b: *const Batch) {
        // SAFETY: the caller gives `b` up; empty it for its next thread.
        unsafe { b.cast_mut().write(Batch::empty()) };
        let mut s = POOL.lock();
        // SAFETY: as above; the lock is held.
        unsafe { (*b).owner.set(s.free as *const _) };
        s.free = b as usize;
    }

    /// Hold the pool's lock across `fork` (see `SpinLock::raw_lock`).
    pub fn lock_for_fork() {
        POOL.raw_lock();
    }

    /// Release what [`lock_for_fork`] took.
    ///
    /// # Safety
    /// [`lock_for_fork`] was called, in this process or its parent.
    pub unsafe fn unlock_after_fork() {
        // SAFETY: forwarded from the caller.
        unsafe { POOL.raw_unlock() };
    }
}

/// A pthread key whose destructor flushes an exiting thread's batch (its
/// value is the `Counters` the batch belongs to), so no thread's last
/// figures are lost. Creating it and setting its value allocate nothing in
/// glibc (keys below 32 live in the thread descriptor).
static EXIT_KEY: KeyOnce = KeyOnce::new();

unsafe extern "C" fn flush_at_thread_exit(arg: *mut libc::c_void) {
    // SAFETY: the value set in `note_thread` is a `Counters` that lives for
    // the rest of the process (see `Stats::new`).
    unsafe { (*(arg as *const Counters)).flush_current_thread() };
    // The thread is leaving: its batch goes back to the pool. (Should a
    // later destructor allocate, it takes another and sets the key again.)
    let b = BATCH.with(|slot| slot.replace(core::ptr::null()));
    if !b.is_null() {
        // SAFETY: `b` was this thread's, now flushed; the slot no longer
        // refers to it.
        unsafe { pool::give(b) };
    }
}

/// Arrange for this thread's batch of `c` to be flushed when it exits.
#[cold]
fn note_thread(c: *const Counters) {
    if let Some(k) = EXIT_KEY.get(flush_at_thread_exit) {
        // SAFETY: `k` is a key we created; the value is only read back by
        // `flush_at_thread_exit`.
        unsafe { libc::pthread_setspecific(k, c as *const libc::c_void) };
    }
}

#[inline]
fn inc(c: &Cell<u64>, v: u64) {
    c.set(c.get() + v);
}

impl Counters {
    /// Zeroed counters.
    pub const fn new() -> Self {
        Counters {
            allocs: AtomicU64::new(0),
            zeroed: AtomicU64::new(0),
            aligned: AtomicU64::new(0),
            reallocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            in_use: AtomicIsize::new(0),
            peak: AtomicIsize::new(0),
            requested: AtomicU64::new(0),
            hist: [const { AtomicU64::new(0) }; BUCKETS],
            classes: [const {
                ClassSlot {
                    live: AtomicI64::new(0),
                    total: AtomicU64::new(0),
                }
            }; CLASS_SLOTS],
            large_live: AtomicI64::new(0),
            large_total: AtomicU64::new(0),
        }
    }

    /// Run `f` on the calling thread's batch for these counters, then
    /// flush the batch if it is full.
    #[inline]
    fn batch(&self, f: impl FnOnce(&Batch)) {
        let mut p = BATCH.with(Cell::get);
        if p.is_null() {
            p = pool::take();
            if p.is_null() {
                // No memory for a batch: count through one on the stack.
                let b = Batch::empty();
                f(&b);
                self.flush(&b);
                return;
            }
            BATCH.with(|slot| slot.set(p));
        }
        // SAFETY: the thread's own batch, pooled memory that is never
        // unmapped and given back only when this thread exits.
        let b = unsafe { &*p };
        let me = self as *const Counters;
        let owner = b.owner.get();
        if owner != me {
            if !owner.is_null() {
                // SAFETY: every `Counters` that ever owned a batch lives
                // for the rest of the process (see `Stats::new`).
                unsafe { (*owner).flush(b) };
            }
            b.owner.set(me);
            note_thread(me);
        }
        f(b);
        b.ops.set(b.ops.get() + 1);
        if b.ops.get() >= BATCH_OPS {
            self.flush(b);
        }
    }

    /// Add batch `b` (which must belong to `self`) to the atomics.
    fn flush(&self, b: &Batch) {
        let add = |a: &AtomicU64, c: &Cell<u64>| {
            let v = c.replace(0);
            if v != 0 {
                a.fetch_add(v, Relaxed);
            }
        };
        add(&self.allocs, &b.allocs);
        add(&self.zeroed, &b.zeroed);
        add(&self.aligned, &b.aligned);
        add(&self.reallocs, &b.reallocs);
        add(&self.frees, &b.frees);
        add(&self.failed, &b.failed);
        add(&self.requested, &b.requested);
        let mut dirty = b.hist_dirty.replace(0);
        while dirty != 0 {
            let i = dirty.trailing_zeros() as usize;
            dirty &= dirty - 1;
            self.hist[i].fetch_add(b.hist[i].replace(0) as u64, Relaxed);
        }
        let delta = b.delta.replace(0);
        let max = b.max_delta.replace(0);
        let before = self.in_use.fetch_add(delta, Relaxed);
        if before + max > self.peak.load(Relaxed) {
            self.peak.fetch_max(before + max, Relaxed);
        }
        let mut dirty = b.dirty.replace(0);
        while dirty != 0 {
            let i = dirty.trailing_zeros() as usize;
            dirty &= dirty - 1;
            let (l, t) = (b.cls_live[i].replace(0), b.cls_total[i].replace(0));
            if l != 0 {
                self.classes[i].live.fetch_add(l as i64, Relaxed);
            }
            if t != 0 {
                self.classes[i].total.fetch_add(t as u64, Relaxed);
            }
        }
        b.ops.set(0);
    }

    #[inline]
    fn hist(b: &Batch, size: usize) {
        let k = bucket(size);
        b.hist[k].set(b.hist[k].get() + 1);
        b.hist_dirty.set(b.hist_dirty.get() | 1 << k);
    }

    #[inline]
    fn bytes(b: &Batch, d: isize) {
        let now = b.delta.get() + d;
        b.delta.set(now);
        if now > b.max_delta.get() {
            b.max_delta.set(now);
        }
    }

    #[inline]
    fn local_class(&self, b: &Batch, usable: usize, live: i8, total: u8) {
        match class_index(usable) {
            Some(i) => {
                b.cls_live[i].set(b.cls_live[i].get() + live);
                b.cls_total[i].set(b.cls_total[i].get() + total);
                b.dirty.set(b.dirty.get() | 1 << i);
            }
            None => {
                self.large_live.fetch_add(live as i64, Relaxed);
                self.large_total.fetch_add(total as u64, Relaxed);
            }
        }
    }

    #[inline]
    fn on_alloc(&self, size: usize, usable: usize, zeroed: bool, aligned: bool) {
        self.batch(|b| {
            inc(&b.allocs, 1);
            inc(&b.zeroed, zeroed as u64);
            inc(&b.aligned, aligned as u64);
            inc(&b.requested, size as u64);
            Self::hist(b, size);
            Self::bytes(b, usable as isize);
            self.local_class(b, usable, 1, 1);
        })
    }

    #[inline]
    fn on_free(&self, usable: usize) {
        self.batch(|b| {
            inc(&b.frees, 1);
            Self::bytes(b, -(usable as isize));
            self.local_class(b, usable, -1, 0);
        })
    }

    #[inline]
    fn on_realloc(&self, size: usize, old: usize, new: usize) {
        self.batch(|b| {
            inc(&b.reallocs, 1);
            inc(&b.requested, size as u64);
            Self::hist(b, size);
            Self::bytes(b, new as isize - old as isize);
            self.local_class(b, old, -1, 0);
            self.local_class(b, new, 1, 1);
        })
    }

    #[inline]
    fn on_fail(&self) {
        self.batch(|b| inc(&b.failed, 1))
    }

    /// Flush the calling thread's batch, if it holds figures of `self`.
    pub fn flush_current_thread(&self) {
        let p = BATCH.with(Cell::get);
        // SAFETY: the thread's own batch (see `batch`), if it has one.
        if let Some(b) = unsafe { p.as_ref() } {
            if core::ptr::eq(b.owner.get(), self) {
                self.flush(b);
            }
        }
    }

    /// Copy the figures (after flushing the calling thread's batch).
    pub fn snapshot(&self, backend: BackendStats) -> Snapshot {
        self.flush_current_thread();
        let classes = core::array::from_fn(|i| {
            let c = &self.classes[i];
            (c.live.load(Relaxed), c.total.load(Relaxed))
        });
        Snapshot {
            allocs: self.allocs.load(Relaxed),
            zeroed: self.zeroed.load(Relaxed),
            aligned: self.aligned.load(Relaxed),
            reallocs: self.reallocs.load(Relaxed),
            frees: self.frees.load(Relaxed),
            failed: self.failed.load(Relaxed),
            in_use: self.in_use.load(Relaxed).max(0) as usize,
            peak: self.peak.load(Relaxed).max(0) as usize,
            requested: self.requested.load(Relaxed),
            hist: core::array::from_fn(|i| self.hist[i].load(Relaxed)),
            classes,
            large: (
                self.large_live.load(Relaxed),
                self.large_total.load(Relaxed),
            ),
            backend,
        }
    }
}

impl Default for Counters {
    fn default() -> Self {
        Self::new()
    }
}

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
        write_report(out, self.name, &self.snapshot())
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

/// Write a report of `s` in the text format the C library prints.
pub fn write_report(out: &mut dyn Write, name: &str, s: &Snapshot) -> fmt::Result {
    let b = &s.backend;
    writeln!(
        out,
        "=={}== stratalloc statistics (backend: {})",
        pid(),
        name
    )?;
    writeln!(
        out,
        "  calls       {} allocations ({} zeroed, {} aligned), {} reallocations, {} frees, {} failed",
        s.allocs, s.zeroed, s.aligned, s.reallocs, s.frees, s.failed
    )?;
    writeln!(
        out,
        "  live        {} blocks, {} in use, peak {}",
        s.live(),
        Bytes(s.in_use as u64),
        Bytes(s.peak as u64)
    )?;
    writeln!(out, "  requested   {} in total", Bytes(s.requested))?;
    if b.mapped != 0 || b.peak_mapped != 0 {
        // A backend that keeps no per-call counts (the engine) reports 0
        // allocations and 0 bytes in use: then the wrapper's own count of
        // live bytes is the one to compare with what is mapped.
        let counts = b.allocs != 0 || b.in_use != 0;
        let live = if counts { b.in_use } else { s.in_use };
        let unused = b.mapped.saturating_sub(live);
        let frag = if b.mapped == 0 {
            0.0
        } else {
            unused as f64 * 100.0 / b.mapped as f64
        };
        write!(
            out,
            "  backend     {} mapped (peak {}), ",
            Bytes(b.mapped as u64),
            Bytes(b.peak_mapped as u64)
        )?;
        if counts {
            write!(out, "{} in use by its count, ", Bytes(b.in_use as u64))?;
        }
        writeln!(out, "{} returned to the OS", Bytes(b.returned))?;
        writeln!(
            out,
            "  fragmentation {frag:.1}% of mapped memory is not in live blocks"
        )?;
    } else {
        writeln!(out, "  backend     reports no mapping figures")?;
    }
    writeln!(out, "  peak RSS    {}", Bytes(peak_rss()))?;
    writeln!(out, "  request sizes (power-of-two buckets):")?;
    let max = s.hist.iter().copied().max().unwrap_or(0).max(1);
    for (k, &n) in s.hist.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let hi: u64 = if k == 0 { 1 } else { 1u64 << k.min(63) };
        let bar = (n * 40).div_ceil(max) as usize;
        write!(out, "    <= {:>10} {:>10}  ", Bytes(hi), n)?;
        for _ in 0..bar {
            out.write_char('#')?;
        }
        out.write_char('\n')?;
    }
    writeln!(out, "  usable-size classes (live / ever):")?;
    let mut col = 0;
    for (i, &(live, total)) in s.classes.iter().enumerate() {
        if total == 0 {
            continue;
        }
        write!(out, "    <= {:>7}: {live:>7} / {total:<9}", class_limit(i))?;
        col += 1;
        if col % 3 == 0 {
            out.write_char('\n')?;
        }
    }
    if col % 3 != 0 {
        out.write_char('\n')?;
    }
    if s.large.1 != 0 {
        writeln!(
            out,
            "    larger than {}: {} live / {} ever",
            Bytes(CLASS_LIMIT as u64),
            s.large.0,
            s.large.1
        )?;
    }
    Ok(())
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

    fn trim(&self) -> bool {
        self.inner.trim()
    }
    fn fork_prepare(&self) {
        pool::lock_for_fork();
        self.inner.fork_prepare()
    }
    fn fork_parent(&self) {
        self.inner.fork_parent();
        // SAFETY: taken in fork_prepare.
        unsafe { pool::unlock_after_fork() };
    }
    fn fork_child(&self) {
        self.inner.fork_child();
        EXIT_KEY.fork_child();
        // SAFETY: taken in fork_prepare (by the parent).
        unsafe { pool::unlock_after_fork() };
    }
    fn stats(&self) -> BackendStats {
        self.inner.stats()
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
}
