//! What the leak check needs from the OS: stopping the other threads, and
//! the roots (every loaded object's writable segments, each thread's stack
//! and static TLS). Linux and glibc; nothing here allocates from the heap.
//!
//! **Stopping the world.** The threads are listed from `/proc/self/task`
//! (raw `getdents64`) and each is sent [`stop_signal`] with `tgkill` (a
//! thread gone meanwhile, `ESRCH`, is left out; any other refusal makes
//! the stop fail). Its
//! handler records the address of one of its own locals as the thread's
//! stack pointer (the handler runs on the thread's stack, below the signal
//! frame, so the frame's saved registers and the interrupted code's red
//! zone lie above it and are scanned with the stack), and the bounds of
//! the thread's static TLS; then it waits on a futex until [`World`] is
//! dropped. The listing is repeated until it finds no thread that is not
//! stopped (a running thread may have started another). A thread that
//! neither answers within [`STOP_TIMEOUT_MS`] nor has exited makes the stop
//! fail (it blocks the signal): the caller then skips the check. The
//! handler stays installed after the check (it returns at once when no
//! check is running), so a late signal cannot kill the process.
//!
//! **Stacks** run from the recorded stack pointer to the end of the
//! mapping that holds it (`/proc/self/maps`); glibc puts a thread's
//! descriptor and static TLS at the top of its stack mapping, so they are
//! scanned with it. **Static TLS** of a thread whose TLS lies apart from
//! its stack (the main thread's, which the loader maps) comes from glibc's
//! `__libc_get_static_tls_bounds` (2.34 and later, looked up with `dlsym`
//! before the stop), widened by [`TCB_SLACK`] on both sides for the thread
//! descriptor (where `pthread_setspecific` values live) and clipped to its
//! mapping. (Those bounds, for a thread glibc started, can reach below its
//! stack pointer, into dead frames full of stale words: that is why a TLS
//! range in the stack's own mapping is not scanned.)
//!
//! **Segments** ([`Objects`]): `PT_LOAD` headers with `PF_W` of every
//! object `dl_iterate_phdr` lists (collected before the stop: it takes the
//! loader's lock, which a stopped thread may hold), except this library's
//! own when it is a shared object apart from the main program (its tables
//! point at every block); and the code ranges of this library and of the
//! dynamic linker, to tell the blocks the linker made.

use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering};

use super::reach::Mapped;

/// How long a thread may take to answer the stop signal.
pub const STOP_TIMEOUT_MS: u64 = 2000;
/// Bytes scanned beyond the static TLS bounds on each side (glibc's thread
/// descriptor is 2304 bytes on x86_64).
pub const TCB_SLACK: usize = 4096;
/// Threads that can be stopped at once.
const MAX_THREADS: usize = 1024;

/// The real-time signal that stops a thread: one low in the range (qemu-user
/// cannot deliver the guest's highest ones; glibc keeps those below
/// `SIGRTMIN` for itself).
pub fn stop_signal() -> c_int {
    libc::SIGRTMIN() + 4
}

const FREE: u32 = 0;
const ASKED: u32 = 1;
const STOPPED: u32 = 2;
const GONE: u32 = 3;

struct ThreadSlot {
    tid: AtomicI32,
    state: AtomicU32,
    sp: AtomicUsize,
    tls_lo: AtomicUsize,
    tls_hi: AtomicUsize,
}

static SLOTS: [ThreadSlot; MAX_THREADS] = [const {
    ThreadSlot {
        tid: AtomicI32::new(0),
        state: AtomicU32::new(FREE),
        sp: AtomicUsize::new(0),
        tls_lo: AtomicUsize::new(0),
        tls_hi: AtomicUsize::new(0),
    }
}; MAX_THREADS];
static USED: AtomicUsize = AtomicUsize::new(0);
/// `true` while a stop is in progress; the handler does nothing otherwise.
static STOPPING: AtomicBool = AtomicBool::new(false);
/// Bumped to release the stopped threads (their futex word).
static GENERATION: AtomicU32 = AtomicU32::new(0);
static HANDLER_SET: AtomicBool = AtomicBool::new(false);
/// `__libc_get_static_tls_bounds`, or 0.
static TLS_BOUNDS: AtomicUsize = AtomicUsize::new(0);

type TlsBoundsFn = unsafe extern "C" fn(*mut *mut c_void, *mut *mut c_void);

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// Look up what the stop needs and install the handler (may allocate:
/// `dlsym`; call before the stop). Idempotent.
pub fn prepare() {
    if TLS_BOUNDS.load(Ordering::Relaxed) == 0 {
        // SAFETY: a NUL-terminated name; RTLD_DEFAULT searches every object.
        let f =
            unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__libc_get_static_tls_bounds".as_ptr()) };
        TLS_BOUNDS.store(f as usize, Ordering::Relaxed);
    }
    if !HANDLER_SET.swap(true, Ordering::SeqCst) {
        // SAFETY: an all-zero sigaction is valid; we fill it below.
        let mut sa: libc::sigaction = unsafe { core::mem::zeroed() };
        sa.sa_sigaction = on_stop as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        // SAFETY: `sa.sa_mask` is valid for writes; the handler is
        // async-signal-safe (atomics, gettid, futex, and the TLS bounds
        // function, which only reads the thread pointer and loader data).
        unsafe {
            libc::sigfillset(&mut sa.sa_mask);
            libc::sigaction(stop_signal(), &sa, core::ptr::null_mut());
        }
    }
}

/// The calling thread's static TLS, widened by [`TCB_SLACK`] (not yet
/// clipped to its mapping).
pub fn tls_range() -> (usize, usize) {
    let f = TLS_BOUNDS.load(Ordering::Relaxed);
    if f == 0 {
        // Older glibc: around the thread pointer (x86_64: the TLS blocks
        // end at the descriptor, which pthread_self points at).
        // SAFETY: pthread_self has no preconditions.
        let tp = unsafe { libc::pthread_self() } as usize;
        return (tp.saturating_sub(16 * TCB_SLACK), tp + TCB_SLACK);
    }
    // SAFETY: `f` is glibc's `__libc_get_static_tls_bounds`, found by name.
    let f: TlsBoundsFn = unsafe { core::mem::transmute::<usize, TlsBoundsFn>(f) };
    let (mut lo, mut hi) = (core::ptr::null_mut(), core::ptr::null_mut());
    // SAFETY: two valid out-pointers.
    unsafe { f(&mut lo, &mut hi) };
    (
        (lo as usize).saturating_sub(TCB_SLACK),
        (hi as usize).saturating_add(TCB_SLACK),
    )
}

extern "C" fn on_stop(_sig: c_int, _info: *mut libc::siginfo_t, _uc: *mut c_void) {
    // SAFETY: errno is thread-local; saved and restored around the handler.
    let errno = unsafe { *libc::__errno_location() };
    let generation = GENERATION.load(Ordering::SeqCst);
    if STOPPING.load(Ordering::SeqCst) {
        let me = gettid();
        let used = USED.load(Ordering::SeqCst).min(MAX_THREADS);
        if let Some(s) = SLOTS[..used]
            .iter()
            .find(|s| s.tid.load(Ordering::SeqCst) == me)
        {
            let marker = 0u8;
            let sp = core::hint::black_box(&marker) as *const u8 as usize;
            let (lo, hi) = tls_range();
            s.sp.store(sp, Ordering::Relaxed);
            s.tls_lo.store(lo, Ordering::Relaxed);
            s.tls_hi.store(hi, Ordering::Relaxed);
            s.state.store(STOPPED, Ordering::SeqCst);
            while GENERATION.load(Ordering::SeqCst) == generation {
                // SAFETY: a futex wait on a static word; returns at once if
                // the word has changed, spuriously at worst.
                unsafe {
                    libc::syscall(
                        libc::SYS_futex,
                        GENERATION.as_ptr(),
                        libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                        generation,
                        core::ptr::null::<libc::timespec>(),
                    )
                };
            }
        }
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Call `f` with every thread id in `/proc/self/task`; `false` if it
/// cannot be read.
fn for_each_task(mut f: impl FnMut(i32)) -> bool {
    // SAFETY: a NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c"/proc/self/task".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return false;
    }
    let mut buf = [0u64; 512];
    loop {
        // SAFETY: `buf` is valid for writes of its size.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                fd,
                buf.as_mut_ptr(),
                core::mem::size_of_val(&buf),
            )
        };
        if n <= 0 {
            break;
        }
        // SAFETY: the kernel wrote `n` bytes of records into `buf`.
        let bytes = unsafe { core::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize) };
        let mut off = 0;
        // linux_dirent64: u64 ino, i64 off, u16 reclen, u8 type, name.
        while off + 19 < bytes.len() {
            let reclen = u16::from_ne_bytes([bytes[off + 16], bytes[off + 17]]) as usize;
            if reclen == 0 {
                break;
            }
            let name = &bytes[off + 19..(off + reclen).min(bytes.len())];
            let mut tid: i32 = 0;
            let mut digits = 0;
            for &c in name.iter().take_while(|&&c| c != 0) {
                if !c.is_ascii_digit() {
                    digits = 0;
                    break;
                }
                tid = tid.saturating_mul(10).saturating_add((c - b'0') as i32);
                digits += 1;
            }
            if digits > 0 {
                f(tid);
            }
            off += reclen;
        }
    }
    // SAFETY: our descriptor.
    unsafe { libc::close(fd) };
    true
}

/// Why the world could not be stopped.
#[derive(Debug, Clone, Copy)]
pub enum StopError {
    /// `/proc/self/task` could not be read.
    NoTaskList,
    /// More threads than the check can hold.
    TooManyThreads,
    /// This thread did not answer the stop signal (it blocks it).
    NoAnswer(i32),
    /// Another stop is running.
    Busy,
}

/// The other threads, stopped until this is dropped.
pub struct World {
    used: usize,
}

/// Stop every other thread of the process. Call [`prepare`] first.
pub fn stop() -> Result<World, StopError> {
    if STOPPING.swap(true, Ordering::SeqCst) {
        return Err(StopError::Busy);
    }
    for s in &SLOTS {
        s.tid.store(0, Ordering::SeqCst);
        s.state.store(FREE, Ordering::SeqCst);
    }
    USED.store(0, Ordering::SeqCst);
    let world = World { used: 0 };
    let mut world = world;
    let me = gettid();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    loop {
        let mut new = 0;
        let mut full = false;
        let mut refused = None;
        let ok = for_each_task(|tid| {
            if tid == me
                || SLOTS[..world.used]
                    .iter()
                    .any(|s| s.tid.load(Ordering::SeqCst) == tid)
            {
                return;
            }
            if world.used == MAX_THREADS {
                full = true;
                return;
            }
            let s = &SLOTS[world.used];
            s.tid.store(tid, Ordering::SeqCst);
            s.state.store(ASKED, Ordering::SeqCst);
            world.used += 1;
            USED.store(world.used, Ordering::SeqCst);
            new += 1;
            // SAFETY: tgkill to a thread of this process.
            if unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, stop_signal()) } != 0 {
                // SAFETY: errno is thread-local.
                if unsafe { *libc::__errno_location() } == libc::ESRCH {
                    s.state.store(GONE, Ordering::SeqCst);
                } else {
                    refused = Some(tid);
                }
            }
        });
        if let Some(tid) = refused {
            return Err(StopError::NoAnswer(tid));
        }
        if !ok {
            return Err(StopError::NoTaskList);
        }
        if full {
            return Err(StopError::TooManyThreads);
        }
        if new == 0 {
            return Ok(world);
        }
        wait_for_answers(&world, pid)?;
    }
}

fn wait_for_answers(world: &World, pid: i32) -> Result<(), StopError> {
    let start = crate::os::now_ms();
    let mut rounds = 0u32;
    loop {
        let mut waiting = None;
        for s in &SLOTS[..world.used] {
            if s.state.load(Ordering::SeqCst) == ASKED {
                waiting = Some(s);
            }
        }
        let Some(s) = waiting else {
            return Ok(());
        };
        rounds += 1;
        if rounds % 64 == 0 {
            let tid = s.tid.load(Ordering::SeqCst);
            // SAFETY: signal 0 only asks whether the thread exists.
            if unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, 0) } != 0 {
                let _ = s
                    .state
                    .compare_exchange(ASKED, GONE, Ordering::SeqCst, Ordering::SeqCst);
                continue;
            }
            if crate::os::now_ms().saturating_sub(start) > STOP_TIMEOUT_MS {
                return Err(StopError::NoAnswer(tid));
            }
        }
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
    }
}

impl World {
    /// `(stack pointer, TLS low, TLS high)` of every stopped thread.
    pub fn for_each_thread(&self, mut f: impl FnMut(usize, usize, usize)) {
        for s in &SLOTS[..self.used] {
            if s.state.load(Ordering::SeqCst) == STOPPED {
                f(
                    s.sp.load(Ordering::Relaxed),
                    s.tls_lo.load(Ordering::Relaxed),
                    s.tls_hi.load(Ordering::Relaxed),
                );
            }
        }
    }

    /// Number of threads stopped.
    pub fn stopped(&self) -> usize {
        SLOTS[..self.used]
            .iter()
            .filter(|s| s.state.load(Ordering::SeqCst) == STOPPED)
            .count()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        STOPPING.store(false, Ordering::SeqCst);
        GENERATION.fetch_add(1, Ordering::SeqCst);
        // SAFETY: a futex wake on a static word.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                GENERATION.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                i32::MAX,
            )
        };
    }
}

/// `/proc/self/maps`, read into mapped memory.
pub struct Maps {
    text: Mapped<u8>,
}

/// Largest `/proc/self/maps` read (a longer one is cut: the addresses past
/// the cut have no mapping, and what lies there is not scanned).
const MAPS_MAX: usize = 8 << 20;

impl Maps {
    /// Read the map now; `None` if it cannot be read.
    pub fn read() -> Option<Maps> {
        let mut text = Mapped::<u8>::with_capacity(MAPS_MAX)?;
        // SAFETY: a NUL-terminated path.
        let fd = unsafe {
            libc::open(
                c"/proc/self/maps".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return None;
        }
        let mut chunk = [0u8; 4096];
        loop {
            // SAFETY: `chunk` is valid for writes of its size.
            let n = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
            if n <= 0 {
                break;
            }
            if !chunk[..n as usize].iter().all(|&b| text.push(b)) {
                break;
            }
        }
        // SAFETY: our descriptor.
        unsafe { libc::close(fd) };
        Some(Maps { text })
    }

    /// The readable mapping that holds `addr`, as `(start, end)`.
    pub fn vma(&self, addr: usize) -> Option<(usize, usize)> {
        for line in self.text.as_slice().split(|&b| b == b'\n') {
            let (start, rest) = hex(line);
            let (end, rest) = hex(rest.get(1..)?);
            if start <= addr && addr < end {
                return (rest.get(1) == Some(&b'r')).then_some((start, end));
            }
        }
        None
    }

    /// This buffer's own mapping (to exclude from the roots).
    pub fn span(&self) -> (usize, usize) {
        self.text.span()
    }
}

/// A hexadecimal number at the start of `s`, and the rest.
fn hex(s: &[u8]) -> (usize, &[u8]) {
    let mut v = 0usize;
    let mut i = 0;
    while i < s.len() {
        let d = match s[i] {
            c @ b'0'..=b'9' => c - b'0',
            c @ b'a'..=b'f' => c - b'a' + 10,
            _ => break,
        };
        v = v.wrapping_mul(16).wrapping_add(d as usize);
        i += 1;
    }
    (v, &s[i..])
}

/// What the loaded objects give the check (read before the stop).
pub struct Objects {
    /// Writable segments of every object but this library (roots).
    pub writable: Mapped<(usize, usize)>,
    /// Code of the object this library is in (frames to skip to find who
    /// made a block).
    pub own_code: Mapped<(usize, usize)>,
    /// Code of the dynamic linker (`AT_BASE`).
    pub linker_code: Mapped<(usize, usize)>,
}

/// `true` if `addr` lies in one of `ranges`.
pub fn within(ranges: &Mapped<(usize, usize)>, addr: usize) -> bool {
    ranges
        .as_slice()
        .iter()
        .any(|&(a, b)| a <= addr && addr < b)
}

struct ObjectsArg<'a> {
    out: &'a mut Objects,
    own_base: usize,
    linker_base: usize,
    index: usize,
}

extern "C" fn on_object(info: *mut libc::dl_phdr_info, _size: usize, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `ObjectsArg` given to dl_iterate_phdr below;
    // `info` describes a loaded object for the duration of the call.
    let (a, info) = unsafe { (&mut *arg.cast::<ObjectsArg>(), &*info) };
    let index = a.index;
    a.index += 1;
    if info.dlpi_phdr.is_null() {
        return 0;
    }
    let base = info.dlpi_addr as usize;
    let own = base == a.own_base;
    // SAFETY: the loader gives `dlpi_phnum` program headers at `dlpi_phdr`.
    let phdrs = unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
    for ph in phdrs {
        if ph.p_type != libc::PT_LOAD || ph.p_memsz == 0 {
            continue;
        }
        let start = base.wrapping_add(ph.p_vaddr as usize);
        let range = (start, start + ph.p_memsz as usize);
        if ph.p_flags & libc::PF_X != 0 {
            if own {
                a.out.own_code.push(range);
            }
            if base == a.linker_base {
                a.out.linker_code.push(range);
            }
        }
        if ph.p_flags & libc::PF_W != 0 && !(own && index > 0) {
            a.out.writable.push(range);
        }
    }
    0
}

impl Objects {
    /// Ask the loader (`dl_iterate_phdr`: call before the stop). This
    /// library's own writable segments are left out when it is a shared
    /// object apart from the main program.
    pub fn read() -> Option<Objects> {
        let mut out = Objects {
            writable: Mapped::with_capacity(1 << 14)?,
            own_code: Mapped::with_capacity(64)?,
            linker_code: Mapped::with_capacity(64)?,
        };
        // SAFETY: an all-zero Dl_info is valid; dladdr only writes it.
        let mut dl: libc::Dl_info = unsafe { core::mem::zeroed() };
        // SAFETY: any address may be asked about.
        let own_base = if unsafe { libc::dladdr(Objects::read as *const c_void, &mut dl) } != 0 {
            dl.dli_fbase as usize
        } else {
            usize::MAX
        };
        // SAFETY: getauxval has no preconditions (0 if absent).
        let linker_base = match unsafe { libc::getauxval(libc::AT_BASE) } as usize {
            0 => usize::MAX,
            b => b,
        };
        let mut arg = ObjectsArg {
            out: &mut out,
            own_base,
            linker_base,
            index: 0,
        };
        // SAFETY: the callback only touches `arg`, which outlives the call.
        unsafe { libc::dl_iterate_phdr(Some(on_object), (&mut arg as *mut ObjectsArg).cast()) };
        Some(out)
    }
}
