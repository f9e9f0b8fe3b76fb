//! The check wrapper (`STRATALLOC_CHECK=1`): catches the heap bugs a C
//! program makes, and aborts with a message naming the pointer, the block's
//! size and the problem.
//!
//! Every block is asked of the backend with room for guard bytes on both
//! sides, and recorded in a [`PtrTable`] (user pointer → requested size,
//! state, offset), so a pointer is judged by the table, never by reading
//! memory in front of it:
//!
//! ```text
//!   inner block from the backend
//!   +------------------+----------------------+--------------+
//!   | front guard 0xFA | user bytes (size)    | back guard   |
//!   | (align, >= 16)   |                      | 16 × 0xFB    |
//!   +------------------+----------------------+--------------+
//!   ^ inner            ^ user pointer (aligned)
//! ```
//!
//! | fault | found when |
//! |---|---|
//! | overflow / underflow (guard bytes changed) | `free`, `realloc`, at exit for live blocks |
//! | double free | the block is still in quarantine, marked freed |
//! | invalid / interior pointer free | the pointer is not a key of the table (a scan tells an interior pointer) |
//! | write after free | freed blocks are filled with 0xDD (first 64 KiB) and held in a FIFO quarantine (up to 4096 blocks, 16 MiB of poisoned bytes); the fill is verified when a block leaves quarantine to be reused, and at exit |
//!
//! **Reports** name the block's allocation stack and, for a freed block
//! (double free, write after free, realloc of a freed block), the stack of
//! its first free, as AddressSanitizer does: each `malloc` and `free`
//! captures its stack with the leak wrapper's unwinder (no allocation,
//! deduplicated in a [`StackTable`]) and keeps its id in the entry's tag;
//! the report symbolizes them as the wrappers' own code. An error while the
//! program runs stops it (one report, then a summary line and the
//! corruption path); at exit every damaged block is reported, then
//! `SUMMARY: stratalloc: check: N error(s) found` and an abort, or
//! `check: 0 errors` when all is well.
//!
//! Out of memory (the backend's, or the table's when it cannot grow) is
//! the C contract's: the quarantine is emptied, the backend trimmed and
//! the call retried once, then it returns null (`ENOMEM`), never aborts.
//!
//! `realloc` always moves the block, so a stale pointer to the old block
//! lands in quarantine where writes through it are caught.
//!
//! The wrappers' own reports (the leak report symbolizes, which allocates a
//! lot) run inside [`sys::internal`](crate::wrappers::sys::internal): their
//! allocations go straight to the backend, untracked, and a pointer the
//! table does not know is then handed to the backend as it is. Blocks made
//! before keep being checked.
//!
//! **Cost**: a table insert and remove per block (a lock per shard), one
//! stack unwind per `malloc` and per `free`, the guard bytes, the poison
//! fill, and memory held in quarantine. A debugging mode, not a production
//! one.
//!
//! Invariants (checked by [`Check::check`]): the table's own; every
//! quarantined pointer is in the table marked freed; the quarantine's byte
//! count is the sum of its blocks' sizes.

use core::fmt::Write;

use crate::backend::Backend;
use crate::fatal;
use crate::os::map_meta as map;
use crate::sync::SpinLock;
use crate::wrappers::leaks::{stack_here, write_stack, StackTable, MAX_STACK_ID};
use crate::wrappers::reach::Mapped;
use crate::wrappers::sys::{in_internal, internal, pid, FdWriter};
use crate::wrappers::table::{Entry, PtrTable};
use stratalloc_core::CheckError;

const FRONT: u8 = 0xFA;
const BACK: u8 = 0xFB;
const POISON: u8 = 0xDD;
const BACK_LEN: usize = 16;
use crate::tuning::{POISON_MAX, QUARANTINE_BLOCKS, QUARANTINE_BYTES};

const LIVE: u64 = 1;
const FREED: u64 = 2;
const STATE: u64 = 3;

// A table entry's tag: bits 0-1 the state, 2-7 log2 of the front guard
// (a power of two), 8-35 the allocation stack, 36-63 the free stack (ids of
// the wrapper's stack table, 0 = none).
const STACK_BITS: u32 = 28;
const STACK_MASK: u64 = (1 << STACK_BITS) - 1;
const _: () = assert!(MAX_STACK_ID as u64 <= STACK_MASK);

fn tag(state: u64, offset: usize, alloc_stack: u32, free_stack: u32) -> u64 {
    debug_assert!(offset.is_power_of_two());
    state
        | (offset.trailing_zeros() as u64) << 2
        | (alloc_stack as u64 & STACK_MASK) << 8
        | (free_stack as u64 & STACK_MASK) << 36
}
fn offset(tag: u64) -> usize {
    1 << ((tag >> 2) & 63)
}
fn alloc_stack(tag: u64) -> u32 {
    ((tag >> 8) & STACK_MASK) as u32
}
fn free_stack(tag: u64) -> u32 {
    ((tag >> 36) & STACK_MASK) as u32
}

/// A FIFO of freed blocks `(pointer, poisoned bytes)` in a ring mapped on
/// first use (so the wrapper itself stays small enough to build on any
/// stack at start-up).
struct Quarantine {
    ring: *mut (usize, usize),
    head: usize,
    len: usize,
    bytes: usize,
}

// SAFETY: the ring is owned by the quarantine, reached under its lock.
unsafe impl Send for Quarantine {}

impl Quarantine {
    fn slot(&self, i: usize) -> *mut (usize, usize) {
        // SAFETY: callers pass `i < QUARANTINE_BLOCKS`, inside the mapping.
        unsafe { self.ring.add(i % QUARANTINE_BLOCKS) }
    }

    fn get(&self, i: usize) -> (usize, usize) {
        // SAFETY: a slot of the mapped ring.
        unsafe { *self.slot(self.head + i) }
    }

    /// Append; `false` if the ring cannot be mapped (the caller then
    /// releases the block at once).
    fn push(&mut self, p: usize, size: usize) -> bool {
        debug_assert!(self.len < QUARANTINE_BLOCKS);
        if self.ring.is_null() {
            self.ring = map(QUARANTINE_BLOCKS * core::mem::size_of::<(usize, usize)>()).cast();
            if self.ring.is_null() {
                return false;
            }
        }
        // SAFETY: a slot of the mapped ring.
        unsafe { *self.slot(self.head + self.len) = (p, size.min(POISON_MAX)) };
        self.len += 1;
        self.bytes += size.min(POISON_MAX);
        true
    }
    fn full(&self) -> bool {
        self.len >= QUARANTINE_BLOCKS || self.bytes > QUARANTINE_BYTES
    }
    fn pop(&mut self) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let (p, bytes) = self.get(0);
        self.head = (self.head + 1) % QUARANTINE_BLOCKS;
        self.len -= 1;
        self.bytes -= bytes;
        Some(p)
    }
}

/// The check wrapper over `inner`.
pub struct Check {
    inner: &'static dyn Backend,
    name: &'static str,
    table: PtrTable,
    stacks: StackTable,
    quarantine: SpinLock<Quarantine>,
}

/// What is wrong with a block.
#[derive(Clone, Copy, Debug)]
enum Damage {
    /// The guard after it was overwritten: `(byte offset from the start,
    /// byte found)`.
    Overflow(usize, u8),
    /// The guard before it was overwritten: `(bytes before the start, byte
    /// found)`.
    Underflow(usize, u8),
    /// Its poison was overwritten after it was freed: `(offset, byte found)`.
    WriteAfterFree(usize, u8),
}

/// The first byte of `s` that differs from `b`, if any.
fn first_diff(s: &[u8], b: u8) -> Option<usize> {
    s.iter().position(|&x| x != b)
}

impl Check {
    /// Check every call made to `inner`.
    pub const fn new(inner: &'static dyn Backend, name: &'static str) -> Self {
        Check {
            inner,
            name,
            table: PtrTable::new(),
            stacks: StackTable::new(),
            quarantine: SpinLock::new(Quarantine {
                ring: core::ptr::null_mut(),
                head: 0,
                len: 0,
                bytes: 0,
            }),
        }
    }

    /// A guarded block of `size` bytes, recorded in the table; null when
    /// the backend or the table is out of memory even after the quarantine
    /// was emptied (the quarantine only delays reuse: memory for the
    /// program comes first).
    fn alloc_with(&self, size: usize, align: usize, zeroed: bool) -> *mut u8 {
        if !align.is_power_of_two() {
            return core::ptr::null_mut();
        }
        let front = align.max(16);
        let total = match size
            .checked_add(front + BACK_LEN)
            .filter(|&t| t <= isize::MAX as usize)
        {
            Some(t) => t,
            None => return core::ptr::null_mut(),
        };
        let p = self.try_alloc(size, total, front, zeroed);
        if !p.is_null() || !self.drain_quarantine() {
            return p;
        }
        // The released blocks may sit in the backend's caches (empty pages
        // of the engine): hand them to the OS so the retry can map anew.
        self.inner.trim();
        self.try_alloc(size, total, front, zeroed)
    }

    /// One attempt of [`alloc_with`](Self::alloc_with): `total` bytes from
    /// the backend with `front` guard bytes before the user's `size`.
    fn try_alloc(&self, size: usize, total: usize, front: usize, zeroed: bool) -> *mut u8 {
        let inner = if zeroed {
            self.inner.alloc_zeroed(total, front)
        } else {
            self.inner.alloc(total, front)
        };
        if inner.is_null() {
            return inner;
        }
        // SAFETY: `inner` is a fresh block of `total` bytes; `front + size`
        // and `BACK_LEN` bytes after it fit inside.
        let user = unsafe {
            core::ptr::write_bytes(inner, FRONT, front);
            let user = inner.add(front);
            core::ptr::write_bytes(user.add(size), BACK, BACK_LEN);
            user
        };
        let stack = stack_here(&self.stacks).unwrap_or(0);
        if !self
            .table
            .insert(user as usize, size, tag(LIVE, front, stack, 0))
        {
            // The table could not grow: give the block back and fail the
            // call, as any other out-of-memory.
            // SAFETY: `inner` came from `self.inner` above and was never
            // handed out.
            unsafe { self.inner.free(inner) };
            return core::ptr::null_mut();
        }
        user
    }

    /// Release every quarantined block (each verified as it leaves);
    /// `false` if the quarantine was empty.
    #[cold]
    fn drain_quarantine(&self) -> bool {
        let mut any = false;
        loop {
            let v = self.quarantine.lock().pop();
            match v {
                Some(v) => {
                    self.release(v);
                    any = true;
                }
                None => return any,
            }
        }
    }

    /// What is wrong with the guards around the live block `e`, if anything.
    fn guard_damage(&self, e: &Entry) -> Option<Damage> {
        let (p, size, off) = (e.key, e.size, offset(e.tag));
        // SAFETY: the table says `p` is a block we made: `off` guard bytes
        // before it, `size` user bytes and BACK_LEN guard bytes after it.
        let (front, back) = unsafe {
            (
                core::slice::from_raw_parts((p - off) as *const u8, off),
                core::slice::from_raw_parts((p + size) as *const u8, BACK_LEN),
            )
        };
        if let Some(i) = first_diff(back, BACK) {
            return Some(Damage::Overflow(size + i, back[i]));
        }
        first_diff(front, FRONT).map(|i| Damage::Underflow(off - i, front[i]))
    }

    /// Abort if the guard bytes around the live block `e` were changed.
    fn verify_guards(&self, e: &Entry, when: &str) {
        if let Some(d) = self.guard_damage(e) {
            self.fail(e, d, when);
        }
    }

    /// Print what is wrong with block `e`, with the stacks that made it and
    /// freed it (symbolizing allocates: as the wrappers' own code).
    fn describe(&self, e: &Entry, d: Damage, when: &str) {
        let (p, size) = (e.key, e.size);
        let mut w = FdWriter::new(2);
        let _ = match d {
            Damage::Overflow(at, found) => write!(
                w,
                "stratalloc: check: heap buffer overflow: block {p:#x} of {size} bytes: the guard \
                 after it was overwritten at byte +{at} (found {found:#04x}), detected {when}"
            ),
            Damage::Underflow(at, found) => write!(
                w,
                "stratalloc: check: heap buffer underflow: block {p:#x} of {size} bytes: the guard \
                 before it was overwritten at byte -{at} (found {found:#04x}), detected {when}"
            ),
            Damage::WriteAfterFree(at, found) => write!(
                w,
                "stratalloc: check: write after free: block {p:#x} of {size} bytes was modified \
                 at byte +{at} (found {found:#04x}) after it was freed, detected {when}"
            ),
        };
        let _ = writeln!(w);
        self.write_stacks(&mut w, e);
    }

    /// The allocation stack of `e`, and its free stack if it was freed.
    fn write_stacks(&self, w: &mut FdWriter, e: &Entry) {
        internal(|| {
            let _ = writeln!(w, "  block {:#x} of {} bytes, allocated by:", e.key, e.size);
            let _ = write_stack(&self.stacks, w, alloc_stack(e.tag));
            if e.tag & STATE == FREED {
                let _ = writeln!(w, "  first freed by:");
                let _ = write_stack(&self.stacks, w, free_stack(e.tag));
            }
        });
        w.flush();
    }

    /// Report the damage `d` of block `e` and abort (the one error of
    /// this run: an error while the program runs stops it).
    #[cold]
    fn fail(&self, e: &Entry, d: Damage, when: &str) -> ! {
        self.describe(e, d, when);
        Self::abort_after(1, e.key)
    }

    /// The summary line, then the corruption path.
    #[cold]
    fn abort_after(errors: usize, p: usize) -> ! {
        crate::eprint_noalloc!("SUMMARY: stratalloc: check: {} error(s) found\n", errors);
        fatal!(
            "check: aborting after {} error(s), the first at {:#x}",
            errors,
            p
        )
    }

    /// Report a bad call on `p` (message `msg`; `block`: the block it
    /// concerns, if known) with the block's stacks, and abort.
    #[cold]
    fn fail_call(&self, p: usize, block: Option<&Entry>, msg: core::fmt::Arguments<'_>) -> ! {
        let mut w = FdWriter::new(2);
        let _ = writeln!(w, "stratalloc: check: {msg}");
        match block {
            Some(e) => self.write_stacks(&mut w, e),
            None => w.flush(),
        }
        Self::abort_after(1, p)
    }

    /// Abort naming what `p` is, for a pointer that is not a live block.
    #[cold]
    fn bad_pointer(&self, op: &str, p: *const u8) -> ! {
        let a = p as usize;
        if let Some(e) = self.table.get(a) {
            self.fail_call(
                a,
                Some(&e),
                format_args!(
                    "{} of {:p}: double free (block of {} bytes already freed)",
                    op, p, e.size
                ),
            );
        }
        let mut hit = None;
        self.table.for_each(|e| {
            if a > e.key && a < e.key + e.size.max(1) && hit.is_none() {
                hit = Some(*e);
            }
        });
        match hit {
            Some(e) => self.fail_call(
                a,
                Some(&e),
                format_args!(
                    "{} of {:p}: invalid pointer: interior pointer {} bytes into {}block {:#x} \
                     of {} bytes",
                    op,
                    p,
                    a - e.key,
                    if e.tag & STATE == LIVE { "" } else { "freed " },
                    e.key,
                    e.size
                ),
            ),
            None => self.fail_call(
                a,
                None,
                format_args!(
                    "{} of {:p}: invalid pointer (size unknown): not a block from malloc, or \
                     freed long ago",
                    op, p
                ),
            ),
        }
    }

    /// Verify the poison of a quarantined block, then hand it back.
    fn release(&self, p: usize) {
        let Some(e) = self.table.remove(p) else {
            fatal!("check: quarantined block {:#x} vanished from the table", p);
        };
        if let Some(d) = Self::poison_damage(&e) {
            self.fail(&e, d, "when it left quarantine");
        }
        self.verify_guards(&e, "when it left quarantine");
        // SAFETY: the block was made by `inner` at `p - offset`; nobody may
        // use it (it was freed) and it is no longer in quarantine.
        unsafe { self.inner.free((p - offset(e.tag)) as *mut u8) };
    }

    /// Where the poison of the freed block `e` was overwritten, if it was.
    fn poison_damage(e: &Entry) -> Option<Damage> {
        let n = e.size.min(POISON_MAX);
        // SAFETY: the block is ours, freed and still owned by us (quarantine).
        let s = unsafe { core::slice::from_raw_parts(e.key as *const u8, n) };
        first_diff(s, POISON).map(|i| Damage::WriteAfterFree(i, s[i]))
    }

    /// At exit: verify the guards of live blocks and the poison of
    /// quarantined ones; report every damaged block (with its stacks), then
    /// a summary line ("0 errors" when all is well), and abort if any was
    /// damaged.
    pub fn finish(&self) {
        let mut checked = 0usize;
        let mut damaged = Mapped::<(Entry, Damage)>::with_capacity(self.table.len() + 1);
        let mut total = 0usize;
        self.table.for_each(|e| {
            checked += 1;
            let d = if e.tag & STATE == LIVE {
                self.guard_damage(e)
            } else {
                Self::poison_damage(e)
            };
            if let Some(d) = d {
                total += 1;
                if let Some(list) = damaged.as_mut() {
                    list.push((*e, d));
                }
            }
        });
        // Reported once the table's locks are released: symbolizing
        // allocates, and the check wrapper's free looks in the table.
        let mut first = None;
        for &(e, d) in damaged.as_ref().map_or(&[][..], |l| l.as_slice()) {
            self.describe(&e, d, "at exit");
            first.get_or_insert(e.key);
        }
        if total == 0 {
            crate::eprint_noalloc!(
                "=={}== stratalloc: check: 0 errors ({} blocks checked at exit, backend {})\n",
                pid(),
                checked,
                self.name
            );
            return;
        }
        // At exit, stdio has not been flushed yet: keep the program's output.
        // SAFETY: fflush(NULL) flushes every stream; no stream lock is held
        // by this thread here (the exit path, outside the allocator).
        unsafe { libc::fflush(core::ptr::null_mut()) };
        Self::abort_after(total, first.unwrap_or(0))
    }

    /// Verify the invariants in the module docs.
    pub fn check(&self) -> Result<(), CheckError> {
        self.table.check()?;
        let q = self.quarantine.lock();
        let mut bytes = 0;
        for i in 0..q.len {
            let (p, _) = q.get(i);
            match self.table.get(p) {
                Some(e) if e.tag & STATE == FREED => bytes += e.size.min(POISON_MAX),
                _ => return Err(CheckError::new(p, "quarantined block not marked freed")),
            }
        }
        if bytes != q.bytes {
            return Err(CheckError::new(q.bytes, "quarantine byte count is wrong"));
        }
        Ok(())
    }
}

// SAFETY: user blocks lie inside distinct inner blocks of `inner`, with the
// requested size and alignment; contents are kept (realloc copies).
unsafe impl Backend for Check {
    fn name(&self) -> &'static str {
        self.name
    }

    fn alloc(&self, size: usize, align: usize) -> *mut u8 {
        if in_internal() {
            return self.inner.alloc(size, align);
        }
        self.alloc_with(size, align, false)
    }

    fn alloc_zeroed(&self, size: usize, align: usize) -> *mut u8 {
        if in_internal() {
            return self.inner.alloc_zeroed(size, align);
        }
        self.alloc_with(size, align, true)
    }

    unsafe fn free(&self, p: *mut u8) {
        if p.is_null() {
            return;
        }
        let a = p as usize;
        if in_internal() && self.table.get(a).is_none() {
            // SAFETY: an untracked block made in internal mode by `inner`.
            return unsafe { self.inner.free(p) };
        }
        let freed_by = stack_here(&self.stacks).unwrap_or(0);
        let before = self.table.update(a, |e| {
            if e.tag & STATE == LIVE {
                e.tag = tag(FREED, offset(e.tag), alloc_stack(e.tag), freed_by);
            }
        });
        let e = match before {
            Some(e) if e.tag & STATE == LIVE => e,
            _ => self.bad_pointer("free", p),
        };
        self.verify_guards(&e, "in free");
        // SAFETY: the block is ours and freed by the caller: we may scribble.
        unsafe { core::ptr::write_bytes(p, POISON, e.size.min(POISON_MAX)) };
        loop {
            let mut q = self.quarantine.lock();
            if q.len < QUARANTINE_BLOCKS {
                if !q.push(a, e.size) {
                    drop(q);
                    self.release(a);
                }
                break;
            }
            let v = q.pop();
            drop(q);
            if let Some(v) = v {
                self.release(v);
            }
        }
        loop {
            let v = {
                let mut q = self.quarantine.lock();
                if q.full() {
                    q.pop()
                } else {
                    None
                }
            };
            match v {
                Some(v) => self.release(v),
                None => break,
            }
        }
    }

    unsafe fn realloc(&self, p: *mut u8, new_size: usize) -> *mut u8 {
        if in_internal() && self.table.get(p as usize).is_none() {
            // SAFETY: an untracked block made in internal mode by `inner`.
            return unsafe { self.inner.realloc(p, new_size) };
        }
        let e = match self.table.get(p as usize) {
            Some(e) if e.tag & STATE == LIVE => e,
            Some(e) => self.fail_call(
                p as usize,
                Some(&e),
                format_args!(
                    "realloc of {:p}: use after free (block of {} bytes already freed)",
                    p, e.size
                ),
            ),
            None => self.bad_pointer("realloc", p),
        };
        self.verify_guards(&e, "in realloc");
        let q = self.alloc_with(new_size, 16, false);
        if q.is_null() {
            return q;
        }
        // SAFETY: both blocks are live and distinct; each holds at least
        // `min(old, new)` bytes.
        unsafe { core::ptr::copy_nonoverlapping(p, q, e.size.min(new_size)) };
        // SAFETY: `p` is live (checked above); its contents moved to `q`.
        unsafe { self.free(p) };
        q
    }

    unsafe fn usable_size(&self, p: *const u8) -> usize {
        match self.table.get(p as usize) {
            Some(e) if e.tag & STATE == LIVE => e.size,
            // SAFETY: an untracked block made in internal mode by `inner`.
            None if in_internal() => unsafe { self.inner.usable_size(p) },
            _ => self.bad_pointer("malloc_usable_size", p),
        }
    }

    forward_rest!();
}

impl super::ForkLocks for Check {
    const SETS: usize = 2;
    fn try_take(&self, i: usize) -> bool {
        match i {
            0 => self.quarantine.raw_try_lock(),
            _ => self.table.try_lock_all(),
        }
    }
    unsafe fn give(&self, i: usize, _child: bool) {
        // SAFETY: set `i` is ours (the contract).
        unsafe {
            match i {
                0 => self.quarantine.raw_unlock(),
                _ => self.table.unlock_all(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wrappers::testing::SysBackend;

    fn checker() -> &'static Check {
        Box::leak(Box::new(Check::new(SysBackend::leaked(), "check(sys)")))
    }

    /// The C library's allocator with a budget of live bytes: past it,
    /// `alloc` fails as an exhausted heap would.
    struct Budget {
        live: core::sync::atomic::AtomicUsize,
        limit: usize,
    }

    // SAFETY: blocks come from `SysBackend`, which keeps the contract.
    unsafe impl Backend for Budget {
        fn name(&self) -> &'static str {
            "budget"
        }
        fn alloc(&self, size: usize, align: usize) -> *mut u8 {
            use core::sync::atomic::Ordering::Relaxed;
            if self.live.load(Relaxed) + size > self.limit {
                return core::ptr::null_mut();
            }
            let p = SysBackend.alloc(size, align);
            if !p.is_null() {
                // SAFETY: live block just made.
                let n = unsafe { SysBackend.usable_size(p) };
                self.live.fetch_add(n, Relaxed);
            }
            p
        }
        unsafe fn free(&self, p: *mut u8) {
            use core::sync::atomic::Ordering::Relaxed;
            // SAFETY: the caller passes a live block of this backend.
            let n = unsafe { SysBackend.usable_size(p) };
            self.live.fetch_sub(n, Relaxed);
            // SAFETY: as above.
            unsafe { SysBackend.free(p) }
        }
        unsafe fn realloc(&self, _p: *mut u8, _new_size: usize) -> *mut u8 {
            unreachable!("the check wrapper never reallocates in place")
        }
        unsafe fn usable_size(&self, p: *const u8) -> usize {
            // SAFETY: forwarded.
            unsafe { SysBackend.usable_size(p) }
        }
    }

    #[test]
    fn out_of_memory_returns_null_and_the_quarantine_yields_its_blocks() {
        let budget: &'static Budget = Box::leak(Box::new(Budget {
            live: core::sync::atomic::AtomicUsize::new(0),
            limit: 64 << 10,
        }));
        let c: &'static Check = Box::leak(Box::new(Check::new(budget, "check(budget)")));
        let mut blocks = Vec::new();
        loop {
            let p = c.alloc(1000, 16);
            if p.is_null() {
                break;
            }
            blocks.push(p);
        }
        assert!(blocks.len() > 10, "only {} blocks fit", blocks.len());
        for p in blocks {
            // SAFETY: live blocks of `c`.
            unsafe { c.free(p) };
        }
        // Every freed block sits in quarantine, the budget is spent: the
        // next block is served by emptying the quarantine.
        assert!(c.quarantine.lock().len > 10);
        let p = c.alloc(1000, 16);
        assert!(!p.is_null());
        assert_eq!(c.quarantine.lock().len, 0);
        c.check().unwrap();
        // SAFETY: live block of `c`.
        unsafe { c.free(p) };
        c.check().unwrap();
    }

    #[test]
    fn internal_blocks_bypass_the_checks_and_tracked_ones_do_not() {
        let c = checker();
        let tracked = c.alloc(64, 16);
        crate::wrappers::sys::internal(|| {
            let q = c.alloc(100, 16);
            // SAFETY: `q` is live; realloc keeps it untracked.
            let q = unsafe { c.realloc(q, 200) };
            // SAFETY: live.
            assert!(unsafe { c.usable_size(q) } >= 200);
            assert!(
                c.table.get(q as usize).is_none(),
                "internal blocks are untracked"
            );
            // SAFETY: live untracked block, freed straight to the backend.
            unsafe { c.free(q) };
            // A block made before is still checked (and quarantined).
            // SAFETY: live tracked block.
            unsafe { c.free(tracked) };
        });
        assert_eq!(c.table.get(tracked as usize).unwrap().tag & STATE, FREED);
        c.check().unwrap();
    }

    #[test]
    fn blocks_keep_contents_alignment_and_guards() {
        let c = checker();
        let mut live = Vec::new();
        for i in 0..3000usize {
            let align = 1 << (4 + i % 5);
            let size = (i * 37) % 5000;
            let p = c.alloc(size, align);
            assert_eq!(p as usize % align, 0);
            // SAFETY: `p` has `size` bytes.
            unsafe { core::ptr::write_bytes(p, i as u8, size) };
            // SAFETY: live block.
            assert_eq!(unsafe { c.usable_size(p) }, size);
            live.push((p, size, i as u8));
            if i % 3 == 0 {
                let (p, size, fill) = live.swap_remove(i % live.len());
                // SAFETY: live block from `c`.
                let q = unsafe { c.realloc(p, size + 100) };
                // SAFETY: `q` holds at least `size` bytes copied from `p`.
                let s = unsafe { core::slice::from_raw_parts(q, size) };
                assert!(s.iter().all(|&b| b == fill));
                // SAFETY: as above, the extra 100 bytes are ours.
                unsafe { core::ptr::write_bytes(q, fill, size + 100) };
                live.push((q, size + 100, fill));
            }
            if i % 2 == 0 {
                let (p, _, _) = live.swap_remove(0);
                // SAFETY: live block from `c`.
                unsafe { c.free(p) };
            }
            if i % 500 == 0 {
                c.check().unwrap();
            }
        }
        c.finish();
        for (p, _, _) in live {
            // SAFETY: live block from `c`.
            unsafe { c.free(p) };
        }
        c.check().unwrap();
        let z = c.alloc_zeroed(100, 16);
        // SAFETY: 100 bytes.
        assert!(unsafe { core::slice::from_raw_parts(z, 100) }
            .iter()
            .all(|&b| b == 0));
        assert!(c.alloc(usize::MAX - 8, 16).is_null());
        assert!(c.alloc(16, 3).is_null());
    }
}
