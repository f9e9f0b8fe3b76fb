//! The contract every region heap answers: [`RegionHeap`].

use core::fmt;
use core::ptr::NonNull;

use crate::region::{Region, RegionError};
use crate::stats::HeapStats;

/// What a heap found wrong with a pointer it was handed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeapErrorKind {
    /// The pointer lies in none of the heap's regions.
    NotOwned,
    /// The pointer is in a region but is not the start of a block the heap
    /// handed out (an interior pointer, or a wild one).
    InvalidPointer,
    /// The block is already free.
    DoubleFree,
    /// The block's metadata is damaged (a header or footer was overwritten).
    Corrupted,
}

/// A pointer-level error, naming the pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapError {
    /// What is wrong.
    pub kind: HeapErrorKind,
    /// The pointer as the caller passed it.
    pub ptr: usize,
}

impl HeapError {
    /// An error about `ptr`.
    pub fn new(kind: HeapErrorKind, ptr: *const u8) -> Self {
        HeapError {
            kind,
            ptr: ptr as usize,
        }
    }
}

impl fmt::Display for HeapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            HeapErrorKind::NotOwned => "pointer was not allocated by this heap",
            HeapErrorKind::InvalidPointer => "pointer is not the start of an allocated block",
            HeapErrorKind::DoubleFree => "double free",
            HeapErrorKind::Corrupted => "block metadata is corrupted",
        };
        write!(f, "{what}: {:#x}", self.ptr)
    }
}

/// The first broken invariant `check` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckError {
    /// Address of the structure (block, header, list node) that is wrong.
    pub addr: usize,
    /// Which invariant is broken.
    pub what: &'static str,
}

impl CheckError {
    /// A broken invariant at `addr`.
    pub fn new(addr: usize, what: &'static str) -> Self {
        CheckError { addr, what }
    }
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "heap check failed at {:#x}: {}", self.addr, self.what)
    }
}

/// The state of a span reported by [`RegionHeap::walk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockState {
    /// Handed out to a caller.
    Used,
    /// Available for allocation.
    Free,
    /// Metadata, padding or a sliver too small to be a block.
    Overhead,
}

/// One span of a region, as [`RegionHeap::walk`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockInfo {
    /// Address of the span's first byte (for a used block: its header, if any).
    pub addr: usize,
    /// Length of the span in bytes, metadata included.
    pub size: usize,
    /// Used, free or overhead.
    pub state: BlockState,
    /// For a used block, the pointer handed to the caller; otherwise 0.
    pub payload: usize,
}

/// The region-heap contract.
///
/// A heap is created empty by a `const fn new()` (so it can sit in a
/// `static`), then handed memory with [`add_region`](Self::add_region), as
/// often as needed. Methods take `&mut self`: a heap is single-threaded;
/// [`Locked`](crate::Locked) adds a lock.
///
/// # Guarantees every implementation gives
/// - `allocate(size, align)` returns a pointer aligned to
///   `max(align, MIN_ALIGN)` whose [`usable_size`](Self::usable_size) is at
///   least `max(size, 1)`, for every power-of-two `align` up to
///   [`MAX_GUARANTEED_ALIGN`](crate::MAX_GUARANTEED_ALIGN); `None` when the
///   request is invalid (alignment not a power of two, size whose arithmetic
///   would overflow `isize`) or cannot be met.
/// - Blocks never overlap each other or the heap's metadata.
/// - `deallocate` and `usable_size` detect pointers outside every region
///   (always) and double frees and invalid pointers wherever the strategy's
///   metadata can tell, returning a [`HeapError`] and leaving the heap intact.
///   (Not a boundary-tag heap of the [`Trusting`](crate::Trusting) profile:
///   it is handed only live blocks, and checks nothing.)
/// - `walk` reports every byte of every region's managed span exactly once,
///   in address order within a region.
/// - After every live block is freed, a coalescing heap holds one free block
///   per region.
pub trait RegionHeap {
    /// The strategy's name as the command line spells it (`"tlsf"`).
    fn name(&self) -> &'static str;

    /// Hand the heap a region of memory.
    ///
    /// # Safety
    /// `region` must satisfy [`Region::from_raw_parts`]'s contract and must
    /// outlive the heap and every pointer the heap hands out.
    unsafe fn add_region(&mut self, region: Region) -> Result<(), RegionError>;

    /// Allocate `size` bytes aligned to `align`.
    fn allocate(&mut self, size: usize, align: usize) -> Option<NonNull<u8>>;

    /// Free the block at `ptr`.
    ///
    /// # Safety
    /// If `ptr` was handed out by this heap and is still live, the caller
    /// gives up all use of it. A pointer this heap never handed out is
    /// reported where the heap can tell; `ptr` must still be readable if it
    /// lies inside one of the heap's regions.
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>) -> Result<(), HeapError>;

    /// [`deallocate`](Self::deallocate) for a caller that knows the
    /// block's size (`GlobalAlloc::dealloc`, `Allocator::deallocate`, C's
    /// `free_sized`): `size` is the size it was allocated or last resized
    /// with (or anything up to its [`usable_size`](Self::usable_size)).
    ///
    /// A heap may check the size and may use it. This default checks it
    /// against [`usable_size`](Self::usable_size) (a second pointer
    /// lookup); the boundary-tag heaps check it against the header they
    /// read anyway (checked profile) or trust it. A size the block cannot
    /// have is reported through
    /// [`corruption::report`](crate::corruption::report) naming the
    /// pointer, before anything is changed.
    ///
    /// # Safety
    /// As for [`deallocate`](Self::deallocate).
    unsafe fn deallocate_sized(&mut self, ptr: NonNull<u8>, size: usize) -> Result<(), HeapError> {
        // SAFETY: forwarded from the caller.
        let usable = unsafe { self.usable_size(ptr) }?;
        if size > usable {
            crate::corruption::report(ptr.as_ptr() as usize, crate::corruption::WRONG_SIZE);
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.deallocate(ptr) }
    }

    /// Grow or shrink the block at `ptr` without moving it, so its usable
    /// size becomes at least `new_size`. Returns `true` on success (the block
    /// may then be larger than asked); `false` leaves the block untouched.
    ///
    /// # Safety
    /// `ptr` must be a live block of this heap.
    unsafe fn resize_in_place(&mut self, ptr: NonNull<u8>, new_size: usize) -> bool;

    /// The usable size of the live block at `ptr`.
    ///
    /// # Safety
    /// As for [`deallocate`](Self::deallocate): `ptr` must be readable if it
    /// lies in one of the heap's regions.
    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> Result<usize, HeapError>;

    /// `true` if `ptr` lies in one of the heap's regions (it says nothing of
    /// whether a block starts there).
    fn owns(&self, ptr: *const u8) -> bool;

    /// Figures on the heap's use.
    fn stats(&self) -> HeapStats;

    /// Call `f` for every span of every region, in address order within
    /// each region.
    fn walk(&self, f: &mut dyn FnMut(BlockInfo));

    /// Verify every invariant of the heap's structures; name the first one
    /// that is broken.
    fn check(&self) -> Result<(), CheckError>;

    /// Move the block at `ptr` to one of `new_size` bytes aligned to `align`,
    /// keeping `min(old usable size, new_size)` bytes of content. Tries
    /// [`resize_in_place`](Self::resize_in_place) first when `ptr` is already
    /// aligned to `align`. On `None` the old block is untouched and still
    /// owned by the caller.
    ///
    /// # Safety
    /// `ptr` must be a live block of this heap.
    unsafe fn reallocate(
        &mut self,
        ptr: NonNull<u8>,
        new_size: usize,
        align: usize,
    ) -> Option<NonNull<u8>> {
        if !crate::util::is_power_of_two(align) {
            return None;
        }
        if ptr.as_ptr() as usize % align == 0 {
            // SAFETY: the caller guarantees `ptr` is live in this heap.
            if unsafe { self.resize_in_place(ptr, new_size) } {
                return Some(ptr);
            }
        }
        // SAFETY: as above.
        let old = unsafe { self.usable_size(ptr) }.ok()?;
        let new = self.allocate(new_size, align)?;
        // SAFETY: both blocks are live and distinct (the heap never hands out
        // overlapping blocks); `old` and `new_size` bound both.
        unsafe {
            core::ptr::copy_nonoverlapping(ptr.as_ptr(), new.as_ptr(), old.min(new_size));
        }
        // SAFETY: the caller gave `ptr` up; its contents now live at `new`.
        let freed = unsafe { self.deallocate(ptr) };
        debug_assert!(freed.is_ok(), "reallocate: freeing the old block failed");
        Some(new)
    }

    /// [`reallocate`](Self::reallocate) for a caller that knows the block's
    /// size, `old_size` (as for [`deallocate_sized`](Self::deallocate_sized),
    /// which says what is checked).
    ///
    /// # Safety
    /// As for [`reallocate`](Self::reallocate).
    unsafe fn reallocate_sized(
        &mut self,
        ptr: NonNull<u8>,
        old_size: usize,
        new_size: usize,
        align: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: forwarded from the caller.
        if let Ok(usable) = unsafe { self.usable_size(ptr) } {
            if old_size > usable {
                crate::corruption::report(ptr.as_ptr() as usize, crate::corruption::WRONG_SIZE);
            }
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.reallocate(ptr, new_size, align) }
    }
}
