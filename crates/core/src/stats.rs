//! Usage figures every heap keeps: [`Counters`] (updated on each operation)
//! and [`HeapStats`] (a snapshot).
//!
//! Invariant (checked by each heap's `check`):
//! `in_use == Σ usable_size(live blocks)` and `allocs - frees == live blocks`.

/// Running counters a heap updates on each operation. O(1) per update.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Bytes in live blocks (sum of their usable sizes).
    pub in_use: usize,
    /// Highest `in_use` seen.
    pub peak_in_use: usize,
    /// Successful allocations (a move by `reallocate` counts as one
    /// allocation and one free).
    pub allocs: u64,
    /// Successful frees.
    pub frees: u64,
    /// Allocation requests that returned `None`.
    pub failed: u64,
}

impl Counters {
    /// Zeroed counters.
    pub const fn new() -> Self {
        Counters {
            in_use: 0,
            peak_in_use: 0,
            allocs: 0,
            frees: 0,
            failed: 0,
        }
    }

    /// A block of `usable` bytes was handed out.
    #[inline(always)]
    pub fn on_alloc(&mut self, usable: usize) {
        self.in_use += usable;
        if self.in_use > self.peak_in_use {
            self.peak_in_use = self.in_use;
        }
        self.allocs += 1;
    }

    /// A block of `usable` bytes came back.
    #[inline(always)]
    pub fn on_free(&mut self, usable: usize) {
        // Saturating: a block size read from a header a caller overwrote
        // may be more than is in use; `check` reports the drift, and the
        // figures must not panic (debug builds) or wrap.
        self.in_use = self.in_use.saturating_sub(usable);
        self.frees += 1;
    }

    /// A live block changed usable size in place.
    #[inline(always)]
    pub fn on_resize(&mut self, old: usize, new: usize) {
        // Saturating, as in `on_free`.
        self.in_use = self.in_use.saturating_sub(old).saturating_add(new);
        if self.in_use > self.peak_in_use {
            self.peak_in_use = self.in_use;
        }
    }

    /// An allocation failed.
    #[inline(always)]
    pub fn on_fail(&mut self) {
        self.failed += 1;
    }

    /// Live blocks.
    pub fn live(&self) -> u64 {
        self.allocs - self.frees
    }
}

/// A snapshot of a heap's use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes of every region as handed over.
    pub region_bytes: usize,
    /// Bytes in live blocks (sum of usable sizes).
    pub in_use: usize,
    /// Bytes available in free blocks (payload capacity, metadata excluded).
    pub free: usize,
    /// The largest single allocation that could succeed now with
    /// `MIN_ALIGN` (0 if none).
    pub largest_free: usize,
    /// Number of free blocks.
    pub free_blocks: usize,
    /// Highest `in_use` ever.
    pub peak_in_use: usize,
    /// Successful allocations.
    pub allocs: u64,
    /// Successful frees.
    pub frees: u64,
    /// Failed allocations.
    pub failed: u64,
}

impl HeapStats {
    /// Fill the counter fields from `c`.
    pub fn with_counters(mut self, c: &Counters) -> Self {
        self.in_use = c.in_use;
        self.peak_in_use = c.peak_in_use;
        self.allocs = c.allocs;
        self.frees = c.frees;
        self.failed = c.failed;
        self
    }

    /// Live blocks.
    pub fn live(&self) -> u64 {
        self.allocs - self.frees
    }

    /// Bytes neither in use nor free: headers, footers, padding, slivers.
    pub fn overhead(&self) -> usize {
        self.region_bytes.saturating_sub(self.in_use + self.free)
    }

    /// External fragmentation in per-mille: `1 - largest_free / free`
    /// (0 when all free memory is one block, near 1000 when it is dust).
    pub fn fragmentation_permille(&self) -> u32 {
        if self.free == 0 {
            return 0;
        }
        let largest = self.largest_free.min(self.free) as u128;
        (1000 - largest * 1000 / self.free as u128) as u32
    }
}
