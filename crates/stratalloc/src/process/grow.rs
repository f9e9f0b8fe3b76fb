//! Serving requests from the heap: allocation with the lock held, mapping
//! a new region when the heap is full, moving a block inside the heap, and
//! locating the block of a pointer.

use core::ptr::{self, NonNull};
use core::sync::atomic::Ordering;

use stratalloc_core::{HeapError, HeapErrorKind, Region, RegionHeap};

use super::*;

/// Map a region of `want` bytes or, when the address space is tight
/// (`RLIMIT_AS`), of `max(need, mapped / 16)`, then of `need` (page
/// multiples, `need <= want`; `mapped`: the regions' bytes so far). The
/// middle size keeps the region count logarithmic in the heap's size
/// where request-sized regions alone made thousands of them (glibc's
/// tst-malloc-thread-fail), while taking at most a sixteenth more address
/// space than the heap holds, which other mappings (thread stacks) may
/// need.
pub(super) fn map_region(want: usize, need: usize, mapped: usize) -> Option<(*mut u8, usize)> {
    let floor = round_to_page(mapped / 16).unwrap_or(need).max(need);
    let mut tried = 0;
    for len in [want, floor.min(want), need] {
        if len == tried {
            continue;
        }
        tried = len;
        let p = os_map(len);
        if !p.is_null() {
            return Some((p, len));
        }
    }
    None
}

/// May `alloc_locked` map a new region?
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Growth {
    MapRegions,
    NoMap,
}

pub(super) enum Located {
    Heap(usize),
    Huge(usize, usize),
}

impl ProcessHeap {
    pub(super) fn note_mapped(&self, regions: usize) {
        let total = regions + self.huge_bytes.load(Ordering::Relaxed);
        self.peak_mapped.fetch_max(total, Ordering::Relaxed);
    }

    // ------------------------------------------------------ heap path

    /// Allocate from the heap with the lock held, mapping a region when it
    /// runs dry. Null if even a fresh region cannot serve the request.
    pub(super) fn alloc_locked(
        &self,
        g: &mut Guard<'_>,
        size: usize,
        align: usize,
        growth: Growth,
    ) -> *mut u8 {
        if self.poisoned() {
            // The callers fall back on a mapping of its own.
            return ptr::null_mut();
        }
        if let Some(p) = g.inner().heap.allocate(size, align) {
            return p.as_ptr();
        }
        if growth == Growth::NoMap {
            return ptr::null_mut();
        }
        // Room for the request, its alignment and any strategy's metadata
        // (a buddy heap needs the next power of two, so twice over).
        let need = match size
            .checked_add(align)
            .and_then(|n| n.checked_mul(2))
            .and_then(|n| n.checked_add(64 << 10))
            .and_then(round_to_page)
        {
            Some(n) => n,
            None => return ptr::null_mut(),
        };
        for attempt in 0..2 {
            let inner = g.inner();
            let want = inner.next_region.max(need << attempt);
            let Some((base, len)) = map_region(want, need << attempt, inner.mapped_regions) else {
                return ptr::null_mut();
            };
            // Damage a strategy finds mid-operation (a free-list link
            // overwritten after free, say) aborts with a message naming the
            // block, never unwinds out of malloc.
            stratalloc_core::corruption::set_handler(on_corruption);
            // SAFETY: a fresh private mapping of `len` bytes, handed to the
            // heap alone and never unmapped while the heap lives.
            let added = unsafe {
                match Region::from_raw_parts(base, len) {
                    Some(r) => inner.heap.add_region(r),
                    None => Ok(()),
                }
            };
            if added.is_err() {
                // SAFETY: the heap refused it, so nothing points into it.
                unsafe { os_unmap(base as usize, len) };
                return ptr::null_mut();
            }
            inner.regions += 1;
            inner.mapped_regions += len;
            if len == want && want == inner.next_region {
                inner.next_region = (inner.next_region * 2).min(MAX_REGION);
            }
            let regions = inner.mapped_regions;
            self.note_mapped(regions);
            let inner = g.inner();
            if let Some(p) = inner.heap.allocate(size, align) {
                return p.as_ptr();
            }
        }
        ptr::null_mut()
    }

    // ------------------------------------------------------ huge path

    /// Move (or resize in place) heap block `p` of `old` usable bytes to
    /// `new_size` bytes inside the heap; null (block untouched) on failure.
    pub(super) fn move_in_heap(
        &self,
        g: &mut Guard<'_>,
        p: *mut u8,
        old: usize,
        new_size: usize,
        growth: Growth,
    ) -> *mut u8 {
        let Some(nn) = NonNull::new(p) else {
            return ptr::null_mut();
        };
        if self.poisoned() {
            return ptr::null_mut();
        }
        // SAFETY: `p` is a live heap block (usable_size accepted it).
        if unsafe { g.inner().heap.resize_in_place(nn, new_size) } {
            return p;
        }
        let q = self.alloc_locked(g, new_size, 16, growth);
        if !q.is_null() {
            // SAFETY: distinct live blocks of at least min(old, new_size)
            // bytes.
            unsafe { ptr::copy_nonoverlapping(p, q, old.min(new_size)) };
            // SAFETY: `p` is live and now moved.
            if let Err(e) = unsafe { g.inner().heap.deallocate(nn) } {
                self.bad_pointer("realloc", p, Some(e));
            }
        }
        q
    }

    /// Where `p` lives: `Some(usable)` in the heap (lock still held in
    /// `g`), or the huge block's `(base, len)`.
    pub(super) fn locate(&self, what: &str, g: &mut Guard<'_>, p: *mut u8) -> Located {
        let inner = g.inner();
        if inner.heap.owns(p) {
            // SAFETY: `p` lies in one of the heap's regions, so it is
            // readable; the heap validates it.
            match unsafe { inner.heap.usable_size(NonNull::new_unchecked(p)) } {
                Ok(u) => return Located::Heap(u),
                Err(e) => self.bad_pointer(what, p, Some(e)),
            }
        }
        if !inner.huge.contains(p as usize) {
            self.bad_pointer(what, p, None);
        }
        // SAFETY: a live huge block: its header is mapped.
        match unsafe { Self::huge_header(p) } {
            Some((base, len)) => Located::Huge(base, len),
            None => self.bad_pointer(what, p, Some(HeapError::new(HeapErrorKind::Corrupted, p))),
        }
    }
}
