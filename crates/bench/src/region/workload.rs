//! The three region-heap workloads: random actions (throughput), heap
//! efficiency (fill until the first failure), and per-operation latency.
//!
//! The operation stream is drawn once from a seeded [`Rng`] and replayed
//! for every allocator, so each one sees the same requests in the same
//! order (an allocator that fails a request leaves its slot empty, so the
//! streams diverge only after a failure, which is counted).
//!
//! Sizes: 89% log-uniform in 8..=512 B, 10.8% in 513 B..=64 KiB, 0.2% in
//! 64 KiB..=1 MiB. Alignments: 70% 8, 15% 16, 10% 32..=256, 4% 512..=2048,
//! 1% 4096.

use core::ptr::NonNull;
use std::time::Instant;

use super::heaps::BenchHeap;
use crate::rng::Rng;
use crate::stats::percentile_sorted;

/// A request size drawn from the benchmark's distribution.
pub fn gen_size(rng: &mut Rng) -> usize {
    let r = rng.below(1000);
    (if r < 890 {
        rng.log_uniform(8, 512)
    } else if r < 998 {
        rng.log_uniform(513, 64 << 10)
    } else {
        rng.log_uniform((64 << 10) + 1, 1 << 20)
    }) as usize
}

/// log2 of an alignment drawn from the benchmark's distribution.
pub fn gen_align_log2(rng: &mut Rng) -> u8 {
    let r = rng.below(100);
    (if r < 70 {
        3
    } else if r < 85 {
        4
    } else if r < 95 {
        rng.range(5, 8)
    } else if r < 99 {
        rng.range(9, 11)
    } else {
        12
    }) as u8
}

/// One pre-drawn step of the random-actions stream.
#[derive(Debug, Clone, Copy)]
pub struct Op {
    /// The slot the step acts on.
    pub slot: u32,
    /// Size for an allocation or the new size for a reallocation.
    pub size: u32,
    /// 0..100: on a full slot, below [`FREE_PERCENT`] frees, else reallocates.
    pub roll: u8,
    /// log2 of the alignment of a new block.
    pub align_log2: u8,
}

/// Share of the steps on a live slot that free it (the rest reallocate).
pub const FREE_PERCENT: u8 = 60;

/// Draw `n` steps over `slots` slots from `seed`.
pub fn gen_ops(seed: u64, n: usize, slots: usize) -> Vec<Op> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| Op {
            slot: rng.below(slots as u64) as u32,
            size: gen_size(&mut rng) as u32,
            roll: rng.below(100) as u8,
            align_log2: gen_align_log2(&mut rng),
        })
        .collect()
}

/// A live block the workload holds.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    ptr: Option<NonNull<u8>>,
    size: u32,
    align_log2: u8,
}

impl Slot {
    /// An empty slot.
    pub const EMPTY: Slot = Slot {
        ptr: None,
        size: 0,
        align_log2: 0,
    };
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Successful allocations.
    pub allocs: u64,
    /// Frees.
    pub frees: u64,
    /// Successful reallocations.
    pub reallocs: u64,
    /// Allocations or reallocations the heap refused.
    pub fails: u64,
}

/// Per-operation latency samples (timer ticks).
#[derive(Debug, Default)]
pub struct Samples {
    /// One entry per allocation attempt.
    pub alloc: Vec<u64>,
    /// One entry per free.
    pub free: Vec<u64>,
}

/// A timestamp in timer ticks: the time-stamp counter on x86_64 (fenced so
/// the measured call cannot drift across it), nanoseconds elsewhere.
#[inline(always)]
pub fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_lfence, _rdtsc};
        // SAFETY: lfence and rdtsc exist on every x86_64 CPU and touch no memory.
        unsafe {
            _mm_lfence();
            let t = _rdtsc();
            _mm_lfence();
            t
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        use std::sync::OnceLock;
        static T0: OnceLock<Instant> = OnceLock::new();
        T0.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// The unit [`ticks`] counts in.
pub const TICK_UNIT: &str = if cfg!(target_arch = "x86_64") {
    "TSC cycles"
} else {
    "ns"
};

/// The median cost of an empty `ticks(); ticks()` pair (included in every
/// latency sample).
pub fn timer_overhead() -> u64 {
    let mut v: Vec<u64> = (0..10_001)
        .map(|_| {
            let a = ticks();
            let b = ticks();
            b.wrapping_sub(a)
        })
        .collect();
    v.sort_unstable();
    v[v.len() / 2]
}

/// Replay `ops` on `h`. With `TIMED`, every allocation and free is timed
/// into `samples` (which must have room: nothing is allocated in the loop).
#[inline(never)]
fn replay<H: BenchHeap, const TIMED: bool>(
    h: &mut H,
    ops: &[Op],
    slots: &mut [Slot],
    samples: &mut Samples,
) -> Counts {
    let mut c = Counts::default();
    for op in ops {
        let s = &mut slots[op.slot as usize];
        match s.ptr {
            None => {
                let align = 1usize << op.align_log2;
                let t0 = if TIMED { ticks() } else { 0 };
                let p = h.alloc(op.size as usize, align);
                if TIMED {
                    samples.alloc.push(ticks().wrapping_sub(t0));
                }
                match p {
                    Some(p) => {
                        // SAFETY: a fresh block of at least `size` (>= 8) bytes.
                        unsafe { p.as_ptr().write(op.slot as u8) };
                        *s = Slot {
                            ptr: Some(p),
                            size: op.size,
                            align_log2: op.align_log2,
                        };
                        c.allocs += 1;
                    }
                    None => c.fails += 1,
                }
            }
            Some(p) if op.roll < FREE_PERCENT => {
                let t0 = if TIMED { ticks() } else { 0 };
                // SAFETY: the slot holds a live block with this size and alignment.
                unsafe { h.free(p, s.size as usize, 1 << s.align_log2) };
                if TIMED {
                    samples.free.push(ticks().wrapping_sub(t0));
                }
                *s = Slot::EMPTY;
                c.frees += 1;
            }
            Some(p) => {
                // SAFETY: as above.
                let r =
                    unsafe { h.realloc(p, s.size as usize, 1 << s.align_log2, op.size as usize) };
                match r {
                    Some(q) => {
                        s.ptr = Some(q);
                        s.size = op.size;
                        c.reallocs += 1;
                    }
                    None => c.fails += 1,
                }
            }
        }
    }
    c
}

/// Free every live block in `slots`.
fn drain<H: BenchHeap>(h: &mut H, slots: &mut [Slot]) {
    for s in slots.iter_mut() {
        if let Some(p) = s.ptr {
            // SAFETY: the slot holds a live block with this size and alignment.
            unsafe { h.free(p, s.size as usize, 1 << s.align_log2) };
        }
        *s = Slot::EMPTY;
    }
}

/// CPU time this thread has used, in seconds (`CLOCK_THREAD_CPUTIME_ID`):
/// unlike wall time it does not count time the thread spent preempted by
/// other processes on a shared machine.
pub fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// One timed replay of `ops` on a fresh heap: (thread CPU seconds, wall
/// seconds, counts). The heap is drained and checked afterwards, outside
/// the timing.
pub fn throughput<H: BenchHeap>(
    h: &mut H,
    ops: &[Op],
    slots: usize,
) -> Result<(f64, f64, Counts), String> {
    let mut sl = vec![Slot::EMPTY; slots];
    let mut none = Samples::default();
    let t = Instant::now();
    let cpu0 = thread_cpu_secs();
    let c = replay::<H, false>(h, ops, &mut sl, &mut none);
    let cpu = thread_cpu_secs() - cpu0;
    let wall = t.elapsed().as_secs_f64();
    h.check()
        .map_err(|e| format!("check after random actions: {e}"))?;
    drain(h, &mut sl);
    h.check()
        .map_err(|e| format!("check after freeing all: {e}"))?;
    Ok((cpu, wall, c))
}

/// The latency percentiles of one operation kind.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample.
    pub max: u64,
    /// Number of samples.
    pub n: u64,
}

impl Percentiles {
    /// Each field the median of that field over `runs` (the upper median
    /// for an even count); zero if there are none.
    pub fn median_of(runs: &[Percentiles]) -> Percentiles {
        let med = |f: fn(&Percentiles) -> u64| {
            let mut v: Vec<u64> = runs.iter().map(f).collect();
            v.sort_unstable();
            v.get(v.len() / 2).copied().unwrap_or(0)
        };
        Percentiles {
            p50: med(|p| p.p50),
            p99: med(|p| p.p99),
            p999: med(|p| p.p999),
            max: med(|p| p.max),
            n: med(|p| p.n),
        }
    }

    /// Summarise `v` (sorted in place).
    pub fn of(v: &mut [u64]) -> Percentiles {
        v.sort_unstable();
        Percentiles {
            p50: percentile_sorted(v, 50.0),
            p99: percentile_sorted(v, 99.0),
            p999: percentile_sorted(v, 99.9),
            max: v.last().copied().unwrap_or(0),
            n: v.len() as u64,
        }
    }
}

/// Replay `ops` timing every allocation and free: (alloc, free) percentiles.
pub fn latency<H: BenchHeap>(
    h: &mut H,
    ops: &[Op],
    slots: usize,
) -> Result<(Percentiles, Percentiles), String> {
    let mut sl = vec![Slot::EMPTY; slots];
    let mut s = Samples {
        alloc: Vec::with_capacity(ops.len()),
        free: Vec::with_capacity(ops.len()),
    };
    replay::<H, true>(h, ops, &mut sl, &mut s);
    drain(h, &mut sl);
    h.check()
        .map_err(|e| format!("check after latency run: {e}"))?;
    Ok((Percentiles::of(&mut s.alloc), Percentiles::of(&mut s.free)))
}

/// Heap efficiency, one round: allocate (60%), free (10%) and reallocate
/// (30%) at random until the heap first refuses a request; the result is
/// the sum of the requested sizes of the live blocks at that moment over
/// `region_len`. Returns (fraction, live blocks).
pub fn efficiency_round<H: BenchHeap>(
    h: &mut H,
    seed: u64,
    region_len: usize,
) -> Result<(f64, usize), String> {
    let mut rng = Rng::new(seed);
    let mut live: Vec<(NonNull<u8>, usize, usize)> = Vec::with_capacity(1 << 16);
    // A bound so a heap that never refuses cannot loop forever.
    for _ in 0..50_000_000u64 {
        let r = rng.below(10);
        if r < 6 {
            let (size, align) = (gen_size(&mut rng), 1usize << gen_align_log2(&mut rng));
            match h.alloc(size, align) {
                Some(p) => live.push((p, size, align)),
                None => break,
            }
        } else if live.is_empty() {
            continue;
        } else if r == 6 {
            let i = rng.below(live.len() as u64) as usize;
            let (p, size, align) = live.swap_remove(i);
            // SAFETY: a live block with this size and alignment.
            unsafe { h.free(p, size, align) };
        } else {
            let i = rng.below(live.len() as u64) as usize;
            let new_size = gen_size(&mut rng);
            let (p, size, align) = live[i];
            // SAFETY: a live block with this size and alignment.
            match unsafe { h.realloc(p, size, align, new_size) } {
                Some(q) => live[i] = (q, new_size, align),
                None => break,
            }
        }
    }
    let used: usize = live.iter().map(|b| b.1).sum();
    let n = live.len();
    h.check().map_err(|e| format!("check when full: {e}"))?;
    for (p, size, align) in live {
        // SAFETY: a live block with this size and alignment.
        unsafe { h.free(p, size, align) };
    }
    h.check()
        .map_err(|e| format!("check after freeing all: {e}"))?;
    Ok((used as f64 / region_len as f64, n))
}
