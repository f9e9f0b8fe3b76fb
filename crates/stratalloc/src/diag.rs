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

/// The command line of this process as one line (`/proc/self/cmdline`,
/// arguments joined by spaces), read into `buf` without allocating and
/// cut to its length; empty if it cannot be read.
pub fn cmdline(buf: &mut [u8]) -> &str {
    // SAFETY: a NUL-terminated path; open does not allocate.
    let fd = unsafe {
        libc::open(
            c"/proc/self/cmdline".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return "";
    }
    let mut n = 0;
    while n < buf.len() {
        // SAFETY: `buf[n..]` is valid for writes of its length.
        let r = unsafe { libc::read(fd, buf[n..].as_mut_ptr().cast(), buf.len() - n) };
        if r <= 0 {
            break;
        }
        n += r as usize;
    }
    // SAFETY: we opened `fd`.
    unsafe { libc::close(fd) };
    // The arguments end with a NUL each: the last one is dropped, the
    // others become spaces.
    let end = if n > 0 && buf[n - 1] == 0 { n - 1 } else { n };
    for b in &mut buf[..end] {
        if *b == 0 {
            *b = b' ';
        }
    }
    match core::str::from_utf8(&buf[..end]) {
        Ok(s) => s,
        Err(e) => core::str::from_utf8(&buf[..e.valid_up_to()]).unwrap_or(""),
    }
}

/// Format into a stack buffer and write to standard error. Never allocates.
pub fn eprint_fmt(args: fmt::Arguments<'_>) {
    let mut b = StackBuf::<512>::new();
    let _ = b.write_fmt(args);
    write_fd(2, b.as_bytes());
}

/// Print `==PID== stratalloc: process PID: COMMAND LINE`, then
/// `stratalloc: <message>` on standard error and abort the process.
#[cold]
#[inline(never)]
pub fn fatal(args: fmt::Arguments<'_>) -> ! {
    let mut b = StackBuf::<768>::new();
    let mut line = [0u8; 256];
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let _ = writeln!(
        b,
        "=={pid}== stratalloc: process {pid}: {}",
        cmdline(&mut line)
    );
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
