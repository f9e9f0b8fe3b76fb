//! [`KeyOnce`]: a pthread key made on first use, safe across `fork`.

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use super::{backoff, this_thread};

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
