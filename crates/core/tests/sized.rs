//! Frees and resizes that are told the block's size (`GlobalAlloc`,
//! `Allocator`, `RegionHeap::deallocate_sized`): a size the block cannot
//! have is reported through `corruption::report` naming the pointer, for
//! every run-time strategy (the checked profile); the right sizes pass, in
//! both profiles.

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

use allocator_api2::alloc::Allocator;
use common::Arena;
use stratalloc_core::{
    AnyHeap, FitPolicy, IndexedFit, Locked, RegionHeap, Strategy, Tlsf, Trusting,
};

/// A locked heap of `s` over `arena`.
fn locked(s: Strategy, arena: &Arena) -> Locked<AnyHeap> {
    let l = Locked::new(AnyHeap::new(s));
    // SAFETY: the arena outlives the heap and nothing else uses it.
    unsafe { l.add_region(arena.whole()) }.expect("add_region");
    l
}

/// Run `f`, which must panic naming `addr` and saying "size".
fn reported(name: &str, addr: usize, f: impl FnOnce()) {
    let err = catch_unwind(AssertUnwindSafe(f))
        .expect_err(&format!("{name}: a wrong size went unreported"));
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains(&format!("{addr:#x}")) && msg.contains("size"),
        "{name}: the report does not name {addr:#x} and the size: {msg:?}"
    );
}

fn lay(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

#[test]
fn a_wrong_size_on_dealloc_is_reported_naming_the_pointer() {
    let arena = Arena::new(4 << 20);
    for &s in Strategy::ALL {
        let name = s.name();
        // Too large, through `GlobalAlloc::dealloc` (the lock is poisoned
        // by the report's unwinding: a fresh heap each time).
        let l = locked(s, &arena);
        // SAFETY: a valid layout.
        let p = unsafe { l.alloc(lay(64, 8)) };
        assert!(!p.is_null(), "{name}");
        // SAFETY: `p` is live; the layout is wrong on purpose.
        reported(name, p as usize, || unsafe { l.dealloc(p, lay(4096, 8)) });

        // Too large, through `Allocator::deallocate`.
        let l = locked(s, &arena);
        let p = Allocator::allocate(&l, lay(100, 16)).unwrap().cast::<u8>();
        // SAFETY: as above.
        reported(name, p.as_ptr() as usize, || unsafe {
            Allocator::deallocate(&l, p, lay(100_000, 16))
        });

        // Too large, as the old size of `GlobalAlloc::realloc`.
        let l = locked(s, &arena);
        // SAFETY: a valid layout.
        let p = unsafe { l.alloc(lay(200, 8)) };
        // SAFETY: as above.
        reported(name, p as usize, || unsafe {
            l.realloc(p, lay(50_000, 8), 300);
        });
    }
}

#[test]
fn a_too_small_size_is_reported_by_the_boundary_tag_heaps() {
    let arena = Arena::new(4 << 20);
    for s in [
        Strategy::Tlsf,
        Strategy::Segregated,
        Strategy::FirstFit,
        Strategy::BestFit,
        Strategy::FirstFitScan,
    ] {
        let l = locked(s, &arena);
        // SAFETY: a valid layout.
        let p = unsafe { l.alloc(lay(4000, 8)) };
        // SAFETY: `p` is live; the layout is wrong on purpose.
        reported(s.name(), p as usize, || unsafe { l.dealloc(p, lay(8, 8)) });
        let l = locked(s, &arena);
        let p = Allocator::allocate(&l, lay(4000, 64)).unwrap().cast::<u8>();
        // SAFETY: as above.
        reported(s.name(), p.as_ptr() as usize, || unsafe {
            let _ = Allocator::grow(&l, p, lay(100, 64), lay(8000, 64));
        });
    }
}

/// Every size a block was allocated or resized with frees it, in both
/// profiles: exact requests, alignments, in-place and moving resizes.
fn right_sizes_pass<H: RegionHeap + Send>(heap: H) {
    let arena = Arena::new(if cfg!(miri) { 1 << 20 } else { 8 << 20 });
    let l = Locked::new(heap);
    // SAFETY: the arena outlives the heap and nothing else uses it.
    unsafe { l.add_region(arena.whole()) }.expect("add_region");
    let mut live: Vec<(NonNull<u8>, Layout)> = Vec::new();
    // Under Miri (every byte interpreted): a few dozen steps.
    let steps = if cfg!(miri) { 40 } else { 600 };
    for i in 0..steps {
        let size = [0, 1, 7, 8, 9, 24, 40, 100, 511, 4000, 20_000][i % 11] + i % 3;
        let align = 1 << [0, 3, 4, 5, 6, 12][i % 6];
        let layout = lay(size, align);
        let p = Allocator::allocate(&l, layout).unwrap().cast::<u8>();
        live.push((p, layout));
        if i % 4 == 3 {
            let (p, old) = live.swap_remove(i * 7 % live.len());
            let new = lay([16, 300, 5000, 33][i % 4], old.align());
            // SAFETY: `p` is live with `old`.
            let q = unsafe {
                if new.size() >= old.size() {
                    Allocator::grow(&l, p, old, new)
                } else {
                    Allocator::shrink(&l, p, old, new)
                }
            }
            .unwrap()
            .cast::<u8>();
            live.push((q, new));
        }
        if i % 3 == 2 {
            let (p, layout) = live.swap_remove(i * 13 % live.len());
            // SAFETY: `p` is live with `layout`.
            unsafe { l.dealloc(p.as_ptr(), layout) };
        }
        l.lock().check().unwrap();
    }
    for (p, layout) in live {
        // SAFETY: as above.
        unsafe { Allocator::deallocate(&l, p, layout) };
    }
    let h = l.lock();
    h.check().unwrap();
    assert_eq!(h.stats().in_use, 0);
}

#[test]
fn right_sizes_pass_in_both_profiles() {
    for &s in Strategy::ALL {
        right_sizes_pass(AnyHeap::new(s));
    }
    let tlsf: Tlsf<Trusting> = Tlsf::trusting();
    right_sizes_pass(tlsf);
    right_sizes_pass(IndexedFit::trusting(FitPolicy::Best));
    right_sizes_pass(IndexedFit::trusting(FitPolicy::First));
}
