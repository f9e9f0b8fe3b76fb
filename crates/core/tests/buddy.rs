//! Buddy behaviour the generic conformance suite cannot express: exact block
//! sizes, in-place grow and shrink through buddies, exact double-free and
//! interior-pointer reports, odd-sized regions, and `check` catching damage.

mod common;

use std::ptr::NonNull;

use common::{heap_over, Arena, GARBAGE_WORD};
use stratalloc_core::{BlockState, Buddy, HeapErrorKind, RegionHeap};

fn usable(h: &Buddy, p: NonNull<u8>) -> usize {
    // SAFETY: `p` is a live block of `h`.
    unsafe { h.usable_size(p) }.unwrap()
}

#[test]
fn sizes_round_to_powers_of_two_and_align_naturally() {
    let arena = Arena::new(1 << 20);
    let mut h = heap_over(Buddy::new(), &arena);
    for (ask, want) in [(0, 16), (1, 16), (17, 32), (1000, 1024), (1025, 2048)] {
        let p = h.allocate(ask, 1).unwrap();
        assert_eq!(usable(&h, p), want, "allocate({ask})");
        assert_eq!(
            p.as_ptr() as usize % want,
            0,
            "block not aligned to its size"
        );
        h.check().unwrap();
    }
    let p = h.allocate(16, 64 * 1024).unwrap();
    assert_eq!(p.as_ptr() as usize % (64 * 1024), 0);
    assert_eq!(usable(&h, p), 64 * 1024);
    h.check().unwrap();
}

#[test]
fn shrink_frees_upper_halves_and_grow_takes_them_back() {
    let arena = Arena::new(1 << 20);
    let mut h = heap_over(Buddy::new(), &arena);
    let p = h.allocate(4096, 16).unwrap();
    let free0 = h.stats().free;
    // SAFETY: live block.
    assert!(unsafe { h.resize_in_place(p, 100) });
    assert_eq!(usable(&h, p), 128);
    h.check().unwrap();
    assert_eq!(h.stats().free, free0 + 4096 - 128, "upper halves not freed");
    // 2048 + 1024 + ... + 128 free above it, so it grows back in place.
    // SAFETY: live block.
    assert!(unsafe { h.resize_in_place(p, 4000) });
    assert_eq!(usable(&h, p), 4096);
    assert_eq!(h.stats().free, free0);
    h.check().unwrap();
    // Occupy the buddy above: growth past 4096 must fail and change nothing.
    let q = h.allocate(4096, 16).unwrap();
    if q.as_ptr() as usize == p.as_ptr() as usize + 4096 {
        let before = h.stats();
        // SAFETY: live block.
        assert!(!unsafe { h.resize_in_place(p, 8192) });
        assert_eq!(h.stats(), before);
        h.check().unwrap();
    }
    // SAFETY: live blocks.
    unsafe {
        h.deallocate(q).unwrap();
        h.deallocate(p).unwrap();
    }
    h.check().unwrap();
}

#[test]
fn grow_fails_for_an_upper_half() {
    let arena = Arena::new(1 << 20);
    let mut h = heap_over(Buddy::new(), &arena);
    // Shrinking a 128-byte block frees its upper half, which the free list
    // (last in, first out) hands out next.
    let lo = h.allocate(128, 16).unwrap();
    // SAFETY: live block.
    assert!(unsafe { h.resize_in_place(lo, 64) });
    let hi = h.allocate(64, 16).unwrap();
    assert_eq!(
        lo.as_ptr() as usize ^ 64,
        hi.as_ptr() as usize,
        "not buddies"
    );
    // SAFETY: live blocks.
    unsafe {
        h.deallocate(lo).unwrap();
        // `hi` is an upper half: it cannot grow in place even though its
        // buddy (below it) is free.
        assert!(!h.resize_in_place(hi, 128));
        h.check().unwrap();
        h.deallocate(hi).unwrap();
    }
    h.check().unwrap();
}

#[test]
fn double_free_and_interior_pointers_are_told_apart() {
    let arena = Arena::new(1 << 20);
    let mut h = heap_over(Buddy::new(), &arena);
    let keep = h.allocate(256, 16).unwrap();
    let p = h.allocate(256, 16).unwrap();
    for off in [16usize, 32, 128, 240] {
        // SAFETY: inside a live block; the heap must refuse it.
        let q = unsafe { NonNull::new_unchecked(p.as_ptr().add(off)) };
        // SAFETY: as above.
        let e = unsafe { h.deallocate(q) }.unwrap_err();
        assert_eq!(e.kind, HeapErrorKind::InvalidPointer, "p+{off}");
    }
    // SAFETY: live block.
    unsafe { h.deallocate(p) }.unwrap();
    // Freed again: its block may have merged into a bigger free one; either
    // way the report is a double free.
    // SAFETY: the heap must detect it.
    let e = unsafe { h.deallocate(p) }.unwrap_err();
    assert_eq!(e.kind, HeapErrorKind::DoubleFree);
    // A pointer into the side table is not a block.
    let table = arena.whole().start().as_ptr() as usize + 64;
    // SAFETY: inside the region; the heap must refuse it without writing.
    let e = unsafe { h.deallocate(NonNull::new(table as *mut u8).unwrap()) }.unwrap_err();
    assert_eq!(e.kind, HeapErrorKind::InvalidPointer);
    h.check().unwrap();
    assert_eq!(usable(&h, keep), 256);
    // SAFETY: live block.
    unsafe { h.deallocate(keep) }.unwrap();
    h.check().unwrap();
}

#[test]
fn odd_regions_are_carved_and_fully_restored() {
    let arena = Arena::new(1 << 20);
    let mut h = Buddy::new();
    // SAFETY: disjoint parts of the arena.
    unsafe {
        h.add_region(arena.region(48, 100_000 + 7)).unwrap();
        h.add_region(arena.region(300_000 + 16, 333_333)).unwrap();
    }
    h.check().unwrap();
    let initial = h.stats();
    assert!(
        initial.free_blocks > 2,
        "odd regions carve into several blocks"
    );
    // Walk tiles each area with naturally aligned blocks.
    let mut free_walked = 0;
    h.walk(&mut |b| {
        if b.state == BlockState::Free {
            assert!(b.size.is_power_of_two() && b.addr % b.size == 0);
            free_walked += b.size;
        }
    });
    assert_eq!(free_walked, initial.free);
    let mut live = Vec::new();
    let mut n = 0usize;
    while let Some(p) = h.allocate(16 + (n * 37) % 3000, 16) {
        live.push(p);
        n += 1;
    }
    h.check().unwrap();
    assert!(h.stats().free < initial.free / 4);
    for p in live.iter().rev().step_by(3).chain(live.iter()) {
        // Every third block twice over: the second attempt must be refused.
        // SAFETY: live blocks; repeats must be reported, not corrupt.
        let _ = unsafe { h.deallocate(*p) };
    }
    h.check().unwrap();
    let end = h.stats();
    assert_eq!(end.live(), 0);
    assert_eq!(end.free, initial.free);
    assert_eq!(end.free_blocks, initial.free_blocks);
    assert_eq!(end.largest_free, initial.largest_free);
}

#[test]
fn check_names_a_damaged_table() {
    let arena = Arena::new(1 << 16);
    let mut h = heap_over(Buddy::new(), &arena);
    let p = h.allocate(16, 16).unwrap();
    h.check().unwrap();
    // The side table starts right after the 16-byte region header; find the
    // byte of `p`'s unit and turn it into a free marker of a wrong order.
    let mut span_start = 0;
    h.walk(&mut |b| {
        if b.state == BlockState::Overhead && span_start == 0 {
            span_start = b.addr;
        }
    });
    let mut area_start = 0;
    h.walk(&mut |b| {
        if b.state != BlockState::Overhead && area_start == 0 {
            area_start = b.addr;
        }
    });
    let idx = (p.as_ptr() as usize - area_start) / 16;
    let byte = (span_start + idx) as *mut u8;
    // SAFETY: the table lies in the arena, which outlives the heap; we
    // restore the byte before the heap is used again.
    let saved = unsafe { byte.read() };
    // SAFETY: as above.
    unsafe { byte.write(0x40 | 5) };
    assert!(h.check().is_err(), "check missed a damaged table byte");
    // SAFETY: as above.
    unsafe { byte.write(saved) };
    h.check().unwrap();
    // A marker inside a 4 KiB block (256 units): every unit but the first
    // must read 0, wherever it is.
    let q = h.allocate(4096, 16).unwrap();
    let first = span_start + (q.as_ptr() as usize - area_start) / 16;
    for unit in [1usize, 7, 8, 100, 255] {
        let inner = (first + unit) as *mut u8;
        // SAFETY: as above (the table byte of a unit inside `q`).
        unsafe { inner.write(0x80) };
        let e = h.check().unwrap_err();
        assert!(e.what.contains("inside a block"), "unit {unit}: {e}");
        assert_eq!(e.addr, q.as_ptr() as usize + unit * 16);
        // SAFETY: as above.
        unsafe { inner.write(0) };
    }
    h.check().unwrap();
    // SAFETY: live blocks.
    unsafe {
        h.deallocate(q).unwrap();
        h.deallocate(p).unwrap();
    }
    h.check().unwrap();
}

/// A write after free overwrites the freed block's list links; the next
/// allocation that takes the block off its list must report it (the default
/// corruption handler panics, naming the block) instead of writing through
/// the garbage links.
#[test]
fn overwritten_free_list_links_are_reported_not_followed() {
    // Wild, tiny, and inside the heap but not a free block (the used
    // neighbour). (Zeros would be no damage here: the block is alone on
    // its list, so its links are null anyway.)
    for k in 0..3 {
        let arena = Arena::new(1 << 20);
        let mut h = heap_over(Buddy::new(), &arena);
        let keep = h.allocate(64, 16).unwrap();
        let p = h.allocate(64, 16).unwrap();
        let garbage = [GARBAGE_WORD, 0x10, keep.as_ptr() as usize][k];
        // SAFETY: `p` is live.
        unsafe { h.deallocate(p) }.unwrap();
        // The bug under test: write over a freed block's first two words.
        // SAFETY: the arena outlives the heap; the block is free, not unmapped.
        unsafe { (p.as_ptr() as *mut [usize; 2]).write([garbage, garbage]) };
        let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // Taking the block off its list (directly, or by merging its
            // buddy) must look at its links.
            for _ in 0..4 {
                let _ = h.allocate(64, 16);
            }
        }))
        .expect_err("damaged links were followed without a report");
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            msg.contains(&format!("{:#x}", p.as_ptr() as usize)) && msg.contains("overwritten"),
            "message does not name the block and the damage: {msg:?}"
        );
        let _ = keep;
    }
}
