//! The trace wrapper (`STRATALLOC_TRACE=path`): every event to a binary file
//! in the format of `crate::trace`.
//!
//! Threads write into [`STRIPES`] buffers (thread number modulo the stripe
//! count), each behind its own spin lock, so threads rarely meet; a full
//! 64 KiB buffer is sealed into a chunk and appended with one `write(2)`
//! (the file is opened with `O_APPEND`). Events carry a process-wide
//! sequence number from one atomic counter, which is what orders them when
//! read back.
//!
//! ```text
//!   thread 1 ─┐ stripe 1 [chunk being filled]──┐ write(2) when full,
//!   thread 9 ─┘                                ├──> trace file (O_APPEND)
//!   thread 2 ── stripe 2 [chunk being filled]──┘ and at exit
//! ```
//!
//! **Cost** per event: one atomic add (sequence), one clock read (the TSC,
//! see [`Clock`]),
//! an uncontended lock in the common case, 10–16 bytes of encoding; one
//! `write(2)` per ~4000 events.
//!
//! Drawbacks: events still buffered when the process calls `execve` or is
//! killed are lost; after `fork` the child drops the parent's buffered
//! events (the parent writes them) and writes chunks under its own pid.

use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};

use crate::backend::Backend;
use crate::os::map_meta as map;
use crate::sync::{raw_try_lock_all, raw_unlock_all, SpinLock};
use crate::trace::{op, ChunkState, RawEvent};
use crate::wrappers::sys::{pid, thread_no, Clock};

/// Number of stripe buffers.
pub const STRIPES: usize = 16;
/// Bytes of one stripe buffer (one chunk).
pub use crate::tuning::TRACE_BUF as BUF;

struct Stripe {
    buf: *mut u8,
    state: ChunkState,
}

// SAFETY: the stripe owns its buffer and is reached under its lock.
unsafe impl Send for Stripe {}

/// The trace wrapper over `inner`.
pub struct Trace {
    inner: &'static dyn Backend,
    name: &'static str,
    fd: AtomicI32,
    pid: AtomicU32,
    seq: AtomicU64,
    clock: Clock,
    on: AtomicBool,
    lost: AtomicU64,
    stripes: [SpinLock<Stripe>; STRIPES],
}

impl Trace {
    /// Trace every call to `inner` into file descriptor `fd` (opened for
    /// appending).
    pub fn new(inner: &'static dyn Backend, name: &'static str, fd: i32) -> Self {
        Trace {
            inner,
            name,
            fd: AtomicI32::new(fd),
            pid: AtomicU32::new(pid()),
            seq: AtomicU64::new(1),
            clock: Clock::new(),
            on: AtomicBool::new(fd >= 0),
            lost: AtomicU64::new(0),
            stripes: [const {
                SpinLock::new(Stripe {
                    buf: core::ptr::null_mut(),
                    state: ChunkState::new(),
                })
            }; STRIPES],
        }
    }

    #[inline]
    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    fn emit(&self, mut ev: RawEvent) {
        if !self.on.load(Ordering::Relaxed) {
            return;
        }
        let t = thread_no();
        ev.thread = t;
        ev.time = self.clock.now();
        let mut s = self.stripes[t as usize % STRIPES].lock();
        if s.buf.is_null() {
            s.buf = map(BUF);
            if s.buf.is_null() {
                self.lost.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let st = &mut *s;
        // SAFETY: `buf` maps BUF bytes owned by this stripe.
        let buf = unsafe { core::slice::from_raw_parts_mut(st.buf, BUF) };
        if !st.state.push(buf, &ev) {
            self.write_chunk(st);
            // SAFETY: as above.
            let buf = unsafe { core::slice::from_raw_parts_mut(st.buf, BUF) };
            if !st.state.push(buf, &ev) {
                self.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn write_chunk(&self, st: &mut Stripe) {
        if st.buf.is_null() {
            return;
        }
        // SAFETY: `buf` maps BUF bytes owned by the stripe, locked by caller.
        let buf = unsafe { core::slice::from_raw_parts_mut(st.buf, BUF) };
        let n = st.state.seal(buf, self.pid.load(Ordering::Relaxed));
        if n > 0 {
            crate::diag::write_fd(self.fd.load(Ordering::Relaxed), &buf[..n]);
        }
    }

    /// Write every buffered event out (at exit). Tracing goes on.
    pub fn flush(&self) {
        for s in &self.stripes {
            let mut g = s.lock();
            self.write_chunk(&mut g);
        }
    }

    /// Flush and stop tracing (at exit).
    pub fn finish(&self) {
        self.flush();
        self.on.store(false, Ordering::SeqCst);
        self.flush();
        let lost = self.lost.load(Ordering::Relaxed);
        if lost != 0 {
            crate::eprint_noalloc!(
                "stratalloc: trace: {} events lost (no memory for a buffer)\n",
                lost
            );
        }
    }

    fn alloc_event(&self, opc: u8, size: usize, align: usize, p: *mut u8) {
        let seq = self.next_seq();
        self.emit(RawEvent {
            op: opc,
            seq,
            size: size as u64,
            align: align as u64,
            ptr: p as u64,
            ..RawEvent::default()
        });
    }
}

// SAFETY: blocks come from `inner` unchanged; the wrapper only records.
unsafe impl Backend for Trace {
    fn name(&self) -> &'static str {
        self.name
    }

    fn alloc(&self, size: usize, align: usize) -> *mut u8 {
        let p = self.inner.alloc(size, align);
        let opc = if align > 16 { op::MEMALIGN } else { op::MALLOC };
        self.alloc_event(opc, size, align, p);
        p
    }

    fn alloc_zeroed(&self, size: usize, align: usize) -> *mut u8 {
        let p = self.inner.alloc_zeroed(size, align);
        self.alloc_event(op::CALLOC, size, align, p);
        p
    }

    unsafe fn free(&self, p: *mut u8) {
        if p.is_null() {
            return;
        }
        // Numbered before the block is given back: see the format docs.
        let seq = self.next_seq();
        self.emit(RawEvent {
            op: op::FREE,
            seq,
            ptr: p as u64,
            ..RawEvent::default()
        });
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.free(p) }
    }

    unsafe fn realloc(&self, p: *mut u8, new_size: usize) -> *mut u8 {
        let free_seq = self.next_seq();
        // SAFETY: forwarded from the caller.
        let q = unsafe { self.inner.realloc(p, new_size) };
        let seq = self.next_seq();
        self.emit(RawEvent {
            op: op::REALLOC,
            seq,
            size: new_size as u64,
            old: p as u64,
            ptr: q as u64,
            free_seq,
            ..RawEvent::default()
        });
        q
    }

    unsafe fn usable_size(&self, p: *const u8) -> usize {
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.usable_size(p) }
    }

    forward_rest!();
}

impl super::ForkLocks for Trace {
    const SETS: usize = 1;
    fn try_take(&self, _: usize) -> bool {
        raw_try_lock_all(&self.stripes)
    }
    unsafe fn give(&self, _: usize, child: bool) {
        if !child {
            // SAFETY: the stripes are ours (the contract).
            return unsafe { raw_unlock_all(&self.stripes) };
        }
        self.pid.store(pid(), Ordering::Relaxed);
        for s in &self.stripes {
            // SAFETY: the stripes are ours (the contract). The child starts
            // each stripe afresh: the parent writes the events it buffered.
            unsafe { s.raw_unlock_child(|st| st.state = ChunkState::new()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Op, Trace as TraceFile};
    use crate::wrappers::testing::SysBackend;

    #[test]
    fn a_traced_run_reads_back_in_order() {
        let dir = std::env::temp_dir().join(format!("stratalloc-trace-{}", pid()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.trace");
        let _ = std::fs::remove_file(&path);
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: `c` is NUL-terminated.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND,
                0o644,
            )
        };
        assert!(fd >= 0);
        let t: &'static Trace =
            Box::leak(Box::new(Trace::new(SysBackend::leaked(), "trace(sys)", fd)));
        std::thread::scope(|s| {
            for k in 0..4usize {
                s.spawn(move || {
                    let mut v = Vec::new();
                    for i in 0..5000usize {
                        v.push(t.alloc(k * 1000 + i % 300, if i % 7 == 0 { 64 } else { 16 }));
                        if i % 3 == 0 {
                            let p = v.swap_remove(i % v.len());
                            // SAFETY: live block of `t`.
                            v.push(unsafe { t.realloc(p, i + 1) });
                        }
                        if i % 2 == 0 {
                            let p = v.swap_remove(0);
                            // SAFETY: live block of `t`.
                            unsafe { t.free(p) };
                        }
                    }
                    for p in v {
                        // SAFETY: live block of `t`.
                        unsafe { t.free(p) };
                    }
                });
            }
        });
        let z = t.alloc_zeroed(10, 16);
        t.finish();
        // SAFETY: live block of the backend; tracing is off now.
        unsafe { t.free(z) };
        // SAFETY: we opened it.
        unsafe { libc::close(fd) };
        let tr = TraceFile::read(&path, None).unwrap();
        assert_eq!(tr.pid, pid());
        assert_eq!(tr.unmatched, 0);
        assert_eq!(tr.threads, 5);
        let allocs = tr
            .events
            .iter()
            .filter(|e| matches!(e.op, Op::Alloc { .. }))
            .count();
        let frees = tr
            .events
            .iter()
            .filter(|e| matches!(e.op, Op::Free { .. }))
            .count();
        let reallocs = tr
            .events
            .iter()
            .filter(|e| matches!(e.op, Op::Realloc { .. }))
            .count();
        assert_eq!(allocs, 4 * 5000 + 1);
        assert_eq!(reallocs, 4 * 1667);
        assert_eq!(frees, 4 * 5000);
        // Every id is allocated once and dies at most once, in order.
        let mut state = vec![0u8; tr.ids as usize];
        for e in &tr.events {
            match e.op {
                Op::Alloc { id, .. } => {
                    assert_eq!(state[id as usize], 0);
                    state[id as usize] = 1;
                }
                Op::Free { id } => {
                    assert_eq!(state[id as usize], 1);
                    state[id as usize] = 2;
                }
                Op::Realloc { old, new, .. } => {
                    assert_eq!(state[old as usize], 1);
                    state[old as usize] = 2;
                    state[new as usize] = 1;
                }
                Op::Failed { .. } => panic!("nothing failed"),
            }
        }
        assert_eq!(
            state.iter().filter(|&&s| s == 1).count(),
            1,
            "only the calloc block is live"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
