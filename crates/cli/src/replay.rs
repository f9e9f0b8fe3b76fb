//! Replaying a trace on a core strategy.
//!
//! Each strategy gets one fixed region: an anonymous mapping reserved with
//! `MAP_NORESERVE` (the OS commits only the pages the heap touches), a power
//! of two at least eight times the trace's peak of live requested bytes and
//! at least 256 MiB, so a strategy fails only when its own policy does
//! (fragmentation, a size it cannot serve), never because the region was
//! sized tight. The **footprint** is the number of 4 KiB pages of the region
//! that any block ever handed out covered (its header's page included):
//! the memory the OS would have had to commit, wherever in the region the
//! strategy placed its blocks. The **top** (highest block end above the
//! region's own metadata: the index some strategies keep at the region's
//! start, sized by the region, not by the program) is where `viz` ends its
//! address axis. The **overhead** is the bytes the strategy held for live
//! blocks beyond the bytes the program asked for (headers, alignment
//! padding, rounding up to a size class, blocks it cannot reuse yet), at the
//! moment the program's live bytes peak, as a share of them: the orange of
//! the heap maps.
//!
//! Every operation works on trace ids (see `stratalloc::__private::trace`), so a replay
//! is deterministic. Each strategy first runs measured (footprint,
//! fragmentation sampled ~200 times, `check()` at the end), then three times
//! timed, with nothing but the operations, on a fresh heap over the same
//! (already faulted-in) memory; the table shows the fastest of the three.

use std::ptr::NonNull;
use std::time::Instant;

use std::collections::HashMap;

#[cfg(test)]
use stratalloc::__private::trace::Event;
use stratalloc::__private::trace::{Op, Trace};
use stratalloc_core::{AnyHeap, BlockInfo, BlockState, HeapStats, Region, RegionHeap, Strategy};

/// An anonymous mapping, unmapped on drop.
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    /// Reserve `len` bytes (a power of two), aligned to `len`: a strategy
    /// whose layout depends on addresses (buddy's orders, TLSF's first
    /// block) then lays a trace out the same way in every run, whatever
    /// address the kernel picks, so replays and heap maps are repeatable.
    pub fn new(len: usize) -> Result<Mapping, String> {
        let p = stratalloc::__private::os::map_aligned(len, len.next_power_of_two());
        if p.is_null() {
            return Err(format!("cannot map {len} bytes"));
        }
        Ok(Mapping { ptr: p, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: we mapped it; the heap using it is dropped before us
        // (field order in `Replayer`).
        unsafe { stratalloc::__private::os::unmap(self.ptr, self.len) };
    }
}

/// A strategy's heap over one mapping, driven by trace operations.
pub struct Replayer {
    heap: Box<AnyHeap>,
    map: Mapping,
    slots: Vec<usize>,
    /// Allocation requests the heap refused.
    pub failures: u64,
    /// Frees the heap rejected (a replay bug if ever non-zero).
    pub errors: u64,
    /// Highest block end, as an offset from the region's start.
    pub high_water: usize,
    /// Where the first block can start: the region's own metadata (the
    /// strategy's index over the whole region) lies before.
    pub base: usize,
    /// `stats().overhead()` of the empty heap: that metadata's bytes.
    base_overhead: usize,
    /// Requested size of each id's block.
    req: Vec<u64>,
    /// Requested bytes of the live blocks.
    pub live_requested: u64,
    /// One bit per page of the region: covered by a block at some time.
    touched: Vec<u64>,
    /// Pages set in `touched`.
    pub touched_pages: usize,
    measure: bool,
}

const PAGE: usize = 4096;

/// The region length used for `trace`.
pub fn region_len(trace: &Trace) -> usize {
    (trace.peak_requested() as usize)
        .saturating_mul(8)
        .max(256 << 20)
        .next_power_of_two()
}

impl Replayer {
    /// A fresh heap of strategy `s` over a region of `len` bytes.
    pub fn new(s: Strategy, len: usize, ids: u32, measure: bool) -> Result<Replayer, String> {
        Self::with_mapping(s, Mapping::new(len)?, ids, measure)
    }

    /// A fresh heap of strategy `s` over `map` (whatever it held is
    /// forgotten; reusing a mapping spares the page faults).
    pub fn with_mapping(
        s: Strategy,
        map: Mapping,
        ids: u32,
        measure: bool,
    ) -> Result<Replayer, String> {
        let len = map.len;
        let mut heap = Box::new(AnyHeap::new(s));
        // SAFETY: the mapping is ours alone and outlives the heap (it is
        // declared after `heap` in the struct, so it is dropped after it).
        let region = unsafe { Region::from_raw_parts(map.ptr, map.len) }.ok_or("null mapping")?;
        // SAFETY: as above.
        unsafe { heap.add_region(region) }.map_err(|e| format!("{s}: region refused: {e:?}"))?;
        // The metadata spans the empty heap starts with (before its first
        // free block).
        let mut base = map.ptr as usize;
        let mut lead = true;
        heap.walk(&mut |b| {
            lead &= b.state == BlockState::Overhead;
            if lead {
                base = b.addr + b.size;
            }
        });
        let base_overhead = heap.stats().overhead();
        Ok(Replayer {
            base: base - map.ptr as usize,
            base_overhead,
            req: vec![0; ids as usize],
            live_requested: 0,
            heap,
            map,
            slots: vec![0; ids as usize],
            failures: 0,
            errors: 0,
            high_water: 0,
            touched: vec![0; len.div_ceil(PAGE * 64)],
            touched_pages: 0,
            measure,
        })
    }

    fn note(&mut self, p: NonNull<u8>) {
        if self.measure {
            // SAFETY: `p` was just handed out by the heap.
            let n = unsafe { self.heap.usable_size(p) }.unwrap_or(0);
            let start = p.as_ptr() as usize - self.map.ptr as usize;
            let end = start + n;
            self.high_water = self.high_water.max(end);
            let first = start.saturating_sub(16) / PAGE;
            for page in first..end.div_ceil(PAGE) {
                let (w, b) = (page / 64, page % 64);
                if self.touched[w] & 1 << b == 0 {
                    self.touched[w] |= 1 << b;
                    self.touched_pages += 1;
                }
            }
        }
    }

    fn free_slot(&mut self, id: u32) {
        let p = std::mem::take(&mut self.slots[id as usize]);
        if let Some(p) = NonNull::new(p as *mut u8) {
            self.live_requested -= self.req[id as usize];
            // SAFETY: `p` is a live block of this heap (slot invariant).
            if unsafe { self.heap.deallocate(p) }.is_err() {
                self.errors += 1;
            }
        }
    }

    /// Apply one operation.
    pub fn step(&mut self, op: &Op) {
        match *op {
            Op::Alloc {
                id,
                size,
                align,
                zeroed,
            } => match self.heap.allocate(size as usize, align as usize) {
                Some(p) => {
                    if zeroed {
                        // SAFETY: a fresh block of at least `size` bytes.
                        unsafe { std::ptr::write_bytes(p.as_ptr(), 0, size as usize) };
                    }
                    self.slots[id as usize] = p.as_ptr() as usize;
                    self.req[id as usize] = size;
                    self.live_requested += size;
                    self.note(p);
                }
                None => self.failures += 1,
            },
            Op::Free { id } => self.free_slot(id),
            Op::Realloc { old, new, size } => {
                match NonNull::new(self.slots[old as usize] as *mut u8) {
                    None => match self.heap.allocate(size as usize, 16) {
                        Some(p) => {
                            self.slots[new as usize] = p.as_ptr() as usize;
                            self.req[new as usize] = size;
                            self.live_requested += size;
                            self.note(p);
                        }
                        None => self.failures += 1,
                    },
                    // SAFETY: `p` is live in this heap.
                    Some(p) => match unsafe { self.heap.reallocate(p, size as usize, 16) } {
                        Some(q) => {
                            self.slots[old as usize] = 0;
                            self.slots[new as usize] = q.as_ptr() as usize;
                            self.live_requested -= self.req[old as usize];
                            self.req[new as usize] = size;
                            self.live_requested += size;
                            self.note(q);
                        }
                        None => {
                            // The traced program kept its old block and
                            // went on; so do we, under the new id.
                            self.failures += 1;
                            self.slots[old as usize] = 0;
                            self.slots[new as usize] = p.as_ptr() as usize;
                            self.req[new as usize] = self.req[old as usize];
                        }
                    },
                }
            }
            Op::Failed { .. } => {}
        }
    }

    /// Drop the heap and keep its memory.
    pub fn into_mapping(self) -> Mapping {
        self.map
    }

    /// The heap's figures.
    pub fn stats(&self) -> HeapStats {
        self.heap.stats()
    }

    /// Every span of the heap, as offsets from the region's start (the
    /// payload of a used block too).
    pub fn walk(&self) -> Vec<BlockInfo> {
        let base = self.map.ptr as usize;
        let mut v = Vec::new();
        self.heap.walk(&mut |mut b| {
            b.addr -= base;
            b.payload = b.payload.saturating_sub(base);
            v.push(b);
        });
        v
    }

    /// The requested size of each live block, by payload offset.
    pub fn requested(&self) -> HashMap<usize, u64> {
        let base = self.map.ptr as usize;
        self.slots
            .iter()
            .zip(&self.req)
            .filter(|(&p, _)| p != 0)
            .map(|(&p, &n)| (p - base, n))
            .collect()
    }

    /// Bytes held for live blocks beyond the requested ones (see the
    /// module docs): what the region holds but neither the free blocks nor
    /// the region's metadata, less what was asked for. O(blocks).
    pub fn overhead(&self) -> usize {
        let st = self.stats();
        let held = st.region_bytes.saturating_sub(st.free + self.base_overhead);
        held.saturating_sub(self.live_requested as usize)
    }

    /// The highest block end above the region's metadata.
    pub fn top(&self) -> usize {
        self.high_water.saturating_sub(self.base)
    }

    /// The heap's invariant check.
    pub fn check(&self) -> Result<(), String> {
        self.heap.check().map_err(|e| e.to_string())
    }
}

/// What one strategy did with a trace.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The strategy.
    pub strategy: Strategy,
    /// Wall time of the timed pass, nanoseconds.
    pub nanos: u128,
    /// Operations replayed.
    pub ops: usize,
    /// Peak of live requested bytes in the trace.
    pub peak_requested: u64,
    /// Pages ever covered by a block, in bytes.
    pub footprint: usize,
    /// Highest block end above the region's metadata, bytes.
    pub top: usize,
    /// Bytes held for live blocks beyond those requested, at the peak of
    /// live requested bytes.
    pub overhead: usize,
    /// External fragmentation (per mille): maximum and mean of the samples.
    pub frag_max: u32,
    /// See `frag_max`.
    pub frag_mean: u32,
    /// Refused allocations.
    pub failures: u64,
    /// Rejected frees (should be 0).
    pub errors: u64,
    /// `check()` after the last operation.
    pub check: Result<(), String>,
}

/// Replay `trace` on `s`.
pub fn replay(trace: &Trace, s: Strategy) -> Result<Outcome, String> {
    let len = region_len(trace);
    let ops: Vec<Op> = trace.events.iter().map(|e| e.op).collect();
    // Measured pass.
    let mut r = Replayer::new(s, len, trace.ids, true)?;
    let stride = (ops.len() / 200).max(1);
    let (mut fmax, mut fsum, mut fn_) = (0u32, 0u64, 0u64);
    let peak_at = trace.peak().1;
    let mut overhead = 0;
    for (i, op) in ops.iter().enumerate() {
        r.step(op);
        if i == peak_at {
            overhead = r.overhead();
        }
        if i % stride == stride - 1 {
            let f = r.stats().fragmentation_permille();
            fmax = fmax.max(f);
            fsum += f as u64;
            fn_ += 1;
        }
    }
    let check = r.check();
    let (failures, errors) = (r.failures, r.errors);
    let (footprint, top) = (r.touched_pages * PAGE, r.top());
    // Timed passes, on the memory the measured pass already faulted in;
    // the fastest of three.
    let mut map = r.into_mapping();
    let mut nanos = u128::MAX;
    for _ in 0..3 {
        let mut r = Replayer::with_mapping(s, map, trace.ids, false)?;
        let t0 = Instant::now();
        for op in &ops {
            r.step(op);
        }
        nanos = nanos.min(t0.elapsed().as_nanos());
        map = r.into_mapping();
    }
    Ok(Outcome {
        strategy: s,
        nanos,
        ops: ops.len(),
        peak_requested: trace.peak_requested(),
        footprint,
        top,
        overhead,
        frag_max: fmax,
        frag_mean: fsum.checked_div(fn_).unwrap_or(0) as u32,
        failures,
        errors,
        check,
    })
}

fn mib(b: u64) -> String {
    format!("{:.2}", b as f64 / (1 << 20) as f64)
}

/// What the columns of [`table`] mean.
pub const LEGEND: &str = "footprint = 4 KiB pages ever covered by a block; \
    top = highest block end above the region's own metadata; \
    overhead = bytes held for live blocks beyond those requested (headers, padding, rounding), \
    at the peak of live bytes, as a share of them (orange in `stratalloc viz`); \
    frag = 1 - largest free / free (sampled)";

/// The table `stratalloc replay` prints.
pub fn table(outcomes: &[Result<Outcome, String>]) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "{:<12} {:>10} {:>8} {:>12} {:>14} {:>10} {:>9} {:>12} {:>9} {:>6}\n",
        "strategy",
        "time ms",
        "ns/op",
        "peak live MiB",
        "footprint MiB",
        "top MiB",
        "overhead",
        "frag max/avg",
        "failures",
        "check"
    ));
    for o in outcomes {
        match o {
            Ok(o) => {
                let overhead = o.overhead as f64 * 100.0 / o.peak_requested.max(1) as f64;
                s.push_str(&format!(
                    "{:<12} {:>10.2} {:>8.1} {:>13} {:>14} {:>10} {:>8.1}% {:>5.1}/{:>4.1}% {:>9} {:>6}\n",
                    o.strategy.name(),
                    o.nanos as f64 / 1e6,
                    o.nanos as f64 / o.ops.max(1) as f64,
                    mib(o.peak_requested),
                    mib(o.footprint as u64),
                    mib(o.top as u64),
                    overhead,
                    o.frag_max as f64 / 10.0,
                    o.frag_mean as f64 / 10.0,
                    o.failures,
                    if o.check.is_ok() && o.errors == 0 {
                        "ok"
                    } else {
                        "FAIL"
                    }
                ));
            }
            Err(e) => s.push_str(&format!("{e}\n")),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload;

    #[test]
    fn the_builtin_workload_replays_cleanly_on_every_strategy() {
        let t = workload::mixed(5000, 1);
        for &s in Strategy::ALL {
            let o = replay(&t, s).unwrap();
            assert!(o.check.is_ok(), "{s}: {:?}", o.check);
            assert_eq!(o.errors, 0, "{s}");
            assert_eq!(o.ops, t.events.len());
            if o.failures == 0 {
                assert!(o.footprint as u64 >= o.peak_requested, "{s}");
            }
        }
    }

    /// 100 blocks of 1000 bytes: buddy rounds each up to 1024 bytes (24
    /// at least), every strategy keeps some bytes beside each block, and
    /// none counts its metadata for the 256 MiB region as overhead.
    #[test]
    fn overhead_is_what_live_blocks_cost_beyond_their_requests() {
        let events = (0..100)
            .map(|id| Event {
                op: Op::Alloc {
                    id,
                    size: 1000,
                    align: 16,
                    zeroed: false,
                },
                thread: 1,
                time: 0,
            })
            .collect();
        let t = Trace {
            pid: 1,
            events,
            ids: 100,
            threads: 1,
            unmatched: 0,
            other_pids: Vec::new(),
        };
        for &s in Strategy::ALL {
            let o = replay(&t, s).unwrap();
            assert!(o.overhead < 100 * 1000, "{s}: overhead {}", o.overhead);
            assert!(
                o.top >= 100 * 1000 && o.top < 300 * 1000,
                "{s}: top {}",
                o.top
            );
            if s == Strategy::Buddy {
                assert!(o.overhead >= 100 * 24, "{s}: overhead {}", o.overhead);
            }
        }
    }
}
