//! Allocation + collection throughput of `GcHeap<Tlsf>` against
//! `Rc<RefCell<_>>` on the system allocator and two other Rust GC crates:
//! `gc` (rust-gc, a thread-local mark-and-sweep heap) and `dumpster`
//! (`unsync::Gc`: reference counts plus a cycle collector).
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
//! in the table) and a final forced collection that frees everything (the
//! checks after it are not timed). `Rc`, `gc` and `dumpster` use the
//! process's global allocator (glibc malloc here). The object shapes are the
//! same everywhere: a tree node holds two optional handles and nothing else
//! (no cell, as in the `GcHeap` version; `Rc` needs its `RefCell`); a ring
//! node holds a mutable optional handle (`Cell` for `GcHeap`, `GcCell` for
//! `gc`, `RefCell` for `dumpster`, whose `Cell` wants `Copy`) and a `u64`.
//! Timings are wall-clock on whatever machine runs it.

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

// ---- `gc` (rust-gc) ------------------------------------------------------
//
// One thread-local heap; `Gc::new` collects first when the bytes it holds
// (live or not) exceed its threshold, and raises the threshold to
// held / 0.7 when a collection frees too little. Each run resets the
// threshold to the same value as the `GcHeap` row beside it.

/// gc_derive 0.5 puts its impls inside a `const _`, which today's rustc
/// flags as `non_local_definitions`; the warning is about the macro, not
/// this code.
#[allow(non_local_definitions)]
mod rg_types {
    #[derive(gc::Trace, gc::Finalize)]
    pub struct RgNode {
        pub left: Option<gc::Gc<RgNode>>,
        pub right: Option<gc::Gc<RgNode>>,
    }

    #[derive(gc::Trace, gc::Finalize)]
    pub struct RgRing {
        pub next: gc::GcCell<Option<gc::Gc<RgRing>>>,
        pub value: u64,
    }
}
use rg_types::{RgNode, RgRing};

/// Reset the thread-local heap's threshold, run `f`, force the final
/// collection (timed), then check everything was freed (not timed).
fn with_rust_gc(threshold: usize, f: fn()) -> (f64, String) {
    gc::force_collect();
    gc::configure(|c| {
        c.threshold = threshold;
        c.used_space_ratio = 0.7;
    });
    let before = gc::stats().collections_performed;
    let t = Instant::now();
    f();
    gc::force_collect();
    let secs = t.elapsed().as_secs_f64();
    let st = gc::stats();
    assert_eq!(st.bytes_allocated, 0, "gc: everything freed");
    let mut end_threshold = 0;
    gc::configure(|c| end_threshold = c.threshold);
    let note = format!(
        "{} collections, threshold at the end {} KiB",
        st.collections_performed - before,
        end_threshold >> 10
    );
    (secs, note)
}

// ---- `dumpster` (unsync) -------------------------------------------------
//
// Reference counts free acyclic garbage at once; a `Gc` whose count drops
// to a non-zero value is remembered, and a collection (on the default
// condition: more handles dropped since the last one than exist now)
// looks for unreachable cycles among those.

#[derive(dumpster::Trace)]
struct DNode {
    left: Option<dumpster::unsync::Gc<DNode>>,
    right: Option<dumpster::unsync::Gc<DNode>>,
}

#[derive(dumpster::Trace)]
struct DRing {
    next: RefCell<Option<dumpster::unsync::Gc<DRing>>>,
    value: u64,
}

thread_local! {
    static D_COLLECTIONS: Cell<usize> = const { Cell::new(0) };
    static D_DROPS: Cell<usize> = const { Cell::new(0) };
}

// dumpster has no count of live objects (its count of live handles misses
// the handles inside cycles it frees), so its nodes count their drops: a
// thread-local increment per object, timed.
impl Drop for DNode {
    fn drop(&mut self) {
        D_DROPS.with(|d| d.set(d.get() + 1));
    }
}

impl Drop for DRing {
    fn drop(&mut self) {
        D_DROPS.with(|d| d.set(d.get() + 1));
    }
}

/// dumpster's default condition, counting the collections it starts.
fn d_condition(info: &dumpster::unsync::CollectInfo) -> bool {
    let go = dumpster::unsync::default_collect_condition(info);
    if go {
        D_COLLECTIONS.with(|c| c.set(c.get() + 1));
    }
    go
}

/// dumpster's default condition fires at most once on `rings` (the dead rings'
/// handles count as existing, so the drops seldom outnumber them); a second
/// row also calls `collect()` every `D_EVERY` rings, about as often as the
/// `GcHeap` at 1 MiB collects.
const D_EVERY: usize = 512;

/// Run `f` with the counting condition, collect at the end (timed), then
/// check all `objects` were dropped (not timed).
fn with_dumpster(objects: usize, f: fn()) -> (f64, String) {
    dumpster::unsync::collect();
    dumpster::unsync::set_collect_condition(d_condition);
    D_COLLECTIONS.with(|c| c.set(0));
    D_DROPS.with(|d| d.set(0));
    let t = Instant::now();
    f();
    dumpster::unsync::collect();
    let secs = t.elapsed().as_secs_f64();
    let collections = D_COLLECTIONS.with(Cell::get);
    assert_eq!(
        D_DROPS.with(Cell::get),
        objects,
        "dumpster: everything freed"
    );
    dumpster::unsync::set_collect_condition(dumpster::unsync::default_collect_condition);
    (
        secs,
        format!("{collections} automatic collections + the final one"),
    )
}

/// The `trees` and `rings` workloads for a crate whose handle `$gc`
/// dereferences to the value and whose ring cell has `borrow`/`borrow_mut`
/// (`gc` and `dumpster`): `$tree`, `$count`, `$trees`, and `$rings(every)`
/// which also calls `$collect()` before every `every`-th ring.
macro_rules! deref_gc_workloads {
    ($gc:ident, $cell:ident, $node:ident, $ring:ident, $collect:path,
     $tree:ident, $count:ident, $trees:ident, $rings:ident) => {
        fn $tree(depth: u32) -> $gc<$node> {
            let (left, right) = if depth == 0 {
                (None, None)
            } else {
                (Some($tree(depth - 1)), Some($tree(depth - 1)))
            };
            $gc::new($node { left, right })
        }

        fn $count(n: &$node) -> usize {
            1 + n.left.as_deref().map_or(0, $count) + n.right.as_deref().map_or(0, $count)
        }

        fn $trees() {
            let long = $tree(LONG_DEPTH);
            for _ in 0..TREES {
                let tree = $tree(SHORT_DEPTH);
                assert_eq!($count(&tree), nodes(SHORT_DEPTH));
            }
            assert_eq!($count(&long), nodes(LONG_DEPTH));
            drop(black_box(long));
        }

        fn $rings(every: Option<usize>) {
            let mut sum = 0u64;
            for r in 0..RINGS {
                if every.is_some_and(|e| r > 0 && r % e == 0) {
                    $collect();
                }
                let first = $gc::new($ring {
                    next: $cell::new(None),
                    value: r as u64,
                });
                let mut prev = first.clone();
                for i in 1..RING_LEN {
                    let n = $gc::new($ring {
                        next: $cell::new(None),
                        value: i as u64,
                    });
                    *prev.next.borrow_mut() = Some(n.clone());
                    prev = n;
                }
                *prev.next.borrow_mut() = Some(first.clone());
                drop(prev);
                let mut at = first.clone();
                for _ in 0..RING_LEN {
                    sum += at.value;
                    let next = at.next.borrow().clone().expect("closed ring");
                    at = next;
                }
            }
            black_box(sum);
        }
    };
}

use dumpster::unsync::Gc as DGc;
use gc::{Gc as RgGc, GcCell};

deref_gc_workloads!(
    RgGc,
    GcCell,
    RgNode,
    RgRing,
    gc::force_collect,
    rg_tree,
    rg_count,
    trees_rg,
    rings_rg
);
deref_gc_workloads!(
    DGc,
    RefCell,
    DNode,
    DRing,
    dumpster::unsync::collect,
    d_tree,
    d_count,
    trees_d,
    rings_d
);

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
    type Other = fn();
    let workloads: [(&str, usize, GcBench, RcBench, Other, Other); 2] = [
        (
            "trees",
            nodes(LONG_DEPTH) + TREES * nodes(SHORT_DEPTH),
            trees_gc,
            trees_rc,
            trees_rg,
            trees_d,
        ),
        (
            "rings",
            RINGS * RING_LEN,
            rings_gc,
            rings_rc,
            || rings_rg(None),
            || rings_d(None),
        ),
    ];
    // An optional argument picks one workload (`gc_bench trees`).
    let only = std::env::args().nth(1);
    println!("| workload | implementation | objects | median ms | ns/object | notes |");
    println!("|---|---|---:|---:|---:|---|");
    for (work, objects, gc, rc, rg, d) in workloads {
        if only.as_deref().is_some_and(|o| o != work) {
            continue;
        }
        for mib in [1usize, 16] {
            let imp = format!("GcHeap<Tlsf>, threshold {mib} MiB");
            row(work, &imp, objects, &|| with_gc_heap(mib << 20, gc));
            let imp = format!("gc 0.5 (rust-gc), threshold {mib} MiB");
            row(work, &imp, objects, &|| with_rust_gc(mib << 20, rg));
        }
        row(work, "dumpster 2.1 unsync", objects, &|| {
            with_dumpster(objects, d)
        });
        if work == "rings" {
            let imp = format!("dumpster 2.1 unsync, + collect() every {D_EVERY} rings");
            row(work, &imp, objects, &|| {
                with_dumpster(objects, || rings_d(Some(D_EVERY)))
            });
        }
        row(work, "Rc<RefCell<_>> (system malloc)", objects, &rc);
    }
}
