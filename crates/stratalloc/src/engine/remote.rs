//! Remote frees in batches: a block freed by a thread that does not own
//! its page is linked into a small per-heap buffer keyed by its page, and
//! a whole chain goes onto the page's `thread_free` with one CAS.
//!
//! ```text
//!   heap.remote[slot(page)] = { page, head -> blk -> blk -> tail, n, bytes }
//!   free of a block of another heap's page P:
//!     slot holds P:      link the block at the head        (no atomic)
//!     slot holds Q != P: publish Q's chain, start P's      (one CAS)
//!     n == REMOTE_BATCH or bytes >= REMOTE_BATCH_BYTES: publish
//!   publish: tail.next = thread_free; CAS thread_free: old -> head
//!            (the FULL-bit protocol of `page.rs` once per chain)
//! ```
//!
//! Invariants (for a heap that owns its buffer):
//! - `remote_open` has bit `i` set iff `remote[i].page` is non-null
//! - an open slot's chain `head .. tail` holds `n >= 1` distinct carved
//!   blocks of `page`, linked with [`Block::link`] (the tail's link is
//!   written when the chain is published), each carrying the page's free
//!   key; they still count in the page's `used`, so the page stays in use
//!   (and its segment mapped) until the chain is published
//!
//! A chain is published when it is full, when another page needs its
//! slot, every 64th allocation slow path of the freeing thread (with the
//! periodic work), when a `trim()` reaches the thread (its own call, or
//! its next slow path after another thread's) and at thread exit. So at most `REMOTE_SLOTS` chains, each
//! under `REMOTE_BATCH` blocks and `REMOTE_BATCH_BYTES` bytes, wait with a
//! thread that only frees (until then they count as in use, in
//! `heap_info` too). Blocks of [`REMOTE_BATCH_BYTES`] or more, and
//! frees by a thread with no heap (it never allocated, or it is exiting),
//! are published alone at once.
//!
//! The double-free checks are the same as for an unbatched free: the block
//! carries the page's key from its free on (a second free by any thread
//! other than the owner finds it), and the owner treats a key on a block
//! it does not find on its lists as a free by another thread that is still
//! in a batch (`free.rs`). The owner's collection walks a published chain
//! like any other (`Page::splice`: every link checked, bounded by `used`).

use core::sync::atomic::Ordering::*;

use super::heap::{Heap, UNINIT};
use super::page::{Block, Page, TF_FULL};
use super::segment::{segment_of, Segment, SEGMENT_SHIFT};
pub use crate::tuning::{REMOTE_BATCH, REMOTE_BATCH_BYTES, REMOTE_SLOTS};

/// One slot of a heap's remote buffer (see the module invariants).
#[derive(Clone, Copy)]
pub struct Batch {
    pub page: *mut Page,
    pub head: *mut Block,
    pub tail: *mut Block,
    pub n: u32,
    pub bytes: u32,
}

impl Batch {
    pub const EMPTY: Batch = Batch {
        page: core::ptr::null_mut(),
        head: core::ptr::null_mut(),
        tail: core::ptr::null_mut(),
        n: 0,
        bytes: 0,
    };
}

const _: () = assert!(REMOTE_SLOTS <= 64 && REMOTE_SLOTS.is_power_of_two());

/// The slot of `page`: descriptors are 128 bytes apart (64 per segment),
/// and the segment's address is mixed in.
#[inline(always)]
fn slot(page: *mut Page) -> usize {
    let a = page as usize;
    ((a >> 7) ^ (a >> SEGMENT_SHIFT)) % REMOTE_SLOTS
}

/// Free `b` (a carved block of `page`, in `seg`, checked by the caller,
/// not on any list) on behalf of a thread that does not own the page;
/// `key` is the page's free key.
///
/// # Safety
/// `h` is the calling thread's heap (possibly the static empty heap); `b`
/// is a live block of `page` that the caller gives up.
#[inline]
pub unsafe fn push(h: *mut Heap, seg: *mut Segment, page: *mut Page, b: *mut u8, key: usize) {
    let blk = b as *mut Block;
    // SAFETY: `b` is ours to give up; `block_size` is fixed while the page
    // is in use (our block keeps it so). The heap is ours, and written only
    // when it is not the static empty heap.
    unsafe {
        (*blk).key = key;
        let bs = (*page).block_size();
        if bs >= REMOTE_BATCH_BYTES || (*h).id == UNINIT {
            return publish(seg, page, blk, blk);
        }
        let h = &mut *h;
        let i = slot(page);
        let s = &mut h.remote[i];
        if s.page == page {
            (*blk).next = Block::link(blk, s.head, h.secret);
            s.head = blk;
            s.n += 1;
            s.bytes += bs as u32;
            if s.n >= REMOTE_BATCH || s.bytes as usize >= REMOTE_BATCH_BYTES {
                flush_slot(h, i);
            }
            return;
        }
        if !s.page.is_null() {
            flush_slot(h, i);
        }
        h.remote[i] = Batch {
            page,
            head: blk,
            tail: blk,
            n: 1,
            bytes: bs as u32,
        };
        h.remote_open |= 1 << i;
    }
}

/// Publish every open chain of heap `h` (every 64th slow path, trim,
/// thread exit). One load when none is open.
///
/// # Safety
/// `h` is the calling thread's initialised heap.
#[inline]
pub unsafe fn flush(h: &mut Heap) {
    while h.remote_open != 0 {
        let i = h.remote_open.trailing_zeros() as usize;
        // SAFETY: an open slot of our heap.
        unsafe { flush_slot(h, i) };
    }
}

/// Publish the chain of open slot `i` and close the slot.
#[inline(never)]
unsafe fn flush_slot(h: &mut Heap, i: usize) {
    let s = h.remote[i];
    h.remote[i] = Batch::EMPTY;
    h.remote_open &= !(1u64 << i);
    // SAFETY: an open slot's chain holds blocks of `s.page`, still in use.
    unsafe { publish(segment_of(s.page.cast()), s.page, s.head, s.tail) };
}

/// A remote free cleared the FULL bit of a floating page of `seg`: tell
/// the owner. The first such free raises the segment's `pending` flag and
/// pushes the segment on the owning heap's pending stack, which the
/// owner's `collect_pending` takes; later ones find the flag raised. An
/// abandoned segment (no heap) needs nothing: whoever adopts or tidies it
/// collects every page (and adoption waits until its flag is clear, so
/// that an adopter is never left without word of a page).
///
/// # Safety
/// The caller still holds a block in use in `seg` (so it is mapped and
/// not freed, and its heap, if any, is heap memory, never unmapped).
#[inline]
unsafe fn notify(seg: *mut Segment) {
    // SAFETY: per the contract.
    unsafe {
        let h = (*seg).heap.load(Acquire);
        if !h.is_null() && !(*seg).pending.swap(true, AcqRel) {
            Heap::pending_push(h, seg);
            // The owner may have given the segment up meanwhile (thread
            // exit: its last take of the stack may have come before our
            // push, which then read it, so this load sees the change):
            // then nobody would take it from there soon; pass the stack on.
            if (*seg).heap.load(Acquire) != h {
                Heap::pass_on_all(h);
            }
        }
    }
}

/// Push the chain `head ..= tail` (blocks of `page`, linked, each with the
/// page's key) on the page's `thread_free` with one CAS (and a second if
/// the page floats: the FULL-bit protocol of `page.rs`).
///
/// # Safety
/// The chain's blocks are in use on `page` (in `seg`) and given up by the
/// caller; `tail`'s link is written here.
unsafe fn publish(seg: *mut Segment, page: *mut Page, head: *mut Block, tail: *mut Block) {
    // SAFETY: the chain's blocks keep the page in use until the push below
    // succeeds. `thread_free` is atomic; no other field of the page is
    // touched.
    unsafe {
        let secret = super::page::secret();
        let tf = &(*page).thread_free;
        let mut old = tf.load(Relaxed);
        loop {
            if old & TF_FULL != 0 {
                // The page floats: tell the owner before our blocks are
                // visible (after the push the page may be freed).
                match tf.compare_exchange_weak(old, old & !TF_FULL, AcqRel, Relaxed) {
                    Ok(_) => {
                        notify(seg);
                        old &= !TF_FULL;
                    }
                    Err(o) => {
                        old = o;
                        continue;
                    }
                }
            }
            (*tail).next = Block::link(tail, old as *mut Block, secret);
            match tf.compare_exchange_weak(old, head as usize, Release, Relaxed) {
                Ok(_) => return,
                Err(o) => old = o,
            }
        }
    }
}
