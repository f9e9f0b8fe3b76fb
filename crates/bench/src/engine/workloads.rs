//! The process-level workloads. Each calls the C library's `malloc`,
//! `realloc` and `free` directly (through the `libc` crate), so whichever
//! allocator is preloaded serves every request.
//!
//! | name | threads | what it stresses |
//! |---|---|---|
//! | `churn` | 1 | mixed sizes (8 B – 256 KiB, mostly small), random replace over 10 000 slots |
//! | `prodcons` | 2 | a producer mallocs, a consumer frees: every free is cross-thread |
//! | `larson` | T | each thread replaces blocks in an array; arrays rotate between threads every round, so most frees are of blocks another thread allocated |
//! | `realloc` | 1 | 64 interleaved buffers grown a few bytes at a time by `realloc` to 64 KiB |
//! | `frag` | 1 | 400 000 small blocks, 7/8 freed at random, then larger blocks: peak RSS shows how well freed memory is reused |
//! | `threads` | T | `churn`-like per-thread work, fixed work per thread: scaling 1–2–4 |
//! | `thread-churn` | 10 at a time | 50 000 short-lived threads; each allocates a 128-byte block that outlives it (swapped into one of 1 000 slots) and frees the one it found there, usually left by a thread that has exited (mimalloc-bench's mleak): peak RSS shows whether segments of exited threads are reused |
//! | `huge` | 1 | allocate, fill and free blocks of 5–25 MiB, one at a time |
//! | `false-passive` | T | the main thread allocates one 8-byte object per worker (neighbours); each worker frees it, then allocates, writes many times and frees 8-byte objects (cache-scratch) |
//! | `false-active` | T | each worker allocates, writes many times and frees 8-byte objects (cache-thrash) |
//! | `churn-wide` | 1 | `churn` over 20 000 slots, 5% of sizes 1–64 KiB |
//! | `realloc-wide` | 1 | `realloc` growth of 64 buffers to 1 MiB |
//!
//! `scale` multiplies the amount of work (1.0: the full benchmark).

use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use crate::rng::Rng;

/// Every workload's name.
pub const NAMES: &[&str] = &[
    "churn",
    "prodcons",
    "larson",
    "realloc",
    "frag",
    "threads",
    "thread-churn",
    "huge",
    "false-passive",
    "false-active",
    "churn-wide",
    "realloc-wide",
];

/// What one run measured.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// Seconds spent in the workload (process start-up excluded).
    pub secs: f64,
    /// Peak resident set size of the process, KiB (`getrusage` `ru_maxrss`).
    pub maxrss_kb: u64,
    /// A value computed from the blocks' contents, so no work is optimised away.
    pub checksum: u64,
}

/// Run workload `name` with `threads` threads (where it takes a count) at
/// `scale`.
pub fn run(name: &str, threads: usize, scale: f64) -> Result<Measured, String> {
    let n = |base: f64| ((base * scale) as usize).max(1);
    let threads = threads.max(1);
    let t = Instant::now();
    let checksum = match name {
        "churn" => churn(1, 10_000, n(9_000_000.0), Mix::Big),
        "prodcons" => prodcons(n(2_000_000.0)),
        "larson" => larson(threads, 2_000, n(200.0), 20_000),
        "realloc" => realloc_growth(64, 64 << 10, n(40.0)),
        "frag" => frag(n(400_000.0)),
        "threads" => threads_churn(threads, n(5_000_000.0)),
        "thread-churn" => thread_churn(10, n(50_000.0)),
        "huge" => huge(n(400.0)),
        "false-passive" => false_sharing(threads, Sharing::Passive, n(2_000.0), 10_000),
        "false-active" => false_sharing(threads, Sharing::Active, n(2_000.0), 10_000),
        "churn-wide" => churn(5, 20_000, n(6_000_000.0), Mix::Wide),
        "realloc-wide" => realloc_growth(64, 1 << 20, n(4.0)),
        _ => return Err(format!("unknown workload {name}; known: {NAMES:?}")),
    };
    let secs = t.elapsed().as_secs_f64();
    Ok(Measured {
        secs,
        maxrss_kb: maxrss_kb(),
        checksum,
    })
}

/// Peak RSS of this process in KiB.
pub fn maxrss_kb() -> u64 {
    // SAFETY: `rusage` is plain data; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc == 0 {
        ru.ru_maxrss.max(0) as u64
    } else {
        0
    }
}

/// `malloc(size)`, writing the first and last byte; aborts on failure (a
/// benchmark cannot go on without the block).
fn m(size: usize, tag: u8) -> *mut u8 {
    // SAFETY: malloc may be called with any size.
    let p = unsafe { libc::malloc(size) }.cast::<u8>();
    if p.is_null() {
        eprintln!("engine-workload: malloc({size}) failed");
        std::process::abort();
    }
    // SAFETY: a fresh block of `size` >= 1 bytes.
    unsafe {
        p.write(tag);
        p.add(size - 1).write(tag);
    }
    p
}

/// Read a block's first byte and free it.
///
/// # Safety
/// `p` came from `malloc`/`realloc` and is live.
unsafe fn f(p: *mut u8) -> u64 {
    // SAFETY: a live block of at least one byte.
    let b = unsafe { p.read() } as u64;
    // SAFETY: as above; ownership ends here.
    unsafe { libc::free(p.cast()) };
    b
}

/// A churn size mix: 70% 8–128 B, 25% to 1 KiB, the rest larger.
#[derive(Clone, Copy)]
enum Mix {
    /// 5% 1–16 KiB.
    Small,
    /// 4.5% 1–16 KiB, 0.5% 16–256 KiB.
    Big,
    /// 5% 1–64 KiB.
    Wide,
}

fn churn_size(rng: &mut Rng, mix: Mix) -> usize {
    let r = rng.below(1000);
    (if r < 700 {
        rng.range(8, 128)
    } else if r < 950 {
        rng.range(129, 1024)
    } else {
        match mix {
            Mix::Big if r >= 995 => rng.range((16 << 10) + 1, 256 << 10),
            Mix::Small | Mix::Big => rng.range(1025, 16 << 10),
            Mix::Wide => rng.range(1025, 64 << 10),
        }
    }) as usize
}

/// Random replacement over `slots` slots, `ops` times.
fn churn(seed: u64, slots: usize, ops: usize, mix: Mix) -> u64 {
    let mut rng = Rng::new(seed);
    let mut v: Vec<*mut u8> = vec![std::ptr::null_mut(); slots];
    let mut sum = 0u64;
    for i in 0..ops {
        let s = rng.below(slots as u64) as usize;
        if !v[s].is_null() {
            // SAFETY: the slot holds a live block.
            sum += unsafe { f(v[s]) };
        }
        v[s] = m(churn_size(&mut rng, mix), i as u8);
    }
    for p in v.into_iter().filter(|p| !p.is_null()) {
        // SAFETY: live block.
        sum += unsafe { f(p) };
    }
    sum
}

/// `threads` threads, each running [`churn`] on its own slots.
fn threads_churn(threads: usize, ops_per_thread: usize) -> u64 {
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || churn(100 + t as u64, 2_000, ops_per_thread, Mix::Small))
        })
        .collect();
    hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
}

/// A single-producer single-consumer ring of block pointers.
struct Ring {
    buf: Box<[AtomicPtr<u8>]>,
    head: CachePadded<AtomicUsize>,
    tail: CachePadded<AtomicUsize>,
}

#[repr(align(128))]
struct CachePadded<T>(T);

fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 64 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

impl Ring {
    fn new(cap: usize) -> Ring {
        Ring {
            buf: (0..cap)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
            head: CachePadded(AtomicUsize::new(0)),
            tail: CachePadded(AtomicUsize::new(0)),
        }
    }
    fn push(&self, p: *mut u8) {
        let cap = self.buf.len();
        let t = self.tail.0.load(Ordering::Relaxed);
        let mut spins = 0;
        while t - self.head.0.load(Ordering::Acquire) >= cap {
            backoff(&mut spins);
        }
        self.buf[t % cap].store(p, Ordering::Relaxed);
        self.tail.0.store(t + 1, Ordering::Release);
    }
    fn pop(&self) -> *mut u8 {
        let h = self.head.0.load(Ordering::Relaxed);
        let mut spins = 0;
        while self.tail.0.load(Ordering::Acquire) == h {
            backoff(&mut spins);
        }
        let p = self.buf[h % self.buf.len()].load(Ordering::Relaxed);
        self.head.0.store(h + 1, Ordering::Release);
        p
    }
}

/// A producer thread mallocs `n` blocks of 16–512 B and hands them over; a
/// consumer reads and frees them.
fn prodcons(n: usize) -> u64 {
    let ring = Arc::new(Ring::new(4096));
    let r2 = Arc::clone(&ring);
    let producer = std::thread::spawn(move || {
        let mut rng = Rng::new(7);
        for i in 0..n {
            let size = rng.range(16, 512) as usize;
            let p = m(size, i as u8);
            r2.push(p);
        }
    });
    let mut sum = 0u64;
    for _ in 0..n {
        let p = ring.pop();
        // SAFETY: the producer handed over a live block it no longer touches.
        sum += unsafe { f(p) };
    }
    let _ = producer.join();
    sum
}

/// The arrays of the larson workload; round `r` gives thread `i` array
/// `(i + r) % threads`, and a barrier separates rounds, so no array is ever
/// touched by two threads at once.
struct Arrays(Vec<std::cell::UnsafeCell<Vec<*mut u8>>>);

// SAFETY: access is partitioned by round and thread as described above.
unsafe impl Sync for Arrays {}
// SAFETY: the pointers are heap blocks any thread may free.
unsafe impl Send for Arrays {}

/// Larson-style exchange: `threads` threads, `slots` blocks each, `rounds`
/// rounds of `ops` replacements; arrays rotate every round.
fn larson(threads: usize, slots: usize, rounds: usize, ops: usize) -> u64 {
    let arrays = Arc::new(Arrays(
        (0..threads)
            .map(|_| std::cell::UnsafeCell::new(vec![std::ptr::null_mut(); slots]))
            .collect(),
    ));
    let barrier = Arc::new(Barrier::new(threads));
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let (arrays, barrier) = (Arc::clone(&arrays), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let mut rng = Rng::new(1000 + t as u64);
                let mut sum = 0u64;
                for r in 0..rounds {
                    let idx = (t + r) % arrays.0.len();
                    // SAFETY: in round r only thread t touches array idx (see `Arrays`).
                    let a = unsafe { &mut *arrays.0[idx].get() };
                    for i in 0..ops {
                        let s = rng.below(a.len() as u64) as usize;
                        if !a[s].is_null() {
                            // SAFETY: live block.
                            sum += unsafe { f(a[s]) };
                        }
                        a[s] = m(rng.range(16, 512) as usize, i as u8);
                    }
                    barrier.wait();
                }
                sum
            })
        })
        .collect();
    let mut sum: u64 = hs.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    for cell in &arrays.0 {
        // SAFETY: every worker has joined; we are alone.
        for &p in unsafe { &*cell.get() } {
            if !p.is_null() {
                // SAFETY: live block.
                sum += unsafe { f(p) };
            }
        }
    }
    sum
}

/// `bufs` buffers grown in turn by 1–64 bytes at a time with `realloc`
/// (exact sizes, no doubling) until each reaches `cap`; `rounds` times.
fn realloc_growth(bufs: usize, cap: usize, rounds: usize) -> u64 {
    let mut rng = Rng::new(3);
    let mut sum = 0u64;
    for _ in 0..rounds {
        let mut v: Vec<(*mut u8, usize)> = vec![(std::ptr::null_mut(), 0); bufs];
        let mut done = 0;
        while done < bufs {
            done = 0;
            for (p, len) in v.iter_mut() {
                if *len >= cap {
                    done += 1;
                    continue;
                }
                let add = rng.range(1, 64) as usize;
                // SAFETY: `p` is null or a live block; realloc keeps its contents.
                let q = unsafe { libc::realloc((*p).cast(), *len + add) }.cast::<u8>();
                if q.is_null() {
                    eprintln!("engine-workload: realloc({}) failed", *len + add);
                    std::process::abort();
                }
                // SAFETY: the new block has `len + add` bytes.
                unsafe { q.add(*len).write_bytes(*len as u8, add) };
                *p = q;
                *len += add;
            }
        }
        for (p, len) in v {
            // SAFETY: a live block of `len` bytes.
            sum += unsafe { p.add(len / 2).read() } as u64;
            // SAFETY: live block.
            sum += unsafe { f(p) };
        }
    }
    sum
}

/// Fragmentation: `n` blocks of 16–256 B, 7/8 of them freed at random, then
/// blocks of 512 B – 4 KiB until about as many bytes as were freed are
/// allocated again; then everything is freed.
fn frag(n: usize) -> u64 {
    let mut rng = Rng::new(11);
    let mut small: Vec<(*mut u8, usize)> = (0..n)
        .map(|i| {
            let s = rng.range(16, 256) as usize;
            (m(s, i as u8), s)
        })
        .collect();
    let mut sum = 0u64;
    let mut freed = 0usize;
    small.retain(|&(p, s)| {
        if rng.below(8) != 0 {
            freed += s;
            // SAFETY: live block.
            sum += unsafe { f(p) };
            false
        } else {
            true
        }
    });
    let mut big = Vec::new();
    let mut got = 0usize;
    while got < freed {
        let s = rng.range(512, 4096) as usize;
        big.push(m(s, s as u8));
        got += s;
    }
    for (p, _) in small {
        // SAFETY: live block.
        sum += unsafe { f(p) };
    }
    for p in big {
        // SAFETY: live block.
        sum += unsafe { f(p) };
    }
    sum
}

/// Slots a `thread-churn` thread swaps its block into (mimalloc-bench's
/// mleak: 100 per thread of a batch).
const TRANSFERS: usize = 1000;

/// `thread-churn`'s shared state: the transfer slots and the random slot
/// choice (one sequence for the whole run, taken under no lock: a slot
/// index only needs to be spread, not reproducible).
static TRANSFER: [AtomicPtr<u8>; TRANSFERS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; TRANSFERS];
static PICK: AtomicUsize = AtomicUsize::new(0x1ce4_e5b9);

/// One `thread-churn` thread: a zeroed 128-byte block swapped into a
/// random slot; the block found there (another thread's, usually one that
/// has exited) is freed.
extern "C" fn leak(_: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: calloc may be called with any sizes.
    let p = unsafe { libc::calloc(16, 8) }.cast::<u8>();
    if p.is_null() {
        std::process::abort();
    }
    let r = PICK.fetch_add(0x9e37_79b9, Ordering::Relaxed);
    let i = (r.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 16) % TRANSFERS;
    let q = TRANSFER[i].swap(p, Ordering::AcqRel);
    // SAFETY: null or a live block that left its slot to us alone.
    unsafe { libc::free(q.cast()) };
    std::ptr::null_mut()
}

/// `total` threads (raw pthreads, so the language runtime allocates
/// nothing per thread), `at_once` at a time: each runs [`leak`], so about
/// a thousand blocks stay live, each left by a thread that has exited, and
/// are freed later by another thread. The checksum is the thread count
/// (the slot choice races between threads, so block contents cannot be
/// summed the same way twice).
fn thread_churn(at_once: usize, total: usize) -> u64 {
    let mut started = 0;
    while started < total {
        let k = at_once.min(total - started);
        let mut ts: Vec<libc::pthread_t> = Vec::with_capacity(k);
        for _ in 0..k {
            // SAFETY: pthread_t is plain data, written by pthread_create.
            let mut t: libc::pthread_t = unsafe { std::mem::zeroed() };
            // SAFETY: a valid entry point taking and returning a pointer.
            let rc = unsafe {
                libc::pthread_create(&mut t, std::ptr::null(), leak, std::ptr::null_mut())
            };
            if rc != 0 {
                eprintln!("engine-workload: pthread_create failed ({rc})");
                std::process::abort();
            }
            ts.push(t);
        }
        for t in ts {
            // SAFETY: a thread we created and have not joined.
            unsafe { libc::pthread_join(t, std::ptr::null_mut()) };
        }
        started += k;
    }
    for slot in &TRANSFER {
        // SAFETY: every thread has joined; null or a live block.
        unsafe { libc::free(slot.swap(std::ptr::null_mut(), Ordering::AcqRel).cast()) };
    }
    total as u64
}

/// `n` blocks of 5–25 MiB, each allocated, filled and freed in turn.
fn huge(n: usize) -> u64 {
    let mut rng = Rng::new(17);
    let mut sum = 0u64;
    for i in 0..n {
        let size = rng.range(5 << 20, 25 << 20) as usize;
        let p = m(size, i as u8);
        // SAFETY: a fresh block of `size` bytes.
        unsafe {
            p.write_bytes(i as u8, size);
            sum += p.add(size / 3).read() as u64;
            libc::free(p.cast());
        }
    }
    sum
}

/// Which false-sharing test: the first object handed over or not.
#[derive(Clone, Copy, PartialEq)]
enum Sharing {
    /// Each worker starts by freeing an object the main thread allocated
    /// next to the other workers' (mimalloc-bench's cache-scratch).
    Passive,
    /// No hand-over (cache-thrash).
    Active,
}

/// `threads` workers; each does `iters` times: malloc 8 bytes, write each
/// byte `writes` times, free. An allocator that hands two threads blocks
/// in one cache line makes the writes contend.
fn false_sharing(threads: usize, how: Sharing, iters: usize, writes: usize) -> u64 {
    let handed: Vec<usize> = (0..threads)
        .map(|i| {
            if how == Sharing::Passive {
                m(8, i as u8) as usize
            } else {
                0
            }
        })
        .collect();
    let hs: Vec<_> = handed
        .into_iter()
        .map(|first| {
            std::thread::spawn(move || {
                let mut s = 0u64;
                if first != 0 {
                    // SAFETY: a live block handed to this thread alone.
                    s += unsafe { f(first as *mut u8) };
                }
                for i in 0..iters {
                    let p = m(8, i as u8);
                    for w in 0..writes {
                        for k in 0..8 {
                            // SAFETY: a live block of 8 bytes; volatile so
                            // every write reaches the cache line.
                            unsafe {
                                let q = p.add(k);
                                q.write_volatile(q.read_volatile().wrapping_add(w as u8));
                            }
                        }
                    }
                    // SAFETY: live block.
                    s += unsafe { f(p) };
                }
                s
            })
        })
        .collect();
    hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workload_runs_tiny() {
        for name in NAMES {
            let m = run(name, 2, 0.001).unwrap();
            assert!(m.secs >= 0.0 && m.maxrss_kb > 0, "{name}: {m:?}");
        }
        assert!(run("nope", 1, 1.0).is_err());
    }
}
