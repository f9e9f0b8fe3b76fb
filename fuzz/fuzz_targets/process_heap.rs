//! Every core strategy serving a process (`ProcessHeap`, the backend that
//! `STRATALLOC_STRATEGY=<strategy>` selects): the first input byte picks the
//! strategy, the rest is an operation program (see `fuzzkit::backend_prog`)
//! with `ProcessHeap::check` (the strategy's full `check()` walk, the region
//! accounting and the huge-block set) after each of the first
//! `fuzzkit::backend_prog::CHECK_FIRST` operations of an input, after every
//! [`CHECK_EVERY`]-th one and at the end (every operation under
//! `STRATALLOC_FUZZ_STRICT=1`). The fill bytes of every block are verified
//! on every free, realloc and at the end, as before; a broken heap invariant
//! is caught at most `CHECK_EVERY - 1` operations after the operation that
//! broke it. The trade-off is measured in docs/RELIABILITY.md, section 1.
//!
//! One heap per strategy lives for the whole fuzzing process (a heap never
//! gives its regions back), so an input starts from whatever layout the
//! inputs before it left; each input frees everything it allocated.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use stratalloc::__private::process::ProcessHeap;
use stratalloc_core::Strategy;

/// `ProcessHeap::check` after every this many operations (past the first
/// few): the walk visits every block of a heap that grows to many MiB.
const CHECK_EVERY: u64 = 16;

fn heaps() -> &'static [&'static ProcessHeap] {
    static HEAPS: OnceLock<Vec<&'static ProcessHeap>> = OnceLock::new();
    HEAPS.get_or_init(|| {
        Strategy::ALL
            .iter()
            .map(|&s| &*Box::leak(Box::new(ProcessHeap::new(s))))
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    fuzzkit::start_input("process_heap");
    fuzzkit::set_labels(|| Strategy::ALL.iter().map(|s| s.name()).collect());
    let mut r = fuzzkit::Reader::new(data);
    let pick = r.u8() as usize % Strategy::ALL.len();
    let heap = heaps()[pick];
    let check = || {
        if let Err(e) = heap.check() {
            panic!("{}: {e}", Strategy::ALL[pick].name());
        }
    };
    let ops = fuzzkit::backend_prog::run(heap, &mut r, &check, CHECK_EVERY);
    fuzzkit::count_ops_for(pick, ops);
});
