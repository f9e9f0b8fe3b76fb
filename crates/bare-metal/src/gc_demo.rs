//! The collector with no OS: a `GcHeap<Tlsf>` over a second static buffer
//! (apart from the global allocator's heap), built with `stratalloc-gc`'s
//! default features off, so it needs nothing but `core`.
//!
//! 60 rings of 100 nodes (each ring a cycle), every sixth kept rooted, a
//! 64 KiB threshold so collections run while the rings are built. Then: the
//! kept rings are walked and summed, everything else must be gone; the roots
//! are dropped and one last collection must leave the region heap empty.

use core::cell::Cell;

use alloc::vec::Vec;
use stratalloc_core::strategies::tlsf::Tlsf;
use stratalloc_core::{Region, RegionHeap};
use stratalloc_gc::{Gc, GcHeap, Root};

use crate::outln;

const RINGS: usize = 60;
const RING_LEN: usize = 100;
const KEEP_EVERY: usize = 6;

struct Node {
    next: Cell<Option<Gc<Node>>>,
    value: u64,
}
stratalloc_gc::trace_fields!(Node { next });

/// Run the collector demo over `len` bytes at `mem`; returns the number of
/// failed checks.
///
/// # Safety
/// `mem..mem + len` must be valid for reads and writes for the rest of the
/// program and used by nothing else.
pub unsafe fn run(mem: *mut u8, len: usize) -> u32 {
    let mut tlsf = Tlsf::new();
    // SAFETY: forwarded from the caller's contract.
    let region = unsafe { Region::from_raw_parts(mem, len) };
    // SAFETY: as above.
    if let Some(Err(e)) = region.map(|r| unsafe { tlsf.add_region(r) }) {
        outln!("FAIL: gc heap: {e}");
        return 1;
    }
    let heap = GcHeap::new(tlsf).with_threshold(64 << 10);
    let mut failures = 0;
    let mut kept: Vec<Root<'_, Node>> = Vec::new();
    for r in 0..RINGS {
        let node = |value| {
            heap.alloc(Node {
                next: Cell::new(None),
                value,
            })
        };
        let Ok(first) = node(0) else {
            outln!("FAIL: gc heap full at ring {r}");
            return failures + 1;
        };
        let mut prev = first.clone();
        for i in 1..RING_LEN as u64 {
            let Ok(n) = node(i) else {
                outln!("FAIL: gc heap full at ring {r}");
                return failures + 1;
            };
            prev.next.set(Some(Root::gc(&n)));
            prev = n;
        }
        prev.next.set(Some(Root::gc(&first)));
        if r % KEEP_EVERY == 0 {
            kept.push(first);
        }
    }
    let during = heap.stats();
    let last = heap.collect();
    let want_live = RINGS.div_ceil(KEEP_EVERY) * RING_LEN;
    // Walk each kept ring through its handles.
    let want_sum = (RING_LEN * (RING_LEN - 1) / 2) as u64;
    for first in &kept {
        let (mut sum, mut at) = (0, Root::gc(first));
        for _ in 0..RING_LEN {
            let Some(n) = heap.root(at) else {
                outln!("FAIL: gc: a node of a kept ring was collected");
                return failures + 1;
            };
            sum += n.value;
            at = n.next.get().unwrap_or(at);
        }
        if sum != want_sum || at != Root::gc(first) {
            outln!("FAIL: gc: a kept ring is damaged");
            failures += 1;
        }
    }
    outln!(
        "gc: {} objects in {RINGS} rings, {} collections while building ({} automatic), {} live after collect (want {want_live}), peak {} bytes",
        during.allocated_objects,
        during.collections,
        during.automatic_collections,
        last.live_objects,
        during.peak_live_bytes,
    );
    if last.live_objects != want_live || during.automatic_collections == 0 {
        outln!("FAIL: gc: wrong survivors, or no automatic collection");
        failures += 1;
    }
    drop(kept);
    let end = heap.collect();
    let in_use = heap.heap_stats().in_use;
    match heap.check() {
        Ok(()) if end.live_objects == 0 && in_use == 0 => {
            outln!(
                "gc: all roots dropped: {} freed, heap in use 0, check ok",
                end.freed_objects
            )
        }
        r => {
            outln!(
                "FAIL: gc: after dropping every root: {r:?}, {} live, {in_use} bytes in use",
                end.live_objects
            );
            failures += 1;
        }
    }
    failures
}
