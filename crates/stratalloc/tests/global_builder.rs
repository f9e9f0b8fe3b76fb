//! A `const` builder configures the global allocator; `stratalloc::stats()`
//! moves as the program allocates; a variable that is set overrides the
//! builder. One test in the parent (the figures are process-wide, so no
//! other test may allocate meanwhile); the override runs in a child.

use std::process::Command;

use stratalloc::{Report, StratAlloc, Strategy};

#[global_allocator]
static A: StratAlloc = StratAlloc::new()
    .strategy(Strategy::Buddy)
    .stats(Report::Quiet);

#[test]
fn builder_options_take_effect_and_the_environment_overrides_them() {
    if std::env::var_os("STRATALLOC_TEST_CHILD").is_some() {
        // The child: the environment below turned the builder's choices off.
        let s = stratalloc::stats();
        assert_eq!(s.allocator, "engine");
        assert!(!s.counted);
        println!("child ok");
        return;
    }
    if std::env::vars().any(|(k, _)| k.starts_with("STRATALLOC_")) {
        return; // configured from outside
    }
    let before = stratalloc::stats();
    assert_eq!(before.allocator, "stats(buddy)");
    assert!(before.counted);
    let b = std::hint::black_box(vec![0u32; 50_000]);
    let during = stratalloc::stats();
    assert_eq!(during.allocs, before.allocs + 1, "{before:?} {during:?}");
    // Buddy rounds 200 000 bytes up to 256 KiB: the usable size is counted.
    assert!(during.in_use >= before.in_use + (256 << 10), "{during:?}");
    assert!(during.peak_in_use >= during.in_use);
    assert!(during.mapped >= during.in_use);
    drop(b);
    let after = stratalloc::stats();
    assert_eq!(after.frees, during.frees + 1);
    assert_eq!(after.in_use + (256 << 10), during.in_use);

    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "builder_options_take_effect_and_the_environment_overrides_them",
        ])
        .args(["--nocapture", "--test-threads=1"])
        .env("STRATALLOC_TEST_CHILD", "1")
        .env("STRATALLOC_STRATEGY", "engine")
        .env("STRATALLOC_STATS", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("child ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
