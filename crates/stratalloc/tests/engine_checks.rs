//! Engine: bad frees abort with a message naming the pointer, fork hooks
//! leave a usable allocator in the child, memory goes back to the OS (RSS
//! measured in a single-threaded child), empty pages are purged after the
//! delay.
//!
//! Children are made with `fork` around the engine's fork hooks; a child
//! uses only the engine and raw syscalls (no std allocation).

use stratalloc::__private::engine::{self, ENGINE};
use stratalloc::__private::os;
use stratalloc::__private::Backend;

mod common;
use common::{expect_abort, in_child};

#[test]
fn double_free_of_a_small_block_aborts() {
    expect_abort(
        || {
            let p = engine::malloc(40);
            let q = engine::malloc(40);
            // SAFETY: deliberately wrong: the second free of `p`.
            unsafe {
                engine::free(p);
                engine::free(p);
            }
            core::hint::black_box(q);
            0
        },
        "double free",
    );
}

#[test]
fn double_free_of_a_large_block_aborts() {
    expect_abort(
        || {
            let p = engine::malloc(1 << 20);
            // SAFETY: deliberately wrong.
            unsafe {
                engine::free(p);
                engine::free(p);
            }
            0
        },
        "free of",
    );
}

#[test]
fn free_of_a_foreign_pointer_aborts() {
    expect_abort(
        || {
            let x = [0u64; 4];
            // SAFETY: deliberately wrong: a stack address.
            unsafe { engine::free(x.as_ptr() as *mut u8) };
            0
        },
        "not allocated by stratalloc",
    );
}

#[test]
fn free_of_a_misaligned_pointer_into_a_remote_page_aborts() {
    expect_abort(
        || {
            // A block of another thread's page goes through the generic
            // path, which checks block boundaries.
            let mut out = 0usize;
            // SAFETY: a raw pthread (no std allocation) that returns a block.
            unsafe {
                extern "C" fn body(arg: *mut libc::c_void) -> *mut libc::c_void {
                    // SAFETY: `arg` points at the parent's usize.
                    unsafe { *(arg as *mut usize) = engine::malloc(64) as usize };
                    core::ptr::null_mut()
                }
                let mut t: libc::pthread_t = 0;
                libc::pthread_create(
                    &mut t,
                    core::ptr::null(),
                    body,
                    (&mut out as *mut usize).cast(),
                );
                libc::pthread_join(t, core::ptr::null_mut());
                engine::free((out + 8) as *mut u8);
            }
            0
        },
        "not the start of a block",
    );
}

#[test]
fn child_after_fork_allocates_and_trim_lowers_rss() {
    let (st, err) = in_child(|| {
        let before = os::resident_bytes();
        let n = 2048;
        let mut ptrs = [core::ptr::null_mut::<u8>(); 2048];
        for p in ptrs.iter_mut() {
            *p = engine::malloc(32 << 10);
            if p.is_null() {
                return 2;
            }
            // SAFETY: fresh block of 32 KiB.
            unsafe { core::ptr::write_bytes(*p, 1, 32 << 10) };
        }
        let full = os::resident_bytes();
        for p in ptrs.iter().take(n) {
            // SAFETY: live blocks.
            unsafe { engine::free(*p) };
        }
        engine::trim();
        let after = os::resident_bytes();
        stratalloc::eprint_noalloc!("rss before {} full {} after {}\n", before, full, after);
        // 64 MiB were touched; at least 56 MiB of it must be gone again.
        if full < before + (60 << 20) {
            return 3;
        }
        if after > full - (56 << 20) {
            return 4;
        }
        0
    });
    assert!(
        libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
        "status {st:#x}: {err}"
    );
}

#[test]
fn empty_pages_are_purged_after_the_delay() {
    std::thread::spawn(|| {
        // Keep the segment alive with one small block, then free 8 MiB of
        // medium blocks: their spans go back to the segment dirty.
        let keep = engine::malloc(16);
        let ptrs: Vec<usize> = (0..100)
            .map(|_| {
                let p = engine::malloc(24 << 10);
                // SAFETY: fresh block.
                unsafe { core::ptr::write_bytes(p, 1, 24 << 10) };
                p as usize
            })
            .collect();
        for p in ptrs {
            // SAFETY: live blocks.
            unsafe { engine::free(p as *mut u8) };
        }
        let before = ENGINE.stats().returned;
        os::advance_clock(stratalloc::__private::tuning::SLICE_PURGE_DELAY_MS + 30);
        // Slow paths (one per 256 blocks of 16 bytes: page extension) run
        // the periodic purge; they create pages but free none.
        let small: Vec<usize> = (0..40_000).map(|_| engine::malloc(16) as usize).collect();
        let after = ENGINE.stats().returned;
        for p in small {
            // SAFETY: live blocks.
            unsafe { engine::free(p as *mut u8) };
        }
        assert!(
            after >= before + (1 << 20),
            "purged only {} bytes",
            after - before
        );
        // SAFETY: live block.
        unsafe { engine::free(keep) };
        engine::check().unwrap();
    })
    .join()
    .unwrap();
}

#[test]
fn threads_start_under_a_tight_address_space_limit() {
    let (st, err) = in_child(|| {
        // Limit the address space to what is mapped now plus 96 MiB: the
        // engine reserves nothing up front, so threads (8 MiB stacks) and
        // their heaps still fit.
        let mut buf = [0u8; 64];
        // SAFETY: reading our own statm into a stack buffer.
        let vm_pages = unsafe {
            let fd = libc::open(c"/proc/self/statm".as_ptr(), libc::O_RDONLY);
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            libc::close(fd);
            buf[..n.max(0) as usize]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .fold(0usize, |a, &c| a * 10 + (c - b'0') as usize)
        };
        let limit = (vm_pages * os::page_size() + (96 << 20)) as libc::rlim_t;
        let rl = libc::rlimit {
            rlim_cur: limit,
            rlim_max: limit,
        };
        // SAFETY: plain syscall.
        if unsafe { libc::setrlimit(libc::RLIMIT_AS, &rl) } != 0 {
            return 5;
        }
        extern "C" fn body(_: *mut libc::c_void) -> *mut libc::c_void {
            let mut ok = 1usize;
            for i in 0..1000 {
                let p = engine::malloc(i * 8);
                if p.is_null() {
                    ok = 0;
                }
                // SAFETY: live block.
                unsafe { engine::free(p) };
            }
            ok as *mut libc::c_void
        }
        for _ in 0..4 {
            let mut ts = [0 as libc::pthread_t; 4];
            for t in ts.iter_mut() {
                // SAFETY: valid out-pointer and entry point.
                if unsafe {
                    libc::pthread_create(t, core::ptr::null(), body, core::ptr::null_mut())
                } != 0
                {
                    return 6;
                }
            }
            for t in ts {
                let mut r = core::ptr::null_mut();
                // SAFETY: joinable threads we created.
                unsafe { libc::pthread_join(t, &mut r) };
                if r.is_null() {
                    return 7;
                }
            }
        }
        0
    });
    assert!(
        libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
        "status {st:#x}: {err}"
    );
}

#[test]
fn double_free_of_a_huge_block_aborts() {
    expect_abort(
        || {
            let p = engine::malloc(6 << 20);
            // SAFETY: deliberately wrong (the mapping sits in the huge
            // cache after the first free).
            unsafe {
                engine::free(p);
                engine::free(p);
            }
            0
        },
        "double free",
    );
}

#[test]
fn freed_huge_mappings_are_reused_then_unmapped_after_the_delay() {
    let (st, err) = in_child(|| {
        let p = engine::malloc(8 << 20);
        // SAFETY: live block, then freed.
        unsafe {
            core::ptr::write_bytes(p, 7, 8 << 20);
            engine::free(p);
        }
        // Same size again: the cached mapping comes back, and calloc must
        // clear what the first user wrote.
        let q = engine::calloc(1, 8 << 20);
        if q != p {
            return 2;
        }
        // SAFETY: live block of 8 MiB.
        if unsafe { core::slice::from_raw_parts(q, 8 << 20) }
            .iter()
            .any(|&b| b != 0)
        {
            return 3;
        }
        // SAFETY: live block.
        unsafe { engine::free(q) };
        let cached = ENGINE.stats().mapped;
        os::advance_clock(stratalloc::__private::tuning::HUGE_CACHE_DELAY_MS + 1);
        // A huge request of another size runs the global purge first.
        let r = engine::malloc(3 << 20);
        let now = ENGINE.stats().mapped;
        stratalloc::eprint_noalloc!("mapped with cache {} after expiry {}\n", cached, now);
        if now + (8 << 20) > cached + (3 << 20) + (1 << 20) {
            return 4;
        }
        // SAFETY: live block.
        unsafe { engine::free(r) };
        0
    });
    assert!(
        libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
        "status {st:#x}: {err}"
    );
}

/// Minor page faults of this process so far.
fn minor_faults() -> i64 {
    // SAFETY: `rusage` is plain data; getrusage fills it.
    let mut ru: libc::rusage = unsafe { core::mem::zeroed() };
    // SAFETY: a valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_minflt
}

/// Page faults taken while allocating `size` bytes and writing them all.
fn faults_to_fill(size: usize) -> (*mut u8, i64) {
    let before = minor_faults();
    let p = engine::malloc(size);
    // SAFETY: a fresh block of `size` bytes.
    unsafe { core::ptr::write_bytes(p, 5, size) };
    (p, minor_faults() - before)
}

/// A freed huge mapping (in the huge cache) serves the next request of a
/// different size: a smaller one as it is (no fault), a larger one grown
/// by `mremap` (faults for the growth only, not for the pages it already
/// had), also after half the cache's delay; a fresh mapping would fault
/// in every page. After the whole delay it is unmapped.
#[test]
fn a_cached_huge_mapping_serves_other_sizes_without_faulting_anew() {
    let (st, err) = in_child(|| {
        let page = os::page_size() as i64;
        let mib = 1 << 20;
        let (p, fresh) = faults_to_fill(12 * mib);
        // SAFETY: live block.
        unsafe { engine::free(p) };
        // Smaller: the 12 MiB mapping serves 7 MiB as it is.
        let (q, smaller) = faults_to_fill(7 * mib);
        // SAFETY: live block.
        unsafe { engine::free(q) };
        // Larger: the 12 MiB mapping grows to 20 MiB.
        let (r, larger) = faults_to_fill(20 * mib);
        // SAFETY: live block.
        unsafe { engine::free(r) };
        // A program that fills a huge block for longer than the slices'
        // purge delay (10 ms) still finds the mapping cached...
        let delay = stratalloc::__private::tuning::HUGE_CACHE_DELAY_MS;
        let a_while = 5 * stratalloc::__private::tuning::PURGE_DELAY_MS;
        os::advance_clock(a_while);
        let (s, later) = faults_to_fill(18 * mib);
        // SAFETY: live block.
        unsafe { engine::free(s) };
        // ...but once the whole delay has passed it is unmapped.
        let cached = ENGINE.stats().mapped;
        os::advance_clock(delay + 1);
        let t = engine::malloc(3 * mib);
        let after = ENGINE.stats().mapped;
        // SAFETY: live block.
        unsafe { engine::free(t) };
        stratalloc::eprint_noalloc!(
            "faults: fresh 12 MiB {}, 7 MiB {}, 20 MiB {}, 18 MiB {} ms later {} ({} per MiB); \
             mapped {} with the 20 MiB cached, {} after the delay and a 3 MiB block\n",
            fresh,
            smaller,
            larger,
            a_while,
            later,
            mib as i64 / page,
            cached,
            after
        );
        if smaller > mib as i64 / page {
            return 5;
        }
        if larger > 9 * mib as i64 / page {
            return 6;
        }
        if later > mib as i64 / page {
            return 7;
        }
        if after + 16 * mib > cached {
            return 8;
        }
        0
    });
    assert!(
        libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
        "status {st:#x}: {err}"
    );
}

#[test]
fn free_of_an_interior_pointer_on_a_local_page_aborts() {
    expect_abort(
        || {
            let p = engine::malloc(512);
            // SAFETY: deliberately wrong: 48 bytes into a live block.
            unsafe { engine::free(p.add(48)) };
            0
        },
        "not the start of a block",
    );
    expect_abort(
        || {
            let p = engine::malloc(700 << 10);
            // SAFETY: deliberately wrong: inside a large block.
            unsafe { engine::free(p.add(4096)) };
            0
        },
        "not the start of a block",
    );
}

/// Large blocks of 1.5 MiB in `BIG` (two per segment), each filled.
static BIG: [core::sync::atomic::AtomicUsize; 24] =
    [const { core::sync::atomic::AtomicUsize::new(0) }; 24];
const BIG_SIZE: usize = 1536 << 10;

fn big_phase(free: bool) {
    for b in &BIG {
        if free {
            // SAFETY: a live block of the last phase.
            unsafe { engine::free(b.load(core::sync::atomic::Ordering::Relaxed) as *mut u8) };
        } else {
            let p = engine::malloc(BIG_SIZE);
            // SAFETY: a fresh block of BIG_SIZE bytes.
            unsafe { core::ptr::write_bytes(p, 7, BIG_SIZE) };
            b.store(p as usize, core::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// A program that frees most of its memory between two phases (12
/// segments emptied at once) finds it mapped and unpurged in the next
/// phase; once the cache delay has passed, it goes back to the OS. With a
/// cache of 8 segments, 4 were unmapped and mapped again.
#[test]
fn empty_segments_stay_cached_between_phases_then_are_purged() {
    common::expect_success(|| {
        let keep = engine::malloc(16);
        big_phase(false);
        big_phase(true);
        let freed = os::stats();
        big_phase(false);
        let again = os::stats();
        big_phase(true);
        os::advance_clock(stratalloc::__private::tuning::SEGMENT_CACHE_PURGE_MS + 1);
        for _ in 0..128 {
            // SAFETY: a live block, freed at once (slow paths run the
            // periodic work, which purges the cache).
            unsafe { engine::free(engine::malloc(600 << 10)) };
        }
        let later = os::stats();
        stratalloc::eprint_noalloc!(
            "mapped {} -> {} (calls {} -> {}), returned {} -> {} -> {}\n",
            freed.mapped,
            again.mapped,
            freed.map_calls,
            again.map_calls,
            freed.returned,
            again.returned,
            later.returned
        );
        // SAFETY: a live block.
        unsafe { engine::free(keep) };
        let kept = again.map_calls == freed.map_calls && again.returned == freed.returned;
        let purged = later.returned >= again.returned + (16 << 20);
        (!(kept && purged)) as i32
    });
}

/// Whether the mapping holding `p` has VmFlag `hg` (in /proc/self/smaps,
/// read into an engine block with raw syscalls: no std allocation).
fn has_hg(p: usize) -> bool {
    const CAP: usize = 8 << 20;
    let buf = engine::malloc(CAP);
    // SAFETY: a fresh block of CAP bytes; plain syscalls on our own fd.
    let text = unsafe {
        let fd = libc::open(c"/proc/self/smaps".as_ptr(), libc::O_RDONLY);
        assert!(fd >= 0);
        let mut n = 0;
        while n < CAP {
            let r = libc::read(fd, buf.add(n).cast(), CAP - n);
            if r <= 0 {
                break;
            }
            n += r as usize;
        }
        libc::close(fd);
        core::slice::from_raw_parts(buf, n)
    };
    let hex = |s: &[u8]| {
        let t = core::str::from_utf8(s).ok()?;
        usize::from_str_radix(t, 16).ok()
    };
    let mut inside = false;
    for line in text.split(|&b| b == b'\n') {
        let first = line.split(|&b| b == b' ').next().unwrap_or(&[]);
        if let Some(dash) = first.iter().position(|&b| b == b'-') {
            if let (Some(a), Some(b)) = (hex(&first[..dash]), hex(&first[dash + 1..])) {
                inside = a <= p && p < b;
                continue;
            }
        }
        if inside && line.starts_with(b"VmFlags:") {
            return line.split(|&b| b == b' ').any(|f| f == b"hg");
        }
    }
    false
}

/// A segment mapped after `set_thp(on)` (the cache emptied first, and
/// three blocks that each need half a segment: the last is in a new one);
/// whether its mapping is marked for huge pages (`hg`).
fn fresh_segment_has_hg(on: bool) -> bool {
    engine::set_thp(on);
    engine::trim();
    let mut last = 0;
    for _ in 0..3 {
        last = engine::malloc(engine::LARGE_MAX) as usize;
    }
    has_hg(last)
}

/// `STRATALLOC_THP=1` (`engine::set_thp`): new segments are mapped with
/// `MADV_HUGEPAGE`; without it they are not.
#[test]
fn segments_ask_for_huge_pages_only_when_told() {
    common::expect_success(|| {
        let (off, on) = (fresh_segment_has_hg(false), fresh_segment_has_hg(true));
        stratalloc::eprint_noalloc!("hg without the option: {}, with it: {}\n", off, on);
        (off || !on) as i32
    });
}
