//! Locks and once-only set-up that know their owner, for code `malloc`
//! reaches, and what each does across `fork`: one module for the engine,
//! the process heaps and the wrappers (`crates/core` keeps its own `no_std`
//! lock for `Locked<H>`).
//!
//! | type | waits by | used by |
//! |---|---|---|
//! | [`RawLock`] | spinning, then `sched_yield` | the engine's global lock |
//! | [`SpinLock<T>`] | a [`RawLock`] around a value, with a guard | the wrappers' tables |
//! | [`FutexLock`] | a short spin, then sleeping on a futex | the process heap |
//! | [`KeyOnce`] | spinning, then `sched_yield` | the thread-exit keys of the engine and the stats wrapper |
//!
//! Each lock's word names its owner, so fork handlers can tell "held by the
//! forking thread" (a fork from a signal handler that interrupted it inside
//! the critical section: taking the lock would deadlock, so prepare skips
//! it and the parent and child handlers leave it; the section finishes
//! after the handler returns) from "held by another thread" (prepare waits
//! for it, see below): `RawLock::fork_prepare` / `fork_release`,
//! `SpinLock::raw_try_lock` / `raw_unlock`, `FutexLock::fork_prepare` /
//! `fork_parent` / `fork_child`.
//!
//! **A prepare handler waits for a busy lock only while no other thread is
//! preparing a fork** ([`fork_enter`] counts them). Outside a fork every
//! lock is a leaf (no code here waits for a lock while holding another: a
//! wrapper releases its own lock before it calls the allocator below it),
//! so the holder of a busy lock is waiting for nothing and will release
//! it. The one holder that can be stuck is a thread a signal interrupted
//! inside the lock, whose handler forks: it then waits for stdio's list
//! lock, which the waiting prepare holds (`tests/c/fork_signal.c`,
//! `race`). Such a thread is itself preparing a fork, so as soon as a
//! second one is counted, a prepare handler that finds a lock busy gives
//! back everything it took ([`take_all`]) and its caller retries with
//! nothing held (`select`, "fork").
//!
//! Glossary:
//! - **owner**: the holding thread's `pthread_self()` (never 0 or 1), or
//!   for [`FutexLock`] its [`thread_id`] (a 31-bit number, to fit the futex
//!   word); the forking thread keeps both in the child.
//! - **gone**: in a fork child, a thread of the parent that does not exist
//!   there; what it held stays held forever unless the child resets it.
//!
//! After `fork` only the forking thread runs in the child, so a lock word
//! there says one of three things ([`Holder`]): free; held by the forking
//! thread itself (a `fork` from a signal handler that interrupted it inside
//! the critical section, which finishes when the handler returns, in parent
//! and child alike); or held by a gone thread, which leaves the state the
//! lock guards possibly half-updated: [`RawLock::reset_in_child`] frees the
//! lock and the caller must not trust that state.
//!
//! None of them allocates, panics or unwinds. Waiting is bounded by how long
//! the other thread holds the lock (a few instructions to a system call),
//! not by anything this code does.

mod futex;
mod key;
mod raw;

pub use futex::{thread_id, FutexLock};
pub use key::KeyOnce;
pub use raw::{raw_lock_all, raw_try_lock_all, raw_unlock_all, RawLock, SpinGuard, SpinLock};

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// The calling thread's id: `pthread_self()` (the address of its
/// descriptor; never 0, and aligned, so never 1).
#[inline]
pub fn this_thread() -> usize {
    // SAFETY: pthread_self has no preconditions and cannot fail.
    unsafe { libc::pthread_self() as usize }
}

/// Spins (each a `spin_loop` hint) before a waiter yields the CPU.
pub(crate) const SPINS: u32 = 64;

/// Wait a little for a busy word: spin first, then yield (on a machine with
/// fewer cores than threads the holder needs our time slice).
#[inline]
pub(crate) fn backoff(round: &mut u32) {
    if *round < SPINS {
        *round += 1;
        core::hint::spin_loop();
    } else {
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
    }
}

/// Who held a lock when the parent forked, as seen in the child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// Nobody: the state it guards is whole.
    Free,
    /// The forking thread itself, in a critical section a signal handler
    /// interrupted: left held; the section finishes after the handler.
    Me,
    /// A thread that is gone in the child: the lock is now free, and the
    /// state it guards may be half-updated.
    Gone,
}

/// The "skipped because held by me" flag of a lock held across `fork`.
pub(crate) struct ForkSkip(AtomicBool);

impl ForkSkip {
    pub(crate) const fn new() -> Self {
        ForkSkip(AtomicBool::new(false))
    }

    /// `fork_prepare`: take the lock with `try_lock` (which never waits)
    /// unless the calling thread holds it already (`mine`), which is
    /// remembered. A busy lock is tried again until it is taken, unless
    /// another thread is preparing a fork too (see the module docs): then
    /// `false`, with nothing taken and nothing remembered.
    #[inline]
    pub(crate) fn prepare(&self, mine: bool, try_lock: impl Fn() -> bool) -> bool {
        if mine {
            self.0.store(true, Ordering::Relaxed);
            return true;
        }
        let mut round = 0;
        loop {
            if try_lock() {
                return true;
            }
            if FORKING.load(Ordering::SeqCst) > 1 {
                return false;
            }
            backoff(&mut round);
        }
    }

    /// `fork_parent` / `fork_child`: release with `release` what
    /// [`prepare`](Self::prepare) took, or leave a lock it skipped.
    #[inline]
    pub(crate) fn finish(&self, release: impl FnOnce()) {
        if !self.0.swap(false, Ordering::Relaxed) {
            release();
        }
    }
}

/// Threads inside a multi-threaded `fork`'s prepare handler.
static FORKING: AtomicU32 = AtomicU32::new(0);

/// The calling thread starts preparing a fork (`select`'s prepare handler,
/// before it takes any lock); pair with [`fork_leave`].
pub fn fork_enter() {
    FORKING.fetch_add(1, Ordering::SeqCst);
}

/// The calling thread's prepare handler has taken its locks.
pub fn fork_leave() {
    FORKING.fetch_sub(1, Ordering::SeqCst);
}

/// Held by the unit tests that depend on [`FORKING`] (tests run in
/// parallel in one process).
#[cfg(test)]
pub(crate) static FORKING_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// In a fork child: no other thread is preparing a fork there.
pub fn fork_reset_in_child() {
    FORKING.store(0, Ordering::SeqCst);
}

/// Take `n` locks in order for `fork` with `take(i)`, which says whether it
/// took lock `i` (it gives up only when another fork is being prepared). If one is busy, give back the ones taken
/// so far, newest first, with `give(i)`, and return `false`: the caller
/// then holds none of them.
pub(crate) fn take_all(
    n: usize,
    mut take: impl FnMut(usize) -> bool,
    mut give: impl FnMut(usize),
) -> bool {
    for i in 0..n {
        if !take(i) {
            (0..i).rev().for_each(&mut give);
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_all_gives_back_what_it_took_when_one_is_busy() {
        use core::cell::Cell;
        let held: [Cell<bool>; 4] = Default::default();
        let take = |i: usize| i != 2 && !held[i].replace(true);
        assert!(!take_all(4, take, |i| held[i].set(false)));
        assert!(held.iter().all(|h| !h.get()), "locks 0 and 1 given back");
        assert!(take_all(2, take, |_| unreachable!()));
        assert!(held[0].get() && held[1].get());
    }
}
