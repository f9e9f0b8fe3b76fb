//! The statistics wrapper: counts every call with relaxed atomics and
//! reports at exit, on `malloc_stats()`, or whenever [`snapshot`] is called.
//!
//! What it keeps, per process (all `Relaxed` atomics, no lock):
//!
//! ```text
//!   counts      allocs · zeroed · aligned · reallocs · frees · failed
//!   bytes       in use (usable sizes) and its peak · bytes requested in total
//!   histogram   request sizes in power-of-two buckets: (2^(k-1), 2^k]
//!   classes     live and total blocks per usable size (an open-addressing
//!               table of 256 atomic slots; a backend with size classes
//!               shows them here, whatever it is)
//! ```
//!
//! The report adds what the backend knows ([`BackendStats`]: mapped and
//! peak mapped bytes, bytes returned to the OS) and the peak resident set.
//!
//! **Cost**: per call, a handful of relaxed atomic adds on shared cache lines
//! plus one `usable_size` call on the backend for frees and reallocs.
//! Threads hammering malloc together contend on those lines; that is the
//! price of a number you can read at any moment.
//!
//! Invariants (checked by [`Stats::check`]): `in_use <= peak`, every class
//! slot's live count is at most its total, and the class table's live bytes
//! add up to `in_use` (exact only when no call is in flight).

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::backend::{Backend, BackendStats};
use crate::wrappers::sys::{peak_rss, pid, Bytes};
use stratalloc_core::CheckError;

/// Number of histogram buckets: bucket `k` holds requests of
/// `(2^(k-1), 2^k]` bytes (bucket 0: 0 and 1 byte).
pub const BUCKETS: usize = 49;
/// Slots of the per-usable-size table.
pub const CLASS_SLOTS: usize = 256;
/// Usable sizes above this are counted together as "large".
pub const CLASS_LIMIT: usize = 1 << 20;

struct ClassSlot {
    size: AtomicUsize,
    live: AtomicI64,
    total: AtomicU64,
}

/// The counters (see the module docs).
pub struct Counters {
    allocs: AtomicU64,
    zeroed: AtomicU64,
    aligned: AtomicU64,
    reallocs: AtomicU64,
    frees: AtomicU64,
    failed: AtomicU64,
    in_use: AtomicUsize,
    peak: AtomicUsize,
    requested: AtomicU64,
    hist: [AtomicU64; BUCKETS],
    classes: [ClassSlot; CLASS_SLOTS],
    large_live: AtomicI64,
    large_total: AtomicU64,
    untracked_classes: AtomicU64,
}

/// A copy of the figures at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Successful allocations of any kind (a moving realloc is not one).
    pub allocs: u64,
    /// Of which zeroed (`calloc`).
    pub zeroed: u64,
    /// Of which with an alignment above 16.
    pub aligned: u64,
    /// Successful reallocations.
    pub reallocs: u64,
    /// Frees of non-null pointers.
    pub frees: u64,
    /// Requests that returned null.
    pub failed: u64,
    /// Usable bytes in live blocks.
    pub in_use: usize,
    /// Highest `in_use`.
    pub peak: usize,
    /// Sum of every requested size.
    pub requested: u64,
    /// Request-size histogram (see [`BUCKETS`]).
    pub hist: [u64; BUCKETS],
    /// `(usable size, live blocks, blocks ever)` per usable size seen,
    /// sorted by size; sizes above [`CLASS_LIMIT`] are not listed.
    pub classes: [(usize, i64, u64); CLASS_SLOTS],
    /// Number of valid entries in `classes`.
    pub class_count: usize,
    /// Live and total blocks above [`CLASS_LIMIT`].
    pub large: (i64, u64),
    /// The backend's own figures.
    pub backend: BackendStats,
}

impl Snapshot {
    /// Live blocks.
    pub fn live(&self) -> i64 {
        self.allocs as i64 - self.frees as i64
    }
}

/// Bucket of a request of `size` bytes.
pub fn bucket(size: usize) -> usize {
    if size <= 1 {
        0
    } else {
        ((usize::BITS - (size - 1).leading_zeros()) as usize).min(BUCKETS - 1)
    }
}

impl Counters {
    /// Zeroed counters.
    pub const fn new() -> Self {
        Counters {
            allocs: AtomicU64::new(0),
            zeroed: AtomicU64::new(0),
            aligned: AtomicU64::new(0),
            reallocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            in_use: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            requested: AtomicU64::new(0),
            hist: [const { AtomicU64::new(0) }; BUCKETS],
            classes: [const {
                ClassSlot {
                    size: AtomicUsize::new(0),
                    live: AtomicI64::new(0),
                    total: AtomicU64::new(0),
                }
            }; CLASS_SLOTS],
            large_live: AtomicI64::new(0),
            large_total: AtomicU64::new(0),
            untracked_classes: AtomicU64::new(0),
        }
    }

    fn class(&self, usable: usize, live: i64, total: u64) {
        if usable > CLASS_LIMIT {
            self.large_live.fetch_add(live, Relaxed);
            self.large_total.fetch_add(total, Relaxed);
            return;
        }
        let key = usable + 1; // 0 marks an empty slot
        let mut i = (key.wrapping_mul(0x9E37_79B9)) >> 8 & (CLASS_SLOTS - 1);
        for _ in 0..CLASS_SLOTS {
            let s = &self.classes[i];
            let cur = s.size.load(Relaxed);
            let hit = cur == key
                || (cur == 0
                    && match s.size.compare_exchange(0, key, Relaxed, Relaxed) {
                        Ok(_) => true,
                        Err(now) => now == key,
                    });
            if hit {
                s.live.fetch_add(live, Relaxed);
                s.total.fetch_add(total, Relaxed);
                return;
            }
            i = (i + 1) & (CLASS_SLOTS - 1);
        }
        self.untracked_classes.fetch_add(1, Relaxed);
    }

    #[inline]
    fn add_bytes(&self, usable: usize) {
        let now = self.in_use.fetch_add(usable, Relaxed) + usable;
        if now > self.peak.load(Relaxed) {
            self.peak.fetch_max(now, Relaxed);
        }
    }

    #[inline]
    fn on_alloc(&self, size: usize, usable: usize) {
        self.allocs.fetch_add(1, Relaxed);
        self.requested.fetch_add(size as u64, Relaxed);
        self.hist[bucket(size)].fetch_add(1, Relaxed);
        self.add_bytes(usable);
        self.class(usable, 1, 1);
    }

    #[inline]
    fn on_free(&self, usable: usize) {
        self.frees.fetch_add(1, Relaxed);
        self.in_use.fetch_sub(usable, Relaxed);
        self.class(usable, -1, 0);
    }

    /// Copy the figures.
    pub fn snapshot(&self, backend: BackendStats) -> Snapshot {
        let mut classes = [(0usize, 0i64, 0u64); CLASS_SLOTS];
        let mut n = 0;
        for s in &self.classes {
            let k = s.size.load(Relaxed);
            if k != 0 {
                classes[n] = (k - 1, s.live.load(Relaxed), s.total.load(Relaxed));
                n += 1;
            }
        }
        classes[..n].sort_unstable_by_key(|c| c.0);
        Snapshot {
            allocs: self.allocs.load(Relaxed),
            zeroed: self.zeroed.load(Relaxed),
            aligned: self.aligned.load(Relaxed),
            reallocs: self.reallocs.load(Relaxed),
            frees: self.frees.load(Relaxed),
            failed: self.failed.load(Relaxed),
            in_use: self.in_use.load(Relaxed),
            peak: self.peak.load(Relaxed),
            requested: self.requested.load(Relaxed),
            hist: core::array::from_fn(|i| self.hist[i].load(Relaxed)),
            classes,
            class_count: n,
            large: (
                self.large_live.load(Relaxed),
                self.large_total.load(Relaxed),
            ),
            backend,
        }
    }
}

impl Default for Counters {
    fn default() -> Self {
        Self::new()
    }
}

/// The statistics wrapper over `inner`.
pub struct Stats {
    inner: &'static dyn Backend,
    name: &'static str,
    counters: Counters,
}

impl Stats {
    /// Count the calls made to `inner`; `name` is reported as the backend name.
    pub const fn new(inner: &'static dyn Backend, name: &'static str) -> Self {
        Stats {
            inner,
            name,
            counters: Counters::new(),
        }
    }

    /// The figures now.
    pub fn snapshot(&self) -> Snapshot {
        self.counters.snapshot(self.inner.stats())
    }

    /// Write the report to `out`.
    pub fn report(&self, out: &mut dyn Write) -> fmt::Result {
        write_report(out, self.name, &self.snapshot())
    }

    /// Verify the invariants in the module docs (exact when idle).
    pub fn check(&self) -> Result<(), CheckError> {
        let s = self.snapshot();
        if s.in_use > s.peak {
            return Err(CheckError::new(s.in_use, "bytes in use above the peak"));
        }
        let mut bytes: i64 = 0;
        for &(size, live, total) in &s.classes[..s.class_count] {
            if live < 0 || live as u64 > total {
                return Err(CheckError::new(size, "class live count outside 0..=total"));
            }
            bytes += size as i64 * live;
        }
        if self.counters.untracked_classes.load(Relaxed) == 0
            && s.large.0 == 0
            && bytes != s.in_use as i64
        {
            return Err(CheckError::new(
                s.in_use,
                "class bytes differ from bytes in use",
            ));
        }
        Ok(())
    }
}

/// Write a report of `s` in the text format the C library prints.
pub fn write_report(out: &mut dyn Write, name: &str, s: &Snapshot) -> fmt::Result {
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
        let unused = b.mapped.saturating_sub(b.in_use);
        let frag = if b.mapped == 0 {
            0.0
        } else {
            unused as f64 * 100.0 / b.mapped as f64
        };
        writeln!(
            out,
            "  backend     {} mapped (peak {}), {} in use by its count, {} returned to the OS",
            Bytes(b.mapped as u64),
            Bytes(b.peak_mapped as u64),
            Bytes(b.in_use as u64),
            Bytes(b.returned)
        )?;
        writeln!(
            out,
            "  fragmentation {frag:.1}% of mapped memory is not in live blocks"
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
    writeln!(out, "  usable sizes (live / ever):")?;
    let mut col = 0;
    for &(size, live, total) in &s.classes[..s.class_count] {
        write!(out, "    {size:>8}: {live:>7} / {total:<9}")?;
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

// SAFETY: every block comes from `inner` unchanged; the wrapper only counts.
unsafe impl Backend for Stats {
    fn name(&self) -> &'static str {
        self.name
    }

    fn alloc(&self, size: usize, align: usize) -> *mut u8 {
        let p = self.inner.alloc(size, align);
        if p.is_null() {
            self.counters.failed.fetch_add(1, Relaxed);
        } else {
            if align > 16 {
                self.counters.aligned.fetch_add(1, Relaxed);
            }
            // SAFETY: `p` is a live block of `inner`.
            let usable = unsafe { self.inner.usable_size(p) };
            self.counters.on_alloc(size, usable);
        }
        p
    }

    fn alloc_zeroed(&self, size: usize, align: usize) -> *mut u8 {
        let p = self.inner.alloc_zeroed(size, align);
        if p.is_null() {
            self.counters.failed.fetch_add(1, Relaxed);
        } else {
            self.counters.zeroed.fetch_add(1, Relaxed);
            if align > 16 {
                self.counters.aligned.fetch_add(1, Relaxed);
            }
            // SAFETY: `p` is a live block of `inner`.
            let usable = unsafe { self.inner.usable_size(p) };
            self.counters.on_alloc(size, usable);
        }
        p
    }

    unsafe fn free(&self, p: *mut u8) {
        if p.is_null() {
            return;
        }
        // SAFETY: the caller passes a live block of ours, i.e. of `inner`.
        let usable = unsafe { self.inner.usable_size(p) };
        // SAFETY: as above.
        unsafe { self.inner.free(p) };
        self.counters.on_free(usable);
    }

    unsafe fn realloc(&self, p: *mut u8, new_size: usize) -> *mut u8 {
        // SAFETY: the caller passes a live block of `inner`.
        let old = unsafe { self.inner.usable_size(p) };
        // SAFETY: as above.
        let q = unsafe { self.inner.realloc(p, new_size) };
        if q.is_null() {
            self.counters.failed.fetch_add(1, Relaxed);
            return q;
        }
        // SAFETY: `q` is now a live block of `inner`.
        let new = unsafe { self.inner.usable_size(q) };
        let c = &self.counters;
        c.reallocs.fetch_add(1, Relaxed);
        c.requested.fetch_add(new_size as u64, Relaxed);
        c.hist[bucket(new_size)].fetch_add(1, Relaxed);
        c.in_use.fetch_sub(old, Relaxed);
        c.add_bytes(new);
        c.class(old, -1, 0);
        c.class(new, 1, 1);
        q
    }

    unsafe fn usable_size(&self, p: *const u8) -> usize {
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.usable_size(p) }
    }

    fn trim(&self) -> bool {
        self.inner.trim()
    }
    fn fork_prepare(&self) {
        self.inner.fork_prepare()
    }
    fn fork_parent(&self) {
        self.inner.fork_parent()
    }
    fn fork_child(&self) {
        self.inner.fork_child()
    }
    fn stats(&self) -> BackendStats {
        self.inner.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wrappers::testing::SysBackend;

    #[test]
    fn buckets_are_powers_of_two() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1), 0);
        assert_eq!(bucket(2), 1);
        assert_eq!(bucket(3), 2);
        assert_eq!(bucket(4), 2);
        assert_eq!(bucket(5), 3);
        assert_eq!(bucket(1024), 10);
        assert_eq!(bucket(1025), 11);
        assert_eq!(bucket(usize::MAX), BUCKETS - 1);
    }

    #[test]
    fn counts_match_what_was_done() {
        let s: &'static Stats = Box::leak(Box::new(Stats::new(SysBackend::leaked(), "stats(sys)")));
        let mut ps = Vec::new();
        for i in 0..100usize {
            ps.push(s.alloc(i * 10, 16));
        }
        let z = s.alloc_zeroed(100, 64);
        assert_eq!(z as usize % 64, 0);
        // SAFETY: `z` is live; it came from `s`.
        let z = unsafe { s.realloc(z, 5000) };
        s.check().unwrap();
        let snap = s.snapshot();
        assert_eq!(snap.allocs, 101);
        assert_eq!(snap.zeroed, 1);
        assert_eq!(snap.aligned, 1);
        assert_eq!(snap.reallocs, 1);
        assert_eq!(snap.live(), 101);
        // 0 and 10 are in buckets 0 and 4; bucket 13 holds the 5000-byte realloc.
        assert_eq!(snap.hist[0], 1);
        assert_eq!(snap.hist[4], 1);
        assert_eq!(snap.hist[13], 1);
        let expect: usize = ps
            .iter()
            .chain([&z])
            // SAFETY: every pointer is live.
            .map(|&p| unsafe { s.usable_size(p) })
            .sum();
        assert_eq!(snap.in_use, expect);
        for p in ps {
            // SAFETY: live, from `s`.
            unsafe { s.free(p) };
        }
        // SAFETY: live, from `s`.
        unsafe { s.free(z) };
        s.check().unwrap();
        let snap = s.snapshot();
        assert_eq!(snap.in_use, 0);
        assert!(snap.peak >= expect);
        assert_eq!(snap.live(), 0);
        let mut text = String::new();
        s.report(&mut text).unwrap();
        assert!(text.contains("101 allocations (1 zeroed, 1 aligned), 1 reallocations, 101 frees"));
        assert!(text.contains("request sizes"));
    }
}
