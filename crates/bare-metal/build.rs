//! Link the demo binaries with no C runtime and no libc at all.
//!
//! - `-nostartfiles`: no `crt1.o`/`crti.o`; our own `_start` is the entry.
//! - `-nodefaultlibs`: no `-lc`, `-lgcc_s`, `-lm`; memcpy & co. come from
//!   Rust's `compiler_builtins`.
//! - `-static` + `-no-pie`: a fixed-address `ET_EXEC` with no dynamic
//!   section, so nothing has to apply relocations before `_start` runs (a
//!   static PIE would need a self-relocating start-up we do not have).
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.starts_with("x86_64-") && target.contains("linux") {
        for arg in ["-nostartfiles", "-nodefaultlibs", "-static", "-no-pie"] {
            println!("cargo:rustc-link-arg-bins={arg}");
        }
    }
}
