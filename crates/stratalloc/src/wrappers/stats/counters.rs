//! The accounting: the process-wide counters (relaxed atomics), the size
//! classes and histogram buckets they are kept by, snapshots, and the
//! per-thread batch (plain `Cell`s in a block from a pool of mapped memory)
//! that feeds them.

use core::cell::Cell;
use core::sync::atomic::{AtomicI64, AtomicIsize, AtomicU64, Ordering::Relaxed};

use crate::backend::BackendStats;
use crate::sync::KeyOnce;

/// Number of histogram buckets: bucket `k` holds requests of
/// `(2^(k-1), 2^k]` bytes (bucket 0: 0 and 1 byte).
pub const BUCKETS: usize = 49;
/// Usable-size classes: 65 of 16 bytes (0..=1024), then 4 per power of two
/// up to [`CLASS_LIMIT`].
pub const CLASS_SLOTS: usize = 65 + 4 * 10;
/// Usable sizes above this are counted together as "large".
pub const CLASS_LIMIT: usize = 1 << 20;

pub(super) struct ClassSlot {
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

use crate::tuning::STATS_BATCH_OPS as BATCH_OPS;
// The dirty mask has a bit per class; byte-sized deltas hold a full batch.
const _: () = assert!(CLASS_SLOTS <= 128 && BUCKETS <= 64 && BATCH_OPS <= 127);

/// A thread's unflushed figures (see the module docs).
pub(super) struct Batch {
    pub(super) owner: Cell<*const Counters>,
    pub(super) ops: Cell<u32>,
    pub(super) allocs: Cell<u64>,
    pub(super) zeroed: Cell<u64>,
    pub(super) aligned: Cell<u64>,
    pub(super) reallocs: Cell<u64>,
    pub(super) frees: Cell<u64>,
    pub(super) failed: Cell<u64>,
    pub(super) requested: Cell<u64>,
    pub(super) hist: [Cell<u8>; BUCKETS],
    pub(super) hist_dirty: Cell<u64>,
    pub(super) delta: Cell<isize>,
    pub(super) max_delta: Cell<isize>,
    /// Per class: live and total deltas (a batch holds at most 64
    /// operations, so they fit in a byte), and which classes are dirty.
    pub(super) cls_live: [Cell<i8>; CLASS_SLOTS],
    pub(super) cls_total: [Cell<u8>; CLASS_SLOTS],
    pub(super) dirty: Cell<u128>,
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

/// Batches in mapped memory ([`map_meta`](crate::os::map_meta)),
/// handed to threads and given back when they exit, under a
/// [`SpinLock`](crate::sync::SpinLock) that the wrapper's fork
/// handlers hold across `fork`. Never unmapped.
pub(super) mod pool {
    use super::Batch;
    use crate::os::map_meta as map;
    use crate::sync::SpinLock;

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

    /// Hold the pool's lock across `fork`: `false` if it gave up (see
    /// `SpinLock::raw_try_lock`).
    #[must_use]
    pub fn try_lock_for_fork() -> bool {
        POOL.raw_try_lock()
    }

    /// Release what [`try_lock_for_fork`] took.
    ///
    /// # Safety
    /// [`try_lock_for_fork`] returned `true`, in this process or its parent.
    pub unsafe fn unlock_after_fork() {
        // SAFETY: forwarded from the caller.
        unsafe { POOL.raw_unlock() };
    }
}

/// A pthread key whose destructor flushes an exiting thread's batch (its
/// value is the `Counters` the batch belongs to), so no thread's last
/// figures are lost. Creating it and setting its value allocate nothing in
/// glibc (keys below 32 live in the thread descriptor).
pub(super) static EXIT_KEY: KeyOnce = KeyOnce::new();

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
    pub(super) fn batch(&self, f: impl FnOnce(&Batch)) {
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
    pub(super) fn flush(&self, b: &Batch) {
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
    pub(super) fn hist(b: &Batch, size: usize) {
        let k = bucket(size);
        b.hist[k].set(b.hist[k].get() + 1);
        b.hist_dirty.set(b.hist_dirty.get() | 1 << k);
    }

    #[inline]
    pub(super) fn bytes(b: &Batch, d: isize) {
        let now = b.delta.get() + d;
        b.delta.set(now);
        if now > b.max_delta.get() {
            b.max_delta.set(now);
        }
    }

    #[inline]
    pub(super) fn local_class(&self, b: &Batch, usable: usize, live: i8, total: u8) {
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
    pub(super) fn on_alloc(&self, size: usize, usable: usize, zeroed: bool, aligned: bool) {
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
    pub(super) fn on_free(&self, usable: usize) {
        self.batch(|b| {
            inc(&b.frees, 1);
            Self::bytes(b, -(usable as isize));
            self.local_class(b, usable, -1, 0);
        })
    }

    #[inline]
    pub(super) fn on_realloc(&self, size: usize, old: usize, new: usize) {
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
    pub(super) fn on_fail(&self) {
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
