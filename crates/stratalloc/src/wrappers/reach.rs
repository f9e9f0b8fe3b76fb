//! Which tracked blocks a program can still reach: LeakSanitizer's
//! algorithm over the leak wrapper's block table, in memory mapped from the
//! OS (nothing here allocates from the heap, so it runs with the other
//! threads stopped, whatever locks they hold).
//!
//! Words:
//! - a **root** is memory the program reaches without a heap pointer: the
//!   writable segments of loaded objects, the threads' stacks, registers
//!   and static TLS ([`super::world`] finds them);
//! - a word **points into** a block if its value lies in `[start, start +
//!   size)` (interior pointers count, as with LSan's default; a block of 0
//!   bytes is pointed to by its start);
//! - a block is **reachable** if a root word or a reachable block points
//!   into it;
//! - an unreachable block is an **indirect** leak if another unreachable
//!   block points into it, else a **direct** leak (a lost list head is
//!   direct, its nodes indirect; a cycle of lost blocks is all indirect,
//!   as with LSan).
//!
//! ```text
//!   roots ──scan──> reachable ──flood (worklist)──> reachable ...
//!   every unreachable block ──scan──> blocks it points into: indirect
//!   the unreachable rest: direct
//! ```
//!
//! Scanning is conservative, word by word at word alignment: any word whose
//! value falls in a block keeps it. A root range is scanned minus the
//! tracked blocks inside it (heap memory is never a root) and minus the
//! ranges the caller excludes (the wrappers' own tables).
//!
//! - **Time**: O((R + H) log n): R root words, H bytes of blocks scanned,
//!   n blocks (a binary search per word that falls between the lowest and
//!   the highest block).
//! - **Space**: 24 bytes per block, 4 bytes per block of worklist.
//!
//! Invariants: `blocks` is sorted by `start` and blocks do not overlap; the
//! worklist holds each block at most once (a block is pushed when it becomes
//! reachable, which happens once).

use core::mem::size_of;

use crate::os::{map_meta, page_round, unmap_meta};

/// A block's standing after [`Marker::classify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Not reached (yet): after classification, a direct leak.
    Unreached = 0,
    /// Reachable from a root.
    Reachable = 1,
    /// Unreachable, pointed into by another unreachable block.
    Indirect = 2,
    /// Unreachable, but its stack matches a suppression (or it is reached
    /// only from such a block): not reported.
    Suppressed = 3,
}

/// One tracked block.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct Block {
    /// The pointer the program got.
    pub start: usize,
    /// The size it asked for.
    pub size: usize,
    /// Its allocation stack (an id of the leak wrapper's stack table).
    pub stack: u32,
    /// Where it stands.
    pub state: State,
}

/// A fixed-capacity array in memory mapped from the OS, unmapped on drop;
/// only the elements pushed are ever read.
pub struct Mapped<T: Copy> {
    ptr: *mut T,
    cap: usize,
    len: usize,
    bytes: usize,
}

impl<T: Copy> Mapped<T> {
    /// Room for `cap` elements; `None` if the mapping failed.
    pub fn with_capacity(cap: usize) -> Option<Self> {
        let bytes = page_round(cap.max(1).checked_mul(size_of::<T>())?)?;
        let ptr = map_meta(bytes).cast::<T>();
        if ptr.is_null() {
            return None;
        }
        Some(Mapped {
            ptr,
            cap: bytes / size_of::<T>(),
            len: 0,
            bytes,
        })
    }

    /// Append `v`; `false` if full.
    pub fn push(&mut self, v: T) -> bool {
        if self.len == self.cap {
            return false;
        }
        // SAFETY: `len < cap`, inside the mapping.
        unsafe { self.ptr.add(self.len).write(v) };
        self.len += 1;
        true
    }

    /// Remove and return the last element.
    pub fn pop(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        // SAFETY: element `len` was pushed.
        Some(unsafe { self.ptr.add(self.len).read() })
    }

    /// The elements pushed.
    pub fn as_slice(&self) -> &[T] {
        // SAFETY: the first `len` elements were written by `push`.
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The elements pushed, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as in `as_slice`, and we hold `&mut self`.
        unsafe { core::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    /// The mapping as `(start, end)`, to exclude it from the roots.
    pub fn span(&self) -> (usize, usize) {
        let s = self.ptr as usize;
        (s, s + self.bytes)
    }
}

impl<T: Copy> Drop for Mapped<T> {
    fn drop(&mut self) {
        // SAFETY: mapped by `with_capacity` with this size; nothing refers
        // to it once we are dropped.
        unsafe { unmap_meta(self.ptr.cast(), self.bytes) };
    }
}

/// The marking state: the blocks, sorted, and a worklist of indices.
pub struct Marker<'a> {
    blocks: &'a mut [Block],
    work: Mapped<u32>,
    lo: usize,
    hi: usize,
}

/// Read the word at `a`.
///
/// # Safety
/// `a` is word-aligned and readable.
#[inline]
unsafe fn word(a: usize) -> usize {
    // SAFETY: forwarded from the caller. Volatile: the memory belongs to
    // the program and is read as it is, with no assumption about it.
    unsafe { core::ptr::read_volatile(a as *const usize) }
}

const W: usize = size_of::<usize>();

impl<'a> Marker<'a> {
    /// A marker over `blocks` (sorted here, by `start`); `None` if the
    /// worklist cannot be mapped.
    pub fn new(blocks: &'a mut [Block]) -> Option<Self> {
        blocks.sort_unstable_by_key(|b| b.start);
        let work = Mapped::with_capacity(blocks.len())?;
        let lo = blocks.first().map_or(usize::MAX, |b| b.start);
        let hi = blocks
            .iter()
            .map(|b| b.start + b.size.max(1))
            .max()
            .unwrap_or(0);
        Some(Marker {
            blocks,
            work,
            lo,
            hi,
        })
    }

    /// The worklist's mapping (to exclude from the roots).
    pub fn work_span(&self) -> (usize, usize) {
        self.work.span()
    }

    /// The block that `v` points into.
    #[inline]
    fn find(&self, v: usize) -> Option<usize> {
        if v < self.lo || v >= self.hi {
            return None;
        }
        let i = self.blocks.partition_point(|b| b.start <= v);
        if i == 0 {
            return None;
        }
        let b = &self.blocks[i - 1];
        (v - b.start < b.size.max(1)).then_some(i - 1)
    }

    /// Index of the first block that ends after `a`.
    fn first_ending_after(&self, a: usize) -> usize {
        self.blocks
            .partition_point(|b| b.start + b.size.max(1) <= a)
    }

    /// Mark what the words of `[a, b)` point into as reachable and queue
    /// it (no block is skipped: the caller gives a range with no block in it).
    ///
    /// # Safety
    /// `[a, b)` is readable.
    unsafe fn scan_plain(&mut self, a: usize, b: usize) {
        let mut p = (a + W - 1) & !(W - 1);
        while p + W <= b {
            // SAFETY: inside `[a, b)`, aligned.
            let v = unsafe { word(p) };
            if let Some(i) = self.find(v) {
                if self.blocks[i].state != State::Reachable {
                    self.blocks[i].state = State::Reachable;
                    // Each block is pushed once; the worklist has room for all.
                    self.work.push(i as u32);
                }
            }
            p += W;
        }
    }

    /// Scan the root range `[a, b)`, skipping the tracked blocks inside it
    /// and the `excluded` ranges (sorted or not; a handful).
    ///
    /// # Safety
    /// `[a, b)` is readable.
    pub unsafe fn scan_root(&mut self, a: usize, b: usize, excluded: &[(usize, usize)]) {
        // Cut the range at the first excluded range that overlaps it.
        for &(xa, xb) in excluded {
            if xa < b && a < xb {
                if a < xa {
                    // SAFETY: a sub-range of `[a, b)`.
                    unsafe { self.scan_root(a, xa, excluded) };
                }
                if xb < b {
                    // SAFETY: a sub-range of `[a, b)`.
                    unsafe { self.scan_root(xb, b, excluded) };
                }
                return;
            }
        }
        let mut cur = a;
        let mut i = self.first_ending_after(a);
        while cur < b {
            let next = self.blocks.get(i).map_or(b, |blk| blk.start.min(b));
            if cur < next {
                // SAFETY: a sub-range of `[a, b)` with no block in it.
                unsafe { self.scan_plain(cur, next) };
            }
            match self.blocks.get(i) {
                Some(blk) if blk.start < b => cur = cur.max(blk.start + blk.size.max(1)),
                _ => break,
            }
            i += 1;
        }
    }

    /// Mark the blocks `root` accepts as reachable, as if a root pointed
    /// into them (the flood scans them).
    pub fn keep(&mut self, mut root: impl FnMut(&Block) -> bool) {
        for i in 0..self.blocks.len() {
            if self.blocks[i].state != State::Reachable && root(&self.blocks[i]) {
                self.blocks[i].state = State::Reachable;
                self.work.push(i as u32);
            }
        }
    }

    /// Mark everything reachable from what was queued, transitively.
    ///
    /// # Safety
    /// Every block's `[start, start + size)` is readable.
    pub unsafe fn flood(&mut self) {
        while let Some(i) = self.work.pop() {
            let b = self.blocks[i as usize];
            // SAFETY: a live block, readable by the caller's contract.
            unsafe { self.scan_plain(b.start, b.start + b.size) };
        }
    }

    /// After the roots are scanned and flooded: mark every unreachable block
    /// that another unreachable block points into as indirect (the rest
    /// stay `Unreached`: the direct leaks).
    ///
    /// # Safety
    /// As [`flood`](Self::flood).
    pub unsafe fn classify(&mut self) {
        for i in 0..self.blocks.len() {
            let b = self.blocks[i];
            if b.state == State::Reachable {
                continue;
            }
            let mut p = (b.start + W - 1) & !(W - 1);
            while p + W <= b.start + b.size {
                // SAFETY: inside the block.
                let v = unsafe { word(p) };
                p += W;
                match self.find(v) {
                    Some(j) if j != i && self.blocks[j].state == State::Unreached => {
                        self.blocks[j].state = State::Indirect;
                    }
                    _ => {}
                }
            }
        }
    }

    /// Mark every unreachable block that a `Suppressed` block reaches as
    /// suppressed too (its leak is the suppressed one's).
    ///
    /// # Safety
    /// The unreachable blocks' memory is readable.
    pub unsafe fn spread_suppressed(&mut self) {
        for i in 0..self.blocks.len() {
            if self.blocks[i].state == State::Suppressed {
                self.work.push(i as u32);
            }
        }
        while let Some(i) = self.work.pop() {
            let b = self.blocks[i as usize];
            let mut p = (b.start + W - 1) & !(W - 1);
            while p + W <= b.start + b.size {
                // SAFETY: inside the block.
                let v = unsafe { word(p) };
                p += W;
                if let Some(j) = self.find(v) {
                    if matches!(self.blocks[j].state, State::Unreached | State::Indirect) {
                        self.blocks[j].state = State::Suppressed;
                        self.work.push(j as u32);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks carved from one buffer the test owns: `sizes` in bytes, each
    /// at a 64-byte slot.
    fn carve(mem: &mut [usize], sizes: &[usize]) -> Vec<Block> {
        let base = mem.as_mut_ptr() as usize;
        sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| Block {
                start: base + i * 64,
                size,
                stack: i as u32,
                state: State::Unreached,
            })
            .collect()
    }

    fn states(blocks: &[Block]) -> Vec<State> {
        let mut b = blocks.to_vec();
        b.sort_by_key(|b| b.stack);
        b.iter().map(|b| b.state).collect()
    }

    #[test]
    fn roots_list_heads_and_interior_pointers() {
        // 6 blocks of 32 bytes (4 words) in 64-byte slots.
        let mut mem = vec![0usize; 6 * 8];
        let blocks = carve(&mut mem, &[32; 6]);
        let at = |i: usize| blocks[i].start;
        // 0: reachable from the root (interior pointer), points to 1.
        // 2 -> 3 -> 4 -> 3 (a lost list with a cycle at its tail): 2 is
        // direct, 3 and 4 indirect. 5: lost, alone: direct.
        mem[0] = at(1);
        mem[2 * 8] = at(3);
        mem[3 * 8 + 1] = at(4) + 8;
        mem[4 * 8 + 3] = at(3);
        mem[5 * 8] = at(5); // a pointer to itself does not make it indirect
        let root = [at(0) + 17, 12345];
        let mut blocks = blocks;
        let mut m = Marker::new(&mut blocks).unwrap();
        // SAFETY: `root` and every block are readable test memory.
        unsafe {
            m.scan_root(root.as_ptr() as usize, root.as_ptr() as usize + 16, &[]);
            m.flood();
            m.classify();
        }
        use State::*;
        assert_eq!(
            states(&blocks),
            [Reachable, Reachable, Unreached, Indirect, Indirect, Unreached]
        );
    }

    #[test]
    fn heap_memory_and_excluded_ranges_are_not_roots() {
        let mut mem = vec![0usize; 3 * 8];
        let mut blocks = carve(&mut mem, &[16, 16, 0]);
        let (b0, b1, b2) = (blocks[0].start, blocks[1].start, blocks[2].start);
        // Block 0 points at 1; the whole buffer (blocks included) is then
        // given as one root range, with its last slot excluded.
        mem[0] = b1;
        mem[6] = b0; // slack after block 0: a root word, keeps 0
        mem[8 + 6] = b2; // slack after block 1: excluded below
        let base = mem.as_ptr() as usize;
        let mut m = Marker::new(&mut blocks).unwrap();
        // SAFETY: `mem` is readable.
        unsafe {
            m.scan_root(base, base + 3 * 64, &[(base + 64 + 48, base + 128)]);
            m.flood();
            m.classify();
        }
        use State::*;
        assert_eq!(states(&blocks), [Reachable, Reachable, Unreached]);
    }

    #[test]
    fn suppression_spreads_to_what_the_block_holds() {
        let mut mem = vec![0usize; 3 * 8];
        let mut blocks = carve(&mut mem, &[16, 16, 16]);
        mem[0] = blocks[1].start;
        let mut m = Marker::new(&mut blocks).unwrap();
        // SAFETY: test memory.
        unsafe { m.classify() };
        m.blocks.iter_mut().find(|b| b.stack == 0).unwrap().state = State::Suppressed;
        // SAFETY: test memory.
        unsafe { m.spread_suppressed() };
        use State::*;
        assert_eq!(states(&blocks), [Suppressed, Suppressed, Unreached]);
    }
}
