//! Helpers shared by the engine test binaries: run a function in a forked
//! child with stderr captured and a time limit, and judge how it ended.

#![allow(dead_code)]

use stratalloc::__private::engine::ENGINE;
use stratalloc::__private::Backend;

/// Seconds a child may run before `SIGALRM` ends it: a hang in the child
/// fails the test instead of stalling the suite.
pub const CHILD_SECONDS: u32 = 10;

/// Run `f` in a forked child with stderr captured; returns (exit status
/// as from waitpid, stderr text).
pub fn in_child(f: fn() -> i32) -> (i32, String) {
    let mut fds = [0i32; 2];
    // SAFETY: valid out-array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    assert!(ENGINE.fork_prepare());
    // SAFETY: the child only calls the engine and async-signal-safe libc.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        ENGINE.fork_child();
        // SAFETY: plain syscalls in the child.
        unsafe {
            libc::alarm(CHILD_SECONDS);
            libc::dup2(fds[1], 2);
            libc::close(fds[0]);
            libc::_exit(f());
        }
    }
    ENGINE.fork_parent();
    assert!(pid > 0);
    // SAFETY: our pipe end.
    unsafe { libc::close(fds[1]) };
    let mut status = 0;
    // SAFETY: our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let mut buf = vec![0u8; 4096];
    // SAFETY: buffer valid for its length.
    let n = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: our fd.
    unsafe { libc::close(fds[0]) };
    buf.truncate(n.max(0) as usize);
    (status, String::from_utf8_lossy(&buf).into_owned())
}

pub fn aborted(status: i32) -> bool {
    libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGABRT
}

pub fn expect_abort(f: fn() -> i32, words: &str) {
    let (st, err) = in_child(f);
    assert!(
        aborted(st),
        "child did not abort (status {st:#x}), stderr: {err}"
    );
    assert!(err.contains(words), "stderr {err:?} lacks {words:?}");
    assert!(
        err.contains("0x"),
        "message does not name the pointer: {err:?}"
    );
}

/// `in_child(f)` must exit with status 0.
pub fn expect_success(f: fn() -> i32) {
    let (st, err) = in_child(f);
    assert!(
        libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
        "status {st:#x}: {err}"
    );
}

/// Allocate `n` blocks of `size` bytes from the engine (never freed):
/// enough slow paths that the owner collects its pages' remote frees (and
/// meets any block wrongly freed there).
pub fn churn(size: usize, n: usize) {
    for _ in 0..n {
        core::hint::black_box(stratalloc::__private::engine::malloc(size));
    }
}
