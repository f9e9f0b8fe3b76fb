//! # stratalloc-bench: measured, never asserted
//!
//! Two suites, each a binary that prints Markdown tables and writes CSV and
//! JSON files (default directory `target/bench/`):
//!
//! - `region-bench` ([`region`]): every region-heap strategy against talc,
//!   rlsf, linked_list_allocator, buddy_system_allocator and dlmalloc on one 32 MiB
//!   region — random-actions throughput, heap efficiency, and per-operation
//!   tail latency.
//! - `engine-bench` ([`engine`]): process-level workloads (the
//!   `engine-workload` binary, which calls the C library's `malloc` family)
//!   run under `LD_PRELOAD` of glibc (none), mimalloc, jemalloc and
//!   `libstratalloc.so`, with time and peak RSS as ratios against mimalloc.
//!
//! `scripts/bench.sh` builds both in release, runs them and splices the
//! tables into `docs/BENCHMARKS.md`. Both binaries take `--smoke` (tiny
//! parameters; the crate's tests run it) and `--quick`.
//!
//! Timing on a shared machine is noisy: every figure is a median of
//! repetitions, and comparisons are ratios measured in the same run.

pub mod engine;
pub mod out;
pub mod proc;
pub mod region;
pub mod rng;
pub mod stats;

/// The output directory: `--out DIR` if given, else `target/bench`.
pub fn default_out_dir() -> std::path::PathBuf {
    std::path::PathBuf::from("target").join("bench")
}

/// Which preset the command line asks for: `--smoke` wins over `--quick`,
/// and neither means the full run.
pub fn preset<T>(args: &[String], full: fn() -> T, quick: fn() -> T, smoke: fn() -> T) -> T {
    if args.iter().any(|a| a == "--smoke") {
        smoke()
    } else if args.iter().any(|a| a == "--quick") {
        quick()
    } else {
        full()
    }
}
