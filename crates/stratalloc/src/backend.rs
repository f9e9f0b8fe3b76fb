//! The contract between process allocators and their front ends: [`Backend`].
//!
//! The engine, every core strategy grown from OS pages, and every wrapper
//! (stats, check, leaks, trace) implement it; the C ABI and `GlobalAlloc`
//! call it. A wrapper holds the backend below it, so they stack in any order.
//!
//! Rules for every implementation, because `malloc` reaches them:
//! - never allocate from the Rust global allocator, never panic, never unwind;
//! - be callable from any thread, including threads that are exiting, from
//!   inside `fork` handlers and during start-up before `main`.

/// A thread-safe allocator for a whole process.
///
/// Sizes and alignments are unchecked `usize`s as C hands them over; an
/// alignment that is not a power of two or a size above `isize::MAX` gives
/// null. Every pointer is aligned to at least 16 and can be given back with
/// [`free`](Self::free) and measured with [`usable_size`](Self::usable_size),
/// whichever method produced it.
///
/// # Safety
/// Implementations must hand out blocks that do not overlap any other live
/// block, honour size and alignment, and keep a block's contents until it is
/// freed or moved by `realloc`.
pub unsafe trait Backend: Sync {
    /// Short name for reports (`"engine"`, `"tlsf"`, `"stats(engine)"`).
    fn name(&self) -> &'static str;

    /// `size` bytes aligned to `align` (a power of two), or null. Size 0
    /// gives a unique, freeable pointer.
    fn alloc(&self, size: usize, align: usize) -> *mut u8;

    /// Like `alloc`, with the bytes zeroed (fresh OS pages need no memset).
    fn alloc_zeroed(&self, size: usize, align: usize) -> *mut u8 {
        let p = self.alloc(size, align);
        if !p.is_null() {
            // SAFETY: `p` is a fresh block of at least `size` bytes.
            unsafe { core::ptr::write_bytes(p, 0, size) };
        }
        p
    }

    /// Give back a block. Null is ignored.
    ///
    /// # Safety
    /// `p` is null or a live block of this backend; a pointer it never
    /// handed out is reported (message naming the pointer, then abort) where
    /// the backend can tell.
    unsafe fn free(&self, p: *mut u8);

    /// Resize a block to `new_size` bytes keeping its first
    /// `min(old, new_size)` bytes and at least its original alignment's
    /// 16-byte guarantee. Null on failure, with the old block untouched.
    /// `p` must not be null and `new_size` must not be 0 (the C layer decides
    /// what those mean).
    ///
    /// # Safety
    /// `p` is a live block of this backend.
    unsafe fn realloc(&self, p: *mut u8, new_size: usize) -> *mut u8;

    /// Bytes usable at `p` (at least what was asked for).
    ///
    /// # Safety
    /// `p` is a live block of this backend.
    unsafe fn usable_size(&self, p: *const u8) -> usize;

    /// Return free memory to the OS now; `true` if anything was returned.
    fn trim(&self) -> bool {
        false
    }

    /// Called before `fork` in a multi-threaded process (see `select`,
    /// "fork"), after stdio's list lock is taken: make sure the child
    /// inherits no lock held by a thread that does not exist there, either
    /// by taking every lock here and releasing it in `fork_parent` /
    /// `fork_child`, or by holding nothing and repairing in `fork_child`.
    /// A lock the calling thread holds already (a fork from a signal
    /// handler) must be skipped. A lock another thread holds is waited for
    /// (`sync::FutexLock::fork_prepare` and the like) only while no other
    /// thread is preparing a fork; otherwise give back everything this
    /// call took and return `false`, and the caller retries with no lock
    /// held (`sync`'s module docs say why). `true`: every lock is held (or
    /// skipped) until `fork_parent` / `fork_child`.
    #[must_use]
    fn fork_prepare(&self) -> bool {
        true
    }
    /// See [`fork_prepare`](Self::fork_prepare).
    fn fork_parent(&self) {}
    /// See [`fork_prepare`](Self::fork_prepare).
    fn fork_child(&self) {}

    /// Current figures (see [`BackendStats`]).
    fn stats(&self) -> BackendStats {
        BackendStats::default()
    }

    /// Where the memory is now, in glibc's terms (see [`HeapInfo`]): what
    /// `mallinfo2`, `malloc_stats` and `malloc_info` report. May walk the
    /// allocator's metadata (it is not called on a fast path). The default
    /// derives it from [`stats`](Self::stats) with no block counts.
    fn heap_info(&self) -> HeapInfo {
        let s = self.stats();
        HeapInfo {
            arena: s.mapped.max(s.in_use),
            in_use: s.in_use,
            peak_mapped: s.peak_mapped,
            ..HeapInfo::default()
        }
    }
}

/// Where a backend's memory is, with glibc's `mallinfo2` meanings:
/// `arena == in_use + free()` and `releasable <= free()`, and
/// `arena + huge_bytes` is all the memory the backend holds from the OS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeapInfo {
    /// Bytes held for ordinary blocks (everything mapped but the huge
    /// blocks' own mappings): `arena`, and `malloc_stats`' "system bytes".
    pub arena: usize,
    /// Bytes of ordinary blocks in use (usable sizes): `uordblks`.
    pub in_use: usize,
    /// Free blocks and free spans, as far as the backend counts them:
    /// `ordblks`.
    pub free_chunks: usize,
    /// Live huge blocks, each in a mapping of its own: `hblks`.
    pub huge_blocks: usize,
    /// Bytes of those mappings: `hblkhd`.
    pub huge_bytes: usize,
    /// Free bytes `malloc_trim` could give back to the OS now (resident,
    /// not yet returned): `keepcost`.
    pub releasable: usize,
    /// Highest mapped figure seen: `usmblks` (glibc's historical meaning).
    pub peak_mapped: usize,
}

impl HeapInfo {
    /// Bytes of `arena` not in use: `fordblks`.
    pub fn free(&self) -> usize {
        self.arena - self.in_use
    }
}

/// Figures any backend can report; fields a backend does not track are 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// Bytes in live blocks (usable sizes).
    pub in_use: usize,
    /// Highest `in_use` seen.
    pub peak_in_use: usize,
    /// Bytes currently mapped from the OS.
    pub mapped: usize,
    /// Highest `mapped` seen.
    pub peak_mapped: usize,
    /// Bytes given back to the OS (munmap or madvise), in total.
    pub returned: u64,
    /// Successful allocations.
    pub allocs: u64,
    /// Frees.
    pub frees: u64,
}
