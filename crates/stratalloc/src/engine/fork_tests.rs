//! The engine's fork hooks: nothing is held across `fork`, and the child
//! repairs what a thread gone in it left. Each case runs in a forked child
//! under `alarm`, so a hang ends as SIGALRM and the test fails; the child
//! calls only the engine and async-signal-safe libc.

use core::sync::atomic::{AtomicBool, Ordering::SeqCst};

use super::{free, malloc, segment, trim, ENGINE};
use crate::backend::Backend;

/// Run `f` in a forked child with a 5 s alarm, after the engine's child
/// hook (what the atfork child handler does: other tests' threads may hold
/// the lock at the fork); true if it exited 0.
fn in_child(f: impl FnOnce() -> bool) -> bool {
    // SAFETY: the child runs `f` (engine calls and plain syscalls), then
    // _exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: plain calls in the child.
        unsafe {
            libc::alarm(5);
            ENGINE.fork_child();
            libc::_exit(if f() { 0 } else { 1 });
        }
    }
    assert!(pid > 0);
    let mut st = 0;
    // SAFETY: our child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
    libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0
}

/// Work in the child that needs the global lock: a huge block goes through
/// the huge cache, and trim drains the caches.
fn use_global() -> bool {
    let p = malloc(5 << 20);
    if p.is_null() {
        return false;
    }
    // SAFETY: a live block of 5 MiB.
    unsafe {
        p.add((5 << 20) - 1).write(1);
        free(p);
    }
    trim();
    true
}

/// A signal handler that forks while its thread holds the global lock:
/// `fork_prepare` must return (taking the lock there would spin forever).
#[test]
fn fork_prepare_with_the_global_lock_held_by_this_thread_returns() {
    assert!(in_child(|| {
        segment::GLOBAL.lock();
        assert!(ENGINE.fork_prepare());
        ENGINE.fork_parent();
        segment::GLOBAL.unlock();
        use_global()
    }));
}

/// In the child of such a fork the lock stays with the interrupted
/// section, which releases it once the handler returns.
#[test]
fn child_leaves_a_lock_this_thread_holds_to_it() {
    assert!(in_child(|| {
        segment::GLOBAL.lock();
        // The child of a fork made here (this process is that child's
        // stand-in: one thread, the lock held by it).
        ENGINE.fork_child();
        let kept = segment::GLOBAL.held_by_me();
        segment::GLOBAL.unlock();
        kept && use_global()
    }));
}

/// A fork while another thread holds the global lock: the child frees it
/// and starts the caches empty instead of waiting forever.
#[test]
fn child_repairs_a_lock_a_gone_thread_held() {
    static HOLDING: AtomicBool = AtomicBool::new(false);
    static RELEASE: AtomicBool = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            segment::GLOBAL.lock();
            HOLDING.store(true, SeqCst);
            while !RELEASE.load(SeqCst) {
                std::thread::yield_now();
            }
            segment::GLOBAL.unlock();
        });
        while !HOLDING.load(SeqCst) {
            std::thread::yield_now();
        }
        let ok = in_child(use_global);
        RELEASE.store(true, SeqCst);
        assert!(ok, "the child hung or failed");
    });
}
