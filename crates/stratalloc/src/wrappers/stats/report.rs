//! The text report (what `malloc_stats()` and the exit report print).

use core::fmt::{self, Write};

use super::*;
use crate::backend::HeapInfo;
use crate::wrappers::sys::{peak_rss, pid, Bytes};

/// Write a report of `s` (and `heap`, where the backend's memory is) in
/// the text format the C library prints.
pub fn write_report(out: &mut dyn Write, name: &str, s: &Snapshot, heap: &HeapInfo) -> fmt::Result {
    let b = &s.backend;
    writeln!(
        out,
        "=={}== stratalloc statistics (backend: {})",
        pid(),
        name
    )?;
    writeln!(
        out,
        "  calls       {} allocations ({} zeroed, {} aligned), {} reallocations, {} frees, {} failed",
        s.allocs, s.zeroed, s.aligned, s.reallocs, s.frees, s.failed
    )?;
    writeln!(
        out,
        "  live        {} blocks, {} in use, peak {}",
        s.live(),
        Bytes(s.in_use as u64),
        Bytes(s.peak as u64)
    )?;
    writeln!(out, "  requested   {} in total", Bytes(s.requested))?;
    if b.mapped != 0 || b.peak_mapped != 0 {
        // A backend that keeps no per-call counts (the engine) reports 0
        // allocations and 0 bytes in use: then the wrapper's own count of
        // live bytes is the one to compare with what is mapped.
        let counts = b.allocs != 0 || b.in_use != 0;
        let live = if counts { b.in_use } else { s.in_use };
        let unused = b.mapped.saturating_sub(live);
        let share = if b.mapped == 0 {
            0.0
        } else {
            unused as f64 * 100.0 / b.mapped as f64
        };
        write!(
            out,
            "  backend     {} mapped (peak {}), ",
            Bytes(b.mapped as u64),
            Bytes(b.peak_mapped as u64)
        )?;
        if counts {
            write!(out, "{} in use by its count, ", Bytes(b.in_use as u64))?;
        }
        writeln!(out, "{} returned to the OS", Bytes(b.returned))?;
        // Mapped memory without a live block is mostly what the allocator
        // keeps for reuse (free pages, caches), not fragmentation.
        writeln!(
            out,
            "  not in use  {} of the mapped memory ({share:.1}%) holds no live block: kept \
             mapped for reuse; {} of it could go back to the OS now (malloc_trim)",
            Bytes(unused as u64),
            Bytes(heap.releasable.min(unused) as u64)
        )?;
    } else {
        writeln!(out, "  backend     reports no mapping figures")?;
    }
    writeln!(out, "  peak RSS    {}", Bytes(peak_rss()))?;
    writeln!(out, "  request sizes (power-of-two buckets):")?;
    let max = s.hist.iter().copied().max().unwrap_or(0).max(1);
    for (k, &n) in s.hist.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let hi: u64 = if k == 0 { 1 } else { 1u64 << k.min(63) };
        let bar = (n * 40).div_ceil(max) as usize;
        write!(out, "    <= {:>10} {:>10}  ", Bytes(hi), n)?;
        for _ in 0..bar {
            out.write_char('#')?;
        }
        out.write_char('\n')?;
    }
    writeln!(out, "  usable-size classes (live / ever):")?;
    let mut col = 0;
    for (i, &(live, total)) in s.classes.iter().enumerate() {
        if total == 0 {
            continue;
        }
        write!(out, "    <= {:>7}: {live:>7} / {total:<9}", class_limit(i))?;
        col += 1;
        if col % 3 == 0 {
            out.write_char('\n')?;
        }
    }
    if col % 3 != 0 {
        out.write_char('\n')?;
    }
    if s.large.1 != 0 {
        writeln!(
            out,
            "    larger than {}: {} live / {} ever",
            Bytes(CLASS_LIMIT as u64),
            s.large.0,
            s.large.1
        )?;
    }
    Ok(())
}
