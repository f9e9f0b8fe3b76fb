//! Handles: [`Gc<T>`] (a plain, copyable name of an object) and
//! [`Root<'h, T>`] (a guard that keeps an object alive and lets you read it).
//!
//! ```text
//!   Gc<T>   = (index, serial)    Copy, 'static, no lifetime; store it in
//!                                objects. Says nothing about liveness.
//!   Root<T> = slot + &T          borrows the GcHeap; while it lives the
//!                                object is a root: never collected.
//!   heap.root(gc) -> Option<Root>   None once the object was collected.
//! ```
//!
//! Why this is safe: the only way to reach a value is a `Root`, and a rooted
//! object is never swept; a `Gc` is checked against its slot (index *and*
//! serial) every time it is turned into a `Root`, and serials are never
//! reused, so a handle to a collected object reads as dead rather than
//! aliasing whatever took its memory.

use core::fmt;
use core::hash::{Hash, Hasher};
use core::marker::PhantomData;
use core::num::NonZeroU64;
use core::ops::Deref;
use core::ptr::NonNull;

use crate::object::{Trace, Tracer};
use crate::slots::Slot;

/// The name of a collected object of type `T`.
///
/// Copyable and `'static`: put it in other objects (and report it from
/// their [`Trace`]). Read it through [`GcHeap::root`](crate::GcHeap::root).
pub struct Gc<T: ?Sized> {
    /// Never zero, so `Option<Gc<T>>` is as small as `Gc<T>` (16 bytes).
    pub(crate) serial: NonZeroU64,
    pub(crate) index: u32,
    _t: PhantomData<fn() -> T>,
}

impl<T: ?Sized> Gc<T> {
    pub(crate) fn new(index: u32, serial: NonZeroU64) -> Self {
        Gc {
            serial,
            index,
            _t: PhantomData,
        }
    }
}

const _: () = assert!(
    core::mem::size_of::<Option<Gc<u8>>>() == core::mem::size_of::<Gc<u8>>(),
    "the NonZero serial gives Option<Gc> a niche"
);

impl<T: ?Sized> Clone for Gc<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: ?Sized> Copy for Gc<T> {}
impl<T: ?Sized> PartialEq for Gc<T> {
    fn eq(&self, o: &Self) -> bool {
        self.serial == o.serial && self.index == o.index
    }
}
impl<T: ?Sized> Eq for Gc<T> {}
impl<T: ?Sized> Hash for Gc<T> {
    fn hash<S: Hasher>(&self, s: &mut S) {
        self.serial.hash(s);
        self.index.hash(s);
    }
}
impl<T: ?Sized> fmt::Debug for Gc<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gc(#{}@{})", self.serial, self.index)
    }
}

impl<T: ?Sized> Trace for Gc<T> {
    fn trace(&self, t: &mut Tracer<'_>) {
        t.edge(*self)
    }
}

/// A rooted object: alive for as long as this guard is, readable through
/// `Deref`. Borrows the heap, so the heap outlives it.
///
/// Mutation goes through interior mutability (`Cell`, `RefCell`) in `T`, as
/// with `Rc`.
pub struct Root<'h, T: ?Sized> {
    pub(crate) slot: NonNull<Slot>,
    pub(crate) value: NonNull<T>,
    pub(crate) gc: Gc<T>,
    pub(crate) _heap: PhantomData<&'h ()>,
}

impl<T: ?Sized> Root<'_, T> {
    /// The object's handle, to store in other objects.
    pub fn gc(this: &Self) -> Gc<T> {
        this.gc
    }

    /// `true` if both guards root the same object.
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        a.gc == b.gc
    }
}

impl<T: ?Sized> Deref for Root<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the object is rooted while `self` lives (its slot's root
        // count includes us), so it is not swept; the heap cannot be dropped
        // while we borrow it. Only shared references to values are made
        // outside the sweep, which drops unrooted objects only.
        unsafe { self.value.as_ref() }
    }
}

impl<T: ?Sized> Clone for Root<'_, T> {
    fn clone(&self) -> Self {
        // SAFETY: the slot outlives every root of its object (chunks are
        // freed only when no object is live).
        let slot = unsafe { self.slot.as_ref() };
        slot.roots.set(slot.roots.get() + 1);
        Root {
            slot: self.slot,
            value: self.value,
            gc: self.gc,
            _heap: PhantomData,
        }
    }
}

impl<T: ?Sized> Drop for Root<'_, T> {
    fn drop(&mut self) {
        // SAFETY: as in `clone`.
        let slot = unsafe { self.slot.as_ref() };
        debug_assert!(slot.roots.get() > 0, "root count underflow");
        slot.roots.set(slot.roots.get() - 1);
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Root<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
