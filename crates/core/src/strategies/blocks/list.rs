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
/// `checked`: the heap's [`Profile::CHECKED`](super::Profile::CHECKED)
/// (a constant where the index knows its profile, so the trusting heap's
/// code has no check; [`Env::checks`] where it does not). Without it the
/// link is returned as it is.
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
pub(crate) unsafe fn next_checked<const MULTI: bool>(b: usize, env: &Env, checked: bool) -> usize {
    // SAFETY: `b` is a free block (contract); `n` is read only once
    // `env` says it is a header slot inside the heap's memory.
    unsafe {
        let n = next(b);
        if checked && n != 0 && !(env.holds(n) && prev(n) == b) {
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
/// `i` became empty. Both links are checked first, when `checked` (see
/// [`next_checked`]: each neighbour, or the head, must point back at
/// `b`); damage is reported, not followed.
///
/// # Safety
/// `b` must be on one of the lists of `heads`, whose blocks lie in `env`.
#[inline(always)]
pub(crate) unsafe fn unlink<const MULTI: bool>(
    heads: &mut [usize],
    b: usize,
    env: &Env,
    checked: bool,
) -> Option<usize> {
    // SAFETY: `b` is on a list, so it is a free block with link words;
    // its neighbours are written only after they checked out.
    unsafe {
        let n = next_checked::<MULTI>(b, env, checked);
        let p = prev(b);
        if p & 1 != 0 {
            if checked {
                match heads.get_mut(p >> 1) {
                    Some(head) if *head == b => *head = n,
                    _ => damaged(b),
                }
            } else {
                // SAFETY: trusted: `b` heads list `p >> 1`.
                *heads.get_unchecked_mut(p >> 1) = n;
            }
            if n == 0 {
                return Some(p >> 1);
            }
        } else {
            if checked && !(env.holds(p) && next(p) == b) {
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
    checked: bool,
) -> (usize, bool) {
    debug_assert!(i < heads.len());
    // SAFETY: per the function contract.
    let head = unsafe { heads.get_unchecked_mut(i) };
    let b = *head;
    // SAFETY: `b` heads the list, so it is a free block.
    let n = unsafe { next_checked::<MULTI>(b, env, checked) };
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
