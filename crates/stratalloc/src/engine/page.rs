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
//! Free-list links are stored encoded (see [`Block`]): the word kept in a
//! free block is `next ^ slot ^ secret`, where `slot` is the block's own
//! address and `secret` a per-process random word. A write after free that
//! stores a plain pointer there decodes to noise. malloc's pop checks that
//! a decoded link stays in the block's own segment (three instructions);
//! every other walk (the owner's collection of remote frees, the
//! double-free scan, `check`) checks it is a block start in the carved part
//! of its own page. So a forged link is reported, never handed out.
//!
//! The FULL bit protocol: the owner sets bit 0 of `thread_free` (by CAS)
//! when it unlinks a full page. A remote free that finds the bit set first
//! clears it and sets `segment.pending` (while its own block still keeps the
//! page alive; the free that raises the flag also pushes the segment on
//! the owning heap's pending stack, `remote.rs::notify`), then pushes. The
//! owner, taking the segment off its stack, scans the segment's floating
//! pages and takes back those with remote frees. So a
//! freed block is never stranded on a floating page, and no thread touches
//! memory that may already be unmapped.

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering::*};

/// A free block: its first word links the list (encoded: see
/// [`Block::link`]); its second word holds the page's double-free key
/// ([`Page::key`]) while it is free.
#[repr(C)]
pub struct Block {
    pub next: usize,
    pub key: usize,
}

/// The per-process secret mixed into every free-list link and free key.
/// Set once by [`init_secret`] before the first page is made; never 0
/// after that.
static SECRET: AtomicUsize = AtomicUsize::new(0);

/// Draw the secret (first call only): `getrandom(2)` without blocking,
/// else the kernel's `AT_RANDOM` bytes mixed with addresses that ASLR
/// moves. Makes no allocation; safe to call from malloc's slow path.
pub fn init_secret() {
    if SECRET.load(Relaxed) != 0 {
        return;
    }
    let mut v = 0usize;
    // SAFETY: `v` is a valid buffer of its size; GRND_NONBLOCK never waits.
    let n = unsafe {
        libc::syscall(
            libc::SYS_getrandom,
            (&mut v as *mut usize).cast::<libc::c_void>(),
            core::mem::size_of::<usize>(),
            libc::GRND_NONBLOCK,
        )
    };
    if n != core::mem::size_of::<usize>() as libc::c_long {
        // SAFETY: getauxval has no preconditions; AT_RANDOM points at 16
        // bytes the kernel placed on the initial stack.
        let r = unsafe { libc::getauxval(libc::AT_RANDOM) } as *const usize;
        let stack = &v as *const usize as usize;
        v = if r.is_null() {
            0
        } else {
            // SAFETY: as above; the second word (the first is glibc's
            // stack guard).
            unsafe { r.add(1).read_unaligned() }
        };
        v ^= stack.rotate_left(29) ^ (init_secret as fn() as usize).rotate_left(47);
    }
    // Odd: never 0, and never a block address (16-aligned).
    v |= 1;
    let _ = SECRET.compare_exchange(0, v, Relaxed, Relaxed);
}

/// The secret (0 before [`init_secret`]). Each heap keeps a copy
/// (`Heap::secret`), which the fast paths read instead: in the shared
/// library a static costs a GOT load more.
#[inline(always)]
pub fn secret() -> usize {
    SECRET.load(Relaxed)
}

impl Block {
    /// The word stored in the free block at `slot` to link it to `next`
    /// (`secret` is [`secret()`]): `next ^ slot ^ secret` (two xors, null
    /// included). So a decoded link `x = word ^ secret` is `next ^ slot`:
    /// small for a link within the block's own segment, and `slot` itself
    /// at the end of a list (see [`Page::pop`]).
    #[inline(always)]
    pub fn link(slot: *mut Block, next: *mut Block, secret: usize) -> usize {
        next as usize ^ slot as usize ^ secret
    }

    /// The link stored at `slot`, decoded (not yet checked).
    ///
    /// # Safety
    /// `slot` is a readable block; `secret` is [`secret()`].
    #[inline(always)]
    pub unsafe fn next_of(slot: *mut Block, secret: usize) -> *mut Block {
        // SAFETY: per the contract.
        (unsafe { (*slot).next } ^ secret ^ slot as usize) as *mut Block
    }
}

/// `flags`: the page is floating (not in a queue).
pub const FULL: u8 = 1;
/// `flags`: some pointer handed out from this page is not a block start.
pub const ALIGNED: u8 = 2;
/// `thread_free` low bit: the owner wants to hear about remote frees.
pub const TF_FULL: usize = 1;
/// `class` of a page holding one large block.
pub const LARGE: u8 = 0xff;

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
    /// Blocks handed out, including ones waiting on `thread_free` (written
    /// by the owner; read by `mallinfo`'s walk: see [`Page::used`]).
    pub used: AtomicU32,
    /// Blocks carved from the span so far (written by the owner; read by
    /// remote frees to bound the offsets they accept).
    pub capacity: AtomicU32,
    /// `FULL | ALIGNED` (written by the owner only; read by anyone).
    pub flags: AtomicU8,
    /// Size class, or [`LARGE`].
    pub class: u8,
    /// This descriptor heads an allocated span (written by the owner).
    pub in_use: AtomicBool,
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
    /// `capacity` while `flags == 0`, else 0: the free fast path's test
    /// (`off / block_size < fast_lim` for a block boundary) then accepts
    /// only carved blocks, and fails for a floating or aligned page or a
    /// released span, with no separate test of `flags`. Written with
    /// `flags` and `capacity` (owner only), read by the owner only.
    pub fast_lim: AtomicU64,
    /// Bytes per block (written by the owner).
    pub block_size: AtomicUsize,
    // ---- second cache line
    /// `u64::MAX / block_size`.
    pub div_lim: u64,
    /// Queue links (owner only).
    pub next: *mut Page,
    pub prev: *mut Page,
    /// Slices in the span (written by the owner).
    pub slice_count: AtomicU32,
    /// Blocks that fit in the span.
    pub reserved: u32,
    /// Blocks other threads freed: pointer | [`TF_FULL`].
    pub thread_free: AtomicUsize,
}

const _: () = assert!(core::mem::offset_of!(Page, div_lim) == 64);
const _: () = assert!(core::mem::size_of::<Page>() == 128);

impl Page {
    /// The value of a free block's `key` word on this page: the
    /// descriptor's address mixed with the secret, so no data a program
    /// writes matches it by chance.
    #[inline(always)]
    pub fn key(page: *const Page, secret: usize) -> usize {
        page as usize ^ secret
    }

    relaxed_fields! {
        /// Blocks handed out, including ones waiting on `thread_free`.
        used / set_used: u32;
        /// This descriptor heads an allocated span.
        in_use / set_in_use: bool;
        /// Bytes per block (set by [`Page::set_block_size`]).
        block_size: usize;
        /// Slices in the span.
        slice_count / set_slice_count: u32;
    }

    /// Blocks carved so far (owner, or anyone bounding a block it holds).
    #[inline(always)]
    pub fn carved(&self) -> u32 {
        self.capacity.load(Relaxed)
    }

    /// Is `b` a block start in the carved part of this page? (Any address:
    /// a wrapped offset fails.)
    #[inline(always)]
    pub fn is_carved_block(&self, b: *const Block) -> bool {
        let off = (b as usize).wrapping_sub(self.start as usize) as u64;
        off.wrapping_mul(self.div_inv)
            .rotate_right(self.div_shift as u32)
            < self.carved() as u64
    }

    /// Make this span head an empty page of `class` with `reserved` blocks
    /// of `block_size` bytes (nothing carved yet).
    ///
    /// Takes the descriptor as a raw pointer, like every owner-side
    /// change of a page: no `&mut Page` exists while `mallinfo`'s walk
    /// may read its counters from another thread.
    ///
    /// # Safety
    /// `page` is a descriptor of the calling thread's heap.
    pub unsafe fn init(page: *mut Page, class: u8, block_size: usize, reserved: u32) {
        // SAFETY: the caller owns the descriptor.
        unsafe {
            (*page).class = class;
            Page::set_block_size(page, block_size);
            (*page).reserved = reserved;
            (*page).capacity.store(0, Relaxed);
            (*page).set_used(0);
            (*page).free = ptr::null_mut();
            (*page).local_free = ptr::null_mut();
            (*page).thread_free.store(0, Relaxed);
            (*page).set_flags(0);
        }
    }

    /// Set `flags` (and `fast_lim` to match). Owner only.
    #[inline]
    pub fn set_flags(&self, f: u8) {
        self.flags.store(f, Relaxed);
        self.fast_lim.store(self.fast_lim_for(f), Relaxed);
    }

    fn fast_lim_for(&self, flags: u8) -> u64 {
        if flags == 0 {
            self.carved() as u64
        } else {
            0
        }
    }

    /// Set `capacity` (and `fast_lim` to match). Owner only.
    #[inline]
    pub fn set_capacity(&self, n: u32) {
        self.capacity.store(n, Relaxed);
        self.fast_lim
            .store(self.fast_lim_for(self.flags.load(Relaxed)), Relaxed);
    }

    /// The page has no block in use: flags set for one use of it go
    /// (an aligned block made every free take the generic path). Owner
    /// only; the page is queued (not floating).
    #[inline]
    pub fn reset_if_empty(&self) {
        if self.used() == 0 && self.flags.load(Relaxed) & ALIGNED != 0 {
            self.set_flags(self.flags.load(Relaxed) & !ALIGNED);
        }
    }

    /// The owner's fast test: `off` is the offset of a carved block and
    /// `flags == 0`.
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
    ///
    /// # Safety
    /// `page` is a descriptor of the calling thread's heap (see [`Page::init`]).
    pub unsafe fn set_block_size(page: *mut Page, bs: usize) {
        // SAFETY: the caller owns the descriptor.
        unsafe {
            (*page).block_size.store(bs, Relaxed);
            let k = bs.trailing_zeros();
            let m = (bs >> k) as u64;
            // Newton's iteration doubles the correct low bits each step:
            // m * m == 1 (mod 8) for odd m, so 3 -> 6 -> 12 -> 24 -> 48 -> 96.
            let mut inv = m;
            for _ in 0..5 {
                inv = inv.wrapping_mul(2u64.wrapping_sub(m.wrapping_mul(inv)));
            }
            debug_assert_eq!(m.wrapping_mul(inv), 1);
            (*page).div_shift = k as u8;
            (*page).div_inv = inv;
            (*page).div_lim = u64::MAX / bs as u64;
            (*page).set_flags((*page).flags.load(Relaxed));
        }
    }

    /// Is `off` (bytes from `start`, any 64-bit value) a multiple of
    /// `block_size`? A multiply, a rotate and a compare instead of a
    /// division: with `block_size = d = 2^k * m` (m odd), `off` is a
    /// multiple iff `rotr(off * m^-1 mod 2^64, k) <= u64::MAX / d`
    /// (multiples map to `off / d`, which is at most that bound; for any
    /// other `off` either a low bit rotates to the top or the odd part
    /// lands above `u64::MAX / m`).
    ///
    /// Reads the three constants through the raw pointer: any thread may
    /// ask about a page whose block it holds (they are fixed while the page
    /// is in use), without a reference to a descriptor its owner writes.
    ///
    /// # Safety
    /// `page` is a descriptor in a mapped segment header.
    #[inline(always)]
    pub unsafe fn is_block_offset(page: *const Page, off: usize) -> bool {
        // SAFETY: per the contract; plain field reads.
        unsafe {
            (off as u64)
                .wrapping_mul((*page).div_inv)
                .rotate_right((*page).div_shift as u32)
                <= (*page).div_lim
        }
    }

    /// Pop a block from `free`; null if empty. Owner only.
    ///
    /// Takes a raw pointer: the static empty page (read-only, every field
    /// zero) is popped from too, and only read.
    ///
    /// # Safety
    /// `page` is a page of the calling thread's heap, or the empty page;
    /// `secret` is [`secret()`].
    #[inline(always)]
    pub unsafe fn pop(page: *mut Page, secret: usize) -> *mut u8 {
        // SAFETY: per the contract; blocks on `free` were checked to be
        // carved blocks of this page when they became its head.
        unsafe {
            let b = (*page).free;
            if !b.is_null() {
                // `x = next ^ b`: below the segment size iff the link stays
                // in the block's own segment, and `b` itself at the end of
                // the list (next null). That is the fast check: a forged or
                // damaged word decodes to noise, whose odds of landing in
                // the same 4 MiB without the secret are 2^-42. The exact
                // check (a carved block of this page) runs wherever a list
                // is walked off the fast path: collection, the double-free
                // scan, `check`.
                let x = (*b).next ^ secret;
                // Both tests without a branch between them (`&`, not
                // `&&`): the end of a list is not a taken branch, so the
                // one branch here is never taken but on damage (a taken
                // branch at every list's end cost a mispredict each).
                let bad = (x >> super::segment::SEGMENT_SHIFT != 0) & (x != b as usize);
                if bad {
                    bad_link(page, b);
                }
                let next = (x ^ b as usize) as *mut Block;
                (*page).free = next;
                (*b).key = 0;
                (*page).set_used((*page).used() + 1);
            }
            b.cast()
        }
    }

    /// Move remote frees to `local_free` and, if `free` is empty, make
    /// `local_free` the new `free`. Owner only.
    ///
    /// # Safety
    /// `page` is an in-use page of the calling thread's heap (see
    /// [`Page::init`]).
    pub unsafe fn collect(page: *mut Page) {
        // SAFETY: the caller owns the page.
        unsafe {
            if (*page).thread_free.load(Relaxed) & !TF_FULL != 0 {
                // Keep the FULL bit as it is; take the list.
                let mut old = (*page).thread_free.load(Relaxed);
                loop {
                    match (*page).thread_free.compare_exchange_weak(
                        old,
                        old & TF_FULL,
                        AcqRel,
                        Relaxed,
                    ) {
                        Ok(_) => break,
                        Err(o) => old = o,
                    }
                }
                // The list was built by remote frees of this page's blocks;
                // we now own it.
                Page::splice(page, (old & !TF_FULL) as *mut Block);
            }
            if (*page).free.is_null() {
                (*page).free = (*page).local_free;
                (*page).local_free = ptr::null_mut();
            }
        }
    }

    /// Put the remote frees `head..` on `local_free`. The list was written
    /// by other threads (and a program can write freed blocks): each link
    /// is checked to be a carved block of this page, and the walk stops
    /// after `used` blocks, so a cycle or a forged link is reported, not
    /// followed.
    ///
    /// # Safety
    /// As [`Page::collect`]; `head` was taken off `thread_free`.
    unsafe fn splice(page: *mut Page, head: *mut Block) {
        // SAFETY: the caller owns the page and the list.
        unsafe {
            if head.is_null() {
                return;
            }
            if !(*page).is_carved_block(head) {
                crate::fatal!(
                    "heap corruption: free of {:p}: not a block of page {:p} (invalid pointer)",
                    head,
                    (*page).start
                );
            }
            let mut n = 1u32;
            let mut tail = head;
            // `tail` is checked to be a carved block of this page before it
            // is read.
            loop {
                let next = Block::next_of(tail, secret());
                if next.is_null() {
                    break;
                }
                if n >= (*page).used() {
                    crate::fatal!(
                        "double free of a block of page {:p}: more blocks freed by other threads than in use ({:p} among them)",
                        (*page).start,
                        next
                    );
                }
                if !(*page).is_carved_block(next) {
                    bad_link(page, tail);
                }
                tail = next;
                n += 1;
            }
            (*tail).next = Block::link(tail, (*page).local_free, secret());
            (*page).local_free = head;
            if n > (*page).used() {
                crate::fatal!(
                    "double free of a block of page {:p}: more blocks freed by other threads than in use ({:p} among them)",
                    (*page).start,
                    head
                );
            }
            (*page).set_used((*page).used() - n);
            (*page).reset_if_empty();
        }
    }

    /// Carve more blocks (about one OS page's worth) onto `free`. Owner
    /// only; `free` must be empty and `capacity < reserved`.
    ///
    /// # Safety
    /// As [`Page::collect`].
    pub unsafe fn extend(page: *mut Page) {
        // SAFETY: the caller owns the page.
        unsafe {
            let cap = (*page).carved();
            debug_assert!((*page).free.is_null() && cap < (*page).reserved);
            let bs = (*page).block_size();
            let want = (4096 / bs).max(1) as u32;
            let n = want.min((*page).reserved - cap);
            let secret = secret();
            // Blocks [capacity, capacity + n) lie inside the span.
            let first = (*page).start.add(cap as usize * bs);
            let mut b = first;
            for _ in 1..n {
                let nx = b.add(bs);
                (*(b as *mut Block)).next = Block::link(b.cast(), nx.cast(), secret);
                b = nx;
            }
            (*(b as *mut Block)).next = Block::link(b.cast(), ptr::null_mut(), secret);
            (*page).free = first.cast();
            (*page).set_capacity(cap + n);
        }
    }

    /// A block is available right now or after `extend` (after `collect`).
    #[inline]
    pub fn has_room(&self) -> bool {
        !self.free.is_null() || self.carved() < self.reserved
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
    ///
    /// # Safety
    /// `page` is an in-use descriptor and `p` lies in its span; the fields
    /// read (`start`, `block_size`) are fixed while the page is in use.
    #[inline]
    pub unsafe fn block_start(page: *const Page, p: *const u8) -> *mut u8 {
        // SAFETY: per the contract; stays inside the span.
        unsafe {
            let start = (*page).start;
            let off = p as usize - start as usize;
            start.add(off - off % (*page).block_size())
        }
    }

    /// Is `b` on `free`, `local_free` or `thread_free`? O(blocks). Owner
    /// only (other threads only push on `thread_free`; the blocks already
    /// on it do not change). A walk stops at a link that is not a carved
    /// block and after `capacity` steps.
    pub unsafe fn is_listed(&self, b: *mut Block) -> bool {
        let tf = (self.thread_free.load(Acquire) & !TF_FULL) as *mut Block;
        let cap = self.carved();
        for head in [self.free, self.local_free, tf] {
            let mut x = head;
            let mut steps = 0u32;
            while !x.is_null() && steps <= cap && self.is_carved_block(x) {
                if x == b {
                    return true;
                }
                // SAFETY: a carved block of this page.
                x = unsafe { Block::next_of(x, secret()) };
                steps += 1;
            }
        }
        false
    }

    /// Verify this page's invariants (owner only, no remote frees running).
    pub unsafe fn check(&self) -> Result<(), &'static str> {
        if !self.in_use() {
            return Err("page not in use");
        }
        let flags = self.flags.load(Relaxed);
        if self.fast_lim.load(Relaxed) != self.fast_lim_for(flags) {
            return Err("fast_lim does not match flags");
        }
        if self.carved() > self.reserved {
            return Err("capacity > reserved");
        }
        if self.reserved as usize * self.block_size()
            > self.slice_count() as usize * super::segment::SLICE_SIZE
        {
            return Err("reserved blocks exceed the span");
        }
        let cap = self.carved();
        let tf = (self.thread_free.load(Acquire) & !TF_FULL) as *mut Block;
        let mut counts = [0u32; 3];
        for (k, head) in [self.free, self.local_free, tf].into_iter().enumerate() {
            let mut x = head;
            while !x.is_null() {
                if !self.is_carved_block(x) {
                    return Err("free block outside the carved part or misaligned");
                }
                counts[k] += 1;
                if counts[k] > cap {
                    return Err("free list longer than capacity (cycle or double free)");
                }
                // SAFETY: verified to be a block of this page.
                x = unsafe { Block::next_of(x, secret()) };
            }
        }
        if self.used() + counts[0] + counts[1] != cap {
            return Err("used + |free| + |local_free| != capacity");
        }
        if counts[2] > self.used() {
            return Err("|thread_free| > used");
        }
        Ok(())
    }
}

/// A free block's link does not decode to a carved block of its page: the
/// block was written after it was freed (or the list was forged).
#[cold]
#[inline(never)]
fn bad_link(page: *const Page, b: *mut Block) -> ! {
    crate::fatal!(
        "heap corruption: the free block {:p} of page {:p} has a damaged link (write after free?)",
        b,
        // SAFETY: `page` is a descriptor the caller read.
        unsafe { (*page).start }
    )
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
            // SAFETY: a local descriptor.
            unsafe { Page::set_block_size(&mut p, bs) };
            let pp: *const Page = &p;
            for off in (0..4096)
                .chain((1..64).map(|i| i * bs - 1))
                .chain((0..64).map(|i| i * bs + 16))
                .chain((1..64).map(|i| (i * bs).wrapping_neg()))
                .chain((0..64).map(|i| usize::MAX - i))
            {
                // SAFETY: a live local descriptor.
                let ok = unsafe { Page::is_block_offset(pp, off) };
                assert_eq!(ok, off % bs == 0, "bs {bs} off {off}");
            }
            for i in 0..4096 {
                // SAFETY: as above.
                assert!(unsafe { Page::is_block_offset(pp, i * bs) });
            }
        }
    }
}
