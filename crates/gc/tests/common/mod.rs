//! Test memory and heaps for every general-purpose strategy.

#![allow(dead_code)]

use std::alloc::{alloc, dealloc, Layout};
use std::cell::Cell;
use std::rc::Rc;

use stratalloc_core::{AnyHeap, Region, RegionHeap, Strategy};
use stratalloc_gc::GcHeap;

/// Memory from the system allocator, freed on drop. Declare it before the
/// heap that uses it so it is dropped after.
pub struct Arena {
    ptr: *mut u8,
    layout: Layout,
}

impl Arena {
    pub fn new(len: usize) -> Self {
        let layout = Layout::from_size_align(len, 1 << 16).unwrap();
        // SAFETY: non-zero size.
        let ptr = unsafe { alloc(layout) };
        assert!(!ptr.is_null());
        Arena { ptr, layout }
    }

    pub fn region(&self) -> Region {
        // SAFETY: the arena outlives every heap built over it in the tests.
        unsafe { Region::from_raw_parts(self.ptr, self.layout.size()).unwrap() }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, self.layout) }
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
