//! Link the demo binaries with no C runtime and no libc at all.
//!
//! x86_64 Linux:
//! - `-nostartfiles`: no `crt1.o`/`crti.o`; our own `_start` is the entry.
//! - `-nodefaultlibs`: no `-lc`, `-lgcc_s`, `-lm`; memcpy & co. come from
//!   `src/rt/linux_x86_64.rs`.
//! - `-static` + `-no-pie`: a fixed-address `ET_EXEC` with no dynamic
//!   section, so nothing has to apply relocations before `_start` runs (a
//!   static PIE would need a self-relocating start-up we do not have).
//!
//! Bare metal (`thumbv7m-none-eabi`, `riscv32imac-unknown-none-elf`): the
//! board's memory layout from `link/` (rust-lld); memcpy & co. come from
//! `compiler_builtins`.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let script = match target.as_str() {
        t if t.starts_with("x86_64-") && t.contains("linux") => {
            for arg in ["-nostartfiles", "-nodefaultlibs", "-static", "-no-pie"] {
                println!("cargo:rustc-link-arg-bins={arg}");
            }
            return;
        }
        t if t.starts_with("thumbv7m-") => "mps2-an385.ld",
        t if t.starts_with("riscv32") => "riscv32-virt.ld",
        _ => return,
    };
    println!("cargo:rerun-if-changed=link/{script}");
    println!("cargo:rustc-link-arg-bins=-T{dir}/link/{script}");
}
