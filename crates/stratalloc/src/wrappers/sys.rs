//! What the wrappers need from the OS and from each other, none of which
//! allocates (their tables are mapped with [`crate::os::map_meta`] and
//! locked with [`crate::sync::SpinLock`]): a write-once static slot, a buffered writer to a file
//! descriptor, report files, the clock and a small per-thread number.

use core::cell::{Cell, UnsafeCell};
use core::fmt;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

pub use crate::diag::cmdline;
use crate::diag::write_fd;
use crate::options::{Output, PathBuf};

/// A `static` that is written once at start-up and read forever after.
pub struct Slot<T> {
    state: AtomicU8,
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: the value is written once, before `state` becomes READY with
// Release ordering; readers load `state` with Acquire and only then read.
unsafe impl<T: Sync> Sync for Slot<T> {}

const EMPTY: u8 = 0;
const WRITING: u8 = 1;
const READY: u8 = 2;

impl<T> Slot<T> {
    /// An empty slot.
    pub const fn new() -> Self {
        Slot {
            state: AtomicU8::new(EMPTY),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// Store `value` and return a reference to it; if the slot was already
    /// filled, `value` is dropped and the first one is returned.
    pub fn init(&'static self, value: T) -> &'static T {
        if self
            .state
            .compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Acquire)
            .is_ok()
        {
            // SAFETY: we won the EMPTY -> WRITING race; no reader looks at
            // the value before READY.
            unsafe { (*self.value.get()).write(value) };
            self.state.store(READY, Ordering::Release);
        } else {
            drop(value);
            while self.state.load(Ordering::Acquire) != READY {
                core::hint::spin_loop();
            }
        }
        // SAFETY: READY means the value was written and is never written again.
        unsafe { (*self.value.get()).assume_init_ref() }
    }

    /// The value, if the slot was filled.
    pub fn get(&'static self) -> Option<&'static T> {
        if self.state.load(Ordering::Acquire) == READY {
            // SAFETY: as in `init`.
            Some(unsafe { (*self.value.get()).assume_init_ref() })
        } else {
            None
        }
    }
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// A `fmt::Write` that buffers on the stack and writes to a file descriptor
/// when full and on [`flush`](Self::flush) / drop.
pub struct FdWriter {
    fd: i32,
    buf: [u8; 1024],
    len: usize,
}

impl FdWriter {
    /// A writer to `fd`.
    pub const fn new(fd: i32) -> Self {
        FdWriter {
            fd,
            buf: [0; 1024],
            len: 0,
        }
    }

    /// Write out what is buffered.
    pub fn flush(&mut self) {
        write_fd(self.fd, &self.buf[..self.len]);
        self.len = 0;
    }

    /// Append raw bytes.
    pub fn bytes(&mut self, mut b: &[u8]) {
        while !b.is_empty() {
            if self.len == self.buf.len() {
                self.flush();
            }
            let n = b.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
            self.len += n;
            b = &b[n..];
        }
    }
}

impl fmt::Write for FdWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.bytes(s.as_bytes());
        Ok(())
    }
}

impl Drop for FdWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Copy `path` into a NUL-terminated buffer, replacing `%p` by the process
/// id (so the processes a program starts write separate files).
pub fn expand_path(path: &PathBuf, out: &mut [u8; 300]) {
    let src = path.as_cstr().to_bytes();
    let mut n = 0;
    let mut i = 0;
    while i < src.len() && n < out.len() - 1 {
        if src[i] == b'%' && src.get(i + 1) == Some(&b'p') {
            let mut digits = [0u8; 20];
            // SAFETY: getpid has no preconditions.
            let mut pid = unsafe { libc::getpid() } as u32;
            let mut k = 0;
            loop {
                digits[k] = b'0' + (pid % 10) as u8;
                k += 1;
                pid /= 10;
                if pid == 0 {
                    break;
                }
            }
            while k > 0 && n < out.len() - 1 {
                k -= 1;
                out[n] = digits[k];
                n += 1;
            }
            i += 2;
        } else {
            out[n] = src[i];
            n += 1;
            i += 1;
        }
    }
    out[n] = 0;
}

/// Open `path` (with `%p` expanded) for writing with `flags` added to
/// `O_WRONLY | O_CREAT | O_CLOEXEC`; -1 on failure.
pub fn open_path(path: &PathBuf, flags: i32) -> i32 {
    let mut buf = [0u8; 300];
    expand_path(path, &mut buf);
    // SAFETY: `buf` is NUL-terminated.
    unsafe {
        libc::open(
            buf.as_ptr().cast(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC | flags,
            0o644,
        )
    }
}

/// Where a report goes, opened: standard error, a file (closed on drop), or
/// nowhere.
pub struct ReportFd {
    fd: i32,
    close: bool,
}

impl ReportFd {
    /// Open the destination of `out`; reports to a file append to it.
    pub fn open(out: &Output) -> ReportFd {
        match out {
            Output::Off | Output::Quiet => ReportFd {
                fd: -1,
                close: false,
            },
            Output::Stderr => ReportFd {
                fd: 2,
                close: false,
            },
            Output::Path(p) => {
                let fd = open_path(p, libc::O_APPEND);
                if fd < 0 {
                    crate::eprint_noalloc!(
                        "stratalloc: cannot open report file {:?}; writing to stderr\n",
                        p
                    );
                    ReportFd {
                        fd: 2,
                        close: false,
                    }
                } else {
                    ReportFd { fd, close: true }
                }
            }
        }
    }

    /// The file descriptor (-1 for nowhere).
    pub fn fd(&self) -> i32 {
        self.fd
    }
}

impl Drop for ReportFd {
    fn drop(&mut self) {
        if self.close {
            // SAFETY: we opened this descriptor and nobody else holds it.
            unsafe { libc::close(self.fd) };
        }
    }
}

/// Nanoseconds on the monotonic clock.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A cheap monotonic nanosecond clock: a CPU counter that ticks at a
/// constant rate, scaled by a factor measured against `CLOCK_MONOTONIC` when
/// the clock is made (a 1 ms calibration): the TSC on x86-64 where it is
/// invariant (the invariant-TSC CPUID bit), the generic timer's virtual
/// count (`CNTVCT_EL0`) on AArch64 (measured rather than read from
/// `CNTFRQ_EL0`, which an emulator may leave at 0); `clock_gettime`
/// elsewhere. On the test machine (a VM) `clock_gettime` cost more than a
/// third of the trace wrapper's time.
pub struct Clock {
    /// Nanoseconds per tick, as a 32.32 fixed-point number (0: no counter).
    mult: u64,
    tsc0: u64,
    ns0: u64,
}

impl Clock {
    /// Calibrate a clock that reads 0 now.
    pub fn new() -> Clock {
        let ns0 = now_ns();
        if steady_ticks() {
            let (t0, c0) = tsc_pair();
            while now_ns() - t0 < 1_000_000 {
                core::hint::spin_loop();
            }
            let (t1, c1) = tsc_pair();
            if c1 > c0 && t1 > t0 {
                let mult = (((t1 - t0) as u128) << 32) / (c1 - c0) as u128;
                // Anchor so that `now()` reads `t1 - ns0` at tick `c1`.
                let back = (((t1 - ns0) as u128) << 32) / mult.max(1);
                return Clock {
                    mult: mult as u64,
                    tsc0: c1.saturating_sub(back as u64),
                    ns0,
                };
            }
        }
        Clock {
            mult: 0,
            tsc0: 0,
            ns0,
        }
    }

    /// Nanoseconds since the clock was made.
    #[inline]
    pub fn now(&self) -> u64 {
        if self.mult != 0 {
            let c = ticks();
            return ((c.saturating_sub(self.tsc0) as u128 * self.mult as u128) >> 32) as u64;
        }
        now_ns().saturating_sub(self.ns0)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether [`ticks`] counts at a constant rate: the TSC with the
/// invariant-TSC CPUID bit.
#[cfg(target_arch = "x86_64")]
fn steady_ticks() -> bool {
    let max = core::arch::x86_64::__cpuid(0x8000_0000).eax;
    max >= 0x8000_0007 && core::arch::x86_64::__cpuid(0x8000_0007).edx & (1 << 8) != 0
}

/// The TSC.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn ticks() -> u64 {
    // SAFETY: rdtsc is available on every x86-64 CPU.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// The generic timer always counts at a constant rate.
#[cfg(target_arch = "aarch64")]
fn steady_ticks() -> bool {
    true
}

/// The generic timer's virtual count.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
fn ticks() -> u64 {
    let c: u64;
    // SAFETY: Linux lets EL0 read the virtual count register.
    unsafe { core::arch::asm!("mrs {c}, cntvct_el0", c = out(reg) c, options(nomem, nostack)) };
    c
}

/// No counter: `clock_gettime` every time.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn steady_ticks() -> bool {
    false
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn ticks() -> u64 {
    0
}

/// A `(monotonic ns, ticks)` pair read close together: the tightest of five
/// tries, taking the clock between two counter reads.
fn tsc_pair() -> (u64, u64) {
    let mut best = (0, 0, u64::MAX);
    for _ in 0..5 {
        let a = ticks();
        let t = now_ns();
        let b = ticks();
        if b.wrapping_sub(a) < best.2 {
            best = (t, a + (b - a) / 2, b.wrapping_sub(a));
        }
    }
    (best.0, best.1)
}

/// The process id.
pub fn pid() -> u32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() as u32 }
}

thread_local! {
    static INTERNAL: Cell<bool> = const { Cell::new(false) };
}

/// `true` while the calling thread is inside [`internal`]: the wrappers'
/// own reporting code, whose allocations the check wrapper passes straight
/// to its backend.
pub fn in_internal() -> bool {
    INTERNAL.with(|c| c.get())
}

/// Run `f` as the wrappers' own code (see [`in_internal`]).
pub fn internal<R>(f: impl FnOnce() -> R) -> R {
    let was = INTERNAL.with(|c| c.replace(true));
    let r = f();
    INTERNAL.with(|c| c.set(was));
    r
}

static NEXT_THREAD: AtomicU32 = AtomicU32::new(1);

thread_local! {
    static THREAD_NO: Cell<u32> = const { Cell::new(0) };
}

/// A small number for the calling thread: 1 for the first thread that asks,
/// 2 for the next, and so on (never reused).
pub fn thread_no() -> u32 {
    THREAD_NO.with(|t| {
        let n = t.get();
        if n != 0 {
            return n;
        }
        let n = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
        t.set(n);
        n
    })
}

/// The first line of every report: `==PID== stratalloc WHAT of process
/// PID: COMMAND LINE`. Does not allocate.
pub fn write_process_header(out: &mut dyn fmt::Write, what: &str) -> fmt::Result {
    let mut buf = [0u8; 512];
    let me = pid();
    writeln!(
        out,
        "=={me}== stratalloc {what} of process {me}: {}",
        cmdline(&mut buf)
    )
}

/// Peak resident set size of the process, in bytes.
pub fn peak_rss() -> u64 {
    // SAFETY: an all-zero rusage is a valid value to overwrite.
    let mut ru: libc::rusage = unsafe { core::mem::zeroed() };
    // SAFETY: `ru` is valid for writes.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0;
    }
    ru.ru_maxrss.max(0) as u64 * 1024
}

/// Bytes in a human unit: `1.5 MiB`.
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b < 1024 {
            return write!(f, "{b} B");
        }
        let units = ["KiB", "MiB", "GiB", "TiB"];
        let mut v = b as f64 / 1024.0;
        let mut u = 0;
        while v >= 1024.0 && u + 1 < units.len() {
            v /= 1024.0;
            u += 1;
        }
        write!(f, "{v:.1} {}", units[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn slot_is_written_once() {
        static S: Slot<u32> = Slot::new();
        assert!(S.get().is_none());
        assert_eq!(*S.init(7), 7);
        assert_eq!(*S.init(9), 7);
        assert_eq!(S.get(), Some(&7));
    }

    #[test]
    fn expands_pid() {
        let p = crate::options::Options::parse(|k| {
            (k == "STRATALLOC_TRACE").then_some(&b"/tmp/x.%p.trace"[..])
        })
        .trace
        .unwrap();
        let mut out = [0u8; 300];
        expand_path(&p, &mut out);
        let s = core::ffi::CStr::from_bytes_until_nul(&out).unwrap();
        assert_eq!(s.to_str().unwrap(), format!("/tmp/x.{}.trace", pid()));
    }

    #[test]
    fn the_header_names_the_process_and_its_command_line() {
        let mut s = String::new();
        write_process_header(&mut s, "statistics").unwrap();
        let me = pid();
        let prefix = format!("=={me}== stratalloc statistics of process {me}: ");
        assert!(s.starts_with(&prefix), "{s}");
        let arg0 = std::env::args().next().unwrap();
        assert!(s[prefix.len()..].starts_with(&arg0), "{s}");
        assert!(s.ends_with('\n') && !s.contains('\0'));
        let mut tiny = [0u8; 4];
        assert_eq!(cmdline(&mut tiny).len(), 4);
    }

    #[test]
    fn bytes_display() {
        let mut s = String::new();
        write!(s, "{} {} {}", Bytes(10), Bytes(1536), Bytes(3 << 20)).unwrap();
        assert_eq!(s, "10 B 1.5 KiB 3.0 MiB");
    }

    #[test]
    fn clock_agrees_with_the_monotonic_clock() {
        let c = Clock::new();
        let (a, t0) = (c.now(), now_ns());
        std::thread::sleep(std::time::Duration::from_millis(50));
        let (b, t1) = (c.now(), now_ns());
        let (d, want) = (b - a, t1 - t0);
        assert!(b >= a);
        // Within 5% (calibration error plus the reads' own skew).
        assert!(
            d.abs_diff(want) < want / 20,
            "clock {d} ns, monotonic {want} ns"
        );
    }

    /// AArch64 Linux lets user space read the generic timer, so the clock
    /// never needs `clock_gettime` there.
    #[test]
    #[cfg(target_arch = "aarch64")]
    fn clock_reads_the_generic_timer() {
        assert_ne!(Clock::new().mult, 0);
    }
}
