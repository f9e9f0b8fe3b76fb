//! # stratalloc: a thread-caching allocator, and every strategy, for whole programs
//!
//! One line makes the stratalloc engine (a thread-caching size-class
//! allocator in the family of mimalloc) the program's allocator:
//!
//! ```
//! #[global_allocator]
//! static A: stratalloc::StratAlloc = stratalloc::StratAlloc::new();
//!
//! fn main() {
//!     let v: Vec<u32> = (0..1000).collect();
//!     assert_eq!(v.iter().sum::<u32>(), 499_500);
//! }
//! ```
//!
//! ## Options
//!
//! [`StratAlloc`] has a `const` builder; each setting has an environment
//! variable, the same the C library (`libstratalloc.so`) reads, and a
//! variable that is set overrides the builder (so a built program can be
//! re-tuned; [`StratAlloc::ignore_env`] turns that off):
//!
//! | builder | variable | effect |
//! |---|---|---|
//! | [`.strategy(s)`](StratAlloc::strategy) | `STRATALLOC_STRATEGY=tlsf` | a core [`Strategy`] (bump, the four fits, segregated fit, TLSF, buddy, slab) over memory mapped from the OS, instead of the engine |
//! | [`.stats(r)`](StratAlloc::stats) | `STRATALLOC_STATS=1` or a path | count every call; a report at exit ([`Report`]) |
//! | [`.leaks(r)`](StratAlloc::leaks) | `STRATALLOC_LEAKS=1` or a path | list the blocks live at exit by call stack |
//! | [`.check(true)`](StratAlloc::check) | `STRATALLOC_CHECK=1` | canaries, double and invalid frees, writes after free |
//! | [`.trace(path)`](StratAlloc::trace) | `STRATALLOC_TRACE=path` | every event to a trace file for `stratalloc replay` / `viz` |
//!
//! ```
//! use stratalloc::{Report, StratAlloc, Strategy};
//!
//! #[global_allocator]
//! static A: StratAlloc = StratAlloc::new().strategy(Strategy::Tlsf).stats(Report::Quiet);
//!
//! fn main() {
//!     let s = vec![String::from("on TLSF"); 10];
//!     assert_eq!(stratalloc::stats().allocator, "stats(tlsf)");
//!     # drop(s);
//! }
//! ```
//!
//! ## Statistics
//!
//! [`stats()`] returns the figures at any moment: bytes in use and their
//! peak, bytes mapped from the OS and their peak, bytes returned, counts of
//! allocations and frees. [`Stats`] says what each means under the engine
//! and under a strategy.
//!
//! ## As an `Allocator`
//!
//! `StratAlloc` also implements `allocator_api2`'s `Allocator` (usable with
//! `allocator_api2`'s and `hashbrown`'s collections on stable Rust): it
//! returns each block's usable size (the whole size class), and `grow` and
//! `shrink` keep the block in place where the allocator can.
//!
//! ```
//! use allocator_api2::alloc::{Allocator, Layout};
//! use stratalloc::StratAlloc;
//!
//! let a = StratAlloc::new();
//! let layout = Layout::from_size_align(100, 8).unwrap();
//! let block = a.allocate(layout).unwrap();
//! assert!(block.len() >= 100); // the usable size: 112 under the engine
//! let p = block.cast::<u8>();
//! // SAFETY: `p` was allocated above with `layout`.
//! let grown = unsafe { a.grow(p, layout, Layout::from_size_align(block.len(), 8).unwrap()) };
//! let grown = grown.unwrap();
//! assert_eq!(grown.cast::<u8>(), p); // grown within its usable size: in place
//! // SAFETY: the block is live, and its length fits the layout.
//! unsafe { a.deallocate(p, Layout::from_size_align(grown.len(), 8).unwrap()) };
//! ```
//!
//! ## Cargo features
//!
//! - `symbolize` (on by default): the leak report names functions and
//!   `file:line` (with the `backtrace` crate: gimli, addr2line, object).
//!   Without it (`default-features = false`) the crate builds in a fraction
//!   of the time and the leak report prints `object+offset` for each frame.
//!
//! ## The C library and the command
//!
//! The same allocator is a drop-in `malloc` for any program
//! (`LD_PRELOAD=libstratalloc.so`, crate `stratalloc-capi`), and the
//! `stratalloc` command (crate `stratalloc-cli`) runs programs on it,
//! replays their traces and draws heap maps. The region heaps it is built
//! on, which need no OS, are the `stratalloc-core` crate. The repository's
//! `README.md` and `ARCHITECTURE.md` explain the whole.
//!
//! ## Layers
//!
//! Bottom to top (a module imports only from below): `os` (mmap) and
//! `diag` (messages that do not allocate) → the `engine` and the `process`
//! heaps (a core strategy over OS regions) behind the `Backend` contract →
//! the wrappers (stats, leaks, check, trace) → `select` (which allocator
//! serves the process, chosen at the first allocation) → the front ends:
//! [`StratAlloc`] here, the C ABI in `stratalloc-capi`.
//!
//! Those modules are not public API. The workspace's own crates (the C
//! library, the command, the tests and fuzz targets) reach them through
//! `stratalloc::__private`, hidden from the docs and exempt from semver: a
//! module rather than a cargo feature, because a feature is unified across
//! a build graph (one crate enabling it would publish the internals to
//! every other) and would leave the internals unchecked by the lints
//! whenever it is off.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]

mod backend;
mod diag;
mod engine;
mod global;
mod options;
mod os;
mod process;
mod select;
mod stats;
mod sync;
mod trace;
mod tuning;
mod wrappers;

pub use global::{Report, StratAlloc};
pub use stats::{stats, Stats};
pub use stratalloc_core::Strategy;

/// `pub mod m { pub use crate::m::*; }` for each internal module `m`.
macro_rules! reexport {
    ($($m:ident),*) => {
        $(
            #[doc = concat!("See `crate::", stringify!($m), "`.")]
            pub mod $m {
                pub use crate::$m::*;
            }
        )*
    };
}

/// The crate's internals, for the workspace's own crates only (see the
/// crate docs, "Layers"). Not public API: anything here may change in any
/// release.
#[doc(hidden)]
pub mod __private {
    reexport!(backend, diag, engine, options, os, process, select, sync, trace, tuning, wrappers);
    pub use crate::backend::Backend;
    pub use crate::{eprint_noalloc, fatal};
}
