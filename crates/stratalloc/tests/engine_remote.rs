//! Remote frees (a block freed by a thread that does not own its page):
//! the double-free checks across threads while the first freer is still
//! alive, and how freed blocks reach the owner (in batches, never
//! stranded: see `engine/remote.rs`).

use core::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use stratalloc::__private::{engine, tuning};

mod common;
use common::{churn, expect_abort};

/// A step counter the raw threads below and the test's thread take turns on.
static STEP: AtomicUsize = AtomicUsize::new(0);
/// The block handed to the helper threads.
static BLOCK: AtomicUsize = AtomicUsize::new(0);

fn wait_for(step: usize) {
    while STEP.load(SeqCst) < step {
        // SAFETY: plain syscall.
        unsafe { libc::sched_yield() };
    }
}

/// Start `body` on a raw pthread (no std allocation); not joined.
fn spawn(body: extern "C" fn(*mut libc::c_void) -> *mut libc::c_void) -> libc::pthread_t {
    let mut t: libc::pthread_t = 0;
    // SAFETY: valid out-pointer and entry point.
    unsafe {
        assert_eq!(
            libc::pthread_create(&mut t, core::ptr::null(), body, core::ptr::null_mut()),
            0
        );
    }
    t
}

fn join(t: libc::pthread_t) {
    // SAFETY: a thread we started and have not joined.
    unsafe { libc::pthread_join(t, core::ptr::null_mut()) };
}

/// Give this thread a heap of its own (a thread that never allocated
/// frees with no batch).
fn have_a_heap() {
    // SAFETY: a live block, freed by its owner.
    unsafe { engine::free(engine::malloc(16)) };
}

/// Free `BLOCK`, say so (step 1), and stay alive until step 2.
extern "C" fn free_and_linger(_: *mut libc::c_void) -> *mut libc::c_void {
    have_a_heap();
    // SAFETY: the test hands over a live block.
    unsafe { engine::free(BLOCK.load(SeqCst) as *mut u8) };
    STEP.store(1, SeqCst);
    wait_for(2);
    core::ptr::null_mut()
}

/// Free `BLOCK` once step 1 is reached (it was freed already).
extern "C" fn free_again(_: *mut libc::c_void) -> *mut libc::c_void {
    have_a_heap();
    wait_for(1);
    // SAFETY: deliberately wrong: a second free by a second thread.
    unsafe { engine::free(BLOCK.load(SeqCst) as *mut u8) };
    STEP.store(2, SeqCst);
    core::ptr::null_mut()
}

/// Freed by another thread that is still running (so whatever it keeps of
/// its frees is not flushed by its exit), then by the owner.
#[test]
fn owner_free_after_a_living_threads_free_aborts() {
    expect_abort(
        || {
            let p = engine::malloc(40);
            let q = engine::malloc(40);
            BLOCK.store(p as usize, SeqCst);
            let t = spawn(free_and_linger);
            wait_for(1);
            // SAFETY: deliberately wrong: `p` was freed by the other thread.
            unsafe { engine::free(p) };
            churn(40, 10_000);
            STEP.store(2, SeqCst);
            join(t);
            core::hint::black_box(q);
            0
        },
        "double free",
    );
}

/// Freed by one thread that is still running, then by a third thread.
#[test]
fn two_threads_freeing_one_block_abort() {
    expect_abort(
        || {
            let p = engine::malloc(40);
            let q = engine::malloc(40);
            BLOCK.store(p as usize, SeqCst);
            let a = spawn(free_and_linger);
            let b = spawn(free_again);
            join(b);
            join(a);
            churn(40, 10_000);
            core::hint::black_box(q);
            0
        },
        "double free",
    );
}

/// Freed by the owner, then by a thread that stays alive afterwards.
#[test]
fn remote_free_after_the_owners_free_aborts() {
    expect_abort(
        || {
            let p = engine::malloc(40);
            let q = engine::malloc(40);
            BLOCK.store(p as usize, SeqCst);
            // SAFETY: a live block.
            unsafe { engine::free(p) };
            let t = spawn(free_and_linger);
            wait_for(1);
            churn(40, 10_000);
            STEP.store(2, SeqCst);
            join(t);
            core::hint::black_box(q);
            0
        },
        "double free",
    );
}

/// The blocks `batch_freer` frees, and how many.
static BLOCKS: [AtomicUsize; 64] = [const { AtomicUsize::new(0) }; 64];

/// Free `BLOCKS[from..to]`.
fn free_blocks(from: usize, to: usize) {
    for b in &BLOCKS[from..to] {
        // SAFETY: live blocks handed over by the test.
        unsafe { engine::free(b.load(SeqCst) as *mut u8) };
    }
}

/// Free a batch less one (step 1), then the last block of the batch
/// (step 3), then three more, and exit (its exit publishes those).
extern "C" fn batch_freer(_: *mut libc::c_void) -> *mut libc::c_void {
    let batch = tuning::REMOTE_BATCH as usize;
    have_a_heap();
    free_blocks(0, batch - 1);
    STEP.store(1, SeqCst);
    wait_for(2);
    free_blocks(batch - 1, batch);
    STEP.store(3, SeqCst);
    wait_for(4);
    free_blocks(batch, batch + 3);
    core::ptr::null_mut()
}

/// Blocks handed out on the page of `p`, once the owner collected what
/// other threads pushed there (`trim` collects every queued page).
fn used_after_collect(p: *mut u8) -> u32 {
    engine::trim();
    engine::page_info(p).map_or(u32::MAX, |i| i.used)
}

/// Remote frees of a thread that stays alive reach the owner a whole
/// batch at a time (nothing before the batch is full), and whatever is
/// left in a batch reaches it when the freeing thread exits.
#[test]
fn remote_frees_reach_the_owner_in_batches_and_at_exit() {
    common::expect_success(|| {
        let batch = tuning::REMOTE_BATCH as usize;
        assert!(batch + 3 <= BLOCKS.len());
        let first = engine::malloc(48);
        let start = |p: *mut u8| engine::page_info(p).map(|i| i.start);
        for b in &BLOCKS {
            let p = engine::malloc(48);
            if start(p) != start(first) {
                stratalloc::eprint_noalloc!("the blocks are not on one page\n");
                return 2;
            }
            b.store(p as usize, SeqCst);
        }
        let all = used_after_collect(first);
        let t = spawn(batch_freer);
        wait_for(1);
        let short = used_after_collect(first);
        STEP.store(2, SeqCst);
        wait_for(3);
        let full = used_after_collect(first);
        STEP.store(4, SeqCst);
        join(t);
        let exited = used_after_collect(first);
        stratalloc::eprint_noalloc!(
            "used: {} at first, {} with a batch less one freed, {} with a batch, {} after exit\n",
            all,
            short,
            full,
            exited
        );
        let want = [all, all, all - batch as u32, all - batch as u32 - 3];
        ([all, short, full, exited] != want) as i32
    });
}

/// Free `BLOCK` (a live block) and exit.
extern "C" fn free_block(_: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: the test hands over a live block.
    unsafe { engine::free(BLOCK.load(SeqCst) as *mut u8) };
    core::ptr::null_mut()
}

/// A large block placed where a freed block of an earlier page began
/// (slices kept dirty: the purge fails under `mlockall`) held that
/// block's free key, unwritten by the program: its free by another
/// thread was taken for a double free.
#[test]
fn a_large_block_over_an_old_free_block_is_freed_remotely() {
    common::expect_success(|| {
        // SAFETY: plain syscall; locks every page of this child.
        if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } != 0 {
            stratalloc::eprint_noalloc!("mlockall refused: the purge cannot be made to fail\n");
            return 0;
        }
        let keep = engine::malloc(16);
        let p = engine::malloc(40_000);
        let start = engine::page_info(p).map(|i| i.start);
        // SAFETY: a live block, freed once; its key word is now set.
        unsafe { engine::free(p) };
        engine::trim(); // the page goes; madvise fails, the slices stay dirty
        let q = engine::malloc(600 << 10);
        if engine::page_info(q).map(|i| i.start) != start {
            stratalloc::eprint_noalloc!("the large block is elsewhere: nothing to test\n");
            return 0;
        }
        BLOCK.store(q as usize, SeqCst);
        join(spawn(free_block));
        core::hint::black_box(keep);
        0
    });
}

/// Free three blocks (step 1), then allocate once on a slow path (a class
/// this thread never used) when told (step 3), and exit at step 4.
extern "C" fn free_then_allocate(_: *mut libc::c_void) -> *mut libc::c_void {
    have_a_heap();
    free_blocks(0, 3);
    STEP.store(1, SeqCst);
    wait_for(2);
    core::hint::black_box(engine::malloc(3000));
    STEP.store(3, SeqCst);
    wait_for(4);
    core::ptr::null_mut()
}

/// A `trim()` on one thread reaches a thread that holds a batch of remote
/// frees at that thread's next slow path: the batch is pushed there, not
/// kept until its 64th slow path.
#[test]
fn a_trim_elsewhere_makes_a_thread_push_its_batches() {
    common::expect_success(|| {
        let first = engine::malloc(48);
        for b in &BLOCKS {
            b.store(engine::malloc(48) as usize, SeqCst);
        }
        let all = used_after_collect(first);
        let t = spawn(free_then_allocate);
        wait_for(1);
        let held = used_after_collect(first); // trims: the epoch moves on
        STEP.store(2, SeqCst);
        wait_for(3);
        let pushed = used_after_collect(first);
        STEP.store(4, SeqCst);
        join(t);
        stratalloc::eprint_noalloc!(
            "used: {} at first, {} while held, {} after the other thread's slow path\n",
            all,
            held,
            pushed
        );
        ([held, pushed] != [all, all - 3]) as i32
    });
}

/// A remote free into one floating page of a heap with many segments:
/// the owner's collection takes that segment off its pending stack and
/// visits it alone (it walked all 40 before), and the freed block is
/// reused at once.
#[test]
fn collecting_remote_frees_visits_only_the_segment_freed_into() {
    common::expect_success(|| {
        const SEGS: usize = 40;
        // The largest non-huge block: two never fit in one segment (63
        // slices), so each of these floats in a segment of its own.
        let size = engine::LARGE_MAX;
        let mut blocks = [0usize; SEGS];
        for b in blocks.iter_mut() {
            *b = engine::malloc(size) as usize;
        }
        let seg = |p: usize| p / (2 * engine::LARGE_MAX);
        for (i, a) in blocks.iter().enumerate() {
            if *a == 0 || blocks[..i].iter().any(|b| seg(*b) == seg(*a)) {
                stratalloc::eprint_noalloc!("the blocks do not have a segment each\n");
                return 2;
            }
        }
        let idle = engine::collect_remote();
        BLOCK.store(blocks[17], SeqCst);
        join(spawn(free_block));
        let visited = engine::collect_remote();
        let again = engine::malloc(size) as usize;
        stratalloc::eprint_noalloc!(
            "collect visited {} segments with nothing freed, {} after one remote free; block reused: {}\n",
            idle,
            visited,
            again == blocks[17]
        );
        (idle != 0 || visited != 1 || again != blocks[17]) as i32
    });
}
