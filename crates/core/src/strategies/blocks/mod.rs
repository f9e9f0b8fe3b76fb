//! # Boundary tags: the block layer under free list, segregated fit and TLSF
//!
//! Four strategies ([`FreeList`](super::free_list::FreeList),
//! [`IndexedFit`](super::fit_tree::IndexedFit),
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
//!   least the index's [`FreeIndex::MIN_BLOCK`] ([`MIN_BLOCK`] for the
//!   lists, more for the tree). Its first word is the **header**.
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
//! ## Two profiles
//!
//! Everything below about checks is the [`Checked`] profile, the default
//! (`Tlsf`, `IndexedFit`, … and every run-time strategy). The [`Trusting`]
//! profile (`Tlsf<Trusting>`, `Tlsf::trusting()`, see [`Profile`]) is the
//! same code with the checks compiled out: a pointer handed back is taken
//! as a live block (its header is read and followed), links and boundary
//! tags are followed as they are, no live map is kept (its bytes stay
//! reserved, so the layout is the same), and a size handed to
//! `deallocate_sized` is ignored. It is for programs that have been tested
//! and want the speed (region benchmark: see the README and
//! docs/BENCHMARKS.md for what the checks cost).
//!
//! ## The caller's size
//!
//! [`RegionHeap::deallocate_sized`] and [`RegionHeap::reallocate_sized`]
//! (`GlobalAlloc::dealloc`, `Allocator::deallocate`/`grow`/`shrink`, C's
//! `heap_free_sized`) hand the size the block was allocated or last
//! resized with. A block's size is its request rounded up
//! (`block_for`), plus any remainder smaller than the index's
//! [`FreeIndex::MIN_BLOCK`] that was not split off, so the checked
//! profile accepts a size iff `block_for(size) <= header size <
//! block_for(size) + MIN_BLOCK`, one compare after the pointer checks
//! below, and reports any other through
//! [`corruption::report`](crate::corruption::report) naming the pointer,
//! before anything is changed. The trusting profile needs the header
//! anyway (its `PREV_FREE` bit says whether to merge backwards), so the
//! size saves it no read and is not used.
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
//! 8. A live-map bit is set iff it is the bit of a used block's payload
//!    ([`Checked`]; a [`Trusting`] heap keeps every bit clear).

use core::marker::PhantomData;
use core::ptr::NonNull;

use crate::heap::{BlockInfo, BlockState, CheckError, HeapError, HeapErrorKind, RegionHeap};
use crate::region::{Region, RegionError, RegionList, Span};
use crate::stats::{Counters, HeapStats};
use crate::util::checked_request;

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
pub(crate) mod list;

/// Intrusive balanced trees of free blocks: AVL, ordered by address or by
/// (size, address), each node carrying its subtree's largest size.
pub(crate) mod tree;

mod env;
mod inspect;
mod pointer;
mod profile;
mod resize;

pub use env::Env;
pub use profile::{Checked, Profile, Trusting};

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

/// How a strategy keeps its free blocks findable. The block layer calls it
/// with block addresses and sizes (headers included); the index owns the
/// link words of the blocks it holds and nothing else.
///
/// Implementations: [`FitIndex`](super::free_list::FitIndex) (one list),
/// [`FitTree`](super::fit_tree::FitTree) (a balanced tree),
/// [`SegIndex`](super::segregated::SegIndex) (a list per power of two),
/// [`TlsfIndex`](super::tlsf::TlsfIndex) (two-level lists and bitmaps).
pub trait FreeIndex {
    /// The smallest block this index can hold: the header, the index's
    /// link words and the footer, rounded up to [`GRAN`]. Every block of
    /// the heap is at least this big (smaller remainders stay inside the
    /// allocated block).
    const MIN_BLOCK: usize = MIN_BLOCK;

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

    /// `true`: the index implements [`find`](Self::find) and
    /// [`replace`](Self::replace), and the heap uses them: a block it
    /// splits or merges keeps its place in the index instead of leaving it
    /// and coming back (an index whose removal and insertion are O(1)
    /// gains nothing by it).
    #[inline(always)]
    fn replaces(&self) -> bool {
        false
    }

    /// [`take`](Self::take) without the taking: the block stays indexed,
    /// and the caller then [`remove`](Self::remove)s or
    /// [`replace`](Self::replace)s it. Only called when
    /// [`replaces`](Self::replaces).
    ///
    /// # Safety
    /// As for [`take`](Self::take).
    unsafe fn find<const MULTI: bool>(&mut self, size: usize) -> Option<usize> {
        // SAFETY: forwarded.
        unsafe { self.take::<MULTI>(size) }
    }

    /// The indexed block `old` of `old_size` bytes becomes the free block
    /// `new` of `new_size` bytes, overlapping it (cut at the front, or
    /// grown by a neighbour); no other free block lies between the two.
    /// Only called when [`replaces`](Self::replaces).
    ///
    /// # Safety
    /// `old` must be indexed with `old_size`, its header still reading so;
    /// `new`'s words are the index's from now on, its header and footer
    /// written by the caller after this call.
    unsafe fn replace<const MULTI: bool>(
        &mut self,
        old: usize,
        old_size: usize,
        new: usize,
        new_size: usize,
    ) {
        // SAFETY: forwarded.
        unsafe {
            self.remove::<MULTI>(old, old_size);
            self.insert(new, new_size);
        }
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
/// [`IndexedFit`](super::fit_tree::IndexedFit),
/// [`Segregated`](super::segregated::Segregated),
/// [`Tlsf`](super::tlsf::Tlsf).
///
/// `P` is the [`Profile`]: [`Checked`] (the default) validates every
/// pointer, size, link and boundary tag before trusting it; [`Trusting`]
/// trusts them.
pub struct BoundaryHeap<I, P = Checked> {
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
    profile: PhantomData<P>,
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

/// Report the block at payload `p`, freed or resized with a size it
/// cannot have (never returns).
#[cold]
#[inline(never)]
fn wrong_size(p: usize) -> ! {
    crate::corruption::report(p, crate::corruption::WRONG_SIZE)
}

/// Block size for a payload of `size` bytes (`size <= FAST_MAX`) in a
/// heap whose smallest block is `min` bytes.
#[inline(always)]
const fn block_for(size: usize, min: usize) -> usize {
    let b = (size + WORD + GRAN - 1) & !(GRAN - 1);
    if b < min {
        min
    } else {
        b
    }
}

impl<I: FreeIndex, P: Profile> BoundaryHeap<I, P> {
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
            env: Env::EMPTY.with_checks(P::CHECKED),
            counters: Counters::new(),
            index,
            profile: PhantomData,
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
        debug_assert!(size >= need && need >= I::MIN_BLOCK);
        let used = if size - need >= I::MIN_BLOCK {
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
        // SAFETY: `b` is now a used block of `used` bytes.
        unsafe { self.hand_out(b, used) }
    }

    /// Count the used block `b` of `used` bytes, mark it live and return
    /// its payload.
    ///
    /// # Safety
    /// `b` must be a used block of one of the heap's spans.
    #[inline(always)]
    unsafe fn hand_out(&mut self, b: usize, used: usize) -> NonNull<u8> {
        self.counters.on_alloc(used - WORD);
        let p = b + WORD;
        // SAFETY: `p` is the payload of a block of one of the heap's spans.
        unsafe { self.set_live(p) };
        // SAFETY: `p` lies inside a region, so it is not null.
        unsafe { NonNull::new_unchecked(p as *mut u8) }
    }

    /// Allocate `need` bytes from the block an index that
    /// [`replaces`](FreeIndex::replaces) found (still indexed): a tail big enough to
    /// be a block takes `b`'s place in the index, otherwise `b` leaves it.
    ///
    /// # Safety
    /// `b` must be a block the index holds, found for `need`.
    #[inline(always)]
    unsafe fn finish_found<const MULTI: bool>(&mut self, b: usize, need: usize) -> NonNull<u8> {
        // SAFETY: the index holds `b`; its tags are checked here.
        let size = unsafe { self.taken_size::<MULTI>(b, need) };
        if size - need < I::MIN_BLOCK {
            // SAFETY: `b` is indexed with `size`; once out, it is a free
            // block whose previous block is used.
            unsafe {
                self.index.remove::<MULTI>(b, size);
                return self.finish(b, size, need, 0);
            }
        }
        let (t, ts) = (b + need, size - need);
        // SAFETY: the tail lies inside `b`, whose header still reads free
        // while the index moves it; its next block already has PREV_FREE.
        unsafe {
            self.index.replace::<MULTI>(b, size, t, ts);
            wr(t, ts | FREE);
            wr(t + ts - WORD, ts);
            wr(b, need | USED);
            self.hand_out(b, need)
        }
    }

    /// The index's block for `need` bytes, allocated: [`FreeIndex::take`]
    /// and [`finish`](Self::finish), or [`FreeIndex::find`] and
    /// [`finish_found`](Self::finish_found).
    ///
    /// # Safety
    /// `need` must be a valid request size (see [`FreeIndex::take`]).
    #[inline(always)]
    unsafe fn take_and_finish<const MULTI: bool>(&mut self, need: usize) -> Option<NonNull<u8>> {
        // SAFETY: per the function contract; the index hands over (or
        // finds) a free block of at least `need` bytes whose previous block
        // is used.
        unsafe {
            if self.index.replaces() {
                let b = self.index.find::<MULTI>(need)?;
                return Some(self.finish_found::<MULTI>(b, need));
            }
            let b = self.index.take::<MULTI>(need)?;
            Some(self.finish(b, self.taken_size::<MULTI>(b, need), need, 0))
        }
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
            && size >= I::MIN_BLOCK
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
        if P::CHECKED && (!self.free_tags_ok::<MULTI>(b, h) || h & !FLAGS < need) {
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
        if P::CHECKED && !self.free_tags_ok::<MULTI>(n, nh) {
            crate::corruption::report(
                b + WORD,
                "the boundary tag of the block after this one was overwritten \
                 (a heap buffer overflow of this block?)",
            );
        }
        nh & !FLAGS
    }

    /// The caller's `size` for the used block `b` (header `h`), if it gave
    /// one, must be one the block can have been allocated or resized with:
    /// its block size (`block_for`) at most the header's, and less than a
    /// smallest block below it (a remainder that small stays in the
    /// block). Checked profile: a wrong size goes to
    /// [`corruption::report`](crate::corruption::report) naming the
    /// pointer, before anything is changed. Trusting: `debug_assert!`.
    #[inline(always)]
    fn check_size(&self, b: usize, h: usize, size: Option<usize>) {
        let Some(size) = size else { return };
        // `need <= have < need + MIN_BLOCK` in one compare (a `need` above
        // `have` wraps to a huge difference); saturating, so an absurd size
        // cannot wrap to a small block.
        let need = (size.saturating_add(WORD + GRAN - 1) & !(GRAN - 1)).max(I::MIN_BLOCK);
        let fits = (h & !FLAGS).wrapping_sub(need) < I::MIN_BLOCK;
        if P::CHECKED {
            if !fits {
                wrong_size(b + WORD);
            }
        } else {
            debug_assert!(
                fits,
                "trusting heap: wrong size {size} freed at {:#x}",
                b + WORD
            );
        }
    }

    /// Set the live-map bit of payload `p`.
    ///
    /// # Safety
    /// `p` must be the payload address of a block of one of the heap's
    /// spans.
    #[inline(always)]
    unsafe fn set_live(&mut self, p: usize) {
        if !P::CHECKED {
            return;
        }
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
        if !P::CHECKED {
            return;
        }
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
        match unsafe { self.take_and_finish::<MULTI>(need) } {
            Some(p) => Some(p),
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
        let Some((rounded, align)) = checked_request(size, align, GRAN, WORD + I::MIN_BLOCK) else {
            return self.fail();
        };
        let need = block_for(rounded, I::MIN_BLOCK);
        if align <= GRAN {
            // SAFETY: `need` is a valid request size (below isize::MAX).
            return match unsafe { self.take_and_finish::<MULTI>(need) } {
                Some(p) => Some(p),
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
        let search = match need.checked_add(align + (I::MIN_BLOCK - GRAN)) {
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
        if pad != 0 && pad < I::MIN_BLOCK {
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
            if self.index.replaces() {
                return self.release_in_place::<MULTI>(b, h, n, ns, nh);
            }
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

    /// [`release`](Self::release) for an index that
    /// [`replaces`](FreeIndex::replaces): the merged block takes the place of a free
    /// neighbour in the index (the previous one, which grows, or else the
    /// next one), so the index moves at most one block out.
    ///
    /// # Safety
    /// As for [`release`](Self::release); `n` is the next block, `nh` its
    /// header and `ns` its size if it is free (checked), else 0.
    #[inline(always)]
    unsafe fn release_in_place<const MULTI: bool>(
        &mut self,
        b: usize,
        h: usize,
        n: usize,
        ns: usize,
        nh: usize,
    ) {
        let size = h & !FLAGS;
        // SAFETY: as in `release`: the neighbours' tags were checked; the
        // merged block lies in one region, and each index call gets a
        // block it holds, whose header still reads free.
        unsafe {
            if ns == 0 {
                wr(n, nh | PREV_FREE);
            }
            if h & PREV_FREE != 0 {
                let ps = rd(b - WORD);
                let start = b - ps;
                if ns != 0 {
                    self.index.remove::<MULTI>(n, ns);
                }
                let total = ps + size + ns;
                self.index.replace::<MULTI>(start, ps, start, total);
                wr(start, total | FREE);
                wr(start + total - WORD, total);
            } else if ns != 0 {
                self.move_free::<MULTI>(n, ns, b, size + ns);
            } else {
                self.make_free(b, size);
            }
        }
    }

    /// The free, indexed block `n` of `ns` bytes gives way to the free
    /// block `t` of `ts` bytes that overlaps it (no other free block lies
    /// between them): `t` takes `n`'s place in an index that
    /// [`replaces`](FreeIndex::replaces), else `n` leaves and `t` enters.
    /// Writes `t`'s header and footer.
    ///
    /// # Safety
    /// `n` must be indexed with `ns`, its header intact; `[t, t + ts)` a
    /// span of one region whose previous block is used.
    #[inline(always)]
    unsafe fn move_free<const MULTI: bool>(&mut self, n: usize, ns: usize, t: usize, ts: usize) {
        // SAFETY: per the function contract.
        unsafe {
            if self.index.replaces() {
                self.index.replace::<MULTI>(n, ns, t, ts);
                wr(t, ts | FREE);
                wr(t + ts - WORD, ts);
            } else {
                self.index.remove::<MULTI>(n, ns);
                self.make_free(t, ts);
            }
        }
    }

    /// [`RegionHeap::allocate`] for a heap of one region (`!MULTI`) or
    /// several.
    #[inline(always)]
    fn allocate_in<const MULTI: bool>(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        // `align` in 1..=16 and a power of two: the common case, one
        // compare and one bit test.
        if size <= FAST_MAX && align <= GRAN && (SMALL_ALIGNS >> align) & 1 != 0 {
            let need = block_for(size, I::MIN_BLOCK);
            if self.index.replaces() {
                return self.allocate_fallback::<MULTI>(need);
            }
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
            return self.allocate_aligned::<MULTI>(block_for(size, I::MIN_BLOCK), align);
        }
        self.allocate_slow::<MULTI>(size, align)
    }

    /// [`RegionHeap::deallocate`] for a heap of one region or several;
    /// `size`: the caller's size ([`RegionHeap::deallocate_sized`]), if
    /// it gave one.
    ///
    /// # Safety
    /// As for [`RegionHeap::deallocate`].
    #[inline(always)]
    unsafe fn deallocate_in<const MULTI: bool>(
        &mut self,
        ptr: NonNull<u8>,
        size: Option<usize>,
    ) -> Result<(), HeapError> {
        let found = match self.lookup_fast(ptr.as_ptr()) {
            Some((b, h)) => Some((b, h, self.fast_base)),
            None if MULTI => self.lookup_other(ptr.as_ptr()),
            None => None,
        };
        let Some((b, h, base)) = found else {
            // SAFETY: forwarded from the caller.
            return unsafe { self.deallocate_slow::<MULTI>(ptr, size) };
        };
        self.check_size(b, h, size);
        self.counters.on_free((h & !FLAGS) - WORD);
        // SAFETY: `lookup_fast` / `lookup_other` validated `b` as a used
        // block of the span whose live map starts at `base` (or, trusting,
        // the caller vouches for it).
        unsafe {
            if P::CHECKED {
                let (w, m) = map_slot(base, b + WORD);
                wr(w, rd(w) & !m);
            }
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
        old_size: Option<usize>,
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
            return unsafe { self.reallocate_slow::<MULTI>(ptr, old_size, new_size, align) };
        };
        self.check_size(b, h, old_size);
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
    unsafe fn deallocate_multi(
        &mut self,
        ptr: NonNull<u8>,
        size: Option<usize>,
    ) -> Result<(), HeapError> {
        // SAFETY: forwarded from the caller.
        unsafe { self.deallocate_in::<true>(ptr, size) }
    }

    /// See [`allocate_multi`](Self::allocate_multi).
    ///
    /// # Safety
    /// As for [`RegionHeap::reallocate`].
    #[inline(never)]
    unsafe fn reallocate_multi(
        &mut self,
        ptr: NonNull<u8>,
        old_size: Option<usize>,
        new_size: usize,
        align: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: forwarded from the caller.
        unsafe { self.reallocate_in::<true>(ptr, old_size, new_size, align) }
    }

    /// [`RegionHeap::deallocate`] and [`RegionHeap::deallocate_sized`].
    ///
    /// # Safety
    /// As for [`RegionHeap::deallocate`].
    #[inline(always)]
    unsafe fn free_block(
        &mut self,
        ptr: NonNull<u8>,
        size: Option<usize>,
    ) -> Result<(), HeapError> {
        if self.multi {
            // SAFETY: forwarded from the caller.
            return unsafe { self.deallocate_multi(ptr, size) };
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.deallocate_in::<false>(ptr, size) }
    }

    /// [`RegionHeap::reallocate`] and [`RegionHeap::reallocate_sized`].
    ///
    /// # Safety
    /// As for [`RegionHeap::reallocate`].
    #[inline(always)]
    unsafe fn realloc_block(
        &mut self,
        ptr: NonNull<u8>,
        old_size: Option<usize>,
        new_size: usize,
        align: usize,
    ) -> Option<NonNull<u8>> {
        if self.multi {
            // SAFETY: forwarded from the caller.
            return unsafe { self.reallocate_multi(ptr, old_size, new_size, align) };
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.reallocate_in::<false>(ptr, old_size, new_size, align) }
    }
}

impl<I: FreeIndex, P: Profile> RegionHeap for BoundaryHeap<I, P> {
    fn name(&self) -> &'static str {
        self.index.name()
    }

    unsafe fn add_region(&mut self, region: Region) -> Result<(), RegionError> {
        // SAFETY: forwarded from the caller.
        // The smallest live map is one granule (spans up to 2 KiB on 64-bit
        // targets); a longer span's map grows by a word per 1 KiB, so any
        // span of at least this size keeps `LEAD + MIN_BLOCK + WORD` for
        // blocks after its map.
        let min = GRAN + LEAD + I::MIN_BLOCK + WORD;
        // SAFETY: forwarded from the caller.
        let span = unsafe { self.regions.push(region, GRAN, min)? };
        let map = map_bytes(span.len());
        debug_assert!(span.len() >= map + LEAD + I::MIN_BLOCK + WORD);
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
        // SAFETY: forwarded from the caller.
        unsafe { self.free_block(ptr, None) }
    }

    /// Checked: the size is compared with the block's header (one
    /// compare pair; a wrong one is reported naming the pointer).
    /// Trusting: the size is not needed (the header, read anyway for its
    /// `PREV_FREE` bit, has the block's size) and not checked.
    #[inline(always)]
    unsafe fn deallocate_sized(&mut self, ptr: NonNull<u8>, size: usize) -> Result<(), HeapError> {
        // SAFETY: forwarded from the caller.
        unsafe { self.free_block(ptr, Some(size)) }
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
        // SAFETY: forwarded from the caller.
        unsafe { self.realloc_block(ptr, None, new_size, align) }
    }

    /// As [`deallocate_sized`](Self::deallocate_sized) does with the size.
    #[inline(always)]
    unsafe fn reallocate_sized(
        &mut self,
        ptr: NonNull<u8>,
        old_size: usize,
        new_size: usize,
        align: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: forwarded from the caller.
        unsafe { self.realloc_block(ptr, Some(old_size), new_size, align) }
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
