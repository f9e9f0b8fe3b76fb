//! # stratalloc-core: region heaps with no OS
//!
//! A family of allocators that manage memory they were *handed* — a static
//! array, a board's RAM, a guest's physical memory — with no operating system,
//! no `alloc` crate and no libc. Every strategy answers one contract,
//! [`RegionHeap`], so they can be swapped, compared, wrapped (statistics,
//! tracing, checking) and driven by the same tests.
//!
//! ```text
//!   front ends      Locked<H>: GlobalAlloc + allocator_api2::Allocator
//!                   (hands the layout's size to the heap)
//!                   ------------------------------------------------------
//!   strategies      Bump · IndexedFit{first,next,best,worst} (O(log n)) ·
//!                   FreeList{…} (the same fits as list scans) · Segregated ·
//!                   Tlsf · Buddy · Pool · Slab<B> · AnyHeap (run-time choice);
//!                   the boundary-tag ones in profile Checked or Trusting
//!                   ------------------------------------------------------
//!   memory          Region (a span of bytes you own)  ·  RegionList
//! ```
//!
//! ## Glossary
//!
//! - **region**: a contiguous span of bytes handed to a heap with
//!   [`RegionHeap::add_region`]. A heap may hold many; it never gives one back.
//! - **block**: a span inside a region that the heap tracks as a unit. It is
//!   *used* (handed out) or *free*. Its **payload** is the part the caller may
//!   touch; the rest (headers, footers, alignment padding) is **overhead**.
//! - **usable size**: the payload length of a used block; at least what was
//!   asked for ([`RegionHeap::usable_size`]).
//! - **in use / free / overhead bytes**: for every heap,
//!   `region_bytes == in_use + free + overhead` where `in_use` is the sum of the
//!   usable sizes of used blocks and `free` the sum of the payload capacity of
//!   free blocks (see [`HeapStats`]).
//!
//! ## The contract in one paragraph
//!
//! Sizes and alignments come as plain `usize`s (the C API needs to hand them
//! through unchecked): an alignment that is not a power of two, or a size whose
//! rounding would overflow, gets `None`, never wrapped arithmetic. Size zero is
//! served as the smallest block the heap has, so every successful `allocate`
//! returns a unique pointer. Every pointer is aligned to at least
//! [`MIN_ALIGN`]. `deallocate` is told only the pointer (C's `free` is not told
//! the size) and reports a pointer it did not hand out, or one freed twice,
//! with a [`HeapError`] instead of corrupting itself, wherever its metadata can
//! tell. A caller that knows the size (`GlobalAlloc`, `Allocator`, C23's
//! `free_sized`) hands it to [`RegionHeap::deallocate_sized`] /
//! [`RegionHeap::reallocate_sized`], and a size the block cannot have is
//! reported, naming the pointer. `check` walks every structure and names the
//! first broken invariant.
//!
//! ## Two profiles of the boundary-tag heaps
//!
//! [`Tlsf`], [`IndexedFit`], [`FreeList`] and [`Segregated`] come in two
//! [`Profile`]s, chosen by a type parameter: [`Checked`] (the default, and
//! every run-time strategy) validates every pointer, size, link and boundary
//! tag before trusting it; [`Trusting`] (`Tlsf<Trusting>`, built by
//! `Tlsf::trusting()`) checks nothing, for a kernel or firmware that has
//! been tested and wants the fastest heap. Both can live in one program.
//!
//! ```
//! use stratalloc_core::{Locked, Tlsf, Trusting};
//! static FAST: Locked<Tlsf<Trusting>> = Locked::new(Tlsf::trusting());
//! static SAFE: Locked<Tlsf> = Locked::new(Tlsf::new());
//! ```
//!
//! ## Writing to us
//!
//! Everything in this crate that touches raw memory is `unsafe` behind a safe
//! or documented-unsafe API; `unsafe_op_in_unsafe_fn` is denied and every
//! `unsafe` block carries a `// SAFETY:` comment naming what it relies on.
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod any;
pub mod corruption;
pub mod heap;
pub mod locked;
pub mod region;
pub mod stats;
pub mod strategies;
pub mod util;

pub use any::{AnyHeap, Strategy, UnknownStrategy};
pub use heap::{BlockInfo, BlockState, CheckError, HeapError, HeapErrorKind, RegionHeap};
pub use locked::Locked;
pub use region::{Region, RegionError, RegionList};
pub use stats::{Counters, HeapStats};
pub use strategies::blocks::{BoundaryHeap, Checked, Profile, Trusting};
pub use strategies::buddy::Buddy;
pub use strategies::bump::Bump;
pub use strategies::fit_tree::IndexedFit;
pub use strategies::free_list::{FitPolicy, FreeList};
pub use strategies::pool::Pool;
pub use strategies::segregated::Segregated;
pub use strategies::slab::Slab;
pub use strategies::tlsf::{Tlsf, TlsfHeap};

/// Every pointer any strategy hands out is aligned to at least this many
/// bytes, whatever alignment was asked for (C's `malloc` promises 16 on
/// 64-bit targets).
pub const MIN_ALIGN: usize = 16;

/// The largest alignment every strategy must honour (larger ones may work).
pub const MAX_GUARANTEED_ALIGN: usize = 64 * 1024;
