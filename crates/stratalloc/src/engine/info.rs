//! Where the engine's memory is, for `mallinfo2`, `malloc_stats` and
//! `malloc_info` ([`HeapInfo`]), counted when asked: the fast paths keep no
//! byte counter, so this walks every registered segment under
//! [`GLOBAL`](super::shared::GLOBAL) and reads each in-use page's `used`
//! and block size.
//!
//! | figure | from |
//! |---|---|
//! | `in_use` | Σ over in-use pages of `used × block_size` (blocks other threads freed but the owner has not collected yet still count) |
//! | `huge_blocks`, `huge_bytes` | huge segments holding a block, and their mappings |
//! | `arena` | everything the OS layer has mapped but those (segments, cached huge mappings, heap chunks) |
//! | `free_chunks` | free runs of slices + carved blocks not in use |
//! | `releasable` | free slices not yet purged + empty pages + cached huge mappings (what `trim` gives back) |
//!
//! Other threads change their pages while the walk reads them: what they
//! change (the slice masks, each page's `in_use`, `slice_count`,
//! `block_size`, `used`, `capacity`) are relaxed atomics, each read once
//! and bounded before use, so the figures are a snapshot that may be a
//! few blocks old, never a wild read nor a data race. The rest of a header
//! changes only before its segment is registered or under `GLOBAL`, and
//! segments cannot be unmapped meanwhile (see
//! `segmap::for_each_registered`). `tests/engine_model.rs`
//! (`heap_info_while_another_thread_allocates`) checks it under Miri.

use core::ptr::addr_of;
use core::sync::atomic::Ordering::Relaxed;

use super::page::Page;
use super::segment::*;
use crate::backend::HeapInfo;
use crate::os;

#[derive(Default)]
struct Tally {
    in_use: usize,
    free_chunks: usize,
    huge_blocks: usize,
    huge_bytes: usize,
    releasable: usize,
}

/// The engine's figures now (see the module docs).
pub fn heap_info() -> HeapInfo {
    let mut t = Tally::default();
    let o = os::stats();
    if GLOBAL.held_by_me() {
        // Asked from a signal handler that interrupted this thread inside
        // the lock (an exit report, say): no walk, only the mapped figures.
        return HeapInfo {
            arena: o.mapped,
            peak_mapped: o.peak,
            ..HeapInfo::default()
        };
    }
    GLOBAL.lock();
    // SAFETY: GLOBAL is held, so every registered segment stays mapped
    // through the walk.
    for_each_registered(|seg| unsafe { tally(seg, &mut t) });
    GLOBAL.unlock();
    let arena = o.mapped.saturating_sub(t.huge_bytes).max(t.in_use);
    HeapInfo {
        arena,
        in_use: t.in_use,
        free_chunks: t.free_chunks,
        huge_blocks: t.huge_blocks,
        huge_bytes: t.huge_bytes,
        releasable: t.releasable.min(arena - t.in_use),
        peak_mapped: o.peak,
    }
}

/// Add `seg`'s figures to `t`.
///
/// # Safety
/// `seg` is registered and stays mapped for the call (GLOBAL is held).
unsafe fn tally(seg: *mut Segment, t: &mut Tally) {
    // SAFETY: (every read below) `seg`'s header is mapped (the caller's
    // contract). The header fields read here (`cookie`, `kind`,
    // `map_size`, `huge_block`) change only before the segment is
    // registered or under GLOBAL, which this walk holds; the masks and the
    // page counters, which owners change at any time, are relaxed atomics
    // read once each through a reference to the atomic alone (not to the
    // descriptor its owner writes). A stale value only skews the figure,
    // and values that steer the walk are bounded first.
    unsafe {
        if (*seg).cookie != seg as usize ^ COOKIE_XOR {
            return; // being set up or torn down
        }
        let kind = *addr_of!((*seg).kind).cast::<u8>();
        if kind == Kind::Huge as u8 {
            let bytes = (*seg).map_size;
            if (*seg).huge_block.is_null() {
                t.releasable += bytes; // in the huge cache
            } else {
                t.huge_blocks += 1;
                t.huge_bytes += bytes;
            }
            return;
        }
        if kind != Kind::Normal as u8 {
            return;
        }
        let free = (*addr_of!((*seg).free_mask)).load(Relaxed) & ALL_FREE;
        let dirty = (*addr_of!((*seg).dirty_mask)).load(Relaxed);
        t.releasable += (free & dirty).count_ones() as usize * SLICE_SIZE;
        t.free_chunks += (free & !(free << 1)).count_ones() as usize;
        let mut i = 1;
        while i < SLICES_PER_SEGMENT {
            let page: *const Page = addr_of!((*seg).pages[i]);
            if free & (1 << i) != 0 || !(*addr_of!((*page).in_use)).load(Relaxed) {
                i += 1;
                continue;
            }
            let slices = (*addr_of!((*page).slice_count)).load(Relaxed) as usize;
            let carved = (*addr_of!((*page).capacity)).load(Relaxed) as usize;
            let used = ((*addr_of!((*page).used)).load(Relaxed) as usize).min(carved);
            let block = (*addr_of!((*page).block_size))
                .load(Relaxed)
                .min(SEGMENT_SIZE);
            let slices = slices.clamp(1, SLICES_PER_SEGMENT - i);
            t.in_use += used * block;
            t.free_chunks += carved - used;
            if used == 0 {
                t.releasable += slices * SLICE_SIZE; // an empty page: trim frees it
            }
            i += slices;
        }
    }
}
