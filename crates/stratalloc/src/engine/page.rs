//! Pages: a span of slices dedicated to one size class, with three free
//! lists (free-list sharding).
//!
//! ```text
//!   page (n slices of 64 KiB)           descriptor (in the segment header)
//!   +-----+-----+-----+-----+---------+  free        -> blocks malloc pops
//!   | blk | blk | blk | ... | (tail)  |  local_free  -> blocks the owner freed
//!   +-----+-----+-----+-----+---------+  thread_free -> blocks other threads freed
//!   |<-- capacity carved -->|            (atomic; low bit = FULL, see below)
//!   |<---- reserved blocks ---------->|
//! ```
//!
//! Invariants (for an in-use page of a live heap, between operations):
//!
//! - `used + |free| + |local_free| == capacity` and `|thread_free| <= used`
//!   (`used` counts blocks handed out, including those other threads freed
//!   but the owner has not collected yet)
//! - `capacity <= reserved == span_bytes / block_size`
//! - every block on a list lies in `[start, start + capacity * block_size)`
//!   at a multiple of `block_size` from `start`, and is on one list only
//! - a page of a size class is in its heap's queue for that class, or
//!   *floating* (`flags & FULL`): then all its blocks were handed out when
//!   it was unlinked and the FULL bit was set on `thread_free`, or a remote
//!   free cleared that bit and set its segment's `pending` flag.
//!
//! The FULL bit protocol: the owner sets bit 0 of `thread_free` (by CAS)
//! when it unlinks a full page. A remote free that finds the bit set first
//! clears it and sets `segment.pending` (while its own block still keeps the
//! page alive), then pushes. The owner, seeing `pending`, scans the
//! segment's floating pages and takes back those with remote frees. So a
//! freed block is never stranded on a floating page, and no thread touches
//! memory that may already be unmapped.

use core::ptr;
use core::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering::*};

/// A free block: its first word links the list; its second word holds the
/// page's double-free key while it is free.
#[repr(C)]
pub struct Block {
    pub next: *mut Block,
    pub key: usize,
}

/// `flags`: the page is floating (not in a queue).
pub const FULL: u8 = 1;
/// `flags`: some pointer handed out from this page is not a block start.
pub const ALIGNED: u8 = 2;
/// `thread_free` low bit: the owner wants to hear about remote frees.
pub const TF_FULL: usize = 1;
/// `class` of a page holding one large block.
pub const LARGE: u8 = 0xff;

/// The key is the descriptor's address plus this odd constant (one `lea`
/// on the free fast path): an odd value, never a block pointer, unlikely
/// in data.
const KEY_ADD: usize = 0x5bd1_e995;

/// Per-page descriptor; lives in the segment header, one per slice (only
/// the first slice of a span is a real page; the others point back to it
/// with `slice_offset`).
///
/// Two cache lines: the first holds what the owner's malloc and free fast
/// paths touch (and realloc's, but for `div_lim`), the second the queue
/// links, the rarely read sizes and `thread_free`, which other threads
/// write: their frees do not take the owner's hot line away.
#[repr(C, align(64))]
pub struct Page {
    /// Blocks ready for malloc (owner only).
    pub free: *mut Block,
    /// Blocks the owner freed (owner only).
    pub local_free: *mut Block,
    /// Blocks handed out, including ones waiting on `thread_free` (owner).
    pub used: u32,
    /// Blocks carved from the span so far (owner).
    pub capacity: u32,
    /// `FULL | ALIGNED` (written by the owner only; read by anyone).
    pub flags: AtomicU8,
    /// Size class, or [`LARGE`].
    pub class: u8,
    /// This descriptor heads an allocated span.
    pub in_use: bool,
    /// The span came from slices known to be zero (fresh or purged).
    pub is_zero: bool,
    /// `block_size == 2^div_shift * m` with `m` odd (see [`Page::is_block_offset`]).
    pub div_shift: u8,
    /// For a descriptor inside a span: distance in slices to the head.
    pub slice_offset: u8,
    /// When `used` last dropped to 0 on a queued page (ms, truncated; it
    /// fills padding): the periodic visit frees pages empty for a delay.
    pub retired_at: u16,
    /// First byte of the span.
    pub start: *mut u8,
    /// Inverse of `m` modulo 2^64.
    pub div_inv: u64,
    /// `div_lim + 1` while `flags == 0`, else 0: the free fast path's
    /// block-boundary test (`< fast_lim`) then also fails for a floating
    /// or aligned page, with no separate test of `flags`. Written with
    /// `flags` (owner only), read by the owner only.
    pub fast_lim: AtomicU64,
    /// Bytes per block.
    pub block_size: usize,
    // ---- second cache line
    /// `u64::MAX / block_size`.
    pub div_lim: u64,
    /// Queue links (owner only).
    pub next: *mut Page,
    pub prev: *mut Page,
    /// Slices in the span.
    pub slice_count: u32,
    /// Blocks that fit in the span.
    pub reserved: u32,
    /// Blocks other threads freed: pointer | [`TF_FULL`].
    pub thread_free: AtomicUsize,
}

const _: () = assert!(core::mem::offset_of!(Page, div_lim) == 64);
const _: () = assert!(core::mem::size_of::<Page>() == 128);

impl Page {
    /// The value of a free block's `key` word on this page.
    #[inline(always)]
    pub fn key(&self) -> usize {
        (self as *const Page as usize).wrapping_add(KEY_ADD)
    }

    /// Make this span head an empty page of `class` with `reserved` blocks
    /// of `block_size` bytes (nothing carved yet).
    pub fn init(&mut self, class: u8, block_size: usize, reserved: u32) {
        self.class = class;
        self.set_block_size(block_size);
        self.reserved = reserved;
        self.capacity = 0;
        self.used = 0;
        self.free = ptr::null_mut();
        self.local_free = ptr::null_mut();
        self.thread_free.store(0, Relaxed);
        self.set_flags(0);
    }

    /// Set `flags` (and `fast_lim` to match). Owner only.
    #[inline]
    pub fn set_flags(&self, f: u8) {
        self.flags.store(f, Relaxed);
        let lim = if f == 0 { self.div_lim + 1 } else { 0 };
        self.fast_lim.store(lim, Relaxed);
    }

    /// The owner's fast test: `off` is a block boundary and `flags == 0`.
    #[inline(always)]
    pub fn is_plain_block_offset(&self, off: usize) -> bool {
        (off as u64)
            .wrapping_mul(self.div_inv)
            .rotate_right(self.div_shift as u32)
            // SAFETY: only the owner writes `fast_lim` and only the owner
            // calls this: a plain read (which the compiler can fold into
            // the compare) races with nothing.
            < unsafe { self.fast_lim.as_ptr().read() }
    }

    /// Set `block_size` and the constants of the divisibility test.
    pub fn set_block_size(&mut self, bs: usize) {
        self.block_size = bs;
        let k = bs.trailing_zeros();
        let m = (bs >> k) as u64;
        // Newton's iteration doubles the correct low bits each step:
        // m * m == 1 (mod 8) for odd m, so 3 -> 6 -> 12 -> 24 -> 48 -> 96.
        let mut inv = m;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(m.wrapping_mul(inv)));
        }
        debug_assert_eq!(m.wrapping_mul(inv), 1);
        self.div_shift = k as u8;
        self.div_inv = inv;
        self.div_lim = u64::MAX / bs as u64;
        self.set_flags(self.flags.load(Relaxed));
    }

    /// Is `off` (bytes from `start`, any 64-bit value) a multiple of
    /// `block_size`? A multiply, a rotate and a compare instead of a
    /// division: with `block_size = d = 2^k * m` (m odd), `off` is a
    /// multiple iff `rotr(off * m^-1 mod 2^64, k) <= u64::MAX / d`
    /// (multiples map to `off / d`, which is at most that bound; for any
    /// other `off` either a low bit rotates to the top or the odd part
    /// lands above `u64::MAX / m`).
    #[inline(always)]
    pub fn is_block_offset(&self, off: usize) -> bool {
        (off as u64)
            .wrapping_mul(self.div_inv)
            .rotate_right(self.div_shift as u32)
            <= self.div_lim
    }

    /// Pop a block from `free`; null if empty. Owner only.
    #[inline(always)]
    pub unsafe fn pop(&mut self) -> *mut u8 {
        let b = self.free;
        if !b.is_null() {
            // SAFETY: blocks on `free` are valid blocks of this page.
            unsafe {
                self.free = (*b).next;
                (*b).key = 0;
            }
            self.used += 1;
        }
        b.cast()
    }

    /// Move remote frees to `local_free` and, if `free` is empty, make
    /// `local_free` the new `free`. Owner only.
    pub unsafe fn collect(&mut self) {
        if self.thread_free.load(Relaxed) & !TF_FULL != 0 {
            // Keep the FULL bit as it is; take the list.
            let mut old = self.thread_free.load(Relaxed);
            loop {
                match self
                    .thread_free
                    .compare_exchange_weak(old, old & TF_FULL, AcqRel, Relaxed)
                {
                    Ok(_) => break,
                    Err(o) => old = o,
                }
            }
            let head = (old & !TF_FULL) as *mut Block;
            // SAFETY: the list was built by remote frees of this page's
            // blocks; we now own it.
            unsafe { self.splice(head) };
        }
        if self.free.is_null() {
            self.free = self.local_free;
            self.local_free = ptr::null_mut();
        }
    }

    unsafe fn splice(&mut self, head: *mut Block) {
        if head.is_null() {
            return;
        }
        let mut n = 1u32;
        let mut tail = head;
        // SAFETY: a well-formed list of blocks of this page.
        unsafe {
            while !(*tail).next.is_null() {
                tail = (*tail).next;
                n += 1;
            }
            (*tail).next = self.local_free;
        }
        self.local_free = head;
        if n > self.used {
            crate::fatal!(
                "heap corruption: page {:p} got more frees than blocks in use (double free?)",
                self.start
            );
        }
        self.used -= n;
    }

    /// Carve more blocks (about one OS page's worth) onto `free`. Owner
    /// only; `free` must be empty and `capacity < reserved`.
    pub unsafe fn extend(&mut self) {
        debug_assert!(self.free.is_null() && self.capacity < self.reserved);
        let bs = self.block_size;
        let want = (4096 / bs).max(1) as u32;
        let n = want.min(self.reserved - self.capacity);
        // SAFETY: blocks [capacity, capacity + n) lie inside the span.
        unsafe {
            let first = self.start.add(self.capacity as usize * bs);
            let mut b = first;
            for _ in 1..n {
                let nx = b.add(bs);
                (*(b as *mut Block)).next = nx.cast();
                b = nx;
            }
            (*(b as *mut Block)).next = ptr::null_mut();
            self.free = first.cast();
        }
        self.capacity += n;
    }

    /// A block is available right now or after `extend` (after `collect`).
    #[inline]
    pub fn has_room(&self) -> bool {
        !self.free.is_null() || self.capacity < self.reserved
    }

    /// Try to mark this (full) page floating: sets the FULL bit on
    /// `thread_free` unless remote frees are waiting. Returns `false` (and
    /// leaves the page unmarked) if there are some. Owner only.
    pub fn try_mark_full(&self) -> bool {
        let mut old = self.thread_free.load(Relaxed);
        loop {
            if old & !TF_FULL != 0 {
                return false;
            }
            match self
                .thread_free
                .compare_exchange_weak(old, old | TF_FULL, AcqRel, Relaxed)
            {
                Ok(_) => break,
                Err(o) => old = o,
            }
        }
        self.set_flags(self.flags.load(Relaxed) | FULL);
        true
    }

    /// Clear the FULL state (owner only).
    pub fn clear_full(&self) {
        self.set_flags(self.flags.load(Relaxed) & !FULL);
        self.thread_free.fetch_and(!TF_FULL, AcqRel);
    }

    /// Start of the block containing `p` (for pages with `ALIGNED`).
    #[inline]
    pub fn block_start(&self, p: *const u8) -> *mut u8 {
        let off = p as usize - self.start as usize;
        // SAFETY: stays inside the span.
        unsafe { self.start.add(off - off % self.block_size) }
    }

    /// Is `b` on `free` or `local_free`? O(blocks). Owner only.
    pub unsafe fn is_listed(&self, b: *mut Block) -> bool {
        for head in [self.free, self.local_free] {
            let mut x = head;
            let mut steps = 0u32;
            while !x.is_null() && steps <= self.capacity {
                if x == b {
                    return true;
                }
                // SAFETY: list of this page's blocks.
                x = unsafe { (*x).next };
                steps += 1;
            }
        }
        false
    }

    /// Verify this page's invariants (owner only, no remote frees running).
    pub unsafe fn check(&self) -> Result<(), &'static str> {
        if !self.in_use {
            return Err("page not in use");
        }
        let flags = self.flags.load(Relaxed);
        let want = if flags == 0 { self.div_lim + 1 } else { 0 };
        if self.fast_lim.load(Relaxed) != want {
            return Err("fast_lim does not match flags");
        }
        if self.capacity > self.reserved {
            return Err("capacity > reserved");
        }
        if self.reserved as usize * self.block_size
            > self.slice_count as usize * super::segment::SLICE_SIZE
        {
            return Err("reserved blocks exceed the span");
        }
        let end = self.start as usize + self.capacity as usize * self.block_size;
        let tf = (self.thread_free.load(Acquire) & !TF_FULL) as *mut Block;
        let mut counts = [0u32; 3];
        for (k, head) in [self.free, self.local_free, tf].into_iter().enumerate() {
            let mut x = head;
            while !x.is_null() {
                let a = x as usize;
                if a < self.start as usize
                    || a >= end
                    || (a - self.start as usize) % self.block_size != 0
                {
                    return Err("free block outside the carved part or misaligned");
                }
                counts[k] += 1;
                if counts[k] > self.capacity {
                    return Err("free list longer than capacity (cycle or double free)");
                }
                // SAFETY: verified to be a block of this page.
                x = unsafe { (*x).next };
            }
        }
        if self.used + counts[0] + counts[1] != self.capacity {
            return Err("used + |free| + |local_free| != capacity");
        }
        if counts[2] > self.used {
            return Err("|thread_free| > used");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::size_class::{class_size, CLASSES};
    use super::*;

    #[test]
    fn divisibility_test_matches_remainder() {
        // SAFETY: a zeroed descriptor is a valid (empty) page.
        let mut p: Page = unsafe { core::mem::zeroed() };
        let larges = (1..=32).map(|n| n * super::super::segment::SLICE_SIZE);
        for bs in (0..CLASSES).map(class_size).chain(larges) {
            p.set_block_size(bs);
            for off in (0..4096)
                .chain((1..64).map(|i| i * bs - 1))
                .chain((0..64).map(|i| i * bs + 16))
                .chain((1..64).map(|i| (i * bs).wrapping_neg()))
                .chain((0..64).map(|i| usize::MAX - i))
            {
                assert_eq!(p.is_block_offset(off), off % bs == 0, "bs {bs} off {off}");
            }
            for i in 0..4096 {
                assert!(p.is_block_offset(i * bs));
            }
        }
    }
}
