//! Damage that a caller does to the boundary-tag heaps' metadata in default
//! use (no checking wrapper): a write after free over a free block's list
//! links, an overflow into the next block's header. Each must be reported
//! through `stratalloc_core::corruption::report` (by default a panic whose
//! message names the block), never followed into a wild write.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::{heap_over, Arena};
use stratalloc_core::{FitPolicy, FreeList, RegionHeap, Segregated, Tlsf};

fn heaps() -> Vec<(&'static str, Box<dyn Fn(&Arena) -> Box<dyn RegionHeap>>)> {
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
        for garbage in [0x4141_4141_4141_4141_usize, 0x1000, usize::MAX] {
            let arena = Arena::new(1 << 20);
            let mut h = make(&arena);
            // Used blocks between them keep `a` and `p` from merging.
            let a = h.allocate(64, 16).unwrap();
            let _g1 = h.allocate(64, 16).unwrap();
            let p = h.allocate(64, 16).unwrap();
            let _g2 = h.allocate(64, 16).unwrap();
            // SAFETY: `a` and `p` are live blocks of `h`.
            unsafe {
                h.deallocate(a).unwrap();
                h.deallocate(p).unwrap();
            }
            // The bug under test: `p` is free (and on a list after `a`, or
            // heading it), its first words are its links.
            // SAFETY: the arena is ours and outlives the heap.
            unsafe { (p.as_ptr() as *mut [usize; 2]).write([garbage, garbage]) };
            expect_report(name, p.as_ptr() as usize, "links", || {
                for _ in 0..3 {
                    let _ = h.allocate(64, 16);
                }
            });
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
