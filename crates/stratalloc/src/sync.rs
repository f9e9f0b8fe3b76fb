//! Locks and once-only set-up that know their owner, for code `malloc`
//! reaches, and what each does in a `fork` child.
//!
//! Glossary:
//! - **owner**: the holding thread's `pthread_self()` (never 0 or 1); the
//!   forking thread keeps its `pthread_self()` in the child.
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
//! Neither type allocates, panics or unwinds. Waiting is bounded by how long
//! the other thread holds the lock (a few instructions to a system call),
//! not by anything this code does.

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// The calling thread's id: `pthread_self()` (the address of its
/// descriptor; never 0, and aligned, so never 1).
#[inline]
pub fn this_thread() -> usize {
    // SAFETY: pthread_self has no preconditions and cannot fail.
    unsafe { libc::pthread_self() as usize }
}

/// Spins (each a `spin_loop` hint) before a waiter yields the CPU.
const SPINS: u32 = 64;

/// Wait a little for a busy word: spin first, then yield (on a machine with
/// fewer cores than threads the holder needs our time slice).
#[inline]
fn backoff(round: &mut u32) {
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

/// A test-and-test-and-set lock whose word is the owner's id (0 when free),
/// set by one compare-and-swap, so a signal can never land between taking
/// the lock and naming the owner.
pub struct RawLock {
    owner: AtomicUsize,
}

impl RawLock {
    /// A free lock.
    pub const fn new() -> Self {
        RawLock {
            owner: AtomicUsize::new(0),
        }
    }

    /// Take the lock, waiting while another thread holds it. Not
    /// re-entrant: the holder taking it again waits forever (fork handlers
    /// ask [`held_by_me`](Self::held_by_me) first).
    #[inline]
    pub fn lock(&self) {
        let me = this_thread();
        if self
            .owner
            .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow(me);
        }
    }

    #[cold]
    #[inline(never)]
    fn lock_slow(&self, me: usize) {
        let mut round = 0;
        loop {
            while self.owner.load(Ordering::Relaxed) != 0 {
                backoff(&mut round);
            }
            if self
                .owner
                .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }

    /// Release the lock (the caller holds it).
    #[inline]
    pub fn unlock(&self) {
        self.owner.store(0, Ordering::Release);
    }

    /// `true` if the calling thread holds the lock.
    #[inline]
    pub fn held_by_me(&self) -> bool {
        self.owner.load(Ordering::Relaxed) == this_thread()
    }

    /// In a fork child: who held the lock at the fork. A lock held by a
    /// gone thread is freed ([`Holder::Gone`]); one held by the forking
    /// thread is left held.
    pub fn reset_in_child(&self) -> Holder {
        match self.owner.load(Ordering::Relaxed) {
            0 => Holder::Free,
            o if o == this_thread() => Holder::Me,
            _ => {
                self.owner.store(0, Ordering::Release);
                Holder::Gone
            }
        }
    }
}

impl Default for RawLock {
    fn default() -> Self {
        Self::new()
    }
}

/// A pthread key created once, on first use, with a thread-exit destructor.
///
/// States of the one word: `0` none; `1` ready (the key is in `key`); any
/// other value: the id of the thread creating it. A thread that finds
/// another creating it waits; one that finds itself creating it (a signal
/// handler that interrupted the creation) gets `None`; in a fork child a
/// creation by a gone thread is forgotten ([`fork_child`](Self::fork_child))
/// and the next caller creates a key of its own.
pub struct KeyOnce {
    state: AtomicUsize,
    key: AtomicU32,
}

const KEY_NONE: usize = 0;
const KEY_READY: usize = 1;

impl KeyOnce {
    /// No key yet.
    pub const fn new() -> Self {
        KeyOnce {
            state: AtomicUsize::new(KEY_NONE),
            key: AtomicU32::new(0),
        }
    }

    /// The key, created with `dtor` by the first caller; `None` if creating
    /// it failed (a later call tries again) or the calling thread is the
    /// one creating it.
    pub fn get(
        &self,
        dtor: unsafe extern "C" fn(*mut libc::c_void),
    ) -> Option<libc::pthread_key_t> {
        self.get_with(|| {
            let mut k: libc::pthread_key_t = 0;
            // SAFETY: a valid out-pointer and a destructor of the right type.
            (unsafe { libc::pthread_key_create(&mut k, Some(dtor)) } == 0).then_some(k)
        })
    }

    /// [`get`](Self::get) with the creation step given (tests stand in a
    /// slow one).
    pub fn get_with(
        &self,
        create: impl FnOnce() -> Option<libc::pthread_key_t>,
    ) -> Option<libc::pthread_key_t> {
        let me = this_thread();
        let mut round = 0;
        loop {
            match self.state.load(Ordering::Acquire) {
                KEY_READY => return Some(self.key.load(Ordering::Relaxed)),
                KEY_NONE => {
                    if self
                        .state
                        .compare_exchange(KEY_NONE, me, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        let k = create();
                        match k {
                            Some(k) => {
                                self.key.store(k, Ordering::Relaxed);
                                self.state.store(KEY_READY, Ordering::Release);
                            }
                            None => self.state.store(KEY_NONE, Ordering::Release),
                        }
                        return k;
                    }
                }
                o if o == me => return None,
                _ => backoff(&mut round),
            }
        }
    }

    /// In a fork child: forget a creation a gone thread had started (its
    /// key, if glibc made it, is lost; the next [`get`](Self::get) makes
    /// another). A creation by the forking thread itself is left to finish.
    pub fn fork_child(&self) {
        let s = self.state.load(Ordering::Relaxed);
        if s != KEY_NONE && s != KEY_READY && s != this_thread() {
            self.state.store(KEY_NONE, Ordering::Release);
        }
    }
}

impl Default for KeyOnce {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn lock_knows_its_owner() {
        let l = RawLock::new();
        assert!(!l.held_by_me());
        l.lock();
        assert!(l.held_by_me());
        assert_eq!(l.reset_in_child(), Holder::Me);
        assert!(l.held_by_me());
        std::thread::scope(|s| {
            s.spawn(|| assert!(!l.held_by_me()));
        });
        l.unlock();
        assert_eq!(l.reset_in_child(), Holder::Free);
    }

    #[test]
    fn a_lock_held_by_another_thread_is_freed_in_the_child() {
        let l = RawLock::new();
        std::thread::scope(|s| {
            s.spawn(|| l.lock());
        });
        // The thread that took it has ended, as a gone thread in a child.
        assert!(!l.held_by_me());
        assert_eq!(l.reset_in_child(), Holder::Gone);
        l.lock();
        l.unlock();
    }

    #[test]
    fn lock_excludes() {
        static L: RawLock = RawLock::new();
        static mut N: u64 = 0;
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..20_000 {
                        L.lock();
                        // SAFETY: L is held.
                        unsafe { N += 1 };
                        L.unlock();
                    }
                });
            }
        });
        // SAFETY: every thread has ended.
        assert_eq!(unsafe { N }, 80_000);
    }

    #[test]
    fn key_is_created_once() {
        let k = KeyOnce::new();
        let mut made = 0;
        assert_eq!(
            k.get_with(|| {
                made += 1;
                Some(7)
            }),
            Some(7)
        );
        assert_eq!(
            k.get_with(|| {
                made += 1;
                Some(8)
            }),
            Some(7)
        );
        assert_eq!(made, 1);
        let f = KeyOnce::new();
        assert_eq!(f.get_with(|| None), None);
        assert_eq!(f.get_with(|| Some(3)), Some(3));
    }

    /// A fork while another thread is inside the key's creation: the child
    /// must make a key of its own instead of waiting forever for a thread
    /// that does not exist there. The child runs under an alarm, so a hang
    /// ends it by SIGALRM and the test fails.
    #[test]
    fn fork_during_key_creation_does_not_hang_the_child() {
        static K: KeyOnce = KeyOnce::new();
        static INSIDE: AtomicBool = AtomicBool::new(false);
        static RELEASE: AtomicBool = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                K.get_with(|| {
                    INSIDE.store(true, Ordering::SeqCst);
                    while !RELEASE.load(Ordering::SeqCst) {
                        std::thread::yield_now();
                    }
                    Some(11)
                })
            });
            while !INSIDE.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            // SAFETY: the child calls only async-signal-safe functions and
            // code that does not allocate, then _exits.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                // SAFETY: plain calls in the child.
                unsafe {
                    libc::alarm(5);
                    K.fork_child();
                    let k = K.get_with(|| Some(22));
                    libc::_exit(if k == Some(22) { 0 } else { 1 });
                }
            }
            assert!(pid > 0);
            let mut st = 0;
            // SAFETY: our child.
            assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
            RELEASE.store(true, Ordering::SeqCst);
            assert!(
                libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
                "child status {st:#x}"
            );
        });
        assert_eq!(K.get_with(|| Some(33)), Some(11));
    }
}
