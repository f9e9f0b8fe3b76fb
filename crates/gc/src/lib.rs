//! # stratalloc-gc: a mark-and-sweep collector over a region heap
//!
//! Objects live in the blocks of any [`RegionHeap`] — a static array on a
//! board with no OS, or a heap grown from `mmap` — behind a small header.
//! The collector needs no other memory: the mark stack is threaded through
//! the headers and the handle table is itself allocated from the region
//! heap. So the crate is `#![no_std]` and needs no `alloc`; the default
//! `alloc` feature only adds [`Trace`] impls for `Vec`, `Box`, `String`,
//! `VecDeque` and `BTreeMap` (which put their *contents* in the global
//! allocator, outside the collected heap).
//!
//! ```text
//!   GcHeap<H>
//!   ├── H: RegionHeap ........ blocks: [Header | T] [Header | T] ... + slot chunks
//!   ├── all ─────────────────> newest object -> ... -> oldest   (sweep walks this)
//!   └── slots[index] = { obj, serial, roots }  <── Gc<T> = (index, serial)
//!                                                 Root<'h, T> = slot + &T
//! ```
//!
//! ## Glossary
//! - **object**: a value of a type that implements [`Trace`], moved into the
//!   heap by [`GcHeap::alloc`].
//! - **handle** ([`Gc<T>`]): `(slot index, serial)`. Copy, `'static`, does
//!   not keep anything alive. Stored in objects; reported by `Trace`.
//! - **root** ([`Root<'h, T>`]): a guard that keeps its object alive and is
//!   the only way to read it (`Deref`). [`GcHeap::alloc`] returns one;
//!   [`GcHeap::root`] makes one from a handle, or `None` if the object died.
//! - **reachable**: rooted, or pointed at by a handle in a reachable object.
//!   A collection frees exactly the objects that are not reachable.
//!
//! ## Safety without lifetimes on handles
//! A `Gc<T>` can outlive its object: then [`GcHeap::root`] answers `None`
//! (slot serials are never reused). A `Root` borrows the heap and pins its
//! object, so every `&T` you can hold points at a live object. A `Trace`
//! impl that forgets a handle therefore causes a *logic* error (the object
//! dies early and its handles read as dead), never a dangling reference.
//! There is no `unsafe` in the public API except [`GcHeap::add_region`],
//! which inherits [`RegionHeap::add_region`]'s contract.
//!
//! See [`heap`] for the algorithm, its costs and its invariants.
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod handle;
pub mod heap;
mod object;
mod slots;
mod trace;

pub use handle::{Gc, Root};
pub use heap::{CollectStats, GcHeap, GcStats};
pub use object::{Trace, Tracer};
pub use stratalloc_core::RegionHeap;
