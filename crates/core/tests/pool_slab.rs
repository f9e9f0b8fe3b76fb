//! Pool and slab behaviour the generic conformance suite cannot express:
//! a pool's one object size (exhaustion, reuse, refusals, alignment), exact
//! double-free and bad-pointer reports, `check` catching damage; the slab's
//! pages going back to the backing heap.

mod common;

use std::collections::BTreeSet;
use std::ptr::NonNull;

use common::Arena;
use stratalloc_core::{BlockState, HeapErrorKind, Pool, RegionHeap};

fn pool_over(mut p: Pool, arena: &Arena, len: usize) -> Pool {
    // SAFETY: the arena outlives the pool in each test.
    unsafe { p.add_region(arena.region(0, len)) }.unwrap();
    p.check().unwrap();
    p
}

/// A pool can sit in a `static`: `new` is const.
static _STATIC_POOL: std::sync::Mutex<Pool> = std::sync::Mutex::new(Pool::new(32, 8));

#[test]
fn pool_exhausts_then_restores() {
    let arena = Arena::new(64 * 1024);
    let mut p = pool_over(Pool::new(48, 16), &arena, 64 * 1024);
    assert_eq!(p.slot_size(), 48);
    let cap = p.capacity();
    assert!(cap > 1300, "only {cap} slots of 48 B in 64 KiB");
    let initial = p.stats();
    assert_eq!(initial.free_blocks, cap);
    let mut got = Vec::new();
    while let Some(o) = p.allocate(48, 16) {
        let a = o.as_ptr() as usize;
        assert_eq!(a % 16, 0);
        // SAFETY: a live object of 48 bytes.
        unsafe { std::ptr::write_bytes(o.as_ptr(), got.len() as u8, 48) };
        got.push(o);
    }
    assert_eq!(got.len(), cap);
    assert_eq!(p.stats().free, 0);
    assert_eq!(p.stats().largest_free, 0);
    assert_eq!(p.stats().in_use, cap * 48);
    p.check().unwrap();
    let mut addrs: Vec<usize> = got.iter().map(|o| o.as_ptr() as usize).collect();
    addrs.sort();
    assert!(
        addrs.windows(2).all(|w| w[1] - w[0] >= 48),
        "objects overlap"
    );
    for (i, o) in got.iter().enumerate() {
        // SAFETY: a live object of 48 bytes.
        let s = unsafe { std::slice::from_raw_parts(o.as_ptr(), 48) };
        assert!(
            s.iter().all(|&b| b == i as u8),
            "object {i} was overwritten"
        );
        // SAFETY: live object.
        unsafe { p.deallocate(*o) }.unwrap();
    }
    p.check().unwrap();
    let end = p.stats();
    assert_eq!(end.free, initial.free);
    assert_eq!(end.free_blocks, initial.free_blocks);
    assert_eq!(end.live(), 0);
}

#[test]
fn pool_reuses_the_last_freed_object() {
    let arena = Arena::new(16 * 1024);
    let mut p = pool_over(Pool::new(100, 8), &arena, 16 * 1024);
    let a = p.allocate(100, 8).unwrap();
    let b = p.allocate(1, 1).unwrap();
    // SAFETY: live object.
    unsafe { p.deallocate(a) }.unwrap();
    assert_eq!(p.allocate(0, 1), Some(a), "freed slot not reused first");
    // SAFETY: live objects.
    unsafe {
        assert_eq!(p.usable_size(b), Ok(p.slot_size()));
        p.deallocate(a).unwrap();
        p.deallocate(b).unwrap();
    }
    p.check().unwrap();
}

#[test]
fn pool_refuses_what_does_not_fit() {
    let arena = Arena::new(16 * 1024);
    let mut p = pool_over(Pool::new(24, 64), &arena, 16 * 1024);
    assert_eq!(p.slot_size(), 64, "slot = object rounded to its alignment");
    assert!(p.allocate(65, 16).is_none(), "larger than a slot");
    assert!(p.allocate(16, 128).is_none(), "aligned more than a slot");
    assert!(p.allocate(16, 3).is_none(), "alignment not a power of two");
    assert!(p.allocate(usize::MAX, 16).is_none());
    assert_eq!(p.stats().failed, 4);
    let mut seen = BTreeSet::new();
    for _ in 0..50 {
        let o = p.allocate(64, 64).unwrap();
        assert_eq!(o.as_ptr() as usize % 64, 0, "object not aligned");
        assert!(seen.insert(o.as_ptr() as usize));
    }
    // SAFETY: live object.
    let o = NonNull::new(*seen.iter().next().unwrap() as *mut u8).unwrap();
    // SAFETY: live object.
    unsafe {
        assert!(p.resize_in_place(o, 64));
        assert!(!p.resize_in_place(o, 65));
    }
    p.check().unwrap();
    assert!(Pool::try_new(8, 3).is_none());
    assert!(Pool::try_new(usize::MAX, 16).is_none());
    assert!(Pool::try_new(0, 1).is_some());
}

#[test]
fn pool_detects_double_free_and_bad_pointers() {
    let arena = Arena::new(16 * 1024);
    let mut p = pool_over(Pool::new(48, 16), &arena, 8 * 1024);
    let keep = p.allocate(48, 16).unwrap();
    let o = p.allocate(48, 16).unwrap();
    for off in [1usize, 8, 16, 32, 47] {
        // SAFETY: inside a live object; the pool must refuse it.
        let q = unsafe { NonNull::new_unchecked(o.as_ptr().add(off)) };
        // SAFETY: as above.
        let e = unsafe { p.deallocate(q) }.unwrap_err();
        assert_eq!(e.kind, HeapErrorKind::InvalidPointer, "o+{off}");
    }
    // In the region's bitmap, before the first slot.
    let first = arena.region(0, 1).start().as_ptr() as usize + 16;
    // SAFETY: inside the region; the pool must refuse it without writing.
    let e = unsafe { p.deallocate(NonNull::new(first as *mut u8).unwrap()) }.unwrap_err();
    assert_eq!(e.kind, HeapErrorKind::InvalidPointer);
    // Outside the region (the second half of the arena is not the pool's).
    let outside = arena.region(12 * 1024, 16).start();
    // SAFETY: the pool must refuse a pointer it does not own.
    let e = unsafe { p.deallocate(outside) }.unwrap_err();
    assert_eq!(e.kind, HeapErrorKind::NotOwned);
    // SAFETY: live object, then the same object again.
    unsafe {
        p.deallocate(o).unwrap();
        assert_eq!(p.deallocate(o).unwrap_err().kind, HeapErrorKind::DoubleFree);
        assert_eq!(
            p.usable_size(o).unwrap_err().kind,
            HeapErrorKind::DoubleFree
        );
    }
    p.check().unwrap();
    assert_eq!(p.stats().live(), 1);
    // SAFETY: live object.
    unsafe { p.deallocate(keep) }.unwrap();
    p.check().unwrap();
}

#[test]
fn pool_spans_regions_and_walks_them() {
    let arena = Arena::new(64 * 1024);
    let mut p = Pool::new(256, 16);
    // SAFETY: disjoint parts of the arena.
    unsafe {
        p.add_region(arena.region(0, 4096)).unwrap();
        p.add_region(arena.region(32 * 1024, 8192 + 5)).unwrap();
    }
    p.check().unwrap();
    let cap = p.capacity();
    let objs: Vec<_> = std::iter::from_fn(|| p.allocate(200, 16)).collect();
    assert_eq!(objs.len(), cap);
    let in_second = objs
        .iter()
        .filter(|o| o.as_ptr() as usize >= arena.region(32 * 1024, 1).start().as_ptr() as usize)
        .count();
    assert!(
        in_second > 0 && in_second < cap,
        "both regions serve objects"
    );
    // SAFETY: live objects.
    unsafe {
        p.deallocate(objs[3]).unwrap();
        p.deallocate(objs[cap - 1]).unwrap();
    }
    let (mut used, mut free, mut total) = (0, 0, 0);
    p.walk(&mut |b| {
        total += b.size;
        match b.state {
            BlockState::Used => used += 1,
            BlockState::Free => free += 1,
            BlockState::Overhead => {}
        }
    });
    assert_eq!((used, free), (cap - 2, 2));
    assert!(total <= p.stats().region_bytes);
    p.check().unwrap();
}

#[test]
fn pool_check_catches_a_broken_free_list() {
    let arena = Arena::new(16 * 1024);
    let mut p = pool_over(Pool::new(64, 16), &arena, 16 * 1024);
    let a = p.allocate(64, 16).unwrap();
    let b = p.allocate(64, 16).unwrap();
    // SAFETY: live objects.
    unsafe {
        p.deallocate(a).unwrap();
        p.deallocate(b).unwrap();
    }
    // `b` is the list head and its link points at `a`; point it into the
    // middle of a slot instead, as a use-after-free write would.
    let link = b.as_ptr().cast::<usize>();
    // SAFETY: the slot lies in the arena; we restore it before any use.
    let saved = unsafe { link.read() };
    // SAFETY: as above.
    unsafe { link.write(saved + 8) };
    let e = p.check().unwrap_err();
    assert!(e.what.contains("slot boundary"), "{e}");
    // A cycle (the head pointing at itself).
    // SAFETY: as above.
    unsafe { link.write(b.as_ptr() as usize) };
    assert!(p.check().is_err(), "check missed a cycle in the free list");
    // SAFETY: as above.
    unsafe { link.write(saved) };
    p.check().unwrap();
}
