//! Damage that a caller does to a heap's own metadata in default use (no
//! checking wrapper), for every strategy: a write after free over a free
//! block's list links (free list ×4, segregated, TLSF, buddy, pool, slab),
//! an overflow into the next block's header (the boundary-tag heaps, bump,
//! a slab page's header). Each must be reported through
//! `stratalloc_core::corruption::report` (by default a panic whose message
//! names the block), or refused with a `HeapError` by a `deallocate` that
//! can say so; never followed into a wild write, a hang or a false "out of
//! memory".

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

use common::{heap_over, Arena, GARBAGE_WORD};
use stratalloc_core::{
    BlockState, Buddy, Bump, FitPolicy, FreeList, HeapErrorKind, IndexedFit, Pool, RegionHeap,
    Segregated, Slab, Tlsf,
};

/// A strategy's name and a maker of empty heaps of it.
type EmptyHeap = (&'static str, fn() -> Box<dyn RegionHeap>);

/// Empty heaps of each boundary-tag strategy.
fn empty_heaps() -> Vec<EmptyHeap> {
    vec![
        ("first-fit", || Box::new(IndexedFit::new(FitPolicy::First))),
        ("next-fit", || Box::new(IndexedFit::new(FitPolicy::Next))),
        ("best-fit", || Box::new(IndexedFit::new(FitPolicy::Best))),
        ("worst-fit", || Box::new(IndexedFit::new(FitPolicy::Worst))),
        ("first-fit-scan", || {
            Box::new(FreeList::new(FitPolicy::First))
        }),
        ("next-fit-scan", || Box::new(FreeList::new(FitPolicy::Next))),
        ("best-fit-scan", || Box::new(FreeList::new(FitPolicy::Best))),
        ("worst-fit-scan", || {
            Box::new(FreeList::new(FitPolicy::Worst))
        }),
        ("segregated", || Box::new(Segregated::new())),
        ("tlsf", || Box::new(Tlsf::new())),
    ]
}

/// Every strategy whose free blocks are linked through their own first
/// words: each free block holds links a write after free can reach.
fn linked_empty_heaps() -> Vec<EmptyHeap> {
    let mut v = empty_heaps();
    v.push(("buddy", || Box::new(Buddy::new())));
    v.push(("pool", || Box::new(Pool::new(64, 16))));
    v.push(("slab", || Box::new(Slab::new(Tlsf::new()))));
    v
}

/// A heap made by `make` over all of `arena`.
fn over(make: fn() -> Box<dyn RegionHeap>, arena: &Arena) -> Box<dyn RegionHeap> {
    let mut h = make();
    // SAFETY: the arena outlives the heap in each test.
    unsafe { h.add_region(arena.whole()) }.expect("add_region");
    h.check().expect("check after add_region");
    h
}

const KIB: usize = 1024;
const WORD: usize = std::mem::size_of::<usize>();

/// Hand `h` the region `offset..offset + 256 KiB` of `arena`.
fn add(h: &mut dyn RegionHeap, arena: &Arena, offset: usize) {
    // SAFETY: the arena outlives the heap in each test.
    unsafe { h.add_region(arena.region(offset, 256 * KIB)) }.expect("add_region");
}

/// Free two 64-byte blocks `a` and `p` kept apart by used ones (so they do
/// not merge); `p`, freed last, heads its list or follows `a`. Returns
/// `p`, whose first words are now its links.
fn two_free_blocks(h: &mut dyn RegionHeap) -> NonNull<u8> {
    two_free_blocks_and_a_used_one(h).0
}

/// [`two_free_blocks`], and the used block between them.
fn two_free_blocks_and_a_used_one(h: &mut dyn RegionHeap) -> (NonNull<u8>, NonNull<u8>) {
    let a = h.allocate(64, 16).unwrap();
    let g1 = h.allocate(64, 16).unwrap();
    let p = h.allocate(64, 16).unwrap();
    let _g2 = h.allocate(64, 16).unwrap();
    // SAFETY: `a` and `p` are live blocks of `h`.
    unsafe {
        h.deallocate(a).unwrap();
        h.deallocate(p).unwrap();
    }
    (p, g1)
}

/// Allocate until a damaged link is followed; the report must name `p`
/// (the free block or slot that held it) and say it was overwritten.
fn allocate_a_few(name: &str, h: &mut dyn RegionHeap, p: NonNull<u8>) {
    expect_report(name, p.as_ptr() as usize, "overwritten", || {
        for _ in 0..3 {
            let _ = h.allocate(64, 16);
        }
    });
}

/// Run `f`, which must panic with a message naming `addr` and containing
/// `what`.
fn expect_report(name: &str, addr: usize, what: &str, f: impl FnOnce()) {
    expect_report_in(name, addr..=addr, what, f)
}

/// Run `f`, which must panic with a message containing `what` and naming
/// an address in `range` ("heap corruption at 0x...").
fn expect_report_in(
    name: &str,
    range: std::ops::RangeInclusive<usize>,
    what: &str,
    f: impl FnOnce(),
) {
    let err =
        catch_unwind(AssertUnwindSafe(f)).expect_err(&format!("{name}: damage went unreported"));
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    let named = msg
        .split("0x")
        .skip(1)
        .filter_map(|t| {
            let hex: String = t.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
            usize::from_str_radix(&hex, 16).ok()
        })
        .any(|a| range.contains(&a));
    assert!(
        named && msg.contains(what),
        "{name}: the report does not name {:#x}..={:#x} and '{what}': {msg:?}",
        range.start(),
        range.end()
    );
}

#[test]
fn a_write_after_free_over_the_links_is_reported() {
    for (name, make) in linked_empty_heaps() {
        for garbage in [GARBAGE_WORD, 0x1000, usize::MAX] {
            let arena = Arena::new(1 << 20);
            let mut h = over(make, &arena);
            let p = two_free_blocks(&mut *h);
            // The bug under test: `p` is free (and on a list after `a`, or
            // heading it), its first words are its links.
            // SAFETY: the arena is ours and outlives the heap.
            unsafe { (p.as_ptr() as *mut [usize; 2]).write([garbage, garbage]) };
            allocate_a_few(name, &mut *h, p);
        }
    }
}

#[test]
fn an_overflow_into_the_next_header_is_reported_on_free() {
    for (name, make) in empty_heaps() {
        for by in [1usize, 8] {
            let arena = Arena::new(1 << 20);
            let mut h = over(make, &arena);
            let p = h.allocate(40, 16).unwrap();
            // SAFETY: `p` is live.
            let usable = unsafe { h.usable_size(p) }.unwrap();
            // The bug under test: `by` bytes of 0x42 past the usable end,
            // over the header of the (free) block after it.
            // SAFETY: the arena is ours; the bytes lie inside it.
            unsafe { std::ptr::write_bytes(p.as_ptr().add(usable), 0x42, by) };
            expect_report(name, p.as_ptr() as usize, "overflow", || {
                // SAFETY: `p` is live.
                let _ = unsafe { h.deallocate(p) };
            });
        }
    }
}

/// A heap of two regions with a gap between them (memory the heap was not
/// given; here the test's own, so a link wrongly followed reads what the
/// test planted instead of faulting). A free block's `next` link is
/// pointed into the gap, at a spot that links back to it: a check that
/// only asks "inside the envelope of the regions?" would follow it.
#[test]
fn a_link_into_a_gap_between_regions_is_reported() {
    for (name, make) in empty_heaps() {
        let arena = Arena::new(1024 * KIB);
        let mut h = make();
        add(&mut *h, &arena, 0);
        add(&mut *h, &arena, 512 * KIB);
        // Worst fit alternates between two regions of equal free size;
        // after this it takes the next blocks one after the other.
        let _big = h.allocate(128 * KIB, 16).unwrap();
        if name == "next-fit" {
            // Next fit moves past the block it cut, so with a free block
            // in each region it alternates between them (and `a` and `p`
            // would lie side by side): fill the second region's, where
            // its search goes next.
            let mut rest = 0;
            h.walk(&mut |b| {
                if b.state == BlockState::Free && b.addr >= arena.base() + 512 * KIB {
                    rest = b.size;
                }
            });
            let _fill = h.allocate(rest - WORD, 16).unwrap();
        }
        let (p, g1) = two_free_blocks_and_a_used_one(&mut *h);
        // A header slot (8 past a 16-byte granule) in the middle of the gap.
        let fake = arena.base() + 384 * KIB + 8;
        let hdr = p.as_ptr() as usize - WORD;
        // SAFETY: the arena is ours: `p`'s first word is its `next` link
        // (it is free), and `fake`'s `prev` word lies in the gap.
        unsafe {
            (p.as_ptr() as *mut usize).write(fake);
            ((fake + 2 * WORD) as *mut usize).write(hdr);
        }
        // A worst-fit tree's allocations may never pass `p`; freeing `g1`
        // merges `p` and so takes it out of any index.
        expect_report(name, p.as_ptr() as usize, "overwritten", || {
            for _ in 0..3 {
                let _ = h.allocate(64, 16);
            }
            // SAFETY: `g1` is live.
            let _ = unsafe { h.deallocate(g1) };
        });
    }
}

/// An overflow that rewrites the next (free) block's size, and nothing
/// else, so that it reaches into the heap's other region: a check against
/// the envelope of the regions would coalesce across the gap and write a
/// footer there. Both for a block of the region added last (the fast path)
/// and of an older one; the latter may also be refused with `Corrupted`.
#[test]
fn a_free_size_reaching_into_another_region_is_reported() {
    for (name, make) in empty_heaps() {
        for p_in_hot in [true, false] {
            let arena = Arena::new(1024 * KIB);
            let mut h = make();
            // `p` goes in `lo`; the other region is above it.
            let lo = 0..256 * KIB;
            let p = if p_in_hot {
                add(&mut *h, &arena, 512 * KIB);
                // Fill the first region so the next blocks come from `lo`.
                let _big = h.allocate(200 * KIB, 16).unwrap();
                add(&mut *h, &arena, 0);
                (0..10_000)
                    .map(|_| h.allocate(40, 16).unwrap())
                    .find(|q| lo.contains(&(q.as_ptr() as usize - arena.base())))
                    .expect("no block from the region added last")
            } else {
                add(&mut *h, &arena, 0);
                let p = h.allocate(40, 16).unwrap();
                add(&mut *h, &arena, 512 * KIB);
                p
            };
            // SAFETY: `p` is live.
            let usable = unsafe { h.usable_size(p) }.unwrap();
            let next = p.as_ptr() as usize + usable;
            // SAFETY: the arena is ours; `next` is the header of the block
            // after `p` (free: `p` was split from it). The bug under test:
            // its size (a multiple of 16, flag bits kept) now ends in the
            // other region, at a header slot.
            unsafe {
                let nh = (next as *const usize).read();
                let size = (arena.base() + 576 * KIB - next) & !15;
                (next as *mut usize).write(size | (nh & 15));
            }
            let label = format!(
                "{name} (p in the {} region)",
                if p_in_hot { "hot" } else { "older" }
            );
            let r = catch_unwind(AssertUnwindSafe(|| {
                // SAFETY: `p` is live.
                unsafe { h.deallocate(p) }
            }));
            match r {
                Ok(Err(e)) if !p_in_hot => assert!(
                    e.kind == HeapErrorKind::Corrupted && e.ptr == p.as_ptr() as usize,
                    "{label}: wrong error {e:?}"
                ),
                Ok(r) => panic!("{label}: damage went unreported: {r:?}"),
                Err(err) => {
                    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
                    assert!(
                        msg.contains(&format!("{:#x}", p.as_ptr() as usize))
                            && msg.contains("overflow"),
                        "{label}: the report does not name the block: {msg:?}"
                    );
                }
            }
        }
    }
}

/// A pool and a slab count their free slots, so a link zeroed by a write
/// after free cannot pass for the end of the list: it is reported instead
/// of ending the list early (a pool would then answer "out of memory"
/// with free slots left).
/// A tree link overwritten with the address of another free block of the
/// heap (so it passes the "free block of this heap" test) but out of key
/// order: relinking it would put that block in the tree twice and hand it
/// out twice. Removing the damaged node must report it instead.
#[test]
fn an_out_of_order_tree_link_is_reported() {
    for policy in [
        FitPolicy::First,
        FitPolicy::Next,
        FitPolicy::Best,
        FitPolicy::Worst,
    ] {
        let arena = Arena::new(1 << 20);
        let mut h = heap_over(IndexedFit::new(policy), &arena);
        let (p, g1) = two_free_blocks_and_a_used_one(&mut h);
        // The free tail after every block: higher in address and in size
        // than `p`, so never `p`'s left child.
        let mut tail = 0;
        h.walk(&mut |b| {
            if b.state == stratalloc_core::BlockState::Free {
                tail = b.addr;
            }
        });
        assert!(tail > p.as_ptr() as usize);
        // SAFETY: the arena is ours; `p` is free, its first word is its
        // left link.
        unsafe { (p.as_ptr() as *mut usize).write(tail) };
        expect_report(policy.name(), p.as_ptr() as usize, "overwritten", || {
            // Freeing `g1` merges it with `p`, which leaves the tree.
            // SAFETY: `g1` is live.
            let _ = unsafe { h.deallocate(g1) };
        });
    }
}

#[test]
fn a_null_link_is_not_taken_for_the_end_of_the_list() {
    let heaps: [EmptyHeap; 2] = [
        ("pool", || Box::new(Pool::new(64, 16))),
        ("slab", || Box::new(Slab::new(Tlsf::new()))),
    ];
    for (name, make) in heaps {
        let arena = Arena::new(1 << 20);
        let mut h = over(make, &arena);
        let p = two_free_blocks(&mut *h);
        // SAFETY: the arena is ours; `p` is free, its first word its link.
        unsafe { (p.as_ptr() as *mut usize).write(0) };
        allocate_a_few(name, &mut *h, p);
    }
}

/// A link forged to name a block that is handed out, with that block's
/// words made to link back (the caller owns them): following it would hand
/// the live block out a second time. Buddy, pool and slab know from memory
/// no caller reaches (side table, bitmaps) that the block is used.
#[test]
fn a_link_to_a_used_block_is_reported() {
    let heaps: [EmptyHeap; 3] = [
        ("buddy", || Box::new(Buddy::new())),
        ("pool", || Box::new(Pool::new(64, 16))),
        ("slab", || Box::new(Slab::new(Tlsf::new()))),
    ];
    for (name, make) in heaps {
        let arena = Arena::new(1 << 20);
        let mut h = over(make, &arena);
        let (p, used) = two_free_blocks_and_a_used_one(&mut *h);
        // SAFETY: the arena is ours: `p` is free (its first word its next
        // link), `used` is live and ours to write.
        unsafe {
            (p.as_ptr() as *mut usize).write(used.as_ptr() as usize);
            (used.as_ptr() as *mut [usize; 2]).write([0, p.as_ptr() as usize]);
        }
        allocate_a_few(name, &mut *h, p);
    }
}

/// Next fit starts its search at the rover. Two free blocks whose links a
/// write after free rewrote to point at each other, both ways, pass every
/// link check there; a search for a size no block has must report the loop
/// instead of spinning in it.
#[test]
fn a_loop_in_the_next_fit_list_is_reported() {
    let arena = Arena::new(1 << 20);
    let mut h = FreeList::new(FitPolicy::Next);
    // SAFETY: the arena outlives the heap.
    unsafe { h.add_region(arena.region(0, 64 * KIB)) }.unwrap();
    // Free blocks a, b, c separated by used ones; the rest used up.
    let mut blocks = Vec::new();
    while let Some(q) = h.allocate(64, 16) {
        blocks.push(q);
    }
    let (a, b, c) = (blocks[0], blocks[2], blocks[4]);
    // SAFETY: live blocks of `h`.
    unsafe {
        h.deallocate(a).unwrap();
        h.deallocate(b).unwrap();
        h.deallocate(c).unwrap();
    }
    // List: c, b, a. Taking c (the head) leaves the rover on b.
    let taken = h.allocate(64, 16).unwrap();
    assert_eq!(taken, c, "next fit took the head");
    let hdr = |q: NonNull<u8>| q.as_ptr() as usize - WORD;
    // The bug under test: b <-> a now link to each other both ways.
    // SAFETY: the arena is ours; `a` and `b` are free (their first two
    // words are their next and prev links).
    unsafe {
        (b.as_ptr() as *mut [usize; 2]).write([hdr(a), hdr(a)]);
        (a.as_ptr() as *mut [usize; 2]).write([hdr(b), hdr(b)]);
    }
    // Either block of the loop may be where the search runs out.
    let (lo, hi) = (a.min(b).as_ptr() as usize, a.max(b).as_ptr() as usize);
    expect_report_in("next-fit", lo..=hi, "loops", || {
        let _ = h.allocate(4096, 16);
    });
}

/// An overflow that rewrites the start word of the next bump block's header
/// (where `top` goes back to when that block, the last, is freed) is
/// refused: trusting it would move `top` below live blocks, and the next
/// allocation would overlap them.
#[test]
fn bump_refuses_a_damaged_header() {
    let arena = Arena::new(1 << 20);
    let mut h = heap_over(Bump::new(), &arena);
    let a = h.allocate(40, 16).unwrap();
    let b = h.allocate(40, 16).unwrap();
    // SAFETY: live.
    let usable = unsafe { h.usable_size(a) }.unwrap();
    let hdr_b = b.as_ptr() as usize - 16;
    assert_eq!(a.as_ptr() as usize + usable, hdr_b, "blocks are adjacent");
    // The bug under test: `a` overflows into b's start word, naming a's
    // own header.
    // SAFETY: the arena is ours.
    unsafe { ((hdr_b + WORD) as *mut usize).write(a.as_ptr() as usize - 16) };
    // SAFETY: `b` is live.
    let r = unsafe { h.deallocate(b) };
    assert_eq!(
        r.map_err(|e| e.kind),
        Err(HeapErrorKind::Corrupted),
        "bump: a damaged header was trusted"
    );
    let c = h.allocate(40, 16).unwrap();
    assert!(
        c.as_ptr() as usize > b.as_ptr() as usize,
        "bump: new block overlaps"
    );
    // And an overflow of garbage is refused too.
    // SAFETY: as above.
    unsafe { std::ptr::write_bytes(hdr_b as *mut u8, 0x42, 16) };
    // SAFETY: `b` is still live (its free was refused).
    let again = unsafe { h.deallocate(b) };
    assert!(again.is_err(), "bump: garbage header accepted");
}

/// An overflow of the backing block before a slab page runs over the
/// page's header (partial-list links, free-list head, class, counts): the
/// next use of the page reports it.
#[test]
fn a_slab_page_header_overrun_is_reported() {
    // How many bytes of the header the overflow rewrites: the links only,
    // up to the free-list head, and up to the class and counts.
    for by in [2 * WORD, 3 * WORD, 6 * WORD] {
        let arena = Arena::new(1 << 20);
        let mut h = heap_over(Slab::new(Tlsf::new()), &arena);
        // Two pages of the 64-byte class, so the first has a neighbour on
        // its partial list; keep both partial.
        let per_page = (16 * KIB - 256) / 64;
        let first: Vec<_> = (0..per_page + 2)
            .map(|_| h.allocate(64, 16).unwrap())
            .collect();
        let page = first[0].as_ptr() as usize & !(16 * KIB - 1);
        let other = first[per_page + 1].as_ptr() as usize & !(16 * KIB - 1);
        assert_ne!(page, other);
        // SAFETY: live.
        unsafe { h.deallocate(first[1]).unwrap() };
        // SAFETY: the arena is ours; the header lies at the page's start.
        unsafe { std::ptr::write_bytes(page as *mut u8, 0x42, by) };
        // Reported at the page, or at an object of it whose link took the
        // damaged head when it was freed.
        expect_report_in("slab", page..=page + 16 * KIB - 1, "overwritten", || {
            for q in &first[2..per_page] {
                // SAFETY: live blocks.
                let _ = unsafe { h.deallocate(*q) };
            }
            for _ in 0..2 * per_page {
                let _ = h.allocate(64, 16);
            }
        });
    }
}

/// Random damage, random operations: whatever a write after free or an
/// overflow puts in a heap's metadata, an operation either works, returns
/// an error, or reports corruption; it never panics any other way (an index
/// out of bounds, an arithmetic overflow in a debug build), hangs or
/// faults. The garbage is random words and plausible pointers (into the
/// arena, at block-like offsets), written into freed blocks and just past
/// live ones.
#[test]
// Thousands of heap operations: minutes under Miri (scripts/miri.sh).
#[cfg_attr(miri, ignore)]
fn random_damage_is_reported_or_refused_never_panics() {
    let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng as usize
    };
    let mut heaps = linked_empty_heaps();
    heaps.push(("bump", || Box::new(Bump::new())));
    // The default hook would print every expected report: print only the
    // others.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        let msg = info.to_string();
        if !msg.contains("heap corruption") {
            eprintln!("{msg}\n{}", std::backtrace::Backtrace::force_capture());
        }
    }));
    let (mut reported, mut bad) = (0, Vec::new());
    for (name, make) in heaps {
        for round in 0..300 {
            let arena = Arena::new(1 << 20);
            let mut h = over(make, &arena);
            let mut live: Vec<(NonNull<u8>, usize)> = Vec::new();
            let mut freed: Vec<(NonNull<u8>, usize)> = Vec::new();
            let r = catch_unwind(AssertUnwindSafe(|| {
                for step in 0..400 {
                    let size = [16, 24, 64, 100, 500, 2000][next() % 6];
                    match next() % 4 {
                        0 | 1 => {
                            if let Some(p) = h.allocate(size, 16) {
                                live.push((p, size));
                            }
                        }
                        2 if !live.is_empty() => {
                            let (p, n) = live.swap_remove(next() % live.len());
                            // SAFETY: `p` is a block of `h` (its metadata
                            // may be damaged: the heap must cope).
                            if unsafe { h.deallocate(p) }.is_ok() {
                                freed.push((p, n));
                            }
                        }
                        3 if !live.is_empty() => {
                            let i = next() % live.len();
                            let (p, _) = live[i];
                            // SAFETY: as above.
                            if let Some(q) = unsafe { h.reallocate(p, size, 16) } {
                                live[i] = (q, size);
                            }
                        }
                        _ => {}
                    }
                    if step % 50 == 49 {
                        // The bug under test: a word of garbage in a freed
                        // block, or just past a live one.
                        let target = if next() % 2 == 0 && !freed.is_empty() {
                            let (p, n) = freed[next() % freed.len()];
                            p.as_ptr() as usize + (next() % n.min(32)) / WORD * WORD
                        } else if let Some(&(p, n)) = live.get(next() % live.len().max(1)) {
                            // SAFETY: `p` is live.
                            let us = unsafe { h.usable_size(p) }.unwrap_or(n);
                            (p.as_ptr() as usize + us) & !(WORD - 1)
                        } else {
                            continue;
                        };
                        if !arena.contains(target) || !arena.contains(target + WORD - 1) {
                            continue;
                        }
                        let garbage = match next() % 4 {
                            0 => next(),
                            1 => arena.base() + (next() % (1 << 20)) / 16 * 16 + 8,
                            2 => arena.base() + (next() % (1 << 20)) / 16 * 16,
                            _ => next() % 4096,
                        };
                        // SAFETY: the arena is ours.
                        unsafe { (target as *mut usize).write(garbage) };
                    }
                }
            }));
            if let Err(err) = r {
                let msg = err
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                if msg.contains("heap corruption") {
                    reported += 1;
                } else {
                    bad.push(format!("{name} round {round}: {msg}"));
                }
            }
        }
    }
    std::panic::set_hook(hook);
    assert!(
        bad.is_empty(),
        "panics that are no corruption report: {bad:#?}"
    );
    assert!(reported > 0, "no damage was ever reported");
}

/// A heap of many regions (past the inline span table: sorted lookups,
/// then the region list for the smallest): blocks of every region stay
/// linked together without a false report, and a link into a gap between
/// two of them is still reported.
#[test]
// Thousands of heap operations: minutes under Miri (scripts/miri.sh).
#[cfg_attr(miri, ignore)]
fn links_across_many_regions_are_checked_exactly() {
    for (name, make) in empty_heaps() {
        for regions in [6usize, 30, 90] {
            let arena = Arena::new(regions * 16 * KIB);
            let mut h = make();
            // Regions of 8 KiB (every fourth 12 KiB) every 16 KiB, so there
            // are gaps, added in a shuffled order.
            let mut order: Vec<usize> = (0..regions).collect();
            order.sort_by_key(|&i| (i * 7919) % regions);
            for &i in &order {
                let len = if i % 4 == 0 { 12 * KIB } else { 8 * KIB };
                // SAFETY: the arena outlives the heap.
                unsafe { h.add_region(arena.region(i * 16 * KIB, len)) }.expect("add_region");
            }
            let mut live = Vec::new();
            while let Some(p) = h.allocate(48, 16) {
                live.push(p);
            }
            // Free every other block (in address order, so no two freed
            // blocks are neighbours): a long list through every region.
            live.sort();
            for p in live.iter().step_by(2) {
                // SAFETY: live blocks of `h`.
                unsafe { h.deallocate(*p) }.unwrap();
            }
            h.check()
                .unwrap_or_else(|e| panic!("{name} ({regions} regions): {e}"));
            // Searches that walk the whole list (no block fits).
            let q = h.allocate(4 * KIB, 16);
            assert!(
                q.is_none(),
                "{name} ({regions} regions): {q:?} {:?}",
                h.stats()
            );
            h.check()
                .unwrap_or_else(|e| panic!("{name} ({regions} regions): {e}"));
            let p = live[2 * (live.len() / 4)];
            let fake = arena.base() + 14 * KIB + 8; // in the gap after region 0
                                                    // SAFETY: the arena is ours; `p` is free (its first word is
                                                    // its next link), `fake` lies in a gap, and links back.
            unsafe {
                (p.as_ptr() as *mut usize).write(fake);
                ((fake + 2 * WORD) as *mut usize).write(p.as_ptr() as usize - WORD);
            }
            expect_report(name, p.as_ptr() as usize, "overwritten", || {
                let _ = h.allocate(4 * KIB, 16);
                for _ in 0..live.len() {
                    let _ = h.allocate(48, 16);
                }
            });
        }
    }
}
