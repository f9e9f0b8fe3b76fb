//! The C API called as C calls it, on the host. The heap is one global, so
//! the tests take turns (`serial`) and each starts with a `heap_init*`.

extern crate std;

use std::alloc::{alloc, dealloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::vec::Vec;

use super::*;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Test memory, 64 KiB-aligned, freed on drop.
struct Arena {
    ptr: *mut u8,
    layout: Layout,
}

impl Arena {
    fn new(len: usize) -> Self {
        let layout = Layout::from_size_align(len, 1 << 16).unwrap();
        // SAFETY: non-zero size.
        let ptr = unsafe { alloc(layout) };
        assert!(!ptr.is_null());
        Arena { ptr, layout }
    }
    fn base(&self) -> *mut c_void {
        self.ptr.cast()
    }
    fn len(&self) -> usize {
        self.layout.size()
    }
    fn contains(&self, p: *mut c_void, n: usize) -> bool {
        let (p, b) = (p as usize, self.ptr as usize);
        p >= b && p + n <= b + self.len()
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

fn stats() -> HeapStats {
    let mut s = HeapStats::default();
    // SAFETY: a writable struct.
    unsafe { heap_stats(&mut s) };
    s
}

fn strategies() -> Vec<*const c_char> {
    (0..)
        .map(|i| heap_strategy_name(i))
        .take_while(|p| !p.is_null())
        .collect()
}

/// Allocate, fill, grow, shrink and free through every entry point, with
/// the fill bytes checked, over every strategy.
#[test]
fn every_strategy_serves_the_c_api() {
    let _s = serial();
    let names = strategies();
    assert_eq!(names.len(), Strategy::ALL.len());
    for &name in &names {
        let arena = Arena::new(1 << 20);
        // SAFETY: the arena is the heap's until the next init.
        let r = unsafe { heap_init_with(name, arena.base(), arena.len()) };
        assert_eq!(r, HEAP_OK);
        let mut live: Vec<(*mut c_void, usize, u8)> = Vec::new();
        for i in 0..200usize {
            let n = 1 + (i * 37) % 700;
            let p = match i % 4 {
                0 => heap_alloc(n),
                1 => heap_calloc(n, 1),
                2 => heap_aligned_alloc(64, n),
                _ => {
                    // SAFETY: NULL: a plain allocation.
                    unsafe { heap_realloc(ptr::null_mut(), n) }
                }
            };
            assert!(!p.is_null() && arena.contains(p, n), "{i}");
            assert_eq!(p as usize % if i % 4 == 2 { 64 } else { 16 }, 0);
            if i % 4 == 1 {
                // SAFETY: `n` fresh bytes.
                assert!(unsafe { core::slice::from_raw_parts(p as *const u8, n) }
                    .iter()
                    .all(|&b| b == 0));
            }
            // SAFETY: live block.
            assert!(unsafe { heap_usable_size(p) } >= n);
            let fill = i as u8;
            // SAFETY: `n` bytes of a live block.
            unsafe { ptr::write_bytes(p.cast::<u8>(), fill, n) };
            live.push((p, n, fill));
            if i % 3 == 0 {
                let (q, m, f) = live.swap_remove(i * 7 % live.len());
                let grown = m * 2 + 5;
                // SAFETY: live block.
                let r = unsafe { heap_realloc(q, grown) };
                assert!(!r.is_null());
                // SAFETY: the old bytes moved with the block.
                let kept = unsafe { core::slice::from_raw_parts(r as *const u8, m) };
                assert!(kept.iter().all(|&b| b == f), "realloc lost the contents");
                // SAFETY: `grown` bytes of a live block.
                unsafe { ptr::write_bytes(r.cast::<u8>(), f, grown) };
                live.push((r, grown, f));
            }
            if i % 5 == 4 {
                let (q, _, _) = live.swap_remove(0);
                // SAFETY: live block.
                unsafe { heap_free(q) };
            }
            assert_eq!(heap_check(), HEAP_OK);
        }
        for (k, (p, n, f)) in live.drain(..).enumerate() {
            // SAFETY: a live block of `n` bytes.
            let bytes = unsafe { core::slice::from_raw_parts(p as *const u8, n) };
            assert!(bytes.iter().all(|&b| b == f), "a block was overwritten");
            // SAFETY: live block of `n` bytes (the size asked for last).
            unsafe {
                if k % 2 == 0 {
                    heap_free(p)
                } else {
                    heap_free_sized(p, n)
                }
            };
        }
        assert_eq!(heap_check(), HEAP_OK);
        let s = stats();
        assert_eq!((s.in_use, s.allocs, s.frees), (0, s.frees, s.allocs));
        assert!(s.allocs >= 200);
        // SAFETY: `name` is a NUL-terminated static.
        let name = unsafe { core::ffi::CStr::from_ptr(name) };
        assert_eq!(
            &s.strategy[..name.to_bytes().len() + 1],
            name.to_bytes_with_nul()
        );
    }
}

#[test]
fn bad_input_gets_the_c_answer() {
    let _s = serial();
    let arena = Arena::new(1 << 16);
    // SAFETY: every pointer below is null, the arena (handed over) or a live block.
    unsafe {
        assert_eq!(heap_init(ptr::null_mut(), 4096), HEAP_EINVAL);
        assert_eq!(heap_init(arena.base(), 8), HEAP_ETOOSMALL);
        assert_eq!(heap_init(arena.base(), usize::MAX), HEAP_EINVAL);
        assert_eq!(
            heap_init_with(ptr::null(), arena.base(), arena.len()),
            HEAP_EINVAL
        );
        assert_eq!(
            heap_init_with(c"tlsf ".as_ptr(), arena.base(), arena.len()),
            HEAP_EINVAL
        );
        assert_eq!(heap_init(arena.base(), arena.len()), HEAP_OK);
        assert_eq!(heap_add_region(arena.base(), arena.len()), HEAP_EOVERLAP);
        assert_eq!(heap_add_region(ptr::null_mut(), 4096), HEAP_EINVAL);
    }
    assert!(heap_alloc(usize::MAX).is_null());
    assert!(heap_alloc(isize::MAX as usize).is_null());
    assert!(heap_alloc(1 << 17).is_null(), "more than the region");
    assert!(heap_calloc(usize::MAX / 2, 3).is_null(), "calloc overflow");
    assert!(heap_calloc(1 << 16, 1 << 16).is_null());
    for align in [0, 3, 48, usize::MAX] {
        assert!(heap_aligned_alloc(align, 16).is_null(), "align {align}");
    }
    let p = heap_alloc(100);
    assert!(!p.is_null());
    // SAFETY: a live block; null pointers.
    unsafe {
        ptr::write_bytes(p.cast::<u8>(), 7, 100);
        assert!(heap_realloc(p, usize::MAX).is_null());
        assert!(heap_realloc(p, 1 << 17).is_null());
        assert!(core::slice::from_raw_parts(p as *const u8, 100)
            .iter()
            .all(|&b| b == 7));
        assert_eq!(heap_usable_size(ptr::null_mut()), 0);
        assert_eq!(
            heap_usable_size(p.cast::<u8>().add(16).cast()),
            0,
            "interior pointer"
        );
        heap_free(ptr::null_mut());
        heap_stats(ptr::null_mut());
        heap_walk(None, ptr::null_mut());
        assert!(heap_realloc(p, 0).is_null(), "realloc(p, 0) frees p");
    }
    assert_eq!(stats().in_use, 0);
    assert!(stats().failed > 0);
    assert_eq!(heap_check(), HEAP_OK);
}

#[test]
fn a_second_region_is_used_when_the_first_is_full() {
    let _s = serial();
    let (a, b) = (Arena::new(1 << 16), Arena::new(1 << 16));
    // SAFETY: each arena handed over once.
    unsafe {
        assert_eq!(
            heap_init_with(c"best-fit".as_ptr(), a.base(), a.len()),
            HEAP_OK
        );
        assert_eq!(heap_add_region(b.base(), b.len()), HEAP_OK);
    }
    let ps: Vec<_> = (0..100).map(|_| heap_alloc(1000)).collect();
    assert!(ps.iter().all(|p| !p.is_null()));
    assert!(ps.iter().any(|&p| a.contains(p, 1000)) && ps.iter().any(|&p| b.contains(p, 1000)));
    assert_eq!(stats().region_bytes, 2 << 16);
    for p in ps {
        // SAFETY: live block.
        unsafe { heap_free(p) };
    }
    assert_eq!(heap_check(), HEAP_OK);
}

#[test]
fn the_walk_covers_every_region_and_every_live_block() {
    let _s = serial();
    for name in strategies() {
        walk_over(name);
    }
}

fn walk_over(name: *const c_char) {
    let arena = Arena::new(1 << 18);
    // SAFETY: the arena, handed over.
    let r = unsafe { heap_init_with(name, arena.base(), arena.len()) };
    assert_eq!(r, HEAP_OK);
    let ps: Vec<_> = (1..20).map(|i| heap_alloc(i * 24)).collect();
    #[derive(Default)]
    struct Seen {
        bytes: usize,
        used: Vec<usize>,
        next: usize,
        in_order: bool,
    }
    unsafe extern "C" fn visit(b: *const HeapBlock, ctx: *mut c_void) {
        // SAFETY: the walk hands a live block and our context.
        let (b, seen) = unsafe { (&*b, &mut *ctx.cast::<Seen>()) };
        seen.in_order &= b.addr >= seen.next;
        seen.next = b.addr + b.size;
        seen.bytes += b.size;
        if b.state == 0 {
            seen.used.push(b.payload);
        }
    }
    let mut seen = Seen {
        in_order: true,
        ..Seen::default()
    };
    // SAFETY: `visit` does not call the heap; `seen` outlives the walk.
    unsafe { heap_walk(Some(visit), (&mut seen as *mut Seen).cast()) };
    // SAFETY: a NUL-terminated static.
    let name = unsafe { core::ffi::CStr::from_ptr(name) };
    assert!(seen.in_order, "{name:?}");
    assert!(
        seen.bytes <= arena.len() && seen.bytes > arena.len() - 256,
        "{name:?}: {}",
        seen.bytes
    );
    let mut want: Vec<usize> = ps.iter().map(|&p| p as usize).collect();
    want.sort_unstable();
    assert_eq!(seen.used, want, "{name:?}");
}

static LOCKS: AtomicUsize = AtomicUsize::new(0);
static UNLOCKS: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn count_lock(ctx: *mut c_void) -> usize {
    assert_eq!(ctx as usize, 0x1234);
    LOCKS.fetch_add(1, Ordering::SeqCst);
    0xabc
}

unsafe extern "C" fn count_unlock(ctx: *mut c_void, saved: usize) {
    assert_eq!((ctx as usize, saved), (0x1234, 0xabc));
    UNLOCKS.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn lock_hooks_wrap_every_call_in_pairs() {
    let _s = serial();
    let arena = Arena::new(1 << 16);
    let ctx = 0x1234 as *mut c_void;
    assert_eq!(
        heap_set_lock_hooks(Some(count_lock), None, ctx),
        HEAP_EINVAL
    );
    assert_eq!(
        heap_set_lock_hooks(Some(count_lock), Some(count_unlock), ctx),
        HEAP_OK
    );
    let before = LOCKS.load(Ordering::SeqCst);
    // SAFETY: the arena, handed over; then a live block.
    unsafe {
        assert_eq!(heap_init(arena.base(), arena.len()), HEAP_OK);
        let p = heap_alloc(10);
        let p = heap_realloc(p, 1000);
        assert!(heap_usable_size(p) >= 1000);
        heap_free(p);
    }
    assert_eq!(heap_check(), HEAP_OK);
    assert_eq!(heap_set_lock_hooks(None, None, ptr::null_mut()), HEAP_OK);
    let after = LOCKS.load(Ordering::SeqCst);
    assert_eq!(
        after - before,
        6,
        "init, alloc, realloc, usable_size, free, check"
    );
    assert_eq!(UNLOCKS.load(Ordering::SeqCst), after);
    let _ = heap_alloc(10);
    assert_eq!(LOCKS.load(Ordering::SeqCst), after, "hooks removed");
}
