//! [`stats()`]: the allocator's figures at any moment.

use crate::options::Choice;
use crate::select;
use crate::wrappers;

/// The figures of the process allocator at one moment (see [`stats()`]).
///
/// What each field means depends on what serves the process:
///
/// | field | statistics on ([`Report`](crate::Report) other than `Off`, or `STRATALLOC_STATS`) | a core strategy, statistics off | the engine, statistics off |
/// |---|---|---|---|
/// | `in_use` | bytes in live blocks (usable sizes), counted per call | bytes in live blocks (usable sizes), the heap's own count | 0: not counted |
/// | `peak_in_use` | highest `in_use` | highest `in_use` | 0 |
/// | `allocs`, `frees` | successful allocations (a moving `realloc` is not one) and frees | the heap's own counts | 0 |
/// | `mapped`, `peak_mapped` | the allocator below's | bytes of the regions and huge blocks mapped now, and their peak | bytes of segments, huge blocks and heap metadata mapped now, and their peak |
/// | `returned` | the allocator below's | bytes given back to the OS, in total | bytes given back to the OS (`munmap`, `madvise`), in total |
///
/// `counted` says which of the first three columns applies: `false` means
/// `in_use`, `peak_in_use`, `allocs` and `frees` are not kept and read 0.
/// The engine keeps no per-call counters on its fast path; turn statistics
/// on (for instance `StratAlloc::new().stats(Report::Quiet)`, which counts
/// without printing a report) to get them.
///
/// With statistics on, other threads may each hold up to 63 calls not yet
/// added to the process-wide figures (the calling thread's are included);
/// with more than one thread allocating, `peak_in_use` is an approximation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// What serves the process, wrappers included: `"engine"`, `"tlsf"`,
    /// `"stats(engine)"`, `"stats(leaks(buddy))"`. Empty before the first
    /// allocation.
    pub allocator: &'static str,
    /// Whether `in_use`, `peak_in_use`, `allocs` and `frees` are kept.
    pub counted: bool,
    /// Bytes in live blocks (usable sizes).
    pub in_use: usize,
    /// Highest `in_use` seen.
    pub peak_in_use: usize,
    /// Bytes mapped from the OS now.
    pub mapped: usize,
    /// Highest `mapped` seen.
    pub peak_mapped: usize,
    /// Bytes given back to the OS, in total.
    pub returned: u64,
    /// Successful allocations.
    pub allocs: u64,
    /// Frees.
    pub frees: u64,
}

/// The figures of the process allocator now. Does not allocate, and does
/// not start the allocator (before the first allocation every figure is 0).
///
/// ```
/// #[global_allocator]
/// static A: stratalloc::StratAlloc =
///     stratalloc::StratAlloc::new().stats(stratalloc::Report::Quiet);
///
/// fn main() {
///     let before = stratalloc::stats();
///     let v = vec![1u8; 100_000];
///     let after = stratalloc::stats();
///     assert!(after.counted);
///     assert!(after.in_use >= before.in_use + v.len());
///     assert!(after.allocs > before.allocs);
///     assert!(after.mapped >= after.in_use);
/// }
/// ```
pub fn stats() -> Stats {
    let Some(top) = select::ready() else {
        return Stats {
            allocator: "",
            counted: false,
            in_use: 0,
            peak_in_use: 0,
            mapped: 0,
            peak_mapped: 0,
            returned: 0,
            allocs: 0,
            frees: 0,
        };
    };
    let b = top.stats();
    let mut s = Stats {
        allocator: top.name(),
        counted: matches!(select::options().choice, Choice::Strategy(_)),
        in_use: b.in_use,
        peak_in_use: b.peak_in_use,
        mapped: b.mapped,
        peak_mapped: b.peak_mapped,
        returned: b.returned,
        allocs: b.allocs,
        frees: b.frees,
    };
    if let Some(w) = wrappers::stats_snapshot() {
        s.counted = true;
        s.in_use = w.in_use;
        s.peak_in_use = w.peak;
        s.allocs = w.allocs;
        s.frees = w.frees;
    }
    s
}
