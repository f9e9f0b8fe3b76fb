//! The workload and the reports, shared by both binaries.
//!
//! 1. Generate a text of [`WORDS`] pseudo-random words (a growing `String`:
//!    realloc on every doubling), count word frequencies in a
//!    `BTreeMap<String, u32>`, sort the entries in a `Vec` and print the most
//!    frequent.
//! 2. Drop the text (a large hole in the heap), then run Conway's Life on a
//!    torus for [`GENERATIONS`] steps, each generation a fresh
//!    `Vec<Box<[u8]>>`, keeping every third one in a history so the heap
//!    ends up with live blocks between freed ones.
//! 3. Print [`HeapStats`] and a heap map drawn from `walk()`, while that data
//!    is alive; drop everything; print the stats again, run `check()`, and
//!    return 0 only if the heap is intact, empty, and every result checks
//!    out.
//!
//! Every report is formatted with `core::fmt` into a stack buffer
//! ([`crate::rt::Out`]): `walk()` runs under the heap's lock, where
//! allocating would deadlock.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use stratalloc_core::{BlockState, HeapStats, Locked, Region, RegionError, RegionHeap};

use crate::outln;

/// Bytes in the static heap.
#[cfg(target_os = "linux")]
pub const HEAP_SIZE: usize = 10 << 20;
/// Bytes in the static heap (the Cortex-M3 board has 4 MiB of RAM).
#[cfg(not(target_os = "linux"))]
pub const HEAP_SIZE: usize = 2 << 20;

/// Words in the generated text.
#[cfg(target_os = "linux")]
pub const WORDS: usize = 150_000;
/// Words in the generated text (the text, doubling as it grows, must fit
/// the smaller heap).
#[cfg(not(target_os = "linux"))]
pub const WORDS: usize = 30_000;

/// Life generations simulated.
pub const GENERATIONS: usize = 300;

const GRID_W: usize = 64;
const GRID_H: usize = 48;

/// Columns of the heap map; it has `MAP_ROWS` rows.
const MAP_COLS: usize = 64;
const MAP_ROWS: usize = 16;
const CELLS: usize = MAP_COLS * MAP_ROWS;

/// Hand `size` bytes at `base` to `heap` as its one region.
///
/// # Safety
/// `base..base + size` must be valid for reads and writes for the rest of the
/// program and used by nothing but `heap`.
pub unsafe fn heap_init<H: RegionHeap>(
    heap: &Locked<H>,
    base: *mut u8,
    size: usize,
) -> Result<(), RegionError> {
    // SAFETY: forwarded from the caller's contract.
    let region = unsafe { Region::from_raw_parts(base, size) }
        .ok_or(RegionError::TooSmall { needed: 1, got: 0 })?;
    // SAFETY: as above: the span is ours alone and lives forever.
    unsafe { heap.add_region(region) }
}

/// A small deterministic generator (64-bit LCG, high bits out).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
}

const VOCAB: &[&str] = &[
    "the", "heap", "block", "free", "list", "region", "bitmap", "class", "split", "merge", "buddy",
    "tlsf", "bump", "pointer", "align", "header", "footer", "coalesce", "page", "slab", "pool",
    "arena", "size", "byte", "word", "cache", "lock", "spin", "thread", "kernel", "boot", "stack",
    "static", "memory", "alloc", "dealloc", "grow", "shrink", "walk", "check", "map", "leak",
    "trace", "fit", "first", "best", "worst", "next", "level", "index",
];

/// Run the demo on `heap`, which must already hold its region at `base`.
/// Returns the process exit code.
pub fn run<H: RegionHeap + Send>(heap: &Locked<H>, base: usize) -> i32 {
    let mut failures = 0;
    let name = heap.lock().name();
    outln!("stratalloc bare-metal demo: strategy {name}, static heap of {HEAP_SIZE} bytes at {base:#x}");

    // 1. Word frequencies.
    let mut rng = Lcg(0x5eed);
    let mut text = String::new();
    for i in 0..WORDS {
        // Skewed choice: the product of two uniform picks favours low indices.
        let a = rng.next() as usize % VOCAB.len();
        let b = rng.next() as usize % VOCAB.len();
        if i > 0 {
            text.push(if i % 12 == 0 { '\n' } else { ' ' });
        }
        text.push_str(VOCAB[a * b / VOCAB.len()]);
    }
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for w in text.split_whitespace() {
        match counts.get_mut(w) {
            Some(c) => *c += 1,
            None => {
                counts.insert(String::from(w), 1);
            }
        }
    }
    let total: u32 = counts.values().sum();
    outln!(
        "words: {total} counted in {} bytes of text, {} distinct",
        text.len(),
        counts.len()
    );
    if total as usize != WORDS {
        outln!("FAIL: counted {total} words, generated {WORDS}");
        failures += 1;
    }
    let mut ranked: Vec<(&str, u32)> = counts.iter().map(|(w, &c)| (w.as_str(), c)).collect();
    ranked.sort_unstable_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(y.0)));
    for (w, c) in ranked.iter().take(6) {
        outln!("  {w:<10} {c:>6}");
    }
    drop(ranked);
    drop(text);

    // 2. Life on a torus, a fresh grid per generation.
    let mut grid = new_grid();
    for cell in grid.iter_mut().flat_map(|row| row.iter_mut()) {
        *cell = rng.next().is_multiple_of(3) as u8;
    }
    let mut history: Vec<Box<[Box<[u8]>]>> = Vec::new();
    for gen in 0..GENERATIONS {
        let next = step(&grid);
        let old = core::mem::replace(&mut grid, next);
        if gen % 3 == 0 {
            history.push(old.into_boxed_slice());
        }
    }
    let alive: usize = grid
        .iter()
        .map(|r| r.iter().map(|&c| c as usize).sum::<usize>())
        .sum();
    outln!(
        "life: {GRID_W}x{GRID_H} torus, {GENERATIONS} generations, {alive} cells alive, {} generations kept",
        history.len()
    );
    if alive == 0 || alive > GRID_W * GRID_H {
        outln!("FAIL: implausible population {alive}");
        failures += 1;
    }

    // 3. Reports while the data is alive.
    let held = heap.lock().stats();
    print_stats("after the workload, data still held", &held);
    print_map(heap, base);

    drop(history);
    drop(grid);
    drop(counts);

    let end = heap.lock().stats();
    print_stats("after dropping everything", &end);
    match heap.lock().check() {
        Ok(()) => outln!("heap check: ok"),
        Err(e) => {
            outln!("FAIL: {e}");
            failures += 1;
        }
    }
    if end.in_use != 0 || end.live() != 0 {
        outln!(
            "FAIL: {} bytes in {} blocks still in use",
            end.in_use,
            end.live()
        );
        failures += 1;
    }
    if held.in_use == 0 || held.allocs <= held.frees {
        outln!("FAIL: the workload held no memory at the report");
        failures += 1;
    }
    if failures == 0 {
        outln!("result: ok");
        0
    } else {
        outln!("result: {failures} failure(s)");
        1
    }
}

fn new_grid() -> Vec<Box<[u8]>> {
    (0..GRID_H)
        .map(|_| alloc::vec![0u8; GRID_W].into_boxed_slice())
        .collect()
}

fn step(g: &[Box<[u8]>]) -> Vec<Box<[u8]>> {
    let mut n = new_grid();
    for y in 0..GRID_H {
        for x in 0..GRID_W {
            let mut k = 0;
            for dy in [GRID_H - 1, 0, 1] {
                for dx in [GRID_W - 1, 0, 1] {
                    if dx == 0 && dy == 0 {
                        continue;
                    }
                    k += g[(y + dy) % GRID_H][(x + dx) % GRID_W];
                }
            }
            n[y][x] = matches!((g[y][x], k), (1, 2) | (_, 3)) as u8;
        }
    }
    n
}

fn print_stats(when: &str, s: &HeapStats) {
    let frag = s.fragmentation_permille();
    outln!("heap statistics ({when}):");
    outln!("  region bytes   {:>10}", s.region_bytes);
    outln!("  in use         {:>10}   peak {}", s.in_use, s.peak_in_use);
    outln!(
        "  free           {:>10}   in {} blocks, largest {}",
        s.free,
        s.free_blocks,
        s.largest_free
    );
    outln!("  overhead       {:>10}", s.overhead());
    outln!(
        "  allocations    {:>10}   frees {}, failed {}, live {}",
        s.allocs,
        s.frees,
        s.failed,
        s.live()
    );
    outln!("  fragmentation  {:>8}.{}%", frag / 10, frag % 10);
}

/// Draw the heap as `MAP_ROWS` x `MAP_COLS` cells; each cell shows the state
/// that covers most of its bytes: `#` used, `.` free, `:` overhead, ` ` not
/// part of the region.
fn print_map<H: RegionHeap>(heap: &Locked<H>, base: usize) {
    let cell = HEAP_SIZE.div_ceil(CELLS);
    // Bytes per cell: [used, free, overhead]. On the stack: walk() runs under
    // the heap lock, so nothing here may allocate.
    let mut acc = [[0usize; 3]; CELLS];
    heap.lock().walk(&mut |b| {
        let k = match b.state {
            BlockState::Used => 0,
            BlockState::Free => 1,
            BlockState::Overhead => 2,
        };
        let (mut at, end) = (b.addr, b.addr + b.size);
        while at < end && at >= base && at < base + HEAP_SIZE {
            let i = (at - base) / cell;
            let cell_end = (base + (i + 1) * cell).min(end);
            acc[i][k] += cell_end - at;
            at = cell_end;
        }
    });
    outln!(
        "heap map: {MAP_ROWS}x{MAP_COLS} cells of {cell} bytes ('#' used, '.' free, ':' overhead)"
    );
    for r in 0..MAP_ROWS {
        let mut line = [b' '; MAP_COLS];
        for (c, ch) in line.iter_mut().enumerate() {
            let [u, f, o] = acc[r * MAP_COLS + c];
            *ch = if u + f + o == 0 {
                b' '
            } else if u >= f && u >= o {
                b'#'
            } else if f >= o {
                b'.'
            } else {
                b':'
            };
        }
        // The bytes are ASCII by construction.
        let s = core::str::from_utf8(&line).unwrap_or("?");
        outln!("  |{s}| {:#010x}", r * MAP_COLS * cell);
    }
}
