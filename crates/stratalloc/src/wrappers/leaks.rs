//! The leak wrapper (`STRATALLOC_LEAKS=1|path`): remembers every live block
//! with the call stack that made it, and at exit finds the blocks no
//! pointer reaches any more, as LeakSanitizer does, and lists them grouped
//! by call site, largest first, direct leaks before indirect ones.
//!
//! ```text
//!   malloc(n) ──> capture stack (_Unwind_Backtrace, no allocation)
//!            ──> StackTable: frames → stack id   (deduplicated)
//!            ──> PtrTable:   pointer → (n, stack id)
//!   free(p)  ──> PtrTable.remove(p)
//!   at exit  ──> lock the table, stop the other threads (world),
//!                copy the table, mark from the roots (reach), resume,
//!                stop tracking, symbolize, apply suppressions, print;
//!                leaks found: exit status 23 (STRATALLOC_LEAKS_EXITCODE)
//! ```
//!
//! The marking runs with the table's locks held and every other thread
//! stopped, so every block in the copy is live while its memory is read (a
//! free waits in the table before it reaches the allocator), and nothing
//! on that path allocates. The roots are [`super::world`]'s (segments,
//! stacks, TLS) and this thread's registers (`getcontext` into a local,
//! scanned with the stack); [`super::reach`] does the marking.
//!
//! Stacks come from the unwinder (`.eh_frame`), so programs built without
//! frame pointers (Debian's default) are walked correctly. Symbols are
//! resolved only at report time, with the `backtrace` crate (DWARF and the
//! symbol table, so static functions of the main program show, with
//! `file:line` when debug information is present); without the `symbolize`
//! feature each frame is printed as `object+offset`. Symbolizing allocates:
//! the wrapper stops tracking (every call passes straight through) before it
//! starts the report, and a per-thread flag keeps the unwinder's own
//! allocations, if any, from recursing.
//!
//! **Options** (`STRATALLOC_LEAKS_*`, see `options`): `REACHABLE=1` lists
//! the still-reachable blocks too; `SUPPRESS=file` drops leaks whose stack
//! names a function or library matching a `leak:NAME` line (`*` matches
//! any run of characters; blocks that only a suppressed leak points to are
//! suppressed with it); `EXITCODE=n` is the status for leaks found (0:
//! leave the program's own).
//!
//! **Limits** (LeakSanitizer's, mostly): scanning is conservative, so a
//! stale or look-alike word keeps a block (a missed leak, never a false
//! one); memory the program maps itself (a Python arena, a custom pool) is
//! no root, so blocks only it points to are reported (run Python with
//! `PYTHONMALLOC=malloc`); a thread that blocks the stop signal makes the
//! check be skipped (the report says so).
//!
//! **Cost**: one unwind per allocation (a few hundred nanoseconds to a few
//! microseconds, depending on depth), a stack-table lookup and a table
//! insert; a table remove per free; at exit, one pass over the roots and
//! the live blocks.
//!
//! Invariants (checked by [`Leaks::check`]): the pointer table's own; every
//! entry's stack id is 0 or a stack in the stack table.

use core::cell::Cell;
use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::backend::Backend;
use crate::options::{LeakOptions, Output, PathBuf};
use crate::os::map_meta as map;
use crate::sync::{raw_lock_all, raw_try_lock_all, raw_unlock_all, SpinLock};
use crate::wrappers::reach::{Block, Mapped, Marker, State};
use crate::wrappers::sys::{pid, FdWriter, ReportFd};
use crate::wrappers::table::PtrTable;
use crate::wrappers::world::{self, Objects, StopError};
use std::os::unix::ffi::OsStrExt;
use stratalloc_core::CheckError;

use crate::tuning::LEAK_SITES_PER_STRIPE as PER_STRIPE;
/// Frames kept per stack.
pub use crate::tuning::LEAK_STACK_DEPTH as DEPTH;
const STRIPES: usize = 16;
/// The largest stack id a [`StackTable`] gives.
pub const MAX_STACK_ID: u32 = (STRIPES * PER_STRIPE) as u32;

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
        match Self::locate(id) {
            Some((si, i)) => Self::frames_in(&self.stripes[si].lock(), i, out),
            None => 0,
        }
    }

    /// [`frames`](Self::frames) with every stripe lock already held by the
    /// caller (no lock is taken).
    ///
    /// # Safety
    /// The caller holds every stripe lock through [`lock_all`](Self::lock_all).
    pub unsafe fn frames_held(&self, id: u32, out: &mut [usize; DEPTH]) -> usize {
        match Self::locate(id) {
            // SAFETY: held by the caller.
            Some((si, i)) => Self::frames_in(unsafe { self.stripes[si].raw_value() }, i, out),
            None => 0,
        }
    }

    /// The stripe and slot of stack `id`.
    fn locate(id: u32) -> Option<(usize, usize)> {
        let g = (id as usize).checked_sub(1)?;
        let (si, i) = (g / PER_STRIPE, g % PER_STRIPE);
        (si < STRIPES).then_some((si, i))
    }

    fn frames_in(s: &Stripe, i: usize, out: &mut [usize; DEPTH]) -> usize {
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
    /// Take every stripe lock, waiting for each (the leak check, before it
    /// stops the other threads).
    pub fn lock_all(&self) {
        raw_lock_all(&self.stripes);
    }

    /// Take every stripe lock before `fork`: `false` (none held) if one
    /// gave up (see `sync::raw_try_lock_all`).
    #[must_use]
    pub fn try_lock_all(&self) -> bool {
        raw_try_lock_all(&self.stripes)
    }

    /// Release the locks taken by [`lock_all`](Self::lock_all) or
    /// [`try_lock_all`](Self::try_lock_all).
    ///
    /// # Safety
    /// The caller took them with one of those.
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

/// The id in `stacks` of the calling stack (the wrappers' own frames
/// included: reports skip them), captured without allocating; 0 if the
/// table is full; `None` if this thread is capturing already (the unwinder
/// allocating).
#[inline(never)]
pub fn stack_here(stacks: &StackTable) -> Option<u32> {
    if BUSY.with(|b| b.replace(true)) {
        return None;
    }
    let mut frames = [0usize; DEPTH];
    let n = capture(&mut frames);
    // Drop `capture`'s own frame.
    let skip = n.min(1);
    let id = stacks.intern(&frames[skip..n]);
    BUSY.with(|b| b.set(false));
    Some(id)
}

/// Print stack `id` of `stacks`, one symbolized frame a line, from the
/// first frame outside the allocator (allocates: call from the wrappers'
/// own code, see `sys::internal`).
pub fn write_stack(
    stacks: &StackTable,
    out: &mut dyn core::fmt::Write,
    id: u32,
) -> core::fmt::Result {
    let mut frames = [0usize; DEPTH];
    let k = stacks.frames(id, &mut frames);
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
    Ok(())
}

/// The leak wrapper over `inner`.
pub struct Leaks {
    inner: &'static dyn Backend,
    name: &'static str,
    out: Output,
    opts: LeakOptions,
    table: PtrTable,
    stacks: StackTable,
    reporting: AtomicBool,
    untracked: AtomicU64,
}

/// Why the reachability check could not run.
#[derive(Debug, Clone, Copy)]
pub enum Skipped {
    /// The other threads could not be stopped.
    Stop(StopError),
    /// Memory for the marking could not be mapped.
    NoMemory,
    /// `/proc/self/maps` could not be read.
    NoMaps,
}

impl core::fmt::Display for Skipped {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Skipped::Stop(StopError::NoAnswer(tid)) => write!(
                f,
                "thread {tid} did not stop (it blocks signal {})",
                world::stop_signal()
            ),
            Skipped::Stop(StopError::TooManyThreads) => f.write_str("too many threads to stop"),
            Skipped::Stop(StopError::NoTaskList) => f.write_str("/proc/self/task cannot be read"),
            Skipped::Stop(StopError::Busy) => f.write_str("another check is running"),
            Skipped::NoMemory => f.write_str("no memory for the marking"),
            Skipped::NoMaps => f.write_str("/proc/self/maps cannot be read"),
        }
    }
}

/// Blocks of one kind from one call stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Group {
    /// Direct, indirect, reachable or suppressed.
    pub state: State,
    /// The allocation stack's id.
    pub stack: u32,
    /// Bytes asked for, summed.
    pub bytes: u64,
    /// Blocks.
    pub count: u64,
}

/// What the leak check found, in figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// `(bytes, blocks)` leaked, direct and indirect, not suppressed.
    pub leaked: (u64, u64),
    /// `(bytes, blocks)` still reachable.
    pub reachable: (u64, u64),
    /// `false` if the check could not run (see [`Findings::skipped`]).
    pub checked: bool,
}

/// What the leak check found.
pub struct Findings {
    /// Groups, direct leaks first, then indirect, reachable, suppressed;
    /// largest first within each kind.
    pub groups: Vec<Group>,
    /// Suppression patterns with the blocks and bytes each matched.
    pub used: Vec<(String, u64, u64)>,
    /// Set if the check could not run (then every block is in `groups` as
    /// a direct leak: live at exit, reachability unknown).
    pub skipped: Option<Skipped>,
}

impl Findings {
    /// `(bytes, blocks)` of the groups in `state`.
    pub fn total(&self, state: State) -> (u64, u64) {
        self.groups
            .iter()
            .filter(|g| g.state == state)
            .fold((0, 0), |(b, n), g| (b + g.bytes, n + g.count))
    }

    /// `(bytes, blocks)` leaked: direct and indirect.
    pub fn leaked(&self) -> (u64, u64) {
        let (db, dn) = self.total(State::Unreached);
        let (ib, i_n) = self.total(State::Indirect);
        (db + ib, dn + i_n)
    }
}

fn kind_order(s: State) -> u8 {
    match s {
        State::Unreached => 0,
        State::Indirect => 1,
        State::Reachable => 2,
        State::Suppressed => 3,
    }
}

impl Leaks {
    /// Track the blocks of `inner`; report to `out` at exit.
    pub const fn new(
        inner: &'static dyn Backend,
        name: &'static str,
        out: Output,
        opts: LeakOptions,
    ) -> Self {
        Leaks {
            inner,
            name,
            out,
            opts,
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
        let Some(id) = stack_here(&self.stacks) else {
            self.untracked.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if !self.table.insert(p as usize, size, id as u64) {
            self.untracked.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn forget(&self, p: *mut u8) {
        if !self.reporting.load(Ordering::Relaxed) {
            self.table.remove(p as usize);
        }
    }

    /// Every live block, marked by reachability (see the module docs).
    /// `sp`: where this thread's stack is scanned from, with its registers
    /// saved there (see [`report`](Self::report): the frames of the check
    /// itself, below it, are not scanned). Stops tracking for good. Does not
    /// allocate from the heap (but `dlsym` may, once, before the stop).
    #[inline(never)]
    pub fn scan(&self, sp: usize) -> Result<Mapped<Block>, Skipped> {
        world::prepare();
        let objects = Objects::read().ok_or(Skipped::NoMemory)?;
        self.stacks.lock_all();
        self.table.lock_all();
        let r = self.scan_locked(sp, &objects);
        self.reporting.store(true, Ordering::SeqCst);
        // SAFETY: taken by `lock_all` above; `scan_locked` keeps no
        // reference into the tables.
        unsafe {
            self.table.unlock_all();
            self.stacks.unlock_all();
        }
        r
    }

    /// `true` if the first frame of stack `id` outside this library is in
    /// the dynamic linker (a thread's DTV, a dynamic TLS block).
    ///
    /// # Safety
    /// Every stack-table lock is held by the caller.
    unsafe fn made_by_linker(&self, id: u32, objects: &Objects) -> bool {
        let mut frames = [0usize; DEPTH];
        // SAFETY: forwarded from the caller.
        let n = unsafe { self.stacks.frames_held(id, &mut frames) };
        frames[..n]
            .iter()
            .find(|&&ip| !world::within(&objects.own_code, ip))
            .is_some_and(|&ip| world::within(&objects.linker_code, ip))
    }

    /// The marking, with every table lock held; `sp`: where this thread's
    /// stack (its registers included) starts.
    ///
    /// Blocks the dynamic linker made are kept as roots, as LeakSanitizer
    /// does: glibc keeps a joined thread's stack, descriptor and DTV for
    /// the next thread, and no live thread's roots reach them.
    #[inline(never)]
    fn scan_locked(&self, sp: usize, objects: &Objects) -> Result<Mapped<Block>, Skipped> {
        let segs = &objects.writable;
        let mut excluded = Mapped::<(usize, usize)>::with_capacity(256).ok_or(Skipped::NoMemory)?;
        // SAFETY: every lock is held (by `scan`).
        let n = unsafe { self.table.mappings_held(|a, b| _ = excluded.push((a, b))) };
        let mut blocks = Mapped::<Block>::with_capacity(n + 1).ok_or(Skipped::NoMemory)?;
        let world = world::stop().map_err(Skipped::Stop)?;
        // SAFETY: every lock is held (by `scan`).
        unsafe {
            self.table.for_each_held(|e| {
                _ = blocks.push(Block {
                    start: e.key,
                    size: e.size,
                    stack: e.tag as u32,
                    state: State::Unreached,
                })
            })
        };
        let maps = world::Maps::read().ok_or(Skipped::NoMaps)?;
        for span in [blocks.span(), segs.span(), maps.span(), excluded.span()] {
            excluded.push(span);
        }
        let mut m = Marker::new(blocks.as_mut_slice()).ok_or(Skipped::NoMemory)?;
        excluded.push(m.work_span());
        if !objects.linker_code.as_slice().is_empty() {
            // SAFETY: every stack-table lock is held (by `scan`).
            m.keep(|b| unsafe { self.made_by_linker(b.stack, objects) });
        }
        let excluded = excluded.as_slice();
        for &(a, b) in segs.as_slice() {
            if maps.vma(a).is_some() {
                // SAFETY: a loaded object's segment, mapped readable.
                unsafe { m.scan_root(a, b, excluded) };
            }
        }
        let mut thread = |sp: usize, tls_lo: usize, tls_hi: usize| {
            let stack = maps.vma(sp);
            if let Some((_, end)) = stack {
                // SAFETY: from a stack pointer to the end of its mapping.
                unsafe { m.scan_root(sp, end, excluded) };
            }
            // The TLS of a thread glibc started lies at the top of its
            // stack mapping, scanned above; the main thread's lies apart.
            // (Never below the stack pointer: the dead frames there hold
            // stale words.)
            let probe = tls_hi.saturating_sub(world::TCB_SLACK + 1);
            match maps.vma(probe) {
                Some(tls) if Some(tls) != stack => {
                    // SAFETY: clipped to a readable mapping.
                    unsafe { m.scan_root(tls_lo.max(tls.0), tls_hi.min(tls.1), excluded) };
                }
                _ => {}
            }
        };
        let (lo, hi) = world::tls_range();
        thread(sp, lo, hi);
        world.for_each_thread(&mut thread);
        // SAFETY: every block in the copy is live (its free, if any, waits
        // in the table) and the other threads are stopped.
        unsafe {
            m.flood();
            m.classify();
        }
        drop(world);
        Ok(blocks)
    }

    /// Run the check and group what it found (allocates; stops tracking);
    /// `sp` as for [`scan`](Self::scan).
    pub fn findings(&self, sp: usize) -> Findings {
        let scanned = self.scan(sp);
        self.reporting.store(true, Ordering::SeqCst);
        let (mut blocks, skipped) = match scanned {
            Ok(b) => (Some(b), None),
            Err(why) => (None, Some(why)),
        };
        let mut used = Vec::new();
        if let (Some(b), Some(path)) = (blocks.as_mut(), &self.opts.suppress) {
            used = self.suppress(b.as_mut_slice(), path);
        }
        let mut raw: Vec<(u8, u32, u64)> = Vec::new();
        match &blocks {
            Some(b) => raw.extend(
                b.as_slice()
                    .iter()
                    .map(|b| (kind_order(b.state), b.stack, b.size as u64)),
            ),
            None => self
                .table
                .for_each(|e| raw.push((0, e.tag as u32, e.size as u64))),
        }
        raw.sort_unstable();
        let state_of = [
            State::Unreached,
            State::Indirect,
            State::Reachable,
            State::Suppressed,
        ];
        let mut groups: Vec<Group> = Vec::new();
        for (k, stack, size) in raw {
            match groups.last_mut() {
                Some(g) if kind_order(g.state) == k && g.stack == stack => {
                    g.bytes += size;
                    g.count += 1;
                }
                _ => groups.push(Group {
                    state: state_of[k as usize],
                    stack,
                    bytes: size,
                    count: 1,
                }),
            }
        }
        groups.sort_by(|a, b| {
            kind_order(a.state)
                .cmp(&kind_order(b.state))
                .then(b.bytes.cmp(&a.bytes))
                .then(b.count.cmp(&a.count))
                .then(a.stack.cmp(&b.stack))
        });
        Findings {
            groups,
            used,
            skipped,
        }
    }

    /// Mark the unreachable blocks whose stack matches a pattern of the
    /// file `path` as suppressed (and what only they reach); the patterns
    /// with the blocks and bytes each matched.
    fn suppress(&self, blocks: &mut [Block], path: &PathBuf) -> Vec<(String, u64, u64)> {
        let text = match std::fs::read(std::ffi::OsStr::from_bytes(path.as_cstr().to_bytes())) {
            Ok(t) => String::from_utf8_lossy(&t).into_owned(),
            Err(e) => {
                crate::eprint_noalloc!("stratalloc: cannot read suppressions {:?}: {}\n", path, e);
                return Vec::new();
            }
        };
        let mut used: Vec<(String, u64, u64)> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("leak:"))
            .map(|p| (p.trim().to_string(), 0, 0))
            .filter(|p| !p.0.is_empty())
            .collect();
        let mut verdict: std::collections::HashMap<u32, Option<usize>> = Default::default();
        for b in blocks.iter_mut() {
            if !matches!(b.state, State::Unreached | State::Indirect) {
                continue;
            }
            let hit = *verdict.entry(b.stack).or_insert_with(|| {
                let mut frames = [0usize; DEPTH];
                let k = self.stacks.frames(b.stack, &mut frames);
                frames[..k]
                    .iter()
                    .flat_map(|&ip| symbolize(ip))
                    .find_map(|f| {
                        used.iter()
                            .position(|(p, _, _)| glob(p, &f.name) || glob(p, &f.object))
                    })
            });
            if let Some(i) = hit {
                b.state = State::Suppressed;
                used[i].1 += 1;
                used[i].2 += b.size as u64;
            }
        }
        if let Some(mut m) = Marker::new(blocks) {
            // SAFETY: only unreachable blocks are read: no running thread
            // can reach them to free them.
            unsafe { m.spread_suppressed() };
        }
        used.retain(|u| u.1 != 0);
        used
    }

    /// Write the leak report to `out` (allocates, as the wrappers' own
    /// code: see `sys::internal`; stops tracking). What was found, in
    /// figures (the findings themselves are dropped inside, since what the
    /// wrappers' own code allocates is freed there too).
    ///
    /// This thread's stack is scanned from here up: the registers are saved
    /// in this frame, and the frames of the check below it (which have held
    /// every block's address) are left out.
    #[inline(never)]
    pub fn report(&self, out: &mut dyn core::fmt::Write) -> Result<Outcome, core::fmt::Error> {
        let regs = Registers::capture();
        let sp = regs.address();
        let r = crate::wrappers::sys::internal(|| {
            let f = self.findings(sp);
            self.write_report(&f, out)?;
            Ok(Outcome {
                leaked: f.leaked(),
                reachable: f.total(State::Reachable),
                checked: f.skipped.is_none(),
            })
        });
        core::hint::black_box(&regs);
        r
    }

    fn write_report(&self, f: &Findings, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        let (total, count) = f.leaked();
        let (rb, rn) = f.total(State::Reachable);
        let me = pid();
        writeln!(
            out,
            "================================================================="
        )?;
        if let Some(why) = f.skipped {
            writeln!(
                out,
                "=={me}== stratalloc: leak check skipped: {why}; {count} block(s) live at exit, listed below without reachability"
            )?;
        } else if count == 0 {
            writeln!(
                out,
                "=={me}== stratalloc: no leaks ({rn} block(s), {rb} byte(s) still reachable at exit)"
            )?;
        } else {
            writeln!(
                out,
                "=={me}==ERROR: stratalloc: detected memory leaks (backend {})",
                self.name
            )?;
        }
        const SHOWN: usize = 40;
        let listed = |g: &&Group| match g.state {
            State::Unreached | State::Indirect => true,
            State::Reachable => self.opts.reachable,
            State::Suppressed => false,
        };
        let mut rest = (0usize, 0u64);
        for (i, g) in f.groups.iter().filter(listed).enumerate() {
            if i >= SHOWN {
                rest = (rest.0 + 1, rest.1 + g.bytes);
                continue;
            }
            let what = match (g.state, f.skipped) {
                (State::Unreached, Some(_)) => "Live block(s) at exit:",
                (State::Unreached, None) => "Direct leak of",
                (State::Indirect, _) => "Indirect leak of",
                _ => "Still reachable:",
            };
            writeln!(out)?;
            writeln!(
                out,
                "{what} {} byte(s) in {} object(s) allocated from:",
                g.bytes, g.count
            )?;
            write_stack(&self.stacks, out, g.stack)?;
        }
        if rest.0 != 0 {
            writeln!(
                out,
                "\n... and {} more call sites ({} bytes)",
                rest.0, rest.1
            )?;
        }
        if !f.used.is_empty() {
            writeln!(out, "-----------------------------------------------------")?;
            writeln!(out, "Suppressions used:")?;
            writeln!(out, "  count      bytes template")?;
            for (p, n, b) in &f.used {
                writeln!(out, "{n:7} {b:10} leak:{p}")?;
            }
            writeln!(out, "-----------------------------------------------------")?;
        }
        let untracked = self.untracked.load(Ordering::Relaxed);
        if untracked != 0 {
            writeln!(
                out,
                "\n({untracked} allocations were not tracked: made by the unwinder itself or with the tables full)"
            )?;
        }
        if f.skipped.is_none() && count != 0 && !self.opts.reachable && rn != 0 {
            writeln!(
                out,
                "\n({rn} block(s), {rb} byte(s) still reachable: not leaks; STRATALLOC_LEAKS_REACHABLE=1 lists them)"
            )?;
        }
        writeln!(out)?;
        if f.skipped.is_some() {
            return writeln!(
                out,
                "SUMMARY: stratalloc: leak check skipped; {total} byte(s) live in {count} allocation(s)."
            );
        }
        writeln!(
            out,
            "SUMMARY: stratalloc: {total} byte(s) leaked in {count} allocation(s)."
        )
    }

    /// Report to the configured destination (at exit). The exit status to
    /// leave with, if leaks were found and a status is configured.
    pub fn finish(&self) -> Option<u8> {
        let dest = ReportFd::open(&self.out);
        if dest.fd() < 0 {
            return None;
        }
        let mut w = FdWriter::new(dest.fd());
        let found = self.report(&mut w);
        w.flush();
        match found {
            Ok(o) if o.checked && o.leaked.1 != 0 && self.opts.exitcode != 0 => {
                Some(self.opts.exitcode)
            }
            _ => None,
        }
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
pub(crate) struct Frame {
    pub(crate) name: String,
    pub(crate) file: Option<String>,
    pub(crate) line: Option<u32>,
    pub(crate) object: String,
    pub(crate) internal: bool,
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
        || name.starts_with("__rustc::")
        || name.contains("stratalloc::wrappers::")
        || name.contains("stratalloc_capi::")
        || name.contains("stratalloc::global")
        || ALLOC_FNS.contains(&name)
}

/// The logical frames at `ip`: functions inlined there first, innermost
/// first, then the function the code belongs to.
pub(crate) fn symbolize(ip: usize) -> Vec<Frame> {
    let object = object_of(ip);
    let mut out = Vec::new();
    #[cfg(feature = "symbolize")]
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

/// `true` if `text` contains `pattern`, where `*` in the pattern matches
/// any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    let mut rest = text;
    for piece in pattern.split('*').filter(|p| !p.is_empty()) {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

/// The calling thread's registers, saved where the stack scan finds them
/// (`getcontext` on glibc's x86_64 and aarch64; elsewhere nothing is saved
/// and a pointer held only in a callee-saved register may be missed).
#[repr(C)]
struct Registers {
    #[cfg(all(
        target_env = "gnu",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    uc: libc::ucontext_t,
    #[cfg(not(all(
        target_env = "gnu",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    _none: usize,
}

impl Registers {
    #[inline(always)]
    fn capture() -> Self {
        #[cfg(all(
            target_env = "gnu",
            any(target_arch = "x86_64", target_arch = "aarch64")
        ))]
        {
            // SAFETY: an all-zero ucontext_t is valid; getcontext fills it.
            let uc = unsafe { core::mem::zeroed() };
            let mut r = Registers { uc };
            // SAFETY: `r.uc` is valid for writes.
            unsafe { libc::getcontext(&mut r.uc) };
            r
        }
        #[cfg(not(all(
            target_env = "gnu",
            any(target_arch = "x86_64", target_arch = "aarch64")
        )))]
        Registers { _none: 0 }
    }

    fn address(&self) -> usize {
        self as *const Self as usize
    }
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

    forward_rest!();
}

impl super::ForkLocks for Leaks {
    const SETS: usize = 2;
    fn try_take(&self, i: usize) -> bool {
        match i {
            0 => self.stacks.try_lock_all(),
            _ => self.table.try_lock_all(),
        }
    }
    unsafe fn give(&self, i: usize, _child: bool) {
        // SAFETY: set `i` is ours (the contract).
        unsafe {
            match i {
                0 => self.stacks.unlock_all(),
                _ => self.table.unlock_all(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wrappers::testing::SysBackend;
    use std::sync::atomic::AtomicUsize;

    /// Three blocks from one call site, lost: a loop with an opaque trip
    /// count (an iterator's `collect` reaches its closure from two code
    /// paths, and a constant count gets unrolled into three calls; either
    /// way the stacks, which are what blocks are grouped by, would differ).
    #[inline(never)]
    fn leak_three(l: &Leaks) {
        for _ in 0..std::hint::black_box(3) {
            std::hint::black_box(l.alloc_zeroed(1234, 16));
        }
    }

    /// A list of a 100-byte head and two 200-byte nodes, lost: the head is
    /// a direct leak, the nodes indirect.
    #[inline(never)]
    fn lose_list(l: &Leaks) {
        let mut next = 0usize;
        for _ in 0..std::hint::black_box(2) {
            let node = l.alloc_zeroed(200, 16);
            // SAFETY: a fresh block of 200 bytes.
            unsafe { node.cast::<usize>().write(next) };
            next = node as usize;
        }
        let head = l.alloc_zeroed(100, 16);
        // SAFETY: a fresh block of 100 bytes.
        unsafe { head.cast::<usize>().add(1).write(next) };
        std::hint::black_box(head);
    }

    static GLOBAL: AtomicUsize = AtomicUsize::new(0);

    #[inline(never)]
    fn keep_in_global(l: &Leaks) {
        // Zeroed: fresh memory may hold stale words that look like pointers.
        GLOBAL.store(l.alloc_zeroed(5000, 16) as usize + 8, Ordering::SeqCst);
    }

    /// Overwrite the stack below the caller, where the frames of the
    /// functions it called ran.
    #[inline(never)]
    fn scrub_stack() {
        let mut junk = [0usize; 2048];
        std::hint::black_box(&mut junk);
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
    fn glob_matches_pieces_in_order() {
        assert!(glob("leak_some", "leaks::tests::leak_some"));
        assert!(glob("lib*.so", "libfoo.so.6+0x10"));
        assert!(!glob("lib*.so", "foo.so lib"));
        assert!(glob("*", "x"));
    }

    #[test]
    #[cfg_attr(miri, ignore = "stops threads with signals and reads /proc")]
    #[cfg_attr(not(feature = "symbolize"), ignore = "needs symbolize")]
    fn lost_blocks_are_leaks_and_reachable_ones_are_not() {
        // Run alone, in a child process: the other tests' threads would
        // leave stale words (in reused stacks and freed memory) that the
        // conservative scan takes for pointers.
        const CHILD: &str = "STRATALLOC_LEAKS_TEST_CHILD";
        if std::env::var_os(CHILD).is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "--test-threads=1", "--nocapture"])
                .arg("wrappers::leaks::tests::lost_blocks_are_leaks_and_reachable_ones_are_not")
                .env(CHILD, "1")
                .output();
            let text = out.as_ref().map_or(String::new(), |o| {
                String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr)
            });
            if !text.contains("running 1 test") {
                // Under qemu-user (cross tests) the binary cannot exec
                // itself (and qemu's own thread would not stop anyway).
                eprintln!("skipped: this test binary cannot be run again: {out:?}");
                return;
            }
            assert!(out.unwrap().status.success(), "{text}");
            assert!(text.contains("1 passed"), "{text}");
            return;
        }
        let l: &'static Leaks = Box::leak(Box::new(Leaks::new(
            SysBackend::leaked(),
            "leaks(sys)",
            Output::Off,
            LeakOptions::DEFAULT,
        )));
        // A block held only on another thread's stack while it waits.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let held = std::thread::spawn(move || {
            let p = std::hint::black_box(l.alloc_zeroed(3000, 16));
            ready_tx.send(()).unwrap();
            rx.recv().unwrap();
            std::hint::black_box(p) as usize
        });
        ready_rx.recv().unwrap();
        // The losses happen on a thread that is gone by the check and
        // scrubs its stack first: conservative scanning takes a stale word
        // for a pointer, and glibc gives a gone thread's stack to the next
        // thread started (other tests start many).
        std::thread::spawn(move || {
            leak_three(l);
            lose_list(l);
            keep_in_global(l);
            let freed = l.alloc(77, 16);
            // SAFETY: live block of `l`.
            unsafe { l.free(freed) };
            scrub_stack();
        })
        .join()
        .unwrap();
        l.check().unwrap();
        let mut text = String::new();
        let f = l.report(&mut text).unwrap();
        tx.send(()).unwrap();
        held.join().unwrap();
        assert!(f.checked, "{text}");
        assert!(
            text.contains("Direct leak of 3702 byte(s) in 3 object(s) allocated from:"),
            "{text}"
        );
        assert!(
            text.contains("Direct leak of 100 byte(s) in 1 object(s)"),
            "{text}"
        );
        assert!(
            text.contains("Indirect leak of 400 byte(s) in 2 object(s)"),
            "{text}"
        );
        assert!(text.contains("leak_three"), "{text}");
        assert!(text.contains("lose_list"), "{text}");
        assert!(text.contains("leaks.rs:"), "{text}");
        assert!(
            !text.contains("5000 byte"),
            "reachable from a global: {text}"
        );
        assert!(
            !text.contains("3000 byte"),
            "on a live thread's stack: {text}"
        );
        assert!(
            text.contains("SUMMARY: stratalloc: 4202 byte(s) leaked in 6 allocation(s)."),
            "{text}"
        );
        let big_at = text.find("3702 byte").unwrap();
        let head_at = text.find("100 byte").unwrap();
        let nodes_at = text.find("400 byte").unwrap();
        assert!(
            big_at < head_at && head_at < nodes_at,
            "direct first, largest first"
        );
        assert_eq!(f.reachable, (5000 + 3000, 2));
        assert_eq!(f.leaked, (4202, 6));
        // Read back, so the compiler keeps the global (one only written to
        // may be optimised away, and then the block is lost indeed).
        assert_ne!(std::hint::black_box(&GLOBAL).load(Ordering::SeqCst), 0);
    }
}
