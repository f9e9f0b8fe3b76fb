//! An operation program against any [`Backend`] (the engine, or a core
//! strategy serving a process), with a shadow model.
//!
//! Operations: alloc / alloc_zeroed (alignment, usable size, zeroing,
//! invalid requests refused), free and realloc (fill verified first; a
//! refused realloc must leave the block intact), usable_size (stable while a
//! block lives), free from another thread (a helper thread verifies and
//! frees), thread churn (a short-lived thread allocates blocks that outlive
//! it and are freed later by this one), trim. At the end every block is
//! verified and freed.
//!
//! **What runs after which operation** (a trade-off for speed; see
//! docs/RELIABILITY.md, section 1). The fill bytes are verified exactly as
//! always: every block, every byte, before every free and realloc, after a
//! refused realloc, on the kept prefix after a realloc, and at the end. The
//! caller's `check` (a backend's full invariant walk) runs after each of the
//! first [`CHECK_FIRST`] operations of an input, then after every
//! `check_every`-th one, and at the end; a heap that breaks an invariant is
//! caught at most `check_every - 1` operations later (or sooner, by a fill
//! byte or a crash).
//!
//! Cross-thread work does not make this thread wait for the scheduler on
//! every operation: remote frees go to the helper thread four at a time,
//! churn threads are started and left running, and both are waited for
//! (the churn threads' blocks joined into the model) just before the next
//! `check`, or when eight churn threads are pending. So remote frees and
//! thread exits run concurrently with this thread's own operations, as in a
//! real program, and the interleaving is up to the scheduler.
//! `STRATALLOC_FUZZ_STRICT=1` restores the step-by-step mode (each
//! cross-thread operation waited for, `check` after every operation):
//! deterministic, slower, the mode to reproduce and minimise a crash in.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;

use stratalloc::__private::Backend;

use crate::{fill, verify, Block, Model, Reader};

/// Requests at most about this large (plus the edge-of-address-space ones).
const HUGE: usize = 4 << 20;
/// Of 256 size draws, this many are 2–6 MiB ([`Reader::size_with`]; 4 in
/// the core target). Such a block is a fresh mapping for a process heap,
/// and filling it page-faults in about a thousand pages: about 3.6 ms on
/// the build machine, the cost of thousands of small operations.
const HUGE_WEIGHT: u8 = 1;
const MAX_OPS: usize = 2048;
/// `check` runs after each of the first this many operations of an input.
pub const CHECK_FIRST: u64 = 4;
/// At most this many churn threads run before they are waited for.
const MAX_PENDING_THREADS: usize = 8;
/// Remote frees go to the helper thread in batches of this many (one
/// wake-up each), and at the latest before the next `check`.
const REMOTE_BATCH: usize = 4;

/// Blocks for the helper thread to free, and where to say it is done.
type Job = (&'static dyn Backend, Vec<Block>, Sender<()>);

/// The helper thread that frees blocks it is sent (a cross-thread free).
fn remote() -> &'static Mutex<Sender<Job>> {
    static TX: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();
    TX.get_or_init(|| {
        let (tx, rx) = channel::<Job>();
        std::thread::spawn(move || {
            for (backend, blocks, done) in rx {
                for b in blocks {
                    // SAFETY: the block is live and was handed to us whole.
                    unsafe {
                        verify("remote free", b.addr as *const u8, b.len, b.byte);
                        backend.free(b.addr as *mut u8);
                    }
                }
                let _ = done.send(());
            }
        });
        Mutex::new(tx)
    })
}

#[derive(Debug)]
#[allow(dead_code)] // fields are read through Debug in failure messages
enum Op {
    Alloc(usize, usize),
    AllocZeroed(usize, usize),
    Free(usize),
    Realloc(usize, usize),
    Usable(usize),
    RemoteFree(usize),
    Churn(u8, usize),
    Trim,
}

/// Check a fresh block and return its usable size.
fn accept(backend: &dyn Backend, p: *mut u8, size: usize, align: usize, what: &Op) -> usize {
    let a = p as usize;
    assert!(
        align.is_power_of_two() && size <= isize::MAX as usize,
        "{}: {what:?} accepted an invalid request",
        backend.name()
    );
    assert_eq!(
        a % align.max(16),
        0,
        "{}: {what:?} = {a:#x} misaligned",
        backend.name()
    );
    // SAFETY: a live block of this backend.
    let us = unsafe { backend.usable_size(p) };
    assert!(
        us >= size.max(1),
        "{}: {what:?}: usable {us} < {size}",
        backend.name()
    );
    us
}

/// Cross-thread operations started and not yet waited for.
struct Pending {
    backend: &'static dyn Backend,
    /// Remote frees not yet sent to the helper thread.
    batch: Vec<Block>,
    /// Batches sent to the helper thread and not yet acknowledged.
    frees: usize,
    done_tx: Sender<()>,
    done_rx: Receiver<()>,
    /// Churn threads, each returning the blocks it left behind.
    threads: Vec<JoinHandle<Vec<Block>>>,
}

impl Pending {
    fn new(backend: &'static dyn Backend) -> Self {
        let (done_tx, done_rx) = channel();
        Pending {
            backend,
            batch: Vec::new(),
            frees: 0,
            done_tx,
            done_rx,
            threads: Vec::new(),
        }
    }

    /// Hand `b` to the helper thread to verify and free (it is no longer
    /// in the model); sent with the next few.
    fn remote_free(&mut self, b: Block) {
        self.batch.push(b);
        if self.batch.len() >= REMOTE_BATCH {
            self.send();
        }
    }

    fn send(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let blocks = std::mem::take(&mut self.batch);
        remote()
            .lock()
            .unwrap()
            .send((self.backend, blocks, self.done_tx.clone()))
            .unwrap();
        self.frees += 1;
    }

    /// Wait for every remote free and churn thread; the churn threads'
    /// blocks join the model.
    fn settle(&mut self, m: &mut Model) {
        self.send();
        while self.frees > 0 {
            self.done_rx.recv().expect("remote free thread died");
            self.frees -= 1;
        }
        for t in self.threads.drain(..) {
            for b in t.join().expect("short-lived thread panicked") {
                m.insert(b);
            }
        }
    }
}

/// Run the program in `r` against `backend`. `check` runs after each of the
/// first [`CHECK_FIRST`] operations, after every `check_every`-th one and at
/// the end, with no cross-thread operation pending (see the module doc;
/// under `STRATALLOC_FUZZ_STRICT=1` after every operation). Returns the
/// number of operations done.
pub fn run(
    backend: &'static dyn Backend,
    r: &mut Reader,
    check: &dyn Fn(),
    check_every: u64,
) -> u64 {
    let strict = crate::strict();
    let check_every = if strict { 1 } else { check_every.max(1) };
    let mut m = Model::default();
    let mut pending = Pending::new(backend);
    let mut tag = 0u8;
    // Operations that reached the backend (the count returned), and steps
    // decoded (a free, realloc... with no live block to pick is a step
    // but not an operation).
    let mut ops = 0u64;
    let mut steps = 0u64;
    let mut next_tag = || {
        tag = tag.wrapping_add(1) | 1;
        tag
    };
    while !r.done() && (steps as usize) < MAX_OPS {
        steps += 1;
        // Weights out of 256, by byte range: 0xFF, the byte libFuzzer's
        // mutations write most after 0x00, is a cheap free. Trim and churn
        // get 2 each (they had 8 each, `% 32 == 30, 31`, and 0xFF made a
        // trim): a trim hands all cached memory back, so the fills after it
        // page-fault it in again, and a churn starts a thread; at 8 of 256
        // each they took most of the time (docs/RELIABILITY.md, section 1).
        let op = match r.u8() {
            0..=85 => Op::Alloc(r.size_with(HUGE, HUGE_WEIGHT), r.align()),
            86..=87 => Op::Churn(r.u8(), r.u16() as usize),
            88..=89 => Op::Trim,
            90..=95 => Op::Free(r.u16() as usize),
            96..=111 => Op::AllocZeroed(r.size_with(HUGE, HUGE_WEIGHT), r.align()),
            112..=151 => Op::Realloc(r.u16() as usize, r.size_with(HUGE, HUGE_WEIGHT)),
            152..=175 => Op::RemoteFree(r.u16() as usize),
            176..=191 => Op::Usable(r.u16() as usize),
            _ => Op::Free(r.u16() as usize),
        };
        let picks = matches!(
            op,
            Op::Free(_) | Op::Realloc(..) | Op::Usable(_) | Op::RemoteFree(_)
        );
        if !(picks && m.is_empty()) {
            ops += 1;
        }
        match op {
            Op::Alloc(size, align) | Op::AllocZeroed(size, align) => {
                let zeroed = matches!(op, Op::AllocZeroed(..));
                let p = if zeroed {
                    backend.alloc_zeroed(size, align)
                } else {
                    backend.alloc(size, align)
                };
                if !p.is_null() {
                    let us = accept(backend, p, size, align, &op);
                    if zeroed {
                        // SAFETY: a fresh block of at least `size` bytes.
                        unsafe { verify("alloc_zeroed", p, size, 0) };
                    }
                    let byte = next_tag();
                    // SAFETY: ours, `us` bytes.
                    unsafe { fill(p, us, byte) };
                    m.insert(Block {
                        addr: p as usize,
                        len: us,
                        byte,
                        align: align.max(1),
                    });
                } else {
                    assert!(
                        !align.is_power_of_two() || size > HUGE * 2,
                        "{}: {op:?} failed for a request it should serve",
                        backend.name()
                    );
                }
            }
            Op::Free(idx) => {
                if let Some(b) = m.pick(idx) {
                    m.remove(b.addr);
                    // SAFETY: a live block, verified then given up.
                    unsafe {
                        verify("free", b.addr as *const u8, b.len, b.byte);
                        backend.free(b.addr as *mut u8);
                    }
                }
            }
            Op::Realloc(idx, size) => {
                if let Some(b) = m.pick(idx) {
                    let size = size.max(1);
                    let p = b.addr as *mut u8;
                    // SAFETY: a live block.
                    unsafe { verify("realloc (before)", p, b.len, b.byte) };
                    // SAFETY: a live block; size is not 0.
                    let q = unsafe { backend.realloc(p, size) };
                    if q.is_null() {
                        assert!(
                            size > HUGE * 2,
                            "{}: realloc to {size} failed",
                            backend.name()
                        );
                        // SAFETY: still live after a refused realloc.
                        unsafe { verify("refused realloc", p, b.len, b.byte) };
                    } else {
                        m.remove(b.addr);
                        let us = accept(backend, q, size, 16, &op);
                        // SAFETY: the moved block is live, `us` bytes.
                        unsafe {
                            verify("realloc (kept contents)", q, b.len.min(size), b.byte);
                            fill(q, us, b.byte);
                        }
                        m.insert(Block {
                            addr: q as usize,
                            len: us,
                            byte: b.byte,
                            align: 16,
                        });
                    }
                }
            }
            Op::Usable(idx) => {
                if let Some(b) = m.pick(idx) {
                    // SAFETY: a live block.
                    let us = unsafe { backend.usable_size(b.addr as *const u8) };
                    assert_eq!(
                        us,
                        b.len,
                        "{}: usable size of {:#x} changed",
                        backend.name(),
                        b.addr
                    );
                }
            }
            Op::RemoteFree(idx) => {
                if let Some(b) = m.pick(idx) {
                    m.remove(b.addr);
                    pending.remote_free(b);
                }
            }
            Op::Churn(n, size) => {
                let n = 1 + n as usize % 8;
                let byte = next_tag();
                let thread = std::thread::spawn(move || {
                    let mut v = Vec::new();
                    for i in 0..n {
                        let size = size + i * 24;
                        let p = backend.alloc(size, 16);
                        assert!(
                            !p.is_null(),
                            "{}: alloc({size}) in a short thread failed",
                            backend.name()
                        );
                        // SAFETY: a live block.
                        let us = unsafe { backend.usable_size(p) };
                        assert!(us >= size.max(1));
                        // SAFETY: ours, `us` bytes.
                        unsafe { fill(p, us, byte) };
                        v.push(Block {
                            addr: p as usize,
                            len: us,
                            byte,
                            align: 16,
                        });
                    }
                    v
                });
                pending.threads.push(thread);
                if pending.threads.len() >= MAX_PENDING_THREADS {
                    pending.settle(&mut m);
                }
            }
            Op::Trim => {
                backend.trim();
            }
        }
        if strict || steps <= CHECK_FIRST || steps % check_every == 0 {
            pending.settle(&mut m);
            check();
        }
    }
    pending.settle(&mut m);
    for b in m.drain() {
        ops += 1;
        // SAFETY: a live block, verified then given up.
        unsafe {
            verify("final free", b.addr as *const u8, b.len, b.byte);
            backend.free(b.addr as *mut u8);
        }
    }
    check();
    ops
}
