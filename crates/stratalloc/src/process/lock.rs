//! The process heap's lock and what happens when something is wrong: the
//! guard, poisoning after a corruption report, and the aborting paths,
//! which release the lock first so a SIGABRT handler may still call malloc.

use core::ptr::{self};
use core::sync::atomic::Ordering;

use stratalloc_core::HeapError;

use crate::backend::Backend;
use crate::fatal;

use super::*;

thread_local! {
    /// The process heap whose lock this thread holds (null: none), so a
    /// path that aborts can release it first. Const-initialised, no
    /// destructor: native TLS, no allocation.
    static HELD: core::cell::Cell<*const ProcessHeap> = const { core::cell::Cell::new(ptr::null()) };
}

/// Whether the heap is still sound when the process aborts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum HeapState {
    /// A pointer was refused; the heap itself is intact.
    Intact,
    /// The strategy found its own metadata damaged mid-operation.
    Damaged,
}

/// Before aborting: release the lock of the process heap this thread holds,
/// if any, so a SIGABRT handler that calls `malloc` does not wait forever
/// on it. A damaged heap is poisoned first: from then on `malloc` maps
/// blocks of its own, and `free` of a heap block leaves it alone, so
/// nothing follows the damage again.
pub(super) fn release_before_abort(state: HeapState) {
    let held = HELD.with(|h| h.replace(ptr::null()));
    // SAFETY: `HELD` names a heap only between `guard()` and the guard's
    // drop, while the heap is borrowed by that guard, so it is alive.
    let Some(heap) = (unsafe { held.as_ref() }) else {
        return;
    };
    if state == HeapState::Damaged {
        heap.poisoned.store(true, Ordering::Release);
    }
    if heap.lock.held_by_me() {
        heap.lock.unlock();
    }
}

// SAFETY: `inner` is only touched with `lock` held (see `with_heap`), the
// rest are atomics; AnyHeap owns its regions exclusively.
unsafe impl Sync for ProcessHeap {}

/// The lock held; unlocks on drop.
pub(super) struct Guard<'a> {
    owner: &'a ProcessHeap,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        HELD.with(|h| h.set(ptr::null()));
        self.owner.lock.unlock();
    }
}

impl Guard<'_> {
    pub(super) fn inner(&mut self) -> &mut Inner {
        // SAFETY: the guard proves the lock is held, so no other reference
        // to `inner` exists; `&mut self` keeps this one unique.
        unsafe { &mut *self.owner.inner.get() }
    }
}

/// The process heaps' [`stratalloc_core::corruption`] handler: the message
/// on stderr (no allocation), then abort.
pub(super) fn on_corruption(addr: usize, what: &'static str) -> ! {
    release_before_abort(HeapState::Damaged);
    fatal!("heap corruption at {addr:#x}: {what}")
}

impl ProcessHeap {
    pub(super) fn guard(&self) -> Guard<'_> {
        self.lock.lock();
        HELD.with(|h| h.set(self));
        Guard { owner: self }
    }

    /// The heap was poisoned by a corruption report (the process is
    /// aborting): leave it alone.
    pub(super) fn poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    #[cold]
    #[inline(never)]
    pub(super) fn bad_pointer(&self, what: &str, p: *const u8, e: Option<HeapError>) -> ! {
        release_before_abort(HeapState::Intact);
        match e {
            Some(e) => fatal!("{what}({p:p}): {e} ({} heap)", self.name()),
            None => fatal!(
                "{what}({p:p}): pointer was not allocated by stratalloc, or was freed \
                 already ({} heap): a double free, a wild pointer, or memory from another \
                 malloc (when the library is dlopen'ed rather than preloaded, only its \
                 own pointers may be passed to its free)",
                self.name()
            ),
        }
    }
}
