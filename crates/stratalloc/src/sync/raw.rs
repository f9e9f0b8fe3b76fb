//! [`RawLock`], the owner-aware spin lock, and [`SpinLock<T>`], a value
//! behind one.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicUsize, Ordering};

use super::{backoff, this_thread, ForkSkip, Holder};

/// A test-and-test-and-set lock whose word is the owner's id (0 when free),
/// set by one compare-and-swap, so a signal can never land between taking
/// the lock and naming the owner.
pub struct RawLock {
    owner: AtomicUsize,
    fork: ForkSkip,
}

impl RawLock {
    /// A free lock.
    pub const fn new() -> Self {
        RawLock {
            owner: AtomicUsize::new(0),
            fork: ForkSkip::new(),
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

    /// Take the lock if it is free, without waiting; `true` if taken.
    #[inline]
    pub fn try_lock(&self) -> bool {
        self.owner
            .compare_exchange(0, this_thread(), Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
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

    /// Hold the lock across `fork` (see the module docs of `sync`): take it,
    /// unless the calling thread holds it already; `false` (nothing taken)
    /// if another thread holds it while another fork is being prepared.
    #[must_use]
    pub fn fork_prepare(&self) -> bool {
        self.fork.prepare(self.held_by_me(), || self.try_lock())
    }

    /// After `fork`, in the parent or the child: release what
    /// [`fork_prepare`](Self::fork_prepare) took (the child's thread is the
    /// one that took it).
    pub fn fork_release(&self) {
        self.fork.finish(|| self.unlock());
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

/// A value behind a [`RawLock`]: reached through a [`SpinGuard`], or held
/// across `fork` with no guard ([`raw_try_lock`](Self::raw_try_lock) /
/// [`raw_unlock`](Self::raw_unlock)).
pub struct SpinLock<T> {
    lock: RawLock,
    value: UnsafeCell<T>,
}

// SAFETY: `value` is reached only while `lock` is held by the accessor.
unsafe impl<T: Send> Sync for SpinLock<T> {}

/// Access to the value of a [`SpinLock`]; unlocks on drop.
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> SpinLock<T> {
    /// A lock around `value`.
    pub const fn new(value: T) -> Self {
        SpinLock {
            lock: RawLock::new(),
            value: UnsafeCell::new(value),
        }
    }

    /// Take the lock.
    #[inline]
    pub fn lock(&self) -> SpinGuard<'_, T> {
        self.lock.lock();
        SpinGuard { lock: self }
    }

    /// Take the lock with no guard, for `fork_prepare` (left alone if this
    /// thread holds it already; `false` as [`RawLock::fork_prepare`] says).
    /// Pair a `true` with [`raw_unlock`](Self::raw_unlock).
    #[must_use]
    pub fn raw_try_lock(&self) -> bool {
        self.lock.fork_prepare()
    }

    /// Release a lock taken by [`raw_try_lock`](Self::raw_try_lock), in the
    /// parent or the child of `fork`.
    ///
    /// # Safety
    /// The caller took the lock with `raw_try_lock` and holds no guard.
    pub unsafe fn raw_unlock(&self) {
        self.lock.fork_release();
    }

    /// The value, reached with no guard by the thread that took the lock
    /// with [`raw_try_lock`](Self::raw_try_lock) (the leak check reads every table
    /// shard while it holds them all).
    ///
    /// # Safety
    /// The caller took the lock with `raw_try_lock`, has not released it, and
    /// drops the reference before releasing it.
    pub unsafe fn raw_value(&self) -> &T {
        // SAFETY: the lock is held by the caller (its contract), so no other
        // thread reaches the value.
        unsafe { &*self.value.get() }
    }

    /// In a fork child: [`raw_unlock`](Self::raw_unlock), after `reset`
    /// has set the value up for the child, unless `raw_try_lock` found the
    /// lock held by this thread (then the interrupted critical section
    /// still uses the value, and it is left alone).
    ///
    /// # Safety
    /// As [`raw_unlock`](Self::raw_unlock).
    pub unsafe fn raw_unlock_child(&self, reset: impl FnOnce(&mut T)) {
        self.lock.fork.finish(|| {
            // SAFETY: `raw_try_lock` took the lock for this thread, which no
            // guard of ours refers to (the caller's contract).
            reset(unsafe { &mut *self.value.get() });
            self.lock.unlock();
        });
    }
}

/// [`SpinLock::raw_try_lock`] on every lock of `locks`, in order: `true` if
/// all were taken (or skipped as this thread's); otherwise (one gave up)
/// none is held.
#[must_use]
pub fn raw_try_lock_all<T>(locks: &[SpinLock<T>]) -> bool {
    super::take_all(
        locks.len(),
        |i| locks[i].raw_try_lock(),
        // SAFETY: lock `i` was just taken by `raw_try_lock`; no guard.
        |i| unsafe { locks[i].raw_unlock() },
    )
}

/// [`SpinLock::raw_try_lock`] on every lock of `locks`, in order, waiting
/// for each (it gives up only while forks are being prepared, so it is
/// asked again): for the leak check, which holds them all while it stops
/// the other threads. Release with [`raw_unlock_all`].
pub fn raw_lock_all<T>(locks: &[SpinLock<T>]) {
    for l in locks {
        while !l.raw_try_lock() {
            core::hint::spin_loop();
        }
    }
}

/// [`SpinLock::raw_unlock`] on every lock of `locks`.
///
/// # Safety
/// The caller took them with [`raw_try_lock_all`] or [`raw_lock_all`] and
/// holds no guard.
pub unsafe fn raw_unlock_all<T>(locks: &[SpinLock<T>]) {
    for l in locks {
        // SAFETY: forwarded from the caller.
        unsafe { l.raw_unlock() };
    }
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while the lock is held by us.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard exists only while the lock is held by us.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.lock.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn spin_lock_raw_pairs() {
        let l = SpinLock::new(5);
        assert!(l.raw_try_lock());
        // SAFETY: taken just above, no guard held.
        unsafe { l.raw_unlock() };
        *l.lock() += 1;
        assert_eq!(*l.lock(), 6);
    }

    #[test]
    fn the_child_resets_only_a_value_fork_prepare_locked() {
        let l = SpinLock::new(5);
        assert!(l.raw_try_lock());
        // SAFETY: taken just above, no guard held.
        unsafe { l.raw_unlock_child(|v| *v = 0) };
        assert_eq!(*l.lock(), 0);
        let mut g = l.lock();
        *g = 7;
        assert!(l.raw_try_lock());
        // SAFETY: paired with raw_try_lock; the guard (the interrupted section)
        // keeps the lock and the value.
        unsafe { l.raw_unlock_child(|v| *v = 0) };
        assert!(l.lock.held_by_me());
        assert_eq!(*g, 7);
        drop(g);
        assert!(!l.lock.held_by_me());
    }

    #[test]
    fn fork_prepare_skips_a_lock_this_thread_holds() {
        let l = SpinLock::new(1);
        let g = l.lock();
        assert!(l.raw_try_lock());
        // SAFETY: paired with raw_try_lock; the guard stays the holder.
        unsafe { l.raw_unlock() };
        assert!(l.lock.held_by_me());
        drop(g);
        assert!(!l.lock.held_by_me());
    }

    /// A lock another thread holds is waited for while no other fork is
    /// being prepared, and not waited for while one is: `fork_prepare`
    /// says so and takes nothing (the caller retries with nothing held).
    #[test]
    fn fork_prepare_waits_for_a_busy_lock_unless_another_fork_is_prepared() {
        let _serial = super::super::FORKING_TESTS.lock();
        let l = RawLock::new();
        let (held, release) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
        std::thread::scope(|s| {
            s.spawn(|| {
                l.lock();
                held.wait();
                release.wait();
                l.unlock();
            });
            held.wait();
            // This thread and another one prepare a fork.
            super::super::fork_enter();
            super::super::fork_enter();
            assert!(!l.fork_prepare());
            assert!(!l.held_by_me());
            super::super::fork_leave();
            release.wait();
            // Only this one now: it waits until the holder lets go.
            assert!(l.fork_prepare());
            super::super::fork_leave();
        });
        assert!(l.held_by_me());
        l.fork_release();
        assert!(!l.held_by_me());
    }
}
