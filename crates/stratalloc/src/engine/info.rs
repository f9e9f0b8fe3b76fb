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
//! Other threads change their pages while the walk reads them: each field
//! is read once, whole (aligned words), and bounded before use, so the
//! figures are a snapshot that may be a few blocks old, never a wild read.
//! Segments cannot be unmapped meanwhile (see `segmap::for_each_registered`).

use core::ptr::{addr_of, read_volatile};

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
    // contract); each field is an aligned word read once with a volatile
    // load while its owner may write it: a stale value only skews the
    // figure, and values that steer the walk are bounded first.
    unsafe {
        if read_volatile(addr_of!((*seg).cookie)) != seg as usize ^ COOKIE_XOR {
            return; // being set up or torn down
        }
        let kind = read_volatile(addr_of!((*seg).kind).cast::<u8>());
        if kind == Kind::Huge as u8 {
            let bytes = read_volatile(addr_of!((*seg).map_size));
            if read_volatile(addr_of!((*seg).huge_block)).is_null() {
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
        let free = read_volatile(addr_of!((*seg).free_mask)) & ALL_FREE;
        let dirty = read_volatile(addr_of!((*seg).dirty_mask));
        t.releasable += (free & dirty).count_ones() as usize * SLICE_SIZE;
        t.free_chunks += (free & !(free << 1)).count_ones() as usize;
        let mut i = 1;
        while i < SLICES_PER_SEGMENT {
            let page: *const Page = addr_of!((*seg).pages[i]);
            if free & (1 << i) != 0 || read_volatile(addr_of!((*page).in_use).cast::<u8>()) == 0 {
                i += 1;
                continue;
            }
            let slices = read_volatile(addr_of!((*page).slice_count)) as usize;
            let carved = (*page).carved() as usize;
            let used = (read_volatile(addr_of!((*page).used)) as usize).min(carved);
            let block = read_volatile(addr_of!((*page).block_size)).min(SEGMENT_SIZE);
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
