//! # Indexed fits: first, next, best and worst fit in O(log n), exact
//!
//! The four textbook fit policies of [`FreeList`](super::free_list),
//! without its scan. The free blocks are the nodes of one balanced tree
//! (AVL, intrusive: the nodes live in the free blocks, see
//! [`blocks::tree`](super::blocks)), chosen by the policy:
//!
//! - **First, next and worst fit**: a tree in address order whose every
//!   node also stores the largest free size in its subtree (Stephenson's
//!   "fast fits", 1983). First fit descends to the leftmost subtree whose
//!   maximum holds the request; next fit does the same among the blocks at
//!   or after the rover (the end of the block it chose last, so the
//!   remainder of that block comes last in the next search) and wraps to
//!   the first fit; worst fit is the first fit of the root's
//!   maximum: the largest block, the lowest-addressed of equals.
//! - **Best fit**: a tree in (size, address) order; the lower bound of the
//!   request: the smallest block that fits, the lowest-addressed of equals.
//!
//! ```text
//!                 [0x3000  96 | max 4096]
//!                 /                      \
//!   [0x1000 512 | max 512]        [0x8000 4096 | max 4096]
//!           \
//!     [0x2000 48 | max 48]
//!   first fit(200): left subtree max 512 >= 200 -> 0x1000 (its left is empty)
//!   worst fit: root max 4096 -> the first block of 4096 bytes: 0x8000
//! ```
//!
//! Each choice is exactly what a scan of the free blocks in address order
//! would pick (the property suite checks it against that scan), so these
//! are the address-ordered fits of the literature; the LIFO-list scans
//! remain as the `*-scan` teaching strategies
//! ([`FreeList`](super::free_list::FreeList)).
//!
//! **Time**: allocate, free and resize O(log free blocks) (a descent, then
//! a removal or insertion that rebalances its path); the scans are
//! O(free blocks).
//!
//! **Space**: as the block layer, but a free block must hold a tree node
//! (header, left, right, max, footer): the smallest block is 48 bytes on a
//! 64-bit target where the lists need 32, so a request of up to 24 bytes
//! takes 48 and smaller remainders stay in the block they were cut from.
//!
//! **Drawbacks**: every free and allocation walks a path of the tree
//! (about `1.44 log2 n` nodes at worst), checking each link, and rewrites
//! the nodes whose height or maximum changed. A block cut for an
//! allocation or merged on free keeps its place in the address tree
//! ([`FreeIndex::replace`]: no rotation), the removal or replacement of a
//! block a search found reuses the search's path, and an insertion reads
//! a node's other child only where the node grows; still the walks cost
//! about three times TLSF's instructions: on the region benchmark these
//! fits run at 5.5–7.7 M operations per second, a fifth of TLSF's, and
//! first fit at 0.4x the LIFO scan's, which usually stops at the head of
//! its list (docs/BENCHMARKS.md). Worst fit eats the large blocks first
//! (56 % heap efficiency there, as its scan).
//!
//! Invariants (checked by `check`, in addition to the block layer's): those
//! of [`blocks::tree`](super::blocks): key order, AVL balance, subtree
//! maxima, every free block a node exactly once. The rover is an address,
//! not a link: nothing is read through it.

use super::blocks::tree::{ByAddress, BySize, Order, Path, Tree, NODE_BLOCK};
use super::blocks::{size_of_block, BoundaryHeap, Checked, Env, FreeIndex, Trusting};
use super::free_list::FitPolicy;
use crate::heap::CheckError;

/// The free blocks of a [`FitPolicy`], in a balanced tree.
pub struct FitTree {
    policy: FitPolicy,
    tree: Tree,
    /// Next fit: the end of the block chosen last, before its cut (0:
    /// none yet): the next search starts there.
    rover: usize,
    /// The block the last [`find`](FreeIndex::find) chose, while the tree
    /// is unchanged since (else 0): `path` leads to it, so the removal or
    /// replacement that follows need not walk the tree again.
    found: usize,
    path: Path,
    /// Where blocks can lie: every link is checked against it.
    env: Env,
}

/// A boundary-tag heap whose fit policy finds its block in O(log n), in
/// profile `P` ([`Checked`] or [`Trusting`]).
pub type IndexedFit<P = Checked> = BoundaryHeap<FitTree, P>;

impl FitTree {
    /// An empty index for `policy`.
    pub const fn new(policy: FitPolicy) -> Self {
        FitTree {
            policy,
            tree: Tree::new(),
            rover: 0,
            found: 0,
            path: Path::new(),
            env: Env::EMPTY,
        }
    }

    /// The policy.
    pub fn policy(&self) -> FitPolicy {
        self.policy
    }

    /// Best fit's tree is in size order, the others' in address order.
    #[inline(always)]
    fn by_size(&self) -> bool {
        self.policy == FitPolicy::Best
    }

    /// [`FreeIndex::remove`] in the order `O`: along the path the last
    /// search recorded if it found `b`.
    ///
    /// # Safety
    /// As for [`FreeIndex::remove`].
    #[inline(always)]
    unsafe fn remove_in<O: Order, const MULTI: bool>(&mut self, b: usize, size: usize) {
        let found = core::mem::replace(&mut self.found, 0);
        // SAFETY: `b` is in the tree with `size`; `path` leads to it if the
        // last search found it and the tree is unchanged since.
        unsafe {
            if found == b {
                self.tree
                    .remove_found::<O, MULTI>(&mut self.path, b, size, &self.env);
            } else {
                self.tree.remove::<O, MULTI>(b, size, &self.env);
            }
        }
    }

    /// The search of the policy, its path left in `self.path` (0: none).
    ///
    /// # Safety
    /// As for [`FreeIndex::take`].
    #[inline(always)]
    unsafe fn search<const MULTI: bool>(&mut self, size: usize) -> usize {
        let (env, path) = (&self.env, &mut self.path);
        path.clear();
        // SAFETY: the tree is consistent (module invariants).
        unsafe {
            match self.policy {
                FitPolicy::First => self.tree.first_fit::<MULTI>(size, path, env),
                FitPolicy::Next => self.tree.next_fit::<MULTI>(size, self.rover, path, env),
                FitPolicy::Best => self.tree.best_fit::<MULTI>(size, path, env),
                FitPolicy::Worst => self.tree.worst_fit::<MULTI>(size, path, env),
            }
        }
    }
}

impl FreeIndex for FitTree {
    const MIN_BLOCK: usize = NODE_BLOCK;

    fn name(&self) -> &'static str {
        self.policy.name()
    }

    fn set_env(&mut self, env: Env) {
        self.env = env;
    }

    #[inline]
    unsafe fn insert(&mut self, b: usize, size: usize) {
        self.found = 0;
        // The trait says nothing of the region count here: the checks of
        // a multi-region heap are exact for one region too (they cost
        // more only when a link fails the hot span's test).
        // SAFETY: `b` is a free block not in the index (caller's contract).
        unsafe {
            if self.by_size() {
                self.tree.insert::<BySize, true>(b, size, &self.env);
            } else {
                self.tree.insert::<ByAddress, true>(b, size, &self.env);
            }
        }
    }

    #[inline]
    unsafe fn remove<const MULTI: bool>(&mut self, b: usize, size: usize) {
        // SAFETY: `b` is in the index with `size` (caller's contract).
        unsafe {
            if self.by_size() {
                self.remove_in::<BySize, MULTI>(b, size);
            } else {
                self.remove_in::<ByAddress, MULTI>(b, size);
            }
        }
    }

    unsafe fn take<const MULTI: bool>(&mut self, size: usize) -> Option<usize> {
        // SAFETY: forwarded.
        let b = unsafe { self.find::<MULTI>(size) }?;
        // SAFETY: `b` is a node of the tree, so a free block; `find` left
        // the path to it.
        unsafe { self.remove::<MULTI>(b, size_of_block(b)) };
        Some(b)
    }

    /// The address order keeps a block that is cut or merged in its place;
    /// the size order moves it.
    #[inline(always)]
    fn replaces(&self) -> bool {
        !self.by_size()
    }

    unsafe fn find<const MULTI: bool>(&mut self, size: usize) -> Option<usize> {
        // SAFETY: forwarded.
        let b = unsafe { self.search::<MULTI>(size) };
        self.found = b;
        if b == 0 {
            return None;
        }
        if self.policy == FitPolicy::Next {
            // SAFETY: `b` is a node, a header slot of the heap. (A damaged
            // size only moves the rover: nothing is read through it.)
            self.rover = b.wrapping_add(unsafe { size_of_block(b) });
        }
        Some(b)
    }

    unsafe fn replace<const MULTI: bool>(
        &mut self,
        old: usize,
        _old_size: usize,
        new: usize,
        new_size: usize,
    ) {
        // Only called when `replaces`: address order.
        let found = core::mem::replace(&mut self.found, 0);
        // SAFETY: forwarded; `path` leads to `old` if the last search
        // found it and the tree is unchanged since.
        unsafe {
            if found == old {
                self.tree
                    .replace_found::<MULTI>(&self.path, old, new, new_size, &self.env);
            } else {
                self.tree.replace::<MULTI>(old, new, new_size, &self.env);
            }
        }
    }

    fn check(
        &self,
        budget: usize,
        visit: &mut dyn FnMut(usize) -> Result<usize, CheckError>,
    ) -> Result<usize, CheckError> {
        if self.by_size() {
            self.tree.check::<BySize>(budget, visit)
        } else {
            self.tree.check::<ByAddress>(budget, visit)
        }
    }

    fn contains(&self, b: usize, size: usize, _budget: usize) -> bool {
        if self.by_size() {
            self.tree.contains::<BySize>(b, size)
        } else {
            self.tree.contains::<ByAddress>(b, size)
        }
    }
}

impl BoundaryHeap<FitTree> {
    /// An empty heap with `policy` in O(log n); give it memory with
    /// [`RegionHeap::add_region`](crate::RegionHeap::add_region).
    pub const fn new(policy: FitPolicy) -> Self {
        Self::with_index(FitTree::new(policy))
    }
}

impl BoundaryHeap<FitTree, Trusting> {
    /// [`IndexedFit::new`] in the [`Trusting`] profile.
    pub const fn trusting(policy: FitPolicy) -> Self {
        Self::with_index(FitTree::new(policy))
    }
}
