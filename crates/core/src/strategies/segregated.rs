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
//! **allocate(n)**: search the first [`SEARCH`] (8) blocks of `n`'s own
//! class first fit (its blocks may be smaller than `n`); if none fits,
//! every block of a *higher* non-empty class does, so take the head of the
//! lowest one (one bit scan of the bitmap masked above `n`'s class). Only
//! when no higher class has a block is the rest of the own class searched,
//! so an allocation fails only when no free block fits. Split and coalesce
//! as in [`blocks`](super::blocks).
//!
//! **Time**: free O(1); allocate O(1) (at most [`SEARCH`] blocks looked
//! at, then one bit scan) while a block of a higher class is free, else
//! O(length of one class list): it approximates best fit (a block from the
//! smallest class that surely fits) without scanning the whole heap. The
//! bound matters: a churn of strings of varied lengths (Perl's hashes)
//! leaves a class list long with blocks too small for the larger requests
//! of the class, and searching the whole list made `segregated` 5x slower
//! than glibc's malloc there.
//!
//! **Space**: one word per used block (see the block layer) and one list
//! head per bit of a word in the heap.
//!
//! **Drawbacks**: classes are a factor of two wide, so the block taken from
//! a higher class may be up to twice the request (the rest is split off,
//! not lost, but big blocks get cut up for small requests), and a block of
//! the own class that fits is missed when it lies past the first
//! [`SEARCH`]. [`Tlsf`](super::tlsf::Tlsf) refines each power of two into
//! more lists and drops the search within a class.
//!
//! Invariants (checked by `check`, in addition to the block layer's):
//! bit `k` of the bitmap is set iff list `k` is non-empty; every block on
//! list `k` has `2^k <= size < 2^(k+1)`; lists are consistently doubly linked.

use super::blocks::{list, size_of_block, BoundaryHeap, Checked, Env, FreeIndex, Trusting};
use crate::heap::CheckError;

#[cfg(test)]
extern crate std;

#[cfg(test)]
std::thread_local! {
    /// Blocks of the request's own class that `take` looked at (tests
    /// read it to check the bound on the search; per thread, so tests
    /// running in parallel do not mix their counts).
    static VISITED: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
}

const CLASSES: usize = usize::BITS as usize;

/// How many blocks of the request's own class `take` looks at before it
/// takes a block of a higher class (all of them when no higher class has
/// one). 2, 8 and 32 measured alike (the Perl churn of
/// `scripts/bench-programs.sh` and `region-bench`'s efficiency; see
/// docs/BENCHMARKS.md).
pub const SEARCH: usize = 8;

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

    /// The first block of at least `size` bytes on a class list among the
    /// `limit` blocks from `b` on, taken out of the index (`Ok`), or where
    /// the search stopped: the next block not looked at, or null (`Err`).
    ///
    /// # Safety
    /// `b` must be null or a block of a list of the index.
    #[inline(always)]
    unsafe fn first_fit<const MULTI: bool>(
        &mut self,
        mut b: usize,
        size: usize,
        mut limit: usize,
    ) -> Result<usize, usize> {
        while b != 0 && limit > 0 {
            #[cfg(test)]
            VISITED.with(|v| v.set(v.get() + 1));
            // SAFETY: `b` is on a list, so it is a free block.
            if unsafe { size_of_block(b) } >= size {
                // SAFETY: as above.
                unsafe { self.remove::<MULTI>(b, size) };
                return Ok(b);
            }
            // SAFETY: as above.
            b = unsafe { list::next_checked::<MULTI>(b, &self.env, self.env.checks()) };
            limit -= 1;
        }
        Err(b)
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
        // First fit among the first `SEARCH` blocks of the request's own
        // class.
        // SAFETY: `heads[c]` is null or the head of list `c`.
        let rest = match unsafe { self.first_fit::<MULTI>(self.heads[c], size, SEARCH) } {
            Ok(b) => return Some(b),
            Err(rest) => rest,
        };
        // Any block of a higher class fits. `size < 2^63`, so `c + 1 < BITS`.
        let higher = self.bitmap & (usize::MAX << (c + 1));
        if higher == 0 {
            // None does: the rest of the own class is the last chance.
            // SAFETY: `rest` is null or a block of list `c`.
            return unsafe { self.first_fit::<MULTI>(rest, size, usize::MAX) }.ok();
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

    /// Runs `f` on a segregated heap over a fresh region of `len` bytes.
    fn with_heap(len: usize, f: impl FnOnce(&mut Segregated)) {
        let layout = std::alloc::Layout::from_size_align(len, 4096).unwrap();
        // SAFETY: non-zero size.
        let mem = unsafe { std::alloc::alloc(layout) };
        assert!(!mem.is_null());
        let mut h = Segregated::new();
        // SAFETY: `mem` outlives the heap (freed below, after its last use).
        unsafe { h.add_region(Region::from_raw_parts(mem, len).unwrap()) }.unwrap();
        f(&mut h);
        let _ = h;
        // SAFETY: allocated above with this layout; the heap is gone.
        unsafe { std::alloc::dealloc(mem, layout) };
    }

    /// Frees every block of `blocks` (all live).
    fn free_all(h: &mut Segregated, blocks: &[core::ptr::NonNull<u8>]) {
        for p in blocks {
            // SAFETY: live block (caller's contract).
            unsafe { h.deallocate(*p) }.unwrap();
        }
    }

    #[test]
    fn classes() {
        assert_eq!(SegIndex::class(32), 5);
        assert_eq!(SegIndex::class(63), 5);
        assert_eq!(SegIndex::class(64), 6);
        assert_eq!(SegIndex::class(usize::MAX), CLASSES - 1);
    }

    #[test]
    fn takes_from_own_class_then_the_lowest_higher_class() {
        with_heap(1 << 16, |h| {
            // Free holes of 288 (class 8), 160 and 208 (class 7), separated.
            let mut holes = std::vec::Vec::new();
            for size in [288usize, 160, 208] {
                holes.push(h.allocate(size - WORD, 16).unwrap());
                h.allocate(16, 16).unwrap();
            }
            free_all(h, &holes);
            h.check().unwrap();
            // 176 bytes: class 7 holds 208 (fits) and 160 (does not): own class.
            assert_eq!(h.allocate(176 - WORD, 16).unwrap(), holes[2]);
            // 200 bytes: class 7 now holds only 160; the lowest higher class
            // with a block is class 8: the 288 hole, not the big tail.
            assert_eq!(h.allocate(200 - WORD, 16).unwrap(), holes[0]);
            h.check().unwrap();
        });
    }

    // The bound is a few blocks, not a list's length.
    const _: () = assert!(SEARCH <= 32);

    /// The search of the request's own class looks at a bounded number of
    /// its blocks while a higher class has one (which surely fits): a list
    /// of many blocks too small for the request (a churn of strings of
    /// varied lengths leaves them) is not walked on every allocation.
    #[test]
    fn own_class_search_is_bounded_while_a_higher_class_fits() {
        const HOLES: usize = 500;
        with_heap(1 << 20, |h| {
            // HOLES free blocks of 144 bytes (class 7), separated by used
            // blocks; the tail of the region is free (a higher class).
            let mut holes = std::vec::Vec::new();
            for _ in 0..HOLES {
                holes.push(h.allocate(144 - WORD, 16).unwrap());
                h.allocate(16, 16).unwrap();
            }
            free_all(h, &holes);
            // 240 bytes: class 7, where no hole fits.
            VISITED.with(|v| v.set(0));
            let p = h.allocate(240 - WORD, 16).unwrap();
            let visited = VISITED.with(|v| v.get());
            assert!(!holes.contains(&p));
            assert!(
                visited <= SEARCH,
                "visited {visited} blocks of a class list of {HOLES} too small for the request"
            );
            h.check().unwrap();
        });
    }

    /// With no block in a higher class, the whole own class is searched:
    /// an allocation fails only when no free block fits.
    #[test]
    fn own_class_is_searched_to_its_end_when_no_higher_class_fits() {
        with_heap(1 << 16, |h| {
            // One 240-byte block, then 144-byte holes (class 7 both) separated
            // by used blocks until the region is full.
            let big = h.allocate(240 - WORD, 16).unwrap();
            h.allocate(16, 16).unwrap();
            let mut holes = std::vec::Vec::new();
            while let Some(p) = h.allocate(144 - WORD, 16) {
                holes.push(p);
                if h.allocate(16, 16).is_none() {
                    break;
                }
            }
            while h.allocate(16, 16).is_some() {}
            assert!(holes.len() > 2 * SEARCH);
            // Freed first, the 240-byte block ends up last on its list.
            free_all(h, &[big]);
            free_all(h, &holes);
            h.check().unwrap();
            assert_eq!(h.allocate(240 - WORD, 16).unwrap(), big);
            h.check().unwrap();
        });
    }
}
