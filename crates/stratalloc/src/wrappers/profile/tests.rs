use super::*;
use crate::wrappers::testing::SysBackend;

fn profile(sample: u32) -> &'static Profile {
    Box::leak(Box::new(Profile::new(
        SysBackend::leaked(),
        "profile(sys)",
        Output::Off,
        sample,
    )))
}

/// Ten blocks of 1000 bytes from one call site (an opaque trip count, so
/// the loop is not unrolled into several call sites).
#[inline(never)]
fn hold_ten(p: &Profile) -> Vec<*mut u8> {
    (0..std::hint::black_box(10))
        .map(|_| p.alloc(1000, 16))
        .collect()
}

#[inline(never)]
fn churn_temporaries(p: &Profile) {
    for _ in 0..std::hint::black_box(7) {
        let q = p.alloc(64, 16);
        // SAFETY: a live block of `p`.
        unsafe { p.free(q) };
    }
}

/// The figures of the site whose stack names `function`.
fn site_of(p: &Profile, function: &str) -> state::Site {
    let mut found = Vec::new();
    p.state.lock().for_each_site(|id, s| {
        let mut f = [0; DEPTH];
        let n = p.stacks.frames(id, &mut f);
        let named = f[..n].iter().any(|&ip| {
            crate::wrappers::leaks::symbolize(ip)
                .iter()
                .any(|fr| fr.name.contains(function))
        });
        if named {
            found.push(*s);
        }
    });
    assert_eq!(found.len(), 1, "one site for {function}");
    found[0]
}

#[test]
fn call_sites_peak_temporaries_and_live_at_exit_are_exact() {
    let p = profile(1);
    let held = hold_ten(p);
    churn_temporaries(p);
    for &q in &held[..4] {
        // SAFETY: live blocks of `p`.
        unsafe { p.free(q) };
    }
    p.check().unwrap();
    p.state.lock().settle();
    let ten = site_of(p, "hold_ten");
    assert_eq!((ten.allocs, ten.bytes), (10, 10_000));
    assert_eq!((ten.peak, ten.peak_blocks), (10_000, 10));
    assert_eq!((ten.live, ten.live_blocks, ten.temporary), (6000, 6, 0));
    let tmp = site_of(p, "churn_temporaries");
    assert_eq!((tmp.allocs, tmp.temporary, tmp.live), (7, 7, 0));
    // The peak (10 064 bytes) is the ten blocks and the first temporary.
    let st = p.state.lock();
    assert_eq!(st.peak, 10_064);
    assert_eq!(tmp.peak, 64);
    assert_eq!((st.allocs, st.frees, st.temporary), (17, 11, 7));
    drop(st);
    let json = report::json(p);
    assert!(
        json.contains("\"allocations\":10,\"bytes\":10000,\"peak\":10000"),
        "{json}"
    );
    assert!(json.contains("hold_ten"), "{json}");
    assert!(json.contains("\"leaks\":\"live at exit\""));
    let page = report::html(&json);
    assert!(page.contains("hold_ten") && !page.contains("__STRATALLOC_PROFILE_DATA__"));
    assert!(
        !json[1..].contains("</"),
        "JSON that closes its script element"
    );
}

#[test]
fn realloc_counts_as_a_free_and_an_allocation() {
    let p = profile(1);
    let a = p.alloc(100, 16);
    // SAFETY: a live block of `p`.
    let b = unsafe { p.realloc(a, 5000) };
    let st = p.state.lock();
    assert_eq!(
        (st.allocs, st.frees, st.temporary, st.live),
        (2, 1, 1, 5000)
    );
    drop(st);
    // SAFETY: a live block of `p`.
    unsafe { p.free(b) };
}

/// With sampling, unsampled blocks stay out of the pointer table and are
/// counted by their usable size; the totals stay exact.
#[test]
fn sampling_keeps_exact_totals() {
    let p = profile(1 << 30);
    let v = hold_ten(p);
    // SAFETY: live blocks of `p`.
    let usable: u64 = v.iter().map(|&q| unsafe { p.usable_size(q) } as u64).sum();
    assert!(p.table.len() <= 1, "only sampled blocks are in the table");
    let st = p.state.lock();
    assert_eq!((st.allocs, st.live, st.peak), (10, usable, usable));
    let mut sites = 0;
    st.for_each_site(|_, _| sites += 1);
    assert!(sites <= 1, "one in 2^30 sampled: {sites} sites");
    drop(st);
    for q in v {
        // SAFETY: live blocks of `p`.
        unsafe { p.free(q) };
    }
    let st = p.state.lock();
    assert_eq!((st.frees, st.live, st.peak), (10, 0, usable));
}

/// heaptrack's definition, checked against heaptrack 1.4 on the same
/// sequence in C: the free must follow the allocation with no other event
/// in between (here, per thread), so a free of another block ends it too.
#[test]
fn a_temporary_is_freed_before_any_other_event() {
    let p = profile(1);
    let a = p.alloc(10, 16);
    let b = p.alloc(20, 16);
    // SAFETY: live blocks of `p`.
    unsafe {
        p.free(a);
        p.free(b);
    }
    assert_eq!(p.state.lock().temporary, 0);
    let c = p.alloc(30, 16);
    // SAFETY: a live block of `p`.
    unsafe { p.free(c) };
    assert_eq!(p.state.lock().temporary, 1);
}

#[test]
fn a_failed_realloc_keeps_the_block_tracked() {
    let p = profile(1);
    let a = p.alloc(100, 16);
    // SAFETY: a live block of `p`.
    let q = unsafe { p.realloc(a, usize::MAX / 2) };
    assert!(q.is_null());
    assert_eq!(p.table.get(a as usize).map(|e| e.size), Some(100));
    // SAFETY: still a live block of `p`.
    unsafe { p.free(a) };
    let st = p.state.lock();
    assert_eq!((st.allocs, st.frees, st.live), (1, 1, 0));
}

/// Threads allocating and freeing at once, some blocks freed by another
/// thread: the totals add up and the invariants hold.
#[test]
fn threads_keep_the_figures_whole() {
    let p = profile(1);
    let handed: Vec<usize> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|t| {
                s.spawn(move || {
                    let mut keep = Vec::new();
                    for i in 0..2000usize {
                        let q = p.alloc(16 + (i + t) % 200, 16);
                        if i % 4 == 0 {
                            keep.push(q as usize);
                        } else {
                            // SAFETY: a live block of `p`.
                            unsafe { p.free(q) };
                        }
                    }
                    keep
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    p.check().unwrap();
    let (live, blocks) = {
        let st = p.state.lock();
        assert_eq!((st.allocs, st.frees), (8000, 6000));
        (st.live, st.live_blocks)
    };
    assert_eq!(blocks, 2000);
    let mut table_bytes = 0u64;
    p.table.for_each(|e| table_bytes += e.size as u64);
    assert_eq!(live, table_bytes);
    for q in handed {
        // SAFETY: live blocks of `p`, freed by another thread than theirs.
        unsafe { p.free(q as *mut u8) };
    }
    let st = p.state.lock();
    assert_eq!((st.live, st.live_blocks, st.frees), (0, 0, 8000));
}
