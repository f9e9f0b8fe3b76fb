//! The profile's accounting, kept under one lock: process totals, the
//! figures of every call site, the peak snapshot and the timeline.
//!
//! Glossary:
//! - **site**: one allocation call stack (a [`StackTable`] id); id 0 holds
//!   no stack (not sampled, captured re-entrantly, or the table was full)
//!   and has no site figures.
//! - **live**: bytes (as requested) of blocks allocated and not yet freed.
//! - **peak**: the largest `live` the process reached; `gen` counts the
//!   times a new peak was set.
//! - **temporary**: an allocation freed by the thread that made it before
//!   that thread allocated or freed anything else (heaptrack's definition,
//!   an allocation "directly followed by its deallocation", taken per
//!   thread).
//!
//! **The peak snapshot without copying**: when `live` sets a new peak,
//! only `gen` is incremented. A site whose figures are about to change
//! while its own `gen` is older first copies its live figures into its
//! peak figures: they have not changed since the latest peak, so they are
//! what it held then. At the end a site whose `gen` is still older copies
//! them too. Each event costs O(1), and every site's `peak` is what it held
//! at the moment of the latest peak.
//!
//! Invariants (checked by [`State::check`]): the sites' live bytes and
//! blocks add up to at most the totals' (id 0 has no site); `live <= peak`;
//! every site's `gen <= gen`, `live <= bytes`, `temporary <= allocs`.
//!
//! [`StackTable`]: crate::wrappers::leaks::StackTable

use crate::os::map_meta as map;
use crate::tuning::{LEAK_SITES_PER_STRIPE, PROFILE_SAMPLES};
use stratalloc_core::CheckError;

/// Site ids the stack table can hand out (16 stripes), plus id 0.
pub const MAX_SITES: usize = 16 * LEAK_SITES_PER_STRIPE + 1;

/// The figures of one call site.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Site {
    /// Allocations made here.
    pub allocs: u64,
    /// Bytes they asked for in all.
    pub bytes: u64,
    /// Bytes and blocks live now.
    pub live: u64,
    /// See `live`.
    pub live_blocks: u64,
    /// Bytes and blocks live at the peak (valid once [`State::settle`] ran).
    pub peak: u64,
    /// See `peak`.
    pub peak_blocks: u64,
    /// Allocations freed as temporary.
    pub temporary: u64,
    /// The process `gen` when `peak` was last brought up to date.
    pub gen: u64,
}

/// One point of the timeline.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Sample {
    /// Nanoseconds since the profile started.
    pub t: u64,
    /// The largest live heap (bytes) since the previous sample.
    pub heap: u64,
    /// The resident set size when the sample was taken.
    pub rss: u64,
}

/// Everything the profile counts (behind the wrapper's lock).
pub struct State {
    /// Live bytes and blocks.
    pub live: u64,
    /// See `live`.
    pub live_blocks: u64,
    /// The peak of `live`, its block count and when it was reached.
    pub peak: u64,
    /// See `peak`.
    pub peak_blocks: u64,
    /// See `peak` (ns since start).
    pub peak_t: u64,
    /// New peaks set so far.
    pub gen: u64,
    /// Allocations and frees seen (all of them, sampled or not).
    pub allocs: u64,
    /// See `allocs`.
    pub frees: u64,
    /// Bytes asked for in all.
    pub bytes: u64,
    /// Temporary allocations (all of them).
    pub temporary: u64,
    sites: *mut Site,
    samples: *mut Sample,
    /// Samples taken (at most [`PROFILE_SAMPLES`]).
    pub n_samples: usize,
    interval: u64,
    next_t: u64,
    window: u64,
}

// SAFETY: the mappings are owned by the state and reached under its lock.
unsafe impl Send for State {}

/// First time between two timeline samples (ns); it doubles each time the
/// timeline is full and pairs of samples are merged.
const FIRST_INTERVAL: u64 = 1_000_000;

impl State {
    /// Nothing counted, nothing mapped.
    pub const fn new() -> Self {
        State {
            live: 0,
            live_blocks: 0,
            peak: 0,
            peak_blocks: 0,
            peak_t: 0,
            gen: 0,
            allocs: 0,
            frees: 0,
            bytes: 0,
            temporary: 0,
            sites: core::ptr::null_mut(),
            samples: core::ptr::null_mut(),
            n_samples: 0,
            interval: FIRST_INTERVAL,
            next_t: 0,
            window: 0,
        }
    }

    fn site(&mut self, id: u32) -> Option<&mut Site> {
        if id == 0 || id as usize >= MAX_SITES {
            return None;
        }
        if self.sites.is_null() {
            self.sites = map(MAX_SITES * core::mem::size_of::<Site>()).cast();
            if self.sites.is_null() {
                return None;
            }
        }
        let gen = self.gen;
        // SAFETY: `id < MAX_SITES`, inside the zeroed mapping the state owns.
        let s = unsafe { &mut *self.sites.add(id as usize) };
        if s.gen != gen {
            s.peak = s.live;
            s.peak_blocks = s.live_blocks;
            s.gen = gen;
        }
        Some(s)
    }

    /// A block of `size` bytes was allocated at site `id`, `now` ns after
    /// the start; `rss` reads the resident set size if a sample is due.
    pub fn on_alloc(&mut self, id: u32, size: u64, now: u64, rss: impl FnOnce() -> u64) {
        self.allocs += 1;
        self.bytes += size;
        if let Some(s) = self.site(id) {
            s.allocs += 1;
            s.bytes += size;
            s.live += size;
            s.live_blocks += 1;
        }
        self.live += size;
        self.live_blocks += 1;
        if self.live > self.peak {
            self.peak = self.live;
            self.peak_blocks = self.live_blocks;
            self.peak_t = now;
            self.gen += 1;
        }
        self.tick(now, rss);
    }

    /// A block of `size` bytes from site `id` was freed; `temporary` if
    /// its thread made no allocation since.
    pub fn on_free(
        &mut self,
        id: u32,
        size: u64,
        temporary: bool,
        now: u64,
        rss: impl FnOnce() -> u64,
    ) {
        self.frees += 1;
        self.temporary += temporary as u64;
        if let Some(s) = self.site(id) {
            s.live -= size.min(s.live);
            s.live_blocks = s.live_blocks.saturating_sub(1);
            s.temporary += temporary as u64;
        }
        self.live -= size.min(self.live);
        self.live_blocks = self.live_blocks.saturating_sub(1);
        self.tick(now, rss);
    }

    fn tick(&mut self, now: u64, rss: impl FnOnce() -> u64) {
        self.window = self.window.max(self.live);
        if now >= self.next_t {
            self.sample(now, rss());
        }
    }

    /// Add a timeline point now (also called at exit).
    pub fn sample(&mut self, now: u64, rss: u64) {
        if self.samples.is_null() {
            self.samples = map(PROFILE_SAMPLES * core::mem::size_of::<Sample>()).cast();
            if self.samples.is_null() {
                self.next_t = u64::MAX;
                return;
            }
        }
        // SAFETY: the mapping holds PROFILE_SAMPLES samples owned by the state.
        let s = unsafe { core::slice::from_raw_parts_mut(self.samples, PROFILE_SAMPLES) };
        if self.n_samples == PROFILE_SAMPLES {
            // Full: merge neighbours (the later time, the larger figures)
            // and sample half as often.
            for i in 0..PROFILE_SAMPLES / 2 {
                let (a, b) = (s[2 * i], s[2 * i + 1]);
                s[i] = Sample {
                    t: b.t,
                    heap: a.heap.max(b.heap),
                    rss: a.rss.max(b.rss),
                };
            }
            self.n_samples = PROFILE_SAMPLES / 2;
            self.interval *= 2;
        }
        s[self.n_samples] = Sample {
            t: now,
            heap: self.window.max(self.live),
            rss,
        };
        self.n_samples += 1;
        self.window = self.live;
        self.next_t = now + self.interval;
    }

    /// Bring every site's peak figures up to date (at exit).
    pub fn settle(&mut self) {
        for id in 1..MAX_SITES as u32 {
            self.site(id);
        }
    }

    /// The sites with any allocation, by id (after [`settle`](Self::settle)).
    pub fn for_each_site(&self, mut f: impl FnMut(u32, &Site)) {
        if self.sites.is_null() {
            return;
        }
        // SAFETY: the mapping holds MAX_SITES sites owned by the state.
        let sites = unsafe { core::slice::from_raw_parts(self.sites, MAX_SITES) };
        for (id, s) in sites.iter().enumerate() {
            if s.allocs != 0 {
                f(id as u32, s);
            }
        }
    }

    /// The timeline.
    pub fn samples(&self) -> &[Sample] {
        if self.samples.is_null() {
            return &[];
        }
        // SAFETY: the first `n_samples` of the mapping are written.
        unsafe { core::slice::from_raw_parts(self.samples, self.n_samples) }
    }

    /// Verify the invariants in the module docs.
    pub fn check(&self) -> Result<(), CheckError> {
        if self.live > self.peak {
            return Err(CheckError::new(
                self.live as usize,
                "live bytes above the peak",
            ));
        }
        let (mut live, mut blocks, mut bad) = (0u64, 0u64, None);
        self.for_each_site(|id, s| {
            live += s.live;
            blocks += s.live_blocks;
            if s.gen > self.gen || s.live > s.bytes || s.temporary > s.allocs {
                bad = Some(id);
            }
        });
        if let Some(id) = bad {
            return Err(CheckError::new(id as usize, "site figures out of bounds"));
        }
        if live > self.live || blocks > self.live_blocks {
            return Err(CheckError::new(
                live as usize,
                "sites hold more than the total",
            ));
        }
        Ok(())
    }
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(s: &State, id: u32) -> Site {
        let mut out = Site::default();
        s.for_each_site(|i, x| {
            if i == id {
                out = *x;
            }
        });
        out
    }

    /// Known truth: the peak is reached with 300 B at site 1 and 500 B at
    /// site 2; site 3 allocates only after the peak (when 1 has freed), and
    /// site 1 changes again after it.
    #[test]
    fn each_site_holds_what_it_held_at_the_peak() {
        let mut s = State::new();
        let r = || 0;
        s.on_alloc(1, 100, 1, r);
        s.on_alloc(1, 200, 2, r);
        s.on_alloc(2, 500, 3, r);
        s.on_free(1, 100, false, 4, r);
        s.on_alloc(3, 50, 5, r);
        s.on_alloc(1, 10, 6, r);
        s.on_free(2, 500, false, 7, r);
        s.check().unwrap();
        s.settle();
        assert_eq!((s.peak, s.peak_blocks, s.peak_t), (800, 3, 3));
        assert_eq!((site(&s, 1).peak, site(&s, 1).peak_blocks), (300, 2));
        assert_eq!((site(&s, 2).peak, site(&s, 2).live), (500, 0));
        assert_eq!((site(&s, 3).peak, site(&s, 3).live), (0, 50));
        assert_eq!(
            (site(&s, 1).allocs, site(&s, 1).bytes, site(&s, 1).live),
            (3, 310, 210)
        );
        assert_eq!((s.allocs, s.frees, s.live), (5, 2, 260));
        s.check().unwrap();
    }

    #[test]
    fn temporary_frees_are_counted_per_site() {
        let mut s = State::new();
        s.on_alloc(4, 64, 1, || 0);
        s.on_free(4, 64, true, 2, || 0);
        s.on_alloc(4, 64, 3, || 0);
        s.on_free(4, 64, false, 4, || 0);
        assert_eq!(
            (s.temporary, site(&s, 4).temporary, site(&s, 4).allocs),
            (1, 1, 2)
        );
    }

    #[test]
    fn the_timeline_keeps_its_maxima_when_it_is_compacted() {
        let mut s = State::new();
        let mut t = 0;
        for i in 0..(3 * PROFILE_SAMPLES as u64) {
            t += FIRST_INTERVAL;
            s.on_alloc(0, 1, t, || 7);
            if i == 1000 {
                s.on_alloc(0, 1 << 20, t, || 7);
                s.on_free(0, 1 << 20, false, t, || 7);
            }
        }
        let tl = s.samples();
        assert!(tl.len() <= PROFILE_SAMPLES && tl.len() >= PROFILE_SAMPLES / 2);
        assert!(tl.windows(2).all(|w| w[0].t < w[1].t));
        assert!(
            tl.iter().any(|x| x.heap > 1 << 20),
            "the spike survives merging"
        );
        assert!(tl.iter().all(|x| x.rss == 7));
    }
}
