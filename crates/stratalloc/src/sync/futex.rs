//! [`FutexLock`]: the process heap's lock, which sleeps in the kernel
//! under contention.

use core::ptr;
use core::sync::atomic::{AtomicU32, Ordering};

use super::{ForkSkip, SPINS};

/// A futex-based mutex whose one 32-bit word says who holds it: a
/// compare-and-swap fast path, a short bounded spin, then a futex mutex in
/// the style of the classic three-state one (free, held, held with
/// waiters), so with many threads on few cores the losers sleep in the
/// kernel instead of burning the holder's time slice (figures in the
/// process heap's docs).
///
/// `state == 0`: free; otherwise `owner_id << 1 | waiters`, where
/// `owner_id` is the holder's [`thread_id`] and `waiters` says a thread
/// may be asleep on the word. Taking and naming the owner is one
/// compare-and-swap, so a signal can never land between the two.
pub struct FutexLock {
    state: AtomicU32,
    fork: ForkSkip,
}

/// A small number unique to the calling thread (1.., unique among the
/// first 2^31 - 1 threads the process creates).
pub fn thread_id() -> u32 {
    use core::cell::Cell;
    static NEXT: AtomicU32 = AtomicU32::new(1);
    thread_local! {
        // Const-initialised, no destructor: native TLS, no allocation.
        static ID: Cell<u32> = const { Cell::new(0) };
    }
    ID.with(|c| {
        let id = c.get();
        if id != 0 {
            return id;
        }
        let id = NEXT.fetch_add(1, Ordering::Relaxed) % ((1 << 31) - 1) + 1;
        c.set(id);
        id
    })
}

impl FutexLock {
    /// An unlocked lock.
    pub const fn new() -> Self {
        FutexLock {
            state: AtomicU32::new(0),
            fork: ForkSkip::new(),
        }
    }

    /// Take the lock, sleeping in the kernel if it stays busy.
    #[inline]
    pub fn lock(&self) {
        let me = thread_id() << 1;
        if self
            .state
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow(me);
        }
    }

    #[cold]
    #[inline(never)]
    fn lock_slow(&self, me: u32) {
        for _ in 0..SPINS {
            if self.state.load(Ordering::Relaxed) == 0
                && self
                    .state
                    .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
            core::hint::spin_loop();
        }
        loop {
            let cur = self.state.load(Ordering::Relaxed);
            if cur == 0 {
                // Others may be asleep: take it with the waiters bit so our
                // unlock wakes the next one.
                if self
                    .state
                    .compare_exchange(0, me | 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return;
                }
                continue;
            }
            if cur & 1 == 0
                && self
                    .state
                    .compare_exchange(cur, cur | 1, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            // SAFETY: FUTEX_WAIT on a live, aligned u32; returns at once if
            // the word no longer holds `cur | 1`.
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    self.state.as_ptr(),
                    libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                    cur | 1,
                    ptr::null::<libc::timespec>(),
                )
            };
        }
    }

    /// Take the lock if it is free, without waiting; `true` if taken.
    #[inline]
    pub fn try_lock(&self) -> bool {
        self.state
            .compare_exchange(0, thread_id() << 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Release the lock (the caller holds it).
    #[inline]
    pub fn unlock(&self) {
        if self.state.swap(0, Ordering::Release) & 1 != 0 {
            self.wake();
        }
    }

    #[cold]
    fn wake(&self) {
        // SAFETY: FUTEX_WAKE on a live, aligned u32.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.state.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                1i32,
            )
        };
    }

    /// `true` if the calling thread holds the lock.
    pub fn held_by_me(&self) -> bool {
        self.state.load(Ordering::Relaxed) >> 1 == thread_id()
    }

    /// Hold the lock across `fork` (see the module docs of `sync`): take
    /// it, unless the calling thread holds it already; `false` (nothing
    /// taken) if another thread holds it while another fork is being
    /// prepared.
    #[must_use]
    pub fn fork_prepare(&self) -> bool {
        self.fork.prepare(self.held_by_me(), || self.try_lock())
    }

    /// In the parent after `fork`: release what `fork_prepare` took.
    pub fn fork_parent(&self) {
        self.fork.finish(|| self.unlock());
    }

    /// In the child after `fork`: the lock as if nobody held it (only the
    /// forking thread exists there, and it took the lock in
    /// `fork_prepare`; nobody sleeps on the word), unless it was skipped.
    pub fn fork_child(&self) {
        self.fork.finish(|| self.state.store(0, Ordering::Release));
    }
}

impl Default for FutexLock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_serialises() {
        static L: FutexLock = FutexLock::new();
        static mut N: u64 = 0;
        std::thread::scope(|sc| {
            for _ in 0..8 {
                sc.spawn(|| {
                    for _ in 0..20_000 {
                        L.lock();
                        assert!(L.held_by_me());
                        // SAFETY: N is only touched with L held.
                        unsafe { N += 1 };
                        L.unlock();
                    }
                });
            }
        });
        // SAFETY: all threads joined.
        assert_eq!(unsafe { N }, 160_000);
        assert!(!L.held_by_me());
    }

    #[test]
    fn fork_prepare_skips_its_own_lock_and_waits_for_others() {
        let _serial = super::super::FORKING_TESTS.lock();
        let l = FutexLock::new();
        l.lock();
        assert!(l.fork_prepare(), "held by this thread: skipped");
        l.fork_parent();
        assert!(l.held_by_me(), "a skipped lock is left to its section");
        std::thread::scope(|s| {
            let t = s.spawn(|| {
                // Waits (no other fork is being prepared) until released.
                assert!(l.fork_prepare());
                l.fork_parent();
            });
            std::thread::sleep(std::time::Duration::from_millis(20));
            assert!(!t.is_finished(), "fork_prepare returned with the lock busy");
            l.unlock();
        });
        assert!(l.fork_prepare());
        assert!(l.held_by_me());
        l.fork_parent();
        assert!(!l.held_by_me());
    }
}
