//! Where the command finds `libstratalloc.so` and the benchmark binaries
//! (`region-bench`, `engine-bench`, `engine-workload`).
//!
//! In order, the first that holds the file:
//! 1. `STRATALLOC_LIB` (the library only: an explicit choice wins);
//! 2. the directory of this executable (`target/release/` after
//!    `cargo build --release`);
//! 3. `../lib` and `../lib/stratalloc` from it (`scripts/install.sh PREFIX`
//!    puts the command in `PREFIX/bin`, the library in `PREFIX/lib` and the
//!    benchmark binaries in `PREFIX/lib/stratalloc`);
//! 4. `target/release/` of the source tree the command was built from
//!    (after `cargo install --path crates/cli`, once `cargo build --release`
//!    has run there).

use std::path::{Path, PathBuf};

/// The directories searched, in order (see the module docs).
fn dirs() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        let exe = exe.canonicalize().unwrap_or(exe);
        if let Some(dir) = exe.parent() {
            v.push(dir.to_path_buf());
            if let Some(up) = dir.parent() {
                v.push(up.join("lib"));
                v.push(up.join("lib").join("stratalloc"));
            }
        }
    }
    // crates/cli -> the workspace root.
    let tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let release = tree.join("target").join("release");
    v.push(release.canonicalize().unwrap_or(release));
    v.dedup();
    v
}

/// `name` in the first directory that has it, or an error listing where
/// it was looked for and how to get it there.
pub fn find(name: &str, how: &str) -> Result<PathBuf, String> {
    let dirs = dirs();
    if let Some(p) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
        return Ok(p.canonicalize().unwrap_or(p));
    }
    let tried: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    Err(format!(
        "{name} not found (looked in {}); {how}, or install with `scripts/install.sh PREFIX`",
        tried.join(", ")
    ))
}

/// The library to preload: `STRATALLOC_LIB`, else [`find`].
pub fn lib() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("STRATALLOC_LIB") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p.canonicalize().unwrap_or(p))
        } else {
            Err(format!("STRATALLOC_LIB={} is not a file", p.display()))
        };
    }
    find(
        "libstratalloc.so",
        "build it with `cargo build --release -p stratalloc-capi`, set STRATALLOC_LIB to its path",
    )
}

/// A benchmark binary of `stratalloc-bench`.
pub fn bench_bin(name: &str) -> Result<PathBuf, String> {
    find(
        name,
        "build the suites with `cargo build --release -p stratalloc-bench --bins`",
    )
}
