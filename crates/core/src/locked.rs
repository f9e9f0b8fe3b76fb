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
//! A pointer the heap rejects on free (double free, wild pointer) is a bug in
//! the program: `GlobalAlloc::dealloc` then panics with a message naming the
//! pointer, which on bare metal reaches the program's panic handler. (The std
//! front ends in the `stratalloc` crate write the message with `write(2)` and
//! abort instead.)

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};

use allocator_api2::alloc::{AllocError, Allocator};

use crate::heap::RegionHeap;
use crate::region::{Region, RegionError};

/// A heap behind a spin lock.
pub struct Locked<H> {
    locked: AtomicBool,
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
            heap: UnsafeCell::new(heap),
        }
    }

    /// Spin until the heap is ours.
    #[inline]
    pub fn lock(&self) -> Guard<'_, H> {
        loop {
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Guard { lock: self };
            }
            while self.locked.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
    }

    /// Take the heap out of the lock.
    pub fn into_inner(self) -> H {
        self.heap.into_inner()
    }
}

impl<H: RegionHeap> Locked<H> {
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
        match self.lock().allocate(layout.size(), layout.align()) {
            Some(p) => p.as_ptr(),
            None => core::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        let Some(p) = NonNull::new(ptr) else { return };
        // SAFETY: GlobalAlloc's contract: `ptr` came from this allocator.
        if let Err(e) = unsafe { self.lock().deallocate(p) } {
            panic!("stratalloc: {e}");
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(p) = NonNull::new(ptr) else {
            return core::ptr::null_mut();
        };
        // SAFETY: GlobalAlloc's contract: `ptr` is live in this allocator.
        match unsafe { self.lock().reallocate(p, new_size, layout.align()) } {
            Some(n) => n.as_ptr(),
            None => core::ptr::null_mut(),
        }
    }
}

// SAFETY: same reasoning as GlobalAlloc above; blocks stay valid until
// `deallocate`, and `Locked` is not Clone, so every copy is the same heap.
unsafe impl<H: RegionHeap + Send> Allocator for Locked<H> {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let p = self
            .lock()
            .allocate(layout.size(), layout.align())
            .ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(p, layout.size()))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, _layout: Layout) {
        // SAFETY: Allocator's contract: `ptr` is live in this allocator.
        if let Err(e) = unsafe { self.lock().deallocate(ptr) } {
            panic!("stratalloc: {e}");
        }
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        _old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: Allocator's contract: `ptr` is live in this allocator.
        let p =
            unsafe { self.lock().reallocate(ptr, new.size(), new.align()) }.ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(p, new.size()))
    }

    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        _old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: Allocator's contract: `ptr` is live in this allocator.
        let p =
            unsafe { self.lock().reallocate(ptr, new.size(), new.align()) }.ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(p, new.size()))
    }
}
