//! The engine (`stratalloc::engine::ENGINE`, the default malloc) through the
//! `Backend` contract: an operation program (see `fuzzkit::backend_prog`)
//! with cross-thread frees, short-lived threads whose blocks outlive them,
//! huge blocks, realloc across size classes, and `engine::check()` (the
//! calling thread's heap and segments) after every operation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stratalloc::engine::{self, ENGINE};

fuzz_target!(|data: &[u8]| {
    fuzzkit::start_input("engine");
    let mut r = fuzzkit::Reader::new(data);
    let check = || {
        if let Err(e) = engine::check() {
            panic!("engine check: {e}");
        }
    };
    let ops = fuzzkit::backend_prog::run(&ENGINE, &mut r, &check);
    fuzzkit::count_ops(ops);
});
