//! The segment map: a flat bitmap over the 48-bit address space (one bit
//! per 4 MiB, 8 MiB of `.bss` of which only touched pages are resident).
//! `free` asks it before reading any header, so a pointer from another
//! allocator is reported instead of crashing.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::*};

use super::segment::*;

const MAP_BITS: usize = 48;
/// Words of the map: one bit per segment of the 48-bit address space.
const MAP_WORDS: usize = 1 << (MAP_BITS - SEGMENT_SHIFT - 6);

/// The segment map: 8 MiB of zero-initialised static memory (`.bss`), so
/// only the pages holding bits that were ever set become resident; a
/// lookup is one shift and one load, with no level to follow.
static SEGMAP: [AtomicU64; MAP_WORDS] = [const { AtomicU64::new(0) }; MAP_WORDS];

/// Lowest and highest segment index ever registered: [`for_each_registered`]
/// scans only the words between them (touching no page of the map that
/// was never written).
static LO: AtomicUsize = AtomicUsize::new(usize::MAX);
static HI: AtomicUsize = AtomicUsize::new(0);

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
        LO.fetch_min(idx, Relaxed);
        HI.fetch_max(idx, Relaxed);
        w.fetch_or(1 << (idx % 64), Release);
    } else {
        w.fetch_and(!(1 << (idx % 64)), Release);
    }
    true
}

/// Call `f` on every registered segment, in address order (a bounded scan:
/// one word per 64 segments between the lowest and highest ever
/// registered).
///
/// A segment passed to `f` stays mapped while the caller holds
/// [`GLOBAL`](super::shared::GLOBAL): every path that unmaps or moves a
/// registered segment unregisters it under that lock first
/// ([`unregister`](super::shared::unregister)).
pub(super) fn for_each_registered(mut f: impl FnMut(*mut Segment)) {
    let (lo, hi) = (LO.load(Relaxed), HI.load(Relaxed));
    if lo > hi {
        return;
    }
    for (w, word) in SEGMAP.iter().enumerate().take(hi / 64 + 1).skip(lo / 64) {
        let mut bits = word.load(Acquire);
        while bits != 0 {
            let b = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            f(((w * 64 + b) << SEGMENT_SHIFT) as *mut Segment);
        }
    }
}
