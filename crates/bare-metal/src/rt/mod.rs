//! The run-time of the demo: what a program needs when there is no OS
//! library under it. Each platform module supplies the entry point (which
//! calls `crate::entry()` and exits with its result), `write_all(fd, bytes)`
//! and `exit(code)`; this module adds a writer that formats into a stack
//! buffer, `outln!` and the panic handler.
//!
//! | platform | module | entry | output | exit |
//! |---|---|---|---|---|
//! | x86_64 Linux | `linux_x86_64.rs` | naked `_start` | `write(2)` | `exit_group(2)` |
//! | Cortex-M3 (QEMU `mps2-an385`) | `cortex_m.rs` | vector table, reset handler | semihosting `SYS_WRITE0` | semihosting `SYS_EXIT_EXTENDED` |
//! | RISC-V 32 (QEMU `virt`) | `riscv32.rs` | `_start` in `.text.init` | 16550 UART at `0x1000_0000` | SiFive test device at `0x10_0000` |
//!
//! The bare-metal platforms link with the scripts in `link/` (`build.rs`).

use core::fmt;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod linux_x86_64;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub use linux_x86_64::{exit, write_all};

#[cfg(all(target_arch = "arm", target_os = "none"))]
mod cortex_m;
#[cfg(all(target_arch = "arm", target_os = "none"))]
pub use cortex_m::{exit, write_all};

#[cfg(all(target_arch = "riscv32", target_os = "none"))]
mod riscv32;
#[cfg(all(target_arch = "riscv32", target_os = "none"))]
pub use riscv32::{exit, write_all};

/// A `core::fmt::Write` sink over a fixed stack buffer, flushed to a file
/// descriptor when full and when dropped. It never allocates, so it works
/// whatever state the heap is in (and while its lock is held).
pub struct Out {
    fd: usize,
    len: usize,
    buf: [u8; 512],
}

impl Out {
    /// A writer to standard output.
    pub const fn stdout() -> Self {
        Out {
            fd: 1,
            len: 0,
            buf: [0; 512],
        }
    }

    /// A writer to standard error.
    pub const fn stderr() -> Self {
        Out {
            fd: 2,
            len: 0,
            buf: [0; 512],
        }
    }

    /// Write out what is buffered.
    pub fn flush(&mut self) {
        write_all(self.fd, &self.buf[..self.len]);
        self.len = 0;
    }
}

impl fmt::Write for Out {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut bytes = s.as_bytes();
        while !bytes.is_empty() {
            if self.len == self.buf.len() {
                self.flush();
            }
            let n = bytes.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
        }
        Ok(())
    }
}

impl Drop for Out {
    fn drop(&mut self) {
        self.flush();
    }
}

/// `println!` for the demo: formats into an [`Out`] on the stack.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        let mut o = $crate::rt::Out::stdout();
        // An `Out` never fails to accept bytes.
        let _ = core::fmt::Write::write_fmt(&mut o, format_args!($($arg)*));
        let _ = core::fmt::Write::write_str(&mut o, "\n");
    }};
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut o = Out::stderr();
    let _ = fmt::Write::write_fmt(&mut o, format_args!("bare-metal demo panicked: {info}\n"));
    o.flush();
    exit(101)
}
