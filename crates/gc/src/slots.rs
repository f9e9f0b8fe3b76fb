//! The slot table: where handles point, so a stale handle is *detected*
//! instead of followed.
//!
//! A [`Gc<T>`](crate::Gc) is `(index, serial)`. Slot `index` holds the
//! object's header address, the serial it was created with, and its root
//! count. Looking a handle up compares serials: a slot whose object was
//! swept has a null object (or a newer serial), so the old handle reads as
//! dead. Serials are never reused (see [`crate::heap`]), so no handle can
//! ever name a different object than the one it was made for.
//!
//! The table lives in the region heap itself, in chunks that double in size
//! and never move, so a [`Root`](crate::Root) may keep a pointer to its slot:
//!
//! ```text
//!   chunks[0] -> [ 64 slots ]          indices     0 ..   63
//!   chunks[1] -> [ 128 slots ]         indices    64 ..  191
//!   chunks[2] -> [ 256 slots ]         indices   192 ..  447   ...
//!   slot = { obj: *Header | null, serial: u64, roots: usize, next_free: u32 }
//! ```
//!
//! Invariants (checked by [`GcHeap::check`](crate::GcHeap::check)):
//! - every index below `len` lies in an allocated chunk;
//! - a slot is free (on the free list) exactly when its `obj` is null, and a
//!   free slot has no roots;
//! - `free list length + live objects == len`.

use core::cell::Cell;
use core::ptr::{self, NonNull};

use stratalloc_core::RegionHeap;

use crate::object::Header;

/// Slots in the first chunk; chunk `k` has `FIRST_CHUNK << k`.
pub(crate) const FIRST_CHUNK: usize = 64;
/// Chunks at most: 27 chunks hold `64 * (2^27 - 1)` slots, more than `u32::MAX`.
pub(crate) const CHUNKS: usize = 27;
/// "No slot" in the free list.
pub(crate) const NONE: u32 = u32::MAX;

/// One entry of the table.
#[repr(C)]
pub(crate) struct Slot {
    /// The object's header, or null if the slot is free.
    pub obj: Cell<*mut Header>,
    /// The serial of the object in `obj` (kept after it dies, harmlessly).
    pub serial: Cell<u64>,
    /// Live [`Root`](crate::Root)s of the object.
    pub roots: Cell<usize>,
    /// Next free slot while this one is free.
    pub next_free: Cell<u32>,
}

/// The table: chunk pointers, high-water mark, free list.
pub(crate) struct Slots {
    chunks: [Cell<*mut Slot>; CHUNKS],
    /// Indices `0..len` have been initialised.
    len: Cell<u32>,
    /// Slots in allocated chunks.
    capacity: Cell<usize>,
    /// Head of the free list (`NONE` when empty).
    free: Cell<u32>,
}

/// (chunk, offset within the chunk) of `index`.
#[inline]
fn locate(index: u32) -> (usize, usize) {
    let q = index as usize / FIRST_CHUNK + 1;
    let k = (usize::BITS - 1 - q.leading_zeros()) as usize;
    (k, index as usize - FIRST_CHUNK * ((1 << k) - 1))
}

impl Slots {
    pub(crate) fn new() -> Self {
        Slots {
            chunks: [const { Cell::new(ptr::null_mut()) }; CHUNKS],
            len: Cell::new(0),
            capacity: Cell::new(0),
            free: Cell::new(NONE),
        }
    }

    /// Initialised slots.
    pub(crate) fn len(&self) -> u32 {
        self.len.get()
    }

    /// Bytes the chunks take from the region heap (their payload sizes).
    pub(crate) fn bytes(&self) -> usize {
        self.capacity.get() * core::mem::size_of::<Slot>()
    }

    /// The slot at `index`, if it was ever handed out.
    #[inline]
    pub(crate) fn get(&self, index: u32) -> Option<&Slot> {
        if index >= self.len.get() {
            return None;
        }
        let (k, off) = locate(index);
        // SAFETY: indices below `len` lie in allocated chunks (invariant),
        // whose slots were initialised by `take`; chunks never move while
        // the table is non-empty.
        Some(unsafe { &*self.chunks[k].get().add(off) })
    }

    /// Call `f` on every initialised slot, in index order (chunk by chunk,
    /// so the scan is sequential in memory).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Slot)) {
        let mut left = self.len.get() as usize;
        for (k, c) in self.chunks.iter().enumerate() {
            if left == 0 {
                break;
            }
            let n = (FIRST_CHUNK << k).min(left);
            // SAFETY: the first `n` slots of chunk `k` are below `len`, so
            // they are allocated and initialised.
            let chunk = unsafe { core::slice::from_raw_parts(c.get().cast_const(), n) };
            chunk.iter().for_each(&mut f);
            left -= n;
        }
    }

    /// The slot and live object a handle `(index, serial)` names, if the
    /// object is still alive.
    #[inline]
    pub(crate) fn lookup(&self, index: u32, serial: u64) -> Option<(&Slot, *mut Header)> {
        let slot = self.get(index)?;
        let h = slot.obj.get();
        (!h.is_null() && slot.serial.get() == serial).then_some((slot, h))
    }

    /// Take a free slot for `obj` with `serial`, growing the table from
    /// `heap` if needed. `None` if the heap has no room for a new chunk or
    /// the index space is exhausted.
    pub(crate) fn take<H: RegionHeap>(
        &self,
        heap: &mut H,
        obj: *mut Header,
        serial: u64,
    ) -> Option<u32> {
        let head = self.free.get();
        if head != NONE {
            let slot = self.get(head)?;
            self.free.set(slot.next_free.get());
            slot.obj.set(obj);
            slot.serial.set(serial);
            slot.roots.set(0);
            slot.next_free.set(NONE);
            return Some(head);
        }
        let index = self.len.get();
        if index == NONE {
            return None;
        }
        if index as usize == self.capacity.get() {
            let k = locate(index).0;
            let n = FIRST_CHUNK << k;
            let p = heap.allocate(
                n * core::mem::size_of::<Slot>(),
                core::mem::align_of::<Slot>(),
            )?;
            self.chunks[k].set(p.as_ptr().cast());
            self.capacity.set(self.capacity.get() + n);
        }
        let (k, off) = locate(index);
        // SAFETY: `index < capacity`, so the chunk exists and has room for
        // `off`; the slot is not yet initialised, so nothing refers to it.
        unsafe {
            self.chunks[k].get().add(off).write(Slot {
                obj: Cell::new(obj),
                serial: Cell::new(serial),
                roots: Cell::new(0),
                next_free: Cell::new(NONE),
            });
        }
        self.len.set(index + 1);
        Some(index)
    }

    /// Return slot `index` to the free list; its handles become dead.
    pub(crate) fn release(&self, index: u32) {
        if let Some(slot) = self.get(index) {
            debug_assert_eq!(slot.roots.get(), 0, "released a rooted slot");
            slot.obj.set(ptr::null_mut());
            slot.next_free.set(self.free.get());
            self.free.set(index);
        }
    }

    /// Give every chunk back to `heap`. Only when no object is live (so no
    /// [`Root`](crate::Root) points into a chunk).
    pub(crate) fn clear<H: RegionHeap>(&self, heap: &mut H) {
        for c in &self.chunks {
            if let Some(p) = NonNull::new(c.get()) {
                // SAFETY: the chunk came from `heap.allocate` in `take` and
                // nothing refers to it any more (no live objects, no roots).
                let r = unsafe { heap.deallocate(p.cast()) };
                debug_assert!(r.is_ok(), "freeing a slot chunk failed");
                c.set(ptr::null_mut());
            }
        }
        self.len.set(0);
        self.capacity.set(0);
        self.free.set(NONE);
    }

    /// Walk the free list: its length, or an error naming the bad slot.
    pub(crate) fn free_len(&self) -> Result<u32, (u32, &'static str)> {
        let mut n = 0u32;
        let mut at = self.free.get();
        while at != NONE {
            let Some(slot) = self.get(at) else {
                return Err((at, "free list names an index past the table"));
            };
            if !slot.obj.get().is_null() {
                return Err((at, "free list holds a slot with a live object"));
            }
            if slot.roots.get() != 0 {
                return Err((at, "free slot has roots"));
            }
            n += 1;
            if n > self.len.get() {
                return Err((at, "free list has a cycle"));
            }
            at = slot.next_free.get();
        }
        Ok(n)
    }

    /// Bytes of the chunk pointers, for checking them against the heap.
    pub(crate) fn chunk_ptrs(&self) -> impl Iterator<Item = (usize, *mut Slot)> + '_ {
        self.chunks
            .iter()
            .enumerate()
            .map(|(k, c)| (k, c.get()))
            .filter(|(_, p)| !p.is_null())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_covers_indices_contiguously() {
        let mut expect = (0usize, 0usize);
        for i in 0..20_000u32 {
            let got = locate(i);
            assert_eq!(got, expect, "index {i}");
            expect.1 += 1;
            if expect.1 == FIRST_CHUNK << expect.0 {
                expect = (expect.0 + 1, 0);
            }
        }
        assert!(locate(u32::MAX - 1).0 < CHUNKS);
    }
}
