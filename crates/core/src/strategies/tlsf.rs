//! # TLSF: two-level segregated fit, O(1) in the worst case
//!
//! Free blocks are sorted into `FL × SL` lists by size. The *first level*
//! is the power of two of the size; the *second level* cuts each power of
//! two into `SL` equal slices. List `(fl, sl)` is *flat list* `i = fl × SL +
//! sl`, and flat order is size order. Two levels of bitmaps over the flat
//! lists say which are non-empty, so finding a list that is guaranteed to
//! fit is two bit scans, not a search:
//!
//! ```text
//!   size (in 16-byte units) u = 0b 1 0110 1101      SL = 16 (SLI = 4)
//!                                  ^ ^^^^
//!            f = floor(log2 u) ----+   +---- sl = next SLI bits  -> (fl, sl)
//!
//!   words       1 0 1 1 0 ...          one bit per word of `lists`
//!   lists[w]    0 0 1 0 ... 1          one bit per flat list: i = 64 w + bit
//!   heads[fl][sl] (flat list i) -> [blk] <-> [blk] <-> [blk]
//! ```
//!
//! Sizes below `SL` units (`SL × 16` bytes) have one list per exact size
//! (first level 0). Above, list `(fl, sl)` holds the sizes
//! `[(SL + sl) << (fl - 1), (SL + sl + 1) << (fl - 1))` units, so a list spans
//! at most `1/SL` of its size.
//!
//! - **allocate(n)**: round `n` *up* to the next list boundary, so every block
//!   of the found list fits ("good fit"): with `i` that list, mask the
//!   word of `lists` holding bit `i` from `i` up; if that is empty, mask
//!   `words` above that word and take the lowest set list of the first
//!   word found. (One bitmap word holds the lists of several first levels
//!   when `SL` is below the bits of a word, which spares the insertion a
//!   level.) Pop its head, split off the rest (see
//!   [`blocks`](super::blocks)). If the rounded search fails, the head of
//!   `n`'s own list is tried too (one comparison), so a block that fits is
//!   not missed only because it shares a list with smaller ones.
//! - **free**: coalesce with both neighbours (boundary tags), push the result
//!   on the front of its list, set two bits (its list's, its word's).
//!
//! **Time**: allocate and free are O(1) in the worst case: a constant number
//! of bit scans (`trailing_zeros`, `leading_zeros`), list pushes and pops,
//! and no loop over lists or blocks (large alignments included). Finding the
//! region of a pointer outside the region added last (to free it, or to mark
//! a block allocated from it in the live map) is O(regions).
//!
//! **Space**: one word of header per used block (free blocks carry two links
//! and a footer inside their own bytes), payloads rounded to 16 bytes, the
//! block layer's live map (1/128 of each region, see
//! [`blocks`](super::blocks)), and
//! `FL × SL` list heads plus `FL + 1` bitmap words in the heap itself (of
//! which `ceil(FL × SL / bits of a word) + 1` are used)
//! ([`Tlsf`]: 25 × 32 heads, 6.4 KiB on 64-bit targets).
//!
//! **Drawbacks**: the round-up search can fail while a list holds a block
//! that would fit (only its head is tried), so near exhaustion a request can
//! fail that best fit would serve; up to `1/SL` of a request's size may be
//! left unused in that sense. Blocks at or above the top list's lower bound
//! (4 GiB for [`Tlsf`] on 64-bit targets) all share the top list.
//!
//! **Profiles**: [`Tlsf`] checks every pointer, size, link and tag before
//! trusting it (see [`blocks`](super::blocks)); `Tlsf<Trusting>`
//! ([`Tlsf::trusting`](TlsfHeap::trusting)) is the same heap with the
//! checks compiled out, for tested code that wants the speed. The region
//! benchmark's figures for both, against talc and rlsf, are in
//! docs/BENCHMARKS.md.
//!
//! Configuration: [`TlsfHeap<FL, SL, P>`] with `SL` a power of two up to the
//! bits of a word and `FL` first levels; the assertions in
//! [`TlsfIndex::new`] reject, at compile time, a configuration whose
//! bitmaps or size arithmetic would not fit a word.
//!
//! Invariants (checked by `check`, in addition to the block layer's):
//! - bit `i % W` of `lists[i / W]` (`W` the bits of a word) is set iff flat
//!   list `i` is non-empty; bit `w` of `words` is set iff `lists[w] != 0`;
//!   no bit is set past the last list;
//! - every block on list `(fl, sl)` maps to `(fl, sl)`;
//! - lists are doubly linked consistently (see [`blocks`](super::blocks)).

use core::marker::PhantomData;

use super::blocks::{
    list, size_of_block, BoundaryHeap, Checked, Env, FreeIndex, Profile, Trusting, GRAN_SHIFT,
};
use crate::heap::CheckError;

const BITS: u32 = usize::BITS;

/// The TLSF free-block index: `FL` first levels of `SL` lists each.
///
/// List `(fl, sl)` is flat list `i = fl * SL + sl`, and flat order is size
/// order, so the two bitmap levels are over flat indices: bit `i % W` of
/// `lists[i / W]` (`W` the bits of a word) says list `i` is non-empty, and
/// bit `w` of `words` says `lists[w]` is non-zero. `SL <= W` makes `FL`
/// words enough for `lists`; only the first `ceil(FL * SL / W)` are used.
///
/// `P` is the heap's [`Profile`]: the list links are checked iff
/// `P::CHECKED` (a constant, so the trusting index has no check code).
pub struct TlsfIndex<const FL: usize, const SL: usize, P = Checked> {
    words: usize,
    lists: [usize; FL],
    heads: [[usize; SL]; FL],
    /// Where blocks can lie: every link is checked against it.
    env: Env,
    profile: PhantomData<P>,
}

/// A TLSF heap with `FL` first levels of `SL` second-level lists, in
/// profile `P` ([`Checked`] or [`Trusting`]).
pub type TlsfHeap<const FL: usize, const SL: usize, P = Checked> =
    BoundaryHeap<TlsfIndex<FL, SL, P>, P>;

/// The default TLSF heap: 32 lists per power of two; blocks from 32 bytes up
/// to the top list at 4 GiB (64-bit targets).
#[cfg(target_pointer_width = "64")]
pub type Tlsf<P = Checked> = TlsfHeap<25, 32, P>;
/// The default TLSF heap: 32 lists per power of two; every size up to
/// `isize::MAX` has its own first level (32-bit targets).
#[cfg(not(target_pointer_width = "64"))]
pub type Tlsf<P = Checked> = TlsfHeap<23, 32, P>;

// The default configuration of this target is valid (the generic check also
// runs whenever `new` is instantiated for any other configuration). Only this
// target's: the 64-bit one is too large for a 32-bit word.
#[cfg(target_pointer_width = "64")]
const _: () = TlsfIndex::<25, 32, Checked>::VALID;
#[cfg(not(target_pointer_width = "64"))]
const _: () = TlsfIndex::<23, 32, Checked>::VALID;

impl<const FL: usize, const SL: usize, P: Profile> TlsfIndex<FL, SL, P> {
    /// `log2(SL)`.
    const SLI: u32 = SL.trailing_zeros();

    /// The lower bound of the top list `(FL - 1, SL - 1)`, in granules.
    const TOP_UNITS: usize = if FL == 1 {
        SL - 1
    } else {
        (2 * SL - 1) << (FL - 2)
    };

    /// Compile-time validation of the configuration.
    const VALID: () = {
        assert!(SL.is_power_of_two(), "SL must be a power of two");
        assert!(SL >= 4, "SL must be at least 4");
        assert!(SL <= BITS as usize, "SL lists must fit one bitmap word");
        assert!(
            FL >= 1 && FL <= BITS as usize,
            "FL levels must fit one bitmap word"
        );
        // The upper bound of the top list, in bytes, must fit a word.
        assert!(
            (SL.trailing_zeros() as usize) + FL - 1 + (GRAN_SHIFT as usize) < BITS as usize,
            "FL too large for the word size"
        );
        // The bitmap words in use, and one past them, are bits of `words`
        // (so `find_suitable`'s shift by `w + 1` stays below BITS).
        assert!(Self::WORDS < BITS as usize);
    };

    /// Bitmap words in use: `ceil(FL * SL / BITS)`.
    const WORDS: usize = (FL * SL).div_ceil(BITS as usize);

    /// An empty index. Fails to compile for an invalid `FL`/`SL`:
    ///
    /// ```compile_fail
    /// // SL = 24 is not a power of two.
    /// let _ = stratalloc_core::TlsfHeap::<20, 24>::new();
    /// ```
    ///
    /// ```compile_fail
    /// // 60 first levels of 32 lists: sizes would overflow a 64-bit word.
    /// let _ = stratalloc_core::TlsfHeap::<60, 32>::new();
    /// ```
    ///
    /// ```
    /// let _ = stratalloc_core::TlsfHeap::<20, 16>::new();
    /// ```
    pub const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::VALID;
        TlsfIndex {
            words: 0,
            lists: [0; FL],
            heads: [[0; SL]; FL],
            env: Env::EMPTY,
            profile: PhantomData,
        }
    }

    /// The list a free block of `size` bytes belongs on. Sizes above the top
    /// list's range go on the top list.
    ///
    /// Branch-free apart from the (never taken in practice) clamp: the
    /// small/large split is folded into the arithmetic, because a mixed
    /// workload would mispredict it about as often as not.
    #[inline(always)]
    pub fn mapping_insert(size: usize) -> (usize, usize) {
        let i = Self::insert_index(size);
        (i >> Self::SLI, i & (SL - 1))
    }

    /// [`mapping_insert`](Self::mapping_insert) as the flat list index
    /// `fl * SL + sl`.
    #[inline(always)]
    fn insert_index(size: usize) -> usize {
        let u = size >> GRAN_SHIFT;
        // Sizes past the top list's lower bound all belong on the top list:
        // clamp the size (one compare) rather than the result.
        let u = if u > Self::TOP_UNITS {
            Self::TOP_UNITS
        } else {
            u
        };
        let i = Self::flat_index(u);
        debug_assert!(i < FL * SL);
        i
    }

    /// The flat index of the list holding `u` granules, unclamped.
    ///
    /// With `f` the top bit of `u` (but at least SLI) and `shift = f -
    /// SLI`: for `u >= SL`, level `fl = shift + 1` and slice `sl = (u >>
    /// shift) - SL`, so `fl * SL + sl = shift * SL + (u >> shift)`; for `u <
    /// SL`, `shift = 0` and the same formula gives `u`, level 0's exact
    /// list. One shift and one add, no select.
    #[inline(always)]
    fn flat_index(u: usize) -> usize {
        let shift = BITS - 1 - (u | SL).leading_zeros() - Self::SLI;
        ((shift as usize) << Self::SLI) + (u >> shift)
    }

    /// The first list whose every block has at least `size` bytes: round up
    /// to the next list boundary. `None` above the top list's range.
    ///
    /// Unlike [`mapping_insert`](Self::mapping_insert) this one branches on
    /// the small sizes: requests are mostly small (first level 0, one list
    /// per exact size, nothing to round), so the branch predicts well and
    /// skips two bit scans.
    #[inline(always)]
    pub fn mapping_search(size: usize) -> Option<(usize, usize)> {
        let i = Self::search_index(size)?;
        Some((i >> Self::SLI, i & (SL - 1)))
    }

    /// [`mapping_search`](Self::mapping_search) as the flat list index.
    #[inline(always)]
    fn search_index(size: usize) -> Option<usize> {
        let u = size >> GRAN_SHIFT;
        if u < SL {
            return Some(u);
        }
        // The width of `u`'s list is 1 << shift granules (1 below 2 SL).
        let shift = BITS - 1 - (u | SL).leading_zeros() - Self::SLI;
        let i = Self::flat_index(u + (1 << shift) - 1);
        if i >= FL * SL {
            return None;
        }
        Some(i)
    }

    /// Bitmap word `w`, unchecked.
    ///
    /// # Safety
    /// `w < FL`.
    #[inline(always)]
    unsafe fn word(&mut self, w: usize) -> &mut usize {
        debug_assert!(w < FL);
        // SAFETY: per the function contract.
        unsafe { self.lists.get_unchecked_mut(w) }
    }

    /// The first non-empty list at or after flat list `i`: two bit scans.
    #[inline(always)]
    fn find_suitable(&mut self, i: usize) -> Option<usize> {
        let w = i / BITS as usize;
        // SAFETY: i < FL * SL comes from `search_index`, so w < WORDS <= FL.
        let m = unsafe { *self.word(w) } & (usize::MAX << (i % BITS as usize));
        if m != 0 {
            return Some(w * BITS as usize + m.trailing_zeros() as usize);
        }
        // w + 1 <= WORDS < BITS (VALID), so the shift is in range.
        let wm = self.words & (usize::MAX << (w + 1));
        if wm == 0 {
            return None;
        }
        let w = wm.trailing_zeros() as usize;
        // SAFETY: bits of `words` are below WORDS (invariant).
        Some(w * BITS as usize + unsafe { *self.word(w) }.trailing_zeros() as usize)
    }

    /// Pop the head of non-empty flat list `i`.
    ///
    /// # Safety
    /// The list must be non-empty.
    #[inline(always)]
    unsafe fn pop<const MULTI: bool>(&mut self, i: usize) -> usize {
        // SAFETY: per the function contract.
        let (b, empty) =
            unsafe { list::pop::<MULTI>(self.heads.as_flattened_mut(), i, &self.env, P::CHECKED) };
        if empty {
            // SAFETY: as above.
            unsafe { self.clear_bit(i) };
        }
        b
    }

    /// Mark flat list `i` empty.
    ///
    /// # Safety
    /// `i < FL * SL`.
    #[inline(always)]
    unsafe fn clear_bit(&mut self, i: usize) {
        let w = i / BITS as usize;
        // SAFETY: per the function contract, w < WORDS <= FL.
        let m = unsafe { self.word(w) };
        *m &= !(1 << (i % BITS as usize));
        if *m == 0 {
            self.words &= !(1 << w);
        }
    }

    /// The rounded search failed: try the head of `size`'s own list.
    #[cold]
    #[inline(never)]
    unsafe fn take_exact_head<const MULTI: bool>(&mut self, size: usize) -> Option<usize> {
        let i = Self::insert_index(size);
        let h = self.heads.as_flattened()[i];
        // SAFETY: a non-zero head is a free block of the heap.
        if h != 0 && unsafe { size_of_block(h) } >= size {
            // SAFETY: the list is non-empty.
            return Some(unsafe { self.pop::<MULTI>(i) });
        }
        None
    }
}

impl<const FL: usize, const SL: usize, P: Profile> Default for TlsfIndex<FL, SL, P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const FL: usize, const SL: usize, P: Profile> FreeIndex for TlsfIndex<FL, SL, P> {
    fn name(&self) -> &'static str {
        "tlsf"
    }

    fn set_env(&mut self, env: Env) {
        self.env = env;
    }

    #[inline(always)]
    unsafe fn insert(&mut self, b: usize, size: usize) {
        let i = Self::insert_index(size);
        let w = i / BITS as usize;
        // SAFETY: `b` is a free block not in any list (caller's contract);
        // `insert_index` returns i < FL * SL, so w < WORDS <= FL.
        unsafe {
            list::push(self.heads.as_flattened_mut(), i, b);
            *self.word(w) |= 1 << (i % BITS as usize);
        }
        self.words |= 1 << w;
    }

    #[inline(always)]
    unsafe fn remove<const MULTI: bool>(&mut self, b: usize, _size: usize) {
        // The block's list tag, not its size, says which list it is on: no
        // mapping needed.
        // SAFETY: `b` is on one of the lists (caller's contract); an
        // emptied list index is below FL * SL.
        unsafe {
            if let Some(i) =
                list::unlink::<MULTI>(self.heads.as_flattened_mut(), b, &self.env, P::CHECKED)
            {
                self.clear_bit(i);
            }
        }
    }

    #[inline(always)]
    unsafe fn take<const MULTI: bool>(&mut self, size: usize) -> Option<usize> {
        // SAFETY: forwarded.
        if let Some(b) = unsafe { self.take_fast::<MULTI>(size) } {
            return Some(b);
        }
        // SAFETY: forwarded.
        unsafe { self.take_exact_head::<MULTI>(size) }
    }

    /// The rounded-up search alone (the exact-head fallback is `take`'s).
    #[inline(always)]
    unsafe fn take_fast<const MULTI: bool>(&mut self, size: usize) -> Option<usize> {
        let i = self.find_suitable(Self::search_index(size)?)?;
        // SAFETY: the bitmaps say the list is non-empty.
        Some(unsafe { self.pop::<MULTI>(i) })
    }

    fn check(
        &self,
        budget: usize,
        visit: &mut dyn FnMut(usize) -> Result<usize, CheckError>,
    ) -> Result<usize, CheckError> {
        let bits = BITS as usize;
        if self.words >> Self::WORDS != 0 {
            return Err(CheckError::new(
                0,
                "word bitmap has bits above the words in use",
            ));
        }
        for (w, &m) in self.lists.iter().enumerate() {
            if (self.words >> w & 1 != 0) != (m != 0) {
                return Err(CheckError::new(
                    w,
                    "word bit disagrees with its list bitmap",
                ));
            }
            // Bits of lists past FL * SL (in the last word used, or in a
            // word past it) must be clear.
            let past = (FL * SL).saturating_sub(w * bits).min(bits);
            if past < bits && m >> past != 0 {
                return Err(CheckError::new(
                    w,
                    "list bitmap has bits past the last list",
                ));
            }
        }
        let mut total = 0;
        let flat = self.heads.as_flattened();
        for fl in 0..FL {
            for sl in 0..SL {
                let head = self.heads[fl][sl];
                let i = fl * SL + sl;
                if (self.lists[i / bits] >> (i % bits) & 1 != 0) != (head != 0) {
                    return Err(CheckError::new(head, "list bit disagrees with its list"));
                }
                total += list::check(flat, fl * SL + sl, budget - total, &mut |b| {
                    let size = visit(b)?;
                    if Self::mapping_insert(size) != (fl, sl) {
                        return Err(CheckError::new(b, "free block is on the wrong size list"));
                    }
                    Ok(())
                })?;
            }
        }
        Ok(total)
    }

    fn contains(&self, b: usize, size: usize, budget: usize) -> bool {
        let (fl, sl) = Self::mapping_insert(size);
        list::contains(self.heads.as_flattened(), fl * SL + sl, b, budget)
    }
}

impl<const FL: usize, const SL: usize> BoundaryHeap<TlsfIndex<FL, SL>> {
    /// An empty TLSF heap; give it memory with
    /// [`RegionHeap::add_region`](crate::RegionHeap::add_region). `const`, so
    /// it can initialise a `static` (`Locked<Tlsf>`).
    pub const fn new() -> Self {
        Self::with_index(TlsfIndex::new())
    }
}

impl<const FL: usize, const SL: usize> BoundaryHeap<TlsfIndex<FL, SL, Trusting>, Trusting> {
    /// An empty TLSF heap in the [`Trusting`] profile
    /// (`static HEAP: Locked<Tlsf<Trusting>> = Locked::new(Tlsf::trusting())`).
    pub const fn trusting() -> Self {
        Self::with_index(TlsfIndex::new())
    }
}

impl<const FL: usize, const SL: usize> Default for BoundaryHeap<TlsfIndex<FL, SL>> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::super::blocks::{MIN_BLOCK, WORD};
    use super::*;
    use crate::region::Region;
    use crate::RegionHeap;

    /// The index of this target's default [`Tlsf`], and its top list.
    #[cfg(target_pointer_width = "64")]
    type T = TlsfIndex<25, 32>;
    #[cfg(not(target_pointer_width = "64"))]
    type T = TlsfIndex<23, 32>;
    const TOP_FL: usize = if BITS == 64 { 24 } else { 22 };
    /// The lower bound of the top list `(TOP_FL, 31)`, in bytes.
    const TOP_LOWER: usize = ((32 + 31) << (TOP_FL - 1)) << 4;

    #[repr(C, align(65536))]
    struct Mem([u8; 1 << 20]);

    fn heap_over(mem: &mut Mem) -> Tlsf {
        let mut h = Tlsf::new();
        // SAFETY: `mem` outlives the heap in each test and is used by nothing else.
        unsafe { h.add_region(Region::from_raw_parts(mem.0.as_mut_ptr(), mem.0.len()).unwrap()) }
            .unwrap();
        h.check().unwrap();
        h
    }

    fn boxed() -> std::boxed::Box<Mem> {
        extern crate std;
        // SAFETY: Mem is plain bytes; zeroed is a valid value.
        unsafe {
            let layout = std::alloc::Layout::new::<Mem>();
            let p = std::alloc::alloc_zeroed(layout) as *mut Mem;
            assert!(!p.is_null());
            std::boxed::Box::from_raw(p)
        }
    }

    extern crate std;

    #[test]
    fn mapping_small_sizes_are_exact() {
        for u in 2..32usize {
            assert_eq!(T::mapping_insert(u * 16), (0, u));
            assert_eq!(T::mapping_search(u * 16), Some((0, u)));
        }
    }

    #[test]
    fn mapping_boundaries() {
        // First size of level 1: 32 units = 512 bytes.
        assert_eq!(T::mapping_insert(512), (1, 0));
        assert_eq!(T::mapping_insert(512 + 16), (1, 1));
        assert_eq!(T::mapping_insert(1023 & !15), (1, 31));
        assert_eq!(T::mapping_insert(1024), (2, 0));
        // Level 2 lists are 2 units (32 bytes) wide: 1040 shares list 0.
        assert_eq!(T::mapping_insert(1040), (2, 0));
        assert_eq!(T::mapping_search(1040), Some((2, 1)));
        assert_eq!(T::mapping_search(1024), Some((2, 0)));
        // Rounding up across a power of two.
        assert_eq!(T::mapping_search(2048 - 32), Some((2, 31)));
        assert_eq!(T::mapping_search(2048 - 16), Some((3, 0)));
    }

    /// The textbook mapping, with branches, to check the branch-free one.
    fn reference_insert(size: usize) -> (usize, usize) {
        let u = size >> 4;
        if u < 32 {
            return (0, u);
        }
        let f = (BITS - 1 - u.leading_zeros()) as usize;
        let fl = f - 5 + 1;
        if fl > TOP_FL {
            return (TOP_FL, 31);
        }
        (fl, (u >> (f - 5)) - 32)
    }

    #[test]
    fn branch_free_mapping_matches_the_reference() {
        let mut s = 16usize;
        while s < (isize::MAX as usize) / 4 {
            for d in [0usize, 16, 32, 48, 496, 512, 4096] {
                let size = (s + d) & !15;
                assert_eq!(T::mapping_insert(size), reference_insert(size), "{size}");
                // Search = insert of the size rounded up to its list's width.
                let (fl, _) = reference_insert(size);
                let width = if fl <= 1 { 16 } else { 16 << (fl - 1) };
                let up = (size + width - 1) & !(width - 1);
                let expect = match reference_insert(up) {
                    (TOP_FL, 31) if up > TOP_LOWER => None,
                    m => Some(m),
                };
                assert_eq!(T::mapping_search(size), expect, "search {size}");
            }
            s += s / 4 + 16;
        }
    }

    #[test]
    fn mapping_search_lists_always_fit() {
        // Every size in the list mapping_search picks is >= the request, and
        // mapping_insert of a size puts it at or below the searched list.
        let mut s = 32usize;
        while s < TOP_LOWER + TOP_LOWER / 2 {
            for d in [0usize, 16, 48, 4096] {
                let size = (s + d) & !15;
                if let Some((fl, sl)) = T::mapping_search(size) {
                    // Lower bound of list (fl, sl) in bytes.
                    let lower = if fl == 0 {
                        sl << 4
                    } else {
                        ((32 + sl) << (fl - 1)) << 4
                    };
                    assert!(lower >= size, "size {size} -> ({fl},{sl}) lower {lower}");
                    assert!(T::mapping_insert(size) <= (fl, sl));
                    assert_eq!(T::mapping_insert(lower), (fl, sl));
                }
            }
            s += s / 8 + 16;
        }
    }

    #[test]
    fn mapping_top_level_clamps() {
        assert_eq!(T::mapping_insert(TOP_LOWER), (TOP_FL, 31));
        assert_eq!(T::mapping_insert(TOP_LOWER - 16), (TOP_FL, 30));
        assert_eq!(T::mapping_insert(TOP_LOWER + (1 << 24)), (TOP_FL, 31));
        assert_eq!(T::mapping_insert(isize::MAX as usize & !15), (TOP_FL, 31));
        assert_eq!(T::mapping_search(TOP_LOWER), Some((TOP_FL, 31)));
        assert_eq!(T::mapping_search(TOP_LOWER + 16), None);
        assert_eq!(T::mapping_search(isize::MAX as usize & !15), None);
        // A tiny configuration.
        type Small = TlsfIndex<3, 4>;
        assert_eq!(Small::mapping_insert(64), (1, 0));
        assert_eq!(Small::mapping_insert(1 << 20), (2, 3));
        assert_eq!(Small::mapping_search(1 << 20), None);
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn check_catches_bitmap_damage() {
        let mut no_blocks = |b: usize| -> Result<usize, CheckError> {
            Err(CheckError::new(b, "no block expected"))
        };
        assert_eq!(T::new().check(0, &mut no_blocks), Ok(0));
        // A list bit with an empty list; the same bit's word bit alone.
        let mut x = T::new();
        x.lists[3] = 1 << 7;
        x.words = 1 << 3;
        assert!(x.check(0, &mut no_blocks).is_err());
        x.lists[3] = 0;
        assert!(x.check(0, &mut no_blocks).is_err());
        // A word bit past the words in use (800 lists: 13 words).
        let mut y = T::new();
        y.words = 1 << 13;
        assert!(y.check(0, &mut no_blocks).is_err());
        // A list bit past the last list (bit 32 of word 12 is list 800).
        let mut z = T::new();
        z.lists[12] = 1 << 32;
        z.words = 1 << 12;
        assert!(z.check(0, &mut no_blocks).is_err());
    }

    #[test]
    fn small_configuration_works_as_a_heap() {
        let mut mem = boxed();
        let mut h = TlsfHeap::<3, 4>::new();
        // SAFETY: `mem` outlives the heap.
        unsafe { h.add_region(Region::from_raw_parts(mem.0.as_mut_ptr(), 1 << 20).unwrap()) }
            .unwrap();
        let mut v = std::vec::Vec::new();
        for i in 0..200 {
            v.push(h.allocate(16 + i * 37, 16).unwrap());
            h.check().unwrap();
        }
        for p in v {
            // SAFETY: live block.
            unsafe { h.deallocate(p) }.unwrap();
        }
        h.check().unwrap();
        assert_eq!(h.stats().free_blocks, 1);
    }

    #[test]
    fn exact_head_fallback_finds_a_fitting_block() {
        let mut mem = boxed();
        let mut h = heap_over(&mut mem);
        // Leave one free block of 1040 bytes (list (2,0), which also holds
        // 1024) and ask for its whole payload: the rounded search looks at
        // (2,1)+ and finds nothing, the head check finds it.
        let total = h.stats().largest_free;
        let a = h.allocate(1040 - WORD, 16).unwrap();
        let rest = total - 1040;
        let b = h.allocate(rest - WORD, 16).unwrap();
        assert_eq!(h.stats().free_blocks, 0);
        // SAFETY: live block.
        unsafe { h.deallocate(a) }.unwrap();
        assert_eq!(h.stats().largest_free, 1040 - WORD);
        let c = h
            .allocate(1040 - WORD, 16)
            .expect("exact-list head not tried");
        assert_eq!(c, a);
        h.check().unwrap();
        // SAFETY: live blocks.
        unsafe {
            h.deallocate(b).unwrap();
            h.deallocate(c).unwrap();
        }
        h.check().unwrap();
    }

    #[test]
    fn free_coalesces_both_neighbours() {
        let mut mem = boxed();
        let mut h = heap_over(&mut mem);
        let a = h.allocate(100, 16).unwrap();
        let b = h.allocate(200, 16).unwrap();
        let c = h.allocate(300, 16).unwrap();
        let d = h.allocate(400, 16).unwrap();
        // SAFETY: live blocks.
        unsafe {
            h.deallocate(a).unwrap();
            h.deallocate(c).unwrap();
            assert_eq!(h.stats().free_blocks, 3);
            h.check().unwrap();
            // b sits between two free blocks: one free block results.
            h.deallocate(b).unwrap();
            assert_eq!(h.stats().free_blocks, 2);
            h.check().unwrap();
            h.deallocate(d).unwrap();
        }
        assert_eq!(h.stats().free_blocks, 1);
        h.check().unwrap();
    }

    #[test]
    fn alignment_64k_pads_into_a_free_block() {
        let mut mem = boxed();
        let mut h = heap_over(&mut mem);
        let small = h.allocate(24, 16).unwrap();
        let p = h.allocate(1000, 65536).unwrap();
        assert_eq!(p.as_ptr() as usize % 65536, 0);
        h.check().unwrap();
        // The padding in front became a free block, reusable at once.
        let mut free_before = 0;
        h.walk(&mut |b| {
            if b.addr + b.size == p.as_ptr() as usize - WORD {
                assert_eq!(b.state, crate::BlockState::Free);
                free_before = b.size;
            }
        });
        assert!(free_before >= MIN_BLOCK);
        // TLSF takes the smallest non-empty list that fits: the padding block.
        let q = h.allocate(100, 16).unwrap();
        assert!((q.as_ptr() as usize) < p.as_ptr() as usize);
        h.check().unwrap();
        // SAFETY: live blocks.
        unsafe {
            h.deallocate(p).unwrap();
            h.deallocate(q).unwrap();
            h.deallocate(small).unwrap();
        }
        h.check().unwrap();
        assert_eq!(h.stats().free_blocks, 1);
    }

    #[test]
    fn grows_in_place_into_a_free_neighbour_and_shrinks() {
        let mut mem = boxed();
        let mut h = heap_over(&mut mem);
        let a = h.allocate(100, 16).unwrap();
        let b = h.allocate(1000, 16).unwrap();
        let c = h.allocate(100, 16).unwrap();
        // SAFETY: live blocks of this heap.
        unsafe {
            h.deallocate(b).unwrap();
            assert!(h.resize_in_place(a, 600));
            assert!(h.usable_size(a).unwrap() >= 600);
            h.check().unwrap();
            // Not enough room next to `a` any more for 5000 bytes (c is used).
            assert!(!h.resize_in_place(a, 5000));
            // Shrink: the tail merges back into the free block after `a`.
            assert!(h.resize_in_place(a, 40));
            assert_eq!(h.usable_size(a).unwrap(), 48 - WORD);
            h.check().unwrap();
            assert_eq!(h.stats().free_blocks, 2);
            // c's tail shrinks into the big free block after it.
            assert!(h.resize_in_place(c, 16));
            h.check().unwrap();
            h.deallocate(a).unwrap();
            h.deallocate(c).unwrap();
        }
        assert_eq!(h.stats().free_blocks, 1);
        h.check().unwrap();
    }

    #[test]
    fn double_free_after_merge_is_detected() {
        let mut mem = boxed();
        let mut h = heap_over(&mut mem);
        let a = h.allocate(64, 16).unwrap();
        let b = h.allocate(64, 16).unwrap();
        let keep = h.allocate(64, 16).unwrap();
        // SAFETY: live blocks; then deliberate double frees the heap must catch.
        unsafe {
            h.deallocate(a).unwrap();
            h.deallocate(b).unwrap(); // b merges into a
            assert_eq!(
                h.deallocate(b).unwrap_err().kind,
                crate::HeapErrorKind::DoubleFree
            );
            assert_eq!(
                h.deallocate(a).unwrap_err().kind,
                crate::HeapErrorKind::DoubleFree
            );
            h.check().unwrap();
            h.deallocate(keep).unwrap();
        }
        h.check().unwrap();
    }

    #[test]
    fn pointers_at_the_edges_of_the_fast_window_are_refused() {
        use crate::HeapErrorKind::NotOwned;
        use core::ptr::NonNull;
        // An empty heap owns nothing, whatever the address (the fast test's
        // "no region" encoding must not accept any non-null pointer).
        let empty = Tlsf::new();
        for a in [16usize, 32, usize::MAX - 15, usize::MAX - 31, 4096] {
            let q = NonNull::new(a as *mut u8).unwrap();
            // SAFETY: the heap must refuse the pointer without touching it.
            assert_eq!(unsafe { empty.usable_size(q) }.unwrap_err().kind, NotOwned);
        }
        let mut mem = boxed();
        let mut h = heap_over(&mut mem);
        let start = mem.0.as_ptr() as usize;
        let end = start + mem.0.len();
        // The first block's payload is the lowest address the fast test
        // accepts; everything below it, and the last bytes of the region,
        // are refused with the heap unchanged.
        let first = h.allocate(16, 16).unwrap();
        for a in [
            first.as_ptr() as usize - 16,
            start,
            start + 8,
            end - 16,
            end - 32,
            end - 48,
            end,
        ] {
            if a == first.as_ptr() as usize {
                continue;
            }
            let q = NonNull::new(a as *mut u8).unwrap();
            // SAFETY: as above.
            assert!(unsafe { h.deallocate(q) }.is_err(), "{a:#x} accepted");
            h.check().unwrap();
        }
        // SAFETY: a live block.
        unsafe { h.deallocate(first) }.unwrap();
        h.check().unwrap();
    }

    #[test]
    fn reallocate_in_a_region_other_than_the_last_added() {
        let mut first = boxed();
        let mut second = boxed();
        let mut h = heap_over(&mut first);
        let a = h.allocate(100, 16).unwrap();
        let keep = h.allocate(100, 16).unwrap();
        // SAFETY: `second` outlives the heap and is used by nothing else.
        unsafe {
            h.add_region(Region::from_raw_parts(second.0.as_mut_ptr(), second.0.len()).unwrap())
                .unwrap();
        }
        // `a` now lies outside the hot span: the slow path resizes, moves
        // and frees it.
        // SAFETY: live blocks of this heap.
        unsafe {
            core::ptr::write_bytes(a.as_ptr(), 0x5A, 100);
            let b = h.reallocate(a, 40, 16).unwrap();
            assert_eq!(b, a, "shrinking stays in place");
            let c = h.reallocate(b, 5000, 16).unwrap();
            assert_eq!(*c.as_ptr().add(39), 0x5A);
            h.check().unwrap();
            let d = h.reallocate(keep, 300, 4096).unwrap();
            assert_eq!(d.as_ptr() as usize % 4096, 0);
            h.check().unwrap();
            h.deallocate(c).unwrap();
            h.deallocate(d).unwrap();
        }
        h.check().unwrap();
        assert_eq!(h.stats().live(), 0);
    }

    #[test]
    fn forged_header_inside_a_live_block_is_refused() {
        // User data that looks exactly like a used block (a USED header, a
        // next header without PREV_FREE) fooled the header checks alone;
        // the live map knows no block starts there.
        let mut mem = boxed();
        let mut h = heap_over(&mut mem);
        let a = h.allocate(1000, 16).unwrap();
        let fake = a.as_ptr() as usize + 256;
        // SAFETY: both words lie inside the live block `a`.
        unsafe {
            *((fake - WORD) as *mut usize) = 64 | 4;
            *((fake - WORD + 64) as *mut usize) = 64 | 4;
        }
        let q = core::ptr::NonNull::new(fake as *mut u8).unwrap();
        // SAFETY: the heap must refuse the pointer without changing anything.
        unsafe {
            assert_eq!(
                h.deallocate(q).unwrap_err().kind,
                crate::HeapErrorKind::InvalidPointer
            );
            assert!(h.usable_size(q).is_err());
            assert!(!h.resize_in_place(q, 10));
        }
        h.check().unwrap();
        // SAFETY: live block.
        unsafe { h.deallocate(a) }.unwrap();
        h.check().unwrap();
    }

    #[test]
    fn damaged_header_is_reported_by_check() {
        let mut mem = boxed();
        let mut h = heap_over(&mut mem);
        let a = h.allocate(64, 16).unwrap();
        let _b = h.allocate(64, 16).unwrap();
        // SAFETY: overwrite a's header on purpose (test memory).
        unsafe { *(a.as_ptr().sub(WORD) as *mut usize) ^= 8 };
        assert!(h.check().is_err());
        // SAFETY: the damaged pointer must be refused, not followed.
        assert!(unsafe { h.deallocate(a) }.is_err());
    }

    #[test]
    fn works_as_a_static_locked_global_allocator() {
        use core::alloc::{GlobalAlloc, Layout};
        static HEAP: crate::Locked<Tlsf> = crate::Locked::new(Tlsf::new());
        static mut MEM: Mem = Mem([0; 1 << 20]);
        // SAFETY: MEM is used by nothing but HEAP, for the whole program.
        unsafe {
            let start = core::ptr::addr_of_mut!(MEM).cast::<u8>();
            HEAP.add_region(Region::from_raw_parts(start, 1 << 20).unwrap())
                .unwrap();
            let l = Layout::from_size_align(100, 64).unwrap();
            let p = HEAP.alloc(l);
            assert!(!p.is_null() && p as usize % 64 == 0);
            p.write_bytes(7, 100);
            let q = HEAP.realloc(p, l, 5000);
            assert!(!q.is_null() && q as usize % 64 == 0);
            assert_eq!(*q.add(99), 7);
            HEAP.dealloc(q, Layout::from_size_align(5000, 64).unwrap());
        }
        let h = HEAP.lock();
        h.check().unwrap();
        assert_eq!(h.stats().live(), 0);
        assert_eq!(h.stats().free_blocks, 1);
    }

    #[test]
    fn largest_class_blocks_are_served() {
        // A region of 1 MiB is one block in a high list; take it whole.
        let mut mem = boxed();
        let mut h = heap_over(&mut mem);
        let whole = h.stats().largest_free;
        let p = h.allocate(whole, 16).expect("whole region");
        assert_eq!(h.stats().free_blocks, 0);
        assert!(h.allocate(16, 16).is_none());
        // SAFETY: live block.
        unsafe { h.deallocate(p) }.unwrap();
        h.check().unwrap();
    }
}
