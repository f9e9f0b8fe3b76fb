//! `StratAlloc::new()` as the global allocator reads the `STRATALLOC_*`
//! variables as the C library does; `stratalloc::stats()` shows it; the
//! `Allocator` impl hands out usable sizes and grows in place.
//!
//! The environment tests run this binary again as a child with the
//! variables set (`STRATALLOC_TEST_CHILD` names the check to run there):
//! the allocator is configured once, at the first allocation, before any
//! test starts.

use std::process::Command;

use allocator_api2::alloc::{Allocator, Layout};
use stratalloc::StratAlloc;

#[global_allocator]
static A: StratAlloc = StratAlloc::new();

/// Run test `name` of this binary in a child with `env` set; its stdout.
fn child(name: &str, env: &[(&str, &str)]) -> String {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([name, "--exact", "--nocapture", "--test-threads=1"]);
    for (k, _) in std::env::vars() {
        if k.starts_with("STRATALLOC_") {
            c.env_remove(k);
        }
    }
    c.env("STRATALLOC_TEST_CHILD", name);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child {name} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("child ok"),
        "child {name} did not run: {stdout}"
    );
    stdout
}

fn in_child(name: &str) -> bool {
    std::env::var("STRATALLOC_TEST_CHILD").as_deref() == Ok(name)
}

/// In the child: STRATALLOC_STRATEGY=tlsf STRATALLOC_STATS=<file>.
#[test]
fn child_tlsf_with_stats() {
    if !in_child("child_tlsf_with_stats") {
        return;
    }
    let before = stratalloc::stats();
    assert_eq!(before.allocator, "stats(tlsf)");
    assert!(before.counted);
    let v = std::hint::black_box(vec![7u8; 300_000]);
    let during = stratalloc::stats();
    assert!(
        during.in_use >= before.in_use + 300_000,
        "{before:?} {during:?}"
    );
    assert!(during.allocs > before.allocs);
    assert!(during.peak_in_use >= during.in_use);
    assert!(during.mapped >= during.in_use);
    drop(v);
    let after = stratalloc::stats();
    assert!(after.frees > during.frees);
    assert!(
        after.in_use + 300_000 <= during.in_use,
        "{during:?} {after:?}"
    );
    assert!(after.peak_in_use >= during.in_use);
    println!("child ok");
}

#[test]
fn environment_configures_the_global_allocator() {
    if std::env::var_os("STRATALLOC_TEST_CHILD").is_some() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("stratalloc-global-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let report = dir.join("stats.txt");
    child(
        "child_tlsf_with_stats",
        &[
            ("STRATALLOC_STRATEGY", "tlsf"),
            ("STRATALLOC_STATS", report.to_str().unwrap()),
        ],
    );
    // The report is written at exit, by the same destructor as in the C
    // library.
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.contains("tlsf"), "{text}");
    assert!(text.contains("allocations"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Leaked on purpose, for the leak report to name.
#[inline(never)]
fn leak_for_the_report() -> &'static mut [u8] {
    Box::leak(vec![5u8; 4321].into_boxed_slice())
}

/// In the child: STRATALLOC_LEAKS=<file>.
#[test]
fn child_leaks() {
    if !in_child("child_leaks") {
        return;
    }
    assert_eq!(stratalloc::stats().allocator, "leaks(engine)");
    std::hint::black_box(leak_for_the_report());
    println!("child ok");
}

#[test]
fn the_leak_report_names_a_rust_function() {
    if std::env::var_os("STRATALLOC_TEST_CHILD").is_some() {
        return;
    }
    let report = std::env::temp_dir().join(format!("stratalloc-leaks-{}.txt", std::process::id()));
    // (An exit status for leaks found, where the report sets one, is not
    // what this test is about.)
    child(
        "child_leaks",
        &[
            ("STRATALLOC_LEAKS", report.to_str().unwrap()),
            ("STRATALLOC_LEAKS_EXITCODE", "0"),
        ],
    );
    let text = std::fs::read_to_string(&report).unwrap();
    std::fs::remove_file(&report).unwrap();
    assert!(text.contains("SUMMARY: stratalloc"), "{text}");
    // Whether the block counts as lost or still reachable is the report's
    // business; where it is listed, its call site is named.
    if let Some(at) = text.find("4321 byte(s)") {
        if cfg!(feature = "symbolize") {
            assert!(text.contains("leak_for_the_report"), "{text}");
            // The allocator's own frames are left out, Rust's shim too.
            let first = text[at..].lines().nth(1).unwrap_or("");
            assert!(!first.contains("__rust"), "{first}");
        }
    }
}

/// With no variable set, the engine serves the process and counts nothing.
#[test]
fn no_environment_means_the_engine() {
    if std::env::vars().any(|(k, _)| k.starts_with("STRATALLOC_")) {
        return; // configured from outside (a child, or a caller's choice)
    }
    let v = std::hint::black_box(vec![1u64; 10_000]);
    let s = stratalloc::stats();
    assert_eq!(s.allocator, "engine");
    assert!(!s.counted);
    assert_eq!((s.in_use, s.allocs), (0, 0));
    assert!(s.mapped >= v.len() * 8);
    assert!(s.peak_mapped >= s.mapped);
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

#[test]
fn allocate_returns_the_usable_size() {
    let a = StratAlloc::new();
    for (size, align) in [(1, 1), (100, 8), (1000, 16), (5000, 64), (100_000, 4096)] {
        let b = a.allocate(layout(size, align)).unwrap();
        let p = b.cast::<u8>();
        assert!(b.len() >= size);
        assert_eq!(p.as_ptr() as usize % align, 0);
        // The whole slice is ours: write it all (Miri/ASan would object
        // otherwise; here the engine's check below would).
        // SAFETY: the block holds b.len() bytes.
        unsafe { p.as_ptr().write_bytes(0xa5, b.len()) };
        // SAFETY: deallocated with a size between the requested and the usable.
        unsafe { a.deallocate(p, layout(b.len(), align)) };
    }
    // 100 bytes sit in a larger size class under the engine: the slice says so.
    let b = a.allocate(layout(100, 8)).unwrap();
    assert!(b.len() > 100, "usable size {} not reported", b.len());
    // SAFETY: live block.
    unsafe { a.deallocate(b.cast(), layout(100, 8)) };

    let z = a.allocate_zeroed(layout(100, 8)).unwrap();
    // SAFETY: the block holds z.len() bytes.
    let bytes = unsafe { core::slice::from_raw_parts(z.cast::<u8>().as_ptr(), z.len()) };
    assert!(bytes.iter().all(|&x| x == 0));
    // SAFETY: live block.
    unsafe { a.deallocate(z.cast(), layout(100, 8)) };
}

#[test]
fn grow_and_shrink_keep_the_block_where_they_can() {
    let a = StratAlloc::new();
    let b = a.allocate(layout(100, 8)).unwrap();
    let p = b.cast::<u8>();
    // SAFETY: the block holds 100 bytes.
    unsafe { p.as_ptr().write_bytes(3, 100) };
    // Up to the usable size: in place.
    // SAFETY: `p` is live with layout (100, 8).
    let g = unsafe { a.grow(p, layout(100, 8), layout(b.len(), 8)) }.unwrap();
    assert_eq!(g.cast::<u8>(), p);
    // Shrinking a little keeps it too.
    // SAFETY: `p` is live; its layout's size is within what grow returned.
    let s = unsafe { a.shrink(p, layout(b.len(), 8), layout(90, 8)) }.unwrap();
    assert_eq!(s.cast::<u8>(), p);
    // Far past the class: moved, contents kept.
    // SAFETY: `p` is live.
    let m = unsafe { a.grow(p, layout(90, 8), layout(10_000, 8)) }.unwrap();
    assert!(m.len() >= 10_000);
    // SAFETY: the first 90 bytes were kept.
    let kept = unsafe { core::slice::from_raw_parts(m.cast::<u8>().as_ptr(), 90) };
    assert!(kept.iter().all(|&x| x == 3));

    // A large block (above the medium classes) grows in place into free
    // slices after it when there are any, else moves: either way the
    // slice covers the new size.
    let big = a.allocate(layout(600 << 10, 16)).unwrap();
    // SAFETY: live block.
    let grown = unsafe { a.grow(big.cast(), layout(600 << 10, 16), layout(700 << 10, 16)) };
    let grown = grown.unwrap();
    assert!(grown.len() >= 700 << 10);
    // SAFETY: live blocks.
    unsafe {
        a.deallocate(grown.cast(), layout(700 << 10, 16));
        a.deallocate(m.cast(), layout(10_000, 8));
    }

    // A 4096-aligned block stays aligned when it moves.
    let al = a.allocate(layout(64, 4096)).unwrap();
    // SAFETY: live block, 64 bytes written then grown.
    let al2 = unsafe {
        al.cast::<u8>().as_ptr().write_bytes(9, 64);
        a.grow(al.cast(), layout(64, 4096), layout(100_000, 4096))
    }
    .unwrap();
    assert_eq!(al2.cast::<u8>().as_ptr() as usize % 4096, 0);
    // SAFETY: the first 64 bytes were kept.
    let kept = unsafe { core::slice::from_raw_parts(al2.cast::<u8>().as_ptr(), 64) };
    assert!(kept.iter().all(|&x| x == 9));
    // grow_zeroed zeroes everything past the old size.
    // SAFETY: live block.
    let gz = unsafe { a.grow_zeroed(al2.cast(), layout(100_000, 4096), layout(200_000, 4096)) };
    let gz = gz.unwrap();
    // SAFETY: the block holds gz.len() bytes.
    let all = unsafe { core::slice::from_raw_parts(gz.cast::<u8>().as_ptr(), gz.len()) };
    assert!(all[..64].iter().all(|&x| x == 9));
    assert!(all[100_000..].iter().all(|&x| x == 0));
    // SAFETY: live block.
    unsafe { a.deallocate(gz.cast(), layout(200_000, 4096)) };
}
