//! Resizing a used block in place, or moving it.

use super::*;

impl<I: FreeIndex, P: Profile> BoundaryHeap<I, P> {
    /// Grow or shrink the used block `b` (header `h`) in place.
    ///
    /// # Safety
    /// `b` must be a used block that `lookup` validated.
    #[inline(always)]
    pub(super) unsafe fn resize_block<const MULTI: bool>(
        &mut self,
        b: usize,
        h: usize,
        new_size: usize,
    ) -> bool {
        if new_size > FAST_MAX {
            return false;
        }
        let need = block_for(new_size, I::MIN_BLOCK);
        let size = h & !FLAGS;
        let pf = h & PREV_FREE;
        let n = b + size;
        // SAFETY: `lookup` validated the block, so `n` is the next header.
        let nh = unsafe { rd(n) };
        let next_free = self.next_free_size::<MULTI>(b, n, nh);
        let new_block = if need <= size {
            let tail = size - need;
            if next_free != 0 && tail > 0 {
                // SAFETY: the tail and the free next block are adjacent; the
                // merged block's next already has PREV_FREE.
                unsafe {
                    self.move_free::<MULTI>(n, next_free, b + need, tail + next_free);
                    wr(b, need | USED | pf);
                }
                need
            } else if tail >= I::MIN_BLOCK {
                // SAFETY: the tail becomes a free block before a used one.
                unsafe {
                    wr(b, need | USED | pf);
                    self.make_free(b + need, tail);
                    wr(n, nh | PREV_FREE);
                }
                need
            } else {
                size
            }
        } else if next_free != 0 && size + next_free >= need {
            let total = size + next_free;
            // SAFETY: the next block is free and indexed; absorbing it keeps
            // the block inside the span.
            unsafe {
                if total - need >= I::MIN_BLOCK {
                    self.move_free::<MULTI>(n, next_free, b + need, total - need);
                    wr(b, need | USED | pf);
                    need
                } else {
                    self.index.remove::<MULTI>(n, next_free);
                    wr(b, total | USED | pf);
                    let nn = b + total;
                    wr(nn, rd(nn) & !PREV_FREE);
                    total
                }
            }
        } else {
            return false;
        };
        self.counters.on_resize(size - WORD, new_block - WORD);
        true
    }

    /// [`RegionHeap::reallocate`] for a pointer the fast stage did not
    /// accept (cold): diagnose it, then resize or move a live block of
    /// another region.
    ///
    /// # Safety
    /// As for [`RegionHeap::reallocate`]; `align` is a power of two.
    #[cold]
    #[inline(never)]
    pub(super) unsafe fn reallocate_slow<const MULTI: bool>(
        &mut self,
        ptr: NonNull<u8>,
        old_size: Option<usize>,
        new_size: usize,
        align: usize,
    ) -> Option<NonNull<u8>> {
        let (b, h) = self.diagnose(ptr.as_ptr()).ok()?;
        self.check_size(b, h, old_size);
        // SAFETY: `diagnose` validated the block.
        unsafe { self.resize_or_move::<MULTI>(b, h, new_size, align) }
    }

    /// Reallocate the validated used block `b` (header `h`): in place if
    /// its payload has the alignment and the neighbours allow it, else by
    /// [`move_block`](Self::move_block) (a tail call).
    ///
    /// # Safety
    /// `b` must be a used block with header `h` that the pointer checks
    /// validated; `align` is a power of two.
    #[inline(always)]
    pub(super) unsafe fn resize_or_move<const MULTI: bool>(
        &mut self,
        b: usize,
        h: usize,
        new_size: usize,
        align: usize,
    ) -> Option<NonNull<u8>> {
        let p = b + WORD;
        // SAFETY: per the function contract.
        if p & (align - 1) == 0 && unsafe { self.resize_block::<MULTI>(b, h, new_size) } {
            // SAFETY: a payload address inside a region is not null.
            return Some(unsafe { NonNull::new_unchecked(p as *mut u8) });
        }
        // SAFETY: per the function contract.
        unsafe { self.move_block::<MULTI>(b, h, new_size, align) }
    }

    /// The moving half of a reallocation: allocate, copy, free. Out of
    /// line (reached by a tail call), so the in-place half makes no call
    /// that returns and saves no registers.
    ///
    /// # Safety
    /// As for [`resize_or_move`](Self::resize_or_move).
    #[inline(never)]
    pub(super) unsafe fn move_block<const MULTI: bool>(
        &mut self,
        b: usize,
        h: usize,
        new_size: usize,
        align: usize,
    ) -> Option<NonNull<u8>> {
        let old = (h & !FLAGS) - WORD;
        let new = self.allocate(new_size, align)?;
        // SAFETY: both blocks are live and distinct; `old` and `new_size`
        // bound both. The old block is still used, but allocating may have
        // changed its PREV_FREE bit: re-read its header before freeing it.
        unsafe {
            core::ptr::copy_nonoverlapping(
                (b + WORD) as *const u8,
                new.as_ptr(),
                old.min(new_size),
            );
            self.counters.on_free(old);
            self.clear_live(b + WORD);
            self.release::<MULTI>(b, rd(b));
        }
        Some(new)
    }
}
