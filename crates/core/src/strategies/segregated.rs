//! # Segregated fit: a free list per power of two, and a bitmap
//!
//! Free blocks are kept on one list per size class, class `k` holding the
//! blocks of `2^k ..= 2^(k+1) - 1` bytes. A word-sized bitmap has bit `k` set
//! while list `k` is non-empty.
//!
//! ```text
//!   bitmap: ... 0 1 0 1 1 0 0 0 0 0      bit k = list k non-empty
//!   list 5  (32..63 B):  [32] <-> [48]
//!   list 6  (64..127 B): [112]
//!   list 8 (256..511 B): [272] <-> [496] <-> [304]
//! ```
//!
//! **allocate(n)**: search `n`'s own class first fit (its blocks may be
//! smaller than `n`); if none fits, every block of a *higher* non-empty class
//! does, so take the head of the lowest one (one bit scan of the bitmap
//! masked above `n`'s class). Split and coalesce as in
//! [`blocks`](super::blocks).
//!
//! **Time**: free O(1); allocate O(length of one class list) + O(1): it
//! approximates best fit (a block from the smallest class that surely
//! fits) without scanning the whole heap.
//!
//! **Space**: one word per used block (see the block layer) and one list
//! head per bit of a word in the heap.
//!
//! **Drawbacks**: classes are a factor of two wide, so the block taken from
//! a higher class may be up to twice the request (the rest is split off,
//! not lost, but big blocks get cut up for small requests); the search in
//! the request's own class is linear. [`Tlsf`](super::tlsf::Tlsf) refines
//! each power of two into more lists and drops that linear search.
//!
//! Invariants (checked by `check`, in addition to the block layer's):
//! bit `k` of the bitmap is set iff list `k` is non-empty; every block on
//! list `k` has `2^k <= size < 2^(k+1)`; lists are consistently doubly linked.

use super::blocks::{list, size_of_block, BoundaryHeap, Checked, Env, FreeIndex, Trusting};
use crate::heap::CheckError;

const CLASSES: usize = usize::BITS as usize;

/// One free list per power-of-two size class, and a bitmap of non-empty
/// classes.
pub struct SegIndex {
    bitmap: usize,
    heads: [usize; CLASSES],
    /// Where blocks can lie: every link is checked against it.
    env: Env,
}

/// A boundary-tag heap with power-of-two segregated free lists, in
/// profile `P` ([`Checked`] or [`Trusting`]).
pub type Segregated<P = Checked> = BoundaryHeap<SegIndex, P>;

impl SegIndex {
    /// An empty index.
    pub const fn new() -> Self {
        SegIndex {
            bitmap: 0,
            heads: [0; CLASSES],
            env: Env::EMPTY,
        }
    }

    /// The class of a block of `size` (> 0) bytes: `floor(log2(size))`.
    #[inline(always)]
    pub const fn class(size: usize) -> usize {
        (usize::BITS - 1 - size.leading_zeros()) as usize
    }
}

impl Default for SegIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl FreeIndex for SegIndex {
    fn name(&self) -> &'static str {
        "segregated"
    }

    fn set_env(&mut self, env: Env) {
        self.env = env;
    }

    #[inline]
    unsafe fn insert(&mut self, b: usize, size: usize) {
        let c = Self::class(size);
        // SAFETY: `b` is a free block on no list (caller's contract).
        unsafe { list::push(&mut self.heads, c, b) };
        self.bitmap |= 1 << c;
    }

    #[inline]
    unsafe fn remove<const MULTI: bool>(&mut self, b: usize, _size: usize) {
        let checked = self.env.checks();
        // SAFETY: `b` is on one of the lists (caller's contract).
        if let Some(c) = unsafe { list::unlink::<MULTI>(&mut self.heads, b, &self.env, checked) } {
            self.bitmap &= !(1 << c);
        }
    }

    unsafe fn take<const MULTI: bool>(&mut self, size: usize) -> Option<usize> {
        let c = Self::class(size);
        // First fit within the request's own class.
        let mut b = self.heads[c];
        while b != 0 {
            // SAFETY: `b` is on list `c`, so it is a free block.
            if unsafe { size_of_block(b) } >= size {
                // SAFETY: as above.
                unsafe { self.remove::<MULTI>(b, size) };
                return Some(b);
            }
            // SAFETY: as above.
            b = unsafe { list::next_checked::<MULTI>(b, &self.env, self.env.checks()) };
        }
        // Any block of a higher class fits. `size < 2^63`, so `c + 1 < BITS`.
        let higher = self.bitmap & (usize::MAX << (c + 1));
        if higher == 0 {
            return None;
        }
        let c = higher.trailing_zeros() as usize;
        // SAFETY: the bitmap says list `c` is non-empty.
        let (b, empty) =
            unsafe { list::pop::<MULTI>(&mut self.heads, c, &self.env, self.env.checks()) };
        if empty {
            self.bitmap &= !(1 << c);
        }
        Some(b)
    }

    fn check(
        &self,
        budget: usize,
        visit: &mut dyn FnMut(usize) -> Result<usize, CheckError>,
    ) -> Result<usize, CheckError> {
        let mut total = 0;
        for (c, &head) in self.heads.iter().enumerate() {
            if (self.bitmap >> c & 1 != 0) != (head != 0) {
                return Err(CheckError::new(
                    head,
                    "class bitmap disagrees with its list",
                ));
            }
            total += list::check(&self.heads, c, budget - total, &mut |b| {
                if Self::class(visit(b)?) != c {
                    return Err(CheckError::new(b, "free block is on the wrong class list"));
                }
                Ok(())
            })?;
        }
        Ok(total)
    }

    fn contains(&self, b: usize, size: usize, budget: usize) -> bool {
        list::contains(&self.heads, Self::class(size), b, budget)
    }
}

impl BoundaryHeap<SegIndex> {
    /// An empty segregated-fit heap; give it memory with
    /// [`RegionHeap::add_region`](crate::RegionHeap::add_region).
    pub const fn new() -> Self {
        Self::with_index(SegIndex::new())
    }
}

impl BoundaryHeap<SegIndex, Trusting> {
    /// [`Segregated::new`] in the [`Trusting`] profile.
    pub const fn trusting() -> Self {
        Self::with_index(SegIndex::new())
    }
}

impl Default for BoundaryHeap<SegIndex> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::super::blocks::WORD;
    use super::*;
    use crate::region::Region;
    use crate::RegionHeap;

    #[test]
    fn classes() {
        assert_eq!(SegIndex::class(32), 5);
        assert_eq!(SegIndex::class(63), 5);
        assert_eq!(SegIndex::class(64), 6);
        assert_eq!(SegIndex::class(usize::MAX), CLASSES - 1);
    }

    #[test]
    fn takes_from_own_class_then_the_lowest_higher_class() {
        let layout = std::alloc::Layout::from_size_align(1 << 16, 4096).unwrap();
        // SAFETY: non-zero size.
        let mem = unsafe { std::alloc::alloc(layout) };
        assert!(!mem.is_null());
        let mut h = Segregated::new();
        // SAFETY: `mem` outlives the heap (freed at the end of the test).
        unsafe { h.add_region(Region::from_raw_parts(mem, 1 << 16).unwrap()) }.unwrap();
        // Free holes of 288 (class 8), 160 and 208 (class 7), separated.
        let mut holes = std::vec::Vec::new();
        for size in [288usize, 160, 208] {
            holes.push(h.allocate(size - WORD, 16).unwrap());
            h.allocate(16, 16).unwrap();
        }
        for p in &holes {
            // SAFETY: live block.
            unsafe { h.deallocate(*p) }.unwrap();
        }
        h.check().unwrap();
        // 176 bytes: class 7 holds 208 (fits) and 160 (does not): own class.
        assert_eq!(h.allocate(176 - WORD, 16).unwrap(), holes[2]);
        // 200 bytes: class 7 now holds only 160; the lowest higher class
        // with a block is class 8: the 288 hole, not the big tail.
        assert_eq!(h.allocate(200 - WORD, 16).unwrap(), holes[0]);
        h.check().unwrap();
        let _ = h;
        // SAFETY: allocated above with this layout; the heap is not used
        // after this point.
        unsafe { std::alloc::dealloc(mem, layout) };
    }
}
