//! Engine: segments of exited threads that still hold live blocks are
//! adopted by new threads and their free space reused (no timing: the
//! figures are segment counts and mapped bytes).

use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use stratalloc::__private::{engine, tuning};

mod common;

/// The tests here measure process-wide figures: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run `body` on `n` raw pthreads at once (no std allocation per thread)
/// and join them.
fn run_threads(n: usize, body: extern "C" fn(*mut libc::c_void) -> *mut libc::c_void) {
    let mut ts = [0 as libc::pthread_t; 16];
    assert!(n <= ts.len());
    for t in ts.iter_mut().take(n) {
        // SAFETY: valid out-pointer and entry point.
        let rc = unsafe { libc::pthread_create(t, core::ptr::null(), body, core::ptr::null_mut()) };
        assert_eq!(rc, 0);
    }
    for &t in ts.iter().take(n) {
        // SAFETY: a thread created above, joined once.
        unsafe { libc::pthread_join(t, core::ptr::null_mut()) };
    }
}

const SLOTS: usize = 1000;
static SLOT: [AtomicPtr<u8>; SLOTS] = [const { AtomicPtr::new(core::ptr::null_mut()) }; SLOTS];
static PICK: AtomicUsize = AtomicUsize::new(1);

fn pick() -> usize {
    let r = PICK.fetch_add(0x9e37_79b9, Ordering::Relaxed);
    (r.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 16) % SLOTS
}

/// One short-lived thread: a 128-byte block swapped into a random slot;
/// the block found there (usually left by an exited thread) is checked
/// and freed.
extern "C" fn leave_one(_: *mut libc::c_void) -> *mut libc::c_void {
    let p = engine::malloc(128);
    assert!(!p.is_null());
    // SAFETY: a fresh block of 128 bytes.
    unsafe { core::ptr::write_bytes(p, 0x5a, 128) };
    let q = SLOT[pick()].swap(p, Ordering::AcqRel);
    if !q.is_null() {
        // SAFETY: a live block that left its slot to us alone.
        unsafe {
            assert_eq!(*q.add(127), 0x5a, "block {q:p} lost its contents");
            engine::free(q);
        }
    }
    core::ptr::null_mut()
}

fn free_slots() {
    for s in &SLOT {
        // SAFETY: null or a live block nobody else holds.
        unsafe { engine::free(s.swap(core::ptr::null_mut(), Ordering::AcqRel)) };
    }
}

/// mimalloc-bench's mleak shape: threads, 10 at a time, each leave a block
/// that outlives them; about a thousand are live at any time, spread over
/// the segments of exited threads. Those segments must be adopted and
/// their free slices reused, so the segment count stays bounded by the
/// live blocks' needs (a few segments), not by the number of threads.
#[test]
fn live_abandoned_segments_are_adopted_and_reused() {
    let _serial = serial();
    for _ in 0..100 {
        run_threads(10, leave_one);
    }
    let base = engine::engine_stats();
    let mut most = base.segments;
    for _ in 0..400 {
        run_threads(10, leave_one);
        most = most.max(engine::engine_stats().segments);
    }
    let after = engine::engine_stats();
    free_slots();
    eprintln!(
        "segments: {} after 1000 threads, at most {most} over 4000 more; {after:?}",
        base.segments
    );
    assert!(
        most <= 16,
        "segments grew to {most} over 4000 threads: {base:?} -> {after:?}"
    );
}

/// A size class no other test here uses, so the adopting thread finds
/// the exited thread's page, not another.
const X: usize = 2000;
/// Blocks left behind; a page of class `X` holds 32, so `3 N + 1` fit.
const N: usize = 10;

/// A thread leaves `N` live blocks of class `X` behind (its segment is
/// abandoned); a new thread's first malloc of that class adopts the
/// segment and is served from the same page; a third thread frees the
/// exited thread's blocks while the adopter owns the page (remote frees
/// into an adopted page); the adopter's next mallocs get every one of
/// those blocks back, on the same page (no fresh page), contents of live
/// blocks intact.
#[test]
fn remote_frees_into_an_adopted_page_are_reused() {
    let _serial = serial();
    let left: Vec<usize> = std::thread::spawn(|| {
        (0..N)
            .map(|i| {
                let p = engine::malloc(X);
                // SAFETY: a fresh block of X bytes.
                unsafe { core::ptr::write_bytes(p, i as u8, X) };
                p as usize
            })
            .collect()
    })
    .join()
    .unwrap();
    let page = engine::page_info(left[0] as *const u8).unwrap().start;
    let reused = std::thread::spawn(move || {
        let first = engine::malloc(X);
        let got = engine::page_info(first).unwrap().start;
        assert_eq!(
            got, page,
            "the new thread did not adopt the page left behind"
        );
        let pages = engine::local_pages();
        // Remote frees of the exited thread's blocks, into our page.
        let to_free = left.clone();
        std::thread::spawn(move || {
            for (i, &p) in to_free.iter().enumerate() {
                // SAFETY: live blocks of the exited thread, freed once.
                unsafe {
                    assert_eq!(*(p as *const u8).add(X - 1), i as u8);
                    engine::free(p as *mut u8);
                }
            }
        })
        .join()
        .unwrap();
        let again: Vec<usize> = (0..2 * N).map(|_| engine::malloc(X) as usize).collect();
        let back = again.iter().filter(|p| left.contains(p)).count();
        engine::check().unwrap();
        assert!(engine::local_pages() <= pages, "a fresh page was set up");
        for p in again.into_iter().chain([first as usize]) {
            // SAFETY: live blocks of this thread.
            unsafe { engine::free(p as *mut u8) };
        }
        back
    })
    .join()
    .unwrap();
    assert_eq!(
        reused, N,
        "the remotely freed blocks were not handed out again"
    );
}

/// Threads of [`a_long_queue_of_pages_to_extend_is_not_walked_whole`]
/// that have filled their page.
static FILLED: AtomicUsize = AtomicUsize::new(0);
const FILLERS: usize = 16;

/// Hand out every block carved so far on this thread's page of 1 KiB
/// blocks (the page has more to carve, none free), then wait for the
/// other fillers (so no one adopts another's segment) and exit, leaving
/// the blocks live.
extern "C" fn fill_a_page(_: *mut libc::c_void) -> *mut libc::c_void {
    let first = engine::malloc(1024);
    let info = || engine::page_info(first).unwrap();
    for _ in 0..64 {
        if info().used >= info().capacity {
            break;
        }
        core::hint::black_box(engine::malloc(1024));
    }
    assert!(info().used == info().capacity && info().capacity < info().reserved);
    FILLED.fetch_add(1, Ordering::SeqCst);
    while FILLED.load(Ordering::SeqCst) < FILLERS {
        // SAFETY: plain syscall.
        unsafe { libc::sched_yield() };
    }
    core::ptr::null_mut()
}

/// A class queue of 16 adopted pages with blocks left to carve and none
/// free: the slow path looks at [`tuning::PAGE_VISITS`] of them at most
/// and extends one (it walked all 16 before), no fresh page set up.
#[test]
fn a_long_queue_of_pages_to_extend_is_not_walked_whole() {
    let _serial = serial();
    common::expect_success(|| {
        run_threads(FILLERS, fill_a_page);
        engine::trim(); // adopts every abandoned segment
        let (pages, before) = (engine::local_pages(), engine::queue_visits());
        core::hint::black_box(engine::malloc(1024));
        let visited = engine::queue_visits() - before;
        let fresh = engine::local_pages() - pages;
        stratalloc::eprint_noalloc!(
            "{} pages adopted; the slow path visited {} pages, set up {} fresh ones\n",
            pages,
            visited,
            fresh
        );
        (pages < FILLERS || visited > tuning::PAGE_VISITS as u64 || fresh != 0) as i32
    });
}
