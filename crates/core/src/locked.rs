//! [`Locked<H>`]: a spin lock around any heap, so it can be a
//! `#[global_allocator]` or an `allocator_api2::Allocator` with no OS.
//!
//! ```ignore
//! #[global_allocator]
//! static HEAP: Locked<Tlsf> = Locked::new(Tlsf::new());
//! // early in main / kernel_main:
//! unsafe { HEAP.add_region(Region::from_raw_parts(ram_base, ram_size).unwrap()) }.unwrap();
//! ```
//!
//! The lock is a test-and-test-and-set spin lock: no OS to park a thread on.
//! It is not reentrant; a heap method never calls back into the lock.
//!
//! ## When the heap panics
//!
//! `dealloc`, `deallocate`, `realloc`, `grow` and `shrink` hand the heap
//! the layout's size ([`RegionHeap::deallocate_sized`],
//! [`RegionHeap::reallocate_sized`]): the checked heaps compare it with the
//! block's, and a wrong one is reported like damage (below).
//!
//! A pointer the heap rejects on free (double free, wild pointer) is a bug in
//! the program: `GlobalAlloc::dealloc` then panics with a message naming the
//! pointer, which on bare metal reaches the program's panic handler. (The std
//! front ends in the `stratalloc` crate write the message with `write(2)` and
//! abort instead.) The lock is released *before* that panic: the heap is
//! intact, and a panic handler may allocate.
//!
//! Damage the heap finds in its own metadata mid-operation goes to
//! [`corruption::report`](crate::corruption::report), which panics by
//! default, with the lock held and the heap half-way through the operation.
//! Then:
//! - if the panic unwinds, the operation's guard releases the lock and
//!   **poisons** the heap;
//! - if it does not (`panic = "abort"`, or a handler that never returns), a
//!   thread that finds the lock held by a holder that took it before the
//!   latest report ([`corruption::reports`](crate::corruption::reports))
//!   stops waiting and poisons the heap, so a panic handler that allocates
//!   gets a null pointer instead of spinning forever. (A report made by
//!   another heap of the program at that moment has the same effect: the
//!   program is going down anyway.)
//!
//! A poisoned heap hands out nothing (`alloc` returns null, `allocate`
//! an error) and `dealloc` leaves blocks where they are: nothing follows the
//! damage again. [`Locked::lock`] still grants the heap, for inspection.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use allocator_api2::alloc::{AllocError, Allocator};

use crate::heap::RegionHeap;
use crate::region::{Region, RegionError};

/// A heap behind a spin lock.
pub struct Locked<H> {
    locked: AtomicBool,
    /// [`corruption::reports`](crate::corruption::reports) when the lock
    /// was last taken.
    taken_at: AtomicUsize,
    /// The heap reported damage in the middle of an operation (see the
    /// module docs).
    poisoned: AtomicBool,
    heap: UnsafeCell<H>,
}

// SAFETY: every access to `heap` goes through `lock()`, which grants it to
// one thread at a time; H must be Send for the heap to be used from the
// thread that holds the lock.
unsafe impl<H: Send> Sync for Locked<H> {}

/// Exclusive access to the heap inside a [`Locked`]; unlocks on drop.
pub struct Guard<'a, H> {
    lock: &'a Locked<H>,
}

impl<H> Locked<H> {
    /// Wrap `heap`. `const`, so it can initialise a `static`.
    pub const fn new(heap: H) -> Self {
        Locked {
            locked: AtomicBool::new(false),
            taken_at: AtomicUsize::new(0),
            poisoned: AtomicBool::new(false),
            heap: UnsafeCell::new(heap),
        }
    }

    /// Spin until the heap is ours (poisoned or not).
    #[inline]
    pub fn lock(&self) -> Guard<'_, H> {
        loop {
            if let Some(g) = self.try_lock() {
                return g;
            }
            while self.locked.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
    }

    /// The heap if the lock is free now.
    #[inline]
    pub fn try_lock(&self) -> Option<Guard<'_, H>> {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        self.taken_at
            .store(crate::corruption::reports(), Ordering::Relaxed);
        Some(Guard { lock: self })
    }

    /// Whether the heap reported damage in the middle of an operation (see
    /// the module docs): it then hands out nothing more.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Run one heap operation with the lock held; `None` if the heap is
    /// poisoned, or becomes so while we wait (its holder reported damage
    /// and may never release it). An operation that unwinds poisons it.
    #[inline]
    fn run<R>(&self, op: impl FnOnce(&mut H) -> R) -> Option<R> {
        let mut g = loop {
            if self.is_poisoned() {
                return None;
            }
            if let Some(g) = self.try_lock() {
                break g;
            }
            while self.locked.load(Ordering::Relaxed) {
                if crate::corruption::reports() != self.taken_at.load(Ordering::Relaxed) {
                    self.poisoned.store(true, Ordering::Release);
                    return None;
                }
                core::hint::spin_loop();
            }
        };
        if self.is_poisoned() {
            return None;
        }
        /// Poisons the heap unless forgotten: dropped only when `op`
        /// unwinds (before the guard releases the lock).
        struct Unwinding<'a>(&'a AtomicBool);
        impl Drop for Unwinding<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        let unwinding = Unwinding(&self.poisoned);
        let r = op(&mut g);
        core::mem::forget(unwinding);
        Some(r)
    }

    /// Take the heap out of the lock.
    pub fn into_inner(self) -> H {
        self.heap.into_inner()
    }
}

impl<H: RegionHeap> Locked<H> {
    /// Free `ptr` of `size` bytes ([`RegionHeap::deallocate_sized`]); a
    /// pointer the heap refuses panics naming it, after the lock is
    /// released (the heap is intact; the panic handler may allocate). A
    /// poisoned heap keeps the block.
    ///
    /// # Safety
    /// As for [`RegionHeap::deallocate`].
    unsafe fn free(&self, ptr: NonNull<u8>, size: usize) {
        // SAFETY: forwarded from the caller.
        let r = self.run(|h| unsafe { h.deallocate_sized(ptr, size) });
        if let Some(Err(e)) = r {
            panic!("stratalloc: {e}");
        }
    }

    /// `Allocator::grow` and `shrink`: move or resize `ptr` (of `old`
    /// bytes) to `new`.
    ///
    /// # Safety
    /// `ptr` is live in this heap.
    unsafe fn resize(
        &self,
        ptr: NonNull<u8>,
        old: usize,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded from the caller.
        let p = self
            .run(|h| unsafe { h.reallocate_sized(ptr, old, new.size(), new.align()) })
            .flatten()
            .ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(p, new.size()))
    }

    /// Hand the heap a region (see [`RegionHeap::add_region`]).
    ///
    /// # Safety
    /// As for [`RegionHeap::add_region`].
    pub unsafe fn add_region(&self, region: Region) -> Result<(), RegionError> {
        // SAFETY: forwarded from the caller.
        unsafe { self.lock().add_region(region) }
    }
}

impl<H> Deref for Guard<'_, H> {
    type Target = H;
    fn deref(&self) -> &H {
        // SAFETY: the guard exists only while `locked` is held by us.
        unsafe { &*self.lock.heap.get() }
    }
}

impl<H> DerefMut for Guard<'_, H> {
    fn deref_mut(&mut self) -> &mut H {
        // SAFETY: the guard exists only while `locked` is held by us.
        unsafe { &mut *self.lock.heap.get() }
    }
}

impl<H> Drop for Guard<'_, H> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

// SAFETY: blocks come from a RegionHeap, which never hands out overlapping
// blocks and honours the layout's size and alignment; each call holds the lock.
unsafe impl<H: RegionHeap + Send> GlobalAlloc for Locked<H> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.run(|h| h.allocate(layout.size(), layout.align())) {
            Some(Some(p)) => p.as_ptr(),
            _ => core::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(p) = NonNull::new(ptr) else { return };
        // SAFETY: GlobalAlloc's contract: `ptr` came from this allocator.
        unsafe { self.free(p, layout.size()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(p) = NonNull::new(ptr) else {
            return core::ptr::null_mut();
        };
        let (old, align) = (layout.size(), layout.align());
        // SAFETY: GlobalAlloc's contract: `ptr` is live in this allocator,
        // allocated with `layout`.
        match self.run(|h| unsafe { h.reallocate_sized(p, old, new_size, align) }) {
            Some(Some(n)) => n.as_ptr(),
            _ => core::ptr::null_mut(),
        }
    }
}

// SAFETY: same reasoning as GlobalAlloc above; blocks stay valid until
// `deallocate`, and `Locked` is not Clone, so every copy is the same heap.
unsafe impl<H: RegionHeap + Send> Allocator for Locked<H> {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let p = self
            .run(|h| h.allocate(layout.size(), layout.align()))
            .flatten()
            .ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(p, layout.size()))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: Allocator's contract: `ptr` is live in this allocator.
        unsafe { self.free(ptr, layout.size()) }
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: Allocator's contract: `ptr` is live in this allocator.
        unsafe { self.resize(ptr, old.size(), new) }
    }

    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: Allocator's contract: `ptr` is live in this allocator.
        unsafe { self.resize(ptr, old.size(), new) }
    }
}
