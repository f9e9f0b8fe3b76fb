//! The static heap memory and its one-time hand-over to the allocator.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;

use stratalloc_core::{Locked, RegionHeap};

use crate::demo::{self, HEAP_SIZE};

/// The heap's memory: uninitialised, so it lands in `.bss` and costs nothing
/// in the file. Page-aligned so the map's cells start at a round address.
#[repr(C, align(4096))]
struct HeapMem(UnsafeCell<MaybeUninit<[u8; HEAP_SIZE]>>);

// SAFETY: the memory is touched only through the heap, which serialises
// access with its lock; `start` hands it over exactly once.
unsafe impl Sync for HeapMem {}

static HEAP_MEM: HeapMem = HeapMem(UnsafeCell::new(MaybeUninit::uninit()));

/// Hand `HEAP_MEM` to `heap`, then run the demo. Called once, from `entry`.
pub fn start<H: RegionHeap + Send>(heap: &Locked<H>) -> i32 {
    let base = HEAP_MEM.0.get().cast::<u8>();
    // SAFETY: `start` runs once per process (from `_start`), so this is the
    // only hand-over of HEAP_MEM; nothing else names it; it is `'static`.
    if let Err(e) = unsafe { demo::heap_init(heap, base, HEAP_SIZE) } {
        crate::outln!("FAIL: heap_init: {e}");
        return 1;
    }
    demo::run(heap, base as usize)
}
