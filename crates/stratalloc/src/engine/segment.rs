//! Segments: 4 MiB aligned blocks of address space cut into 64 slices of
//! 64 KiB, and where spans of slices go. The segment map is in `segmap.rs`;
//! the global segment cache, abandoned list and huge cache in `shared.rs`
//! (both re-exported here).
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
//! - `owner` is the id of the owning heap, or 0 while abandoned; `heap`
//!   is that heap, or null while abandoned
//! - `pending` set: the segment is on one heap's pending stack, or being
//!   pushed there by a remote free; it is not freed until the heap that
//!   pops it clears the flag
//! - `scratch == 0` (it is used only inside one call of the owner)
//!

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};

use super::heap::Heap;
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
pub(super) const COOKIE_XOR: usize = 0x9e37_79b9_7f4a_7c15;

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
    /// A remote free cleared the FULL bit of one of our floating pages;
    /// set (0 -> 1) by the freer that then pushes the segment on its
    /// owner's pending stack, cleared only by the heap that pops it (so a
    /// segment is on one stack at most, and never freed while set).
    pub pending: AtomicBool,
    /// The owning heap (null while abandoned, cached or huge): where a
    /// remote free that raises `pending` pushes the segment.
    pub heap: AtomicPtr<Heap>,
    /// Link of the owner's pending stack (`Heap::pending`).
    pub pending_next: AtomicPtr<Segment>,
    /// Per slice: byte offset from the segment start of the descriptor
    /// heading its span (its own descriptor for a free slice), so that the
    /// free fast path finds a block's page with one load.
    pub page_off: [u16; SLICES_PER_SEGMENT],
    /// Bit i: slice i is free (written by the owner; relaxed atomic, as
    /// `dirty_mask`, because `mallinfo`'s walk reads both from any thread).
    pub free_mask: AtomicU64,
    /// Bit i: slice i is free but may hold data (not purged).
    pub dirty_mask: AtomicU64,
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
    ///
    /// # Safety
    /// As [`Segment::take_span`].
    #[inline]
    pub(super) unsafe fn link_slice(seg: *mut Segment, i: usize, head: usize) {
        // SAFETY: the caller owns the segment.
        unsafe {
            (*seg).pages[i].slice_offset = (i - head) as u8;
            (*seg).page_off[i] = Self::desc_off(head);
        }
    }

    /// Address of slice `i`.
    #[inline]
    pub fn slice_addr(&self, i: usize) -> *mut u8 {
        (self as *const Segment as usize + (i << SLICE_SHIFT)) as *mut u8
    }

    relaxed_fields! {
        /// Bit i: slice i is free.
        free_mask / set_free_mask: u64;
        /// Bit i: slice i is free but not purged.
        dirty_mask / set_dirty_mask: u64;
    }

    pub fn is_empty(&self) -> bool {
        self.free_mask() == ALL_FREE
    }

    /// Empty and on no heap's pending stack: the segment may be freed.
    pub fn releasable(&self) -> bool {
        self.is_empty() && !self.pending.load(Acquire)
    }

    /// Where a span of `n` dirty (resident) free slices would best go
    /// (see [`dirty_span_in`]).
    #[inline]
    pub fn dirty_span(&self, n: usize) -> Option<usize> {
        dirty_span_in(self.free_mask(), self.dirty_mask(), n)
    }

    /// Where a span of `n` free slices would go when no dirty run has
    /// room (see [`clean_span_in`]).
    #[inline]
    pub fn clean_span(&self, n: usize) -> Option<usize> {
        clean_span_in(self.free_mask(), self.dirty_mask(), n)
    }

    /// Allocate a span of `n` contiguous free slices, dirty ones if
    /// there is room ([`Segment::dirty_span`], else
    /// [`Segment::clean_span`]). Returns the first slice index.
    ///
    /// # Safety
    /// `seg` is a segment of the calling thread's heap (or one it alone
    /// holds). A raw pointer, like every change of a header: no
    /// `&mut Segment` exists while `mallinfo`'s walk may read it.
    pub unsafe fn take_span(seg: *mut Segment, n: usize) -> Option<usize> {
        // SAFETY: the caller owns the segment.
        unsafe {
            let i = (*seg).dirty_span(n).or_else(|| (*seg).clean_span(n))?;
            Segment::take_span_at(seg, i, n);
            Some(i)
        }
    }

    /// Allocate the span of `n` free slices starting at slice `i`.
    ///
    /// # Safety
    /// As [`Segment::take_span`].
    pub unsafe fn take_span_at(seg: *mut Segment, i: usize, n: usize) {
        // SAFETY: the caller owns the segment.
        unsafe {
            let bits = span_bits(i, n);
            let was_zero = (*seg).dirty_mask() & bits == 0;
            (*seg).set_free_mask((*seg).free_mask() & !bits);
            (*seg).set_dirty_mask((*seg).dirty_mask() & !bits);
            let start = (*seg).slice_addr(i);
            for k in 0..n {
                Segment::link_slice(seg, i + k, i);
                (*seg).pages[i + k].set_in_use(false);
            }
            let head = ptr::addr_of_mut!((*seg).pages[i]);
            (*head).set_in_use(true);
            (*head).is_zero = was_zero;
            (*head).set_slice_count(n as u32);
            (*head).start = start;
        }
    }

    /// Resize the in-use span headed by slice `i` to `n` slices in place:
    /// a shrink frees the tail (dirty); a growth takes the free slices that
    /// follow, if there are enough. Returns whether the span now has `n`
    /// slices. Owner only.
    ///
    /// # Safety
    /// As [`Segment::take_span`].
    pub unsafe fn resize_span(seg: *mut Segment, i: usize, n: usize, now: u64) -> bool {
        // SAFETY: the caller owns the segment.
        unsafe {
            let old = (*seg).pages[i].slice_count() as usize;
            if n == old {
                return true;
            }
            if n < old {
                let bits = span_bits(i + n, old - n);
                for k in n..old {
                    (*seg).pages[i + k].set_in_use(false);
                    Segment::link_slice(seg, i + k, i + k);
                    (*seg).freed_at[i + k] = now as u32;
                }
                (*seg).set_free_mask((*seg).free_mask() | bits);
                (*seg).set_dirty_mask((*seg).dirty_mask() | bits);
                if (*seg).purge_at == 0 {
                    (*seg).purge_at = now + SLICE_PURGE_DELAY_MS;
                }
            } else {
                if i + n > SLICES_PER_SEGMENT {
                    return false;
                }
                let bits = span_bits(i + old, n - old);
                if (*seg).free_mask() & bits != bits {
                    return false;
                }
                (*seg).set_free_mask((*seg).free_mask() & !bits);
                (*seg).set_dirty_mask((*seg).dirty_mask() & !bits);
                for k in old..n {
                    Segment::link_slice(seg, i + k, i);
                    (*seg).pages[i + k].set_in_use(false);
                }
            }
            (*seg).pages[i].set_slice_count(n as u32);
            true
        }
    }

    /// Give the span headed by slice `i` back to the segment (dirty).
    ///
    /// # Safety
    /// As [`Segment::take_span`].
    pub unsafe fn free_span(seg: *mut Segment, i: usize, now: u64) {
        // SAFETY: the caller owns the segment.
        unsafe {
            let n = (*seg).pages[i].slice_count() as usize;
            let bits = span_bits(i, n);
            debug_assert!((*seg).free_mask() & bits == 0);
            // A stale pointer into any slice of the span now finds a descriptor
            // that is not in use (and aborts) instead of an old head.
            for k in 1..n {
                Segment::link_slice(seg, i + k, i + k);
            }
            for k in 0..n {
                (*seg).freed_at[i + k] = now as u32;
            }
            let head = ptr::addr_of_mut!((*seg).pages[i]);
            (*head).set_in_use(false);
            (*head).set_used(0);
            (*head).reserved = 0;
            (*head).free = ptr::null_mut();
            (*head).local_free = ptr::null_mut();
            (*head).thread_free.store(0, Relaxed);
            (*head).set_capacity(0);
            (*head).set_flags(0);
            (*head).next = ptr::null_mut();
            (*head).prev = ptr::null_mut();
            (*seg).set_free_mask((*seg).free_mask() | bits);
            (*seg).set_dirty_mask((*seg).dirty_mask() | bits);
            if (*seg).purge_at == 0 {
                (*seg).purge_at = now + SLICE_PURGE_DELAY_MS;
            }
        }
    }

    /// madvise every dirty free slice away. Slices the kernel refused to
    /// purge (`madvise` fails on locked memory) stay dirty, to be tried
    /// again after a delay: a clean slice must read as zeros.
    ///
    /// # Safety
    /// As [`Segment::take_span`].
    pub unsafe fn purge(seg: *mut Segment, now: u64) {
        // SAFETY: the caller owns the segment.
        unsafe {
            (*seg).set_dirty_mask((*seg).dirty_mask() & !(*seg).purge_mask((*seg).dirty_mask()));
            (*seg).purge_at = if (*seg).dirty_mask() != 0 {
                now + SLICE_PURGE_DELAY_MS
            } else {
                0
            };
        }
    }

    /// `purge_at` has come: madvise the dirty slices freed at least one
    /// delay ago and schedule the next visit for the youngest of the rest
    /// (64 timestamps scanned at most). Returns whether anything was
    /// purged.
    ///
    /// # Safety
    /// As [`Segment::take_span`].
    pub unsafe fn purge_aged(seg: *mut Segment, now: u64) -> bool {
        // SAFETY: the caller owns the segment.
        unsafe {
            let (mut m, mut wait) = (0u64, u64::MAX);
            let mut d = (*seg).dirty_mask();
            while d != 0 {
                let i = d.trailing_zeros() as usize;
                d &= d - 1;
                let age = (now as u32).wrapping_sub((*seg).freed_at[i]) as u64;
                if age >= SLICE_PURGE_DELAY_MS {
                    m |= 1 << i;
                } else {
                    wait = wait.min(SLICE_PURGE_DELAY_MS - age);
                }
            }
            let done = (*seg).purge_mask(m);
            if done != m {
                // Refused by the kernel: those slices stay dirty; try again
                // after a delay.
                wait = wait.min(SLICE_PURGE_DELAY_MS);
            }
            (*seg).set_dirty_mask((*seg).dirty_mask() & !done);
            (*seg).purge_at = if (*seg).dirty_mask() != 0 {
                now + wait
            } else {
                0
            };
            done != 0
        }
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
                let page: *mut Page = core::ptr::addr_of_mut!((*seg).pages[i]);
                if (*seg).free_mask() & (1 << i) != 0 || !(*page).in_use() {
                    i += 1;
                    continue;
                }
                i += (*page).slice_count() as usize;
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
        if self.free_mask() & 1 != 0 || self.dirty_mask() & !self.free_mask() != 0 {
            return Err("free/dirty masks inconsistent");
        }
        if self.scratch != 0 {
            return Err("scratch mask left set");
        }
        let mut i = 1;
        while i < SLICES_PER_SEGMENT {
            if self.free_mask() & (1 << i) != 0 {
                if self.pages[i].in_use()
                    || self.pages[i].slice_offset != 0
                    || self.page_off[i] != Self::desc_off(i)
                {
                    return Err("free slice with a live descriptor");
                }
                i += 1;
                continue;
            }
            let p = &self.pages[i];
            if !p.in_use()
                || p.slice_count() == 0
                || i + p.slice_count() as usize > SLICES_PER_SEGMENT
            {
                return Err("used slice without a span head");
            }
            for k in 1..p.slice_count() as usize {
                if self.pages[i + k].slice_offset != k as u8
                    || self.free_mask() & (1 << (i + k)) != 0
                {
                    return Err("span tail descriptor broken");
                }
            }
            for k in 0..p.slice_count() as usize {
                if self.page_off[i + k] != Self::desc_off(i) {
                    return Err("page_off of a used slice is not its span head");
                }
            }
            // SAFETY: forwarded from the caller.
            unsafe { p.check()? };
            i += p.slice_count() as usize;
        }
        Ok(())
    }
}

pub use crate::tuning::{PURGE_DELAY_MS, SLICE_PURGE_DELAY_MS};

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

pub use super::segmap::*;
pub use super::shared::*;

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
