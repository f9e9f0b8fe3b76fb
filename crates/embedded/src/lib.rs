//! # stratalloc-embedded: the region heaps as a C library for kernels
//!
//! `libstratalloc_embedded.a` gives a kernel or firmware written in C one
//! global heap over memory it hands in, with any strategy of
//! `stratalloc-core`, and nothing else: `no_std`, no libc, no OS. The header
//! is `include/stratalloc_embedded.h`.
//!
//! ```c
//! extern char __heap_start[], __heap_end[];          /* from the linker script */
//! heap_init(__heap_start, __heap_end - __heap_start); /* TLSF; 0 on success */
//! void *p = heap_alloc(100);
//! p = heap_realloc(p, 200);
//! heap_free(p);
//! ```
//!
//! ## The rules
//!
//! - **Bad input** gets the answer of the C function it mirrors: `NULL` for
//!   an impossible size, an overflowing `calloc`, a non-power-of-two
//!   alignment or an exhausted heap; `heap_free(NULL)` does nothing;
//!   `heap_usable_size` of `NULL` or of a pointer the heap does not own is 0;
//!   `heap_init*` and `heap_add_region` return a negative `HEAP_E*` code and
//!   change nothing for a null base, a wrapping span or an unknown strategy.
//! - **Errors the program made** (freeing a pointer twice or one the heap
//!   never gave out, reallocating one) and **damage the heap finds** in its
//!   own metadata (a write after free over a free block's links, an overrun
//!   over a boundary tag) are fatal: the error handler the kernel set with
//!   `heap_set_error_handler` is called with the address and a message; with
//!   none set, the message goes through the write hook (`heap_set_write`).
//!   Then the CPU halts on its undefined-instruction trap (`udf`, `unimp`,
//!   `ud2`), so the kernel's fault handler sees it. Nothing is written
//!   through a damaged word.
//! - **Locking**: every call holds a spin lock (`stratalloc_core::Locked`),
//!   so several cores may share the heap. A kernel whose interrupt handlers
//!   allocate sets `heap_set_lock_hooks(lock, unlock, ctx)`: `lock` runs
//!   before the spin lock is taken (disable interrupts, return the old
//!   state), `unlock` after it is released (restore it). Without them, an
//!   interrupt that allocates while the interrupted code holds the lock
//!   spins forever.
//! - Callbacks (`heap_walk`'s, the error handler) run with the heap locked:
//!   they must not call the heap.
//! - `heap_init` and `heap_init_with` start a new heap: blocks of the old one
//!   are forgotten. On failure the heap is left empty (no regions).
//!
//! ## Targets
//!
//! Built for `thumbv7m-none-eabi`, `thumbv7em-none-eabihf`,
//! `riscv32imac-unknown-none-elf` and `aarch64-unknown-none` by
//! `scripts/test-cross.sh`; a C kernel for the Cortex-M3 board `mps2-an385`
//! links it and runs under `qemu-system-arm` (`scripts/test-embedded.sh`, see
//! `demo/cortex-m3/`). The unit tests run on the host.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

mod hooks;
mod names;

use core::ffi::{c_char, c_int, c_void};
use core::ptr::{self, NonNull};

use stratalloc_core::{
    AnyHeap, BlockState, Locked, Region, RegionError, RegionHeap, Strategy, MIN_ALIGN,
};

pub use hooks::{ErrorFn, LockFn, UnlockFn, WriteFn};

/// Success.
pub const HEAP_OK: c_int = 0;
/// A null base, a span that wraps, or an unknown strategy name.
pub const HEAP_EINVAL: c_int = -1;
/// The region cannot hold the heap's metadata and one block.
pub const HEAP_ETOOSMALL: c_int = -2;
/// The region overlaps one the heap holds already.
pub const HEAP_EOVERLAP: c_int = -3;
/// The strategy takes no more regions.
pub const HEAP_EFULL: c_int = -4;
/// `heap_check` found a broken invariant.
pub const HEAP_ECORRUPT: c_int = -5;

/// The one heap. TLSF until `heap_init_with` picks another strategy.
static HEAP: Locked<AnyHeap> = Locked::new(AnyHeap::new(Strategy::Tlsf));

/// Run `f` on the heap: the kernel's lock hook, then the spin lock.
fn with_heap<R>(f: impl FnOnce(&mut AnyHeap) -> R) -> R {
    let _hooks = hooks::HookGuard::enter();
    let mut heap = HEAP.lock();
    f(&mut heap)
}

fn region_code(r: Result<(), RegionError>) -> c_int {
    match r {
        Ok(()) => HEAP_OK,
        Err(RegionError::TooSmall { .. }) => HEAP_ETOOSMALL,
        Err(RegionError::Overlaps) => HEAP_EOVERLAP,
        Err(RegionError::Full) => HEAP_EFULL,
    }
}

/// A fresh heap of strategy `s` over `base..base + size`.
///
/// # Safety
/// As for [`heap_init`].
unsafe fn init(s: Strategy, base: *mut c_void, size: usize) -> c_int {
    // SAFETY: the caller hands the span over (`heap_init`'s contract).
    let Some(region) = (unsafe { Region::from_raw_parts(base.cast(), size) }) else {
        return HEAP_EINVAL;
    };
    stratalloc_core::corruption::set_handler(hooks::corruption);
    with_heap(|h| {
        *h = AnyHeap::new(s);
        // SAFETY: as above; the new heap holds no other region.
        region_code(unsafe { h.add_region(region) })
    })
}

/// `int heap_init(void *base, size_t size)`: a new TLSF heap over
/// `base..base + size`. 0 on success, else a negative `HEAP_E*` code.
///
/// # Safety
/// The span is RAM nothing else uses for as long as the heap lives.
#[no_mangle]
pub unsafe extern "C" fn heap_init(base: *mut c_void, size: usize) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { init(Strategy::Tlsf, base, size) }
}

/// `int heap_init_with(const char *strategy, void *base, size_t size)`: a
/// new heap of the strategy named (`"tlsf"`, `"buddy"`, `"best-fit"`, …;
/// see `heap_strategy_name`). `HEAP_EINVAL` for a null or unknown name.
///
/// # Safety
/// As for [`heap_init`]; `strategy` is null or a C string.
#[no_mangle]
pub unsafe extern "C" fn heap_init_with(
    strategy: *const c_char,
    base: *mut c_void,
    size: usize,
) -> c_int {
    // SAFETY: the caller's contract.
    match unsafe { names::parse(strategy) } {
        // SAFETY: the caller's contract.
        Some(s) => unsafe { init(s, base, size) },
        None => HEAP_EINVAL,
    }
}

/// `int heap_add_region(void *base, size_t size)`: give the heap more
/// memory. 0 on success, else a negative `HEAP_E*` code.
///
/// # Safety
/// As for [`heap_init`].
#[no_mangle]
pub unsafe extern "C" fn heap_add_region(base: *mut c_void, size: usize) -> c_int {
    // SAFETY: the caller hands the span over.
    let Some(region) = (unsafe { Region::from_raw_parts(base.cast(), size) }) else {
        return HEAP_EINVAL;
    };
    stratalloc_core::corruption::set_handler(hooks::corruption);
    // SAFETY: as above.
    with_heap(|h| region_code(unsafe { h.add_region(region) }))
}

/// `const char *heap_strategy_name(size_t i)`: the `i`-th strategy's name,
/// NULL past the last (to try every strategy).
#[no_mangle]
pub extern "C" fn heap_strategy_name(i: usize) -> *const c_char {
    names::nth(i)
}

fn out(p: Option<NonNull<u8>>) -> *mut c_void {
    p.map_or(ptr::null_mut(), |p| p.as_ptr().cast())
}

/// `void *heap_alloc(size_t size)`: like `malloc`; 16-aligned.
#[no_mangle]
pub extern "C" fn heap_alloc(size: usize) -> *mut c_void {
    out(with_heap(|h| h.allocate(size, MIN_ALIGN)))
}

/// `void *heap_calloc(size_t n, size_t size)`: like `calloc`: zeroed, NULL
/// if `n * size` overflows.
#[no_mangle]
pub extern "C" fn heap_calloc(n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        return ptr::null_mut();
    };
    let p = heap_alloc(total);
    if !p.is_null() {
        // SAFETY: a fresh block of at least `total` bytes.
        unsafe { ptr::write_bytes(p.cast::<u8>(), 0, total) };
    }
    p
}

/// `void *heap_aligned_alloc(size_t align, size_t size)`: like
/// `aligned_alloc`; NULL unless `align` is a power of two.
#[no_mangle]
pub extern "C" fn heap_aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        return ptr::null_mut();
    }
    out(with_heap(|h| h.allocate(size, align.max(MIN_ALIGN))))
}

/// A pointer the heap refused: fatal, named (with the lock released).
#[cold]
#[inline(never)]
fn bad_pointer(func: &str, e: stratalloc_core::HeapError) -> ! {
    hooks::fatal(e.ptr, format_args!("stratalloc: {func}: {e}"))
}

/// `void heap_free(void *p)`: like `free`; NULL does nothing. A pointer the
/// heap did not hand out, or one already freed, is fatal.
///
/// # Safety
/// `p` is null or was returned by this heap (the heap checks the rest).
#[no_mangle]
pub unsafe extern "C" fn heap_free(p: *mut c_void) {
    let Some(p) = NonNull::new(p.cast::<u8>()) else {
        return;
    };
    // SAFETY: the heap checks the pointer before it trusts it.
    if let Err(e) = with_heap(|h| unsafe { h.deallocate(p) }) {
        bad_pointer("heap_free", e)
    }
}

/// `void heap_free_sized(void *p, size_t size)`: like C23's `free_sized`:
/// [`heap_free`] of a block the caller allocated (or last reallocated)
/// with `size` bytes. The heap checks the size against the block's own and
/// a wrong one is fatal, naming the pointer (as damage is).
///
/// # Safety
/// As for [`heap_free`].
#[no_mangle]
pub unsafe extern "C" fn heap_free_sized(p: *mut c_void, size: usize) {
    let Some(p) = NonNull::new(p.cast::<u8>()) else {
        return;
    };
    // SAFETY: the heap checks the pointer and the size before it trusts
    // them.
    if let Err(e) = with_heap(|h| unsafe { h.deallocate_sized(p, size) }) {
        bad_pointer("heap_free_sized", e)
    }
}

/// `void *heap_realloc(void *p, size_t size)`: like `realloc`: NULL `p`
/// allocates; size 0 frees `p` and returns NULL; on failure NULL, and `p`
/// is left as it was. A pointer the heap did not hand out is fatal.
///
/// # Safety
/// As for [`heap_free`].
#[no_mangle]
pub unsafe extern "C" fn heap_realloc(p: *mut c_void, size: usize) -> *mut c_void {
    let Some(old) = NonNull::new(p.cast::<u8>()) else {
        return heap_alloc(size);
    };
    if size == 0 {
        // SAFETY: the caller's contract.
        unsafe { heap_free(p) };
        return ptr::null_mut();
    }
    let r = with_heap(|h| {
        // Check the pointer first: `reallocate` trusts it.
        // SAFETY: `usable_size` checks the pointer before reading anything.
        unsafe { h.usable_size(old) }?;
        // SAFETY: `old` is a live block of this heap (just checked).
        Ok(unsafe { h.reallocate(old, size, MIN_ALIGN) })
    });
    match r {
        Ok(new) => out(new),
        Err(e) => bad_pointer("heap_realloc", e),
    }
}

/// `size_t heap_usable_size(void *p)`: like `malloc_usable_size`: the bytes
/// usable at `p`; 0 for NULL or a pointer the heap does not own.
///
/// # Safety
/// `p` is null or any pointer (the heap checks it before reading).
#[no_mangle]
pub unsafe extern "C" fn heap_usable_size(p: *mut c_void) -> usize {
    let Some(p) = NonNull::new(p.cast::<u8>()) else {
        return 0;
    };
    // SAFETY: `usable_size` checks the pointer before reading anything.
    with_heap(|h| unsafe { h.usable_size(p) }).unwrap_or(0)
}

/// `int heap_check(void)`: 0 if every invariant of the heap holds; else
/// `HEAP_ECORRUPT`, and the first broken one is written through the write
/// hook. O(blocks).
#[no_mangle]
pub extern "C" fn heap_check() -> c_int {
    match with_heap(|h| h.check()) {
        Ok(()) => HEAP_OK,
        Err(e) => {
            let m = hooks::Msg::new(format_args!("stratalloc: {e}\n"));
            hooks::write(m.as_bytes());
            HEAP_ECORRUPT
        }
    }
}

/// `struct heap_stats` (the header's layout).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct HeapStats {
    /// Bytes of every region as handed over.
    pub region_bytes: usize,
    /// Bytes in live blocks (sum of usable sizes).
    pub in_use: usize,
    /// Bytes available in free blocks.
    pub free: usize,
    /// The largest block `heap_alloc` could return now.
    pub largest_free: usize,
    /// Free blocks.
    pub free_blocks: usize,
    /// Highest `in_use` ever.
    pub peak_in_use: usize,
    /// Successful allocations.
    pub allocs: u64,
    /// Successful frees.
    pub frees: u64,
    /// Failed allocations.
    pub failed: u64,
    /// The strategy's name, NUL-terminated.
    pub strategy: [u8; names::NAME_BYTES],
}

/// `void heap_stats(struct heap_stats *out)`: a snapshot; NULL does nothing.
///
/// # Safety
/// `out` is null or points to a writable `struct heap_stats`.
#[no_mangle]
pub unsafe extern "C" fn heap_stats(out: *mut HeapStats) {
    if out.is_null() {
        return;
    }
    let (s, strategy) = with_heap(|h| (h.stats(), h.strategy()));
    let st = HeapStats {
        region_bytes: s.region_bytes,
        in_use: s.in_use,
        free: s.free,
        largest_free: s.largest_free,
        free_blocks: s.free_blocks,
        peak_in_use: s.peak_in_use,
        allocs: s.allocs,
        frees: s.frees,
        failed: s.failed,
        strategy: names::c_name(strategy),
    };
    // SAFETY: the caller's contract; `write_unaligned` because C may hand
    // any pointer it thinks is a `struct heap_stats`.
    unsafe { out.write_unaligned(st) }
}

/// `struct heap_block`: one span of a walk.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HeapBlock {
    /// The span's first byte.
    pub addr: usize,
    /// Its length, metadata included.
    pub size: usize,
    /// For a used block, the pointer `heap_alloc` returned; else 0.
    pub payload: usize,
    /// `HEAP_BLOCK_USED` (0), `HEAP_BLOCK_FREE` (1) or `HEAP_BLOCK_OVERHEAD` (2).
    pub state: c_int,
}

/// `void (*)(const struct heap_block *block, void *ctx)`.
pub type WalkFn = unsafe extern "C" fn(block: *const HeapBlock, ctx: *mut c_void);

/// `void heap_walk(heap_walk_fn fn, void *ctx)`: call `f` for every span of
/// every region in address order (what a heap map is drawn from), with the
/// heap locked. NULL `f` does nothing.
///
/// # Safety
/// `f` is null or a function that does not call the heap.
#[no_mangle]
pub unsafe extern "C" fn heap_walk(f: Option<WalkFn>, ctx: *mut c_void) {
    let Some(f) = f else { return };
    with_heap(|h| {
        h.walk(&mut |b| {
            let block = HeapBlock {
                addr: b.addr,
                size: b.size,
                payload: b.payload,
                state: match b.state {
                    BlockState::Used => 0,
                    BlockState::Free => 1,
                    BlockState::Overhead => 2,
                },
            };
            // SAFETY: the caller's contract; `block` lives for the call.
            unsafe { f(&block, ctx) }
        })
    })
}

/// `void heap_set_write(void (*write)(const char *buf, size_t len))`: where
/// messages go (not NUL-terminated; NULL: nowhere).
#[no_mangle]
pub extern "C" fn heap_set_write(f: Option<WriteFn>) {
    hooks::set_write(f);
}

/// `void heap_set_error_handler(void (*on_error)(void *ptr, const char
/// *msg))`: called on a fatal error instead of writing the message; the
/// CPU halts if it returns. NULL restores the default.
#[no_mangle]
pub extern "C" fn heap_set_error_handler(f: Option<ErrorFn>) {
    hooks::set_error_handler(f);
}

/// `int heap_set_lock_hooks(uintptr_t (*lock)(void *), void (*unlock)(void
/// *, uintptr_t), void *ctx)`: run `lock(ctx)` before each call takes the
/// spin lock and `unlock(ctx, saved)` after it is released. Both NULL
/// removes them; `HEAP_EINVAL`, and nothing changed, for one without the other.
#[no_mangle]
pub extern "C" fn heap_set_lock_hooks(
    lock: Option<LockFn>,
    unlock: Option<UnlockFn>,
    ctx: *mut c_void,
) -> c_int {
    if hooks::set_lock(lock, unlock, ctx) {
        HEAP_OK
    } else {
        HEAP_EINVAL
    }
}

#[cfg(test)]
mod tests;
