//! # libstratalloc: the C malloc family
//!
//! Every allocation entry point glibc exports, with glibc's documented
//! behaviour, over whichever allocator `STRATALLOC_STRATEGY` chose at start-up
//! (see `stratalloc::select`). Preload it to replace the system allocator:
//!
//! ```text
//!   LD_PRELOAD=target/release/libstratalloc.so  STRATALLOC_STRATEGY=tlsf  ./prog
//!
//!   malloc ──┬─ mode == Engine ──> engine::malloc        (direct, inlined)
//!            └─ otherwise ───────> select::top().alloc   (wrappers, strategies)
//! ```
//!
//! ## Semantics (glibc's, checked by `scripts/test-c.sh`)
//!
//! - `malloc(0)`, `calloc(0, n)`: a unique pointer that `free` accepts.
//! - Any size above `PTRDIFF_MAX`, a `calloc`/`reallocarray` product that
//!   overflows, or any failure: `NULL` with `errno = ENOMEM`.
//! - `realloc(p, 0)` frees `p` and returns `NULL`; a failed `realloc` leaves
//!   the block as it was.
//! - `posix_memalign`: `EINVAL` for an alignment that is not a power-of-two
//!   multiple of `sizeof(void *)` (`errno` untouched), `ENOMEM` on failure
//!   (and `errno = ENOMEM`, as glibc sets it); `*out` is only written on
//!   success.
//! - `aligned_alloc`: an alignment that is not a power of two gives `NULL`
//!   with `EINVAL` (C17 / glibc 2.38). `memalign` rounds such an alignment
//!   up to a power of two, as glibc does.
//! - `pvalloc` rounds the size up to a page, `valloc` aligns to a page.
//! - `free` and every successful call leave `errno` alone.
//! - Every pointer from every entry point can be given to `free`,
//!   `realloc` and `malloc_usable_size`.
//!
//! ## Loaded with `dlopen` instead of preloaded
//!
//! The process then runs on glibc's malloc and only calls made through
//! `dlsym` reach this library. Pointers must not cross: `free` from this
//! library handed a pointer from glibc's `malloc` finds it in none of its
//! segments (engine) or regions and huge-block headers (core strategies),
//! reports it (`stratalloc: free …: pointer … not allocated by stratalloc …`)
//! and aborts (`tests/c/dlopen.c` checks this). Passing one of our pointers
//! to glibc's `free` is undefined
//! behaviour in glibc.
//!
//! Nothing here unwinds (`panic = "abort"`), allocates from Rust, or holds a
//! lock across a call into libc that could allocate.
#![deny(unsafe_op_in_unsafe_fn)]

use core::ffi::{c_char, c_int, c_void};
use core::ptr;
use core::sync::atomic::{AtomicU8, Ordering};

// The `stratalloc` crate's internals (its `__private` module), under the
// name this crate has always used for them.
use stratalloc_rs::__private as engine;

use engine::os::page_size;
use engine::select::{self, Mode};

#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
pub mod cxx;
pub mod exit;

/// `MALLOC_ALIGNMENT` on 64-bit glibc.
const MIN_ALIGN: usize = 16;

#[inline(always)]
fn errno_ptr() -> *mut c_int {
    // SAFETY: __errno_location never fails and returns this thread's errno.
    unsafe { libc::__errno_location() }
}

#[inline(always)]
fn get_errno() -> c_int {
    // SAFETY: a valid pointer to this thread's errno.
    unsafe { *errno_ptr() }
}

#[inline(always)]
fn set_errno(e: c_int) {
    // SAFETY: a valid pointer to this thread's errno.
    unsafe { *errno_ptr() = e }
}

/// Run `f` and make errno what the C contract says: restored on success
/// (the allocator may have seen a failed `mmap` on its way to success),
/// `ENOMEM` when `f` returned null.
#[inline(always)]
fn errno_contract(f: impl FnOnce() -> *mut u8) -> *mut c_void {
    let saved = get_errno();
    let p = f();
    if p.is_null() {
        set_errno(libc::ENOMEM);
    } else {
        set_errno(saved);
    }
    p.cast()
}

// ------------------------------------------------------------ core paths

/// Allocate through the mode's path; null on failure (errno untouched).
#[inline(always)]
fn alloc(size: usize, align: usize) -> *mut u8 {
    if size > isize::MAX as usize {
        return ptr::null_mut();
    }
    match select::mode() {
        Mode::Engine => engine_fast::alloc(size, align),
        _ => select::top().alloc(size, align),
    }
}

#[inline(always)]
unsafe fn free_impl(p: *mut u8) {
    match select::mode() {
        Mode::Engine => {
            // The engine takes null itself (off its fast path).
            // SAFETY: forwarded from the caller.
            unsafe { engine_fast::free(p) }
        }
        _ if p.is_null() => {}
        _ => {
            let saved = get_errno();
            // SAFETY: forwarded from the caller.
            unsafe { select::free(p) };
            set_errno(saved);
        }
    }
}

#[inline(always)]
unsafe fn usable_impl(p: *const u8) -> usize {
    if p.is_null() {
        return 0;
    }
    match select::mode() {
        // SAFETY: forwarded from the caller.
        Mode::Engine => unsafe { engine_fast::usable_size(p) },
        // SAFETY: forwarded from the caller.
        _ => unsafe { select::usable_size(p) },
    }
}

/// The engine called directly (no dynamic dispatch) when it serves the
/// process with no wrapper (`Mode::Engine`).
mod engine_fast {
    use crate::engine::engine as e;

    #[inline(always)]
    pub fn alloc(size: usize, align: usize) -> *mut u8 {
        if align <= super::MIN_ALIGN {
            e::malloc(size)
        } else {
            e::aligned_alloc(align, size)
        }
    }
    #[inline(always)]
    pub fn alloc_zeroed(size: usize, align: usize) -> *mut u8 {
        e::alloc_zeroed(size, align)
    }
    /// # Safety
    /// As `Backend::free`.
    #[inline(always)]
    pub unsafe fn free(p: *mut u8) {
        // SAFETY: forwarded.
        unsafe { e::free(p) }
    }
    /// # Safety
    /// As `Backend::realloc`.
    #[inline(always)]
    pub unsafe fn realloc(p: *mut u8, n: usize) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { e::realloc(p, n) }
    }
    /// # Safety
    /// As `Backend::usable_size`.
    #[inline(always)]
    pub unsafe fn usable_size(p: *const u8) -> usize {
        // SAFETY: forwarded.
        unsafe { e::usable_size(p) }
    }
}

// ------------------------------------------------------------ the C ABI

/// `malloc(3)`.
#[no_mangle]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    // Only the engine's fast path is inline here; everything else is a
    // tail call, so the function saves no registers (it saved three when
    // the other modes' errno bookkeeping shared its frame).
    if let Mode::Engine = select::mode() {
        let p = engine::engine::malloc(size);
        if p.is_null() {
            return enomem();
        }
        return p.cast();
    }
    malloc_other(size)
}

/// `errno = ENOMEM`, return null (cold tail of the allocation entry points).
#[cold]
#[inline(never)]
fn enomem() -> *mut c_void {
    set_errno(libc::ENOMEM);
    ptr::null_mut()
}

/// `malloc` in every mode but the bare engine (strategies, wrappers).
#[inline(never)]
fn malloc_other(size: usize) -> *mut c_void {
    errno_contract(|| alloc(size, MIN_ALIGN))
}

/// `free(3)`.
///
/// # Safety
/// `p` is null or a live pointer from this library.
#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: the caller's contract.
    unsafe { free_impl(p.cast()) }
}

/// `calloc(3)`.
#[no_mangle]
pub extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    let total = match n.checked_mul(size) {
        Some(t) if t <= isize::MAX as usize => t,
        _ => {
            set_errno(libc::ENOMEM);
            return ptr::null_mut();
        }
    };
    errno_contract(|| match select::mode() {
        Mode::Engine => engine_fast::alloc_zeroed(total, MIN_ALIGN),
        _ => select::top().alloc_zeroed(total, MIN_ALIGN),
    })
}

/// `realloc(3)`.
///
/// # Safety
/// `p` is null or a live pointer from this library.
#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if p.is_null() {
        return malloc(size);
    }
    if size == 0 {
        // SAFETY: the caller's contract.
        unsafe { free_impl(p.cast()) };
        return ptr::null_mut();
    }
    if size > isize::MAX as usize {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    }
    if let Mode::Engine = select::mode() {
        // The engine leaves errno alone on success (as for malloc above).
        // SAFETY: the caller's contract.
        let q = unsafe { engine_fast::realloc(p.cast(), size) };
        if q.is_null() {
            set_errno(libc::ENOMEM);
        }
        return q.cast();
    }
    // SAFETY: the caller's contract.
    errno_contract(|| unsafe { select::realloc(p.cast(), size) })
}

/// `reallocarray(3)`.
///
/// # Safety
/// As [`realloc`].
#[no_mangle]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: the caller's contract.
        Some(t) => unsafe { realloc(p, t) },
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// `posix_memalign(3)`: 0, `EINVAL` or `ENOMEM`; `*out` written on success
/// only. Like glibc's, a failure also leaves `errno = ENOMEM`; success and
/// `EINVAL` leave `errno` alone.
///
/// # Safety
/// `out` is valid for a pointer-sized write.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_multiple_of(core::mem::size_of::<*mut c_void>()) || !align.is_power_of_two() {
        return libc::EINVAL;
    }
    let p = errno_contract(|| alloc(size, align.max(MIN_ALIGN)));
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller's contract.
    unsafe { *out = p };
    0
}

/// `aligned_alloc(3)` (C11): a non-power-of-two alignment is `EINVAL`.
#[no_mangle]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    errno_contract(|| alloc(size, align.max(MIN_ALIGN)))
}

/// `memalign(3)`: like glibc, an alignment that is not a power of two is
/// rounded up to one; one above `SIZE_MAX / 2 + 1` is `EINVAL`.
#[no_mangle]
pub extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    let align = match align.max(MIN_ALIGN).checked_next_power_of_two() {
        Some(a) => a,
        None => {
            set_errno(libc::EINVAL);
            return ptr::null_mut();
        }
    };
    errno_contract(|| alloc(size, align))
}

/// `valloc(3)`: page-aligned.
#[no_mangle]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    errno_contract(|| alloc(size, page_size()))
}

/// `pvalloc(3)`: page-aligned, size rounded up to a whole page (one page for
/// 0).
#[no_mangle]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let ps = page_size();
    let rounded = match size.checked_add(ps - 1) {
        Some(s) => (s & !(ps - 1)).max(ps),
        None => {
            set_errno(libc::ENOMEM);
            return ptr::null_mut();
        }
    };
    errno_contract(|| alloc(rounded, ps))
}

/// `malloc_usable_size(3)`: 0 for null.
///
/// # Safety
/// `p` is null or a live pointer from this library.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    // SAFETY: the caller's contract.
    unsafe { usable_impl(p.cast()) }
}

/// A sized free (`free_sized`, `free_aligned_sized`, C++ sized `delete`)
/// whose size cannot be the one the block was allocated with (larger than
/// the block), or whose alignment the pointer does not have: undefined
/// behaviour in C23 and C++, so we abort naming it.
#[cold]
#[inline(never)]
fn sized_mismatch(what: &str, p: *const u8, detail: core::fmt::Arguments<'_>) -> ! {
    engine::fatal!("{what}({p:p}): {detail}")
}

/// Free `p` after checking a caller-supplied size and alignment where that
/// is cheap: a size larger than the block's usable size is a caller bug
/// and aborts (a smaller wrong size cannot be told from slack in the
/// block), as does a pointer without the alignment (`align` 0: none
/// given). `what` names the entry point in the message.
///
/// # Safety
/// As [`free`].
#[inline]
unsafe fn free_checked(what: &str, p: *mut u8, align: usize, size: usize) {
    if !p.is_null() {
        if align.is_power_of_two() && !(p as usize).is_multiple_of(align) {
            sized_mismatch(
                what,
                p,
                format_args!(
                    "pointer is not aligned to {align}: not a block allocated with that alignment"
                ),
            );
        }
        // SAFETY: the caller's contract (a live block).
        let usable = unsafe { usable_impl(p) };
        if size > usable {
            sized_mismatch(
                what,
                p,
                format_args!(
                    "size {size} is larger than the block ({usable} usable bytes): not the size it was allocated with"
                ),
            );
        }
    }
    // SAFETY: the caller's contract.
    unsafe { free_impl(p) }
}

/// `free_sized` (C23). The size is checked against the block where that is
/// cheap: a size larger than the block's usable size is a caller bug and
/// aborts (a smaller wrong size cannot be told from slack in the block).
///
/// # Safety
/// As [`free`].
#[no_mangle]
pub unsafe extern "C" fn free_sized(p: *mut c_void, size: usize) {
    // SAFETY: the caller's contract.
    unsafe { free_checked("free_sized", p.cast(), 0, size) }
}

/// `free_aligned_sized` (C23): size checked as in [`free_sized`], and the
/// pointer must have the alignment it was allocated with.
///
/// # Safety
/// As [`free`].
#[no_mangle]
pub unsafe extern "C" fn free_aligned_sized(p: *mut c_void, align: usize, size: usize) {
    // SAFETY: the caller's contract.
    unsafe { free_checked("free_aligned_sized", p.cast(), align, size) }
}

/// `malloc_trim(3)`: 1 if memory went back to the OS.
#[no_mangle]
pub extern "C" fn malloc_trim(_pad: usize) -> c_int {
    let saved = get_errno();
    let r = select::top().trim() as c_int;
    set_errno(saved);
    r
}

/// `struct mallinfo2`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
pub struct Mallinfo2 {
    arena: usize,
    ordblks: usize,
    smblks: usize,
    hblks: usize,
    hblkhd: usize,
    usmblks: usize,
    fsmblks: usize,
    uordblks: usize,
    fordblks: usize,
    keepcost: usize,
}

/// `struct mallinfo` (deprecated: `int` fields, truncated).
#[repr(C)]
#[derive(Default, Clone, Copy)]
pub struct Mallinfo {
    arena: c_int,
    ordblks: c_int,
    smblks: c_int,
    hblks: c_int,
    hblkhd: c_int,
    usmblks: c_int,
    fsmblks: c_int,
    uordblks: c_int,
    fordblks: c_int,
    keepcost: c_int,
}

/// `mallinfo2(3)`, with glibc's meanings (from the backend's
/// [`HeapInfo`](engine::backend::HeapInfo)): `arena` = bytes held for
/// ordinary blocks, `uordblks` = bytes of those in use, `fordblks` = the
/// rest (`arena == uordblks + fordblks`), `ordblks` = free blocks and
/// spans, `hblks`/`hblkhd` = blocks in a mapping of their own and its
/// bytes, `keepcost` = free bytes `malloc_trim` could return now,
/// `usmblks` = peak mapped (glibc's historical meaning; glibc now
/// reports 0). No fast bins: `smblks` and `fsmblks` are 0.
#[no_mangle]
pub extern "C" fn mallinfo2() -> Mallinfo2 {
    let saved = get_errno();
    let i = select::top().heap_info();
    set_errno(saved);
    Mallinfo2 {
        arena: i.arena,
        ordblks: i.free_chunks,
        smblks: 0,
        hblks: i.huge_blocks,
        hblkhd: i.huge_bytes,
        usmblks: i.peak_mapped,
        fsmblks: 0,
        uordblks: i.in_use,
        fordblks: i.free(),
        keepcost: i.releasable,
    }
}

/// `mallinfo(3)`: [`mallinfo2`] truncated to `int`.
#[no_mangle]
pub extern "C" fn mallinfo() -> Mallinfo {
    let m = mallinfo2();
    let t = |v: usize| v.min(c_int::MAX as usize) as c_int;
    Mallinfo {
        arena: t(m.arena),
        ordblks: t(m.ordblks),
        smblks: t(m.smblks),
        hblks: t(m.hblks),
        hblkhd: t(m.hblkhd),
        usmblks: t(m.usmblks),
        fsmblks: t(m.fsmblks),
        uordblks: t(m.uordblks),
        fordblks: t(m.fordblks),
        keepcost: t(m.keepcost),
    }
}

/// `mallopt(3)`: accepted and ignored (our allocators have no glibc
/// tunables); returns 1 (success) as glibc does for a known parameter.
#[no_mangle]
pub extern "C" fn mallopt(_param: c_int, _value: c_int) -> c_int {
    1
}

/// glibc's `PTHREAD_CANCEL_DISABLE` (`<pthread.h>`).
const PTHREAD_CANCEL_DISABLE: c_int = 1;

extern "C" {
    // Not in the `libc` crate; glibc has exported it since 2.0.
    fn pthread_setcancelstate(state: c_int, oldstate: *mut c_int) -> c_int;
}

/// `malloc_stats(3)`: figures on standard error.
///
/// Not a cancellation point, as in glibc: the report is written with
/// cancellation disabled (`write(2)` is one), so a pending cancel neither
/// cuts the report short nor kills the thread here; the previous state is
/// restored after, and the cancel acts at the next cancellation point.
#[no_mangle]
pub extern "C" fn malloc_stats() {
    let saved = get_errno();
    let mut cancel_state: c_int = 0;
    // SAFETY: `cancel_state` is a valid place for the old state; the call
    // has no other precondition and is not itself a cancellation point.
    let disabled =
        unsafe { pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &mut cancel_state) } == 0;
    // The full statistics report when STRATALLOC_STATS is on, otherwise a
    // one-line summary from the backend's figures; written to stderr as
    // glibc's is, without allocating.
    engine::wrappers::malloc_stats(select::top(), 2);
    if disabled {
        let mut ignored: c_int = 0;
        // SAFETY: as above; restores the state the caller had.
        unsafe { pthread_setcancelstate(cancel_state, &mut ignored) };
    }
    set_errno(saved);
}

/// `malloc_info(3)`: glibc's XML elements with glibc's meanings, for one
/// heap: `<total type="fast">` (none), `type="rest"` (free blocks and their
/// bytes: `ordblks`, `fordblks`), `type="mmap"` (blocks in a mapping of
/// their own: `hblks`, `hblkhd`), `<system type="current">` (the arena),
/// `type="max"` (peak mapped), `<aspace>` (the arena). `options` must be 0.
///
/// # Safety
/// `stream` is an open `FILE *`.
#[no_mangle]
pub unsafe extern "C" fn malloc_info(options: c_int, stream: *mut libc::FILE) -> c_int {
    if options != 0 {
        set_errno(libc::EINVAL);
        return -1;
    }
    let i = select::top().heap_info();
    let mut b = engine::diag::StackBuf::<768>::new();
    use core::fmt::Write;
    let _ = write!(
        b,
        "<malloc version=\"1\">\n<heap nr=\"0\">\n<sizes>\n</sizes>\n\
         <total type=\"fast\" count=\"0\" size=\"0\"/>\n\
         <total type=\"rest\" count=\"{free_n}\" size=\"{free}\"/>\n\
         <system type=\"current\" size=\"{arena}\"/>\n<system type=\"max\" size=\"{peak}\"/>\n\
         <aspace type=\"total\" size=\"{arena}\"/>\n<aspace type=\"mprotect\" size=\"{arena}\"/>\n\
         </heap>\n\
         <total type=\"fast\" count=\"0\" size=\"0\"/>\n\
         <total type=\"rest\" count=\"{free_n}\" size=\"{free}\"/>\n\
         <total type=\"mmap\" count=\"{huge_n}\" size=\"{huge}\"/>\n\
         <system type=\"current\" size=\"{arena}\"/>\n<system type=\"max\" size=\"{peak}\"/>\n\
         <aspace type=\"total\" size=\"{arena}\"/>\n<aspace type=\"mprotect\" size=\"{arena}\"/>\n\
         </malloc>\n\0",
        free_n = i.free_chunks,
        free = i.free(),
        arena = i.arena,
        peak = i.peak_mapped,
        huge_n = i.huge_blocks,
        huge = i.huge_bytes,
    );
    // SAFETY: `b` holds a NUL-terminated string; `stream` is the caller's
    // open FILE (stdio may allocate: we hold no lock).
    if unsafe { libc::fputs(b.as_bytes().as_ptr().cast(), stream) } < 0 {
        return -1;
    }
    0
}

// glibc's internal names, which a few programs and tools call directly.

/// `__libc_malloc`.
#[no_mangle]
pub extern "C" fn __libc_malloc(size: usize) -> *mut c_void {
    malloc(size)
}
/// `__libc_free`.
///
/// # Safety
/// As [`free`].
#[no_mangle]
pub unsafe extern "C" fn __libc_free(p: *mut c_void) {
    // SAFETY: the caller's contract.
    unsafe { free(p) }
}
/// `__libc_calloc`.
#[no_mangle]
pub extern "C" fn __libc_calloc(n: usize, size: usize) -> *mut c_void {
    calloc(n, size)
}
/// `__libc_realloc`.
///
/// # Safety
/// As [`realloc`].
#[no_mangle]
pub unsafe extern "C" fn __libc_realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: the caller's contract.
    unsafe { realloc(p, size) }
}
/// `__libc_memalign`.
#[no_mangle]
pub extern "C" fn __libc_memalign(align: usize, size: usize) -> *mut c_void {
    memalign(align, size)
}
/// `__libc_valloc`.
#[no_mangle]
pub extern "C" fn __libc_valloc(size: usize) -> *mut c_void {
    valloc(size)
}
/// `__libc_pvalloc`.
#[no_mangle]
pub extern "C" fn __libc_pvalloc(size: usize) -> *mut c_void {
    pvalloc(size)
}

// ------------------------------------------------------------ our own API

/// A NUL-terminated copy of a short name, filled on first use (racing
/// writers write the same bytes).
struct NameBuf([AtomicU8; 64]);

impl NameBuf {
    const fn new() -> Self {
        NameBuf([const { AtomicU8::new(0) }; 64])
    }
    fn get(&self, name: &str) -> *const c_char {
        if self.0[0].load(Ordering::Acquire) == 0 {
            let n = name.len().min(63);
            for (i, b) in name.as_bytes()[..n].iter().enumerate().rev() {
                self.0[i].store(*b, Ordering::Release);
            }
        }
        self.0.as_ptr().cast()
    }
}

/// The library's version, e.g. `"0.1.0"`.
#[no_mangle]
pub extern "C" fn stratalloc_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The base allocator: `"engine"` or a strategy name (`"tlsf"`).
#[no_mangle]
pub extern "C" fn stratalloc_strategy_name() -> *const c_char {
    static B: NameBuf = NameBuf::new();
    B.get(select::base_name())
}

/// The whole stack as named by the top backend, e.g. `"stats(tlsf)"`.
#[no_mangle]
pub extern "C" fn stratalloc_backend_name() -> *const c_char {
    static B: NameBuf = NameBuf::new();
    B.get(select::top().name())
}

/// Verify the heap's invariants (a core strategy's whole heap; for the
/// engine, the calling thread's heap and segments). 0 if sound, otherwise
/// -1 after a message on standard error naming the broken invariant.
#[no_mangle]
pub extern "C" fn stratalloc_check() -> c_int {
    match select::options().choice {
        engine::options::Choice::Strategy(_) => {
            if let Err(e) = select::PROCESS.check() {
                engine::eprint_noalloc!("stratalloc: {e}\n");
                return -1;
            }
        }
        engine::options::Choice::Engine => {
            if let Err(e) = engine::engine::check() {
                engine::eprint_noalloc!("stratalloc: engine check failed: {e}\n");
                return -1;
            }
        }
    }
    0
}

/// Initialise when the library is loaded, so the choice (and a message about
/// an unknown strategy) does not wait for the first `malloc`.
extern "C" fn stratalloc_load() {
    select::top();
}

#[used]
#[link_section = ".init_array"]
static INIT_ON_LOAD: extern "C" fn() = stratalloc_load;
