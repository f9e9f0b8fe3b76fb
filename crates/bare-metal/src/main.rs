//! # stratalloc bare-metal demo (TLSF)
//!
//! A program with no OS library under it (x86_64 Linux without libc, a
//! Cortex-M3 or a RISC-V board under QEMU): its own entry point, output and
//! exit, its own panic handler, and a heap in `.bss` (10 MiB on Linux, 2 MiB
//! on the boards) managed by a stratalloc strategy behind `Locked<_>` as the
//! `#[global_allocator]`. See `demo.rs` for the workload and `rt/` for the
//! run-time of each platform. The same program over the buddy strategy is the second binary,
//! `stratalloc-bare-metal-buddy` (`src/bin/buddy.rs`).
//!
//! ```text
//!   .bss: HEAP_MEM [HEAP_SIZE] --heap_init--> Locked<Tlsf> (#[global_allocator])
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
