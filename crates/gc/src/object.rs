//! Objects as they sit in the region heap: a header, then the value.
//!
//! ```text
//!   block from H::allocate (align = max(16, align_of::<T>()))
//!   +-------------------------------------------+---------+-----------+
//!   | Header                                    | padding | T         |
//!   | next | gray | vtable | size | slot | mark |         |           |
//!   +-------------------------------------------+---------+-----------+
//!   ^ header address (what slots point at)      ^ header + vtable.offset
//!   next:   every object, newest first (the sweep walks this list)
//!   gray:   the mark stack, threaded through the objects being scanned
//!   vtable: trace / drop / type id / payload offset for T
//!   size:   the block's usable size, as the region heap reports it
//! ```
//!
//! The mark stack lives in the headers (`gray`), so marking needs no memory
//! beyond what the objects already have, and no recursion: an object is
//! pushed once (when it is marked), so the stack never holds more than the
//! live objects.

use core::any::TypeId;
use core::marker::PhantomData;
use core::ptr;

use crate::handle::Gc;
use crate::slots::Slots;

/// What the collector knows of a type: one per `T`, in static memory.
pub(crate) struct VTable {
    /// Report the value's handles to the tracer.
    pub trace: unsafe fn(*const u8, &mut Tracer<'_>),
    /// Run the value's destructor in place.
    pub drop: unsafe fn(*mut u8),
    /// `TypeId::of::<T>`, for debug checks.
    pub type_id: fn() -> TypeId,
    /// Bytes from the header to the value.
    pub offset: usize,
}

/// Per-type vtable holder.
pub(crate) struct Vt<T>(PhantomData<T>);

impl<T: Trace + 'static> Vt<T> {
    pub(crate) const OFFSET: usize = {
        let a = core::mem::align_of::<T>();
        (core::mem::size_of::<Header>() + a - 1) & !(a - 1)
    };
    pub(crate) const ALIGN: usize = {
        let a = core::mem::align_of::<T>();
        if a > 16 {
            a
        } else {
            16
        }
    };
    pub(crate) const VTABLE: VTable = VTable {
        trace: trace_erased::<T>,
        drop: drop_erased::<T>,
        type_id: TypeId::of::<T>,
        offset: Self::OFFSET,
    };
}

/// # Safety
/// `p` must point at a live, initialised `T`.
unsafe fn trace_erased<T: Trace>(p: *const u8, t: &mut Tracer<'_>) {
    // SAFETY: per the contract.
    unsafe { &*p.cast::<T>() }.trace(t)
}

/// # Safety
/// `p` must point at a live `T` that nobody will use again.
unsafe fn drop_erased<T>(p: *mut u8) {
    // SAFETY: per the contract.
    unsafe { ptr::drop_in_place(p.cast::<T>()) }
}

/// The header in front of every object: 40 bytes on 64-bit targets.
#[repr(C)]
pub(crate) struct Header {
    pub next: *mut Header,
    pub gray: *mut Header,
    pub vtable: &'static VTable,
    pub size: usize,
    pub slot: u32,
    pub marked: bool,
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(core::mem::size_of::<Header>() == 40);

impl Header {
    /// The value after the header.
    ///
    /// # Safety
    /// `h` must be a live object's header.
    #[inline]
    pub(crate) unsafe fn payload(h: *mut Header) -> *mut u8 {
        // SAFETY: per the contract the vtable was written with the object.
        unsafe { h.cast::<u8>().add((*h).vtable.offset) }
    }
}

/// Types the collector can scan for handles.
///
/// `trace` must call [`Tracer::edge`] (directly, or through the `trace` of
/// its fields) for every [`Gc`] the value holds. The trait is safe: a handle
/// it forgets is not kept alive, and reads as dead ([`GcHeap::root`]
/// returns `None`) once its object is swept; nothing dangles.
///
/// `trace` runs during a collection: it must not allocate from or collect
/// the same heap (that panics), and a `RefCell` it borrows must not be
/// mutably borrowed across a call that may collect (that panics too).
///
/// For a struct, [`trace_fields!`](crate::trace_fields) writes the impl;
/// for a type without handles, [`no_trace!`](crate::no_trace).
///
/// [`GcHeap::root`]: crate::GcHeap::root
pub trait Trace {
    /// Report every handle in `self` to `t`.
    fn trace(&self, t: &mut Tracer<'_>);
}

/// Handed to [`Trace::trace`]: marks the objects handles point at.
pub struct Tracer<'a> {
    pub(crate) slots: &'a Slots,
    /// Top of the mark stack (threaded through `Header::gray`).
    pub(crate) gray: *mut Header,
    /// Objects marked so far.
    pub(crate) marked: usize,
}

impl<'a> Tracer<'a> {
    pub(crate) fn new(slots: &'a Slots) -> Self {
        Tracer {
            slots,
            gray: ptr::null_mut(),
            marked: 0,
        }
    }

    /// `gc` is reachable: mark its object and schedule it for scanning.
    /// A dead handle is ignored.
    #[inline]
    pub fn edge<T: ?Sized>(&mut self, gc: Gc<T>) {
        if let Some((_, h)) = self.slots.lookup(gc.index, gc.serial.get()) {
            // SAFETY: a non-null slot with the handle's serial holds a live
            // object (of some type: marking it is harmless either way).
            unsafe { self.shade(h) };
        }
    }

    /// Mark `h` and push it on the gray stack if it was white.
    ///
    /// # Safety
    /// `h` must be a live object's header.
    #[inline]
    pub(crate) unsafe fn shade(&mut self, h: *mut Header) {
        // SAFETY: per the contract; headers are only touched through raw
        // pointers by the collector.
        unsafe {
            if !(*h).marked {
                (*h).marked = true;
                (*h).gray = self.gray;
                self.gray = h;
                self.marked += 1;
            }
        }
    }

    /// Scan gray objects until none is left.
    pub(crate) fn drain(&mut self) {
        while !self.gray.is_null() {
            let h = self.gray;
            // SAFETY: only live, marked objects are pushed; their vtable
            // and value are intact (sweeping has not started).
            unsafe {
                self.gray = (*h).gray;
                (*h).gray = ptr::null_mut();
                let vt = (*h).vtable;
                (vt.trace)(Header::payload(h), self);
            }
        }
    }
}
