//! Wrappers: allocators over allocators, stacked at start-up over whichever
//! backend the options chose. Each sees only the [`Backend`] below it, so
//! they compose with the engine and with every core strategy alike.
//!
//! ```text
//!   front end (C ABI / GlobalAlloc)
//!      │
//!   trace   every event to a file           STRATALLOC_TRACE=path
//!   stats   counters, histogram, classes    STRATALLOC_STATS=1|path (or STRATALLOC_SUMMARY)
//!   profile call sites, peak, timeline      STRATALLOC_PROFILE=path
//!   leaks   lost blocks + call stacks       STRATALLOC_LEAKS=1|path
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
//! calls it; it runs once. Every report starts with the process id and the
//! command line ([`sys::write_process_header`]). Under `stratalloc run`
//! (`STRATALLOC_ONLY_CHILD_OF`) only the process the command started
//! reports: its descendants run without wrappers (`Options::for_parent`),
//! and a child it forks, which inherits the wrappers, writes no report.

/// A wrapper's own lock sets, as its fork handlers take and give them:
/// `fork_prepare` takes sets `0..SETS` in order and then prepares the
/// backend below; `fork_parent` and `fork_child` let the backend below
/// finish first, then give the sets back in reverse order.
/// [`forward_rest!`] writes those handlers from this.
trait ForkLocks {
    /// Lock sets the wrapper holds across `fork`.
    const SETS: usize;
    /// Try to take set `i` (false: another fork is being prepared).
    fn try_take(&self, i: usize) -> bool;
    /// Give back set `i`, in the parent (or a failed prepare) or, if
    /// `child`, in the fork child (where a wrapper may reset what the set
    /// guards).
    ///
    /// # Safety
    /// The calling thread took set `i` in `fork_prepare` (in the child:
    /// the parent's thread that forked did).
    unsafe fn give(&self, i: usize, child: bool);
}

/// The end of a wrapper's `impl Backend`: `trim`, `stats` and `heap_info`
/// forwarded to `self.inner`, and the fork handlers made from the
/// wrapper's [`ForkLocks`].
macro_rules! forward_rest {
    () => {
        fn trim(&self) -> bool {
            self.inner.trim()
        }
        fn stats(&self) -> crate::backend::BackendStats {
            self.inner.stats()
        }
        fn heap_info(&self) -> crate::backend::HeapInfo {
            self.inner.heap_info()
        }
        fn fork_prepare(&self) -> bool {
            use crate::wrappers::ForkLocks;
            crate::wrappers::prepare_over(
                self.inner,
                Self::SETS,
                |i| self.try_take(i),
                // SAFETY: set `i` was just taken by `try_take`.
                |i| unsafe { self.give(i, false) },
            )
        }
        fn fork_parent(&self) {
            use crate::wrappers::ForkLocks;
            self.inner.fork_parent();
            for i in (0..Self::SETS).rev() {
                // SAFETY: taken in fork_prepare.
                unsafe { self.give(i, false) };
            }
        }
        fn fork_child(&self) {
            use crate::wrappers::ForkLocks;
            self.inner.fork_child();
            for i in (0..Self::SETS).rev() {
                // SAFETY: taken in fork_prepare (by the parent's thread).
                unsafe { self.give(i, true) };
            }
        }
    };
}

pub mod check;
pub mod leaks;
pub mod profile;
pub mod reach;
pub mod stats;
pub mod sys;
pub mod table;
pub mod trace;
pub mod world;

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
static LEAKS_OUT: Slot<Output> = Slot::new();
static PROFILE: Slot<profile::Profile> = Slot::new();
static STATS: Slot<stats::Stats> = Slot::new();
static STATS_OUT: Slot<Output> = Slot::new();
static SUMMARY_OUT: Slot<Output> = Slot::new();
static TRACE: Slot<trace::Trace> = Slot::new();
static NAMES: [Slot<StackBuf<128>>; 5] = [const { Slot::new() }; 5];
/// The process that built the wrappers (a child it forks inherits them).
static BUILDER: Slot<u32> = Slot::new();
/// Set when `STRATALLOC_ONLY_CHILD_OF` is: only [`BUILDER`] reports.
static BUILDER_ONLY: Slot<()> = Slot::new();
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
    BUILDER.init(sys::pid());
    if opts.only_child_of.is_some() {
        BUILDER_ONLY.init(());
    }
    if opts.check {
        let name = layer_name(0, "check", top);
        top = CHECK.init(check::Check::new(top, name));
    }
    if opts.leaks != Output::Off {
        let name = layer_name(1, "leaks", top);
        LEAKS_OUT.init(opts.leaks);
        top = LEAKS.init(leaks::Leaks::new(top, name, opts.leaks, opts.leak));
    }
    if opts.profile != Output::Off {
        let name = layer_name(4, "profile", top);
        top = PROFILE.init(profile::Profile::new(
            top,
            name,
            opts.profile,
            opts.profile_sample,
        ));
    }
    if opts.stats != Output::Off || opts.summary != Output::Off {
        let name = layer_name(2, "stats", top);
        STATS_OUT.init(opts.stats);
        SUMMARY_OUT.init(opts.summary);
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

/// What `malloc_stats()` prints: glibc's figures in glibc's layout
/// ("Arena 0:", "system bytes", "in use bytes", then "Total (incl. mmap):"
/// with the huge blocks' mappings added) from `top`'s [`HeapInfo`], the
/// bytes returned to the OS, and then the full statistics report if the
/// stats wrapper is on. Writes to `fd` (glibc prints to standard error).
/// Does not allocate.
///
/// [`HeapInfo`]: crate::backend::HeapInfo
pub fn malloc_stats(top: &dyn Backend, fd: i32) {
    let mut w = FdWriter::new(fd);
    let i = top.heap_info();
    let returned = top.stats().returned;
    let _ = write!(
        w,
        "Arena 0:\nsystem bytes     = {:>10}\nin use bytes     = {:>10}\n\
         Total (incl. mmap):\nsystem bytes     = {:>10}\nin use bytes     = {:>10}\n\
         mmap regions     = {:>10}\nmmap bytes       = {:>10}\n\
         returned bytes   = {:>10}\n",
        i.arena,
        i.in_use,
        i.arena + i.huge_bytes,
        i.in_use + i.huge_bytes,
        i.huge_blocks,
        i.huge_bytes,
        returned
    );
    if let Some(s) = STATS.get() {
        let _ = sys::write_process_header(&mut w, "statistics");
        let _ = s.report(&mut w);
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
    CHECK.get().is_some()
        || LEAKS.get().is_some()
        || STATS.get().is_some()
        || TRACE.get().is_some()
        || PROFILE.get().is_some()
}

/// Open `out` and write the report header naming `what` (the report
/// itself follows). Does not allocate.
fn open_report(out: &Output, what: &str) -> ReportFd {
    let dest = ReportFd::open(out);
    if dest.fd() >= 0 {
        let mut w = FdWriter::new(dest.fd());
        let _ = sys::write_process_header(&mut w, what);
    }
    dest
}

/// The one-line summary `stratalloc run` prints when no report was asked
/// for, as `/usr/bin/time` does. Does not allocate.
pub fn write_summary(out: &mut dyn Write, s: &stats::Snapshot) -> core::fmt::Result {
    writeln!(
        out,
        "=={}==   peak heap {}, peak RSS {}, {} allocations, {} frees; {} blocks ({}) live at exit \
         (not a leak check: run with --leaks)",
        sys::pid(),
        sys::Bytes(s.peak as u64),
        sys::Bytes(sys::peak_rss()),
        s.allocs,
        s.frees,
        s.live(),
        sys::Bytes(s.in_use as u64)
    )
}

/// Write every report and flush the trace. Runs once (later calls return at
/// once); called at exit. The leak report allocates while symbolizing, with
/// tracking already stopped; if it finds leaks, the process ends here with
/// `_exit(STRATALLOC_LEAKS_EXITCODE)` (23 by default).
pub fn finish() {
    if !active() || FINISHED.swap(true, Ordering::SeqCst) {
        return;
    }
    if let Some(t) = TRACE.get() {
        t.finish();
    }
    if BUILDER_ONLY.get().is_some() && !built_here() {
        // A child forked by the started program (see the module docs).
        return;
    }
    if let (Some(s), Some(out)) = (STATS.get(), STATS_OUT.get()) {
        let dest = open_report(out, "statistics");
        if dest.fd() >= 0 {
            let mut w = FdWriter::new(dest.fd());
            let _ = s.report(&mut w);
            w.flush();
        }
    }
    if let (Some(s), Some(out)) = (STATS.get(), SUMMARY_OUT.get()) {
        let dest = open_report(out, "summary");
        if dest.fd() >= 0 {
            let mut w = FdWriter::new(dest.fd());
            let _ = write_summary(&mut w, &s.snapshot());
            w.flush();
        }
    }
    if let Some(c) = CHECK.get() {
        c.finish();
    }
    // The leak check runs before the profile is written: what the profile's
    // report allocates must not be taken for the program's blocks.
    let leak_status = match (LEAKS.get(), LEAKS_OUT.get()) {
        (Some(l), Some(out)) => {
            drop(open_report(out, "leak report"));
            l.finish()
        }
        _ => None,
    };
    if let Some(p) = PROFILE.get() {
        p.finish();
    }
    if let Some(code) = leak_status {
        // Leaks found: leave with their status, as LeakSanitizer does.
        // This runs inside `exit` (a `.fini_array` destructor), before
        // glibc flushes stdio, so flush it first.
        // SAFETY: fflush(NULL) flushes every stream; _exit ends the
        // process without running the rest of the exit path.
        unsafe {
            libc::fflush(core::ptr::null_mut());
            libc::_exit(code as i32);
        }
    }
}

/// `true` in the process that built the wrappers.
fn built_here() -> bool {
    BUILDER.get().is_some_and(|&p| p == sys::pid())
}

/// [`finish`], for a front end's `_exit`: only in the process that built
/// the wrappers (a `fork` or `vfork` child calling `_exit` writes nothing;
/// a `vfork` child shares its parent's memory).
pub fn finish_on_exit() {
    if built_here() {
        finish();
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
