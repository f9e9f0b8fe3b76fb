//! Random object graphs against a reachability model.
//!
//! A program of random operations (allocate, link, unlink, root, unroot,
//! collect, change the threshold) runs on the collector and on a model that
//! knows which nodes exist, their edges and their roots. After every step:
//! the heap's `check()` passes; a node is live in the heap exactly when the
//! model says so; every dead node's `Drop` ran exactly once and no live
//! node's did. A collection (explicit or automatic) kills exactly the nodes
//! no root reaches. At the end, dropping every root and collecting leaves
//! the region heap with nothing in use.

mod common;

use std::cell::RefCell;

use common::{gc_over, strategies, Arena, DropCount, Tally};
use proptest::prelude::*;
use stratalloc_gc::{Gc, Root};

struct Node {
    edges: RefCell<Vec<Gc<Node>>>,
    _tally: Tally,
    _payload: Vec<u8>,
}
stratalloc_gc::trace_fields!(Node { edges });

#[derive(Debug, Clone)]
enum Op {
    Alloc { payload: usize },
    Link { from: usize, to: usize },
    Unlink { from: usize, edge: usize },
    Root { node: usize },
    Unroot { which: usize },
    Collect,
    Threshold { bytes: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..200).prop_map(|payload| Op::Alloc { payload }),
        5 => (any::<usize>(), any::<usize>()).prop_map(|(from, to)| Op::Link { from, to }),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(from, edge)| Op::Unlink { from, edge }),
        1 => any::<usize>().prop_map(|node| Op::Root { node }),
        3 => any::<usize>().prop_map(|which| Op::Unroot { which }),
        1 => Just(Op::Collect),
        1 => prop_oneof![Just(0usize), Just(512), Just(4096), Just(usize::MAX)]
            .prop_map(|bytes| Op::Threshold { bytes }),
    ]
}

struct ModelNode {
    gc: Gc<Node>,
    alive: bool,
    edges: Vec<usize>,
    drops: DropCount,
}

/// Kill every live model node no held root reaches.
fn model_collect(nodes: &mut [ModelNode], held: &[usize]) {
    let mut reached = vec![false; nodes.len()];
    let mut stack: Vec<usize> = held.to_vec();
    while let Some(n) = stack.pop() {
        if reached[n] || !nodes[n].alive {
            continue;
        }
        reached[n] = true;
        stack.extend(nodes[n].edges.iter().copied());
    }
    for (n, r) in nodes.iter_mut().zip(reached) {
        if n.alive && !r {
            n.alive = false;
        }
    }
}

fn run(ops: &[Op], strategy: stratalloc_core::Strategy) {
    let arena = Arena::new(4 << 20);
    let heap = gc_over(strategy, &arena);
    let mut nodes: Vec<ModelNode> = Vec::new();
    let mut held: Vec<(usize, Root<'_, Node>)> = Vec::new();

    for (step, op) in ops.iter().enumerate() {
        let collections_before = heap.stats().collections;
        match *op {
            Op::Alloc { payload } => {
                let drops = DropCount::default();
                let r = heap
                    .alloc(Node {
                        edges: RefCell::new(Vec::new()),
                        _tally: Tally(drops.clone()),
                        _payload: vec![step as u8; payload],
                    })
                    .ok()
                    .expect("a 4 MiB heap holds every test graph");
                if heap.stats().collections != collections_before {
                    // The automatic collection ran before the new node existed.
                    let roots: Vec<usize> = held.iter().map(|h| h.0).collect();
                    model_collect(&mut nodes, &roots);
                }
                nodes.push(ModelNode {
                    gc: Root::gc(&r),
                    alive: true,
                    edges: Vec::new(),
                    drops,
                });
                held.push((nodes.len() - 1, r));
            }
            Op::Link { from, to } if !nodes.is_empty() => {
                let (from, to) = (from % nodes.len(), to % nodes.len());
                match heap.root(nodes[from].gc) {
                    Some(r) => {
                        assert!(nodes[from].alive, "step {step}: a dead node was rooted");
                        r.edges.borrow_mut().push(nodes[to].gc);
                        nodes[from].edges.push(to);
                    }
                    None => assert!(!nodes[from].alive, "step {step}: a live node read as dead"),
                }
            }
            Op::Unlink { from, edge } if !nodes.is_empty() => {
                let from = from % nodes.len();
                if let Some(r) = heap.root(nodes[from].gc) {
                    let mut e = r.edges.borrow_mut();
                    if !e.is_empty() {
                        let i = edge % e.len();
                        e.remove(i);
                        nodes[from].edges.remove(i);
                    }
                }
            }
            Op::Root { node } if !nodes.is_empty() => {
                let n = node % nodes.len();
                match heap.root(nodes[n].gc) {
                    Some(r) => held.push((n, r)),
                    None => assert!(!nodes[n].alive, "step {step}: a live node read as dead"),
                }
            }
            Op::Unroot { which } if !held.is_empty() => {
                let i = which % held.len();
                held.swap_remove(i);
            }
            Op::Collect => {
                let live_before = heap.stats().live_objects;
                let r = heap.collect();
                let roots: Vec<usize> = held.iter().map(|h| h.0).collect();
                model_collect(&mut nodes, &roots);
                let live = nodes.iter().filter(|n| n.alive).count();
                assert_eq!(r.live_objects, live, "step {step}");
                assert_eq!(r.freed_objects, live_before - live, "step {step}");
            }
            Op::Threshold { bytes } => heap.set_threshold(bytes),
            _ => {}
        }
        heap.check()
            .unwrap_or_else(|e| panic!("{strategy}, step {step} ({op:?}): {e}"));
        for (i, n) in nodes.iter().enumerate() {
            assert_eq!(
                heap.is_live(n.gc),
                n.alive,
                "{strategy}, step {step}: node {i}"
            );
            let want = if n.alive { 0 } else { 1 };
            assert_eq!(
                n.drops.get(),
                want,
                "{strategy}, step {step}: drops of node {i}"
            );
        }
        assert_eq!(
            heap.stats().live_objects,
            nodes.iter().filter(|n| n.alive).count()
        );
    }

    drop(held);
    heap.collect();
    heap.check().unwrap();
    assert!(nodes
        .iter()
        .all(|n| !heap.is_live(n.gc) && n.drops.get() == 1));
    assert_eq!(heap.stats().live_objects, 0);
    assert_eq!(
        heap.heap_stats().in_use,
        0,
        "{strategy}: nothing left in use"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_graphs_match_the_reachability_model(ops in prop::collection::vec(op(), 1..160)) {
        for s in strategies() {
            run(&ops, s);
        }
    }
}
