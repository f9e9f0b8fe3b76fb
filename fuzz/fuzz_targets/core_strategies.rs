//! Every core strategy, through `AnyHeap`: the first input byte picks the
//! strategy (`Strategy::ALL[b % len]`, so strategies added to the list are
//! fuzzed with no change here), the second the regions, the rest is an
//! operation program run against a shadow model:
//!
//! - allocate: alignment and usable size honoured, inside the arena, no
//!   overlap with a live block, invalid requests refused;
//! - free / realloc / resize_in_place: the block's fill byte verified first
//!   (and after a refused realloc or resize: the block must be intact);
//! - foreign pointers and immediate double frees: reported as errors, heap
//!   intact;
//! - after every operation: `stats()` equal to the model (bytes in use,
//!   live blocks, in use + free within the regions);
//! - `check()` (the strategy's full walk of its blocks and free lists)
//!   clean after each of the first [`CHECK_FIRST`] operations, after every
//!   [`CHECK_EVERY`]-th one, and at the end; every operation under
//!   `STRATALLOC_FUZZ_STRICT=1`. It was after every operation, where it
//!   took 89% of the time (docs/RELIABILITY.md, section 1); a broken
//!   invariant is now caught at most `CHECK_EVERY - 1` operations after
//!   the one that broke it (the heap is new for every input, so the input
//!   still reproduces it, and strict mode names the operation);
//! - at the end: `walk()` reports exactly the live blocks, every block
//!   verified and freed, nothing left in use.
#![no_main]

use std::ptr::NonNull;

use fuzzkit::{fill, verify, Block, Model, Reader};
use libfuzzer_sys::fuzz_target;
use stratalloc_core::{
    AnyHeap, BlockState, HeapErrorKind, Region, RegionHeap, Strategy, MIN_ALIGN,
};

const MAX_OPS: usize = 2048;
/// `check()` after each of the first this many operations of an input.
const CHECK_FIRST: usize = 4;
/// `check()` after every this many operations (past the first few).
const CHECK_EVERY: usize = 8;

/// The arena every input's heap lives in: mapped once (4 MiB) between two
/// inaccessible guard pages, so a strategy that writes past its regions
/// faults even without AddressSanitizer; each input uses a prefix of it.
struct Arena {
    ptr: *mut u8,
    len: usize,
}

const ARENA_MAX: usize = 4 << 20;
const GUARD: usize = 4096;

fn arena_base() -> *mut u8 {
    static BASE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| {
        // SAFETY: a fresh private anonymous mapping; the guard pages are
        // parts of it made inaccessible.
        unsafe {
            let total = ARENA_MAX + 2 * GUARD;
            let p = libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            let p = p as *mut u8;
            assert_eq!(libc::mprotect(p.cast(), GUARD, libc::PROT_NONE), 0);
            assert_eq!(
                libc::mprotect(p.add(GUARD + ARENA_MAX).cast(), GUARD, libc::PROT_NONE),
                0
            );
            p.add(GUARD) as usize
        }
    }) as *mut u8
}

impl Arena {
    /// The last `len` bytes of the mapping (so the guard page follows them).
    fn new(len: usize) -> Self {
        assert!(len <= ARENA_MAX);
        // SAFETY: inside the mapping.
        let ptr = unsafe { arena_base().add(ARENA_MAX - len) };
        Arena { ptr, len }
    }
    fn contains(&self, a: usize) -> bool {
        a >= self.ptr as usize && a < self.ptr as usize + self.len
    }
}

/// The heap's own `check()` when `full`, and its stats against the model.
fn check(h: &AnyHeap, m: &Model, what: &dyn std::fmt::Debug, full: bool) {
    if full {
        if let Err(e) = h.check() {
            panic!("{}: check failed after {what:?}: {e}", h.name());
        }
    }
    let st = h.stats();
    assert_eq!(
        st.in_use,
        m.bytes,
        "{}: stats.in_use differs from the model after {what:?}",
        h.name()
    );
    assert_eq!(
        st.live(),
        m.len() as u64,
        "{}: live count differs after {what:?}",
        h.name()
    );
    assert!(
        st.in_use + st.free <= st.region_bytes,
        "{}: in_use + free > region bytes",
        h.name()
    );
}

/// Check a block the heap just handed out for (`size`, `align`): the
/// request was valid, the block is aligned, inside the arena, and at least
/// `size` bytes long. Returns its usable size.
fn accept(
    h: &AnyHeap,
    arena: &Arena,
    p: NonNull<u8>,
    size: usize,
    align: usize,
    what: &dyn std::fmt::Debug,
) -> usize {
    let name = h.name();
    let a = p.as_ptr() as usize;
    assert!(
        align.is_power_of_two() && size <= isize::MAX as usize,
        "{name}: {what:?}({size:#x}, {align}) accepted an invalid request"
    );
    assert_eq!(
        a % align.max(MIN_ALIGN),
        0,
        "{name}: {what:?}({size}, {align}) = {a:#x} misaligned"
    );
    assert!(arena.contains(a), "{name}: {a:#x} outside the arena");
    // SAFETY: a live block of this heap.
    let us = unsafe { h.usable_size(p) }.unwrap();
    assert!(
        us >= size.max(1),
        "{name}: {what:?}: usable {us} < asked {size}"
    );
    assert!(
        arena.contains(a + us - 1),
        "{name}: {a:#x}+{us} runs past the arena"
    );
    us
}

#[derive(Debug)]
#[allow(dead_code)] // fields are read through Debug in failure messages
enum Op {
    Alloc(usize, usize),
    Free(usize),
    Realloc(usize, usize, usize),
    Resize(usize, usize),
    Foreign,
    DoubleFree(usize),
    Interior(usize, usize),
}

fuzz_target!(|data: &[u8]| {
    fuzzkit::start_input("core_strategies");
    let mut r = Reader::new(data);
    fuzzkit::set_labels(|| Strategy::ALL.iter().map(|s| s.name()).collect());
    let pick = r.u8() as usize % Strategy::ALL.len();
    let strategy = Strategy::ALL[pick];
    let cfg = r.u8();
    let len = [64usize << 10, 256 << 10, 1 << 20, 4 << 20][(cfg & 3) as usize];
    let two_regions = cfg & 4 != 0;
    let skew = if cfg & 8 != 0 {
        8 + (cfg as usize >> 4) * 8
    } else {
        0
    };

    let arena = Arena::new(len);
    let mut h = Box::new(AnyHeap::new(strategy));
    let half = len / 2;
    // SAFETY: disjoint spans of the arena, which outlives the heap.
    unsafe {
        let first = Region::from_raw_parts(
            arena.ptr.add(skew),
            if two_regions {
                half - skew - 4096
            } else {
                len - skew
            },
        )
        .unwrap();
        h.add_region(first)
            .unwrap_or_else(|e| panic!("{}: add_region: {e}", h.name()));
        if two_regions {
            let second = Region::from_raw_parts(arena.ptr.add(half), half).unwrap();
            h.add_region(second)
                .unwrap_or_else(|e| panic!("{}: second add_region: {e}", h.name()));
        }
    }
    let mut m = Model::default();
    check(&h, &m, &"add_region", true);
    let strict = fuzzkit::strict();
    let mut tag = 0u8;
    let mut just_freed: Option<usize> = None;
    let mut freed_long_ago: Vec<usize> = Vec::new();
    // Operations that reached the heap (the count reported), and steps
    // decoded (a free, realloc... with no live block to pick is a step but
    // not an operation).
    let mut ops = 0u64;
    let mut steps = 0usize;
    let misuse = fuzzkit::misuse_enabled();

    while !r.done() && steps < MAX_OPS {
        steps += 1;
        let last_freed = just_freed.take();
        let op = match r.u8() % 16 {
            0..=5 => Op::Alloc(r.size(len), r.align()),
            6..=9 => Op::Free(r.u16() as usize),
            10..=11 => {
                let idx = r.u16() as usize;
                let size = r.size(len);
                let align = if r.u8() & 1 == 0 { 0 } else { r.align() };
                Op::Realloc(idx, size, align)
            }
            12..=13 => Op::Resize(r.u16() as usize, r.size(len)),
            14 => Op::Foreign,
            _ => {
                let sel = r.u8();
                if misuse && sel & 1 == 1 {
                    Op::Interior(r.u16() as usize, 1 + r.u16() as usize)
                } else if misuse && !freed_long_ago.is_empty() {
                    Op::DoubleFree(freed_long_ago[sel as usize % freed_long_ago.len()])
                } else {
                    match last_freed {
                        Some(a) => Op::DoubleFree(a),
                        None => Op::Foreign,
                    }
                }
            }
        };
        let idle = match op {
            Op::Free(_) | Op::Realloc(..) | Op::Resize(..) | Op::Interior(..) => m.is_empty(),
            Op::DoubleFree(a) => m.covers(a),
            Op::Alloc(..) | Op::Foreign => false,
        };
        if !idle {
            ops += 1;
        }
        match op {
            Op::Alloc(size, align) => {
                let p = h.allocate(size, align);
                if let Some(p) = p {
                    let a = p.as_ptr() as usize;
                    let us = accept(&h, &arena, p, size, align, &"allocate");
                    tag = tag.wrapping_add(1) | 1;
                    // SAFETY: the block is ours, `us` bytes long.
                    unsafe { fill(p.as_ptr(), us, tag) };
                    m.insert(Block {
                        addr: a,
                        len: us,
                        byte: tag,
                        align: align.max(1),
                    });
                }
            }
            Op::Free(idx) => {
                if let Some(b) = m.pick(idx) {
                    // SAFETY: a live block in the model.
                    unsafe { verify("free", b.addr as *const u8, b.len, b.byte) };
                    m.remove(b.addr);
                    // SAFETY: a live block of this heap, given up here.
                    unsafe { h.deallocate(NonNull::new(b.addr as *mut u8).unwrap()) }
                        .unwrap_or_else(|e| panic!("{}: free of a live block: {e}", h.name()));
                    just_freed = Some(b.addr);
                    if freed_long_ago.len() < 64 {
                        freed_long_ago.push(b.addr);
                    }
                }
            }
            Op::Realloc(idx, size, align) => {
                if let Some(b) = m.pick(idx) {
                    let align = if align == 0 { b.align } else { align };
                    let p = NonNull::new(b.addr as *mut u8).unwrap();
                    // SAFETY: a live block of this heap.
                    unsafe { verify("realloc (before)", p.as_ptr(), b.len, b.byte) };
                    // SAFETY: a live block of this heap.
                    let q = unsafe { h.reallocate(p, size, align) };
                    match q {
                        Some(q) => {
                            let nb = q.as_ptr() as usize;
                            let us = accept(&h, &arena, q, size, align, &"reallocate");
                            let new = Block {
                                addr: nb,
                                len: us,
                                byte: b.byte,
                                align,
                            };
                            // SAFETY: `q` is the live block the heap returned.
                            unsafe {
                                m.replace("realloc (kept contents)", b, new, b.len.min(size))
                            };
                        }
                        None => {
                            // SAFETY: still live: a failed realloc leaves it alone.
                            unsafe { verify("refused realloc", p.as_ptr(), b.len, b.byte) };
                            // SAFETY: as above.
                            assert_eq!(
                                unsafe { h.usable_size(p) }.unwrap(),
                                b.len,
                                "{}: refused realloc changed the block",
                                h.name()
                            );
                        }
                    }
                }
            }
            Op::Resize(idx, size) => {
                if let Some(b) = m.pick(idx) {
                    let p = NonNull::new(b.addr as *mut u8).unwrap();
                    // SAFETY: a live block.
                    if unsafe { h.resize_in_place(p, size) } {
                        assert!(
                            size <= isize::MAX as usize,
                            "{}: resize to {size:#x} accepted",
                            h.name()
                        );
                        // SAFETY: live block.
                        let us = unsafe { h.usable_size(p) }.unwrap();
                        assert!(
                            us >= size.max(1),
                            "{}: resize usable {us} < {size}",
                            h.name()
                        );
                        assert!(arena.contains(b.addr + us - 1));
                        // SAFETY: the block, still live, now `us` bytes.
                        unsafe {
                            m.replace(
                                "resize_in_place (kept contents)",
                                b,
                                Block { len: us, ..b },
                                b.len.min(us),
                            )
                        };
                    } else {
                        // SAFETY: still live.
                        unsafe { verify("refused resize_in_place", p.as_ptr(), b.len, b.byte) };
                    }
                }
            }
            Op::Foreign => {
                let mut local = [0x5Au8; 64];
                let q = NonNull::new(local.as_mut_ptr().wrapping_add(16)).unwrap();
                assert!(!h.owns(q.as_ptr()));
                // SAFETY: the heap must refuse a pointer outside its regions
                // without writing to it.
                let e = unsafe { h.deallocate(q) }.expect_err("foreign pointer freed");
                assert_eq!(
                    e.kind,
                    HeapErrorKind::NotOwned,
                    "{}: foreign pointer: {e}",
                    h.name()
                );
                // SAFETY: as above.
                assert!(unsafe { h.usable_size(q) }.is_err());
                assert!(
                    local.iter().all(|&b| b == 0x5A),
                    "{}: heap wrote to a foreign pointer",
                    h.name()
                );
            }
            Op::DoubleFree(a) => {
                if !m.covers(a) {
                    // SAFETY: the heap must report a pointer freed before
                    // (and not inside a live block) without corrupting itself.
                    let e = unsafe { h.deallocate(NonNull::new(a as *mut u8).unwrap()) };
                    assert!(
                        e.is_err(),
                        "{}: double free of {a:#x} was accepted",
                        h.name()
                    );
                }
            }
            Op::Interior(idx, off) => {
                if let Some(b) = m.pick(idx) {
                    let off = off % b.len.max(2);
                    if off != 0 {
                        let q = NonNull::new((b.addr + off) as *mut u8).unwrap();
                        // SAFETY: inside a live block; the heap must refuse it.
                        let e = unsafe { h.deallocate(q) };
                        assert!(
                            e.is_err(),
                            "{}: interior pointer {:#x}+{off} was freed",
                            h.name(),
                            b.addr
                        );
                        // SAFETY: live block.
                        unsafe {
                            verify("after interior free", b.addr as *const u8, b.len, b.byte)
                        };
                    }
                }
            }
        }
        let full = strict || steps <= CHECK_FIRST || steps % CHECK_EVERY == 0;
        check(&h, &m, &op, full);
    }

    check(&h, &m, &"end of program", true);
    // The walk reports exactly the live blocks as used.
    let mut used = Vec::new();
    h.walk(&mut |b| {
        if b.state == BlockState::Used {
            used.push(b.payload);
        }
    });
    used.sort_unstable();
    let live: Vec<Block> = m.drain();
    let expected: Vec<usize> = live.iter().map(|b| b.addr).collect();
    assert_eq!(
        used,
        expected,
        "{}: walk's used blocks differ from the model",
        h.name()
    );
    for b in live {
        ops += 1;
        // SAFETY: a live block.
        unsafe { verify("final free", b.addr as *const u8, b.len, b.byte) };
        // SAFETY: a live block, given up.
        unsafe { h.deallocate(NonNull::new(b.addr as *mut u8).unwrap()) }.unwrap();
    }
    check(&h, &m, &"free all", true);
    assert_eq!(h.stats().in_use, 0);
    fuzzkit::count_ops_for(pick, ops);
});
