//! # stratalloc bare-metal demo (buddy)
//!
//! The same program as `stratalloc-bare-metal` (see `src/main.rs`), over the
//! binary buddy strategy instead of TLSF.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

#[path = "../demo.rs"]
mod demo;
#[path = "../gc_demo.rs"]
mod gc_demo;
#[path = "../rt/mod.rs"]
mod rt;
#[path = "../static_heap.rs"]
mod static_heap;

use stratalloc_core::strategies::buddy::Buddy as Strategy;
use stratalloc_core::Locked;

#[global_allocator]
static HEAP: Locked<Strategy> = Locked::new(Strategy::new());

fn entry() -> i32 {
    static_heap::start(&HEAP)
}
