//! `engine-workload <name> [--threads N] [--scale F]`: one process-level
//! workload (see `stratalloc_bench::engine::workloads`), run under whatever
//! allocator is preloaded. Prints `malloc_from`, `secs`, `maxrss_kb` and
//! `checksum` lines.
//!
//! If `BENCH_EXPECT_MALLOC_FROM` is set, the shared object that the
//! `malloc` symbol resolves to must contain that text, or the run stops with
//! exit status 3 before measuring anything.

use std::ffi::CStr;

use stratalloc_bench::engine::{workloads, EXPECT_ENV};

/// The path of the shared object `malloc` resolves to in this process.
fn malloc_from() -> String {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name is always valid.
    let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"malloc".as_ptr()) };
    if sym.is_null() {
        return "unresolved".into();
    }
    // SAFETY: Dl_info is plain data; dladdr fills it.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: `sym` is an address in this process; `info` is writable.
    if unsafe { libc::dladdr(sym, &mut info) } == 0 || info.dli_fname.is_null() {
        return "unknown".into();
    }
    // SAFETY: dladdr returned a NUL-terminated path owned by the loader.
    unsafe { CStr::from_ptr(info.dli_fname) }
        .to_string_lossy()
        .into_owned()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(name) = args.first() else {
        eprintln!(
            "usage: engine-workload <{}> [--threads N] [--scale F]",
            workloads::NAMES.join("|")
        );
        std::process::exit(2)
    };
    let (mut threads, mut scale) = (1usize, 1.0f64);
    let mut it = args[1..].iter();
    while let Some(a) = it.next() {
        let v = it.next().map(String::as_str).unwrap_or("");
        match a.as_str() {
            "--threads" => threads = v.parse().unwrap_or(1),
            "--scale" => scale = v.parse().unwrap_or(1.0),
            _ => {
                eprintln!("engine-workload: unknown argument {a}");
                std::process::exit(2)
            }
        }
    }
    let from = malloc_from();
    if let Ok(want) = std::env::var(EXPECT_ENV) {
        if !from.contains(&want) {
            eprintln!(
                "engine-workload: malloc is served by {from}, not {want} (preload did not take)"
            );
            std::process::exit(3);
        }
    }
    match workloads::run(name, threads, scale) {
        Ok(m) => {
            println!("malloc_from {from}");
            println!("secs {}", m.secs);
            println!("maxrss_kb {}", m.maxrss_kb);
            println!("checksum {}", m.checksum);
        }
        Err(e) => {
            eprintln!("engine-workload: {e}");
            std::process::exit(2)
        }
    }
}
