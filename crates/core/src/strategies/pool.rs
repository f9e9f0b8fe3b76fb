//! # Pool: fixed-size objects, O(1) in and out
//!
//! A pool hands out objects of one size. Each region is cut into equal
//! **slots** (`object_size` rounded up to the object alignment, at least 16
//! bytes); free slots are threaded on an intrusive singly linked list whose
//! link lives in the free slot itself. Allocating pops the head, freeing
//! pushes the slot back: no search, no splitting, no coalescing, no header.
//!
//! ```text
//!   region:  | used-bitmap | slot 0 | slot 1 | slot 2 | slot 3 | ... | tail |
//!                             used     free ---+ used     free
//!   free list: head -> slot 3 -> slot 1 -> null
//!   bitmap:     bit i set  <=>  slot i is handed out
//! ```
//!
//! The **used bitmap** (one bit per slot, at the start of each region, out of
//! the callers' reach) makes `free` exact: a pointer that is not at a slot
//! boundary is an invalid pointer, a slot whose bit is clear is a double free.
//! The free list alone could not tell either.
//!
//! The links live in free slots, where a write after free can reach them.
//! Before a link becomes the head it is checked (a few compares and one
//! bitmap load): null exactly when the slot taken is the last free one,
//! otherwise a slot of one of the regions whose bit is clear. Anything else
//! (a wild address, a used slot, a cycle, a list cut short) goes to
//! [`corruption::report`](crate::corruption::report) naming the slot that
//! held the link; it is never followed, and never turned into a false "out
//! of memory".
//!
//! - **Time**: allocate and free O(1) in the number of objects (a pop or a
//!   push and one bit); both find the slot's region: O(1) for the newest
//!   region, O(regions) for the others. `add_region` threads every slot: O(slots).
//! - **Space**: one bit per slot plus the rounding of the object to its
//!   alignment; nothing per object.
//! - **Drawbacks**: one size only — a request larger than the object (or
//!   aligned more strictly) gets `None`, and a smaller one still takes a
//!   whole slot. Memory given to a pool never serves anything else.
//!
//! Invariants (checked by [`RegionHeap::check`]):
//! - every free-list node is a slot (inside a region's slot array, at a slot
//!   boundary) whose bit is clear, and the list has exactly `free_count`
//!   nodes (so no slot is on it twice);
//! - `free_count + Σ popcount(bitmaps) == capacity`, no bit is set past the
//!   last slot;
//! - `counters.live() == Σ popcount(bitmaps)` and
//!   `counters.in_use == live × slot size`.

use core::ptr::{self, NonNull};

use crate::heap::{BlockInfo, BlockState, CheckError, HeapError, HeapErrorKind, RegionHeap};
use crate::region::{Region, RegionError, RegionList, Span};
use crate::stats::{Counters, HeapStats};
use crate::util::{align_up, checked_request, is_power_of_two, read_link};
use crate::MIN_ALIGN;

const WORD_BITS: usize = usize::BITS as usize;
const WORD: usize = core::mem::size_of::<usize>();

/// Where a region's bitmap and slots lie (derived from its span).
#[derive(Clone, Copy)]
struct Slots {
    bitmap: usize,
    start: usize,
    count: usize,
    stride: usize,
}

impl Slots {
    fn of(span: &Span, stride: usize, align: usize) -> Slots {
        let most = span.len() / stride;
        let bitmap_bytes = most.div_ceil(WORD_BITS) * WORD;
        let start = align_up(span.start + bitmap_bytes, align).unwrap_or(span.end);
        let count = span.end.saturating_sub(start) / stride;
        Slots {
            bitmap: span.start,
            start,
            count,
            stride,
        }
    }

    fn end(&self) -> usize {
        self.start + self.count * self.stride
    }

    fn words(&self) -> usize {
        self.count.div_ceil(WORD_BITS)
    }

    /// The slot index of `p`, if `p` is exactly a slot's start.
    fn index(&self, p: usize) -> Option<usize> {
        if p < self.start || p >= self.end() || (p - self.start) % self.stride != 0 {
            return None;
        }
        Some((p - self.start) / self.stride)
    }

    fn word(&self, w: usize) -> *mut usize {
        (self.bitmap + w * WORD) as *mut usize
    }

    fn is_used(&self, i: usize) -> bool {
        // SAFETY: `i < count`, so the word lies in the bitmap, which this
        // pool owns.
        unsafe { *self.word(i / WORD_BITS) >> (i % WORD_BITS) & 1 == 1 }
    }

    fn set_used(&self, i: usize, used: bool) {
        let bit = 1usize << (i % WORD_BITS);
        // SAFETY: as in `is_used`.
        unsafe {
            let w = self.word(i / WORD_BITS);
            if used {
                *w |= bit;
            } else {
                *w &= !bit;
            }
        }
    }
}

/// A pool of fixed-size objects over any number of regions.
pub struct Pool {
    regions: RegionList,
    /// The newest region's span, tried before the region list.
    hot: Span,
    /// Slot size: the object size rounded up to `align`.
    stride: usize,
    /// Every slot is aligned to this (at least [`MIN_ALIGN`]).
    align: usize,
    /// Head of the free-slot list (null when exhausted).
    free: *mut u8,
    free_count: usize,
    capacity: usize,
    counters: Counters,
}

// SAFETY: the raw pointers point into regions the pool owns exclusively.
unsafe impl Send for Pool {}

impl Pool {
    /// A pool of objects of `object_size` bytes aligned to `object_align`
    /// (a power of two), or `None` if the alignment is not a power of two or
    /// the slot size would overflow. Object size 0 is served as 1.
    pub const fn try_new(object_size: usize, object_align: usize) -> Option<Self> {
        if !is_power_of_two(object_align) {
            return None;
        }
        let align = if object_align < MIN_ALIGN {
            MIN_ALIGN
        } else {
            object_align
        };
        let size = if object_size == 0 { 1 } else { object_size };
        let stride = match align_up(size, align) {
            Some(s) if s <= isize::MAX as usize / 2 => s,
            _ => return None,
        };
        Some(Pool {
            regions: RegionList::new(),
            hot: Span { start: 0, end: 0 },
            stride,
            align,
            free: ptr::null_mut(),
            free_count: 0,
            capacity: 0,
            counters: Counters::new(),
        })
    }

    /// A pool of objects of `object_size` bytes aligned to `object_align`.
    ///
    /// # Panics
    /// If `object_align` is not a power of two or the slot size overflows
    /// (at compile time when used to initialise a `static`); use
    /// [`try_new`](Self::try_new) to get `None` instead.
    pub const fn new(object_size: usize, object_align: usize) -> Self {
        match Self::try_new(object_size, object_align) {
            Some(p) => p,
            None => panic!("Pool::new: alignment not a power of two, or object too large"),
        }
    }

    /// Bytes per object slot (the usable size of every object).
    pub fn slot_size(&self) -> usize {
        self.stride
    }

    /// Objects the pool holds in all (used and free).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Objects available now.
    pub fn available(&self) -> usize {
        self.free_count
    }

    fn slots_of(&self, addr: usize) -> Option<Slots> {
        if self.hot.contains(addr) {
            return Some(Slots::of(&self.hot, self.stride, self.align));
        }
        self.regions
            .find(addr, self.align)
            .map(|s| Slots::of(&s, self.stride, self.align))
    }

    /// The region's slots and the slot index of a used object at `ptr`.
    fn lookup(&self, ptr: *const u8) -> Result<(Slots, usize), HeapError> {
        let p = ptr as usize;
        let slots = self
            .slots_of(p)
            .ok_or(HeapError::new(HeapErrorKind::NotOwned, ptr))?;
        let i = slots
            .index(p)
            .ok_or(HeapError::new(HeapErrorKind::InvalidPointer, ptr))?;
        if !slots.is_used(i) {
            return Err(HeapError::new(HeapErrorKind::DoubleFree, ptr));
        }
        Ok((slots, i))
    }

    /// Whether `next`, the link read from the free slot `p` (of `slots`)
    /// that is being handed out, may become the head: null exactly when
    /// `p` is the last free slot, otherwise another slot (of any region)
    /// whose used bit is clear. The link lives in memory a caller owned,
    /// so a write after free can put anything there: a wild address, `p`
    /// itself or a used slot (a cycle, or a slot handed out twice), or a
    /// null that would end the list early (a false "out of memory").
    #[inline(always)]
    fn link_ok(&self, slots: &Slots, p: usize, next: usize) -> bool {
        if next == 0 {
            return self.free_count == 1;
        }
        if self.free_count == 1 || next == p {
            return false;
        }
        let found = match slots.index(next) {
            Some(i) => Some((*slots, i)),
            None => self.slots_of(next).and_then(|s| Some((s, s.index(next)?))),
        };
        found.is_some_and(|(s, i)| !s.is_used(i))
    }
}

impl RegionHeap for Pool {
    fn name(&self) -> &'static str {
        "pool"
    }

    unsafe fn add_region(&mut self, region: Region) -> Result<(), RegionError> {
        let min = WORD + self.align + self.stride;
        // SAFETY: forwarded from the caller.
        let span = unsafe { self.regions.push(region, self.align, min)? };
        self.hot = span;
        let slots = Slots::of(&span, self.stride, self.align);
        // SAFETY: the bitmap lies at the start of the span we now own.
        unsafe { ptr::write_bytes(slots.bitmap as *mut u8, 0, slots.words() * WORD) };
        // Thread the slots so the lowest address comes out first.
        for i in (0..slots.count).rev() {
            let slot = (slots.start + i * slots.stride) as *mut *mut u8;
            // SAFETY: each slot lies in the span, is aligned to at least 16
            // and is at least 16 bytes long.
            unsafe { slot.write(self.free) };
            self.free = slot.cast();
        }
        self.free_count += slots.count;
        self.capacity += slots.count;
        Ok(())
    }

    fn allocate(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        let fits = checked_request(size, align, 1, 0)
            .is_some_and(|(size, align)| size <= self.stride && align <= self.align);
        let Some(obj) = NonNull::new(self.free).filter(|_| fits) else {
            self.counters.on_fail();
            return None;
        };
        let p = obj.as_ptr() as usize;
        // The head is a free slot: `add_region` and `deallocate` push only
        // slots, and every link is checked below before it becomes the head.
        let Some((slots, i)) = self.slots_of(p).and_then(|s| Some((s, s.index(p)?))) else {
            crate::corruption::report(p, "pool: the free-list head is not a slot");
        };
        // SAFETY: `obj` is a free slot; its first word is the list link.
        let next = unsafe { read_link(obj.as_ptr()) };
        if !self.link_ok(&slots, p, next as usize) {
            crate::corruption::report(
                p,
                "pool: the free-list link of this free slot was overwritten (a write after free?)",
            );
        }
        self.free = next;
        self.free_count -= 1;
        slots.set_used(i, true);
        self.counters.on_alloc(self.stride);
        Some(obj)
    }

    unsafe fn deallocate(&mut self, ptr: NonNull<u8>) -> Result<(), HeapError> {
        let (slots, i) = self.lookup(ptr.as_ptr())?;
        slots.set_used(i, false);
        // SAFETY: the slot was handed out and is now given back; its first
        // word becomes the list link.
        unsafe { ptr.as_ptr().cast::<*mut u8>().write(self.free) };
        self.free = ptr.as_ptr();
        self.free_count += 1;
        self.counters.on_free(self.stride);
        Ok(())
    }

    unsafe fn resize_in_place(&mut self, ptr: NonNull<u8>, new_size: usize) -> bool {
        self.lookup(ptr.as_ptr()).is_ok() && new_size <= self.stride
    }

    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> Result<usize, HeapError> {
        self.lookup(ptr.as_ptr()).map(|_| self.stride)
    }

    fn owns(&self, ptr: *const u8) -> bool {
        self.regions.contains(ptr as usize, self.align)
    }

    fn stats(&self) -> HeapStats {
        HeapStats {
            region_bytes: self.regions.bytes(),
            free: self.free_count * self.stride,
            largest_free: if self.free_count > 0 { self.stride } else { 0 },
            free_blocks: self.free_count,
            ..HeapStats::default()
        }
        .with_counters(&self.counters)
    }

    fn walk(&self, f: &mut dyn FnMut(BlockInfo)) {
        for span in self.regions.spans(self.align) {
            let slots = Slots::of(&span, self.stride, self.align);
            f(BlockInfo {
                addr: span.start,
                size: slots.start.min(span.end) - span.start,
                state: BlockState::Overhead,
                payload: 0,
            });
            for i in 0..slots.count {
                let addr = slots.start + i * slots.stride;
                let used = slots.is_used(i);
                f(BlockInfo {
                    addr,
                    size: slots.stride,
                    state: if used {
                        BlockState::Used
                    } else {
                        BlockState::Free
                    },
                    payload: if used { addr } else { 0 },
                });
            }
            if slots.count > 0 && slots.end() < span.end {
                f(BlockInfo {
                    addr: slots.end(),
                    size: span.end - slots.end(),
                    state: BlockState::Overhead,
                    payload: 0,
                });
            }
        }
    }

    fn check(&self) -> Result<(), CheckError> {
        self.regions.check()?;
        let mut n = 0usize;
        let mut cur = self.free;
        while !cur.is_null() {
            let p = cur as usize;
            let slots = self
                .slots_of(p)
                .ok_or(CheckError::new(p, "free-list node outside every region"))?;
            let i = slots.index(p).ok_or(CheckError::new(
                p,
                "free-list node is not at a slot boundary",
            ))?;
            if slots.is_used(i) {
                return Err(CheckError::new(p, "free-list node is marked used"));
            }
            n += 1;
            if n > self.free_count {
                return Err(CheckError::new(
                    p,
                    "free list longer than the free count (a slot is on it twice)",
                ));
            }
            // SAFETY: `p` is a free slot in a region we own.
            cur = unsafe { read_link(cur) };
        }
        if n != self.free_count {
            return Err(CheckError::new(0, "free list shorter than the free count"));
        }
        let (mut used, mut capacity) = (0usize, 0usize);
        for span in self.regions.spans(self.align) {
            let slots = Slots::of(&span, self.stride, self.align);
            capacity += slots.count;
            for w in 0..slots.words() {
                // SAFETY: the word lies in the region's bitmap.
                let bits = unsafe { *slots.word(w) };
                let valid = (slots.count - w * WORD_BITS).min(WORD_BITS);
                if valid < WORD_BITS && bits >> valid != 0 {
                    return Err(CheckError::new(
                        slots.word(w) as usize,
                        "bit set past the last slot",
                    ));
                }
                used += bits.count_ones() as usize;
            }
        }
        if capacity != self.capacity || used + self.free_count != capacity {
            return Err(CheckError::new(0, "used + free slots != capacity"));
        }
        if used as u64 != self.counters.live() {
            return Err(CheckError::new(0, "used slot count != live counter"));
        }
        if used * self.stride != self.counters.in_use {
            return Err(CheckError::new(
                0,
                "used slots × slot size != in_use counter",
            ));
        }
        Ok(())
    }
}
