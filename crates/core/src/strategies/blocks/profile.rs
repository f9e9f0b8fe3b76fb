//! Two profiles of every boundary-tag heap: [`Checked`] (the default)
//! and [`Trusting`].
//!
//! A profile is a type parameter of [`BoundaryHeap`](super::BoundaryHeap)
//! (`Tlsf<Trusting>`, `IndexedFit<Trusting>`, …), not a cargo feature:
//! both can live in one binary, be benchmarked side by side and be run by
//! the same generic test suites, and one crate choosing the trusting heap
//! does not turn the checks off for every other crate of the build (cargo
//! features unify across a build graph). The block layer reads
//! [`Profile::CHECKED`] as a constant, so the trusting heap's code has no
//! trace of the checks. TLSF's index takes the profile as a type parameter
//! too (`TlsfIndex<FL, SL, P>`), so its list-link checks compile out as
//! well; the other indexes (free list, segregated fit, the trees) read the
//! same answer from [`Env`](super::Env): one predictable branch per link
//! followed, which keeps their code free of a second type parameter.
//!
//! | | [`Checked`] | [`Trusting`] |
//! |---|---|---|
//! | pointer handed to free, realloc, `usable_size` | validated exactly (live map, header, next header, previous footer); a bad one is a [`HeapError`](crate::HeapError) | trusted: its header is read and followed |
//! | the caller's size (`deallocate_sized`, `GlobalAlloc::dealloc`, …) | compared with the header; a wrong one goes to [`corruption::report`](crate::corruption::report) naming the pointer | ignored (checked by `debug_assert!` only) |
//! | live map (one bit per 16 bytes) | kept | not kept (its bytes stay reserved) |
//! | free-list and tree links, neighbours' boundary tags | checked before they are followed | followed |
//! | `check()` | every invariant | every invariant but the live map's |
//!
//! The trusting profile is for Rust and C programs that embed a heap and
//! have been tested (a kernel, firmware): a double free, a wild pointer,
//! a wrong size, an overflow into the next header or a write after free is
//! undefined behaviour there, as it is with talc or rlsf. The run-time
//! strategies (`STRATALLOC_STRATEGY=tlsf`, [`AnyHeap`](crate::AnyHeap))
//! are always [`Checked`].

/// Which checks a boundary-tag heap makes (see the module docs).
pub trait Profile: sealed::Sealed {
    /// `true`: validate pointers, sizes, links and tags before trusting
    /// them; `false`: trust them.
    const CHECKED: bool;
    /// The profile's name, for benchmark rows and messages.
    const NAME: &'static str;
}

/// Every pointer, size, link and boundary tag is checked before it is
/// trusted; damage is reported, never followed. The default.
#[derive(Debug, Clone, Copy, Default)]
pub struct Checked;

/// Nothing is checked: the fastest heap, for tested code that never frees
/// a bad pointer (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct Trusting;

impl Profile for Checked {
    const CHECKED: bool = true;
    const NAME: &'static str = "checked";
}

impl Profile for Trusting {
    const CHECKED: bool = false;
    const NAME: &'static str = "trusting";
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Checked {}
    impl Sealed for super::Trusting {}
}
