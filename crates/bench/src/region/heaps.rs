//! The allocators under test, behind one small trait.
//!
//! [`BenchHeap`] is the least every contender can answer: allocate
//! (size, alignment), free (pointer, size, alignment — the peers need the
//! layout back; ours take the size through `deallocate_sized`, which the
//! checked profile verifies and the trusting one ignores) and reallocate. Each adapter is a thin
//! shim; where a peer has no reallocation of its own the adapter moves the
//! block (allocate, copy, free), which is what its users would write.
//!
//! The list of contenders is [`contenders`]: every `Strategy::ALL` through
//! [`AnyHeap`] (the run-time choice, one dispatch per call), the concrete
//! types directly where we want that dispatch cost to show, then the peers.
//! A [`Visit`] is handed each contender with a constructor, so the
//! benchmark loops are monomorphised per heap type: no `dyn` call in the
//! measured loop except the one `AnyHeap` itself makes.

use core::alloc::Layout;
use core::ptr::NonNull;

use stratalloc_core::{AnyHeap, Region, RegionHeap, Strategy};

/// Which family a contender belongs to (the ratio columns compare ours with
/// the best peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A stratalloc strategy through `AnyHeap`.
    Ours,
    /// A stratalloc strategy's concrete type, called directly.
    OursDirect,
    /// Another crate.
    Peer,
}

impl Kind {
    /// Short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Ours => "stratalloc",
            Kind::OursDirect => "stratalloc (direct)",
            Kind::Peer => "peer",
        }
    }

    /// Parse [`label`](Self::label) back.
    pub fn from_label(s: &str) -> Option<Kind> {
        [Kind::Ours, Kind::OursDirect, Kind::Peer]
            .into_iter()
            .find(|k| k.label() == s)
    }

    /// `true` for ours (through `AnyHeap` or direct).
    pub fn is_ours(self) -> bool {
        self != Kind::Peer
    }
}

/// The memory one heap at a time is built on: a page-aligned buffer,
/// touched once so page faults do not land in the measured loop.
pub struct Arena {
    ptr: NonNull<u8>,
    layout: Layout,
}

impl Arena {
    /// Alignment of the arena (so a binary buddy sees one top-level block).
    pub const ALIGN: usize = 2 << 20;

    /// A fresh arena of `len` bytes (`len` > 0).
    pub fn new(len: usize) -> Arena {
        let layout = Layout::from_size_align(len, Self::ALIGN).expect("arena layout");
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { std::alloc::alloc(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        let a = Arena { ptr, layout };
        a.touch();
        a
    }

    /// Write every page once.
    fn touch(&self) {
        let mut off = 0;
        while off < self.len() {
            // SAFETY: `off < len`, inside the buffer we own.
            unsafe { self.ptr.as_ptr().add(off).write_volatile(0) };
            off += 4096;
        }
    }

    /// First byte.
    pub fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.layout.size()
    }

    /// `false`: an arena is never empty.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// What the benchmarks need of an allocator.
///
/// A heap is built over an [`Arena`] that outlives it; blocks are handed
/// back with the size and alignment they were asked with (or last
/// reallocated to).
pub trait BenchHeap {
    /// Allocate `size` (> 0) bytes aligned to `align` (a power of two).
    fn alloc(&mut self, size: usize, align: usize) -> Option<NonNull<u8>>;

    /// Free a block.
    ///
    /// # Safety
    /// `ptr` is a live block of this heap, allocated (or last reallocated)
    /// with `size` and `align`.
    unsafe fn free(&mut self, ptr: NonNull<u8>, size: usize, align: usize);

    /// Resize a block to `new_size` (> 0), keeping its contents and
    /// alignment; `None` leaves the old block live.
    ///
    /// # Safety
    /// As for [`free`](Self::free).
    unsafe fn realloc(
        &mut self,
        ptr: NonNull<u8>,
        size: usize,
        align: usize,
        new_size: usize,
    ) -> Option<NonNull<u8>>;

    /// The heap's own consistency check, where it has one.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Reallocate by moving: allocate, copy, free.
///
/// # Safety
/// As for [`BenchHeap::realloc`].
unsafe fn move_realloc<H: BenchHeap + ?Sized>(
    h: &mut H,
    ptr: NonNull<u8>,
    size: usize,
    align: usize,
    new_size: usize,
) -> Option<NonNull<u8>> {
    let new = h.alloc(new_size, align)?;
    // SAFETY: both blocks are live, distinct, and at least min(size,
    // new_size) bytes long.
    unsafe { core::ptr::copy_nonoverlapping(ptr.as_ptr(), new.as_ptr(), size.min(new_size)) };
    // SAFETY: forwarded from the caller.
    unsafe { h.free(ptr, size, align) };
    Some(new)
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).expect("benchmark layouts are valid")
}

/// A refused free is a bug in the heap under test: stop the run. Out of
/// line, so the free path of [`Ours`] does not set up the formatting's
/// stack frame on every call (the peers' adapters have no such check).
#[cold]
#[inline(never)]
fn free_failed(name: &str, e: stratalloc_core::HeapError) -> ! {
    panic!("{name}: free failed: {e}");
}

/// A stratalloc heap (any [`RegionHeap`]) over an arena.
pub struct Ours<H: RegionHeap>(H);

impl<H: RegionHeap> Ours<H> {
    /// Hand `heap` the whole arena.
    pub fn over(heap: H, arena: &Arena) -> Result<Box<Self>, String> {
        let mut b = Box::new(Ours(heap));
        // SAFETY: the arena is valid for reads and writes, and nothing else
        // touches it while this heap lives (one heap per arena at a time).
        let region = unsafe { Region::from_raw_parts(arena.ptr(), arena.len()) }
            .ok_or("arena is not a valid region")?;
        // SAFETY: as above; the arena outlives the heap.
        unsafe { b.0.add_region(region) }.map_err(|e| e.to_string())?;
        Ok(b)
    }
}

impl<H: RegionHeap> BenchHeap for Ours<H> {
    #[inline]
    fn alloc(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        self.0.allocate(size, align)
    }
    /// Handed the size, as the peers are (and as `GlobalAlloc::dealloc`
    /// is): the checked heaps verify it, the trusting ones ignore it.
    #[inline]
    unsafe fn free(&mut self, ptr: NonNull<u8>, size: usize, _align: usize) {
        // SAFETY: the caller hands back a live block of this heap, of
        // `size` bytes.
        if let Err(e) = unsafe { self.0.deallocate_sized(ptr, size) } {
            free_failed(self.0.name(), e);
        }
    }
    #[inline]
    unsafe fn realloc(
        &mut self,
        ptr: NonNull<u8>,
        size: usize,
        align: usize,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: as for `free`.
        unsafe { self.0.reallocate_sized(ptr, size, new_size, align) }
    }
    fn check(&self) -> Result<(), String> {
        self.0.check().map_err(|e| e.to_string())
    }
}

/// talc 5 over the arena (`Manual` source: fails on exhaustion).
pub struct TalcHeap(talc::base::Talc<talc::source::Manual, talc::DefaultBinning>);

impl TalcHeap {
    /// Claim the arena.
    pub fn over(arena: &Arena) -> Result<Box<Self>, String> {
        let mut b = Box::new(TalcHeap(talc::base::Talc::new(talc::source::Manual)));
        // SAFETY: the arena is ours alone and outlives the heap.
        unsafe { b.0.claim(arena.ptr(), arena.len()) }.ok_or("talc: claim failed")?;
        Ok(b)
    }
}

impl BenchHeap for TalcHeap {
    #[inline]
    fn alloc(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        // SAFETY: the benchmark never asks for zero bytes.
        unsafe { self.0.allocate(layout(size, align)) }
    }
    #[inline]
    unsafe fn free(&mut self, ptr: NonNull<u8>, size: usize, align: usize) {
        // SAFETY: a live block allocated with this layout.
        unsafe { self.0.deallocate(ptr.as_ptr(), layout(size, align)) }
    }
    #[inline]
    unsafe fn realloc(
        &mut self,
        ptr: NonNull<u8>,
        size: usize,
        align: usize,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: a live block allocated with this layout; new_size > 0.
        if unsafe {
            self.0
                .try_realloc_in_place(ptr.as_ptr(), layout(size, align), new_size)
        } {
            return Some(ptr);
        }
        // SAFETY: forwarded from the caller.
        unsafe { move_realloc(self, ptr, size, align, new_size) }
    }
}

/// rlsf's TLSF: 24 first-level classes of 32 second-level lists each
/// (blocks up to 512 MiB).
pub struct RlsfHeap(rlsf::Tlsf<'static, u32, u32, 24, 32>);

impl RlsfHeap {
    /// Insert the arena as one free block.
    pub fn over(arena: &Arena) -> Result<Box<Self>, String> {
        let mut b = Box::new(RlsfHeap(rlsf::Tlsf::new()));
        let slice = core::ptr::slice_from_raw_parts_mut(arena.ptr(), arena.len());
        let block = NonNull::new(slice).ok_or("null arena")?;
        // SAFETY: the arena is ours alone and outlives the heap.
        unsafe { b.0.insert_free_block_ptr(block) }.ok_or("rlsf: pool too small")?;
        Ok(b)
    }
}

impl BenchHeap for RlsfHeap {
    #[inline]
    fn alloc(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        self.0.allocate(layout(size, align))
    }
    #[inline]
    unsafe fn free(&mut self, ptr: NonNull<u8>, _size: usize, align: usize) {
        // SAFETY: a live block allocated with this alignment.
        unsafe { self.0.deallocate(ptr, align) }
    }
    #[inline]
    unsafe fn realloc(
        &mut self,
        ptr: NonNull<u8>,
        _size: usize,
        align: usize,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: a live block allocated with this alignment.
        unsafe { self.0.reallocate(ptr, layout(new_size, align)) }
    }
}

/// A peer with allocate and free but no reallocation of its own; the
/// adapter [`Moving`] reallocates by moving the block.
pub trait LayoutAlloc {
    /// Allocate a block for `layout`.
    fn alloc_layout(&mut self, layout: Layout) -> Option<NonNull<u8>>;
    /// Free a block.
    ///
    /// # Safety
    /// `ptr` is a live block allocated with `layout`.
    unsafe fn dealloc_layout(&mut self, ptr: NonNull<u8>, layout: Layout);
}

impl LayoutAlloc for linked_list_allocator::Heap {
    #[inline]
    fn alloc_layout(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        self.allocate_first_fit(layout).ok()
    }
    #[inline]
    unsafe fn dealloc_layout(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded from the caller.
        unsafe { self.deallocate(ptr, layout) }
    }
}

impl<const ORDER: usize> LayoutAlloc for buddy_system_allocator::Heap<ORDER> {
    #[inline]
    fn alloc_layout(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        self.alloc(layout).ok()
    }
    #[inline]
    unsafe fn dealloc_layout(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded from the caller.
        unsafe { self.dealloc(ptr, layout) }
    }
}

/// A [`LayoutAlloc`] as a [`BenchHeap`]: reallocation moves the block.
pub struct Moving<T: LayoutAlloc>(T);

/// linked_list_allocator's first-fit free list.
pub type LinkedListHeap = Moving<linked_list_allocator::Heap>;

/// buddy_system_allocator with 32 orders.
pub type BuddyHeap = Moving<buddy_system_allocator::Heap<32>>;

impl LinkedListHeap {
    /// Initialise over the arena.
    pub fn over(arena: &Arena) -> Result<Box<Self>, String> {
        let mut b = Box::new(Moving(linked_list_allocator::Heap::empty()));
        // SAFETY: the arena is ours alone and outlives the heap.
        unsafe { b.0.init(arena.ptr(), arena.len()) };
        Ok(b)
    }
}

impl BuddyHeap {
    /// Initialise over the arena.
    pub fn over(arena: &Arena) -> Result<Box<Self>, String> {
        let mut b = Box::new(Moving(buddy_system_allocator::Heap::<32>::new()));
        // SAFETY: the arena is ours alone and outlives the heap.
        unsafe { b.0.init(arena.ptr() as usize, arena.len()) };
        Ok(b)
    }
}

impl<T: LayoutAlloc> BenchHeap for Moving<T> {
    #[inline]
    fn alloc(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        self.0.alloc_layout(layout(size, align))
    }
    #[inline]
    unsafe fn free(&mut self, ptr: NonNull<u8>, size: usize, align: usize) {
        // SAFETY: a live block allocated with this layout.
        unsafe { self.0.dealloc_layout(ptr, layout(size, align)) }
    }
    #[inline]
    unsafe fn realloc(
        &mut self,
        ptr: NonNull<u8>,
        size: usize,
        align: usize,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: forwarded from the caller.
        unsafe { move_realloc(self, ptr, size, align, new_size) }
    }
}

/// dlmalloc's memory source for one arena: the whole arena on its first
/// request, nothing after (dlmalloc asks its source for segments; it
/// never gets back what it was given).
pub struct ArenaSource {
    base: usize,
    len: usize,
    given: core::sync::atomic::AtomicBool,
}

// SAFETY: `alloc` hands out the arena (which the heap owns alone) once,
// and nothing else; every other request is refused, and nothing is ever
// released or remapped.
unsafe impl dlmalloc::Allocator for ArenaSource {
    fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
        use core::sync::atomic::Ordering;
        if size > self.len || self.given.swap(true, Ordering::Relaxed) {
            return (core::ptr::null_mut(), 0, 0);
        }
        (self.base as *mut u8, self.len, 0)
    }
    fn remap(&self, _ptr: *mut u8, _old: usize, _new: usize, _can_move: bool) -> *mut u8 {
        core::ptr::null_mut()
    }
    fn free_part(&self, _ptr: *mut u8, _old: usize, _new: usize) -> bool {
        false
    }
    fn free(&self, _ptr: *mut u8, _size: usize) -> bool {
        false
    }
    fn can_release_part(&self, _flags: u32) -> bool {
        false
    }
    fn allocates_zeros(&self) -> bool {
        false
    }
    fn page_size(&self) -> usize {
        4096
    }
}

/// dlmalloc (the Rust port of Doug Lea's malloc) over the arena.
pub struct DlHeap(dlmalloc::Dlmalloc<ArenaSource>);

impl DlHeap {
    /// A heap whose only segment is the arena.
    pub fn over(arena: &Arena) -> Result<Box<Self>, String> {
        Ok(Box::new(DlHeap(dlmalloc::Dlmalloc::new_with_allocator(
            ArenaSource {
                base: arena.ptr() as usize,
                len: arena.len(),
                given: core::sync::atomic::AtomicBool::new(false),
            },
        ))))
    }
}

impl BenchHeap for DlHeap {
    #[inline]
    fn alloc(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        // SAFETY: size > 0, align a power of two.
        NonNull::new(unsafe { self.0.malloc(size, align) })
    }
    #[inline]
    unsafe fn free(&mut self, ptr: NonNull<u8>, size: usize, align: usize) {
        // SAFETY: a live block allocated with this layout.
        unsafe { self.0.free(ptr.as_ptr(), size, align) }
    }
    #[inline]
    unsafe fn realloc(
        &mut self,
        ptr: NonNull<u8>,
        size: usize,
        align: usize,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: a live block allocated with this layout; new_size > 0.
        NonNull::new(unsafe { self.0.realloc(ptr.as_ptr(), size, align, new_size) })
    }
}

/// Something that is shown each contender in turn.
pub trait Visit {
    /// One contender: its name, its family, and how to build it over an arena.
    fn visit<H: BenchHeap>(
        &mut self,
        name: &str,
        kind: Kind,
        make: &dyn Fn(&Arena) -> Result<Box<H>, String>,
    );
}

/// Show `v` every contender: ours through `AnyHeap`, ours direct, the peers.
pub fn contenders(v: &mut impl Visit) {
    for &s in Strategy::ALL {
        v.visit(s.name(), Kind::Ours, &move |a| {
            Ours::over(AnyHeap::new(s), a)
        });
    }
    direct_contenders(v);
    v.visit("talc", Kind::Peer, &TalcHeap::over);
    v.visit("rlsf", Kind::Peer, &RlsfHeap::over);
    v.visit("linked_list_allocator", Kind::Peer, &LinkedListHeap::over);
    v.visit("buddy_system_allocator", Kind::Peer, &BuddyHeap::over);
    v.visit("dlmalloc", Kind::Peer, &DlHeap::over);
}

/// The concrete strategy types called without `AnyHeap`'s dispatch, in
/// both profiles (`Checked`, the default and `AnyHeap`'s, and `Trusting`).
fn direct_contenders(v: &mut impl Visit) {
    use stratalloc_core::{FitPolicy, IndexedFit, Tlsf};
    v.visit("tlsf (direct)", Kind::OursDirect, &|a| {
        Ours::over(Tlsf::new(), a)
    });
    v.visit("tlsf (trusting)", Kind::OursDirect, &|a| {
        Ours::over(Tlsf::trusting(), a)
    });
    v.visit("best-fit (direct)", Kind::OursDirect, &|a| {
        Ours::over(IndexedFit::new(FitPolicy::Best), a)
    });
    v.visit("best-fit (trusting)", Kind::OursDirect, &|a| {
        Ours::over(IndexedFit::trusting(FitPolicy::Best), a)
    });
}

/// Every contender's name and family, in order.
pub fn contender_names() -> Vec<(String, Kind)> {
    struct Names(Vec<(String, Kind)>);
    impl Visit for Names {
        fn visit<H: BenchHeap>(
            &mut self,
            name: &str,
            kind: Kind,
            _make: &dyn Fn(&Arena) -> Result<Box<H>, String>,
        ) {
            self.0.push((name.to_string(), kind));
        }
    }
    let mut n = Names(Vec::new());
    contenders(&mut n);
    n.0
}
