//! # Boundary tags: the block layer under free list, segregated fit and TLSF
//!
//! Three strategies ([`FreeList`](super::free_list::FreeList),
//! [`Segregated`](super::segregated::Segregated),
//! [`Tlsf`](super::tlsf::Tlsf)) cut their regions into blocks the same way and
//! differ only in how they *find* a free block. This module is that shared
//! part: [`BoundaryHeap<I>`] does the block bookkeeping (split, coalesce,
//! alignment, resize, walk, check) and asks its [`FreeIndex`] `I` to keep the
//! free blocks findable. `I` is a type parameter, so each strategy is a
//! separate monomorphised heap with no dynamic dispatch on the hot path.
//!
//! ## Glossary
//!
//! - **word**: `usize` (`W` bytes: 8 on 64-bit targets).
//! - **block**: a span `[b, b + size)`; `size` is a multiple of 16 and at
//!   least [`MIN_BLOCK`]. Its first word is the **header**.
//! - **payload**: `[b + W, b + size)`: the caller's bytes, 16-aligned because
//!   every block starts `W` bytes before a multiple of 16.
//! - **footer**: the last word of a *free* block, a copy of its size. A used
//!   block has no footer: its last word is payload.
//! - **sentinel**: a header-only block of size 0 at the end of each region,
//!   always "used", so coalescing never runs off the end; the first block of a
//!   region never has `PREV_FREE`, so coalescing never runs off the start.
//! - **live map**: the first bytes of each span, one bit per 16-byte granule
//!   of the span (1/128 of it, rounded up to 16 bytes): bit `(p -
//!   span.start) / 16` is set iff `p` is the payload of a used block. It is
//!   what pointer checks consult before reading any header (below).
//!
//! ```text
//!  span.start (16-aligned)                                            span.end
//!  | live map | pad |hdr| payload ..... |hdr|next|prev| ... |ftr|hdr| ... |sentinel|
//!  | len/128  |  W  |<----- used ------>|<----------- free --------->|     |   W    |
//!
//!  header word:  size (multiple of 16) | 8:0 | USED(4) | PREV_FREE(2) | FREE(1)
//! ```
//!
//! A free block stores its index links (`next`, `prev`) in its first payload
//! words and its size again in its footer, so a block freed after it can find
//! it: when the header of block `B` says `PREV_FREE`, the word just before
//! `B` is the footer of the free block before it. That is how freeing merges
//! with *both* neighbours in O(1) without a per-block back pointer, keeping
//! the overhead of a used block to one word.
//!
//! ## Operations and their cost (plus the index's cost)
//!
//! - **allocate**: the index hands over a free block of at least the needed
//!   size; if the rest is at least [`MIN_BLOCK`] it is split off as a new
//!   free block. Alignments above 16 search for `size + align + MIN_BLOCK -
//!   16` bytes and give the front padding back as a free block. O(1) + index.
//! - **free**: merge with the next block if it is free, with the previous if
//!   `PREV_FREE` says so, write header and footer, index the result. O(1) +
//!   index. Allocating sets the payload's live-map bit, freeing clears it.
//! - **resize in place**: shrinking splits off the tail (merged into a free
//!   next neighbour); growing absorbs a free next neighbour. O(1) + index.
//! - **walk, check, stats**: O(blocks) (check: O(blocks × list length)).
//! - **finding the region of a pointer**: O(1) for the region added last
//!   (the heap keeps its span at hand); for the others, O(1) up to 8
//!   regions, O(log regions) up to 64 (a sorted table, [`Env`]), and
//!   O(regions) only for the smallest older regions past 64. Every link a
//!   search follows outside the newest region is looked up this way, and
//!   so is the live map's word on allocation from an older region.
//!
//! ## Checking the pointers it is handed
//!
//! `deallocate`, `usable_size`, `resize_in_place` and `reallocate` check a
//! pointer before trusting it, in two stages, and read only words the heap
//! wrote itself (never user bytes nor memory nobody has written yet). The
//! fast stage, a handful of compares on the hot path, accepts a pointer only
//! if it lies in the hot region, is 16-aligned, its live-map bit is set
//! (exact: a used block starts there), and then, reading the header the map
//! vouches for, that header says `USED` with a size that stays inside the
//! region and leads to the next block (its header says `USED` with its
//! payload's map bit set, or `FREE` with it clear, never `PREV_FREE`, and
//! no map bit is set in between: one header read and the map word or two
//! already at hand for a block up to 1 KiB), and (when it says
//! `PREV_FREE`) the footer before it leads to a `FREE` header of that same
//! size, so a header damaged by an overrun, or a size rewritten to another
//! plausible value, is refused instead of followed. Anything else goes to a cold second stage
//! that names the problem: [`HeapErrorKind::NotOwned`]; for a pointer whose
//! map bit is clear, a walk of the span's headers (O(blocks), errors only)
//! says `DoubleFree` if it lies in a free block (freed blocks merge, so a
//! pointer freed twice may be inside a larger free block now) and
//! `InvalidPointer` if it lies inside a used block; for a set bit with
//! inconsistent metadata, `Corrupted`. The heap is not modified on any
//! error.
//!
//! ## Damage found in the middle of an operation
//!
//! A free block's links, and the header of a block next to a used one, lie
//! where a caller's bug can reach them (a write after free, an overflow).
//! Before following or trusting them the heap checks, in a few compares
//! each: a link is null or a header slot inside one of the heap's regions
//! ([`Env`]) whose neighbour links back; a block taken from the index, and
//! a free neighbour met on free or in-place resize, says `FREE` with a size
//! that ends inside its own region, its footer repeats that size, and a
//! taken block holds the request; a used neighbour says `USED`. The
//! compares are against the region added last; only an address outside it
//! (in a heap of several regions) looks the others up, so a link into a gap
//! between regions is never read, and a size is never allowed to carry a
//! block into the next region. Anything else goes to
//! [`corruption::report`](crate::corruption::report) with the payload
//! address, which never returns; nothing is written through a damaged word.
//! The checks cost about 13% of TLSF's instructions in the region
//! benchmark's replay; the next-block test on free about 13% more of its
//! throughput (`region-bench --quick`: 0.85x of talc before, 0.72x after).
//!
//! ## Drawbacks
//!
//! One word of overhead per used block and payloads rounded to 16 bytes; a
//! free block needs [`MIN_BLOCK`] bytes, so remainders smaller than that stay
//! inside the allocated block. Alignments above 16 reserve up to `align +
//! 16` extra bytes while searching (the padding is given back, but a
//! request can fail that an exact search would have served). The live map
//! costs 1/128 of each region and a read-modify-write of one word per
//! allocation and per free. A double free of a block whose memory was
//! handed out again since cannot be told apart from a free of the new block
//! (if the same payload address is live again) and is reported as
//! `InvalidPointer` or `DoubleFree` otherwise.
//!
//! ## Invariants (checked by [`RegionHeap::check`])
//!
//! 1. In each region, blocks tile `[span.start + M + 16 - W, span.end - W)`
//!    exactly (`M` the live map's bytes), and the sentinel header sits at
//!    `span.end - W`.
//! 2. Every header is either `USED` or `FREE` (never both, bit 3 clear), with
//!    a size that is a multiple of 16 and at least `MIN_BLOCK`.
//! 3. A block's `PREV_FREE` bit equals the `FREE` bit of the block before it
//!    (0 for the first block); the sentinel's likewise.
//! 4. No two free blocks are adjacent (coalescing is immediate).
//! 5. A free block's footer equals its size.
//! 6. Every free block is in the index exactly once and every indexed block
//!    is free (plus the index's own invariants: links, classes, bitmaps).
//! 7. `counters.in_use == Σ (size - W)` over used blocks and
//!    `counters.live() ==` their number.
//! 8. A live-map bit is set iff it is the bit of a used block's payload.

use core::ptr::NonNull;

use crate::heap::{BlockInfo, BlockState, CheckError, HeapError, HeapErrorKind, RegionHeap};
use crate::region::{Region, RegionError, RegionList, Span};
use crate::stats::{Counters, HeapStats};
use crate::util::checked_request;

/// Bytes in a word: the header, a link, a footer.
pub const WORD: usize = core::mem::size_of::<usize>();
/// Block sizes and payload addresses are multiples of this.
pub const GRAN: usize = crate::MIN_ALIGN;
/// `log2(GRAN)`.
pub const GRAN_SHIFT: u32 = GRAN.trailing_zeros();
/// The smallest block: header, two links and a footer, rounded to `GRAN`.
pub const MIN_BLOCK: usize = (4 * WORD + GRAN - 1) & !(GRAN - 1);

const FREE: usize = 1;
const PREV_FREE: usize = 2;
const USED: usize = 4;
/// Low bits of a header that are not size.
const FLAGS: usize = GRAN - 1;
/// The bits that must read exactly `USED` or `FREE`.
const KIND: usize = FLAGS & !PREV_FREE;
/// First block of a span starts this far in, so its payload is 16-aligned.
const LEAD: usize = GRAN - WORD;
/// Requests at or below this take the fast path (no overflow is possible).
const FAST_MAX: usize = (isize::MAX as usize) >> 1;
/// Bit `a` is set for each power of two `a <= GRAN`: the alignments every
/// payload has already.
const SMALL_ALIGNS: u64 = {
    let mut m = 0u64;
    let mut a = 1;
    while a <= GRAN {
        m |= 1 << a;
        a <<= 1;
    }
    m
};

const _: () = assert!(GRAN.is_power_of_two() && GRAN >= 2 * WORD && GRAN < 64);
const _: () = assert!(MIN_BLOCK % GRAN == 0 && MIN_BLOCK >= 4 * WORD);
const _: () = assert!(FLAGS & (FREE | PREV_FREE | USED) == FREE | PREV_FREE | USED);

/// Read the word at `a`.
///
/// # Safety
/// `a` must be word-aligned and readable.
#[inline(always)]
pub(crate) unsafe fn rd(a: usize) -> usize {
    // SAFETY: per the function contract.
    unsafe { (a as *const usize).read() }
}

/// Write the word at `a`.
///
/// # Safety
/// `a` must be word-aligned, writable and owned by the heap.
#[inline(always)]
pub(crate) unsafe fn wr(a: usize, v: usize) {
    // SAFETY: per the function contract.
    unsafe { (a as *mut usize).write(v) }
}

/// The size of the block whose header is at `b`.
///
/// # Safety
/// `b` must be a block header of a heap.
#[inline(always)]
pub(crate) unsafe fn size_of_block(b: usize) -> usize {
    // SAFETY: per the function contract.
    unsafe { rd(b) & !FLAGS }
}

/// Intrusive doubly linked lists of free blocks: `next` in the first payload
/// word, `prev` in the second, `0` for none. An index keeps its lists'
/// heads in one array; list `i` is `heads[i]`.
///
/// The first block's `prev` word holds the *tag* `2i + 1` of its list (odd,
/// so never a block address, which is `W` bytes off a multiple of 16). So
/// unlinking any block needs neither its size class nor a search: the block
/// itself says which head to update, and whether its list became empty.
/// Tags are indices, not addresses, so a heap can be moved.
///
/// ```text
///   heads[i] ──> [A] ──next──> [B] ──next──> [C] ──> 0
///        prev:  2i+1  <──prev──    <──prev──
/// ```
pub(crate) mod list {
    use super::{rd, wr, Env, WORD};

    /// Report free block `b` whose links do not check out (never returns).
    #[cold]
    #[inline(never)]
    fn damaged(b: usize) -> ! {
        crate::corruption::report(
            b + WORD,
            "the free-list links of this free block were overwritten (a write after free?)",
        )
    }

    /// The `next` link of the free block `b`, checked before anyone follows
    /// it: null, or a block header inside the heap (`env`) whose `prev`
    /// links back to `b`. Links live in memory a caller once owned, so a
    /// write after free can put anything there; damage is reported through
    /// [`crate::corruption::report`], never written through.
    ///
    /// `MULTI` says the heap has more than one region: a link that fails
    /// the test against the hot span is then looked up in the others (a
    /// call that returns, so it is compiled only into the heap's
    /// multi-region copy of each operation, see
    /// [`BoundaryHeap`](super::BoundaryHeap)); with one region the test is
    /// exact and a failure is reported at once.
    ///
    /// # Safety
    /// `b` must be a free block.
    #[inline(always)]
    pub(crate) unsafe fn next_checked<const MULTI: bool>(b: usize, env: &Env) -> usize {
        // SAFETY: `b` is a free block (contract); `n` is read only once
        // `env` says it is a header slot inside the heap's memory.
        unsafe {
            let n = next(b);
            if n != 0 && !(env.holds(n) && prev(n) == b) {
                if MULTI {
                    linked_elsewhere(b, n, env, prev);
                } else {
                    damaged(b);
                }
            }
            n
        }
    }

    /// The multi-region half of a link check: `b`'s link `l` failed the
    /// test against the hot span; it is still good if `l` is a header slot
    /// in another region (see [`Env`]) whose opposite link (read by
    /// `back`: `prev` for a `next` link, `next` for a `prev` link) points
    /// back at `b`. Anything else is damage, reported.
    ///
    /// # Safety
    /// `b` must be a free block.
    #[inline(always)]
    unsafe fn linked_elsewhere(b: usize, l: usize, env: &Env, back: unsafe fn(usize) -> usize) {
        // SAFETY: `l` is read only once it is known to lie in a region.
        if !(env.holds_anywhere(l) && unsafe { back(l) } == b) {
            damaged(b);
        }
    }

    /// `if c { x } else { y }` as arithmetic, so it compiles to no branch
    /// (for conditions that are data a predictor often guesses wrong).
    /// `core::hint::select_unpredictable` says the same but is newer than
    /// the crate's minimum Rust version (1.88 > 1.80).
    #[inline(always)]
    const fn select_unpredictable(c: bool, x: usize, y: usize) -> usize {
        y ^ ((x ^ y) & (c as usize).wrapping_neg())
    }

    /// The `prev` word of the first block of list `i`.
    #[inline(always)]
    const fn tag(i: usize) -> usize {
        (i << 1) | 1
    }

    /// # Safety
    /// `b` must be a free block.
    #[inline(always)]
    pub(crate) unsafe fn next(b: usize) -> usize {
        // SAFETY: a free block's first payload word is its `next` link.
        unsafe { rd(b + WORD) }
    }

    /// # Safety
    /// `b` must be a free block.
    #[inline(always)]
    unsafe fn prev(b: usize) -> usize {
        // SAFETY: a free block's second payload word is its `prev` link.
        unsafe { rd(b + 2 * WORD) }
    }

    /// Put `b` at the front of list `i`.
    ///
    /// # Safety
    /// `i < heads.len()`; `b` must be a free block in no list; every block
    /// of the list is free.
    #[inline(always)]
    pub(crate) unsafe fn push(heads: &mut [usize], i: usize, b: usize) {
        debug_assert!(i < heads.len());
        // SAFETY: per the function contract.
        let head = unsafe { heads.get_unchecked_mut(i) };
        let h = *head;
        // The old head's `prev` points back at `b`; with no old head the
        // write lands in `b`'s own `prev` word, which the tag then
        // overwrites. No branch on whether the list was empty, which a
        // mixed workload mispredicts often.
        let back = select_unpredictable(h != 0, h + 2 * WORD, b + 2 * WORD);
        // SAFETY: `b` and `h` (if any) are free blocks with link words.
        unsafe {
            wr(b + WORD, h);
            wr(back, b);
            wr(b + 2 * WORD, tag(i));
        }
        *head = b;
    }

    /// Take `b` out of whichever list holds it. Returns `Some(i)` when list
    /// `i` became empty. Both links are checked first (each neighbour, or
    /// the head, must point back at `b`); damage is reported, not followed.
    ///
    /// # Safety
    /// `b` must be on one of the lists of `heads`, whose blocks lie in `env`.
    #[inline(always)]
    pub(crate) unsafe fn unlink<const MULTI: bool>(
        heads: &mut [usize],
        b: usize,
        env: &Env,
    ) -> Option<usize> {
        // SAFETY: `b` is on a list, so it is a free block with link words;
        // its neighbours are written only after they checked out.
        unsafe {
            let n = next_checked::<MULTI>(b, env);
            let p = prev(b);
            if p & 1 != 0 {
                match heads.get_mut(p >> 1) {
                    Some(head) if *head == b => *head = n,
                    _ => damaged(b),
                }
                if n == 0 {
                    return Some(p >> 1);
                }
            } else {
                if !(env.holds(p) && next(p) == b) {
                    if MULTI {
                        linked_elsewhere(b, p, env, next);
                    } else {
                        damaged(b);
                    }
                }
                wr(p + WORD, n);
            }
            if n != 0 {
                wr(n + 2 * WORD, p);
            }
        }
        None
    }

    /// Remove and return the first block of non-empty list `i`, and
    /// whether the list is now empty.
    ///
    /// # Safety
    /// `i < heads.len()` and list `i` must be non-empty; its blocks lie in
    /// `env`.
    #[inline(always)]
    pub(crate) unsafe fn pop<const MULTI: bool>(
        heads: &mut [usize],
        i: usize,
        env: &Env,
    ) -> (usize, bool) {
        debug_assert!(i < heads.len());
        // SAFETY: per the function contract.
        let head = unsafe { heads.get_unchecked_mut(i) };
        let b = *head;
        // SAFETY: `b` heads the list, so it is a free block.
        let n = unsafe { next_checked::<MULTI>(b, env) };
        // The new head's `prev` takes the tag; with no new head the write
        // lands in `b`'s own `prev` word, dead once `b` is taken.
        let to = select_unpredictable(n != 0, n + 2 * WORD, b + 2 * WORD);
        // SAFETY: a link word of the free block `n` or `b`.
        unsafe { wr(to, tag(i)) };
        *head = n;
        (b, n == 0)
    }

    /// Check list `i`'s links: the first block carries the list's tag,
    /// every other block's `prev` points back, and the list has at most
    /// `budget` blocks (so a cycle is caught). Calls `f(block)` for each.
    /// Returns the length.
    pub(crate) fn check(
        heads: &[usize],
        i: usize,
        budget: usize,
        f: &mut dyn FnMut(usize) -> Result<(), crate::heap::CheckError>,
    ) -> Result<usize, crate::heap::CheckError> {
        use crate::heap::CheckError;
        let mut n = 0;
        let mut expect_prev = tag(i);
        let mut b = heads[i];
        while b != 0 {
            if n == budget {
                return Err(CheckError::new(
                    b,
                    "free list longer than the free blocks (a cycle?)",
                ));
            }
            f(b)?;
            // SAFETY: `f` verified that `b` is a free block of the heap.
            if unsafe { prev(b) } != expect_prev {
                return Err(CheckError::new(
                    b,
                    "free list prev link (or head tag) is wrong",
                ));
            }
            expect_prev = b;
            // SAFETY: as above.
            b = unsafe { next(b) };
            n += 1;
        }
        Ok(n)
    }

    /// `true` if `target` is on list `i` (at most `budget` steps).
    pub(crate) fn contains(heads: &[usize], i: usize, target: usize, budget: usize) -> bool {
        let mut b = heads[i];
        let mut n = 0;
        while b != 0 && n <= budget {
            if b == target {
                return true;
            }
            // SAFETY: `check` has verified the list's links before this is
            // called; every block on it is free.
            b = unsafe { next(b) };
            n += 1;
        }
        false
    }
}

/// Spans of a multi-region heap that [`Env`] keeps inline, sorted by
/// address; a heap with more regions keeps the newest and the largest
/// there and looks the rest up in its region list.
const ENV_SPANS: usize = 64;
/// Up to this many inline spans, [`Env::span_of`] tests each in turn
/// (branch-free); past it, a binary search.
const ENV_LINEAR: usize = 8;

/// Where a heap's blocks can lie. Free-list links are checked against it
/// before they are read (see `list::next_checked`): a link that is not a
/// header slot inside one of the heap's regions is damage. The fast test
/// is against the span of the region added last (exact for a heap of one
/// region); in a heap of several, a link that fails it is looked up in the
/// others (`span_of`: up to `ENV_SPANS` inline, sorted,
/// then the region list), so a link into a gap between two regions is
/// never read. A free-list search checks every link it follows, so the
/// lookup must stay cheap however many regions the heap has: O(1) for up
/// to `ENV_LINEAR` regions, O(log regions) up to `ENV_SPANS`, and a
/// region-list walk only for links into the smallest older regions past
/// that.
#[derive(Clone, Copy, Debug)]
pub struct Env {
    /// Start of the hot span.
    lo: usize,
    /// Highest offset from `lo` at which a block header (with its two link
    /// words) still fits below the hot span's end.
    room: usize,
    /// The newest region's header: the head of the heap's region list,
    /// which lives in region memory and so stays put when the heap moves.
    regions: usize,
    /// Regions in the heap.
    count: usize,
    /// (start, end) of `min(count, ENV_SPANS)` spans in address order:
    /// every span while there are at most `ENV_SPANS`, then the newest
    /// and the largest others.
    spans: [(usize, usize); ENV_SPANS],
}

impl Env {
    /// No memory: only the null link passes.
    pub const EMPTY: Env = Env {
        lo: 0,
        room: 0,
        regions: 0,
        count: 0,
        spans: [(0, 0); ENV_SPANS],
    };

    /// `self` with `hot` (`hot.len() >= MIN_BLOCK`) added as the newest
    /// span of a heap whose region list now starts at `head`.
    fn with_span(mut self, hot: Span, head: usize) -> Env {
        self.lo = hot.start;
        self.room = hot.len() - MIN_BLOCK;
        let mut n = self.count.min(ENV_SPANS);
        self.count += 1;
        self.regions = head;
        if n == ENV_SPANS {
            // Full: drop the smallest span (the fewest blocks to look up
            // the slow way); the new one, the hot span, always stays.
            let (i, _) = self
                .spans
                .iter()
                .enumerate()
                .min_by_key(|(_, &(s, e))| e - s)
                .unwrap_or((0, &(0, 0)));
            self.spans.copy_within(i + 1..n, i);
            n -= 1;
        }
        let at = self.spans[..n].partition_point(|&(s, _)| s < hot.start);
        self.spans.copy_within(at..n, at + 1);
        self.spans[at] = (hot.start, hot.end);
        self
    }

    /// Whether `b` is a header slot (`LEAD` past a granule) inside the hot
    /// span, with room for a minimal block after it.
    #[inline(always)]
    pub(crate) fn holds(&self, b: usize) -> bool {
        b.wrapping_sub(self.lo) <= self.room && b & (GRAN - 1) == LEAD
    }

    /// Whether `b` is a header slot, with room for a minimal block after
    /// it, in any region of the heap (the cold test behind
    /// [`holds`](Self::holds)).
    #[inline(always)]
    fn holds_anywhere(&self, b: usize) -> bool {
        b & (GRAN - 1) == LEAD
            && self
                .span_of(b)
                .is_some_and(|s| s.len() >= MIN_BLOCK && b - s.start <= s.len() - MIN_BLOCK)
    }

    /// The span holding `addr`: the inline spans first, then (a heap of
    /// more than [`ENV_SPANS`] regions) the region list.
    #[inline(always)]
    fn span_of(&self, addr: usize) -> Option<Span> {
        let n = self.count.min(ENV_SPANS);
        let (start, end) = if n <= ENV_LINEAR {
            // Every inline span is tested and the hit kept without a
            // branch: which region an address falls in is data a predictor
            // guesses badly, while the trip count is fixed for the heap.
            let (mut start, mut end) = (0, 0);
            for &(s, e) in &self.spans[..n] {
                let m = ((addr.wrapping_sub(s) < e - s) as usize).wrapping_neg();
                start = (s & m) | (start & !m);
                end = (e & m) | (end & !m);
            }
            (start, end)
        } else {
            // The last span starting at or before `addr` (branch-free
            // halving), then one test.
            let (mut base, mut len) = (0, n);
            while len > 1 {
                let half = len / 2;
                let m = ((self.spans[base + half].0 <= addr) as usize).wrapping_neg();
                base += half & m;
                len -= half;
            }
            let (s, e) = self.spans[base];
            if addr.wrapping_sub(s) < e - s {
                (s, e)
            } else {
                (0, 0)
            }
        };
        if end != 0 {
            return Some(Span { start, end });
        }
        if self.count <= ENV_SPANS {
            return None;
        }
        self.span_in_list(addr)
    }

    /// [`span_of`](Self::span_of) past the inline spans: the region list.
    #[cold]
    #[inline(never)]
    fn span_in_list(&self, addr: usize) -> Option<Span> {
        // SAFETY: `regions` is the head of the heap's region list, set by
        // `add_region` after the last change to the list; the regions stay
        // handed over while the heap (and so this index) lives.
        unsafe { RegionList::find_from(self.regions, addr, GRAN) }
    }
}

/// How a strategy keeps its free blocks findable. The block layer calls it
/// with block addresses and sizes (headers included); the index owns the
/// link words of the blocks it holds and nothing else.
///
/// Implementations: [`FitIndex`](super::free_list::FitIndex) (one list),
/// [`SegIndex`](super::segregated::SegIndex) (a list per power of two),
/// [`TlsfIndex`](super::tlsf::TlsfIndex) (two-level lists and bitmaps).
pub trait FreeIndex {
    /// The strategy's name as the command line spells it.
    fn name(&self) -> &'static str;

    /// Where the heap's blocks can lie (called whenever a region is added):
    /// the index checks every link it follows against it.
    fn set_env(&mut self, env: Env);

    /// Index the free block at `b` of `size` bytes.
    ///
    /// # Safety
    /// `b` must be a free block of `size` bytes (header and footer written)
    /// that is not in the index.
    unsafe fn insert(&mut self, b: usize, size: usize);

    /// Take the block at `b` of `size` bytes out of the index. `MULTI`: the
    /// heap has more than one region (see `list::next_checked`).
    ///
    /// # Safety
    /// `b` must be in the index with this `size`.
    unsafe fn remove<const MULTI: bool>(&mut self, b: usize, size: usize);

    /// Take out and return a free block of at least `size` bytes, if the
    /// policy finds one.
    ///
    /// # Safety
    /// `size` must be a multiple of [`GRAN`], at least [`MIN_BLOCK`], at most
    /// `isize::MAX`.
    unsafe fn take<const MULTI: bool>(&mut self, size: usize) -> Option<usize>;

    /// The quick part of [`take`](Self::take), for the allocation fast
    /// path: `None` may also mean "ask [`take`](Self::take)", which the
    /// heap then does out of line. An index whose `take` has a slower
    /// fallback (TLSF's exact-list head) leaves it out here, so the hot path
    /// makes no call and needs no saved registers.
    ///
    /// # Safety
    /// As for [`take`](Self::take).
    #[inline(always)]
    unsafe fn take_fast<const MULTI: bool>(&mut self, size: usize) -> Option<usize> {
        // SAFETY: forwarded.
        unsafe { self.take::<MULTI>(size) }
    }

    /// Verify the index's own invariants. `visit(b)` checks that `b` is a
    /// free block of the heap and returns its size; at most `budget` blocks
    /// may be indexed. Returns the number of indexed blocks.
    fn check(
        &self,
        budget: usize,
        visit: &mut dyn FnMut(usize) -> Result<usize, CheckError>,
    ) -> Result<usize, CheckError>;

    /// `true` if the free block `b` of `size` bytes is indexed (called by
    /// `check` after [`FreeIndex::check`] succeeded; at most `budget` steps
    /// per list).
    fn contains(&self, b: usize, size: usize, budget: usize) -> bool;
}

/// A heap of boundary-tagged blocks over any number of regions, whose free
/// blocks are found by the index `I`. Use it through its aliases:
/// [`FreeList`](super::free_list::FreeList),
/// [`Segregated`](super::segregated::Segregated),
/// [`Tlsf`](super::tlsf::Tlsf).
pub struct BoundaryHeap<I> {
    regions: RegionList,
    /// The span of the region added last, tried before the region list
    /// when a pointer comes back (one region is the common case).
    hot: Span,
    /// [`lookup`](Self::lookup)'s form of `hot`: payload offsets are
    /// measured from `fast_base`, and an offset `off` passes the first test
    /// iff `(off - GRAN).rotate_right(GRAN_SHIFT) <= fast_max`. For a span,
    /// `fast_base = start` and `fast_max = (len - GRAN - MIN_BLOCK) /
    /// GRAN`, so one compare accepts exactly the 16-aligned `off` in
    /// `GRAN..=len - MIN_BLOCK` (a misaligned or wrapped `off - GRAN` has
    /// high bits after the rotation). With no region, `fast_base =
    /// 0 - GRAN` and `fast_max = 0`: the only accepted `off` is `GRAN`,
    /// i.e. `p == 0`, which no `NonNull` pointer is.
    fast_base: usize,
    fast_max: usize,
    /// `hot.len()` (0 with no region): `p - fast_base < hot_len` says that
    /// `p` lies in the hot span, whose live map starts at `fast_base`.
    hot_len: usize,
    /// More than one region: every operation runs its multi-region copy
    /// (see [`free_tags_ok`](Self::free_tags_ok) and `list::next_checked`).
    multi: bool,
    /// The spans, as the index is also told them (for address lookups).
    env: Env,
    counters: Counters,
    index: I,
}

/// Bytes at the start of a span of `len` bytes taken by its live map: one
/// bit per granule of the span, in words, rounded up to a granule.
#[inline]
const fn map_bytes(len: usize) -> usize {
    let granules = len >> GRAN_SHIFT;
    let words = granules.div_ceil(usize::BITS as usize);
    (words * WORD + GRAN - 1) & !(GRAN - 1)
}

/// The first block's header in `span` (after the live map and the lead).
#[inline]
fn first_block(span: Span) -> usize {
    span.start + map_bytes(span.len()) + LEAD
}

/// The live-map word and bit of payload `p` in a span starting at `base`:
/// (address of the word, mask of the bit).
#[inline(always)]
const fn map_slot(base: usize, p: usize) -> (usize, usize) {
    let g = (p - base) >> GRAN_SHIFT;
    let bits = usize::BITS as usize;
    (base + (g / bits) * WORD, 1 << (g % bits))
}

/// Block size for a payload of `size` bytes (`size <= FAST_MAX`).
#[inline(always)]
const fn block_for(size: usize) -> usize {
    let b = (size + WORD + GRAN - 1) & !(GRAN - 1);
    if b < MIN_BLOCK {
        MIN_BLOCK
    } else {
        b
    }
}

impl<I: FreeIndex> BoundaryHeap<I> {
    /// An empty heap over `index`; give it memory with
    /// [`RegionHeap::add_region`].
    pub const fn with_index(index: I) -> Self {
        BoundaryHeap {
            regions: RegionList::new(),
            hot: Span { start: 0, end: 0 },
            fast_base: GRAN.wrapping_neg(),
            fast_max: 0,
            hot_len: 0,
            multi: false,
            env: Env::EMPTY,
            counters: Counters::new(),
            index,
        }
    }

    /// The free-block index (for tests and diagnostics).
    pub fn index(&self) -> &I {
        &self.index
    }

    /// Make `[b, b + size)` a free block and index it. Its previous block
    /// must be used (so `PREV_FREE` is clear), and the next block's
    /// `PREV_FREE` bit is the caller's business.
    ///
    /// # Safety
    /// The span must be inside one region, on block boundaries, and not
    /// referenced by the index.
    #[inline(always)]
    unsafe fn make_free(&mut self, b: usize, size: usize) {
        // SAFETY: per the function contract, header and footer words lie in
        // the span.
        unsafe {
            wr(b, size | FREE);
            wr(b + size - WORD, size);
            self.index.insert(b, size);
        }
    }

    /// Turn the free block `b` of `size` bytes (already out of the index)
    /// into a used block of at least `need` bytes, splitting off the rest.
    /// `prev_free` is the `PREV_FREE` bit the block's header must carry.
    /// Returns the payload pointer.
    ///
    /// # Safety
    /// `b` must be a block of `size >= need` bytes whose previous block's
    /// state matches `prev_free`, and whose next block has `PREV_FREE` set.
    #[inline(always)]
    unsafe fn finish(
        &mut self,
        b: usize,
        size: usize,
        need: usize,
        prev_free: usize,
    ) -> NonNull<u8> {
        debug_assert!(size >= need && need >= MIN_BLOCK);
        let used = if size - need >= MIN_BLOCK {
            // SAFETY: the tail `[b + need, b + size)` is inside the block;
            // its next block already has PREV_FREE (this block was free).
            unsafe {
                wr(b, need | USED | prev_free);
                self.make_free(b + need, size - need);
            }
            need
        } else {
            // SAFETY: the block and its next block's header are ours.
            unsafe {
                wr(b, size | USED | prev_free);
                let n = b + size;
                wr(n, rd(n) & !PREV_FREE);
            }
            size
        };
        self.counters.on_alloc(used - WORD);
        let p = b + WORD;
        // SAFETY: `p` is the payload of a block of one of the heap's spans.
        unsafe { self.set_live(p) };
        // SAFETY: `p` lies inside a region, so it is not null.
        unsafe { NonNull::new_unchecked(p as *mut u8) }
    }

    /// Whether the free-block header `h` at `b` checks out: kind FREE, a
    /// size that ends before the end of `b`'s region, so nothing derived
    /// from it is written outside that region, and a footer that repeats
    /// the size, so a size rewritten to another value in the region is not
    /// taken for the block's (it would hand out live blocks after it). (A
    /// free block's header is in memory a caller can overrun from the
    /// block before it; the footer's cache line is written by every use of
    /// the block anyway.) With one region (`!MULTI`) every block lies in
    /// the hot span and one compare is exact; with more, `b`'s region is
    /// looked up (out of line, in the multi-region copy of the operation
    /// only).
    #[inline(always)]
    fn free_tags_ok<const MULTI: bool>(&self, b: usize, h: usize) -> bool {
        let size = h & !FLAGS;
        h & KIND == FREE
            && size >= MIN_BLOCK
            && if MULTI {
                let off = b.wrapping_sub(self.hot.start);
                (off < self.hot_len && size < self.hot_len - off) || self.ends_in_region(b, size)
            } else {
                size < self.hot.end - b
            }
            // SAFETY: the block ends inside its region (just checked), so
            // its last word is readable.
            && unsafe { rd(b + size - WORD) } == size
    }

    /// [`free_tags_ok`](Self::free_tags_ok)'s size test in a heap of
    /// several regions: a block of `size` bytes at `b` ends before the end
    /// of `b`'s region. O(regions), the region added last first.
    #[inline(always)]
    fn ends_in_region(&self, b: usize, size: usize) -> bool {
        self.find_span(b).is_some_and(|s| size < s.end - b)
    }

    /// The size of the free block `b` an index just handed out for a
    /// request of `need` bytes, its tags checked first
    /// ([`free_tags_ok`](Self::free_tags_ok)), and the size at least
    /// `need` (an index picks a block by the list it is on, so a size
    /// rewritten smaller would otherwise be split with a wrapped remainder);
    /// damage is reported, never split or written through.
    ///
    /// # Safety
    /// `b` must be a block the index held.
    #[inline(always)]
    unsafe fn taken_size<const MULTI: bool>(&self, b: usize, need: usize) -> usize {
        // SAFETY: indexed blocks are header slots of our spans.
        let h = unsafe { rd(b) };
        if !self.free_tags_ok::<MULTI>(b, h) || h & !FLAGS < need {
            crate::corruption::report(
                b + WORD,
                "the boundary tags of this free block were overwritten \
                 (an overflow of the block before it, or a write after free?)",
            );
        }
        h & !FLAGS
    }

    /// The block after the used block `b` starts at `n` with header `nh`:
    /// its size if it is free (tags checked), 0 if it is used or the
    /// sentinel. Damage is reported against `b`, whose overflow is its
    /// likely cause.
    ///
    #[inline(always)]
    fn next_free_size<const MULTI: bool>(&self, b: usize, n: usize, nh: usize) -> usize {
        if nh & KIND == USED {
            return 0;
        }
        if !self.free_tags_ok::<MULTI>(n, nh) {
            crate::corruption::report(
                b + WORD,
                "the boundary tag of the block after this one was overwritten \
                 (a heap buffer overflow of this block?)",
            );
        }
        nh & !FLAGS
    }

    /// Set the live-map bit of payload `p`.
    ///
    /// # Safety
    /// `p` must be the payload address of a block of one of the heap's
    /// spans.
    #[inline(always)]
    unsafe fn set_live(&mut self, p: usize) {
        if p.wrapping_sub(self.fast_base) < self.hot_len {
            let (w, m) = map_slot(self.fast_base, p);
            // SAFETY: the word lies in the hot span's live map.
            unsafe { wr(w, rd(w) | m) };
        } else {
            // SAFETY: forwarded.
            unsafe { self.flip_live_cold(p, true) };
        }
    }

    /// Clear the live-map bit of payload `p`.
    ///
    /// # Safety
    /// As for [`set_live`](Self::set_live).
    #[inline(always)]
    unsafe fn clear_live(&mut self, p: usize) {
        if p.wrapping_sub(self.fast_base) < self.hot_len {
            let (w, m) = map_slot(self.fast_base, p);
            // SAFETY: the word lies in the hot span's live map.
            unsafe { wr(w, rd(w) & !m) };
        } else {
            // SAFETY: forwarded.
            unsafe { self.flip_live_cold(p, false) };
        }
    }

    /// [`set_live`](Self::set_live) / [`clear_live`](Self::clear_live) for a
    /// payload outside the hot span: O(regions).
    ///
    /// # Safety
    /// As for [`set_live`](Self::set_live).
    #[cold]
    #[inline(never)]
    unsafe fn flip_live_cold(&mut self, p: usize, live: bool) {
        let Some(span) = self.find_span(p) else {
            debug_assert!(false, "payload outside every region");
            return;
        };
        let (w, m) = map_slot(span.start, p);
        // SAFETY: the word lies in that span's live map.
        unsafe { wr(w, if live { rd(w) | m } else { rd(w) & !m }) };
    }

    /// The fast path's `take_fast` found nothing: the index's complete
    /// `take`, out of line (a tail call from the fast path).
    #[cold]
    #[inline(never)]
    fn allocate_fallback<const MULTI: bool>(&mut self, need: usize) -> Option<NonNull<u8>> {
        // SAFETY: `need` is a valid request size (from `block_for`).
        match unsafe { self.index.take::<MULTI>(need) } {
            // SAFETY: as in the fast path.
            Some(b) => Some(unsafe { self.finish(b, self.taken_size::<MULTI>(b, need), need, 0) }),
            None => self.fail(),
        }
    }

    #[cold]
    #[inline(never)]
    fn fail(&mut self) -> Option<NonNull<u8>> {
        self.counters.on_fail();
        None
    }

    /// Requests that are huge, or whose alignment is not a power of two.
    #[cold]
    #[inline(never)]
    fn allocate_slow<const MULTI: bool>(
        &mut self,
        size: usize,
        align: usize,
    ) -> Option<NonNull<u8>> {
        let Some((rounded, align)) = checked_request(size, align, GRAN, WORD + MIN_BLOCK) else {
            return self.fail();
        };
        let need = block_for(rounded);
        if align <= GRAN {
            // SAFETY: `need` is a valid request size (below isize::MAX).
            return match unsafe { self.index.take::<MULTI>(need) } {
                Some(b) => {
                    // SAFETY: the index returned a free block of at least
                    // `need` bytes (checked) whose previous block is used.
                    Some(unsafe { self.finish(b, self.taken_size::<MULTI>(b, need), need, 0) })
                }
                None => self.fail(),
            };
        }
        self.allocate_aligned::<MULTI>(need, align)
    }

    /// A block of `need` bytes whose payload is aligned to `align` (a power
    /// of two above `GRAN`).
    #[inline(never)]
    fn allocate_aligned<const MULTI: bool>(
        &mut self,
        need: usize,
        align: usize,
    ) -> Option<NonNull<u8>> {
        // Worst-case front padding: up to `align - 16`, or `align` more when
        // the padding would be a sliver too small to be a free block.
        let search = match need.checked_add(align + (MIN_BLOCK - GRAN)) {
            Some(s) if s <= isize::MAX as usize => s,
            _ => return self.fail(),
        };
        // SAFETY: `search` is a valid request size.
        let Some(b) = (unsafe { self.index.take::<MULTI>(search) }) else {
            return self.fail();
        };
        // SAFETY: `b` is a free block just taken out of the index.
        let size = unsafe { self.taken_size::<MULTI>(b, search) };
        let payload = b + WORD;
        let mut pad = payload.wrapping_neg() & (align - 1);
        if pad != 0 && pad < MIN_BLOCK {
            pad += align;
        }
        debug_assert!(size - pad >= need);
        if pad == 0 {
            // SAFETY: as in the fast path.
            return Some(unsafe { self.finish(b, size, need, 0) });
        }
        // SAFETY: the front `[b, b + pad)` becomes a free block (its previous
        // block is used since `b` was free); the rest is a block whose
        // previous block is that free one.
        unsafe {
            self.make_free(b, pad);
            Some(self.finish(b + pad, size - pad, need, PREV_FREE))
        }
    }

    /// Validate a pointer the caller says is a live block; return its header
    /// address and header word.
    ///
    /// The fast path handles a plausible block in the hot region with a few
    /// compares and no error bookkeeping; anything else (another region, or
    /// a pointer that fails a check) goes to [`diagnose`](Self::diagnose),
    /// which repeats the checks in full and names the problem.
    #[inline(always)]
    fn lookup(&self, ptr: *const u8) -> Result<(usize, usize), HeapError> {
        if let Some(found) = self.lookup_fast(ptr) {
            return Ok(found);
        }
        if self.multi {
            if let Some((b, h, _)) = self.lookup_other(ptr) {
                return Ok((b, h));
            }
        }
        self.diagnose(ptr)
    }

    /// [`lookup_fast`](Self::lookup_fast) for a heap of several regions,
    /// whichever region `ptr` lies in: the region's span from [`Env`]'s
    /// table, then the same checks against it. Also returns the span's
    /// start, where its live map lies. `None`: ask
    /// [`diagnose`](Self::diagnose).
    #[inline(never)]
    fn lookup_other(&self, ptr: *const u8) -> Option<(usize, usize, usize)> {
        let span = self.env.span_of(ptr as usize)?;
        // `add_region` takes no span shorter than GRAN + MIN_BLOCK.
        let max = (span.len() - GRAN - MIN_BLOCK) >> GRAN_SHIFT;
        // SAFETY: `span` is one of the heap's, `max` its `fast_max`.
        let (b, h) = unsafe { Self::lookup_in(span.start, max, ptr as usize) }?;
        Some((b, h, span.start))
    }

    /// The fast stage of [`lookup`](Self::lookup) alone: `None` means
    /// "ask [`diagnose`](Self::diagnose)" (another region, or not plausibly
    /// a used block).
    #[inline(always)]
    fn lookup_fast(&self, ptr: *const u8) -> Option<(usize, usize)> {
        let p = ptr as usize;
        // SAFETY: with no region the test accepts only `p == 0`, which
        // no caller passes (every caller has a `NonNull`).
        unsafe { Self::lookup_in(self.fast_base, self.fast_max, p) }
    }

    /// [`lookup_fast`](Self::lookup_fast)'s test and checks for `p` against
    /// the span starting at `base` whose `fast_max` (see `fast_base`) is
    /// `max`.
    ///
    /// # Safety
    /// `base` and `max` describe one of the heap's spans.
    #[inline(always)]
    unsafe fn lookup_in(base: usize, max: usize, p: usize) -> Option<(usize, usize)> {
        let off = p.wrapping_sub(base);
        // A payload is 16-aligned, at least 16 bytes into the span (the
        // first block's payload) and at most `len - MIN_BLOCK` (the last
        // possible block ends at the sentinel): one compare for the three
        // (see `fast_base`).
        let r = off.wrapping_sub(GRAN).rotate_right(GRAN_SHIFT);
        if r > max {
            return None;
        }
        // `r = (off - GRAN) / GRAN` now, so `max - r` is `(len - off -
        // MIN_BLOCK) / GRAN`: how far a block at `p` may exceed MIN_BLOCK,
        // in granules, and still end at the sentinel.
        // SAFETY: `p` is a payload slot of the span (the test above).
        unsafe { Self::validate(base, p, off, max - r) }
    }

    /// [`RegionHeap::deallocate`] for a pointer the fast stage did not
    /// accept: diagnose it, and free it if it is a live block of another
    /// region. Out of line, so the fast path makes no call that returns.
    ///
    /// # Safety
    /// As for [`RegionHeap::deallocate`].
    #[cold]
    #[inline(never)]
    unsafe fn deallocate_slow<const MULTI: bool>(
        &mut self,
        ptr: NonNull<u8>,
    ) -> Result<(), HeapError> {
        let (b, h) = self.diagnose(ptr.as_ptr())?;
        self.counters.on_free((h & !FLAGS) - WORD);
        // SAFETY: `diagnose` validated `b` as a used block.
        unsafe {
            self.clear_live(b + WORD);
            self.release::<MULTI>(b, h);
        }
        Ok(())
    }

    /// The fast checks of [`lookup`](Self::lookup) for `p` at offset `off`
    /// into the span starting at `base`, where a block at `p` may be at
    /// most `MIN_BLOCK + room * GRAN` bytes. `None`: not a live block, or
    /// damaged metadata (the caller diagnoses it).
    ///
    /// The live map is read first: only when it says a used block starts at
    /// `p` is the header read, so no word the heap did not write is read.
    ///
    /// # Safety
    /// `base` is the start of one of the heap's spans, `end` its end, `p`
    /// is 16-aligned, `GRAN <= off = p - base <= end - base - MIN_BLOCK`
    /// and `room = (end - p - MIN_BLOCK) / GRAN`.
    #[inline(always)]
    unsafe fn validate(base: usize, p: usize, off: usize, room: usize) -> Option<(usize, usize)> {
        let (w, m) = map_slot(base, p);
        // SAFETY: `p` lies in the span, so its map word lies in the span's
        // live map, which the heap zeroed when it took the region.
        let word = unsafe { rd(w) };
        if word & m == 0 {
            return None;
        }
        let b = p - WORD;
        // SAFETY: the map says a used block starts at `b`: a header the heap
        // wrote, inside the span.
        let h = unsafe { rd(b) };
        // The map settles whether `p` is a live block; what is left to
        // check is the header and footer that freeing will follow, so that
        // a damaged one (an overrun of the block before) is refused and
        // cannot send the writes outside the span. The header must say
        // USED with MIN_BLOCK <= size <= end - p (`room`), so the block
        // ends at or before the sentinel. One compare for both: `v` is the
        // size iff the kind bits read exactly USED, and has low bits set
        // otherwise, which the rotation moves to the top.
        let v = (h ^ USED) & !PREV_FREE;
        let r = v.wrapping_sub(MIN_BLOCK).rotate_right(GRAN_SHIFT);
        if r > room {
            return None;
        }
        // The size must lead to the next block's header: `r == room` is the
        // sentinel; anything else a block whose header does not say we
        // are free and whose own live bit agrees, with no payload between.
        // SAFETY: `b + v` ends at or before the sentinel (just checked),
        // and the map words lie in the span's live map.
        if r != room && !unsafe { Self::next_is_a_block(base, p, v, word) } {
            return None;
        }
        if h & PREV_FREE != 0 {
            // SAFETY: `b - W >= span.start` since `off >= GRAN`.
            let ps = unsafe { rd(b - WORD) };
            // The free block before must start inside the span:
            // `b - ps >= span.start + LEAD`, i.e. `ps <= off - GRAN` (a
            // footer that passes this and the header test below but points
            // into the live map is damage only `check` finds).
            if ps & FLAGS != 0 || ps < MIN_BLOCK || ps > off - GRAN {
                return None;
            }
            // SAFETY: `b - ps` is a word in the span (just checked).
            if unsafe { rd(b - ps) } != ps | FREE {
                return None;
            }
        }
        Some((b, h))
    }

    /// Whether the used block with payload `p` (in the span whose live map
    /// starts at `base`) and size `v` is followed by a block that starts
    /// at `b + v`, not the sentinel: its header says USED (and its payload
    /// is live) or FREE, without PREV_FREE (this block is used); and no
    /// payload starts strictly inside this block. A used block's size is
    /// in memory an overflow of the block before can rewrite: a size
    /// changed to another plausible value would otherwise have `free`
    /// merge across live blocks. One header read and, for a block up to
    /// 1 KiB, one or two map words.
    ///
    /// `word` is the live-map word holding `p`'s bit: a block whose
    /// next payload's bit lies in the same word (up to 1 KiB) needs no
    /// other map read.
    ///
    /// # Safety
    /// `p - WORD + v` is a header slot before the span's sentinel;
    /// `base` is the span's start; `word` as said.
    #[inline(always)]
    unsafe fn next_is_a_block(base: usize, p: usize, v: usize, word: usize) -> bool {
        let n = p - WORD + v;
        // SAFETY: per the function contract.
        let nh = unsafe { rd(n) };
        let bits = usize::BITS as usize;
        let at = ((p - base) >> GRAN_SHIFT) % bits;
        // Granules from `p`'s to the next payload's (`v / GRAN >= 2`).
        let k = v >> GRAN_SHIFT;
        let (inner, next_live) = if at + k < bits {
            (
                (word >> (at + 1)) & ((1 << (k - 1)) - 1),
                (word >> (at + k)) & 1,
            )
        } else if at + k < 2 * bits {
            // The next payload's bit is in the following map word.
            let e = at + k - bits;
            // SAFETY: that word holds the bit of `n + WORD`, a payload
            // slot of the span.
            let next = unsafe { rd(map_slot(base, p).0 + WORD) };
            ((word >> at >> 1) | (next & ((1 << e) - 1)), (next >> e) & 1)
        } else {
            // SAFETY: `p + GRAN ..= n + WORD` lies in the span.
            unsafe { Self::live_bits_across(base, p, n) }
        };
        // A used next block's payload is live, a free one's is not; either
        // header has PREV_FREE clear (this block is used).
        let kind = nh & (KIND | PREV_FREE);
        inner == 0 && ((kind == USED && next_live == 1) || (kind == FREE && next_live == 0))
    }

    /// [`next_is_a_block`](Self::next_is_a_block)'s map bits for a block
    /// whose next payload's bit is in another map word: (bits of the
    /// payload slots strictly inside, the next payload's bit).
    ///
    /// # Safety
    /// `p + GRAN ..= n + WORD` lies in the span starting at `base`.
    #[cold]
    #[inline(never)]
    unsafe fn live_bits_across(base: usize, p: usize, n: usize) -> (usize, usize) {
        // SAFETY: per the function contract.
        unsafe {
            (
                Self::live_bits(base, p + GRAN, n + WORD),
                usize::from(Self::live_bits(base, n + WORD, n + WORD + GRAN) != 0),
            )
        }
    }

    /// Whether any live-map bit is set for the payload slots in `[from,
    /// to)` (16-aligned addresses of the span starting at `base`): non-zero
    /// if so.
    ///
    /// # Safety
    /// `from..to` lies in the span.
    #[inline(always)]
    unsafe fn live_bits(base: usize, from: usize, to: usize) -> usize {
        if from >= to {
            return 0;
        }
        let bits = usize::BITS as usize;
        let (g0, g1) = ((from - base) >> GRAN_SHIFT, (to - base) >> GRAN_SHIFT);
        let (w0, w1) = (g0 / bits, (g1 - 1) / bits);
        let lo = usize::MAX << (g0 % bits);
        let hi = usize::MAX >> (bits - 1 - (g1 - 1) % bits);
        // SAFETY: the words of granules g0..g1 lie in the span's live map.
        unsafe {
            if w0 == w1 {
                return rd(base + w0 * WORD) & lo & hi;
            }
            let mut any = rd(base + w0 * WORD) & lo;
            for w in w0 + 1..w1 {
                any |= rd(base + w * WORD);
            }
            any | (rd(base + w1 * WORD) & hi)
        }
    }

    /// The slow, complete form of [`lookup`](Self::lookup): any region, and
    /// the precise error for a pointer that is not a live block.
    ///
    /// Reads only words the heap wrote: the live map, then (if the map says
    /// a used block starts there) the header and its neighbours' tags, or
    /// (if not) the headers of the span's blocks, found by walking them.
    #[cold]
    #[inline(never)]
    fn diagnose(&self, ptr: *const u8) -> Result<(usize, usize), HeapError> {
        let p = ptr as usize;
        let span = self
            .find_span(p)
            .ok_or(HeapError::new(HeapErrorKind::NotOwned, ptr))?;
        let invalid = Err(HeapError::new(HeapErrorKind::InvalidPointer, ptr));
        // A payload is 16-aligned, at or after the first block's payload,
        // and leaves room for a block before the sentinel.
        if p % GRAN != 0 || p < first_block(span) + WORD || p > span.end - MIN_BLOCK {
            return invalid;
        }
        let (w, m) = map_slot(span.start, p);
        // SAFETY: `p` lies in the span, so its map word lies in the span's
        // live map, which the heap zeroed when it took the region.
        if unsafe { rd(w) } & m == 0 {
            return Err(HeapError::new(Self::classify_dead(span, p), ptr));
        }
        // The map says a used block starts here: from now on, anything
        // inconsistent is damaged metadata.
        let corrupted = Err(HeapError::new(HeapErrorKind::Corrupted, ptr));
        let b = p - WORD;
        // SAFETY: a header the heap wrote, inside the span.
        let h = unsafe { rd(b) };
        let size = h & !FLAGS;
        // USED, and the block ends at or before the sentinel.
        if h & KIND != USED || size < MIN_BLOCK || size > span.end - WORD - b {
            return corrupted;
        }
        // The size must lead to the next block (see `next_is_a_block`);
        // when it does not, this block overflowed into the next header, or
        // its own size was overwritten: report it.
        if b + size != span.end - WORD {
            let (w, _) = map_slot(span.start, p);
            // SAFETY: `b + size < span.end - W`, a header slot before the
            // sentinel; `w` is `p`'s word of the span's live map.
            if !unsafe { Self::next_is_a_block(span.start, p, size, rd(w)) } {
                crate::corruption::report(
                    p,
                    "the boundary tag of the block after this one, or this block's size, was \
                     overwritten (a heap buffer overflow of this block?)",
                );
            }
        }
        if h & PREV_FREE != 0 {
            // SAFETY: `b - W >= span.start`, inside the span.
            let ps = unsafe { rd(b - WORD) };
            let first = first_block(span);
            if ps & FLAGS != 0 || ps < MIN_BLOCK || ps > b - first {
                return corrupted;
            }
            // SAFETY: `b - ps >= first`, a word inside the span.
            if unsafe { rd(b - ps) } != ps | FREE {
                return corrupted;
            }
        }
        Ok((b, h))
    }

    /// Why the 16-aligned `p` (inside `span`'s blocks) is not a live
    /// payload, by walking the span's headers to the block holding `p -
    /// W`: a free block means the pointer was freed already
    /// ([`DoubleFree`](HeapErrorKind::DoubleFree): freed blocks merge, so a
    /// pointer freed twice may now lie inside a larger free block, which
    /// cannot be told from any other point of free memory); inside a used
    /// block, [`InvalidPointer`](HeapErrorKind::InvalidPointer); a used
    /// block that starts exactly there but is not in the live map,
    /// [`Corrupted`](HeapErrorKind::Corrupted). O(blocks of the span): only
    /// an error takes this path.
    #[cold]
    #[inline(never)]
    fn classify_dead(span: Span, p: usize) -> HeapErrorKind {
        let target = p - WORD;
        for (b, h) in Self::blocks(span) {
            if target < b + (h & !FLAGS) {
                return match (h & FREE != 0, b == target) {
                    (true, _) => HeapErrorKind::DoubleFree,
                    (false, true) => HeapErrorKind::Corrupted,
                    (false, false) => HeapErrorKind::InvalidPointer,
                };
            }
        }
        HeapErrorKind::InvalidPointer
    }

    /// Grow or shrink the used block `b` (header `h`) in place.
    ///
    /// # Safety
    /// `b` must be a used block that `lookup` validated.
    #[inline(always)]
    unsafe fn resize_block<const MULTI: bool>(
        &mut self,
        b: usize,
        h: usize,
        new_size: usize,
    ) -> bool {
        if new_size > FAST_MAX {
            return false;
        }
        let need = block_for(new_size);
        let size = h & !FLAGS;
        let pf = h & PREV_FREE;
        let n = b + size;
        // SAFETY: `lookup` validated the block, so `n` is the next header.
        let nh = unsafe { rd(n) };
        let next_free = self.next_free_size::<MULTI>(b, n, nh);
        let new_block = if need <= size {
            let tail = size - need;
            if next_free != 0 && tail > 0 {
                // SAFETY: the tail and the free next block are adjacent; the
                // merged block's next already has PREV_FREE.
                unsafe {
                    self.index.remove::<MULTI>(n, next_free);
                    wr(b, need | USED | pf);
                    self.make_free(b + need, tail + next_free);
                }
                need
            } else if tail >= MIN_BLOCK {
                // SAFETY: the tail becomes a free block before a used one.
                unsafe {
                    wr(b, need | USED | pf);
                    self.make_free(b + need, tail);
                    wr(n, nh | PREV_FREE);
                }
                need
            } else {
                size
            }
        } else if next_free != 0 && size + next_free >= need {
            let total = size + next_free;
            // SAFETY: the next block is free and indexed; absorbing it keeps
            // the block inside the span.
            unsafe {
                self.index.remove::<MULTI>(n, next_free);
                if total - need >= MIN_BLOCK {
                    wr(b, need | USED | pf);
                    self.make_free(b + need, total - need);
                    need
                } else {
                    wr(b, total | USED | pf);
                    let nn = b + total;
                    wr(nn, rd(nn) & !PREV_FREE);
                    total
                }
            }
        } else {
            return false;
        };
        self.counters.on_resize(size - WORD, new_block - WORD);
        true
    }

    /// [`RegionHeap::reallocate`] for a pointer the fast stage did not
    /// accept (cold): diagnose it, then resize or move a live block of
    /// another region.
    ///
    /// # Safety
    /// As for [`RegionHeap::reallocate`]; `align` is a power of two.
    #[cold]
    #[inline(never)]
    unsafe fn reallocate_slow<const MULTI: bool>(
        &mut self,
        ptr: NonNull<u8>,
        new_size: usize,
        align: usize,
    ) -> Option<NonNull<u8>> {
        let (b, h) = self.diagnose(ptr.as_ptr()).ok()?;
        // SAFETY: `diagnose` validated the block.
        unsafe { self.resize_or_move::<MULTI>(b, h, new_size, align) }
    }

    /// Reallocate the validated used block `b` (header `h`): in place if
    /// its payload has the alignment and the neighbours allow it, else by
    /// [`move_block`](Self::move_block) (a tail call).
    ///
    /// # Safety
    /// `b` must be a used block with header `h` that the pointer checks
    /// validated; `align` is a power of two.
    #[inline(always)]
    unsafe fn resize_or_move<const MULTI: bool>(
        &mut self,
        b: usize,
        h: usize,
        new_size: usize,
        align: usize,
    ) -> Option<NonNull<u8>> {
        let p = b + WORD;
        // SAFETY: per the function contract.
        if p & (align - 1) == 0 && unsafe { self.resize_block::<MULTI>(b, h, new_size) } {
            // SAFETY: a payload address inside a region is not null.
            return Some(unsafe { NonNull::new_unchecked(p as *mut u8) });
        }
        // SAFETY: per the function contract.
        unsafe { self.move_block::<MULTI>(b, h, new_size, align) }
    }

    /// The moving half of a reallocation: allocate, copy, free. Out of
    /// line (reached by a tail call), so the in-place half makes no call
    /// that returns and saves no registers.
    ///
    /// # Safety
    /// As for [`resize_or_move`](Self::resize_or_move).
    #[inline(never)]
    unsafe fn move_block<const MULTI: bool>(
        &mut self,
        b: usize,
        h: usize,
        new_size: usize,
        align: usize,
    ) -> Option<NonNull<u8>> {
        let old = (h & !FLAGS) - WORD;
        let new = self.allocate(new_size, align)?;
        // SAFETY: both blocks are live and distinct; `old` and `new_size`
        // bound both. The old block is still used, but allocating may have
        // changed its PREV_FREE bit: re-read its header before freeing it.
        unsafe {
            core::ptr::copy_nonoverlapping(
                (b + WORD) as *const u8,
                new.as_ptr(),
                old.min(new_size),
            );
            self.counters.on_free(old);
            self.clear_live(b + WORD);
            self.release::<MULTI>(b, rd(b));
        }
        Some(new)
    }

    /// Free the used block `b` with header `h`: merge with free neighbours
    /// and index the result.
    ///
    /// # Safety
    /// `b` must be a used block that `lookup` validated.
    #[inline(always)]
    unsafe fn release<const MULTI: bool>(&mut self, b: usize, h: usize) {
        let mut start = b;
        let mut size = h & !FLAGS;
        // SAFETY: `b` is a validated used block, so `b + size` is the next
        // header (a block or the sentinel), and when PREV_FREE is set the
        // word before `b` is the footer of the free block before it.
        // The next block's tag is checked before it is trusted (see
        // `next_free_size`); the previous block's footer and header were
        // checked when `b` was validated (`validate` / `diagnose`).
        unsafe {
            let n = b + size;
            let nh = rd(n);
            let ns = self.next_free_size::<MULTI>(b, n, nh);
            if ns != 0 {
                self.index.remove::<MULTI>(n, ns);
                size += ns;
            } else {
                wr(n, nh | PREV_FREE);
            }
            if h & PREV_FREE != 0 {
                let ps = rd(b - WORD);
                start = b - ps;
                self.index.remove::<MULTI>(start, ps);
                size += ps;
            }
            self.make_free(start, size);
        }
    }

    /// [`RegionHeap::allocate`] for a heap of one region (`!MULTI`) or
    /// several.
    #[inline(always)]
    fn allocate_in<const MULTI: bool>(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        // `align` in 1..=16 and a power of two: the common case, one
        // compare and one bit test.
        if size <= FAST_MAX && align <= GRAN && (SMALL_ALIGNS >> align) & 1 != 0 {
            let need = block_for(size);
            // SAFETY: `need` is a multiple of GRAN, >= MIN_BLOCK, small.
            if let Some(b) = unsafe { self.index.take_fast::<MULTI>(need) } {
                // SAFETY: the index handed over a free block of at least
                // `need` bytes; its previous block is used, its next has
                // PREV_FREE set.
                return Some(unsafe { self.finish(b, self.taken_size::<MULTI>(b, need), need, 0) });
            }
            return self.allocate_fallback::<MULTI>(need);
        }
        if size <= FAST_MAX && align > GRAN && align & (align - 1) == 0 {
            return self.allocate_aligned::<MULTI>(block_for(size), align);
        }
        self.allocate_slow::<MULTI>(size, align)
    }

    /// [`RegionHeap::deallocate`] for a heap of one region or several.
    ///
    /// # Safety
    /// As for [`RegionHeap::deallocate`].
    #[inline(always)]
    unsafe fn deallocate_in<const MULTI: bool>(
        &mut self,
        ptr: NonNull<u8>,
    ) -> Result<(), HeapError> {
        let found = match self.lookup_fast(ptr.as_ptr()) {
            Some((b, h)) => Some((b, h, self.fast_base)),
            None if MULTI => self.lookup_other(ptr.as_ptr()),
            None => None,
        };
        let Some((b, h, base)) = found else {
            // SAFETY: forwarded from the caller.
            return unsafe { self.deallocate_slow::<MULTI>(ptr) };
        };
        self.counters.on_free((h & !FLAGS) - WORD);
        let (w, m) = map_slot(base, b + WORD);
        // SAFETY: `lookup_fast` / `lookup_other` validated `b` as a used
        // block of the span whose live map starts at `base`.
        unsafe {
            wr(w, rd(w) & !m);
            self.release::<MULTI>(b, h);
        }
        Ok(())
    }

    /// [`RegionHeap::reallocate`] for a heap of one region or several: one
    /// validation for the whole move, instead of one per step.
    ///
    /// # Safety
    /// As for [`RegionHeap::reallocate`].
    #[inline(always)]
    unsafe fn reallocate_in<const MULTI: bool>(
        &mut self,
        ptr: NonNull<u8>,
        new_size: usize,
        align: usize,
    ) -> Option<NonNull<u8>> {
        if align == 0 || align & (align - 1) != 0 {
            return None;
        }
        let found = match self.lookup_fast(ptr.as_ptr()) {
            Some(found) => Some(found),
            None if MULTI => self.lookup_other(ptr.as_ptr()).map(|(b, h, _)| (b, h)),
            None => None,
        };
        let Some((b, h)) = found else {
            // SAFETY: forwarded from the caller.
            return unsafe { self.reallocate_slow::<MULTI>(ptr, new_size, align) };
        };
        // SAFETY: `lookup_fast` / `lookup_other` validated the block.
        unsafe { self.resize_or_move::<MULTI>(b, h, new_size, align) }
    }

    /// The multi-region copies, out of line: a single-region heap never
    /// runs them, and their out-of-line lookups cost its fast paths nothing.
    #[inline(never)]
    fn allocate_multi(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        self.allocate_in::<true>(size, align)
    }

    /// See [`allocate_multi`](Self::allocate_multi).
    ///
    /// # Safety
    /// As for [`RegionHeap::deallocate`].
    #[inline(never)]
    unsafe fn deallocate_multi(&mut self, ptr: NonNull<u8>) -> Result<(), HeapError> {
        // SAFETY: forwarded from the caller.
        unsafe { self.deallocate_in::<true>(ptr) }
    }

    /// See [`allocate_multi`](Self::allocate_multi).
    ///
    /// # Safety
    /// As for [`RegionHeap::reallocate`].
    #[inline(never)]
    unsafe fn reallocate_multi(
        &mut self,
        ptr: NonNull<u8>,
        new_size: usize,
        align: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: forwarded from the caller.
        unsafe { self.reallocate_in::<true>(ptr, new_size, align) }
    }

    #[cold]
    #[inline(never)]
    fn find_span(&self, addr: usize) -> Option<Span> {
        self.env.span_of(addr)
    }

    fn spans(&self) -> impl Iterator<Item = Span> + '_ {
        self.regions.spans(GRAN)
    }

    /// Blocks of one span in address order: (address, header word). Stops
    /// early at a header that would not advance or would overrun.
    fn blocks(span: Span) -> impl Iterator<Item = (usize, usize)> {
        let mut b = first_block(span);
        let end = span.end - WORD;
        core::iter::from_fn(move || {
            if b >= end {
                return None;
            }
            // SAFETY: `b` is a header slot inside the span: the first block,
            // or the end of a block that did not overrun `end`.
            let h = unsafe { rd(b) };
            let size = h & !FLAGS;
            if size == 0 || size > end - b {
                return None;
            }
            let item = (b, h);
            b += size;
            Some(item)
        })
    }

    /// Verify a block the index claims is free; return its size.
    fn check_indexed(&self, b: usize) -> Result<usize, CheckError> {
        let Some(span) = self.regions.find(b, GRAN) else {
            return Err(CheckError::new(
                b,
                "indexed block lies outside every region",
            ));
        };
        if b % GRAN != LEAD || b < first_block(span) || b >= span.end - WORD {
            return Err(CheckError::new(
                b,
                "indexed block is not on a block boundary",
            ));
        }
        // SAFETY: `b` is a word-aligned address inside the span.
        let h = unsafe { rd(b) };
        let size = h & !FLAGS;
        if h & FLAGS != FREE || size < MIN_BLOCK || size > span.end - WORD - b {
            return Err(CheckError::new(b, "indexed block is not free"));
        }
        // SAFETY: the footer slot lies inside the block, inside the span.
        if unsafe { rd(b + size - WORD) } != size {
            return Err(CheckError::new(b, "indexed block's footer disagrees"));
        }
        Ok(size)
    }

    /// Walk every span, checking invariants 1–5 and 7; with `indexed`, also
    /// that each free block is in the index. Returns the free block count.
    fn check_blocks(&self, indexed: Option<usize>) -> Result<usize, CheckError> {
        let mut free_blocks = 0usize;
        let mut in_use = 0usize;
        let mut live = 0u64;
        for span in self.spans() {
            let sentinel = span.end - WORD;
            let mut b = first_block(span);
            let mut prev_free = false;
            let mut span_live = 0u64;
            while b < sentinel {
                // SAFETY: `b` is a header slot below the sentinel.
                let h = unsafe { rd(b) };
                let size = h & !FLAGS;
                let free = match h & KIND {
                    FREE => true,
                    USED => false,
                    _ => return Err(CheckError::new(b, "header is neither used nor free")),
                };
                if size < MIN_BLOCK || size > sentinel - b {
                    return Err(CheckError::new(b, "block size out of range"));
                }
                if (h & PREV_FREE != 0) != prev_free {
                    return Err(CheckError::new(
                        b,
                        "PREV_FREE bit disagrees with the previous block",
                    ));
                }
                if free {
                    if prev_free {
                        return Err(CheckError::new(b, "two adjacent free blocks"));
                    }
                    // SAFETY: footer slot inside the block.
                    if unsafe { rd(b + size - WORD) } != size {
                        return Err(CheckError::new(
                            b,
                            "free block's footer disagrees with its header",
                        ));
                    }
                    if let Some(budget) = indexed {
                        if !self.index.contains(b, size, budget) {
                            return Err(CheckError::new(b, "free block is not in the index"));
                        }
                    }
                    free_blocks += 1;
                } else {
                    let (w, m) = map_slot(span.start, b + WORD);
                    // SAFETY: the payload lies in the span; its map word in
                    // the span's live map.
                    if unsafe { rd(w) } & m == 0 {
                        return Err(CheckError::new(b, "used block is not in the live map"));
                    }
                    in_use += size - WORD;
                    live += 1;
                    span_live += 1;
                }
                prev_free = free;
                b += size;
            }
            if b != sentinel {
                return Err(CheckError::new(b, "blocks do not end at the sentinel"));
            }
            // SAFETY: the sentinel slot is the span's last word.
            let sh = unsafe { rd(sentinel) };
            if sh & !PREV_FREE != USED {
                return Err(CheckError::new(sentinel, "region sentinel is damaged"));
            }
            if (sh & PREV_FREE != 0) != prev_free {
                return Err(CheckError::new(
                    sentinel,
                    "sentinel's PREV_FREE bit disagrees",
                ));
            }
            // Every used block has its bit; no other bit is set.
            let mut bits = 0u64;
            let mut w = span.start;
            while w < first_block(span) - LEAD {
                // SAFETY: a word of the span's live map.
                bits += u64::from(unsafe { rd(w) }.count_ones());
                w += WORD;
            }
            if bits != span_live {
                return Err(CheckError::new(
                    span.start,
                    "live map has bits that are no used block's",
                ));
            }
        }
        if in_use != self.counters.in_use {
            return Err(CheckError::new(
                0,
                "sum of used block sizes != in_use counter",
            ));
        }
        if live != self.counters.live() {
            return Err(CheckError::new(0, "used block count != live counter"));
        }
        Ok(free_blocks)
    }
}

impl<I: FreeIndex> RegionHeap for BoundaryHeap<I> {
    fn name(&self) -> &'static str {
        self.index.name()
    }

    unsafe fn add_region(&mut self, region: Region) -> Result<(), RegionError> {
        // SAFETY: forwarded from the caller.
        // The smallest live map is one granule (spans up to 2 KiB on 64-bit
        // targets); a longer span's map grows by a word per 1 KiB, so any
        // span of at least this size keeps `LEAD + MIN_BLOCK + WORD` for
        // blocks after its map.
        let min = GRAN + LEAD + MIN_BLOCK + WORD;
        // SAFETY: forwarded from the caller.
        let span = unsafe { self.regions.push(region, GRAN, min)? };
        let map = map_bytes(span.len());
        debug_assert!(span.len() >= map + LEAD + MIN_BLOCK + WORD);
        self.hot = span;
        // `span.len() >= min`: no underflow.
        self.fast_base = span.start;
        self.fast_max = (span.len() - GRAN - MIN_BLOCK) >> GRAN_SHIFT;
        self.hot_len = span.len();
        self.multi = self.regions.count() > 1;
        self.env = self.env.with_span(span, self.regions.head_addr());
        self.index.set_env(self.env);
        let b = span.start + map + LEAD;
        let sentinel = span.end - WORD;
        // SAFETY: the span is ours: the map is its first `map` bytes;
        // `b..sentinel` is a whole number of granules of at least MIN_BLOCK,
        // and the sentinel is its last word.
        unsafe {
            core::ptr::write_bytes(span.start as *mut u8, 0, map);
            wr(sentinel, USED | PREV_FREE);
            self.make_free(b, sentinel - b);
        }
        Ok(())
    }

    #[inline(always)]
    fn allocate(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        if self.multi {
            return self.allocate_multi(size, align);
        }
        self.allocate_in::<false>(size, align)
    }

    #[inline(always)]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>) -> Result<(), HeapError> {
        if self.multi {
            // SAFETY: forwarded from the caller.
            return unsafe { self.deallocate_multi(ptr) };
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.deallocate_in::<false>(ptr) }
    }

    unsafe fn resize_in_place(&mut self, ptr: NonNull<u8>, new_size: usize) -> bool {
        let Ok((b, h)) = self.lookup(ptr.as_ptr()) else {
            return false;
        };
        // SAFETY: `lookup` validated the block.
        unsafe {
            if self.multi {
                self.resize_block::<true>(b, h, new_size)
            } else {
                self.resize_block::<false>(b, h, new_size)
            }
        }
    }

    /// One validation for the whole move, instead of one per step.
    #[inline(always)]
    unsafe fn reallocate(
        &mut self,
        ptr: NonNull<u8>,
        new_size: usize,
        align: usize,
    ) -> Option<NonNull<u8>> {
        if self.multi {
            // SAFETY: forwarded from the caller.
            return unsafe { self.reallocate_multi(ptr, new_size, align) };
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.reallocate_in::<false>(ptr, new_size, align) }
    }

    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> Result<usize, HeapError> {
        let (_, h) = self.lookup(ptr.as_ptr())?;
        Ok((h & !FLAGS) - WORD)
    }

    fn owns(&self, ptr: *const u8) -> bool {
        self.hot.contains(ptr as usize) || self.regions.contains(ptr as usize, GRAN)
    }

    /// O(blocks): free figures come from a walk, so the hot paths keep no
    /// extra counters.
    fn stats(&self) -> HeapStats {
        let mut s = HeapStats {
            region_bytes: self.regions.bytes(),
            ..HeapStats::default()
        };
        for span in self.spans() {
            for (_, h) in Self::blocks(span) {
                if h & FREE != 0 {
                    let payload = (h & !FLAGS) - WORD;
                    s.free += payload;
                    s.free_blocks += 1;
                    s.largest_free = s.largest_free.max(payload);
                }
            }
        }
        s.with_counters(&self.counters)
    }

    fn walk(&self, f: &mut dyn FnMut(BlockInfo)) {
        for span in self.spans() {
            // The live map and the lead before the first header.
            let first = first_block(span);
            f(BlockInfo {
                addr: span.start,
                size: first - span.start,
                state: BlockState::Overhead,
                payload: 0,
            });
            let mut end = first;
            for (b, h) in Self::blocks(span) {
                let used = h & USED != 0;
                f(BlockInfo {
                    addr: b,
                    size: h & !FLAGS,
                    state: if used {
                        BlockState::Used
                    } else {
                        BlockState::Free
                    },
                    payload: if used { b + WORD } else { 0 },
                });
                end = b + (h & !FLAGS);
            }
            f(BlockInfo {
                addr: end,
                size: span.end - end,
                state: BlockState::Overhead,
                payload: 0,
            });
        }
    }

    fn check(&self) -> Result<(), CheckError> {
        self.regions.check()?;
        let free_blocks = self.check_blocks(None)?;
        let indexed = self
            .index
            .check(free_blocks, &mut |b| self.check_indexed(b))?;
        if indexed != free_blocks {
            return Err(CheckError::new(
                0,
                "index holds a different number of blocks than are free",
            ));
        }
        self.check_blocks(Some(free_blocks))?;
        Ok(())
    }
}
