//! The segment map: a flat bitmap over the 48-bit address space (one bit
//! per 4 MiB, 8 MiB of `.bss` of which only touched pages are resident).
//! `free` asks it before reading any header, so a pointer from another
//! allocator is reported instead of crashing.

use core::sync::atomic::{AtomicU64, Ordering::*};

use super::segment::*;

const MAP_BITS: usize = 48;
/// Words of the map: one bit per segment of the 48-bit address space.
const MAP_WORDS: usize = 1 << (MAP_BITS - SEGMENT_SHIFT - 6);

/// The segment map: 8 MiB of zero-initialised static memory (`.bss`), so
/// only the pages holding bits that were ever set become resident; a
/// lookup is one shift and one load, with no level to follow.
static SEGMAP: [AtomicU64; MAP_WORDS] = [const { AtomicU64::new(0) }; MAP_WORDS];

/// Is `seg` (a segment-aligned address) one of ours?
#[inline(always)]
pub fn segmap_contains(seg: *const Segment) -> bool {
    let a = seg as usize;
    if a >> MAP_BITS != 0 {
        return false;
    }
    let idx = a >> SEGMENT_SHIFT;
    let w = SEGMAP[idx / 64].load(Relaxed);
    w & (1 << (idx % 64)) != 0
}

/// Set or clear the bit of `seg`; false if the address is out of range.
pub(super) fn segmap_set(seg: *const Segment, on: bool) -> bool {
    let a = seg as usize;
    if a >> MAP_BITS != 0 {
        return false;
    }
    let idx = a >> SEGMENT_SHIFT;
    let w = &SEGMAP[idx / 64];
    if on {
        w.fetch_or(1 << (idx % 64), Release);
    } else {
        w.fetch_and(!(1 << (idx % 64)), Release);
    }
    true
}
