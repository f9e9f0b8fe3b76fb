//! [`GcHeap<H>`]: the collector over one region heap.
//!
//! ## Collecting
//!
//! ```text
//!   mark   for each slot of the handle table: if it has roots, shade its object
//!          shade the value being allocated (when alloc triggered the cycle)
//!          while the gray stack is not empty: pop, call its trace()
//!            trace() -> Tracer::edge(gc) -> shade(target) if white
//!   sweep  1. walk `all`: keep marked objects (clear the bit), unlink the
//!             rest onto a dead list and free their slots, so every handle
//!             to them reads as dead from now on
//!          2. for each dead object: drop the value in place, give the block
//!             back to H
//! ```
//!
//! Cycles need nothing special: an unreachable cycle is never shaded.
//!
//! - **Time**: O(slots) for the root scan (a sequential pass over the
//!   handle table), O(objects) for the sweep, plus O(live
//!   objects + their edges) for the mark. Allocation is `H::allocate` plus
//!   O(1), and a collection whenever more than `threshold` bytes were
//!   allocated since the last one.
//! - **Space**: a 40-byte header per object (48 before a 16-aligned `T`,
//!   more for over-aligned ones) and a 32-byte slot per object in the
//!   handle table. A `Gc<T>` is 16 bytes, and so is `Option<Gc<T>>`.
//!   Marking needs no memory: the gray stack is threaded through the
//!   headers.
//! - **Drawbacks**: stop-the-world, not incremental, not generational: a
//!   collection touches every object. A handle dereference costs a table
//!   lookup and a root-count update. Single-threaded (`!Send`, `!Sync`).
//!
//! ## Re-entrancy
//!
//! `Trace` and `Drop` impls run during a collection. From there, `alloc` and
//! `collect` panic (the heap is mid-cycle); `root` works (a dying object's
//! handles already read as dead). A panic that unwinds out of a collection
//! *poisons* the heap: every later `alloc`/`collect` panics, and dropping
//! the heap leaks its objects rather than run more user code on a heap in an
//! unknown state. Nothing is freed twice or read after free either way.
//!
//! ## Invariants (checked by [`GcHeap::check`])
//! - every object on `all` is a live block of `H` whose usable size is the
//!   header's `size`, and its slot points back at it;
//! - outside a collection, no mark bit is set and no gray link is non-null;
//! - `all` has `stats.live_objects` objects whose sizes sum to
//!   `stats.live_bytes`;
//! - the slot table's invariants (see `src/slots.rs`), and
//!   `free slots + live objects == slots handed out`;
//! - `H::check()` passes.

use core::any::TypeId;
use core::cell::{Cell, UnsafeCell};
use core::marker::PhantomData;
use core::num::NonZeroU64;
use core::ptr::{self, NonNull};

use stratalloc_core::{CheckError, HeapStats, Region, RegionError, RegionHeap};

use crate::handle::{Gc, Root};
use crate::object::{Header, Trace, Tracer, Vt};
use crate::slots::{Slots, FIRST_CHUNK};

/// What one collection did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CollectStats {
    /// Objects swept (their `Drop` ran, their blocks went back to the heap).
    pub freed_objects: usize,
    /// Bytes of the swept blocks (usable sizes, headers included).
    pub freed_bytes: usize,
    /// Objects that survived.
    pub live_objects: usize,
    /// Bytes of the survivors' blocks.
    pub live_bytes: usize,
}

/// Running figures of a [`GcHeap`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Collections run, automatic ones included.
    pub collections: u64,
    /// Collections started by `alloc` (threshold reached or heap full).
    pub automatic_collections: u64,
    /// Objects alive now (allocated, not yet swept).
    pub live_objects: usize,
    /// Bytes of their blocks.
    pub live_bytes: usize,
    /// Highest `live_bytes` seen.
    pub peak_live_bytes: usize,
    /// Objects ever allocated.
    pub allocated_objects: u64,
    /// Bytes ever allocated (block sizes).
    pub allocated_bytes: u64,
    /// Objects ever swept.
    pub freed_objects: u64,
    /// Bytes ever swept.
    pub freed_bytes: u64,
    /// Bytes allocated since the last collection.
    pub bytes_since_collect: usize,
    /// Bytes the handle table takes from the heap.
    pub table_bytes: usize,
    /// What the last collection did.
    pub last: CollectStats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Collecting,
    Poisoned,
}

/// Serials come in blocks of this many.
const SERIAL_BLOCK: u64 = 1 << 32;

/// Reserve a block of serials no other heap in the process will use, so a
/// handle from one heap never names an object of another. Never wraps
/// (2^32 blocks of 2^32 serials, then a panic).
#[cfg(target_has_atomic = "64")]
fn reserve_serials(_block_end: u64) -> u64 {
    use core::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(SERIAL_BLOCK);
    NEXT.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
        n.checked_add(SERIAL_BLOCK)
    })
    .expect("stratalloc-gc: the 64-bit serial space is exhausted")
}

/// Without 64-bit atomics serials are unique per heap only: a handle used
/// with the wrong heap may then name one of its objects of the same type
/// (`root` checks the type, so it is never another type: memory-safe, the
/// answer is just wrong).
#[cfg(not(target_has_atomic = "64"))]
fn reserve_serials(block_end: u64) -> u64 {
    block_end.max(SERIAL_BLOCK)
}

/// A mark-and-sweep collected heap over the region heap `H`.
///
/// ```
/// use core::cell::Cell;
/// use core::mem::MaybeUninit;
/// use stratalloc_core::{Bump, Region, RegionHeap};
/// use stratalloc_gc::{Gc, GcHeap, Root};
///
/// struct Node { next: Cell<Option<Gc<Node>>>, value: u32 }
/// stratalloc_gc::trace_fields!(Node { next });
///
/// let mem = Box::leak(Box::new([MaybeUninit::<u8>::uninit(); 1 << 16]));
/// let mut bump = Bump::new();
/// unsafe { bump.add_region(Region::from_static(mem)) }.unwrap();
/// let heap = GcHeap::new(bump);
///
/// let a = heap.alloc(Node { next: Cell::new(None), value: 1 }).ok().unwrap();
/// let b = heap.alloc(Node { next: Cell::new(None), value: 2 }).ok().unwrap();
/// a.next.set(Some(Root::gc(&b)));
/// b.next.set(Some(Root::gc(&a)));          // a cycle
/// let b_handle = Root::gc(&b);
/// drop(b);                                  // b stays alive: a points at it
/// assert_eq!(heap.collect().freed_objects, 0);
/// assert_eq!(heap.root(b_handle).unwrap().value, 2);
/// drop(a);                                  // nothing roots the cycle now
/// assert_eq!(heap.collect().freed_objects, 2);
/// assert!(heap.root(b_handle).is_none());   // the handle reads as dead
/// assert_eq!(heap.heap_stats().in_use, 0);
/// ```
pub struct GcHeap<H: RegionHeap> {
    heap: UnsafeCell<H>,
    /// `true` while `heap` is borrowed by `with_heap`.
    heap_busy: Cell<bool>,
    slots: Slots,
    /// Every live object, newest first.
    all: Cell<*mut Header>,
    phase: Cell<Phase>,
    threshold: Cell<usize>,
    /// Touched only inside `with_stats`, which runs no user code.
    stats: UnsafeCell<GcStats>,
    next_serial: Cell<u64>,
    serial_end: Cell<u64>,
    /// Not Send (objects may hold `Rc`s), not Sync (Cells).
    _not_send: PhantomData<*mut ()>,
}

/// Sets the phase to `Poisoned` if dropped during an unwind.
struct PoisonOnUnwind<'a>(&'a Cell<Phase>);

impl Drop for PoisonOnUnwind<'_> {
    fn drop(&mut self) {
        self.0.set(Phase::Poisoned);
    }
}

impl<H: RegionHeap> GcHeap<H> {
    /// The default collection threshold: 1 MiB allocated since the last
    /// collection.
    pub const DEFAULT_THRESHOLD: usize = 1 << 20;

    /// A collector over `heap` (which may already hold regions; add more
    /// with [`add_region`](Self::add_region)).
    pub fn new(heap: H) -> Self {
        GcHeap {
            heap: UnsafeCell::new(heap),
            heap_busy: Cell::new(false),
            slots: Slots::new(),
            all: Cell::new(ptr::null_mut()),
            phase: Cell::new(Phase::Idle),
            threshold: Cell::new(Self::DEFAULT_THRESHOLD),
            stats: UnsafeCell::new(GcStats::default()),
            next_serial: Cell::new(0),
            serial_end: Cell::new(0),
            _not_send: PhantomData,
        }
    }

    /// Set the threshold and return the heap (builder style).
    pub fn with_threshold(self, bytes: usize) -> Self {
        self.threshold.set(bytes);
        self
    }

    /// An allocation that finds more than `bytes` allocated since the last
    /// collection collects first. `usize::MAX` turns automatic collection
    /// off (a full heap still collects before failing).
    pub fn set_threshold(&self, bytes: usize) {
        self.threshold.set(bytes);
    }

    /// The collection threshold in bytes.
    pub fn threshold(&self) -> usize {
        self.threshold.get()
    }

    /// Hand the region heap more memory.
    ///
    /// # Safety
    /// As for [`RegionHeap::add_region`].
    pub unsafe fn add_region(&self, region: Region) -> Result<(), RegionError> {
        // SAFETY: forwarded from the caller.
        self.with_heap(|h| unsafe { h.add_region(region) })
    }

    /// Run `f` on the region heap. Never nests (checked), and no code of
    /// ours calls user code inside `f`, so the `&mut H` is unique.
    fn with_heap<R>(&self, f: impl FnOnce(&mut H) -> R) -> R {
        assert!(
            !self.heap_busy.replace(true),
            "stratalloc-gc: the region heap re-entered the collector"
        );
        // SAFETY: `heap_busy` guarantees this is the only live reference to
        // the heap; it ends before we return.
        let r = f(unsafe { &mut *self.heap.get() });
        self.heap_busy.set(false);
        r
    }

    /// Update the figures in place (no 100-byte copy per allocation).
    #[inline]
    fn with_stats<R>(&self, f: impl FnOnce(&mut GcStats) -> R) -> R {
        // SAFETY: no reference to `stats` outlives a `with_stats` call,
        // `f` is always our own code and never calls back into the heap, so
        // this is the only reference.
        f(unsafe { &mut *self.stats.get() })
    }

    fn expect_idle(&self, what: &str) {
        match self.phase.get() {
            Phase::Idle => {}
            Phase::Collecting => panic!(
                "stratalloc-gc: {what} called during a collection (from a Trace or Drop impl)"
            ),
            Phase::Poisoned => {
                panic!("stratalloc-gc: {what} on a heap poisoned by a panic during a collection")
            }
        }
    }

    /// A serial no handle of this heap has had; never zero.
    fn next_serial(&self) -> NonZeroU64 {
        let mut s = self.next_serial.get();
        if s == self.serial_end.get() {
            s = reserve_serials(s);
            let end = s.checked_add(SERIAL_BLOCK);
            self.serial_end
                .set(end.expect("stratalloc-gc: the 64-bit serial space is exhausted"));
        }
        self.next_serial.set(s + 1);
        // Every block starts at SERIAL_BLOCK or above, so `s` is never 0.
        NonZeroU64::new(s).expect("serials start above zero")
    }

    /// Move `value` into the heap and return it rooted.
    ///
    /// May collect first (threshold reached), and collects before giving
    /// up when the region heap is full; handles inside `value` are kept
    /// alive by that collection. `Err(value)` if there is no room even
    /// then.
    ///
    /// # Panics
    /// When called from a `Trace` or `Drop` impl during a collection, or on
    /// a poisoned heap.
    pub fn alloc<T: Trace + 'static>(&self, value: T) -> Result<Root<'_, T>, T> {
        self.expect_idle("alloc");
        let collected = self.with_stats(|s| s.bytes_since_collect) > self.threshold.get();
        if collected {
            self.collect_with(Some(&value), true);
        }
        let Some(size) = Vt::<T>::OFFSET.checked_add(core::mem::size_of::<T>()) else {
            return Err(value);
        };
        let block = match self.try_block(size, Vt::<T>::ALIGN) {
            Some(b) => b,
            // A collection just ran and nothing changed since: no retry.
            None if collected => return Err(value),
            None => {
                self.collect_with(Some(&value), true);
                match self.try_block(size, Vt::<T>::ALIGN) {
                    Some(b) => b,
                    None => return Err(value),
                }
            }
        };
        let (h, usable, index, serial) = block;
        // SAFETY: `h` is a fresh block of at least OFFSET + size_of::<T>()
        // bytes aligned to max(16, align_of::<T>()); the value goes at
        // OFFSET, which is a multiple of align_of::<T>().
        let value_ptr = unsafe {
            h.write(Header {
                next: self.all.get(),
                gray: ptr::null_mut(),
                vtable: &Vt::<T>::VTABLE,
                size: usable,
                slot: index,
                marked: false,
            });
            let v = h.cast::<u8>().add(Vt::<T>::OFFSET).cast::<T>();
            v.write(value);
            NonNull::new_unchecked(v)
        };
        self.all.set(h);
        let table_bytes = self.slots.bytes();
        self.with_stats(|st| {
            st.live_objects += 1;
            st.live_bytes += usable;
            st.peak_live_bytes = st.peak_live_bytes.max(st.live_bytes);
            st.allocated_objects += 1;
            st.allocated_bytes += usable as u64;
            st.bytes_since_collect = st.bytes_since_collect.saturating_add(usable);
            st.table_bytes = table_bytes;
        });
        let slot = self.slots.get(index).expect("slot just taken");
        slot.roots.set(1);
        Ok(Root {
            slot: NonNull::from(slot),
            value: value_ptr,
            gc: Gc::new(index, serial),
            _heap: PhantomData,
        })
    }

    /// A block and a slot for a new object: (header, usable size, slot
    /// index, serial).
    fn try_block(
        &self,
        size: usize,
        align: usize,
    ) -> Option<(*mut Header, usize, u32, NonZeroU64)> {
        let serial = self.next_serial();
        self.with_heap(|heap| {
            let p = heap.allocate(size, align)?;
            let h = p.as_ptr().cast::<Header>();
            match self.slots.take(heap, h, serial.get()) {
                Some(index) => {
                    // SAFETY: `p` is live in `heap`.
                    let usable = unsafe { heap.usable_size(p) }.unwrap_or(size);
                    Some((h, usable, index, serial))
                }
                None => {
                    // SAFETY: `p` was just allocated and is unused.
                    let r = unsafe { heap.deallocate(p) };
                    debug_assert!(r.is_ok());
                    None
                }
            }
        })
    }

    /// A root for `gc`'s object, or `None` if it was collected.
    pub fn root<T: 'static>(&self, gc: Gc<T>) -> Option<Root<'_, T>> {
        let (slot, h) = self.slots.lookup(gc.index, gc.serial.get())?;
        // SAFETY: a live slot holds a live object with an intact vtable.
        if unsafe { ((*h).vtable.type_id)() } != TypeId::of::<T>() {
            // Only possible for a handle from another heap whose serials
            // overlap ours (see `reserve_serials`).
            return None;
        }
        // SAFETY: the slot holds the object the handle was made for (same
        // serial), and it is a `T` (checked above) at the vtable's offset.
        let value = unsafe { NonNull::new_unchecked(Header::payload(h).cast::<T>()) };
        slot.roots.set(slot.roots.get() + 1);
        Some(Root {
            slot: NonNull::from(slot),
            value,
            gc,
            _heap: PhantomData,
        })
    }

    /// `true` if `gc`'s object has not been collected.
    pub fn is_live<T>(&self, gc: Gc<T>) -> bool {
        self.slots.lookup(gc.index, gc.serial.get()).is_some()
    }

    /// How many [`Root`]s `gc`'s object has (0 if it is dead).
    pub fn root_count<T>(&self, gc: Gc<T>) -> usize {
        self.slots
            .lookup(gc.index, gc.serial.get())
            .map_or(0, |(s, _)| s.roots.get())
    }

    /// Collect now: free every object no root reaches, running its `Drop`
    /// exactly once.
    ///
    /// # Panics
    /// When called from a `Trace` or `Drop` impl during a collection, or on
    /// a poisoned heap.
    pub fn collect(&self) -> CollectStats {
        self.expect_idle("collect");
        self.collect_with(None, false)
    }

    fn collect_with(&self, extra: Option<&dyn Trace>, automatic: bool) -> CollectStats {
        self.phase.set(Phase::Collecting);
        let poison = PoisonOnUnwind(&self.phase);

        // Mark.
        // Roots: one sequential pass over the slot table.
        let mut t = Tracer::new(&self.slots);
        self.slots.for_each(|s| {
            let h = s.obj.get();
            if !h.is_null() && s.roots.get() > 0 {
                // SAFETY: a non-null slot holds a live object.
                unsafe { t.shade(h) };
            }
        });
        if let Some(x) = extra {
            x.trace(&mut t);
        }
        t.drain();
        let marked = t.marked;

        // Sweep, step 1: unlink the white objects and kill their handles.
        let mut dead: *mut Header = ptr::null_mut();
        let mut link: *mut *mut Header = self.all.as_ptr();
        // SAFETY: `link` always points at the `all` head or at the `next`
        // field of a live object; objects are only touched by the collector.
        unsafe {
            while !(*link).is_null() {
                let h = *link;
                if (*h).marked {
                    (*h).marked = false;
                    link = ptr::addr_of_mut!((*h).next);
                } else {
                    *link = (*h).next;
                    self.slots.release((*h).slot);
                    (*h).next = dead;
                    dead = h;
                }
            }
        }

        // Step 2: drop and free. User code (Drop) runs here; it can no
        // longer reach any dead object (their handles are dead).
        let mut freed = CollectStats::default();
        while !dead.is_null() {
            let h = dead;
            // SAFETY: `h` is unlinked, unreachable and dropped exactly once
            // here; its block is then returned to the heap that made it.
            unsafe {
                dead = (*h).next;
                let size = (*h).size;
                ((*h).vtable.drop)(Header::payload(h));
                let p = NonNull::new_unchecked(h.cast::<u8>());
                if let Err(e) = self.with_heap(|heap| heap.deallocate(p)) {
                    panic!("stratalloc-gc: sweeping an object: {e}");
                }
                freed.freed_objects += 1;
                freed.freed_bytes += size;
            }
        }

        let mut st = self.stats();
        st.live_objects -= freed.freed_objects;
        st.live_bytes -= freed.freed_bytes;
        debug_assert_eq!(st.live_objects, marked, "survivors != marked objects");
        if st.live_objects == 0 {
            self.with_heap(|heap| self.slots.clear(heap));
        }
        freed.live_objects = st.live_objects;
        freed.live_bytes = st.live_bytes;
        st.collections += 1;
        st.automatic_collections += automatic as u64;
        st.freed_objects += freed.freed_objects as u64;
        st.freed_bytes += freed.freed_bytes as u64;
        st.bytes_since_collect = 0;
        st.table_bytes = self.slots.bytes();
        st.last = freed;
        self.with_stats(|s| *s = st);

        core::mem::forget(poison);
        self.phase.set(Phase::Idle);
        freed
    }

    /// The collector's figures.
    pub fn stats(&self) -> GcStats {
        self.with_stats(|s| *s)
    }

    /// The region heap's figures (headers and the handle table included).
    pub fn heap_stats(&self) -> HeapStats {
        self.with_heap(|h| h.stats())
    }

    /// Call `f` for every span of the region heap (see [`RegionHeap::walk`]).
    /// `f` must not use this `GcHeap` (that panics).
    pub fn walk(&self, f: &mut dyn FnMut(stratalloc_core::BlockInfo)) {
        self.with_heap(|h| h.walk(f))
    }

    /// Verify the collector's invariants (module docs) and the region
    /// heap's; name the first broken one.
    pub fn check(&self) -> Result<(), CheckError> {
        if self.phase.get() != Phase::Idle {
            return Err(CheckError::new(0, "heap is mid-collection or poisoned"));
        }
        self.with_heap(|heap| heap.check())?;
        let st = self.stats();
        let (mut n, mut bytes) = (0usize, 0usize);
        let mut h = self.all.get();
        while !h.is_null() {
            let addr = h as usize;
            n += 1;
            if n > st.live_objects {
                return Err(CheckError::new(
                    addr,
                    "object list longer than live_objects",
                ));
            }
            // SAFETY: `all` links live objects (the invariant under test;
            // each header is validated before its links are followed).
            let (slot, marked, gray, size, offset, next) = unsafe {
                (
                    (*h).slot,
                    (*h).marked,
                    (*h).gray,
                    (*h).size,
                    (*h).vtable.offset,
                    (*h).next,
                )
            };
            match self.slots.get(slot) {
                Some(s) if s.obj.get() == h => {}
                _ => {
                    return Err(CheckError::new(
                        addr,
                        "object's slot does not point back at it",
                    ))
                }
            }
            if marked || !gray.is_null() {
                return Err(CheckError::new(
                    addr,
                    "mark state left over outside a collection",
                ));
            }
            let p = NonNull::new(h.cast::<u8>()).expect("non-null");
            // SAFETY: `p` lies in the heap's regions (it is one of its blocks).
            match self.with_heap(|heap| unsafe { heap.usable_size(p) }) {
                Ok(u) if u == size => {}
                Ok(_) => return Err(CheckError::new(addr, "header size != block's usable size")),
                Err(_) => {
                    return Err(CheckError::new(
                        addr,
                        "object is not a live block of the heap",
                    ))
                }
            }
            if offset < core::mem::size_of::<Header>() || offset > size {
                return Err(CheckError::new(addr, "value offset outside the block"));
            }
            bytes += size;
            h = next;
        }
        if n != st.live_objects {
            return Err(CheckError::new(0, "object list shorter than live_objects"));
        }
        if bytes != st.live_bytes {
            return Err(CheckError::new(0, "sum of object sizes != live_bytes"));
        }
        let free = self
            .slots
            .free_len()
            .map_err(|(i, what)| CheckError::new(i as usize, what))?;
        if free as usize + n != self.slots.len() as usize {
            return Err(CheckError::new(
                0,
                "free slots + live objects != slots handed out",
            ));
        }
        for (k, c) in self.slots.chunk_ptrs() {
            let need = (FIRST_CHUNK << k) * core::mem::size_of::<crate::slots::Slot>();
            let p = NonNull::new(c.cast::<u8>()).expect("non-null");
            // SAFETY: as above.
            match self.with_heap(|heap| unsafe { heap.usable_size(p) }) {
                Ok(u) if u >= need => {}
                _ => {
                    return Err(CheckError::new(
                        c as usize,
                        "slot chunk is not a live block large enough",
                    ))
                }
            }
        }
        Ok(())
    }

    /// Drop every object (running each `Drop` once) and give all memory
    /// back to the region heap.
    fn free_all(&self) {
        let mut h = self.all.replace(ptr::null_mut());
        self.phase.set(Phase::Collecting);
        let poison = PoisonOnUnwind(&self.phase);
        let mut st = self.stats();
        while !h.is_null() {
            // SAFETY: as in the sweep: each object is unlinked, dropped
            // once, then freed. No Root exists (they borrow `self`).
            unsafe {
                let next = (*h).next;
                self.slots.release((*h).slot);
                let size = (*h).size;
                ((*h).vtable.drop)(Header::payload(h));
                let p = NonNull::new_unchecked(h.cast::<u8>());
                let r = self.with_heap(|heap| heap.deallocate(p));
                debug_assert!(r.is_ok(), "freeing an object at teardown failed");
                st.live_objects -= 1;
                st.live_bytes -= size;
                st.freed_objects += 1;
                st.freed_bytes += size as u64;
                h = next;
            }
        }
        self.with_heap(|heap| self.slots.clear(heap));
        st.table_bytes = 0;
        self.with_stats(|s| *s = st);
        core::mem::forget(poison);
        self.phase.set(Phase::Idle);
    }

    /// Drop every object and return the region heap.
    pub fn into_inner(self) -> H {
        self.free_all();
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again; the other fields
        // own nothing (raw pointers and Cells of plain data).
        unsafe { ptr::read(this.heap.get()) }
    }
}

impl<H: RegionHeap> Drop for GcHeap<H> {
    fn drop(&mut self) {
        if self.phase.get() == Phase::Idle {
            self.free_all();
        }
        // Poisoned: leak the objects; see the module docs.
    }
}
