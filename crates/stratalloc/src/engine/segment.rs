//! Segments: 4 MiB aligned blocks of address space cut into 64 slices of
//! 64 KiB; the segment map; the global segment cache and abandoned list.
//!
//! ```text
//!   segment (4 MiB, 4 MiB aligned)
//!   +--------+--------+--------+--------+-----+--------+
//!   | header | page A | page B (3 slices)| ... | free   |
//!   | slice 0| slice 1| slice 2..4       |     |        |
//!   +--------+--------+--------+--------+-----+--------+
//!   header = Segment { owner, free_mask, dirty_mask, pages[64] ... }
//!   segment_of(p) = p & !(4 MiB - 1); page_of(p) = seg + page_off[(p - seg) >> 16]
//! ```
//!
//! Invariants of a normal segment:
//! - `free_mask & 1 == 0` (slice 0 is the header); `dirty_mask ⊆ free_mask`
//! - every slice not in `free_mask` belongs to exactly one in-use span,
//!   whose head descriptor has `in_use` and `slice_count`, and whose other
//!   descriptors have `slice_offset` = distance to the head; `page_off[i]`
//!   is the byte offset of the descriptor heading slice i's span
//! - a clean free slice (free, not dirty) reads as zeros
//! - a free slice's descriptor is not in use, has `slice_offset == 0` and
//!   `page_off` pointing to itself
//!   (so a stale pointer into it is caught on free)
//! - `owner` is the id of the owning heap, or 0 while abandoned
//! - `scratch == 0` (it is used only inside one call of the owner)
//!
//! The segment map is a flat bitmap over the 48-bit address space (one bit
//! per 4 MiB, 8 MiB of `.bss` of which only touched pages are resident):
//! `free` asks it before reading any header, so a pointer from another
//! allocator is reported instead of crashing.

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};

use super::page::Page;
use crate::os;

pub const SLICE_SHIFT: usize = 16;
/// Bytes per slice.
pub const SLICE_SIZE: usize = 1 << SLICE_SHIFT;
pub const SEGMENT_SHIFT: usize = 22;
/// Bytes per segment (and its alignment).
pub const SEGMENT_SIZE: usize = 1 << SEGMENT_SHIFT;
/// Slices per segment (slice 0 holds the header).
pub const SLICES_PER_SEGMENT: usize = SEGMENT_SIZE / SLICE_SIZE;
/// All slices but the header.
pub const ALL_FREE: u64 = !1u64;
const COOKIE_XOR: usize = 0x9e37_79b9_7f4a_7c15;

const _: () = assert!(SLICES_PER_SEGMENT == 64);
const _: () = assert!(core::mem::size_of::<Segment>() <= SLICE_SIZE);

/// What a segment holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Kind {
    /// Pages of slices.
    Normal = 1,
    /// One huge block mapped for itself.
    Huge = 2,
}

#[repr(C)]
pub struct Segment {
    /// `address ^ COOKIE_XOR`: tells a real header from garbage.
    pub cookie: usize,
    pub kind: Kind,
    /// Heap id of the owner; 0 while abandoned (and for huge segments).
    pub owner: AtomicUsize,
    /// A remote free cleared the FULL bit of one of our floating pages.
    pub pending: AtomicBool,
    /// Per slice: byte offset from the segment start of the descriptor
    /// heading its span (its own descriptor for a free slice), so that the
    /// free fast path finds a block's page with one load.
    pub page_off: [u16; SLICES_PER_SEGMENT],
    /// Bit i: slice i is free (owner only).
    pub free_mask: u64,
    /// Bit i: slice i is free but may hold data (not purged).
    pub dirty_mask: u64,
    /// When to purge dirty slices (ms, 0 = nothing scheduled).
    pub purge_at: u64,
    /// When each slice was last freed (ms, truncated): a dirty slice is
    /// purged only once it stayed free for a whole delay, so a slice freed
    /// just before a purge visit is not madvised and refaulted at once.
    pub freed_at: [u32; SLICES_PER_SEGMENT],
    /// Owning heap's segment list / abandoned list / cache.
    pub next: *mut Segment,
    pub prev: *mut Segment,
    /// Owner's scratch mask while it looks for room (0 between calls).
    pub scratch: u64,
    /// Huge: bytes mapped from the segment start.
    pub map_size: usize,
    /// Huge: the block handed out, and its usable size.
    pub huge_block: *mut u8,
    pub huge_size: usize,
    pub pages: [Page; SLICES_PER_SEGMENT],
}

/// The segment `p` would belong to.
#[inline(always)]
pub fn segment_of(p: *const u8) -> *mut Segment {
    ((p as usize) & !(SEGMENT_SIZE - 1)) as *mut Segment
}

impl Segment {
    #[inline(always)]
    pub fn cookie_ok(&self) -> bool {
        self.cookie == (self as *const Segment as usize) ^ COOKIE_XOR
    }

    /// The page descriptor heading the span that holds `p`.
    ///
    /// Takes the header as a raw pointer and reads one `page_off` entry
    /// through it: any thread may ask (a free of another thread's block),
    /// and no reference to a header its owner is writing is made.
    ///
    /// # Safety
    /// `seg` is a registered segment (its header is mapped).
    #[inline(always)]
    pub unsafe fn page_of(seg: *mut Segment, p: *const u8) -> *mut Page {
        let i = (p as usize >> SLICE_SHIFT) & (SLICES_PER_SEGMENT - 1);
        // SAFETY: `page_off` entries are offsets of descriptors inside this
        // header (set by `link_slice`, checked by `check`); the entry of a
        // slice of a live block does not change while the block is live.
        unsafe {
            let off = ptr::addr_of!((*seg).page_off[i]).read();
            seg.cast::<u8>().add(off as usize).cast()
        }
    }

    /// Byte offset of descriptor `i` from the segment start.
    #[inline]
    fn desc_off(i: usize) -> u16 {
        (core::mem::offset_of!(Segment, pages) + i * core::mem::size_of::<Page>()) as u16
    }

    /// Make slice `i` part of the span headed by slice `head` (`head == i`:
    /// a span head or a free slice).
    #[inline]
    fn link_slice(&mut self, i: usize, head: usize) {
        self.pages[i].slice_offset = (i - head) as u8;
        self.page_off[i] = Self::desc_off(head);
    }

    /// Address of slice `i`.
    #[inline]
    pub fn slice_addr(&self, i: usize) -> *mut u8 {
        (self as *const Segment as usize + (i << SLICE_SHIFT)) as *mut u8
    }

    pub fn is_empty(&self) -> bool {
        self.free_mask == ALL_FREE
    }

    /// Where a span of `n` dirty (resident) free slices would best go
    /// (see [`dirty_span_in`]).
    #[inline]
    pub fn dirty_span(&self, n: usize) -> Option<usize> {
        dirty_span_in(self.free_mask, self.dirty_mask, n)
    }

    /// Where a span of `n` free slices would go when no dirty run has
    /// room (see [`clean_span_in`]).
    #[inline]
    pub fn clean_span(&self, n: usize) -> Option<usize> {
        clean_span_in(self.free_mask, self.dirty_mask, n)
    }

    /// Allocate a span of `n` contiguous free slices, dirty ones if
    /// there is room ([`Segment::dirty_span`], else
    /// [`Segment::clean_span`]). Returns the first slice index.
    pub fn take_span(&mut self, n: usize) -> Option<usize> {
        let i = self.dirty_span(n).or_else(|| self.clean_span(n))?;
        self.take_span_at(i, n);
        Some(i)
    }

    /// Allocate the span of `n` free slices starting at slice `i`.
    pub fn take_span_at(&mut self, i: usize, n: usize) {
        let bits = span_bits(i, n);
        let was_zero = self.dirty_mask & bits == 0;
        self.free_mask &= !bits;
        self.dirty_mask &= !bits;
        let start = self.slice_addr(i);
        for k in 0..n {
            self.link_slice(i + k, i);
            self.pages[i + k].in_use = false;
        }
        let head = &mut self.pages[i];
        head.in_use = true;
        head.is_zero = was_zero;
        head.slice_count = n as u32;
        head.start = start;
    }

    /// Resize the in-use span headed by slice `i` to `n` slices in place:
    /// a shrink frees the tail (dirty); a growth takes the free slices that
    /// follow, if there are enough. Returns whether the span now has `n`
    /// slices. Owner only.
    pub fn resize_span(&mut self, i: usize, n: usize, now: u64) -> bool {
        let old = self.pages[i].slice_count as usize;
        if n == old {
            return true;
        }
        if n < old {
            let bits = span_bits(i + n, old - n);
            for k in n..old {
                self.pages[i + k].in_use = false;
                self.link_slice(i + k, i + k);
                self.freed_at[i + k] = now as u32;
            }
            self.free_mask |= bits;
            self.dirty_mask |= bits;
            if self.purge_at == 0 {
                self.purge_at = now + PURGE_DELAY_MS;
            }
        } else {
            if i + n > SLICES_PER_SEGMENT {
                return false;
            }
            let bits = span_bits(i + old, n - old);
            if self.free_mask & bits != bits {
                return false;
            }
            self.free_mask &= !bits;
            self.dirty_mask &= !bits;
            for k in old..n {
                self.link_slice(i + k, i);
                self.pages[i + k].in_use = false;
            }
        }
        self.pages[i].slice_count = n as u32;
        true
    }

    /// Give the span headed by slice `i` back to the segment (dirty).
    pub fn free_span(&mut self, i: usize, now: u64) {
        let n = self.pages[i].slice_count as usize;
        let bits = span_bits(i, n);
        debug_assert!(self.free_mask & bits == 0);
        // A stale pointer into any slice of the span now finds a descriptor
        // that is not in use (and aborts) instead of an old head.
        for k in 1..n {
            self.link_slice(i + k, i + k);
        }
        for k in 0..n {
            self.freed_at[i + k] = now as u32;
        }
        let head = &mut self.pages[i];
        head.in_use = false;
        head.used = 0;
        head.reserved = 0;
        head.free = ptr::null_mut();
        head.local_free = ptr::null_mut();
        head.thread_free.store(0, Relaxed);
        head.set_capacity(0);
        head.set_flags(0);
        head.next = ptr::null_mut();
        head.prev = ptr::null_mut();
        self.free_mask |= bits;
        self.dirty_mask |= bits;
        if self.purge_at == 0 {
            self.purge_at = now + PURGE_DELAY_MS;
        }
    }

    /// madvise every dirty free slice away. Slices the kernel refused to
    /// purge (`madvise` fails on locked memory) stay dirty, to be tried
    /// again after a delay: a clean slice must read as zeros.
    pub fn purge(&mut self, now: u64) {
        self.dirty_mask &= !self.purge_mask(self.dirty_mask);
        self.purge_at = if self.dirty_mask != 0 {
            now + PURGE_DELAY_MS
        } else {
            0
        };
    }

    /// `purge_at` has come: madvise the dirty slices freed at least one
    /// delay ago and schedule the next visit for the youngest of the rest
    /// (64 timestamps scanned at most). Returns whether anything was
    /// purged.
    pub fn purge_aged(&mut self, now: u64) -> bool {
        let (mut m, mut wait) = (0u64, u64::MAX);
        let mut d = self.dirty_mask;
        while d != 0 {
            let i = d.trailing_zeros() as usize;
            d &= d - 1;
            let age = (now as u32).wrapping_sub(self.freed_at[i]) as u64;
            if age >= PURGE_DELAY_MS {
                m |= 1 << i;
            } else {
                wait = wait.min(PURGE_DELAY_MS - age);
            }
        }
        let done = self.purge_mask(m);
        if done != m {
            // Refused by the kernel: those slices stay dirty; try again
            // after a delay.
            wait = wait.min(PURGE_DELAY_MS);
        }
        self.dirty_mask &= !done;
        self.purge_at = if self.dirty_mask != 0 { now + wait } else { 0 };
        done != 0
    }

    /// Purge the runs of slices in `m`; returns the slices purged (those
    /// whose `madvise` succeeded).
    fn purge_mask(&self, mut m: u64) -> u64 {
        let mut done = 0;
        while m != 0 {
            let i = m.trailing_zeros() as usize;
            let len = (!(m >> i)).trailing_zeros() as usize;
            // SAFETY: free slices hold no live data; page aligned.
            if unsafe { os::purge(self.slice_addr(i), len << SLICE_SHIFT) } {
                done |= span_bits(i, len);
            }
            m &= !span_bits(i, len);
        }
        done
    }

    /// Call `f` on the head descriptor of every in-use span of `seg`, in
    /// address order. `f` may release the span it is given (the walk reads
    /// the span length first) but not free the segment.
    ///
    /// # Safety
    /// The caller owns `seg`; `f` upholds the same rules.
    pub unsafe fn for_each_page(seg: *mut Segment, mut f: impl FnMut(*mut Page)) {
        let mut i = 1;
        while i < SLICES_PER_SEGMENT {
            // SAFETY: the caller owns `seg`; i < 64.
            unsafe {
                let page: *mut Page = &mut (*seg).pages[i];
                if (*seg).free_mask & (1 << i) != 0 || !(*page).in_use {
                    i += 1;
                    continue;
                }
                i += (*page).slice_count as usize;
                f(page);
            }
        }
    }

    /// Verify the slice invariants (owner only).
    pub unsafe fn check(&self) -> Result<(), &'static str> {
        if !self.cookie_ok() {
            return Err("bad segment cookie");
        }
        if self.kind != Kind::Normal {
            return Ok(());
        }
        if self.free_mask & 1 != 0 || self.dirty_mask & !self.free_mask != 0 {
            return Err("free/dirty masks inconsistent");
        }
        if self.scratch != 0 {
            return Err("scratch mask left set");
        }
        let mut i = 1;
        while i < SLICES_PER_SEGMENT {
            if self.free_mask & (1 << i) != 0 {
                if self.pages[i].in_use
                    || self.pages[i].slice_offset != 0
                    || self.page_off[i] != Self::desc_off(i)
                {
                    return Err("free slice with a live descriptor");
                }
                i += 1;
                continue;
            }
            let p = &self.pages[i];
            if !p.in_use || p.slice_count == 0 || i + p.slice_count as usize > SLICES_PER_SEGMENT {
                return Err("used slice without a span head");
            }
            for k in 1..p.slice_count as usize {
                if self.pages[i + k].slice_offset != k as u8 || self.free_mask & (1 << (i + k)) != 0
                {
                    return Err("span tail descriptor broken");
                }
            }
            for k in 0..p.slice_count as usize {
                if self.page_off[i + k] != Self::desc_off(i) {
                    return Err("page_off of a used slice is not its span head");
                }
            }
            // SAFETY: forwarded from the caller.
            unsafe { p.check()? };
            i += p.slice_count as usize;
        }
        Ok(())
    }
}

/// Purge delay for empty pages.
pub const PURGE_DELAY_MS: u64 = 10;

/// Where a span of `n` dirty (resident) slices would best go, given the
/// free and dirty masks (`dirty ⊆ free`): where it fills a free run
/// exactly, else at an end of a free run (long runs stay whole for long
/// spans; one-slice pages gather in holes), else the lowest dirty run.
/// None if no run of `n` dirty slices exists.
#[inline]
pub fn dirty_span_in(free: u64, dirty: u64, n: usize) -> Option<usize> {
    if dirty == 0 {
        return None;
    }
    let d = runs(dirty, n);
    if d == 0 {
        return None;
    }
    // bit i: slice i - 1 / slice i + n is not free
    let starts = d & !(free << 1);
    let ends = d & !(free >> n);
    let pick = if starts & ends != 0 {
        starts & ends
    } else if starts | ends != 0 {
        starts | ends
    } else {
        d
    };
    Some(pick.trailing_zeros() as usize)
}

/// Where a span of `n` free slices would go: the lowest run, starting on
/// a dirty slice if one can (fewer slices to fault in). None if no free
/// run is long enough.
#[inline]
fn clean_span_in(free: u64, dirty: u64, n: usize) -> Option<usize> {
    if free == 0 {
        return None;
    }
    let a = runs(free, n);
    if a == 0 {
        return None;
    }
    let on_dirty = a & dirty;
    Some((if on_dirty != 0 { on_dirty } else { a }).trailing_zeros() as usize)
}

/// Bit i set iff bits `i .. i + n` of `m` are all set (`n >= 1`): each
/// step doubles the run length checked, so `log2 n` steps.
#[inline]
fn runs(m: u64, n: usize) -> u64 {
    let (mut r, mut k) = (m, 1);
    while k < n {
        let s = k.min(n - k);
        r &= r >> s;
        k += s;
    }
    r
}

#[inline]
pub fn span_bits(i: usize, n: usize) -> u64 {
    (if n >= 64 { !0u64 } else { (1u64 << n) - 1 }) << i
}

// ---------------------------------------------------------------- segment map

const MAP_BITS: usize = 48;
/// Words of the map: one bit per segment of the 48-bit address space.
const MAP_WORDS: usize = 1 << (MAP_BITS - SEGMENT_SHIFT - 6);

/// The segment map: 8 MiB of zero-initialised static memory (`.bss`), so
/// only the pages holding bits that were ever set become resident; a
/// lookup is one shift and one load, with no level to follow.
static SEGMAP: [AtomicU64; MAP_WORDS] = [const { AtomicU64::new(0) }; MAP_WORDS];

/// Is `seg` (a segment-aligned address) one of ours?
#[inline(always)]
pub fn segmap_contains(seg: *const Segment) -> bool {
    let a = seg as usize;
    if a >> MAP_BITS != 0 {
        return false;
    }
    let idx = a >> SEGMENT_SHIFT;
    let w = SEGMAP[idx / 64].load(Relaxed);
    w & (1 << (idx % 64)) != 0
}

/// Set or clear the bit of `seg`; false if the address is out of range.
fn segmap_set(seg: *const Segment, on: bool) -> bool {
    let a = seg as usize;
    if a >> MAP_BITS != 0 {
        return false;
    }
    let idx = a >> SEGMENT_SHIFT;
    let w = &SEGMAP[idx / 64];
    if on {
        w.fetch_or(1 << (idx % 64), Release);
    } else {
        w.fetch_and(!(1 << (idx % 64)), Release);
    }
    true
}

// ------------------------------------------------------------- global lock

/// The one global lock: segment cache and abandoned list. Held briefly,
/// never across an OS call that could block for long, never re-entered.
pub struct SpinLock(AtomicBool);

impl SpinLock {
    pub const fn new() -> Self {
        SpinLock(AtomicBool::new(false))
    }
    pub fn lock(&self) {
        loop {
            if self
                .0
                .compare_exchange_weak(false, true, Acquire, Relaxed)
                .is_ok()
            {
                return;
            }
            while self.0.load(Relaxed) {
                // SAFETY: sched_yield has no preconditions.
                unsafe { libc::sched_yield() };
            }
        }
    }
    pub fn unlock(&self) {
        self.0.store(false, Release);
    }
    /// For the child after fork: the lock is free whatever state it had.
    pub fn force_unlock(&self) {
        self.0.store(false, Release);
    }
}

pub static GLOBAL: SpinLock = SpinLock::new();

struct Shared {
    cache: [*mut Segment; CACHE_MAX],
    cached: usize,
    abandoned: *mut Segment,
    abandoned_count: usize,
    huge: [*mut Segment; HUGE_CACHE_MAX],
    nhuge: usize,
    huge_bytes: usize,
}

/// Empty segments kept for reuse (their free slices purged after the
/// delay).
const CACHE_MAX: usize = 8;
/// Freed huge mappings kept for reuse, at most this many...
const HUGE_CACHE_MAX: usize = 8;
/// ...holding at most this many bytes; each is unmapped after the delay.
const HUGE_CACHE_BYTES: usize = 64 << 20;

struct SharedCell(core::cell::UnsafeCell<Shared>);
// SAFETY: only accessed while GLOBAL is held.
unsafe impl Sync for SharedCell {}

static SHARED: SharedCell = SharedCell(core::cell::UnsafeCell::new(Shared {
    cache: [ptr::null_mut(); CACHE_MAX],
    cached: 0,
    abandoned: ptr::null_mut(),
    abandoned_count: 0,
    huge: [ptr::null_mut(); HUGE_CACHE_MAX],
    nhuge: 0,
    huge_bytes: 0,
}));

fn with_shared<R>(f: impl FnOnce(&mut Shared) -> R) -> R {
    GLOBAL.lock();
    // SAFETY: GLOBAL is held, giving exclusive access.
    let r = f(unsafe { &mut *SHARED.0.get() });
    GLOBAL.unlock();
    r
}

/// Abandoned segments right now.
pub fn abandoned_count() -> usize {
    with_shared(|s| s.abandoned_count)
}

/// Mapped segment count (normal segments, live or cached).
pub static SEGMENTS: AtomicUsize = AtomicUsize::new(0);

/// Take a cached empty segment (null if none).
fn cache_pop() -> *mut Segment {
    with_shared(|s| {
        if s.cached > 0 {
            s.cached -= 1;
            s.cache[s.cached]
        } else {
            ptr::null_mut()
        }
    })
}

/// A fresh normal segment owned by heap `owner`, from the cache or the OS.
pub fn segment_alloc(owner: usize) -> *mut Segment {
    let mut seg = cache_pop();
    if seg.is_null() {
        let p = os::map_aligned(SEGMENT_SIZE, SEGMENT_SIZE);
        if p.is_null() {
            return p.cast();
        }
        if !segmap_set(p.cast(), true) {
            // SAFETY: just mapped.
            unsafe { os::unmap(p, SEGMENT_SIZE) };
            return ptr::null_mut();
        }
        SEGMENTS.fetch_add(1, Relaxed);
        seg = p.cast();
        // SAFETY: `seg` is a fresh zeroed mapping we own.
        unsafe { init_normal(seg, owner, 0, 0) };
    } else {
        // SAFETY: the cached header is ours: reset the descriptors, keep
        // which slices are dirty and when they are due for purging.
        unsafe {
            let (dirty, at) = ((*seg).dirty_mask, (*seg).purge_at);
            ptr::write_bytes(seg.cast::<u8>(), 0, core::mem::size_of::<Segment>());
            init_normal(seg, owner, dirty, at);
        }
    }
    seg
}

unsafe fn init_normal(seg: *mut Segment, owner: usize, dirty: u64, purge_at: u64) {
    // SAFETY: the caller owns the zeroed header.
    let s = unsafe { &mut *seg };
    s.cookie = seg as usize ^ COOKIE_XOR;
    s.kind = Kind::Normal;
    s.owner.store(owner, Relaxed);
    s.free_mask = ALL_FREE;
    s.dirty_mask = dirty;
    s.purge_at = purge_at;
    for i in 0..SLICES_PER_SEGMENT {
        s.link_slice(i, i);
    }
}

/// Return an empty normal segment to the cache (its dirty slices are
/// purged when due, see [`global_purge`]), or unmap it if the cache is full.
///
/// # Safety
/// `seg` is empty, owned by the caller, in no list.
pub unsafe fn segment_free(seg: *mut Segment) {
    // SAFETY: the caller owns the empty segment.
    unsafe { (*seg).owner.store(0, Relaxed) };
    // SAFETY: forwarded.
    unsafe { cache_push(seg) };
}

/// Put an empty, unowned segment in the cache or unmap it.
unsafe fn cache_push(seg: *mut Segment) {
    let cached = with_shared(|s| {
        if s.cached < CACHE_MAX {
            s.cache[s.cached] = seg;
            s.cached += 1;
            true
        } else {
            false
        }
    });
    if !cached {
        // SAFETY: unlisted and empty.
        unsafe { unmap_segment(seg) };
    }
}

unsafe fn unmap_segment(seg: *mut Segment) {
    // SAFETY: forwarded.
    unsafe { (*seg).cookie = 0 };
    segmap_set(seg, false);
    SEGMENTS.fetch_sub(1, Relaxed);
    // SAFETY: forwarded.
    unsafe { os::unmap(seg.cast(), SEGMENT_SIZE) };
}

/// Unmap every cached segment and huge mapping; true if there were any.
pub fn drain_cache() -> bool {
    let mut any = false;
    loop {
        let h = with_shared(|s| {
            if s.nhuge > 0 {
                s.nhuge -= 1;
                // SAFETY: cached huge headers are valid.
                s.huge_bytes -= unsafe { (*s.huge[s.nhuge]).map_size };
                s.huge[s.nhuge]
            } else {
                ptr::null_mut()
            }
        });
        if h.is_null() {
            break;
        }
        // SAFETY: taken off the cache; nobody else has it.
        unsafe { huge_unmap(h) };
        any = true;
    }
    loop {
        let seg = cache_pop();
        if seg.is_null() {
            return any;
        }
        // SAFETY: taken off the cache; nobody else has it.
        unsafe { unmap_segment(seg) };
        any = true;
    }
}

/// Put `seg` (already `owner == 0`) on the abandoned list.
pub unsafe fn abandon_push(seg: *mut Segment) {
    with_shared(|s| {
        // SAFETY: we hold the lock and the segment.
        unsafe { (*seg).next = s.abandoned };
        s.abandoned = seg;
        s.abandoned_count += 1;
    });
}

/// Take one abandoned segment, if any.
pub fn abandon_pop() -> *mut Segment {
    with_shared(|s| {
        let seg = s.abandoned;
        if !seg.is_null() {
            // SAFETY: listed segments are valid.
            s.abandoned = unsafe { (*seg).next };
            s.abandoned_count -= 1;
        }
        seg
    })
}

/// Register or unregister a huge segment in the map.
pub fn huge_register(seg: *mut Segment, on: bool) -> bool {
    segmap_set(seg, on)
}

/// Make a header for a huge segment at `seg` (mapped, zeroed).
pub unsafe fn huge_init(seg: *mut Segment, map_size: usize, block: *mut u8, size: usize) {
    // SAFETY: the caller just mapped `seg`.
    unsafe {
        let s = &mut *seg;
        s.cookie = seg as usize ^ COOKIE_XOR;
        s.kind = Kind::Huge;
        s.owner.store(0, Relaxed);
        s.map_size = map_size;
        s.huge_block = block;
        s.huge_size = size;
    }
}

/// Unregister and unmap a huge mapping.
///
/// # Safety
/// `seg` is a huge segment nobody else uses.
pub unsafe fn huge_unmap(seg: *mut Segment) {
    // SAFETY: forwarded.
    unsafe {
        (*seg).cookie = 0;
        segmap_set(seg, false);
        os::unmap(seg.cast(), (*seg).map_size);
    }
}

/// Keep a freed huge mapping for reuse; false if the cache has no room
/// (the caller unmaps it then).
///
/// # Safety
/// `seg` is a huge segment whose block was just freed.
pub unsafe fn huge_cache_put(seg: *mut Segment, now: u64) -> bool {
    // SAFETY: forwarded.
    let size = unsafe { (*seg).map_size };
    with_shared(|s| {
        if s.nhuge == HUGE_CACHE_MAX || s.huge_bytes + size > HUGE_CACHE_BYTES {
            return false;
        }
        // SAFETY: the header is ours until it is listed.
        unsafe {
            (*seg).huge_block = ptr::null_mut();
            (*seg).purge_at = now + PURGE_DELAY_MS;
        }
        s.huge[s.nhuge] = seg;
        s.nhuge += 1;
        s.huge_bytes += size;
        true
    })
}

/// A cached huge mapping of at least `need` bytes that wastes at most a
/// quarter (or 1 MiB) beyond it; null if none.
pub fn huge_cache_take(need: usize) -> *mut Segment {
    with_shared(|s| {
        for i in 0..s.nhuge {
            let seg = s.huge[i];
            // SAFETY: cached huge headers are valid.
            let size = unsafe { (*seg).map_size };
            if size >= need && size - need <= (need / 4).max(1 << 20) {
                s.nhuge -= 1;
                s.huge[i] = s.huge[s.nhuge];
                s.huge_bytes -= size;
                return seg;
            }
        }
        ptr::null_mut()
    })
}

static NEXT_GLOBAL_PURGE: AtomicU64 = AtomicU64::new(0);

/// Purge cached segments and unmap cached huge mappings whose delay has
/// passed. Cheap when nothing is due (one atomic load); called from slow
/// paths of any thread.
pub fn global_purge(now: u64) {
    let due = NEXT_GLOBAL_PURGE.load(Relaxed);
    if now < due
        || NEXT_GLOBAL_PURGE
            .compare_exchange(due, now + PURGE_DELAY_MS, Relaxed, Relaxed)
            .is_err()
    {
        return;
    }
    let mut segs = [ptr::null_mut::<Segment>(); CACHE_MAX];
    let mut huge = [ptr::null_mut::<Segment>(); HUGE_CACHE_MAX];
    let (mut ns, mut nh) = (0, 0);
    with_shared(|s| {
        let mut i = 0;
        while i < s.cached {
            let seg = s.cache[i];
            // SAFETY: cached headers are valid; we hold the lock.
            if unsafe { (*seg).dirty_mask != 0 && (*seg).purge_at <= now } {
                segs[ns] = seg;
                ns += 1;
                s.cached -= 1;
                s.cache[i] = s.cache[s.cached];
            } else {
                i += 1;
            }
        }
        let mut i = 0;
        while i < s.nhuge {
            let seg = s.huge[i];
            // SAFETY: as above.
            if unsafe { (*seg).purge_at <= now } {
                huge[nh] = seg;
                nh += 1;
                s.nhuge -= 1;
                // SAFETY: as above.
                s.huge_bytes -= unsafe { (*seg).map_size };
                s.huge[i] = s.huge[s.nhuge];
            } else {
                i += 1;
            }
        }
    });
    for &seg in &segs[..ns] {
        // SAFETY: taken off the cache: ours until pushed back.
        unsafe {
            (*seg).purge(now);
            cache_push(seg);
        }
    }
    for &seg in &huge[..nh] {
        // SAFETY: taken off the cache.
        unsafe { huge_unmap(seg) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_runs(m: u64, n: usize) -> u64 {
        (0..64)
            .filter(|&i| i + n <= 64 && (i..i + n).all(|k| m & (1 << k) != 0))
            .fold(0, |r, i| r | 1 << i)
    }

    fn masks() -> impl Iterator<Item = (u64, u64)> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..4000).map(move |k| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // dense and sparse masks; slice 0 is never free
            let free = if k % 2 == 0 { x | x >> 3 } else { x & x >> 5 } & ALL_FREE;
            let dirty = free & (x.rotate_left(17) | x.rotate_left(29));
            (free, dirty)
        })
    }

    #[test]
    fn runs_matches_a_bit_by_bit_scan() {
        for (free, _) in masks() {
            for n in [1, 2, 3, 5, 8, 13, 32] {
                assert_eq!(runs(free, n), naive_runs(free, n), "{free:#x} n {n}");
            }
        }
    }

    #[test]
    fn spans_lie_in_free_runs_and_dirty_spans_in_dirty_ones() {
        for (free, dirty) in masks() {
            for n in [1, 2, 4, 6, 8, 32] {
                let d = dirty_span_in(free, dirty, n);
                assert_eq!(d.is_some(), naive_runs(dirty, n) != 0);
                if let Some(i) = d {
                    assert_eq!(dirty & span_bits(i, n), span_bits(i, n));
                }
                let c = clean_span_in(free, dirty, n);
                assert_eq!(c.is_some(), naive_runs(free, n) != 0);
                if let Some(i) = c {
                    assert_eq!(free & span_bits(i, n), span_bits(i, n));
                }
            }
        }
    }

    #[test]
    fn a_dirty_hole_that_fits_goes_before_a_long_run() {
        // slices 1..=10 dirty and free, 11 used, 12 dirty and free, 13 used
        let free = span_bits(1, 10) | 1 << 12;
        assert_eq!(dirty_span_in(free, free, 1), Some(12));
        // no exact hole: the end of a run, not its middle
        let free = span_bits(1, 10);
        assert_eq!(dirty_span_in(free, free, 3), Some(1));
        // clean slices only if no dirty run has room; a dirty start first
        assert_eq!(dirty_span_in(free, 1 << 4, 2), None);
        assert_eq!(clean_span_in(free, 1 << 4, 2), Some(4));
    }
}
