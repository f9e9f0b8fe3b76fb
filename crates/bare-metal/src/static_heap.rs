//! The static memory: the global allocator's heap and the collector's, each
//! handed over once.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;

use stratalloc_core::{Locked, RegionHeap};

use crate::demo::{self, HEAP_SIZE};

/// Heap memory: uninitialised, so it lands in `.bss` and costs nothing in
/// the file. Page-aligned so the map's cells start at a round address.
#[repr(C, align(4096))]
struct StaticMem<const N: usize>(UnsafeCell<MaybeUninit<[u8; N]>>);

// SAFETY: each buffer is touched only through the one heap it is handed to
// (the global one serialises access with its lock); `start` hands each over
// exactly once.
unsafe impl<const N: usize> Sync for StaticMem<N> {}

/// Bytes of the collector's heap.
const GC_HEAP_SIZE: usize = 1 << 20;

static HEAP_MEM: StaticMem<HEAP_SIZE> = StaticMem(UnsafeCell::new(MaybeUninit::uninit()));
static GC_MEM: StaticMem<GC_HEAP_SIZE> = StaticMem(UnsafeCell::new(MaybeUninit::uninit()));

/// Hand `HEAP_MEM` to `heap`, run the demo, then the collector demo over
/// `GC_MEM`. Called once, from `entry`.
pub fn start<H: RegionHeap + Send>(heap: &Locked<H>) -> i32 {
    let base = HEAP_MEM.0.get().cast::<u8>();
    // SAFETY: `start` runs once per process (from `_start`), so this is the
    // only hand-over of HEAP_MEM; nothing else names it; it is `'static`.
    if let Err(e) = unsafe { demo::heap_init(heap, base, HEAP_SIZE) } {
        crate::outln!("FAIL: heap_init: {e}");
        return 1;
    }
    let code = demo::run(heap, base as usize);
    // SAFETY: as above, for GC_MEM: handed over once, to the demo's GcHeap.
    let gc_failures = unsafe { crate::gc_demo::run(GC_MEM.0.get().cast(), GC_HEAP_SIZE) };
    if gc_failures == 0 {
        crate::outln!("gc result: ok");
        code
    } else {
        crate::outln!("gc result: {gc_failures} failure(s)");
        1
    }
}
