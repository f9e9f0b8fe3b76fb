//! The harness works: every benchmark runs with tiny parameters, every
//! contender completes (its own `check()` passing after each workload), and
//! the binaries write their tables and files. No timing is asserted.

use std::path::PathBuf;
use std::process::Command;

use stratalloc_bench::region::heaps::{contender_names, Kind};
use stratalloc_bench::region::{run_contender, Config, ContenderResult};

fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("stratalloc-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn every_region_contender_runs_every_workload() {
    let cfg = Config::smoke();
    let names = contender_names();
    assert!(names.iter().any(|(_, k)| *k == Kind::Ours));
    assert_eq!(names.iter().filter(|(_, k)| *k == Kind::Peer).count(), 5);
    for (name, kind) in names {
        let r = run_contender(&name, &cfg).expect("listed contender runs");
        assert_eq!(r.kind, kind);
        assert_eq!(r.error, None, "{name}");
        assert_eq!(r.secs.len(), cfg.reps, "{name}");
        assert!(r.ops_per_sec() > 0.0, "{name}");
        assert!(r.counts.allocs > 0, "{name}: {:?}", r.counts);
        assert_eq!(r.eff.len(), cfg.eff_rounds, "{name}");
        assert!(
            r.eff.iter().all(|e| (0.0..=1.0).contains(e)),
            "{name}: {:?}",
            r.eff
        );
        assert!(r.alloc.n > 0 && r.free.n > 0, "{name}");
        assert!(
            r.alloc.p50 <= r.alloc.p99
                && r.alloc.p99 <= r.alloc.p999
                && r.alloc.p999 <= r.alloc.max
        );
        // The child-process protocol round-trips.
        assert_eq!(ContenderResult::from_lines(&r.to_lines()), Some(r.clone()));
    }
    assert!(run_contender("no-such-allocator", &cfg).is_none());
}

#[test]
fn region_bench_binary_writes_tables_and_files() {
    let dir = out_dir("region");
    let o = Command::new(env!("CARGO_BIN_EXE_region-bench"))
        .args(["--smoke", "--only", "talc,rlsf", "--out"])
        .arg(&dir)
        .output()
        .expect("run region-bench");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("| talc") && stdout.contains("| rlsf"),
        "{stdout}"
    );
    for f in [
        "region-summary.csv",
        "region-throughput.csv",
        "region-efficiency.csv",
        "region.json",
        "region.md",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let csv = std::fs::read_to_string(dir.join("region-summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn engine_bench_binary_runs_every_workload_under_glibc() {
    let dir = out_dir("engine");
    let o = Command::new(env!("CARGO_BIN_EXE_engine-bench"))
        .args([
            "--smoke",
            "--workload-exe",
            env!("CARGO_BIN_EXE_engine-workload"),
            "--out",
        ])
        .arg(&dir)
        .output()
        .expect("run engine-bench");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary = std::fs::read_to_string(dir.join("engine-summary.csv")).unwrap();
    let glibc: Vec<&str> = summary
        .lines()
        .filter(|l| l.starts_with("main,") && l.contains(",glibc,"))
        .collect();
    assert_eq!(
        glibc.len(),
        stratalloc_bench::engine::cases().len(),
        "{summary}"
    );
    for l in glibc {
        // No error column, and a median time was recorded.
        assert!(l.ends_with(','), "glibc run failed: {l}");
        assert!(!l.split(',').nth(3).unwrap().is_empty(), "{l}");
    }
    for f in ["engine-runs.csv", "engine.json", "engine.md"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn workload_refuses_to_run_when_the_preload_did_not_take() {
    let o = Command::new(env!("CARGO_BIN_EXE_engine-workload"))
        .args(["churn", "--scale", "0.0001"])
        .env(
            stratalloc_bench::engine::EXPECT_ENV,
            "libnot-an-allocator.so",
        )
        .env_remove("LD_PRELOAD")
        .output()
        .expect("run engine-workload");
    assert_eq!(o.status.code(), Some(3));
}
