//! Shared pieces of the fuzz targets: a byte reader that turns a fuzz input
//! into an operation program, fill-and-verify helpers, and the counters
//! `scripts/fuzz.sh` reads at exit (inputs run and operations done).
//!
//! Every target is an *operation program against a shadow model*: the input
//! bytes decode into allocate / free / realloc / ... operations; the target
//! keeps its own record of every live block (address, usable size, fill
//! byte), fills each block with its byte when it is handed out and
//! **verifies** the byte on every free, realloc and at the end, so a block
//! that overlaps another, or a heap that writes into a live block, is caught
//! at the first byte that changed.

#![deny(unsafe_op_in_unsafe_fn)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

pub mod backend_prog;

/// Inputs run by this process.
pub static INPUTS: AtomicU64 = AtomicU64::new(0);
/// Operations done by this process (one allocate, free, realloc, ... each).
pub static OPS: AtomicU64 = AtomicU64::new(0);

/// Operations per label (a target with several subjects, such as one per
/// strategy, counts each one separately).
static OPS_BY: [AtomicU64; 32] = [const { AtomicU64::new(0) }; 32];
static LABELS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
static NAME: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
static REPORT: Once = Once::new();

extern "C" fn report() {
    use std::fmt::Write as _;
    let name = NAME.get().copied().unwrap_or("?");
    let mut text = format!(
        "stratalloc-fuzz target={name} inputs={} ops={}\n",
        INPUTS.load(Ordering::Relaxed),
        OPS.load(Ordering::Relaxed)
    );
    for (i, label) in LABELS.get().into_iter().flatten().enumerate() {
        let _ = writeln!(
            text,
            "stratalloc-fuzz target={name} subject={label} ops={}",
            OPS_BY[i].load(Ordering::Relaxed)
        );
    }
    // stderr for a plain run; and appended to $STRATALLOC_FUZZ_STATS, since
    // libFuzzer's -fork mode drops its children's output (scripts/fuzz.sh
    // sums the lines). A process that crashes never gets here, so its
    // operations are not counted: the totals are a lower bound.
    eprint!("{text}");
    if let Some(path) = std::env::var_os("STRATALLOC_FUZZ_STATS") {
        use std::io::Write as _;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = f.write_all(text.as_bytes());
        }
    }
}

/// Call at the top of every fuzz input: counts the input and, the first
/// time, registers the exit report for target `name`.
pub fn start_input(name: &'static str) {
    REPORT.call_once(|| {
        let _ = NAME.set(name);
        // SAFETY: `report` is an `extern "C" fn()` that touches only statics.
        unsafe {
            libc::atexit(report);
        }
    });
    INPUTS.fetch_add(1, Ordering::Relaxed);
}

/// Name the subjects a target counts separately (index = position); call
/// before the first [`count_ops_for`].
pub fn set_labels(labels: impl FnOnce() -> Vec<&'static str>) {
    if LABELS.get().is_none() {
        let l = labels();
        assert!(l.len() <= OPS_BY.len());
        let _ = LABELS.set(l);
    }
}

/// Count `n` operations on subject `idx` (see [`set_labels`]), and in the total.
pub fn count_ops_for(idx: usize, n: u64) {
    OPS_BY[idx].fetch_add(n, Ordering::Relaxed);
    count_ops(n);
}

/// Count `n` operations (call once per input with the number done, to keep
/// the atomic off the hot path).
pub fn count_ops(n: u64) {
    OPS.fetch_add(n, Ordering::Relaxed);
}

/// `true` when `STRATALLOC_FUZZ_MISUSE=1`: targets then also try misuse whose
/// detection the contract leaves to "wherever the metadata can tell"
/// (delayed double frees, interior pointers).
pub fn misuse_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("STRATALLOC_FUZZ_MISUSE").as_deref() == Ok("1"))
}

/// `true` when `STRATALLOC_FUZZ_STRICT=1`: targets run their full heap
/// check after every operation (not every few) and wait for every
/// cross-thread operation before the next: slower, deterministic, the mode
/// to reproduce and minimise a crash in.
pub fn strict() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("STRATALLOC_FUZZ_STRICT").as_deref() == Ok("1"))
}

/// Reads an input as a stream of small numbers; past the end it yields
/// zeros and `done()` turns true.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    /// `true` once every byte was read.
    pub fn done(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// Next byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// Next two bytes, little endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// Next four bytes, little endian.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// Next eight bytes, little endian.
    pub fn u64(&mut self) -> u64 {
        (self.u32() as u64) | ((self.u32() as u64) << 32)
    }

    /// A request size: mostly small, some medium and large, a few beyond
    /// `huge` (to reach growth and failure paths) and a few at the edges of
    /// the address space (which must be refused, never wrapped).
    pub fn size(&mut self, huge: usize) -> usize {
        self.size_with(huge, 4)
    }

    /// [`Reader::size`] with `huge_weight` (at most 4) of 256 draws in
    /// `huge / 2 ..= huge * 3 / 2`, the other `4 - huge_weight` in 8–72 KiB:
    /// for targets where a block of several MiB costs a thousand small
    /// operations (filled and verified over fresh pages).
    pub fn size_with(&mut self, huge: usize, huge_weight: u8) -> usize {
        let class = self.u8();
        match class {
            0..=149 => (self.u16() as usize) % 513,
            150..=209 => 513 + (self.u16() as usize) % 7680,
            210..=239 => 8193 + (self.u32() as usize) % 65_536,
            240..=247 => 73_729 + (self.u32() as usize) % (1 << 20),
            248..=251 if class - 248 < huge_weight => huge / 2 + (self.u32() as usize) % huge,
            248..=251 => 8193 + (self.u32() as usize) % 65_536,
            252..=253 => usize::MAX - (self.u16() as usize),
            _ => (isize::MAX as usize)
                .wrapping_add(self.u16() as usize)
                .wrapping_sub(32768),
        }
    }

    /// An alignment: mostly 1..=16, some up to 64 KiB, a few that are not
    /// powers of two (which must be refused).
    pub fn align(&mut self) -> usize {
        let b = self.u8();
        match b {
            0..=199 => 1usize << (b % 5),
            200..=249 => 1usize << (5 + b % 12),
            250..=253 => 0,
            _ => 3 + 8 * (self.u8() as usize),
        }
    }
}

/// Fill `len` bytes at `p` with `byte`.
///
/// # Safety
/// `p..p + len` must be a live block the caller owns.
pub unsafe fn fill(p: *mut u8, len: usize, byte: u8) {
    // SAFETY: the caller's contract.
    unsafe { std::ptr::write_bytes(p, byte, len) }
}

/// Panic, naming the block and offset, unless all `len` bytes at `p` are
/// `byte`.
///
/// # Safety
/// `p..p + len` must be readable.
pub unsafe fn verify(what: &str, p: *const u8, len: usize, byte: u8) {
    // SAFETY: the caller's contract.
    let s = unsafe { std::slice::from_raw_parts(p, len) };
    if all_equal(s, byte) {
        return;
    }
    // Bytewise to name the offset.
    if let Some(i) = s.iter().position(|&b| b != byte) {
        panic!(
            "{what}: fill byte {byte:#04x} lost at {p:p}+{i} of {len} (found {:#04x})",
            s[i]
        );
    }
}

/// `true` if every byte of `s` is `byte`. Word-wise, 32 words at a time
/// with no early exit inside a chunk, which the compiler vectorises (about
/// 4x faster than stopping at the first different word).
fn all_equal(s: &[u8], byte: u8) -> bool {
    let word = u64::from_ne_bytes([byte; 8]);
    // SAFETY: every bit pattern is a valid u64.
    let (head, words, tail) = unsafe { s.align_to::<u64>() };
    if !head.iter().all(|&b| b == byte) || !tail.iter().all(|&b| b == byte) {
        return false;
    }
    let mut chunks = words.chunks_exact(32);
    for c in &mut chunks {
        if c.iter().fold(0, |acc, &w| acc | (w ^ word)) != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&w| w == word)
}

/// One live block in a shadow model.
#[derive(Debug, Clone, Copy)]
pub struct Block {
    /// Address handed out.
    pub addr: usize,
    /// Bytes the heap said are usable (filled and verified).
    pub len: usize,
    /// Fill byte.
    pub byte: u8,
    /// Alignment asked for.
    pub align: usize,
}

/// The live blocks of a model, sorted by address, with overlap checks.
#[derive(Default)]
pub struct Model {
    blocks: std::collections::BTreeMap<usize, Block>,
    /// Sum of the usable sizes of live blocks.
    pub bytes: usize,
}

impl Model {
    /// Number of live blocks.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// `true` when nothing is live.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Record a new block; panic if it overlaps a live one.
    pub fn insert(&mut self, b: Block) {
        if let Some((_, prev)) = self.blocks.range(..=b.addr).next_back() {
            assert!(
                prev.addr + prev.len <= b.addr,
                "block {:#x}+{} overlaps live block {:#x}+{}",
                b.addr,
                b.len,
                prev.addr,
                prev.len
            );
        }
        if let Some((_, next)) = self.blocks.range(b.addr..).next() {
            assert!(
                b.addr + b.len <= next.addr,
                "block {:#x}+{} overlaps live block {:#x}+{}",
                b.addr,
                b.len,
                next.addr,
                next.len
            );
        }
        self.bytes += b.len;
        self.blocks.insert(b.addr, b);
    }

    /// The `idx`-th live block (modulo the count), if any.
    pub fn pick(&self, idx: usize) -> Option<Block> {
        if self.blocks.is_empty() {
            return None;
        }
        self.blocks.values().nth(idx % self.blocks.len()).copied()
    }

    /// Forget the block at `addr`.
    pub fn remove(&mut self, addr: usize) -> Block {
        let b = self.blocks.remove(&addr).expect("model: no such block");
        self.bytes -= b.len;
        b
    }

    /// A live block `old` was moved or resized to `new` (same byte): verify
    /// that its first `kept` bytes survived, refill all of `new` and record
    /// it in place of `old`.
    ///
    /// # Safety
    /// `new.addr..new.addr + new.len` is the live block the heap returned.
    pub unsafe fn replace(&mut self, what: &str, old: Block, new: Block, kept: usize) {
        // SAFETY: the caller's contract; `kept <= new.len`.
        unsafe {
            verify(what, new.addr as *const u8, kept, old.byte);
            fill(new.addr as *mut u8, new.len, old.byte);
        }
        self.remove(old.addr);
        self.insert(new);
    }

    /// `true` if `addr` lies inside a live block.
    pub fn covers(&self, addr: usize) -> bool {
        self.blocks
            .range(..=addr)
            .next_back()
            .is_some_and(|(_, b)| addr < b.addr + b.len.max(1))
    }

    /// Every live block, in address order.
    pub fn drain(&mut self) -> Vec<Block> {
        self.bytes = 0;
        std::mem::take(&mut self.blocks).into_values().collect()
    }
}
