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
//! - **key**: the order of the tree: the address (`Order::Address`), or
//!   the pair (size, address) (`Order::Size`), so keys are unique and
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
//! says FREE; a descent by key also checks that each node's key lies
//! between the bounds of the path (so a loop closed by overwritten links
//! is caught), and no walk goes deeper than [`MAX_HEIGHT`]. Damage is
//! reported through [`crate::corruption::report`], never followed.

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

/// What a tree is ordered by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Order {
    /// Block address.
    Address,
    /// Block size, then address.
    Size,
}

/// An intrusive AVL tree of free blocks (see the module doc).
pub(crate) struct Tree {
    root: usize,
    order: Order,
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

/// The path from the root to a node: per level the node, the key bounds
/// its subtree must keep (exclusive), and whether the walk went right.
/// Levels `0..len` are written; the rest is never read (left uninitialised:
/// zeroing 2.5 KB per insert and removal cost more than the walk).
struct Path {
    levels: [MaybeUninit<Level>; MAX_HEIGHT],
    right: u64,
    len: usize,
    /// The level whose node a removal replaced by its successor (the
    /// parent still points to the old one), or `usize::MAX`.
    moved: usize,
}

/// One level of a [`Path`]: a node and its key bounds.
#[derive(Clone, Copy)]
struct Level {
    node: usize,
    bounds: (u128, u128),
}

impl Path {
    const fn new() -> Self {
        Path {
            levels: [const { MaybeUninit::uninit() }; MAX_HEIGHT],
            right: 0,
            len: 0,
            moved: usize::MAX,
        }
    }

    /// Record `n`, its bounds and the direction taken from it.
    #[inline(always)]
    fn push(&mut self, n: usize, bounds: (u128, u128), went_right: bool) {
        if self.len == MAX_HEIGHT {
            too_deep(n);
        }
        self.levels[self.len] = MaybeUninit::new(Level { node: n, bounds });
        self.right |= (went_right as u64) << self.len;
        self.len += 1;
    }

    /// Level `i < len`.
    #[inline(always)]
    fn level(&self, i: usize) -> Level {
        debug_assert!(i < self.len);
        // SAFETY: levels below `len` were written by `push`.
        unsafe { self.levels[i].assume_init() }
    }
}

impl Tree {
    /// An empty tree ordered by `order`.
    pub(crate) const fn new(order: Order) -> Self {
        Tree { root: 0, order }
    }

    #[inline(always)]
    fn key(&self, b: usize, size: usize) -> u128 {
        match self.order {
            Order::Address => b as u128,
            Order::Size => ((size as u128) << 64) | b as u128,
        }
    }

    /// The key of node `n`.
    ///
    /// # Safety
    /// `n` must be a node.
    #[inline(always)]
    unsafe fn key_of(&self, n: usize) -> u128 {
        // SAFETY: per the function contract.
        self.key(n, unsafe { size(n) })
    }

    /// The child at `off` of node `b`, checked as [`child`] does and, when
    /// it is not 0, to have a key strictly within `bounds`: a link that
    /// passes points to a free block of the heap in the place of the order
    /// where a child of `b` belongs, so relinking it neither duplicates a
    /// node elsewhere in the tree nor closes a loop.
    ///
    /// # Safety
    /// `b` must be a node.
    #[inline(always)]
    unsafe fn child_in<const MULTI: bool>(
        &self,
        b: usize,
        off: usize,
        bounds: (u128, u128),
        env: &Env,
    ) -> usize {
        // SAFETY: `child` checked `c` to be a node.
        unsafe {
            let c = child::<MULTI>(b, off, env);
            if env.checks() && c != 0 {
                let k = self.key_of(c);
                if !(bounds.0 < k && k < bounds.1) {
                    damaged(b);
                }
            }
            c
        }
    }

    /// [`join`] with the AVL balance restored by one or two rotations, for
    /// children whose heights differ by at most 2; the children's children
    /// are read checked against `bounds`, those of `n`'s subtree. Returns
    /// the subtree's root.
    ///
    /// # Safety
    /// As for [`join`].
    #[inline(always)]
    unsafe fn balance<const MULTI: bool>(
        &self,
        n: usize,
        l: usize,
        r: usize,
        bounds: (u128, u128),
        env: &Env,
    ) -> usize {
        // SAFETY: `l` and `r` are 0 or nodes.
        let (hl, hr) = unsafe { (height(l), height(r)) };
        if hl.abs_diff(hr) <= 1 {
            // SAFETY: per the function contract.
            return unsafe { join(n, l, r) };
        }
        // SAFETY: per the function contract.
        unsafe { self.rotate::<MULTI>(n, (l, r), hl > hr, bounds, env) }
    }

    /// [`balance`](Self::balance) when the children `(l, r)` heights
    /// differ by 2, the left one higher if `left_heavy`: one or two
    /// rotations (out of line: most calls need none).
    ///
    /// # Safety
    /// As for [`join`].
    #[inline(never)]
    unsafe fn rotate<const MULTI: bool>(
        &self,
        n: usize,
        (l, r): (usize, usize),
        left_heavy: bool,
        (lo, hi): (u128, u128),
        env: &Env,
    ) -> usize {
        // SAFETY: `l`, `r` and their checked children are nodes; every
        // node is rejoined with children from the same subtree, in key
        // order.
        unsafe {
            if left_heavy {
                let (kl, kn) = (self.key_of(l), self.key_of(n));
                let ll = self.child_in::<MULTI>(l, LEFT, (lo, kl), env);
                let lr = self.child_in::<MULTI>(l, RIGHT, (kl, kn), env);
                if height(ll) >= height(lr) {
                    return join(l, ll, join(n, lr, r));
                }
                let klr = self.key_of(lr);
                let lrl = self.child_in::<MULTI>(lr, LEFT, (kl, klr), env);
                let lrr = self.child_in::<MULTI>(lr, RIGHT, (klr, kn), env);
                return join(lr, join(l, ll, lrl), join(n, lrr, r));
            }
            let (kr, kn) = (self.key_of(r), self.key_of(n));
            let rl = self.child_in::<MULTI>(r, LEFT, (kn, kr), env);
            let rr = self.child_in::<MULTI>(r, RIGHT, (kr, hi), env);
            if height(rr) >= height(rl) {
                return join(r, join(n, l, rl), rr);
            }
            let krl = self.key_of(rl);
            let rll = self.child_in::<MULTI>(rl, LEFT, (kn, krl), env);
            let rlr = self.child_in::<MULTI>(rl, RIGHT, (krl, kr), env);
            join(rl, join(n, l, rll), join(r, rlr, rr))
        }
    }

    /// Rebalance along `path` from its deepest node up, `sub` being the
    /// new subtree below the last step; the result is the new root.
    ///
    /// # Safety
    /// `path` must be a path of this tree; `sub` 0 or a node.
    #[inline(never)]
    unsafe fn rebalance<const MULTI: bool>(&mut self, path: &Path, mut sub: usize, env: &Env) {
        let mut i = path.len;
        while i > 0 {
            i -= 1;
            let Level {
                node: n,
                bounds: (lo, hi),
            } = path.level(i);
            // SAFETY: `n` is on the path, so a node; its other child is
            // read checked.
            unsafe {
                let before = (height(n), max(n));
                let k = self.key_of(n);
                sub = if path.right >> i & 1 != 0 {
                    let l = self.child_in::<MULTI>(n, LEFT, (lo, k), env);
                    self.balance::<MULTI>(n, l, sub, (lo, hi), env)
                } else {
                    let r = self.child_in::<MULTI>(n, RIGHT, (k, hi), env);
                    self.balance::<MULTI>(n, sub, r, (lo, hi), env)
                };
                // The same subtree root with the same height and max: the
                // ancestors' words are unchanged, the walk is done (not
                // up to where a removal put a successor in place of the
                // node whose parent still points to it).
                if sub == n && i < path.moved && (height(n), max(n)) == before {
                    return;
                }
            }
        }
        self.root = sub;
    }

    /// Walk from the root towards key `k`, recording the path (without the
    /// node of key `k`). Returns that node (0 if there is none) and the
    /// bounds of its place in the tree.
    ///
    /// # Safety
    /// The tree must be consistent (every link is checked as it is
    /// followed).
    #[inline(always)]
    unsafe fn walk_to<const MULTI: bool>(
        &self,
        k: u128,
        path: &mut Path,
        env: &Env,
    ) -> (usize, (u128, u128)) {
        let (mut lo, mut hi) = (0u128, u128::MAX);
        let mut n = self.root;
        while n != 0 {
            // SAFETY: `n` is the root or a child checked within its bounds.
            unsafe {
                let kn = self.key_of(n);
                if kn == k {
                    break;
                }
                let go_right = kn < k;
                path.push(n, (lo, hi), go_right);
                if go_right {
                    lo = kn;
                    n = self.child_in::<MULTI>(n, RIGHT, (lo, hi), env);
                } else {
                    hi = kn;
                    n = self.child_in::<MULTI>(n, LEFT, (lo, hi), env);
                }
            }
        }
        (n, (lo, hi))
    }

    /// Add the free block `b` of `size` bytes.
    ///
    /// # Safety
    /// `b` must be a free block of `size >= NODE_BLOCK` bytes, not in the
    /// tree, whose header is written.
    pub(crate) unsafe fn insert<const MULTI: bool>(&mut self, b: usize, size: usize, env: &Env) {
        let k = self.key(b, size);
        let mut path = Path::new();
        // SAFETY: the tree is consistent (checked as it is walked).
        if unsafe { self.walk_to::<MULTI>(k, &mut path, env) }.0 != 0 {
            damaged(b);
        }
        // SAFETY: `b` is a free block owned by the tree now.
        unsafe {
            let leaf = join(b, 0, 0);
            self.rebalance::<MULTI>(&path, leaf, env);
        }
    }

    /// Take the node `b` of `size` bytes out.
    ///
    /// # Safety
    /// `b` must be in the tree with this `size`.
    pub(crate) unsafe fn remove<const MULTI: bool>(&mut self, b: usize, size: usize, env: &Env) {
        let k = self.key(b, size);
        let mut path = Path::new();
        // SAFETY: the tree is consistent (checked as it is walked); `b`,
        // found, is a node.
        unsafe {
            let (n, (lo, hi)) = self.walk_to::<MULTI>(k, &mut path, env);
            if n != b {
                missing(b);
            }
            let l = self.child_in::<MULTI>(b, LEFT, (lo, k), env);
            let r = self.child_in::<MULTI>(b, RIGHT, (k, hi), env);
            if l == 0 || r == 0 {
                self.rebalance::<MULTI>(&path, l | r, env);
                return;
            }
            // Two children: the successor `s` (leftmost of `r`) takes
            // `b`'s place; its own right subtree takes its old place.
            let at = path.len;
            path.push(b, (lo, hi), true);
            let mut s = r;
            let mut s_hi = hi;
            loop {
                let sl = self.child_in::<MULTI>(s, LEFT, (k, self.key_of(s)), env);
                if sl == 0 {
                    break;
                }
                path.push(s, (k, s_hi), false);
                s_hi = self.key_of(s);
                s = sl;
            }
            let sub = self.child_in::<MULTI>(s, RIGHT, (self.key_of(s), s_hi), env);
            path.levels[at] = MaybeUninit::new(Level {
                node: s,
                bounds: (lo, hi),
            });
            path.moved = at;
            // `s`'s left child is `l` from now on; the rebalance supplies
            // its right child and recomputes the rest.
            wr(s + LEFT, l);
            self.rebalance::<MULTI>(&path, sub, env);
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
        old_size: usize,
        new: usize,
        new_size: usize,
        env: &Env,
    ) {
        debug_assert!(self.order == Order::Address);
        let k = self.key(old, old_size);
        let mut path = Path::new();
        // SAFETY: the tree is consistent (checked as it is walked); `old`,
        // found, is a node, and `new` a free block owned by the tree.
        unsafe {
            let (n, (lo, hi)) = self.walk_to::<MULTI>(k, &mut path, env);
            if n != old {
                missing(old);
            }
            let kn = self.key(new, new_size);
            if !(lo < kn && kn < hi) {
                damaged(old);
            }
            let l = self.child_in::<MULTI>(old, LEFT, (lo, kn), env);
            let r = self.child_in::<MULTI>(old, RIGHT, (kn, hi), env);
            let sub = join_sized(new, new_size, l, r);
            self.rebalance::<MULTI>(&path, sub, env);
        }
    }

    /// The leftmost node of at least `need` bytes in the subtree `n`, whose
    /// max says it has one.
    ///
    /// # Safety
    /// `n` must be a node with `max(n) >= need`.
    #[inline(always)]
    unsafe fn first_in<const MULTI: bool>(mut n: usize, need: usize, env: &Env) -> usize {
        for _ in 0..MAX_HEIGHT {
            // SAFETY: `n` is a node; its children are read checked.
            unsafe {
                let l = left::<MULTI>(n, env);
                if max(l) >= need && l != 0 {
                    n = l;
                    continue;
                }
                if size(n) >= need {
                    return n;
                }
                let r = right::<MULTI>(n, env);
                if max(r) >= need && r != 0 {
                    n = r;
                    continue;
                }
                // `max(n)` promised a block that is not there.
                damaged(n);
            }
        }
        too_deep(n)
    }

    /// Address order: the lowest-addressed block of at least `need` bytes.
    ///
    /// # Safety
    /// The tree must be consistent (module invariants).
    pub(crate) unsafe fn first_fit<const MULTI: bool>(&self, need: usize, env: &Env) -> usize {
        let n = self.root;
        // SAFETY: the root is 0 or a node.
        if n == 0 || unsafe { max(n) } < need {
            return 0;
        }
        // SAFETY: `max(n) >= need`.
        unsafe { Self::first_in::<MULTI>(n, need, env) }
    }

    /// Address order: the lowest-addressed block of at least `need` bytes
    /// at or after `from`, else the first fit (a search that wraps).
    ///
    /// # Safety
    /// As for [`first_fit`](Self::first_fit).
    pub(crate) unsafe fn next_fit<const MULTI: bool>(
        &self,
        need: usize,
        from: usize,
        env: &Env,
    ) -> usize {
        // The nodes at or after `from` on the path towards it, shallowest
        // first: in address order they are the deepest one, its right
        // subtree, the next deepest, its right subtree, and so on.
        let mut after = [0usize; MAX_HEIGHT];
        let mut count = 0;
        // SAFETY: forwarded.
        unsafe {
            self.lower_bound::<MULTI>(
                |n| n >= from,
                |n| {
                    after[count] = n;
                    count += 1;
                },
                env,
            )
        };
        for &c in after[..count].iter().rev() {
            // SAFETY: `c` is a node.
            unsafe {
                if size(c) >= need {
                    return c;
                }
                let r = right::<MULTI>(c, env);
                if r != 0 && max(r) >= need {
                    return Self::first_in::<MULTI>(r, need, env);
                }
            }
        }
        // SAFETY: as for `first_fit`.
        unsafe { self.first_fit::<MULTI>(need, env) }
    }

    /// Size order: the smallest block of at least `need` bytes, the
    /// lowest-addressed of equals.
    ///
    /// # Safety
    /// As for [`first_fit`](Self::first_fit).
    pub(crate) unsafe fn best_fit<const MULTI: bool>(&self, need: usize, env: &Env) -> usize {
        let mut found = 0;
        // SAFETY: forwarded; `size` reads the header of a node.
        unsafe { self.lower_bound::<MULTI>(|n| size(n) >= need, |n| found = n, env) };
        found
    }

    /// Walk from the root towards the first node for which `at_or_after`
    /// holds (a predicate monotone in key order): at each node, left after
    /// calling `hit(n)` if it holds, else right. `hit` sees those nodes in
    /// decreasing key order, the last one the lower bound.
    ///
    /// # Safety
    /// As for [`first_fit`](Self::first_fit); the predicate is called on
    /// nodes only.
    #[inline(always)]
    unsafe fn lower_bound<const MULTI: bool>(
        &self,
        at_or_after: impl Fn(usize) -> bool,
        mut hit: impl FnMut(usize),
        env: &Env,
    ) {
        let mut n = self.root;
        // One node per level: a walk longer than the tree can be deep is
        // following damaged links (and stays within `hit`'s arrays).
        for _ in 0..MAX_HEIGHT {
            if n == 0 {
                return;
            }
            // SAFETY: `n` is the root or a checked child: a node.
            n = unsafe {
                if at_or_after(n) {
                    hit(n);
                    left::<MULTI>(n, env)
                } else {
                    right::<MULTI>(n, env)
                }
            };
        }
        if n != 0 {
            too_deep(n);
        }
    }

    /// Address order: the largest block, the lowest-addressed of equals, if
    /// it holds `need` bytes.
    ///
    /// # Safety
    /// As for [`first_fit`](Self::first_fit).
    pub(crate) unsafe fn worst_fit<const MULTI: bool>(&self, need: usize, env: &Env) -> usize {
        let n = self.root;
        // SAFETY: the root is 0 or a node.
        let largest = if n == 0 { 0 } else { unsafe { max(n) } };
        if largest < need {
            return 0;
        }
        // SAFETY: `max(n) == largest`.
        unsafe { Self::first_in::<MULTI>(n, largest, env) }
    }

    /// Verify the invariants; `visit(b)` checks that `b` is a free block of
    /// the heap and returns its size. At most `budget` nodes. Returns the
    /// number of nodes.
    pub(crate) fn check(
        &self,
        budget: usize,
        visit: &mut dyn FnMut(usize) -> Result<usize, CheckError>,
    ) -> Result<usize, CheckError> {
        let mut count = 0;
        self.check_sub(self.root, (0, u128::MAX), 0, budget, &mut count, visit)?;
        Ok(count)
    }

    /// [`check`](Self::check) of the subtree `n` whose keys must lie
    /// strictly within `bounds`, at `depth`: returns (height, max).
    /// Recursion is bounded by [`MAX_HEIGHT`].
    fn check_sub(
        &self,
        n: usize,
        bounds: (u128, u128),
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
        let k = self.key(n, size);
        if !(bounds.0 < k && k < bounds.1) {
            return Err(CheckError::new(n, "free tree is out of order here"));
        }
        // SAFETY: `visit` verified that `n` is a free block of the heap, at
        // least a node's size.
        let (l, r, h, m) = unsafe { (rd(n + LEFT) & !LINK_BITS, rd(n + RIGHT), height(n), max(n)) };
        let (hl, ml) = self.check_sub(l, (bounds.0, k), depth + 1, budget, count, visit)?;
        let (hr, mr) = self.check_sub(r, (k, bounds.1), depth + 1, budget, count, visit)?;
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
    pub(crate) fn contains(&self, b: usize, size: usize) -> bool {
        let k = self.key(b, size);
        let mut n = self.root;
        for _ in 0..MAX_HEIGHT {
            if n == 0 {
                return false;
            }
            // SAFETY: `check` verified every node of the tree.
            let kn = self.key(n, unsafe { self::size(n) });
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
