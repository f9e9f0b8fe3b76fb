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
//!   or after the rover (the address of the block it chose last) and
//!   wraps to the first fit; worst fit is the first fit of the root's
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
//! ([`FreeIndex::replace`]: one walk, no rotation), but the walks still
//! cost about four times TLSF's instructions: on the region benchmark
//! these fits run at 4–6 M operations per second, a fifth of TLSF's,
//! and first fit at a third of the LIFO scan's, which usually stops at
//! the head of its list (docs/BENCHMARKS.md). Next fit in address order
//! fragments (its rover cuts every large block it passes: 62 % heap
//! efficiency there, against 94 % for the LIFO scan).
//!
//! Invariants (checked by `check`, in addition to the block layer's): those
//! of [`blocks::tree`](super::blocks): key order, AVL balance, subtree
//! maxima, every free block a node exactly once. The rover is an address,
//! not a link: nothing is read through it.

use super::blocks::tree::{Order, Tree, NODE_BLOCK};
use super::blocks::{size_of_block, BoundaryHeap, Checked, Env, FreeIndex, Trusting};
use super::free_list::FitPolicy;
use crate::heap::CheckError;

/// The free blocks of a [`FitPolicy`], in a balanced tree.
pub struct FitTree {
    policy: FitPolicy,
    tree: Tree,
    /// Next fit: the address of the block chosen last (0: none yet).
    rover: usize,
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
            tree: Tree::new(match policy {
                FitPolicy::Best => Order::Size,
                _ => Order::Address,
            }),
            rover: 0,
            env: Env::EMPTY,
        }
    }

    /// The policy.
    pub fn policy(&self) -> FitPolicy {
        self.policy
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
        // The trait says nothing of the region count here: the checks of
        // a multi-region heap are exact for one region too (they cost
        // more only when a link fails the hot span's test).
        // SAFETY: `b` is a free block not in the index (caller's contract).
        unsafe { self.tree.insert::<true>(b, size, &self.env) };
    }

    #[inline]
    unsafe fn remove<const MULTI: bool>(&mut self, b: usize, size: usize) {
        // SAFETY: `b` is in the index with `size` (caller's contract).
        unsafe { self.tree.remove::<MULTI>(b, size, &self.env) };
    }

    unsafe fn take<const MULTI: bool>(&mut self, size: usize) -> Option<usize> {
        // SAFETY: forwarded.
        let b = unsafe { self.find::<MULTI>(size) }?;
        // SAFETY: `b` is a node of the tree, so a free block.
        unsafe {
            let s = size_of_block(b);
            self.tree.remove::<MULTI>(b, s, &self.env);
        }
        Some(b)
    }

    /// The address order keeps a block that is cut or merged in its place;
    /// the size order moves it.
    #[inline(always)]
    fn replaces(&self) -> bool {
        self.policy != FitPolicy::Best
    }

    unsafe fn find<const MULTI: bool>(&mut self, size: usize) -> Option<usize> {
        let env = &self.env;
        // SAFETY: the tree is consistent (module invariants).
        let b = unsafe {
            match self.policy {
                FitPolicy::First => self.tree.first_fit::<MULTI>(size, env),
                FitPolicy::Next => self.tree.next_fit::<MULTI>(size, self.rover, env),
                FitPolicy::Best => self.tree.best_fit::<MULTI>(size, env),
                FitPolicy::Worst => self.tree.worst_fit::<MULTI>(size, env),
            }
        };
        if b == 0 {
            return None;
        }
        self.rover = b;
        Some(b)
    }

    unsafe fn replace<const MULTI: bool>(
        &mut self,
        old: usize,
        old_size: usize,
        new: usize,
        new_size: usize,
    ) {
        // SAFETY: forwarded (only called when `replaces`: address order).
        unsafe {
            self.tree
                .replace::<MULTI>(old, old_size, new, new_size, &self.env)
        };
    }

    fn check(
        &self,
        budget: usize,
        visit: &mut dyn FnMut(usize) -> Result<usize, CheckError>,
    ) -> Result<usize, CheckError> {
        self.tree.check(budget, visit)
    }

    fn contains(&self, b: usize, size: usize, _budget: usize) -> bool {
        self.tree.contains(b, size)
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
