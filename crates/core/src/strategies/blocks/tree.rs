//! Intrusive AVL trees of free blocks, each node carrying the largest free
//! size in its subtree (the index of [`IndexedFit`](super::super::fit_tree)).
//!
//! ## Glossary
//!
//! - **node**: a free block; its three words after the header hold the
//!   left and right children and the subtree's largest block size, with
//!   the subtree's height packed into their spare low bits (a child is a
//!   block address, a multiple of 4; a size is a multiple of 16):
//!
//! ```text
//!   b:  | header | left | h>>4 | right | max | h & 15 | ...... | footer |
//!         +0       +W             +2W     +3W                   size - W
//! ```
//!
//! - **key**: the order of the tree: the address ([`ByAddress`]), or
//!   the pair (size, address) ([`BySize`]), so keys are unique and
//!   equal sizes are ordered by address.
//! - **max(n)**: the largest block size in the subtree of `n` (0 for none).
//!
//! ## Invariants (checked by [`Tree::check`])
//!
//! 1. In-order keys strictly increase (each node's key lies strictly
//!    between the bounds its ancestors set).
//! 2. `height(n) = 1 + max(height(left), height(right))`, the heights of
//!    the two children differ by at most 1 (AVL), and no tree is more than
//!    [`MAX_HEIGHT`] deep.
//! 3. `max(n) = max(size(n), max(left), max(right))`.
//! 4. Every node is a free block of the heap, and every free block is a
//!    node exactly once (with the block layer's check).
//!
//! ## Why AVL
//!
//! Its height is at most 1.44 log2(n + 2), a worst-case bound (a treap's
//! or a splay tree's is not), so every walk runs in a fixed-size array of
//! [`MAX_HEIGHT`] entries, without recursion or parent links; and a node
//! needs only its height (6 bits, in spare pointer bits), where a
//! red-black tree's simpler colour costs a more intricate deletion.
//! Rebalancing recomputes each node on the path from its two children
//! (`join`), which also keeps the subtree maxima.
//!
//! ## Checks
//!
//! Links live in memory a program once owned. Before a child link is
//! followed it must be a header slot inside the heap ([`Env`]) whose header
//! says FREE; every descent (by key, and the searches whose path a removal
//! or replacement reuses) also checks that each node's key lies between
//! the bounds of the path (so a loop closed by overwritten links is
//! caught), and no walk goes deeper than [`MAX_HEIGHT`]. The walk back up
//! reads the other child of each level checked as a free block only: it
//! rewrites that link unchanged, and a rotation, which does relink it,
//! checks its key against the bounds of its place first. Damage is
//! reported through [`crate::corruption::report`], never followed.
//!
//! ## Cost
//!
//! The address order's key is the block's address (ordering reads no
//! header); the size order's is `size << 64 | address`, one 128-bit
//! compare. A search records its path ([`Path`]), and the removal or
//! replacement of the block it found reuses it instead of walking again.
//! The walk back up stops where a subtree keeps its root and height; from
//! there only the maxima change, up to the first ancestor whose maximum
//! came from elsewhere or stays (`fix_max`).

use core::mem::MaybeUninit;

use super::{rd, wr, Env, FLAGS, FREE, GRAN, KIND, WORD};
use crate::heap::CheckError;

/// The deepest tree: heights are kept in 6 bits. An AVL tree of height `h`
/// holds at least `F(h + 2) - 1` nodes (`F` Fibonacci), so 63 levels need
/// more than 10^13 free blocks (some 800 TB of heap on a 64-bit target):
/// a walk deeper than this follows damaged links.
pub(crate) const MAX_HEIGHT: usize = 63;

const LEFT: usize = WORD;
const RIGHT: usize = 2 * WORD;
const MAX: usize = 3 * WORD;
/// Spare low bits of a child link (block addresses are multiples of 4).
const LINK_BITS: usize = 3;
/// Spare low bits of the max word (sizes are multiples of 16).
const MAX_BITS: usize = 15;

/// The smallest block that holds a node: header, three node words and the
/// footer, rounded up to [`GRAN`] (48 bytes on 64-bit targets, where a
/// list-indexed heap's is 32).
pub(crate) const NODE_BLOCK: usize = (5 * WORD + GRAN - 1) & !(GRAN - 1);

const _: () = assert!(MAX_HEIGHT < (MAX_BITS + 1) * (LINK_BITS + 1));
const _: () = assert!(GRAN > MAX_BITS && WORD > LINK_BITS);

/// What a tree is ordered by: a key per node, unique in the tree, and two
/// keys below and above every node's (the bounds of the root's place).
pub(crate) trait Order {
    /// The key: compared as one word for the address order.
    type Key: Copy + Ord;
    /// Below every node's key.
    const LOWEST: Self::Key;
    /// Above every node's key.
    const HIGHEST: Self::Key;
    /// The key of a block `b` of `size` bytes.
    fn key(b: usize, size: usize) -> Self::Key;
    /// The key of node `n` (the size order reads its header).
    ///
    /// # Safety
    /// `n` must be a node.
    unsafe fn key_of(n: usize) -> Self::Key;
}

/// Block address (first, next and worst fit): the key is the address
/// itself, so ordering a node reads nothing.
pub(crate) enum ByAddress {}

impl Order for ByAddress {
    type Key = usize;
    const LOWEST: usize = 0;
    const HIGHEST: usize = usize::MAX;
    #[inline(always)]
    fn key(b: usize, _size: usize) -> usize {
        b
    }
    #[inline(always)]
    unsafe fn key_of(n: usize) -> usize {
        n
    }
}

/// Block size, then address (best fit), as one 128-bit number (compared
/// without branches).
pub(crate) enum BySize {}

impl Order for BySize {
    type Key = u128;
    const LOWEST: u128 = 0;
    const HIGHEST: u128 = u128::MAX;
    #[inline(always)]
    fn key(b: usize, size: usize) -> u128 {
        ((size as u128) << 64) | b as u128
    }
    #[inline(always)]
    unsafe fn key_of(n: usize) -> u128 {
        // SAFETY: per the function contract.
        Self::key(n, unsafe { size(n) })
    }
}

/// An intrusive AVL tree of free blocks (see the module doc); its order is
/// the type parameter of each operation.
pub(crate) struct Tree {
    root: usize,
}

/// Report damage found at node `b` (never returns).
#[cold]
#[inline(never)]
fn broken(b: usize, what: &'static str) -> ! {
    crate::corruption::report(b + WORD, what)
}

fn damaged(b: usize) -> ! {
    broken(
        b,
        "the free-tree links of this free block were overwritten (a write after free?)",
    )
}

fn too_deep(b: usize) -> ! {
    broken(
        b,
        "the free tree is deeper than a balanced tree can be here: its links were overwritten",
    )
}

fn missing(b: usize) -> ! {
    broken(
        b,
        "this free block is not in the free tree: its header or the tree's links were overwritten",
    )
}

/// # Safety
/// `b` must be a free block (a node).
#[inline(always)]
unsafe fn size(b: usize) -> usize {
    // SAFETY: per the function contract.
    unsafe { rd(b) & !FLAGS }
}

/// Height of the subtree `b` (0 for none).
///
/// # Safety
/// `b` must be 0 or a node.
#[inline(always)]
unsafe fn height(b: usize) -> usize {
    if b == 0 {
        return 0;
    }
    // SAFETY: a node's node words.
    unsafe { (rd(b + MAX) & MAX_BITS) | ((rd(b + LEFT) & LINK_BITS) << 4) }
}

/// The largest block size in the subtree `b` (0 for none).
///
/// # Safety
/// `b` must be 0 or a node.
#[inline(always)]
unsafe fn max(b: usize) -> usize {
    if b == 0 {
        return 0;
    }
    // SAFETY: a node's node word.
    unsafe { rd(b + MAX) & !MAX_BITS }
}

/// The child link at `off` of node `b`, checked before anyone follows it:
/// 0, or a header slot inside the heap whose header says FREE (so its
/// node words can be read). `MULTI`: the heap has several regions (see
/// `list::next_checked`).
///
/// # Safety
/// `b` must be a node.
#[inline(always)]
unsafe fn child<const MULTI: bool>(b: usize, off: usize, env: &Env) -> usize {
    // SAFETY: `b` is a node; `c` is read only once `env` says it is a
    // header slot with room for a node's words.
    unsafe {
        let c = rd(b + off) & !LINK_BITS;
        if env.checks() && c != 0 && !(env.holds(c) && rd(c) & KIND == FREE) {
            child_elsewhere::<MULTI>(b, c, env);
        }
        c
    }
}

/// The slow half of [`child`]: the link `c` of node `b` is not a free
/// block of the hot span; it is still good in a heap of several regions
/// if it is one of another region. Anything else is damage, reported.
#[cold]
#[inline(never)]
fn child_elsewhere<const MULTI: bool>(b: usize, c: usize, env: &Env) {
    // SAFETY: `c` is read only once it is known to be a header slot in a
    // region.
    if !(MULTI && env.holds_anywhere(c) && unsafe { rd(c) } & KIND == FREE) {
        damaged(b);
    }
}

/// # Safety
/// `b` must be a node.
#[inline(always)]
unsafe fn left<const MULTI: bool>(b: usize, env: &Env) -> usize {
    // SAFETY: forwarded.
    unsafe { child::<MULTI>(b, LEFT, env) }
}

/// # Safety
/// `b` must be a node.
#[inline(always)]
unsafe fn right<const MULTI: bool>(b: usize, env: &Env) -> usize {
    // SAFETY: forwarded.
    unsafe { child::<MULTI>(b, RIGHT, env) }
}

/// Make `n` the root of a subtree with children `l` and `r` (valid
/// subtrees), recomputing its height and max. Returns `n`.
///
/// # Safety
/// `n` must be a free block owned by the tree; `l`, `r` 0 or nodes.
#[inline(always)]
unsafe fn join(n: usize, l: usize, r: usize) -> usize {
    // SAFETY: per the function contract.
    unsafe { join_sized(n, size(n), l, r) }
}

/// [`join`] for a node of `size` bytes, whose header is not read.
///
/// # Safety
/// As for [`join`].
#[inline(always)]
unsafe fn join_sized(n: usize, size: usize, l: usize, r: usize) -> usize {
    // SAFETY: per the function contract.
    unsafe {
        let h = 1 + height(l).max(height(r));
        let m = size.max(max(l)).max(max(r));
        wr(n + LEFT, l | (h >> 4));
        wr(n + RIGHT, r);
        wr(n + MAX, m | (h & MAX_BITS));
    }
    n
}

/// The path from the root to a node: per level the node and whether the
/// walk went right from it (bit 0 of the node's address, a multiple of 4). The key bounds of each level's place follow
/// from the keys above it ([`bounds`](Self::bounds)): a walk checks them
/// as it descends, and only a rotation needs them again. Levels `0..len`
/// are written; the rest is never read (left uninitialised: zeroing it per
/// insert and removal cost more than the walk).
pub(crate) struct Path {
    nodes: [MaybeUninit<usize>; MAX_HEIGHT],
    len: usize,
    /// The level whose node a removal replaced by its successor (the
    /// parent still points to the old one), or `usize::MAX`.
    moved: usize,
}

impl Path {
    /// An empty path.
    pub(crate) const fn new() -> Self {
        Path {
            nodes: [const { MaybeUninit::uninit() }; MAX_HEIGHT],
            len: 0,
            moved: usize::MAX,
        }
    }

    /// Empty the path for another walk.
    #[inline(always)]
    pub(crate) fn clear(&mut self) {
        self.len = 0;
        self.moved = usize::MAX;
    }

    /// Keep levels `0..len` only.
    #[inline(always)]
    fn truncate(&mut self, len: usize) {
        debug_assert!(len <= self.len);
        self.len = len;
    }

    /// Record `n` and the direction taken from it. A walk longer than the
    /// tree can be deep follows damaged links: reported.
    #[inline(always)]
    fn push(&mut self, n: usize, went_right: bool) {
        if self.len == MAX_HEIGHT {
            too_deep(n);
        }
        self.nodes[self.len] = MaybeUninit::new(n | went_right as usize);
        self.len += 1;
    }

    /// The node of level `i < len`.
    #[inline(always)]
    fn node(&self, i: usize) -> usize {
        self.raw(i) & !1
    }

    /// Whether the walk went right from level `i < len`.
    #[inline(always)]
    fn went_right(&self, i: usize) -> bool {
        self.raw(i) & 1 != 0
    }

    #[inline(always)]
    fn raw(&self, i: usize) -> usize {
        debug_assert!(i < self.len);
        // SAFETY: levels below `len` were written by `push`.
        unsafe { self.nodes[i].assume_init() }
    }

    /// The key bounds (exclusive) of the place of level `i <= len`: the
    /// keys of the nearest levels above it that the walk left to the right
    /// and to the left.
    ///
    /// # Safety
    /// The levels must be nodes (as a walk recorded them).
    #[inline(always)]
    unsafe fn bounds<O: Order>(&self, i: usize) -> (O::Key, O::Key) {
        let (mut lo, mut hi) = (O::LOWEST, O::HIGHEST);
        for j in 0..i {
            // SAFETY: per the function contract.
            let k = unsafe { O::key_of(self.node(j)) };
            if self.went_right(j) {
                lo = k;
            } else {
                hi = k;
            }
        }
        (lo, hi)
    }
}

/// The child at `off` of node `b`, checked as [`child`] does and, when it
/// is not 0, to have a key strictly within `(lo, hi)`: a link that passes
/// points to a free block of the heap in the place of the order where a
/// child of `b` belongs, so relinking it neither duplicates a node
/// elsewhere in the tree nor closes a loop. Returns it and its key
/// (`O::LOWEST` for none).
///
/// # Safety
/// `b` must be a node.
#[inline(always)]
unsafe fn child_in<O: Order, const MULTI: bool>(
    b: usize,
    off: usize,
    (lo, hi): (O::Key, O::Key),
    env: &Env,
) -> (usize, O::Key) {
    // SAFETY: `child` checked `c` to be a node.
    unsafe {
        let c = child::<MULTI>(b, off, env);
        if c == 0 {
            return (0, O::LOWEST);
        }
        let k = O::key_of(c);
        if env.checks() {
            in_bounds::<O>(b, k, (lo, hi));
        }
        (c, k)
    }
}

/// Report damage at `b` unless `lo < k < hi`.
#[inline(always)]
fn in_bounds<O: Order>(b: usize, k: O::Key, (lo, hi): (O::Key, O::Key)) {
    if !(lo < k && k < hi) {
        damaged(b);
    }
}

impl Tree {
    /// An empty tree.
    pub(crate) const fn new() -> Self {
        Tree { root: 0 }
    }

    /// [`join`] with the AVL balance restored by one or two rotations, for
    /// children whose heights differ by at most 2; `n` is level `i` of
    /// `path`, whose bounds a rotation checks the nodes it relinks against.
    /// Returns the subtree's root.
    ///
    /// # Safety
    /// As for [`join`]; `path` as recorded by a walk.
    #[inline(always)]
    unsafe fn balance<O: Order, const MULTI: bool>(
        path: &Path,
        i: usize,
        n: usize,
        l: usize,
        r: usize,
        env: &Env,
    ) -> usize {
        // SAFETY: `l` and `r` are 0 or nodes.
        let (hl, hr) = unsafe { (height(l), height(r)) };
        if hl.abs_diff(hr) <= 1 {
            // SAFETY: per the function contract.
            return unsafe { join(n, l, r) };
        }
        // SAFETY: per the function contract.
        unsafe { Self::rotate::<O, MULTI>(path, i, n, (l, r), hl > hr, env) }
    }

    /// [`balance`](Self::balance) when the children `(l, r)` heights
    /// differ by 2, the left one higher if `left_heavy`: one or two
    /// rotations (out of line: most calls need none). Every link it moves
    /// is checked to lie in its place of the order first: the children of
    /// the higher child that change parents, and the higher child itself
    /// when it is the sibling of the path (a removal's rotation), which the
    /// rebalance walk read checked as a free block only; for it the bounds
    /// of level `i` are worked out from the path. The path's own child was
    /// checked on the way down, and a child that keeps its parent needs no
    /// key.
    ///
    /// # Safety
    /// As for [`join`]; `n` is level `i` of `path`.
    #[inline(never)]
    unsafe fn rotate<O: Order, const MULTI: bool>(
        path: &Path,
        i: usize,
        n: usize,
        (l, r): (usize, usize),
        left_heavy: bool,
        env: &Env,
    ) -> usize {
        let sibling_heavy = left_heavy == path.went_right(i);
        // SAFETY: `l`, `r` and their checked children are nodes; every
        // node is rejoined with children from the same subtree, in key
        // order.
        unsafe {
            let kn = O::key_of(n);
            if left_heavy {
                let kl = O::key_of(l);
                if sibling_heavy {
                    let (lo, _) = path.bounds::<O>(i);
                    in_bounds::<O>(n, kl, (lo, kn));
                }
                let ll = left::<MULTI>(l, env);
                let (lr, klr) = child_in::<O, MULTI>(l, RIGHT, (kl, kn), env);
                if height(ll) >= height(lr) {
                    return join(l, ll, join(n, lr, r));
                }
                let (lrl, _) = child_in::<O, MULTI>(lr, LEFT, (kl, klr), env);
                let (lrr, _) = child_in::<O, MULTI>(lr, RIGHT, (klr, kn), env);
                return join(lr, join(l, ll, lrl), join(n, lrr, r));
            }
            let kr = O::key_of(r);
            if sibling_heavy {
                let (_, hi) = path.bounds::<O>(i);
                in_bounds::<O>(n, kr, (kn, hi));
            }
            let (rl, krl) = child_in::<O, MULTI>(r, LEFT, (kn, kr), env);
            let rr = right::<MULTI>(r, env);
            if height(rr) >= height(rl) {
                return join(r, join(n, l, rl), rr);
            }
            let (rll, _) = child_in::<O, MULTI>(rl, LEFT, (kn, krl), env);
            let (rlr, _) = child_in::<O, MULTI>(rl, RIGHT, (krl, kr), env);
            join(rl, join(n, l, rll), join(r, rlr, rr))
        }
    }

    /// Rebalance along `path` from its deepest node up, `sub` being the
    /// new subtree below the last step; the result is the new root. The
    /// other child of each level is read checked as a free block
    /// ([`child`]); its key is checked only where a rotation relinks it.
    ///
    /// # Safety
    /// `path` must be a path of this tree; `sub` 0 or a node.
    #[inline(never)]
    unsafe fn rebalance<O: Order, const MULTI: bool>(
        &mut self,
        path: &Path,
        mut sub: usize,
        env: &Env,
    ) {
        let mut i = path.len;
        while i > 0 {
            i -= 1;
            let n = path.node(i);
            // SAFETY: `n` is on the path, so a node; its other child is
            // read checked.
            unsafe {
                let before = (height(n), max(n));
                sub = if path.went_right(i) {
                    let l = left::<MULTI>(n, env);
                    Self::balance::<O, MULTI>(path, i, n, l, sub, env)
                } else {
                    let r = right::<MULTI>(n, env);
                    Self::balance::<O, MULTI>(path, i, n, sub, r, env)
                };
                // The same subtree root with the same height: the
                // ancestors' heights are unchanged, only their maxima may
                // change (not up to where a removal put a successor in
                // place of the node whose parent still points to it).
                if sub == n && i < path.moved && height(n) == before.0 {
                    Self::fix_max::<MULTI>(path, i, before.1, max(n), env);
                    return;
                }
            }
        }
        self.root = sub;
    }

    /// The subtree below level `i - 1` of `path` (whose root's link and
    /// height are up to date) had the largest block `was` and now has
    /// `now`: update the maxima of levels `i - 1` up to 0, up to the first
    /// that stays. A level whose max is above `was` got it elsewhere and
    /// stays unless `now` exceeds it; only a max that came from this
    /// subtree and shrank reads the node's other child (checked as a free
    /// block) to find the new one.
    ///
    /// # Safety
    /// `path` must be a path of this tree.
    #[inline(always)]
    unsafe fn fix_max<const MULTI: bool>(
        path: &Path,
        mut i: usize,
        mut was: usize,
        mut now: usize,
        env: &Env,
    ) {
        while i > 0 && was != now {
            i -= 1;
            let n = path.node(i);
            // SAFETY: `n` is on the path, so a node; its other child is
            // read checked.
            unsafe {
                let w = rd(n + MAX);
                let m = w & !MAX_BITS;
                let new = if now >= m {
                    now
                } else if m > was {
                    return;
                } else {
                    let other = if path.went_right(i) {
                        left::<MULTI>(n, env)
                    } else {
                        right::<MULTI>(n, env)
                    };
                    size(n).max(max(other)).max(now)
                };
                if new == m {
                    return;
                }
                wr(n + MAX, new | (w & MAX_BITS));
                (was, now) = (m, new);
            }
        }
    }

    /// Walk from the root towards key `k`, recording the path (without the
    /// node of key `k`). Returns that node (0 if there is none) and the
    /// bounds of its place in the tree.
    ///
    /// # Safety
    /// The tree must be consistent (every link is checked as it is
    /// followed).
    #[inline(always)]
    unsafe fn walk_to<O: Order, const MULTI: bool>(
        &self,
        k: O::Key,
        path: &mut Path,
        env: &Env,
    ) -> (usize, (O::Key, O::Key)) {
        let (mut lo, mut hi) = (O::LOWEST, O::HIGHEST);
        let mut n = self.root;
        if n == 0 {
            return (0, (lo, hi));
        }
        // SAFETY: the root is a node.
        let mut kn = unsafe { O::key_of(n) };
        while kn != k {
            let go_right = kn < k;
            path.push(n, go_right);
            let off = if go_right {
                lo = kn;
                RIGHT
            } else {
                hi = kn;
                LEFT
            };
            // SAFETY: `n` is the root or a child checked within its bounds.
            let (c, kc) = unsafe { child_in::<O, MULTI>(n, off, (lo, hi), env) };
            if c == 0 {
                return (0, (lo, hi));
            }
            (n, kn) = (c, kc);
        }
        (n, (lo, hi))
    }

    /// Add the free block `b` of `size` bytes.
    ///
    /// # Safety
    /// `b` must be a free block of `size >= NODE_BLOCK` bytes, not in the
    /// tree, whose header is written.
    pub(crate) unsafe fn insert<O: Order, const MULTI: bool>(
        &mut self,
        b: usize,
        size: usize,
        env: &Env,
    ) {
        let mut path = Path::new();
        // SAFETY: the tree is consistent (checked as it is walked).
        if unsafe { self.walk_to::<O, MULTI>(O::key(b, size), &mut path, env) }.0 != 0 {
            damaged(b);
        }
        // SAFETY: `b` is a free block owned by the tree now.
        unsafe {
            let leaf = join_sized(b, size, 0, 0);
            self.grow::<O, MULTI>(&path, leaf, size, env);
        }
    }

    /// The walk back up after an insertion put a leaf of `size` bytes at
    /// the end of `path` (AVL insertion): while the subtree below a level
    /// grew to that level's height, the level grows too (or, if its other
    /// side is two lower, one rotation restores its old height); the first
    /// level that keeps its height only links the new subtree and has the
    /// maxima above it raised to `size`. Reads a level's other child only
    /// where it grows or rotates.
    ///
    /// # Safety
    /// `path` must be the path of this tree to the place of `sub`, a new
    /// leaf.
    #[inline(never)]
    unsafe fn grow<O: Order, const MULTI: bool>(
        &mut self,
        path: &Path,
        mut sub: usize,
        size: usize,
        env: &Env,
    ) {
        let mut hs = 1;
        let mut i = path.len;
        // SAFETY: the levels are nodes; other children are read checked.
        unsafe {
            while i > 0 {
                i -= 1;
                let n = path.node(i);
                let went_right = path.went_right(i);
                if hs < height(n) {
                    Self::link(n, went_right, sub);
                    Self::raise_max(path, i + 1, size);
                    return;
                }
                // `sub` is as high as `n` was: `n` grows, or rotates back
                // to its height.
                let (l, r) = if went_right {
                    (left::<MULTI>(n, env), sub)
                } else {
                    (sub, right::<MULTI>(n, env))
                };
                let other = if went_right { l } else { r };
                if height(other) + 1 >= hs {
                    sub = join(n, l, r);
                    hs += 1;
                    continue;
                }
                sub = Self::rotate::<O, MULTI>(path, i, n, (l, r), !went_right, env);
                if i == 0 {
                    break;
                }
                Self::link(path.node(i - 1), path.went_right(i - 1), sub);
                Self::raise_max(path, i, size);
                return;
            }
        }
        self.root = sub;
    }

    /// Make `c` the right (`right`) or left child of node `n`.
    ///
    /// # Safety
    /// `n` must be a node, `c` 0 or a node in that place of the order.
    #[inline(always)]
    unsafe fn link(n: usize, right: bool, c: usize) {
        // SAFETY: per the function contract.
        unsafe {
            if right {
                wr(n + RIGHT, c);
            } else {
                wr(n + LEFT, c | (rd(n + LEFT) & LINK_BITS));
            }
        }
    }

    /// A block of `size` bytes joined the subtree below level `i - 1` of
    /// `path`: raise the maxima of levels `i - 1` up to 0 to `size`, up to
    /// the first that holds it already.
    ///
    /// # Safety
    /// `path` must be a path of this tree.
    #[inline(always)]
    unsafe fn raise_max(path: &Path, mut i: usize, size: usize) {
        while i > 0 {
            i -= 1;
            let n = path.node(i);
            // SAFETY: `n` is on the path, so a node.
            unsafe {
                let w = rd(n + MAX);
                if size <= w & !MAX_BITS {
                    return;
                }
                wr(n + MAX, size | (w & MAX_BITS));
            }
        }
    }

    /// Take the node `b` of `size` bytes out.
    ///
    /// # Safety
    /// `b` must be in the tree with this `size`.
    pub(crate) unsafe fn remove<O: Order, const MULTI: bool>(
        &mut self,
        b: usize,
        size: usize,
        env: &Env,
    ) {
        let k = O::key(b, size);
        let mut path = Path::new();
        // SAFETY: the tree is consistent (checked as it is walked); `b`,
        // found, is a node.
        unsafe {
            let (n, bounds) = self.walk_to::<O, MULTI>(k, &mut path, env);
            if n != b {
                missing(b);
            }
            self.remove_at::<O, MULTI>(&mut path, b, k, bounds, env);
        }
    }

    /// [`remove`](Self::remove) of the node `b` of `size` bytes that a
    /// search just found, `path` the path it recorded to it.
    ///
    /// # Safety
    /// `path` must be the path to `b` recorded by a search of this tree,
    /// which has not changed since.
    pub(crate) unsafe fn remove_found<O: Order, const MULTI: bool>(
        &mut self,
        path: &mut Path,
        b: usize,
        size: usize,
        env: &Env,
    ) {
        // SAFETY: per the function contract.
        unsafe {
            let bounds = path.bounds::<O>(path.len);
            self.remove_at::<O, MULTI>(path, b, O::key(b, size), bounds, env);
        }
    }

    /// Take out the node `b` of key `k`, at the end of `path`, in a place
    /// of `bounds`.
    ///
    /// # Safety
    /// `b` must be the node the walk of `path` reached.
    #[inline(always)]
    unsafe fn remove_at<O: Order, const MULTI: bool>(
        &mut self,
        path: &mut Path,
        b: usize,
        k: O::Key,
        (lo, hi): (O::Key, O::Key),
        env: &Env,
    ) {
        // SAFETY: `b` is a node; its children and the successor's path are
        // read checked within their bounds.
        unsafe {
            let (l, _) = child_in::<O, MULTI>(b, LEFT, (lo, k), env);
            let (r, kr) = child_in::<O, MULTI>(b, RIGHT, (k, hi), env);
            if l == 0 || r == 0 {
                self.rebalance::<O, MULTI>(path, l | r, env);
                return;
            }
            // Two children: the successor `s` (leftmost of `r`) takes
            // `b`'s place; its own right subtree takes its old place.
            let at = path.len;
            path.push(b, true);
            let (mut s, mut ks, mut s_hi) = (r, kr, hi);
            loop {
                let (sl, ksl) = child_in::<O, MULTI>(s, LEFT, (k, ks), env);
                if sl == 0 {
                    break;
                }
                path.push(s, false);
                (s, ks, s_hi) = (sl, ksl, ks);
            }
            let (sub, _) = child_in::<O, MULTI>(s, RIGHT, (ks, s_hi), env);
            path.nodes[at] = MaybeUninit::new(s | 1);
            path.moved = at;
            // `s`'s left child is `l` from now on; the rebalance supplies
            // its right child and recomputes the rest.
            wr(s + LEFT, l);
            self.rebalance::<O, MULTI>(path, sub, env);
        }
    }

    /// The node `old` of `old_size` bytes becomes the free block `new` of
    /// `new_size` bytes in the same place of the order (a block that grew
    /// or shrank at either end: its neighbours in the tree are unchanged),
    /// without a rotation: `new` takes `old`'s children and height, and the
    /// maxima above it are updated up to the first one that stays.
    /// Address order only (a size order moves a resized block).
    ///
    /// # Safety
    /// `old` must be in the tree with `old_size` and its header still read
    /// so; `new`'s header need not be written yet (it is not read); no
    /// other node may lie between `old` and `new` in address order.
    pub(crate) unsafe fn replace<const MULTI: bool>(
        &mut self,
        old: usize,
        new: usize,
        new_size: usize,
        env: &Env,
    ) {
        let mut path = Path::new();
        // SAFETY: the tree is consistent (checked as it is walked); `old`,
        // found, is a node.
        unsafe {
            let (n, bounds) = self.walk_to::<ByAddress, MULTI>(old, &mut path, env);
            if n != old {
                missing(old);
            }
            self.replace_at::<MULTI>(&path, old, new, new_size, bounds, env);
        }
    }

    /// [`replace`](Self::replace) of the node `old` that a search just
    /// found, `path` the path it recorded to it.
    ///
    /// # Safety
    /// As for [`replace`](Self::replace); `path` as for
    /// [`remove_found`](Self::remove_found).
    pub(crate) unsafe fn replace_found<const MULTI: bool>(
        &mut self,
        path: &Path,
        old: usize,
        new: usize,
        new_size: usize,
        env: &Env,
    ) {
        // SAFETY: per the function contract.
        unsafe {
            let bounds = path.bounds::<ByAddress>(path.len);
            self.replace_at::<MULTI>(path, old, new, new_size, bounds, env);
        }
    }

    /// [`replace`](Self::replace) of `old`, at the end of `path`, in a
    /// place of `(lo, hi)`.
    ///
    /// # Safety
    /// As for [`replace`](Self::replace); `old` the node the walk of
    /// `path` reached.
    #[inline(always)]
    unsafe fn replace_at<const MULTI: bool>(
        &mut self,
        path: &Path,
        old: usize,
        new: usize,
        new_size: usize,
        (lo, hi): (usize, usize),
        env: &Env,
    ) {
        in_bounds::<ByAddress>(old, new, (lo, hi));
        // SAFETY: `old` is a node, its children read checked; `new` is a
        // free block owned by the tree.
        unsafe {
            let (l, _) = child_in::<ByAddress, MULTI>(old, LEFT, (lo, new), env);
            let (r, _) = child_in::<ByAddress, MULTI>(old, RIGHT, (new, hi), env);
            let was = max(old);
            let sub = join_sized(new, new_size, l, r);
            // The parent's link to `new`, then the maxima above.
            let i = path.len;
            if i == 0 {
                self.root = sub;
            } else {
                let p = path.node(i - 1);
                if path.went_right(i - 1) {
                    wr(p + RIGHT, sub);
                } else {
                    wr(p + LEFT, sub | (rd(p + LEFT) & LINK_BITS));
                }
            }
            Self::fix_max::<MULTI>(path, i, was, max(sub), env);
        }
    }

    /// Address order: the leftmost node of at least `need` bytes in the
    /// subtree `n`, whose max says it has one, at the end of `path` in a
    /// place of `(lo, hi)`; the descent is added to `path`.
    ///
    /// # Safety
    /// `n` must be a node with `max(n) >= need`, reached by `path`.
    #[inline(always)]
    unsafe fn first_in<const MULTI: bool>(
        mut n: usize,
        need: usize,
        path: &mut Path,
        (mut lo, mut hi): (usize, usize),
        env: &Env,
    ) -> usize {
        loop {
            // SAFETY: `n` is a node; its children are read checked (and
            // within the bounds of their place before they are followed).
            unsafe {
                let l = left::<MULTI>(n, env);
                if l != 0 && max(l) >= need {
                    in_bounds::<ByAddress>(n, l, (lo, n));
                    path.push(n, false);
                    (hi, n) = (n, l);
                    continue;
                }
                if size(n) >= need {
                    return n;
                }
                let r = right::<MULTI>(n, env);
                if r != 0 && max(r) >= need {
                    in_bounds::<ByAddress>(n, r, (n, hi));
                    path.push(n, true);
                    (lo, n) = (n, r);
                    continue;
                }
                // `max(n)` promised a block that is not there.
                damaged(n);
            }
        }
    }

    /// Address order: the lowest-addressed block of at least `need` bytes
    /// (0 for none); `path` (empty) receives the path to it.
    ///
    /// # Safety
    /// The tree must be consistent (module invariants).
    pub(crate) unsafe fn first_fit<const MULTI: bool>(
        &self,
        need: usize,
        path: &mut Path,
        env: &Env,
    ) -> usize {
        let n = self.root;
        // SAFETY: the root is 0 or a node.
        if n == 0 || unsafe { max(n) } < need {
            return 0;
        }
        // SAFETY: `max(n) >= need`.
        unsafe { Self::first_in::<MULTI>(n, need, path, (0, usize::MAX), env) }
    }

    /// Address order: the lowest-addressed block of at least `need` bytes
    /// at or after `from`, else the first fit (a search that wraps); `path`
    /// (empty) receives the path to it.
    ///
    /// # Safety
    /// As for [`first_fit`](Self::first_fit).
    pub(crate) unsafe fn next_fit<const MULTI: bool>(
        &self,
        need: usize,
        from: usize,
        path: &mut Path,
        env: &Env,
    ) -> usize {
        // The levels of the nodes at or after `from` on the path towards
        // it, shallowest first: in address order they are the deepest one,
        // its right subtree, the next deepest, its right subtree, and so
        // on.
        let mut after = [0u8; MAX_HEIGHT];
        let mut count = 0;
        // SAFETY: forwarded.
        unsafe {
            self.lower_bound::<ByAddress, MULTI>(
                |n| n >= from,
                path,
                |level| {
                    after[count] = level as u8;
                    count += 1;
                },
                env,
            )
        };
        for &level in after[..count].iter().rev() {
            let level = level as usize;
            let c = path.node(level);
            // SAFETY: `c` is a node of the path.
            unsafe {
                if size(c) >= need {
                    path.truncate(level);
                    return c;
                }
                let r = right::<MULTI>(c, env);
                if r != 0 && max(r) >= need {
                    path.truncate(level);
                    let (_, hi) = path.bounds::<ByAddress>(level);
                    in_bounds::<ByAddress>(c, r, (c, hi));
                    path.push(c, true);
                    return Self::first_in::<MULTI>(r, need, path, (c, hi), env);
                }
            }
        }
        path.clear();
        // SAFETY: as for `first_fit`.
        unsafe { self.first_fit::<MULTI>(need, path, env) }
    }

    /// Size order: the smallest block of at least `need` bytes, the
    /// lowest-addressed of equals (0 for none); `path` (empty) receives the
    /// path to it.
    ///
    /// # Safety
    /// As for [`first_fit`](Self::first_fit).
    pub(crate) unsafe fn best_fit<const MULTI: bool>(
        &self,
        need: usize,
        path: &mut Path,
        env: &Env,
    ) -> usize {
        let mut found = usize::MAX;
        // SAFETY: forwarded; `size` reads the header of a node.
        unsafe {
            self.lower_bound::<BySize, MULTI>(|n| size(n) >= need, path, |level| found = level, env)
        };
        if found == usize::MAX {
            return 0;
        }
        let b = path.node(found);
        path.truncate(found);
        b
    }

    /// Walk from the root towards the first node for which `at_or_after`
    /// holds (a predicate monotone in key order): at each node, left if
    /// it holds, else right, each step recorded in `path` (empty) and
    /// checked within the bounds of its place. `hit(level)` is called for
    /// the levels whose node the predicate holds for, in decreasing key
    /// order: the last one is the lower bound.
    ///
    /// # Safety
    /// As for [`first_fit`](Self::first_fit); the predicate is called on
    /// nodes only.
    #[inline(always)]
    unsafe fn lower_bound<O: Order, const MULTI: bool>(
        &self,
        at_or_after: impl Fn(usize) -> bool,
        path: &mut Path,
        mut hit: impl FnMut(usize),
        env: &Env,
    ) {
        let (mut lo, mut hi) = (O::LOWEST, O::HIGHEST);
        let mut n = self.root;
        // `push` stops a walk longer than the tree can be deep.
        while n != 0 {
            // SAFETY: `n` is the root or a checked child: a node.
            unsafe {
                let kn = O::key_of(n);
                let go_left = at_or_after(n);
                if go_left {
                    hit(path.len);
                    hi = kn;
                } else {
                    lo = kn;
                }
                path.push(n, !go_left);
                let off = if go_left { LEFT } else { RIGHT };
                n = child_in::<O, MULTI>(n, off, (lo, hi), env).0;
            }
        }
    }

    /// Address order: the largest block, the lowest-addressed of equals, if
    /// it holds `need` bytes (0 for none); `path` (empty) receives the path
    /// to it.
    ///
    /// # Safety
    /// As for [`first_fit`](Self::first_fit).
    pub(crate) unsafe fn worst_fit<const MULTI: bool>(
        &self,
        need: usize,
        path: &mut Path,
        env: &Env,
    ) -> usize {
        let n = self.root;
        // SAFETY: the root is 0 or a node.
        let largest = if n == 0 { 0 } else { unsafe { max(n) } };
        if largest < need {
            return 0;
        }
        // SAFETY: `max(n) == largest`.
        unsafe { Self::first_in::<MULTI>(n, largest, path, (0, usize::MAX), env) }
    }

    /// Verify the invariants; `visit(b)` checks that `b` is a free block of
    /// the heap and returns its size. At most `budget` nodes. Returns the
    /// number of nodes.
    pub(crate) fn check<O: Order>(
        &self,
        budget: usize,
        visit: &mut dyn FnMut(usize) -> Result<usize, CheckError>,
    ) -> Result<usize, CheckError> {
        let mut count = 0;
        Self::check_sub::<O>(
            self.root,
            (O::LOWEST, O::HIGHEST),
            0,
            budget,
            &mut count,
            visit,
        )?;
        Ok(count)
    }

    /// [`check`](Self::check) of the subtree `n` whose keys must lie
    /// strictly within `bounds`, at `depth`: returns (height, max).
    /// Recursion is bounded by [`MAX_HEIGHT`].
    fn check_sub<O: Order>(
        n: usize,
        bounds: (O::Key, O::Key),
        depth: usize,
        budget: usize,
        count: &mut usize,
        visit: &mut dyn FnMut(usize) -> Result<usize, CheckError>,
    ) -> Result<(usize, usize), CheckError> {
        if n == 0 {
            return Ok((0, 0));
        }
        if depth == MAX_HEIGHT {
            return Err(CheckError::new(n, "free tree is deeper than it can be"));
        }
        if *count == budget {
            return Err(CheckError::new(
                n,
                "free tree holds more blocks than are free (a cycle?)",
            ));
        }
        let size = visit(n)?;
        *count += 1;
        let k = O::key(n, size);
        if !(bounds.0 < k && k < bounds.1) {
            return Err(CheckError::new(n, "free tree is out of order here"));
        }
        // SAFETY: `visit` verified that `n` is a free block of the heap, at
        // least a node's size.
        let (l, r, h, m) = unsafe { (rd(n + LEFT) & !LINK_BITS, rd(n + RIGHT), height(n), max(n)) };
        let (hl, ml) = Self::check_sub::<O>(l, (bounds.0, k), depth + 1, budget, count, visit)?;
        let (hr, mr) = Self::check_sub::<O>(r, (k, bounds.1), depth + 1, budget, count, visit)?;
        if h != 1 + hl.max(hr) {
            return Err(CheckError::new(n, "free tree node's height is wrong"));
        }
        if hl.abs_diff(hr) > 1 {
            return Err(CheckError::new(n, "free tree is out of balance here"));
        }
        if m != size.max(ml).max(mr) {
            return Err(CheckError::new(n, "free tree node's subtree max is wrong"));
        }
        Ok((h, m))
    }

    /// `true` if the free block `b` of `size` bytes is in the tree (called
    /// once [`check`](Self::check) has passed).
    pub(crate) fn contains<O: Order>(&self, b: usize, size: usize) -> bool {
        let k = O::key(b, size);
        let mut n = self.root;
        for _ in 0..MAX_HEIGHT {
            if n == 0 {
                return false;
            }
            // SAFETY: `check` verified every node of the tree.
            let kn = unsafe { O::key_of(n) };
            if kn == k {
                return n == b;
            }
            // SAFETY: as above.
            n = unsafe {
                if kn < k {
                    rd(n + RIGHT)
                } else {
                    rd(n + LEFT) & !LINK_BITS
                }
            };
        }
        false
    }
}
