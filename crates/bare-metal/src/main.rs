//! # stratalloc bare-metal demo (TLSF)
//!
//! A program with no libc and no C run-time: its own `_start`, raw `write`
//! and `exit_group` system calls, its own panic handler, and a 10 MiB heap
//! in `.bss` managed by a stratalloc strategy behind `Locked<_>` as the
//! `#[global_allocator]`. See `demo.rs` for the workload and `rt.rs` for the
//! run-time. The same program over the buddy strategy is the second binary,
//! `stratalloc-bare-metal-buddy` (`src/bin/buddy.rs`).
//!
//! ```text
//!   .bss: HEAP_MEM [10 MiB] --heap_init--> Locked<Tlsf> (#[global_allocator])
//!                                             ^ Vec, Box, String, BTreeMap
//! ```
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

mod demo;
mod gc_demo;
mod rt;

use stratalloc_core::strategies::tlsf::Tlsf as Strategy;
use stratalloc_core::Locked;

mod static_heap;

#[global_allocator]
static HEAP: Locked<Strategy> = Locked::new(Strategy::new());

fn entry() -> i32 {
    static_heap::start(&HEAP)
}
