//! Engine defects that gave silent wrong answers or hangs: each test runs
//! the misuse or the failing system call in a forked child (with a time
//! limit, so a hang fails instead of stalling) and checks the engine
//! either stays correct or aborts with a message naming the pointer.

use stratalloc::__private::engine;

mod common;
use common::{churn, expect_abort, expect_success};

/// Run `body(arg)` on a new raw pthread (no std allocation) and join it.
fn on_thread(body: extern "C" fn(*mut libc::c_void) -> *mut libc::c_void, arg: usize) {
    let mut t: libc::pthread_t = 0;
    // SAFETY: valid out-pointer and entry point; `arg` outlives the thread.
    unsafe {
        assert_eq!(
            libc::pthread_create(&mut t, core::ptr::null(), body, arg as *mut libc::c_void),
            0
        );
        libc::pthread_join(t, core::ptr::null_mut());
    }
}

extern "C" fn free_arg(arg: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: the test hands over a live block (or, deliberately, a freed one).
    unsafe { engine::free(arg.cast()) };
    core::ptr::null_mut()
}

extern "C" fn free_arg_twice(arg: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: deliberately wrong: the second free of a block.
    unsafe {
        engine::free(arg.cast());
        engine::free(arg.cast());
    }
    core::ptr::null_mut()
}

/// After a purge that the kernel refused (`madvise` fails on locked
/// memory), the slices still hold old bytes: a later calloc must clear
/// them.
#[test]
fn calloc_is_zero_when_the_purge_failed() {
    expect_success(|| {
        // SAFETY: plain syscall; locks every page of this child.
        if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } != 0 {
            stratalloc::eprint_noalloc!(
                "mlockall refused: the purge cannot be made to fail here\n"
            );
            return 0;
        }
        let n = 600 << 10;
        let keep = engine::malloc(16); // keeps the segment mapped
        let p = engine::malloc(n);
        // SAFETY: a fresh block of `n` bytes, then freed.
        unsafe {
            core::ptr::write_bytes(p, 0xab, n);
            engine::free(p);
        }
        engine::trim(); // madvise(MADV_DONTNEED) fails with EINVAL
        let q = engine::calloc(1, n);
        // SAFETY: a live block of `n` bytes.
        let dirty = unsafe { core::slice::from_raw_parts(q, n) }
            .iter()
            .filter(|&&b| b != 0)
            .count();
        stratalloc::eprint_noalloc!("same span {}, non-zero bytes {}\n", p == q, dirty);
        // SAFETY: live blocks.
        unsafe {
            engine::free(q);
            engine::free(keep);
        }
        (dirty != 0) as i32
    });
}

/// A block freed twice by a thread that does not own it: the second push
/// used to make the thread-free list a cycle and the owner spun forever.
#[test]
fn remote_double_free_aborts() {
    expect_abort(
        || {
            let p = engine::malloc(40);
            let q = engine::malloc(40);
            on_thread(free_arg_twice, p as usize);
            churn(40, 10_000);
            core::hint::black_box(q);
            0
        },
        "double free",
    );
}

/// A block freed by another thread, then by its owner.
#[test]
fn remote_then_local_double_free_aborts() {
    expect_abort(
        || {
            let p = engine::malloc(40);
            let q = engine::malloc(40);
            on_thread(free_arg, p as usize);
            // SAFETY: deliberately wrong: `p` was freed by the other thread.
            unsafe { engine::free(p) };
            churn(40, 10_000);
            core::hint::black_box(q);
            0
        },
        "double free",
    );
}

/// A block freed by its owner, then by another thread.
#[test]
fn local_then_remote_double_free_aborts() {
    expect_abort(
        || {
            let p = engine::malloc(40);
            let q = engine::malloc(40);
            // SAFETY: a live block.
            unsafe { engine::free(p) };
            on_thread(free_arg, p as usize);
            churn(40, 10_000);
            core::hint::black_box(q);
            0
        },
        "double free",
    );
}

/// A block-aligned pointer past the part of a page carved so far: it was
/// accepted, and the block was later handed out twice.
#[test]
fn free_past_the_carved_part_of_a_page_aborts() {
    expect_abort(
        || {
            let p = engine::malloc(16);
            let info = engine::page_info(p).expect("page of a live block");
            if info.capacity >= info.reserved {
                return 2;
            }
            let bad = info.start + info.capacity as usize * info.block_size;
            // SAFETY: deliberately wrong: a block boundary never handed out.
            unsafe { engine::free(bad as *mut u8) };
            0
        },
        "free of",
    );
}

/// The same pointer freed by another thread (the remote path).
#[test]
fn remote_free_past_the_carved_part_of_a_page_aborts() {
    expect_abort(
        || {
            let p = engine::malloc(16);
            let info = engine::page_info(p).expect("page of a live block");
            if info.capacity >= info.reserved {
                return 2;
            }
            let bad = info.start + info.capacity as usize * info.block_size;
            on_thread(free_arg, bad);
            churn(16, 100_000);
            0
        },
        "free of",
    );
}

/// A page whose span went back to its segment keeps no fast-path limit:
/// a stale pointer into it is refused before anything is written.
#[test]
fn free_into_a_released_span_aborts() {
    expect_abort(
        || {
            let keep = engine::malloc(1 << 20); // keeps the segment
            let p = engine::malloc(3000);
            // SAFETY: a live block, freed; the empty page goes back on trim.
            unsafe { engine::free(p) };
            engine::trim();
            if engine::page_info(p).is_some() {
                return 2;
            }
            // SAFETY: deliberately wrong: a stale pointer.
            unsafe { engine::free(p) };
            core::hint::black_box(keep);
            0
        },
        "free of",
    );
}

/// An aligned allocation flags its page (frees take the generic path);
/// the flag must go when the page empties, not live as long as the span.
#[test]
fn an_empty_page_loses_its_aligned_flag() {
    expect_success(|| {
        let mut ptrs = [core::ptr::null_mut::<u8>(); 8];
        for p in ptrs.iter_mut() {
            *p = engine::aligned_alloc(32, 48);
        }
        let Some(info) = engine::page_info(ptrs[7]) else {
            return 2;
        };
        if !info.aligned {
            return 3; // the test no longer makes an aligned page
        }
        for &p in &ptrs {
            // SAFETY: live blocks.
            unsafe { engine::free(p) };
        }
        match engine::page_info(ptrs[7]) {
            Some(i) if i.aligned => 4,
            _ => 0,
        }
    });
}

/// A write after free that stores a plain pointer in a freed block's link
/// word: malloc used to hand that address out. Links are encoded and
/// checked, so the damage is reported when the block is taken.
#[test]
fn a_forged_free_list_link_is_reported_not_followed() {
    expect_abort(
        || {
            static TARGET: [u64; 16] = [0; 16];
            let a = engine::malloc(64);
            let keep = engine::malloc(64);
            // SAFETY: deliberately wrong: a write after free over the link.
            unsafe {
                engine::free(a);
                (a as *mut usize).write(TARGET.as_ptr() as usize);
            }
            for _ in 0..10_000 {
                if core::ptr::eq(engine::malloc(64), TARGET.as_ptr().cast()) {
                    return 1; // the forged address was handed out
                }
            }
            core::hint::black_box(keep);
            0
        },
        "damaged link",
    );
}

/// Size of the blocks an exited thread leaves on a page that another
/// thread then adopts (a class the other tests here do not use).
const ADOPTED: usize = 3000;

/// The block an exited thread left behind (see `leave_on_page`).
static LEFT: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Leave two live blocks of `ADOPTED` bytes and exit: the segment is
/// abandoned with live blocks; the first is in `LEFT`.
extern "C" fn leave_on_page(_: *mut libc::c_void) -> *mut libc::c_void {
    let p = engine::malloc(ADOPTED);
    core::hint::black_box(engine::malloc(ADOPTED));
    LEFT.store(p as usize, core::sync::atomic::Ordering::SeqCst);
    core::ptr::null_mut()
}

/// On a new thread: adopt the page `leave_on_page` left (the first malloc
/// of its class must come from it, or exit 7), then run `then` with the
/// left block while this thread owns the page.
fn adopt_then(then: extern "C" fn(*mut libc::c_void) -> *mut libc::c_void) {
    on_thread(leave_on_page, 0);
    on_thread(then, 0);
}

/// The page of `LEFT`'s block was adopted by the calling thread: its first
/// malloc of the class comes from that page.
fn adopted_left() -> *mut u8 {
    let left = LEFT.load(core::sync::atomic::Ordering::SeqCst) as *mut u8;
    let mine = engine::malloc(ADOPTED);
    let same = |p: *const u8| engine::page_info(p).map(|i| i.start);
    if same(mine) != same(left) {
        stratalloc::eprint_noalloc!("the page of {:p} was not adopted\n", left);
        // SAFETY: plain syscall.
        unsafe { libc::_exit(7) };
    }
    left
}

extern "C" fn adopt_and_free_twice_locally(_: *mut libc::c_void) -> *mut libc::c_void {
    let left = adopted_left();
    // SAFETY: deliberately wrong: the second free, by the new owner.
    unsafe {
        engine::free(left);
        engine::free(left);
    }
    churn(ADOPTED, 100);
    core::ptr::null_mut()
}

extern "C" fn adopt_and_have_it_freed_twice_remotely(_: *mut libc::c_void) -> *mut libc::c_void {
    let left = adopted_left();
    // Another thread frees the left block twice while we own its page.
    on_thread(free_arg_twice, left as usize);
    churn(ADOPTED, 100);
    core::ptr::null_mut()
}

extern "C" fn adopt_and_free_after_a_remote_free(_: *mut libc::c_void) -> *mut libc::c_void {
    let left = adopted_left();
    on_thread(free_arg, left as usize);
    // SAFETY: deliberately wrong: freed already by the other thread.
    unsafe { engine::free(left) };
    churn(ADOPTED, 100);
    core::ptr::null_mut()
}

/// A block left by an exited thread, on a page another thread adopted,
/// freed twice by the adopter.
#[test]
fn local_double_free_on_an_adopted_page_aborts() {
    expect_abort(
        || {
            adopt_then(adopt_and_free_twice_locally);
            0
        },
        "double free",
    );
}

/// The same block freed twice by a third thread while the adopter owns
/// its page (the cross-thread check on adopted pages).
#[test]
fn remote_double_free_on_an_adopted_page_aborts() {
    expect_abort(
        || {
            adopt_then(adopt_and_have_it_freed_twice_remotely);
            0
        },
        "double free",
    );
}

/// Freed by a third thread, then by the adopter.
#[test]
fn remote_then_local_double_free_on_an_adopted_page_aborts() {
    expect_abort(
        || {
            adopt_then(adopt_and_free_after_a_remote_free);
            0
        },
        "double free",
    );
}
