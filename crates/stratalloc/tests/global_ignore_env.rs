//! `.ignore_env()`: the builder's settings stand whatever the environment
//! says. The check runs in a child started with contrary variables.

use std::process::Command;

use stratalloc::{Report, StratAlloc};

#[global_allocator]
static A: StratAlloc = StratAlloc::new().stats(Report::Quiet).ignore_env();

#[test]
fn the_environment_is_not_read() {
    let s = stratalloc::stats();
    assert_eq!(s.allocator, "stats(engine)");
    assert!(s.counted);
    if std::env::var_os("STRATALLOC_TEST_CHILD").is_some() {
        println!("child ok");
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "the_environment_is_not_read", "--nocapture"])
        .env("STRATALLOC_TEST_CHILD", "1")
        .env("STRATALLOC_STRATEGY", "buddy")
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
