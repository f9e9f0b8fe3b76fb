//! Wrappers: allocators over allocators, stacked at start-up over whichever
//! backend the options chose. Each sees only the [`Backend`] below it, so
//! they compose with the engine and with every core strategy alike.
//!
//! ```text
//!   front end (C ABI / GlobalAlloc)
//!      │
//!   trace   every event to a file           STRATALLOC_TRACE=path
//!   stats   counters, histogram, classes    STRATALLOC_STATS=1|path
//!   leaks   live blocks + call stacks       STRATALLOC_LEAKS=1|path
//!   check   guards, quarantine, bad frees   STRATALLOC_CHECK=1
//!      │
//!   base    engine or strategy
//! ```
//!
//! The order is chosen so that every layer above `check` sees the user's
//! pointers and sizes (the guard bytes are invisible to them), and `trace`
//! records exactly what the program asked for.
//!
//! With no wrapper asked for, [`wrap`] returns the base itself: the wrappers
//! cost nothing when off. Each wrapper lives in a `static` slot (no heap),
//! takes memory for its tables from `mmap`, and writes with `write(2)`.
//! Reports are written by [`finish`], which runs from a `.fini_array`
//! destructor (late: after the program's own `atexit` handlers and the
//! destructors of libraries loaded after this one) or when the front end
//! calls it; it runs once.

pub mod check;
pub mod leaks;
pub mod stats;
pub mod sys;
pub mod table;
pub mod trace;

#[cfg(test)]
pub mod testing;

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::backend::Backend;
use crate::diag::StackBuf;
use crate::options::{Options, Output};
use sys::{FdWriter, ReportFd, Slot};

static CHECK: Slot<check::Check> = Slot::new();
static LEAKS: Slot<leaks::Leaks> = Slot::new();
static STATS: Slot<stats::Stats> = Slot::new();
static STATS_OUT: Slot<Output> = Slot::new();
static TRACE: Slot<trace::Trace> = Slot::new();
static NAMES: [Slot<StackBuf<128>>; 4] = [const { Slot::new() }; 4];
static FINISHED: AtomicBool = AtomicBool::new(false);

/// A wrapper's [`Backend::fork_prepare`]: its own `n` lock sets in order
/// (`take(i)` takes set `i`, `give(i)` releases it), then the backend's
/// below it. If one gives up (another fork is being prepared: see `sync`),
/// what was taken is given back and the result is `false`.
fn prepare_over(
    inner: &dyn Backend,
    n: usize,
    take: impl Fn(usize) -> bool,
    give: impl Fn(usize),
) -> bool {
    crate::sync::take_all(
        n + 1,
        |i| if i < n { take(i) } else { inner.fork_prepare() },
        give,
    )
}

/// `"what(below)"` in a static buffer.
fn layer_name(i: usize, what: &'static str, below: &dyn Backend) -> &'static str {
    let mut b = StackBuf::<128>::new();
    let _ = write!(b, "{}({})", what, below.name());
    let b = NAMES[i].init(b);
    core::str::from_utf8(b.as_bytes()).unwrap_or(what)
}

/// Stack the wrappers `opts` asks for over `base` and return the top of the
/// stack. Called once at start-up; does not allocate from the Rust heap. A
/// second call returns the wrappers built by the first.
pub fn wrap(base: &'static dyn Backend, opts: &Options) -> &'static dyn Backend {
    if !opts.any_wrapper() {
        return base;
    }
    let mut top = base;
    if opts.check {
        let name = layer_name(0, "check", top);
        top = CHECK.init(check::Check::new(top, name));
    }
    if opts.leaks != Output::Off {
        let name = layer_name(1, "leaks", top);
        top = LEAKS.init(leaks::Leaks::new(top, name, opts.leaks));
    }
    if opts.stats != Output::Off {
        let name = layer_name(2, "stats", top);
        STATS_OUT.init(opts.stats);
        // SAFETY: the value lives in a static slot for the rest of the process.
        top = STATS.init(unsafe { stats::Stats::new(top, name) });
    }
    if let Some(path) = &opts.trace {
        let fd = sys::open_path(path, libc::O_APPEND);
        if fd < 0 {
            crate::eprint_noalloc!(
                "stratalloc: cannot open trace file {:?}; not tracing\n",
                path
            );
        } else {
            let name = layer_name(3, "trace", top);
            top = TRACE.init(trace::Trace::new(top, name, fd));
        }
    }
    top
}

/// The statistics now, if the stats wrapper is on.
pub fn stats_snapshot() -> Option<stats::Snapshot> {
    STATS.get().map(|s| s.snapshot())
}

/// What `malloc_stats()` prints: the full statistics report if the stats
/// wrapper is on, otherwise the figures `top` (the backend in use) keeps.
/// Writes to `fd` (glibc prints to standard error). Does not allocate.
pub fn malloc_stats(top: &dyn Backend, fd: i32) {
    let mut w = FdWriter::new(fd);
    match STATS.get() {
        Some(s) => {
            let _ = s.report(&mut w);
        }
        None => {
            let b = top.stats();
            let _ = write!(w, "=={}== stratalloc ({}):", sys::pid(), top.name());
            // A backend reports 0 for what it does not count (the engine
            // keeps no per-call counters on its fast path): leave those out
            // rather than print a false zero.
            if b.allocs != 0 || b.in_use != 0 {
                let _ = write!(
                    w,
                    " {} allocations, {} frees, {} in use (peak {}),",
                    b.allocs,
                    b.frees,
                    sys::Bytes(b.in_use as u64),
                    sys::Bytes(b.peak_in_use as u64)
                );
            }
            let _ = writeln!(
                w,
                " {} mapped (peak {}), {} returned to the OS; set STRATALLOC_STATS=1 for the full report",
                sys::Bytes(b.mapped as u64),
                sys::Bytes(b.peak_mapped as u64),
                sys::Bytes(b.returned)
            );
        }
    }
    w.flush();
}

/// Hand the calling thread's pending figures to the process-wide ones now.
/// Not needed at thread exit (the stats wrapper's own pthread-key
/// destructor does it); useful to publish this thread's figures before another thread reads them.
/// Does not allocate.
pub fn thread_exit() {
    if let Some(s) = STATS.get() {
        s.flush_thread();
    }
}

/// `true` if any wrapper is installed.
pub fn active() -> bool {
    CHECK.get().is_some() || LEAKS.get().is_some() || STATS.get().is_some() || TRACE.get().is_some()
}

/// Write every report and flush the trace. Runs once (later calls return at
/// once); called at exit. The leak report allocates while symbolizing, with
/// tracking already stopped.
pub fn finish() {
    if !active() || FINISHED.swap(true, Ordering::SeqCst) {
        return;
    }
    if let Some(t) = TRACE.get() {
        t.finish();
    }
    if let (Some(s), Some(out)) = (STATS.get(), STATS_OUT.get()) {
        let dest = ReportFd::open(out);
        if dest.fd() >= 0 {
            let mut w = FdWriter::new(dest.fd());
            let _ = s.report(&mut w);
            w.flush();
        }
    }
    if let Some(c) = CHECK.get() {
        c.finish();
    }
    if let Some(l) = LEAKS.get() {
        l.finish();
    }
}

extern "C" fn run_finish() {
    finish();
}

/// Runs [`finish`] when the process exits or the library is unloaded.
#[used]
#[link_section = ".fini_array"]
static FINISH_AT_EXIT: extern "C" fn() = run_finish;

#[cfg(test)]
mod tests {
    use super::*;
    use testing::SysBackend;

    #[test]
    fn off_means_the_base_itself() {
        let base = SysBackend::leaked();
        let top = wrap(base, &Options::DEFAULT);
        assert!(core::ptr::addr_eq(top, base));
    }

    #[test]
    fn the_stack_is_built_in_order() {
        let opts = Options::parse(|k| match k {
            "STRATALLOC_STATS" | "STRATALLOC_LEAKS" => Some(&b"/dev/null"[..]),
            "STRATALLOC_CHECK" => Some(&b"1"[..]),
            _ => None,
        });
        let top = wrap(SysBackend::leaked(), &opts);
        assert_eq!(top.name(), "stats(leaks(check(sys)))");
        let p = top.alloc(100, 16);
        // SAFETY: live block of `top`.
        assert_eq!(unsafe { top.usable_size(p) }, 100);
        // SAFETY: live block of `top`.
        unsafe { top.free(p) };
        let s = stats_snapshot().unwrap();
        assert!(s.allocs >= 1 && s.frees >= 1);
        assert!(active());
    }
}
