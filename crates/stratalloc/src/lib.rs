//! # stratalloc: allocators for whole processes
//!
//! Layers, bottom to top (a module imports only from below):
//!
//! ```text
//!   front ends   global (GlobalAlloc)            — and the C ABI in stratalloc-capi
//!   wrappers     (stats, check, leaks, trace)    — Backend over Backend
//!   allocators   engine (thread-caching)  ·  process (any core strategy over OS regions)
//!   contract     backend::Backend
//!   memory       os (mmap, munmap, madvise, mremap)
//!   support      diag (messages and aborts with no allocation)
//! ```
#![deny(unsafe_op_in_unsafe_fn)]

pub mod backend;
pub mod diag;
pub mod engine;
pub mod global;
pub mod options;
pub mod os;
pub mod process;
pub mod select;
pub mod sync;
pub mod trace;
pub mod wrappers;

pub use backend::Backend;
