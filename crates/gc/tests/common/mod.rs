//! Test memory and heaps for every general-purpose strategy.

#![allow(dead_code)]

use std::cell::Cell;
use std::mem::MaybeUninit;
use std::rc::Rc;

use stratalloc_core::{AnyHeap, Region, RegionHeap, Strategy};
use stratalloc_gc::GcHeap;

/// Test memory: the spare capacity of a `Vec` of 16-byte words, owned
/// through a raw pointer (so the heap may write through it) and freed on
/// drop. Declare it before the heap that uses it so it is dropped after.
pub struct Arena {
    ptr: *mut MaybeUninit<u128>,
    cap: usize,
}

impl Arena {
    pub fn new(len: usize) -> Self {
        let mut v = std::mem::ManuallyDrop::new(Vec::<MaybeUninit<u128>>::with_capacity(len / 16));
        Arena {
            ptr: v.as_mut_ptr(),
            cap: v.capacity(),
        }
    }

    pub fn region(&self) -> Region {
        // SAFETY: the buffer is ours until drop, and outlives every heap
        // built over it in the tests.
        unsafe { Region::from_raw_parts(self.ptr.cast::<u8>(), self.cap * 16).unwrap() }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: the buffer of a Vec with this capacity, freed once here.
        drop(unsafe { Vec::from_raw_parts(self.ptr, 0, self.cap) });
    }
}

/// The strategies that serve any size (pools and slabs serve fixed sizes).
pub fn strategies() -> impl Iterator<Item = Strategy> {
    Strategy::ALL
        .iter()
        .copied()
        .filter(|s| !matches!(s.name(), n if n.starts_with("pool") || n.starts_with("slab")))
}

/// A collector over a fresh heap of strategy `s` over `arena`.
pub fn gc_over(s: Strategy, arena: &Arena) -> GcHeap<AnyHeap> {
    let mut h = AnyHeap::new(s);
    // SAFETY: the arena outlives the heap (declared first by the caller).
    unsafe { h.add_region(arena.region()) }.expect("add_region");
    GcHeap::new(h)
}

/// Counts drops of one object; shared with the test through an `Rc`.
#[derive(Clone, Default)]
pub struct DropCount(pub Rc<Cell<u32>>);

impl DropCount {
    pub fn get(&self) -> u32 {
        self.0.get()
    }
}

/// Bumps its counter when dropped.
pub struct Tally(pub DropCount);

impl Drop for Tally {
    fn drop(&mut self) {
        let c = &(self.0).0;
        c.set(c.get() + 1);
    }
}

stratalloc_gc::no_trace!(Tally);
