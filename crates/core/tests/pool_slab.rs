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

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(if cfg!(miri) { 2 } else { 64 }))]
    /// Random allocate/free programs against a model: distinct aligned
    /// objects, contents kept, exact stats, `check` clean after every step,
    /// everything back at the end.
    #[test]
    fn pool_model(ops in proptest::collection::vec((proptest::prelude::any::<bool>(), 0usize..1000), 1..400)) {
        let arena = Arena::new(16 * 1024);
        let mut p = pool_over(Pool::new(40, 32), &arena, 4 * 1024);
        let initial = p.stats();
        let mut live: Vec<(NonNull<u8>, u8)> = Vec::new();
        for (i, &(alloc, idx)) in ops.iter().enumerate() {
            if alloc || live.is_empty() {
                match p.allocate(40, 32) {
                    Some(o) => {
                        assert_eq!(o.as_ptr() as usize % 32, 0);
                        // SAFETY: a live object of 64 bytes.
                        unsafe { std::ptr::write_bytes(o.as_ptr(), i as u8, 64) };
                        live.push((o, i as u8));
                    }
                    None => assert_eq!(live.len(), p.capacity()),
                }
            } else {
                let (o, tag) = live.swap_remove(idx % live.len());
                // SAFETY: a live object of 64 bytes.
                let s = unsafe { std::slice::from_raw_parts(o.as_ptr(), 64) };
                assert!(s.iter().all(|&b| b == tag), "object contents lost");
                // SAFETY: live object.
                unsafe { p.deallocate(o) }.unwrap();
            }
            p.check().unwrap();
            assert_eq!(p.stats().live(), live.len() as u64);
            assert_eq!(p.stats().in_use, live.len() * 64);
        }
        for (o, _) in live {
            // SAFETY: live object.
            unsafe { p.deallocate(o) }.unwrap();
        }
        p.check().unwrap();
        assert_eq!(p.stats().free_blocks, initial.free_blocks);
    }
}

// ---- Slab ----------------------------------------------------------------

use stratalloc_core::strategies::slab::{CLASS_SIZES, PAGE};
use stratalloc_core::{Buddy, Slab, Tlsf};

fn slab_over<B: RegionHeap>(backing: B, arena: &Arena) -> Slab<B> {
    let mut s = Slab::new(backing);
    // SAFETY: the arena outlives the heap in each test.
    unsafe { s.add_region(arena.whole()) }.unwrap();
    s.check().unwrap();
    s
}

#[test]
fn slab_pages_fill_then_go_back_to_the_backing_heap() {
    let arena = Arena::new(1 << 20);
    let mut s = slab_over(Tlsf::new(), &arena);
    let initial = s.backing().stats();
    let class = CLASS_SIZES.len() - 1;
    let size = CLASS_SIZES[class];
    // Objects of one class share a page until it is full.
    let first = s.allocate(size, 16).unwrap();
    assert_eq!(s.pages(), 1);
    let page = first.as_ptr() as usize & !(PAGE - 1);
    let mut objs = vec![first];
    while s.pages() == 1 {
        objs.push(s.allocate(size - 5, 8).unwrap());
        s.check().unwrap();
    }
    let per_page = objs.len() - 1;
    assert!(
        per_page >= 8,
        "only {per_page} objects of {size} B per page"
    );
    assert!(objs[..per_page]
        .iter()
        .all(|o| o.as_ptr() as usize & !(PAGE - 1) == page));
    // SAFETY: live objects.
    unsafe {
        assert_eq!(s.usable_size(first), Ok(size));
        for o in &objs {
            s.deallocate(*o).unwrap();
        }
    }
    s.check().unwrap();
    assert_eq!(s.pages(), 0, "empty pages kept");
    let end = s.backing().stats();
    assert_eq!(end.free, initial.free);
    assert_eq!(end.free_blocks, initial.free_blocks);
    assert_eq!(end.largest_free, initial.largest_free);
}

#[test]
fn slab_classes_and_large_requests() {
    let arena = Arena::new(1 << 20);
    let mut s = slab_over(Buddy::new(), &arena);
    for (ask, align, usable) in [
        (0usize, 1usize, 16usize),
        (17, 8, 32),
        (33, 16, 48),
        (100, 16, 128),
        (700, 16, 768),
        (1024, 16, 1024),
    ] {
        let p = s.allocate(ask, align).unwrap();
        // SAFETY: live block.
        assert_eq!(unsafe { s.usable_size(p) }, Ok(usable), "allocate({ask})");
        assert_eq!(s.stats().in_use, usable);
        // SAFETY: live block.
        unsafe {
            assert!(s.resize_in_place(p, usable));
            assert!(!s.resize_in_place(p, usable + 1));
            s.deallocate(p).unwrap();
        }
    }
    assert_eq!(s.pages(), 0);
    // Larger, or more strongly aligned, requests go to the backing heap.
    let big = s.allocate(1025, 16).unwrap();
    let aligned = s.allocate(16, 64).unwrap();
    assert_eq!(s.pages(), 0);
    assert_eq!(aligned.as_ptr() as usize % 64, 0);
    // SAFETY: live blocks.
    unsafe {
        assert_eq!(s.usable_size(big), s.backing().usable_size(big));
        s.deallocate(big).unwrap();
        s.deallocate(aligned).unwrap();
    }
    s.check().unwrap();
}

#[test]
fn slab_reports_bad_object_pointers_exactly() {
    let arena = Arena::new(1 << 20);
    let mut s = slab_over(Tlsf::new(), &arena);
    let keep = s.allocate(64, 16).unwrap();
    let o = s.allocate(64, 16).unwrap();
    // Interior of an object, and the page header in front of the objects.
    let page = o.as_ptr() as usize & !(PAGE - 1);
    for q in [
        o.as_ptr() as usize + 16,
        o.as_ptr() as usize + 63,
        page,
        page + 32,
    ] {
        // SAFETY: inside a live slab page; the heap must refuse it.
        let e = unsafe { s.deallocate(NonNull::new(q as *mut u8).unwrap()) }.unwrap_err();
        assert_eq!(e.kind, HeapErrorKind::InvalidPointer, "{q:#x}");
    }
    // An object slot never handed out.
    let later = (keep.as_ptr() as usize).max(o.as_ptr() as usize) + 64 * 10;
    // SAFETY: inside the page; the heap must refuse it.
    let e = unsafe { s.deallocate(NonNull::new(later as *mut u8).unwrap()) }.unwrap_err();
    assert_eq!(e.kind, HeapErrorKind::InvalidPointer);
    // SAFETY: live object, then the same object again (the page stays, as
    // `keep` is still on it).
    unsafe {
        s.deallocate(o).unwrap();
        assert_eq!(s.deallocate(o).unwrap_err().kind, HeapErrorKind::DoubleFree);
        assert_eq!(
            s.usable_size(o).unwrap_err().kind,
            HeapErrorKind::DoubleFree
        );
    }
    s.check().unwrap();
    // SAFETY: live object.
    unsafe { s.deallocate(keep) }.unwrap();
    s.check().unwrap();
}

#[test]
fn slab_is_not_fooled_by_a_forged_page_in_user_data() {
    let arena = Arena::new(1 << 20);
    let mut s = slab_over(Tlsf::new(), &arena);
    // A real page, to copy its header.
    let obj = s.allocate(32, 16).unwrap();
    let page = obj.as_ptr() as usize & !(PAGE - 1);
    let obj_off = obj.as_ptr() as usize - page;
    // A large block spanning a whole page frame.
    let big = s.allocate(3 * PAGE, 16).unwrap();
    let fake = (big.as_ptr() as usize + PAGE - 1) & !(PAGE - 1);
    // SAFETY: `fake..fake + PAGE` lies inside the live large block (3 PAGE
    // long from `big`); `page` is a live slab page we only read.
    unsafe {
        std::ptr::copy_nonoverlapping(page as *const u8, fake as *mut u8, obj_off + 32);
        // The guard word is the page address XOR a key: forge that as well.
        let words = fake as *mut usize;
        let guard_at = 6;
        let key = *(page as *const usize).add(guard_at) ^ page;
        *words.add(guard_at) = fake ^ key;
    }
    let forged = NonNull::new((fake + obj_off) as *mut u8).unwrap();
    // SAFETY: the heap must see that no slab page lives at `fake`.
    let e = unsafe { s.deallocate(forged) }.unwrap_err();
    assert_eq!(e.kind, HeapErrorKind::InvalidPointer);
    s.check().unwrap();
    // SAFETY: live blocks.
    unsafe {
        s.deallocate(big).unwrap();
        s.deallocate(obj).unwrap();
    }
    s.check().unwrap();
}

#[test]
fn slab_walk_shows_objects_and_check_sees_damage() {
    let arena = Arena::new(1 << 20);
    let mut s = slab_over(Buddy::new(), &arena);
    let objs: Vec<_> = (0..10).map(|_| s.allocate(96, 16).unwrap()).collect();
    // SAFETY: live object.
    unsafe { s.deallocate(objs[4]) }.unwrap();
    let (mut used96, mut free96, mut used_other) = (0, 0, 0);
    s.walk(&mut |b| match (b.state, b.size) {
        (BlockState::Used, 96) => used96 += 1,
        (BlockState::Free, 96) => free96 += 1,
        (BlockState::Used, _) => used_other += 1,
        _ => {}
    });
    assert_eq!(used96, 9);
    assert!(free96 > 100, "a page's free objects are walked");
    assert_eq!(used_other, 0, "the slab page itself is not a used block");
    // Damage the page header's class word.
    let page = objs[0].as_ptr() as usize & !(PAGE - 1);
    let class = (page as *mut usize).wrapping_add(3);
    // SAFETY: the header lies in the arena; restored below.
    let saved = unsafe { class.read() };
    // SAFETY: as above.
    unsafe { class.write(99) };
    assert!(s.check().is_err(), "check missed a damaged page header");
    // SAFETY: the heap must refuse an object of a damaged page.
    let e = unsafe { s.deallocate(objs[1]) }.unwrap_err();
    assert_eq!(e.kind, HeapErrorKind::Corrupted);
    // SAFETY: as above.
    unsafe { class.write(saved) };
    s.check().unwrap();
    for (i, o) in objs.iter().enumerate() {
        if i != 4 {
            // SAFETY: live objects.
            unsafe { s.deallocate(*o) }.unwrap();
        }
    }
    s.check().unwrap();
    assert_eq!(s.pages(), 0);
}

#[test]
fn slab_serves_small_requests_from_the_backing_heap_when_no_page_fits() {
    let arena = Arena::new(1 << 16);
    let mut s = slab_over(Buddy::new(), &arena);
    // Take every free block of a page's size or more.
    let mut big = Vec::new();
    while s.backing().stats().largest_free >= PAGE {
        big.push(s.allocate(s.backing().stats().largest_free, 16).unwrap());
    }
    assert!(s.stats().free > 0, "some smaller blocks stay free");
    let small = s
        .allocate(32, 16)
        .expect("small request served by the backing heap");
    assert_eq!(s.pages(), 0);
    // SAFETY: live blocks.
    unsafe {
        assert!(s.usable_size(small).unwrap() >= 32);
        s.deallocate(small).unwrap();
        for b in big {
            s.deallocate(b).unwrap();
        }
    }
    s.check().unwrap();
    assert_eq!(s.stats().live(), 0);
}
