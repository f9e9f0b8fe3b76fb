//! # Free list: one explicit list, four fit policies, scanned
//!
//! The teaching form of the four fits, run-time names `first-fit-scan`,
//! `next-fit-scan`, `best-fit-scan`, `worst-fit-scan`: the search is the
//! loop of the textbook. [`IndexedFit`](super::fit_tree::IndexedFit) (the
//! run-time `first-fit` …) makes the same choices as a scan in address
//! order, in O(log n).
//!
//! Every free block is on one doubly linked list (links inside the free
//! blocks themselves, see [`blocks`](super::blocks)). Freeing pushes the
//! coalesced block on the front (LIFO order); allocating walks the list and
//! picks a block by the [`FitPolicy`] chosen at construction:
//!
//! ```text
//!   head -> [ 96 ] <-> [ 512 ] <-> [ 48 ] <-> [ 160 ] <-> [ 4096 ]
//!   allocate(150):        ^first            ^best        ^worst
//!   next fit: like first fit, but starts where the last search stopped (the
//!   rover) and wraps around once.
//! ```
//!
//! - **First fit**: the first block that is big enough. Cheap when small
//!   blocks are plentiful near the front; tends to leave small splinters
//!   near the head of the list. On a LIFO list it also carves small
//!   requests out of the large blocks freed last: on the region benchmark
//!   it fills 78 % of the region before the first refusal, against 97 %
//!   for the same search over an address-ordered list, whose O(n) insert
//!   made it 27 times slower (docs/BENCHMARKS.md).
//! - **Next fit**: first fit from a roving pointer, spreading allocations
//!   over the heap; usually more fragmentation than first fit.
//! - **Best fit**: the smallest block that fits (stops early at an exact
//!   fit); the least wasted space per allocation, always a full scan.
//! - **Worst fit**: the largest block, leaving the largest remainder; a full
//!   scan, and it eats the big blocks first.
//!
//! **Time**: allocate O(free blocks) (first/next fit stop at the first fit,
//! best/worst scan everything); free O(1) (coalesce, push); resize O(1).
//!
//! **Space**: as the block layer: one word per used block, 16-byte payload
//! granules, [`MIN_BLOCK`](super::blocks::MIN_BLOCK) bytes for a free block.
//!
//! **Drawbacks**: the linear search makes allocation slow once the heap has
//! many free blocks; a teaching strategy and a baseline, not a production
//! malloc. See [`IndexedFit`](super::fit_tree::IndexedFit) for the same
//! policies in O(log n), [`Tlsf`](super::tlsf::Tlsf) for a good fit in O(1).
//!
//! Invariants (checked by `check`, in addition to the block layer's): the
//! list is consistently doubly linked and holds exactly the free blocks,
//! `len` of them; the rover is 0 or a block on the list.
//!
//! Every link a search follows is checked (see
//! [`blocks`](super::blocks)), and no search follows more than `len` links:
//! a loop closed by a write after free is reported, not spun in.

use super::blocks::{list, size_of_block, BoundaryHeap, Checked, Env, FreeIndex, Trusting};
use crate::heap::CheckError;

/// How [`FreeList`] chooses among the free blocks that fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FitPolicy {
    /// The first block on the list that fits.
    First,
    /// The first block that fits, starting after the last one chosen.
    Next,
    /// The smallest block that fits.
    Best,
    /// The largest block, if it fits.
    Worst,
}

impl FitPolicy {
    /// The name of the indexed strategy
    /// ([`IndexedFit`](super::fit_tree::IndexedFit)): `"first-fit"`, …
    pub const fn name(self) -> &'static str {
        match self {
            FitPolicy::First => "first-fit",
            FitPolicy::Next => "next-fit",
            FitPolicy::Best => "best-fit",
            FitPolicy::Worst => "worst-fit",
        }
    }

    /// The name of the scanning strategy ([`FreeList`]):
    /// `"first-fit-scan"`, …
    pub const fn scan_name(self) -> &'static str {
        match self {
            FitPolicy::First => "first-fit-scan",
            FitPolicy::Next => "next-fit-scan",
            FitPolicy::Best => "best-fit-scan",
            FitPolicy::Worst => "worst-fit-scan",
        }
    }
}

/// One free list searched by a [`FitPolicy`].
pub struct FitIndex {
    policy: FitPolicy,
    /// The one list (an array so it shares the list code of the others).
    head: [usize; 1],
    /// Next fit: where the next search starts (0: at the head).
    rover: usize,
    /// Blocks on the list: no search follows more links than this.
    len: usize,
    /// Where blocks can lie: every link is checked against it.
    env: Env,
}

/// A boundary-tag heap with one free list and a fit policy, in profile
/// `P` ([`Checked`] or [`Trusting`]).
pub type FreeList<P = Checked> = BoundaryHeap<FitIndex, P>;

impl FitIndex {
    /// An empty list with `policy`.
    pub const fn new(policy: FitPolicy) -> Self {
        FitIndex {
            policy,
            head: [0],
            rover: 0,
            len: 0,
            env: Env::EMPTY,
        }
    }

    /// The policy.
    pub fn policy(&self) -> FitPolicy {
        self.policy
    }

    /// First block of at least `size` bytes from `from` up to (not
    /// including) `to` (0: the end of the list).
    ///
    /// # Safety
    /// `from` must be 0 or on the list.
    unsafe fn first_from<const MULTI: bool>(
        &self,
        from: usize,
        to: usize,
        size: usize,
    ) -> Option<usize> {
        let mut b = from;
        let mut budget = self.len;
        while b != 0 && b != to {
            // SAFETY: `b` is on the list, so it is a free block.
            unsafe {
                if size_of_block(b) >= size {
                    return Some(b);
                }
                b = list::next_checked::<MULTI>(b, &self.env, self.env.checks());
            }
            budget = Self::step(budget, b);
        }
        None
    }

    /// The block a full scan prefers: `better(candidate, current)`.
    ///
    /// # Safety
    /// The list must be consistent.
    unsafe fn scan<const MULTI: bool>(&self, size: usize, best: bool) -> Option<usize> {
        let mut found = 0;
        let mut found_size = 0;
        let mut b = self.head[0];
        let mut budget = self.len;
        while b != 0 {
            // SAFETY: `b` is on the list, so it is a free block.
            let s = unsafe { size_of_block(b) };
            if s >= size {
                if best && s == size {
                    return Some(b);
                }
                let better = found == 0 || if best { s < found_size } else { s > found_size };
                if better {
                    found = b;
                    found_size = s;
                }
            }
            // SAFETY: as above.
            b = unsafe { list::next_checked::<MULTI>(b, &self.env, self.env.checks()) };
            budget = Self::step(budget, b);
        }
        (found != 0).then_some(found)
    }

    /// Count one link followed to `b` against a search's `budget` (the
    /// list's length). Links that check out both ways cannot form a cycle
    /// through the head, but next fit starts at the rover, and a write
    /// after free over two blocks can close a loop that passes every link
    /// check there: a search that outlasts the list reports it.
    #[inline(always)]
    fn step(budget: usize, b: usize) -> usize {
        if budget == 0 {
            Self::cycle(b);
        }
        budget - 1
    }

    #[cold]
    #[inline(never)]
    fn cycle(b: usize) -> ! {
        crate::corruption::report(
            b + super::blocks::WORD,
            "the free list loops back on itself here: its links were overwritten \
             (a write after free?)",
        )
    }
}

impl FreeIndex for FitIndex {
    fn name(&self) -> &'static str {
        self.policy.scan_name()
    }

    fn set_env(&mut self, env: Env) {
        self.env = env;
    }

    #[inline]
    unsafe fn insert(&mut self, b: usize, _size: usize) {
        // SAFETY: `b` is a free block on no list (caller's contract).
        unsafe { list::push(&mut self.head, 0, b) };
        self.len += 1;
    }

    #[inline]
    unsafe fn remove<const MULTI: bool>(&mut self, b: usize, _size: usize) {
        if self.rover == b {
            // SAFETY: `b` is on the list.
            self.rover = unsafe { list::next_checked::<MULTI>(b, &self.env, self.env.checks()) };
        }
        // SAFETY: `b` is on the list (caller's contract).
        unsafe { list::unlink::<MULTI>(&mut self.head, b, &self.env, self.env.checks()) };
        self.len -= 1;
    }

    unsafe fn take<const MULTI: bool>(&mut self, size: usize) -> Option<usize> {
        // SAFETY: the list and the rover are consistent (module invariants).
        let b = unsafe {
            match self.policy {
                FitPolicy::First => self.first_from::<MULTI>(self.head[0], 0, size),
                FitPolicy::Next => {
                    let start = if self.rover != 0 {
                        self.rover
                    } else {
                        self.head[0]
                    };
                    self.first_from::<MULTI>(start, 0, size)
                        .or_else(|| self.first_from::<MULTI>(self.head[0], start, size))
                }
                FitPolicy::Best => self.scan::<MULTI>(size, true),
                FitPolicy::Worst => self.scan::<MULTI>(size, false),
            }
        }?;
        if self.policy == FitPolicy::Next {
            // `remove` moves the rover past the block it removes.
            self.rover = b;
        }
        // SAFETY: `b` is on the list.
        unsafe { self.remove::<MULTI>(b, 0) };
        Some(b)
    }

    fn check(
        &self,
        budget: usize,
        visit: &mut dyn FnMut(usize) -> Result<usize, CheckError>,
    ) -> Result<usize, CheckError> {
        let mut rover_seen = self.rover == 0;
        let n = list::check(&self.head, 0, budget, &mut |b| {
            rover_seen |= b == self.rover;
            visit(b).map(|_| ())
        })?;
        if !rover_seen {
            return Err(CheckError::new(
                self.rover,
                "next-fit rover is not on the free list",
            ));
        }
        if n != self.len {
            return Err(CheckError::new(0, "free list length != its count"));
        }
        Ok(n)
    }

    fn contains(&self, b: usize, _size: usize, budget: usize) -> bool {
        list::contains(&self.head, 0, b, budget)
    }
}

impl BoundaryHeap<FitIndex> {
    /// An empty free-list heap with `policy`; give it memory with
    /// [`RegionHeap::add_region`](crate::RegionHeap::add_region).
    pub const fn new(policy: FitPolicy) -> Self {
        Self::with_index(FitIndex::new(policy))
    }
}

impl BoundaryHeap<FitIndex, Trusting> {
    /// [`FreeList::new`] in the [`Trusting`] profile.
    pub const fn trusting(policy: FitPolicy) -> Self {
        Self::with_index(FitIndex::new(policy))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::super::blocks::WORD;
    use super::*;
    use crate::region::Region;
    use crate::RegionHeap;
    use core::ptr::NonNull;
    use std::vec::Vec;

    struct Mem(*mut u8, std::alloc::Layout);
    impl Mem {
        fn new(len: usize) -> Self {
            let l = std::alloc::Layout::from_size_align(len, 4096).unwrap();
            // SAFETY: non-zero size.
            let p = unsafe { std::alloc::alloc(l) };
            assert!(!p.is_null());
            Mem(p, l)
        }
    }
    impl Drop for Mem {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with this layout.
            unsafe { std::alloc::dealloc(self.0, self.1) }
        }
    }

    /// A heap whose free list holds blocks with payloads of 300, 100, 200
    /// and 150 bytes (plus the tail), separated by used blocks. Returns the
    /// heap and the free blocks' payload addresses in that order.
    fn holes(mem: &Mem, policy: FitPolicy) -> (FreeList, Vec<usize>) {
        let mut h = FreeList::new(policy);
        // SAFETY: `mem` outlives the heap in each test.
        unsafe { h.add_region(Region::from_raw_parts(mem.0, mem.1.size()).unwrap()) }.unwrap();
        let mut holes = Vec::new();
        for size in [300usize, 100, 200, 150] {
            let p = h.allocate(size - WORD, 16).unwrap();
            let _sep = h.allocate(16, 16).unwrap();
            holes.push(p);
        }
        for p in &holes {
            // SAFETY: live block.
            unsafe { h.deallocate(*p) }.unwrap();
        }
        h.check().unwrap();
        (h, holes.iter().map(|p| p.as_ptr() as usize).collect())
    }

    fn payload(p: NonNull<u8>) -> usize {
        p.as_ptr() as usize
    }

    #[test]
    fn best_fit_picks_the_smallest_fitting_block() {
        let mem = Mem::new(1 << 16);
        let (mut h, holes) = holes(&mem, FitPolicy::Best);
        // 140 fits 300, 200 and 150 (and the tail): best is the 150 hole.
        assert_eq!(payload(h.allocate(140 - WORD, 16).unwrap()), holes[3]);
        // An exact fit for the 200 hole.
        assert_eq!(payload(h.allocate(200 - WORD, 16).unwrap()), holes[2]);
        h.check().unwrap();
    }

    #[test]
    fn worst_fit_picks_the_largest_block() {
        let mem = Mem::new(1 << 16);
        let (mut h, holes) = holes(&mem, FitPolicy::Worst);
        let p = payload(h.allocate(40, 16).unwrap());
        // The tail block (tens of KiB) is the largest; none of the holes.
        assert!(!holes.contains(&p));
        assert!(p > holes[3]);
        h.check().unwrap();
    }

    #[test]
    fn first_fit_takes_the_first_on_the_list() {
        let mem = Mem::new(1 << 16);
        let (mut h, holes) = holes(&mem, FitPolicy::First);
        // LIFO list: 150 (freed last), 200, 100, 300, tail.
        assert_eq!(payload(h.allocate(180 - WORD, 16).unwrap()), holes[2]);
        assert_eq!(payload(h.allocate(90 - WORD, 16).unwrap()), holes[3]);
        h.check().unwrap();
    }

    #[test]
    fn next_fit_resumes_after_the_last_choice() {
        let mem = Mem::new(1 << 16);
        let (mut h, holes) = holes(&mem, FitPolicy::Next);
        // List: 150, 200, 100, 300, tail. The first 90-byte request takes
        // the 150 hole (split: the remainder goes to the front of the list).
        // The rover stays at the 200 hole, so the next request takes it, not
        // the fresh remainder at the head that first fit would pick.
        assert_eq!(payload(h.allocate(90 - WORD, 16).unwrap()), holes[3]);
        assert_eq!(payload(h.allocate(48 - WORD, 16).unwrap()), holes[2]);
        assert_eq!(payload(h.allocate(90 - WORD, 16).unwrap()), holes[1]);
        h.check().unwrap();
        // The rover is now at the 300 hole, which first fit would reach
        // only after the remainders at the head.
        assert_eq!(payload(h.allocate(280, 16).unwrap()), holes[0]);
        let big = payload(h.allocate(8192, 16).unwrap());
        assert!(big > holes[3]);
        h.check().unwrap();
    }

    #[test]
    fn names() {
        for (p, n) in [
            (FitPolicy::First, "first-fit-scan"),
            (FitPolicy::Next, "next-fit-scan"),
            (FitPolicy::Best, "best-fit-scan"),
            (FitPolicy::Worst, "worst-fit-scan"),
        ] {
            assert_eq!(FreeList::new(p).name(), n);
        }
    }
}
