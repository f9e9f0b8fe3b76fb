//! An operation program against any [`Backend`] (the engine, or a core
//! strategy serving a process), with a shadow model.
//!
//! Operations: alloc / alloc_zeroed (alignment, usable size, zeroing,
//! invalid requests refused), free and realloc (fill verified first; a
//! refused realloc must leave the block intact), usable_size (stable while a
//! block lives), free from another thread (a helper thread verifies and
//! frees), thread churn (a short-lived thread allocates blocks that outlive
//! it and are freed later by this one), trim. After each operation the
//! caller's `check` runs (a backend's own invariant check, where it has
//! one). At the end every block is verified and freed.

use std::sync::mpsc::{channel, Sender};
use std::sync::{Mutex, OnceLock};

use stratalloc::Backend;

use crate::{fill, verify, Block, Model, Reader};

/// Requests at most about this large (plus the edge-of-address-space ones).
const HUGE: usize = 4 << 20;
const MAX_OPS: usize = 2048;

type Job = (&'static dyn Backend, Block, Sender<()>);

/// The helper thread that frees blocks it is sent (a cross-thread free).
fn remote() -> &'static Mutex<Sender<Job>> {
    static TX: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();
    TX.get_or_init(|| {
        let (tx, rx) = channel::<Job>();
        std::thread::spawn(move || {
            for (backend, b, done) in rx {
                // SAFETY: the block is live and was handed to us whole.
                unsafe {
                    verify("remote free", b.addr as *const u8, b.len, b.byte);
                    backend.free(b.addr as *mut u8);
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

/// Run the program in `r` against `backend`; `check` runs after every
/// operation. Returns the number of operations done.
pub fn run(backend: &'static dyn Backend, r: &mut Reader, check: &dyn Fn()) -> u64 {
    let mut m = Model::default();
    let mut tag = 0u8;
    let mut ops = 0u64;
    let mut next_tag = || {
        tag = tag.wrapping_add(1) | 1;
        tag
    };
    while !r.done() && (ops as usize) < MAX_OPS {
        ops += 1;
        let op = match r.u8() % 32 {
            0..=9 => Op::Alloc(r.size(HUGE), r.align()),
            10..=11 => Op::AllocZeroed(r.size(HUGE), r.align()),
            12..=19 => Op::Free(r.u16() as usize),
            20..=24 => Op::Realloc(r.u16() as usize, r.size(HUGE)),
            25..=26 => Op::Usable(r.u16() as usize),
            27..=29 => Op::RemoteFree(r.u16() as usize),
            30 => Op::Churn(r.u8(), r.u16() as usize),
            _ => Op::Trim,
        };
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
                    let (done_tx, done_rx) = channel();
                    remote()
                        .lock()
                        .unwrap()
                        .send((backend, b, done_tx))
                        .unwrap();
                    done_rx.recv().expect("remote free thread died");
                }
            }
            Op::Churn(n, size) => {
                let n = 1 + n as usize % 8;
                let byte = next_tag();
                let blocks = std::thread::spawn(move || {
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
                })
                .join()
                .expect("short-lived thread panicked");
                for b in blocks {
                    m.insert(b);
                }
            }
            Op::Trim => {
                backend.trim();
            }
        }
        check();
    }
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
