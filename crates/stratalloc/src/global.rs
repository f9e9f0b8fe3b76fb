//! [`StratAlloc`]: the process allocator as Rust's global allocator and as
//! an `allocator_api2` [`Allocator`], configured by a `const` builder and
//! the `STRATALLOC_*` environment variables.
//!
//! Every call goes where the C library's would: the configuration is
//! applied at the first allocation (`select`), and from then on a call is
//! either the engine's inlined function (the engine with no wrapper, as the
//! C `malloc` does) or one dynamic call through the stack of wrappers over
//! the chosen allocator. `dealloc` ignores the layout (every backend finds
//! the block from the pointer).

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};

use allocator_api2::alloc::{AllocError, Allocator};
use stratalloc_core::Strategy;

use crate::backend::Backend;
use crate::engine;
use crate::options::{Choice, Options, Output, PathBuf};
use crate::select::{self, Config, Mode};

/// Where a wrapper's report goes at exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// The wrapper is off.
    Off,
    /// The wrapper is on but writes nothing at exit. With
    /// [`StratAlloc::stats`], this counts every call for [`crate::stats`]
    /// without printing a report.
    Quiet,
    /// Standard error.
    Stderr,
    /// A file, appended to (at most 255 bytes, no NUL byte).
    File(&'static str),
}

impl Report {
    /// The report's destination as the options hold it.
    fn output(self) -> Output {
        match self {
            Report::Off => Output::Off,
            Report::Quiet => Output::Quiet,
            Report::Stderr => Output::Stderr,
            Report::File(p) => Output::Path(path(p)),
        }
    }
}

/// `p` as a path the options can hold; a compile-time error in a `static`
/// (a panic at run time) if it is empty, longer than 255 bytes or holds NUL.
const fn path(p: &str) -> PathBuf {
    match PathBuf::from_bytes(p.as_bytes()) {
        Some(p) => p,
        None => panic!("stratalloc: a path must be 1 to 255 bytes with no NUL"),
    }
}

/// The stratalloc allocator: the engine (default) or any core strategy,
/// with the statistics, leak, check and trace wrappers, as in the C
/// library.
///
/// ```
/// use stratalloc::{Report, StratAlloc, Strategy};
///
/// // The same settings STRATALLOC_STRATEGY=tlsf STRATALLOC_STATS=1 give.
/// static A: StratAlloc = StratAlloc::new().strategy(Strategy::Tlsf).stats(Report::Stderr);
/// # let _ = &A;
/// ```
///
/// # Configuration
///
/// The builder's settings are the defaults; each `STRATALLOC_*` variable
/// that is set overrides its setting (`STRATALLOC_STATS=0` turns the
/// builder's statistics off), so a deployed program can be re-tuned without
/// a rebuild. [`ignore_env`](Self::ignore_env) makes the builder's word
/// final. The variables are read with `getenv` at the first allocation,
/// without allocating.
///
/// A process has one allocator state. The configuration of the first
/// `StratAlloc` that allocates is the one applied; other values (another
/// `StratAlloc` used as an [`Allocator`], say) share that state and their
/// settings are not looked at. A `#[global_allocator]` allocates first of
/// all, so its configuration is the one that counts.
///
/// # Drop-in
///
/// ```
/// #[global_allocator]
/// static A: stratalloc::StratAlloc = stratalloc::StratAlloc::new();
/// # fn main() {}
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StratAlloc {
    // The settings as given (a few words: a value is carried by every
    // collection that allocates with it); turned into `Options` at the
    // first allocation.
    strategy: Option<Strategy>,
    stats: Report,
    leaks: Report,
    check: bool,
    trace: Option<&'static str>,
    read_env: bool,
}

// A few words, so that collections allocating with a `StratAlloc` stay small.
const _: () = assert!(core::mem::size_of::<StratAlloc>() <= 80);

impl Default for StratAlloc {
    fn default() -> Self {
        StratAlloc::new()
    }
}

impl StratAlloc {
    /// The engine with no wrapper, unless the environment asks otherwise
    /// (the same variables the C library reads).
    pub const fn new() -> Self {
        StratAlloc {
            strategy: None,
            stats: Report::Off,
            leaks: Report::Off,
            check: false,
            trace: None,
            read_env: true,
        }
    }

    /// Serve the process with a core strategy over memory mapped from the
    /// OS instead of the engine (`STRATALLOC_STRATEGY`).
    pub const fn strategy(mut self, s: Strategy) -> Self {
        self.strategy = Some(s);
        self
    }

    /// Count every call and report the figures at exit (`STRATALLOC_STATS`).
    /// [`Report::Quiet`] counts without a report.
    pub const fn stats(mut self, to: Report) -> Self {
        if let Report::File(p) = to {
            path(p);
        }
        self.stats = to;
        self
    }

    /// Remember every live block with its call stack and list those live at
    /// exit (`STRATALLOC_LEAKS`).
    pub const fn leaks(mut self, to: Report) -> Self {
        if let Report::File(p) = to {
            path(p);
        }
        self.leaks = to;
        self
    }

    /// Check mode: canaries, double and invalid frees, writes after free
    /// (`STRATALLOC_CHECK`).
    pub const fn check(mut self, on: bool) -> Self {
        self.check = on;
        self
    }

    /// Record every event to a binary trace file for `stratalloc replay` and
    /// `stratalloc viz` (`STRATALLOC_TRACE`). The path is at most 255 bytes.
    pub const fn trace(mut self, path: &'static str) -> Self {
        self::path(path);
        self.trace = Some(path);
        self
    }

    /// Do not read the `STRATALLOC_*` variables: the builder's settings
    /// are final.
    pub const fn ignore_env(mut self) -> Self {
        self.read_env = false;
        self
    }

    /// What the first allocation configures the process with.
    fn config(&self) -> Config {
        let mut base = Options::DEFAULT;
        if let Some(s) = self.strategy {
            base.choice = Choice::Strategy(s);
        }
        base.stats = self.stats.output();
        base.leaks = self.leaks.output();
        base.check = self.check;
        base.trace = self.trace.map(path);
        Config {
            base,
            read_env: self.read_env,
        }
    }

    #[inline]
    fn top(&self) -> &'static dyn Backend {
        match select::ready() {
            Some(t) => t,
            None => self.start(),
        }
    }

    #[cold]
    #[inline(never)]
    fn start(&self) -> &'static dyn Backend {
        select::top_with(&self.config())
    }

    #[inline]
    fn alloc_raw(&self, size: usize, align: usize) -> *mut u8 {
        match select::mode() {
            Mode::Engine => engine::aligned_alloc(align, size),
            _ => self.top().alloc(size, align),
        }
    }

    #[inline]
    fn alloc_zeroed_raw(&self, size: usize, align: usize) -> *mut u8 {
        match select::mode() {
            Mode::Engine => engine::alloc_zeroed(size, align),
            _ => self.top().alloc_zeroed(size, align),
        }
    }

    /// # Safety
    /// `p` is a live block of this allocator.
    #[inline]
    unsafe fn free_raw(&self, p: *mut u8) {
        match select::mode() {
            // SAFETY: forwarded; Mode::Engine means every block is the engine's.
            Mode::Engine => unsafe { engine::free(p) },
            // SAFETY: forwarded (bootstrap blocks are told apart there).
            _ => unsafe { select::free(p) },
        }
    }

    /// # Safety
    /// `p` is a live block of this allocator.
    #[inline]
    unsafe fn usable_raw(&self, p: *const u8) -> usize {
        match select::mode() {
            // SAFETY: forwarded.
            Mode::Engine => unsafe { engine::usable_size(p) },
            // SAFETY: forwarded.
            _ => unsafe { select::usable_size(p) },
        }
    }

    /// Resize `p` (aligned to `align`, `old` bytes asked for) to `new_size`
    /// bytes (> 0) aligned to `align`: in place where the allocator can (the
    /// block's size class still fits, a large block grows into free
    /// neighbouring slices, a huge block is remapped), else moved. Null on
    /// failure, with `p` untouched.
    ///
    /// # Safety
    /// `p` is a live block of this allocator, aligned to `align`.
    unsafe fn resize(&self, p: *mut u8, align: usize, old: usize, new_size: usize) -> *mut u8 {
        if align <= 16 {
            return match select::mode() {
                // SAFETY: forwarded (p live, new_size > 0).
                Mode::Engine => unsafe { engine::realloc(p, new_size) },
                // SAFETY: forwarded.
                _ => unsafe { select::realloc(p, new_size) },
            };
        }
        // A backend's realloc keeps only 16-byte alignment when it moves a
        // block, so a block aligned above that stays only where it fits.
        // SAFETY: `p` is live.
        if new_size <= unsafe { self.usable_raw(p) } {
            return p;
        }
        let q = self.alloc_raw(new_size, align);
        if !q.is_null() {
            // SAFETY: distinct live blocks, both at least min(old, new_size).
            unsafe {
                ptr::copy_nonoverlapping(p, q, old.min(new_size));
                self.free_raw(p);
            }
        }
        q
    }

    /// `p` as the slice the allocator made usable.
    ///
    /// # Safety
    /// `p` is null or a live block of this allocator.
    #[inline]
    unsafe fn usable_slice(&self, p: *mut u8) -> Result<NonNull<[u8]>, AllocError> {
        let p = NonNull::new(p).ok_or(AllocError)?;
        // SAFETY: `p` is live.
        let n = unsafe { self.usable_raw(p.as_ptr()) };
        Ok(NonNull::slice_from_raw_parts(p, n))
    }
}

// SAFETY: every backend returns disjoint blocks of at least `size` bytes
// aligned to `align`, and keeps contents across realloc (see `resize` for
// alignments above 16).
unsafe impl GlobalAlloc for StratAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.alloc_raw(layout.size(), layout.align())
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, _layout: Layout) {
        // SAFETY: `p` was allocated by this allocator (GlobalAlloc contract).
        unsafe { self.free_raw(p) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.alloc_zeroed_raw(layout.size(), layout.align())
    }

    #[inline]
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `p` is live and aligned to layout.align(); new_size > 0
        // (GlobalAlloc contract).
        unsafe { self.resize(p, layout.align(), layout.size(), new_size) }
    }
}

fn dangling(layout: Layout) -> NonNull<[u8]> {
    // SAFETY: align is nonzero, so the address is non-null.
    let p = unsafe { NonNull::new_unchecked(layout.align() as *mut u8) };
    NonNull::slice_from_raw_parts(p, 0)
}

// SAFETY: blocks stay valid until deallocated through any copy of
// `StratAlloc` (they all share the process's one allocator state); a block
// is described by the usable size the backend reports, which is at least
// the size asked for, and any layout whose size lies between the two
// deallocates it (the layout is not looked at). Zero-sized requests get a
// dangling, aligned pointer that deallocate ignores.
unsafe impl Allocator for StratAlloc {
    /// A block of at least `layout.size()` bytes; the slice is as long as
    /// the block's usable size (its size class, for the engine).
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        let p = self.alloc_raw(layout.size(), layout.align());
        // SAFETY: null or a fresh block.
        unsafe { self.usable_slice(p) }
    }

    /// As [`allocate`](Self::allocate), with the whole usable slice zeroed.
    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        let p = self.alloc_zeroed_raw(layout.size(), layout.align());
        // SAFETY: null or a fresh block.
        let s = unsafe { self.usable_slice(p) }?;
        // The backend zeroed what was asked for; the rest of the block is
        // handed out too.
        // SAFETY: the block holds `s.len()` bytes.
        unsafe { zero_from(s, layout.size()) };
        Ok(s)
    }

    unsafe fn deallocate(&self, p: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: allocated by this allocator (Allocator contract).
            unsafe { self.free_raw(p.as_ptr()) }
        }
    }

    /// In place when the block's usable size already covers the new size,
    /// and wherever the allocator can grow it (see [`StratAlloc`]'s
    /// `realloc`); otherwise moved.
    unsafe fn grow(
        &self,
        p: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded (Allocator contract).
        unsafe { self.regrow(p, old, new) }
    }

    unsafe fn grow_zeroed(
        &self,
        p: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded (Allocator contract).
        let s = unsafe { self.regrow(p, old, new) }?;
        // SAFETY: the block holds `s.len()` bytes, `old.size()` of them kept.
        unsafe { zero_from(s, old.size()) };
        Ok(s)
    }

    /// In place when the allocator keeps the block (the engine keeps a
    /// block that still fills at least half of its size class); otherwise
    /// moved to a smaller block.
    unsafe fn shrink(
        &self,
        p: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if new.size() == 0 {
            // SAFETY: forwarded (Allocator contract).
            unsafe { self.deallocate(p, old) };
            return Ok(dangling(new));
        }
        // SAFETY: forwarded (Allocator contract).
        unsafe { self.regrow(p, old, new) }
    }
}

impl StratAlloc {
    /// `grow` and `shrink` to a non-zero size.
    ///
    /// # Safety
    /// The `Allocator::grow` contract.
    unsafe fn regrow(
        &self,
        p: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if old.size() == 0 {
            return self.allocate(new);
        }
        if new.align() > old.align() && p.as_ptr() as usize % new.align() != 0 {
            let q = self.allocate(new)?;
            // SAFETY: distinct blocks; both hold min(old, new) bytes.
            unsafe {
                ptr::copy_nonoverlapping(p.as_ptr(), q.as_ptr().cast(), old.size().min(new.size()));
                self.deallocate(p, old);
            }
            return Ok(q);
        }
        let align = old.align().max(new.align());
        // SAFETY: `p` is live and aligned to `align` (checked above).
        let q = unsafe { self.resize(p.as_ptr(), align, old.size(), new.size()) };
        // SAFETY: null or a live block.
        unsafe { self.usable_slice(q) }
    }
}

/// Zero `s` from byte `from` on.
///
/// # Safety
/// `s` is a live block.
unsafe fn zero_from(s: NonNull<[u8]>, from: usize) {
    if from < s.len() {
        // SAFETY: inside the block.
        unsafe { ptr::write_bytes(s.as_ptr().cast::<u8>().add(from), 0, s.len() - from) };
    }
}
