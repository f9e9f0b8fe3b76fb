//! Damage that a caller does to the boundary-tag heaps' metadata in default
//! use (no checking wrapper): a write after free over a free block's list
//! links, an overflow into the next block's header. Each must be reported
//! through `stratalloc_core::corruption::report` (by default a panic whose
//! message names the block), never followed into a wild write.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

use common::{heap_over, Arena, GARBAGE_WORD};
use stratalloc_core::{FitPolicy, FreeList, HeapErrorKind, RegionHeap, Segregated, Tlsf};

/// Builds a heap of one strategy over an arena.
type MakeHeap = Box<dyn Fn(&Arena) -> Box<dyn RegionHeap>>;

fn heaps() -> Vec<(&'static str, MakeHeap)> {
    vec![
        (
            "first-fit",
            Box::new(|a| Box::new(heap_over(FreeList::new(FitPolicy::First), a))),
        ),
        (
            "best-fit",
            Box::new(|a| Box::new(heap_over(FreeList::new(FitPolicy::Best), a))),
        ),
        (
            "segregated",
            Box::new(|a| Box::new(heap_over(Segregated::new(), a))),
        ),
        ("tlsf", Box::new(|a| Box::new(heap_over(Tlsf::new(), a)))),
    ]
}

/// A strategy's name and a maker of empty heaps of it.
type EmptyHeap = (&'static str, fn() -> Box<dyn RegionHeap>);

/// Empty heaps of each boundary-tag strategy.
fn empty_heaps() -> Vec<EmptyHeap> {
    vec![
        ("first-fit", || Box::new(FreeList::new(FitPolicy::First))),
        ("best-fit", || Box::new(FreeList::new(FitPolicy::Best))),
        ("segregated", || Box::new(Segregated::new())),
        ("tlsf", || Box::new(Tlsf::new())),
    ]
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
    let a = h.allocate(64, 16).unwrap();
    let _g1 = h.allocate(64, 16).unwrap();
    let p = h.allocate(64, 16).unwrap();
    let _g2 = h.allocate(64, 16).unwrap();
    // SAFETY: `a` and `p` are live blocks of `h`.
    unsafe {
        h.deallocate(a).unwrap();
        h.deallocate(p).unwrap();
    }
    p
}

/// Allocate until a damaged link is followed (it must be reported).
fn allocate_a_few(name: &str, h: &mut dyn RegionHeap, p: NonNull<u8>) {
    expect_report(name, p.as_ptr() as usize, "links", || {
        for _ in 0..3 {
            let _ = h.allocate(64, 16);
        }
    });
}

/// Run `f`, which must panic with a message naming `addr` and containing
/// `what`.
fn expect_report(name: &str, addr: usize, what: &str, f: impl FnOnce()) {
    let err =
        catch_unwind(AssertUnwindSafe(f)).expect_err(&format!("{name}: damage went unreported"));
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains(&format!("{addr:#x}")) && msg.contains(what),
        "{name}: the report does not name {addr:#x} and '{what}': {msg:?}"
    );
}

#[test]
fn a_write_after_free_over_the_links_is_reported() {
    for (name, make) in heaps() {
        for garbage in [GARBAGE_WORD, 0x1000, usize::MAX] {
            let arena = Arena::new(1 << 20);
            let mut h = make(&arena);
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
    for (name, make) in heaps() {
        for by in [1usize, 8] {
            let arena = Arena::new(1 << 20);
            let mut h = make(&arena);
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
        let p = two_free_blocks(&mut *h);
        // A header slot (8 past a 16-byte granule) in the middle of the gap.
        let fake = arena.base() + 384 * KIB + 8;
        let hdr = p.as_ptr() as usize - WORD;
        // SAFETY: the arena is ours: `p`'s first word is its `next` link
        // (it is free), and `fake`'s `prev` word lies in the gap.
        unsafe {
            (p.as_ptr() as *mut usize).write(fake);
            ((fake + 2 * WORD) as *mut usize).write(hdr);
        }
        allocate_a_few(name, &mut *h, p);
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
