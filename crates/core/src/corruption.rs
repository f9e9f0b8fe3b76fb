//! What a heap does when it finds its own metadata damaged in the middle of
//! an operation that has no way to return an error.
//!
//! `deallocate` reports a bad pointer with a [`HeapError`](crate::HeapError),
//! but damage is often found elsewhere: `allocate` takes a block off a free
//! list whose links a write-after-free overwrote, or `deallocate` of a good
//! pointer finds its neighbour's boundary tag overwritten by an overflow.
//! Following such a link would write through a wild pointer; returning
//! `None` would be a silent wrong answer ("out of memory"). The heap calls
//! [`report`] instead, which never returns.
//!
//! By default `report` panics with a message naming the damaged address and
//! what was wrong (on bare metal that is the firmware's panic handler). A
//! host that must not unwind through its allocator — the C library, the
//! process heaps — installs its own handler with [`set_handler`]: print the
//! same message without allocating, then abort.

use core::sync::atomic::{AtomicUsize, Ordering};

/// A corruption handler: told the damaged address and what is wrong with
/// it; never returns.
pub type Handler = fn(addr: usize, what: &'static str) -> !;

/// What [`report`] says of a block freed or resized with a size it
/// cannot have ([`RegionHeap::deallocate_sized`](crate::RegionHeap::deallocate_sized)).
pub const WRONG_SIZE: &str = "this block was freed or resized with a size it does not have \
     (a layout other than the one it was allocated with?)";

/// The installed handler as an address (0: none, panic).
static HANDLER: AtomicUsize = AtomicUsize::new(0);

/// Reports made so far in this program.
static REPORTS: AtomicUsize = AtomicUsize::new(0);

/// How many reports have been made so far. A lock whose holder took it
/// before the latest report may be held by a reporter that will never
/// release it (see [`Locked`](crate::Locked)).
pub fn reports() -> usize {
    REPORTS.load(Ordering::Acquire)
}

/// Install `h` for every heap of this program (replacing any earlier one).
pub fn set_handler(h: Handler) {
    HANDLER.store(h as usize, Ordering::Release);
}

/// Report damaged heap metadata at `addr`; does not return.
#[cold]
#[inline(never)]
pub fn report(addr: usize, what: &'static str) -> ! {
    REPORTS.fetch_add(1, Ordering::AcqRel);
    let h = HANDLER.load(Ordering::Acquire);
    if h != 0 {
        // SAFETY: a non-zero value was stored by `set_handler` from a
        // `Handler`, and function pointers round-trip through `usize` on
        // every target this crate supports (they are data-pointer sized).
        let f: Handler = unsafe { core::mem::transmute::<usize, Handler>(h) };
        f(addr, what)
    }
    panic!("stratalloc: heap corruption at {addr:#x}: {what}")
}
