//! The collector's behaviour, over every general-purpose strategy.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use common::{gc_over, strategies, Arena, DropCount, Tally};
use stratalloc_gc::{Gc, GcHeap, Root};

/// A graph node: edges in a `RefCell<Vec<_>>`, a drop tally, some payload.
struct Node {
    id: usize,
    edges: RefCell<Vec<Gc<Node>>>,
    tally: Tally,
}
stratalloc_gc::trace_fields!(Node { edges, tally });

fn node(id: usize, c: &DropCount) -> Node {
    Node {
        id,
        edges: RefCell::new(Vec::new()),
        tally: Tally(c.clone()),
    }
}

fn link(a: &Root<'_, Node>, b: &Root<'_, Node>) {
    a.edges.borrow_mut().push(Root::gc(b));
}

/// Run `f` once per strategy with a collector over a fresh 4 MiB arena.
fn each(f: impl Fn(&GcHeap<stratalloc_core::AnyHeap>)) {
    for s in strategies() {
        let arena = Arena::new(4 << 20);
        let heap = gc_over(s, &arena);
        f(&heap);
        heap.check().unwrap_or_else(|e| panic!("{s}: {e}"));
        drop(heap);
    }
}

#[test]
fn cycles_are_collected_and_dropped_once() {
    each(|heap| {
        let counts: Vec<DropCount> = (0..3).map(|_| DropCount::default()).collect();
        let a = heap.alloc(node(0, &counts[0])).ok().unwrap();
        let b = heap.alloc(node(1, &counts[1])).ok().unwrap();
        let c = heap.alloc(node(2, &counts[2])).ok().unwrap();
        link(&a, &b);
        link(&b, &c);
        link(&c, &a); // a 3-cycle
        link(&c, &c); // and a self-loop
        let gb = Root::gc(&b);
        drop((b, c));
        let r = heap.collect();
        assert_eq!(r.freed_objects, 0, "the cycle is still rooted through a");
        assert_eq!(r.live_objects, 3);
        heap.check().unwrap();
        assert_eq!(heap.root(gb).unwrap().id, 1);
        drop(a);
        let r = heap.collect();
        assert_eq!(r.freed_objects, 3);
        assert!(r.freed_bytes > 0);
        heap.check().unwrap();
        assert!(counts.iter().all(|c| c.get() == 1), "each drop ran once");
        assert!(heap.root(gb).is_none());
        assert_eq!(heap.collect().freed_objects, 0);
        assert!(counts.iter().all(|c| c.get() == 1), "and only once");
        assert_eq!(heap.heap_stats().in_use, 0, "no leak");
        assert_eq!(heap.stats().live_objects, 0);
    });
}

#[test]
fn long_chain_survives_while_its_head_is_rooted() {
    each(|heap| {
        let c = DropCount::default();
        let head = heap.alloc(node(0, &c)).ok().unwrap();
        let mut prev = head.clone();
        for i in 1..2000 {
            let n = heap.alloc(node(i, &c)).ok().unwrap();
            link(&prev, &n);
            prev = n;
        }
        drop(prev);
        assert_eq!(heap.collect().freed_objects, 0);
        heap.check().unwrap();
        // Walk the chain through handles.
        let mut at = Root::gc(&head);
        let mut seen = 0;
        loop {
            let r = heap.root(at).expect("chain member alive");
            assert_eq!(r.id, seen);
            seen += 1;
            let next = r.edges.borrow().first().copied();
            match next {
                Some(n) => at = n,
                None => break,
            }
        }
        assert_eq!(seen, 2000);
        drop(head);
        assert_eq!(heap.collect().freed_objects, 2000);
        assert_eq!(c.get(), 2000);
        assert_eq!(heap.heap_stats().in_use, 0);
    });
}

#[test]
fn stale_and_foreign_handles_read_as_dead() {
    each(|heap| {
        let c = DropCount::default();
        let g = Root::gc(&heap.alloc(node(7, &c)).ok().unwrap());
        assert!(heap.is_live(g));
        heap.collect();
        assert!(!heap.is_live(g));
        assert!(heap.root(g).is_none());
        // The slot is reused by a new object; the old handle stays dead.
        let n = heap.alloc(node(8, &c)).ok().unwrap();
        assert!(heap.root(g).is_none());
        assert_eq!(heap.root(Root::gc(&n)).unwrap().id, 8);
        // A handle from another heap never names an object here.
        let arena2 = Arena::new(1 << 20);
        let other = gc_over(common::strategies().next().unwrap(), &arena2);
        let o = other.alloc(node(9, &c)).ok().unwrap();
        assert!(heap.root(Root::gc(&o)).is_none());
        assert!(other.root(Root::gc(&n)).is_none());
    });
}

#[test]
fn roots_count_and_clone() {
    each(|heap| {
        let c = DropCount::default();
        let a = heap.alloc(node(1, &c)).ok().unwrap();
        let g = Root::gc(&a);
        assert_eq!(heap.root_count(g), 1);
        let a2 = a.clone();
        let a3 = heap.root(g).unwrap();
        assert_eq!(heap.root_count(g), 3);
        assert!(Root::ptr_eq(&a2, &a3));
        drop((a, a2));
        assert_eq!(heap.collect().freed_objects, 0);
        drop(a3);
        assert_eq!(heap.root_count(g), 0);
        assert_eq!(heap.collect().freed_objects, 1);
        assert_eq!(heap.root_count(g), 0);
    });
}

#[test]
fn threshold_triggers_automatic_collection() {
    each(|heap| {
        heap.set_threshold(16 * 1024);
        let c = DropCount::default();
        let keep = heap.alloc(node(0, &c)).ok().unwrap();
        for i in 0..5000 {
            let g = heap.alloc(node(i, &c)).ok().unwrap();
            if i % 100 == 0 {
                link(&keep, &g);
            }
        }
        let st = heap.stats();
        assert!(st.automatic_collections > 0, "{st:?}");
        assert_eq!(st.automatic_collections, st.collections);
        assert!(
            st.bytes_since_collect <= 16 * 1024 + 1024,
            "collected when past the threshold: {st:?}"
        );
        // Between collections at most threshold + one object of garbage.
        assert!(st.live_bytes < 64 * 1024, "{st:?}");
        heap.check().unwrap();
        heap.collect();
        assert_eq!(heap.stats().live_objects, 51);
        assert_eq!(c.get(), 5000 - 50);
        // Off: no automatic collection.
        heap.set_threshold(usize::MAX);
        let before = heap.stats().collections;
        for i in 0..2000 {
            drop(heap.alloc(node(i, &c)).ok().unwrap());
        }
        assert_eq!(heap.stats().collections, before);
    });
}

#[test]
fn the_value_being_allocated_keeps_its_handles_alive() {
    each(|heap| {
        let c = DropCount::default();
        let b = heap.alloc(node(1, &c)).ok().unwrap();
        let gb = Root::gc(&b);
        drop(b);
        heap.set_threshold(0); // the next alloc collects first
        let a = node(2, &c);
        a.edges.borrow_mut().push(gb);
        let a = heap.alloc(a).ok().unwrap();
        assert!(heap.stats().automatic_collections >= 1);
        assert!(
            heap.is_live(gb),
            "b was reachable from the value being allocated"
        );
        assert_eq!(c.get(), 0);
        drop(a);
        heap.collect();
        assert_eq!(c.get(), 2);
    });
}

#[test]
fn a_full_heap_collects_then_fails_cleanly() {
    for s in strategies() {
        let arena = Arena::new(64 << 10);
        let heap = gc_over(s, &arena).with_threshold(usize::MAX);
        let c = DropCount::default();
        // Garbage beyond the heap's size: the full-heap collection frees it.
        for i in 0..4000 {
            drop(
                heap.alloc(node(i, &c))
                    .ok()
                    .unwrap_or_else(|| panic!("{s}: garbage {i}")),
            );
        }
        assert!(heap.stats().automatic_collections > 0, "{s}");
        heap.check().unwrap();
        // Now keep everything: alloc must eventually give the value back.
        let mut kept = Vec::new();
        let err = loop {
            match heap.alloc(node(kept.len(), &c)) {
                Ok(r) => kept.push(r),
                Err(v) => break v,
            }
            assert!(kept.len() < 10_000, "{s}: a 64 KiB heap never filled");
        };
        assert_eq!(err.id, kept.len(), "{s}: the value came back intact");
        heap.check().unwrap();
        // A full heap with threshold 0: one collection per failed alloc, not two.
        heap.set_threshold(0);
        let before = heap.stats().collections;
        assert!(heap.alloc(node(0, &c)).is_err(), "{s}: still full");
        assert_eq!(heap.stats().collections, before + 1, "{s}");
        heap.set_threshold(usize::MAX);
        let dropped_before = c.get();
        drop(err);
        assert_eq!(c.get(), dropped_before + 1);
        drop(kept);
        heap.collect();
        assert_eq!(heap.heap_stats().in_use, 0, "{s}");
    }
}

#[test]
fn dropping_the_heap_drops_every_object_once() {
    for s in strategies() {
        let arena = Arena::new(1 << 20);
        let c = DropCount::default();
        let heap = gc_over(s, &arena);
        for i in 0..100 {
            let n = heap.alloc(node(i, &c)).ok().unwrap();
            link(&n, &n);
        }
        assert_eq!(heap.collect().freed_objects, 100);
        for i in 0..50 {
            drop(heap.alloc(node(i, &c)));
        }
        drop(heap);
        assert_eq!(c.get(), 150, "{s}");
        // into_inner also drops and hands back an empty heap.
        let heap = gc_over(s, &arena);
        for i in 0..10 {
            drop(heap.alloc(node(i, &c)));
        }
        let h = heap.into_inner();
        assert_eq!(c.get(), 160);
        use stratalloc_core::RegionHeap;
        assert_eq!(h.stats().in_use, 0);
        h.check().unwrap();
    }
}

#[repr(align(4096))]
struct Page([u8; 4096]);
stratalloc_gc::no_trace!(Page);

#[test]
fn zero_sized_and_over_aligned_objects() {
    each(|heap| {
        let z: Vec<_> = (0..10).map(|_| heap.alloc(()).ok().unwrap()).collect();
        let p = heap.alloc(Page([7; 4096])).ok().unwrap();
        assert_eq!(&*p as *const Page as usize % 4096, 0);
        assert!(p.0.iter().all(|&b| b == 7));
        heap.check().unwrap();
        drop((z, p));
        assert_eq!(heap.collect().freed_objects, 11);
        assert_eq!(heap.heap_stats().in_use, 0);
    });
}

/// Handles inside standard containers are traced.
struct Env {
    vars: RefCell<BTreeMap<String, Gc<Env>>>,
    parent: Cell<Option<Gc<Env>>>,
    stack: RefCell<std::collections::VecDeque<(u8, Gc<Env>)>>,
}
stratalloc_gc::trace_fields!(Env {
    vars,
    parent,
    stack
});

fn env() -> Env {
    Env {
        vars: RefCell::new(BTreeMap::new()),
        parent: Cell::new(None),
        stack: RefCell::new(Default::default()),
    }
}

#[test]
fn containers_are_traced() {
    each(|heap| {
        let root = heap.alloc(env()).ok().unwrap();
        let a = heap.alloc(env()).ok().unwrap();
        let b = heap.alloc(env()).ok().unwrap();
        let d = heap.alloc(env()).ok().unwrap();
        root.vars.borrow_mut().insert("a".into(), Root::gc(&a));
        a.parent.set(Some(Root::gc(&b)));
        b.stack.borrow_mut().push_back((1, Root::gc(&d)));
        drop((a, b, d));
        let _garbage = heap.alloc(env()).ok().map(|g| Root::gc(&g));
        assert_eq!(heap.collect().freed_objects, 1);
        assert_eq!(heap.stats().live_objects, 4);
    });
}

#[test]
fn a_mutably_borrowed_cell_during_collection_poisons_the_heap() {
    let arena = Arena::new(1 << 20);
    let heap = gc_over(strategies().next().unwrap(), &arena);
    let c = DropCount::default();
    let a = heap.alloc(node(0, &c)).ok().unwrap();
    let held = a.edges.borrow_mut();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| heap.collect()));
    assert!(r.is_err(), "tracing a mutably borrowed RefCell panics");
    drop(held);
    assert!(heap.check().is_err(), "the heap reports itself poisoned");
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| heap.collect()));
    assert!(r.is_err(), "a poisoned heap refuses to collect");
    assert_eq!(a.id, 0, "rooted objects stay readable");
    drop(a);
    drop(heap); // leaks the objects rather than running Drop on a broken heap
    assert_eq!(c.get(), 0);
}

struct Reenter;
impl Drop for Reenter {
    fn drop(&mut self) {
        HEAP.with(|h| {
            if let Some(h) = h.get() {
                let _ = h.alloc(1u32);
            }
        });
    }
}
stratalloc_gc::no_trace!(Reenter);

thread_local! {
    static HEAP: Cell<Option<&'static GcHeap<stratalloc_core::AnyHeap>>> = const { Cell::new(None) };
}

#[test]
fn alloc_from_a_drop_during_collection_panics() {
    let arena: &'static Arena = Box::leak(Box::new(Arena::new(1 << 20)));
    let heap: &'static GcHeap<_> =
        Box::leak(Box::new(gc_over(strategies().next().unwrap(), arena)));
    HEAP.with(|h| h.set(Some(heap)));
    drop(heap.alloc(Reenter));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| heap.collect()));
    let msg = r
        .err()
        .and_then(|e| e.downcast::<String>().ok())
        .expect("panicked");
    assert!(msg.contains("during a collection"), "{msg}");
    HEAP.with(|h| h.set(None));
}

#[test]
fn the_suite_covers_the_general_purpose_strategies() {
    let names: Vec<&str> = strategies().map(|s| s.name()).collect();
    for want in ["bump", "tlsf", "buddy", "first-fit", "segregated"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
}
