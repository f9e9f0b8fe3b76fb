//! Allocation + collection throughput of `GcHeap<Tlsf>` against
//! `Rc<RefCell<_>>` on the system allocator.
//!
//! ```sh
//! cargo run --release -p stratalloc-gc --example gc_bench [trees|rings]
//! ```
//!
//! Workloads (each run 5 times; the table shows the median):
//! - `trees`: the binary-trees pattern: a long-lived tree of depth 16 kept
//!   alive while 40 trees of depth 14 are built, walked (node count checked)
//!   and dropped.
//! - `rings`: 20 000 cycles of 32 nodes each, built, walked once and
//!   dropped. The `Rc` version must break each cycle by hand (or leak); the
//!   collector needs nothing.
//!
//! The GC figures include every collection it ran (the threshold is given
//! in the table). The `Rc` figures use the process's global allocator
//! (glibc malloc here). Timings are wall-clock on whatever machine runs it.

use std::cell::{Cell, RefCell};
use std::hint::black_box;
use std::mem::MaybeUninit;
use std::rc::Rc;
use std::time::Instant;

use stratalloc_core::strategies::tlsf::Tlsf;
use stratalloc_core::{Region, RegionHeap};
use stratalloc_gc::{Gc, GcHeap, Root};

const LONG_DEPTH: u32 = 16;
const SHORT_DEPTH: u32 = 14;
const TREES: usize = 40;
const RINGS: usize = 20_000;
const RING_LEN: usize = 32;
const RUNS: usize = 5;

struct Node {
    left: Option<Gc<Node>>,
    right: Option<Gc<Node>>,
}
stratalloc_gc::trace_fields!(Node { left, right });

struct Ring {
    next: Cell<Option<Gc<Ring>>>,
    value: u64,
}
stratalloc_gc::trace_fields!(Ring { next });

struct RcNode {
    left: Option<Rc<RefCell<RcNode>>>,
    right: Option<Rc<RefCell<RcNode>>>,
}

struct RcRing {
    next: Option<Rc<RefCell<RcRing>>>,
    value: u64,
}

/// Run `f` on a fresh `GcHeap<Tlsf>` over 128 MiB of the spare capacity
/// of a `Vec` (pre-faulted), freed afterwards.
fn with_gc_heap<R>(threshold: usize, f: impl FnOnce(&GcHeap<Tlsf>) -> R) -> R {
    let mut mem = Vec::<u128>::with_capacity(8 << 20);
    // Touch every page first, so the timings do not include first-touch
    // page faults (the Rc runs reuse memory malloc already has).
    mem.spare_capacity_mut().fill(MaybeUninit::new(0u128));
    let mut tlsf = Tlsf::new();
    // SAFETY: the Vec's spare capacity is used by nothing else and outlives
    // the heap (dropped at the end of this function, after the heap).
    let region = unsafe { Region::from_raw_parts(mem.as_mut_ptr().cast(), mem.capacity() * 16) };
    // SAFETY: as above.
    unsafe { tlsf.add_region(region.expect("region")) }.expect("add_region");
    let heap = GcHeap::new(tlsf).with_threshold(threshold);
    let r = f(&heap);
    drop(heap);
    drop(mem);
    r
}

fn gc_tree<'h>(heap: &'h GcHeap<Tlsf>, depth: u32) -> Root<'h, Node> {
    let (left, right) = if depth == 0 {
        (None, None)
    } else {
        let l = gc_tree(heap, depth - 1);
        let r = gc_tree(heap, depth - 1);
        (Some(Root::gc(&l)), Some(Root::gc(&r)))
    };
    // The handles in the value are kept alive if this alloc collects.
    heap.alloc(Node { left, right })
        .ok()
        .expect("heap large enough")
}

fn gc_count(heap: &GcHeap<Tlsf>, gc: Gc<Node>) -> usize {
    let n = heap.root(gc).expect("live");
    1 + n.left.map_or(0, |g| gc_count(heap, g)) + n.right.map_or(0, |g| gc_count(heap, g))
}

fn rc_tree(depth: u32) -> Rc<RefCell<RcNode>> {
    let (left, right) = if depth == 0 {
        (None, None)
    } else {
        (Some(rc_tree(depth - 1)), Some(rc_tree(depth - 1)))
    };
    Rc::new(RefCell::new(RcNode { left, right }))
}

fn rc_count(n: &Rc<RefCell<RcNode>>) -> usize {
    let n = n.borrow();
    1 + n.left.as_ref().map_or(0, rc_count) + n.right.as_ref().map_or(0, rc_count)
}

fn nodes(depth: u32) -> usize {
    (1 << (depth + 1)) - 1
}

/// The final collection (timed), then the checks (not timed).
fn finish_gc(heap: &GcHeap<Tlsf>, t: Instant) -> (f64, String) {
    heap.collect();
    let secs = t.elapsed().as_secs_f64();
    let st = heap.stats();
    assert_eq!(st.live_objects, 0);
    heap.check().expect("heap check");
    let note = format!(
        "{} collections, peak live {} KiB",
        st.collections,
        st.peak_live_bytes >> 10
    );
    (secs, note)
}

fn trees_gc(heap: &GcHeap<Tlsf>) -> (f64, String) {
    let t = Instant::now();
    let long = gc_tree(heap, LONG_DEPTH);
    for _ in 0..TREES {
        let tree = gc_tree(heap, SHORT_DEPTH);
        assert_eq!(gc_count(heap, Root::gc(&tree)), nodes(SHORT_DEPTH));
    }
    assert_eq!(gc_count(heap, Root::gc(&long)), nodes(LONG_DEPTH));
    drop(long);
    finish_gc(heap, t)
}

fn trees_rc() -> (f64, String) {
    let t = Instant::now();
    let long = rc_tree(LONG_DEPTH);
    for _ in 0..TREES {
        let tree = rc_tree(SHORT_DEPTH);
        assert_eq!(rc_count(&tree), nodes(SHORT_DEPTH));
    }
    assert_eq!(rc_count(&long), nodes(LONG_DEPTH));
    drop(black_box(long));
    (t.elapsed().as_secs_f64(), String::new())
}

fn ring(heap: &GcHeap<Tlsf>, value: u64) -> Root<'_, Ring> {
    let r = Ring {
        next: Cell::new(None),
        value,
    };
    heap.alloc(r).ok().expect("heap large enough")
}

fn rings_gc(heap: &GcHeap<Tlsf>) -> (f64, String) {
    let t = Instant::now();
    let mut sum = 0u64;
    for r in 0..RINGS {
        let first = ring(heap, r as u64);
        let mut prev = first.clone();
        for i in 1..RING_LEN {
            let n = ring(heap, i as u64);
            prev.next.set(Some(Root::gc(&n)));
            prev = n;
        }
        prev.next.set(Some(Root::gc(&first)));
        drop(prev);
        // Walk the ring once.
        let mut at = Root::gc(&first);
        for _ in 0..RING_LEN {
            let n = heap.root(at).expect("live");
            sum += n.value;
            at = n.next.get().expect("closed ring");
        }
    }
    black_box(sum);
    finish_gc(heap, t)
}

fn rings_rc() -> (f64, String) {
    let t = Instant::now();
    let mut sum = 0u64;
    for r in 0..RINGS {
        let first = Rc::new(RefCell::new(RcRing {
            next: None,
            value: r as u64,
        }));
        let mut prev = first.clone();
        for i in 1..RING_LEN {
            let n = Rc::new(RefCell::new(RcRing {
                next: None,
                value: i as u64,
            }));
            prev.borrow_mut().next = Some(n.clone());
            prev = n;
        }
        prev.borrow_mut().next = Some(first.clone());
        drop(prev);
        let mut at = first.clone();
        for _ in 0..RING_LEN {
            sum += at.borrow().value;
            let next = at.borrow().next.clone().expect("closed ring");
            at = next;
        }
        drop(at);
        // Break the cycle by hand, or every ring leaks.
        first.borrow_mut().next = None;
    }
    black_box(sum);
    (t.elapsed().as_secs_f64(), "cycles broken by hand".into())
}

fn median(mut runs: Vec<(f64, String)>) -> (f64, String) {
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    runs.swap_remove(runs.len() / 2)
}

type GcBench = fn(&GcHeap<Tlsf>) -> (f64, String);
type RcBench = fn() -> (f64, String);

fn row(work: &str, imp: &str, objects: usize, run: &dyn Fn() -> (f64, String)) {
    let (secs, note) = median((0..RUNS).map(|_| run()).collect());
    println!(
        "| {work} | {imp} | {objects} | {:.1} | {:.1} | {note} |",
        secs * 1e3,
        secs * 1e9 / objects as f64
    );
}

fn main() {
    let workloads: [(&str, usize, GcBench, RcBench); 2] = [
        (
            "trees",
            nodes(LONG_DEPTH) + TREES * nodes(SHORT_DEPTH),
            trees_gc,
            trees_rc,
        ),
        ("rings", RINGS * RING_LEN, rings_gc, rings_rc),
    ];
    // An optional argument picks one workload (`gc_bench trees`).
    let only = std::env::args().nth(1);
    println!("| workload | implementation | objects | median ms | ns/object | notes |");
    println!("|---|---|---:|---:|---:|---|");
    for (work, objects, gc, rc) in workloads {
        if only.as_deref().is_some_and(|o| o != work) {
            continue;
        }
        for mib in [1usize, 16] {
            let imp = format!("GcHeap<Tlsf>, threshold {mib} MiB");
            row(work, &imp, objects, &|| with_gc_heap(mib << 20, gc));
        }
        row(work, "Rc<RefCell<_>> (system malloc)", objects, &rc);
    }
}
