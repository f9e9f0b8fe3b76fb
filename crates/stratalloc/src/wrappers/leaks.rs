//! The leak wrapper (`STRATALLOC_LEAKS=1|path`): remembers every live block
//! with the call stack that made it, and at exit lists the blocks still
//! live, grouped by call site, largest first, with a summary line in the
//! style of LeakSanitizer.
//!
//! ```text
//!   malloc(n) ──> capture stack (_Unwind_Backtrace, no allocation)
//!            ──> StackTable: frames → stack id   (deduplicated)
//!            ──> PtrTable:   pointer → (n, stack id)
//!   free(p)  ──> PtrTable.remove(p)
//!   at exit  ──> group live entries by stack id, symbolize, print
//! ```
//!
//! Stacks come from the unwinder (`.eh_frame`), so programs built without
//! frame pointers (Debian's default) are walked correctly. Symbols are
//! resolved only at report time, with the `backtrace` crate (DWARF and the
//! symbol table, so static functions of the main program show, with
//! `file:line` when debug information is present). Symbolizing allocates:
//! the wrapper stops tracking (every call passes straight through) before it
//! starts the report, and a per-thread flag keeps the unwinder's own
//! allocations, if any, from recursing.
//!
//! Every block live at exit is reported; no reachability scan is done, so a
//! block still pointed to by a global is listed too ("live at exit" is what
//! the report says).
//!
//! **Cost**: one unwind per allocation (a few hundred nanoseconds to a few
//! microseconds, depending on depth), a stack-table lookup and a table
//! insert; a table remove per free.
//!
//! Invariants (checked by [`Leaks::check`]): the pointer table's own; every
//! entry's stack id is 0 or a stack in the stack table.

use core::cell::Cell;
use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::backend::{Backend, BackendStats};
use crate::options::Output;
use crate::os::map_meta as map;
use crate::sync::{raw_try_lock_all, raw_unlock_all, SpinLock};
use crate::wrappers::sys::{pid, FdWriter, ReportFd};
use crate::wrappers::table::PtrTable;
use stratalloc_core::CheckError;

use crate::tuning::LEAK_SITES_PER_STRIPE as PER_STRIPE;
/// Frames kept per stack.
pub use crate::tuning::LEAK_STACK_DEPTH as DEPTH;
const STRIPES: usize = 16;

extern "C" {
    fn _Unwind_Backtrace(
        trace: extern "C" fn(*mut c_void, *mut c_void) -> c_int,
        arg: *mut c_void,
    ) -> c_int;
    fn _Unwind_GetIP(ctx: *mut c_void) -> usize;
}

struct Capture {
    frames: [usize; DEPTH],
    n: usize,
}

extern "C" fn on_frame(ctx: *mut c_void, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Capture` passed to `_Unwind_Backtrace` below,
    // alive for the whole walk; `ctx` is the unwinder's context.
    let (cap, ip) = unsafe { (&mut *arg.cast::<Capture>(), _Unwind_GetIP(ctx)) };
    if ip == 0 || cap.n == DEPTH {
        return 4; // _URC_NORMAL_STOP: end the walk
    }
    cap.frames[cap.n] = ip;
    cap.n += 1;
    0 // _URC_NO_REASON: go on
}

/// The return addresses of the calling stack, innermost first (this
/// function's own frame included). Does not allocate.
#[inline(never)]
pub fn capture(out: &mut [usize; DEPTH]) -> usize {
    let mut cap = Capture {
        frames: [0; DEPTH],
        n: 0,
    };
    // SAFETY: the callback only writes into `cap`, which outlives the call.
    unsafe { _Unwind_Backtrace(on_frame, (&mut cap as *mut Capture).cast()) };
    *out = cap.frames;
    cap.n
}

#[derive(Clone, Copy)]
#[repr(C)]
struct StackSlot {
    hash: u64,
    n: u32,
    frames: [usize; DEPTH],
}

struct Stripe {
    slots: *mut StackSlot,
    used: usize,
}

// SAFETY: a stripe owns its mapping and is reached under its lock.
unsafe impl Send for Stripe {}

/// Deduplicated call stacks: frames → a `u32` id (0 = none). Fixed
/// capacity, `STRIPES` locks; a full stripe answers 0.
pub struct StackTable {
    stripes: [SpinLock<Stripe>; STRIPES],
}

fn hash_frames(f: &[usize]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in f {
        h = (h ^ x as u64).wrapping_mul(0x0100_0000_01b3);
        h ^= h >> 29;
    }
    h | 1
}

impl StackTable {
    /// An empty table (memory is mapped on first use).
    pub const fn new() -> Self {
        StackTable {
            stripes: [const {
                SpinLock::new(Stripe {
                    slots: core::ptr::null_mut(),
                    used: 0,
                })
            }; STRIPES],
        }
    }

    /// The id of `frames`, adding it if new; 0 if the table is full.
    pub fn intern(&self, frames: &[usize]) -> u32 {
        let h = hash_frames(frames);
        let si = (h >> 60) as usize % STRIPES;
        let mut s = self.stripes[si].lock();
        if s.slots.is_null() {
            s.slots = map(PER_STRIPE * core::mem::size_of::<StackSlot>()).cast();
            if s.slots.is_null() {
                return 0;
            }
        }
        // SAFETY: `slots` maps PER_STRIPE zeroed slots owned by this stripe.
        let slots = unsafe { core::slice::from_raw_parts_mut(s.slots, PER_STRIPE) };
        let mut i = h as usize % PER_STRIPE;
        for _ in 0..PER_STRIPE {
            let slot = &mut slots[i];
            if slot.hash == 0 {
                if s.used * 8 >= PER_STRIPE * 7 {
                    return 0;
                }
                slot.hash = h;
                slot.n = frames.len() as u32;
                slot.frames[..frames.len()].copy_from_slice(frames);
                s.used += 1;
                return (si * PER_STRIPE + i + 1) as u32;
            }
            if slot.hash == h && &slot.frames[..slot.n as usize] == frames {
                return (si * PER_STRIPE + i + 1) as u32;
            }
            i = (i + 1) % PER_STRIPE;
        }
        0
    }

    /// The frames of stack `id` (copied out).
    pub fn frames(&self, id: u32, out: &mut [usize; DEPTH]) -> usize {
        if id == 0 {
            return 0;
        }
        let g = (id - 1) as usize;
        let (si, i) = (g / PER_STRIPE, g % PER_STRIPE);
        if si >= STRIPES {
            return 0;
        }
        let s = self.stripes[si].lock();
        if s.slots.is_null() {
            return 0;
        }
        // SAFETY: `i < PER_STRIPE`, inside the stripe's mapping.
        let slot = unsafe { &*s.slots.add(i) };
        if slot.hash == 0 {
            return 0;
        }
        *out = slot.frames;
        slot.n as usize
    }
}

impl StackTable {
    /// Take every stripe lock before `fork`: `false` (none held) if one
    /// gave up (see `sync::raw_try_lock_all`).
    #[must_use]
    pub fn try_lock_all(&self) -> bool {
        raw_try_lock_all(&self.stripes)
    }

    /// Release the locks taken by [`try_lock_all`](Self::try_lock_all).
    ///
    /// # Safety
    /// The caller took them with `try_lock_all`.
    pub unsafe fn unlock_all(&self) {
        // SAFETY: forwarded from the caller.
        unsafe { raw_unlock_all(&self.stripes) }
    }
}

impl Default for StackTable {
    fn default() -> Self {
        Self::new()
    }
}

thread_local! {
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// The leak wrapper over `inner`.
pub struct Leaks {
    inner: &'static dyn Backend,
    name: &'static str,
    out: Output,
    table: PtrTable,
    stacks: StackTable,
    reporting: AtomicBool,
    untracked: AtomicU64,
}

impl Leaks {
    /// Track the blocks of `inner`; report to `out` at exit.
    pub const fn new(inner: &'static dyn Backend, name: &'static str, out: Output) -> Self {
        Leaks {
            inner,
            name,
            out,
            table: PtrTable::new(),
            stacks: StackTable::new(),
            reporting: AtomicBool::new(false),
            untracked: AtomicU64::new(0),
        }
    }

    #[inline(never)]
    fn record(&self, p: *mut u8, size: usize) {
        if p.is_null() || self.reporting.load(Ordering::Relaxed) {
            return;
        }
        let reentered = BUSY.with(|b| b.replace(true));
        if reentered {
            self.untracked.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut frames = [0usize; DEPTH];
        let n = capture(&mut frames);
        // Drop this function's and `capture`'s own frames.
        let skip = n.min(1);
        let id = self.stacks.intern(&frames[skip..n]);
        if !self.table.insert(p as usize, size, id as u64) {
            self.untracked.fetch_add(1, Ordering::Relaxed);
        }
        BUSY.with(|b| b.set(false));
    }

    fn forget(&self, p: *mut u8) {
        if !self.reporting.load(Ordering::Relaxed) {
            self.table.remove(p as usize);
        }
    }

    /// Live blocks grouped by call stack: `(stack id, bytes, blocks)`,
    /// largest first. Stops tracking for good (this is for the report).
    pub fn groups(&self) -> Vec<(u32, u64, u64)> {
        self.reporting.store(true, Ordering::SeqCst);
        let mut raw: Vec<(u32, u64)> = Vec::with_capacity(self.table.len() + 16);
        self.table
            .for_each(|e| raw.push((e.tag as u32, e.size as u64)));
        raw.sort_unstable_by_key(|r| r.0);
        let mut groups: Vec<(u32, u64, u64)> = Vec::new();
        for (id, size) in raw {
            match groups.last_mut() {
                Some(g) if g.0 == id => {
                    g.1 += size;
                    g.2 += 1;
                }
                _ => groups.push((id, size, 1)),
            }
        }
        groups.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(&b.0)));
        groups
    }

    /// Write the leak report to `out` (allocates, as the wrappers' own
    /// code: see `sys::internal`; stops tracking).
    pub fn report(&self, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        crate::wrappers::sys::internal(|| self.report_inner(out))
    }

    fn report_inner(&self, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        let groups = self.groups();
        let total: u64 = groups.iter().map(|g| g.1).sum();
        let count: u64 = groups.iter().map(|g| g.2).sum();
        let me = pid();
        writeln!(
            out,
            "================================================================="
        )?;
        if count == 0 {
            writeln!(
                out,
                "=={me}== stratalloc: no leaks: no block is live at exit"
            )?;
        } else {
            writeln!(
                out,
                "=={me}==ERROR: stratalloc: detected memory leaks ({} blocks live at exit, backend {})",
                count, self.name
            )?;
        }
        const SHOWN: usize = 40;
        for &(id, bytes, n) in groups.iter().take(SHOWN) {
            writeln!(out)?;
            writeln!(
                out,
                "Leak of {bytes} byte(s) in {n} object(s) allocated from:"
            )?;
            let mut frames = [0usize; DEPTH];
            let k = self.stacks.frames(id, &mut frames);
            if k == 0 {
                writeln!(
                    out,
                    "    (no stack: recorded while the stack table was full)"
                )?;
            }
            let mut shown = 0;
            let mut leading = true;
            for &ip in &frames[..k] {
                for f in symbolize(ip) {
                    if leading && f.internal {
                        continue;
                    }
                    leading = false;
                    write!(out, "    #{shown} {ip:#x} in {}", f.name)?;
                    match (&f.file, f.line) {
                        (Some(file), Some(line)) => writeln!(out, " {file}:{line}")?,
                        (Some(file), None) => writeln!(out, " {file}")?,
                        _ => writeln!(out, " ({})", f.object)?,
                    }
                    shown += 1;
                }
            }
        }
        if groups.len() > SHOWN {
            let rest: u64 = groups[SHOWN..].iter().map(|g| g.1).sum();
            writeln!(
                out,
                "\n... and {} more call sites ({} bytes)",
                groups.len() - SHOWN,
                rest
            )?;
        }
        let untracked = self.untracked.load(Ordering::Relaxed);
        if untracked != 0 {
            writeln!(
                out,
                "\n({untracked} allocations were not tracked: made by the unwinder itself or with the tables full)"
            )?;
        }
        writeln!(out)?;
        writeln!(
            out,
            "SUMMARY: stratalloc: {total} byte(s) leaked in {count} allocation(s)."
        )
    }

    /// Report to the configured destination (at exit).
    pub fn finish(&self) {
        let dest = ReportFd::open(&self.out);
        if dest.fd() < 0 {
            return;
        }
        let mut w = FdWriter::new(dest.fd());
        let _ = self.report(&mut w);
        w.flush();
    }

    /// Verify the invariants in the module docs.
    pub fn check(&self) -> Result<(), CheckError> {
        self.table.check()?;
        let mut bad = None;
        self.table.for_each(|e| {
            let mut f = [0; DEPTH];
            if e.tag != 0 && self.stacks.frames(e.tag as u32, &mut f) == 0 {
                bad = Some(e.key);
            }
        });
        match bad {
            Some(k) => Err(CheckError::new(
                k,
                "entry names a stack that does not exist",
            )),
            None => Ok(()),
        }
    }
}

/// A frame as the report prints it.
struct Frame {
    name: String,
    file: Option<String>,
    line: Option<u32>,
    object: String,
    internal: bool,
}

const ALLOC_FNS: &[&str] = &[
    "malloc",
    "calloc",
    "realloc",
    "reallocarray",
    "free",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
    "operator new",
];

fn is_internal(name: &str, object: &str) -> bool {
    if name.contains("::tests::") {
        return false;
    }
    object.contains("libstratalloc")
        || name.starts_with("_Unwind")
        || name.starts_with("__rust_")
        || name.contains("stratalloc::wrappers::")
        || name.contains("stratalloc_capi::")
        || name.contains("stratalloc::global")
        || ALLOC_FNS.contains(&name)
}

/// The logical frames at `ip`: functions inlined there first, innermost
/// first, then the function the code belongs to.
fn symbolize(ip: usize) -> Vec<Frame> {
    let object = object_of(ip);
    let mut out = Vec::new();
    backtrace::resolve(ip as *mut c_void, |s| {
        let name = s
            .name()
            .map(|n| format!("{n:#}"))
            .unwrap_or_else(|| "??".to_string());
        out.push(Frame {
            internal: is_internal(&name, &object),
            name,
            file: s.filename().map(|f| f.display().to_string()),
            line: s.lineno(),
            object: object.clone(),
        });
    });
    if out.is_empty() {
        out.push(Frame {
            name: "??".to_string(),
            file: None,
            line: None,
            internal: is_internal("??", &object),
            object,
        });
    }
    out
}

fn object_of(ip: usize) -> String {
    // SAFETY: an all-zero Dl_info is valid; dladdr only writes it.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // SAFETY: `info` is valid for writes; dladdr accepts any address.
    let ok = unsafe { libc::dladdr(ip as *const c_void, &mut info) };
    if ok == 0 || info.dli_fname.is_null() {
        return "?".to_string();
    }
    // SAFETY: dladdr gives a NUL-terminated name owned by the loader.
    let s = unsafe { core::ffi::CStr::from_ptr(info.dli_fname) };
    let s = s.to_string_lossy();
    let name = s.rsplit('/').next().unwrap_or(&s);
    format!("{name}+{:#x}", ip.wrapping_sub(info.dli_fbase as usize))
}

// SAFETY: blocks come from `inner` unchanged; the wrapper only records them.
unsafe impl Backend for Leaks {
    fn name(&self) -> &'static str {
        self.name
    }

    fn alloc(&self, size: usize, align: usize) -> *mut u8 {
        let p = self.inner.alloc(size, align);
        self.record(p, size);
        p
    }

    fn alloc_zeroed(&self, size: usize, align: usize) -> *mut u8 {
        let p = self.inner.alloc_zeroed(size, align);
        self.record(p, size);
        p
    }

    unsafe fn free(&self, p: *mut u8) {
        if p.is_null() {
            return;
        }
        self.forget(p);
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.free(p) }
    }

    unsafe fn realloc(&self, p: *mut u8, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded from the caller.
        let q = unsafe { self.inner.realloc(p, new_size) };
        if !q.is_null() {
            self.forget(p);
            self.record(q, new_size);
        }
        q
    }

    unsafe fn usable_size(&self, p: *const u8) -> usize {
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.usable_size(p) }
    }

    fn trim(&self) -> bool {
        self.inner.trim()
    }
    fn fork_prepare(&self) -> bool {
        super::prepare_over(
            self.inner,
            2,
            |i| match i {
                0 => self.stacks.try_lock_all(),
                _ => self.table.try_lock_all(),
            },
            // SAFETY: set `i` was just taken by `take`.
            |i| unsafe {
                match i {
                    0 => self.stacks.unlock_all(),
                    _ => self.table.unlock_all(),
                }
            },
        )
    }
    fn fork_parent(&self) {
        self.inner.fork_parent();
        // SAFETY: taken in fork_prepare.
        unsafe {
            self.table.unlock_all();
            self.stacks.unlock_all();
        }
    }
    fn fork_child(&self) {
        self.inner.fork_child();
        // SAFETY: taken in fork_prepare.
        unsafe {
            self.table.unlock_all();
            self.stacks.unlock_all();
        }
    }
    fn stats(&self) -> BackendStats {
        self.inner.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wrappers::testing::SysBackend;

    /// Three blocks from one call site: a loop with an opaque trip count
    /// (an iterator's `collect` reaches its closure from two code paths,
    /// and a constant count gets unrolled into three calls; either way the
    /// stacks, which are what blocks are grouped by, would differ).
    #[inline(never)]
    fn leak_three(l: &Leaks) -> Vec<*mut u8> {
        let mut v = Vec::with_capacity(3);
        for _ in 0..std::hint::black_box(3) {
            v.push(l.alloc(1234, 16));
        }
        v
    }

    #[inline(never)]
    fn leak_one_big(l: &Leaks) -> *mut u8 {
        l.alloc(50_000, 16)
    }

    #[test]
    fn stacks_are_deduplicated() {
        let t = StackTable::new();
        let a = t.intern(&[1, 2, 3]);
        let b = t.intern(&[1, 2, 4]);
        assert_ne!(a, 0);
        assert_ne!(a, b);
        assert_eq!(t.intern(&[1, 2, 3]), a);
        let mut f = [0; DEPTH];
        assert_eq!(t.frames(a, &mut f), 3);
        assert_eq!(&f[..3], &[1, 2, 3]);
    }

    #[test]
    fn live_blocks_are_grouped_by_call_site_and_named() {
        let l: &'static Leaks = Box::leak(Box::new(Leaks::new(
            SysBackend::leaked(),
            "leaks(sys)",
            Output::Off,
        )));
        let three = leak_three(l);
        let big = leak_one_big(l);
        let freed = l.alloc(77, 16);
        // SAFETY: live block of `l`.
        unsafe { l.free(freed) };
        // SAFETY: live block of `l`.
        let moved = unsafe { l.realloc(three[0], 1234) };
        l.check().unwrap();
        let mut text = String::new();
        l.report(&mut text).unwrap();
        assert!(
            text.contains("Leak of 50000 byte(s) in 1 object(s)"),
            "{text}"
        );
        // The realloc moved one block's record to this test function.
        assert!(
            text.contains("Leak of 2468 byte(s) in 2 object(s)"),
            "{text}"
        );
        assert!(text.contains("leak_three"), "{text}");
        assert!(text.contains("leak_one_big"), "{text}");
        assert!(text.contains("leaks.rs:"), "{text}");
        assert!(text.contains("SUMMARY: stratalloc: 53702 byte(s) leaked in 4 allocation(s)."));
        let big_at = text.find("50000 byte").unwrap();
        let three_at = text.find("2468 byte").unwrap();
        assert!(big_at < three_at, "largest first");
        for p in [three[1], three[2], big, moved] {
            // SAFETY: live blocks of `l`.
            unsafe { l.free(p) };
        }
    }
}
