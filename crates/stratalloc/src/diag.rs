//! Messages and aborts that never allocate: a fixed stack buffer, `write(2)`
//! to standard error, `abort(3)`. Safe to call from inside `malloc`.

use core::fmt::{self, Write};

/// A fixed-size text buffer that silently truncates.
pub struct StackBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackBuf<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        StackBuf {
            buf: [0; N],
            len: 0,
        }
    }
    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl<const N: usize> Default for StackBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Write for StackBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(N - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Write all of `bytes` to file descriptor `fd`, retrying on EINTR.
pub fn write_fd(fd: i32, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid readable slice.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            // SAFETY: reading errno is always sound.
            if unsafe { *libc::__errno_location() } == libc::EINTR {
                continue;
            }
            return;
        }
        if n == 0 {
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// Format into a stack buffer and write to standard error. Never allocates.
pub fn eprint_fmt(args: fmt::Arguments<'_>) {
    let mut b = StackBuf::<512>::new();
    let _ = b.write_fmt(args);
    write_fd(2, b.as_bytes());
}

/// Print `stratalloc: <message>` on standard error and abort the process.
#[cold]
#[inline(never)]
pub fn fatal(args: fmt::Arguments<'_>) -> ! {
    let mut b = StackBuf::<512>::new();
    let _ = b.write_str("stratalloc: ");
    let _ = b.write_fmt(args);
    let _ = b.write_str("\n");
    write_fd(2, b.as_bytes());
    // SAFETY: abort never returns and is async-signal-safe.
    unsafe { libc::abort() }
}

/// `fatal!("double free of {:p}", p)`: message on stderr, then abort.
#[doc(hidden)]
#[macro_export]
macro_rules! fatal {
    ($($t:tt)*) => { $crate::__private::diag::fatal(format_args!($($t)*)) };
}

/// `eprint_noalloc!(...)`: formatted text on stderr with no allocation.
#[doc(hidden)]
#[macro_export]
macro_rules! eprint_noalloc {
    ($($t:tt)*) => { $crate::__private::diag::eprint_fmt(format_args!($($t)*)) };
}
