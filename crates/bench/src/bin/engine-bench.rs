//! `engine-bench`: the process-level benchmarks (see `stratalloc_bench::engine`).
//!
//! ```text
//! engine-bench [--quick | --smoke] [--out DIR] [--reps N] [--scale F]
//!              [--stratalloc-lib PATH] [--mimalloc PATH] [--jemalloc PATH]
//!              [--workload-exe PATH] [--only WORKLOAD,WORKLOAD]
//!              [--also NAME=PATH]...
//! ```
//! `libstratalloc.so` is looked for next to this binary (the same target
//! profile directory) unless `--stratalloc-lib` says otherwise; an allocator
//! whose library is missing gets a "not measured" line, not a column.
//! `--also NAME=PATH` adds a column for another library (an older build of
//! `libstratalloc.so`, say), measured in the same interleaved run.

use std::path::PathBuf;
use std::time::Duration;

use stratalloc_bench::engine::{run_all, Allocator, Config};

fn usage() -> ! {
    eprintln!(
        "usage: engine-bench [--quick | --smoke] [--out DIR] [--reps N] [--scale F] \
         [--stratalloc-lib PATH] [--mimalloc PATH] [--jemalloc PATH] [--workload-exe PATH] \
         [--timeout SECS] [--only WORKLOAD,WORKLOAD] [--also NAME=PATH]..."
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut cfg = stratalloc_bench::preset(&args, Config::full, Config::quick, Config::smoke);
    let exe = std::env::current_exe().expect("own path");
    let dir = exe.parent().expect("exe dir").to_path_buf();
    let mut out = stratalloc_bench::default_out_dir();
    let mut strat = dir.join("libstratalloc.so");
    let mut mi = PathBuf::from("/usr/lib/x86_64-linux-gnu/libmimalloc.so.2");
    let mut je = PathBuf::from("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2");
    let mut workload = dir.join("engine-workload");
    let mut also = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--smoke" | "--quick" => continue,
            "-h" | "--help" => usage(),
            _ => {}
        }
        let Some(v) = it.next() else { usage() };
        let num = |v: &str| v.parse::<f64>().unwrap_or_else(|_| usage());
        match a.as_str() {
            "--out" => out = PathBuf::from(v),
            "--reps" => cfg.reps = (num(v) as usize).max(1),
            "--scale" => cfg.scale = num(v),
            "--timeout" => cfg.timeout = Duration::from_secs_f64(num(v)),
            "--stratalloc-lib" => strat = PathBuf::from(v),
            "--mimalloc" => mi = PathBuf::from(v),
            "--jemalloc" => je = PathBuf::from(v),
            "--workload-exe" => workload = PathBuf::from(v),
            "--only" => cfg.only = v.split(',').map(str::to_string).collect(),
            "--also" => {
                let Some((name, path)) = v.split_once('=') else {
                    usage()
                };
                also.push(Allocator {
                    name: name.into(),
                    lib: Some(PathBuf::from(path)),
                });
            }
            _ => usage(),
        }
    }
    if !workload.exists() {
        eprintln!(
            "engine-bench: {} not found (build the stratalloc-bench package's binaries)",
            workload.display()
        );
        std::process::exit(2);
    }
    let stratalloc = Allocator {
        name: "stratalloc".into(),
        lib: Some(strat),
    };
    let mut candidates = vec![
        Allocator {
            name: "glibc".into(),
            lib: None,
        },
        Allocator {
            name: "mimalloc".into(),
            lib: Some(mi),
        },
        Allocator {
            name: "jemalloc".into(),
            lib: Some(je),
        },
        stratalloc.clone(),
    ];
    candidates.extend(also);
    let strategies: Vec<&str> = stratalloc_core::Strategy::ALL
        .iter()
        .map(|s| s.name())
        .collect();
    let report = run_all(
        &cfg,
        &workload,
        candidates,
        &strategies,
        Some(&stratalloc),
        |msg| eprintln!("engine-bench: {msg}"),
    );
    print!("{}", report.markdown());
    if let Err(e) = report.write_files(&out) {
        eprintln!("engine-bench: writing {}: {e}", out.display());
        std::process::exit(1);
    }
    eprintln!("engine-bench: wrote {}", out.display());
}
