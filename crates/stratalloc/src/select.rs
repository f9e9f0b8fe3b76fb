//! Start-up: which allocator serves the process, chosen once at first use.
//!
//! ```text
//!   first malloc ──> init(): Options::from_env_over(base)  (getenv, no malloc)
//!                      ├─ Choice::Engine       -> ENGINE
//!                      └─ Choice::Strategy(s)  -> PROCESS (a ProcessHeap of s)
//!                    wrappers::wrap(base, &opts)            -> TOP
//!                    MODE = Engine (fast path) | Dyn (through TOP)
//!                    pthread_atfork(prepare, parent, child)
//! ```
//!
//! The C library starts from the defaults ([`Config::ENV`]); a Rust
//! `StratAlloc` passes its own [`Config`] (the builder's options, with or
//! without the environment over them). The first call in the process
//! decides; later configurations are not looked at.
//!
//! ## Re-entrancy and threads
//!
//! Initialisation may call back into `malloc` (a wrapper opening its file,
//! the engine's set-up, libc internals). `STATE` goes `UNINIT → BUSY →
//! READY` with one compare-and-swap, and the thread that won records itself
//! in `INIT_OWNER`:
//! - the initialising thread calling `malloc` again is served from a static
//!   bootstrap arena ([`Bootstrap`]; a bump over 256 KiB whose blocks are
//!   never reused, freed silently, and copied out by `realloc`);
//! - any other thread waits (yielding) until `READY`.
//!
//! ## fork
//!
//! The handlers registered here decide as glibc's `fork` does: in a
//! single-threaded process (`__libc_single_threaded`, read by glibc before
//! the prepare handlers run) nothing is locked and nothing repaired, since
//! no other thread can hold anything (so `fork` from a signal handler that
//! interrupted `malloc` works, as it does with glibc's malloc). In a
//! multi-threaded one, `prepare` takes stdio's list lock (`_IO_list_lock`,
//! recursive) before the backends' locks, the order glibc uses for its own
//! malloc, then calls [`Backend::fork_prepare`] (the decision is kept per
//! thread for the parent and child handlers); glibc's `fork` takes the
//! list lock again, releases it once in the parent (our `parent` handler
//! releases our hold after the backends') and re-initialises it in the child
//! before the child handlers run. ARCHITECTURE.md ("fork") says why.
//!
//! ## The mode flag
//!
//! [`mode`] is what the C front end branches on: [`Mode::Engine`] means "the
//! engine, no wrapper, no bootstrap pointer ever handed out", so `malloc` can
//! call the engine's inlined functions directly with no dynamic call and no
//! bootstrap check. Anything else goes through [`top`] and the bootstrap
//! check in [`free`], [`realloc`] and [`usable_size`].
//!
//! Invariants:
//! - `TOP` is written once, before `STATE` becomes `READY` (release), and
//!   read only after observing `READY` (acquire).
//! - `MODE` is `Uninit` until `STATE` is `READY`; it is `Engine` only when
//!   the bootstrap arena handed out nothing.

use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use stratalloc_core::Strategy;

use crate::backend::Backend;
use crate::options::{Choice, Options};
use crate::process::ProcessHeap;
use crate::sync::{self, this_thread};

/// What the C front end does on each call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Not initialised yet: call `init` (through [`top`]).
    Uninit = 0,
    /// The engine with no wrapper: call the engine directly.
    Engine = 1,
    /// Everything else: go through [`top`].
    Dyn = 2,
}

const UNINIT: u8 = 0;
const BUSY: u8 = 1;
const READY: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNINIT);
static MODE: AtomicU8 = AtomicU8::new(Mode::Uninit as u8);
static INIT_OWNER: AtomicUsize = AtomicUsize::new(0);

/// The process heap used when a core strategy is chosen (the strategy is
/// set by `init` before anything is allocated from it).
pub static PROCESS: ProcessHeap = ProcessHeap::new(Strategy::ALL[0]);

struct TopCell(UnsafeCell<Option<&'static dyn Backend>>);
// SAFETY: written once by the initialising thread before STATE = READY
// (release) and only read after STATE == READY (acquire).
unsafe impl Sync for TopCell {}
static TOP: TopCell = TopCell(UnsafeCell::new(None));

struct OptsCell(UnsafeCell<Options>);
// SAFETY: as TopCell.
unsafe impl Sync for OptsCell {}
static OPTS: OptsCell = OptsCell(UnsafeCell::new(Options::DEFAULT));

/// The current mode (a relaxed load: the flag only ever moves from
/// `Uninit` to its final value, and `Uninit` takes the slow path, which
/// synchronises through `STATE`).
#[inline(always)]
pub fn mode() -> Mode {
    match MODE.load(Ordering::Relaxed) {
        1 => Mode::Engine,
        2 => Mode::Dyn,
        _ => Mode::Uninit,
    }
}

/// What the first call configures the process with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The options before the environment is read.
    pub base: Options,
    /// Apply the `STRATALLOC_*` variables over `base`.
    pub read_env: bool,
}

impl Config {
    /// The C library's: the defaults, then the environment.
    pub const ENV: Config = Config {
        base: Options::DEFAULT,
        read_env: true,
    };
}

/// The allocator at the top of the stack, initialising on first use (from
/// the environment). During a re-entrant call from initialisation itself,
/// the bootstrap arena.
#[inline]
pub fn top() -> &'static dyn Backend {
    top_with(&Config::ENV)
}

/// As [`top`], initialising with `cfg` if this is the first call.
#[inline]
pub fn top_with(cfg: &Config) -> &'static dyn Backend {
    match ready() {
        Some(t) => t,
        None => init_slow(cfg),
    }
}

/// The top of the stack if initialisation has finished, without starting it.
#[inline]
pub fn ready() -> Option<&'static dyn Backend> {
    if STATE.load(Ordering::Acquire) == READY {
        // SAFETY: READY observed with acquire: TOP was written before.
        unsafe { *TOP.0.get() }
    } else {
        None
    }
}

/// The options the process started with (defaults before `init`).
pub fn options() -> Options {
    top();
    // SAFETY: written before READY, which `top` waited for (or we are the
    // initialising thread, which wrote it before anything could read it).
    unsafe { *OPTS.0.get() }
}

/// The base allocator's name: `"engine"` or the strategy's name (wrappers
/// not included).
pub fn base_name() -> &'static str {
    match options().choice {
        Choice::Engine => "engine",
        Choice::Strategy(s) => s.name(),
    }
}

#[cold]
#[inline(never)]
fn init_slow(cfg: &Config) -> &'static dyn Backend {
    loop {
        match STATE.compare_exchange(UNINIT, BUSY, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => {
                INIT_OWNER.store(this_thread(), Ordering::Relaxed);
                return init(cfg);
            }
            Err(READY) => {
                // SAFETY: READY observed with acquire.
                if let Some(t) = unsafe { *TOP.0.get() } {
                    return t;
                }
            }
            Err(_) => {
                if INIT_OWNER.load(Ordering::Relaxed) == this_thread() {
                    // Re-entered from our own initialisation.
                    return &BOOTSTRAP;
                }
                // SAFETY: sched_yield has no preconditions.
                unsafe { libc::sched_yield() };
            }
        }
    }
}

fn init(cfg: &Config) -> &'static dyn Backend {
    let opts = if cfg.read_env {
        Options::from_env_over(cfg.base)
    } else {
        cfg.base
    };
    // SAFETY: only the initialising thread writes OPTS, before READY.
    unsafe { *OPTS.0.get() = opts };
    if opts.unknown_strategy {
        print_strategy_names();
    }
    let (base, engine): (&'static dyn Backend, bool) = match opts.choice {
        Choice::Engine => {
            crate::engine::set_thp(opts.thp);
            (&crate::engine::ENGINE, true)
        }
        Choice::Strategy(s) => {
            PROCESS.set_strategy(s);
            (&PROCESS, false)
        }
    };
    let top = crate::wrappers::wrap(base, &opts);
    let wrapped = opts.any_wrapper();
    // SAFETY: only the initialising thread writes TOP, before READY.
    unsafe { *TOP.0.get() = Some(top) };
    let mode = if engine && !wrapped && BOOTSTRAP.used() == 0 {
        Mode::Engine
    } else {
        Mode::Dyn
    };
    STATE.store(READY, Ordering::Release);
    MODE.store(mode as u8, Ordering::Release);
    INIT_OWNER.store(0, Ordering::Relaxed);
    // Registered after READY: glibc's registration allocates. Registered
    // first of all handlers (we initialise at the first malloc), so our
    // prepare runs last (other handlers may allocate) and our child and
    // parent handlers first.
    // SAFETY: the handlers are extern "C" functions with no arguments.
    unsafe { libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child)) };
    top
}

fn print_strategy_names() {
    let mut b = crate::diag::StackBuf::<512>::new();
    use core::fmt::Write;
    let _ = b.write_str(
        "stratalloc: unknown STRATALLOC_STRATEGY; using the engine. Valid names: engine",
    );
    for s in Strategy::ALL {
        let _ = write!(b, " {}", s.name());
    }
    let _ = b.write_str("\n");
    crate::diag::write_fd(2, b.as_bytes());
}

/// glibc's stdio list lock and its single-threaded flag (x86-64 Linux
/// glibc is the one target; see the module docs, "fork").
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod libc_fork {
    extern "C" {
        fn _IO_list_lock();
        fn _IO_list_unlock();
        static __libc_single_threaded: core::ffi::c_char;
    }

    /// `true` if glibc's `fork` takes and resets its own locks.
    pub fn multi_threaded() -> bool {
        // SAFETY: a byte glibc exports for this purpose; a volatile read
        // because other threads' `pthread_create` writes it.
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!(__libc_single_threaded)) == 0 }
    }
    pub fn list_lock() {
        // SAFETY: glibc's recursive stdio list lock; no preconditions.
        unsafe { _IO_list_lock() }
    }
    pub fn list_unlock() {
        // SAFETY: the calling thread took it in `list_lock`.
        unsafe { _IO_list_unlock() }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod libc_fork {
    pub fn multi_threaded() -> bool {
        true
    }
    pub fn list_lock() {}
    pub fn list_unlock() {}
}

thread_local! {
    /// The decisions of the calling thread's `fork`s in progress, newest in
    /// bit 0: 1 if that fork's prepare handler took stdio's list lock and
    /// the backends' locks. Per thread because glibc runs the handlers of
    /// forks in different threads at the same time (it holds no lock while
    /// a handler runs); a stack because a signal handler may fork while its
    /// thread is inside `fork` (the inner fork ends first). Const, no
    /// destructor: native TLS, no allocation.
    static FORKS: core::cell::Cell<u32> = const { core::cell::Cell::new(0) };
}

/// Pop the newest decision of this thread's forks.
fn fork_decision() -> bool {
    FORKS.with(|f| {
        let v = f.get();
        f.set(v >> 1);
        v & 1 != 0
    })
}

extern "C" fn fork_prepare() {
    let mt = libc_fork::multi_threaded();
    FORKS.with(|f| f.set(f.get() << 1 | mt as u32));
    if mt {
        // The list lock first, then the backends' locks. They give up a
        // busy lock only while another thread prepares a fork too (see
        // `sync`): then everything is given back and tried again, so a
        // thread interrupted inside a lock by a handler that forks gets the
        // list lock.
        sync::fork_enter();
        let mut round = 0;
        loop {
            libc_fork::list_lock();
            if top().fork_prepare() {
                break;
            }
            libc_fork::list_unlock();
            sync::backoff(&mut round);
        }
        sync::fork_leave();
    }
}
extern "C" fn fork_parent() {
    if fork_decision() {
        top().fork_parent();
        libc_fork::list_unlock();
    }
}
extern "C" fn fork_child() {
    // glibc has re-initialised the list lock (we must not release it).
    sync::fork_reset_in_child();
    if fork_decision() {
        top().fork_child();
    }
}

// ------------------------------------------------------------ dyn path

/// `free` through the stack (bootstrap blocks are ignored).
///
/// # Safety
/// As [`Backend::free`].
#[inline]
pub unsafe fn free(p: *mut u8) {
    if BOOTSTRAP.owns(p) {
        return;
    }
    // SAFETY: forwarded.
    unsafe { top().free(p) }
}

/// `realloc` through the stack (bootstrap blocks are copied out).
///
/// # Safety
/// As [`Backend::realloc`].
#[inline]
pub unsafe fn realloc(p: *mut u8, new_size: usize) -> *mut u8 {
    if BOOTSTRAP.owns(p) {
        // SAFETY: a live bootstrap block.
        let old = unsafe { BOOTSTRAP.usable_size(p) };
        let q = top().alloc(new_size, 16);
        if !q.is_null() {
            // SAFETY: distinct blocks, both at least min(old, new_size).
            unsafe { ptr::copy_nonoverlapping(p, q, old.min(new_size)) };
        }
        return q;
    }
    // SAFETY: forwarded.
    unsafe { top().realloc(p, new_size) }
}

/// `malloc_usable_size` through the stack.
///
/// # Safety
/// As [`Backend::usable_size`].
#[inline]
pub unsafe fn usable_size(p: *const u8) -> usize {
    if BOOTSTRAP.owns(p) {
        // SAFETY: a bootstrap block.
        return unsafe { BOOTSTRAP.usable_size(p) };
    }
    // SAFETY: forwarded.
    unsafe { top().usable_size(p) }
}

// ------------------------------------------------------------ bootstrap

const BOOT_LEN: usize = 256 << 10;

#[repr(C, align(4096))]
struct BootArena(UnsafeCell<[u8; BOOT_LEN]>);
// SAFETY: disjoint blocks are carved out with an atomic bump; each block is
// used by whoever received it.
unsafe impl Sync for BootArena {}

/// The bootstrap arena: serves `malloc` re-entered during initialisation.
/// Blocks carry a 16-byte header (usable size) and are never reused.
pub struct Bootstrap {
    arena: BootArena,
    top: AtomicUsize,
}

static BOOTSTRAP: Bootstrap = Bootstrap {
    arena: BootArena(UnsafeCell::new([0; BOOT_LEN])),
    top: AtomicUsize::new(0),
};

impl Bootstrap {
    fn base(&self) -> usize {
        self.arena.0.get() as usize
    }
    /// Bytes handed out so far.
    fn used(&self) -> usize {
        self.top.load(Ordering::Relaxed)
    }
    #[inline(always)]
    fn owns(&self, p: *const u8) -> bool {
        (p as usize).wrapping_sub(self.base()) < BOOT_LEN
    }
}

// SAFETY: blocks are disjoint slices of the arena (atomic bump).
unsafe impl Backend for Bootstrap {
    fn name(&self) -> &'static str {
        "bootstrap"
    }
    fn alloc(&self, size: usize, align: usize) -> *mut u8 {
        if !align.is_power_of_two() || align > 4096 || size > BOOT_LEN {
            return ptr::null_mut();
        }
        let align = align.max(16);
        let size = (size.max(1) + 15) & !15;
        let mut cur = self.top.load(Ordering::Relaxed);
        loop {
            let payload = (cur + 16 + align - 1) & !(align - 1);
            let end = payload + size;
            if end > BOOT_LEN {
                return ptr::null_mut();
            }
            match self
                .top
                .compare_exchange(cur, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    let p = (self.base() + payload) as *mut u8;
                    // SAFETY: the 16 bytes before payload are ours (cur+16 <=
                    // payload), inside the arena, 8-aligned.
                    unsafe { (p.sub(16) as *mut usize).write(size) };
                    return p;
                }
                Err(c) => cur = c,
            }
        }
    }
    unsafe fn free(&self, _p: *mut u8) {}
    unsafe fn realloc(&self, _p: *mut u8, _new_size: usize) -> *mut u8 {
        ptr::null_mut()
    }
    unsafe fn usable_size(&self, p: *const u8) -> usize {
        // SAFETY: a block's header is the 16 bytes before it.
        unsafe { (p.sub(16) as *const usize).read() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_blocks_are_aligned_and_sized() {
        let b = &BOOTSTRAP;
        let p = b.alloc(10, 16);
        let q = b.alloc(100, 256);
        assert!(b.owns(p) && b.owns(q));
        assert_eq!(q as usize % 256, 0);
        // SAFETY: blocks of the arena.
        unsafe {
            assert!(b.usable_size(p) >= 10);
            assert!(b.usable_size(q) >= 100);
        }
        assert!(!b.owns(ptr::null()));
        assert!(b.alloc(BOOT_LEN, 16).is_null());
    }
}
