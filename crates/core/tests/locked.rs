//! `Locked<H>` when something goes wrong inside it: a pointer the heap
//! refuses, or damage the heap reports mid-operation. Either panics; the
//! panic handler may allocate (std's hook formats the message, a
//! firmware's handler may too) from the same heap, so the lock must not be
//! left held while it runs, and a heap left half-way through an operation
//! must not be used again as if nothing happened.
//!
//! One test function: the panic hook is global to the test binary.

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use allocator_api2::alloc::Allocator;
use common::{Arena, GARBAGE_WORD};
use stratalloc_core::{FitPolicy, FreeList, Locked, RegionHeap};

static HEAP: Locked<FreeList> = Locked::new(FreeList::new(FitPolicy::First));
/// The hook allocates from HEAP only while this is set.
static HOOK_ALLOCATES: AtomicBool = AtomicBool::new(false);
/// Allocations the hook made (each freed at once) and refused.
static HOOK_GOT: AtomicUsize = AtomicUsize::new(0);
static HOOK_REFUSED: AtomicUsize = AtomicUsize::new(0);

/// Run `f` on a thread of its own; a hang (the hook waiting on a lock
/// that is never released) fails the test instead of stalling it.
fn no_hang(what: &'static str, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    if rx.recv_timeout(Duration::from_secs(60)).is_err() {
        // (This panic must not run the allocating hook: the lock is held.)
        HOOK_ALLOCATES.store(false, Ordering::Relaxed);
        panic!("{what}: the panic hook waited forever on the heap lock");
    }
}

/// What the panicking operation does, and what its panic must say.
fn panics_with(what: &str, f: impl FnOnce()) {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("no panic");
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(msg.contains(what), "panic says {msg:?}, not {what:?}");
}

#[test]
fn a_panic_inside_locked_leaves_the_heap_lock_free() {
    // Leaked, and kept in a static: the heap names it only by address, so
    // without it Miri would report the arena as leaked.
    static ARENA: AtomicPtr<Arena> = AtomicPtr::new(std::ptr::null_mut());
    ARENA.store(
        Box::into_raw(Box::new(Arena::new(1 << 20))),
        Ordering::Relaxed,
    );
    // SAFETY: just stored, never freed.
    let arena: &'static Arena = unsafe { &*ARENA.load(Ordering::Relaxed) };
    // SAFETY: the arena is leaked: it outlives the static heap.
    unsafe { HEAP.add_region(arena.whole()) }.unwrap();
    std::panic::set_hook(Box::new(|_| {
        if !HOOK_ALLOCATES.load(Ordering::Relaxed) {
            return;
        }
        let l = Layout::from_size_align(64, 16).unwrap();
        match Allocator::allocate(&HEAP, l) {
            Ok(p) => {
                HOOK_GOT.fetch_add(1, Ordering::Relaxed);
                // SAFETY: just allocated with `l`.
                unsafe { Allocator::deallocate(&HEAP, p.cast(), l) };
            }
            Err(_) => {
                HOOK_REFUSED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }));
    HOOK_ALLOCATES.store(true, Ordering::Relaxed);
    let l = Layout::from_size_align(64, 16).unwrap();

    // 1. A double free: the heap refuses it, intact. The hook's
    //    allocation is served.
    no_hang("double free", move || {
        // SAFETY: `p` is allocated, freed, then freed again (the bug).
        unsafe {
            let p = HEAP.alloc(l);
            HEAP.dealloc(p, l);
            panics_with("double free", || HEAP.dealloc(p, l));
        }
    });
    assert_eq!(HOOK_GOT.load(Ordering::Relaxed), 1, "the hook got no block");
    HEAP.lock()
        .check()
        .expect("heap intact after a refused free");

    // 2. Damage found mid-operation: a free block's links overwritten.
    //    The hook's allocation must not wait for the lock the panicking
    //    operation holds; afterwards the heap, left half-way through an
    //    operation, hands out nothing more.
    no_hang("corruption", move || {
        // SAFETY: blocks of HEAP; the write after free is the bug.
        unsafe {
            let a = HEAP.alloc(l);
            let _g = HEAP.alloc(l);
            let p = HEAP.alloc(l);
            let _g2 = HEAP.alloc(l);
            HEAP.dealloc(a, l);
            HEAP.dealloc(p, l);
            (p as *mut [usize; 2]).write([GARBAGE_WORD & !1, GARBAGE_WORD & !1]);
            panics_with("overwritten", || {
                let _ = HEAP.alloc(l);
            });
        }
    });
    HOOK_ALLOCATES.store(false, Ordering::Relaxed);
    let _ = std::panic::take_hook();
    assert!(HEAP.is_poisoned(), "the heap is not marked poisoned");
    no_hang("after the report", move || {
        // SAFETY: a null result is checked; nothing else is touched.
        let p = unsafe { HEAP.alloc(l) };
        assert!(p.is_null(), "a poisoned heap handed out {p:p}");
        assert!(
            Allocator::allocate(&HEAP, l).is_err(),
            "a poisoned heap handed out a block"
        );
        // The heap can still be inspected: `check` names the damage.
        assert!(HEAP.lock().check().is_err());
    });
}
