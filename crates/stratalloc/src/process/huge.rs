//! Huge blocks of the process heap: a mapping each, found through a
//! header before the payload and a set of live payload addresses, so a
//! free can tell a huge block from anything else without trusting memory.

use core::ptr::{self};
use core::sync::atomic::Ordering;

use crate::backend::Backend;

use super::*;

/// A huge block's header sits in the 32 bytes before its payload.
#[repr(C)]
pub(super) struct HugeHeader {
    /// Start of the mapping (page-aligned).
    base: usize,
    /// Length of the mapping.
    len: usize,
    _pad: usize,
    /// `HUGE_MAGIC ^ base ^ len ^ payload`: tells our huge blocks from
    /// anything else (a foreign pointer, a wild one).
    check: usize,
}
pub(super) const HUGE_HDR: usize = core::mem::size_of::<HugeHeader>();
/// Payload offset of a huge block with alignment ≤ 64.
pub(super) const HUGE_OFFSET: usize = 64;
pub(super) const HUGE_MAGIC: usize = 0x5354_5241_5441_4c4c; // "STRATALL"
const _: () = assert!(HUGE_HDR == 32 && HUGE_OFFSET >= HUGE_HDR);

// ---------------------------------------------------------------- the heap

/// The set of live huge-block payload addresses, so `free`,
/// `realloc` and `malloc_usable_size` know a pointer is a live huge block
/// *before* reading its header: the header of a block freed already lies
/// in memory that is unmapped (a second `free` would fault reading it).
///
/// Open addressing with linear probing over an array in memory mapped from
/// the OS (nothing here allocates), grown by doubling at half load;
/// touched only with the heap lock held.
///
/// Invariants: `cap` is 0 or a power of two; `live + tombs <= cap / 2`
/// after every insert; every live entry is a payload address of a mapping
/// `huge_alloc` made and no one freed; EMPTY (0) and TOMB (1) are never
/// payload addresses (those are 16-aligned and nonzero).
pub(super) struct HugeSet {
    pub(super) slots: *mut usize,
    pub(super) cap: usize,
    pub(super) live: usize,
    pub(super) tombs: usize,
}

pub(super) const SLOT_EMPTY: usize = 0;
pub(super) const SLOT_TOMB: usize = 1;

impl HugeSet {
    pub(super) const fn new() -> Self {
        HugeSet {
            slots: ptr::null_mut(),
            cap: 0,
            live: 0,
            tombs: 0,
        }
    }

    pub(super) fn home(&self, a: usize) -> usize {
        ((a >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7) & (self.cap - 1)
    }

    /// The slot holding `a`, if any.
    pub(super) fn find(&self, a: usize) -> Option<usize> {
        if self.cap == 0 {
            return None;
        }
        let mut i = self.home(a);
        loop {
            // SAFETY: i < cap, and `slots` holds `cap` words.
            let v = unsafe { *self.slots.add(i) };
            if v == a {
                return Some(i);
            }
            if v == SLOT_EMPTY {
                return None;
            }
            i = (i + 1) & (self.cap - 1);
        }
    }

    pub(super) fn contains(&self, a: usize) -> bool {
        self.find(a).is_some()
    }

    /// Remove `a`; `false` if it was not there.
    pub(super) fn remove(&mut self, a: usize) -> bool {
        match self.find(a) {
            Some(i) => {
                // SAFETY: i < cap.
                unsafe { *self.slots.add(i) = SLOT_TOMB };
                self.live -= 1;
                self.tombs += 1;
                true
            }
            None => false,
        }
    }

    /// Rebuild into `new_cap` slots (dropping tombstones); `false` if the
    /// OS refused the memory (the set is unchanged then).
    pub(super) fn rebuild(&mut self, new_cap: usize) -> bool {
        let bytes = new_cap * core::mem::size_of::<usize>();
        let fresh = os_map(bytes) as *mut usize;
        if fresh.is_null() {
            return false;
        }
        let old = (self.slots, self.cap);
        self.slots = fresh;
        self.cap = new_cap;
        self.live = 0;
        self.tombs = 0;
        for i in 0..old.1 {
            // SAFETY: i < old cap.
            let v = unsafe { *old.0.add(i) };
            if v != SLOT_EMPTY && v != SLOT_TOMB {
                self.put(v);
            }
        }
        if !old.0.is_null() {
            // SAFETY: the old array was mapped by `rebuild` with this size.
            unsafe { os_unmap(old.0 as usize, old.1 * core::mem::size_of::<usize>()) };
        }
        true
    }

    pub(super) fn put(&mut self, a: usize) {
        let mut i = self.home(a);
        loop {
            // SAFETY: i < cap.
            let v = unsafe { *self.slots.add(i) };
            if v == SLOT_EMPTY || v == SLOT_TOMB {
                if v == SLOT_TOMB {
                    self.tombs -= 1;
                }
                // SAFETY: i < cap.
                unsafe { *self.slots.add(i) = a };
                self.live += 1;
                return;
            }
            i = (i + 1) & (self.cap - 1);
        }
    }

    /// Add `a` (not present); `false` only if the table had to grow and
    /// the OS refused the memory.
    pub(super) fn insert(&mut self, a: usize) -> bool {
        if (self.live + self.tombs + 1) * 2 > self.cap {
            let want = if (self.live + 1) * 4 > self.cap {
                (self.cap * 2).max(512)
            } else {
                self.cap.max(512)
            };
            if !self.rebuild(want) && self.live + self.tombs + 1 >= self.cap {
                return false;
            }
        }
        self.put(a);
        true
    }
}

impl ProcessHeap {
    /// A block of `size` bytes aligned to `align` in a mapping of its own.
    pub(super) fn huge_alloc(&self, size: usize, align: usize) -> *mut u8 {
        let ps = page_size();
        let align = align.max(16);
        let offset = if align <= HUGE_OFFSET {
            HUGE_OFFSET
        } else {
            // Worst case: the header needs a whole `align` step.
            match align.checked_add(HUGE_HDR) {
                Some(o) => o,
                None => return ptr::null_mut(),
            }
        };
        let len = match size.checked_add(offset).and_then(round_to_page) {
            Some(l) if l <= isize::MAX as usize => l,
            _ => return ptr::null_mut(),
        };
        let base = os_map(len);
        if base.is_null() {
            return ptr::null_mut();
        }
        let base = base as usize;
        let (payload, base, len) = if align <= HUGE_OFFSET {
            (base + HUGE_OFFSET, base, len)
        } else {
            // Over-mapped: give back the pages before the header's page and
            // after the payload's last page.
            let payload = (base + HUGE_HDR + align - 1) & !(align - 1);
            let new_base = (payload - HUGE_HDR) & !(ps - 1);
            let end = base + len;
            let new_end = (payload + size.max(1) + ps - 1) & !(ps - 1);
            // SAFETY: both spans are page-aligned parts of the fresh mapping
            // that nothing points into.
            unsafe {
                os_unmap(base, new_base - base);
                os_unmap(new_end, end - new_end);
            }
            (payload, new_base, new_end - new_base)
        };
        let h = (payload - HUGE_HDR) as *mut HugeHeader;
        // SAFETY: the header's 32 bytes lie in the mapping, before payload,
        // 16-aligned (payload is 16-aligned and HUGE_HDR is 32).
        unsafe {
            h.write(HugeHeader {
                base,
                len,
                _pad: 0,
                check: HUGE_MAGIC ^ base ^ len ^ payload,
            })
        };
        if !self.guard().inner().huge.insert(payload) {
            // SAFETY: the mapping is ours and nobody has seen `payload`.
            unsafe { os_unmap(base, len) };
            return ptr::null_mut();
        }
        self.huge_bytes.fetch_add(len, Ordering::Relaxed);
        self.huge_count.fetch_add(1, Ordering::Relaxed);
        self.huge_in_use
            .fetch_add(base + len - payload, Ordering::Relaxed);
        self.huge_allocs.fetch_add(1, Ordering::Relaxed);
        self.peak_mapped.fetch_max(
            self.huge_bytes.load(Ordering::Relaxed) + self.mapped_regions_racy(),
            Ordering::Relaxed,
        );
        payload as *mut u8
    }

    pub(super) fn mapped_regions_racy(&self) -> usize {
        // A stale value is fine for a peak figure; read without the lock
        // through a raw pointer to a plain usize (no reference is formed).
        // SAFETY: `inner` lives as long as `self`; a torn read of a usize
        // cannot happen on the targets we build for.
        unsafe { ptr::addr_of!((*self.inner.get()).mapped_regions).read_volatile() }
    }

    /// `(base, len)` of the huge block at `p`, or `None` if `p` is not one.
    ///
    /// # Safety
    /// The 32 bytes before `p` must be readable (true for our heap pointers
    /// and for any other malloc's; a wild pointer may fault here).
    pub(super) unsafe fn huge_header(p: *const u8) -> Option<(usize, usize)> {
        let a = p as usize;
        if a % 16 != 0 || a < HUGE_HDR + 4096 {
            return None;
        }
        // SAFETY: the caller's contract.
        let h = unsafe { ((a - HUGE_HDR) as *const HugeHeader).read() };
        if h.check != HUGE_MAGIC ^ h.base ^ h.len ^ a
            || h.base % page_size() != 0
            || h.base >= a
            || h.base.checked_add(h.len).map_or(true, |e| e <= a)
        {
            return None;
        }
        Some((h.base, h.len))
    }

    /// Unmap a huge block.
    pub(super) fn huge_free(&self, p: *mut u8, base: usize, len: usize) {
        // SAFETY: the header is about to disappear with the mapping; wipe
        // the magic first so a stale copy of `p` is never taken for a block.
        unsafe { ((p as usize - HUGE_HDR) as *mut HugeHeader).write_bytes(0, 1) };
        // SAFETY: (base, len) is the whole mapping of a block the caller
        // gave up.
        let returned = unsafe { os_unmap(base, len) };
        self.huge_bytes.fetch_sub(len, Ordering::Relaxed);
        self.huge_count.fetch_sub(1, Ordering::Relaxed);
        self.huge_in_use
            .fetch_sub(base + len - p as usize, Ordering::Relaxed);
        self.huge_frees.fetch_add(1, Ordering::Relaxed);
        if returned {
            self.huge_returned.fetch_add(len as u64, Ordering::Relaxed);
        }
    }

    /// Resize a huge block with `mremap`, keeping it huge.
    pub(super) fn huge_remap(
        &self,
        p: *mut u8,
        base: usize,
        len: usize,
        new_size: usize,
    ) -> *mut u8 {
        let offset = p as usize - base;
        let new_len = match new_size.checked_add(offset).and_then(round_to_page) {
            Some(l) if l <= isize::MAX as usize => l,
            _ => return ptr::null_mut(),
        };
        if new_len == len {
            return p;
        }
        // SAFETY: (base, len) is a whole mapping made by os::map, base is
        // page-aligned; remap keeps the contents and leaves the old mapping
        // intact on failure.
        let nb = unsafe { crate::os::remap(base as *mut u8, len, new_len, page_size()) };
        if nb.is_null() {
            return ptr::null_mut();
        }
        let nb = nb as usize;
        let np = nb + offset;
        if np != p as usize {
            let mut g = self.guard();
            let set = &mut g.inner().huge;
            set.remove(p as usize);
            // Cannot fail: the slot just vacated leaves room.
            let kept = set.insert(np);
            debug_assert!(kept);
        }
        // SAFETY: the header moved with the mapping and still lies before np.
        unsafe {
            ((np - HUGE_HDR) as *mut HugeHeader).write(HugeHeader {
                base: nb,
                len: new_len,
                _pad: 0,
                check: HUGE_MAGIC ^ nb ^ new_len ^ np,
            })
        };
        if new_len > len {
            self.huge_bytes.fetch_add(new_len - len, Ordering::Relaxed);
            self.huge_in_use.fetch_add(new_len - len, Ordering::Relaxed);
        } else {
            self.huge_bytes.fetch_sub(len - new_len, Ordering::Relaxed);
            self.huge_in_use.fetch_sub(len - new_len, Ordering::Relaxed);
            self.huge_returned
                .fetch_add((len - new_len) as u64, Ordering::Relaxed);
        }
        np as *mut u8
    }

    /// Move heap block `p` of `old` usable bytes into a huge block of
    /// `new_size` bytes; null (block untouched) on failure.
    ///
    /// # Safety
    /// `p` is a live heap block; the lock is not held.
    pub(super) unsafe fn move_to_huge(&self, p: *mut u8, old: usize, new_size: usize) -> *mut u8 {
        let q = self.huge_alloc(new_size, 16);
        if !q.is_null() {
            // SAFETY: distinct blocks; `old` bytes readable at p.
            unsafe { ptr::copy_nonoverlapping(p, q, old.min(new_size)) };
            // SAFETY: `p` is live and now moved.
            unsafe { self.free(p) };
        }
        q
    }
}
