//! The engine (`stratalloc::__private::engine::ENGINE`, the default malloc) through the
//! `Backend` contract: an operation program (see `fuzzkit::backend_prog`)
//! with cross-thread frees, short-lived threads whose blocks outlive them,
//! huge blocks, realloc across size classes, and `engine::check()` (the
//! calling thread's heap and segments) after each of the first
//! `fuzzkit::backend_prog::CHECK_FIRST` operations of an input, after every
//! [`CHECK_EVERY`]-th one and at the end (every operation under
//! `STRATALLOC_FUZZ_STRICT=1`). The fill bytes of every block are verified
//! on every free, realloc and at the end, as before; a broken heap invariant
//! is caught at most `CHECK_EVERY - 1` operations after the operation that
//! broke it. The trade-off is measured in docs/RELIABILITY.md, section 1.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stratalloc::__private::engine::{self, ENGINE};

/// `engine::check()` after every this many operations (past the first few).
const CHECK_EVERY: u64 = 16;

fuzz_target!(|data: &[u8]| {
    fuzzkit::start_input("engine");
    let mut r = fuzzkit::Reader::new(data);
    let check = || {
        if let Err(e) = engine::check() {
            panic!("engine check: {e}");
        }
    };
    let ops = fuzzkit::backend_prog::run(&ENGINE, &mut r, &check, CHECK_EVERY);
    fuzzkit::count_ops(ops);
});
