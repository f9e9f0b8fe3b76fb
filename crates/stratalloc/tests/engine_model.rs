//! A short tour of every engine path, small enough for Miri
//! (`scripts/miri.sh` runs it there; natively it is one more test): local
//! and remote frees, full (floating) pages taken back, thread exit
//! (abandon) and adoption, aligned, zeroed, large and huge blocks,
//! realloc in place and moving, and the invariant check after each step.
//! Under Miri every access is checked against Rust's aliasing and data-race
//! rules, which is what the raw-pointer paths between threads rely on.

use std::sync::mpsc;
use std::thread;

use stratalloc::__private::engine;

fn fill(p: *mut u8, n: usize, tag: u8) {
    // SAFETY: `p` is a live block of at least `n` bytes.
    unsafe { core::ptr::write_bytes(p, tag, n) };
}

fn same(p: *const u8, n: usize, tag: u8) -> bool {
    // SAFETY: `p` is a live block of at least `n` bytes.
    unsafe { core::slice::from_raw_parts(p, n) }
        .iter()
        .all(|&b| b == tag)
}

/// Blocks of a few classes, freed by their owner.
#[test]
fn local_paths() {
    thread::spawn(|| {
        let sizes = [0usize, 1, 16, 24, 48, 100, 500, 1024, 3000, 20_000];
        let mut live = Vec::new();
        for (i, &s) in sizes.iter().enumerate() {
            let p = engine::malloc(s);
            assert!(!p.is_null());
            fill(p, s, i as u8);
            live.push((p as usize, s, i as u8));
        }
        engine::check().unwrap();
        for &(p, s, t) in &live {
            assert!(same(p as *const u8, s, t));
            // SAFETY: live blocks.
            assert!(unsafe { engine::usable_size(p as *const u8) } >= s);
        }
        for (p, _, _) in live {
            // SAFETY: live blocks.
            unsafe { engine::free(p as *mut u8) };
        }
        engine::check().unwrap();
    })
    .join()
    .unwrap();
}

/// Aligned, zeroed, large and huge blocks; realloc in place and moving.
#[test]
fn aligned_zeroed_large_huge_and_realloc() {
    thread::spawn(|| {
        for align in [32usize, 64, 4096] {
            let p = engine::aligned_alloc(align, 48);
            assert_eq!(p as usize % align, 0);
            fill(p, 48, 1);
            // SAFETY: live block.
            unsafe { engine::free(p) };
        }
        let z = engine::calloc(10, 100);
        assert!(same(z, 1000, 0));
        let big = engine::malloc(600 << 10);
        fill(big, 64, 2);
        let huge = engine::malloc(3 << 20);
        fill(huge, 64, 3);
        // SAFETY: live blocks; each realloc result replaces its input.
        unsafe {
            let r = engine::realloc(z, 900);
            assert_eq!(r, z, "shrinking within the class stays in place");
            let r = engine::realloc(r, 5000);
            assert!(same(r, 900, 0));
            let big = engine::realloc(big, 700 << 10);
            assert!(same(big, 64, 2));
            let huge = engine::realloc(huge, 5 << 20);
            assert!(same(huge, 64, 3));
            engine::check().unwrap();
            engine::free(r);
            engine::free(big);
            engine::free(huge);
        }
        engine::check().unwrap();
    })
    .join()
    .unwrap();
}

/// Another thread frees the blocks of a page the owner filled (the page
/// floats, the remote frees clear its FULL bit and flag the segment); the
/// owner takes them back on its slow path.
#[test]
fn remote_frees_to_a_floating_page() {
    let (to_owner, from_main) = mpsc::channel::<()>();
    let (to_main, from_owner) = mpsc::channel::<Vec<usize>>();
    let owner = thread::spawn(move || {
        let n = 4096 / 64 * 2;
        let v: Vec<usize> = (0..n).map(|_| engine::malloc(64) as usize).collect();
        to_main.send(v).unwrap();
        from_main.recv().unwrap();
        let again: Vec<usize> = (0..n).map(|_| engine::malloc(64) as usize).collect();
        engine::check().unwrap();
        for p in again {
            // SAFETY: live blocks.
            unsafe { engine::free(p as *mut u8) };
        }
        engine::check().unwrap();
    });
    let v = from_owner.recv().unwrap();
    for p in v {
        // SAFETY: live blocks of the owner thread.
        unsafe { engine::free(p as *mut u8) };
    }
    to_owner.send(()).unwrap();
    owner.join().unwrap();
}

/// A thread exits holding blocks (its segment is abandoned); another thread
/// frees them and a third adopts the segment.
#[test]
fn abandon_then_adopt() {
    let left: Vec<usize> = thread::spawn(|| {
        (0..40)
            .map(|i| {
                let p = engine::malloc(32 + i * 8);
                fill(p, 32, 7);
                p as usize
            })
            .collect()
    })
    .join()
    .unwrap();
    thread::spawn(move || {
        for p in left {
            assert!(same(p as *const u8, 32, 7));
            // SAFETY: live blocks of an exited thread.
            unsafe { engine::free(p as *mut u8) };
        }
        engine::trim(); // adopts abandoned segments
        engine::check().unwrap();
    })
    .join()
    .unwrap();
}

/// `heap_info` (what `mallinfo2` reports) walks every thread's pages
/// while their owners allocate and free. Under Miri each counter it reads
/// must be read and written atomically: a plain write racing with its
/// read is undefined behaviour even when the figure may be stale.
#[test]
fn heap_info_while_another_thread_allocates() {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    static DONE: AtomicBool = AtomicBool::new(false);
    let owner = thread::spawn(|| {
        let keep = engine::malloc(48);
        for i in 0..8usize {
            let p = engine::malloc(48 + (i % 4) * 16);
            fill(p, 48, 1);
            let big = engine::malloc(100 << 10);
            // SAFETY: live blocks, freed once.
            unsafe {
                engine::free(big);
                engine::free(p);
            }
        }
        // SAFETY: live block.
        unsafe { engine::free(keep) };
        // Relaxed: the walker must not be ordered after these writes.
        DONE.store(true, Relaxed);
    });
    let mut walks = 0;
    while !DONE.load(Relaxed) && walks < 200 {
        let info = engine::heap_info();
        assert!(info.in_use <= info.arena, "{info:?}");
        walks += 1;
        // Let the owner run between walks (Miri runs one thread at a time).
        thread::yield_now();
    }
    owner.join().unwrap();
    assert!(walks > 0);
}
