//! Engine: single-thread behaviour (sizes, alignment, usable_size, huge
//! realloc, trim, zeroing) and a property test against a model.
//!
//! Under Miri (`scripts/miri.sh --full`) the sizes are smaller (every byte
//! is interpreted; the OS layer is a 160 MiB simulated arena), and the
//! tests that need the kernel's page tables (`mincore`) or hundreds of MiB
//! are ignored.

use stratalloc::__private::engine::{self, ENGINE};
use stratalloc::__private::Backend;

fn fill(p: *mut u8, n: usize, tag: u8) {
    // SAFETY: the caller's block has at least n bytes.
    unsafe { core::ptr::write_bytes(p, tag, n) };
}

fn verify(p: *const u8, n: usize, tag: u8) {
    // SAFETY: as fill.
    let s = unsafe { core::slice::from_raw_parts(p, n) };
    // Whole chunks compared at once (a `memcmp`, which Miri runs natively
    // instead of interpreting a loop per byte); the byte is looked for only
    // on a mismatch.
    let pattern = [tag; 4096];
    if s.chunks(pattern.len()).all(|c| c == &pattern[..c.len()]) {
        return;
    }
    if let Some(i) = s.iter().position(|&b| b != tag) {
        panic!("block {p:p} byte {i} is {:#x}, expected {tag:#x}", s[i]);
    }
}

/// Is the page holding `p` mapped? (`mincore` fails with ENOMEM if not.)
fn mapped(p: *const u8) -> bool {
    let page = (p as usize) & !4095;
    let mut v = [0u8; 1];
    // SAFETY: mincore only reads the page tables.
    unsafe { libc::mincore(page as *mut libc::c_void, 1, v.as_mut_ptr()) == 0 }
}

#[test]
fn every_size_class_and_usable_size() {
    let mut ptrs = Vec::new();
    let mut size = 0usize;
    let (max, step) = if cfg!(miri) {
        (300 << 10, 16)
    } else {
        (3 << 20, usize::MAX)
    };
    while size <= max {
        let p = engine::malloc(size);
        assert!(!p.is_null());
        if size >= 16 {
            assert_eq!(p as usize % 16, 0, "size {size}");
        }
        // SAFETY: p is live.
        let u = unsafe { engine::usable_size(p) };
        assert!(u >= size, "usable {u} < {size}");
        fill(p, size, (size % 251) as u8);
        ptrs.push((p, size));
        size = if size < 2048 {
            size + 1 + size / step
        } else {
            size + size / 7
        };
    }
    engine::check().unwrap();
    for &(p, size) in &ptrs {
        verify(p, size, (size % 251) as u8);
    }
    for (p, _) in ptrs {
        // SAFETY: live block.
        unsafe { engine::free(p) };
    }
    engine::check().unwrap();
}

#[test]
#[cfg_attr(miri, ignore = "mincore; 3 MiB blocks at alignments up to 8 MiB")]
fn alignment_sweep_up_to_huge() {
    let mut align = 1usize;
    while align <= 8 << 20 {
        for &size in &[0usize, 1, 8, 24, 100, 1000, 5000, 70_000, 600_000, 3 << 20] {
            let p = ENGINE.alloc(size, align);
            assert!(!p.is_null(), "size {size} align {align}");
            assert_eq!(p as usize % align, 0, "size {size} align {align}");
            assert!(
                mapped(p),
                "size {size} align {align}: block start not mapped"
            );
            // SAFETY: p is live.
            let u = unsafe { engine::usable_size(p) };
            assert!(u >= size.max(1), "size {size} align {align}: usable {u}");
            fill(p, size, 0xa5);
            verify(p, size, 0xa5);
            // SAFETY: live block.
            unsafe { engine::free(p) };
        }
        align *= 2;
    }
    engine::check().unwrap();
    assert!(ENGINE.alloc(16, 3).is_null());
    assert!(ENGINE.alloc(usize::MAX - 100, 16).is_null());
    assert!(engine::calloc(usize::MAX / 2, 3).is_null());
}

#[test]
#[cfg_attr(miri, ignore = "grows to 324 MiB, past the simulated arena")]
fn huge_realloc_moves_pages_not_bytes() {
    let mut size = 4 << 20;
    let p = engine::malloc(size);
    assert!(!p.is_null());
    fill(p, size, 0x3c);
    let mut p = p;
    for _ in 0..4 {
        let n = size * 3;
        // SAFETY: p is live.
        let q = unsafe { engine::realloc(p, n) };
        assert!(!q.is_null());
        verify(q, size, 0x3c);
        fill(q, n, 0x3c);
        p = q;
        size = n;
        // SAFETY: live.
        assert!(unsafe { engine::usable_size(p) } >= size);
    }
    // shrink to small: copies
    // SAFETY: live.
    let q = unsafe { engine::realloc(p, 100) };
    verify(q, 100, 0x3c);
    // SAFETY: live.
    unsafe { engine::free(q) };
}

#[test]
fn realloc_keeps_contents_across_classes() {
    let mut p = engine::malloc(1);
    fill(p, 1, 7);
    let mut size = 1;
    while size < if cfg!(miri) { 128 << 10 } else { 1 << 20 } {
        let n = size * 2 + 3;
        // SAFETY: live.
        p = unsafe { engine::realloc(p, n) };
        verify(p, size, 7);
        fill(p, n, 7);
        size = n;
    }
    while size > 1 {
        let n = size / 3 + 1;
        // SAFETY: live.
        p = unsafe { engine::realloc(p, n) };
        verify(p, n, 7);
        size = n - 1;
    }
    // SAFETY: live.
    unsafe { engine::free(p) };
    engine::check().unwrap();
}

/// Large buffers grown a little at a time, in turn (so each blocks the
/// other's growth in place), move a few times, not every slice: a move
/// gives a quarter more than asked, as below the large sizes.
#[test]
fn interleaved_large_buffers_grown_by_realloc_move_a_few_times() {
    std::thread::spawn(|| {
        let mut bufs = [0u8; 8].map(|_| (engine::malloc(600 << 10), 600 << 10, 0u32));
        // Under Miri a slice at a time (20 steps, not 325, each
        // interpreted): every step then needs the next slice.
        let step = if cfg!(miri) { 64 << 10 } else { 4 << 10 };
        while bufs.iter().any(|b| b.1 < 1900 << 10) {
            for (i, (p, len, moves)) in bufs.iter_mut().enumerate() {
                let n = *len + step;
                // SAFETY: a live block of `len` bytes.
                let q = unsafe { engine::realloc(*p, n) };
                assert!(!q.is_null());
                *moves += (q != *p) as u32;
                // SAFETY: the block has `n` bytes.
                unsafe { q.add(n - 1).write(i as u8) };
                (*p, *len) = (q, n);
            }
        }
        eprintln!("moves: {:?}", bufs.map(|b| b.2));
        for (p, len, moves) in bufs {
            // SAFETY: live block of `len` bytes; its last byte was written
            // last.
            unsafe {
                assert!(*p.add(len - 1) < 8);
                engine::free(p);
            }
            // Growing 600 KiB -> 1.9 MiB by a quarter per move: 6 moves.
            assert!(moves <= 8, "{moves} moves for one buffer");
        }
        engine::check().unwrap();
    })
    .join()
    .unwrap();
}

#[test]
fn large_blocks_resize_in_place() {
    std::thread::spawn(|| {
        let mut grown_in_place = 0;
        for round in 0..if cfg!(miri) { 2 } else { 10 } {
            let p = engine::malloc(600 << 10);
            fill(p, 600 << 10, round);
            // SAFETY: live block.
            let q = unsafe { engine::realloc(p, 1500 << 10) };
            verify(q, 600 << 10, round);
            fill(q, 1500 << 10, round);
            grown_in_place += (q == p) as u32;
            // Shrinking a large block we own always happens in place.
            // SAFETY: live block.
            let r = unsafe { engine::realloc(q, 700 << 10) };
            assert_eq!(r, q);
            verify(r, 700 << 10, round);
            // SAFETY: live block.
            assert!(unsafe { engine::usable_size(r) } < 1500 << 10);
            engine::check().unwrap();
            // SAFETY: live block.
            unsafe { engine::free(r) };
        }
        // A fresh thread's segment has free slices after its first block.
        assert!(grown_in_place > 0);
        engine::check().unwrap();
    })
    .join()
    .unwrap();
}

#[test]
fn an_idle_empty_page_is_released_by_later_slow_paths() {
    std::thread::spawn(|| {
        let p = engine::malloc(5000);
        // SAFETY: live block.
        unsafe { engine::free(p) };
        // The only page of its class is kept while it may be reused...
        assert_eq!(engine::local_pages(), 1);
        // ...and released once two periodic visits (10 ms apart, on slow
        // paths: here large blocks) found it still empty.
        for _ in 0..3 {
            stratalloc::__private::os::advance_clock(15);
            for _ in 0..64 {
                let q = engine::malloc(600 << 10);
                // SAFETY: live block.
                unsafe { engine::free(q) };
            }
        }
        assert_eq!(engine::local_pages(), 0);
        engine::check().unwrap();
    })
    .join()
    .unwrap();
}

#[test]
fn zeroed_memory_is_zero_after_reuse() {
    let sizes: &[usize] = if cfg!(miri) {
        &[10, 1000, 100_000, 700_000]
    } else {
        &[10, 1000, 100_000, 700_000, 3 << 20]
    };
    for &size in sizes {
        for _ in 0..if cfg!(miri) { 1 } else { 3 } {
            let p = engine::malloc(size);
            fill(p, size, 0xff);
            // SAFETY: live.
            unsafe { engine::free(p) };
            let z = engine::calloc(1, size);
            verify(z, size, 0);
            // SAFETY: live.
            unsafe { engine::free(z) };
        }
    }
}

#[test]
#[cfg_attr(miri, ignore = "fills 64 MiB")]
fn trim_returns_memory_to_the_os() {
    // Runs on its own thread so other tests' blocks do not interfere with
    // this thread's pages.
    std::thread::spawn(|| {
        let n = 4000;
        let size = 16 << 10; // 64 MiB in total
        let ptrs: Vec<usize> = (0..n)
            .map(|i| {
                let p = engine::malloc(size);
                fill(p, size, i as u8);
                p as usize
            })
            .collect();
        let before = ENGINE.stats();
        for p in ptrs {
            // SAFETY: live.
            unsafe { engine::free(p as *mut u8) };
        }
        assert!(engine::trim());
        let after = ENGINE.stats();
        assert!(
            after.returned >= before.returned + (48 << 20),
            "returned only {} bytes",
            after.returned - before.returned
        );
        engine::check().unwrap();
    })
    .join()
    .unwrap();
}

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Alloc(usize, u32),
        Free(usize),
        Realloc(usize, usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        let size = prop_oneof![
            8 => 0usize..2048,
            3 => 2048usize..200_000,
            1 => 500_000usize..3_000_000,
        ];
        prop_oneof![
            5 => (size.clone(), 0u32..12).prop_map(|(s, a)| Op::Alloc(s, a)),
            3 => any::<usize>().prop_map(Op::Free),
            2 => (any::<usize>(), size).prop_map(|(i, s)| Op::Realloc(i, s)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 2 } else { 48 }, ..ProptestConfig::default() })]
        #[test]
        fn random_programs_match_the_model(ops in proptest::collection::vec(op(), 1..200)) {
            // live blocks: (ptr, size, tag, align)
            let mut live: Vec<(usize, usize, u8, usize)> = Vec::new();
            let mut tag = 0u8;
            for o in ops {
                match o {
                    Op::Alloc(s, a) => {
                        let align = 1usize << (a * 2);
                        let p = ENGINE.alloc(s, align);
                        prop_assert!(!p.is_null());
                        prop_assert_eq!(p as usize % align, 0);
                        tag = tag.wrapping_add(1);
                        fill(p, s, tag);
                        for &(q, qs, _, _) in &live {
                            prop_assert!(p as usize + s <= q || q + qs <= p as usize || s == 0 || qs == 0, "overlap");
                        }
                        live.push((p as usize, s, tag, align));
                    }
                    Op::Free(i) if !live.is_empty() => {
                        let (p, s, t, _) = live.swap_remove(i % live.len());
                        verify(p as *const u8, s, t);
                        // SAFETY: live block.
                        unsafe { engine::free(p as *mut u8) };
                    }
                    Op::Realloc(i, n) if !live.is_empty() && n > 0 => {
                        let k = i % live.len();
                        let (p, s, t, _) = live[k];
                        // SAFETY: live block.
                        let q = unsafe { engine::realloc(p as *mut u8, n) };
                        prop_assert!(!q.is_null());
                        verify(q, s.min(n), t);
                        fill(q, n, t);
                        live[k] = (q as usize, n, t, 16);
                    }
                    _ => {}
                }
                engine::check().map_err(TestCaseError::fail)?;
            }
            for (p, s, t, _) in live {
                verify(p as *const u8, s, t);
                // SAFETY: live block.
                unsafe { engine::free(p as *mut u8) };
            }
            engine::check().map_err(TestCaseError::fail)?;
        }
    }
}

/// More segments than the heap's 8-slot cache of owned segments: blocks
/// in every segment (cached or not, slot shared or not) are freed by the
/// local path, and the cache invariant (`check`) holds as segments come
/// and go.
#[test]
fn frees_across_more_segments_than_the_owned_cache() {
    // Two 1.5 MiB blocks per 4 MiB segment (slice 0 is the header): 24
    // blocks need 12 segments, 3 MiB more keeps one small block per segment.
    let mut big = Vec::new();
    let mut small = Vec::new();
    for i in 0..24u8 {
        let p = engine::malloc(3 << 19);
        assert!(!p.is_null());
        fill(p, 64, i);
        big.push(p);
        let q = engine::malloc(48);
        assert!(!q.is_null());
        fill(q, 48, i);
        small.push(q);
    }
    let segs: std::collections::HashSet<usize> = big.iter().map(|&p| p as usize >> 22).collect();
    assert!(segs.len() > 8, "only {} segments", segs.len());
    engine::check().unwrap();
    // Free from the middle out, so evicted and cached segments interleave.
    let order: Vec<usize> = (0..24).map(|k| (k * 7) % 24).collect();
    for &k in &order {
        verify(big[k], 64, k as u8);
        // SAFETY: live blocks, freed once.
        unsafe { engine::free(big[k]) };
        engine::check().unwrap();
    }
    for (k, &q) in small.iter().enumerate() {
        verify(q, 48, k as u8);
        // SAFETY: as above.
        unsafe { engine::free(q) };
    }
    engine::check().unwrap();
}
