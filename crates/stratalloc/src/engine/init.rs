//! Thread set-up: the static empty heap every thread starts with, the TLS
//! slot that points at a thread's heap, the pool of heap memory, the
//! thread-exit key, and `init`, which gives a thread a heap of its own on
//! its first slow path.

use core::ptr;
use core::sync::atomic::Ordering::*;

use super::heap::*;
use super::segment::{self};
use crate::os;
use core::cell::UnsafeCell;
use core::sync::atomic::AtomicUsize;

use crate::sync::KeyOnce;

/// `Heap` made shareable for the static empty heap (never written).
#[repr(transparent)]
pub struct StaticHeap(Heap);
// SAFETY: the empty heap is never written (every writer first sees
// `id == UNINIT` and switches to a heap of its own), so sharing it is
// sharing read-only data.
unsafe impl Sync for StaticHeap {}

/// The heap every thread starts with (and goes back to at exit): no
/// pages, `id == UNINIT`, direct slots on the empty page. It lives in
/// read-only memory, so a stray write to it faults at once.
pub static EMPTY_HEAP: StaticHeap = StaticHeap(Heap::INIT);

#[inline(always)]
pub(super) fn empty_heap() -> *mut Heap {
    &EMPTY_HEAP as *const StaticHeap as *mut Heap
}

/// This thread's heap: the static empty heap until the thread's first
/// slow path gives it one of its own (see [`init`]).
///
/// Only a pointer lives in TLS; the heap itself (~4.8 KB, 2 KB of it the
/// remote-free batches) is carved from
/// memory the engine maps ([`heap_pool_take`]). On x86-64 Linux the pointer
/// is an initial-exec TLS slot (two loads, no `__tls_get_addr` call in the
/// shared library). That marks the library STATIC_TLS, so `dlopen` must
/// find the library's whole TLS block in glibc's static TLS reserve: with
/// the heap out of TLS that block is a few hundred bytes (it was 2.7 KB
/// when the heap itself was there, and `dlopen` failed; commit 58770e5).
#[inline(always)]
pub fn heap() -> *mut Heap {
    tls::get()
}

#[cfg(all(target_arch = "x86_64", target_os = "linux", not(miri)))]
pub(super) mod tls {
    use super::Heap;

    // One pointer in `.tdata`, initialised to the empty heap (a relocation
    // in the TLS image, applied before any thread's block is copied from
    // it). Global but hidden, so that inlined readers in other crates of
    // the same link resolve it, and invisible outside the final object.
    core::arch::global_asm!(
        ".pushsection .tdata,\"awT\",@progbits",
        ".p2align 3",
        ".globl stratalloc_engine_heap_slot",
        ".hidden stratalloc_engine_heap_slot",
        ".type stratalloc_engine_heap_slot,@object",
        ".size stratalloc_engine_heap_slot,8",
        "stratalloc_engine_heap_slot:",
        ".quad {empty}",
        ".popsection",
        empty = sym super::EMPTY_HEAP,
    );

    #[inline(always)]
    pub fn get() -> *mut Heap {
        let v: *mut Heap;
        // SAFETY: reads this thread's slot (initial-exec TLS: the GOT holds
        // the slot's offset from the thread pointer in %fs).
        unsafe {
            core::arch::asm!(
                "mov {v}, qword ptr [rip + stratalloc_engine_heap_slot@GOTTPOFF]",
                "mov {v}, qword ptr fs:[{v}]",
                v = out(reg) v,
                options(nostack, readonly, preserves_flags),
            );
        }
        v
    }

    #[inline(always)]
    pub fn set(h: *mut Heap) {
        // SAFETY: writes this thread's slot only.
        unsafe {
            core::arch::asm!(
                "mov {t}, qword ptr [rip + stratalloc_engine_heap_slot@GOTTPOFF]",
                "mov qword ptr fs:[{t}], {h}",
                t = out(reg) _,
                h = in(reg) h,
                options(nostack, preserves_flags),
            );
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux", not(miri))))]
pub(super) mod tls {
    use super::Heap;
    use core::cell::Cell;

    thread_local! {
        static SLOT: Cell<*mut Heap> = const {
            Cell::new(&super::EMPTY_HEAP as *const super::StaticHeap as *mut Heap)
        };
    }

    #[inline(always)]
    pub fn get() -> *mut Heap {
        SLOT.with(|s| s.get())
    }

    #[inline(always)]
    pub fn set(h: *mut Heap) {
        SLOT.with(|s| s.set(h))
    }
}

// ------------------------------------------------------------- heap pool

use crate::tuning::HEAP_CHUNK;

/// Heaps given back at thread exit, linked through their `segs` field
/// (under [`segment::GLOBAL`]; a fork child forgets it if a gone thread held
/// the lock, see [`fork_child`]).
struct HeapPool(UnsafeCell<*mut Heap>);
// SAFETY: only touched under `segment::GLOBAL`.
unsafe impl Sync for HeapPool {}
static HEAP_POOL: HeapPool = HeapPool(UnsafeCell::new(ptr::null_mut()));

/// Push `h` (not in use by any thread) on the pool. Caller holds GLOBAL.
pub(super) unsafe fn pool_push_locked(h: *mut Heap) {
    // SAFETY: GLOBAL is held; `h` is free heap memory.
    unsafe {
        (*h).segs = (*HEAP_POOL.0.get()).cast();
        *HEAP_POOL.0.get() = h;
    }
}

/// Memory for one heap (uninitialised contents), or null when the OS has
/// none: a heap given back by an exited thread, else a slot of a fresh
/// chunk (the rest of the chunk goes to the pool).
pub(super) fn heap_pool_take() -> *mut Heap {
    segment::GLOBAL.lock();
    // SAFETY: GLOBAL is held.
    let h = unsafe { *HEAP_POOL.0.get() };
    if !h.is_null() {
        // SAFETY: as above; pooled heaps link through `segs`.
        unsafe { *HEAP_POOL.0.get() = (*h).segs.cast() };
        segment::GLOBAL.unlock();
        return h;
    }
    segment::GLOBAL.unlock();
    let chunk = os::map(HEAP_CHUNK);
    if chunk.is_null() {
        return ptr::null_mut();
    }
    let size = HEAP_SLOT;
    let n = HEAP_CHUNK / size;
    segment::GLOBAL.lock();
    for i in 1..n {
        // SAFETY: slot `i` lies inside the fresh chunk (aligned to 64).
        unsafe { pool_push_locked(chunk.add(i * size).cast()) };
    }
    segment::GLOBAL.unlock();
    chunk.cast()
}

/// Give back the memory of an exited thread's heap.
pub(super) unsafe fn heap_pool_give(h: *mut Heap) {
    segment::GLOBAL.lock();
    // SAFETY: GLOBAL is held; nobody uses `h` any more.
    unsafe { pool_push_locked(h) };
    segment::GLOBAL.unlock();
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

// ------------------------------------------------------ thread-exit hook

/// The key whose destructor abandons an exiting thread's heap.
static KEY: KeyOnce = KeyOnce::new();

unsafe extern "C" fn on_thread_exit(_arg: *mut libc::c_void) {
    let h = heap();
    // SAFETY: our own heap, on our own thread.
    unsafe { abandon(h) };
}

/// The engine's part of a fork child's repair (see `Engine::fork_child`):
/// a key creation a gone thread started is forgotten, and if a gone thread
/// held [`segment::GLOBAL`], the heap pool is forgotten with the rest of
/// what the lock guards.
pub fn fork_child(global_held_by_gone: bool) {
    KEY.fork_child();
    if global_held_by_gone {
        segment::GLOBAL.lock();
        // SAFETY: GLOBAL is held.
        unsafe { *HEAP_POOL.0.get() = ptr::null_mut() };
        segment::GLOBAL.unlock();
    }
}

/// Give the calling thread a heap of its own (it has the empty heap):
/// null if no memory for it could be mapped.
#[cold]
#[inline(never)]
pub(super) unsafe fn init() -> *mut Heap {
    // Before this thread's first page: every free-list link is encoded
    // with the secret.
    super::page::init_secret();
    let h = heap_pool_take();
    if h.is_null() {
        return h;
    }
    // SAFETY: fresh heap memory, ours alone (but for its pending stack's
    // head, after the `Heap`: not written here).
    unsafe {
        h.write(Heap::INIT);
        (*h).slot = h;
        (*h).id = NEXT_ID.fetch_add(1, Relaxed);
        (*h).secret = super::page::secret();
        (*h).trim_seen = TRIM_EPOCH.load(Relaxed);
    }
    tls::set(h);
    // Segments pushed on this heap's stack after its last thread took it
    // for the last time go on to their owners.
    // SAFETY: our heap.
    unsafe { collect_pending(&mut *h) };
    // pthread_setspecific may call malloc (calloc for high keys): the heap
    // is already in place, so that call is served normally.
    if let Some(k) = KEY.get(on_thread_exit) {
        // SAFETY: a valid key; a non-null value makes the destructor run.
        unsafe { libc::pthread_setspecific(k, 1 as *const libc::c_void) };
    }
    h
}
