//! # Quick lists: a small-block cache in front of any region heap
//!
//! [`QuickLists<H>`] keeps recently freed small blocks of an inner heap `H`
//! on short LIFO lists, one per 16-byte size class, and hands them out again
//! without asking `H`. A boundary-tag heap such as TLSF spends most of a
//! small free on its neighbours (read both boundary tags, unlink the free
//! ones, merge, insert the result) and most of a small allocation on the
//! split; a cached block skips all of that, and the memory it touches is the
//! block itself. It is the idea of dlmalloc's "fastbins" and glibc's
//! tcache, on a fixed region and without threads.
//!
//! ```text
//!   class:    1      2      3     ...   32        (usable size / 16)
//!   heads:  [ p ]  [ 0 ]  [ q ]  ...  [ 0 ]       counts ≤ DEPTH each
//!             |             |
//!             v             v
//!   block:  | link | check | usable | (rest of the caller's old bytes)
//!             |
//!             v
//!           [ p' ] -> 0
//! ```
//!
//! - **allocate(n, align ≤ 16)** with `n ≤ 16 × CLASSES`: class
//!   `c = ceil(n / 16)`; pop the head of list `c` if there is one, else ask
//!   `H` for `16 c` bytes (so that the block, when freed, lands back in
//!   class `c`). Larger or more aligned requests go straight to `H`.
//! - **deallocate(p)**: `H` validates `p` and says its usable size `u`; if
//!   `24 ≤ u < 16 (CLASSES + 1)` and list `u / 16` is not full, push `p`;
//!   otherwise `H` frees it (and coalesces).
//! - **exhaustion**: when `H` refuses a request, every cached block is given
//!   back to `H` (which coalesces them) and the request is tried once more,
//!   so the cache never makes a request fail that `H` alone would serve
//!   from the same blocks. The cache is also emptied when the last live
//!   block is freed, so an empty heap is `H`'s empty heap again.
//!
//! **Time**: a hit is O(1) and touches only the block; a miss adds a
//! constant to `H`'s cost. Emptying the cache is O(`CLASSES × DEPTH`), a
//! constant bound, but it runs inside the one allocation that found `H`
//! exhausted (or the free of the last block): a real-time caller that needs
//! `H`'s own worst case on every call uses `H` directly.
//!
//! **Space**: nothing in the blocks beyond `H`'s own layout; up to
//! `DEPTH` blocks per class sit unused and uncoalesced, at most
//! `DEPTH × 16 × Σ(c + 1)` bytes (140 KiB for the defaults, 32 × 16).
//!
//! **Drawbacks**: cached blocks are neither coalesced nor split until the
//! cache is emptied, so fragmentation before exhaustion is higher than
//! `H`'s; a block `H` could have grown in place may be blocked by a cached
//! neighbour.
//!
//! **Bad input**: `H` validates every pointer first (outside every region,
//! interior pointers, blocks `H` holds free). A cached block is still live
//! to `H`, so a second free of it is recognised here: its check word equals
//! `KEY ^ p ^ link`, and the list of its class (at most `DEPTH` entries)
//! is searched to confirm; a live block whose bytes happen to match is not
//! on the list and is freed normally. A popped block whose check word no
//! longer matches was written after it was freed; that is reported as
//! corruption ([`corruption::report`](crate::corruption::report)) instead
//! of following its link.
//!
//! Invariants (checked by [`check`](RegionHeap::check), after `H`'s):
//! - list `c` holds `counts[c]` ≤ `DEPTH` distinct blocks, each a live
//!   block of `H` whose usable size `u` has `u / 16 == c + 1` and `u ≥ 24`,
//!   and each block's words are `[link, KEY ^ block ^ link, u]`;
//! - `cached_blocks` and `cached_bytes` are the number and the usable bytes
//!   of all listed blocks;
//! - the wrapper's counters are `H`'s less the cached blocks: live blocks
//!   `H.live − cached_blocks`, in use `H.in_use − cached_bytes`.

use core::ptr::NonNull;

use crate::corruption;
use crate::heap::{BlockInfo, BlockState, CheckError, HeapError, HeapErrorKind, RegionHeap};
use crate::region::{Region, RegionError};
use crate::stats::{Counters, HeapStats};
use crate::MIN_ALIGN;

const WORD: usize = core::mem::size_of::<usize>();
/// Class width in bytes.
const STEP: usize = 16;
/// The smallest usable size that holds the three words of a cached block.
const MIN_CACHED: usize = 3 * WORD;
/// Mixed into each block's check word (not a secret: a match is confirmed
/// by searching the list).
#[cfg(target_pointer_width = "64")]
const KEY: usize = 0x9e37_79b9_7f4a_7c15;
#[cfg(not(target_pointer_width = "64"))]
const KEY: usize = 0x9e37_79b9;

/// A small-block cache of `CLASSES` size classes (16 bytes apart), each
/// holding up to `DEPTH` blocks, in front of the heap `H`.
pub struct QuickLists<H, const CLASSES: usize = 32, const DEPTH: usize = 16> {
    inner: H,
    /// Head of each class's list (0: empty).
    heads: [usize; CLASSES],
    /// Blocks on each list.
    counts: [u8; CLASSES],
    /// Blocks on all lists.
    cached_blocks: usize,
    /// Usable bytes of the blocks on all lists.
    cached_bytes: usize,
    /// What the caller sees: cached blocks count as freed.
    counters: Counters,
}

/// The check word of a cached block at `p` whose link is `link`.
#[inline(always)]
const fn seal(p: usize, link: usize) -> usize {
    KEY ^ p ^ link
}

impl<H: RegionHeap, const CLASSES: usize, const DEPTH: usize> QuickLists<H, CLASSES, DEPTH> {
    const VALID: () = {
        assert!(CLASSES >= 1 && CLASSES <= 1024, "CLASSES must be 1..=1024");
        assert!(DEPTH >= 1 && DEPTH <= 255, "DEPTH must be 1..=255");
    };
    /// The largest request served from the cache.
    const MAX_SMALL: usize = CLASSES * STEP;

    /// A cache in front of `inner` (which may already hold regions).
    pub const fn new(inner: H) -> Self {
        let () = Self::VALID;
        QuickLists {
            inner,
            heads: [0; CLASSES],
            counts: [0; CLASSES],
            cached_blocks: 0,
            cached_bytes: 0,
            counters: Counters::new(),
        }
    }

    /// The heap behind the cache.
    pub fn inner(&self) -> &H {
        &self.inner
    }

    /// Blocks held in the cache now.
    pub fn cached_blocks(&self) -> usize {
        self.cached_blocks
    }

    /// The list (0-based) a block of usable size `u` is cached on, if any.
    #[inline(always)]
    fn class_of_usable(u: usize) -> Option<usize> {
        let c = u / STEP;
        (u >= MIN_CACHED && c <= CLASSES).then(|| c - 1)
    }

    /// Pop the head of list `i`, which is non-empty.
    ///
    /// # Safety
    /// `heads[i] != 0`.
    #[inline(always)]
    unsafe fn pop(&mut self, i: usize) -> NonNull<u8> {
        let p = self.heads[i];
        let w = p as *mut usize;
        // SAFETY: `p` is a cached block (invariant), a live block of the
        // inner heap with at least three words of usable size.
        let (link, check, usable) = unsafe { (w.read(), w.add(1).read(), w.add(2).read()) };
        if check != seal(p, link) {
            corruption::report(p, "cached free block was written after it was freed");
        }
        // SAFETY: as above; clearing the check word keeps a later free of
        // the live block from searching the list.
        unsafe { w.add(1).write(0) };
        self.heads[i] = link;
        self.counts[i] -= 1;
        self.cached_blocks -= 1;
        self.cached_bytes -= usable;
        self.counters.on_alloc(usable);
        // SAFETY: cached blocks are non-null.
        unsafe { NonNull::new_unchecked(p as *mut u8) }
    }

    /// `true` if `p` (a live block of the inner heap of usable size `u` on
    /// list `i`) is on list `i`. At most `DEPTH` steps.
    fn listed(&self, i: usize, p: usize) -> bool {
        let mut b = self.heads[i];
        let mut n = 0;
        while b != 0 && n <= DEPTH {
            if b == p {
                return true;
            }
            // SAFETY: list members are cached blocks (invariant).
            b = unsafe { (b as *const usize).read() };
            n += 1;
        }
        false
    }

    /// `true` if `p`, a live block of the inner heap with usable size `u`,
    /// is in the cache.
    fn is_cached(&self, p: usize, u: usize) -> bool {
        let Some(i) = Self::class_of_usable(u) else {
            return false;
        };
        let w = p as *const usize;
        // SAFETY: `p` is a live block of the inner heap with at least
        // `MIN_CACHED` usable bytes.
        let (link, check) = unsafe { (w.read(), w.add(1).read()) };
        check == seal(p, link) && self.listed(i, p)
    }

    /// Give every cached block back to the inner heap.
    fn flush(&mut self) {
        for i in 0..CLASSES {
            let mut b = self.heads[i];
            while b != 0 {
                // SAFETY: a cached block (invariant).
                let link = unsafe { (b as *const usize).read() };
                // SAFETY: a live block of the inner heap that no caller owns.
                let r = unsafe { self.inner.deallocate(NonNull::new_unchecked(b as *mut u8)) };
                if r.is_err() {
                    corruption::report(b, "cached block refused by the inner heap");
                }
                b = link;
            }
            self.heads[i] = 0;
            self.counts[i] = 0;
        }
        self.cached_blocks = 0;
        self.cached_bytes = 0;
    }

    /// Count a block the inner heap just handed out.
    fn took(&mut self, p: NonNull<u8>) -> NonNull<u8> {
        // SAFETY: a live block of the inner heap.
        let u = unsafe { self.inner.usable_size_of_live(p) };
        self.counters.on_alloc(u);
        p
    }

    /// Free the live, uncached block at `ptr` of usable size `u`: onto its
    /// class's list if there is room, else to the inner heap.
    ///
    /// # Safety
    /// `ptr` is a live block of the inner heap of usable size `u`, not in
    /// the cache, and no caller uses it any more.
    #[inline(always)]
    unsafe fn release(&mut self, ptr: NonNull<u8>, u: usize) {
        let p = ptr.as_ptr() as usize;
        match Self::class_of_usable(u) {
            Some(i) if (self.counts[i] as usize) < DEPTH => {
                let link = self.heads[i];
                let w = p as *mut usize;
                // SAFETY: a live block of at least three words that the
                // caller gave up.
                unsafe {
                    w.write(link);
                    w.add(1).write(seal(p, link));
                    w.add(2).write(u);
                }
                self.heads[i] = p;
                self.counts[i] += 1;
                self.cached_blocks += 1;
                self.cached_bytes += u;
            }
            _ => {
                // SAFETY: forwarded from the caller.
                if unsafe { self.inner.deallocate(ptr) }.is_err() {
                    corruption::report(p, "inner heap refused a block it had validated");
                }
            }
        }
        self.counters.on_free(u);
        if self.counters.live() == 0 && self.cached_blocks != 0 {
            self.flush();
        }
    }

    #[cold]
    fn allocate_after_flush(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        if self.cached_blocks != 0 {
            self.flush();
            if let Some(p) = self.inner.allocate(size, align) {
                return Some(self.took(p));
            }
        }
        self.counters.on_fail();
        None
    }
}

impl<H: RegionHeap, const CLASSES: usize, const DEPTH: usize> RegionHeap
    for QuickLists<H, CLASSES, DEPTH>
{
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    unsafe fn add_region(&mut self, region: Region) -> Result<(), RegionError> {
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.add_region(region) }
    }

    #[inline]
    fn allocate(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        let (size, align) =
            if align.is_power_of_two() && align <= MIN_ALIGN && size <= Self::MAX_SMALL {
                let i = size.max(1).div_ceil(STEP) - 1;
                if self.heads[i] != 0 {
                    // SAFETY: the list is non-empty.
                    return Some(unsafe { self.pop(i) });
                }
                ((i + 1) * STEP, MIN_ALIGN)
            } else {
                (size, align)
            };
        match self.inner.allocate(size, align) {
            Some(p) => Some(self.took(p)),
            None => self.allocate_after_flush(size, align),
        }
    }

    #[inline]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>) -> Result<(), HeapError> {
        // SAFETY: forwarded from the caller; the inner heap validates `ptr`.
        let u = unsafe { self.inner.usable_size(ptr) }?;
        if self.is_cached(ptr.as_ptr() as usize, u) {
            return Err(HeapError::new(HeapErrorKind::DoubleFree, ptr.as_ptr()));
        }
        // SAFETY: a live block of usable size `u`, not cached, that the
        // caller gave up.
        unsafe { self.release(ptr, u) };
        Ok(())
    }

    unsafe fn resize_in_place(&mut self, ptr: NonNull<u8>, new_size: usize) -> bool {
        // SAFETY: forwarded from the caller (a live block).
        let old = unsafe { self.inner.usable_size_of_live(ptr) };
        // SAFETY: as above.
        if !unsafe { self.inner.resize_in_place(ptr, new_size) } {
            return false;
        }
        // SAFETY: still live after a successful resize.
        let new = unsafe { self.inner.usable_size_of_live(ptr) };
        self.counters.on_resize(old, new);
        true
    }

    unsafe fn reallocate(
        &mut self,
        ptr: NonNull<u8>,
        new_size: usize,
        align: usize,
    ) -> Option<NonNull<u8>> {
        if !crate::util::is_power_of_two(align) {
            return None;
        }
        // SAFETY: forwarded from the caller; the inner heap validates it.
        let old = unsafe { self.inner.usable_size(ptr) }.ok()?;
        if self.is_cached(ptr.as_ptr() as usize, old) {
            return None;
        }
        if ptr.as_ptr() as usize % align == 0 {
            // SAFETY: a live block of the inner heap.
            if unsafe { self.inner.resize_in_place(ptr, new_size) } {
                // SAFETY: still live.
                let new = unsafe { self.inner.usable_size_of_live(ptr) };
                self.counters.on_resize(old, new);
                return Some(ptr);
            }
        }
        let new = self.allocate(new_size, align)?;
        // SAFETY: both blocks are live and distinct; `old` and `new_size`
        // bound both.
        unsafe {
            core::ptr::copy_nonoverlapping(ptr.as_ptr(), new.as_ptr(), old.min(new_size));
        }
        // SAFETY: validated above; the caller gave it up for `new`.
        unsafe { self.release(ptr, old) };
        Some(new)
    }

    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> Result<usize, HeapError> {
        // SAFETY: forwarded from the caller.
        let u = unsafe { self.inner.usable_size(ptr) }?;
        if self.is_cached(ptr.as_ptr() as usize, u) {
            return Err(HeapError::new(HeapErrorKind::DoubleFree, ptr.as_ptr()));
        }
        Ok(u)
    }

    fn owns(&self, ptr: *const u8) -> bool {
        self.inner.owns(ptr)
    }

    fn stats(&self) -> HeapStats {
        let mut s = self.inner.stats();
        s.free += self.cached_bytes;
        s.free_blocks += self.cached_blocks;
        if let Some(i) = (0..CLASSES).rev().find(|&i| self.heads[i] != 0) {
            s.largest_free = s.largest_free.max((i + 1) * STEP);
        }
        s.with_counters(&self.counters)
    }

    fn walk(&self, f: &mut dyn FnMut(BlockInfo)) {
        self.inner.walk(&mut |mut b: BlockInfo| {
            if b.state == BlockState::Used && b.payload != 0 {
                // SAFETY: a used block of the inner heap.
                let p = unsafe { NonNull::new_unchecked(b.payload as *mut u8) };
                // SAFETY: as above.
                if let Ok(u) = unsafe { self.inner.usable_size(p) } {
                    if self.is_cached(b.payload, u) {
                        b.state = BlockState::Free;
                        b.payload = 0;
                    }
                }
            }
            f(b)
        })
    }

    fn check(&self) -> Result<(), CheckError> {
        self.inner.check()?;
        let (mut blocks, mut bytes) = (0usize, 0usize);
        for i in 0..CLASSES {
            let mut b = self.heads[i];
            let mut n = 0usize;
            while b != 0 {
                if n == self.counts[i] as usize {
                    return Err(CheckError::new(b, "quick list longer than its count"));
                }
                if n >= DEPTH {
                    return Err(CheckError::new(b, "quick list longer than DEPTH"));
                }
                // SAFETY: `b` is non-null; the inner heap validates it
                // before any of its words are read.
                let ptr = unsafe { NonNull::new_unchecked(b as *mut u8) };
                // SAFETY: the inner heap reads only its own metadata.
                let Ok(u) = (unsafe { self.inner.usable_size(ptr) }) else {
                    return Err(CheckError::new(
                        b,
                        "cached block is not live in the inner heap",
                    ));
                };
                if Self::class_of_usable(u) != Some(i) {
                    return Err(CheckError::new(b, "cached block on the wrong class's list"));
                }
                let w = b as *const usize;
                // SAFETY: a live block of the inner heap of at least three
                // words.
                let (link, check, stored) = unsafe { (w.read(), w.add(1).read(), w.add(2).read()) };
                if check != seal(b, link) {
                    return Err(CheckError::new(b, "cached block's check word is wrong"));
                }
                if stored != u {
                    return Err(CheckError::new(b, "cached block's stored size is wrong"));
                }
                // A block listed twice: its first occurrence comes before
                // position `n` (lists are at most DEPTH long).
                let mut q = self.heads[i];
                for _ in 0..n {
                    if q == b {
                        return Err(CheckError::new(b, "block listed twice in a quick list"));
                    }
                    // SAFETY: an earlier member of the same list.
                    q = unsafe { (q as *const usize).read() };
                }
                blocks += 1;
                bytes += u;
                n += 1;
                b = link;
            }
            if n != self.counts[i] as usize {
                return Err(CheckError::new(
                    self.heads[i],
                    "quick list shorter than its count",
                ));
            }
        }
        if blocks != self.cached_blocks || bytes != self.cached_bytes {
            return Err(CheckError::new(0, "cached totals differ from the lists"));
        }
        let inner = self.inner.stats();
        if inner.live() != self.counters.live() + blocks as u64 {
            return Err(CheckError::new(0, "live blocks != inner live - cached"));
        }
        if inner.in_use != self.counters.in_use + bytes {
            return Err(CheckError::new(0, "bytes in use != inner in use - cached"));
        }
        Ok(())
    }
}
